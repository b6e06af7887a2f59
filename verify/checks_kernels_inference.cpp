// Kernel check of decode on a device (cuda/inference.hpp), "emulated.decode" / "cuda.decode": the exactness
// claim of DESIGN.md section 6 for one layer, "decode after a prefill equals the forward". A layer case of
// verify/layer_case.hpp (Bt sequences of T tokens, TransPoint P) is run three ways:
//   - the double reference's mixer_forward over all T tokens: the truth;
//   - the device: mixer_forward over a prompt of T0 tokens (TransPoint min(P, T0)), prefill_layer, then
//     mixer_step for the tokens T0 .. T-1 one at a time;
//   - the device's mixer_forward over all T tokens.
// The decoded outputs must equal the truth's rows T0 .. T-1, and the state after the last token the truth's
// final state, within DESIGN.md section 7's fp32 forward bound or kFloatFactor x the float reference's error
// (the floor of checks_kernels_mixer.cpp, with E8's own rounding for out); the decoded outputs must equal the
// device forward's rows within the bound or twice that floor (two fp32 evaluations in other orders: the scan
// token by token against chunk by chunk). T0 is drawn 1, min(P, T) (decode starts at the TransPoint) or at
// random, so that decode starts before, at and after P and crosses it; T0 = T decodes nothing and checks the
// prefilled state alone. A step past P must have freed the KV cache.
#include <algorithm>
#include <string>
#include <vector>

#include "cuda/inference.hpp"
#include "cuda/mixer.hpp"
#include "reference/mixer.hpp"
#include "verify/bounds.hpp"
#include "verify/checks_kernels.hpp"
#include "verify/generators.hpp"
#include "verify/kernel_case.hpp"
#include "verify/layer_case.hpp"

namespace transmamba {

namespace {
using namespace kernel_case;

std::vector<Comparison> decode_case(gpu::Backend backend) {
  const LayerCase k = draw_layer_case(24);
  const int Bt = k.Bt, T = k.T, P = k.P, D = k.cfg.D, E = k.cfg.E, N = k.cfg.N;
  const MixerConfig& cfg = k.cfg;
  const int T0 = draw("T0 (prompt)", rc::gen::oneOf(rc::gen::just(1), rc::gen::just(std::max(1, std::min(P, T))),
                                                    rc::gen::inRange(1, T + 1)));
  const int steps = T - T0;

  const gpu::Device dev = device_for(backend);
  gpu::Stream stream(dev);
  const DeviceParams params(dev, k.prm);
  std::vector<MatD> prompt;
  for (const MatD& ub : k.u) prompt.push_back(ub.topRows(T0));
  gpu::MixerForwardDevice whole(dev, {Bt, T, P, cfg}), prefix(dev, {Bt, T0, std::min(P, T0), cfg});
  whole.u.upload(floats(stack(k.u)));
  prefix.u.upload(floats(stack(prompt)));
  gpu::mixer_forward(stream, params.views(), whole);
  gpu::mixer_forward(stream, params.views(), prefix);
  gpu::LayerState state(dev, {Bt, P, cfg});
  gpu::prefill_layer(stream, prefix, state);
  MatD decoded(std::int64_t(Bt) * steps, D);  // sequence-major, like rows_of
  for (int t = T0; t < T; ++t) {
    std::vector<MatD> token;
    for (const MatD& ub : k.u) token.push_back(ub.middleRows(t, 1));
    state.u.upload(floats(stack(token)));
    gpu::mixer_step(stream, params.views(), state);
    stream.synchronize();
    const MatD out = as_matrix(state.out.download(), Bt, D);
    for (int b = 0; b < Bt; ++b) decoded.row(b * steps + t - T0) = out.row(b);
  }
  stream.synchronize();

  // The truth and the float reference's rows T0 .. T-1 and final state, every sequence stacked.
  const MixerParams<float> prm_f = k.prm.cast<float>();
  std::vector<MatD> out, out_f, y_normed, y_normed_f, final_state, final_state_f;
  for (int b = 0; b < Bt; ++b) {
    const MixerForward<double> r = mixer_forward(k.prm, k.u[b], P);
    const MixerForward<float> rf = mixer_forward(prm_f, Mat<float>(k.u[b].cast<float>()), P);
    out.push_back(r.out.bottomRows(steps));
    out_f.push_back(rf.out.bottomRows(steps).cast<double>());
    y_normed.push_back(r.y_normed.bottomRows(steps));
    y_normed_f.push_back(rf.y_normed.bottomRows(steps).cast<double>());
    final_state.push_back(r.final_state);
    final_state_f.push_back(rf.final_state.cast<double>());
  }
  std::vector<Comparison> result;
  const MatD state_truth = stack(final_state);
  const double state_floor = kFloatFactor * (stack(final_state_f) - state_truth).norm();
  result.push_back(compare("state after token T-1 = the forward's final state", as_matrix(state.scan_state.download(), Bt * E, N),
                           state_truth, bounds::kCudaFp32Forward, state_floor));
  if (steps > 0) {
    const MatD truth = stack(out);
    const double floor = kFloatFactor * (stack(out_f) - truth).norm() +
                         rounding_floor(out_rounding(stack(y_normed), stack(y_normed_f), k.prm.W_out));
    result.push_back(compare("decoded out (tokens T0..T-1) = forward", decoded, truth, bounds::kCudaFp32Forward, floor));
    result.push_back(compare("decoded out = the device forward's rows", decoded,
                             rows_of(whole.out.download(), Bt, T, D, T0, steps), bounds::kCudaFp32Forward, 2 * floor));
  }
  if (T > P && steps > 0) {  // a step at t >= P ran: scan mode for good, the cache is freed
    result.push_back(compare("KV cache freed past P (values held)", as_matrix({float(state.kv_cache.size())}, 1, 1),
                             MatD::Zero(1, 1), 0.0));
  }
  return result;
}
}  // namespace

std::vector<Check> inference_kernel_checks(gpu::Backend backend) {
  const std::string where = backend == gpu::Backend::cuda ? " on the GPU" : " under the CPU emulation";
  return {{gpu::to_string(backend) + std::string(".decode"),
           "prefill of T0 tokens, then decode token by token" + where +
               " = the double reference's forward (outputs, final state; fp32 bound or kFloatFactor x the float "
               "reference's error)",
           30, [backend] { return decode_case(backend); }}};
}

}  // namespace transmamba
