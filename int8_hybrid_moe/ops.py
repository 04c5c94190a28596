"""Thin Python wrappers of the torch.ops.int8_hybrid_moe operators.

Importing this module loads libint8_hybrid_moe_ops.so (LibraryNotFoundError, an ImportError with
build instructions, when it is missing). Every function forwards to one operator; the operators
allocate their outputs (functional, no in-place mutation) and run on the current CUDA stream.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ._lib import load_library

load_library()

_ops = torch.ops.int8_hybrid_moe

Tensor = torch.Tensor

#: Names of the operators of the library (torch.ops.int8_hybrid_moe.<name>).
OP_NAMES = (
    "moe_permute",
    "moe_unpermute",
    "silu_and_mul",
    "quantize_hybrid",
    "quantize_per_token",
    "permute_quantize_hybrid",
    "permute_quantize_per_token",
    "silu_and_mul_quantize_hybrid",
    "silu_and_mul_quantize_per_token",
    "cutlass_int8_grouped",
    "cutlass_int8_blockwise_hybrid_grouped",
    "quantize_weights_hybrid",
    "quantize_weights_per_channel",
    "moe_forward",
    "moe_workspace_size",
)


def moe_permute(
    hidden: Tensor,
    topk_ids: Tensor,
    num_experts: int,
    expert_map: Optional[Tensor] = None,
    num_local_experts: int = -1,
    gather: bool = True,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(expert_offsets int64 [E_local+1], permuted_to_token_slot int32 [M*k],
    token_slot_to_permuted int32 [M*k], permuted_hidden [M*k, K] (or [0, K] when gather=False),
    invalid_ids int32 [1])."""
    return _ops.moe_permute(hidden, topk_ids, num_experts, expert_map, num_local_experts, gather)


def moe_unpermute(y: Tensor, topk_weights: Tensor, token_slot_to_permuted: Tensor) -> Tensor:
    return _ops.moe_unpermute(y, topk_weights, token_slot_to_permuted)


def silu_and_mul(x: Tensor, num_valid_rows: Optional[Tensor] = None) -> Tensor:
    return _ops.silu_and_mul(x, num_valid_rows)


def quantize_hybrid(
    x: Tensor,
    block_size: int = 128,
    super_group: int = 256,
    q_max: int = 16,
    num_valid_rows: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    return _ops.quantize_hybrid(x, block_size, super_group, q_max, num_valid_rows)


def quantize_per_token(x: Tensor, num_valid_rows: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    return _ops.quantize_per_token(x, num_valid_rows)


def permute_quantize_hybrid(
    hidden: Tensor,
    token_slot_to_permuted: Tensor,
    top_k: int,
    block_size: int = 128,
    super_group: int = 256,
    q_max: int = 16,
) -> Tuple[Tensor, Tensor, Tensor]:
    return _ops.permute_quantize_hybrid(
        hidden, token_slot_to_permuted, top_k, block_size, super_group, q_max
    )


def permute_quantize_per_token(
    hidden: Tensor, token_slot_to_permuted: Tensor, top_k: int
) -> Tuple[Tensor, Tensor]:
    return _ops.permute_quantize_per_token(hidden, token_slot_to_permuted, top_k)


def silu_and_mul_quantize_hybrid(
    x: Tensor,
    block_size: int = 128,
    super_group: int = 256,
    q_max: int = 16,
    num_valid_rows: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    return _ops.silu_and_mul_quantize_hybrid(x, block_size, super_group, q_max, num_valid_rows)


def silu_and_mul_quantize_per_token(
    x: Tensor, num_valid_rows: Optional[Tensor] = None
) -> Tuple[Tensor, Tensor]:
    return _ops.silu_and_mul_quantize_per_token(x, num_valid_rows)


def cutlass_int8_grouped(
    a: Tensor,
    scale_a: Tensor,
    b: Tensor,
    scale_b: Tensor,
    expert_offsets: Tensor,
    out_dtype: torch.dtype,
    tile: int = 0,
) -> Tensor:
    """Per-token x per-channel grouped GEMM; scale_a [R] or [1], scale_b [E, N] or [E].

    tile (GemmTile): 0 auto, 1 64x64, 2 128x64, 3 128x128 (SM80 kernels), 4 sm90_128x128 and
    5 sm90_128x256 (wgmma/TMA kernel, compute capability 9.0 only).
    """
    return _ops.cutlass_int8_grouped(a, scale_a, b, scale_b, expert_offsets, out_dtype, tile)


def cutlass_int8_blockwise_hybrid_grouped(
    a: Tensor,
    Qa: Tensor,
    Fa: Tensor,
    b: Tensor,
    Qb: Tensor,
    Fb: Tensor,
    expert_offsets: Tensor,
    block_size: int,
    super_group: int,
    q_max: int,
    out_dtype: torch.dtype,
    tile: int = 0,
) -> Tensor:
    """Hybrid blockwise grouped GEMM (docs/FORMAT.md); tile as for cutlass_int8_grouped, without
    3 (128x128) and 5 (sm90_128x256); 4 (sm90_128x128) needs block_size 128."""
    return _ops.cutlass_int8_blockwise_hybrid_grouped(
        a, Qa, Fa, b, Qb, Fb, expert_offsets, block_size, super_group, q_max, out_dtype, tile
    )


def quantize_weights_hybrid(
    w: Tensor, block_size: int = 128, super_group: int = 256, q_max: int = 16
) -> Tuple[Tensor, Tensor, Tensor]:
    return _ops.quantize_weights_hybrid(w, block_size, super_group, q_max)


def quantize_weights_per_channel(w: Tensor) -> Tuple[Tensor, Tensor]:
    return _ops.quantize_weights_per_channel(w)


def moe_forward(
    hidden: Tensor,
    topk_ids: Tensor,
    topk_weights: Tensor,
    w13_q: Tensor,
    w13_Q: Optional[Tensor],
    w13_scale: Tensor,
    w2_q: Tensor,
    w2_Q: Optional[Tensor],
    w2_scale: Tensor,
    scheme: int = 0,
    block_size: int = 128,
    super_group: int = 256,
    q_max: int = 16,
    expert_map: Optional[Tensor] = None,
    fused_silu_quant: int = -1,
    fused_permute_quant: int = -1,
) -> Tensor:
    return _ops.moe_forward(
        hidden,
        topk_ids,
        topk_weights,
        w13_q,
        w13_Q,
        w13_scale,
        w2_q,
        w2_Q,
        w2_scale,
        scheme,
        block_size,
        super_group,
        q_max,
        expert_map,
        fused_silu_quant,
        fused_permute_quant,
    )


def moe_workspace_size(
    num_tokens: int,
    hidden: int,
    intermediate: int,
    num_experts: int,
    num_local_experts: int,
    top_k: int,
    dtype: torch.dtype,
    scheme: int = 0,
    block_size: int = 128,
    super_group: int = 256,
    q_max: int = 16,
    fused_silu_quant: int = -1,
    fused_permute_quant: int = -1,
) -> int:
    """Bytes of workspace the single-op forward allocates (validates on the host; the size
    itself queries CUB on the current device)."""
    return _ops.moe_workspace_size(
        num_tokens,
        hidden,
        intermediate,
        num_experts,
        num_local_experts,
        top_k,
        dtype,
        scheme,
        block_size,
        super_group,
        q_max,
        fused_silu_quant,
        fused_permute_quant,
    )
