// tm-decode: builds a tiny random TransMamba model, prefills a prompt and decodes greedily (DESIGN.md
// section 6; reference/inference.hpp), printing per layer the mode each token went through (attention or
// scan) and the memory the layer holds (KV cache, fixed-size state) as the sequence grows.
//
//   tm-decode [--schedule 0,6,100] [--seed 1] [--prompt 1,2,3] [--steps 8] [--layers 3] [--vocab 32] [--tie]
//             [--D 16 --E 32 --H 4 --G 2 --N 8 --W 4 --F 64]
//
// The planned length is T_plan = prompt length + steps; every layer's TransPoint is P_l =
// schedule.transpoint(l, T_plan), fixed at prefill. Scalars are double (8 bytes). Exit 0 on success, 2 on bad
// usage or input.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "reference/inference.hpp"
#include "reference/model.hpp"

namespace {

using transmamba::InferenceState;
using transmamba::ModelConfig;
using transmamba::ModelParams;
using Scalar = double;

// Takes logits [V]; returns the id of the largest (the first of equals): greedy decoding.
int argmax(const transmamba::Vec<Scalar>& logits) {
  Eigen::Index best = 0;
  logits.maxCoeff(&best);
  return int(best);
}

// Takes "a,b,c"; returns the token ids. Throws std::invalid_argument naming the entry that is not an integer.
std::vector<int> parse_ids(const std::string& text) {
  std::vector<int> ids;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string e = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::size_t used = 0;
    int id = 0;
    try {
      id = std::stoi(e, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (e.empty() || used != e.size())
      throw std::invalid_argument("--prompt '" + text + "': entry '" + e + "' is not an integer token id");
    ids.push_back(id);
    if (comma == std::string::npos) return ids;
    start = comma + 1;
  }
}

// Takes a list of ints; returns it as "a,b,c".
std::string join(const std::vector<int>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

// Takes the run's model, seed, state after prefill, prompt length and steps; prints the heading lines and the
// column titles.
void print_heading(const ModelConfig& cfg, std::uint64_t seed, const InferenceState<Scalar>& st, int T0, int steps) {
  const transmamba::MixerConfig& m = cfg.mixer;
  std::printf("model: tiny random, seed %llu: %s V=%d n_layers=%d F=%d %s\n", (unsigned long long)seed,
              m.describe().c_str(), cfg.V, cfg.n_layers, cfg.F, cfg.tie_embeddings ? "tied" : "untied");
  std::printf("schedule: %s\n", cfg.schedule.describe().c_str());
  std::vector<int> P;
  for (const auto& layer : st.layers) P.push_back(layer.P);
  std::printf("planned length T_plan = %d (prompt %d + %d steps), so P per layer = [%s]\n", st.planned_length, T0,
              steps, join(P).c_str());
  std::printf("mode: how token t went through the layer (attn: t < P, scan: t >= P; both: prompt tokens on either side of P).\n"
              "memory the layer holds after it, in bytes (double): KV = cached tokens x (G*N + H*p) = n x %d values,\n"
              "freed once past P; state = scan state H*p*N + conv window (W-1)*(E+2GN) = %d + %d values\n\n",
              m.G * m.N + m.E, m.E * m.N, (m.W - 1) * m.conv_channels());
  std::printf("%-8s %6s %8s %5s", "", "t", "token", "next");
  for (std::size_t l = 0; l < st.layers.size(); ++l)
    std::printf(" | %-21s", ("layer " + std::to_string(l) + " (P=" + std::to_string(P[l]) + ")").c_str());
  std::printf(" | %9s\n", "all KV");
  std::printf("%-8s %6s %8s %5s", "", "", "", "");
  for (std::size_t l = 0; l < st.layers.size(); ++l) std::printf(" | %-5s %7s %7s", "mode", "KV", "state");
  std::printf(" |\n");
}

// Takes one row's label, the positions [t0, t1] of its tokens, the token(s) as text, the greedy next token and
// the state after them; prints the row: per layer the mode of those tokens and the bytes held afterwards.
void print_row(const char* what, int t0, int t1, const std::string& tokens, int next, const InferenceState<Scalar>& st) {
  const std::string t = t0 == t1 ? std::to_string(t1) : std::to_string(t0) + ".." + std::to_string(t1);
  std::printf("%-8s %6s %8s %5d", what, t.c_str(), tokens.size() > 8 ? (tokens.substr(0, 5) + "...").c_str() : tokens.c_str(),
              next);
  std::size_t kv_total = 0;
  for (const auto& layer : st.layers) {
    const char* mode = layer.attends(t1) ? "attn" : layer.attends(t0) ? "both" : "scan";
    std::printf(" | %-5s %7zu %7zu", mode, layer.kv_cache_bytes(), layer.state_bytes());
    kv_total += layer.kv_cache_bytes();
  }
  std::printf(" | %9zu\n", kv_total);
}

}  // namespace

int main(int argc, char** argv) {
  ModelConfig cfg;
  cfg.mixer = transmamba::MixerConfig{};  // D 16, E 32, H 4, G 2, N 8, W 4
  cfg.n_layers = 3;
  std::string schedule_text = "0,6,100";
  std::uint64_t seed = 1;
  std::string prompt_text = "1,2,3";
  int steps = 8;

  CLI::App app{"tm-decode: prefill a prompt into a tiny random TransMamba model and decode greedily, printing per\n"
               "layer its mode (attention for tokens t < P, scan from P on) and its memory (KV cache, state) as the\n"
               "sequence grows (DESIGN.md section 6). The planned length T_plan = prompt + steps fixes every P."};
  app.add_option("--schedule", schedule_text,
                 "TransPoints: V1..V9, V1@rel..V9@rel, transformer, mamba, an absolute list (0,6,100) or fractions "
                 "of T_plan (0,0.5,1.0)")
      ->capture_default_str();
  app.add_option("--seed", seed, "seed of the random weights")->check(transmamba::whole_number(0))->capture_default_str();
  app.add_option("--prompt", prompt_text, "prompt token ids, comma-separated, each in [0, vocab)")->capture_default_str();
  app.add_option("--steps", steps, "tokens to decode after the prompt")->check(transmamba::whole_number(0))->capture_default_str();
  app.add_option("--layers", cfg.n_layers, "blocks (mixer + MLP); the schedule cycles over them")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--vocab", cfg.V, "vocabulary size V")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_flag("--tie", cfg.tie_embeddings, "tie the LM head to the embedding");
  app.add_option("--D", cfg.mixer.D, "model width d_model")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--E", cfg.mixer.E, "inner width d_inner")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--H", cfg.mixer.H, "value heads (head dim p = E / H)")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--G", cfg.mixer.G, "groups of Q/K")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--N", cfg.mixer.N, "state size d_state")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--W", cfg.mixer.W, "conv width")->check(transmamba::whole_number(1))->capture_default_str();
  app.add_option("--F", cfg.F, "SwiGLU hidden width")->check(transmamba::whole_number(1))->capture_default_str();

  if (const auto exit_code = transmamba::parse_command_line(app, argc, argv)) return *exit_code;

  try {
    if (steps < 0) throw std::invalid_argument("--steps must be >= 0, got " + std::to_string(steps));
    const std::vector<int> prompt = parse_ids(prompt_text);
    cfg.schedule = transmamba::parse_schedule(schedule_text);
    cfg.validate();
    for (std::size_t t = 0; t < prompt.size(); ++t)
      transmamba::check_token("--prompt token " + std::to_string(t), prompt[t], cfg.V);
    const ModelParams<Scalar> prm = ModelParams<Scalar>::init(cfg, seed);
    const int T0 = int(prompt.size());
    transmamba::PrefillResult<Scalar> run = transmamba::prefill(prm, prompt, T0 + steps);
    int next = argmax(run.logits.row(T0 - 1).transpose());
    print_heading(cfg, seed, run.state, T0, steps);
    print_row("prefill", 0, T0 - 1, join(prompt), next, run.state);
    std::vector<int> generated;
    for (int i = 0; i < steps; ++i) {
      const int t = run.state.position, token = next;
      next = argmax(transmamba::decode(prm, run.state, token));
      generated.push_back(token);
      print_row("decode", t, t, std::to_string(token), next, run.state);
    }
    std::printf("\nprompt [%s] -> generated [%s], then %d\n", join(prompt).c_str(), join(generated).c_str(), next);
  } catch (const std::exception& e) {
    std::cerr << "tm-decode: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
