// Grouped causal softmax attention (E4): the tokens before the TransPoint read the scan's projections as
// attention, Q = C, K = B, V = x. Q and K exist per group, so every head of a group shares one attention
// matrix and the heads differ only in V. No RoPE, no D skip, no gate.
//
//   y[t, h] = Σ_{s≤t} softmax_s( C[t, g]·B[s, g] / sqrt(N) ) · x[s, h]          (g = g(h), t < P)
//
// Shapes: C and B [P, G·N], x and y [P, H·p]. Only the P prefix tokens are passed in: no token attends
// across P. attention_rows computes the same formula for the last m of n tokens only (queries [m, G·N],
// keys and values of all n tokens): attention_forward is m = n, a decode step (inference.hpp) is m = 1
// over its KV cache.
#pragma once

#include <cmath>
#include <limits>

#include "reference/config.hpp"
#include "reference/tensor.hpp"

namespace transmamba {

// The causal softmax weights of one group for the queries C: [m, G·N] of the last m of the n tokens whose
// keys are B: [n, G·N] (m ≤ n; query i is token n - m + i): [m, n], row i sums to 1 over the keys
// s ≤ n - m + i and is zero after them. With m = n = P: [P, P], zero above the diagonal.
template <class S>
Mat<S> attention_weights(const MixerConfig& cfg, const Mat<S>& C, const Mat<S>& B, int g) {
  const int N = cfg.N;
  const Eigen::Index m = C.rows(), n = B.rows(), first = n - m;
  const Mat<S> scores = C.middleCols(g * N, N) * B.middleCols(g * N, N).transpose() / std::sqrt(S(N));
  Mat<S> w = Mat<S>::Zero(m, n);
  for (Eigen::Index i = 0; i < m; ++i) {
    const Eigen::Index visible = first + i + 1;  // keys s = 0 .. first + i
    const S row_max = scores.row(i).head(visible).maxCoeff();  // subtract the max: exp never overflows
    w.row(i).head(visible) = (scores.row(i).head(visible).array() - row_max).exp().matrix();
    w.row(i).head(visible) /= w.row(i).head(visible).sum();
  }
  return w;
}

template <class S>
void check_attention_inputs(const MixerConfig& cfg, const Mat<S>& C, const Mat<S>& B, const Mat<S>& x) {
  const Eigen::Index P = x.rows();
  check_shape("C", C, P, cfg.G * cfg.N);
  check_shape("B", B, P, cfg.G * cfg.N);
  check_shape("x", x, P, cfg.E);
}

// The last m of n tokens: C: [m, G·N] their queries, B: [n, G·N] and x: [n, H·p] the keys and values of
// all n tokens (m ≤ n) -> y: [m, H·p], row i = E4 for token n - m + i.
template <class S>
Mat<S> attention_rows(const MixerConfig& cfg, const Mat<S>& C, const Mat<S>& B, const Mat<S>& x) {
  const Eigen::Index n = x.rows();
  check_shape("x", x, n, cfg.E);
  check_shape("B", B, n, cfg.G * cfg.N);
  check_shape("C", C, C.rows(), cfg.G * cfg.N);
  if (C.rows() > n)
    throw std::invalid_argument("attention_rows: " + std::to_string(C.rows()) + " queries C for only " +
                                std::to_string(n) + " keys B and values x (expected at most " + std::to_string(n) + ")");
  const int p = cfg.p();
  Mat<S> y(C.rows(), cfg.E);
  parallel_for(cfg.G, double(C.rows()) * n * (cfg.G * cfg.N + cfg.E), [&](int g) {  // groups write their own heads
    const Mat<S> w = attention_weights(cfg, C, B, g);
    for (int h = g * cfg.heads_per_group(); h < (g + 1) * cfg.heads_per_group(); ++h)
      y.middleCols(h * p, p) = w * x.middleCols(h * p, p);
  });
  return y;
}

// C, B: [P, G·N], x: [P, H·p] -> y: [P, H·p]
template <class S>
Mat<S> attention_forward(const MixerConfig& cfg, const Mat<S>& C, const Mat<S>& B, const Mat<S>& x) {
  check_attention_inputs(cfg, C, B, x);
  return attention_rows(cfg, C, B, x);
}

template <class S>
struct AttentionGrads {
  Mat<S> d_C, d_B;  // [P, G·N]
  Mat<S> d_x;       // [P, H·p]
};
// Per group, with weights Wt and d_Wt = Σ_{h in g} d_y_h x_hᵀ, the softmax backward is
//   d_scores = Wt ∘ (d_Wt - rowsum(d_Wt ∘ Wt)),  d_C = d_scores B / sqrt(N),  d_B = d_scoresᵀ C / sqrt(N),
// and d_x_h = Wtᵀ d_y_h.
// Without cancellation (the idea of DESIGN.md section 3): since a row of Wt sums to 1, each row's
//   d_Wt[s] - Σ_s' Wt[s'] d_Wt[s']  =  (d_Wt[s] - d_Wt[m]) - Σ_s' Wt[s'] (d_Wt[s'] - d_Wt[m])
// for any key m; m is the row's heaviest key. Taken directly, at a nearly one-hot row (Wt[m] = 1 - δ, large
// score gaps) the difference for key m is d_Wt[m] minus a sum that is d_Wt[m] up to δ: the true value is
// O(δ·d_Wt), the rounding eps·|d_Wt[m]|, and d_C, d_B came out wrong by factors of 1e3 (seen by the ladder,
// issue 8). Relative to m, key m's term is exactly 0 and the sum has only the small weights of the others.
template <class S>
AttentionGrads<S> attention_backward(const MixerConfig& cfg, const Mat<S>& C, const Mat<S>& B, const Mat<S>& x,
                                     const Mat<S>& d_y) {
  check_attention_inputs(cfg, C, B, x);
  check_shape("d_y", d_y, x.rows(), cfg.E);
  const int p = cfg.p(), N = cfg.N;
  const Eigen::Index P = x.rows();
  AttentionGrads<S> g{Mat<S>(P, cfg.G * N), Mat<S>(P, cfg.G * N), Mat<S>(P, cfg.E)};
  parallel_for(cfg.G, 3.0 * P * P * (cfg.G * N + cfg.E), [&](int gr) {  // groups write their own columns
    const Mat<S> w = attention_weights(cfg, C, B, gr);
    Mat<S> d_w = Mat<S>::Zero(P, P);
    for (int h = gr * cfg.heads_per_group(); h < (gr + 1) * cfg.heads_per_group(); ++h) {
      d_w += d_y.middleCols(h * p, p) * x.middleCols(h * p, p).transpose();
      g.d_x.middleCols(h * p, p) = w.transpose() * d_y.middleCols(h * p, p);
    }
    Mat<S> d_scores(P, P);
    for (Eigen::Index i = 0; i < P; ++i) {
      Eigen::Index m = 0;
      w.row(i).maxCoeff(&m);
      const Mat<S> centered = d_w.row(i).array() - d_w(i, m);  // d_Wt[s] - d_Wt[m]
      const S row_dot = centered.cwiseProduct(w.row(i)).sum();
      d_scores.row(i) = w.row(i).cwiseProduct((centered.array() - row_dot).matrix());
    }
    d_scores /= std::sqrt(S(N));
    g.d_C.middleCols(gr * N, N) = d_scores * B.middleCols(gr * N, N);
    g.d_B.middleCols(gr * N, N) = d_scores.transpose() * C.middleCols(gr * N, N);
  });
  return g;
}

}  // namespace transmamba
