#include "reference/attention.hpp"
#include "reference/converter.hpp"

#include "tests/check_support.hpp"

using namespace transmamba;

TEST_CASE("attention.definition", "[attention][property]") { require_check("attention.definition"); }
TEST_CASE("attention.backward_fd", "[attention][gradient]") { require_check("attention.backward_fd"); }
TEST_CASE("attention.ladder", "[attention][ladder]") { require_check("attention.ladder"); }
TEST_CASE("converter.equals_scan_state", "[converter][property]") { require_check("converter.equals_scan_state"); }
TEST_CASE("converter.backward_fd", "[converter][gradient]") { require_check("converter.backward_fd"); }
TEST_CASE("converter.ladder", "[converter][ladder]") { require_check("converter.ladder"); }

TEST_CASE("attention: the first token attends only to itself", "[attention]") {
  MixerConfig cfg{2, 4, 2, 1, 2, 2, 2};
  const Mat<double> C = Mat<double>::Random(3, 2), B = Mat<double>::Random(3, 2), x = Mat<double>::Random(3, 4);
  const Mat<double> y = attention_forward(cfg, C, B, x);
  CHECK((y.row(0) - x.row(0)).norm() < 1e-15);
}

TEST_CASE("converter: P = 0 gives a zero state", "[converter]") {
  MixerConfig cfg{2, 4, 2, 1, 3, 2, 2};
  const Mat<double> S0 = memory_converter(cfg, Mat<double>(0, 4), Mat<double>(0, 3), Mat<double>(0, 2),
                                          Vec<double>(Vec<double>::Constant(2, -1.0)));
  REQUIRE(S0.rows() == 4);
  REQUIRE(S0.cols() == 3);
  CHECK(S0.norm() == 0);
}
