// The chunked SSD scan (E6), forward and backward, in the stages of reference/ssm.hpp's ssm_chunked: the kernels
// of cuda/ssm.hpp. Compiled for a GPU and for the CPU emulation (portable.cuh).
//
// One block per (chunk, head, sequence) for stages 1 and 3+4; stage 2 walks the chunks (not the tokens) of one
// state entry per thread. Every decay is the exp of a segment sum accumulated from its terms (DESIGN.md section
// 3): term by term, or (the bf16 output kernel) from partial sums of 16-token tiles; the terms dt·A all have one
// sign, so each sum is accurate relative to itself either way; a difference of cumulative sums would carry fp32's
// eps times the whole prefix's sum instead.
//
// ---- The backward (ssm_chunked_backward), per sequence and head h (group g) -------------------------------
// In chunk c (tokens c0..end, local indices s, t, r), with the log-decays a[r] = dt[r]·A, seg(i..j) = Σ_{r=i..j}
// a[r] (accumulated term by term over exactly that segment), L[t,s] = exp(seg(s+1..t)) for s <= t, the state
// entering the chunk S_c (the forward's start_states) and G_{c+1} [p, N] the gradient reaching the state at the
// chunk's end (the state entering chunk c+1; for the last chunk d_final_state), the forward is
//   y[t]    = Σ_{s<=t} L[t,s]·dt[s]·(C[t]·B[s])·x[s] + exp(seg(c0..t))·S_c·C[t]
//   S_{c+1} = Σ_s exp(seg(s+1..end))·dt[s]·x[s] ⊗ B[s] + exp(seg(c0..end))·S_c.
// 1. ssm_chunk_grad_kernel, parallel over chunks: Y_c = Σ_t exp(seg(c0..t))·d_y[t] ⊗ C[t] (what y gives S_c),
//    and the chunk's whole log-decay seg(c0..end) (bf16: ssm_chunk_grad_tc_kernel, the forward's stage-1
//    product on tensor cores).
// 2. ssm_state_grad_passing_kernel, one thread per state entry over the chunks in reverse (not over tokens):
//    dS_c = exp(seg(c0..end))·G_{c+1} + Y_c, G_c = dS_c; d_S_init = dS_0 = G_0. Slot c of the workspace holds
//    Y_c before and G_{c+1} after.
// 3. ssm_chunk_backward_kernel, parallel over chunks again, with K[t,s] = L[t,s]·(C[t]·B[s]) and
//    D[t,s] = L[t,s]·(d_y[t]·x[s]) in shared memory (every sum over the chunk's tokens, p or N below, and K, D
//    themselves, a matrix product of operands staged in shared memory: block_product; steps 1 and 3 alike):
//      d_x[s]  = dt[s]·gx[s],  gx[s] = Σ_{t>=s} K[t,s]·d_y[t] + exp(seg(s+1..end))·G_{c+1}·B[s]        [p]
//      d_B[s] += dt[s]·(Σ_{t>=s} D[t,s]·C[t] + exp(seg(s+1..end))·G_{c+1}ᵀ·x[s])   (per head, summed in 4)
//      d_C[t] += Σ_{s<=t} D[t,s]·dt[s]·B[s] + exp(seg(c0..t))·S_cᵀ·d_y[t]           (per head, summed in 4)
//      d_dt[s] = x[s]·gx[s] (the dt[s] factor) + A·d_a[s],  d_A = Σ_s dt[s]·d_a[s],
//    where d_a[r], the gradient of the log-decay a[r], collects every exponent whose segment holds r:
//      d_a[r] = Σ_{t>=r} Σ_{s<r} v[t,s] + Σ_{t>=r} u[t] + Σ_{s<r} w[s] + z,
//      v[t,s] = L[t,s]·dt[s]·(C[t]·B[s])·(d_y[t]·x[s])  (= dt[s]·K[t,s]·(d_y[t]·x[s]): the intra-chunk output),
//      u[t]   = exp(seg(c0..t))·(d_y[t]·(S_c·C[t]))       (the output of the entering state),
//      w[s]   = exp(seg(s+1..end))·dt[s]·(x[s]ᵀ·G_{c+1}·B[s])  (the tokens' share of the state at the end),
//      z      = exp(seg(c0..end))·<G_{c+1}, S_c>          (the entering state's share of it).
//    The double sum over v is a prefix along each row (Σ_{s<r}) then a column sum (Σ_{t>=r}): O(Q^2) per block.
//    The x[s]·gx[s] term is Σ_{t>=s} K[t,s]·(d_y[t]·x[s]) + w[s]/dt[s], summed as such (no division).
//    With E6's D skip (y += D_skip·x), d_x[s] += D_skip·d_y[s] before its store, and the block's partial of
//    d_D_skip = Σ_{t, i} d_y[t, i]·x[t, i].
// 4. ssm_group_sum_kernel: d_B, d_C of a group = its H/G heads' values in head order; sum_partials: d_A (and
//    d_D_skip) = the (sequence, chunk) blocks' partials in order. Every sum runs in a fixed order: bitwise
//    deterministic.
// This is reference/ssm.hpp's ssm_backward (the recurrence in reverse, Gs_t = gradient of the state after t)
// regrouped by chunks: Gs_t = Σ_{t'>=t in c} exp(seg(t+1..t'))·d_y[t'] ⊗ C[t'] + exp(seg(t+1..end))·G_{c+1}, and
// its d_a = <Gs_t, S_{t-1}>·exp(a[t]) expanded over the terms of S_{t-1}.
#include "cuda/portable.cuh"

#include "cuda/backends.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"
#include "cuda/mma.cuh"
#include "cuda/reduce.cuh"
#include "cuda/stage.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {
// S: the storage type of x, B, C, y (float or Bf16); everything else is fp32.
template <class S>
struct ScanPointers {
  int L, H, p, G, N, Q, chunks;
  const S* x;
  std::int64_t x_batch, x_row;
  const float* dt;
  std::int64_t dt_batch, dt_row;
  const float* A;
  const S* B;
  std::int64_t B_batch, B_row;
  const S* C;
  std::int64_t C_batch, C_row;
  const float* S_init;  // may be null: zero
  std::int64_t init_batch, init_row;
  S* y;                 // may be null: final state only
  std::int64_t y_batch, y_row;
  float* final_state;
  std::int64_t final_batch, final_row;
  float* chunk_states;
  std::int64_t chunk_batch, chunk_row;  // batch: one (sequence, chunk) pair
  float* start_states;
  std::int64_t start_batch, start_row;
  float* chunk_decays;  // [Bt·chunks·H]
  const float* D_skip;  // [H]; may be null: no D skip in y
};

struct ChunkPlace {
  int b, c, h, g, c0, len;
};
template <class S>
__device__ ChunkPlace chunk_place(const ScanPointers<S>& p) {
  ChunkPlace k;
  k.c = blockIdx.x, k.h = blockIdx.y, k.b = blockIdx.z;
  k.g = k.h / (p.H / p.G);
  k.c0 = k.c * p.Q;
  k.len = min(p.Q, p.L - k.c0);
  return k;
}

// Stage 1: chunk_state[c] = Σ_s w[s] · x[s] ⊗ B[s] with w[s] = exp(Σ_{r=s+1..end} dt[r]·A) · dt[s], and the chunk's
// whole log-decay Σ_{r in c} dt[r]·A for stage 2.
template <class S>
__global__ void __launch_bounds__(kScanThreads) ssm_chunk_state_kernel(ScanPointers<S> p) {
  float* w = dynamic_shared<float>();  // [Q]
  const ChunkPlace k = chunk_place(p);
  const float A = p.A[k.h];
  const float* dt = p.dt + k.b * p.dt_batch + std::int64_t(k.c0) * p.dt_row + k.h;  // dt[s] = dt[s·dt_row]
  for (int s = threadIdx.x; s < k.len; s += blockDim.x) {
    float segment = 0.0f;  // Σ_{r=s+1..len-1} dt[r]·A, from the chunk's end back to s+1
    for (int r = k.len - 1; r > s; --r) segment += dt[r * p.dt_row] * A;
    w[s] = expf(segment) * dt[s * p.dt_row];
  }
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int r = k.len - 1; r >= 0; --r) total += dt[r * p.dt_row] * A;
    p.chunk_decays[(std::int64_t(k.b) * p.chunks + k.c) * p.H + k.h] = total;
  }
  __syncthreads();
  const S* x = p.x + k.b * p.x_batch + std::int64_t(k.c0) * p.x_row + k.h * p.p;
  const S* B = p.B + k.b * p.B_batch + std::int64_t(k.c0) * p.B_row + k.g * p.N;
  float* state = p.chunk_states + (std::int64_t(k.b) * p.chunks + k.c) * p.chunk_batch + std::int64_t(k.h) * p.p * p.chunk_row;
  for (int e = threadIdx.x; e < p.p * p.N; e += blockDim.x) {
    const int i = e / p.N, n = e % p.N;
    float acc = 0.0f;
    for (int s = 0; s < k.len; ++s) acc += w[s] * to_float(x[s * p.x_row + i]) * to_float(B[s * p.B_row + n]);
    state[i * p.chunk_row + n] = acc;
  }
}

// Stage 2: one thread per state entry (row h·p + i, column n) of one sequence, over the chunks in order.
template <class S>
__global__ void __launch_bounds__(kScanThreads) ssm_state_passing_kernel(ScanPointers<S> p) {
  const std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int b = blockIdx.y;
  if (e >= std::int64_t(p.H) * p.p * p.N) return;
  const int row = int(e / p.N), n = int(e % p.N), h = row / p.p;
  float state = p.S_init ? p.S_init[b * p.init_batch + row * p.init_row + n] : 0.0f;
  for (int c = 0; c < p.chunks; ++c) {
    const std::int64_t bc = std::int64_t(b) * p.chunks + c;
    p.start_states[bc * p.start_batch + row * p.start_row + n] = state;
    state = expf(p.chunk_decays[bc * p.H + h]) * state + p.chunk_states[bc * p.chunk_batch + row * p.chunk_row + n];
  }
  p.final_state[b * p.final_batch + row * p.final_row + n] = state;
}

// Stages 3 and 4: y[t] = Σ_{s<=t} M[t,s] · x[s] + exp(Σ_{r=c0..t} dt[r]·A) · start_state · C[t] (+ D·x[t] with
// D_skip), with M[t,s] = exp(Σ_{r=s+1..t} dt[r]·A) · dt[s] · (C[t]·B[s]) staged in shared memory (the chunk's Q x Q
// matrix).
template <class S>
__global__ void __launch_bounds__(kScanThreads) ssm_output_kernel(ScanPointers<S> p) {
  float* M = dynamic_shared<float>();  // [Q][Q], lower triangle
  float* decay_in = M + p.Q * p.Q;     // [Q]: exp(Σ_{r=c0..t} dt[r]·A)
  const ChunkPlace k = chunk_place(p);
  const float A = p.A[k.h];
  const float* dt = p.dt + k.b * p.dt_batch + std::int64_t(k.c0) * p.dt_row + k.h;
  for (int t = threadIdx.x; t < k.len; t += blockDim.x) {
    M[t * p.Q + t] = dt[t * p.dt_row];
    float segment = 0.0f;  // Σ_{r=s+1..t} dt[r]·A, leftwards from the diagonal
    for (int s = t - 1; s >= 0; --s) {
      segment += dt[(s + 1) * p.dt_row] * A;
      M[t * p.Q + s] = expf(segment) * dt[s * p.dt_row];
    }
    float from_start = 0.0f;
    for (int r = 0; r <= t; ++r) from_start += dt[r * p.dt_row] * A;
    decay_in[t] = expf(from_start);
  }
  __syncthreads();
  const S* B = p.B + k.b * p.B_batch + std::int64_t(k.c0) * p.B_row + k.g * p.N;
  const S* C = p.C + k.b * p.C_batch + std::int64_t(k.c0) * p.C_row + k.g * p.N;
  for (int e = threadIdx.x; e < k.len * k.len; e += blockDim.x) {
    const int t = e / k.len, s = e % k.len;
    if (s > t) continue;
    float cb = 0.0f;
    for (int n = 0; n < p.N; ++n) cb += to_float(C[t * p.C_row + n]) * to_float(B[s * p.B_row + n]);
    M[t * p.Q + s] *= cb;
  }
  __syncthreads();
  const S* x = p.x + k.b * p.x_batch + std::int64_t(k.c0) * p.x_row + k.h * p.p;
  const float* start = p.start_states + (std::int64_t(k.b) * p.chunks + k.c) * p.start_batch + std::int64_t(k.h) * p.p * p.start_row;
  S* y = p.y + k.b * p.y_batch + std::int64_t(k.c0) * p.y_row + k.h * p.p;
  for (int e = threadIdx.x; e < k.len * p.p; e += blockDim.x) {
    const int t = e / p.p, i = e % p.p;
    float intra = 0.0f, inter = 0.0f;
    for (int s = 0; s <= t; ++s) intra += M[t * p.Q + s] * to_float(x[s * p.x_row + i]);
    for (int n = 0; n < p.N; ++n) inter += start[i * p.start_row + n] * to_float(C[t * p.C_row + n]);
    const float skip = p.D_skip ? p.D_skip[k.h] * to_float(x[t * p.x_row + i]) : 0.0f;
    y[t * p.y_row + i] = from_float<S>(intra + decay_in[t] * inter + skip);
  }
}

// ---- the bf16 forward's tensor-core kernels (stage 1, stages 3+4) -----------------------------------------
// The chunk matmuls on tensor cores (cuda/mma.cuh: bf16 operands, fp32 accumulation), every operand staged in
// shared memory (cuda/stage.cuh) as a tile padded with zeros to multiples of 16 (scan_tile: tokens of a partial
// chunk, p, N), so that the padding adds exact zeros, and whose rows (scan_ld) are 16-byte multiples: every fragment comes by
// ldmatrix (cuda/mma.cuh), a 16 x 16 output tile per warp at a time. x, B, C are bf16 already (exact operands). Every fp32 operand (stage 1's
// w[s]·B[s], stages 3+4's weights L[t,s]·dt[s]·(C[t]·B[s]) and the start state) is split into two bf16,
// hi = bf16(v) and lo = bf16(v - hi), and both are multiplied (X·hi + X·lo: v to 2^-16 relative): rounded once
// to bf16 (2^-8 relative), they failed the bf16 rule (measured: y of one token, p = 2, rel 3.5e-3 against a
// bound of 3e-3 from the float baseline's one rounding of y; the fp32 chunk states are held to the rule's floor
// of 1e-3, which one rounding of every term would use up).
__device__ inline int warp_index() { return int(threadIdx.x) / 32; }
constexpr int kScanWarps = int(kScanThreads) / 32;

// f(r, c) for every r < rows, c < cols: warp w (of a block of kWarps) takes rows w, w + kWarps, ..., its lanes
// consecutive columns (a row of a tile or of a token's values: coalesced, and no division per entry).
template <int kWarps = kScanWarps, class F>
__device__ inline void for_each_entry(int rows, int cols, F f) {
  const int lane = int(threadIdx.x) % 32;
  for (int r = warp_index(); r < rows; r += kWarps)
    for (int c = lane; c < cols; c += 32) f(r, c);
}

// The product of stage 1 and of the backward's step 1 in bf16, for one chunk of len tokens:
//   out[i, n] = Σ_s X[s, i]·v[s, n],  v[s, n] = f[s]·Y[s, n]   (i < P, n < N)
// X and Y the chunk's rows of two bf16 tensors (row strides x_row, y_row), f fp32 in shared memory at the start of
// the dynamic shared memory (written by the caller before: the first barrier here orders it), then x [Qt][ld(P')]
// and v's two bf16 parts [Qt][ld(N')] (scan_bf16_chunk_state_bytes). A [P', N'] = [P', Q'] x [Q', N'] product:
// warp tiles of 16 x 16 (i, n), over the tokens in steps of 16, the fragments by ldmatrix (Xᵀ's by the
// transposing load of X's rows).
__device__ void chunk_product_tc(int len, int Qt, int P, int N, const Bf16* X, std::int64_t x_row, const Bf16* Y,
                                 std::int64_t y_row, float* out, std::int64_t out_row) {
  const int Pt = scan_tile(P), Nt = scan_tile(N), len_t = scan_tile(len);
  const int ldP = scan_ld(Pt), ldN = scan_ld(Nt);  // the tiles' row strides (ssm.hpp)
  const float* f = dynamic_shared<float>();       // [Qt]
  bf16* xs = reinterpret_cast<bf16*>(dynamic_shared<float>() + Qt);  // [Qt][ldP]: X[s, i]
  bf16* hi = xs + Qt * ldP;                       // [Qt][ldN]: bf16(v)
  bf16* lo = hi + Qt * ldN;                       // [Qt][ldN]: bf16(v - hi)
  __syncthreads();  // f is written
  stage_bf16_tile<kScanThreads>(xs, ldP, len_t, Pt, X, x_row, len, P);
  stage_split_tile<kScanThreads>(hi, lo, ldN, len_t, Nt, Y, y_row, len, N, f);
  __syncthreads();
  const int col_tiles = Nt / 16;
  for (int tile = warp_index(); tile < Pt / 16 * col_tiles; tile += kScanWarps) {
    const int i0 = tile / col_tiles * 16, n0 = tile % col_tiles * 16;
    MmaC acc[2] = {};  // columns n0 .. n0 + 7, n0 + 8 .. n0 + 15
    for (int s0 = 0; s0 < len_t; s0 += 16) {
      const MmaA a = mma_ldmatrix_a_trans(xs + s0 * ldP + i0, ldP);  // A[i][s] = X[s0 + s, i0 + i]
      MmaB b_hi[2], b_lo[2];                                          // B[s][n] = v[s0 + s, n0 + n]
      mma_ldmatrix_b2_trans(b_hi, hi + s0 * ldN + n0, ldN);
      mma_ldmatrix_b2_trans(b_lo, lo + s0 * ldN + n0, ldN);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        mma_m16n8k16(acc[e], a, b_hi[e], acc[e]);
        mma_m16n8k16(acc[e], a, b_lo[e], acc[e]);
      }
    }
#pragma unroll
    for (int e = 0; e < 2; ++e)
      for (int j = 0; j < 4; ++j) {
        const MmaAt at = mma_c_at(mma_lane(), j);
        const int i = i0 + at.row, n = n0 + 8 * e + at.col;
        if (i < P && n < N) out[i * out_row + n] = acc[e].v[j];
      }
  }
}

// Stage 1 in bf16: chunk_state[c][i, n] = Σ_s x[s, i]·(w[s]·B[s, n]) with w as in ssm_chunk_state_kernel
// (chunk_product_tc), and the chunk's whole log-decay beside the weights.
__global__ void __launch_bounds__(kScanThreads) ssm_chunk_state_tc_kernel(ScanPointers<Bf16> p) {
  static_assert(kScanMaxChunk < int(kScanThreads), "a thread per token's weight and one more for the chunk's total");
  const ChunkPlace k = chunk_place(p);
  float* w = dynamic_shared<float>();  // [len]
  const float A = p.A[k.h];
  const float* dt = p.dt + k.b * p.dt_batch + std::int64_t(k.c0) * p.dt_row + k.h;
  if (const int s = threadIdx.x; s < k.len) {
    float segment = 0.0f;  // Σ_{r=s+1..len-1} dt[r]·A, from the chunk's end back to s+1
    for (int r = k.len - 1; r > s; --r) segment += dt[r * p.dt_row] * A;
    w[s] = expf(segment) * dt[s * p.dt_row];
  } else if (s == k.len) {
    float total = 0.0f;
    for (int r = k.len - 1; r >= 0; --r) total += dt[r * p.dt_row] * A;
    p.chunk_decays[(std::int64_t(k.b) * p.chunks + k.c) * p.H + k.h] = total;
  }
  float* state = p.chunk_states + (std::int64_t(k.b) * p.chunks + k.c) * p.chunk_batch + std::int64_t(k.h) * p.p * p.chunk_row;
  chunk_product_tc(k.len, scan_tile(p.Q), p.p, p.N, p.x + k.b * p.x_batch + std::int64_t(k.c0) * p.x_row + k.h * p.p,
                   p.x_row, p.B + k.b * p.B_batch + std::int64_t(k.c0) * p.B_row + k.g * p.N, p.B_row, state, p.chunk_row);
}

// Stages 3+4 in bf16 for one chunk and the H/G heads of one group, which share C and B:
//   scores[t, s] = C[t]·B[s]                                     (once per group: [Q', Q'] = [Q', N'] x [N', Q'])
//   then per head h: W[t, s] = exp(Σ_{r=s+1..t} dt[r]·A)·dt[s]·scores[t, s] for s <= t (0 elsewhere), in fp32,
//   split into hi + lo, and y[t, i] = Σ_s W[t, s]·x[s, i] + exp(Σ_{r=c0..t} dt[r]·A)·Σ_n C[t, n]·S_start[i, n]
//   (two products over 16 x 8 tiles (t, i): W·X over the tokens s <= t, C·S_startᵀ over N, S_start split too),
//   plus D_skip[h]·x[t, i] with D_skip.
// B is needed only for the scores: the start state's two parts take its place (scan_bf16_output_bytes).
__global__ void __launch_bounds__(kScanThreads) ssm_output_tc_kernel(ScanPointers<Bf16> p) {
  static_assert(kScanMaxChunk <= int(kScanThreads), "a thread per token for its tile's partial log-decay");
  const int c = blockIdx.x, g = blockIdx.y, b = blockIdx.z, c0 = c * p.Q, len = min(p.Q, p.L - c0);
  const int Qt = scan_tile(p.Q), Pt = scan_tile(p.p), Nt = scan_tile(p.N), len_t = scan_tile(len);
  const int ldS = scan_scores_ld(Qt), ldQ = scan_ld(Qt), ldP = scan_ld(Pt), ldN = scan_ld(Nt);  // row strides (ssm.hpp)
  float* scores = dynamic_shared<float>();          // [Qt][ldS]
  float* decay_in = scores + Qt * ldS;              // [Qt]: exp(Σ_{r=c0..t} dt[r]·A)
  float* dts = decay_in + Qt;                       // [Qt]: dt (0 past the chunk)
  float* within = dts + Qt;                         // [Qt]: Σ_{r=16⌊t/16⌋..t} dt[r]·A, t's 16-token tile up to t
  bf16* cs = reinterpret_cast<bf16*>(within + Qt); // [Qt][ldN]: C
  bf16* bs = cs + Qt * ldN;                         // [Qt][ldN]: B, then the start state's parts:
  bf16* ss_hi = bs;                                 //   [Pt][ldN]
  bf16* ss_lo = bs + Pt * ldN;                      //   [Pt][ldN]
  bf16* W_hi = bs + max(Qt * ldN, 2 * Pt * ldN);    // [Qt][ldQ]: the weights' two parts
  bf16* W_lo = W_hi + Qt * ldQ;                     // [Qt][ldQ]
  bf16* xs = W_lo + Qt * ldQ;                       // [Qt][ldP]: x of the head
  const bf16 zero = __float2bfloat16_rn(0.0f);
  const Bf16* B = p.B + b * p.B_batch + std::int64_t(c0) * p.B_row + g * p.N;
  const Bf16* C = p.C + b * p.C_batch + std::int64_t(c0) * p.C_row + g * p.N;
  stage_bf16_tile<kScanThreads>(cs, ldN, len_t, Nt, C, p.C_row, len, p.N);
  stage_bf16_tile<kScanThreads>(bs, ldN, len_t, Nt, B, p.B_row, len, p.N);
  __syncthreads();
  // scores: the 16 x 16 tiles on and below the diagonal (s0 <= t0).
  const int tok_tiles = len_t / 16;
  for (int tile = warp_index(); tile < tok_tiles * tok_tiles; tile += kScanWarps) {
    const int t0 = tile / tok_tiles * 16, s0 = tile % tok_tiles * 16;
    if (s0 > t0) continue;  // uniform over the warp
    MmaC acc[2] = {};
    for (int n0 = 0; n0 < Nt; n0 += 16) {
      const MmaA a = mma_ldmatrix_a(cs + t0 * ldN + n0, ldN);
      MmaB b[2];
      mma_ldmatrix_b2(b, bs + s0 * ldN + n0, ldN);
      for (int e = 0; e < 2; ++e) mma_m16n8k16(acc[e], a, b[e], acc[e]);
    }
    for (int e = 0; e < 2; ++e) mma_store_c(acc[e], scores + t0 * ldS + s0 + 8 * e, ldS);
  }
  const int per = p.H / p.G;
  for (int h = g * per; h < (g + 1) * per; ++h) {
    __syncthreads();  // scores are ready (B is free); the previous head is done with W, xs, ss
    const float A = p.A[h];
    const float* dt = p.dt + b * p.dt_batch + std::int64_t(c0) * p.dt_row + h;
    for (int t = threadIdx.x; t < len_t; t += blockDim.x) dts[t] = t < len ? dt[t * p.dt_row] : 0.0f;
    const Bf16* x = p.x + b * p.x_batch + std::int64_t(c0) * p.x_row + h * p.p;
    stage_bf16_tile<kScanThreads>(xs, ldP, len_t, Pt, x, p.x_row, len, p.p);
    const float* start = p.start_states + (std::int64_t(b) * p.chunks + c) * p.start_batch + std::int64_t(h) * p.p * p.start_row;
    stage_split_tile<kScanThreads>(ss_hi, ss_lo, ldN, Pt, Nt, start, p.start_row, p.p, p.N);
    __syncthreads();
    // The exponents, every one a sum of terms dt[r]·A of one sign (no cancellation), accumulated leftwards: a
    // token's own tile from its start up to it (within), then whole tiles (within of a tile's last token).
    if (const int t = threadIdx.x; t < len_t) {
      float sum = 0.0f;
      for (int r = t / 16 * 16; r <= t; ++r) sum += dts[r] * A;
      within[t] = sum;
    }
    __syncthreads();
    // seg(16k+16..t) for k < t's tile: within[t], then the whole tiles k+1 .. down from t's (k = -1: seg(c0..t)).
    auto to_tile_end = [&](int t, int k) {
      float sum = within[t];
      for (int j = t / 16 - 1; j > k; --j) sum += within[16 * j + 15];
      return sum;
    };
    if (const int t = threadIdx.x; t < len_t) decay_in[t] = t < len ? expf(to_tile_end(t, -1)) : 0.0f;
    // The weights in pieces of row t x column tile k <= t's tile kt (16 columns, up to t on the diagonal), all
    // threads taking pieces in turn (a thread per row took up to Q serial steps): from the piece's last column
    // leftwards, seg(s+1..t) starts at seg(16k+16..t) (within[t] and the whole tiles between; 0 on the diagonal)
    // and adds dt[s]·A after column s. Past the diagonal, in its tile, zeros.
    const int tiles = len_t / 16;
    for (int q = threadIdx.x; q < 8 * tiles * (tiles + 1); q += blockDim.x) {
      int kt = 0, k = q / 16;  // (kt, k): the pairs (0, 0), (1, 0), (1, 1), (2, 0), ...
      while (k > kt) k -= ++kt;
      const int t = 16 * kt + q % 16, last = k == kt ? t : 16 * k + 15;
      bf16 *hi = W_hi + t * ldQ, *lo = W_lo + t * ldQ;  // row t
      if (k == kt)
        for (int s = t + 1; s < 16 * k + 16; ++s) hi[s] = lo[s] = zero;
      if (t >= len) {
        for (int s = 16 * k; s <= last; ++s) hi[s] = lo[s] = zero;
        continue;
      }
      float segment = k < kt ? to_tile_end(t, k) : 0.0f;  // seg(last+1..t)
      for (int s = last; s >= 16 * k; --s) {
        split_bf16(expf(segment) * dts[s] * scores[t * ldS + s], hi[s], lo[s]);
        segment += dts[s] * A;  // seg(s..t): column s - 1's
      }
    }
    __syncthreads();
    Bf16* y = p.y + b * p.y_batch + std::int64_t(c0) * p.y_row + h * p.p;
    const int col_tiles = Pt / 16;
    const float D = p.D_skip ? p.D_skip[h] : 0.0f;
    for (int tile = warp_index(); tile < len_t / 16 * col_tiles; tile += kScanWarps) {
      const int t0 = tile / col_tiles * 16, i0 = tile % col_tiles * 16;
      MmaC intra[2] = {}, inter[2] = {};  // columns i0 .. i0 + 7, i0 + 8 .. i0 + 15
      for (int s0 = 0; s0 <= t0; s0 += 16) {
        MmaB xb[2];  // B[s][i] = x[s0 + s, i0 + i]
        mma_ldmatrix_b2_trans(xb, xs + s0 * ldP + i0, ldP);
        const MmaA w_hi = mma_ldmatrix_a(W_hi + t0 * ldQ + s0, ldQ), w_lo = mma_ldmatrix_a(W_lo + t0 * ldQ + s0, ldQ);
        for (int e = 0; e < 2; ++e) {
          mma_m16n8k16(intra[e], w_hi, xb[e], intra[e]);
          mma_m16n8k16(intra[e], w_lo, xb[e], intra[e]);
        }
      }
      for (int n0 = 0; n0 < Nt; n0 += 16) {
        const MmaA ca = mma_ldmatrix_a(cs + t0 * ldN + n0, ldN);
        MmaB s_hi[2], s_lo[2];  // B[n][i] = S_start[i0 + i, n0 + n]: the state's rows, as Bᵀ
        mma_ldmatrix_b2(s_hi, ss_hi + i0 * ldN + n0, ldN);
        mma_ldmatrix_b2(s_lo, ss_lo + i0 * ldN + n0, ldN);
        for (int e = 0; e < 2; ++e) {
          mma_m16n8k16(inter[e], ca, s_hi[e], inter[e]);
          mma_m16n8k16(inter[e], ca, s_lo[e], inter[e]);
        }
      }
      for (int e = 0; e < 2; ++e)
        for (int j = 0; j < 4; ++j) {
          const MmaAt at = mma_c_at(mma_lane(), j);
          const int t = t0 + at.row, i = i0 + 8 * e + at.col;
          if (t < len && i < p.p)
            y[t * p.y_row + i] = to_bf16(intra[e].v[j] + decay_in[t] * inter[e].v[j] + D * __bfloat162float(xs[t * ldP + i]));
        }
    }
  }
}

// ---- backward (the header comment's steps 1-4) ------------------------------------------------------------
template <class S>
struct ScanGradPointers {
  ScanPointers<S> f;                 // the shape and the inputs x, dt, A, B, C (C null without d_y)
  const float* start_states;      // [Bt·chunks, H·p, N]: S_c
  std::int64_t start_batch, start_row;
  const S* d_y;                   // may be null: zero
  std::int64_t d_y_batch, d_y_row;
  const float* d_final;           // may be null: zero
  std::int64_t d_final_batch, d_final_row;
  S* d_x;
  std::int64_t d_x_batch, d_x_row;
  float* d_dt;
  std::int64_t d_dt_batch, d_dt_row;
  float* d_S_init;                // may be null: not wanted
  std::int64_t d_init_batch, d_init_row;
  const float* D_skip;            // [H]; may be null: no D skip (with it, d_y is not null)
  // The workspace (ScanPlan::backward_workspace), all contiguous:
  float* chunk_decays;            // [Bt·chunks·H]: seg(c0..end)
  float* end_grads;               // [Bt·chunks, H·p, N]: Y_c (step 1), then G_{c+1} (step 2)
  float* A_partials;              // [Bt·chunks, H]: Σ_{r in c} dt[r]·d_a[r]
  float* skip_partials;           // [Bt·chunks, H]: Σ_{t in c, i} d_y[t, i]·x[t, i] (with D_skip)
  float* head_d_B;                // [Bt·L, H, N]: per-head d_B
  float* head_d_C;                // [Bt·L, H, N]: per-head d_C; null when d_C is not wanted
};

// The sum of one value from every thread of a block of kThreads threads, added in thread order; every thread
// gets it. All threads must call it (barriers); a template, as every function with __shared__ must be.
template <int kThreads>
__device__ float block_sum(float value) {
  __shared__ float parts[kThreads];
  __shared__ float total;
  parts[threadIdx.x] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.0f;
    for (int i = 0; i < kThreads; ++i) sum += parts[i];
    total = sum;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();  // parts and total are reused by the next call
  return result;
}


// ---- the chunk products of the backward (steps 1 and 3) ---------------------------------------------------
// An operand of a chunk product as the product stages it: the entry at row r, column c of its staged layout (A:
// [m][k] where the term's kAAlongK, else [k][m]; B: [k][n] where kBAlongN, else [n][k]) is data[r·row + c] (rows
// `row` apart, columns contiguous), times scale[r] where kScaled. An unscaled bf16 operand is exact: its values
// are bf16 already.
template <class T, bool kScaled = false>
struct Rows {
  const T* data;
  std::int64_t row;
  const float* scale;  // [rows], read only where kScaled
  __device__ float at(int r, int c) const {
    const float v = to_float(data[r * row + c]);
    return kScaled ? scale[r] * v : v;
  }
};
template <class O>
constexpr bool kExact = false;  // whether operand type O is exact
template <>
constexpr bool kExact<Rows<Bf16>> = true;
template <class T>
__device__ Rows<T> rows(const T* data, std::int64_t row) {
  return {data, row, nullptr};
}
template <class T>
__device__ Rows<T, true> scaled_rows(const T* data, std::int64_t row, const float* scale) {
  return {data, row, scale};
}

// One term Σ_{k<K} a(m, k)·b(k, n) of a chunk product, its operands Rows in the layouts kAAlongK, kBAlongN.
template <bool kAAlongK_, bool kBAlongN_, class OA, class OB>
struct Term {
  static constexpr bool kAAlongK = kAAlongK_, kBAlongN = kBAlongN_;
  using A = OA;
  using B = OB;
  int K;
  OA a;
  OB b;
  __device__ float a_at(int m, int k) const { return kAAlongK ? a.at(m, k) : a.at(k, m); }
  __device__ float b_at(int k, int n) const { return kBAlongN ? b.at(k, n) : b.at(n, k); }
};
template <bool kAAlongK, bool kBAlongN, class OA, class OB>
__device__ Term<kAAlongK, kBAlongN, OA, OB> term(int K, OA a, OB b) {
  return {K, a, b};
}

// What a product adds up per output row besides its outputs: with `into`, into[m] = Σ_n v(m, n)·dot(m, n).
struct NoDot {
  __device__ float operator()(int, int) const { return 0.0f; }
};
template <class Dot = NoDot>
struct RowSums {
  float* into;  // null: none
  Dot dot;
};
template <class Dot>
__device__ RowSums<Dot> row_sums(float* into, Dot dot) {
  return {into, dot};
}
__device__ inline RowSums<> no_row_sums() { return {nullptr, {}}; }

// The end of block_product and block_product_tc: a barrier (every output and row-sum partial written), then
// with row sums, into[m] = the `groups` partials of row m added in order and another barrier. On return the
// outputs and row sums are visible to the block and `work` is free.
__device__ inline void finish_block_product(int M, const float* partial, int groups, float* into) {
  __syncthreads();
  if (!into) return;  // uniform over the block
  for (int m = int(threadIdx.x); m < M; m += int(blockDim.x)) {
    float sum = 0.0f;
    for (int j = 0; j < groups; ++j) sum += partial[m * groups + j];
    into[m] = sum;
  }
  __syncthreads();
}

// A block-wide fp32 matrix product for the chunk kernels: for m < M, n < cols, out(m, n, v) with v = the terms'
// Σ_{k<K} a(m, k)·b(k, n), in order, and the row sums (only for M <= kScanProductRows). The block has
// kScanBackwardThreads threads, all of which call it together (barriers). Per output tile of kScanProductRows x
// kScanProductCols, thread (ty, tx) = (tid / 16, tid % 16) sums the 4 x 4 outputs at rows 4ty.., columns 4tx.. of
// the tile in registers, k in order, from slices of both operands staged in `work` (scan_product_floats()): A's
// slice as [k][m], B's as [k][n], each entry read once per tile (0 past M, cols, K), the block's consecutive
// threads along the operands' contiguous columns. Each output and each row sum is one thread's, in a fixed order
// (the row sum's 16 partials of one tile, then its tiles, added in order): bitwise the same in every thread
// order. Returns after a barrier: the outputs and row sums are visible to the block, `work` is free.
template <class Out, class Dot, class... Terms>
__device__ void block_product(int M, int cols, Out out, float* work, RowSums<Dot> sums, const Terms&... terms) {
  constexpr int kRows = kScanProductRows, kCols = kScanProductCols, kSlice = kScanProductSlice, ldA = kRows + 4;
  constexpr int kColGroups = kCols / 4, kThreads = int(kScanBackwardThreads);
  struct alignas(16) Four {
    float v[4];
  };
  float* As = work;                   // [kSlice][ldA]
  float* Bs = As + kSlice * ldA;      // [kSlice][kCols]
  float* partial = Bs + kSlice * kCols;  // [kRows][kColGroups]
  const int tid = int(threadIdx.x), ty = tid / kColGroups, tx = tid % kColGroups;
  for (int tile = 0; tile < ceil_div(M, kRows) * ceil_div(cols, kCols); ++tile) {
    const int r0 = tile / ceil_div(cols, kCols) * kRows, n0 = tile % ceil_div(cols, kCols) * kCols, m0 = r0 + 4 * ty;
    float acc[4][4] = {};
    const bool busy = m0 < M && n0 + 4 * tx < cols;  // any of this thread's outputs exists
    const auto accumulate = [&](const auto& t) {
      using T = std::decay_t<decltype(t)>;
      for (int k0 = 0; k0 < t.K; k0 += kSlice) {
        __syncthreads();  // the previous slice is consumed
        // to[k·width + i] = value(k, i) for the slice's entries, consecutive threads along the operand's
        // contiguous columns (at: entry e's (k, i)): A's k where kAAlongK (else m), B's n where kBAlongN (else k).
        const auto stage = [&](float* to, int width, int count, auto at, auto value) {
          stage_chunks<kThreads>(
              count, [&](int e) { return value(at(e).first, at(e).second); },
              [&](int e, float v) { to[at(e).first * width + at(e).second] = v; });
        };
        stage(As, ldA, kSlice * kRows,
              [&](int e) { return T::kAAlongK ? std::pair{e % kSlice, e / kSlice} : std::pair{e / kRows, e % kRows}; },
              [&](int k, int m) { return r0 + m < M && k0 + k < t.K ? t.a_at(r0 + m, k0 + k) : 0.0f; });
        stage(Bs, kCols, kSlice * kCols,
              [&](int e) { return T::kBAlongN ? std::pair{e / kCols, e % kCols} : std::pair{e % kSlice, e / kSlice}; },
              [&](int k, int n) { return n0 + n < cols && k0 + k < t.K ? t.b_at(k0 + k, n0 + n) : 0.0f; });
        __syncthreads();
        if (busy)
          for (int k = 0; k < min(kSlice, t.K - k0); ++k) {
            const Four x = *reinterpret_cast<const Four*>(As + k * ldA + 4 * ty);
            const Four y = *reinterpret_cast<const Four*>(Bs + k * kCols + 4 * tx);
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) acc[i][j] += x.v[i] * y.v[j];
          }
      }
    };
    (accumulate(terms), ...);
    for (int i = 0; i < 4; ++i) {
      const int m = m0 + i;
      float part = 0.0f;
      for (int j = 0; j < 4; ++j) {
        const int n = n0 + 4 * tx + j;
        if (m < M && n < cols) {
          out(m, n, acc[i][j]);
          if (sums.into) part += acc[i][j] * sums.dot(m, n);
        }
      }
      if (sums.into && m < M)
        partial[(m - r0) * kColGroups + tx] = n0 == 0 ? part : partial[(m - r0) * kColGroups + tx] + part;
    }
  }
  finish_block_product(M, partial, kColGroups, sums.into);
}

// Stages the window of operand o at rows r0.., columns c0.. of its staged layout (rows x cols entries in all) as
// a tile_rows x tile_cols bf16 tile, 0 past its entries (cuda/stage.cuh, 16 bytes at a time where the memory
// allows): an exact operand as its values (hi), any other as two parts, hi and lo (split_bf16). Called, not
// inlined: inlined at each of the backward kernel's 22 operands, it made the kernel 22352 SASS instructions
// long, past the H100's instruction cache (ncu: "no instruction" the first of the stall reasons; 13976 called).
template <class T, bool kScaled>
TM_NOINLINE __device__ void stage_window(const Rows<T, kScaled>& o, bf16* hi, bf16* lo, int ld, int tile_rows,
                                         int tile_cols, int r0, int c0, int rows, int cols) {
  constexpr int kThreads = int(kScanBackwardThreads);
  const T* src = o.data + r0 * o.row + c0;
  if constexpr (kExact<Rows<T, kScaled>>)
    stage_bf16_tile<kThreads>(hi, ld, tile_rows, tile_cols, src, o.row, rows - r0, cols - c0);
  else
    stage_split_tile<kThreads>(hi, lo, ld, tile_rows, tile_cols, src, o.row, rows - r0, cols - c0,
                               kScaled ? o.scale + r0 : nullptr);
}

// block_product on tensor cores, for the bf16 kernels: the same contract (outputs, row sums in a fixed order,
// `work`, barriers) and slices, over tiles kScanProductTcCols wide, with every staged operand value split into two
// bf16 parts (split_bf16) and every product taken as hi·hi + hi·lo + lo·hi (the lo·lo term, 2^-32 relative,
// dropped): each a(m, k)·b(k, n) to about 2^-16 relative, summed in fp32 (mma.sync m16n8k16). An exact operand
// (kExact) has lo = 0: only its values are staged and the products with its lo part, exact zeros, are not
// taken. A's slice is staged [m][k] when kAAlongK, else [k][m]; B's [k][n] when kBAlongN, else [n][k] (the
// operand's layout in memory), and ldmatrix reads each layout (the transposing form where needed). The 16 warps
// take the tile's pieces of 16 x 16 that hold outputs (rows < M, columns < cols: 8 x 8 of them at most), piece j
// of the tile's row-major order to warp j % 16; a row's partial sum: a lane's four values of the row in column
// order, the quad's four lanes in lane order, then the pieces' and the tiles' partials in column order.
template <class Out, class Dot, class... Terms>
__device__ void block_product_tc(int M, int cols, Out out, float* work, RowSums<Dot> sums, const Terms&... terms) {
  constexpr int kRows = kScanProductRows, kCols = kScanProductTcCols, kSlice = kScanProductSlice;
  constexpr int kThreads = int(kScanBackwardThreads), kWarps = kThreads / 32, kPieceCols = kCols / 16;
  constexpr int kPerWarp = kRows / 16 * kPieceCols / kWarps;
  static_assert(kRows / 16 * kPieceCols % kWarps == 0 && kSlice % 16 == 0, "whole 16 x 16 pieces per warp, k16 steps per slice");
  // Each operand's two parts, in either layout (rows padded by 8 values: 16-byte rows).
  constexpr int sizeA = std::max(kRows * (kSlice + 8), kSlice * (kRows + 8)),
                sizeB = std::max(kSlice * (kCols + 8), kCols * (kSlice + 8));
  static_assert(2 * (sizeA + sizeB) * int(sizeof(bf16)) + kRows * kPieceCols * int(sizeof(float)) <=
                    int(scan_product_floats() * sizeof(float)),
                "the bf16 staging and the row sums' partials fit in block_product's work area");
  bf16* A_hi = reinterpret_cast<bf16*>(work);
  bf16 *A_lo = A_hi + sizeA, *B_hi = A_lo + sizeA, *B_lo = B_hi + sizeB;
  float* partial = reinterpret_cast<float*>(B_lo + sizeB);  // [kRows][groups]
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int col_tiles = ceil_div(cols, kCols);
  const int groups = min(ceil_div(cols, 16), kPieceCols);  // a row's partials: the first tile's pieces
  for (int tile = 0; tile < ceil_div(M, kRows) * col_tiles; ++tile) {
    const int r0 = tile / col_tiles * kRows, n0 = tile % col_tiles * kCols;
    // The tile's pieces that hold outputs: piece_rows x piece_cols, row-major.
    const int piece_rows = ceil_div(min(M - r0, kRows), 16), piece_cols = ceil_div(min(cols - n0, kCols), 16);
    MmaC acc[kPerWarp][2] = {};
    const auto accumulate = [&](const auto& t) {
      using T = std::decay_t<decltype(t)>;
      constexpr bool kAK = T::kAAlongK, kBN = T::kBAlongN, kAExact = kExact<typename T::A>, kBExact = kExact<typename T::B>;
      constexpr int ldA = kAK ? kSlice + 8 : kRows + 8, ldB = kBN ? kCols + 8 : kSlice + 8;
      for (int k0 = 0; k0 < t.K; k0 += kSlice) {
        __syncthreads();  // the previous slice is consumed
        if (kAK)
          stage_window(t.a, A_hi, A_lo, ldA, kRows, kSlice, r0, k0, M, t.K);
        else
          stage_window(t.a, A_hi, A_lo, ldA, kSlice, kRows, k0, r0, t.K, M);
        if (kBN)
          stage_window(t.b, B_hi, B_lo, ldB, kSlice, kCols, k0, n0, t.K, cols);
        else
          stage_window(t.b, B_hi, B_lo, ldB, kCols, kSlice, n0, k0, cols, t.K);
        __syncthreads();
#pragma unroll
        for (int q = 0; q < kPerWarp; ++q) {
          const int piece = warp + q * kWarps, m16 = piece / piece_cols * 16, c16 = piece % piece_cols * 16;
          if (piece >= piece_rows * piece_cols) continue;  // uniform over the warp
          for (int kk = 0; kk < kSlice && k0 + kk < t.K; kk += 16) {
            auto load_a = [&](const bf16* s) {
              return kAK ? mma_ldmatrix_a(s + m16 * ldA + kk, ldA) : mma_ldmatrix_a_trans(s + kk * ldA + m16, ldA);
            };
            auto load_b = [&](MmaB(&frag)[2], const bf16* s) {
              if constexpr (kBN)
                mma_ldmatrix_b2_trans(frag, s + kk * ldB + c16, ldB);
              else
                mma_ldmatrix_b2(frag, s + c16 * ldB + kk, ldB);
            };
            const MmaA ah = load_a(A_hi);
            MmaB bh[2];
            load_b(bh, B_hi);
#pragma unroll
            for (int e = 0; e < 2; ++e) mma_m16n8k16(acc[q][e], ah, bh[e], acc[q][e]);
            if constexpr (!kBExact) {
              MmaB bl[2];
              load_b(bl, B_lo);
#pragma unroll
              for (int e = 0; e < 2; ++e) mma_m16n8k16(acc[q][e], ah, bl[e], acc[q][e]);
            }
            if constexpr (!kAExact) {
              const MmaA al = load_a(A_lo);
#pragma unroll
              for (int e = 0; e < 2; ++e) mma_m16n8k16(acc[q][e], al, bh[e], acc[q][e]);
            }
          }
        }
      }
    };
    (accumulate(terms), ...);
#pragma unroll
    for (int q = 0; q < kPerWarp; ++q) {
      const int piece = warp + q * kWarps, m16 = piece / piece_cols * 16, c16 = piece % piece_cols * 16;
      if (piece >= piece_rows * piece_cols) continue;
      float part[2] = {};  // this lane's rows gr, gr + 8 of the piece
#pragma unroll
      for (int e = 0; e < 2; ++e)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const MmaAt at = mma_c_at(lane, j);
          const int m = r0 + m16 + at.row, n = n0 + c16 + 8 * e + at.col;
          if (m < M && n < cols) {
            out(m, n, acc[q][e].v[j]);
            if (sums.into) part[j / 2] += acc[q][e].v[j] * sums.dot(m, n);
          }
        }
      if (sums.into)  // the quad's lanes hold the row's 16 columns: added in lane order, the same sum on each lane
        for (int h = 0; h < 2; ++h) {
          float quad[4];
          for (int t = 0; t < 4; ++t) quad[t] = __shfl_sync(0xffffffffu, part[h], (lane & ~3) + t);
          const float sum = ((quad[0] + quad[1]) + quad[2]) + quad[3];
          const int row = m16 + lane / 4 + 8 * h;
          if (lane % 4 == 0 && r0 + row < M)
            partial[row * groups + c16 / 16] = n0 == 0 ? sum : partial[row * groups + c16 / 16] + sum;
        }
    }
  }
  finish_block_product(M, partial, groups, sums.into);
}

// The product of the chunk kernels of storage S: on tensor cores for bf16 (block_product_tc), else fp32.
template <class S, class... Args>
__device__ void chunk_product(Args&&... args) {
  if constexpr (std::is_same_v<S, Bf16>)
    block_product_tc(args...);
  else
    block_product(args...);
}

// Step 1: Y_c[i, n] = Σ_t exp(seg(c0..t))·d_y[t, i]·C[t, n] into the chunk's slot of end_grads (0 without d_y),
// and the chunk's seg(c0..end).
template <class S>
__global__ void __launch_bounds__(kScanBackwardThreads) ssm_chunk_grad_kernel(ScanGradPointers<S> g) {
  const ScanPointers<S>& p = g.f;
  float* work = dynamic_shared<float>();           // block_product's staging
  float* decay_in = work + scan_product_floats();  // [Q]: exp(seg(c0..t))
  const ChunkPlace k = chunk_place(p);
  const float A = p.A[k.h];
  const float* dt = p.dt + k.b * p.dt_batch + std::int64_t(k.c0) * p.dt_row + k.h;
  for (int t = threadIdx.x; t < k.len; t += blockDim.x) {
    float segment = 0.0f;
    for (int r = 0; r <= t; ++r) segment += dt[r * p.dt_row] * A;
    decay_in[t] = expf(segment);
    if (t == k.len - 1) g.chunk_decays[(std::int64_t(k.b) * p.chunks + k.c) * p.H + k.h] = segment;
  }
  __syncthreads();
  const std::int64_t bc = std::int64_t(k.b) * p.chunks + k.c;
  float* Y = g.end_grads + (bc * p.H + k.h) * p.p * p.N;
  const S* d_y = g.d_y ? g.d_y + k.b * g.d_y_batch + std::int64_t(k.c0) * g.d_y_row + k.h * p.p : nullptr;
  const S* C = p.C ? p.C + k.b * p.C_batch + std::int64_t(k.c0) * p.C_row + k.g * p.N : nullptr;
  block_product(p.p, p.N, [&](int i, int n, float v) { Y[i * p.N + n] = v; }, work, no_row_sums(),
                term<false, true>(d_y ? k.len : 0, scaled_rows(d_y, g.d_y_row, decay_in), rows(C, p.C_row)));
}

// Step 1 in bf16, on tensor cores: Y_c[i, n] = Σ_t d_y[t, i]·(exp(seg(c0..t))·C[t, n]) (chunk_product_tc, the
// decays as ssm_chunk_grad_kernel's), and seg(c0..end).
__global__ void __launch_bounds__(kScanThreads) ssm_chunk_grad_tc_kernel(ScanGradPointers<Bf16> g) {
  const ScanPointers<Bf16>& p = g.f;
  const ChunkPlace k = chunk_place(p);
  float* decay_in = dynamic_shared<float>();  // [len]: exp(seg(c0..t))
  const float A = p.A[k.h];
  const float* dt = p.dt + k.b * p.dt_batch + std::int64_t(k.c0) * p.dt_row + k.h;
  if (const int t = threadIdx.x; t < k.len) {
    float segment = 0.0f;
    for (int r = 0; r <= t; ++r) segment += dt[r * p.dt_row] * A;
    decay_in[t] = expf(segment);
    if (t == k.len - 1) g.chunk_decays[(std::int64_t(k.b) * p.chunks + k.c) * p.H + k.h] = segment;
  }
  float* Y = g.end_grads + ((std::int64_t(k.b) * p.chunks + k.c) * p.H + k.h) * p.p * p.N;
  if (!g.d_y) {  // uniform over the grid: no output gradient, Y_c = 0
    for_each_entry(p.p, p.N, [&](int i, int n) { Y[i * p.N + n] = 0.0f; });
    return;
  }
  chunk_product_tc(k.len, scan_tile(p.Q), p.p, p.N, g.d_y + k.b * g.d_y_batch + std::int64_t(k.c0) * g.d_y_row + k.h * p.p,
                   g.d_y_row, p.C + k.b * p.C_batch + std::int64_t(k.c0) * p.C_row + k.g * p.N, p.C_row, Y, p.N);
}

// Step 2: one thread per state entry (row h·p + i, column n) of one sequence, over the chunks in reverse. Each
// chunk's step needs two values from memory (Y_c and the chunk's decay), fetched kScanPrefetch chunks ahead into
// registers (slot j of the arrays for the chunks c0 - j: compile-time indices), so that that many loads are in
// flight while the recurrence runs (one chunk at a time, ncu on the H100: 729 cycles per issued instruction).
constexpr int kScanPrefetch = 4;
template <class S>
__global__ void __launch_bounds__(kScanThreads) ssm_state_grad_passing_kernel(ScanGradPointers<S> g) {
  const ScanPointers<S>& p = g.f;
  const std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x, entries = std::int64_t(p.H) * p.p * p.N;
  const int b = blockIdx.y;
  if (e >= entries) return;
  const int row = int(e / p.N), n = int(e % p.N), h = row / p.p;
  float* slots = g.end_grads + std::int64_t(b) * p.chunks * entries + e;  // chunk c's entry at c·entries
  const float* decays = g.chunk_decays + std::int64_t(b) * p.chunks * p.H + h;  // at c·H
  float Y[kScanPrefetch], decay[kScanPrefetch];
  auto fetch = [&](int c, int j) {
    if (c >= 0) Y[j] = slots[c * entries], decay[j] = decays[c * p.H];
  };
#pragma unroll
  for (int j = 0; j < kScanPrefetch; ++j) fetch(p.chunks - 1 - j, j);
  float G = g.d_final ? g.d_final[b * g.d_final_batch + row * g.d_final_row + n] : 0.0f;
  for (int c0 = p.chunks - 1; c0 >= 0; c0 -= kScanPrefetch)
#pragma unroll
    for (int j = 0; j < kScanPrefetch; ++j) {
      const int c = c0 - j;
      if (c < 0) break;
      const float y = Y[j], d = decay[j];
      fetch(c - kScanPrefetch, j);
      slots[c * entries] = G;  // G_{c+1}
      G = expf(d) * G + y;
    }
  if (g.d_S_init) g.d_S_init[b * g.d_init_batch + row * g.d_init_row + n] = G;
}

// Step 3: every gradient of one chunk and head (the header comment's formulas) as matrix products of the chunk's
// operands (chunk_product: block_product, on tensor cores for bf16) and O(Q^2) passes over K and D, in phases
// between barriers.
template <class S>
__global__ void __launch_bounds__(kScanBackwardThreads) ssm_chunk_backward_kernel(ScanGradPointers<S> g) {
  const ScanPointers<S>& p = g.f;
  const int Q = p.Q, ld = scan_backward_ld(Q);  // K's and D's row stride
  float* work = dynamic_shared<float>();          // block_product's staging
  float* K = work + scan_product_floats();        // [Q][ld]: L∘(C·B), then v[t,s]/dt[s]
  float* D = K + Q * ld;               // [Q][ld]: L∘(d_y·x), then the row prefixes Σ_{s<r} v[t,s]
  float* dts = D + Q * ld;             // [Q]: dt
  float* decay_in = dts + Q;           // [Q]: exp(seg(c0..t))
  float* decay_out = decay_in + Q;     // [Q]: exp(seg(s+1..end))
  float* u = decay_out + Q;            // [Q]: u[t]
  float* w = u + Q;                    // [Q]: w[s] / dt[s]
  float* direct = w + Q;               // [Q]: x[s]·gx[s]
  const ChunkPlace k = chunk_place(p);
  const int len = k.len;
  const float A = p.A[k.h];
  const std::int64_t bc = std::int64_t(k.b) * p.chunks + k.c;
  const float* dt = p.dt + k.b * p.dt_batch + std::int64_t(k.c0) * p.dt_row + k.h;
  const S* x = p.x + k.b * p.x_batch + std::int64_t(k.c0) * p.x_row + k.h * p.p;
  const S* B = p.B + k.b * p.B_batch + std::int64_t(k.c0) * p.B_row + k.g * p.N;
  const S* C = p.C ? p.C + k.b * p.C_batch + std::int64_t(k.c0) * p.C_row + k.g * p.N : nullptr;
  const S* d_y = g.d_y ? g.d_y + k.b * g.d_y_batch + std::int64_t(k.c0) * g.d_y_row + k.h * p.p : nullptr;
  const float* S_c = g.start_states + bc * g.start_batch + std::int64_t(k.h) * p.p * g.start_row;  // S_c [p, N]
  const float* G = g.end_grads + (bc * p.H + k.h) * p.p * p.N;                                   // G_{c+1} [p, N]

  // Phase 0: the decays, each segment summed on its own; K = D = L (0 without d_y: they only ever multiply it),
  // their upper triangles (s > t) 0, as the products read them. And <G_{c+1}, S_c>.
  for (int s = threadIdx.x; s < len; s += blockDim.x) {  // column s of K and D: consecutive threads, banks
    dts[s] = dt[s * p.dt_row];
    const float keep = d_y ? 1.0f : 0.0f;
    for (int t = 0; t < s; ++t) K[t * ld + s] = D[t * ld + s] = 0.0f;
    K[s * ld + s] = D[s * ld + s] = keep;
    float segment = 0.0f;  // seg(s+1..t), downwards from the diagonal
    for (int t = s + 1; t < len; ++t) {
      segment += dt[t * p.dt_row] * A;
      K[t * ld + s] = D[t * ld + s] = keep * expf(segment);
    }
    float from_start = 0.0f, to_end = 0.0f;
    for (int r = 0; r <= s; ++r) from_start += dt[r * p.dt_row] * A;
    for (int r = len - 1; r > s; --r) to_end += dt[r * p.dt_row] * A;
    decay_in[s] = expf(from_start);
    decay_out[s] = expf(to_end);
  }
  constexpr int kWarps = int(kScanBackwardThreads) / 32;
  float overlap = 0.0f;
  for_each_entry<kWarps>(p.p, p.N, [&](int i, int n) { overlap += G[i * p.N + n] * S_c[i * g.start_row + n]; });
  const float G_dot_S = block_sum<kScanBackwardThreads>(overlap);  // its barriers also end phase 0

  // The operands, in the layouts the products stage (Rows; their values by at(), for the outputs too).
  const auto x_rows = rows(x, p.x_row), B_rows = rows(B, p.B_row), C_rows = rows(C, p.C_row), dy_rows = rows(d_y, g.d_y_row);
  const auto G_rows = rows(G, std::int64_t(p.N)), S_rows = rows(S_c, g.start_row);
  const auto K_rows = rows<float>(K, ld), D_rows = rows<float>(D, ld);
  // Scales the causal entries (s <= t) of M [Q][ld] by the product's values.
  const auto scale_causal = [&](float* M) {
    return [=](int t, int s, float v) {
      if (s <= t) M[t * ld + s] *= v;
    };
  };

  // Phase 1: K = L∘(C·Bᵀ), D = L∘(d_y·xᵀ).
  if (d_y) {
    chunk_product<S>(len, len, scale_causal(K), work, no_row_sums(), term<true, false>(p.N, C_rows, B_rows));
    chunk_product<S>(len, len, scale_causal(D), work, no_row_sums(), term<true, false>(p.p, dy_rows, x_rows));
  }

  // Phase 2: d_x, per-head d_B and d_C, u[t] and w[s]/dt[s]. Each product sums the intra-chunk term (over the
  // `causal` tokens: K's or D's lower triangle, the upper one 0) and then the state's, the header's formulas.
  const int causal = d_y ? len : 0;
  const std::int64_t token0 = std::int64_t(k.b) * p.L + k.c0;  // row of [Bt·L, ...] of the chunk's first token
  S* d_x = g.d_x + k.b * g.d_x_batch + std::int64_t(k.c0) * g.d_x_row + k.h * p.p;
  // gx[s, i] = Σ_{t>=s} K[t,s]·d_y[t,i] + Σ_n exp(seg(s+1..end))·B[s,n]·G[i,n];  d_x = dt·gx (+ D_skip·d_y: E6's skip)
  const float D_skip = g.D_skip ? g.D_skip[k.h] : 0.0f;
  chunk_product<S>(
      len, p.p,
      [&](int s, int i, float v) {
        d_x[s * g.d_x_row + i] = from_float<S>(g.D_skip ? dts[s] * v + D_skip * dy_rows.at(s, i) : dts[s] * v);
      },
      work, no_row_sums(), term<false, true>(causal, K_rows, dy_rows),
      term<true, false>(p.N, scaled_rows(B, p.B_row, decay_out), G_rows));
  if (g.D_skip) {  // this chunk's share of d_D_skip[h] = Σ d_y·x (uniform branch: block_sum's barriers)
    float part = 0.0f;
    for_each_entry<kWarps>(len, p.p, [&](int t, int i) { part += dy_rows.at(t, i) * x_rows.at(t, i); });
    const float total = block_sum<kScanBackwardThreads>(part);
    if (threadIdx.x == 0) g.skip_partials[bc * p.H + k.h] = total;
  }
  // d_B[s, n] = dt[s]·(Σ_{t>=s} D[t,s]·C[t,n] + Σ_i exp(seg(s+1..end))·x[s,i]·G[i,n])
  chunk_product<S>(
      len, p.N, [&](int s, int n, float v) { g.head_d_B[((token0 + s) * p.H + k.h) * p.N + n] = dts[s] * v; }, work,
      no_row_sums(), term<false, true>(causal, D_rows, C_rows), term<true, true>(p.p, scaled_rows(x, p.x_row, decay_out), G_rows));
  // d_C[t, n] = Σ_{s<=t} D[t,s]·(dt[s]·B[s,n]) + Σ_i exp(seg(c0..t))·d_y[t,i]·S_c[i,n]   (0 without d_y)
  if (g.head_d_C)
    chunk_product<S>(
        len, p.N, [&](int t, int n, float v) { g.head_d_C[((token0 + t) * p.H + k.h) * p.N + n] = v; }, work, no_row_sums(),
        term<true, true>(causal, D_rows, scaled_rows(B, p.B_row, dts)),
        term<true, true>(d_y ? p.p : 0, scaled_rows(d_y, g.d_y_row, decay_in), S_rows));
  // u[t] = Σ_n (d_y·S_c)[t,n]·exp(seg(c0..t))·C[t,n];  w[s] = Σ_i (B·Gᵀ)[s,i]·exp(seg(s+1..end))·x[s,i]
  const auto discard = [](int, int, float) {};
  if (d_y)
    chunk_product<S>(len, p.N, discard, work, row_sums(u, [&](int t, int n) { return decay_in[t] * C_rows.at(t, n); }),
                     term<true, true>(p.p, dy_rows, S_rows));
  else
    for (int t = threadIdx.x; t < len; t += blockDim.x) u[t] = 0.0f;
  chunk_product<S>(len, p.p, discard, work, row_sums(w, [&](int s, int i) { return decay_out[s] * x_rows.at(s, i); }),
                   term<true, false>(p.N, B_rows, G_rows));

  // Phase 3: K[t,s] = L[t,s]·(C[t]·B[s])·(d_y[t]·x[s]) = v[t,s] / dt[s].
  if (d_y) chunk_product<S>(len, len, scale_causal(K), work, no_row_sums(), term<true, false>(p.p, dy_rows, x_rows));

  // Phase 4: direct[s] = Σ_{t>=s} K[t,s] + w[s]/dt[s] (= x[s]·gx[s]); D[t,r] = Σ_{s<r} v[t,s] for r <= t.
  for (int s = threadIdx.x; s < len; s += blockDim.x) {
    float acc = 0.0f;
    for (int t = s; t < len; ++t) acc += K[t * ld + s];
    direct[s] = acc + w[s];
  }
  // The row prefixes by a scan across each warp's lanes (row t to warp t % 16, 32 columns at a time): lane l
  // of columns r0.. adds the earlier lanes' terms (Hillis-Steele: 5 steps of shfl_up) to the earlier columns' sum.
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  for (int t = warp; t < len; t += kWarps) {
    float before = 0.0f;  // Σ_{s<r0} v[t,s]
    for (int r0 = 0; r0 <= t; r0 += 32) {
      const int r = r0 + lane;
      float scan = r <= t ? dts[r] * K[t * ld + r] : 0.0f;  // then Σ_{s=r0..r} v[t,s]
      for (int step = 1; step < 32; step *= 2) {
        const float earlier = __shfl_up_sync(0xffffffffu, scan, step);
        if (lane >= step) scan += earlier;
      }
      const float exclusive = __shfl_up_sync(0xffffffffu, scan, 1);
      if (r <= t) D[t * ld + r] = before + (lane == 0 ? 0.0f : exclusive);
      before += __shfl_sync(0xffffffffu, scan, 31);
    }
  }
  __syncthreads();

  // Phase 5: d_a[r], then d_dt[r] = direct[r] + A·d_a[r] and this block's share of d_A.
  float* d_dt = g.d_dt + k.b * g.d_dt_batch + std::int64_t(k.c0) * g.d_dt_row + k.h;
  const float z = decay_in[len - 1] * G_dot_S;
  float share = 0.0f;
  for (int r = threadIdx.x; r < len; r += blockDim.x) {
    float intra = 0.0f, later_u = 0.0f, earlier_w = 0.0f;
    for (int t = r; t < len; ++t) intra += D[t * ld + r], later_u += u[t];
    for (int s = 0; s < r; ++s) earlier_w += dts[s] * w[s];
    const float d_a = intra + later_u + earlier_w + z;
    d_dt[r * g.d_dt_row] = direct[r] + A * d_a;
    share += dts[r] * d_a;
  }
  const float total = block_sum<kScanBackwardThreads>(share);
  if (threadIdx.x == 0) g.A_partials[bc * p.H + k.h] = total;
}

// Step 4: out[b, t, g·N + n] = Σ_{j < H/G} heads[b·L + t, g·(H/G) + j, n], one thread per output, heads in order,
// stored as S.
template <class S>
__global__ void __launch_bounds__(kScanThreads) ssm_group_sum_kernel(const float* heads, int Bt, int L, int H, int G, int N,
                                                                     S* out, std::int64_t out_batch, std::int64_t out_row) {
  const std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= std::int64_t(Bt) * L * G * N) return;
  const int n = int(e % N), gr = int(e / N % G);
  const std::int64_t token = e / (std::int64_t(G) * N);  // b·L + t
  const int per = H / G;
  float sum = 0.0f;
  for (int j = 0; j < per; ++j) sum += heads[(token * H + gr * per + j) * N + n];
  out[token / L * out_batch + token % L * out_row + gr * N + n] = from_float<S>(sum);
}

// Resolves a view's strides for [*, rows, cols] into a kernel's pointer and strides.
template <class T, class U>
void set(T*& ptr, std::int64_t& batch, std::int64_t& row, const View<U>& view, std::int64_t rows, std::int64_t cols) {
  const Strides st = resolved_strides(view, rows, cols);
  ptr = view.data, batch = st.batch, row = st.row;
}

// The shape and the inputs both directions read.
template <class S>
ScanPointers<S> input_pointers(const ScanShape& s, const ScanPlan& plan, const View<const S>& x, const View<const float>& dt,
                               const View<const float>& A, const View<const S>& B, const View<const S>& C) {
  const std::int64_t HP = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  ScanPointers<S> p{};
  p.L = s.L, p.H = s.H, p.p = s.p, p.G = s.G, p.N = s.N, p.Q = s.Q, p.chunks = plan.chunks;
  set(p.x, p.x_batch, p.x_row, x, s.L, HP);
  set(p.dt, p.dt_batch, p.dt_row, dt, s.L, s.H);
  p.A = A.data;
  set(p.B, p.B_batch, p.B_row, B, s.L, GN);
  set(p.C, p.C_batch, p.C_row, C, s.L, GN);
  return p;
}

template <class S>
void forward(const ScanForwardT<S>& a, const LaunchContext& ctx) {
  const ScanShape& s = a.shape;
  if (s.Bt == 0) return;
  const ScanPlan plan = scan_plan(s);
  const std::int64_t HP = std::int64_t(s.H) * s.p;
  ScanPointers<S> p = input_pointers(s, plan, a.x, a.dt, a.A, a.B, a.C);
  set(p.S_init, p.init_batch, p.init_row, a.S_init, HP, s.N);
  set(p.y, p.y_batch, p.y_row, a.y, s.L, HP);
  set(p.final_state, p.final_batch, p.final_row, a.final_state, HP, s.N);
  set(p.chunk_states, p.chunk_batch, p.chunk_row, a.chunk_states, HP, s.N);
  set(p.start_states, p.start_batch, p.start_row, a.start_states, HP, s.N);
  p.chunk_decays = a.chunk_decays.data;
  p.D_skip = a.D_skip.data;
  constexpr bool tensor_cores = std::is_same_v<S, Bf16>;
  if (plan.chunks > 0) {
    if constexpr (tensor_cores)
      launch(TM_SITE("ssm_chunk_state_tc"), ssm_chunk_state_tc_kernel, plan.bf16_chunk_states, ctx, p);
    else
      launch(TM_SITE("ssm_chunk_state"), ssm_chunk_state_kernel<S>, plan.chunk_states, ctx, p);
  }
  launch(TM_SITE("ssm_state_passing"), ssm_state_passing_kernel<S>, plan.state_passing, ctx, p);
  if (plan.chunks > 0 && p.y) {
    if constexpr (tensor_cores)
      launch(TM_SITE("ssm_output_tc"), ssm_output_tc_kernel, plan.bf16_output, ctx, p);
    else
      launch(TM_SITE("ssm_output"), ssm_output_kernel<S>, plan.output, ctx, p);
  }
}

template <class S>
void backward(const ScanBackwardT<S>& a, const LaunchContext& ctx) {
  const ScanShape& s = a.shape;
  const ScanPlan plan = scan_plan(s);
  const std::int64_t HP = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  float* ws = a.workspace.data;
  ScanGradPointers<S> g{};
  g.chunk_decays = ws;
  g.end_grads = g.chunk_decays + plan.chunk_decays;
  g.A_partials = g.end_grads + plan.state_values;
  g.skip_partials = g.A_partials + plan.chunk_decays;
  g.head_d_B = g.skip_partials + plan.chunk_decays;
  g.head_d_C = a.d_C.data ? g.head_d_B + plan.head_values : nullptr;
  const int blocks = s.Bt * plan.chunks;  // (sequence, chunk) pairs, each one partial of d_A per head
  if (s.Bt > 0) {
    g.f = input_pointers(s, plan, a.x, a.dt, a.A, a.B, a.d_y.data ? a.C : View<const S>{});
    set(g.start_states, g.start_batch, g.start_row, a.start_states, HP, s.N);
    set(g.d_y, g.d_y_batch, g.d_y_row, a.d_y, s.L, HP);
    set(g.d_final, g.d_final_batch, g.d_final_row, a.d_final_state, HP, s.N);
    set(g.d_x, g.d_x_batch, g.d_x_row, a.d_x, s.L, HP);
    set(g.d_dt, g.d_dt_batch, g.d_dt_row, a.d_dt, s.L, s.H);
    set(g.d_S_init, g.d_init_batch, g.d_init_row, a.d_S_init, HP, s.N);
    g.D_skip = a.D_skip.data;
    if (blocks > 0) {
      if constexpr (std::is_same_v<S, Bf16>)  // the same launch as the forward's stage 1 (chunk_product_tc)
        launch(TM_SITE("ssm_chunk_grad_tc"), ssm_chunk_grad_tc_kernel, plan.bf16_chunk_states, ctx, g);
      else
        launch(TM_SITE("ssm_chunk_grad"), ssm_chunk_grad_kernel<S>, plan.chunk_grad, ctx, g);
    }
    launch(TM_SITE("ssm_state_grad_passing"), ssm_state_grad_passing_kernel<S>, plan.state_passing, ctx, g);
    if (blocks > 0) {
      launch(TM_SITE("ssm_chunk_backward"), ssm_chunk_backward_kernel<S>, plan.backward_chunk, ctx, g);
      const Strides bs = resolved_strides(a.d_B, s.L, GN);
      launch(TM_SITE("ssm_group_sum(d_B)"), ssm_group_sum_kernel<S>, plan.group_sum, ctx, static_cast<const float*>(g.head_d_B),
             s.Bt, s.L, s.H, s.G, s.N, a.d_B.data, bs.batch, bs.row);
      if (g.head_d_C) {
        const Strides cs = resolved_strides(a.d_C, s.L, GN);
        launch(TM_SITE("ssm_group_sum(d_C)"), ssm_group_sum_kernel<S>, plan.group_sum, ctx, static_cast<const float*>(g.head_d_C),
               s.Bt, s.L, s.H, s.G, s.N, a.d_C.data, cs.batch, cs.row);
      }
    }
  }
  // d_A: the blocks' partials in (sequence, chunk) order; none: zeros.
  launch(TM_SITE("ssm_sum_partials(d_A)"), sum_partials<float>, plan.reduce_A, ctx, static_cast<const float*>(g.A_partials),
         blocks, s.H, std::int64_t(s.H), a.d_A.data, s.H, std::int64_t(s.H));
  if (a.D_skip.data)  // d_D_skip likewise
    launch(TM_SITE("ssm_sum_partials(d_D_skip)"), sum_partials<float>, plan.reduce_A, ctx,
           static_cast<const float*>(g.skip_partials), blocks, s.H, std::int64_t(s.H), a.d_D_skip.data, s.H, std::int64_t(s.H));
}
}  // namespace

void ssm_chunked_forward(const ScanForward& a, const LaunchContext& ctx) { forward(a, ctx); }
void ssm_chunked_forward(const ScanForwardBf16& a, const LaunchContext& ctx) { forward(a, ctx); }
void ssm_chunked_backward(const ScanBackward& a, const LaunchContext& ctx) { backward(a, ctx); }
void ssm_chunked_backward(const ScanBackwardBf16& a, const LaunchContext& ctx) { backward(a, ctx); }

}  // namespace transmamba::gpu::TM_BACKEND_NS
