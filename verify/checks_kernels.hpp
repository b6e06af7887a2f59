// The kernel checks: every CUDA kernel family (cuda/) against the double reference (reference/), the same
// checks run in two places: on the CPU emulation ("emulated.<family>") and on a GPU ("cuda.<family>").
#pragma once

#include <vector>

#include "cuda/device.hpp"
#include "verify/harness.hpp"

namespace transmamba {

std::vector<Check> kernel_checks(gpu::Backend backend);

// The checks of one kernel family each (verify/checks_kernels_<family>.cpp), gathered by kernel_checks().
std::vector<Check> ssm_kernel_checks(gpu::Backend backend);
std::vector<Check> attention_kernel_checks(gpu::Backend backend);
std::vector<Check> norm_kernel_checks(gpu::Backend backend);
std::vector<Check> projection_kernel_checks(gpu::Backend backend);
std::vector<Check> mixer_kernel_checks(gpu::Backend backend);
std::vector<Check> inference_kernel_checks(gpu::Backend backend);

}  // namespace transmamba
