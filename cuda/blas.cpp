#include "cuda/blas.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/backends.hpp"

namespace transmamba::gpu {

namespace {
// A column-major rows x cols matrix with leading dimension ld in a buffer of `size` values.
void check_operand(const char* name, const void* data, std::size_t size, int ld, int rows, int cols) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string("gemm: ") + name + " (" + std::to_string(rows) + " x " +
                                std::to_string(cols) + ", ld " + std::to_string(ld) + "): " + what);
  };
  if (ld < std::max(1, rows)) fail("leading dimension < max(1, rows)");
  if (rows == 0 || cols == 0) return;
  if (!data) fail("null pointer");
  const std::size_t needed = std::size_t(ld) * (cols - 1) + rows;
  if (needed > size)
    fail("the buffer holds " + std::to_string(size) + " values, the matrix needs " + std::to_string(needed));
}

template <class SA, class SC>
void run(const Stream& stream, const GemmT<SA, SC>& args) {
  check_gemm(args);
  TM_DISPATCH(stream, gemm, args);
}
}  // namespace

template <class SA, class SC>
void check_gemm(const GemmT<SA, SC>& g) {
  if (g.m < 0 || g.n < 0 || g.k < 0)
    throw std::invalid_argument("gemm: negative size (m=" + std::to_string(g.m) + ", n=" + std::to_string(g.n) +
                                ", k=" + std::to_string(g.k) + ")");
  const bool ta = g.trans_a == Transpose::yes, tb = g.trans_b == Transpose::yes;
  check_operand("A", g.A, g.A_size, g.lda, ta ? g.k : g.m, ta ? g.m : g.k);
  check_operand("B", g.B, g.B_size, g.ldb, tb ? g.n : g.k, tb ? g.k : g.n);
  check_operand("C", g.C, g.C_size, g.ldc, g.m, g.n);
}
template void check_gemm(const Gemm&);
template void check_gemm(const GemmBf16&);
template void check_gemm(const GemmBf16ToF32&);

void gemm(const Stream& stream, const Gemm& args) { run(stream, args); }
void gemm(const Stream& stream, const GemmBf16& args) { run(stream, args); }
void gemm(const Stream& stream, const GemmBf16ToF32& args) { run(stream, args); }

}  // namespace transmamba::gpu
