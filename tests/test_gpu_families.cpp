// The host side of the attention and RMSNorm kernel families (plans, bad arguments, determinism, a wide-group
// shape against the reference). Not built yet: CMakeLists.txt gets it (or its cases move into test_gpu.cpp) when
// cuda/attention.cu and cuda/norm.cu are wired into the build.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <limits>
#include "cuda/attention.hpp"
#include "cuda/blas.hpp"
#include "cuda/conv.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/norm.hpp"
#include "cuda/step_size.hpp"
#include "reference/attention.hpp"
#include "reference/tensor.hpp"
using namespace transmamba;
using namespace transmamba::gpu;


TEST_CASE("attention plan: grids cover every token, shared memory fits, the widest groups get smaller tiles", "[gpu][plan]") {
  struct Config { int H, G, N, p; };
  for (const Config c : {Config{4, 2, 16, 16}, Config{48, 8, 128, 64}, Config{1, 1, 128, 128}, Config{64, 1, 16, 128}})
    for (int P : {1, 31, 32, 33, 8192}) {
      const AttentionShape s{3, P, c.H, c.G, c.N, c.p};
      const AttentionPlan plan = attention_plan(s);
      INFO("H " << c.H << " G " << c.G << " N " << c.N << " p " << c.p << " P " << P);
      const int cols = c.H / c.G * c.p;
      for (const auto& [shape, rows] : {std::pair{plan.forward, plan.forward_rows}, std::pair{plan.backward_key, plan.backward_rows},
                                        std::pair{plan.backward_query, kAttnTile}, std::pair{plan.rowsum, kAttnRowsumWarps}}) {
        CHECK(shape.grid.x * unsigned(rows) >= unsigned(P));
        CHECK((shape.grid.x - 1) * unsigned(rows) < unsigned(P));
        CHECK(shape.grid.y == unsigned(c.G));
        CHECK(shape.grid.z == 3);
        CHECK_NOTHROW(check_launch_shape("attention", shape));
      }
      CHECK(plan.forward.dynamic_shared_bytes == sizeof(float) * AttnForwardLayout(plan.forward_rows, c.N, cols).total);
      CHECK(plan.backward_key.dynamic_shared_bytes == sizeof(float) * AttnKeyBackwardLayout(plan.backward_rows, c.N, cols).total);
      CHECK(plan.backward_query.dynamic_shared_bytes == sizeof(float) * AttnQueryBackwardLayout(c.N).total);
      // The largest tile that fits: twice the rows would not.
      if (plan.forward_rows < kAttnTile)
        CHECK(sizeof(float) * AttnForwardLayout(2 * plan.forward_rows, c.N, cols).total > kMaxDynamicShared);
      if (plan.backward_rows < kAttnTile)
        CHECK(sizeof(float) * AttnKeyBackwardLayout(2 * plan.backward_rows, c.N, cols).total > kMaxDynamicShared);
      CHECK(plan.lse == std::size_t(3) * c.G * P);
      CHECK(plan.workspace == plan.lse);
    }
  CHECK(attention_plan({1, 8, 4, 2, 16, 16}).forward.dynamic_shared_bytes <= kDefaultDynamicShared);  // small: no opt-in
  CHECK(attention_plan({1, 8, 48, 8, 128, 64}).forward_rows == 32);  // the paper's groups: 6 heads x 64
  CHECK(attention_plan({1, 8, 64, 1, 16, 128}).forward_rows == 4);   // 8192 value columns per group
  CHECK(attention_plan({1, 8, 64, 1, 16, 128}).backward_rows == 4);
  CHECK_THROWS_WITH(attention_plan({1, 8, 4, 2, 24, 16}), "attention: N=24 is not supported (16, 32, 64 or 128)");
  CHECK_THROWS_WITH(attention_plan({1, 8, 4, 2, 16, 8}), "attention: p=8 is not supported (16, 32, 64 or 128)");
  CHECK_THROWS_WITH(attention_plan({1, 8, 6, 4, 16, 16}), "attention: H=6 heads in G=4 groups (need H >= 1, G >= 1, H % G == 0)");
  CHECK_THROWS_WITH(attention_plan({1, 8, 0, 1, 16, 16}), Catch::Contains("H=0 heads"));
  CHECK_THROWS_WITH(attention_plan({-1, 8, 4, 2, 16, 16}), "attention: negative Bt or P");
  CHECK_THROWS_WITH(attention_plan({1, 8, 1024, 1, 16, 128}), Catch::Contains("131072 value columns per group do not fit"));
}

#ifdef TM_HAVE_EMULATION
TEST_CASE("attention host API: bad arguments fail before any launch, naming the argument", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const AttentionShape s{2, 5, 4, 2, 16, 16};  // C, B [2, 5, 32], x [2, 5, 64]
  const AttentionPlan plan = attention_plan(s);
  DeviceBuffer<float> qk(dev, 320), x(dev, 640), y(dev, 640), lse(dev, plan.lse), small(dev, 639), ws(dev, plan.workspace),
      d_qk(dev, 320), d_x(dev, 640), tiny(dev, plan.lse - 1);
  const AttentionForward good{s, qk.view(), qk.view(), x.view(), y.view(), lse.view()};
  AttentionForward bad = good;
  bad.y = small.view();
  CHECK_THROWS_WITH(attention_forward(stream, bad),
                    "attention_forward: y [2, 5, 64]: the buffer holds 639 values from this pointer, the shape needs 640");
  bad = good;
  bad.B = View<const float>{};
  CHECK_THROWS_WITH(attention_forward(stream, bad), "attention_forward: B [2, 5, 32]: null pointer");
  bad = good;
  bad.C = View<const float>{qk.data(), 320, 0, 31};
  CHECK_THROWS_WITH(attention_forward(stream, bad), "attention_forward: C [2, 5, 32]: row stride 31 < cols: rows overlap");
  bad = good;
  bad.lse = tiny.view();
  CHECK_THROWS_WITH(attention_forward(stream, bad), Catch::Contains("attention_forward: lse [1, 1, 20]"));
  bad = good;
  bad.shape.N = 24;
  CHECK_THROWS_WITH(attention_forward(stream, bad), "attention: N=24 is not supported (16, 32, 64 or 128)");
  bad = good;
  bad.shape.p = 48;
  CHECK_THROWS_WITH(attention_forward(stream, bad), "attention: p=48 is not supported (16, 32, 64 or 128)");
  const AttentionBackward back{s, qk.view(), qk.view(), x.view(), y.view(), lse.view(), y.view(), d_qk.view(), d_qk.view(),
                               d_x.view(), ws.view()};
  AttentionBackward b2 = back;
  b2.workspace = tiny.view();
  CHECK_THROWS_WITH(attention_backward(stream, b2), Catch::Contains("attention_backward: workspace [1, 1, 20]"));
  b2 = back;
  b2.d_x = small.view();
  CHECK_THROWS_WITH(attention_backward(stream, b2), Catch::Contains("attention_backward: d_x [2, 5, 64]"));
  b2 = back;
  b2.d_B = View<float>{d_qk.data(), 320, 100, 32};
  CHECK_THROWS_WITH(attention_backward(stream, b2), "attention_backward: d_B [2, 5, 32]: batch stride 100 < 160: sequences overlap");
  b2 = back;
  b2.lse = View<const float>{};
  CHECK_THROWS_WITH(attention_backward(stream, b2), "attention_backward: lse [1, 1, 20]: null pointer");
  b2 = back;
  b2.shape.G = 3;
  CHECK_THROWS_WITH(attention_backward(stream, b2), Catch::Contains("H=4 heads in G=3 groups"));
}

namespace {
// Forward and backward of one shape with fixed inputs on an emulated device of this thread-order seed:
// y, lse, d_C, d_B, d_x one after another.
std::vector<float> attention_run(const AttentionShape& s, std::uint64_t seed) {
  const std::size_t qk = std::size_t(s.Bt) * s.P * s.G * s.N, v = std::size_t(s.Bt) * s.P * s.H * s.p;
  auto values = [](std::size_t n, float f) {
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = std::sin(f * float(i) + 0.3f);
    return h;
  };
  const Device dev = Device::emulated(seed);
  Stream stream(dev);
  const AttentionPlan plan = attention_plan(s);
  DeviceBuffer<float> C(dev, values(qk, 0.37f)), B(dev, values(qk, 0.73f)), x(dev, values(v, 0.11f)),
      d_y(dev, values(v, 0.29f)), y(dev, v), lse(dev, plan.lse), ws(dev, plan.workspace), d_C(dev, qk), d_B(dev, qk), d_x(dev, v);
  attention_forward(stream, {s, C.view(), B.view(), x.view(), y.view(), lse.view()});
  attention_backward(stream, {s, C.view(), B.view(), x.view(), y.view(), lse.view(), d_y.view(), d_C.view(), d_B.view(),
                              d_x.view(), ws.view()});
  std::vector<float> all;
  for (const auto* buf : {&y, &lse, &d_C, &d_B, &d_x}) {
    const std::vector<float> part = buf->download();
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}
}  // namespace

TEST_CASE("attention kernels: bitwise the same result on every call and in every thread order", "[gpu][determinism]") {
  const AttentionShape s{2, 70, 6, 2, 16, 16};
  const std::vector<float> first = attention_run(s, 1);
  CHECK(first == attention_run(s, 1));
  CHECK(first == attention_run(s, 2));
}

// The widest groups take tiles of fewer than 32 rows (the forward's queries, the backward's keys); the kernel
// check's shapes never do, so this compares them with the double reference here.
TEST_CASE("attention kernels: tiles of 4 rows (8192 value columns per group) equal the reference", "[gpu][plan]") {
  const AttentionShape s{2, 11, 64, 1, 16, 128};
  REQUIRE(attention_plan(s).forward_rows == 4);
  REQUIRE(attention_plan(s).backward_rows == 4);
  const std::vector<float> all = attention_run(s, 3);
  const int P = s.P, E = s.H * s.p, GN = s.G * s.N;
  MixerConfig cfg;
  cfg.H = s.H, cfg.G = s.G, cfg.N = s.N, cfg.E = E;
  auto values = [](std::size_t offset, int rows, int cols, float f) {  // the inputs of attention_run, sequence by sequence
    Mat<double> m(rows, cols);
    for (int i = 0; i < rows * cols; ++i) m(i / cols, i % cols) = std::sin(f * float(offset + i) + 0.3f);
    return m;
  };
  auto got = [&](std::size_t offset, int rows, int cols) {
    Mat<double> m(rows, cols);
    for (int i = 0; i < rows * cols; ++i) m(i / cols, i % cols) = all[offset + i];
    return m;
  };
  const std::size_t y0 = 0, dC0 = std::size_t(2) * P * E + 2 * P, dB0 = dC0 + 2 * P * GN, dx0 = dB0 + 2 * P * GN;
  auto rel = [](const Mat<double>& a, const Mat<double>& b) { return (a - b).norm() / b.norm(); };
  for (int b = 0; b < 2; ++b) {
    const Mat<double> C = values(std::size_t(b) * P * GN, P, GN, 0.37f), B = values(std::size_t(b) * P * GN, P, GN, 0.73f),
                      x = values(std::size_t(b) * P * E, P, E, 0.11f), d_y = values(std::size_t(b) * P * E, P, E, 0.29f);
    const AttentionGrads<double> g = transmamba::attention_backward(cfg, C, B, x, d_y);
    CHECK(rel(got(y0 + std::size_t(b) * P * E, P, E), transmamba::attention_forward(cfg, C, B, x)) < 1e-5);
    CHECK(rel(got(dC0 + std::size_t(b) * P * GN, P, GN), g.d_C) < 1e-4);
    CHECK(rel(got(dB0 + std::size_t(b) * P * GN, P, GN), g.d_B) < 1e-4);
    CHECK(rel(got(dx0 + std::size_t(b) * P * E, P, E), g.d_x) < 1e-4);
  }
}
#endif

TEST_CASE("norm plan: each group's lanes hold its channels, grids cover every row and group", "[gpu][plan]") {
  for (int n : {1, 2, 3, 31, 32, 33, 100, 256, 257, 384, 1536, 2049, 3072, 4096, 4097, 6145, 8192})
    for (int G : {1, 3, 8})
      for (int T : {0, 1, 15, 16, 17, 8192}) {
        INFO("n " << n << " G " << G << " T " << T);
        const NormPlan p = norm_plan({3, T, n * G, G});
        CHECK(p.group == n);
        CHECK(p.lanes <= kNormMaxLanes);
        CHECK((p.lanes < 32 ? (p.lanes & (p.lanes - 1)) : p.lanes % 32) == 0);  // a power of 2, or whole warps
        CHECK(std::find(std::begin(kNormPerThread), std::end(kNormPerThread), p.per_thread) != std::end(kNormPerThread));
        CHECK(p.lanes * p.per_thread >= n);
        if (p.lanes < 32) {  // one channel per lane, none idle (first_channel in norm.cu)
          CHECK(p.per_thread == 1);
          CHECK(p.lanes < 2 * n);
        } else {  // warp w holds channels [32·K·w, 32·K·(w + 1)): the last warp holds some
          CHECK((p.lanes / 32 - 1) * 32 * p.per_thread < n);
        }
        if (n <= 4096) CHECK(p.per_thread <= kNormPreferredPerThread);  // K = 12, 16 only past 4096 channels
        CHECK(p.forward.block.x == unsigned(p.segments * p.lanes));
        CHECK(std::uint64_t(p.forward.grid.x) * p.segments >= std::uint64_t(3) * T * G);
        CHECK(p.backward.block.x == unsigned(p.backward_segments * p.lanes));
        CHECK(p.backward.block.x % 32 == 0);
        CHECK(p.backward.grid.x * unsigned(p.backward_segments) >= unsigned(G));
        CHECK((p.backward.grid.x - 1) * unsigned(p.backward_segments) < unsigned(G));
        CHECK(p.row_tiles == (T + kNormTileRows - 1) / kNormTileRows);
        CHECK(p.workspace == std::size_t(1 + 3 * p.row_tiles) * n * G);
        for (const LaunchShape& shape : {p.forward, p.backward, p.reduce}) CHECK_NOTHROW(check_launch_shape("norm", shape));
      }
  CHECK(norm_plan({1, 8, 3072, 8}).lanes == 64);  // the paper's E/G = 384: two warps of 6 values per lane
  CHECK(norm_plan({1, 8, 3072, 8}).per_thread == 6);
  CHECK(norm_plan({1, 8, 3072, 8}).backward_segments == 4);
  CHECK(norm_plan({1, 8, 3072, 1}).lanes == 512);
  CHECK(norm_plan({1, 8, 2049, 1}).lanes == 352);  // 11 warps of 6 x 32 channels, not 16
  CHECK(norm_plan({1, 8, 8, 8}).backward_segments == 32);  // one channel per group: a warp, not 256 threads
  CHECK_THROWS_WITH(norm_plan({1, 8, 10, 4}), "rmsnorm: 10 channels do not split into 4 groups (E % G != 0)");
  CHECK_THROWS_WITH(norm_plan({1, 8, 10, 0}), "rmsnorm: E = 10 and G = 0 must be >= 1");
  CHECK_THROWS_WITH(norm_plan({1, 8, 8193, 1}), "rmsnorm: groups of 8193 channels are not supported (at most 8192)");
  CHECK_THROWS_WITH(norm_plan({1, -1, 8, 1}), "rmsnorm: negative Bt or T");
}

#ifdef TM_HAVE_EMULATION
TEST_CASE("norm host API: bad arguments fail before any launch, naming the argument", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const NormShape s{2, 5, 12, 3};
  DeviceBuffer<float> y(dev, 120), z(dev, 120), w(dev, 12), out(dev, 120), d_w(dev, 12), small(dev, 119),
      ws(dev, norm_plan(s).workspace);
  const NormForward good{s, y.view(), z.view(), w.view(), out.view()};
  CHECK_NOTHROW(rmsnorm_forward(stream, good));
  NormForward bad = good;
  bad.z = small.view();
  CHECK_THROWS_WITH(rmsnorm_forward(stream, bad), "rmsnorm_forward: z [2, 5, 12]: the buffer holds 119 values from this pointer, the shape needs 120");
  bad = good;
  bad.out = View<float>{out.data(), 120, 0, 11};
  CHECK_THROWS_WITH(rmsnorm_forward(stream, bad), "rmsnorm_forward: out [2, 5, 12]: row stride 11 < cols: rows overlap");
  bad = good;
  bad.shape.G = 5;
  CHECK_THROWS_WITH(rmsnorm_forward(stream, bad), Catch::Contains("12 channels do not split into 5 groups"));
  // Gated: d_z is an output; ungated (z.data == nullptr): d_z must be empty.
  NormBackward back{s, y.view(), z.view(), w.view(), out.view(), out.view(), View<float>{}, d_w.view(), false, ws.view()};
  CHECK_THROWS_WITH(rmsnorm_backward(stream, back), "rmsnorm_backward: d_z [2, 5, 12]: null pointer");
  back.z = View<const float>{};
  back.d_z = small.view();
  CHECK_THROWS_WITH(rmsnorm_backward(stream, back), "rmsnorm_backward: d_z is given, but the call is ungated (z.data == nullptr)");
  back.d_z = View<float>{};
  back.workspace = small.view(0, 0);
  back.workspace.size = norm_plan(s).workspace - 1;
  CHECK_THROWS_WITH(rmsnorm_backward(stream, back), Catch::Contains("rmsnorm_backward: workspace"));
  back.workspace = ws.view();
  CHECK_NOTHROW(rmsnorm_backward(stream, back));
  // No rows: nothing to read, d_w = 0 (or left as it is when accumulating).
  const NormShape none{2, 0, 12, 3};
  DeviceBuffer<float> ws0(dev, norm_plan(none).workspace);
  d_w.upload(std::vector<float>(12, 7.0f));
  rmsnorm_backward(stream, {none, {}, {}, w.view(), {}, {}, {}, d_w.view(), true, ws0.view()});
  CHECK(d_w.download() == std::vector<float>(12, 7.0f));
  rmsnorm_backward(stream, {none, {}, {}, w.view(), {}, {}, {}, d_w.view(), false, ws0.view()});
  CHECK(d_w.download() == std::vector<float>(12, 0.0f));
}

TEST_CASE("norm kernels: bitwise the same result on every call and in every thread order", "[gpu][determinism]") {
  for (const NormShape s : {NormShape{3, 37, 768, 2}, NormShape{2, 20, 15, 3}}) {  // two warps per group; 8 lanes
    const std::size_t values = std::size_t(s.Bt) * s.T * s.E;
    std::vector<float> yh(values), zh(values), dh(values), wh(s.E);
    for (std::size_t i = 0; i < values; ++i) yh[i] = std::sin(0.37f * i), zh[i] = 3 * std::cos(0.21f * i), dh[i] = std::sin(1.3f * i);
    for (int i = 0; i < s.E; ++i) wh[i] = 1 + 0.01f * i;
    std::vector<std::vector<float>> results;
    for (std::uint64_t seed : {1, 1, 2}) {
      const Device dev = Device::emulated(seed);
      Stream stream(dev);
      DeviceBuffer<float> y(dev, yh), z(dev, zh), d_out(dev, dh), w(dev, wh), out(dev, values), d_y(dev, values),
          d_z(dev, values), d_w(dev, s.E), ws(dev, norm_plan(s).workspace);
      rmsnorm_forward(stream, {s, y.view(), z.view(), w.view(), out.view()});
      rmsnorm_backward(stream, {s, y.view(), z.view(), w.view(), d_out.view(), d_y.view(), d_z.view(), d_w.view(), false, ws.view()});
      std::vector<float> all = out.download();
      for (const auto* buf : {&d_y, &d_z, &d_w}) {
        const std::vector<float> part = buf->download();
        all.insert(all.end(), part.begin(), part.end());
      }
      results.push_back(all);
    }
    CHECK(results[0] == results[1]);
    CHECK(results[0] == results[2]);
  }
}
#endif
