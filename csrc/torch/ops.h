// The operators of libint8_hybrid_moe_ops.so (CUDA implementations). Each one checks its tensors
// (naming the bad argument), allocates its outputs and runs the C++ API on the current stream.
// Schemas: registration.cpp; fake (shape-only) implementations: int8_hybrid_moe/_fake.py.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace int8_hybrid_moe::torch_ext {

using at::Tensor;
using OptTensor = std::optional<at::Tensor>;
using Tensor2 = std::tuple<Tensor, Tensor>;
using Tensor3 = std::tuple<Tensor, Tensor, Tensor>;
using Tensor5 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

// ---- routing / activation / quantization (ops_kernels.cpp) ----
Tensor5 moe_permute(const Tensor& hidden, const Tensor& topk_ids, int64_t num_experts,
                    const OptTensor& expert_map, int64_t num_local_experts, bool gather);
Tensor moe_unpermute(const Tensor& y, const Tensor& topk_weights,
                     const Tensor& token_slot_to_permuted);
Tensor silu_and_mul(const Tensor& x, const OptTensor& num_valid_rows);
Tensor3 quantize_hybrid(const Tensor& x, int64_t block_size, int64_t super_group, int64_t q_max,
                        const OptTensor& num_valid_rows);
Tensor2 quantize_per_token(const Tensor& x, const OptTensor& num_valid_rows);
Tensor3 permute_quantize_hybrid(const Tensor& hidden, const Tensor& token_slot_to_permuted,
                                int64_t top_k, int64_t block_size, int64_t super_group,
                                int64_t q_max);
Tensor2 permute_quantize_per_token(const Tensor& hidden, const Tensor& token_slot_to_permuted,
                                   int64_t top_k);
Tensor3 silu_and_mul_quantize_hybrid(const Tensor& x, int64_t block_size, int64_t super_group,
                                     int64_t q_max, const OptTensor& num_valid_rows);
Tensor2 silu_and_mul_quantize_per_token(const Tensor& x, const OptTensor& num_valid_rows);
Tensor3 quantize_weights_hybrid(const Tensor& w, int64_t block_size, int64_t super_group,
                                int64_t q_max);
Tensor2 quantize_weights_per_channel(const Tensor& w);

// ---- grouped GEMMs (ops_gemm.cpp) ----
Tensor cutlass_int8_grouped(const Tensor& a, const Tensor& scale_a, const Tensor& b,
                            const Tensor& scale_b, const Tensor& expert_offsets,
                            at::ScalarType out_dtype, int64_t tile);
Tensor cutlass_int8_blockwise_hybrid_grouped(const Tensor& a, const Tensor& Qa, const Tensor& Fa,
                                             const Tensor& b, const Tensor& Qb, const Tensor& Fb,
                                             const Tensor& expert_offsets, int64_t block_size,
                                             int64_t super_group, int64_t q_max,
                                             at::ScalarType out_dtype, int64_t tile);

// ---- whole forward (ops_moe.cpp) ----
Tensor moe_forward(const Tensor& hidden, const Tensor& topk_ids, const Tensor& topk_weights,
                   const Tensor& w13_q, const OptTensor& w13_Q, const Tensor& w13_scale,
                   const Tensor& w2_q, const OptTensor& w2_Q, const Tensor& w2_scale,
                   int64_t scheme, int64_t block_size, int64_t super_group, int64_t q_max,
                   const OptTensor& expert_map, int64_t fused_silu_quant,
                   int64_t fused_permute_quant);
int64_t moe_workspace_bytes(int64_t num_tokens, int64_t hidden, int64_t intermediate,
                            int64_t num_experts, int64_t num_local_experts, int64_t top_k,
                            at::ScalarType dtype, int64_t scheme, int64_t block_size,
                            int64_t super_group, int64_t q_max, int64_t fused_silu_quant,
                            int64_t fused_permute_quant);

}  // namespace int8_hybrid_moe::torch_ext
