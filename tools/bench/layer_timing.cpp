// tools/bench/layer_timing.hpp: the timing loop, over the layer and over its stages (cuda/mixer.hpp's
// mixer_stages: the layer's own calls, one kernel family at a time).
#include "tools/bench/layer_timing.hpp"

#include <functional>
#include <random>
#include <string>

#include "cuda/mixer.hpp"
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
  if (opt.kernels)  // each stage of the layer alone, on the layer's buffers (cuda/mixer.hpp: mixer_stages)
    for (const MixerStage& k : mixer_stages(stream, prm, f, &g))
      t.kernels.push_back({k.family, time_calls(stream, flush, opt, k.forward), time_calls(stream, flush, opt, k.backward)});
  if (out) {  // the stages timed alone added into y and the gradients again and again: a clean forward
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
