#!/usr/bin/env bash
# Nsight Compute profile of the grouped GEMM kernels (and cuBLAS's dense GEMM of the same run),
# printed as compact tables: per kernel the duration, speed-of-light throughputs, the busiest
# pipes and the top warp-stall reasons; then, per kernel, the stall samples by opcode and the SASS
# instructions that hold the most (PC sampling), with their main stall reason. Kernels are named by
# scheme and tile (SM90: "hybrid sm90_128x128 st3"; SM80: "per-token sm80 128x128x64 w2x2 st4").
# The full report stays in $OUT/ncu_gemm.ncu-rep for the Nsight Compute GUI.
#
#   scripts/ncu_gemm.sh BUILD_DIR [bench_gemm arguments, e.g. --tiles sm90_128x128]
#   KERNELS=regex:sm80 scripts/ncu_gemm.sh BUILD_DIR --tiles 128x128,64x64   (the SM80 kernels)
#
# Env: OUT (report folder, default BUILD_DIR), KERNELS (ncu -k filter, default every kernel whose
# name holds "gemm": ours and cuBLAS's), LAUNCHES (ncu --launch-count, default 5), TOP
# (instructions listed, 25), REPORT (an existing .ncu-rep: summarize it instead of profiling;
# BUILD_DIR and the bench arguments are then ignored).
set -uo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 BUILD_DIR [bench_gemm arguments]" >&2
  exit 2
fi
build=$1
shift
command -v ncu >/dev/null 2>&1 || { echo "ncu_gemm: ncu (Nsight Compute) is not on PATH" >&2; exit 2; }
out="${OUT:-$build}"
mkdir -p "$out"
rep="$out/ncu_gemm"
if [[ -n "${REPORT:-}" ]]; then
  [[ -f "$REPORT" ]] || { echo "ncu_gemm: REPORT=$REPORT does not exist" >&2; exit 2; }
  rep="${REPORT%.ncu-rep}"
else
  [[ -x "$build/bench_gemm" ]] || { echo "ncu_gemm: no $build/bench_gemm (build that target)" >&2; exit 2; }
  pipes='regex:^sm__(inst_executed_pipe_|pipe_).*(cycles_active|pipe_[a-z0-9_]+)\.avg\.pct_of_peak_sustained_active$'
  # --clock-control base (ncu's default): locked base clocks, so durations are longer than in the
  # benchmark; compare kernels of one report with each other, not with bench_gemm's milliseconds.
  ncu --force-overwrite -o "$rep" -k "${KERNELS:-regex:gemm}" \
    --launch-count "${LAUNCHES:-5}" \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SourceCounters --section LaunchStats --section Occupancy \
    --metrics "$pipes" \
    "$build/bench_gemm" --iters 1 --warmup 0 --rounds 1 "$@" >"$out/ncu_gemm.log" 2>&1
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "ncu_gemm: ncu exited with $rc; last lines:"
    tail -n 30 "$out/ncu_gemm.log"
    exit 1
  fi
fi
ncu -i "$rep.ncu-rep" --page raw --csv >"$out/ncu_gemm_raw.csv" 2>"$out/ncu_gemm_raw.err"
ncu -i "$rep.ncu-rep" --page source --csv --print-source sass >"$out/ncu_gemm_sass.csv" \
  2>"$out/ncu_gemm_sass.err" || echo "ncu_gemm: source page export failed: $(head -3 "$out/ncu_gemm_sass.err")"

python3 - "$out/ncu_gemm_raw.csv" "$out/ncu_gemm_sass.csv" "${TOP:-25}" <<'PY'
import csv, io, re, sys
raw, sass, top = sys.argv[1], sys.argv[2], int(sys.argv[3])

def short(name):
    # Sm90TileConfig<Stages, kHybrid, BN, ...>: "<4, 0, 256, ...>" (raw page),
    # "<(int)4, (bool)0, (int)256, ...>" (source page) or mangled.
    m = (re.search(r"Sm90TileConfig<(?:\(int\))?(\d+), (?:\(bool\))?(\d), (?:\(int\))?(\d+)[,>]", name)
         or re.search(r"Sm90TileConfigILi(\d+)ELb(\d)ELi(\d+)", name))
    if m:
        return ("hybrid" if m.group(2) == "1" else "per-token") + f" sm90_128x{m.group(3)} st{m.group(1)}"
    # SM80 kernel: TileConfig<BM, BN, BK, WM, WN, Stages>, then the Scheme (0 per-token, 1 hybrid),
    # which the pages print as "0", "(Scheme)0", "(Scheme)(int)0" or "Scheme::kPerToken".
    m = (re.search(r"TileConfig<(?:\(int\))?(\d+), (?:\(int\))?(\d+), (?:\(int\))?(\d+), "
                   r"(?:\(int\))?(\d+), (?:\(int\))?(\d+), (?:\(int\))?(\d+)>, "
                   r"(?:\([\w:]*Scheme\)(?:\(int\))?|[\w:]*Scheme::k)?(\d|PerToken|Hybrid)", name)
         or re.search(r"TileConfigILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)E.*?SchemeE(\d)",
                      name))
    if m:
        bm, bn, bk, wm, wn, st, sch = m.groups()
        return (("hybrid" if sch in ("1", "Hybrid") else "per-token") +
                f" sm80 {bm}x{bn}x{bk} w{wm}x{wn} st{st}")
    return name[:40]

rows = list(csv.reader(open(raw)))
if len(rows) < 3:
    print("ncu_gemm: no kernels profiled"); sys.exit(0)
head, units, data = rows[0], rows[1], rows[2:]
col = {h: i for i, h in enumerate(head)}
def get(r, k):
    i = col.get(k)
    try:
        return float(r[i].replace(",", "")) if i is not None else float("nan")
    except ValueError:
        return float("nan")
sol = [("gpu__time_duration.sum", "us"),
       ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "SM%"),
       ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed", "mem%"),
       ("lts__throughput.avg.pct_of_peak_sustained_elapsed", "L2%"),
       ("dram__cycles_active.avg.pct_of_peak_sustained_elapsed", "DRAM%"),
       ("dram__bytes.sum.per_second", "DRAM TB/s"),
       ("sm__issue_active.avg.pct_of_peak_sustained_elapsed", "issue%")]
to_unit = {"msecond": 1e3, "usecond": 1.0, "nsecond": 1e-3, "ms": 1e3, "us": 1.0, "ns": 1e-3,
           "Tbyte/s": 1.0, "Gbyte/s": 1e-3, "TB/s": 1.0, "GB/s": 1e-3}
print("%-3s %-34s" % ("#", "kernel") + "".join("%10s" % s[1] for s in sol))
for n, r in enumerate(data):
    vals = [get(r, k) * to_unit.get(units[col[k]], 1.0) if k in col else float("nan")
            for k, _ in sol]
    print("%-3d %-34.34s" % (n, short(r[col["Kernel Name"]])) + "".join("%10.2f" % v for v in vals))
    pipe = sorted(((get(r, h), h) for h in head if h.endswith(".avg.pct_of_peak_sustained_active")
                   and (h.startswith("sm__inst_executed_pipe_")
                        or (h.startswith("sm__pipe_") and "cycles_active" in h))), reverse=True)
    pipe = [(v, h) for v, h in pipe if v == v and v >= 5][:8]
    print("      pipes (% of active cycles): " + ", ".join(
        "%s %.0f" % (re.sub(r"\.avg\.pct.*|^sm__|_cycles_active", "", h), v) for v, h in pipe))
    stall = sorted(((get(r, h), h) for h in head
                    if h.startswith("smsp__average_warps_issue_stalled_")
                    and h.endswith("_per_issue_active.ratio")), reverse=True)
    stall = [(v, h) for v, h in stall if v == v][:7]
    print("      stalls per issue: " + ", ".join(
        "%s %.2f" % (h.replace("smsp__average_warps_issue_stalled_", "").replace(
            "_per_issue_active.ratio", ""), v) for v, h in stall))

# Source page: per kernel a line '"Kernel Name","<name>",' then a CSV table of SASS lines (the
# same kernel can appear twice: identical launches; the first is kept).
try:
    text = open(sass).read()
except OSError:
    sys.exit(0)
seen = set()
for b in re.split(r'\n(?="Kernel Name",)', "\n" + text):
    lines = b.strip("\n").splitlines()
    if len(lines) < 2 or lines[0] in seen:
        continue
    seen.add(lines[0])
    first = next(csv.reader([lines[0]]))
    title = first[1] if len(first) > 1 else lines[0]
    rdr = list(csv.reader(io.StringIO("\n".join(lines[1:]))))
    h = rdr[0]
    def find(*keys):
        for k in keys:
            for i, x in enumerate(h):
                if x.strip().lower() == k.lower():
                    return i
        for k in keys:
            for i, x in enumerate(h):
                if k.lower() in x.lower():
                    return i
        return None
    si, ai = find("Source"), find("Warp Stall Sampling (All Samples)", "Sampling Data (All)")
    if si is None or ai is None:
        print("source page columns:", h[:12]); continue
    stall_cols = [i for i, x in enumerate(h)
                  if (x.startswith("stall_") or x.startswith("smsp__pcsamp")) and "Not Issued" not in x]
    recs = []
    for r in rdr[1:]:
        try:
            recs.append((float(r[ai] or 0), r))
        except (ValueError, IndexError):
            pass
    total = sum(v for v, _ in recs) or 1
    print("\n== %s: %d SASS lines, %d stall samples; top %d ==" % (short(title), len(recs), total, top))
    by_op = {}  # samples per opcode (predicate and modifiers dropped): where the warps wait
    for v, r in recs:
        toks = r[si].split()
        if toks and toks[0].startswith("@"):
            toks = toks[1:]
        op = toks[0].split(".")[0] if toks else "?"
        by_op[op] = by_op.get(op, 0) + v
    print("by opcode: " + ", ".join("%s %.1f%%" % (o, 100 * v / total) for o, v in
                                    sorted(by_op.items(), key=lambda x: -x[1])[:12]))
    for v, r in sorted(recs, key=lambda x: -x[0])[:top]:
        why = ""
        if stall_cols:
            best = sorted(((float(r[i] or 0), h[i]) for i in stall_cols if r[i] not in ("", "0")),
                          reverse=True)[:2]
            why = " ".join("%s:%.0f" % (n.replace("smsp__pcsamp_warps_issue_stalled_", ""), c)
                           for c, n in best)
        print("%5.1f%%  %-60s %s" % (100 * v / total, r[si].strip()[:60], why))
PY
