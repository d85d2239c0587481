#!/usr/bin/env bash
# Compares two meterd binaries on the local stack in alternated pairs of
# meter-bench runs: on a 2-core machine whose speed swings by more than the
# changes being measured, only runs next to each other compare.
#
#   benches/pairs.sh A B N [meter-bench arguments...]
#   benches/pairs.sh /tmp/meterd-before target/release/meterd 4 --duration 15
#   benches/pairs.sh /tmp/meterd-before target/release/meterd 4 --duration 20 --shape collectors --rate 600000
#
# Pair i runs A then B when i is odd, B then A when even (neither always goes
# first into a warmer or busier machine). Every run adds --skip-baselines.
# Prints each run (end to end to ClickHouse, events/s; crossing-to-suspend p50
# and p99 after the first 3 s of load, ms; the largest aggregator lag in
# records; exact or not), then in how many pairs B was lower or higher than A.
# Each run's whole output is kept in $PAIRS_OUT (default /tmp/meter-pairs).
# Needs the stack up (deploy/local/stack up) and a warm broker (BENCHMARKS.md).
set -euo pipefail

[ $# -ge 3 ] || { sed -n 2,16p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
a=$1 b=$2 n=$3
shift 3
cd "$(dirname "$0")/.."
bench=${METER_BENCH:-target/release/meter-bench}
out=${PAIRS_OUT:-/tmp/meter-pairs}
mkdir -p "$out"
for bin in "$bench" "$a" "$b"; do
    [ -x "$bin" ] || { echo "pairs: $bin is not an executable" >&2; exit 2; }
done

# One run of `binary`; prints "e2e p50 p99 lag exact" (a field the output
# lacks reads "-").
run() {
    local log
    log="$out/$(date +%H%M%S)-$(basename "$1").log"
    "$bench" --skip-baselines --meterd "$1" "${@:2}" > "$log" 2>&1 || true
    awk '
        /end to end: ack -> ClickHouse/ && !e2e { e2e = $(NF - 6) }
        /after the first 3 s of load\)/ { for (i = 1; i < NF; i++) { if ($i == "p50") p50 = $(i + 1); if ($i == "p99") p99 = $(i + 1) } }
        /^aggregator lag/ { for (i = 1; i <= NF; i++) if (split($i, kv, ":") == 2 && kv[2] + 0 > lag) lag = kv[2] + 0 }
        /^exact: yes/ { exact = "yes" }
        END {
            sub(",", "", p50); sub(",", "", p99)
            printf "%s %s %s %s %s\n", e2e ? e2e : "-", p50 ? p50 : "-", p99 ? p99 : "-", lag + 0, exact ? exact : "NO"
        }' "$log"
}

printf '%-5s %-34s %12s %8s %8s %9s %6s\n' pair binary "end to end" "p50 ms" "p99 ms" "max lag" exact
declare -a ra rb
for i in $(seq 1 "$n"); do
    if [ $((i % 2)) = 1 ]; then
        ra[i]=$(run "$a" "$@")
        rb[i]=$(run "$b" "$@")
    else
        rb[i]=$(run "$b" "$@")
        ra[i]=$(run "$a" "$@")
    fi
    for side in a b; do
        if [ $side = a ]; then r=${ra[i]} bin=$a; else r=${rb[i]} bin=$b; fi
        read -r e2e p50 p99 lag exact <<< "$r"
        printf '%-5s %-34s %12s %8s %8s %9s %6s\n' "$i" "$side: $(basename "$bin")" "$e2e" "$p50" "$p99" "$lag" "$exact"
    done
done

# In how many pairs B's figure was below / above A's (field k of a result).
count() {
    local k=$1 lower=0 higher=0 x y
    for i in $(seq 1 "$n"); do
        x=$(cut -d' ' -f"$k" <<< "${ra[i]}")
        y=$(cut -d' ' -f"$k" <<< "${rb[i]}")
        [ "$x" = - ] || [ "$y" = - ] && continue
        [ "$y" -lt "$x" ] && lower=$((lower + 1))
        [ "$y" -gt "$x" ] && higher=$((higher + 1))
    done
    echo "$lower lower, $higher higher"
}
echo
echo "B against A over $n pairs:"
echo "  end to end:                $(count 1)"
echo "  crossing-to-suspend p50:   $(count 2)"
echo "  crossing-to-suspend p99:   $(count 3)"
echo "  largest aggregator lag:    $(count 4)"
