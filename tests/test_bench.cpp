// tm-bench's cost model (tools/bench/kernel_cost.hpp): the FLOPs and bytes of each kernel counted by hand on a
// small layer, the edges P = 0 and P = T, and the floor's arithmetic. Its timing run's CPU side
// (tools/bench/report.hpp, layer_timing.hpp): the statistics, the V9 mean and ratio by hand, the refusal rule,
// the table and JSON, and the loop itself under the emulation.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>
#include <string>

#include "tools/bench/kernel_cost.hpp"
#include "tools/bench/layer_timing.hpp"
#include "tools/bench/report.hpp"

using namespace transmamba;
using namespace transmamba::bench;

namespace {
const KernelCost& kernel(const std::vector<KernelCost>& ks, const std::string& name) {
  for (const KernelCost& k : ks)
    if (k.name == name) return k;
  FAIL("no kernel " << name);
  return ks.front();
}
}  // namespace

TEST_CASE("kernel costs: the FLOPs of each kernel counted by hand", "[bench]") {
  // D 4, E 8 (H 2 x p 4), G 1, N 4, W 2, Q 4; one sequence of T 6 tokens, P 3: zxbcdt has 2·8 + 2·4 + 2 = 26
  // columns, xBC 16; attention's causal pairs 3·4/2 = 6; the scan's 3 tokens are one chunk of 6 pairs.
  const MixerConfig c{4, 8, 2, 1, 4, 2, 4};
  const auto ks = layer_kernel_costs(c, 1, 6, 3, 2);
  CHECK(kernel(ks, "in_proj").forward.flops == 2 * 6 * 4 * 26);
  CHECK(kernel(ks, "in_proj").backward.flops == 4 * 6 * 4 * 26);
  CHECK(kernel(ks, "in_proj").forward.bytes == (6 * 4 + 4 * 26 + 6 * 26) * 2);
  CHECK(kernel(ks, "conv").forward.flops == 2 * 6 * 16 * 2);
  CHECK(kernel(ks, "attention").forward.flops == 2 * 6 * 4 + 2 * 6 * 8);           // scores once per group + values
  CHECK(kernel(ks, "attention").backward.flops == 3 * (2 * 6 * 4) + 2 * (2 * 6 * 8));
  CHECK(kernel(ks, "converter").forward.flops == 2 * 3 * 8 * 4);
  CHECK(kernel(ks, "scan").forward.flops == 2 * 6 * (4 + 8) + 4 * 3 * 8 * 4);
  CHECK(kernel(ks, "out_proj").forward.flops == 2 * 6 * 8 * 4);
  CHECK(kernel(ks, "norm").forward.flops == 0);
  // Two sequences: twice every activation term, the parameters once.
  const auto two = layer_kernel_costs(c, 2, 6, 3, 2);
  CHECK(kernel(two, "in_proj").forward.flops == 2 * kernel(ks, "in_proj").forward.flops);
  CHECK(kernel(two, "in_proj").forward.bytes == (2 * 6 * 4 + 4 * 26 + 2 * 6 * 26) * 2);
}

TEST_CASE("kernel costs: no attention at P = 0, no scan at P = T; chunks' causal pairs", "[bench]") {
  const MixerConfig c = MixerConfig::paper();
  const auto mamba = layer_kernel_costs(c, 1, 8192, 0, 2), transformer = layer_kernel_costs(c, 1, 8192, 8192, 2);
  CHECK(kernel(mamba, "attention").forward.flops == 0);
  CHECK(kernel(mamba, "attention").forward.bytes == 0);
  CHECK(kernel(mamba, "converter").forward.bytes == 0);
  CHECK(kernel(transformer, "scan").forward.flops == 0);
  CHECK(kernel(transformer, "scan").forward.bytes == 0);
  // The paper's attention at P = 8192: 8192·8193/2 pairs x 2 x (8 groups x 128 + 3072) FLOPs.
  CHECK(kernel(transformer, "attention").forward.flops == Approx(8192.0 * 8193 / 2 * 2 * (8 * 128 + 3072)).epsilon(1e-15));
  CHECK(chunk_pairs(10, 4) == 2 * 10 + 3);  // chunks of 4, 4, 2 tokens
  CHECK(chunk_pairs(0, 4) == 0);
  for (const auto& ks : {mamba, transformer})
    for (const KernelCost& k : ks) {
      CHECK(k.backward.flops >= k.forward.flops);
      CHECK(k.backward.bytes >= k.forward.bytes);
    }
}

TEST_CASE("kernel costs: the floor is the slower of compute and memory", "[bench]") {
  const Device d = h100_sxm();
  CHECK(Work{989e12, 0}.floor_s(d) == Approx(1.0));
  CHECK(Work{0, 3.35e12}.floor_s(d) == Approx(1.0));
  CHECK(Work{989e12, 2 * 3.35e12}.floor_s(d) == Approx(2.0));
}

// ---- the timing run's arithmetic and report (tools/bench/report.hpp) ----------------------------------------

TEST_CASE("bench stats: median of odd and even counts, min and max", "[bench]") {
  const Stats odd = summarize({3, 1, 2});
  CHECK(odd.median_ms == 2);
  CHECK(odd.min_ms == 1);
  CHECK(odd.max_ms == 3);
  CHECK(odd.reps == 3);
  CHECK(summarize({4, 1, 3, 2}).median_ms == 2.5);
  CHECK_THROWS_AS(summarize({}), std::invalid_argument);
}

TEST_CASE("bench V9: the mean over V9's clamped TransPoints and its ratio to P = T, by hand", "[bench]") {
  // T = 8192: V9 = 0, 128, ..., 8192, each once. Times t(P) = 1 + P / 1024 ms: the mean of
  // 1, 1.125, 1.25, 1.5, 2, 3, 5, 9 is 23.875 / 8 = 2.984375; P = T: 9; ratio 0.3315972...
  std::vector<std::pair<int, double>> ms;
  for (int P : {0, 128, 256, 512, 1024, 2048, 4096, 8192}) ms.emplace_back(P, 1 + P / 1024.0);
  const auto s = v9_summary(ms, 8192);
  REQUIRE(s);
  CHECK(s->mean_ms == Approx(2.984375));
  CHECK(s->full_ms == 9);
  CHECK(s->ratio == Approx(2.984375 / 9));
  // T = 2048: V9 clamps to 0, 128, 256, 512, 1024, 2048, 2048, 2048 (2048 three times, as the cost model
  // counts it): (1 + 2 + 3 + 4 + 5 + 3 x 6) / 8 = 33 / 8.
  const auto c = v9_summary({{0, 1}, {128, 2}, {256, 3}, {512, 4}, {1024, 5}, {2048, 6}}, 2048);
  REQUIRE(c);
  CHECK(c->mean_ms == Approx(33.0 / 8));
  CHECK(c->ratio == Approx(33.0 / 8 / 6));
  CHECK(v9_points(2048) == std::vector<int>{0, 128, 256, 512, 1024, 2048, 2048, 2048});
  // A point of V9 not timed: no mean.
  CHECK_FALSE(v9_summary({{0, 1}, {2048, 6}}, 2048));
}

TEST_CASE("bench refusal: bf16 without the bf16 layer, failed or missing checks", "[bench]") {
  const auto no_layer = timing_refusal("bf16", false, {{"cuda.conv.bf16", true}});
  REQUIRE(no_layer);
  CHECK(no_layer->find("the bf16 layer is not built yet") != std::string::npos);
  const auto failed = timing_refusal("fp32", false, {{"cuda.conv", true}, {"cuda.ssm", false}, {"cuda.mixer", false}});
  REQUIRE(failed);
  CHECK(failed->find("failed on this device: cuda.ssm, cuda.mixer") != std::string::npos);
  CHECK(timing_refusal("fp32", false, {})->find("no fp32 kernel checks") != std::string::npos);
  CHECK_FALSE(timing_refusal("fp32", false, {{"cuda.conv", true}, {"cuda.ssm", true}}));
  CHECK_FALSE(timing_refusal("bf16", true, {{"cuda.mixer.bf16", true}}));
}

TEST_CASE("bench report: table and JSON of a hand-made report", "[bench]") {
  BenchReport r;
  r.device = "test", r.backend = "emulated", r.dtype = "fp32", r.cfg = MixerConfig{4, 8, 2, 1, 4, 2, 4};
  r.T = 6, r.reps = 3, r.warmup = 1;
  // V9 at T = 6 is 0, 6, 6, ...: forward 1 ms at P = 0, 3 ms at P = 6: mean (1 + 7 x 3) / 8 = 2.75.
  for (int P : {0, 3, 6}) {
    PointTime p;
    p.P = P;
    p.forward = {1.0 + P / 3.0, 0.5, 4, 3};
    p.forward_backward = {2 * p.forward.median_ms, 1, 9, 3};
    p.kernels.push_back({"in_proj", {0.5, 0.4, 0.6, 3}, {1, 0.9, 1.1, 3}});
    r.points.push_back(p);
  }
  const nlohmann::json j = to_json(r);
  REQUIRE(j["P"].size() == 3);
  CHECK(j["P"][2]["P"] == 6);
  CHECK(j["P"][0]["forward"]["median_ms"] == 1.0);
  const auto& k = j["P"][0]["kernels"][0];
  CHECK(k["name"] == "in_proj");
  // in_proj forward of this layer at fp32: 2·6·4·26 FLOPs in 0.5 ms.
  CHECK(k["forward_flops"] == 2.0 * 6 * 4 * 26);
  CHECK(k["forward_tflops"].get<double>() == Approx(2.0 * 6 * 4 * 26 / 0.5e-3 / 1e12));
  CHECK(k["forward_gbps"].get<double>() == Approx((6 * 4 + 4 * 26 + 6 * 26) * 4 / 0.5e-3 / 1e9));
  CHECK(j["V9_mean"]["forward_ms"].get<double>() == Approx(2.75));
  CHECK(j["V9_mean"]["ratio_to_P_eq_T_forward"].get<double>() == Approx(2.75 / 3));
  CHECK_FALSE(j["V9_mean"].contains("baseline"));
  // With a baseline twice as slow everywhere, every speed-up is 2.
  for (const PointTime& p : r.points)
    r.baseline.push_back({p.P, {2 * p.forward.median_ms, 0, 0, 3}, {2 * p.forward_backward.median_ms, 0, 0, 3}, 1e-3, 2e-2});
  const nlohmann::json b = to_json(r);
  CHECK(b["P"][1]["baseline"]["forward_speedup"].get<double>() == Approx(2));
  CHECK(b["V9_mean"]["baseline"]["forward_backward_speedup"].get<double>() == Approx(2));
  char buf[8192] = {};
  std::FILE* f = fmemopen(buf, sizeof buf - 1, "w");
  print_table(r, f);
  std::fclose(f);
  const std::string table(buf);
  CHECK(table.find("P = 3: layer forward 2.000 ms") != std::string::npos);
  CHECK(table.find("V9 mean") != std::string::npos);
  CHECK(table.find("x = torch time / ours") != std::string::npos);
}

// The loop itself on the CPU emulation (host clocks: the structure, not the times) on a tiny layer with both
// attention and scan tokens.
TEST_CASE("bench timing loop under the emulation: every kernel family timed, out returned", "[bench]") {
  if (!gpu::emulation_compiled_in()) {
    WARN("skipped: no emulated kernels in this build");
    return;
  }
  const MixerConfig c{8, 32, 2, 1, 16, 4, 8};  // p = 16, N = 16: sizes the attention kernels take
  const LayerInputs in = make_inputs(c, 1, 12, 5);
  TimingOptions opt;
  opt.warmup = 1, opt.reps = 2;
  std::vector<float> out;
  const PointTime t = time_point(gpu::Device::emulated(1), c, 1, 12, 4, in, opt, &out);
  CHECK(t.P == 4);
  CHECK(t.forward.reps == 2);
  CHECK(t.forward.median_ms > 0);
  CHECK(t.forward_backward.min_ms <= t.forward_backward.max_ms);
  std::vector<std::string> names;
  for (const KernelTime& k : t.kernels) names.push_back(k.name);
  CHECK(names == std::vector<std::string>{"in_proj", "conv", "step_size", "attention", "converter", "scan", "norm", "out_proj"});
  REQUIRE(out.size() == 12u * 8);
  for (float v : out) CHECK(std::isfinite(v));
  // P = 0: no attention.
  opt.kernels = true;
  const PointTime mamba = time_point(gpu::Device::emulated(1), c, 1, 12, 0, in, opt);
  for (const KernelTime& k : mamba.kernels) CHECK(k.name != "attention");
  // The same seed gives the same inputs.
  CHECK(make_inputs(c, 1, 12, 5).u == in.u);
}

TEST_CASE("bench refusal: outcomes read from tm-verify's JSON", "[bench]") {
  const nlohmann::json verify = nlohmann::json::parse(R"({"seed": 1, "checks": [
      {"name": "cuda.conv", "passed": true}, {"name": "cuda.ssm", "passed": false}, {"name": "cuda", "skipped": "no device"}]})");
  const auto o = outcomes_from_verify_json(verify, {"cuda.conv", "cuda.ssm", "cuda.norm"});
  REQUIRE(o.size() == 3);
  CHECK(o[0].passed);
  CHECK_FALSE(o[1].passed);
  CHECK_FALSE(o[2].passed);
  CHECK(o[2].name == "cuda.norm (not in the file)");
  CHECK(timing_refusal("fp32", false, o)->find("cuda.ssm, cuda.norm (not in the file)") != std::string::npos);
}

// cuda/device.hpp's timing pieces under the emulation: events read the host clock, the flush writes its buffer.
TEST_CASE("bench device timing: emulated events and L2 flush", "[bench]") {
  if (!gpu::emulation_compiled_in()) {
    WARN("skipped: no emulated kernels in this build");
    return;
  }
  const gpu::Device dev = gpu::Device::emulated(1);
  const gpu::Stream stream(dev);
  gpu::Event start(dev), end(dev);
  CHECK_THROWS_AS(gpu::Event::elapsed_ms(start, end), std::logic_error);  // never recorded
  start.record(stream);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  end.record(stream);
  const double ms = gpu::Event::elapsed_ms(start, end);
  CHECK(ms >= 19);
  CHECK(ms < 5000);
  const gpu::L2Flush flush(dev);
  CHECK(flush.bytes() == 2u << 20);
  flush.run(stream);
}

TEST_CASE("bench sh_quote: one word for sh, quotes included", "[bench]") {
  CHECK(sh_quote("a b") == "'a b'");
  CHECK(sh_quote("GPU's") == "'GPU'\\''s'");
}
