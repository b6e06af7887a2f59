// A test kernel for cuda/mma.cuh (tests/test_mma.cpp): D[M, N] = A[M, K]·B[K, N] in bf16 with fp32 accumulation,
// by mma_m16n8k16 calls chained over K. Compiled twice like the kernels of cuda/ (portable.cuh): test_mma.cpp
// includes it for the emulation, and nvcc compiles it into test_mma when the build has CUDA.
//
// Block i owns rows [16i, 16i + 16) of D and has N/8 warps; warp w owns columns [8w, 8w + 8). The block stages
// its 16 rows of A and all of B in shared memory (as A's and Bᵀ's rows, or Aᵀ's and B's for ldmatrix_trans; by ldmatrix
// the B tiles hold a multiple of 16 columns, zero past N: a warp loads the 16 containing its 8), then each warp
// runs K/16 k-steps: D += A[:, k0:k0+16]·B[k0:k0+16, :].
#include "cuda/portable.cuh"

#include "cuda/launch.cuh"
#include "cuda/mma.cuh"
#include "tests/mma_product.hpp"

namespace transmamba::gpu::TM_BACKEND_NS {

__global__ void mma_product_kernel(MmaProduct p) {
  const int n16 = (p.N + 15) / 16 * 16;
  bf16* a_tile = dynamic_shared<bf16>();  // A [16, K], or Aᵀ [K, 16] for ldmatrix_trans
  bf16* b_tile = a_tile + 16 * p.K;       // Bᵀ [n16, K], or B [K, n16] for ldmatrix_trans
  const bool trans = p.loads == MmaLoads::ldmatrix_trans;
  const int thread = threadIdx.x, threads = blockDim.x, row0 = blockIdx.x * 16;
  for (int e = thread; e < 16 * p.K; e += threads) a_tile[trans ? e % p.K * 16 + e / p.K : e] = p.a[row0 * p.K + e];
  for (int e = thread; e < n16 * p.K; e += threads) {
    const int n = e / p.K, k = e % p.K;
    b_tile[trans ? k * n16 + n : e] = n < p.N ? p.b_t[e] : __float2bfloat16(0.0f);
  }
  __syncthreads();
  const int warp = thread / 32, col0 = warp * 8;
  MmaC acc{};
  for (int k0 = 0; k0 < p.K; k0 += 16) {
    if (p.loads == MmaLoads::elements) {
      mma_m16n8k16(acc, mma_load_a(a_tile + k0, p.K), mma_load_b(b_tile + col0 * p.K + k0, p.K), acc);
      continue;
    }
    MmaB b[2];
    if (trans)
      mma_ldmatrix_b2_trans(b, b_tile + k0 * n16 + 16 * (warp / 2), n16);
    else
      mma_ldmatrix_b2(b, b_tile + 16 * (warp / 2) * p.K + k0, p.K);
    const MmaA a = trans ? mma_ldmatrix_a_trans(a_tile + k0 * 16, 16) : mma_ldmatrix_a(a_tile + k0, p.K);
    mma_m16n8k16(acc, a, b[warp % 2], acc);
  }
  mma_store_c(acc, p.d + row0 * p.N + col0, p.N);
}

void mma_product(const MmaProduct& p, const LaunchContext& ctx) {
  if (p.M % 16 || p.N % 8 || p.K % 16 || p.M <= 0 || p.N <= 0 || p.K <= 0 || p.N > 256)
    throw std::invalid_argument("mma_product: M, N, K must be positive multiples of 16, 8, 16 (N <= 256)");
  const std::size_t shared = std::size_t(16 + (p.N + 15) / 16 * 16) * p.K * sizeof(bf16);
  const LaunchShape shape{{unsigned(p.M / 16)}, {unsigned(p.N / 8 * 32)}, shared};
  launch(TM_SITE("mma_product"), mma_product_kernel, shape, ctx, p);
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
