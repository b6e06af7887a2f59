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
#pragma once

#include <stdexcept>
#include <string>

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

struct LinearForward {
  LinearShape shape;
  View<const float> in;  // [1, rows, n]
  View<const float> W;   // [1, n, m]
  View<float> out;       // [1, rows, m]
};

struct LinearBackward {
  LinearShape shape;
  View<const float> in;     // [1, rows, n]
  View<const float> W;      // [1, n, m]
  View<const float> d_out;  // [1, rows, m]
  View<float> d_in;         // [1, rows, n]
  View<float> d_W;          // [1, n, m]: the sum over all rows (0 when rows = 0)
};

// Check every argument (naming the first that does not fit), then run on the stream's device.
void linear_forward(const Stream& stream, const LinearForward& args);
void linear_backward(const Stream& stream, const LinearBackward& args);

}  // namespace transmamba::gpu
