// The cuBLAS side of cuda/blas.hpp (nvcc build): one cublasSgemm per call, on a handle bound to the stream.
#include <cublas_v2.h>

#include "cuda/backends.hpp"
#include "cuda/errors.cuh"

namespace transmamba::gpu::on_device {

namespace {
cublasHandle_t handle_for(LaunchContext& ctx) {
  if (!ctx.blas_handle) {
    cublasHandle_t h = nullptr;
    TM_CUBLAS_CHECK(cublasCreate(&h));
    ctx.blas_handle = h;
    TM_CUBLAS_CHECK(cublasSetStream(h, static_cast<cudaStream_t>(ctx.stream)));
    TM_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));  // fp32 stays fp32: no TF32
  }
  return static_cast<cublasHandle_t>(ctx.blas_handle);
}
cublasOperation_t op(Transpose t) { return t == Transpose::yes ? CUBLAS_OP_T : CUBLAS_OP_N; }
}  // namespace

void gemm(const Gemm& g, LaunchContext& ctx) {
  if (g.m == 0 || g.n == 0) return;
  TM_CUBLAS_CHECK(cublasSgemm(handle_for(ctx), op(g.trans_a), op(g.trans_b), g.m, g.n, g.k, &g.alpha, g.A, g.lda,
                              g.B, g.ldb, &g.beta, g.C, g.ldc));
}

}  // namespace transmamba::gpu::on_device
