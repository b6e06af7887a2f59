// tools/bench/layer_timing.hpp: the timing loop. The kernel calls repeat mixer.cpp's (the same views of the
// same buffers), one family at a time.
#include "tools/bench/layer_timing.hpp"

#include <functional>
#include <random>
#include <string>
#include <type_traits>

#include "cuda/attention.hpp"
#include "cuda/conv.hpp"
#include "cuda/mixer.hpp"
#include "cuda/norm.hpp"
#include "cuda/projection.hpp"
#include "cuda/ssm.hpp"
#include "cuda/step_size.hpp"
#include "verify/layer_case.hpp"

namespace transmamba::bench {

using namespace transmamba::gpu;

LayerInputs make_inputs(const MixerConfig& cfg, int Bt, int T, std::uint64_t seed) {
  LayerInputs in{MixerParams<double>::init(cfg, seed), {}, {}};
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::uniform_real_distribution<float> uniform(-1, 1);
  const std::size_t n = std::size_t(Bt) * T * cfg.D;
  in.u.resize(n), in.d_out.resize(n);
  for (float& v : in.u) v = uniform(rng);
  for (float& v : in.d_out) v = uniform(rng);
  return in;
}

namespace {

// Median, min and max of `reps` runs of f after `warmup` untimed ones, the L2 flushed before each.
Stats time_calls(const Stream& stream, const L2Flush& flush, const TimingOptions& opt, const std::function<void()>& f) {
  for (int i = 0; i < opt.warmup; ++i) f();
  Event start(stream.device()), end(stream.device());
  std::vector<double> ms;
  for (int i = 0; i < opt.reps; ++i) {
    flush.run(stream);
    start.record(stream);
    f();
    end.record(stream);
    ms.push_back(Event::elapsed_ms(start, end));
  }
  stream.synchronize();
  return summarize(ms);
}

ScanShape scan_shape(const MixerShape& s, int L) { return {s.Bt, L, s.cfg.H, s.cfg.p(), s.cfg.G, s.cfg.N, s.cfg.chunk}; }

struct Family {
  std::string name;
  std::function<void()> forward, backward;
};

// Each kernel family's calls in the layer (mixer.cpp's mixer_forward and mixer_backward), on f's and g's buffers
// after a whole forward and backward: the same shapes, views and values as inside the layer.
template <class S>
std::vector<Family> families(const Stream& st, const MixerDeviceParams& prm, MixerForwardDeviceT<S>& f, MixerGradsDeviceT<S>& g) {
  const MixerShape s = f.shape;
  // The weights as the layer's GEMMs read them: the fp32 parameters, or the bf16 layer's copies (mixer.hpp).
  View<const S> W_in, W_out;
  if constexpr (std::is_same_v<S, float>) W_in = prm.W_in, W_out = prm.W_out;
  else W_in = f.W_in_gemm.view(), W_out = f.W_out_gemm.view();
  const MixerConfig& c = s.cfg;
  const int Bt = s.Bt, T = s.T, P = s.P, L = s.L(), E = c.E, H = c.H, rows = Bt * T, in_w = c.in_proj_width(),
            channels = c.conv_channels();
  const View<float> ws = g.workspace.view();
  std::vector<Family> out;
  out.push_back({"in_proj", [=, &st, &f] { linear_forward(st, LinearForwardT<S>{{rows, c.D, in_w}, f.u.view(), W_in, f.zxbcdt.view()}); },
                 [=, &st, &f, &g] {
                   linear_backward(st, LinearBackwardT<S>{{rows, c.D, in_w}, f.u.view(), W_in, g.d_zxbcdt.view(), g.d_u.view(),
                                                          g.d_W_in.view()});
                 }});
  out.push_back({"conv", [=, &st, &f] { conv_silu_forward(st, {{Bt, T, channels, c.W}, f.xBC_in(), prm.conv_w, prm.conv_b, f.xBC.view()}); },
                 [=, &st, &f, &g] {
                   conv_silu_backward(st, {{Bt, T, channels, c.W}, f.xBC_in(), prm.conv_w, prm.conv_b, g.d_xBC.view(),
                                           g.d_xBC_in(), g.d_conv_w.view(), g.d_conv_b.view(), ws});
                 }});
  out.push_back({"step_size", [=, &st, &f] { step_size_forward(st, {{Bt, T, H}, f.dt_raw(), prm.dt_bias, prm.A_log, f.dt.view(), f.A.view()}); },
                 [=, &st, &f, &g] {
                   step_size_backward(st, {{Bt, T, H}, f.dt_raw(), prm.dt_bias, prm.A_log, g.d_dt.view(), g.d_A.view(),
                                           g.d_dt_raw(), g.d_dt_bias.view(), g.d_A_log.view(), ws});
                 }});
  if (P > 0)
    out.push_back({"attention",
                   [=, &st, &f] {
                     attention_forward(st, {{Bt, P, H, c.G, c.N, c.p()}, f.C(), f.B(), f.x(), f.part(f.y, E, 0), f.lse.view()});
                   },
                   [=, &st, &f, &g] {
                     attention_backward(st, {{Bt, P, H, c.G, c.N, c.p()}, f.C(), f.B(), f.x(), f.part(f.y, E, 0), f.lse.view(),
                                             g.part(g.d_y, E, 0), g.d_C(), g.attention_d_B.view(), g.attention_d_x.view(), ws});
                   }});
  out.push_back({"converter",
                 [=, &st, &f] {
                   ssm_chunked_forward(st, {scan_shape(s, P), f.x(), f.part(f.dt, H, 0), f.A.view(), f.B(), f.C(), {}, {},
                                            f.S0.view(), f.converter_chunk_states.view(), f.converter_start_states.view(),
                                            f.converter_chunk_decays.view()});
                 },
                 [=, &st, &f, &g] {
                   ssm_chunked_backward(st, {scan_shape(s, P), f.x(), f.part(f.dt, H, 0), f.A.view(), f.B(), {}, {},
                                             f.converter_start_states.view(), {}, g.d_S0.view(), g.d_x(), g.part(g.d_dt, H, 0),
                                             g.d_B(), {}, g.d_A_converter.view(), {}, ws});
                 }});
  out.push_back({"scan",
                 [=, &st, &f] {
                   ssm_chunked_forward(st, {scan_shape(s, L), f.x(P), f.part(f.dt, H, 0, P), f.A.view(), f.B(P), f.C(P),
                                            f.S0.view(), f.part(f.y, E, 0, P), f.final_state.view(), f.chunk_states.view(),
                                            f.start_states.view(), f.chunk_decays.view()});
                 },
                 [=, &st, &f, &g] {
                   ssm_chunked_backward(st, {scan_shape(s, L), f.x(P), f.part(f.dt, H, 0, P), f.A.view(), f.B(P), f.C(P),
                                             f.S0.view(), f.start_states.view(), g.part(g.d_y, E, 0, P), {}, g.d_x(P),
                                             g.part(g.d_dt, H, 0, P), g.d_B(P), g.d_C(P), g.d_A.view(), g.d_S0.view(), ws});
                 }});
  out.push_back({"norm",
                 [=, &st, &f] {
                   rmsnorm_forward(st, {{Bt, P, E, c.G}, f.part(f.y, E, 0), {}, prm.norm_w, f.part(f.y_normed, E, 0)});
                   rmsnorm_forward(st, {{Bt, L, E, c.G}, f.part(f.y, E, 0, P), f.z(P), prm.norm_w, f.part(f.y_normed, E, 0, P)});
                 },
                 [=, &st, &f, &g] {
                   rmsnorm_backward(st, {{Bt, P, E, c.G}, f.part(f.y, E, 0), {}, prm.norm_w, g.part(g.d_y_normed, E, 0),
                                         g.part(g.d_y, E, 0), {}, g.d_norm_w.view(), false, ws});
                   rmsnorm_backward(st, {{Bt, L, E, c.G}, f.part(f.y, E, 0, P), f.z(P), prm.norm_w, g.part(g.d_y_normed, E, 0, P),
                                         g.part(g.d_y, E, 0, P), g.d_z(P), g.d_norm_w.view(), true, ws});
                 }});
  out.push_back({"out_proj", [=, &st, &f] { linear_forward(st, LinearForwardT<S>{{rows, E, c.D}, f.y_normed.view(), W_out, f.out.view()}); },
                 [=, &st, &f, &g] {
                   linear_backward(st, LinearBackwardT<S>{{rows, E, c.D}, f.y_normed.view(), W_out, g.d_out.view(),
                                                          g.d_y_normed.view(), g.d_W_out.view()});
                 }});
  return out;
}

template <class S>
std::vector<S> stored_as(const std::vector<float>& v) {
  std::vector<S> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = from_float<S>(v[i]);
  return out;
}

template <class S>
PointTime time_layer(const Device& dev, const MixerConfig& cfg, int Bt, int T, int P, const LayerInputs& in,
                     const TimingOptions& opt, std::vector<float>* out) {
  const MixerShape shape{Bt, T, P, cfg};
  const kernel_case::DeviceParams params(dev, in.prm);
  const MixerDeviceParams prm = params.views();
  MixerForwardDeviceT<S> f(dev, shape);
  MixerGradsDeviceT<S> g(dev, shape);
  f.u.upload(stored_as<S>(in.u));
  g.d_out.upload(stored_as<S>(in.d_out));
  const Stream stream(dev);
  const L2Flush flush(dev);

  PointTime t;
  t.P = P;
  t.forward = time_calls(stream, flush, opt, [&] { mixer_forward(stream, prm, f); });
  t.forward_backward = time_calls(stream, flush, opt, [&] {
    mixer_forward(stream, prm, f);
    mixer_backward(stream, prm, f, g);
  });
  if (opt.kernels)
    for (const Family& k : families(stream, prm, f, g))
      t.kernels.push_back({k.name, time_calls(stream, flush, opt, k.forward), time_calls(stream, flush, opt, k.backward)});
  if (out) {  // the kernels alone left f's intermediates as the layer does not (the scan's y without the D skip)
    mixer_forward(stream, prm, f);
    stream.synchronize();
    const std::vector<S> values = f.out.download();
    out->resize(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) (*out)[i] = to_float(values[i]);
  }
  return t;
}
}  // namespace

PointTime time_point(const Device& dev, const MixerConfig& cfg, int Bt, int T, int P, const LayerInputs& in,
                     const TimingOptions& opt, std::vector<float>* out) {
  return opt.bf16 ? time_layer<Bf16>(dev, cfg, Bt, T, P, in, opt, out) : time_layer<float>(dev, cfg, Bt, T, P, in, opt, out);
}

}  // namespace transmamba::bench
