#!/usr/bin/env bash
# The front-door abuse suite (test_frontdoor.py): raw HTTP/1.1 and HTTP/2 against the
# built `gatehouse run`. Exits non-zero when any case fails (or the run cannot be done).
# Takes about 1-2 minutes: the slow-client cases wait out the gateway's timeouts.
#
# Usage: e2e/frontdoor/run.sh [unittest names, e.g. test_frontdoor.Smuggling]
# Env:   GATEHOUSE_BIN   the binary under test (default target/debug/gatehouse; not built here)
#        FRONTDOOR_KEEP=1  keep each gateway's folder and log (their paths are printed)
# Needs the venv of e2e/tools/install.sh (python with h2); it is run when h2 is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="$repo/target/tools/venv/bin/python"

if [[ ! -x "$py" ]] || ! "$py" -c 'import h2, hpack' 2>/dev/null; then
  "$repo/e2e/tools/install.sh"
fi

export GATEHOUSE_BIN="${GATEHOUSE_BIN:-$repo/target/debug/gatehouse}"
if [[ ! -x "$GATEHOUSE_BIN" ]]; then
  echo "frontdoor: no gatehouse binary at $GATEHOUSE_BIN (build it, or set GATEHOUSE_BIN)" >&2
  exit 2
fi

cd "$here"
if [[ $# -eq 0 ]]; then
  set -- test_frontdoor
fi
exec "$py" -m unittest -v "$@"
