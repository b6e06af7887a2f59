// Checks of reference/attention.hpp and reference/converter.hpp.
#include "reference/attention.hpp"
#include "reference/converter.hpp"
#include "reference/ssm.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"

namespace transmamba {

namespace {
// A random prefix of P tokens: C (= Q), B (= K), x (= V), dt, and A.
template <class S>
struct PrefixCase {
  MixerConfig cfg;
  Mat<S> C, B, x, dt;
  Vec<S> A;
  template <class T>
  PrefixCase<T> cast() const {
    return {cfg, C.template cast<T>(), B.template cast<T>(), x.template cast<T>(), dt.template cast<T>(),
            A.template cast<T>()};
  }
};
PrefixCase<double> draw_prefix_case(int min_len) {
  const MixerConfig cfg = draw("cfg", gen_mixer_config());
  const int P = draw("P", rc::gen::inRange(min_len, 13));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  const int GN = cfg.G * cfg.N;
  return {cfg, rnd.mat<double>(P, GN, -2, 2), rnd.mat<double>(P, GN, -2, 2), rnd.mat<double>(P, cfg.E),
          rnd.step_sizes<double>(P, cfg.H), rnd.decay_rates<double>(cfg.H)};
}

// E4 written out element by element, independently of attention_forward's matrix form (and of
// MixerConfig::group_of).
Mat<double> attention_by_definition(const MixerConfig& cfg, const Mat<double>& C, const Mat<double>& B,
                                    const Mat<double>& x) {
  const int P = x.rows(), p = cfg.p(), N = cfg.N;
  Mat<double> y = Mat<double>::Zero(P, cfg.E);
  for (int t = 0; t < P; ++t)
    for (int h = 0; h < cfg.H; ++h) {
      const int g = h / (cfg.H / cfg.G);  // g(h) = h / (H/G), DESIGN.md section 1
      std::vector<double> score(t + 1);
      double total = 0;
      for (int s = 0; s <= t; ++s) {
        double dot = 0;
        for (int n = 0; n < N; ++n) dot += C(t, g * N + n) * B(s, g * N + n);
        total += score[s] = std::exp(dot / std::sqrt(double(N)));
      }
      for (int s = 0; s <= t; ++s)
        for (int i = 0; i < p; ++i) y(t, h * p + i) += score[s] / total * x(s, h * p + i);
    }
  return y;
}
}  // namespace

std::vector<Check> attention_checks() {
  return {
      {"attention.definition", "grouped causal attention = E4 written element by element", 200,
       [] {
         const auto c = draw_prefix_case(1);
         return std::vector<Comparison>{compare("y", attention_forward(c.cfg, c.C, c.B, c.x),
                                                attention_by_definition(c.cfg, c.C, c.B, c.x), bounds::kExact)};
       }},
      {"attention.backward_fd", "attention backward (d_C, d_B, d_x) = central finite differences", 100,
       [] {
         const auto c = draw_prefix_case(1);
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const Mat<double> d_y = rnd.mat<double>(c.x.rows(), c.cfg.E);
         const auto g = attention_backward(c.cfg, c.C, c.B, c.x, d_y);
         auto t = c.cast<Truth>();
         const Mat<Truth> d_y_t = d_y.cast<Truth>();
         auto loss = [&] { return attention_forward(t.cfg, t.C, t.B, t.x).cwiseProduct(d_y_t).sum(); };
         return std::vector<Comparison>{check_gradient("d_C", g.d_C, t.C, loss),
                                        check_gradient("d_B", g.d_B, t.B, loss),
                                        check_gradient("d_x", g.d_x, t.x, loss)};
       }},
  };
}

std::vector<Check> converter_checks() {
  return {
      {"converter.equals_scan_state",
       "Memory Converter S0 = final state of the recurrent scan over the prefix from a zero state (P >= 0)", 200,
       [] {
         const auto c = draw_prefix_case(0);
         const Mat<double> S0 = memory_converter(c.cfg, c.x, c.B, c.dt, c.A);
         const auto scan = ssm_recurrent<double>(c.cfg, c.x, c.dt, c.A, c.B, c.C, Mat<double>::Zero(c.cfg.E, c.cfg.N));
         return std::vector<Comparison>{compare("S0", S0, scan.final_state, bounds::kExact)};
       }},
      {"converter.backward_fd", "converter backward (d_x, d_B, d_dt, d_A) = central finite differences", 100,
       [] {
         const auto c = draw_prefix_case(0);
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const Mat<double> d_S0 = rnd.mat<double>(c.cfg.E, c.cfg.N);
         const auto g = memory_converter_backward(c.cfg, c.x, c.B, c.dt, c.A, d_S0);
         auto t = c.cast<Truth>();
         const Mat<Truth> d_S0_t = d_S0.cast<Truth>();
         auto loss = [&] { return memory_converter(t.cfg, t.x, t.B, t.dt, t.A).cwiseProduct(d_S0_t).sum(); };
         return std::vector<Comparison>{check_gradient("d_x", g.d_x, t.x, loss),
                                        check_gradient("d_B", g.d_B, t.B, loss),
                                        check_gradient("d_dt", g.d_dt, t.dt, loss),
                                        check_gradient("d_A", g.d_A, t.A, loss)};
       }},
  };
}

}  // namespace transmamba
