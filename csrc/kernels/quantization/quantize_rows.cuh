// Row quantization to the hybrid blockwise format (q, Q, F) and to the per-token format
// (q, scale), plain, fused with the permute scatter, or fused with SiLU-and-mul (internal).
//
// One "team" of threads (a multiple of 32) owns one row at a time; a CTA of kQuantThreads holds
// kQuantThreads / team rows and grid-strides over rows. The row stays in registers (CPT chunks
// of 16 elements per thread), so global memory is read once and written once:
//   1. load the chunks, max |x| per chunk as fp32 bit patterns (NaN / Inf sort above every
//      finite value, so one unsigned max also detects non-finite blocks);
//   2. segmented warp max per K-block (and per super group), shared-memory atomicMax by the
//      first lane of each segment;
//   3. per block: F, Q and the scale s = Q * F (written to shared memory in place of amax);
//   4. per chunk: q = clamp(rint(x / s)), one 16-byte store per chunk and destination row.
// __launch_bounds__: min 4 CTAs/SM for CPT <= 2 (64 registers, no spills) for occupancy; min 2
// for CPT 4 / 8 (128 registers; ptxas spilled at its own 64-80 without a bound).
// The fp32 operation order is the one of docs/FORMAT.md, with _rn intrinsics so nothing is
// contracted or approximated.
#pragma once

#include <cstdint>

#include "kernels/activation/packed16.cuh"
#include "int8_hybrid_moe/format.h"
#include "kernels/activation/silu.cuh"

namespace int8_hybrid_moe::kernels {

constexpr int kQuantThreads = 256;
constexpr uint32_t kAbsInfBits = 0x7f800000u;  // |x| bit patterns >= this are Inf or NaN
constexpr uint32_t kQuietNaNBits = 0x7fc00000u;

struct RowQuantParams {
  const uint16_t* x = nullptr;
  int64_t x_row_stride = 0;  // elements between consecutive source rows
  int64_t up_offset = 0;     // SiLU source: elements from the gate half to the up half of a row
  int64_t num_rows = 0;      // source rows
  const int64_t* num_valid_rows = nullptr;
  int K = 0;                 // elements of a quantized row (multiple of 16)
  int team = 32;             // threads per row: 32, 64, 128 or 256
  int chunks_per_block = 1;  // B / 16 (hybrid); K / 16 (per-token: one block per row)
  int nb = 1, ng = 1, S = 1, q_max = 1;
  int8_t* q = nullptr;
  int32_t* Q = nullptr;               // hybrid only
  float* F = nullptr;                 // hybrid: [rows, ng]; per-token: the scale [rows]
  const int32_t* dest_map = nullptr;  // permute fusion: [num_rows * fanout] destination rows
  int fanout = 1;
};

// Max over runs of equal `seg` among consecutive lanes (runs are contiguous by construction):
// the first lane of each run ends up with the run's max. All 32 lanes must call it.
__device__ __forceinline__ uint32_t segmented_max(uint32_t v, int seg) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t ov = __shfl_down_sync(0xffffffffu, v, o);
    const int os = __shfl_down_sync(0xffffffffu, seg, o);
    if (lane + o < 32 && os == seg) v = max(v, ov);
  }
  return v;
}
__device__ __forceinline__ bool segment_leader(int seg) {
  const int prev = __shfl_up_sync(0xffffffffu, seg, 1);
  return (threadIdx.x & 31) == 0 || prev != seg;
}

// Destination row j of source row `row` (-1: skip).
__device__ __forceinline__ int64_t dest_row(const RowQuantParams& p, int64_t row, int j) {
  return p.dest_map != nullptr ? int64_t(p.dest_map[row * p.fanout + j]) : row;
}

// Chunk c (16 elements) of source row `row` as raw dtype words; the SiLU source forms the
// rounded product exactly as silu_and_mul_kernel stores it.
template <DType T, bool kSilu>
__device__ __forceinline__ void load_chunk(const RowQuantParams& p, int64_t row, int c,
                                           uint4 (&v)[2]) {
  const uint16_t* src = p.x + row * p.x_row_stride + int64_t(c) * 16;
  if constexpr (!kSilu) {
    v[0] = load16B(src);
    v[1] = load16B(src + 8);
  } else {
    const uint4 g0 = load16B(src), g1 = load16B(src + 8);
    const uint4 u0 = load16B(src + p.up_offset), u1 = load16B(src + p.up_offset + 8);
    uint32_t* w0 = reinterpret_cast<uint32_t*>(&v[0]);
    uint32_t* w1 = reinterpret_cast<uint32_t*>(&v[1]);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      w0[k] = pack16(silu_mul_bits<T>(get16(g0, 2 * k), get16(u0, 2 * k)),
                     silu_mul_bits<T>(get16(g0, 2 * k + 1), get16(u0, 2 * k + 1)));
      w1[k] = pack16(silu_mul_bits<T>(get16(g1, 2 * k), get16(u1, 2 * k)),
                     silu_mul_bits<T>(get16(g1, 2 * k + 1), get16(u1, 2 * k + 1)));
    }
  }
}

template <DType T>
__device__ __forceinline__ float chunk_elem(const uint4 (&v)[2], int e) {
  return bits_to_float<T>(get16(v[e >> 3], e & 7));
}

// q = int(fminf(127, fmaxf(-127, rintf(x / s)))); 0 for a non-finite group (s is NaN).
__device__ __forceinline__ uint32_t quantize_elem(float x, float s, bool bad) {
  const int qi = int(fminf(127.0f, fmaxf(-127.0f, rintf(__fdiv_rn(x, s)))));
  return bad ? 0u : (static_cast<uint32_t>(qi) & 0xffu);
}

template <DType T, bool kSilu, bool kHybrid, int CPT>
__global__ void __launch_bounds__(kQuantThreads, CPT <= 2 ? 4 : 2)
    quantize_rows_kernel(const RowQuantParams p) {
  extern __shared__ uint32_t smem[];
  const int team = threadIdx.x / p.team;
  const int lt = threadIdx.x % p.team;  // thread index within the team
  const int teams = kQuantThreads / p.team;
  // Per team: amax bits [nb] (overwritten with the scale bits in phase 3), group max bits [ng].
  uint32_t* s_amax = smem + team * (p.nb + p.ng);
  uint32_t* s_gmax = s_amax + p.nb;

  int64_t rows = p.num_rows;
  if (p.num_valid_rows != nullptr) rows = max(int64_t(0), min(rows, *p.num_valid_rows));
  const int nchunks = p.K / 16;

  // The loop bound is CTA-uniform, so every thread reaches every __syncthreads.
  for (int64_t base = int64_t(blockIdx.x) * teams; base < rows;
       base += int64_t(gridDim.x) * teams) {
    const int64_t row = base + team;
    const bool active = row < rows;

    // Phase 1: load the row, per-chunk max |x| as bits.
    uint4 v[CPT][2];
    uint32_t cmax[CPT];
#pragma unroll
    for (int i = 0; i < CPT; ++i) {
      const int c = lt + i * p.team;
      if (active && c < nchunks) {
        load_chunk<T, kSilu>(p, row, c, v[i]);
      } else {
        v[i][0] = v[i][1] = make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int i = 0; i < CPT; ++i) {
      uint32_t m = 0;
#pragma unroll
      for (int e = 0; e < 16; ++e)
        m = max(m, __float_as_uint(chunk_elem<T>(v[i], e)) & 0x7fffffffu);
      cmax[i] = m;
    }

    __syncthreads();  // previous row's phase 4 is done reading this team's shared memory
    for (int k = lt; k < p.nb + p.ng; k += p.team) s_amax[k] = 0;
    __syncthreads();

    // Phase 2: block and group maxima.
#pragma unroll
    for (int i = 0; i < CPT; ++i) {
      const int c = lt + i * p.team;
      const bool valid = active && c < nchunks;
      const int b = c / p.chunks_per_block;
      const uint32_t bm = segmented_max(cmax[i], b);
      if (segment_leader(b) && valid) atomicMax(&s_amax[b], bm);
      if constexpr (kHybrid) {
        const int g = b / p.S;
        const uint32_t gm = segmented_max(cmax[i], g);
        if (segment_leader(g) && valid) atomicMax(&s_gmax[g], gm);
      }
    }
    __syncthreads();

    // Phase 3: scales. Each block's thread reads and rewrites only its own s_amax entry.
    if (active) {
      for (int b = lt; b < p.nb; b += p.team) {
        const uint32_t abits = s_amax[b];
        float s;
        if constexpr (kHybrid) {
          const int g = b / p.S;
          const uint32_t gbits = s_gmax[g];
          float F;
          int Q;
          if (gbits >= kAbsInfBits) {  // NaN or Inf in the super group
            F = __uint_as_float(kQuietNaNBits);
            Q = p.q_max;
            s = F;
          } else {
            const float gmax = __uint_as_float(gbits);
            const float amax = __uint_as_float(abits);
            F = (gmax == 0.0f) ? 1.0f : __fdiv_rn(gmax, float(kInt8Max * p.q_max));
            const float t = __fmul_rn(127.0f, F);
            Q = int(fminf(float(p.q_max), fmaxf(1.0f, ceilf(__fdiv_rn(amax, t)))));
            s = __fmul_rn(float(Q), F);
          }
          for (int j = 0; j < p.fanout; ++j) {
            const int64_t d = dest_row(p, row, j);
            if (d < 0) continue;
            p.Q[d * p.nb + b] = Q;
            if (b % p.S == 0) p.F[d * p.ng + g] = F;
          }
        } else {
          if (abits >= kAbsInfBits) {
            s = __uint_as_float(kQuietNaNBits);
          } else {
            const float a = __uint_as_float(abits);
            s = (a == 0.0f) ? 1.0f : __fdiv_rn(a, 127.0f);
          }
          for (int j = 0; j < p.fanout; ++j) {
            const int64_t d = dest_row(p, row, j);
            if (d >= 0) p.F[d] = s;
          }
        }
        s_amax[b] = __float_as_uint(s);
      }
    }
    __syncthreads();

    // Phase 4: quantize and store.
    if (active) {
#pragma unroll
      for (int i = 0; i < CPT; ++i) {
        const int c = lt + i * p.team;
        if (c < nchunks) {
          const float s = __uint_as_float(s_amax[c / p.chunks_per_block]);
          const bool bad = isnan(s);  // only a non-finite group has a NaN scale
          uint4 out;
          uint32_t* w = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            w[k] = quantize_elem(chunk_elem<T>(v[i], 4 * k), s, bad) |
                   (quantize_elem(chunk_elem<T>(v[i], 4 * k + 1), s, bad) << 8) |
                   (quantize_elem(chunk_elem<T>(v[i], 4 * k + 2), s, bad) << 16) |
                   (quantize_elem(chunk_elem<T>(v[i], 4 * k + 3), s, bad) << 24);
          }
          for (int j = 0; j < p.fanout; ++j) {
            const int64_t d = dest_row(p, row, j);
            if (d >= 0) store16B(p.q + d * p.K + int64_t(c) * 16, out);
          }
        }
      }
    }
  }
}

}  // namespace int8_hybrid_moe::kernels
