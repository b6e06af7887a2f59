#include "verify/compare.hpp"

#include <cmath>
#include <cstdio>

#include "verify/bounds.hpp"

namespace transmamba {

Comparison compare_double(const std::string& name, const Eigen::Ref<const Eigen::MatrixXd>& got,
                          const Eigen::Ref<const Eigen::MatrixXd>& ref, double bound, double abs_floor) {
  Comparison c;
  c.name = name;
  c.bound = bound;
  c.abs_floor = abs_floor;
  if (got.rows() != ref.rows() || got.cols() != ref.cols()) {
    c.shape_matches = false;
    c.max_abs = c.rel_norm = c.abs_norm = INFINITY;
    c.worst_row = got.rows();
    c.worst_col = got.cols();
    return c;
  }
  c.finite = got.allFinite() && ref.allFinite();
  if (!c.finite) {
    c.max_abs = c.rel_norm = c.abs_norm = NAN;
    for (Eigen::Index i = 0; i < got.rows(); ++i)
      for (Eigen::Index j = 0; j < got.cols(); ++j)
        if (!std::isfinite(got(i, j)) || !std::isfinite(ref(i, j))) {
          c.worst_row = i, c.worst_col = j, c.worst_got = got(i, j), c.worst_ref = ref(i, j);
          return c;
        }
    return c;
  }
  if (got.size() == 0) return c;
  const Eigen::MatrixXd diff = got - ref;
  c.max_abs = diff.cwiseAbs().maxCoeff(&c.worst_row, &c.worst_col);
  c.worst_got = got(c.worst_row, c.worst_col);
  c.worst_ref = ref(c.worst_row, c.worst_col);
  const double ref_norm = ref.norm();
  c.abs_norm = diff.norm();
  c.rel_norm = ref_norm > 0 ? c.abs_norm / ref_norm : c.abs_norm;
  return c;
}

Comparison compare_to_baseline(const std::string& name, const Eigen::Ref<const Eigen::MatrixXd>& got,
                               const Eigen::Ref<const Eigen::MatrixXd>& truth,
                               const Eigen::Ref<const Eigen::MatrixXd>& baseline) {
  const Comparison base = compare_double(name + " (float baseline)", baseline, truth, bounds::kBf16Ceiling);
  if (!base.finite || !base.shape_matches) return base;
  return compare_double(name, got, truth, bounds::bf16_bound(base.rel_norm));
}

std::string Comparison::report() const {
  char buf[512];
  if (!shape_matches) {
    std::snprintf(buf, sizeof buf, "%s: shape mismatch (got [%ld, %ld]) FAIL", name.c_str(), (long)worst_row,
                  (long)worst_col);
  } else if (!finite) {
    std::snprintf(buf, sizeof buf, "%s: NaN or Inf at [%ld, %ld] (got %g, ref %g) FAIL", name.c_str(),
                  (long)worst_row, (long)worst_col, worst_got, worst_ref);
  } else {
    const bool by_floor = rel_norm > bound && abs_norm <= abs_floor;
    char floor[96] = "";
    if (abs_floor > 0)
      std::snprintf(floor, sizeof floor, ", abs %.2e %s floor %.2e", abs_norm, abs_norm <= abs_floor ? "<=" : ">",
                    abs_floor);
    std::snprintf(buf, sizeof buf, "%s: rel %.2e %s %.0e%s, max abs %.2e at [%ld, %ld] (got %.6g, ref %.6g) %s%s",
                  name.c_str(), rel_norm, rel_norm <= bound ? "<=" : ">", bound, floor, max_abs, (long)worst_row,
                  (long)worst_col, worst_got, worst_ref, passed() ? "ok" : "FAIL",
                  by_floor ? " (within the reference's own error)" : "");
  }
  return buf;
}

}  // namespace transmamba
