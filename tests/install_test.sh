#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds programs
# against the installed files both ways -- pkg-config (shared and static)
# and CMake's find_package -- and runs them against the installed
# nsqpub-testd.  Also checks that the shared library exports only the
# public nsq_* API and carries a SONAME.
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
broker=
cleanup() {
  [[ -n "$broker" ]] && kill "$broker" 2>/dev/null && wait "$broker" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "install_test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
prefix=$tmp/prefix
libdir=$(dirname "$(find "$prefix" -name libnsqpub.so -print -quit)")
[[ -f "$libdir/libnsqpub.so" ]] || fail "no libnsqpub.so installed"
[[ -f "$libdir/libnsqpub.a" ]] || fail "no libnsqpub.a installed"
for h in protocol.h producer.h testd.h; do
  [[ -f "$prefix/include/nsq/$h" ]] || fail "no include/nsq/$h"
done
for b in nsqpub nsqpub-testd nsqpub-bench; do
  [[ -x "$prefix/bin/$b" ]] || fail "no bin/$b"
done

soname=$(objdump -p "$libdir/libnsqpub.so" | awk '/SONAME/ {print $2}')
[[ "$soname" == libnsqpub.so.0 ]] || fail "SONAME is '$soname'"
leaked=$(nm -D --defined-only "$libdir/libnsqpub.so" | awk '{print $3}' | grep -v '^nsq_[a-z]' || true)
[[ -z "$leaked" ]] || fail "non-public symbols exported: $leaked"
nm -D --defined-only "$libdir/libnsqpub.so" | grep ' nsq_producer_publish$' >/dev/null ||
  fail "nsq_producer_publish is not exported"

# The installed broker program, on an ephemeral loopback port.
"$prefix/bin/nsqpub-testd" --tcp-address 127.0.0.1:0 --dump "$tmp/dump.jsonl" >"$tmp/broker.out" &
broker=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$tmp/broker.out" && break; sleep 0.05; done
addr=$(awk '/listening on/ {print $NF}' "$tmp/broker.out")
[[ -n "$addr" ]] || fail "nsqpub-testd did not start"

export PKG_CONFIG_PATH=$libdir/pkgconfig
cc=${CC:-cc}
# pkg-config, shared
$cc -o "$tmp/pc_shared" "$src/tests/install/publish_example.c" \
  $(pkg-config --cflags --libs nsqpub)
LD_LIBRARY_PATH=$libdir "$tmp/pc_shared" "$addr" || fail "pkg-config shared build failed to publish"
LD_LIBRARY_PATH=$libdir ldd "$tmp/pc_shared" | grep "libnsqpub.so.0 => $libdir" >/dev/null || fail "pc_shared does not use the installed .so"
# pkg-config, static
$cc -o "$tmp/pc_static" "$src/tests/install/publish_example.c" \
  $(pkg-config --cflags nsqpub) "$libdir/libnsqpub.a" $(pkg-config --static --libs libuv openssl snappy zlib) -pthread
"$tmp/pc_static" "$addr" || fail "pkg-config static build failed to publish"
if ldd "$tmp/pc_static" | grep libnsqpub >/dev/null; then fail "pc_static links libnsqpub.so"; fi

# CMake find_package
cmake -S "$src/tests/install" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/cmake/publish_shared" "$addr" || fail "find_package shared build failed"
"$tmp/cmake/publish_static" "$addr" || fail "find_package static build failed"
"$tmp/cmake/embedded" || fail "find_package embedded-broker build failed"

kill -TERM "$broker"; wait "$broker" || true; broker=
got=$(grep -c '"topic":"install_test","index"' "$tmp/dump.jsonl" || true)
[[ "$got" -eq 4 ]] || fail "the broker recorded $got of 4 messages"
echo "install_test: installed tree works with pkg-config (shared, static) and find_package"
