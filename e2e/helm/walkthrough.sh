#!/usr/bin/env bash
# Usage (root, after make e2e-helm built the tools and cargo build -p gatehouse -p gatehouse-testkit):
#   unshare --net e2e/helm/walkthrough.sh
# Captures real output for examples/kubernetes/README.md: control plane, helm install,
# the examples, a hand-written EndpointSlice (no controller-manager), a local controller
# and proxy (no kubelet), then kubectl get and curl.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ip link set lo up
ip addr add 198.18.0.2/32 dev lo
ip addr add 198.18.0.3/32 dev lo
st=$repo/target/walkthrough; rm -rf $st; mkdir -p $st
export KUBECONFIG="$($repo/e2e/controlplane/start.sh $st/cp 2>/dev/null | tail -1)"
k=$repo/target/controlplane/bin/kubectl; helm=$repo/target/tools/bin/helm
cleanup() { kill $(jobs -p) 2>/dev/null || true; $repo/e2e/controlplane/stop.sh $st/cp >/dev/null 2>&1 || true; }
trap cleanup EXIT
cd $repo
echo '$ helm install gatehouse charts/gatehouse -n gatehouse-system --create-namespace'
$helm install gatehouse charts/gatehouse -n gatehouse-system --create-namespace 2>&1 | head -8
echo '$ kubectl apply --server-side -f examples/kubernetes/'
$k apply --server-side -f examples/kubernetes/
# the endpoint-slice controller's job, by hand: two ready endpoints of the users pods
$k apply --server-side -f - >/dev/null <<YAML
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: users-abcde
  namespace: shop
  labels: {kubernetes.io/service-name: users}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [198.18.0.2]
    conditions: {ready: true}
  - addresses: [198.18.0.3]
    conditions: {ready: true}
YAML
$repo/target/debug/gatehouse-echo 198.18.0.2:8080 >/dev/null 2>&1 &
$repo/target/debug/gatehouse-echo 198.18.0.3:8080 >/dev/null 2>&1 &
$repo/target/debug/gatehouse proxy --http 127.0.0.1:18080 --admin 127.0.0.1:19901 --metrics 127.0.0.1:19090 \
  --admin-socket $st/admin.sock --state-dir $st/state --workers 1 2>$st/proxy.log &
POD_NAMESPACE=gatehouse-system POD_NAME=gatehouse-7d9c6b5f4-x2lqp $repo/target/debug/gatehouse controller --admin-socket $st/admin.sock 2>$st/controller.log &
for i in $(seq 1 60); do curl -fs 127.0.0.1:19090/readyz >/dev/null && break; sleep 0.5; done
sleep 3
echo '$ kubectl get upstreams,apiroutes,apipolicies -n shop'
$k get upstreams,apiroutes,apipolicies -n shop
echo '$ kubectl get apiroute users-admin -n shop -o jsonpath=...'
$k get apiroute users-admin -n shop -o jsonpath='{range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}'
echo '$ kubectl get apipolicy api-key -n shop -o jsonpath=...'
$k get apipolicy api-key -n shop -o jsonpath='{range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}'
echo '$ kubectl get events -n shop'
$k get events -n shop
echo '$ kubectl -n gatehouse-system get lease gatehouse-controller'
$k -n gatehouse-system get lease gatehouse-controller
echo '$ curl -i -H "Host: api.shop.example" http://127.0.0.1:18080/users/42'
curl -s -i -H 'Host: api.shop.example' http://127.0.0.1:18080/users/42 | head -20
echo
echo '$ curl -i -X POST -H "Host: api.shop.example" http://127.0.0.1:18080/users'
curl -s -i -X POST -H 'Host: api.shop.example' http://127.0.0.1:18080/users | head -20
echo
echo '$ curl -i -X POST -H "Host: api.shop.example" -H "X-Api-Key: change-me-to-a-long-random-key" http://127.0.0.1:18080/users'
curl -s -i -X POST -H 'Host: api.shop.example' -H 'X-Api-Key: change-me-to-a-long-random-key' http://127.0.0.1:18080/users | head -30
echo
echo '$ curl -s localhost:19901/explain?...'
curl -s 'http://127.0.0.1:19901/explain?method=GET&url=http://api.shop.example/users/42' | head -c 1500
echo
echo '$ curl -s localhost:19901/explain?method=POST...'
curl -s 'http://127.0.0.1:19901/explain?method=POST&url=http://api.shop.example/users' | head -c 1500
echo
tail -5 $st/controller.log
