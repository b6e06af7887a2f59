// Checks of reference/mlp.hpp, reference/model.hpp and reference/inference.hpp: the MLP and model backward
// against finite differences, decode = forward (DESIGN.md sections 6 and 8), causality of the model.
#include <string>
#include <vector>

#include "reference/inference.hpp"
#include "reference/mlp.hpp"
#include "reference/model.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"

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

// The last min(W-1, T) rows of xBC before the conv, zero rows above: the conv window after T tokens.
Mat<double> expected_conv_window(const MixerConfig& cfg, const Mat<double>& xBC_in) {
  Mat<double> w = Mat<double>::Zero(cfg.W - 1, cfg.conv_channels());
  const Eigen::Index kept = std::min<Eigen::Index>(cfg.W - 1, xBC_in.rows());
  w.bottomRows(kept) = xBC_in.bottomRows(kept);
  return w;
}

}  // namespace

std::vector<Check> model_checks() {
  return {
      {"mlp.backward_fd", "SwiGLU MLP backward (d_v, d_W_gate, d_W_up, d_W_down) = central finite differences", 100,
       [] {
         const int T = draw("T", gen_length()), D = draw("D", rc::gen::inRange(1, 6)), F = draw("F", rc::gen::inRange(1, 6));
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         Mat<double> v = rnd.mat<double>(T, D, -2, 2), W_gate = rnd.mat<double>(D, F), W_up = rnd.mat<double>(D, F),
                     W_down = rnd.mat<double>(F, D);
         const Mat<double> d_out = rnd.mat<double>(T, D);
         const auto g = mlp_backward(v, W_gate, W_up, W_down, d_out);
         Mat<Truth> v_t = v.cast<Truth>(), W_gate_t = W_gate.cast<Truth>(), W_up_t = W_up.cast<Truth>(),
                    W_down_t = W_down.cast<Truth>();
         const Mat<Truth> d_out_t = d_out.cast<Truth>();
         auto loss = [&] { return mlp_forward(v_t, W_gate_t, W_up_t, W_down_t).cwiseProduct(d_out_t).sum(); };
         return std::vector<Comparison>{
             check_gradient("d_v", g.d_v, v_t, loss), check_gradient("d_W_gate", g.d_W_gate, W_gate_t, loss),
             check_gradient("d_W_up", g.d_W_up, W_up_t, loss), check_gradient("d_W_down", g.d_W_down, W_down_t, loss)};
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
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const ModelParams<double> prm = rnd.model_params(cfg);
         const ModelForward<double> full = model_forward(prm, tokens, T_plan);
         PrefillResult<double> run = prefill(prm, std::vector<int>(tokens.begin(), tokens.begin() + k), T_plan);
         Mat<double> logits(T, cfg.V);
         logits.topRows(k) = run.logits;
         for (int t = k; t < T; ++t) logits.row(t) = decode(prm, run.state, tokens[t]).transpose();
         std::vector<Comparison> out{compare("logits", logits, full.logits, bounds::kExact)};
         for (int l = 0; l < cfg.n_layers; ++l) {
           const LayerState<double>& layer = run.state.layers[l];
           const MixerForward<double>& mix = full.blocks[l].mixer;
           const std::string at = "layer " + std::to_string(l) + " ";
           // The cache after the last token: tokens < min(k, P) after prefill alone; after a decode step of
           // token T-1: tokens 0..T-1 while T-1 < P, none once the layer decoded a token in scan mode.
           const int cached = k == T ? std::min(T, layer.P) : (T - 1 < layer.P ? T : 0);
           out.push_back(compare(at + "scan state", layer.scan_state, mix.final_state, bounds::kExact));
           out.push_back(compare(at + "KV cache B", layer.kv_B, mix.B.topRows(cached), bounds::kExact));
           out.push_back(compare(at + "KV cache x", layer.kv_x, mix.x.topRows(cached), bounds::kExact));
           out.push_back(compare(at + "conv window", layer.conv_window, expected_conv_window(cfg.mixer, mix.xBC_in),
                                 bounds::kExact));
         }
         return out;
       }},
      {"model.causality", "changing token t' leaves the logits of tokens < t' unchanged (TransPoints fixed by T_plan)", 200,
       [] {
         const int T = full_range("T", gen_length(16));
         const int T_plan = T + full_range("T_plan - T", rc::gen::inRange(0, 3));
         const ModelConfig cfg = draw_model_config(T_plan, false);
         std::vector<int> tokens = draw_tokens(T, cfg.V);
         const int t_changed = full_range("t'", rc::gen::inRange(0, T));
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const ModelParams<double> prm = rnd.model_params(cfg);
         const Mat<double> before = model_forward(prm, tokens, T_plan).logits;
         tokens[t_changed] = (tokens[t_changed] + *rc::gen::inRange(1, cfg.V)) % cfg.V;  // another id
         const Mat<double> after = model_forward(prm, tokens, T_plan).logits;
         return std::vector<Comparison>{
             compare("logits[:t']", after.topRows(t_changed), before.topRows(t_changed), bounds::kExact)};
       }},
  };
}

}  // namespace transmamba
