// Kernel check of the projections (E1, E8; cuda/projection.hpp): out, d_in and d_W of one GEMM each against
// reference/projection.hpp's linear_forward and linear_backward in double on the same fp32 inputs.
//
// Shapes: rows = Bt·T with Bt in {1, 3} and T from 1 (draw_shape), widths n and m from 1 to 70; every matrix,
// input or output, a column block of a wider one (row padding, NaN in the inputs'), so the leading dimensions
// and transposes of the row-major-over-column-major mapping (projection.cpp) are exercised; inputs up to 1e3.
// Rounding floor (kernel_case.hpp): each output is a sum of k products (k = n, m or rows), error at most
// (k + 2)·u times the same product on magnitudes.
//
// "<backend>.projection.bf16": the same draws rounded to bf16, through the bf16 GEMMs (cuda/blas.hpp: GemmBf16 for
// out and d_in, GemmBf16ToF32 for d_W); each tensor within bf16_bound of the float reference's error
// (compare_to_baseline).
#include "cuda/projection.hpp"
#include "reference/projection.hpp"
#include "verify/bounds.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/kernel_case.hpp"

namespace transmamba {

namespace {
using namespace kernel_case;

// The draws of both projection checks: in, W, d_out (all bf16 in the bf16 check: the bf16 GEMMs take bf16 operands).
struct LinearInputs {
  Draws d;
  int rows, n, m;
  MatD in, W, d_out;  // [rows, n], [n, m], [rows, m]
};
LinearInputs draw_linear(bool bf16) {
  LinearInputs l{draw_shape()};
  const Draws& d = l.d;
  l.rows = d.Bt * d.T, l.n = draw("n", rc::gen::inRange(1, 70)), l.m = draw("m", rc::gen::inRange(1, 70));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  l.in = round_activation(rnd.mat<double>(l.rows, l.n, -d.scale, d.scale), bf16), l.W = round_activation(rnd.mat<double>(l.n, l.m), bf16);
  l.d_out = round_activation(rnd.mat<double>(l.rows, l.m), bf16);
  return l;
}

struct LinearOutputs {
  MatD out, d_in, d_W;
};

// The GEMMs of storage type S through the host API, every matrix a column block of a wider one (NaN between).
template <class S>
LinearOutputs run_linear(gpu::Backend backend, const LinearInputs& l) {
  const int rows = l.rows, n = l.n, m = l.m, pad = l.d.pad;
  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::LinearShape shape{rows, n, m};
  const PackedAs<S> in_p = pack<S>({l.in}, pad), W_p = pack<S>({l.W}, pad), d_out_p = pack<S>({l.d_out}, pad);
  const PackedAs<S> out_p = pack<S>({MatD::Zero(rows, m)}, pad), d_in_p = pack<S>({MatD::Zero(rows, n)}, pad);
  const Packed d_W_p = pack({MatD::Zero(n, m)}, pad);
  DeviceBuffer<S> in_dev(dev, in_p.values), W_dev(dev, W_p.values), d_out_dev(dev, d_out_p.values), out_dev(dev, out_p.values),
      d_in_dev(dev, d_in_p.values);
  DeviceBuffer<float> d_W_dev(dev, d_W_p.values);
  auto view = [](const auto& buf, const auto& p) { return buf.view(p.batch_stride, p.row_stride); };
  gpu::linear_forward(stream, gpu::LinearForwardT<S>{shape, view(in_dev, in_p), view(W_dev, W_p), view(out_dev, out_p)});
  gpu::linear_backward(stream, gpu::LinearBackwardT<S>{shape, view(in_dev, in_p), view(W_dev, W_p), view(d_out_dev, d_out_p),
                                                       view(d_in_dev, d_in_p), view(d_W_dev, d_W_p)});
  stream.synchronize();
  auto got = [](const auto& buf, std::int64_t row_stride, int r, int c) { return stacked(buf.download(), 1, r, c, row_stride); };
  return {got(out_dev, out_p.row_stride, rows, m), got(d_in_dev, d_in_p.row_stride, rows, n), got(d_W_dev, d_W_p.row_stride, n, m)};
}

// reference/projection.hpp in scalar T (double: the truth; float: the bf16 check's baseline).
template <class T>
LinearOutputs linear_reference(const LinearInputs& l) {
  const Mat<T> in = l.in.cast<T>(), W = l.W.cast<T>();
  const LinearGrads<T> g = linear_backward<T>(in, W, l.d_out.cast<T>());
  return {linear_forward<T>(in, W).template cast<double>(), g.d_in.template cast<double>(), g.d_W.template cast<double>()};
}

std::vector<Comparison> projection_case(gpu::Backend backend) {
  const LinearInputs l = draw_linear(false);
  const LinearOutputs got = run_linear<float>(backend, l), truth = linear_reference<double>(l);
  const MatD e_out = (l.n + 2) * kUnit * linear_forward<double>(l.in.cwiseAbs(), l.W.cwiseAbs());
  const LinearGrads<double> mag = linear_backward<double>(l.in.cwiseAbs(), l.W.cwiseAbs(), l.d_out.cwiseAbs());
  return {compare("out", got.out, truth.out, bounds::kCudaFp32Forward, rounding_floor(e_out)),
          compare("d_in", got.d_in, truth.d_in, bounds::kCudaFp32Gradient, rounding_floor((l.m + 2) * kUnit * mag.d_in)),
          compare("d_W", got.d_W, truth.d_W, bounds::kCudaFp32Gradient, rounding_floor((l.rows + 2) * kUnit * mag.d_W))};
}

// The bf16 GEMMs: against the truth within bf16_bound of the float reference on the same bf16 operands, its out
// and d_in rounded to bf16 as the GEMMs store them (d_W fp32).
std::vector<Comparison> projection_bf16_case(gpu::Backend backend) {
  const LinearInputs l = draw_linear(true);
  const LinearOutputs got = run_linear<gpu::Bf16>(backend, l), truth = linear_reference<double>(l);
  const LinearOutputs base = linear_reference<float>(l);
  return {compare_bf16("out", got.out, truth.out, round_to_bf16(base.out)),
          compare_bf16("d_in", got.d_in, truth.d_in, round_to_bf16(base.d_in)),
          compare_bf16("d_W", got.d_W, truth.d_W, base.d_W)};
}
}  // namespace

std::vector<Check> projection_kernel_checks(gpu::Backend backend) {
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  return {{std::string(gpu::to_string(backend)) + ".projection",
           "projection GEMMs (out = in·W, d_in, d_W over Bt·T rows)" + where + " = double reference (fp32 bounds)", 60,
           [backend] { return projection_case(backend); }},
          {std::string(gpu::to_string(backend)) + ".projection.bf16",
           "bf16 projection GEMMs (out, d_in in bf16, d_W in fp32)" + where + " = double reference (bf16 bounds)", 60,
           [backend] { return projection_bf16_case(backend); }}};
}

}  // namespace transmamba
