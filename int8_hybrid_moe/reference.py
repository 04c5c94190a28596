"""Torch reference of the formats and of the MoE layer, written from the rules of docs/FORMAT.md.

Pure torch (any device, no compiled code), independent of the kernels and of the C++ reference:
the oracle of the Python tests and of bench_int8_hybrid_moe.py's check.

Hybrid format, per row and with all arithmetic in float32 in this order:
  amax[b] = max |x| over block b (cols [b*B, min((b+1)*B, K))), gmax[g] = max amax over the
  blocks of super group g, F = gmax / (127*q_max) (1 where gmax == 0),
  Q = clamp(ceil(amax / (127*F)), 1, q_max), q = clamp(rint(x / (Q*F)), -127, 127).
Per-token: scale = absmax / 127 (1 where 0), q = clamp(rint(x / scale), -127, 127).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

INT8_MAX = 127


class HybridRef(NamedTuple):
    q: torch.Tensor  # int8 [..., K]
    Q: torch.Tensor  # int32 [..., nb]
    F: torch.Tensor  # float32 [..., ng]


class PerTokenRef(NamedTuple):
    q: torch.Tensor  # int8 [..., K]
    scale: torch.Tensor  # float32 [...]


def _ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


def quantize_hybrid(x: torch.Tensor, block_size: int, super_group: int, q_max: int) -> HybridRef:
    """x [..., K] (any float dtype; converted to float32 exactly for bf16/fp16)."""
    lead = x.shape[:-1]
    K = x.shape[-1]
    xf = x.reshape(-1, K).to(torch.float32)
    R = xf.shape[0]
    nb = _ceil_div(K, block_size)
    ng = _ceil_div(nb, super_group)
    pad = torch.zeros((R, nb * block_size), dtype=torch.float32, device=x.device)
    pad[:, :K] = xf.abs()
    amax = pad.view(R, nb, block_size).amax(dim=2)  # [R, nb]
    gpad = torch.zeros((R, ng * super_group), dtype=torch.float32, device=x.device)
    gpad[:, :nb] = amax
    gmax = gpad.view(R, ng, super_group).amax(dim=2)  # [R, ng]
    denom = torch.tensor(float(INT8_MAX * q_max), dtype=torch.float32, device=x.device)
    F = torch.where(gmax == 0, torch.ones_like(gmax), gmax / denom)
    blk_group = torch.arange(nb, device=x.device) // super_group
    Fb = F[:, blk_group]  # [R, nb]
    step = torch.tensor(float(INT8_MAX), dtype=torch.float32, device=x.device) * Fb
    Q = torch.clamp(torch.ceil(amax / step), 1, q_max)
    scale = Q * Fb  # float32 product
    col_blk = torch.arange(K, device=x.device) // block_size
    q = torch.clamp(torch.round(xf / scale[:, col_blk]), -INT8_MAX, INT8_MAX)
    return HybridRef(
        q.to(torch.int8).reshape(*lead, K),
        Q.to(torch.int32).reshape(*lead, nb),
        F.reshape(*lead, ng),
    )


def dequantize_hybrid(t: HybridRef, block_size: int, super_group: int) -> torch.Tensor:
    K = t.q.shape[-1]
    col_blk = torch.arange(K, device=t.q.device) // block_size
    scale = t.Q.to(torch.float32) * t.F[..., torch.arange(t.Q.shape[-1], device=t.q.device) // super_group]
    return t.q.to(torch.float32) * scale[..., col_blk]


def quantize_per_token(x: torch.Tensor) -> PerTokenRef:
    """x [..., K] -> q [..., K], scale [...] (weights [E, N, K]: one scale per channel)."""
    xf = x.to(torch.float32)
    amax = xf.abs().amax(dim=-1)
    scale = torch.where(
        amax == 0,
        torch.ones_like(amax),
        amax / torch.tensor(float(INT8_MAX), dtype=torch.float32, device=x.device),
    )
    q = torch.clamp(torch.round(xf / scale.unsqueeze(-1)), -INT8_MAX, INT8_MAX)
    return PerTokenRef(q.to(torch.int8), scale)


def dequantize_per_token(t: PerTokenRef) -> torch.Tensor:
    return t.q.to(torch.float32) * t.scale.unsqueeze(-1)


def silu_and_mul(x: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """silu(x[:, :N]) * x[:, N:] in float32, rounded to dtype (x.dtype by default)."""
    N = x.shape[-1] // 2
    g = x[..., :N].to(torch.float32)
    u = x[..., N:].to(torch.float32)
    return (g / (1.0 + torch.exp(-g)) * u).to(dtype or x.dtype)


def hybrid_gemm(a: HybridRef, w: HybridRef, block_size: int, super_group: int) -> torch.Tensor:
    """Exact value (float64, before the final rounding) of
    out[r, n] = sum_g Fa*Fw * (sum_{b in g} Qa*Qw * sum_{k in b} qa*qw); a [R, K], w [N, K]."""
    R, K = a.q.shape
    N = w.q.shape[0]
    nb = a.Q.shape[1]
    dev = a.q.device
    A = torch.zeros((R, nb * block_size), dtype=torch.float64, device=dev)
    W = torch.zeros((N, nb * block_size), dtype=torch.float64, device=dev)
    A[:, :K] = a.q.to(torch.float64)
    W[:, :K] = w.q.to(torch.float64)
    # Integer block dot products (exact in float64: |sum| < 2^53).
    blk = torch.bmm(
        A.view(R, nb, block_size).permute(1, 0, 2), W.view(N, nb, block_size).permute(1, 2, 0)
    )  # [nb, R, N]
    blk = blk * (a.Q.to(torch.float64).t().unsqueeze(2) * w.Q.to(torch.float64).t().unsqueeze(1))
    out = torch.zeros((R, N), dtype=torch.float64, device=dev)
    for g in range(a.F.shape[1]):
        grp = blk[g * super_group : (g + 1) * super_group].sum(dim=0)  # exact integers
        out += a.F[:, g].to(torch.float64).unsqueeze(1) * w.F[:, g].to(torch.float64).unsqueeze(0) * grp
    return out


def per_token_gemm(a: PerTokenRef, w: PerTokenRef) -> torch.Tensor:
    """Exact value (float64) of scale_a[r] * scale_w[n] * sum_k qa*qw; a [R, K], w [N, K]."""
    acc = a.q.to(torch.float64) @ w.q.to(torch.float64).t()  # exact integers (|acc| < 2^53)
    sa = a.scale.to(torch.float64).reshape(-1, 1).expand(acc.shape[0], 1)
    sw = w.scale.to(torch.float64).reshape(1, -1).expand(1, acc.shape[1])
    # (sa * sw) is exact in float64 (two 24-bit significands); one rounding for the product with
    # the integer sum, as ref::per_token_gemm does. (acc * sa) * sw would round twice.
    return (sa * sw) * acc


class RoutingRef(NamedTuple):
    expert_offsets: torch.Tensor  # int64 [E_local + 1]
    permuted_to_token_slot: torch.Tensor  # int32 [M*k], kept rows first (then dropped ones)
    token_slot_to_permuted: torch.Tensor  # int32 [M*k], -1 if dropped
    invalid_ids: int
    local_ids: torch.Tensor  # int64 [M, k]: local expert of each slot, -1 if dropped


def permute(
    topk_ids: torch.Tensor,
    num_experts: int,
    expert_map: Optional[torch.Tensor] = None,
    num_local_experts: Optional[int] = None,
) -> RoutingRef:
    """Stable grouping of the (token, slot) pairs by local expert; dropped slots at the end."""
    ids = topk_ids.to(torch.int64)
    M, k = ids.shape
    invalid = (ids < 0) | (ids >= num_experts)
    safe = torch.where(invalid, torch.zeros_like(ids), ids)
    if expert_map is not None:
        local = expert_map.to(torch.int64)[safe]
        e_local = int(num_local_experts) if num_local_experts is not None else int((expert_map >= 0).sum())
    else:
        local = safe
        e_local = num_experts
    local = torch.where(invalid, torch.full_like(local, -1), local)
    keep = local >= 0
    key = torch.where(keep, local, torch.full_like(local, e_local)).flatten()
    order = torch.sort(key, stable=True).indices
    counts = torch.bincount(local[keep].flatten(), minlength=e_local)
    offsets = torch.zeros(e_local + 1, dtype=torch.int64, device=ids.device)
    offsets[1:] = torch.cumsum(counts, 0)
    t2p = torch.full((M * k,), -1, dtype=torch.int64, device=ids.device)
    t2p[order] = torch.arange(M * k, device=ids.device)
    t2p = torch.where(keep.flatten(), t2p, torch.full_like(t2p, -1))
    return RoutingRef(
        offsets, order.to(torch.int32), t2p.to(torch.int32), int(invalid.sum()), local
    )


def unpermute(
    y: torch.Tensor, topk_weights: torch.Tensor, token_slot_to_permuted: torch.Tensor
) -> torch.Tensor:
    """float64 sum over slots of topk_weights * y[row] (dropped slots contribute nothing)."""
    M, k = topk_weights.shape
    rows = token_slot_to_permuted.to(torch.int64).view(M, k)
    valid = rows >= 0
    g = y.to(torch.float64)[rows.clamp(min=0)]  # [M, k, K]
    w = torch.where(valid, topk_weights.to(torch.float64), torch.zeros_like(topk_weights, dtype=torch.float64))
    return (g * w.unsqueeze(-1)).sum(dim=1)


def _slots_by_expert(local_ids: torch.Tensor, e_local: int):
    """For each local expert: (token index, slot index) tensors of its slots."""
    flat = local_ids.flatten()
    order = torch.argsort(flat, stable=True)
    sorted_ids = flat[order]
    counts = torch.bincount(flat[flat >= 0], minlength=e_local).tolist()
    start = int((sorted_ids < 0).sum())
    k = local_ids.shape[1]
    for e in range(e_local):
        n = counts[e]
        if n:
            idx = order[start : start + n]
            yield e, idx // k, idx % k
        start += n


def local_expert_ids(
    topk_ids: torch.Tensor, num_experts: int, expert_map: Optional[torch.Tensor] = None
) -> torch.Tensor:
    ids = topk_ids.to(torch.int64)
    invalid = (ids < 0) | (ids >= num_experts)
    safe = torch.where(invalid, torch.zeros_like(ids), ids)
    local = expert_map.to(torch.int64)[safe] if expert_map is not None else safe
    return torch.where(invalid, torch.full_like(local, -1), local)


def moe_forward_float(
    hidden: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    expert_map: Optional[torch.Tensor] = None,
    num_experts: Optional[int] = None,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Unquantized layer in compute_dtype (no intermediate rounding): [M, K] float."""
    M, K = hidden.shape
    e_local, two_n, _ = w13.shape
    N = two_n // 2
    E = num_experts if num_experts is not None else (expert_map.shape[0] if expert_map is not None else e_local)
    local = local_expert_ids(topk_ids, E, expert_map)
    x = hidden.to(compute_dtype)
    out = torch.zeros((M, K), dtype=compute_dtype, device=hidden.device)
    for e, tok, slot in _slots_by_expert(local, e_local):
        h = x[tok] @ w13[e].to(compute_dtype).t()
        act = h[:, :N] * torch.sigmoid(h[:, :N]) * h[:, N:]
        y = act @ w2[e].to(compute_dtype).t()
        out.index_add_(0, tok, y * topk_weights[tok, slot].to(compute_dtype).unsqueeze(1))
    return out


def moe_forward_quantized(
    hidden: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    w13_q: Sequence[torch.Tensor],
    w13_Q: Optional[torch.Tensor],
    w13_scale: torch.Tensor,
    w2_q: torch.Tensor,
    w2_Q: Optional[torch.Tensor],
    w2_scale: torch.Tensor,
    hybrid: bool,
    block_size: int = 128,
    super_group: int = 256,
    q_max: int = 16,
    expert_map: Optional[torch.Tensor] = None,
    num_experts: Optional[int] = None,
) -> torch.Tensor:
    """The quantized pipeline as the GPU runs it (docs/FORMAT.md section 8): quantize the hidden
    rows, GEMM1 (exact value -> fp32 -> dtype), silu_and_mul (rounded), quantize, GEMM2 (same
    rounding), weighted sum over the slots in fp32 (slots ascending), rounded to dtype.
    Returns [M, K] in hidden.dtype."""
    dtype = hidden.dtype
    M, K = hidden.shape
    e_local = w13_q.shape[0]
    E = num_experts if num_experts is not None else (expert_map.shape[0] if expert_map is not None else e_local)
    local = local_expert_ids(topk_ids, E, expert_map)
    if hybrid:
        xq = quantize_hybrid(hidden, block_size, super_group, q_max)
    else:
        xq = quantize_per_token(hidden)
    k = topk_ids.shape[1]
    ys = torch.zeros((M, k, K), dtype=torch.float32, device=hidden.device)  # dropped slots: 0
    for e, tok, slot in _slots_by_expert(local, e_local):
        if hybrid:
            a = HybridRef(xq.q[tok], xq.Q[tok], xq.F[tok])
            h1 = hybrid_gemm(a, HybridRef(w13_q[e], w13_Q[e], w13_scale[e]), block_size, super_group)
        else:
            a = PerTokenRef(xq.q[tok], xq.scale[tok])
            h1 = per_token_gemm(a, PerTokenRef(w13_q[e], w13_scale[e]))
        # Exact value rounded to fp32, then to the dtype (the GPU's fp32 epilogue).
        act = silu_and_mul(h1.to(torch.float32).to(dtype), dtype)
        if hybrid:
            aq = quantize_hybrid(act, block_size, super_group, q_max)
            y = hybrid_gemm(aq, HybridRef(w2_q[e], w2_Q[e], w2_scale[e]), block_size, super_group)
        else:
            aq = quantize_per_token(act)
            y = per_token_gemm(aq, PerTokenRef(w2_q[e], w2_scale[e]))
        ys[tok, slot] = y.to(torch.float32).to(dtype).to(torch.float32)
    # Weighted sum in fp32 from 0, slots ascending, each product rounded before the addition.
    w32 = topk_weights.to(torch.float32)
    valid = (local >= 0).to(torch.float32)
    out = torch.zeros((M, K), dtype=torch.float32, device=hidden.device)
    for j in range(k):
        prod = (w32[:, j] * valid[:, j]).unsqueeze(1) * ys[:, j]
        out = out + prod
    return out.to(dtype)


def dtype_ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of dtype numbers at |x| (the native CLI's dtype_ulp): 2^(e - mantissa bits)."""
    mant, min_exp = (7, -126) if dtype == torch.bfloat16 else (10, -14)
    ax = x.abs().to(torch.float64)
    _, ex = torch.frexp(torch.where(ax > 0, ax, torch.ones_like(ax)))
    e = torch.where(ax > 0, ex.to(torch.float64) - 1, torch.full_like(ax, float(min_exp)))
    e = e.clamp(min=min_exp)
    return torch.pow(2.0, e - mant)


class Agreement(NamedTuple):
    agree: bool  # all three conditions
    num_bad: int  # elements outside the tight bound
    count: int
    max_abs_err: float
    worst_err_over_tol: float  # largest |err| / tight bound
    rms_ref: float
    allowed_outside_tight: int  # condition (1)
    num_outside_loose: int  # condition (2): must be 0 (non-finite elements count here)
    worst_err_over_loose: float
    rel_l2: float  # condition (3): over the rows but the one with the largest error
    rel_l2_limit: float
    tight_ok: bool
    loose_ok: bool
    rel_l2_ok: bool


#: The agreement criterion, shared with the native CLI (tools/bench_cli.h, docs/FORMAT.md
#: section 8). tight = 2 ulp + 1e-3 rms, loose = 4 ulp + 5e-2 rms.
AGREEMENT_CRITERION = (
    "(1) at least 99.9% of the checked elements (all but one token row when fewer than 1000 "
    "tokens are checked) within the tight bound |gpu - ref| <= 2 ulp_dtype(ref) + 1e-3 * "
    "rms(ref); (2) every element finite and within the loose bound 4 ulp_dtype(ref) + 5e-2 * "
    "rms(ref) (one re-quantization step of one intermediate); (3) relative L2 of gpu - ref over "
    "all token rows but the one with the largest error <= max(1e-3, 8e-3 * max row norm / "
    "norm(ref)), i.e. 8e-3 / sqrt(tokens) for rows of equal norm (docs/FORMAT.md section 8)"
)
TIGHT_ULPS, TIGHT_RMS = 2.0, 1e-3
LOOSE_ULPS, LOOSE_RMS = 4.0, 5e-2
MAX_OUTSIDE_TIGHT_FRACTION = 1e-3
REL_L2_LIMIT, REL_L2_ONE_STEP_PER_ROW = 1e-3, 8e-3


def check_agreement(
    got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, row_len: Optional[int] = None
) -> Agreement:
    """The criterion of AGREEMENT_CRITERION (the native CLI's check_agreement). row_len: elements
    per token row (default: the last dimension of a 2-D ref; 0 disables the row allowances)."""
    if row_len is None:
        row_len = ref.shape[-1] if ref.dim() == 2 else 0
    g = got.to(torch.float64).flatten()
    r = ref.to(torch.float64).flatten()
    n = r.numel()
    if g.numel() != n:
        inf = float("inf")
        return Agreement(False, n, n, inf, inf, 0.0, 0, n, inf, inf, REL_L2_LIMIT, False, False, False)
    rms = float(r.pow(2).mean().sqrt()) if n else 0.0
    d = (g - r).abs()
    ulp = dtype_ulp(r, dtype)
    tight = TIGHT_ULPS * ulp + TIGHT_RMS * rms
    loose = LOOSE_ULPS * ulp + LOOSE_RMS * rms
    finite = torch.isfinite(d)
    inf_t = torch.full_like(d, float("inf"))
    over_tight = torch.where(finite, d / tight, inf_t)
    over_loose = torch.where(finite, d / loose, inf_t)
    num_bad = int((~(over_tight <= 1.0)).sum())
    num_loose = int((~(over_loose <= 1.0)).sum())
    allowed = max(int(math.floor(MAX_OUTSIDE_TIGHT_FRACTION * n)), max(int(row_len), 0))
    den = float(r.pow(2).sum())
    err_sq = torch.where(finite, d, inf_t).pow(2)
    num = float(err_sq.sum())
    limit = REL_L2_LIMIT
    left_out = 0.0  # the error of the row with the largest error (see the native CLI)
    if row_len and row_len > 0 and n > 0 and den > 0:
        # One step in the largest row (8e-3 / sqrt(tokens) when the rows have equal norms).
        pad = (-n) % row_len
        rows = torch.cat([r, r.new_zeros(pad)]).view(-1, row_len)
        max_row_ss = float(rows.pow(2).sum(dim=1).max())
        limit = max(REL_L2_LIMIT, REL_L2_ONE_STEP_PER_ROW * math.sqrt(max_row_ss / den))
        left_out = float(torch.cat([err_sq, err_sq.new_zeros(pad)]).view(-1, row_len).sum(1).max())
    rest = max(0.0, num - left_out) if math.isfinite(num) else float("inf")
    rl2 = math.sqrt(rest / den) if den > 0 else (0.0 if rest == 0 else float("inf"))
    tight_ok, loose_ok, rl2_ok = num_bad <= allowed, num_loose == 0, rl2 <= limit
    return Agreement(
        tight_ok and loose_ok and rl2_ok,
        num_bad,
        n,
        float(torch.where(finite, d, inf_t).max()) if n else 0.0,
        float(over_tight.max()) if n else 0.0,
        rms,
        allowed,
        num_loose,
        float(over_loose.max()) if n else 0.0,
        rl2,
        limit,
        tight_ok,
        loose_ok,
        rl2_ok,
    )


def describe_agreement(a: Agreement) -> str:
    """One line with the counts of each condition (the native CLI's describe_agreement)."""
    return (
        f"{a.num_bad}/{a.count} outside tight (allowed {a.allowed_outside_tight}"
        f"{'' if a.tight_ok else ', FAILED'}), worst err/tight {a.worst_err_over_tol:.3g}, "
        f"{a.num_outside_loose} outside loose (worst err/loose {a.worst_err_over_loose:.3g}"
        f"{'' if a.loose_ok else ', FAILED'}), rel-L2 {a.rel_l2:.3g} (limit {a.rel_l2_limit:.3g}"
        f"{'' if a.rel_l2_ok else ', FAILED'})"
    )


def rel_l2(got: torch.Tensor, ref: torch.Tensor) -> float:
    g = got.to(torch.float64)
    r = ref.to(torch.float64)
    den = float(r.pow(2).sum())
    num = float((g - r).pow(2).sum())
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return (num / den) ** 0.5


def routing_inputs(
    num_tokens: int,
    num_experts: int,
    top_k: int,
    routing: str = "uniform",
    generator: Optional[torch.Generator] = None,
    device: "torch.device | str" = "cpu",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(topk_ids int32 [M, k], topk_weights float32 [M, k]): softmax of N(0,1) logits over the
    top k, renormalized; 'zipf' adds -ln(rank+1) per expert (popularity ~ 1/rank) on a random
    ranking, as the native CLI does."""
    logits = torch.randn((num_tokens, num_experts), generator=generator, dtype=torch.float32)
    if routing == "zipf":
        order = torch.randperm(num_experts, generator=generator)
        bias = torch.empty(num_experts, dtype=torch.float32)
        bias[order] = -torch.log(torch.arange(num_experts, dtype=torch.float32) + 1.0)
        logits = logits + bias
    elif routing != "uniform":
        raise ValueError(f"routing must be 'uniform' or 'zipf', got {routing!r}")
    vals, ids = torch.topk(logits, top_k, dim=1)
    w = torch.softmax(vals, dim=1)
    return ids.to(torch.int32).to(device), w.to(torch.float32).to(device)
