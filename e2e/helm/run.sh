#!/usr/bin/env bash
# make e2e-helm: the chart against a real kube-apiserver + etcd (e2e/controlplane), so
# the API server itself validates every object the chart renders (issue 5, acceptance 4).
# No kubelet: pods never start, and nothing waits for them (Helm's default --wait is
# hookOnly and the chart has no hooks).
#
#   1. helm install (defaults) into gatehouse-system: every rendered object exists
#   2. every other values file in charts/gatehouse/ci and every example manifest:
#      accepted by the API server (server-side dry run; ServiceMonitor skipped: no CRD;
#      CRDs skipped: installed by step 1, and the chart test proves every render equal)
#   3. helm upgrade to a copy of the chart whose ApiRoute CRD gained a field: the API
#      server's CRD has it, and an ApiRoute using it is accepted
#   4. helm uninstall: nothing the chart rendered is left but the CRDs it documents
#      as kept (helm.sh/resource-policy: keep), and Helm's release records are gone
#
# Runs inside a network namespace of its own (unshare --net, root), like e2e/kube.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

if [[ "${1:-}" != "--inside" ]]; then
  "$repo/e2e/controlplane/build.sh" etcd kube-apiserver kubectl
  "$repo/e2e/tools/install.sh"
  exec unshare --net -- "$0" --inside
fi

ip link set lo up
state="$repo/target/e2e-helm"
rm -rf "$state"
mkdir -p "$state"
stop() { "$repo/e2e/controlplane/stop.sh" "$state/controlplane" >/dev/null 2>&1 || true; }
trap stop EXIT
export KUBECONFIG
KUBECONFIG="$("$repo/e2e/controlplane/start.sh" "$state/controlplane" 2>"$state/start.log" | tail -n 1)"
helm="$repo/target/tools/bin/helm"
kubectl="$repo/target/controlplane/bin/kubectl"
chart="$repo/charts/gatehouse"
ns=gatehouse-system
passed=0
ok() { echo "ok   - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*"; exit 1; }

# Every object of a manifest stream as "resource|apiVersion|namespace|name".
objects() { "$repo/target/tools/venv/bin/python" "$here/objects.py" "$@"; }
exists() { # resource apiVersion namespace name
  local group="${2%/*}"; [[ "$2" == */* ]] || group=""
  local resource="$1${group:+.$group}"
  if [[ -n "$3" ]]; then $kubectl get -n "$3" "$resource" "$4" -o name >/dev/null 2>&1
  else $kubectl get "$resource" "$4" -o name >/dev/null 2>&1; fi
}

# --- 1. install -----------------------------------------------------------------------
start=$(date +%s)
$helm install gatehouse "$chart" --namespace $ns --create-namespace >"$state/install.log" 2>&1 \
  || { cat "$state/install.log"; fail "helm install"; }
ok "helm install gatehouse charts/gatehouse -n $ns ($(($(date +%s) - start)) s)"
$helm get manifest gatehouse -n $ns >"$state/manifest-1.yaml"
count=0
while IFS='|' read -r kind api namespace name; do
  exists "$kind" "$api" "$namespace" "$name" || fail "$kind $namespace/$name not found after install"
  count=$((count + 1))
done < <(objects "$state/manifest-1.yaml")
[[ $count -ge 12 ]] || fail "only $count objects rendered"
ok "all $count rendered objects exist in the API server"
"$repo/e2e/controlplane/wait-established.sh" -- crd/apiroutes.gatehouse.dev crd/upstreams.gatehouse.dev crd/apipolicies.gatehouse.dev
ok "CRDs Established"
# The property `on` (Upstream spec.retries.on) must reach the API server as `on`: YAML 1.1
# readers (kubectl, Helm) take a plain `on:` key for the boolean true, so crds/ quotes it.
retries='{.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.retries.properties'
on="$($kubectl get crd upstreams.gatehouse.dev -o jsonpath="$retries.on.type}")"
[[ "$on" == array ]] || fail "Upstream CRD: spec.retries.on is missing in the API server"
ok "Upstream CRD keeps the property spec.retries.on"
sa_token_ok="$($kubectl auth can-i list apiroutes.gatehouse.dev --as=system:serviceaccount:$ns:gatehouse -A)"
[[ "$sa_token_ok" == yes ]] || fail "the chart's ServiceAccount cannot list ApiRoutes"
denied="$($kubectl auth can-i update apiroutes.gatehouse.dev --as=system:serviceaccount:$ns:gatehouse -A || true)"
[[ "$denied" == no ]] || fail "the chart's ServiceAccount may update ApiRoutes"
denied="$($kubectl auth can-i get secrets --as=system:serviceaccount:$ns:gatehouse -n default || true)"
[[ "$denied" == no ]] || fail "the chart's ServiceAccount may get single Secrets"
ok "RBAC as installed: list ApiRoutes yes, update ApiRoutes no, get Secret no"

# --- 2. other values files and the examples, validated by the API server ---------------
$kubectl create namespace shop >/dev/null
$kubectl create namespace payments >/dev/null
for values in "$chart"/ci/*.yaml; do
  $helm template "gh-$(basename "$values" .yaml)" "$chart" -n $ns -f "$values" \
    | "$repo/target/tools/venv/bin/python" "$here/objects.py" --drop-kind ServiceMonitor --drop-kind CustomResourceDefinition --yaml >"$state/ci-$(basename "$values")"
  $kubectl apply --server-side --dry-run=server -f "$state/ci-$(basename "$values")" >"$state/ci.log" 2>&1 \
    || { cat "$state/ci.log"; fail "values file $(basename "$values") rejected by the API server"; }
  ok "ci/$(basename "$values"): every object accepted by the API server (server-side dry run)"
done
while IFS= read -r file; do
  rel="${file#"$repo"/}"
  [[ -n "$(objects "$file" --drop-foreign)" ]] || continue  # Argo CD / Flux kinds: their CRDs are not here
  $kubectl apply --server-side -f "$file" >"$state/example.log" 2>&1 \
    || { cat "$state/example.log"; fail "$rel rejected by the API server"; }
  ok "$rel applied"
done < <(find "$repo/examples" -name '*.yaml' -not -path '*/ci/*' | sort)
$kubectl get upstreams,apiroutes,apipolicies -n shop >"$state/kubectl-get.txt"
cat "$state/kubectl-get.txt"

# --- 3. upgrade to a chart whose CRD gained a field -----------------------------------
next="$state/chart-next"
cp -r "$chart" "$next"
"$repo/target/tools/venv/bin/python" - "$next" <<'PY'
import re, sys
chart = sys.argv[1]
path = f"{chart}/files/crds.yaml"
text = open(path).read()
# ApiRoute's spec: add a string property `upgradeProbe` first among spec's properties.
start = text.index("name: apiroutes.gatehouse.dev")
schema = text.index("      openAPIV3Schema:\n", start)
spec = text.index("\n          spec:\n", schema)
props = text.index("\n            properties:\n", spec) + len("\n            properties:\n")
text = text[:props] + "              upgradeProbe:\n                type: string\n" + text[props:]
open(path, "w").write(text)
meta = f"{chart}/Chart.yaml"
chart_yaml = open(meta).read()
open(meta, "w").write(re.sub(r"(?m)^version: .*$", "version: 0.1.1-upgrade-probe", chart_yaml))
PY
before="$($kubectl get crd apiroutes.gatehouse.dev -o jsonpath='{.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.upgradeProbe.type}')"
[[ -z "$before" ]] || fail "the field exists before the upgrade"
$helm upgrade gatehouse "$next" --namespace $ns >"$state/upgrade.log" 2>&1 || { cat "$state/upgrade.log"; fail "helm upgrade"; }
after="$($kubectl get crd apiroutes.gatehouse.dev -o jsonpath='{.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.upgradeProbe.type}')"
[[ "$after" == string ]] || fail "helm upgrade did not upgrade the CRD (upgradeProbe: '$after')"
ok "helm upgrade: the API server's ApiRoute CRD gained spec.upgradeProbe"
"$repo/e2e/controlplane/wait-established.sh" -- crd/apiroutes.gatehouse.dev
$kubectl apply --server-side -f - >/dev/null <<'YAML'
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: upgraded, namespace: shop}
spec:
  upgradeProbe: "kept by the upgraded schema"
  rules:
    - name: all
      respond: {status: 204}
YAML
kept="$($kubectl get apiroute upgraded -n shop -o jsonpath='{.spec.upgradeProbe}')"
[[ "$kept" == "kept by the upgraded schema" ]] || fail "the new field was pruned: '$kept'"
ok "an ApiRoute using the new field is stored with it"
[[ "$($helm history gatehouse -n $ns -o json | grep -o '"revision":[0-9]*' | wc -l)" == 2 ]] || fail "two revisions"
ok "release at revision 2"

# --- 4. uninstall ---------------------------------------------------------------------
$helm get manifest gatehouse -n $ns >"$state/manifest-2.yaml"
$helm uninstall gatehouse --namespace $ns >"$state/uninstall.log" 2>&1 || { cat "$state/uninstall.log"; fail "helm uninstall"; }
ok "helm uninstall"
left=()
kept=()
while IFS='|' read -r kind api namespace name; do
  if exists "$kind" "$api" "$namespace" "$name"; then
    if [[ "$kind" == customresourcedefinitions ]]; then kept+=("$name"); else left+=("$kind $namespace/$name"); fi
  fi
done < <(objects "$state/manifest-1.yaml" "$state/manifest-2.yaml" | sort -u)
[[ ${#left[@]} -eq 0 ]] || fail "left behind: ${left[*]}"
[[ ${#kept[@]} -eq 3 ]] || fail "expected the 3 CRDs kept, got: ${kept[*]:-none}"
ok "nothing left but the 3 CRDs (kept: ${kept[*]})"
# Nothing else carries the release's label either, in any kind the chart renders.
kinds="deployments.apps,services,serviceaccounts,poddisruptionbudgets.policy,horizontalpodautoscalers.autoscaling,networkpolicies.networking.k8s.io,rolebindings.rbac.authorization.k8s.io"
[[ -z "$($kubectl get "$kinds" -A -l app.kubernetes.io/instance=gatehouse -o name)" ]] || fail "labelled objects left"
[[ -z "$($kubectl get clusterroles,clusterrolebindings -l app.kubernetes.io/instance=gatehouse -o name)" ]] || fail "cluster objects left"
[[ -z "$($kubectl get secrets -n $ns -l owner=helm -o name)" ]] || fail "Helm release records left"
ok "no object labelled app.kubernetes.io/instance=gatehouse and no Helm release record left"
[[ "$($kubectl get apiroute upgraded -n shop -o name)" == apiroute.gatehouse.dev/upgraded ]] || fail "routes were deleted"
ok "users' routes survive the uninstall (CRDs kept)"

echo "$passed passed, 0 failed"
