// Kernel checks of the grouped causal attention kernels (E4, cuda/attention.hpp): y, d_C, d_B, d_x against the
// double reference (reference/attention.hpp) on the same fp32 inputs, under DESIGN.md section 7's fp32 bounds;
// and the bf16 kernels ("attention.bf16": the same draws rounded to bf16, also lse) under its bf16 rule.
//
// Shapes with the edges on purpose: Bt in {1, 3}; P = 1 often, otherwise up to 70 (not a multiple of the 32-row
// tiles); G in {1, 2, 4} with 1..3 heads per group (so G = 1, G = H and G a proper divisor of H all occur);
// N, p in {16, 32} mostly, 64 and 128 at P <= 24. C, B and x are column blocks of one xBC [P, E + 2GN + pad]
// buffer (x at 0, B at E, C at E + GN; the padding NaN), as in the layer, and d_C, d_B, d_x are written into
// the same layout. C and B are drawn with magnitude 1 or 30: at 30 the scores reach thousands, exp without the
// row max would overflow fp32, and most rows are one-hot. A second forward asks for the queries first_query ..
// P-1 only (first_query = P-1, decode's one query, or at random), whose y must be those rows of the reference.
//
// Rounding floor (kernel_case.hpp). With a(t, s) = |C[t]|·|B[s]| / sqrt(N), a score's fp32 error is at most
// eS = (N + 8)·u·a (the dot product, the scaling, the subtraction of a max). A weight w_s = exp(S_s) / Σ exp
// moves by w_s·(δS_s - Σ_s' w_s' δS_s') = w_s·Σ_{s'≠s} w_s'(δS_s - δS_s'), so its error is at most
//   eW(t, s) = w_s·((1 - w_s)·eS_s + Σ_{s'≠s} w_s'·eS_s' + (n + 10)·u)
// (the normalizer's n + 10 roundings); the backward's w = exp(score - lse) also carries the rounding of lse and
// of the difference, 4·u·max_s a relative. That is small at one-hot rows and large only where scores of
// thousands nearly tie. Every gradient's floor then follows the kernel's formulas term by
// term on magnitudes (kernel_case.hpp: n·u·Σ|terms| per sum, plus the propagated errors of its inputs).
#include <cmath>
#include <limits>

#include "cuda/attention.hpp"
#include "reference/attention.hpp"
#include "verify/bounds.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/generators.hpp"
#include "verify/kernel_case.hpp"

namespace transmamba {

namespace {

using namespace kernel_case;

struct AttentionFloors {
  MatD y, d_C, d_B, d_x;  // per sequence, the error estimates of kernel_case.hpp's rounding floor
};

// The error estimates of the kernels' fp32 results for one sequence (the header comment's model).
AttentionFloors attention_floors(const MixerConfig& cfg, const MatD& C, const MatD& B, const MatD& x, const MatD& d_y) {
  const int P = int(x.rows()), N = cfg.N, p = cfg.p(), R = cfg.heads_per_group();
  const double u = kUnit, inv = 1 / std::sqrt(double(N));
  AttentionFloors f{MatD::Zero(P, cfg.E), MatD::Zero(P, cfg.G * N), MatD::Zero(P, cfg.G * N), MatD::Zero(P, cfg.E)};
  for (int g = 0; g < cfg.G; ++g) {
    const MatD Ca = C.middleCols(g * N, N).cwiseAbs(), Ba = B.middleCols(g * N, N).cwiseAbs();
    const MatD a = Ca * Ba.transpose() * inv;
    const MatD w = attention_weights(cfg, C, B, g);
    const MatD eS = (N + 8) * u * a;
    MatD eW = MatD::Zero(P, P), eW_lse = MatD::Zero(P, P);  // the forward's weights; the backward's, from lse
    for (int t = 0; t < P; ++t) {
      const double ew = w.row(t).cwiseProduct(eS.row(t)).sum(), amax = a.row(t).head(t + 1).maxCoeff();
      for (int s = 0; s <= t; ++s) {
        eW(t, s) = w(t, s) * ((1 - w(t, s)) * eS(t, s) + (ew - w(t, s) * eS(t, s)) + (t + 10) * u);
        eW_lse(t, s) = eW(t, s) + w(t, s) * 4 * u * amax;  // exp(score - lse): lse and the difference round
      }
    }
    const Vec<double> n_keys = Vec<double>::LinSpaced(P, 1, P);  // keys of query t: t + 1
    MatD d_w = MatD::Zero(P, P), a_dw = MatD::Zero(P, P);
    Vec<double> D = Vec<double>::Zero(P), e_D = Vec<double>::Zero(P);
    for (int h = g * R; h < (g + 1) * R; ++h) {
      const MatD xh = x.middleCols(h * p, p), dyh = d_y.middleCols(h * p, p);
      const MatD yh = w * xh;
      const MatD ey = eW * xh.cwiseAbs() + ((n_keys.array() + 10) * u).matrix().asDiagonal() * (w * xh.cwiseAbs());
      f.y.middleCols(h * p, p) = ey;
      d_w += dyh * xh.transpose();
      a_dw += dyh.cwiseAbs() * xh.cwiseAbs().transpose();
      D += dyh.cwiseProduct(yh).rowwise().sum();
      e_D += (R * p + 2) * u * dyh.cwiseAbs().cwiseProduct(yh.cwiseAbs()).rowwise().sum() +
             dyh.cwiseAbs().cwiseProduct(ey).rowwise().sum();
      f.d_x.middleCols(h * p, p) = eW_lse.transpose() * dyh.cwiseAbs() + (P + 4) * u * (w.transpose() * dyh.cwiseAbs());
    }
    const MatD diff = d_w.colwise() - D, d_s = w.cwiseProduct(diff);
    const MatD e_ds = eW_lse.cwiseProduct(diff.cwiseAbs()) +
                      w.cwiseProduct(((R * p + 2) * u * a_dw).colwise() + e_D) + 3 * u * d_s.cwiseAbs();
    f.d_C.middleCols(g * N, N) = inv * (e_ds * Ba + (P + 4) * u * d_s.cwiseAbs() * Ba);
    f.d_B.middleCols(g * N, N) = inv * (e_ds.transpose() * Ca + (P + 4) * u * d_s.cwiseAbs().transpose() * Ca);
  }
  return f;
}

// One drawn case, shared by the fp32 and the bf16 checks: the shape and the inputs, rounded to what the kernels
// read (fp32, or bf16 for the bf16 kernels).
struct AttentionDraw {
  MixerConfig cfg;
  int Bt, P, pad, first;
  std::vector<MatD> x, B, C, d_y;
};
AttentionDraw draw_attention(MatD (*round)(const MatD&)) {
  AttentionDraw d;
  d.Bt = draw("Bt", rc::gen::element(1, 3));
  const int G = draw("G", rc::gen::element(1, 2, 4)), R = draw("heads per group", rc::gen::inRange(1, 4));
  const int N = draw("N", rc::gen::element(16, 16, 16, 32, 32, 32, 64, 128));
  const int p = draw("p", rc::gen::element(16, 16, 16, 32, 32, 32, 64, 128));
  // P beyond one key tile (32) often, where the online softmax rescales what earlier tiles accumulated; at
  // N or p > 32 at most 24 (the emulation's cost). Now and then past two query tiles of the bf16 forward (64
  // queries each): up to 5 key tiles through its two buffers, with the next tile's copies in flight
  // (cuda/attention.cu), and warps that reach their diagonals in different key tiles.
  const bool wide = N > 32 || p > 32;
  d.P = draw("P", wide ? rc::gen::oneOf(rc::gen::just(1), rc::gen::inRange(1, 25))
                       : rc::gen::oneOf(rc::gen::just(1), rc::gen::inRange(1, 71), rc::gen::inRange(33, 71),
                                        rc::gen::inRange(129, 161)));
  d.pad = draw("row padding", rc::gen::element(0, 0, 3));
  const double scale = draw("C, B scale", rc::gen::element(1.0, 1.0, 30.0));
  // A second forward asks for the queries first .. P-1 only (decode asks for the last alone).
  d.first = draw("first query", rc::gen::oneOf(rc::gen::just(d.P - 1), rc::gen::inRange(0, d.P)));
  d.cfg.H = G * R, d.cfg.G = G, d.cfg.N = N, d.cfg.E = d.cfg.H * p;
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  for (int b = 0; b < d.Bt; ++b) {
    d.x.push_back(round(rnd.mat<double>(d.P, d.cfg.E)));
    d.B.push_back(round(rnd.mat<double>(d.P, G * N, -scale, scale)));
    d.C.push_back(round(rnd.mat<double>(d.P, G * N, -scale, scale)));
    d.d_y.push_back(round(rnd.mat<double>(d.P, d.cfg.E)));
  }
  return d;
}

// What the kernels (storage S) returned for a drawn case, each sequence's rows stacked: y, the y of the queries
// first .. P-1 (a second forward), lse [Bt·G, P] (row b·G + g), d_C, d_B, d_x. C, B and x are column blocks of
// one xBC [P, E + 2GN + pad] buffer, as in the layer, and the gradients are written into the same layout.
struct AttentionGot {
  MatD y, tail_y, lse, d_C, d_B, d_x;
};
template <class S>
AttentionGot run_attention(gpu::Backend backend, const AttentionDraw& d) {
  const int Bt = d.Bt, P = d.P, G = d.cfg.G, N = d.cfg.N, p = d.cfg.p(), E = d.cfg.E, GN = G * N;
  std::vector<MatD> xBC(Bt);
  for (int b = 0; b < Bt; ++b) {
    xBC[b] = MatD(P, E + 2 * GN);
    xBC[b] << d.x[b], d.B[b], d.C[b];
  }
  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::AttentionShape shape{Bt, P, d.cfg.H, G, N, p};
  const gpu::AttentionPlan plan = gpu::attention_plan(shape);
  const PackedAs<S> in = pack<S>(xBC, d.pad), d_y_packed = pack<S>(d.d_y, d.pad);
  // d_xBC starts as NaN: the kernels write its valid columns only, so a column they miss shows, and the padding
  // copied back with the rest is defined (compute-sanitizer's initcheck).
  const std::vector<S> unwritten(in.values.size(), gpu::from_float<S>(std::numeric_limits<float>::quiet_NaN()));
  DeviceBuffer<S> xBC_dev(dev, in.values), d_y_dev(dev, d_y_packed.values), y_dev(dev, std::size_t(Bt) * P * E),
      d_xBC_dev(dev, unwritten);
  DeviceBuffer<float> lse_dev(dev, plan.lse), ws_dev(dev, plan.workspace);
  auto in_view = [&](const DeviceBuffer<S>& buf, std::int64_t at) { return buf.view_at(at, in.batch_stride, in.row_stride); };
  const gpu::View<const S> x_v = in_view(xBC_dev, 0), B_v = in_view(xBC_dev, E), C_v = in_view(xBC_dev, E + GN);
  gpu::attention_forward(stream, gpu::AttentionForwardT<S>{shape, C_v, B_v, x_v, y_dev.view(), lse_dev.view()});
  gpu::attention_backward(stream, gpu::AttentionBackwardT<S>{shape, C_v, B_v, x_v, lse_dev.view(),
                                                              d_y_dev.view(d_y_packed.batch_stride, d_y_packed.row_stride),
                                                              in_view(d_xBC_dev, E + GN), in_view(d_xBC_dev, E),
                                                              in_view(d_xBC_dev, 0), ws_dev.view()});
  const gpu::AttentionShape tail_shape{Bt, P, d.cfg.H, G, N, p, d.first};
  DeviceBuffer<S> tail_y(dev, std::size_t(Bt) * (P - d.first) * E);
  DeviceBuffer<float> tail_lse(dev, gpu::attention_plan(tail_shape).lse);
  gpu::attention_forward(stream, gpu::AttentionForwardT<S>{tail_shape, in_view(xBC_dev, E + GN + d.first * in.row_stride),
                                                            B_v, x_v, tail_y.view(), tail_lse.view()});
  stream.synchronize();
  const std::vector<S> d_xBC = d_xBC_dev.download();
  auto got = [&](int col, int cols) {  // columns [col, col + cols) of every sequence of d_xBC, stacked
    MatD m(Bt * P, cols);
    for (int b = 0; b < Bt; ++b)
      for (int r = 0; r < P; ++r)
        for (int c = 0; c < cols; ++c) m(b * P + r, c) = gpu::to_float(d_xBC[b * in.batch_stride + r * in.row_stride + col + c]);
    return m;
  };
  return {stacked(y_dev.download(), Bt, P, E, E), stacked(tail_y.download(), Bt, P - d.first, E, E),
          stacked(lse_dev.download(), Bt, G, P, P), got(E + GN, GN), got(E, GN), got(0, E)};
}

std::vector<Comparison> attention_case(gpu::Backend backend) {
  const AttentionDraw d = draw_attention(round_to_float);
  const MixerConfig& cfg = d.cfg;
  const int Bt = d.Bt, P = d.P, first = d.first;
  const AttentionGot got = run_attention<float>(backend, d);
  std::vector<MatD> y(Bt), dC(Bt), dB(Bt), dx(Bt), ey(Bt), edC(Bt), edB(Bt), edx(Bt);
  for (int b = 0; b < Bt; ++b) {
    y[b] = attention_forward(cfg, d.C[b], d.B[b], d.x[b]);
    const AttentionGrads<double> g = attention_backward(cfg, d.C[b], d.B[b], d.x[b], d.d_y[b]);
    dC[b] = g.d_C, dB[b] = g.d_B, dx[b] = g.d_x;
    const AttentionFloors f = attention_floors(cfg, d.C[b], d.B[b], d.x[b], d.d_y[b]);
    ey[b] = f.y, edC[b] = f.d_C, edB[b] = f.d_B, edx[b] = f.d_x;
  }
  std::vector<MatD> tail(Bt), tail_floor(Bt);
  for (int b = 0; b < Bt; ++b) tail[b] = y[b].bottomRows(P - first), tail_floor[b] = ey[b].bottomRows(P - first);
  return {compare("y", got.y, stack(y), bounds::kCudaFp32Forward, rounding_floor(stack(ey))),
          compare("y of the queries first_query .. P-1", got.tail_y, stack(tail), bounds::kCudaFp32Forward,
                  rounding_floor(stack(tail_floor))),
          compare("d_C", got.d_C, stack(dC), bounds::kCudaFp32Gradient, rounding_floor(stack(edC))),
          compare("d_B", got.d_B, stack(dB), bounds::kCudaFp32Gradient, rounding_floor(stack(edB))),
          compare("d_x", got.d_x, stack(dx), bounds::kCudaFp32Gradient, rounding_floor(stack(edx)))};
}

// The log-sum-exp of one sequence's queries, [G, P] (row g), in the scalar T: per group, the scores
// C·Bᵀ / sqrt(N) and lse[t] = max_{s≤t} score + log Σ_{s≤t} exp(score - max), the kernels' definition.
template <class T>
MatD attention_lse(const MixerConfig& cfg, const MatD& C_in, const MatD& B_in) {
  const Mat<T> C = C_in.cast<T>(), B = B_in.cast<T>();
  const int N = cfg.N;
  const Eigen::Index P = C.rows();
  MatD lse(cfg.G, P);
  for (int g = 0; g < cfg.G; ++g) {
    const Mat<T> scores = C.middleCols(g * N, N) * B.middleCols(g * N, N).transpose() / std::sqrt(T(N));
    for (Eigen::Index t = 0; t < P; ++t) {
      const T mx = scores.row(t).head(t + 1).maxCoeff();
      lse(g, t) = double(mx + std::log((scores.row(t).head(t + 1).array() - mx).exp().sum()));
    }
  }
  return lse;
}

// The bf16 kernels (DESIGN.md section 7's bf16 rule): inputs drawn as for fp32 and rounded to bf16; truth = the
// double reference on them; baseline = the float reference on them, rounded to bf16 where the kernels store
// bf16 (y, the gradients; lse stays fp32). The backward reads the bf16 forward's y (for the rowsum D).
std::vector<Comparison> attention_bf16_case(gpu::Backend backend) {
  const AttentionDraw d = draw_attention(round_to_bf16);
  const MixerConfig& cfg = d.cfg;
  const int Bt = d.Bt, P = d.P, first = d.first;
  const AttentionGot got = run_attention<gpu::Bf16>(backend, d);
  std::vector<MatD> y(Bt), tail(Bt), lse(Bt), dC(Bt), dB(Bt), dx(Bt);
  std::vector<MatD> yf(Bt), tailf(Bt), lsef(Bt), dCf(Bt), dBf(Bt), dxf(Bt);
  for (int b = 0; b < Bt; ++b) {
    y[b] = attention_forward(cfg, d.C[b], d.B[b], d.x[b]);
    tail[b] = y[b].bottomRows(P - first);
    lse[b] = attention_lse<double>(cfg, d.C[b], d.B[b]);
    const AttentionGrads<double> g = attention_backward(cfg, d.C[b], d.B[b], d.x[b], d.d_y[b]);
    dC[b] = g.d_C, dB[b] = g.d_B, dx[b] = g.d_x;
    const Mat<float> C = d.C[b].cast<float>(), B = d.B[b].cast<float>(), x = d.x[b].cast<float>();
    yf[b] = round_to_bf16(attention_forward(cfg, C, B, x).cast<double>());
    tailf[b] = yf[b].bottomRows(P - first);
    lsef[b] = attention_lse<float>(cfg, d.C[b], d.B[b]);
    const AttentionGrads<float> gf = attention_backward(cfg, C, B, x, Mat<float>(d.d_y[b].cast<float>()));
    dCf[b] = round_to_bf16(gf.d_C.cast<double>()), dBf[b] = round_to_bf16(gf.d_B.cast<double>());
    dxf[b] = round_to_bf16(gf.d_x.cast<double>());
  }
  return {compare_bf16("y", got.y, stack(y), stack(yf)),
          compare_bf16("y of the queries first_query .. P-1", got.tail_y, stack(tail), stack(tailf)),
          compare_bf16("lse", got.lse, stack(lse), stack(lsef)),
          compare_bf16("d_C", got.d_C, stack(dC), stack(dCf)),
          compare_bf16("d_B", got.d_B, stack(dB), stack(dBf)),
          compare_bf16("d_x", got.d_x, stack(dx), stack(dxf))};
}

}  // namespace

std::vector<Check> attention_kernel_checks(gpu::Backend backend) {
  const std::string prefix = std::string(gpu::to_string(backend)) + ".";
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  return {{prefix + "attention",
           "grouped causal attention kernels (y, also from a first_query on; d_C, d_B, d_x)" + where + " = double reference (fp32 bounds)", 30,
           [backend] { return attention_case(backend); }},
          {prefix + "attention.bf16",
           "bf16 attention (tensor-core forward: y, also from a first_query on, lse; backward: d_C, d_B, d_x)" + where +
               " vs the double reference, within the bf16 bound of the float reference's error (bf16 rule)",
           25, [backend] { return attention_bf16_case(backend); }}};
}

}  // namespace transmamba
