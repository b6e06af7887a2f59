// Inference (DESIGN.md section 6; PAPER.md section 5): prefill a prompt with the training forward, then
// decode one token at a time. Each decode step returns the logits the full forward (model.hpp) gives that
// token; the tests check it.
//
// [choice] TransPoints are fixed at prefill. prefill is told the planned total length T_plan (the prompt and
// every token that will be decoded), and layer l keeps P_l = schedule.transpoint(l, T_plan) to the end.
// Decoding a token at position t >= T_plan is an error: a longer sequence would move P_l (for a relative
// schedule, or an absolute one clamped to T_plan) and with it the logits of tokens already returned. The
// forward that decoding equals is model_forward(prm, tokens, T_plan).
//
// The state of layer l after the tokens 0 .. position-1:
//   conv_window  [W-1, E+2GN]  the last W-1 rows of xBC before the conv (E2), zero rows before token 0
//   kv_B, kv_x   [n, G·N], [n, H·p]  the keys (B) and values (x) of tokens s < min(position, P) (E4; C, the
//                              query, is not needed again): prefill keeps min(T0, P) of them, as DESIGN.md
//                              section 6 says, and a decode step at t < P appends token t. The first decode
//                              step at t >= P, where the layer switches to the scan, frees the cache (n = 0).
//   scan_state   [H·p, N]      the scan state after the last token. Updated at every token, also in attention
//                              mode, so that the moment the sequence reaches P it is the converter's S0 (E5).
//
// A decode step of token t through one mixer layer, from u_t = RMSNorm(h_t): [1, D] (mixer_step below):
//   E1  z, xBC_t, dt_raw = split(u_t · W_in)
//   E2  xBC_t = the last row of SiLU(conv) over the W-row window [conv_window; xBC_t]; the window moves on
//   E3  dt, A
//   E6  S ← a·S + dt · x_t ⊗ B_t                  (always)
//   t < P:   append (B_t, x_t) to the cache;  y = attention of the query C_t over the cache (E4);  ŷ = RMSNorm_G(y)
//   t >= P:  free the cache;  y = S·C_t + D_skip·x_t (E6);  ŷ = RMSNorm_G(y ⊙ SiLU(z))   (E7)
//   E8  out = ŷ · W_out
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "reference/attention.hpp"
#include "reference/conv.hpp"
#include "reference/mixer.hpp"
#include "reference/mlp.hpp"
#include "reference/model.hpp"
#include "reference/norm.hpp"
#include "reference/projection.hpp"
#include "reference/ssm.hpp"
#include "reference/step_size.hpp"

namespace transmamba {

// The decode state of one mixer layer (header comment).
template <class S>
struct LayerState {
  int P = 0;             // the layer's TransPoint, schedule.transpoint(l, T_plan)
  Mat<S> conv_window;    // [W-1, E+2GN]
  Mat<S> kv_B;           // [n, G·N]
  Mat<S> kv_x;           // [n, H·p]
  Mat<S> scan_state;     // [H·p, N]

  // Whether the token at position t goes through attention (t < P) or the scan.
  bool attends(int t) const { return t < P; }
  std::size_t kv_cache_bytes() const { return std::size_t(kv_B.size() + kv_x.size()) * sizeof(S); }
  // The fixed-size state: the scan state and the conv window.
  std::size_t state_bytes() const { return std::size_t(scan_state.size() + conv_window.size()) * sizeof(S); }
};

template <class S>
struct InferenceState {
  std::string model;                 // model_fingerprint() of the parameters that prefilled it
  int planned_length = 0;            // T_plan: tokens at positions 0 .. T_plan-1 may be decoded
  int position = 0;                  // tokens consumed so far = the position t of the next token
  std::vector<LayerState<S>> layers; // [n_layers]
};

// The model a state belongs to: its config and a 64-bit FNV-1a hash of every parameter value (taken as a
// double, so that the padding of a long double never enters). A state prefilled by one model is refused by
// another, also by one with the same config and other weights.
template <class S>
std::string model_fingerprint(const ModelParams<S>& prm) {
  std::uint64_t hash = 14695981039346656037ull;  // FNV-1a offset basis
  prm.for_each([&](const char*, const auto& t) {
    for (Eigen::Index i = 0; i < t.size(); ++i) {
      const double v = double(t.data()[i]);
      unsigned char bytes[sizeof v];
      std::memcpy(bytes, &v, sizeof v);
      for (unsigned char b : bytes) hash = (hash ^ b) * 1099511628211ull;  // FNV-1a prime
    }
  });
  std::ostringstream os;
  os << prm.cfg.describe() << " | weights " << std::hex << std::setw(16) << std::setfill('0') << hash;
  return os.str();
}

// One token through one mixer layer (header comment): u: [1, D] = RMSNorm(h_t) of the token at position t
// -> out: [1, D], and layer advanced past t. Reuses the layer's components: the conv over a W-row window,
// attention_rows for the one query, ssm_recurrent for one token.
template <class S>
Mat<S> mixer_step(const MixerParams<S>& prm, LayerState<S>& layer, const Mat<S>& u, int t) {
  const MixerConfig& cfg = prm.cfg;
  check_shape("u", u, 1, cfg.D);
  // E1
  const InProj<S> in = split_in_proj(cfg, linear_forward(u, prm.W_in));
  // E2: the causal conv of token t reads tokens t-W+1 .. t, the last row of the conv over the window.
  Mat<S> window(cfg.W, cfg.conv_channels());
  window.topRows(cfg.W - 1) = layer.conv_window;
  window.bottomRows(1) = in.xBC;
  const XBC<S> xbc = split_xbc(cfg, Mat<S>(conv_silu_forward(window, prm.conv_w, prm.conv_b).bottomRows(1)));
  layer.conv_window = window.bottomRows(cfg.W - 1);
  // E3
  const Mat<S> dt = step_size(in.dt_raw, prm.dt_bias);
  // E6: the running scan state, in both modes.
  const ScanResult<S> scan = ssm_recurrent(cfg, xbc.x, dt, decay_rate(prm.A_log), xbc.B, xbc.C, layer.scan_state);
  layer.scan_state = scan.final_state;
  Mat<S> y_normed;
  if (layer.attends(t)) {
    // E4: the query C_t over the keys and values of tokens 0 .. t; E7 without the gate.
    layer.kv_B.conservativeResize(layer.kv_B.rows() + 1, Eigen::NoChange);
    layer.kv_x.conservativeResize(layer.kv_x.rows() + 1, Eigen::NoChange);
    layer.kv_B.bottomRows(1) = xbc.B;
    layer.kv_x.bottomRows(1) = xbc.x;
    y_normed = rmsnorm_forward<S>(attention_rows(cfg, xbc.C, layer.kv_B, layer.kv_x), prm.norm_w, cfg.G);
  } else {
    // The layer is in scan mode for good: its KV cache is freed. E6's output with the D skip; E7 gated.
    layer.kv_B = Mat<S>(0, cfg.G * cfg.N);
    layer.kv_x = Mat<S>(0, cfg.E);
    y_normed = rmsnorm_forward<S>(Mat<S>(scan.y + skip_term(prm, xbc.x)), prm.norm_w, cfg.G, &in.z);
  }
  // E8
  return linear_forward(y_normed, prm.W_out);
}

template <class S>
struct PrefillResult {
  Mat<S> logits;            // [T0, V], the logits of every prompt token
  InferenceState<S> state;  // position T0
};

// prompt: [T0] (T0 >= 1, ids in [0, V)), planned_length T_plan >= T0 -> the logits of the prompt and the
// state to decode from. Runs model_forward(prm, prompt, T_plan) and keeps, per layer, the conv window, the
// KV cache of tokens < min(T0, P_l) and the scan state after token T0-1 (the mixer's final state: the scan's,
// or S0 when the whole prompt is in attention mode).
template <class S>
PrefillResult<S> prefill(const ModelParams<S>& prm, const std::vector<int>& prompt, int planned_length) {
  if (prompt.empty()) throw std::invalid_argument("prompt: the prompt must hold at least one token");
  const ModelForward<S> f = model_forward(prm, prompt, planned_length);
  const MixerConfig& cfg = prm.cfg.mixer;
  const Eigen::Index T0 = Eigen::Index(prompt.size());
  PrefillResult<S> r;
  r.logits = f.logits;
  r.state.model = model_fingerprint(prm);
  r.state.planned_length = planned_length;
  r.state.position = int(T0);
  for (int l = 0; l < prm.cfg.n_layers; ++l) {
    const MixerForward<S>& mix = f.blocks[l].mixer;
    LayerState<S> layer;
    layer.P = prm.cfg.schedule.transpoint(l, planned_length);
    const Eigen::Index kept_rows = std::min<Eigen::Index>(cfg.W - 1, T0);
    layer.conv_window = Mat<S>::Zero(cfg.W - 1, cfg.conv_channels());
    layer.conv_window.bottomRows(kept_rows) = mix.xBC_in.bottomRows(kept_rows);
    const Eigen::Index cached = std::min<Eigen::Index>(T0, layer.P);
    layer.kv_B = mix.B.topRows(cached);
    layer.kv_x = mix.x.topRows(cached);
    layer.scan_state = mix.final_state;
    r.state.layers.push_back(std::move(layer));
  }
  return r;
}

// The next token (at position t = state.position) -> its logits [V]; state advances to t + 1. Throws
// std::invalid_argument, leaving the state as it was, when the state was prefilled by another model, when
// t >= T_plan, or when the token id is outside [0, V).
template <class S>
Vec<S> decode(const ModelParams<S>& prm, InferenceState<S>& state, int token) {
  const std::string model = model_fingerprint(prm);
  if (state.model != model)
    throw std::invalid_argument("decode: the state was prefilled by another model (state: " + state.model +
                                "; these parameters: " + model + ")");
  const int t = state.position;
  if (t >= state.planned_length)
    throw std::invalid_argument("decode: position t=" + std::to_string(t) + " is beyond the planned length T_plan=" +
                                std::to_string(state.planned_length) +
                                " given to prefill (the TransPoints were fixed for it); prefill again with a longer plan");
  check_token("token", token, prm.cfg.V);
  if (state.layers.size() != std::size_t(prm.cfg.n_layers))
    throw std::invalid_argument("decode: the state holds " + std::to_string(state.layers.size()) +
                                " layers, the model " + std::to_string(prm.cfg.n_layers));
  Mat<S> h = embed(prm, {token});  // [1, D]
  for (int l = 0; l < prm.cfg.n_layers; ++l) {
    const BlockParams<S>& blk = prm.blocks[l];
    h += mixer_step(blk.mixer, state.layers[l], rmsnorm_forward<S>(h, blk.mixer_norm_w, 1), t);
    h += mlp_forward(rmsnorm_forward<S>(h, blk.mlp_norm_w, 1), blk.W_gate, blk.W_up, blk.W_down);
  }
  state.position = t + 1;
  return lm_logits(prm, h).row(0).transpose();
}

}  // namespace transmamba
