// tm-fixtures: writes the golden fixtures (DESIGN.md section 9; what they hold: verify/fixtures.hpp) from the
// double reference, each file atomically (never a half-written file), and prints one line per file.
//
//   tm-fixtures [--out fixtures] [--only NAME]
//
// Run from the repository root to regenerate the committed fixtures/. Exit 0: written, 2: bad usage or a
// file could not be written.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "common/cli.hpp"
#include "verify/fixtures.hpp"

using namespace transmamba;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::string out = "fixtures", only;
  CLI::App app{"tm-fixtures: writes the golden fixtures (safetensors, float64) from the double reference."};
  app.add_option("--out", out, "directory to write into (created when missing)")->capture_default_str();
  app.add_option("--only", only, "write only the fixture with this name");
  if (const auto exit_code = parse_command_line(app, argc, argv)) return *exit_code;
  std::vector<const FixtureSpec*> specs;
  try {
    if (!only.empty()) specs.push_back(&find_fixture(only));
    else
      for (const FixtureSpec& s : fixture_specs()) specs.push_back(&s);
  } catch (const std::invalid_argument& e) {
    std::cerr << "tm-fixtures: " << e.what() << "\n";
    return 2;
  }
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    std::cerr << "tm-fixtures: cannot create directory " << out << ": " << ec.message() << "\n";
    return 2;
  }
  std::size_t total = 0;
  for (const FixtureSpec* spec : specs) {
    const std::string path = (fs::path(out) / spec->file_name()).string();
    try {
      const SafetensorsFile file = build_fixture(*spec);
      write_safetensors_atomic(path, file);
      const std::size_t bytes = fs::file_size(path);
      total += bytes;
      std::printf("%-40s %3zu tensors %8zu bytes\n", path.c_str(), file.tensors.size(), bytes);
    } catch (const std::exception& e) {
      std::cerr << "tm-fixtures: " << e.what() << "\n";
      return 2;
    }
  }
  std::printf("%zu file%s, %zu bytes\n", specs.size(), specs.size() == 1 ? "" : "s", total);
  return 0;
}
