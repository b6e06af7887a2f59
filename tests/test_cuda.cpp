// The CUDA suite's entry in ctest: every kernel check on the GPU (the "cuda.*" rows of tm-verify), at its
// default number of cases and the ctest seed. Without nvcc or without a GPU it reports itself as skipped
// (exit 77, which ctest shows as "Skipped"), never as passed.
#include <cstdio>
#include <cstdlib>

#include "verify/checks_kernels.hpp"

int main() {
  using namespace transmamba;
  std::printf("%s\n", gpu::describe().c_str());
  if (!gpu::cuda_device_available()) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  const char* env = std::getenv("TM_SEED");
  const std::uint64_t seed = env ? std::strtoull(env, nullptr, 10) : 20261123;
  int failed = 0;
  for (const Check& c : kernel_checks(gpu::Backend::cuda)) {
    const CheckReport r = run_check(c, seed);
    std::printf("%-24s %4d cases  %s  worst %s\n", c.name.c_str(), r.cases, r.passed ? "ok" : "FAIL", r.worst.report().c_str());
    if (!r.passed) std::printf("%s\n", r.failure.c_str()), ++failed;
  }
  return failed ? 1 : 0;
}
