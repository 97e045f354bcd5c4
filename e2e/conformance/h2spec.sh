#!/usr/bin/env bash
# HTTP/2 conformance of the data plane: h2spec (RFC 7540 / RFC 7541, 145 cases, 146 with
# H2SPEC_STRICT=1) against a standalone gatehouse, once per listener:
#   h2c  h2spec over prior-knowledge cleartext against --http
#   tls  h2spec -t -k (ALPN h2) against --https; runs only when the binary has --https,
#        else it is reported as skipped (or, asked for by name, an error)
# One gatehouse serves both: a manifest folder made here with one Upstream (upstream.py,
# an HTTP/1.1 server on loopback) and one ApiRoute matching every path; for tls, the route
# also names a kubernetes.io/tls Secret in the folder, a self-signed key and certificate
# made with openssl for this run.
#
# A failing case fails the script unless h2spec-exceptions.txt lists it (for that mode),
# with a reason. Known failures and stale exceptions are printed; exit 0 all good, 1 a
# case failed that is not listed (or gatehouse died), 2 the run itself could not be done.
# Everything runs on 127.0.0.1, ports picked free. Takes about 2 s for both modes (h2spec
# itself well under 1 s per mode), plus a first-time e2e/tools/install.sh.
# Needs curl, python3 and, for tls, openssl (installed with apt-get when missing and run
# as root: Debian's base images do not always carry it).
#
# Usage: e2e/conformance/h2spec.sh [h2c|tls|all]     (default: all)
# Env:   GATEHOUSE_BIN  (default target/debug/gatehouse; not built here)
#        H2SPEC         (default target/tools/bin/h2spec, installed or brought up to its
#                        pins by e2e/tools/install.sh, which is run first: a no-op when
#                        everything is in place)
#        H2SPEC_STRICT=1  also run h2spec's strict cases (-S)
#        H2SPEC_TIMEOUT   seconds per case (default 2)
#        H2SPEC_EXCEPTIONS  another exceptions file (default h2spec-exceptions.txt here)
#        H2SPEC_TLS_HOST  host h2spec dials for tls (default 127.0.0.1: no SNI is sent;
#                         `localhost` sends SNI localhost)
#        GATEHOUSE_HTTP_PORT, GATEHOUSE_HTTPS_PORT, GATEHOUSE_ADMIN_PORT, UPSTREAM_PORT
#                         fixed ports instead of free ones
#        OUT            reports and logs (default target/conformance): h2spec-MODE.xml
#                       (JUnit), h2spec-MODE.log, h2spec-gatehouse.log, h2spec-upstream.log
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${GATEHOUSE_BIN:-$repo/target/debug/gatehouse}"
h2spec="${H2SPEC:-$repo/target/tools/bin/h2spec}"
exceptions="${H2SPEC_EXCEPTIONS:-$here/h2spec-exceptions.txt}"
out="${OUT:-$repo/target/conformance}"
mode="${1:-all}"
case "$mode" in h2c|tls|all) ;; *) echo "usage: $0 [h2c|tls|all]" >&2; exit 2 ;; esac

say() { echo "h2spec.sh: $*" >&2; }
die() { say "$*"; exit 2; }

[[ -x "$bin" ]] || die "no gatehouse binary at $bin (build it, or set GATEHOUSE_BIN)"
if [[ -z "${H2SPEC:-}" ]]; then "$repo/e2e/tools/install.sh" || die "e2e/tools/install.sh failed"; fi
[[ -x "$h2spec" ]] || die "no h2spec at $h2spec (run e2e/tools/install.sh)"
command -v curl >/dev/null || die "curl is missing"

# openssl makes the tls mode's certificate. It comes with ca-certificates on most images,
# but is not essential in Debian: install it as the other tooling is, when missing.
need_openssl() {
  command -v openssl >/dev/null && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing openssl (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; } >&2 \
      || die "apt-get could not install openssl"
  fi
  command -v openssl >/dev/null || die "openssl is missing (needed for the tls mode's certificate)"
}

help="$("$bin" run --help 2>&1)" || die "$bin run --help failed"
has_https=0
if grep -q -- '--https' <<<"$help"; then has_https=1; fi
modes=()
case "$mode" in
  h2c) modes=(h2c) ;;
  tls) [[ $has_https == 1 ]] || die "$bin has no --https listener yet"; modes=(tls) ;;
  all) modes=(h2c); [[ $has_https == 1 ]] && modes+=(tls) ;;
esac

mkdir -p "$out"
# shellcheck source=e2e/conformance/common.sh
source "$here/common.sh"
work_dir h2spec
read -r p_up p_http p_https p_admin < <(free_ports 4)
p_up="${UPSTREAM_PORT:-$p_up}"
p_http="${GATEHOUSE_HTTP_PORT:-$p_http}"
p_https="${GATEHOUSE_HTTPS_PORT:-$p_https}"
p_admin="${GATEHOUSE_ADMIN_PORT:-$p_admin}"

# --- manifests
mkdir -p "$work/manifests"
route_tls=""
if [[ " ${modes[*]} " == *" tls "* ]]; then
  need_openssl
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null || die "openssl could not make a certificate"
  cat > "$work/manifests/secret.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata: {name: conformance-tls, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 < "$work/tls.crt")
  tls.key: $(base64 -w0 < "$work/tls.key")
EOF
  route_tls="  tls: {secretName: conformance-tls}"
fi
cat > "$work/manifests/gateway.yaml" <<EOF
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: conformance, namespace: default}
spec:
  endpoints:
    - {host: 127.0.0.1, port: $p_up}
  timeouts: {connect: 1s, request: 5s}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: everything, namespace: default}
spec:
$route_tls
  rules:
    - name: all
      matches:
        - path: {type: Prefix, value: /}
      backends:
        - upstream: conformance
EOF

# --- upstream and gatehouse
python3 "$here/upstream.py" 127.0.0.1 "$p_up" > "$out/h2spec-upstream.log" 2>&1 & pids+=($!)
args=(run -f "$work/manifests" --http "127.0.0.1:$p_http" --admin "127.0.0.1:$p_admin" --drain-timeout 1s)
[[ " ${modes[*]} " == *" tls "* ]] && args+=(--https "127.0.0.1:$p_https")
"$bin" "${args[@]}" > "$out/h2spec-gatehouse.log" 2>&1 & gh=$!; pids+=($gh)

ready=0
for _ in $(seq 300); do
  kill -0 "$gh" 2>/dev/null || { tail -20 "$out/h2spec-gatehouse.log" >&2; die "gatehouse exited at start"; }
  if curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$p_admin/readyz"; then ready=1; break; fi
  sleep 0.1
done
[[ $ready == 1 ]] || { tail -20 "$out/h2spec-gatehouse.log" >&2; die "gatehouse not ready after 30 s"; }
# The route must reach the upstream, or every case would test an error path only.
for _ in $(seq 50); do
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --http2-prior-knowledge "http://127.0.0.1:$p_http/probe" || true)"
  [[ "$code" == 200 ]] && break
  sleep 0.1
done
[[ "$code" == 200 ]] || die "GET /probe over h2c answered $code, not 200 from the upstream"
# Over TLS too, with ALPN h2: else the tls mode would test a refused handshake or HTTP/1.1.
if [[ " ${modes[*]} " == *" tls "* ]]; then
  got="$(curl -sk -o /dev/null -w '%{http_version} %{http_code}' --max-time 2 --http2 \
    "https://127.0.0.1:$p_https/probe" || true)"
  [[ "$got" == "2 200" ]] \
    || die "GET /probe over https (ALPN h2) answered '$got', not '2 200' (HTTP version, status)"
fi

# --- h2spec, once per mode
flags=(-o "${H2SPEC_TIMEOUT:-2}")
[[ "${H2SPEC_STRICT:-0}" == 1 ]] && flags+=(-S)
status=0
for m in "${modes[@]}"; do
  report="$out/h2spec-$m.xml"; log="$out/h2spec-$m.log"
  rm -f "$report"
  if [[ $m == h2c ]]; then
    target=(-h 127.0.0.1 -p "$p_http")
  else
    target=(-t -k -h "${H2SPEC_TLS_HOST:-127.0.0.1}" -p "$p_https")
  fi
  start=$EPOCHREALTIME
  "$h2spec" "${flags[@]}" "${target[@]}" -j "$report" > "$log" 2>&1 || true   # exit 1 on any failure: judged below
  [[ -s "$report" ]] || { tail -20 "$log" >&2; die "h2spec ($m) wrote no report; its output is in $log"; }
  say "$m: h2spec ran in $(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $start}") s (output: $log)"
  rc=0
  python3 - "$report" "$exceptions" "$m" <<'PY' || rc=$?
import re, sys, xml.etree.ElementTree as ET

report, exceptions_file, mode = sys.argv[1:]

known = {}  # case id -> reason, for this mode
for n, line in enumerate(open(exceptions_file), 1):
    body, _, reason = line.partition("#")
    words = body.split()
    if not words:
        continue
    if len(words) > 2 or (len(words) == 2 and words[1] not in ("h2c", "tls")) or not reason.strip():
        print(f"{exceptions_file}:{n}: want 'CASE-ID [h2c|tls]  # reason', got: {line.rstrip()}", file=sys.stderr)
        sys.exit(2)
    if len(words) == 1 or words[1] == mode:
        known[words[0]] = reason.strip()

passed, failed, skipped, seen = 0, [], 0, set()
for suite in ET.parse(report).getroot().iter("testsuite"):
    # A case's id is its group's id and its 1-based place in the group: h2spec numbers
    # a group's cases in order (strict ones last), and reports every case it ran.
    for seq, case in enumerate(suite.iter("testcase"), 1):
        cid = f"{suite.get('package')}/{seq}"
        seen.add(cid)
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if case.find("skipped") is not None:
            skipped += 1
        elif bad is not None:
            msg = re.sub(r"\s*\n\s*", " | ", (bad.text or "").strip())
            failed.append((cid, case.get("classname"), msg))
        else:
            passed += 1
            if cid in known:
                print(f"  stale exception: {cid} passes over {mode}: delete it from h2spec-exceptions.txt")

unexpected = [f for f in failed if f[0] not in known]
for cid, desc, msg in failed:
    print(f"  {'known' if cid in known else 'FAIL '} {cid}: {desc}\n        h2spec: {msg}")
    if cid in known:
        print(f"        listed: {known[cid]}")
for cid in sorted(set(known) - seen):
    print(f"  note: exception {cid} names no case this run reported")
print(f"h2spec {mode}: {len(failed) - len(unexpected)} known failure(s) counted as skipped")
print(f"{mode}: {passed} passed, {len(unexpected)} failed, {skipped + len(failed) - len(unexpected)} skipped")
sys.exit(1 if unexpected else 0)
PY
  [[ $rc == 2 ]] && die "bad $exceptions"
  [[ $rc == 0 ]] || status=1
done

kill -0 "$gh" 2>/dev/null || { say "gatehouse died during the run; see $out/h2spec-gatehouse.log"; status=1; }
if [[ "$mode" == all && $has_https == 0 ]]; then
  say "tls: skipped, $bin has no --https listener yet"
fi
exit $status
