#include "reference/mlp.hpp"
#include "reference/model.hpp"

#include <cmath>

#include "tests/check_support.hpp"

using namespace transmamba;

TEST_CASE("mlp.backward_fd", "[mlp][gradient]") { require_check("mlp.backward_fd"); }
TEST_CASE("mlp.ladder", "[mlp][ladder]") { require_check("mlp.ladder"); }
TEST_CASE("model.backward_fd", "[model][gradient]") { require_check("model.backward_fd"); }
TEST_CASE("model.causality", "[model][property]") { require_check("model.causality"); }

namespace {
ModelConfig tiny_config(bool tied = false) {
  ModelConfig cfg;
  cfg.mixer = MixerConfig{4, 8, 2, 1, 3, 2, 4};
  cfg.V = 5;
  cfg.n_layers = 2;
  cfg.F = 6;
  cfg.tie_embeddings = tied;
  cfg.schedule = parse_schedule("0.5");
  return cfg;
}
}  // namespace

TEST_CASE("mlp: SiLU(v W_gate) ⊙ (v W_up) W_down on a hand-sized case", "[mlp]") {
  Mat<double> v(1, 2), W_gate(2, 1), W_up(2, 1), W_down(1, 2);
  v << 1, 2;
  W_gate << 0.5, 0.25;  // v W_gate = 1
  W_up << 2, -1;        // v W_up = 0
  W_down << 3, 4;
  CHECK(mlp_forward(v, W_gate, W_up, W_down).norm() == 0.0);
  W_up << 1, 1;  // v W_up = 3: hidden = SiLU(1) * 3
  const double hidden = 3 / (1 + std::exp(-1.0));
  const Mat<double> out = mlp_forward(v, W_gate, W_up, W_down);
  CHECK(out(0, 0) == Approx(3 * hidden).epsilon(1e-15));
  CHECK(out(0, 1) == Approx(4 * hidden).epsilon(1e-15));
  CHECK_THROWS_WITH(mlp_forward(v, W_gate, Mat<double>(Mat<double>::Zero(2, 3)), W_down),
                    "W_up: expected shape [2, 1], got [2, 3]");
  CHECK_THROWS_WITH(mlp_forward(v, W_gate, W_up, Mat<double>(Mat<double>::Zero(2, 2))),
                    "W_down: expected shape [1, 2], got [2, 2]");
}

TEST_CASE("model: the loss is the mean next-token cross-entropy: log V for zero logits and 0 for T = 1", "[model]") {
  ModelParams<double> prm = ModelParams<double>::init(tiny_config(), 7);
  prm.head.setZero();  // every logit 0: each of the T-1 predictions costs log V
  const auto f = model_forward(prm, {1, 4, 0, 2});
  CHECK(f.logits.rows() == 4);
  CHECK(f.logits.cols() == 5);
  CHECK(f.loss == Approx(std::log(5.0)).epsilon(1e-15));
  // T = 1: nothing to predict; the loss is defined as 0 and so is every gradient.
  const auto one = model_forward(ModelParams<double>::init(tiny_config(), 7), {3});
  CHECK(one.loss == 0.0);
  model_backward(ModelParams<double>::init(tiny_config(), 7), one).for_each([](const char* name, const auto& t) {
    INFO(name);
    CHECK(t.norm() == 0.0);
  });
  // The loss by hand from the logits.
  const auto g = model_forward(ModelParams<double>::init(tiny_config(), 8), {1, 4, 0});
  double by_hand = 0;
  const int next[] = {4, 0};
  for (int t = 0; t < 2; ++t) by_hand += std::log(g.logits.row(t).array().exp().sum()) - g.logits(t, next[t]);
  CHECK(g.loss == Approx(by_hand / 2).epsilon(1e-14));
}

TEST_CASE("model: TransPoints come from the schedule at the planned length, clamped to T", "[model]") {
  ModelConfig cfg = tiny_config();
  cfg.n_layers = 3;
  cfg.schedule = parse_schedule("1,4,100");
  const auto prm = ModelParams<double>::init(cfg, 1);
  CHECK(model_forward(prm, {0, 1, 2}).P == std::vector<int>{1, 3, 3});
  CHECK(model_forward(prm, {0, 1, 2}, 10).P == std::vector<int>{1, 3, 3});
  CHECK(model_forward(prm, {0, 1, 2, 3, 4}, 10).P == std::vector<int>{1, 4, 5});
  cfg.schedule = parse_schedule("0.5");
  CHECK(model_forward(ModelParams<double>::init(cfg, 1), {0, 1, 2, 3}, 6).P == std::vector<int>{3, 3, 3});
  CHECK_THROWS_WITH(model_forward(prm, {0, 1, 2}, 2), "planned length T_plan=2 is shorter than the sequence (T=3 tokens)");
}

TEST_CASE("model: a tied model has no head tensor: its head is the embedding transposed", "[model]") {
  const auto tied = ModelParams<double>::init(tiny_config(true), 3);
  CHECK(tied.head.size() == 0);
  CHECK(tied.head_weights() == tied.embedding.transpose());
  std::vector<std::string> names;
  tied.for_each([&](const char* name, const auto&) { names.push_back(name); });
  CHECK(names.front() == "embedding");
  CHECK(names[1] == "blocks.0.mixer_norm_w");
  CHECK(names[2] == "blocks.0.mixer.W_in");
  CHECK(names.back() == "final_norm_w");
  std::vector<std::string> untied_names;
  ModelParams<double>::init(tiny_config(false), 3).for_each([&](const char* name, const auto&) { untied_names.push_back(name); });
  CHECK(untied_names.back() == "head");
  CHECK(untied_names.size() == names.size() + 1);
  // The same weights in float and back.
  const auto f = tied.cast<float>();
  CHECK((f.embedding.cast<double>() - tied.embedding).norm() < 1e-6);
  CHECK(f.blocks.size() == 2);
}

TEST_CASE("model: bad input gets an error naming the problem", "[model][errors]") {
  const auto prm = ModelParams<double>::init(tiny_config(), 1);
  CHECK_THROWS_WITH(model_forward(prm, {0, 5, 1}), "tokens[1] = 5 is outside [0, V=5)");
  CHECK_THROWS_WITH(model_forward(prm, {-1}), "tokens[0] = -1 is outside [0, V=5)");
  CHECK_THROWS_WITH(model_forward(prm, {}), "tokens: the sequence must hold at least one token");

  ModelConfig cfg = tiny_config();
  cfg.V = 0;
  CHECK_THROWS_WITH(ModelParams<double>::zeros(cfg), "ModelConfig: V must be positive, got 0");
  cfg = tiny_config();
  cfg.F = -2;
  CHECK_THROWS_WITH(cfg.validate(), "ModelConfig: F must be positive, got -2");
  cfg = tiny_config();
  cfg.mixer.H = 3;
  CHECK_THROWS_WITH(cfg.validate(), Catch::Contains("E % H must be 0"));

  auto broken = prm;
  broken.blocks[1].W_down = Mat<double>::Zero(6, 3);
  CHECK_THROWS_WITH(model_forward(broken, {0, 1}), "blocks.1.W_down: expected shape [6, 4], got [6, 3]");
  broken = prm;
  broken.blocks.pop_back();
  CHECK_THROWS_WITH(broken.validate(), "blocks: expected 2 (n_layers), got 1");
  broken = prm;
  broken.head = Mat<double>::Zero(5, 4);
  CHECK_THROWS_WITH(broken.validate(), "head: expected shape [4, 5], got [5, 4]");
  auto tied = ModelParams<double>::init(tiny_config(true), 1);
  tied.head = Mat<double>::Zero(4, 5);
  CHECK_THROWS_WITH(tied.validate(), Catch::Contains("head must be empty, got [4, 5]"));
  broken = prm;
  broken.blocks[0].mixer = MixerParams<double>::init(MixerConfig{4, 8, 2, 2, 3, 2, 4}, 1);
  CHECK_THROWS_WITH(broken.validate(), Catch::Contains("blocks.0.mixer: config"));
}
