// The one wrapper for the cuBLAS calls the project makes. Under the emulation the same call is computed on the
// CPU by cuBLAS's documented semantics (cuda/emulation/blas.cpp), so every call site's conventions (column
// major, transposes, leading dimensions, alpha and beta) are checked in CI too.
#pragma once

#include <cstddef>

#include "cuda/device.hpp"

namespace transmamba::gpu {

enum class Transpose { no, yes };

// C = alpha · op(A) · op(B) + beta · C in cuBLAS's column-major convention (cublasSgemm): op(A) is m x k,
// op(B) is k x n, C is m x n; A is stored m x k (k x m when transposed) with leading dimension lda, and so
// on. With beta = 0, C is not read (it may hold NaN). fp32 in and out, fp32 accumulation, TF32 off (cuBLAS's
// pedantic math mode).
//
// Our tensors are row-major: a row-major [R, C] matrix is the column-major C x R matrix with ld = its row
// stride, so the row-major product Y[M,N] = X[M,K]·W[K,N] is the column-major Yᵀ = Wᵀ·Xᵀ: m = N, n = M, k = K,
// A = W (lda = N), B = X (ldb = K), C = Y (ldc = N).
struct Gemm {
  Transpose trans_a = Transpose::no, trans_b = Transpose::no;
  int m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
  const float* A = nullptr;
  std::size_t A_size = 0;  // values the buffer holds from A on
  int lda = 0;
  const float* B = nullptr;
  std::size_t B_size = 0;
  int ldb = 0;
  float* C = nullptr;
  std::size_t C_size = 0;
  int ldc = 0;
};

// Throws std::invalid_argument for what cuBLAS would reject (CUBLAS_STATUS_INVALID_VALUE: negative sizes, a
// leading dimension smaller than the rows stored) and for a null or too small buffer, naming the argument.
void check_gemm(const Gemm& g);
void gemm(const Stream& stream, const Gemm& args);

}  // namespace transmamba::gpu
