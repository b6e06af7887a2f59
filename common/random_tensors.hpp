// Bounded random tensors from a seed: the random inputs of the checks (verify/generators.hpp draws their
// seeds, shapes and regimes) and of the golden fixtures (fixture_format/fixtures.cpp: a fixture's inputs are
// these draws from its seed, so that tm-fixtures regenerates the committed files byte for byte).
//
// Values are bounded on purpose, never arbitrary floats: the easy regime, small well-scaled values where every
// decay a = exp(dt·A) stays away from 0, and the hard ones where the reference's formulas are put to the test
// (DESIGN.md section 3).
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>

#include "reference/model.hpp"
#include "reference/params.hpp"

namespace transmamba {

// How a case's values are drawn. The easy regime is what every check drew before issue 8: step sizes
// dt = softplus(U(-3, 1)) in (0.05, 1.3), A = -exp(U(-1, 1)) in (-2.7, -0.37), values in [-1, 1]. Each hard
// part is drawn alongside it (gen_regime: the easy regime half of the time):
//   steps mixed:        each token's dt easy or log-uniform in [1, 1e3]: decays exp(dt·A) that underflow to
//                       exactly 0 (dt·A < -745), long runs whose Σ dt·A reaches 1e5, short steps after them;
//   steps long_prefix:  the first half of the tokens dt in [1e4, 1e5], the rest easy: the cumulative
//                       log-decay of the prefix is large (1e4 to 1e7, as a prefix of thousands of tokens of dt
//                       ~1e2 would make it) and the segments after it are short, where exp(cumA[t] - cumA[s])
//                       cancels (issue 8, DESIGN.md section 3);
//   strong decay:       A = -exp(U(-1, log 16)) down to -16 (Mamba2 initialises A in [1, 16]);
//   scale 1e3:          values (x, B, C, the initial state, a layer's input u) of magnitude 1e3;
//   large scores:       attention scores 750 to 1000 with O(1) differences between keys (B's first coordinate
//                       of each group is 1, C's is sqrt(N)·U(750, 1000)): exp(score) without the row's maximum
//                       subtracted overflows (> 709.8), the softmax is not one-hot.
// A part that does not apply to a component (scores for a scan) is drawn and ignored.
struct Regime {
  enum class Steps { easy, mixed, long_prefix };
  Steps steps = Steps::easy;
  bool strong_decay = false;
  double scale = 1;
  bool large_scores = false;

  std::string describe() const {
    const char* names[] = {"easy", "mixed", "long_prefix"};
    return std::string("steps ") + names[int(steps)] + (strong_decay ? ", strong decay" : "") +
           (scale != 1 ? ", scale " + std::to_string(int(scale)) : "") + (large_scores ? ", large scores" : "");
  }
};
// Bounded random tensors from one seeded generator.
class RandomTensors {
 public:
  explicit RandomTensors(std::uint64_t seed) : rng_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
  Eigen::MatrixXd matrix(Eigen::Index rows, Eigen::Index cols, double lo = -1, double hi = 1) {
    Eigen::MatrixXd m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = uniform(lo, hi);
    return m;
  }
  template <class S>
  Mat<S> mat(Eigen::Index rows, Eigen::Index cols, double lo = -1, double hi = 1) {
    return matrix(rows, cols, lo, hi).cast<S>();
  }
  template <class S>
  Vec<S> vec(Eigen::Index n, double lo = -1, double hi = 1) {
    return matrix(n, 1, lo, hi).cast<S>();
  }
  // Step sizes [T, H] of the regime (Regime above); easy: dt = softplus(U(-3, 1)) in about (0.05, 1.3).
  template <class S>
  Mat<S> step_sizes(Eigen::Index T, Eigen::Index H, const Regime& regime = {}) {
    Mat<S> dt = mat<S>(T, H, -3, 1).unaryExpr([](S v) { return softplus(v); });
    const Eigen::Index prefix = (T + 1) / 2;  // long_prefix: tokens 0 .. prefix-1
    for (Eigen::Index t = 0; t < T; ++t)
      for (Eigen::Index h = 0; h < H; ++h) {
        if (regime.steps == Regime::Steps::mixed && uniform(0, 1) < 0.5) dt(t, h) = S(std::exp(uniform(0, std::log(1e3))));
        if (regime.steps == Regime::Steps::long_prefix && t < prefix) dt(t, h) = S(uniform(1e4, 1e5));
      }
    return dt;
  }
  // Values x [T, H·p] (= V) for the step sizes dt [T, H]: U(-scale, scale), divided by dt where the regime's
  // steps are large, so that every token's input dt·x ⊗ B keeps the scale: a token of dt = 1e3 would otherwise
  // outweigh the others 1e3 times, and their outputs (where a formula that cancels shows) would vanish in the
  // relative norm of the tensor.
  template <class S>
  Mat<S> values(Eigen::Index T, const MixerConfig& cfg, const Mat<S>& dt, const Regime& regime) {
    Mat<S> x = mat<S>(T, cfg.E, -regime.scale, regime.scale);
    if (regime.steps != Regime::Steps::easy)
      for (Eigen::Index t = 0; t < T; ++t)
        for (int h = 0; h < cfg.H; ++h) x.row(t).segment(h * cfg.p(), cfg.p()) /= std::max(S(1), dt(t, h));
    return x;
  }
  // Decay rates [H]; easy: A = -exp(U(-1, 1)) in about (-2.7, -0.37), decays exp(dt·A) in (0.03, 1) for easy
  // steps; strong: A = -exp(U(-1, log 16)) in (-16, -0.37).
  template <class S>
  Vec<S> decay_rates(Eigen::Index H, const Regime& regime = {}) {
    return -vec<S>(H, -1, regime.strong_decay ? std::log(16.0) : 1).array().exp().matrix();
  }
  // Queries and keys C, B [n, G·N] of the regime: U(-2, 2) times its scale; with large scores, each group's first
  // coordinate is 1 in B and sqrt(N)·U(750, 1000) in C (Regime above).
  template <class S>
  std::pair<Mat<S>, Mat<S>> queries_keys(Eigen::Index n, const MixerConfig& cfg, const Regime& regime) {
    Mat<S> C = mat<S>(n, cfg.G * cfg.N, -2 * regime.scale, 2 * regime.scale);
    Mat<S> B = mat<S>(n, cfg.G * cfg.N, -2 * regime.scale, 2 * regime.scale);
    if (regime.large_scores)
      for (int g = 0; g < cfg.G; ++g) {
        B.col(g * cfg.N).setOnes();
        C.col(g * cfg.N) = mat<S>(n, 1, 750, 1000) * S(std::sqrt(double(cfg.N)));
      }
    return {C, B};
  }
  // Every parameter random and bounded (unlike MixerParams::init, whose norm weights and D are all 1,
  // which would hide a mixed-up index). The regime's steps and decay (its scale is the caller's: a layer's
  // input u, a model's W_in): dt_bias in U(-2, 0); for mixed steps each head's either that or log-uniform in
  // [1, 1e3], for a long prefix U(500, 1000) for every head (dt = softplus(dt_raw + dt_bias) ~ dt_bias when
  // that is large; at the layer, scale 1e3 gives dt_raw of ±1e3 and with it short steps between long ones).
  // A_log in U(-1, 1), or U(-1, log 16) for strong decay.
  template <class S>
  MixerParams<S> params(const MixerConfig& cfg, const Regime& regime = {}) {
    MixerParams<S> m = MixerParams<S>::zeros(cfg);
    m.W_in = mat<S>(cfg.D, cfg.in_proj_width(), -1, 1);
    m.conv_w = mat<S>(cfg.conv_channels(), cfg.W, -1, 1);
    m.conv_b = vec<S>(cfg.conv_channels(), -0.5, 0.5);
    m.dt_bias = vec<S>(cfg.H, -2, 0);
    for (int h = 0; h < cfg.H; ++h) {
      if (regime.steps == Regime::Steps::mixed && uniform(0, 1) < 0.5) m.dt_bias(h) = S(std::exp(uniform(0, std::log(1e3))));
      if (regime.steps == Regime::Steps::long_prefix) m.dt_bias(h) = S(uniform(500, 1000));
    }
    m.A_log = vec<S>(cfg.H, -1, regime.strong_decay ? std::log(16.0) : 1);
    m.D_skip = vec<S>(cfg.H, -1, 1);
    m.norm_w = vec<S>(cfg.E, 0.5, 1.5);
    m.W_out = mat<S>(cfg.E, cfg.D, -1, 1);
    return m;
  }
  // A whole model, every parameter random and bounded as params() for the mixers, with two draws kept away
  // from where central differences lose their accuracy (a norm whose input is near 0 has curvature ~ 1/rms²;
  // with both drawn from U(-1, 1) the truncation error of step 1e-6 alone reached 1.4e-6 in 6000 tiny models,
  // where step 1e-8 agreed with the analytic gradient to 1.4e-10):
  //   - embedding entries ±U(0.5, 1): a token's row, the input of the first pre-norm, never has a small rms;
  //   - D_skip in U(1, 2), positive as Mamba2's D = 1: at the first scan token from a zero state a head's
  //     y = x·(dt·B·C + D_skip) vanishes for D_skip = -dt·B·C, which U(-1, 1) hit often.
  // The regime as in params(); its scale multiplies every mixer's W_in (the mixer's input is normed, so this
  // is what gives x, B, C and dt_raw of magnitude 1e3 inside a model).
  ModelParams<double> model_params(const ModelConfig& cfg, const Regime& regime = {}) {
    ModelParams<double> m = ModelParams<double>::zeros(cfg);
    const int D = cfg.mixer.D;
    m.embedding = mat<double>(cfg.V, D, 0.5, 1);
    for (Eigen::Index i = 0; i < m.embedding.size(); ++i)
      if (uniform(-1, 1) < 0) m.embedding.data()[i] = -m.embedding.data()[i];
    for (BlockParams<double>& b : m.blocks) {
      b.mixer_norm_w = vec<double>(D, 0.5, 1.5);
      b.mixer = params<double>(cfg.mixer, regime);
      b.mixer.W_in *= regime.scale;
      b.mixer.D_skip = vec<double>(cfg.mixer.H, 1, 2);
      b.mlp_norm_w = vec<double>(D, 0.5, 1.5);
      b.W_gate = mat<double>(D, cfg.F);
      b.W_up = mat<double>(D, cfg.F);
      b.W_down = mat<double>(cfg.F, D);
    }
    m.final_norm_w = vec<double>(D, 0.5, 1.5);
    if (!cfg.tie_embeddings) m.head = mat<double>(D, cfg.V);
    return m;
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace transmamba
