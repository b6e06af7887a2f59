// The emulation's teeth (cuda/emulation/): what a kernel gets right runs right, and what it gets wrong shows.
// Every kernel here is written as for a GPU and run on the CPU through emu::launch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/portable.cuh"

#include "cuda/bf16.hpp"
#include "cuda/blas.hpp"
#include "cuda/stage.cuh"
#include "reference/tensor.hpp"

using transmamba::emu::GridLaunch;
using transmamba::emu::KernelError;
using transmamba::emu::launch;

namespace {

// Reverses each block's slice of `in` through shared memory; kBarrier = false forgets the barrier between
// writing the tile and reading a neighbour's entry.
template <bool kBarrier>
__global__ void reverse_through_shared(const float* in, float* out) {
  __shared__ float tile[128];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = in[i];
  if (kBarrier) __syncthreads();
  out[i] = tile[blockDim.x - 1 - threadIdx.x];
}

std::vector<float> iota(int n) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), 1.0f);
  return v;
}

int wrong_reversals(const std::vector<float>& in, const std::vector<float>& out, int block) {
  int wrong = 0;
  for (std::size_t i = 0; i < in.size(); ++i) wrong += !(out[i] == in[i / block * block + block - 1 - i % block]);
  return wrong;
}

}  // namespace

TEST_CASE("emulation: a kernel that forgets a barrier gives wrong results; with it, exact", "[emulation]") {
  const std::vector<float> in = iota(3 * 128);
  std::vector<float> out(in.size());
  for (std::uint64_t seed : {0, 1, 2, 3}) {
    launch(reverse_through_shared<true>, GridLaunch{dim3(3), dim3(128), 0, seed, "reverse"}, in.data(), out.data());
    CHECK(wrong_reversals(in, out, 128) == 0);
    launch(reverse_through_shared<false>, GridLaunch{dim3(3), dim3(128), 0, seed, "reverse"}, in.data(), out.data());
    INFO("seed " << seed);
    CHECK(wrong_reversals(in, out, 128) > 0);  // threads read entries nobody wrote yet: NaN
  }
}

namespace {
// Per lane: the xor-butterfly sum, the down-shift sum (lane 0 holds the total), the ballot of v > 0, lane 5's
// value, and the inclusive scan by shuffles up.
__global__ void warp_primitives(const float* in, float* xor_sum, float* down_sum, unsigned* ballot, float* bcast, float* scan) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned full = 0xffffffffu;
  float x = in[i], d = in[i], s = in[i];
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(full, x, o);
  for (int o = 16; o > 0; o /= 2) d += __shfl_down_sync(full, d, o);
  for (int o = 1; o < 32; o *= 2) {
    const float up = __shfl_up_sync(full, s, o);
    if (threadIdx.x % 32 >= unsigned(o)) s += up;
  }
  xor_sum[i] = x, down_sum[i] = d, scan[i] = s;
  ballot[i] = __ballot_sync(full, in[i] > 0);
  bcast[i] = __shfl_sync(full, in[i], 5);
}

// Inclusive block-wide scan of 256 values (Hillis-Steele, double-buffered in shared memory).
__global__ void block_scan(const float* in, float* out) {
  __shared__ float buf[2][256];
  int cur = 0;
  buf[cur][threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  for (unsigned o = 1; o < blockDim.x; o *= 2) {
    const float v = buf[cur][threadIdx.x] + (threadIdx.x >= o ? buf[cur][threadIdx.x - o] : 0.0f);
    buf[1 - cur][threadIdx.x] = v;
    cur = 1 - cur;
    __syncthreads();
  }
  out[threadIdx.x] = buf[cur][threadIdx.x];
}
}  // namespace

TEST_CASE("emulation: warp primitives and a block-wide scan equal plain loops, in any thread order", "[emulation]") {
  std::mt19937 rng(7);
  std::vector<float> in(96);
  for (float& v : in) v = float(int(rng() % 19) - 9);  // small integers: every sum is exact in float
  std::vector<float> xs(96), ds(96), bc(96), sc(96), bs_in(256), bs_out(256);
  std::vector<unsigned> ballot(96);
  for (float& v : bs_in) v = float(int(rng() % 7) - 3);
  for (std::uint64_t seed : {0, 1, 5}) {
    launch(warp_primitives, GridLaunch{dim3(1), dim3(96), 0, seed, "warp_primitives"}, in.data(), xs.data(), ds.data(),
           ballot.data(), bc.data(), sc.data());
    for (int w = 0; w < 3; ++w) {
      float total = 0, running = 0;
      unsigned bits = 0;
      for (int l = 0; l < 32; ++l) total += in[w * 32 + l], bits |= (in[w * 32 + l] > 0) << l;
      CHECK(ds[w * 32] == total);
      for (int l = 0; l < 32; ++l) {
        const int i = w * 32 + l;
        running += in[i];
        CHECK(xs[i] == total);
        CHECK(ballot[i] == bits);
        CHECK(bc[i] == in[w * 32 + 5]);
        CHECK(sc[i] == running);
      }
    }
    launch(block_scan, GridLaunch{dim3(1), dim3(256), 0, seed, "block_scan"}, bs_in.data(), bs_out.data());
    float running = 0;
    for (int i = 0; i < 256; ++i) CHECK(bs_out[i] == (running += bs_in[i]));
  }
}

namespace {
__global__ void barrier_in_divergent_code(float* out) {
  if (threadIdx.x >= 40) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void shuffle_in_divergent_code(float* out) {
  float v = 1;
  if (threadIdx.x < 16) v += __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}
__global__ void mask_names_missing_lanes(float* out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1); }
__global__ void traps(float*) {
  if (threadIdx.x == 3) __trap();
  __syncthreads();
}
}  // namespace

TEST_CASE("emulation: what CUDA leaves undefined is an error naming kernel and block", "[emulation]") {
  std::vector<float> out(64);
  CHECK_THROWS_WITH(launch(barrier_in_divergent_code, GridLaunch{dim3(1), dim3(64), 0, 1, "k1"}, out.data()),
                    Catch::Contains("kernel k1, block (0,0,0): __syncthreads() reached by 40 of 64 threads"));
  CHECK_THROWS_WITH(launch(shuffle_in_divergent_code, GridLaunch{dim3(1), dim3(32), 0, 1, "k2"}, out.data()),
                    Catch::Contains("deadlock") && Catch::Contains("__shfl_xor_sync") && Catch::Contains("0xffff0000"));
  CHECK_THROWS_WITH(launch(mask_names_missing_lanes, GridLaunch{dim3(1), dim3(48), 0, 1, "k3"}, out.data()),
                    Catch::Contains("names lanes that warp 1 does not have"));
  CHECK_THROWS_WITH(launch(traps, GridLaunch{dim3(2), dim3(32), 0, 1, "k4"}, out.data()),
                    Catch::Contains("kernel k4, block (0,0,0), thread (3,0,0): __trap() called"));
  // After an aborted block the emulation runs the next launch normally.
  const std::vector<float> in = iota(128);
  std::vector<float> reversed(128);
  launch(reverse_through_shared<true>, GridLaunch{dim3(1), dim3(128), 0, 1, "reverse"}, in.data(), reversed.data());
  CHECK(wrong_reversals(in, reversed, 128) == 0);
}

namespace {
// Each thread takes a ticket at its first turn and another after the barrier: the order of turns.
__global__ void take_tickets(int* counter, int* first, int* second) {
  first[threadIdx.x] = atomicAdd(counter, 1);
  __syncthreads();
  second[threadIdx.x] = atomicAdd(counter, 1);
}
std::vector<int> turn_order(std::uint64_t seed) {
  int counter = 0;
  std::vector<int> first(64), second(64);
  launch(take_tickets, GridLaunch{dim3(1), dim3(64), 0, seed, "tickets"}, &counter, first.data(), second.data());
  first.insert(first.end(), second.begin(), second.end());
  return first;
}
}  // namespace

TEST_CASE("emulation: the thread order is drawn from the seed and replays", "[emulation]") {
  std::vector<int> in_order(128);
  std::iota(in_order.begin(), in_order.end(), 0);
  CHECK(turn_order(0) == in_order);
  CHECK(turn_order(7) == turn_order(7));
  CHECK(turn_order(7) != turn_order(8));
  CHECK(turn_order(7) != in_order);
}

namespace {
// Warp 1 writes a value after 10 warp-wide steps; warp 0 reads it after 1, with no barrier between (a race).
__global__ void read_after_one_step(float* out) {
  float* value = dynamic_shared<float>();
  if (threadIdx.x < 32) {
    __syncwarp();
    out[threadIdx.x] = *value;
  } else {
    for (int i = 0; i < 10; ++i) __syncwarp();
    if (threadIdx.x == 32) *value = 1.0f;
  }
}
}  // namespace

TEST_CASE("emulation: a warp may fall behind the others by many steps (seeded), as on a GPU", "[emulation]") {
  int ahead = 0, lockstep = 0;  // warp 1's write seen by warp 0, or not yet
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    std::vector<float> out(32);
    launch(read_after_one_step, GridLaunch{dim3(1), dim3(64), sizeof(float), seed, "read_after_one_step"}, out.data());
    for (float v : out) {
      if (seed == 0) CHECK(std::isnan(v));  // seed 0: every warp takes its turn in every round
      ahead += v == 1.0f, lockstep += std::isnan(v);
    }
  }
  CHECK(ahead > 0);  // warp 0 sat out 10 rounds while warp 1 ran on
  CHECK(lockstep > 0);
}

namespace {
__global__ void read_unwritten(float* out) {
  __shared__ float tile[32];
  float* dyn = dynamic_shared<float>();
  out[threadIdx.x] = tile[threadIdx.x];
  out[32 + threadIdx.x] = dyn[threadIdx.x];
  __syncthreads();
  tile[threadIdx.x] = 1, dyn[threadIdx.x] = 1;  // the next block must not see these
}
}  // namespace

TEST_CASE("emulation: shared memory starts every block as NaN", "[emulation]") {
  std::vector<float> out(64, 0.0f);
  launch(read_unwritten, GridLaunch{dim3(2), dim3(32), 32 * sizeof(float), 1, "read_unwritten"}, out.data());
  for (int i = 32; i < 64; ++i) CHECK(std::isnan(out[i]));  // dynamic shared memory, block 1
#ifndef __SANITIZE_ADDRESS__  // under ASan static __shared__ is a plain static, bounds-checked but not filled
  for (int i = 0; i < 32; ++i) CHECK(std::isnan(out[i]));
#endif
}

namespace {
namespace stage = transmamba::gpu::TM_BACKEND_NS;
// Thread t copies in[4t .. 4t+3] and in[128 + 4t ..] into two tiles of dynamic shared memory by cp.async, one
// group each, and records its first value of tile 0 before any wait, after wait_copies<1> (the first group has
// landed) and its first value of tile 1 after wait_copies<0> (both have).
__global__ void copies_in_flight(const float* in, float* seen) {
  float* tile = dynamic_shared<float>();  // [2][128]
  const int t = threadIdx.x;
  stage::copy_16_async(tile + 4 * t, in + 4 * t);
  stage::commit_copies();
  stage::copy_16_async(tile + 128 + 4 * t, in + 128 + 4 * t);
  stage::commit_copies();
  seen[3 * t] = tile[4 * t];
  stage::wait_copies<1>();
  seen[3 * t + 1] = tile[4 * t];
  stage::wait_copies<0>();
  seen[3 * t + 2] = tile[128 + 4 * t];
}
}  // namespace

TEST_CASE("emulation: cp.async's copies land at their commit or their wait, by the seed; never later", "[emulation]") {
  const std::vector<float> in = iota(256);
  int early = 0, late = 0;
  for (std::uint64_t seed : {0, 1, 2, 3, 4, 5}) {
    std::vector<float> seen(3 * 32);
    launch(copies_in_flight, GridLaunch{dim3(1), dim3(32), 256 * sizeof(float), seed, "copies_in_flight"}, in.data(),
           seen.data());
    INFO("seed " << seed);
    for (int t = 0; t < 32; ++t) {
      CHECK(seen[3 * t + 1] == in[4 * t]);
      CHECK(seen[3 * t + 2] == in[128 + 4 * t]);
      if (seed == 0) CHECK(std::isnan(seen[3 * t]));  // seed 0: every group lands at its wait
      early += seen[3 * t] == in[4 * t], late += std::isnan(seen[3 * t]);
    }
  }
  CHECK(early > 0);  // the seeds draw both: a read before the wait may see either
  CHECK(late > 32);
  std::vector<float> seen(3 * 32);
  const std::vector<float> odd = iota(257);
  CHECK_THROWS_WITH(launch(copies_in_flight, GridLaunch{dim3(1), dim3(32), 256 * sizeof(float), 0, "copies_in_flight"},
                           odd.data() + 1, seen.data()),
                    Catch::Contains("cp.async: an address is not 16-byte aligned"));
}

TEST_CASE("gemm wrapper: cuBLAS's column-major semantics; a wrong leading dimension is caught", "[emulation][blas]") {
  using namespace transmamba;
  // Row-major Y[M,N] = X[M,K]·Wt[K,N], as the projections call it (blas.hpp): column-major Yᵀ = Wtᵀ·Xᵀ.
  const int M = 5, K = 3, N = 4;
  std::mt19937 rng(3);
  Mat<float> X(M, K), Wt(K, N);
  for (int i = 0; i < X.size(); ++i) X.data()[i] = float(int(rng() % 9) - 4);
  for (int i = 0; i < Wt.size(); ++i) Wt.data()[i] = float(int(rng() % 9) - 4);
  const Mat<float> expected = X * Wt;  // small integers: exact
  const gpu::Device dev = gpu::Device::emulated(1);
  gpu::Stream stream(dev);
  std::vector<float> w_padded(Wt.data(), Wt.data() + Wt.size());
  w_padded.resize(w_padded.size() + K - 1, 0.5f);  // room for a leading dimension one too large
  gpu::DeviceBuffer<float> x(dev, std::vector<float>(X.data(), X.data() + X.size())), w(dev, w_padded),
      y(dev, std::size_t(M) * N);
  auto call = [&](int lda, float beta) {
    gpu::gemm(stream, {gpu::Transpose::no, gpu::Transpose::no, N, M, K, 1.0f, beta, w.data(), w.size(), lda, x.data(),
                       x.size(), K, y.data(), y.size(), N});
    const std::vector<float> got = y.download();
    return Mat<float>(Eigen::Map<const Mat<float>>(got.data(), M, N));
  };
  CHECK(call(N, 0.0f) == expected);  // beta = 0: y's NaN bytes are not read
  CHECK(call(N, 1.0f) == 2 * expected);
  CHECK(call(N + 1, 0.0f) != expected);  // a wrong (but legal) leading dimension reads the wrong values
  CHECK_THROWS_WITH(call(N + 2, 0.0f), "gemm: A (4 x 3, ld 6): the buffer holds 14 values, the matrix needs 16");
  // A transposed operand: Y = X·Wt with Wt stored as its transpose [N, K].
  const Mat<float> W_nk = Wt.transpose();
  gpu::DeviceBuffer<float> w_t(dev, std::vector<float>(W_nk.data(), W_nk.data() + W_nk.size()));
  gpu::gemm(stream, {gpu::Transpose::yes, gpu::Transpose::no, N, M, K, 1.0f, 0.0f, w_t.data(), w_t.size(), K, x.data(),
                     x.size(), K, y.data(), y.size(), N});
  const std::vector<float> got = y.download();
  CHECK(Mat<float>(Eigen::Map<const Mat<float>>(got.data(), M, N)) == expected);
  // What cuBLAS rejects, and buffers too small, are errors naming the operand.
  CHECK_THROWS_WITH(call(N - 1, 0.0f), Catch::Contains("gemm: A (4 x 3, ld 3): leading dimension < max(1, rows)"));
  CHECK_THROWS_WITH(gpu::gemm(stream, {gpu::Transpose::no, gpu::Transpose::no, N, M, K, 1.0f, 0.0f, w.data(), w.size(), N,
                                       x.data(), x.size() - 1, K, y.data(), y.size(), N}),
                    Catch::Contains("gemm: B (3 x 5, ld 3): the buffer holds 14 values, the matrix needs 15"));
}

// ---- run only by the ASan build, where each must end in an AddressSanitizer report (CMakeLists.txt) ----
namespace {
__global__ void tile_reads_one_past_the_end(const float* in, float* out) {
  __shared__ float tile[32];
  tile[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x + 1];  // the last thread reads tile[32]
}
__global__ void reads_one_past_the_buffer(const float* in, float* out) { out[threadIdx.x] = in[threadIdx.x + 1]; }
}  // namespace

TEST_CASE("asan: a tile read one past the end of shared memory", "[.oob_shared]") {
  std::vector<float> in(32, 1.0f), out(32);
  launch(tile_reads_one_past_the_end, GridLaunch{dim3(1), dim3(32), 0, 1, "oob_shared"}, in.data(), out.data());
}

TEST_CASE("asan: a read one past the end of a device buffer", "[.oob_device]") {
  const transmamba::gpu::Device dev = transmamba::gpu::Device::emulated(1);
  transmamba::gpu::DeviceBuffer<float> in(dev, 32), out(dev, 32);
  launch(reads_one_past_the_buffer, GridLaunch{dim3(1), dim3(32), 0, 1, "oob_device"}, static_cast<const float*>(in.data()), out.data());
}

TEST_CASE("emulation: cuda/bf16.hpp's rounding equals cuda_bf16.h's __float2bfloat16_rn", "[emulation][bf16]") {
  // Every 97th float bit pattern, all exponents and signs (NaNs only as NaN: their payloads may differ).
  std::uint64_t mismatches = 0, tried = 0;
  for (std::uint64_t u = 0; u < (1ull << 32); u += 97, ++tried) {
    const std::uint32_t bits32 = std::uint32_t(u);
    float f;
    std::memcpy(&f, &bits32, sizeof f);
    const std::uint16_t ours = transmamba::gpu::to_bf16(f).bits, theirs = __bfloat16_as_ushort(__float2bfloat16_rn(f));
    if (std::isnan(f) ? !std::isnan(transmamba::gpu::to_float(transmamba::gpu::Bf16{ours})) : ours != theirs) ++mismatches;
  }
  CHECK(tried > 40000000);
  CHECK(mismatches == 0);
}
