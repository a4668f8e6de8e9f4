#!/usr/bin/env bash
# A name that resolves to several addresses, the first with no nsqd on it
# (as localhost gives ::1 before 127.0.0.1 on many hosts, while nsqd
# listens on IPv4 only): the producer must try the next address within
# dial_timeout.  The name comes from a hosts file bind-mounted over
# /etc/hosts in a mount namespace of this test's own (unshare -m, as
# root); where that cannot be done, the test says so and is skipped.
#   name_addresses_test.sh NSQPUB NSQPUB_TESTD
set -euo pipefail

nsqpub=${1:?usage: $0 NSQPUB NSQPUB_TESTD}
testd=${2:?usage: $0 NSQPUB NSQPUB_TESTD}
. "$(dirname "$0")/testd_lib.sh"
tmp=$(mktemp -d)
broker=
cleanup() {
  [[ -n $broker ]] && kill -TERM "$broker" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

skip() {
  echo "SKIP: $* (needs root and unshare -m)"
  exit 77
}

# ::1 first, then 127.0.0.1, for a name no real resolver knows.
printf '::1 nsqd.nsqpub-test\n127.0.0.1 nsqd.nsqpub-test\n' >"$tmp/hosts"
in_ns() {
  unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' \
    "$tmp/hosts" "$@"
}
[[ $(id -u) == 0 ]] || skip "not root"
order=$(in_ns getent ahosts nsqd.nsqpub-test 2>/dev/null | awk 'NR==1{print $1}') ||
  skip "no mount namespace here"
[[ $order == ::1 ]] || skip "the hosts file did not take (first address '$order')"

: >"$tmp/broker.out"
timeout -k 10 120 "$testd" --tcp-address 127.0.0.1:0 \
  --dump "$tmp/dump.jsonl" >"$tmp/broker.out" 2>"$tmp/broker.err" &
broker=$!
port=$(testd_address "$tmp/broker.out") && port=${port##*:} || { cat "$tmp/broker.err" >&2; echo "FAIL: broker did not start" >&2; exit 1; }

# Nothing listens on [::1]:port (the broker is on 127.0.0.1 only).
rc=0
printf 'one\ntwo\nthree\n' |
  in_ns "$nsqpub" --topic names --nsqd-tcp-address "nsqd.nsqpub-test:$port" \
    >"$tmp/out" 2>"$tmp/err" || rc=$?
if [[ $rc != 0 ]]; then
  cat "$tmp/err" >&2
  echo "FAIL: nsqpub exit $rc through a name whose first address refuses" >&2
  exit 1
fi
grep -q "3 acknowledged" "$tmp/err" "$tmp/out" ||
  { cat "$tmp/err" >&2; echo "FAIL: not 3 acknowledged" >&2; exit 1; }
# The broker writes its dump as it stops.
kill -TERM "$broker"
wait "$broker" || true
broker=
got=$(grep -c '"topic":"names","index"' "$tmp/dump.jsonl" || true)
[[ $got == 3 ]] || { echo "FAIL: the broker holds $got messages, want 3" >&2; exit 1; }
echo "ok - a name's second address is tried when its first refuses"
