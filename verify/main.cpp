// tm-verify: runs the checks of the catalogue (verify/harness.hpp) and prints what a person reads to trust
// the numbers: one row per check (name, cases, worst error, bound, status), a replay command for any
// failure, and a summary line. DESIGN.md section 10.
//
// Exit status: 0 all passed, 1 a check failed, 2 bad usage or input.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <unistd.h>

#include "cuda/device.hpp"
#include "verify/harness.hpp"

using namespace transmamba;

namespace {

struct Options {
  std::string suite = "all";
  std::string backend = "all";
  std::string dtype = "all";
  int cases = 0;
  std::uint64_t seed = 0;
  bool seed_given = false;
  std::string json_path;
  bool list = false;
};

bool selected(const Check& c, const std::string& suite) {
  return suite == "all" || suite == c.suite() || suite == c.name;
}

std::string fmt_error(const Comparison& c) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2e", c.rel_norm);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"tm-verify: checks the TransMamba reference (and the CUDA kernels when a GPU is present) with\n"
               "random properties, finite differences and golden fixtures. Exit 0: all passed, 1: a check\n"
               "failed, 2: bad usage."};
  app.add_option("--suite", opt.suite, "a suite (the part of a check's name before the dot), one check's full "
                                       "name, or 'all'")->capture_default_str();
  app.add_option("--backend", opt.backend, "cpu, cuda or all")->check(CLI::IsMember({"cpu", "cuda", "all"}))->capture_default_str();
  app.add_option("--dtype", opt.dtype, "CUDA precision: fp32, bf16 or all")->check(CLI::IsMember({"fp32", "bf16", "all"}))->capture_default_str();
  app.add_option("--cases", opt.cases, "random cases per check (default: each check's own)")->check(CLI::PositiveNumber);
  app.add_option("--seed", opt.seed, "RapidCheck seed (default: a random seed, printed)");
  app.add_option("--json", opt.json_path, "also write the results to this JSON file");
  app.add_flag("--list", opt.list, "list the checks and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  opt.seed_given = app.count("--seed") > 0;
  if (!opt.seed_given) opt.seed = std::random_device{}() | (std::uint64_t(std::random_device{}()) << 32);

  std::vector<const Check*> checks;
  const bool run_cpu = opt.backend != "cuda";
  if (run_cpu)
    for (const Check& c : cpu_checks())
      if (selected(c, opt.suite)) checks.push_back(&c);
  const bool want_cuda = opt.backend != "cpu" && (opt.suite == "all" || opt.suite == "cuda");
  if (checks.empty() && !want_cuda) {
    std::cerr << "tm-verify: no check matches --suite " << opt.suite << " --backend " << opt.backend
              << " (see --list)\n";
    return 2;
  }
  if (opt.list) {
    for (const Check& c : cpu_checks())
      std::printf("%-30s %4d cases  %s\n", c.name.c_str(), c.default_cases, c.description.c_str());
    std::printf("%-30s %4s        %s\n", "cuda", "-", "CUDA kernels vs the reference (none built yet)");
    return 0;
  }

  std::printf("tm-verify  seed %llu  backend %s  %s\n", (unsigned long long)opt.seed, opt.backend.c_str(),
              cuda::describe().c_str());
  std::printf("%-28s %6s %10s %8s  %s\n", "check", "cases", "worst rel", "bound", "status");
  const bool tty = isatty(fileno(stderr));
  int passed = 0, failed = 0, skipped = 0;
  nlohmann::json results = nlohmann::json::array();
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < checks.size(); ++i) {
    const Check& c = *checks[i];
    if (tty) std::fprintf(stderr, "\r[%zu/%zu] %s ...\033[K", i + 1, checks.size(), c.name.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    const CheckReport r = run_check(c, opt.seed, opt.cases);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tty) std::fprintf(stderr, "\r\033[K");
    const bool by_floor = r.worst.rel_norm > r.worst.bound && r.worst.abs_norm <= r.worst.abs_floor;
    std::printf("%-28s %6d %10s %8.0e  %s  (%s%s, %.1f s)\n", c.name.c_str(), r.cases, fmt_error(r.worst).c_str(),
                r.worst.bound, r.passed ? "ok" : "FAIL", r.worst.name.c_str(),
                by_floor ? ": error below the finite differences' own resolution" : "", secs);
    if (!r.passed) {
      std::printf("  counterexample:\n%s\n  replay: tm-verify --suite %s --seed %llu --cases %d\n", r.failure.c_str(),
                  c.name.c_str(), (unsigned long long)opt.seed, opt.cases > 0 ? opt.cases : c.default_cases);
    }
    std::fflush(stdout);
    (r.passed ? passed : failed)++;
    results.push_back({{"name", c.name}, {"cases", r.cases}, {"passed", r.passed}, {"worst_rel", r.worst.rel_norm},
                       {"worst_max_abs", r.worst.max_abs}, {"worst_tensor", r.worst.name}, {"bound", r.worst.bound},
                       {"seconds", secs}, {"failure", r.failure}});
  }
  if (want_cuda) {
    const std::string why = cuda::compiled_in() ? (cuda::device_available() ? "no CUDA checks built yet" : "no CUDA device")
                                                : "cpu-only build";
    std::printf("%-28s %6s %10s %8s  skipped: %s\n", "cuda", "-", "-", "-", why.c_str());
    ++skipped;
    results.push_back({{"name", "cuda"}, {"skipped", why}});
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!opt.json_path.empty()) {
    std::ofstream out(opt.json_path);
    out << nlohmann::json{{"seed", opt.seed}, {"checks", results}, {"passed", passed}, {"failed", failed},
                          {"skipped", skipped}, {"seconds", total}}.dump(2)
        << "\n";
    if (!out) {
      std::cerr << "tm-verify: cannot write " << opt.json_path << "\n";
      return 2;
    }
  }
  std::printf("(%.1f s)\n%d passed, %d failed, %d skipped\n", total, passed, failed, skipped);
  return failed ? 1 : 0;
}
