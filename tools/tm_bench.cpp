// tm-bench: the layer at the paper's size on a GPU, per TransPoint (issue 11), and without one its cost model.
//
//   tm-bench --plan [--T 8192] [--P 0,128,...] [--Bt 1] [--D ... --E ... --H ... --G ... --N ... --W ... --Q ...]
//            [--dtype bf16|fp32] [--json FILE]
//       each kernel's useful FLOPs, minimal bytes and time floor on an H100 SXM (tools/bench/kernel_cost.hpp,
//       the formulas in its header), forward and backward, per P; the layer's floors, their mean over the
//       schedule V9 and its ratio to P = T. Runs anywhere.
//   tm-bench [...]
//       the timing run. It needs a GPU and the bf16 kernels, and refuses (exit 1) without either: timing is
//       not implemented in this build yet (issue 11), so today it always refuses and says why.
//
// Defaults: the paper's layer (MixerConfig::paper(): D 1536, E 3072, H 48 x 64, G 8, N 128, W 4, Q 128), Bt 1,
// T 8192, P = every TransPoint of V9 and T. Exit 0 on success, 1 when it cannot time, 2 on bad usage.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "cuda/device.hpp"
#include "reference/config.hpp"
#include "reference/schedule.hpp"
#include "tools/bench/kernel_cost.hpp"

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

}  // namespace

int main(int argc, char** argv) {
  MixerConfig cfg = MixerConfig::paper();
  int T = 8192, Bt = 1;
  std::vector<int> points;
  std::string dtype = "bf16", json_path;
  bool plan = false;

  CLI::App app{"tm-bench: the TransMamba layer at the paper's size per TransPoint P; --plan: its cost model and\n"
               "time floors (no GPU needed). FLOPs count a multiply-add as 2 (tools/bench/kernel_cost.hpp)."};
  app.add_flag("--plan", plan, "print each kernel's FLOPs, minimal bytes and time floor on an H100 SXM");
  app.add_option("--T", T, "tokens per sequence")->capture_default_str()->check(transmamba::whole_number(1));
  app.add_option("--P", points, "TransPoints (default: V9's and T)")->delimiter(',');
  app.add_option("--Bt", Bt, "sequences")->capture_default_str()->check(transmamba::whole_number(1));
  app.add_option("--dtype", dtype, "storage type of activations")->capture_default_str()->check(CLI::IsMember({"bf16", "fp32"}));
  app.add_option("--json", json_path, "also write the plan as JSON to this file (refuses to overwrite one)");
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
    if (!transmamba::gpu::cuda_device_available()) {
      std::cerr << "tm-bench: no GPU to time on (" << transmamba::gpu::describe()
                << "); `tm-bench --plan` prints the cost model and time floors without one\n";
    } else {
      std::cerr << "tm-bench: the bf16 kernels are not in this build yet (issue 11), and tm-bench times only a build "
                   "whose bf16 checks passed on this device; `tm-bench --plan` prints the cost model\n";
    }
    return 1;
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
