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
// Three kernels: the row statistics c, D (the d_C kernel in its kRowsum mode), d_C over query tiles (looping
// over key tiles), and d_B, d_x over key tiles (looping over query tiles from the diagonal down). Every output
// value is accumulated by one thread in a fixed order: no atomics, bitwise the same result in every thread order.
// y is not read (it was, for D = Σ d_y·y; the API keeps it for its callers).
// Storage: the backward kernels are templated on the storage type S of C, B, x, y, d_y and the gradients (float
// or Bf16: read with to_float, written with from_float<S>; staged as fp32 in shared memory either way, their
// products on tensor cores for Bf16: backward_product), lse and D are fp32. The bf16 forward is its own kernel on
// tensor cores (attention_forward_bf16_kernel below).
#include "cuda/portable.cuh"

#include <type_traits>

#include "cuda/attention.hpp"
#include "cuda/backends.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"
#include "cuda/mma.cuh"

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
template <class S>
__device__ inline void stage(float* tile, int ld, int tile_rows, int tile_cols, const S* src, std::int64_t row,
                             int first, int valid, int width) {
  for (int i = threadIdx.x; i < tile_rows * tile_cols; i += kAttnThreads) {
    const int r = i / tile_cols, c = i % tile_cols;
    tile[r * ld + c] = r < valid && c < width ? to_float(src[(first + r) * row + c]) : 0.0f;
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
// values, staged in shared memory by the whole block. Lane (gr, tq) = (lane / 4, lane % 4) holds rows gr and
// gr + 8 of every C fragment (mma_c_at), so a row's max and sum are reduced over the 4 lanes of a quad.
// Work past a warp's diagonal (16-key tiles after its last query, or past P) is skipped, warp-uniformly. The
// fragments come from shared memory by ldmatrix (mma.cuh; V's by the transposing form). Loops over fragment
// arrays run to their compile-time bounds and skip by condition (col_tiles < kColTiles in a narrow last
// column block), so that the arrays stay in registers. Every value is computed by one lane in a fixed order: bitwise the same in every thread order.

// tile[r·ld + c] = src[(first + r)·row + c] as bf16 bits, 0 where r >= valid or c >= width. Eight values (16
// bytes) per load and store where the source's rows and the tile allow it (every multiple of 8 and 16-byte
// aligned: the layer's C, B and x), else one at a time (e.g. a test's column block of odd row stride).
struct alignas(16) Bf16x8 {
  std::uint32_t words[4];
};
__device__ inline void stage_bf16(bf16* tile, int ld, int tile_rows, int tile_cols, const Bf16* src, std::int64_t row,
                                  int first, int valid, int width) {
  const bool by_8 = tile_cols % 8 == 0 && width % 8 == 0 && ld % 8 == 0 && row % 8 == 0 &&
                    reinterpret_cast<std::uintptr_t>(src) % 16 == 0;
  if (by_8) {
    const int chunks = tile_cols / 8;
    for (int i = threadIdx.x; i < tile_rows * chunks; i += 32 * kAttnBf16Warps) {
      const int r = i / chunks, c = i % chunks * 8;
      Bf16x8 v{};
      if (r < valid && c < width) v = *reinterpret_cast<const Bf16x8*>(src + (first + r) * row + c);
      *reinterpret_cast<Bf16x8*>(tile + r * ld + c) = v;
    }
    return;
  }
  for (int i = threadIdx.x; i < tile_rows * tile_cols; i += 32 * kAttnBf16Warps) {
    const int r = i / tile_cols, c = i % tile_cols;
    tile[r * ld + c] = __ushort_as_bfloat16(r < valid && c < width ? src[(first + r) * row + c].bits : 0);
  }
}

// The A operand (16 rows x 16 keys) of O += P·V from the C fragments of the score tiles of keys 0..7 (lo) and
// 8..15 (hi), rounded to bf16: by mma.cuh's tables a lane's a0,a1 = lo c0,c1; a2,a3 = lo c2,c3; a4,a5 = hi c0,c1;
// a6,a7 = hi c2,c3 (the same rows, columns 2t, 2t+1 and 8 + 2t, 8 + 2t+1).
__device__ inline MmaA mma_a_from_c(const MmaC& lo, const MmaC& hi) {
  auto pack = [](float a, float b) {
    return mma_pack(__ushort_as_bfloat16(to_bf16(a).bits), __ushort_as_bfloat16(to_bf16(b).bits));
  };
  return MmaA{{pack(lo.v[0], lo.v[1]), pack(lo.v[2], lo.v[3]), pack(hi.v[0], hi.v[1]), pack(hi.v[2], hi.v[3])}};
}

__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quad_sum(float v) {  // a butterfly: the 4 lanes get the same sum
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
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
  bf16 *Qs = sh + L.q, *Ks = sh + L.k, *Vs = sh + L.v;
  const Bf16* C = p.C.data + b * p.C.batch + g * N;
  const Bf16* B = p.B.data + b * p.B.batch + g * N;
  const Bf16* X = p.x.data + b * p.x.batch + g * p.cols + c0;

  stage_bf16(Qs, ldk, kAttnBf16Rows, N, C, p.C.row, row0, valid, N);
  __syncthreads();
  MmaA q[N / 16];
  for (int k = 0; k < N / 16; ++k) q[k] = mma_ldmatrix_a(Qs + 16 * warp * ldk + 16 * k, ldk);
  MmaC o[kColTiles] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows gr, gr + 8: running max; this lane's Σ exp

  const int last_key = q0 + valid - 1;
  for (int s0 = 0; s0 <= last_key; s0 += kAttnBf16Keys) {
    const int valid_k = min(kAttnBf16Keys, p.P - s0);
    __syncthreads();  // every warp is done with the previous tile
    stage_bf16(Ks, ldk, kAttnBf16Keys, N, B, p.B.row, s0, valid_k, N);
    stage_bf16(Vs, ldv, kAttnBf16Keys, kAttnBf16Columns, X, p.x.row, s0, valid_k, col_tiles * 8);
    __syncthreads();
    if (s0 > w_last) continue;  // warp-uniform: none of the warp's queries sees these keys
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
#pragma unroll
    for (int kk = 0; kk < kKeyTiles / 2; ++kk) {
      if (s0 + 16 * kk > w_last) continue;
      const MmaA a = mma_a_from_c(s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int c = 0; c < kColTiles; c += 2) {  // B[k][n] = V[16kk + k][8c + n], n < 16 (col_tiles is even)
        if (c >= col_tiles) continue;
        MmaB v[2];
        mma_ldmatrix_b2_trans(v, Vs + 16 * kk * ldv + 8 * c, ldv);
        mma_m16n8k16(o[c], a, v[0], o[c]);
        mma_m16n8k16(o[c + 1], a, v[1], o[c + 1]);
      }
    }
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

// The same product on tensor cores (cuda/mma.cuh) for the bf16 backward, whose tiles hold bf16 values (C, B, x,
// d_y: exact as bf16) or fp32 ones (the weights and d_scores: split into two bf16 parts, a_split / b_split, each
// product then taken once per part). Warp w takes the 16 x 8 output tiles w, w + 8, ...; a lane's four outputs
// are mma_c_at's. M % 16 == 0, Nn % 8 == 0 and K % 16 == 0 (backward_product checks).
template <class Init, class Out>
__device__ inline void tile_product_tc(int M, int Nn, int K, const float* A, int a_row, int a_col, bool a_split,
                                       const float* B, int b_row, int b_col, bool b_split, Init init, Out out) {
  const int lane = mma_lane(), tiles_n = Nn / 8, parts_a = a_split ? 2 : 1, parts_b = b_split ? 2 : 1;
  for (int t = int(threadIdx.x) / 32; t < M / 16 * tiles_n; t += kAttnThreads / 32) {
    const int i0 = t / tiles_n * 16, j0 = t % tiles_n * 8;
    MmaC acc;
    for (int e = 0; e < 4; ++e) acc.v[e] = init(i0 + mma_c_at(lane, e).row, j0 + mma_c_at(lane, e).col);
    for (int k0 = 0; k0 < K; k0 += 16) {
      MmaA a[2];  // a[1], b[1]: the lo parts of a split operand
      MmaB b[2];
      mma_load_fp32(a[0].reg, a_split ? a[1].reg : nullptr, A + i0 * a_row + k0 * a_col, a_row, a_col, mma_a_at);
      mma_load_fp32(b[0].reg, b_split ? b[1].reg : nullptr, B + k0 * b_row + j0 * b_col, b_row, b_col, mma_b_at);
      for (int pa = 0; pa < parts_a; ++pa)
        for (int pb = 0; pb < parts_b; ++pb) mma_m16n8k16(acc, a[pa], b[pb], acc);
    }
    for (int e = 0; e < 4; ++e) out(i0 + mma_c_at(lane, e).row, j0 + mma_c_at(lane, e).col, acc.v[e]);
  }
}

// A product of the backward kernels of storage S: on tensor cores for bf16 where the shapes allow, else
// tile_product (kTm x kTn outputs a thread). a_split, b_split: the operand holds fp32 values (tile_product_tc).
template <class S, int kTm, int kTn, class Init, class Out>
__device__ inline void backward_product(int M, int Nn, int K, const float* A, int a_row, int a_col, bool a_split,
                                        const float* B, int b_row, int b_col, bool b_split, Init init, Out out) {
  if constexpr (std::is_same_v<S, Bf16>)
    if (M % 16 == 0 && Nn % 8 == 0 && K % 16 == 0)
      return tile_product_tc(M, Nn, K, A, a_row, a_col, a_split, B, b_row, b_col, b_split, init, out);
  tile_product<kTm, kTn>(M, Nn, K, A, a_row, a_col, B, b_row, b_col, init, out);
}

// d_w[i, j] += Σ_c d_y[i, c]·x[j, c] over one staged chunk of value columns (dW: queries x keys).
template <class S>
__device__ inline void accumulate_d_w(float* dW, const float* dYs, const float* Vs, int queries, int keys, int width) {
  backward_product<S, 2, 2>(
      queries, keys, width, dYs, kAttnColumns + 1, 1, false, Vs, 1, kAttnColumns + 1, false,
      [&](int i, int j) { return dW[i * keys + j]; }, [&](int i, int j, float v) { dW[i * keys + j] = v; });
}

// The weights w[i, j] = exp(score - lse[i]) of query q0 + i and key s0 + j (0 where masked), and the d_w
// accumulator zeroed, for a queries x keys tile. The score C[t, g]·B[s, g] / sqrt(N) is summed over N in order,
// as in the fp32 forward's score() (for bf16, in the tensor cores' order, as in the bf16 forward).
template <int N, class S>
__device__ inline void tile_weights(float* W, float* dW, const float* Qs, const float* Ks, const float* lse,
                                    int queries, int keys, int q0, int valid_q, int s0, float inv_sqrt_n) {
  const auto weight = [&](int r, int j, float v) {
    W[r * keys + j] = r < valid_q && s0 + j <= q0 + r ? expf(v * inv_sqrt_n - lse[r]) : 0.0f;
    dW[r * keys + j] = 0.0f;
  };
  backward_product<S, 2, 2>(queries, keys, N, Qs, N + 1, 1, false, Ks, 1, N + 1, false, [](int, int) { return 0.0f; },
                            weight);
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
template <class S>
__device__ inline void stage_stats(float* lse, float* D, float* center, const AttnPointersT<S>& p, std::int64_t stats,
                                   int q0, int valid, bool read_d = true) {
  for (int r = threadIdx.x; r < kAttnTile; r += kAttnThreads) {
    lse[r] = r < valid ? p.lse[stats + q0 + r] : 0.0f;
    D[r] = r < valid && read_d ? p.D[stats + q0 + r] : 0.0f;
    center[r] = r < valid && read_d ? p.center[stats + q0 + r] : 0.0f;
  }
}

// d_C over query tiles of kAttnTile: for each key tile up to the diagonal, w and d_w of the tile, then
// d_score = w ∘ ((d_w - c) - D) / sqrt(N) and d_C[i] += Σ_j d_score[i, j]·B[j].
// kRowsum: instead, the row statistics from the same tiles, written to the workspace: thread i walks row i's
// keys in order, keeps c = d_w of the heaviest key so far (the first of equal weights) and D = Σ w·(d_w - c)
// over the keys so far; when a heavier key m' comes, D += (c - d_w[m'])·Σ w so far (the earlier keys' weights,
// small at the rows where D is small), c = d_w[m'].
template <int N, class S, bool kRowsum = false>
__global__ void __launch_bounds__(kAttnThreads) attention_backward_query_kernel(AttnPointersT<S> p) {
  const int cols = p.cols, b = blockIdx.z, g = blockIdx.y, q0 = blockIdx.x * kAttnTile;
  const int valid = min(kAttnTile, p.P - q0);
  const AttnQueryBackwardLayout L(N);
  float* sh = dynamic_shared<float>();
  float *Qs = sh + L.q, *Ks = sh + L.k, *W = sh + L.w, *dS = sh + L.ds, *dYs = sh + L.dy, *Vs = sh + L.v,
        *dQ = sh + L.dq, *lse = sh + L.lse, *D = sh + L.d, *center = sh + L.c;
  const GroupSlices<S> in = group_slices<N>(p, b, g);
  const S *C = in.C, *B = in.B, *X = in.X, *dY = in.dY;

  stage(Qs, N + 1, kAttnTile, N, C, p.C.row, q0, valid, N);
  for (int i = threadIdx.x; i < kAttnTile * N; i += kAttnThreads) dQ[i] = 0.0f;
  stage_stats(lse, D, center, p, in.stats, q0, valid, !kRowsum);
  float heaviest = 0.0f, weight_sum = 0.0f;  // kRowsum: row threadIdx.x's heaviest weight so far, Σ w so far
  const int key_tiles = (q0 + valid - 1) / kAttnKeyTile + 1;
  for (int kt = 0; kt < key_tiles; ++kt) {
    const int s0 = kt * kAttnKeyTile, valid_k = min(kAttnKeyTile, p.P - s0);
    stage(Ks, N + 1, kAttnKeyTile, N, B, p.B.row, s0, valid_k, N);
    __syncthreads();
    tile_weights<N, S>(W, dS, Qs, Ks, lse, kAttnTile, kAttnKeyTile, q0, valid, s0, p.inv_sqrt_n);
    for (int c0 = 0; c0 < cols; c0 += kAttnColumns) {
      const int width = min(kAttnColumns, cols - c0);
      stage(dYs, kAttnColumns + 1, kAttnTile, kAttnColumns, dY + c0, p.d_y.row, q0, valid, width);
      stage(Vs, kAttnColumns + 1, kAttnKeyTile, kAttnColumns, X + c0, p.x.row, s0, valid_k, width);
      __syncthreads();
      accumulate_d_w<S>(dS, dYs, Vs, kAttnTile, kAttnKeyTile, width);
      __syncthreads();
    }
    if constexpr (kRowsum) {
      static_assert(kAttnTile <= kAttnThreads, "a thread per row");
      if (const int r = threadIdx.x; r < kAttnTile) {
        float acc = D[r], c = center[r];
        for (int j = 0; j < kAttnKeyTile; ++j) {
          const float w = W[r * kAttnKeyTile + j], d_w = dS[r * kAttnKeyTile + j];
          if (w > heaviest) acc += (c - d_w) * weight_sum, c = d_w, heaviest = w;
          acc += w * (d_w - c);
          weight_sum += w;
        }
        D[r] = acc, center[r] = c;
      }
    } else {
      for (int i = threadIdx.x; i < kAttnTile * kAttnKeyTile; i += kAttnThreads)
        dS[i] = W[i] * ((dS[i] - center[i / kAttnKeyTile]) - D[i / kAttnKeyTile]) * p.inv_sqrt_n;
      __syncthreads();
      // dQ[r, k] += Σ_j dS[r, j]·Ks[j, k]
      backward_product<S, 4, 4>(
          kAttnTile, N, kAttnKeyTile, dS, kAttnKeyTile, 1, true, Ks, N + 1, 1, false, [&](int r, int k) { return dQ[r * N + k]; },
          [&](int r, int k, float v) { dQ[r * N + k] = v; });
    }
    __syncthreads();
  }
  if constexpr (kRowsum) {
    for (int r = threadIdx.x; r < valid; r += kAttnThreads)
      p.D_out[in.stats + q0 + r] = D[r], p.center_out[in.stats + q0 + r] = center[r];
    return;
  }
  S* dC = p.d_C.data + b * p.d_C.batch + g * N;
  for (int i = threadIdx.x; i < valid * N; i += kAttnThreads) dC[(q0 + i / N) * p.d_C.row + i % N] = from_float<S>(dQ[i]);
}

// d_B and d_x over key tiles of p.rows keys: for each query tile of kAttnTile from the diagonal on, w and d_w,
// d_x[j] += Σ_i w[i, j]·d_y[i] (chunk by chunk with d_w), then d_B[j] += Σ_i d_score[i, j]·C[i].
template <int N, class S>
__global__ void __launch_bounds__(kAttnThreads) attention_backward_key_kernel(AttnPointersT<S> p) {
  const int rows = p.rows, cols = p.cols, b = blockIdx.z, g = blockIdx.y, s0 = blockIdx.x * rows;
  const int valid_k = min(rows, p.P - s0);
  const AttnKeyBackwardLayout L(rows, N, cols);
  float* sh = dynamic_shared<float>();
  float *Ks = sh + L.k, *Qs = sh + L.q, *W = sh + L.w, *dS = sh + L.ds, *dYs = sh + L.dy, *Vs = sh + L.v,
        *dK = sh + L.dk, *dV = sh + L.dv, *lse = sh + L.lse, *D = sh + L.d, *center = sh + L.c;
  const GroupSlices<S> in = group_slices<N>(p, b, g);
  const S *C = in.C, *B = in.B, *X = in.X, *dY = in.dY;

  stage(Ks, N + 1, rows, N, B, p.B.row, s0, valid_k, N);
  for (int i = threadIdx.x; i < rows * N; i += kAttnThreads) dK[i] = 0.0f;
  for (int i = threadIdx.x; i < rows * cols; i += kAttnThreads) dV[i] = 0.0f;
  for (int qt = s0 / kAttnTile; qt * kAttnTile < p.P; ++qt) {  // queries before s0 see none of these keys
    const int q0 = qt * kAttnTile, valid = min(kAttnTile, p.P - q0);
    stage(Qs, N + 1, kAttnTile, N, C, p.C.row, q0, valid, N);
    stage_stats(lse, D, center, p, in.stats, q0, valid);
    __syncthreads();
    tile_weights<N, S>(W, dS, Qs, Ks, lse, kAttnTile, rows, q0, valid, s0, p.inv_sqrt_n);
    for (int c0 = 0; c0 < cols; c0 += kAttnColumns) {
      const int width = min(kAttnColumns, cols - c0);
      stage(dYs, kAttnColumns + 1, kAttnTile, kAttnColumns, dY + c0, p.d_y.row, q0, valid, width);
      stage(Vs, kAttnColumns + 1, rows, kAttnColumns, X + c0, p.x.row, s0, valid_k, width);
      __syncthreads();  // also orders the weights before the d_x update below
      accumulate_d_w<S>(dS, dYs, Vs, kAttnTile, rows, width);
      // dV[j, c0 + c] += Σ_r W[r, j]·dYs[r, c]
      backward_product<S, 4, 4>(
          rows, width, kAttnTile, W, 1, rows, true, dYs, kAttnColumns + 1, 1, false,
          [&](int j, int c) { return dV[j * cols + c0 + c]; },
          [&](int j, int c, float v) { dV[j * cols + c0 + c] = v; });
      __syncthreads();
    }
    for (int i = threadIdx.x; i < kAttnTile * rows; i += kAttnThreads)
      dS[i] = W[i] * ((dS[i] - center[i / rows]) - D[i / rows]) * p.inv_sqrt_n;
    __syncthreads();
    // dK[j, k] += Σ_r dS[r, j]·Qs[r, k]
    backward_product<S, 4, 4>(
        rows, N, kAttnTile, dS, 1, rows, true, Qs, N + 1, 1, false, [&](int j, int k) { return dK[j * N + k]; },
        [&](int j, int k, float v) { dK[j * N + k] = v; });
    __syncthreads();
  }
  S* dB = p.d_B.data + b * p.d_B.batch + g * N;
  for (int i = threadIdx.x; i < valid_k * N; i += kAttnThreads) dB[(s0 + i / N) * p.d_B.row + i % N] = from_float<S>(dK[i]);
  S* dX = p.d_x.data + b * p.d_x.batch + g * cols;
  for (int i = threadIdx.x; i < valid_k * cols; i += kAttnThreads)
    dX[(s0 + i / cols) * p.d_x.row + i % cols] = from_float<S>(dV[i]);
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
template <class S, bool kRowsum = false>
struct QueryBackwardKernel {
  template <int N>
  static auto get() { return &attention_backward_query_kernel<N, S, kRowsum>; }
};
template <class S>
struct KeyBackwardKernel {
  template <int N>
  static auto get() { return &attention_backward_key_kernel<N, S>; }
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

template <class S>
void backward(const AttentionBackwardT<S>& a, const LaunchContext& ctx) {
  const AttentionShape& s = a.shape;
  if (s.Bt == 0 || s.P == 0) return;
  const AttentionPlan plan = attention_plan(s);
  AttnPointersT<S> p = pointers(s, a.C, a.B, a.x);
  const std::int64_t E = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  p.d_y = strided(a.d_y, s.P, E);
  p.d_C = strided(a.d_C, s.P, GN);
  p.d_B = strided(a.d_B, s.P, GN);
  p.d_x = strided(a.d_x, s.P, E);
  p.lse = a.lse.data;
  p.D = p.D_out = a.workspace.data;
  p.center = p.center_out = a.workspace.data + plan.workspace / 2;
  p.rows = kAttnTile;
  launch(TM_SITE("attention_rowsum"), for_n<QueryBackwardKernel<S, true>>(s.N), plan.backward_query, ctx, p);
  launch(TM_SITE("attention_backward_query"), for_n<QueryBackwardKernel<S>>(s.N), plan.backward_query, ctx, p);
  p.rows = plan.backward_rows;
  launch(TM_SITE("attention_backward_key"), for_n<KeyBackwardKernel<S>>(s.N), plan.backward_key, ctx, p);
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

void attention_backward(const AttentionBackward& a, const LaunchContext& ctx) { backward(a, ctx); }
void attention_backward(const AttentionBackwardBf16& a, const LaunchContext& ctx) { backward(a, ctx); }

}  // namespace transmamba::gpu::TM_BACKEND_NS
