// What the CUDA build (cuda/device.cu, nvcc) provides to cuda/device.cpp: the device query, memory, streams, events.
// Every call checks its status and throws std::runtime_error naming the call and file:line (errors.cuh).
#pragma once

#include <cstddef>
#include <string>

namespace transmamba::gpu::on_device {

bool device_available();
std::string describe();
void* allocate(int ordinal, std::size_t bytes);
void release(void* p) noexcept;
void copy(void* dst, const void* src, std::size_t bytes, bool to_device);
void* create_stream(int ordinal);
void destroy_stream(void* stream) noexcept;
void synchronize(void* stream);
void copy_rows(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t row_bytes,
               std::size_t rows, void* stream);  // device to device, cudaMemcpy2DAsync
void zero_rows(void* dst, std::size_t dst_pitch, std::size_t row_bytes, std::size_t rows, void* stream);  // cudaMemset2DAsync
void destroy_blas_handle(void* handle) noexcept;
// Timing (tm-bench): events, and the L2 cache size for its flush.
void* create_event(int ordinal);
void destroy_event(void* event) noexcept;
void record_event(void* event, void* stream);
double event_elapsed_ms(void* start, void* end);  // synchronizes on end
std::size_t l2_cache_bytes(int ordinal);
void memset_async(void* dst, int value, std::size_t bytes, void* stream);

}  // namespace transmamba::gpu::on_device
