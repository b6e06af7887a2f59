// The SwiGLU MLP of every block (DESIGN.md section 2, "Block and model" [choice]; PAPER.md section 6, #16),
// forward and backward, for the rows v: [T, D] of one sequence (each row on its own):
//
//   MLP(v) = ( SiLU(v · W_gate) ⊙ (v · W_up) ) · W_down        W_gate, W_up: [D, F], W_down: [F, D]
//
// No biases. The three products are the linear maps of projection.hpp.
#pragma once

#include "reference/projection.hpp"
#include "reference/tensor.hpp"

namespace transmamba {

// Throws std::invalid_argument naming the first weight whose shape does not fit v: [T, D] and F = W_gate.cols().
template <class S>
void check_mlp_inputs(const Mat<S>& v, const Mat<S>& W_gate, const Mat<S>& W_up, const Mat<S>& W_down) {
  const Eigen::Index D = v.cols(), F = W_gate.cols();
  check_shape("W_gate", W_gate, D, F);
  check_shape("W_up", W_up, D, F);
  check_shape("W_down", W_down, F, D);
}

// v: [T, D] -> MLP(v): [T, D]
template <class S>
Mat<S> mlp_forward(const Mat<S>& v, const Mat<S>& W_gate, const Mat<S>& W_up, const Mat<S>& W_down) {
  check_mlp_inputs(v, W_gate, W_up, W_down);
  const Mat<S> gate = linear_forward(v, W_gate), up = linear_forward(v, W_up);  // [T, F] each
  const Mat<S> hidden = gate.unaryExpr([](S s) { return silu(s); }).cwiseProduct(up);
  return linear_forward(hidden, W_down);
}

template <class S>
struct MlpGrads {
  Mat<S> d_v;                // [T, D]
  Mat<S> d_W_gate, d_W_up;   // [D, F]
  Mat<S> d_W_down;           // [F, D]
};
// Backward of mlp_forward from d_out: [T, D]. With a = v W_gate, b = v W_up and m = SiLU(a) ⊙ b:
//   d_m = d_out W_downᵀ,   d_W_down = mᵀ d_out,
//   d_a = d_m ⊙ b ⊙ SiLU'(a),   d_b = d_m ⊙ SiLU(a),
//   d_W_gate = vᵀ d_a,   d_W_up = vᵀ d_b,   d_v = d_a W_gateᵀ + d_b W_upᵀ.
template <class S>
MlpGrads<S> mlp_backward(const Mat<S>& v, const Mat<S>& W_gate, const Mat<S>& W_up, const Mat<S>& W_down,
                         const Mat<S>& d_out) {
  check_mlp_inputs(v, W_gate, W_up, W_down);
  check_shape("d_out", d_out, v.rows(), v.cols());
  const Mat<S> a = linear_forward(v, W_gate), b = linear_forward(v, W_up);
  const Mat<S> silu_a = a.unaryExpr([](S s) { return silu(s); });
  const LinearGrads<S> down = linear_backward(Mat<S>(silu_a.cwiseProduct(b)), W_down, d_out);
  const Mat<S> d_a = down.d_in.cwiseProduct(b).cwiseProduct(a.unaryExpr([](S s) { return silu_grad(s); }));
  const Mat<S> d_b = down.d_in.cwiseProduct(silu_a);
  const LinearGrads<S> gate = linear_backward(v, W_gate, d_a), up = linear_backward(v, W_up, d_b);
  return {gate.d_in + up.d_in, gate.d_W, up.d_W, down.d_W};
}

}  // namespace transmamba
