// Causal depthwise conv + SiLU (E2), forward and backward: the kernels of cuda/conv.hpp. Compiled twice
// (portable.cuh): by nvcc for a GPU and by the host compiler for the CPU emulation.
//
// A block owns a tile of kConvTileChannels channels x kConvTileRows tokens of one sequence (conv.hpp). Each
// output needs the W tokens ending at it, so the block stages its rows plus the W - 1 rows before them (the
// halo; zeros before token 0) in shared memory, then every thread reads its W taps from there. Thread (x, y)
// stages channel x of the rows y, y + kConvRowGroups, ..., its loads kStageBatch at a time before their stores
// (cuda/stage.cuh: stage_chunks), and computes the outputs of the same rows.
//
// Storage S (conv.hpp): float, or Bf16 for the bf16 kernels. The same kernels for both: activations are read
// with to_float (the staged tile and every sum are fp32) and written once with from_float<S>; d_w and d_b are
// summed from the fp32 d_pre, before anything is rounded.
#include "cuda/portable.cuh"

#include "cuda/backends.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"
#include "cuda/reduce.cuh"
#include "cuda/stage.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {
// What the kernels read: pointers already offset to nothing, strides resolved (tensor.hpp).
template <class S>
struct ConvPointers {
  int T, C, W;
  const S* v;
  std::int64_t v_batch, v_row;
  const float* w;
  std::int64_t w_row;
  const float* b;
  const S* d_out;      // backward only
  std::int64_t d_out_batch, d_out_row;
  S* out;              // forward: SiLU(conv(v)); backward: d_v
  std::int64_t out_batch, out_row;
  float* partials;     // backward: [Bt · time_tiles, C·W + C], this tile's d_w then d_b
  S* window;           // step: [Bt, W-1, C]
  std::int64_t window_batch, window_row;
};

constexpr int kConvThreads = kConvTileChannels * kConvRowGroups;

// For r < rows: tile[r][threadIdx.x] = value(first + r), thread (x, y) taking the rows y, y + kConvRowGroups, ...
// (the flat index r·kConvTileChannels + x is thread y·kConvTileChannels + x's plus a multiple of kConvThreads).
template <class Value>
__device__ void stage_rows(float* tile, int first, int rows, Value value) {
  stage_chunks<kConvThreads>(
      rows * kConvTileChannels, [&](int i) { return value(first + i / kConvTileChannels); },
      [&](int i, float v) { tile[i] = v; }, int(threadIdx.y * kConvTileChannels + threadIdx.x));
}

// Stages v's rows [t0 - halo, t0 - halo + rows) of channel c (0 outside [0, T) or past C) into tile[row][lane].
template <class S>
__device__ void stage_v(float* tile, const ConvPointers<S>& p, const S* v, int t0, int halo, int rows, int c) {
  stage_rows(tile, t0 - halo, rows,
             [&](int t) { return t >= 0 && t < p.T && c < p.C ? to_float(v[t * p.v_row + c]) : 0.0f; });
}

// conv(v) before the activation for the token whose W taps start at staged row r: bias + Σ_k w[c,k]·tile[r+k].
template <class S>
__device__ float conv_at(const float* tile, const ConvPointers<S>& p, int r, int c) {
  float pre = p.b[c];
  for (int k = 0; k < p.W; ++k) pre += p.w[c * p.w_row + k] * tile[(r + k) * kConvTileChannels + threadIdx.x];
  return pre;
}

template <class S>
__global__ void __launch_bounds__(kConvThreads) conv_silu_forward_kernel(ConvPointers<S> p) {
  float* tile = dynamic_shared<float>();  // [kConvTileRows + halo][kConvTileChannels]
  const int c = blockIdx.x * kConvTileChannels + threadIdx.x, t0 = blockIdx.y * kConvTileRows, halo = p.W - 1;
  stage_v(tile, p, p.v + blockIdx.z * p.v_batch, t0, halo, kConvTileRows + halo, c);
  __syncthreads();
  if (c >= p.C) return;
  S* out = p.out + blockIdx.z * p.out_batch;
  for (int i = threadIdx.y; i < kConvTileRows && t0 + i < p.T; i += kConvRowGroups)
    out[(t0 + i) * p.out_row + c] = from_float<S>(silu(conv_at(tile, p, i, c)));  // taps of token t0+i start at row i
}

// One token (conv.hpp: ConvStep): thread (c, b) sums channel c's W taps in conv_at's order, then shifts that
// channel's window (no other thread touches it).
template <class S>
__global__ void __launch_bounds__(kConvStepThreads) conv_silu_step_kernel(ConvPointers<S> p) {
  const int c = blockIdx.x * kConvStepThreads + threadIdx.x, b = blockIdx.y;
  if (c >= p.C) return;
  const std::int64_t at = b * p.window_batch + c;  // window row k of this channel: at + k·window_row (none when W = 1)
  const float* w = p.w + c * p.w_row;
  const S v = p.v[b * p.v_batch + c];
  float pre = p.b[c];
  for (int k = 0; k < p.W - 1; ++k) pre += w[k] * to_float(p.window[at + k * p.window_row]);
  pre += w[p.W - 1] * to_float(v);
  p.out[b * p.out_batch + c] = from_float<S>(silu(pre));
  for (int k = 0; k + 2 < p.W; ++k) p.window[at + k * p.window_row] = p.window[at + (k + 1) * p.window_row];
  if (p.W > 1) p.window[at + (p.W - 2) * p.window_row] = v;
}

// With d_pre[t] = d_out[t] · SiLU'(conv(v)[t]):
//   d_v[s] = Σ_k d_pre[s + W-1-k] · w[k]     (tokens past T contribute nothing)
//   d_w[k] = Σ_t d_pre[t] · v[t - W+1+k],   d_b = Σ_t d_pre[t]   (this tile's tokens; partials summed later)
// d_v of the tile's last rows needs d_pre of the halo rows after the tile, whose taps reach halo rows further:
// the block stages v rows [t0 - halo, t0 + rows + halo) and computes d_pre for rows [t0, t0 + rows + halo).
template <class S>
__global__ void __launch_bounds__(kConvThreads) conv_silu_backward_kernel(ConvPointers<S> p) {
  const int c = blockIdx.x * kConvTileChannels + threadIdx.x, t0 = blockIdx.y * kConvTileRows, halo = p.W - 1;
  const bool live = c < p.C;
  float* v_tile = dynamic_shared<float>();                                   // [rows + 2·halo][lanes]
  float* d_pre = v_tile + (kConvTileRows + 2 * halo) * kConvTileChannels;  // [rows + halo][lanes]
  stage_v(v_tile, p, p.v + blockIdx.z * p.v_batch, t0, halo, kConvTileRows + 2 * halo, c);
  const S* d_out = p.d_out + blockIdx.z * p.d_out_batch;  // d_out of rows [t0, t0 + rows + halo) into d_pre
  stage_rows(d_pre, t0, kConvTileRows + halo,
             [&](int t) { return live && t < p.T ? to_float(d_out[t * p.d_out_row + c]) : 0.0f; });
  __syncthreads();
  for (int j = threadIdx.y; j < kConvTileRows + halo; j += kConvRowGroups) {  // the rows this thread staged
    float& d = d_pre[j * kConvTileChannels + threadIdx.x];
    d = live && t0 + j < p.T ? d * silu_grad(conv_at(v_tile, p, j, c)) : 0.0f;
  }
  __syncthreads();
  if (live) {
    S* d_v = p.out + blockIdx.z * p.out_batch;
    for (int i = threadIdx.y; i < kConvTileRows && t0 + i < p.T; i += kConvRowGroups) {
      float acc = 0.0f;
      for (int k = 0; k < p.W; ++k) acc += d_pre[(i + halo - k) * kConvTileChannels + threadIdx.x] * p.w[c * p.w_row + k];
      d_v[(t0 + i) * p.out_row + c] = from_float<S>(acc);
    }
  }
  float* partial = p.partials + (std::int64_t(blockIdx.z) * gridDim.y + blockIdx.y) * (std::int64_t(p.C) * (p.W + 1));
  for (int k = 0; k <= p.W; ++k) {  // k = W: the bias
    float acc = 0.0f;
    for (int i = threadIdx.y; i < kConvTileRows; i += kConvRowGroups)
      acc += d_pre[i * kConvTileChannels + threadIdx.x] * (k < p.W ? v_tile[(i + k) * kConvTileChannels + threadIdx.x] : 1.0f);
    const float total = block_column_sum<kConvRowGroups>(acc);
    if (threadIdx.y == 0 && live) partial[k < p.W ? c * p.W + k : p.C * p.W + c] = total;
  }
}

template <class S>
ConvPointers<S> pointers(const ConvShape& s, const View<const S>& v, const View<const float>& w, const View<const float>& b) {
  ConvPointers<S> p{};
  p.T = s.T, p.C = s.C, p.W = s.W;
  const Strides vs = resolved_strides(v, s.T, s.C), ws = resolved_strides(w, s.C, s.W);
  p.v = v.data, p.v_batch = vs.batch, p.v_row = vs.row;
  p.w = w.data, p.w_row = ws.row;
  p.b = b.data;
  return p;
}

template <class S>
void forward(const ConvForwardT<S>& a, const LaunchContext& ctx) {
  const ConvShape& s = a.shape;
  if (s.Bt == 0 || s.T == 0 || s.C == 0) return;
  const ConvPlan plan = conv_plan(s);
  ConvPointers<S> p = pointers(s, a.v, a.w, a.b);
  const Strides os = resolved_strides(a.out, s.T, s.C);
  p.out = a.out.data, p.out_batch = os.batch, p.out_row = os.row;
  launch(TM_SITE("conv_silu_forward"), conv_silu_forward_kernel<S>, plan.forward, ctx, p);
}

template <class S>
void step(const ConvStepT<S>& a, const LaunchContext& ctx) {
  const ConvShape& s = a.shape;
  if (s.Bt == 0 || s.C == 0) return;
  const ConvPlan plan = conv_plan(s);
  ConvPointers<S> p = pointers(s, a.v, a.w, a.b);
  const Strides os = resolved_strides(a.out, 1, s.C), ws = resolved_strides(a.window, s.W - 1, s.C);
  p.out = a.out.data, p.out_batch = os.batch;
  p.window = a.window.data, p.window_batch = ws.batch, p.window_row = ws.row;
  launch(TM_SITE("conv_silu_step"), conv_silu_step_kernel<S>, plan.step, ctx, p);
}

template <class S>
void backward(const ConvBackwardT<S>& a, const LaunchContext& ctx) {
  const ConvShape& s = a.shape;
  if (s.C == 0) return;
  const ConvPlan plan = conv_plan(s);
  ConvPointers<S> p = pointers(s, a.v, a.w, a.b);
  const Strides ds = resolved_strides(a.d_out, s.T, s.C), vs = resolved_strides(a.d_v, s.T, s.C);
  p.d_out = a.d_out.data, p.d_out_batch = ds.batch, p.d_out_row = ds.row;
  p.out = a.d_v.data, p.out_batch = vs.batch, p.out_row = vs.row;
  p.partials = a.workspace.data;
  const int tiles = s.Bt * plan.time_tiles;
  if (tiles > 0) launch(TM_SITE("conv_silu_backward"), conv_silu_backward_kernel<S>, plan.backward, ctx, p);
  // d_w and d_b: the tiles' partials summed in tile order (no tiles: zeros).
  const std::int64_t row = std::int64_t(s.C) * (s.W + 1);
  const float* partials = a.workspace.data;
  launch(TM_SITE("conv_sum_partials(d_w)"), sum_partials<float>, plan.reduce_w, ctx, partials, tiles, s.C * s.W, row,
         a.d_w.data, s.W, resolved_strides(a.d_w, s.C, s.W).row);
  launch(TM_SITE("conv_sum_partials(d_b)"), sum_partials<float>, plan.reduce_b, ctx, partials + std::int64_t(s.C) * s.W,
         tiles, s.C, row, a.d_b.data, s.C, std::int64_t(s.C));
}
}  // namespace

void conv_silu_forward(const ConvForward& a, const LaunchContext& ctx) { forward(a, ctx); }
void conv_silu_forward(const ConvForwardBf16& a, const LaunchContext& ctx) { forward(a, ctx); }
void conv_silu_step(const ConvStep& a, const LaunchContext& ctx) { step(a, ctx); }
void conv_silu_step(const ConvStepBf16& a, const LaunchContext& ctx) { step(a, ctx); }
void conv_silu_backward(const ConvBackward& a, const LaunchContext& ctx) { backward(a, ctx); }
void conv_silu_backward(const ConvBackwardBf16& a, const LaunchContext& ctx) { backward(a, ctx); }

}  // namespace transmamba::gpu::TM_BACKEND_NS
