// The public API of cuda/inference.hpp: the plan, the state's buffers, prefill and the step of one token as
// calls to the kernel families' host APIs and device copies (cuda/device.hpp: copy_block). No kernel of its own.
#include "cuda/inference.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda/attention.hpp"
#include "cuda/backends.hpp"
#include "cuda/conv.hpp"
#include "cuda/norm.hpp"
#include "cuda/projection.hpp"
#include "cuda/step_size.hpp"

namespace transmamba::gpu {

namespace {
ScanShape step_scan_shape(const LayerStateShape& s) {
  const MixerConfig& c = s.cfg;
  return {s.Bt, 1, c.H, c.p(), c.G, c.N, c.chunk};
}

}  // namespace

std::size_t LayerStatePlan::total_floats() const {
  return conv_window + kv_cache + 2 * scan_state + u + zxbcdt + xBC + dt + A + y + y_normed + out + lse +
         2 * chunk_states + chunk_decays;
}

LayerStatePlan layer_state_plan(const LayerStateShape& s) {
  const MixerConfig& c = s.cfg;
  c.validate();
  if (s.Bt < 1 || s.Bt > 65535)
    throw std::invalid_argument("layer state: Bt=" + std::to_string(s.Bt) + " sequences (need 1 <= Bt <= 65535)");
  if (s.P < 0) throw std::invalid_argument("layer state: TransPoint P=" + std::to_string(s.P) + " is negative");
  LayerStatePlan p;
  p.in_width = c.in_proj_width();
  p.channels = c.conv_channels();
  p.cache_width = c.E + c.G * c.N;
  // The kernels' plans for one token; each throws for a size its kernels do not take.
  const ConvPlan conv = conv_plan({s.Bt, 1, p.channels, c.W});
  const NormPlan norm = norm_plan({s.Bt, 1, c.E, c.G});
  const StepSizePlan steps = step_size_plan({s.Bt, 1, c.H});
  if (s.P > 0) attention_plan({s.Bt, s.P, c.H, c.G, c.N, c.p(), s.P - 1});  // the widest step; N and p supported
  p.scan = scan_plan(step_scan_shape(s));
  for (const LaunchShape& l : {conv.step, norm.forward, steps.forward, p.scan.chunk_states, p.scan.output})
    check_launch_shape("a decode kernel", l);
  const std::size_t Bt = std::size_t(s.Bt);
  p.conv_window = Bt * (c.W - 1) * p.channels;
  p.kv_cache = Bt * std::size_t(s.P) * p.cache_width;
  p.scan_state = Bt * c.E * c.N;
  p.u = p.out = Bt * c.D;
  p.zxbcdt = Bt * p.in_width;
  p.xBC = Bt * p.channels;
  p.dt = Bt * c.H;
  p.A = c.H;
  p.y = p.y_normed = Bt * c.E;
  p.lse = Bt * c.G;
  p.chunk_states = p.scan.state_values;
  p.chunk_decays = p.scan.chunk_decays;
  return p;
}

std::size_t layer_state_device_bytes(const LayerStateShape& shape) {
  return layer_state_plan(shape).total_floats() * sizeof(float);
}

LayerState::LayerState(const Device& device, const LayerStateShape& s) : LayerState(device, s, layer_state_plan(s)) {}

LayerState::LayerState(const Device& d, const LayerStateShape& s, const LayerStatePlan& p)
    : shape(s), conv_window(d, p.conv_window), kv_cache(d, p.kv_cache), scan_state(d, p.scan_state),
      next_state(d, p.scan_state), u(d, p.u), zxbcdt(d, p.zxbcdt), xBC(d, p.xBC), dt(d, p.dt), A(d, p.A), y(d, p.y),
      y_normed(d, p.y_normed), out(d, p.out), lse(d, p.lse), chunk_states(d, p.chunk_states),
      start_states(d, p.chunk_states), chunk_decays(d, p.chunk_decays) {}

void prefill_layer(const Stream& stream, const MixerForwardDevice& f, LayerState& st) {
  const char* fn = "prefill_layer";
  const LayerStateShape& s = st.shape;
  const MixerConfig& c = s.cfg;
  const LayerStatePlan plan = layer_state_plan(s);
  const int T0 = f.shape.T, Bt = s.Bt, C = plan.channels, W = c.W;
  if (!same_layer(f.shape.cfg, c) || f.shape.Bt != Bt)
    throw std::invalid_argument(std::string(fn) + ": the prompt's layer (Bt=" + std::to_string(f.shape.Bt) + ", " +
                                f.shape.cfg.describe() + ") is not the state's (Bt=" + std::to_string(Bt) + ", " +
                                c.describe() + ")");
  if (f.shape.P != std::min(s.P, T0))
    throw std::invalid_argument(std::string(fn) + ": the prompt of T0=" + std::to_string(T0) + " tokens ran with P=" +
                                std::to_string(f.shape.P) + ", the state's layer needs min(P, T0)=" +
                                std::to_string(std::min(s.P, T0)));
  const int cached = std::min(T0, s.P), kept = std::min(W - 1, T0);
  if (st.kv_cache.size() != plan.kv_cache) st.kv_cache = DeviceBuffer<float>(stream.device(), plan.kv_cache);  // freed by a step
  check_owned(fn, {{"conv_window", st.conv_window, Bt, W - 1, C}, {"kv_cache", st.kv_cache, Bt, s.P, plan.cache_width},
                   {"scan_state", st.scan_state, Bt, c.E, c.N}});
  // The conv window: zero rows before token 0, then the prompt's last `kept` rows of xBC_in.
  const View<float> window = st.conv_window.view(std::int64_t(W - 1) * C, C);
  zero_block(stream, fn, window, Bt, W - 1 - kept, C);
  copy_block<float>(stream, fn, f.xBC_in(T0 - kept), st.conv_window.view_at(std::size_t(W - 1 - kept) * C, window.batch_stride, C),
                    Bt, kept, C);
  // The KV cache: [x | B] of the prompt's tokens < min(T0, P), the first E + GN columns of their xBC rows.
  copy_block<float>(stream, fn, f.x(), st.kv_cache.view(std::int64_t(s.P) * plan.cache_width), Bt, cached, plan.cache_width);
  copy_block<float>(stream, fn, f.final_state.view(), st.scan_state.view(), Bt, c.E, c.N);
  st.position = T0;
}

void mixer_step(const Stream& stream, const MixerDeviceParams& prm, LayerState& st) {
  const char* fn = "mixer_step";
  const LayerStateShape& s = st.shape;
  const MixerConfig& c = s.cfg;
  const LayerStatePlan plan = layer_state_plan(s);
  const int Bt = s.Bt, E = c.E, H = c.H, GN = c.G * c.N, t = st.position, in_w = plan.in_width, C = plan.channels;
  if (t < 0) throw std::invalid_argument(std::string(fn) + ": the state was not prefilled (prefill_layer)");
  const bool attends = t < s.P;
  check_params(fn, prm, c);
  check_owned(fn, {{"conv_window", st.conv_window, Bt, c.W - 1, C}, {"scan_state", st.scan_state, Bt, E, c.N},
                   {"next_state", st.next_state, Bt, E, c.N}, {"u", st.u, Bt, 1, c.D}, {"zxbcdt", st.zxbcdt, Bt, 1, in_w},
                   {"xBC", st.xBC, Bt, 1, C}, {"dt", st.dt, Bt, 1, H}, {"A", st.A, 1, 1, H}, {"y", st.y, Bt, 1, E},
                   {"y_normed", st.y_normed, Bt, 1, E}, {"out", st.out, Bt, 1, c.D}, {"lse", st.lse, 1, 1, Bt * c.G},
                   {"chunk_states", st.chunk_states, Bt, E, c.N}, {"start_states", st.start_states, Bt, E, c.N},
                   {"chunk_decays", st.chunk_decays, 1, 1, Bt * H}});
  if (attends) check_owned(fn, {{"kv_cache", st.kv_cache, Bt, s.P, plan.cache_width}});

  // The token's columns of its [Bt, 1, width] buffers (cuda/mixer.hpp: row_block).
  auto part = [](const DeviceBuffer<float>& buf, int width, int col) { return row_block(buf, 1, width, col); };
  // E1, E2 (the window moves on), E3.
  linear_forward(stream, {{Bt, c.D, in_w}, st.u.view(), prm.W_in, st.zxbcdt.view()});
  conv_silu_step(stream, {{Bt, 1, C, c.W}, st.conv_window.view(std::int64_t(c.W - 1) * C, C), part(st.zxbcdt, in_w, E),
                          prm.conv_w, prm.conv_b, st.xBC.view()});
  step_size_forward(stream, {{Bt, 1, H}, part(st.zxbcdt, in_w, E + C), prm.dt_bias, prm.A_log, st.dt.view(), st.A.view()});
  const View<float> x = part(st.xBC, C, 0), B = part(st.xBC, C, E), C_t = part(st.xBC, C, E + GN);
  // E6: the state over this token, in both modes; its output (with the D skip) only in scan mode.
  ssm_chunked_forward(stream, {step_scan_shape(s), x, st.dt.view(), st.A.view(), B, C_t, st.scan_state.view(),
                               attends ? View<float>{} : st.y.view(), st.next_state.view(), st.chunk_states.view(),
                               st.start_states.view(), st.chunk_decays.view(), attends ? View<const float>{} : prm.D_skip});
  std::swap(st.scan_state, st.next_state);
  if (attends) {
    // E4: row t of the cache, then the query C_t over rows 0 .. t; E7 without the gate.
    const std::int64_t cache_batch = std::int64_t(s.P) * plan.cache_width;
    copy_block<float>(stream, fn, x, row_block(st.kv_cache, s.P, plan.cache_width, 0, t), Bt, 1, plan.cache_width);
    attention_forward(stream, {{Bt, t + 1, H, c.G, c.N, c.p(), t}, C_t, st.kv_cache.view_at(E, cache_batch, plan.cache_width),
                               st.kv_cache.view(cache_batch, plan.cache_width), st.y.view(), st.lse.view()});
    rmsnorm_forward(stream, {{Bt, 1, E, c.G}, st.y.view(), {}, prm.norm_w, st.y_normed.view()});
  } else {
    // Scan mode for good: the cache is freed. E7 gated by z.
    if (st.kv_cache.size()) st.kv_cache = DeviceBuffer<float>(stream.device(), 0);
    rmsnorm_forward(stream, {{Bt, 1, E, c.G}, st.y.view(), part(st.zxbcdt, in_w, 0), prm.norm_w, st.y_normed.view()});
  }
  // E8.
  linear_forward(stream, {{Bt, E, c.D}, st.y_normed.view(), prm.W_out, st.out.view()});
  st.position = t + 1;
}

}  // namespace transmamba::gpu
