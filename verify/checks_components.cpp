// Checks of the small components: projection (E1, E8), conv (E2), step sizes (E3), norm (E7): each written out
// element by element from DESIGN.md, its backward against finite differences, and the double reference against
// itself in long double (the ladder, verify/ladder.hpp).
#include <algorithm>
#include <cmath>

#include "reference/conv.hpp"
#include "reference/norm.hpp"
#include "reference/projection.hpp"
#include "reference/step_size.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"
#include "verify/ladder.hpp"

namespace transmamba {

namespace {

// ---- the cases: inputs and upstream gradients, values of the drawn regime's scale (1 or 1e3) --------------

// A linear map out = in · W: in [T, n], W [n, m], d_out [T, m].
template <class S>
struct LinearCase {
  Mat<S> in, W, d_out;
  template <class T>
  LinearCase<T> cast() const {
    return {in.template cast<T>(), W.template cast<T>(), d_out.template cast<T>()};
  }
  template <class F>
  void for_each(F&& f) {
    f("in", in), f("W", W), f("d_out", d_out);
  }
};
LinearCase<double> draw_linear_case(Regimes regimes) {
  const int T = draw("T", gen_length()), n = draw("n", rc::gen::inRange(1, 8)), m = draw("m", rc::gen::inRange(1, 8));
  const double v = draw("regime", gen_regime(regimes)).scale;
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  return {rnd.mat<double>(T, n, -v, v), rnd.mat<double>(n, m), rnd.mat<double>(T, m)};
}
template <class S>
Tensors<S> linear_tensors(const LinearCase<S>& c) {
  Tensors<S> out;
  out.add("out", linear_forward(c.in, c.W));
  const auto g = linear_backward(c.in, c.W, c.d_out);
  out.add_gradient("d_in", g.d_in), out.add_gradient("d_W", g.d_W);
  return out;
}

// The causal conv + SiLU of v [T, C] with w [C, W], b [C]; d_out [T, C].
template <class S>
struct ConvCase {
  Mat<S> v, w;
  Vec<S> b;
  Mat<S> d_out;
  template <class T>
  ConvCase<T> cast() const {
    return {v.template cast<T>(), w.template cast<T>(), b.template cast<T>(), d_out.template cast<T>()};
  }
  template <class F>
  void for_each(F&& f) {
    f("v", v), f("w", w), f("b", b), f("d_out", d_out);
  }
};
ConvCase<double> draw_conv_case(Regimes regimes) {
  const int T = draw("T", gen_length()), C = draw("C", rc::gen::inRange(1, 6)), W = draw("W", rc::gen::inRange(1, 6));
  const double v = draw("regime", gen_regime(regimes)).scale;
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  return {rnd.mat<double>(T, C, -v, v), rnd.mat<double>(C, W), rnd.vec<double>(C), rnd.mat<double>(T, C)};
}
template <class S>
Tensors<S> conv_tensors(const ConvCase<S>& c) {
  Tensors<S> out;
  out.add("conv", causal_conv(c.v, c.w, c.b));
  out.add("out", conv_silu_forward(c.v, c.w, c.b));
  const auto g = conv_silu_backward(c.v, c.w, c.b, c.d_out);
  out.add_gradient("d_v", g.d_v), out.add_gradient("d_w", g.d_w), out.add_gradient("d_b", g.d_b);
  return out;
}

// Step sizes from dt_raw [T, H] and dt_bias [H], decay rates from A_log [H]; d_dt [T, H], d_A [H]. The regime's
// scale multiplies dt_raw (dt up to 1e3); strong decay draws A_log up to log 16.
template <class S>
struct StepCase {
  Mat<S> dt_raw;
  Vec<S> dt_bias, A_log;
  Mat<S> d_dt;
  Vec<S> d_A;
  template <class T>
  StepCase<T> cast() const {
    return {dt_raw.template cast<T>(), dt_bias.template cast<T>(), A_log.template cast<T>(), d_dt.template cast<T>(),
            d_A.template cast<T>()};
  }
  template <class F>
  void for_each(F&& f) {
    f("dt_raw", dt_raw), f("dt_bias", dt_bias), f("A_log", A_log), f("d_dt", d_dt), f("d_A", d_A);
  }
};
StepCase<double> draw_step_case(Regimes regimes) {
  const int T = draw("T", gen_length()), H = draw("H", rc::gen::inRange(1, 5));
  const Regime regime = draw("regime", gen_regime(regimes));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  const double v = 3 * regime.scale;
  return {rnd.mat<double>(T, H, -v, v), rnd.vec<double>(H, -2, 0),
          rnd.vec<double>(H, -1, regime.strong_decay ? std::log(16.0) : 1), rnd.mat<double>(T, H), rnd.vec<double>(H)};
}
template <class S>
Tensors<S> step_tensors(const StepCase<S>& c) {
  Tensors<S> out;
  out.add("dt", step_size(c.dt_raw, c.dt_bias));
  out.add("A", decay_rate(c.A_log));
  const auto g = step_size_backward(c.dt_raw, c.dt_bias, c.d_dt);
  out.add_gradient("d_dt_raw", g.d_dt_raw), out.add_gradient("d_dt_bias", g.d_dt_bias);
  out.add_gradient("d_A_log", decay_rate_backward(c.A_log, c.d_A));
  return out;
}

// Grouped RMSNorm of v [T, groups·width], gated by z or not, weight w; d_out [T, groups·width].
template <class S>
struct NormCase {
  int groups;
  bool gated;
  Mat<S> v, z;
  Vec<S> w;
  Mat<S> d_out;
  template <class T>
  NormCase<T> cast() const {
    return {groups, gated, v.template cast<T>(), z.template cast<T>(), w.template cast<T>(), d_out.template cast<T>()};
  }
  template <class F>
  void for_each(F&& f) {
    f("v", v), f("z", z), f("w", w), f("d_out", d_out);
  }
  const Mat<S>* gate() const { return gated ? &z : nullptr; }
};
// min_width 2 for finite differences: see gen_mixer_config.
NormCase<double> draw_norm_case(Regimes regimes, int min_width) {
  const int T = draw("T", gen_length()), groups = draw("groups", rc::gen::inRange(1, 4)),
            width = draw("width", rc::gen::inRange(min_width, 5));
  const bool gated = draw("gated", rc::gen::arbitrary<bool>());
  const double v = draw("regime", gen_regime(regimes)).scale;
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  const int C = groups * width;
  return {groups, gated, rnd.mat<double>(T, C, -v, v), rnd.mat<double>(T, C, -3, 3), rnd.vec<double>(C, 0.5, 1.5),
          rnd.mat<double>(T, C)};
}
template <class S>
Tensors<S> norm_tensors(const NormCase<S>& c) {
  Tensors<S> out;
  out.add("out", rmsnorm_forward(c.v, c.w, c.groups, c.gate()));
  const auto g = rmsnorm_backward(c.v, c.w, c.groups, c.gate(), c.d_out);
  out.add_gradient("d_v", g.d_v), out.add_gradient("d_w", g.d_w);
  if (c.gated) out.add_gradient("d_z", g.d_z);
  return out;
}

// ---- the definitions, element by element from DESIGN.md section 2 ------------------------------------------

double silu_by_definition(double v) { return v / (1 + std::exp(-v)); }

// E1 and the splits of E1/E2: zxbcdt[t, j] = Σ_d u[t, d] · W_in[d, j], then z = columns [0, E), xBC = [E, 2E+2GN)
// of which x = its columns [0, E), B = [E, E+GN), C = [E+GN, E+2GN), and dt_raw = the last H columns.
// The same product is E8's out[t, d] = Σ_e ŷ[t, e] · W_out[e, d].
Mat<double> product_by_definition(const Mat<double>& in, const Mat<double>& W) {
  Mat<double> out = Mat<double>::Zero(in.rows(), W.cols());
  for (Eigen::Index t = 0; t < in.rows(); ++t)
    for (Eigen::Index j = 0; j < W.cols(); ++j)
      for (Eigen::Index k = 0; k < in.cols(); ++k) out(t, j) += in(t, k) * W(k, j);
  return out;
}

}  // namespace

std::vector<Check> component_checks() {
  return {
      {"projection.definition",
       "E1 (u · W_in split into z, x, B, C, dt_raw) and E8 (ŷ · W_out) written element by element", 200,
       [] {
         const MixerConfig cfg = draw("cfg", gen_mixer_config());
         const int T = draw("T", gen_length());
         const double v = draw("regime", gen_regime()).scale;
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const int E = cfg.E, GN = cfg.G * cfg.N;
         const LinearCase<double> in{rnd.mat<double>(T, cfg.D, -v, v), rnd.mat<double>(cfg.D, cfg.in_proj_width()),
                                     Mat<double>::Zero(T, cfg.in_proj_width())};
         const LinearCase<double> out{rnd.mat<double>(T, E, -v, v), rnd.mat<double>(E, cfg.D), Mat<double>::Zero(T, cfg.D)};
         const Mat<double> zxbcdt = product_by_definition(in.in, in.W);
         auto parts = [&](const auto& c) {  // the reference's E1 and its splits
           const auto p = split_in_proj(cfg, linear_forward(c.in, c.W));
           const auto xbc = split_xbc(cfg, p.xBC);
           TensorsFor<decltype(c)> t;
           t.add("z", p.z), t.add("x", xbc.x), t.add("B", xbc.B), t.add("C", xbc.C), t.add("dt_raw", p.dt_raw);
           return t;
         };
         Tensors<double> expected;
         expected.add("z", zxbcdt.leftCols(E)), expected.add("x", zxbcdt.middleCols(E, E));
         expected.add("B", zxbcdt.middleCols(2 * E, GN)), expected.add("C", zxbcdt.middleCols(2 * E + GN, GN));
         expected.add("dt_raw", zxbcdt.rightCols(cfg.H));
         std::vector<Comparison> r = compare_forms(in, parts, expected);
         Tensors<double> e8;
         e8.add("out", product_by_definition(out.in, out.W));
         auto product = [](const auto& c) {  // the reference's E8
           TensorsFor<decltype(c)> t;
           t.add("out", linear_forward(c.in, c.W));
           return t;
         };
         for (Comparison& c : compare_forms(out, product, e8)) r.push_back(c);
         return r;
       }},
      {"projection.backward_fd", "linear backward (d_in, d_W) = central finite differences", 100,
       [] {
         const auto c = draw_linear_case(Regimes::finite_diff);
         const auto g = linear_backward(c.in, c.W, c.d_out);
         auto t = c.cast<Truth>();
         auto loss = [&] { return linear_forward(t.in, t.W).cwiseProduct(t.d_out).sum(); };
         return std::vector<Comparison>{check_gradient("d_in", g.d_in, t.in, loss),
                                        check_gradient("d_W", g.d_W, t.W, loss)};
       }},
      {"projection.ladder", "double vs long double: out, d_in, d_W", 200,
       [] {
         return ladder<double, long double>(draw_linear_case(Regimes::all), [](const auto& c) { return linear_tensors(c); },
                                            bounds::kExact, bounds::kExact);
       }},
      {"conv.definition",
       "E2 written element by element: b[c] + Σ_k w[c,k]·v[t-W+1+k, c] (zero before token 0), then SiLU", 200,
       [] {
         const auto c = draw_conv_case(Regimes::all);
         const Eigen::Index T = c.v.rows(), C = c.v.cols(), W = c.w.cols();
         Tensors<double> expected;
         Mat<double> conv(T, C);
         for (Eigen::Index t = 0; t < T; ++t)
           for (Eigen::Index ch = 0; ch < C; ++ch) {
             conv(t, ch) = c.b(ch);
             for (Eigen::Index k = 0; k < W; ++k)
               if (t - W + 1 + k >= 0) conv(t, ch) += c.w(ch, k) * c.v(t - W + 1 + k, ch);
           }
         expected.add("conv", conv), expected.add("out", conv.unaryExpr(&silu_by_definition));
         return compare_forms(c, [](const auto& k) {
           TensorsFor<decltype(k)> t;
           t.add("conv", causal_conv(k.v, k.w, k.b)), t.add("out", conv_silu_forward(k.v, k.w, k.b));
           return t;
         }, expected);
       }},
      {"conv.backward_fd", "causal conv + SiLU backward (d_v, d_w, d_b) = central finite differences", 100,
       [] {
         const auto c = draw_conv_case(Regimes::finite_diff);
         const auto g = conv_silu_backward(c.v, c.w, c.b, c.d_out);
         auto t = c.cast<Truth>();
         auto loss = [&] { return conv_silu_forward(t.v, t.w, t.b).cwiseProduct(t.d_out).sum(); };
         return std::vector<Comparison>{check_gradient("d_v", g.d_v, t.v, loss),
                                        check_gradient("d_w", g.d_w, t.w, loss),
                                        check_gradient("d_b", g.d_b, t.b, loss)};
       }},
      {"conv.ladder", "double vs long double: conv, out, d_v, d_w, d_b", 200,
       [] {
         return ladder<double, long double>(draw_conv_case(Regimes::all), [](const auto& c) { return conv_tensors(c); },
                                            bounds::kExact, bounds::kExact);
       }},
      {"step_size.definition",
       "E3 written element by element: dt = log(1 + e^(dt_raw + dt_bias)) (as max(v,0) + log1p(e^-|v|)), A = -exp(A_log)",
       200,
       [] {
         const auto c = draw_step_case(Regimes::all);
         Mat<double> dt(c.dt_raw.rows(), c.dt_raw.cols());
         for (Eigen::Index t = 0; t < dt.rows(); ++t)
           for (Eigen::Index h = 0; h < dt.cols(); ++h) {
             const double v = c.dt_raw(t, h) + c.dt_bias(h);
             dt(t, h) = std::max(v, 0.0) + std::log1p(std::exp(-std::abs(v)));  // log(1 + e^v), without overflow
           }
         Vec<double> A(c.A_log.size());
         for (Eigen::Index h = 0; h < A.size(); ++h) A(h) = -std::exp(c.A_log(h));
         Tensors<double> expected;
         expected.add("dt", dt), expected.add("A", A);
         return compare_forms(c, [](const auto& k) {
           TensorsFor<decltype(k)> t;
           t.add("dt", step_size(k.dt_raw, k.dt_bias)), t.add("A", decay_rate(k.A_log));
           return t;
         }, expected);
       }},
      {"step_size.backward_fd", "step size and decay rate backward (d_dt_raw, d_dt_bias, d_A_log) = finite differences", 100,
       [] {
         const auto c = draw_step_case(Regimes::finite_diff);
         const auto g = step_size_backward(c.dt_raw, c.dt_bias, c.d_dt);
         auto t = c.cast<Truth>();
         auto loss = [&] { return step_size(t.dt_raw, t.dt_bias).cwiseProduct(t.d_dt).sum() + decay_rate(t.A_log).dot(t.d_A); };
         return std::vector<Comparison>{
             check_gradient("d_dt_raw", g.d_dt_raw, t.dt_raw, loss),
             check_gradient("d_dt_bias", g.d_dt_bias, t.dt_bias, loss),
             check_gradient("d_A_log", decay_rate_backward(c.A_log, c.d_A), t.A_log, loss)};
       }},
      {"step_size.ladder", "double vs long double: dt, A, d_dt_raw, d_dt_bias, d_A_log", 200,
       [] {
         return ladder<double, long double>(draw_step_case(Regimes::all), [](const auto& c) { return step_tensors(c); },
                                            bounds::kExact, bounds::kExact);
       }},
      {"norm.definition", "grouped RMSNorm, with and without gate = E7 written element by element (eps 1e-5)", 200,
       [] {
         const auto c = draw_norm_case(Regimes::all, 1);
         const Eigen::Index T = c.v.rows(), C = c.v.cols(), width = C / c.groups;
         // E7: out[t, c] = g[t, c] / sqrt(mean over c's group of g² + 1e-5) · w[c], g = v ⊙ SiLU(z) or v.
         Mat<double> g = c.v, expected(T, C);
         if (c.gated)
           for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] *= silu_by_definition(c.z.data()[i]);
         for (Eigen::Index t = 0; t < T; ++t)
           for (Eigen::Index ch = 0; ch < C; ++ch) {
             const Eigen::Index first = ch / width * width;
             double mean_sq = 0;
             for (Eigen::Index k = first; k < first + width; ++k) mean_sq += g(t, k) * g(t, k) / width;
             expected(t, ch) = g(t, ch) / std::sqrt(mean_sq + 1e-5) * c.w(ch);
           }
         Tensors<double> e;
         e.add("out", expected);
         return compare_forms(c, [](const auto& k) {
           TensorsFor<decltype(k)> t;
           t.add("out", rmsnorm_forward(k.v, k.w, k.groups, k.gate()));
           return t;
         }, e);
       }},
      {"norm.backward_fd", "grouped RMSNorm backward, with and without gate (d_v, d_z, d_w) = finite differences", 100,
       [] {
         const auto c = draw_norm_case(Regimes::finite_diff, 2);
         const auto g = rmsnorm_backward(c.v, c.w, c.groups, c.gate(), c.d_out);
         auto t = c.cast<Truth>();
         auto loss = [&] { return rmsnorm_forward(t.v, t.w, t.groups, t.gate()).cwiseProduct(t.d_out).sum(); };
         std::vector<Comparison> out{check_gradient("d_v", g.d_v, t.v, loss), check_gradient("d_w", g.d_w, t.w, loss)};
         if (c.gated) out.push_back(check_gradient("d_z", g.d_z, t.z, loss));
         return out;
       }},
      {"norm.ladder", "double vs long double: out, d_v, d_w, d_z", 200,
       [] {
         return ladder<double, long double>(draw_norm_case(Regimes::all, 1), [](const auto& c) { return norm_tensors(c); },
                                            bounds::kExact, bounds::kExact);
       }},
  };
}

}  // namespace transmamba
