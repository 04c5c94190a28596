// Reference routing: a stable counting sort of the (token, slot) pairs by local expert.
#include <cstdint>
#include <vector>

#include "int8_hybrid_moe/reference.h"

namespace int8_hybrid_moe::ref {

Routing permute(const int32_t* topk_ids, const int32_t* expert_map, int64_t M, int top_k,
                int num_experts, int num_local_experts) {
  constexpr const char* fn = "ref::permute";
  I8H_CHECK_ARG(M >= 0, fn, "M", ">= 0", M);
  I8H_CHECK_ARG(top_k >= 1, fn, "top_k", ">= 1", top_k);
  I8H_CHECK_ARG(num_experts >= 1, fn, "num_experts", ">= 1", num_experts);
  I8H_CHECK_ARG(num_local_experts >= 1, fn, "num_local_experts", ">= 1", num_local_experts);
  I8H_CHECK_ARG(expert_map != nullptr || num_local_experts == num_experts, fn, "num_local_experts",
                "equal to num_experts when expert_map is null", num_local_experts);
  I8H_CHECK_ARG(topk_ids != nullptr || M == 0, fn, "topk_ids", "non-null", "nullptr");

  const int64_t n = M * top_k;
  Routing r;
  r.expert_offsets.assign(size_t(num_local_experts) + 1, 0);
  r.permuted_to_token_slot.assign(size_t(n), -1);
  r.token_slot_to_permuted.assign(size_t(n), -1);

  // Local expert of every flat slot, -1 when dropped. The range check comes before the map
  // lookup so a bad id can never index expert_map out of bounds.
  std::vector<int32_t> local(size_t(n), -1);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = topk_ids[i];
    if (id < 0 || id >= num_experts) {
      ++r.invalid_ids;
      continue;
    }
    const int32_t le = expert_map ? expert_map[id] : id;
    // A map entry outside [0, E_local) is treated like -1 (not on this rank).
    if (le >= 0 && le < num_local_experts) local[size_t(i)] = le;
  }

  std::vector<int64_t> next(size_t(num_local_experts) + 1, 0);
  for (int64_t i = 0; i < n; ++i)
    if (local[size_t(i)] >= 0) ++r.expert_offsets[size_t(local[size_t(i)]) + 1];
  for (int e = 0; e < num_local_experts; ++e)
    r.expert_offsets[size_t(e) + 1] += r.expert_offsets[size_t(e)];
  for (int e = 0; e < num_local_experts; ++e) next[size_t(e)] = r.expert_offsets[size_t(e)];
  int64_t dropped_pos = r.expert_offsets[size_t(num_local_experts)];

  // Visiting slots in flat order keeps the sort stable, and the dropped rows in flat order.
  for (int64_t i = 0; i < n; ++i) {
    const int32_t le = local[size_t(i)];
    if (le >= 0) {
      const int64_t row = next[size_t(le)]++;
      r.permuted_to_token_slot[size_t(row)] = int32_t(i);
      r.token_slot_to_permuted[size_t(i)] = int32_t(row);
    } else {
      r.permuted_to_token_slot[size_t(dropped_pos++)] = int32_t(i);
    }
  }
  return r;
}

}  // namespace int8_hybrid_moe::ref
