// Decode on a device (DESIGN.md section 6), mirroring reference/inference.hpp for one mixer layer: the layer's
// decode state (LayerState), its prefill from a forward over the prompt, and the step of one token (mixer_step),
// for Bt sequences that advance together. The layer's TransPoint P is fixed when the state is made (the
// reference fixes it at prefill from the planned length: schedule.transpoint(l, T_plan)).
//
//   prefill_layer   a prompt of T0 >= 1 tokens through mixer_forward (cuda/mixer.hpp, TransPoint min(P, T0)),
//                   then the state after it: the conv window (the last W-1 rows of xBC_in, zero rows before
//                   token 0), the KV cache of the tokens < min(T0, P), the scan state (the forward's final state).
//   mixer_step      the token at position t = position, u [Bt, 1, D] -> out [Bt, 1, D]:
//     E1  zxbcdt = u · W_in                                 (cuda/projection.hpp, Bt rows)
//     E2  xBC = the last row of SiLU(conv) over [window; xBC_in]; the window moves on   (conv_silu_step)
//     E3  dt, A                                             (cuda/step_size.hpp)
//     E6  S ← exp(dt·A)·S + dt · x ⊗ B                      (the chunked scan over one token from S, always)
//     t < P:   the cache gets row t = [x | B];  y = attention of the query C over cache rows 0 .. t (E4,
//              attention_forward with first_query = t);  y_normed = RMSNorm_G(y)
//     t >= P:  the cache is freed;  y = S·C + D_skip·x (E6: the same scan's output);  y_normed = RMSNorm_G(y ⊙ SiLU(z))
//     E8  out = y_normed · W_out
// Plain C++: the shape, the plan (every buffer's size), the argument checks (all made before the first launch).
#pragma once

#include <cstddef>

#include "cuda/device.hpp"
#include "cuda/mixer.hpp"
#include "cuda/ssm.hpp"
#include "cuda/tensor.hpp"
#include "reference/config.hpp"  // MixerConfig: plain C++, no Eigen

namespace transmamba::gpu {

struct LayerStateShape {
  int Bt = 1;       // sequences (>= 1)
  int P = 0;        // the layer's TransPoint (>= 0): tokens t < P attend, the others scan
  MixerConfig cfg;
};

// The sizes (in floats) of every buffer of LayerState, and the step's scan plan.
struct LayerStatePlan {
  int in_width = 0;     // 2E + 2GN + H
  int channels = 0;     // E + 2GN
  int cache_width = 0;  // E + GN: a cache row is [x | B], the first columns of an xBC row
  ScanPlan scan;        // E6 over one token
  std::size_t conv_window = 0, kv_cache = 0, scan_state = 0;                    // the state
  std::size_t u = 0, zxbcdt = 0, xBC = 0, dt = 0, A = 0, y = 0, y_normed = 0, out = 0, lse = 0;  // one token
  std::size_t chunk_states = 0, chunk_decays = 0;                               // the step scan's workspace
  std::size_t total_floats() const;
};

// Throws std::invalid_argument for a shape decode does not take: Bt < 1, P < 0, a config that does not
// validate, and (propagated from the kernels' plans) sizes the kernels do not support (attention's N and p
// when P > 0, the conv width, the norm groups).
LayerStatePlan layer_state_plan(const LayerStateShape& shape);
// The device memory (bytes) of a LayerState: the state (its KV cache Bt·P·(E + GN) floats, until the first token
// past P frees it) and one token's buffers.
std::size_t layer_state_device_bytes(const LayerStateShape& shape);

struct LayerState {
  LayerState(const Device& device, const LayerStateShape& shape);  // allocates layer_state_plan(shape)'s buffers

  LayerStateShape shape;
  int position = -1;  // tokens consumed = the position t of the next token; -1 until prefill_layer
  // The state after token position-1 (reference/inference.hpp's LayerState):
  DeviceBuffer<float> conv_window;  // [Bt, W-1, E+2GN]: the conv's inputs of the last W-1 tokens, oldest first
  DeviceBuffer<float> kv_cache;     // [Bt, P, E+GN]: rows t < min(position, P) hold [x | B] of token t; freed
                                    // (size 0) by the first step at t >= P
  DeviceBuffer<float> scan_state;   // [Bt, H·p, N]: the scan state after the last token (also in attention mode)
  DeviceBuffer<float> next_state;   // [Bt, H·p, N]: where a step writes the next state (then swapped)
  // One token's buffers:
  DeviceBuffer<float> u;            // [Bt, 1, D]: the token's input, written by the caller before mixer_step
  DeviceBuffer<float> zxbcdt;       // E1 [Bt, 1, 2E + 2GN + H]
  DeviceBuffer<float> xBC;          // E2 [Bt, 1, E + 2GN]
  DeviceBuffer<float> dt, A;        // E3 [Bt, 1, H], [H]
  DeviceBuffer<float> y, y_normed;  // [Bt, 1, E]
  DeviceBuffer<float> out;          // E8 [Bt, 1, D]: the token's output
  DeviceBuffer<float> lse;          // [Bt·G]: the attention query's log-sum-exp
  DeviceBuffer<float> chunk_states, start_states, chunk_decays;  // the step scan's stages (one chunk)

 private:
  LayerState(const Device& device, const LayerStateShape& shape, const LayerStatePlan& plan);
};

// The state after the prompt of f (a mixer_forward's result over T0 = f.shape.T tokens with TransPoint
// min(P, T0), the same Bt and config as the state): position = T0. Throws std::invalid_argument
// "prefill_layer: ..." when the shapes do not match or a buffer does not fit.
void prefill_layer(const Stream& stream, const MixerForwardDevice& f, LayerState& state);

// The token at position t = state.position of every sequence, from state.u: state.out holds its output and the
// state has advanced past it (position t + 1). Throws std::invalid_argument "mixer_step: ..." before anything
// is launched when the state was not prefilled or a parameter or buffer does not fit.
void mixer_step(const Stream& stream, const MixerDeviceParams& params, LayerState& state);

}  // namespace transmamba::gpu
