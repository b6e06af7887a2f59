// cuBLAS under the emulation: the GEMMs of cuda/blas.hpp computed on the CPU by their documented semantics
// (column major, op(A) = A or Aᵀ read through the leading dimension, C = alpha·op(A)·op(B) + beta·C, and C not
// read when beta = 0), with one fp32 accumulator per output summed in order of k. One code for every dtype
// combination: operands read with to_float (a product of two bf16 values is exact in fp32), the result stored
// with from_float<SC> (bf16: rounded once, from the fp32 value), as cublasGemmEx with CUBLAS_COMPUTE_32F.
#include "cuda/backends.hpp"

namespace transmamba::gpu::emulated {

namespace {
template <class SA, class SC>
void run(const GemmT<SA, SC>& g) {
  const bool ta = g.trans_a == Transpose::yes, tb = g.trans_b == Transpose::yes;
  auto a = [&](int i, int l) { return to_float(ta ? g.A[l + std::size_t(i) * g.lda] : g.A[i + std::size_t(l) * g.lda]); };
  auto b = [&](int l, int j) { return to_float(tb ? g.B[j + std::size_t(l) * g.ldb] : g.B[l + std::size_t(j) * g.ldb]); };
  for (int j = 0; j < g.n; ++j)
    for (int i = 0; i < g.m; ++i) {
      float acc = 0.0f;
      for (int l = 0; l < g.k; ++l) acc += a(i, l) * b(l, j);
      SC& c = g.C[i + std::size_t(j) * g.ldc];
      c = from_float<SC>(g.beta == 0.0f ? g.alpha * acc : g.alpha * acc + g.beta * to_float(c));
    }
}
}  // namespace

void gemm(const Gemm& g, LaunchContext&) { run(g); }
void gemm(const GemmBf16& g, LaunchContext&) { run(g); }
void gemm(const GemmBf16ToF32& g, LaunchContext&) { run(g); }

}  // namespace transmamba::gpu::emulated
