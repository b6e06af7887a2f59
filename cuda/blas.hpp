// The one wrapper for the cuBLAS calls the project makes. Under the emulation the same call is computed on the
// CPU by cuBLAS's documented semantics (cuda/emulation/blas.cpp), so every call site's conventions (column
// major, transposes, leading dimensions, alpha and beta) are checked in CI too.
#pragma once

#include <cstddef>

#include "cuda/bf16.hpp"
#include "cuda/device.hpp"

namespace transmamba::gpu {

enum class Transpose { no, yes };

// C = alpha · op(A) · op(B) + beta · C in cuBLAS's column-major convention: op(A) is m x k, op(B) is k x n, C is
// m x n; A is stored m x k (k x m when transposed) with leading dimension lda, and so on. With beta = 0, C is
// not read (it may hold NaN).
//
// The dtypes are the struct's template arguments: A and B of type SA, C of type SC. The combinations, each one
// cuBLAS call (blas.cu), every one with fp32 accumulation, alpha and beta fp32:
//   Gemm          = GemmT<float, float>:  cublasSgemm (TF32 off: cuBLAS's pedantic math mode);
//   GemmBf16      = GemmT<Bf16, Bf16>:    cublasGemmEx, A, B, C CUDA_R_16BF, CUBLAS_COMPUTE_32F: the activations'
//                                         products (C rounded to bf16 once, from the fp32 sum);
//   GemmBf16ToF32 = GemmT<Bf16, float>:   cublasGemmEx, A, B CUDA_R_16BF, C CUDA_R_32F, CUBLAS_COMPUTE_32F: the
//                                         weight gradients d_W of bf16 activations and gradients, kept in fp32.
// fp32 operands with a bf16 result (GemmT<float, Bf16>) is no cublasGemmEx combination: gemm() for it, or any
// other, is deleted (a compile-time error, tests/test_gpu.cpp).
//
// Our tensors are row-major: a row-major [R, C] matrix is the column-major C x R matrix with ld = its row
// stride, so the row-major product Y[M,N] = X[M,K]·W[K,N] is the column-major Yᵀ = Wᵀ·Xᵀ: m = N, n = M, k = K,
// A = W (lda = N), B = X (ldb = K), C = Y (ldc = N).
template <class SA, class SC>
struct GemmT {
  Transpose trans_a = Transpose::no, trans_b = Transpose::no;
  int m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
  const SA* A = nullptr;
  std::size_t A_size = 0;  // values the buffer holds from A on
  int lda = 0;
  const SA* B = nullptr;
  std::size_t B_size = 0;
  int ldb = 0;
  SC* C = nullptr;
  std::size_t C_size = 0;
  int ldc = 0;
};
using Gemm = GemmT<float, float>;
using GemmBf16 = GemmT<Bf16, Bf16>;
using GemmBf16ToF32 = GemmT<Bf16, float>;

// Throws std::invalid_argument for what cuBLAS would reject (CUBLAS_STATUS_INVALID_VALUE: negative sizes, a
// leading dimension smaller than the rows stored) and for a null or too small buffer, naming the argument.
template <class SA, class SC>
void check_gemm(const GemmT<SA, SC>& g);
void gemm(const Stream& stream, const Gemm& args);
void gemm(const Stream& stream, const GemmBf16& args);
void gemm(const Stream& stream, const GemmBf16ToF32& args);
template <class SA, class SC>
void gemm(const Stream& stream, const GemmT<SA, SC>& args) = delete;  // not a supported combination (above)

}  // namespace transmamba::gpu
