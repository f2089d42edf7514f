#!/bin/sh
# What the daemon spends per call, in counts the machine's other load does
# not disturb: instructions (callgrind), system calls (strace -c -f) and
# context switches (perf stat), each the difference between a run of N1
# and a run of N2 calls (examples/daemon_calls.rs) divided by N2 - N1.
#
#   bench/percall.sh [WSPRD] [SCENARIOS...]
#
# WSPRD defaults to target/release/wsprd; SCENARIOS to all four
# (js-native native-js-cached native-js-uncached js-js). N1 and N2 come
# from the environment (defaults 200 and 1200); TOOLS picks among
# "instructions syscalls switches" (default all three).
set -eu
cd "$(dirname "$0")/.."
WSPRD=${1:-target/release/wsprd}
[ $# -gt 0 ] && shift
SCENARIOS=${*:-js-native native-js-cached native-js-uncached js-js}
N1=${N1:-200}
N2=${N2:-1200}
TOOLS=${TOOLS:-instructions syscalls switches}
DRIVER=${DRIVER:-target/release/examples/daemon_calls}
[ -x "$DRIVER" ] || cargo build --release --example daemon_calls >&2
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# count TOOL SCENARIO N: the daemon's total under TOOL.
count() {
    case $1 in
    instructions)
        WSPR_DAEMON=$WSPRD WSPR_DAEMON_WRAP="valgrind --tool=callgrind --callgrind-out-file=$OUT/cg.%p" \
            "$DRIVER" "$2" "$3" 2>"$OUT/log" >/dev/null
        f=$(ls "$OUT"/cg.* | head -n 1)
        n=$(sed -n 's/^summary: //p; s/^totals: //p' "$f" | head -n 1)
        rm -f "$OUT"/cg.*
        echo "$n"
        ;;
    syscalls)
        WSPR_DAEMON=$WSPRD WSPR_DAEMON_WRAP="strace -f -c -o $OUT/st" \
            "$DRIVER" "$2" "$3" 2>"$OUT/log" >/dev/null
        awk '$NF == "total" { print $(NF-2) }' "$OUT/st"
        ;;
    switches)
        WSPR_DAEMON=$WSPRD WSPR_DAEMON_WRAP="perf stat -x, -e context-switches -o $OUT/ps" \
            "$DRIVER" "$2" "$3" 2>"$OUT/log" >/dev/null
        awk -F, '$3 == "context-switches" { print $1 }' "$OUT/ps"
        ;;
    esac
}

printf '%-20s' scenario
for t in $TOOLS; do printf ' %14s' "$t/call"; done
echo
for s in $SCENARIOS; do
    printf '%-20s' "$s"
    for t in $TOOLS; do
        a=$(count "$t" "$s" "$N1")
        b=$(count "$t" "$s" "$N2")
        printf ' %14s' "$(awk -v a="$a" -v b="$b" -v n="$((N2 - N1))" 'BEGIN { printf "%.1f", (b - a) / n }')"
    done
    echo
done
