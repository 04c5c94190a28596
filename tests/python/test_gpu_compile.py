"""torch.compile of the whole Python orchestrator runs and matches eager (GPU)."""

from __future__ import annotations

import pytest
import torch

from gpu_util import randn, routing


@pytest.mark.parametrize("scheme", ["hybrid", "per_token"])
@pytest.mark.parametrize("fused_perm", [False, True, None])
def test_compiled_forward_matches_eager(cuda, lib, scheme, fused_perm):
    from int8_hybrid_moe.cutlass_runner import cutlass_moe_int8, quantize_moe_weights

    gen = torch.Generator().manual_seed(7)
    K, N, E, k, dtype = 256, 128, 8, 2, torch.bfloat16
    w13 = randn((E, 2 * N, K), dtype, gen, K**-0.5)
    w2 = randn((E, K, N), dtype, gen, N**-0.5)
    w = quantize_moe_weights(w13, w2, scheme)

    def fwd(hidden, ids, tw):
        if fused_perm is None:  # both switches from the environment (defaults: 1, 0)
            return cutlass_moe_int8(hidden, ids, tw, w)
        return cutlass_moe_int8(hidden, ids, tw, w, fused_silu_quant=True, fused_permute_quant=fused_perm)

    torch._dynamo.reset()
    compiled = torch.compile(fwd, fullgraph=True, dynamic=True)
    for M in (33, 64, 1):
        hidden = randn((M, K), dtype, gen)
        ids, tw = routing(M, E, k, gen)
        eager = fwd(hidden, ids, tw)
        got = compiled(hidden, ids, tw)
        assert got.shape == eager.shape and got.dtype == eager.dtype
        assert torch.equal(got, eager)


def test_compiled_single_op_forward(cuda, lib):
    from int8_hybrid_moe.cutlass_runner import moe_forward, quantize_moe_weights

    gen = torch.Generator().manual_seed(8)
    K, N, E, k, dtype = 256, 64, 4, 2, torch.float16
    w = quantize_moe_weights(randn((E, 2 * N, K), dtype, gen, 0.06), randn((E, K, N), dtype, gen, 0.1))
    hidden = randn((20, K), dtype, gen)
    ids, tw = routing(20, E, k, gen)
    torch._dynamo.reset()
    f = torch.compile(lambda h, i, t: moe_forward(h, i, t, w), fullgraph=True)
    assert torch.equal(f(hidden, ids, tw), moe_forward(hidden, ids, tw, w))
