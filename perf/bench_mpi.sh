#!/bin/bash
# Data-parallel training on this machine: step time and samples/s of one
# epoch of the default MLP (784-256-128-100-10, Adam) at a global batch of
# 256 rows, for
#   - one process, 2 OpenMP threads, no MPI;
#   - one rank under mpirun, 2 threads (what MPI costs when there is no one
#     to talk to);
#   - 2 ranks x 1 thread x 128 rows, bound to a core each (Open MPI's default
#     for -np 2) and with --bind-to none; reductions overlapped with the
#     backward (default) or all after it (BP_MPI_OVERLAP=0).
# The tool's "mpi:" line gives, per step, the forward+backward time, the
# communication left exposed after the backward and the update; with the
# overlap off the exposed time is the whole communication, so
#   hidden = exposed(overlap off) - exposed(overlap on).
# usage: perf/bench_mpi.sh [BUILD_DIR (default build)] [REPEATS (default 3)]
# Data: Fashion-MNIST when installed (dataset-fashion-mnist), else 16384
# synthetic rows of 784 features.
set -euo pipefail
build=${1:-build}
repeats=${2:-3}
BP=$(realpath "$build/backprop")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpirun=(mpirun --allow-run-as-root --oversubscribe)

if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    data=(--data /usr/share/datasets/fashion-mnist)
    what="Fashion-MNIST (60000 rows)"
else
    awk 'BEGIN { srand(1); for (i = 0; i < 16384; i++) { for (j = 0; j < 784; j++)
           printf "%.3f,", rand(); print int(rand() * 10) } }' > "$tmp/train.csv"
    head -n 1024 "$tmp/train.csv" > "$tmp/test.csv"
    data=(--train-csv "$tmp/train.csv" --test-csv "$tmp/test.csv")
    what="synthetic (16384 rows x 784)"
fi
common=("${data[@]}" --epochs 1)

# One run: prints "epoch_seconds steps compute exposed update" (ms per step;
# compute/exposed/update empty without MPI).
one() {
    local out
    out=$("$@" 2>&1)
    local secs steps
    secs=$(awk '/^epoch +1 /{ for (i = 1; i <= NF; i++) if ($i == "s") print $(i - 1) }' <<<"$out")
    awk -v s="$secs" '/^mpi:/ { printf "%s %s %s %s %s\n", s, $4, $11, $15, $18; f = 1 }
                      END { if (!f) printf "%s - - - -\n", s }' <<<"$out"
}

# Median of the repeats, by epoch time.
measure() {
    for _ in $(seq "$repeats"); do one "$@"; done | sort -n | awk -v r="$repeats" \
        'NR == int((r + 1) / 2)'
}

printf '%s, global batch 256, %s repeat(s), median by epoch time\n' "$what" "$repeats"
printf '%-44s %9s %9s %9s %9s %9s %9s\n' config "step ms" samples/s "compute" "exposed" \
    "update" "hidden"
row() {  # label, epoch_seconds steps compute exposed update, hidden
    local label=$1 secs=$2 steps=$3 comp=$4 exp=$5 upd=$6 hidden=${7:--}
    local n=$(( ${#data[@]} == 2 ? 60000 : 16384 ))
    [ "$steps" = "-" ] && steps=$(( (n + 255) / 256 ))
    awk -v l="$label" -v s="$secs" -v k="$steps" -v n="$n" -v c="$comp" -v e="$exp" \
        -v u="$upd" -v h="$hidden" \
        'BEGIN { printf "%-44s %9.3f %9.0f %9s %9s %9s %9s\n", l, 1e3 * s / k, n / s, c, e, u, h }'
}

read -r s k c e u < <(measure "$BP" train "${common[@]}" --batch 256 --threads 2)
row "1 process, 2 threads, no MPI" "$s" "$k" "$c" "$e" "$u"
read -r s k c e u < <(measure "${mpirun[@]}" --bind-to none -np 1 "$BP" train "${common[@]}" \
    --batch 256 --threads 2)
row "mpirun -np 1, 2 threads" "$s" "$k" "$c" "$e" "$u"
for bind in core none; do
    read -r s k c e_on u < <(measure "${mpirun[@]}" --bind-to $bind -np 2 "$BP" train \
        "${common[@]}" --batch 128 --threads 1)
    read -r s2 k2 c2 e_off u2 < <(BP_MPI_OVERLAP=0 measure "${mpirun[@]}" --bind-to $bind \
        -x BP_MPI_OVERLAP -np 2 "$BP" train "${common[@]}" --batch 128 --threads 1)
    hidden=$(awk -v a="$e_off" -v b="$e_on" 'BEGIN { printf "%.3f", a - b }')
    row "2 ranks x 1 thread, bind-to $bind, overlap on" "$s" "$k" "$c" "$e_on" "$u" "$hidden"
    row "2 ranks x 1 thread, bind-to $bind, overlap off" "$s2" "$k2" "$c2" "$e_off" "$u2"
done
read -r s k c e u < <(BP_MPI_LAYER_UPDATES=0 measure "${mpirun[@]}" --bind-to core \
    -x BP_MPI_LAYER_UPDATES -np 2 "$BP" train "${common[@]}" --batch 128 --threads 1)
row "2 ranks x 1 thread, bind-to core, no layer upd." "$s" "$k" "$c" "$e" "$u"
cat <<'EOF'
compute: forward + backward per step (ms), the reductions started from it included;
exposed: waiting for the reductions after the backward (ms), skew between ranks included;
update: the optimizer's time (ms); with layer updates (the default) the layers are updated
        while later reductions are still in flight, and "exposed" excludes that time;
hidden: exposed(overlap off) - exposed(overlap on): communication the backward covered.
On one machine the "network" is shared memory (Open MPI's vader BTL): a 64 KiB bucket
moves in microseconds, so there is little to hide and the ranks mostly compete for the
same two cores. Across nodes each step's all-reduce moves 2 x (P-1)/P x the gradient
bytes (about 1 MB for this MLP, 67 MB for 4096-wide layers) over the interconnect:
tens of microseconds to milliseconds per step at 10-100 Gbit/s, which is what the overlap
with the backward and the per-layer updates exist to hide; the bucket size
(BP_MPI_BUCKET_KB) then trades per-message latency against how early reductions start.
EOF
