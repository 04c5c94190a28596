"""Helpers of the GPU tests: inputs and tolerances."""

from __future__ import annotations

import torch

from int8_hybrid_moe import reference as ref

DTYPES = [torch.bfloat16, torch.float16]


def ulp_rtol(dtype: torch.dtype) -> float:
    """One unit in the last place, relative (rounding-boundary flips of the final rounding)."""
    return 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10


def randn(shape, dtype, gen, scale=1.0, device="cuda"):
    return (torch.randn(shape, generator=gen, dtype=torch.float32) * scale).to(dtype).to(device)


def routing(M, E, k, gen, active=None, device="cuda"):
    """topk ids (distinct per token) restricted to the experts in `active` (others stay empty)."""
    active = list(range(E)) if active is None else list(active)
    assert k <= len(active)
    logits = torch.randn((M, len(active)), generator=gen)
    vals, idx = torch.topk(logits, k, dim=1)
    ids = torch.tensor(active, dtype=torch.int64)[idx]
    w = torch.softmax(vals, dim=1)
    return ids.to(torch.int32).to(device), w.to(torch.float32).to(device)


def offsets_from_counts(counts, device="cuda"):
    o = torch.zeros(len(counts) + 1, dtype=torch.int64)
    o[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)
    return o.to(device)


def assert_close_final(got, want64, dtype, rel_floor=1e-5):
    """got (dtype) vs an exact float64 value before its final rounding: within one ulp of dtype
    plus a floor relative to the largest magnitude (fp32 accumulation of the float terms)."""
    want = want64.to(dtype).to(torch.float64)
    g = got.to(torch.float64)
    tol = ref.dtype_ulp(want64, dtype) + rel_floor * float(want64.abs().max().clamp(min=1e-30))
    bad = (g - want).abs() > tol
    assert not bool(bad.any()), (
        f"{int(bad.sum())} of {bad.numel()} differ; max diff {float((g - want).abs().max())}"
    )
