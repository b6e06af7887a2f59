// Golden fixtures (DESIGN.md section 9): small cases of the double reference, stored in fixtures/ as
// safetensors files, for other implementations (the CUDA kernels, Python) to test against, and to hold the
// reference itself to its past results.
//
// This file and fixtures.cpp are the one place that says which fixtures exist (fixture_specs()) and what a
// fixture of each kind draws, computes and stores (one function per kind in fixtures.cpp). The same
// function writes a fixture (tm-fixtures, from the seed) and checks one (from the stored inputs):
// tests/test_fixtures.cpp and tm-verify --fixtures call check_fixture_dir(); tests/test_fixtures.py reads
// the files from Python.
//
// What a file holds, kind by kind (every tensor name with its role, shape in config terms, dtype and whether it
// is required), and the metadata (format_version, fixture, kind, config, seed, description, generator): the
// schema, fixtures/SCHEMA.md, which `tm-fixtures schema` prints from fixture_schema() below: the kinds' own
// functions in fixtures.cpp are the one table, and a test holds SCHEMA.md to them.
//
// Two ways to check a file: check_fixture() holds a file of the catalogue (fixture_specs()) to its definition
// (metadata, every tensor, F64 only); check_fixture_path() takes any file that follows the schema, whatever its
// name: kind and config from its metadata, and every output, stage and gradient it holds compared with the bound
// of its dtype (F64: bounds::kExact; F32: the CUDA fp32 bounds; BF16: bounds::kBf16Ceiling).
//
// To add a fixture of an existing kind: one line in fixture_specs(). To add a kind: one function in
// fixtures.cpp that takes its inputs with FixtureData::input() and stores its results with
// FixtureData::output(), one line in the table of kinds; then regenerate fixtures/SCHEMA.md
// (tm-fixtures schema).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference/config.hpp"
#include "reference/model.hpp"
#include "verify/compare.hpp"
#include "fixture_format/safetensors.hpp"

namespace transmamba {

constexpr int kFixtureFormatVersion = 1;

struct FixtureSpec {
  std::string name;         // the file is <name>.safetensors
  std::string kind;         // "scan_recurrent", "scan_quadratic", "scan_chunked", "converter", "layer",
                            // "model", "decode"
  std::string description;  // one line, stored in __metadata__
  MixerConfig cfg;          // a model's: of every mixer layer
  int T = 1;                // tokens (the converter: the prefix length, = P; decode: T_plan, every token)
  int P = 0;                // TransPoint (a scan: 0, it starts from S_init); -1: per layer (a model, decode)
  std::uint64_t seed = 0;   // draws every input, parameter and upstream gradient
  nlohmann::json extra = nlohmann::json::object();  // a kind's own config fields (below)
  std::string generator;    // the command stored in __metadata__; "" for the catalogue's (tm-fixtures --only)

  std::string file_name() const { return name + ".safetensors"; }
  nlohmann::ordered_json config_json() const;  // the metadata's config
  // model and decode: the ModelConfig of cfg and extra's V, F, n_layers, tie_embeddings, schedule.
  ModelConfig model_config() const;
};

// The kinds, in the schema's order: scan_recurrent, scan_quadratic, scan_chunked, converter, layer, model, decode.
std::vector<std::string> fixture_kinds_list();

// A fixture of `kind` at the config given as JSON (the metadata's "config": every key of config_keys(kind);
// "transpoints" may be given, and must then be the schedule's). Throws std::invalid_argument naming the
// unknown kind, the missing, unknown or invalid key.
FixtureSpec fixture_spec(const std::string& kind, const nlohmann::json& config, const std::string& name,
                         std::uint64_t seed = 0);
// The config keys a fixture of `kind` requires, and what each means (for --help and the schema).
std::vector<std::string> config_keys(const std::string& kind);
const char* config_key_meaning(const std::string& key);

// One tensor of the schema of a kind. Per-layer names hold "<l>" (blocks.<l>., layers.<l>.).
struct SchemaTensor {
  std::string name;
  std::string role;   // input, parameter, upstream, output, stage, gradient
  std::string shape;  // in config terms, e.g. "[T, H, p]"
  std::string dtype;  // F64 (I64 for token ids)
  std::string required;  // "yes" (inputs, parameters), "with gradients" (upstream gradients), "no"
};
// Every tensor a fixture of `kind` holds, in the order the computation produces them (inputs first).
std::vector<SchemaTensor> fixture_schema(const std::string& kind);
// fixtures/SCHEMA.md's generated part: the config keys and the tensors of every kind, as Markdown tables.
std::string fixture_schema_markdown();

// Every fixture, in a fixed order.
const std::vector<FixtureSpec>& fixture_specs();
// The fixture with this name; throws std::invalid_argument listing the names when there is none.
const FixtureSpec& find_fixture(const std::string& name);

// The whole file of a fixture: inputs drawn from spec.seed, everything computed from them, metadata.
SafetensorsFile build_fixture(const FixtureSpec& spec);

// Checks a stored fixture against its definition: recomputes it from the stored inputs and parameters and
// compares every stored output, stage output and gradient (one Comparison each, bound bounds::kExact, in the
// order the computation produces them).
// Throws SafetensorsError, naming stored.source and the field, when the file does not fit the definition:
// metadata that differs, a missing or unexpected tensor, a tensor of the wrong dtype or shape.
std::vector<Comparison> check_fixture(const SafetensorsFile& stored, const FixtureSpec& spec);

struct FixtureReport {
  std::string file;                     // file name, e.g. "layer_p0_g1.safetensors"
  std::string kind, config;             // from the metadata (config: JSON), once read
  std::vector<Comparison> comparisons;  // one per stored output, stage output and gradient
  std::map<std::string, std::string> dtypes;  // of each compared tensor
  std::vector<std::string> absent;      // outputs, stages and gradients of the schema the file does not hold
  std::vector<std::string> ignored;     // tensors of the file that are not in its kind's schema (not compared)
  std::string error;                    // why the file could not be checked: missing, corrupt, not its definition
  double seconds = 0;

  bool passed() const;
  Comparison worst() const;  // the comparison closest to (or furthest over) its bound
  // The worst element of a comparison as an index of the stored tensor, e.g. "[3, 1, 2]" of a [T, H, p] tensor.
  std::string element(const Comparison& c) const;
  // "output.y: rel 2.1e-03 > 1e-12, max abs 4.0e-03 at [3, 1, 2] (file 0.51, reference 0.514) FAIL"
  std::string describe(const Comparison& c) const;

  std::map<std::string, std::pair<std::vector<int64_t>, int64_t>> views;  // name -> stored shape, matrix cols
};

// Reads and checks dir/<spec.file_name()>.
FixtureReport check_fixture_file(const std::string& dir, const FixtureSpec& spec);
// Reads and checks any file that follows the schema: kind and config from its metadata (an old file without a
// "kind" key: the kind its name begins with), the double reference recomputed from its own inputs and
// parameters. error names the problem: unreadable or corrupt file, unknown kind, bad config, a missing input,
// a tensor whose shape contradicts the config or whose dtype is not a float; nothing to compare.
FixtureReport check_fixture_path(const std::string& path);
// One report per *.safetensors file in dir, sorted by file name: a file named as a fixture of the catalogue is
// held to its definition (check_fixture_file), any other by its metadata (check_fixture_path). With
// require_catalogue, a fixture of the catalogue missing from dir is an error too. Throws SafetensorsError
// when dir cannot be listed.
std::vector<FixtureReport> check_fixture_dir(const std::string& dir, bool require_catalogue = true);

// The repository's fixtures/ (compiled in) when it exists, else fixtures/ next to the running binary when
// that exists, else "".
std::string default_fixtures_dir();

}  // namespace transmamba
