// cuBLAS under the emulation: cublasSgemm computed on the CPU by its documented semantics (column major,
// op(A) = A or Aᵀ read through the leading dimension, C = alpha·op(A)·op(B) + beta·C, and C not read when
// beta = 0), in fp32 with one accumulator per output summed in order of k.
#include "cuda/backends.hpp"

namespace transmamba::gpu::emulated {

void gemm(const Gemm& g, LaunchContext&) {
  const bool ta = g.trans_a == Transpose::yes, tb = g.trans_b == Transpose::yes;
  auto a = [&](int i, int l) { return ta ? g.A[l + std::size_t(i) * g.lda] : g.A[i + std::size_t(l) * g.lda]; };
  auto b = [&](int l, int j) { return tb ? g.B[j + std::size_t(l) * g.ldb] : g.B[l + std::size_t(j) * g.ldb]; };
  for (int j = 0; j < g.n; ++j)
    for (int i = 0; i < g.m; ++i) {
      float acc = 0.0f;
      for (int l = 0; l < g.k; ++l) acc += a(i, l) * b(l, j);
      float& c = g.C[i + std::size_t(j) * g.ldc];
      c = g.beta == 0.0f ? g.alpha * acc : g.alpha * acc + g.beta * c;
    }
}

}  // namespace transmamba::gpu::emulated
