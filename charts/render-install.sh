#!/usr/bin/env bash
# Prints manifests/install.yaml: the chart with its default values, release "gatehouse"
# in namespace gatehouse-system, preceded by that Namespace. `make manifests` writes it;
# the chart test fails when the committed file differs from this output.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/e2e/tools/install.sh"
cat <<'HEADER'
# Gatehouse, rendered from charts/gatehouse with its default values (`make manifests`;
# do not edit). Install: kubectl apply --server-side -f manifests/install.yaml
# Prefer `helm install` for configuration and upgrades: see docs/install.md.
---
apiVersion: v1
kind: Namespace
metadata:
  name: gatehouse-system
  labels:
    app.kubernetes.io/part-of: gatehouse
HEADER
"$repo/target/tools/bin/helm" template gatehouse "$repo/charts/gatehouse" --namespace gatehouse-system
