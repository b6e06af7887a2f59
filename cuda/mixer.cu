// The layer's own kernels (cuda/mixer.hpp). Every other stage of the layer is a kernel family of its own
// (mixer.cpp calls them; E6's D skip, forward and backward, is added by the scan's kernels: cuda/ssm.hpp).
// Compiled for a GPU and for the CPU emulation (portable.cuh).
//   - mixer_add, where two gradients of one tensor meet: dst += src elementwise (or dst = 0), one thread per value.
//   - mixer_to_bf16, the bf16 layer's GEMM copies of W_in and W_out: one thread per value.
// mixer_add is templated on the storage S of the activations (float or Bf16, mixer.hpp): read with to_float,
// the arithmetic in fp32, written once with from_float<S>.
#include "cuda/portable.cuh"

#include "cuda/backends.hpp"
#include "cuda/launch.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {
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
void add(const MixerAddT<S>& a, const LaunchContext& ctx) {
  const std::int64_t values = std::int64_t(a.Bt) * a.T * a.cols;
  if (values == 0) return;
  const Strides ss = resolved_strides(a.src, a.T, a.cols), ds = resolved_strides(a.dst, a.T, a.cols);
  const AddPointers<S> k{a.T, a.cols, values, a.src.data, ss.batch, ss.row, a.dst.data, ds.batch, ds.row};
  const LaunchShape shape{{unsigned((values + kAddThreads - 1) / kAddThreads), 1, 1}, {kAddThreads, 1, 1}, 0};
  launch(TM_SITE("mixer_add"), mixer_add_kernel<S>, shape, ctx, k);
}

}  // namespace

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
