#!/bin/bash
# Draw loss and accuracy per epoch from a `backprop train --metrics` file.
# usage: perf/plot_training.sh METRICS.jsonl OUT.png   (needs gnuplot-nox)
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 METRICS.jsonl OUT.png" >&2
    exit 2
fi
in=$1 out=$2
command -v gnuplot >/dev/null || { echo "$0: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
data=$(mktemp)
trap 'rm -f "$data"' EXIT
# One row per epoch: epoch train_loss eval_loss eval_accuracy. The metrics
# hold test_* (or val_* with --val-split); the final summary line is skipped.
awk '
    /"final"/ { next }
    {
        epoch = tl = el = ea = "NaN"
        n = split($0, f, /[{},]/)
        for (i = 1; i <= n; i++) {
            split(f[i], kv, ":")
            gsub(/[ "]/, "", kv[1]); gsub(/ /, "", kv[2])
            if (kv[2] == "null") kv[2] = "NaN"
            if (kv[1] == "epoch") epoch = kv[2]
            if (kv[1] == "train_loss") tl = kv[2]
            if (kv[1] ~ /^(test|val)_loss$/) el = kv[2]
            if (kv[1] ~ /^(test|val)_accuracy$/) ea = kv[2]
        }
        print epoch, tl, el, ea
    }' "$in" > "$data"
[ -s "$data" ] || { echo "$0: no epochs in $in" >&2; exit 1; }
gnuplot <<GP
set terminal pngcairo size 1000,420 noenhanced
set output "$out"
set multiplot layout 1,2 title "backprop training: $in"
set xlabel "epoch"
set grid
set key top right
set ylabel "loss"
plot "$data" using 1:2 with linespoints title "train loss", \
     "$data" using 1:3 with linespoints title "held-out loss"
set ylabel "accuracy"
set key bottom right
plot "$data" using 1:4 with linespoints title "held-out accuracy"
unset multiplot
GP
echo "wrote $out"
