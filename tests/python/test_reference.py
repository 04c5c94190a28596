"""The torch reference (int8_hybrid_moe.reference) against values worked out by hand from the
format rules (CPU, no library needed)."""

from __future__ import annotations

import math

import pytest
import torch

from int8_hybrid_moe import reference as ref


def test_hybrid_hand_example():
    # One row, K = 32, B = 16, S = 2 (one group): block 0 amax 2, block 1 amax 0.5.
    x = torch.tensor([[1.0, -2.0] * 8 + [0.5] * 16])
    t = ref.quantize_hybrid(x, 16, 2, 16)
    F = torch.tensor(2.0) / torch.tensor(127.0 * 16)
    assert torch.equal(t.F, F.reshape(1, 1))
    assert t.Q.tolist() == [[16, 4]]  # ceil(2/(127F)) = 16, ceil(0.5/(127F)) = 4
    # q = rint(x / (Q*F)): 1/(16F) = 63.5 -> 64 (half to even), -2 -> -127, 0.5/(4F) = 127.
    assert t.q[0, :2].tolist() == [64, -127]
    assert t.q[0, 16:].tolist() == [127] * 16


def test_hybrid_zero_rows_and_groups():
    x = torch.zeros(2, 64)
    x[1, 40] = 3.0  # only block 1 of group 1 (B=16, S=2) is non-zero
    t = ref.quantize_hybrid(x, 16, 2, 8)
    assert t.F[0].tolist() == [1.0, 1.0]  # gmax == 0 -> F = 1
    assert t.Q[0].tolist() == [1, 1, 1, 1]
    assert t.F[1, 0].item() == 1.0
    assert t.F[1, 1].item() == pytest.approx(3.0 / (127 * 8))
    assert t.Q[1].tolist() == [1, 1, 8, 1]
    assert t.q[1, 40].item() == 127 and int(t.q[1].abs().sum()) == 127


def test_hybrid_short_last_block_and_properties():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(7, 80, generator=g) * torch.logspace(-3, 1, 80)).to(torch.bfloat16)
    B, S, qm = 32, 2, 16
    t = ref.quantize_hybrid(x, B, S, qm)
    assert t.Q.shape == (7, 3) and t.F.shape == (7, 2)
    assert int(t.Q.min()) >= 1 and int(t.Q.max()) <= qm
    assert int(t.q.abs().max()) <= 127
    d = ref.dequantize_hybrid(t, B, S)
    # Error at most half a step of the block: 0.5 * Q * F.
    step = (t.Q.float() * t.F[:, torch.arange(3) // S])[:, torch.arange(80) // B]
    assert bool(((d - x.float()).abs() <= 0.5 * step * (1 + 1e-6)).all())


def test_per_token_hand_example():
    x = torch.tensor([[0.0, 1.0, -2.54], [0.0, 0.0, 0.0]])
    t = ref.quantize_per_token(x)
    assert t.scale[1].item() == 1.0
    assert t.scale[0].item() == pytest.approx(2.54 / 127)
    assert t.q[0].tolist() == [0, 50, -127]
    assert t.q[1].tolist() == [0, 0, 0]


def test_hybrid_gemm_matches_dequantized_product():
    g = torch.Generator().manual_seed(1)
    B, S, qm = 16, 2, 16
    a = ref.quantize_hybrid(torch.randn(5, 96, generator=g), B, S, qm)
    w = ref.quantize_hybrid(torch.randn(3, 96, generator=g), B, S, qm)
    got = ref.hybrid_gemm(a, w, B, S)
    want = ref.dequantize_hybrid(a, B, S).double() @ ref.dequantize_hybrid(w, B, S).double().t()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # dequant rounds to fp32


def test_per_token_gemm():
    g = torch.Generator().manual_seed(2)
    a = ref.quantize_per_token(torch.randn(4, 32, generator=g))
    w = ref.quantize_per_token(torch.randn(6, 32, generator=g))
    want = ref.dequantize_per_token(a).double() @ ref.dequantize_per_token(w).double().t()
    torch.testing.assert_close(ref.per_token_gemm(a, w), want, rtol=1e-5, atol=1e-6)  # dequant rounds to fp32


def test_permute_with_map_and_invalid_ids():
    ids = torch.tensor([[1, 0], [2, 1], [5, 0], [3, 2]], dtype=torch.int32)
    emap = torch.tensor([-1, 0, 1, -1], dtype=torch.int32)  # experts 1, 2 are local 0, 1
    r = ref.permute(ids, 4, emap, 2)
    assert r.invalid_ids == 1  # id 5
    assert r.expert_offsets.tolist() == [0, 2, 4]
    kept = r.permuted_to_token_slot[:4].tolist()
    assert kept == [0, 3, 2, 7]  # expert 1: slots (0,0),(1,1); expert 2: (1,0),(3,1)
    t2p = r.token_slot_to_permuted.tolist()
    assert t2p == [0, -1, 2, 1, -1, -1, -1, 3]


def test_unpermute_and_silu():
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    w = torch.tensor([[0.5, 0.25]])
    out = ref.unpermute(y, w, torch.tensor([1, -1], dtype=torch.int32))
    assert out.tolist() == [[1.5, 2.0]]
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]], dtype=torch.bfloat16)
    s = ref.silu_and_mul(x)
    assert s.dtype == torch.bfloat16
    want = torch.tensor([0.0, (1 / (1 + torch.exp(torch.tensor(-1.0)))) * 3.0])
    torch.testing.assert_close(s.float()[0], want.to(torch.bfloat16).float())


def test_quantized_pipeline_close_to_float():
    g = torch.Generator().manual_seed(3)
    M, K, N, E, k = 12, 128, 64, 4, 2
    B, S, qm = 64, 256, 16
    hidden = torch.randn(M, K, generator=g).to(torch.bfloat16)
    w13 = (torch.randn(E, 2 * N, K, generator=g) / K**0.5).to(torch.bfloat16)
    w2 = (torch.randn(E, K, N, generator=g) / N**0.5).to(torch.bfloat16)
    ids, tw = ref.routing_inputs(M, E, k, "zipf", g)
    a = ref.quantize_hybrid(w13, B, S, qm)
    b = ref.quantize_hybrid(w2, B, S, qm)
    q = ref.moe_forward_quantized(hidden, ids, tw, a.q, a.Q, a.F, b.q, b.Q, b.F, True, B, S, qm)
    f = ref.moe_forward_float(hidden, ids, tw, w13, w2)
    assert q.dtype == torch.bfloat16 and q.shape == (M, K)
    assert ref.rel_l2(q, f) < 0.05
    pa = ref.quantize_per_token(w13)
    pb = ref.quantize_per_token(w2)
    qp = ref.moe_forward_quantized(hidden, ids, tw, pa.q, None, pa.scale, pb.q, None, pb.scale, False)
    assert ref.rel_l2(qp, f) < 0.05


def test_agreement_criterion():
    r = torch.tensor([1.0, 2.0, -4.0])
    assert ref.check_agreement(r, r, torch.bfloat16).agree
    bad = r.clone()
    bad[1] += 0.1
    a = ref.check_agreement(bad, r, torch.bfloat16)
    assert not a.agree and a.num_bad == 1 and a.allowed_outside_tight == 0
    nan = r.clone()
    nan[0] = float("nan")
    a = ref.check_agreement(nan, r, torch.bfloat16)
    assert not a.agree and not a.loose_ok and a.num_outside_loose == 1
    # 2 ulp of bf16 at 1.0 is 2^-6.
    assert ref.dtype_ulp(torch.tensor([1.0]), torch.bfloat16).item() == 2.0**-7


def test_agreement_rel_l2_follows_the_largest_row_and_leaves_out_the_worst():
    """Condition (3) scales with the largest row and leaves out the row with the largest error
    (the native CLI test of the same name, on the same numbers)."""
    r = torch.ones((8, 16))
    r[0] = 10.0
    norm = math.sqrt(16 * 100.0 + 7 * 16.0)
    g = r.clone()
    g[0] += 0.14
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert abs(a.rel_l2_limit - 8e-3 * 40.0 / norm) < 1e-12
    assert a.rel_l2 == 0.0 and a.agree, ref.describe_agreement(a)
    g[2] += 0.07
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert abs(a.rel_l2 - 0.07 * 4.0 / norm) < 1e-6 and a.rel_l2_ok and not a.tight_ok
    g[2] += 0.03
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert abs(a.rel_l2 - 0.1 * 4.0 / norm) < 1e-6 and not a.rel_l2_ok and not a.agree
    g = r.clone()
    g[0] += 0.05
    g[2] += 0.1
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert abs(a.rel_l2 - 0.05 * 4.0 / norm) < 1e-6
    a = ref.check_agreement(g, r, torch.bfloat16, row_len=0)
    assert abs(a.rel_l2 - math.sqrt(16 * (0.05**2 + 0.1**2)) / norm) < 1e-6
    g = r.clone()
    g[0, 3] = float("inf")
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert not a.rel_l2_ok and not a.loose_ok


def test_agreement_criterion_conditions():
    """The three conditions one by one, as tests/cpp/test_bench_cli.cpp checks the native CLI's
    check_agreement on the same numbers: 8 token rows of 16 elements, row 3 small."""
    rows, row = 8, 16
    r = torch.ones((rows, row))
    r[3] = 0.01
    # One re-quantized row: all of row 3 off by 0.004 (outside tight, inside loose).
    g = r.clone()
    g[3] += 0.004
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert a.agree, ref.describe_agreement(a)
    assert a.num_bad == row and a.allowed_outside_tight == row
    assert abs(a.rel_l2_limit - 8e-3 * 4.0 / math.sqrt(7 * 16 + 16 * 1e-4)) < 1e-12
    assert "16/128 outside tight" in ref.describe_agreement(a)
    # The same without a row allowance fails (1).
    a = ref.check_agreement(g, r, torch.bfloat16, row_len=0)
    assert not a.agree and not a.tight_ok and a.loose_ok
    # (1): one more element outside tight.
    g[0, 0] += 0.03
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert not a.agree and not a.tight_ok and a.num_bad == row + 1
    # (2): a single element beyond 4 ulp + 5e-2 rms.
    g = r.clone()
    g[0, 5] = 1.0 + 4 * 2.0**-7 + 5e-2 * a.rms_ref + 0.01
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert not a.agree and a.tight_ok and not a.loose_ok and a.worst_err_over_loose > 1
    # (3): a systematic 1-ulp bias inside the tight bound everywhere.
    g = torch.where(r == 1.0, torch.full_like(r, 1.0 + 2.0**-7), r)
    a = ref.check_agreement(g, r, torch.bfloat16)
    assert a.num_bad == 0 and a.loose_ok and not a.rel_l2_ok and not a.agree
    # 0.1% of the elements when that is more than one row.
    big = torch.ones((2000, 1))
    bg = big.clone()
    bg[7] = bg[8] = 1.0 + 3 * 2.0**-7
    a = ref.check_agreement(bg, big, torch.bfloat16)
    assert a.allowed_outside_tight == 2 and a.agree
    bg[9] = bg[7]
    assert not ref.check_agreement(bg, big, torch.bfloat16).tight_ok
    # Size mismatch never agrees.
    assert not ref.check_agreement(torch.ones(3), torch.ones(4), torch.bfloat16).agree


def test_gemm_outputs_rounded_via_fp32():
    """GEMM results are rounded exact value -> fp32 -> dtype (FORMAT.md section 8): a value just
    above a bf16 rounding midpoint by less than half an fp32 ulp rounds down to the midpoint in
    fp32 and then to even in bf16, which a direct float64 -> bf16 rounding would not do."""
    mid = 1.0 + 2.0**-8  # midpoint between the bf16 numbers 1 and 1 + 2^-7
    exact = torch.tensor([mid + 2.0**-30], dtype=torch.float64)
    via_fp32 = exact.to(torch.float32).to(torch.bfloat16)
    assert via_fp32.item() == 1.0
    # The per-token GEMM multiplies the exact scale product with the integer sum: one rounding.
    a = ref.PerTokenRef(torch.tensor([[3, -7, 11]], dtype=torch.int8), torch.tensor([0.1]))
    w = ref.PerTokenRef(torch.tensor([[5, 2, -1]], dtype=torch.int8), torch.tensor([0.3]))
    dot = 3 * 5 - 7 * 2 - 11
    want = (float(torch.tensor(0.1, dtype=torch.float32)) * float(torch.tensor(0.3, dtype=torch.float32))) * dot
    assert ref.per_token_gemm(a, w).item() == want


def test_routing_inputs():
    g = torch.Generator().manual_seed(0)
    ids, w = ref.routing_inputs(50, 16, 4, "uniform", g)
    assert ids.dtype == torch.int32 and ids.shape == (50, 4)
    assert all(len(set(r)) == 4 for r in ids.tolist())
    torch.testing.assert_close(w.sum(1), torch.ones(50))
    with pytest.raises(ValueError):
        ref.routing_inputs(2, 4, 1, "bogus", g)
