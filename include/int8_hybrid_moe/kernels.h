// Public C++ API of the memory-bound MoE kernels: routing (permute / unpermute), activation and
// quantization. Raw device pointers, sizes and a cudaStream_t; no allocation, no host sync.
// Every function validates its arguments and throws InvalidArgument naming the bad one; CUDA
// launch failures throw CudaError. Row-wise kernels accept an optional device pointer
// `num_valid_rows` (e.g. &expert_offsets[E]): rows at or past *num_valid_rows are skipped, which
// keeps a CUDA-graph-captured forward free of host round-trips when expert_map drops rows.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "int8_hybrid_moe/common.h"
#include "int8_hybrid_moe/format.h"

namespace int8_hybrid_moe {

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

// Problem of the permute step. Tokens are routed to global experts [0, num_experts); with an
// expert_map (int32 [num_experts], global -> local id or -1) only experts mapped to this rank are
// kept, renumbered [0, num_local_experts). Without one, num_local_experts == num_experts.
struct PermuteProblem {
  int64_t num_tokens = 0;  // M
  int64_t hidden = 0;      // K (only needed when the expanded activations are gathered)
  int top_k = 0;
  int num_experts = 0;        // global E
  int num_local_experts = 0;  // E_local (== num_experts when expert_map is null)
};

// Outputs of the permute step. Rows are "permuted rows" r in [0, M*top_k): rows of local expert e
// are [expert_offsets[e], expert_offsets[e+1]), in token order (stable sort). Dropped slots
// (expert_map == -1, or an id outside [0, E): see invalid_ids) go after expert_offsets[E_local].
struct PermuteOutputs {
  int64_t* expert_offsets = nullptr;          // [E_local + 1]; expert_offsets[E_local] = kept rows
  int32_t* permuted_to_token_slot = nullptr;  // [M*top_k]: flat (token*top_k + slot) of each row
  int32_t* token_slot_to_permuted = nullptr;  // [M*top_k]: row of each (token, slot), -1 if dropped
  void* permuted_hidden = nullptr;  // [M*top_k, K] gathered activations, or null (maps only)
  int32_t* invalid_ids = nullptr;   // optional device int32: += number of ids outside [0, E)
};

// Workspace bytes moe_permute needs for this problem (CUB radix sort + keys). CUB's temp
// storage depends on the device (its tuning per architecture), so the size is exact only when a
// CUDA device is present: then it is CUB's own query for the current device. Without one
// (cudaGetDeviceCount fails or returns 0, e.g. CPU-only CI computing moe_workspace_size) it is a
// conservative estimate from the problem alone: the three key/value arrays plus, for n =
// num_tokens * top_k pairs, 3 * n * 4 bytes + 4 MiB for CUB (its alternate key and value
// buffers, histograms and look-back state). moe_permute checks on the device that
// workspace_bytes covers the real requirement.
size_t moe_permute_workspace_size(const PermuteProblem& p);

// topk_ids int32 [M, top_k]; hidden [M, K] in `dtype` (may be null when permuted_hidden is null).
// Ids outside [0, E) never cause out-of-bounds access: they are dropped like unmapped experts
// and counted in *invalid_ids (clamp-and-flag, docs/FORMAT.md).
void moe_permute(const PermuteProblem& p, DType dtype, const void* hidden, const int32_t* topk_ids,
                 const int32_t* expert_map, const PermuteOutputs& out, void* workspace,
                 size_t workspace_bytes, cudaStream_t stream);

// out[t, :] = sum_j topk_weights[t, j] * y[token_slot_to_permuted[t*top_k + j], :], fp32
// accumulation, written in `dtype`; slots with row -1 contribute nothing. y [rows, K].
void moe_unpermute(const void* y, DType dtype, const float* topk_weights,
                   const int32_t* token_slot_to_permuted, int64_t num_tokens, int top_k, int64_t K,
                   void* out, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Activation
// ---------------------------------------------------------------------------------------------

// x [R, 2N] -> out [R, N]: out = silu(x[:, :N]) * x[:, N:], fp32 math, rounded to dtype.
void silu_and_mul(const void* x, DType dtype, int64_t R, int64_t N, void* out,
                  const int64_t* num_valid_rows, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Quantization
// ---------------------------------------------------------------------------------------------

struct HybridQuantOutput {
  int8_t* q = nullptr;   // [R, K]
  int32_t* Q = nullptr;  // [R, nb]
  float* F = nullptr;    // [R, ng]
};

struct PerTokenQuantOutput {
  int8_t* q = nullptr;     // [R, K]
  float* scale = nullptr;  // [R]
};

// x [R, K] -> hybrid (q, Q, F), bit-exact with the CPU reference (docs/FORMAT.md).
void quantize_rows_hybrid(const void* x, DType dtype, int64_t R, int64_t K, const HybridFormat& fmt,
                          const HybridQuantOutput& out, const int64_t* num_valid_rows,
                          cudaStream_t stream);

// x [R, K] -> per-token (q, scale).
void quantize_rows_per_token(const void* x, DType dtype, int64_t R, int64_t K,
                             const PerTokenQuantOutput& out, const int64_t* num_valid_rows,
                             cudaStream_t stream);

// Fused permute + quantization: each token row of hidden [M, K] is quantized once and written to
// each of its permuted rows token_slot_to_permuted[t*top_k + j] (skipped when -1). Identical to
// moe_permute(..., permuted_hidden) followed by quantize_rows_*.
void permute_quantize_hybrid(const void* hidden, DType dtype, const int32_t* token_slot_to_permuted,
                             int64_t num_tokens, int top_k, int64_t K, const HybridFormat& fmt,
                             const HybridQuantOutput& out, cudaStream_t stream);
void permute_quantize_per_token(const void* hidden, DType dtype,
                                const int32_t* token_slot_to_permuted, int64_t num_tokens,
                                int top_k, int64_t K, const PerTokenQuantOutput& out,
                                cudaStream_t stream);

// Fused SiLU-and-mul + quantization: x [R, 2N] -> quantized [R, N] of silu(gate) * up, the
// product rounded to `dtype` first (as the unfused path stores it), so both paths agree exactly.
void silu_and_mul_quantize_hybrid(const void* x, DType dtype, int64_t R, int64_t N,
                                  const HybridFormat& fmt, const HybridQuantOutput& out,
                                  const int64_t* num_valid_rows, cudaStream_t stream);
void silu_and_mul_quantize_per_token(const void* x, DType dtype, int64_t R, int64_t N,
                                     const PerTokenQuantOutput& out, const int64_t* num_valid_rows,
                                     cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Offline weight quantization (on the GPU): W [E, N, K] in dtype, rows = output channels.
// ---------------------------------------------------------------------------------------------
void quantize_weights_hybrid(const void* w, DType dtype, int64_t E, int64_t N, int64_t K,
                             const HybridFormat& fmt, const HybridQuantOutput& out,
                             cudaStream_t stream);
void quantize_weights_per_channel(const void* w, DType dtype, int64_t E, int64_t N, int64_t K,
                                  const PerTokenQuantOutput& out, cudaStream_t stream);

}  // namespace int8_hybrid_moe
