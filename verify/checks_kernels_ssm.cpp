// Kernel checks of the chunked scan (cuda/ssm.hpp) and the Memory Converter (cuda/converter.hpp) against the
// double reference: the forward against reference/ssm.hpp's ssm_chunked stage by stage (chunk states, start
// states, y, final state; final state only = the converter's use), the backward against ssm_backward (every
// gradient), the converter against reference/converter.hpp (S0 and its backward).
//
// Inputs: the regimes of verify/generators.hpp (gen_regime: easy half of the time; mixed steps of up to 1e3 and
// long prefixes of 1e4..1e5 whose decays underflow to exactly 0, strong decay A down to -16, values of 1e3). All of
// them stay inside fp32's range for the scan: dt >= 0.05 and x = U(-scale, scale)/max(1, dt) are representable,
// a decay that underflows in fp32 (exp(seg) < 1e-38) is below 1e-38 in double too, and that difference is covered
// by the floor's kTiny term (below).
//
// The rounding floor (kernel_case.hpp), per tensor: 2·‖terms·u·magnitude + kTiny·free‖ where
//   magnitude = the reference on |x|, |B|, |C|, |S_init|, |d_y|, |d_final_state| (dt > 0 and the decays exp(dt·A)
//               > 0 as they are): every output is a polynomial in these whose monomials are products of decays and
//               inputs, so that run gives Σ|monomial|, what bounds the rounding of any order of summation (the
//               chunked kernel's and the recurrence's are orders of the same monomials). One exception: d_dt =
//               direct + A·d_a has A < 0 against positive parts, so on |inputs| the two parts cancel instead of
//               adding; there the magnitude is direct + |A|·d_a = 2·direct - d_dt(|inputs|), with direct[t, h] =
//               Σ_i |x[t, h·p+i]|·d_x(|inputs|)[t, h·p+i] / dt[t, h] (d_x = dt·Gs·B and direct = x·Gs·B, reference/
//               ssm.hpp); the difference is exact to double's 1e-16, 1e9 times below fp32's unit.
//   terms     = how many roundings an output's sums carry: a chunk's Q tokens, the N and p of the dot products,
//               the chunks passed in turn, and (d_A) the Bt·chunks partials; the exp of a segment sum of len terms
//               is off by len·u·|seg| relative, at most len·u/e absolute: within Q·u per term.
//   free      = the same run with A = 0 (no decay): an underflow to 0 of a decay or a product of fp32 costs at
//               most ~1e-38 times what multiplies it, within kTiny = 1e-35 of the decay-free magnitude. This is what
//               lets d_S_init and d_A be compared when every decay in them underflows in fp32 but not in double
//               (mixed steps: one token of dt = 500 at A = -0.4 leaves e^-200 = 1e-87 in double, 0 in fp32).
// Scale 1e3 is drawn: it scales x and S_init (and with them every output linearly), which fp32's range holds.
//
// The bf16 checks (".bf16": the kernels with x, B, C, y, d_y, d_x, d_B, d_C stored in bf16) draw the same cases,
// with those tensors rounded to bf16; every output is judged by DESIGN.md section 7's bf16 rule
// (compare_to_baseline): the truth is the double reference on the rounded inputs, the baseline the float
// reference on them, its bf16 tensors (y, d_x, d_B, d_C) rounded to bf16; the fp32 states and gradients (chunk,
// start and final states, d_dt, d_A, d_S_init, S0) are held to the same rule, unrounded.
#include <cmath>
#include <type_traits>

#include "cuda/converter.hpp"
#include "cuda/ssm.hpp"
#include "reference/converter.hpp"
#include "reference/mixer.hpp"
#include "reference/ssm.hpp"
#include "verify/bounds.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/kernel_case.hpp"

namespace transmamba {

namespace {
using namespace kernel_case;
using gpu::DeviceBuffer;

template <class S>
constexpr bool kBf16 = std::is_same_v<S, gpu::Bf16>;
// A storage-type S tensor of the kernels' inputs: rounded to S (to float first, as every input).
template <class S>
MatD round_to(const MatD& m) {
  return kBf16<S> ? round_to_bf16(round_to_float(m)) : round_to_float(m);
}
// The float reference's copy of an input (exact: every input is a float).
Mat<float> f32(const MatD& m) { return m.cast<float>(); }
// A float reference result as the kernel stores it: rounded to bf16 where S is (bf16 storage points).
template <class S>
MatD stored(const Mat<float>& m) {
  return kBf16<S> ? round_to_bf16(m.cast<double>()) : MatD(m.cast<double>());
}

// One tensor's comparison: an fp32 kernel's against the truth within bound or the floor; a bf16 kernel's by the
// bf16 rule against the float baseline (header comment), with the fp32 floor for values below fp32's range
// (kernel_case.hpp: compare_bf16).
template <class S>
Comparison judge(const std::string& name, const MatD& got, const MatD& truth, double bound, double floor, const MatD& baseline) {
  if constexpr (kBf16<S>) {
    return compare_bf16(name, got, truth, baseline, floor);
  } else {
    return compare(name, got, truth, bound, floor);
  }
}

// One case's draws and fp32-rounded inputs, per sequence: x [L, H·p], dt [L, H], B, C [L, G·N], S_init [H·p, N].
struct ScanInputs {
  Draws d;
  MixerConfig cfg;
  int L, Q;
  Regime regime;
  std::vector<MatD> x, dt, B, C, S_init;
  Vec<double> A;
  RandomTensors rnd{0};
  int HP() const { return cfg.E; }
  int GN() const { return cfg.G * cfg.N; }
  gpu::ScanShape shape() const { return {d.Bt, L, cfg.H, cfg.p(), cfg.G, cfg.N, Q}; }
  // The floor's terms (header comment); extra: what an output adds on top (e.g. d_A's partials).
  double terms(int extra = 0) const {
    return double(Q) * (cfg.N + cfg.p() + 4) + cfg.N + cfg.p() + gpu::scan_plan(shape()).chunks + extra + 8;
  }
};

// S: the kernels' storage type; x, B, C are rounded to it.
template <class S>
ScanInputs draw_scan_inputs(bool with_init) {
  ScanInputs in;
  in.d = draw_shape();  // its "input scale" is not used: the regime's scale is
  in.cfg = draw("cfg", gen_mixer_config());
  in.L = in.d.T;
  in.Q = draw("Q", rc::gen::oneOf(rc::gen::inRange(1, 9), rc::gen::just(gpu::kScanMaxChunk)));
  // Now and then whole chunks of Q = 128 longer than one slice of the backward's products (kScanProductSlice
  // tokens: a slice past the first reads its operands' rows from an offset), and a partial one after them.
  if (in.Q == gpu::kScanMaxChunk && draw("chunks past a product slice", rc::gen::element(false, false, true)))
    in.L = in.d.T = draw("T past a slice", rc::gen::inRange(gpu::kScanProductSlice + 1, gpu::kScanMaxChunk + 40));
  // Now and then p past the backward's product tiles (cuda/ssm.cu's block_product: 128 rows, 64 columns; its step 1
  // is a [p x N] product), with short chunks only (the bf16 forward's shared memory grows with p·Q).
  // Now and then p and N multiples of 8, so that the bf16 kernels stage their tiles 8 values at a time
  // (cuda/stage.cuh; unpadded rows are 16-byte aligned then, padded ones are not and go value by value).
  if (in.Q <= 8 && draw("p past 128", rc::gen::element(false, false, false, true))) {
    in.cfg.E = in.cfg.H * draw("p", rc::gen::inRange(129, 141));
  } else if (draw("p, N multiples of 8", rc::gen::element(false, false, true))) {
    in.cfg.E = in.cfg.H * draw("p", rc::gen::element(8, 16));
    in.cfg.N = draw("N", rc::gen::element(8, 16));
  }
  in.regime = draw("regime", gen_regime(Regimes::all));
  in.rnd = RandomTensors(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  RandomTensors& rnd = in.rnd;
  for (int b = 0; b < in.d.Bt; ++b) {
    in.dt.push_back(round_to_float(rnd.step_sizes<double>(in.L, in.cfg.H, in.regime)));
    in.x.push_back(round_to<S>(rnd.values<double>(in.L, in.cfg, in.dt.back(), in.regime)));
    in.B.push_back(round_to<S>(rnd.mat<double>(in.L, in.GN())));
    in.C.push_back(round_to<S>(rnd.mat<double>(in.L, in.GN())));
    in.S_init.push_back(with_init ? round_to_float(rnd.mat<double>(in.HP(), in.cfg.N, -in.regime.scale, in.regime.scale))
                                  : MatD::Zero(in.HP(), in.cfg.N));
  }
  in.A = round_to_float(rnd.decay_rates<double>(in.cfg.H, in.regime));
  return in;
}

// E6's D skip, one fp32 value in [-2, 2] per head.
Vec<double> draw_skip(ScanInputs& in) { return round_to_float(in.rnd.mat<double>(in.cfg.H, 1, -2, 2)).col(0); }

std::vector<MatD> abs_all(const std::vector<MatD>& m) {
  std::vector<MatD> out;
  for (const MatD& v : m) out.push_back(v.cwiseAbs());
  return out;
}

// The inputs on the device (x and B as column blocks of wider matrices when the case pads rows); x, B, C as S.
template <class S>
struct ScanDevice {
  gpu::Device dev;
  gpu::Stream stream;
  PackedAs<S> x_packed, B_packed;
  DeviceBuffer<S> x;
  DeviceBuffer<float> dt, A;
  DeviceBuffer<S> B, C;
  DeviceBuffer<float> S_init;
  ScanDevice(gpu::Backend backend, const ScanInputs& in)
      : dev(device_for(backend)),
        stream(dev),
        x_packed(pack<S>(in.x, in.d.pad)),
        B_packed(pack<S>(in.B, in.d.pad)),
        x(dev, x_packed.values),
        dt(dev, pack(in.dt, 0).values),
        A(dev, floats(in.A)),
        B(dev, B_packed.values),
        C(dev, pack<S>(in.C, 0).values),
        S_init(dev, pack(in.S_init, 0).values) {}
  gpu::View<S> x_view() { return x.view(x_packed.batch_stride, x_packed.row_stride); }
  gpu::View<S> B_view() { return B.view(B_packed.batch_stride, B_packed.row_stride); }
};

// A device output [Bt, rows, cols] whose rows are padded to cols + pad (NaN-filled, as a column block of a wider
// matrix would be): the view to write it and the values read back.
template <class S = float>
struct PaddedOut {
  int Bt, rows, cols, pad;
  DeviceBuffer<S> buf;
  PaddedOut(const gpu::Device& dev, int Bt_, int rows_, int cols_, int pad_)
      : Bt(Bt_), rows(rows_), cols(cols_), pad(pad_),
        buf(dev, std::vector<S>(std::size_t(Bt_) * rows_ * (cols_ + pad_), gpu::from_float<S>(std::nanf("")))) {}
  gpu::View<S> view() { return buf.view(std::int64_t(rows) * (cols + pad), cols + pad); }
  MatD got() const { return stacked(buf.download(), Bt, rows, cols, cols + pad); }
};

// The floor of one tensor (header comment): magnitude and the decay-free magnitude of the same shape.
double scan_floor(double terms, const MatD& magnitude, const MatD& free) {
  return rounding_floor(terms * kUnit * magnitude + kTiny * free);
}

template <class S>
std::vector<Comparison> ssm_case(gpu::Backend backend) {
  ScanInputs in = draw_scan_inputs<S>(draw("with S_init", rc::gen::arbitrary<bool>()));
  const bool final_only = draw("final state only (converter)", rc::gen::element(false, false, true));
  const MixerConfig& cfg = in.cfg;
  const int L = in.L, Q = in.Q, Bt = in.d.Bt, HP = in.HP();
  // E6's D skip in y (the layer's scan) half of the time.
  const bool with_skip = !final_only && draw("with D skip", rc::gen::arbitrary<bool>());
  const Vec<double> D = with_skip ? draw_skip(in) : Vec<double>();
  ScanDevice<S> dev(backend, in);
  DeviceBuffer<float> D_dev(dev.dev, floats(D));
  const gpu::ScanShape shape = in.shape();
  const gpu::ScanPlan plan = gpu::scan_plan(shape);
  PaddedOut<S> y_dev(dev.dev, Bt, L, HP, in.d.pad);
  DeviceBuffer<float> final_dev(dev.dev, std::size_t(Bt) * HP * cfg.N), chunk_dev(dev.dev, plan.state_values),
      start_dev(dev.dev, plan.state_values), decay_dev(dev.dev, plan.chunk_decays);
  gpu::ssm_chunked_forward(dev.stream, gpu::ScanForwardT<S>{shape, dev.x_view(), dev.dt.view(), dev.A.view(), dev.B_view(),
                                                            final_only ? gpu::View<S>{} : dev.C.view(), dev.S_init.view(),
                                                            final_only ? gpu::View<S>{} : y_dev.view(), final_dev.view(),
                                                            chunk_dev.view(), start_dev.view(), decay_dev.view(),
                                                            with_skip ? D_dev.view() : gpu::View<float>{}});
  dev.stream.synchronize();

  // The truth per sequence; its magnitudes (the same scan on |x|, |B|, |C|, |S_init|) and without decay (A = 0);
  // the float baseline (bf16 only). With the D skip, y and its magnitudes add D·x and |D|·|x|.
  const Vec<double> no_decay = Vec<double>::Zero(cfg.H);
  std::vector<MatD> y, fin, chunks, starts, y_mag, fin_mag, chunks_mag, starts_mag, y_free, fin_free, chunks_free, starts_free,
      y_base, fin_base, chunks_base, starts_base;
  for (int b = 0; b < Bt; ++b) {
    const auto r = ssm_chunked<double>(cfg, in.x[b], in.dt[b], in.A, in.B[b], in.C[b], in.S_init[b], Q);
    const MatD ax = in.x[b].cwiseAbs(), aB = in.B[b].cwiseAbs(), aC = in.C[b].cwiseAbs(), aS = in.S_init[b].cwiseAbs();
    const auto m = ssm_chunked<double>(cfg, ax, in.dt[b], in.A, aB, aC, aS, Q);
    const auto f = ssm_chunked<double>(cfg, ax, in.dt[b], no_decay, aB, aC, aS, Q);
    auto skip = [&](const MatD& x) { return with_skip ? skip_term<double>(cfg, D, x) : MatD::Zero(L, HP); };
    y.push_back(r.y + skip(in.x[b])), y_mag.push_back(m.y + skip(ax).cwiseAbs()), y_free.push_back(f.y + skip(ax).cwiseAbs());
    fin.push_back(r.final_state), fin_mag.push_back(m.final_state), fin_free.push_back(f.final_state);
    chunks.insert(chunks.end(), r.chunk_states.begin(), r.chunk_states.end());
    starts.insert(starts.end(), r.start_states.begin(), r.start_states.end());
    chunks_mag.insert(chunks_mag.end(), m.chunk_states.begin(), m.chunk_states.end());
    starts_mag.insert(starts_mag.end(), m.start_states.begin(), m.start_states.end());
    chunks_free.insert(chunks_free.end(), f.chunk_states.begin(), f.chunk_states.end());
    starts_free.insert(starts_free.end(), f.start_states.begin(), f.start_states.end());
    if (kBf16<S>) {
      const auto base = ssm_chunked<float>(cfg, f32(in.x[b]), f32(in.dt[b]), in.A.cast<float>(), f32(in.B[b]), f32(in.C[b]),
                                           f32(in.S_init[b]), Q);
      const Mat<float> base_y = with_skip ? Mat<float>(base.y + skip_term<float>(cfg, D.cast<float>(), f32(in.x[b]))) : base.y;
      y_base.push_back(stored<S>(base_y)), fin_base.push_back(base.final_state.cast<double>());
      for (const Mat<float>& c : base.chunk_states) chunks_base.push_back(c.cast<double>());
      for (const Mat<float>& c : base.start_states) starts_base.push_back(c.cast<double>());
    }
  }
  const double terms = in.terms();
  auto floor = [&](const std::vector<MatD>& mag, const std::vector<MatD>& free) {
    return mag.empty() ? 0.0 : scan_floor(terms, stack(mag), stack(free));
  };
  auto baseline = [](const std::vector<MatD>& base) { return base.empty() ? MatD() : stack(base); };
  auto got = [&](const DeviceBuffer<float>& buf, int count, int rows, int cols) { return stacked(buf.download(), count, rows, cols, cols); };
  const double bound = bounds::kCudaFp32Forward;
  std::vector<Comparison> out;
  if (plan.chunks > 0) {
    out.push_back(judge<S>("stage 1: chunk states", got(chunk_dev, Bt * plan.chunks, HP, cfg.N), stack(chunks), bound,
                           floor(chunks_mag, chunks_free), baseline(chunks_base)));
    out.push_back(judge<S>("stage 2: start states", got(start_dev, Bt * plan.chunks, HP, cfg.N), stack(starts), bound,
                           floor(starts_mag, starts_free), baseline(starts_base)));
  }
  if (!final_only && L > 0)
    out.push_back(judge<S>("y", y_dev.got(), stack(y), bound, floor(y_mag, y_free), baseline(y_base)));
  out.push_back(judge<S>("final state", got(final_dev, Bt, HP, cfg.N), stack(fin), bound, floor(fin_mag, fin_free), baseline(fin_base)));
  return out;
}

template <class S>
std::vector<Comparison> ssm_backward_case(gpu::Backend backend) {
  ScanInputs in = draw_scan_inputs<S>(draw("with S_init", rc::gen::arbitrary<bool>()));
  const bool with_d_y = draw("with d_y", rc::gen::element(true, true, false));
  const bool with_d_final = draw("with d_final_state", rc::gen::arbitrary<bool>());
  const bool want_d_init = draw("d_S_init wanted", rc::gen::element(true, true, false));
  const MixerConfig& cfg = in.cfg;
  const int L = in.L, Q = in.Q, Bt = in.d.Bt, HP = in.HP(), GN = in.GN();
  // E6's D skip (the layer's scan) half of the time with d_y: d_x gets D·d_y, and d_D_skip = Σ d_y·x.
  const bool with_skip = with_d_y && draw("with D skip", rc::gen::arbitrary<bool>());
  const Vec<double> D = with_skip ? draw_skip(in) : Vec<double>();
  std::vector<MatD> d_y, d_final;
  for (int b = 0; b < Bt; ++b) {
    d_y.push_back(with_d_y ? round_to<S>(in.rnd.mat<double>(L, HP)) : MatD::Zero(L, HP));
    d_final.push_back(with_d_final ? round_to_float(in.rnd.mat<double>(HP, cfg.N)) : MatD::Zero(HP, cfg.N));
  }

  ScanDevice<S> dev(backend, in);
  const gpu::ScanShape shape = in.shape();
  const gpu::ScanPlan plan = gpu::scan_plan(shape);
  const PackedAs<S> d_y_packed = pack<S>(d_y, in.d.pad);
  DeviceBuffer<float> final_dev(dev.dev, std::size_t(Bt) * HP * cfg.N), chunk_dev(dev.dev, plan.state_values),
      start_dev(dev.dev, plan.state_values), decay_dev(dev.dev, plan.chunk_decays),
      d_final_dev(dev.dev, pack(d_final, 0).values), d_A_dev(dev.dev, cfg.H), d_init_dev(dev.dev, std::size_t(Bt) * HP * cfg.N),
      ws_dev(dev.dev, plan.backward_workspace), D_dev(dev.dev, floats(D)), d_D_dev(dev.dev, cfg.H);
  DeviceBuffer<S> d_y_dev(dev.dev, d_y_packed.values);
  PaddedOut<S> d_x_dev(dev.dev, Bt, L, HP, in.d.pad), d_B_dev(dev.dev, Bt, L, GN, in.d.pad), d_C_dev(dev.dev, Bt, L, GN, 0);
  PaddedOut<float> d_dt_dev(dev.dev, Bt, L, cfg.H, 0);
  gpu::ssm_chunked_forward(dev.stream, gpu::ScanForwardT<S>{shape, dev.x_view(), dev.dt.view(), dev.A.view(), dev.B_view(),
                                                            dev.C.view(), dev.S_init.view(), {}, final_dev.view(),
                                                            chunk_dev.view(), start_dev.view(), decay_dev.view()});
  gpu::ScanBackwardT<S> args{};
  args.shape = shape;
  args.x = dev.x_view(), args.dt = dev.dt.view(), args.A = dev.A.view(), args.B = dev.B_view(), args.C = dev.C.view();
  args.S_init = dev.S_init.view();
  args.start_states = start_dev.view();
  if (with_d_y) args.d_y = d_y_dev.view(d_y_packed.batch_stride, d_y_packed.row_stride);
  if (with_d_final) args.d_final_state = d_final_dev.view();
  args.d_x = d_x_dev.view(), args.d_dt = d_dt_dev.view(), args.d_B = d_B_dev.view();
  if (with_d_y) args.d_C = d_C_dev.view();
  args.d_A = d_A_dev.view();
  if (want_d_init) args.d_S_init = d_init_dev.view();
  args.workspace = ws_dev.view();
  if (with_skip) args.D_skip = D_dev.view(), args.d_D_skip = d_D_dev.view();
  gpu::ssm_chunked_backward(dev.stream, args);
  dev.stream.synchronize();

  // The truth, its magnitudes on |inputs| and its decay-free magnitudes (A = 0), per sequence; the float
  // baseline (bf16 only). With the D skip, d_x and its magnitudes add D·d_y and |D|·|d_y| (reference/mixer.hpp).
  const Vec<double> no_decay = Vec<double>::Zero(cfg.H);
  std::vector<MatD> t_dx, t_ddt, t_dB, t_dC, t_dinit, m_dx, m_ddt, m_dB, m_dC, m_dinit, f_dx, f_ddt, f_dB, f_dC, f_dinit, b_dx,
      b_ddt, b_dB, b_dC, b_dinit;
  Vec<double> t_dA = Vec<double>::Zero(cfg.H), m_dA = t_dA, f_dA = t_dA, t_dD = t_dA, m_dD = t_dA;
  Vec<float> b_dA = Vec<float>::Zero(cfg.H), b_dD = b_dA;
  for (int b = 0; b < Bt; ++b) {
    const auto r = ssm_backward<double>(cfg, in.x[b], in.dt[b], in.A, in.B[b], in.C[b], in.S_init[b], d_y[b], d_final[b]);
    const MatD ax = in.x[b].cwiseAbs(), aB = in.B[b].cwiseAbs(), aC = in.C[b].cwiseAbs(), aS = in.S_init[b].cwiseAbs(),
               ady = d_y[b].cwiseAbs(), adf = d_final[b].cwiseAbs();
    const auto m = ssm_backward<double>(cfg, ax, in.dt[b], in.A, aB, aC, aS, ady, adf);
    const auto f = ssm_backward<double>(cfg, ax, in.dt[b], no_decay, aB, aC, aS, ady, adf);
    const MatD skip = with_skip ? skip_term<double>(cfg, D, d_y[b]) : MatD::Zero(L, HP),
               skip_mag = with_skip ? MatD(skip_term<double>(cfg, D.cwiseAbs(), ady)) : MatD::Zero(L, HP);
    if (with_skip) t_dD += skip_d_D<double>(cfg, in.x[b], d_y[b]), m_dD += skip_d_D<double>(cfg, ax, ady);
    t_dx.push_back(r.d_x + skip), t_ddt.push_back(r.d_dt), t_dB.push_back(r.d_B), t_dC.push_back(r.d_C), t_dinit.push_back(r.d_S_init);
    m_dx.push_back(m.d_x + skip_mag), m_ddt.push_back(d_dt_magnitude(cfg, ax, in.dt[b], m.d_x, m.d_dt)), m_dB.push_back(m.d_B);
    m_dC.push_back(m.d_C), m_dinit.push_back(m.d_S_init);
    f_dx.push_back(f.d_x + skip_mag), f_ddt.push_back(f.d_dt), f_dB.push_back(f.d_B), f_dC.push_back(f.d_C), f_dinit.push_back(f.d_S_init);
    t_dA += r.d_A, m_dA += m.d_A, f_dA += f.d_A;
    if (kBf16<S>) {
      const auto base = ssm_backward<float>(cfg, f32(in.x[b]), f32(in.dt[b]), in.A.cast<float>(), f32(in.B[b]), f32(in.C[b]),
                                            f32(in.S_init[b]), f32(d_y[b]), f32(d_final[b]));
      // d_x + D·d_y rounded once, as the kernel stores it.
      const Mat<float> base_dx = with_skip ? Mat<float>(base.d_x + skip_term<float>(cfg, D.cast<float>(), f32(d_y[b]))) : base.d_x;
      if (with_skip) b_dD += skip_d_D<float>(cfg, f32(in.x[b]), f32(d_y[b]));
      b_dx.push_back(stored<S>(base_dx)), b_ddt.push_back(base.d_dt.cast<double>()), b_dB.push_back(stored<S>(base.d_B));
      b_dC.push_back(stored<S>(base.d_C)), b_dinit.push_back(base.d_S_init.cast<double>());
      b_dA += base.d_A;
    }
  }
  auto baseline = [](const std::vector<MatD>& base) { return base.empty() ? MatD() : stack(base); };
  const double terms = in.terms();
  std::vector<Comparison> out;
  const auto grad = bounds::kCudaFp32Gradient;
  if (L > 0) {
    out.push_back(judge<S>("d_x", d_x_dev.got(), stack(t_dx), grad, scan_floor(terms, stack(m_dx), stack(f_dx)), baseline(b_dx)));
    out.push_back(judge<S>("d_dt", d_dt_dev.got(), stack(t_ddt), grad, scan_floor(terms, stack(m_ddt), stack(f_ddt)), baseline(b_ddt)));
    out.push_back(judge<S>("d_B", d_B_dev.got(), stack(t_dB), grad, scan_floor(terms * cfg.H / cfg.G, stack(m_dB), stack(f_dB)),
                           baseline(b_dB)));
    if (with_d_y)
      out.push_back(judge<S>("d_C", d_C_dev.got(), stack(t_dC), grad, scan_floor(terms * cfg.H / cfg.G, stack(m_dC), stack(f_dC)),
                             baseline(b_dC)));
  }
  out.push_back(judge<S>("d_A", as_matrix(d_A_dev.download(), cfg.H, 1), t_dA, grad,
                         scan_floor(in.terms(Bt * plan.chunks), m_dA, f_dA), b_dA.cast<double>()));
  if (want_d_init)
    out.push_back(judge<S>("d_S_init", stacked(d_init_dev.download(), Bt, HP, cfg.N, cfg.N), stack(t_dinit), grad,
                           scan_floor(terms, stack(m_dinit), stack(f_dinit)), baseline(b_dinit)));
  // d_D_skip: each chunk block's Q·p products, summed by thread then over the block's threads in order, then the
  // Bt·chunks partials (no decay in it: the magnitude is its own decay-free magnitude).
  if (with_skip)
    out.push_back(judge<S>("d_D_skip", as_matrix(d_D_dev.download(), cfg.H, 1), t_dD, grad,
                           scan_floor(in.terms(Bt * plan.chunks + int(gpu::kScanBackwardThreads)), m_dD, m_dD),
                           b_dD.cast<double>()));
  return out;
}

template <class S>
std::vector<Comparison> converter_case(gpu::Backend backend) {
  ScanInputs in = draw_scan_inputs<S>(false);
  const MixerConfig& cfg = in.cfg;
  const int P = in.L, Bt = in.d.Bt, HP = in.HP(), GN = in.GN();
  std::vector<MatD> d_S0;
  for (int b = 0; b < Bt; ++b) d_S0.push_back(round_to_float(in.rnd.mat<double>(HP, cfg.N)));
  ScanDevice<S> dev(backend, in);
  const gpu::ScanShape shape = in.shape();
  const gpu::ConverterPlan plan = gpu::converter_plan(shape);
  DeviceBuffer<float> S0_dev(dev.dev, std::size_t(Bt) * HP * cfg.N), d_S0_dev(dev.dev, pack(d_S0, 0).values),
      d_A_dev(dev.dev, cfg.H), fw_ws(dev.dev, plan.forward_workspace), bw_ws(dev.dev, plan.backward_workspace);
  PaddedOut<S> d_x_dev(dev.dev, Bt, P, HP, in.d.pad), d_B_dev(dev.dev, Bt, P, GN, in.d.pad);
  PaddedOut<float> d_dt_dev(dev.dev, Bt, P, cfg.H, 0);
  gpu::memory_converter_forward(dev.stream, gpu::ConverterForwardT<S>{shape, dev.x_view(), dev.dt.view(), dev.A.view(), dev.B_view(),
                                                                      S0_dev.view(), fw_ws.view()});
  gpu::memory_converter_backward(dev.stream, gpu::ConverterBackwardT<S>{shape, dev.x_view(), dev.dt.view(), dev.A.view(),
                                                                        dev.B_view(), d_S0_dev.view(), d_x_dev.view(),
                                                                        d_dt_dev.view(), d_B_dev.view(), d_A_dev.view(), bw_ws.view()});
  dev.stream.synchronize();

  const Vec<double> no_decay = Vec<double>::Zero(cfg.H);
  std::vector<MatD> t_S0, t_dx, t_ddt, t_dB, m_S0, m_dx, m_ddt, m_dB, f_S0, f_dx, f_ddt, f_dB, b_S0, b_dx, b_ddt, b_dB;
  Vec<double> t_dA = Vec<double>::Zero(cfg.H), m_dA = t_dA, f_dA = t_dA;
  Vec<float> b_dA = Vec<float>::Zero(cfg.H);
  for (int b = 0; b < Bt; ++b) {
    const MatD ax = in.x[b].cwiseAbs(), aB = in.B[b].cwiseAbs(), adS = d_S0[b].cwiseAbs();
    t_S0.push_back(memory_converter<double>(cfg, in.x[b], in.B[b], in.dt[b], in.A));
    m_S0.push_back(memory_converter<double>(cfg, ax, aB, in.dt[b], in.A));
    f_S0.push_back(memory_converter<double>(cfg, ax, aB, in.dt[b], no_decay));
    const auto r = memory_converter_backward<double>(cfg, in.x[b], in.B[b], in.dt[b], in.A, d_S0[b]);
    const auto m = memory_converter_backward<double>(cfg, ax, aB, in.dt[b], in.A, adS);
    const auto f = memory_converter_backward<double>(cfg, ax, aB, in.dt[b], no_decay, adS);
    t_dx.push_back(r.d_x), t_ddt.push_back(r.d_dt), t_dB.push_back(r.d_B);
    m_dx.push_back(m.d_x), m_ddt.push_back(d_dt_magnitude(cfg, ax, in.dt[b], m.d_x, m.d_dt)), m_dB.push_back(m.d_B);
    f_dx.push_back(f.d_x), f_ddt.push_back(f.d_dt), f_dB.push_back(f.d_B);
    t_dA += r.d_A, m_dA += m.d_A, f_dA += f.d_A;
    if (kBf16<S>) {
      const Mat<float> x = f32(in.x[b]), B = f32(in.B[b]), dt = f32(in.dt[b]);
      const Vec<float> A = in.A.cast<float>();
      b_S0.push_back(memory_converter<float>(cfg, x, B, dt, A).cast<double>());
      const auto base = memory_converter_backward<float>(cfg, x, B, dt, A, f32(d_S0[b]));
      b_dx.push_back(stored<S>(base.d_x)), b_ddt.push_back(base.d_dt.cast<double>()), b_dB.push_back(stored<S>(base.d_B));
      b_dA += base.d_A;
    }
  }
  auto baseline = [](const std::vector<MatD>& base) { return base.empty() ? MatD() : stack(base); };
  const double terms = in.terms();
  const auto grad = bounds::kCudaFp32Gradient;
  std::vector<Comparison> out{judge<S>("S0", stacked(S0_dev.download(), Bt, HP, cfg.N, cfg.N), stack(t_S0), bounds::kCudaFp32Forward,
                                       scan_floor(terms, stack(m_S0), stack(f_S0)), baseline(b_S0))};
  if (P > 0) {
    out.push_back(judge<S>("d_x", d_x_dev.got(), stack(t_dx), grad, scan_floor(terms, stack(m_dx), stack(f_dx)), baseline(b_dx)));
    out.push_back(judge<S>("d_dt", d_dt_dev.got(), stack(t_ddt), grad, scan_floor(terms, stack(m_ddt), stack(f_ddt)), baseline(b_ddt)));
    out.push_back(judge<S>("d_B", d_B_dev.got(), stack(t_dB), grad, scan_floor(terms * cfg.H / cfg.G, stack(m_dB), stack(f_dB)),
                           baseline(b_dB)));
  }
  out.push_back(judge<S>("d_A", as_matrix(d_A_dev.download(), cfg.H, 1), t_dA, grad,
                         scan_floor(in.terms(Bt * gpu::scan_plan(shape).chunks), m_dA, f_dA), b_dA.cast<double>()));
  return out;
}
}  // namespace

std::vector<Check> ssm_kernel_checks(gpu::Backend backend) {
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  const std::string name = gpu::to_string(backend);
  const std::string bf16 = " (x, B, C, y, d_y, d_x, d_B, d_C in bf16; the bf16 rule against the float reference)";
  return {{name + ".ssm",
           "chunked scan forward kernels (stages 1-2, y, final state; final state only = converter)" + where +
               " = double reference (fp32 bounds)",
           60, [backend] { return ssm_case<float>(backend); }},
          {name + ".ssm_backward",
           "chunked scan backward kernels (d_x, d_dt, d_B, d_C, d_A, d_S_init; d_y and d_final_state zero or not; "
               "with E6's D skip: d_x + D·d_y and d_D_skip)" + where +
               " = reference ssm_backward in double (fp32 bounds)",
           60, [backend] { return ssm_backward_case<float>(backend); }},
          {name + ".converter",
           "Memory Converter (E5) forward S0 and backward (d_x, d_dt, d_B, d_A) over the scan kernels" + where +
               " = reference/converter.hpp in double (fp32 bounds)",
           40, [backend] { return converter_case<float>(backend); }},
          {name + ".ssm.bf16", "bf16 chunked scan forward (tensor cores: stages 1, 3+4)" + where + bf16, 40,
           [backend] { return ssm_case<gpu::Bf16>(backend); }},
          {name + ".ssm_backward.bf16", "bf16 chunked scan backward" + where + bf16, 40,
           [backend] { return ssm_backward_case<gpu::Bf16>(backend); }},
          {name + ".converter.bf16", "bf16 Memory Converter (E5) forward S0 and backward" + where + bf16, 30,
           [backend] { return converter_case<gpu::Bf16>(backend); }}};
}

}  // namespace transmamba
