// The CUDA runtime side of cuda/device.hpp (nvcc build only; runtime.hpp declares it). Without a driver (the
// CI machine) every runtime call fails with an error that describe() reports; nothing here aborts.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <sstream>

#include "cuda/errors.cuh"
#include "cuda/runtime.hpp"

namespace transmamba::gpu::on_device {

bool device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

std::string describe() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return std::string("cuda compiled in; no device (") + cudaGetErrorString(err) + ")";
  if (count == 0) return "cuda compiled in; no device (0 devices)";
  cudaDeviceProp prop{};
  TM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::ostringstream os;
  os << "cuda compiled in; device 0: " << prop.name << ", sm_" << prop.major << prop.minor << ", "
     << (prop.totalGlobalMem >> 30) << " GiB";
  return os.str();
}

void* allocate(int ordinal, std::size_t bytes) {
  TM_CUDA_CHECK(cudaSetDevice(ordinal));
  void* p = nullptr;
  check_cuda(cudaMalloc(&p, bytes), "cudaMalloc of " + std::to_string(bytes) + " bytes", __FILE__, __LINE__);
  return p;
}

void release(void* p) noexcept { cudaFree(p); }

void copy(void* dst, const void* src, std::size_t bytes, bool to_device) {
  TM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
}

void* create_stream(int ordinal) {
  TM_CUDA_CHECK(cudaSetDevice(ordinal));
  cudaStream_t s = nullptr;
  TM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void destroy_stream(void* stream) noexcept { cudaStreamDestroy(static_cast<cudaStream_t>(stream)); }

void synchronize(void* stream) { TM_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream))); }

void copy_rows(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t row_bytes,
               std::size_t rows, void* stream) {
  TM_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToDevice,
                                  static_cast<cudaStream_t>(stream)));
}

void zero_rows(void* dst, std::size_t dst_pitch, std::size_t row_bytes, std::size_t rows, void* stream) {
  TM_CUDA_CHECK(cudaMemset2DAsync(dst, dst_pitch, 0, row_bytes, rows, static_cast<cudaStream_t>(stream)));
}

void destroy_blas_handle(void* handle) noexcept { cublasDestroy(static_cast<cublasHandle_t>(handle)); }

void* create_event(int ordinal) {
  TM_CUDA_CHECK(cudaSetDevice(ordinal));
  cudaEvent_t e = nullptr;
  TM_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

void destroy_event(void* event) noexcept { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }

void record_event(void* event, void* stream) {
  TM_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
}

double event_elapsed_ms(void* start, void* end) {
  TM_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  float ms = 0;
  TM_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

std::size_t l2_cache_bytes(int ordinal) {
  int bytes = 0;
  TM_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, ordinal));
  return std::size_t(bytes);
}

void memset_async(void* dst, int value, std::size_t bytes, void* stream) {
  TM_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(stream)));
}

}  // namespace transmamba::gpu::on_device
