#include "reference/ssm.hpp"

#include "tests/check_support.hpp"

using namespace transmamba;

TEST_CASE("ssm.definition", "[ssm][property]") { require_check("ssm.definition"); }
TEST_CASE("ssm.forms_equal", "[ssm][property]") { require_check("ssm.forms_equal"); }
TEST_CASE("ssm.split_resume", "[ssm][property]") { require_check("ssm.split_resume"); }
TEST_CASE("ssm.backward_fd", "[ssm][gradient]") { require_check("ssm.backward_fd"); }
TEST_CASE("ssm.ladder", "[ssm][ladder]") { require_check("ssm.ladder"); }
TEST_CASE("ssm.float_vs_double", "[ssm][property]") { require_check("ssm.float_vs_double"); }

TEST_CASE("ssm: one token by hand", "[ssm]") {
  // H = G = p = N = 1: S_0 = a·S_init + dt·x·B, y = S_0·C with a = exp(dt·A).
  MixerConfig cfg{1, 1, 1, 1, 1, 1, 1};
  Mat<double> x(1, 1), dt(1, 1), B(1, 1), C(1, 1), S_init(1, 1);
  x << 2, dt << 0.5, B << 3, C << -1, S_init << 4;
  Vec<double> A(1);
  A << -2;
  const double a = std::exp(0.5 * -2), S = a * 4 + 0.5 * 2 * 3;
  for (const auto& r : {ssm_recurrent(cfg, x, dt, A, B, C, S_init), ssm_quadratic(cfg, x, dt, A, B, C, S_init)}) {
    CHECK(r.final_state(0, 0) == Approx(S).epsilon(1e-15));
    CHECK(r.y(0, 0) == Approx(-S).epsilon(1e-15));
  }
}

TEST_CASE("ssm: bad shapes name the argument", "[ssm][errors]") {
  MixerConfig cfg{4, 4, 2, 1, 3, 2, 2};
  const Mat<double> x = Mat<double>::Zero(5, 4), dt = Mat<double>::Zero(5, 2), B = Mat<double>::Zero(5, 3);
  const Vec<double> A = Vec<double>::Zero(2);
  const Mat<double> S_init = Mat<double>::Zero(4, 3);
  CHECK_THROWS_WITH(ssm_recurrent(cfg, x, dt, A, B, Mat<double>(Mat<double>::Zero(4, 3)), S_init),
                    "C: expected shape [5, 3], got [4, 3]");
  CHECK_THROWS_WITH(ssm_chunked(cfg, x, dt, A, B, B, Mat<double>(Mat<double>::Zero(2, 3)), 2),
                    "S_init: expected shape [4, 3], got [2, 3]");
  CHECK_THROWS_WITH(ssm_chunked(cfg, x, dt, A, B, B, S_init, 0), Catch::Contains("chunk size Q must be positive"));
}
