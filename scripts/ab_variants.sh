#!/usr/bin/env bash
# A/B timing of kernel variants in one run on one card: builds bench_gemm once per variant (extra
# CUDA compile flags, e.g. a -D switch of an experiment) in build-ab/<name>, all builds in
# parallel, then runs the variants' benchmarks alternately, `ROUNDS` times each, so drift of the
# card's clocks or temperature hits every variant alike.
#
#   scripts/ab_variants.sh "base:-DMY_OLD_PATH" "new:" -- --tiles sm90_128x128,sm90_128x256
#
# Each further `--` starts another bench_gemm argument set, timed in the same rounds and
# summarized in its own table, so one device call covers several shapes:
#
#   scripts/ab_variants.sh "base:" "new:-DX" -- --tiles sm90_128x128 -- --num-tokens 64 --tiles sm90_128x128
#
# Env: INT8HYBRID_CUDA_ARCHS (default 90), JOBS (default nproc), ROUNDS (default 2), OUT (JSON
# per run, default build-ab), TESTS (a gtest filter: each variant also builds the GPU tests and
# runs the matching ones before any timing, so an experiment's numbers come with its correctness;
# e.g. TESTS='HybridGroupedGemm*:Overflow*'), EXTRA_TARGETS (more targets to build per variant),
# STEP_TIMEOUT (seconds for each benchmark run, default 300), TEST_TIMEOUT (seconds for each
# variant's GPU tests, default 600: the filter above takes about 100 s on an H100, and a 60 s
# limit cut every variant's tests short in the eighteenth session); a run past its limit is taken
# for a hang and the variant's remaining runs are skipped, so a hanging experiment costs one step,
# not the device call. OVERLAY (a folder mirroring the repository's paths,
# e.g. exp/ with exp/csrc/kernels/gemm/grouped_gemm_sm90.cuh: the variants are built from a copy
# of the tree with those files laid over it, so an experiment's files need no git on the
# device; stage them with `git show <commit>:<path> > exp/<path>`).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${OVERLAY:-}" ]]; then
  overlay="$(cd "$OVERLAY" && pwd)" || { echo "ab_variants: OVERLAY=$OVERLAY is no folder" >&2; exit 2; }
  copy="${TMPDIR:-/tmp}/ab_variants_tree"
  rm -rf "$copy" && mkdir -p "$copy"
  # The tree without build folders (the fetched headers come along: no network on the device).
  (cd "$ROOT" && tar --exclude='./build' --exclude='./build-*' --exclude='./.git' -cf - .) |
    (cd "$copy" && tar -xf -)
  (cd "$overlay" && tar -cf - .) | (cd "$copy" && tar -xf -)
  echo "ab_variants: building from $copy, with $(cd "$overlay" && find . -type f | wc -l) file(s) of $OVERLAY over the tree"
  ROOT="$copy"
fi
STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
TEST_TIMEOUT="${TEST_TIMEOUT:-600}"
variants=()
while [[ $# -gt 0 && "$1" != "--" ]]; do variants+=("$1"); shift; done
[[ ${#variants[@]} -eq 0 ]] && {
  echo "usage: $0 name:flags ... [-- bench_gemm args] [-- more bench_gemm args] ..." >&2
  exit 2
}
# Argument sets of bench_gemm, one per `--` group (one empty set when there is none), each kept
# as a single string of NUL-free words joined by the unit separator.
sets=()
[[ $# -eq 0 ]] && sets+=("")
while [[ $# -gt 0 ]]; do
  shift  # the `--`
  cur=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do cur+=("$1"); shift; done
  sets+=("$(IFS=$'\x1f'; echo "${cur[*]}")")
done
JOBS="${JOBS:-$(nproc)}"
OUTDIR="${OUT:-$ROOT/build-ab}"
mkdir -p "$OUTDIR"
per=$(( JOBS / ${#variants[@]} )); [[ $per -lt 1 ]] && per=1
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
TESTS="${TESTS:-}"
targets=(bench_gemm)
[[ -n "$TESTS" ]] && targets+=(int8_hybrid_moe_gpu_tests)
# EXTRA_TARGETS: more targets built per variant (e.g. probe_sm90_overlap), run by the caller.
read -r -a extra_targets <<<"${EXTRA_TARGETS:-}"
targets+=(${extra_targets[@]+"${extra_targets[@]}"})

"$ROOT/scripts/fetch_deps.sh" >/dev/null
t0=$(date +%s)
for v in "${variants[@]}"; do
  name="${v%%:*}" flags="${v#*:}"
  ( cmake -S "$ROOT" -B "$ROOT/build-ab/$name" "${GEN[@]}" \
      -DINT8HYBRID_CUDA_ARCHS="${INT8HYBRID_CUDA_ARCHS:-90}" -DINT8HYBRID_BUILD_TORCH=OFF \
      -DINT8HYBRID_BUILD_TESTS="$([[ -n "$TESTS" ]] && echo ON || echo OFF)" \
      "-DCMAKE_CUDA_FLAGS=$flags" >/dev/null &&
    cmake --build "$ROOT/build-ab/$name" -j "$per" --target "${targets[@]}" ) \
    >"$OUTDIR/build-$name.log" 2>&1 &
done
fail=0
for job in $(jobs -p); do wait "$job" || fail=1; done
echo "ab_variants: built ${#variants[@]} variants in $(( $(date +%s) - t0 )) s"
if [[ $fail -ne 0 ]]; then
  for v in "${variants[@]}"; do tail -20 "$OUTDIR/build-${v%%:*}.log"; done
  exit 1
fi
summary_lines=()
# Variants whose test or benchmark run hit its time limit: their remaining runs are skipped, so a
# hanging experiment costs one step, not one per round and argument set.
declare -A hung=()
# timeout(1) exits 124 when its limit ends the run, 137 when the run had to be killed (-k).
timed_out() { [[ $1 -eq 124 || $1 -eq 137 ]]; }
if [[ -n "$TESTS" ]]; then
  for v in "${variants[@]}"; do
    name="${v%%:*}"
    echo "== variant $name: GPU tests '$TESTS' =="
    log="$OUTDIR/tests-$name.log"
    timeout -k 10 "$TEST_TIMEOUT" "$ROOT/build-ab/$name/int8_hybrid_moe_gpu_tests" --gtest_filter="$TESTS" \
      >"$log" 2>&1
    rc=$?
    timed_out "$rc" && hung[$name]=1
    grep -E '^\[  (PASSED|FAILED)  \]' "$log" | sed 's/^/  /'
    passed="$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | grep -oE '[0-9]+$')"
    if [[ $rc -eq 0 && -n "$passed" ]]; then
      summary_lines+=("$(printf 'tests %-15s PASS (%s tests)' "$name" "$passed")")
    else
      why="exit $rc"
      timed_out "$rc" && why="timed out after TEST_TIMEOUT=$TEST_TIMEOUT s"
      summary_lines+=("$(printf 'tests %-15s FAIL (%s; %s): its times below are not of a correct kernel' \
        "$name" "$why" "$log")")
      fail=1
    fi
  done
fi
for round in $(seq 1 "${ROUNDS:-2}"); do
  for si in "${!sets[@]}"; do
    IFS=$'\x1f' read -r -a args <<<"${sets[$si]}"
    for v in "${variants[@]}"; do
      name="${v%%:*}"
      echo "== variant $name (round $round, set $si: ${args[*]+"${args[*]}"}) =="
      if [[ -n "${hung[$name]:-}" ]]; then
        echo "  skipped: an earlier run of $name hit its time limit (a hang?)"
        continue
      fi
      timeout -k 10 "$STEP_TIMEOUT" "$ROOT/build-ab/$name/bench_gemm" ${args[@]+"${args[@]}"} \
        --json "$OUTDIR/$name-s$si-$round.json" | sed -n '/^gemm /,$p'
      if timed_out "${PIPESTATUS[0]}"; then
        hung[$name]=1 fail=1
        summary_lines+=("$(printf 'bench %-15s HUNG (over %s s)' "$name" "$STEP_TIMEOUT")")
      fi
    done
  done
done

# Summary, one table per argument set: a line per (gemm, kind, tile), the variants' times (ms)
# of every round side by side.
for si in "${!sets[@]}"; do
  echo "== set $si: bench_gemm ${sets[$si]//$'\x1f'/ } =="
  python3 - "$OUTDIR" "${ROUNDS:-2}" "s$si" "${variants[@]%%:*}" <<'PY'
import json, sys
out, rounds, tag, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
table, keys = {}, []
for n in names:
    for r in range(1, rounds + 1):
        try:
            rows = json.load(open(f"{out}/{n}-{tag}-{r}.json"))["rows"]
        except OSError:
            continue
        for row in rows:
            k = (row["gemm"], row["kind"], row["tile"])
            if k not in table:
                keys.append(k)
            table.setdefault(k, {}).setdefault(n, []).append(row["ms"])
print("%-6s %-18s %-18s " % ("gemm", "kind", "tile") + " ".join("%-15s" % n for n in names))
for k in keys:
    cells = ["/".join("%.3f" % v for v in table[k].get(n, [])) or "-" for n in names]
    print("%-6s %-18s %-18s " % k + " ".join("%-15s" % c for c in cells))
PY
done
for line in ${summary_lines[@]+"${summary_lines[@]}"}; do echo "$line"; done
exit "$fail"
