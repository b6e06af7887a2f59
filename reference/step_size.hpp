// Step sizes and decays (E3):
//   dt[t, h] = softplus(dt_raw[t, h] + dt_bias[h])      (the paper's Δ)
//   A[h]     = -exp(A_log[h])                            (one scalar per head, Mamba2)
//   a[t, h]  = exp(dt[t, h] · A[h])  in (0, 1]           (the decay; the scan and converter compute it)
#pragma once

#include "reference/tensor.hpp"

namespace transmamba {

// dt_raw: [T, H], dt_bias: [H] -> dt: [T, H]
template <class S>
Mat<S> step_size(const Mat<S>& dt_raw, const Vec<S>& dt_bias) {
  check_size("dt_bias", dt_bias, dt_raw.cols());
  return (dt_raw.rowwise() + dt_bias.transpose()).unaryExpr([](S v) { return softplus(v); });
}

// A_log: [H] -> A: [H]
template <class S>
Vec<S> decay_rate(const Vec<S>& A_log) {
  return -A_log.array().exp().matrix();
}

template <class S>
struct StepSizeGrads {
  Mat<S> d_dt_raw;  // [T, H]
  Vec<S> d_dt_bias;  // [H]
};
// softplus'(v) = sigmoid(v).
template <class S>
StepSizeGrads<S> step_size_backward(const Mat<S>& dt_raw, const Vec<S>& dt_bias, const Mat<S>& d_dt) {
  check_shape("d_dt", d_dt, dt_raw.rows(), dt_raw.cols());
  const Mat<S> d_raw =
      d_dt.cwiseProduct((dt_raw.rowwise() + dt_bias.transpose()).unaryExpr([](S v) { return sigmoid(v); }));
  return {d_raw, d_raw.colwise().sum().transpose()};
}

// dA/dA_log = -exp(A_log) = A.
template <class S>
Vec<S> decay_rate_backward(const Vec<S>& A_log, const Vec<S>& d_A) {
  return d_A.cwiseProduct(decay_rate(A_log));
}

}  // namespace transmamba
