# Sourced by the conformance scripts (h2spec.sh, testssl.sh): a work folder removed on
# exit with every process started into `pids`, and free loopback ports.

# `work_dir NAME`: sets $work to a fresh folder; on exit, the processes in $pids are
# stopped (TERM, then KILL after 5 s) and the folder removed.
work_dir() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-$1.XXXXXX")"
  pids=()
  trap conformance_cleanup EXIT
}

conformance_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}

# `free_ports N`: N loopback ports that were free a moment ago, on one line.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
}
