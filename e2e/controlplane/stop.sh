#!/usr/bin/env bash
# Stops the control plane that start.sh started for STATE_DIR: kube-apiserver first, then
# etcd; SIGTERM, then SIGKILL after CONTROLPLANE_STOP_TIMEOUT seconds (default 15).
# Kills only the pids recorded in STATE_DIR, and only if they still run our binaries.
#
# Usage: stop.sh [STATE_DIR]   (or CONTROLPLANE_DIR; default <repo>/target/controlplane/state)
# Env:   CONTROLPLANE_CLEAN=1 also removes STATE_DIR.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${1:-${CONTROLPLANE_DIR:-$repo/target/controlplane/state}}"
grace="${CONTROLPLANE_STOP_TIMEOUT:-15}"

[[ -d "$state" ]] || { echo "controlplane: no state dir $state" >&2; exit 0; }

stop_one() {
  local name=$1 pidfile="$state/$1.pid" pid exe
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidfile"; return 0; fi
  # Guard against a recycled pid: the process must be our binary of that name.
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
  if [[ "$(basename "${exe% (deleted)}")" != "$name" ]]; then
    echo "controlplane: pid $pid is not $name ($exe); leaving it alone" >&2
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 $((grace * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "controlplane: $name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  echo "controlplane: stopped $name (pid $pid)" >&2
}

stop_one kube-apiserver
stop_one etcd
rm -f "$state/controlplane.env"
if [[ "${CONTROLPLANE_CLEAN:-0}" == 1 ]]; then rm -rf "$state"; fi
