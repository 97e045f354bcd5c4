#!/usr/bin/env bash
# The WAF's false-positive and true-positive rates against the built binary: every request
# of e2e/waf/corpus.py (realistic benign API traffic, encoded attacks in six classes) sent
# through `gatehouse run` under each configuration (native rules, native + request schema,
# the OWASP CRS at paranoia 1 and 2 with and without the schema). Exits non-zero when the
# native configuration misses the targets (FP <= 1%, TP >= 95%), see measure.py --check.
# CRS configurations that cannot load (libmodsecurity or the CRS missing) are skipped,
# unless GATEHOUSE_REQUIRE_MODSECURITY is set (CI), where that fails.
# Takes a few seconds; no build here.
#
# Usage: e2e/waf/run.sh [measure.py options, e.g. --only native --full --json out.json]
# Env:   GATEHOUSE_BIN       the gateway (default target/debug/gatehouse)
#        GATEHOUSE_ECHO_BIN  the echo upstream (default target/debug/gatehouse-echo)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

export GATEHOUSE_BIN="${GATEHOUSE_BIN:-$repo/target/debug/gatehouse}"
export GATEHOUSE_ECHO_BIN="${GATEHOUSE_ECHO_BIN:-$repo/target/debug/gatehouse-echo}"
for bin in "$GATEHOUSE_BIN" "$GATEHOUSE_ECHO_BIN"; do
  if [[ ! -x "$bin" ]]; then
    echo "waf: no binary at $bin (cargo build -p gatehouse -p gatehouse-testkit, or set GATEHOUSE_BIN / GATEHOUSE_ECHO_BIN)" >&2
    exit 2
  fi
done

# CI installs libmodsecurity and the CRS: there, a CRS configuration that cannot load fails.
crs=()
if [[ -n "${GATEHOUSE_REQUIRE_MODSECURITY:-}" ]]; then crs=(--require-crs); fi
exec python3 e2e/waf/measure.py --check "${crs[@]}" "$@"
