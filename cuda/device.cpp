// CPU-only build of cuda/device.hpp; the CUDA build implements it in device_query.cu instead.
#include "cuda/device.hpp"

#ifndef TM_HAVE_CUDA
namespace transmamba::cuda {
bool compiled_in() { return false; }
bool device_available() { return false; }
std::string describe() { return "cpu-only build"; }
}  // namespace transmamba::cuda
#endif
