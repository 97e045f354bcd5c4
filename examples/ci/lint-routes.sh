#!/usr/bin/env sh
# gatehouse lint for CI: lint the folder of manifests the controller will see, keep the
# JSON diagnostics as an artifact, fail the job on any error.
#
#   examples/ci/lint-routes.sh [DIR] [REPORT]     (defaults: examples/kubernetes, gatehouse-lint.json)
#
# Uses `gatehouse` from PATH when there is one, else the container image in
# GATEHOUSE_IMAGE (docker run; the image has no shell, so the binary is the entrypoint).
set -eu
dir="${1:-examples/kubernetes}"
report="${2:-gatehouse-lint.json}"

if command -v gatehouse >/dev/null 2>&1; then
  lint() { gatehouse lint -f "$dir" "$@"; }
else
  : "${GATEHOUSE_IMAGE:?set GATEHOUSE_IMAGE (e.g. registry.example.com/platform/gatehouse:0.1.0) or put gatehouse on PATH}"
  lint() { docker run --rm -v "$PWD:/src:ro" -w /src "$GATEHOUSE_IMAGE" lint -f "$dir" "$@"; }
fi

status=0
lint --output json >"$report" || status=$?
lint || true   # the same diagnostics, readable, in the job log
exit "$status"
