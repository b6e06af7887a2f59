// tm-bench's measured side, plain C++ (no device): the statistics of repeated timings, the V9 mean and its
// ratio to P = T, the rule that refuses to time a build whose checks did not pass, and the report (table,
// JSON, plot). The timing loop that fills it is tools/bench/layer_timing.hpp; the FLOPs and minimal bytes
// that turn times into TFLOP/s and GB/s are tools/bench/kernel_cost.hpp's (not restated here).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "reference/config.hpp"

namespace transmamba::bench {

// The summary of R timed repetitions (milliseconds): median (of an even count the mean of the middle two),
// min, max. Throws std::invalid_argument for no repetitions.
struct Stats {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int reps = 0;
};
Stats summarize(std::vector<double> ms);

// One kernel family timed alone on the layer's shapes (tools/bench/layer_timing.hpp); its name is one of
// kernel_cost.hpp's ("in_proj", "conv", ...).
struct KernelTime {
  std::string name;
  Stats forward, backward;
};
// One TransPoint: the layer's forward, its forward + backward, and each kernel family alone.
struct PointTime {
  int P = 0;
  Stats forward, forward_backward;
  std::vector<KernelTime> kernels;
};
// The PyTorch baseline at one TransPoint (tools/bench/torch_layer.py): its times, and its output's rel-norm
// error against ours, checked under the bound before any time counts.
struct BaselineTime {
  int P = 0;
  Stats forward, forward_backward;
  double rel_error = 0, bound = 0;
};

// V9's TransPoints clamped to T (with repeats, as the cost model counts them: V9 at T = 2048 is
// [0,128,256,512,1024,2048,2048,2048]), the mean of their times, the time at P = T and the ratio.
struct V9Summary {
  double mean_ms = 0, full_ms = 0, ratio = 0;
};
std::vector<int> v9_points(int T);
// From (P, ms) pairs; nothing when V9's points or P = T were not all timed.
std::optional<V9Summary> v9_summary(const std::vector<std::pair<int, double>>& ms_by_P, int T);

// The refusal rule: the outcome of every kernel check of the dtype on the device, and whether this build has
// the bf16 layer (a "cuda.mixer.bf16" check in the catalogue). Returns why tm-bench must not time, or nothing.
struct CheckOutcome {
  std::string name;
  bool passed = false;
};
std::optional<std::string> timing_refusal(const std::string& dtype, bool bf16_layer_built,
                                          const std::vector<CheckOutcome>& outcomes);
// The outcomes of the named checks as `tm-verify --backend cuda --json FILE` recorded them (its "checks" rows:
// name, passed): a check absent from the file did not pass ("<name> (not in the file)").
std::vector<CheckOutcome> outcomes_from_verify_json(const nlohmann::json& verify, const std::vector<std::string>& names);

struct BenchReport {
  std::string device, backend, dtype;
  MixerConfig cfg;
  int Bt = 1, T = 0, reps = 0, warmup = 0;
  std::uint64_t seed = 0;
  std::vector<PointTime> points;
  std::vector<BaselineTime> baseline;  // empty without --baseline
  int bytes() const { return dtype == "bf16" ? 2 : 4; }
};

// The table: per P the layer's times, each kernel's median, TFLOP/s and GB/s of minimal bytes; the V9 line;
// with a baseline, its times and our speed-up per P and over V9.
void print_table(const BenchReport& r, std::FILE* out);
nlohmann::json to_json(const BenchReport& r);
// s as one word for sh: in single quotes, each ' as '\'' (the commands tm-bench runs: the plot, the baseline).
std::string sh_quote(const std::string& s);
// A PNG of the median forward and forward+backward time against P (and the baseline's): through gnuplot when
// it is on the PATH, else python3 with matplotlib, else nothing. Returns what it did not do (empty: written).
std::string plot(const BenchReport& r, const std::string& png);

}  // namespace transmamba::bench
