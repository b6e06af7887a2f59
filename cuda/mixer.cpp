// The public API of cuda/mixer.hpp: the plans, the buffers, and the layer forward and backward as sequences of
// calls to the kernel families' host APIs (every intermediate a DeviceBuffer of MixerForwardDevice or
// MixerGradsDevice, or a strided view into one). Every argument and buffer is checked, and every kernel's plan
// made, before the first launch.
#include "cuda/mixer.hpp"

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/attention.hpp"
#include "cuda/backends.hpp"
#include "cuda/conv.hpp"
#include "cuda/norm.hpp"
#include "cuda/projection.hpp"
#include "cuda/step_size.hpp"

namespace transmamba::gpu {

namespace {
[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument("mixer: " + what); }

ScanShape scan_shape(const MixerShape& s, int L) {
  const MixerConfig& c = s.cfg;
  return {s.Bt, L, c.H, c.p(), c.G, c.N, c.chunk};
}

template <class S>
void check_forward_buffers(const char* fn, const MixerForwardDeviceT<S>& f, const MixerPlan& plan) {
  const MixerShape& s = f.shape;
  const MixerConfig& c = s.cfg;
  const std::int64_t Bt = s.Bt, T = s.T, H = c.H, HP = c.E, cP = plan.converter.chunks, cL = plan.scan.chunks;
  check_owned(fn, {{"u", f.u, Bt, T, c.D}, {"zxbcdt", f.zxbcdt, Bt, T, plan.in_width}, {"xBC", f.xBC, Bt, T, plan.channels},
                   {"dt", f.dt, Bt, T, H}, {"A", f.A, 1, 1, H}, {"lse", f.lse, 1, 1, std::int64_t(plan.lse)},
                   {"S0", f.S0, Bt, HP, c.N}, {"converter_chunk_states", f.converter_chunk_states, Bt * cP, HP, c.N},
                   {"converter_start_states", f.converter_start_states, Bt * cP, HP, c.N},
                   {"converter_chunk_decays", f.converter_chunk_decays, 1, 1, Bt * cP * H},
                   {"chunk_states", f.chunk_states, Bt * cL, HP, c.N}, {"start_states", f.start_states, Bt * cL, HP, c.N},
                   {"chunk_decays", f.chunk_decays, 1, 1, Bt * cL * H}, {"y", f.y, Bt, T, c.E},
                   {"y_normed", f.y_normed, Bt, T, c.E}, {"out", f.out, Bt, T, c.D}, {"final_state", f.final_state, Bt, HP, c.N}});
  if (std::is_same_v<S, Bf16>)
    check_owned(fn, {{"W_in_gemm", f.W_in_gemm, 1, c.D, plan.in_width}, {"W_out_gemm", f.W_out_gemm, 1, c.E, c.D}});
}

// A weight as the layer's GEMMs read it: the fp32 parameter itself, or (bf16 layer) its bf16 copy, which
// mixer_forward rounds from the parameter (make_copy) and mixer_backward reads as the forward left it.
template <class S>
View<const S> gemm_weight(const Stream& stream, const View<const float>& W, const DeviceBuffer<S>& copy, int rows, int cols,
                          bool make_copy) {
  if constexpr (std::is_same_v<S, float>) {
    return W;
  } else {
    if (make_copy) {
      const MixerToBf16 round{rows, cols, W, copy.view()};
      TM_DISPATCH(stream, mixer_to_bf16, round);
    }
    return copy.view();
  }
}

// dst += src on the stream (src.data == nullptr: dst = 0).
template <class V>
void add(const Stream& stream, int batch, int rows, int cols, View<const V> src, View<V> dst) {
  const MixerAddT<V> sum{batch, rows, cols, src, dst};
  TM_DISPATCH(stream, mixer_add, sum);
}
}  // namespace

bool same_layer(const MixerConfig& a, const MixerConfig& b) {
  return a.D == b.D && a.E == b.E && a.H == b.H && a.G == b.G && a.N == b.N && a.W == b.W && a.chunk == b.chunk;
}

void check_params(const char* fn, const MixerDeviceParams& prm, const MixerConfig& c) {
  check_view(fn, "W_in", prm.W_in, 1, c.D, c.in_proj_width());
  check_view(fn, "conv_w", prm.conv_w, 1, c.conv_channels(), c.W);
  check_view(fn, "conv_b", prm.conv_b, 1, 1, c.conv_channels());
  check_view(fn, "dt_bias", prm.dt_bias, 1, 1, c.H);
  check_view(fn, "A_log", prm.A_log, 1, 1, c.H);
  check_view(fn, "D_skip", prm.D_skip, 1, 1, c.H);
  check_view(fn, "norm_w", prm.norm_w, 1, 1, c.E);
  check_view(fn, "W_out", prm.W_out, 1, c.E, c.D);
}

std::size_t MixerPlan::total_floats() const {
  return u + zxbcdt + xBC + dt + A + lse + S0 + converter_chunk_states + converter_start_states +
         converter_chunk_decays + chunk_states + start_states + chunk_decays + y + y_normed + out + final_state;
}

template <class S>
std::size_t MixerPlan::bytes() const {
  const std::size_t activations = u + zxbcdt + xBC + y + y_normed + out;
  const std::size_t weights = std::is_same_v<S, Bf16> ? W_in + W_out : 0;
  return (activations + weights) * sizeof(S) + (total_floats() - activations) * sizeof(float);
}

MixerPlan mixer_plan(const MixerShape& s) {
  const MixerConfig& c = s.cfg;
  c.validate();
  if (s.Bt < 1 || s.Bt > 65535) fail("Bt=" + std::to_string(s.Bt) + " sequences (need 1 <= Bt <= 65535, a grid dimension)");
  if (s.T < 1) fail("T=" + std::to_string(s.T) + ": a sequence must hold at least one token");
  if (s.P < 0 || s.P > s.T)
    fail("TransPoint P=" + std::to_string(s.P) + " is outside [0, T=" + std::to_string(s.T) + "]");
  if ((long long)s.Bt * s.T * c.in_proj_width() > INT_MAX) fail("Bt·T·(2E + 2GN + H) exceeds 2^31 - 1 values");
  MixerPlan p;
  p.in_width = c.in_proj_width();
  p.channels = c.conv_channels();
  // The kernels' plans: each throws for a size its kernels do not take; every launch shape checked here too.
  const ConvPlan conv = conv_plan({s.Bt, s.T, p.channels, c.W});
  const NormPlan norm = norm_plan({s.Bt, s.T, c.E, c.G});
  const StepSizePlan steps = step_size_plan({s.Bt, s.T, c.H});
  p.converter = scan_plan(scan_shape(s, s.P));
  p.scan = scan_plan(scan_shape(s, s.L()));
  if (s.P > 0) p.attention = attention_plan({s.Bt, s.P, c.H, c.G, c.N, c.p()});
  p.skip = skip_launch(s.Bt, s.L(), c.E);
  for (const LaunchShape& l : {conv.forward, norm.forward, steps.forward, p.converter.chunk_states, p.converter.state_passing,
                               p.scan.chunk_states, p.scan.state_passing, p.scan.output, p.skip})
    check_launch_shape("a mixer kernel", l);
  if (s.P > 0) check_launch_shape("attention_forward", p.attention.forward);

  const std::size_t rows = std::size_t(s.Bt) * s.T, state = std::size_t(s.Bt) * c.E * c.N;
  p.u = rows * c.D;
  p.zxbcdt = rows * p.in_width;
  p.xBC = rows * p.channels;
  p.dt = rows * c.H;
  p.A = c.H;
  p.lse = p.attention.lse;  // 0 when P = 0
  p.S0 = p.final_state = state;
  p.converter_chunk_states = p.converter_start_states = p.converter.state_values;
  p.converter_chunk_decays = p.converter.chunk_decays;
  p.chunk_states = p.start_states = p.scan.state_values;
  p.chunk_decays = p.scan.chunk_decays;
  p.y = p.y_normed = rows * c.E;
  p.out = rows * c.D;
  p.W_in = std::size_t(c.D) * p.in_width;
  p.W_out = std::size_t(c.E) * c.D;
  return p;
}

template <class S>
std::size_t mixer_forward_device_bytes(const MixerShape& shape) { return mixer_plan(shape).bytes<S>(); }
template std::size_t mixer_forward_device_bytes<float>(const MixerShape&);
template std::size_t mixer_forward_device_bytes<Bf16>(const MixerShape&);

template <class S>
MixerForwardDeviceT<S>::MixerForwardDeviceT(const Device& device, const MixerShape& s) : MixerForwardDeviceT(device, s, mixer_plan(s)) {}

template <class S>
MixerForwardDeviceT<S>::MixerForwardDeviceT(const Device& d, const MixerShape& s, const MixerPlan& p)
    : shape(s), u(d, p.u), zxbcdt(d, p.zxbcdt), xBC(d, p.xBC), dt(d, p.dt), A(d, p.A), lse(d, p.lse), S0(d, p.S0),
      converter_chunk_states(d, p.converter_chunk_states), converter_start_states(d, p.converter_start_states),
      converter_chunk_decays(d, p.converter_chunk_decays), chunk_states(d, p.chunk_states),
      start_states(d, p.start_states), chunk_decays(d, p.chunk_decays), y(d, p.y), y_normed(d, p.y_normed),
      out(d, p.out), final_state(d, p.final_state), W_in_gemm(d, std::is_same_v<S, Bf16> ? p.W_in : 0),
      W_out_gemm(d, std::is_same_v<S, Bf16> ? p.W_out : 0) {}
template struct MixerForwardDeviceT<float>;
template struct MixerForwardDeviceT<Bf16>;

namespace {
template <class S>
void forward(const Stream& stream, const MixerDeviceParams& prm, MixerForwardDeviceT<S>& f) {
  const char* fn = "mixer_forward";
  const MixerShape s = f.shape;
  const MixerConfig& c = s.cfg;
  const MixerPlan plan = mixer_plan(s);
  const int Bt = s.Bt, T = s.T, P = s.P, L = s.L(), E = c.E, H = c.H, rows = Bt * T;
  check_params(fn, prm, c);
  check_forward_buffers(fn, f, plan);

  const View<S> y_prefix = f.part(f.y, E, 0), y_scan = f.part(f.y, E, 0, P);
  const View<const S> W_in = gemm_weight(stream, prm.W_in, f.W_in_gemm, c.D, plan.in_width, true),
                      W_out = gemm_weight(stream, prm.W_out, f.W_out_gemm, E, c.D, true);
  // E1: zxbcdt = u · W_in, the Bt sequences as one matrix of Bt·T rows.
  linear_forward(stream, LinearForwardT<S>{{rows, c.D, plan.in_width}, f.u.view(), W_in, f.zxbcdt.view()});
  // E2, E3: from the column blocks xBC_in and dt_raw of zxbcdt.
  conv_silu_forward(stream, {{Bt, T, plan.channels, c.W}, f.xBC_in(), prm.conv_w, prm.conv_b, f.xBC.view()});
  step_size_forward(stream, {{Bt, T, H}, f.dt_raw(), prm.dt_bias, prm.A_log, f.dt.view(), f.A.view()});
  // E4: attention among the prefix tokens [0, P) of each sequence.
  if (P > 0) attention_forward(stream, {{Bt, P, H, c.G, c.N, c.p()}, f.C(), f.B(), f.x(), y_prefix, f.lse.view()});
  // E5: S0 = the scan's state after [0, P) from a zero state (no y: stages 1-2 only; P = 0 gives zeros).
  ssm_chunked_forward(stream, {scan_shape(s, P), f.x(), f.part(f.dt, H, 0), f.A.view(), f.B(), f.C(), {}, {}, f.S0.view(),
                               f.converter_chunk_states.view(), f.converter_start_states.view(),
                               f.converter_chunk_decays.view()});
  // E6: the scan over [P, T) from S0 (P = T: no tokens, final state = S0), then the D skip.
  ssm_chunked_forward(stream, {scan_shape(s, L), f.x(P), f.part(f.dt, H, 0, P), f.A.view(), f.B(P), f.C(P), f.S0.view(),
                               y_scan, f.final_state.view(), f.chunk_states.view(), f.start_states.view(),
                               f.chunk_decays.view()});
  const SkipForwardT<S> skip{Bt, L, H, c.p(), f.x(P), prm.D_skip, y_scan, plan.skip};
  TM_DISPATCH(stream, mixer_skip_forward, skip);
  // E7: ungated for the attention rows, gated by z for the scan rows.
  rmsnorm_forward(stream, {{Bt, P, E, c.G}, y_prefix, {}, prm.norm_w, f.part(f.y_normed, E, 0)});
  rmsnorm_forward(stream, {{Bt, L, E, c.G}, y_scan, f.z(P), prm.norm_w, f.part(f.y_normed, E, 0, P)});
  // E8: out = y_normed · W_out.
  linear_forward(stream, LinearForwardT<S>{{rows, E, c.D}, f.y_normed.view(), W_out, f.out.view()});
}
}  // namespace

void mixer_forward(const Stream& stream, const MixerDeviceParams& prm, MixerForwardDevice& f) { forward(stream, prm, f); }
void mixer_forward(const Stream& stream, const MixerDeviceParams& prm, MixerForwardDeviceBf16& f) { forward(stream, prm, f); }

// ---- the backward ----------------------------------------------------------------------------------------

std::size_t MixerBackwardPlan::total_floats() const {
  return d_out + d_u + d_W_in + d_conv_w + d_conv_b + d_dt_bias + d_A_log + d_D_skip + d_norm_w + d_W_out + d_zxbcdt +
         d_xBC + d_y_normed + d_y + d_dt + d_A + d_A_converter + d_S0 + attention_d_x + attention_d_B + workspace;
}

template <class S>
std::size_t MixerBackwardPlan::bytes() const {
  const std::size_t activations = d_out + d_u + d_zxbcdt + d_xBC + d_y_normed + d_y + attention_d_x + attention_d_B;
  return activations * sizeof(S) + (total_floats() - activations) * sizeof(float);
}

MixerBackwardPlan mixer_backward_plan(const MixerShape& s) {
  MixerBackwardPlan p;
  p.forward = mixer_plan(s);
  const MixerPlan& f = p.forward;
  const MixerConfig& c = s.cfg;
  const long long scan_rows = (long long)s.Bt * s.L();
  p.skip_tiles = int((scan_rows + kSkipTileRows - 1) / kSkipTileRows);
  p.skip_backward = {{unsigned(std::max(p.skip_tiles, 1)), unsigned(c.H), 1}, {32, kSkipRowGroups, 1}, 0};
  p.skip_reduce = {{unsigned(ceil_div(c.H, 256)), 1, 1}, {256, 1, 1}, 0};
  check_launch_shape("mixer_skip_backward", p.skip_backward);
  const NormPlan norm_prefix = norm_plan({s.Bt, s.P, c.E, c.G}), norm_scan = norm_plan({s.Bt, s.L(), c.E, c.G});
  const ConvPlan conv = conv_plan({s.Bt, s.T, f.channels, c.W});
  const StepSizePlan steps = step_size_plan({s.Bt, s.T, c.H});
  for (const LaunchShape& l : {norm_prefix.backward, norm_scan.backward, conv.backward, steps.backward,
                               f.scan.backward_chunk, f.converter.backward_chunk, f.scan.group_sum, f.converter.group_sum})
    check_launch_shape("a mixer backward kernel", l);
  if (s.P > 0) {
    check_launch_shape("attention_backward", f.attention.backward_query);
    check_launch_shape("attention_backward", f.attention.backward_key);
  }
  p.d_out = p.d_u = f.u;
  p.d_W_in = std::size_t(c.D) * f.in_width;
  p.d_conv_w = std::size_t(f.channels) * c.W;
  p.d_conv_b = f.channels;
  p.d_dt_bias = p.d_A_log = p.d_D_skip = p.d_A = p.d_A_converter = c.H;
  p.d_norm_w = c.E;
  p.d_W_out = std::size_t(c.E) * c.D;
  p.d_zxbcdt = f.zxbcdt;
  p.d_xBC = f.xBC;
  p.d_y_normed = p.d_y = f.y;
  p.d_dt = f.dt;
  p.d_S0 = f.S0;
  p.attention_d_x = std::size_t(s.Bt) * s.P * c.E;
  p.attention_d_B = std::size_t(s.Bt) * s.P * c.G * c.N;
  p.workspace = std::max({norm_prefix.workspace, norm_scan.workspace, f.scan.backward_workspace,
                          f.converter.backward_workspace, f.attention.workspace, steps.workspace, conv.workspace,
                          std::size_t(p.skip_tiles) * c.H});
  return p;
}

template <class S>
std::size_t mixer_backward_device_bytes(const MixerShape& shape) { return mixer_backward_plan(shape).bytes<S>(); }
template std::size_t mixer_backward_device_bytes<float>(const MixerShape&);
template std::size_t mixer_backward_device_bytes<Bf16>(const MixerShape&);

template <class S>
MixerGradsDeviceT<S>::MixerGradsDeviceT(const Device& device, const MixerShape& s) : MixerGradsDeviceT(device, s, mixer_backward_plan(s)) {}

template <class S>
MixerGradsDeviceT<S>::MixerGradsDeviceT(const Device& d, const MixerShape& s, const MixerBackwardPlan& p)
    : shape(s), d_out(d, p.d_out), d_u(d, p.d_u), d_W_in(d, p.d_W_in), d_conv_w(d, p.d_conv_w), d_conv_b(d, p.d_conv_b),
      d_dt_bias(d, p.d_dt_bias), d_A_log(d, p.d_A_log), d_D_skip(d, p.d_D_skip), d_norm_w(d, p.d_norm_w),
      d_W_out(d, p.d_W_out), d_zxbcdt(d, p.d_zxbcdt), d_xBC(d, p.d_xBC), d_y_normed(d, p.d_y_normed), d_y(d, p.d_y),
      d_dt(d, p.d_dt), d_A(d, p.d_A), d_A_converter(d, p.d_A_converter), d_S0(d, p.d_S0),
      attention_d_x(d, p.attention_d_x), attention_d_B(d, p.attention_d_B), workspace(d, p.workspace) {}
template struct MixerGradsDeviceT<float>;
template struct MixerGradsDeviceT<Bf16>;

namespace {
template <class S>
void backward(const Stream& stream, const MixerDeviceParams& prm, const MixerForwardDeviceT<S>& f, MixerGradsDeviceT<S>& g) {
  const char* fn = "mixer_backward";
  const MixerShape s = f.shape;
  const MixerConfig& c = s.cfg;
  const MixerBackwardPlan plan = mixer_backward_plan(s);
  const int Bt = s.Bt, T = s.T, P = s.P, L = s.L(), E = c.E, H = c.H, GN = c.G * c.N, rows = Bt * T;
  if (g.shape.Bt != Bt || g.shape.T != T || g.shape.P != P || !same_layer(g.shape.cfg, c))
    throw std::invalid_argument("mixer_backward: the gradients' shape (g.shape) is not the forward's (f.shape)");
  check_params(fn, prm, c);
  check_forward_buffers(fn, f, plan.forward);
  const std::int64_t HP = E, in_w = plan.forward.in_width;
  check_owned(fn, {{"d_out", g.d_out, Bt, T, c.D}, {"d_u", g.d_u, Bt, T, c.D}, {"d_W_in", g.d_W_in, 1, c.D, in_w},
                   {"d_conv_w", g.d_conv_w, 1, plan.forward.channels, c.W}, {"d_conv_b", g.d_conv_b, 1, 1, plan.forward.channels},
                   {"d_dt_bias", g.d_dt_bias, 1, 1, H}, {"d_A_log", g.d_A_log, 1, 1, H}, {"d_D_skip", g.d_D_skip, 1, 1, H},
                   {"d_norm_w", g.d_norm_w, 1, 1, E}, {"d_W_out", g.d_W_out, 1, E, c.D},
                   {"d_zxbcdt", g.d_zxbcdt, Bt, T, in_w}, {"d_xBC", g.d_xBC, Bt, T, plan.forward.channels},
                   {"d_y_normed", g.d_y_normed, Bt, T, E}, {"d_y", g.d_y, Bt, T, E}, {"d_dt", g.d_dt, Bt, T, H},
                   {"d_A", g.d_A, 1, 1, H}, {"d_A_converter", g.d_A_converter, 1, 1, H}, {"d_S0", g.d_S0, Bt, HP, c.N},
                   {"attention_d_x", g.attention_d_x, Bt, P, E}, {"attention_d_B", g.attention_d_B, Bt, P, GN},
                   {"workspace", g.workspace, 1, 1, std::int64_t(plan.workspace)}});

  const View<float> ws = g.workspace.view();
  const View<S> d_y_prefix = g.part(g.d_y, E, 0), d_y_scan = g.part(g.d_y, E, 0, P);
  const View<const S> W_in = gemm_weight(stream, prm.W_in, f.W_in_gemm, c.D, plan.forward.in_width, false),
                      W_out = gemm_weight(stream, prm.W_out, f.W_out_gemm, E, c.D, false);
  // E8: d_y_normed = d_out · W_outᵀ, d_W_out = y_normedᵀ · d_out.
  linear_backward(stream, LinearBackwardT<S>{{rows, E, c.D}, f.y_normed.view(), W_out, g.d_out.view(), g.d_y_normed.view(),
                                             g.d_W_out.view()});
  // E7: the attention rows ungated, the scan rows gated (d_z); d_norm_w from both, the second call adding.
  rmsnorm_backward(stream, {{Bt, P, E, c.G}, f.part(f.y, E, 0), {}, prm.norm_w, g.part(g.d_y_normed, E, 0), d_y_prefix, {},
                            g.d_norm_w.view(), false, ws});
  rmsnorm_backward(stream, {{Bt, L, E, c.G}, f.part(f.y, E, 0, P), f.z(P), prm.norm_w, g.part(g.d_y_normed, E, 0, P), d_y_scan,
                            g.d_z(P), g.d_norm_w.view(), true, ws});
  add<S>(stream, Bt, P, E, {}, g.d_z());  // the attention rows have no gate: d_z = 0
  // E6: the scan over [P, T) from S0 (its d_S_init is d_S0; no gradient reaches the final state), then the D skip.
  ssm_chunked_backward(stream, {scan_shape(s, L), f.x(P), f.part(f.dt, H, 0, P), f.A.view(), f.B(P), f.C(P), f.S0.view(),
                                f.start_states.view(), d_y_scan, {}, g.d_x(P), g.part(g.d_dt, H, 0, P), g.d_B(P), g.d_C(P),
                                g.d_A.view(), g.d_S0.view(), ws});
  const SkipBackwardT<S> skip{Bt, L, H, c.p(), f.x(P), d_y_scan, prm.D_skip, g.d_x(P), g.d_D_skip.view(), ws,
                          plan.skip_backward, plan.skip_reduce};
  TM_DISPATCH(stream, mixer_skip_backward, skip);
  // E5: the converter (the scan over [0, P) with no y) carries d_S0 back to the prefix: d_x, d_B, d_dt, d_A.
  ssm_chunked_backward(stream, {scan_shape(s, P), f.x(), f.part(f.dt, H, 0), f.A.view(), f.B(), {}, {},
                                f.converter_start_states.view(), {}, g.d_S0.view(), g.d_x(), g.part(g.d_dt, H, 0), g.d_B(), {},
                                g.d_A_converter.view(), {}, ws});
  add<float>(stream, 1, 1, H, g.d_A_converter.view(), g.d_A.view());
  // E4: attention among the prefix: d_C written, d_x and d_B added to the converter's.
  if (P > 0) {
    attention_backward(stream, {{Bt, P, H, c.G, c.N, c.p()}, f.C(), f.B(), f.x(), f.part(f.y, E, 0), f.lse.view(), d_y_prefix,
                                g.d_C(), g.attention_d_B.view(), g.attention_d_x.view(), ws});
    add<S>(stream, Bt, P, E, g.attention_d_x.view(), g.d_x());
    add<S>(stream, Bt, P, GN, g.attention_d_B.view(), g.d_B());
  }
  // E3: d_dt_raw (a column block of d_zxbcdt), d_dt_bias, d_A_log.
  step_size_backward(stream, {{Bt, T, H}, f.dt_raw(), prm.dt_bias, prm.A_log, g.d_dt.view(), g.d_A.view(), g.d_dt_raw(),
                              g.d_dt_bias.view(), g.d_A_log.view(), ws});
  // E2: the conv on the joined [d_x | d_B | d_C] -> d_xBC_in (a column block of d_zxbcdt), d_conv_w, d_conv_b.
  conv_silu_backward(stream, {{Bt, T, plan.forward.channels, c.W}, f.xBC_in(), prm.conv_w, prm.conv_b, g.d_xBC.view(),
                              g.d_xBC_in(), g.d_conv_w.view(), g.d_conv_b.view(), ws});
  // E1: d_u = d_zxbcdt · W_inᵀ, d_W_in = uᵀ · d_zxbcdt.
  linear_backward(stream, LinearBackwardT<S>{{rows, c.D, plan.forward.in_width}, f.u.view(), W_in, g.d_zxbcdt.view(),
                                             g.d_u.view(), g.d_W_in.view()});
}
}  // namespace

void mixer_backward(const Stream& stream, const MixerDeviceParams& prm, const MixerForwardDevice& f, MixerGradsDevice& g) {
  backward(stream, prm, f, g);
}
void mixer_backward(const Stream& stream, const MixerDeviceParams& prm, const MixerForwardDeviceBf16& f,
                    MixerGradsDeviceBf16& g) {
  backward(stream, prm, f, g);
}

}  // namespace transmamba::gpu
