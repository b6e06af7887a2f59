// cuda/device.hpp: the emulated backend's memory (host memory, NaN-filled, exactly the size asked for so that
// AddressSanitizer sees one value past the end), and the CUDA backend through runtime.hpp.
#include "cuda/device.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#ifdef TM_HAVE_CUDA
#include "cuda/runtime.hpp"
#endif

namespace transmamba::gpu {

const char* to_string(Backend b) { return b == Backend::cuda ? "cuda" : "emulated"; }

bool emulation_compiled_in() {
#ifdef TM_HAVE_EMULATION
  return true;
#else
  return false;
#endif
}

bool cuda_compiled_in() {
#ifdef TM_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_device_available() {
#ifdef TM_HAVE_CUDA
  return on_device::device_available();
#else
  return false;
#endif
}

std::string describe() {
#ifdef TM_HAVE_CUDA
  return on_device::describe();
#else
  return "cpu-only build";
#endif
}

Device Device::emulated(std::uint64_t seed) {
  if (!emulation_compiled_in())
    throw std::runtime_error("this build has no emulated kernels (the CUDA headers were not found at configure time)");
  return Device(Backend::emulated, 0, seed);
}

Device Device::cuda(int ordinal) {
  if (!cuda_compiled_in()) throw std::runtime_error("this build has no CUDA kernels (nvcc was not found at configure time)");
  if (!cuda_device_available()) throw std::runtime_error("no CUDA device: " + describe());
  return Device(Backend::cuda, ordinal, 0);
}

std::string Device::name() const {
  return backend_ == Backend::cuda ? "cuda:" + std::to_string(ordinal_) : "emulated (seed " + std::to_string(seed_) + ")";
}

void* Device::allocate(std::size_t bytes) const {
  if (backend_ == Backend::cuda) {
#ifdef TM_HAVE_CUDA
    return on_device::allocate(ordinal_, bytes);
#endif
  }
  void* p = std::malloc(bytes ? bytes : 1);
  if (!p) throw std::runtime_error("emulated device: cannot allocate " + std::to_string(bytes) + " bytes");
  std::memset(p, 0xFF, bytes);  // NaN for every float type, -1 for integers
  return p;
}

void Device::release(void* p) const noexcept {
  if (!p) return;
  if (backend_ == Backend::cuda) {
#ifdef TM_HAVE_CUDA
    on_device::release(p);
#endif
    return;
  }
  std::free(p);
}

void Device::copy(void* dst, const void* src, std::size_t bytes, bool to_device) const {
  if (bytes == 0) return;
  if (backend_ == Backend::cuda) {
#ifdef TM_HAVE_CUDA
    on_device::copy(dst, src, bytes, to_device);
#endif
    return;
  }
  std::memcpy(dst, src, bytes);
}

Stream::Stream(const Device& device) : device_(device) {
  context_.backend = device.backend();
  context_.seed = device.seed();
#ifdef TM_HAVE_CUDA
  if (device.backend() == Backend::cuda) context_.stream = on_device::create_stream(device.ordinal());
#endif
}

Stream::~Stream() {
#ifdef TM_HAVE_CUDA
  if (context_.blas_handle) on_device::destroy_blas_handle(context_.blas_handle);
  if (context_.stream) on_device::destroy_stream(context_.stream);
#endif
}

void Stream::synchronize() const {
#ifdef TM_HAVE_CUDA
  if (context_.stream) on_device::synchronize(context_.stream);
#endif
}

void Stream::copy_rows(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t row_bytes,
                       std::size_t rows) const {
  if (rows == 0 || row_bytes == 0) return;
#ifdef TM_HAVE_CUDA
  if (context_.stream) return on_device::copy_rows(dst, dst_pitch, src, src_pitch, row_bytes, rows, context_.stream);
#endif
  for (std::size_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch, row_bytes);
}

void Stream::zero_rows(void* dst, std::size_t dst_pitch, std::size_t row_bytes, std::size_t rows) const {
  if (rows == 0 || row_bytes == 0) return;
#ifdef TM_HAVE_CUDA
  if (context_.stream) return on_device::zero_rows(dst, dst_pitch, row_bytes, rows, context_.stream);
#endif
  for (std::size_t r = 0; r < rows; ++r) std::memset(static_cast<char*>(dst) + r * dst_pitch, 0, row_bytes);
}

namespace {
double host_clock_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Event::Event(const Device& device) : backend_(device.backend()) {
#ifdef TM_HAVE_CUDA
  if (backend_ == Backend::cuda) event_ = on_device::create_event(device.ordinal());
#endif
}

Event::~Event() {
#ifdef TM_HAVE_CUDA
  if (event_) on_device::destroy_event(event_);
#endif
}

void Event::record(const Stream& stream) {
  if (stream.backend() != backend_)
    throw std::invalid_argument(std::string("Event::record: a ") + to_string(backend_) + " event on a " +
                                to_string(stream.backend()) + " stream");
#ifdef TM_HAVE_CUDA
  if (event_) {
    on_device::record_event(event_, stream.context().stream);
    host_ms_ = 0;  // recorded
    return;
  }
#endif
  host_ms_ = host_clock_ms();
}

double Event::elapsed_ms(const Event& start, const Event& end) {
  if (start.host_ms_ < 0 || end.host_ms_ < 0) throw std::logic_error("Event::elapsed_ms: an event was never recorded");
#ifdef TM_HAVE_CUDA
  if (start.event_ && end.event_) return on_device::event_elapsed_ms(start.event_, end.event_);
#endif
  return end.host_ms_ - start.host_ms_;
}

L2Flush::L2Flush(const Device& device) : device_(device) {
  std::size_t l2 = std::size_t(1) << 20;
#ifdef TM_HAVE_CUDA
  if (device.backend() == Backend::cuda) l2 = on_device::l2_cache_bytes(device.ordinal());
#endif
  bytes_ = 2 * l2;
  data_ = device_.allocate(bytes_);
}

L2Flush::~L2Flush() { device_.release(data_); }

void L2Flush::run(const Stream& stream) const {
  if (stream.backend() != device_.backend())
    throw std::invalid_argument(std::string("L2Flush::run: a ") + to_string(device_.backend()) + " buffer on a " +
                                to_string(stream.backend()) + " stream");
#ifdef TM_HAVE_CUDA
  if (stream.context().stream) return on_device::memset_async(data_, 0, bytes_, stream.context().stream);
#endif
  std::memset(data_, 0, bytes_);
}

}  // namespace transmamba::gpu
