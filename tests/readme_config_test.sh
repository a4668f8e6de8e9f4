#!/usr/bin/env bash
# The README's configuration section is generated: it must be exactly what
# `nsqpub --help-config` prints.
#   readme_config_test.sh NSQPUB_BINARY README
set -euo pipefail
bin=$1
readme=$2
documented=$(sed -n '/<!-- BEGIN nsqpub --help-config -->/,/<!-- END nsqpub --help-config -->/p' "$readme" |
  sed '1,2d;$d' | sed '$d')
actual=$("$bin" --help-config)
if [[ "$documented" != "$actual" ]]; then
  echo "README.md's configuration section differs from 'nsqpub --help-config':" >&2
  diff <(printf '%s\n' "$documented") <(printf '%s\n' "$actual") >&2 || true
  echo "regenerate it from: $bin --help-config" >&2
  exit 1
fi
echo "readme_config_test: README matches --help-config ($(printf '%s\n' "$actual" | grep -c '^  [a-z]') keys)"
