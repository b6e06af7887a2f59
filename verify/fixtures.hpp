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
// A file holds F64 tensors (and a model's token ids, I64), named by what they are:
//   input.*     what the computation takes (a layer's u; a scan's x, dt, A, B, C, S_init; a model's tokens)
//   param.*     the layer's parameters (MixerParams names) or the model's (ModelParams names, e.g.
//               param.blocks.0.mixer.W_in)
//   upstream.*  the fixed upstream gradient: the gradients are those of loss = Σ upstream.d_o ∘ output.o
//   output.*    the outputs; a decode run's: the logits of the prompt and of each decoded token, and the
//               decode state after the last token (output.layers.<l>.*)
//   stage.*     intermediate results: S0, chunk states, the state entering each chunk, y before the norm;
//               a model's residual stream after each block's mixer (h_mid) and MLP (h_out); the decode
//               state after prefill (stage.prefill.layers.<l>.scan_state, kv_B, kv_x, conv_window).
//               A KV cache of n tokens is [n, G, N] and [n, H, p]; n = 0 once the layer has decoded a token
//               in scan mode.
//   grad.*      d loss / d every input and parameter (grad.d_x is the gradient of input.x); a model's loss
//               is its own, output.loss
// in the natural shapes: [T, H, p] for x and y, [T, G, N] for B and C, [H, p, N] for a state,
// [chunks, H, p, N] for chunk states (DESIGN.md's [T, H·p] matrices, with the head axis split out). A
// layer's chunks are those of its scan over tokens P..T-1, counted from P (none when P = T). The
// __metadata__ holds:
//   format_version  "1"
//   fixture, kind   the fixture's name (the file is <fixture>.safetensors) and its kind
//   description     one line
//   config          JSON: {"D","E","H","G","N","W","chunk","T","P"}; a model and a decode run have no "P"
//                   but "V","F","n_layers","tie_embeddings","schedule" (parse_schedule's text) and
//                   "transpoints" (P of every layer); a decode run also "prompt" (T0, the tokens prefilled;
//                   "T" is T_plan, every token)
//   seed            the seed the inputs, parameters and upstream gradients are drawn from
//   generator       the command that writes the file
//
// To add a fixture of an existing kind: one line in fixture_specs(). To add a kind: one function in fixtures.cpp that takes its inputs with FixtureData::input() and stores its results
// with FixtureData::output(), one line in the table of kinds, and its shapes in tests/test_fixtures.py.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "reference/config.hpp"
#include "reference/model.hpp"
#include "verify/compare.hpp"
#include "verify/safetensors.hpp"

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

  std::string file_name() const { return name + ".safetensors"; }
  nlohmann::ordered_json config_json() const;  // the metadata's config
  // model and decode: the ModelConfig of cfg and extra's V, F, n_layers, tie_embeddings, schedule.
  ModelConfig model_config() const;
};

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
  std::vector<Comparison> comparisons;  // one per stored output, stage output and gradient
  std::string error;                    // why the file could not be checked: missing, corrupt, not its definition
  double seconds = 0;

  bool passed() const;
  Comparison worst() const;  // the comparison closest to (or furthest over) its bound
};

// Reads and checks dir/<spec.file_name()>.
FixtureReport check_fixture_file(const std::string& dir, const FixtureSpec& spec);
// One report per defined fixture (a missing file is an error) and per other *.safetensors file in dir (an
// error: no definition), sorted by file name. Throws SafetensorsError when dir cannot be listed.
std::vector<FixtureReport> check_fixture_dir(const std::string& dir);

// The repository's fixtures/ (compiled in) when it exists, else fixtures/ next to the running binary when
// that exists, else "".
std::string default_fixtures_dir();

}  // namespace transmamba
