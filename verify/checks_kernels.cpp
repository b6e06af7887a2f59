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
//
// The bf16 checks ("<backend>.conv.bf16", ".step_size.bf16") draw the same cases, the activations rounded to bf16,
// and compare each tensor with compare_to_baseline (DESIGN.md section 7's bf16 rule): the truth is the double
// reference on those inputs, the baseline the float reference on them, rounded to bf16 where the kernels store bf16.
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
// The draws of both conv checks: v and d_out are activations (bf16 in the bf16 check), w and b parameters (fp32).
struct ConvInputs {
  Draws d;
  int C, W;
  std::vector<MatD> v, d_out;  // Bt x [T, C]
  MatD w;                      // [C, W]
  Vec<double> bias;            // [C]
};
ConvInputs draw_conv(bool bf16) {
  ConvInputs in{draw_shape()};
  const Draws& d = in.d;
  in.C = draw("C", rc::gen::inRange(1, 70)), in.W = draw("W", rc::gen::oneOf(rc::gen::inRange(1, 6), rc::gen::just(gpu::kConvMaxWidth)));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  in.v.resize(d.Bt), in.d_out.resize(d.Bt);
  for (int b = 0; b < d.Bt; ++b) in.v[b] = round_activation(rnd.mat<double>(d.T, in.C, -d.scale, d.scale), bf16);
  in.w = round_to_float(rnd.mat<double>(in.C, in.W));
  in.bias = round_to_float(rnd.mat<double>(in.C, 1, -0.5, 0.5));
  for (int b = 0; b < d.Bt; ++b) in.d_out[b] = round_activation(rnd.mat<double>(d.T, in.C), bf16);
  return in;
}

// What the kernels, or a reference, give: out, d_v stacked [Bt·T, C]; d_w [C, W]; d_b [C, 1].
struct ConvOutputs {
  MatD out, d_v, d_w, d_b;
};

// The kernels of storage type S forward and backward through the host API (v a column block when padded).
template <class S>
ConvOutputs run_conv(gpu::Backend backend, const ConvInputs& in) {
  const Draws& d = in.d;
  const int C = in.C, W = in.W;
  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::ConvShape shape{d.Bt, d.T, C, W};
  const PackedAs<S> v_packed = pack<S>(in.v, d.pad), d_out_packed = pack<S>(in.d_out, 0);
  const std::size_t values = d_out_packed.values.size();
  DeviceBuffer<S> v_dev(dev, v_packed.values), d_out_dev(dev, d_out_packed.values), out_dev(dev, values), d_v_dev(dev, values);
  DeviceBuffer<float> w_dev(dev, floats(in.w)), b_dev(dev, floats(in.bias)), d_w_dev(dev, std::size_t(C) * W),
      d_b_dev(dev, C), ws_dev(dev, gpu::conv_plan(shape).workspace);
  const gpu::View<const S> v_view = v_dev.view(v_packed.batch_stride, v_packed.row_stride);
  gpu::conv_silu_forward(stream, gpu::ConvForwardT<S>{shape, v_view, w_dev.view(), b_dev.view(), out_dev.view()});
  gpu::conv_silu_backward(stream, gpu::ConvBackwardT<S>{shape, v_view, w_dev.view(), b_dev.view(), d_out_dev.view(),
                                                        d_v_dev.view(), d_w_dev.view(), d_b_dev.view(), ws_dev.view()});
  stream.synchronize();
  return {stacked(out_dev.download(), d.Bt, d.T, C, C), stacked(d_v_dev.download(), d.Bt, d.T, C, C),
          as_matrix(d_w_dev.download(), C, W), as_matrix(d_b_dev.download(), C, 1)};
}

// reference/conv.hpp in scalar T (double: the truth; float: the bf16 check's baseline), sequence by sequence.
template <class T>
ConvOutputs conv_reference(const ConvInputs& in) {
  std::vector<MatD> out(in.d.Bt), d_v(in.d.Bt);
  const Mat<T> w = in.w.cast<T>();
  const Vec<T> bias = in.bias.cast<T>();
  Mat<T> d_w = Mat<T>::Zero(in.C, in.W);
  Vec<T> d_b = Vec<T>::Zero(in.C);
  for (int b = 0; b < in.d.Bt; ++b) {
    const Mat<T> v = in.v[b].cast<T>();
    out[b] = conv_silu_forward<T>(v, w, bias).template cast<double>();
    const ConvGrads<T> g = conv_silu_backward<T>(v, w, bias, in.d_out[b].cast<T>());
    d_v[b] = g.d_v.template cast<double>(), d_w += g.d_w, d_b += g.d_b;
  }
  return {stack(out), stack(d_v), d_w.template cast<double>(), d_b.template cast<double>()};
}

std::vector<Comparison> conv_case(gpu::Backend backend) {
  const ConvInputs in = draw_conv(false);
  const Draws& d = in.d;
  const int C = in.C, W = in.W;
  const std::vector<MatD>&v = in.v, &d_out = in.d_out;
  const MatD& w = in.w;
  const Vec<double>& bias = in.bias;
  const ConvOutputs got = run_conv<float>(backend, in), truth = conv_reference<double>(in);

  // The rounding floor from the magnitudes of every sum (reference on absolute values).
  std::vector<MatD> e_out(d.Bt), e_dv(d.Bt);
  MatD e_dw = MatD::Zero(C, W);
  Vec<double> e_db = Vec<double>::Zero(C);
  const int n = d.Bt * d.T + 1;  // terms of a parameter gradient's sum, tile partials included
  for (int b = 0; b < d.Bt; ++b) {
    const MatD pre = causal_conv(v[b], w, bias);
    const MatD e_pre = (W + 1) * kUnit * causal_conv<double>(v[b].cwiseAbs(), w.cwiseAbs(), bias.cwiseAbs());
    const MatD out_b = truth.out.middleRows(std::int64_t(b) * d.T, d.T);
    e_out[b] = (1.1 * e_pre + 4 * kUnit * out_b.cwiseAbs()).array() + kTiny;  // |SiLU'| <= 1.1, SiLU's rounding
    const MatD d_pre = d_out[b].cwiseProduct(pre.unaryExpr([](double s) { return silu_grad(s); }));
    const MatD e_dpre = d_out[b].cwiseAbs().cwiseProduct(((0.5 * e_pre).array() + kTiny).matrix()) +
                        4 * kUnit * d_pre.cwiseAbs();  // |SiLU''| <= 0.5
    const auto mag_v = causal_conv_backward<double>(v[b].cwiseAbs(), w.cwiseAbs(), e_dpre + W * kUnit * d_pre.cwiseAbs());
    const auto mag_p = causal_conv_backward<double>(v[b].cwiseAbs(), w.cwiseAbs(), e_dpre + n * kUnit * d_pre.cwiseAbs());
    e_dv[b] = mag_v.d_v, e_dw += mag_p.d_w, e_db += mag_p.d_b;
  }
  return {compare("out", got.out, truth.out, bounds::kCudaFp32Forward, rounding_floor(stack(e_out))),
          compare("d_v", got.d_v, truth.d_v, bounds::kCudaFp32Gradient, rounding_floor(stack(e_dv))),
          compare("d_w", got.d_w, truth.d_w, bounds::kCudaFp32Gradient, rounding_floor(e_dw)),
          compare("d_b", got.d_b, truth.d_b, bounds::kCudaFp32Gradient, rounding_floor(e_db))};
}

// The bf16 kernels (DESIGN.md section 7): against the truth within bf16_bound of the float reference on the same
// inputs, with out and d_v rounded to bf16 where the kernels store them.
std::vector<Comparison> conv_bf16_case(gpu::Backend backend) {
  const ConvInputs in = draw_conv(true);
  const ConvOutputs got = run_conv<gpu::Bf16>(backend, in), truth = conv_reference<double>(in);
  const ConvOutputs base = conv_reference<float>(in);
  return {compare_bf16("out", got.out, truth.out, round_to_bf16(base.out)),
          compare_bf16("d_v", got.d_v, truth.d_v, round_to_bf16(base.d_v)),
          compare_bf16("d_w", got.d_w, truth.d_w, base.d_w),
          compare_bf16("d_b", got.d_b, truth.d_b, base.d_b)};
}

// ---- step size (E3) -------------------------------------------------------------------------------------
// The draws of both step size checks: dt_raw is an activation (bf16 in the bf16 check); d_dt, d_A and the
// parameters fp32.
struct StepInputs {
  Draws d;
  int H;
  std::vector<MatD> raw, d_dt;  // Bt x [T, H]
  Vec<double> dt_bias, A_log, d_A;
};
StepInputs draw_step_size(bool bf16) {
  StepInputs in{draw_shape()};
  const Draws& d = in.d;
  const int H = in.H = draw("H", rc::gen::inRange(1, 50));
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  in.raw.resize(d.Bt), in.d_dt.resize(d.Bt);
  for (int b = 0; b < d.Bt; ++b) in.raw[b] = round_activation(rnd.mat<double>(d.T, H, -3 * d.scale, 3 * d.scale), bf16);
  in.dt_bias = round_to_float(rnd.mat<double>(H, 1, -2, 0)), in.A_log = round_to_float(rnd.mat<double>(H, 1));
  for (int b = 0; b < d.Bt; ++b) in.d_dt[b] = round_to_float(rnd.mat<double>(d.T, H));
  in.d_A = round_to_float(rnd.mat<double>(H, 1));
  return in;
}

// dt, d_dt_raw stacked [Bt·T, H]; A, d_dt_bias, d_A_log [H, 1].
struct StepOutputs {
  MatD dt, A, d_raw, d_bias, d_A_log;
};

template <class S>
StepOutputs run_step_size(gpu::Backend backend, const StepInputs& in) {
  const Draws& d = in.d;
  const int H = in.H;
  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::StepSizeShape shape{d.Bt, d.T, H};
  const PackedAs<S> raw_packed = pack<S>(in.raw, d.pad);
  const Packed d_dt_packed = pack(in.d_dt, 0);
  const std::size_t values = d_dt_packed.values.size();
  DeviceBuffer<S> raw_dev(dev, raw_packed.values), d_raw_dev(dev, values);
  DeviceBuffer<float> bias_dev(dev, floats(in.dt_bias)), A_log_dev(dev, floats(in.A_log)), d_dt_dev(dev, d_dt_packed.values),
      d_A_dev(dev, floats(in.d_A)), dt_dev(dev, values), A_dev(dev, H), d_bias_dev(dev, H), d_A_log_dev(dev, H),
      ws_dev(dev, gpu::step_size_plan(shape).workspace);
  const gpu::View<const S> raw_view = raw_dev.view(raw_packed.batch_stride, raw_packed.row_stride);
  gpu::step_size_forward(stream, gpu::StepSizeForwardT<S>{shape, raw_view, bias_dev.view(), A_log_dev.view(), dt_dev.view(), A_dev.view()});
  gpu::step_size_backward(stream, gpu::StepSizeBackwardT<S>{shape, raw_view, bias_dev.view(), A_log_dev.view(), d_dt_dev.view(),
                                                            d_A_dev.view(), d_raw_dev.view(), d_bias_dev.view(),
                                                            d_A_log_dev.view(), ws_dev.view()});
  stream.synchronize();
  return {stacked(dt_dev.download(), d.Bt, d.T, H, H), as_matrix(A_dev.download(), H, 1),
          stacked(d_raw_dev.download(), d.Bt, d.T, H, H), as_matrix(d_bias_dev.download(), H, 1),
          as_matrix(d_A_log_dev.download(), H, 1)};
}

// reference/step_size.hpp in scalar T, sequence by sequence.
template <class T>
StepOutputs step_size_reference(const StepInputs& in) {
  std::vector<MatD> dt(in.d.Bt), d_raw(in.d.Bt);
  const Vec<T> dt_bias = in.dt_bias.cast<T>(), A_log = in.A_log.cast<T>();
  Vec<T> d_bias = Vec<T>::Zero(in.H);
  for (int b = 0; b < in.d.Bt; ++b) {
    const Mat<T> raw = in.raw[b].cast<T>();
    dt[b] = step_size<T>(raw, dt_bias).template cast<double>();
    const StepSizeGrads<T> g = step_size_backward<T>(raw, dt_bias, in.d_dt[b].cast<T>());
    d_raw[b] = g.d_dt_raw.template cast<double>(), d_bias += g.d_dt_bias;
  }
  return {stack(dt), decay_rate<T>(A_log).template cast<double>(), stack(d_raw), d_bias.template cast<double>(),
          decay_rate_backward<T>(A_log, in.d_A.cast<T>()).template cast<double>()};
}

std::vector<Comparison> step_size_case(gpu::Backend backend) {
  const StepInputs in = draw_step_size(false);
  const Draws& d = in.d;
  const StepOutputs got = run_step_size<float>(backend, in), truth = step_size_reference<double>(in);

  std::vector<MatD> e_dt(d.Bt), e_raw(d.Bt);
  Vec<double> e_bias = Vec<double>::Zero(in.H);
  for (int b = 0; b < d.Bt; ++b) {
    const MatD& raw = in.raw[b];
    const MatD dt = truth.dt.middleRows(std::int64_t(b) * d.T, d.T), d_raw = truth.d_raw.middleRows(std::int64_t(b) * d.T, d.T);
    // dt_raw + dt_bias rounds once (softplus' <= 1), softplus a few times; d_dt_bias sums Bt·T + 1 terms.
    e_dt[b] = kUnit * (raw.cwiseAbs().rowwise() + in.dt_bias.cwiseAbs().transpose()) + 4 * kUnit * dt;
    e_raw[b] = 4 * kUnit * d_raw.cwiseAbs() + kTiny * in.d_dt[b].cwiseAbs();  // sigmoid's rounding and range
    e_bias += (e_raw[b] + (d.Bt * d.T + 1) * kUnit * d_raw.cwiseAbs()).colwise().sum().transpose();
  }
  return {compare("dt", got.dt, truth.dt, bounds::kCudaFp32Forward, rounding_floor(stack(e_dt))),
          compare("A", got.A, truth.A, bounds::kCudaFp32Forward),
          compare("d_dt_raw", got.d_raw, truth.d_raw, bounds::kCudaFp32Gradient, rounding_floor(stack(e_raw))),
          compare("d_dt_bias", got.d_bias, truth.d_bias, bounds::kCudaFp32Gradient, rounding_floor(e_bias)),
          compare("d_A_log", got.d_A_log, truth.d_A_log, bounds::kCudaFp32Gradient)};
}

// The bf16 kernels: dt_raw bf16 in, d_dt_raw bf16 out (the baseline's rounded there); the rest fp32.
std::vector<Comparison> step_size_bf16_case(gpu::Backend backend) {
  const StepInputs in = draw_step_size(true);
  const StepOutputs got = run_step_size<gpu::Bf16>(backend, in), truth = step_size_reference<double>(in);
  const StepOutputs base = step_size_reference<float>(in);
  return {compare_bf16("dt", got.dt, truth.dt, base.dt), compare_bf16("A", got.A, truth.A, base.A),
          compare_bf16("d_dt_raw", got.d_raw, truth.d_raw, round_to_bf16(base.d_raw)),
          compare_bf16("d_dt_bias", got.d_bias, truth.d_bias, base.d_bias),
          compare_bf16("d_A_log", got.d_A_log, truth.d_A_log, base.d_A_log)};
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
      {prefix + "conv.bf16", "bf16 causal conv + SiLU kernels (out, d_v, d_w, d_b)" + where + " = double reference (bf16 bounds)", 60,
       [backend] { return conv_bf16_case(backend); }},
      {prefix + "step_size.bf16", "bf16 step size kernels (dt, A, d_dt_raw, d_dt_bias, d_A_log)" + where + " = double reference (bf16 bounds)", 60,
       [backend] { return step_size_bf16_case(backend); }},
  };
  for (auto family : {ssm_kernel_checks, attention_kernel_checks, norm_kernel_checks, projection_kernel_checks,
                      mixer_kernel_checks, inference_kernel_checks})
    for (Check& c : family(backend)) checks.push_back(std::move(c));
  return checks;
}

}  // namespace transmamba
