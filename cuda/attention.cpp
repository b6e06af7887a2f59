// The public API of cuda/attention.hpp: every argument checked against the shape, then the stream's backend
// runs it.
#include "cuda/attention.hpp"

#include "cuda/backends.hpp"

namespace transmamba::gpu {

namespace {
AttentionPlan check_inputs(const char* fn, const AttentionShape& s, const View<const float>& C,
                           const View<const float>& B, const View<const float>& x) {
  const AttentionPlan plan = attention_plan(s);  // the shape itself
  check_view(fn, "C", C, s.Bt, s.queries(), std::int64_t(s.G) * s.N);
  check_view(fn, "B", B, s.Bt, s.P, std::int64_t(s.G) * s.N);
  check_view(fn, "x", x, s.Bt, s.P, std::int64_t(s.H) * s.p);
  return plan;
}
}  // namespace

void attention_forward(const Stream& stream, const AttentionForward& a) {
  const AttentionShape& s = a.shape;
  const AttentionPlan plan = check_inputs("attention_forward", s, a.C, a.B, a.x);
  check_view("attention_forward", "y", a.y, s.Bt, s.queries(), std::int64_t(s.H) * s.p);
  check_view("attention_forward", "lse", a.lse, 1, 1, std::int64_t(plan.lse));
  TM_DISPATCH(stream, attention_forward, a);
}

void attention_backward(const Stream& stream, const AttentionBackward& a) {
  const AttentionShape& s = a.shape;
  const char* fn = "attention_backward";
  if (s.first_query != 0)
    throw std::invalid_argument("attention_backward: first_query=" + std::to_string(s.first_query) +
                                ": the backward takes every query (first_query = 0)");
  const AttentionPlan plan = check_inputs(fn, s, a.C, a.B, a.x);
  const std::int64_t E = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  check_view(fn, "y", a.y, s.Bt, s.P, E);
  check_view(fn, "lse", a.lse, 1, 1, std::int64_t(plan.lse));
  check_view(fn, "d_y", a.d_y, s.Bt, s.P, E);
  check_view(fn, "d_C", a.d_C, s.Bt, s.P, GN);
  check_view(fn, "d_B", a.d_B, s.Bt, s.P, GN);
  check_view(fn, "d_x", a.d_x, s.Bt, s.P, E);
  check_view(fn, "workspace", a.workspace, 1, 1, std::int64_t(plan.workspace));
  TM_DISPATCH(stream, attention_backward, a);
}

}  // namespace transmamba::gpu
