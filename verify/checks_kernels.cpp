// Kernel checks (checks_kernels.hpp). Each draws a random shape with the edges on purpose (T = 1, T and the
// channel count not multiples of the kernels' tiles, Bt in {1, 3}, inputs that are column blocks of a wider
// matrix, magnitudes up to 1e3), runs the kernels forward and backward through their host API, and compares
// every output and gradient with the double reference evaluated on the same fp32 inputs, under DESIGN.md
// section 7's fp32 bounds (1e-5 forward, 1e-4 gradients, relative norm).
//
// Where a tensor is a sum whose terms cancel, fp32 cannot meet a relative bound, correct code or not: the
// comparison then also passes when the error is within what fp32 rounding of those sums can produce, the
// floor of kernel_case.hpp (rounding_floor), computed from the magnitudes of the terms by the same
// reference formulas on absolute values. The report says when the floor decided.
#include "verify/checks_kernels.hpp"

#include <cmath>
#include <limits>

#include "cuda/conv.hpp"
#include "cuda/step_size.hpp"
#include "reference/conv.hpp"
#include "reference/step_size.hpp"
#include "verify/bounds.hpp"
#include "verify/generators.hpp"
#include "verify/kernel_case.hpp"

namespace transmamba {

namespace {

using namespace kernel_case;
using gpu::DeviceBuffer;

// ---- conv (E2) -------------------------------------------------------------------------------------------
std::vector<Comparison> conv_case(gpu::Backend backend) {
  const Draws d = draw_shape();
  const int C = draw("C", rc::gen::inRange(1, 70)), W = draw("W", rc::gen::oneOf(rc::gen::inRange(1, 6), rc::gen::just(gpu::kConvMaxWidth)));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  std::vector<MatD> v(d.Bt), d_out(d.Bt);
  for (int b = 0; b < d.Bt; ++b) v[b] = round_to_float(rnd.mat<double>(d.T, C, -d.scale, d.scale));
  const MatD w = round_to_float(rnd.mat<double>(C, W));
  const Vec<double> bias = round_to_float(rnd.mat<double>(C, 1, -0.5, 0.5));
  for (int b = 0; b < d.Bt; ++b) d_out[b] = round_to_float(rnd.mat<double>(d.T, C));

  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::ConvShape shape{d.Bt, d.T, C, W};
  const Packed v_packed = pack(v, d.pad), d_out_packed = pack(d_out, 0);
  DeviceBuffer<float> v_dev(dev, v_packed.values), w_dev(dev, floats(w)), b_dev(dev, floats(bias)),
      d_out_dev(dev, d_out_packed.values), out_dev(dev, d_out_packed.values.size()),
      d_v_dev(dev, d_out_packed.values.size()), d_w_dev(dev, std::size_t(C) * W), d_b_dev(dev, C),
      ws_dev(dev, gpu::conv_plan(shape).workspace);
  const gpu::View<const float> v_view = v_dev.view(v_packed.batch_stride, v_packed.row_stride);
  gpu::conv_silu_forward(stream, {shape, v_view, w_dev.view(), b_dev.view(), out_dev.view()});
  gpu::conv_silu_backward(stream, {shape, v_view, w_dev.view(), b_dev.view(), d_out_dev.view(), d_v_dev.view(),
                                   d_w_dev.view(), d_b_dev.view(), ws_dev.view()});
  stream.synchronize();

  // The truth, and the rounding floor from the magnitudes of every sum (reference on absolute values).
  std::vector<MatD> out(d.Bt), d_v(d.Bt), e_out(d.Bt), e_dv(d.Bt);
  MatD d_w = MatD::Zero(C, W), e_dw = MatD::Zero(C, W);
  Vec<double> d_b = Vec<double>::Zero(C), e_db = Vec<double>::Zero(C);
  const int n = d.Bt * d.T + 1;  // terms of a parameter gradient's sum, tile partials included
  for (int b = 0; b < d.Bt; ++b) {
    out[b] = conv_silu_forward(v[b], w, bias);
    const auto g = conv_silu_backward(v[b], w, bias, d_out[b]);
    d_v[b] = g.d_v, d_w += g.d_w, d_b += g.d_b;
    const MatD pre = causal_conv(v[b], w, bias);
    const MatD e_pre = (W + 1) * kUnit * causal_conv<double>(v[b].cwiseAbs(), w.cwiseAbs(), bias.cwiseAbs());
    e_out[b] = (1.1 * e_pre + 4 * kUnit * out[b].cwiseAbs()).array() + kTiny;  // |SiLU'| <= 1.1, SiLU's rounding
    const MatD d_pre = d_out[b].cwiseProduct(pre.unaryExpr([](double s) { return silu_grad(s); }));
    const MatD e_dpre = d_out[b].cwiseAbs().cwiseProduct(((0.5 * e_pre).array() + kTiny).matrix()) +
                        4 * kUnit * d_pre.cwiseAbs();  // |SiLU''| <= 0.5
    const auto mag_v = causal_conv_backward<double>(v[b].cwiseAbs(), w.cwiseAbs(), e_dpre + W * kUnit * d_pre.cwiseAbs());
    const auto mag_p = causal_conv_backward<double>(v[b].cwiseAbs(), w.cwiseAbs(), e_dpre + n * kUnit * d_pre.cwiseAbs());
    e_dv[b] = mag_v.d_v, e_dw += mag_p.d_w, e_db += mag_p.d_b;
  }
  const auto got = [&](const DeviceBuffer<float>& buf, std::int64_t row_stride) {
    return stacked(buf.download(), d.Bt, d.T, C, row_stride);
  };
  return {compare("out", got(out_dev, C), stack(out), bounds::kCudaFp32Forward, rounding_floor(stack(e_out))),
          compare("d_v", got(d_v_dev, C), stack(d_v), bounds::kCudaFp32Gradient, rounding_floor(stack(e_dv))),
          compare("d_w", as_matrix(d_w_dev.download(), C, W), d_w, bounds::kCudaFp32Gradient, rounding_floor(e_dw)),
          compare("d_b", as_matrix(d_b_dev.download(), C, 1), d_b, bounds::kCudaFp32Gradient, rounding_floor(e_db))};
}

// ---- step size (E3) -------------------------------------------------------------------------------------
std::vector<Comparison> step_size_case(gpu::Backend backend) {
  const Draws d = draw_shape();
  const int H = draw("H", rc::gen::inRange(1, 50));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  std::vector<MatD> raw(d.Bt), d_dt(d.Bt);
  for (int b = 0; b < d.Bt; ++b) raw[b] = round_to_float(rnd.mat<double>(d.T, H, -3 * d.scale, 3 * d.scale));
  const Vec<double> dt_bias = round_to_float(rnd.mat<double>(H, 1, -2, 0)), A_log = round_to_float(rnd.mat<double>(H, 1));
  for (int b = 0; b < d.Bt; ++b) d_dt[b] = round_to_float(rnd.mat<double>(d.T, H));
  const Vec<double> d_A = round_to_float(rnd.mat<double>(H, 1));

  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::StepSizeShape shape{d.Bt, d.T, H};
  const Packed raw_packed = pack(raw, d.pad), d_dt_packed = pack(d_dt, 0);
  DeviceBuffer<float> raw_dev(dev, raw_packed.values), bias_dev(dev, floats(dt_bias)), A_log_dev(dev, floats(A_log)),
      d_dt_dev(dev, d_dt_packed.values), d_A_dev(dev, floats(d_A)), dt_dev(dev, d_dt_packed.values.size()),
      A_dev(dev, H), d_raw_dev(dev, d_dt_packed.values.size()), d_bias_dev(dev, H), d_A_log_dev(dev, H),
      ws_dev(dev, gpu::step_size_plan(shape).workspace);
  const gpu::View<const float> raw_view = raw_dev.view(raw_packed.batch_stride, raw_packed.row_stride);
  gpu::step_size_forward(stream, {shape, raw_view, bias_dev.view(), A_log_dev.view(), dt_dev.view(), A_dev.view()});
  gpu::step_size_backward(stream, {shape, raw_view, bias_dev.view(), A_log_dev.view(), d_dt_dev.view(), d_A_dev.view(),
                                   d_raw_dev.view(), d_bias_dev.view(), d_A_log_dev.view(), ws_dev.view()});
  stream.synchronize();

  std::vector<MatD> dt(d.Bt), d_raw(d.Bt), e_dt(d.Bt), e_raw(d.Bt);
  Vec<double> d_bias = Vec<double>::Zero(H), e_bias = Vec<double>::Zero(H);
  for (int b = 0; b < d.Bt; ++b) {
    dt[b] = step_size(raw[b], dt_bias);
    const auto g = step_size_backward(raw[b], dt_bias, d_dt[b]);
    d_raw[b] = g.d_dt_raw, d_bias += g.d_dt_bias;
    // dt_raw + dt_bias rounds once (softplus' <= 1), softplus a few times; d_dt_bias sums Bt·T + 1 terms.
    e_dt[b] = kUnit * (raw[b].cwiseAbs().rowwise() + dt_bias.cwiseAbs().transpose()) + 4 * kUnit * dt[b];
    e_raw[b] = 4 * kUnit * g.d_dt_raw.cwiseAbs() + kTiny * d_dt[b].cwiseAbs();  // sigmoid's rounding and range
    e_bias += (e_raw[b] + (d.Bt * d.T + 1) * kUnit * g.d_dt_raw.cwiseAbs()).colwise().sum().transpose();
  }
  const Vec<double> A = decay_rate(A_log), d_A_log = decay_rate_backward(A_log, d_A);
  auto got = [&](const DeviceBuffer<float>& buf) { return stacked(buf.download(), d.Bt, d.T, H, H); };
  return {compare("dt", got(dt_dev), stack(dt), bounds::kCudaFp32Forward, rounding_floor(stack(e_dt))),
          compare("A", as_matrix(A_dev.download(), H, 1), A, bounds::kCudaFp32Forward),
          compare("d_dt_raw", got(d_raw_dev), stack(d_raw), bounds::kCudaFp32Gradient, rounding_floor(stack(e_raw))),
          compare("d_dt_bias", as_matrix(d_bias_dev.download(), H, 1), d_bias, bounds::kCudaFp32Gradient, rounding_floor(e_bias)),
          compare("d_A_log", as_matrix(d_A_log_dev.download(), H, 1), d_A_log, bounds::kCudaFp32Gradient)};
}

}  // namespace

std::vector<Check> kernel_checks(gpu::Backend backend) {
  const std::string prefix = std::string(gpu::to_string(backend)) + ".";
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  std::vector<Check> checks{
      {prefix + "conv", "causal conv + SiLU kernels (out, d_v, d_w, d_b)" + where + " = double reference (fp32 bounds)", 60,
       [backend] { return conv_case(backend); }},
      {prefix + "step_size", "step size kernels (dt, A, d_dt_raw, d_dt_bias, d_A_log)" + where + " = double reference (fp32 bounds)", 60,
       [backend] { return step_size_case(backend); }},
  };
  for (auto family : {ssm_kernel_checks, attention_kernel_checks, norm_kernel_checks, projection_kernel_checks,
                      mixer_kernel_checks, inference_kernel_checks})
    for (Check& c : family(backend)) checks.push_back(std::move(c));
  return checks;
}

}  // namespace transmamba
