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
  for (const LaunchShape& l : {conv.forward, norm.forward, steps.forward, p.converter.chunk_states, p.converter.state_passing,
                               p.scan.chunk_states, p.scan.state_passing, p.scan.output})
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
                          f.converter.backward_workspace, f.attention.workspace, steps.workspace, conv.workspace});
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
// Throws std::invalid_argument "<fn>: ..." for the first gradient buffer that does not fit f's shape.
template <class S>
void check_grads(const char* fn, const MixerForwardDeviceT<S>& f, const MixerGradsDeviceT<S>& g, const MixerBackwardPlan& plan) {
  const MixerShape& s = f.shape;
  const MixerConfig& c = s.cfg;
  const std::int64_t Bt = s.Bt, T = s.T, P = s.P, E = c.E, H = c.H, GN = c.G * c.N, in_w = plan.forward.in_width;
  if (g.shape.Bt != s.Bt || g.shape.T != s.T || g.shape.P != s.P || !same_layer(g.shape.cfg, c))
    throw std::invalid_argument(std::string(fn) + ": the gradients' shape (g.shape) is not the forward's (f.shape)");
  check_owned(fn, {{"d_out", g.d_out, Bt, T, c.D}, {"d_u", g.d_u, Bt, T, c.D}, {"d_W_in", g.d_W_in, 1, c.D, in_w},
                   {"d_conv_w", g.d_conv_w, 1, plan.forward.channels, c.W}, {"d_conv_b", g.d_conv_b, 1, 1, plan.forward.channels},
                   {"d_dt_bias", g.d_dt_bias, 1, 1, H}, {"d_A_log", g.d_A_log, 1, 1, H}, {"d_D_skip", g.d_D_skip, 1, 1, H},
                   {"d_norm_w", g.d_norm_w, 1, 1, E}, {"d_W_out", g.d_W_out, 1, E, c.D},
                   {"d_zxbcdt", g.d_zxbcdt, Bt, T, in_w}, {"d_xBC", g.d_xBC, Bt, T, plan.forward.channels},
                   {"d_y_normed", g.d_y_normed, Bt, T, E}, {"d_y", g.d_y, Bt, T, E}, {"d_dt", g.d_dt, Bt, T, H},
                   {"d_A", g.d_A, 1, 1, H}, {"d_A_converter", g.d_A_converter, 1, 1, H}, {"d_S0", g.d_S0, Bt, E, c.N},
                   {"attention_d_x", g.attention_d_x, Bt, P, E}, {"attention_d_B", g.attention_d_B, Bt, P, GN},
                   {"workspace", g.workspace, 1, 1, std::int64_t(plan.workspace)}});
}

// The layer's stages (mixer.hpp), every view and plan resolved here; the lambdas hold the stream, f and g by
// reference and everything else by value.
template <class S>
std::vector<MixerStage> stages(const char* fn, const Stream& stream, const MixerDeviceParams& prm,
                               const MixerForwardDeviceT<S>& f, const MixerGradsDeviceT<S>* g) {
  const MixerShape s = f.shape;
  const MixerConfig& c = s.cfg;
  const MixerBackwardPlan bplan = mixer_backward_plan(s);
  const MixerPlan& plan = bplan.forward;
  const int Bt = s.Bt, T = s.T, P = s.P, L = s.L(), E = c.E, H = c.H, GN = c.G * c.N, rows = Bt * T;
  check_params(fn, prm, c);
  check_forward_buffers(fn, f, plan);
  if (g) check_grads(fn, f, *g, bplan);

  const View<S> y_prefix = f.part(f.y, E, 0), y_scan = f.part(f.y, E, 0, P);
  const AttentionShape attention{Bt, P, H, c.G, c.N, c.p()};
  std::vector<MixerStage> out;
  // A stage; without g its backward is left empty, so the backward lambdas below dereference g only when it is set.
  auto stage = [&](const char* family, std::function<void()> forward, std::function<void()> backward) {
    out.push_back({family, std::move(forward), g ? std::move(backward) : std::function<void()>()});
  };
  const View<float> ws = g ? g->workspace.view() : View<float>{};
  const View<S> d_y_prefix = g ? g->part(g->d_y, E, 0) : View<S>{}, d_y_scan = g ? g->part(g->d_y, E, 0, P) : View<S>{};

  // E1: zxbcdt = u · W_in, the Bt sequences as one matrix of Bt·T rows (the bf16 layer first rounds its copy of
  // W_in); back: d_u = d_zxbcdt · W_inᵀ, d_W_in = uᵀ · d_zxbcdt.
  stage("in_proj",
        [=, &stream, &f] {
          const View<const S> W_in = gemm_weight(stream, prm.W_in, f.W_in_gemm, c.D, plan.in_width, true);
          linear_forward(stream, LinearForwardT<S>{{rows, c.D, plan.in_width}, f.u.view(), W_in, f.zxbcdt.view()});
        },
        [=, &stream, &f] {
          const MixerGradsDeviceT<S>& gr = *g;  // the backward lambdas exist only with g
          const View<const S> W_in = gemm_weight(stream, prm.W_in, f.W_in_gemm, c.D, plan.in_width, false);
          linear_backward(stream, LinearBackwardT<S>{{rows, c.D, plan.in_width}, f.u.view(), W_in, gr.d_zxbcdt.view(),
                                                     gr.d_u.view(), gr.d_W_in.view()});
        });
  // E2: xBC = SiLU(conv(xBC_in)), the column block of zxbcdt; back: the conv on the joined [d_x | d_B | d_C] ->
  // d_xBC_in (a column block of d_zxbcdt), d_conv_w, d_conv_b.
  stage("conv", [=, &stream, &f] { conv_silu_forward(stream, {{Bt, T, plan.channels, c.W}, f.xBC_in(), prm.conv_w, prm.conv_b, f.xBC.view()}); },
        [=, &stream, &f] {
          const MixerGradsDeviceT<S>& gr = *g;  // the backward lambdas exist only with g
          conv_silu_backward(stream, {{Bt, T, plan.channels, c.W}, f.xBC_in(), prm.conv_w, prm.conv_b, gr.d_xBC.view(),
                                      gr.d_xBC_in(), gr.d_conv_w.view(), gr.d_conv_b.view(), ws});
        });
  // E3: dt, A from dt_raw (a column block of zxbcdt); back: d_dt_raw, d_dt_bias, d_A_log.
  stage("step_size", [=, &stream, &f] { step_size_forward(stream, {{Bt, T, H}, f.dt_raw(), prm.dt_bias, prm.A_log, f.dt.view(), f.A.view()}); },
        [=, &stream, &f] {
          const MixerGradsDeviceT<S>& gr = *g;  // the backward lambdas exist only with g
          step_size_backward(stream, {{Bt, T, H}, f.dt_raw(), prm.dt_bias, prm.A_log, gr.d_dt.view(), gr.d_A.view(), gr.d_dt_raw(),
                                      gr.d_dt_bias.view(), gr.d_A_log.view(), ws});
        });
  // E4: attention among the prefix tokens [0, P) of each sequence; back: d_C written, d_x and d_B added to the
  // converter's (E5's backward runs first).
  if (P > 0)
    stage("attention", [=, &stream, &f] { attention_forward(stream, {attention, f.C(), f.B(), f.x(), y_prefix, f.lse.view()}); },
          [=, &stream, &f] {
          const MixerGradsDeviceT<S>& gr = *g;  // the backward lambdas exist only with g
            attention_backward(stream, {attention, f.C(), f.B(), f.x(), f.lse.view(), d_y_prefix, gr.d_C(),
                                        gr.attention_d_B.view(), gr.attention_d_x.view(), ws});
            add<S>(stream, Bt, P, E, gr.attention_d_x.view(), gr.d_x());
            add<S>(stream, Bt, P, GN, gr.attention_d_B.view(), gr.d_B());
          });
  // E5: S0 = the scan's state after [0, P) from a zero state (no y: stages 1-2 only; P = 0 gives zeros); back: the
  // converter carries d_S0 to the prefix's d_x, d_B, d_dt, and its d_A is added to the scan's.
  stage("converter",
        [=, &stream, &f] {
          ssm_chunked_forward(stream, {scan_shape(s, P), f.x(), f.part(f.dt, H, 0), f.A.view(), f.B(), f.C(), {}, {}, f.S0.view(),
                                       f.converter_chunk_states.view(), f.converter_start_states.view(),
                                       f.converter_chunk_decays.view()});
        },
        [=, &stream, &f] {
          const MixerGradsDeviceT<S>& gr = *g;  // the backward lambdas exist only with g
          ssm_chunked_backward(stream, {scan_shape(s, P), f.x(), f.part(f.dt, H, 0), f.A.view(), f.B(), {}, {},
                                        f.converter_start_states.view(), {}, gr.d_S0.view(), gr.d_x(), gr.part(gr.d_dt, H, 0),
                                        gr.d_B(), {}, gr.d_A_converter.view(), {}, ws});
          add<float>(stream, 1, 1, H, gr.d_A_converter.view(), gr.d_A.view());
        });
  // E6: the scan over [P, T) from S0 (P = T: no tokens, final state = S0), its output kernel adding the D skip;
  // back: the scan (its d_S_init is d_S0; no gradient reaches the final state), its chunk kernel adding the D
  // skip's D·d_y to d_x and summing d_D_skip.
  stage("scan",
        [=, &stream, &f] {
          ssm_chunked_forward(stream, {scan_shape(s, L), f.x(P), f.part(f.dt, H, 0, P), f.A.view(), f.B(P), f.C(P), f.S0.view(),
                                       y_scan, f.final_state.view(), f.chunk_states.view(), f.start_states.view(),
                                       f.chunk_decays.view(), prm.D_skip});
        },
        [=, &stream, &f] {
          const MixerGradsDeviceT<S>& gr = *g;  // the backward lambdas exist only with g
          ssm_chunked_backward(stream, {scan_shape(s, L), f.x(P), f.part(f.dt, H, 0, P), f.A.view(), f.B(P), f.C(P), f.S0.view(),
                                        f.start_states.view(), d_y_scan, {}, gr.d_x(P), gr.part(gr.d_dt, H, 0, P), gr.d_B(P),
                                        gr.d_C(P), gr.d_A.view(), gr.d_S0.view(), ws, prm.D_skip, gr.d_D_skip.view()});
        });
  // E7: ungated for the attention rows, gated by z for the scan rows; back: d_norm_w from both (the second call
  // adding), d_z from the scan rows and 0 for the attention rows, which have no gate.
  stage("norm",
        [=, &stream, &f] {
          rmsnorm_forward(stream, {{Bt, P, E, c.G}, y_prefix, {}, prm.norm_w, f.part(f.y_normed, E, 0)});
          rmsnorm_forward(stream, {{Bt, L, E, c.G}, y_scan, f.z(P), prm.norm_w, f.part(f.y_normed, E, 0, P)});
        },
        [=, &stream, &f] {
          const MixerGradsDeviceT<S>& gr = *g;  // the backward lambdas exist only with g
          rmsnorm_backward(stream, {{Bt, P, E, c.G}, f.part(f.y, E, 0), {}, prm.norm_w, gr.part(gr.d_y_normed, E, 0), d_y_prefix,
                                    {}, gr.d_norm_w.view(), false, ws});
          rmsnorm_backward(stream, {{Bt, L, E, c.G}, f.part(f.y, E, 0, P), f.z(P), prm.norm_w, gr.part(gr.d_y_normed, E, 0, P),
                                    d_y_scan, gr.d_z(P), gr.d_norm_w.view(), true, ws});
          add<S>(stream, Bt, P, E, {}, gr.d_z());
        });
  // E8: out = y_normed · W_out (the bf16 layer first rounds its copy of W_out); back: d_y_normed = d_out · W_outᵀ,
  // d_W_out = y_normedᵀ · d_out.
  stage("out_proj",
        [=, &stream, &f] {
          const View<const S> W_out = gemm_weight(stream, prm.W_out, f.W_out_gemm, E, c.D, true);
          linear_forward(stream, LinearForwardT<S>{{rows, E, c.D}, f.y_normed.view(), W_out, f.out.view()});
        },
        [=, &stream, &f] {
          const MixerGradsDeviceT<S>& gr = *g;  // the backward lambdas exist only with g
          const View<const S> W_out = gemm_weight(stream, prm.W_out, f.W_out_gemm, E, c.D, false);
          linear_backward(stream, LinearBackwardT<S>{{rows, E, c.D}, f.y_normed.view(), W_out, gr.d_out.view(),
                                                     gr.d_y_normed.view(), gr.d_W_out.view()});
        });
  return out;
}
}  // namespace

template <class S>
std::vector<MixerStage> mixer_stages(const Stream& stream, const MixerDeviceParams& prm, const MixerForwardDeviceT<S>& f,
                                     const MixerGradsDeviceT<S>* g) {
  return stages("mixer_stages", stream, prm, f, g);
}
template std::vector<MixerStage> mixer_stages(const Stream&, const MixerDeviceParams&, const MixerForwardDevice&, const MixerGradsDevice*);
template std::vector<MixerStage> mixer_stages(const Stream&, const MixerDeviceParams&, const MixerForwardDeviceBf16&,
                                              const MixerGradsDeviceBf16*);

namespace {
template <class S>
void forward(const Stream& stream, const MixerDeviceParams& prm, const MixerForwardDeviceT<S>& f) {
  for (const MixerStage& st : stages<S>("mixer_forward", stream, prm, f, nullptr)) st.forward();
}
template <class S>
void backward(const Stream& stream, const MixerDeviceParams& prm, const MixerForwardDeviceT<S>& f, const MixerGradsDeviceT<S>& g) {
  const std::vector<MixerStage> all = stages("mixer_backward", stream, prm, f, &g);
  for (auto st = all.rbegin(); st != all.rend(); ++st) st->backward();
}
}  // namespace

void mixer_forward(const Stream& stream, const MixerDeviceParams& prm, MixerForwardDevice& f) { forward(stream, prm, f); }
void mixer_forward(const Stream& stream, const MixerDeviceParams& prm, MixerForwardDeviceBf16& f) { forward(stream, prm, f); }
void mixer_backward(const Stream& stream, const MixerDeviceParams& prm, const MixerForwardDevice& f, MixerGradsDevice& g) {
  backward(stream, prm, f, g);
}
void mixer_backward(const Stream& stream, const MixerDeviceParams& prm, const MixerForwardDeviceBf16& f,
                    MixerGradsDeviceBf16& g) {
  backward(stream, prm, f, g);
}

}  // namespace transmamba::gpu
