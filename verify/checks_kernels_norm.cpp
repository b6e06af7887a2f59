// Kernel check of the grouped RMSNorm (E7), "emulated.norm" / "cuda.norm": cuda/norm.hpp forward and
// backward, gated and ungated, against reference/norm.hpp in double on the same fp32 inputs.
//
// Shapes: Bt in {1, 3}; rows T = 0 (nothing but d_w = 0), 1, and across the backward's row tiles; groups of
// 1 channel (G = E), 2 (G = E/2), a few, a warp's worth and more (up to 3072, with E = 3072, G = 8 as in
// the paper now and then). Values: y near zero (mean g² below eps), of order 1 and 1e3; gates z up to 1e3
// (SiLU(z) = 0 in fp32 below -88.7); every input a column block of a wider matrix with NaN between, every
// output too (the NaN between must stay: a kernel writing outside its view fails "padding"); d_w replaced or
// accumulated (NormBackward::accumulate_d_w).
//
// Bounds: DESIGN.md section 7 (1e-5 forward, 1e-4 gradients, relative norm), or the fp32 rounding floor
// (kernel_case.hpp) where a tensor is a sum that cancels (d_w sums every row; d_y, d_z hold the small
// components e[c]·A_c - g[c]·B_c of cuda/norm.cu) or reaches below fp32's range (kTiny). The floors follow
// the kernel's error model: relative errors of a few ulps per rounding, the sums of a group in `depth`
// sequential additions (own values, the butterfly, the warps), d_w in Bt·T + 2 per channel.
// The double reference's backward is O(n²) per group and the emulation runs every thread: T is capped by both
// (kRefBudget, kEmulationBudget), so that the 60 cases take well under a second.
//
// "<backend>.norm.bf16": the same draws, y, z, d_out rounded to bf16, through the bf16 kernels; each tensor
// against the truth within bf16_bound of the float reference's error (compare_to_baseline; out, d_y, d_z of the
// baseline rounded to bf16 as the kernels store them, d_w fp32), and the same check of the padding.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cuda/norm.hpp"
#include "reference/norm.hpp"
#include "verify/bounds.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/generators.hpp"
#include "verify/kernel_case.hpp"

namespace transmamba {

namespace {

using namespace kernel_case;

// Per case: the reference backward's inner loop count Bt·T·E·n, and the emulated threads times their switches
// (the forward's lanes and the backward's blocks, whose idle segments run too); the rows T are capped by both.
constexpr double kRefBudget = 4e6, kEmulationBudget = 6e4;

// A [Bt·T, cols] buffer of storage type S for an output with row padding `pad`, all NaN, and how many of its
// padding values are no longer NaN after the kernels ran.
template <class S>
std::vector<S> nan_buffer(int Bt, int T, int cols, int pad) {
  return std::vector<S>(std::size_t(Bt) * T * (cols + pad), gpu::from_float<S>(std::numeric_limits<float>::quiet_NaN()));
}
template <class S>
int padding_written(const std::vector<S>& v, int cols, int pad) {
  int n = 0;
  const std::size_t stride = cols + pad;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (i % stride >= std::size_t(cols) && !std::isnan(gpu::to_float(v[i]))) ++n;
  return n;
}

// The draws of both norm checks: y, z, d_out are activations (bf16 in the bf16 check); w and d_w fp32.
struct NormInputs {
  int Bt, T, E, G, n;
  gpu::NormPlan plan;  // of [Bt, 1, E, G]: lanes, values per thread, segments (T aside)
  bool gated, accumulate;
  int pad, z_pad, out_pad;
  std::vector<MatD> y, z, d_out;  // Bt x [T, E]
  Vec<double> w, d_w_old;         // [E]; d_w_old: what d_w holds before (0 unless accumulating)
};
NormInputs draw_norm(bool bf16) {
  using rc::gen::element;
  using rc::gen::inRange;
  NormInputs in;
  const int Bt = in.Bt = draw("Bt", element(1, 3));
  const int n = in.n = draw("group size n", rc::gen::weightedOneOf<int>({{3, element(1, 1, 2)},  // G = E, G = E/2
                                                                          {2, inRange(3, 9)},
                                                                          {3, inRange(9, 80)},
                                                                          {2, element(96, 128, 200, 384, 384)},
                                                                          {1, element(520, 1000, 1536, 3072, 4104, 6200)}}));  // K = 12, 16
  const int G = in.G = draw("G", n > 4096 ? rc::gen::just(1) : n >= 512 ? element(1, 2) : n >= 96 ? element(1, 3, 8, 8) : element(1, 2, 5, 8, 24));
  const int E = in.E = n * G;
  const gpu::NormPlan plan = in.plan = gpu::norm_plan({Bt, 1, E, G});
  const double steps = std::log2(double(std::min(plan.lanes, 32))) + 1;  // an emulated thread's switches per row
  const double emulated_per_row = Bt * (double(G) * plan.lanes * steps + double(plan.backward.grid.x) * plan.backward.block.x * 2 * steps);
  const int T_cap = int(std::clamp(std::min(kRefBudget / (double(Bt) * E * n), kEmulationBudget / emulated_per_row), 1.0, 70.0));
  const int T = in.T = draw("T", rc::gen::weightedOneOf<int>({{1, rc::gen::just(0)},
                                                              {2, rc::gen::just(1)},
                                                              {4, inRange(1, T_cap + 1)},
                                                              {3, inRange(std::min(gpu::kNormTileRows + 1, T_cap), T_cap + 1)}}));
  in.gated = draw("gated", rc::gen::arbitrary<bool>());
  const double y_scale = draw("y scale", element(1e-3, 1.0, 1.0, 1e3));
  // |y| >= scale/4: no channel near 0, whose large d_g = r·e (eps dominates) would hide in the norm the
  // errors of the others (a one-channel group's d_g = r³·eps·e, all cancellation in the direct formula).
  const bool y_away = draw("y away from zero", rc::gen::weightedElement<bool>({{1, false}, {2, true}}));
  const double z_scale = draw("z scale", element(1.0, 4.0, 1e3));
  in.pad = draw("input row padding", element(0, 0, 3)), in.z_pad = draw("z row padding (zxbcdt)", element(0, 7));
  in.out_pad = draw("output row padding", element(0, 2));
  in.accumulate = draw("accumulate d_w", rc::gen::arbitrary<bool>());
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));

  in.y.resize(Bt), in.z.resize(Bt), in.d_out.resize(Bt);
  for (int b = 0; b < Bt; ++b) {
    in.y[b] = round_activation(rnd.mat<double>(T, E, -y_scale, y_scale).unaryExpr([&](double v) {
      return y_away ? std::copysign(y_scale / 4, v) + 0.75 * v : v;
    }), bf16);
    in.z[b] = round_activation(rnd.mat<double>(T, E, -z_scale, z_scale), bf16);
    in.d_out[b] = round_activation(rnd.mat<double>(T, E), bf16);
  }
  in.w = round_to_float(rnd.mat<double>(E, 1, -1.5, 1.5));
  in.d_w_old = in.accumulate ? Vec<double>(round_to_float(rnd.mat<double>(E, 1))) : Vec<double>::Zero(E);
  return in;
}

// What the kernels, or a reference, give: out, d_y, d_z stacked [Bt·T, E] (d_z only when gated); d_w [E, 1]; and
// (kernels) how many values were written outside the output views.
struct NormOutputs {
  MatD out, d_y, d_z, d_w;
  int outside = 0;
};

// The kernels of storage type S forward and backward through the host API, every input and output a column
// block of a wider matrix with NaN between.
template <class S>
NormOutputs run_norm(gpu::Backend backend, const NormInputs& in) {
  const int Bt = in.Bt, T = in.T, E = in.E, out_pad = in.out_pad;
  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::NormShape shape{Bt, T, E, in.G};
  const PackedAs<S> y_p = pack<S>(in.y, in.pad), z_p = pack<S>(in.z, in.z_pad), d_out_p = pack<S>(in.d_out, in.pad);
  const std::int64_t o_row = E + out_pad, o_batch = std::int64_t(T) * o_row;
  DeviceBuffer<S> y_dev(dev, y_p.values), z_dev(dev, z_p.values), d_out_dev(dev, d_out_p.values),
      out_dev(dev, nan_buffer<S>(Bt, T, E, out_pad)), d_y_dev(dev, nan_buffer<S>(Bt, T, E, out_pad)),
      d_z_dev(dev, nan_buffer<S>(Bt, T, E, out_pad));
  DeviceBuffer<float> w_dev(dev, floats(in.w)), d_w_dev(dev, floats(in.d_w_old)), ws_dev(dev, gpu::norm_plan(shape).workspace);
  const gpu::View<const S> y_v = y_dev.view(y_p.batch_stride, y_p.row_stride),
                           z_v = in.gated ? gpu::View<const S>(z_dev.view(z_p.batch_stride, z_p.row_stride)) : gpu::View<const S>{};
  gpu::rmsnorm_forward(stream, gpu::NormForwardT<S>{shape, y_v, z_v, w_dev.view(), out_dev.view(o_batch, o_row)});
  gpu::NormBackwardT<S> bwd{shape, y_v, z_v, w_dev.view(), d_out_dev.view(d_out_p.batch_stride, d_out_p.row_stride),
                            d_y_dev.view(o_batch, o_row), in.gated ? d_z_dev.view(o_batch, o_row) : gpu::View<S>{},
                            d_w_dev.view(), in.accumulate, ws_dev.view()};
  gpu::rmsnorm_backward(stream, bwd);
  stream.synchronize();

  const auto got = [&](const DeviceBuffer<S>& buf) { return stacked(buf.download(), Bt, T, E, o_row); };
  NormOutputs o{got(out_dev), got(d_y_dev), in.gated ? got(d_z_dev) : MatD(), as_matrix(d_w_dev.download(), E, 1)};
  // Outputs are column blocks: the NaN between them must stay (and d_z untouched when ungated).
  o.outside = padding_written(out_dev.download(), E, out_pad) + padding_written(d_y_dev.download(), E, out_pad) +
              padding_written(d_z_dev.download(), E, out_pad);
  if (!in.gated)
    for (S v : d_z_dev.download()) o.outside += !std::isnan(gpu::to_float(v));
  return o;
}

// reference/norm.hpp in scalar T (double: the truth; float: the bf16 check's baseline), sequence by sequence.
template <class T>
NormOutputs norm_reference(const NormInputs& in) {
  std::vector<MatD> out(in.Bt), d_y(in.Bt), d_z(in.Bt);
  const Vec<T> w = in.w.cast<T>();
  Vec<T> d_w = in.d_w_old.cast<T>();
  for (int b = 0; b < in.Bt; ++b) {
    const Mat<T> y = in.y[b].cast<T>(), z = in.z[b].cast<T>(), d_out = in.d_out[b].cast<T>();
    const Mat<T>* gate = in.gated ? &z : nullptr;
    out[b] = rmsnorm_forward<T>(y, w, in.G, gate).template cast<double>();
    const NormGrads<T> grads = rmsnorm_backward<T>(y, w, in.G, gate, d_out);
    d_y[b] = grads.d_v.template cast<double>(), d_w += grads.d_w;
    if (in.gated) d_z[b] = grads.d_z.template cast<double>();
  }
  return {stack(out), stack(d_y), in.gated ? stack(d_z) : MatD(), d_w.template cast<double>()};
}

Comparison outside_views(const NormOutputs& got) {
  return compare("values written outside the views", MatD::Constant(1, 1, got.outside), MatD::Zero(1, 1), 0.0);
}

std::vector<Comparison> norm_case(gpu::Backend backend) {
  const NormInputs in = draw_norm(false);
  const int Bt = in.Bt, T = in.T, E = in.E, G = in.G, n = in.n;
  const gpu::NormPlan& plan = in.plan;
  const bool gated = in.gated;
  const std::vector<MatD>&y = in.y, &z = in.z, &d_out = in.d_out;
  const Vec<double>& w = in.w;
  const NormOutputs got = run_norm<float>(backend, in), truth = norm_reference<double>(in);

  // The error model's magnitudes per element (see the top of the file).
  const double u = kUnit;
  const int in_warp = std::min(plan.lanes, 32);
  const double depth = plan.per_thread + std::log2(double(in_warp)) + std::max(plan.lanes / 32, 1) + 12;
  const double rel_r = (depth / 2 + 3) * u;  // r = 1 / sqrt(S/n + eps): half the sum's error, sqrt, division
  std::vector<MatD> e_out(Bt), e_dy(Bt), e_dz(Bt);
  Vec<double> e_dw = 2 * u * in.d_w_old.cwiseAbs();
  for (int b = 0; b < Bt; ++b) {
    const auto out = [&](int t, int c) { return truth.out(std::int64_t(b) * T + t, c); };
    const auto d_y = [&](int t, int c) { return truth.d_y(std::int64_t(b) * T + t, c); };
    e_out[b] = e_dy[b] = e_dz[b] = MatD::Zero(T, E);
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < G; ++k) {
        const int c0 = k * n;
        double S = 0, S_ge = 0, ge_abs = 0;
        Eigen::VectorXd g(n), e(n), tiny_g(n);  // tiny_g: what fp32's range may take from g (SiLU(z) -> 0)
        for (int i = 0; i < n; ++i) {
          const double yv = y[b](t, c0 + i), zv = z[b](t, c0 + i);
          g(i) = gated ? yv * silu(zv) : yv;
          tiny_g(i) = gated ? kTiny * std::abs(yv) * (1 + std::abs(zv)) : 0.0;
          e(i) = d_out[b](t, c0 + i) * w(c0 + i);
          S += g(i) * g(i), S_ge += g(i) * e(i), ge_abs += std::abs(g(i) * e(i));
        }
        const double r = 1 / std::sqrt(S / n + kNormEps), r3 = r * r * r;
        for (int i = 0; i < n; ++i) {
          const int c = c0 + i;
          const double yv = y[b](t, c), zv = z[b](t, c), dg_rel = 3 * rel_r + 12 * u;
          e_out[b](t, c) = (2 * rel_r + 12 * u) * std::abs(out(t, c)) + tiny_g(i) * r * std::abs(w(c));
          // Magnitudes only (cancellation in them does not matter): A_c, Σ_{k≠c} |g[k]·e[k]|, |d_g[c]|.
          const double A = std::max(S - g(i) * g(i), 0.0), B_abs = std::max(ge_abs - std::abs(g(i) * e(i)), 0.0);
          const double dg_abs = std::abs(r * e(i) - g(i) * r3 * S_ge / n);
          const double e_dg = r3 * (depth * u * (std::abs(e(i)) * A + std::abs(g(i)) * B_abs) / n +
                                    4 * u * kNormEps * std::abs(e(i))) + dg_rel * dg_abs;
          const double d_w_term = std::abs(d_out[b](t, c) * g(i) * r);
          e_dw(c) += (Bt * T + 2 + 2 * rel_r / u + 12) * u * d_w_term + tiny_g(i) * r * std::abs(d_out[b](t, c));
          if (!gated) {
            e_dy[b](t, c) = e_dg;
            continue;
          }
          const double s = sigmoid(zv);
          e_dy[b](t, c) = e_dg * std::abs(silu(zv)) + 6 * u * std::abs(d_y(t, c)) + kTiny * dg_abs * (1 + std::abs(zv));
          e_dz[b](t, c) = (e_dg + 2 * u * dg_abs) * std::abs(yv) * (std::abs(silu_grad(zv)) + 8 * u * s * (1 + std::abs(zv))) +
                          kTiny * dg_abs * std::abs(yv) * (1 + std::abs(zv));
        }
      }
  }

  std::vector<Comparison> result{
      compare("out", got.out, truth.out, bounds::kCudaFp32Forward, rounding_floor(stack(e_out))),
      compare("d_y", got.d_y, truth.d_y, bounds::kCudaFp32Gradient, rounding_floor(stack(e_dy))),
      compare("d_w", got.d_w, truth.d_w, bounds::kCudaFp32Gradient, rounding_floor(e_dw))};
  if (gated) result.push_back(compare("d_z", got.d_z, truth.d_z, bounds::kCudaFp32Gradient, rounding_floor(stack(e_dz))));
  result.push_back(outside_views(got));
  return result;
}

// The bf16 kernels (DESIGN.md section 7): against the truth within bf16_bound of the float reference on the same
// bf16 inputs, its out, d_y, d_z rounded to bf16 as the kernels store them (d_w stays fp32).
std::vector<Comparison> norm_bf16_case(gpu::Backend backend) {
  const NormInputs in = draw_norm(true);
  const NormOutputs got = run_norm<gpu::Bf16>(backend, in), truth = norm_reference<double>(in);
  const NormOutputs base = norm_reference<float>(in);
  std::vector<Comparison> result{compare_bf16("out", got.out, truth.out, round_to_bf16(base.out)),
                                 compare_bf16("d_y", got.d_y, truth.d_y, round_to_bf16(base.d_y)),
                                 compare_bf16("d_w", got.d_w, truth.d_w, base.d_w)};
  if (in.gated) result.push_back(compare_bf16("d_z", got.d_z, truth.d_z, round_to_bf16(base.d_z)));
  result.push_back(outside_views(got));
  return result;
}

}  // namespace

std::vector<Check> norm_kernel_checks(gpu::Backend backend) {
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  return {{std::string(gpu::to_string(backend)) + ".norm",
           "grouped RMSNorm kernels, gated and ungated (out, d_y, d_z, d_w)" + where + " = double reference (fp32 bounds)",
           60, [backend] { return norm_case(backend); }},
          {std::string(gpu::to_string(backend)) + ".norm.bf16",
           "bf16 grouped RMSNorm kernels, gated and ungated (out, d_y, d_z, d_w)" + where + " = double reference (bf16 bounds)",
           60, [backend] { return norm_bf16_case(backend); }}};
}

}  // namespace transmamba
