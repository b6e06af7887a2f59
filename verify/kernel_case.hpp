// What every kernel check needs (verify/checks_kernels*.cpp): a device of the backend under test, inputs
// rounded to fp32 (or bf16 for the bf16 kernels) (the truth is the double reference on the same values the kernel reads), sequences packed
// into one device buffer (optionally as a column block of a wider matrix, the padding NaN), the random shape
// draws with the edges on purpose, and the fp32 rounding floor for sums that cancel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cuda/bf16.hpp"
#include "cuda/device.hpp"
#include "reference/tensor.hpp"
#include "verify/compare.hpp"
#include "verify/generators.hpp"

namespace transmamba::kernel_case {

using gpu::DeviceBuffer;
using MatD = Mat<double>;

constexpr double kUnit = 0x1p-24;  // fp32's unit roundoff
// Where fp32 leaves its range: sigmoid(v) = 1 / (1 + exp(-v)) is exactly 0 once exp(-v) overflows (v < -88.7),
// where the truth is about e^v <= 3e-39, and SiLU'(v) ~ |v|·e^v <= 3e-37 there; subnormals flush to 0 (< 1.2e-38).
// An error up to kTiny per unit of what multiplies such a value is fp32's range, not a bug.
constexpr double kTiny = 1e-35;

// Bounds error model of fp32 summation (Higham, Accuracy and Stability of Numerical Algorithms, eq. 3.5):
// |fl(Σ x_i) - Σ x_i| <= n·u·Σ|x_i|. The floor allows twice that, for the few extra roundings a kernel makes
// (a product, a SiLU) on top of the sum; `magnitude` holds Σ|x_i| (or the propagated error) per element.
inline double rounding_floor(const Eigen::MatrixXd& error_estimate) { return 2 * error_estimate.norm(); }

// A tensor of a bf16 kernel against the truth: compare_to_baseline (DESIGN.md section 7's bf16 bound), with
// fp32's range as the absolute floor: where the truth lies below fp32's range, the kernel and the float baseline
// both give 0 (seen: out = SiLU(pre) ~ -1.7e-116 for pre ~ -264, T = C = 1, inputs ~1e3; the scan's d_S_init =
// 4.9e-56 and d_A = 1.0e-61 after steps of dt = 500), a relative error of 1 that the bound's ceiling (2e-2)
// would fail on correct code, since no kernel with fp32 arithmetic can do better. The floor is the larger of
// 2·kTiny·sqrt(values) and fp32_floor (the fp32 check's rounding floor of this tensor, where it has one): both
// far below any bf16 error of a value inside fp32's range.
inline Comparison compare_bf16(const std::string& name, const MatD& got, const MatD& truth, const MatD& baseline,
                               double fp32_floor = 0) {
  Comparison c = compare_to_baseline(name, got, truth, baseline);
  c.abs_floor = std::max(rounding_floor(MatD::Constant(truth.rows(), truth.cols(), kTiny)), fp32_floor);
  return c;
}

inline gpu::Device device_for(gpu::Backend backend) {
  if (backend == gpu::Backend::cuda) return gpu::Device::cuda();
  return gpu::Device::emulated(draw("thread order seed", rc::gen::inRange<std::uint64_t>(0, 1000)));
}

inline MatD round_to_float(const MatD& m) { return m.cast<float>().cast<double>(); }
// Each value rounded to the nearest bf16 (through float, as the bf16 kernels' inputs are made): the inputs of a
// bf16 check, and the baseline's rounding at the kernel's bf16 storage points (DESIGN.md section 7).
inline MatD round_to_bf16(const MatD& m) {
  return m.unaryExpr([](double v) { return double(gpu::to_float(gpu::to_bf16(float(v)))); });
}
// An activation of a check that draws the same case for the fp32 and the bf16 kernels: rounded to bf16 for the
// bf16 check, to fp32 for the fp32 one.
inline MatD round_activation(const MatD& m, bool bf16) { return bf16 ? round_to_bf16(m) : round_to_float(m); }

// Bt matrices [rows, cols] in one buffer of storage type S (float, or gpu::Bf16 for the bf16 kernels: the
// values should be bf16 already, round_to_bf16), each row padded with NaN to row_stride (a column block of a
// wider matrix); returned with its strides.
template <class S>
struct PackedAs {
  std::vector<S> values;
  std::int64_t batch_stride, row_stride;
};
using Packed = PackedAs<float>;
template <class S = float>
PackedAs<S> pack(const std::vector<MatD>& seqs, int pad) {
  const std::int64_t rows = seqs[0].rows(), cols = seqs[0].cols(), row_stride = cols + pad;
  PackedAs<S> p{std::vector<S>(seqs.size() * rows * row_stride, gpu::from_float<S>(std::numeric_limits<float>::quiet_NaN())),
                rows * row_stride, row_stride};
  for (std::size_t b = 0; b < seqs.size(); ++b)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) p.values[b * p.batch_stride + r * row_stride + c] = gpu::from_float<S>(float(seqs[b](r, c)));
  return p;
}
template <class S>
MatD stacked(const std::vector<S>& values, int Bt, std::int64_t rows, std::int64_t cols, std::int64_t row_stride) {
  MatD m(Bt * rows, cols);
  for (int b = 0; b < Bt; ++b)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c) m(b * rows + r, c) = gpu::to_float(values[(b * rows + r) * row_stride + c]);
  return m;
}
inline MatD stack(const std::vector<MatD>& seqs) {
  MatD m(seqs.size() * seqs[0].rows(), seqs[0].cols());
  for (std::size_t b = 0; b < seqs.size(); ++b) m.middleRows(b * seqs[0].rows(), seqs[0].rows()) = seqs[b];
  return m;
}
inline std::vector<float> floats(const MatD& m) {
  std::vector<float> v(m.size());
  for (Eigen::Index i = 0; i < m.size(); ++i) v[i] = float(m.data()[i]);
  return v;
}
inline MatD as_matrix(const std::vector<float>& v, Eigen::Index rows, Eigen::Index cols) {
  return Eigen::Map<const Mat<float>>(v.data(), rows, cols).cast<double>();
}

// d_dt's magnitude from the scan's reference backward on |inputs| (checks_kernels_ssm.cpp's header comment):
// 2·direct - d_dt, per sequence.
inline MatD d_dt_magnitude(const MixerConfig& cfg, const MatD& abs_x, const MatD& dt, const MatD& d_x_abs, const MatD& d_dt_abs) {
  MatD direct(dt.rows(), dt.cols());
  for (Eigen::Index t = 0; t < dt.rows(); ++t)
    for (int h = 0; h < cfg.H; ++h)
      direct(t, h) = abs_x.row(t).segment(h * cfg.p(), cfg.p()).dot(d_x_abs.row(t).segment(h * cfg.p(), cfg.p())) / dt(t, h);
  return 2 * direct - d_dt_abs;
}

// Common draws: sequences, length (1 often; across the 32-token tiles), a row padding and an input scale.
struct Draws {
  int Bt, T, pad;
  double scale;
};
inline Draws draw_shape() {
  Draws d;
  d.Bt = draw("Bt", rc::gen::element(1, 3));
  d.T = draw("T", rc::gen::oneOf(rc::gen::just(1), rc::gen::inRange(1, 80)));
  d.pad = draw("row padding", rc::gen::element(0, 0, 3));
  d.scale = draw("input scale", rc::gen::element(1.0, 1.0, 1e3));
  return d;
}

}  // namespace transmamba::kernel_case
