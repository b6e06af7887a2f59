#include "fixture_format/fixtures.hpp"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>
#include <type_traits>

#include "common/random_tensors.hpp"
#include "reference/converter.hpp"
#include "reference/inference.hpp"
#include "reference/mixer.hpp"
#include "reference/model.hpp"
#include "reference/ssm.hpp"

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

// A dimension: its size and its name in the schema (a config letter, or a derived size such as "chunks").
struct Dim {
  int64_t n;
  std::string sym;
};

using Layout = FixtureLayout;
Layout matrix(const Dim& r, const Dim& c) { return {{r.n, c.n}, {r.sym, c.sym}, r.n, c.n}; }
Layout vector(const Dim& n) { return {{n.n}, {n.sym}, n.n, 1}; }
Layout heads(const Dim& T, const MixerConfig& c) { return {{T.n, c.H, c.p()}, {T.sym, "H", "p"}, T.n, c.E}; }  // [T, H, p]
Layout groups(const Dim& T, const MixerConfig& c) {  // B, C: [T, G, N]
  return {{T.n, c.G, c.N}, {T.sym, "G", "N"}, T.n, c.G * c.N};
}
Layout state(const MixerConfig& c) { return {{c.H, c.p(), c.N}, {"H", "p", "N"}, c.E, c.N}; }  // [H, p, N]
Layout states(const Dim& n, const MixerConfig& c) {  // [n, H, p, N]
  return {{n.n, c.H, c.p(), c.N}, {n.sym, "H", "p", "N"}, n.n * c.E, c.N};
}
Layout scalar() { return {{}, {}, 1, 1}; }

// The names of a parameter's dimensions, by the last part of its name (MixerParams and ModelParams names).
const std::map<std::string, std::vector<std::string>>& param_dims() {
  static const std::map<std::string, std::vector<std::string>> dims{
      {"W_in", {"D", "zxbcdt"}}, {"conv_w", {"conv", "W"}},   {"conv_b", {"conv"}},      {"dt_bias", {"H"}},
      {"A_log", {"H"}},          {"D_skip", {"H"}},           {"norm_w", {"E"}},         {"W_out", {"E", "D"}},
      {"embedding", {"V", "D"}}, {"mixer_norm_w", {"D"}},     {"mlp_norm_w", {"D"}},     {"W_gate", {"D", "F"}},
      {"W_up", {"D", "F"}},      {"W_down", {"F", "D"}},      {"final_norm_w", {"D"}},   {"head", {"D", "V"}}};
  return dims;
}
// A parameter (or its gradient) as the reference holds it: a vector [n] or a matrix [rows, cols].
template <class Tensor>
Layout param_layout(const std::string& name, const Tensor& t) {
  const std::string last = name.substr(name.rfind('.') + 1);
  const auto it = param_dims().find(last.rfind("d_", 0) == 0 && !param_dims().count(last) ? last.substr(2) : last);
  if (it == param_dims().end()) throw std::logic_error("fixtures: no dimension names for parameter '" + name + "'");
  const std::vector<std::string>& d = it->second;
  return Tensor::ColsAtCompileTime == 1 ? vector({t.rows(), d.at(0)}) : matrix({t.rows(), d.at(0)}, {t.cols(), d.at(1)});
}

// Per-chunk states [H·p, N] stacked into one [n·H·p, N] matrix (the view of states(n)).
Mat<double> stack(const MixerConfig& c, const std::vector<Mat<double>>& per_chunk) {
  Mat<double> m(Eigen::Index(per_chunk.size()) * c.E, c.N);
  for (std::size_t i = 0; i < per_chunk.size(); ++i) m.middleRows(Eigen::Index(i) * c.E, c.E) = per_chunk[i];
  return m;
}

bool is_float(const std::string& dtype) { return dtype == "F64" || dtype == "F32" || dtype == "BF16"; }

// The tensor `name` of a stored file as the reference sees it, its dtype and shape checked: F64 only when
// strict (a fixture of the catalogue), any float dtype otherwise.
Mat<double> read_tensor(const SafetensorsFile& stored, const std::string& name, const Layout& l, bool strict) {
  const SafetensorsTensor& t = stored.at(name);  // "<file>: no tensor 'name'"
  if (strict && t.dtype != "F64") fail_tensor(source_of(stored), name, "dtype " + t.dtype + ", but fixtures store F64");
  if (!is_float(t.dtype)) fail_tensor(source_of(stored), name, "dtype " + t.dtype + ", but a float (F64, F32, BF16) is needed");
  if (t.shape != l.shape)
    fail_tensor(source_of(stored), name,
                "shape " + shape_str(t.shape) + ", but the config gives " + shape_str(l.shape));
  return stored.matrix(name, l.rows, l.cols);
}

bool holds_gradients(const SafetensorsFile& f) {
  return std::any_of(f.tensors.begin(), f.tensors.end(), [](const auto& kv) { return kv.first.rfind("grad.", 0) == 0; });
}

// A fixture being written (its inputs drawn from the seed) or recomputed from a stored file (its inputs read
// from it: strictly, a fixture of the catalogue; or any file that follows the schema). A kind's function takes every
// input with input() and stores every result with output(); the same code then serves all three, and lists
// the schema (fixture_schema()).
class FixtureData {
 public:
  enum class Mode { write, strict, schema };
  FixtureData(const FixtureSpec& spec, const SafetensorsFile* stored, Mode mode = Mode::strict)
      : spec(spec), rnd(spec.seed), stored_(stored), mode_(stored ? mode : Mode::write) {}

  const FixtureSpec& spec;
  RandomTensors rnd;                      // draws the inputs (only while writing)
  SafetensorsFile file;                   // every tensor of the fixture
  std::map<std::string, Layout> layouts;  // of every tensor
  std::vector<std::string> order;         // every tensor, in the order the computation produced it
  std::set<std::string> inputs;           // the input.*, param.* and upstream.* names

  bool writing() const { return mode_ == Mode::write; }
  bool strict() const { return mode_ == Mode::strict; }
  const MixerConfig& cfg() const { return spec.cfg; }

  // A dimension of the config by its schema name (the legend of fixtures/SCHEMA.md: dim_meaning()).
  Dim d(const std::string& sym) const {
    const MixerConfig& c = spec.cfg;
    const std::map<std::string, int64_t> dims{
        {"T", spec.T},    {"P", spec.P},       {"D", c.D},      {"E", c.E},     {"H", c.H},
        {"p", c.p()},     {"G", c.G},          {"N", c.N},      {"W", c.W},     {"W-1", c.W - 1},
        {"conv", c.conv_channels()},           {"zxbcdt", c.in_proj_width()},
        {"V", spec.extra.value("V", 0)},       {"F", spec.extra.value("F", 0)},
        {"prompt", spec.extra.value("prompt", 0)}, {"T-prompt", spec.T - spec.extra.value("prompt", 0)}};
    return {dims.at(sym), sym};
  }

  // An input, parameter or upstream gradient: drawn by draw() while writing, else read from the stored file.
  // Checking a file by the schema, an upstream gradient may be absent when the file holds no gradient (zeros).
  Mat<double> input(const std::string& name, const Layout& l, const std::function<Mat<double>()>& draw) {
    Mat<double> m;
    if (writing()) m = draw();
    else if (!strict() && !stored_->has(name) && name.rfind("upstream.", 0) == 0 && !holds_gradients(*stored_))
      m = Mat<double>::Zero(l.rows, l.cols);
    else if (!strict() && !stored_->has(name))
      fail_tensor(source_of(*stored_), name, std::string("missing: a required ") +
                      (name.rfind("param.", 0) == 0 ? "parameter" : name.rfind("input.", 0) == 0 ? "input" : "upstream gradient (the file holds gradients)") +
                      " of kind '" + spec.kind + "' (fixtures/SCHEMA.md)");
    else m = read_tensor(*stored_, name, l, strict());
    output(name, m, l);
    inputs.insert(name);
    return m;
  }
  // Token ids [n] in [0, V), stored as I64 (I32 accepted by the schema check): drawn while writing, else read
  // (the model checks the range).
  std::vector<int> tokens(const std::string& name, const Dim& n, int V) {
    std::vector<int64_t> ids;
    if (writing()) {
      for (int i = 0; i < n.n; ++i) ids.push_back(std::min<int64_t>(V - 1, int64_t(rnd.uniform(0, V))));
    } else {
      if (!strict() && !stored_->has(name))
        fail_tensor(source_of(*stored_), name, "missing: a required input of kind '" + spec.kind + "' (fixtures/SCHEMA.md)");
      const SafetensorsTensor& t = stored_->at(name);
      if (t.dtype != "I64" && (strict() || t.dtype != "I32"))
        fail_tensor(source_of(*stored_), name, "dtype " + t.dtype + ", but token ids are I64");
      if (t.shape != std::vector<int64_t>{n.n})
        fail_tensor(source_of(*stored_), name, "shape " + shape_str(t.shape) + ", but the config gives [" +
                                                   std::to_string(n.n) + "]");
      ids = stored_->ints(name);
      for (int64_t id : ids)
        if (id < 0 || id >= V)
          fail_tensor(source_of(*stored_), name, "token id " + std::to_string(id) + " outside [0, V=" + std::to_string(V) + ")");
    }
    file.put_ints(name, ids, {n.n});
    if (!layouts.count(name)) order.push_back(name);
    layouts[name] = vector(n);
    inputs.insert(name);
    return std::vector<int>(ids.begin(), ids.end());
  }
  void output(const std::string& name, const Mat<double>& m, const Layout& l) {
    auto bad = [&](const std::string& what) {
      throw std::logic_error("fixture " + spec.name + ": tensor '" + name + "': " + what);
    };
    if (m.rows() != l.rows || m.cols() != l.cols)
      bad("is [" + std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "], its layout " + shape_str(l.shape) +
          " says [" + std::to_string(l.rows) + ", " + std::to_string(l.cols) + "]");
    // The schema's names of the dimensions must give the shape (a derived size, e.g. "chunks", is not checked).
    for (std::size_t i = 0; i < l.dims.size(); ++i)
      if (dim_meaning(l.dims[i]) == nullptr) bad("dimension '" + l.dims[i] + "' has no meaning in the schema's legend");
      else if (is_config_dim(l.dims[i]) && d(l.dims[i]).n != l.shape[i])
        bad("dimension " + std::to_string(i) + " is " + std::to_string(l.shape[i]) + ", but " + l.dims[i] + " = " +
            std::to_string(d(l.dims[i]).n));
    file.put_matrix(name, m, l.shape);
    if (!layouts.count(name)) order.push_back(name);
    layouts[name] = l;
  }

  // What each dimension name of the schema means; nullptr for a name that is not one.
  static const char* dim_meaning(const std::string& sym) {
    static const std::map<std::string, const char*> legend{
        {"T", "tokens (config T)"},
        {"P", "the TransPoint (config P); the converter's prefix length"},
        {"D", "model width"},
        {"E", "inner width, H·p"},
        {"H", "value heads"},
        {"p", "head dim, E / H"},
        {"G", "groups of B and C (H % G = 0)"},
        {"N", "state size"},
        {"W", "conv width"},
        {"W-1", "the conv window: the last W - 1 rows of xBC"},
        {"conv", "conv channels, E + 2·G·N (xBC)"},
        {"zxbcdt", "in-projection width, 2·E + 2·G·N + H"},
        {"V", "vocabulary size"},
        {"F", "MLP hidden width"},
        {"prompt", "tokens prefilled (config prompt)"},
        {"T-prompt", "tokens decoded one at a time"},
        {"chunks", "chunks of the scan, of config chunk tokens each: ceil(T / chunk) for scan_chunked, "
                   "ceil((T - P) / chunk) for a layer (its scan over tokens P..T-1)"},
        {"n_kv", "tokens in the layer's KV cache: min(prompt, P_l) after prefill; after the last token T when "
                 "P_l = T, else 0 (P_l: the layer's TransPoint, config transpoints)"}};
    const auto it = legend.find(sym);
    return it == legend.end() ? nullptr : it->second;
  }
  static bool is_config_dim(const std::string& sym) { return sym != "chunks" && sym != "n_kv"; }

 private:
  const SafetensorsFile* stored_;
  Mode mode_;
};

// ---- what each kind draws, computes and stores -----------------------------------------------------------

enum class ScanForm { recurrent, quadratic, chunked };

// A scan (E6) of T tokens from a random S_init, in one form; loss = Σ d_y ∘ y + Σ d_final_state ∘ final_state.
void scan_fixture(FixtureData& f, ScanForm form) {
  const MixerConfig& c = f.cfg();
  const int T = f.spec.T, GN = c.G * c.N;
  const Dim Td = f.d("T");
  const Mat<double> x = f.input("input.x", heads(Td, c), [&] { return f.rnd.mat<double>(T, c.E); });
  const Mat<double> dt = f.input("input.dt", matrix(Td, f.d("H")), [&] { return f.rnd.step_sizes<double>(T, c.H); });
  const Vec<double> A = f.input("input.A", vector(f.d("H")), [&] { return Mat<double>(f.rnd.decay_rates<double>(c.H)); });
  const Mat<double> B = f.input("input.B", groups(Td, c), [&] { return f.rnd.mat<double>(T, GN); });
  const Mat<double> C = f.input("input.C", groups(Td, c), [&] { return f.rnd.mat<double>(T, GN); });
  const Mat<double> S_init = f.input("input.S_init", state(c), [&] { return f.rnd.mat<double>(c.E, c.N); });
  const Mat<double> d_y = f.input("upstream.d_y", heads(Td, c), [&] { return f.rnd.mat<double>(T, c.E); });
  const Mat<double> d_final = f.input("upstream.d_final_state", state(c), [&] { return f.rnd.mat<double>(c.E, c.N); });
  ScanResult<double> r;
  if (form == ScanForm::recurrent) r = ssm_recurrent(c, x, dt, A, B, C, S_init);
  if (form == ScanForm::quadratic) r = ssm_quadratic(c, x, dt, A, B, C, S_init);
  if (form == ScanForm::chunked) {
    const ChunkedScanResult<double> ch = ssm_chunked(c, x, dt, A, B, C, S_init, c.chunk);
    r = {ch.y, ch.final_state};
    f.output("stage.chunk_states", stack(c, ch.chunk_states), states({int64_t(ch.chunk_states.size()), "chunks"}, c));
    f.output("stage.start_states", stack(c, ch.start_states), states({int64_t(ch.start_states.size()), "chunks"}, c));
  }
  f.output("output.y", r.y, heads(Td, c));
  f.output("output.final_state", r.final_state, state(c));
  const ScanGrads<double> g = ssm_backward(c, x, dt, A, B, C, S_init, d_y, d_final);
  f.output("grad.d_x", g.d_x, heads(Td, c));
  f.output("grad.d_dt", g.d_dt, matrix(Td, f.d("H")));
  f.output("grad.d_A", g.d_A, vector(f.d("H")));
  f.output("grad.d_B", g.d_B, groups(Td, c));
  f.output("grad.d_C", g.d_C, groups(Td, c));
  f.output("grad.d_S_init", g.d_S_init, state(c));
}

// The Memory Converter (E5) of a P-token prefix; loss = Σ d_S0 ∘ S0.
void converter_fixture(FixtureData& f) {
  const MixerConfig& c = f.cfg();
  const int P = f.spec.P, GN = c.G * c.N;
  const Dim Pd = f.d("P");
  const Mat<double> x = f.input("input.x", heads(Pd, c), [&] { return f.rnd.mat<double>(P, c.E); });
  const Mat<double> B = f.input("input.B", groups(Pd, c), [&] { return f.rnd.mat<double>(P, GN); });
  const Mat<double> dt = f.input("input.dt", matrix(Pd, f.d("H")), [&] { return f.rnd.step_sizes<double>(P, c.H); });
  const Vec<double> A = f.input("input.A", vector(f.d("H")), [&] { return Mat<double>(f.rnd.decay_rates<double>(c.H)); });
  const Mat<double> d_S0 = f.input("upstream.d_S0", state(c), [&] { return f.rnd.mat<double>(c.E, c.N); });
  f.output("output.S0", memory_converter(c, x, B, dt, A), state(c));
  const ConverterGrads<double> g = memory_converter_backward(c, x, B, dt, A, d_S0);
  f.output("grad.d_x", g.d_x, heads(Pd, c));
  f.output("grad.d_B", g.d_B, groups(Pd, c));
  f.output("grad.d_dt", g.d_dt, matrix(Pd, f.d("H")));
  f.output("grad.d_A", g.d_A, vector(f.d("H")));
}

// The mixer layer (E1-E8) at TransPoint P, with random bounded parameters; loss = Σ d_out ∘ out.
void layer_fixture(FixtureData& f) {
  const MixerConfig& c = f.cfg();
  const int T = f.spec.T, P = f.spec.P;
  const Dim Td = f.d("T");
  const Mat<double> u = f.input("input.u", matrix(Td, f.d("D")), [&] { return f.rnd.mat<double>(T, c.D); });
  MixerParams<double> prm = f.writing() ? f.rnd.params<double>(c) : MixerParams<double>::zeros(c);
  prm.for_each([&](const char* name, auto& t) {
    t = f.input(std::string("param.") + name, param_layout(name, t), [&] { return Mat<double>(t); });
  });
  const Mat<double> d_out = f.input("upstream.d_out", matrix(Td, f.d("D")), [&] { return f.rnd.mat<double>(T, c.D); });
  const MixerForward<double> fw = mixer_forward(prm, u, P);
  f.output("output.out", fw.out, matrix(Td, f.d("D")));
  f.output("output.final_state", fw.final_state, state(c));
  f.output("stage.x", fw.x, heads(Td, c));
  f.output("stage.B", fw.B, groups(Td, c));
  f.output("stage.C", fw.C, groups(Td, c));
  f.output("stage.dt", fw.dt, matrix(Td, f.d("H")));
  f.output("stage.S0", fw.S0, state(c));
  f.output("stage.chunk_states", stack(c, fw.scan.chunk_states), states({int64_t(fw.scan.chunk_states.size()), "chunks"}, c));
  f.output("stage.start_states", stack(c, fw.scan.start_states), states({int64_t(fw.scan.start_states.size()), "chunks"}, c));
  f.output("stage.y", fw.y, heads(Td, c));
  f.output("stage.y_normed", fw.y_normed, matrix(Td, f.d("E")));
  const MixerGrads<double> g = mixer_backward(prm, fw, d_out);
  f.output("grad.d_u", g.d_u, matrix(Td, f.d("D")));
  g.d_params.for_each([&](const char* name, const auto& t) {
    f.output(std::string("grad.d_") + name, Mat<double>(t), param_layout(name, t));
  });
}

// A model's parameters: param.<ModelParams name>, e.g. param.blocks.0.mixer.W_in (drawn by
// RandomTensors::model_params while writing).
ModelParams<double> model_inputs(FixtureData& f, const ModelConfig& mc) {
  ModelParams<double> prm = f.writing() ? f.rnd.model_params(mc) : ModelParams<double>::zeros(mc);
  prm.for_each([&](const char* name, auto& t) {
    t = f.input(std::string("param.") + name, param_layout(name, t), [&] { return Mat<double>(t); });
  });
  return prm;
}

// The model (model.hpp) over T tokens at its schedule's TransPoints; loss = the mean next-token
// cross-entropy (no upstream gradient).
void model_fixture(FixtureData& f) {
  const ModelConfig mc = f.spec.model_config();
  const MixerConfig& c = mc.mixer;
  const int T = f.spec.T;
  const Dim Td = f.d("T");
  const std::vector<int> tokens = f.tokens("input.tokens", Td, mc.V);
  const ModelParams<double> prm = model_inputs(f, mc);
  const ModelForward<double> fw = model_forward(prm, tokens);
  f.output("output.logits", fw.logits, matrix(Td, f.d("V")));
  f.output("output.loss", Mat<double>::Constant(1, 1, fw.loss), scalar());
  for (int l = 0; l < mc.n_layers; ++l) {
    const std::string at = "stage.blocks." + std::to_string(l) + ".";
    f.output(at + "h_mid", fw.blocks[l].h_mid, matrix(Td, f.d("D")));  // after the mixer
    f.output(at + "h_out", fw.blocks[l].h_out, matrix(Td, f.d("D")));  // after the MLP
    f.output(at + "S0", fw.blocks[l].mixer.S0, state(c));
    f.output(at + "final_state", fw.blocks[l].mixer.final_state, state(c));
  }
  model_backward(prm, fw).for_each([&](const char* name, const auto& t) {
    f.output(std::string("grad.d_") + name, Mat<double>(t), param_layout(name, t));
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
    f.output(at + "kv_B", layer.kv_B, groups({layer.kv_B.rows(), "n_kv"}, c));
    f.output(at + "kv_x", layer.kv_x, heads({layer.kv_x.rows(), "n_kv"}, c));
    f.output(at + "conv_window", layer.conv_window, matrix(f.d("W-1"), f.d("conv")));
  }
}

// Prefill of the first `prompt` tokens planned for T, then decode of the rest one token at a time.
void decode_fixture(FixtureData& f) {
  const ModelConfig mc = f.spec.model_config();
  const int T = f.spec.T, T0 = f.spec.extra.at("prompt");
  const Dim Td = f.d("T");
  const std::vector<int> tokens = f.tokens("input.tokens", Td, mc.V);
  const ModelParams<double> prm = model_inputs(f, mc);
  PrefillResult<double> run = prefill(prm, std::vector<int>(tokens.begin(), tokens.begin() + T0), T);
  f.output("output.prefill_logits", run.logits, matrix(f.d("prompt"), f.d("V")));
  store_decode_state(f, "stage.prefill.", run.state);
  Mat<double> logits(T - T0, mc.V);
  for (int t = T0; t < T; ++t) logits.row(t - T0) = decode(prm, run.state, tokens[t]).transpose();
  f.output("output.decode_logits", logits, matrix(f.d("T-prompt"), f.d("V")));
  store_decode_state(f, "output.", run.state);
}

// The kinds, in the schema's order: the function that draws, computes and stores a fixture of that kind.
using FixtureKind = void (*)(FixtureData&);
const std::vector<std::pair<std::string, FixtureKind>>& fixture_kinds() {
  static const std::vector<std::pair<std::string, FixtureKind>> kinds{
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

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// Throws std::invalid_argument naming the kinds when there is no kind of this name.
FixtureKind kind_function(const std::string& kind) {
  for (const auto& [name, fn] : fixture_kinds())
    if (name == kind) return fn;
  throw std::invalid_argument("unknown kind '" + kind + "'; the kinds are: " + join(fixture_kinds_list()));
}

void run_kind(FixtureData& f) { kind_function(f.spec.kind)(f); }

bool is_model_kind(const std::string& kind) { return kind == "model" || kind == "decode"; }

// The role of a tensor, from its name's prefix (SCHEMA.md).
std::string role_of(const std::string& name) {
  for (const auto& [prefix, role] : std::vector<std::pair<std::string, std::string>>{
           {"input.", "input"}, {"param.", "parameter"}, {"upstream.", "upstream"}, {"output.", "output"},
           {"stage.", "stage"}, {"grad.", "gradient"}})
    if (name.rfind(prefix, 0) == 0) return role;
  throw std::logic_error("fixtures: tensor '" + name + "' has no role");
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
          {"generator", spec.generator.empty() ? "tm-fixtures --out fixtures --only " + spec.name : spec.generator}};
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
// Recomputes r.spec from the stored file's inputs and parameters (read in `mode`): r's tensors, layouts and results.
void recompute(const SafetensorsFile& stored, FixtureData::Mode mode, RecomputedFixture& r) {
  FixtureData f(r.spec, &stored, mode);
  try {
    run_kind(f);  // reads every input and parameter, checking its dtype and shape
  } catch (const std::invalid_argument& e) {
    fail(source_of(stored), std::string("recomputing from the stored inputs: ") + e.what());
  }
  r.strict = f.strict();
  for (const std::string& name : f.order)
    if (!f.inputs.count(name)) r.results.push_back(name);
  r.file = std::move(f.file);
  r.layouts = std::move(f.layouts);
}

// The kind of a file: its metadata's "kind", or for a file without one, the kind its name begins with.
std::string kind_of(const SafetensorsFile& stored, const std::string& stem) {
  if (stored.metadata.count("kind")) return stored.metadata.at("kind");
  std::string best;
  for (const std::string& k : fixture_kinds_list())
    if (stem.rfind(k, 0) == 0 && k.size() > best.size()) best = k;
  if (best.empty())
    fail(source_of(stored), "__metadata__: no key 'kind' (one of: " + join(fixture_kinds_list()) +
                                "; fixtures/SCHEMA.md), and the file name begins with none of them");
  return best;
}

}  // namespace

// ---- kinds, configs and the schema ----------------------------------------------------------------------

std::vector<std::string> fixture_kinds_list() {
  std::vector<std::string> names;
  for (const auto& kv : fixture_kinds()) names.push_back(kv.first);
  return names;
}

std::vector<std::string> config_keys(const std::string& kind) {
  kind_function(kind);
  std::vector<std::string> keys{"D", "E", "H", "G", "N", "W", "chunk", "T"};
  if (!is_model_kind(kind)) keys.push_back("P");
  else for (const char* k : {"V", "F", "n_layers", "tie_embeddings", "schedule"}) keys.push_back(k);
  if (kind == "decode") keys.push_back("prompt");
  return keys;
}

const char* config_key_meaning(const std::string& key) {
  static const std::map<std::string, const char*> meanings{
      {"D", "model width (a scan or the converter does not use it)"},
      {"E", "inner width, H·p (E % H = 0)"},
      {"H", "value heads"},
      {"G", "groups of B and C; head h reads group h / (H / G) (H % G = 0)"},
      {"N", "state size"},
      {"W", "causal conv width"},
      {"chunk", "chunk size Q of the chunked scan (the layer's scan is chunked)"},
      {"T", "tokens; a decode run: every token, prompt and decoded; the converter: = P"},
      {"P", "TransPoint, 0 <= P <= T; a scan: 0 (it starts from input.S_init); the converter: the prefix length"},
      {"V", "vocabulary size; token ids are 0 .. V-1"},
      {"F", "SwiGLU MLP hidden width"},
      {"n_layers", "blocks"},
      {"tie_embeddings", "true: the LM head is the embedding's transpose (no param.head)"},
      {"schedule", "TransPoints cycled over the layers, as tm-cost and tm-decode take them (e.g. \"0,6,13\", \"V9@rel\")"},
      {"prompt", "tokens prefilled, 1 <= prompt <= T; the rest are decoded one at a time"},
      {"transpoints", "P of every layer, from the schedule (written by tm-fixtures; optional, checked when given)"}};
  const auto it = meanings.find(key);
  return it == meanings.end() ? "" : it->second;
}

FixtureSpec fixture_spec(const std::string& kind, const nlohmann::json& config, const std::string& name,
                         std::uint64_t seed) {
  const std::vector<std::string> keys = config_keys(kind);  // throws for an unknown kind
  auto bad = [&](const std::string& what) { throw std::invalid_argument("config of kind '" + kind + "': " + what); };
  if (!config.is_object()) bad("not a JSON object: " + config.dump());
  for (auto it = config.begin(); it != config.end(); ++it)
    if (std::find(keys.begin(), keys.end(), it.key()) == keys.end() && !(is_model_kind(kind) && it.key() == "transpoints"))
      bad("unknown key '" + it.key() + "' (the keys are: " + join(keys) + ")");
  for (const std::string& k : keys)
    if (!config.contains(k)) bad("no key '" + k + "' (" + config_key_meaning(k) + "; the keys are: " + join(keys) + ")");
  auto whole = [&](const char* k, int min) {
    const nlohmann::json& v = config.at(k);
    if (!v.is_number_integer() || v.get<long long>() < min || v.get<long long>() > (1 << 30))
      bad(std::string(k) + " must be a whole number >= " + std::to_string(min) + ", got " + v.dump());
    return v.get<int>();
  };
  FixtureSpec s;
  s.name = name;
  s.kind = kind;
  s.seed = seed;
  s.cfg = MixerConfig{whole("D", 1), whole("E", 1), whole("H", 1), whole("G", 1), whole("N", 1), whole("W", 1), whole("chunk", 1)};
  try {
    s.cfg.validate();
  } catch (const std::invalid_argument& e) {
    bad(e.what());
  }
  s.T = whole("T", 1);
  if (is_model_kind(kind)) {
    s.P = -1;
    if (!config.at("tie_embeddings").is_boolean()) bad("tie_embeddings must be true or false, got " + config.at("tie_embeddings").dump());
    if (!config.at("schedule").is_string()) bad("schedule must be a string, got " + config.at("schedule").dump());
    s.extra = {{"V", whole("V", 1)}, {"F", whole("F", 1)}, {"n_layers", whole("n_layers", 1)},
               {"tie_embeddings", config.at("tie_embeddings")}, {"schedule", config.at("schedule")}};
    if (kind == "decode") {
      const int prompt = whole("prompt", 1);
      if (prompt > s.T) bad("prompt must be <= T = " + std::to_string(s.T) + ", got " + std::to_string(prompt));
      s.extra["prompt"] = prompt;
    }
    try {
      s.model_config().validate();
    } catch (const std::invalid_argument& e) {
      bad(e.what());
    }
    if (config.contains("transpoints") && config.at("transpoints") != nlohmann::json(s.config_json().at("transpoints")))
      bad("transpoints " + config.at("transpoints").dump() + " are not those of schedule '" +
          s.extra.at("schedule").get<std::string>() + "' over " + std::to_string(s.model_config().n_layers) +
          " layers and T = " + std::to_string(s.T) + ": " + s.config_json().at("transpoints").dump());
  } else {
    s.P = whole("P", 0);
    if (s.P > s.T) bad("P must be <= T = " + std::to_string(s.T) + ", got " + std::to_string(s.P));
    if (kind.rfind("scan_", 0) == 0 && s.P != 0) bad("a scan has P = 0 (it starts from input.S_init), got " + std::to_string(s.P));
    if (kind == "converter" && s.P != s.T) bad("the converter's prefix is P = T tokens, got T = " + std::to_string(s.T) + ", P = " + std::to_string(s.P));
  }
  s.description = kind + " at " + s.config_json().dump();
  return s;
}

std::vector<SchemaTensor> fixture_schema(const std::string& kind) {
  kind_function(kind);
  const auto& specs = fixture_specs();
  const auto spec = std::find_if(specs.begin(), specs.end(), [&](const FixtureSpec& s) { return s.kind == kind; });
  if (spec == specs.end()) throw std::logic_error("fixtures: the catalogue has no fixture of kind '" + kind + "'");
  FixtureData f(*spec, nullptr);  // written, the names of its tensors and their dimensions
  run_kind(f);
  std::vector<SchemaTensor> out;
  std::set<std::string> seen;
  static const std::regex per_layer(R"((blocks|layers)\.[0-9]+\.)");
  for (const std::string& name : f.order) {
    const std::string templ = std::regex_replace(name, per_layer, "$1.<l>.");
    if (!seen.insert(templ).second) continue;
    const std::string role = role_of(name);
    out.push_back({templ, role, "[" + join(f.layouts.at(name).dims) + "]", f.file.at(name).dtype,
                   role == "input" || role == "parameter" ? "yes" : role == "upstream" ? "with gradients" : "no"});
  }
  return out;
}

std::string fixture_schema_markdown() {
  std::string md = "### Config keys\n\n| key | meaning | kinds |\n|---|---|---|\n";
  std::vector<std::string> all;
  for (const std::string& kind : fixture_kinds_list())
    for (const std::string& k : config_keys(kind))
      if (std::find(all.begin(), all.end(), k) == all.end()) all.push_back(k);
  all.push_back("transpoints");
  for (const std::string& k : all) {
    std::vector<std::string> kinds;
    for (const std::string& kind : fixture_kinds_list()) {
      const auto keys = config_keys(kind);
      if (std::find(keys.begin(), keys.end(), k) != keys.end() || (k == "transpoints" && is_model_kind(kind)))
        kinds.push_back(kind);
    }
    md += "| `" + k + "` | " + config_key_meaning(k) + " | " +
          (kinds.size() == fixture_kinds_list().size() ? std::string("all") : join(kinds)) + " |\n";
  }
  md += "\n### Dimensions in the shapes\n\n| name | size |\n|---|---|\n";
  std::vector<std::string> dims;
  for (const std::string& kind : fixture_kinds_list())
    for (const SchemaTensor& t : fixture_schema(kind)) {
      std::string inner = t.shape.substr(1, t.shape.size() - 2);
      for (std::size_t at = 0; !inner.empty();) {
        const std::size_t comma = inner.find(", ", at);
        const std::string d = inner.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        if (std::find(dims.begin(), dims.end(), d) == dims.end()) dims.push_back(d);
        if (comma == std::string::npos) break;
        at = comma + 2;
      }
    }
  for (const std::string& d : dims) md += "| `" + d + "` | " + FixtureData::dim_meaning(d) + " |\n";
  for (const std::string& kind : fixture_kinds_list()) {
    md += "\n### Kind `" + kind + "`\n\nconfig: " + join(config_keys(kind)) +
          "\n\n| tensor | role | shape | dtype | required |\n|---|---|---|---|---|\n";
    for (const SchemaTensor& t : fixture_schema(kind))
      md += "| `" + t.name + "` | " + t.role + " | " + t.shape + " | " + t.dtype + " | " + t.required + " |\n";
  }
  return md;
}

// ---- writing and recomputing ----------------------------------------------------------------------------

SafetensorsFile build_fixture(const FixtureSpec& spec) {
  FixtureData f(spec, nullptr);
  run_kind(f);
  for (const auto& [key, value] : fixture_metadata(spec)) f.file.metadata[key] = value;
  return f.file;
}

RecomputedFixture recompute_fixture(const SafetensorsFile& stored, const FixtureSpec& spec) {
  const std::string src = source_of(stored);
  check_metadata(stored, spec);
  RecomputedFixture r;
  r.spec = spec;
  recompute(stored, FixtureData::Mode::strict, r);
  for (const auto& kv : stored.tensors)
    if (!r.file.has(kv.first))
      fail_tensor(src, kv.first, "unexpected: a '" + spec.kind + "' fixture does not store it");
  return r;
}

RecomputedFixture recompute_by_schema(const SafetensorsFile& stored, const std::string& name) {
  const std::string src = source_of(stored);
  const std::string kind = kind_of(stored, name);
  if (stored.metadata.count("format_version") && stored.metadata.at("format_version") != std::to_string(kFixtureFormatVersion))
    fail(src, "__metadata__ 'format_version' is '" + stored.metadata.at("format_version") + "', this build reads '" +
                  std::to_string(kFixtureFormatVersion) + "'");
  const nlohmann::json config = nlohmann::json::parse(stored.meta("config"), nullptr, /*allow_exceptions=*/false);
  RecomputedFixture r;
  try {
    r.spec = fixture_spec(kind, config, name);
  } catch (const std::invalid_argument& e) {
    fail(src, std::string("__metadata__: ") + e.what());
  }
  recompute(stored, FixtureData::Mode::schema, r);
  return r;
}

Mat<double> RecomputedFixture::reference(const std::string& name) const {
  const FixtureLayout& l = layouts.at(name);
  return file.matrix(name, l.rows, l.cols);
}

Mat<double> RecomputedFixture::read(const SafetensorsFile& stored, const std::string& name) const {
  return read_tensor(stored, name, layouts.at(name), strict);
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
