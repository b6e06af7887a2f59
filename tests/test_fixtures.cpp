// The golden fixtures (fixture_format/fixtures.hpp, checked by verify/fixture_checks.hpp): every committed file
// recomputes from its stored inputs within 1e-12, the generator reproduces them (inputs byte for byte, values
// within 1e-12), and a truncated, corrupt or mismatched file is reported by file name and field.
#include "verify/fixture_checks.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sys/wait.h>
#include <tuple>

#include "fixture_format/fixtures.hpp"
#include "fixture_format/safetensors.hpp"
#include "verify/bounds.hpp"
#include "tests/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace transmamba;
using Catch::Matchers::Contains;

namespace {

std::string fixtures_dir() {
  const std::string dir = default_fixtures_dir();
  REQUIRE(!dir.empty());
  return dir;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

}  // namespace

TEST_CASE("fixtures: every committed file recomputes from its stored inputs within 1e-12", "[fixtures]") {
  const std::vector<FixtureReport> reports = check_fixture_dir(fixtures_dir());
  REQUIRE(reports.size() >= fixture_specs().size());
  for (const FixtureReport& r : reports) {
    INFO(r.file << ": " << (r.error.empty() ? r.worst().report() : r.error));
    CHECK(r.error.empty());
    CHECK(r.comparisons.size() > 0);
    for (const Comparison& c : r.comparisons) {
      INFO(c.report());
      CHECK(c.passed());
    }
  }
}

// The generator draws the same inputs (byte for byte) and computes the same values as the stored files, up to
// bounds::kExact: a change of the reference's formulas that is rounding only (issue 8 rearranged two
// cancellations) moves the computed values by ~1e-15 and must not force regenerating the golden values, which
// then keep checking the new formulas against what the old ones computed (DESIGN.md section 9).
TEST_CASE("fixtures: tm-fixtures reproduces the committed files (inputs byte for byte, values within 1e-12)", "[fixtures]") {
  auto is_input = [](const std::string& name) {
    return name.rfind("input.", 0) == 0 || name.rfind("param.", 0) == 0 || name.rfind("upstream.", 0) == 0;
  };
  auto values = [](const SafetensorsTensor& t) {  // F64 -> [numel, 1]
    Mat<double> m(t.bytes.size() / sizeof(double), 1);
    std::memcpy(m.data(), t.bytes.data(), t.bytes.size());
    return m;
  };
  for (const FixtureSpec& spec : fixture_specs()) {
    const fs::path path = fs::path(fixtures_dir()) / spec.file_name();
    INFO(path.string());
    REQUIRE(fs::exists(path));
    const SafetensorsFile built = build_fixture(spec), stored = read_safetensors(path.string());
    CHECK(built.metadata == stored.metadata);
    REQUIRE(built.tensors.size() == stored.tensors.size());
    for (const auto& [name, t] : built.tensors) {
      INFO("tensor " << name);
      REQUIRE(stored.has(name));
      const SafetensorsTensor& s = stored.at(name);
      REQUIRE(t.dtype == s.dtype);
      REQUIRE(t.shape == s.shape);
      if (is_input(name) || t.dtype != "F64") {
        CHECK(t == s);
      } else {
        const Comparison c = compare(name, values(t), values(s), bounds::kExact);
        INFO(c.report());
        CHECK(c.passed());
      }
    }
  }
}

TEST_CASE("fixtures: the definitions cover the cases DESIGN.md section 9 asks for", "[fixtures]") {
  std::set<std::string> names, kinds;
  bool p0 = false, p_mid_chunk = false, pT = false, g1 = false, gH = false, g_between = false;
  for (const FixtureSpec& s : fixture_specs()) {
    CHECK(names.insert(s.name).second);  // unique names
    kinds.insert(s.kind);
    if (s.kind == "layer") {
      p0 |= s.P == 0;
      pT |= s.P == s.T;
      p_mid_chunk |= s.P > 0 && s.P < s.T && s.P % s.cfg.chunk != 0;
      g1 |= s.cfg.G == 1;
      gH |= s.cfg.G == s.cfg.H;
      g_between |= s.cfg.G > 1 && s.cfg.G < s.cfg.H;
    }
    if (s.kind == "decode") {
      // A decode run whose layers scan throughout (P = 0), switch inside the prompt, switch while decoding
      // and attend throughout (P = T).
      const int T0 = s.extra.at("prompt");
      const std::vector<int> P = s.model_config().schedule.transpoints(s.model_config().n_layers, s.T);
      auto has = [&](auto pred) { return std::any_of(P.begin(), P.end(), pred); };
      CHECK(has([](int p) { return p == 0; }));
      CHECK(has([&](int p) { return p > 0 && p < T0; }));
      CHECK(has([&](int p) { return p >= T0 && p < s.T; }));
      CHECK(has([&](int p) { return p == s.T; }));
    }
    const SafetensorsFile f = build_fixture(s);
    for (const auto& [name, t] : f.tensors) {
      INFO(s.name << ": " << name);
      CHECK(t.dtype == (name == "input.tokens" ? "I64" : "F64"));
    }
  }
  CHECK(kinds == std::set<std::string>{"scan_recurrent", "scan_quadratic", "scan_chunked", "converter", "layer",
                                       "model", "decode"});
  CHECK(p0);
  CHECK(p_mid_chunk);
  CHECK(pT);
  CHECK(g1);
  CHECK(gH);
  CHECK(g_between);
  CHECK_THROWS_WITH(find_fixture("nope"), Contains("no fixture named 'nope'") && Contains("layer_p0_g1"));
}

TEST_CASE("fixtures: a truncated, corrupt or mismatched file is reported by file name and field", "[fixtures]") {
  const FixtureSpec& spec = find_fixture("layer_pmid_g2");
  const fs::path original = fs::path(fixtures_dir()) / spec.file_name();
  REQUIRE(fs::exists(original));
  TempDir tmp;
  const fs::path copy = tmp.path / spec.file_name();
  const std::string copy_name = copy.string();
  const std::vector<uint8_t> bytes = read_bytes(original);
  auto error_of = [&] {
    const FixtureReport r = check_fixture_file(tmp.path.string(), spec);
    INFO(r.error);
    CHECK_THAT(r.error, Contains(copy_name));
    CHECK(!r.passed());
    return r.error;
  };
  // Rewrites the copy from the original through the reader and writer, after edit().
  auto rewrite = [&](auto edit) {
    SafetensorsFile f = read_safetensors(original.string());
    edit(f);
    write_safetensors_atomic(copy_name, f);
  };

  SECTION("an intact copy passes") {
    write_bytes(copy, bytes);
    const FixtureReport r = check_fixture_file(tmp.path.string(), spec);
    INFO(r.error);
    CHECK(r.passed());
  }
  SECTION("truncated inside the data: the first tensor that reaches past the end") {
    write_bytes(copy, std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
    const std::string e = error_of();
    CHECK_THAT(e, Contains("tensor '") && Contains("data_offsets") && Contains("lie outside"));
  }
  SECTION("truncated inside the header") {
    write_bytes(copy, std::vector<uint8_t>(bytes.begin(), bytes.begin() + 100));
    CHECK_THAT(error_of(), Contains("header length") && Contains("truncated"));
  }
  SECTION("a flipped byte in the header: stage.S0's dtype F64 becomes G64") {
    const std::string header(bytes.begin() + 8, bytes.end());
    const std::size_t at = header.find("\"stage.S0\":{\"dtype\":\"F64\"");
    REQUIRE(at != std::string::npos);
    std::vector<uint8_t> flipped = bytes;
    flipped[8 + at + std::strlen("\"stage.S0\":{\"dtype\":\"")] ^= 0x01;  // 'F' -> 'G'
    write_bytes(copy, flipped);
    CHECK_THAT(error_of(), Contains("tensor 'stage.S0'") && Contains("dtype") && Contains("G64"));
  }
  SECTION("a missing tensor") {
    rewrite([](SafetensorsFile& f) { f.tensors.erase("stage.S0"); });
    CHECK_THAT(error_of(), Contains("no tensor 'stage.S0'"));
  }
  SECTION("a missing input") {
    rewrite([](SafetensorsFile& f) { f.tensors.erase("param.A_log"); });
    CHECK_THAT(error_of(), Contains("no tensor 'param.A_log'"));
  }
  SECTION("a tensor of the wrong shape (the same bytes, [T, H*p] instead of [T, H, p])") {
    rewrite([](SafetensorsFile& f) { f.tensors.at("stage.y").shape = {13, 16}; });
    CHECK_THAT(error_of(), Contains("tensor 'stage.y'") && Contains("shape [13, 16]") && Contains("[13, 4, 4]"));
  }
  SECTION("an input of the wrong shape") {
    rewrite([](SafetensorsFile& f) { f.tensors.at("param.W_out").shape = {5, 16}; });
    CHECK_THAT(error_of(), Contains("tensor 'param.W_out'") && Contains("shape [5, 16]") && Contains("[16, 5]"));
  }
  SECTION("a tensor of the wrong dtype") {
    rewrite([](SafetensorsFile& f) {
      const std::vector<double> v = f.doubles("grad.d_A_log");
      f.put_doubles("grad.d_A_log", v, f.at("grad.d_A_log").shape, "F32");
    });
    CHECK_THAT(error_of(), Contains("tensor 'grad.d_A_log'") && Contains("dtype F32"));
  }
  SECTION("an unexpected tensor") {
    rewrite([](SafetensorsFile& f) { f.put_doubles("stage.extra", {1.0}, {1}); });
    CHECK_THAT(error_of(), Contains("tensor 'stage.extra'") && Contains("unexpected"));
  }
  SECTION("a config in the metadata that does not match the definition") {
    rewrite([](SafetensorsFile& f) {
      auto cfg = nlohmann::json::parse(f.meta("config"));
      cfg["P"] = 4;
      f.metadata["config"] = cfg.dump();
    });
    CHECK_THAT(error_of(), Contains("__metadata__ 'config'") && Contains("P is 4") && Contains("has 6"));
  }
  SECTION("another format version") {
    rewrite([](SafetensorsFile& f) { f.metadata["format_version"] = "2"; });
    CHECK_THAT(error_of(), Contains("__metadata__ 'format_version' is '2'"));
  }
  SECTION("a missing metadata key") {
    rewrite([](SafetensorsFile& f) { f.metadata.erase("seed"); });
    CHECK_THAT(error_of(), Contains("__metadata__: no key 'seed'"));
  }
  SECTION("a changed output fails its comparison, which names the tensor and the element") {
    rewrite([](SafetensorsFile& f) {
      SafetensorsMatrix m = f.matrix("grad.d_W_in");
      m(2, 3) *= 1 + 1e-9;
      f.put_matrix("grad.d_W_in", m, f.at("grad.d_W_in").shape);
    });
    const FixtureReport r = check_fixture_file(tmp.path.string(), spec);
    CHECK(r.error.empty());
    CHECK(!r.passed());
    const Comparison w = r.worst();
    INFO(w.report());
    CHECK(w.name == "grad.d_W_in");
    CHECK(w.worst_row == 2);
    CHECK(w.worst_col == 3);
  }
  SECTION("a changed input changes what is recomputed") {
    rewrite([](SafetensorsFile& f) {
      SafetensorsMatrix m = f.matrix("input.u");
      m(0, 0) += 1e-6;
      f.put_matrix("input.u", m, f.at("input.u").shape);
    });
    const FixtureReport r = check_fixture_file(tmp.path.string(), spec);
    CHECK(r.error.empty());
    CHECK(!r.passed());
  }
}

TEST_CASE("fixtures: a model fixture's token ids are checked and drive the recomputation", "[fixtures]") {
  const FixtureSpec& spec = find_fixture("decode_4layers");
  TempDir tmp;
  const std::string copy_name = (tmp.path / spec.file_name()).string();
  auto check_with_tokens = [&](const std::vector<int64_t>& ids, const std::string& dtype) {
    SafetensorsFile f = read_safetensors((fs::path(fixtures_dir()) / spec.file_name()).string());
    f.put_ints("input.tokens", ids, {int64_t(ids.size())}, dtype);
    write_safetensors_atomic(copy_name, f);
    return check_fixture_file(tmp.path.string(), spec);
  };
  const std::vector<int64_t> stored = read_safetensors((fs::path(fixtures_dir()) / spec.file_name()).string()).ints("input.tokens");
  REQUIRE(stored.size() == 13);
  SECTION("the stored ids pass") { CHECK(check_with_tokens(stored, "I64").passed()); }
  SECTION("an id outside [0, V)") {
    std::vector<int64_t> ids = stored;
    ids[4] = 11;
    CHECK_THAT(check_with_tokens(ids, "I64").error,
               Contains(copy_name) && Contains("tensor 'input.tokens'") && Contains("token id 11 outside [0, V=11)"));
  }
  SECTION("ids of the wrong dtype or length") {
    CHECK_THAT(check_with_tokens(stored, "I32").error, Contains("tensor 'input.tokens'") && Contains("dtype I32"));
    CHECK_THAT(check_with_tokens(std::vector<int64_t>(stored.begin(), stored.end() - 1), "I64").error,
               Contains("tensor 'input.tokens'") && Contains("shape [12]") && Contains("[13]"));
  }
  SECTION("another decoded token changes the logits from there on, not the prompt's") {
    std::vector<int64_t> ids = stored;
    ids[9] = (ids[9] + 1) % 11;
    const FixtureReport r = check_with_tokens(ids, "I64");
    REQUIRE(r.error.empty());
    for (const Comparison& c : r.comparisons) {
      INFO(c.report());
      if (c.name == "output.prefill_logits" || c.name.rfind("stage.prefill.", 0) == 0) CHECK(c.passed());
      if (c.name == "output.decode_logits") CHECK(!c.passed());
    }
  }
}

TEST_CASE("fixtures: a directory is checked as a whole", "[fixtures]") {
  TempDir tmp;
  SECTION("every defined fixture that is missing is an error") {
    const std::vector<FixtureReport> reports = check_fixture_dir(tmp.path.string());
    REQUIRE(reports.size() == fixture_specs().size());
    for (const FixtureReport& r : reports) CHECK_THAT(r.error, Contains(r.file) && Contains("missing"));
  }
  SECTION("a file of another name is checked by its metadata; one without a kind is an error") {
    for (const FixtureSpec& s : fixture_specs())
      fs::copy_file(fs::path(fixtures_dir()) / s.file_name(), tmp.path / s.file_name());
    fs::copy_file(fs::path(fixtures_dir()) / "layer_p0_g1.safetensors", tmp.path / "mystery.safetensors");
    SafetensorsFile nameless = read_safetensors((fs::path(fixtures_dir()) / "layer_p0_g1.safetensors").string());
    nameless.metadata.erase("kind");
    write_safetensors_atomic((tmp.path / "nameless.safetensors").string(), nameless);
    std::size_t passed = 0;
    for (const FixtureReport& r : check_fixture_dir(tmp.path.string())) {
      if (r.file == "nameless.safetensors") CHECK_THAT(r.error, Contains("no key 'kind'") && Contains("begins with none"));
      else passed += r.passed();
    }
    CHECK(passed == fixture_specs().size() + 1);
  }
  SECTION("without require_catalogue, only the files present are checked") {
    fs::copy_file(fs::path(fixtures_dir()) / "layer_p0_g1.safetensors", tmp.path / "layer_p0_g1.safetensors");
    const std::vector<FixtureReport> reports = check_fixture_dir(tmp.path.string(), /*require_catalogue=*/false);
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].passed());
  }
  SECTION("a directory that cannot be read") {
    CHECK_THROWS_WITH(check_fixture_dir((tmp.path / "nonexistent").string()),
                      Contains("nonexistent") && Contains("cannot read the fixtures directory"));
  }
}

// ---- the schema (fixtures/SCHEMA.md) and files checked by it, whatever their names ----------------------

namespace {

// A copy of the committed fixture `name` under another file name in dir, after edit().
template <class Edit>
std::string copy_edited(const TempDir& tmp, const std::string& name, const std::string& as, Edit edit) {
  SafetensorsFile f = read_safetensors((fs::path(fixtures_dir()) / (name + ".safetensors")).string());
  edit(f);
  const std::string path = (tmp.path / as).string();
  write_safetensors_atomic(path, f);
  return path;
}
void no_edit(SafetensorsFile&) {}

// Runs a shell command; its exit status and what it printed (stdout and stderr).
std::pair<int, std::string> run(const std::string& command) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace

TEST_CASE("schema: fixtures/SCHEMA.md holds the tables tm-fixtures schema prints from the kinds' code", "[fixtures][schema]") {
  std::ifstream in(fs::path(fixtures_dir()) / "SCHEMA.md");
  REQUIRE(in.good());
  const std::string doc((std::istreambuf_iterator<char>(in)), {});
  const std::string generated = fixture_schema_markdown();
  INFO("regenerate the tables of fixtures/SCHEMA.md with: tm-fixtures schema");
  CHECK(doc.find(generated) != std::string::npos);
  // Every kind has a table, every table a row per tensor of the kind (per layer once).
  for (const std::string& kind : fixture_kinds_list()) CHECK_THAT(generated, Contains("### Kind `" + kind + "`"));
  CHECK_THAT(generated, Contains("| `param.blocks.<l>.mixer.W_in` | parameter | [D, zxbcdt] | F64 | yes |"));
  CHECK_THAT(generated, Contains("| `input.x` | input | [T, H, p] | F64 | yes |"));
  CHECK_THAT(generated, Contains("| `upstream.d_out` | upstream | [T, D] | F64 | with gradients |"));
}

TEST_CASE("schema: a fixture made at another config holds exactly the schema's tensors and checks by its metadata", "[fixtures][schema]") {
  // Other sizes than the catalogue's (D 5, E 16, H 4, G 1/2/4, N 3): p = 3, G = 3 of H = 6, N = 2, W = 3, chunk 5.
  const nlohmann::json mixer{{"D", 7}, {"E", 18}, {"H", 6}, {"G", 3}, {"N", 2}, {"W", 3}, {"chunk", 5}, {"T", 12}};
  TempDir tmp;
  for (const std::string& kind : fixture_kinds_list()) {
    INFO("kind " << kind);
    nlohmann::json config = mixer;
    if (kind == "layer") config["P"] = 7;
    else if (kind == "converter") config["P"] = 12;
    else if (kind.rfind("scan_", 0) == 0) config["P"] = 0;
    else config.update({{"V", 9}, {"F", 5}, {"n_layers", 2}, {"tie_embeddings", kind == "decode"}, {"schedule", "3,12"}});
    if (kind == "decode") config["prompt"] = 4;
    const FixtureSpec spec = fixture_spec(kind, config, "any_name", 7);
    const SafetensorsFile f = build_fixture(spec);
    std::set<std::string> names;
    for (const auto& kv : f.tensors) names.insert(std::regex_replace(kv.first, std::regex(R"((blocks|layers)\.[0-9]+\.)"), "$1.<l>."));
    std::set<std::string> schema;
    for (const SchemaTensor& t : fixture_schema(kind)) {
      schema.insert(t.name);
      CHECK(t.dtype == (t.name == "input.tokens" ? "I64" : "F64"));
    }
    CHECK(names == schema);
    CHECK(nlohmann::json::parse(f.meta("config")).at("T") == 12);
    CHECK(f.meta("kind") == kind);
    const std::string path = (tmp.path / ("made_" + kind + ".safetensors")).string();
    write_safetensors_atomic(path, f);
    const FixtureReport r = check_fixture_path(path);
    INFO(r.error);
    CHECK(r.passed());
    CHECK(r.absent.empty());
    CHECK(r.ignored.empty());
    CHECK(r.kind == kind);
  }
  CHECK_THROWS_WITH(fixture_spec("lstm", mixer, "x"), Contains("unknown kind 'lstm'") && Contains("scan_chunked"));
  nlohmann::json no_P = mixer;
  CHECK_THROWS_WITH(fixture_spec("layer", no_P, "x"), Contains("no key 'P'"));
  no_P["P"] = 13;
  CHECK_THROWS_WITH(fixture_spec("layer", no_P, "x"), Contains("P must be <= T = 12, got 13"));
  no_P["P"] = 2;
  no_P["G"] = 4;
  CHECK_THROWS_WITH(fixture_spec("layer", no_P, "x"), Contains("H % G must be 0"));
  no_P["G"] = 3;
  no_P["Q"] = 4;
  CHECK_THROWS_WITH(fixture_spec("layer", no_P, "x"), Contains("unknown key 'Q'"));
}

TEST_CASE("schema: any file that follows the schema is checked by its metadata, whatever its name", "[fixtures][schema]") {
  TempDir tmp;
  SECTION("a committed fixture under another name passes, held to the double bound") {
    const FixtureReport r = check_fixture_path(copy_edited(tmp, "layer_pmid_g2", "my_layer.safetensors", no_edit));
    INFO(r.error);
    CHECK(r.passed());
    CHECK(r.kind == "layer");
    CHECK(r.worst().bound == bounds::kExact);
    CHECK(r.comparisons.size() == 2 + 9 + 1 + 8);  // outputs, stages, d_u and the 8 parameter gradients
    CHECK(r.absent.empty());
  }
  SECTION("a subset (no gradients, no upstream gradient, no stages) is compared where present; the rest is listed") {
    const FixtureReport r = check_fixture_path(copy_edited(tmp, "scan_chunked_gH", "dump.safetensors", [](SafetensorsFile& f) {
      for (auto it = f.tensors.begin(); it != f.tensors.end();)
        it = it->first.rfind("output.", 0) == 0 || it->first.rfind("input.", 0) == 0 ? std::next(it) : f.tensors.erase(it);
    }));
    INFO(r.error);
    CHECK(r.passed());
    REQUIRE(r.comparisons.size() == 2);
    CHECK(std::set<std::string>(r.absent.begin(), r.absent.end()) ==
          std::set<std::string>{"stage.chunk_states", "stage.start_states", "grad.d_x", "grad.d_dt", "grad.d_A", "grad.d_B",
                                "grad.d_C", "grad.d_S_init"});
  }
  SECTION("a float32 dump (inputs too) is held to the fp32 bounds, forward and gradients") {
    const FixtureReport r = check_fixture_path(copy_edited(tmp, "converter_g2", "f32.safetensors", [](SafetensorsFile& f) {
      for (auto& [name, t] : f.tensors) f.put_doubles(name, f.doubles(name), t.shape, "F32");
    }));
    INFO(r.error);
    CHECK(r.passed());
    for (const Comparison& c : r.comparisons) {
      INFO(c.name);
      CHECK(c.bound == (c.name.rfind("grad.", 0) == 0 ? bounds::kCudaFp32Gradient : bounds::kCudaFp32Forward));
      CHECK(c.rel_norm > 0);  // rounded to float: not the double values
    }
  }
  SECTION("float32 outputs of double inputs that are off by more than the fp32 bound fail") {
    const FixtureReport r = check_fixture_path(copy_edited(tmp, "converter_g2", "f32.safetensors", [](SafetensorsFile& f) {
      std::vector<double> v = f.doubles("output.S0");
      for (double& x : v) x *= 1 + 1e-4;
      f.put_doubles("output.S0", v, f.at("output.S0").shape, "F32");
    }));
    CHECK(r.error.empty());
    CHECK(!r.passed());
    CHECK(r.worst().name == "output.S0");
  }
  SECTION("one changed output element fails, named by tensor and element index") {
    const FixtureReport r = check_fixture_path(copy_edited(tmp, "layer_pmid_g2", "x.safetensors", [](SafetensorsFile& f) {
      std::vector<double> v = f.doubles("stage.y");  // [T 13, H 4, p 4]
      v[(3 * 4 + 1) * 4 + 2] += 1e-6;
      f.put_doubles("stage.y", v, f.at("stage.y").shape);
    }));
    REQUIRE(r.error.empty());
    CHECK(!r.passed());
    const Comparison w = r.worst();
    CHECK(w.name == "stage.y");
    CHECK(r.element(w) == "[3, 1, 2]");
    CHECK_THAT(r.describe(w), Contains("stage.y F64: rel") && Contains("at [3, 1, 2]") && Contains("FAIL"));
  }
  SECTION("an old file without a 'kind' key: the kind its name begins with") {
    const FixtureReport r = check_fixture_path(
        copy_edited(tmp, "scan_quadratic_g1", "scan_quadratic_old.safetensors", [](SafetensorsFile& f) { f.metadata.erase("kind"); }));
    INFO(r.error);
    CHECK(r.passed());
    CHECK(r.kind == "scan_quadratic");
  }
  SECTION("tensors outside the schema are listed, not compared") {
    const FixtureReport r = check_fixture_path(
        copy_edited(tmp, "converter_g2", "c.safetensors", [](SafetensorsFile& f) { f.put_doubles("debug.h", {1.0}, {1}); }));
    CHECK(r.passed());
    CHECK(r.ignored == std::vector<std::string>{"debug.h"});
  }
  // The errors: each names the file and the problem; the file is not checked.
  auto error_of = [&](const std::string& path) {
    const FixtureReport r = check_fixture_path(path);
    CHECK(!r.passed());
    CHECK(r.comparisons.empty());
    CHECK_THAT(r.error, Contains(path));
    return r.error;
  };
  SECTION("an unknown kind") {
    CHECK_THAT(error_of(copy_edited(tmp, "layer_p0_g1", "k.safetensors", [](SafetensorsFile& f) { f.metadata["kind"] = "lstm"; })),
               Contains("unknown kind 'lstm'") && Contains("the kinds are: scan_recurrent"));
  }
  SECTION("a missing input") {
    CHECK_THAT(error_of(copy_edited(tmp, "layer_p0_g1", "m.safetensors", [](SafetensorsFile& f) { f.tensors.erase("param.A_log"); })),
               Contains("tensor 'param.A_log'") && Contains("missing: a required parameter of kind 'layer'"));
  }
  SECTION("gradients without their upstream gradient") {
    CHECK_THAT(error_of(copy_edited(tmp, "layer_p0_g1", "u.safetensors", [](SafetensorsFile& f) { f.tensors.erase("upstream.d_out"); })),
               Contains("tensor 'upstream.d_out'") && Contains("the file holds gradients"));
  }
  SECTION("a shape that contradicts the config, of an input and of an output") {
    CHECK_THAT(error_of(copy_edited(tmp, "layer_p0_g1", "s.safetensors", [](SafetensorsFile& f) { f.tensors.at("input.u").shape = {5, 13}; })),
               Contains("tensor 'input.u'") && Contains("shape [5, 13], but the config gives [13, 5]"));
    CHECK_THAT(error_of(copy_edited(tmp, "layer_p0_g1", "s.safetensors", [](SafetensorsFile& f) { f.tensors.at("stage.y").shape = {13, 16}; })),
               Contains("tensor 'stage.y'") && Contains("shape [13, 16], but the config gives [13, 4, 4]"));
  }
  SECTION("a config that is not whole, or invalid") {
    CHECK_THAT(error_of(copy_edited(tmp, "layer_p0_g1", "c.safetensors", [](SafetensorsFile& f) {
                 auto c = nlohmann::json::parse(f.meta("config"));
                 c.erase("N");
                 f.metadata["config"] = c.dump();
               })),
               Contains("no key 'N'"));
    CHECK_THAT(error_of(copy_edited(tmp, "layer_p0_g1", "c.safetensors", [](SafetensorsFile& f) { f.metadata.erase("config"); })),
               Contains("no key 'config'"));
  }
  SECTION("a truncated file") {
    const std::vector<uint8_t> bytes = read_bytes(fs::path(fixtures_dir()) / "layer_p0_g1.safetensors");
    write_bytes(tmp.path / "t.safetensors", std::vector<uint8_t>(bytes.begin(), bytes.end() - 8));
    CHECK_THAT(error_of((tmp.path / "t.safetensors").string()), Contains("lie outside"));
  }
  SECTION("nothing to compare") {
    CHECK_THAT(error_of(copy_edited(tmp, "converter_g2", "n.safetensors", [](SafetensorsFile& f) {
                 f.tensors.erase("output.S0");
                 for (const char* g : {"grad.d_x", "grad.d_B", "grad.d_dt", "grad.d_A"}) f.tensors.erase(g);
               })),
               Contains("nothing to compare"));
  }
}

#if defined(TM_VERIFY_BIN) && defined(TM_FIXTURES_BIN)
TEST_CASE("cli: tm-verify --check exits 0, 1 (a comparison failed) or 2 (the file cannot be checked)", "[fixtures][cli]") {
  TempDir tmp;
  const std::string verify = std::string(TM_VERIFY_BIN) + " --check ";
  const std::string good = copy_edited(tmp, "layer_pmid_gH", "good_dump.safetensors", no_edit);
  auto [rc, out] = run(verify + good);
  CHECK(rc == 0);
  CHECK_THAT(out, Contains("kind layer") && Contains("none of the schema absent") && Contains("1 passed, 0 failed"));
  const std::string bad = copy_edited(tmp, "layer_pmid_gH", "bad_dump.safetensors", [](SafetensorsFile& f) {
    std::vector<double> v = f.doubles("output.out");  // [T 13, D 5]
    v[4 * 5 + 3] *= 1 + 1e-6;
    f.put_doubles("output.out", v, f.at("output.out").shape);
  });
  std::tie(rc, out) = run(verify + good + " " + bad);
  CHECK(rc == 1);
  CHECK_THAT(out, Contains("output.out F64: rel") && Contains("at [4, 3]") && Contains("1 passed, 1 failed"));
  for (const auto& [what, path] : std::vector<std::pair<std::string, std::string>>{
           {"unknown kind 'mamba3'", copy_edited(tmp, "scan_recurrent_g2", "k.safetensors", [](SafetensorsFile& f) { f.metadata["kind"] = "mamba3"; })},
           {"tensor 'input.B': missing", copy_edited(tmp, "scan_recurrent_g2", "m.safetensors", [](SafetensorsFile& f) { f.tensors.erase("input.B"); })},
           {"but the config gives [9, 2, 3]", copy_edited(tmp, "scan_recurrent_g2", "s.safetensors", [](SafetensorsFile& f) { f.tensors.at("input.B").shape = {9, 3, 2}; })},
           {"shorter than the 8-byte header length", [&] {
              const std::vector<uint8_t> b = read_bytes(good);
              write_bytes(tmp.path / "t.safetensors", std::vector<uint8_t>(b.begin(), b.begin() + 6));
              return (tmp.path / "t.safetensors").string();
            }()},
           {"No such file", (tmp.path / "absent.safetensors").string()}}) {
    INFO(what);
    std::tie(rc, out) = run(verify + good + " " + path);
    CHECK(rc == 2);
    CHECK_THAT(out, Contains(path) && Contains(what) && Contains("1 could not be checked"));
  }
  std::tie(rc, out) = run(verify + good + " --suite ssm");
  CHECK(rc == 2);
  CHECK_THAT(out, Contains("cannot be combined with --suite"));
  std::tie(rc, out) = run(std::string(TM_VERIFY_BIN) + " --fixtures " + tmp.path.string() + " --suite fixture");
  CHECK(rc == 2);  // the directory holds files that cannot be checked
  CHECK_THAT(out, Contains("fixture:good_dump.safetensors") && Contains("fixture:bad_dump.safetensors") && Contains("could not be checked"));
}

TEST_CASE("cli: numeric flags say what is valid", "[fixtures][cli]") {
  for (const char* value : {"-5", "0", "2.5", "many"}) {
    auto [rc, out] = run(std::string(TM_VERIFY_BIN) + " --cases " + value + " --list");
    INFO(out);
    CHECK(rc == 2);
    CHECK_THAT(out, Contains(std::string("--cases: must be a whole number >= 1, got ") + value));
  }
  auto [rc, out] = run(std::string(TM_VERIFY_BIN) + " --seed -1 --list");
  CHECK(rc == 2);
  CHECK_THAT(out, Contains("--seed: must be a whole number >= 0, got -1"));
  std::tie(rc, out) = run(std::string(TM_FIXTURES_BIN) + " make layer --P 2 --T 0 --out /dev/null/x");
  CHECK(rc == 2);
  CHECK_THAT(out, Contains("--T: must be a whole number >= 1, got 0"));
}

TEST_CASE("cli: tm-fixtures make writes a fixture at any config, and overwrites only with --force", "[fixtures][cli]") {
  TempDir tmp;
  const std::string out = (tmp.path / "mine.safetensors").string();
  const std::string make = std::string(TM_FIXTURES_BIN) + " make layer --T 10 --P 3 --D 6 --H 2 --p 3 --G 1 --N 2 --W 2 --chunk 4 --seed 5 --out " + out;
  auto [rc, text] = run(make);
  INFO(text);
  REQUIRE(rc == 0);
  const SafetensorsFile f = read_safetensors(out);
  CHECK(f.meta("kind") == "layer");
  const nlohmann::json cfg = nlohmann::json::parse(f.meta("config"));
  CHECK(cfg == nlohmann::json{{"D", 6}, {"E", 6}, {"H", 2}, {"G", 1}, {"N", 2}, {"W", 2}, {"chunk", 4}, {"T", 10}, {"P", 3}});
  CHECK(f.meta("seed") == "5");
  CHECK(f.at("stage.y").shape == std::vector<int64_t>{10, 2, 3});
  CHECK(check_fixture_path(out).passed());
  const std::vector<uint8_t> before = read_bytes(out);
  std::tie(rc, text) = run(std::string(TM_FIXTURES_BIN) + " make layer --P 0 --seed 6 --out " + out);
  CHECK(rc == 2);
  CHECK_THAT(text, Contains(out + " exists; give --force to overwrite it"));
  CHECK(read_bytes(out) == before);
  std::tie(rc, text) = run(std::string(TM_FIXTURES_BIN) + " make layer --P 0 --seed 6 --force --out " + out);
  CHECK(rc == 0);
  CHECK(read_bytes(out) != before);
  CHECK(read_safetensors(out).meta("seed") == "6");
  // Nothing but the file: the temp file was renamed onto it.
  CHECK(std::distance(fs::directory_iterator(tmp.path), fs::directory_iterator()) == 1);
  std::tie(rc, text) = run(std::string(TM_FIXTURES_BIN) + " make layer --T 4 --P 5 --out " + (tmp.path / "p.safetensors").string());
  CHECK(rc == 2);
  CHECK_THAT(text, Contains("P must be <= T = 4, got 5"));
  CHECK(!fs::exists(tmp.path / "p.safetensors"));
}
#endif
