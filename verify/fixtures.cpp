#include "verify/fixtures.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <type_traits>

#include "reference/converter.hpp"
#include "reference/inference.hpp"
#include "reference/mixer.hpp"
#include "reference/model.hpp"
#include "reference/ssm.hpp"
#include "verify/bounds.hpp"
#include "verify/generators.hpp"

namespace fs = std::filesystem;

namespace transmamba {

// ---- the fixtures ---------------------------------------------------------------------------------------

const std::vector<FixtureSpec>& fixture_specs() {
  // One small config, G varying: p = 4 differs from N = 3 (a transposed state shows in the shapes), D = 5
  // from both, T = 9, 11 or 13 is not a multiple of the chunk Q = 4. G = 2 with H = 4 is the case where the
  // group of head h, h / (H/G), differs from h % G.
  auto cfg = [](int G) { return MixerConfig{5, 16, 4, G, 3, 4, 4}; };
  static const std::vector<FixtureSpec> specs{
      {"scan_recurrent_g2", "scan_recurrent", "recurrent scan (E6) of 9 tokens from a random initial state", cfg(2), 9,
       0, 101},
      {"scan_quadratic_g1", "scan_quadratic", "quadratic (masked matrix) scan of 9 tokens from a random initial state",
       cfg(1), 9, 0, 102},
      {"scan_chunked_gH", "scan_chunked", "chunked scan of 11 tokens (chunks 4, 4, 3) from a random initial state",
       cfg(4), 11, 0, 103},
      {"converter_g2", "converter", "Memory Converter (E5) of a 7-token prefix", cfg(2), 7, 7, 104},
      {"layer_p0_g1", "layer", "mixer layer at P = 0 (Mamba2)", cfg(1), 13, 0, 105},
      {"layer_pmid_g2", "layer", "mixer layer at P = 6, inside a chunk (P % Q = 2)", cfg(2), 13, 6, 106},
      {"layer_pmid_gH", "layer", "mixer layer at P = 6, inside a chunk (P % Q = 2)", cfg(4), 13, 6, 107},
      {"layer_pT_g2", "layer", "mixer layer at P = T (grouped causal attention)", cfg(2), 13, 13, 108},
      // Three blocks at P = 0 (Mamba2), P = 6 (inside a chunk) and P = T (attention); untied head.
      {"model_3layers", "model", "model of 3 blocks at P = 0, 6, 13: logits, loss and every gradient", cfg(2), 13, -1,
       109, {{"V", 11}, {"F", 6}, {"n_layers", 3}, {"tie_embeddings", false}, {"schedule", "0,6,13"}}},
      // Prefill 5 tokens, decode 8: one layer scans throughout, one switched inside the prompt, one switches
      // while decoding (at t = 7), one attends throughout; tied head.
      {"decode_4layers", "decode", "prefill of 5 tokens, then decode of 8 (P = 0, 3, 7, 13): logits and states",
       cfg(2), 13, -1, 110,
       {{"V", 11}, {"F", 6}, {"n_layers", 4}, {"tie_embeddings", true}, {"schedule", "0,3,7,13"}, {"prompt", 5}}},
  };
  return specs;
}

const FixtureSpec& find_fixture(const std::string& name) {
  std::string names;
  for (const FixtureSpec& s : fixture_specs()) {
    if (s.name == name) return s;
    names += (names.empty() ? "" : ", ") + s.name;
  }
  throw std::invalid_argument("no fixture named '" + name + "'; the fixtures are: " + names);
}

nlohmann::ordered_json FixtureSpec::config_json() const {
  nlohmann::ordered_json j{{"D", cfg.D}, {"E", cfg.E}, {"H", cfg.H},         {"G", cfg.G},
                           {"N", cfg.N}, {"W", cfg.W}, {"chunk", cfg.chunk}, {"T", T}};
  if (P >= 0) j["P"] = P;
  for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  if (extra.contains("schedule")) {
    const ModelConfig m = model_config();
    j["transpoints"] = m.schedule.transpoints(m.n_layers, T);
  }
  return j;
}

ModelConfig FixtureSpec::model_config() const {
  ModelConfig m;
  m.mixer = cfg;
  m.V = extra.at("V");
  m.F = extra.at("F");
  m.n_layers = extra.at("n_layers");
  m.tie_embeddings = extra.at("tie_embeddings");
  m.schedule = parse_schedule(extra.at("schedule").get<std::string>());
  return m;
}

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw SafetensorsError(source + ": " + what);
}
[[noreturn]] void fail_tensor(const std::string& source, const std::string& name, const std::string& what) {
  throw SafetensorsError(source + ": tensor '" + name + "': " + what);
}
std::string source_of(const SafetensorsFile& f) { return f.source.empty() ? "<memory>" : f.source; }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// How a tensor is stored (its shape) and how the reference sees it (a row-major [rows, cols] matrix).
struct Layout {
  std::vector<int64_t> shape;
  int64_t rows, cols;
};
Layout matrix(int64_t r, int64_t c) { return {{r, c}, r, c}; }
Layout vector(int64_t n) { return {{n}, n, 1}; }
Layout heads(int64_t T, const MixerConfig& c) { return {{T, c.H, c.p()}, T, c.E}; }         // x, y: [T, H, p]
Layout groups(int64_t T, const MixerConfig& c) { return {{T, c.G, c.N}, T, c.G * c.N}; }    // B, C: [T, G, N]
Layout state(const MixerConfig& c) { return {{c.H, c.p(), c.N}, c.E, c.N}; }                // [H, p, N]
Layout states(int64_t n, const MixerConfig& c) { return {{n, c.H, c.p(), c.N}, n * c.E, c.N}; }  // [n, H, p, N]
Layout scalar() { return {{}, 1, 1}; }
// A parameter (or its gradient) as the reference holds it: a vector [n] or a matrix [rows, cols].
template <class Tensor>
Layout layout_of(const Tensor& t) {
  return Tensor::ColsAtCompileTime == 1 ? vector(t.rows()) : matrix(t.rows(), t.cols());
}

// Per-chunk states [H·p, N] stacked into one [n·H·p, N] matrix (the view of states(n)).
Mat<double> stack(const MixerConfig& c, const std::vector<Mat<double>>& per_chunk) {
  Mat<double> m(Eigen::Index(per_chunk.size()) * c.E, c.N);
  for (std::size_t i = 0; i < per_chunk.size(); ++i) m.middleRows(Eigen::Index(i) * c.E, c.E) = per_chunk[i];
  return m;
}

// The tensor `name` of a stored file as the reference sees it, its dtype and shape checked.
Mat<double> read(const SafetensorsFile& stored, const std::string& name, const Layout& l) {
  const SafetensorsTensor& t = stored.at(name);  // "<file>: no tensor 'name'"
  if (t.dtype != "F64") fail_tensor(source_of(stored), name, "dtype " + t.dtype + ", but fixtures store F64");
  if (t.shape != l.shape)
    fail_tensor(source_of(stored), name,
                "shape " + shape_str(t.shape) + ", but the config gives " + shape_str(l.shape));
  return stored.matrix(name, l.rows, l.cols);
}

// A fixture being written (its inputs drawn from the seed) or checked (its inputs read from the stored file).
// A kind's function takes every input with input() and stores every result with output(); the same code
// then serves both.
class FixtureData {
 public:
  FixtureData(const FixtureSpec& spec, const SafetensorsFile* stored) : spec(spec), rnd(spec.seed), stored_(stored) {}

  const FixtureSpec& spec;
  RandomTensors rnd;                      // draws the inputs (only while writing)
  SafetensorsFile file;                   // every tensor of the fixture
  std::map<std::string, Layout> layouts;  // of every tensor
  std::vector<std::string> order;         // every tensor, in the order the computation produced it
  std::set<std::string> inputs;           // the input.*, param.* and upstream.* names

  bool writing() const { return stored_ == nullptr; }
  const MixerConfig& cfg() const { return spec.cfg; }

  // An input, parameter or upstream gradient: drawn by draw() while writing, else read from the stored file.
  Mat<double> input(const std::string& name, const Layout& l, const std::function<Mat<double>()>& draw) {
    const Mat<double> m = writing() ? draw() : read(*stored_, name, l);
    output(name, m, l);
    inputs.insert(name);
    return m;
  }
  // Token ids [n] in [0, V), stored as I64: drawn while writing, else read (the model checks the range).
  std::vector<int> tokens(const std::string& name, int n, int V) {
    std::vector<int64_t> ids;
    if (writing()) {
      for (int i = 0; i < n; ++i) ids.push_back(std::min<int64_t>(V - 1, int64_t(rnd.uniform(0, V))));
    } else {
      const SafetensorsTensor& t = stored_->at(name);
      if (t.dtype != "I64") fail_tensor(source_of(*stored_), name, "dtype " + t.dtype + ", but token ids are I64");
      if (t.shape != std::vector<int64_t>{n})
        fail_tensor(source_of(*stored_), name, "shape " + shape_str(t.shape) + ", but the config gives [" +
                                                   std::to_string(n) + "]");
      ids = stored_->ints(name);
      for (int64_t id : ids)
        if (id < 0 || id >= V)
          fail_tensor(source_of(*stored_), name, "token id " + std::to_string(id) + " outside [0, V=" + std::to_string(V) + ")");
    }
    file.put_ints(name, ids, {n});
    inputs.insert(name);
    return std::vector<int>(ids.begin(), ids.end());
  }
  void output(const std::string& name, const Mat<double>& m, const Layout& l) {
    if (m.rows() != l.rows || m.cols() != l.cols)
      throw std::logic_error("fixture " + spec.name + ": tensor '" + name + "' is [" + std::to_string(m.rows()) +
                             ", " + std::to_string(m.cols()) + "], its layout " + shape_str(l.shape) + " says [" +
                             std::to_string(l.rows) + ", " + std::to_string(l.cols) + "]");
    file.put_matrix(name, m, l.shape);
    if (!layouts.count(name)) order.push_back(name);
    layouts[name] = l;
  }

 private:
  const SafetensorsFile* stored_;
};

// ---- what each kind draws, computes and stores -----------------------------------------------------------

enum class ScanForm { recurrent, quadratic, chunked };

// A scan (E6) of T tokens from a random S_init, in one form; loss = Σ d_y ∘ y + Σ d_final_state ∘ final_state.
void scan_fixture(FixtureData& f, ScanForm form) {
  const MixerConfig& c = f.cfg();
  const int T = f.spec.T, GN = c.G * c.N;
  const Mat<double> x = f.input("input.x", heads(T, c), [&] { return f.rnd.mat<double>(T, c.E); });
  const Mat<double> dt = f.input("input.dt", matrix(T, c.H), [&] { return f.rnd.step_sizes<double>(T, c.H); });
  const Vec<double> A = f.input("input.A", vector(c.H), [&] { return Mat<double>(f.rnd.decay_rates<double>(c.H)); });
  const Mat<double> B = f.input("input.B", groups(T, c), [&] { return f.rnd.mat<double>(T, GN); });
  const Mat<double> C = f.input("input.C", groups(T, c), [&] { return f.rnd.mat<double>(T, GN); });
  const Mat<double> S_init = f.input("input.S_init", state(c), [&] { return f.rnd.mat<double>(c.E, c.N); });
  const Mat<double> d_y = f.input("upstream.d_y", heads(T, c), [&] { return f.rnd.mat<double>(T, c.E); });
  const Mat<double> d_final = f.input("upstream.d_final_state", state(c), [&] { return f.rnd.mat<double>(c.E, c.N); });
  ScanResult<double> r;
  if (form == ScanForm::recurrent) r = ssm_recurrent(c, x, dt, A, B, C, S_init);
  if (form == ScanForm::quadratic) r = ssm_quadratic(c, x, dt, A, B, C, S_init);
  if (form == ScanForm::chunked) {
    const ChunkedScanResult<double> ch = ssm_chunked(c, x, dt, A, B, C, S_init, c.chunk);
    r = {ch.y, ch.final_state};
    f.output("stage.chunk_states", stack(c, ch.chunk_states), states(ch.chunk_states.size(), c));
    f.output("stage.start_states", stack(c, ch.start_states), states(ch.start_states.size(), c));
  }
  f.output("output.y", r.y, heads(T, c));
  f.output("output.final_state", r.final_state, state(c));
  const ScanGrads<double> g = ssm_backward(c, x, dt, A, B, C, S_init, d_y, d_final);
  f.output("grad.d_x", g.d_x, heads(T, c));
  f.output("grad.d_dt", g.d_dt, matrix(T, c.H));
  f.output("grad.d_A", g.d_A, vector(c.H));
  f.output("grad.d_B", g.d_B, groups(T, c));
  f.output("grad.d_C", g.d_C, groups(T, c));
  f.output("grad.d_S_init", g.d_S_init, state(c));
}

// The Memory Converter (E5) of a P-token prefix; loss = Σ d_S0 ∘ S0.
void converter_fixture(FixtureData& f) {
  const MixerConfig& c = f.cfg();
  const int P = f.spec.P, GN = c.G * c.N;
  const Mat<double> x = f.input("input.x", heads(P, c), [&] { return f.rnd.mat<double>(P, c.E); });
  const Mat<double> B = f.input("input.B", groups(P, c), [&] { return f.rnd.mat<double>(P, GN); });
  const Mat<double> dt = f.input("input.dt", matrix(P, c.H), [&] { return f.rnd.step_sizes<double>(P, c.H); });
  const Vec<double> A = f.input("input.A", vector(c.H), [&] { return Mat<double>(f.rnd.decay_rates<double>(c.H)); });
  const Mat<double> d_S0 = f.input("upstream.d_S0", state(c), [&] { return f.rnd.mat<double>(c.E, c.N); });
  f.output("output.S0", memory_converter(c, x, B, dt, A), state(c));
  const ConverterGrads<double> g = memory_converter_backward(c, x, B, dt, A, d_S0);
  f.output("grad.d_x", g.d_x, heads(P, c));
  f.output("grad.d_B", g.d_B, groups(P, c));
  f.output("grad.d_dt", g.d_dt, matrix(P, c.H));
  f.output("grad.d_A", g.d_A, vector(c.H));
}

// The mixer layer (E1-E8) at TransPoint P, with random bounded parameters; loss = Σ d_out ∘ out.
void layer_fixture(FixtureData& f) {
  const MixerConfig& c = f.cfg();
  const int T = f.spec.T, P = f.spec.P;
  const Mat<double> u = f.input("input.u", matrix(T, c.D), [&] { return f.rnd.mat<double>(T, c.D); });
  MixerParams<double> prm = f.writing() ? f.rnd.params<double>(c) : MixerParams<double>::zeros(c);
  prm.for_each([&](const char* name, auto& t) {
    t = f.input(std::string("param.") + name, layout_of(t), [&] { return Mat<double>(t); });
  });
  const Mat<double> d_out = f.input("upstream.d_out", matrix(T, c.D), [&] { return f.rnd.mat<double>(T, c.D); });
  const MixerForward<double> fw = mixer_forward(prm, u, P);
  f.output("output.out", fw.out, matrix(T, c.D));
  f.output("output.final_state", fw.final_state, state(c));
  f.output("stage.x", fw.x, heads(T, c));
  f.output("stage.B", fw.B, groups(T, c));
  f.output("stage.C", fw.C, groups(T, c));
  f.output("stage.dt", fw.dt, matrix(T, c.H));
  f.output("stage.S0", fw.S0, state(c));
  f.output("stage.chunk_states", stack(c, fw.scan.chunk_states), states(fw.scan.chunk_states.size(), c));
  f.output("stage.start_states", stack(c, fw.scan.start_states), states(fw.scan.start_states.size(), c));
  f.output("stage.y", fw.y, heads(T, c));
  f.output("stage.y_normed", fw.y_normed, matrix(T, c.E));
  const MixerGrads<double> g = mixer_backward(prm, fw, d_out);
  f.output("grad.d_u", g.d_u, matrix(T, c.D));
  g.d_params.for_each([&](const char* name, const auto& t) {
    f.output(std::string("grad.d_") + name, Mat<double>(t), layout_of(t));
  });
}

// A model's parameters: param.<ModelParams name>, e.g. param.blocks.0.mixer.W_in (drawn by
// RandomTensors::model_params while writing).
ModelParams<double> model_inputs(FixtureData& f, const ModelConfig& mc) {
  ModelParams<double> prm = f.writing() ? f.rnd.model_params(mc) : ModelParams<double>::zeros(mc);
  prm.for_each([&](const char* name, auto& t) {
    t = f.input(std::string("param.") + name, layout_of(t), [&] { return Mat<double>(t); });
  });
  return prm;
}

// The model (model.hpp) over T tokens at its schedule's TransPoints; loss = the mean next-token
// cross-entropy (no upstream gradient).
void model_fixture(FixtureData& f) {
  const ModelConfig mc = f.spec.model_config();
  const MixerConfig& c = mc.mixer;
  const int T = f.spec.T;
  const std::vector<int> tokens = f.tokens("input.tokens", T, mc.V);
  const ModelParams<double> prm = model_inputs(f, mc);
  const ModelForward<double> fw = model_forward(prm, tokens);
  f.output("output.logits", fw.logits, matrix(T, mc.V));
  f.output("output.loss", Mat<double>::Constant(1, 1, fw.loss), scalar());
  for (int l = 0; l < mc.n_layers; ++l) {
    const std::string at = "stage.blocks." + std::to_string(l) + ".";
    f.output(at + "h_mid", fw.blocks[l].h_mid, matrix(T, c.D));  // after the mixer
    f.output(at + "h_out", fw.blocks[l].h_out, matrix(T, c.D));  // after the MLP
    f.output(at + "S0", fw.blocks[l].mixer.S0, state(c));
    f.output(at + "final_state", fw.blocks[l].mixer.final_state, state(c));
  }
  model_backward(prm, fw).for_each([&](const char* name, const auto& t) {
    f.output(std::string("grad.d_") + name, Mat<double>(t), layout_of(t));
  });
}

// The decode state of every layer (inference.hpp) as <prefix>layers.<l>.<field>; a KV cache of n tokens is
// [n, G, N] (keys B) and [n, H, p] (values x).
void store_decode_state(FixtureData& f, const std::string& prefix, const InferenceState<double>& st) {
  const MixerConfig& c = f.cfg();
  for (std::size_t l = 0; l < st.layers.size(); ++l) {
    const LayerState<double>& layer = st.layers[l];
    const std::string at = prefix + "layers." + std::to_string(l) + ".";
    f.output(at + "scan_state", layer.scan_state, state(c));
    f.output(at + "kv_B", layer.kv_B, groups(layer.kv_B.rows(), c));
    f.output(at + "kv_x", layer.kv_x, heads(layer.kv_x.rows(), c));
    f.output(at + "conv_window", layer.conv_window, matrix(c.W - 1, c.conv_channels()));
  }
}

// Prefill of the first `prompt` tokens planned for T, then decode of the rest one token at a time.
void decode_fixture(FixtureData& f) {
  const ModelConfig mc = f.spec.model_config();
  const int T = f.spec.T, T0 = f.spec.extra.at("prompt");
  const std::vector<int> tokens = f.tokens("input.tokens", T, mc.V);
  const ModelParams<double> prm = model_inputs(f, mc);
  PrefillResult<double> run = prefill(prm, std::vector<int>(tokens.begin(), tokens.begin() + T0), T);
  f.output("output.prefill_logits", run.logits, matrix(T0, mc.V));
  store_decode_state(f, "stage.prefill.", run.state);
  Mat<double> logits(T - T0, mc.V);
  for (int t = T0; t < T; ++t) logits.row(t - T0) = decode(prm, run.state, tokens[t]).transpose();
  f.output("output.decode_logits", logits, matrix(T - T0, mc.V));
  store_decode_state(f, "output.", run.state);
}

// The kinds, by name: the function that draws, computes and stores a fixture of that kind.
using FixtureKind = void (*)(FixtureData&);
const std::map<std::string, FixtureKind>& fixture_kinds() {
  static const std::map<std::string, FixtureKind> kinds{
      {"scan_recurrent", [](FixtureData& f) { scan_fixture(f, ScanForm::recurrent); }},
      {"scan_quadratic", [](FixtureData& f) { scan_fixture(f, ScanForm::quadratic); }},
      {"scan_chunked", [](FixtureData& f) { scan_fixture(f, ScanForm::chunked); }},
      {"converter", converter_fixture},
      {"layer", layer_fixture},
      {"model", model_fixture},
      {"decode", decode_fixture},
  };
  return kinds;
}

void run_kind(FixtureData& f) {
  const auto it = fixture_kinds().find(f.spec.kind);
  if (it == fixture_kinds().end())
    throw std::logic_error("fixture " + f.spec.name + ": unknown kind '" + f.spec.kind + "'");
  it->second(f);
}

// ---- metadata -------------------------------------------------------------------------------------------

// The __metadata__ of a fixture, in the order a check reports differences.
std::vector<std::pair<std::string, std::string>> fixture_metadata(const FixtureSpec& spec) {
  return {{"format_version", std::to_string(kFixtureFormatVersion)},
          {"fixture", spec.name},
          {"kind", spec.kind},
          {"config", spec.config_json().dump()},
          {"seed", std::to_string(spec.seed)},
          {"description", spec.description},
          {"generator", "tm-fixtures --out fixtures --only " + spec.name}};
}

// Throws SafetensorsError naming the first metadata key (and config field) that differs from the definition.
void check_metadata(const SafetensorsFile& stored, const FixtureSpec& spec) {
  const std::string src = source_of(stored);
  const auto expected = fixture_metadata(spec);
  for (const auto& [key, want] : expected) {
    const std::string& got = stored.meta(key);  // "<file>: __metadata__: no key 'key'"
    if (got == want) continue;
    if (key == "config") {
      const nlohmann::json want_j = nlohmann::json::parse(want);
      const nlohmann::json got_j = nlohmann::json::parse(got, nullptr, /*allow_exceptions=*/false);
      if (!got_j.is_object()) fail(src, "__metadata__ 'config' is not a JSON object: " + got);
      for (auto it = want_j.begin(); it != want_j.end(); ++it) {
        if (!got_j.contains(it.key())) fail(src, "__metadata__ 'config': no field '" + it.key() + "'");
        if (got_j.at(it.key()) != it.value())
          fail(src, "__metadata__ 'config': " + it.key() + " is " + got_j.at(it.key()).dump() +
                        ", but the definition of '" + spec.name + "' has " + it.value().dump());
      }
      for (auto it = got_j.begin(); it != got_j.end(); ++it)
        if (!want_j.contains(it.key())) fail(src, "__metadata__ 'config': unexpected field '" + it.key() + "'");
    }
    fail(src, "__metadata__ '" + key + "' is '" + got + "', but the definition of '" + spec.name + "' has '" + want +
                  "' (regenerate with tm-fixtures --only " + spec.name + ")");
  }
  for (const auto& kv : stored.metadata) {
    const bool known = std::any_of(expected.begin(), expected.end(), [&](const auto& e) { return e.first == kv.first; });
    if (!known) fail(src, "__metadata__: unexpected key '" + kv.first + "'");
  }
}

// How close a comparison is to failing (> 1: failed); infinite when not finite or the shapes differ.
double severity(const Comparison& c) {
  if (!c.finite || !c.shape_matches) return INFINITY;
  return c.bound > 0 ? c.rel_norm / c.bound : c.rel_norm;
}

}  // namespace

// ---- writing and checking -------------------------------------------------------------------------------

SafetensorsFile build_fixture(const FixtureSpec& spec) {
  FixtureData f(spec, nullptr);
  run_kind(f);
  for (const auto& [key, value] : fixture_metadata(spec)) f.file.metadata[key] = value;
  return f.file;
}

std::vector<Comparison> check_fixture(const SafetensorsFile& stored, const FixtureSpec& spec) {
  const std::string src = source_of(stored);
  check_metadata(stored, spec);
  FixtureData f(spec, &stored);
  try {
    run_kind(f);  // reads every input, checking its dtype and shape
  } catch (const std::invalid_argument& e) {
    fail(src, std::string("recomputing from the stored inputs: ") + e.what());
  }
  for (const auto& kv : stored.tensors)
    if (!f.file.has(kv.first))
      fail_tensor(src, kv.first, "unexpected: a '" + spec.kind + "' fixture does not store it");
  std::vector<Comparison> out;
  for (const std::string& name : f.order) {  // pipeline order: the first stage that differs is nearest the bug
    if (f.inputs.count(name)) continue;
    const Layout& layout = f.layouts.at(name);
    // The stored tensor is the golden one: the reference's recomputation is what is checked against it.
    const Mat<double> golden = read(stored, name, layout);
    out.push_back(compare(name, f.file.matrix(name, layout.rows, layout.cols), golden, bounds::kExact));
  }
  return out;
}

bool FixtureReport::passed() const {
  return error.empty() && !comparisons.empty() &&
         std::all_of(comparisons.begin(), comparisons.end(), [](const Comparison& c) { return c.passed(); });
}

Comparison FixtureReport::worst() const {
  Comparison w;
  w.bound = bounds::kExact;
  for (const Comparison& c : comparisons)
    if (w.name.empty() || severity(c) > severity(w)) w = c;
  return w;
}

FixtureReport check_fixture_file(const std::string& dir, const FixtureSpec& spec) {
  const auto start = std::chrono::steady_clock::now();
  FixtureReport r;
  r.file = spec.file_name();
  const std::string path = (fs::path(dir) / r.file).string();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    r.error = path + ": missing (tm-fixtures --out " + dir + " writes it)";
    return r;
  }
  try {
    r.comparisons = check_fixture(read_safetensors(path), spec);
  } catch (const SafetensorsError& e) {
    r.error = e.what();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

std::vector<FixtureReport> check_fixture_dir(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw SafetensorsError(dir + ": cannot read the fixtures directory: " + ec.message());
  std::set<std::string> files;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) throw SafetensorsError(dir + ": cannot read the fixtures directory: " + ec.message());
    if (it->path().extension() == ".safetensors") files.insert(it->path().filename().string());
  }
  std::vector<FixtureReport> reports;
  for (const FixtureSpec& spec : fixture_specs()) {
    files.erase(spec.file_name());
    reports.push_back(check_fixture_file(dir, spec));
  }
  for (const std::string& file : files) {
    FixtureReport r;
    r.file = file;
    r.error = (fs::path(dir) / file).string() + ": no fixture definition named '" +
              file.substr(0, file.size() - std::string(".safetensors").size()) + "' (see verify/fixtures.cpp)";
    reports.push_back(r);
  }
  std::sort(reports.begin(), reports.end(), [](const FixtureReport& a, const FixtureReport& b) { return a.file < b.file; });
  return reports;
}

std::string default_fixtures_dir() {
  std::error_code ec;
#ifdef TM_SOURCE_FIXTURES_DIR
  if (fs::is_directory(TM_SOURCE_FIXTURES_DIR, ec)) return TM_SOURCE_FIXTURES_DIR;
#endif
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::is_directory(exe.parent_path() / "fixtures", ec)) return (exe.parent_path() / "fixtures").string();
  return "";
}

}  // namespace transmamba
