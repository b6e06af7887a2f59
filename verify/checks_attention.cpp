// Checks of reference/attention.hpp and reference/converter.hpp.
#include <algorithm>
#include <cmath>
#include <utility>

#include "reference/attention.hpp"
#include "reference/converter.hpp"
#include "reference/ssm.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"
#include "verify/ladder.hpp"

namespace transmamba {

namespace {
// A random prefix of P tokens: C (= Q), B (= K), x (= V), dt, A, and the upstream gradients of attention's y
// and of the converter's S0.
template <class S>
struct PrefixCase {
  MixerConfig cfg;
  Mat<S> C, B, x, dt;
  Vec<S> A;
  Mat<S> d_y, d_S0;
  template <class T>
  PrefixCase<T> cast() const {
    return {cfg, C.template cast<T>(), B.template cast<T>(), x.template cast<T>(), dt.template cast<T>(),
            A.template cast<T>(), d_y.template cast<T>(), d_S0.template cast<T>()};
  }
  template <class F>
  void for_each(F&& f) {
    f("C", C), f("B", B), f("x", x), f("dt", dt), f("A", A), f("d_y", d_y), f("d_S0", d_S0);
  }
};
// The regime (generators.hpp) gives C and B (scale, large scores), dt, A and x (RandomTensors::values).
// P = min_len - 1 + a length drawn from lengths: in [min_len, min_len + 11] by default.
PrefixCase<double> draw_prefix_case(Regimes regimes, int min_len, rc::Gen<int> lengths = gen_length()) {
  const MixerConfig cfg = draw("cfg", gen_mixer_config());
  const int P = draw("P", rc::gen::map(std::move(lengths), [min_len](int n) { return n - 1 + min_len; }));
  const Regime regime = draw("regime", gen_regime(regimes));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  const auto [C, B] = rnd.queries_keys<double>(P, cfg, regime);
  const Mat<double> dt = rnd.step_sizes<double>(P, cfg.H, regime);
  return {cfg,
          C,
          B,
          rnd.values<double>(P, cfg, dt, regime),
          dt,
          rnd.decay_rates<double>(cfg.H, regime),
          rnd.mat<double>(P, cfg.E),
          rnd.mat<double>(cfg.E, cfg.N)};
}

// E4 written out element by element, independently of attention_forward's matrix form (and of
// MixerConfig::group_of). softmax_s(z) = exp(z_s - m) / Σ_s' exp(z_s' - m) for any m; m = max_s z_s keeps
// every exp in [0, 1] (scores of 1e3 would overflow exp otherwise).
Mat<double> attention_by_definition(const MixerConfig& cfg, const Mat<double>& C, const Mat<double>& B,
                                    const Mat<double>& x) {
  const int P = x.rows(), p = cfg.p(), N = cfg.N;
  Mat<double> y = Mat<double>::Zero(P, cfg.E);
  for (int t = 0; t < P; ++t)
    for (int h = 0; h < cfg.H; ++h) {
      const int g = h / (cfg.H / cfg.G);  // g(h) = h / (H/G), DESIGN.md section 1
      std::vector<double> score(t + 1);
      double max_score = -INFINITY, total = 0;
      for (int s = 0; s <= t; ++s) {
        double dot = 0;
        for (int n = 0; n < N; ++n) dot += C(t, g * N + n) * B(s, g * N + n);
        max_score = std::max(max_score, score[s] = dot / std::sqrt(double(N)));
      }
      for (int s = 0; s <= t; ++s) total += score[s] = std::exp(score[s] - max_score);
      for (int s = 0; s <= t; ++s)
        for (int i = 0; i < p; ++i) y(t, h * p + i) += score[s] / total * x(s, h * p + i);
    }
  return y;
}

// Attention's output, its weights (every group's [P, P], stacked) and its backward.
template <class S>
Tensors<S> attention_tensors(const PrefixCase<S>& c) {
  Tensors<S> out;
  out.add("y", attention_forward(c.cfg, c.C, c.B, c.x));
  std::vector<Mat<S>> weights;
  for (int g = 0; g < c.cfg.G; ++g) weights.push_back(attention_weights(c.cfg, c.C, c.B, g));
  out.add_stacked("weights", weights);
  const auto g = attention_backward(c.cfg, c.C, c.B, c.x, c.d_y);
  out.add_gradient("d_C", g.d_C), out.add_gradient("d_B", g.d_B), out.add_gradient("d_x", g.d_x);
  return out;
}

// The converter's S0 and its backward.
template <class S>
Tensors<S> converter_tensors(const PrefixCase<S>& c) {
  Tensors<S> out;
  out.add("S0", memory_converter(c.cfg, c.x, c.B, c.dt, c.A));
  const auto g = memory_converter_backward(c.cfg, c.x, c.B, c.dt, c.A, c.d_S0);
  out.add_gradient("d_x", g.d_x), out.add_gradient("d_B", g.d_B), out.add_gradient("d_dt", g.d_dt);
  out.add_gradient("d_A", g.d_A);
  return out;
}
}  // namespace

std::vector<Check> attention_checks() {
  return {
      {"attention.definition", "grouped causal attention = E4 written element by element", 200,
       [] {
         const auto c = draw_prefix_case(Regimes::all, 1);
         Tensors<double> expected;
         expected.add("y", attention_by_definition(c.cfg, c.C, c.B, c.x));
         return compare_forms(c, [](const auto& k) {
           TensorsFor<decltype(k)> t;
           t.add("y", attention_forward(k.cfg, k.C, k.B, k.x));
           return t;
         }, expected);
       }},
      {"attention.backward_fd", "attention backward (d_C, d_B, d_x) = central finite differences", 100,
       [] {
         const auto c = draw_prefix_case(Regimes::finite_diff, 1);
         const auto g = attention_backward(c.cfg, c.C, c.B, c.x, c.d_y);
         auto t = c.cast<Truth>();
         auto loss = [&] { return attention_forward(t.cfg, t.C, t.B, t.x).cwiseProduct(t.d_y).sum(); };
         return std::vector<Comparison>{check_gradient("d_C", g.d_C, t.C, loss),
                                        check_gradient("d_B", g.d_B, t.B, loss),
                                        check_gradient("d_x", g.d_x, t.x, loss)};
       }},
      {"attention.ladder", "double vs long double: y, the weights and the backward, on every regime", 200,
       [] {
         return ladder<double, long double>(draw_prefix_case(Regimes::all, 1), [](const auto& k) { return attention_tensors(k); },
                                            bounds::kExact, bounds::kExact);
       }},
  };
}

std::vector<Check> converter_checks() {
  return {
      {"converter.equals_scan_state",
       "Memory Converter S0 = final state of the recurrent scan over the prefix from a zero state (P >= 0)", 200,
       [] {
         const auto c = draw_prefix_case(Regimes::all, 0);
         const auto scan = ssm_recurrent<double>(c.cfg, c.x, c.dt, c.A, c.B, c.C, Mat<double>::Zero(c.cfg.E, c.cfg.N));
         Tensors<double> expected;
         expected.add("S0", scan.final_state);
         return compare_forms(c, [](const auto& k) {
           TensorsFor<decltype(k)> t;
           t.add("S0", memory_converter(k.cfg, k.x, k.B, k.dt, k.A));
           return t;
         }, expected);
       }},
      {"converter.backward_fd", "converter backward (d_x, d_B, d_dt, d_A) = central finite differences", 100,
       [] {
         const auto c = draw_prefix_case(Regimes::finite_diff, 0);
         const auto g = memory_converter_backward(c.cfg, c.x, c.B, c.dt, c.A, c.d_S0);
         auto t = c.cast<Truth>();
         auto loss = [&] { return memory_converter(t.cfg, t.x, t.B, t.dt, t.A).cwiseProduct(t.d_S0).sum(); };
         return std::vector<Comparison>{check_gradient("d_x", g.d_x, t.x, loss),
                                        check_gradient("d_B", g.d_B, t.B, loss),
                                        check_gradient("d_dt", g.d_dt, t.dt, loss),
                                        check_gradient("d_A", g.d_A, t.A, loss)};
       }},
      {"converter.ladder", "double vs long double: S0 and the backward, on every regime (prefixes up to 48 tokens)", 200,
       [] {
         return ladder<double, long double>(draw_prefix_case(Regimes::all, 0, gen_long_length(48)), [](const auto& k) { return converter_tensors(k); },
                                            bounds::kExact, bounds::kExact);
       }},
  };
}

}  // namespace transmamba
