// The shared projections (E1, E8): one linear map produces z, xBC and dt_raw for every token, whether the
// token will go through attention or through the scan; x, B and C inside xBC serve as V, K and Q.
#pragma once

#include <algorithm>

#include "reference/config.hpp"
#include "reference/tensor.hpp"

namespace transmamba {

// ---- a linear map without bias: out = in · W --------------------------------------------------------
// a · b, large products in column blocks of kProductBlock on OpenMP's threads (parallel_for, tensor.hpp): the
// blocks are fixed by the shape, not by the thread count, and each output column is one block's product.
constexpr Eigen::Index kProductBlock = 256;
template <class S, class A, class B>
Mat<S> product(const A& a, const B& b) {
  Mat<S> out(a.rows(), b.cols());
  const Eigen::Index blocks = (b.cols() + kProductBlock - 1) / kProductBlock;
  parallel_for(int(blocks), double(a.rows()) * a.cols() * b.cols(), [&](int k) {
    const Eigen::Index c0 = k * kProductBlock, cols = std::min(kProductBlock, b.cols() - c0);
    out.middleCols(c0, cols).noalias() = a * b.middleCols(c0, cols);
  });
  return out;
}

// in: [T, n], W: [n, m] -> [T, m]
template <class S>
Mat<S> linear_forward(const Mat<S>& in, const Mat<S>& W) {
  if (in.cols() != W.rows()) check_shape("linear input", in, in.rows(), W.rows());
  return product<S>(in, W);
}

template <class S>
struct LinearGrads {
  Mat<S> d_in;  // [T, n] = d_out · Wᵀ
  Mat<S> d_W;   // [n, m] = inᵀ · d_out
};
template <class S>
LinearGrads<S> linear_backward(const Mat<S>& in, const Mat<S>& W, const Mat<S>& d_out) {
  check_shape("d_out", d_out, in.rows(), W.cols());
  return {product<S>(d_out, W.transpose()), product<S>(in.transpose(), d_out)};
}

// ---- the split of zxbcdt (E1) and of xBC (E2) ---------------------------------------------------------
// zxbcdt: [T, 2E + 2GN + H] = [ z [T, E] | xBC [T, E + 2GN] | dt_raw [T, H] ]
template <class S>
struct InProj {
  Mat<S> z, xBC, dt_raw;
};
template <class S>
InProj<S> split_in_proj(const MixerConfig& cfg, const Mat<S>& zxbcdt) {
  check_shape("zxbcdt", zxbcdt, zxbcdt.rows(), cfg.in_proj_width());
  const int E = cfg.E, C = cfg.conv_channels();
  return {zxbcdt.leftCols(E), zxbcdt.middleCols(E, C), zxbcdt.rightCols(cfg.H)};
}
// The inverse of split_in_proj (the backward of a split is the join of the gradients).
template <class S>
Mat<S> join_in_proj(const MixerConfig& cfg, const InProj<S>& parts) {
  const Eigen::Index T = parts.z.rows();
  check_shape("z", parts.z, T, cfg.E);
  check_shape("xBC", parts.xBC, T, cfg.conv_channels());
  check_shape("dt_raw", parts.dt_raw, T, cfg.H);
  Mat<S> out(T, cfg.in_proj_width());
  out << parts.z, parts.xBC, parts.dt_raw;
  return out;
}

// xBC: [T, E + 2GN] = [ x [T, H·p] (= V) | B [T, G·N] (= K) | C [T, G·N] (= Q) ]
template <class S>
struct XBC {
  Mat<S> x, B, C;
};
template <class S>
XBC<S> split_xbc(const MixerConfig& cfg, const Mat<S>& xBC) {
  check_shape("xBC", xBC, xBC.rows(), cfg.conv_channels());
  const int E = cfg.E, GN = cfg.G * cfg.N;
  return {xBC.leftCols(E), xBC.middleCols(E, GN), xBC.rightCols(GN)};
}
template <class S>
Mat<S> join_xbc(const MixerConfig& cfg, const XBC<S>& parts) {
  const Eigen::Index T = parts.x.rows();
  check_shape("x", parts.x, T, cfg.E);
  check_shape("B", parts.B, T, cfg.G * cfg.N);
  check_shape("C", parts.C, T, cfg.G * cfg.N);
  Mat<S> out(T, cfg.conv_channels());
  out << parts.x, parts.B, parts.C;
  return out;
}

}  // namespace transmamba
