// Where kernels run, and the memory they run on. Plain C++ (no CUDA headers): the tests, tm-verify and the
// host API of every kernel family use it.
//
//   Device::emulated(seed)  the CPU emulation of CUDA's execution model (cuda/emulation/): always available
//                           when the build found the CUDA headers; seed orders the threads of each block.
//   Device::cuda(ordinal)   a CUDA device; throws when the build has no CUDA or the machine no GPU.
//   Stream(device)          an ordered queue of work on that device (a cudaStream_t, or nothing to hold under
//                           emulation, which runs every launch to completion before returning).
//   DeviceBuffer<T>         memory on a device, freed when it goes out of scope. New buffers hold NaN bytes
//                           (0xFF) under emulation, so a kernel that reads what nobody wrote shows it.
//   Event(device)           a point in a stream's work for timing (a cudaEvent_t; under emulation, which runs
//                           every launch to completion, the host's steady clock when it is recorded).
//   L2Flush(device)         a buffer of twice the device's L2 cache, written on a stream to evict what a timed
//                           run would otherwise find cached (tm-bench).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/tensor.hpp"

namespace transmamba::gpu {

enum class Backend { emulated, cuda };
const char* to_string(Backend b);

bool emulation_compiled_in();  // the build found the CUDA headers and built the emulated kernels
bool cuda_compiled_in();       // the build found nvcc and built the kernels for a GPU
bool cuda_device_available();  // cuda_compiled_in() and a CUDA device can be used now
// One line for humans: "cpu-only build", "cuda compiled in; no device (<reason>)" or
// "cuda compiled in; device 0: <name>, sm_<cc>, <GiB> GiB".
std::string describe();

// What a backend's kernel launch needs: the stream, and under emulation the thread-order seed.
struct LaunchContext {
  Backend backend = Backend::emulated;
  void* stream = nullptr;       // cudaStream_t
  std::uint64_t seed = 0;       // emulation: thread order within each block (0: in order)
  void* blas_handle = nullptr;  // cublasHandle_t, made on first use (cuda/blas.hpp)
};

class Device {
 public:
  static Device emulated(std::uint64_t seed = 1);
  static Device cuda(int ordinal = 0);
  Backend backend() const { return backend_; }
  int ordinal() const { return ordinal_; }
  std::uint64_t seed() const { return seed_; }
  std::string name() const;  // "emulated (seed 1)" or "cuda:0"

  void* allocate(std::size_t bytes) const;  // throws std::runtime_error naming the size when it cannot
  void release(void* p) const noexcept;
  void copy_to_device(void* dst, const void* src, std::size_t bytes) const { copy(dst, src, bytes, true); }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) const { copy(dst, src, bytes, false); }

 private:
  Device(Backend b, int ordinal, std::uint64_t seed) : backend_(b), ordinal_(ordinal), seed_(seed) {}
  void copy(void* dst, const void* src, std::size_t bytes, bool to_device) const;
  Backend backend_;
  int ordinal_;
  std::uint64_t seed_;
};

class Stream {
 public:
  explicit Stream(const Device& device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  const Device& device() const { return device_; }
  Backend backend() const { return device_.backend(); }
  // Blocks until every launch on this stream has finished; throws on an asynchronous kernel error.
  void synchronize() const;
  // Device-to-device copies and zero fills, in order with the stream's launches: `rows` rows of row_bytes
  // bytes, a row every src_pitch / dst_pitch bytes (>= row_bytes). Unchecked: copy_block and zero_block
  // below check views first.
  void copy_rows(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t row_bytes,
                 std::size_t rows) const;
  void zero_rows(void* dst, std::size_t dst_pitch, std::size_t row_bytes, std::size_t rows) const;
  LaunchContext& context() const { return context_; }

 private:
  Device device_;
  mutable LaunchContext context_;
};

// A timing mark on a stream. elapsed_ms(start, end) waits for `end` and returns the milliseconds between the
// two records on the device (cudaEventElapsedTime; emulated: between the host clock readings, which is the
// time of the launches in between, since the emulation runs each to completion). Throws std::logic_error when
// either was never recorded.
class Event {
 public:
  explicit Event(const Device& device);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(const Stream& stream);  // on a stream of this event's backend (std::invalid_argument otherwise)
  static double elapsed_ms(const Event& start, const Event& end);

 private:
  Backend backend_;
  void* event_ = nullptr;  // cudaEvent_t
  double host_ms_ = -1;    // -1 before the first record; emulated: the steady clock then (ms); cuda: 0
};

// A buffer larger than the device's L2 cache (2 x cudaDevAttrL2CacheSize; emulated: 2 x 1 MiB, no cache to
// speak of), and run(stream) writes all of it (cudaMemsetAsync), so that the next timed launch reads its
// inputs from device memory as a cold call would.
class L2Flush {
 public:
  explicit L2Flush(const Device& device);
  ~L2Flush();
  L2Flush(const L2Flush&) = delete;
  L2Flush& operator=(const L2Flush&) = delete;
  void run(const Stream& stream) const;  // on a stream of this buffer's backend (std::invalid_argument otherwise)
  std::size_t bytes() const { return bytes_; }

 private:
  Device device_;
  std::size_t bytes_ = 0;
  void* data_ = nullptr;
};

// Memory for n values of T on a device; move-only.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer(const Device& device, std::size_t n)
      : device_(device), data_(static_cast<T*>(n ? device.allocate(n * sizeof(T)) : nullptr)), size_(n) {}
  DeviceBuffer(const Device& device, const std::vector<T>& host) : DeviceBuffer(device, host.size()) {
    upload(host);
  }
  ~DeviceBuffer() { device_.release(data_); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : device_(o.device_), data_(o.data_), size_(o.size_) {
    o.data_ = nullptr, o.size_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {  // frees what this buffer held
    if (this != &o) {
      device_.release(data_);
      device_ = o.device_, data_ = o.data_, size_ = o.size_;
      o.data_ = nullptr, o.size_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() const { return data_; }
  std::size_t size() const { return size_; }
  void upload(const std::vector<T>& host) {
    check_copy(host.size());
    device_.copy_to_device(data_, host.data(), host.size() * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(size_);
    device_.copy_to_host(host.data(), data_, size_ * sizeof(T));
    return host;
  }
  // The whole buffer as [batch, rows, cols] with the given strides (0: contiguous).
  View<T> view(std::int64_t batch_stride = 0, std::int64_t row_stride = 0) const {
    return View<T>{data_, size_, batch_stride, row_stride};
  }
  // A view that starts `offset` values in (a column block of a wider matrix, e.g. x inside xBC).
  View<T> view_at(std::size_t offset, std::int64_t batch_stride, std::int64_t row_stride) const {
    if (offset > size_) throw std::invalid_argument("view_at: offset " + std::to_string(offset) + " past a buffer of " + std::to_string(size_));
    return View<T>{data_ + offset, size_ - offset, batch_stride, row_stride};
  }

 private:
  void check_copy(std::size_t n) const {
    if (n != size_)
      throw std::invalid_argument("DeviceBuffer: copying " + std::to_string(n) + " values into a buffer of " +
                                  std::to_string(size_));
  }
  Device device_;
  T* data_;
  std::size_t size_;
};

// dst[b, r, c] = src[b, r, c] for a [batch, rows, cols] block, device to device on the stream; both views
// checked first (check_view: fn names the caller).
template <class T>
void copy_block(const Stream& stream, const char* fn, const View<const T>& src, const View<T>& dst, std::int64_t batch,
                std::int64_t rows, std::int64_t cols) {
  const Strides from = check_view(fn, "copy source", src, batch, rows, cols);
  const Strides to = check_view(fn, "copy destination", dst, batch, rows, cols);
  if (batch == 0 || rows == 0 || cols == 0) return;
  const std::size_t row_bytes = std::size_t(cols) * sizeof(T);
  for (std::int64_t b = 0; b < batch; ++b)  // pitches of at least a row: one row may have any stride
    stream.copy_rows(dst.data + b * to.batch, std::max<std::size_t>(to.row * sizeof(T), row_bytes), src.data + b * from.batch,
                     std::max<std::size_t>(from.row * sizeof(T), row_bytes), row_bytes, std::size_t(rows));
}
// dst[b, r, c] = 0 for a [batch, rows, cols] block (checked as copy_block).
template <class T>
void zero_block(const Stream& stream, const char* fn, const View<T>& dst, std::int64_t batch, std::int64_t rows,
                std::int64_t cols) {
  const Strides to = check_view(fn, "zeroed block", dst, batch, rows, cols);
  if (batch == 0 || rows == 0 || cols == 0) return;
  const std::size_t row_bytes = std::size_t(cols) * sizeof(T);
  for (std::int64_t b = 0; b < batch; ++b)
    stream.zero_rows(dst.data + b * to.batch, std::max<std::size_t>(to.row * sizeof(T), row_bytes), row_bytes, std::size_t(rows));
}

}  // namespace transmamba::gpu
