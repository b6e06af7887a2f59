// The TransMamba language model (DESIGN.md section 2, "Block and model"): forward, loss and backward for one
// sequence of token ids tokens: [T], T >= 1.
//
//   h = embedding[tokens]                                   [T, D]
//   block l = 0 .. n_layers-1, TransPoint P_l (below):
//     h += Mixer_l(RMSNorm(h), P_l)                         mixer.hpp (E1-E8)
//     h += MLP_l(RMSNorm(h))                                mlp.hpp: (SiLU(v W_gate) ⊙ (v W_up)) W_down
//   logits = RMSNorm(h) · head                              [T, V]; head = embeddingᵀ when tied
//   loss = mean_{t < T-1} ( logsumexp(logits[t]) - logits[t, tokens[t+1]] )
//
// RMSNorm here is the plain one over D (norm.hpp with groups = 1, eps 1e-5), with a weight of its own each.
// T = 1: there is no next token to predict, so the loss is defined as 0 (and every gradient is 0).
//
// TransPoints (DESIGN.md section 5). The schedule gives P for a sequence length. The model is told the
// length the sequence is planned to reach, T_plan >= T, and layer l uses
//
//   P_l = min(schedule.transpoint(l, T_plan), T).
//
// Training plans T_plan = T (model_forward(prm, tokens)): P_l = schedule.transpoint(l, T). [choice] Decoding
// (inference.hpp) fixes T_plan at prefill, so that P_l does not move while the sequence grows; since every
// layer is causal, the forward over any prefix of a sequence is then the prefix of the forward over the whole
// sequence, and that is what token-by-token decoding reproduces.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "reference/mixer.hpp"
#include "reference/mlp.hpp"
#include "reference/norm.hpp"
#include "reference/params.hpp"
#include "reference/projection.hpp"
#include "reference/schedule.hpp"

namespace transmamba {

struct ModelConfig {
  MixerConfig mixer;                             // D, E, H, G, N, W, chunk of every mixer layer
  int V = 32;                                    // vocabulary size; token ids are 0 .. V-1
  int n_layers = 2;                              // blocks, each one mixer + one MLP
  int F = 64;                                    // SwiGLU hidden width
  bool tie_embeddings = false;                   // true: head = embeddingᵀ, and there is no head tensor
  Schedule schedule = parse_schedule("V9@rel");  // TransPoints cycled over the mixer layers (section 5)

  // Throws std::invalid_argument naming the first field that does not fit.
  void validate() const {
    mixer.validate();
    auto positive = [](const char* name, int v) {
      if (v <= 0) throw std::invalid_argument(std::string("ModelConfig: ") + name + " must be positive, got " + std::to_string(v));
    };
    positive("V", V);
    positive("n_layers", n_layers);
    positive("F", F);
    if (schedule.size() == 0) throw std::invalid_argument("ModelConfig: schedule '" + schedule.name + "' is empty");
  }

  std::string describe() const {
    std::ostringstream os;
    os << mixer.describe() << " V=" << V << " n_layers=" << n_layers << " F=" << F
       << (tie_embeddings ? " tied" : " untied") << " schedule " << schedule.describe();
    return os.str();
  }
};

// The parameters of one block: the two pre-norms, the mixer and the MLP.
template <class S>
struct BlockParams {
  Vec<S> mixer_norm_w;   // [D]     RMSNorm before the mixer
  MixerParams<S> mixer;  //         E1-E8
  Vec<S> mlp_norm_w;     // [D]     RMSNorm before the MLP
  Mat<S> W_gate, W_up;   // [D, F]
  Mat<S> W_down;         // [F, D]
};

// The parameters of the model; the same struct holds their gradients.
template <class S>
struct ModelParams {
  ModelConfig cfg;
  Mat<S> embedding;                  // [V, D]
  std::vector<BlockParams<S>> blocks;  // [n_layers]
  Vec<S> final_norm_w;               // [D]
  Mat<S> head;                       // [D, V]; [0, 0] when cfg.tie_embeddings

  // The LM head as used: head, or embeddingᵀ when tied. [D, V]
  Mat<S> head_weights() const { return cfg.tie_embeddings ? Mat<S>(embedding.transpose()) : head; }

  // Every tensor in a fixed order, with its name: f(name, tensor), e.g. "embedding", "blocks.0.mixer_norm_w",
  // "blocks.0.mixer.W_in", "blocks.0.W_gate", "final_norm_w", "head" (not when tied).
  template <class Fn>
  void for_each(Fn&& f) {
    f("embedding", embedding);
    for (std::size_t l = 0; l < blocks.size(); ++l) {
      BlockParams<S>& b = blocks[l];
      const std::string at = "blocks." + std::to_string(l) + ".";
      f((at + "mixer_norm_w").c_str(), b.mixer_norm_w);
      b.mixer.for_each([&](const char* name, auto& t) { f((at + "mixer." + name).c_str(), t); });
      f((at + "mlp_norm_w").c_str(), b.mlp_norm_w);
      f((at + "W_gate").c_str(), b.W_gate), f((at + "W_up").c_str(), b.W_up), f((at + "W_down").c_str(), b.W_down);
    }
    f("final_norm_w", final_norm_w);
    if (!cfg.tie_embeddings) f("head", head);
  }
  template <class Fn>
  void for_each(Fn&& f) const {
    const_cast<ModelParams*>(this)->for_each([&](const char* name, const auto& t) { f(name, t); });
  }

  // All tensors zero, with the shapes of cfg (the start of a gradient accumulation).
  static ModelParams zeros(const ModelConfig& cfg) {
    cfg.validate();
    const int D = cfg.mixer.D;
    ModelParams m;
    m.cfg = cfg;
    m.embedding = Mat<S>::Zero(cfg.V, D);
    for (int l = 0; l < cfg.n_layers; ++l)
      m.blocks.push_back({Vec<S>::Zero(D), MixerParams<S>::zeros(cfg.mixer), Vec<S>::Zero(D), Mat<S>::Zero(D, cfg.F),
                          Mat<S>::Zero(D, cfg.F), Mat<S>::Zero(cfg.F, D)});
    m.final_norm_w = Vec<S>::Zero(D);
    m.head = cfg.tie_embeddings ? Mat<S>(0, 0) : Mat<S>(Mat<S>::Zero(D, cfg.V));
    return m;
  }

  // Reproducible from seed: the embedding N(0, 1) (PyTorch's nn.Embedding), the linear maps (MLP, head)
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's nn.Linear), norm weights 1, each mixer MixerParams::init
  // with a seed drawn from this one.
  static ModelParams init(const ModelConfig& cfg, std::uint64_t seed) {
    ModelParams m = zeros(cfg);
    std::mt19937_64 rng(seed);
    auto fill_uniform = [&](Mat<S>& t, double bound) {
      t = t.unaryExpr([&](S) { return S(std::uniform_real_distribution<double>(-bound, bound)(rng)); });
    };
    m.embedding = m.embedding.unaryExpr([&](S) { return S(std::normal_distribution<double>(0, 1)(rng)); });
    for (BlockParams<S>& b : m.blocks) {
      b.mixer_norm_w.setOnes();
      b.mixer = MixerParams<S>::init(cfg.mixer, rng());
      b.mlp_norm_w.setOnes();
      fill_uniform(b.W_gate, 1 / std::sqrt(double(cfg.mixer.D)));
      fill_uniform(b.W_up, 1 / std::sqrt(double(cfg.mixer.D)));
      fill_uniform(b.W_down, 1 / std::sqrt(double(cfg.F)));
    }
    m.final_norm_w.setOnes();
    if (!cfg.tie_embeddings) fill_uniform(m.head, 1 / std::sqrt(double(cfg.mixer.D)));
    return m;
  }

  // Throws std::invalid_argument naming the first tensor whose shape does not fit cfg.
  void validate() const {
    cfg.validate();
    const int D = cfg.mixer.D;
    check_shape("embedding", embedding, cfg.V, D);
    if (blocks.size() != std::size_t(cfg.n_layers))
      throw std::invalid_argument("blocks: expected " + std::to_string(cfg.n_layers) + " (n_layers), got " +
                                  std::to_string(blocks.size()));
    for (std::size_t l = 0; l < blocks.size(); ++l) {
      const BlockParams<S>& b = blocks[l];
      const std::string at = "blocks." + std::to_string(l) + ".";
      check_size((at + "mixer_norm_w").c_str(), b.mixer_norm_w, D);
      if (b.mixer.cfg.describe() != cfg.mixer.describe())
        throw std::invalid_argument(at + "mixer: config " + b.mixer.cfg.describe() + " differs from the model's " +
                                    cfg.mixer.describe());
      b.mixer.validate();
      check_size((at + "mlp_norm_w").c_str(), b.mlp_norm_w, D);
      check_shape((at + "W_gate").c_str(), b.W_gate, D, cfg.F);
      check_shape((at + "W_up").c_str(), b.W_up, D, cfg.F);
      check_shape((at + "W_down").c_str(), b.W_down, cfg.F, D);
    }
    check_size("final_norm_w", final_norm_w, D);
    if (cfg.tie_embeddings && head.size() != 0)
      throw std::invalid_argument("head: the model ties the LM head to the embedding, so head must be empty, got [" +
                                  std::to_string(head.rows()) + ", " + std::to_string(head.cols()) + "]");
    if (!cfg.tie_embeddings) check_shape("head", head, D, cfg.V);
  }

  template <class T>
  ModelParams<T> cast() const {
    ModelParams<T> m;
    m.cfg = cfg;
    m.embedding = embedding.template cast<T>();
    for (const BlockParams<S>& b : blocks)
      m.blocks.push_back({b.mixer_norm_w.template cast<T>(), b.mixer.template cast<T>(), b.mlp_norm_w.template cast<T>(),
                          b.W_gate.template cast<T>(), b.W_up.template cast<T>(), b.W_down.template cast<T>()});
    m.final_norm_w = final_norm_w.template cast<T>();
    m.head = head.template cast<T>();
    return m;
  }
};

// ---- tokens, TransPoints, embedding, head and loss ------------------------------------------------------

// Throws std::invalid_argument when the token id is outside [0, V).
inline void check_token(const std::string& name, int id, int V) {
  if (id < 0 || id >= V)
    throw std::invalid_argument(name + " = " + std::to_string(id) + " is outside [0, V=" + std::to_string(V) + ")");
}

// tokens: [T]; throws std::invalid_argument when T = 0 or an id is outside [0, V).
inline void check_tokens(const std::vector<int>& tokens, int V) {
  if (tokens.empty()) throw std::invalid_argument("tokens: the sequence must hold at least one token");
  for (std::size_t t = 0; t < tokens.size(); ++t) check_token("tokens[" + std::to_string(t) + "]", tokens[t], V);
}

// The TransPoint of every layer, [n_layers]: P_l = min(schedule.transpoint(l, T_plan), T) (header comment).
// Throws std::invalid_argument when T_plan < T.
inline std::vector<int> layer_transpoints(const ModelConfig& cfg, int T, int planned_length) {
  if (planned_length < T)
    throw std::invalid_argument("planned length T_plan=" + std::to_string(planned_length) +
                                " is shorter than the sequence (T=" + std::to_string(T) + " tokens)");
  std::vector<int> P = cfg.schedule.transpoints(cfg.n_layers, planned_length);
  for (int& p : P) p = std::min(p, T);
  return P;
}

// tokens: [T] -> embedding rows [T, D]
template <class S>
Mat<S> embed(const ModelParams<S>& prm, const std::vector<int>& tokens) {
  check_tokens(tokens, prm.cfg.V);
  Mat<S> h(Eigen::Index(tokens.size()), prm.cfg.mixer.D);
  for (std::size_t t = 0; t < tokens.size(); ++t) h.row(Eigen::Index(t)) = prm.embedding.row(tokens[t]);
  return h;
}

// The residual stream h: [T, D] -> logits [T, V] = RMSNorm(h) · head
template <class S>
Mat<S> lm_logits(const ModelParams<S>& prm, const Mat<S>& h) {
  return linear_forward(rmsnorm_forward<S>(h, prm.final_norm_w, 1), prm.head_weights());
}

// log Σ_v exp(row[v]), the max subtracted so that exp never overflows. row: [1, V] -> scalar
template <class S, class Row>
S logsumexp(const Row& row) {
  const S m = row.maxCoeff();
  return m + std::log((row.array() - m).exp().sum());
}

// logits: [T, V], tokens: [T] -> mean_{t < T-1} ( logsumexp(logits[t]) - logits[t, tokens[t+1]] ); 0 when T = 1.
template <class S>
S next_token_loss(const Mat<S>& logits, const std::vector<int>& tokens) {
  check_shape("logits", logits, Eigen::Index(tokens.size()), logits.cols());
  const Eigen::Index T = logits.rows();
  if (T < 2) return S(0);
  S sum = 0;
  for (Eigen::Index t = 0; t + 1 < T; ++t) sum += logsumexp<S>(logits.row(t)) - logits(t, tokens[t + 1]);
  return sum / S(T - 1);
}

// d loss / d logits: [T, V], row t < T-1 = (softmax(logits[t]) - onehot(tokens[t+1])) / (T-1), row T-1 zero.
template <class S>
Mat<S> next_token_loss_backward(const Mat<S>& logits, const std::vector<int>& tokens) {
  check_shape("logits", logits, Eigen::Index(tokens.size()), logits.cols());
  const Eigen::Index T = logits.rows();
  Mat<S> d = Mat<S>::Zero(T, logits.cols());
  for (Eigen::Index t = 0; t + 1 < T; ++t) {
    d.row(t) = (logits.row(t).array() - logsumexp<S>(logits.row(t))).exp().matrix();
    d(t, tokens[t + 1]) -= S(1);
    d.row(t) /= S(T - 1);
  }
  return d;
}

// ---- forward and backward ------------------------------------------------------------------------------

// One block's intermediates.
template <class S>
struct BlockForward {
  Mat<S> h_in;            // [T, D] the residual stream entering the block
  Mat<S> mixer_in;        // [T, D] RMSNorm(h_in)
  MixerForward<S> mixer;  // its .out: [T, D]
  Mat<S> h_mid;           // [T, D] h_in + mixer.out
  Mat<S> mlp_in;          // [T, D] RMSNorm(h_mid)
  Mat<S> h_out;           // [T, D] h_mid + MLP(mlp_in)
};

template <class S>
struct ModelForward {
  std::vector<int> tokens;              // [T]
  int planned_length = 0;               // T_plan
  std::vector<int> P;                   // [n_layers], P_l = min(schedule.transpoint(l, T_plan), T)
  std::vector<BlockForward<S>> blocks;  // [n_layers]; blocks[0].h_in is the embedding of the tokens
  Mat<S> h_final;                       // [T, D] the residual stream after the last block
  Mat<S> logits;                        // [T, V]
  S loss = 0;                           // mean next-token cross-entropy (0 when T = 1)
};

// tokens: [T] (T >= 1, ids in [0, V)), planned_length T_plan >= T -> every intermediate, logits [T, V], loss.
template <class S>
ModelForward<S> model_forward(const ModelParams<S>& prm, const std::vector<int>& tokens, int planned_length) {
  prm.validate();
  check_tokens(tokens, prm.cfg.V);
  ModelForward<S> f;
  f.tokens = tokens;
  f.planned_length = planned_length;
  f.P = layer_transpoints(prm.cfg, int(tokens.size()), planned_length);
  Mat<S> h = embed(prm, tokens);
  for (int l = 0; l < prm.cfg.n_layers; ++l) {
    const BlockParams<S>& blk = prm.blocks[l];
    BlockForward<S> b;
    b.h_in = h;
    b.mixer_in = rmsnorm_forward<S>(b.h_in, blk.mixer_norm_w, 1);
    b.mixer = mixer_forward(blk.mixer, b.mixer_in, f.P[l]);
    b.h_mid = b.h_in + b.mixer.out;
    b.mlp_in = rmsnorm_forward<S>(b.h_mid, blk.mlp_norm_w, 1);
    b.h_out = b.h_mid + mlp_forward(b.mlp_in, blk.W_gate, blk.W_up, blk.W_down);
    h = b.h_out;
    f.blocks.push_back(std::move(b));
  }
  f.h_final = h;
  f.logits = lm_logits(prm, f.h_final);
  f.loss = next_token_loss(f.logits, tokens);
  return f;
}

// Training: the sequence is all there is, T_plan = T.
template <class S>
ModelForward<S> model_forward(const ModelParams<S>& prm, const std::vector<int>& tokens) {
  return model_forward(prm, tokens, int(tokens.size()));
}

// d f.loss / d every parameter, in the parameters' shapes (P is not differentiable). The embedding gets the
// scatter-add of the gradient reaching each token's row, plus, when tied, the head's gradient transposed.
template <class S>
ModelParams<S> model_backward(const ModelParams<S>& prm, const ModelForward<S>& f) {
  const ModelConfig& cfg = prm.cfg;
  ModelParams<S> g = ModelParams<S>::zeros(cfg);
  // logits = RMSNorm(h_final) · head
  const Mat<S> d_logits = next_token_loss_backward(f.logits, f.tokens);
  const LinearGrads<S> head = linear_backward(rmsnorm_forward<S>(f.h_final, prm.final_norm_w, 1), prm.head_weights(), d_logits);
  if (cfg.tie_embeddings)
    g.embedding += head.d_W.transpose();
  else
    g.head = head.d_W;
  const NormGrads<S> final_norm = rmsnorm_backward<S>(f.h_final, prm.final_norm_w, 1, nullptr, head.d_in);
  g.final_norm_w = final_norm.d_w;
  Mat<S> d_h = final_norm.d_v;  // d loss / d (the residual stream), [T, D]
  for (int l = cfg.n_layers - 1; l >= 0; --l) {
    const BlockParams<S>& blk = prm.blocks[l];
    const BlockForward<S>& b = f.blocks[l];
    BlockParams<S>& gb = g.blocks[l];
    // h_out = h_mid + MLP(RMSNorm(h_mid))
    const MlpGrads<S> mlp = mlp_backward(b.mlp_in, blk.W_gate, blk.W_up, blk.W_down, d_h);
    const NormGrads<S> mlp_norm = rmsnorm_backward<S>(b.h_mid, blk.mlp_norm_w, 1, nullptr, mlp.d_v);
    gb.W_gate = mlp.d_W_gate, gb.W_up = mlp.d_W_up, gb.W_down = mlp.d_W_down, gb.mlp_norm_w = mlp_norm.d_w;
    d_h += mlp_norm.d_v;
    // h_mid = h_in + Mixer(RMSNorm(h_in))
    const MixerGrads<S> mixer = mixer_backward(blk.mixer, b.mixer, d_h);
    const NormGrads<S> mixer_norm = rmsnorm_backward<S>(b.h_in, blk.mixer_norm_w, 1, nullptr, mixer.d_u);
    gb.mixer = mixer.d_params, gb.mixer_norm_w = mixer_norm.d_w;
    d_h += mixer_norm.d_v;
  }
  // h = embedding[tokens]
  for (std::size_t t = 0; t < f.tokens.size(); ++t) g.embedding.row(f.tokens[t]) += d_h.row(Eigen::Index(t));
  return g;
}

}  // namespace transmamba
