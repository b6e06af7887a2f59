// Checks of reference/ssm.hpp: the recurrent form is E6 as written, the three forms agree, a scan can be
// split and resumed, the backward matches finite differences, and the double reference agrees with itself in
// long double (the ladder, verify/ladder.hpp) and float with the double truth.
#include <cmath>
#include <utility>

#include "reference/ssm.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"
#include "verify/ladder.hpp"

namespace transmamba {

namespace {
// A scan's inputs and the upstream gradients of its outputs (y and the final state).
template <class S>
struct ScanCase {
  MixerConfig cfg;
  Mat<S> x, dt, B, C, S_init;
  Vec<S> A;
  Mat<S> d_y, d_final;
  template <class T>
  ScanCase<T> cast() const {
    return {cfg, x.template cast<T>(), dt.template cast<T>(), B.template cast<T>(), C.template cast<T>(),
            S_init.template cast<T>(), A.template cast<T>(), d_y.template cast<T>(), d_final.template cast<T>()};
  }
  template <class F>
  void for_each(F&& f) {
    f("x", x), f("dt", dt), f("B", B), f("C", C), f("S_init", S_init), f("A", A), f("d_y", d_y), f("d_final", d_final);
  }
};

// A random scan: config, length and regime from RapidCheck, bounded values from a drawn seed. The regime's
// steps and decay give dt and A, its scale the magnitude of x (RandomTensors::values), B, C and S_init.
ScanCase<double> draw_scan_case(Regimes regimes, rc::Gen<int> lengths = gen_length()) {
  const MixerConfig cfg = draw("cfg", gen_mixer_config());
  const int T = draw("T", std::move(lengths));
  const Regime regime = draw("regime", gen_regime(regimes));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  const double v = regime.scale;
  const Mat<double> dt = rnd.step_sizes<double>(T, cfg.H, regime);
  return {cfg,
          rnd.values<double>(T, cfg, dt, regime),
          dt,
          rnd.mat<double>(T, cfg.G * cfg.N, -v, v),
          rnd.mat<double>(T, cfg.G * cfg.N, -v, v),
          rnd.mat<double>(cfg.E, cfg.N, -v, v),
          rnd.decay_rates<double>(cfg.H, regime),
          rnd.mat<double>(T, cfg.E),
          rnd.mat<double>(cfg.E, cfg.N)};
}

// Every tensor of the three forms (the chunked one with chunk Q, its stages too) and of the backward.
template <class S>
Tensors<S> scan_tensors(const ScanCase<S>& c, int Q) {
  Tensors<S> out;
  const auto rec = ssm_recurrent(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init);
  const auto quad = ssm_quadratic(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init);
  const auto chunk = ssm_chunked(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init, Q);
  out.add("recurrent y", rec.y), out.add("recurrent final state", rec.final_state);
  out.add("quadratic y", quad.y), out.add("quadratic final state", quad.final_state);
  out.add("chunked y", chunk.y), out.add("chunked final state", chunk.final_state);
  out.add_stacked("chunk states", chunk.chunk_states), out.add_stacked("start states", chunk.start_states);
  const auto g = ssm_backward(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init, c.d_y, c.d_final);
  out.add_gradient("d_x", g.d_x), out.add_gradient("d_dt", g.d_dt), out.add_gradient("d_A", g.d_A);
  out.add_gradient("d_B", g.d_B), out.add_gradient("d_C", g.d_C), out.add_gradient("d_S_init", g.d_S_init);
  return out;
}

// E6 written out element by element, independently of the three forms (and of MixerConfig::group_of):
//   S[h] = exp(dt[t,h]·A[h]) · S[h] + dt[t,h] · x[t,h] ⊗ B[t,g],   y[t,h] = S[h] · C[t,g],   g = h / (H/G).
ScanResult<double> scan_by_definition(const ScanCase<double>& c) {
  const int T = c.x.rows(), p = c.cfg.p(), N = c.cfg.N;
  ScanResult<double> r{Mat<double>::Zero(T, c.cfg.E), c.S_init};
  Mat<double>& S = r.final_state;  // row h·p + i, column n
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < c.cfg.H; ++h) {
      const int g = h / (c.cfg.H / c.cfg.G);  // g(h) = h / (H/G), DESIGN.md section 1
      const double a = std::exp(c.dt(t, h) * c.A(h));
      for (int i = 0; i < p; ++i)
        for (int n = 0; n < N; ++n) {
          double& s = S(h * p + i, n);
          s = a * s + c.dt(t, h) * c.x(t, h * p + i) * c.B(t, g * N + n);
          r.y(t, h * p + i) += s * c.C(t, g * N + n);
        }
    }
  return r;
}
}  // namespace

std::vector<Check> ssm_checks() {
  return {
      {"ssm.definition", "recurrent scan = E6 written element by element (y and final state)", 200,
       [] {
         const auto c = draw_scan_case(Regimes::all);
         const auto def = scan_by_definition(c);
         Tensors<double> expected;
         expected.add("y", def.y), expected.add("final state", def.final_state);
         return compare_forms(c, [](const auto& k) {
           const auto rec = ssm_recurrent(k.cfg, k.x, k.dt, k.A, k.B, k.C, k.S_init);
           TensorsFor<decltype(k)> t;
           t.add("y", rec.y), t.add("final state", rec.final_state);
           return t;
         }, expected);
       }},
      {"ssm.forms_equal", "recurrent = quadratic = chunked scan (y and final state), any chunk size and initial state",
       200,
       [] {
         const auto c = draw_scan_case(Regimes::all);
         const int Q = draw("Q", rc::gen::inRange(1, 8));
         const auto rec = ssm_recurrent(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init);
         Tensors<double> recurrent;
         recurrent.add("", rec.y), recurrent.add("", rec.final_state), recurrent.add("", rec.y);
         recurrent.add("", rec.final_state);
         return compare_forms(c, [Q](const auto& k) {
           const auto quad = ssm_quadratic(k.cfg, k.x, k.dt, k.A, k.B, k.C, k.S_init);
           const auto chunk = ssm_chunked(k.cfg, k.x, k.dt, k.A, k.B, k.C, k.S_init, Q);
           TensorsFor<decltype(k)> t;
           t.add("quadratic y", quad.y), t.add("quadratic final state", quad.final_state);
           t.add("chunked y", chunk.y), t.add("chunked final state", chunk.final_state);
           return t;
         }, recurrent);
       }},
      {"ssm.split_resume", "scan of [0,T) = scan of [0,k) then scan of [k,T) from its final state", 200,
       [] {
         const auto c = draw_scan_case(Regimes::all);
         const int T = c.x.rows(), k = draw("k", rc::gen::inRange(0, T + 1));
         const auto first = ssm_chunked<double>(c.cfg, c.x.topRows(k), c.dt.topRows(k), c.A, c.B.topRows(k),
                                                c.C.topRows(k), c.S_init, c.cfg.chunk);
         const auto rest = ssm_chunked<double>(c.cfg, c.x.bottomRows(T - k), c.dt.bottomRows(T - k), c.A,
                                               c.B.bottomRows(T - k), c.C.bottomRows(T - k), first.final_state, c.cfg.chunk);
         Mat<double> y(T, c.cfg.E);
         y << first.y, rest.y;
         Tensors<double> resumed;
         resumed.add("y", y), resumed.add("final state", rest.final_state);
         return compare_forms(c, [](const auto& k) {
           const auto whole = ssm_chunked(k.cfg, k.x, k.dt, k.A, k.B, k.C, k.S_init, k.cfg.chunk);
           TensorsFor<decltype(k)> t;
           t.add("y", whole.y), t.add("final state", whole.final_state);
           return t;
         }, resumed);
       }},
      {"ssm.backward_fd", "scan backward (d_x, d_dt, d_A, d_B, d_C, d_S_init) = central finite differences", 100,
       [] {
         const auto c = draw_scan_case(Regimes::finite_diff);
         const auto g = ssm_backward(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init, c.d_y, c.d_final);
         auto t = c.cast<Truth>();
         auto loss = [&] {
           const auto r = ssm_recurrent(t.cfg, t.x, t.dt, t.A, t.B, t.C, t.S_init);
           return r.y.cwiseProduct(t.d_y).sum() + r.final_state.cwiseProduct(t.d_final).sum();
         };
         return std::vector<Comparison>{check_gradient("d_x", g.d_x, t.x, loss),
                                        check_gradient("d_dt", g.d_dt, t.dt, loss),
                                        check_gradient("d_A", g.d_A, t.A, loss),
                                        check_gradient("d_B", g.d_B, t.B, loss),
                                        check_gradient("d_C", g.d_C, t.C, loss),
                                        check_gradient("d_S_init", g.d_S_init, t.S_init, loss)};
       }},
      {"ssm.ladder",
       "double vs long double: the three forms, the chunked stages and the backward, on every regime (up to 48 tokens)",
       200,
       [] {
         const auto c = draw_scan_case(Regimes::all, gen_long_length(48));
         const int Q = draw("Q", rc::gen::inRange(1, 17));
         return ladder<double, long double>(c, [Q](const auto& k) { return scan_tensors(k, Q); }, bounds::kExact,
                                            bounds::kExact);
       }},
      {"ssm.float_vs_double",
       "float vs the double truth: the three forms, the chunked stages and the backward (easy regime: float's range)",
       200,
       [] {
         const auto c = draw_scan_case(Regimes::easy);
         return ladder<float, double>(c, [&](const auto& k) { return scan_tensors(k, c.cfg.chunk); }, bounds::kFloat,
                                      bounds::kFloatGradient);
       }},
  };
}

}  // namespace transmamba
