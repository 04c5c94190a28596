#!/usr/bin/env bash
# Checks that `bench_int8_hybrid_moe --profile` puts exactly one forward inside the
# cudaProfilerStart/Stop region: the kernels ncu profiles (--profile-from-start off) must equal
# the kernel launches of one forward, which the benchmark counts from a CUDA-graph capture of it.
# Usage: scripts/check_profile_region.sh BUILD_DIR [extra bench arguments...]
set -u -o pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 BUILD_DIR [extra bench_int8_hybrid_moe arguments]" >&2
  exit 1
fi
build_dir=$1
shift
bench="$build_dir/bench_int8_hybrid_moe"
if [[ ! -x "$bench" ]]; then
  echo "FAIL: $bench not found or not executable" >&2
  exit 1
fi
if ! command -v ncu >/dev/null 2>&1; then
  echo "FAIL: ncu (Nsight Compute) not on PATH" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --clock-control none: leave the GPU clocks alone. No --log-file: ncu's CSV rows and the
# benchmark's own lines share stdout and are told apart below.
ncu --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv \
  "$bench" --profile --num-tokens 256 --warmup 1 --iters 1 --no-check "$@" >"$log" 2>&1
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "FAIL: ncu / benchmark exited with $rc; last lines:"
  tail -n 20 "$log"
  exit 1
fi

expected=$(sed -n 's/^profile-region: .*kernels_per_forward=\(-\?[0-9]\+\).*/\1/p' "$log" | tail -n 1)
# One CSV row per (kernel, metric) and one metric: count distinct kernel IDs (first column).
profiled=$(grep -E '^"[0-9]+",' "$log" | cut -d, -f1 | sort -u | wc -l)

if [[ -z "$expected" || "$expected" -lt 0 ]]; then
  echo "FAIL: the benchmark did not report kernels_per_forward (graph capture failed?)"
  grep -E '^(profile-region|note):' "$log"
  exit 1
fi
echo "kernels per forward (graph capture): $expected"
echo "kernels profiled by ncu:             $profiled"
if [[ "$profiled" -eq "$expected" ]]; then
  echo "PASS"
  exit 0
fi
echo "FAIL: the profiled region does not hold exactly one forward"
grep -E '^"' "$log" | head -n 40
exit 1
