// The state-space scan of the tokens from the TransPoint on (E6), in the three forms of DESIGN.md
// section 3, and its backward. The forms compute the same function; the tests check them equal.
//
// Per head h (group g = g(h)), with decay a[t] = exp(dt[t]·A) and state S_t of shape [p, N]:
//
//   S_t = a[t] · S_{t-1} + dt[t] · x[t] ⊗ B[t]           (S_{-1} = S_init)
//   y[t] = S_t · C[t]                                     (the D skip is added by the layer, E6)
//
// Shapes (one sequence of T tokens): x [T, H·p], dt [T, H], A [H], B and C [T, G·N],
// S_init and the final state [H·p, N] (rows h·p .. h·p+p-1 are head h's state), y [T, H·p].
#pragma once

#include <algorithm>
#include <vector>

#include "reference/config.hpp"
#include "reference/tensor.hpp"

namespace transmamba {

template <class S>
struct ScanResult {
  Mat<S> y;            // [T, H·p]
  Mat<S> final_state;  // [H·p, N] = S_{T-1}
};

// Throws std::invalid_argument naming the first input whose shape does not fit cfg and T = x.rows().
template <class S>
void check_scan_inputs(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& dt, const Vec<S>& A,
                       const Mat<S>& B, const Mat<S>& C, const Mat<S>& S_init) {
  const Eigen::Index T = x.rows();
  check_shape("x", x, T, cfg.E);
  check_shape("dt", dt, T, cfg.H);
  check_size("A", A, cfg.H);
  check_shape("B", B, T, cfg.G * cfg.N);
  check_shape("C", C, T, cfg.G * cfg.N);
  check_shape("S_init", S_init, cfg.E, cfg.N);
}

// ---- form 1: recurrent (E6 itself, one token at a time; also the decode step) -----------------------
template <class S>
ScanResult<S> ssm_recurrent(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& dt, const Vec<S>& A,
                            const Mat<S>& B, const Mat<S>& C, const Mat<S>& S_init) {
  check_scan_inputs(cfg, x, dt, A, B, C, S_init);
  const int p = cfg.p(), N = cfg.N;
  ScanResult<S> r{Mat<S>(x.rows(), cfg.E), S_init};
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (int h = 0; h < cfg.H; ++h) {
      const int g = cfg.group_of(h);
      auto S_h = r.final_state.middleRows(h * p, p);
      const S a = std::exp(dt(t, h) * A(h));
      S_h = a * S_h + dt(t, h) * x.row(t).segment(h * p, p).transpose() * B.row(t).segment(g * N, N);
      r.y.row(t).segment(h * p, p) = C.row(t).segment(g * N, N) * S_h.transpose();
    }
  return r;
}

// ---- form 2: quadratic (the "attention-like" matrix form) ---------------------------------------------
// With the decay between tokens s <= t, the exp of the segment sum of the log-decays after s up to t,
//   Lmask[t, s] = exp(Σ_{r=s+1..t} dt[r]·A)      (1 on the diagonal, 0 above it),
// and the decay from the start, exp(cumA[t]) with cumA[t] = Σ_{r=0..t} dt[r]·A, per head
//   y        = (Lmask ∘ C Bᵀ) (dt ∘ x)  +  diag(exp(cumA)) · C · S_initᵀ
//   S_{T-1}  = Σ_s Lmask[T-1, s] dt[s] x[s] ⊗ B[s]  +  exp(cumA[T-1]) · S_init
// Why this does not cancel (DESIGN.md section 3): every exponent is the sum over its own segment, accumulated
// term by term (decay_matrix, cumulative_log_decay). All the terms dt[r]·A have one sign, so a sum's rounding
// error is at most (its length)·eps·|the sum|: relative to the exponent itself, which is at most ~745 where
// exp is not 0. Written as cumA[t] - cumA[s], the exponent would carry eps·|cumA[t]| however short the
// segment: after a long prefix of large steps (issue 8: 120 tokens of dt ~850 at A = -16, cumA ~ -1.6e6) that
// is 2e-10 in every decay after it, 2048 times what long double makes of the same formula. Cumulative
// products are never divided either (they underflow to 0 where the decays do).
template <class S>
Vec<S> cumulative_log_decay(const Mat<S>& dt, const Vec<S>& A, int h) {
  Vec<S> cum(dt.rows());
  S run = 0;
  for (Eigen::Index t = 0; t < dt.rows(); ++t) cum(t) = run += dt(t, h) * A(h);
  return cum;
}

// Lmask [T, T] of head h: row t accumulates its segment sums leftwards from the diagonal, one step more for
// each earlier s.
template <class S>
Mat<S> decay_matrix(const Mat<S>& dt, const Vec<S>& A, int h) {
  const Eigen::Index T = dt.rows();
  Mat<S> Lmask = Mat<S>::Zero(T, T);
  for (Eigen::Index t = 0; t < T; ++t) {
    Lmask(t, t) = 1;
    S segment = 0;  // Σ_{r=s+1..t} dt[r]·A
    for (Eigen::Index s = t - 1; s >= 0; --s) Lmask(t, s) = std::exp(segment += dt(s + 1, h) * A(h));
  }
  return Lmask;
}

template <class S>
ScanResult<S> ssm_quadratic(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& dt, const Vec<S>& A,
                            const Mat<S>& B, const Mat<S>& C, const Mat<S>& S_init) {
  check_scan_inputs(cfg, x, dt, A, B, C, S_init);
  const int p = cfg.p(), N = cfg.N;
  const Eigen::Index T = x.rows();
  ScanResult<S> r{Mat<S>(T, cfg.E), Mat<S>(cfg.E, N)};
  parallel_for(cfg.H, double(cfg.H) * T * T * (N + p), [&](int h) {  // heads write their own columns and rows
    const int g = cfg.group_of(h);
    const Mat<S> Lmask = decay_matrix(dt, A, h);
    const Mat<S> B_g = B.middleCols(g * N, N), C_g = C.middleCols(g * N, N);
    const Mat<S> dtx = dt.col(h).asDiagonal() * x.middleCols(h * p, p);  // dt ∘ x, [T, p]
    const Mat<S> S_h = S_init.middleRows(h * p, p);
    const Vec<S> to_start = cumulative_log_decay(dt, A, h).array().exp();  // exp(cumA[t])
    r.y.middleCols(h * p, p) =
        Lmask.cwiseProduct(C_g * B_g.transpose()) * dtx + to_start.asDiagonal() * C_g * S_h.transpose();
    if (T == 0) {
      r.final_state.middleRows(h * p, p) = S_h;
      return;
    }
    r.final_state.middleRows(h * p, p) =
        dtx.transpose() * Lmask.row(T - 1).asDiagonal() * B_g + to_start(T - 1) * S_h;
  });
  return r;
}

// ---- form 3: chunked (SSD; what the GPU runs) -----------------------------------------------------------
// The sequence is cut into chunks of Q tokens (the last may be shorter). Four stages, each a kernel on
// the GPU:
//   1. chunk_states:   the state each chunk reaches from a zero state (quadratic form's final state);
//   2. state_passing:  S_start[c+1] = exp(Σ_{r in chunk c} dt[r]·A) · S_start[c] + chunk_state[c],
//                      S_start[0] = S_init (a short recurrence over chunks);
//   3. intra-chunk:    y = (Lmask ∘ C Bᵀ)(dt ∘ x) inside each chunk (the quadratic form on the diagonal block);
//   4. inter-chunk:    y[t] += exp(cumA_chunk[t]) · S_start[c] · C[t] (the state carried into the chunk).
// Every exponent is again a segment sum accumulated directly (DESIGN.md section 3): stages 1 and 3 are the
// quadratic form's, and cumA_chunk[t] = Σ_{r=c0..t} dt[r]·A (stages 2 and 4) is summed from the chunk's first
// token c0, never as a difference of sums from the sequence's start.
template <class S>
struct ChunkedScanResult {
  Mat<S> y;                          // [T, H·p]
  Mat<S> final_state;                // [H·p, N]
  std::vector<Mat<S>> chunk_states;  // per chunk, [H·p, N]: stage 1, from a zero state
  std::vector<Mat<S>> start_states;  // per chunk, [H·p, N]: stage 2, the state entering the chunk
};

template <class S>
ChunkedScanResult<S> ssm_chunked(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& dt, const Vec<S>& A,
                                 const Mat<S>& B, const Mat<S>& C, const Mat<S>& S_init, int Q) {
  check_scan_inputs(cfg, x, dt, A, B, C, S_init);
  if (Q <= 0) throw std::invalid_argument("chunk size Q must be positive, got " + std::to_string(Q));
  const int p = cfg.p(), N = cfg.N;
  const Eigen::Index T = x.rows();
  const Mat<S> zero_state = Mat<S>::Zero(cfg.E, N);
  ChunkedScanResult<S> r{Mat<S>(T, cfg.E), S_init, {}, {}};
  for (Eigen::Index c0 = 0; c0 < T; c0 += Q) {
    const Eigen::Index len = std::min<Eigen::Index>(Q, T - c0);
    const Mat<S> xc = x.middleRows(c0, len), dtc = dt.middleRows(c0, len), Bc = B.middleRows(c0, len),
                 Cc = C.middleRows(c0, len);
    // Stages 1 and 3: the chunk on its own, from a zero state.
    const ScanResult<S> local = ssm_quadratic(cfg, xc, dtc, A, Bc, Cc, zero_state);
    // Stage 2: pass the state entering this chunk through it.
    r.start_states.push_back(r.final_state);
    r.chunk_states.push_back(local.final_state);
    Mat<S> y = local.y;
    parallel_for(cfg.H, double(cfg.H) * len * N * p, [&](int h) {  // heads write their own columns and rows
      const int g = cfg.group_of(h);
      const Vec<S> cum = cumulative_log_decay(dtc, A, h);
      const Mat<S> S_start = r.start_states.back().middleRows(h * p, p);
      // Stage 4: the contribution of the state entering the chunk.
      y.middleCols(h * p, p) += cum.array().exp().matrix().asDiagonal() * Cc.middleCols(g * N, N) * S_start.transpose();
      r.final_state.middleRows(h * p, p) = std::exp(cum(len - 1)) * S_start + local.final_state.middleRows(h * p, p);
    });
    r.y.middleRows(c0, len) = y;
  }
  return r;
}

// ---- backward (of all three forms, which compute the same function) ------------------------------------
// No cumulative sums here (DESIGN.md section 3): each step's decay a[t] = exp(dt[t]·A) on its own. Run the
// recurrence in reverse with Gs = dL/dS_t, the gradient reaching state S_t from y[t..] and the
// final state:
//   Gs  = a[t+1] · Gs_{t+1} + d_y[t] ⊗ C[t]               (Gs_{T-1} starts from d_final_state)
//   d_C[t]  += S_tᵀ d_y[t]        d_x[t] = dt[t] · Gs B[t]      d_B[t] += dt[t] · Gsᵀ x[t]
//   d_dt[t] += x[t]ᵀ Gs B[t]  +  <Gs, S_{t-1}> · a[t] · A        d_A += <Gs, S_{t-1}> · a[t] · dt[t]
//   d_S_init = a[0] · Gs_0
template <class S>
struct ScanGrads {
  Mat<S> d_x, d_dt;  // [T, H·p], [T, H]
  Vec<S> d_A;        // [H]
  Mat<S> d_B, d_C;   // [T, G·N]
  Mat<S> d_S_init;   // [H·p, N]
};

// d_y: [T, H·p]; d_final_state: [H·p, N] (pass zeros when the final state is not used).
template <class S>
ScanGrads<S> ssm_backward(const MixerConfig& cfg, const Mat<S>& x, const Mat<S>& dt, const Vec<S>& A,
                          const Mat<S>& B, const Mat<S>& C, const Mat<S>& S_init, const Mat<S>& d_y,
                          const Mat<S>& d_final_state) {
  check_scan_inputs(cfg, x, dt, A, B, C, S_init);
  check_shape("d_y", d_y, x.rows(), cfg.E);
  check_shape("d_final_state", d_final_state, cfg.E, cfg.N);
  const int p = cfg.p(), N = cfg.N;
  const Eigen::Index T = x.rows();
  ScanGrads<S> g{Mat<S>::Zero(T, cfg.E), Mat<S>::Zero(T, cfg.H), Vec<S>::Zero(cfg.H),
                 Mat<S>::Zero(T, cfg.G * N),  Mat<S>::Zero(T, cfg.G * N), Mat<S>::Zero(cfg.E, N)};
  parallel_for(cfg.G, 6.0 * T * cfg.E * N, [&](int gr) {  // a group's heads in order: they add into its d_B, d_C
    for (int h = gr * cfg.heads_per_group(); h < (gr + 1) * cfg.heads_per_group(); ++h) {
      // The head's forward again (E6), keeping every state: states[t + 1] = S_t, states[0] = S_init.
      std::vector<Mat<S>> states{S_init.middleRows(h * p, p)};
      for (Eigen::Index t = 0; t < T; ++t)
        states.push_back(std::exp(dt(t, h) * A(h)) * states.back() +
                         dt(t, h) * x.row(t).segment(h * p, p).transpose() * B.row(t).segment(gr * N, N));
      Mat<S> Gs = d_final_state.middleRows(h * p, p);
      for (Eigen::Index t = T - 1; t >= 0; --t) {
        const auto x_t = x.row(t).segment(h * p, p).transpose();     // [p]
        const auto B_t = B.row(t).segment(gr * N, N).transpose();    // [N]
        const auto C_t = C.row(t).segment(gr * N, N).transpose();    // [N]
        const auto d_y_t = d_y.row(t).segment(h * p, p).transpose(); // [p]
        const Mat<S>& S_t = states[t + 1];
        const Mat<S>& S_prev = states[t];
        const S a = std::exp(dt(t, h) * A(h));
        Gs += d_y_t * C_t.transpose();
        g.d_C.row(t).segment(gr * N, N) += (S_t.transpose() * d_y_t).transpose();
        g.d_x.row(t).segment(h * p, p) = dt(t, h) * (Gs * B_t).transpose();
        g.d_B.row(t).segment(gr * N, N) += dt(t, h) * (Gs.transpose() * x_t).transpose();
        const S d_a = Gs.cwiseProduct(S_prev).sum();
        g.d_dt(t, h) = x_t.dot(Gs * B_t) + d_a * a * A(h);
        g.d_A(h) += d_a * a * dt(t, h);
        Gs *= a;
      }
      g.d_S_init.middleRows(h * p, p) = Gs;
    }
  });
  return g;
}

}  // namespace transmamba
