// The shape of a kernel launch (grid, block, dynamic shared memory) in plain C++, and the check every launch
// goes through (cuda/launch.cuh) before anything reaches the device: CUDA's documented limits for compute
// capability 9.0 (CUDA C++ Programming Guide, "Technical Specifications per Compute Capability").
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace transmamba::gpu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
  std::uint64_t count() const { return std::uint64_t(x) * y * z; }
};

struct LaunchShape {
  Dim3 grid, block;
  std::size_t dynamic_shared_bytes = 0;
};

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr std::size_t kDefaultDynamicShared = 48 * 1024;   // without opting in (cudaFuncSetAttribute)
constexpr std::size_t kMaxDynamicShared = 227 * 1024;      // sm_90 opt-in maximum per block

// Throws std::invalid_argument naming the kernel and the limit when shape cannot be launched.
inline void check_launch_shape(const char* kernel, const LaunchShape& s) {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(std::string("launch of ") + kernel + ": " + what); };
  const Dim3 &g = s.grid, &b = s.block;
  if (b.count() == 0 || g.count() == 0) fail("empty grid or block");
  if (b.count() > kMaxThreadsPerBlock) fail("block of " + std::to_string(b.count()) + " threads > 1024");
  if (b.x > 1024 || b.y > 1024 || b.z > 64) fail("block dimensions over (1024, 1024, 64)");
  if (g.x > 2147483647u || g.y > 65535 || g.z > 65535) fail("grid dimensions over (2^31-1, 65535, 65535)");
  if (s.dynamic_shared_bytes > kMaxDynamicShared)
    fail(std::to_string(s.dynamic_shared_bytes) + " bytes of dynamic shared memory > the 227 KiB a block can have");
}

}  // namespace transmamba::gpu
