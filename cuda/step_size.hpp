// Step sizes and decay rates (E3) on a device: the host API of cuda/step_size.cu, mirroring
// reference/step_size.hpp.
//
//   dt[b, t, h] = softplus(dt_raw[b, t, h] + dt_bias[h]),     A[h] = -exp(A_log[h])
//
// The decay a = exp(dt·A) itself is computed where it is used (device_math.hpp: decay()).
//
// Storage (cuda/bf16.hpp): dt_raw and d_dt_raw, column blocks of zxbcdt and d_zxbcdt, are of type S (float, or
// Bf16 for the bf16 kernels); dt, A, their gradients d_dt, d_A, the parameters and their gradients are fp32.
#pragma once

#include <algorithm>

#include "cuda/bf16.hpp"
#include "cuda/device.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/tensor.hpp"

namespace transmamba::gpu {

struct StepSizeShape {
  int Bt = 1, T = 0, H = 0;
};

// Forward: one thread per value. Backward: blocks of (32 heads, kStepRowGroups row groups) over tiles of
// kStepTileRows tokens, each writing d_dt_raw and one partial d_dt_bias per tile, summed in tile order
// (reduce.cuh).
constexpr int kStepTileRows = 32, kStepRowGroups = 8;

struct StepSizePlan {
  int time_tiles = 0;
  LaunchShape forward, backward, reduce;
  std::size_t workspace = 0;  // floats: Bt · time_tiles · H
};

inline StepSizePlan step_size_plan(const StepSizeShape& s) {
  if (s.Bt < 0 || s.T < 0 || s.H < 0) throw std::invalid_argument("step size: negative Bt, T or H");
  StepSizePlan p;
  p.time_tiles = ceil_div(s.T, kStepTileRows);
  const long long values = (long long)s.Bt * s.T * s.H, threads = 256;
  const long long blocks = std::max<long long>((std::max<long long>(values, s.H) + threads - 1) / threads, 1);
  p.forward = {{unsigned(blocks), 1, 1}, {unsigned(threads), 1, 1}, 0};
  p.backward = {{unsigned(ceil_div(s.H, 32)), unsigned(p.time_tiles), unsigned(s.Bt)}, {32, kStepRowGroups, 1}, 0};
  p.reduce = {{unsigned(ceil_div(s.H, 256)), 1, 1}, {256, 1, 1}, 0};
  p.workspace = std::size_t(s.Bt) * p.time_tiles * s.H;
  return p;
}

template <class S>
struct StepSizeForwardT {
  StepSizeShape shape;
  View<const S> dt_raw;       // [Bt, T, H] (a column block of zxbcdt in the layer)
  View<const float> dt_bias;  // [1, 1, H]
  View<const float> A_log;    // [1, 1, H]
  View<float> dt;             // [Bt, T, H]
  View<float> A;              // [1, 1, H]
};
using StepSizeForward = StepSizeForwardT<float>;
using StepSizeForwardBf16 = StepSizeForwardT<Bf16>;

template <class S>
struct StepSizeBackwardT {
  StepSizeShape shape;
  View<const S> dt_raw;                      // as in StepSizeForward
  View<const float> dt_bias, A_log;          // as in StepSizeForward
  View<const float> d_dt;                    // [Bt, T, H]
  View<const float> d_A;                     // [1, 1, H]
  View<S> d_dt_raw;                          // [Bt, T, H] (a column block of d_zxbcdt in the layer)
  View<float> d_dt_bias;                     // [1, 1, H]
  View<float> d_A_log;                       // [1, 1, H]
  View<float> workspace;                     // step_size_plan(shape).workspace floats
};
using StepSizeBackward = StepSizeBackwardT<float>;
using StepSizeBackwardBf16 = StepSizeBackwardT<Bf16>;

void step_size_forward(const Stream& stream, const StepSizeForward& args);
void step_size_forward(const Stream& stream, const StepSizeForwardBf16& args);
void step_size_backward(const Stream& stream, const StepSizeBackward& args);
void step_size_backward(const Stream& stream, const StepSizeBackwardBf16& args);

}  // namespace transmamba::gpu
