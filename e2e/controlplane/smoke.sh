#!/usr/bin/env bash
# Smoke test of the control plane: start it, install Gatehouse's CRDs, write the kinds of
# objects the e2e tests write (Namespace, ServiceAccount, Service, EndpointSlice, Upstream,
# ApiRoute), check that the API server enforces the CRDs' CEL rules, stop, and check that
# no process is left. Prints "N passed, N failed" last; exits non-zero on any failure.
#
# Usage: smoke.sh [STATE_DIR]   (default: a fresh temporary dir, removed afterwards)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${1:-$(mktemp -d /tmp/gatehouse-controlplane.XXXXXX)}"
[[ $# -gt 0 ]] || trap 'rm -rf "$state"' EXIT
td="$here/testdata"

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }

"$here/start.sh" "$state" >/dev/null
trap '"$here/stop.sh" "$state" || true; [[ $# -gt 0 ]] || rm -rf "$state"' EXIT
# shellcheck disable=SC1091
source "$state/controlplane.env"
k() { "$CONTROLPLANE_BIN/kubectl" --kubeconfig="$KUBECONFIG" "$@"; }

# expect_reject FILE MESSAGE: applying FILE must fail with MESSAGE in the error.
expect_reject() {
  local out
  if out="$(k apply -f "$1" 2>&1)"; then
    fail "$(basename "$1") was accepted"
  elif grep -qF -- "$2" <<<"$out"; then
    ok "$(basename "$1") rejected: $2"
  else
    fail "$(basename "$1") rejected with an unexpected error: $out"
  fi
}

[[ "$(k get --raw=/readyz)" == ok ]] && ok "/readyz ok" || fail "/readyz"
ver="$(k get --raw=/version | grep -o '"gitVersion": *"[^"]*"' || true)"
[[ "$ver" == *v1.34.* ]] && ok "server version $ver" || fail "server version: $ver"

k apply -f "$repo/crds/gatehouse.dev_crds.yaml" >/dev/null && ok "CRDs applied" || fail "CRDs applied"
k wait --for=condition=Established --timeout=60s \
  crd/apiroutes.gatehouse.dev crd/upstreams.gatehouse.dev crd/apipolicies.gatehouse.dev >/dev/null \
  && ok "CRDs Established" || fail "CRDs Established"
k get apiroutes -A >/dev/null 2>&1 && ok "kubectl get apiroutes -A" || fail "kubectl get apiroutes -A"

k apply -f "$td/smoke-objects.yaml" >/dev/null && ok "namespace, ServiceAccount, Service, EndpointSlice, Upstream, ApiRoute created" \
  || fail "smoke objects"
addr="$(k -n gatehouse-e2e get endpointslice echo-1 -o jsonpath='{.endpoints[0].addresses[0]}' 2>&1)"
[[ "$addr" == 198.18.0.2 ]] && ok "EndpointSlice address $addr" || fail "EndpointSlice address: $addr"
[[ "$(k get apiroutes -A -o name 2>&1)" == apiroute.gatehouse.dev/good ]] && ok "ApiRoute listed" || fail "ApiRoute listed"

expect_reject "$td/invalid-apiroute-path.yaml" "Exact, Prefix and Template paths must start with /"
expect_reject "$td/invalid-apiroute-rule.yaml" "exactly one of backends, aggregate, redirect, respond must be set"
expect_reject "$td/invalid-endpointslice-loopback.yaml" "may not be in the loopback range"

# Service-account tokens authenticate, and RBAC denies what was not granted.
tok="$(k -n gatehouse-e2e create token gatehouse --duration=10m)"
who="$(curl -sS --cacert "$state/pki/ca.crt" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  -X POST -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
  "$APISERVER_URL/apis/authentication.k8s.io/v1/selfsubjectreviews")"
grep -q '"username": *"system:serviceaccount:gatehouse-e2e:gatehouse"' <<<"$who" \
  && ok "ServiceAccount token authenticates" || fail "ServiceAccount token: $who"
code="$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$state/pki/ca.crt" -H "Authorization: Bearer $tok" \
  "$APISERVER_URL/apis/gatehouse.dev/v1alpha1/namespaces/gatehouse-e2e/apiroutes")"
[[ "$code" == 403 ]] && ok "RBAC denies the ServiceAccount (403)" || fail "RBAC: HTTP $code"

etcd_pid=$ETCD_PID api_pid=$APISERVER_PID
"$here/stop.sh" "$state"
trap '[[ $# -gt 0 ]] || rm -rf "$state"' EXIT
if kill -0 "$etcd_pid" 2>/dev/null || kill -0 "$api_pid" 2>/dev/null; then
  fail "processes left after stop.sh"
else
  ok "stopped, no process left"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
