// The public API of cuda/conv.hpp: every argument checked against the shape, then the stream's backend runs it.
// One template per function checks the fp32 and the bf16 structs alike.
#include "cuda/conv.hpp"

#include "cuda/backends.hpp"

namespace transmamba::gpu {

namespace {
template <class S>
void check_common(const char* fn, const ConvShape& s, const View<const S>& v, const View<const float>& w,
                  const View<const float>& b) {
  conv_plan(s);  // the shape itself
  check_view(fn, "v", v, s.Bt, s.T, s.C);
  check_view(fn, "w", w, 1, s.C, s.W);
  check_view(fn, "b", b, 1, 1, s.C);
}

template <class S>
void forward(const Stream& stream, const ConvForwardT<S>& a) {
  check_common("conv_silu_forward", a.shape, a.v, a.w, a.b);
  check_view("conv_silu_forward", "out", a.out, a.shape.Bt, a.shape.T, a.shape.C);
  TM_DISPATCH(stream, conv_silu_forward, a);
}

template <class S>
void step(const Stream& stream, const ConvStepT<S>& a) {
  const ConvShape& s = a.shape;
  const char* fn = "conv_silu_step";
  if (s.T != 1) throw std::invalid_argument(std::string(fn) + ": T=" + std::to_string(s.T) + " (a step takes one token)");
  check_common(fn, s, a.v, a.w, a.b);
  check_view(fn, "window", a.window, s.Bt, s.W - 1, s.C);
  check_view(fn, "out", a.out, s.Bt, 1, s.C);
  TM_DISPATCH(stream, conv_silu_step, a);
}

template <class S>
void backward(const Stream& stream, const ConvBackwardT<S>& a) {
  const ConvShape& s = a.shape;
  check_common("conv_silu_backward", s, a.v, a.w, a.b);
  check_view("conv_silu_backward", "d_out", a.d_out, s.Bt, s.T, s.C);
  check_view("conv_silu_backward", "d_v", a.d_v, s.Bt, s.T, s.C);
  check_view("conv_silu_backward", "d_w", a.d_w, 1, s.C, s.W);
  check_view("conv_silu_backward", "d_b", a.d_b, 1, 1, s.C);
  check_view("conv_silu_backward", "workspace", a.workspace, 1, 1, std::int64_t(conv_plan(s).workspace));
  TM_DISPATCH(stream, conv_silu_backward, a);
}
}  // namespace

void conv_silu_forward(const Stream& stream, const ConvForward& a) { forward(stream, a); }
void conv_silu_forward(const Stream& stream, const ConvForwardBf16& a) { forward(stream, a); }
void conv_silu_step(const Stream& stream, const ConvStep& a) { step(stream, a); }
void conv_silu_step(const Stream& stream, const ConvStepBf16& a) { step(stream, a); }
void conv_silu_backward(const Stream& stream, const ConvBackward& a) { backward(stream, a); }
void conv_silu_backward(const Stream& stream, const ConvBackwardBf16& a) { backward(stream, a); }

}  // namespace transmamba::gpu
