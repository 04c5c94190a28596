"""Operators registered with the expected schemas; argument errors surface as Python exceptions
with the message intact (CPU: needs the built library, no GPU)."""

from __future__ import annotations

import pytest
import torch

EXPECTED_SCHEMAS = {
    "moe_permute": "int8_hybrid_moe::moe_permute(Tensor hidden, Tensor topk_ids, int num_experts, "
    "Tensor? expert_map=None, int num_local_experts=-1, bool gather=True) -> (Tensor expert_offsets, "
    "Tensor permuted_to_token_slot, Tensor token_slot_to_permuted, Tensor permuted_hidden, "
    "Tensor invalid_ids)",
    "moe_unpermute": "int8_hybrid_moe::moe_unpermute(Tensor y, Tensor topk_weights, "
    "Tensor token_slot_to_permuted) -> Tensor",
    "silu_and_mul": "int8_hybrid_moe::silu_and_mul(Tensor x, Tensor? num_valid_rows=None) -> Tensor",
    "quantize_hybrid": "int8_hybrid_moe::quantize_hybrid(Tensor x, int block_size=128, "
    "int super_group=256, int q_max=16, Tensor? num_valid_rows=None) -> (Tensor q, Tensor Q, Tensor F)",
    "quantize_per_token": "int8_hybrid_moe::quantize_per_token(Tensor x, Tensor? num_valid_rows=None) "
    "-> (Tensor q, Tensor scale)",
    "permute_quantize_hybrid": "int8_hybrid_moe::permute_quantize_hybrid(Tensor hidden, "
    "Tensor token_slot_to_permuted, int top_k, int block_size=128, int super_group=256, "
    "int q_max=16) -> (Tensor q, Tensor Q, Tensor F)",
    "permute_quantize_per_token": "int8_hybrid_moe::permute_quantize_per_token(Tensor hidden, "
    "Tensor token_slot_to_permuted, int top_k) -> (Tensor q, Tensor scale)",
    "silu_and_mul_quantize_hybrid": "int8_hybrid_moe::silu_and_mul_quantize_hybrid(Tensor x, "
    "int block_size=128, int super_group=256, int q_max=16, Tensor? num_valid_rows=None) -> "
    "(Tensor q, Tensor Q, Tensor F)",
    "silu_and_mul_quantize_per_token": "int8_hybrid_moe::silu_and_mul_quantize_per_token(Tensor x, "
    "Tensor? num_valid_rows=None) -> (Tensor q, Tensor scale)",
    "cutlass_int8_grouped": "int8_hybrid_moe::cutlass_int8_grouped(Tensor a, Tensor scale_a, "
    "Tensor b, Tensor scale_b, Tensor expert_offsets, ScalarType out_dtype, int tile=0) -> Tensor",
    "cutlass_int8_blockwise_hybrid_grouped": "int8_hybrid_moe::cutlass_int8_blockwise_hybrid_grouped("
    "Tensor a, Tensor Qa, Tensor Fa, Tensor b, Tensor Qb, Tensor Fb, Tensor expert_offsets, "
    "int block_size, int super_group, int q_max, ScalarType out_dtype, int tile=0) -> Tensor",
    "quantize_weights_hybrid": "int8_hybrid_moe::quantize_weights_hybrid(Tensor w, "
    "int block_size=128, int super_group=256, int q_max=16) -> (Tensor q, Tensor Q, Tensor F)",
    "quantize_weights_per_channel": "int8_hybrid_moe::quantize_weights_per_channel(Tensor w) -> "
    "(Tensor q, Tensor scale)",
    "moe_forward": "int8_hybrid_moe::moe_forward(Tensor hidden, Tensor topk_ids, "
    "Tensor topk_weights, Tensor w13_q, Tensor? w13_Q, Tensor w13_scale, Tensor w2_q, "
    "Tensor? w2_Q, Tensor w2_scale, int scheme=0, int block_size=128, int super_group=256, "
    "int q_max=16, Tensor? expert_map=None, int fused_silu_quant=-1, "
    "int fused_permute_quant=-1) -> Tensor",
    "moe_workspace_size": "int8_hybrid_moe::moe_workspace_size(int num_tokens, int hidden, "
    "int intermediate, int num_experts, int num_local_experts, int top_k, ScalarType dtype, "
    "int scheme=0, int block_size=128, int super_group=256, int q_max=16, "
    "int fused_silu_quant=-1, int fused_permute_quant=-1) -> int",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SCHEMAS))
def test_schema(lib, name):
    op = getattr(lib, name)
    assert str(op.default._schema) == EXPECTED_SCHEMAS[name]


def test_ops_module_lists_every_operator(lib):
    from int8_hybrid_moe import ops

    assert set(ops.OP_NAMES) == set(EXPECTED_SCHEMAS)
    for name in ops.OP_NAMES:
        assert callable(getattr(ops, name))


@pytest.mark.parametrize("name", sorted(set(EXPECTED_SCHEMAS) - {"moe_workspace_size"}))
def test_functional_and_pt2_compliant(lib, name):
    op = getattr(lib, name).default
    assert torch.Tag.pt2_compliant_tag in op.tags
    # Functional: no argument is mutated or aliased by an output.
    for arg in op._schema.arguments:
        assert arg.alias_info is None, arg
    for ret in op._schema.returns:
        assert ret.alias_info is None, ret


def test_cpu_tensor_is_rejected_with_the_argument_named(lib):
    x = torch.zeros(4, 32, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"quantize_hybrid: argument 'x' must be a CUDA tensor"):
        lib.quantize_hybrid(x)
    ids = torch.zeros(4, 2, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"moe_permute: argument 'hidden' must be a CUDA tensor"):
        lib.moe_permute(x, ids, 8)


def test_workspace_size_op(lib):
    # Validation runs on the host (tests below); the size itself queries CUB, which needs a GPU.
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: moe_workspace_size queries CUB on the current device")
    n = lib.moe_workspace_size(64, 256, 128, 8, 8, 2, torch.bfloat16)
    assert isinstance(n, int) and n > 0
    n2 = lib.moe_workspace_size(64, 256, 128, 8, 8, 2, torch.bfloat16, 1)
    assert n2 > 0


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(top_k=9), r"moe_workspace_size: argument 'top_k' must be in \[1, num_experts = 8\], got 9"),
        (dict(hidden=100), r"moe_workspace_size: argument 'hidden \(K\)' must be a positive multiple of 16, got 100"),
        (dict(q_max=200), r"moe_workspace_size: argument 'q_max' must be in \[1, 127\], got 200"),
        (dict(block_size=24), r"argument 'block_size \(B\)' must be a positive multiple of 16, got 24"),
        (dict(fused_silu_quant=2), r"argument 'fused_silu_quant' must be -1 \(environment\), 0 or 1, got 2"),
        (dict(dtype=torch.float32), r"argument 'dtype' must be of dtype torch.bfloat16 or torch.float16"),
    ],
)
def test_cpp_invalid_argument_becomes_value_error(lib, kwargs, pattern):
    args = dict(
        num_tokens=64, hidden=256, intermediate=128, num_experts=8, num_local_experts=8, top_k=2,
        dtype=torch.bfloat16, scheme=0, block_size=128, super_group=256, q_max=16,
        fused_silu_quant=-1, fused_permute_quant=-1,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        lib.moe_workspace_size(*args.values())


def test_environment_switch_error_message(lib, monkeypatch):
    monkeypatch.setenv("VLLM_INT8_HYBRID_FUSED_SILU_QUANT", "yes")
    with pytest.raises(ValueError, match="VLLM_INT8_HYBRID_FUSED_SILU_QUANT"):
        lib.moe_workspace_size(64, 256, 128, 8, 8, 2, torch.bfloat16)
