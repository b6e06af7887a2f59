// Math shared by the kernels and the tests: __host__ __device__ functions in plain C++ (no CUDA headers
// needed), so the CPU tests check exactly what the kernels compute. Each matches the reference's formula
// (reference/tensor.hpp, step_size.hpp, attention.hpp) in float.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define TM_HD __host__ __device__ __forceinline__
#else
#define TM_HD inline
#endif

namespace transmamba::gpu {

TM_HD int ceil_div(int n, int d) { return (n + d - 1) / d; }

// A range cut into tiles of `tile` items (the last may be shorter): tile i covers [begin(i), begin(i) + size(i)).
struct Tiling {
  int n, tile;
  TM_HD int count() const { return ceil_div(n, tile); }
  TM_HD int begin(int i) const { return i * tile; }
  TM_HD int size(int i) const { return n - i * tile < tile ? n - i * tile : tile; }
};

TM_HD float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
TM_HD float silu(float v) { return v * sigmoid(v); }
// d/dv silu(v) = sigmoid(v) · (1 + v · (1 - sigmoid(v))).
TM_HD float silu_grad(float v) {
  const float s = sigmoid(v);
  return s * (1.0f + v * (1.0f - s));
}
// softplus(v) = log(1 + e^v), without overflow for large v or lost digits for small v (E3).
TM_HD float softplus(float v) { return v > 0.0f ? v + log1pf(expf(-v)) : log1pf(expf(v)); }
// A = -exp(A_log) (E3).
TM_HD float decay_rate(float A_log) { return -expf(A_log); }
// The decay a = exp(dt · A) of one token (E3), in (0, 1].
TM_HD float decay(float dt, float A) { return expf(dt * A); }

// The running max and normalizer of a softmax whose scores arrive one at a time or in blocks (flash
// attention's online softmax). After folding in scores s_1..s_n: max = max_i s_i, sum = Σ_i exp(s_i - max),
// so softmax_i = exp(s_i - max) / sum. Each fold returns the factor exp(old max - new max) by which everything
// accumulated against the old max (the sum itself, and an output row Σ exp(s_i - max) v_i) must be scaled.
struct OnlineSoftmax {
  float max = -INFINITY;
  float sum = 0.0f;

  // Folds in another partial softmax (its max and sum); returns the factor for what was accumulated here.
  TM_HD float merge(float other_max, float other_sum) {
    const float m = fmaxf(max, other_max);
    if (m == -INFINITY) return 1.0f;  // nothing but masked scores so far
    const float mine = expf(max - m), theirs = expf(other_max - m);
    sum = sum * mine + other_sum * theirs;
    max = m;
    return mine;
  }
  TM_HD float add(float score) { return merge(score, 1.0f); }
  TM_HD float weight(float score) const { return expf(score - max) / sum; }
};

}  // namespace transmamba::gpu
