// The CUDA suite's entry in ctest. Without nvcc or without a GPU it reports itself as skipped (exit 77,
// which ctest shows as "Skipped"), never as passed.
#include <cstdio>
#include <string>

#include "cuda/device.hpp"

int main() {
  using namespace transmamba;
  const std::string what = cuda::describe();
  if (!cuda::compiled_in() || !cuda::device_available()) {
    std::printf("skipped: %s\n", what.c_str());
    return 77;
  }
  std::printf("%s\n", what.c_str());
  const bool ok = what.find("device 0:") != std::string::npos;
  std::printf("%s\n", ok ? "device query ok" : "device query FAILED");
  return ok ? 0 : 1;
}
