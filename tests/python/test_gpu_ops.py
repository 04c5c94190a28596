"""Every operator on the GPU against the torch reference written from the format rules
(int8_hybrid_moe.reference): quantization exactly (q, Q, F / scale), the rest to the rounding of
the final dtype. Skipped without CUDA or without the built library."""

from __future__ import annotations

import pytest
import torch

from gpu_util import DTYPES, assert_close_final, offsets_from_counts, randn, routing, ulp_rtol
from int8_hybrid_moe import reference as ref

FORMATS = [(128, 256, 16), (64, 2, 16), (64, 1, 127), (128, 1, 1)]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


# ---- quantization -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("R, K", [(1, 256), (37, 272), (64, 1024)])
def test_quantize_hybrid_exact(cuda, lib, gen, dtype, fmt, R, K):
    B, S, qm = fmt
    x = randn((R, K), dtype, gen) * torch.logspace(-4, 1, K, device="cuda").to(dtype)
    x[0, : min(K, B)] = 0  # an all-zero block (and, with S=1, a zero group)
    q, Q, F = lib.quantize_hybrid(x, B, S, qm)
    t = ref.quantize_hybrid(x, B, S, qm)
    assert torch.equal(F, t.F)
    assert torch.equal(Q, t.Q)
    assert torch.equal(q, t.q)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantize_hybrid_num_valid_rows(cuda, lib, gen, dtype):
    x = randn((20, 256), dtype, gen)
    nvr = torch.tensor([7], dtype=torch.int64, device="cuda")
    q, Q, F = lib.quantize_hybrid(x, 128, 256, 16, nvr)
    t = ref.quantize_hybrid(x[:7], 128, 256, 16)
    assert torch.equal(q[:7], t.q) and torch.equal(Q[:7], t.Q) and torch.equal(F[:7], t.F)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R, K", [(1, 16), (33, 2048)])
def test_quantize_per_token_exact(cuda, lib, gen, dtype, R, K):
    x = randn((R, K), dtype, gen, 3.0)
    if R > 1:
        x[1] = 0
    q, s = lib.quantize_per_token(x)
    t = ref.quantize_per_token(x)
    assert torch.equal(s, t.scale) and torch.equal(q, t.q)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantize_weights_exact(cuda, lib, gen, dtype):
    w = randn((3, 48, 320), dtype, gen, 0.05)
    q, Q, F = lib.quantize_weights_hybrid(w, 64, 2, 16)
    t = ref.quantize_hybrid(w, 64, 2, 16)
    assert Q.shape == (3, 48, 5) and F.shape == (3, 48, 3)
    assert torch.equal(q, t.q) and torch.equal(Q, t.Q) and torch.equal(F, t.F)
    q, s = lib.quantize_weights_per_channel(w)
    t = ref.quantize_per_token(w)
    assert s.shape == (3, 48) and torch.equal(q, t.q) and torch.equal(s, t.scale)


# ---- activation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R, N", [(1, 16), (50, 512)])
def test_silu_and_mul(cuda, lib, gen, dtype, R, N):
    x = randn((R, 2 * N), dtype, gen, 3.0)
    got = lib.silu_and_mul(x)
    want = ref.silu_and_mul(x)
    assert got.dtype == dtype and got.shape == (R, N)
    torch.testing.assert_close(got.float(), want.float(), rtol=ulp_rtol(dtype), atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheme", ["hybrid", "per_token"])
def test_silu_and_mul_quantize_fused_equals_unfused(cuda, lib, gen, dtype, scheme):
    x = randn((40, 2 * 256), dtype, gen, 2.0)
    act = lib.silu_and_mul(x)
    if scheme == "hybrid":
        fused = lib.silu_and_mul_quantize_hybrid(x, 64, 2, 16)
        unfused = lib.quantize_hybrid(act, 64, 2, 16)
        t = ref.quantize_hybrid(act, 64, 2, 16)
    else:
        fused = lib.silu_and_mul_quantize_per_token(x)
        unfused = lib.quantize_per_token(act)
        t = ref.quantize_per_token(act)
    for a, b, c in zip(fused, unfused, t):
        assert torch.equal(a, b) and torch.equal(a, c)


# ---- routing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, E, k", [(1, 8, 1), (1, 8, 8), (100, 16, 4), (0, 4, 2)])
def test_moe_permute_and_unpermute(cuda, lib, gen, dtype, M, E, k):
    K = 64
    hidden = randn((M, K), dtype, gen)
    ids, w = routing(M, E, k, gen, active=range(0, E, 2) if k <= E // 2 else None)
    offs, p2t, t2p, ph, inv = lib.moe_permute(hidden, ids, E)
    r = ref.permute(ids, E)
    assert torch.equal(offs, r.expert_offsets)
    kept = int(r.expert_offsets[-1])
    assert torch.equal(p2t[:kept], r.permuted_to_token_slot[:kept])
    assert torch.equal(t2p, r.token_slot_to_permuted)
    assert int(inv.item()) == 0
    assert torch.equal(ph[:kept], hidden[p2t[:kept].long() // k])
    y = randn((M * k, K), dtype, gen)
    out = lib.moe_unpermute(y, w, t2p)
    assert out.shape == (M, K) and out.dtype == dtype
    if M:
        want = ref.unpermute(y, w, t2p)
        torch.testing.assert_close(out.double(), want.to(dtype).double(), rtol=ulp_rtol(dtype), atol=1e-5)


def test_moe_permute_expert_map_and_invalid_ids(cuda, lib, gen):
    M, E, k, K = 64, 8, 3, 32
    hidden = randn((M, K), torch.bfloat16, gen)
    ids, _ = routing(M, E, k, gen)
    ids[0, 0] = 11  # out of range: dropped and counted
    ids[5, 1] = -3
    emap = torch.tensor([-1, 0, -1, 1, 2, -1, -1, 3], dtype=torch.int32, device="cuda")
    offs, p2t, t2p, ph, inv = lib.moe_permute(hidden, ids, E, emap, 4)
    r = ref.permute(ids, E, emap, 4)
    assert int(inv.item()) == 2 == r.invalid_ids
    assert torch.equal(offs, r.expert_offsets)
    kept = int(offs[-1])
    assert torch.equal(p2t[:kept], r.permuted_to_token_slot[:kept])
    assert torch.equal(t2p, r.token_slot_to_permuted)
    # The map-only variant gives the same maps.
    offs2, p2t2, t2p2, ph2, _ = lib.moe_permute(hidden, ids, E, emap, 4, False)
    assert ph2.shape == (0, K) and torch.equal(offs2, offs) and torch.equal(t2p2, t2p)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheme", ["hybrid", "per_token"])
def test_permute_quantize_fused(cuda, lib, gen, dtype, scheme):
    M, E, k, K = 33, 8, 2, 256
    hidden = randn((M, K), dtype, gen)
    ids, _ = routing(M, E, k, gen)
    offs, p2t, t2p, ph, _ = lib.moe_permute(hidden, ids, E)
    kept = int(offs[-1])
    if scheme == "hybrid":
        fused = lib.permute_quantize_hybrid(hidden, t2p, k, 128, 256, 16)
        unfused = lib.quantize_hybrid(ph, 128, 256, 16)
    else:
        fused = lib.permute_quantize_per_token(hidden, t2p, k)
        unfused = lib.quantize_per_token(ph)
    for a, b in zip(fused, unfused):
        assert torch.equal(a[:kept], b[:kept])


# ---- GEMMs -----------------------------------------------------------------------------------------
COUNTS = [[0, 5, 0, 70, 1, 0], [1], [0, 0, 3]]
SM90_TILE, SM90_WIDE_TILE = 4, 5  # GemmTile::kSm90_128x128, kSm90_128x256 (per-token only)
IS_SM90 = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("counts", COUNTS)
@pytest.mark.parametrize("fmt", [(128, 256, 16), (256, 2, 16), (64, 2, 127), (64, 1, 1)])
def test_hybrid_grouped_gemm(cuda, lib, gen, dtype, counts, fmt):
    B, S, qm = fmt
    E, N, K = len(counts), 96, 320
    R = sum(counts) + 3  # rows past expert_offsets[E] are not computed
    a = ref.quantize_hybrid(randn((R, K), dtype, gen), B, S, qm)
    w = ref.quantize_hybrid(randn((E, N, K), dtype, gen, 0.1), B, S, qm)
    offs = offsets_from_counts(counts)
    # auto, 64x64, 128x64 (the hybrid GEMM has no 128x128 tile), sm90_128x128 on H100/H200
    # (the GPU script builds for the card's arch) for B a multiple of 128; B = 256 with K = 320 is
    # a two-K-tile block then a short one.
    for tile in [0, 1, 2] + ([SM90_TILE] if IS_SM90 and B % 128 == 0 else []):
        out = lib.cutlass_int8_blockwise_hybrid_grouped(
            a.q, a.Q, a.F, w.q, w.Q, w.F, offs, B, S, qm, dtype, tile
        )
        assert out.shape == (R, N) and out.dtype == dtype
        for e in range(E):
            lo, hi = int(offs[e]), int(offs[e + 1])
            if hi > lo:
                want = ref.hybrid_gemm(
                    ref.HybridRef(a.q[lo:hi], a.Q[lo:hi], a.F[lo:hi]),
                    ref.HybridRef(w.q[e], w.Q[e], w.F[e]), B, S,
                )
                assert_close_final(out[lo:hi], want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("counts", COUNTS)
@pytest.mark.parametrize("per_row, per_channel", [(True, True), (False, False), (True, False)])
def test_per_token_grouped_gemm(cuda, lib, gen, dtype, counts, per_row, per_channel):
    E, N, K = len(counts), 80, 256
    R = sum(counts)
    a = ref.quantize_per_token(randn((R, K), dtype, gen))
    w = ref.quantize_per_token(randn((E, N, K), dtype, gen, 0.1))
    sa = a.scale if per_row else torch.tensor([0.02], device="cuda")
    sb = w.scale if per_channel else torch.rand(E, generator=gen).add(0.5).mul(1e-3).to("cuda")
    offs = offsets_from_counts(counts)
    for tile in [0, 1, 2, 3] + ([SM90_TILE, SM90_WIDE_TILE] if IS_SM90 else []):
        out = lib.cutlass_int8_grouped(a.q, sa, w.q, sb, offs, dtype, tile)
        for e in range(E):
            lo, hi = int(offs[e]), int(offs[e + 1])
            if hi > lo:
                sw = sb[e] if per_channel else sb[e].expand(N)
                want = ref.per_token_gemm(
                    ref.PerTokenRef(a.q[lo:hi], sa[lo:hi] if per_row else sa.expand(hi - lo)),
                    ref.PerTokenRef(w.q[e], sw),
                )
                assert_close_final(out[lo:hi], want, dtype)


# ---- whole forward ---------------------------------------------------------------------------------
def _layer(gen, M, K, N, E, k, dtype, active=None):
    hidden = randn((M, K), dtype, gen)
    w13 = randn((E, 2 * N, K), dtype, gen, K**-0.5)
    w2 = randn((E, K, N), dtype, gen, N**-0.5)
    ids, tw = routing(M, E, k, gen, active)
    return hidden, w13, w2, ids, tw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheme", ["hybrid", "per_token"])
@pytest.mark.parametrize("fused_silu, fused_perm", [(True, False), (False, True), (False, False)])
@pytest.mark.parametrize("M", [1, 77])
def test_moe_forward(cuda, lib, gen, dtype, scheme, fused_silu, fused_perm, M):
    from int8_hybrid_moe import HybridFormat, QuantScheme
    from int8_hybrid_moe.cutlass_runner import cutlass_moe_int8, moe_forward, quantize_moe_weights

    K, N, E, k = 256, 128, 8, 2
    fmt = HybridFormat(128, 256, 16)
    hidden, w13, w2, ids, tw = _layer(gen, M, K, N, E, k, dtype, active=[1, 2, 5, 6])  # empty experts
    w = quantize_moe_weights(w13, w2, scheme, fmt)
    out_py = cutlass_moe_int8(hidden, ids, tw, w, fused_silu_quant=fused_silu, fused_permute_quant=fused_perm)
    out_op = moe_forward(hidden, ids, tw, w, fused_silu_quant=fused_silu, fused_permute_quant=fused_perm)
    hybrid = w.scheme == QuantScheme.HYBRID
    want = ref.moe_forward_quantized(hidden, ids, tw, w.w13_q, w.w13_Q, w.w13_scale, w.w2_q, w.w2_Q,
                                     w.w2_scale, hybrid, fmt.block_size, fmt.super_group, fmt.q_max)
    for out in (out_py, out_op):
        assert out.shape == (M, K) and out.dtype == dtype
        agr = ref.check_agreement(out, want, dtype)
        assert agr.agree, agr
    fl = ref.moe_forward_float(hidden, ids, tw, w13, w2)
    assert ref.rel_l2(out_op, fl) < 0.05


@pytest.mark.parametrize("scheme", ["hybrid", "per_token"])
def test_moe_forward_expert_map(cuda, lib, gen, scheme):
    from int8_hybrid_moe.cutlass_runner import cutlass_moe_int8, moe_forward, quantize_moe_weights

    M, K, N, E, k, dtype = 40, 256, 64, 8, 3, torch.bfloat16
    hidden, w13, w2, ids, tw = _layer(gen, M, K, N, E, k, dtype)
    emap = torch.tensor([-1, 0, 1, -1, 2, -1, 3, -1], dtype=torch.int32, device="cuda")
    local = [1, 2, 4, 6]
    w = quantize_moe_weights(w13[local], w2[local], scheme)
    out_py = cutlass_moe_int8(hidden, ids, tw, w, expert_map=emap)
    out_op = moe_forward(hidden, ids, tw, w, expert_map=emap)
    want = ref.moe_forward_quantized(hidden, ids, tw, w.w13_q, w.w13_Q, w.w13_scale, w.w2_q, w.w2_Q,
                                     w.w2_scale, scheme == "hybrid", expert_map=emap)
    for out in (out_py, out_op):
        assert ref.check_agreement(out, want, dtype).agree


def test_moe_forward_no_tokens(cuda, lib, gen):
    from int8_hybrid_moe.cutlass_runner import cutlass_moe_int8, moe_forward, quantize_moe_weights

    hidden, w13, w2, ids, tw = _layer(gen, 0, 128, 64, 4, 2, torch.bfloat16)
    w = quantize_moe_weights(w13, w2)
    assert moe_forward(hidden, ids, tw, w).shape == (0, 128)
    assert cutlass_moe_int8(hidden, ids, tw, w).shape == (0, 128)


# ---- errors -----------------------------------------------------------------------------------------
def test_errors_name_the_argument(cuda, lib):
    x = torch.zeros(4, 256, dtype=torch.bfloat16, device="cuda")
    with pytest.raises(ValueError, match=r"quantize_hybrid: argument 'x' must be of dtype torch.bfloat16 or torch.float16"):
        lib.quantize_hybrid(x.float())
    with pytest.raises(ValueError, match=r"argument 'x' must be contiguous"):
        lib.quantize_hybrid(x.t())
    with pytest.raises(ValueError, match=r"argument 'x.size\(1\) \(K\)' must be a positive multiple of 16, got 40"):
        lib.quantize_per_token(x[:, :40].contiguous())
    a = torch.zeros(8, 256, dtype=torch.int8, device="cuda")
    b = torch.zeros(2, 32, 256, dtype=torch.int8, device="cuda")
    offs = torch.tensor([0, 4, 8], device="cuda")
    Qa = torch.ones(8, 2, dtype=torch.int32, device="cuda")
    Fa = torch.ones(8, 1, device="cuda")
    Qb = torch.ones(2, 32, 2, dtype=torch.int32, device="cuda")
    Fb = torch.ones(2, 32, 1, device="cuda")
    with pytest.raises(ValueError, match=r"argument 'Qb' must be of shape \[2, 32, 2\], got \[2, 32, 3\]"):
        lib.cutlass_int8_blockwise_hybrid_grouped(a, Qa, Fa, b, Qb[:, :, :1].repeat(1, 1, 3), Fb, offs, 128, 256, 16, torch.bfloat16)
    with pytest.raises(ValueError, match=r"expert_offsets' must be of length E \+ 1 = 3"):
        lib.cutlass_int8_grouped(a, torch.ones(8, device="cuda"), b, torch.ones(2, 32, device="cuda"), offs[:2], torch.bfloat16)
    # A rule of the C++ API (the hybrid GEMM needs 64 | B): its message comes through intact.
    Qa3 = torch.ones(8, 16, dtype=torch.int32, device="cuda")
    Qb3 = torch.ones(2, 32, 16, dtype=torch.int32, device="cuda")
    with pytest.raises(ValueError, match=r"block_size"):
        lib.cutlass_int8_blockwise_hybrid_grouped(a, Qa3, Fa, b, Qb3, Fb, offs, 16, 256, 16, torch.bfloat16)
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match="same device"):
            lib.moe_unpermute(x, torch.ones(4, 1, device="cuda:1"), torch.zeros(4, dtype=torch.int32, device="cuda"))
