// Golden fixtures (DESIGN.md section 9): small cases of the double reference, stored as safetensors files
// (fixture_format/safetensors.hpp), for other implementations (the CUDA kernels, PyTorch, JAX, Python) to test
// against, and to hold the reference itself to its past results. The committed ones are in fixtures/.
//
// This file and fixtures.cpp are the one place that says what a fixture is: which kinds exist, what a fixture
// of each kind draws, computes and stores (one function per kind in fixtures.cpp), its config and metadata,
// and which fixtures the catalogue holds (fixture_specs()). The same function of a kind writes a fixture
// (build_fixture(), from the seed: tm-fixtures) and recomputes one from a stored file's own inputs and
// parameters (recompute_fixture(), recompute_by_schema()): verify/fixture_checks.hpp compares the stored
// outputs, stages and gradients with that recomputation (tm-verify --fixtures, --check; tests/test_fixtures.cpp),
// and tests/test_fixtures.py reads the files from Python.
//
// What a file holds, kind by kind (every tensor name with its role, shape in config terms, dtype and whether it
// is required), and the metadata (format_version, fixture, kind, config, seed, description, generator): the
// schema, fixtures/SCHEMA.md, which `tm-fixtures schema` prints from fixture_schema() below: the kinds' own
// functions in fixtures.cpp are the one table, and a test holds SCHEMA.md to them.
//
// Depends on reference/ (the double reference), fixture_format/safetensors.hpp and common/ (the seeded draws),
// never on verify/ or tools/, which include it.
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

#include "fixture_format/safetensors.hpp"
#include "reference/config.hpp"
#include "reference/model.hpp"

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

// How a tensor of a fixture is stored (its shape, and the shape in config terms, e.g. {"T", "H", "p"}) and how
// the reference sees it: a row-major [rows, cols] matrix (a [T, H, p] tensor as [T, H·p]).
struct FixtureLayout {
  std::vector<int64_t> shape;
  std::vector<std::string> dims;
  int64_t rows = 0, cols = 0;
};

// A fixture recomputed by the double reference from a stored file's own inputs and parameters (each read with
// its dtype and shape checked against the config).
struct RecomputedFixture {
  FixtureSpec spec;     // the definition of the catalogue, or the one the file's metadata gives
  bool strict = true;   // held to a definition of the catalogue: every result stored, all F64
  SafetensorsFile file;  // every tensor of the kind: the inputs as read (F64), the results as recomputed
  std::map<std::string, FixtureLayout> layouts;  // of every tensor of file
  std::vector<std::string> results;  // the outputs, stages and gradients, in the order the computation
                                     // produces them (the first that differs is nearest the bug)

  // The recomputed result `name` as a [rows, cols] matrix.
  Mat<double> reference(const std::string& name) const;
  // The stored result `name` as the reference sees it, its dtype and shape checked (F64 when strict, else any
  // float): throws SafetensorsError naming stored.source and the tensor, also when it is not stored.
  Mat<double> read(const SafetensorsFile& stored, const std::string& name) const;
};

// Recomputes a stored fixture of the catalogue, held to its definition. Throws SafetensorsError, naming
// stored.source and the field, when the file does not fit the definition: metadata that differs, a missing or
// unexpected tensor, an input of the wrong dtype or shape.
RecomputedFixture recompute_fixture(const SafetensorsFile& stored, const FixtureSpec& spec);
// Recomputes any file that follows the schema, named `name` (its file name without .safetensors): kind and
// config from its metadata (an old file without a "kind" key: the kind its name begins with). Throws
// SafetensorsError naming the problem: an unknown kind, a format_version this build does not read, a bad
// config, a missing input, an input whose shape contradicts the config or whose dtype is not a float. An
// upstream gradient may be absent from a file that holds no gradient (taken as zero).
RecomputedFixture recompute_by_schema(const SafetensorsFile& stored, const std::string& name);

// The repository's fixtures/ (compiled in) when it exists, else fixtures/ next to the running binary when
// that exists, else "".
std::string default_fixtures_dir();

}  // namespace transmamba
