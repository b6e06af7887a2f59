// The one comparison helper of the project (DESIGN.md section 7). Every check compares a tensor it got with
// a reference tensor through compare(): max abs error, relative norm error ||got - ref|| / ||ref||, the
// worst element's coordinates, the bound, and pass/fail. NaN or Inf in either tensor fails.
#pragma once

#include <Eigen/Dense>

#include <string>

namespace transmamba {

struct Comparison {
  std::string name;
  double max_abs = 0;   // max_i |got_i - ref_i|
  double rel_norm = 0;  // ||got - ref|| / ||ref||; ||got - ref|| when ref is all zero
  double abs_norm = 0;  // ||got - ref||
  double bound = 0;     // passes when rel_norm <= bound ...
  double abs_floor = 0; // ... or when ||got - ref|| <= abs_floor, the reference's own error (0: none)
  Eigen::Index worst_row = 0, worst_col = 0;  // coordinates of the max abs error
  double worst_got = 0, worst_ref = 0;
  bool finite = true;          // false when got or ref holds NaN or Inf
  bool shape_matches = true;   // false when the shapes differ (then nothing else is measured)

  bool passed() const { return finite && shape_matches && (rel_norm <= bound || abs_norm <= abs_floor); }
  // e.g. "dW_in: rel 3.1e-14 <= 1e-12, max abs 2.2e-15 at [3, 7] (got 0.41, ref 0.41) ok"
  std::string report() const;
};

// Compares in double whatever the scalars of got and ref.
Comparison compare_double(const std::string& name, const Eigen::Ref<const Eigen::MatrixXd>& got,
                          const Eigen::Ref<const Eigen::MatrixXd>& ref, double bound, double abs_floor = 0);

template <class A, class B>
Comparison compare(const std::string& name, const Eigen::DenseBase<A>& got, const Eigen::DenseBase<B>& ref,
                   double bound, double abs_floor = 0) {
  const Eigen::MatrixXd g = got.derived().template cast<double>();
  const Eigen::MatrixXd r = ref.derived().template cast<double>();
  return compare_double(name, g, r, bound, abs_floor);
}

// A bf16 kernel's tensor (DESIGN.md section 7's bf16 rule): got and baseline (the float reference on the same
// bf16-rounded inputs, rounded to bf16 at the kernel's storage points) both against the truth (the double
// reference on those inputs); got passes within bounds::bf16_bound of the baseline's rel-norm error. A baseline
// that is not finite, or whose shape differs from the truth's, fails the comparison.
Comparison compare_to_baseline(const std::string& name, const Eigen::Ref<const Eigen::MatrixXd>& got,
                               const Eigen::Ref<const Eigen::MatrixXd>& truth,
                               const Eigen::Ref<const Eigen::MatrixXd>& baseline);

}  // namespace transmamba
