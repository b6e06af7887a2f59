// Kernel check of the chunked scan (cuda/ssm.hpp) against reference/ssm.hpp's ssm_chunked, stage by stage:
// chunk states (stage 1), start states (stage 2), the output and the final state; and the Memory Converter's
// use of it (final state only, from a zero state).
#include <cmath>

#include "cuda/ssm.hpp"
#include "reference/ssm.hpp"
#include "verify/bounds.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/kernel_case.hpp"

namespace transmamba {

namespace {
using namespace kernel_case;
using gpu::DeviceBuffer;

std::vector<Comparison> ssm_case(gpu::Backend backend) {
  const Draws d = draw_shape();
  MixerConfig cfg = draw("cfg", gen_mixer_config());
  const int L = d.T, Q = draw("Q", rc::gen::oneOf(rc::gen::inRange(1, 9), rc::gen::just(gpu::kScanMaxChunk)));
  const bool with_init = draw("with S_init", rc::gen::arbitrary<bool>());
  const bool final_only = draw("final state only (converter)", rc::gen::element(false, false, true));
  const double dt_scale = draw("dt scale", rc::gen::element(1.0, 1.0, 30.0));  // 30: decays that underflow
  RandomTensors rnd(draw("seed", rc::gen::arbitrary<std::uint64_t>()));
  const int HP = cfg.E, GN = cfg.G * cfg.N;
  std::vector<MatD> x(d.Bt), dt(d.Bt), B(d.Bt), C(d.Bt), S_init(d.Bt);
  for (int b = 0; b < d.Bt; ++b) {
    x[b] = round_to_float(rnd.mat<double>(L, HP, -d.scale, d.scale));
    dt[b] = round_to_float(dt_scale * rnd.step_sizes<double>(L, cfg.H));
    B[b] = round_to_float(rnd.mat<double>(L, GN));
    C[b] = round_to_float(rnd.mat<double>(L, GN));
    S_init[b] = with_init ? round_to_float(rnd.mat<double>(HP, cfg.N)) : MatD::Zero(HP, cfg.N);
  }
  const Vec<double> A = round_to_float(rnd.decay_rates<double>(cfg.H));

  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const gpu::ScanShape shape{d.Bt, L, cfg.H, cfg.p(), cfg.G, cfg.N, Q};
  const gpu::ScanPlan plan = gpu::scan_plan(shape);
  const Packed x_packed = pack(x, d.pad), B_packed = pack(B, d.pad), C_packed = pack(C, 0);
  DeviceBuffer<float> x_dev(dev, x_packed.values), dt_dev(dev, pack(dt, 0).values), A_dev(dev, floats(A)),
      B_dev(dev, B_packed.values), C_dev(dev, C_packed.values), init_dev(dev, pack(S_init, 0).values),
      y_dev(dev, std::size_t(d.Bt) * L * HP), final_dev(dev, std::size_t(d.Bt) * HP * cfg.N),
      chunk_dev(dev, plan.state_values), start_dev(dev, plan.state_values), decay_dev(dev, plan.chunk_decays);
  gpu::ssm_chunked_forward(stream, {shape, x_dev.view(x_packed.batch_stride, x_packed.row_stride), dt_dev.view(), A_dev.view(),
                                    B_dev.view(B_packed.batch_stride, B_packed.row_stride), C_dev.view(),
                                    with_init ? init_dev.view() : gpu::View<float>{}, final_only ? gpu::View<float>{} : y_dev.view(),
                                    final_dev.view(), chunk_dev.view(), start_dev.view(), decay_dev.view()});
  stream.synchronize();

  // The truth per sequence, and the magnitudes of its sums: the same scan on |x|, |B|, |C|, |S_init| (the decays
  // and dt are positive already). Each output sums at most Q·(N+2) + N products, and the state passes through
  // every chunk: the rounding floor counts that many terms (kernel_case.hpp).
  std::vector<MatD> y(d.Bt), fin(d.Bt), chunks, starts, y_mag(d.Bt), fin_mag(d.Bt), chunks_mag, starts_mag;
  for (int b = 0; b < d.Bt; ++b) {
    const auto r = ssm_chunked<double>(cfg, x[b], dt[b], A, B[b], C[b], S_init[b], Q);
    const auto m = ssm_chunked<double>(cfg, x[b].cwiseAbs(), dt[b], A, B[b].cwiseAbs(), C[b].cwiseAbs(), S_init[b].cwiseAbs(), Q);
    y[b] = r.y, fin[b] = r.final_state, y_mag[b] = m.y, fin_mag[b] = m.final_state;
    chunks.insert(chunks.end(), r.chunk_states.begin(), r.chunk_states.end());
    starts.insert(starts.end(), r.start_states.begin(), r.start_states.end());
    chunks_mag.insert(chunks_mag.end(), m.chunk_states.begin(), m.chunk_states.end());
    starts_mag.insert(starts_mag.end(), m.start_states.begin(), m.start_states.end());
  }
  const double terms = double(Q) * (cfg.N + 2) + cfg.N + plan.chunks + 8;
  auto floor = [&](const std::vector<MatD>& mag) { return mag.empty() ? 0.0 : rounding_floor(terms * kUnit * stack(mag)); };
  auto got = [&](const DeviceBuffer<float>& buf, int count, int rows, int cols) { return stacked(buf.download(), count, rows, cols, cols); };
  std::vector<Comparison> out;
  if (plan.chunks > 0) {
    out.push_back(compare("stage 1: chunk states", got(chunk_dev, d.Bt * plan.chunks, HP, cfg.N), stack(chunks),
                          bounds::kCudaFp32Forward, floor(chunks_mag)));
    out.push_back(compare("stage 2: start states", got(start_dev, d.Bt * plan.chunks, HP, cfg.N), stack(starts),
                          bounds::kCudaFp32Forward, floor(starts_mag)));
  }
  if (!final_only && L > 0)
    out.push_back(compare("y", got(y_dev, d.Bt, L, HP), stack(y), bounds::kCudaFp32Forward, floor(y_mag)));
  out.push_back(compare("final state", got(final_dev, d.Bt, HP, cfg.N), stack(fin), bounds::kCudaFp32Forward, floor(fin_mag)));
  return out;
}
}  // namespace

std::vector<Check> ssm_kernel_checks(gpu::Backend backend) {
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  return {{std::string(gpu::to_string(backend)) + ".ssm",
           "chunked scan forward kernels (stages 1-2, y, final state; final state only = converter)" + where +
               " = double reference (fp32 bounds)",
           60, [backend] { return ssm_case(backend); }}};
}

}  // namespace transmamba
