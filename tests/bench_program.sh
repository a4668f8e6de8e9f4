#!/usr/bin/env bash
# Tests of the nsqpub-bench program: usage, exit codes, and small runs of
# every mode and both hosts (the producer's thread, --on-loop) against the
# embedded broker, whose JSON report is checked for its exact keys and for
# values that must hold whatever the machine's speed.  With nsqpub-testd as
# well, runs against a pool of brokers (several --nsqd-tcp-address, and
# --lookupd-http-address) check the per-node counts.
# Usage: bench_program.sh PATH/TO/nsqpub-bench [PATH/TO/nsqpub-testd]
set -euo pipefail

BENCH=${1:?usage: bench_program.sh PATH/TO/nsqpub-bench [PATH/TO/nsqpub-testd]}
TESTD=${2:-}
. "$(dirname "$0")/testd_lib.sh"
TMP=$(mktemp -d)
BROKERS=()
# The nsqpub-testd programs run under timeout, which passes SIGTERM on.
cleanup() {
    local p
    for p in ${BROKERS[@]+"${BROKERS[@]}"}; do
        kill -TERM "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILS=0

fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}

# Runs the bench under a timeout; sets RC, with stdout and stderr in files.
run() {
    RC=0
    timeout 120 "$BENCH" "$@" >"$TMP/out" 2>"$TMP/err" || RC=$?
}

# Checks a --json report: the exact keys in order, then `python3`
# expressions over it (as r) given as the remaining arguments.
check_json() {
    local what=$1
    shift
    if ! python3 - "$TMP/out" "$@" <<'EOF'; then
import json, sys
text = open(sys.argv[1]).read()
lines = [l for l in text.splitlines() if l.strip()]
if len(lines) != 1:
    sys.exit("want one JSON line, got %d: %r" % (len(lines), text))
r = json.loads(lines[0])
keys = ["mode", "host", "size", "count", "batch", "window", "threads", "elapsed_s",
        "msgs_per_s", "mb_per_s", "cpu_user_s", "cpu_sys_s",
        "cpu_us_per_msg", "lat_p50_us", "lat_p90_us", "lat_p99_us",
        "lat_p999_us", "lat_max_us", "errors", "nodes"]
if list(r) != keys:
    sys.exit("keys %r" % list(r))
acked = sum(n["published"] for n in r["nodes"])
if acked > r["count"] or (r["errors"] == 0 and acked != r["count"]):
    sys.exit("nodes %r do not add up to the count" % r["nodes"])
if r["host"] not in ("thread", "loop"):
    sys.exit("host %r" % r["host"])
for k in keys[2:-1]:
    if not isinstance(r[k], (int, float)) or r[k] < 0:
        sys.exit("%s is %r" % (k, r[k]))
lat = [r[k] for k in keys[13:18]]
if lat != sorted(lat):
    sys.exit("percentiles out of order: %r" % lat)
for cond in sys.argv[2:]:
    if not eval(cond, {"r": r}):
        sys.exit("not true: %s (report %r)" % (cond, r))
EOF
        fail "$what: bad report"
    fi
}

# ---- usage -----------------------------------------------------------------

run --help
[ "$RC" = 0 ] || fail "--help exit $RC"
for flag in --nsqd-tcp-address --embedded --topic --mode --size --count \
    --duration --batch --window --threads --on-loop --producer-opt --json \
    --version --help; do
    grep -q -e "$flag" "$TMP/out" || fail "--help does not list $flag"
done
for m in sync async mpub; do
    grep -q -e "$m" "$TMP/out" || fail "--help does not name mode $m"
done

run --version
[ "$RC" = 0 ] || fail "--version exit $RC"
grep -q '^nsqpub-bench [0-9]' "$TMP/out" || fail "--version output"

# Usage errors: exit 2 with a reason on stderr, nothing on stdout.
usage_case() {
    run "$@"
    if [ "$RC" != 2 ]; then
        fail "'$*' exit $RC, want 2"
    elif [ ! -s "$TMP/err" ] || [ -s "$TMP/out" ]; then
        fail "'$*' should explain on stderr only"
    fi
}
usage_case --bogus
usage_case --embedded extra-argument
usage_case # no address and no --embedded
usage_case --embedded --nsqd-tcp-address 127.0.0.1:4150
usage_case --embedded --count 10 --duration 1
usage_case --embedded --mode pubsub
usage_case --embedded --size 0
usage_case --embedded --size 12x
usage_case --embedded --count 0
usage_case --embedded --count -5
usage_case --embedded --duration 0
usage_case --embedded --duration soon
usage_case --embedded --batch 0
usage_case --embedded --window 0
usage_case --embedded --threads 0
usage_case --embedded --topic 'bad topic'
usage_case --embedded --producer-opt dial_timeout
usage_case --embedded --producer-opt no_such_key,1
usage_case --embedded --producer-opt dial-timeout,forever
grep -q 'dial_timeout' "$TMP/err" || fail "bad --producer-opt: no reason"
usage_case --nsqd-tcp-address 'no-port-here'

# ---- runs ------------------------------------------------------------------

run --embedded --mode sync --count 2000 --json
[ "$RC" = 0 ] || fail "sync run exit $RC: $(cat "$TMP/err")"
check_json sync 'r["mode"] == "sync"' 'r["host"] == "thread"' \
    'r["count"] == 2000' \
    'r["errors"] == 0' 'r["msgs_per_s"] > 0' 'r["mb_per_s"] > 0' \
    'r["size"] == 200' 'r["batch"] == 1' 'r["window"] == 1' \
    'r["threads"] == 1' 'r["lat_max_us"] > 0' 'r["elapsed_s"] > 0' \
    'abs(r["mb_per_s"] - r["msgs_per_s"] * 200 / 1e6) < 0.01 + 1e-3 * r["mb_per_s"]'

run --embedded --mode async --count 2000 --size 100 --window 50 --json
[ "$RC" = 0 ] || fail "async run exit $RC: $(cat "$TMP/err")"
check_json async 'r["mode"] == "async"' 'r["count"] == 2000' \
    'r["errors"] == 0' 'r["msgs_per_s"] > 0' 'r["size"] == 100' \
    'r["window"] == 50' 'r["batch"] == 1' 'r["lat_max_us"] > 0'

# 2050 messages in batches of 100: the last MPUB carries 50.
run --embedded --mode mpub --count 2050 --batch 100 --json
[ "$RC" = 0 ] || fail "mpub run exit $RC: $(cat "$TMP/err")"
check_json mpub 'r["mode"] == "mpub"' 'r["count"] == 2050' \
    'r["errors"] == 0' 'r["msgs_per_s"] > 0' 'r["batch"] == 100' \
    'r["window"] == 1000' 'r["lat_max_us"] > 0'

for m in sync async mpub; do
    run --embedded --mode "$m" --count 4001 --batch 10 --window 7 \
        --threads 4 --json
    [ "$RC" = 0 ] || fail "$m --threads 4 exit $RC: $(cat "$TMP/err")"
    check_json "$m threads" 'r["count"] == 4001' 'r["errors"] == 0' \
        'r["threads"] == 4' 'r["msgs_per_s"] > 0'
done

# Duration runs use the histogram.  They last at least the time given and
# stop by themselves: run's timeout fails one that does not (no upper
# bound on a shared machine's speed).
run --embedded --mode async --duration 1 --json
[ "$RC" = 0 ] || fail "--duration 1 exit $RC: $(cat "$TMP/err")"
check_json duration 'r["count"] > 0' 'r["errors"] == 0' \
    '0.9 <= r["elapsed_s"]' 'r["lat_max_us"] > 0'
run --embedded --mode sync --duration 300ms --threads 2 --json
[ "$RC" = 0 ] || fail "--duration 300ms exit $RC: $(cat "$TMP/err")"
check_json "sync duration" 'r["count"] > 0' 'r["errors"] == 0' \
    '0.25 <= r["elapsed_s"]'

# The text report: a few lines that name what was measured.
run --embedded --mode mpub --count 1000 --batch 10
[ "$RC" = 0 ] || fail "text run exit $RC: $(cat "$TMP/err")"
for word in 'msgs/s' 'MB/s' 'us/msg' 'p50' 'p99.9' 'max' 'errors *0'; do
    grep -q -e "$word" "$TMP/out" || fail "text report lacks '$word'"
done

# A producer option reaches the library: nothing fits, every publish fails
# before it is sent, the report still comes, and the exit status is 1.
for m in sync async mpub; do
    run --embedded --mode "$m" --count 30 --batch 4 \
        --producer-opt max-msg-size,100 --json
    [ "$RC" = 1 ] || fail "$m oversize exit $RC, want 1"
    check_json "$m oversize" 'r["count"] == 0' \
        "r[\"errors\"] == (8 if \"$m\" == \"mpub\" else 30)"
    grep -q 'ERR_MSG_TOO_BIG: .*(nsqd did not store it)$' "$TMP/err" ||
        fail "$m oversize: no error name and fate: $(cat "$TMP/err")"
done

# ---- the producer on the bench's own loop (--on-loop) -----------------------

# Sync calls (and the memory mode's) would block the loop; one thread only.
usage_case --embedded --on-loop --mode sync
grep -q -e '--on-loop' "$TMP/err" || fail "--on-loop --mode sync: no reason"
usage_case --embedded --on-loop --mode memory
usage_case --embedded --on-loop --threads 2

run --embedded --on-loop --count 2000 --size 100 --window 50 --json
[ "$RC" = 0 ] || fail "loop async exit $RC: $(cat "$TMP/err")"
check_json "loop async" 'r["host"] == "loop"' 'r["mode"] == "async"' \
    'r["count"] == 2000' 'r["errors"] == 0' 'r["size"] == 100' \
    'r["window"] == 50' 'r["threads"] == 1' 'r["lat_max_us"] > 0'

# One publish at a time: each is made from the previous one's callback.
run --embedded --on-loop --count 300 --window 1 --json
[ "$RC" = 0 ] || fail "loop window 1 exit $RC: $(cat "$TMP/err")"
check_json "loop window 1" 'r["host"] == "loop"' 'r["count"] == 300' \
    'r["errors"] == 0' 'r["window"] == 1'

run --embedded --on-loop --mode mpub --count 2050 --batch 100 --window 3 \
    --json
[ "$RC" = 0 ] || fail "loop mpub exit $RC: $(cat "$TMP/err")"
check_json "loop mpub" 'r["host"] == "loop"' 'r["mode"] == "mpub"' \
    'r["count"] == 2050' 'r["errors"] == 0' 'r["batch"] == 100' \
    'r["window"] == 3'

# A duration run ends on the loop's timer; every MPUB of it is whole.
run --embedded --on-loop --mode mpub --batch 10 --duration 500ms --json
[ "$RC" = 0 ] || fail "loop duration exit $RC: $(cat "$TMP/err")"
check_json "loop duration" 'r["host"] == "loop"' 'r["count"] > 0' \
    'r["count"] % 10 == 0' 'r["errors"] == 0' '0.45 <= r["elapsed_s"]'

# Refused publishes are counted and the run still ends (count and
# duration runs alike).
for m in async mpub; do
    run --embedded --on-loop --mode "$m" --count 30 --batch 4 \
        --producer-opt max-msg-size,100 --json
    [ "$RC" = 1 ] || fail "loop $m oversize exit $RC, want 1"
    check_json "loop $m oversize" 'r["count"] == 0' \
        "r[\"errors\"] == (8 if \"$m\" == \"mpub\" else 30)"
done
run --embedded --on-loop --duration 300ms --producer-opt max-msg-size,100 \
    --json
[ "$RC" = 1 ] || fail "loop oversize duration exit $RC, want 1"
check_json "loop oversize duration" 'r["count"] == 0' 'r["errors"] >= 1'

run --embedded --on-loop --count 100
[ "$RC" = 0 ] || fail "loop text run exit $RC: $(cat "$TMP/err")"
grep -q "loop" "$TMP/out" || fail "loop text report does not name the host"

# Nothing listens on the port: exit 1 and say why.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run --nsqd-tcp-address "127.0.0.1:$PORT" --count 10 --json
[ "$RC" = 1 ] || fail "no broker: exit $RC, want 1"
grep -q 'ERR_CONNECT' "$TMP/err" || fail "no broker: no error on stderr"

# ---- a pool of brokers --------------------------------------------------------

# start_testd NAME [options]: an nsqpub-testd on 127.0.0.1:0; sets ADDR (and
# LOOKUPD, from its second line, when it serves one).
start_testd() {
    local name=$1
    shift
    : >"$TMP/$name.out"
    timeout -k 10 250 "$TESTD" --tcp-address 127.0.0.1:0 "$@" \
        >"$TMP/$name.out" 2>"$TMP/$name.err" &
    BROKERS+=("$!")
    ADDR= LOOKUPD=
    if ADDR=$(testd_address "$TMP/$name.out") &&
        { [ $# = 0 ] || LOOKUPD=$(testd_address "$TMP/$name.out" lookupd); }; then
        return 0
    fi
    fail "$name did not start: $(cat "$TMP/$name.err")"
    return 1
}

# Two brokers, round_robin (the default): each acknowledges half, and the
# report names both in the order given.
if [ -n "$TESTD" ]; then
    start_testd pool_b && B=$ADDR
    start_testd pool_a --lookupd-http-address 127.0.0.1:0 --lookupd-node "$B" &&
        A=$ADDR
    # 1000 messages: A, then B, each acknowledged 500.
    halves=("[n[\"address\"] for n in r[\"nodes\"]] == [\"$A\", \"$B\"]"
        '[n["published"] for n in r["nodes"]] == [500, 500]')
    for m in async mpub; do
        run --nsqd-tcp-address "$A" --nsqd-tcp-address "$B" --mode "$m" \
            --count 1000 --batch 10 --json
        [ "$RC" = 0 ] || fail "two nsqd, $m: exit $RC: $(cat "$TMP/err")"
        check_json "two nsqd, $m" 'r["count"] == 1000' 'r["errors"] == 0' \
            "${halves[@]}"
    done
    # The same pool through the lookupd that broker A serves (it lists A,
    # then B).
    run --lookupd-http-address "$LOOKUPD" --count 1000 --json
    [ "$RC" = 0 ] || fail "lookupd: exit $RC: $(cat "$TMP/err")"
    check_json lookupd 'r["count"] == 1000' 'r["errors"] == 0' \
        "${halves[@]}"
    # The same on the application's loop.
    run --on-loop --nsqd-tcp-address "$A" --nsqd-tcp-address "$B" \
        --count 1000 --window 10 --json
    [ "$RC" = 0 ] || fail "loop, two nsqd: exit $RC: $(cat "$TMP/err")"
    check_json "loop, two nsqd" 'r["host"] == "loop"' 'r["count"] == 1000' \
        'r["errors"] == 0' \
        "${halves[@]}"
    run --on-loop --mode mpub --lookupd-http-address "$LOOKUPD" \
        --count 1000 --batch 10 --json
    [ "$RC" = 0 ] || fail "loop, lookupd: exit $RC: $(cat "$TMP/err")"
    check_json "loop, lookupd" 'r["host"] == "loop"' 'r["count"] == 1000' \
        'r["errors"] == 0' \
        "${halves[@]}"
    # The text report has a line per node.
    run --nsqd-tcp-address "$A" --nsqd-tcp-address "$B" --count 100
    [ "$RC" = 0 ] || fail "two nsqd, text: exit $RC"
    for a in "$A" "$B"; do
        grep -q "node  *$a: 50 acknowledged" "$TMP/out" ||
            fail "text report: no line for $a: $(cat "$TMP/out")"
    done
else
    echo "bench_program: no nsqpub-testd given: the pool runs are skipped"
fi

# The embedded broker (a fork, so the same command line) must not outlive
# the run; a topic unique to this script finds it.  Without pgrep (procps,
# which tools/install-deps installs) the check cannot run: that fails.
if command -v pgrep >/dev/null; then
    run --embedded --count 100 --topic "bench_reap_$$" --json
    [ "$RC" = 0 ] || fail "reap run exit $RC"
    if pgrep -f "bench_reap_$$" >/dev/null; then
        fail "an embedded broker is left running"
    fi
else
    fail "pgrep not found (install procps): the reap check did not run"
fi

if [ "$FAILS" != 0 ]; then
    echo "bench_program: $FAILS failures" >&2
    exit 1
fi
echo "bench_program: all passed"
