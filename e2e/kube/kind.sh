#!/usr/bin/env bash
# make e2e-kind: the kube e2e suite against the cluster your KUBECONFIG points at (kind,
# or any disposable cluster you may install CRDs into). The tests run the controller
# and proxy on this machine; the upstreams listen on GATEHOUSE_E2E_ADDRS, which must be
# addresses of this machine that the cluster accepts in EndpointSlices (kind: the host's
# address on the kind network, e.g. `docker network inspect kind`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
: "${KUBECONFIG:?set KUBECONFIG to the cluster to test against}"
: "${GATEHOUSE_E2E_ADDRS:?set GATEHOUSE_E2E_ADDRS to addresses of this host the cluster accepts (comma-separated, two or more)}"
kubectl apply -f "$repo/crds/"
kubectl wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=gatehouse 2>/dev/null \
  || kubectl wait --for=condition=Established --timeout=60s crd apiroutes.gatehouse.dev upstreams.gatehouse.dev apipolicies.gatehouse.dev
export GATEHOUSE_E2E_KUBECONFIG="$KUBECONFIG"
cd "$repo"
cargo test --locked -p gatehouse --test kube -- --test-threads=3 "$@"
