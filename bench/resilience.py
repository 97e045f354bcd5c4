#!/usr/bin/env python3
"""make bench-resilience: what the balancers and retries do for clients when upstreams
misbehave, measured with wrk through a release gatehouse.

Latency skew: three endpoints with the same capacity (4 requests worked on at once,
the rest wait their turn, like a server with 4 workers); one takes 10x longer per
request (20 ms against 2 ms). The same three endpoints sit behind three Upstreams that
differ only in `loadBalancer.policy`: RoundRobin, LeastRequest and PeakEwma. wrk (one
thread, 32 connections) loads each in interleaved rounds; the medians of p50, p99 and
requests/s are reported, and p99 of LeastRequest and PeakEwma as a ratio to
RoundRobin's (both must be below 1).

Failure rate: one endpoint answers 503 to 20% of its requests, at random. Two Upstreams
over it: "retried" (attempts 2, the default classes, which include 503, a budget of
30% of active requests plus 10/s) and "once" (no retries). For each, wrk's non-2xx
answers over its requests is the client-visible error rate, and the endpoint's own
request count (its `GET /__stats`) over the client requests, minus one, is the
upstream load increase. Targets: error rate under 1% with retries; load increase
within the budget.

The upstreams are `faulty-upstream` (crates/testkit), in a process of their own.
GATEHOUSE_BIN and FAULTY_BIN pick the binaries (default target/release/...).
"""
import json, os, re, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEHOUSE_BIN = os.environ.get("GATEHOUSE_BIN", f"{ROOT}/target/release/gatehouse")
FAULTY_BIN = os.environ.get("FAULTY_BIN", f"{ROOT}/target/release/faulty-upstream")
GATEHOUSE, ADMIN = 18190, 18191
FAST, FAST2, SLOW, FLAKY = 18201, 18202, 18203, 18204
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "8s")
CONNS = 32
BUDGET_PERCENT = 30

MANIFESTS = f"""
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: rr}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {FAST}}}, {{host: 127.0.0.1, port: {FAST2}}}, {{host: 127.0.0.1, port: {SLOW}}}]
  loadBalancer: {{policy: RoundRobin}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: lr}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {FAST}}}, {{host: 127.0.0.1, port: {FAST2}}}, {{host: 127.0.0.1, port: {SLOW}}}]
  loadBalancer: {{policy: LeastRequest}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: ewma}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {FAST}}}, {{host: 127.0.0.1, port: {FAST2}}}, {{host: 127.0.0.1, port: {SLOW}}}]
  loadBalancer: {{policy: PeakEwma}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: retried}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {FLAKY}}}]
  retries: {{attempts: 2, backoff: {{base: 1ms, max: 5ms}}, budget: {{percent: {BUDGET_PERCENT}, minPerSecond: 10}}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {{name: once}}
spec:
  endpoints: [{{host: 127.0.0.1, port: {FLAKY}}}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: bench}}
spec:
  rules:
""" + "".join(f"""    - name: {n}
      matches: [{{path: {{type: Prefix, value: /{n}}}}}]
      backends: [{{upstream: {n}}}]
""" for n in ("rr", "lr", "ewma", "retried", "once"))


def wait_port(port, proc, timeout=15):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench-resilience: {' '.join(proc.args)} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench-resilience: nothing listens on {port}")


def wrk(path):
    out = subprocess.run(["wrk", "-t1", f"-c{CONNS}", f"-d{DURATION}", "--latency",
                          f"http://127.0.0.1:{GATEHOUSE}{path}"], capture_output=True, text=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    lat = {}
    for pct in ("50%", "99%"):
        m = re.search(rf"\s{re.escape(pct)}\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        lat[pct] = v / 1000 if unit == "us" else v if unit == "ms" else v * 1000
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(x) for x in socket_errors.groups())
    return {"total": total, "rps": rps, "p50": lat["50%"], "p99": lat["99%"], "failed": failed}


def upstream_requests(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__stats", timeout=5) as r:
        return json.load(r)["requests"]


def main():
    for b in (GATEHOUSE_BIN, FAULTY_BIN):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench-resilience: {b} is missing (make bench-resilience builds it)")
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        sys.exit("bench-resilience: wrk is missing (make bench-resilience installs it with apt-get)")
    procs = []
    with tempfile.TemporaryDirectory() as work:
        try:
            up = subprocess.Popen([FAULTY_BIN,
                                   "--listen", f"{FAST},latency=2,capacity=4",
                                   "--listen", f"{FAST2},latency=2,capacity=4",
                                   "--listen", f"{SLOW},latency=20,capacity=4",
                                   "--listen", f"{FLAKY},latency=1,fail=20,status=503"])
            procs.append(up)
            for p in (FAST, FAST2, SLOW, FLAKY):
                wait_port(p, up)
            os.makedirs(f"{work}/m")
            with open(f"{work}/m/bench.yaml", "w") as f:
                f.write(MANIFESTS)
            gh = subprocess.Popen([GATEHOUSE_BIN, "run", "-f", f"{work}/m", "--http", f"127.0.0.1:{GATEHOUSE}",
                                   "--admin", f"127.0.0.1:{ADMIN}", "--workers", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(gh)
            wait_port(GATEHOUSE, gh)
            # Warm-up: connections, PeakEwma's first estimates.
            for n in ("rr", "lr", "ewma"):
                subprocess.run(["wrk", "-t1", "-c4", "-d1s", f"http://127.0.0.1:{GATEHOUSE}/{n}"], capture_output=True)
            skew = {n: [] for n in ("rr", "lr", "ewma")}
            for _ in range(ROUNDS):
                for n in skew:
                    skew[n].append(wrk(f"/{n}"))
            med = {n: {k: statistics.median(r[k] for r in runs) for k in ("p50", "p99", "rps")}
                   for n, runs in skew.items()}
            print(f"latency skew: 3 endpoints, capacity 4 each, one 10x slower (20 ms vs 2 ms); "
                  f"wrk -c{CONNS} -d{DURATION}, median of {ROUNDS} interleaved rounds")
            print(f"{'balancer':<14}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'p99 vs RR':>12}")
            names = {"rr": "RoundRobin", "lr": "LeastRequest", "ewma": "PeakEwma"}
            for n, m in med.items():
                print(f"{names[n]:<14}{m['p50']:>10.2f}{m['p99']:>10.2f}{m['rps']:>10.0f}"
                      f"{m['p99'] / med['rr']['p99']:>12.2f}")
            beat = all(med[n]["p99"] < med["rr"]["p99"] for n in ("lr", "ewma"))
            print(f"target: LeastRequest and PeakEwma p99 below RoundRobin's: {'met' if beat else 'NOT met'}")

            print()
            print(f"failure rate: one endpoint answers 503 to 20% of requests; wrk -c{CONNS} -d{DURATION}")
            print(f"{'upstream':<10}{'requests':>10}{'errors':>10}{'error %':>10}{'upstream load':>16}")
            rows = {}
            for n in ("once", "retried"):
                before = upstream_requests(FLAKY)
                r = wrk(f"/{n}")
                sent = upstream_requests(FLAKY) - before
                # The /__stats requests themselves are not counted by the endpoint.
                rows[n] = (r, sent / r["total"] - 1)
                print(f"{n:<10}{r['total']:>10}{r['failed']:>10}{100 * r['failed'] / r['total']:>10.2f}"
                      f"{100 * rows[n][1]:>15.1f}%")
            r, increase = rows["retried"]
            rate = r["failed"] / r["total"]
            print(f"target: error rate with retries under 1%: {'met' if rate < 0.01 else 'NOT met'} "
                  f"({100 * rate:.2f}%); load increase within the {BUDGET_PERCENT}% budget: "
                  f"{'met' if increase <= BUDGET_PERCENT / 100 else 'NOT met'} ({100 * increase:.1f}%)")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()


if __name__ == "__main__":
    main()
