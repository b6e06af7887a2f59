// The Memory Converter (E5): turns the attention prefix's K (= B), V (= x) and step sizes into the scan
// state at the TransPoint. No parameters. Per head h, group g, for the P prefix tokens:
//
//   S0[h] = Σ_{s<P} ( Π_{r=s+1}^{P-1} a[r, h] ) · dt[s, h] · x[s, h] ⊗ B[s, g]        ([p, N]; 0 when P = 0)
//         = Vᵀ · diag(w ∘ dt) · K,     w[s] = exp(A[h] · Σ_{r>s} dt[r, h])
//
// Δ (dt) is included: the paper's eq. 8 and Fig. 3b have it, its eq. 9 drops it by a typo. S0 is exactly
// the final state of the scan (ssm.hpp) over tokens 0..P-1 from a zero state; the tests check this.
#pragma once

#include "reference/config.hpp"
#include "reference/tensor.hpp"

namespace transmamba {

// Σ_{r>s} dt[r, h] for every prefix token s, [P], accumulated from the end (DESIGN.md section 3): exactly 0
// for s = P-1, and each sum rounded relative to itself. The total minus a running prefix sum would instead
// leave ulp(Σ_r dt[r]) where the sum is small or 0, the very place where the decay w[s] is largest.
template <class S>
Vec<S> later_steps(const Mat<S>& dt, int h) {
  Vec<S> later(dt.rows());
  S run = 0;
  for (Eigen::Index s = dt.rows() - 1; s >= 0; --s) {
    later(s) = run;
    run += dt(s, h);
  }
  return later;
}

template <class S>
void check_converter_inputs(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& B, const Mat<S>& dt,
                            const Vec<S>& A) {
  const Eigen::Index P = x.rows();
  check_shape("x", x, P, cfg.E);
  check_shape("B", B, P, cfg.G * cfg.N);
  check_shape("dt", dt, P, cfg.H);
  check_size("A", A, cfg.H);
}

// x: [P, H·p], B: [P, G·N], dt: [P, H], A: [H] -> S0: [H·p, N]
template <class S>
Mat<S> memory_converter(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& B, const Mat<S>& dt,
                        const Vec<S>& A) {
  check_converter_inputs(cfg, x, B, dt, A);
  const int p = cfg.p(), N = cfg.N;
  Mat<S> S0(cfg.E, N);
  parallel_for(cfg.H, double(x.rows()) * cfg.E * N, [&](int h) {  // heads write their own rows
    const Vec<S> w = (A(h) * later_steps(dt, h).array()).exp();  // w[s] = exp(A[h] · Σ_{r>s} dt[r, h])
    S0.middleRows(h * p, p) =
        x.middleCols(h * p, p).transpose() * w.cwiseProduct(dt.col(h)).asDiagonal() * B.middleCols(cfg.group_of(h) * N, N);
  });
  return S0;
}

template <class S>
struct ConverterGrads {
  Mat<S> d_x;   // [P, H·p]
  Mat<S> d_B;   // [P, G·N]
  Mat<S> d_dt;  // [P, H]
  Vec<S> d_A;   // [H]
};
// With c[s] = w[s]·dt[s] and q[s] = d_c[s]·c[s] (the gradient of log w[s] = A·Σ_{r>s} dt[r]):
//   d_x = diag(c) B d_S0ᵀ,  d_B += diag(c) x d_S0,  d_c[s] = x[s]ᵀ d_S0 B[s],
//   d_dt[s] = d_c[s]·w[s] + A·Σ_{s'<s} q[s'],  d_A = Σ_s q[s]·Σ_{r>s} dt[r].
// Both sums over r > s are later_steps (accumulated from the end), both sums over s' < s a running sum from
// the start: no sum is a difference of two others. For s = P-1 the first is exactly 0, as it must be: q[P-1]
// is often the largest q (its decay w = 1), and ulp(Σ_r dt[r]) times it was the whole of a tiny d_A.
template <class S>
ConverterGrads<S> memory_converter_backward(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& B,
                                            const Mat<S>& dt, const Vec<S>& A, const Mat<S>& d_S0) {
  check_converter_inputs(cfg, x, B, dt, A);
  check_shape("d_S0", d_S0, cfg.E, cfg.N);
  const int p = cfg.p(), N = cfg.N;
  const Eigen::Index P = x.rows();
  ConverterGrads<S> g{Mat<S>(P, cfg.E), Mat<S>::Zero(P, cfg.G * N), Mat<S>(P, cfg.H), Vec<S>(cfg.H)};
  parallel_for(cfg.G, 3.0 * P * cfg.E * N, [&](int gr) {  // a group's heads in order: they add into its d_B
    for (int h = gr * cfg.heads_per_group(); h < (gr + 1) * cfg.heads_per_group(); ++h) {
      const Vec<S> later = later_steps(dt, h);  // Σ_{r>s} dt[r]
      const Vec<S> w = (A(h) * later.array()).exp(), c = w.cwiseProduct(dt.col(h));
      const Mat<S> x_h = x.middleCols(h * p, p), B_g = B.middleCols(gr * N, N), dS = d_S0.middleRows(h * p, p);
      g.d_x.middleCols(h * p, p) = c.asDiagonal() * B_g * dS.transpose();
      g.d_B.middleCols(gr * N, N) += c.asDiagonal() * x_h * dS;
      const Vec<S> d_c = (x_h * dS).cwiseProduct(B_g).rowwise().sum();
      S earlier_q = 0, d_A = 0;  // Σ_{s'<s} q[s'], Σ_s q[s]·later[s]
      for (Eigen::Index s = 0; s < P; ++s) {
        const S q = d_c(s) * c(s);
        g.d_dt(s, h) = d_c(s) * w(s) + A(h) * earlier_q;
        d_A += q * later(s);
        earlier_q += q;
      }
      g.d_A(h) = d_A;
    }
  });
  return g;
}

}  // namespace transmamba
