#!/usr/bin/env bash
# nsqpub-testd as a program: --help documents every option of main.c's long
# option table, bad flags exit 2, it announces its address, answers a
# publish over TCP (bash's /dev/tcp), applies a limit flag, and stops with
# exit 0 on SIGTERM and on SIGINT, writing --dump, and serves nsqlookupd's
# /ping, /nodes and /lookup with --lookupd-http-address.  Every wait is
# bounded.
#
# Usage: testd_program.sh PATH/TO/nsqpub-testd
set -euo pipefail

bin=${1:?usage: testd_program.sh PATH/TO/nsqpub-testd}
here=$(cd "$(dirname "$0")" && pwd)
main_c=$here/../tools/testd/main.c
. "$here/testd_lib.sh"
work=$(mktemp -d)
pid=

cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Runs the program (bounded) and sets rc, out and err.
run() {
    rc=0
    timeout 10 "$bin" "$@" >"$work/run.out" 2>"$work/run.err" || rc=$?
    out=$(cat "$work/run.out")
    err=$(cat "$work/run.err")
}

# ---- --help and --version

run --help
[[ $rc -eq 0 ]] || fail "--help exited $rc"
run -h
[[ $rc -eq 0 ]] || fail "-h exited $rc"
help=$out
names=$(sed -n 's/^ *{"\([a-z0-9-]*\)", *\(no\|required\|optional\)_argument.*/\1/p' "$main_c")
count=$(wc -w <<<"$names")
[[ $count -ge 20 ]] || fail "found only $count options in $main_c"
for name in $names; do
    grep -qE -- "(^|[^a-z-])--${name}([=,[:space:]]|\\[|$)" <<<"$help" ||
        fail "--help does not mention --$name"
done

run --version
[[ $rc -eq 0 ]] || fail "--version exited $rc"
[[ $out == "nsqpub-testd "* ]] || fail "--version printed '$out'"

# ---- bad usage exits 2

for args in "--no-such-flag" "--max-workers=0" "--malformed=bogus" \
    "--tcp-address=nohostport" "--delay=soon" "extra-argument" \
    "--lookupd-http-address=nohostport" "--lookupd-node=10.0.0.1" \
    "--lookupd-node=:4150" "--lookupd-topic=bad/topic"; do
    # shellcheck disable=SC2086 # one flag each, split on purpose
    run $args
    [[ $rc -eq 2 ]] || fail "'$args' exited $rc, want 2"
    grep -q -- "--help" <<<"$err" || fail "'$args': no hint on stderr: $err"
done

# ---- a running broker

# Starts the broker in the background (bounded by timeout, which forwards
# SIGTERM and SIGINT to it) and sets pid and port.
start() {
    : >"$work/out"
    timeout -s KILL 60 "$bin" --tcp-address=127.0.0.1:0 "$@" \
        >"$work/out" 2>"$work/err" &
    pid=$!
    testd_address "$work/out" "" "$pid" >/dev/null || true
    line=$(head -n 1 "$work/out")
    re='^nsqpub-testd listening on 127\.0\.0\.1:([0-9]+)$'
    [[ $line =~ $re ]] || fail "first line '$line'"
    port=${BASH_REMATCH[1]}
    [[ $port -gt 0 ]] || fail "port $port"
}

# Sends a signal, then waits (bounded by the timeout above) for exit 0.
stop() {
    kill "-$1" "$pid"
    local status=0
    wait "$pid" || status=$?
    pid=
    [[ $status -eq 0 ]] || fail "exit status $status after SIG$1"
}

# The hex of a frame [size][type][data].
frame_hex() {
    local type=$1 data=$2
    printf '%08x%08x' $((4 + ${#data})) "$type"
    printf '%s' "$data" | od -An -v -tx1 | tr -d ' \n'
}

# Publishes each body to topic on one connection; each answer must be
# exactly want (a frame's hex).
publish() {
    local topic=$1 want=$2 body got
    shift 2
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf '  V2' >&3
    for body in "$@"; do
        # A 4-byte big-endian size, then the body (ASCII, under 256 bytes).
        printf 'PUB %s\n\x00\x00\x00'"\\x$(printf %02x ${#body})"'%s' \
            "$topic" "$body" >&3
        got=$(timeout 10 head -c $((${#want} / 2)) <&3 |
            od -An -v -tx1 | tr -d ' \n') || fail "no answer to PUB $body"
        [[ $got == "$want" ]] || fail "PUB $body: got $got, want $want"
    done
    exec 3>&-
}

ok=$(frame_hex 0 OK)

# SIGTERM: two messages answered OK, both in the dump, with the summary.
start --dump "$work/term.jsonl"
publish prog "$ok" hello world
stop TERM
dump=$work/term.jsonl
[[ -f $dump ]] || fail "no dump after SIGTERM"
[[ $(wc -l <"$dump") -eq 3 ]] || fail "dump: $(cat "$dump")"
grep '"topic":"prog"' "$dump" | grep '"index":0' | grep '"size":5' |
    grep -q '"body":"hello"' || fail "dump lacks hello: $(cat "$dump")"
grep '"topic":"prog"' "$dump" | grep '"index":1' |
    grep -q '"body":"world"' || fail "dump lacks world: $(cat "$dump")"
tail -n 1 "$dump" | grep '"summary":true' | grep '"topic":"prog"' |
    grep '"count":2' | grep -q '"bytes":10' ||
    fail "dump summary: $(cat "$dump")"
grep -q 'stopped: 1 connections' "$work/err" ||
    fail "stderr after SIGTERM: $(cat "$work/err")"

# SIGINT: the same clean stop.
start --dump "$work/int.jsonl"
publish other "$ok" abc
stop INT
dump=$work/int.jsonl
[[ $(wc -l <"$dump") -eq 2 ]] || fail "dump: $(cat "$dump")"
grep '"topic":"other"' "$dump" | grep -q '"body":"abc"' ||
    fail "dump lacks abc: $(cat "$dump")"
tail -n 1 "$dump" | grep '"summary":true' | grep '"count":1' |
    grep -q '"bytes":3' || fail "dump summary: $(cat "$dump")"

# A limit flag reaches the broker: nsqd's error text, and nothing recorded.
start --max-msg-size=4 --dump "$work/limit.jsonl"
publish t "$(frame_hex 1 'E_BAD_MESSAGE PUB message too big 5 > 4')" hello
stop TERM
[[ $(wc -l <"$work/limit.jsonl") -eq 0 ]] ||
    fail "dump after a rejected PUB: $(cat "$work/limit.jsonl")"

# The lookupd: a second address line; /nodes lists this broker and the
# --lookupd-node, each with the --lookupd-topic; /lookup finds it.
start --lookupd-http-address=127.0.0.1:0 --lookupd-node=10.0.0.5:4150 \
    --lookupd-topic=t1
testd_address "$work/out" lookupd >/dev/null || true
line=$(sed -n 2p "$work/out")
re='^nsqpub-testd lookupd listening on 127\.0\.0\.1:([0-9]+)$'
[[ $line =~ $re ]] || fail "second line '$line'"
lport=${BASH_REMATCH[1]}
# GET path: the body of the answer (HTTP/1.0, so the server closes).
http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$lport"
    printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
    timeout 10 cat <&3 | sed '1,/^\r$/d'
    exec 3>&-
}
[[ $(http_get /ping) == OK ]] || fail "/ping"
node() {
    printf '{"remote_address":"%s:%s","hostname":"%s","broadcast_address":"%s",' \
        "$1" "$2" "$1" "$1"
    printf '"tcp_port":%s,"http_port":0,"version":"1.3.0"' "$2"
}
want='{"producers":['$(node 127.0.0.1 "$port")',"tombstones":[false],"topics":["t1"]},'
want+=$(node 10.0.0.5 4150)',"tombstones":[false],"topics":["t1"]}]}'
got=$(http_get /nodes)
[[ $got == "$want" ]] || fail "/nodes: $got, want $want"
want='{"channels":[],"producers":['$(node 127.0.0.1 "$port")'},'$(node 10.0.0.5 4150)'}]}'
got=$(http_get '/lookup?topic=t1')
[[ $got == "$want" ]] || fail "/lookup: $got, want $want"
got=$(http_get '/lookup?topic=t2')
[[ $got == '{"message":"TOPIC_NOT_FOUND"}' ]] || fail "/lookup t2: $got"
stop TERM

echo "testd_program: ok ($count options checked)"
