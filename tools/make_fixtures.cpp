// tm-fixtures: writes fixtures (DESIGN.md section 9; what a file holds: fixtures/SCHEMA.md) from the double
// reference, each file atomically (a temp file renamed onto it: never a half-written file).
//
//   tm-fixtures [catalogue] [--out fixtures] [--only NAME]   the built-in catalogue (regenerates fixtures/)
//   tm-fixtures make KIND --T .. --P .. (every config value) --seed S --out FILE [--force]
//                                                          one fixture of any kind at any shape
//   tm-fixtures schema                                     prints the generated part of fixtures/SCHEMA.md
//
// Exit 0: written, 2: bad usage, a file that exists (make without --force), or a file that could not be written.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "common/cli.hpp"
#include "fixture_format/fixtures.hpp"

using namespace transmamba;
namespace fs = std::filesystem;

namespace {

// The built-in catalogue (fixture_specs()), or one fixture of it, into directory out.
int write_catalogue(const std::string& out, const std::string& only) {
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

// The values of `tm-fixtures make`: every config key (config_keys()) has its flag; E is given as p (E = H·p).
struct MakeOptions {
  std::string kind, out, schedule = "0,6,13";
  int T = 13, P = 0, D = 5, H = 4, p = 4, G = 2, N = 3, W = 4, chunk = 4, V = 11, F = 6, layers = 3, prompt = 5;
  bool tie = false, force = false, P_given = false;
  std::uint64_t seed = 1;
};

int make_fixture(const MakeOptions& o, const std::string& command) {
  nlohmann::json config{{"D", o.D}, {"E", o.H * o.p}, {"H", o.H}, {"G", o.G}, {"N", o.N}, {"W", o.W}, {"chunk", o.chunk}, {"T", o.T}};
  const bool model = o.kind == "model" || o.kind == "decode";
  if (model) config.update({{"V", o.V}, {"F", o.F}, {"n_layers", o.layers}, {"tie_embeddings", o.tie}, {"schedule", o.schedule}});
  if (o.kind == "decode") config["prompt"] = o.prompt;
  // P: a scan's is 0, the converter's the prefix (T) unless given; a layer's must be given.
  if (!model) config["P"] = o.P_given ? o.P : o.kind == "converter" ? o.T : 0;
  if (o.kind == "layer" && !o.P_given) {
    std::cerr << "tm-fixtures make layer: give --P, the TransPoint (0 <= P <= T)\n";
    return 2;
  }
  FixtureSpec spec;
  try {
    spec = fixture_spec(o.kind, config, fs::path(o.out).stem().string(), o.seed);
  } catch (const std::invalid_argument& e) {
    std::cerr << "tm-fixtures make: " << e.what() << "\n";
    return 2;
  }
  spec.generator = command;
  std::error_code ec;
  if (fs::exists(o.out, ec) && !o.force) {
    std::cerr << "tm-fixtures make: " << o.out << " exists; give --force to overwrite it\n";
    return 2;
  }
  try {
    const SafetensorsFile file = build_fixture(spec);
    write_safetensors_atomic(o.out, file);
    std::printf("%s: %s, %zu tensors, %ju bytes\n", o.out.c_str(), spec.description.c_str(), file.tensors.size(),
                std::uintmax_t(fs::file_size(o.out)));
  } catch (const std::exception& e) {
    std::cerr << "tm-fixtures make: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tm-fixtures: writes fixtures (safetensors, float64) from the double reference; what a file holds: "
               "fixtures/SCHEMA.md.\nWithout a subcommand: as 'catalogue'."};
  app.require_subcommand(0, 1);
  std::string out = "fixtures", only;
  app.add_option("--out", out, "(catalogue) directory to write into (created when missing)")->capture_default_str();
  app.add_option("--only", only, "(catalogue) write only the fixture with this name");

  CLI::App* catalogue = app.add_subcommand("catalogue", "write the built-in catalogue of fixtures (regenerates the "
                                                        "repository's fixtures/ when run from its root)");
  catalogue->add_option("--out", out, "directory to write into (created when missing)")->capture_default_str();
  catalogue->add_option("--only", only, "write only the fixture with this name");

  MakeOptions m;
  CLI::App* make = app.add_subcommand("make", "write one fixture of a kind at any config, from --seed");
  std::string kinds;
  for (const std::string& k : fixture_kinds_list()) kinds += (kinds.empty() ? "" : ", ") + k;
  make->add_option("KIND", m.kind, "the kind: " + kinds)->required()->check(CLI::IsMember(fixture_kinds_list()));
  const auto flag = [&](const char* name, int& v, const std::string& key, long long min) {
    make->add_option(name, v, std::string(config_key_meaning(key)))->check(whole_number(min))->capture_default_str();
  };
  flag("--T", m.T, "T", 1);
  CLI::Option* P = make->add_option("--P", m.P, std::string(config_key_meaning("P")) + " (default: 0 for a scan, T for "
                                                "the converter; required for a layer)")->check(whole_number(0));
  flag("--D", m.D, "D", 1);
  flag("--H", m.H, "H", 1);
  make->add_option("--p", m.p, "head dim; E = H·p")->check(whole_number(1))->capture_default_str();
  flag("--G", m.G, "G", 1);
  flag("--N", m.N, "N", 1);
  flag("--W", m.W, "W", 1);
  flag("--chunk", m.chunk, "chunk", 1);
  flag("--V", m.V, "V", 1);
  flag("--F", m.F, "F", 1);
  flag("--layers", m.layers, "n_layers", 1);
  make->add_flag("--tie", m.tie, config_key_meaning("tie_embeddings"));
  make->add_option("--schedule", m.schedule, config_key_meaning("schedule"))->capture_default_str();
  flag("--prompt", m.prompt, "prompt", 1);
  make->add_option("--seed", m.seed, "draws every input, parameter and upstream gradient")->check(whole_number(0))->capture_default_str();
  make->add_option("--out", m.out, "the file to write (any name)")->required();
  make->add_flag("--force", m.force, "overwrite the file when it exists");

  CLI::App* schema = app.add_subcommand("schema", "print the generated part of fixtures/SCHEMA.md (config keys, "
                                                  "dimensions, every kind's tensors)");

  if (const auto exit_code = parse_command_line(app, argc, argv)) return *exit_code;
  if (make->parsed()) {
    m.P_given = P->count() > 0;
    std::string command = "tm-fixtures";
    for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
    return make_fixture(m, command);
  }
  if (schema->parsed()) {
    std::cout << fixture_schema_markdown();
    return 0;
  }
  return write_catalogue(out, only);
}
