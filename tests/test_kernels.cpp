// Every kernel check of the catalogue under the CPU emulation (verify/checks_kernels.cpp); the ASan build of
// this file (test_kernels_asan) runs the same checks with every kernel access bounds-checked.
#include "tests/check_support.hpp"
#include "verify/checks_kernels.hpp"

using namespace transmamba;

namespace {
const std::vector<Check>& emulated() {
  static const std::vector<Check> checks = kernel_checks(gpu::Backend::emulated);
  return checks;
}
}  // namespace

TEST_CASE("emulated.conv", "[kernels][emulated]") { require_check("emulated.conv", emulated()); }
TEST_CASE("emulated.step_size", "[kernels][emulated]") { require_check("emulated.step_size", emulated()); }
TEST_CASE("emulated.ssm", "[kernels][emulated]") { require_check("emulated.ssm", emulated()); }
TEST_CASE("emulated.ssm_backward", "[kernels][emulated]") { require_check("emulated.ssm_backward", emulated()); }
TEST_CASE("emulated.converter", "[kernels][emulated]") { require_check("emulated.converter", emulated()); }
TEST_CASE("emulated.ssm.bf16", "[kernels][emulated][bf16]") { require_check("emulated.ssm.bf16", emulated()); }
TEST_CASE("emulated.ssm_backward.bf16", "[kernels][emulated][bf16]") { require_check("emulated.ssm_backward.bf16", emulated()); }
TEST_CASE("emulated.converter.bf16", "[kernels][emulated][bf16]") { require_check("emulated.converter.bf16", emulated()); }
TEST_CASE("emulated.attention", "[kernels][emulated]") { require_check("emulated.attention", emulated()); }
TEST_CASE("emulated.attention.bf16", "[kernels][emulated]") { require_check("emulated.attention.bf16", emulated()); }
TEST_CASE("emulated.norm", "[kernels][emulated]") { require_check("emulated.norm", emulated()); }
TEST_CASE("emulated.projection", "[kernels][emulated]") { require_check("emulated.projection", emulated()); }
TEST_CASE("emulated.mixer", "[kernels][emulated]") { require_check("emulated.mixer", emulated()); }
TEST_CASE("emulated.mixer_backward", "[kernels][emulated]") { require_check("emulated.mixer_backward", emulated()); }
TEST_CASE("emulated.mixer_paper_size", "[kernels][emulated]") { require_check("emulated.mixer_paper_size", emulated()); }
TEST_CASE("emulated.mixer.bf16", "[kernels][emulated]") { require_check("emulated.mixer.bf16", emulated()); }
TEST_CASE("emulated.mixer_backward.bf16", "[kernels][emulated]") { require_check("emulated.mixer_backward.bf16", emulated()); }
TEST_CASE("emulated.decode", "[kernels][emulated]") { require_check("emulated.decode", emulated()); }
TEST_CASE("emulated.conv.bf16", "[kernels][emulated][bf16]") { require_check("emulated.conv.bf16", emulated()); }
TEST_CASE("emulated.step_size.bf16", "[kernels][emulated][bf16]") { require_check("emulated.step_size.bf16", emulated()); }
TEST_CASE("emulated.norm.bf16", "[kernels][emulated][bf16]") { require_check("emulated.norm.bf16", emulated()); }
TEST_CASE("emulated.projection.bf16", "[kernels][emulated][bf16]") { require_check("emulated.projection.bf16", emulated()); }
