// Checks of the small components: projection (E1, E8), conv (E2), step sizes (E3), norm (E7 as written, and
// its backward).
#include <cmath>

#include "reference/conv.hpp"
#include "reference/norm.hpp"
#include "reference/projection.hpp"
#include "reference/step_size.hpp"

#include "verify/bounds.hpp"
#include "verify/finite_diff.hpp"
#include "verify/generators.hpp"
#include "verify/harness.hpp"

namespace transmamba {

std::vector<Check> component_checks() {
  return {
      {"projection.backward_fd", "linear backward (d_in, d_W) = central finite differences", 100,
       [] {
         const int T = draw("T", gen_length()), n = draw("n", rc::gen::inRange(1, 8)), m = draw("m", rc::gen::inRange(1, 8));
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         Mat<double> in = rnd.mat<double>(T, n), W = rnd.mat<double>(n, m);
         const Mat<double> d_out = rnd.mat<double>(T, m);
         const auto g = linear_backward(in, W, d_out);
         Mat<Truth> in_t = in.cast<Truth>(), W_t = W.cast<Truth>();
         const Mat<Truth> d_out_t = d_out.cast<Truth>();
         auto loss = [&] { return linear_forward(in_t, W_t).cwiseProduct(d_out_t).sum(); };
         return std::vector<Comparison>{check_gradient("d_in", g.d_in, in_t, loss),
                                        check_gradient("d_W", g.d_W, W_t, loss)};
       }},
      {"conv.backward_fd", "causal conv + SiLU backward (d_v, d_w, d_b) = central finite differences", 100,
       [] {
         const int T = draw("T", gen_length()), C = draw("C", rc::gen::inRange(1, 6)), W = draw("W", rc::gen::inRange(1, 6));
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         Mat<double> v = rnd.mat<double>(T, C), w = rnd.mat<double>(C, W);
         Vec<double> b = rnd.vec<double>(C);
         const Mat<double> d_out = rnd.mat<double>(T, C);
         const auto g = conv_silu_backward(v, w, b, d_out);
         Mat<Truth> v_t = v.cast<Truth>(), w_t = w.cast<Truth>();
         Vec<Truth> b_t = b.cast<Truth>();
         const Mat<Truth> d_out_t = d_out.cast<Truth>();
         auto loss = [&] { return conv_silu_forward(v_t, w_t, b_t).cwiseProduct(d_out_t).sum(); };
         return std::vector<Comparison>{check_gradient("d_v", g.d_v, v_t, loss),
                                        check_gradient("d_w", g.d_w, w_t, loss),
                                        check_gradient("d_b", g.d_b, b_t, loss)};
       }},
      {"step_size.backward_fd", "step size and decay rate backward (d_dt_raw, d_dt_bias, d_A_log) = finite differences", 100,
       [] {
         const int T = draw("T", gen_length()), H = draw("H", rc::gen::inRange(1, 5));
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         Mat<double> dt_raw = rnd.mat<double>(T, H, -3, 3);
         Vec<double> dt_bias = rnd.vec<double>(H, -2, 0), A_log = rnd.vec<double>(H);
         const Mat<double> d_dt = rnd.mat<double>(T, H);
         const Vec<double> d_A = rnd.vec<double>(H);
         const auto g = step_size_backward(dt_raw, dt_bias, d_dt);
         Mat<Truth> dt_raw_t = dt_raw.cast<Truth>();
         Vec<Truth> dt_bias_t = dt_bias.cast<Truth>(), A_log_t = A_log.cast<Truth>();
         const Mat<Truth> d_dt_t = d_dt.cast<Truth>();
         const Vec<Truth> d_A_t = d_A.cast<Truth>();
         auto loss = [&] {
           return step_size(dt_raw_t, dt_bias_t).cwiseProduct(d_dt_t).sum() + decay_rate(A_log_t).dot(d_A_t);
         };
         return std::vector<Comparison>{
             check_gradient("d_dt_raw", g.d_dt_raw, dt_raw_t, loss),
             check_gradient("d_dt_bias", g.d_dt_bias, dt_bias_t, loss),
             check_gradient("d_A_log", decay_rate_backward(A_log, d_A), A_log_t, loss)};
       }},
      {"norm.definition", "grouped RMSNorm, with and without gate = E7 written element by element (eps 1e-5)", 200,
       [] {
         const int T = draw("T", gen_length()), groups = draw("groups", rc::gen::inRange(1, 4)), width = draw("width", rc::gen::inRange(1, 5));
         const bool gated = draw("gated", rc::gen::arbitrary<bool>());
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         const Mat<double> v = rnd.mat<double>(T, groups * width), z = rnd.mat<double>(T, groups * width, -3, 3);
         const Vec<double> w = rnd.vec<double>(groups * width, 0.5, 1.5);
         // E7: out[t, c] = g[t, c] / sqrt(mean over c's group of g² + 1e-5) · w[c], g = v ⊙ SiLU(z) or v.
         Mat<double> g = v, expected(T, groups * width);
         if (gated)
           for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] *= z.data()[i] / (1 + std::exp(-z.data()[i]));
         for (int t = 0; t < T; ++t)
           for (int c = 0; c < groups * width; ++c) {
             const int first = c / width * width;
             double mean_sq = 0;
             for (int k = first; k < first + width; ++k) mean_sq += g(t, k) * g(t, k) / width;
             expected(t, c) = g(t, c) / std::sqrt(mean_sq + 1e-5) * w(c);
           }
         return std::vector<Comparison>{
             compare("out", rmsnorm_forward(v, w, groups, gated ? &z : nullptr), expected, bounds::kExact)};
       }},
      {"norm.backward_fd", "grouped RMSNorm backward, with and without gate (d_v, d_z, d_w) = finite differences", 100,
       [] {
         // Groups of at least 2 channels: see gen_mixer_config.
         const int T = draw("T", gen_length()), groups = draw("groups", rc::gen::inRange(1, 4)), width = draw("width", rc::gen::inRange(2, 5));
         const bool gated = draw("gated", rc::gen::arbitrary<bool>());
         RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
         Mat<double> v = rnd.mat<double>(T, groups * width), z = rnd.mat<double>(T, groups * width, -3, 3);
         Vec<double> w = rnd.vec<double>(groups * width, 0.5, 1.5);
         const Mat<double> d_out = rnd.mat<double>(T, groups * width);
         const Mat<double>* gate = gated ? &z : nullptr;
         const auto g = rmsnorm_backward(v, w, groups, gate, d_out);
         Mat<Truth> v_t = v.cast<Truth>(), z_t = z.cast<Truth>();
         Vec<Truth> w_t = w.cast<Truth>();
         const Mat<Truth> d_out_t = d_out.cast<Truth>();
         const Mat<Truth>* gate_t = gated ? &z_t : nullptr;
         auto loss = [&] { return rmsnorm_forward(v_t, w_t, groups, gate_t).cwiseProduct(d_out_t).sum(); };
         std::vector<Comparison> out{check_gradient("d_v", g.d_v, v_t, loss),
                                     check_gradient("d_w", g.d_w, w_t, loss)};
         if (gated) out.push_back(check_gradient("d_z", g.d_z, z_t, loss));
         return out;
       }},
  };
}

}  // namespace transmamba
