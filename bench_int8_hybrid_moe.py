#!/usr/bin/env python3
"""Benchmark and check of the INT8 hybrid MoE layer through the PyTorch extension.

Same flags and defaults as the native CLI (build/bench_int8_hybrid_moe), same environment
variables (VLLM_INT8_HYBRID_FUSED_SILU_QUANT, default 1; VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT,
default 0). For each scheme it runs the layer two ways on the same quantized weights: the single
`moe_forward` operator and the Python orchestrator (one operator per stage, timed stage by stage
with CUDA events), checks both against the torch reference of the quantized format
(int8_hybrid_moe.reference, written from docs/FORMAT.md) on a sample of tokens and reports the
error vs the unquantized float64 layer, and times a bf16/fp16 baseline (torch._grouped_mm where
supported, per-expert matmuls otherwise).

Exit code: 0 ok, 1 error, 2 check failed (argument errors also exit 2, via argparse).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import List, Optional, Sequence

INT32_MAX = 2**31 - 1
STAGES = ("permute", "quant", "gemm1", "act_quant", "gemm2", "unpermute")
L2_FLUSH_BYTES = 256 << 20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench_int8_hybrid_moe.py",
        description="End-to-end INT8 MoE forward (permute -> quant -> GEMM1 -> SiLU*up+quant -> "
        "GEMM2 -> unpermute) through the PyTorch extension: correctness check, per-stage "
        "timing, TOPS, and a bf16/fp16 baseline on the same inputs.",
        epilog="Check: the GPU output vs the torch reference of the quantized pipeline on the "
        "sampled tokens; agreement: (1) at least 99.9%% of the elements (all but one token row "
        "below 1000 tokens) within 2 ulp + 1e-3 * rms(ref), (2) every element within 4 ulp + "
        "5e-2 * rms(ref), (3) relative L2 <= max(1e-3, 8e-3 * max row norm / norm(ref)) (docs/FORMAT.md "
        "section 8); exit code 2 when it fails. "
        "Environment: VLLM_INT8_HYBRID_FUSED_SILU_QUANT (0|1, default 1), "
        "VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT (0|1, default 0), INT8_HYBRID_MOE_LIB (path of "
        "libint8_hybrid_moe_ops.so, default <repo>/build/).",
    )
    g = p.add_argument_group("problem")
    g.add_argument("--num-tokens", type=int, default=8192, help="tokens M (default 8192)")
    g.add_argument("--hidden", type=int, default=2048, help="hidden size K, multiple of 16")
    g.add_argument("--intermediate", type=int, default=512, help="expert intermediate size N")
    g.add_argument("--num-experts", type=int, default=256, help="experts E (default 256)")
    g.add_argument("--top-k", type=int, default=8, help="experts per token, 1..E (default 8)")
    g.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16")
    g.add_argument("--routing", choices=("uniform", "zipf"), default="uniform")
    g.add_argument("--seed", type=int, default=0, help="seed of every input (default 0)")
    f = p.add_argument_group("hybrid format")
    f.add_argument("--quant-block-size", type=int, default=128, help="K-block B, a multiple of 64 (default 128)")
    f.add_argument("--super-group-size", type=int, default=256, help="blocks per F (default 256)")
    f.add_argument("--q-max", type=int, default=16, help="largest block scale, 1..127")
    r = p.add_argument_group("run")
    r.add_argument(
        "--scheme",
        choices=("hybrid", "per-token", "both"),
        default="both",
        help="hybrid|per-token|both (default both)",
    )
    r.add_argument("--warmup", type=int, default=10, help="untimed forwards (default 10)")
    r.add_argument("--iters", type=int, default=50, help="timed forwards (default 50)")
    r.add_argument("--no-check", action="store_true", help="skip the correctness check")
    r.add_argument("--check-tokens", type=int, default=64, help="tokens checked (default 64)")
    r.add_argument("--json", metavar="PATH", default=None, help="write every figure as JSON")
    r.add_argument(
        "--profile",
        action="store_true",
        help="wrap exactly one forward (after warm-up, outside the timing loop) in "
        "torch.cuda.profiler.start()/stop() (nsys -c cudaProfilerApi)",
    )
    return p


def validate_args(a: argparse.Namespace) -> List[str]:
    """Returns the messages of every invalid argument (empty when all are valid)."""
    errors = []

    def need(ok: bool, flag: str, expected: str, got) -> None:
        if not ok:
            errors.append(f"{flag} must be {expected}, got {got}")

    need(a.num_tokens > 0, "--num-tokens", "> 0", a.num_tokens)
    need(a.hidden > 0 and a.hidden % 16 == 0, "--hidden", "a positive multiple of 16", a.hidden)
    need(
        a.intermediate > 0 and a.intermediate % 16 == 0,
        "--intermediate",
        "a positive multiple of 16",
        a.intermediate,
    )
    need(a.num_experts > 0, "--num-experts", "> 0", a.num_experts)
    need(a.top_k > 0, "--top-k", "> 0", a.top_k)
    if a.top_k > 0 and a.num_experts > 0:
        need(a.top_k <= a.num_experts, "--top-k", f"<= --num-experts ({a.num_experts})", a.top_k)
    need(
        a.quant_block_size > 0 and a.quant_block_size % 64 == 0,
        "--quant-block-size",
        "a positive multiple of 64 (the hybrid GEMM's K tile divides it)",
        a.quant_block_size,
    )
    need(a.super_group_size > 0, "--super-group-size", "> 0", a.super_group_size)
    need(1 <= a.q_max <= 127, "--q-max", "in [1, 127]", a.q_max)
    need(a.warmup >= 0, "--warmup", ">= 0", a.warmup)
    need(a.iters > 0, "--iters", "> 0", a.iters)
    need(a.check_tokens > 0, "--check-tokens", "> 0", a.check_tokens)
    need(a.seed >= 0, "--seed", "a non-negative integer", a.seed)
    if a.num_tokens > 0 and a.top_k > 0:
        need(
            a.num_tokens <= INT32_MAX // a.top_k,
            "--num-tokens",
            f"<= {INT32_MAX // a.top_k} so that num_tokens * top_k fits int32",
            a.num_tokens,
        )
    return errors


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses and validates; exits with code 2 and a message naming the flag when invalid."""
    parser = build_parser()
    args = parser.parse_args(argv)
    errors = validate_args(args)
    if errors:
        parser.error("; ".join(errors))
    return args


def schemes_of(args: argparse.Namespace) -> List[str]:
    return ["hybrid", "per-token"] if args.scheme == "both" else [args.scheme]


def flops_per_forward(args: argparse.Namespace) -> float:
    """2 * M * top_k * (2N*K + K*N): multiply-adds of both GEMMs."""
    rows = args.num_tokens * args.top_k
    return 2.0 * rows * (2 * args.intermediate * args.hidden + args.hidden * args.intermediate)


def sample_tokens(M: int, n: int) -> List[int]:
    """n tokens spread over [0, M) (the native CLI's choice)."""
    n = min(n, M)
    if n <= 0:
        return []
    if n == 1:
        return [0]
    return [i * (M - 1) // (n - 1) for i in range(n)]


def summarize(ms: List[float]) -> dict:
    s = sorted(ms)

    def at(q: float) -> float:
        pos = q * (len(s) - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (pos - lo) * (s[hi] - s[lo])

    return {"median_ms": at(0.5), "p10_ms": at(0.1), "p90_ms": at(0.9), "samples": len(s)}


# ------------------------------------------------------------------------------------------------
# GPU part
# ------------------------------------------------------------------------------------------------
class _Timer:
    """CUDA-event timing of a callable over iterations, L2 flushed before each one."""

    def __init__(self, torch):
        self.torch = torch
        self.flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")

    def time(self, fn, warmup: int, iters: int) -> List[float]:
        torch = self.torch
        for _ in range(warmup):
            fn()
        ms = []
        for _ in range(iters):
            self.flush.zero_()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            ms.append(start.elapsed_time(end))
        return ms


def _baseline(torch, hidden, topk_ids, topk_weights, w13, w2):
    """Unquantized MoE in the activation dtype; returns (forward callable, method name)."""
    M, K = hidden.shape
    E, two_n, _ = w13.shape
    N = two_n // 2
    top_k = topk_ids.shape[1]
    flat = topk_ids.flatten().to(torch.int64)
    counts = torch.bincount(flat, minlength=E)
    offs = torch.cumsum(counts, 0).to(torch.int32)
    w13_t = w13.transpose(1, 2)
    w2_t = w2.transpose(1, 2)

    def permute():
        order = torch.sort(flat, stable=True).indices
        return order, hidden[order // top_k]

    def finish(order, y):
        w = topk_weights.flatten()[order].unsqueeze(1)
        out = torch.zeros((M, K), dtype=torch.float32, device=hidden.device)
        out.index_add_(0, order // top_k, y.float() * w)
        return out.to(hidden.dtype)

    def act(h):
        g = h[:, :N].float()
        return (torch.nn.functional.silu(g) * h[:, N:].float()).to(hidden.dtype)

    def grouped():
        order, x = permute()
        h = torch._grouped_mm(x, w13_t, offs=offs)
        y = torch._grouped_mm(act(h), w2_t, offs=offs)
        return finish(order, y)

    host_counts = counts.tolist()

    def per_expert():
        order, x = permute()
        y = torch.empty((x.shape[0], K), dtype=hidden.dtype, device=hidden.device)
        start = 0
        for e, n in enumerate(host_counts):
            if n:
                h = x[start : start + n] @ w13[e].t()
                y[start : start + n] = act(h) @ w2[e].t()
            start += n
        return finish(order, y)

    if hasattr(torch, "_grouped_mm"):
        try:
            grouped()
            torch.cuda.synchronize()
            return grouped, "torch._grouped_mm"
        except (RuntimeError, NotImplementedError, TypeError):
            pass
    return per_expert, "per-expert torch.matmul"


def run(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():
        print("error: bench_int8_hybrid_moe.py needs a CUDA GPU (torch.cuda.is_available() is "
              "False)", file=sys.stderr)
        return 1
    import int8_hybrid_moe as pkg
    from int8_hybrid_moe import cutlass_runner as runner
    from int8_hybrid_moe import reference as ref
    from int8_hybrid_moe.format import HybridFormat, QuantScheme

    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float16
    M, K, N, E, k = args.num_tokens, args.hidden, args.intermediate, args.num_experts, args.top_k
    fmt = HybridFormat(args.quant_block_size, args.super_group_size, args.q_max)
    fused_silu, fused_perm = runner.resolve_fused_options()
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    print(f"device: {props.name} (sm_{props.major}{props.minor}), torch {torch.__version__}, "
          f"library {pkg.load_library()}")
    print(f"problem: M={M} K={K} N={N} E={E} top_k={k} dtype={args.dtype} routing={args.routing} "
          f"seed={args.seed}; format B={fmt.block_size} S={fmt.super_group} q_max={fmt.q_max}; "
          f"fused_silu_quant={int(fused_silu)} fused_permute_quant={int(fused_perm)}")

    gen_cpu = torch.Generator().manual_seed(args.seed)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    hidden = torch.randn((M, K), generator=gen, device=dev, dtype=torch.float32).to(dtype)
    w13 = (torch.randn((E, 2 * N, K), generator=gen, device=dev, dtype=torch.float32)
           / math.sqrt(K)).to(dtype)
    w2 = (torch.randn((E, K, N), generator=gen, device=dev, dtype=torch.float32)
          / math.sqrt(N)).to(dtype)
    topk_ids, topk_weights = ref.routing_inputs(M, E, k, args.routing, gen_cpu, dev)
    flops = flops_per_forward(args)
    timer = _Timer(torch)
    report = {
        "args": vars(args),
        "device": props.name,
        "torch": torch.__version__,
        "fused_silu_quant": fused_silu,
        "fused_permute_quant": fused_perm,
        "flops_per_forward": flops,
        "agreement_criterion": ref.AGREEMENT_CRITERION,
        "schemes": {},
    }
    if not args.no_check:
        print(f"check criterion: {ref.AGREEMENT_CRITERION}")
    sample = torch.tensor(sample_tokens(M, args.check_tokens), device=dev, dtype=torch.int64)
    float_ref = None
    if not args.no_check:
        float_ref = ref.moe_forward_float(hidden[sample], topk_ids[sample], topk_weights[sample],
                                          w13, w2, num_experts=E)
    all_ok = True

    for name in schemes_of(args):
        scheme = QuantScheme.HYBRID if name == "hybrid" else QuantScheme.PER_TOKEN
        w = runner.quantize_moe_weights(w13, w2, scheme, fmt)
        entry = {}

        def op_forward():
            return runner.moe_forward(hidden, topk_ids, topk_weights, w)

        def py_forward(marker=None):
            return runner.cutlass_moe_int8(hidden, topk_ids, topk_weights, w, stage_marker=marker)

        out_op = op_forward()
        out_py = py_forward()
        torch.cuda.synchronize()
        entry["op_and_orchestrator_identical"] = bool(torch.equal(out_op, out_py))

        if not args.no_check:
            check = {}
            # Weight quantization: exact (q, Q, F / scale) on three experts.
            for e in sorted({0, E // 2, E - 1}):
                for wname, wt, q_, Q_, s_ in (("w13", w13, w.w13_q, w.w13_Q, w.w13_scale),
                                              ("w2", w2, w.w2_q, w.w2_Q, w.w2_scale)):
                    if scheme == QuantScheme.HYBRID:
                        t = ref.quantize_hybrid(wt[e], fmt.block_size, fmt.super_group, fmt.q_max)
                        same = (torch.equal(t.q, q_[e]) and torch.equal(t.Q, Q_[e])
                                and torch.equal(t.F, s_[e]))
                    else:
                        t = ref.quantize_per_token(wt[e])
                        same = torch.equal(t.q, q_[e]) and torch.equal(t.scale, s_[e])
                    check.setdefault("weights_exact", True)
                    check["weights_exact"] &= bool(same)
            qref = ref.moe_forward_quantized(
                hidden[sample], topk_ids[sample], topk_weights[sample],
                w.w13_q, w.w13_Q, w.w13_scale, w.w2_q, w.w2_Q, w.w2_scale,
                scheme == QuantScheme.HYBRID, fmt.block_size, fmt.super_group, fmt.q_max,
                num_experts=E,
            )
            agreements = {}
            for label, out in (("moe_forward_op", out_op), ("orchestrator", out_py)):
                agr = ref.check_agreement(out[sample], qref, dtype, row_len=K)
                agreements[label] = agr
                check[label] = agr._asdict()
                check[label]["rel_l2_vs_float"] = ref.rel_l2(out[sample], float_ref)
            check["quantized_ref_rel_l2_vs_float"] = ref.rel_l2(qref, float_ref)
            ok = (check["weights_exact"] and check["moe_forward_op"]["agree"]
                  and check["orchestrator"]["agree"])
            check["ok"] = ok
            all_ok &= ok
            entry["check"] = check
            print(f"[{name}] check on {len(sample)} tokens: {'PASS' if ok else 'FAIL'}; "
                  f"weights exact={check['weights_exact']}; rel L2 vs float="
                  f"{check['moe_forward_op']['rel_l2_vs_float']:.4e}")
            for label in ("moe_forward_op", "orchestrator"):
                print(f"[{name}]   {label}: {ref.describe_agreement(agreements[label])}")

        if args.profile and name == schemes_of(args)[0]:
            for _ in range(args.warmup):
                op_forward()
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
            op_forward()
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            print(f"[{name}] profiled exactly one forward (moe_forward op)")

        op_ms = summarize(timer.time(op_forward, args.warmup, args.iters))
        py_ms = summarize(timer.time(py_forward, args.warmup, args.iters))
        # Stage breakdown of the orchestrator: events at each stage boundary.
        stage_ms = [[] for _ in STAGES]
        for it in range(args.warmup + args.iters):
            events = [torch.cuda.Event(enable_timing=True) for _ in range(len(STAGES) + 1)]
            timer.flush.zero_()
            py_forward(lambda i: events[i].record())
            events[-1].synchronize()
            if it >= args.warmup:
                for i in range(len(STAGES)):
                    stage_ms[i].append(events[i].elapsed_time(events[i + 1]))
        stages = {s: summarize(v)["median_ms"] for s, v in zip(STAGES, stage_ms)}
        entry.update({
            "moe_forward_op": dict(op_ms, tops=flops / (op_ms["median_ms"] * 1e-3) / 1e12),
            "orchestrator": dict(py_ms, tops=flops / (py_ms["median_ms"] * 1e-3) / 1e12),
            "stages_median_ms": stages,
        })
        report["schemes"][name] = entry
        print(f"[{name}] moe_forward op: {op_ms['median_ms']:.3f} ms (p10 {op_ms['p10_ms']:.3f}, "
              f"p90 {op_ms['p90_ms']:.3f}) {entry['moe_forward_op']['tops']:.1f} TOPS; "
              f"orchestrator: {py_ms['median_ms']:.3f} ms {entry['orchestrator']['tops']:.1f} TOPS")
        print(f"[{name}] stages (orchestrator, median ms): "
              + ", ".join(f"{s} {v:.3f}" for s, v in stages.items()))
        del w

    base_fn, method = _baseline(torch, hidden, topk_ids, topk_weights, w13, w2)
    base_ms = summarize(timer.time(base_fn, args.warmup, args.iters))
    base = dict(base_ms, method=method, tops=flops / (base_ms["median_ms"] * 1e-3) / 1e12)
    if float_ref is not None:
        base["rel_l2_vs_float"] = ref.rel_l2(base_fn()[sample], float_ref)
    report["baseline"] = base
    print(f"[baseline {args.dtype}, {method}] {base_ms['median_ms']:.3f} ms "
          f"{base['tops']:.1f} TFLOPS" + (f"; rel L2 vs float {base['rel_l2_vs_float']:.4e}"
                                           if "rel_l2_vs_float" in base else ""))
    report["check_ok"] = None if args.no_check else all_ok
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
        print(f"wrote {args.json}")
    if not args.no_check:
        print("CHECK PASSED" if all_ok else "CHECK FAILED")
    return 0 if (args.no_check or all_ok) else 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ImportError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
