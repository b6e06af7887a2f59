// The test kernel of tests/mma_product.cu (cuda/mma.cuh's tests): its arguments and its two builds' entry points.
#pragma once

#include <cuda_bf16.h>

#include "cuda/device.hpp"

namespace transmamba::gpu {

// D = A·B: M a multiple of 16, N of 8 (N <= 256), K of 16. a: [M, K] row-major; b_t: Bᵀ [N, K] row-major (B
// column-major); d: [M, N] row-major. Unchecked buffers (a test kernel).
// loads: how the fragments reach the registers: element by element (mma_load_a, mma_load_b), or by ldmatrix
// (mma_ldmatrix_a and mma_ldmatrix_b2 from A's and Bᵀ's rows, or mma_ldmatrix_a_trans and
// mma_ldmatrix_b2_trans from Aᵀ's and B's rows).
enum class MmaLoads { elements, ldmatrix, ldmatrix_trans };
struct MmaProduct {
  int M, N, K;
  const __nv_bfloat16* a;
  const __nv_bfloat16* b_t;
  float* d;
  MmaLoads loads = MmaLoads::elements;
};

namespace emulated {
void mma_product(const MmaProduct& p, const LaunchContext& ctx);
}
namespace on_device {
void mma_product(const MmaProduct& p, const LaunchContext& ctx);
}

}  // namespace transmamba::gpu
