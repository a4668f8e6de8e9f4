# Sourced by the shell tests that run nsqpub-testd (bash).

# testd_address OUT [lookupd] [PID]: waits (up to 10 s) for the line
# "nsqpub-testd listening on 127.0.0.1:PORT" (with lookupd: "nsqpub-testd
# lookupd listening on ...") in OUT, the broker's stdout, and prints the
# address.  Status 1 if it does not come, or PID (when given) ends first.
testd_address() {
  local out=$1 kind=${2:+$2 } pid=${3:-} i addr=
  for ((i = 0; i < 200; i++)); do
    addr=$(sed -n "s/^nsqpub-testd ${kind}listening on \(127\.0\.0\.1:[0-9][0-9]*\)\$/\1/p" "$out")
    if [[ -n $addr ]]; then
      echo "$addr"
      return 0
    fi
    [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
