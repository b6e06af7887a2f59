// cuda/mma.cuh, the tensor-core wrapper: its fragment tables against the PTX ISA's, and D = A·B through the test
// kernel tests/mma_product.cu against a double product of the same bf16 values, under the emulation (and on a
// GPU when the build has CUDA and the machine a device).
//
// Bound: the exact product of bf16 values summed in fp32 over K terms is within (K+2)·2^-24·Σ_k |A||B| of the
// exact value, elementwise (K additions; +2 for second-order terms and for the tensor core's unspecified order).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "tests/mma_product.cu"  // the emulated build of the test kernel (EMULATION.md section 7)
#include "tests/mma_product.hpp"

namespace {

using transmamba::gpu::Backend;
using transmamba::gpu::Device;
using transmamba::gpu::DeviceBuffer;
using transmamba::gpu::MmaLoads;
using transmamba::gpu::MmaProduct;
using transmamba::gpu::Stream;
using transmamba::gpu::emulated::mma_a_at;
using transmamba::gpu::emulated::mma_b_at;
using transmamba::gpu::emulated::mma_c_at;
using transmamba::gpu::emulated::MmaAt;

struct Operands {
  int M, N, K;
  std::vector<__nv_bfloat16> a, b_t;  // [M, K], [N, K]
};

// Values drawn as bf16: normal with a per-row scale spread over 2^±4, or integers in [-4, 4] (then every sum
// is exact in fp32).
Operands draw(int M, int N, int K, bool integers, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> small(-4, 4), scale(-4, 4);
  auto fill = [&](std::vector<__nv_bfloat16>& v, int rows) {
    v.resize(std::size_t(rows) * K);
    for (int r = 0; r < rows; ++r) {
      const float s = std::ldexp(1.0f, scale(rng));
      for (int k = 0; k < K; ++k) v[r * K + k] = __float2bfloat16(integers ? float(small(rng)) : s * normal(rng));
    }
  };
  Operands o{M, N, K, {}, {}};
  fill(o.a, M);
  fill(o.b_t, N);
  return o;
}

std::vector<float> run(const Device& device, const Operands& o, MmaLoads loads = MmaLoads::elements) {
  Stream stream(device);
  DeviceBuffer<__nv_bfloat16> a(device, o.a), b_t(device, o.b_t);
  DeviceBuffer<float> d(device, std::size_t(o.M) * o.N);
  const MmaProduct p{o.M, o.N, o.K, a.data(), b_t.data(), d.data(), loads};
  if (device.backend() == Backend::emulated) {
    transmamba::gpu::emulated::mma_product(p, stream.context());
  } else {
#ifdef TM_HAVE_CUDA
    transmamba::gpu::on_device::mma_product(p, stream.context());
#endif
  }
  stream.synchronize();
  return d.download();
}

// The double product of the same bf16 values and each element's bound, row-major [M, N].
struct Exact {
  std::vector<double> d, bound;
};
Exact exact_product(const Operands& o) {
  Exact e{std::vector<double>(std::size_t(o.M) * o.N), std::vector<double>(std::size_t(o.M) * o.N)};
  for (int r = 0; r < o.M; ++r)
    for (int n = 0; n < o.N; ++n) {
      double sum = 0, magnitude = 0;
      for (int k = 0; k < o.K; ++k) {
        const double ab = double(__bfloat162float(o.a[r * o.K + k])) * __bfloat162float(o.b_t[n * o.K + k]);
        sum += ab, magnitude += std::abs(ab);
      }
      e.d[r * o.N + n] = sum, e.bound[r * o.N + n] = (o.K + 2) * std::ldexp(1.0, -24) * magnitude;
    }
  return e;
}

// Every element of d within its bound (exact: equal to the double product, which is then exact in fp32);
// returns the worst error / bound.
double check_product(const Operands& o, const std::vector<float>& d, bool exact) {
  const Exact e = exact_product(o);
  double worst = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    INFO("D[" << i / o.N << "][" << i % o.N << "] = " << d[i] << ", exact " << e.d[i] << ", bound " << e.bound[i]);
    if (exact) REQUIRE(d[i] == e.d[i]);
    REQUIRE(std::abs(d[i] - e.d[i]) <= e.bound[i]);
    if (e.bound[i] > 0) worst = std::max(worst, std::abs(d[i] - e.d[i]) / e.bound[i]);
  }
  return worst;
}

struct Shape {
  int M, N, K;
};
const Shape kShapes[] = {{16, 8, 16}, {16, 8, 64}, {32, 24, 48}, {48, 64, 256}, {16, 256, 32}};

}  // namespace

TEST_CASE("mma fragments: the PTX ISA's tables for m16n8k16 bf16, and each element held by one lane", "[mma]") {
  auto same = [](MmaAt x, int row, int col) { return x.row == row && x.col == col; };
  // Lane 0 (groupID 0, threadID_in_group 0) and lane 29 (7, 1), as in Figures 79, 81 and 83 of section 9.7.14.5.8.
  CHECK(same(mma_a_at(0, 0), 0, 0));
  CHECK(same(mma_a_at(0, 1), 0, 1));
  CHECK(same(mma_a_at(0, 2), 8, 0));
  CHECK(same(mma_a_at(0, 3), 8, 1));
  CHECK(same(mma_a_at(0, 4), 0, 8));
  CHECK(same(mma_a_at(0, 5), 0, 9));
  CHECK(same(mma_a_at(0, 6), 8, 8));
  CHECK(same(mma_a_at(0, 7), 8, 9));
  CHECK(same(mma_a_at(29, 0), 7, 2));
  CHECK(same(mma_a_at(29, 3), 15, 3));
  CHECK(same(mma_a_at(29, 6), 15, 10));
  CHECK(same(mma_b_at(0, 0), 0, 0));
  CHECK(same(mma_b_at(0, 1), 1, 0));
  CHECK(same(mma_b_at(0, 2), 8, 0));
  CHECK(same(mma_b_at(0, 3), 9, 0));
  CHECK(same(mma_b_at(29, 0), 2, 7));
  CHECK(same(mma_b_at(29, 3), 11, 7));
  CHECK(same(mma_c_at(0, 0), 0, 0));
  CHECK(same(mma_c_at(0, 1), 0, 1));
  CHECK(same(mma_c_at(0, 2), 8, 0));
  CHECK(same(mma_c_at(0, 3), 8, 1));
  CHECK(same(mma_c_at(29, 1), 7, 3));
  CHECK(same(mma_c_at(29, 2), 15, 2));
  // Every element of A (16x16), B (16x8) and C (16x8) is held by exactly one (lane, i).
  std::vector<int> a(256), b(128), c(128);
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 8; ++i) ++a[mma_a_at(lane, i).row * 16 + mma_a_at(lane, i).col];
    for (int i = 0; i < 4; ++i) ++b[mma_b_at(lane, i).row * 8 + mma_b_at(lane, i).col];
    for (int i = 0; i < 4; ++i) ++c[mma_c_at(lane, i).row * 8 + mma_c_at(lane, i).col];
  }
  CHECK(a == std::vector<int>(256, 1));
  CHECK(b == std::vector<int>(128, 1));
  CHECK(c == std::vector<int>(128, 1));
}

TEST_CASE("mma under emulation: random bf16 products within the fp32 bound, the same in every thread order", "[mma]") {
  std::mt19937 rng(11);
  for (const Shape& s : kShapes) {
    INFO("M " << s.M << ", N " << s.N << ", K " << s.K);
    const Operands o = draw(s.M, s.N, s.K, false, rng);
    const std::vector<float> d = run(Device::emulated(1), o);
    const double worst = check_product(o, d, false);
    CHECK(worst > 0);  // rounding happened: the bound is not vacuous
    for (std::uint64_t seed : {0, 2, 7}) CHECK(run(Device::emulated(seed), o) == d);
  }
}

TEST_CASE("mma under emulation: products of small integers are exact", "[mma]") {
  std::mt19937 rng(12);
  for (const Shape& s : kShapes) {
    INFO("M " << s.M << ", N " << s.N << ", K " << s.K);
    const Operands o = draw(s.M, s.N, s.K, true, rng);
    check_product(o, run(Device::emulated(3), o), true);
  }
}

// ldmatrix moves data only: its fragments are the element loads' (the ISA's tables), so the products are bitwise
// the same. Under the emulation this checks ldmatrix_x4's lane and address arithmetic against the tables; on a
// GPU (below), the instruction's.
TEST_CASE("mma under emulation: fragments by ldmatrix (plain and .trans) are those of the element loads", "[mma]") {
  std::mt19937 rng(14);
  for (const Shape& s : kShapes) {
    INFO("M " << s.M << ", N " << s.N << ", K " << s.K);
    const Operands o = draw(s.M, s.N, s.K, false, rng);
    const std::vector<float> d = run(Device::emulated(1), o);
    CHECK(run(Device::emulated(1), o, MmaLoads::ldmatrix) == d);
    CHECK(run(Device::emulated(2), o, MmaLoads::ldmatrix_trans) == d);
  }
}

// Hidden from the default run: ctest runs it as mma_cuda, which reports "skipped" (not passed) without a device.
TEST_CASE("mma on the GPU: within the bound of the double product and of the emulation; ldmatrix's the same", "[.][cuda]") {
  if (!transmamba::gpu::cuda_device_available()) {
    std::printf("skipped: no CUDA device (%s)\n", transmamba::gpu::describe().c_str());
    return;
  }
  std::mt19937 rng(13);
  for (const Shape& s : kShapes) {
    INFO("M " << s.M << ", N " << s.N << ", K " << s.K);
    const Operands random = draw(s.M, s.N, s.K, false, rng), integers = draw(s.M, s.N, s.K, true, rng);
    const std::vector<float> gpu = run(Device::cuda(), random), emulated = run(Device::emulated(1), random);
    check_product(random, gpu, false);
    const std::vector<double> bound = exact_product(random).bound;
    for (std::size_t i = 0; i < gpu.size(); ++i) REQUIRE(std::abs(gpu[i] - emulated[i]) <= 2 * bound[i]);
    check_product(integers, run(Device::cuda(), integers), true);
    CHECK(run(Device::cuda(), random, MmaLoads::ldmatrix) == gpu);
    CHECK(run(Device::cuda(), random, MmaLoads::ldmatrix_trans) == gpu);
  }
}
