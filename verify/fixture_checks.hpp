// The checks of fixture files (DESIGN.md section 9; the schema: fixtures/SCHEMA.md): a stored file's outputs,
// stages and gradients compared with the double reference recomputed from its own inputs and parameters
// (fixture_format/fixtures.hpp, which defines the fixtures and recomputes them), one Comparison
// (verify/compare.hpp) per tensor; tm-verify prints a row per file (FixtureReport), and
// tests/test_fixtures.cpp holds the committed fixtures to their definitions.
//
// Two ways to check a file: check_fixture() holds a file of the catalogue (fixture_specs()) to its definition
// (metadata, every tensor, F64 only); check_fixture_path() takes any file that follows the schema, whatever its
// name: kind and config from its metadata, and every output, stage and gradient it holds compared with the bound
// of its dtype (F64: bounds::kExact; F32: the CUDA fp32 bounds; BF16: bounds::kBf16Ceiling).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fixture_format/fixtures.hpp"
#include "fixture_format/safetensors.hpp"
#include "verify/compare.hpp"

namespace transmamba {

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

}  // namespace transmamba
