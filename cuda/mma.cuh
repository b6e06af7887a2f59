// One warp's tensor-core matrix multiply-accumulate (issue 11): D = A·B + C with A 16x16 and B 16x8 in bf16,
// C and D 16x8 in fp32: `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32` behind one wrapper,
// mma_m16n8k16(D, A, B, C), plus plain loads of the operand fragments from a tile and a store of D.
//
// The fragments, per lane (PTX ISA 9.0, section 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating
// point type", Figures 79, 81 and 83; docs.nvidia.com/cuda/parallel-thread-execution/#warp-level-matrix-fragment-mma-16816-float).
// With g = groupID = lane >> 2 and t = threadID_in_group = lane % 4:
//   A (16x16, row): 4 .b32 registers = a0..a7, two bf16 per register, the lower-numbered one in the low half;
//                   a0,a1 = A[g][2t, 2t+1]    a2,a3 = A[g+8][2t, 2t+1]
//                   a4,a5 = A[g][2t+8, 2t+9]  a6,a7 = A[g+8][2t+8, 2t+9]
//   B (16x8, col):  2 .b32 registers = b0..b3;  b0,b1 = B[2t, 2t+1][g]   b2,b3 = B[2t+8, 2t+9][g]
//   C, D (16x8):    4 floats c0..c3;            c0,c1 = C[g][2t, 2t+1]   c2,c3 = C[g+8][2t, 2t+1]
// mma_a_at, mma_b_at and mma_c_at below are these tables; everything else here is written in terms of them, so
// a wrong table would still be self-consistent under the emulation: tests/test_mma.cpp checks the tables entry
// by entry against the ISA's, and (its [cuda] case) the whole product against the hardware.
//
// Where it runs:
//   - a GPU of compute capability 8.0 or more (__CUDA_ARCH__ >= 800): the mma.sync instruction;
//   - the CPU emulation (and a GPU before sm_80): mma_m16n8k16_by_shuffles, the same product computed by the
//     warp's lanes: each lane gets the A and B values its four D elements need from the lanes that hold them
//     (32 full-warp __shfl_sync, the same for every lane), then sums in fp32 (order below).
// The two agree to fp32 rounding, not bitwise: the ISA does not specify the order or the rounding of the
// tensor core's internal sum. Products of two bf16 are exact in fp32, so the emulation's D = C + Σ_k A·B,
// added in order k = 0..15, is within 16·2^-24·(|C| + Σ_k |A||B|) of the exact value (to first order); a
// chain of K/16 calls over K, within K·2^-24·Σ_k |A||B|. Results that are exact in fp32 (small integers) are
// exact in both.
//
// Every lane of the warp must call the loads and mma_m16n8k16 together (no divergence), as on a GPU. Loads are
// element by element (mma_load: any layout, from bf16 tiles or, split into two bf16 parts, from fp32 ones) or,
// from bf16 tiles in shared memory whose rows are 16-byte aligned, by ldmatrix (mma_ldmatrix_*: one instruction
// per four 8x8 matrices; under the emulation the same data movement by shuffles of the lanes' row addresses).
#pragma once

#include <cstdint>

#include "cuda/device_math.hpp"
#include "cuda/portable.cuh"

namespace transmamba::gpu::TM_BACKEND_NS {

using bf16 = __nv_bfloat16;

struct MmaA {  // a0..a7: reg[j] holds a(2j) in its low 16 bits, a(2j+1) in its high 16 bits
  std::uint32_t reg[4];
};
struct MmaB {  // b0..b3, packed as MmaA
  std::uint32_t reg[2];
};
struct MmaC {  // c0..c3 (C or D); MmaC{} is zero
  float v[4];
};

// Where element i of lane's fragment sits in its matrix: the PTX ISA's tables above.
struct MmaAt {
  int row, col;
};
TM_HD constexpr MmaAt mma_a_at(int lane, int i) { return {lane / 4 + 8 * (i / 2 % 2), lane % 4 * 2 + i % 2 + 8 * (i / 4)}; }
TM_HD constexpr MmaAt mma_b_at(int lane, int i) { return {lane % 4 * 2 + i % 2 + 8 * (i / 2), lane / 4}; }
TM_HD constexpr MmaAt mma_c_at(int lane, int i) { return {lane / 4 + 8 * (i / 2), lane % 4 * 2 + i % 2}; }

// The calling thread's lane: warps are consecutive runs of 32 in the block's linear thread order.
__device__ inline int mma_lane() { return int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32; }

__device__ inline std::uint32_t mma_pack(bf16 low, bf16 high) {
  return std::uint32_t(__bfloat16_as_ushort(low)) | std::uint32_t(__bfloat16_as_ushort(high)) << 16;
}
__device__ inline float mma_unpack(std::uint32_t reg, int half) {
  return __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(reg >> (16 * half))));
}

// Packs the kRegs registers of a bf16 fragment whose element i sits at at(lane, i) of a matrix M stored as
// M[row][col] = tile[row·row_step + col·col_step].
template <int kRegs>
__device__ void mma_load(std::uint32_t (&reg)[kRegs], const bf16* tile, int row_step, int col_step, MmaAt (*at)(int, int)) {
  const int lane = mma_lane();
  for (int j = 0; j < kRegs; ++j) {
    const MmaAt lo = at(lane, 2 * j), hi = at(lane, 2 * j + 1);
    reg[j] = mma_pack(tile[lo.row * row_step + lo.col * col_step], tile[hi.row * row_step + hi.col * col_step]);
  }
}

// A from a row-major tile: A[r][k] = tile[r·ld + k].
__device__ inline MmaA mma_load_a(const bf16* tile, int ld) {
  MmaA a;
  mma_load(a.reg, tile, ld, 1, mma_a_at);
  return a;
}

// B from a column-major tile (the instruction's ".col"): B[k][n] = tile[n·ld + k], i.e. tile holds Bᵀ row-major
// (for S = Q·Kᵀ, the rows of K).
__device__ inline MmaB mma_load_b(const bf16* tile, int ld) {
  MmaB b;
  mma_load(b.reg, tile, 1, ld, mma_b_at);
  return b;
}

// An fp32 value as two bf16, hi = bf16(v) (exact where v is a bf16 value already) and lo = bf16(v - hi), what hi
// left: a product over both parts carries v to 2^-16 relative (16 bits of its 24).
__device__ inline void split_bf16(float v, bf16& hi, bf16& lo) {
  hi = __float2bfloat16_rn(v);
  lo = __float2bfloat16_rn(v - __bfloat162float(hi));
}

// A fragment of an fp32 matrix M[row][col] = src[row·row_step + col·col_step] (at: mma_a_at or mma_b_at) as the
// hi parts of split_bf16, and, where lo is not null (kRegs registers), the lo parts: each value read once.
template <int kRegs>
__device__ void mma_load_fp32(std::uint32_t (&hi)[kRegs], std::uint32_t* lo, const float* src, int row_step, int col_step,
                              MmaAt (*at)(int, int)) {
  const int lane = mma_lane();
  for (int j = 0; j < kRegs; ++j) {
    const MmaAt e0 = at(lane, 2 * j), e1 = at(lane, 2 * j + 1);
    bf16 hi0, lo0, hi1, lo1;
    split_bf16(src[e0.row * row_step + e0.col * col_step], hi0, lo0);
    split_bf16(src[e1.row * row_step + e1.col * col_step], hi1, lo1);
    hi[j] = mma_pack(hi0, hi1);
    if (lo) lo[j] = mma_pack(lo0, lo1);
  }
}

// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 (PTX ISA 9.0, section 9.7.14.5.15 "ldmatrix"): four 8x8
// matrices of 16-bit values. Lane 8i + r passes the address of row r of matrix i (8 values, 16 bytes, 16-byte
// aligned, in shared memory); lane l receives in reg[i] the values of matrix i at row l/4, columns 2(l%4) and
// 2(l%4) + 1 (the first in the low half), or with kTrans those of the transposed matrix: rows 2(l%4) and
// 2(l%4) + 1 of column l/4. The emulation fetches each value from the row address of the lane that passed it.
template <bool kTrans>
__device__ inline void ldmatrix_x4(std::uint32_t (&reg)[4], const bf16* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row));
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(reg[0]), "=r"(reg[1]), "=r"(reg[2]), "=r"(reg[3])
                 : "r"(address));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(reg[0]), "=r"(reg[1]), "=r"(reg[2]), "=r"(reg[3])
                 : "r"(address));
#else
  const auto address = static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(row));
#ifndef __CUDACC__
  if (address % 16 != 0) transmamba::emu::trap("ldmatrix: a row address is not 16-byte aligned");
#endif
  const int lane = mma_lane();
  for (int i = 0; i < 4; ++i) {
    bf16 v[2];
    for (int h = 0; h < 2; ++h) {
      const int r = kTrans ? 2 * (lane % 4) + h : lane / 4, c = kTrans ? lane / 4 : 2 * (lane % 4) + h;
      v[h] = reinterpret_cast<const bf16*>(static_cast<std::uintptr_t>(__shfl_sync(0xffffffffu, address, 8 * i + r)))[c];
    }
    reg[i] = mma_pack(v[0], v[1]);
  }
#endif
}

// The fragments by ldmatrix (the same registers as mma_load_a, mma_load_b, mma_load(.., mma_a_at / mma_b_at)):
// A (16x16) from a row-major tile, A[r][k] = tile[r·ld + k]: matrices (rows 0-7, 8-15) x (columns 0-7, 8-15)
// in the order of a0a1, a2a3, a4a5, a6a7.
__device__ inline MmaA mma_ldmatrix_a(const bf16* tile, int ld) {
  const int lane = mma_lane(), i = lane / 8, r = lane % 8;
  MmaA a;
  ldmatrix_x4<false>(a.reg, tile + (r + 8 * (i % 2)) * ld + 8 * (i / 2));
  return a;
}
// A (16x16) from a tile holding Aᵀ row-major, A[r][k] = tile[k·ld + r] (e.g. xᵀ for a sum over x's rows), by
// the transposing load; matrix i: rows k 8(i/2).., columns r 8(i%2)...
__device__ inline MmaA mma_ldmatrix_a_trans(const bf16* tile, int ld) {
  const int lane = mma_lane(), i = lane / 8, r = lane % 8;
  MmaA a;
  ldmatrix_x4<true>(a.reg, tile + (r + 8 * (i / 2)) * ld + 8 * (i % 2));
  return a;
}
// B of two n8 tiles, b[0] for n = 0..7 and b[1] for n = 8..15, k = 0..15, from a tile holding Bᵀ row-major
// (mma_load_b's layout: B[k][n] = tile[n·ld + k], e.g. the rows of K for S = Q·Kᵀ); matrix i: rows n 8(i/2)..,
// columns k 8(i%2)...
__device__ inline void mma_ldmatrix_b2(MmaB (&b)[2], const bf16* tile, int ld) {
  const int lane = mma_lane(), i = lane / 8, r = lane % 8;
  std::uint32_t reg[4];
  ldmatrix_x4<false>(reg, tile + (r + 8 * (i / 2)) * ld + 8 * (i % 2));
  b[0] = MmaB{{reg[0], reg[1]}}, b[1] = MmaB{{reg[2], reg[3]}};
}
// The same two n8 tiles from a row-major B, B[k][n] = tile[k·ld + n] (e.g. the values V for O = P·V), by the
// transposing load; matrix i: rows k 8(i%2).., columns n 8(i/2)...
__device__ inline void mma_ldmatrix_b2_trans(MmaB (&b)[2], const bf16* tile, int ld) {
  const int lane = mma_lane(), i = lane / 8, r = lane % 8;
  std::uint32_t reg[4];
  ldmatrix_x4<true>(reg, tile + (r + 8 * (i % 2)) * ld + 8 * (i / 2));
  b[0] = MmaB{{reg[0], reg[1]}}, b[1] = MmaB{{reg[2], reg[3]}};
}

// The A operand (16 x 16) of a product X·B whose X is held as C fragments (a previous product's result):
// left for X's columns 0..7, right for 8..15. By the tables, a lane's a0,a1 = left c0,c1; a2,a3 = left c2,c3;
// a4,a5 = right c0,c1; a6,a7 = right c2,c3 (the same rows, columns 2t, 2t+1 and 8 + 2t, 8 + 2t+1), so no value
// moves between lanes. hi: the values rounded to bf16; where lo is not null, what they left (split_bf16).
__device__ inline void mma_a_from_c(const MmaC& left, const MmaC& right, MmaA& hi, MmaA* lo) {
  const float* v[2] = {left.v, right.v};
  for (int j = 0; j < 4; ++j) {
    bf16 h0, l0, h1, l1;
    split_bf16(v[j / 2][2 * (j % 2)], h0, l0);
    split_bf16(v[j / 2][2 * (j % 2) + 1], h1, l1);
    hi.reg[j] = mma_pack(h0, h1);
    if (lo) lo->reg[j] = mma_pack(l0, l1);
  }
}

// D into a row-major fp32 tile: out[r·ld + n] = D[r][n].
__device__ inline void mma_store_c(const MmaC& d, float* out, int ld) {
  const int lane = mma_lane();
  for (int i = 0; i < 4; ++i) {
    const MmaAt at = mma_c_at(lane, i);
    out[at.row * ld + at.col] = d.v[i];
  }
}

// D = A·B + C without tensor cores. Lane (g, t) computes D[r][n] for r in {g, g+8}, n in {2t, 2t+1}: it needs
// rows g and g+8 of A, which lanes 4g..4g+3 hold between them, and columns 2t and 2t+1 of B, held by lanes
// 4n..4n+3. Sum: acc = C[r][n], then acc += A[r][k]·B[k][n] for k = 0, 1, ..., 15 (each product exact).
__device__ inline void mma_m16n8k16_by_shuffles(MmaC& d, const MmaA& a, const MmaB& b, const MmaC& c) {
  constexpr unsigned kWarp = 0xffffffffu;
  const int lane = mma_lane(), quad = lane & ~3;
  float a_rows[2][16], b_cols[2][16];  // A[g + 8·h][k]; B[k][2t + n]
  for (int q = 0; q < 4; ++q)
    for (int j = 0; j < 4; ++j) {
      const std::uint32_t reg = __shfl_sync(kWarp, a.reg[j], quad + q);
      for (int h = 0; h < 2; ++h) {
        const MmaAt at = mma_a_at(quad + q, 2 * j + h);
        a_rows[at.row / 8][at.col] = mma_unpack(reg, h);
      }
    }
  for (int n = 0; n < 2; ++n)
    for (int q = 0; q < 4; ++q)
      for (int j = 0; j < 2; ++j) {
        const int from = 4 * (lane % 4 * 2 + n) + q;
        const std::uint32_t reg = __shfl_sync(kWarp, b.reg[j], from);
        for (int h = 0; h < 2; ++h) b_cols[n][mma_b_at(from, 2 * j + h).row] = mma_unpack(reg, h);
      }
  MmaC out;
  for (int i = 0; i < 4; ++i) {
    const MmaAt at = mma_c_at(lane, i);
    float acc = c.v[i];
    for (int k = 0; k < 16; ++k) acc += a_rows[at.row / 8][k] * b_cols[at.col % 2][k];
    out.v[i] = acc;
  }
  d = out;
}

// D = A·B + C (d may be c). All 32 lanes of the warp call it together.
__device__ inline void mma_m16n8k16(MmaC& d, const MmaA& a, const MmaB& b, const MmaC& c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};\n"
      : "=f"(d.v[0]), "=f"(d.v[1]), "=f"(d.v[2]), "=f"(d.v[3])
      : "r"(a.reg[0]), "r"(a.reg[1]), "r"(a.reg[2]), "r"(a.reg[3]), "r"(b.reg[0]), "r"(b.reg[1]), "f"(c.v[0]),
        "f"(c.v[1]), "f"(c.v[2]), "f"(c.v[3]));
#else
  mma_m16n8k16_by_shuffles(d, a, b, c);
#endif
}

}  // namespace transmamba::gpu::TM_BACKEND_NS
