#!/usr/bin/env bash
# Runs the fuzz targets one after another, each for FUZZ_SECS seconds
# (default 60), on its checked-in seeds (fuzz/seeds/<target>/) plus a
# scratch corpus (fuzz/corpus/<target>/, kept between runs, ignored by
# git). Exits non-zero if any target crashes, times out or fails to build.
# Crashing inputs land in fuzz/artifacts/<target>/; see docs/fuzzing.md.
#
#   fuzz/run.sh                  every target
#   fuzz/run.sh names dispatch   only those
#   FUZZ_SECS=600 fuzz/run.sh    longer
#
# cargo fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain provide them. The dispatch target runs in a network namespace
# of its own (only loopback), because its inputs name servers anywhere.
set -uo pipefail

cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
secs=${FUZZ_SECS:-60}
export RUSTC_BOOTSTRAP=1

if ! "$CARGO" fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    "$CARGO" install cargo-fuzz --locked || exit 1
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("$CARGO" fuzz list)
fi

echo "== building ${targets[*]}"
for t in "${targets[@]}"; do
    "$CARGO" fuzz build "$t" || exit 1
done

# Runs "$@" in a new network namespace with only loopback, up.
isolated() {
    local inner='ip link set lo up && exec "$@"'
    if unshare -n true 2>/dev/null; then
        unshare -n -- sh -c "$inner" sh "$@"
    elif unshare -rn true 2>/dev/null; then
        unshare -rn -- sh -c "$inner" sh "$@"
    else
        echo "cannot make a network namespace (unshare -n or -rn); not running $*" >&2
        return 1
    fi
}

logs=fuzz/target/logs
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    timeout=10
    run=()
    if [ "$t" = dispatch ]; then
        # A known-good call may wait 10 s, and again on a new pipe. The
        # daemon is never shut down, so LeakSanitizer's check at exit would
        # report the buffers of its threads at work; the checks libFuzzer
        # makes during the run stay.
        timeout=30
        run=(isolated env CARGO_NET_OFFLINE=true
            ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}leak_check_at_exit=0")
    fi
    echo "== $t: ${secs}s"
    "${run[@]}" "$CARGO" fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout="$timeout" -print_final_stats=1 \
        2>&1 | tee "$logs/$t.log" | grep -E '^(#[0-9]+ +(INITED|DONE)|==[0-9]+== ERROR|thread .* panicked|stat::number_of_executed_units|SUMMARY|artifact_prefix|Test unit written)'
    status=${PIPESTATUS[0]}
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$logs/$t.log" | tail -1 | grep -o '[0-9]*$')
    cov=$(grep -oE '(INITED|DONE|pulse|NEW|REDUCE) +cov: [0-9]+ ft: [0-9]+' "$logs/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: FAILED (exit $status; log $logs/$t.log, inputs in fuzz/artifacts/$t/)")
    else
        summary+=("$t: ok, ${execs:-?} executions, ${cov:-cov ?}, scratch corpus $corpus inputs")
    fi
done

echo "== summary (${secs}s each)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== failed: ${failed[*]}" >&2
    exit 1
fi
