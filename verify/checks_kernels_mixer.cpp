// Kernel checks of the layer on a device (cuda/mixer.hpp). "emulated.mixer" / "cuda.mixer": every stage
// of mixer_forward (E1-E8: zxbcdt, xBC, dt, A, the attention rows of y, S0, the scan's chunk and start states,
// the scan rows of y with the D skip, the final state, y_normed, out) against reference/mixer.hpp's
// mixer_forward in double on the same fp32 inputs and parameters. Plus two properties of the device layer:
//   - the Memory Converter is the scan: the device S0 equals the final state of the device scan
//     (ssm_chunked_forward with outputs) over the prefix [0, P) from a zero state;
//   - the Bt sequences are independent: a sequence alone (Bt = 1) gives bitwise the same outputs as inside a
//     batch of 3 (on a GPU within the fp32 bound instead: cuBLAS picks its GEMM algorithm, and with it the
//     order of the sums, by the matrix sizes).
// "mixer_backward": every parameter gradient and d_u (backward_comparisons). "mixer_paper_size" (opt-in: runs
// only when named): the paper's layer through the same two comparison functions (paper_size_case), scaled down
// under the emulation.
//
// Shapes: Bt in {1, 3}; T = 1 often, else up to 40; P in {0, 1, T-1, T, random, a multiple of the chunk};
// G in {1, 2} with 1..3 heads per group (G = 1, G = H and a proper divisor all occur); N, p in {16, 32, 64,
// 128} (what the attention kernels take; 64 and 128 rarely, with one head per group and up to T / 2 tokens,
// for the emulation's time); chunk Q in 1..8 or 16; the regimes of
// generators.hpp (step sizes up to 1e5 with decays that underflow, strong decay) but u of magnitude 1 only:
// with u of 1e3 the layer's scores reach 1e7, their near-ties are decided by fp32 rounding differently in
// every evaluation, and the float reference's error says nothing about the kernels' (a discrete flip either
// way). Magnitudes of 1e3 are checked per kernel family, with analytic floors (checks_kernels_*.cpp).
//
// Bound: DESIGN.md section 7's 1e-5 relative norm for an fp32 forward, or an fp32 floor. A whole layer has no
// tight rounding floor from magnitudes: the norm divides by an rms that cancellation can make small, a
// softmax of large scores turns score errors into weight errors, a GEMM of values that cancel loses all its
// relative accuracy. So, as flash-attention's tests do, the floor is measured: the same reference templated on
// float, run on the same fp32 inputs, makes the rounding errors of fp32 through exactly the same formulas
// (with other summation orders), amplified by exactly the same conditioning. The kernels' error may be
// kFloatFactor times the float reference's error (one draw of fp32 rounding each: a factor for the spread
// between two draws, measured below), plus the rounding of the stage's own last sum where a stage is a GEMM
// (E1, E8: (k + 2)·u times the product on magnitudes, and for E8 the kernels' allowed error of y_normed carried
// through W_out), so that a float reference that happens to round luckily does not decide alone.
//
// "mixer.bf16", "mixer_backward.bf16": the bf16 layer (MixerForwardDeviceBf16, MixerGradsDeviceBf16) on the same
// draws, by DESIGN.md section 7's bf16 rule (compare_bf16): u, d_out, W_in and W_out rounded to bf16 (the values
// the layer reads: its GEMMs' copies of the weights are then exact); the truth is reference mixer_forward and
// mixer_backward in double on those values, the baseline the same in float with StorageRounding rounding to bf16
// at every point where the bf16 layer stores a bf16 tensor (reference/mixer.hpp lists them). Forward: zxbcdt, xBC,
// dt, y, S0, the final state, y_normed, out; backward: every parameter gradient and d_u.
// A whole layer in bf16 has tensors whose error is rounding noise of the bf16 storage alone: sums that cancel
// (out = y_normed·W_out at T = 1, D = 1: 0.013 from a sum of 32 terms; d_dt_bias = Σ_t d_dt_raw), a norm's
// small rms. There the baseline itself can be off by more than the 2e-2 ceiling (seen: d_dt_raw 13 % off in the
// baseline, and the layer's equal to it bit for bit), or one draw of its roundings lucky (seen: ours 54 % off
// while the bound, 2 x the baseline's error + 1e-3, sat at its 2e-2 ceiling): the rule alone fails correct code.
// So, as the fp32 layer check measures its floor with the float reference, each tensor's absolute floor is
// measured from two draws of the storage roundings: the baseline, and the same float reference with bf16 storage
// rounded toward zero; floor = kFloatFactor x the larger error norm of the two (the fp32 layer check's factor for
// the spread between two draws; 2 x the second draw's error alone failed on seeds 1-8, ours 1.0 to 1.3 times
// that). A wiring error (a wrong view, a lost term) moves a tensor by its own size, far above both draws'
// rounding noise.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>

#include "cuda/mixer.hpp"
#include "reference/mixer.hpp"
#include "verify/bounds.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/generators.hpp"
#include "verify/kernel_case.hpp"
#include "verify/layer_case.hpp"

namespace transmamba {

namespace {
using namespace kernel_case;

// The backward's: see mixer_backward_case.
constexpr double kBackwardFloatFactor = 8;

// Seconds spent on the device and in the references (double and float, with the floors) by the comparisons.
struct Seconds {
  double device = 0, reference = 0;
};
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// sum[i] += the i-th parameter gradient of grads (MixerParams' for_each order), in double: the gradients summed
// over the sequences.
template <class Grads>
void add_params(std::vector<MatD>& sum, const Grads& grads) {
  std::size_t i = 0;
  grads.for_each([&](const char*, const auto& t) {
    const MatD m = t.template cast<double>();
    if (sum.size() <= i) sum.push_back(MatD::Zero(m.rows(), m.cols()));
    sum[i++] += m;
  });
}

// The forward comparisons of the layer call k (a drawn case or the paper-size one) on dev: one code path for both.
std::vector<Comparison> forward_comparisons(gpu::Backend backend, const gpu::Device& dev, const LayerCase& k, Seconds& time) {
  const int Bt = k.Bt, T = k.T, P = k.P;
  const MixerConfig& cfg = k.cfg;
  const MixerParams<double>& prm = k.prm;
  const std::vector<MatD>& u = k.u;
  const int E = cfg.E, N = cfg.N, H = cfg.H;
  const std::size_t state = std::size_t(Bt) * E * N;

  // The device layer, and the scan with outputs over each prefix [0, P) from a zero state (its final state
  // is what S0 must be).
  auto t0 = std::chrono::steady_clock::now();
  gpu::Stream stream(dev);
  const DeviceParams params(dev, prm);
  gpu::MixerForwardDevice f(dev, {Bt, T, P, cfg});
  f.u.upload(floats(stack(u)));
  gpu::mixer_forward(stream, params.views(), f);
  const gpu::ScanShape prefix{Bt, P, H, cfg.p(), cfg.G, N, cfg.chunk};
  const gpu::ScanPlan prefix_plan = gpu::scan_plan(prefix);
  DeviceBuffer<float> prefix_y(dev, std::size_t(Bt) * P * E), prefix_final(dev, state),
      prefix_chunks(dev, prefix_plan.state_values), prefix_starts(dev, prefix_plan.state_values),
      prefix_decays(dev, prefix_plan.chunk_decays);
  gpu::ssm_chunked_forward(stream, {prefix, f.x(), f.part(f.dt, H, 0), f.A.view(), f.B(), f.C(), {}, prefix_y.view(),
                                    prefix_final.view(), prefix_chunks.view(), prefix_starts.view(), prefix_decays.view()});
  stream.synchronize();
  time.device += since(t0);

  // The truth (double) and one draw of fp32's rounding through the same formulas (float), per sequence.
  t0 = std::chrono::steady_clock::now();
  std::vector<MixerForward<double>> r;
  std::vector<MixerForward<float>> rf;
  const MixerParams<float> prm_f = prm.cast<float>();
  for (int b = 0; b < Bt; ++b) {
    r.push_back(mixer_forward(prm, u[b], P));
    rf.push_back(mixer_forward(prm_f, Mat<float>(u[b].cast<float>()), P));
  }
  // One tensor of MixerForward (get: a generic lambda), every sequence stacked: the truth and the float's.
  auto both = [&](auto get) {
    std::vector<MatD> t, fl;
    for (int b = 0; b < Bt; ++b) {
      t.push_back(MatD(get(r[b]).template cast<double>()));
      fl.push_back(MatD(get(rf[b]).template cast<double>()));
    }
    return t.empty() || t[0].size() == 0 ? std::make_pair(MatD(), MatD()) : std::make_pair(stack(t), stack(fl));
  };
  std::vector<Comparison> out;
  std::map<std::string, double> floors;
  // got vs the truth; the floor: kFloatFactor x the float reference's error + the stage's own rounding `own`.
  auto check = [&](const std::string& name, const MatD& got, const std::pair<MatD, MatD>& ref, const MatD& own = MatD()) {
    if (ref.first.size() == 0) return;  // an empty part (no prefix, no scan tokens, no chunks)
    floors[name] = kFloatFactor * (ref.second - ref.first).norm() + (own.size() ? rounding_floor(own) : 0.0);
    out.push_back(compare(name, got, ref.first, bounds::kCudaFp32Forward, floors[name]));
  };
  const int rows = Bt * T, L = T - P;
  const std::vector<float> y = f.y.download(), y_normed = f.y_normed.download();
  MatD e_zxbcdt(rows, cfg.in_proj_width());  // the GEMMs' own rounding (E1, E8)
  const auto y_normed_ref = both([](const auto& m) { return m.y_normed; });
  const MatD e_out = out_rounding(y_normed_ref.first, y_normed_ref.second, prm.W_out);
  // (The products on OpenMP's threads, as the reference's own: at the paper's size each is 1e11 multiply-adds.)
  const MatD W_in_abs = prm.W_in.cwiseAbs();
  for (int b = 0; b < Bt; ++b)
    e_zxbcdt.middleRows(b * T, T) = (cfg.D + 2) * kUnit * product<double>(MatD(u[b].cwiseAbs()), W_in_abs);
  check("E1 zxbcdt", as_matrix(f.zxbcdt.download(), rows, cfg.in_proj_width()),
        both([&](const auto& m) { return join_in_proj(cfg, InProj<typename std::decay_t<decltype(m.u)>::Scalar>{m.z, m.xBC_in, m.dt_raw}); }),
        e_zxbcdt);
  check("E2 xBC", as_matrix(f.xBC.download(), rows, cfg.conv_channels()), both([](const auto& m) { return m.xBC; }));
  check("E3 dt", as_matrix(f.dt.download(), rows, H), both([](const auto& m) { return m.dt; }));
  check("E3 A", as_matrix(f.A.download(), H, 1), {MatD(r[0].A), MatD(rf[0].A.cast<double>())});  // one per layer
  check("E4 y (attention rows)", rows_of(y, Bt, T, E, 0, P), both([P](const auto& m) { return m.y.topRows(P); }));
  check("E5 S0", as_matrix(f.S0.download(), Bt * E, N), both([](const auto& m) { return m.S0; }));
  auto states = [&](auto get) {  // the scan's per-chunk states of every sequence, stacked (sequence-major)
    return both([&](const auto& m) {
      const auto& list = get(m);
      Mat<typename std::decay_t<decltype(m.u)>::Scalar> all(std::int64_t(list.size()) * E, N);
      for (std::size_t c = 0; c < list.size(); ++c) all.middleRows(c * E, E) = list[c];
      return all;
    });
  };
  const int chunks = int(f.chunk_states.size() / std::max<std::size_t>(state, 1));
  check("E6 chunk states", as_matrix(f.chunk_states.download(), Bt * chunks * E, N),
        states([](const auto& m) -> const auto& { return m.scan.chunk_states; }));
  check("E6 start states", as_matrix(f.start_states.download(), Bt * chunks * E, N),
        states([](const auto& m) -> const auto& { return m.scan.start_states; }));
  check("E6 y (scan rows, D skip)", rows_of(y, Bt, T, E, P, L), both([L](const auto& m) { return m.y.bottomRows(L); }));
  check("final state", as_matrix(f.final_state.download(), Bt * E, N), both([](const auto& m) { return m.final_state; }));
  check("E7 y_normed", as_matrix(y_normed, rows, E), y_normed_ref);
  check("E8 out", as_matrix(f.out.download(), rows, cfg.D), both([](const auto& m) { return m.out; }), e_out);

  time.reference += since(t0);

  // The converter is the scan: S0 = the device scan's final state over the prefix.
  out.push_back(compare("S0 = the scan's final state over [0, P)", as_matrix(f.S0.download(), Bt * E, N),
                        as_matrix(prefix_final.download(), Bt * E, N), bounds::kCudaFp32Forward, floors["E5 S0"]));
  // Independent sequences: the last one alone gives what it gave inside the batch.
  if (Bt > 1) {
    gpu::MixerForwardDevice alone(dev, {1, T, P, cfg});
    alone.u.upload(floats(u[Bt - 1]));
    gpu::mixer_forward(stream, params.views(), alone);
    stream.synchronize();
    const bool bitwise = backend == gpu::Backend::emulated;
    auto same = [&](const std::string& name, const DeviceBuffer<float>& one, const DeviceBuffer<float>& batch, double floor) {
      const std::vector<float> all = batch.download();
      const std::size_t n = one.size();
      out.push_back(compare("alone = in the batch: " + name, as_matrix(one.download(), std::int64_t(n), 1),
                            as_matrix(std::vector<float>(all.end() - n, all.end()), std::int64_t(n), 1),
                            bitwise ? 0.0 : bounds::kCudaFp32Forward, bitwise ? 0.0 : 2 * floor));
    };
    same("out", alone.out, f.out, floors["E8 out"]);
    same("y", alone.y, f.y, floors["E4 y (attention rows)"] + floors["E6 y (scan rows, D skip)"]);
    same("y_normed", alone.y_normed, f.y_normed, floors["E7 y_normed"]);
    same("final state", alone.final_state, f.final_state, floors["final state"]);
  }
  return out;
}

std::vector<Comparison> mixer_case(gpu::Backend backend) {
  const LayerCase k = draw_layer_case(40);
  Seconds ignored;
  return forward_comparisons(backend, device_for(backend), k, ignored);
}

// The layer backward: every parameter gradient (summed over the Bt sequences) and d_u against reference
// mixer_backward<double> on the same fp32 inputs (parameters, u and d_out), bound 1e-4 (DESIGN.md section 7's
// fp32 gradient bound) or, as for the forward and for the same reasons (a norm's rms, a softmax, sums that
// cancel: no tight floor from magnitudes), kBackwardFloatFactor x the error of reference mixer_backward<float>
// (after mixer_forward<float>) on the same inputs.
// The backward comparisons of the layer call k with upstream gradients d_out (Bt x [T, D], fp32 values) on dev.
std::vector<Comparison> backward_comparisons(const gpu::Device& dev, const LayerCase& k, const std::vector<MatD>& d_out,
                                             Seconds& time) {
  const int Bt = k.Bt, T = k.T, P = k.P;
  const MixerConfig& cfg = k.cfg;
  auto t0 = std::chrono::steady_clock::now();
  gpu::Stream stream(dev);
  const DeviceParams params(dev, k.prm);
  gpu::MixerForwardDevice f(dev, {Bt, T, P, cfg});
  gpu::MixerGradsDevice g(dev, {Bt, T, P, cfg});
  f.u.upload(floats(stack(k.u)));
  g.d_out.upload(floats(stack(d_out)));
  gpu::mixer_forward(stream, params.views(), f);
  gpu::mixer_backward(stream, params.views(), f, g);
  stream.synchronize();
  time.device += since(t0);
  t0 = std::chrono::steady_clock::now();

  // The parameters' gradients in for_each's order, summed over the sequences, and d_u stacked: truth and float.
  const MixerParams<float> prm_f = k.prm.cast<float>();
  std::vector<MatD> truth, fl, d_u, d_u_f;
  // Two parameter gradients are plain sums over tokens that can cancel far below their terms (seen: d_dt_bias of
  // 5e-10 from terms of 1e-6, the float reference's error 30 times smaller than the kernels'): their floors add
  // the rounding of the sum, (n + 2)·u·Σ|term|, and the kernels' allowed error of the terms' factor carried
  // through, kBackwardFloatFactor·Σ|Δfactor|·|weight| (Δ: the float reference's error of that factor):
  //   d_D_skip[h]  = Σ_{b, t >= P, i} d_y[t, h·p + i]·x[t, h·p + i]   (d_y: E7's backward of the scan rows)
  //   d_dt_bias[h] = Σ_{b, t} d_dt_raw[t, h]                           (d_dt_raw: a column block of d_zxbcdt)
  // and d_dt_raw[t, h] is itself a sum inside the scan that can cancel (seen: T = 1, one token, the kernels' error
  // 37 times the float reference's): its rounding, terms·u·magnitude, with d_dt's magnitude taken as
  // checks_kernels_ssm.cpp does, from the scan's and the converter's reference backward on |inputs|.
  const int L = T - P, p = cfg.p(), H = cfg.H, dt_col = cfg.E + cfg.conv_channels();
  auto term_error = [](const MatD& truth, const MatD& float_ref, double n) {  // per term: n·u·|t| + k·|Δt|
    return MatD((n + 2) * kUnit * truth.cwiseAbs() + kBackwardFloatFactor * (float_ref - truth).cwiseAbs());
  };
  Eigen::VectorXd skip_own = Eigen::VectorXd::Zero(H), dt_bias_own = Eigen::VectorXd::Zero(H);
  for (int b = 0; b < Bt; ++b) {
    const MixerForward<double> fwd = mixer_forward(k.prm, k.u[b], P);
    const MixerForward<float> fwd_f = mixer_forward(prm_f, Mat<float>(k.u[b].cast<float>()), P);
    const Mat<float> d_out_f = d_out[b].cast<float>();
    const MixerGrads<double> r = mixer_backward(k.prm, fwd, d_out[b]);
    const MixerGrads<float> rf = mixer_backward(prm_f, fwd_f, d_out_f);
    add_params(truth, r.d_params);
    add_params(fl, rf.d_params);
    d_u.push_back(r.d_u);
    d_u_f.push_back(rf.d_u.cast<double>());
    const MatD z = fwd.z.bottomRows(L);
    const Mat<float> z_f = fwd_f.z.bottomRows(L);
    const MatD d_y = rmsnorm_backward<double>(fwd.y.bottomRows(L), k.prm.norm_w, cfg.G, &z,
                                              product<double>(d_out[b], k.prm.W_out.transpose()).bottomRows(L)).d_v;
    const MatD d_y_f = rmsnorm_backward<float>(fwd_f.y.bottomRows(L), prm_f.norm_w, cfg.G, &z_f,
                                               product<float>(d_out_f, prm_f.W_out.transpose()).bottomRows(L)).d_v.cast<double>();
    const MatD skip_terms = term_error(d_y, d_y_f, double(Bt) * L * p).cwiseProduct(fwd.x.bottomRows(L).cwiseAbs());
    for (int h = 0; h < H; ++h) skip_own(h) += skip_terms.middleCols(h * p, p).sum();
    const MatD ax = fwd.x.cwiseAbs(), aB = fwd.B.cwiseAbs();
    const ScanGrads<double> ms = ssm_backward<double>(cfg, ax.bottomRows(L), fwd.dt.bottomRows(L), fwd.A, aB.bottomRows(L),
                                                      fwd.C.bottomRows(L).cwiseAbs(), fwd.S0.cwiseAbs(), d_y.cwiseAbs(),
                                                      MatD::Zero(cfg.E, cfg.N));
    const ConverterGrads<double> mc =
        memory_converter_backward<double>(cfg, ax.topRows(P), aB.topRows(P), fwd.dt.topRows(P), fwd.A, ms.d_S_init);
    MatD d_dt_mag(T, H);
    d_dt_mag.topRows(P) = d_dt_magnitude(cfg, ax.topRows(P), fwd.dt.topRows(P), mc.d_x, mc.d_dt);
    d_dt_mag.bottomRows(L) = d_dt_magnitude(cfg, ax.bottomRows(L), fwd.dt.bottomRows(L), ms.d_x, ms.d_dt);
    const double scan_terms = cfg.chunk + cfg.N + p + (T + cfg.chunk - 1) / cfg.chunk;
    dt_bias_own += scan_terms * kUnit * d_dt_mag.colwise().sum().transpose();
    dt_bias_own += term_error(r.d_zxbcdt.middleCols(dt_col, H), rf.d_zxbcdt.middleCols(dt_col, H).cast<double>(), double(Bt) * T)
                       .colwise()
                       .sum()
                       .transpose();
  }
  const std::vector<const DeviceBuffer<float>*> got{&g.d_W_in, &g.d_conv_w, &g.d_conv_b, &g.d_dt_bias,
                                                    &g.d_A_log,  &g.d_D_skip, &g.d_norm_w, &g.d_W_out};
  std::vector<std::string> names;
  k.prm.for_each([&](const char* name, const auto&) { names.push_back(std::string("d_") + name); });
  std::vector<Comparison> out;
  auto check = [&](const std::string& name, const MatD& device, const MatD& t, const MatD& float_ref, double own = 0) {
    out.push_back(compare(name, device, t, bounds::kCudaFp32Gradient, kBackwardFloatFactor * (float_ref - t).norm() + own));
  };
  for (std::size_t i = 0; i < got.size(); ++i)
    check(names[i], as_matrix(got[i]->download(), truth[i].rows(), truth[i].cols()), truth[i], fl[i],
          names[i] == "d_D_skip" ? rounding_floor(skip_own) : names[i] == "d_dt_bias" ? rounding_floor(dt_bias_own) : 0.0);
  check("d_u", as_matrix(g.d_u.download(), Bt * T, cfg.D), stack(d_u), stack(d_u_f));
  time.reference += since(t0);
  return out;
}

// The bf16 layer on one drawn case: its forward (backward = false) or backward comparisons.
std::vector<Comparison> bf16_layer_case(gpu::Backend backend, bool backward) {
  LayerCase k = draw_layer_case(backward ? 24 : 40);
  const int Bt = k.Bt, T = k.T, P = k.P, rows = Bt * T;
  const MixerConfig& cfg = k.cfg;
  k.prm.W_in = round_to_bf16(k.prm.W_in);
  k.prm.W_out = round_to_bf16(k.prm.W_out);
  std::vector<MatD> d_out(Bt);
  for (int b = 0; b < Bt; ++b) {
    k.u[b] = round_to_bf16(k.u[b]);
    d_out[b] = round_to_bf16(k.rnd.mat<double>(T, cfg.D, -1, 1));
  }
  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const DeviceParams params(dev, k.prm);
  gpu::MixerForwardDeviceBf16 f(dev, {Bt, T, P, cfg});
  gpu::MixerGradsDeviceBf16 g(dev, {Bt, T, P, cfg});
  f.u.upload(pack<gpu::Bf16>(k.u, 0).values);
  gpu::mixer_forward(stream, params.views(), f);
  if (backward) {
    g.d_out.upload(pack<gpu::Bf16>(d_out, 0).values);
    gpu::mixer_backward(stream, params.views(), f, g);
  }
  stream.synchronize();

  // The baseline (bf16 storage rounded to nearest, as the layer does) and the floor's draw (toward zero).
  const StorageRounding<float> store = [](const Mat<float>& m) { return Mat<float>(round_to_bf16(m.cast<double>()).cast<float>()); };
  const StorageRounding<float> store_rtz = [](const Mat<float>& m) {
    return Mat<float>(m.unaryExpr([](float v) {  // the top 16 bits of v
      std::uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      return gpu::to_float(gpu::Bf16{std::uint16_t(bits >> 16)});
    }));
  };
  const MixerParams<float> prm_f = k.prm.cast<float>();
  std::vector<MixerForward<double>> r;
  std::vector<MixerForward<float>> rf, rz;
  for (int b = 0; b < Bt; ++b) {
    r.push_back(mixer_forward(k.prm, k.u[b], P));
    rf.push_back(mixer_forward(prm_f, Mat<float>(k.u[b].cast<float>()), P, store));
    rz.push_back(mixer_forward(prm_f, Mat<float>(k.u[b].cast<float>()), P, store_rtz));
  }
  std::vector<Comparison> out;
  // got vs the truth, the baseline's error deciding the bound and the second draw's the floor.
  auto compare_drawn = [&](const std::string& name, const MatD& got, const MatD& truth, const MatD& baseline, const MatD& toward_zero) {
    out.push_back(compare_bf16(name, got, truth, baseline, kFloatFactor * std::max((baseline - truth).norm(), (toward_zero - truth).norm())));
  };
  auto check = [&](const std::string& name, const MatD& got, auto get) {  // get: one tensor of a MixerForward
    std::vector<MatD> t, fl, z;
    for (int b = 0; b < Bt; ++b) {
      t.push_back(MatD(get(r[b]).template cast<double>()));
      fl.push_back(MatD(get(rf[b]).template cast<double>()));
      z.push_back(MatD(get(rz[b]).template cast<double>()));
    }
    if (t[0].size() > 0) compare_drawn(name, got, stack(t), stack(fl), stack(z));
  };
  if (!backward) {
    const int E = cfg.E, L = T - P;
    const std::vector<gpu::Bf16> y = f.y.download();
    check("E1 zxbcdt", stacked(f.zxbcdt.download(), Bt, T, cfg.in_proj_width(), cfg.in_proj_width()), [&](const auto& m) {
      return join_in_proj(cfg, InProj<typename std::decay_t<decltype(m.u)>::Scalar>{m.z, m.xBC_in, m.dt_raw});
    });
    check("E2 xBC", stacked(f.xBC.download(), Bt, T, cfg.conv_channels(), cfg.conv_channels()), [](const auto& m) { return m.xBC; });
    check("E3 dt", as_matrix(f.dt.download(), rows, cfg.H), [](const auto& m) { return m.dt; });
    check("E4 y (attention rows)", rows_of(y, Bt, T, E, 0, P), [P](const auto& m) { return m.y.topRows(P); });
    check("E5 S0", as_matrix(f.S0.download(), Bt * E, cfg.N), [](const auto& m) { return m.S0; });
    check("E6 y (scan rows, D skip)", rows_of(y, Bt, T, E, P, L), [L](const auto& m) { return m.y.bottomRows(L); });
    check("final state", as_matrix(f.final_state.download(), Bt * E, cfg.N), [](const auto& m) { return m.final_state; });
    check("E7 y_normed", stacked(f.y_normed.download(), Bt, T, E, E), [](const auto& m) { return m.y_normed; });
    check("E8 out", stacked(f.out.download(), Bt, T, cfg.D, cfg.D), [](const auto& m) { return m.out; });
    return out;
  }
  // The parameters' gradients summed over the sequences (in for_each's order), and d_u stacked.
  std::vector<MatD> truth, fl, fz, d_u, d_u_f, d_u_z;
  for (int b = 0; b < Bt; ++b) {
    const Mat<float> d_out_f = d_out[b].cast<float>();
    const MixerGrads<double> gr = mixer_backward(k.prm, r[b], d_out[b]);
    const MixerGrads<float> gf = mixer_backward(prm_f, rf[b], d_out_f, store), gz = mixer_backward(prm_f, rz[b], d_out_f, store_rtz);
    add_params(truth, gr.d_params);
    add_params(fl, gf.d_params);
    add_params(fz, gz.d_params);
    d_u.push_back(gr.d_u);
    d_u_f.push_back(gf.d_u.cast<double>());
    d_u_z.push_back(gz.d_u.cast<double>());
  }
  const std::vector<const DeviceBuffer<float>*> got{&g.d_W_in, &g.d_conv_w, &g.d_conv_b, &g.d_dt_bias,
                                                    &g.d_A_log,  &g.d_D_skip, &g.d_norm_w, &g.d_W_out};
  std::size_t i = 0;
  k.prm.for_each([&](const char* param, const auto&) {
    compare_drawn(std::string("d_") + param, as_matrix(got[i]->download(), truth[i].rows(), truth[i].cols()), truth[i], fl[i], fz[i]);
    ++i;
  });
  compare_drawn("d_u", stacked(g.d_u.download(), Bt, T, cfg.D, cfg.D), stack(d_u), stack(d_u_f), stack(d_u_z));
  return out;
}

std::vector<Comparison> mixer_backward_case(gpu::Backend backend) {
  LayerCase k = draw_layer_case(24);
  std::vector<MatD> d_out(k.Bt);
  for (MatD& d : d_out) d = round_to_float(k.rnd.mat<double>(k.T, k.cfg.D, -1, 1));
  Seconds ignored;
  return backward_comparisons(device_for(backend), k, d_out, ignored);
}
// The paper-size check: one sequence (Bt = 1) of the paper's layer at each of its TransPoints, forward and
// backward through forward_comparisons and backward_comparisons, the random checks' code path. The same check
// runs scaled down (kScaled) under the emulation, as a ctest, and at the paper's size (kPaper) on a GPU.
struct LayerSize {
  int T;
  MixerConfig cfg;
  std::vector<int> P;
};
// DESIGN.md section 1's defaults (Q = 128): T 8192, D 1536, E 3072, H 48 (p 64), G 8, N 128, W 4; P 0, 2048, T.
const LayerSize kPaper{8192, MixerConfig::paper(), {0, 2048, 8192}};
// The same proportions with the edges the paper's size does not have: T = 88 is not a multiple of the chunk
// (Q 16: the scan's last chunk has 8 tokens) nor of the attention kernels' 32-token tiles; P = 32 falls on a
// chunk and a tile boundary, as 2048 does. D 24, E 96, H 6 (p 16), G 2, N 16, W 4.
const LayerSize kScaled{88, MixerConfig{24, 96, 6, 2, 16, 4, 16}, {0, 32, 88}};
constexpr std::uint64_t kPaperSeed = 2503;  // arXiv 2503.24067

// The inputs, from kPaperSeed: the easy regime (generators.hpp), with W_in and W_out divided by the square
// root of their input width (as a layer's initialisation does) so that the activations stay of magnitude 1 at
// D = 1536 as they are at the random checks' widths: with W_in of U(-1, 1), zxbcdt would reach ±40, the
// attention scores ±1e3, and near-ties decided by fp32 rounding (see the header). u and d_out in U(-1, 1).
//
// Memory of the double reference at the paper's size (P = T): attention_backward holds three [P, P] matrices
// per group (weights, their gradient, the scores' gradient; 512 MiB each at P = 8192) on each of G = 8
// threads: 12 GiB, and the float reference half of that after it; ssm_backward (P = 0) keeps every state of a
// head, T x p x N doubles = 512 MiB, on each of 8 threads: 4 GiB. The MixerForward of both precisions and the
// device downloads add about 4 GiB. Peak about 16 GiB of the GPU host's memory.
std::vector<Comparison> paper_size_case(gpu::Backend backend, const LayerSize& size) {
  MixerConfig cfg = size.cfg;
  RandomTensors rnd(kPaperSeed);
  MixerParams<double> prm = rnd.params<double>(cfg);
  prm.W_in /= std::sqrt(double(cfg.D));
  prm.W_out /= std::sqrt(double(cfg.E));
  prm = prm.cast<float>().cast<double>();
  const std::vector<MatD> u{round_to_float(rnd.mat<double>(size.T, cfg.D, -1, 1))},
      d_out{round_to_float(rnd.mat<double>(size.T, cfg.D, -1, 1))};
  const gpu::Device dev = backend == gpu::Backend::cuda ? gpu::Device::cuda() : gpu::Device::emulated(kPaperSeed);
  std::vector<Comparison> all;
  for (const int P : size.P) {
    const LayerCase k{1, size.T, P, cfg, prm, u, rnd};
    const std::string at = "P=" + std::to_string(P) + ": ";
    std::fprintf(stderr, "mixer_paper_size: T %d, D %d, E %d, H %d, G %d, N %d, W %d, Q %d, P %d\n", size.T, cfg.D, cfg.E,
                 cfg.H, cfg.G, cfg.N, cfg.W, cfg.chunk, P);
    for (const bool backward : {false, true}) {
      Seconds time;
      std::vector<Comparison> part = backward ? backward_comparisons(dev, k, d_out, time) : forward_comparisons(backend, dev, k, time);
      std::fprintf(stderr, "  %s: device %.1f s, references (double, float, floors) %.1f s\n", backward ? "backward" : "forward",
                   time.device, time.reference);
      for (Comparison& c : part) {
        c.name = at + c.name;
        std::fprintf(stderr, "    %s\n", c.report().c_str());
        all.push_back(std::move(c));
      }
    }
    std::fflush(stderr);
  }
  return all;
}
}  // namespace

std::vector<Check> mixer_kernel_checks(gpu::Backend backend) {
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  const std::string name = gpu::to_string(backend);
  return {{name + ".mixer",
           "layer forward E1-E8 (every stage, S0 = scan of the prefix, sequences independent)" + where +
               " = double reference (fp32 bound or kFloatFactor x the float reference's error)",
           30, [backend] { return mixer_case(backend); }},
          {name + ".mixer_backward",
           "layer backward E8-E1 (every parameter gradient and d_u)" + where +
               " = double reference (fp32 gradient bound or kBackwardFloatFactor x the float reference's error)",
           25, [backend] { return mixer_backward_case(backend); }},
          {name + ".mixer_paper_size",
           backend == gpu::Backend::cuda
               ? "the paper's layer (T 8192, D 1536, E 3072, H 48, G 8, N 128, Q 128; P 0, 2048, 8192) forward and "
                 "backward on the GPU = double reference, as mixer and mixer_backward (minutes)"
               : "mixer_paper_size scaled down (T 88, D 24, E 96, H 6, G 2, N 16, Q 16; P 0, 32, 88) under the CPU "
                 "emulation: the GPU check's code path",
           1, [backend] { return paper_size_case(backend, backend == gpu::Backend::cuda ? kPaper : kScaled); }, true},
          {name + ".mixer.bf16",
           "bf16 layer forward E1-E8" + where + " = double reference on the bf16-rounded u, W_in, W_out (bf16 bound: 2 x the "
               "float reference's error with bf16 storage at the layer's storage points + 1e-3)",
           20, [backend] { return bf16_layer_case(backend, false); }},
          {name + ".mixer_backward.bf16",
           "bf16 layer backward E8-E1 (every parameter gradient and d_u)" + where +
               " = double reference on the bf16-rounded u, W_in, W_out, d_out (bf16 bound, as mixer.bf16)",
           20, [backend] { return bf16_layer_case(backend, true); }}};
}

}  // namespace transmamba
