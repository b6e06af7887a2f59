// Deterministic sums over the rows of a tile, shared by the backward kernels whose parameter gradients sum
// over tokens (conv: d_w, d_b; step size: d_dt_bias). Two stages, each in a fixed order, so the same call
// gives bitwise the same result every time (no float atomics):
//   1. inside a block of (32, kRowGroups) threads, block_column_sum adds the kRowGroups partial sums of each
//      column (threadIdx.x) in order of threadIdx.y; the block writes one partial per column and tile;
//   2. sum_partials adds the partials of all tiles in tile order.
#pragma once

#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

// Every thread passes its partial sum; thread (x, 0) gets the column's total (others get 0). All threads of
// the block must call it (it holds barriers). A template, as every function with __shared__ must be
// (emulation.hpp).
template <int kRowGroups>
__device__ float block_column_sum(float partial) {
  __shared__ float rows[kRowGroups][32];
  rows[threadIdx.y][threadIdx.x] = partial;
  __syncthreads();
  float total = 0.0f;
  if (threadIdx.y == 0)
    for (int r = 0; r < kRowGroups; ++r) total += rows[r][threadIdx.x];
  __syncthreads();  // rows[] is reused by the next call
  return total;
}

// The partial sums of `count` tiles, row i of a [count, cols] matrix with row stride partials_row, added in
// order of i: out = Σ_i partials[i]. Column j goes to out[(j / inner)·out_row + j % inner] (a [cols/inner,
// inner] matrix with row stride out_row, e.g. conv's d_w [C, W]). One thread per column.
template <class T>
__global__ void sum_partials(const T* __restrict__ partials, int count, int cols, std::int64_t partials_row,
                             T* __restrict__ out, int inner, std::int64_t out_row) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  T total = 0;
  for (int i = 0; i < count; ++i) total += partials[i * partials_row + j];
  out[j / inner * out_row + j % inner] = total;
}

constexpr unsigned kSumPartialsThreads = 256;
inline LaunchShape sum_partials_shape(int cols) {
  return {{unsigned(ceil_div(cols, int(kSumPartialsThreads))), 1, 1}, {kSumPartialsThreads, 1, 1}, 0};
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
