// The public API of cuda/step_size.hpp: every argument checked against the shape, then the stream's backend.
#include "cuda/step_size.hpp"

#include "cuda/backends.hpp"

namespace transmamba::gpu {

namespace {
void check_common(const char* fn, const StepSizeShape& s, const View<const float>& dt_raw,
                  const View<const float>& dt_bias, const View<const float>& A_log) {
  step_size_plan(s);
  check_view(fn, "dt_raw", dt_raw, s.Bt, s.T, s.H);
  check_view(fn, "dt_bias", dt_bias, 1, 1, s.H);
  check_view(fn, "A_log", A_log, 1, 1, s.H);
}
}  // namespace

void step_size_forward(const Stream& stream, const StepSizeForward& a) {
  check_common("step_size_forward", a.shape, a.dt_raw, a.dt_bias, a.A_log);
  check_view("step_size_forward", "dt", a.dt, a.shape.Bt, a.shape.T, a.shape.H);
  check_view("step_size_forward", "A", a.A, 1, 1, a.shape.H);
  TM_DISPATCH(stream, step_size_forward, a);
}

void step_size_backward(const Stream& stream, const StepSizeBackward& a) {
  const StepSizeShape& s = a.shape;
  check_common("step_size_backward", s, a.dt_raw, a.dt_bias, a.A_log);
  check_view("step_size_backward", "d_dt", a.d_dt, s.Bt, s.T, s.H);
  check_view("step_size_backward", "d_A", a.d_A, 1, 1, s.H);
  check_view("step_size_backward", "d_dt_raw", a.d_dt_raw, s.Bt, s.T, s.H);
  check_view("step_size_backward", "d_dt_bias", a.d_dt_bias, 1, 1, s.H);
  check_view("step_size_backward", "d_A_log", a.d_A_log, 1, 1, s.H);
  check_view("step_size_backward", "workspace", a.workspace, 1, 1, std::int64_t(step_size_plan(s).workspace));
  TM_DISPATCH(stream, step_size_backward, a);
}

}  // namespace transmamba::gpu
