#!/usr/bin/env bash
# The codec is pure: no sockets, no threads, no libuv, no TLS.  Checks the
# symbols libnsq_protocol.a needs from elsewhere.
#   codec_purity_test.sh LIBNSQ_PROTOCOL_A
set -euo pipefail
lib=$1
undefined=$(nm -u "$lib" | awk '{print $NF}' | sort -u)
[[ -n "$undefined" ]] || { echo "codec_purity_test: no symbols read from $lib" >&2; exit 1; }
bad=$(printf '%s\n' "$undefined" | grep -E '^(uv_|pthread_|SSL_|socket$|connect$|accept4?$|bind$|listen$|send|recv|poll$|epoll_|select$|read$|write$|fork$|clone$)' || true)
if [[ -n "$bad" ]]; then
  echo "codec_purity_test: the codec uses what it must not:" >&2
  printf '  %s\n' $bad >&2
  exit 1
fi
# It does use libsnappy and zlib (the compression streams): make sure the
# check saw real dependencies.
printf '%s\n' "$undefined" | grep -q '^snappy_compress$' || { echo "codec_purity_test: snappy_compress not referenced; wrong library?" >&2; exit 1; }
echo "codec_purity_test: $(printf '%s\n' "$undefined" | wc -l) external symbols, none of sockets, threads, libuv or TLS"
