#include "reference/mixer.hpp"

#include "tests/check_support.hpp"

using namespace transmamba;

TEST_CASE("mixer.backward_fd", "[mixer][gradient]") { require_check("mixer.backward_fd"); }
TEST_CASE("mixer.exactness", "[mixer][property]") { require_check("mixer.exactness"); }
TEST_CASE("mixer.mamba_limit", "[mixer][property]") { require_check("mixer.mamba_limit"); }
TEST_CASE("mixer.attention_limit", "[mixer][property]") { require_check("mixer.attention_limit"); }
TEST_CASE("mixer.causality", "[mixer][property]") { require_check("mixer.causality"); }
TEST_CASE("mixer.ladder", "[mixer][ladder]") { require_check("mixer.ladder"); }
TEST_CASE("mixer.float_vs_double", "[mixer][property]") { require_check("mixer.float_vs_double"); }

TEST_CASE("mixer: bad input gets an error naming the problem", "[mixer][errors]") {
  const MixerConfig cfg{4, 8, 2, 1, 3, 2, 4};
  const auto prm = MixerParams<double>::init(cfg, 1);
  const Mat<double> u = Mat<double>::Random(5, 4);
  CHECK_THROWS_WITH(mixer_forward(prm, u, 6), "TransPoint P=6 is outside [0, T=5]");
  CHECK_THROWS_WITH(mixer_forward(prm, u, -1), "TransPoint P=-1 is outside [0, T=5]");
  CHECK_THROWS_WITH(mixer_forward(prm, Mat<double>(Mat<double>::Random(5, 3)), 2), "u: expected shape [5, 4], got [5, 3]");
  CHECK_THROWS_WITH(mixer_forward(prm, Mat<double>(0, 4), 0), Catch::Contains("at least one token"));
  Mat<double> nan_u = u;
  nan_u(2, 1) = std::nan("");
  CHECK_THROWS_WITH(mixer_forward(prm, nan_u, 2), "u: contains NaN or Inf");
  const auto f = mixer_forward(prm, u, 2);
  CHECK_THROWS_WITH(mixer_backward(prm, f, Mat<double>(Mat<double>::Zero(4, 4))), "d_out: expected shape [5, 4], got [4, 4]");
}
