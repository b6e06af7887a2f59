// The host side of cuda/ on the CPU: views and their checks, launch shapes, plans, the shared math, and every
// kind of bad argument to the kernels' host API (which must fail before anything is launched).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/attention.hpp"
#include "cuda/bf16.hpp"
#include "cuda/blas.hpp"
#include "cuda/conv.hpp"
#include "cuda/converter.hpp"
#include "cuda/device_math.hpp"
#include "cuda/inference.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/mixer.hpp"
#include "cuda/norm.hpp"
#include "cuda/ssm.hpp"
#include "cuda/projection.hpp"
#include "cuda/step_size.hpp"
#include "reference/attention.hpp"
#include "reference/tensor.hpp"
#include "verify/bounds.hpp"
#include "verify/compare.hpp"
#include "verify/harness.hpp"

using namespace transmamba;
using namespace transmamba::gpu;

namespace {
// The values of the buffers, one after another: what the determinism tests compare bitwise.
std::vector<float> downloads(std::initializer_list<const DeviceBuffer<float>*> buffers) {
  std::vector<float> all;
  for (const DeviceBuffer<float>* b : buffers) {
    const std::vector<float> part = b->download();
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}
}  // namespace

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
    results.push_back(downloads({&d_v, &out, &d_w, &d_b}));
  }
  CHECK(results[0] == results[1]);
  CHECK(results[0] == results[2]);
}
#endif

TEST_CASE("attention plan: grids cover every token, shared memory fits, the widest groups get smaller tiles", "[gpu][plan]") {
  struct Config { int H, G, N, p; };
  for (const Config c : {Config{4, 2, 16, 16}, Config{48, 8, 128, 64}, Config{1, 1, 128, 128}, Config{64, 1, 16, 128}})
    for (int P : {1, 31, 32, 33, 8192}) {
      const AttentionShape s{3, P, c.H, c.G, c.N, c.p};
      const AttentionPlan plan = attention_plan(s);
      INFO("H " << c.H << " G " << c.G << " N " << c.N << " p " << c.p << " P " << P);
      const int cols = c.H / c.G * c.p;
      for (const auto& [shape, rows] : {std::pair{plan.forward, plan.forward_rows}, std::pair{plan.backward_key, plan.backward_rows},
                                        std::pair{plan.backward_query, kAttnTile}}) {
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
      CHECK(plan.workspace == 2 * plan.lse);  // D and c per query
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

TEST_CASE("attention bf16 plan: the tensor-core kernels' grids cover every row and column, shared memory fits", "[gpu][plan]") {
  for (int N : {16, 32, 64, 128})
    for (int p : {16, 32, 64, 128})
      for (int R = 1; R * p <= 768; ++R)
        for (int P : {1, 63, 64, 65, 8192}) {
          const int G = 2, cols = R * p;
          const AttentionShape s{3, P, R * G, G, N, p, P > 64 ? 64 : 0};
          INFO("N " << N << " p " << p << " R " << R << " P " << P);
          const AttentionPlan plan = attention_plan_bf16(s);
          CHECK(plan.forward.dynamic_shared_bytes == sizeof(Bf16) * AttnBf16ForwardLayout(N).total);
          CHECK(plan.forward.dynamic_shared_bytes <= kMaxDynamicShared);
          CHECK(plan.forward.block.x == unsigned(32 * kAttnBf16Warps));
          CHECK(plan.forward.grid.x * unsigned(kAttnBf16Rows) >= unsigned(s.queries()));
          CHECK((plan.forward.grid.x - 1) * unsigned(kAttnBf16Rows) < unsigned(s.queries()));
          CHECK(plan.forward_column_blocks * kAttnBf16Columns >= cols);
          CHECK((plan.forward_column_blocks - 1) * kAttnBf16Columns < cols);
          CHECK(plan.forward.grid.y == unsigned(G * plan.forward_column_blocks));
          CHECK(plan.forward.grid.z == 3);
          CHECK_NOTHROW(check_launch_shape("attention bf16", plan.forward));
          // The backward's two kernels: blocks of kAttnBf16Rows rows covering P; the key kernel also per column block.
          const std::size_t backward_bytes = sizeof(Bf16) * AttnBf16BackwardLayout(N, cols).total;
          for (const LaunchShape& b : {plan.backward_query, plan.backward_key}) {
            CHECK(b.dynamic_shared_bytes == backward_bytes);
            CHECK(b.block.x == unsigned(32 * kAttnBf16Warps));
            CHECK(b.grid.x * unsigned(kAttnBf16Rows) >= unsigned(P));
            CHECK((b.grid.x - 1) * unsigned(kAttnBf16Rows) < unsigned(P));
            CHECK(b.grid.z == 3);
            CHECK_NOTHROW(check_launch_shape("attention bf16 backward", b));
          }
          CHECK(plan.backward_query.grid.y == unsigned(G));
          CHECK(plan.backward_key.grid.y == unsigned(G * plan.forward_column_blocks));
          // lse and the workspace are attention_plan's.
          const AttentionPlan fp32 = attention_plan(s);
          CHECK(plan.lse == fp32.lse);
          CHECK(plan.workspace == fp32.workspace);
        }
  CHECK(attention_plan_bf16({1, 8192, 48, 8, 128, 64}).forward_column_blocks == 3);  // the paper's 384 columns
  CHECK_NOTHROW(attention_plan({1, 8, 16, 1, 128, 128}));  // 2048 columns: fp32 fits (smaller tiles), bf16 does not
  CHECK_THROWS_WITH(attention_plan_bf16({1, 8, 16, 1, 128, 128}),
                    "attention: (H/G)·p = 2048 value columns per group do not fit in the bf16 backward's shared memory");
  CHECK_THROWS_WITH(attention_plan_bf16({1, 8, 4, 2, 24, 16}), "attention: N=24 is not supported (16, 32, 64 or 128)");
  CHECK_THROWS_WITH(attention_plan_bf16({1, 8, 4, 2, 16, 8}), "attention: p=8 is not supported (16, 32, 64 or 128)");
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
  const AttentionBackward back{s, qk.view(), qk.view(), x.view(), lse.view(), y.view(), d_qk.view(), d_qk.view(), d_x.view(),
                               ws.view()};
  AttentionBackward b2 = back;
  b2.workspace = tiny.view();
  CHECK_THROWS_WITH(attention_backward(stream, b2), Catch::Contains("attention_backward: workspace [1, 1, 40]"));
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

TEST_CASE("attention bf16 host API: null or undersized bf16 buffers and unsupported shapes fail before any launch", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const AttentionShape s{2, 5, 4, 2, 16, 16};  // C, B [2, 5, 32], x [2, 5, 64]
  const AttentionPlan plan = attention_plan_bf16(s);
  DeviceBuffer<Bf16> qk(dev, 320), x(dev, 640), y(dev, 640), small(dev, 639), d_qk(dev, 320), d_x(dev, 640);
  DeviceBuffer<float> lse(dev, plan.lse), ws(dev, plan.workspace), tiny(dev, plan.lse - 1);
  const AttentionForwardBf16 good{s, qk.view(), qk.view(), x.view(), y.view(), lse.view()};
  const AttentionBackwardBf16 back{s, qk.view(), qk.view(), x.view(), lse.view(), y.view(), d_qk.view(), d_qk.view(),
                                   d_x.view(), ws.view()};
  // Each call: the good arguments with one change, and the start of the message it must throw.
  auto fails = [&](auto args, auto change, const std::string& message) {
    change(args);
    if constexpr (std::is_same_v<decltype(args), AttentionForwardBf16>)
      CHECK_THROWS_WITH(attention_forward(stream, args), Catch::StartsWith(message));
    else
      CHECK_THROWS_WITH(attention_backward(stream, args), Catch::StartsWith(message));
  };
  using F = AttentionForwardBf16&;
  using B = AttentionBackwardBf16&;
  fails(good, [&](F a) { a.y = small.view(); },
        "attention_forward: y [2, 5, 64]: the buffer holds 639 values from this pointer, the shape needs 640");
  fails(good, [](F a) { a.C = View<const Bf16>{}; }, "attention_forward: C [2, 5, 32]: null pointer");
  fails(good, [&](F a) { a.x = small.view(); }, "attention_forward: x [2, 5, 64]");
  fails(good, [&](F a) { a.lse = tiny.view(); }, "attention_forward: lse [1, 1, 20]");
  fails(good, [](F a) { a.shape.N = 48; }, "attention: N=48 is not supported (16, 32, 64 or 128)");
  fails(good, [](F a) { a.shape.p = 8; }, "attention: p=8 is not supported (16, 32, 64 or 128)");
  fails(back, [](B a) { a.d_y = View<const Bf16>{}; }, "attention_backward: d_y [2, 5, 64]: null pointer");
  fails(back, [&](B a) { a.d_x = small.view(); }, "attention_backward: d_x [2, 5, 64]");
  fails(back, [&](B a) { a.d_y = small.view(); }, "attention_backward: d_y [2, 5, 64]");
  fails(back, [&](B a) { a.workspace = tiny.view(); }, "attention_backward: workspace [1, 1, 40]");
  fails(back, [](B a) { a.shape.N = 24; }, "attention: N=24 is not supported (16, 32, 64 or 128)");
  fails(back, [](B a) { a.shape.first_query = 1; }, "attention_backward: first_query=1: the backward takes every query");
}

namespace {
// Forward and backward of one shape with fixed inputs on an emulated device of this thread-order seed:
// y, lse, d_C, d_B, d_x one after another.
// y, lse, d_C, d_B, d_x (one after another) of the kernels of storage S (float or Bf16, values as fp32) on fixed inputs.
template <class S = float>
std::vector<float> attention_run(const AttentionShape& s, std::uint64_t seed) {
  const std::size_t qk = std::size_t(s.Bt) * s.P * s.G * s.N, v = std::size_t(s.Bt) * s.P * s.H * s.p;
  auto values = [](std::size_t n, float f) {
    std::vector<S> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = from_float<S>(std::sin(f * float(i) + 0.3f));
    return h;
  };
  const Device dev = Device::emulated(seed);
  Stream stream(dev);
  const AttentionPlan plan = std::is_same_v<S, Bf16> ? attention_plan_bf16(s) : attention_plan(s);
  DeviceBuffer<S> C(dev, values(qk, 0.37f)), B(dev, values(qk, 0.73f)), x(dev, values(v, 0.11f)),
      d_y(dev, values(v, 0.29f)), y(dev, v), d_C(dev, qk), d_B(dev, qk), d_x(dev, v);
  DeviceBuffer<float> lse(dev, plan.lse), ws(dev, plan.workspace);
  attention_forward(stream, AttentionForwardT<S>{s, C.view(), B.view(), x.view(), y.view(), lse.view()});
  attention_backward(stream, AttentionBackwardT<S>{s, C.view(), B.view(), x.view(), lse.view(), d_y.view(), d_C.view(),
                                                   d_B.view(), d_x.view(), ws.view()});
  std::vector<float> all;
  auto append = [&](const auto& buffer) {
    for (const auto value : buffer.download()) all.push_back(to_float(value));
  };
  append(y), append(lse), append(d_C), append(d_B), append(d_x);
  return all;
}
}  // namespace

TEST_CASE("attention kernels: bitwise the same result on every call and in every thread order", "[gpu][determinism]") {
  const AttentionShape s{2, 70, 6, 2, 16, 16};
  const std::vector<float> first = attention_run(s, 1);
  CHECK(first == attention_run(s, 1));
  CHECK(first == attention_run(s, 2));
  const std::vector<float> bf16 = attention_run<Bf16>(s, 1);  // the tensor-core kernels
  CHECK(bf16 == attention_run<Bf16>(s, 1));
  CHECK(bf16 == attention_run<Bf16>(s, 2));
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
  rmsnorm_backward(stream, NormBackward{none, {}, {}, w.view(), {}, {}, {}, d_w.view(), true, ws0.view()});
  CHECK(d_w.download() == std::vector<float>(12, 7.0f));
  rmsnorm_backward(stream, NormBackward{none, {}, {}, w.view(), {}, {}, {}, d_w.view(), false, ws0.view()});
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
      results.push_back(downloads({&out, &d_y, &d_z, &d_w}));
    }
    CHECK(results[0] == results[1]);
    CHECK(results[0] == results[2]);
  }
}
#endif

TEST_CASE("scan plan: the backward's grids, shared memory and workspace", "[gpu][plan]") {
  for (int L : {0, 1, 7, 8, 9, 8192})
    for (int Q : {1, 8, 128}) {
      const ScanShape s{3, L, 6, 4, 2, 5, Q};
      const ScanPlan p = scan_plan(s);
      INFO("L " << L << " Q " << Q);
      CHECK(p.chunks == (L + Q - 1) / Q);
      CHECK(p.backward_chunk.grid.x == unsigned(std::max(p.chunks, 1)));
      CHECK(p.backward_chunk.grid.y == 6);
      CHECK(p.backward_chunk.grid.z == 3);
      CHECK(p.backward_chunk.block.x == kScanBackwardThreads);
      // The products' staging (ssm.hpp), the larger of block_product's (slices of 64 along k of A [128 rows + 4
      // padding] and B [64 columns], 16 row-sum partials per row: 64·196 + 128·16 = 14592 floats) and
      // block_product_tc's (A and B slices of 128 x (64 + 8) bf16, two parts each: 4·128·72 bf16 = 18432 floats,
      // 8 row-sum partials per row: 128·8 = 1024 floats): 19456 floats.
      const std::size_t staging = 19456;
      const int ld = Q == 1 ? 8 : Q == 8 ? 12 : 132;  // Q rounded up to whole 16-byte words, plus one
      CHECK(p.backward_chunk.dynamic_shared_bytes == sizeof(float) * (staging + 2 * Q * ld + 6 * Q));
      CHECK(p.backward_chunk.dynamic_shared_bytes <= 227 * 1024);  // sm_90's most per block
      CHECK(p.chunk_grad.grid.x == p.backward_chunk.grid.x);
      CHECK(p.chunk_grad.block.x == kScanBackwardThreads);
      CHECK(p.chunk_grad.dynamic_shared_bytes == sizeof(float) * (staging + Q));
      CHECK(p.group_sum.grid.x * kScanThreads >= unsigned(3 * std::max(L, 1) * 2 * 5));
      CHECK(p.reduce_A.grid.x * p.reduce_A.block.x >= 6u);
      CHECK(p.head_values == std::size_t(3) * L * 6 * 5);
      CHECK(p.backward_workspace == 3 * p.chunk_decays + p.state_values + 2 * p.head_values);
      for (const LaunchShape& shape : {p.chunk_states, p.state_passing, p.chunk_grad, p.backward_chunk, p.group_sum, p.reduce_A})
        CHECK_NOTHROW(check_launch_shape("scan", shape));
      const ConverterPlan c = converter_plan(s);
      CHECK(c.forward_workspace == 2 * p.state_values + p.chunk_decays);
      CHECK(c.backward_workspace == c.forward_workspace + std::size_t(3) * 24 * 5 + p.backward_workspace);
    }
  CHECK(scan_plan({1, 8, 48, 64, 8, 128, 128}).backward_chunk.dynamic_shared_bytes <= kMaxDynamicShared);
  // The bf16 forward's tensor-core kernels at the paper's size: a (chunk, group) block for stages 3+4, tiles of 16.
  const ScanPlan paper = scan_plan({1, 8192, 48, 64, 8, 128, 128});
  CHECK(paper.bf16_output.dynamic_shared_bytes <= kMaxDynamicShared);
  CHECK(paper.bf16_chunk_states.dynamic_shared_bytes <= kMaxDynamicShared);
  CHECK(paper.bf16_output.grid.x == 64);
  CHECK(paper.bf16_output.grid.y == 8);
  CHECK(scan_tile(1) == 16);
  CHECK(scan_tile(16) == 16);
  CHECK(scan_tile(17) == 32);
  CHECK_THROWS_WITH(scan_plan({1, 8, 4, 2, 1, 4, 129}), "scan: chunk size Q=129 is not supported (1 <= Q <= 128)");
  CHECK_THROWS_WITH(scan_plan({1, 8, 4, 2, 3, 4, 8}), Catch::Contains("H % G == 0"));
}

// ---- the projections and the layer forward (cuda/projection.hpp, cuda/mixer.hpp) ---------------------------

namespace {
// D 16, E 32, H 2 (p 16), G 1, N 16, W 4, Q 4.
MixerConfig small_mixer() { return MixerConfig{16, 32, 2, 1, 16, 4, 4}; }
}  // namespace

TEST_CASE("mixer plan: every buffer's size, counted by hand; the device memory of one layer call", "[gpu][plan]") {
  // Bt 2, T 10, P 4: zxbcdt has 2·32 + 2·16 + 2 = 98 columns, xBC 32 + 32 = 64; a state H·p·N = 512 values;
  // the converter covers 1 chunk of 4 tokens, the scan 2 chunks (6 tokens).
  const MixerPlan p = mixer_plan({2, 10, 4, small_mixer()});
  CHECK(p.in_width == 98);
  CHECK(p.channels == 64);
  CHECK(p.u == 2 * 10 * 16);
  CHECK(p.zxbcdt == 2 * 10 * 98);
  CHECK(p.xBC == 2 * 10 * 64);
  CHECK(p.dt == 2 * 10 * 2);
  CHECK(p.A == 2);
  CHECK(p.lse == 2 * 1 * 4);
  CHECK(p.S0 == 2 * 512);
  CHECK(p.converter_chunk_states == 2 * 1 * 512);
  CHECK(p.converter_start_states == 2 * 1 * 512);
  CHECK(p.converter_chunk_decays == 2 * 1 * 2);
  CHECK(p.chunk_states == 2 * 2 * 512);
  CHECK(p.start_states == 2 * 2 * 512);
  CHECK(p.chunk_decays == 2 * 2 * 2);
  CHECK(p.y == 2 * 10 * 32);
  CHECK(p.y_normed == 2 * 10 * 32);
  CHECK(p.out == 2 * 10 * 16);
  CHECK(p.final_state == 2 * 512);
  CHECK(p.total_floats() == 13414);
  CHECK(mixer_forward_device_bytes({2, 10, 4, small_mixer()}) == 13414 * sizeof(float));
  // P = 0: no attention (no lse), no converter chunks; P = T: no scan chunks.
  const MixerPlan mamba = mixer_plan({2, 10, 0, small_mixer()}), attention = mixer_plan({2, 10, 10, small_mixer()});
  CHECK(mamba.lse == 0);
  CHECK(mamba.converter_chunk_states == 0);
  CHECK(mamba.chunk_states == 2 * 3 * 512);
  CHECK(attention.chunk_states == 0);
  CHECK(attention.converter_chunk_states == 2 * 3 * 512);
  CHECK(attention.lse == 2 * 10);
  // The paper's layer (D 1536, E 3072, H 48 x 64, G 8, N 128, Q 128) on one sequence of 8192 tokens, P = 4096:
  // 0.88 GiB, most of it zxbcdt (8192 x 8240), xBC, y, y_normed and the 64 chunks' states (2 x 64 x 3072 x 128).
  const MixerShape paper{1, 8192, 4096, MixerConfig::paper()};
  const std::size_t bytes = mixer_forward_device_bytes(paper);
  INFO("the paper's layer, Bt 1, T 8192, P 4096: " << bytes << " bytes = " << double(bytes) / (1 << 30) << " GiB");
  CHECK(bytes == 945959104);
}

TEST_CASE("mixer plan: bad shapes and unsupported sizes fail, naming the problem", "[gpu][errors]") {
  CHECK_THROWS_WITH(mixer_plan({1, 10, 11, small_mixer()}), "mixer: TransPoint P=11 is outside [0, T=10]");
  CHECK_THROWS_WITH(mixer_plan({1, 10, -1, small_mixer()}), "mixer: TransPoint P=-1 is outside [0, T=10]");
  CHECK_THROWS_WITH(mixer_plan({1, 0, 0, small_mixer()}), "mixer: T=0: a sequence must hold at least one token");
  CHECK_THROWS_WITH(mixer_plan({0, 4, 0, small_mixer()}), Catch::Contains("mixer: Bt=0 sequences"));
  MixerConfig c = small_mixer();
  c.H = 3;
  CHECK_THROWS_WITH(mixer_plan({1, 10, 4, c}), Catch::Contains("MixerConfig: E % H must be 0"));
  c = small_mixer();
  c.N = 8;  // attention takes N in {16, 32, 64, 128}; a layer without attention tokens (P = 0) takes any N
  CHECK_THROWS_WITH(mixer_plan({1, 10, 4, c}), "attention: N=8 is not supported (16, 32, 64 or 128)");
  CHECK_NOTHROW(mixer_plan({1, 10, 0, c}));
  c.N = 48;  // nor a size between them
  CHECK_THROWS_WITH(mixer_plan({1, 10, 1, c}), "attention: N=48 is not supported (16, 32, 64 or 128)");
  CHECK_NOTHROW(mixer_plan({1, 10, 0, c}));
  c = small_mixer();
  c.E = 2 * 8;  // p = 8: the head dim likewise
  CHECK_THROWS_WITH(mixer_plan({1, 10, 10, c}), "attention: p=8 is not supported (16, 32, 64 or 128)");
  CHECK_NOTHROW(mixer_plan({1, 10, 0, c}));
  CHECK_NOTHROW(mixer_plan({1, 10, 0, MixerConfig{16, 2 * 128, 2, 1, 128, 4, 4}}));  // the largest: N = p = 128
  CHECK_NOTHROW(mixer_plan({1, 10, 4, MixerConfig{16, 2 * 128, 2, 1, 128, 4, 4}}));
  c = small_mixer();
  c.chunk = 129;
  CHECK_THROWS_WITH(mixer_plan({1, 10, 4, c}), Catch::Contains("scan: chunk size Q=129 is not supported"));
  c = small_mixer();
  c.W = 33;
  CHECK_THROWS_WITH(mixer_plan({1, 10, 4, c}), Catch::Contains("conv: width W=33 is not supported"));
  CHECK_THROWS_WITH(check_linear_shape({4, 0, 3}), "linear: rows=4, n=0, m=3 (need rows >= 0, n >= 1, m >= 1)");
}

#ifdef TM_HAVE_EMULATION
namespace {
// Fixed inputs of one scan shape on a device: x, dt, A, B, C, S_init, d_y, d_final_state.
struct ScanFixture {
  ScanShape s;
  ScanPlan plan;
  DeviceBuffer<float> x, dt, A, B, C, S_init, d_y, d_final, final_state, chunk_states, start_states, decays, d_x, d_dt, d_B, d_C,
      d_A, d_S_init, workspace;
  static std::vector<float> values(std::size_t n, float f, float lo = -1, float hi = 1) {
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = lo + (hi - lo) * (0.5f + 0.5f * std::sin(f * float(i) + 0.3f));
    return h;
  }
  ScanFixture(const Device& dev, const ScanShape& shape)
      : s(shape),
        plan(scan_plan(shape)),
        x(dev, values(std::size_t(s.Bt) * s.L * s.H * s.p, 0.37f)),
        dt(dev, values(std::size_t(s.Bt) * s.L * s.H, 0.71f, 0.05f, 1.3f)),
        A(dev, values(std::size_t(s.H), 0.9f, -2.5f, -0.4f)),
        B(dev, values(std::size_t(s.Bt) * s.L * s.G * s.N, 0.73f)),
        C(dev, values(std::size_t(s.Bt) * s.L * s.G * s.N, 0.19f)),
        S_init(dev, values(std::size_t(s.Bt) * s.H * s.p * s.N, 0.43f)),
        d_y(dev, values(std::size_t(s.Bt) * s.L * s.H * s.p, 0.29f)),
        d_final(dev, values(std::size_t(s.Bt) * s.H * s.p * s.N, 0.53f)),
        final_state(dev, std::size_t(s.Bt) * s.H * s.p * s.N),
        chunk_states(dev, plan.state_values),
        start_states(dev, plan.state_values),
        decays(dev, plan.chunk_decays),
        d_x(dev, std::size_t(s.Bt) * s.L * s.H * s.p),
        d_dt(dev, std::size_t(s.Bt) * s.L * s.H),
        d_B(dev, std::size_t(s.Bt) * s.L * s.G * s.N),
        d_C(dev, std::size_t(s.Bt) * s.L * s.G * s.N),
        d_A(dev, std::size_t(s.H)),
        d_S_init(dev, std::size_t(s.Bt) * s.H * s.p * s.N),
        workspace(dev, plan.backward_workspace) {}
  ScanForward forward() {
    return {s, x.view(), dt.view(), A.view(), B.view(), C.view(), S_init.view(), {}, final_state.view(), chunk_states.view(),
            start_states.view(), decays.view()};
  }
  ScanBackward backward() {
    ScanBackward b{};
    b.shape = s;
    b.x = x.view(), b.dt = dt.view(), b.A = A.view(), b.B = B.view(), b.C = C.view(), b.S_init = S_init.view();
    b.start_states = start_states.view(), b.d_y = d_y.view(), b.d_final_state = d_final.view();
    b.d_x = d_x.view(), b.d_dt = d_dt.view(), b.d_B = d_B.view(), b.d_C = d_C.view(), b.d_A = d_A.view();
    b.d_S_init = d_S_init.view(), b.workspace = workspace.view();
    return b;
  }
  // Every gradient, one after another.
  std::vector<float> gradients() const { return downloads({&d_x, &d_dt, &d_B, &d_C, &d_A, &d_S_init}); }
};
}  // namespace

TEST_CASE("scan backward and converter host API: bad arguments fail before any launch, naming the argument", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  ScanFixture f(dev, {2, 5, 4, 2, 2, 3, 2});  // x, d_x [2, 5, 8]; B [2, 5, 6]; 3 chunks
  ssm_chunked_forward(stream, f.forward());
  const ScanBackward good = f.backward();
  CHECK_NOTHROW(ssm_chunked_backward(stream, good));
  ScanBackward bad = good;
  bad.d_x = View<float>{};
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), "ssm_chunked_backward: d_x [2, 5, 8]: null pointer");
  bad = good;
  bad.workspace.size = f.plan.backward_workspace - 1;
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), Catch::Contains("ssm_chunked_backward: workspace [1, 1, " +
                                                                       std::to_string(f.plan.backward_workspace) + "]"));
  bad = good;
  bad.shape.L = 6;  // the buffers hold 5 tokens
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), "ssm_chunked_backward: x [2, 6, 8]: the buffer holds 80 values from this pointer, the shape needs 96");
  bad = good;
  bad.start_states = View<const float>{};
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), "ssm_chunked_backward: start_states [6, 8, 3]: null pointer");
  bad = good;
  bad.d_C = View<float>{};  // d_y is given: d_C is needed
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), "ssm_chunked_backward: d_C [2, 5, 6]: null pointer");
  bad.d_y = View<const float>{};  // without d_y neither d_C nor C is needed
  bad.C = View<const float>{};
  CHECK_NOTHROW(ssm_chunked_backward(stream, bad));
  bad = good;
  bad.d_B = View<float>{f.d_B.data(), 60, 0, 5};
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), "ssm_chunked_backward: d_B [2, 5, 6]: row stride 5 < cols: rows overlap");
  bad = good;
  bad.d_A.size = 3;
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), Catch::Contains("ssm_chunked_backward: d_A [1, 1, 4]"));
  bad = good;
  bad.D_skip = f.A.view(), bad.d_D_skip = f.d_A.view();  // H = 4 values each: E6's D skip and its gradient
  CHECK_NOTHROW(ssm_chunked_backward(stream, bad));
  bad.d_D_skip.size = 3;
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad),
                    "ssm_chunked_backward: d_D_skip [1, 1, 4]: the buffer holds 3 values from this pointer, the shape needs 4");
  bad.d_D_skip = View<float>{};
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad),
                    "ssm_chunked_backward: D_skip and d_D_skip are given together (one without the other)");
  bad.d_D_skip = f.d_A.view();
  bad.d_y = View<const float>{};
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), "ssm_chunked_backward: D_skip is given without d_y (it scales d_y)");
  bad = good;
  bad.shape.Q = 0;
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bad), Catch::Contains("chunk size Q=0 is not supported"));

  const ConverterPlan cp = converter_plan(f.s);
  DeviceBuffer<float> S0(dev, std::size_t(2) * 8 * 3), fw(dev, cp.forward_workspace), bw(dev, cp.backward_workspace);
  const ConverterForward cf{f.s, f.x.view(), f.dt.view(), f.A.view(), f.B.view(), S0.view(), fw.view()};
  CHECK_NOTHROW(memory_converter_forward(stream, cf));
  ConverterForward cf_bad = cf;
  cf_bad.workspace.size = cp.forward_workspace - 1;
  CHECK_THROWS_WITH(memory_converter_forward(stream, cf_bad), Catch::Contains("memory_converter_forward: workspace"));
  cf_bad = cf;
  cf_bad.S0 = View<float>{};
  CHECK_THROWS_WITH(memory_converter_forward(stream, cf_bad), "memory_converter_forward: S0 [2, 8, 3]: null pointer");
  const ConverterBackward cb{f.s, f.x.view(), f.dt.view(), f.A.view(), f.B.view(), S0.view(), f.d_x.view(), f.d_dt.view(),
                             f.d_B.view(), f.d_A.view(), bw.view()};
  CHECK_NOTHROW(memory_converter_backward(stream, cb));
  ConverterBackward cb_bad = cb;
  cb_bad.d_dt = View<float>{};
  CHECK_THROWS_WITH(memory_converter_backward(stream, cb_bad), "memory_converter_backward: d_dt [2, 5, 4]: null pointer");
  cb_bad = cb;
  cb_bad.workspace = fw.view();
  CHECK_THROWS_WITH(memory_converter_backward(stream, cb_bad), Catch::Contains("memory_converter_backward: workspace"));
  cb_bad = cb;
  cb_bad.d_S0 = View<const float>{};
  CHECK_THROWS_WITH(memory_converter_backward(stream, cb_bad), "memory_converter_backward: d_S0 [2, 8, 3]: null pointer");
}

TEST_CASE("scan and converter bf16 host API: null or undersized bf16 buffers and shapes the bf16 kernels do not take fail before any launch",
          "[gpu][errors][bf16]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  ScanFixture f(dev, {2, 5, 4, 2, 2, 3, 2});  // x, y, d_x [2, 5, 8]; B, C [2, 5, 6]; 3 chunks; the fp32 tensors from here
  auto bf16s = [&](std::size_t n) { return DeviceBuffer<Bf16>(dev, std::vector<Bf16>(n, to_bf16(0.25f))); };
  const DeviceBuffer<Bf16> x = bf16s(80), B = bf16s(60), C = bf16s(60), y = bf16s(80), d_y = bf16s(80), d_x = bf16s(80), d_B = bf16s(60),
                           d_C = bf16s(60);
  const ScanForwardBf16 fw{f.s, x.view(), f.dt.view(), f.A.view(), B.view(), C.view(), f.S_init.view(), y.view(),
                           f.final_state.view(), f.chunk_states.view(), f.start_states.view(), f.decays.view()};
  CHECK_NOTHROW(ssm_chunked_forward(stream, fw));
  ScanForwardBf16 fw_bad = fw;
  fw_bad.x = View<const Bf16>{};
  CHECK_THROWS_WITH(ssm_chunked_forward(stream, fw_bad), "ssm_chunked_forward: x [2, 5, 8]: null pointer");
  fw_bad = fw;
  fw_bad.y.size = 79;
  CHECK_THROWS_WITH(ssm_chunked_forward(stream, fw_bad),
                    "ssm_chunked_forward: y [2, 5, 8]: the buffer holds 79 values from this pointer, the shape needs 80");
  fw_bad = fw;
  fw_bad.C = View<const Bf16>{};  // y is wanted: C is read
  CHECK_THROWS_WITH(ssm_chunked_forward(stream, fw_bad), "ssm_chunked_forward: C [2, 5, 6]: null pointer");
  fw_bad = fw;
  fw_bad.D_skip = f.A.view();  // H = 4 values: a D skip of the right size
  CHECK_NOTHROW(ssm_chunked_forward(stream, fw_bad));
  fw_bad.D_skip.size = 3;
  CHECK_THROWS_WITH(ssm_chunked_forward(stream, fw_bad),
                    "ssm_chunked_forward: D_skip [1, 1, 4]: the buffer holds 3 values from this pointer, the shape needs 4");
  fw_bad.D_skip = f.A.view();
  fw_bad.y = View<Bf16>{};  // the final state only: no y to add the skip to
  CHECK_THROWS_WITH(ssm_chunked_forward(stream, fw_bad), "ssm_chunked_forward: D_skip is given without y (it is added to y)");
  fw_bad = fw;
  fw_bad.shape.N = 256, fw_bad.shape.p = 64, fw_bad.shape.Q = 128;  // the tensor-core tiles would not fit shared memory
  CHECK_THROWS_WITH(ssm_chunked_forward(stream, fw_bad), Catch::Contains("ssm_chunked_forward: bf16 tiles of Q=128, p=64, N=256 need"));
  fw_bad.y = View<Bf16>{};  // stage 1's tiles alone fit
  CHECK_THROWS_WITH(ssm_chunked_forward(stream, fw_bad), "ssm_chunked_forward: x [2, 5, 256]: the buffer holds 80 values from this pointer, the shape needs 2560");

  ScanBackwardBf16 bw{};
  bw.shape = f.s;
  bw.x = x.view(), bw.dt = f.dt.view(), bw.A = f.A.view(), bw.B = B.view(), bw.C = C.view(), bw.S_init = f.S_init.view();
  bw.start_states = f.start_states.view(), bw.d_y = d_y.view(), bw.d_final_state = f.d_final.view();
  bw.d_x = d_x.view(), bw.d_dt = f.d_dt.view(), bw.d_B = d_B.view(), bw.d_C = d_C.view(), bw.d_A = f.d_A.view();
  bw.d_S_init = f.d_S_init.view(), bw.workspace = f.workspace.view();
  CHECK_NOTHROW(ssm_chunked_backward(stream, bw));
  ScanBackwardBf16 bw_bad = bw;
  bw_bad.d_x = View<Bf16>{};
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bw_bad), "ssm_chunked_backward: d_x [2, 5, 8]: null pointer");
  bw_bad = bw;
  bw_bad.d_B.size = 59;
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bw_bad), Catch::Contains("ssm_chunked_backward: d_B [2, 5, 6]: the buffer holds 59"));
  bw_bad = bw;
  bw_bad.d_y.size = 40;
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bw_bad), Catch::Contains("ssm_chunked_backward: d_y [2, 5, 8]: the buffer holds 40"));
  bw_bad = bw;
  bw_bad.shape.G = 3;
  CHECK_THROWS_WITH(ssm_chunked_backward(stream, bw_bad), Catch::Contains("H % G == 0"));

  const ConverterPlan cp = converter_plan(f.s);
  DeviceBuffer<float> S0(dev, std::size_t(2) * 8 * 3), fws(dev, cp.forward_workspace), bws(dev, cp.backward_workspace);
  const ConverterForwardBf16 cf{f.s, x.view(), f.dt.view(), f.A.view(), B.view(), S0.view(), fws.view()};
  CHECK_NOTHROW(memory_converter_forward(stream, cf));
  ConverterForwardBf16 cf_bad = cf;
  cf_bad.B = View<const Bf16>{};
  CHECK_THROWS_WITH(memory_converter_forward(stream, cf_bad), "memory_converter_forward: B [2, 5, 6]: null pointer");
  cf_bad = cf;
  cf_bad.x.size = 79;
  CHECK_THROWS_WITH(memory_converter_forward(stream, cf_bad), Catch::Contains("memory_converter_forward: x [2, 5, 8]: the buffer holds 79"));
  const ConverterBackwardBf16 cb{f.s, x.view(), f.dt.view(), f.A.view(), B.view(), S0.view(), d_x.view(), f.d_dt.view(),
                                 d_B.view(), f.d_A.view(), bws.view()};
  CHECK_NOTHROW(memory_converter_backward(stream, cb));
  ConverterBackwardBf16 cb_bad = cb;
  cb_bad.d_x = View<Bf16>{};
  CHECK_THROWS_WITH(memory_converter_backward(stream, cb_bad), "memory_converter_backward: d_x [2, 5, 8]: null pointer");
  cb_bad = cb;
  cb_bad.d_B.size = 30;
  CHECK_THROWS_WITH(memory_converter_backward(stream, cb_bad), Catch::Contains("memory_converter_backward: d_B [2, 5, 6]: the buffer holds 30"));
}

TEST_CASE("scan backward: bitwise the same gradients on every call and in every thread order", "[gpu][determinism]") {
  for (const ScanShape s : {ScanShape{3, 37, 6, 4, 2, 5, 8}, ScanShape{2, 20, 2, 3, 1, 4, 128}}) {
    std::vector<std::vector<float>> results;
    for (std::uint64_t seed : {0, 0, 1, 2, 3}) {
      const Device dev = Device::emulated(seed);
      Stream stream(dev);
      ScanFixture f(dev, s);
      ssm_chunked_forward(stream, f.forward());
      ssm_chunked_backward(stream, f.backward());
      results.push_back(f.gradients());
    }
    for (std::size_t i = 1; i < results.size(); ++i) CHECK(results[0] == results[i]);
  }
}

namespace {
std::vector<float> wave(std::size_t n, float freq, float scale = 1, float offset = 0) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = offset + scale * std::sin(freq * float(i) + 0.3f);
  return v;
}
// A layer's parameters on a device, from smooth deterministic values.
struct WaveParams {
  DeviceBuffer<float> W_in, conv_w, conv_b, dt_bias, A_log, D_skip, norm_w, W_out;
  WaveParams(const Device& dev, const MixerConfig& c)
      : W_in(dev, wave(std::size_t(c.D) * c.in_proj_width(), 0.37f)), conv_w(dev, wave(std::size_t(c.conv_channels()) * c.W, 0.11f)),
        conv_b(dev, wave(c.conv_channels(), 0.7f, 0.3f)), dt_bias(dev, wave(c.H, 1.1f, 1, -1)), A_log(dev, wave(c.H, 0.9f)),
        D_skip(dev, wave(c.H, 0.5f)), norm_w(dev, wave(c.E, 0.2f, 0.5f, 1)), W_out(dev, wave(std::size_t(c.E) * c.D, 0.23f)) {}
  MixerDeviceParams views() const {
    return {W_in.view(), conv_w.view(), conv_b.view(), dt_bias.view(), A_log.view(), D_skip.view(), norm_w.view(), W_out.view()};
  }
};
bool all_nan(const DeviceBuffer<float>& b) {
  const std::vector<float> v = b.download();
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}
}  // namespace

TEST_CASE("projection host API: bad arguments fail before the GEMM, naming the argument", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  DeviceBuffer<float> in(dev, 24), W(dev, 20), out(dev, 30), small(dev, 19);
  const LinearForward good{{6, 4, 5}, in.view(), W.view(), out.view()};
  LinearForward bad = good;
  bad.W = small.view();
  CHECK_THROWS_WITH(linear_forward(stream, bad), "linear_forward: W [1, 4, 5]: the buffer holds 19 values from this pointer, the shape needs 20");
  bad = good;
  bad.in = View<const float>{};
  CHECK_THROWS_WITH(linear_forward(stream, bad), "linear_forward: in [1, 6, 4]: null pointer");
  bad = good;
  bad.shape.m = 0;
  CHECK_THROWS_WITH(linear_forward(stream, bad), Catch::Contains("linear: rows=6, n=4, m=0"));
  CHECK(all_nan(out));
  DeviceBuffer<float> d_out(dev, 30), d_in(dev, 24);
  const LinearBackward backward{{6, 4, 5}, in.view(), W.view(), d_out.view(), d_in.view(), small.view()};
  CHECK_THROWS_WITH(linear_backward(stream, backward), Catch::Contains("linear_backward: d_W [1, 4, 5]"));
  CHECK(all_nan(d_in));
}

TEST_CASE("mixer host API: bad arguments fail before any launch, naming the argument", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const MixerConfig c = small_mixer();
  const WaveParams prm(dev, c);
  MixerForwardDevice f(dev, {2, 10, 4, c});
  DeviceBuffer<float> short_W_in(dev, std::size_t(c.D) * c.in_proj_width() - 1);
  MixerDeviceParams bad = prm.views();
  bad.W_in = short_W_in.view();
  CHECK_THROWS_WITH(mixer_forward(stream, bad, f),
                    "mixer_forward: W_in [1, 16, 98]: the buffer holds 1567 values from this pointer, the shape needs 1568");
  bad = prm.views();
  bad.W_out = prm.norm_w.view();  // [E] where [E, D] belongs
  CHECK_THROWS_WITH(mixer_forward(stream, bad, f), Catch::Contains("mixer_forward: W_out [1, 32, 16]: the buffer holds 32 values"));
  bad = prm.views();
  bad.D_skip = View<const float>{};
  CHECK_THROWS_WITH(mixer_forward(stream, bad, f), "mixer_forward: D_skip [1, 1, 2]: null pointer");
  f.shape.P = 11;
  CHECK_THROWS_WITH(mixer_forward(stream, prm.views(), f), "mixer: TransPoint P=11 is outside [0, T=10]");
  f.shape.P = 4;
  f.shape.T = 12;  // changed after the buffers were made for T = 10
  CHECK_THROWS_WITH(mixer_forward(stream, prm.views(), f), Catch::Contains("mixer_forward: u [2, 12, 16]: the buffer holds 320 values"));
  f.shape.T = 10;
  MixerForwardDevice moved = std::move(f);
  CHECK_THROWS_WITH(mixer_forward(stream, prm.views(), f), "mixer_forward: u [2, 10, 16]: null pointer");
  for (const DeviceBuffer<float>* b : {&moved.zxbcdt, &moved.xBC, &moved.y, &moved.S0, &moved.out}) CHECK(all_nan(*b));  // nothing ran
}

TEST_CASE("bf16 mixer: its GEMM weight copies, its bytes, and bad arguments fail before any launch", "[gpu][errors][bf16]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const MixerConfig c = small_mixer();
  const WaveParams prm(dev, c);
  const MixerShape shape{2, 10, 4, c};
  MixerForwardDeviceBf16 f(dev, shape);
  MixerForwardDevice f32(dev, shape);
  CHECK(f.W_in_gemm.size() == std::size_t(c.D) * c.in_proj_width());  // [D, 2E + 2GN + H]
  CHECK(f.W_out_gemm.size() == std::size_t(c.E) * c.D);
  CHECK(f32.W_in_gemm.size() == 0);
  // Every buffer of the bf16 layer: the activations (u, zxbcdt, xBC, y, y_normed, out) and the weights' copies
  // in 2 bytes, the rest in 4, summed here from the buffers themselves.
  const std::size_t activations = f.u.size() + f.zxbcdt.size() + f.xBC.size() + f.y.size() + f.y_normed.size() + f.out.size();
  CHECK(mixer_forward_device_bytes<Bf16>(shape) ==
        mixer_forward_device_bytes<float>(shape) - 2 * activations + 2 * (f.W_in_gemm.size() + f.W_out_gemm.size()));
  MixerDeviceParams bad = prm.views();
  bad.W_out = View<const float>{};
  CHECK_THROWS_WITH(mixer_forward(stream, bad, f), "mixer_forward: W_out [1, 32, 16]: null pointer");
  MixerForwardDeviceBf16 moved = std::move(f);
  CHECK_THROWS_WITH(mixer_forward(stream, prm.views(), f), "mixer_forward: u [2, 10, 16]: null pointer");
  MixerGradsDeviceBf16 g(dev, {2, 10, 5, c});
  CHECK_THROWS_WITH(mixer_backward(stream, prm.views(), moved, g),
                    "mixer_backward: the gradients' shape (g.shape) is not the forward's (f.shape)");
}

TEST_CASE("mixer forward and backward: bitwise the same result on every call and in every thread order", "[gpu][determinism]") {
  const MixerConfig c{8, 64, 4, 2, 16, 4, 8};  // p 16, two heads per group
  std::vector<std::vector<float>> results;
  for (std::uint64_t seed : {1, 1, 2}) {
    const Device dev = Device::emulated(seed);
    Stream stream(dev);
    const WaveParams prm(dev, c);
    MixerForwardDevice f(dev, {2, 37, 13, c});
    MixerGradsDevice g(dev, {2, 37, 13, c});
    f.u.upload(wave(f.u.size(), 0.61f, 2));
    g.d_out.upload(wave(g.d_out.size(), 0.29f, 1));
    for (int call = 0; call < 2; ++call) {
      mixer_forward(stream, prm.views(), f);
      mixer_backward(stream, prm.views(), f, g);
      std::vector<float> all;
      for (const DeviceBuffer<float>* b : {&f.out, &f.y, &f.y_normed, &f.lse, &f.S0, &f.chunk_states, &f.final_state, &g.d_u,
                                           &g.d_W_in, &g.d_conv_w, &g.d_conv_b, &g.d_dt_bias, &g.d_A_log, &g.d_D_skip,
                                           &g.d_norm_w, &g.d_W_out, &g.d_S0}) {
        const std::vector<float> part = b->download();
        all.insert(all.end(), part.begin(), part.end());
      }
      REQUIRE(std::none_of(all.begin(), all.end(), [](float x) { return std::isnan(x); }));
      results.push_back(all);
    }
  }
  for (std::size_t i = 1; i < results.size(); ++i) CHECK(results[0] == results[i]);
}

TEST_CASE("mixer backward plan: the gradients' sizes; the device memory of one layer backward", "[gpu][plan]") {
  // Bt 2, T 10, P 4 (as the forward's plan test).
  const MixerBackwardPlan p = mixer_backward_plan({2, 10, 4, small_mixer()});
  CHECK(p.d_out == 2 * 10 * 16);
  CHECK(p.d_W_in == 16 * 98);
  CHECK(p.d_conv_w == 64 * 4);
  CHECK(p.d_zxbcdt == 2 * 10 * 98);
  CHECK(p.d_xBC == 2 * 10 * 64);
  CHECK(p.d_S0 == 2 * 512);
  CHECK(p.attention_d_x == 2 * 4 * 32);
  CHECK(p.attention_d_B == 2 * 4 * 16);
  CHECK(p.workspace >= p.forward.scan.backward_workspace);
  CHECK(mixer_backward_device_bytes({2, 10, 4, small_mixer()}) == p.total_floats() * sizeof(float));
  const MixerBackwardPlan mamba = mixer_backward_plan({2, 10, 0, small_mixer()});
  CHECK(mamba.attention_d_x == 0);
  CHECK_THROWS_WITH(mixer_backward_plan({1, 10, 11, small_mixer()}), "mixer: TransPoint P=11 is outside [0, T=10]");
}

TEST_CASE("mixer backward host API: bad arguments fail before any launch, naming the argument", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const MixerConfig c = small_mixer();
  const WaveParams prm(dev, c);
  MixerForwardDevice f(dev, {2, 10, 4, c});
  MixerGradsDevice g(dev, {2, 10, 4, c});
  MixerDeviceParams bad = prm.views();
  bad.norm_w = View<const float>{};
  CHECK_THROWS_WITH(mixer_backward(stream, bad, f, g), "mixer_backward: norm_w [1, 1, 32]: null pointer");
  MixerGradsDevice other(dev, {2, 10, 5, c});
  CHECK_THROWS_WITH(mixer_backward(stream, prm.views(), f, other),
                    "mixer_backward: the gradients' shape (g.shape) is not the forward's (f.shape)");
  g.shape.T = 12;  // both changed after the buffers were made for T = 10
  f.shape.T = 12;
  CHECK_THROWS_WITH(mixer_backward(stream, prm.views(), f, g), Catch::Contains("mixer_backward: u [2, 12, 16]: the buffer holds 320 values"));
  f.shape.T = g.shape.T = 10;
  MixerGradsDevice moved = std::move(g);
  CHECK_THROWS_WITH(mixer_backward(stream, prm.views(), f, g), "mixer_backward: d_out [2, 10, 16]: null pointer");
  MixerForwardDevice moved_f = std::move(f);
  CHECK_THROWS_WITH(mixer_backward(stream, prm.views(), f, moved), "mixer_backward: u [2, 10, 16]: null pointer");
  for (const DeviceBuffer<float>* b : {&moved.d_u, &moved.d_W_in, &moved.d_zxbcdt, &moved.d_xBC, &moved.d_S0, &moved.d_D_skip})
    CHECK(all_nan(*b));  // nothing ran
}
#endif

TEST_CASE("decode plan: the state's sizes counted by hand; the KV cache of the paper's layer", "[gpu][plan]") {
  // Bt 2, P 6: a cache row is [x | B] = 32 + 16 values, the conv window W - 1 = 3 rows of xBC (64), a state
  // H·p·N = 512 values; one token's scan is one chunk.
  const LayerStatePlan p = layer_state_plan({2, 6, small_mixer()});
  CHECK(p.cache_width == 48);
  CHECK(p.conv_window == 2 * 3 * 64);
  CHECK(p.kv_cache == 2 * 6 * 48);
  CHECK(p.scan_state == 2 * 512);
  CHECK(p.zxbcdt == 2 * 98);
  CHECK(p.xBC == 2 * 64);
  CHECK(p.lse == 2 * 1);
  CHECK(p.chunk_states == 2 * 1 * 512);
  CHECK(p.chunk_decays == 2 * 1 * 2);
  // 384 + 576 + 2·1024 (state, next) + 32 + 32 (u, out) + 196 + 128 + 4 + 2 (dt, A) + 64 + 64 + 2 + 2·1024 + 4
  CHECK(layer_state_device_bytes({2, 6, small_mixer()}) == 5584 * sizeof(float));
  CHECK(layer_state_plan({2, 0, small_mixer()}).kv_cache == 0);
  // The paper's layer, one sequence, every token of 8192 in attention: the cache holds 8192 x (3072 + 1024) floats.
  const std::size_t paper = layer_state_plan({1, 8192, MixerConfig::paper()}).kv_cache;
  INFO("the paper's KV cache at P = 8192: " << paper * sizeof(float) << " bytes");
  CHECK(paper == 8192ull * 4096);
  CHECK_THROWS_WITH(layer_state_plan({0, 6, small_mixer()}), Catch::Contains("layer state: Bt=0 sequences"));
  CHECK_THROWS_WITH(layer_state_plan({1, -1, small_mixer()}), "layer state: TransPoint P=-1 is negative");
  MixerConfig c = small_mixer();
  c.N = 8;  // attention takes N in {16, 32, 64, 128}: only a layer that never attends (P = 0) takes N = 8
  CHECK_THROWS_WITH(layer_state_plan({1, 6, c}), "attention: N=8 is not supported (16, 32, 64 or 128)");
  CHECK_NOTHROW(layer_state_plan({1, 0, c}));
  // Attention's queries may start inside the keys (decode: the last token alone), in the forward only.
  CHECK(attention_plan({2, 9, 4, 2, 16, 16, 8}).lse == 2 * 2 * 1);
  CHECK(attention_plan({2, 9, 4, 2, 16, 16, 8}).forward.grid.x == 1);
  CHECK_THROWS_WITH(attention_plan({2, 9, 4, 2, 16, 16, 9}), "attention: first_query=9 is outside [0, P=9)");
  CHECK_THROWS_WITH(attention_plan({2, 9, 4, 2, 16, 16, -1}), "attention: first_query=-1 is outside [0, P=9)");
}

#ifdef TM_HAVE_EMULATION
TEST_CASE("device copies: a strided block copied and zeroed, views checked first", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  // src [2, 3, 5] with rows of 7, its columns 1..3 copied into dst [2, 3, 3] with rows of 4 and sequences of 13.
  DeviceBuffer<float> src(dev, wave(42, 0.5f)), dst(dev, 26);
  copy_block<float>(stream, "test", src.view_at(1, 21, 7), dst.view(13, 4), 2, 3, 3);
  zero_block<float>(stream, "test", dst.view_at(3, 13, 4), 2, 3, 1);  // the padding column
  const std::vector<float> s = src.download(), d = dst.download();
  for (int b = 0; b < 2; ++b)
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 3; ++c) CHECK(d[b * 13 + r * 4 + c] == s[b * 21 + r * 7 + 1 + c]);
      CHECK(d[b * 13 + r * 4 + 3] == 0.0f);
    }
  CHECK(std::isnan(d[12]));  // between the sequences: untouched
  CHECK_THROWS_WITH(copy_block<float>(stream, "test", src.view_at(1, 21, 7), dst.view_at(3, 13, 4), 2, 3, 3),
                    "test: copy destination [2, 3, 3]: the buffer holds 23 values from this pointer, the shape needs 24");
  CHECK_THROWS_WITH(zero_block<float>(stream, "test", View<float>{}, 1, 1, 1), "test: zeroed block [1, 1, 1]: null pointer");
}

TEST_CASE("decode host API: bad arguments fail before any launch, naming the argument", "[gpu][errors]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const MixerConfig c = small_mixer();
  const WaveParams prm(dev, c);
  LayerState state(dev, {2, 6, c});
  CHECK_THROWS_WITH(mixer_step(stream, prm.views(), state), "mixer_step: the state was not prefilled (prefill_layer)");
  MixerForwardDevice prompt(dev, {2, 4, 4, c}), wrong_P(dev, {2, 8, 8, c}), wrong_Bt(dev, {1, 4, 4, c});
  prompt.u.upload(wave(prompt.u.size(), 0.3f));
  mixer_forward(stream, prm.views(), prompt);
  CHECK_THROWS_WITH(prefill_layer(stream, wrong_P, state),
                    "prefill_layer: the prompt of T0=8 tokens ran with P=8, the state's layer needs min(P, T0)=6");
  CHECK_THROWS_WITH(prefill_layer(stream, wrong_Bt, state), Catch::Contains("prefill_layer: the prompt's layer (Bt=1"));
  prefill_layer(stream, prompt, state);
  CHECK(state.position == 4);
  MixerDeviceParams bad = prm.views();
  bad.W_out = View<const float>{};
  CHECK_THROWS_WITH(mixer_step(stream, bad, state), "mixer_step: W_out [1, 32, 16]: null pointer");
  state.u = DeviceBuffer<float>(dev, 31);
  CHECK_THROWS_WITH(mixer_step(stream, prm.views(), state),
                    "mixer_step: u [2, 1, 16]: the buffer holds 31 values from this pointer, the shape needs 32");
  CHECK(state.position == 4);  // nothing ran
  DeviceBuffer<float> window(dev, 2 * 3 * 64), v(dev, 2 * 64), w(dev, 64 * 4), b(dev, 64), out(dev, 2 * 64);
  ConvStep step{{2, 1, 64, 4}, window.view(), v.view(), w.view(), b.view(), out.view()};
  step.shape.T = 2;
  CHECK_THROWS_WITH(conv_silu_step(stream, step), "conv_silu_step: T=2 (a step takes one token)");
  step.shape.T = 1;
  step.window = View<float>{window.data(), 2 * 2 * 64, 0, 0};
  CHECK_THROWS_WITH(conv_silu_step(stream, step), Catch::Contains("conv_silu_step: window [2, 3, 64]: the buffer holds 256 values"));
  const AttentionShape query_tile{2, 4, 2, 1, 16, 16, 3};
  DeviceBuffer<float> any(dev, 1024);
  CHECK_THROWS_WITH(attention_backward(stream, {query_tile, any.view(), any.view(), any.view(), any.view(), any.view(),
                                                any.view(), any.view(), any.view(), any.view()}),
                    "attention_backward: first_query=3: the backward takes every query (first_query = 0)");
}

TEST_CASE("decode: bitwise the same outputs on every call and in every thread order; the cache freed past P", "[gpu][determinism]") {
  const MixerConfig c{8, 64, 4, 2, 16, 4, 8};
  std::vector<std::vector<float>> results;
  for (std::uint64_t seed : {1, 1, 2}) {
    const Device dev = Device::emulated(seed);
    Stream stream(dev);
    const WaveParams prm(dev, c);
    MixerForwardDevice prompt(dev, {2, 5, 5, c});
    prompt.u.upload(wave(prompt.u.size(), 0.61f, 2));
    mixer_forward(stream, prm.views(), prompt);
    LayerState state(dev, {2, 7, c});
    prefill_layer(stream, prompt, state);
    std::vector<float> all;
    for (int t = 5; t < 9; ++t) {  // tokens 5, 6 attend; 7, 8 scan
      state.u.upload(wave(state.u.size(), 0.17f * float(t), 1.5f));
      mixer_step(stream, prm.views(), state);
      CHECK(state.kv_cache.size() == (t < 7 ? std::size_t(2 * 7 * (64 + 32)) : 0));
      const std::vector<float> out = downloads({&state.out, &state.scan_state, &state.conv_window});
      all.insert(all.end(), out.begin(), out.end());
    }
    REQUIRE(std::none_of(all.begin(), all.end(), [](float x) { return std::isnan(x); }));
    results.push_back(all);
  }
  for (std::size_t i = 1; i < results.size(); ++i) CHECK(results[0] == results[i]);
}
#endif

TEST_CASE("bf16: to_bf16 rounds to the nearest bf16, ties to even; to_float is exact", "[gpu][bf16]") {
  auto bits = [](float f) { return to_bf16(f).bits; };
  CHECK(bits(1.0f) == 0x3f80);
  CHECK(bits(-2.0f) == 0xc000);
  CHECK(bits(0.0f) == 0x0000);
  CHECK(bits(-0.0f) == 0x8000);
  // 7 mantissa bits: the ulp of [1, 2) is 2^-7. Half an ulp ties to the even neighbour.
  CHECK(to_float(to_bf16(1.0f + 0x1p-8f)) == 1.0f);                 // 1 + ulp/2 -> 1 (even)
  CHECK(to_float(to_bf16(1.0f + 3 * 0x1p-8f)) == 1.0f + 0x1p-6f);   // 1 + 3 ulp/2 -> 1 + 2 ulp (even)
  CHECK(to_float(to_bf16(1.0f + 0x1p-8f + 0x1p-20f)) == 1.0f + 0x1p-7f);  // just above the tie: up
  CHECK(to_float(to_bf16(1.0f + 0x1p-8f - 0x1p-20f)) == 1.0f);            // just below: down
  CHECK(to_float(to_bf16(3.14159265f)) == 3.140625f);
  CHECK(std::isinf(to_float(to_bf16(std::numeric_limits<float>::max()))));  // rounds past the largest bf16
  CHECK(std::isinf(to_float(to_bf16(std::numeric_limits<float>::infinity()))));
  CHECK(std::isnan(to_float(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(to_float(to_bf16(-std::numeric_limits<float>::signaling_NaN()))));
  CHECK(to_float(to_bf16(0x1p-133f)) == 0x1p-133f);  // subnormals are kept
  CHECK(from_float<float>(1.0f + 0x1p-8f) == 1.0f + 0x1p-8f);
  CHECK(from_float<Bf16>(1.0f + 0x1p-8f).bits == 0x3f80);
  for (std::uint32_t b = 0; b < 0x10000; b += 7) {  // every finite bf16 converts to float and back unchanged
    const Bf16 v{std::uint16_t(b)};
    if (std::isfinite(to_float(v))) CHECK(to_bf16(to_float(v)).bits == v.bits);
  }
}

TEST_CASE("bf16: the bound of DESIGN.md section 7 (2 x the float baseline's error + 1e-3, at most 2e-2)", "[gpu][bf16]") {
  CHECK(bounds::bf16_bound(0) == Approx(1e-3));
  CHECK(bounds::bf16_bound(2e-3) == Approx(5e-3));
  CHECK(bounds::bf16_bound(0.5) == bounds::kBf16Ceiling);
  const Eigen::MatrixXd truth = Eigen::MatrixXd::Constant(4, 4, 1.0);
  const Eigen::MatrixXd baseline = Eigen::MatrixXd::Constant(4, 4, 1.004);  // rel 4e-3: bound 9e-3
  const Comparison near = compare_to_baseline("y", Eigen::MatrixXd::Constant(4, 4, 1.008), truth, baseline);
  CHECK(near.bound == Approx(9e-3));
  CHECK(near.passed());
  CHECK_FALSE(compare_to_baseline("y", Eigen::MatrixXd::Constant(4, 4, 1.01), truth, baseline).passed());
  Eigen::MatrixXd broken = baseline;
  broken(1, 2) = NAN;
  CHECK_FALSE(compare_to_baseline("y", truth, truth, broken).passed());  // a baseline that is not finite fails
}

TEST_CASE("bf16: a kernel check's dtype and family come from its name", "[gpu][bf16]") {
  Check bf16{"emulated.attention.bf16", "", 1, {}};
  Check fp32{"cuda.attention", "", 1, {}};
  CHECK(bf16.dtype() == "bf16");
  CHECK(bf16.family() == "attention");
  CHECK(bf16.suite() == "emulated");
  CHECK(fp32.dtype() == "fp32");
  CHECK(fp32.family() == "attention");
  CHECK(Check{"ssm.forms_equal", "", 1, {}}.family() == "forms_equal");
}

// ---- the bf16 overloads of the element-wise families and the GEMM ----------------------------------------

namespace {
// Whether gpu::gemm takes a GEMM of these dtypes (blas.hpp: the others are deleted).
template <class G, class = void>
struct gemm_takes : std::false_type {};
template <class G>
struct gemm_takes<G, std::void_t<decltype(gemm(std::declval<const Stream&>(), std::declval<const G&>()))>> : std::true_type {};
}  // namespace

TEST_CASE("bf16 conv and step size host API: a null or too small bf16 buffer fails before any launch", "[gpu][errors][bf16]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const ConvShape s{2, 10, 6, 4};
  DeviceBuffer<Bf16> v(dev, 120), out(dev, 120), small(dev, 119), window(dev, 36);
  DeviceBuffer<float> w(dev, 24), b(dev, 6), d_w(dev, 24), d_b(dev, 6), ws(dev, conv_plan(s).workspace);
  const ConvForwardBf16 good{s, v.view(), w.view(), b.view(), out.view()};
  ConvForwardBf16 bad = good;
  bad.out = small.view();
  CHECK_THROWS_WITH(conv_silu_forward(stream, bad),
                    "conv_silu_forward: out [2, 10, 6]: the buffer holds 119 values from this pointer, the shape needs 120");
  bad = good;
  bad.v = View<const Bf16>{};
  CHECK_THROWS_WITH(conv_silu_forward(stream, bad), "conv_silu_forward: v [2, 10, 6]: null pointer");
  bad = good;
  bad.v = View<const Bf16>{reinterpret_cast<const Bf16*>(reinterpret_cast<const char*>(v.data()) + 1), 100, 0, 0};
  CHECK_THROWS_WITH(conv_silu_forward(stream, bad), "conv_silu_forward: v [2, 10, 6]: pointer not aligned to 2 bytes");
  bad = good;
  bad.shape.W = 40;
  CHECK_THROWS_WITH(conv_silu_forward(stream, bad), "conv: width W=40 is not supported (1 <= W <= 32)");
  ConvBackwardBf16 back{s, v.view(), w.view(), b.view(), out.view(), small.view(), d_w.view(), d_b.view(), ws.view()};
  CHECK_THROWS_WITH(conv_silu_backward(stream, back), Catch::Contains("conv_silu_backward: d_v [2, 10, 6]: the buffer holds 119"));
  back.d_v = out.view();
  back.d_out = View<const Bf16>{};
  CHECK_THROWS_WITH(conv_silu_backward(stream, back), "conv_silu_backward: d_out [2, 10, 6]: null pointer");
  const ConvShape one{2, 1, 6, 4};
  ConvStepBf16 step{one, window.view(), v.view(), w.view(), b.view(), View<Bf16>{}};
  CHECK_THROWS_WITH(conv_silu_step(stream, step), "conv_silu_step: out [2, 1, 6]: null pointer");
  step.out = out.view();
  step.window = View<Bf16>{window.data(), 35, 0, 0};
  CHECK_THROWS_WITH(conv_silu_step(stream, step), Catch::Contains("conv_silu_step: window [2, 3, 6]: the buffer holds 35 values"));

  DeviceBuffer<float> h(dev, 6), dt(dev, 120), step_ws(dev, step_size_plan({2, 10, 6}).workspace);
  StepSizeForwardBf16 fwd{{2, 10, 6}, small.view(), h.view(), h.view(), dt.view(), h.view()};
  CHECK_THROWS_WITH(step_size_forward(stream, fwd), "step_size_forward: dt_raw [2, 10, 6]: the buffer holds 119 values from this pointer, the shape needs 120");
  fwd.dt_raw = View<const Bf16>{};
  CHECK_THROWS_WITH(step_size_forward(stream, fwd), "step_size_forward: dt_raw [2, 10, 6]: null pointer");
  StepSizeBackwardBf16 sb{{2, 10, 6}, v.view(), h.view(), h.view(), dt.view(), h.view(), small.view(), h.view(), h.view(), step_ws.view()};
  CHECK_THROWS_WITH(step_size_backward(stream, sb), Catch::Contains("step_size_backward: d_dt_raw [2, 10, 6]: the buffer holds 119"));
  sb.d_dt_raw = View<Bf16>{};
  CHECK_THROWS_WITH(step_size_backward(stream, sb), "step_size_backward: d_dt_raw [2, 10, 6]: null pointer");
  sb.d_dt_raw = out.view();
  CHECK_NOTHROW(step_size_backward(stream, sb));
}

TEST_CASE("bf16 norm host API: a null or too small bf16 buffer fails before any launch", "[gpu][errors][bf16]") {
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  const NormShape s{2, 5, 12, 3};
  DeviceBuffer<Bf16> y(dev, 120), z(dev, 120), out(dev, 120), small(dev, 119);
  DeviceBuffer<float> w(dev, 12), d_w(dev, 12), ws(dev, norm_plan(s).workspace);
  const NormForwardBf16 good{s, y.view(), z.view(), w.view(), out.view()};
  NormForwardBf16 bad = good;
  bad.z = small.view();
  CHECK_THROWS_WITH(rmsnorm_forward(stream, bad), "rmsnorm_forward: z [2, 5, 12]: the buffer holds 119 values from this pointer, the shape needs 120");
  bad = good;
  bad.y = View<const Bf16>{};
  CHECK_THROWS_WITH(rmsnorm_forward(stream, bad), "rmsnorm_forward: y [2, 5, 12]: null pointer");
  bad = good;
  bad.shape.G = 5;
  CHECK_THROWS_WITH(rmsnorm_forward(stream, bad), Catch::Contains("12 channels do not split into 5 groups"));
  NormBackwardBf16 back{s, y.view(), z.view(), w.view(), out.view(), out.view(), View<Bf16>{}, d_w.view(), false, ws.view()};
  CHECK_THROWS_WITH(rmsnorm_backward(stream, back), "rmsnorm_backward: d_z [2, 5, 12]: null pointer");
  back.d_z = small.view();
  CHECK_THROWS_WITH(rmsnorm_backward(stream, back), Catch::Contains("rmsnorm_backward: d_z [2, 5, 12]: the buffer holds 119"));
  back.d_z = View<Bf16>{};
  back.z = View<const Bf16>{};
  CHECK_NOTHROW(rmsnorm_backward(stream, back));  // ungated
}

TEST_CASE("bf16 projection and GEMM host API: bad buffers fail before the GEMM; unsupported dtypes do not compile", "[gpu][errors][bf16]") {
  // The dtype combinations of cublasGemmEx with CUBLAS_COMPUTE_32F that the project uses (blas.hpp); fp32
  // operands with a bf16 result, or any other combination, is refused at compile time.
  static_assert(gemm_takes<Gemm>::value && gemm_takes<GemmBf16>::value && gemm_takes<GemmBf16ToF32>::value);
  static_assert(!gemm_takes<GemmT<float, Bf16>>::value, "fp32 operands with a bf16 result: no such cublasGemmEx");
  static_assert(!gemm_takes<GemmT<double, double>>::value);
  const Device dev = Device::emulated(1);
  Stream stream(dev);
  DeviceBuffer<Bf16> in(dev, 24), W(dev, 20), out(dev, 30), small(dev, 19), d_out(dev, 30), d_in(dev, 24);
  DeviceBuffer<float> d_W(dev, 20), d_W_small(dev, 19);
  const LinearForwardBf16 good{{6, 4, 5}, in.view(), W.view(), out.view()};
  LinearForwardBf16 bad = good;
  bad.W = small.view();
  CHECK_THROWS_WITH(linear_forward(stream, bad), "linear_forward: W [1, 4, 5]: the buffer holds 19 values from this pointer, the shape needs 20");
  bad = good;
  bad.in = View<const Bf16>{};
  CHECK_THROWS_WITH(linear_forward(stream, bad), "linear_forward: in [1, 6, 4]: null pointer");
  LinearBackwardBf16 back{{6, 4, 5}, in.view(), W.view(), d_out.view(), d_in.view(), d_W_small.view()};
  CHECK_THROWS_WITH(linear_backward(stream, back), Catch::Contains("linear_backward: d_W [1, 4, 5]"));
  back.d_W = d_W.view();
  back.d_in = View<Bf16>{};
  CHECK_THROWS_WITH(linear_backward(stream, back), "linear_backward: d_in [1, 6, 4]: null pointer");
  // The GEMM itself: a bf16 C too small, a null bf16 B.
  GemmBf16 g{Transpose::no, Transpose::no, 5, 6, 4, 1.0f, 0.0f, W.data(), 20, 5, in.data(), 24, 4, out.data(), 29, 5};
  CHECK_THROWS_WITH(gemm(stream, g), "gemm: C (5 x 6, ld 5): the buffer holds 29 values, the matrix needs 30");
  GemmBf16ToF32 gw{Transpose::no, Transpose::yes, 5, 4, 6, 1.0f, 0.0f, d_out.data(), 30, 5, nullptr, 24, 4, d_W.data(), 20, 5};
  CHECK_THROWS_WITH(gemm(stream, gw), "gemm: B (4 x 6, ld 4): null pointer");
}
