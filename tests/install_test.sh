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
for h in protocol.h producer.h broker.h testd.h; do
  [[ -f "$prefix/include/nsq/$h" ]] || fail "no include/nsq/$h"
done
for b in nsqpub nsqpub-testd nsqpub-bench; do
  [[ -x "$prefix/bin/$b" ]] || fail "no bin/$b"
done

soname=$(objdump -p "$libdir/libnsqpub.so" | awk '/SONAME/ {print $2}')
[[ "$soname" == libnsqpub.so.0 ]] || fail "SONAME is '$soname'"
leaked=$(nm -D --defined-only "$libdir/libnsqpub.so" | awk '{print $3}' | grep -v '^nsq_[a-z]' || true)
[[ -z "$leaked" ]] || fail "non-public symbols exported: $leaked"
# (Outputs are captured before grep -q reads them: with pipefail, grep -q
# quitting early would fail the writer with SIGPIPE now and then.)
exported=$(nm -D --defined-only "$libdir/libnsqpub.so")
grep -q ' nsq_producer_publish$' <<<"$exported" ||
  fail "nsq_producer_publish is not exported"
# The broker's side of the codec (nsq/broker.h) belongs to the test broker.
archived=$(nm --defined-only "$libdir/libnsqpub-testd.a" 2>/dev/null)
for sym in nsq_cmd_reader_new nsq_identify_apply nsq_frame_encode nsq_cmd_sub \
           nsq_message_decode; do
  if grep -q " $sym\$" <<<"$exported"; then fail "libnsqpub.so exports $sym"; fi
  grep -q " T $sym\$" <<<"$archived" || fail "libnsqpub-testd.a lacks $sym"
done

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
uses() { LD_LIBRARY_PATH=$libdir ldd "$1" >"$tmp/ldd.out"; grep -q "$2" "$tmp/ldd.out"; }
uses "$tmp/pc_shared" "libnsqpub.so.0 => $libdir" || fail "pc_shared does not use the installed .so"
# pkg-config, static.  libcurl and libmicrohttpd are listed (checked here)
# but linked shared: Debian's `pkg-config --static` for them names static
# dependencies (zstd, ssh2, gnutls's, ...) that their -dev packages do not
# pull in.
grep -qw libcurl <<<"$(pkg-config --print-requires-private nsqpub)" ||
  fail "nsqpub.pc does not require libcurl"
grep -qw libmicrohttpd <<<"$(pkg-config --print-requires nsqpub-testd)" ||
  fail "nsqpub-testd.pc does not require libmicrohttpd"
static_deps=$(pkg-config --static --libs-only-l --libs-only-other libuv openssl snappy zlib libcjson)
$cc -o "$tmp/pc_static" "$src/tests/install/publish_example.c" \
  $(pkg-config --cflags nsqpub) "$libdir/libnsqpub.a" $static_deps $(pkg-config --libs libcurl) -pthread
"$tmp/pc_static" "$addr" || fail "pkg-config static build failed to publish"
if uses "$tmp/pc_static" libnsqpub; then fail "pc_static links libnsqpub.so"; fi

# The test broker with pkg-config: alone, next to the shared producer, and
# next to the static one.
$cc -o "$tmp/testd_only" "$src/tests/install/testd_only_example.c" \
  $(pkg-config --cflags --libs nsqpub-testd)
"$tmp/testd_only" || fail "pkg-config nsqpub-testd build failed"
$cc -o "$tmp/testd_shared" "$src/tests/install/embedded_example.c" \
  $(pkg-config --cflags --libs nsqpub nsqpub-testd)
LD_LIBRARY_PATH=$libdir "$tmp/testd_shared" || fail "pkg-config nsqpub + nsqpub-testd (shared) build failed"
uses "$tmp/testd_shared" "libnsqpub.so.0 => $libdir" || fail "testd_shared does not use the installed .so"
$cc -static-libgcc -o "$tmp/testd_static" "$src/tests/install/embedded_example.c" \
  $(pkg-config --cflags nsqpub nsqpub-testd) -L"$libdir" -Wl,-Bstatic -lnsqpub-testd -lnsqpub -Wl,-Bdynamic \
  $static_deps $(pkg-config --libs libcurl libmicrohttpd) -pthread
"$tmp/testd_static" || fail "pkg-config nsqpub + nsqpub-testd (static) build failed"
if uses "$tmp/testd_static" libnsqpub; then fail "testd_static links libnsqpub.so"; fi

# CMake find_package
cmake -S "$src/tests/install" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/cmake/publish_shared" "$addr" || fail "find_package shared build failed"
"$tmp/cmake/publish_static" "$addr" || fail "find_package static build failed"
"$tmp/cmake/testd_only" || fail "find_package broker-only build failed"
LD_LIBRARY_PATH=$libdir "$tmp/cmake/embedded" || fail "find_package embedded-broker build failed"
"$tmp/cmake/embedded_static" || fail "find_package embedded-broker static build failed"

kill -TERM "$broker"; wait "$broker" || true; broker=
got=$(grep -c '"topic":"install_test","index"' "$tmp/dump.jsonl" || true)
[[ "$got" -eq 4 ]] || fail "the broker recorded $got of 4 messages"
echo "install_test: installed tree works with pkg-config (shared, static) and find_package"
