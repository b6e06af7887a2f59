// Checks of reference/ssm.hpp: the recurrent form is E6 as written, the three forms agree, a scan can be
// split and resumed, the backward matches finite differences, and float agrees with the double truth.
#include <cmath>

#include "reference/ssm.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"

namespace transmamba {

namespace {
template <class S>
struct ScanCase {
  MixerConfig cfg;
  Mat<S> x, dt, B, C, S_init;
  Vec<S> A;
  template <class T>
  ScanCase<T> cast() const {
    return {cfg, x.template cast<T>(), dt.template cast<T>(), B.template cast<T>(), C.template cast<T>(),
            S_init.template cast<T>(), A.template cast<T>()};
  }
};

// A random scan: config and length from RapidCheck, bounded values from a drawn seed.
ScanCase<double> draw_scan_case() {
  const MixerConfig cfg = draw("cfg", gen_mixer_config());
  const int T = draw("T", gen_length());
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  return {cfg,
          rnd.mat<double>(T, cfg.E),
          rnd.step_sizes<double>(T, cfg.H),
          rnd.mat<double>(T, cfg.G * cfg.N),
          rnd.mat<double>(T, cfg.G * cfg.N),
          rnd.mat<double>(cfg.E, cfg.N),
          rnd.decay_rates<double>(cfg.H)};
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
         const auto c = draw_scan_case();
         const auto rec = ssm_recurrent(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init);
         const auto def = scan_by_definition(c);
         return std::vector<Comparison>{compare("y", rec.y, def.y, bounds::kExact),
                                        compare("final state", rec.final_state, def.final_state, bounds::kExact)};
       }},
      {"ssm.forms_equal", "recurrent = quadratic = chunked scan (y and final state), any chunk size and initial state",
       200,
       [] {
         const auto c = draw_scan_case();
         const int Q = draw("Q", rc::gen::inRange(1, 8));
         const auto rec = ssm_recurrent(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init);
         const auto quad = ssm_quadratic(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init);
         const auto chunk = ssm_chunked(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init, Q);
         return std::vector<Comparison>{compare("quadratic y", quad.y, rec.y, bounds::kExact),
                                        compare("quadratic final state", quad.final_state, rec.final_state, bounds::kExact),
                                        compare("chunked y", chunk.y, rec.y, bounds::kExact),
                                        compare("chunked final state", chunk.final_state, rec.final_state, bounds::kExact)};
       }},
      {"ssm.split_resume", "scan of [0,T) = scan of [0,k) then scan of [k,T) from its final state", 200,
       [] {
         const auto c = draw_scan_case();
         const int T = c.x.rows(), k = draw("k", rc::gen::inRange(0, T + 1));
         const auto whole = ssm_chunked(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init, c.cfg.chunk);
         const auto first = ssm_chunked<double>(c.cfg, c.x.topRows(k), c.dt.topRows(k), c.A, c.B.topRows(k),
                                                c.C.topRows(k), c.S_init, c.cfg.chunk);
         const auto rest = ssm_chunked<double>(c.cfg, c.x.bottomRows(T - k), c.dt.bottomRows(T - k), c.A,
                                               c.B.bottomRows(T - k), c.C.bottomRows(T - k), first.final_state, c.cfg.chunk);
         Mat<double> y(T, c.cfg.E);
         y << first.y, rest.y;
         return std::vector<Comparison>{compare("y", y, whole.y, bounds::kExact),
                                        compare("final state", rest.final_state, whole.final_state, bounds::kExact)};
       }},
      {"ssm.backward_fd", "scan backward (d_x, d_dt, d_A, d_B, d_C, d_S_init) = central finite differences", 100,
       [] {
         const auto c = draw_scan_case();
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const Mat<double> d_y = rnd.mat<double>(c.x.rows(), c.cfg.E), d_final = rnd.mat<double>(c.cfg.E, c.cfg.N);
         const auto g = ssm_backward(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init, d_y, d_final);
         auto t = c.cast<Truth>();
         const Mat<Truth> d_y_t = d_y.cast<Truth>(), d_final_t = d_final.cast<Truth>();
         auto loss = [&] {
           const auto r = ssm_recurrent(t.cfg, t.x, t.dt, t.A, t.B, t.C, t.S_init);
           return r.y.cwiseProduct(d_y_t).sum() + r.final_state.cwiseProduct(d_final_t).sum();
         };
         return std::vector<Comparison>{check_gradient("d_x", g.d_x, t.x, loss),
                                        check_gradient("d_dt", g.d_dt, t.dt, loss),
                                        check_gradient("d_A", g.d_A, t.A, loss),
                                        check_gradient("d_B", g.d_B, t.B, loss),
                                        check_gradient("d_C", g.d_C, t.C, loss),
                                        check_gradient("d_S_init", g.d_S_init, t.S_init, loss)};
       }},
      {"ssm.float_vs_double", "chunked scan in float vs the double truth", 200,
       [] {
         const auto c = draw_scan_case();
         const auto f = c.cast<float>();
         const auto truth = ssm_chunked(c.cfg, c.x, c.dt, c.A, c.B, c.C, c.S_init, c.cfg.chunk);
         const auto got = ssm_chunked(f.cfg, f.x, f.dt, f.A, f.B, f.C, f.S_init, f.cfg.chunk);
         return std::vector<Comparison>{compare("y", got.y, truth.y, bounds::kFloat),
                                        compare("final state", got.final_state, truth.final_state, bounds::kFloat)};
       }},
  };
}

}  // namespace transmamba
