"""Fake (shape-only) implementations of the torch.ops.int8_hybrid_moe operators.

Registered once the library is loaded (see _lib.load_library). They let FakeTensorMode,
torch.compile and meta tensors run the operators: outputs have the shapes and dtypes of the CUDA
implementations (csrc/torch/), sizes may be symbolic. Registering a fake also gives each operator
a Meta kernel.
"""

from __future__ import annotations

import torch

from .format import INT8_MAX

_NS = "int8_hybrid_moe"


def _fail(op: str, arg: str, expected: str, got) -> None:
    raise ValueError(f"{op}: argument '{arg}' must be {expected}, got {got}")


def _act(op: str, arg: str, t: torch.Tensor, dim: int) -> None:
    if t.dim() != dim:
        _fail(op, arg, f"a {dim}-D tensor", f"{t.dim()}-D with shape {tuple(t.shape)}")
    if t.dtype not in (torch.bfloat16, torch.float16):
        _fail(op, arg, "of dtype torch.bfloat16 or torch.float16", t.dtype)


def _fmt(op: str, block_size: int, super_group: int, q_max: int) -> None:
    if not (block_size > 0 and block_size % 16 == 0):
        _fail(op, "block_size (B)", "a positive multiple of 16", block_size)
    if super_group < 1:
        _fail(op, "super_group (S)", ">= 1", super_group)
    if not (1 <= q_max <= INT8_MAX):
        _fail(op, "q_max", "in [1, 127]", q_max)


def _nb(K, block_size: int):
    return (K + block_size - 1) // block_size


def _ng(K, block_size: int, super_group: int):
    return (_nb(K, block_size) + super_group - 1) // super_group


def _hybrid(ref: torch.Tensor, rows, K, block_size: int, super_group: int):
    return (
        ref.new_empty((rows, K), dtype=torch.int8),
        ref.new_empty((rows, _nb(K, block_size)), dtype=torch.int32),
        ref.new_empty((rows, _ng(K, block_size, super_group)), dtype=torch.float32),
    )


def _per_token(ref: torch.Tensor, rows, K):
    return (
        ref.new_empty((rows, K), dtype=torch.int8),
        ref.new_empty((rows,), dtype=torch.float32),
    )


def _reg(name: str):
    return torch.library.register_fake(f"{_NS}::{name}")


@_reg("moe_permute")
def _moe_permute(hidden, topk_ids, num_experts, expert_map=None, num_local_experts=-1, gather=True):
    _act("moe_permute", "hidden", hidden, 2)
    M, K = hidden.shape
    top_k = topk_ids.shape[1]
    if expert_map is not None:
        if num_local_experts < 0:
            _fail(
                "moe_permute",
                "num_local_experts",
                "given (the number of local experts) when expert_map is given",
                num_local_experts,
            )
        e_local = num_local_experts
    else:
        e_local = num_experts
    rows = M * top_k
    return (
        hidden.new_empty((e_local + 1,), dtype=torch.int64),
        hidden.new_empty((rows,), dtype=torch.int32),
        hidden.new_empty((rows,), dtype=torch.int32),
        hidden.new_empty((rows if gather else 0, K)),
        hidden.new_empty((1,), dtype=torch.int32),
    )


@_reg("moe_unpermute")
def _moe_unpermute(y, topk_weights, token_slot_to_permuted):
    _act("moe_unpermute", "y", y, 2)
    return y.new_empty((topk_weights.shape[0], y.shape[1]))


@_reg("silu_and_mul")
def _silu_and_mul(x, num_valid_rows=None):
    _act("silu_and_mul", "x", x, 2)
    return x.new_empty((x.shape[0], x.shape[1] // 2))


@_reg("quantize_hybrid")
def _quantize_hybrid(x, block_size=128, super_group=256, q_max=16, num_valid_rows=None):
    _act("quantize_hybrid", "x", x, 2)
    _fmt("quantize_hybrid", block_size, super_group, q_max)
    return _hybrid(x, x.shape[0], x.shape[1], block_size, super_group)


@_reg("quantize_per_token")
def _quantize_per_token(x, num_valid_rows=None):
    _act("quantize_per_token", "x", x, 2)
    return _per_token(x, x.shape[0], x.shape[1])


@_reg("permute_quantize_hybrid")
def _permute_quantize_hybrid(
    hidden, token_slot_to_permuted, top_k, block_size=128, super_group=256, q_max=16
):
    _act("permute_quantize_hybrid", "hidden", hidden, 2)
    _fmt("permute_quantize_hybrid", block_size, super_group, q_max)
    return _hybrid(hidden, hidden.shape[0] * top_k, hidden.shape[1], block_size, super_group)


@_reg("permute_quantize_per_token")
def _permute_quantize_per_token(hidden, token_slot_to_permuted, top_k):
    _act("permute_quantize_per_token", "hidden", hidden, 2)
    return _per_token(hidden, hidden.shape[0] * top_k, hidden.shape[1])


@_reg("silu_and_mul_quantize_hybrid")
def _silu_and_mul_quantize_hybrid(x, block_size=128, super_group=256, q_max=16, num_valid_rows=None):
    _act("silu_and_mul_quantize_hybrid", "x", x, 2)
    _fmt("silu_and_mul_quantize_hybrid", block_size, super_group, q_max)
    return _hybrid(x, x.shape[0], x.shape[1] // 2, block_size, super_group)


@_reg("silu_and_mul_quantize_per_token")
def _silu_and_mul_quantize_per_token(x, num_valid_rows=None):
    _act("silu_and_mul_quantize_per_token", "x", x, 2)
    return _per_token(x, x.shape[0], x.shape[1] // 2)


def _out_dtype(op: str, out_dtype) -> None:
    if out_dtype not in (torch.bfloat16, torch.float16):
        _fail(op, "out_dtype", "of dtype torch.bfloat16 or torch.float16", out_dtype)


@_reg("cutlass_int8_grouped")
def _cutlass_int8_grouped(a, scale_a, b, scale_b, expert_offsets, out_dtype, tile=0):
    _out_dtype("cutlass_int8_grouped", out_dtype)
    return a.new_empty((a.shape[0], b.shape[1]), dtype=out_dtype)


@_reg("cutlass_int8_blockwise_hybrid_grouped")
def _cutlass_int8_blockwise_hybrid_grouped(
    a, Qa, Fa, b, Qb, Fb, expert_offsets, block_size, super_group, q_max, out_dtype, tile=0
):
    _out_dtype("cutlass_int8_blockwise_hybrid_grouped", out_dtype)
    _fmt("cutlass_int8_blockwise_hybrid_grouped", block_size, super_group, q_max)
    return a.new_empty((a.shape[0], b.shape[1]), dtype=out_dtype)


@_reg("quantize_weights_hybrid")
def _quantize_weights_hybrid(w, block_size=128, super_group=256, q_max=16):
    _act("quantize_weights_hybrid", "w", w, 3)
    _fmt("quantize_weights_hybrid", block_size, super_group, q_max)
    E, N, K = w.shape
    return (
        w.new_empty((E, N, K), dtype=torch.int8),
        w.new_empty((E, N, _nb(K, block_size)), dtype=torch.int32),
        w.new_empty((E, N, _ng(K, block_size, super_group)), dtype=torch.float32),
    )


@_reg("quantize_weights_per_channel")
def _quantize_weights_per_channel(w):
    _act("quantize_weights_per_channel", "w", w, 3)
    E, N, K = w.shape
    return w.new_empty((E, N, K), dtype=torch.int8), w.new_empty((E, N), dtype=torch.float32)


@_reg("moe_forward")
def _moe_forward(
    hidden,
    topk_ids,
    topk_weights,
    w13_q,
    w13_Q,
    w13_scale,
    w2_q,
    w2_Q,
    w2_scale,
    scheme=0,
    block_size=128,
    super_group=256,
    q_max=16,
    expert_map=None,
    fused_silu_quant=-1,
    fused_permute_quant=-1,
):
    _act("moe_forward", "hidden", hidden, 2)
    if scheme not in (0, 1):
        _fail("moe_forward", "scheme", "0 (hybrid) or 1 (per_token)", scheme)
    if scheme == 0:
        _fmt("moe_forward", block_size, super_group, q_max)
    return hidden.new_empty(hidden.shape)
