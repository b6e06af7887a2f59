// Checks of reference/mixer.hpp: the backward, exactness of the converter at the layer level, the two
// limits (P = 0 is Mamba2, P = T is attention), causality, float vs double.
#include "reference/mixer.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"

namespace transmamba {

namespace {
struct LayerCase {
  MixerParams<double> prm;
  Mat<double> u;
  int P;
};
LayerCase draw_layer_case() {
  const MixerConfig cfg = draw("cfg", gen_mixer_config());
  const int T = draw("T", gen_length());
  const int P = draw("P", gen_transpoint(T));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  return {rnd.params<double>(cfg), rnd.mat<double>(T, cfg.D), P};
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
         const auto c = draw_layer_case();
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const Mat<double> d_out = rnd.mat<double>(c.u.rows(), c.prm.cfg.D);
         const auto g = mixer_backward(c.prm, mixer_forward(c.prm, c.u, c.P), d_out);
         auto prm_t = c.prm.cast<Truth>();
         Mat<Truth> u_t = c.u.cast<Truth>();
         const Mat<Truth> d_out_t = d_out.cast<Truth>();
         auto loss = [&] { return mixer_forward(prm_t, u_t, c.P).out.cwiseProduct(d_out_t).sum(); };
         std::vector<Comparison> out{check_gradient("d_u", g.d_u, u_t, loss)};
         std::vector<Eigen::MatrixXd> analytic;
         g.d_params.for_each([&](const char*, const auto& t) { analytic.push_back(t.template cast<double>()); });
         std::size_t i = 0;
         prm_t.for_each([&](const char* name, auto& t) {
           out.push_back(check_gradient(std::string("d_") + name, analytic[i++], t, loss));
         });
         return out;
       }},
      {"mixer.exactness", "tokens t >= P (and the final state) equal those of the same layer with P = 0", 200,
       [] {
         const auto c = draw_layer_case();
         const int T = c.u.rows();
         const auto hybrid = mixer_forward(c.prm, c.u, c.P), mamba = mixer_forward(c.prm, c.u, 0);
         return std::vector<Comparison>{
             compare("out[P:]", hybrid.out.bottomRows(T - c.P), mamba.out.bottomRows(T - c.P), bounds::kExact),
             compare("final state", hybrid.final_state, mamba.final_state, bounds::kExact)};
       }},
      {"mixer.mamba_limit", "P = 0 equals a Mamba2 layer assembled from the components (recurrent scan)", 200,
       [] {
         const auto c = draw_layer_case();
         return std::vector<Comparison>{
             compare("out", mixer_forward(c.prm, c.u, 0).out, mamba2_by_components(c.prm, c.u), bounds::kExact)};
       }},
      {"mixer.attention_limit", "P = T equals grouped causal attention + ungated norm + out_proj", 200,
       [] {
         const auto c = draw_layer_case();
         const int T = c.u.rows();
         return std::vector<Comparison>{
             compare("out", mixer_forward(c.prm, c.u, T).out, attention_by_components(c.prm, c.u), bounds::kExact)};
       }},
      {"mixer.causality", "changing token t' leaves the outputs of tokens < t' unchanged", 200,
       [] {
         auto c = draw_layer_case();
         const int T = c.u.rows(), t_changed = draw("t'", rc::gen::inRange(0, T));
         const Mat<double> before = mixer_forward(c.prm, c.u, c.P).out;
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         c.u.row(t_changed) = rnd.mat<double>(1, c.prm.cfg.D, -3, 3);
         const Mat<double> after = mixer_forward(c.prm, c.u, c.P).out;
         return std::vector<Comparison>{
             compare("out[:t']", after.topRows(t_changed), before.topRows(t_changed), bounds::kExact)};
       }},
      {"mixer.float_vs_double", "layer in float vs the double truth: out and state <= 1e-5, all gradients <= 1e-4", 200,
       [] {
         const auto c = draw_layer_case();
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const Mat<double> d_out = rnd.mat<double>(c.u.rows(), c.prm.cfg.D);
         const auto prm_f = c.prm.cast<float>();
         const Mat<float> u_f = c.u.cast<float>(), d_out_f = d_out.cast<float>();
         const auto truth = mixer_forward(c.prm, c.u, c.P);
         const auto got = mixer_forward(prm_f, u_f, c.P);
         const auto g_truth = mixer_backward(c.prm, truth, d_out);
         const auto g_got = mixer_backward(prm_f, got, d_out_f);
         // Every gradient as one vector: the parameters in for_each order, then d_u.
         auto flatten = [](const auto& grads) {
           std::vector<double> v;
           grads.d_params.for_each([&](const char*, const auto& t) {
             for (Eigen::Index i = 0; i < t.size(); ++i) v.push_back(double(t.data()[i]));
           });
           for (Eigen::Index i = 0; i < grads.d_u.size(); ++i) v.push_back(double(grads.d_u.data()[i]));
           return Eigen::VectorXd(Eigen::Map<Eigen::VectorXd>(v.data(), v.size()));
         };
         std::vector<Comparison> out{compare("out", got.out, truth.out, bounds::kFloat),
                                     compare("final state", got.final_state, truth.final_state, bounds::kFloat),
                                     compare("all gradients", flatten(g_got), flatten(g_truth), bounds::kFloatGradient)};
         return out;
       }},
  };
}

}  // namespace transmamba
