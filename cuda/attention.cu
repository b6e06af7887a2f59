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
//   D[t]        = Σ_{h in g} Σ_i d_y[t, h, i]·y[t, h, i]   (the softmax is shared by the group's heads)
//   d_w[t, s]   = Σ_{h in g} d_y[t, h]·x[s, h]
//   d_score     = w ∘ (d_w - D) / sqrt(N)
//   d_C[t, g]   = Σ_s d_score[t, s]·B[s, g],   d_B[s, g] = Σ_t d_score[t, s]·C[t, g],   d_x[s, h] = Σ_t w[t, s]·d_y[t, h]
// Three kernels: the rowsum D (a warp per query), d_C over query tiles (looping over key tiles), and d_B, d_x
// over key tiles (looping over query tiles from the diagonal down). Every output value is accumulated by one
// thread in a fixed order: no atomics, bitwise the same result in every thread order.
#include "cuda/portable.cuh"

#include "cuda/attention.hpp"
#include "cuda/backends.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {

// A [Bt, rows, cols] tensor's pointer (already at the group's first column) and strides.
template <class T>
struct Strided {
  T* data;
  std::int64_t batch, row;
};

struct AttnPointers {
  int P, G, cols;  // cols = R·p, the value columns of one group
  int first_query; // the forward's queries are tokens first_query .. P-1 (rows 0 .. of C, y, lse)
  int rows;        // the tile with the R·p-wide accumulator: forward query tile, backward key tile
  float inv_sqrt_n;
  Strided<const float> C, B, x, y, d_y;
  Strided<float> y_out, d_C, d_B, d_x;
  const float* lse;  // [Bt, G, P]
  float* lse_out;
  const float* D;    // [Bt, G, P]
  float* D_out;
};

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

// ---- backward -------------------------------------------------------------------------------------------
// D[b, g, t] = Σ_{c < R·p} d_y[t, g·R·p + c]·y[t, g·R·p + c]: warp threadIdx.y takes query t, lanes stride the
// columns, then a butterfly sum.
__global__ void __launch_bounds__(32 * kAttnRowsumWarps) attention_rowsum_kernel(AttnPointers p) {
  const int b = blockIdx.z, g = blockIdx.y, t = blockIdx.x * kAttnRowsumWarps + threadIdx.y;
  float acc = 0.0f;
  if (t < p.P) {
    const float* dy = p.d_y.data + b * p.d_y.batch + t * p.d_y.row + g * p.cols;
    const float* y = p.y.data + b * p.y.batch + t * p.y.row + g * p.cols;
    for (int c = threadIdx.x; c < p.cols; c += 32) acc += dy[c] * y[c];
  }
  acc = warp_sum(acc);
  if (threadIdx.x == 0 && t < p.P) p.D_out[(std::int64_t(b) * p.G + g) * p.P + t] = acc;
}

// d_w[i, j] += Σ_c d_y[i, c]·x[j, c] over one staged chunk of value columns (rows x keys, either layout).
__device__ inline void accumulate_d_w(float* dW, const float* dYs, const float* Vs, int queries, int keys, int width) {
  for (int i = threadIdx.x; i < queries * keys; i += kAttnThreads) {
    const int r = i / keys, j = i % keys;
    float acc = dW[i];
    for (int c = 0; c < width; ++c) acc += dYs[r * (kAttnColumns + 1) + c] * Vs[j * (kAttnColumns + 1) + c];
    dW[i] = acc;
  }
}

// The weights w[i, j] = exp(score - lse[i]) of query q0 + i and key s0 + j (0 where masked), and the d_w
// accumulator zeroed, for a queries x keys tile.
template <int N>
__device__ inline void tile_weights(float* W, float* dW, const float* Qs, const float* Ks, const float* lse,
                                    int queries, int keys, int q0, int valid_q, int s0, float inv_sqrt_n) {
  for (int i = threadIdx.x; i < queries * keys; i += kAttnThreads) {
    const int r = i / keys, j = i % keys;
    W[i] = r < valid_q && s0 + j <= q0 + r ? expf(score<N>(Qs + r * (N + 1), Ks + j * (N + 1), inv_sqrt_n) - lse[r]) : 0.0f;
    dW[i] = 0.0f;
  }
}

// The slices of sequence b, group g that the backward kernels read: C and B at column g·N, x and d_y at the
// group's first value column g·R·p, and the start of the (b, g) row of lse and D.
struct GroupSlices {
  const float *C, *B, *X, *dY;
  std::int64_t stats;
};
template <int N>
__device__ inline GroupSlices group_slices(const AttnPointers& p, int b, int g) {
  return {p.C.data + b * p.C.batch + g * N, p.B.data + b * p.B.batch + g * N, p.x.data + b * p.x.batch + g * p.cols,
          p.d_y.data + b * p.d_y.batch + g * p.cols, (std::int64_t(b) * p.G + g) * p.P};
}

// lse and the rowsum D of queries q0 .. q0 + kAttnTile - 1 into shared memory (0 past the valid ones).
__device__ inline void stage_stats(float* lse, float* D, const AttnPointers& p, std::int64_t stats, int q0, int valid) {
  for (int r = threadIdx.x; r < kAttnTile; r += kAttnThreads) {
    lse[r] = r < valid ? p.lse[stats + q0 + r] : 0.0f;
    D[r] = r < valid ? p.D[stats + q0 + r] : 0.0f;
  }
}

// d_C over query tiles of kAttnTile: for each key tile up to the diagonal, w and d_w of the tile, then
// d_score = w ∘ (d_w - D) / sqrt(N) and d_C[i] += Σ_j d_score[i, j]·B[j].
template <int N>
__global__ void __launch_bounds__(kAttnThreads) attention_backward_query_kernel(AttnPointers p) {
  const int cols = p.cols, b = blockIdx.z, g = blockIdx.y, q0 = blockIdx.x * kAttnTile;
  const int valid = min(kAttnTile, p.P - q0);
  const AttnQueryBackwardLayout L(N);
  float* sh = dynamic_shared<float>();
  float *Qs = sh + L.q, *Ks = sh + L.k, *W = sh + L.w, *dS = sh + L.ds, *dYs = sh + L.dy, *Vs = sh + L.v,
        *dQ = sh + L.dq, *lse = sh + L.lse, *D = sh + L.d;
  const GroupSlices in = group_slices<N>(p, b, g);
  const float *C = in.C, *B = in.B, *X = in.X, *dY = in.dY;

  stage(Qs, N + 1, kAttnTile, N, C, p.C.row, q0, valid, N);
  for (int i = threadIdx.x; i < kAttnTile * N; i += kAttnThreads) dQ[i] = 0.0f;
  stage_stats(lse, D, p, in.stats, q0, valid);
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
    for (int i = threadIdx.x; i < kAttnTile * kAttnKeyTile; i += kAttnThreads)
      dS[i] = W[i] * (dS[i] - D[i / kAttnKeyTile]) * p.inv_sqrt_n;
    __syncthreads();
    for (int i = threadIdx.x; i < kAttnTile * N; i += kAttnThreads) {
      const int r = i / N, k = i % N;
      float acc = dQ[i];
      for (int j = 0; j < kAttnKeyTile; ++j) acc += dS[r * kAttnKeyTile + j] * Ks[j * (N + 1) + k];
      dQ[i] = acc;
    }
    __syncthreads();
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
        *dK = sh + L.dk, *dV = sh + L.dv, *lse = sh + L.lse, *D = sh + L.d;
  const GroupSlices in = group_slices<N>(p, b, g);
  const float *C = in.C, *B = in.B, *X = in.X, *dY = in.dY;

  stage(Ks, N + 1, rows, N, B, p.B.row, s0, valid_k, N);
  for (int i = threadIdx.x; i < rows * N; i += kAttnThreads) dK[i] = 0.0f;
  for (int i = threadIdx.x; i < rows * cols; i += kAttnThreads) dV[i] = 0.0f;
  for (int qt = s0 / kAttnTile; qt * kAttnTile < p.P; ++qt) {  // queries before s0 see none of these keys
    const int q0 = qt * kAttnTile, valid = min(kAttnTile, p.P - q0);
    stage(Qs, N + 1, kAttnTile, N, C, p.C.row, q0, valid, N);
    stage_stats(lse, D, p, in.stats, q0, valid);
    __syncthreads();
    tile_weights<N>(W, dS, Qs, Ks, lse, kAttnTile, rows, q0, valid, s0, p.inv_sqrt_n);
    for (int c0 = 0; c0 < cols; c0 += kAttnColumns) {
      const int width = min(kAttnColumns, cols - c0);
      stage(dYs, kAttnColumns + 1, kAttnTile, kAttnColumns, dY + c0, p.d_y.row, q0, valid, width);
      stage(Vs, kAttnColumns + 1, rows, kAttnColumns, X + c0, p.x.row, s0, valid_k, width);
      __syncthreads();  // also orders the weights before the d_x update below
      accumulate_d_w(dS, dYs, Vs, kAttnTile, rows, width);
      for (int i = threadIdx.x; i < rows * kAttnColumns; i += kAttnThreads) {
        const int j = i / kAttnColumns, c = i % kAttnColumns;
        if (c >= width) continue;
        float acc = dV[j * cols + c0 + c];
        for (int r = 0; r < kAttnTile; ++r) acc += W[r * rows + j] * dYs[r * (kAttnColumns + 1) + c];
        dV[j * cols + c0 + c] = acc;
      }
      __syncthreads();
    }
    for (int i = threadIdx.x; i < kAttnTile * rows; i += kAttnThreads) dS[i] = W[i] * (dS[i] - D[i / rows]) * p.inv_sqrt_n;
    __syncthreads();
    for (int i = threadIdx.x; i < rows * N; i += kAttnThreads) {
      const int j = i / N, k = i % N;
      float acc = dK[i];
      for (int r = 0; r < kAttnTile; ++r) acc += dS[r * rows + j] * Qs[r * (N + 1) + k];
      dK[i] = acc;
    }
    __syncthreads();
  }
  float* dB = p.d_B.data + b * p.d_B.batch + g * N;
  for (int i = threadIdx.x; i < valid_k * N; i += kAttnThreads) dB[(s0 + i / N) * p.d_B.row + i % N] = dK[i];
  float* dX = p.d_x.data + b * p.d_x.batch + g * cols;
  for (int i = threadIdx.x; i < valid_k * cols; i += kAttnThreads) dX[(s0 + i / cols) * p.d_x.row + i % cols] = dV[i];
}

template <class T>
Strided<T> strided(const View<T>& v, std::int64_t rows, std::int64_t cols) {
  const Strides s = resolved_strides(v, rows, cols);
  return {v.data, s.batch, s.row};
}

AttnPointers pointers(const AttentionShape& s, const View<const float>& C, const View<const float>& B,
                      const View<const float>& x) {
  AttnPointers p{};
  p.P = s.P, p.G = s.G, p.cols = s.group_columns(), p.first_query = s.first_query;
  p.inv_sqrt_n = 1.0f / sqrtf(float(s.N));
  p.C = strided(C, s.queries(), std::int64_t(s.G) * s.N);
  p.B = strided(B, s.P, std::int64_t(s.G) * s.N);
  p.x = strided(x, s.P, std::int64_t(s.H) * s.p);
  return p;
}

// The kernel of a family for the shape's N (attention_plan has rejected every other N).
template <template <int> class Kernel>
auto for_n(int N) {
  switch (N) {
    case 16: return Kernel<16>::get();
    case 32: return Kernel<32>::get();
    case 64: return Kernel<64>::get();
    default: return Kernel<128>::get();
  }
}
template <int N>
struct ForwardKernel {
  static auto get() { return &attention_forward_kernel<N>; }
};
template <int N>
struct QueryBackwardKernel {
  static auto get() { return &attention_backward_query_kernel<N>; }
};
template <int N>
struct KeyBackwardKernel {
  static auto get() { return &attention_backward_key_kernel<N>; }
};

}  // namespace

void attention_forward(const AttentionForward& a, const LaunchContext& ctx) {
  const AttentionShape& s = a.shape;
  if (s.Bt == 0 || s.P == 0) return;
  const AttentionPlan plan = attention_plan(s);
  AttnPointers p = pointers(s, a.C, a.B, a.x);
  p.rows = plan.forward_rows;
  p.y_out = strided(a.y, s.queries(), std::int64_t(s.H) * s.p);
  p.lse_out = a.lse.data;
  launch(TM_SITE("attention_forward"), for_n<ForwardKernel>(s.N), plan.forward, ctx, p);
}

void attention_backward(const AttentionBackward& a, const LaunchContext& ctx) {
  const AttentionShape& s = a.shape;
  if (s.Bt == 0 || s.P == 0) return;
  const AttentionPlan plan = attention_plan(s);
  AttnPointers p = pointers(s, a.C, a.B, a.x);
  const std::int64_t E = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  p.y = strided(a.y, s.P, E);
  p.d_y = strided(a.d_y, s.P, E);
  p.d_C = strided(a.d_C, s.P, GN);
  p.d_B = strided(a.d_B, s.P, GN);
  p.d_x = strided(a.d_x, s.P, E);
  p.lse = a.lse.data;
  p.D = p.D_out = a.workspace.data;
  launch(TM_SITE("attention_rowsum"), attention_rowsum_kernel, plan.rowsum, ctx, p);
  p.rows = kAttnTile;
  launch(TM_SITE("attention_backward_query"), for_n<QueryBackwardKernel>(s.N), plan.backward_query, ctx, p);
  p.rows = plan.backward_rows;
  launch(TM_SITE("attention_backward_key"), for_n<KeyBackwardKernel>(s.N), plan.backward_key, ctx, p);
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
