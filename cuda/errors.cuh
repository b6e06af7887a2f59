// Checking every CUDA and cuBLAS status (nvcc build only). A failure throws std::runtime_error naming the call,
// the kernel when there is one, and file:line, e.g.
//   "cudaMalloc(&p, bytes) failed: out of memory (at cuda/device.cu:40)"
//   "launch of conv_silu_forward failed: too many resources requested for launch (at cuda/conv.cu:120)"
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace transmamba::gpu::on_device {

[[noreturn]] inline void fail_call(const std::string& call, const char* status, const char* file, int line) {
  throw std::runtime_error(call + " failed: " + status + " (at " + file + ":" + std::to_string(line) + ")");
}
inline void check_cuda(cudaError_t e, const std::string& call, const char* file, int line) {
  if (e != cudaSuccess) fail_call(call, cudaGetErrorString(e), file, line);
}
inline void check_cublas(cublasStatus_t s, const std::string& call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) fail_call(call, cublasGetStatusString(s), file, line);
}

}  // namespace transmamba::gpu::on_device

#define TM_CUDA_CHECK(call) ::transmamba::gpu::on_device::check_cuda((call), #call, __FILE__, __LINE__)
#define TM_CUBLAS_CHECK(call) ::transmamba::gpu::on_device::check_cublas((call), #call, __FILE__, __LINE__)
