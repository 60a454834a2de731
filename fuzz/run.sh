#!/bin/bash
# Run every harness of a -Dfuzz=true build for a bounded time:
#   fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
# Seeds come from make_corpus.sh (plus the committed regressions); the
# growing corpus lives in BUILD_DIR/fuzz-corpus/<target> and persists
# across runs of the same build directory. Two harnesses run at a time.
# Prints each harness's executions (stat::number_of_executed_units) and
# fails if any harness finds a crash, leak, timeout or sanitizer report;
# the offending input is in BUILD_DIR/fuzz-artifacts/ (copy it into
# fuzz/regressions/<target>/ once fixed).
set -euo pipefail
build=$1
seconds=$2
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx csv model cli)
here=$(cd "$(dirname "$0")" && pwd)
seeds="$build/fuzz-seeds"
rm -rf "$seeds"
bash "$here/make_corpus.sh" "$seeds" "$build/backprop" >/dev/null
mkdir -p "$build/fuzz-artifacts"

run_one() {
    local t=$1 corpus="$build/fuzz-corpus/$1" log="$build/fuzz-$1.log"
    mkdir -p "$corpus"
    # Halt on the first UBSan report too, and look for leaks.
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    "$build/fuzz/fuzz_$t" "$corpus" "$seeds/$t" "$here/regressions/$t" \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -artifact_prefix="$build/fuzz-artifacts/$t-" >"$log" 2>&1
}

status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    pids=()
    for t in "${targets[@]:i:2}"; do
        run_one "$t" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || status=1; done
done
for t in "${targets[@]}"; do
    log="$build/fuzz-$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    if grep -qE '^==[0-9]+==ERROR|runtime error|deadly signal|Timeout|out-of-memory' "$log"; then
        echo "fuzz_$t: FINDING after $execs executions (log: $log)"
        grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -20
        status=1
    else
        echo "fuzz_$t: $execs executions in ${seconds} s, $cov, no finding"
    fi
done
exit $status
