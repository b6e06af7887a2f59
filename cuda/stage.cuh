// Staging: tiles of a tensor in global memory copied into shared memory by a whole block, for the tensor-core
// kernels' operands (cuda/mma.cuh: bf16 tiles, or fp32 values split into two bf16 parts).
//
// The block's kThreads threads take consecutive chunks of a tile's rows: 8 values where the source allows it
// (one 16-byte load of bf16, two of fp32, and one 16-byte store per bf16 tile), else one value. Each thread
// issues kStageBatch loads before its first store, so that a warp waits on memory once per batch of loads
// rather than once per load: the scan's tensor-core kernels, which staged value by value and waited on each
// load before the next, issued 0.18 (ssm_output_tc_kernel) and 0.30 (ssm_chunk_state_tc_kernel) instructions
// per scheduler per cycle on an H100 (ncu at T = 8192, README). Every staged value is the same as a copy value
// by value would give: staging changes no result.
#pragma once

#include <cstdint>

#include "cuda/bf16.hpp"
#include "cuda/mma.cuh"
#include "cuda/portable.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

constexpr int kStageBatch = 4;

struct alignas(16) Bf16x8 {  // 8 bf16 values as one 16-byte word
  std::uint32_t words[4];
};
struct alignas(16) Floatx4 {
  float v[4];
};
struct Float8 {
  float v[8];
};

// for i < count: store(i, load(i)), thread `thread` (default threadIdx.x; a block of more dimensions passes its
// flat index) taking i = thread + k·kThreads, its loads kStageBatch at a time before their stores. Threads at or
// past kThreads take none.
template <int kThreads, class Load, class Store>
__device__ void stage_chunks(int count, Load load, Store store, int thread = int(threadIdx.x)) {
  using V = decltype(load(0));
  for (int base = thread; base < count && thread < kThreads; base += kThreads * kStageBatch) {
    V v[kStageBatch] = {};
#pragma unroll
    for (int j = 0; j < kStageBatch; ++j)
      if (base + j * kThreads < count) v[j] = load(base + j * kThreads);
#pragma unroll
    for (int j = 0; j < kStageBatch; ++j)
      if (base + j * kThreads < count) store(base + j * kThreads, v[j]);
  }
}

// Whether a tile of tile_cols columns (row stride ld in shared memory) can be staged 8 values at a time from a
// source of cols columns, row stride row, of T: whole chunks of 8 on both sides, 16-byte aligned. The tile
// itself must be 16-byte aligned (as ldmatrix needs).
template <class T>
__device__ inline bool stage_by_8(int tile_cols, int ld, int cols, std::int64_t row, const T* src) {
  constexpr int kPer16 = 16 / int(sizeof(T));
  return tile_cols % 8 == 0 && ld % 8 == 0 && cols % 8 == 0 && row % kPer16 == 0 &&
         reinterpret_cast<std::uintptr_t>(src) % 16 == 0;
}

__device__ inline Float8 load_8(const float* src) {
  const Floatx4 a = reinterpret_cast<const Floatx4*>(src)[0], b = reinterpret_cast<const Floatx4*>(src)[1];
  return {{a.v[0], a.v[1], a.v[2], a.v[3], b.v[0], b.v[1], b.v[2], b.v[3]}};
}
__device__ inline Float8 load_8(const Bf16* src) {
  const Bf16x8 w = *reinterpret_cast<const Bf16x8*>(src);
  Float8 f;
  for (int j = 0; j < 8; ++j) f.v[j] = to_float(Bf16{static_cast<std::uint16_t>(w.words[j / 2] >> (16 * (j % 2)))});
  return f;
}

// For every chunk of kWidth values of a tile_rows x tile_cols tile (r: its row, c: its first column, a multiple
// of kWidth): store(r, c, v) with v = load(r, c) where r < rows and c < cols, else V{} (zeros; V: what load
// returns).
template <int kThreads, int kWidth, class Load, class Store>
__device__ void stage_tile(int tile_rows, int tile_cols, int rows, int cols, Load load, Store store) {
  using V = decltype(load(0, 0));
  const int chunks = tile_cols / kWidth;
  stage_chunks<kThreads>(
      tile_rows * chunks,
      [&](int i) {
        const int r = i / chunks, c = i % chunks * kWidth;
        return r < rows && c < cols ? load(r, c) : V{};
      },
      [&](int i, const V& v) { store(i / chunks, i % chunks * kWidth, v); });
}

// cp.async (PTX ISA 9.0, section 9.7.9.25 "cp.async"): 16 bytes from global to shared memory without passing
// through registers, landing once the issuing thread waits for its group: commit_copies closes the thread's group
// of copies issued since the last, wait_copies<n> waits until at most its n most recent groups are in flight.
// Other threads see the bytes after that wait and a barrier; they may land any time after the copy is issued. Both
// addresses 16-byte aligned. The emulation lands a group at its commit or at its wait, by the seed (emulation.hpp:
// copy_async), so that a read too early, or of a buffer being refilled, shows up there.
__device__ inline void copy_16_async(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(static_cast<unsigned>(__cvta_generic_to_shared(smem))),
               "l"(gmem)
               : "memory");
#elif !defined(__CUDACC__)
  if (reinterpret_cast<std::uintptr_t>(smem) % 16 != 0 || reinterpret_cast<std::uintptr_t>(gmem) % 16 != 0)
    transmamba::emu::trap("cp.async: an address is not 16-byte aligned");
  transmamba::emu::copy_async(smem, gmem, 16);
#endif
}
__device__ inline void commit_copies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#elif !defined(__CUDACC__)
  transmamba::emu::commit_async();
#endif
}
template <int kPending>
__device__ inline void wait_copies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#elif !defined(__CUDACC__)
  transmamba::emu::wait_async(kPending);
#endif
}

// tile[r·ld + c] = src[r·row + c] for r < rows, c < cols, and 0 in the rest of the tile_rows x tile_cols tile.
template <int kThreads>
__device__ void stage_bf16_tile(bf16* tile, int ld, int tile_rows, int tile_cols, const Bf16* src, std::int64_t row,
                                int rows, int cols) {
  if (stage_by_8(tile_cols, ld, cols, row, src))
    stage_tile<kThreads, 8>(
        tile_rows, tile_cols, rows, cols, [&](int r, int c) { return *reinterpret_cast<const Bf16x8*>(src + r * row + c); },
        [&](int r, int c, const Bf16x8& v) { *reinterpret_cast<Bf16x8*>(tile + r * ld + c) = v; });
  else
    stage_tile<kThreads, 1>(
        tile_rows, tile_cols, rows, cols, [&](int r, int c) { return src[r * row + c].bits; },
        [&](int r, int c, std::uint16_t v) { tile[r * ld + c] = __ushort_as_bfloat16(v); });
}

// As stage_bf16_tile, with the 16-byte chunks of src (where stage_by_8 allows them) copied by cp.async: they
// land after the calling thread's commit_copies and wait_copies (the zeros and the value-by-value path, stored
// at once, need only the barrier).
template <int kThreads>
__device__ void stage_bf16_tile_async(bf16* tile, int ld, int tile_rows, int tile_cols, const Bf16* src, std::int64_t row,
                                      int rows, int cols) {
  if (!stage_by_8(tile_cols, ld, cols, row, src))
    return stage_bf16_tile<kThreads>(tile, ld, tile_rows, tile_cols, src, row, rows, cols);
  const int chunks = tile_cols / 8;
  for (int i = int(threadIdx.x); i < tile_rows * chunks && int(threadIdx.x) < kThreads; i += kThreads) {
    const int r = i / chunks, c = i % chunks * 8;
    if (r < rows && c < cols)
      copy_16_async(tile + r * ld + c, src + r * row + c);
    else
      *reinterpret_cast<Bf16x8*>(tile + r * ld + c) = Bf16x8{};
  }
}

// The fp32 values v[r, c] = scale[r]·src[r·row + c] (scale null: 1) for r < rows, c < cols, 0 in the rest of the
// tile, as two bf16 tiles hi and lo (split_bf16; the same row stride ld).
template <int kThreads, class T>
__device__ void stage_split_tile(bf16* hi, bf16* lo, int ld, int tile_rows, int tile_cols, const T* src, std::int64_t row,
                                 int rows, int cols, const float* scale = nullptr) {
  auto scaled = [&](int r, float v) { return scale ? scale[r] * v : v; };
  if (stage_by_8(tile_cols, ld, cols, row, src))
    stage_tile<kThreads, 8>(
        tile_rows, tile_cols, rows, cols,
        [&](int r, int c) {
          Float8 f = load_8(src + r * row + c);
          for (int j = 0; j < 8; ++j) f.v[j] = scaled(r, f.v[j]);
          return f;
        },
        [&](int r, int c, const Float8& f) {
          Bf16x8 h, l;  // the 8 values' parts, packed as ldmatrix reads them
          for (int j = 0; j < 4; ++j) {
            bf16 h0, l0, h1, l1;
            split_bf16(f.v[2 * j], h0, l0);
            split_bf16(f.v[2 * j + 1], h1, l1);
            h.words[j] = mma_pack(h0, h1), l.words[j] = mma_pack(l0, l1);
          }
          *reinterpret_cast<Bf16x8*>(hi + r * ld + c) = h;
          *reinterpret_cast<Bf16x8*>(lo + r * ld + c) = l;
        });
  else
    stage_tile<kThreads, 1>(
        tile_rows, tile_cols, rows, cols, [&](int r, int c) { return scaled(r, to_float(src[r * row + c])); },
        [&](int r, int c, float v) { split_bf16(v, hi[r * ld + c], lo[r * ld + c]); });
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
