// Schemas of the int8_hybrid_moe operator library and their CUDA implementations.
//
// All operators are functional: they allocate and return their outputs and mutate nothing, so
// torch.compile traces them with the fake implementations of int8_hybrid_moe/_fake.py (shapes
// only). The same functions are registered for CPU tensors too, where their first check reports
// that a CUDA tensor is expected (a ValueError naming the argument, instead of a missing kernel).
#include <ATen/core/enum_tag.h>
#include <torch/library.h>

#include "ops.h"

namespace {

using namespace int8_hybrid_moe::torch_ext;

// block_size / super_group / q_max defaults of the hybrid format (HybridFormat in format.h).
#define I8H_FMT_ARGS "int block_size=128, int super_group=256, int q_max=16"

constexpr const char* kSchemas[] = {
    "moe_permute(Tensor hidden, Tensor topk_ids, int num_experts, Tensor? expert_map=None, "
    "int num_local_experts=-1, bool gather=True) -> (Tensor expert_offsets, "
    "Tensor permuted_to_token_slot, Tensor token_slot_to_permuted, Tensor permuted_hidden, "
    "Tensor invalid_ids)",
    "moe_unpermute(Tensor y, Tensor topk_weights, Tensor token_slot_to_permuted) -> Tensor",
    "silu_and_mul(Tensor x, Tensor? num_valid_rows=None) -> Tensor",
    "quantize_hybrid(Tensor x, " I8H_FMT_ARGS
    ", Tensor? num_valid_rows=None) -> (Tensor q, Tensor Q, Tensor F)",
    "quantize_per_token(Tensor x, Tensor? num_valid_rows=None) -> (Tensor q, Tensor scale)",
    "permute_quantize_hybrid(Tensor hidden, Tensor token_slot_to_permuted, int top_k, " I8H_FMT_ARGS
    ") -> (Tensor q, Tensor Q, Tensor F)",
    "permute_quantize_per_token(Tensor hidden, Tensor token_slot_to_permuted, int top_k) -> "
    "(Tensor q, Tensor scale)",
    "silu_and_mul_quantize_hybrid(Tensor x, " I8H_FMT_ARGS
    ", Tensor? num_valid_rows=None) -> (Tensor q, Tensor Q, Tensor F)",
    "silu_and_mul_quantize_per_token(Tensor x, Tensor? num_valid_rows=None) -> "
    "(Tensor q, Tensor scale)",
    "cutlass_int8_grouped(Tensor a, Tensor scale_a, Tensor b, Tensor scale_b, "
    "Tensor expert_offsets, ScalarType out_dtype, int tile=0) -> Tensor",
    "cutlass_int8_blockwise_hybrid_grouped(Tensor a, Tensor Qa, Tensor Fa, Tensor b, Tensor Qb, "
    "Tensor Fb, Tensor expert_offsets, int block_size, int super_group, int q_max, "
    "ScalarType out_dtype, int tile=0) -> Tensor",
    "quantize_weights_hybrid(Tensor w, " I8H_FMT_ARGS ") -> (Tensor q, Tensor Q, Tensor F)",
    "quantize_weights_per_channel(Tensor w) -> (Tensor q, Tensor scale)",
    "moe_forward(Tensor hidden, Tensor topk_ids, Tensor topk_weights, Tensor w13_q, "
    "Tensor? w13_Q, Tensor w13_scale, Tensor w2_q, Tensor? w2_Q, Tensor w2_scale, "
    "int scheme=0, " I8H_FMT_ARGS
    ", Tensor? expert_map=None, int fused_silu_quant=-1, int fused_permute_quant=-1) -> Tensor",
};

#undef I8H_FMT_ARGS

template <typename Lib>
void register_impls(Lib& m) {
  m.impl("moe_permute", &moe_permute);
  m.impl("moe_unpermute", &moe_unpermute);
  m.impl("silu_and_mul", &silu_and_mul);
  m.impl("quantize_hybrid", &quantize_hybrid);
  m.impl("quantize_per_token", &quantize_per_token);
  m.impl("permute_quantize_hybrid", &permute_quantize_hybrid);
  m.impl("permute_quantize_per_token", &permute_quantize_per_token);
  m.impl("silu_and_mul_quantize_hybrid", &silu_and_mul_quantize_hybrid);
  m.impl("silu_and_mul_quantize_per_token", &silu_and_mul_quantize_per_token);
  m.impl("cutlass_int8_grouped", &cutlass_int8_grouped);
  m.impl("cutlass_int8_blockwise_hybrid_grouped", &cutlass_int8_blockwise_hybrid_grouped);
  m.impl("quantize_weights_hybrid", &quantize_weights_hybrid);
  m.impl("quantize_weights_per_channel", &quantize_weights_per_channel);
  m.impl("moe_forward", &moe_forward);
}

}  // namespace

TORCH_LIBRARY(int8_hybrid_moe, m) {
  for (const char* schema : kSchemas) m.def(schema, {at::Tag::pt2_compliant_tag});
  // Host-side helper: bytes of the workspace moe_forward allocates (moe_workspace_size).
  m.def(
      "moe_workspace_size(int num_tokens, int hidden, int intermediate, int num_experts, "
      "int num_local_experts, int top_k, ScalarType dtype, int scheme=0, int block_size=128, "
      "int super_group=256, int q_max=16, int fused_silu_quant=-1, int fused_permute_quant=-1) "
      "-> int",
      &moe_workspace_bytes);
}

TORCH_LIBRARY_IMPL(int8_hybrid_moe, CUDA, m) {
  register_impls(m);
}

TORCH_LIBRARY_IMPL(int8_hybrid_moe, CPU, m) {
  register_impls(m);
}
