// The CPU emulation of CUDA's execution model (the device side). portable.cuh includes this header, after the
// CUDA headers, when a .cu file is compiled by the host compiler instead of nvcc; the same kernel source then
// runs on the CPU, which is how CI (no GPU) runs every kernel.
//
// What a kernel gets here:
//   - threadIdx, blockIdx, blockDim, gridDim, warpSize; blocks run one after another;
//   - the threads of a block as fibers taking turns: each runs until its next __syncthreads() or warp
//     primitive, in an order drawn from the launch's seed (seed 0: thread order 0, 1, 2, ...), a warp now and
//     then sitting out a stretch of turns so that the others run ahead of it (seed 0: never), so a missing
//     barrier shows up as a wrong result and the seed replays it;
//   - __shared__ memory, one copy (the variable itself: blocks do not overlap) filled with NaN bytes (0xFF)
//     at every block start; dynamic shared memory through dynamic_shared<T>() (portable.cuh), NaN-filled too;
//   - warp primitives (__shfl*_sync, __ballot_sync, __any_sync, __all_sync, __syncwarp) as rendezvous of the
//     lanes named in the mask; atomics; the math intrinsics the kernels use; __ldg; __trap();
//   - cp.async's copies from global to shared memory, which land only when the issuing thread waits for them
//     (copy_async, below).
// What it checks that CUDA leaves undefined: a __syncthreads() that not every thread of the block reaches, a
// warp primitive whose mask names a lane that exited, never arrives, or does not exist, a shuffle from a lane
// outside the mask: each is a KernelError naming the kernel, block and threads.
// What it cannot check: speed, the memory model beyond barriers (threads never run at the same time), and
// instructions it does not model (inline PTX, tensor cores; keep those behind #ifdef __CUDA_ARCH__).
//
// Under AddressSanitizer (__SANITIZE_ADDRESS__) __shared__ is a plain static, which ASan bounds-checks but which
// cannot be NaN-filled; otherwise it lives in the section tm_emu_shared, which the scheduler fills. A
// __shared__ variable must sit in a __global__ function or a template: GCC refuses to mix sectioned statics
// of inline and non-inline functions in one translation unit ("section type conflict").
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace transmamba::emu {

// An emulated kernel did something CUDA leaves undefined (or trapped); the message names kernel, block, threads.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct GridLaunch {
  dim3 grid, block;
  std::size_t dynamic_shared_bytes = 0;
  std::uint64_t seed = 0;     // thread order within each block; 0: in order
  const char* kernel = "?";   // for messages
};

// Runs thread_body once for every thread of every block of the grid, as described above. Serialized: one
// emulated grid at a time in the process. Throws KernelError.
void run_grid(const GridLaunch& launch, const std::function<void()>& thread_body);

// Runs kernel(args...) on the emulated grid. The arguments are converted to the kernel's parameter types
// once; every thread gets its own copy, as kernel parameters on a GPU.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), const GridLaunch& grid, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  run_grid(grid, [&] { std::apply(kernel, params); });
}

// ---- called from inside an emulated thread ---------------------------------------------------------------
void sync_threads();
// Every lane named in mask deposits value; returns what each lane deposited (index = lane).
std::array<std::uint64_t, 32> warp_rendezvous(unsigned mask, std::uint64_t value, const char* primitive);
void* dynamic_shared_memory();
// cp.async (cuda/stage.cuh): copy_async records a copy of up to 16 bytes from global to shared memory, reading
// the source now; commit_async closes the calling thread's open group of copies; wait_async(n) lands every
// committed group of the thread but the n most recent. A group lands either at its commit or at that wait (drawn
// from the launch's seed; seed 0: at the wait), the two ends of what a GPU may do: a read before the wait (or by
// another thread before the issuing thread's wait and a barrier) may see what the destination held before, NaN
// bytes at the block's start, and a read of a buffer whose next copies were issued may see those. Copies never
// committed, or never waited for, may not land.
void copy_async(void* dst, const void* src, std::size_t bytes);
void commit_async();
void wait_async(int pending);
[[noreturn]] void trap(const char* what);
unsigned lane_id();

template <class T>
std::uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp primitives move values of up to 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <class T>
T from_bits(std::uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}
// The shuffle family: every lane of mask deposits v, then reads the value of lane src(lane); a source outside
// the lane's segment of `width` lanes reads the lane's own value (CUDA's rule for xor, up and down).
template <class T, class Source>
T shuffle(unsigned mask, T v, int width, Source src, const char* primitive) {
  const auto all = warp_rendezvous(mask, to_bits(v), primitive);
  const int lane = int(lane_id()), segment = lane / width * width;
  const int from = src(lane, segment);
  if (from < segment || from >= segment + width) return v;
  if (!(mask >> from & 1u))
    trap((std::string(primitive) + ": lane " + std::to_string(lane) + " reads lane " + std::to_string(from) +
          ", which is not in the mask").c_str());
  return from_bits<T>(all[from]);
}

}  // namespace transmamba::emu

// ---- the CUDA names (global namespace, as in CUDA) ----------------------------------------------------------
inline uint3 threadIdx, blockIdx;  // set by the scheduler before each thread resumes
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#undef __shared__
#ifdef __SANITIZE_ADDRESS__
#define __shared__ static
#else
#define __shared__ __attribute__((section("tm_emu_shared"))) static
#endif

inline void __syncthreads() { transmamba::emu::sync_threads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { transmamba::emu::warp_rendezvous(mask, 0, "__syncwarp"); }
inline void __threadfence() {}
inline void __threadfence_block() {}
[[noreturn]] inline void __trap() { transmamba::emu::trap("__trap() called"); }

template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return transmamba::emu::shuffle(mask, v, width, [&](int, int seg) { return seg + src_lane % width; }, "__shfl_sync");
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return transmamba::emu::shuffle(mask, v, width, [&](int lane, int) { return lane ^ lane_mask; }, "__shfl_xor_sync");
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return transmamba::emu::shuffle(mask, v, width, [&](int lane, int) { return lane + int(delta); }, "__shfl_down_sync");
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return transmamba::emu::shuffle(mask, v, width, [&](int lane, int) { return lane - int(delta); }, "__shfl_up_sync");
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  const auto all = transmamba::emu::warp_rendezvous(mask, predicate != 0, "__ballot_sync");
  unsigned bits = 0;
  for (int lane = 0; lane < 32; ++lane)
    if ((mask >> lane & 1u) && all[lane]) bits |= 1u << lane;
  return bits;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }

// Atomics: threads never run at the same time here, so a read-modify-write is atomic as written.
template <class T>
T atomicAdd(T* address, T v) {
  const T old = *address;
  *address = old + v;
  return old;
}
template <class T>
T atomicMax(T* address, T v) {
  const T old = *address;
  if (v > old) *address = v;
  return old;
}
template <class T>
T atomicExch(T* address, T v) {
  const T old = *address;
  *address = v;
  return old;
}
template <class T>
T atomicCAS(T* address, T compare, T v) {
  const T old = *address;
  if (old == compare) *address = v;
  return old;
}

template <class T>
T __ldg(const T* p) {
  return *p;
}

// Math intrinsics that host mode lacks. The fast intrinsics (__expf, ...) are approximations on a GPU; here they
// are the accurate functions, so the emulation cannot see their error (a GPU run does).
// CUDA's global min and max (device functions for every arithmetic type).
using std::max;
using std::min;
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline float __expf(float v) { return std::exp(v); }
inline float __logf(float v) { return std::log(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
