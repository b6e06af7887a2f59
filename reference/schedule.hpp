// TransPoint schedules and the per-layer cost model (DESIGN.md section 5; PAPER.md section 2).
//
// A schedule is a list of TransPoints cycled over the mixer layers (MLP layers do not count): mixer layer l
// gets list[l mod len], clamped to [0, T]. Tokens t < P of that layer use grouped causal attention, tokens
// t >= P the scan (DESIGN.md section 2, E4-E6). A schedule is one of:
//   - a named schedule of the paper (PAPER.md section 2.2, Table 6), given for T = 8192:
//       V1 [2048]  V2 [4096]  V3 [6144]  V4 [3072,4096,5120]  V5 [2048,3072,4096]  V6 [512,1024,2048]
//       V7 [2048,4096,6144]  V8 [0,1024,2048,6144,8192]  V9 [0,128,256,512,1024,2048,4096,8192]
//     [choice] The V-schedules stay ABSOLUTE as the paper gives them: at T != 8192 the entries are only
//     clamped to T (V9 at T = 1000 is [0,128,256,512,1000,1000,1000,1000]). "V9@rel" (any V1..V9 with the
//     suffix "@rel") is the same list as fractions of 8192, so it scales with T (V9@rel at T = 1024 is
//     [0,16,32,64,128,256,512,1024]); to_relative() does the same for any absolute list.
//   - `transformer`: every P = T (the fraction 1);  `mamba`: every P = 0.
//   - an absolute list of non-negative integers, "0,128,256".
//   - a relative list of fractions of T, "0,0.25,0.5": a list in which ANY entry contains a '.' is relative,
//     and then every entry (also one written without a '.', such as "0" or "1") is a fraction and must lie
//     in [0, 1]; "0,2,0.5" is rejected because 2 is a fraction above 1. P = round(f * T), halves away from
//     zero (std::llround).
// Names are matched case-insensitively ("v9", "Transformer"); spaces around entries are ignored. Anything
// else (an empty entry, a trailing comma, a sign, an exponent, garbage, an integer above INT_MAX, a
// fraction above 1) throws std::invalid_argument naming the string and what was expected.
//
// Cost model, per mixer layer with TransPoint P (clamped) over one sequence of T tokens (DESIGN.md
// section 5: O(P^2 E + (T-P) E N)). A multiply-add counts as 2 FLOPs; softmax exponentials, the decays,
// the D skip, the norm and the gate (all O(T E) or less) are not counted. With pairs = P (P + 1) / 2 the
// (query, key) pairs of the causal triangle of the attention segment (E4):
//   attention_flops = 2 * pairs * G * N      scores C[t,g] . B[s,g], one score matrix per group
//                   + 2 * pairs * H * p      weights x V per head (H * p = E)
//                   = 2 * pairs * (G N + E)
//   scan_flops      = 4 * (T - P) * H * p * N   per scan token and head: the state update
//                                               S = a*S + dt*x (x) B (p*N multiply-adds) and the output S.C
//                                               (p*N multiply-adds)                          (E6)
//   converter_flops = 2 * P * H * p * N   if 0 < P < T, else 0: one state update per prefix token (E5, the
//                                         chunked form does the same multiply-adds in another order). At
//                                         P = T no scan token reads S0, so the training forward skips it;
//                                         the decode-time running state of DESIGN.md section 6 is not counted.
//   kv_cache_bytes  = P * (G N + H p) * bytes_per_element   keys B (per group) and values x (per head) of the
//                                         tokens < P, as kept by prefill (DESIGN.md section 6); bf16 = 2
//   state_bytes     = H * p * N * 4       the fp32 running scan state, which DESIGN.md section 6 keeps in
//                                         EVERY layer (also P = 0 and P = T)
// The projections and the conv are the same for every schedule and are left out; projection_flops() gives
// them: 2 T D (2E + 2GN + H) (in_proj, E1) + 2 T (E + 2GN) W (conv, E2) + 2 T E D (out_proj, E8).
#pragma once

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/config.hpp"

namespace transmamba {

// The sequence length the paper's named schedules are written for (PAPER.md section 2.2).
constexpr int kPaperScheduleLength = 8192;

struct Schedule {
  std::string name;                // "V9", "V9@rel", "transformer", "mamba", or the list as given
  bool relative = false;           // true: `fractions` of T are used; false: absolute `points`
  std::vector<int> points;         // absolute TransPoints, each >= 0 (when !relative)
  std::vector<double> fractions;   // fractions of T, each in [0, 1] (when relative)

  // Takes nothing; returns the cycle length (number of list entries, >= 1 for a parsed schedule).
  std::size_t size() const { return relative ? fractions.size() : points.size(); }

  // Takes a mixer layer index l >= 0 and the sequence length T >= 0; returns that layer's TransPoint,
  // list[l mod len] (absolute, or round(f * T) when relative) clamped to [0, T]. Throws
  // std::invalid_argument for l < 0, T < 0 or an empty schedule.
  int transpoint(int layer, int T) const {
    if (layer < 0) throw std::invalid_argument("Schedule::transpoint: layer must be >= 0, got " + std::to_string(layer));
    if (T < 0) throw std::invalid_argument("Schedule::transpoint: T must be >= 0, got " + std::to_string(T));
    if (size() == 0) throw std::invalid_argument("Schedule::transpoint: schedule '" + name + "' is empty");
    const std::size_t i = static_cast<std::size_t>(layer) % size();
    const long long P = relative ? std::llround(fractions[i] * static_cast<double>(T)) : points[i];
    return static_cast<int>(std::clamp<long long>(P, 0, T));
  }

  // Takes the number of mixer layers n_layers >= 0 and T >= 0; returns the TransPoint of every layer,
  // [n_layers], each in [0, T].
  std::vector<int> transpoints(int n_layers, int T) const {
    if (n_layers < 0)
      throw std::invalid_argument("Schedule::transpoints: n_layers must be >= 0, got " + std::to_string(n_layers));
    std::vector<int> out;
    out.reserve(static_cast<std::size_t>(n_layers));
    for (int l = 0; l < n_layers; ++l) out.push_back(transpoint(l, T));
    return out;
  }

  // Takes nothing; returns one line: the name, the list and how it maps to P, e.g.
  // "V9 [0,128,256,512,1024,2048,4096,8192] (absolute, clamped to [0,T], cycled over layers)".
  std::string describe() const {
    std::ostringstream os;
    os << name << " [";
    for (std::size_t i = 0; i < size(); ++i) {
      if (i) os << ',';
      if (relative)
        os << std::setprecision(12) << fractions[i];
      else
        os << points[i];
    }
    os << "] (" << (relative ? "fractions of T, P = round(f*T)" : "absolute, clamped to [0,T]")
       << ", cycled over layers)";
    return os.str();
  }
};

namespace schedule_detail {

// Takes a string; returns it with ASCII letters lowered.
inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Takes a string; returns it without leading and trailing spaces and tabs.
inline std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Takes the schedule text and what is wrong with it; returns the exception to throw, whose message names
// the text and the accepted forms.
inline std::invalid_argument bad(const std::string& text, const std::string& problem) {
  return std::invalid_argument("schedule '" + text + "': " + problem +
                               "; expected a name (V1..V9, V1@rel..V9@rel, transformer, mamba), a list of "
                               "integers (0,128,256) or a list of fractions in [0,1] (0,0.25,0.5)");
}

// Takes an entry; returns whether it is digits only ("128").
inline bool is_integer(const std::string& e) {
  return !e.empty() && std::all_of(e.begin(), e.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Takes an entry; returns whether it is digits with one '.' and at least one digit ("0.25", ".5", "1.").
inline bool is_decimal(const std::string& e) {
  const auto dot = e.find('.');
  if (dot == std::string::npos || e.find('.', dot + 1) != std::string::npos || e.size() < 2) return false;
  return std::all_of(e.begin(), e.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

// The paper's lists (PAPER.md section 2.2, Table 6), index 0 = V1.
inline const std::vector<std::vector<int>>& paper_lists() {
  static const std::vector<std::vector<int>> lists = {
      {2048},
      {4096},
      {6144},
      {3072, 4096, 5120},
      {2048, 3072, 4096},
      {512, 1024, 2048},
      {2048, 4096, 6144},
      {0, 1024, 2048, 6144, 8192},
      {0, 128, 256, 512, 1024, 2048, 4096, 8192},
  };
  return lists;
}

}  // namespace schedule_detail

// Takes nothing; returns the names accepted by parse_schedule for the paper's schedules, in table order:
// V1..V9, transformer, mamba.
inline const std::vector<std::string>& named_schedules() {
  static const std::vector<std::string> names = {"V1", "V2", "V3", "V4", "V5", "V6",
                                                 "V7", "V8", "V9", "transformer", "mamba"};
  return names;
}

// Takes an absolute schedule and the length T_ref its entries are written for (default 8192, the paper's);
// returns the relative schedule with fractions entry / T_ref (entries above T_ref become 1), named
// name + "@rel". A relative schedule is returned unchanged. Throws std::invalid_argument for T_ref <= 0.
inline Schedule to_relative(const Schedule& s, int T_ref = kPaperScheduleLength) {
  if (T_ref <= 0) throw std::invalid_argument("to_relative: T_ref must be positive, got " + std::to_string(T_ref));
  if (s.relative) return s;
  Schedule r;
  r.name = s.name + "@rel";
  r.relative = true;
  for (int P : s.points) r.fractions.push_back(std::min(1.0, static_cast<double>(P) / T_ref));
  return r;
}

// Takes a schedule as text (a name, "V9@rel", an absolute or a relative list, see the header comment);
// returns the Schedule. Throws std::invalid_argument whose message contains the text and what was expected.
inline Schedule parse_schedule(const std::string& text) {
  using namespace schedule_detail;
  const std::string s = trim(text);
  if (s.empty()) throw bad(text, "empty schedule");

  // Names.
  const std::string low = lower(s);
  const auto& lists = paper_lists();
  for (std::size_t v = 0; v < lists.size(); ++v) {
    const std::string name = "V" + std::to_string(v + 1);
    Schedule named;
    named.name = name;
    named.points = lists[v];
    if (low == lower(name)) return named;
    if (low == lower(name) + "@rel") return to_relative(named, kPaperScheduleLength);
  }
  if (low == "transformer") return Schedule{"transformer", true, {}, {1.0}};
  if (low == "mamba") return Schedule{"mamba", false, {0}, {}};

  // Lists: split on ',' keeping empty pieces, so that ",1", "1,,2" and "1," are caught.
  std::vector<std::string> entries;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = s.find(',', start);
    entries.push_back(trim(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  bool relative = false;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string& e = entries[i];
    if (e.empty()) throw bad(text, "entry " + std::to_string(i + 1) + " is empty (stray or trailing comma?)");
    if (e[0] == '-') throw bad(text, "entry '" + e + "' is negative");
    if (!is_integer(e) && !is_decimal(e)) {
      const bool looks_named = std::isalpha(static_cast<unsigned char>(e[0])) && entries.size() == 1;
      throw bad(text, looks_named ? "unknown name '" + e + "'" : "entry '" + e + "' is not a number");
    }
    if (is_decimal(e)) relative = true;
  }

  Schedule out;
  out.name = s;
  out.relative = relative;
  for (const std::string& e : entries) {
    if (relative) {
      const double f = std::strtod(e.c_str(), nullptr);  // e is digits and at most one '.'
      if (!(f >= 0.0 && f <= 1.0))
        throw bad(text, "entry '" + e + "' is a fraction outside [0,1] (the list is relative because an entry has a '.')");
      out.fractions.push_back(f);
    } else {
      if (e.size() > 10 || std::strtoll(e.c_str(), nullptr, 10) > INT_MAX)
        throw bad(text, "entry '" + e + "' is too large (above " + std::to_string(INT_MAX) + ")");
      out.points.push_back(static_cast<int>(std::strtoll(e.c_str(), nullptr, 10)));
    }
  }
  return out;
}

// ---- cost model (formulas in the header comment) ---------------------------------------------------------

struct LayerCost {
  int P = 0;                     // the layer's TransPoint, clamped to [0, T]
  double attention_flops = 0;    // grouped causal attention over tokens < P (E4)
  double scan_flops = 0;         // scan over tokens >= P (E6)
  double converter_flops = 0;    // memory converter over tokens < P (E5); 0 when P = 0 or P = T
  double kv_cache_bytes = 0;     // keys and values of tokens < P
  double state_bytes = 0;        // fp32 running state, every layer (DESIGN.md section 6)

  // Takes nothing; returns the schedule-dependent FLOPs of the layer: attention + scan + converter.
  double mixer_flops() const { return attention_flops + scan_flops + converter_flops; }
};

// Takes a valid config, T >= 1, a TransPoint P (clamped to [0, T]) and the bytes per KV element (> 0; bf16 = 2);
// returns that layer's cost for one sequence. Throws std::invalid_argument for a bad config, T or bytes.
inline LayerCost layer_cost(const MixerConfig& cfg, int T, int P, int bytes_per_element = 2) {
  cfg.validate();
  if (T <= 0) throw std::invalid_argument("layer_cost: T must be positive, got " + std::to_string(T));
  if (bytes_per_element <= 0)
    throw std::invalid_argument("layer_cost: bytes per element must be positive, got " + std::to_string(bytes_per_element));
  LayerCost c;
  c.P = std::clamp(P, 0, T);
  const double Pd = c.P, Td = T, E = cfg.E, N = cfg.N, GN = static_cast<double>(cfg.G) * cfg.N;
  const double pairs = Pd * (Pd + 1.0) / 2.0;
  c.attention_flops = 2.0 * pairs * (GN + E);          // E = H * p
  c.scan_flops = 4.0 * (Td - Pd) * E * N;
  c.converter_flops = (c.P > 0 && c.P < T) ? 2.0 * Pd * E * N : 0.0;
  c.kv_cache_bytes = Pd * (GN + E) * bytes_per_element;
  c.state_bytes = static_cast<double>(cfg.H) * cfg.p() * N * 4.0;
  return c;
}

// Takes a valid config and T >= 1; returns the FLOPs of one layer that do not depend on P (in_proj, conv,
// out_proj; see the header comment), for one sequence.
inline double projection_flops(const MixerConfig& cfg, int T) {
  cfg.validate();
  if (T <= 0) throw std::invalid_argument("projection_flops: T must be positive, got " + std::to_string(T));
  const double Td = T;
  return 2.0 * Td * cfg.D * cfg.in_proj_width() + 2.0 * Td * cfg.conv_channels() * cfg.W + 2.0 * Td * cfg.E * cfg.D;
}

struct ScheduleCost {
  std::vector<LayerCost> layers;   // one per mixer layer
  LayerCost total;                 // sums over the layers (total.P is unused and stays 0)
  double attention_share = 0;      // fraction of all (layer, token) pairs in attention: sum of P / (n_layers T)
  double transformer_flops = 0;    // mixer FLOPs of the same layers with every P = T

  // Takes nothing; returns total mixer FLOPs / those of the all-attention (`transformer`) schedule.
  double ratio_to_transformer() const { return transformer_flops > 0 ? total.mixer_flops() / transformer_flops : 0.0; }
};

// Takes a schedule, a valid config, T >= 1, the number of mixer layers n_layers >= 1 and the bytes per KV
// element; returns the cost of every layer, their sums and the all-attention reference. Throws
// std::invalid_argument for bad arguments.
inline ScheduleCost schedule_cost(const Schedule& s, const MixerConfig& cfg, int T, int n_layers,
                                  int bytes_per_element = 2) {
  if (n_layers <= 0)
    throw std::invalid_argument("schedule_cost: n_layers must be positive, got " + std::to_string(n_layers));
  ScheduleCost sc;
  const LayerCost all_attention = layer_cost(cfg, T, T, bytes_per_element);
  for (int P : s.transpoints(n_layers, T)) {
    const LayerCost c = layer_cost(cfg, T, P, bytes_per_element);
    sc.layers.push_back(c);
    sc.attention_share += static_cast<double>(c.P) / (static_cast<double>(T) * n_layers);
    sc.total.attention_flops += c.attention_flops;
    sc.total.scan_flops += c.scan_flops;
    sc.total.converter_flops += c.converter_flops;
    sc.total.kv_cache_bytes += c.kv_cache_bytes;
    sc.total.state_bytes += c.state_bytes;
    sc.transformer_flops += all_attention.mixer_flops();
  }
  return sc;
}

}  // namespace transmamba
