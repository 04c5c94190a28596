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

#include "int8_hybrid_moe/format.h"
#include "kernels/activation/packed16.cuh"
#include "kernels/activation/silu.cuh"
#include "kernels/quantization/exact_div.cuh"

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
  // Warp-per-row kernel only (spans in 8-element vectors, see quantize_rows_warp_kernel).
  int blk_shift = 30;  // log2 of a block's vectors; 30 when one block covers the row
  int grp_shift = 30;  // log2 of a super group's vectors; 30 when one group covers the row
  int blk_lane_bits = 0, blk_vec_bits = 0;
  int grp_lane_bits = 0, grp_vec_bits = 0;
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
    v[0] = silu_mul_vec<T>(load16B(src), load16B(src + p.up_offset));
    v[1] = silu_mul_vec<T>(load16B(src + 8), load16B(src + p.up_offset + 8));
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

// ---------------------------------------------------------------------------------------------
// Warp-per-row kernel (K <= 4096 with power-of-two block / group spans; the launcher picks it).
//
// Each warp owns one row at a time and grid-strides over rows on its own: no shared memory and
// no __syncthreads, so the warps of an SM drift apart and the loads of some rows overlap the
// arithmetic of others. A row is cut into 8-element vectors (16 bytes); lane l holds vectors
// l, l + 32, ... (VPT of them): every warp load is 512 contiguous bytes.
//   1. load the vectors; max |x| per vector as a 16-bit magnitude (bf16 / fp16 bit patterns
//      order like their values, NaN / Inf above every finite value), two vectors per register;
//   2. block and group maxima: a span of vectors is a power of two <= 32 lanes (xor shuffles
//      over lane_bits), or whole lanes times a power of two of a lane's vectors (vec_bits), or
//      the whole row; packed 16x2 max (one instruction on sm_90);
//   3. per vector: F, Q, s exactly as docs/FORMAT.md (computed redundantly by the lanes of a
//      block, cheaper than exchanging them); leaders store Q and F;
//   4. q = rint(x / s): with a normal-range scale, one reciprocal per vector and three FMA-pipe
//      instructions per element (exact_div.cuh) and the 1.5 * 2^23 rounding; otherwise (subnormal
//      or huge scales, non-finite groups) the reference expression.
// ---------------------------------------------------------------------------------------------

// |v| as 16-bit magnitudes: max over the 8 elements of a vector, in both halves' max form.
__device__ __forceinline__ uint32_t vec_absmax2(const uint4& v) {
  const uint32_t m = 0x7fff7fffu;
  return __vmaxu2(__vmaxu2(v.x & m, v.y & m), __vmaxu2(v.z & m, v.w & m));
}

// 16-bit magnitude -> fp32 bit pattern of the same value (Inf / NaN stay >= kAbsInfBits).
template <DType T>
__device__ __forceinline__ uint32_t mag16_to_f32_bits(uint32_t h) {
  return __float_as_uint(bits_to_float<T>(h & 0xffffu));
}

// Max over spans of vectors, on pairs (vector 2i in the low half of m[i], 2i + 1 in the high
// half). Steps below (lane_from, vec_from) are assumed done already.
template <int NP>
__device__ __forceinline__ void span_max(uint32_t (&m)[NP], int lane_from, int lane_bits,
                                         int vec_from, int vec_bits) {
#pragma unroll
  for (int k = 0; k < 5; ++k) {
    if (k >= lane_from && k < lane_bits) {
#pragma unroll
      for (int i = 0; i < NP; ++i)
        m[i] = __vmaxu2(m[i], __shfl_xor_sync(0xffffffffu, m[i], 1 << k));
    }
  }
  if (vec_from < 1 && vec_bits >= 1) {  // vectors 2i and 2i + 1: the two halves
#pragma unroll
    for (int i = 0; i < NP; ++i) m[i] = __vmaxu2(m[i], __byte_perm(m[i], 0, 0x1032));
  }
#pragma unroll
  for (int k = 1; k < NP; k <<= 1) {    // pairs i and i ^ k: vectors 2i.. and 2(i ^ k)..
    const int bit = 31 - __clz(k) + 1;  // vector-index bit of this step
    if (bit >= vec_from && bit < vec_bits) {
#pragma unroll
      for (int i = 0; i < NP; ++i) {
        if ((i & k) == 0) {
          const uint32_t a = __vmaxu2(m[i], m[i | k]);
          m[i] = a;
          m[i | k] = a;
        }
      }
    }
  }
}

// Vector c (8 elements) of source row `row` as raw dtype words; the SiLU source forms the
// rounded product exactly as silu_and_mul_kernel stores it.
template <DType T, bool kSilu>
__device__ __forceinline__ uint4 load_vec(const RowQuantParams& p, int64_t row, int c) {
  const uint16_t* src = p.x + row * p.x_row_stride + int64_t(c) * 8;
  if constexpr (!kSilu) {
    return load16B(src);
  } else {
    return silu_mul_vec<T>(load16B(src), load16B(src + p.up_offset));
  }
}

// Hybrid scales of one block from its group's and its own max |x| bits (docs/FORMAT.md 2, 3).
struct BlockScale {
  float F, s;
  int Q;
};
__device__ __forceinline__ BlockScale hybrid_scale(uint32_t gbits, uint32_t abits, int q_max) {
  BlockScale r;
  if (gbits >= kAbsInfBits) {  // NaN or Inf in the super group
    r.F = __uint_as_float(kQuietNaNBits);
    r.Q = q_max;
    r.s = r.F;
  } else {
    const float gmax = __uint_as_float(gbits);
    const float amax = __uint_as_float(abits);
    r.F = (gmax == 0.0f) ? 1.0f : __fdiv_rn(gmax, float(kInt8Max * q_max));
    const float t = __fmul_rn(127.0f, r.F);
    r.Q = int(fminf(float(q_max), fmaxf(1.0f, ceilf(__fdiv_rn(amax, t)))));
    r.s = __fmul_rn(float(r.Q), r.F);
  }
  return r;
}

// Quantizes the 8 elements of v with scale s into 8 int8 (two words).
// y = RN(1 / s) when scale_is_fast(s) (unused otherwise).
template <DType T>
__device__ __forceinline__ uint2 quantize_vec(const uint4& v, float s, float y) {
  uint2 out;
  if (scale_is_fast(s)) {
    uint32_t b[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) b[e] = rint_bits(div_by_scale(bits_to_float<T>(get16(v, e)), s, y));
    out.x = pack_low_bytes(b[0], b[1], b[2], b[3]);
    out.y = pack_low_bytes(b[4], b[5], b[6], b[7]);
  } else {
    const bool bad = isnan(s);  // only a non-finite group has a NaN scale
    uint32_t b[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) b[e] = quantize_elem(bits_to_float<T>(get16(v, e)), s, bad);
    out.x = b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24);
    out.y = b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24);
  }
  return out;
}

template <DType T, bool kSilu, bool kHybrid, int VPT>
__global__ void __launch_bounds__(kQuantThreads, VPT <= 4   ? 4
                                                 : VPT == 8 ? 3
                                                            : 2)
    quantize_rows_warp_kernel(const RowQuantParams p) {
  constexpr int NP = (VPT + 1) / 2;  // registers of packed vector maxima
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * (kQuantThreads / 32);
  int64_t rows = p.num_rows;
  if (p.num_valid_rows != nullptr) rows = max(int64_t(0), min(rows, *p.num_valid_rows));
  const int nvec = p.K / 8;

  for (int64_t row = (int64_t(blockIdx.x) * kQuantThreads + threadIdx.x) >> 5; row < rows;
       row += nwarps) {
    // Phase 1: load, per-vector max magnitude.
    uint4 v[VPT];
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      const int c = lane + 32 * j;
      v[j] = c < nvec ? load_vec<T, kSilu>(p, row, c) : make_uint4(0, 0, 0, 0);
    }
    uint32_t bm[NP];
#pragma unroll
    for (int i = 0; i < NP; ++i) {
      const uint32_t a = vec_absmax2(v[2 * i]);
      const uint32_t b = 2 * i + 1 < VPT ? vec_absmax2(v[2 * i + 1]) : 0u;
      bm[i] = __vmaxu2(__byte_perm(a, b, 0x5410), __byte_perm(a, b, 0x7632));
    }

    // Phase 2: block maxima, then group maxima from them (hybrid).
    span_max(bm, 0, p.blk_lane_bits, 0, p.blk_vec_bits);
    uint32_t gm[NP];
    if constexpr (kHybrid) {
#pragma unroll
      for (int i = 0; i < NP; ++i) gm[i] = bm[i];
      span_max(gm, p.blk_lane_bits, p.grp_lane_bits, p.blk_vec_bits, p.grp_vec_bits);
    }

    // Phase 3: scales. Per-token: one per row. Hybrid with at most 32 blocks per row: lane L
    // computes block L's F, Q, s and RN(1 / s) and stores Q / F (coalesced); the lanes fetch
    // their vectors' s and 1 / s by shuffles. More blocks: each lane computes its vectors'.
    float s_row = 0.0f, y_row = 0.0f;
    if constexpr (!kHybrid) {
      const uint32_t abits = mag16_to_f32_bits<T>(bm[0]);
      if (abits >= kAbsInfBits) {
        s_row = __uint_as_float(kQuietNaNBits);
      } else {
        const float a = __uint_as_float(abits);
        s_row = (a == 0.0f) ? 1.0f : __fdiv_rn(a, 127.0f);
      }
      y_row = scale_is_fast(s_row) ? __frcp_rn(s_row) : 0.0f;
      if (lane == 0) {
        for (int f = 0; f < p.fanout; ++f) {
          const int64_t d = dest_row(p, row, f);
          if (d >= 0) p.F[d] = s_row;
        }
      }
    } else if (p.nb <= 32) {
      const int first = min(lane, p.nb - 1) << p.blk_shift;  // first vector of block `lane`
      const int src_lane = first & 31, src_j = first >> 5;
      uint32_t a16 = 0, g16 = 0;
#pragma unroll
      for (int i = 0; i < NP; ++i) {
        const uint32_t ta = __shfl_sync(0xffffffffu, bm[i], src_lane);
        const uint32_t tg = __shfl_sync(0xffffffffu, gm[i], src_lane);
        if ((src_j >> 1) == i) {
          a16 = (src_j & 1) ? (ta >> 16) : ta;
          g16 = (src_j & 1) ? (tg >> 16) : tg;
        }
      }
      const BlockScale bs =
          hybrid_scale(mag16_to_f32_bits<T>(g16), mag16_to_f32_bits<T>(a16), p.q_max);
      s_row = bs.s;
      y_row = scale_is_fast(bs.s) ? __frcp_rn(bs.s) : 0.0f;
      if (lane < p.nb) {
        const bool f_lead = ((first >> p.grp_shift) << p.grp_shift) == first;
        for (int f = 0; f < p.fanout; ++f) {
          const int64_t d = dest_row(p, row, f);
          if (d < 0) continue;
          p.Q[d * p.nb + lane] = bs.Q;
          if (f_lead) p.F[d * p.ng + (first >> p.grp_shift)] = bs.F;
        }
      }
    }

    // Phase 4: quantize and store, vector by vector.
#pragma unroll
    for (int j = 0; j < VPT; ++j) {
      const int c = lane + 32 * j;
      float s, y;
      if constexpr (!kHybrid) {
        s = s_row;
        y = y_row;
      } else {
        if (p.nb <= 32) {
          const int b = c >> p.blk_shift;  // block of vector c (lanes past the row: clamped)
          s = __shfl_sync(0xffffffffu, s_row, min(b, 31));
          y = __shfl_sync(0xffffffffu, y_row, min(b, 31));
        } else {
          const uint32_t pa = bm[j / 2], pg = gm[j / 2];
          const BlockScale bs =
              hybrid_scale(mag16_to_f32_bits<T>((j & 1) ? (pg >> 16) : pg),
                           mag16_to_f32_bits<T>((j & 1) ? (pa >> 16) : pa), p.q_max);
          s = bs.s;
          y = scale_is_fast(s) ? __frcp_rn(s) : 0.0f;
          const bool q_lead = ((c >> p.blk_shift) << p.blk_shift) == c;
          const bool f_lead = ((c >> p.grp_shift) << p.grp_shift) == c;
          if (q_lead && c < nvec) {
            for (int f = 0; f < p.fanout; ++f) {
              const int64_t d = dest_row(p, row, f);
              if (d < 0) continue;
              p.Q[d * p.nb + (c >> p.blk_shift)] = bs.Q;
              if (f_lead) p.F[d * p.ng + (c >> p.grp_shift)] = bs.F;
            }
          }
        }
      }
      if (c >= nvec) continue;
      const uint2 out = quantize_vec<T>(v[j], s, y);
      if (p.dest_map == nullptr) {
        *reinterpret_cast<uint2*>(p.q + row * p.K + int64_t(c) * 8) = out;
      } else {
        for (int f = 0; f < p.fanout; ++f) {
          const int64_t d = dest_row(p, row, f);
          if (d >= 0) *reinterpret_cast<uint2*>(p.q + d * p.K + int64_t(c) * 8) = out;
        }
      }
    }
  }
}

}  // namespace int8_hybrid_moe::kernels
