// The public API of cuda/ssm.hpp: every argument checked against the shape, then the stream's backend.
#include "cuda/ssm.hpp"

#include "cuda/backends.hpp"

namespace transmamba::gpu {

void ssm_chunked_forward(const Stream& stream, const ScanForward& a) {
  const char* fn = "ssm_chunked_forward";
  const ScanShape& s = a.shape;
  const ScanPlan plan = scan_plan(s);
  const std::int64_t HP = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  check_view(fn, "x", a.x, s.Bt, s.L, HP);
  check_view(fn, "dt", a.dt, s.Bt, s.L, s.H);
  check_view(fn, "A", a.A, 1, 1, s.H);
  check_view(fn, "B", a.B, s.Bt, s.L, GN);
  check_view(fn, "C", a.C, s.Bt, s.L, GN);
  if (a.S_init.data) check_view(fn, "S_init", a.S_init, s.Bt, HP, s.N);
  if (a.y.data) check_view(fn, "y", a.y, s.Bt, s.L, HP);
  check_view(fn, "final_state", a.final_state, s.Bt, HP, s.N);
  check_view(fn, "chunk_states", a.chunk_states, std::int64_t(s.Bt) * plan.chunks, HP, s.N);
  check_view(fn, "start_states", a.start_states, std::int64_t(s.Bt) * plan.chunks, HP, s.N);
  check_view(fn, "chunk_decays", a.chunk_decays, 1, 1, std::int64_t(plan.chunk_decays));
  TM_DISPATCH(stream, ssm_chunked_forward, a);
}

}  // namespace transmamba::gpu
