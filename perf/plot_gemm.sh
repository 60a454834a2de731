#!/bin/bash
# plot_gemm.sh CSV OUT.png: GFLOP/s against size from bench_gemm's CSV.
#
# One panel per shape family (squares; each MLP layer's forward NT,
# input-gradient NN and weight-gradient TN against the batch) and thread
# count, with a line for backprop and each peer that has a result, and the
# measured AVX-512 FMA peak dashed. Panels of the same family sit side by
# side, one column per thread count. Needs gnuplot (Debian: gnuplot-nox).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 CSV OUT.png" >&2
    exit 2
fi
csv=$1
out=$2
if ! command -v gnuplot >/dev/null; then
    echo "$0: gnuplot not found (apt-get install gnuplot-nox)" >&2
    exit 1
fi

# Columns of the CSV (see bench_gemm.c, csv_header): 1 family, 3 op,
# 9 size, 10 threads; library l (0-based) has its median at 11 + 4 l; the
# AVX-512 peak follows the libraries.
header=$(head -n 1 "$csv")
IFS=, read -r -a cols <<<"$header"
libs=()
lib_cols=()
peak_col=0
for i in "${!cols[@]}"; do
    c=${cols[$i]}
    if [[ $c == *_gflops && $c != peak_* ]]; then
        name=${c%_gflops}
        # Only libraries with at least one number: n/a columns stay out.
        if awk -F, -v c=$((i + 1)) 'NR > 1 && $c != "" { found = 1 } END { exit !found }' \
            "$csv"; then
            libs+=("$name")
            lib_cols+=($((i + 1)))
        fi
    elif [[ $c == peak_avx512_gflops ]]; then
        peak_col=$((i + 1))
    fi
done
if [ "${#libs[@]}" -eq 0 ]; then
    echo "$0: no results in $csv" >&2
    exit 1
fi

# Panels: family and op pairs present, in the order they appear.
mapfile -t panels < <(awk -F, 'NR > 1 && !seen[$1 "|" $3]++ { print $1 "|" $3 }' "$csv")
mapfile -t threads < <(awk -F, 'NR > 1 && !seen[$10]++ { print $10 }' "$csv")
n_rows=${#panels[@]}
n_cols=${#threads[@]}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One data file per panel, so that each line joins its own points (other
# rows in between would break it): size, each library's median, the peak.
cols_list=$(IFS=,; echo "${lib_cols[*]}")
n=0
for p in "${panels[@]}"; do
    for t in "${threads[@]}"; do
        awk -F, -v fam="${p%%|*}" -v op="${p#*|}" -v t="$t" -v cols="$cols_list" \
            -v peak="$peak_col" '
            NR > 1 && $1 == fam && $3 == op && $10 == t {
                n = split(cols, c, ",")
                line = $9
                for (i = 1; i <= n; i++)
                    line = line "," ($(c[i]) == "" ? "NaN" : $(c[i]))
                print line "," (peak > 0 && $peak != "" ? $peak : "NaN")
            }' "$csv" >"$tmp/panel$n.csv"
        n=$((n + 1))
    done
done

script=$tmp/plot.gp
{
    echo "set terminal pngcairo size $((680 * n_cols)),$((330 * n_rows)) font 'sans,9'"
    echo "set output '$out'"
    echo "set datafile separator ','"
    echo "set multiplot layout $n_rows,$n_cols"
    echo "set logscale x 2"
    echo "set grid"
    echo "set key outside right top font 'sans,8'"
    echo "set ylabel 'GFLOP/s'"
    echo "set yrange [0:*]"
    n=0
    for p in "${panels[@]}"; do
        family=${p%%|*}
        op=${p#*|}
        if [ "$family" = square ]; then
            xlabel="n (M = N = K)"
        else
            xlabel="batch"
        fi
        for t in "${threads[@]}"; do
            echo "set title '$family $op, $t thread(s)'"
            echo "set xlabel '$xlabel'"
            plot="plot"
            for k in "${!libs[@]}"; do
                plot+=" '$tmp/panel$n.csv' using 1:$((k + 2)) with linespoints lw 2"
                plot+=" title '${libs[$k]}',"
            done
            plot+=" '$tmp/panel$n.csv' using 1:$((${#libs[@]} + 2)) with lines dt 2"
            plot+=" lc 'black' title 'AVX-512 peak'"
            echo "$plot"
            n=$((n + 1))
        done
    done
    echo "unset multiplot"
} >"$script"
# A panel with a single size (--quick) makes gnuplot warn about its x range.
gnuplot "$script" 2> >(grep -v 'empty x range' >&2)
echo "wrote $out"
