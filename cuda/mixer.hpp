// One TransMamba mixer layer FORWARD on a device (DESIGN.md section 2, E1-E8), mirroring reference/mixer.hpp's
// mixer_forward, for Bt sequences of T tokens and one TransPoint P in [0, T] (the same for every sequence):
//
//   E1  zxbcdt = u · W_in                      one GEMM over the Bt·T rows (cuda/projection.hpp)
//       -> z, xBC_in, dt_raw                   column blocks of zxbcdt: strided views, no copies
//   E2  xBC = SiLU(conv(xBC_in))               whole sequences, across P (cuda/conv.hpp) -> x (= V), B (= K), C (= Q)
//   E3  dt = softplus(dt_raw + dt_bias), A = -exp(A_log)            (cuda/step_size.hpp)
//   E4  y[t < P] = grouped causal attention(C, B, x) among the prefix (cuda/attention.hpp; lse kept)
//   E5  S0 = the scan's state after the prefix from a zero state: the chunked scan over [0, P) with y null
//   E6  y[t >= P] = the chunked scan over [P, T) from S0 (cuda/ssm.hpp) + D_skip[h]·x[t, h] (added by the scan's
//       output kernel: y is written once);
//       final state = the scan's final state (= S0 when P = T: the scan over no tokens passes S0 through)
//   E7  y_normed = RMSNorm_G(y) for t < P, RMSNorm_G(y ⊙ SiLU(z)) for t >= P     (cuda/norm.hpp, two calls)
//   E8  out = y_normed · W_out                 one GEMM over the Bt·T rows
//
// and the layer BACKWARD (mixer_backward), mirroring reference/mixer.hpp's mixer_backward, in reverse: E8's
// GEMM pair, E7's two norm backwards (d_norm_w accumulated by the second), E6's scan backward over [P, T) from
// S0 (its d_S_init is d_S0; d_x gets the D skip's D·d_y and d_D_skip its sum there), E5's converter backward over [0, P) (the scan's
// backward with no d_y and d_final_state = d_S0, from the forward's converter start states), E4's attention
// backward, the sums where two of them meet (mixer.cu: mixer_add), E3, E2, and E1's GEMM pair on
// d_zxbcdt = [d_z | d_xBC_in | d_dt_raw], whose column blocks the stages write as strided views.
//
// Every intermediate stays on the device in MixerForwardDevice, which owns it (DeviceBuffers), for the
// backward; MixerGradsDevice owns the backward's.
//
// Storage (cuda/bf16.hpp): MixerForwardDeviceT<S> and MixerGradsDeviceT<S> hold the per-token activations (u,
// zxbcdt, xBC, y, y_normed, out) and their gradients in S: float (MixerForwardDevice, MixerGradsDevice), or Bf16
// (MixerForwardDeviceBf16, MixerGradsDeviceBf16: the bf16 layer, whose baseline is reference/mixer.hpp's
// StorageRounding at exactly these storage points). dt, A, lse, the states and every parameter gradient stay
// fp32; the parameters are fp32 for both, and the bf16 layer's GEMMs read bf16 copies of W_in and W_out that
// each mixer_forward makes (W_in_gemm, W_out_gemm). Plain C++: the shape, the plan (every buffer's size and the kernels' workspaces), the argument
// checks (all made before anything is launched).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <vector>

#include "cuda/attention.hpp"
#include "cuda/bf16.hpp"
#include "cuda/device.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/ssm.hpp"
#include "cuda/tensor.hpp"
#include "reference/config.hpp"  // MixerConfig: plain C++, no Eigen

namespace transmamba::gpu {

struct MixerShape {
  int Bt = 1;       // sequences (>= 1)
  int T = 1;        // tokens per sequence (>= 1)
  int P = 0;        // the TransPoint of every sequence, in [0, T]
  MixerConfig cfg;  // D, E, H, G, N, W and the chunk size Q
  int L() const { return T - P; }  // scan tokens per sequence
};

// The sizes (in floats) of every buffer of MixerForwardDevice, and the plans of the kernels the layer calls.
struct MixerPlan {
  int in_width = 0;          // 2E + 2GN + H: the columns of zxbcdt = [z | xBC_in | dt_raw]
  int channels = 0;          // E + 2GN: the columns of xBC = [x | B | C]
  ScanPlan converter;        // E5: the scan over [0, P), final state only
  ScanPlan scan;             // E6: the scan over [P, T)
  AttentionPlan attention;   // E4; only when P > 0 (a P = 0 layer, Mamba2, takes N and p attention does not)
  std::size_t u = 0, zxbcdt = 0, xBC = 0, dt = 0, A = 0, lse = 0, S0 = 0;
  std::size_t converter_chunk_states = 0, converter_start_states = 0, converter_chunk_decays = 0;
  std::size_t chunk_states = 0, start_states = 0, chunk_decays = 0;
  std::size_t y = 0, y_normed = 0, out = 0, final_state = 0;
  std::size_t W_in = 0, W_out = 0;  // the weights' sizes: the bf16 layer's GEMM copies
  std::size_t total_floats() const;  // every buffer of the fp32 layer
  // Bytes of MixerForwardDeviceT<S>: the activations in S, the rest fp32, and for Bf16 the weights' copies.
  template <class S>
  std::size_t bytes() const;
};

// Throws std::invalid_argument for a shape the layer does not take: Bt or T < 1, P outside [0, T], a config
// that does not validate, and (propagated from the kernels' plans) sizes the kernels do not support: conv
// width, chunk size, norm groups, and attention's N and p when P > 0.
MixerPlan mixer_plan(const MixerShape& shape);
// The device memory (bytes) one layer call needs beyond its parameters: every buffer of MixerForwardDeviceT<S>.
template <class S = float>
std::size_t mixer_forward_device_bytes(const MixerShape& shape);

// The parameters on the device, in reference/params.hpp's shapes (contiguous or with a wider row stride).
struct MixerDeviceParams {
  View<const float> W_in;     // [1, D, 2E + 2GN + H]
  View<const float> conv_w;   // [1, E + 2GN, W]
  View<const float> conv_b;   // [1, 1, E + 2GN]
  View<const float> dt_bias;  // [1, 1, H]
  View<const float> A_log;    // [1, 1, H]
  View<const float> D_skip;   // [1, 1, H]
  View<const float> norm_w;   // [1, 1, E]
  View<const float> W_out;    // [1, E, D]
};

// Whether two configs describe the same layer (every field: D, E, H, G, N, W, chunk).
bool same_layer(const MixerConfig& a, const MixerConfig& b);
// Throws std::invalid_argument "<fn>: <parameter> ..." for the first parameter that does not fit config c.
void check_params(const char* fn, const MixerDeviceParams& params, const MixerConfig& c);
// A buffer a layer object owns, with the shape it must hold: check_owned throws as check_view does for the first
// that does not (null after a move, too small when the shape was changed after construction).
struct Owned {
  template <class T>
  Owned(const char* name, const DeviceBuffer<T>& buf, std::int64_t batch, std::int64_t rows, std::int64_t cols)
      : check([name, &buf, batch, rows, cols](const char* fn) { check_view(fn, name, buf.view(), batch, rows, cols); }) {}
  std::function<void(const char* fn)> check;
};
inline void check_owned(const char* fn, std::initializer_list<Owned> buffers) {
  for (const Owned& o : buffers) o.check(fn);
}

// Every tensor of one layer call, owned. All [Bt, rows, cols] contiguous (sequence b at b·rows·cols).
// Columns [col, col + cols) of tokens [first, T) of every sequence of a [Bt, T, width] buffer: a strided view
// (batch stride T·width, row stride width); rows past T: an empty view.
template <class V>
View<V> row_block(const DeviceBuffer<V>& buf, int T, int width, int col, int first = 0) {
  const std::int64_t batch = std::int64_t(T) * width;
  if (!buf.data()) return {nullptr, 0, batch, width};
  const std::size_t offset = std::min(buf.size(), std::size_t(first) * width + col);  // rows past T: empty
  return {buf.data() + offset, buf.size() - offset, batch, width};
}

template <class S>
struct MixerForwardDeviceT {
  MixerForwardDeviceT(const Device& device, const MixerShape& shape);  // allocates mixer_plan(shape)'s buffers

  MixerShape shape;
  DeviceBuffer<S> u;                // [Bt, T, D]: the layer's input, written by the caller before mixer_forward
  DeviceBuffer<S> zxbcdt;           // E1 [Bt, T, 2E + 2GN + H] = [z | xBC_in | dt_raw]
  DeviceBuffer<S> xBC;              // E2 [Bt, T, E + 2GN] = [x | B | C] after conv + SiLU
  DeviceBuffer<float> dt;           // E3 [Bt, T, H]
  DeviceBuffer<float> A;            // E3 [H]
  DeviceBuffer<float> lse;          // E4 [Bt·G·P]: attention's log-sum-exp, index (b·G + g)·P + t
  DeviceBuffer<float> S0;           // E5 [Bt, H·p, N]
  DeviceBuffer<float> converter_chunk_states, converter_start_states;  // E5 stages 1-2: [Bt·ceil(P/Q), H·p, N]
  DeviceBuffer<float> converter_chunk_decays;                          // [Bt·ceil(P/Q)·H]
  DeviceBuffer<float> chunk_states, start_states;  // E6 stages 1-2 over [P, T): [Bt·ceil((T-P)/Q), H·p, N]
  DeviceBuffer<float> chunk_decays;                // [Bt·ceil((T-P)/Q)·H]
  DeviceBuffer<S> y;                // E4/E6 [Bt, T, E] before the norm (scan rows include the D skip)
  DeviceBuffer<S> y_normed;         // E7 [Bt, T, E]
  DeviceBuffer<S> out;              // E8 [Bt, T, D]
  DeviceBuffer<float> final_state;  // [Bt, H·p, N]: the state after token T-1 (the decode state)
  // The bf16 layer's W_in [D, 2E + 2GN + H] and W_out [E, D] as its GEMMs read them, rounded from the fp32
  // parameters by each mixer_forward (and read by mixer_backward); empty in the fp32 layer.
  DeviceBuffer<S> W_in_gemm, W_out_gemm;

  // row_block of a buffer of this layer; the named parts, from token `first` on:
  template <class V>
  View<V> part(const DeviceBuffer<V>& buf, int width, int col, int first = 0) const {
    return row_block(buf, shape.T, width, col, first);
  }
  View<S> z(int first = 0) const { return part(zxbcdt, shape.cfg.in_proj_width(), 0, first); }
  View<S> xBC_in(int first = 0) const { return part(zxbcdt, shape.cfg.in_proj_width(), shape.cfg.E, first); }
  View<S> dt_raw(int first = 0) const {
    return part(zxbcdt, shape.cfg.in_proj_width(), shape.cfg.E + shape.cfg.conv_channels(), first);
  }
  View<S> x(int first = 0) const { return part(xBC, shape.cfg.conv_channels(), 0, first); }
  View<S> B(int first = 0) const { return part(xBC, shape.cfg.conv_channels(), shape.cfg.E, first); }
  View<S> C(int first = 0) const {
    return part(xBC, shape.cfg.conv_channels(), shape.cfg.E + shape.cfg.G * shape.cfg.N, first);
  }

 private:
  MixerForwardDeviceT(const Device& device, const MixerShape& shape, const MixerPlan& plan);
};
using MixerForwardDevice = MixerForwardDeviceT<float>;
using MixerForwardDeviceBf16 = MixerForwardDeviceT<Bf16>;

// The layer forward of f.shape on f.u with params: every argument and buffer checked first (naming the first
// that does not fit: std::invalid_argument "mixer_forward: ..."), then E1-E8 on the stream.
void mixer_forward(const Stream& stream, const MixerDeviceParams& params, MixerForwardDevice& f);
void mixer_forward(const Stream& stream, const MixerDeviceParams& params, MixerForwardDeviceBf16& f);

// ---- the backward ----------------------------------------------------------------------------------------

// The sizes (in floats) of every buffer of MixerGradsDevice and the backward's own launches.
struct MixerBackwardPlan {
  MixerPlan forward;
  std::size_t d_out = 0, d_u = 0;
  std::size_t d_W_in = 0, d_conv_w = 0, d_conv_b = 0, d_dt_bias = 0, d_A_log = 0, d_D_skip = 0, d_norm_w = 0, d_W_out = 0;
  std::size_t d_zxbcdt = 0, d_xBC = 0, d_y_normed = 0, d_y = 0, d_dt = 0, d_A = 0, d_A_converter = 0, d_S0 = 0;
  std::size_t attention_d_x = 0, attention_d_B = 0;
  // One workspace for every stage (they run one after another on the stream): the largest of the norm's
  // (either call), the scan's and the converter's backward workspace, attention's rowsum, the step size's
  // and the conv's partials.
  std::size_t workspace = 0;
  std::size_t total_floats() const;  // every buffer of the fp32 layer
  template <class S>
  std::size_t bytes() const;  // of MixerGradsDeviceT<S>: the activations' gradients in S, the rest fp32
};

// Throws as mixer_plan does.
MixerBackwardPlan mixer_backward_plan(const MixerShape& shape);
// The device memory (bytes) of one layer backward beyond its parameters and MixerForwardDeviceT<S>: every
// buffer of MixerGradsDeviceT<S>.
template <class S = float>
std::size_t mixer_backward_device_bytes(const MixerShape& shape);

// Every gradient of one layer call, owned; all [Bt, rows, cols] contiguous like MixerForwardDevice's buffers.
template <class S>
struct MixerGradsDeviceT {
  MixerGradsDeviceT(const Device& device, const MixerShape& shape);  // allocates mixer_backward_plan(shape)'s buffers

  MixerShape shape;
  DeviceBuffer<S> d_out;  // [Bt, T, D]: the gradient of out, written by the caller before mixer_backward
  DeviceBuffer<S> d_u;    // [Bt, T, D]
  // The parameters' gradients, in MixerDeviceParams' shapes, summed over every token of every sequence.
  DeviceBuffer<float> d_W_in, d_conv_w, d_conv_b, d_dt_bias, d_A_log, d_D_skip, d_norm_w, d_W_out;
  DeviceBuffer<S> d_zxbcdt;        // E1 [Bt, T, 2E + 2GN + H] = [d_z | d_xBC_in | d_dt_raw] (d_z = 0 for t < P)
  DeviceBuffer<S> d_xBC;           // E2 [Bt, T, E + 2GN] = [d_x | d_B | d_C]
  DeviceBuffer<S> d_y_normed;      // E8 [Bt, T, E]
  DeviceBuffer<S> d_y;             // E7 [Bt, T, E]
  DeviceBuffer<float> d_dt;        // E3 [Bt, T, H]
  DeviceBuffer<float> d_A;         // E3 [H]: the scan's, plus ...
  DeviceBuffer<float> d_A_converter;             // ... the converter's [H]
  DeviceBuffer<float> d_S0;                      // E5 [Bt, H·p, N]
  DeviceBuffer<S> attention_d_x, attention_d_B;  // E4 [Bt, P, E], [Bt, P, G·N]: added to the converter's
  DeviceBuffer<float> workspace;                 // MixerBackwardPlan::workspace

  template <class V>
  View<V> part(const DeviceBuffer<V>& buf, int width, int col, int first = 0) const {
    return row_block(buf, shape.T, width, col, first);
  }
  View<S> d_z(int first = 0) const { return part(d_zxbcdt, shape.cfg.in_proj_width(), 0, first); }
  View<S> d_xBC_in() const { return part(d_zxbcdt, shape.cfg.in_proj_width(), shape.cfg.E); }
  View<S> d_dt_raw() const {
    return part(d_zxbcdt, shape.cfg.in_proj_width(), shape.cfg.E + shape.cfg.conv_channels());
  }
  View<S> d_x(int first = 0) const { return part(d_xBC, shape.cfg.conv_channels(), 0, first); }
  View<S> d_B(int first = 0) const { return part(d_xBC, shape.cfg.conv_channels(), shape.cfg.E, first); }
  View<S> d_C(int first = 0) const {
    return part(d_xBC, shape.cfg.conv_channels(), shape.cfg.E + shape.cfg.G * shape.cfg.N, first);
  }

 private:
  MixerGradsDeviceT(const Device& device, const MixerShape& shape, const MixerBackwardPlan& plan);
};
using MixerGradsDevice = MixerGradsDeviceT<float>;
using MixerGradsDeviceBf16 = MixerGradsDeviceT<Bf16>;

// The layer as its kernel families' calls, in order (E1 in_proj, E2 conv, E3 step_size, E4 attention (P > 0),
// E5 converter, E6 scan with the D skip, E7 norm, E8 out_proj: tools/bench/kernel_cost.hpp's names), each with its
// backward: mixer_forward runs the forwards in this order, mixer_backward the backwards in the reverse one, and
// tm-bench times each stage alone on the layer's own buffers. A stage's calls include the glue where its
// gradients meet another's (E4's and E5's backward add into d_x, d_B, d_A; E7's zeroes the attention rows' d_z)
// and, in the bf16 layer, E1's and E8's rounding of their weight copies. Checks every argument and buffer first
// (std::invalid_argument "mixer_stages: ..."); g == nullptr: forwards only (the backward functions empty). The
// functions hold stream, f and *g by reference.
struct MixerStage {
  const char* family;
  std::function<void()> forward, backward;
};
template <class S>
std::vector<MixerStage> mixer_stages(const Stream& stream, const MixerDeviceParams& params, const MixerForwardDeviceT<S>& f,
                                     const MixerGradsDeviceT<S>* g);

// The layer backward of f (a mixer_forward's result, with the same params) from g.d_out: every argument and
// buffer checked first (std::invalid_argument "mixer_backward: ...", also when g.shape is not f.shape), then
// every gradient of g written (not accumulated) on the stream. Deterministic: no atomics.
void mixer_backward(const Stream& stream, const MixerDeviceParams& params, const MixerForwardDevice& f, MixerGradsDevice& g);
void mixer_backward(const Stream& stream, const MixerDeviceParams& params, const MixerForwardDeviceBf16& f,
                    MixerGradsDeviceBf16& g);

// Where two gradients meet (mixer.cu): dst[b, t, c] += src[b, t, c]; src.data == nullptr: dst = 0. Storage S:
// float, or Bf16 (the sum in fp32, rounded once).
constexpr unsigned kAddThreads = 256;
template <class S>
struct MixerAddT {
  int Bt = 0, T = 0, cols = 0;
  View<const S> src;  // [Bt, T, cols] or empty
  View<S> dst;        // [Bt, T, cols]
};
using MixerAdd = MixerAddT<float>;
using MixerAddBf16 = MixerAddT<Bf16>;

// The bf16 layer's GEMM copies of W_in and W_out (mixer.cu): dst = bf16(src), rounded to nearest even, one thread
// per value.
struct MixerToBf16 {
  int rows = 0, cols = 0;
  View<const float> src;  // [1, rows, cols]
  View<Bf16> dst;         // [1, rows, cols]
};

}  // namespace transmamba::gpu
