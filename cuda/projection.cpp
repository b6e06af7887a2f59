// The public API of cuda/projection.hpp: the arguments checked, then one GEMM per product (cuda/blas.hpp), in
// the GEMM of the operands' and the result's dtypes (one template for fp32 and bf16).
//
// cuBLAS is column-major; our matrices are row-major. A row-major [R, C] matrix with row stride ld is, read
// column-major, the C x R matrix Xᵀ with leading dimension ld. So every row-major product Y = X·Z is issued as
// its transpose Yᵀ = Zᵀ·Xᵀ, whose operands are exactly what the buffers hold read column-major:
//   out = in·W        ->  outᵀ [m x rows] = Wᵀ [m x n] · inᵀ [n x rows]:         no transposes;
//   d_in = d_out·Wᵀ   ->  d_inᵀ [n x rows] = W [n x m] · d_outᵀ [m x rows]:      A = W's buffer (Wᵀ) transposed;
//   d_W = inᵀ·d_out   ->  d_Wᵀ [m x n] = d_outᵀ [m x rows] · in [rows x n]:      B = in's buffer (inᵀ) transposed.
#include "cuda/projection.hpp"

#include "cuda/blas.hpp"

namespace transmamba::gpu {

namespace {
// A row-major [rows, cols] view as a column-major operand: its pointer, values and leading dimension.
template <class T>
struct Operand {
  T* data;
  std::size_t size;
  int ld;
};
template <class T>
Operand<T> operand(const char* fn, const char* arg, const View<T>& v, int rows, int cols) {
  return {v.data, v.size, int(check_view(fn, arg, v, 1, rows, cols).row)};
}
// C [m x n] = op(A) [m x k] · op(B) [k x n], column-major (cuda/blas.hpp), in the GEMM of A's and C's dtypes.
template <class SA, class SC>
void product(const Stream& stream, int m, int n, int k, Transpose ta, const Operand<const SA>& A, Transpose tb,
             const Operand<const SA>& B, const Operand<SC>& C) {
  GemmT<SA, SC> g;
  g.trans_a = ta, g.trans_b = tb;
  g.m = m, g.n = n, g.k = k;
  g.A = A.data, g.A_size = A.size, g.lda = A.ld;
  g.B = B.data, g.B_size = B.size, g.ldb = B.ld;
  g.C = C.data, g.C_size = C.size, g.ldc = C.ld;
  gemm(stream, g);
}
constexpr Transpose kNo = Transpose::no, kYes = Transpose::yes;

template <class S>
void forward(const Stream& stream, const LinearForwardT<S>& a) {
  const char* fn = "linear_forward";
  const LinearShape& s = a.shape;
  check_linear_shape(s);
  const auto in = operand(fn, "in", a.in, s.rows, s.n), W = operand(fn, "W", a.W, s.n, s.m);
  const auto out = operand(fn, "out", a.out, s.rows, s.m);
  product(stream, s.m, s.rows, s.n, kNo, W, kNo, in, out);  // outᵀ = Wᵀ · inᵀ
}

template <class S>
void backward(const Stream& stream, const LinearBackwardT<S>& a) {
  const char* fn = "linear_backward";
  const LinearShape& s = a.shape;
  check_linear_shape(s);
  const auto in = operand(fn, "in", a.in, s.rows, s.n), W = operand(fn, "W", a.W, s.n, s.m);
  const auto d_out = operand(fn, "d_out", a.d_out, s.rows, s.m);
  const auto d_in = operand(fn, "d_in", a.d_in, s.rows, s.n);
  const auto d_W = operand(fn, "d_W", a.d_W, s.n, s.m);
  product(stream, s.n, s.rows, s.m, kYes, W, kNo, d_out, d_in);  // d_inᵀ = W · d_outᵀ
  // d_Wᵀ = d_outᵀ · in: the sum over all rows in one GEMM (rows = 0: k = 0, which BLAS's semantics, and the
  // emulation's, make beta·C = 0; the layer never passes 0 rows).
  product(stream, s.m, s.n, s.rows, kNo, d_out, kYes, in, d_W);
}
}  // namespace

void linear_forward(const Stream& stream, const LinearForward& a) { forward(stream, a); }
void linear_forward(const Stream& stream, const LinearForwardBf16& a) { forward(stream, a); }
void linear_backward(const Stream& stream, const LinearBackward& a) { backward(stream, a); }
void linear_backward(const Stream& stream, const LinearBackwardBf16& a) { backward(stream, a); }

}  // namespace transmamba::gpu
