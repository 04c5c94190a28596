// Device-side grouped tile scheduling: per-expert M-tile prefix sums computed from expert_offsets
// on the device, so the grouped GEMMs need no host round-trip (CUDA-graph capturable).
#pragma once

#include <cub/block/block_scan.cuh>

#include <cstdint>

namespace int8_hybrid_moe::gemm {

// Rows of expert e, with the offsets clamped into [0, R] and made monotone, so malformed offsets
// can never send a tile outside A or C (they are asserted in debug builds).
__device__ __forceinline__ int64_t clamped_offset(const int64_t* offsets, int e, int64_t R) {
  int64_t v = offsets[e];
  return v < 0 ? 0 : (v > R ? R : v);
}

// tile_offsets[e] = sum_{e' < e} ceil(rows(e') / block_m), tile_offsets[E] = total M-tiles.
// One block of kThreads threads; experts are scanned in chunks of kThreads.
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    compute_group_tile_offsets(const int64_t* __restrict__ expert_offsets, int num_experts,
                               int64_t R, int block_m, int* __restrict__ tile_offsets) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage temp;
  __shared__ int carry;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (int base = 0; base < num_experts; base += kThreads) {
    const int e = base + static_cast<int>(threadIdx.x);
    int tiles = 0;
    if (e < num_experts) {
      const int64_t lo = clamped_offset(expert_offsets, e, R);
      const int64_t hi = clamped_offset(expert_offsets, e + 1, R);
#ifndef NDEBUG
      assert(expert_offsets[e] <= expert_offsets[e + 1] && expert_offsets[e + 1] <= R &&
             expert_offsets[0] >= 0);
#endif
      const int64_t rows = hi > lo ? hi - lo : 0;
      tiles = static_cast<int>((rows + block_m - 1) / block_m);
    }
    int prefix = 0, total = 0;
    Scan(temp).ExclusiveSum(tiles, prefix, total);
    if (e < num_experts) tile_offsets[e] = carry + prefix;
    __syncthreads();  // every thread has read `carry` and the scan storage is free again
    if (threadIdx.x == 0) carry += total;
    __syncthreads();
  }
  if (threadIdx.x == 0) tile_offsets[num_experts] = carry;
}

// Finds the expert owning global M-tile `tile` (tile_offsets[e] <= tile < tile_offsets[e+1]).
// Returns -1 when tile is past the last real tile (the CTA then has nothing to do).
__device__ __forceinline__ int find_tile_expert(const int* tile_offsets, int num_experts,
                                                int tile) {
  if (tile >= tile_offsets[num_experts]) return -1;
  int lo = 0, hi = num_experts;  // invariant: tile_offsets[lo] <= tile < tile_offsets[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (tile_offsets[mid] <= tile)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

}  // namespace int8_hybrid_moe::gemm
