// Grouped causal softmax attention (E4) on a device, flash style: the host API of cuda/attention.cu, mirroring
// reference/attention.hpp (attention_forward, attention_backward). For the P prefix tokens of each sequence,
// head h, group g = h / (H/G):
//
//   y[t, h] = Σ_{s≤t} softmax_s( C[t, g]·B[s, g] / sqrt(N) ) · x[s, h]          (Q = C, K = B, V = x)
//
// No P x P matrix is ever stored: the kernels walk tiles of queries and keys with an online softmax
// (device_math.hpp: OnlineSoftmax). The scores of a group are computed once per (query tile, key tile) and
// applied to all H/G value heads of the group at once: the group's heads are the R·p = (H/G)·p consecutive
// columns g·R·p .. of x and y, treated as one wide value matrix. The forward also writes the log-sum-exp
// lse[b, g, t] = max_s score + log Σ_s exp(score - max) of every query, from which the backward recomputes the
// weights. Plain C++: shapes, the launch plan, the shared-memory layouts, and the argument checks.
#pragma once

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "cuda/bf16.hpp"
#include "cuda/device.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/tensor.hpp"

namespace transmamba::gpu {

struct AttentionShape {
  int Bt = 1;  // sequences
  int P = 0;   // prefix tokens per sequence (the TransPoint): the keys and values
  int H = 0;   // value heads
  int G = 0;   // groups of Q/K (H % G == 0)
  int N = 0;   // Q/K head dim (state size): 16, 32, 64 or 128
  int p = 0;   // value head dim: 16, 32, 64 or 128
  // The queries are the tokens first_query .. P-1 (the forward only; the backward takes 0): C, y and lse hold
  // their P - first_query rows. Decode (cuda/inference.hpp) asks for the last token alone over its KV cache.
  int first_query = 0;
  int queries() const { return P - first_query; }
  int heads_per_group() const { return G > 0 ? H / G : 0; }
  int group_columns() const { return heads_per_group() * p; }  // R·p: the value columns one group's scores feed
};

// Tiles. Scores are computed for kAttnKeyTile (= 32, one warp's lanes) keys at a time. The value columns are
// staged kAttnColumns at a time. The tile that owns an accumulator over all R·p value columns (the forward's
// query tile: the output rows; the backward's key tile: d_x) has `rows` in {32, 16, 8, 4, 2, 1}, the largest
// whose shared memory fits kMaxDynamicShared; the other tile is kAttnTile. All kernels run kAttnThreads threads.
constexpr int kAttnTile = 32, kAttnKeyTile = 32, kAttnColumns = 128, kAttnThreads = 256;

// Where each array of a kernel lives in its dynamic shared memory (offsets in floats), the same arithmetic
// on the host (the plan's byte count) and in the kernel. Rows of Q and K are padded to N + 1 floats and rows of
// staged values to kAttnColumns + 1 so that a warp reading down a column hits 32 different banks.
struct AttnForwardLayout {  // query tile of `rows` x key tile kAttnKeyTile
  int q, k, s, max, sum, scale, v, o, total;
  TM_HD AttnForwardLayout(int rows, int N, int cols) {
    q = 0;                                    // Q tile     [rows][N + 1]
    k = q + rows * (N + 1);                   // K tile     [kAttnKeyTile][N + 1]
    s = k + kAttnKeyTile * (N + 1);           // scores, then weights [rows][kAttnKeyTile]
    max = s + rows * kAttnKeyTile;            // online softmax per row: max, sum, last rescale [rows] each
    sum = max + rows;
    scale = sum + rows;
    v = scale + rows;                         // value chunk [kAttnKeyTile][kAttnColumns]
    o = v + kAttnKeyTile * kAttnColumns;      // output accumulator [rows][cols]
    total = o + rows * cols;
  }
};
struct AttnQueryBackwardLayout {  // d_C: query tile kAttnTile x key tile kAttnKeyTile
  int q, k, w, ds, dy, v, dq, lse, d, c, total;
  TM_HD explicit AttnQueryBackwardLayout(int N) {
    q = 0;                                           // Q tile  [kAttnTile][N + 1]
    k = q + kAttnTile * (N + 1);                     // K tile  [kAttnKeyTile][N + 1]
    w = k + kAttnKeyTile * (N + 1);                  // weights [kAttnTile][kAttnKeyTile]
    ds = w + kAttnTile * kAttnKeyTile;               // d_w, then d_scores [kAttnTile][kAttnKeyTile]
    dy = ds + kAttnTile * kAttnKeyTile;              // d_y chunk [kAttnTile][kAttnColumns + 1]
    v = dy + kAttnTile * (kAttnColumns + 1);         // x chunk  [kAttnKeyTile][kAttnColumns + 1]
    dq = v + kAttnKeyTile * (kAttnColumns + 1);      // d_C accumulator [kAttnTile][N]
    lse = dq + kAttnTile * N;                        // [kAttnTile]
    d = lse + kAttnTile;                             // row statistics D, c [kAttnTile] each
    c = d + kAttnTile;
    total = c + kAttnTile;
  }
};
struct AttnKeyBackwardLayout {  // d_B, d_x: key tile of `rows` x query tile kAttnTile
  int k, q, w, ds, dy, v, dk, dv, lse, d, c, total;
  TM_HD AttnKeyBackwardLayout(int rows, int N, int cols) {
    k = 0;                                           // K tile  [rows][N + 1]
    q = k + rows * (N + 1);                          // Q tile  [kAttnTile][N + 1]
    w = q + kAttnTile * (N + 1);                     // weights [kAttnTile][rows]
    ds = w + kAttnTile * rows;                       // d_w, then d_scores [kAttnTile][rows]
    dy = ds + kAttnTile * rows;                      // d_y chunk [kAttnTile][kAttnColumns + 1]
    v = dy + kAttnTile * (kAttnColumns + 1);         // x chunk  [rows][kAttnColumns + 1]
    dk = v + rows * (kAttnColumns + 1);              // d_B accumulator [rows][N]
    dv = dk + rows * N;                              // d_x accumulator [rows][cols]
    lse = dv + rows * cols;                          // [kAttnTile]
    d = lse + kAttnTile;                             // D, c [kAttnTile] each
    c = d + kAttnTile;
    total = c + kAttnTile;
  }
};

// The bf16 forward on tensor cores (mma.sync m16n8k16, cuda/mma.cuh): kAttnBf16Warps warps a block, each owning
// 16 query rows (the block's query tile kAttnBf16Rows), sharing key/value tiles of kAttnBf16Keys keys staged in
// shared memory; a block takes one column block of kAttnBf16Columns of its group's R·p value columns (a grid
// dimension: each column block recomputes the scores Q·Kᵀ). Rows of the bf16 tiles are padded by kAttnBf16Pad.
// Cost of the recomputation: per (query, key) pair the useful FLOPs are 2N (scores) + 2R·p (values); with
// ceil(R·p / 128) column blocks the scores are computed that many times. At the paper's size (N = 128,
// R·p = 6·64 = 384: 3 blocks) that is 3·256 + 768 = 1536 FLOPs executed for 1024 useful (1.5x). 128 columns
// keep a warp's fp32 output fragments at 64 registers a lane (16 rows x 128 / 32 lanes). Key tiles of 32 (not
// 64) so that the emulated checks' short sequences (P <= 70) cross several key tiles: the online softmax's
// rescaling is exercised. Two buffers of the key and value tiles: the next tile's copies (cp.async) are in flight
// while the warps work on this one.
constexpr int kAttnBf16Warps = 4, kAttnBf16Rows = 16 * kAttnBf16Warps, kAttnBf16Keys = 32, kAttnBf16Columns = 128,
              kAttnBf16Pad = 8;
struct AttnBf16ForwardLayout {  // offsets in bf16 elements
  int q, k, v, total;
  int k_size, v_size;  // one buffer of each
  TM_HD explicit AttnBf16ForwardLayout(int N) {
    k_size = kAttnBf16Keys * (N + kAttnBf16Pad), v_size = kAttnBf16Keys * (kAttnBf16Columns + kAttnBf16Pad);
    q = 0;                                              // Q tile [kAttnBf16Rows][N + pad]
    k = q + kAttnBf16Rows * (N + kAttnBf16Pad);         // 2 K tiles [kAttnBf16Keys][N + pad]
    v = k + 2 * k_size;                                 // 2 V tiles [kAttnBf16Keys][kAttnBf16Columns + pad]
    total = v + 2 * v_size;
  }
};

// The bf16 backward on tensor cores (cuda/attention.cu): two kernels of kAttnBf16Warps warps. Each block owns
// kAttnBf16Rows rows of one side ("own": the query kernel's queries, Q = C and d_y; the key kernel's keys, K = B
// and x) and walks tiles of kAttnBf16Keys rows of the other ("tile"), whose fp32 row statistics (the key
// kernel's query tile: lse, D, c) follow. Offsets in bf16 elements; rows padded by kAttnBf16Pad (16-byte rows
// for ldmatrix, 8 rows on 8 different 16-byte bank groups).
struct AttnBf16BackwardLayout {
  int own_qk, own_v, tile_qk, tile_v, stats, total;
  TM_HD AttnBf16BackwardLayout(int N, int cols) {
    own_qk = 0;                                             // [kAttnBf16Rows][N + pad]
    own_v = own_qk + kAttnBf16Rows * (N + kAttnBf16Pad);    // [kAttnBf16Rows][cols + pad]
    tile_qk = own_v + kAttnBf16Rows * (cols + kAttnBf16Pad);  // [kAttnBf16Keys][N + pad]
    tile_v = tile_qk + kAttnBf16Keys * (N + kAttnBf16Pad);    // [kAttnBf16Keys][cols + pad]
    stats = tile_v + kAttnBf16Keys * (cols + kAttnBf16Pad);   // fp32 [3][kAttnBf16Keys]
    total = stats + 2 * 3 * kAttnBf16Keys;
  }
};

struct AttentionPlan {
  int forward_rows = 0;   // the forward's query tile
  int forward_column_blocks = 1;  // bf16: blocks of kAttnBf16Columns value columns per group (forward, key kernel)
  int backward_rows = 0;  // the d_B, d_x kernel's key tile
  LaunchShape forward;         // grid (query tiles, G, Bt)
  LaunchShape backward_query;  // the row statistics D, c, then d_C: grid (query tiles of kAttnTile, G, Bt)
  LaunchShape backward_key;    // d_B, d_x: grid (key tiles, G, Bt)
  std::size_t lse = 0;         // floats of the log-sum-exp: Bt · G · queries (written by the forward, read by the backward)
  std::size_t workspace = 0;   // floats of the backward's row statistics D, then c: 2 · Bt · G · P
};

inline bool attention_dim_supported(int d) { return d == 16 || d == 32 || d == 64 || d == 128; }

// Throws std::invalid_argument for a shape the kernels do not take.
inline AttentionPlan attention_plan(const AttentionShape& s) {
  if (s.Bt < 0 || s.P < 0) throw std::invalid_argument("attention: negative Bt or P");
  if (s.first_query < 0 || (s.P > 0 && s.first_query >= s.P) || (s.P == 0 && s.first_query != 0))
    throw std::invalid_argument("attention: first_query=" + std::to_string(s.first_query) + " is outside [0, P=" +
                                std::to_string(s.P) + ")");
  if (s.H < 1 || s.G < 1 || s.H % s.G != 0)
    throw std::invalid_argument("attention: H=" + std::to_string(s.H) + " heads in G=" + std::to_string(s.G) +
                                " groups (need H >= 1, G >= 1, H % G == 0)");
  if (!attention_dim_supported(s.N))
    throw std::invalid_argument("attention: N=" + std::to_string(s.N) + " is not supported (16, 32, 64 or 128)");
  if (!attention_dim_supported(s.p))
    throw std::invalid_argument("attention: p=" + std::to_string(s.p) + " is not supported (16, 32, 64 or 128)");
  const int cols = s.group_columns();
  auto fits = [](int floats) { return std::size_t(floats) * sizeof(float) <= kMaxDynamicShared; };
  AttentionPlan plan;
  for (int rows = kAttnTile; rows >= 1 && !plan.forward_rows; rows /= 2)
    if (fits(AttnForwardLayout(rows, s.N, cols).total)) plan.forward_rows = rows;
  for (int rows = kAttnTile; rows >= 1 && !plan.backward_rows; rows /= 2)
    if (fits(AttnKeyBackwardLayout(rows, s.N, cols).total)) plan.backward_rows = rows;
  if (!plan.forward_rows || !plan.backward_rows)
    throw std::invalid_argument("attention: (H/G)·p = " + std::to_string(cols) +
                                " value columns per group do not fit in shared memory");
  const unsigned G = unsigned(s.G), Bt = unsigned(std::max(s.Bt, 1));
  const int P1 = std::max(s.P, 1);  // an empty launch is never made; keep the shape valid
  const Dim3 block{kAttnThreads, 1, 1};
  plan.forward = {{unsigned(ceil_div(std::max(s.queries(), 1), plan.forward_rows)), G, Bt}, block,
                  sizeof(float) * AttnForwardLayout(plan.forward_rows, s.N, cols).total};
  plan.backward_query = {{unsigned(ceil_div(P1, kAttnTile)), G, Bt}, block,
                         sizeof(float) * AttnQueryBackwardLayout(s.N).total};
  plan.backward_key = {{unsigned(ceil_div(P1, plan.backward_rows)), G, Bt}, block,
                       sizeof(float) * AttnKeyBackwardLayout(plan.backward_rows, s.N, cols).total};
  plan.lse = std::size_t(std::max(s.Bt, 0)) * s.G * std::max(s.queries(), 0);
  plan.workspace = 2 * std::size_t(std::max(s.Bt, 0)) * s.G * std::max(s.P, 0);
  return plan;
}

// The plan of the bf16 kernels: the same shape checks, lse and workspace as attention_plan, and their own
// launches: the forward, grid (query tiles of kAttnBf16Rows, G · column blocks, Bt), AttnBf16ForwardLayout;
// the backward's query kernel, grid (query tiles of kAttnBf16Rows, G, Bt), and key kernel, grid (key tiles of
// kAttnBf16Rows, G · column blocks, Bt), both AttnBf16BackwardLayout; kAttnBf16Warps warps each.
inline AttentionPlan attention_plan_bf16(const AttentionShape& s) {
  AttentionPlan plan = attention_plan(s);
  const std::size_t backward_bytes = sizeof(Bf16) * AttnBf16BackwardLayout(s.N, s.group_columns()).total;
  if (backward_bytes > kMaxDynamicShared)
    throw std::invalid_argument("attention: (H/G)·p = " + std::to_string(s.group_columns()) +
                                " value columns per group do not fit in the bf16 backward's shared memory");
  const unsigned tiles = unsigned(ceil_div(std::max(s.P, 1), kAttnBf16Rows)), G = unsigned(s.G),
                 Bt = unsigned(std::max(s.Bt, 1));
  const Dim3 block{32 * kAttnBf16Warps, 1, 1};
  plan.forward_rows = kAttnBf16Rows;
  plan.forward_column_blocks = ceil_div(s.group_columns(), kAttnBf16Columns);
  const unsigned column_blocks = unsigned(plan.forward_column_blocks);
  plan.forward = {{unsigned(ceil_div(std::max(s.queries(), 1), kAttnBf16Rows)), G * column_blocks, Bt}, block,
                  sizeof(Bf16) * AttnBf16ForwardLayout(s.N).total};
  plan.backward_rows = kAttnBf16Rows;
  plan.backward_query = {{tiles, G, Bt}, block, backward_bytes};
  plan.backward_key = {{tiles, G * column_blocks, Bt}, block, backward_bytes};
  return plan;
}

// In the layer C, B and x are column blocks of xBC [T, E + 2GN] (x at column 0, B at E, C at E + GN), so every
// view may have a row stride wider than its columns. S is the storage type of the per-token activations (C, B,
// x, y and their gradients): float, or Bf16 (cuda/bf16.hpp); lse and the workspace stay fp32 either way.
template <class S>
struct AttentionForwardT {
  AttentionShape shape;
  View<const S> C;    // [Bt, queries, G·N] queries: the tokens first_query .. P-1
  View<const S> B;    // [Bt, P, G·N] keys
  View<const S> x;    // [Bt, P, H·p] values
  View<S> y;          // [Bt, queries, H·p]
  View<float> lse;    // [1, 1, plan.lse] log-sum-exp per (sequence, group, query): index (b·G + g)·queries + r
};

template <class S>
struct AttentionBackwardT {
  AttentionShape shape;
  View<const S> C, B, x;      // as in AttentionForwardT
  View<const float> lse;      // [1, 1, plan.lse] the forward's log-sum-exp
  View<const S> d_y;          // [Bt, P, H·p]
  View<S> d_C, d_B;           // [Bt, P, G·N]
  View<S> d_x;                // [Bt, P, H·p]
  View<float> workspace;      // [1, 1, plan.workspace] (the row statistics D and c)
};
using AttentionForward = AttentionForwardT<float>;
using AttentionBackward = AttentionBackwardT<float>;
using AttentionForwardBf16 = AttentionForwardT<Bf16>;
using AttentionBackwardBf16 = AttentionBackwardT<Bf16>;

// Check every argument (naming the first that does not fit), then run on the stream's device.
// The bf16 overloads: forward and backward on tensor cores (attention_plan_bf16's launches).
void attention_forward(const Stream& stream, const AttentionForward& args);
void attention_forward(const Stream& stream, const AttentionForwardBf16& args);
void attention_backward(const Stream& stream, const AttentionBackward& args);
void attention_backward(const Stream& stream, const AttentionBackwardBf16& args);

}  // namespace transmamba::gpu
