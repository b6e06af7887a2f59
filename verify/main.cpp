// tm-verify: runs the checks of the catalogue (verify/harness.hpp) and the golden fixtures
// (verify/fixture_checks.hpp), and prints what a person reads to trust the numbers: one row per check or fixture
// file (name, cases, worst error, bound, status), a replay command for any failure, and a summary line.
// DESIGN.md section 10.
//
// `tm-verify --check FILE...` checks only the given fixture files, whatever their names (fixtures/SCHEMA.md).
//
// Exit status: 0 all passed, 1 a check failed, 2 bad usage or input (a fixture file that cannot be checked).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <unistd.h>

#include "common/cli.hpp"
#include "cuda/device.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/fixture_checks.hpp"
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
  std::string fixtures_dir;  // default: default_fixtures_dir()
  std::vector<std::string> check_files;  // --check: only these files
};

// A suite is the part of a name before the dot; a kernel check ("emulated.conv", "emulated.conv.bf16") is also
// selected by its family ("conv"), which runs it in every place and precision it can run (--dtype narrows).
// An opt-in check (Check::opt_in) only by its name or family, never by "all" or its suite.
bool selected(const Check& c, const std::string& suite) {
  const bool named = suite == c.name || suite == c.name.substr(c.name.find('.') + 1) || suite == c.family();
  return named || (!c.opt_in && (suite == "all" || suite == c.suite()));
}

// Fixture rows are named "fixture:<file>"; --suite fixture selects them all.
bool fixture_selected(const std::string& file, const std::string& suite) {
  return suite == "all" || suite == "fixture" || suite == "fixture:" + file;
}

std::string fmt_error(const Comparison& c) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2e", c.rel_norm);
  return buf;
}

// tm-verify --check FILE...: each file checked by the schema (kind and config from its metadata), every tensor
// compared printed, then what the file did not hold. Exit 2 when a file could not be checked (it names the
// problem), else 1 when a comparison failed.
int check_files(const std::vector<std::string>& paths) {
  int passed = 0, failed = 0, errors = 0;
  for (const std::string& path : paths) {
    const FixtureReport r = check_fixture_path(path);
    if (!r.error.empty()) {
      std::printf("%s: ERROR\n  %s\n", path.c_str(), r.error.c_str());
      ++errors;
      continue;
    }
    std::printf("%s: kind %s, config %s\n", path.c_str(), r.kind.c_str(), r.config.c_str());
    for (const Comparison& c : r.comparisons) std::printf("  %s\n", r.describe(c).c_str());
    std::printf("  compared %zu tensor%s", r.comparisons.size(), r.comparisons.size() == 1 ? "" : "s");
    if (r.absent.empty()) std::printf("; none of the schema absent\n");
    else {
      std::printf("; absent, not compared (%zu):", r.absent.size());
      for (const std::string& name : r.absent) std::printf(" %s", name.c_str());
      std::printf("\n");
    }
    if (!r.ignored.empty()) {
      std::printf("  not in the schema of '%s', not compared (%zu):", r.kind.c_str(), r.ignored.size());
      for (const std::string& name : r.ignored) std::printf(" %s", name.c_str());
      std::printf("\n");
    }
    const bool ok = r.passed();
    std::printf("  %s (%.2f s)\n", ok ? "ok" : "FAIL", r.seconds);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed, %d could not be checked\n", passed, failed, errors);
  return errors ? 2 : failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"tm-verify: checks the TransMamba reference (and the CUDA kernels when a GPU is present) with\n"
               "random properties, finite differences and golden fixtures. Exit 0: all passed, 1: a check\n"
               "failed, 2: bad usage."};
  app.add_option("--suite", opt.suite, "a suite (the part of a check's name before the dot), one check's full "
                                       "name, 'fixture' (every fixture file), 'fixture:<file>', or 'all'; an opt-in "
                                       "check (--list) runs only under its own name")->capture_default_str();
  app.add_option("--backend", opt.backend, "cpu (the reference), emulated (the kernels on the CPU emulation), cuda (the "
                                           "kernels on the GPU) or all")
      ->check(CLI::IsMember({"cpu", "emulated", "cuda", "all"}))->capture_default_str();
  app.add_option("--dtype", opt.dtype, "kernel precision: fp32, bf16 or all")->check(CLI::IsMember({"fp32", "bf16", "all"}))->capture_default_str();
  app.add_option("--cases", opt.cases, "random cases per check (default: each check's own)")->check(whole_number(1));
  app.add_option("--seed", opt.seed, "RapidCheck seed (default: a random seed, printed)")->check(whole_number(0));
  app.add_option("--fixtures", opt.fixtures_dir, "directory of fixture files to check, any that follow fixtures/SCHEMA.md "
                                                 "(default: the repository's fixtures/, or fixtures/ next to the binary, "
                                                 "where every fixture of the catalogue must be)");
  app.add_option("--check", opt.check_files, "check only these fixture files, whatever their names: kind and config "
                                             "from their metadata (fixtures/SCHEMA.md), recomputed with the double "
                                             "reference from their own inputs; exit 2 when a file cannot be checked");
  app.add_option("--json", opt.json_path, "also write the results to this JSON file");
  app.add_flag("--list", opt.list, "list the checks and exit");
  if (const auto exit_code = parse_command_line(app, argc, argv)) return *exit_code;
  if (!opt.check_files.empty()) {
    for (const char* other : {"--suite", "--backend", "--dtype", "--cases", "--fixtures", "--list"})
      if (app.count(other)) {
        std::cerr << "tm-verify: --check checks only the files given; it cannot be combined with " << other << "\n";
        return 2;
      }
    return check_files(opt.check_files);
  }
  opt.seed_given = app.count("--seed") > 0;
  if (!opt.seed_given) opt.seed = std::random_device{}() | (std::uint64_t(std::random_device{}()) << 32);

  std::vector<const Check*> checks;
  const bool run_cpu = opt.backend == "cpu" || opt.backend == "all";
  if (run_cpu)
    for (const Check& c : cpu_checks())
      if (selected(c, opt.suite)) checks.push_back(&c);
  // The kernel checks, in the places this build and machine can run them; the others get a "skipped" row.
  static const std::vector<Check> emulated = kernel_checks(gpu::Backend::emulated), on_gpu = kernel_checks(gpu::Backend::cuda);
  const bool want_fp32 = opt.dtype != "bf16", want_bf16 = opt.dtype != "fp32";
  std::vector<std::pair<std::string, std::string>> skipped_rows;  // name, why
  auto add_kernels = [&](const std::string& backend, const std::vector<Check>& all, bool available, const std::string& why) {
    if (opt.backend != backend && opt.backend != "all") return;
    auto wanted = [&](const Check& c) {
      return selected(c, opt.suite) && (c.dtype() == "bf16" ? want_bf16 : want_fp32);
    };
    if (std::none_of(all.begin(), all.end(), wanted)) return;
    if (!available) return skipped_rows.push_back({backend, why});
    for (const Check& c : all)
      if (wanted(c)) checks.push_back(&c);
  };
  add_kernels("emulated", emulated, gpu::emulation_compiled_in(), "this build has no emulated kernels (no CUDA headers)");
  add_kernels("cuda", on_gpu, gpu::cuda_device_available(),
              gpu::cuda_compiled_in() ? "no CUDA device" : "cpu-only build (nvcc not found)");
  const bool fixtures_given = app.count("--fixtures") > 0;
  if (fixtures_given) {
    std::error_code ec;
    std::filesystem::directory_iterator probe(opt.fixtures_dir, ec);
    if (ec) {
      std::cerr << "tm-verify: --fixtures " << opt.fixtures_dir << ": cannot read the directory: " << ec.message()
                << "\n";
      return 2;
    }
  } else {
    opt.fixtures_dir = default_fixtures_dir();
  }
  const bool want_fixtures =
      run_cpu && (opt.suite == "all" || opt.suite == "fixture" || opt.suite.rfind("fixture:", 0) == 0);
  if (checks.empty() && skipped_rows.empty() && !want_fixtures) {
    std::cerr << "tm-verify: no check matches --suite " << opt.suite << " --backend " << opt.backend << " --dtype "
              << opt.dtype << " (see --list)\n";
    return 2;
  }
  if (opt.list) {
    auto row = [](const Check& c) {
      std::printf("%-30s %4d cases  %s%s\n", c.name.c_str(), c.default_cases,
                  c.opt_in ? "[opt-in: runs only when named] " : "", c.description.c_str());
    };
    for (const Check& c : cpu_checks()) row(c);
    for (const FixtureSpec& s : fixture_specs())
      std::printf("%-30s %4d case   %s (%s)\n", ("fixture:" + s.file_name()).c_str(), 1, s.description.c_str(),
                  s.kind.c_str());
    for (const auto* part : {&emulated, &on_gpu})
      for (const Check& c : *part) row(c);
    return 0;
  }

  std::printf("tm-verify  seed %llu  backend %s  %s\n", (unsigned long long)opt.seed, opt.backend.c_str(),
              gpu::describe().c_str());
  int width = 28;  // of the name column
  for (const Check* c : checks) width = std::max(width, int(c->name.size()));
  if (want_fixtures)
    for (const FixtureSpec& s : fixture_specs()) width = std::max(width, int(("fixture:" + s.file_name()).size()));
  std::printf("%-*s %6s %10s %8s  %s\n", width, "check", "cases", "worst rel", "bound", "status");
  const bool tty = isatty(fileno(stderr));
  int passed = 0, failed = 0, skipped = 0, errors = 0;  // errors: fixture files that could not be checked
  nlohmann::json results = nlohmann::json::array();
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < checks.size(); ++i) {
    const Check& c = *checks[i];
    if (tty) std::fprintf(stderr, "\r[%zu/%zu] %s ...\033[K", i + 1, checks.size(), c.name.c_str());
    const auto t0 = std::chrono::steady_clock::now();
    const CheckReport r = run_check(c, opt.seed, opt.cases);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tty) std::fprintf(stderr, "\r\033[K");
    // Passed by the floor: a kernel check's is the rounding its sums allow (kernel_case.hpp), a CPU check's the
    // finite differences' resolution (finite_diff.hpp).
    const bool by_floor = r.worst.rel_norm > r.worst.bound && r.worst.abs_norm <= r.worst.abs_floor;
    const bool kernel_check = c.suite() == "emulated" || c.suite() == "cuda";
    const char* floor_note = !by_floor      ? ""
                             : kernel_check ? ": error within the rounding floor of its sums"
                                            : ": error below the finite differences' own resolution";
    std::printf("%-*s %6d %10s %8.0e  %s  (%s%s, %.1f s)\n", width, c.name.c_str(), r.cases, fmt_error(r.worst).c_str(),
                r.worst.bound, r.passed ? "ok" : "FAIL", r.worst.name.c_str(), floor_note, secs);
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
  if (want_fixtures && opt.fixtures_dir.empty()) {
    const std::string why = "no fixtures directory found (give --fixtures DIR)";
    std::printf("%-*s %6s %10s %8s  skipped: %s\n", width, "fixture", "-", "-", "-", why.c_str());
    ++skipped;
    results.push_back({{"name", "fixture"}, {"skipped", why}});
  } else if (want_fixtures) {
    if (tty) std::fprintf(stderr, "\r[fixtures] %s ...\033[K", opt.fixtures_dir.c_str());
    std::vector<FixtureReport> reports;
    try {
      reports = check_fixture_dir(opt.fixtures_dir, /*require_catalogue=*/!fixtures_given);
    } catch (const SafetensorsError& e) {
      if (tty) std::fprintf(stderr, "\r\033[K");
      std::cerr << "tm-verify: " << e.what() << "\n";
      return 2;
    }
    if (tty) std::fprintf(stderr, "\r\033[K");
    int rows = 0;
    for (const FixtureReport& r : reports) {
      if (!fixture_selected(r.file, opt.suite)) continue;
      ++rows;
      const std::string name = "fixture:" + r.file;
      const Comparison w = r.worst();
      const bool ok = r.passed();
      std::printf("%-*s %6d %10s %8.0e  %s  (%s, %.1f s)\n", width, name.c_str(), 1,
                  r.error.empty() ? fmt_error(w).c_str() : "-", w.bound, ok ? "ok" : "FAIL",
                  r.error.empty() ? w.name.c_str() : "error", r.seconds);
      if (!r.absent.empty()) std::printf("  %zu tensors of the schema absent (tm-verify --check lists them)\n", r.absent.size());
      if (!ok) {
        if (!r.error.empty()) std::printf("  %s\n", r.error.c_str());
        errors += !r.error.empty();
        // The failing tensors, stages first, each group in the order computed (the earliest stage that differs
        // is nearest the bug), then outputs and gradients; at most 12.
        std::vector<const Comparison*> failing;
        for (const char* prefix : {"stage.", "output.", "grad."})
          for (const Comparison& c : r.comparisons)
            if (!c.passed() && c.name.rfind(prefix, 0) == 0) failing.push_back(&c);
        for (std::size_t k = 0; k < failing.size() && k < 12; ++k) std::printf("  %s\n", r.describe(*failing[k]).c_str());
        if (failing.size() > 12) std::printf("  ... and %zu more tensors differ\n", failing.size() - 12);
        std::printf("  replay: tm-verify --suite %s --fixtures %s\n", name.c_str(), opt.fixtures_dir.c_str());
      }
      std::fflush(stdout);
      (ok ? passed : failed)++;
      results.push_back({{"name", name}, {"cases", 1}, {"passed", ok}, {"worst_rel", w.rel_norm},
                         {"worst_max_abs", w.max_abs}, {"worst_tensor", w.name}, {"bound", w.bound},
                         {"seconds", r.seconds}, {"failure", r.error}});
    }
    if (rows == 0) {
      std::cerr << "tm-verify: no fixture matches --suite " << opt.suite << " in " << opt.fixtures_dir << " (see --list)\n";
      return 2;
    }
  }
  for (const auto& [name, why] : skipped_rows) {
    std::printf("%-*s %6s %10s %8s  skipped: %s\n", width, name.c_str(), "-", "-", "-", why.c_str());
    ++skipped;
    results.push_back({{"name", name}, {"skipped", why}});
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
  if (errors) std::printf("%d fixture file%s could not be checked (exit 2)\n", errors, errors == 1 ? "" : "s");
  return errors ? 2 : failed ? 1 : 0;
}
