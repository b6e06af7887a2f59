// The error bounds of DESIGN.md section 7, in one place. A bound changes only with a written reason there.
#pragma once

namespace transmamba::bounds {

constexpr double kExact = 1e-12;       // double vs double: equal forms, exactness, fixtures
constexpr double kFloat = 1e-5;        // float reference vs the double truth (forward outputs and states)
// Gradients of the float reference: DESIGN.md section 7 bounds fp32 gradients at 1e-4 (CUDA fp32 vs truth);
// the float reference's gradient is held to the same bound, as one vector over all parameters and the input
// (what an optimizer sees). Per tensor the bound is unsound: a scalar such as d_D_skip sums T·p products
// that cancel, and float's error follows the terms, not the sum (seen: d_D_skip = 8.4e-3, error 1.0e-6).
constexpr double kFloatGradient = 1e-4;
constexpr double kFiniteDiff = 1e-6;   // analytic gradient vs central finite differences in double
constexpr double kCudaFp32Forward = 1e-5;
constexpr double kCudaFp32Gradient = 1e-4;
constexpr double kBf16Floor = 1e-3;    // bf16: <= 2 x the float reference's error on bf16 inputs, + this floor
constexpr double kBf16Ceiling = 2e-2;  // and never above this

}  // namespace transmamba::bounds
