// Grouped RMSNorm (E7), with and without the SiLU gate, forward and backward: the kernels of cuda/norm.hpp.
// Compiled for a GPU and for the CPU emulation (portable.cuh).
//
// The `lanes` threads of a group hold its n values in registers (first_channel below; norm.hpp),
// so each value is read from memory once: the sums a group needs are a thread's own values added in order,
// then a butterfly over the group's lanes (warp shuffles; across warps through shared memory when
// lanes > 32), which leaves the same total, bit for bit, in every thread of the group.
//
// Backward without cancellation. With e = d_out ⊙ w, r = 1/sqrt(S/n + eps), S = Σ_k g[k]², the gradient
//   d_g[c] = r·e[c] - g[c]·r³·mean_k(e[k]·g[k])
// is the difference of two nearly equal terms whenever |g| >> sqrt(eps) (RMSNorm is scale invariant): for a
// group of one channel the true value is r³·eps·e, while the two terms are ~r·e each, and fp32 keeps nothing
// of it. reference/norm.hpp writes it as
//   d_g[c] = r³ · ( (1/n)·Σ_k g[k]·(g[k]·e[c] - g[c]·e[k])  +  eps·e[c] ),
// in which the k = c term is exactly 0. Dropping it, the sum is
//   Σ_{k≠c} g[k]·(g[k]·e[c] - g[c]·e[k]) = e[c]·A_c - g[c]·B_c,   A_c = Σ_{k≠c} g[k]²,   B_c = Σ_{k≠c} g[k]·e[k],
// and A_c, B_c are summed over the other channels only (never as a total minus the own term, which would
// bring the cancellation back): a thread adds its other values (K² products, from registers) to the sum
// over the group's other lanes, which the butterfly gives alongside the total. O(n·K) per group, no
// subtraction of large terms but e[c]·A_c - g[c]·B_c itself, whose terms are the true, small components. As
//   d_g[c] = r · ( r² · ( (e[c]·A_c - g[c]·B_c)/n + eps·e[c] ) )      (r³ alone underflows for |g| ~ 1e13).
// Then d_y = d_g ⊙ SiLU(z), d_z = d_g ⊙ y ⊙ SiLU'(z) (gated) or d_y = d_g, and d_w[c] = Σ_rows d_out[c]·g[c]·r,
// one partial per tile of kNormTileRows rows (the block's threads own distinct channels: no block sum), the
// partials added in tile order by sum_partials (reduce.cuh). Deterministic: no atomics.
//
// Storage S (norm.hpp): the same kernels for float and Bf16; y, z, d_out are read with to_float, out, d_y, d_z
// written once with from_float<S>; g, e, r, the group sums and d_w stay fp32 throughout.
#include "cuda/portable.cuh"

#include <type_traits>

#include "cuda/backends.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"
#include "cuda/reduce.cuh"

// Loops over a thread's K values are unrolled, so that its arrays stay in registers (nvcc; the emulation's
// host compiler, which does not know the pragma, decides for itself).
#ifdef __CUDACC__
#define TM_NORM_UNROLL _Pragma("unroll")
#else
#define TM_NORM_UNROLL
#endif

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kNormMaxWarps = kNormMaxLanes / 32;  // warps of one group (the block has at most this many)
static_assert(kNormBlockThreads <= kNormMaxLanes, "a block holds at most kNormMaxLanes threads");

// What the kernels read: pointers, strides resolved (tensor.hpp).
template <class S>
struct NormPointers {
  int Bt, T, E, G, n, lanes, row_tiles;
  float inv_n;
  const S* y;
  std::int64_t y_batch, y_row;
  const S* z;  // nullptr: ungated
  std::int64_t z_batch, z_row;
  const float* w;
  const S* d_out;      // backward
  std::int64_t d_out_batch, d_out_row;
  S* out;              // forward: out; backward: d_y
  std::int64_t out_batch, out_row;
  S* d_z;              // backward, gated
  std::int64_t d_z_batch, d_z_row;
  const float* d_w_in;  // backward, accumulating: the d_w to add to (copied into row 0 of the partials)
  float* partials;      // backward: [1 + Bt·row_tiles, E]
};

// The sums of kQ values over the `lanes` threads of a group (norm.hpp): total[q], the same bits in every
// thread of the group (each butterfly step adds the same two values, a + b = b + a), and others[q], the sum
// over the group's other threads, accumulated from their values rather than as total - own. Every thread of
// the block calls it (barriers when lanes > 32). warp_sums: shared memory for kQ · kNormMaxWarps floats.
template <int kQ>
__device__ void group_sums(const float* own, float* total, float* others, int lanes, float* warp_sums) {
  for (int q = 0; q < kQ; ++q) total[q] = own[q], others[q] = 0.0f;
  const int in_warp = lanes < 32 ? lanes : 32;
  for (int m = 1; m < in_warp; m <<= 1)
    for (int q = 0; q < kQ; ++q) {
      const float partner = __shfl_xor_sync(kFullMask, total[q], m);  // the sum of a disjoint subtree
      others[q] += partner;
      total[q] += partner;
    }
  if (lanes <= 32) return;
  const int warp = threadIdx.x / 32, first = threadIdx.x / lanes * (lanes / 32);
  if (threadIdx.x % 32 == 0)
    for (int q = 0; q < kQ; ++q) warp_sums[q * kNormMaxWarps + warp] = total[q];
  __syncthreads();
  for (int q = 0; q < kQ; ++q) {
    total[q] = 0.0f;
    for (int v = first; v < first + lanes / 32; ++v) {  // the group's warps, in order
      const float s = warp_sums[q * kNormMaxWarps + v];
      total[q] += s;
      if (v != warp) others[q] += s;
    }
  }
  __syncthreads();  // warp_sums is reused by the next call
}

// The channel (in its group) of a thread's value j is first_channel + 32·j: a warp holds 32·K consecutive
// channels, lane l the channels l, l + 32, ... (contiguous loads for every j, and offsets the compiler knows).
// Groups of fewer than 32 lanes have K = 1 (norm.hpp): lane l holds channel l.
template <int K>
__device__ int first_channel(int lane, int lanes) {
  return lanes < 32 ? lane : lane / 32 * (32 * K) + lane % 32;
}

// A thread's K values of one row (channels c0 + i0 + 32·j; 0 where not `in`), every load issued before any is
// used (no arithmetic between them for a load to wait on).
template <int K, class S>
__device__ void load_values(float* out, const S* row, int c0, int i0, bool live, int n) {
  TM_NORM_UNROLL
  for (int j = 0; j < K; ++j) out[j] = live && i0 + 32 * j < n ? to_float(row[c0 + i0 + 32 * j]) : 0.0f;
}

// One (row, group) per segment of `lanes` threads: out = g · r · w.
template <class S, int K>
__global__ void __launch_bounds__(kNormMaxLanes) rmsnorm_forward_kernel(NormPointers<S> p) {
  __shared__ float warp_sums[kNormMaxWarps];
  const int i0 = first_channel<K>(threadIdx.x % p.lanes, p.lanes);
  const std::int64_t pair = std::int64_t(blockIdx.x) * (blockDim.x / p.lanes) + threadIdx.x / p.lanes;
  const bool live = pair < std::int64_t(p.Bt) * p.T * p.G;
  const int k = live ? int(pair % p.G) : 0;
  const std::int64_t row = live ? pair / p.G : 0;
  const int t = int(row % (p.T > 0 ? p.T : 1)), b = int(row / (p.T > 0 ? p.T : 1));
  const int c0 = k * p.n;
  float g[K], z[K], own = 0.0f;  // g: y, then y ⊙ SiLU(z) when gated
  load_values<K>(g, p.y + b * p.y_batch + t * p.y_row, c0, i0, live, p.n);
  if (p.z) load_values<K>(z, p.z + b * p.z_batch + t * p.z_row, c0, i0, live, p.n);
  TM_NORM_UNROLL
  for (int j = 0; j < K; ++j) {
    if (p.z) g[j] *= silu(z[j]);
    own += g[j] * g[j];
  }
  float total, others;
  group_sums<1>(&own, &total, &others, p.lanes, warp_sums);
  const float r = 1.0f / sqrtf(total * p.inv_n + kNormEpsF);
  if (!live) return;
  TM_NORM_UNROLL
  for (int j = 0; j < K; ++j) {
    const int i = i0 + j * 32;
    if (i < p.n) p.out[b * p.out_batch + t * p.out_row + c0 + i] = from_float<S>(r * (g[j] * p.w[c0 + i]));
  }
}

// A tile of kNormTileRows rows of sequence blockIdx.z for the segments' groups; see the top of the file.
template <class S, int K>
__global__ void __launch_bounds__(kNormMaxLanes) rmsnorm_backward_kernel(NormPointers<S> p) {
  __shared__ float warp_sums[2 * kNormMaxWarps];
  const int i0 = first_channel<K>(threadIdx.x % p.lanes, p.lanes);
  const int k = blockIdx.x * (blockDim.x / p.lanes) + threadIdx.x / p.lanes;
  const bool group_live = k < p.G;
  const int b = blockIdx.z, t0 = blockIdx.y * kNormTileRows, c0 = (group_live ? k : 0) * p.n;
  float dw[K];
  TM_NORM_UNROLL
  for (int j = 0; j < K; ++j) dw[j] = 0.0f;
  if (p.d_w_in && blockIdx.y == 0 && blockIdx.z == 0 && group_live)
    TM_NORM_UNROLL
    for (int j = 0; j < K; ++j)
      if (i0 + j * 32 < p.n) p.partials[c0 + i0 + j * 32] = p.d_w_in[c0 + i0 + j * 32];

  const int rows = p.T - t0 < kNormTileRows ? p.T - t0 : kNormTileRows;
  for (int rr = 0; rr < rows; ++rr) {  // the same trip count in every thread of the block (barriers inside)
    const int t = t0 + rr;
    const S* y = p.y + b * p.y_batch + t * p.y_row + c0;
    const S* z = p.z ? p.z + b * p.z_batch + t * p.z_row + c0 : nullptr;
    const S* d_out = p.d_out + b * p.d_out_batch + t * p.d_out_row + c0;
    S* d_y = p.out + b * p.out_batch + t * p.out_row + c0;
    S* d_z = z ? p.d_z + b * p.d_z_batch + t * p.d_z_row + c0 : nullptr;
    // What the second pass needs of each value: g, e, SiLU(z) (d_y = d_g·SiLU(z)), y·SiLU'(z) (d_z = d_g·that)
    // and d_out (d_w). Padding values (past n, or of a group past G) are 0 and add nothing.
    float g[K], e[K], d_y_factor[K], d_z_factor[K], dov[K], own[2] = {0.0f, 0.0f};
    // The row's loads first (load_values): y into g, z into d_y_factor, d_out, w into e.
    load_values<K>(g, y, 0, i0, group_live, p.n);
    if (z) load_values<K>(d_y_factor, z, 0, i0, group_live, p.n);
    load_values<K>(dov, d_out, 0, i0, group_live, p.n);
    load_values<K>(e, p.w, c0, i0, group_live, p.n);
    TM_NORM_UNROLL
    for (int j = 0; j < K; ++j) {
      const float yv = g[j];
      e[j] = dov[j] * e[j];
      if (z) {
        const float zv = d_y_factor[j], s = sigmoid(zv);
        d_y_factor[j] = zv * s;                                    // SiLU(z), as silu() computes it
        d_z_factor[j] = yv * (s * (1.0f + zv * (1.0f - s)));      // y · SiLU'(z), as silu_grad()
        g[j] = yv * d_y_factor[j];
      } else {
        d_y_factor[j] = 1.0f, d_z_factor[j] = 0.0f, g[j] = yv;
      }
      own[0] += g[j] * g[j], own[1] += g[j] * e[j];  // in the forward's order: the same total, the same r
    }
    float total[2], others[2];
    group_sums<2>(own, total, others, p.lanes, warp_sums);
    const float r = 1.0f / sqrtf(total[0] * p.inv_n + kNormEpsF), r2 = r * r;
    TM_NORM_UNROLL
    for (int j = 0; j < K; ++j) {
      // A, B: the sums over the group's other channels: this thread's other values, then the other lanes.
      float A = 0.0f, B = 0.0f;
      TM_NORM_UNROLL
      for (int k2 = 0; k2 < K; ++k2)
        if (k2 != j) A += g[k2] * g[k2], B += g[k2] * e[k2];
      A += others[0], B += others[1];
      const float d_g = r * (r2 * ((e[j] * A - g[j] * B) * p.inv_n + kNormEpsF * e[j]));
      dw[j] += dov[j] * (g[j] * r);
      const int i = i0 + j * 32;
      if (!group_live || i >= p.n) continue;
      d_y[i] = from_float<S>(d_g * d_y_factor[j]);
      if (z) d_z[i] = from_float<S>(d_g * d_z_factor[j]);
    }
  }
  if (!group_live) return;
  float* partial = p.partials + (1 + std::int64_t(b) * p.row_tiles + blockIdx.y) * p.E + c0;
  TM_NORM_UNROLL
  for (int j = 0; j < K; ++j)
    if (i0 + j * 32 < p.n) partial[i0 + j * 32] = dw[j];
}

template <class S>
NormPointers<S> pointers(const NormShape& s, const NormPlan& plan, const View<const S>& y, const View<const S>& z,
                         const View<const float>& w, const View<S>& out) {
  NormPointers<S> p{};
  p.Bt = s.Bt, p.T = s.T, p.E = s.E, p.G = s.G, p.n = plan.group, p.lanes = plan.lanes, p.row_tiles = plan.row_tiles;
  p.inv_n = 1.0f / float(plan.group);
  const Strides ys = resolved_strides(y, s.T, s.E), os = resolved_strides(out, s.T, s.E);
  p.y = y.data, p.y_batch = ys.batch, p.y_row = ys.row;
  if (z.data) {
    const Strides zs = resolved_strides(z, s.T, s.E);
    p.z = z.data, p.z_batch = zs.batch, p.z_row = zs.row;
  }
  p.w = w.data;
  p.out = out.data, p.out_batch = os.batch, p.out_row = os.row;
  return p;
}

// Calls f(std::integral_constant<int, K>) for the plan's values per thread.
template <class F>
void with_per_thread(int per_thread, F&& f) {
  switch (per_thread) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 8: return f(std::integral_constant<int, 8>{});
    case 12: return f(std::integral_constant<int, 12>{});
    case 16: return f(std::integral_constant<int, 16>{});
  }
  throw std::logic_error("rmsnorm: no kernel for " + std::to_string(per_thread) + " values per thread");
}

template <class S>
void forward(const NormForwardT<S>& a, const LaunchContext& ctx) {
  const NormShape& s = a.shape;
  if (s.Bt == 0 || s.T == 0) return;
  const NormPlan plan = norm_plan(s);
  const NormPointers<S> p = pointers(s, plan, a.y, a.z, a.w, a.out);
  with_per_thread(plan.per_thread, [&](auto k) {
    launch(TM_SITE("rmsnorm_forward"), rmsnorm_forward_kernel<S, decltype(k)::value>, plan.forward, ctx, p);
  });
}

template <class S>
void backward(const NormBackwardT<S>& a, const LaunchContext& ctx) {
  const NormShape& s = a.shape;
  const NormPlan plan = norm_plan(s);
  const int tiles = s.Bt * plan.row_tiles;
  if (tiles == 0 && a.accumulate_d_w) return;  // nothing to add
  NormPointers<S> p = pointers(s, plan, a.y, a.z, a.w, a.d_y);
  const Strides ds = resolved_strides(a.d_out, s.T, s.E);
  p.d_out = a.d_out.data, p.d_out_batch = ds.batch, p.d_out_row = ds.row;
  if (a.z.data) {
    const Strides zs = resolved_strides(a.d_z, s.T, s.E);
    p.d_z = a.d_z.data, p.d_z_batch = zs.batch, p.d_z_row = zs.row;
  }
  p.d_w_in = a.accumulate_d_w ? a.d_w.data : nullptr;
  p.partials = a.workspace.data;
  if (tiles > 0)
    with_per_thread(plan.per_thread, [&](auto k) {
      launch(TM_SITE("rmsnorm_backward"), rmsnorm_backward_kernel<S, decltype(k)::value>, plan.backward, ctx, p);
    });
  // d_w: the tiles' partials in tile order, after row 0 (the old d_w) when accumulating; no tiles: zeros.
  const float* partials = a.workspace.data;
  const int first = a.accumulate_d_w ? 0 : 1;
  launch(TM_SITE("rmsnorm_sum_partials(d_w)"), sum_partials<float>, plan.reduce, ctx, partials + std::int64_t(first) * s.E,
         tiles + 1 - first, s.E, std::int64_t(s.E), a.d_w.data, s.E, std::int64_t(s.E));
}
}  // namespace

void rmsnorm_forward(const NormForward& a, const LaunchContext& ctx) { forward(a, ctx); }
void rmsnorm_forward(const NormForwardBf16& a, const LaunchContext& ctx) { forward(a, ctx); }
void rmsnorm_backward(const NormBackward& a, const LaunchContext& ctx) { backward(a, ctx); }
void rmsnorm_backward(const NormBackwardBf16& a, const LaunchContext& ctx) { backward(a, ctx); }

}  // namespace transmamba::gpu::TM_BACKEND_NS
