// Tensor types, shape checks and the scalar functions (SiLU, softplus) that every component shares.
//
// Convention (DESIGN.md section 1): every sequence tensor is a row-major [T, ...] matrix; per-head and
// per-group blocks are column ranges (x[t, h, i] is column h*p + i). An SSM state for all heads is one
// [H*p, N] matrix whose rows h*p .. h*p+p-1 are head h's [p, N] state.
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

namespace transmamba {

template <class S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;

// f(i) for i in [0, n), on OpenMP's threads when `work` (about the multiply-adds of the whole loop, all n
// iterations together) pays for them: the
// paper-size comparisons (T = 8192) take minutes instead of an hour. Each f(i) writes only its own outputs and
// no sum crosses iterations, so the result is bitwise the same on any number of threads (tests/test_parallel.cpp).
// Eigen's own products stay single-threaded (EIGEN_DONT_PARALLELIZE, CMakeLists.txt): their blocking depends
// on the thread count. Small work runs in order on the calling thread: every check's case, and the ladder's
// Jittered scalar (verify/jittered.hpp), whose rounding state is per thread.
inline double parallel_min_work = 1e7;  // tests/test_parallel.cpp sets 0: every loop on the threads
template <class F>
void parallel_for(int n, double work, F&& f) {
#pragma omp parallel for schedule(static) if (n > 1 && work > parallel_min_work)
  for (int i = 0; i < n; ++i) f(i);
}

// Throws std::invalid_argument naming the argument, the expected and the actual shape.
template <class Derived>
void check_shape(const char* name, const Eigen::DenseBase<Derived>& m, Eigen::Index rows, Eigen::Index cols) {
  if (m.rows() != rows || m.cols() != cols) {
    std::ostringstream os;
    os << name << ": expected shape [" << rows << ", " << cols << "], got [" << m.rows() << ", " << m.cols()
       << "]";
    throw std::invalid_argument(os.str());
  }
}

template <class Derived>
void check_size(const char* name, const Eigen::DenseBase<Derived>& v, Eigen::Index n) {
  if (v.size() != n) {
    std::ostringstream os;
    os << name << ": expected " << n << " entries, got " << v.size();
    throw std::invalid_argument(os.str());
  }
}

// Throws std::invalid_argument when a tensor holds NaN or Inf.
template <class Derived>
void check_finite(const char* name, const Eigen::DenseBase<Derived>& m) {
  if (!m.derived().allFinite()) throw std::invalid_argument(std::string(name) + ": contains NaN or Inf");
}

template <class S>
S sigmoid(S v) {
  return S(1) / (S(1) + std::exp(-v));
}
template <class S>
S silu(S v) {
  return v * sigmoid(v);
}
// d/dv silu(v) = sigmoid(v) * (1 + v * (1 - sigmoid(v))).
template <class S>
S silu_grad(S v) {
  const S s = sigmoid(v);
  return s * (S(1) + v * (S(1) - s));
}
// softplus(v) = log(1 + e^v), written so that it neither overflows for large v nor loses digits for small v.
template <class S>
S softplus(S v) {
  return v > S(0) ? S(v + std::log1p(std::exp(-v))) : S(std::log1p(std::exp(v)));
}

}  // namespace transmamba
