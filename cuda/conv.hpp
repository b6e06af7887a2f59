// Causal depthwise conv + SiLU (E2) on a device: the host API of cuda/conv.cu, mirroring reference/conv.hpp.
//
//   out[b, t, c] = SiLU( bias[c] + Σ_{k<W} w[c, k] · v[b, t - W + 1 + k, c] )      (v = 0 before token 0)
//
// Plain C++: shapes, the launch plan, and the argument checks that run before anything is launched.
//
// Storage (cuda/bf16.hpp): the activations v, out, d_out, d_v and the decode window are of type S (float, or
// Bf16 for the bf16 kernels: read as fp32, the sums in fp32, results rounded once when stored); the parameters
// w, b, their gradients d_w, d_b and the workspace are fp32. ConvForward etc. are the fp32 structs, ConvForwardBf16
// etc. the bf16 ones; every function has an overload for each.
#pragma once

#include "cuda/bf16.hpp"
#include "cuda/device.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/tensor.hpp"

namespace transmamba::gpu {

struct ConvShape {
  int Bt = 1;  // sequences
  int T = 0;   // tokens per sequence
  int C = 0;   // channels (E + 2GN in the layer)
  int W = 0;   // conv width
};

// A block owns kConvTileChannels channels x kConvTileRows tokens of one sequence, with (32, kConvRowGroups)
// threads: lane x is a channel, row group y takes rows y, y + 8, ... . It stages the tile's input rows and the
// W - 1 before them in shared memory once, so each input value is read from memory once instead of W times.
constexpr int kConvTileRows = 32, kConvTileChannels = 32, kConvRowGroups = 8;
constexpr int kConvMaxWidth = 32;  // the halo of W - 1 rows must stay small next to the tile

struct ConvPlan {
  int time_tiles = 0;         // tiles per sequence: ceil(T / kConvTileRows)
  LaunchShape forward;        // grid (channel tiles, time tiles, Bt)
  LaunchShape backward;       // the same grid; writes d_v and one partial d_w, d_b per tile
  LaunchShape reduce_w, reduce_b;  // sum the partials in tile order: C·W and C columns
  std::size_t workspace = 0;  // floats of the partials: Bt · time_tiles · C · (W + 1)
  LaunchShape step;           // conv_silu_step: grid (ceil(C / kConvStepThreads), Bt), a thread per channel
};
constexpr unsigned kConvStepThreads = 256;

// Throws std::invalid_argument for a shape the kernels do not take (W outside [1, 32], negative sizes).
inline ConvPlan conv_plan(const ConvShape& s) {
  if (s.Bt < 0 || s.T < 0 || s.C < 0) throw std::invalid_argument("conv: negative Bt, T or C");
  if (s.W < 1 || s.W > kConvMaxWidth)
    throw std::invalid_argument("conv: width W=" + std::to_string(s.W) + " is not supported (1 <= W <= " +
                                std::to_string(kConvMaxWidth) + ")");
  ConvPlan p;
  p.time_tiles = ceil_div(s.T, kConvTileRows);
  const Dim3 grid{unsigned(ceil_div(s.C, kConvTileChannels)), unsigned(p.time_tiles), unsigned(s.Bt)};
  const Dim3 block{kConvTileChannels, kConvRowGroups, 1};
  const int halo = s.W - 1;
  p.forward = {grid, block, sizeof(float) * kConvTileChannels * (kConvTileRows + halo)};
  p.backward = {grid, block, sizeof(float) * kConvTileChannels * ((kConvTileRows + 2 * halo) + (kConvTileRows + halo))};
  const unsigned reduce_threads = 256;
  p.reduce_w = {{unsigned(ceil_div(s.C * s.W, reduce_threads)), 1, 1}, {reduce_threads, 1, 1}, 0};
  p.reduce_b = {{unsigned(ceil_div(s.C, reduce_threads)), 1, 1}, {reduce_threads, 1, 1}, 0};
  p.workspace = std::size_t(s.Bt) * p.time_tiles * s.C * (s.W + 1);
  p.step = {{unsigned(ceil_div(s.C, int(kConvStepThreads))), unsigned(s.Bt), 1}, {kConvStepThreads, 1, 1}, 0};
  return p;
}

template <class S>
struct ConvForwardT {
  ConvShape shape;
  View<const S> v;      // [Bt, T, C] the conv's input (xBC before the conv; may be a column block)
  View<const float> w;  // [1, C, W]
  View<const float> b;  // [1, 1, C]
  View<S> out;          // [Bt, T, C] SiLU(conv(v))
};
using ConvForward = ConvForwardT<float>;
using ConvForwardBf16 = ConvForwardT<Bf16>;

template <class S>
struct ConvBackwardT {
  ConvShape shape;
  View<const S> v;            // as in ConvForward
  View<const float> w, b;     // as in ConvForward
  View<const S> d_out;        // [Bt, T, C]
  View<S> d_v;                // [Bt, T, C]
  View<float> d_w;            // [1, C, W]  (summed over every sequence and token)
  View<float> d_b;            // [1, 1, C]
  View<float> workspace;      // conv_plan(shape).workspace floats
};
using ConvBackward = ConvBackwardT<float>;
using ConvBackwardBf16 = ConvBackwardT<Bf16>;

// One token of every sequence (decode, cuda/inference.hpp: reference/inference.hpp's mixer_step, E2): the last
// row of the conv over the W-row window [window; v], then the window moves on by that token:
//   out[b, c] = SiLU( bias[c] + Σ_{k<W-1} w[c, k]·window[b, k, c] + w[c, W-1]·v[b, c] )
//   window[b, k] = window[b, k+1] (k < W-2),  window[b, W-2] = v[b]
// The terms are summed in conv_silu_forward's order (bias, then the taps oldest first). The window holds
// copies of inputs, so it is stored as they are (S): no rounding.
template <class S>
struct ConvStepT {
  ConvShape shape;        // T = 1
  View<S> window;         // [Bt, W-1, C]: the inputs of the W-1 tokens before this one, oldest first
  View<const S> v;        // [Bt, 1, C]: this token's input
  View<const float> w;    // [1, C, W]
  View<const float> b;    // [1, 1, C]
  View<S> out;            // [Bt, 1, C]
};
using ConvStep = ConvStepT<float>;
using ConvStepBf16 = ConvStepT<Bf16>;

// Check every argument (naming the first that does not fit), then run on the stream's device.
void conv_silu_forward(const Stream& stream, const ConvForward& args);
void conv_silu_forward(const Stream& stream, const ConvForwardBf16& args);
void conv_silu_step(const Stream& stream, const ConvStep& args);
void conv_silu_step(const Stream& stream, const ConvStepBf16& args);
void conv_silu_backward(const Stream& stream, const ConvBackward& args);
void conv_silu_backward(const Stream& stream, const ConvBackwardBf16& args);

}  // namespace transmamba::gpu
