#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kubectl from the Go module in this folder into
# $CONTROLPLANE_BIN (default: <repo>/target/controlplane/bin). A binary is rebuilt only
# when it is missing or older than go.mod, go.sum, this script or its cmd/ source, so a
# rerun costs a few stat calls. Go's module and build caches make a forced rebuild cheap
# too. See README.md for versions and timings.
#
# Usage: build.sh [etcd|kube-apiserver|kubectl ...]   (default: all three)
# Env:   CONTROLPLANE_BIN, GO (default: go on PATH, else /usr/local/go/bin/go),
#        CONTROLPLANE_GOFLAGS_P (parallelism, default 2), FORCE=1 to rebuild.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${CONTROLPLANE_BIN:-$repo/target/controlplane/bin}"

GO="${GO:-}"
if [[ -z "$GO" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi

# Must match the k8s.io/kubernetes version in go.mod: the API server and kubectl report it
# (`kubectl version`, /version), and clients such as kube-rs read it.
KUBE_VERSION=v1.34.4
kube_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=34 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=${KUBE_VERSION} \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=34"

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(etcd kube-apiserver kubectl)

mkdir -p "$bin"
cd "$here"
for t in "${targets[@]}"; do
  [[ -d "cmd/$t" ]] || { echo "build.sh: unknown target $t" >&2; exit 2; }
  out="$bin/$t"
  if [[ "${FORCE:-0}" != 1 && -x "$out" ]]; then
    stale=0
    for dep in go.mod go.sum build.sh cmd/"$t"/*.go; do
      [[ "$dep" -nt "$out" ]] && stale=1
    done
    if [[ $stale == 0 ]]; then continue; fi
  fi
  echo "build.sh: building $t -> $out" >&2
  start=$(date +%s)
  ldflags="-s -w"
  [[ "$t" == etcd ]] || ldflags="$kube_ldflags"
  # CGO off: static binaries, no C toolchain needed (upstream builds these the same way).
  CGO_ENABLED=0 nice -n 10 "$GO" build -p "${CONTROLPLANE_GOFLAGS_P:-2}" -mod=readonly \
    -ldflags "$ldflags" -o "$out.tmp" "./cmd/$t"
  mv -f "$out.tmp" "$out"
  echo "build.sh: built $t in $(( $(date +%s) - start ))s" >&2
done
