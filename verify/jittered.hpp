// Jittered: a long double scalar whose products and quotients are rounded at random to a lower precision, for
// the conditioning measurement of the ladder (verify/ladder.hpp). The reference is templated on its scalar, so
// it runs unchanged on this one.
//
// While a JitterScope is alive, the result of every multiplication and division is multiplied by 1 + u·eps,
// u drawn from U(-1, 1): what rounding to a precision of unit eps does to a product, up to a factor 2.
// Additions and subtractions stay exact in long double. So a sum of products whose terms cancel (a gradient
// many orders smaller than its terms) moves as much as its terms' rounding moves it, while a formula that
// subtracts two large accumulated sums (what DESIGN.md section 3 forbids) does not move: both sums hold the
// same jittered terms, and their difference only those of its own segment.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <limits>
#include <type_traits>

namespace transmamba {

namespace jitter {
inline thread_local long double eps = 0;                        // 0: exact long double arithmetic
inline thread_local std::uint64_t state = 0x9E3779B97F4A7C15ull;  // xorshift64*
// 1 + u·eps, u in U(-1, 1).
inline long double factor() {
  if (eps == 0) return 1;
  state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
  const std::uint64_t r = state * 0x2545F4914F6CDD1Dull;
  const long double u = (long double)(r >> 11) * 0x1.0p-52L - 1;  // in [-1, 1)
  return 1 + u * eps;
}
}  // namespace jitter

// Rounding jitter of unit eps while in scope, from a fixed seed (a case's measurement is reproducible).
class JitterScope {
 public:
  JitterScope(long double eps, std::uint64_t seed) : saved_eps_(jitter::eps), saved_state_(jitter::state) {
    jitter::eps = eps;
    jitter::state = seed | 1;
  }
  ~JitterScope() { jitter::eps = saved_eps_, jitter::state = saved_state_; }
  JitterScope(const JitterScope&) = delete;
  JitterScope& operator=(const JitterScope&) = delete;

 private:
  long double saved_eps_;
  std::uint64_t saved_state_;
};

struct Jittered {
  long double v = 0;
  Jittered() = default;
  Jittered(long double x) : v(x) {}  // NOLINT: implicit, as the built-in scalars convert
  operator long double() const { return v; }  // NOLINT: std::exp and friends take the long double

  Jittered& operator+=(Jittered o) { return v += o.v, *this; }
  Jittered& operator-=(Jittered o) { return v -= o.v, *this; }
  Jittered& operator*=(Jittered o) { return v *= o.v * jitter::factor(), *this; }
  Jittered& operator/=(Jittered o) { return v = v / o.v * jitter::factor(), *this; }
  Jittered operator-() const { return Jittered(-v); }
  Jittered operator+() const { return *this; }
};

// Arithmetic with another Jittered or any built-in arithmetic type (exact matches, so that no operation is
// ambiguous between these and the built-in ones on long double).
template <class T>
using IfArithmetic = std::enable_if_t<std::is_arithmetic_v<T>, int>;

inline Jittered operator+(Jittered a, Jittered b) { return a += b; }
inline Jittered operator-(Jittered a, Jittered b) { return a -= b; }
inline Jittered operator*(Jittered a, Jittered b) { return a *= b; }
inline Jittered operator/(Jittered a, Jittered b) { return a /= b; }
template <class T, IfArithmetic<T> = 0> Jittered operator+(Jittered a, T b) { return a + Jittered((long double)b); }
template <class T, IfArithmetic<T> = 0> Jittered operator+(T a, Jittered b) { return Jittered((long double)a) + b; }
template <class T, IfArithmetic<T> = 0> Jittered operator-(Jittered a, T b) { return a - Jittered((long double)b); }
template <class T, IfArithmetic<T> = 0> Jittered operator-(T a, Jittered b) { return Jittered((long double)a) - b; }
template <class T, IfArithmetic<T> = 0> Jittered operator*(Jittered a, T b) { return a * Jittered((long double)b); }
template <class T, IfArithmetic<T> = 0> Jittered operator*(T a, Jittered b) { return Jittered((long double)a) * b; }
template <class T, IfArithmetic<T> = 0> Jittered operator/(Jittered a, T b) { return a / Jittered((long double)b); }
template <class T, IfArithmetic<T> = 0> Jittered operator/(T a, Jittered b) { return Jittered((long double)a) / b; }

#define TM_JITTERED_COMPARISON(op)                                                                      \
  inline bool operator op(Jittered a, Jittered b) { return a.v op b.v; }                             \
  template <class T, IfArithmetic<T> = 0> bool operator op(Jittered a, T b) { return a.v op (long double)b; } \
  template <class T, IfArithmetic<T> = 0> bool operator op(T a, Jittered b) { return (long double)a op b.v; }
TM_JITTERED_COMPARISON(==)
TM_JITTERED_COMPARISON(!=)
TM_JITTERED_COMPARISON(<)
TM_JITTERED_COMPARISON(<=)
TM_JITTERED_COMPARISON(>)
TM_JITTERED_COMPARISON(>=)
#undef TM_JITTERED_COMPARISON

}  // namespace transmamba

namespace Eigen {
template <>
struct NumTraits<transmamba::Jittered> : NumTraits<long double> {
  using Real = transmamba::Jittered;
  using NonInteger = transmamba::Jittered;
  using Literal = transmamba::Jittered;
  using Nested = transmamba::Jittered;
  enum { IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 0, ReadCost = 1, AddCost = 1, MulCost = 1 };
  static inline Real epsilon() { return NumTraits<long double>::epsilon(); }
  static inline Real dummy_precision() { return NumTraits<long double>::dummy_precision(); }
  static inline Real highest() { return NumTraits<long double>::highest(); }
  static inline Real lowest() { return NumTraits<long double>::lowest(); }
  static inline Real infinity() { return NumTraits<long double>::infinity(); }
  static inline Real quiet_NaN() { return NumTraits<long double>::quiet_NaN(); }
};
}  // namespace Eigen
