// Central finite differences (DESIGN.md section 7: step 1e-6), the truth every analytic backward is checked
// against, and the check that compares the two.
//
// The loss is evaluated in long double (64-bit mantissa): its rounding error, about eps·|loss|/step, is then
// ~1e-13 of the loss instead of ~1e-10 in double. That matters for gradients that are small by structure
// (RMSNorm is scale-invariant, so a step size that scales a whole norm group reaches the output only
// through eps): in double their finite difference is rounding noise at the 1e-6 bound. The analytic
// gradient under test stays in double. [departure from DESIGN.md's "double": a more precise truth]
//
// Even so a gradient can be smaller than the truth's own resolution (seen: d_A_log = 1e-8 with a loss of
// O(1), where long double differences carry 4.5e-14 of rounding). check_gradient therefore also passes a
// tensor whose error norm is below that resolution, sqrt(n) · 64 · eps_truth · max(|loss|, 1) / step, and
// says so in the report. For any gradient above ~1e-5 of the loss the 1e-6 relative bound decides alone.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "verify/bounds.hpp"
#include "verify/compare.hpp"

namespace transmamba {

using Truth = long double;  // the scalar finite differences are evaluated in
constexpr double kFiniteDiffStep = 1e-6;

struct FiniteDiff {
  Eigen::MatrixXd grad;  // d loss / d t, the shape of t
  double resolution;     // the norm of the rounding error grad may carry
};

// The gradient of loss() with respect to every entry of t, which loss() reads by reference:
//   d loss / d t[i] ≈ (loss(t + step·e_i) - loss(t - step·e_i)) / (2·step).
// t: any Eigen matrix or vector of Truth.
template <class Tensor, class Loss>
FiniteDiff finite_diff(Tensor& t, Loss&& loss, double step = kFiniteDiffStep) {
  FiniteDiff fd{Eigen::MatrixXd(t.rows(), t.cols()), 0};
  const Truth h = step;
  Truth loss_scale = 1;
  for (Eigen::Index i = 0; i < t.rows(); ++i)
    for (Eigen::Index j = 0; j < t.cols(); ++j) {
      const Truth saved = t(i, j);
      t(i, j) = saved + h;
      const Truth up = loss();
      t(i, j) = saved - h;
      const Truth down = loss();
      t(i, j) = saved;
      fd.grad(i, j) = double((up - down) / (2 * h));
      loss_scale = std::max({loss_scale, std::abs(up), std::abs(down)});
    }
  fd.resolution = double(std::sqrt(Truth(t.size())) * 64 * std::numeric_limits<Truth>::epsilon() * loss_scale / h);
  return fd;
}

// Compares an analytic gradient (double) with the finite differences of loss() over t.
template <class Analytic, class Tensor, class Loss>
Comparison check_gradient(const std::string& name, const Analytic& analytic, Tensor& t, Loss&& loss) {
  const FiniteDiff fd = finite_diff(t, loss);
  return compare(name, analytic, fd.grad, bounds::kFiniteDiff, fd.resolution);
}

}  // namespace transmamba
