// The precision ladder (issue 8): a component evaluated in a lower precision Low against the same component
// in a higher one High, tensor by tensor (forward outputs, stages, every gradient):
//
//   ladder<double, long double>   the double reference against itself in long double: rel-norm <= 1e-12;
//   ladder<float, double>         the float reference against the double truth: 1e-5 forward, 1e-4 gradients.
//
// The same reference code runs on both rungs (it is templated on the scalar), so what the ladder measures is
// rounding: a formula that loses more than its inputs' rounding (the difference of two large cumulative sums,
// DESIGN.md section 3) shows as an error far above the tensor's bound.
//
// Conditioning. Some tensors the inputs determine only loosely, or only through sums that cancel: a sum of
// terms that nearly cancel, a gradient many orders smaller than the terms it is made of (RMSNorm is scale
// invariant, so a gradient with respect to a head's scale, D_skip or dt at a single token, is O(eps_norm / rms²)
// of its terms), a softmax over near-tied scores of 1e6. No formula computes them to the base bound in Low. So
// every tensor's sensitivity is measured: the component is evaluated in long double with every input moved by
// up to one ulp of Low (each entry times 1 + u·eps_Low, u in U(-1, 1)) and every product and quotient rounded at
// random to Low's precision (Jittered, verify/jittered.hpp), and the tensor's relative change from the exact
// long double value is its sensitivity (the worst of bounds::kSensitivityDraws draws). The tensor's bound is
// max(base, bounds::kSensitivityFactor × sensitivity); where the second term decides, the comparison's name
// says so: "d_A (ill-conditioned: 1 ulp moves it 3.1e-13)". For a well-conditioned tensor the sensitivity is
// about eps_Low and the base bound decides.
//
// What the sensitivity does not excuse: additions are exact in the measurement, so the difference of two
// accumulated sums (cumA[t] - cumA[s], a total minus a prefix: DESIGN.md section 3) moves only by its own
// segment's terms and by long double's rounding, 2048 times below double's. Such a formula keeps its full
// error against a bound that is at most kSensitivityFactor times long double's: 2048 / 16 = 128 times over it.
// Limit: each product is rounded at random on every evaluation, where real arithmetic rounds the same product
// of the same values the same way. A formula that computes the two sums separately (cumA[t] from one call,
// cumA[s] from another) is therefore measured with independent roundings of their common terms, and excused
// (seen with a first version of the planted bug scan_decay_by_difference, verify/PLANTED_BUGS.md). The code
// that had this cancellation computed cumA once, and is caught. Making the rounding a function of the
// operands would close this.
//
// A case is a struct template Case<S> with cast<T>() (the same case in another scalar) and for_each(f), which
// calls f(name, tensor) on every input tensor (those are what is moved by an ulp); f(case) returns Tensors<S>.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "reference/tensor.hpp"
#include "verify/bounds.hpp"
#include "verify/compare.hpp"
#include "verify/jittered.hpp"

namespace transmamba {

// What one evaluation of a component returns, in a fixed order: each tensor with its name and whether it is a
// gradient (the float rung bounds gradients more loosely, DESIGN.md section 7).
template <class S>
struct Tensors {
  struct Entry {
    std::string name;
    Mat<S> value;
    bool gradient;
  };
  std::vector<Entry> entries;

  template <class D>
  void add(const std::string& name, const Eigen::DenseBase<D>& t, bool gradient = false) {
    entries.push_back({name, Mat<S>(t.derived()), gradient});
  }
  template <class D>
  void add_gradient(const std::string& name, const Eigen::DenseBase<D>& t) {
    add(name, t, true);
  }
  // A list of per-chunk states [H·p, N] as one [chunks·H·p, N] tensor.
  void add_stacked(const std::string& name, const std::vector<Mat<S>>& states) {
    Eigen::Index rows = 0;
    for (const Mat<S>& m : states) rows += m.rows();
    Mat<S> all(rows, states.empty() ? 0 : states.front().cols());
    for (Eigen::Index i = 0, r = 0; i < Eigen::Index(states.size()); r += states[i].rows(), ++i)
      all.middleRows(r, states[i].rows()) = states[i];
    add(name, all);
  }
};

// Tensors<S> for a case of type Case<S> (what a generic lambda over cases returns): TensorsFor<decltype(c)>.
template <class C>
struct ScalarOf;
template <template <class> class Case, class S>
struct ScalarOf<Case<S>> {
  using type = S;
};
template <class C>
using TensorsFor = Tensors<typename ScalarOf<std::decay_t<C>>::type>;

// ||moved - at|| / ||at|| in S (||moved - at|| where at is all zero).
template <class S>
double relative_change(const Mat<S>& moved, const Mat<S>& at) {
  if (moved.rows() != at.rows() || moved.cols() != at.cols()) return INFINITY;
  const S diff = (moved - at).norm(), ref = at.norm();
  return double(ref > 0 ? diff / ref : diff);
}

// Every input tensor of c (for_each) times 1 + u·eps_Low, u drawn from U(-1, 1) for each entry. (Not ±1: a
// tensor that is ill-conditioned only through a symmetry of the inputs, such as tied scores from equal keys,
// keeps that symmetry when every key moves by the same factor, which random signs do often.)
template <class Low, class Case>
void move_by_one_ulp(Case& c, std::mt19937_64& rng) {
  const double eps = std::numeric_limits<Low>::epsilon();
  std::uniform_real_distribution<double> u(-1, 1);
  c.for_each([&](const auto&, auto& t) {
    using S = typename std::decay_t<decltype(t)>::Scalar;
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] *= S(1) + S(u(rng)) * S(eps);
  });
}

// The sensitivity of each of f's tensors at c: the largest relative change, over bounds::kSensitivityDraws
// draws, when every input moves by up to one ulp of Low and every product and quotient is rounded at random
// to Low's precision (verify/jittered.hpp), against f at c in exact long double. The draws are seeded by a
// constant: a case's bounds are a function of the case.
template <class Low, template <class> class Case, class F>
std::vector<double> sensitivity(const Case<double>& c, F&& f) {
  const Case<Jittered> at = c.template cast<Jittered>();
  const Tensors<Jittered> exact = f(at);
  std::vector<double> s(exact.entries.size(), 0.0);
  std::mt19937_64 rng(20261125);
  for (int k = 0; k < bounds::kSensitivityDraws; ++k) {
    Case<Jittered> moved = at;
    move_by_one_ulp<Low>(moved, rng);
    const JitterScope rounding(std::numeric_limits<Low>::epsilon(), rng());
    const Tensors<Jittered> m = f(moved);
    for (std::size_t i = 0; i < s.size(); ++i)
      s[i] = std::max(s[i], relative_change<long double>(m.entries[i].value.template cast<long double>(),
                                                         exact.entries[i].value.template cast<long double>()));
  }
  return s;
}

// compare() with the bound max(base, kSensitivityFactor · sensitivity), the name marked where the sensitivity
// decides.
template <class A, class B>
Comparison compare_conditioned(const std::string& name, const Eigen::DenseBase<A>& got, const Eigen::DenseBase<B>& ref,
                               double base, double sensitivity) {
  const double by_sensitivity = bounds::kSensitivityFactor * sensitivity;
  if (!(by_sensitivity > base)) return compare(name, got, ref, base);
  char note[96];
  std::snprintf(note, sizeof note, " (ill-conditioned: 1 ulp moves it %.1e)", sensitivity);
  return compare(name + note, got, ref, by_sensitivity);
}

// The ladder of c (a case in double, cast to Low and High): every tensor of f in Low against f in High, with
// the bound forward_bound (gradient_bound for gradients) or the tensor's measured sensitivity.
template <class Low, class High, template <class> class Case, class F>
std::vector<Comparison> ladder(const Case<double>& c, F&& f, double forward_bound, double gradient_bound) {
  const Tensors<High> truth = f(c.template cast<High>());
  const Tensors<Low> got = f(c.template cast<Low>());
  const std::vector<double> s = sensitivity<Low>(c, f);
  std::vector<Comparison> out;
  for (std::size_t i = 0; i < truth.entries.size(); ++i)
    out.push_back(compare_conditioned(got.entries[i].name, got.entries[i].value, truth.entries[i].value,
                                      truth.entries[i].gradient ? gradient_bound : forward_bound, s[i]));
  return out;
}

// f at c in double against `other`, a second double evaluation of the same tensors (another form of the
// function, or its definition written element by element), in the same order (the names are f's): each tensor
// at bounds::kExact, or at the sensitivity of f at c to double's rounding where that is larger. The checks
// that compare two double computations draw the hard regimes too, where a tensor can be ill-conditioned.
template <template <class> class Case, class F>
std::vector<Comparison> compare_forms(const Case<double>& c, F&& f, const Tensors<double>& other) {
  const Tensors<double> got = f(c);
  if (got.entries.size() != other.entries.size())
    throw std::logic_error("compare_forms: " + std::to_string(got.entries.size()) + " tensors against " +
                           std::to_string(other.entries.size()));
  const std::vector<double> s = sensitivity<double>(c, f);
  std::vector<Comparison> out;
  for (std::size_t i = 0; i < got.entries.size(); ++i)
    out.push_back(compare_conditioned(got.entries[i].name, got.entries[i].value, other.entries[i].value,
                                      bounds::kExact, s[i]));
  return out;
}

}  // namespace transmamba
