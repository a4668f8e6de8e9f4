#!/usr/bin/env bash
# Every ```c block of the README is a whole program: each is compiled from
# the README's own text with -Wall -Wextra -Werror against this tree's
# headers and libraries, so the examples cannot rot.  Those that need no
# nsqd of their own (no address in the text) are run too.
#   readme_examples_test.sh README SOURCE_DIR LIBNSQPUB_A LIBNSQPUB_TESTD_A
set -euo pipefail
readme=$1
src=$2
libnsqpub=$3
libtestd=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "readme_examples: $*" >&2; exit 1; }

python3 - "$readme" "$tmp" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^```c\n(.*?)^```$", text, re.S | re.M)
if not blocks:
    sys.exit("no ```c block in the README")
for i, b in enumerate(blocks):
    open("%s/example_%d.c" % (sys.argv[2], i), "w").write(b)
PY

deps=$(pkg-config --libs libuv openssl snappy zlib libcjson libcurl libmicrohttpd)
n=0
for f in "$tmp"/example_*.c; do
  n=$((n + 1))
  grep -q 'int main' "$f" || fail "$(basename "$f"): a fragment, not a whole program:
$(head -n 5 "$f")"
  ${CC:-cc} -std=c11 -Wall -Wextra -Werror -o "${f%.c}" "$f" \
    -I"$src/protocol/include" -I"$src/producer/include" \
    -I"$src/tools/testd/include" "$libtestd" "$libnsqpub" $deps -pthread ||
    fail "$(basename "$f") does not compile:
$(cat "$f")"
  if ! grep -q '[0-9]:[0-9]' "$f"; then
    timeout 60 "${f%.c}" >"$tmp/out" 2>&1 || fail "$(basename "$f") failed: $(cat "$tmp/out")"
    echo "readme_examples: ran $(basename "$f"): $(tail -n 1 "$tmp/out")"
  fi
done
echo "readme_examples: $n C programs from the README compile with -Wall -Wextra -Werror"
