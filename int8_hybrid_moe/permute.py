"""Routing: permute token slots into expert-grouped rows and back (CUDA operators)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from . import ops


class PermuteResult(NamedTuple):
    expert_offsets: torch.Tensor  # int64 [E_local + 1]; rows of local expert e: [o[e], o[e+1])
    permuted_to_token_slot: torch.Tensor  # int32 [M*k]: flat (token*k + slot) of each row
    token_slot_to_permuted: torch.Tensor  # int32 [M*k]: row of each (token, slot), -1 if dropped
    permuted_hidden: torch.Tensor  # [M*k, K] gathered rows, or [0, K] when not gathered
    invalid_ids: torch.Tensor  # int32 [1]: ids outside [0, E) (dropped)

    @property
    def num_valid_rows(self) -> torch.Tensor:
        """Device int64 [1] view of expert_offsets[E_local]: rows kept on this rank."""
        return self.expert_offsets[-1:]


def moe_permute(
    hidden: torch.Tensor,
    topk_ids: torch.Tensor,
    num_experts: int,
    expert_map: Optional[torch.Tensor] = None,
    num_local_experts: Optional[int] = None,
    gather: bool = True,
) -> PermuteResult:
    """Groups the M*top_k (token, slot) pairs by local expert (stable in token order).

    expert_map (int32 [num_experts], global id -> local id or -1) keeps only this rank's experts;
    num_local_experts is then required (it sizes expert_offsets). Without a map every expert is
    local.
    """
    if num_local_experts is None:
        if expert_map is not None:
            raise ValueError(
                "moe_permute: argument 'num_local_experts' must be given when expert_map is given"
            )
        num_local_experts = -1
    return PermuteResult(
        *ops.moe_permute(hidden, topk_ids, num_experts, expert_map, num_local_experts, gather)
    )


def moe_unpermute(
    y: torch.Tensor, topk_weights: torch.Tensor, token_slot_to_permuted: torch.Tensor
) -> torch.Tensor:
    """out[t] = sum_j topk_weights[t, j] * y[token_slot_to_permuted[t*k + j]] (fp32 sum)."""
    return ops.moe_unpermute(y, topk_weights, token_slot_to_permuted)
