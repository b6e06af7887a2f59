// The reference on OpenMP's threads (parallel_for, reference/tensor.hpp) gives bitwise the same results as on
// one thread: every parallel loop writes only its own outputs. The threshold is lowered to 0 so that every
// parallel loop of the layer runs on the threads at this small size.
#include <catch2/catch.hpp>

#include <omp.h>

#include <vector>

#include "reference/mixer.hpp"

using namespace transmamba;

namespace {
// out, every intermediate the backward reads, and every gradient of one layer call, as one list.
std::vector<Mat<double>> layer_results(const MixerParams<double>& prm, const Mat<double>& u, int P, const Mat<double>& d_out) {
  const MixerForward<double> f = mixer_forward(prm, u, P);
  const MixerGrads<double> g = mixer_backward(prm, f, d_out);
  const MixerParams<double>& d = g.d_params;
  return {f.out, f.y, f.S0, f.final_state, g.d_u, d.W_in, d.conv_w, Mat<double>(d.conv_b), Mat<double>(d.dt_bias),
          Mat<double>(d.A_log), Mat<double>(d.D_skip), Mat<double>(d.norm_w), d.W_out};
}
}  // namespace

TEST_CASE("reference: bitwise the same layer forward and backward on 1 and on 4 threads", "[parallel]") {
  const MixerConfig cfg{24, 48, 6, 2, 8, 4, 16};
  MixerParams<double> prm = MixerParams<double>::init(cfg, 3);
  prm.D_skip.setLinSpaced(0.5, 1.5), prm.norm_w.setLinSpaced(0.8, 1.2);  // init's are all 1
  const Mat<double> u = Mat<double>::Random(70, cfg.D), d_out = Mat<double>::Random(70, cfg.D);
  const double saved = parallel_min_work;
  parallel_min_work = 0;
  for (int P : {0, 33, 70}) {
    INFO("P = " << P);
    omp_set_num_threads(1);
    const std::vector<Mat<double>> one = layer_results(prm, u, P, d_out);
    omp_set_num_threads(4);
    const std::vector<Mat<double>> four = layer_results(prm, u, P, d_out);
    for (std::size_t i = 0; i < one.size(); ++i) {
      INFO("result " << i);
      CHECK(one[i].size() > 0);
      CHECK(one[i] == four[i]);  // bitwise: Eigen's == compares every coefficient exactly
    }
  }
  parallel_min_work = saved;
}
