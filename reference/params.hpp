// The parameters of one mixer layer: the weights of one Mamba2 layer, read either as attention or as a scan
// (DESIGN.md section 2). The same struct holds their gradients.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

#include "reference/config.hpp"
#include "reference/tensor.hpp"

namespace transmamba {

template <class S>
struct MixerParams {
  MixerConfig cfg;
  Mat<S> W_in;     // [D, 2E + 2GN + H]   input projection (E1), no bias
  Mat<S> conv_w;   // [E + 2GN, W]        depthwise causal conv weight (E2)
  Vec<S> conv_b;   // [E + 2GN]           conv bias (E2)
  Vec<S> dt_bias;  // [H]                 step-size bias (E3)
  Vec<S> A_log;    // [H]                 A = -exp(A_log) (E3)
  Vec<S> D_skip;   // [H]                 skip D * x of scan tokens (E6)
  Vec<S> norm_w;   // [E]                 grouped RMSNorm weight (E7)
  Mat<S> W_out;    // [E, D]              output projection (E8)

  // Every tensor in a fixed order, with its name: f(name, tensor). Used by gradient checks and fixtures.
  template <class F>
  void for_each(F&& f) {
    f("W_in", W_in), f("conv_w", conv_w), f("conv_b", conv_b), f("dt_bias", dt_bias), f("A_log", A_log);
    f("D_skip", D_skip), f("norm_w", norm_w), f("W_out", W_out);
  }
  template <class F>
  void for_each(F&& f) const {
    const_cast<MixerParams*>(this)->for_each([&](const char* name, const auto& t) { f(name, t); });
  }

  // All tensors zero, with the shapes of cfg (the start of a gradient accumulation).
  static MixerParams zeros(const MixerConfig& cfg) {
    cfg.validate();
    MixerParams m;
    m.cfg = cfg;
    m.W_in = Mat<S>::Zero(cfg.D, cfg.in_proj_width());
    m.conv_w = Mat<S>::Zero(cfg.conv_channels(), cfg.W);
    m.conv_b = Vec<S>::Zero(cfg.conv_channels());
    m.dt_bias = m.A_log = m.D_skip = Vec<S>::Zero(cfg.H);
    m.norm_w = Vec<S>::Zero(cfg.E);
    m.W_out = Mat<S>::Zero(cfg.E, cfg.D);
    return m;
  }

  // Mamba2's initialisation (PAPER.md section 1.2), reproducible from seed:
  // linear and conv weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as PyTorch does; A ~ U(1, 16), A_log = log A;
  // dt log-uniform in [1e-3, 0.1] (floor 1e-4) and dt_bias = softplus^-1(dt); D = 1; norm weight 1.
  static MixerParams init(const MixerConfig& cfg, std::uint64_t seed) {
    MixerParams m = zeros(cfg);
    std::mt19937_64 rng(seed);
    auto uniform = [&](double lo, double hi) { return S(std::uniform_real_distribution<double>(lo, hi)(rng)); };
    auto fill = [&](auto& t, double bound) { t = t.unaryExpr([&](S) { return uniform(-bound, bound); }); };
    fill(m.W_in, 1 / std::sqrt(double(cfg.D)));
    fill(m.conv_w, 1 / std::sqrt(double(cfg.W)));
    fill(m.conv_b, 1 / std::sqrt(double(cfg.W)));
    fill(m.W_out, 1 / std::sqrt(double(cfg.E)));
    for (int h = 0; h < cfg.H; ++h) {
      m.A_log(h) = S(std::log(double(uniform(1, 16))));
      const double dt = std::max(std::exp(double(uniform(std::log(1e-3), std::log(0.1)))), 1e-4);
      m.dt_bias(h) = S(dt + std::log(-std::expm1(-dt)));  // softplus^-1(dt)
    }
    m.D_skip.setOnes();
    m.norm_w.setOnes();
    return m;
  }

  // Throws std::invalid_argument naming the first tensor whose shape does not fit cfg.
  void validate() const {
    cfg.validate();
    check_shape("W_in", W_in, cfg.D, cfg.in_proj_width());
    check_shape("conv_w", conv_w, cfg.conv_channels(), cfg.W);
    check_size("conv_b", conv_b, cfg.conv_channels());
    check_size("dt_bias", dt_bias, cfg.H);
    check_size("A_log", A_log, cfg.H);
    check_size("D_skip", D_skip, cfg.H);
    check_size("norm_w", norm_w, cfg.E);
    check_shape("W_out", W_out, cfg.E, cfg.D);
  }

  template <class T>
  MixerParams<T> cast() const {
    MixerParams<T> m = MixerParams<T>::zeros(cfg);
    m.W_in = W_in.template cast<T>(), m.conv_w = conv_w.template cast<T>(), m.conv_b = conv_b.template cast<T>();
    m.dt_bias = dt_bias.template cast<T>(), m.A_log = A_log.template cast<T>();
    m.D_skip = D_skip.template cast<T>(), m.norm_w = norm_w.template cast<T>(), m.W_out = W_out.template cast<T>();
    return m;
  }
};

}  // namespace transmamba
