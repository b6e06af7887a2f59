// The public API of cuda/step_size.hpp: every argument checked against the shape, then the stream's backend.
// One template per function checks the fp32 and the bf16 structs alike.
#include "cuda/step_size.hpp"

#include "cuda/backends.hpp"

namespace transmamba::gpu {

namespace {
template <class S>
void check_common(const char* fn, const StepSizeShape& s, const View<const S>& dt_raw,
                  const View<const float>& dt_bias, const View<const float>& A_log) {
  step_size_plan(s);
  check_view(fn, "dt_raw", dt_raw, s.Bt, s.T, s.H);
  check_view(fn, "dt_bias", dt_bias, 1, 1, s.H);
  check_view(fn, "A_log", A_log, 1, 1, s.H);
}

template <class S>
void forward(const Stream& stream, const StepSizeForwardT<S>& a) {
  check_common("step_size_forward", a.shape, a.dt_raw, a.dt_bias, a.A_log);
  check_view("step_size_forward", "dt", a.dt, a.shape.Bt, a.shape.T, a.shape.H);
  check_view("step_size_forward", "A", a.A, 1, 1, a.shape.H);
  TM_DISPATCH(stream, step_size_forward, a);
}

template <class S>
void backward(const Stream& stream, const StepSizeBackwardT<S>& a) {
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
}  // namespace

void step_size_forward(const Stream& stream, const StepSizeForward& a) { forward(stream, a); }
void step_size_forward(const Stream& stream, const StepSizeForwardBf16& a) { forward(stream, a); }
void step_size_backward(const Stream& stream, const StepSizeBackward& a) { backward(stream, a); }
void step_size_backward(const Stream& stream, const StepSizeBackwardBf16& a) { backward(stream, a); }

}  // namespace transmamba::gpu
