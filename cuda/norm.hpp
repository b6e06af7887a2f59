// Grouped RMSNorm (E7), with and without the SiLU gate, on a device: the host API of cuda/norm.cu, mirroring
// reference/norm.hpp (rmsnorm_forward, rmsnorm_backward).
//
// The E channels of a row are cut into G groups of n = E/G consecutive channels; with g = y ⊙ SiLU(z) when a
// gate z is given (else g = y) and eps = 1e-5:
//
//   out[b, t, c] = g[c] · r · w[c],     r = 1 / sqrt( mean_{c' in group(c)} g[c']² + eps )
//
// In the layer it runs twice over [Bt, T, E]: the attention rows (t < P) ungated and the scan rows (t >= P)
// gated, z being a column block of zxbcdt. So a call covers a [Bt, rows, E] view (rows may be 0), every
// tensor may be strided (tensor.hpp), and d_w may be accumulated over the two calls (accumulate_d_w).
//
// Plain C++: shapes, the launch plan, and the argument checks that run before anything is launched.
//
// Storage (cuda/bf16.hpp): y, z, out, d_out, d_y, d_z are of type S (float, or Bf16 for the bf16 kernels: read
// as fp32, every sum and the statistics r in fp32, each result rounded once when stored); the weight w, its
// gradient d_w and the workspace are fp32. NormForward, NormBackward: fp32; NormForwardBf16, NormBackwardBf16.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/bf16.hpp"
#include "cuda/device.hpp"
#include "cuda/device_math.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/tensor.hpp"

namespace transmamba::gpu {

constexpr float kNormEpsF = 1e-5f;  // reference/norm.hpp: kNormEps

struct NormShape {
  int Bt = 1;  // sequences
  int T = 0;   // rows per sequence that this call covers (may be 0)
  int E = 0;   // channels
  int G = 1;   // groups of E / G consecutive channels (E % G == 0)
};

// The threads of a group ("lanes") hold its n values in registers, K each (the kernels' template argument,
// an entry of kNormPerThread). Groups of up to 32 channels take one lane per channel (a power of 2 of them,
// several groups per warp, K = 1); larger groups take whole warps: warp w of the group holds the channels
// [32·K·w, 32·K·(w + 1)), its lane l the channels 32·K·w + l + 32·j, so a warp's loads are contiguous. One
// warp up to 8 values per lane (256 channels), then more warps (up to 16: 4096 channels at 8 per lane), then
// 12 or 16 values per lane: n <= 8192; and no more warps than hold channels. K stays at 8 or below where it
// can: the backward keeps ~6 arrays of K floats per thread, and K = 12 spilled registers (ptxas, sm_90, at
// most 128 per thread with blocks of 512), where two warps of K = 6 (n = 384, the paper's E/G) use 79.
// A block holds max(1, 256 / lanes) groups ("segments", side by side); the backward's blocks hold no more
// segments than there are groups (but a warp at least), since each of them runs a whole tile of rows.
constexpr int kNormPerThread[] = {1, 2, 3, 4, 6, 8, 12, 16};  // 6: n = 384, 768, 1536, 3072 (2..16 warps)
constexpr int kNormPreferredPerThread = 8, kNormMaxPerThread = 16;
constexpr int kNormMaxLanes = 512;
constexpr int kNormMaxGroup = kNormMaxLanes * kNormMaxPerThread;  // 8192 channels
constexpr int kNormBlockThreads = 256;
// Backward: a block takes kNormTileRows rows of one sequence for its segments' groups and writes one partial
// d_w per tile of rows (no atomics), summed in tile order (reduce.cuh: sum_partials).
constexpr int kNormTileRows = 16;

struct NormPlan {
  int group = 0;       // n = E / G
  int lanes = 0;       // threads per group: a power of 2 up to 32, then a multiple of 32 up to kNormMaxLanes
  int per_thread = 0;  // values per thread: an entry of kNormPerThread, >= ceil(n / lanes)
  int segments = 0;    // groups per block (forward)
  int backward_segments = 0;  // groups per block (backward): at most pow2ceil(G) unless a warp needs more
  int row_tiles = 0;   // backward: tiles per sequence, ceil(T / kNormTileRows)
  LaunchShape forward;   // grid.x = ceil(Bt·T·G / segments): one (row, group) per segment
  LaunchShape backward;  // grid (ceil(G / backward_segments), row_tiles, Bt)
  LaunchShape reduce;    // sum_partials over E columns
  // floats: (1 + Bt·row_tiles)·E, row 0 the d_w a call accumulates into, then one partial row per tile.
  std::size_t workspace = 0;
};

// Throws std::invalid_argument for a shape the kernels do not take: negative sizes, E or G < 1, E % G != 0,
// groups of more than kNormMaxGroup channels, more row tiles than a grid holds.
inline NormPlan norm_plan(const NormShape& s) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("rmsnorm: " + what); };
  if (s.Bt < 0 || s.T < 0) fail("negative Bt or T");
  if (s.E < 1 || s.G < 1) fail("E = " + std::to_string(s.E) + " and G = " + std::to_string(s.G) + " must be >= 1");
  if (s.E % s.G != 0)
    fail(std::to_string(s.E) + " channels do not split into " + std::to_string(s.G) + " groups (E % G != 0)");
  NormPlan p;
  p.group = s.E / s.G;
  if (p.group > kNormMaxGroup)
    fail("groups of " + std::to_string(p.group) + " channels are not supported (at most " +
         std::to_string(kNormMaxGroup) + ")");
  p.lanes = 1;
  while (p.lanes < 32 && p.lanes < p.group) p.lanes *= 2;                          // one channel per lane
  while (p.lanes * kNormPreferredPerThread < p.group && p.lanes < kNormMaxLanes) p.lanes *= 2;  // more warps
  const int need = ceil_div(p.group, p.lanes);
  for (int k : kNormPerThread)
    if (k >= need) {
      p.per_thread = k;
      break;
    }
  if (p.lanes > 32) p.lanes = 32 * ceil_div(p.group, 32 * p.per_thread);  // no warp without a channel
  p.segments = p.lanes < kNormBlockThreads ? kNormBlockThreads / p.lanes : 1;
  const unsigned threads = unsigned(p.segments * p.lanes);
  p.backward_segments = p.segments;
  while (p.backward_segments > 1 && p.backward_segments / 2 >= s.G && p.backward_segments / 2 * p.lanes >= 32)
    p.backward_segments /= 2;
  p.row_tiles = ceil_div(s.T, kNormTileRows);
  if (p.row_tiles > 65535 || s.Bt > 65535) fail("T = " + std::to_string(s.T) + ", Bt = " + std::to_string(s.Bt) + " exceed the grid");
  const long long pairs = (long long)s.Bt * s.T * s.G;
  const long long blocks = (pairs + p.segments - 1) / p.segments;
  if (blocks > 2147483647LL) fail("too many rows for one launch");
  p.forward = {{unsigned(blocks > 0 ? blocks : 1), 1, 1}, {threads, 1, 1}, 0};
  p.backward = {{unsigned(ceil_div(s.G, p.backward_segments)), unsigned(p.row_tiles > 0 ? p.row_tiles : 1),
                 unsigned(s.Bt > 0 ? s.Bt : 1)},
                {unsigned(p.backward_segments * p.lanes), 1, 1},
                0};
  p.reduce = {{unsigned(ceil_div(s.E, 256)), 1, 1}, {256, 1, 1}, 0};
  p.workspace = std::size_t(1 + (long long)s.Bt * p.row_tiles) * std::size_t(s.E);
  return p;
}

// z: the gate. z.data == nullptr: ungated (g = y); otherwise g = y ⊙ SiLU(z).
template <class S>
struct NormForwardT {
  NormShape shape;
  View<const S> y;      // [Bt, T, E]
  View<const S> z;      // [Bt, T, E] or empty (a column block of zxbcdt in the layer)
  View<const float> w;  // [1, 1, E]
  View<S> out;          // [Bt, T, E]
};
using NormForward = NormForwardT<float>;
using NormForwardBf16 = NormForwardT<Bf16>;

// With r per (row, group) and e = d_out ⊙ w:
//   d_w = Σ_{b,t} d_out ⊙ g · r,   d_g = r·e - g·r³·mean(e ⊙ g),   d_y = d_g ⊙ SiLU(z),   d_z = d_g ⊙ y ⊙ SiLU'(z)
// (d_y = d_g ungated). d_g is computed without cancellation (norm.cu).
template <class S>
struct NormBackwardT {
  NormShape shape;
  View<const S> y, z;         // as in NormForward
  View<const float> w;        // as in NormForward
  View<const S> d_out;        // [Bt, T, E]
  View<S> d_y;                // [Bt, T, E]
  View<S> d_z;                // [Bt, T, E] when gated; must be empty (data == nullptr) when ungated
  View<float> d_w;            // [1, 1, E]: the sum over every row of every sequence ...
  bool accumulate_d_w = false;  // ... added to what d_w holds (the layer's second call) instead of replacing it
  View<float> workspace;      // norm_plan(shape).workspace floats
};
using NormBackward = NormBackwardT<float>;
using NormBackwardBf16 = NormBackwardT<Bf16>;

// Check every argument (naming the first that does not fit), then run on the stream's device.
void rmsnorm_forward(const Stream& stream, const NormForward& args);
void rmsnorm_forward(const Stream& stream, const NormForwardBf16& args);
void rmsnorm_backward(const Stream& stream, const NormBackward& args);
void rmsnorm_backward(const Stream& stream, const NormBackwardBf16& args);

}  // namespace transmamba::gpu
