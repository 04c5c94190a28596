// Host launchers of the routing kernels: moe_permute (CUB radix sort + maps + gather) and
// moe_unpermute. Arguments are validated before any CUDA call.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "int8_hybrid_moe/kernels.h"
#include "kernels/routing/permute.cuh"
#include "kernels/routing/unpermute.cuh"
#include "launchers/cuda_check.h"

namespace int8_hybrid_moe {
namespace {

constexpr int kThreads = 256;
constexpr size_t kAlign = 256;

size_t align_up(size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Keys 0..E_local (E_local marks dropped slots): only the bits that can be set are sorted.
int sort_end_bit(int E_local) {
  return std::max(1, 32 - __builtin_clz(static_cast<unsigned>(E_local)));
}

void validate_problem(const PermuteProblem& p, const char* fn) {
  I8H_CHECK_ARG(p.num_tokens >= 0, fn, "num_tokens", ">= 0", p.num_tokens);
  I8H_CHECK_ARG(p.num_experts >= 1, fn, "num_experts", ">= 1", p.num_experts);
  I8H_CHECK_ARG(p.top_k >= 1 && p.top_k <= p.num_experts, fn, "top_k",
                detail::concat("in [1, num_experts = ", p.num_experts, "]"), p.top_k);
  I8H_CHECK_ARG(p.num_local_experts >= 1 && p.num_local_experts <= p.num_experts, fn,
                "num_local_experts", detail::concat("in [1, num_experts = ", p.num_experts, "]"),
                p.num_local_experts);
  I8H_CHECK_ARG(p.num_tokens <= std::numeric_limits<int32_t>::max() / p.top_k, fn,
                "num_tokens * top_k", "at most 2^31 - 1 (int32 row indices)",
                p.num_tokens * p.top_k);
}

// Workspace layout: keys_in, keys_out, vals_in (n words each), then CUB's temp storage.
struct PermuteWorkspace {
  size_t keys_bytes = 0;  // one aligned [n] array
  size_t cub_bytes = 0;
  size_t fixed() const { return 3 * keys_bytes; }
  size_t total() const { return fixed() + align_up(cub_bytes); }
};

// Whether a CUDA device can be used: cudaGetDeviceCount fails (no driver, no device) or
// reports 0 on a machine without a GPU. The error it returns is cleared, so it does not
// resurface at the caller's next cudaGetLastError.
bool cuda_device_present() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

// Bound of CUB's radix-sort temp storage for n pairs when no device can be asked. CUB's
// SortPairs (onesweep or the classic upsweep/downsweep) allocates alternate key and value
// buffers (n words each, only for more than one digit pass) plus per-pass digit histograms, the
// per-tile decoupled look-back state (256 digit counters per tile of several thousand items:
// well under one word per item) and counters. We reserve 2 n words, one more word per item and
// 4 MiB, which covers every architecture's tuning with a wide margin.
size_t cub_bytes_estimate(int n) {
  if (n == 0) return 0;
  return 3 * size_t(n) * sizeof(uint32_t) + (size_t(4) << 20);
}

// CUB's exact temp-storage size for n pairs on the current device (needs a device).
size_t cub_bytes_query(int n, int E_local) {
  size_t bytes = 0;
  if (n > 0) {
    // Size query only (null temp storage): no work is enqueued.
    I8H_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
        static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, 0,
        sort_end_bit(E_local)));
  }
  return bytes;
}

// `exact`: CUB's own query (needs a device); otherwise the device-free estimate.
PermuteWorkspace permute_workspace(int n, int E_local, bool exact) {
  PermuteWorkspace w;
  w.keys_bytes = align_up(size_t(n) * sizeof(uint32_t));
  w.cub_bytes = exact ? cub_bytes_query(n, E_local) : cub_bytes_estimate(n);
  return w;
}

int grid_for(int64_t work_items, int threads) {
  const int64_t cap = int64_t(detail::current_device_sm_count()) * 8;
  return static_cast<int>(
      std::max<int64_t>(1, std::min(cap, (work_items + threads - 1) / threads)));
}

}  // namespace

size_t moe_permute_workspace_size(const PermuteProblem& p) {
  validate_problem(p, "moe_permute_workspace_size");
  return permute_workspace(static_cast<int>(p.num_tokens * p.top_k), p.num_local_experts,
                           cuda_device_present())
      .total();
}

void moe_permute(const PermuteProblem& p, DType dtype, const void* hidden, const int32_t* topk_ids,
                 const int32_t* expert_map, const PermuteOutputs& out, void* workspace,
                 size_t workspace_bytes, cudaStream_t stream) {
  const char* fn = "moe_permute";
  validate_problem(p, fn);
  validate_dtype(dtype, fn);
  I8H_CHECK_ARG(expert_map != nullptr || p.num_local_experts == p.num_experts, fn,
                "num_local_experts",
                detail::concat("== num_experts (", p.num_experts, ") when expert_map is null"),
                p.num_local_experts);
  const int n = static_cast<int>(p.num_tokens * p.top_k);
  const bool gather = out.permuted_hidden != nullptr;
  I8H_CHECK_NOT_NULL(out.expert_offsets, fn, "out.expert_offsets");
  if (n > 0) {
    I8H_CHECK_NOT_NULL(topk_ids, fn, "topk_ids");
    I8H_CHECK_NOT_NULL(out.permuted_to_token_slot, fn, "out.permuted_to_token_slot");
    I8H_CHECK_NOT_NULL(out.token_slot_to_permuted, fn, "out.token_slot_to_permuted");
  }
  if (gather) {
    I8H_CHECK_ARG(p.hidden > 0, fn, "hidden (K)", "> 0 when permuted_hidden is given", p.hidden);
    if (n > 0) I8H_CHECK_NOT_NULL(hidden, fn, "hidden");
  }
  // The key arrays need no CUDA call to size: check them before CUB's size query.
  const size_t keys_bytes = align_up(size_t(n) * sizeof(uint32_t));
  I8H_CHECK_ARG(workspace_bytes >= 3 * keys_bytes, fn, "workspace_bytes",
                detail::concat(">= moe_permute_workspace_size(p) (at least ", 3 * keys_bytes, ")"),
                workspace_bytes);
  if (n > 0) {
    I8H_CHECK_NOT_NULL(workspace, fn, "workspace");
    I8H_CHECK_ARG(reinterpret_cast<uintptr_t>(workspace) % kAlign == 0, fn, "workspace",
                  "256-byte aligned", workspace);
  }
  // 16-byte vectors in the gather when rows and bases allow; scalar copies otherwise.
  const bool vec = p.hidden % 8 == 0 && aligned16(hidden) && aligned16(out.permuted_hidden);

  // The real requirement of CUB on this device (the caller may have sized the workspace with
  // the device-free estimate, which is larger).
  const PermuteWorkspace ws = permute_workspace(n, p.num_local_experts, /*exact=*/true);
  I8H_CHECK_ARG(workspace_bytes >= ws.total(), fn, "workspace_bytes",
                detail::concat(">= the CUB radix sort's requirement on this device, ", ws.total(),
                               " (moe_permute_workspace_size(p))"),
                workspace_bytes);

  char* base = static_cast<char*>(workspace);
  uint32_t* keys_in = reinterpret_cast<uint32_t*>(base);
  uint32_t* keys_out = reinterpret_cast<uint32_t*>(base + ws.keys_bytes);
  int32_t* vals_in = reinterpret_cast<int32_t*>(base + 2 * ws.keys_bytes);
  void* cub_temp = base + ws.fixed();

  if (n > 0) {
    kernels::permute_keys_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(
        topk_ids, expert_map, n, p.num_experts, p.num_local_experts, keys_in, vals_in,
        out.invalid_ids);
    I8H_CHECK_LAUNCH("permute_keys_kernel");
    size_t cub_bytes = ws.cub_bytes;
    I8H_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        cub_temp, cub_bytes, static_cast<const uint32_t*>(keys_in), keys_out,
        static_cast<const int32_t*>(vals_in), out.permuted_to_token_slot, n, 0,
        sort_end_bit(p.num_local_experts), stream));
  }
  // Also runs for n == 0: expert_offsets must still be written (all zero).
  const int64_t offset_threads = int64_t(p.num_local_experts) + 1;
  const auto* hidden16 = static_cast<const uint16_t*>(hidden);
  auto* out16 = static_cast<uint16_t*>(out.permuted_hidden);
  if (!gather) {
    const int grid = grid_for(std::max<int64_t>(n, offset_threads), kThreads);
    kernels::permute_finalize_kernel<false, 1><<<grid, kThreads, 0, stream>>>(
        keys_out, out.permuted_to_token_slot, n, p.top_k, p.num_local_experts, out.expert_offsets,
        out.token_slot_to_permuted, nullptr, nullptr, p.hidden);
  } else {
    // One warp per row for the gather; enough threads for the offsets as well.
    const int grid = grid_for(std::max<int64_t>(int64_t(n) * 32, offset_threads), kThreads);
    if (vec) {
      kernels::permute_finalize_kernel<true, 8><<<grid, kThreads, 0, stream>>>(
          keys_out, out.permuted_to_token_slot, n, p.top_k, p.num_local_experts, out.expert_offsets,
          out.token_slot_to_permuted, hidden16, out16, p.hidden);
    } else {
      kernels::permute_finalize_kernel<true, 1><<<grid, kThreads, 0, stream>>>(
          keys_out, out.permuted_to_token_slot, n, p.top_k, p.num_local_experts, out.expert_offsets,
          out.token_slot_to_permuted, hidden16, out16, p.hidden);
    }
  }
  I8H_CHECK_LAUNCH("permute_finalize_kernel");
}

void moe_unpermute(const void* y, DType dtype, const float* topk_weights,
                   const int32_t* token_slot_to_permuted, int64_t num_tokens, int top_k, int64_t K,
                   void* out, cudaStream_t stream) {
  const char* fn = "moe_unpermute";
  validate_dtype(dtype, fn);
  I8H_CHECK_ARG(num_tokens >= 0, fn, "num_tokens", ">= 0", num_tokens);
  I8H_CHECK_ARG(top_k >= 1, fn, "top_k", ">= 1", top_k);
  I8H_CHECK_ARG(K > 0, fn, "K", "> 0", K);
  I8H_CHECK_ARG(num_tokens <= std::numeric_limits<int32_t>::max() / top_k, fn, "num_tokens * top_k",
                "at most 2^31 - 1 (int32 row indices)", num_tokens * top_k);
  if (num_tokens == 0) return;
  I8H_CHECK_NOT_NULL(y, fn, "y");
  I8H_CHECK_NOT_NULL(topk_weights, fn, "topk_weights");
  I8H_CHECK_NOT_NULL(token_slot_to_permuted, fn, "token_slot_to_permuted");
  I8H_CHECK_NOT_NULL(out, fn, "out");
  const bool vec = K % 8 == 0 && aligned16(y) && aligned16(out);

  const auto* y16 = static_cast<const uint16_t*>(y);
  auto* out16 = static_cast<uint16_t*>(out);
  const int64_t items = num_tokens * (vec ? K / 8 : K);
  const int grid = grid_for(items, kThreads);
  I8H_DISPATCH_DTYPE(dtype, T, {
    if (vec) {
      kernels::unpermute_kernel<T, 8><<<grid, kThreads, 0, stream>>>(
          y16, topk_weights, token_slot_to_permuted, num_tokens, top_k, K, out16);
    } else {
      kernels::unpermute_kernel<T, 1><<<grid, kThreads, 0, stream>>>(
          y16, topk_weights, token_slot_to_permuted, num_tokens, top_k, K, out16);
    }
  });
  I8H_CHECK_LAUNCH("unpermute_kernel");
}

}  // namespace int8_hybrid_moe
