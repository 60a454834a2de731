#!/bin/bash
# The backprop tool end to end on generated CSV fixtures: usage errors,
# --help, info, train with metrics and checkpoints, resume, eval, predict,
# and Ctrl-C. usage: test_cli.sh BACKPROP
set -u
bp=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0 passes=0

ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect CODE CMD...: run CMD, compare its exit code.
expect() {
    local want=$1; shift
    "$@" >"$dir/out" 2>"$dir/err"
    local got=$?
    if [ "$got" = "$want" ]; then ok; else bad "'$*' exited $got, expected $want: $(head -c 300 "$dir/err")"; fi
}

# Two Gaussian-ish classes in 4 dimensions, from a fixed LCG (awk): class =
# sign of x0 + x1 with a margin, so a small net learns it quickly.
make_csv() { # FILE ROWS SEED [nolabel]
    awk -v n="$2" -v seed="$3" -v nolabel="${4:-}" 'BEGIN {
        s = seed
        for (i = 0; i < n; i++) {
            line = ""
            for (j = 0; j < 4; j++) {
                s = (s * 1103515245 + 12345) % 2147483648
                x[j] = s / 2147483648 * 2 - 1
                line = line (j ? "," : "") sprintf("%.5f", x[j])
            }
            y = (x[0] + x[1] > 0) ? 1 : 0
            print nolabel ? line : line "," y
        }
    }' > "$1"
}
make_csv "$dir/train.csv" 400 1
make_csv "$dir/test.csv" 200 2
make_csv "$dir/new.csv" 7 3 nolabel
data=(--train-csv "$dir/train.csv" --test-csv "$dir/test.csv" --layers 16 --batch 32 --lr 0.02)

# --- usage errors: exit 2 and one line on stderr
expect 2 "$bp"
expect 2 "$bp" frobnicate
expect 2 "$bp" train --bogus
expect 2 "$bp" train --lr
expect 2 "$bp" train --lr abc
expect 2 "$bp" train --batch 0
expect 2 "$bp" train --layers 16,,8
expect 2 "$bp" train --activation swish
expect 2 "$bp" train --train-csv "$dir/train.csv"
expect 2 "$bp" eval
expect 2 "$bp" predict model.bpm
expect 2 "$bp" predict model.bpm --images a --csv b
[ "$("$bp" train --bogus 2>&1 | wc -l)" = 1 ] && ok || bad "usage error is not one line"

# --- help and info: exit 0
for c in train eval predict info plan; do
    expect 0 "$bp" $c --help
    grep -q "usage: backprop $c" "$dir/out" && ok || bad "$c --help prints no usage"
done
expect 0 "$bp" --help
expect 0 "$bp" --version
expect 0 "$bp" info
grep -q '^simd: ' "$dir/out" && grep -q 'caches as used' "$dir/out" && ok || bad "info output"

# --- plan: this machine, and a synthetic 2-socket server
expect 0 "$bp" plan --layers 256,256 --batch 32
grep -q "^backward plan: 3 layers (784-256-256-10)" "$dir/out" && grep -q "^group 0:" "$dir/out" \
    && ok || bad "plan output: $(head -3 "$dir/out")"
synth="pack:2 group:4 [numa(memory=32GiB)] l3:2(size=32MiB) l2:8(size=1MiB) l1d:1(size=48KiB) core:1 pu:2"
if "$bp" info | grep -q "^topology (hwloc)"; then
    expect 0 "$bp" plan --in 1024 --layers 1024,1024,1024 --batch 64 --topology "$synth"
    grep -q "128 threads on 128 cores (2 packages, 8 NUMA nodes, 16 L3)" "$dir/out" && grep -q "^group 1:" "$dir/out" \
        && ok || bad "plan on the synthetic server: $(head -3 "$dir/out")"
    expect 1 "$bp" plan --topology "pack:x"
else # built without hwloc: synthetic topologies are refused, with a message
    expect 1 "$bp" plan --topology "$synth"
    grep -q "no hwloc" "$dir/err" && ok || bad "plan without hwloc: $(cat "$dir/err")"
fi
expect 2 "$bp" plan --topology a --topology-xml b

# --- runtime errors: exit 1 with the file named
expect 1 "$bp" train --train-csv "$dir/nosuch.csv" --test-csv "$dir/test.csv"
grep -q "nosuch.csv" "$dir/err" && ok || bad "missing file not named: $(cat "$dir/err")"
expect 1 "$bp" train --data "$dir/nodir"

# --- IDX data: the training and test sets load side by side; a missing one
# is named, once, and a missing training set is reported before the test set
idx_pair() { # DIR PREFIX: 8 images of 2x2 pixels, labels 0 and 1
    mkdir -p "$1"
    { printf '\x00\x00\x08\x03\x00\x00\x00\x08\x00\x00\x00\x02\x00\x00\x00\x02'
      for i in 1 2 3 4 5 6 7 8; do printf '\x10\x80\xff\x00'; done; } > "$1/$2-images-idx3-ubyte"
    printf '\x00\x00\x08\x01\x00\x00\x00\x08\x00\x01\x00\x01\x00\x01\x00\x01' \
        > "$1/$2-labels-idx1-ubyte"
}
idx_pair "$dir/idx" train; idx_pair "$dir/idx" t10k
idx_pair "$dir/idx_train" train; idx_pair "$dir/idx_test" t10k
expect 0 "$bp" train --data "$dir/idx" --epochs 1 --layers 4 --batch 2
grep -q "^backprop .*: 8 training samples, 4 inputs" "$dir/out" && ok || bad "IDX train: $(head -2 "$dir/out")"
expect 1 "$bp" train --data "$dir/idx_train" --epochs 1
grep -q "t10k-images-idx3-ubyte" "$dir/err" && [ "$(grep -c 'loading data' "$dir/err")" = 1 ] \
    && ok || bad "missing test set: $(cat "$dir/err")"
expect 1 "$bp" train --data "$dir/idx_test" --epochs 1
grep -q "train-images-idx3-ubyte" "$dir/err" && ! grep -q t10k "$dir/err" \
    && ok || bad "missing training set: $(cat "$dir/err")"

# --- train with metrics and a checkpoint
expect 0 "$bp" train "${data[@]}" --epochs 3 --metrics "$dir/m.jsonl" --save "$dir/a.bpm"
[ "$(wc -l < "$dir/m.jsonl")" = 3 ] && ok || bad "metrics has $(wc -l < "$dir/m.jsonl") lines, expected 3"
for key in epoch train_loss test_loss test_accuracy epoch_seconds samples_per_second; do
    [ "$(grep -c "\"$key\": " "$dir/m.jsonl")" = 3 ] && ok || bad "metrics key $key missing"
done
if [ -x /usr/bin/python3 ]; then
    /usr/bin/python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$dir/m.jsonl" \
        && ok || bad "metrics is not JSON lines"
fi
acc=$(sed -n 's/^final test loss .* test accuracy \([0-9.]*\)$/\1/p' "$dir/out")
awk -v a="${acc:-0}" 'BEGIN { exit !(a > 0.9) }' && ok || bad "final accuracy '$acc' not above 0.9"
[ -s "$dir/a.bpm" ] && ok || bad "no checkpoint written"
ls "$dir" | grep -q '\.tmp' && bad "temporary file left behind" || ok

# --- same seed, same run: identical model files
expect 0 "$bp" train "${data[@]}" --epochs 3 --save "$dir/a2.bpm"
cmp -s "$dir/a.bpm" "$dir/a2.bpm" && ok || bad "two runs with the same seed differ"

# --- resume: 1 epoch, then on to 3, equals 3 straight
expect 0 "$bp" train "${data[@]}" --epochs 1 --save "$dir/b.bpm"
expect 0 "$bp" train "${data[@]}" --epochs 3 --resume "$dir/b.bpm" --save "$dir/b.bpm"
cmp -s "$dir/a.bpm" "$dir/b.bpm" && ok || bad "resumed run differs from an uninterrupted one"

# --- eval and predict
expect 0 "$bp" eval "$dir/a.bpm" --test-csv "$dir/test.csv"
grep -q "accuracy" "$dir/out" && grep -q "confusion matrix" "$dir/out" && ok || bad "eval output"
expect 0 "$bp" predict "$dir/a.bpm" --csv "$dir/new.csv" --no-labels
[ "$(grep -c '^[01]$' "$dir/out")" = 7 ] && ok || bad "predict: $(cat "$dir/out")"
expect 0 "$bp" predict "$dir/a.bpm" --csv "$dir/test.csv" --probabilities --output "$dir/p.csv"
[ "$(wc -l < "$dir/p.csv")" = 200 ] && ok || bad "predict --output has $(wc -l < "$dir/p.csv") rows"
expect 1 "$bp" eval "$dir/nosuch.bpm" --test-csv "$dir/test.csv"
head -c 100 "$dir/a.bpm" > "$dir/cut.bpm"
expect 1 "$bp" eval "$dir/cut.bpm" --test-csv "$dir/test.csv"
grep -q "malformed" "$dir/err" && ok || bad "truncated model: $(cat "$dir/err")"

# --- Ctrl-C: finishes the batch, saves, exits 130; the checkpoint loads
make_csv "$dir/big.csv" 20000 4
"$bp" train --train-csv "$dir/big.csv" --test-csv "$dir/test.csv" --layers 64 --batch 8 \
    --epochs 1000 --save "$dir/int.bpm" >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 50); do grep -q "training samples" "$dir/out" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
kill -INT $pid
wait $pid
code=$?
[ $code = 130 ] && ok || bad "SIGINT exit code $code, expected 130: $(cat "$dir/err")"
grep -q "checkpoint saved" "$dir/err" && ok || bad "no checkpoint message"
expect 0 "$bp" eval "$dir/int.bpm" --test-csv "$dir/test.csv"

echo "$passes passed, $fails failed"
[ $fails = 0 ]
