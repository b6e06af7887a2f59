// tm-cost: the per-layer cost of a TransPoint schedule (DESIGN.md section 5), from the model in
// reference/schedule.hpp (FLOP formulas in its header comment).
//
//   tm-cost [--schedule V9] [--seq 8192] [--layers 32] [--dtype-bytes 2] [--D 1536 --E 3072 --H 48 --G 8 --N 128 --W 4]
//   tm-cost --all          one summary row per named schedule (V1..V9, transformer, mamba)
//
// Defaults are the paper's configuration: MixerConfig::paper() and 32 mixer layers (the 1.5B model has 64
// layers, 32 mixer + 32 MLP; PAPER.md section 1.1). Exit 0 on success, 2 on bad usage or input.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "common/cli.hpp"
#include "reference/config.hpp"
#include "reference/schedule.hpp"

namespace {

using transmamba::LayerCost;
using transmamba::MixerConfig;
using transmamba::Schedule;
using transmamba::ScheduleCost;

constexpr double kGiga = 1e9;
constexpr double kMiB = 1024.0 * 1024.0;

// Takes the run's settings; prints the heading lines (config, schedule, the P-independent FLOPs).
void print_heading(const MixerConfig& cfg, int T, int layers, int bytes, const std::string& schedule_line) {
  std::printf("config: %s, T=%d, %d mixer layers, KV %d bytes/element, state fp32\n", cfg.describe().c_str(), T,
              layers, bytes);
  if (!schedule_line.empty()) std::printf("schedule: %s\n", schedule_line.c_str());
  std::printf("not counted (same for every schedule): in_proj + conv + out_proj = %.3f GFLOP per layer\n",
              transmamba::projection_flops(cfg, T) / kGiga);
}

// Takes a schedule's cost and T; prints one row per layer, the totals and the ratio to all-attention.
void print_layers(const ScheduleCost& sc, int T) {
  std::printf("%5s %6s %6s %12s %12s %16s %10s %10s\n", "layer", "P", "share", "attn GFLOP", "scan GFLOP",
              "converter GFLOP", "KV MiB", "state MiB");
  for (std::size_t l = 0; l < sc.layers.size(); ++l) {
    const LayerCost& c = sc.layers[l];
    std::printf("%5zu %6d %6.3f %12.3f %12.3f %16.3f %10.3f %10.3f\n", l, c.P, static_cast<double>(c.P) / T,
                c.attention_flops / kGiga, c.scan_flops / kGiga, c.converter_flops / kGiga, c.kv_cache_bytes / kMiB,
                c.state_bytes / kMiB);
  }
  const LayerCost& t = sc.total;
  std::printf("%5s %6s %6.3f %12.3f %12.3f %16.3f %10.3f %10.3f\n", "total", "", sc.attention_share,
              t.attention_flops / kGiga, t.scan_flops / kGiga, t.converter_flops / kGiga, t.kv_cache_bytes / kMiB,
              t.state_bytes / kMiB);
  std::printf("mixer GFLOP (attention + scan + converter): %.3f; all-attention (transformer): %.3f; ratio %.4f\n",
              t.mixer_flops() / kGiga, sc.transformer_flops / kGiga, sc.ratio_to_transformer());
}

// Takes the run's settings; prints one summary row per named schedule.
void print_all(const MixerConfig& cfg, int T, int layers, int bytes) {
  std::printf("%-12s %8s %6s %12s %12s %16s %12s %10s %10s %7s\n", "schedule", "mean P", "share", "attn GFLOP",
              "scan GFLOP", "converter GFLOP", "mixer GFLOP", "KV MiB", "state MiB", "ratio");
  for (const std::string& name : transmamba::named_schedules()) {
    const ScheduleCost sc = transmamba::schedule_cost(transmamba::parse_schedule(name), cfg, T, layers, bytes);
    const LayerCost& t = sc.total;
    std::printf("%-12s %8.1f %6.3f %12.3f %12.3f %16.3f %12.3f %10.3f %10.3f %7.4f\n", name.c_str(),
                sc.attention_share * T, sc.attention_share, t.attention_flops / kGiga, t.scan_flops / kGiga,
                t.converter_flops / kGiga, t.mixer_flops() / kGiga, t.kv_cache_bytes / kMiB, t.state_bytes / kMiB,
                sc.ratio_to_transformer());
  }
}

}  // namespace

int main(int argc, char** argv) {
  MixerConfig cfg = MixerConfig::paper();
  std::string schedule_text = "V9";
  int T = 8192, layers = 32, bytes = 2;
  bool all = false;

  CLI::App app{"tm-cost: per-layer FLOPs and memory of a TransPoint schedule (DESIGN.md section 5).\n"
               "FLOPs count a multiply-add as 2; in_proj, conv and out_proj are the same for every schedule and\n"
               "are printed once, not summed. 'share' is the fraction of tokens in attention (P / T)."};
  app.add_option("--schedule", schedule_text,
                 "V1..V9, V1@rel..V9@rel, transformer, mamba, an absolute list (0,128,256) or fractions of T "
                 "(0,0.25,0.5)")
      ->capture_default_str();
  app.add_option("--seq", T, "sequence length T")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--layers", layers, "number of mixer layers (the schedule cycles over them)")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--dtype-bytes", bytes, "bytes per KV-cache element (bf16 = 2)")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--D", cfg.D, "model width d_model")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--E", cfg.E, "inner width d_inner")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--H", cfg.H, "value heads (head dim p = E / H)")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--G", cfg.G, "groups of Q/K")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--N", cfg.N, "state size d_state")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--W", cfg.W, "conv width (only in the constant projection line)")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_flag("--all", all, "one summary row per named schedule (V1..V9, transformer, mamba) instead of --schedule");

  if (const auto exit_code = transmamba::parse_command_line(app, argc, argv)) return *exit_code;

  try {
    if (T <= 0) throw std::invalid_argument("--seq must be positive, got " + std::to_string(T));
    if (layers <= 0) throw std::invalid_argument("--layers must be positive, got " + std::to_string(layers));
    if (bytes <= 0) throw std::invalid_argument("--dtype-bytes must be positive, got " + std::to_string(bytes));
    cfg.validate();
    if (all) {
      print_heading(cfg, T, layers, bytes, "");
      print_all(cfg, T, layers, bytes);
    } else {
      const Schedule s = transmamba::parse_schedule(schedule_text);
      const ScheduleCost sc = transmamba::schedule_cost(s, cfg, T, layers, bytes);
      print_heading(cfg, T, layers, bytes, s.describe());
      print_layers(sc, T);
    }
  } catch (const std::exception& e) {
    std::cerr << "tm-cost: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
