#include "reference/conv.hpp"
#include "reference/norm.hpp"
#include "reference/params.hpp"
#include "reference/projection.hpp"
#include "reference/step_size.hpp"

#include "tests/check_support.hpp"

using namespace transmamba;

TEST_CASE("projection.definition", "[projection][property]") { require_check("projection.definition"); }
TEST_CASE("projection.backward_fd", "[projection][gradient]") { require_check("projection.backward_fd"); }
TEST_CASE("projection.ladder", "[projection][ladder]") { require_check("projection.ladder"); }
TEST_CASE("conv.definition", "[conv][property]") { require_check("conv.definition"); }
TEST_CASE("conv.backward_fd", "[conv][gradient]") { require_check("conv.backward_fd"); }
TEST_CASE("conv.ladder", "[conv][ladder]") { require_check("conv.ladder"); }
TEST_CASE("step_size.definition", "[step_size][property]") { require_check("step_size.definition"); }
TEST_CASE("step_size.backward_fd", "[step_size][gradient]") { require_check("step_size.backward_fd"); }
TEST_CASE("step_size.ladder", "[step_size][ladder]") { require_check("step_size.ladder"); }
TEST_CASE("norm.definition", "[norm][property]") { require_check("norm.definition"); }
TEST_CASE("norm.backward_fd", "[norm][gradient]") { require_check("norm.backward_fd"); }
TEST_CASE("norm.ladder", "[norm][ladder]") { require_check("norm.ladder"); }

TEST_CASE("conv: an impulse returns the taps reversed, as PyTorch's left-padded conv1d", "[conv]") {
  // A unit impulse at token s reaches token s + j through tap W - 1 - j (the last tap is the current token).
  const int T = 7, W = 3, s = 2;
  Mat<double> v = Mat<double>::Zero(T, 1), w(1, W);
  v(s, 0) = 1;
  w << 0.25, 0.5, 2.0;
  const Vec<double> b = Vec<double>::Constant(1, 0.125);
  const Mat<double> pre = causal_conv(v, w, b);
  for (int t = 0; t < T; ++t) {
    const int j = t - s;
    const double expected = 0.125 + (j >= 0 && j < W ? w(0, W - 1 - j) : 0.0);
    CHECK(pre(t, 0) == expected);
  }
}

TEST_CASE("norm: each group of the output has root mean square sqrt(m / (m + eps)), m its mean square", "[norm]") {
  const Mat<double> v = Mat<double>::Random(4, 6) * 10;
  const Vec<double> w = Vec<double>::Ones(6);
  const Mat<double> out = rmsnorm_forward(v, w, 3);
  for (int t = 0; t < 4; ++t)
    for (int k = 0; k < 3; ++k) {
      const double m = v.row(t).segment(2 * k, 2).squaredNorm() / 2;
      CHECK(std::sqrt(out.row(t).segment(2 * k, 2).squaredNorm() / 2) == Approx(std::sqrt(m / (m + 1e-5))).epsilon(1e-14));
    }
  CHECK_THROWS_WITH(rmsnorm_forward(v, w, 4), Catch::Contains("6 channels do not split into 4 groups"));
}

TEST_CASE("step sizes: softplus is positive and matches log(1 + e^v)", "[step_size]") {
  Mat<double> raw(1, 3);
  raw << -30, 0, 30;
  const Mat<double> dt = step_size(raw, Vec<double>(Vec<double>::Zero(3)));
  CHECK(dt(0, 0) == Approx(std::exp(-30.0)).epsilon(1e-12));
  CHECK(dt(0, 1) == Approx(std::log(2.0)).epsilon(1e-15));
  CHECK(dt(0, 2) == Approx(30.0 + std::exp(-30.0)).epsilon(1e-15));  // log(1 + e^30) = 30 + log1p(e^-30)
}

TEST_CASE("params: init follows Mamba2 (PAPER.md 1.2) and validates shapes", "[params]") {
  const MixerConfig cfg{8, 16, 4, 2, 4, 4, 8};
  const auto prm = MixerParams<double>::init(cfg, 7);
  prm.validate();
  const Vec<double> A = -decay_rate(prm.A_log);
  CHECK(A.minCoeff() >= 1.0);
  CHECK(A.maxCoeff() <= 16.0);
  const Mat<double> dt = step_size(Mat<double>(Mat<double>::Zero(1, 4)), prm.dt_bias);
  CHECK(dt.minCoeff() >= 1e-3 * (1 - 1e-12));
  CHECK(dt.maxCoeff() <= 0.1 * (1 + 1e-12));
  CHECK(prm.D_skip == Vec<double>::Ones(4));
  CHECK(MixerParams<double>::init(cfg, 7).W_in == prm.W_in);
  CHECK(MixerParams<double>::init(cfg, 8).W_in != prm.W_in);
  auto bad = prm;
  bad.W_out = Mat<double>::Zero(16, 7);
  CHECK_THROWS_WITH(bad.validate(), "W_out: expected shape [16, 8], got [16, 7]");
  MixerConfig wrong = cfg;
  wrong.G = 3;
  CHECK_THROWS_WITH(wrong.validate(), Catch::Contains("H % G must be 0"));
}
