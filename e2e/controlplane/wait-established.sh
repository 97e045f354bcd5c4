#!/usr/bin/env bash
# Waits until the named CRDs are Established. Just after an apply, a CRD may have no
# status.conditions yet, and `kubectl wait` then fails at once ("accessor error: <nil>")
# instead of waiting; so it is asked again, every half second for ten seconds, before
# one last wait whose failure is reported.
#
# Usage: wait-established.sh KUBECTL_ARGS... -- CRD...
#   e.g. wait-established.sh --kubeconfig /tmp/kc -- crd --all
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
kubectl=("$repo/target/controlplane/bin/kubectl")
while [[ $# -gt 0 && "$1" != "--" ]]; do kubectl+=("$1"); shift; done
shift || true

for _ in $(seq 20); do
  "${kubectl[@]}" wait --for=condition=Established --timeout=60s "$@" >/dev/null 2>&1 && exit 0
  sleep 0.5
done
"${kubectl[@]}" wait --for=condition=Established --timeout=60s "$@" >/dev/null
