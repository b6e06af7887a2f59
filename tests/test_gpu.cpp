// The host side of cuda/ on the CPU: views and their checks, launch shapes, plans, the shared math, and every
// kind of bad argument to the kernels' host API (which must fail before anything is launched).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "cuda/blas.hpp"
#include "cuda/conv.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/step_size.hpp"
#include "reference/tensor.hpp"

using namespace transmamba;
using namespace transmamba::gpu;

TEST_CASE("check_view: names the function, the argument and what does not fit", "[gpu][errors]") {
  std::vector<float> buf(100);
  const View<const float> ok{buf.data(), 100, 0, 0};
  CHECK(check_view("f", "x", ok, 2, 5, 10).row == 10);
  CHECK(check_view("f", "x", ok, 2, 5, 10).batch == 50);
  CHECK_THROWS_WITH(check_view("f", "x", View<const float>{nullptr, 100, 0, 0}, 1, 2, 3), "f: x [1, 2, 3]: null pointer");
  CHECK_THROWS_WITH(check_view("f", "x", ok, 2, 5, 11),
                    "f: x [2, 5, 11]: the buffer holds 100 values from this pointer, the shape needs 110");
  CHECK_THROWS_WITH(check_view("f", "x", View<const float>{buf.data(), 100, 0, 4}, 1, 2, 5),
                    "f: x [1, 2, 5]: row stride 4 < cols: rows overlap");
  CHECK_THROWS_WITH(check_view("f", "x", View<const float>{buf.data(), 100, 7, 5}, 2, 2, 5),
                    "f: x [2, 2, 5]: batch stride 7 < 10: sequences overlap");
  const View<const float> misaligned{reinterpret_cast<const float*>(reinterpret_cast<const char*>(buf.data()) + 2), 90, 0, 0};
  CHECK_THROWS_WITH(check_view("f", "x", misaligned, 1, 1, 4), "f: x [1, 1, 4]: pointer not aligned to 4 bytes");
  // A column block of a wider matrix: 3 rows of 4 values, row stride 10, starting at column 6.
  CHECK_NOTHROW(check_view("f", "x", View<const float>{buf.data() + 6, 94, 0, 10}, 1, 3, 4));
  CHECK_NOTHROW(check_view("f", "x", View<const float>{nullptr, 0, 0, 0}, 1, 0, 4));  // empty: nothing is read
}

TEST_CASE("launch shapes: CUDA's limits are checked before a launch", "[gpu][errors]") {
  CHECK_NOTHROW(check_launch_shape("k", {{1, 1, 1}, {1024, 1, 1}, kMaxDynamicShared}));
  CHECK_THROWS_WITH(check_launch_shape("k", {{1, 1, 1}, {32, 33, 1}, 0}), "launch of k: block of 1056 threads > 1024");
  CHECK_THROWS_WITH(check_launch_shape("k", {{1, 65536, 1}, {32, 1, 1}, 0}), Catch::Contains("grid dimensions"));
  CHECK_THROWS_WITH(check_launch_shape("k", {{1, 1, 1}, {32, 1, 1}, kMaxDynamicShared + 1}), Catch::Contains("dynamic shared memory"));
  CHECK_THROWS_WITH(check_launch_shape("k", {{0, 1, 1}, {32, 1, 1}, 0}), "launch of k: empty grid or block");
}

TEST_CASE("plans: grids cover every token and channel; workspaces hold one partial per tile", "[gpu][plan]") {
  for (int T : {1, 31, 32, 33, 8192})
    for (int C : {1, 32, 33, 5120}) {
      const ConvPlan p = conv_plan({3, T, C, 4});
      CHECK(p.forward.grid.x * kConvTileChannels >= unsigned(C));
      CHECK((p.forward.grid.x - 1) * kConvTileChannels < unsigned(C));
      CHECK(p.forward.grid.y * kConvTileRows >= unsigned(T));
      CHECK((p.forward.grid.y - 1) * kConvTileRows < unsigned(T));
      CHECK(p.forward.grid.z == 3);
      CHECK(p.workspace == std::size_t(3) * p.time_tiles * C * 5);
      CHECK(p.backward.dynamic_shared_bytes == sizeof(float) * 32 * ((32 + 6) + (32 + 3)));
      CHECK_NOTHROW(check_launch_shape("conv", p.backward));
      const StepSizePlan s = step_size_plan({3, T, C});
      CHECK(std::uint64_t(s.forward.grid.x) * s.forward.block.x >= std::uint64_t(3) * T * C);
      CHECK(s.backward.grid.x * 32 >= unsigned(C));
      CHECK(s.workspace == std::size_t(3) * s.time_tiles * C);
    }
  CHECK_THROWS_WITH(conv_plan({1, 8, 8, 33}), "conv: width W=33 is not supported (1 <= W <= 32)");
  CHECK_THROWS_WITH(conv_plan({1, 8, 8, 0}), Catch::Contains("is not supported"));
  CHECK(Tiling{70, 32}.count() == 3);
  CHECK(Tiling{70, 32}.size(2) == 6);
  CHECK(Tiling{64, 32}.size(1) == 32);
}

TEST_CASE("shared math equals the reference's formulas", "[gpu][math]") {
  for (double v : {-90.0, -20.0, -3.0, -1e-4, 0.0, 1e-4, 0.7, 5.0, 30.0, 90.0}) {
    const float f = float(v);
    INFO("v = " << v);
    CHECK(gpu::softplus(f) == Approx(transmamba::softplus(double(f))).epsilon(1e-6).margin(1e-30));
    CHECK(gpu::silu(f) == Approx(transmamba::silu(double(f))).epsilon(1e-6).margin(1e-30));
    CHECK(gpu::silu_grad(f) == Approx(transmamba::silu_grad(double(f))).epsilon(1e-6).margin(1e-30));
    CHECK(gpu::sigmoid(f) == Approx(transmamba::sigmoid(double(f))).epsilon(1e-6).margin(1e-30));
  }
  CHECK(gpu::decay(0.5f, -2.0f) == Approx(std::exp(-1.0)).epsilon(1e-6));
  CHECK(gpu::decay_rate(0.0f) == -1.0f);
}

TEST_CASE("online softmax: folding scores one at a time or in blocks gives the softmax", "[gpu][math]") {
  const std::vector<float> scores{3.0f, -1.0f, 80.0f, 79.5f, -std::numeric_limits<float>::infinity(), 0.25f};
  double max = -INFINITY, sum = 0;
  for (float s : scores) max = std::max(max, double(s));
  for (float s : scores) sum += std::exp(double(s) - max);
  OnlineSoftmax one;
  for (float s : scores) one.add(s);
  OnlineSoftmax left, right;
  for (int i : {0, 1, 5}) left.add(scores[i]);   // max 3
  for (int i : {2, 3, 4}) right.add(scores[i]);  // max 80
  const float scale = left.merge(right.max, right.sum);
  CHECK(scale == Approx(std::exp(3.0 - 80.0)).margin(1e-30));  // what was accumulated against max 3 shrinks
  for (const OnlineSoftmax& s : {one, left}) {
    CHECK(s.max == 80.0f);
    CHECK(s.sum == Approx(sum).epsilon(1e-6));
    CHECK(s.weight(79.5f) == Approx(std::exp(79.5 - 80.0) / sum).epsilon(1e-6));
  }
  OnlineSoftmax masked;  // only masked scores: nothing changes, no NaN
  CHECK(masked.add(-std::numeric_limits<float>::infinity()) == 1.0f);
  CHECK(masked.sum == 0.0f);
}

#ifdef TM_HAVE_EMULATION
TEST_CASE("conv and step size host API: bad arguments fail before any launch, naming the argument", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const ConvShape s{2, 10, 6, 4};
  DeviceBuffer<float> v(dev, 120), w(dev, 24), b(dev, 6), out(dev, 120), small(dev, 119), ws(dev, conv_plan(s).workspace);
  const ConvForward good{s, v.view(), w.view(), b.view(), out.view()};
  ConvForward bad = good;
  bad.out = small.view();
  CHECK_THROWS_WITH(conv_silu_forward(stream, bad),
                    "conv_silu_forward: out [2, 10, 6]: the buffer holds 119 values from this pointer, the shape needs 120");
  bad = good;
  bad.w = View<const float>{};
  CHECK_THROWS_WITH(conv_silu_forward(stream, bad), "conv_silu_forward: w [1, 6, 4]: null pointer");
  bad = good;
  bad.shape.W = 40;
  CHECK_THROWS_WITH(conv_silu_forward(stream, bad), "conv: width W=40 is not supported (1 <= W <= 32)");
  DeviceBuffer<float> d_w(dev, 24), d_b(dev, 6), tiny(dev, conv_plan(s).workspace - 1);
  const ConvBackward backward{s, v.view(), w.view(), b.view(), out.view(), out.view(), d_w.view(), d_b.view(), tiny.view()};
  CHECK_THROWS_WITH(conv_silu_backward(stream, backward), Catch::Contains("conv_silu_backward: workspace"));
  DeviceBuffer<float> raw(dev, 120), h(dev, 6);
  StepSizeForward step{{2, 10, 6}, raw.view(), h.view(), h.view(), raw.view(), h.view()};
  step.dt = View<float>{raw.data(), 120, 0, 7};
  CHECK_THROWS_WITH(step_size_forward(stream, step), "step_size_forward: dt [2, 10, 6]: the buffer holds 120 values from this pointer, the shape needs 139");
  step.dt = raw.view();
  step.shape.H = -1;
  CHECK_THROWS_WITH(step_size_forward(stream, step), "step size: negative Bt, T or H");
}

TEST_CASE("conv kernels: bitwise the same result on every call and in every thread order", "[gpu][determinism]") {
  const ConvShape s{3, 70, 40, 4};
  std::vector<float> host(std::size_t(3) * 70 * 40), wh(160), bh(40);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = std::sin(0.37f * i);
  for (std::size_t i = 0; i < wh.size(); ++i) wh[i] = std::cos(0.11f * i);
  for (std::size_t i = 0; i < bh.size(); ++i) bh[i] = 0.01f * i;
  std::vector<std::vector<float>> results;
  for (std::uint64_t seed : {1, 1, 2}) {
    const Device dev = Device::emulated(seed);
    Stream stream(dev);
    DeviceBuffer<float> v(dev, host), w(dev, wh), b(dev, bh), out(dev, host.size()), d_v(dev, host.size()), d_w(dev, 160),
        d_b(dev, 40), ws(dev, conv_plan(s).workspace);
    conv_silu_forward(stream, {s, v.view(), w.view(), b.view(), out.view()});
    conv_silu_backward(stream, {s, v.view(), w.view(), b.view(), out.view(), d_v.view(), d_w.view(), d_b.view(), ws.view()});
    std::vector<float> all = d_v.download();
    for (const auto* buf : {&out, &d_w, &d_b}) {
      const std::vector<float> part = buf->download();
      all.insert(all.end(), part.begin(), part.end());
    }
    results.push_back(all);
  }
  CHECK(results[0] == results[1]);
  CHECK(results[0] == results[2]);
}
#endif
