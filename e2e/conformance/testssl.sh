#!/usr/bin/env bash
# TLS quality of the data plane's HTTPS listener: testssl.sh (Debian's package, 3.0.x)
# against a standalone gatehouse, judged from testssl's JSON.
#
# One gatehouse serves one manifest folder made here: an Upstream (upstream.py, HTTP/1.1
# on loopback) and, per certificate in TESTSSL_CERTS (default "rsa ecdsa"), a
# kubernetes.io/tls Secret with a self-signed certificate made with openssl and a route
# that names it. The first certificate is the default one (its route has no `hosts`) and
# is scanned as https://localhost (no route has that host: the default answers); each
# other one has a route for NAME.localhost and is scanned with that SNI. testssl dials
# 127.0.0.1 (--ip), does no DNS (--nodns none) and contacts nothing else (no
# --phone-out: no CRL or OCSP fetch).
#
# The scan is testssl's full default run (protocols, cipher categories, forward secrecy,
# server preferences, server defaults, HTTP headers, vulnerabilities, each of its 370
# ciphers, client simulations), or TESTSSL_CHECKS.
#
# Judged a weakness of the gateway (exit 1), whatever testssl's severity says:
#   - protocols: SSLv2, SSLv3, TLS1, TLS1_1 anything but "not offered";
#   - cipher categories: cipherlist_NULL, _aNULL, _EXPORT, _LOW, _3DES_IDEA, _AVERAGE
#     (3.0's name for obsoleted CBC; _OBSOLETED in 3.1+) anything but "not offered";
#   - each cipher offered (cipher_xNNNN from the default run, cipher-PROTO_xNNNN from -E):
#     its IANA name must be a TLS 1.3 suite or TLS_ECDHE/DHE_{RSA,ECDSA}_WITH_ an AEAD
#     (AES-GCM, ChaCha20-Poly1305, AES-CCM but not CCM_8);
#   - vulnerabilities (heartbleed, CCS, ticketbleed, ROBOT, secure_renego,
#     secure_client_renego, CRIME_TLS, BREACH, POODLE_SSL, POODLE_TLS, fallback_SCSV,
#     SWEET32, FREAK, DROWN, LOGJAM, LOGJAM-common_primes, BEAST, BEAST_CBC_*, LUCKY13,
#     RC4, winshock, opossum): severity MEDIUM or above, or a finding that says
#     "VULNERABLE" / "potentially vulnerable" (testssl rates some of these LOW);
#   - any other id not ignored below with severity MEDIUM, HIGH or CRITICAL.
#
# Ignored ids: findings about the self-signed test certificate this script makes, or
# about the test upstream's HTTP answer, not about the gateway's TLS. They are still
# printed, as notes, when testssl rates them LOW or above.
#   cert_chain_of_trust          self-signed: no CA chain, by construction
#   cert_trust, cert_commonName, cert_commonName_wo_SNI, cert_subjectAltName,
#   cert_caIssuers, cert_keyUsage, cert_extKeyUsage, cert_certificatePolicies_EV,
#   cert_eTLS, cert_signatureAlgorithm, cert_keySize, cert_serialNumber,
#   cert_serialNumberLen, cert_fingerprintSHA1, cert_fingerprintSHA256, cert,
#   cert_numbers, certs_countServer, certs_list_ordering_problem
#                                the certificate's own fields: this script picks them;
#                                the gateway serves whatever the Secret holds
#   cert_expirationStatus, cert_notBefore, cert_notAfter, cert_validityPeriod
#                                validity and expiry of the throwaway certificate
#   cert_revocation, cert_crlDistributionPoints, cert_ocspURL, OCSP_stapling,
#   cert_mustStapleExtension     no CA, so no CRL or OCSP responder to name or staple
#   certificate_transparency     CT logs are a public CA's business
#   DNS_CAArecord                CAA is DNS (and not looked up: --nodns none)
#   (and every other id starting cert_ or certs_, for the same reasons)
#   HSTS, HPKP, security_headers, banner_server, banner_application, banner_reverseproxy,
#   cookie_count, cookie_secure, cookie_httponly, HTTP_status_code, HTTP_clock_skew
#                                HTTP response headers: what upstream.py answers, passed
#                                through; HSTS and the like are per-route header policy,
#                                not the TLS listener
#   sessionresumption_ticket, sessionresumption_ID, TLS_session_ticket, SSL_sessionID_support
#                                resumption is performance, not security; and testssl 3.0
#                                with OpenSSL 3 tests TLS 1.3 ticket resumption by luck:
#                                its s_client may exit before the NewSessionTicket arrives,
#                                and then it reports a WARN "connect problem" (seen in one
#                                run of three here; the others said "Tickets: yes, ID: yes")
#   DROWN_hint, clientsimulation-*, cipher_order_*, TLS_extensions, TLS_timestamp,
#   pre_128cipher, service, scanTime
#                                informational
# Ignored only on a condition:
#   cipher_order                 "NOT a cipher order configured" (testssl 3.0 rates it
#                                HIGH): the client's preference decides. Not a weakness
#                                when every suite offered passes the cipher rule above
#                                (Mozilla's recommended configurations leave the choice
#                                to the client then); a weakness if any does not, or if
#                                the scan listed no ciphers to tell.
#
# A WARN (a check testssl could not do) on an id that is not ignored makes the result
# inconclusive: exit 2 unless a weakness was found.
#
# Exit 0 clean, 1 a weakness found (or gatehouse died), 2 could not run or inconclusive.
# Takes 45-60 s per certificate (so under 2 min for the default two) with a debug build,
# most of it the 370-cipher scan and the client simulations; TESTSSL_CHECKS="-p -s -f -U -E"
# takes about 30 s. Plus a first-time apt-get install of testssl.sh.
#
# Usage: e2e/conformance/testssl.sh
# Env:   GATEHOUSE_BIN  (default target/debug/gatehouse; not built here)
#        TESTSSL        testssl binary (default: testssl or testssl.sh on PATH; when
#                       neither is, the Debian package testssl.sh is apt-get installed,
#                       which needs root)
#        TESTSSL_CERTS  certificates to serve and scan, in order, of: rsa (RSA 2048),
#                       ecdsa (ECDSA P-256). Default "rsa ecdsa"; the first is the default
#        TESTSSL_CHECKS testssl check flags instead of the full default run, e.g.
#                       "-p -s -f -U -E". Keep -e or -E in it: without a list of the suites
#                       offered, an AEAD suite without forward secrecy (TLS_RSA_WITH_AES_*_GCM)
#                       passes the cipher categories unseen, and cipher_order cannot be judged
#        TESTSSL_TIMEOUT  seconds one scan may take (default 600)
#        OUT            reports and logs (default target/conformance): testssl-CERT.json,
#                       testssl-CERT.log, testssl-gatehouse.log, testssl-upstream.log
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${GATEHOUSE_BIN:-$repo/target/debug/gatehouse}"
out="${OUT:-$repo/target/conformance}"
certs=(${TESTSSL_CERTS:-rsa ecdsa})
scan_timeout="${TESTSSL_TIMEOUT:-600}"
[[ $# == 0 ]] || { echo "usage: $0   (settings are environment variables: see the header)" >&2; exit 2; }

say() { echo "testssl.sh: $*" >&2; }
die() { say "$*"; exit 2; }

[[ ${#certs[@]} -gt 0 ]] || die "TESTSSL_CERTS is empty"
for c in "${certs[@]}"; do
  case "$c" in rsa|ecdsa) ;; *) die "TESTSSL_CERTS: unknown certificate kind '$c' (rsa, ecdsa)" ;; esac
done
[[ -x "$bin" ]] || die "no gatehouse binary at $bin (build it, or set GATEHOUSE_BIN)"
command -v python3 >/dev/null || die "python3 is missing"

# testssl.sh (Debian names the command `testssl`; upstream `testssl.sh`) and openssl, from
# Debian's packages when missing. testssl.sh depends on openssl, so one install brings both.
apt_install() {
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing $* (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >&2 \
      || die "apt-get could not install $*"
  else
    die "$* missing, and apt-get cannot install it here (not root, or no apt-get)"
  fi
}
testssl="${TESTSSL:-}"
if [[ -z "$testssl" ]]; then
  testssl="$(command -v testssl || command -v testssl.sh || true)"
  if [[ -z "$testssl" ]]; then
    apt_install testssl.sh
    testssl="$(command -v testssl || command -v testssl.sh || true)"
  fi
fi
[[ -n "$testssl" && -x "$(command -v "$testssl")" ]] || die "no testssl at '${testssl}'"
command -v openssl >/dev/null || apt_install openssl
command -v timeout >/dev/null || die "timeout (coreutils) is missing"
testssl_version="$("$testssl" --version 2>/dev/null | sed -n 's/.*testssl[.a-z]* *\([0-9][0-9.a-z-]*\) .*/\1/p' | head -1)"
[[ -n "$testssl_version" ]] || die "$testssl --version printed no version"
say "using $testssl $testssl_version"

help="$("$bin" run --help 2>&1)" || die "$bin run --help failed"
grep -q -- '--https' <<<"$help" || die "$bin has no --https listener"

mkdir -p "$out"
# shellcheck source=e2e/conformance/common.sh
source "$here/common.sh"
work_dir testssl
read -r p_up p_http p_https p_admin < <(free_ports 4)

# --- certificates and manifests
mkdir -p "$work/manifests"
cat > "$work/manifests/upstream.yaml" <<EOF
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: testssl, namespace: default}
spec:
  endpoints:
    - {host: 127.0.0.1, port: $p_up}
  timeouts: {connect: 1s, request: 5s}
EOF
hosts=()   # the name each certificate is scanned as, in the order of certs
for i in "${!certs[@]}"; do
  kind="${certs[$i]}"
  if [[ $i == 0 ]]; then host=localhost; san="DNS:localhost,IP:127.0.0.1"; else host="$kind.localhost"; san="DNS:$host"; fi
  hosts+=("$host")
  case "$kind" in
    rsa) newkey=(-newkey rsa:2048) ;;
    ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
  esac
  # A year's validity: short-lived test certificates only add expiry notices.
  openssl req -x509 "${newkey[@]}" -sha256 -nodes -days 365 -subj "/CN=$host" \
    -addext "subjectAltName=$san" -addext "extendedKeyUsage=serverAuth" \
    -keyout "$work/$kind.key" -out "$work/$kind.crt" 2>"$work/openssl.err" \
    || { cat "$work/openssl.err" >&2; die "openssl could not make the $kind certificate"; }
  if [[ $i == 0 ]]; then hosts_line=""; else hosts_line="  hosts: [$host]"; fi
  cat > "$work/manifests/$kind.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata: {name: testssl-$kind, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 < "$work/$kind.crt")
  tls.key: $(base64 -w0 < "$work/$kind.key")
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: testssl-$kind, namespace: default}
spec:
$hosts_line
  tls: {secretName: testssl-$kind}
  rules:
    - name: all
      matches:
        - path: {type: Prefix, value: /}
      backends:
        - upstream: testssl
EOF
done

# --- upstream and gatehouse
python3 "$here/upstream.py" 127.0.0.1 "$p_up" > "$out/testssl-upstream.log" 2>&1 & pids+=($!)
"$bin" run -f "$work/manifests" --http "127.0.0.1:$p_http" --https "127.0.0.1:$p_https" \
  --admin "127.0.0.1:$p_admin" --drain-timeout 1s > "$out/testssl-gatehouse.log" 2>&1 & gh=$!; pids+=($gh)

ready=0
for _ in $(seq 300); do
  kill -0 "$gh" 2>/dev/null || { tail -20 "$out/testssl-gatehouse.log" >&2; die "gatehouse exited at start"; }
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
       "http://127.0.0.1:$p_admin/readyz" 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
[[ $ready == 1 ]] || { tail -20 "$out/testssl-gatehouse.log" >&2; die "gatehouse not ready after 30 s"; }

# Each name must get its own certificate over TLS (ALPN h2) and reach the upstream, or
# testssl would scan a refused handshake, the wrong certificate or an error page.
probe_err="$(python3 - "$p_https" "$work" "${certs[@]}" -- "${hosts[@]}" <<'PY' 2>&1
import socket, ssl, sys, time
port, work = int(sys.argv[1]), sys.argv[2]
rest = sys.argv[3:]
kinds, hosts = rest[:rest.index("--")], rest[rest.index("--") + 1:]

def probe(host, want_der):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])  # the probe speaks HTTP/1.1; h2 is h2spec's job
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            if s.getpeercert(binary_form=True) != want_der:
                return f"{host}: served another certificate"
            s.sendall(f"GET /probe HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            return None if status.startswith("HTTP/1.1 200") else f"{host}: GET /probe answered '{status}'"

problems = []
for kind, host in zip(kinds, hosts):
    der = ssl.PEM_cert_to_DER_cert(open(f"{work}/{kind}.crt").read())
    err = "not tried"
    for _ in range(50):
        try:
            err = probe(host, der)
        except OSError as e:
            err = f"{host}: {e}"
        if err is None:
            break
        time.sleep(0.1)
    if err:
        problems.append(err)
print("; ".join(problems))
sys.exit(1 if problems else 0)
PY
)" || die "HTTPS probe failed: $probe_err"

# --- testssl, once per certificate, then the verdict from its JSON
checks=(${TESTSSL_CHECKS:-})
status=0; inconclusive=0; passed=0; failed=0
for i in "${!certs[@]}"; do
  kind="${certs[$i]}"; host="${hosts[$i]}"
  json="$out/testssl-$kind.json"; log="$out/testssl-$kind.log"
  rm -f "$json"
  start=$EPOCHREALTIME
  rc=0
  timeout --kill-after=10 "$scan_timeout" "$testssl" --quiet --color 0 --warnings batch \
    --ip 127.0.0.1 --nodns none --connect-timeout 5 --openssl-timeout 10 \
    --jsonfile "$json" "${checks[@]}" "https://$host:$p_https" < /dev/null > "$log" 2>&1 || rc=$?
  took="$(awk "BEGIN {printf \"%.0f\", $EPOCHREALTIME - $start}")"
  say "$kind ($host): testssl ran in $took s, exit $rc (output: $log)"
  # testssl's exit is the sum of its checks' problems; 242 and above are its fatal errors.
  if [[ $rc == 124 || $rc == 137 ]]; then die "testssl ($kind) did not finish in $scan_timeout s; see $log"; fi
  if (( rc >= 242 )) || [[ ! -s "$json" ]]; then tail -20 "$log" >&2; die "testssl ($kind) could not run (exit $rc); see $log"; fi
  verdict=0
  python3 - "$json" "$kind" "$host" <<'PY' || verdict=$?
import json, re, sys

path, kind, host = sys.argv[1:]
try:
    findings = json.load(open(path))
    if isinstance(findings, dict):  # --jsonfile-pretty, should someone pass it
        findings = [f for s in findings.get("scanResult", []) for v in s.values()
                    if isinstance(v, list) for f in v]
except (OSError, ValueError) as e:
    print(f"  {kind}: unreadable JSON {path}: {e}")
    sys.exit(2)

SEVERE = {"MEDIUM", "HIGH", "CRITICAL"}
RANK = {"OK": 0, "INFO": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
OLD_PROTOCOLS = ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]
WEAK_CATEGORIES = ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                   "cipherlist_3DES_IDEA", "cipherlist_AVERAGE", "cipherlist_OBSOLETED"]
VULNS = {"heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
         "CRIME_TLS", "BREACH", "POODLE_SSL", "POODLE_TLS", "fallback_SCSV", "SWEET32", "FREAK",
         "DROWN", "LOGJAM", "LOGJAM-common_primes", "BEAST", "LUCKY13", "RC4", "winshock",
         "opossum"}
IGNORED = {
    # the self-signed test certificate (every other cert_*/certs_* id too)
    "cert_chain_of_trust", "cert_trust", "cert_commonName", "cert_commonName_wo_SNI",
    "cert_subjectAltName", "cert_caIssuers", "cert_keyUsage", "cert_extKeyUsage",
    "cert_certificatePolicies_EV", "cert_eTLS", "cert_signatureAlgorithm", "cert_keySize",
    "cert_serialNumber", "cert_serialNumberLen", "cert_fingerprintSHA1",
    "cert_fingerprintSHA256", "cert", "cert_numbers", "certs_countServer",
    "certs_list_ordering_problem", "cert_expirationStatus", "cert_notBefore", "cert_notAfter",
    "cert_validityPeriod", "cert_revocation", "cert_crlDistributionPoints", "cert_ocspURL",
    "OCSP_stapling", "cert_mustStapleExtension", "certificate_transparency", "DNS_CAArecord",
    # the test upstream's HTTP answer
    "HSTS", "HPKP", "security_headers", "banner_server", "banner_application",
    "banner_reverseproxy", "cookie_count", "cookie_secure", "cookie_httponly",
    "HTTP_status_code", "HTTP_clock_skew",
    # resumption (performance; TLS 1.3 tickets untestable with testssl 3.0 + OpenSSL 3)
    "sessionresumption_ticket", "sessionresumption_ID", "TLS_session_ticket",
    "SSL_sessionID_support",
    # informational
    "DROWN_hint", "TLS_extensions", "TLS_timestamp", "pre_128cipher", "service", "scanTime",
}
IGNORED_PREFIXES = ("cert_", "certs_", "clientsimulation-", "cipher_order_")
# A suite passes when it is TLS 1.3's, or TLS 1.2 ECDHE/DHE (forward secrecy) with an AEAD.
GOOD_SUITE = re.compile(
    r"^TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256|AES_128_CCM_SHA256"
    r"|(EC)?DHE_(RSA|ECDSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256"
    r"|AES_(128|256)_CCM))$")
CIPHER_ID = re.compile(r"^cipher(-[a-z0-9_.]+)?_x[0-9a-f]+$", re.I)

def ignored(fid):
    return fid in IGNORED or fid.startswith(IGNORED_PREFIXES)

def not_offered(finding):
    return finding.strip().lower().startswith("not offered")

weak, notes, unsure, offered_suites, bad_suites = [], [], [], [], []
by_id = {}
for f in findings:
    fid, sev, finding = f.get("id", ""), f.get("severity", ""), f.get("finding", "")
    by_id.setdefault(fid, []).append(f)
    line = f"{fid} [{sev}] {finding}"
    if fid == "scanProblem" and sev == "FATAL":
        unsure.append(line)
    elif CIPHER_ID.match(fid):
        # "xc030   ECDHE-RSA-AES256-GCM-SHA384   ECDH 253   AESGCM   256   TLS_ECDHE_RSA_WITH_..."
        iana = finding.split()[-1] if finding.split() else ""
        offered_suites.append(iana)
        if not GOOD_SUITE.match(iana):
            bad_suites.append(iana)
            weak.append(f"{fid}: weak cipher suite offered: {finding}")
    elif fid in OLD_PROTOCOLS:
        if sev == "WARN":
            unsure.append(line)
        elif not not_offered(finding):
            weak.append(f"{fid}: obsolete protocol: {finding} [{sev}]")
    elif fid in WEAK_CATEGORIES:
        if sev == "WARN":
            unsure.append(line)
        elif not not_offered(finding):
            weak.append(f"{fid}: weak cipher category: {finding} [{sev}]")
    elif fid in VULNS or fid.startswith("BEAST_CBC"):
        if sev == "WARN":
            unsure.append(line)
        elif sev in SEVERE or re.search(r"VULNERABLE|potentially vulnerable", finding):
            weak.append(f"{fid}: vulnerability: {finding} [{sev}]")
    elif fid == "cipher_order":
        pass  # judged below, once the suites are known
    elif ignored(fid):
        if sev == "WARN" or RANK.get(sev, 0) >= 1:
            notes.append(f"ignored {line}")
    elif sev == "WARN":
        unsure.append(line)
    elif sev in SEVERE:
        weak.append(f"{fid}: {finding} [{sev}]")

for f in by_id.get("cipher_order", []):
    sev, finding = f.get("severity", ""), f.get("finding", "")
    if sev not in SEVERE:
        continue
    if offered_suites and not bad_suites:
        notes.append(f"cipher_order [{sev}] {finding}: not a weakness, every suite offered is AEAD with forward secrecy")
    elif not offered_suites:
        weak.append(f"cipher_order: {finding} [{sev}], and the scan listed no ciphers (run the default scan, -e or -E) to show that the client's pick is always strong")
    else:
        weak.append(f"cipher_order: {finding} [{sev}], with weak suites offered")

# The scan must at least have tested the protocols, else there is nothing to judge.
missing = [p for p in OLD_PROTOCOLS + ["TLS1_2", "TLS1_3"] if p not in by_id]
if missing:
    unsure.append(f"no finding for {', '.join(missing)}: protocols not tested (TESTSSL_CHECKS without -p?)")

def first(fid):
    return by_id[fid][0].get("finding", "?") if fid in by_id else "not tested"

offered = [p for p in ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]
           if p in by_id and not not_offered(first(p))]
vulns_tested = sorted(v for v in by_id if v in VULNS or v.startswith("BEAST_CBC"))
print(f"  {kind} ({host}): protocols offered: {', '.join(offered) or 'none'}; "
      f"ALPN: {first('ALPN_HTTP2')} + {first('ALPN')}")
print(f"  {kind}: {len(offered_suites)} suite(s) offered: {' '.join(offered_suites) or '(not listed)'}")
print(f"  {kind}: forward secrecy: {first('PFS')}; curves: {first('PFS_ECDHE_curves')}")
print(f"  {kind}: {len(vulns_tested)} vulnerability check(s) run")
for w in weak:
    print(f"  WEAK  {kind}: {w}")
for u in unsure:
    print(f"  UNSURE {kind}: {u}")
for n in notes:
    print(f"  note  {kind}: {n}")
verdict = "weakness found" if weak else ("inconclusive" if unsure else "clean")
print(f"  {kind}: {verdict}: {len(weak)} weakness(es), {len(unsure)} inconclusive, {len(notes)} note(s)")
sys.exit(1 if weak else (2 if unsure else 0))
PY
  case $verdict in
    0) passed=$((passed + 1)) ;;
    1) failed=$((failed + 1)); status=1 ;;
    *) inconclusive=1 ;;
  esac
done

kill -0 "$gh" 2>/dev/null || { say "gatehouse died during the run; see $out/testssl-gatehouse.log"; status=1; failed=$((failed + 1)); }
(( status == 0 && inconclusive == 1 )) && status=2
echo "testssl: ${#certs[@]} certificate(s) scanned; $passed clean, $failed with weaknesses$([[ $inconclusive == 1 ]] && echo ', some inconclusive' || true)"
echo "testssl: $passed passed, $failed failed"
exit $status
