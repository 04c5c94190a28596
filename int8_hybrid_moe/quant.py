"""Quantization to the hybrid blockwise and per-token INT8 formats (CUDA kernels)."""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch

from . import ops
from .format import HybridFormat, QuantScheme

DEFAULT_FORMAT = HybridFormat()


class HybridQuantized(NamedTuple):
    q: torch.Tensor  # int8 [rows, K]
    Q: torch.Tensor  # int32 [rows, nb]
    F: torch.Tensor  # float32 [rows, ng]


class PerTokenQuantized(NamedTuple):
    q: torch.Tensor  # int8 [rows, K]
    scale: torch.Tensor  # float32 [rows]


Quantized = Union[HybridQuantized, PerTokenQuantized]


def quantize_hybrid(
    x: torch.Tensor,
    fmt: HybridFormat = DEFAULT_FORMAT,
    num_valid_rows: Optional[torch.Tensor] = None,
) -> HybridQuantized:
    return HybridQuantized(
        *ops.quantize_hybrid(x, fmt.block_size, fmt.super_group, fmt.q_max, num_valid_rows)
    )


def quantize_per_token(
    x: torch.Tensor, num_valid_rows: Optional[torch.Tensor] = None
) -> PerTokenQuantized:
    return PerTokenQuantized(*ops.quantize_per_token(x, num_valid_rows))


def quantize(
    x: torch.Tensor,
    scheme: QuantScheme,
    fmt: HybridFormat = DEFAULT_FORMAT,
    num_valid_rows: Optional[torch.Tensor] = None,
) -> Quantized:
    if QuantScheme(scheme) == QuantScheme.HYBRID:
        return quantize_hybrid(x, fmt, num_valid_rows)
    return quantize_per_token(x, num_valid_rows)


def permute_quantize_hybrid(
    hidden: torch.Tensor,
    token_slot_to_permuted: torch.Tensor,
    top_k: int,
    fmt: HybridFormat = DEFAULT_FORMAT,
) -> HybridQuantized:
    return HybridQuantized(
        *ops.permute_quantize_hybrid(
            hidden, token_slot_to_permuted, top_k, fmt.block_size, fmt.super_group, fmt.q_max
        )
    )


def permute_quantize_per_token(
    hidden: torch.Tensor, token_slot_to_permuted: torch.Tensor, top_k: int
) -> PerTokenQuantized:
    return PerTokenQuantized(*ops.permute_quantize_per_token(hidden, token_slot_to_permuted, top_k))


def silu_and_mul_quantize_hybrid(
    x: torch.Tensor,
    fmt: HybridFormat = DEFAULT_FORMAT,
    num_valid_rows: Optional[torch.Tensor] = None,
) -> HybridQuantized:
    return HybridQuantized(
        *ops.silu_and_mul_quantize_hybrid(
            x, fmt.block_size, fmt.super_group, fmt.q_max, num_valid_rows
        )
    )


def silu_and_mul_quantize_per_token(
    x: torch.Tensor, num_valid_rows: Optional[torch.Tensor] = None
) -> PerTokenQuantized:
    return PerTokenQuantized(*ops.silu_and_mul_quantize_per_token(x, num_valid_rows))


def quantize_weights_hybrid(w: torch.Tensor, fmt: HybridFormat = DEFAULT_FORMAT) -> HybridQuantized:
    """w [E, N, K] (rows = output channels) -> q [E, N, K], Q [E, N, nb], F [E, N, ng]."""
    return HybridQuantized(*ops.quantize_weights_hybrid(w, fmt.block_size, fmt.super_group, fmt.q_max))


def quantize_weights_per_channel(w: torch.Tensor) -> PerTokenQuantized:
    """w [E, N, K] -> q [E, N, K], scale [E, N]."""
    return PerTokenQuantized(*ops.quantize_weights_per_channel(w))
