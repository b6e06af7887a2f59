// One TransMamba mixer layer, forward and backward (DESIGN.md section 2, E1-E8), for one sequence
// u: [T, D] and a TransPoint P in [0, T]:
//
//   E1  zxbcdt = u · W_in  ->  z, xBC, dt_raw                 (one projection for both modes)
//   E2  xBC = SiLU(conv(xBC))  ->  x (= V), B (= K), C (= Q)  (over the whole sequence, across P)
//   E3  dt = softplus(dt_raw + dt_bias),  A = -exp(A_log)
//   E4  tokens t < P:  y = grouped causal attention(Q = C, K = B, V = x) among the prefix
//   E5  S0 = MemoryConverter(K, V, dt) of the prefix          (the exact scan state at P)
//   E6  tokens t ≥ P:  y = scan from S0, + D_skip · x
//   E7  ŷ = RMSNorm_G(y) for t < P,  RMSNorm_G(y ⊙ SiLU(z)) for t ≥ P
//   E8  out = ŷ · W_out
//
// P = 0 is a Mamba2 layer, P = T is grouped causal attention; for any P the outputs of tokens t ≥ P are
// those of the P = 0 layer (exactness: S0 summarises the prefix as the scan would have).
#pragma once

#include <functional>
#include <string>

#include "reference/attention.hpp"
#include "reference/conv.hpp"
#include "reference/converter.hpp"
#include "reference/norm.hpp"
#include "reference/params.hpp"
#include "reference/projection.hpp"
#include "reference/ssm.hpp"
#include "reference/step_size.hpp"

namespace transmamba {

// Throws std::invalid_argument when P is outside [0, T].
inline void check_transpoint(int P, Eigen::Index T) {
  if (P < 0 || P > T)
    throw std::invalid_argument("TransPoint P=" + std::to_string(P) + " is outside [0, T=" + std::to_string(T) + "]");
}

// E6's skip of the scan tokens: D_skip[h] · x[t, h·p + i]. x: [L, H·p] -> [L, H·p]. (The forward and the decode
// step of inference.hpp add it to the scan's y; the backward adds skip_term(D_skip, d_y) to the scan's d_x.)
template <class S>
Mat<S> skip_term(const MixerConfig& cfg, const Vec<S>& D_skip, const Mat<S>& x) {
  const int p = cfg.p();
  check_shape("x", x, x.rows(), cfg.E);
  check_size("D_skip", D_skip, cfg.H);
  Mat<S> out(x.rows(), cfg.E);
  for (int h = 0; h < cfg.H; ++h) out.middleCols(h * p, p) = D_skip(h) * x.middleCols(h * p, p);
  return out;
}
template <class S>
Mat<S> skip_term(const MixerParams<S>& prm, const Mat<S>& x) {
  return skip_term(prm.cfg, prm.D_skip, x);
}
// The D skip's parameter gradient: d_D_skip[h] = Σ_{t, i} d_y[t, h·p + i] · x[t, h·p + i]. x, d_y: [L, H·p].
template <class S>
Vec<S> skip_d_D(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& d_y) {
  const int p = cfg.p();
  check_shape("x", x, x.rows(), cfg.E);
  check_shape("d_y", d_y, x.rows(), cfg.E);
  Vec<S> d_D(cfg.H);
  for (int h = 0; h < cfg.H; ++h) d_D(h) = d_y.middleCols(h * p, p).cwiseProduct(x.middleCols(h * p, p)).sum();
  return d_D;
}

// The storage points of a lower-precision layer (DESIGN.md section 7's bf16 rule): the bf16 layer on a device
// (cuda/mixer.cpp) keeps its per-token activations and their gradients in bf16 memory, so its baseline is the
// float reference with `store` = round to bf16 applied to each tensor where that layer writes one: E1's zxbcdt,
// E2's xBC, E4's y and E6's y (with the D skip: the scan's output kernel adds it before its one store), E7's
// y_normed, E8's out; in the backward d_y_normed, both norms' d_y and d_z, the scan's d_x (with the D skip's
// D·d_y: the scan's chunk kernel adds it before its one store), d_B, d_C, the converter's and attention's d_x and d_B and their sum, attention's d_C, the
// conv's d_xBC_in, d_dt_raw and d_u. An empty function (the default) stores exactly.
template <class S>
using StorageRounding = std::function<Mat<S>(const Mat<S>&)>;
template <class S>
Mat<S> stored(const StorageRounding<S>& store, const Mat<S>& m) {
  return store ? store(m) : m;
}

// Every intermediate of the forward: what the backward needs, and the stage outputs fixtures store.
template <class S>
struct MixerForward {
  int P = 0;
  Mat<S> u;                      // [T, D]
  Mat<S> z, xBC_in, dt_raw;      // E1: [T, E], [T, E+2GN], [T, H]
  Mat<S> xBC;                    // E2: [T, E+2GN] after conv + SiLU
  Mat<S> x, B, C;                // E2: [T, H·p], [T, G·N], [T, G·N]
  Mat<S> dt;                     // E3: [T, H]
  Vec<S> A;                      // E3: [H]
  Mat<S> S0;                     // E5: [H·p, N]
  ChunkedScanResult<S> scan;     // E6: the chunked scan of tokens P..T-1 (its y excludes the D skip)
  Mat<S> y;                      // E4/E6: [T, H·p] before the norm
  Mat<S> y_normed;               // E7: [T, E]
  Mat<S> out;                    // E8: [T, D]
  Mat<S> final_state;            // [H·p, N]: the scan state after token T-1 (the decode state, DESIGN.md 6)
};

// u: [T, D] (T >= 1), P in [0, T] -> every intermediate, out: [T, D].
template <class S>
MixerForward<S> mixer_forward(const MixerParams<S>& prm, const Mat<S>& u, int P, const StorageRounding<S>& store = {}) {
  prm.validate();
  const MixerConfig& cfg = prm.cfg;
  if (u.rows() < 1) throw std::invalid_argument("u: the sequence must hold at least one token");
  check_shape("u", u, u.rows(), cfg.D);
  check_finite("u", u);
  check_transpoint(P, u.rows());
  const Eigen::Index T = u.rows(), L = T - P;
  MixerForward<S> f;
  f.P = P;
  f.u = u;
  // E1: the shared input projection.
  InProj<S> in = split_in_proj(cfg, stored(store, linear_forward(u, prm.W_in)));
  f.z = in.z, f.xBC_in = in.xBC, f.dt_raw = in.dt_raw;
  // E2: conv + SiLU over the whole sequence, then x (= V), B (= K), C (= Q).
  f.xBC = stored(store, conv_silu_forward(f.xBC_in, prm.conv_w, prm.conv_b));
  XBC<S> xbc = split_xbc(cfg, f.xBC);
  f.x = xbc.x, f.B = xbc.B, f.C = xbc.C;
  // E3: step sizes and decay rates.
  f.dt = step_size(f.dt_raw, prm.dt_bias);
  f.A = decay_rate(prm.A_log);
  f.y.resize(T, cfg.E);
  // E4: attention among the prefix tokens.
  f.y.topRows(P) = stored(store, attention_forward<S>(cfg, f.C.topRows(P), f.B.topRows(P), f.x.topRows(P)));
  // E5: the prefix becomes the scan state at P.
  f.S0 = memory_converter<S>(cfg, f.x.topRows(P), f.B.topRows(P), f.dt.topRows(P), f.A);
  // E6: the scan from S0 over the remaining tokens (chunked, as the GPU runs it), plus the D skip.
  f.scan = ssm_chunked<S>(cfg, f.x.bottomRows(L), f.dt.bottomRows(L), f.A, f.B.bottomRows(L), f.C.bottomRows(L),
                          f.S0, cfg.chunk);
  f.y.bottomRows(L) = stored(store, Mat<S>(f.scan.y + skip_term(prm, Mat<S>(f.x.bottomRows(L)))));
  f.final_state = P < T ? f.scan.final_state : f.S0;
  // E7: the norm, gated for scan tokens only.
  const Mat<S> z_scan = f.z.bottomRows(L);
  f.y_normed.resize(T, cfg.E);
  f.y_normed.topRows(P) = stored(store, rmsnorm_forward<S>(f.y.topRows(P), prm.norm_w, cfg.G));
  f.y_normed.bottomRows(L) = stored(store, rmsnorm_forward<S>(f.y.bottomRows(L), prm.norm_w, cfg.G, &z_scan));
  // E8: the shared output projection.
  f.out = stored(store, linear_forward(f.y_normed, prm.W_out));
  return f;
}

template <class S>
struct MixerGrads {
  MixerParams<S> d_params;  // the gradient of every parameter, in the parameters' shapes
  Mat<S> d_u;               // [T, D]
  Mat<S> d_zxbcdt;          // [T, 2E + 2GN + H]: E1's output gradient [d_z | d_xBC_in | d_dt_raw] (kernel checks' floors)
};

// Backward of mixer_forward from d_out: [T, D]. The gradient of S0 flows through the converter into the
// prefix tokens' x, B, dt and A_log; the gradient of every token's x, B, C and dt then flows through
// the conv and the input projection.
template <class S>
MixerGrads<S> mixer_backward(const MixerParams<S>& prm, const MixerForward<S>& f, const Mat<S>& d_out,
                             const StorageRounding<S>& store = {}) {
  const MixerConfig& cfg = prm.cfg;
  const int P = f.P;
  const Eigen::Index T = f.u.rows(), L = T - P;
  check_shape("d_out", d_out, T, cfg.D);
  MixerGrads<S> g{MixerParams<S>::zeros(cfg), Mat<S>()};
  // E8
  LinearGrads<S> out_proj = linear_backward(f.y_normed, prm.W_out, d_out);
  g.d_params.W_out = out_proj.d_W;
  out_proj.d_in = stored(store, out_proj.d_in);
  // E7
  const Mat<S> z_scan = f.z.bottomRows(L);
  NormGrads<S> norm_att = rmsnorm_backward<S>(f.y.topRows(P), prm.norm_w, cfg.G, nullptr, out_proj.d_in.topRows(P));
  NormGrads<S> norm_scan =
      rmsnorm_backward<S>(f.y.bottomRows(L), prm.norm_w, cfg.G, &z_scan, out_proj.d_in.bottomRows(L));
  g.d_params.norm_w = norm_att.d_w + norm_scan.d_w;
  norm_att.d_v = stored(store, norm_att.d_v);
  norm_scan.d_v = stored(store, norm_scan.d_v);
  norm_scan.d_z = stored(store, norm_scan.d_z);
  Mat<S> d_z = Mat<S>::Zero(T, cfg.E);
  d_z.bottomRows(L) = norm_scan.d_z;
  // E6: the D skip, then the scan (its gradient reaches S0).
  const Mat<S>& d_y_scan = norm_scan.d_v;
  Mat<S> d_x = Mat<S>::Zero(T, cfg.E), d_B = Mat<S>::Zero(T, cfg.G * cfg.N), d_C = d_B, d_dt = Mat<S>::Zero(T, cfg.H);
  g.d_params.D_skip = skip_d_D<S>(cfg, f.x.bottomRows(L), d_y_scan);
  ScanGrads<S> scan = ssm_backward<S>(cfg, f.x.bottomRows(L), f.dt.bottomRows(L), f.A, f.B.bottomRows(L),
                                      f.C.bottomRows(L), f.S0, d_y_scan, Mat<S>::Zero(cfg.E, cfg.N));
  d_x.bottomRows(L) = stored(store, Mat<S>(skip_term(prm, d_y_scan) + scan.d_x));
  d_B.bottomRows(L) = stored(store, scan.d_B);
  d_C.bottomRows(L) = stored(store, scan.d_C);
  d_dt.bottomRows(L) = scan.d_dt;
  Vec<S> d_A = scan.d_A;
  // E5: the converter carries d_S0 back to the prefix.
  ConverterGrads<S> conv_s0 =
      memory_converter_backward<S>(cfg, f.x.topRows(P), f.B.topRows(P), f.dt.topRows(P), f.A, scan.d_S_init);
  // E4: attention among the prefix.
  AttentionGrads<S> att = attention_backward<S>(cfg, f.C.topRows(P), f.B.topRows(P), f.x.topRows(P), norm_att.d_v);
  d_x.topRows(P) = stored(store, Mat<S>(stored(store, conv_s0.d_x) + stored(store, att.d_x)));
  d_B.topRows(P) = stored(store, Mat<S>(stored(store, conv_s0.d_B) + stored(store, att.d_B)));
  d_C.topRows(P) = stored(store, att.d_C);
  d_dt.topRows(P) = conv_s0.d_dt;
  d_A += conv_s0.d_A;
  // E3
  StepSizeGrads<S> steps = step_size_backward(f.dt_raw, prm.dt_bias, d_dt);
  g.d_params.dt_bias = steps.d_dt_bias;
  g.d_params.A_log = decay_rate_backward(prm.A_log, d_A);
  // E2
  ConvGrads<S> conv = conv_silu_backward(f.xBC_in, prm.conv_w, prm.conv_b, join_xbc<S>(cfg, {d_x, d_B, d_C}));
  g.d_params.conv_w = conv.d_w;
  g.d_params.conv_b = conv.d_b;
  // E1
  g.d_zxbcdt = join_in_proj<S>(cfg, {d_z, stored(store, conv.d_v), stored(store, steps.d_dt_raw)});
  LinearGrads<S> in_proj = linear_backward(f.u, prm.W_in, g.d_zxbcdt);
  g.d_params.W_in = in_proj.d_W;
  g.d_u = stored(store, in_proj.d_in);
  return g;
}

}  // namespace transmamba
