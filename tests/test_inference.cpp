#include "reference/attention.hpp"
#include "reference/inference.hpp"

#include "tests/check_support.hpp"

using namespace transmamba;

TEST_CASE("model.decode_equals_forward", "[inference][property]") { require_check("model.decode_equals_forward"); }

namespace {
ModelConfig tiny_config(const std::string& schedule = "2,5,100", int n_layers = 3) {
  ModelConfig cfg;
  cfg.mixer = MixerConfig{4, 8, 2, 1, 3, 3, 4};
  cfg.V = 7;
  cfg.n_layers = n_layers;
  cfg.F = 6;
  cfg.schedule = parse_schedule(schedule);
  return cfg;
}
}  // namespace

TEST_CASE("inference: attention_rows of the last m tokens are the last m rows of attention_forward", "[inference]") {
  const MixerConfig cfg{4, 8, 4, 2, 3, 2, 4};
  const Mat<double> C = Mat<double>::Random(6, 6), B = Mat<double>::Random(6, 6), x = Mat<double>::Random(6, 8);
  const Mat<double> full = attention_forward(cfg, C, B, x);
  for (int m = 1; m <= 6; ++m) {
    const Mat<double> rows = attention_rows(cfg, Mat<double>(C.bottomRows(m)), B, x);
    CHECK((rows - full.bottomRows(m)).norm() <= 1e-15 * full.norm());
  }
  CHECK_THROWS_WITH(attention_rows(cfg, C, Mat<double>(B.topRows(5)), Mat<double>(x.topRows(5))),
                    Catch::Contains("6 queries C for only 5 keys B"));
}

TEST_CASE("inference: each layer keeps a KV cache only while in attention mode, freed once past its P", "[inference]") {
  // P = 2, 5, 100 -> clamped to T_plan = 8: [2, 5, 8]. Prompt of 3 tokens, then 5 decode steps.
  const auto prm = ModelParams<double>::init(tiny_config(), 11);
  const MixerConfig& mc = prm.cfg.mixer;
  const std::size_t per_token = (mc.G * mc.N + mc.E) * sizeof(double);
  const std::size_t state = (mc.E * mc.N + (mc.W - 1) * mc.conv_channels()) * sizeof(double);
  PrefillResult<double> r = prefill(prm, {1, 2, 3}, 8);
  CHECK(r.logits.rows() == 3);
  CHECK(r.state.position == 3);
  const std::vector<int> P{r.state.layers[0].P, r.state.layers[1].P, r.state.layers[2].P};
  CHECK(P == std::vector<int>{2, 5, 8});
  // After prefill: tokens < min(T0, P).
  CHECK(r.state.layers[0].kv_B.rows() == 2);
  CHECK(r.state.layers[1].kv_B.rows() == 3);
  CHECK(r.state.layers[2].kv_x.rows() == 3);
  for (int t = 3; t < 8; ++t) {
    decode(prm, r.state, t % 7);
    for (int l = 0; l < 3; ++l) {
      const LayerState<double>& layer = r.state.layers[l];
      INFO("layer " << l << " after token " << t);
      const int cached = t < layer.P ? t + 1 : 0;  // past P: empty
      CHECK(layer.kv_B.rows() == cached);
      CHECK(layer.kv_x.rows() == cached);
      CHECK(layer.kv_cache_bytes() == cached * per_token);
      CHECK(layer.state_bytes() == state);
      CHECK(layer.attends(t) == (t < layer.P));
    }
  }
  CHECK(r.state.layers[0].kv_cache_bytes() == 0);
  CHECK(r.state.layers[1].kv_cache_bytes() == 0);
  CHECK(r.state.layers[2].kv_B.rows() == 8);  // P = T_plan: attention to the end
}

TEST_CASE("inference: bad input gets an error naming the problem, and the state is left as it was", "[inference][errors]") {
  const auto prm = ModelParams<double>::init(tiny_config(), 11);
  CHECK_THROWS_WITH(prefill(prm, {}, 4), "prompt: the prompt must hold at least one token");
  CHECK_THROWS_WITH(prefill(prm, {1, 7}, 4), "tokens[1] = 7 is outside [0, V=7)");
  CHECK_THROWS_WITH(prefill(prm, {1, 2, 3}, 2), "planned length T_plan=2 is shorter than the sequence (T=3 tokens)");

  PrefillResult<double> r = prefill(prm, {1, 2}, 4);
  CHECK_THROWS_WITH(decode(prm, r.state, 7), "token = 7 is outside [0, V=7)");
  CHECK_THROWS_WITH(decode(prm, r.state, -3), "token = -3 is outside [0, V=7)");
  CHECK(r.state.position == 2);

  // A state from another model: other weights with the same config, or another config.
  const auto other_weights = ModelParams<double>::init(tiny_config(), 12);
  CHECK_THROWS_WITH(decode(other_weights, r.state, 1), Catch::Contains("the state was prefilled by another model"));
  const auto other_schedule = ModelParams<double>::init(tiny_config("mamba"), 11);
  CHECK_THROWS_WITH(decode(other_schedule, r.state, 1), Catch::Contains("the state was prefilled by another model"));
  CHECK(r.state.position == 2);

  // Decoding beyond the planned length.
  decode(prm, r.state, 1);
  decode(prm, r.state, 2);
  CHECK(r.state.position == 4);
  CHECK_THROWS_WITH(decode(prm, r.state, 3),
                    Catch::Contains("position t=4 is beyond the planned length T_plan=4 given to prefill"));
  CHECK(r.state.position == 4);
}

TEST_CASE("inference: prefill of the whole sequence and decode from a one-token prompt give the same logits", "[inference]") {
  const auto prm = ModelParams<double>::init(tiny_config("0.5,1.0,0.25"), 5);
  const std::vector<int> tokens{3, 1, 4, 1, 5, 6, 2};
  const Mat<double> full = prefill(prm, tokens, 7).logits;
  PrefillResult<double> r = prefill(prm, {tokens[0]}, 7);
  for (std::size_t t = 1; t < tokens.size(); ++t) {
    const Vec<double> logits = decode(prm, r.state, tokens[t]);
    CHECK((logits.transpose() - full.row(t)).norm() <= 1e-12 * full.row(t).norm());
  }
}
