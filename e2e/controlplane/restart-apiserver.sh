#!/usr/bin/env bash
# Restarts the kube-apiserver that start.sh started for STATE_DIR, the hard way a real
# control plane can: first compacts etcd to its current revision (so every watch that
# resumes from an older resourceVersion gets 410 Gone and must relist), then stops the
# API server and starts it again with the very same command line (same port, same
# certificates), and waits for /readyz.
#
# Usage: restart-apiserver.sh STATE_DIR [DOWN_SECONDS]   (default: down for 3 s)
set -euo pipefail
state="$1"
down="${2:-3}"
# shellcheck disable=SC1091
source "$state/controlplane.env"
log() { echo "restart-apiserver: $*" >&2; }

# 1. Compact etcd (its gRPC gateway): everything before the current revision is gone.
rev="$(curl -fsS -X POST "$ETCD_URL/v3/kv/range" -d '{"key":"AA=="}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')"
curl -fsS -X POST "$ETCD_URL/v3/kv/compaction" -d "{\"revision\":\"$rev\",\"physical\":true}" >/dev/null
log "etcd compacted at revision $rev"

# 2. Stop the API server, keeping its command line.
pid="$(cat "$state/kube-apiserver.pid")"
mapfile -d '' cmd < "/proc/$pid/cmdline"
kill "$pid"
for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
log "kube-apiserver stopped; down for ${down}s"
sleep "$down"

# 3. Start it again, the same way.
"${cmd[@]}" </dev/null >>"$state/kube-apiserver.log" 2>&1 &
echo $! > "$state/kube-apiserver.pid"
sed -i "s/^APISERVER_PID=.*/APISERVER_PID=$!/" "$state/controlplane.env"
for _ in $(seq 600); do
  if "$CONTROLPLANE_BIN/kubectl" --kubeconfig "$KUBECONFIG" get --raw /readyz >/dev/null 2>&1; then
    log "kube-apiserver ready again"
    exit 0
  fi
  sleep 0.2
done
log "kube-apiserver did not come back"; exit 1
