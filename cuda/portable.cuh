// The first include of every .cu file: the CUDA headers, and the few lines that differ between the two
// compilers that build each .cu (EMULATION.md section 1):
//   - nvcc: the kernels for a GPU; the host code lives in namespace transmamba::gpu::on_device;
//   - the host compiler (g++ -x c++): the same kernels under the CPU emulation (cuda/emulation/), host code in
//     namespace transmamba::gpu::emulated.
// Everything a .cu defines (kernels, launch helpers, host entry points) goes inside
// `namespace transmamba::gpu::TM_BACKEND_NS`: one program links both builds (tm-verify runs the kernels in both
// places), and an inline function or template instantiated by both would otherwise be merged by the linker
// into one of the two (EMULATION.md section 7).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#ifdef __CUDACC__
#define TM_BACKEND_NS on_device
#define TM_NOINLINE __noinline__  // a device function called, not inlined (its code once per instantiation)
// The block's dynamic shared memory (the launch's dynamic_shared_bytes), as T.
template <class T>
__device__ __forceinline__ T* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char tm_dynamic_shared_[];
  return reinterpret_cast<T*>(tm_dynamic_shared_);
}
#else
#include "cuda/emulation/emulation.hpp"
#define TM_BACKEND_NS emulated
#define TM_NOINLINE
template <class T>
inline T* dynamic_shared() {
  return static_cast<T*>(transmamba::emu::dynamic_shared_memory());
}
#endif
