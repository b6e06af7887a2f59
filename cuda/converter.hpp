// The Memory Converter (E5) on a device: the host API mirroring reference/converter.hpp, over the chunked scan
// (cuda/ssm.hpp). Host code only: it launches the scan's kernels. Per head h, group g, for the P prefix tokens
//
//   S0[h] = Σ_{s<P} exp(Σ_{r=s+1..P-1} dt[r, h]·A[h]) · dt[s, h] · x[s, h] ⊗ B[s, g]      ([p, N]; 0 when P = 0)
//
// which is the final state of the scan over tokens 0..P-1 from a zero state (stages 1-2 of the scan, no y), and
// its backward is the scan's backward with d_y = 0, d_final_state = d_S0: it gives d_x, d_B, d_dt and d_A.
// Shapes: shape.L = P (the prefix); x [Bt, P, H·p], dt [Bt, P, H], A [1, 1, H], B [Bt, P, G·N], S0 [Bt, H·p, N].
#pragma once

#include "cuda/ssm.hpp"

namespace transmamba::gpu {

// Workspace floats (one buffer, contiguous):
//   forward:  the scan's chunk_states and start_states (state_values each) and chunk_decays;
//   backward: the final state (Bt·H·p·N) and the stages of the forward, which runs again for the start states the
//             scan's backward reads, then the scan's backward_workspace.
struct ConverterPlan {
  ScanPlan scan;
  std::size_t forward_workspace = 0, backward_workspace = 0;
};
inline ConverterPlan converter_plan(const ScanShape& s) {
  ConverterPlan p;
  p.scan = scan_plan(s);
  p.forward_workspace = 2 * p.scan.state_values + p.scan.chunk_decays;
  p.backward_workspace = p.forward_workspace + std::size_t(s.Bt) * s.H * s.p * s.N + p.scan.backward_workspace;
  return p;
}

// S: the storage type of x, B and their gradients (float, or Bf16: the scan's bf16 kernels); dt, A, S0, d_S0,
// d_dt, d_A and the workspace are fp32.
template <class S>
struct ConverterForwardT {
  ScanShape shape;             // L = P
  View<const S> x;             // [Bt, P, H·p]
  View<const float> dt, A;     // [Bt, P, H], [1, 1, H]
  View<const S> B;             // [Bt, P, G·N]
  View<float> S0;              // [Bt, H·p, N]: written
  View<float> workspace;       // [1, 1, converter_plan(shape).forward_workspace]
};
using ConverterForward = ConverterForwardT<float>;
using ConverterForwardBf16 = ConverterForwardT<Bf16>;

template <class S>
struct ConverterBackwardT {
  ScanShape shape;             // L = P
  View<const S> x;             // as ConverterForward
  View<const float> dt, A;
  View<const S> B;
  View<const float> d_S0;      // [Bt, H·p, N]
  View<S> d_x;                 // [Bt, P, H·p]: written
  View<float> d_dt;            // [Bt, P, H]: written
  View<S> d_B;                 // [Bt, P, G·N]: written
  View<float> d_A;             // [1, 1, H]: written, summed over sequences and tokens
  View<float> workspace;       // [1, 1, converter_plan(shape).backward_workspace]
};
using ConverterBackward = ConverterBackwardT<float>;
using ConverterBackwardBf16 = ConverterBackwardT<Bf16>;

// Check every argument (naming the first that does not fit), then run on the stream's device.
void memory_converter_forward(const Stream& stream, const ConverterForward& args);
void memory_converter_forward(const Stream& stream, const ConverterForwardBf16& args);
void memory_converter_backward(const Stream& stream, const ConverterBackward& args);
void memory_converter_backward(const Stream& stream, const ConverterBackwardBf16& args);

}  // namespace transmamba::gpu
