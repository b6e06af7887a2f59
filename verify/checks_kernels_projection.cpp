// Kernel check of the projections (E1, E8; cuda/projection.hpp): out, d_in and d_W of one GEMM each against
// reference/projection.hpp's linear_forward and linear_backward in double on the same fp32 inputs.
//
// Shapes: rows = Bt·T with Bt in {1, 3} and T from 1 (draw_shape), widths n and m from 1 to 70; every matrix,
// input or output, a column block of a wider one (row padding, NaN in the inputs'), so the leading dimensions
// and transposes of the row-major-over-column-major mapping (projection.cpp) are exercised; inputs up to 1e3.
// Rounding floor (kernel_case.hpp): each output is a sum of k products (k = n, m or rows), error at most
// (k + 2)·u times the same product on magnitudes.
#include "cuda/projection.hpp"
#include "reference/projection.hpp"
#include "verify/bounds.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/kernel_case.hpp"

namespace transmamba {

namespace {
using namespace kernel_case;

std::vector<Comparison> projection_case(gpu::Backend backend) {
  const Draws d = draw_shape();
  const int rows = d.Bt * d.T, n = draw("n", rc::gen::inRange(1, 70)), m = draw("m", rc::gen::inRange(1, 70));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  const MatD in = round_to_float(rnd.mat<double>(rows, n, -d.scale, d.scale)), W = round_to_float(rnd.mat<double>(n, m));
  const MatD d_out = round_to_float(rnd.mat<double>(rows, m));

  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::LinearShape shape{rows, n, m};
  const Packed in_p = pack({in}, d.pad), W_p = pack({W}, d.pad), d_out_p = pack({d_out}, d.pad);
  const Packed out_p = pack({MatD::Zero(rows, m)}, d.pad), d_in_p = pack({MatD::Zero(rows, n)}, d.pad);
  DeviceBuffer<float> in_dev(dev, in_p.values), W_dev(dev, W_p.values), d_out_dev(dev, d_out_p.values),
      out_dev(dev, out_p.values), d_in_dev(dev, d_in_p.values), d_W_dev(dev, W_p.values);
  auto view = [](const DeviceBuffer<float>& buf, const Packed& p) { return buf.view(p.batch_stride, p.row_stride); };
  gpu::linear_forward(stream, {shape, view(in_dev, in_p), view(W_dev, W_p), view(out_dev, out_p)});
  gpu::linear_backward(stream, {shape, view(in_dev, in_p), view(W_dev, W_p), view(d_out_dev, d_out_p),
                                view(d_in_dev, d_in_p), view(d_W_dev, W_p)});
  stream.synchronize();

  const MatD out = linear_forward(in, W);
  const LinearGrads<double> g = linear_backward(in, W, d_out);
  const MatD e_out = (n + 2) * kUnit * linear_forward<double>(in.cwiseAbs(), W.cwiseAbs());
  const LinearGrads<double> mag = linear_backward<double>(in.cwiseAbs(), W.cwiseAbs(), d_out.cwiseAbs());
  auto got = [](const DeviceBuffer<float>& buf, const Packed& p, int r, int c) { return stacked(buf.download(), 1, r, c, p.row_stride); };
  return {compare("out", got(out_dev, out_p, rows, m), out, bounds::kCudaFp32Forward, rounding_floor(e_out)),
          compare("d_in", got(d_in_dev, d_in_p, rows, n), g.d_in, bounds::kCudaFp32Gradient, rounding_floor((m + 2) * kUnit * mag.d_in)),
          compare("d_W", got(d_W_dev, W_p, n, m), g.d_W, bounds::kCudaFp32Gradient, rounding_floor((rows + 2) * kUnit * mag.d_W))};
}
}  // namespace

std::vector<Check> projection_kernel_checks(gpu::Backend backend) {
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  return {{std::string(gpu::to_string(backend)) + ".projection",
           "projection GEMMs (out = in·W, d_in, d_W over Bt·T rows)" + where + " = double reference (fp32 bounds)", 60,
           [backend] { return projection_case(backend); }}};
}

}  // namespace transmamba
