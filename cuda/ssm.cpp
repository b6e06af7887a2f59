// The public API of cuda/ssm.hpp: every argument checked against the shape, then the stream's backend. One
// templated implementation behind the fp32 and the bf16 overloads.
#include "cuda/ssm.hpp"

#include <algorithm>
#include <type_traits>

#include "cuda/backends.hpp"

namespace transmamba::gpu {

namespace {
// The inputs both directions read; C only where it is read (y, d_y).
template <class S>
void check_inputs(const char* fn, const ScanShape& s, const View<const S>& x, const View<const float>& dt,
                  const View<const float>& A, const View<const S>& B, const View<const S>& C, bool reads_C,
                  const View<const float>& S_init) {
  const std::int64_t HP = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  check_view(fn, "x", x, s.Bt, s.L, HP);
  check_view(fn, "dt", dt, s.Bt, s.L, s.H);
  check_view(fn, "A", A, 1, 1, s.H);
  check_view(fn, "B", B, s.Bt, s.L, GN);
  if (reads_C) check_view(fn, "C", C, s.Bt, s.L, GN);
  if (S_init.data) check_view(fn, "S_init", S_init, s.Bt, HP, s.N);
}

template <class S>
void forward(const Stream& stream, const ScanForwardT<S>& a) {
  const char* fn = "ssm_chunked_forward";
  const ScanShape& s = a.shape;
  const ScanPlan plan = scan_plan(s);
  if (std::is_same_v<S, Bf16>) {  // the tensor-core kernels hold their tiles in shared memory
    const std::size_t bytes = a.y.data ? std::max(plan.bf16_output.dynamic_shared_bytes, plan.bf16_chunk_states.dynamic_shared_bytes)
                                       : plan.bf16_chunk_states.dynamic_shared_bytes;
    if (bytes > kMaxDynamicShared)
      throw std::invalid_argument(std::string(fn) + ": bf16 tiles of Q=" + std::to_string(s.Q) + ", p=" + std::to_string(s.p) +
                                  ", N=" + std::to_string(s.N) + " need " + std::to_string(bytes) +
                                  " bytes of shared memory (at most " + std::to_string(kMaxDynamicShared) + ")");
  }
  const std::int64_t HP = std::int64_t(s.H) * s.p;
  check_inputs(fn, s, a.x, a.dt, a.A, a.B, a.C, a.y.data != nullptr, a.S_init);
  if (a.y.data) check_view(fn, "y", a.y, s.Bt, s.L, HP);
  if (a.D_skip.data && !a.y.data) throw std::invalid_argument(std::string(fn) + ": D_skip is given without y (it is added to y)");
  if (a.D_skip.data) check_view(fn, "D_skip", a.D_skip, 1, 1, s.H);
  check_view(fn, "final_state", a.final_state, s.Bt, HP, s.N);
  check_view(fn, "chunk_states", a.chunk_states, std::int64_t(s.Bt) * plan.chunks, HP, s.N);
  check_view(fn, "start_states", a.start_states, std::int64_t(s.Bt) * plan.chunks, HP, s.N);
  check_view(fn, "chunk_decays", a.chunk_decays, 1, 1, std::int64_t(plan.chunk_decays));
  TM_DISPATCH(stream, ssm_chunked_forward, a);
}

template <class S>
void backward(const Stream& stream, const ScanBackwardT<S>& a) {
  const char* fn = "ssm_chunked_backward";
  const ScanShape& s = a.shape;
  const ScanPlan plan = scan_plan(s);
  const std::int64_t HP = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  const bool with_d_y = a.d_y.data != nullptr;
  check_inputs(fn, s, a.x, a.dt, a.A, a.B, a.C, with_d_y, a.S_init);
  check_view(fn, "start_states", a.start_states, std::int64_t(s.Bt) * plan.chunks, HP, s.N);
  if (with_d_y) check_view(fn, "d_y", a.d_y, s.Bt, s.L, HP);
  if (a.d_final_state.data) check_view(fn, "d_final_state", a.d_final_state, s.Bt, HP, s.N);
  check_view(fn, "d_x", a.d_x, s.Bt, s.L, HP);
  check_view(fn, "d_dt", a.d_dt, s.Bt, s.L, s.H);
  check_view(fn, "d_B", a.d_B, s.Bt, s.L, GN);
  if (with_d_y || a.d_C.data) check_view(fn, "d_C", a.d_C, s.Bt, s.L, GN);
  check_view(fn, "d_A", a.d_A, 1, 1, s.H);
  if (a.d_S_init.data) check_view(fn, "d_S_init", a.d_S_init, s.Bt, HP, s.N);
  check_view(fn, "workspace", a.workspace, 1, 1, std::int64_t(plan.backward_workspace));
  if (!a.D_skip.data != !a.d_D_skip.data)
    throw std::invalid_argument(std::string(fn) + ": D_skip and d_D_skip are given together (one without the other)");
  if (a.D_skip.data && !with_d_y) throw std::invalid_argument(std::string(fn) + ": D_skip is given without d_y (it scales d_y)");
  if (a.D_skip.data) {
    check_view(fn, "D_skip", a.D_skip, 1, 1, s.H);
    check_view(fn, "d_D_skip", a.d_D_skip, 1, 1, s.H);
  }
  TM_DISPATCH(stream, ssm_chunked_backward, a);
}
}  // namespace

void ssm_chunked_forward(const Stream& stream, const ScanForward& a) { forward(stream, a); }
void ssm_chunked_forward(const Stream& stream, const ScanForwardBf16& a) { forward(stream, a); }
void ssm_chunked_backward(const Stream& stream, const ScanBackward& a) { backward(stream, a); }
void ssm_chunked_backward(const Stream& stream, const ScanBackwardBf16& a) { backward(stream, a); }

}  // namespace transmamba::gpu
