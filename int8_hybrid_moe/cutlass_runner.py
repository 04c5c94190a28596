"""End-to-end INT8 MoE forward.

Two entry points on the same quantized weights:

* :func:`cutlass_moe_int8` - the orchestrator in Python: one operator per stage
  (permute -> quantize -> GEMM1 -> SiLU-and-mul + quantize -> GEMM2 -> unpermute), which
  torch.compile can trace and which the benchmark times stage by stage;
* :func:`moe_forward` - the single ``moe_forward`` operator (the C++ runner).

Fused paths follow VLLM_INT8_HYBRID_FUSED_SILU_QUANT (default 1: SiLU-and-mul and quantization in
one kernel) and VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT (default 0: permute+quantize in one kernel),
unless overridden by the fused_* arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from . import ops
from .activation import MoEActivation
from .format import HybridFormat, QuantScheme
from .permute import moe_permute, moe_unpermute
from .quant import (
    HybridQuantized,
    PerTokenQuantized,
    permute_quantize_hybrid,
    permute_quantize_per_token,
    quantize_hybrid,
    quantize_per_token,
    quantize_weights_hybrid,
    quantize_weights_per_channel,
    silu_and_mul_quantize_hybrid,
    silu_and_mul_quantize_per_token,
)

ENV_FUSED_SILU_QUANT = "VLLM_INT8_HYBRID_FUSED_SILU_QUANT"
ENV_FUSED_PERMUTE_QUANT = "VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT"

#: Stages of the forward, in order (as MoeStage in moe.h).
STAGES = ("permute", "quant", "gemm1", "act_quant", "gemm2", "unpermute")


def env_switch(name: str, default: bool) -> bool:
    """Reads a 0/1 switch from the environment (unset: default), as the C++ runner does."""
    v = os.environ.get(name)
    if v is None:
        return default
    if v == "0":
        return False
    if v == "1":
        return True
    raise ValueError(f'environment variable {name} must be "0" or "1", got "{v}"')


def _constant_under_compile(fn):
    # torch.compile evaluates these at trace time and bakes the result into the graph (no graph
    # break on os.environ); eager calls read the environment each time.
    marker = getattr(torch.compiler, "assume_constant_result", None)
    return marker(fn) if marker is not None else fn


@_constant_under_compile
def _env_fused_silu_quant() -> bool:
    return env_switch(ENV_FUSED_SILU_QUANT, True)


@_constant_under_compile
def _env_fused_permute_quant() -> bool:
    return env_switch(ENV_FUSED_PERMUTE_QUANT, False)


def resolve_fused_options(
    fused_silu_quant: Optional[bool] = None, fused_permute_quant: Optional[bool] = None
) -> Tuple[bool, bool]:
    """(fused_silu_quant, fused_permute_quant): the arguments, or the environment when None."""
    silu = _env_fused_silu_quant() if fused_silu_quant is None else bool(fused_silu_quant)
    perm = _env_fused_permute_quant() if fused_permute_quant is None else bool(fused_permute_quant)
    return silu, perm


@dataclass
class Int8MoEWeights:
    """Quantized expert weights of this rank (E_local experts).

    Hybrid: w13 (q [E, 2N, K], Q [E, 2N, nbK], F [E, 2N, ngK]), w2 (q [E, K, N], Q, F).
    Per-token: per-channel scales w13_scale [E, 2N], w2_scale [E, K]; w13_Q = w2_Q = None.
    """

    scheme: QuantScheme
    fmt: HybridFormat
    w13_q: torch.Tensor
    w13_Q: Optional[torch.Tensor]
    w13_scale: torch.Tensor
    w2_q: torch.Tensor
    w2_Q: Optional[torch.Tensor]
    w2_scale: torch.Tensor

    @property
    def num_local_experts(self) -> int:
        return self.w13_q.shape[0]

    @property
    def intermediate(self) -> int:
        return self.w13_q.shape[1] // 2

    @property
    def hidden(self) -> int:
        return self.w13_q.shape[2]


def quantize_moe_weights(
    w13: torch.Tensor,
    w2: torch.Tensor,
    scheme: "QuantScheme | str | int" = QuantScheme.HYBRID,
    fmt: HybridFormat = HybridFormat(),
) -> Int8MoEWeights:
    """Quantizes bf16/fp16 weights w13 [E, 2N, K] (gate rows then up rows) and w2 [E, K, N]."""
    scheme = QuantScheme.parse(scheme)
    if scheme == QuantScheme.HYBRID:
        a = quantize_weights_hybrid(w13, fmt)
        b = quantize_weights_hybrid(w2, fmt)
        return Int8MoEWeights(scheme, fmt, a.q, a.Q, a.F, b.q, b.Q, b.F)
    a = quantize_weights_per_channel(w13)
    b = quantize_weights_per_channel(w2)
    return Int8MoEWeights(scheme, fmt, a.q, None, a.scale, b.q, None, b.scale)


def _gemm(a, w_q, w_Q, w_scale, offsets, scheme, fmt, out_dtype):
    if scheme == QuantScheme.HYBRID:
        return ops.cutlass_int8_blockwise_hybrid_grouped(
            a.q, a.Q, a.F, w_q, w_Q, w_scale, offsets,
            fmt.block_size, fmt.super_group, fmt.q_max, out_dtype,
        )
    return ops.cutlass_int8_grouped(a.q, a.scale, w_q, w_scale, offsets, out_dtype)


def cutlass_moe_int8(
    hidden: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    weights: Int8MoEWeights,
    *,
    expert_map: Optional[torch.Tensor] = None,
    activation: MoEActivation = MoEActivation.SILU,
    fused_silu_quant: Optional[bool] = None,
    fused_permute_quant: Optional[bool] = None,
    stage_marker: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """The MoE layer, one operator per stage. Returns [M, K] in hidden.dtype.

    hidden [M, K] bf16/fp16; topk_ids int32 [M, k] (global ids); topk_weights float32 [M, k];
    expert_map optional int32 [E] (global -> local id or -1; slots of other ranks are dropped).
    stage_marker(i), when given, is called before stage i of STAGES and with len(STAGES) at the
    end (e.g. to record CUDA events).
    """
    activation = MoEActivation.parse(activation)
    if activation != MoEActivation.SILU:  # only the gated SiLU exists today
        raise ValueError(f"unsupported activation {activation}")
    scheme = weights.scheme
    fmt = weights.fmt
    fused_silu, fused_perm = resolve_fused_options(fused_silu_quant, fused_permute_quant)
    e_local = weights.w13_q.shape[0]
    num_experts = expert_map.shape[0] if expert_map is not None else e_local
    top_k = topk_ids.shape[1]
    hybrid = scheme == QuantScheme.HYBRID

    def mark(i: int) -> None:
        if stage_marker is not None:
            stage_marker(i)

    mark(0)
    perm = moe_permute(
        hidden,
        topk_ids,
        num_experts,
        expert_map,
        e_local if expert_map is not None else None,
        gather=not fused_perm,
    )
    offsets = perm.expert_offsets
    nvr = perm.num_valid_rows
    t2p = perm.token_slot_to_permuted

    mark(1)
    a: "HybridQuantized | PerTokenQuantized"
    if fused_perm:
        a = (
            permute_quantize_hybrid(hidden, t2p, top_k, fmt)
            if hybrid
            else permute_quantize_per_token(hidden, t2p, top_k)
        )
    else:
        a = (
            quantize_hybrid(perm.permuted_hidden, fmt, nvr)
            if hybrid
            else quantize_per_token(perm.permuted_hidden, nvr)
        )

    mark(2)
    h1 = _gemm(a, weights.w13_q, weights.w13_Q, weights.w13_scale, offsets, scheme, fmt, hidden.dtype)

    mark(3)
    if fused_silu:
        a2 = (
            silu_and_mul_quantize_hybrid(h1, fmt, nvr)
            if hybrid
            else silu_and_mul_quantize_per_token(h1, nvr)
        )
    else:
        act = ops.silu_and_mul(h1, nvr)
        a2 = quantize_hybrid(act, fmt, nvr) if hybrid else quantize_per_token(act, nvr)

    mark(4)
    y = _gemm(a2, weights.w2_q, weights.w2_Q, weights.w2_scale, offsets, scheme, fmt, hidden.dtype)

    mark(5)
    out = moe_unpermute(y, topk_weights, t2p)
    mark(len(STAGES))
    return out


def _switch(v: Optional[bool]) -> int:
    return -1 if v is None else int(bool(v))


def moe_forward(
    hidden: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    weights: Int8MoEWeights,
    *,
    expert_map: Optional[torch.Tensor] = None,
    fused_silu_quant: Optional[bool] = None,
    fused_permute_quant: Optional[bool] = None,
) -> torch.Tensor:
    """The same layer through the single ``moe_forward`` operator (C++ runner, one call).

    fused_* = None leaves the choice to the environment variables (read by the C++ runner).
    """
    fmt = weights.fmt
    return ops.moe_forward(
        hidden,
        topk_ids,
        topk_weights,
        weights.w13_q,
        weights.w13_Q,
        weights.w13_scale,
        weights.w2_q,
        weights.w2_Q,
        weights.w2_scale,
        int(weights.scheme),
        fmt.block_size,
        fmt.super_group,
        fmt.q_max,
        expert_map,
        _switch(fused_silu_quant),
        _switch(fused_permute_quant),
    )
