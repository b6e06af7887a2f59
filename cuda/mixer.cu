// The layer's own kernels (cuda/mixer.hpp). Every other stage of the layer is a kernel family of its own
// (mixer.cpp calls them). Compiled for a GPU and for the CPU emulation (portable.cuh).
//   - the backward of E6's D skip (its forward is added by the scan's output kernels: cuda/ssm.hpp),
//     d_x += D_skip[h]·d_y and d_D_skip[h] = Σ_{b, t, i} d_y·x: a block per (tile of kSkipTileRows scan rows,
//     head), threads (32, kSkipRowGroups) along (channels of the head, rows); each thread sums its values in a
//     fixed order, the block its threads (reduce.cuh: block_column_sum over the row groups, then a shuffle tree
//     over the 32 lanes), and sum_partials the tiles in tile order: no atomics.
//   - mixer_add, where two gradients of one tensor meet: dst += src elementwise (or dst = 0), one thread per value.
//   - mixer_to_bf16, the bf16 layer's GEMM copies of W_in and W_out: one thread per value.
// Each kernel is templated on the storage S of the activations (float or Bf16, mixer.hpp): read with to_float,
// the arithmetic in fp32, written once with from_float<S>; D_skip, d_D_skip and the partials fp32.
#include "cuda/portable.cuh"

#include "cuda/backends.hpp"
#include "cuda/launch.cuh"
#include "cuda/reduce.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {
template <class S>
struct SkipGradPointers {
  int L, H, p;
  std::int64_t rows;  // Bt·L
  const S *x, *d_y;
  const float* D_skip;
  std::int64_t x_batch, x_row, d_y_batch, d_y_row;
  S* d_x;
  std::int64_t d_x_batch, d_x_row;
  float* partials;  // [skip_tiles, H]
};

template <class S>
__global__ void __launch_bounds__(32 * kSkipRowGroups) mixer_skip_backward_kernel(SkipGradPointers<S> k) {
  const int h = blockIdx.y;
  const float D = k.D_skip[h];
  float partial = 0.0f;
  for (int r = threadIdx.y; r < kSkipTileRows; r += kSkipRowGroups) {
    const std::int64_t row = std::int64_t(blockIdx.x) * kSkipTileRows + r;
    if (row >= k.rows) break;
    const std::int64_t b = row / k.L, t = row % k.L;
    for (int i = threadIdx.x; i < k.p; i += 32) {
      const int e = h * k.p + i;
      const float dy = to_float(k.d_y[b * k.d_y_batch + t * k.d_y_row + e]);
      partial += dy * to_float(k.x[b * k.x_batch + t * k.x_row + e]);
      S& d_x = k.d_x[b * k.d_x_batch + t * k.d_x_row + e];
      d_x = from_float<S>(to_float(d_x) + D * dy);
    }
  }
  float total = block_column_sum<kSkipRowGroups>(partial);  // every thread reaches its barriers
  if (threadIdx.y == 0) {  // warp 0: the 32 lanes' sums, in a fixed tree
    for (int offset = 16; offset > 0; offset /= 2) total += __shfl_down_sync(0xffffffffu, total, offset);
    if (threadIdx.x == 0) k.partials[std::int64_t(blockIdx.x) * k.H + h] = total;
  }
}

template <class S>
struct AddPointers {
  int T, cols;
  std::int64_t values;  // Bt·T·cols
  const S* src;         // null: dst = 0
  std::int64_t src_batch, src_row;
  S* dst;
  std::int64_t dst_batch, dst_row;
};

template <class S>
__global__ void __launch_bounds__(kAddThreads) mixer_add_kernel(AddPointers<S> k) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= k.values) return;
  const std::int64_t c = i % k.cols, t = i / k.cols % k.T, b = i / k.cols / k.T;
  S& d = k.dst[b * k.dst_batch + t * k.dst_row + c];
  d = from_float<S>(k.src ? to_float(d) + to_float(k.src[b * k.src_batch + t * k.src_row + c]) : 0.0f);
}

struct ToBf16Pointers {
  int cols;
  std::int64_t values;  // rows·cols
  const float* src;
  std::int64_t src_row;
  Bf16* dst;
  std::int64_t dst_row;
};

__global__ void __launch_bounds__(kAddThreads) mixer_to_bf16_kernel(ToBf16Pointers k) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= k.values) return;
  const std::int64_t c = i % k.cols, r = i / k.cols;
  k.dst[r * k.dst_row + c] = from_float<Bf16>(k.src[r * k.src_row + c]);
}

template <class S>
void skip_backward(const SkipBackwardT<S>& a, const LaunchContext& ctx) {
  const std::int64_t E = std::int64_t(a.H) * a.p, rows = std::int64_t(a.Bt) * a.L;
  const Strides xs = resolved_strides(a.x, a.L, E), ds = resolved_strides(a.d_y, a.L, E), gs = resolved_strides(a.d_x, a.L, E);
  const SkipGradPointers<S> k{a.L, a.H, a.p, rows, a.x.data, a.d_y.data, a.D_skip.data, xs.batch, xs.row, ds.batch, ds.row,
                           a.d_x.data, gs.batch, gs.row, a.workspace.data};
  const int tiles = int((rows + kSkipTileRows - 1) / kSkipTileRows);
  if (tiles > 0) launch(TM_SITE("mixer_skip_backward"), mixer_skip_backward_kernel<S>, a.launch, ctx, k);
  // d_D_skip: the tiles' partials in tile order (no scan rows: zeros).
  launch(TM_SITE("mixer_sum_partials(d_D_skip)"), sum_partials<float>, a.reduce, ctx, static_cast<const float*>(a.workspace.data),
         tiles, a.H, std::int64_t(a.H), a.d_D_skip.data, a.H, std::int64_t(a.H));
}

template <class S>
void add(const MixerAddT<S>& a, const LaunchContext& ctx) {
  const std::int64_t values = std::int64_t(a.Bt) * a.T * a.cols;
  if (values == 0) return;
  const Strides ss = resolved_strides(a.src, a.T, a.cols), ds = resolved_strides(a.dst, a.T, a.cols);
  const AddPointers<S> k{a.T, a.cols, values, a.src.data, ss.batch, ss.row, a.dst.data, ds.batch, ds.row};
  const LaunchShape shape{{unsigned((values + kAddThreads - 1) / kAddThreads), 1, 1}, {kAddThreads, 1, 1}, 0};
  launch(TM_SITE("mixer_add"), mixer_add_kernel<S>, shape, ctx, k);
}

}  // namespace

void mixer_skip_backward(const SkipBackward& a, const LaunchContext& ctx) { skip_backward(a, ctx); }
void mixer_skip_backward(const SkipBackwardBf16& a, const LaunchContext& ctx) { skip_backward(a, ctx); }
void mixer_add(const MixerAdd& a, const LaunchContext& ctx) { add(a, ctx); }
void mixer_add(const MixerAddBf16& a, const LaunchContext& ctx) { add(a, ctx); }
void mixer_to_bf16(const MixerToBf16& a, const LaunchContext& ctx) {
  const std::int64_t values = std::int64_t(a.rows) * a.cols;
  if (values == 0) return;
  const Strides ss = resolved_strides(a.src, a.rows, a.cols), ds = resolved_strides(a.dst, a.rows, a.cols);
  const ToBf16Pointers k{a.cols, values, a.src.data, ss.row, a.dst.data, ds.row};
  const LaunchShape shape{{unsigned((values + kAddThreads - 1) / kAddThreads), 1, 1}, {kAddThreads, 1, 1}, 0};
  launch(TM_SITE("mixer_to_bf16"), mixer_to_bf16_kernel, shape, ctx, k);
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
