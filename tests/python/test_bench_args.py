"""Argument parsing and validation of bench_int8_hybrid_moe.py (CPU, no GPU, no library)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO


def _load():
    spec = importlib.util.spec_from_file_location("bench_py", REPO / "bench_int8_hybrid_moe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def test_defaults_match_native_cli():
    a = bench.parse_args([])
    assert (a.num_tokens, a.hidden, a.intermediate, a.num_experts, a.top_k) == (8192, 2048, 512, 256, 8)
    assert a.dtype == "bfloat16"
    assert (a.quant_block_size, a.super_group_size, a.q_max) == (128, 256, 16)
    assert (a.warmup, a.iters) == (10, 50)
    assert a.profile is False and a.no_check is False and a.json is None
    assert a.seed == 0 and a.routing == "uniform" and a.scheme == "both" and a.check_tokens == 64


def test_all_flags():
    a = bench.parse_args(
        "--num-tokens 16 --hidden 256 --intermediate 128 --num-experts 8 --top-k 2 --dtype float16 "
        "--quant-block-size 64 --super-group-size 4 --q-max 127 --warmup 0 --iters 3 --profile "
        "--seed 7 --routing zipf --no-check --json out.json --scheme per-token --check-tokens 5".split()
    )
    assert a.num_tokens == 16 and a.dtype == "float16" and a.profile and a.no_check
    assert a.json == "out.json" and a.routing == "zipf" and a.q_max == 127 and a.warmup == 0
    assert bench.schemes_of(a) == ["per-token"]
    assert bench.flops_per_forward(a) == 2.0 * 32 * (2 * 128 * 256 + 256 * 128)


@pytest.mark.parametrize(
    "argv, message",
    [
        ("--num-tokens 0", "--num-tokens must be > 0, got 0"),
        ("--hidden -16", "--hidden must be a positive multiple of 16, got -16"),
        ("--hidden 100", "--hidden must be a positive multiple of 16, got 100"),
        ("--intermediate 8", "--intermediate must be a positive multiple of 16, got 8"),
        ("--num-experts 0", "--num-experts must be > 0, got 0"),
        ("--top-k 9 --num-experts 8", "--top-k must be <= --num-experts (8), got 9"),
        ("--top-k 0", "--top-k must be > 0, got 0"),
        ("--quant-block-size 24", "--quant-block-size must be a positive multiple of 64"),
        ("--quant-block-size 96", "--quant-block-size must be a positive multiple of 64"),
        ("--super-group-size 0", "--super-group-size must be > 0, got 0"),
        ("--q-max 0", "--q-max must be in [1, 127], got 0"),
        ("--q-max 128", "--q-max must be in [1, 127], got 128"),
        ("--iters 0", "--iters must be > 0, got 0"),
        ("--warmup -1", "--warmup must be >= 0, got -1"),
        ("--check-tokens 0", "--check-tokens must be > 0, got 0"),
        ("--dtype float32", "invalid choice: 'float32'"),
        ("--routing normal", "invalid choice: 'normal'"),
    ],
)
def test_validation_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv.split())
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_several_errors_reported_together():
    import argparse

    a = argparse.Namespace(**{**vars(bench.parse_args([])), "num_tokens": 0, "q_max": 0})
    errs = bench.validate_args(a)
    assert len(errs) == 2


def test_sample_tokens_and_summary():
    assert bench.sample_tokens(100, 1) == [0]
    assert bench.sample_tokens(100, 3) == [0, 49, 99]
    assert bench.sample_tokens(2, 64) == [0, 1]
    s = bench.summarize([3.0, 1.0, 2.0])
    assert s["median_ms"] == 2.0 and s["samples"] == 3


def test_script_help_and_error_exit_codes():
    r = subprocess.run([sys.executable, str(REPO / "bench_int8_hybrid_moe.py"), "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--quant-block-size" in r.stdout
    assert "VLLM_INT8_HYBRID_FUSED_SILU_QUANT" in r.stdout
    r = subprocess.run([sys.executable, str(REPO / "bench_int8_hybrid_moe.py"), "--top-k", "300"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--top-k must be <= --num-experts (256), got 300" in r.stderr
