// The cuBLAS side of cuda/blas.hpp (nvcc build), on a handle bound to the stream: every GEMM one cublasGemmEx.
// fp32: CUBLAS_COMPUTE_32F_PEDANTIC, fp32 arithmetic throughout (no TF32, no tensor cores). bf16 (A, B CUDA_R_16BF;
// C CUDA_R_16BF or CUDA_R_32F): CUBLAS_COMPUTE_32F, tensor cores with fp32 accumulation; alpha and beta fp32.
// (The handle's math mode stays the default: CUBLAS_PEDANTIC_MATH on the handle, as before, kept the bf16 GEMMs off
// the tensor cores too: 50 TFLOP/s for the layer's in_proj on an H200, the fp32 rate.)
#include <cublas_v2.h>

#include <type_traits>

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
  }
  return static_cast<cublasHandle_t>(ctx.blas_handle);
}
cublasOperation_t op(Transpose t) { return t == Transpose::yes ? CUBLAS_OP_T : CUBLAS_OP_N; }

template <class S>
constexpr cudaDataType_t data_type() {
  return std::is_same_v<S, Bf16> ? CUDA_R_16BF : CUDA_R_32F;
}
// Bf16 has __nv_bfloat16's size and bits (cuda/bf16.hpp): its buffers are passed to cuBLAS as they are.
template <class SA, class SC>
void gemm_ex(const GemmT<SA, SC>& g, LaunchContext& ctx) {
  if (g.m == 0 || g.n == 0) return;
  static_assert(sizeof(Bf16) == 2, "Bf16 is a bfloat16 as it lies in memory");
  const cublasComputeType_t compute = std::is_same_v<SA, float> ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  TM_CUBLAS_CHECK(cublasGemmEx(handle_for(ctx), op(g.trans_a), op(g.trans_b), g.m, g.n, g.k, &g.alpha, g.A,
                               data_type<SA>(), g.lda, g.B, data_type<SA>(), g.ldb, &g.beta, g.C, data_type<SC>(),
                               g.ldc, compute, CUBLAS_GEMM_DEFAULT));
}
}  // namespace

void gemm(const Gemm& g, LaunchContext& ctx) { gemm_ex(g, ctx); }
void gemm(const GemmBf16& g, LaunchContext& ctx) { gemm_ex(g, ctx); }
void gemm(const GemmBf16ToF32& g, LaunchContext& ctx) { gemm_ex(g, ctx); }

}  // namespace transmamba::gpu::on_device
