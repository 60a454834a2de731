#!/bin/bash
# `mpirun -np N backprop train` end to end (suite mpi): the same model as
# one process (to a tolerance; bitwise with --mpi-exact), rank 0 alone
# writes, checkpoints resume under MPI (even on another rank count), and a
# rank that fails ends the job quickly with its message.
# usage: mpi_cli.sh MPIEXEC BACKPROP
set -euo pipefail
MPIEXEC=$1
BP=$(realpath "$2")
# Open MPI's own allocations look like leaks to ASan; mpirun passes the
# environment on to the local ranks.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
run() { local np=$1; shift; "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" "$@"; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
fail() { echo "FAIL: $*"; exit 1; }

# 301 rows: no global batch size used below divides it (short last batches,
# and with 3 ranks a shard with no rows at all).
awk 'BEGIN { srand(5); for (i = 0; i < 301; i++) { s = 0;
       for (j = 0; j < 6; j++) { x = 2 * rand() - 1; s += (j % 2 ? x : -x) * (j + 1);
         printf "%.5f,", x }
       print (s > 0.5) + (s > -0.5) } }' > train.csv
head -n 100 train.csv > test.csv
common=(--train-csv train.csv --test-csv test.csv --layers 24,12 --batch 8 --threads 1
        --epochs 4 --seed 3)
final() { awk '/^final test loss/ { print $4 }' "$1"; }

# 1. All-reduce: 2 and 3 ranks x 8 rows against one process with 16 and 24.
for np in 2 3; do
    run "$np" "$BP" train "${common[@]}" --metrics m$np.jsonl > out$np.txt
    "$BP" train "${common[@]}" --batch $((8 * np)) > ref$np.txt
    a=$(final out$np.txt) b=$(final ref$np.txt)
    awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 2e-4) }' ||
        fail "$np ranks: final test loss $a, one process $b"
    echo "ok: $np ranks x 8 rows: final test loss $a, one process x $((8 * np)) rows: $b"
    # Rank 0 alone prints and writes.
    [ "$(grep -c '^final test loss' out$np.txt)" = 1 ] || fail "$np ranks: more than one rank printed"
    [ "$(wc -l < m$np.jsonl)" = 4 ] || fail "$np ranks: metrics has $(wc -l < m$np.jsonl) lines, not 4"
    grep -q "^mpi: $np ranks" out$np.txt || fail "$np ranks: no timing line"
done
echo "ok: only rank 0 prints and writes metrics"

# 2. --mpi-exact: N ranks and one process with N shards write the same bits.
run 2 "$BP" train "${common[@]}" --mpi-exact --save x2.bpm > /dev/null
"$BP" train "${common[@]}" --mpi-exact --mpi-shards 2 --save x1.bpm > /dev/null
cmp x1.bpm x2.bpm || fail "--mpi-exact: 2 ranks and 1 process with 2 shards differ"
run 3 "$BP" train "${common[@]}" --mpi-exact --mpi-shards 6 --save y3.bpm > /dev/null
"$BP" train "${common[@]}" --mpi-exact --mpi-shards 6 --save y1.bpm > /dev/null
cmp y1.bpm y3.bpm || fail "--mpi-exact: 3 ranks and 1 process with 6 shards differ"
echo "ok: --mpi-exact: 2 ranks = 1 process x 2 shards, 3 ranks x 2 shards = 1 process x 6 shards, bitwise"

# 3. Checkpoint under MPI, resume under MPI, on another rank count: in exact
#    mode bit for bit the uninterrupted run (y1.bpm: 4 epochs, 6 shards).
run 2 "$BP" train "${common[@]}" --mpi-exact --mpi-shards 6 --epochs 2 --save r.bpm > /dev/null
run 3 "$BP" train "${common[@]}" --mpi-exact --mpi-shards 6 --resume r.bpm --save r.bpm > resumed.txt
cmp r.bpm y1.bpm || fail "2 epochs on 2 ranks + 2 resumed on 3 ranks differ from 4 epochs"
run 2 "$BP" train "${common[@]}" --epochs 2 --save a.bpm > /dev/null
run 2 "$BP" train "${common[@]}" --resume a.bpm --save a.bpm > /dev/null
run 2 "$BP" train "${common[@]}" --save b.bpm > /dev/null
cmp a.bpm b.bpm || fail "all-reduce: 2 + 2 resumed epochs differ from 4 epochs"
echo "ok: checkpoint and resume under MPI (exact: 2 ranks then 3 ranks = 1 process)"

# 4. A rank that fails ends the job, quickly, with its message: bad data on
#    rank 1 only; a missing file on rank 0 only; ranks disagreeing on --batch.
printf '1,2,x,4,5,6,0\n' > bad.csv
# per_rank.sh TRAIN1 BATCH1 TRAIN0 BATCH0 OPTIONS...: rank 1 trains on
# TRAIN1 with --batch BATCH1, every other rank on TRAIN0 with BATCH0.
cat > per_rank.sh <<'EOF'
#!/bin/bash
r=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}
if [ "$r" = 1 ]; then data=$1 batch=$2; else data=$3 batch=$4; fi
shift 4
exec "$BP" train --train-csv "$data" --batch "$batch" "$@"
EOF
chmod +x per_rank.sh
export BP
check_abort() {  # name, expected message, per_rank.sh arguments...
    local name=$1 want=$2 t0=$SECONDS rc=0; shift 2
    timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 ./per_rank.sh "$@" \
        --test-csv test.csv --threads 1 --epochs 50 > abort.out 2> abort.err || rc=$?
    local took=$((SECONDS - t0))
    [ "$rc" != 0 ] || fail "$name: the job exited 0"
    [ "$rc" != 124 ] || fail "$name: the job hung (killed by timeout)"
    grep -q "$want" abort.err || { cat abort.err; fail "$name: no message '$want'"; }
    [ "$took" -le 20 ] || fail "$name: took $took s"
    echo "ok: $name: exit $rc after ${took} s: $(grep -m1 "$want" abort.err)"
}
check_abort "bad CSV on rank 1" "rank 1 of 2 failed" bad.csv 8 train.csv 8
grep -q "bad.csv" abort.err || fail "bad CSV: the message does not name the file"
check_abort "missing file on rank 0" "rank 0 of 2 failed" train.csv 8 missing.csv 8
grep -q "missing.csv" abort.err || fail "missing file: the message does not name the file"
check_abort "ranks disagree on --batch" "ranks disagree on" train.csv 9 train.csv 8
