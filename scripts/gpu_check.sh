#!/usr/bin/env bash
# The ONE script for the GPU machine: builds there (for the card's own arch only), runs every GPU
# test (C++ and Python), compute-sanitizer on small configs, the kernel / GEMM / end-to-end
# benchmarks, and prints a short summary table last.
#
#   scripts/gpu_check.sh [steps...]     steps: build test bench profile sanitize (default: all,
#                                       in that order; sanitizers last, they are the slowest)
#                                       pytest: only the Python tests, verbose (after a build)
#
# Env: INT8HYBRID_CUDA_ARCHS (default 90), BUILD_DIR (default build), OUT (logs and JSON go there
# when set), JOBS (default nproc).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${BUILD_DIR:-$ROOT/build}"
ARCHS="${INT8HYBRID_CUDA_ARCHS:-90}"
LOGDIR="${OUT:-$BUILD/gpu_check}"
mkdir -p "$LOGDIR"
STEPS=("$@")
[[ ${#STEPS[@]} -eq 0 ]] && STEPS=(build test bench profile sanitize)
want() { local s; for s in "${STEPS[@]}"; do [[ "$s" == "$1" ]] && return 0; done; return 1; }
SUMMARY=()
add() { SUMMARY+=("$(printf '%-34s %s' "$1" "$2")"); }
export PYTHONUNBUFFERED=1

echo "== device =="
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
CARD="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
add "card" "${CARD:-unknown} (SM80 kernels measured on this card too; no A100/L40 here)"

if want build || want test; then
  echo "== build + all tests (scripts/run_tests.sh, archs $ARCHS) =="
  t0=$(date +%s)
  CMAKE_ARGS="-DINT8HYBRID_CUDA_ARCHS=$ARCHS" BUILD_DIR="$BUILD" \
    "$ROOT/scripts/run_tests.sh" 2>&1 | tee "$LOGDIR/tests.log"
  rc=${PIPESTATUS[0]}
  add "build + tests wall time" "$(( $(date +%s) - t0 )) s"
  ctest_line="$(grep -E 'tests passed|tests failed' "$LOGDIR/tests.log" | tail -1)"
  skipped="$(grep -c '(Skipped)' "$LOGDIR/tests.log" || true)"
  add "ctest" "${ctest_line:-no ctest summary} (skipped: $skipped)"
  py_line="$(grep -E '^[0-9]+ (passed|failed)|[0-9]+ passed|[0-9]+ failed|no tests ran' "$LOGDIR/tests.log" | tail -1)"
  add "pytest" "${py_line:-no pytest summary}"
  add "tests exit code" "$rc"
fi

if want pytest; then
  echo "== Python tests only (verbose) =="
  INT8_HYBRID_MOE_LIB="$BUILD/libint8_hybrid_moe_ops.so" PYTHONFAULTHANDLER=1 \
    python3 -m pytest "$ROOT/tests/python" -v -rs 2>&1 | tee "$LOGDIR/pytest.log"
  add "pytest (verbose)" "exit ${PIPESTATUS[0]}: $(grep -E '[0-9]+ (passed|failed)' "$LOGDIR/pytest.log" | tail -1)"
fi

if want bench; then
  echo "== benchmarks =="
  "$BUILD/bench_kernels" --json "$LOGDIR/bench_kernels.json" 2>&1 | tee "$LOGDIR/bench.log"
  add "bench_kernels exit" "${PIPESTATUS[0]}"
  "$BUILD/bench_gemm" --json "$LOGDIR/bench_gemm.json" 2>&1 | tee -a "$LOGDIR/bench.log"
  add "bench_gemm exit" "${PIPESTATUS[0]}"
  # The auto-tiled rows and cuBLAS, each with the card's median SM clock during its loop.
  while IFS= read -r line; do add "${line%%|*}" "${line#*|}"; done < <(python3 - "$LOGDIR/bench_gemm.json" <<'PY' 2>/dev/null
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
for g in ("gemm1", "gemm2"):
    parts = []
    for r in rows:
        if r["gemm"] != g or not (r["tile"].startswith("auto") or r["tile"] == "-"):
            continue
        c = r.get("card", {})
        mhz = f' @{c["sm_mhz_median"]} MHz' if c.get("sm_mhz_median") else ""
        lim = c.get("clock_limits", "n/a")
        parts.append(f'{r["kind"]} {r["ms"]:.3f} ms{mhz}' + ("" if lim in ("none", "n/a") else f" ({lim})"))
    print(f"bench_gemm {g} (auto)|" + "; ".join(parts))
PY
)
  # Decode-sized load (64 tokens: ~2 rows per expert) for the tile heuristic.
  "$BUILD/bench_gemm" --num-tokens 64 --json "$LOGDIR/bench_gemm_decode.json" 2>&1 | tee -a "$LOGDIR/bench.log"
  add "bench_gemm (decode, M=64) exit" "${PIPESTATUS[0]}"
  "$BUILD/bench_int8_hybrid_moe" --json "$LOGDIR/bench_moe.json" 2>&1 | tee -a "$LOGDIR/bench.log"
  add "bench_int8_hybrid_moe exit" "${PIPESTATUS[0]}"
  # The optional fused permute + quantize path (bit-identical results; default off) beside the
  # default, so its end-to-end time is measured on the same card in the same run.
  VLLM_INT8_HYBRID_FUSED_PERMUTE_QUANT=1 "$BUILD/bench_int8_hybrid_moe" \
    --json "$LOGDIR/bench_moe_fused_permute.json" 2>&1 | tee -a "$LOGDIR/bench.log"
  add "bench_int8_hybrid_moe (fused permute) exit" "${PIPESTATUS[0]}"
  while IFS= read -r line; do add "${line%%|*}" "${line#*|}"; done < <(python3 - \
    "$LOGDIR/bench_moe.json" "$LOGDIR/bench_moe_fused_permute.json" <<'PY' 2>/dev/null
import json, sys
for path, label in zip(sys.argv[1:], ("default", "fused permute")):
    d = json.load(open(path))
    parts = [f'{r["name"]} {r["median_ms"]:.3f} ms' for r in d["paths"]]
    ok = "AGREE" if d.get("agreement_ok") else "CHECK FAILED"
    print(f"forward ms ({label})|" + "; ".join(parts) + f" ({ok})")
PY
)
  INT8_HYBRID_MOE_LIB="$BUILD/libint8_hybrid_moe_ops.so" python3 "$ROOT/bench_int8_hybrid_moe.py" \
    2>&1 | tee -a "$LOGDIR/bench.log"
  add "bench_int8_hybrid_moe.py exit" "${PIPESTATUS[0]}"
fi

if want profile; then
  echo "== --profile region check (ncu) =="
  if [[ -x "$ROOT/scripts/check_profile_region.sh" ]]; then
    "$ROOT/scripts/check_profile_region.sh" "$BUILD" 2>&1 | tee "$LOGDIR/profile.log"
    add "profile region check" "exit ${PIPESTATUS[0]}: $(grep -E 'PASS|FAIL' "$LOGDIR/profile.log" | tail -1)"
  else
    add "profile region check" "scripts/check_profile_region.sh missing"
  fi
fi

if want sanitize; then
  echo "== compute-sanitizer (small configs) =="
  SAN_FILTER="${I8H_SANITIZE_FILTER:-*Small*:*Sanitize*:HybridGroupedGemm.EmptySingleRowAndUnevenExperts:PerTokenGroupedGemm.BroadcastScalesKTailsAndEdgeExperts}"
  for tool in memcheck racecheck initcheck synccheck; do
    log="$LOGDIR/sanitize.log"
    echo "-- $tool --" | tee -a "$log"
    timeout "${I8H_SANITIZE_TIMEOUT:-120}" compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
      "$BUILD/int8_hybrid_moe_gpu_tests" --gtest_filter="$SAN_FILTER" >>"$log" 2>&1
    src=$?
    summary="$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)"
    add "sanitizer $tool" "exit $src; ${summary:-no summary}"
  done
fi

echo
echo "================ gpu_check summary ================"
printf '%s\n' "${SUMMARY[@]}"
