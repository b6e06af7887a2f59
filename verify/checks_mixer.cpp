// Checks of reference/mixer.hpp: the backward, exactness of the converter at the layer level, the two
// limits (P = 0 is Mamba2, P = T is attention), causality, double vs long double (the ladder: every stage and
// gradient), float vs double.
#include "reference/mixer.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"
#include "verify/ladder.hpp"

namespace transmamba {

namespace {
// A layer, its input u [T, D], TransPoint P and the upstream gradient d_out [T, D].
template <class S>
struct LayerCase {
  MixerParams<S> prm;
  Mat<S> u;
  int P;
  Mat<S> d_out;
  template <class T>
  LayerCase<T> cast() const {
    return {prm.template cast<T>(), u.template cast<T>(), P, d_out.template cast<T>()};
  }
  template <class F>
  void for_each(F&& f) {
    prm.for_each(f), f("u", u), f("d_out", d_out);
  }
};
// The regime (generators.hpp) gives the parameters' step sizes and decays, and the magnitude of u.
LayerCase<double> draw_layer_case(Regimes regimes) {
  const MixerConfig cfg = draw("cfg", gen_mixer_config());
  const int T = draw("T", gen_length());
  const int P = draw("P", gen_transpoint(T));
  const Regime regime = draw("regime", gen_regime(regimes));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  MixerParams<double> prm = rnd.params<double>(cfg, regime);
  const Mat<double> u = rnd.mat<double>(T, cfg.D, -regime.scale, regime.scale);
  return {prm, u, P, rnd.mat<double>(T, cfg.D)};
}

// Every stage of the layer's forward (E1-E8), its outputs, and every gradient of its backward.
template <class S>
Tensors<S> layer_tensors(const LayerCase<S>& c) {
  const MixerForward<S> f = mixer_forward(c.prm, c.u, c.P);
  Tensors<S> out;
  out.add("z", f.z), out.add("xBC", f.xBC), out.add("dt", f.dt), out.add("A", f.A);
  out.add("attention y", f.y.topRows(c.P)), out.add("S0", f.S0), out.add("scan y", f.scan.y);
  out.add_stacked("chunk states", f.scan.chunk_states), out.add_stacked("start states", f.scan.start_states);
  out.add("y", f.y), out.add("y_normed", f.y_normed), out.add("out", f.out), out.add("final state", f.final_state);
  const MixerGrads<S> g = mixer_backward(c.prm, f, c.d_out);
  out.add_gradient("d_u", g.d_u);
  g.d_params.for_each([&](const char* name, const auto& t) { out.add_gradient(std::string("d_") + name, t); });
  return out;
}

// A Mamba2 layer assembled from the components, with the recurrent scan from a zero state: what the
// layer must equal at P = 0.
Mat<double> mamba2_by_components(const MixerParams<double>& prm, const Mat<double>& u) {
  const MixerConfig& cfg = prm.cfg;
  const auto in = split_in_proj(cfg, linear_forward(u, prm.W_in));
  const auto xbc = split_xbc(cfg, conv_silu_forward(in.xBC, prm.conv_w, prm.conv_b));
  const Mat<double> dt = step_size(in.dt_raw, prm.dt_bias);
  Mat<double> y = ssm_recurrent<double>(cfg, xbc.x, dt, decay_rate(prm.A_log), xbc.B, xbc.C,
                                Mat<double>::Zero(cfg.E, cfg.N)).y;
  for (int h = 0; h < cfg.H; ++h) y.middleCols(h * cfg.p(), cfg.p()) += prm.D_skip(h) * xbc.x.middleCols(h * cfg.p(), cfg.p());
  return linear_forward(rmsnorm_forward(y, prm.norm_w, cfg.G, &in.z), prm.W_out);
}

// Grouped causal attention + ungated norm + out_proj, assembled from the components: the layer at P = T.
Mat<double> attention_by_components(const MixerParams<double>& prm, const Mat<double>& u) {
  const MixerConfig& cfg = prm.cfg;
  const auto in = split_in_proj(cfg, linear_forward(u, prm.W_in));
  const auto xbc = split_xbc(cfg, conv_silu_forward(in.xBC, prm.conv_w, prm.conv_b));
  const Mat<double> y = attention_forward(cfg, xbc.C, xbc.B, xbc.x);
  return linear_forward(rmsnorm_forward(y, prm.norm_w, cfg.G), prm.W_out);
}
}  // namespace

std::vector<Check> mixer_checks() {
  return {
      {"mixer.backward_fd", "layer backward (d_u and every parameter, through the converter) = finite differences", 100,
       [] {
         const auto c = draw_layer_case(Regimes::easy);
         const auto g = mixer_backward(c.prm, mixer_forward(c.prm, c.u, c.P), c.d_out);
         auto t = c.cast<Truth>();
         auto loss = [&] { return mixer_forward(t.prm, t.u, c.P).out.cwiseProduct(t.d_out).sum(); };
         std::vector<Comparison> out{check_gradient("d_u", g.d_u, t.u, loss)};
         std::vector<Eigen::MatrixXd> analytic;
         g.d_params.for_each([&](const char*, const auto& t) { analytic.push_back(t.template cast<double>()); });
         std::size_t i = 0;
         t.prm.for_each([&](const char* name, auto& t) {
           out.push_back(check_gradient(std::string("d_") + name, analytic[i++], t, loss));
         });
         return out;
       }},
      {"mixer.exactness", "tokens t >= P (and the final state) equal those of the same layer with P = 0", 200,
       [] {
         const auto c = draw_layer_case(Regimes::all);
         const int L = c.u.rows() - c.P;
         const auto mamba = mixer_forward(c.prm, c.u, 0);
         Tensors<double> at_0;
         at_0.add("", mamba.out.bottomRows(L)), at_0.add("", mamba.final_state);
         return compare_forms(c, [L](const auto& k) {
           const auto hybrid = mixer_forward(k.prm, k.u, k.P);
           TensorsFor<decltype(k)> t;
           t.add("out[P:]", hybrid.out.bottomRows(L)), t.add("final state", hybrid.final_state);
           return t;
         }, at_0);
       }},
      {"mixer.mamba_limit", "P = 0 equals a Mamba2 layer assembled from the components (recurrent scan)", 200,
       [] {
         const auto c = draw_layer_case(Regimes::all);
         Tensors<double> by_components;
         by_components.add("", mamba2_by_components(c.prm, c.u));
         return compare_forms(c, [](const auto& k) {
           TensorsFor<decltype(k)> t;
           t.add("out", mixer_forward(k.prm, k.u, 0).out);
           return t;
         }, by_components);
       }},
      {"mixer.attention_limit", "P = T equals grouped causal attention + ungated norm + out_proj", 200,
       [] {
         const auto c = draw_layer_case(Regimes::all);
         const int T = c.u.rows();
         return std::vector<Comparison>{
             compare("out", mixer_forward(c.prm, c.u, T).out, attention_by_components(c.prm, c.u), bounds::kExact)};
       }},
      {"mixer.causality", "changing token t' leaves the outputs of tokens < t' unchanged", 200,
       [] {
         auto c = draw_layer_case(Regimes::all);
         const int T = c.u.rows(), t_changed = draw("t'", rc::gen::inRange(0, T));
         const Mat<double> before = mixer_forward(c.prm, c.u, c.P).out;
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         c.u.row(t_changed) = rnd.mat<double>(1, c.prm.cfg.D, -3, 3);
         const Mat<double> after = mixer_forward(c.prm, c.u, c.P).out;
         return std::vector<Comparison>{
             compare("out[:t']", after.topRows(t_changed), before.topRows(t_changed), bounds::kExact)};
       }},
      {"mixer.ladder", "double vs long double: every stage (E1-E8), out, the final state and every gradient, on every regime",
       200,
       [] {
         return ladder<double, long double>(draw_layer_case(Regimes::all), [](const auto& c) { return layer_tensors(c); },
                                            bounds::kExact, bounds::kExact);
       }},
      {"mixer.float_vs_double",
       "float vs the double truth: every stage, out and state <= 1e-5, every gradient <= 1e-4 (easy regime: float's range)",
       200,
       [] {
         return ladder<float, double>(draw_layer_case(Regimes::easy), [](const auto& c) { return layer_tensors(c); }, bounds::kFloat,
                                      bounds::kFloatGradient);
       }},
  };
}

}  // namespace transmamba
