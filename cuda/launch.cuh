// The one way a kernel is launched (no <<<>>> anywhere else): launch(TM_SITE("name"), kernel, shape, ctx,
// args...). It checks the shape against CUDA's limits and the kernel's own (registers and launch bounds limit
// its threads per block; dynamic shared memory over 48 KiB is opted into), launches on the context's stream,
// and checks the launch's status. With TM_SYNC_LAUNCHES=1 in the environment it also waits for the kernel, so
// that an error inside it is reported at this launch rather than at a later call. Under the emulation it runs
// the kernel on the CPU (emulation.hpp). Every error names the kernel and the file:line of the launch.
#pragma once

#include <cstdlib>
#include <string>

#include "cuda/device.hpp"
#include "cuda/launch_shape.hpp"
#include "cuda/portable.cuh"
#ifdef __CUDACC__
#include "cuda/errors.cuh"
#endif

namespace transmamba::gpu {
struct LaunchSite {
  const char* kernel;
  const char* file;
  int line;
  std::string describe() const { return std::string(kernel) + " (at " + file + ":" + std::to_string(line) + ")"; }
};
}  // namespace transmamba::gpu
#define TM_SITE(kernel_name) ::transmamba::gpu::LaunchSite{kernel_name, __FILE__, __LINE__}

namespace transmamba::gpu::TM_BACKEND_NS {

inline dim3 to_dim3(Dim3 d) { return dim3(d.x, d.y, d.z); }

template <class... Params, class... Args>
void launch(const LaunchSite& site, void (*kernel)(Params...), const LaunchShape& shape, const LaunchContext& ctx,
            Args&&... args) {
  check_launch_shape(site.kernel, shape);
#ifdef __CUDACC__
  const std::string where = "launch of " + site.describe();
  // The dynamic shared memory rounded up to 16 bytes, its alignment (portable.cuh): compute-sanitizer's memcheck
  // flagged a 12-byte shared read at the very start of ssm_chunk_state_kernel's allocation of Q floats on an
  // H200, in the loop that reads w[s] for s < len <= Q only: ptxas's merged loads may read within the 16-byte
  // granule past a small exact size. The emulation keeps the exact size, so its bounds checks still catch a
  // kernel's own overrun by one value.
  const std::size_t shared = (shape.dynamic_shared_bytes + 15) / 16 * 16;
  if (shared > kDefaultDynamicShared)
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)),
               "cudaFuncSetAttribute for the " + where, site.file, site.line);
  cudaFuncAttributes attr{};
  check_cuda(cudaFuncGetAttributes(&attr, kernel), "cudaFuncGetAttributes for the " + where, site.file, site.line);
  if (shape.block.count() > std::uint64_t(attr.maxThreadsPerBlock))
    throw std::invalid_argument(where + ": block of " + std::to_string(shape.block.count()) + " threads > the " +
                                std::to_string(attr.maxThreadsPerBlock) + " this kernel can run (registers, launch bounds)");
  kernel<<<to_dim3(shape.grid), to_dim3(shape.block), shared, static_cast<cudaStream_t>(ctx.stream)>>>(
      std::forward<Args>(args)...);
  check_cuda(cudaGetLastError(), where, site.file, site.line);
  static const bool sync_each = [] {
    const char* s = std::getenv("TM_SYNC_LAUNCHES");
    return s && std::string(s) == "1";
  }();
  if (sync_each) check_cuda(cudaStreamSynchronize(static_cast<cudaStream_t>(ctx.stream)), "the kernel " + site.describe(), site.file, site.line);
#else
  try {
    emu::launch(kernel, emu::GridLaunch{to_dim3(shape.grid), to_dim3(shape.block), shape.dynamic_shared_bytes, ctx.seed, site.kernel},
                std::forward<Args>(args)...);
  } catch (const emu::KernelError& e) {
    throw emu::KernelError(std::string(e.what()) + " (launched at " + site.file + ":" + std::to_string(site.line) + ")");
  }
#endif
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
