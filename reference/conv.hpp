// Causal depthwise convolution followed by SiLU (E2). It runs over the whole sequence, across the
// TransPoint, so the first tokens after P see conv context from tokens before P.
//
//   conv(v)[t, c] = b[c] + Σ_{k=0}^{W-1} w[c, k] · v[t - W + 1 + k, c]     (v = 0 before the first token)
//   out = SiLU(conv(v))
//
// The last tap w[c, W-1] multiplies the current token, as PyTorch's conv1d with left padding W - 1.
#pragma once

#include "reference/tensor.hpp"

namespace transmamba {

// v: [T, C], w: [C, W], b: [C] -> conv(v) before the activation, [T, C]
template <class S>
Mat<S> causal_conv(const Mat<S>& v, const Mat<S>& w, const Vec<S>& b) {
  check_shape("conv w", w, v.cols(), w.cols());
  check_size("conv b", b, v.cols());
  const Eigen::Index T = v.rows(), W = w.cols();
  Mat<S> pre = b.transpose().replicate(T, 1);
  for (Eigen::Index t = 0; t < T; ++t)
    for (Eigen::Index k = 0; k < W; ++k) {
      const Eigen::Index src = t - W + 1 + k;
      if (src >= 0) pre.row(t) += w.col(k).transpose().cwiseProduct(v.row(src));
    }
  return pre;
}

// v: [T, C] -> SiLU(conv(v)), [T, C]
template <class S>
Mat<S> conv_silu_forward(const Mat<S>& v, const Mat<S>& w, const Vec<S>& b) {
  return causal_conv(v, w, b).unaryExpr([](S s) { return silu(s); });
}

template <class S>
struct ConvGrads {
  Mat<S> d_v;  // [T, C]
  Mat<S> d_w;  // [C, W]
  Vec<S> d_b;  // [C]
};
// Backward of the conv alone (it is linear in v, w, b) from d_pre = dL/dconv(v): [T, C].
//   d_v[s, c] = Σ_k d_pre[s + W-1-k, c] · w[c, k],  d_w[c, k] = Σ_t d_pre[t, c] · v[t-W+1+k, c],  d_b = Σ_t d_pre
template <class S>
ConvGrads<S> causal_conv_backward(const Mat<S>& v, const Mat<S>& w, const Mat<S>& d_pre) {
  check_shape("d_pre", d_pre, v.rows(), v.cols());
  const Eigen::Index T = v.rows(), W = w.cols();
  ConvGrads<S> g{Mat<S>::Zero(v.rows(), v.cols()), Mat<S>::Zero(w.rows(), W), d_pre.colwise().sum().transpose()};
  for (Eigen::Index t = 0; t < T; ++t)
    for (Eigen::Index k = 0; k < W; ++k) {
      const Eigen::Index src = t - W + 1 + k;
      if (src < 0) continue;
      g.d_w.col(k) += d_pre.row(t).cwiseProduct(v.row(src)).transpose();
      g.d_v.row(src) += d_pre.row(t).cwiseProduct(w.col(k).transpose());
    }
  return g;
}

// Backward of conv_silu_forward from d_out: [T, C]: d_pre = d_out ⊙ SiLU'(conv(v)), then the conv's backward.
template <class S>
ConvGrads<S> conv_silu_backward(const Mat<S>& v, const Mat<S>& w, const Vec<S>& b, const Mat<S>& d_out) {
  check_shape("d_out", d_out, v.rows(), v.cols());
  const Mat<S> pre = causal_conv(v, w, b);
  return causal_conv_backward(v, w, Mat<S>(d_out.cwiseProduct(pre.unaryExpr([](S s) { return silu_grad(s); }))));
}

}  // namespace transmamba
