// tm-bench: the layer at the paper's size on a GPU, per TransPoint (issue 11), and without one its cost model.
//
//   tm-bench --plan [--T 8192] [--P 0,128,...] [--Bt 1] [--D ... --E ... --H ... --G ... --N ... --W ... --Q ...]
//            [--dtype bf16|fp32] [--json FILE]
//       each kernel's useful FLOPs, minimal bytes and time floor on an H100 SXM (tools/bench/kernel_cost.hpp,
//       the formulas in its header), forward and backward, per P; the layer's floors, their mean over the
//       schedule V9 and its ratio to P = T. Runs anywhere.
//   tm-bench [--dtype bf16|fp32] [--reps 20] [--warmup 3] [--seed 1] [--layer-only] [--json FILE] [--plot FILE.png]
//            [--baseline [--torch-script tools/bench/torch_layer.py]] [sizes as above]
//       the timing run on GPU 0 (tools/bench/layer_timing.hpp): per P the layer's forward and forward+backward
//       and each stage of the layer alone (mixer_stages; median, min, max of --reps after --warmup, L2 flushed
//       before each, CUDA events), TFLOP/s and GB/s of minimal bytes, the V9 mean and its ratio to P = T;
//       --baseline: the same layer in PyTorch (tools/bench/torch_layer.py) on the same inputs, its output checked
//       first, and the speed-up per P and over V9. It refuses (exit 1, saying why):
//         - without a GPU;
//         - --dtype bf16 while this build has no bf16 layer (no "cuda.mixer.bf16" check in the catalogue);
//         - unless every kernel check of the dtype (verify/checks_kernels.hpp, cuda.*) passes on this device
//           first (run here, --check-cases cases each, or read from --checks-json, the JSON of a
//           `tm-verify --backend cuda` run on this device; the failed ones are named);
//         - --baseline without python3 and torch, or when PyTorch's output is off ours by more than the bound.
//   tm-bench --backend emulated ...   (test mode) the same loop under the CPU emulation on a small layer: the
//       events read the host clock, the device checks are not run (ctest runs them emulated), and the times
//       say nothing about a GPU; ctest checks the table and JSON it prints.
//
// Defaults: the paper's layer (MixerConfig::paper(): D 1536, E 3072, H 48 x 64, G 8, N 128, W 4, Q 128), Bt 1,
// T 8192, P = every TransPoint of V9 and T. Exit 0 on success, 1 when it cannot or may not time, 2 on bad usage.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "cuda/device.hpp"
#include "fixture_format/safetensors.hpp"
#include "reference/config.hpp"
#include "reference/schedule.hpp"
#include "tools/bench/kernel_cost.hpp"
#include "tools/bench/layer_timing.hpp"
#include "tools/bench/report.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/bounds.hpp"

namespace {

using transmamba::MixerConfig;
using transmamba::bench::KernelCost;
using transmamba::bench::Work;

struct PlanRow {
  int P = 0;
  std::vector<KernelCost> kernels;
  Work forward, backward;
};

// Prints one P's table and returns its totals.
PlanRow plan_for(const MixerConfig& cfg, int Bt, int T, int P, int bytes, const transmamba::bench::Device& dev) {
  PlanRow row{P, transmamba::bench::layer_kernel_costs(cfg, Bt, T, P, bytes), {}, {}};
  std::printf("\nP = %d (%d attention tokens, %d scan tokens per sequence)\n", P, P, T - P);
  std::printf("%-10s %11s %9s %10s   %11s %9s %10s\n", "kernel", "fwd GFLOP", "fwd MB", "fwd floor", "bwd GFLOP",
              "bwd MB", "bwd floor");
  for (const KernelCost& k : row.kernels) {
    std::printf("%-10s %11.3f %9.2f %8.1f us   %11.3f %9.2f %8.1f us\n", k.name.c_str(), k.forward.flops / 1e9,
                k.forward.bytes / 1e6, k.forward.floor_s(dev) * 1e6, k.backward.flops / 1e9, k.backward.bytes / 1e6,
                k.backward.floor_s(dev) * 1e6);
    row.forward += k.forward;
    row.backward += k.backward;
  }
  return row;
}

// The layer's floor: the kernels run one after another, so their floors add.
double layer_floor(const std::vector<KernelCost>& kernels, bool with_backward, const transmamba::bench::Device& dev) {
  double s = 0;
  for (const KernelCost& k : kernels) s += k.forward.floor_s(dev) + (with_backward ? k.backward.floor_s(dev) : 0);
  return s;
}


// ---- the timing run ----------------------------------------------------------------------------------------

struct RunOptions {
  std::string backend = "cuda", dtype, json_path, plot_path, torch_script, checks_json;
  int check_cases = 0;  // 0: each check's default
  bool baseline = false;
  transmamba::bench::TimingOptions timing;
};

bool command_ok(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// The refusal rule on the GPU (tools/bench/report.hpp's timing_refusal): the bf16 layer must exist for
// --dtype bf16, and every cuda kernel check of the dtype must pass here first.
// --checks-json: the outcomes read from tm-verify's JSON instead of running the checks here.
std::optional<std::string> device_gate(const std::string& dtype, const std::string& backend, int cases, std::uint64_t seed,
                                       const std::string& checks_json) {
  const std::vector<transmamba::Check> catalogue = transmamba::kernel_checks(transmamba::gpu::Backend::cuda);
  const bool bf16_layer = std::any_of(catalogue.begin(), catalogue.end(),
                                      [](const transmamba::Check& c) { return c.name == "cuda.mixer.bf16"; });
  if (dtype == "bf16" && !bf16_layer) return transmamba::bench::timing_refusal(dtype, bf16_layer, {});  // before any check
  if (backend != "cuda") return std::nullopt;  // the test mode runs no device checks
  std::vector<const transmamba::Check*> checks;  // the dtype's device checks (the opt-in paper-size one aside)
  std::vector<std::string> names;
  for (const transmamba::Check& c : catalogue)
    if (c.dtype() == dtype && !c.opt_in) checks.push_back(&c), names.push_back(c.name);
  std::vector<transmamba::bench::CheckOutcome> outcomes;
  if (!checks_json.empty()) {
    std::ifstream in(checks_json);
    if (!in) return "cannot read --checks-json " + checks_json;
    outcomes = transmamba::bench::outcomes_from_verify_json(nlohmann::json::parse(in), names);
  } else {
    for (const transmamba::Check* c : checks) {
      std::cerr << "tm-bench: check " << c->name << " ... " << std::flush;
      const transmamba::CheckReport r = transmamba::run_check(*c, seed, cases);
      std::cerr << (r.passed ? "passed" : "FAILED") << "\n";
      outcomes.push_back({c->name, r.passed});
    }
  }
  return transmamba::bench::timing_refusal(dtype, bf16_layer, outcomes);
}

// The torch script: --torch-script, else tools/bench/torch_layer.py under the working directory or the source tree.
std::string torch_script(const std::string& flag) {
  if (!flag.empty()) return flag;
  for (const std::string& root : {std::string("."), std::string(TM_SOURCE_DIR)}) {
    const std::string path = root + "/tools/bench/torch_layer.py";
    if (std::filesystem::exists(path)) return path;
  }
  return "tools/bench/torch_layer.py";
}

// Writes the layer's parameters, u, d_out and our out for the torch script (F32, shapes of reference/params.hpp).
void write_baseline_inputs(const std::string& path, const MixerConfig& c, int Bt, int T, int P, const std::string& dtype,
                           const transmamba::bench::LayerInputs& in, const std::vector<float>& out) {
  transmamba::SafetensorsFile file;
  auto put = [&](const std::string& name, const auto& values, std::vector<int64_t> shape) {
    file.put_doubles(name, std::vector<double>(values.data(), values.data() + values.size()), shape, "F32");
  };
  const auto& m = in.prm;
  put("W_in", m.W_in, {c.D, c.in_proj_width()});
  put("conv_w", m.conv_w, {c.conv_channels(), c.W});
  put("conv_b", m.conv_b, {c.conv_channels()});
  put("dt_bias", m.dt_bias, {c.H});
  put("A_log", m.A_log, {c.H});
  put("D_skip", m.D_skip, {c.H});
  put("norm_w", m.norm_w, {c.E});
  put("W_out", m.W_out, {c.E, c.D});
  put("u", in.u, {Bt, T, c.D});
  put("d_out", in.d_out, {Bt, T, c.D});
  put("out", out, {Bt, T, c.D});
  for (const auto& [k, v] : std::map<std::string, int>{{"D", c.D}, {"E", c.E}, {"H", c.H}, {"G", c.G}, {"N", c.N},
                                                        {"W", c.W}, {"Q", c.chunk}, {"Bt", Bt}, {"T", T}, {"P", P}})
    file.metadata[k] = std::to_string(v);
  file.metadata["dtype"] = dtype;
  transmamba::write_safetensors_atomic(path, file);
}

// Runs the torch script on one P's file; returns its times, or throws std::runtime_error with why not.
transmamba::bench::BaselineTime run_baseline(const RunOptions& o, const std::string& script, const std::string& input, int P) {
  const std::string device = o.backend == "cuda" ? "cuda" : "cpu";
  using transmamba::bench::sh_quote;
  const std::string cmd = "python3 " + sh_quote(script) + " --input " + sh_quote(input) + " --device " + device + " --dtype " + o.dtype +
                          " --reps " + std::to_string(o.timing.reps) + " --warmup " + std::to_string(o.timing.warmup) +
                          " --bound " + std::to_string(transmamba::bounds::kBf16Ceiling);
  std::FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + cmd);
  std::string text;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) text.append(buf, n);
  const int status = pclose(pipe);
  if (status != 0) throw std::runtime_error("the PyTorch baseline failed at P = " + std::to_string(P) + " (" + cmd + ")");
  const std::size_t start = text.rfind("\n{");
  const nlohmann::json j = nlohmann::json::parse(start == std::string::npos ? text : text.substr(start + 1));
  auto stats = [](const nlohmann::json& s) {
    return transmamba::bench::Stats{s.at("median_ms"), s.at("min_ms"), s.at("max_ms"), s.at("reps")};
  };
  return {P, stats(j.at("forward")), stats(j.at("forward_backward")), j.at("rel_error"), j.at("bound")};
}

int run_timing(const MixerConfig& cfg, int Bt, int T, const std::vector<int>& points, const RunOptions& o) {
  using namespace transmamba;
  const bool on_gpu = o.backend == "cuda";
  if (on_gpu && !gpu::cuda_device_available()) {
    std::cerr << "tm-bench: no GPU to time on (" << gpu::describe()
              << "); `tm-bench --plan` prints the cost model and time floors without one\n";
    return 1;
  }
  if (!on_gpu && !gpu::emulation_compiled_in()) {
    std::cerr << "tm-bench: this build has no emulated kernels for --backend emulated\n";
    return 1;
  }
  const std::string script = torch_script(o.torch_script);
  if (o.baseline) {
    if (!command_ok("command -v python3")) return std::cerr << "tm-bench: --baseline needs python3, not found\n", 1;
    if (!command_ok("python3 -c 'import torch'"))
      return std::cerr << "tm-bench: --baseline needs PyTorch: `python3 -c 'import torch'` failed\n", 1;
    if (!std::filesystem::exists(script)) return std::cerr << "tm-bench: --baseline: no script " << script << "\n", 1;
  }
  if (const auto why = device_gate(o.dtype, o.backend, o.check_cases, o.timing.seed, o.checks_json)) {
    std::cerr << "tm-bench: refusing to time: " << *why << "\n";
    return 1;
  }
  const gpu::Device dev = on_gpu ? gpu::Device::cuda(0) : gpu::Device::emulated(o.timing.seed);
  bench::BenchReport report;
  report.device = on_gpu ? gpu::describe() : "CPU emulation (test mode: host clock, not a GPU's times)";
  report.backend = o.backend, report.dtype = o.dtype, report.cfg = cfg;
  report.Bt = Bt, report.T = T, report.reps = o.timing.reps, report.warmup = o.timing.warmup, report.seed = o.timing.seed;
  const bench::LayerInputs inputs = bench::make_inputs(cfg, Bt, T, o.timing.seed);
  bench::TimingOptions timing = o.timing;
  timing.bf16 = o.dtype == "bf16";
  for (int P : points) {
    std::cerr << "tm-bench: timing P = " << P << " ...\n";
    std::vector<float> out;
    report.points.push_back(bench::time_point(dev, cfg, Bt, T, P, inputs, timing, o.baseline ? &out : nullptr));
    if (o.baseline) {
      const std::string input = (std::filesystem::temp_directory_path() /
                                 ("tm-bench-" + std::to_string(::getpid()) + "-P" + std::to_string(P) + ".safetensors")).string();
      write_baseline_inputs(input, cfg, Bt, T, P, o.dtype, inputs, out);
      try {
        report.baseline.push_back(run_baseline(o, script, input, P));
      } catch (const std::exception& e) {
        std::filesystem::remove(input);
        std::cerr << "tm-bench: " << e.what() << "\n";
        return 1;
      }
      std::filesystem::remove(input);
    }
  }
  bench::print_table(report, stdout);
  std::fflush(stdout);
  if (!o.json_path.empty()) {
    const std::string tmp = o.json_path + ".tmp";
    std::ofstream(tmp) << bench::to_json(report).dump(2) << "\n";
    std::filesystem::rename(tmp, o.json_path);
  }
  if (!o.plot_path.empty())
    if (const std::string missing = bench::plot(report, o.plot_path); !missing.empty()) std::cerr << "tm-bench: " << missing << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MixerConfig cfg = MixerConfig::paper();
  int T = 8192, Bt = 1;
  std::vector<int> points;
  std::string dtype = "bf16", json_path;
  bool plan = false, layer_only = false;
  RunOptions run;

  CLI::App app{"tm-bench: the TransMamba layer at the paper's size per TransPoint P; --plan: its cost model and\n"
               "time floors (no GPU needed). FLOPs count a multiply-add as 2 (tools/bench/kernel_cost.hpp).\n"
               "Without --plan: the timing run on GPU 0, which refuses (exit 1) without a GPU, for --dtype bf16 while\n"
               "the bf16 layer is not built, and unless the dtype's cuda kernel checks pass there first."};
  app.add_flag("--plan", plan, "print each kernel's FLOPs, minimal bytes and time floor on an H100 SXM");
  app.add_option("--T", T, "tokens per sequence")->capture_default_str()->check(transmamba::whole_number(1));
  app.add_option("--P", points, "TransPoints (default: V9's and T)")->delimiter(',');
  app.add_option("--Bt", Bt, "sequences")->capture_default_str()->check(transmamba::whole_number(1));
  app.add_option("--dtype", dtype, "storage type of activations")->capture_default_str()->check(CLI::IsMember({"bf16", "fp32"}));
  app.add_option("--json", json_path, "also write the plan or the timings as JSON to this file (refuses to overwrite one)");
  app.add_option("--reps", run.timing.reps, "timed repetitions of each call (the median is reported)")
      ->capture_default_str()->check(transmamba::whole_number(1));
  app.add_option("--warmup", run.timing.warmup, "untimed runs before them")->capture_default_str()->check(transmamba::whole_number(0));
  app.add_option("--seed", run.timing.seed, "seed of the parameters and inputs")->capture_default_str();
  app.add_flag("--layer-only", layer_only, "time the layer only, not each kernel family alone");
  app.add_option("--plot", run.plot_path, "also plot the median times against P into this PNG (gnuplot or matplotlib)");
  app.add_flag("--baseline", run.baseline, "also time tools/bench/torch_layer.py (PyTorch) on the same inputs");
  app.add_option("--torch-script", run.torch_script, "the baseline script (default tools/bench/torch_layer.py)");
  app.add_option("--check-cases", run.check_cases, "cases of each device check before timing (default: each check's own)")
      ->check(transmamba::whole_number(1));
  app.add_option("--checks-json", run.checks_json,
                 "take the device checks' outcomes from this `tm-verify --backend cuda --json` file of this device "
                 "instead of running them")
      ->check(CLI::ExistingFile);
  app.add_option("--backend", run.backend, "cuda, or emulated: the test mode (the loop on the CPU, times meaningless)")
      ->capture_default_str()->check(CLI::IsMember({"cuda", "emulated"}));
  app.add_option("--D", cfg.D, "model width")->capture_default_str();
  app.add_option("--E", cfg.E, "inner width")->capture_default_str();
  app.add_option("--H", cfg.H, "value heads (p = E / H)")->capture_default_str();
  app.add_option("--G", cfg.G, "groups of Q/K")->capture_default_str();
  app.add_option("--N", cfg.N, "state size")->capture_default_str();
  app.add_option("--W", cfg.W, "conv width")->capture_default_str();
  app.add_option("--Q", cfg.chunk, "SSD chunk size")->capture_default_str();
  if (const auto exit_code = transmamba::parse_command_line(app, argc, argv)) return *exit_code;

  try {
    cfg.validate();
    if (Bt > 65535) throw std::invalid_argument("--Bt " + std::to_string(Bt) + ": at most 65535 sequences (a grid dimension)");
    if (points.empty()) {  // V9's TransPoints clamped to T, and T, each once
      for (int P : transmamba::parse_schedule("V9").transpoints(8, T))
        if (std::find(points.begin(), points.end(), P) == points.end()) points.push_back(P);
      if (std::find(points.begin(), points.end(), T) == points.end()) points.push_back(T);
    }
    for (int P : points)
      if (P < 0 || P > T)
        throw std::invalid_argument("--P " + std::to_string(P) + " is outside [0, T=" + std::to_string(T) + "]");
    if (!json_path.empty() && std::filesystem::exists(json_path))
      throw std::invalid_argument("--json " + json_path + " exists; not overwritten");
  } catch (const std::exception& e) {
    std::cerr << "tm-bench: " << e.what() << "\n";
    return 2;
  }

  if (!plan) {
    run.dtype = dtype, run.json_path = json_path, run.timing.kernels = !layer_only;
    try {
      return run_timing(cfg, Bt, T, points, run);
    } catch (const std::exception& e) {
      std::cerr << "tm-bench: " << e.what() << "\n";
      return 1;
    }
  }

  const transmamba::bench::Device dev = transmamba::bench::h100_sxm();
  const int bytes = dtype == "bf16" ? 2 : 4;
  std::printf("cost model of one layer call: %s, Bt=%d, T=%d, activations %s (%d bytes), states fp32\n",
              cfg.describe().c_str(), Bt, T, dtype.c_str(), bytes);
  std::printf("floor = max(FLOPs / peak, minimal bytes / bandwidth) per kernel on %s\n", dev.name.c_str());
  std::vector<PlanRow> rows;
  for (int P : points) rows.push_back(plan_for(cfg, Bt, T, P, bytes, dev));

  std::printf("\n%8s %14s %18s %16s\n", "P", "forward floor", "fwd+bwd floor", "fwd+bwd GFLOP");
  for (const PlanRow& r : rows)
    std::printf("%8d %11.1f us %15.1f us %16.3f\n", r.P, layer_floor(r.kernels, false, dev) * 1e6,
                layer_floor(r.kernels, true, dev) * 1e6, (r.forward.flops + r.backward.flops) / 1e9);
  // V9's mean over its TransPoints (clamped to T), and its ratio to the all-attention layer P = T.
  const std::vector<int> v9 = transmamba::parse_schedule("V9").transpoints(8, T);
  double v9_fwd = 0, v9_all = 0;
  for (int P : v9) {
    const auto k = transmamba::bench::layer_kernel_costs(cfg, Bt, T, P, bytes);
    v9_fwd += layer_floor(k, false, dev) / v9.size();
    v9_all += layer_floor(k, true, dev) / v9.size();
  }
  const auto full = transmamba::bench::layer_kernel_costs(cfg, Bt, T, T, bytes);
  const double full_fwd = layer_floor(full, false, dev), full_all = layer_floor(full, true, dev);
  std::printf("%8s %11.1f us %15.1f us   (ratio to P = T: %.3f forward, %.3f forward+backward)\n", "V9 mean", v9_fwd * 1e6,
              v9_all * 1e6, v9_fwd / full_fwd, v9_all / full_all);

  if (!json_path.empty()) {
    nlohmann::json j;
    j["device"] = dev.name;
    j["config"] = cfg.describe();
    j["Bt"] = Bt, j["T"] = T, j["dtype"] = dtype;
    for (const PlanRow& r : rows) {
      nlohmann::json jr;
      jr["P"] = r.P;
      jr["forward_floor_s"] = layer_floor(r.kernels, false, dev);
      jr["forward_backward_floor_s"] = layer_floor(r.kernels, true, dev);
      for (const KernelCost& k : r.kernels)
        jr["kernels"].push_back({{"name", k.name}, {"forward_flops", k.forward.flops}, {"forward_bytes", k.forward.bytes},
                                 {"backward_flops", k.backward.flops}, {"backward_bytes", k.backward.bytes},
                                 {"forward_floor_s", k.forward.floor_s(dev)}, {"backward_floor_s", k.backward.floor_s(dev)}});
      j["P"].push_back(jr);
    }
    j["V9_mean"] = {{"forward_floor_s", v9_fwd}, {"forward_backward_floor_s", v9_all},
                    {"ratio_to_P_eq_T_forward", v9_fwd / full_fwd}, {"ratio_to_P_eq_T_forward_backward", v9_all / full_all}};
    const std::string tmp = json_path + ".tmp";
    std::ofstream(tmp) << j.dump(2) << "\n";
    std::filesystem::rename(tmp, json_path);
  }
  return 0;
}
