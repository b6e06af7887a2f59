// Uses the installed package: the Memory Converter's state of a prefix (reference/converter.hpp) must equal the
// final state of the recurrent scan over it from zero (reference/ssm.hpp), compared with verify's helper.
#include <cstdio>

#include "reference/converter.hpp"
#include "reference/ssm.hpp"
#include "verify/bounds.hpp"
#include "verify/compare.hpp"

using namespace transmamba;

int main() {
  const MixerConfig c{4, 8, 2, 1, 3, 4, 4};  // D, E, H, G, N, W, chunk
  const int P = 5;
  const Mat<double> x = Mat<double>::Random(P, c.E), B = Mat<double>::Random(P, c.G * c.N);
  const Mat<double> dt = (Mat<double>::Random(P, c.H).array() + 1.5) / 4, C = Mat<double>::Zero(P, c.G * c.N);
  const Vec<double> A = -Vec<double>::LinSpaced(c.H, 0.5, 1.5);
  const Mat<double> S0 = memory_converter(c, x, B, dt, A);
  const Mat<double> S_init = Mat<double>::Zero(c.E, c.N);
  const ScanResult<double> scan = ssm_recurrent(c, x, dt, A, B, C, S_init);
  const Comparison cmp = compare("S0", S0, scan.final_state, bounds::kExact);
  std::printf("consumer: converter = scan state, rel %.2e %s\n", cmp.rel_norm, cmp.passed() ? "ok" : "FAIL");
  return cmp.passed() ? 0 : 1;
}
