// Pieces shared by the SM80 (mma.sync) and SM90 (wgmma) grouped GEMM kernels: the kernel
// parameters, the K-block cursor of the hybrid scheme, the tile -> (expert, rows, columns) decode,
// cp.async helpers and the output conversion.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cute/arch/util.hpp>

#include <cstdint>

#include "int8_hybrid_moe/common.h"
#include "kernels/gemm/group_tiles.cuh"
#include "kernels/gemm/register_ops.cuh"

namespace int8_hybrid_moe::gemm {

enum class Scheme : int { kPerToken = 0, kHybrid = 1 };

struct GroupedGemmParams {
  const int8_t* A;                // [R, K]
  const int8_t* B;                // [E, N, K]
  void* C;                        // [R, N]
  const int64_t* expert_offsets;  // [E + 1]
  const int* tile_offsets;        // [E + 1] from compute_group_tile_offsets
  int64_t R, N, K;
  int num_experts;
  int n_tiles;
  // kPerToken
  const float* scale_a;  // [R] or [1]
  const float* scale_b;  // [E, N] or [E]
  bool scale_a_per_row, scale_b_per_channel;
  // kHybrid
  const int32_t* QA;  // [R, nb]
  const int32_t* QB;  // [E, N, nb]
  const float* FA;    // [R, ng]
  const float* FB;    // [E, N, ng]
  int nb, ng;
  int k_tiles_per_block;  // block_size / BK
  int blocks_per_group;   // S
  int flush_period;       // int32_blocks_per_flush(fmt), 0 = fp32 per block
};

namespace detail {

__device__ __forceinline__ void cp_async_16_zfill(uint32_t s, const void* gmem, bool pred) {
  const int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_4_zfill(void* smem, const void* gmem, bool pred) {
  const uint32_t s = cute::cast_smem_ptr_to_uint(smem);
  const int n = pred ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

template <typename Out>
__device__ __forceinline__ Out to_out(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 to_out<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half to_out<__half>(float v) {
  return __float2half_rn(v);
}
template <typename Out>
struct Pair;
template <>
struct Pair<__nv_bfloat16> {
  using type = __nv_bfloat162;
};
template <>
struct Pair<__half> {
  using type = __half2;
};

// Two output values rounded once and packed as they lie in memory (x at the lower address).
template <typename Out>
__device__ __forceinline__ uint32_t pack_out2(float x, float y) {
  typename Pair<Out>::type pair;
  pair.x = to_out<Out>(x);
  pair.y = to_out<Out>(y);
  uint32_t bits;
  memcpy(&bits, &pair, sizeof(bits));
  return bits;
}

}  // namespace detail

// Launcher side: sets p.n_tiles for a tile of block_n columns and returns the number of output
// tiles (max_m_tiles M-tiles times n_tiles), checked to fit the kernels' int tile index.
inline int64_t count_output_tiles(GroupedGemmParams& p, int block_n, int64_t max_m_tiles) {
  p.n_tiles = static_cast<int>((p.N + block_n - 1) / block_n);
  const int64_t tiles = max_m_tiles * p.n_tiles;
  I8H_CHECK_ARG(tiles <= 0x7fffffff, "int8_grouped_gemm", "R * N", "small enough for 2^31 tiles",
                tiles);
  return tiles;
}

// Position of a K-block inside its super group and int32 chunk, advanced block by block so the
// main loop needs no integer division.
struct BlockCursor {
  int b = 0;         // K-block index
  int g = 0;         // super group of b
  int in_group = 0;  // b's index inside its group
  int in_chunk = 0;  // blocks already summed in int32 since the last flush
  // Does block b end an int32 chunk (flush into fp32)? Chunks restart at each super group so
  // every flushed sum shares one FA*FB; flush_period == 0 flushes (in fp32) every block.
  __device__ __forceinline__ bool flush(const GroupedGemmParams& p) const {
    return p.flush_period == 0 || in_chunk + 1 == p.flush_period ||
           in_group + 1 == p.blocks_per_group || b + 1 == p.nb;
  }
  __device__ __forceinline__ void next(const GroupedGemmParams& p) {
    const bool f = flush(p);
    ++b;
    if (in_group + 1 == p.blocks_per_group) {
      in_group = 0;
      ++g;
      in_chunk = 0;
    } else {
      ++in_group;
      in_chunk = f ? 0 : in_chunk + 1;
    }
  }
};

// One output tile of the grouped problem: M-tile `m_tile` (counted over all experts, see
// group_tiles.cuh) times N-tile `n_tile`. Rows past the expert's end and columns past N are
// computed on padding and never stored.
struct TileCoord {
  int expert;      // -1: past the last real M-tile, nothing to do
  int64_t row0;    // first row of the tile in A and C
  int rows_valid;  // rows of the tile that belong to `expert`
  int64_t n0;      // first output channel
  int cols_valid;  // channels of the tile below N
};
// `tile_offsets` is p.tile_offsets or a copy of it (the SM90 kernel keeps one in shared memory).
__device__ __forceinline__ TileCoord decode_tile(const GroupedGemmParams& p,
                                                 const int* tile_offsets, int m_tile, int n_tile,
                                                 int block_m, int block_n) {
  TileCoord c;
  c.expert = find_tile_expert(tile_offsets, p.num_experts, m_tile);
  if (c.expert < 0) return c;
  const int64_t expert_row0 = clamped_offset(p.expert_offsets, c.expert, p.R);
  const int64_t expert_row1 = clamped_offset(p.expert_offsets, c.expert + 1, p.R);
  c.row0 = expert_row0 + int64_t(m_tile - tile_offsets[c.expert]) * block_m;
  const int64_t rows_left = expert_row1 - c.row0, cols_left = p.N - int64_t(n_tile) * block_n;
  c.rows_valid = static_cast<int>(rows_left < block_m ? rows_left : block_m);
  c.n0 = int64_t(n_tile) * block_n;
  c.cols_valid = static_cast<int>(cols_left < block_n ? cols_left : block_n);
  return c;
}

}  // namespace int8_hybrid_moe::gemm
