// The chunked SSD scan (E6), forward, in the stages of reference/ssm.hpp's ssm_chunked: the kernels of
// cuda/ssm.hpp. Compiled for a GPU and for the CPU emulation (portable.cuh).
//
// One block per (chunk, head, sequence) for stages 1 and 3+4; stage 2 walks the chunks (not the tokens) of one
// state entry per thread. Every decay is the exp of a segment sum accumulated term by term (DESIGN.md
// section 3): the terms dt·A all have one sign, so each sum is accurate relative to itself; a difference of
// cumulative sums would carry fp32's eps times the whole prefix's sum instead.
#include "cuda/portable.cuh"

#include "cuda/backends.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

namespace {
struct ScanPointers {
  int L, H, p, G, N, Q, chunks;
  const float* x;
  std::int64_t x_batch, x_row;
  const float* dt;
  std::int64_t dt_batch, dt_row;
  const float* A;
  const float* B;
  std::int64_t B_batch, B_row;
  const float* C;
  std::int64_t C_batch, C_row;
  const float* S_init;  // may be null: zero
  std::int64_t init_batch, init_row;
  float* y;             // may be null: final state only
  std::int64_t y_batch, y_row;
  float* final_state;
  std::int64_t final_batch, final_row;
  float* chunk_states;
  std::int64_t chunk_batch, chunk_row;  // batch: one (sequence, chunk) pair
  float* start_states;
  std::int64_t start_batch, start_row;
  float* chunk_decays;  // [Bt·chunks·H]
};

struct ChunkPlace {
  int b, c, h, g, c0, len;
};
__device__ ChunkPlace chunk_place(const ScanPointers& p) {
  ChunkPlace k;
  k.c = blockIdx.x, k.h = blockIdx.y, k.b = blockIdx.z;
  k.g = k.h / (p.H / p.G);
  k.c0 = k.c * p.Q;
  k.len = min(p.Q, p.L - k.c0);
  return k;
}

// Stage 1: chunk_state[c] = Σ_s w[s] · x[s] ⊗ B[s] with w[s] = exp(Σ_{r=s+1..end} dt[r]·A) · dt[s], and the chunk's
// whole log-decay Σ_{r in c} dt[r]·A for stage 2.
__global__ void __launch_bounds__(kScanThreads) ssm_chunk_state_kernel(ScanPointers p) {
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
  const float* x = p.x + k.b * p.x_batch + std::int64_t(k.c0) * p.x_row + k.h * p.p;
  const float* B = p.B + k.b * p.B_batch + std::int64_t(k.c0) * p.B_row + k.g * p.N;
  float* state = p.chunk_states + (std::int64_t(k.b) * p.chunks + k.c) * p.chunk_batch + std::int64_t(k.h) * p.p * p.chunk_row;
  for (int e = threadIdx.x; e < p.p * p.N; e += blockDim.x) {
    const int i = e / p.N, n = e % p.N;
    float acc = 0.0f;
    for (int s = 0; s < k.len; ++s) acc += w[s] * x[s * p.x_row + i] * B[s * p.B_row + n];
    state[i * p.chunk_row + n] = acc;
  }
}

// Stage 2: one thread per state entry (row h·p + i, column n) of one sequence, over the chunks in order.
__global__ void __launch_bounds__(kScanThreads) ssm_state_passing_kernel(ScanPointers p) {
  const std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int b = blockIdx.y;
  if (e >= std::int64_t(p.H) * p.p * p.N) return;
  const int row = int(e / p.N), n = int(e % p.N), h = row / p.p;
  float S = p.S_init ? p.S_init[b * p.init_batch + row * p.init_row + n] : 0.0f;
  for (int c = 0; c < p.chunks; ++c) {
    const std::int64_t bc = std::int64_t(b) * p.chunks + c;
    p.start_states[bc * p.start_batch + row * p.start_row + n] = S;
    S = expf(p.chunk_decays[bc * p.H + h]) * S + p.chunk_states[bc * p.chunk_batch + row * p.chunk_row + n];
  }
  p.final_state[b * p.final_batch + row * p.final_row + n] = S;
}

// Stages 3 and 4: y[t] = Σ_{s<=t} M[t,s] · x[s] + exp(Σ_{r=c0..t} dt[r]·A) · start_state · C[t], with
// M[t,s] = exp(Σ_{r=s+1..t} dt[r]·A) · dt[s] · (C[t]·B[s]) staged in shared memory (the chunk's Q x Q matrix).
__global__ void __launch_bounds__(kScanThreads) ssm_output_kernel(ScanPointers p) {
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
  const float* B = p.B + k.b * p.B_batch + std::int64_t(k.c0) * p.B_row + k.g * p.N;
  const float* C = p.C + k.b * p.C_batch + std::int64_t(k.c0) * p.C_row + k.g * p.N;
  for (int e = threadIdx.x; e < k.len * k.len; e += blockDim.x) {
    const int t = e / k.len, s = e % k.len;
    if (s > t) continue;
    float cb = 0.0f;
    for (int n = 0; n < p.N; ++n) cb += C[t * p.C_row + n] * B[s * p.B_row + n];
    M[t * p.Q + s] *= cb;
  }
  __syncthreads();
  const float* x = p.x + k.b * p.x_batch + std::int64_t(k.c0) * p.x_row + k.h * p.p;
  const float* start = p.start_states + (std::int64_t(k.b) * p.chunks + k.c) * p.start_batch + std::int64_t(k.h) * p.p * p.start_row;
  float* y = p.y + k.b * p.y_batch + std::int64_t(k.c0) * p.y_row + k.h * p.p;
  for (int e = threadIdx.x; e < k.len * p.p; e += blockDim.x) {
    const int t = e / p.p, i = e % p.p;
    float intra = 0.0f, inter = 0.0f;
    for (int s = 0; s <= t; ++s) intra += M[t * p.Q + s] * x[s * p.x_row + i];
    for (int n = 0; n < p.N; ++n) inter += start[i * p.start_row + n] * C[t * p.C_row + n];
    y[t * p.y_row + i] = intra + decay_in[t] * inter;
  }
}
}  // namespace

void ssm_chunked_forward(const ScanForward& a, const LaunchContext& ctx) {
  const ScanShape& s = a.shape;
  if (s.Bt == 0) return;
  const ScanPlan plan = scan_plan(s);
  const std::int64_t HP = std::int64_t(s.H) * s.p, GN = std::int64_t(s.G) * s.N;
  ScanPointers p{};
  p.L = s.L, p.H = s.H, p.p = s.p, p.G = s.G, p.N = s.N, p.Q = s.Q, p.chunks = plan.chunks;
  auto set = [](auto& ptr, std::int64_t& batch, std::int64_t& row, const auto& view, std::int64_t rows, std::int64_t cols) {
    const Strides st = resolved_strides(view, rows, cols);
    ptr = view.data, batch = st.batch, row = st.row;
  };
  set(p.x, p.x_batch, p.x_row, a.x, s.L, HP);
  set(p.dt, p.dt_batch, p.dt_row, a.dt, s.L, s.H);
  p.A = a.A.data;
  set(p.B, p.B_batch, p.B_row, a.B, s.L, GN);
  set(p.C, p.C_batch, p.C_row, a.C, s.L, GN);
  set(p.S_init, p.init_batch, p.init_row, a.S_init, HP, s.N);
  set(p.y, p.y_batch, p.y_row, a.y, s.L, HP);
  set(p.final_state, p.final_batch, p.final_row, a.final_state, HP, s.N);
  set(p.chunk_states, p.chunk_batch, p.chunk_row, a.chunk_states, HP, s.N);
  set(p.start_states, p.start_batch, p.start_row, a.start_states, HP, s.N);
  p.chunk_decays = a.chunk_decays.data;
  if (plan.chunks > 0) launch(TM_SITE("ssm_chunk_state"), ssm_chunk_state_kernel, plan.chunk_states, ctx, p);
  launch(TM_SITE("ssm_state_passing"), ssm_state_passing_kernel, plan.state_passing, ctx, p);
  if (plan.chunks > 0 && p.y) launch(TM_SITE("ssm_output"), ssm_output_kernel, plan.output, ctx, p);
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
