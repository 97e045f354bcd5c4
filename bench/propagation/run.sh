#!/usr/bin/env bash
# The propagation benchmark (see README.md here): make bench-propagation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec e2e/kube/run.sh --bench "$@"
