// The chunked SSD scan (E6) on a device, forward and backward: the host API of cuda/ssm.cu, mirroring reference/ssm.hpp's
// ssm_chunked stage by stage (its ChunkedScanResult), so that a failure names its stage:
//   1. chunk_states:  the state each chunk reaches from a zero state,
//                     chunk_state[c] = Σ_{s in c} exp(Σ_{r=s+1..end(c)} dt[r]·A) · dt[s] · x[s] ⊗ B[s];
//   2. state passing: start_state[0] = S_init, start_state[c+1] = exp(Σ_{r in c} dt[r]·A)·start_state[c]
//                     + chunk_state[c]; the final state is the start state after the last chunk;
//   3+4. output:      y[t] = Σ_{s<=t in c} exp(Σ_{r=s+1..t} dt[r]·A)·(C[t]·B[s])·dt[s]·x[s]
//                          + exp(Σ_{r=c0..t} dt[r]·A) · start_state[c] · C[t].
// Every exponent is a segment sum accumulated from its terms, all of one sign (DESIGN.md section 3; cuda/ssm.cu):
// never a difference of two cumulative sums, which in fp32 cancels 1e8 times worse than the double reference's 1e-12.
// Per head h, group g = h / (H/G); y is E6's output without the D skip, or with it where ScanForward::D_skip is
// given (the layer's scan: y + D·x stored once, no pass of its own over y; likewise its backward adds D·d_y to
// d_x before d_x's one store and sums d_D_skip beside d_A). The Memory Converter (E5) is
// stages 1-2 over the prefix from a zero state, keeping only the final state (pass y.data == nullptr); its host
// API is cuda/converter.hpp. The backward (ScanBackward) is derived in cuda/ssm.cu's header comment.
#pragma once

#include "cuda/bf16.hpp"
#include "cuda/device.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/tensor.hpp"

namespace transmamba::gpu {

struct ScanShape {
  int Bt = 1;  // sequences
  int L = 0;   // tokens of each sequence that the scan covers
  int H = 0, p = 0, G = 0, N = 0;
  int Q = 0;   // chunk size
};

constexpr int kScanMaxChunk = 128;  // the output stage holds a chunk's Q x Q decay matrix in shared memory
constexpr unsigned kScanThreads = 256;
// The backward's chunk kernels (one block per chunk and head; at Q = 128 one block per multiprocessor, its two
// Q x Q matrices in shared memory) run 16 warps: one 4 x 4 block of each 128 x 64 product tile per thread (bf16,
// on tensor cores: four 16 x 16 pieces of each 128 x 128 tile per warp).
constexpr unsigned kScanBackwardThreads = 512;

struct ScanPlan {
  int chunks = 0;                 // per sequence: ceil(L / Q)
  LaunchShape chunk_states;       // grid (chunks, H, Bt)
  LaunchShape state_passing;      // grid (ceil(H·p·N / 256), Bt): one thread per state entry, over the chunks
  LaunchShape output;             // grid (chunks, H, Bt)
  std::size_t state_values = 0;   // Bt · chunks · H·p·N: each of chunk_states and start_states
  std::size_t chunk_decays = 0;   // Bt · chunks · H: Σ_{r in chunk} dt[r]·A (workspace)
  // The backward (cuda/ssm.cu): chunk_grad computes each chunk's share of the start state's gradient, the
  // state_passing grid passes the gradients at the chunks' ends backwards, then backward_chunk:
  LaunchShape chunk_grad;         // grid (chunks, H, Bt): what the chunk's d_y gives its start state (a product);
                                  // shared memory scan_product_floats() + Q floats
  LaunchShape backward_chunk;     // grid (chunks, H, Bt): every gradient of one chunk and head; shared memory
                                  // scan_backward_shared_floats(Q) (two Q x Q matrices and the products' staging)
  LaunchShape group_sum;          // grid (ceil(Bt·L·G·N / 256)): d_B, d_C summed over the heads of each group
  LaunchShape reduce_A;           // grid (ceil(H / 256)): d_A (and d_D_skip), the (sequence, chunk) partials summed in order
  std::size_t head_values = 0;    // Bt · L · H·N: per-head d_B (and d_C) before the group sum
  // floats: chunk_decays + state_values + 2·chunk_decays (the partials of d_A and d_D_skip) + 2·head_values
  std::size_t backward_workspace = 0;
  // The bf16 forward's tensor-core kernels (cuda/ssm.cu) in place of stage 1's and stages 3+4's:
  LaunchShape bf16_chunk_states;  // grid (chunks, H, Bt); shared memory scan_bf16_chunk_state_bytes (also the
                                  // backward's step 1 in bf16, the same product)
  LaunchShape bf16_output;        // grid (chunks, G, Bt): a group's heads share C·Bᵀ; scan_bf16_output_bytes
};

// The tensor-core kernels' tiles pad the chunk's tokens, p and N to multiples of 16 with zeros.
constexpr int scan_tile(int n) { return (n + 15) / 16 * 16; }
// Their row strides in shared memory: a bf16 tile's rows 8 values (16 bytes, 4 banks) longer than the tile, so
// that the 8 rows one fragment load reads start in 8 different bank groups (with the bare width, a multiple of
// 64 bytes, every row began in the same bank: 4- and 8-way conflicts on each load); the fp32 scores' rows one
// value longer, so that the weights' loop, one thread per row, reads 32 rows in 32 banks.
constexpr int scan_ld(int tile) { return tile + 8; }
constexpr int scan_scores_ld(int tile) { return tile + 1; }
// Stage 1 (bf16): w [Q'] fp32; x [Q'][ld(p')], (w·B)'s high and low bf16 parts [Q'][ld(N')] bf16 (Q' = scan_tile(Q), ...).
inline std::size_t scan_bf16_chunk_state_bytes(const ScanShape& s) {
  const std::size_t Q = scan_tile(s.Q), P = scan_ld(scan_tile(s.p)), N = scan_ld(scan_tile(s.N));
  return 4 * Q + 2 * (Q * P + 2 * Q * N);
}
// Stages 3+4 (bf16): C·Bᵀ [Q'][Q' + 1], and [Q'] each: dt, the decays from the chunk's start and the tiles'
// partial log-decays, fp32; C [Q'][ld(N')], B [Q'][ld(N')] (later the start state's two bf16 parts, [p'][ld(N')]
// each, in its place), the weights' two parts [Q'][ld(Q')] and x [Q'][ld(p')] bf16.
inline std::size_t scan_bf16_output_bytes(const ScanShape& s) {
  const std::size_t Qt = scan_tile(s.Q), Q = scan_ld(Qt), P = scan_tile(s.p), N = scan_ld(scan_tile(s.N));
  return 4 * (Qt * scan_scores_ld(int(Qt)) + 3 * Qt) + 2 * (Qt * N + std::max(Qt * N, 2 * P * N) + 2 * Qt * Q + Qt * scan_ld(int(P)));
}

// The backward's chunk kernel holds K, D [Q][Q], six vectors [Q] and its matrix products' staging area in
// dynamic shared memory (the step before it, ssm_chunk_grad_kernel, the staging area and one vector [Q]). K's and
// D's rows (scan_backward_ld) are whole 16-byte words, so that the products stage them 16 bytes at a time
// (stage.cuh), plus one word, so that the 8 rows of an mma fragment's store start in different banks.
// The products (cuda/ssm.cu's block_product) cover output tiles of kScanProductRows x kScanProductCols, one 4 x 4
// block of it per thread, staging both operands kScanProductSlice values of the summed index at a time: A's slice [slice][rows + 4] (rows padded by 4 floats, 16 bytes, so that
// a slice's k-th row stays 16-byte aligned and successive rows start in different banks), B's [slice][cols],
// and the row sums' partials [rows][cols / 4]. Their bf16 form on tensor cores (block_product_tc) covers tiles
// kScanProductTcCols wide (a chunk's whole N: each A slice staged once per tile row) and stages each operand as
// two bf16 parts, each slice padded by 8 values (16 bytes), with the row sums' partials [rows][cols / 16]; the
// staging area (scan_product_floats) holds either.
// Slices of 64 rather than 32: half the barriers, twice the loads in flight between them (the bf16 scan backward
// 4.63 -> 4.10 ms at T = 8192 on an H100, 764b713).
constexpr int kScanProductRows = kScanMaxChunk, kScanProductCols = 64, kScanProductSlice = 64;
constexpr int kScanProductTcCols = kScanMaxChunk;
static_assert(kScanProductRows / 4 * (kScanProductCols / 4) == int(kScanBackwardThreads), "one 4 x 4 block per thread");
constexpr int scan_backward_ld(int Q) { return (Q + 3) / 4 * 4 + 4; }
constexpr std::size_t scan_product_floats() {
  const std::size_t fp32 = std::size_t(kScanProductSlice) * (kScanProductRows + 4 + kScanProductCols) +
                           kScanProductRows * (kScanProductCols / 4);
  // block_product_tc's slices of A and B (either layout's larger), each value in two bf16 parts: a float's bytes
  const std::size_t slice_a = std::size_t(kScanProductRows) * (kScanProductSlice + 8),
                    slice_b = std::size_t(kScanProductTcCols) * (kScanProductSlice + 8);
  const std::size_t tc = slice_a + slice_b + kScanProductRows * (kScanProductTcCols / 16);
  return fp32 > tc ? fp32 : tc;
}
inline std::size_t scan_backward_shared_floats(int Q) {
  return scan_product_floats() + std::size_t(2) * Q * scan_backward_ld(Q) + std::size_t(6) * Q;
}

inline ScanPlan scan_plan(const ScanShape& s) {
  if (s.Bt < 0 || s.L < 0) throw std::invalid_argument("scan: negative Bt or L");
  if (s.H < 1 || s.p < 1 || s.G < 1 || s.N < 1 || s.H % s.G != 0)
    throw std::invalid_argument("scan: H, p, G, N must be positive and H % G == 0 (H=" + std::to_string(s.H) +
                                ", G=" + std::to_string(s.G) + ")");
  if (s.Q < 1 || s.Q > kScanMaxChunk)
    throw std::invalid_argument("scan: chunk size Q=" + std::to_string(s.Q) + " is not supported (1 <= Q <= " +
                                std::to_string(kScanMaxChunk) + ")");
  ScanPlan p;
  p.chunks = ceil_div(s.L, s.Q);
  const unsigned chunks = unsigned(std::max(p.chunks, 1));
  p.chunk_states = {{chunks, unsigned(s.H), unsigned(std::max(s.Bt, 1))}, {kScanThreads, 1, 1}, sizeof(float) * s.Q};
  const long long entries = (long long)s.H * s.p * s.N;
  p.state_passing = {{unsigned((entries + kScanThreads - 1) / kScanThreads), unsigned(std::max(s.Bt, 1)), 1}, {kScanThreads, 1, 1}, 0};
  p.output = {{chunks, unsigned(s.H), unsigned(std::max(s.Bt, 1))}, {kScanThreads, 1, 1}, sizeof(float) * (s.Q * s.Q + s.Q)};
  p.state_values = std::size_t(s.Bt) * p.chunks * entries;
  p.chunk_decays = std::size_t(s.Bt) * p.chunks * s.H;
  p.chunk_grad = {p.chunk_states.grid, {kScanBackwardThreads, 1, 1}, sizeof(float) * (scan_product_floats() + s.Q)};
  p.backward_chunk = {{chunks, unsigned(s.H), unsigned(std::max(s.Bt, 1))}, {kScanBackwardThreads, 1, 1},
                      sizeof(float) * scan_backward_shared_floats(s.Q)};
  const long long group_values = (long long)std::max(s.Bt, 1) * std::max(s.L, 1) * s.G * s.N;
  p.group_sum = {{unsigned((group_values + kScanThreads - 1) / kScanThreads), 1, 1}, {kScanThreads, 1, 1}, 0};
  p.reduce_A = {{unsigned(ceil_div(s.H, int(kScanThreads))), 1, 1}, {kScanThreads, 1, 1}, 0};
  p.head_values = std::size_t(s.Bt) * s.L * s.H * s.N;
  p.backward_workspace = 3 * p.chunk_decays + p.state_values + 2 * p.head_values;
  p.bf16_chunk_states = {p.chunk_states.grid, {kScanThreads, 1, 1}, scan_bf16_chunk_state_bytes(s)};
  p.bf16_output = {{chunks, unsigned(s.G), unsigned(std::max(s.Bt, 1))}, {kScanThreads, 1, 1}, scan_bf16_output_bytes(s)};
  return p;
}

// S: the storage type of the per-token activations x, B, C, y (float, or Bf16: cuda/bf16.hpp); dt, A and every
// state stay fp32. The bf16 forward runs its chunk matmuls on tensor cores (cuda/ssm.cu).
template <class S>
struct ScanForwardT {
  ScanShape shape;
  View<const S> x;            // [Bt, L, H·p]
  View<const float> dt;       // [Bt, L, H]
  View<const float> A;        // [1, 1, H]
  View<const S> B, C;         // [Bt, L, G·N]; C is read only for y (may be null when y is)
  View<const float> S_init;   // [Bt, H·p, N]; data == nullptr: a zero state
  View<S> y;                  // [Bt, L, H·p]; data == nullptr: the final state only (the Memory Converter)
  View<float> final_state;    // [Bt, H·p, N]
  View<float> chunk_states;   // [Bt·chunks, H·p, N]: stage 1
  View<float> start_states;   // [Bt·chunks, H·p, N]: stage 2, the state entering each chunk
  View<float> chunk_decays;   // [1, 1, Bt·chunks·H]: workspace
  View<const float> D_skip;   // [1, 1, H]; data == nullptr: none. With y: y[t, h·p + i] += D_skip[h]·x[t, h·p + i]
                              // (E6's D skip), added before y's one store
};
using ScanForward = ScanForwardT<float>;
using ScanForwardBf16 = ScanForwardT<Bf16>;

void ssm_chunked_forward(const Stream& stream, const ScanForward& args);
void ssm_chunked_forward(const Stream& stream, const ScanForwardBf16& args);

// The gradients of the scan's y and final state (d_y, d_final_state) with respect to every input. Needs the
// forward's start states (stage 2); recomputes the rest chunk by chunk. Deterministic: no atomics, every sum in a
// fixed order.
// S as in ScanForwardT: x, B, C, d_y, d_x, d_B, d_C in S; everything else fp32.
template <class S>
struct ScanBackwardT {
  ScanShape shape;
  View<const S> x;                    // as ScanForward
  View<const float> dt, A;
  View<const S> B, C;                 // C is read only with d_y (may be null without it)
  View<const float> S_init;           // [Bt, H·p, N]; data == nullptr: a zero state. Checked, not read: the
                                      // kernels read start_states, whose first chunk is S_init
  View<const float> start_states;     // [Bt·chunks, H·p, N]: the forward's stage 2 (ScanForward::start_states)
  View<const S> d_y;                  // [Bt, L, H·p]; data == nullptr: zero (the Memory Converter's backward)
  View<const float> d_final_state;    // [Bt, H·p, N]; data == nullptr: zero
  View<S> d_x;                        // [Bt, L, H·p]: written (not accumulated)
  View<float> d_dt;                   // [Bt, L, H]: written
  View<S> d_B, d_C;                   // [Bt, L, G·N]: written; d_C may be null when d_y is null
  View<float> d_A;                    // [1, 1, H]: written, summed over sequences and tokens
  View<float> d_S_init;               // [Bt, H·p, N]: written; data == nullptr: not wanted
  View<float> workspace;              // [1, 1, ScanPlan::backward_workspace] floats
  // E6's D skip (ScanForward::D_skip), with d_y: d_x[t, h·p + i] += D_skip[h]·d_y[t, h·p + i] before d_x's one
  // store, and d_D_skip[h] = Σ_{b, t, i} d_y[t, h·p + i]·x[t, h·p + i]. data == nullptr (both): none.
  View<const float> D_skip;           // [1, 1, H]
  View<float> d_D_skip;               // [1, 1, H]: written
};
using ScanBackward = ScanBackwardT<float>;
using ScanBackwardBf16 = ScanBackwardT<Bf16>;

void ssm_chunked_backward(const Stream& stream, const ScanBackward& args);
void ssm_chunked_backward(const Stream& stream, const ScanBackwardBf16& args);

}  // namespace transmamba::gpu
