// Checks of reference/mlp.hpp, reference/model.hpp and reference/inference.hpp: the MLP and model backward
// against finite differences, the MLP in double vs long double (the ladder), decode = forward (DESIGN.md
// sections 6 and 8), causality of the model.
#include <string>
#include <vector>

#include "reference/inference.hpp"
#include "reference/mlp.hpp"
#include "reference/model.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"
#include "verify/ladder.hpp"

namespace transmamba {

namespace {

// A schedule for sequences planned up to T_plan tokens, as text for parse_schedule: the named ones
// (transformer, mamba, V9 absolute, whose entries all clamp to 0 or T_plan here, and V9@rel), absolute lists
// with entries around [0, T_plan] and relative lists of fractions.
rc::Gen<std::string> gen_schedule_text(int T_plan) {
  auto join = [](const std::vector<std::string>& entries) {
    std::string s;
    for (const std::string& e : entries) s += (s.empty() ? "" : ",") + e;
    return s;
  };
  const auto absolute = rc::gen::exec([=] {
    const int n = *rc::gen::inRange(1, 5);
    std::vector<std::string> e;
    for (int i = 0; i < n; ++i) e.push_back(std::to_string(*rc::gen::inRange(0, T_plan + 3)));
    return join(e);
  });
  const auto relative = rc::gen::exec([=] {
    const int n = *rc::gen::inRange(1, 5);
    std::vector<std::string> e;
    for (int i = 0; i < n; ++i) e.push_back(*rc::gen::element<std::string>("0.0", "0.125", "0.25", "0.5", "0.75", "1.0"));
    return join(e);
  });
  return rc::gen::oneOf(rc::gen::element<std::string>("transformer", "mamba", "V9", "V9@rel"), absolute, relative);
}

// A model config for sequences planned up to T_plan tokens: the mixer of gen_mixer_config with D >= 2 (a
// plain RMSNorm over one channel is sign(v)·w, see gen_mixer_config), V, n_layers, F, tied or not, a schedule.
// tiny: the shapes of the finite differences over every parameter: G in {1, 2} with G = H and G < H, and
// every norm group 4 channels wide (D = 4; E / G = 4 in the mixer's grouped norm), since the truncation error
// of central differences grows as (step / rms)², rms that of a norm group's input, and narrow groups are
// often near 0 (seen: D = 2, d_embedding off by 2.1e-6 with step 1e-6 and by 2.1e-10 with step 1e-8: the
// analytic gradient was right). Measured over 12000 tiny models: worst 2.1e-7 with D in {3, 4}, 5.5e-8 with
// D = 4. See also RandomTensors::model_params.
ModelConfig draw_model_config(int T_plan, bool tiny) {
  ModelConfig cfg;
  if (tiny) {
    cfg.mixer.G = *rc::gen::inRange(1, 3);
    const int heads_per_group = *rc::gen::element(1, 2);
    cfg.mixer.H = cfg.mixer.G * heads_per_group;
    cfg.mixer.E = cfg.mixer.H * (4 / heads_per_group);  // p = 4 or 2: E / G = 4
    cfg.mixer.N = *rc::gen::inRange(1, 3);
    cfg.mixer.W = *rc::gen::inRange(1, 4);
    cfg.mixer.chunk = *rc::gen::inRange(1, 4);
    cfg.mixer.D = 4;
  } else {
    cfg.mixer = *gen_mixer_config();
    cfg.mixer.D = *rc::gen::inRange(2, 6);
  }
  cfg.V = *rc::gen::inRange(2, tiny ? 5 : 9);
  cfg.n_layers = *rc::gen::inRange(1, tiny ? 3 : 4);
  cfg.F = *rc::gen::inRange(1, tiny ? 4 : 7);
  cfg.tie_embeddings = *rc::gen::arbitrary<bool>();
  cfg.schedule = parse_schedule(*gen_schedule_text(T_plan));
  RC_LOG() << "model: " << cfg.describe() << "\n";
  return cfg;
}

// A value of gen drawn over its whole range, whatever the case's size (RapidCheck scales integer ranges with
// the size, which grows from 0 over a run; the decode checks want long sequences and every split point in
// every run). Shrinking still goes towards the small end.
template <class T>
T full_range(const char* name, rc::Gen<T> gen) {
  return draw(name, rc::gen::resize(rc::kNominalSize, std::move(gen)));
}

std::vector<int> draw_tokens(int T, int V) {
  return draw("tokens", rc::gen::container<std::vector<int>>(std::size_t(T), rc::gen::inRange(0, V)));
}

// The MLP's input v [T, D] (U(-2, 2) times the regime's scale), weights and upstream gradient d_out [T, D].
template <class S>
struct MlpCase {
  Mat<S> v, W_gate, W_up, W_down, d_out;
  template <class T>
  MlpCase<T> cast() const {
    return {v.template cast<T>(), W_gate.template cast<T>(), W_up.template cast<T>(), W_down.template cast<T>(),
            d_out.template cast<T>()};
  }
  template <class F>
  void for_each(F&& f) {
    f("v", v), f("W_gate", W_gate), f("W_up", W_up), f("W_down", W_down), f("d_out", d_out);
  }
};
MlpCase<double> draw_mlp_case(Regimes regimes) {
  const int T = draw("T", gen_length()), D = draw("D", rc::gen::inRange(1, 6)), F = draw("F", rc::gen::inRange(1, 6));
  const double v = 2 * draw("regime", gen_regime(regimes)).scale;
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  return {rnd.mat<double>(T, D, -v, v), rnd.mat<double>(D, F), rnd.mat<double>(D, F), rnd.mat<double>(F, D),
          rnd.mat<double>(T, D)};
}

// A model's parameters, the tokens and the planned length: the inputs of a model check (ladder.hpp's case).
template <class S>
struct ModelCase {
  ModelParams<S> prm;
  std::vector<int> tokens;
  int T_plan;
  template <class T>
  ModelCase<T> cast() const {
    return {prm.template cast<T>(), tokens, T_plan};
  }
  template <class F>
  void for_each(F&& f) {
    prm.for_each(f);
  }
};

// The last min(W-1, T) rows of xBC before the conv, zero rows above: the conv window after T tokens.
template <class S>
Mat<S> expected_conv_window(const MixerConfig& cfg, const Mat<S>& xBC_in) {
  Mat<S> w = Mat<S>::Zero(cfg.W - 1, cfg.conv_channels());
  const Eigen::Index kept = std::min<Eigen::Index>(cfg.W - 1, xBC_in.rows());
  w.bottomRows(kept) = xBC_in.bottomRows(kept);
  return w;
}

}  // namespace

std::vector<Check> model_checks() {
  return {
      {"mlp.backward_fd", "SwiGLU MLP backward (d_v, d_W_gate, d_W_up, d_W_down) = central finite differences", 100,
       [] {
         const auto c = draw_mlp_case(Regimes::finite_diff);
         const auto g = mlp_backward(c.v, c.W_gate, c.W_up, c.W_down, c.d_out);
         auto t = c.cast<Truth>();
         auto loss = [&] { return mlp_forward(t.v, t.W_gate, t.W_up, t.W_down).cwiseProduct(t.d_out).sum(); };
         return std::vector<Comparison>{
             check_gradient("d_v", g.d_v, t.v, loss), check_gradient("d_W_gate", g.d_W_gate, t.W_gate, loss),
             check_gradient("d_W_up", g.d_W_up, t.W_up, loss), check_gradient("d_W_down", g.d_W_down, t.W_down, loss)};
       }},
      {"mlp.ladder", "double vs long double: MLP(v), d_v, d_W_gate, d_W_up, d_W_down", 200,
       [] {
         return ladder<double, long double>(draw_mlp_case(Regimes::all), [](const auto& c) {
           TensorsFor<decltype(c)> t;
           t.add("out", mlp_forward(c.v, c.W_gate, c.W_up, c.W_down));
           const auto g = mlp_backward(c.v, c.W_gate, c.W_up, c.W_down, c.d_out);
           t.add_gradient("d_v", g.d_v), t.add_gradient("d_W_gate", g.d_W_gate), t.add_gradient("d_W_up", g.d_W_up);
           t.add_gradient("d_W_down", g.d_W_down);
           return t;
         }, bounds::kExact, bounds::kExact);
       }},
      {"model.backward_fd",
       "model backward (every parameter; the same tiny model untied and tied) = finite differences of the loss", 20,
       [] {
         const int T = draw("T", gen_length(5));
         ModelConfig cfg = draw_model_config(T, true);
         const std::vector<int> tokens = draw_tokens(T, cfg.V);
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         std::vector<Comparison> out;
         for (bool tied : {false, true}) {
           cfg.tie_embeddings = tied;
           // The easy regime only: the tiny models are chosen so that central differences resolve 1e-6 (see
           // draw_model_config); the hard regimes' curvature (scores of 1e6, steps of 1e3) would break that.
           // There the model is checked by decode = forward and causality, its layer by mixer.ladder.
           const ModelParams<double> prm = rnd.model_params(cfg);
           const ModelParams<double> grads = model_backward(prm, model_forward(prm, tokens));
           std::vector<Eigen::MatrixXd> analytic;
           grads.for_each([&](const char*, const auto& t) { analytic.push_back(t.template cast<double>()); });
           ModelParams<Truth> prm_t = prm.cast<Truth>();
           auto loss = [&] { return model_forward(prm_t, tokens).loss; };
           std::size_t i = 0;
           prm_t.for_each([&](const char* name, auto& t) {
             out.push_back(check_gradient(std::string(tied ? "tied d_" : "untied d_") + name, analytic[i++], t, loss));
           });
         }
         return out;
       }},
      {"model.decode_equals_forward",
       "prefill of k tokens, then decode token by token = the full forward: logits, scan states, KV caches, conv windows",
       200,
       [] {
         const int T = full_range("T", gen_length(16));
         const int T_plan = T + full_range("T_plan - T", rc::gen::inRange(0, 3));
         const ModelConfig cfg = draw_model_config(T_plan, false);
         const std::vector<int> tokens = draw_tokens(T, cfg.V);
         const int k = full_range("k", rc::gen::inRange(1, T + 1));  // prefill tokens 0..k-1, decode k..T-1
         const Regime regime = draw("regime", gen_regime());
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const ModelCase<double> c{rnd.model_params(cfg, regime), tokens, T_plan};
         // The cache after the last token: tokens < min(k, P) after prefill alone; after a decode step of
         // token T-1: tokens 0..T-1 while T-1 < P, none once the layer decoded a token in scan mode.
         auto cached = [&](int P) { return k == T ? std::min(T, P) : (T - 1 < P ? T : 0); };
         // What the full forward says the decode state is after token T-1, and its logits.
         auto full = [&](const auto& m) {
           const auto f = model_forward(m.prm, m.tokens, m.T_plan);
           TensorsFor<decltype(m)> out;
           out.add("logits", f.logits);
           for (int l = 0; l < cfg.n_layers; ++l) {
             const auto& mix = f.blocks[l].mixer;
             const std::string at = "layer " + std::to_string(l) + " ";
             const int n = cached(cfg.schedule.transpoint(l, T_plan));
             out.add(at + "scan state", mix.final_state), out.add(at + "KV cache B", mix.B.topRows(n));
             out.add(at + "KV cache x", mix.x.topRows(n)), out.add(at + "conv window", expected_conv_window(cfg.mixer, mix.xBC_in));
           }
           return out;
         };
         PrefillResult<double> run = prefill(c.prm, std::vector<int>(tokens.begin(), tokens.begin() + k), T_plan);
         Mat<double> logits(T, cfg.V);
         logits.topRows(k) = run.logits;
         for (int t = k; t < T; ++t) logits.row(t) = decode(c.prm, run.state, tokens[t]).transpose();
         Tensors<double> decoded;
         decoded.add("logits", logits);
         for (int l = 0; l < cfg.n_layers; ++l) {
           const LayerState<double>& layer = run.state.layers[l];
           const std::string at = "layer " + std::to_string(l) + " ";
           decoded.add(at + "scan state", layer.scan_state), decoded.add(at + "KV cache B", layer.kv_B);
           decoded.add(at + "KV cache x", layer.kv_x), decoded.add(at + "conv window", layer.conv_window);
         }
         return compare_forms(c, full, decoded);
       }},
      {"model.causality", "changing token t' leaves the logits of tokens < t' unchanged (TransPoints fixed by T_plan)", 200,
       [] {
         const int T = full_range("T", gen_length(16));
         const int T_plan = T + full_range("T_plan - T", rc::gen::inRange(0, 3));
         const ModelConfig cfg = draw_model_config(T_plan, false);
         std::vector<int> tokens = draw_tokens(T, cfg.V);
         const int t_changed = full_range("t'", rc::gen::inRange(0, T));
         const Regime regime = draw("regime", gen_regime());
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const ModelParams<double> prm = rnd.model_params(cfg, regime);
         const Mat<double> before = model_forward(prm, tokens, T_plan).logits;
         tokens[t_changed] = (tokens[t_changed] + *rc::gen::inRange(1, cfg.V)) % cfg.V;  // another id
         const Mat<double> after = model_forward(prm, tokens, T_plan).logits;
         return std::vector<Comparison>{
             compare("logits[:t']", after.topRows(t_changed), before.topRows(t_changed), bounds::kExact)};
       }},
  };
}

}  // namespace transmamba
