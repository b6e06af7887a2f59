// What the CUDA side of this build can do: compiled in or not, and whether a device is present.
// Nothing here needs CUDA headers, so CPU-only code (tm-verify, the tests) can ask.
#pragma once

#include <string>

namespace transmamba::cuda {

bool compiled_in();       // true when this build compiled cuda/ (nvcc was found)
bool device_available();  // true when a CUDA device can be used now
// One line for humans: "cpu-only build", "cuda compiled in; no device (<reason>)" or
// "cuda compiled in; device 0: <name>, sm_<cc>, <GiB> GiB".
std::string describe();

}  // namespace transmamba::cuda
