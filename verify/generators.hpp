// Random inputs for the checks: RapidCheck generators for configs and shapes (which shrink), and bounded
// random tensors drawn from a seed (the seed is part of every counterexample, so a case replays exactly).
//
// Values are bounded on purpose, never arbitrary floats: dt comes through a softplus of bounded values and
// A_log is bounded, so every decay a = exp(dt·A) lies in (0, 1] and stays away from 0.
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <ostream>
#include <random>
#include <utility>

#include "reference/model.hpp"
#include "reference/params.hpp"

namespace transmamba {

inline void showValue(const MixerConfig& cfg, std::ostream& os) { os << "MixerConfig{" << cfg.describe() << "}"; }

// *gen, with its value written to the case's log as "name = value": a failing case's report (RapidCheck's
// "Log:" section) then says which drawn value is T, P or the tensors' seed, where the counterexample
// itself only lists types and values ("int: 3").
template <class T>
T draw(const char* name, rc::Gen<T> gen) {
  T value = *std::move(gen);
  RC_LOG() << name << " = " << rc::toString(value) << "\n";
  return value;
}

// Small configs that cover the edges: G = 1, G = H and in between; N, W, Q from 1.
// p starts at 2: with G = H and p = 1 a norm group holds one channel, RMSNorm degenerates to sign(v)·w and
// its gradient is O(eps / |v|^3), below what central differences with step 1e-6 resolve to 1e-6.
inline rc::Gen<MixerConfig> gen_mixer_config() {
  return rc::gen::exec([] {
    MixerConfig cfg;
    cfg.G = *rc::gen::inRange(1, 4);
    cfg.H = cfg.G * *rc::gen::element(1, 1, 2, 3);  // H % G == 0; G = H when the factor is 1
    cfg.E = cfg.H * *rc::gen::inRange(2, 4);        // p = 2..3
    cfg.N = *rc::gen::inRange(1, 5);
    cfg.D = *rc::gen::inRange(1, 6);
    cfg.W = *rc::gen::inRange(1, 5);
    cfg.chunk = *rc::gen::inRange(1, 6);
    return cfg;
  });
}

// A sequence length, often not a multiple of the chunk; 1 is included.
inline rc::Gen<int> gen_length(int max_len = 12) { return rc::gen::inRange(1, max_len + 1); }

// A TransPoint in [0, T], with the edges 0, 1, T-1 and T drawn often.
inline rc::Gen<int> gen_transpoint(int T) {
  return rc::gen::oneOf(rc::gen::just(0), rc::gen::just(std::min(1, T)), rc::gen::just(T - 1), rc::gen::just(T),
                        rc::gen::inRange(0, T + 1));
}

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
  // Step sizes dt = softplus(U(-3, 1)) in about (0.05, 1.3).
  template <class S>
  Mat<S> step_sizes(Eigen::Index T, Eigen::Index H) {
    return mat<S>(T, H, -3, 1).unaryExpr([](S v) { return softplus(v); });
  }
  // A = -exp(U(-1, 1)) in about (-2.7, -0.37): decays exp(dt·A) in (0.03, 1).
  template <class S>
  Vec<S> decay_rates(Eigen::Index H) {
    return -vec<S>(H, -1, 1).array().exp().matrix();
  }
  // Every parameter random and bounded (unlike MixerParams::init, whose norm weights and D are all 1,
  // which would hide a mixed-up index).
  template <class S>
  MixerParams<S> params(const MixerConfig& cfg) {
    MixerParams<S> m = MixerParams<S>::zeros(cfg);
    m.W_in = mat<S>(cfg.D, cfg.in_proj_width(), -1, 1);
    m.conv_w = mat<S>(cfg.conv_channels(), cfg.W, -1, 1);
    m.conv_b = vec<S>(cfg.conv_channels(), -0.5, 0.5);
    m.dt_bias = vec<S>(cfg.H, -2, 0);
    m.A_log = vec<S>(cfg.H, -1, 1);
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
  ModelParams<double> model_params(const ModelConfig& cfg) {
    ModelParams<double> m = ModelParams<double>::zeros(cfg);
    const int D = cfg.mixer.D;
    m.embedding = mat<double>(cfg.V, D, 0.5, 1);
    for (Eigen::Index i = 0; i < m.embedding.size(); ++i)
      if (uniform(-1, 1) < 0) m.embedding.data()[i] = -m.embedding.data()[i];
    for (BlockParams<double>& b : m.blocks) {
      b.mixer_norm_w = vec<double>(D, 0.5, 1.5);
      b.mixer = params<double>(cfg.mixer);
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
