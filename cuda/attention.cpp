// The public API of cuda/attention.hpp: every argument checked against the shape, then the stream's backend
// runs it. One templated implementation per direction serves the fp32 and the bf16 arguments.
#include "cuda/attention.hpp"

#include "cuda/backends.hpp"

namespace transmamba::gpu {

namespace {
template <class S>
AttentionPlan plan_for(const AttentionShape& s) {
  return std::is_same_v<S, Bf16> ? attention_plan_bf16(s) : attention_plan(s);
}

template <class S>
AttentionPlan check_inputs(const char* fn, const AttentionShape& s, const View<const S>& C, const View<const S>& B,
                           const View<const S>& x) {
  const AttentionPlan plan = plan_for<S>(s);  // the shape itself
  check_view(fn, "C", C, s.Bt, s.queries(), std::int64_t(s.G) * s.N);
  check_view(fn, "B", B, s.Bt, s.P, std::int64_t(s.G) * s.N);
  check_view(fn, "x", x, s.Bt, s.P, std::int64_t(s.H) * s.p);
  return plan;
}

template <class S>
void forward(const Stream& stream, const AttentionForwardT<S>& a) {
  const AttentionShape& s = a.shape;
  const AttentionPlan plan = check_inputs("attention_forward", s, a.C, a.B, a.x);
  check_view("attention_forward", "y", a.y, s.Bt, s.queries(), std::int64_t(s.H) * s.p);
  check_view("attention_forward", "lse", a.lse, 1, 1, std::int64_t(plan.lse));
  TM_DISPATCH(stream, attention_forward, a);
}

template <class S>
void backward(const Stream& stream, const AttentionBackwardT<S>& a) {
  const AttentionShape& s = a.shape;
  const char* fn = "attention_backward";
  if (s.first_query != 0)
    throw std::invalid_argument("attention_backward: first_query=" + std::to_string(s.first_query) +
                                ": the backward takes every query (first_query = 0)");
  const AttentionPlan plan = check_inputs(fn, s, a.C, a.B, a.x);
  const std::int64_t E = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  check_view(fn, "lse", a.lse, 1, 1, std::int64_t(plan.lse));
  check_view(fn, "d_y", a.d_y, s.Bt, s.P, E);
  check_view(fn, "d_C", a.d_C, s.Bt, s.P, GN);
  check_view(fn, "d_B", a.d_B, s.Bt, s.P, GN);
  check_view(fn, "d_x", a.d_x, s.Bt, s.P, E);
  check_view(fn, "workspace", a.workspace, 1, 1, std::int64_t(plan.workspace));
  TM_DISPATCH(stream, attention_backward, a);
}
}  // namespace

void attention_forward(const Stream& stream, const AttentionForward& a) { forward(stream, a); }
void attention_forward(const Stream& stream, const AttentionForwardBf16& a) { forward(stream, a); }
void attention_backward(const Stream& stream, const AttentionBackward& a) { backward(stream, a); }
void attention_backward(const Stream& stream, const AttentionBackwardBf16& a) { backward(stream, a); }

}  // namespace transmamba::gpu
