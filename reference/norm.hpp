// Grouped RMSNorm (E7), with and without the SiLU gate. The channels of a row are cut into `groups`
// groups of consecutive channels; each group is divided by its own root mean square:
//
//   RMSNorm_G(v)[c] = v[c] / sqrt( mean_{c' in group(c)} v[c']² + eps ) · w[c]
//
// The mixer norms scan tokens after the gate, ŷ = RMSNorm_G(y ⊙ SiLU(z)), and attention tokens without it
// (the paper: a gate on attention hurts). With groups = 1 it is the plain RMSNorm of the blocks.
#pragma once

#include "reference/tensor.hpp"

namespace transmamba {

constexpr double kNormEps = 1e-5;

// v: [T, C], w: [C] -> [T, C]. gate: nullptr, or z [T, C] to norm v ⊙ SiLU(z) instead of v.
template <class S>
Mat<S> rmsnorm_forward(const Mat<S>& v, const Vec<S>& w, int groups, const Mat<S>* gate = nullptr) {
  check_size("norm weight", w, v.cols());
  if (groups <= 0 || v.cols() % groups != 0)
    throw std::invalid_argument("rmsnorm: " + std::to_string(v.cols()) + " channels do not split into " +
                                std::to_string(groups) + " groups");
  Mat<S> g = v;
  if (gate) {
    check_shape("gate z", *gate, v.rows(), v.cols());
    g = v.cwiseProduct(gate->unaryExpr([](S s) { return silu(s); }));
  }
  const Eigen::Index width = v.cols() / groups;
  Mat<S> out(v.rows(), v.cols());
  for (Eigen::Index t = 0; t < v.rows(); ++t)
    for (int k = 0; k < groups; ++k) {
      const auto seg = g.row(t).segment(k * width, width);
      const S r = S(1) / std::sqrt(seg.squaredNorm() / S(width) + S(kNormEps));
      out.row(t).segment(k * width, width) = r * seg.cwiseProduct(w.segment(k * width, width).transpose());
    }
  return out;
}

template <class S>
struct NormGrads {
  Mat<S> d_v;  // [T, C]
  Mat<S> d_z;  // [T, C] (zero rows when there is no gate)
  Vec<S> d_w;  // [C]
};
// With g = v ⊙ SiLU(z) (or v), r = 1/sqrt(mean g² + eps) per group and e = d_out ⊙ w:
//   d_w = Σ_t d_out ⊙ g·r,   d_g = r·e - g·r³·mean(e ⊙ g),   d_v = d_g ⊙ SiLU(z),   d_z = d_g ⊙ v ⊙ SiLU'(z).
// d_g is computed without cancellation (the idea of DESIGN.md section 3), as (r² = 1 / (mean g² + eps))
//   d_g[c] = r³ · ( mean_k g[k]·(g[k]·e[c] - g[c]·e[k])  +  eps·e[c] ).
// Taken directly, r·e and g·r³·mean(e ⊙ g) are nearly equal along g when |g| >> sqrt(eps) (RMSNorm is scale
// invariant): for a group of one channel d_g = r·e·eps/(g² + eps), and r·e·(1 - g²r²) lost 5 digits at
// g ~ 1e3 (seen by the ladder, issue 8). Here the k = c term is exactly 0 and the others are the true, small
// components.
template <class S>
NormGrads<S> rmsnorm_backward(const Mat<S>& v, const Vec<S>& w, int groups, const Mat<S>* gate,
                              const Mat<S>& d_out) {
  check_shape("d_out", d_out, v.rows(), v.cols());
  rmsnorm_forward(v, w, groups, gate);  // the same argument checks
  const Mat<S> silu_z = gate ? Mat<S>(gate->unaryExpr([](S s) { return silu(s); })) : Mat<S>();
  const Mat<S> g = gate ? Mat<S>(v.cwiseProduct(silu_z)) : v;
  const Eigen::Index width = v.cols() / groups;
  auto rms_inverse = [&](Eigen::Index t, int k) {  // r of row t's group k
    return S(1) / std::sqrt(g.row(t).segment(k * width, width).squaredNorm() / S(width) + S(kNormEps));
  };
  Mat<S> d_g(v.rows(), v.cols());
  parallel_for(int(v.rows()), double(v.rows()) * v.cols() * width, [&](int t) {  // rows write their own d_g
    for (int k = 0; k < groups; ++k) {
      const auto seg = g.row(t).segment(k * width, width);
      const S r = rms_inverse(t, k);
      const Mat<S> e = d_out.row(t).segment(k * width, width).cwiseProduct(w.segment(k * width, width).transpose());
      for (Eigen::Index c = 0; c < width; ++c) {
        S sum = 0;  // Σ_k g[k]·(g[k]·e[c] - g[c]·e[k])
        for (Eigen::Index j = 0; j < width; ++j) sum += seg(j) * (seg(j) * e(c) - seg(c) * e(j));
        d_g(t, k * width + c) = r * r * r * (sum / S(width) + S(kNormEps) * e(c));
      }
    }
  });
  Vec<S> d_w = Vec<S>::Zero(v.cols());  // a sum over rows: in order
  for (Eigen::Index t = 0; t < v.rows(); ++t)
    for (int k = 0; k < groups; ++k)
      d_w.segment(k * width, width) +=
          (rms_inverse(t, k) * d_out.row(t).segment(k * width, width).cwiseProduct(g.row(t).segment(k * width, width))).transpose();
  if (!gate) return {d_g, Mat<S>::Zero(0, v.cols()), d_w};
  const Mat<S> d_z =
      d_g.cwiseProduct(v).cwiseProduct(gate->unaryExpr([](S s) { return silu_grad(s); }));
  return {d_g.cwiseProduct(silu_z), d_z, d_w};
}

}  // namespace transmamba
