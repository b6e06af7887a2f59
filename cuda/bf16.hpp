// bf16 storage (issue 11; DESIGN.md section 7: bf16 storage, fp32 accumulation, fp32 state), in plain C++ so
// that the host API, the tests and the kernels share one type and one rounding:
//   - Bf16: a bfloat16 value as it lies in memory (1 sign, 8 exponent, 7 mantissa bits: the high half of an
//     IEEE float). The kernels read it as CUDA's __nv_bfloat16 (same size and bits) where they need its
//     intrinsics (cuda/mma.cuh).
//   - to_float(Bf16): exact. to_bf16(float): round to nearest, ties to even (as __float2bfloat16_rn); NaN
//     stays NaN, overflow goes to Inf.
//   - Kernels templated on their storage type S (float or Bf16) read with to_float(S) and write with
//     from_float<S>(float): fp32 storage is the same code with no rounding.
//
// Which tensors a bf16 kernel keeps in bf16 (the "storage points" of DESIGN.md section 7's bf16 rule): the
// activations with a row per token that the GEMMs, the conv, attention and the scan stream through
// (u, zxbcdt, xBC, y, y_normed, out and their gradients). Parameters, step sizes dt, log-sum-exp, scan states,
// partial sums and every workspace stay fp32.
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda/device_math.hpp"  // TM_HD

namespace transmamba::gpu {

struct Bf16 {
  std::uint16_t bits = 0;
};

TM_HD float to_float(float v) { return v; }
TM_HD float to_float(Bf16 b) {
  const std::uint32_t u = std::uint32_t(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

TM_HD Bf16 to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return Bf16{std::uint16_t((u >> 16) | 0x0040u)};  // NaN: keep it quiet
  // Round to nearest even: add half an ulp of the kept part, minus one unless the kept part is odd.
  u += 0x7fffu + ((u >> 16) & 1u);
  return Bf16{std::uint16_t(u >> 16)};
}

// The value v stored as S: from_float<float>(v) = v, from_float<Bf16>(v) = to_bf16(v).
template <class S>
TM_HD S from_float(float v);
template <>
TM_HD float from_float<float>(float v) {
  return v;
}
template <>
TM_HD Bf16 from_float<Bf16>(float v) {
  return to_bf16(v);
}

// What the kernels' dtype is called in messages and check names.
template <class S>
constexpr const char* dtype_name();
template <>
constexpr const char* dtype_name<float>() {
  return "fp32";
}
template <>
constexpr const char* dtype_name<Bf16>() {
  return "bf16";
}

}  // namespace transmamba::gpu
