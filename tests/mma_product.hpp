// The test kernel of tests/mma_product.cu (cuda/mma.cuh's tests): its arguments and its two builds' entry points.
#pragma once

#include <cuda_bf16.h>

#include "cuda/device.hpp"

namespace transmamba::gpu {

// D = A·B: M a multiple of 16, N of 8 (N <= 256), K of 16. a: [M, K] row-major; b_t: Bᵀ [N, K] row-major (B
// column-major); d: [M, N] row-major. Unchecked buffers (a test kernel).
struct MmaProduct {
  int M, N, K;
  const __nv_bfloat16* a;
  const __nv_bfloat16* b_t;
  float* d;
};

namespace emulated {
void mma_product(const MmaProduct& p, const LaunchContext& ctx);
}
namespace on_device {
void mma_product(const MmaProduct& p, const LaunchContext& ctx);
}

}  // namespace transmamba::gpu
