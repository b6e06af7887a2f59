// The public API of cuda/norm.hpp: every argument checked against the shape, then the stream's backend runs it.
// One template per function checks the fp32 and the bf16 structs alike.
#include "cuda/norm.hpp"

#include "cuda/backends.hpp"

namespace transmamba::gpu {

namespace {
template <class S>
void check_common(const char* fn, const NormShape& s, const View<const S>& y, const View<const S>& z,
                  const View<const float>& w) {
  norm_plan(s);  // the shape itself
  check_view(fn, "y", y, s.Bt, s.T, s.E);
  if (z.data) check_view(fn, "z", z, s.Bt, s.T, s.E);  // no data: ungated
  check_view(fn, "w", w, 1, 1, s.E);
}

template <class S>
void forward(const Stream& stream, const NormForwardT<S>& a) {
  check_common("rmsnorm_forward", a.shape, a.y, a.z, a.w);
  check_view("rmsnorm_forward", "out", a.out, a.shape.Bt, a.shape.T, a.shape.E);
  TM_DISPATCH(stream, rmsnorm_forward, a);
}

template <class S>
void backward(const Stream& stream, const NormBackwardT<S>& a) {
  const NormShape& s = a.shape;
  check_common("rmsnorm_backward", s, a.y, a.z, a.w);
  check_view("rmsnorm_backward", "d_out", a.d_out, s.Bt, s.T, s.E);
  check_view("rmsnorm_backward", "d_y", a.d_y, s.Bt, s.T, s.E);
  if (a.z.data) {
    check_view("rmsnorm_backward", "d_z", a.d_z, s.Bt, s.T, s.E);  // gated: d_z is an output
  } else if (a.d_z.data) {
    throw std::invalid_argument("rmsnorm_backward: d_z is given, but the call is ungated (z.data == nullptr)");
  }
  check_view("rmsnorm_backward", "d_w", a.d_w, 1, 1, s.E);
  check_view("rmsnorm_backward", "workspace", a.workspace, 1, 1, std::int64_t(norm_plan(s).workspace));
  TM_DISPATCH(stream, rmsnorm_backward, a);
}
}  // namespace

void rmsnorm_forward(const Stream& stream, const NormForward& a) { forward(stream, a); }
void rmsnorm_forward(const Stream& stream, const NormForwardBf16& a) { forward(stream, a); }
void rmsnorm_backward(const Stream& stream, const NormBackward& a) { backward(stream, a); }
void rmsnorm_backward(const Stream& stream, const NormBackwardBf16& a) { backward(stream, a); }

}  // namespace transmamba::gpu
