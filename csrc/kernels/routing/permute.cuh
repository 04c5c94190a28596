// Permute step of the MoE layer: sort keys (local expert id, E_local = dropped) of every
// (token, slot), then expert offsets, the inverse map and the optional activation gather
// (internal). The sort itself is CUB's radix sort, called by the launcher.
#pragma once

#include <cstdint>

#include "kernels/activation/packed16.cuh"

namespace int8_hybrid_moe::kernels {

// keys[i] = local expert of flat slot i (E_local when dropped), vals[i] = i. Ids outside [0, E)
// are dropped and counted into *invalid_ids (when given). Map entries outside [0, E_local) drop.
__global__ void permute_keys_kernel(const int32_t* __restrict__ topk_ids,
                                    const int32_t* __restrict__ expert_map, int n, int E,
                                    int E_local, uint32_t* __restrict__ keys,
                                    int32_t* __restrict__ vals, int32_t* __restrict__ invalid_ids) {
  int invalid = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t id = topk_ids[i];
    uint32_t key = static_cast<uint32_t>(E_local);
    if (id < 0 || id >= E) {
      ++invalid;
    } else {
      const int32_t local = expert_map != nullptr ? expert_map[id] : id;
      if (local >= 0 && local < E_local) key = static_cast<uint32_t>(local);
    }
    keys[i] = key;
    vals[i] = static_cast<int32_t>(i);
  }
  // Every thread leaves the loop before this full-warp reduction (no early exits above).
  invalid = __reduce_add_sync(0xffffffffu, invalid);
  if (invalid_ids != nullptr && (threadIdx.x & 31) == 0 && invalid != 0)
    atomicAdd(invalid_ids, invalid);
}

// First index of sorted `keys[0, n)` whose key is >= e.
__device__ __forceinline__ int lower_bound_key(const uint32_t* keys, int n, uint32_t e) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (keys[mid] < e) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// expert_offsets (threads 0..E_local of the grid), token_slot_to_permuted and, with kGather,
// permuted_hidden rows of kept slots: one warp per permuted row, VEC elements per access.
template <bool kGather, int VEC>
__global__ void permute_finalize_kernel(const uint32_t* __restrict__ sorted_keys,
                                        const int32_t* __restrict__ sorted_vals, int n, int top_k,
                                        int E_local, int64_t* __restrict__ expert_offsets,
                                        int32_t* __restrict__ token_slot_to_permuted,
                                        const uint16_t* __restrict__ hidden,
                                        uint16_t* __restrict__ permuted_hidden, int64_t K) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tid <= E_local)
    expert_offsets[tid] = lower_bound_key(sorted_keys, n, static_cast<uint32_t>(tid));

  if constexpr (!kGather) {
    for (int64_t r = tid; r < n; r += int64_t(gridDim.x) * blockDim.x) {
      const bool kept = sorted_keys[r] < static_cast<uint32_t>(E_local);
      token_slot_to_permuted[sorted_vals[r]] = kept ? static_cast<int32_t>(r) : -1;
    }
  } else {
    const int lane = threadIdx.x & 31;
    const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
    const int64_t groups = K / VEC;
    for (int64_t r = tid / 32; r < n; r += warps) {
      const int32_t slot = sorted_vals[r];
      const bool kept = sorted_keys[r] < static_cast<uint32_t>(E_local);
      if (lane == 0) token_slot_to_permuted[slot] = kept ? static_cast<int32_t>(r) : -1;
      if (!kept) continue;  // rows of dropped slots are not written
      const uint16_t* src = hidden + int64_t(slot / top_k) * K;
      uint16_t* dst = permuted_hidden + r * K;
      for (int64_t g = lane; g < groups; g += 32) {
        Packed16<VEC> x;
        x.load(src + g * VEC);
        x.store(dst + g * VEC);
      }
    }
  }
}

}  // namespace int8_hybrid_moe::kernels
