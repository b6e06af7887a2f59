// The shared projections (E1, E8) on a device: the host API mirroring reference/projection.hpp's
// linear_forward and linear_backward, one cuBLAS GEMM each (cuda/blas.hpp: fp32, TF32 off). Host-only: no
// kernel of its own.
//
//   forward:   out [rows, m] = in [rows, n] · W [n, m]
//   backward:  d_in [rows, n] = d_out [rows, m] · Wᵀ,     d_W [n, m] = inᵀ · d_out
//
// rows = Bt·T: the Bt sequences of a layer are one matrix (their rows back to back), so d_W, the sum over every
// token of every sequence, is one GEMM: written (not accumulated), deterministic. Every matrix is row-major
// and may be a column block of a wider one (a row stride larger than its columns); views are [1, rows, cols].
//
// Storage (cuda/bf16.hpp): in, W, out, d_out and d_in are of type S. LinearForward, LinearBackward: fp32 GEMMs.
// LinearForwardBf16, LinearBackwardBf16: bf16 GEMMs (blas.hpp: bf16 operands, fp32 accumulation) on a bf16 copy of
// the weight W, whose gradient d_W is written in fp32 (GemmBf16ToF32).
#pragma once

#include <stdexcept>
#include <string>

#include "cuda/bf16.hpp"
#include "cuda/device.hpp"
#include "cuda/tensor.hpp"

namespace transmamba::gpu {

struct LinearShape {
  int rows = 0;  // tokens of every sequence: Bt·T (may be 0)
  int n = 0;     // input width (>= 1)
  int m = 0;     // output width (>= 1)
};

// Throws std::invalid_argument for a shape the GEMMs do not take.
inline void check_linear_shape(const LinearShape& s) {
  if (s.rows < 0 || s.n < 1 || s.m < 1)
    throw std::invalid_argument("linear: rows=" + std::to_string(s.rows) + ", n=" + std::to_string(s.n) +
                                ", m=" + std::to_string(s.m) + " (need rows >= 0, n >= 1, m >= 1)");
}

template <class S>
struct LinearForwardT {
  LinearShape shape;
  View<const S> in;  // [1, rows, n]
  View<const S> W;   // [1, n, m]
  View<S> out;       // [1, rows, m]
};
using LinearForward = LinearForwardT<float>;
using LinearForwardBf16 = LinearForwardT<Bf16>;

template <class S>
struct LinearBackwardT {
  LinearShape shape;
  View<const S> in;         // [1, rows, n]
  View<const S> W;          // [1, n, m]
  View<const S> d_out;      // [1, rows, m]
  View<S> d_in;             // [1, rows, n]
  View<float> d_W;          // [1, n, m]: the sum over all rows (0 when rows = 0), fp32 for either S
};
using LinearBackward = LinearBackwardT<float>;
using LinearBackwardBf16 = LinearBackwardT<Bf16>;

// Check every argument (naming the first that does not fit), then run on the stream's device.
void linear_forward(const Stream& stream, const LinearForward& args);
void linear_forward(const Stream& stream, const LinearForwardBf16& args);
void linear_backward(const Stream& stream, const LinearBackward& args);
void linear_backward(const Stream& stream, const LinearBackwardBf16& args);

}  // namespace transmamba::gpu
