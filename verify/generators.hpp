// Random inputs for the checks: RapidCheck generators for configs, shapes and regimes (which shrink); the
// bounded random tensors they draw from a seed (the seed is part of every counterexample, so a case replays
// exactly) are common/random_tensors.hpp's RandomTensors, in the Regime drawn here (gen_regime).
//
// Values are bounded on purpose, never arbitrary floats. Every generator draws a Regime (common/random_tensors.hpp):
// the easy one, small well-scaled values where every decay a = exp(dt·A) stays away from 0, and the hard ones
// where the reference's formulas are put to the test (DESIGN.md section 3).
#pragma once

#include <rapidcheck.h>

#include <algorithm>
#include <ostream>
#include <string>

#include "common/random_tensors.hpp"
#include "reference/model.hpp"
#include "reference/params.hpp"

namespace transmamba {

inline void showValue(const MixerConfig& cfg, std::ostream& os) { os << "MixerConfig{" << cfg.describe() << "}"; }

// *gen, with its value written to the case's log as "name = value": a failing case's report (RapidCheck's
// "Log:" section) then says which drawn value is T, P or the tensors' seed, where the counterexample
// itself only lists types and values ("int: 3").
template <class T>
T draw(const char* name, rc::Gen<T> gen) {
  T value = *std::move(gen);
  RC_LOG() << name << " = " << rc::toString(value) << "\n";
  return value;
}

// Small configs that cover the edges: G = 1, G = H and in between; N, W, Q from 1.
// p starts at 2: with G = H and p = 1 a norm group holds one channel, RMSNorm degenerates to sign(v)·w and
// its gradient is O(eps / |v|^3), below what central differences with step 1e-6 resolve to 1e-6.
inline rc::Gen<MixerConfig> gen_mixer_config() {
  return rc::gen::exec([] {
    MixerConfig cfg;
    cfg.G = *rc::gen::inRange(1, 4);
    cfg.H = cfg.G * *rc::gen::element(1, 1, 2, 3);  // H % G == 0; G = H when the factor is 1
    cfg.E = cfg.H * *rc::gen::inRange(2, 4);        // p = 2..3
    cfg.N = *rc::gen::inRange(1, 5);
    cfg.D = *rc::gen::inRange(1, 6);
    cfg.W = *rc::gen::inRange(1, 5);
    cfg.chunk = *rc::gen::inRange(1, 6);
    return cfg;
  });
}

// A sequence length, often not a multiple of the chunk; 1 is included.
inline rc::Gen<int> gen_length(int max_len = 12) { return rc::gen::inRange(1, max_len + 1); }
// The same over its whole range from the first case on (RapidCheck scales ranges with its size, which grows from
// 0 over a run, so that gen_length draws short sequences first): for the ladder's long prefixes.
inline rc::Gen<int> gen_long_length(int max_len) { return rc::gen::resize(rc::kNominalSize, gen_length(max_len)); }

// A TransPoint in [0, T], with the edges 0, 1, T-1 and T drawn often.
inline rc::Gen<int> gen_transpoint(int T) {
  return rc::gen::oneOf(rc::gen::just(0), rc::gen::just(std::min(1, T)), rc::gen::just(T - 1), rc::gen::just(T),
                        rc::gen::inRange(0, T + 1));
}

inline void showValue(const Regime& r, std::ostream& os) { os << "Regime{" << r.describe() << "}"; }

// Which regimes a check draws:
//   all:          the easy regime half of the time (and where a failing case shrinks to), else any mix of the
//                 hard parts;
//   finite_diff:  the same without scale 1e3. Central differences with a fixed step need a curvature bounded
//                 relative to the slope; with inputs of 1e3 a layer's tensors span many orders of magnitude (a
//                 norm group whose input is near sqrt(eps) next to groups of 1e6, scores of 1e6) and the step's
//                 truncation error reached 3% (mixer.backward_fd, seed 6: d_conv_w). There the gradients are
//                 held to long double by the ladder, whose truth has no step;
//   easy:         the easy regime only. For float vs the double truth: the hard regimes reach far outside
//                 float's range (step sizes of e^-1000, decays of e^-16000, tensors all below 1e-38), where
//                 float's 0 against double's 1e-114 is no error of the formulas (the double ladder checks those
//                 on every regime). For the layer's finite differences: with steps of 1e3 the layer's output is
//                 dt·(B·C)·x and the step 1e-6 in the conv weights already moves the norm's input direction
//                 enough for a truncation error of 4e-6 (sweep seeds 30, 48, 85, 89, 96; at seed 30 the
//                 difference quotient of d_conv_w converges to the analytic value as the step shrinks: 3.6e-6
//                 off at 1e-6, 4e-10 at 1e-8).
enum class Regimes { all, finite_diff, easy };
inline rc::Gen<Regime> gen_regime(Regimes which = Regimes::all) {
  if (which == Regimes::easy) return rc::gen::just(Regime{});
  return rc::gen::exec([which] {
    Regime r;
    if (!*rc::gen::element(false, true)) return r;
    r.steps = *rc::gen::element(Regime::Steps::easy, Regime::Steps::mixed, Regime::Steps::long_prefix);
    r.strong_decay = *rc::gen::element(false, true);
    if (which == Regimes::all) r.scale = *rc::gen::element(1.0, 1e3);
    r.large_scores = *rc::gen::element(false, true);
    return r;
  });
}

}  // namespace transmamba
