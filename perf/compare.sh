#!/bin/bash
# Training throughput of backprop against oneDNN (perf/onednn_step) and
# PyTorch (perf/torch_step.py), all three run alternately (A B C A B C ...)
# in one run so that load from other processes hits them alike; medians over
# the rounds. Prints a markdown table of samples/s with backprop's ratio to
# each, then the Fashion-MNIST end-to-end line (`backprop train` defaults
# against perf/torch_fashion.py, alternating, F rounds (3): median wall times,
# their ratio, and test accuracy).
#
#   bash perf/compare.sh [--build DIR] [--quick] [--rounds R] [--steps S]
#        [--configs a,b,c] [--threads 1,2] [--optimizers sgd,adam]
#        [--no-fashion | --fashion-only] [--fashion-rounds F]
#
# Configurations: (a) 784-256-128-100-10 batch 128, (b) 1024-1024-1024-1024-10
# batch 256, (c) 4096-4096-4096-10 batch 64. --quick: SGD only, 3 rounds of
# 15 steps. The build needs -Dperf=true and libdnnl-dev (without it the
# oneDNN column is n/a); peers: bash perf/install_e2e_peers.sh.
#
# PyTorch's OpenBLAS picks its kernels from OPENBLAS_CORETYPE (and
# OPENBLAS_L2_SIZE) where the machine sets them; where they are unset,
# OpenBLAS 0.3.21 falls back to its SSE3 (Prescott) kernels on CPUs it does
# not recognise. PyTorch therefore runs in up to three environments: as it
# stands, with both variables unset (only if either is set), and with
# OPENBLAS_CORETYPE forced to the CPU's best kernel (SkylakeX with AVX-512,
# Haswell with AVX2); the table keeps its fastest and says which.
#
# One-thread cells pin every library of a round to one core (taskset), the
# next round to the next core: the two cores of the development VMs ran the
# same 1-thread GEMM up to 8-12 % apart, for stretches of time (the host's
# load is not spread evenly), so unpinned runs compared whichever core each
# process landed on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=build rounds=5 steps=30 configs=a,b,c threads=1,2 optimizers=sgd,adam fashion=1
fashion_rounds=3
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift ;;
    --quick) rounds=3 steps=15 optimizers=sgd ;;
    --rounds) rounds=$2; shift ;;
    --steps) steps=$2; shift ;;
    --configs) configs=$2; shift ;;
    --threads) threads=$2; shift ;;
    --optimizers) optimizers=$2; shift ;;
    --no-fashion) fashion=0 ;;
    --fashion-only) configs= ;;
    --fashion-rounds) fashion_rounds=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
bp=$build/backprop onednn=$build/perf/onednn_step py=/usr/bin/python3
[ -x "$bp" ] || { echo "compare.sh: no $bp (meson setup $build -Dperf=true)" >&2; exit 2; }
[ -x "$onednn" ] || { echo "compare.sh: no $onednn: oneDNN column n/a" >&2; onednn=; }
have_torch=1
"$py" -c 'import torch' 2>/dev/null || { echo "compare.sh: no PyTorch under $py" >&2; have_torch=0; }

# The PyTorch environments (see the header).
envs=("asis")
if [ -n "${OPENBLAS_CORETYPE+x}${OPENBLAS_L2_SIZE+x}" ]; then envs+=("unset"); fi
if grep -qw avx512f /proc/cpuinfo; then forced=SkylakeX; else forced=Haswell; fi
[ "${OPENBLAS_CORETYPE:-}" = "$forced" ] || envs+=("$forced")
torch_env() { # ENV-NAME command...
    local e=$1; shift
    case $e in
    asis) "$@" ;;
    unset) env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@" ;;
    *) env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE="$e" "$@" ;;
    esac
}

declare -A shape=([a]="--in 784 --layers 256,128,100 --out 10 --batch 128"
                  [b]="--in 1024 --layers 1024,1024,1024 --out 10 --batch 256"
                  [c]="--in 4096 --layers 4096,4096 --out 10 --batch 64")
# The cores this process may use (taskset's list, expanded).
cpus=()
if command -v taskset >/dev/null; then
    for part in $(taskset -cp $$ | sed 's/.*: //' | tr ',' ' '); do
        case $part in
        *-*) for c in $(seq "${part%-*}" "${part#*-}"); do cpus+=("$c"); done ;;
        *) cpus+=("$part") ;;
        esac
    done
fi
raw=$(mktemp /tmp/compare.XXXXXX.jsonl)
echo "compare.sh: raw results in $raw; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
tag() { sed "s/^{/{\"cell\":\"$1\",\"variant\":\"$2\",/" >>"$raw"; }

for cfg in ${configs//,/ }; do
  for t in ${threads//,/ }; do
    for opt in ${optimizers//,/ }; do
      cell="$cfg $t $opt" args="${shape[$cfg]} --threads $t --optimizer $opt --steps $steps"
      fmt=best
      for r in $(seq "$rounds"); do
        # One thread: every library of the round on the same core, the
        # cores taken in turn round by round (see the header).
        pin=()
        if [ "$t" = 1 ] && [ ${#cpus[@]} -gt 1 ]; then
            pin=(taskset -c "${cpus[$(( (r - 1) % ${#cpus[@]} ))]}")
        fi
        echo "compare.sh: ($cfg) threads $t $opt round $r/$rounds${pin:+ on cpu ${pin[2]}}" >&2
        line=$("${pin[@]}" "$bp" bench $args)
        echo "$line" | tag "$cell" backprop
        peak=$(echo "$line" | sed -n 's/.*"peak_gflops":\([0-9.]*\).*/\1/p')
        peak1=$(awk -v p="${peak:-0}" -v t="$t" 'BEGIN { print p / t }')
        if [ -n "$onednn" ]; then
            line=$("${pin[@]}" "$onednn" $args --format $fmt)
            echo "$line" | tag "$cell" onednn
            # The first round picks oneDNN's faster format; later ones keep it.
            fmt=$(echo "$line" | sed -n 's/.*"format":"\([a-z]*\)".*/\1/p')
        fi
        if [ $have_torch = 1 ]; then
            for e in "${envs[@]}"; do
                torch_env "$e" "${pin[@]}" "$py" "$here/torch_step.py" $args --peak "$peak1" |
                    tag "$cell" "pytorch:$e"
            done
        fi
      done
    done
  done
done

# The table: medians over the rounds; PyTorch's best environment.
[ -z "$configs" ] || "$py" - "$raw" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows.setdefault(d["cell"], {}).setdefault(d["variant"], []).append(d)
def med(runs, key):
    v = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(v) if v else None
print("| config | thr | opt | backprop s/s (%peak) | onednn s/s (%peak, fmt) | pytorch s/s (%peak, OpenBLAS env) | bp/onednn | bp/pytorch |")
print("|---|---|---|---|---|---|---|---|")
names = {"a": "(a) 784-256-128-100-10 B128", "b": "(b) 1024x4-10 B256", "c": "(c) 4096x3-10 B64"}
for cell, v in rows.items():
    cfg, thr, opt = cell.split()
    bp = v.get("backprop", [])
    bps, bpp = med(bp, "samples_per_second"), med(bp, "percent_of_peak")
    def col(runs, extra):
        s, p = med(runs, "samples_per_second"), med(runs, "percent_of_peak")
        return s, f"{s:.0f} ({p if p is not None else 'n/a'}%, {extra})" if s else "n/a"
    od = v.get("onednn", [])
    ods, odtxt = col(od, od[-1]["format"]) if od else (None, "n/a")
    best = None
    for k, runs in v.items():
        if k.startswith("pytorch:"):
            s = med(runs, "samples_per_second")
            if best is None or s > best[0]:
                best = (s, k.split(":", 1)[1], runs)
    if best:
        pts, pttxt = col(best[2], f"{best[1]}: {best[2][-1]['isa']}")
        others = ", ".join(f"{k.split(':',1)[1]} {med(r, 'samples_per_second'):.0f}"
                           for k, r in v.items() if k.startswith("pytorch:") and k.split(":",1)[1] != best[1])
        if others:
            pttxt += f"; others: {others}"
    else:
        pts, pttxt = None, "n/a"
    ratio = lambda x: f"{bps / x:.2f}x" if x and bps else "n/a"
    print(f"| {names[cfg]} | {thr} | {opt} | {bps:.0f} ({bpp}%) | {odtxt} | {pttxt} | {ratio(ods)} | {ratio(pts)} |")
PY

if [ $fashion = 1 ]; then
    # Fashion-MNIST end to end, alternating, --fashion-rounds times each
    # (a run takes seconds, and the host's load moves a single one by 10 %
    # or more): backprop train's defaults (one thread per core) and the
    # same run in PyTorch, in its fastest environment of the cells above.
    # Medians of the wall times, and their ratio.
    best_env=
    if [ $have_torch = 1 ]; then
        # (with no cells measured: the forced kernel, the last environment)
        best_env=$("$py" - "$raw" "${envs[${#envs[@]}-1]}" <<'PY'
import json, sys, collections
wins = collections.Counter()
cells = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["variant"].startswith("pytorch:"):
        cells[d["cell"]].setdefault(d["variant"][8:], []).append(d["samples_per_second"])
for v in cells.values():
    wins[max(v, key=lambda k: sorted(v[k])[len(v[k]) // 2])] += 1
print(wins.most_common(1)[0][0] if wins else sys.argv[2])
PY
)
    fi
    fraw=$(mktemp /tmp/compare.fashion.XXXXXX.txt)
    for r in $(seq "$fashion_rounds"); do
        echo "compare.sh: Fashion-MNIST round $r/$fashion_rounds" >&2
        t0=$(date +%s.%N)
        acc=$("$bp" train | sed -n 's/^final test loss .* test accuracy \([0-9.]*\).*/\1/p')
        t1=$(date +%s.%N)
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        echo "backprop $wall ${acc:-nan}" >>"$fraw"
        if [ $have_torch = 1 ]; then
            torch_env "$best_env" "$py" "$here/torch_fashion.py" --threads "$(nproc)" 2>/dev/null |
                "$py" -c 'import json, sys
d = json.loads(sys.stdin.read())
print("pytorch %.2f %.4f" % (d["wall_seconds"], d["test_accuracy"]))' >>"$fraw"
        fi
    done
    echo
    "$py" - "$fraw" "$(nproc)" "$best_env" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, wall, acc = line.split()
    runs.setdefault(who, []).append((float(wall), acc))
def side(who):
    r = runs.get(who)
    if not r:
        return None, "n/a"
    walls = [w for w, _ in r]
    accs = sorted(set(a for _, a in r))
    return statistics.median(walls), "%.1f s (runs: %s), test accuracy %s" % (
        statistics.median(walls), ", ".join("%.1f" % w for w in walls), " / ".join(accs))
bp, bptxt = side("backprop")
pt, pttxt = side("pytorch")
env = " (OpenBLAS env: %s)" % sys.argv[3] if pt else ""
ratio = " -- backprop/PyTorch wall time %.2f" % (bp / pt) if bp and pt else ""
print("Fashion-MNIST, 10 epochs, Adam 1e-3, batch 128, %s threads, medians of %d: "
      "backprop train %s; PyTorch %s%s%s"
      % (sys.argv[2], len(runs.get("backprop", [])), bptxt, pttxt, env, ratio))
PY
fi
