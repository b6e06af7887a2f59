// tm-bench's timing loop on a device (through the host API of cuda/: no CUDA headers here). For one TransPoint:
// the layer (cuda/mixer.hpp) on seeded random parameters and inputs, forward and forward + backward, and each
// stage of the layer alone (cuda/mixer.hpp's mixer_stages: the layer's own calls on its own buffers):
//
//   in_proj    linear_forward / linear_backward       [Bt·T, D] x [D, 2E + 2GN + H]           (E1; bf16: + W_in's copy)
//   conv       conv_silu_forward / _backward          [Bt, T, E + 2GN], width W               (E2)
//   step_size  step_size_forward / _backward          [Bt, T, H]                              (E3)
//   attention  attention_forward / _backward          the P prefix tokens (+ two gradient sums) (E4; P > 0)
//   converter  ssm_chunked_forward / _backward        over [0, P), final state only (+ d_A's sum) (E5)
//   scan       ssm_chunked_forward / _backward        over [P, T) from S0, and the D skip     (E6)
//   norm       rmsnorm_forward / _backward x 2        the prefix rows ungated, the scan rows gated (E7)
//   out_proj   linear_forward / linear_backward       [Bt·T, E] x [E, D]                      (E8; bf16: + W_out's copy)
//
// (the names are tools/bench/kernel_cost.hpp's, whose FLOPs and bytes turn the times into rates). Each timed
// call: `warmup` untimed runs, then `reps` runs, each preceded by an L2 flush (cuda/device.hpp's L2Flush) and
// bracketed by two Events; the report is their median, min and max. Under the emulated backend the events
// read the host clock: the loop then runs on the CPU (tm-bench --backend emulated, its test mode), and the
// times mean nothing but the structure is the GPU run's.
#pragma once

#include <cstdint>
#include <vector>

#include "cuda/device.hpp"
#include "reference/params.hpp"
#include "tools/bench/report.hpp"

namespace transmamba::bench {

struct TimingOptions {
  int warmup = 3, reps = 20;
  std::uint64_t seed = 1;
  bool kernels = true;  // also time each kernel family alone
  bool bf16 = false;    // the bf16 layer (MixerForwardDeviceBf16; u and d_out rounded to bf16), else the fp32 one
};

// The seeded inputs of one layer call: Mamba2-initialised parameters (MixerParams::init), u and d_out
// uniform in [-1, 1], [Bt, T, D] each.
struct LayerInputs {
  MixerParams<double> prm;
  std::vector<float> u, d_out;
};
LayerInputs make_inputs(const MixerConfig& cfg, int Bt, int T, std::uint64_t seed);

// Times one TransPoint on dev. When out is not null it receives the layer's output [Bt, T, D] for these
// inputs (from a forward run after the timings; bf16 values widened to float), for the baseline's comparison.
PointTime time_point(const gpu::Device& dev, const MixerConfig& cfg, int Bt, int T, int P, const LayerInputs& in,
                     const TimingOptions& opt, std::vector<float>* out = nullptr);

}  // namespace transmamba::bench
