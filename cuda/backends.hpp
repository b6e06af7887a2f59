// The two builds of the kernels (portable.cuh): their entry points, declared once for each, and the dispatch
// from a public API function to the stream's backend.
#pragma once

#include <stdexcept>

#include "cuda/attention.hpp"
#include "cuda/blas.hpp"
#include "cuda/conv.hpp"
#include "cuda/mixer.hpp"
#include "cuda/norm.hpp"
#include "cuda/ssm.hpp"
#include "cuda/step_size.hpp"

namespace transmamba::gpu {
namespace emulated {
#include "cuda/entry_points.inc"
}
namespace on_device {
#include "cuda/entry_points.inc"
}
}  // namespace transmamba::gpu

#ifdef TM_HAVE_EMULATION
#define TM_IF_EMULATION(...) __VA_ARGS__
#else
#define TM_IF_EMULATION(...) throw std::runtime_error("this build has no emulated kernels")
#endif
#ifdef TM_HAVE_CUDA
#define TM_IF_CUDA(...) __VA_ARGS__
#else
#define TM_IF_CUDA(...) throw std::runtime_error("this build has no CUDA kernels")
#endif

// Runs the entry point `fn` of the stream's backend on args.
#define TM_DISPATCH(stream, fn, args)                                      \
  do {                                                                     \
    if ((stream).backend() == ::transmamba::gpu::Backend::emulated) {      \
      TM_IF_EMULATION(::transmamba::gpu::emulated::fn(args, (stream).context())); \
    } else {                                                               \
      TM_IF_CUDA(::transmamba::gpu::on_device::fn(args, (stream).context()));     \
    }                                                                      \
  } while (0)
