#!/usr/bin/env bash
# make e2e-kube: the kube e2e suite (crates/gatehouse/tests/kube.rs) against a real
# kube-apiserver + etcd built from Go modules (e2e/controlplane), inside a network
# namespace of its own so EndpointSlices can name non-loopback test addresses that
# exist only there.
#
# Outside the namespace: build everything (network needed for crates and Go modules).
# Inside: lo up, test addresses, control plane, CRDs, the chart's RBAC, the controller's
# ServiceAccount token, then the suite. Everything started is stopped on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

# `run.sh --bench`: the propagation benchmark (issue 4, scenario 13) instead of the
# suite, with the release build.
if [[ "${1:-}" != "--inside" ]]; then
  "$repo/e2e/controlplane/build.sh" etcd kube-apiserver kubectl
  "$repo/e2e/tools/install.sh"   # helm renders the chart's RBAC
  cargo build --locked -q -p gatehouse
  cargo test --locked -q -p gatehouse --test kube --no-run
  if [[ "${1:-}" == "--bench" ]]; then cargo build --locked -q --release -p gatehouse; fi
  exec unshare --net -- "$0" --inside "$@"
fi

# --- inside the network namespace ---
shift
bench=0
if [[ "${1:-}" == "--bench" ]]; then bench=1; shift; fi
ip link set lo up
addrs=(198.18.0.2 198.18.0.3 198.18.0.4)
for a in "${addrs[@]}"; do ip addr add "$a/32" dev lo; done

state="$repo/target/e2e-kube"
rm -rf "$state"
mkdir -p "$state"
stop() { "$repo/e2e/controlplane/stop.sh" "$state/controlplane" >/dev/null 2>&1 || true; }
trap stop EXIT
kubeconfig="$("$repo/e2e/controlplane/start.sh" "$state/controlplane" | tail -n 1)"
kubectl="$repo/target/controlplane/bin/kubectl --kubeconfig $kubeconfig"

# Our CRDs, checked by the real API server (structural schemas, CEL rules).
$kubectl apply -f "$repo/crds/" >/dev/null
"$repo/e2e/controlplane/wait-established.sh" --kubeconfig "$kubeconfig" -- crd --all

# The controller runs as a ServiceAccount with exactly the chart's rules: the chart's own
# ServiceAccount and RBAC templates (release "gatehouse" in gatehouse-system), rendered
# with the ServiceAccount named gatehouse-controller. They hold the ClusterRoles
# gatehouse-controller (bound cluster-wide to that ServiceAccount) and
# gatehouse-controller-lease, which each test binds in its own namespace.
$kubectl create namespace gatehouse-system >/dev/null
"$repo/target/tools/bin/helm" template gatehouse "$repo/charts/gatehouse" \
  --namespace gatehouse-system --set serviceAccount.name=gatehouse-controller \
  --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml >"$state/chart-rbac.yaml"
$kubectl apply -f "$state/chart-rbac.yaml" >/dev/null
token="$($kubectl -n gatehouse-system create token gatehouse-controller --duration=2h)"
server="$($kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')"
ca="$($kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
cat > "$state/controller.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: controller, user: {token: "$token"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: controller}}]
current-context: e2e
KC

export GATEHOUSE_E2E_KUBECONFIG="$kubeconfig"
export GATEHOUSE_E2E_CONTROLLER_KUBECONFIG="$state/controller.kubeconfig"
export GATEHOUSE_E2E_ADDRS="$(IFS=,; echo "${addrs[*]}")"
export GATEHOUSE_E2E_LEASE_BINDING="gatehouse-system/gatehouse-controller"
if [[ $bench == 1 ]]; then
  export GATEHOUSE_BIN="$repo/target/release/gatehouse"
  cargo test --offline --locked -q -p gatehouse --test kube -- --ignored --exact propagation_bench --nocapture "$@"
else
  cargo test --offline --locked -q -p gatehouse --test kube -- --test-threads=3 "$@"
  # Alone, after the rest: it takes the API server down.
  export GATEHOUSE_E2E_CONTROLPLANE_DIR="$state/controlplane"
  cargo test --offline --locked -q -p gatehouse --test kube -- --ignored --exact \
    the_controller_converges_after_an_api_server_restart_with_compaction --nocapture
fi
