// tools/bench/report.hpp: statistics, the V9 summary, the refusal rule, the table, the JSON and the plot.
#include "tools/bench/report.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "reference/schedule.hpp"
#include "tools/bench/kernel_cost.hpp"

namespace transmamba::bench {

Stats summarize(std::vector<double> ms) {
  if (ms.empty()) throw std::invalid_argument("summarize: no repetitions");
  std::sort(ms.begin(), ms.end());
  const std::size_t n = ms.size();
  const double median = n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
  return {median, ms.front(), ms.back(), int(n)};
}

std::vector<int> v9_points(int T) { return parse_schedule("V9").transpoints(8, T); }

std::optional<V9Summary> v9_summary(const std::vector<std::pair<int, double>>& ms_by_P, int T) {
  auto at = [&](int P) -> std::optional<double> {
    for (const auto& [p, ms] : ms_by_P)
      if (p == P) return ms;
    return std::nullopt;
  };
  const std::optional<double> full = at(T);
  if (!full) return std::nullopt;
  const std::vector<int> points = v9_points(T);
  double sum = 0;
  for (int P : points) {
    const std::optional<double> ms = at(P);
    if (!ms) return std::nullopt;
    sum += *ms;
  }
  const double mean = sum / points.size();
  return V9Summary{mean, *full, mean / *full};
}

std::optional<std::string> timing_refusal(const std::string& dtype, bool bf16_layer_built,
                                          const std::vector<CheckOutcome>& outcomes) {
  if (dtype == "bf16" && !bf16_layer_built)
    return std::string("the bf16 layer is not built yet (no cuda.mixer.bf16 check in this build); "
                       "`tm-bench --dtype fp32` times the fp32 layer");
  if (outcomes.empty()) return "no " + dtype + " kernel checks in this build to run first";
  std::string failed;
  for (const CheckOutcome& o : outcomes)
    if (!o.passed) failed += (failed.empty() ? "" : ", ") + o.name;
  if (!failed.empty()) return "the " + dtype + " kernel checks failed on this device: " + failed;
  return std::nullopt;
}

std::vector<CheckOutcome> outcomes_from_verify_json(const nlohmann::json& verify, const std::vector<std::string>& names) {
  std::vector<CheckOutcome> out;
  for (const std::string& name : names) {
    CheckOutcome o{name + " (not in the file)", false};
    if (verify.contains("checks"))
      for (const nlohmann::json& row : verify["checks"])
        if (row.value("name", "") == name) o = {name, row.value("passed", false)};
    out.push_back(o);
  }
  return out;
}

std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

namespace {

const KernelCost* cost_of(const std::vector<KernelCost>& costs, const std::string& name) {
  for (const KernelCost& k : costs)
    if (k.name == name) return &k;
  return nullptr;
}
// TFLOP/s and GB/s of `work` done in `ms` (0 for no time).
double tflops(const Work& w, double ms) { return ms > 0 ? w.flops / (ms * 1e-3) / 1e12 : 0; }
double gbps(const Work& w, double ms) { return ms > 0 ? w.bytes / (ms * 1e-3) / 1e9 : 0; }

nlohmann::json stats_json(const Stats& s) {
  return {{"median_ms", s.median_ms}, {"min_ms", s.min_ms}, {"max_ms", s.max_ms}, {"reps", s.reps}};
}

template <class Row, class Get>
std::vector<std::pair<int, double>> medians(const std::vector<Row>& rows, Get get) {
  std::vector<std::pair<int, double>> out;
  for (const Row& r : rows) out.emplace_back(r.P, get(r).median_ms);
  return out;
}

// A string for gnuplot in single quotes: each ' doubled.
std::string gp_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

const BaselineTime* baseline_at(const BenchReport& r, int P) {
  for (const BaselineTime& b : r.baseline)
    if (b.P == P) return &b;
  return nullptr;
}

}  // namespace

void print_table(const BenchReport& r, std::FILE* out) {
  std::fprintf(out, "tm-bench: %s, Bt=%d, T=%d, %s activations on %s (%s); median of %d after %d warm-up, L2 flushed\n",
               r.cfg.describe().c_str(), r.Bt, r.T, r.dtype.c_str(), r.device.c_str(), r.backend.c_str(), r.reps, r.warmup);
  for (const PointTime& p : r.points) {
    const std::vector<KernelCost> costs = layer_kernel_costs(r.cfg, r.Bt, r.T, p.P, r.bytes());
    std::fprintf(out, "\nP = %d: layer forward %.3f ms [%.3f, %.3f], forward+backward %.3f ms [%.3f, %.3f]\n", p.P,
                 p.forward.median_ms, p.forward.min_ms, p.forward.max_ms, p.forward_backward.median_ms,
                 p.forward_backward.min_ms, p.forward_backward.max_ms);
    std::fprintf(out, "%-10s %10s %9s %9s   %10s %9s %9s\n", "kernel", "fwd ms", "TFLOP/s", "GB/s", "bwd ms", "TFLOP/s",
                 "GB/s");
    for (const KernelTime& k : p.kernels) {
      const KernelCost* c = cost_of(costs, k.name);
      const Work f = c ? c->forward : Work{}, b = c ? c->backward : Work{};
      std::fprintf(out, "%-10s %10.4f %9.2f %9.1f   %10.4f %9.2f %9.1f\n", k.name.c_str(), k.forward.median_ms,
                   tflops(f, k.forward.median_ms), gbps(f, k.forward.median_ms), k.backward.median_ms,
                   tflops(b, k.backward.median_ms), gbps(b, k.backward.median_ms));
    }
  }
  std::fprintf(out, "\n%8s %12s %16s", "P", "forward ms", "fwd+bwd ms");
  if (!r.baseline.empty()) std::fprintf(out, " %14s %16s %9s %9s", "torch fwd ms", "torch f+b ms", "fwd x", "f+b x");
  std::fprintf(out, "\n");
  for (const PointTime& p : r.points) {
    std::fprintf(out, "%8d %12.3f %16.3f", p.P, p.forward.median_ms, p.forward_backward.median_ms);
    if (const BaselineTime* b = baseline_at(r, p.P))
      std::fprintf(out, " %14.3f %16.3f %9.2f %9.2f", b->forward.median_ms, b->forward_backward.median_ms,
                   b->forward.median_ms / p.forward.median_ms, b->forward_backward.median_ms / p.forward_backward.median_ms);
    std::fprintf(out, "\n");
  }
  const auto fwd = v9_summary(medians(r.points, [](const PointTime& p) { return p.forward; }), r.T);
  const auto all = v9_summary(medians(r.points, [](const PointTime& p) { return p.forward_backward; }), r.T);
  if (fwd && all) {
    std::fprintf(out, "%8s %12.3f %16.3f", "V9 mean", fwd->mean_ms, all->mean_ms);
    const auto bf = v9_summary(medians(r.baseline, [](const BaselineTime& b) { return b.forward; }), r.T);
    const auto ba = v9_summary(medians(r.baseline, [](const BaselineTime& b) { return b.forward_backward; }), r.T);
    if (bf && ba)
      std::fprintf(out, " %14.3f %16.3f %9.2f %9.2f", bf->mean_ms, ba->mean_ms, bf->mean_ms / fwd->mean_ms,
                   ba->mean_ms / all->mean_ms);
    std::fprintf(out, "\n(V9 mean / P = T: %.3f forward, %.3f forward+backward%s)\n", fwd->ratio, all->ratio,
                 r.baseline.empty() ? "" : "; x = torch time / ours");
  } else {
    std::fprintf(out, "(no V9 mean: not every TransPoint of V9 and P = T was timed)\n");
  }
}

nlohmann::json to_json(const BenchReport& r) {
  nlohmann::json j;
  j["device"] = r.device, j["backend"] = r.backend, j["dtype"] = r.dtype, j["config"] = r.cfg.describe();
  j["Bt"] = r.Bt, j["T"] = r.T, j["reps"] = r.reps, j["warmup"] = r.warmup, j["seed"] = r.seed;
  j["P"] = nlohmann::json::array();
  for (const PointTime& p : r.points) {
    const std::vector<KernelCost> costs = layer_kernel_costs(r.cfg, r.Bt, r.T, p.P, r.bytes());
    nlohmann::json jp{{"P", p.P}, {"forward", stats_json(p.forward)}, {"forward_backward", stats_json(p.forward_backward)}};
    jp["kernels"] = nlohmann::json::array();
    for (const KernelTime& k : p.kernels) {
      const KernelCost* c = cost_of(costs, k.name);
      const Work f = c ? c->forward : Work{}, b = c ? c->backward : Work{};
      jp["kernels"].push_back({{"name", k.name},
                               {"forward", stats_json(k.forward)},
                               {"backward", stats_json(k.backward)},
                               {"forward_flops", f.flops},
                               {"forward_bytes", f.bytes},
                               {"backward_flops", b.flops},
                               {"backward_bytes", b.bytes},
                               {"forward_tflops", tflops(f, k.forward.median_ms)},
                               {"forward_gbps", gbps(f, k.forward.median_ms)},
                               {"backward_tflops", tflops(b, k.backward.median_ms)},
                               {"backward_gbps", gbps(b, k.backward.median_ms)}});
    }
    if (const BaselineTime* b = baseline_at(r, p.P))
      jp["baseline"] = {{"forward", stats_json(b->forward)},
                        {"forward_backward", stats_json(b->forward_backward)},
                        {"rel_error", b->rel_error},
                        {"bound", b->bound},
                        {"forward_speedup", b->forward.median_ms / p.forward.median_ms},
                        {"forward_backward_speedup", b->forward_backward.median_ms / p.forward_backward.median_ms}};
    j["P"].push_back(jp);
  }
  const auto fwd = v9_summary(medians(r.points, [](const PointTime& p) { return p.forward; }), r.T);
  const auto all = v9_summary(medians(r.points, [](const PointTime& p) { return p.forward_backward; }), r.T);
  if (fwd && all) {
    j["V9_mean"] = {{"forward_ms", fwd->mean_ms}, {"forward_backward_ms", all->mean_ms},
                    {"ratio_to_P_eq_T_forward", fwd->ratio}, {"ratio_to_P_eq_T_forward_backward", all->ratio}};
    const auto bf = v9_summary(medians(r.baseline, [](const BaselineTime& b) { return b.forward; }), r.T);
    const auto ba = v9_summary(medians(r.baseline, [](const BaselineTime& b) { return b.forward_backward; }), r.T);
    if (bf && ba)
      j["V9_mean"]["baseline"] = {{"forward_ms", bf->mean_ms}, {"forward_backward_ms", ba->mean_ms},
                                  {"forward_speedup", bf->mean_ms / fwd->mean_ms},
                                  {"forward_backward_speedup", ba->mean_ms / all->mean_ms}};
  }
  return j;
}

std::string plot(const BenchReport& r, const std::string& png) {
  // The data: P, our forward and forward+backward medians, the baseline's (or NaN), one line per P.
  const std::string dat = png + ".dat";
  {
    std::ofstream f(dat);
    f << "# P forward_ms forward_backward_ms torch_forward_ms torch_forward_backward_ms\n";
    for (const PointTime& p : r.points) {
      const BaselineTime* b = baseline_at(r, p.P);
      f << p.P << ' ' << p.forward.median_ms << ' ' << p.forward_backward.median_ms << ' '
        << (b ? std::to_string(b->forward.median_ms) : "NaN") << ' '
        << (b ? std::to_string(b->forward_backward.median_ms) : "NaN") << "\n";
    }
    if (!f) return "cannot write " + dat;
  }
  // The title on three lines (one line of all three, at 900 pixels, was cut off at both ends).
  const std::vector<std::string> title = {"TransMamba layer, T=" + std::to_string(r.T) + ", " + r.dtype, r.cfg.describe(),
                                          r.device};
  const bool with_baseline = !r.baseline.empty();
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    const std::string script = png + ".gp";
    std::string gp_title;  // 'line' . "\n" . 'line' ...: gnuplot's single-quoted strings keep every other character as is
    for (const std::string& line : title) gp_title += (gp_title.empty() ? "" : " . \"\\n\" . ") + gp_quote(line);
    {
      std::ofstream g(script);
      g << "set terminal pngcairo size 900,600\nset output " << gp_quote(png) << "\nset title " << gp_title << " noenhanced\n"
        << "set xlabel 'TransPoint P'\nset ylabel 'median time (ms)'\nset key top left\nset grid\n"
        << "plot " << gp_quote(dat) << " using 1:2 with linespoints title 'forward', '' using 1:3 with linespoints title "
        << "'forward+backward'";
      if (with_baseline)
        g << ", '' using 1:4 with linespoints title 'PyTorch forward', '' using 1:5 with linespoints title "
          << "'PyTorch forward+backward'";
      g << "\n";
    }
    if (std::system(("gnuplot " + sh_quote(script)).c_str()) == 0) return "";
    return "gnuplot failed on " + script;
  }
  if (std::system("python3 -c 'import matplotlib' >/dev/null 2>&1") == 0) {
    const std::string py =
        "import sys, math, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if not l.startswith('#')]\n"
        "P = [r[0] for r in rows]\nplt.figure(figsize=(9, 6))\n"
        "for col, name in ((1, 'forward'), (2, 'forward+backward'), (3, 'PyTorch forward'), (4, 'PyTorch forward+backward')):\n"
        "    ys = [r[col] for r in rows]\n"
        "    if not all(math.isnan(y) for y in ys): plt.plot(P, ys, marker='o', label=name)\n"
        "plt.xlabel('TransPoint P'); plt.ylabel('median time (ms)'); plt.title(sys.argv[3], fontsize=9)\n"
        "plt.grid(True); plt.legend(); plt.savefig(sys.argv[2], dpi=100)\n";
    const std::string script = png + ".py";
    std::ofstream(script) << py;
    if (std::system(("python3 " + sh_quote(script) + " " + sh_quote(dat) + " " + sh_quote(png) + " " +
                     sh_quote(title[0] + "\n" + title[1] + "\n" + title[2])).c_str()) == 0)
      return "";
    return "matplotlib failed on " + script;
  }
  return "no plot: neither gnuplot nor python3 with matplotlib is installed here (the data is in " + dat + ")";
}

}  // namespace transmamba::bench
