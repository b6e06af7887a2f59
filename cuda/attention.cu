// Grouped causal softmax attention (E4), forward and backward, flash style: the kernels of cuda/attention.hpp.
// Compiled twice (portable.cuh): by nvcc for a GPU and by the host compiler for the CPU emulation.
//
// Per sequence b and group g (R = H/G heads, the group's values are the R·p columns V = x[:, g·R·p ..]):
//   score[t, s] = C[t, g]·B[s, g] / sqrt(N)   (s ≤ t),   w[t, s] = softmax_s(score[t, s]),   y[t, g-cols] = Σ_s w[t, s]·V[s]
// Forward (one block per query tile, group, sequence): walks the key tiles up to the diagonal; per key tile it
// computes the tile's scores once (one thread per (query, key)), folds them into each row's online softmax
// (one warp per row, the 32 keys of a tile on its lanes), and updates the output accumulator of all R·p value
// columns from the same weights. It writes y = O / sum and lse = max + log(sum).
// Backward (the flash backward: weights recomputed as w = exp(score - lse)):
//   d_w[t, s]   = Σ_{h in g} d_y[t, h]·x[s, h]   (the softmax is shared by the group's heads)
//   c[t]        = d_w[t, m] of the row's heaviest key m,   D[t] = Σ_s w[t, s]·(d_w[t, s] - c[t])
//   d_score     = w ∘ ((d_w - c) - D) / sqrt(N)
//   d_C[t, g]   = Σ_s d_score[t, s]·B[s, g],   d_B[s, g] = Σ_t d_score[t, s]·C[t, g],   d_x[s, h] = Σ_t w[t, s]·d_y[t, h]
// (= w ∘ (d_w - Σ_s w·d_w), centered on the heaviest key as in reference/attention.hpp: at a nearly one-hot row,
// w[m] = 1 - δ, the true d_score[t, m] is O(δ·d_w), and the plain rowsum (Σ d_y·y, or Σ w·d_w) loses it in the
// rounding of w[m] and of the sum; centered, key m's term is exactly 0. Seen: d_C, d_B 50% off in
// emulated.attention.bf16, C, B scale 30; the bf16 y, off by 2^-9·|y|, made Σ d_y·y worse still.)
// fp32: three kernels: the row statistics c, D (the d_C kernel in its kRowsum mode), d_C over query tiles
// (looping over key tiles), and d_B, d_x over key tiles (looping over query tiles from the diagonal down).
// bf16 (bf16 storage of C, B, x, y, d_y and the gradients; lse and D, c fp32): the forward and the backward
// on tensor cores, their own kernels (attention_forward_bf16_kernel, and the two of "bf16 backward" below).
// Every output value is accumulated by one thread (or lane) in a fixed order: no atomics, bitwise the same result
// in every thread order. y is not read by the backward (it was, for D = Σ d_y·y; the API keeps it for its
// callers).
#include "cuda/portable.cuh"

#include "cuda/attention.hpp"
#include "cuda/backends.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"
#include "cuda/mma.cuh"
#include "cuda/stage.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {

// A [Bt, rows, cols] tensor's pointer (already at the group's first column) and strides.
template <class T>
struct Strided {
  T* data;
  std::int64_t batch, row;
};

template <class S>
struct AttnPointersT {
  int P, G, cols;  // cols = R·p, the value columns of one group
  int first_query; // the forward's queries are tokens first_query .. P-1 (rows 0 .. of C, y, lse)
  int rows;        // the tile with the R·p-wide accumulator: forward query tile, backward key tile
  int column_blocks;  // the bf16 forward: blocks of kAttnBf16Columns value columns per group
  float inv_sqrt_n;
  Strided<const S> C, B, x, d_y;
  Strided<S> y_out, d_C, d_B, d_x;
  const float* lse;  // [Bt, G, P]
  float* lse_out;
  const float* D;    // [Bt, G, P] the backward's row statistics D and c (workspace), index (b·G + g)·P + t
  const float* center;
  float* D_out;
  float* center_out;
};
using AttnPointers = AttnPointersT<float>;

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline float warp_sum(float v) {  // a butterfly: every lane adds the same pairs, so all get the same sum
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// C[t, g]·B[s, g] / sqrt(N) from the padded rows of the Q and K tiles; the same order in every kernel.
template <int N>
__device__ inline float score(const float* q, const float* k, float inv_sqrt_n) {
  float acc = 0.0f;
#pragma unroll 16
  for (int i = 0; i < N; ++i) acc += q[i] * k[i];
  return acc * inv_sqrt_n;
}

// tile[r·ld + c] = src[(first + r)·row + c] for r < tile_rows, c < tile_cols; 0 where r >= valid or c >= width
// (rows past P are never read: the tiles' last rows may lie beyond the sequence).
__device__ inline void stage(float* tile, int ld, int tile_rows, int tile_cols, const float* src, std::int64_t row,
                             int first, int valid, int width) {
  for (int i = threadIdx.x; i < tile_rows * tile_cols; i += kAttnThreads) {
    const int r = i / tile_cols, c = i % tile_cols;
    tile[r * ld + c] = r < valid && c < width ? src[(first + r) * row + c] : 0.0f;
  }
}

// ---- forward --------------------------------------------------------------------------------------------
template <int N>
__global__ void __launch_bounds__(kAttnThreads) attention_forward_kernel(AttnPointers p) {
  // q0: the tile's first query as a token position; its row in C, y and lse is q0 - first_query.
  const int rows = p.rows, cols = p.cols, b = blockIdx.z, g = blockIdx.y, q0 = p.first_query + blockIdx.x * rows;
  const int valid = min(rows, p.P - q0), row0 = q0 - p.first_query, queries = p.P - p.first_query;
  const AttnForwardLayout L(rows, N, cols);
  float* sh = dynamic_shared<float>();
  float *Qs = sh + L.q, *Ks = sh + L.k, *S = sh + L.s, *Vs = sh + L.v, *O = sh + L.o;
  float *row_max = sh + L.max, *row_sum = sh + L.sum, *row_scale = sh + L.scale;
  const float* C = p.C.data + b * p.C.batch + g * N;
  const float* B = p.B.data + b * p.B.batch + g * N;
  const float* X = p.x.data + b * p.x.batch + g * cols;

  stage(Qs, N + 1, rows, N, C, p.C.row, row0, valid, N);
  for (int i = threadIdx.x; i < rows * cols; i += kAttnThreads) O[i] = 0.0f;
  for (int r = threadIdx.x; r < rows; r += kAttnThreads) row_max[r] = -INFINITY, row_sum[r] = 0.0f;
  __syncthreads();

  const int key_tiles = (q0 + valid - 1) / kAttnKeyTile + 1;  // keys 0 .. the tile's last query
  for (int kt = 0; kt < key_tiles; ++kt) {
    const int s0 = kt * kAttnKeyTile;
    stage(Ks, N + 1, kAttnKeyTile, N, B, p.B.row, s0, min(kAttnKeyTile, p.P - s0), N);
    __syncthreads();
    for (int i = threadIdx.x; i < rows * kAttnKeyTile; i += kAttnThreads) {
      const int r = i / kAttnKeyTile, j = i % kAttnKeyTile;
      S[i] = r < valid && s0 + j <= q0 + r ? score<N>(Qs + r * (N + 1), Ks + j * (N + 1), p.inv_sqrt_n) : -INFINITY;
    }
    __syncthreads();
    // Online softmax, a warp per row, key j on lane j: fold the tile's (max, Σ exp(score - max)) into the row's,
    // turn the scores into exp(score - new max), and keep the factor that rescales what was accumulated before.
    const int lane = threadIdx.x % 32;
    for (int r = threadIdx.x / 32; r < rows; r += kAttnThreads / 32) {
      OnlineSoftmax row{row_max[r], row_sum[r]};  // read by every lane before the shuffles, written after
      const float sc = S[r * kAttnKeyTile + lane];
      const float tile_max = warp_max(sc);
      const float tile_sum = warp_sum(sc == -INFINITY ? 0.0f : expf(sc - tile_max));
      const float rescale = row.merge(tile_max, tile_sum);
      S[r * kAttnKeyTile + lane] = sc == -INFINITY ? 0.0f : expf(sc - row.max);
      __syncwarp();  // every lane's read of row_max[r], row_sum[r] ordered before lane 0 writes them (racecheck)
      if (lane == 0) row_max[r] = row.max, row_sum[r] = row.sum, row_scale[r] = rescale;
    }
    // O[r, c] = O[r, c]·rescale[r] + Σ_j w[r, j]·V[s0 + j, c], the value columns staged kAttnColumns at a time
    // (the first chunk's barrier also orders the weights and rescale factors before their use).
    for (int c0 = 0; c0 < cols; c0 += kAttnColumns) {
      const int width = min(kAttnColumns, cols - c0);
      stage(Vs, kAttnColumns, kAttnKeyTile, kAttnColumns, X + c0, p.x.row, s0, min(kAttnKeyTile, p.P - s0), width);
      __syncthreads();
      for (int i = threadIdx.x; i < rows * kAttnColumns; i += kAttnThreads) {
        const int r = i / kAttnColumns, c = i % kAttnColumns;
        if (c >= width) continue;
        float acc = O[r * cols + c0 + c] * row_scale[r];
        for (int j = 0; j < kAttnKeyTile; ++j) acc += S[r * kAttnKeyTile + j] * Vs[j * kAttnColumns + c];
        O[r * cols + c0 + c] = acc;
      }
      __syncthreads();
    }
  }
  float* Y = p.y_out.data + b * p.y_out.batch + g * cols;
  for (int i = threadIdx.x; i < valid * cols; i += kAttnThreads) {
    const int r = i / cols, c = i % cols;
    Y[(row0 + r) * p.y_out.row + c] = O[i] / row_sum[r];
  }
  float* lse = p.lse_out + (std::int64_t(b) * p.G + g) * queries;
  for (int r = threadIdx.x; r < valid; r += kAttnThreads) lse[row0 + r] = row_max[r] + logf(row_sum[r]);
}

// ---- bf16 forward on tensor cores -------------------------------------------------------------------------
// The same E4 as the fp32 forward, flash style, with the two products on mma.sync m16n8k16 (cuda/mma.cuh):
//   S = Q·Kᵀ / sqrt(N)   (Q = C, K = B in bf16; fp32 accumulation over N in k-steps of 16, keys in n8 tiles)
//   O = Σ_tiles rescale·O + bf16(exp(S - m))·V   (V = the block's kAttnBf16Columns of x, fp32 accumulation)
//   y = bf16(O / l),   lse = m + log(l)   (m, l: the row's running max and Σ exp(S - m) in fp32, unrounded)
// Block: (query tile of kAttnBf16Rows, group g and value column block, sequence); warp w owns query rows
// 16w .. 16w + 15 and keeps them in registers: its Q fragments, the score fragments of one key tile and the
// output fragments of the column block (kAttnBf16Columns / 8 n8 tiles). The warps share the key tile and its
// values, staged in shared memory by the whole block in two buffers (cp.async, stage.cuh: the next tile's copies
// are in flight while the warps work on this one). Lane (gr, tq) = (lane / 4, lane % 4) holds rows gr and
// gr + 8 of every C fragment (mma_c_at), so a row's max and sum are reduced over the 4 lanes of a quad.
// Key tiles past a warp's diagonal are skipped warp-uniformly, and the scores of 16-key halves past it (their
// weights are 0 in O += P·V). The
// fragments come from shared memory by ldmatrix (mma.cuh; V's by the transposing form). Loops over fragment
// arrays run to their compile-time bounds and skip by condition (col_tiles < kColTiles in a narrow last
// column block), so that the arrays stay in registers. Every value is computed by one lane in a fixed order: bitwise the same in every thread order.

// tile[r·ld + c] = src[(first + r)·row + c] for r < valid, c < width, 0 in the rest of the tile (stage.cuh: 8
// values per load where the source allows it, e.g. the layer's C, B and x; else one at a time).
__device__ inline void stage_bf16(bf16* tile, int ld, int tile_rows, int tile_cols, const Bf16* src, std::int64_t row,
                                  int first, int valid, int width) {
  stage_bf16_tile<32 * kAttnBf16Warps>(tile, ld, tile_rows, tile_cols, src + first * row, row, valid, width);
}

__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quad_sum(float v) {  // a butterfly: the 4 lanes get the same sum
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// A warp's products on tensor cores, with fragments loaded by ldmatrix from bf16 tiles in shared memory.
// acc[j] += A·Bᵀ over k < K (a multiple of 16): A = 16 rows of a row-major tile (lda), Bt = 8·kTiles rows of a
// row-major tile (ldb); acc[j] holds the products with Bt's rows 8j .. 8j + 7 (e.g. scores Q·Kᵀ, or d_w = d_y·xᵀ).
template <int kTiles>
__device__ inline void warp_product_abt(MmaC (&acc)[kTiles], const bf16* A, int lda, const bf16* Bt, int ldb, int K) {
  static_assert(kTiles % 2 == 0, "Bt's rows in pairs of n8 tiles (mma_ldmatrix_b2)");
  for (int k = 0; k < K; k += 16) {
    const MmaA a = mma_ldmatrix_a(A + k, lda);
#pragma unroll
    for (int jj = 0; jj < kTiles / 2; ++jj) {
      MmaB b[2];
      mma_ldmatrix_b2(b, Bt + 16 * jj * ldb + k, ldb);
      mma_m16n8k16(acc[2 * jj], a, b[0], acc[2 * jj]);
      mma_m16n8k16(acc[2 * jj + 1], a, b[1], acc[2 * jj + 1]);
    }
  }
}

// acc[c] += X·B for c < tiles (even, <= kOut): X = 16 x 8·kX held as C fragments x[j] (X's columns 8j ..), as
// A operands rounded to bf16, or with kSplit in two bf16 parts (mma_a_from_c: each product taken once per
// part, X to 2^-16 relative); B = rows 0 .. 8·kX - 1 of a row-major tile (ldb), acc[c] its columns 8c ...
template <bool kSplit, int kX, int kOut>
__device__ inline void warp_product_cb(MmaC (&acc)[kOut], const MmaC (&x)[kX], const bf16* B, int ldb, int tiles) {
  static_assert(kX % 2 == 0 && kOut % 2 == 0, "k16 steps of X, pairs of n8 output tiles");
#pragma unroll
  for (int kk = 0; kk < kX / 2; ++kk) {
    MmaA hi, lo;
    mma_a_from_c(x[2 * kk], x[2 * kk + 1], hi, kSplit ? &lo : nullptr);
#pragma unroll
    for (int c = 0; c < kOut; c += 2) {
      if (c >= tiles) continue;
      MmaB b[2];
      mma_ldmatrix_b2_trans(b, B + 16 * kk * ldb + 8 * c, ldb);
      for (int e = 0; e < 2; ++e) {
        mma_m16n8k16(acc[c + e], hi, b[e], acc[c + e]);
        if constexpr (kSplit) mma_m16n8k16(acc[c + e], lo, b[e], acc[c + e]);
      }
    }
  }
}

template <int N>
__global__ void __launch_bounds__(32 * kAttnBf16Warps) attention_forward_bf16_kernel(AttnPointersT<Bf16> p) {
  constexpr int ldk = N + kAttnBf16Pad, ldv = kAttnBf16Columns + kAttnBf16Pad;
  constexpr int kKeyTiles = kAttnBf16Keys / 8, kColTiles = kAttnBf16Columns / 8;
  const int b = blockIdx.z, g = blockIdx.y / p.column_blocks, c0 = blockIdx.y % p.column_blocks * kAttnBf16Columns;
  const int col_tiles = min(kAttnBf16Columns, p.cols - c0) / 8;  // R·p is a multiple of 16
  const int q0 = p.first_query + blockIdx.x * kAttnBf16Rows;    // the tile's first query as a token position
  const int valid = min(kAttnBf16Rows, p.P - q0), row0 = q0 - p.first_query;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane / 4, tq = lane % 4;
  const int wq0 = q0 + 16 * warp;                 // the warp's first query
  const int w_last = min(wq0 + 15, p.P - 1);      // the last key its queries see (< wq0: the warp has none)
  const AttnBf16ForwardLayout L(N);
  bf16* sh = dynamic_shared<bf16>();
  bf16* Qs = sh + L.q;
  const Bf16* C = p.C.data + b * p.C.batch + g * N;
  const Bf16* B = p.B.data + b * p.B.batch + g * N;
  const Bf16* X = p.x.data + b * p.x.batch + g * p.cols + c0;

  // The key and value tiles of keys s0 .. into buffer `buf` (cp.async; they land at the wait below).
  const auto stage_keys = [&](int s0, int buf) {
    const int valid_k = min(kAttnBf16Keys, p.P - s0);
    stage_bf16_tile_async<32 * kAttnBf16Warps>(sh + L.k + buf * L.k_size, ldk, kAttnBf16Keys, N, B + s0 * p.B.row, p.B.row,
                                               valid_k, N);
    stage_bf16_tile_async<32 * kAttnBf16Warps>(sh + L.v + buf * L.v_size, ldv, kAttnBf16Keys, kAttnBf16Columns,
                                               X + s0 * p.x.row, p.x.row, valid_k, col_tiles * 8);
  };
  stage_keys(0, 0);  // in flight while the block stages its queries
  commit_copies();
  stage_bf16(Qs, ldk, kAttnBf16Rows, N, C, p.C.row, row0, valid, N);
  __syncthreads();
  MmaA q[N / 16];
  for (int k = 0; k < N / 16; ++k) q[k] = mma_ldmatrix_a(Qs + 16 * warp * ldk + 16 * k, ldk);
  MmaC o[kColTiles] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows gr, gr + 8: running max; this lane's Σ exp

  const int last_key = q0 + valid - 1;
  for (int s0 = 0, buf = 0; s0 <= last_key; s0 += kAttnBf16Keys, buf ^= 1) {
    // The next tile into the other buffer, which every warp left at the previous iteration's last barrier; then
    // this tile's copies landed (every group but the one just committed, empty on the last tile) and seen by all.
    if (s0 + kAttnBf16Keys <= last_key) stage_keys(s0 + kAttnBf16Keys, buf ^ 1);
    commit_copies();
    wait_copies<1>();
    __syncthreads();
    if (s0 <= w_last) {  // warp-uniform: else none of the warp's queries sees these keys
      const bf16 *Ks = sh + L.k + buf * L.k_size, *Vs = sh + L.v + buf * L.v_size;
      MmaC s[kKeyTiles];
      float tile_max[2] = {-INFINITY, -INFINITY};
      for (int j = 0; j < kKeyTiles; ++j) s[j] = MmaC{};
#pragma unroll
      for (int jj = 0; jj < kKeyTiles / 2; ++jj) {  // keys 16jj .. 16jj + 15
        if (s0 + 16 * jj > w_last) continue;
        for (int k = 0; k < N / 16; ++k) {
          MmaB key[2];
          mma_ldmatrix_b2(key, Ks + 16 * jj * ldk + 16 * k, ldk);
          mma_m16n8k16(s[2 * jj], q[k], key[0], s[2 * jj]);
          mma_m16n8k16(s[2 * jj + 1], q[k], key[1], s[2 * jj + 1]);
        }
      }
      for (int j = 0; j < kKeyTiles; ++j) {
        const bool needed = s0 + 8 * j <= w_last;
        for (int i = 0; i < 4; ++i) {  // causal mask (keys past P lie after every query)
          const int query = wq0 + gr + 8 * (i / 2), key = s0 + 8 * j + 2 * tq + i % 2;
          s[j].v[i] = needed && key <= query ? s[j].v[i] * p.inv_sqrt_n : -INFINITY;
          tile_max[i / 2] = fmaxf(tile_max[i / 2], s[j].v[i]);
        }
      }
      float rescale[2];
      for (int h = 0; h < 2; ++h) {
        const float m_new = fmaxf(m[h], quad_max(tile_max[h]));
        rescale[h] = m_new == -INFINITY ? 1.0f : expf(m[h] - m_new);  // exp(-inf) = 0 before the first key
        m[h] = m_new;
        l[h] *= rescale[h];
      }
      for (int j = 0; j < kKeyTiles; ++j)
        for (int i = 0; i < 4; ++i) {
          const float w = s[j].v[i] == -INFINITY ? 0.0f : expf(s[j].v[i] - m[i / 2]);
          s[j].v[i] = w;
          l[i / 2] += w;
        }
      for (int c = 0; c < kColTiles; ++c)
        for (int i = 0; i < 4; ++i) o[c].v[i] *= rescale[i / 2];
      warp_product_cb<false>(o, s, Vs, ldv, col_tiles);  // O += P·V (col_tiles is even: R·p is a multiple of 16)
    }
    __syncthreads();  // every warp is done with this buffer before the next iteration's copies into it
  }
  for (int h = 0; h < 2; ++h) l[h] = quad_sum(l[h]);
  Bf16* Y = p.y_out.data + b * p.y_out.batch + g * p.cols + c0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int query = wq0 + gr + 8 * (i / 2);
    if (query >= p.P) continue;
#pragma unroll
    for (int c = 0; c < kColTiles; ++c)
      if (c < col_tiles) Y[(query - p.first_query) * p.y_out.row + 8 * c + 2 * tq + i % 2] = to_bf16(o[c].v[i] / l[i / 2]);
  }
  float* lse = p.lse_out + (std::int64_t(b) * p.G + g) * (p.P - p.first_query);
  if (blockIdx.y % p.column_blocks == 0 && tq == 0)  // the first column block writes lse (all compute the same)
    for (int h = 0; h < 2; ++h)
      if (wq0 + gr + 8 * h < p.P) lse[wq0 + gr + 8 * h - p.first_query] = m[h] + logf(l[h]);
}

// ---- backward -------------------------------------------------------------------------------------------
// Every product of the backward: out(i, j, v) for i < M, j < Nn with v = init(i, j) + Σ_{k<K} a(i, k)·b(k, j),
// k in order (one thread per output, the order of a plain loop), where a(i, k) = A[i·a_row + k·a_col] and
// b(k, j) = B[k·b_row + j·b_col] are shared-memory tiles. Each thread takes kTm x kTn outputs, rows
// tm + ii·ceil(M/kTm) and columns tn + jj·ceil(Nn/kTn) (interleaved, so that a warp's threads, consecutive in tn,
// read consecutive columns of a row-major B), and loads kTm + kTn operands per k for kTm·kTn products (one
// thread per output loaded 2 per product).
template <int kTm, int kTn, class Init, class Out>
__device__ inline void tile_product(int M, int Nn, int K, const float* A, int a_row, int a_col, const float* B, int b_row,
                                    int b_col, Init init, Out out) {
  const int rows = ceil_div(M, kTm), cols = ceil_div(Nn, kTn);
  for (int t = threadIdx.x; t < rows * cols; t += kAttnThreads) {
    const int tm = t / cols, tn = t % cols;
    float acc[kTm][kTn];
    for (int ii = 0; ii < kTm; ++ii)
      for (int jj = 0; jj < kTn; ++jj) {
        const int i = tm + ii * rows, j = tn + jj * cols;
        acc[ii][jj] = i < M && j < Nn ? init(i, j) : 0.0f;
      }
    for (int k = 0; k < K; ++k) {
      float a[kTm], b[kTn];
      for (int ii = 0; ii < kTm; ++ii) a[ii] = tm + ii * rows < M ? A[(tm + ii * rows) * a_row + k * a_col] : 0.0f;
      for (int jj = 0; jj < kTn; ++jj) b[jj] = tn + jj * cols < Nn ? B[k * b_row + (tn + jj * cols) * b_col] : 0.0f;
      for (int ii = 0; ii < kTm; ++ii)
        for (int jj = 0; jj < kTn; ++jj) acc[ii][jj] += a[ii] * b[jj];
    }
    for (int ii = 0; ii < kTm; ++ii)
      for (int jj = 0; jj < kTn; ++jj) {
        const int i = tm + ii * rows, j = tn + jj * cols;
        if (i < M && j < Nn) out(i, j, acc[ii][jj]);
      }
  }
}

// The row statistics of the header over a set of one row's keys: c = d_w of the heaviest key (the first of
// equal weights) and D = Σ w·(d_w - c), centered as it goes (when a heavier key comes, the sum so far moves to
// the new center: + (c_old - c_new)·Σ w so far, small where D is). A lane adds its keys in order, then the
// quad's four sets are merged (the bf16 kernel); the fp32 kernel's thread per row adds all of them.
struct RowStats {
  float heaviest = 0.0f, center = 0.0f, sum = 0.0f, weights = 0.0f;  // the heaviest weight, c, D, Σ w
  int key = 0x7fffffff;                                              // the heaviest key

  __device__ void add(float w, float d_w, int k) {
    if (w > heaviest) sum += (center - d_w) * weights, center = d_w, heaviest = w, key = k;
    sum += w * (d_w - center);
    weights += w;
  }
  // Two disjoint key sets, centered on the heavier's key: the same result in either order.
  __device__ static RowStats merge(const RowStats& a, const RowStats& b) {
    const bool b_heavier = b.heaviest > a.heaviest || (b.heaviest == a.heaviest && b.key < a.key);
    const RowStats &h = b_heavier ? b : a, &l = b_heavier ? a : b;
    RowStats m = h;
    m.sum = h.sum + (l.sum + (l.center - h.center) * l.weights);
    m.weights = h.weights + l.weights;
    return m;
  }
  __device__ RowStats merged_over_quad() const {
    RowStats m = *this;
    for (int o = 1; o <= 2; o <<= 1) {
      RowStats other;
      other.heaviest = __shfl_xor_sync(0xffffffffu, m.heaviest, o);
      other.center = __shfl_xor_sync(0xffffffffu, m.center, o);
      other.sum = __shfl_xor_sync(0xffffffffu, m.sum, o);
      other.weights = __shfl_xor_sync(0xffffffffu, m.weights, o);
      other.key = __shfl_xor_sync(0xffffffffu, m.key, o);
      m = merge(m, other);
    }
    return m;
  }
};

// d_w[i, j] += Σ_c d_y[i, c]·x[j, c] over one staged chunk of value columns (dW: queries x keys).
__device__ inline void accumulate_d_w(float* dW, const float* dYs, const float* Vs, int queries, int keys, int width) {
  tile_product<2, 2>(
      queries, keys, width, dYs, kAttnColumns + 1, 1, Vs, 1, kAttnColumns + 1,
      [&](int i, int j) { return dW[i * keys + j]; }, [&](int i, int j, float v) { dW[i * keys + j] = v; });
}

// The weights w[i, j] = exp(score - lse[i]) of query q0 + i and key s0 + j (0 where masked), and the d_w
// accumulator zeroed, for a queries x keys tile. The score C[t, g]·B[s, g] / sqrt(N) is summed over N in order,
// as in the fp32 forward's score() (for bf16, in the tensor cores' order, as in the bf16 forward).
template <int N>
__device__ inline void tile_weights(float* W, float* dW, const float* Qs, const float* Ks, const float* lse,
                                    int queries, int keys, int q0, int valid_q, int s0, float inv_sqrt_n) {
  const auto weight = [&](int r, int j, float v) {
    W[r * keys + j] = r < valid_q && s0 + j <= q0 + r ? expf(v * inv_sqrt_n - lse[r]) : 0.0f;
    dW[r * keys + j] = 0.0f;
  };
  tile_product<2, 2>(queries, keys, N, Qs, N + 1, 1, Ks, 1, N + 1, [](int, int) { return 0.0f; }, weight);
}

// The slices of sequence b, group g that the backward kernels read: C and B at column g·N, x and d_y at the
// group's first value column g·R·p, and the start of the (b, g) row of lse and D.
template <class S>
struct GroupSlices {
  const S *C, *B, *X, *dY;
  std::int64_t stats;
};
template <int N, class S>
__device__ inline GroupSlices<S> group_slices(const AttnPointersT<S>& p, int b, int g) {
  return {p.C.data + b * p.C.batch + g * N, p.B.data + b * p.B.batch + g * N, p.x.data + b * p.x.batch + g * p.cols,
          p.d_y.data + b * p.d_y.batch + g * p.cols, (std::int64_t(b) * p.G + g) * p.P};
}

// lse and the row statistics D, c of queries q0 .. q0 + kAttnTile - 1 into shared memory (0 past the valid
// ones, and D, c when the kernel computes them).
__device__ inline void stage_stats(float* lse, float* D, float* center, const AttnPointers& p, std::int64_t stats,
                                   int q0, int valid, bool read_d = true) {
  for (int r = threadIdx.x; r < kAttnTile; r += kAttnThreads) {
    lse[r] = r < valid ? p.lse[stats + q0 + r] : 0.0f;
    D[r] = r < valid && read_d ? p.D[stats + q0 + r] : 0.0f;
    center[r] = r < valid && read_d ? p.center[stats + q0 + r] : 0.0f;
  }
}

// d_C over query tiles of kAttnTile: for each key tile up to the diagonal, w and d_w of the tile, then
// d_score = w ∘ ((d_w - c) - D) / sqrt(N) and d_C[i] += Σ_j d_score[i, j]·B[j].
// kRowsum: instead, the row statistics from the same tiles (RowStats), written to the workspace: thread i
// walks row i's keys in order.
template <int N, bool kRowsum = false>
__global__ void __launch_bounds__(kAttnThreads) attention_backward_query_kernel(AttnPointers p) {
  const int cols = p.cols, b = blockIdx.z, g = blockIdx.y, q0 = blockIdx.x * kAttnTile;
  const int valid = min(kAttnTile, p.P - q0);
  const AttnQueryBackwardLayout L(N);
  float* sh = dynamic_shared<float>();
  float *Qs = sh + L.q, *Ks = sh + L.k, *W = sh + L.w, *dS = sh + L.ds, *dYs = sh + L.dy, *Vs = sh + L.v,
        *dQ = sh + L.dq, *lse = sh + L.lse, *D = sh + L.d, *center = sh + L.c;
  const GroupSlices<float> in = group_slices<N>(p, b, g);
  const float *C = in.C, *B = in.B, *X = in.X, *dY = in.dY;

  stage(Qs, N + 1, kAttnTile, N, C, p.C.row, q0, valid, N);
  for (int i = threadIdx.x; i < kAttnTile * N; i += kAttnThreads) dQ[i] = 0.0f;
  stage_stats(lse, D, center, p, in.stats, q0, valid, !kRowsum);
  RowStats stats;  // kRowsum: row threadIdx.x's
  const int key_tiles = (q0 + valid - 1) / kAttnKeyTile + 1;
  for (int kt = 0; kt < key_tiles; ++kt) {
    const int s0 = kt * kAttnKeyTile, valid_k = min(kAttnKeyTile, p.P - s0);
    stage(Ks, N + 1, kAttnKeyTile, N, B, p.B.row, s0, valid_k, N);
    __syncthreads();
    tile_weights<N>(W, dS, Qs, Ks, lse, kAttnTile, kAttnKeyTile, q0, valid, s0, p.inv_sqrt_n);
    for (int c0 = 0; c0 < cols; c0 += kAttnColumns) {
      const int width = min(kAttnColumns, cols - c0);
      stage(dYs, kAttnColumns + 1, kAttnTile, kAttnColumns, dY + c0, p.d_y.row, q0, valid, width);
      stage(Vs, kAttnColumns + 1, kAttnKeyTile, kAttnColumns, X + c0, p.x.row, s0, valid_k, width);
      __syncthreads();
      accumulate_d_w(dS, dYs, Vs, kAttnTile, kAttnKeyTile, width);
      __syncthreads();
    }
    if constexpr (kRowsum) {
      static_assert(kAttnTile <= kAttnThreads, "a thread per row");
      if (const int r = threadIdx.x; r < kAttnTile)
        for (int j = 0; j < kAttnKeyTile; ++j) stats.add(W[r * kAttnKeyTile + j], dS[r * kAttnKeyTile + j], s0 + j);
    } else {
      for (int i = threadIdx.x; i < kAttnTile * kAttnKeyTile; i += kAttnThreads)
        dS[i] = W[i] * ((dS[i] - center[i / kAttnKeyTile]) - D[i / kAttnKeyTile]) * p.inv_sqrt_n;
      __syncthreads();
      // dQ[r, k] += Σ_j dS[r, j]·Ks[j, k]
      tile_product<4, 4>(
          kAttnTile, N, kAttnKeyTile, dS, kAttnKeyTile, 1, Ks, N + 1, 1, [&](int r, int k) { return dQ[r * N + k]; },
          [&](int r, int k, float v) { dQ[r * N + k] = v; });
    }
    __syncthreads();
  }
  if constexpr (kRowsum) {
    if (const int r = threadIdx.x; r < valid) p.D_out[in.stats + q0 + r] = stats.sum, p.center_out[in.stats + q0 + r] = stats.center;
    return;
  }
  float* dC = p.d_C.data + b * p.d_C.batch + g * N;
  for (int i = threadIdx.x; i < valid * N; i += kAttnThreads) dC[(q0 + i / N) * p.d_C.row + i % N] = dQ[i];
}

// d_B and d_x over key tiles of p.rows keys: for each query tile of kAttnTile from the diagonal on, w and d_w,
// d_x[j] += Σ_i w[i, j]·d_y[i] (chunk by chunk with d_w), then d_B[j] += Σ_i d_score[i, j]·C[i].
template <int N>
__global__ void __launch_bounds__(kAttnThreads) attention_backward_key_kernel(AttnPointers p) {
  const int rows = p.rows, cols = p.cols, b = blockIdx.z, g = blockIdx.y, s0 = blockIdx.x * rows;
  const int valid_k = min(rows, p.P - s0);
  const AttnKeyBackwardLayout L(rows, N, cols);
  float* sh = dynamic_shared<float>();
  float *Ks = sh + L.k, *Qs = sh + L.q, *W = sh + L.w, *dS = sh + L.ds, *dYs = sh + L.dy, *Vs = sh + L.v,
        *dK = sh + L.dk, *dV = sh + L.dv, *lse = sh + L.lse, *D = sh + L.d, *center = sh + L.c;
  const GroupSlices<float> in = group_slices<N>(p, b, g);
  const float *C = in.C, *B = in.B, *X = in.X, *dY = in.dY;

  stage(Ks, N + 1, rows, N, B, p.B.row, s0, valid_k, N);
  for (int i = threadIdx.x; i < rows * N; i += kAttnThreads) dK[i] = 0.0f;
  for (int i = threadIdx.x; i < rows * cols; i += kAttnThreads) dV[i] = 0.0f;
  for (int qt = s0 / kAttnTile; qt * kAttnTile < p.P; ++qt) {  // queries before s0 see none of these keys
    const int q0 = qt * kAttnTile, valid = min(kAttnTile, p.P - q0);
    stage(Qs, N + 1, kAttnTile, N, C, p.C.row, q0, valid, N);
    stage_stats(lse, D, center, p, in.stats, q0, valid);
    __syncthreads();
    tile_weights<N>(W, dS, Qs, Ks, lse, kAttnTile, rows, q0, valid, s0, p.inv_sqrt_n);
    for (int c0 = 0; c0 < cols; c0 += kAttnColumns) {
      const int width = min(kAttnColumns, cols - c0);
      stage(dYs, kAttnColumns + 1, kAttnTile, kAttnColumns, dY + c0, p.d_y.row, q0, valid, width);
      stage(Vs, kAttnColumns + 1, rows, kAttnColumns, X + c0, p.x.row, s0, valid_k, width);
      __syncthreads();  // also orders the weights before the d_x update below
      accumulate_d_w(dS, dYs, Vs, kAttnTile, rows, width);
      // dV[j, c0 + c] += Σ_r W[r, j]·dYs[r, c]
      tile_product<4, 4>(
          rows, width, kAttnTile, W, 1, rows, dYs, kAttnColumns + 1, 1,
          [&](int j, int c) { return dV[j * cols + c0 + c]; },
          [&](int j, int c, float v) { dV[j * cols + c0 + c] = v; });
      __syncthreads();
    }
    for (int i = threadIdx.x; i < kAttnTile * rows; i += kAttnThreads)
      dS[i] = W[i] * ((dS[i] - center[i / rows]) - D[i / rows]) * p.inv_sqrt_n;
    __syncthreads();
    // dK[j, k] += Σ_r dS[r, j]·Qs[r, k]
    tile_product<4, 4>(
        rows, N, kAttnTile, dS, 1, rows, Qs, N + 1, 1, [&](int j, int k) { return dK[j * N + k]; },
        [&](int j, int k, float v) { dK[j * N + k] = v; });
    __syncthreads();
  }
  float* dB = p.d_B.data + b * p.d_B.batch + g * N;
  for (int i = threadIdx.x; i < valid_k * N; i += kAttnThreads) dB[(s0 + i / N) * p.d_B.row + i % N] = dK[i];
  float* dX = p.d_x.data + b * p.d_x.batch + g * cols;
  for (int i = threadIdx.x; i < valid_k * cols; i += kAttnThreads)
    dX[(s0 + i / cols) * p.d_x.row + i % cols] = dV[i];
}

// ---- bf16 backward on tensor cores --------------------------------------------------------------------------
// The backward's formulas (the header's) with every product on mma.sync, in two kernels of kAttnBf16Warps warps.
// Each warp owns 16 rows of its block's kAttnBf16Rows ("own" rows: Q and d_y, or K and x) and walks tiles of
// kAttnBf16Keys rows of the other side ("tile" rows), staged in shared memory (AttnBf16BackwardLayout). Per
// tile a warp computes, in C fragments (a lane: own rows gr, gr + 8; tile rows 8j + 2tq, +1),
//   S = own_qk·tile_qkᵀ / sqrt(N) and d_w = own_v·tile_vᵀ   (query kernel: C·Bᵀ and d_y·xᵀ; key kernel: their
//   transposes B·Cᵀ and x·d_yᵀ), then w = exp(S - lse) where the key is at or before the query, else 0.
// Query kernel (blocks of queries, key tiles up to the diagonal), two passes over the key tiles: (1) the row
// statistics c, D (RowStats), written to the workspace for the key kernel; (2) d_score = w ∘ ((d_w - c) - D)
// / sqrt(N) and d_C += d_score·K.
// Key kernel (blocks of keys and one column block of kAttnBf16Columns value columns; query tiles from the
// diagonal on): d_x[:, block] += wᵀ·d_y[:, block] and, in column block 0 only, d_B += d_scoreᵀ·Q. d_w sums over
// all R·p columns, so every column block computes it (at the paper's 384 columns, 3 times).
// The weights and d_score enter their products in two bf16 parts (warp_product_cb's kSplit: to 2^-16 relative,
// as the fp32 staging of the earlier bf16 backward had them); C, B, x and d_y are bf16 values already. Every
// output is accumulated by one lane in a fixed order: bitwise the same in every thread order.

// A warp's w and d_w against one tile (the comment above): kOwnQueries: the own rows are queries (the query
// kernel) or keys (the key kernel); own0, tile0: the token positions of the warp's first own row and of the
// tile's first row; lse(h, col): the log-sum-exp of the query at own row gr + 8h or tile row col.
template <int N, bool kOwnQueries, class Lse>
__device__ inline void tile_weights_bf16(MmaC (&w)[kAttnBf16Keys / 8], MmaC (&d_w)[kAttnBf16Keys / 8], const bf16* own_qk,
                                         const bf16* own_v, const bf16* tile_qk, const bf16* tile_v, int cols, int own0,
                                         int tile0, int P, float inv_sqrt_n, Lse lse) {
  constexpr int kTiles = kAttnBf16Keys / 8, ldq = N + kAttnBf16Pad;
  const int ldv = cols + kAttnBf16Pad, lane = mma_lane();
  for (int j = 0; j < kTiles; ++j) w[j] = d_w[j] = MmaC{};
  warp_product_abt(w, own_qk, ldq, tile_qk, ldq, N);
  warp_product_abt(d_w, own_v, ldv, tile_v, ldv, cols);
#pragma unroll
  for (int j = 0; j < kTiles; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const MmaAt at = mma_c_at(lane, i);
      const int own = own0 + at.row, other = tile0 + 8 * j + at.col;
      const int query = kOwnQueries ? own : other, key = kOwnQueries ? other : own;
      w[j].v[i] = key <= query && query < P ? expf(w[j].v[i] * inv_sqrt_n - lse(i / 2, 8 * j + at.col)) : 0.0f;
    }
}

template <int N>
__global__ void __launch_bounds__(32 * kAttnBf16Warps) attention_backward_query_bf16_kernel(AttnPointersT<Bf16> p) {
  constexpr int kTiles = kAttnBf16Keys / 8, ldq = N + kAttnBf16Pad;
  const int cols = p.cols, ldv = cols + kAttnBf16Pad, b = blockIdx.z, g = blockIdx.y, q0 = blockIdx.x * kAttnBf16Rows;
  const int valid = min(kAttnBf16Rows, p.P - q0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane / 4, tq = lane % 4;
  const int wq0 = q0 + 16 * warp, w_last = min(wq0 + 15, p.P - 1);  // the warp's queries (none when w_last < wq0)
  const AttnBf16BackwardLayout L(N, cols);
  bf16* sh = dynamic_shared<bf16>();
  bf16 *Qs = sh + L.own_qk, *dYs = sh + L.own_v, *Ks = sh + L.tile_qk, *Vs = sh + L.tile_v;
  const GroupSlices<Bf16> in = group_slices<N>(p, b, g);

  stage_bf16(Qs, ldq, kAttnBf16Rows, N, in.C, p.C.row, q0, valid, N);
  stage_bf16(dYs, ldv, kAttnBf16Rows, cols, in.dY, p.d_y.row, q0, valid, cols);
  float lse[2], D[2] = {}, center[2] = {};  // the lane's rows gr, gr + 8
  for (int h = 0; h < 2; ++h) lse[h] = wq0 + gr + 8 * h < p.P ? p.lse[in.stats + wq0 + gr + 8 * h] : 0.0f;
  MmaC d_q[N / 8] = {};
  const int key_tiles = (q0 + valid - 1) / kAttnBf16Keys + 1;
  for (int pass = 0; pass < 2; ++pass) {  // 0: the row statistics; 1: d_C
    RowStats stats[2];
    for (int kt = 0; kt < key_tiles; ++kt) {
      const int s0 = kt * kAttnBf16Keys, valid_k = min(kAttnBf16Keys, p.P - s0);
      __syncthreads();  // every warp is done with the previous tile
      stage_bf16(Ks, ldq, kAttnBf16Keys, N, in.B, p.B.row, s0, valid_k, N);
      stage_bf16(Vs, ldv, kAttnBf16Keys, cols, in.X, p.x.row, s0, valid_k, cols);
      __syncthreads();
      if (s0 > w_last) continue;  // warp-uniform: none of the warp's queries sees these keys
      MmaC w[kTiles], d_w[kTiles];
      tile_weights_bf16<N, true>(w, d_w, Qs + 16 * warp * ldq, dYs + 16 * warp * ldv, Ks, Vs, cols, wq0, s0, p.P,
                                 p.inv_sqrt_n, [&](int h, int) { return lse[h]; });
#pragma unroll
      for (int j = 0; j < kTiles; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {  // keys s0 + 8j + 2tq + i % 2: in order for each row
          if (pass == 0)
            stats[i / 2].add(w[j].v[i], d_w[j].v[i], s0 + 8 * j + 2 * tq + i % 2);
          else
            d_w[j].v[i] = w[j].v[i] * ((d_w[j].v[i] - center[i / 2]) - D[i / 2]) * p.inv_sqrt_n;  // d_score
        }
      if (pass == 1) warp_product_cb<true>(d_q, d_w, Ks, ldq, N / 8);  // d_C += d_score·K
    }
    if (pass == 0)
      for (int h = 0; h < 2; ++h) {
        const RowStats m = stats[h].merged_over_quad();
        D[h] = m.sum, center[h] = m.center;
        const int t = wq0 + gr + 8 * h;
        if (tq == 0 && t < p.P) p.D_out[in.stats + t] = D[h], p.center_out[in.stats + t] = center[h];
      }
  }
  Bf16* dC = p.d_C.data + b * p.d_C.batch + g * N;
#pragma unroll
  for (int c = 0; c < N / 8; ++c)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const MmaAt at = mma_c_at(lane, i);
      if (wq0 + at.row < p.P) dC[(wq0 + at.row) * p.d_C.row + 8 * c + at.col] = to_bf16(d_q[c].v[i]);
    }
}

template <int N>
__global__ void __launch_bounds__(32 * kAttnBf16Warps) attention_backward_key_bf16_kernel(AttnPointersT<Bf16> p) {
  constexpr int kTiles = kAttnBf16Keys / 8, kColTiles = kAttnBf16Columns / 8, ldq = N + kAttnBf16Pad;
  const int cols = p.cols, ldv = cols + kAttnBf16Pad, b = blockIdx.z, g = blockIdx.y / p.column_blocks;
  const int column_block = blockIdx.y % p.column_blocks, c0 = column_block * kAttnBf16Columns;
  const int col_tiles = min(kAttnBf16Columns, cols - c0) / 8;  // even: R·p is a multiple of 16
  const int s0 = blockIdx.x * kAttnBf16Rows, valid_k = min(kAttnBf16Rows, p.P - s0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, ws0 = s0 + 16 * warp;  // the warp's first key
  const AttnBf16BackwardLayout L(N, cols);
  bf16* sh = dynamic_shared<bf16>();
  bf16 *Ks = sh + L.own_qk, *Vs = sh + L.own_v, *Qs = sh + L.tile_qk, *dYs = sh + L.tile_v;
  float* lse = reinterpret_cast<float*>(sh + L.stats);  // of the query tile; then its D and c
  float *D = lse + kAttnBf16Keys, *center = D + kAttnBf16Keys;
  const GroupSlices<Bf16> in = group_slices<N>(p, b, g);

  stage_bf16(Ks, ldq, kAttnBf16Rows, N, in.B, p.B.row, s0, valid_k, N);
  stage_bf16(Vs, ldv, kAttnBf16Rows, cols, in.X, p.x.row, s0, valid_k, cols);
  MmaC d_v[kColTiles] = {}, d_k[N / 8] = {};
  for (int q0 = s0; q0 < p.P; q0 += kAttnBf16Keys) {  // queries before s0 see none of the block's keys
    const int valid = min(kAttnBf16Keys, p.P - q0);
    __syncthreads();  // every warp is done with the previous tile
    stage_bf16(Qs, ldq, kAttnBf16Keys, N, in.C, p.C.row, q0, valid, N);
    stage_bf16(dYs, ldv, kAttnBf16Keys, cols, in.dY, p.d_y.row, q0, valid, cols);
    for (int r = threadIdx.x; r < kAttnBf16Keys; r += 32 * kAttnBf16Warps) {
      lse[r] = r < valid ? p.lse[in.stats + q0 + r] : 0.0f;
      D[r] = r < valid ? p.D[in.stats + q0 + r] : 0.0f;
      center[r] = r < valid ? p.center[in.stats + q0 + r] : 0.0f;
    }
    __syncthreads();
    if (ws0 >= p.P || q0 + kAttnBf16Keys - 1 < ws0) continue;  // warp-uniform: no query sees the warp's keys
    MmaC w[kTiles], d_w[kTiles];  // transposed: the warp's keys x the tile's queries
    tile_weights_bf16<N, false>(w, d_w, Ks + 16 * warp * ldq, Vs + 16 * warp * ldv, Qs, dYs, cols, ws0, q0, p.P,
                                p.inv_sqrt_n, [&](int, int col) { return lse[col]; });
    warp_product_cb<true>(d_v, w, dYs + c0, ldv, col_tiles);  // d_x[:, block] += wᵀ·d_y[:, block]
    if (column_block != 0) continue;                            // block-uniform
#pragma unroll
    for (int j = 0; j < kTiles; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = 8 * j + mma_c_at(lane, i).col;
        d_w[j].v[i] = w[j].v[i] * ((d_w[j].v[i] - center[col]) - D[col]) * p.inv_sqrt_n;  // d_scoreᵀ
      }
    warp_product_cb<true>(d_k, d_w, Qs, ldq, N / 8);  // d_B += d_scoreᵀ·Q
  }
  Bf16* dX = p.d_x.data + b * p.d_x.batch + g * cols + c0;
  Bf16* dB = p.d_B.data + b * p.d_B.batch + g * N;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const MmaAt at = mma_c_at(lane, i);
    const int s = ws0 + at.row;
    if (s >= p.P) continue;
#pragma unroll
    for (int c = 0; c < kColTiles; ++c)
      if (c < col_tiles) dX[s * p.d_x.row + 8 * c + at.col] = to_bf16(d_v[c].v[i]);
    if (column_block == 0)
#pragma unroll
      for (int c = 0; c < N / 8; ++c) dB[s * p.d_B.row + 8 * c + at.col] = to_bf16(d_k[c].v[i]);
  }
}

template <class T>
Strided<T> strided(const View<T>& v, std::int64_t rows, std::int64_t cols) {
  const Strides s = resolved_strides(v, rows, cols);
  return {v.data, s.batch, s.row};
}

template <class S>
AttnPointersT<S> pointers(const AttentionShape& s, const View<const S>& C, const View<const S>& B, const View<const S>& x) {
  AttnPointersT<S> p{};
  p.P = s.P, p.G = s.G, p.cols = s.group_columns(), p.first_query = s.first_query;
  p.inv_sqrt_n = 1.0f / sqrtf(float(s.N));
  p.C = strided(C, s.queries(), std::int64_t(s.G) * s.N);
  p.B = strided(B, s.P, std::int64_t(s.G) * s.N);
  p.x = strided(x, s.P, std::int64_t(s.H) * s.p);
  return p;
}

// The kernel of a family for the shape's N (attention_plan has rejected every other N): F::get<N>().
template <class F>
auto for_n(int N) {
  switch (N) {
    case 16: return F::template get<16>();
    case 32: return F::template get<32>();
    case 64: return F::template get<64>();
    default: return F::template get<128>();
  }
}
struct ForwardKernel {
  template <int N>
  static auto get() { return &attention_forward_kernel<N>; }
};
struct ForwardBf16Kernel {
  template <int N>
  static auto get() { return &attention_forward_bf16_kernel<N>; }
};
template <bool kRowsum = false>
struct QueryBackwardKernel {
  template <int N>
  static auto get() { return &attention_backward_query_kernel<N, kRowsum>; }
};
struct KeyBackwardKernel {
  template <int N>
  static auto get() { return &attention_backward_key_kernel<N>; }
};
struct QueryBackwardBf16Kernel {
  template <int N>
  static auto get() { return &attention_backward_query_bf16_kernel<N>; }
};
struct KeyBackwardBf16Kernel {
  template <int N>
  static auto get() { return &attention_backward_key_bf16_kernel<N>; }
};

// The forward's pointers and plan (fp32: attention_plan; bf16: attention_plan_bf16).
template <class S>
AttnPointersT<S> forward_pointers(const AttentionForwardT<S>& a, const AttentionPlan& plan) {
  const AttentionShape& s = a.shape;
  AttnPointersT<S> p = pointers(s, a.C, a.B, a.x);
  p.rows = plan.forward_rows;
  p.column_blocks = plan.forward_column_blocks;
  p.y_out = strided(a.y, s.queries(), std::int64_t(s.H) * s.p);
  p.lse_out = a.lse.data;
  return p;
}

// The backward's pointers (the row statistics D, c in the workspace's two halves).
template <class S>
AttnPointersT<S> backward_pointers(const AttentionBackwardT<S>& a, const AttentionPlan& plan) {
  const AttentionShape& s = a.shape;
  AttnPointersT<S> p = pointers(s, a.C, a.B, a.x);
  const std::int64_t E = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  p.d_y = strided(a.d_y, s.P, E);
  p.d_C = strided(a.d_C, s.P, GN);
  p.d_B = strided(a.d_B, s.P, GN);
  p.d_x = strided(a.d_x, s.P, E);
  p.lse = a.lse.data;
  p.D = p.D_out = a.workspace.data;
  p.center = p.center_out = a.workspace.data + plan.workspace / 2;
  p.column_blocks = plan.forward_column_blocks;
  return p;
}

}  // namespace

void attention_forward(const AttentionForward& a, const LaunchContext& ctx) {
  if (a.shape.Bt == 0 || a.shape.P == 0) return;
  const AttentionPlan plan = attention_plan(a.shape);
  launch(TM_SITE("attention_forward"), for_n<ForwardKernel>(a.shape.N), plan.forward, ctx, forward_pointers(a, plan));
}

void attention_forward(const AttentionForwardBf16& a, const LaunchContext& ctx) {
  if (a.shape.Bt == 0 || a.shape.P == 0) return;
  const AttentionPlan plan = attention_plan_bf16(a.shape);
  launch(TM_SITE("attention_forward_bf16"), for_n<ForwardBf16Kernel>(a.shape.N), plan.forward, ctx,
         forward_pointers(a, plan));
}

void attention_backward(const AttentionBackward& a, const LaunchContext& ctx) {
  const AttentionShape& s = a.shape;
  if (s.Bt == 0 || s.P == 0) return;
  const AttentionPlan plan = attention_plan(s);
  AttnPointersT<float> p = backward_pointers(a, plan);
  p.rows = kAttnTile;
  launch(TM_SITE("attention_rowsum"), for_n<QueryBackwardKernel<true>>(s.N), plan.backward_query, ctx, p);
  launch(TM_SITE("attention_backward_query"), for_n<QueryBackwardKernel<>>(s.N), plan.backward_query, ctx, p);
  p.rows = plan.backward_rows;
  launch(TM_SITE("attention_backward_key"), for_n<KeyBackwardKernel>(s.N), plan.backward_key, ctx, p);
}

void attention_backward(const AttentionBackwardBf16& a, const LaunchContext& ctx) {
  const AttentionShape& s = a.shape;
  if (s.Bt == 0 || s.P == 0) return;
  const AttentionPlan plan = attention_plan_bf16(s);
  const AttnPointersT<Bf16> p = backward_pointers(a, plan);
  launch(TM_SITE("attention_backward_query_bf16"), for_n<QueryBackwardBf16Kernel>(s.N), plan.backward_query, ctx, p);
  launch(TM_SITE("attention_backward_key_bf16"), for_n<KeyBackwardBf16Kernel>(s.N), plan.backward_key, ctx, p);
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
