#!/usr/bin/env python3
"""make bench: Gatehouse, nginx and HAProxy in front of the same upstream, same load.

Every contender runs one worker, keeps upstream connections alive, and is loaded by the
same wrk command; rounds are interleaved (A B C D, A B C D, ...) and medians reported,
because on a shared 2-core machine only ratios measured in the same run mean anything.
CPU time per request is the proxy processes' utime+stime over the run divided by the
requests served (steadier than requests/s). Direct = wrk straight to the upstream.

Four more Gatehouse rows, same process: "policies" (a local rate limit that never
refuses plus a cache that misses and stores on every request, metrics on as always),
"cache-hit" (every request answered from the cache) and "auth" (JWT authentication,
ES256 with keys from a Secret, every request carrying the same valid token). Their
ratios to the plain Gatehouse route are printed last, with their targets: policies cost
at most 10% more CPU per request; a hit is served at least 1.5x faster; auth costs at
most 15% more CPU per request. "aggregate" answers each request with two calls to the
upstream (a small JSON document each, /json/ on the bench upstream) merged Keyed: its
ratio is for information (it does two upstream exchanges and builds JSON). The Gatehouse
processes run with --access-log off, as nginx and HAProxy run without theirs;
"access-log" is the plain route in one more Gatehouse process that logs every request
(the default), and "tracing" the plain route in another that records traces and keeps
1% of them (--otlp-sample-ratio 0.01), exported to a receiver in a process of its own
(otlp-sink, which decodes each export); their CPU per request is compared with the
plain route's (target: within 5% each).

TLS rows: Gatehouse's --https listener and nginx's `listen ssl`, the same ECDSA P-256
certificate (made with openssl for the run), the same upstream over plaintext. "https"
keeps connections alive (the cost of TLS records); "handshake" sends `Connection: close`
so every request is a new connection and a full handshake. Their ratios are to nginx
on the same row (target for "https": CPU per request <= nginx's).

WAF rows: one realistic API GET (a query string, a browser's User-Agent, Accept, Referer
and Cookie, a named Host) sent to four routes that differ only in their first path
segment. "waf-off" is the plain Gatehouse route; "waf-native" adds the built-in WAF
(all six rule families on path, query and headers; target: CPU per request at most 10%
more than waf-off); "waf-crs" runs the OWASP Core Rule Set at paranoia level 1 through
libmodsecurity instead, in a Gatehouse process of its own (the rule set's memory stays
out of the other rows' RSS); "nginx-crs" is a second nginx (one worker, its own port, so its
CPU is counted apart) with the ModSecurity module in front of the same upstream, loading
the configuration Gatehouse builds for that policy (the CRS's REQUEST-* rules, response
bodies not inspected, an API's methods and media types allowed; `modsecurity_conf` must
stay equal to it), written to modsec.conf for the run (target for waf-crs: CPU per
request <= nginx-crs's). The request trips no rule: every WAF row must answer 200, which
is checked before the load starts. Needs libmodsecurity3, modsecurity-crs and
libnginx-mod-http-modsecurity. GATEHOUSE_BIN picks the binary (default
target/release/gatehouse). Native rules remember, per worker, the values they found
clean, and this request repeats; "waf-varied" sends the waf-native request with a new
search term each time (a wrk script), the cost of testing a value never seen (for
information, no target).
"""
import os, re, shutil, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM, GATEHOUSE, NGINX, HAPROXY = 18081, 18090, 18091, 18092
GATEHOUSE_TLS, NGINX_TLS = 18094, 18093
NGINX_CRS, GATEHOUSE_CRS = 18095, 18096
GATEHOUSE_LOGGED = 18097
GATEHOUSE_TRACED, OTLP_SINK = 18101, 18102
GATEHOUSE_BIN = os.environ.get("GATEHOUSE_BIN", f"{ROOT}/target/release/gatehouse")
OTLP_SINK_BIN = os.environ.get("OTLP_SINK_BIN", f"{ROOT}/target/release/otlp-sink")
CRS_RULES = "/usr/share/modsecurity-crs/rules"
MODSECURITY_MODULE = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"
# The WAF rows' request: each row puts its own prefix (/api, /waf, /crs) before WAF_PATH.
# A named Host: a numeric one (wrk's default, 127.0.0.1:port) is itself a CRS finding
# at paranoia level 1 (920350), below the threshold but logged.
WAF_PATH = "/v1/products?q=blue+shirt&page=2&sort=price"
WAF_HEADERS = (
    "Host: shop.example.com",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Accept: application/json",
    "Referer: https://shop.example.com/search?q=shirt",
    "Cookie: session=3f2a9c1e; theme=dark",
)
DURATION = os.environ.get("BENCH_DURATION", "8s")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNS = os.environ.get("BENCH_CONNECTIONS", "32")
TICK = os.sysconf("SC_CLK_TCK")

def need(tool):
    if shutil.which(tool) is None:
        sys.exit(f"bench: {tool} is missing (make bench installs nginx-light, haproxy, wrk with apt-get)")

def need_file(path, package):
    if not os.path.exists(path):
        sys.exit(f"bench: {path} is missing (make bench installs {package} with apt-get)")

def modsecurity_conf():
    """The ModSecurity configuration Gatehouse builds for `coreRuleSet: {enabled: true,
    paranoiaLevel: 1}` (anomaly threshold 5, 65536 bytes inspected): see `configuration`
    in crates/proxy/src/policy/waf/crs.rs. Only the request rules; no response bodies.
    No SecRequestBodyInMemoryLimit: ModSecurity 3 refuses it ("no longer supported")."""
    text = "\n".join([
        "SecRuleEngine On",
        "SecRequestBodyAccess On",
        "SecRequestBodyLimit 65536",
        "SecRequestBodyLimitAction ProcessPartial",
        "SecResponseBodyAccess Off",
        "SecAuditEngine Off",
        'SecDefaultAction "phase:1,log,auditlog,pass"',
        'SecDefaultAction "phase:2,log,auditlog,pass"',
        'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1"',
        'SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=5,setvar:tx.outbound_anomaly_score_threshold=4"',
        'SecAction "id:900990,phase:1,nolog,pass,t:none,setvar:tx.crs_setup_version=334"',
        'SecAction "id:900200,phase:1,nolog,pass,t:none,setvar:\'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE\'"',
        'SecAction "id:900220,phase:1,nolog,pass,t:none,setvar:\'tx.allowed_request_content_type=|application/x-www-form-urlencoded| |multipart/form-data| |multipart/related| |text/xml| |application/xml| |application/soap+xml| |application/json| |application/cloudevents+json| |application/cloudevents-batch+json| |application/merge-patch+json| |application/json-patch+json| |application/problem+json| |application/ld+json| |application/vnd.api+json| |application/graphql| |application/x-ndjson| |application/hal+json| |application/grpc| |application/grpc+proto| |application/grpc-web| |application/grpc-web+proto| |application/x-protobuf| |application/protobuf| |application/cbor| |application/octet-stream| |text/plain| |text/csv|\'"',
        r'SecRule REQUEST_HEADERS:Content-Type "@rx (?i)^application/(?:[a-z0-9.+-]+\+)?json" "id:9500000,phase:1,t:none,pass,nolog,ctl:requestBodyProcessor=JSON"',
    ]) + "\n"
    for name in sorted(os.listdir(CRS_RULES)):
        if name.startswith("REQUEST-") and name.endswith(".conf"):
            text += f'Include "{CRS_RULES}/{name}"\n'
    return text

def answers(port, path, headers):
    """The status of one request, or the error that kept it from getting one."""
    import http.client
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path, headers=dict(h.split(": ", 1) for h in headers))
        status = c.getresponse().status
        c.close()
        return status
    except OSError as e:
        return e

def exported_spans(admin_port):
    """gatehouse_trace_spans_total{result="exported"} on an admin listener."""
    import http.client
    try:
        c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except OSError as e:
        return f"? ({e})"
    m = re.search(r'^gatehouse_trace_spans_total\{result="exported"\} (\d+)', text, re.M)
    return m.group(1) if m else "?"

def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total

def peak_rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total

def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]

def wait_port(port, timeout=10, proc=None):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"bench: {' '.join(proc.args)} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: nothing listens on {port}")

def wrk(port, path="/api/bench", headers=(), scheme="http", script=None):
    args = ["wrk", "-t1", f"-c{CONNS}", f"-d{DURATION}", "--latency"]
    for h in headers:
        args += ["-H", h]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [f"{scheme}://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {}
    for pct in ("50%", "99%"):
        m = re.search(rf"\s{re.escape(pct)}\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        lat[pct] = v / 1000 if unit == "us" else v if unit == "ms" else v * 1000
    return rps, total, lat, int(errors.group(1)) if errors else 0

def main():
    for t in ("wrk", "nginx", "haproxy"):
        need(t)
    if not os.access(GATEHOUSE_BIN, os.X_OK):
        sys.exit(f"bench: {GATEHOUSE_BIN} is missing (make bench builds it; GATEHOUSE_BIN picks another)")
    if not os.access(OTLP_SINK_BIN, os.X_OK):
        sys.exit(f"bench: {OTLP_SINK_BIN} is missing (make bench builds it; OTLP_SINK_BIN picks another)")
    need_file(CRS_RULES, "modsecurity-crs")
    need_file(MODSECURITY_MODULE, "libnginx-mod-http-modsecurity")
    work = tempfile.mkdtemp(prefix="gatehouse-bench-")
    procs = []
    def start(args, **kw):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p
    try:
        with open(f"{work}/upstream.conf", "w") as f:
            f.write(f"""daemon off; worker_processes 1; pid {work}/upstream.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{UPSTREAM}; location / {{ return 200 "ok\\n"; }}
    location /json/ {{ default_type application/json; return 200 '{{"ok":true,"n":1}}'; }} }} }}
""")
        with open(f"{work}/nginx.conf", "w") as f:
            f.write(f"""daemon off; worker_processes 1; pid {work}/nginx.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream origin {{ server 127.0.0.1:{UPSTREAM}; keepalive 64; keepalive_requests 1000000; }}
  server {{ listen 127.0.0.1:{NGINX};
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Request-Id $request_id; }} }}
  server {{ listen 127.0.0.1:{NGINX_TLS} ssl; ssl_certificate {work}/tls.crt; ssl_certificate_key {work}/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:1m;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Request-Id $request_id; }} }} }}
""")
        # nginx-crs: the same proxying as nginx.conf, behind ModSecurity with Gatehouse's
        # configuration, in its own process. error_log to /dev/null: ModSecurity logs
        # each rule match there.
        with open(f"{work}/modsec.conf", "w") as f:
            f.write(modsecurity_conf())
        with open(f"{work}/nginx-crs.conf", "w") as f:
            f.write(f"""load_module {MODSECURITY_MODULE};
daemon off; worker_processes 1; pid {work}/nginx-crs.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream origin {{ server 127.0.0.1:{UPSTREAM}; keepalive 64; keepalive_requests 1000000; }}
  server {{ listen 127.0.0.1:{NGINX_CRS};
    modsecurity on; modsecurity_rules_file {work}/modsec.conf;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Request-Id $request_id; }} }} }}
""")
        with open(f"{work}/haproxy.cfg", "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:{HAPROXY}
  default_backend be
backend be
  server origin 127.0.0.1:{UPSTREAM}
""")
        # One certificate for both TLS listeners, and the route Gatehouse serves it on.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", f"{work}/tls.key", "-out", f"{work}/tls.crt"],
                       check=True, capture_output=True)
        os.mkdir(f"{work}/manifests")
        shutil.copy(f"{ROOT}/bench/gateway.yaml", f"{work}/manifests/gateway.yaml")
        indent = lambda path: open(path).read().strip().replace("\n", "\n    ")
        with open(f"{work}/manifests/tls.yaml", "w") as f:
            f.write(f"""apiVersion: v1
kind: Secret
metadata: {{name: bench-tls}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
    {indent(f"{work}/tls.crt")}
  tls.key: |
    {indent(f"{work}/tls.key")}
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: bench-tls}}
spec:
  tls: {{secretName: bench-tls}}
  rules:
    - name: tls
      matches: [{{path: {{type: Prefix, value: /tls}}}}]
      backends: [{{upstream: origin}}]
""")
        start(["nginx", "-c", f"{work}/upstream.conf", "-p", work])
        wait_port(UPSTREAM)
        # The CRS row runs in a Gatehouse process of its own, as nginx-crs does: the rule
        # set it loads (tens of MiB) stays out of the other rows' RSS.
        os.mkdir(f"{work}/crs")
        with open(f"{work}/crs/gateway.yaml", "w") as f:
            f.write(f"""apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: origin}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {UPSTREAM}}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: bench-crs}}
spec:
  rules:
    - name: crs
      matches: [{{path: {{type: Prefix, value: /crs}}}}]
      backends: [{{upstream: origin}}]
      policies:
        waf: {{rules: [], coreRuleSet: {{enabled: true, paranoiaLevel: 1}}}}
""")
        gc = start([GATEHOUSE_BIN, "run", "-f", f"{work}/crs", "--http", f"127.0.0.1:{GATEHOUSE_CRS}",
                    "--admin", "127.0.0.1:18098", "--workers", "1", "--access-log", "off"])
        # The access-log row: the plain route in a process of its own that logs every
        # request (to stdout, which is /dev/null here: the cost of making the lines).
        gl = start([GATEHOUSE_BIN, "run", "-f", f"{work}/manifests", "--http", f"127.0.0.1:{GATEHOUSE_LOGGED}",
                    "--admin", "127.0.0.1:18100", "--workers", "1"])
        # The tracing row: the plain route in a process that records traces, keeping 1%.
        sink = start([OTLP_SINK_BIN, "--listen", str(OTLP_SINK)])
        gt = start([GATEHOUSE_BIN, "run", "-f", f"{work}/manifests", "--http", f"127.0.0.1:{GATEHOUSE_TRACED}",
                    "--admin", "127.0.0.1:18103", "--workers", "1", "--access-log", "off",
                    "--otlp-endpoint", f"http://127.0.0.1:{OTLP_SINK}", "--otlp-sample-ratio", "0.01"])
        gh = start([GATEHOUSE_BIN, "run", "-f", f"{work}/manifests",
                    "--http", f"127.0.0.1:{GATEHOUSE}", "--https", f"127.0.0.1:{GATEHOUSE_TLS}",
                    "--admin", "127.0.0.1:18099", "--workers", "1", "--access-log", "off"])
        ng = start(["nginx", "-c", f"{work}/nginx.conf", "-p", work])
        nc = start(["nginx", "-c", f"{work}/nginx-crs.conf", "-p", work])
        ha = start(["haproxy", "-f", f"{work}/haproxy.cfg"])
        # Gatehouse loads the CRS before it listens: a longer wait.
        for port, proc, timeout in ((GATEHOUSE, gh, 60), (GATEHOUSE_TLS, gh, 60), (GATEHOUSE_CRS, gc, 60),
                                    (GATEHOUSE_LOGGED, gl, 60), (GATEHOUSE_TRACED, gt, 60),
                                    (OTLP_SINK, sink, 10), (NGINX, ng, 10),
                                    (NGINX_TLS, ng, 10), (NGINX_CRS, nc, 10), (HAPROXY, ha, 10)):
            wait_port(port, timeout, proc)
        plain = ("/api/bench", ())
        with open(f"{ROOT}/bench/auth/token.txt") as f:
            token = f.read().strip()
        targets = {
            "direct": (UPSTREAM, lambda: [], plain),
            "gatehouse": (GATEHOUSE, lambda: [gh.pid], plain),
            "nginx": (NGINX, lambda: [ng.pid] + children(ng.pid), plain),
            "haproxy": (HAPROXY, lambda: [ha.pid] + children(ha.pid), plain),
            "policies": (GATEHOUSE, lambda: [gh.pid], ("/policies/bench", ("Cache-Control: no-cache",))),
            "cache-hit": (GATEHOUSE, lambda: [gh.pid], ("/cached/bench", ())),
            "auth": (GATEHOUSE, lambda: [gh.pid], ("/auth/bench", (f"Authorization: Bearer {token}",))),
            "aggregate": (GATEHOUSE, lambda: [gh.pid], ("/aggregate/bench", ())),
            "access-log": (GATEHOUSE_LOGGED, lambda: [gl.pid], plain),
            "tracing": (GATEHOUSE_TRACED, lambda: [gt.pid], plain),
            "https": (GATEHOUSE_TLS, lambda: [gh.pid], ("/tls/bench", ()), "https"),
            "nginx-tls": (NGINX_TLS, lambda: [ng.pid] + children(ng.pid), ("/tls/bench", ()), "https"),
            "handshake": (GATEHOUSE_TLS, lambda: [gh.pid], ("/tls/bench", ("Connection: close",)), "https"),
            "nginx-hs": (NGINX_TLS, lambda: [ng.pid] + children(ng.pid), ("/tls/bench", ("Connection: close",)), "https"),
            "waf-off": (GATEHOUSE, lambda: [gh.pid], ("/api" + WAF_PATH, WAF_HEADERS)),
            "waf-native": (GATEHOUSE, lambda: [gh.pid], ("/waf" + WAF_PATH, WAF_HEADERS)),
            "waf-crs": (GATEHOUSE_CRS, lambda: [gc.pid], ("/crs" + WAF_PATH, WAF_HEADERS)),
            "nginx-crs": (NGINX_CRS, lambda: [nc.pid] + children(nc.pid), ("/crs" + WAF_PATH, WAF_HEADERS)),
            "waf-varied": (GATEHOUSE, lambda: [gh.pid], ("/waf" + WAF_PATH, WAF_HEADERS), "http", f"{work}/varied.lua"),
        }
        # waf-varied: the waf-native request with a search term never sent before on every
        # request, so the value cache never answers for it (the headers still repeat).
        with open(f"{work}/varied.lua", "w") as f:
            f.write('n = 0\nrequest = function()\n  n = n + 1\n'
                    '  return wrk.format(nil, "/waf/v1/products?q=blue+shirt+" .. n .. "&page=2&sort=price")\nend\n')
        # The aggregate row must measure merged answers, not 502s.
        port, _, (path, headers) = targets["aggregate"]
        if answers(port, path, headers) != 200:
            sys.exit(f"bench: aggregate answers {answers(port, path, headers)} to GET {path}, not 200")
        # A WAF row that refuses the request would measure 403s: the request must pass them all.
        for name in ("waf-off", "waf-native", "waf-crs", "nginx-crs"):
            port, _, (path, headers) = targets[name]
            status = answers(port, path, headers)
            if status != 200:
                sys.exit(f"bench: {name} answers {status} to GET {path}, not 200; "
                         "the WAF rows' request must pass every WAF")
        results = {name: [] for name in targets}
        for rnd in range(ROUNDS):
            for name, (port, pids, (path, headers), *scheme) in targets.items():
                before = cpu_ticks(pids())
                rps, total, lat, errors = wrk(port, path, headers, *scheme)
                used = cpu_ticks(pids()) - before
                cpu_us = used * 1e6 / TICK / total if total and pids() else 0.0
                results[name].append((rps, cpu_us, lat["50%"], lat["99%"], errors))
                print(f"round {rnd + 1} {name:10} {rps:10.0f} req/s  {cpu_us:6.1f} CPU-µs/req  p99 {lat['99%']:.2f} ms  errors {errors}", flush=True)
        rss = {name: peak_rss_kb(pids()) for name, (_, pids, *_) in targets.items()}
        med = {n: [statistics.median(x[i] for x in r) for i in range(4)] + [sum(x[4] for x in r)]
               for n, r in results.items()}
        base = med["nginx"]
        print()
        print(f"{'':10} {'req/s':>10} {'CPU-µs/req':>11} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS':>9} {'req/s ÷ nginx':>14} {'CPU ÷ nginx':>12} {'p99 ÷ nginx':>12}")
        for n, (rps, cpu, p50, p99, errs) in med.items():
            cpu_ratio = f"{cpu / base[1]:.2f}" if cpu and base[1] else "-"
            rss_txt = f"{rss[n] // 1024} MiB" if rss[n] else "-"
            print(f"{n:10} {rps:10.0f} {cpu:11.1f} {p50:8.2f} {p99:8.2f} {rss_txt:>9} {rps / base[0]:14.2f} {cpu_ratio:>12} {p99 / base[3]:12.2f}"
                  + (f"  ({errs} non-2xx)" if errs else ""))
        g, pol, hit, auth = med["gatehouse"], med["policies"], med["cache-hit"], med["auth"]
        print()
        print("Gatehouse policies, relative to its plain route (same process, same run):")
        if g[1] and pol[1] and hit[1]:
            print(f"  policies  CPU-µs/req x{pol[1] / g[1]:.2f} (target <= 1.10)   req/s x{pol[0] / g[0]:.2f}")
            print(f"  cache-hit req/s x{hit[0] / g[0]:.2f} (target >= 1.50)   CPU-µs/req x{hit[1] / g[1]:.2f}   p99 x{hit[3] / g[3]:.2f}")
        if g[1] and auth[1]:
            print(f"  auth      CPU-µs/req x{auth[1] / g[1]:.2f} (target <= 1.15)   req/s x{auth[0] / g[0]:.2f}")
        logged, traced = med["access-log"], med["tracing"]
        if g[1] and logged[1]:
            print(f"  access-log CPU-µs/req x{logged[1] / g[1]:.2f} (target <= 1.05: every request logged, in a process of its own)"
                  f"   req/s x{logged[0] / g[0]:.2f}   p99 x{logged[3] / g[3]:.2f}")
        if g[1] and traced[1]:
            print(f"  tracing   CPU-µs/req x{traced[1] / g[1]:.2f} (target <= 1.05: every request traced, 1% kept and exported)"
                  f"   req/s x{traced[0] / g[0]:.2f}   p99 x{traced[3] / g[3]:.2f}"
                  f"   spans exported {exported_spans(18103)}")
        agg = med["aggregate"]
        if g[1] and agg[1]:
            print(f"  aggregate CPU-µs/req x{agg[1] / g[1]:.2f} (information: two upstream calls merged, against one exchange)"
                  f"   req/s x{agg[0] / g[0]:.2f}   p99 x{agg[3] / g[3]:.2f}")
        print()
        print("TLS, Gatehouse relative to nginx on the same row (same certificate, same run):")
        for ours, theirs, target in (("https", "nginx-tls", " (target <= 1.00)"), ("handshake", "nginx-hs", "")):
            o, t = med[ours], med[theirs]
            if o[1] and t[1]:
                print(f"  {ours:9} CPU-µs/req x{o[1] / t[1]:.2f}{target}   req/s x{o[0] / t[0]:.2f}   p99 x{o[3] / t[3]:.2f}"
                      f"   (vs its plain route: CPU x{o[1] / g[1]:.2f})")
        print()
        print("WAF, the same request on every row (same run):")
        off, native, crs, ngx = med["waf-off"], med["waf-native"], med["waf-crs"], med["nginx-crs"]
        if off[1] and native[1]:
            print(f"  waf-native CPU-µs/req x{native[1] / off[1]:.2f} vs waf-off (target <= 1.10)"
                  f"   req/s x{native[0] / off[0]:.2f}   p99 x{native[3] / off[3]:.2f}")
        varied = med["waf-varied"]
        if off[1] and varied[1]:
            print(f"  waf-varied CPU-µs/req x{varied[1] / off[1]:.2f} vs waf-off (information: a new search term on every request)"
                  f"   req/s x{varied[0] / off[0]:.2f}   p99 x{varied[3] / off[3]:.2f}")
        if crs[1] and ngx[1]:
            print(f"  waf-crs    CPU-µs/req x{crs[1] / ngx[1]:.2f} vs nginx-crs (target <= 1.00)"
                  f"   req/s x{crs[0] / ngx[0]:.2f}   p99 x{crs[3] / ngx[3]:.2f}")
        if crs[1] and off[1]:
            print(f"  waf-crs    CPU-µs/req x{crs[1] / off[1]:.2f} vs waf-off (information)"
                  f"   req/s x{crs[0] / off[0]:.2f}   p99 x{crs[3] / off[3]:.2f}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
