#!/bin/bash
# backprop bench: a tiny run prints one valid JSON line with every key the
# comparison (perf/compare.sh) reads; bad options are usage errors (exit 2).
# It checks that the command runs, never how fast.
set -euo pipefail
bp=$1
out=$("$bp" bench --in 12 --layers 9,7 --out 4 --batch 5 --threads 1 --steps 3 --warmup 1 \
      --optimizer sgd)
echo "$out"
[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "FAIL: not one line"; exit 1; }
keys=(library layers batch optimizer threads isa steps ms_per_step p10 p90 samples_per_second
      gflops peak_gflops percent_of_peak)
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import json' 2>/dev/null; then
    /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.argv[1])
missing = [k for k in sys.argv[2:] if k not in d]
assert not missing, "missing keys: %s" % missing
assert d["library"] == "backprop" and d["layers"] == "12-9-7-4" and d["batch"] == 5
assert d["optimizer"] == "sgd" and d["threads"] == 1 and d["steps"] == 3
assert d["ms_per_step"] > 0 and d["p10"] <= d["ms_per_step"] <= d["p90"]
assert d["samples_per_second"] > 0 and d["gflops"] >= 0
' "$out" "${keys[@]}"
else
    for k in "${keys[@]}"; do
        grep -q "\"$k\":" <<<"$out" || { echo "FAIL: no key $k"; exit 1; }
    done
fi
# Adam (the default) and the default sizes' parsing.
"$bp" bench --in 6 --layers 5 --out 3 --batch 2 --steps 2 --warmup 0 | grep -q '"optimizer":"adam"'
"$bp" bench --help | grep -q 'usage: backprop bench'
for bad in "--steps 0" "--bogus" "--layers 0" "--out" "--in x" "--epochs 2"; do
    rc=0
    "$bp" bench $bad >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || { echo "FAIL: 'bench $bad' exited $rc, not 2"; exit 1; }
done
echo "1 passed, 0 failed"
