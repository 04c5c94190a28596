"""Fake (shape-only) implementations: output shapes and dtypes under FakeTensorMode and on meta
tensors, opcheck, and a symbolic trace of the whole Python orchestrator (CPU: needs the built
library, no GPU)."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

BF16 = torch.bfloat16


def _shapes(out):
    if isinstance(out, (tuple, list)):
        return [(tuple(t.shape), t.dtype) for t in out]
    return (tuple(out.shape), out.dtype)


def _cases(M=5, K=256, N=128, E=4, k=2, dtype=BF16, dev="meta"):
    z = lambda *s, dt=dtype: torch.empty(*s, dtype=dt, device=dev)  # noqa: E731
    R = M * k
    hidden = z(M, K)
    ids = z(M, k, dt=torch.int32)
    w = z(M, k, dt=torch.float32)
    t2p = z(R, dt=torch.int32)
    offs = z(E + 1, dt=torch.int64)
    x2n = z(R, 2 * N)
    return [
        ("moe_permute", (hidden, ids, E), {},
         [((E + 1,), torch.int64), ((R,), torch.int32), ((R,), torch.int32), ((R, K), dtype), ((1,), torch.int32)]),
        ("moe_permute", (hidden, ids, 8, z(8, dt=torch.int32), 3, False), {},
         [((4,), torch.int64), ((R,), torch.int32), ((R,), torch.int32), ((0, K), dtype), ((1,), torch.int32)]),
        ("moe_unpermute", (z(R, K), w, t2p), {}, ((M, K), dtype)),
        ("silu_and_mul", (x2n,), {}, ((R, N), dtype)),
        ("quantize_hybrid", (hidden, 64, 2, 16), {},
         [((M, K), torch.int8), ((M, 4), torch.int32), ((M, 2), torch.float32)]),
        ("quantize_hybrid", (z(M, 272),), {},  # K = 272: short last block
         [((M, 272), torch.int8), ((M, 3), torch.int32), ((M, 1), torch.float32)]),
        ("quantize_per_token", (hidden,), {}, [((M, K), torch.int8), ((M,), torch.float32)]),
        ("permute_quantize_hybrid", (hidden, t2p, k), {},
         [((R, K), torch.int8), ((R, 2), torch.int32), ((R, 1), torch.float32)]),
        ("permute_quantize_per_token", (hidden, t2p, k), {}, [((R, K), torch.int8), ((R,), torch.float32)]),
        ("silu_and_mul_quantize_hybrid", (x2n,), {},
         [((R, N), torch.int8), ((R, 1), torch.int32), ((R, 1), torch.float32)]),
        ("silu_and_mul_quantize_per_token", (x2n,), {}, [((R, N), torch.int8), ((R,), torch.float32)]),
        ("cutlass_int8_grouped",
         (z(R, K, dt=torch.int8), z(R, dt=torch.float32), z(E, N, K, dt=torch.int8), z(E, N, dt=torch.float32), offs, torch.float16),
         {}, ((R, N), torch.float16)),
        ("cutlass_int8_blockwise_hybrid_grouped",
         (z(R, K, dt=torch.int8), z(R, 2, dt=torch.int32), z(R, 1, dt=torch.float32), z(E, N, K, dt=torch.int8),
          z(E, N, 2, dt=torch.int32), z(E, N, 1, dt=torch.float32), offs, 128, 256, 16, BF16),
         {}, ((R, N), BF16)),
        ("quantize_weights_hybrid", (z(E, 2 * N, K),), {},
         [((E, 2 * N, K), torch.int8), ((E, 2 * N, 2), torch.int32), ((E, 2 * N, 1), torch.float32)]),
        ("quantize_weights_per_channel", (z(E, N, K),), {},
         [((E, N, K), torch.int8), ((E, N), torch.float32)]),
        ("moe_forward",
         (hidden, ids, w, z(E, 2 * N, K, dt=torch.int8), z(E, 2 * N, 2, dt=torch.int32), z(E, 2 * N, 1, dt=torch.float32),
          z(E, K, N, dt=torch.int8), z(E, K, 1, dt=torch.int32), z(E, K, 1, dt=torch.float32)),
         {}, ((M, K), dtype)),
    ]


CASE_IDS = [f"{c[0]}-{i}" for i, c in enumerate(_cases())]


@pytest.mark.parametrize("case", range(len(CASE_IDS)), ids=CASE_IDS)
def test_meta_tensors(lib, case):
    name, args, kwargs, expected = _cases()[case]
    out = getattr(lib, name)(*args, **kwargs)
    assert _shapes(out) == expected


@pytest.mark.parametrize("case", range(len(CASE_IDS)), ids=CASE_IDS)
def test_fake_tensor_mode_cuda_device(lib, case):
    with FakeTensorMode(allow_non_fake_inputs=False):
        name, args, kwargs, expected = _cases(dev="cuda")[case]
        out = getattr(lib, name)(*args, **kwargs)
        outs = out if isinstance(out, (tuple, list)) else [out]
        assert all(t.device.type == "cuda" for t in outs)
    assert _shapes(out) == expected


@pytest.mark.parametrize("case", range(len(CASE_IDS)), ids=CASE_IDS)
def test_opcheck_on_meta(lib, case):
    name, args, kwargs, _ = _cases()[case]
    torch.library.opcheck(
        getattr(lib, name).default,
        args,
        kwargs,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


def test_fake_validates_format(lib):
    x = torch.empty(4, 64, dtype=BF16, device="meta")
    with pytest.raises(ValueError, match=r"block_size \(B\)' must be a positive multiple of 16"):
        lib.quantize_hybrid(x, 24)
    with pytest.raises(ValueError, match=r"'q_max' must be in \[1, 127\]"):
        lib.quantize_hybrid(x, 64, 1, 0)
    with pytest.raises(ValueError, match="torch.bfloat16 or torch.float16"):
        lib.silu_and_mul(torch.empty(4, 64, device="meta"))


@pytest.mark.parametrize("scheme", ["hybrid", "per_token"])
@pytest.mark.parametrize("fused", [(True, False), (False, True)])
def test_orchestrator_traces_symbolically(lib, scheme, fused):
    """make_fx with symbolic shapes over the whole orchestrator: every stage has a fake impl."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from int8_hybrid_moe import HybridFormat, QuantScheme
    from int8_hybrid_moe.cutlass_runner import Int8MoEWeights, cutlass_moe_int8

    M, K, N, E, k = 6, 256, 128, 4, 2
    sch = QuantScheme.parse(scheme)
    fmt = HybridFormat(128, 256, 16)
    hybrid = sch == QuantScheme.HYBRID
    wts = [
        torch.zeros(E, 2 * N, K, dtype=torch.int8),
        torch.ones(E, 2 * N, 2, dtype=torch.int32),
        torch.ones((E, 2 * N, 1) if hybrid else (E, 2 * N)),
        torch.zeros(E, K, N, dtype=torch.int8),
        torch.ones(E, K, 1, dtype=torch.int32),
        torch.ones((E, K, 1) if hybrid else (E, K)),
    ]

    def fwd(hidden, ids, weights, w13_q, w13_Q, w13_s, w2_q, w2_Q, w2_s):
        w = Int8MoEWeights(
            sch, fmt, w13_q, w13_Q if hybrid else None, w13_s, w2_q, w2_Q if hybrid else None, w2_s
        )
        return cutlass_moe_int8(
            hidden, ids, weights, w, fused_silu_quant=fused[0], fused_permute_quant=fused[1]
        )

    hidden = torch.zeros(M, K, dtype=BF16)
    ids = torch.zeros(M, k, dtype=torch.int32)
    tw = torch.zeros(M, k)
    gm = make_fx(fwd, tracing_mode="symbolic")(hidden, ids, tw, *wts)
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert "int8_hybrid_moe.moe_permute.default" in targets
    assert "int8_hybrid_moe.moe_unpermute.default" in targets
    gemm = "cutlass_int8_blockwise_hybrid_grouped" if hybrid else "cutlass_int8_grouped"
    assert f"int8_hybrid_moe.{gemm}.default" in targets
    outs = [n for n in gm.graph.nodes if n.op == "output"]
    assert outs
