// What the layer's kernel checks share (verify/checks_kernels_mixer.cpp, checks_kernels_inference.cpp): the
// parameters of a layer on a device, rows of a [Bt, T, cols] download, and the random draw of one layer call
// (shape, fp32-valued parameters and inputs). The draws are explained in checks_kernels_mixer.cpp's header.
#pragma once

#include <vector>

#include "cuda/mixer.hpp"
#include "reference/params.hpp"
#include "reference/projection.hpp"
#include "verify/generators.hpp"
#include "verify/kernel_case.hpp"

namespace transmamba::kernel_case {

// The kernels' error over the float reference's (checks_kernels_mixer.cpp's header), measured over
// emulated.mixer seeds 1-5 x 200 cases (1000 layers, every tensor): at most 2.9 (the scan rows of y; 2.4
// y_normed, 2.0 dt, <= 1.4 the states, 1.3 the attention rows, 1.0 the GEMMs' zxbcdt and the conv). E8's out
// reached 721 on single rows (T = 1, a sum of E terms that the float reference happened to round almost
// exactly), far inside its GEMM floor (out_rounding). 8 leaves a margin of 2.8 over the worst ratio; only 1
// tensor in those 1000 layers needed the floor at all (out, rel 1.4e-5).
constexpr double kFloatFactor = 8;

// E8's own rounding floor per element of out = y_normed · W_out: the GEMM's sum of E terms, (E + 2)·u·|y_normed|,
// plus the kernels' allowed error of y_normed (kFloatFactor x the float reference's, y_normed_f - y_normed)
// carried through |W_out|. (The product on OpenMP's threads, as the reference's own: at the paper's size it is
// 1e11 multiply-adds.)
inline MatD out_rounding(const MatD& y_normed, const MatD& y_normed_f, const MatD& W_out) {
  const MatD error = (y_normed.cols() + 2) * kUnit * y_normed.cwiseAbs() + kFloatFactor * (y_normed_f - y_normed).cwiseAbs();
  return product<double>(error, MatD(W_out.cwiseAbs()));
}

// The parameters on a device, uploaded from (fp32-valued) doubles.
struct DeviceParams {
  DeviceBuffer<float> W_in, conv_w, conv_b, dt_bias, A_log, D_skip, norm_w, W_out;
  DeviceParams(const gpu::Device& dev, const MixerParams<double>& m)
      : W_in(dev, floats(m.W_in)), conv_w(dev, floats(m.conv_w)), conv_b(dev, floats(m.conv_b)),
        dt_bias(dev, floats(m.dt_bias)), A_log(dev, floats(m.A_log)), D_skip(dev, floats(m.D_skip)),
        norm_w(dev, floats(m.norm_w)), W_out(dev, floats(m.W_out)) {}
  gpu::MixerDeviceParams views() const {
    return {W_in.view(), conv_w.view(), conv_b.view(), dt_bias.view(), A_log.view(), D_skip.view(), norm_w.view(), W_out.view()};
  }
};

// Rows [first, first + count) of every sequence of a [Bt, T, cols] buffer (float or Bf16 values), stacked.
template <class V>
MatD rows_of(const std::vector<V>& v, int Bt, int T, int cols, int first, int count) {
  MatD m(std::int64_t(Bt) * count, cols);
  for (int b = 0; b < Bt; ++b)
    for (int r = 0; r < count; ++r)
      for (int c = 0; c < cols; ++c) m(b * count + r, c) = gpu::to_float(v[(std::size_t(b) * T + first + r) * cols + c]);
  return m;
}

// One layer call's draws (checks_kernels_mixer.cpp's header): the shape, fp32-valued parameters and inputs u, and the generator.
struct LayerCase {
  int Bt, T, P;
  MixerConfig cfg;
  MixerParams<double> prm;
  std::vector<MatD> u;  // Bt x [T, D]
  RandomTensors rnd;
};
inline LayerCase draw_layer_case(int max_T) {
  const int Bt = draw("Bt", rc::gen::element(1, 3));
  MixerConfig cfg;
  // N and p: every size the attention kernels take, 64 and 128 each in 1 draw of 20 (1 layer in 5 has one or
  // both); such a wide layer has one head per group and at most max_T / 2 tokens, to keep the emulation's time.
  const auto sizes = rc::gen::weightedElement<int>({{9, 16}, {9, 32}, {1, 64}, {1, 128}});
  cfg.N = draw("N", sizes);
  const int p = draw("p", sizes);
  const bool wide = cfg.N > 32 || p > 32;
  cfg.G = draw("G", rc::gen::element(1, 2));
  cfg.H = cfg.G * (wide ? 1 : draw("heads per group", rc::gen::inRange(1, 4)));
  cfg.E = cfg.H * p;
  cfg.D = draw("D", rc::gen::inRange(1, 9));
  cfg.W = draw("W", rc::gen::inRange(1, 5));
  cfg.chunk = draw("Q", rc::gen::oneOf(rc::gen::inRange(1, 9), rc::gen::just(16)));
  const int T = draw("T", rc::gen::oneOf(rc::gen::just(1), rc::gen::inRange(1, (wide ? max_T / 2 : max_T) + 1)));
  const int P = draw("P", rc::gen::oneOf(gen_transpoint(T), rc::gen::just(T / cfg.chunk * cfg.chunk)));
  const Regime regime = draw("regime", gen_regime(Regimes::finite_diff));  // no u of 1e3: see the header
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  const MixerParams<double> prm = rnd.params<double>(cfg, regime).cast<float>().cast<double>();
  std::vector<MatD> u(Bt);
  for (MatD& ub : u) ub = round_to_float(rnd.mat<double>(T, cfg.D, -regime.scale, regime.scale));
  return {Bt, T, P, cfg, prm, u, rnd};
}

}  // namespace transmamba::kernel_case
