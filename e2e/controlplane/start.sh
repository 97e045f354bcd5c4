#!/usr/bin/env bash
# Starts a real Kubernetes control plane (etcd + kube-apiserver v1.34.4, no kubelet,
# scheduler or controller-manager) on 127.0.0.1 for Gatehouse's e2e tests, the way
# controller-runtime's envtest does. See README.md.
#
# Usage: start.sh [STATE_DIR]       (or CONTROLPLANE_DIR=STATE_DIR start.sh)
#        default STATE_DIR: <repo>/target/controlplane/state
#
# Writes into STATE_DIR:
#   kubeconfig          admin credential (CN=admin, O=system:masters)
#   controlplane.env    KUBECONFIG, APISERVER_URL, ETCD_URL, ports, pids (shell syntax)
#   etcd.pid, kube-apiserver.pid, etcd.log, kube-apiserver.log
#   pki/                CA, serving cert, admin cert, service-account key pair
#   etcd-data/          etcd's data (wiped at each start unless CONTROLPLANE_KEEP_DATA=1)
# Prints the kubeconfig path on stdout when /readyz answers ok. Stop with stop.sh.
#
# Env: ETCD_PORT, ETCD_PEER_PORT, APISERVER_PORT (default: free ports picked at random),
#      CONTROLPLANE_TIMEOUT (seconds to wait for /readyz, default 180),
#      CONTROLPLANE_BIN (binaries, default <repo>/target/controlplane/bin),
#      CONTROLPLANE_KEEP_DATA=1 (keep etcd data from the last run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${CONTROLPLANE_BIN:-$repo/target/controlplane/bin}"
export CONTROLPLANE_BIN="$bin"
state="${1:-${CONTROLPLANE_DIR:-$repo/target/controlplane/state}}"
timeout="${CONTROLPLANE_TIMEOUT:-180}"

log() { echo "controlplane: $*" >&2; }

# 1. Binaries (no-op when up to date).
"$here/build.sh" etcd kube-apiserver kubectl

mkdir -p "$state"
state="$(cd "$state" && pwd)"
pki="$state/pki"
mkdir -p "$pki"

# Refuse to start twice on the same state dir.
for p in etcd kube-apiserver; do
  if [[ -f "$state/$p.pid" ]] && kill -0 "$(cat "$state/$p.pid")" 2>/dev/null; then
    log "$p already running (pid $(cat "$state/$p.pid")) for $state; run stop.sh first"
    exit 1
  fi
done

# 2. Ports: given, or free ones picked by the kernel.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local p
  while :; do  # no python3: a random port below the ephemeral range that nothing answers on
    p=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
etcd_port="${ETCD_PORT:-$(free_port)}"
etcd_peer_port="${ETCD_PEER_PORT:-$(free_port)}"
api_port="${APISERVER_PORT:-$(free_port)}"

# 3. PKI (generated once per state dir, reused afterwards).
if [[ ! -s "$pki/admin.crt" ]]; then
  log "generating certificates in $pki"
  ( cd "$pki"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=gatehouse-e2e-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out ca.crt 2>/dev/null

    # Serving cert: 127.0.0.1 plus the names/IP of the in-cluster `kubernetes` Service.
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
    cat > apiserver.ext <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
      -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null

    # Admin client cert: group system:masters is bound to cluster-admin by RBAC bootstrap.
    openssl ecparam -name prime256v1 -genkey -noout -out admin.key.tmp 2>/dev/null
    openssl req -new -key admin.key.tmp -subj "/O=system:masters/CN=admin" -out admin.csr 2>/dev/null
    cat > admin.ext <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
      -days 3650 -extfile admin.ext -out admin.crt.tmp 2>/dev/null

    # Service-account token signing key pair.
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

    rm -f ./*.csr ./*.ext ca.srl
    mv admin.key.tmp admin.key
    chmod 644 ca.crt apiserver.crt admin.crt.tmp sa.pub
    mv admin.crt.tmp admin.crt   # last: marks the PKI complete
  )
fi

api_url="https://127.0.0.1:$api_port"
etcd_url="http://127.0.0.1:$etcd_port"
b64() { base64 -w0 < "$1"; }
kubeconfig="$state/kubeconfig"
( umask 077
  cat > "$kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gatehouse-e2e
  cluster:
    server: $api_url
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
contexts:
- name: gatehouse-e2e
  context:
    cluster: gatehouse-e2e
    user: admin
    namespace: default
current-context: gatehouse-e2e
EOF
  mv "$kubeconfig.tmp" "$kubeconfig" )

# If anything below fails, take down what was started.
started=()
cleanup_on_error() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${started[@]}"; do
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$state/etcd.pid" "$state/kube-apiserver.pid"
  fi
  exit $rc
}
trap cleanup_on_error EXIT

# 4. etcd.
if [[ "${CONTROLPLANE_KEEP_DATA:-0}" != 1 ]]; then rm -rf "$state/etcd-data"; fi
log "starting etcd on $etcd_url"
"$bin/etcd" \
  --name=default \
  --data-dir="$state/etcd-data" \
  --listen-client-urls="$etcd_url" \
  --advertise-client-urls="$etcd_url" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="default=http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster-state=new \
  --unsafe-no-fsync=true \
  --log-level=warn \
  </dev/null >"$state/etcd.log" 2>&1 &
etcd_pid=$!
started+=("$etcd_pid")
echo "$etcd_pid" > "$state/etcd.pid"

for i in $(seq 1 $((timeout * 5))); do
  kill -0 "$etcd_pid" 2>/dev/null || { log "etcd exited; last log lines:"; tail -n 20 "$state/etcd.log" >&2; exit 1; }
  if curl -fsS --max-time 2 "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"'; then break; fi
  [[ $i -lt $((timeout * 5)) ]] || { log "etcd not healthy after ${timeout}s"; tail -n 20 "$state/etcd.log" >&2; exit 1; }
  sleep 0.2
done

# 5. kube-apiserver.
log "starting kube-apiserver on $api_url"
"$bin/kube-apiserver" \
  --etcd-servers="$etcd_url" \
  --cert-dir="$pki" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --authorization-mode=RBAC \
  --secure-port="$api_port" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --endpoint-reconciler-type=none \
  --service-cluster-ip-range=10.0.0.0/24 \
  --disable-admission-plugins=ServiceAccount \
  --enable-priority-and-fairness=false \
  --allow-privileged=true \
  --profiling=false \
  --v=1 \
  </dev/null >"$state/kube-apiserver.log" 2>&1 &
api_pid=$!
started+=("$api_pid")
echo "$api_pid" > "$state/kube-apiserver.pid"

# 6. Wait for /readyz through the admin kubeconfig.
t0=$(date +%s)
until out="$("$bin/kubectl" --kubeconfig="$kubeconfig" --request-timeout=5s get --raw=/readyz 2>&1)" && [[ "$out" == ok ]]; do
  for pid in "$etcd_pid" "$api_pid"; do
    kill -0 "$pid" 2>/dev/null || { log "process $pid exited; last log lines:"; tail -n 30 "$state/etcd.log" "$state/kube-apiserver.log" >&2; exit 1; }
  done
  if (( $(date +%s) - t0 >= timeout )); then
    log "kube-apiserver not ready after ${timeout}s: $out"
    tail -n 30 "$state/kube-apiserver.log" >&2
    exit 1
  fi
  sleep 0.5
done

cat > "$state/controlplane.env" <<EOF
KUBECONFIG=$kubeconfig
APISERVER_URL=$api_url
APISERVER_PORT=$api_port
ETCD_URL=$etcd_url
ETCD_PORT=$etcd_port
ETCD_PID=$etcd_pid
APISERVER_PID=$api_pid
CONTROLPLANE_BIN=$bin
EOF
log "ready after $(( $(date +%s) - t0 ))s: $api_url (etcd pid $etcd_pid, kube-apiserver pid $api_pid)"
echo "$kubeconfig"
