"""bench_int8_hybrid_moe.py's default problem completes with its check passing (GPU)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_default_run_passes_check(cuda, lib, tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "bench_int8_hybrid_moe.py"), "--warmup", "2", "--iters", "5",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CHECK PASSED" in r.stdout
    rep = json.loads(out.read_text())
    assert rep["check_ok"] is True
    for name in ("hybrid", "per-token"):
        s = rep["schemes"][name]
        assert s["check"]["weights_exact"]
        assert s["moe_forward_op"]["tops"] > 0
        assert set(s["stages_median_ms"]) == {"permute", "quant", "gemm1", "act_quant", "gemm2", "unpermute"}
    assert rep["baseline"]["median_ms"] > 0


def test_profile_flag_small(cuda, lib):
    r = subprocess.run(
        [sys.executable, str(REPO / "bench_int8_hybrid_moe.py"), "--num-tokens", "256", "--hidden", "512",
         "--intermediate", "256", "--num-experts", "16", "--top-k", "4", "--dtype", "float16",
         "--routing", "zipf", "--warmup", "1", "--iters", "2", "--profile"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "profiled exactly one forward" in r.stdout and "CHECK PASSED" in r.stdout
