#!/usr/bin/env bash
# Tests of the nsqpub CLI (tools/nsqpub) against the test broker program:
# options and usage errors, to_nsq compatibility, records and delimiters,
# batches and deferred publishes, several nsqd, failures, signals, and large
# input. Every broker listens on 127.0.0.1:0 and records what it received
# with --dump, which is compared with the input.
#   nsqpub_program.sh NSQPUB_BINARY NSQPUB_TESTD_BINARY
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 NSQPUB NSQPUB_TESTD" >&2
  exit 2
fi
nsqpub=$1
testd=$2
src_dir=$(cd "$(dirname "$0")/.." && pwd)
. "$src_dir/tests/testd_lib.sh"

tmp=$(mktemp -d)
pids=()
# Stops a process started here (a timeout wrapper) and what it runs: TERM,
# then KILL after 30s (a sanitized program's leak check can hang at exit).
# Returns 0 if it ended after TERM.
end_process() {
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for ((i = 0; i < 600; i++)); do
    kill -0 "$p" 2>/dev/null || return 0
    sleep 0.05
  done
  pkill -KILL -P "$p" 2>/dev/null || true
  kill -KILL "$p" 2>/dev/null || true
  return 1
}

cleanup() {
  local p
  for p in ${pids[@]+"${pids[@]}"}; do
    end_process "$p" || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

ok() {
  echo "ok - $*"
}

# Forgets a process that has been waited for, so cleanup does not signal a
# reused pid.
forget() {
  local p keep=()
  for p in ${pids[@]+"${pids[@]}"}; do
    [[ $p == "$1" ]] || keep+=("$p")
  done
  pids=(${keep[@]+"${keep[@]}"})
}

# Sanitizer reports go to stderr; any of them fails the test even when the
# exit status happens to be the expected one.
no_sanitizer_report() {
  if grep -q -e 'Sanitizer' -e 'runtime error' "$1"; then
    cat "$1" >&2
    fail "$2: sanitizer report on stderr"
  fi
}

# ---------------------------------------------------------------- brokers

declare -A broker_pid broker_addr

# start_broker NAME [testd options]: starts a broker dumping to
# $tmp/NAME.jsonl and sets broker_addr[NAME] from its "listening on" line.
start_broker() {
  local name=$1
  shift
  # Created before the broker starts: the background job's redirection
  # may happen after the first poll below.
  : >"$tmp/$name.out"
  # --foreground: timeout forwards a signal to the broker only, not to
  # its process group too, so the broker gets exactly one SIGTERM (see the
  # signal tests). -k: a KILL follows 30s after any signal.
  timeout --foreground -k 30 280 "$testd" --tcp-address 127.0.0.1:0 \
    --dump "$tmp/$name.jsonl" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local pid=$!
  pids+=("$pid")
  broker_pid[$name]=$pid
  local addr
  if ! addr=$(testd_address "$tmp/$name.out" "" "$pid"); then
    cat "$tmp/$name.out" "$tmp/$name.err" >&2
    fail "broker $name ($*) did not print its address"
  fi
  broker_addr[$name]=$addr
}

# stop_broker NAME: SIGTERM, which makes the broker write its dump.
stop_broker() {
  local name=$1 pid=${broker_pid[$1]} rc=0 ended=0
  end_process "$pid" || ended=$?
  wait "$pid" || rc=$?
  forget "$pid"
  if [[ $ended -ne 0 ]]; then
    cat "$tmp/$name.err" >&2
    fail "broker $name did not exit within 30s of SIGTERM (killed; its stderr is above)"
  fi
  no_sanitizer_report "$tmp/$name.err" "broker $name"
  if [[ $rc -ne 0 ]]; then
    cat "$tmp/$name.err" >&2
    fail "broker $name exited with status $rc on SIGTERM"
  fi
  [[ -f $tmp/$name.jsonl ]] || fail "broker $name wrote no dump"
}

# ---------------------------------------------------------------- running

# run_nsqpub NAME INPUT_FILE ARGS...: runs nsqpub with INPUT_FILE on stdin;
# sets $rc, and leaves stdout and stderr in $tmp/NAME.stdout, .stderr.
run_nsqpub() {
  local name=$1 input=$2
  shift 2
  rc=0
  timeout -k 10 120 "$nsqpub" "$@" <"$input" >"$tmp/$name.stdout" \
    2>"$tmp/$name.stderr" || rc=$?
  [[ $rc -ne 124 && $rc -ne 137 ]] || fail "$name: nsqpub did not finish within 120s"
  no_sanitizer_report "$tmp/$name.stderr" "$name"
}

# expect_rc NAME WANT: checks $rc, showing nsqpub's output when it differs.
expect_rc() {
  if [[ $rc -ne $2 ]]; then
    echo "--- stdout:" >&2
    cat "$tmp/$1.stdout" >&2
    echo "--- stderr:" >&2
    cat "$tmp/$1.stderr" >&2
    fail "$1: nsqpub exited with status $rc, expected $2"
  fi
}

# expect_stderr NAME REGEX WHAT: nsqpub's stderr must match the ERE.
expect_stderr() {
  if ! grep -q -E -e "$2" "$tmp/$1.stderr"; then
    echo "--- stderr:" >&2
    cat "$tmp/$1.stderr" >&2
    fail "$1: stderr does not contain $3 (/$2/)"
  fi
}

# expect_usage_error NAME ARGS...: exit 2, a message on stderr, nothing on
# stdout.
expect_usage_error() {
  local name=$1
  shift
  run_nsqpub "$name" /dev/null "$@"
  expect_rc "$name" 2
  [[ -s $tmp/$name.stderr ]] || fail "$name: exit 2 without a message on stderr"
  [[ ! -s $tmp/$name.stdout ]] || fail "$name: usage error wrote to stdout"
  # Every usage error is named by "nsqpub:" (not the program's path) and
  # ends with the pointer to --help.
  head -n 1 "$tmp/$name.stderr" | grep -q '^nsqpub: ' ||
    fail "$name: the message does not start with 'nsqpub: ': $(head -n 1 "$tmp/$name.stderr")"
  [[ $(tail -n 1 "$tmp/$name.stderr") == "Try 'nsqpub --help'." ]] ||
    fail "$name: the last line is not Try 'nsqpub --help'.: $(tail -n 1 "$tmp/$name.stderr")"
  ok "usage error exits 2 with a message: $name ($(head -n 1 "$tmp/$name.stderr"))"
}

# Compares a broker's dump with the records of an input file.
#   check_dump DUMP TOPIC INPUT DELIM_BYTE [KEY=VALUE ...]
# DELIM_BYTE is the delimiter as a decimal byte value. The messages of TOPIC,
# in the dump's order, must be exactly the non-empty records of INPUT (the
# last one kept whole without its delimiter) and the topic's summary must
# count them. KEY=VALUE pairs are fields every message must have (defer_ms).
dump_checker=$(
  cat <<'EOF'
import base64, json, sys

dump, topic, inp, delim = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fields = dict(a.split("=", 1) for a in sys.argv[5:])
with open(inp, "rb") as f:
    want = [r for r in f.read().split(bytes([delim])) if r]
msgs, summary = [], None
with open(dump, "rb") as f:
    for n, line in enumerate(f, 1):
        o = json.loads(line)
        if o.get("topic") != topic:
            continue
        if o.get("summary"):
            summary = o
            continue
        if "body" in o:
            body = o["body"].encode("utf-8")
        else:
            body = base64.b64decode(o["body_base64"])
        if o["size"] != len(body):
            sys.exit(f"{dump}:{n}: size {o['size']} but body has {len(body)} bytes")
        for k, v in fields.items():
            if str(o.get(k)) != v:
                sys.exit(f"{dump}:{n}: {k} is {o.get(k)!r}, expected {v}")
        msgs.append((o["index"], body))
got = [b for _, b in sorted(msgs)]
if [i for i, _ in sorted(msgs)] != list(range(len(msgs))):
    sys.exit(f"{dump}: indexes of topic {topic} are not 0..{len(msgs) - 1}")
if len(got) != len(want):
    sys.exit(f"{dump}: topic {topic} has {len(got)} messages, expected {len(want)}")
for i, (g, w) in enumerate(zip(got, want)):
    if g != w:
        sys.exit(f"{dump}: topic {topic} message {i} is {g!r}, expected {w!r}")
if summary is None or summary["count"] != len(want) or summary["recorded"] != len(want):
    sys.exit(f"{dump}: summary of topic {topic} is {summary}, expected count {len(want)}")
EOF
)

check_dump() {
  local out
  if ! out=$(python3 -c "$dump_checker" "$@" 2>&1); then
    fail "$out"
  fi
}

# The bodies of TOPIC's messages in a dump, as a Python list of bytes (for
# literal comparisons that do not go through the checker's splitting).
dump_bodies() {
  python3 -c '
import base64, json, sys
out = []
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("topic") == sys.argv[2] and not o.get("summary"):
        b = o["body"].encode() if "body" in o else base64.b64decode(o["body_base64"])
        out.append((o["index"], b))
print([b for _, b in sorted(out)])' "$1" "$2"
}

# The number of messages of TOPIC in a dump (its summary's count; 0 when the
# topic never appeared).
dump_count() {
  python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("summary") and o["topic"] == sys.argv[2]:
        n = o["count"]
print(n)' "$1" "$2"
}

# wait_arrived ADDR TOPIC N: subscribes to TOPIC on the broker and returns
# once N messages were delivered (so the broker stored and acknowledged
# them); fails after 60s. Used to signal nsqpub only after its records
# arrived, without guessing a delay.
wait_arrived() {
  python3 - "$@" <<'EOF' || fail "$2: the records did not arrive at the broker"
import socket, struct, sys

host, port = sys.argv[1].rsplit(":", 1)
topic, want = sys.argv[2], int(sys.argv[3])
s = socket.create_connection((host, int(port)), timeout=60)

def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            sys.exit("broker closed the subscription")
        buf += chunk
    return buf

def frame():
    size, = struct.unpack(">I", read_exact(4))
    data = read_exact(size)
    return struct.unpack(">I", data[:4])[0], data[4:]

s.sendall(b"  V2SUB " + topic.encode() + b" wait\n")
kind, data = frame()
if kind != 0 or data != b"OK":
    sys.exit(f"SUB answered {kind} {data!r}")
s.sendall(b"RDY 1000\n")
got = 0
while got < want:
    kind, data = frame()
    if kind == 0 and data == b"_heartbeat_":
        s.sendall(b"NOP\n")
    elif kind == 2:
        s.sendall(b"FIN " + data[10:26] + b"\n")
        got += 1
    else:
        sys.exit(f"unexpected frame {kind} {data!r}")
s.sendall(b"CLS\n")
EOF
}

# ---------------------------------------------------------------- --help etc.

printf '' >"$tmp/empty"

run_nsqpub help "$tmp/empty" --help
expect_rc help 0
[[ -s $tmp/help.stdout ]] || fail "--help printed nothing on stdout"
# Every long option of main.c's table must be documented; the list below is
# the table as of this writing, completed from the source when it is there.
long_options=(topic nsqd-tcp-address delimiter rate producer-opt batch defer-ms
  window quiet progress help-config version help)
if [[ -f $src_dir/tools/nsqpub/main.c ]]; then
  mapfile -t -O ${#long_options[@]} long_options < <(
    sed -n '/long_opts\[\] = {/,/^};/s/^ *{"\([a-z-]*\)",.*/\1/p' \
      "$src_dir/tools/nsqpub/main.c"
  )
fi
mapfile -t long_options < <(printf '%s\n' "${long_options[@]}" | sort -u)
for o in "${long_options[@]}"; do
  # The whole name: --help must not be satisfied by --help-config.
  grep -q -E -e "--$o([^a-z-]|\$)" "$tmp/help.stdout" ||
    fail "--help does not mention --$o"
done
run_nsqpub help_short "$tmp/empty" -h
expect_rc help_short 0
cmp -s "$tmp/help.stdout" "$tmp/help_short.stdout" || fail "-h differs from --help"
ok "--help and -h exit 0 and mention every long option (${#long_options[@]} checked)"

run_nsqpub version "$tmp/empty" --version
expect_rc version 0
grep -q -E '^nsqpub [0-9]+\.[0-9]+\.[0-9]+' "$tmp/version.stdout" ||
  fail "--version printed '$(cat "$tmp/version.stdout")'"
ok "--version exits 0: $(head -n 1 "$tmp/version.stdout")"

run_nsqpub help_config "$tmp/empty" --help-config
expect_rc help_config 0
for k in dial_timeout max_unacked max_msg_size publish_timeout stop_timeout \
  user_agent queue_max_messages; do
  grep -q -E "^  $k +" "$tmp/help_config.stdout" ||
    fail "--help-config does not list $k"
done
ok "--help-config exits 0 and lists the producer settings"

# ---------------------------------------------------------------- usage errors

a=127.0.0.1:1 # never dialled: usage errors come first
expect_usage_error no_topic --nsqd-tcp-address $a
expect_stderr no_topic 'topic' "a mention of --topic"
expect_usage_error no_address --topic t
expect_stderr no_address 'nsqd-tcp-address' "a mention of --nsqd-tcp-address"
expect_usage_error bad_topic --topic 'no spaces' --nsqd-tcp-address $a
expect_stderr bad_topic 'topic' "a mention of the topic"
expect_usage_error long_topic --topic "$(printf 't%.0s' {1..65})" --nsqd-tcp-address $a
expect_usage_error delim_two_bytes --topic t --nsqd-tcp-address $a --delimiter ab
expect_stderr delim_two_bytes 'delimiter' "a mention of --delimiter"
expect_usage_error delim_bad_escape --topic t --nsqd-tcp-address $a --delimiter '\q'
expect_usage_error delim_empty --topic t --nsqd-tcp-address $a --delimiter ''
expect_usage_error delim_bad_hex --topic t --nsqd-tcp-address $a --delimiter '\xg1'
expect_usage_error batch_zero --topic t --nsqd-tcp-address $a --batch 0
expect_usage_error batch_defer --topic t --nsqd-tcp-address $a --batch 3 --defer-ms 100
expect_usage_error rate_negative --topic t --nsqd-tcp-address $a --rate -1
expect_usage_error defer_too_long --topic t --nsqd-tcp-address $a --defer-ms 3600001
expect_usage_error window_zero --topic t --nsqd-tcp-address $a --window 0
expect_usage_error unknown_flag --topic t --nsqd-tcp-address $a --no-such-flag
expect_stderr unknown_flag "^nsqpub: unknown option '--no-such-flag'\$" "the option, named by nsqpub"
expect_usage_error missing_value --topic t --nsqd-tcp-address
expect_stderr missing_value "^nsqpub: option needs a value: '--nsqd-tcp-address'\$" "the option that lacks a value"
expect_usage_error extra_argument --topic t --nsqd-tcp-address $a stray
expect_usage_error popt_no_comma --topic t --nsqd-tcp-address $a --producer-opt max_unacked
expect_usage_error popt_unknown_key --topic t --nsqd-tcp-address $a --producer-opt no_such_key,1
expect_usage_error popt_bad_value --topic t --nsqd-tcp-address $a --producer-opt max_unacked,abc
expect_usage_error popt_out_of_range --topic t --nsqd-tcp-address $a --producer-opt max-unacked,0
expect_stderr popt_out_of_range 'max_unacked' "the setting's name"
expect_usage_error popt_bad_duration --topic t --nsqd-tcp-address $a --producer-opt dial-timeout,soon
expect_usage_error bad_address --topic t --nsqd-tcp-address no-port-here

# ---------------------------------------------------------------- to_nsq flags

start_broker compat
addr=${broker_addr[compat]}
printf 'one\ntwo\n' >"$tmp/compat1.in"
run_nsqpub compat1 "$tmp/compat1.in" -topic dash1 -nsqd-tcp-address "$addr"
expect_rc compat1 0
printf 'three\nfour\n' >"$tmp/compat2.in"
run_nsqpub compat2 "$tmp/compat2.in" -topic dash2 -nsqd-tcp-address "$addr" \
  -producer-opt max-unacked,100 --producer-opt max_unacked,100 \
  -producer-opt queue-max-messages,50
expect_rc compat2 0
printf 'abc\n0123456789\nxyz\n' >"$tmp/compat3.in"
# A setting that takes effect: the producer refuses record 2 itself, so the
# broker receives record 1 only.
run_nsqpub compat3 "$tmp/compat3.in" -topic dash3 -nsqd-tcp-address "$addr" \
  -producer-opt max-msg-size,5
expect_rc compat3 1
expect_stderr compat3 'record 2 ' "the failed record's number"
stop_broker compat
check_dump "$tmp/compat.jsonl" dash1 "$tmp/compat1.in" 10
check_dump "$tmp/compat.jsonl" dash2 "$tmp/compat2.in" 10
printf 'abc\n' >"$tmp/compat3.want"
check_dump "$tmp/compat.jsonl" dash3 "$tmp/compat3.want" 10
ok "to_nsq's single-dash flags; --producer-opt names with '-' and '_' take effect"

# ---------------------------------------------------------------- records

start_broker records
addr=${broker_addr[records]}
# topic|input as a printf format|--delimiter's value (none: default)|the
# delimiter's byte value, for the checker.
record_cases=(
  'lines|one\ntwo words\nthree\n|\n|10'
  'default|x\ny\n||10'
  'empty_records|a\n\nb\n\n\n|\n|10'
  'unterminated|a\nbc|\n|10'
  'unterminated_one_byte|a\nb|\n|10'
  'leading_delims|\n\nfirst\nsecond|\n|10'
  'nul|bin\n\377\376\000\n\nline\n\000\000tail\001\n|\0|0'
  'tab|a b\tc\nd\t\tlast|\t|9'
  'comma|x,y z,,\n,|,|44'
  'record_sep|r1\036r2\nmore\036\036r3|\x1e|30'
  'record_sep_upper|r1\036r2\036|\x1E|30'
  'cr|a\rb\r|\r|13'
  'backslash|p\\q\\|\\|92'
  'utf8|caf\303\251\nna\303\257ve\n|\n|10'
)
for c in "${record_cases[@]}"; do
  IFS='|' read -r topic bytes dopt dbyte <<<"$c"
  # shellcheck disable=SC2059 # the input is written as a printf format
  printf "$bytes" >"$tmp/rec_$topic.in"
  delim_args=()
  [[ -z $dopt ]] || delim_args=(--delimiter "$dopt")
  run_nsqpub "rec_$topic" "$tmp/rec_$topic.in" --topic "$topic" \
    --nsqd-tcp-address "$addr" ${delim_args[@]+"${delim_args[@]}"}
  expect_rc "rec_$topic" 0
done
stop_broker records
for c in "${record_cases[@]}"; do
  IFS='|' read -r topic bytes dopt dbyte <<<"$c"
  check_dump "$tmp/records.jsonl" "$topic" "$tmp/rec_$topic.in" "$dbyte"
  ok "records: $topic (delimiter ${dopt:-default}): bodies exact, empty records skipped"
done
got=$(dump_bodies "$tmp/records.jsonl" empty_records)
[[ $got == "[b'a', b'b']" ]] || fail "\"a\\n\\nb\\n\\n\\n\" was published as $got"
got=$(dump_bodies "$tmp/records.jsonl" unterminated)
[[ $got == "[b'a', b'bc']" ]] || fail "\"a\\nbc\" was published as $got"
got=$(dump_bodies "$tmp/records.jsonl" nul)
[[ $got == "[b'bin\\n\\xff\\xfe', b'\\n\\nline\\n', b'tail\\x01\\n']" ]] ||
  fail "the --delimiter '\\0' input was published as $got"
ok "records: \"a\\n\\nb\\n\\n\\n\" is 2 messages; \"a\\nbc\" keeps \"bc\" whole"


# ---------------------------------------------------------------- batch, defer

seq 10 >"$tmp/ten.in"
start_broker batch
addr=${broker_addr[batch]}
run_nsqpub batch3 "$tmp/ten.in" --topic batch3 --nsqd-tcp-address "$addr" --batch 3
expect_rc batch3 0
# The summary counts publishes (commands): 4 MPUB here, so only the
# records read and the failures are checked.
expect_stderr batch3 '\b10 records read, 10 acknowledged, 0 failed, 0 not sent' \
  "a summary of 10 records, counted in records (not in MPUBs)"
run_nsqpub batch_big "$tmp/ten.in" --topic batch_big --nsqd-tcp-address "$addr" --batch 100
expect_rc batch_big 0
printf 'a\n\nb\nc' >"$tmp/batch_tail.in"
run_nsqpub batch_tail "$tmp/batch_tail.in" --topic batch_tail --nsqd-tcp-address "$addr" --batch 2
expect_rc batch_tail 0
run_nsqpub defer "$tmp/ten.in" --topic defer --nsqd-tcp-address "$addr" --defer-ms 500
expect_rc defer 0
run_nsqpub defer_batch1 "$tmp/ten.in" --topic defer_batch1 --nsqd-tcp-address "$addr" \
  --defer-ms 250 --batch 1
expect_rc defer_batch1 0
stop_broker batch
check_dump "$tmp/batch.jsonl" batch3 "$tmp/ten.in" 10 defer_ms=0
ok "--batch 3: 10 records arrive as 10 messages, in order"
check_dump "$tmp/batch.jsonl" batch_big "$tmp/ten.in" 10
ok "--batch 100 with 10 records: the partial batch is sent at the end of input"
check_dump "$tmp/batch.jsonl" batch_tail "$tmp/batch_tail.in" 10
ok "--batch 2: empty records skipped, the unterminated last record kept whole"
check_dump "$tmp/batch.jsonl" defer "$tmp/ten.in" 10 defer_ms=500
ok "--defer-ms 500: every message arrives with defer_ms 500"
check_dump "$tmp/batch.jsonl" defer_batch1 "$tmp/ten.in" 10 defer_ms=250
ok "--defer-ms 250 --batch 1: DPUB, defer_ms 250"

# ---------------------------------------------------------------- two nsqd

start_broker two_a
start_broker two_b
printf 'x\ny\n\nz\nlast' >"$tmp/two.in"
run_nsqpub two "$tmp/two.in" --topic two --nsqd-tcp-address "${broker_addr[two_a]}" \
  --nsqd-tcp-address "${broker_addr[two_b]}"
expect_rc two 0
expect_stderr two '^nsqpub: 4 records read in [0-9.]+s$' "the records read"
expect_stderr two "^nsqpub:   ${broker_addr[two_a]}: 4 acknowledged, 0 failed, 0 not sent\$" "a line for the first nsqd"
expect_stderr two "^nsqpub:   ${broker_addr[two_b]}: 4 acknowledged, 0 failed, 0 not sent\$" "a line for the second nsqd"
run_nsqpub two_batch "$tmp/ten.in" -topic two_batch -nsqd-tcp-address "${broker_addr[two_a]}" \
  -nsqd-tcp-address "${broker_addr[two_b]}" -batch 4
expect_rc two_batch 0
stop_broker two_a
stop_broker two_b
for b in two_a two_b; do
  check_dump "$tmp/$b.jsonl" two "$tmp/two.in" 10
  check_dump "$tmp/$b.jsonl" two_batch "$tmp/ten.in" 10
done
ok "two --nsqd-tcp-address: every record reaches both, bodies equal (PUB and MPUB)"

# ---------------------------------------------------------------- a pool

start_broker pool_a
start_broker pool_b
run_nsqpub pool "$tmp/two.in" --topic pool --strategy round_robin \
  --nsqd-tcp-address "${broker_addr[pool_a]}" --nsqd-tcp-address "${broker_addr[pool_b]}"
expect_rc pool 0
run_nsqpub pool_rep "$tmp/two.in" --topic pool_rep --replicas 2 \
  --nsqd-tcp-address "${broker_addr[pool_a]}" --nsqd-tcp-address "${broker_addr[pool_b]}"
expect_rc pool_rep 0
run_nsqpub pool_bad "$tmp/two.in" --topic pool --strategy random \
  --nsqd-tcp-address "${broker_addr[pool_a]}"
expect_rc pool_bad 2
stop_broker pool_a
stop_broker pool_b
for b in pool_a pool_b; do
  [[ $(dump_count "$tmp/$b.jsonl" pool) -eq 2 ]] ||
    fail "--strategy round_robin: $b has $(dump_count "$tmp/$b.jsonl" pool) of the 4 records, not 2"
  check_dump "$tmp/$b.jsonl" pool_rep "$tmp/two.in" 10
done
ok "--strategy: each record once through the pool (2 and 2); --replicas 2: on both"

# ---------------------------------------------------------------- lookupd

# lookupd_addr NAME: the address of the lookupd broker NAME serves (its
# second line, printed once the lookupd listens).
lookupd_addr() {
  testd_address "$tmp/$1.out" lookupd ||
    fail "broker $1 did not print its lookupd address"
}

# lk_a serves a lookupd that lists itself and lk_b: nsqpub finds both
# through it and publishes each record once (round_robin: 2 and 2), also
# when a second lookupd given is down.
start_broker lk_b
start_broker lk_a --lookupd-http-address 127.0.0.1:0 --lookupd-node "${broker_addr[lk_b]}"
lk=$(lookupd_addr lk_a)
dead_lk=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_nsqpub lk "$tmp/two.in" --topic lk --lookupd-http-address "http://$lk"
expect_rc lk 0
run_nsqpub lk_two "$tmp/two.in" --topic lk_two --lookupd-http-address "$lk" \
  -lookupd-http-address "127.0.0.1:$dead_lk"
expect_rc lk_two 0
stop_broker lk_a
stop_broker lk_b
for t in lk lk_two; do
  for b in lk_a lk_b; do
    [[ $(dump_count "$tmp/$b.jsonl" $t) -eq 2 ]] ||
      fail "--lookupd-http-address ($t): $b has $(dump_count "$tmp/$b.jsonl" $t) of the 4 records, not 2"
  done
  got=$(python3 -c 'import ast, sys; print(sorted(ast.literal_eval(sys.argv[1]) + ast.literal_eval(sys.argv[2])))' \
    "$(dump_bodies "$tmp/lk_a.jsonl" $t)" "$(dump_bodies "$tmp/lk_b.jsonl" $t)")
  [[ $got == "[b'last', b'x', b'y', b'z']" ]] ||
    fail "--lookupd-http-address ($t): the nsqd hold $got, not the 4 records"
done
# No lookupd answers and no nsqd given: the records fail, and say why.
run_nsqpub lk_none "$tmp/two.in" --topic lk --lookupd-http-address "127.0.0.1:$dead_lk"
expect_rc lk_none 1
expect_stderr lk_none "no nsqd known.*lookupd http://127\.0\.0\.1:$dead_lk" \
  "that no nsqd is known, and the lookupd's error"
ok "--lookupd-http-address: each record once to the nsqd the lookupd lists (2 and 2), also with a lookupd down; none known fails"

# ---------------------------------------------------------------- --rate

start_broker rate
seq 20 >"$tmp/twenty.in"
run_nsqpub rate "$tmp/twenty.in" --topic rate --nsqd-tcp-address "${broker_addr[rate]}" \
  --rate 50
expect_rc rate 0
expect_stderr rate '\b20 records read, 20 acknowledged' "a summary of 20 records"
stop_broker rate
check_dump "$tmp/rate.jsonl" rate "$tmp/twenty.in" 10
ok "--rate 50: all 20 records published"

# ---------------------------------------------------------------- failures

# The 3rd publish is answered E_PUB_FAILED and the connection closed (one
# PUB per command: waiting PUBs would otherwise go out as one MPUB).
start_broker pub_failed --pub-failed-at 3
addr=${broker_addr[pub_failed]}
run_nsqpub pub_failed "$tmp/ten.in" --topic failing --nsqd-tcp-address "$addr" \
  --producer-opt batch_max_messages,1
expect_rc pub_failed 1
expect_stderr pub_failed "record 3 .*$addr.*E_PUB_FAILED" \
  "the record number, the nsqd address and E_PUB_FAILED"
stop_broker pub_failed
printf '1\n2\n' >"$tmp/two_records.in"
check_dump "$tmp/pub_failed.jsonl" failing "$tmp/two_records.in" 10
ok "--pub-failed-at 3: exit 1, names record 3, $addr and E_PUB_FAILED; 1 and 2 stored"

start_broker mpub_failed --pub-failed-at 2
addr=${broker_addr[mpub_failed]}
run_nsqpub mpub_failed "$tmp/ten.in" --topic failing --nsqd-tcp-address "$addr" --batch 3
expect_rc mpub_failed 1
expect_stderr mpub_failed "record 4 .*$addr.*E_MPUB_FAILED" \
  "the batch's first record (4), the nsqd address and E_MPUB_FAILED"
stop_broker mpub_failed
printf '1\n2\n3\n' >"$tmp/three_records.in"
check_dump "$tmp/mpub_failed.jsonl" failing "$tmp/three_records.in" 10
ok "--batch 3 with --pub-failed-at 2: exit 1, names record 4 and E_MPUB_FAILED"

start_broker dpub_failed --pub-failed-at 1
addr=${broker_addr[dpub_failed]}
run_nsqpub dpub_failed "$tmp/ten.in" --topic failing --nsqd-tcp-address "$addr" --defer-ms 10
expect_rc dpub_failed 1
expect_stderr dpub_failed "record 1 .*$addr.*E_DPUB_FAILED" \
  "record 1, the nsqd address and E_DPUB_FAILED"
stop_broker dpub_failed
[[ $(dump_count "$tmp/dpub_failed.jsonl" failing) -eq 0 ]] ||
  fail "--pub-failed-at 1 with DPUB: the broker stored a message"
ok "--defer-ms with --pub-failed-at 1: exit 1, names record 1 and E_DPUB_FAILED"

# An address where nothing listens: a broker's, after it stopped.
start_broker gone
addr=${broker_addr[gone]}
stop_broker gone
run_nsqpub refused "$tmp/ten.in" --topic t --nsqd-tcp-address "$addr" \
  --producer-opt dial-timeout,2s
expect_rc refused 1
expect_stderr refused "record 1 .*$addr.*(connect|refused)" \
  "record 1, the address and a connect error"
ok "nothing listening at $addr: exit 1 ($(grep -m 1 'record 1' "$tmp/refused.stderr"))"

# The broker resets every connection.
start_broker refuse --refuse
addr=${broker_addr[refuse]}
run_nsqpub reset "$tmp/ten.in" --topic t --nsqd-tcp-address "$addr"
expect_rc reset 1
expect_stderr reset "record 1 .*$addr" "record 1 and the address"
stop_broker refuse
ok "a broker that resets connections: exit 1 ($(grep -m 1 'record 1' "$tmp/reset.stderr"))"

# A broker that never answers, not even IDENTIFY: the publishes are never
# written, and the failure says that nsqd did not store them.
start_broker stall --stall
addr=${broker_addr[stall]}
run_nsqpub stalled "$tmp/two_records.in" --topic t --nsqd-tcp-address "$addr" \
  --producer-opt publish_timeout,300ms
expect_rc stalled 1
expect_stderr stalled "record 1 to $addr failed: ERR_TIMED_OUT_UNSENT: publish_timeout passed before it was written \\(nsqd did not store it\\)" \
  "the unsent timeout and its fate"
expect_stderr stalled '\b2 records read, 0 acknowledged, 2 failed, 0 not sent, in ' \
  "both records counted as failed"
stop_broker stall
ok "a stalled broker: ERR_TIMED_OUT_UNSENT, 'nsqd did not store it'"

# One live and one dead nsqd: a line for each, and for each nsqd the
# records read are acknowledged + failed + not sent.
start_broker live
start_broker dead
dead_addr=${broker_addr[dead]}
stop_broker dead
run_nsqpub live_dead "$tmp/ten.in" --topic t --nsqd-tcp-address "${broker_addr[live]}" \
  --nsqd-tcp-address "$dead_addr" --producer-opt dial-timeout,2s
expect_rc live_dead 1
read_n=$(sed -n 's/^nsqpub: \([0-9]*\) records\{0,1\} read in .*/\1/p' "$tmp/live_dead.stderr")
[[ -n $read_n ]] || fail "live_dead: no 'records read' line: $(cat "$tmp/live_dead.stderr")"
for a in "${broker_addr[live]}" "$dead_addr"; do
  line=$(grep -E "^nsqpub:   $a: [0-9]+ acknowledged, [0-9]+ failed, [0-9]+ not sent\$" \
    "$tmp/live_dead.stderr") || fail "live_dead: no line for $a: $(cat "$tmp/live_dead.stderr")"
  read -r acked failed notsent < <(sed -E 's/.*: ([0-9]+) acknowledged, ([0-9]+) failed, ([0-9]+) not sent/\1 \2 \3/' <<<"$line")
  [[ $((acked + failed + notsent)) -eq $read_n ]] ||
    fail "live_dead: for $a, $acked + $failed + $notsent is not the $read_n records read"
  if [[ $a == "$dead_addr" ]]; then
    [[ $acked -eq 0 && $failed -ge 1 ]] || fail "live_dead: the dead nsqd acknowledged $acked, failed $failed"
  fi
done
stop_broker live
ok "one live, one dead nsqd: a line for each, and read = acknowledged + failed + not sent for each"

# A message over the broker's --max-msg-size: nsqd's E_BAD_MESSAGE.
start_broker small --max-msg-size 10
addr=${broker_addr[small]}
printf 'short\n0123456789A\nafter\n' >"$tmp/big_record.in"
run_nsqpub too_big "$tmp/big_record.in" --topic small --nsqd-tcp-address "$addr" \
  --producer-opt batch_max_messages,1 # a PUB's own answer, not its batch's
expect_rc too_big 1
expect_stderr too_big "record 2 to $addr failed: E_BAD_MESSAGE PUB message too big 11 > 10 \\(nsqd did not store it\\)" \
  "record 2, the nsqd address, nsqd's text once and the fate"
stop_broker small
printf 'short\n' >"$tmp/short.in"
check_dump "$tmp/small.jsonl" small "$tmp/short.in" 10
printf '0123456789\n' >"$tmp/at_limit.in"
start_broker small2 --max-msg-size 10
run_nsqpub at_limit "$tmp/at_limit.in" --topic small --nsqd-tcp-address "${broker_addr[small2]}"
expect_rc at_limit 0
stop_broker small2
check_dump "$tmp/small2.jsonl" small "$tmp/at_limit.in" 10
ok "--max-msg-size 10: 11 bytes fail with E_BAD_MESSAGE naming record 2; 10 bytes pass"

# ---------------------------------------------------------------- signals

# nsqpub reads from a FIFO the script keeps open, so it is still reading
# when the signal comes. The signal is sent once the broker delivered both
# records to a subscriber, i.e. once it stored them.
# The signal goes to timeout, which forwards it; with --foreground it
# forwards it to nsqpub only, so nsqpub receives exactly one. (Without it,
# timeout signals its process group as well, and a second signal that
# arrives while LeakSanitizer checks for leaks at exit sometimes hangs the
# sanitized program.)
# signal_run NAME SIG RECORDS N [ARGS...]: starts broker NAME, runs nsqpub
# (topic NAME, ARGS) reading from a FIFO, writes RECORDS to it in one write,
# waits until the broker has N messages, sends SIG and waits for nsqpub.
# Sets $rc; nsqpub's output is in $tmp/NAME.stdout and .stderr.
signal_run() {
  local name=$1 sig=$2 records=$3 n=$4
  shift 4
  start_broker "$name"
  local addr=${broker_addr[$name]}
  rm -f "$tmp/fifo"
  mkfifo "$tmp/fifo"
  timeout --foreground -k 30 60 "$nsqpub" --topic "$name" --nsqd-tcp-address "$addr" "$@" \
    <"$tmp/fifo" >"$tmp/$name.stdout" 2>"$tmp/$name.stderr" &
  local pid=$!
  pids+=("$pid")
  exec 3>"$tmp/fifo"
  printf "$records" >&3
  wait_arrived "$addr" "$name" "$n"
  kill -s "$sig" "$pid"
  rc=0
  wait "$pid" || rc=$?
  forget "$pid"
  exec 3>&-
  no_sanitizer_report "$tmp/$name.stderr" "$name"
  [[ $rc -ne 124 && $rc -ne 137 ]] || fail "$name: nsqpub did not stop on SIG$sig (stopped by timeout)"
}

signal_case() {
  local sig=$1 want=$2 name=sig_$1
  signal_run "$name" "$sig" 'first\nsecond\n' 2
  expect_rc "$name" "$want"
  expect_stderr "$name" '2 records read, 2 acknowledged, 0 failed, 0 not sent, in .*interrupted' \
    "a summary of the 2 records, marked interrupted"
  stop_broker "$name"
  printf 'first\nsecond\n' >"$tmp/$name.want"
  check_dump "$tmp/$name.jsonl" "$name" "$tmp/$name.want" 10
  ok "SIG$sig while reading: exit $want, a summary on stderr, the records sent arrived"
}
signal_case INT 130
signal_case TERM 143

# SIGINT with a batch half gathered: the record read but never published
# is counted as not sent. The three records reach nsqpub in one read (one
# write of under PIPE_BUF bytes), so once the first two arrived as an MPUB
# the third has been read; the signal then stops nsqpub before the batch
# of one is sent.
signal_run sig_batch INT 'one\ntwo\nthree\n' 2 --batch 2
expect_rc sig_batch 130
expect_stderr sig_batch '\b3 records read, 2 acknowledged, 0 failed, 1 not sent, in .*interrupted' \
  "the record never sent, counted"
stop_broker sig_batch
ok "SIGINT with a partial batch: 3 read = 2 acknowledged + 1 not sent"

# With --quiet the summary is still printed after a signal.
signal_run sig_quiet INT 'only\n' 1 --quiet
expect_rc sig_quiet 130
expect_stderr sig_quiet '\b1 record read, 1 acknowledged, 0 failed, 0 not sent, in .*interrupted' "the summary"
stop_broker sig_quiet
ok "SIGINT with --quiet: exit 130 and the summary is still printed"

# ---------------------------------------------------------------- large input

start_broker large
seq 100000 >"$tmp/large.in"
run_nsqpub large "$tmp/large.in" --topic large --nsqd-tcp-address "${broker_addr[large]}"
expect_rc large 0
expect_stderr large '\b100000 records read, 100000 acknowledged, 0 failed, 0 not sent' \
  "a summary of 100000 records"
run_nsqpub large_batch "$tmp/large.in" --topic large_batch \
  --nsqd-tcp-address "${broker_addr[large]}" --batch 100 --window 10
expect_rc large_batch 0
stop_broker large
check_dump "$tmp/large.jsonl" large "$tmp/large.in" 10
check_dump "$tmp/large.jsonl" large_batch "$tmp/large.in" 10
ok "100000 records: all arrive in order (PUB, and MPUB of 100 with --window 10)"

# A record longer than nsqpub's first read buffer (1 MiB) is kept whole.
python3 -c '
import sys
sys.stdout.write("x" * 1500000 + "\n" + "y" * 3 + "\n" + "z" * 1048577)' >"$tmp/long.in"
start_broker long --max-msg-size 2000000 --max-body-size 2100000
run_nsqpub long "$tmp/long.in" --topic long --nsqd-tcp-address "${broker_addr[long]}" \
  --producer-opt max_msg_size,2000000 --producer-opt max_body_size,2100000
expect_rc long 0
stop_broker long
check_dump "$tmp/long.jsonl" long "$tmp/long.in" 10
ok "records longer than the read buffer (1.5 MB, and 1 MiB + 1 unterminated) arrive whole"

# ---------------------------------------------------------------- --quiet

start_broker quiet
addr=${broker_addr[quiet]}
run_nsqpub quiet "$tmp/ten.in" --topic quiet --nsqd-tcp-address "$addr" --quiet
expect_rc quiet 0
[[ ! -s $tmp/quiet.stderr ]] || fail "--quiet: stderr is '$(cat "$tmp/quiet.stderr")'"
[[ ! -s $tmp/quiet.stdout ]] || fail "--quiet: stdout is '$(cat "$tmp/quiet.stdout")'"
run_nsqpub not_quiet "$tmp/ten.in" --topic quiet --nsqd-tcp-address "$addr"
expect_rc not_quiet 0
[[ ! -s $tmp/not_quiet.stdout ]] || fail "stdout is '$(cat "$tmp/not_quiet.stdout")'"
[[ $(wc -l <"$tmp/not_quiet.stderr") -eq 1 ]] ||
  fail "without --quiet, stderr is not one line: '$(cat "$tmp/not_quiet.stderr")'"
expect_stderr not_quiet '^nsqpub: 10 records read, 10 acknowledged, 0 failed, 0 not sent, in [0-9.]+s$' \
  "the summary line"
run_nsqpub quiet_fail "$tmp/ten.in" --topic 'quiet' --nsqd-tcp-address "${broker_addr[gone]}" --quiet
expect_rc quiet_fail 1
expect_stderr quiet_fail 'record 1 ' "the failure, even with --quiet"
stop_broker quiet
cat "$tmp/ten.in" "$tmp/ten.in" >"$tmp/ten_twice.in"
check_dump "$tmp/quiet.jsonl" quiet "$tmp/ten_twice.in" 10
ok "--quiet: nothing on stdout or stderr on success, the failure still reported"
ok "without --quiet: one summary line on stderr ($(cat "$tmp/not_quiet.stderr"))"

echo "nsqpub_program: all checks passed"
