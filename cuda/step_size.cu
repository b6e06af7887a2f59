// Step sizes and decay rates (E3), forward and backward: the kernels of cuda/step_size.hpp. Compiled for a GPU
// and for the CPU emulation (portable.cuh).
#include "cuda/portable.cuh"

#include "cuda/backends.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"
#include "cuda/reduce.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {
// Storage S (step_size.hpp): dt_raw and d_dt_raw are read with to_float and written with from_float<S>; the sums
// and every other tensor are fp32.
template <class S>
struct StepPointers {
  int Bt, T, H;
  const S* dt_raw;
  std::int64_t raw_batch, raw_row;
  const float* dt_bias;
  const float* A_log;
  const float* d_dt;  // backward
  std::int64_t d_dt_batch, d_dt_row;
  const float* d_A;   // backward
  float* dt;          // forward
  S* d_dt_raw;        // backward
  std::int64_t out_batch, out_row;  // of dt (forward) or d_dt_raw (backward)
  float* A;           // forward: A; backward: d_A_log
  float* partials;    // backward: [Bt · time_tiles, H]
};

// One thread per (b, t, h); the first H threads also write A[h] = -exp(A_log[h]).
template <class S>
__global__ void step_size_forward_kernel(StepPointers<S> p) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < p.H) p.A[i] = decay_rate(p.A_log[i]);
  if (i >= std::int64_t(p.Bt) * p.T * p.H) return;
  const int h = int(i % p.H), t = int(i / p.H % p.T), b = int(i / p.H / p.T);
  p.dt[b * p.out_batch + t * p.out_row + h] = softplus(to_float(p.dt_raw[b * p.raw_batch + t * p.raw_row + h]) + p.dt_bias[h]);
}

// d_dt_raw = d_dt · softplus'(dt_raw + dt_bias) = d_dt · sigmoid(dt_raw + dt_bias); d_dt_bias = Σ_{b,t} d_dt_raw
// (this tile's partial, of the fp32 values); d_A_log = d_A · dA/dA_log = d_A · A.
template <class S>
__global__ void __launch_bounds__(32 * kStepRowGroups) step_size_backward_kernel(StepPointers<S> p) {
  const int h = blockIdx.x * 32 + threadIdx.x, t0 = blockIdx.y * kStepTileRows, b = blockIdx.z;
  const bool live = h < p.H;
  float acc = 0.0f;
  for (int i = threadIdx.y; i < kStepTileRows && t0 + i < p.T && live; i += kStepRowGroups) {
    const int t = t0 + i;
    const float d = p.d_dt[b * p.d_dt_batch + t * p.d_dt_row + h] *
                    sigmoid(to_float(p.dt_raw[b * p.raw_batch + t * p.raw_row + h]) + p.dt_bias[h]);
    p.d_dt_raw[b * p.out_batch + t * p.out_row + h] = from_float<S>(d);
    acc += d;
  }
  const float total = block_column_sum<kStepRowGroups>(acc);
  if (threadIdx.y == 0 && live) {
    p.partials[(std::int64_t(b) * gridDim.y + blockIdx.y) * p.H + h] = total;
    if (blockIdx.y == 0 && b == 0) p.A[h] = p.d_A[h] * decay_rate(p.A_log[h]);
  }
}

// The inputs both directions read, and where the [Bt, T, H] output goes.
template <class S, class O>
StepPointers<S> pointers(const StepSizeShape& s, const View<const S>& dt_raw, const View<const float>& dt_bias,
                         const View<const float>& A_log, const View<O>& out) {
  StepPointers<S> p{};
  p.Bt = s.Bt, p.T = s.T, p.H = s.H;
  const Strides rs = resolved_strides(dt_raw, s.T, s.H), os = resolved_strides(out, s.T, s.H);
  p.dt_raw = dt_raw.data, p.raw_batch = rs.batch, p.raw_row = rs.row;
  p.dt_bias = dt_bias.data, p.A_log = A_log.data;
  p.out_batch = os.batch, p.out_row = os.row;
  return p;
}

template <class S>
void forward(const StepSizeForwardT<S>& a, const LaunchContext& ctx) {
  if (a.shape.H == 0) return;
  StepPointers<S> p = pointers(a.shape, a.dt_raw, a.dt_bias, a.A_log, a.dt);
  p.dt = a.dt.data;
  p.A = a.A.data;
  launch(TM_SITE("step_size_forward"), step_size_forward_kernel<S>, step_size_plan(a.shape).forward, ctx, p);
}

template <class S>
void backward(const StepSizeBackwardT<S>& a, const LaunchContext& ctx) {
  const StepSizeShape& s = a.shape;
  if (s.H == 0) return;
  const StepSizePlan plan = step_size_plan(s);
  StepPointers<S> p = pointers(s, a.dt_raw, a.dt_bias, a.A_log, a.d_dt_raw);
  p.d_dt_raw = a.d_dt_raw.data;
  const Strides ds = resolved_strides(a.d_dt, s.T, s.H);
  p.d_dt = a.d_dt.data, p.d_dt_batch = ds.batch, p.d_dt_row = ds.row;
  p.d_A = a.d_A.data;
  p.A = a.d_A_log.data;
  p.partials = a.workspace.data;
  const int tiles = s.Bt * plan.time_tiles;
  if (tiles > 0) {
    launch(TM_SITE("step_size_backward"), step_size_backward_kernel<S>, plan.backward, ctx, p);
  } else {  // no tokens: the kernel that writes d_A_log runs over one empty tile
    LaunchShape one_tile = plan.backward;
    one_tile.grid.y = one_tile.grid.z = 1;
    launch(TM_SITE("step_size_backward"), step_size_backward_kernel<S>, one_tile, ctx, p);
  }
  launch(TM_SITE("step_size_sum_partials(d_dt_bias)"), sum_partials<float>, plan.reduce, ctx,
         static_cast<const float*>(a.workspace.data), tiles, s.H, std::int64_t(s.H), a.d_dt_bias.data, s.H, std::int64_t(s.H));
}
}  // namespace

void step_size_forward(const StepSizeForward& a, const LaunchContext& ctx) { forward(a, ctx); }
void step_size_forward(const StepSizeForwardBf16& a, const LaunchContext& ctx) { forward(a, ctx); }
void step_size_backward(const StepSizeBackward& a, const LaunchContext& ctx) { backward(a, ctx); }
void step_size_backward(const StepSizeBackwardBf16& a, const LaunchContext& ctx) { backward(a, ctx); }

}  // namespace transmamba::gpu::TM_BACKEND_NS
