// What tm-bench times, counted: each kernel of one mixer layer (DESIGN.md section 2, E1-E8) for Bt sequences of
// T tokens with TransPoint P, its useful FLOPs and minimal bytes, forward and backward, and the time floor on a
// stated device, max(FLOPs / peak, bytes / bandwidth). Plain C++, no device: `tm-bench --plan` prints it, and
// on a GPU it turns measured times into TFLOP/s and GB/s.
//
// FLOPs: a multiply-add is 2; exponentials, decays, SiLU, the D skip and the norm are not counted (O(T·E)).
// With pairs = P (P + 1) / 2, the causal triangle of the attention tokens, and L = T - P the scan tokens:
//   in_proj (E1)    2·T·D·(2E + 2GN + H)                        backward 2x (d_u and d_W_in)
//   conv (E2)       2·T·(E + 2GN)·W                             backward 2x (d_v and d_w)
//   attention (E4)  2·pairs·G·N (C·Bᵀ once per group: its scores serve the group's H/G heads)
//                 + 2·pairs·H·p (weights · x per head)
//                   backward 3x the scores (recomputed, d_C, d_B) + 2x the values (d_w = d_y·xᵀ, d_x)
//   converter (E5)  2·P·H·p·N (each prefix token's x ⊗ B into the state)             backward 2x (d_x, d_B)
//   scan (E6)       intra-chunk as attention within each chunk of Q: 2·qpairs·(G·N + H·p), qpairs the causal
//                   pairs of every chunk (Σ q (q + 1) / 2 over the chunks' lengths q), plus the chunk states
//                   and the output from the start states, 2 x 2·L·H·p·N;     backward 3x + 2x as attention, 2x the states
//   norm (E7)       0
//   out_proj (E8)   2·T·E·D                                     backward 2x
// Minimal bytes: every tensor a kernel must read or write crosses memory once, activations at the storage
// width (bf16: 2 bytes), scan states, log-sum-exps and parameter gradients in fp32 (4 bytes); parameters read
// at the storage width. Nothing a fused kernel could keep on chip (scores, chunk states) is counted.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "reference/config.hpp"

namespace transmamba::bench {

struct Device {
  std::string name;
  double flops_per_s = 0;  // dense peak at the storage type
  double bytes_per_s = 0;  // memory bandwidth
};
// The device the issue names for the targets (H100 SXM: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3).
inline Device h100_sxm() { return {"H100 SXM (989 TFLOP/s dense bf16, 3.35 TB/s)", 989e12, 3.35e12}; }

struct Work {
  double flops = 0, bytes = 0;
  double floor_s(const Device& d) const { return std::max(flops / d.flops_per_s, bytes / d.bytes_per_s); }
  Work& operator+=(const Work& o) { return flops += o.flops, bytes += o.bytes, *this; }
};

struct KernelCost {
  std::string name;   // "in_proj", "conv", "step_size", "attention", "converter", "scan", "norm", "out_proj"
  Work forward, backward;
};

// The causal (query, key) pairs of every chunk of Q among L tokens: Σ q (q + 1) / 2 over the chunks' lengths.
inline double chunk_pairs(double L, int Q) {
  const double full = std::floor(L / Q), rest = L - full * Q;
  return full * Q * (Q + 1) / 2 + rest * (rest + 1) / 2;
}

// Every kernel of one layer call (header comment), storage `bytes` per activation (bf16: 2, fp32: 4).
inline std::vector<KernelCost> layer_kernel_costs(const MixerConfig& c, int Bt, int T, int P, int bytes) {
  const double b = bytes, f32 = 4, n = double(Bt) * T, nP = double(Bt) * P, nL = double(Bt) * (T - P);
  const double D = c.D, E = c.E, H = c.H, GN = double(c.G) * c.N, N = c.N, W = c.W, in_w = c.in_proj_width(),
               C = c.conv_channels();
  const double pairs = double(Bt) * P * (double(P) + 1) / 2, qpairs = double(Bt) * chunk_pairs(T - P, c.chunk);
  const double state = double(Bt) * E * N * f32;  // one fp32 state per sequence
  std::vector<KernelCost> k;
  // E1: read u, W_in; write zxbcdt. Backward: read u, W_in, d_zxbcdt; write d_u, d_W_in (fp32).
  k.push_back({"in_proj", {2 * n * D * in_w, (n * D + D * in_w + n * in_w) * b},
               {4 * n * D * in_w, (2 * n * D + D * in_w + n * in_w) * b + D * in_w * f32}});
  // E2: read xBC_in, w, bias; write xBC. Backward: read xBC_in, d_xBC; write d_xBC_in, d_w, d_b.
  k.push_back({"conv", {2 * n * C * W, (2 * n * C + C * (W + 1)) * b},
               {4 * n * C * W, (3 * n * C + C * (W + 1)) * b + C * (W + 1) * f32}});
  // E3: read dt_raw, write dt. Backward: read dt_raw, d_dt; write d_dt_raw.
  k.push_back({"step_size", {0, 2 * n * H * b}, {0, 3 * n * H * b + 2 * H * f32}});
  // E4: read C, B, x; write y and lse. Backward: read C, B, x, y, d_y, lse; write d_C, d_B, d_x.
  const double scores = 2 * pairs * GN, values = 2 * pairs * E;
  k.push_back({"attention", {scores + values, nP * (2 * GN + 2 * E) * b + nP * c.G * f32},
               {3 * scores + 2 * values, nP * (2 * GN + 3 * E) * b + nP * c.G * f32 + nP * (2 * GN + E) * b}});
  // E5: read x, B, dt of the prefix; write S0. Backward: read them and d_S0; write d_x, d_B, d_dt.
  const double conv_flops = 2 * nP * E * N;
  const double conv_in = nP * (E + GN + H) * b;
  k.push_back({"converter", {conv_flops, P > 0 ? conv_in + state : 0}, {2 * conv_flops, P > 0 ? 2 * conv_in + state : 0}});
  // E6: read x, B, C, dt, S0; write y and the final state. Backward: read those and d_y; write d_x, d_B, d_C,
  // d_dt, d_S0.
  const double intra_scores = 2 * qpairs * GN, intra_values = 2 * qpairs * E, states = 4 * nL * E * N;
  const double scan_in = nL * (E + 2 * GN + H) * b;
  k.push_back({"scan", {intra_scores + intra_values + states, T > P ? scan_in + nL * E * b + 2 * state : 0},
               {3 * intra_scores + 2 * intra_values + 2 * states, T > P ? 2 * scan_in + 2 * nL * E * b + 2 * state : 0}});
  // E7: read y (and z for the scan rows), norm_w; write y_normed. Backward: read y, z, d_y_normed; write d_y, d_z.
  k.push_back({"norm", {0, (2 * n * E + nL * E + E) * b}, {0, (4 * n * E + 2 * nL * E + E) * b + E * f32}});
  // E8: read y_normed, W_out; write out. Backward: read y_normed, W_out, d_out; write d_y_normed, d_W_out.
  k.push_back({"out_proj", {2 * n * E * D, (n * E + E * D + n * D) * b},
               {4 * n * E * D, (2 * n * E + E * D + n * D) * b + E * D * f32}});
  return k;
}

}  // namespace transmamba::bench
