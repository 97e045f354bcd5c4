"""The front door under abuse: the built `gatehouse run` against raw HTTP/1.1 bytes and raw
HTTP/2 frames, every verdict taken from the public surface only (the bytes the client
gets back, and what a recording upstream received).

  * the smuggling matrix: CL+TE, disguised Transfer-Encoding, malformed Content-Length
    (400, connection closed, nothing forwarded, the smuggled second request never
    reaches the upstream); malformed chunked bodies; HTTP/2 to HTTP/1.1 downgrades; an
    upstream answering with ambiguous framing (502)
  * header injection: CR, LF, NUL in a header (400), the same through HTTP/2
  * the limits: header count (100, 431), request head (64 KiB, 431), URI (8192, 414)
  * slow clients: slowloris, silent connections, body dribbling, idle keep-alive, cut
    off while a normal client is served throughout
  * HTTP/2 floods: max concurrent streams (256), rapid reset (CVE-2023-44487),
    CONTINUATION flood (CVE-2024-27316): GOAWAY, bounded CPU, a fresh connection served
  * the path matrix against `/admin` (apiKey) beside `/` (no authentication)

Run: e2e/frontdoor/run.sh (GATEHOUSE_BIN names the binary; FRONTDOOR_KEEP=1 keeps the
gateway's folder and log).
"""

import concurrent.futures
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    resolve_dots,
    CONTINUATION, END_HEADERS, END_STREAM, ERROR_NAMES, HEADERS, RST_STREAM, DATA,
    SETTINGS_MAX_CONCURRENT_STREAMS, Gateway, H2Raw, Raw, Upstream, backend_readings,
    exchange, frame, h2_get, literal, request, request_block, under,
)

API_KEY = "k-frontdoor-alice-123"

# A flood may cost the gateway at most this much CPU (user + system seconds, from
# /proc, over the flood and a second after it). Generous for a debug build: a gateway
# that ends the connection early spends a fraction of it; one that serves every
# stream of the flood spends far more.
FLOOD_CPU_SECONDS = 3.0


def upstream_yaml(name, port):
    return """
apiVersion: gatehouse.dev/v1alpha1
kind: Upstream
metadata: {name: %s}
spec:
  endpoints: [{host: 127.0.0.1, port: %d}]
""" % (name, port)


def one_route(upstream_port):
    """Everything (`/` Prefix) to one upstream, no policies."""
    return upstream_yaml("up", upstream_port) + """
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: fd}
spec:
  rules:
    - name: all
      matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: up}]
"""


def admin_beside_public(public_port, admin_port):
    """`/admin` (Prefix, apiKey with one consumer Secret) to one upstream, `/` (Prefix,
    no authentication) to another."""
    return upstream_yaml("public", public_port) + "---" + upstream_yaml("admin", admin_port) + """
---
apiVersion: v1
kind: Secret
metadata:
  name: alice
  namespace: default
  labels: {gatehouse.dev/consumer: alice}
stringData:
  api-key: "%s"
---
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: fd}
spec:
  rules:
    - name: admin
      matches: [{path: {type: Prefix, value: /admin}}]
      backends: [{upstream: admin}]
      policies:
        authentication: {apiKey: {}}
    - name: public
      matches: [{path: {type: Prefix, value: /}}]
      backends: [{upstream: public}]
""" % API_KEY


def parallel(fn, items, workers=8):
    """fn(item) for every item, `workers` at a time: {item: result or the exception}."""
    out = {}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(fn, item): item for item in items}
        for f in concurrent.futures.as_completed(futures):
            try:
                out[futures[f]] = f.result()
            except Exception as e:  # reported by the test that reads it
                out[futures[f]] = e
    return out


def method_name(text):
    """A test method suffix from a case's text."""
    for a, b in (("%", "pct"), ("/", "_"), (".", "dot"), (";", "semi"), ("\\", "bslash"),
                 ("?", "q"), ("=", "eq")):
        text = text.replace(a, b)
    return re.sub(r"[^0-9A-Za-z_]", "x", text).strip("_") or "root"


def note(text):
    """An observation printed beside the verbose test line (passing or not)."""
    sys.stderr.write("\n    [%s]\n" % text)
    sys.stderr.flush()


def requests_text(reqs):
    return "[" + ", ".join("%s %s" % (r.method, r.target[:120]) for r in reqs) + "]"


# === HTTP/1.1 request smuggling =======================================================


def smuggled(case):
    """The second request hidden in a body: if it is ever parsed as a request, the
    upstream records it (path /smuggled/CASE, X-Case CASE-smuggled)."""
    return ("GET /smuggled/%s HTTP/1.1\r\nHost: fd.test\r\nX-Case: %s-smuggled\r\n\r\n"
            % (case, case)).encode()


def te_body(case):
    """A chunked body that ends at once, the smuggled request right behind it: whoever
    reads Transfer-Encoding sees two requests, whoever reads Content-Length one."""
    return b"0\r\n\r\n" + smuggled(case)


def _cl_te(*te_lines):
    """Content-Length covering the whole body, beside the given (disguised) TE lines."""
    return lambda case: (["Content-Length: %d" % len(te_body(case))] + list(te_lines), te_body(case))


def _te_cl(*te_lines):
    return lambda case: (list(te_lines) + ["Content-Length: %d" % len(te_body(case))], te_body(case))


def _te_only(*te_lines):
    return lambda case: (list(te_lines), te_body(case))


def _cl(lines, pad):
    """Malformed Content-Length: `pad` bytes (what a lenient reader takes as the body),
    then the smuggled request."""
    return lambda case: (list(lines), b"A" * pad + smuggled(case))


# Content-Length beside one plain `Transfer-Encoding: chunked`, either order. The HTTP
# parser (hyper) drops the Content-Length before the request path sees the request and
# reads the body by the coding, as RFC 9112 §6.3 says, then closes the connection: the
# one deviation from "400" in docs/security.md. What must hold: exactly one request,
# read as chunked, is forwarded without a Content-Length; the smuggled one never is; the
# connection is closed after the one response.
CL_TE_CASES = {
    "cl_then_te": _cl_te("Transfer-Encoding: chunked"),
    "te_then_cl": _te_cl("Transfer-Encoding: chunked"),
    "cl_te_uppercase": _cl_te("Transfer-Encoding: CHUNKED"),
    "cl_te_tab_before_value": _cl_te("Transfer-Encoding:\tchunked"),
}

# Each: the head must be refused with 400, the connection closed, and nothing forwarded.
HEAD_CASES = {
    # CL and TE together, TE disguised
    "cl_te_chunked_chunked": _cl_te("Transfer-Encoding: chunked, chunked"),
    "cl_te_gzip_chunked": _cl_te("Transfer-Encoding: gzip, chunked"),
    "cl_te_unknown_coding": _cl_te("Transfer-Encoding: xchunked"),
    "cl_te_space_before_colon": _cl_te("Transfer-Encoding : chunked"),
    "cl_te_vertical_tab": _cl_te("Transfer-Encoding:\x0bchunked"),
    "cl_te_obs_fold_value": _cl_te("Transfer-Encoding:", " chunked"),
    "cl_te_obs_fold_hidden_header": _cl_te("X-Folded: a", "\tTransfer-Encoding: chunked"),
    "cl_te_two_te_headers": _cl_te("Transfer-Encoding: chunked", "Transfer-Encoding: identity"),
    "te_cl_disguised_gzip_chunked": _te_cl("Transfer-Encoding: gzip, chunked"),
    # Transfer-Encoding alone, but not plainly `chunked`
    "te_chunked_chunked": _te_only("Transfer-Encoding: chunked, chunked"),
    "te_gzip_chunked": _te_only("Transfer-Encoding: gzip, chunked"),
    "te_gzip_only": _te_only("Transfer-Encoding: gzip"),
    "te_unknown_coding": _te_only("Transfer-Encoding: xchunked"),
    "te_identity": _te_only("Transfer-Encoding: identity"),
    "te_chunked_then_identity": _te_only("Transfer-Encoding: chunked, identity"),
    "te_space_before_colon": _te_only("Transfer-Encoding : chunked"),
    "te_obs_fold_value": _te_only("Transfer-Encoding:", " chunked"),
    "te_obs_fold_hidden_header": _te_only("X-Folded: a", " Transfer-Encoding: chunked"),
    # duplicate or malformed Content-Length
    "cl_list_1_2": _cl(["Content-Length: 1, 2"], 1),
    "cl_plus_sign": _cl(["Content-Length: +5"], 5),
    "cl_hex": _cl(["Content-Length: 0x5"], 5),
    "cl_space_5_space_5": _cl(["Content-Length:  5 5"], 5),
    "cl_two_headers_differ": _cl(["Content-Length: 5", "Content-Length: 6"], 5),
    "cl_negative": _cl(["Content-Length: -1"], 0),
    "cl_space_before_colon": _cl(["Content-Length : 5"], 5),
}


def _chunked(raw):
    return lambda case: (["Transfer-Encoding: chunked"], raw + smuggled(case))


# A valid head, a broken chunked body: the head may already be on its way upstream, but
# the smuggled request must never reach it, and the client gets at most one response,
# a 400 (or none), before the connection is closed.
BODY_CASES = {
    "chunk_size_hex_prefix": _chunked(b"0x5\r\nAAAAA\r\n0\r\n\r\n"),
    "chunk_size_overflow": _chunked(b"10000000000000005\r\nAAAAA\r\n0\r\n\r\n"),
    "chunk_size_negative": _chunked(b"-5\r\nAAAAA\r\n0\r\n\r\n"),
    "chunk_data_without_crlf": _chunked(b"5\r\nAAAAAXX0\r\n\r\n"),
}


def smuggling_bytes(case, build):
    lines, body = build(case)
    head = "POST /front/%s HTTP/1.1\r\nHost: fd.test\r\nX-Case: %s\r\n" % (case, case)
    head += "".join(line + "\r\n" for line in lines)
    return head.encode("latin-1") + b"\r\n" + body


class Smuggling(unittest.TestCase):
    """HTTP/1.1 framing ambiguities: refused with 400 and the connection closed, nothing
    forwarded; the smuggled second request never reaches the upstream."""

    @classmethod
    def setUpClass(cls):
        cls.up = Upstream()
        cls.gw = Gateway(one_route(cls.up.port))
        cases = dict(HEAD_CASES)
        cases.update(BODY_CASES)
        cases.update(CL_TE_CASES)
        cls.seen = parallel(
            lambda case: exchange(cls.gw.addr, smuggling_bytes(case, cases[case]), timeout=5.0, close_wait=1.5),
            list(cases))
        time.sleep(0.3)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.up.close()

    def observed(self, case):
        ex = self.seen[case]
        if isinstance(ex, Exception):
            self.fail("%s: the exchange raised %r" % (case, ex))
        got = self.up.with_case(case)
        smug = self.up.with_case(case + "-smuggled")
        return ex, got, smug, "%s: %s; upstream got %s, smuggled %s (raw bytes seen: %s)" % (
            case, ex.describe(), requests_text(got), requests_text(smug),
            self.up.seen_bytes("/smuggled/%s " % case))

    def check_head_case(self, case):
        ex, got, smug, what = self.observed(case)
        problems = []
        if ex.first is None or ex.first.status != 400:
            problems.append("status %s, not 400" % (ex.first.status if ex.first else "none"))
        if len(ex.responses) > 1:
            problems.append("%d responses" % len(ex.responses))
        if not ex.closed:
            problems.append("connection left open")
        if got:
            problems.append("forwarded upstream")
        if smug or self.up.seen_bytes("/smuggled/%s " % case):
            problems.append("SMUGGLED REQUEST REACHED THE UPSTREAM")
        self.assertFalse(problems, "; ".join(problems) + " -- " + what)

    def check_cl_te_case(self, case):
        ex, got, smug, what = self.observed(case)
        problems = []
        if smug or self.up.seen_bytes("/smuggled/%s " % case):
            problems.append("SMUGGLED REQUEST REACHED THE UPSTREAM")
        if len(ex.responses) != 1:
            problems.append("%d responses" % len(ex.responses))
        if not ex.closed:
            problems.append("connection left open")
        if len(got) != 1:
            problems.append("%d requests forwarded, not 1" % len(got))
        for r in got:
            names = [n.lower() for n, _ in r.headers]
            if "content-length" in names:
                problems.append("forwarded with a Content-Length")
            if r.body:
                problems.append("forwarded body %r: not read as chunked" % r.body[:40])
        self.assertFalse(problems, "; ".join(problems) + " -- " + what)

    def check_body_case(self, case):
        ex, got, smug, what = self.observed(case)
        problems = []
        if smug or self.up.seen_bytes("/smuggled/%s " % case):
            problems.append("SMUGGLED REQUEST REACHED THE UPSTREAM")
        if len(ex.responses) > 1:
            problems.append("%d responses" % len(ex.responses))
        if ex.first is not None and ex.first.status != 400:
            # The client's broken body, not the upstream: 400 (a 502 would also count
            # against the upstream's health, letting any client trip its circuit).
            problems.append("a broken body answered %d, not 400" % ex.first.status)
        if not ex.closed:
            problems.append("connection left open")
        self.assertFalse(problems, "; ".join(problems) + " -- " + what)

    # --- controls: the same upstream sees well-formed pipelined requests -------------

    def test_control_pipelined_content_length_then_get(self):
        data = (b"POST /ctl/cl HTTP/1.1\r\nHost: fd.test\r\nX-Case: ctl-cl\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /ctl/cl2 HTTP/1.1\r\nHost: fd.test\r\nX-Case: ctl-cl2\r\nConnection: close\r\n\r\n")
        ex = exchange(self.gw.addr, data)
        time.sleep(0.2)
        self.assertEqual([r.status for r in ex.responses], [200, 200], ex.describe())
        self.assertEqual([r.body for r in self.up.with_case("ctl-cl")], [b"hello"])
        self.assertEqual(len(self.up.with_case("ctl-cl2")), 1)

    def test_control_pipelined_chunked_then_get(self):
        data = (b"POST /ctl/te HTTP/1.1\r\nHost: fd.test\r\nX-Case: ctl-te\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n"
                b"GET /ctl/te2 HTTP/1.1\r\nHost: fd.test\r\nX-Case: ctl-te2\r\nConnection: close\r\n\r\n")
        ex = exchange(self.gw.addr, data)
        time.sleep(0.2)
        self.assertEqual([r.status for r in ex.responses], [200, 200], ex.describe())
        self.assertEqual([r.body for r in self.up.with_case("ctl-te")], [b"hello"])
        self.assertEqual(len(self.up.with_case("ctl-te2")), 1)


for _case in HEAD_CASES:
    setattr(Smuggling, "test_head_" + _case, (lambda c: lambda self: self.check_head_case(c))(_case))
for _case in BODY_CASES:
    setattr(Smuggling, "test_body_" + _case, (lambda c: lambda self: self.check_body_case(c))(_case))
for _case in CL_TE_CASES:
    setattr(Smuggling, "test_cl_te_" + _case, (lambda c: lambda self: self.check_cl_te_case(c))(_case))


class UpstreamFraming(unittest.TestCase):
    """An upstream answering with ambiguous framing is a 502, its bytes never relayed."""

    SPLIT = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"

    @classmethod
    def setUpClass(cls):
        body = b"0\r\n\r\n" + cls.SPLIT
        cls.ups = {
            "cl-te": Upstream(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body) + body, close_after=True),
            "te-cl": Upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % len(body) + body, close_after=True),
            "cl-cl": Upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 10\r\n\r\nokHTTP/1.1", close_after=True),
        }
        yaml = ""
        rules = ""
        for i, (name, up) in enumerate(cls.ups.items()):
            yaml += upstream_yaml("u%d" % i, up.port) + "---\n"
            rules += """
    - name: r%d
      matches: [{path: {type: Prefix, value: /%s}}]
      backends: [{upstream: u%d}]""" % (i, name, i)
        yaml += """
apiVersion: gatehouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: fd}
spec:
  rules:%s
""" % rules
        cls.gw = Gateway(yaml)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        for up in cls.ups.values():
            up.close()

    def check(self, name):
        data = b"GET /%s HTTP/1.1\r\nHost: fd.test\r\nX-Case: %s\r\n\r\n" % (name.encode(), name.encode())
        ex = exchange(self.gw.addr, data, close_wait=1.0)
        problems = []
        if ex.first is None or ex.first.status != 502:
            problems.append("status %s, not 502" % (ex.first.status if ex.first else "none"))
        if len(ex.responses) > 1:
            problems.append("%d responses relayed" % len(ex.responses))
        relayed = b"".join(r.body for r in ex.responses) + bytes(ex.leftover)
        if b"smuggled" in relayed or b"HTTP/1.1" in relayed:
            problems.append("the upstream's bytes were relayed: %r" % relayed[:120])
        self.assertTrue(self.ups[name].with_case(name), "the request never reached the upstream")
        first = ("first response headers %s, body %r; " % (ex.first.headers, ex.first.body[:80])) if ex.first else ""
        self.assertFalse(problems, "; ".join(problems) + " -- " + first + ex.describe())

    def test_upstream_content_length_and_transfer_encoding_is_502(self):
        self.check("cl-te")

    def test_upstream_transfer_encoding_and_content_length_is_502(self):
        self.check("te-cl")

    def test_upstream_two_different_content_lengths_is_502(self):
        self.check("cl-cl")


# === header injection =================================================================


# {inj} is the case's own marker header name (x-inj-CASE): never seen upstream.
H1_INJECTION = {
    "cr_in_value": b"X-A: a\r{inj}: 1",
    "nul_in_value": b"X-A: a\x00{inj}: 1",
    "cr_in_name": b"X-A\r{inj}: 1",
    "nul_in_name": b"X-A\x00{inj}: 1",
}


def injected(case):
    return "x-inj-" + case.lower().replace("_", "-")


class HeaderInjection(unittest.TestCase):
    """CR, LF or NUL in a header: 400, nothing forwarded; over HTTP/2 the request is
    refused (400 or a stream/connection error) and never reaches the upstream."""

    @classmethod
    def setUpClass(cls):
        cls.up = Upstream()
        cls.gw = Gateway(one_route(cls.up.port))

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.up.close()

    def check_h1(self, case):
        data = (b"GET /inject/%s HTTP/1.1\r\nHost: fd.test\r\nX-Case: %s\r\n" % (case.encode(), case.encode())
                + H1_INJECTION[case].replace(b"{inj}", injected(case).encode())
                + b"\r\nConnection: close\r\n\r\n")
        ex = exchange(self.gw.addr, data, close_wait=1.0)
        time.sleep(0.1)
        got = self.up.with_case(case)
        problems = []
        if ex.first is None or ex.first.status != 400:
            problems.append("status %s, not 400" % (ex.first.status if ex.first else "none"))
        if got or self.up.seen_bytes("/inject/%s " % case):
            problems.append("forwarded upstream as %s (headers %s)" % (requests_text(got), [h for r in got for h in r.headers if h[0].lower().startswith("x-")]))
        if self.up.seen_bytes(injected(case)):
            problems.append("THE INJECTED HEADER %s REACHED THE UPSTREAM" % injected(case))
        self.assertFalse(problems, "; ".join(problems) + " -- " + ex.describe())

    def test_h1_bare_lf_ends_the_line(self):
        """A bare LF inside the head ends a header line (RFC 9112 §2.2 lets a recipient
        read it so; hyper does): `X-A: a\\nX-B: 1` is two headers, and no header value
        that reaches the upstream holds an LF. (docs/security.md: not a 400.)"""
        case = "lf-line-end"
        data = (b"GET /inject/%s HTTP/1.1\r\nHost: fd.test\r\nX-Case: %s\r\n" % (case.encode(), case.encode())
                + b"X-A: a\nX-B: 1\r\nConnection: close\r\n\r\n")
        ex = exchange(self.gw.addr, data, close_wait=1.0)
        time.sleep(0.1)
        got = self.up.with_case(case)
        self.assertEqual(len(got), 1, ex.describe())
        headers = dict((n.lower(), v) for n, v in got[0].headers)
        self.assertEqual(headers.get("x-a"), "a", got[0].headers)
        self.assertEqual(headers.get("x-b"), "1", got[0].headers)
        for n, v in got[0].headers:
            self.assertNotIn("\n", v)
            self.assertNotIn("\r", v)

    def check_h2(self, case, block):
        h = H2Raw(self.gw.addr)
        try:
            h.wait(lambda: h.settings_seen, 5)
            h.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
            h.wait(lambda: h.status(1) is not None and 1 in h.ended or 1 in h.rst or h.goaway or h.eof, 5)
            time.sleep(0.2)
            outcome = h.stream_outcome(1)
        finally:
            h.close()
        got = self.up.with_case(case)
        problems = []
        if not (outcome == "status 400" or outcome.startswith("RST_STREAM") or outcome.startswith("GOAWAY")):
            problems.append("stream outcome %s, not 400/RST_STREAM/GOAWAY" % outcome)
        if got:
            problems.append("forwarded upstream as %s" % requests_text(got))
        if self.up.seen_bytes(injected(case)) or self.up.seen_bytes("/smuggled/" + case):
            problems.append("INJECTED BYTES REACHED THE UPSTREAM")
        self.assertFalse(problems, "; ".join(problems) + " -- upstream bytes: %r" % self.raw_with(case))

    def raw_with(self, case):
        """The upstream's received bytes around the case's marker."""
        with self.up.lock:
            for b in self.up.raw.values():
                b = bytes(b)
                i = b.find(case.encode())
                if i >= 0:
                    start = b.rfind(b"\r\n\r\n", 0, i)
                    start = 0 if start < 0 else start + 4
                    return b[start:b.find(b"\r\n\r\n", i) + 4][:400]
        return b""

    def test_h2_crlf_in_value(self):
        case = "h2-crlf-value"
        self.check_h2(case, request_block("/inject/h2", extra=[("x-case", case), ("x-a", "a\r\n" + injected(case) + ": 1")]))

    def test_h2_lf_in_value(self):
        case = "h2-lf-value"
        self.check_h2(case, request_block("/inject/h2", extra=[("x-case", case), ("x-a", "a\n" + injected(case) + ": 1")]))

    def test_h2_nul_in_value(self):
        case = "h2-nul-value"
        self.check_h2(case, request_block("/inject/h2", extra=[("x-case", case), ("x-a", "a\x00" + injected(case))]))

    def test_h2_crlf_in_name(self):
        case = "h2-crlf-name"
        self.check_h2(case, request_block("/inject/h2", extra=[("x-case", case), ("x-a\r\n" + injected(case), "1")]))

    def test_h2_crlf_in_path(self):
        case = "h2-crlf-path"
        path = "/inject/h2 HTTP/1.1\r\n%s: 1\r\n\r\nGET /smuggled/%s HTTP/1.1\r\nHost: fd.test\r\n\r\n" % (injected(case), case)
        self.check_h2(case, request_block(path, extra=[("x-case", case)]))

    def test_h2_crlf_in_method(self):
        case = "h2-crlf-method"
        method = "GET /smuggled/%s HTTP/1.1\r\n%s: 1\r\n\r\nGET" % (case, injected(case))
        self.check_h2(case, request_block("/inject/h2", method=method, extra=[("x-case", case)]))

    def test_h2_crlf_in_authority(self):
        case = "h2-crlf-authority"
        self.check_h2(case, request_block("/inject/h2", authority="fd.test\r\n" + injected(case) + ": 1", extra=[("x-case", case)]))


for _case in H1_INJECTION:
    setattr(HeaderInjection, "test_h1_" + _case, (lambda c: lambda self: self.check_h1(c))(_case))


# === HTTP/2 to HTTP/1.1 downgrade smuggling ============================================


class H2Downgrade(unittest.TestCase):
    """An HTTP/2 request whose framing would smuggle a second request once written as
    HTTP/1.1: the smuggled request never reaches the upstream."""

    @classmethod
    def setUpClass(cls):
        cls.up = Upstream()
        cls.gw = Gateway(one_route(cls.up.port))

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.up.close()

    def send(self, case, extra, data):
        h = H2Raw(self.gw.addr)
        try:
            h.wait(lambda: h.settings_seen, 5)
            block = request_block("/h2smuggle/" + case, method="POST", extra=[("x-case", case)] + extra)
            h.send(frame(HEADERS, END_HEADERS, 1, block) + frame(DATA, END_STREAM, 1, data))
            h.wait(lambda: 1 in h.ended or 1 in h.rst or h.goaway or h.eof, 5)
            time.sleep(0.3)
            return h.stream_outcome(1)
        finally:
            h.close()

    def check(self, case, outcome, refuse):
        got = self.up.with_case(case)
        problems = []
        if self.up.with_case(case + "-smuggled") or self.up.seen_bytes("/smuggled/%s " % case):
            problems.append("SMUGGLED REQUEST REACHED THE UPSTREAM")
        if refuse and not (outcome == "status 400" or outcome.startswith("RST_STREAM") or outcome.startswith("GOAWAY")):
            problems.append("stream outcome %s, not 400/RST_STREAM/GOAWAY (malformed, RFC 9113 8.2.2/8.1.1)" % outcome)
        if refuse and got:
            problems.append("the malformed request was forwarded: %s" % requests_text(got))
        self.assertFalse(problems, "; ".join(problems) + " -- outcome %s, upstream got %s" % (outcome, requests_text(got)))

    def test_h2_transfer_encoding_chunked_is_refused(self):
        case = "h2-te"
        outcome = self.send(case, [("transfer-encoding", "chunked")], te_body(case))
        self.check(case, outcome, refuse=True)

    def test_h2_content_length_zero_with_data_is_refused(self):
        case = "h2-cl0"
        outcome = self.send(case, [("content-length", "0")], smuggled(case))
        self.check(case, outcome, refuse=True)

    def test_h2_content_length_shorter_than_data_is_refused(self):
        case = "h2-clshort"
        outcome = self.send(case, [("content-length", "5")], b"AAAAA" + smuggled(case))
        self.check(case, outcome, refuse=True)


# === limits ===========================================================================


def raw_get(target, headers, case):
    head = "GET %s HTTP/1.1\r\nHost: fd.test\r\nX-Case: %s\r\nConnection: close\r\n" % (target, case)
    head += "".join("%s: %s\r\n" % (n, v) for n, v in headers)
    return head.encode("latin-1") + b"\r\n"


class Limits(unittest.TestCase):
    """Header count over 100: 431; request head over 64 KiB: 431; URI over 8192 bytes:
    414; each refused before anything is forwarded, and the same just under each limit
    served."""

    @classmethod
    def setUpClass(cls):
        cls.up = Upstream()
        cls.gw = Gateway(one_route(cls.up.port))

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.up.close()

    def refused(self, case, data, status):
        ex = exchange(self.gw.addr, data, close_wait=0.5)
        time.sleep(0.1)
        got = self.up.with_case(case)
        problems = []
        if ex.first is None or ex.first.status != status:
            problems.append("status %s, not %d" % (ex.first.status if ex.first else "none", status))
        if got:
            problems.append("forwarded upstream: %s" % requests_text(got))
        self.assertFalse(problems, "; ".join(problems) + " -- %d bytes sent; %s" % (len(data), ex.describe()))

    def served(self, case, data):
        ex = exchange(self.gw.addr, data, close_wait=0.5)
        time.sleep(0.1)
        got = self.up.with_case(case)
        self.assertEqual(ex.first.status if ex.first else None, 200, "%d bytes sent; %s" % (len(data), ex.describe()))
        self.assertEqual(len(got), 1, "the upstream got %s" % requests_text(got))
        return got[0]

    # Host, X-Case and Connection are three of the count.
    def test_100_headers_are_served(self):
        self.served("h100", raw_get("/limits/h100", [("X-H%d" % i, "v") for i in range(97)], "h100"))

    def test_header_count_over_100_is_431(self):
        self.refused("h102", raw_get("/limits/h102", [("X-H%d" % i, "v") for i in range(99)], "h102"), 431)

    def test_header_count_far_over_100_is_431(self):
        self.refused("h1000", raw_get("/limits/h1000", [("X-H%d" % i, "v") for i in range(1000)], "h1000"), 431)

    def test_head_under_64k_is_served(self):
        data = raw_get("/limits/head60k", [("X-Big%d" % i, "a" * 4000) for i in range(15)], "head60k")
        self.assertLess(len(data), 64 * 1024)
        self.served("head60k", data)

    def test_head_over_64k_is_431(self):
        data = raw_get("/limits/head68k", [("X-Big%d" % i, "a" * 4000) for i in range(17)], "head68k")
        self.assertGreater(len(data), 64 * 1024)
        self.refused("head68k", data, 431)

    def test_head_far_over_64k_is_431(self):
        data = raw_get("/limits/head200k", [("X-Big%d" % i, "a" * 8000) for i in range(25)], "head200k")
        self.refused("head200k", data, 431)

    def test_uri_of_8192_bytes_is_served(self):
        target = "/u/" + "a" * (8192 - 3)
        got = self.served("uri8192", raw_get(target, [], "uri8192"))
        self.assertEqual(got.target, target)

    def test_uri_of_8193_bytes_is_414(self):
        self.refused("uri8193", raw_get("/u/" + "a" * (8193 - 3), [], "uri8193"), 414)

    def test_uri_with_query_over_8192_bytes_is_414(self):
        self.refused("uriq", raw_get("/u?q=" + "a" * (8193 - 5), [], "uriq"), 414)

    def test_uri_far_over_8192_bytes_is_414(self):
        self.refused("uri30k", raw_get("/u/" + "a" * 30000, [], "uri30k"), 414)

    def h2_status(self, block):
        h = H2Raw(self.gw.addr)
        try:
            h.wait(lambda: h.settings_seen, 5)
            h.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
            h.wait(lambda: 1 in h.ended or 1 in h.rst or h.goaway or h.eof, 5)
            return h.stream_outcome(1)
        finally:
            h.close()

    def test_h2_uri_over_8192_bytes_is_414(self):
        ok = self.h2_status(request_block("/u/" + "a" * (8192 - 3), extra=[("x-case", "h2uri8192")]))
        self.assertEqual(ok, "status 200", "an 8192-byte :path")
        out = self.h2_status(request_block("/u/" + "a" * (8193 - 3), extra=[("x-case", "h2uri8193")]))
        self.assertEqual(out, "status 414", "an 8193-byte :path; upstream got %s" % requests_text(self.up.with_case("h2uri8193")))
        self.assertFalse(self.up.with_case("h2uri8193"))

    def test_h2_header_count_over_100_is_431(self):
        ok = self.h2_status(request_block("/limits/h2", extra=[("x-case", "h2h90")] + [("x-h%d" % i, "v") for i in range(90)]))
        self.assertEqual(ok, "status 200", "90 headers")
        out = self.h2_status(request_block("/limits/h2", extra=[("x-case", "h2h102")] + [("x-h%d" % i, "v") for i in range(101)]))
        self.assertEqual(out, "status 431", "102 headers; upstream got %s" % requests_text(self.up.with_case("h2h102")))
        self.assertFalse(self.up.with_case("h2h102"))


# === slow clients =====================================================================


class SlowClients(unittest.TestCase):
    """All slow clients at once against one gateway, a normal client served throughout:
    a slowloris header dribbler is cut off at the 10 s header read timeout (by 16 s), as
    are twenty more and a silent connection (by 16 s); a body dribbled at 1 byte/s is cut
    off (by 20 s); an idle keep-alive connection is closed (by 25 s)."""

    DRIBBLERS = 20
    HEADER_BOUND = 16.0
    BODY_BOUND = 20.0
    IDLE_BOUND = 25.0

    @classmethod
    def setUpClass(cls):
        cls.up = Upstream()
        cls.gw = Gateway(one_route(cls.up.port))
        cls.res = {}
        cls.t0 = time.monotonic()
        cls.done = threading.Event()
        threads = [threading.Thread(target=cls.header_dribbler, args=(i,), daemon=True) for i in range(cls.DRIBBLERS)]
        threads += [threading.Thread(target=f, daemon=True) for f in (cls.silent, cls.body_dribbler, cls.idle_keepalive)]
        for t in threads:
            t.start()
        normal = [threading.Thread(target=cls.normal_fresh, daemon=True),
                  threading.Thread(target=cls.normal_keepalive, daemon=True)]
        for t in normal:
            t.start()
        for t in threads:
            t.join(cls.BODY_BOUND + 10)
        # The normal clients keep going at least until the slow ones must have been cut
        # off, however early they were.
        time.sleep(max(0.0, cls.t0 + cls.HEADER_BOUND + 0.5 - time.monotonic()))
        cls.done.set()
        for t in normal:
            t.join(10)
        summary = {k: (round(v["closed_after"], 1) if v.get("closed_after") is not None else None)
                   for k, v in cls.res.items() if isinstance(v, dict)}
        note("closed after (s): %s; body answer %r; normal requests %d, keep-alive requests %d" % (
            summary, cls.res.get("body", {}).get("answer"), len(cls.res.get("normal", [])), len(cls.res.get("normal_ka", []))))

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.up.close()

    @classmethod
    def dribble(cls, key, head, byte, bound):
        """Sends `head`, then `byte` once a second until the gateway ends the
        connection or `bound` + 2 s pass: {closed_after, sent, answer}."""
        c = Raw(cls.gw.addr, timeout=5)
        start = time.monotonic()
        sent = 0
        try:
            c.send(head)
            while time.monotonic() - start < bound + 2:
                if not c.send(byte):
                    break
                sent += 1
                c._fill(time.monotonic() + 1.0)
                if c.closed:
                    break
            closed = c.closed or c.send_error is not None
            cls.res[key] = {"closed_after": time.monotonic() - start if closed else None, "sent": sent,
                            "answer": bytes(c.buf[:60])}
        finally:
            c.close()

    @classmethod
    def header_dribbler(cls, i):
        cls.dribble("dribbler%d" % i, b"GET /slow/%d HTTP/1.1\r\nHost: fd.test\r\nX-Dribble: " % i, b"a", cls.HEADER_BOUND)

    @classmethod
    def body_dribbler(cls):
        head = b"POST /slowbody HTTP/1.1\r\nHost: fd.test\r\nX-Case: slowbody\r\nContent-Length: 100000\r\n\r\n"
        cls.dribble("body", head, b"a", cls.BODY_BOUND)

    @classmethod
    def silent(cls):
        c = Raw(cls.gw.addr, timeout=5)
        start = time.monotonic()
        try:
            closed = c.wait_closed(cls.HEADER_BOUND + 2)
            cls.res["silent"] = {"closed_after": time.monotonic() - start if closed else None,
                                 "answer": bytes(c.buf[:60])}
        finally:
            c.close()

    @classmethod
    def idle_keepalive(cls):
        c = Raw(cls.gw.addr, timeout=5)
        try:
            c.send(b"GET /idle HTTP/1.1\r\nHost: fd.test\r\nX-Case: idle\r\n\r\n")
            r = c.read_response(5)
            start = time.monotonic()
            closed = c.wait_closed(cls.IDLE_BOUND + 2)
            cls.res["idle"] = {"status": r.status if r else None,
                               "closed_after": time.monotonic() - start if closed else None}
        finally:
            c.close()

    @classmethod
    def normal_fresh(cls):
        out = cls.res.setdefault("normal", [])
        i = 0
        while not cls.done.is_set():
            start = time.monotonic()
            try:
                r = request(cls.gw.addr, "GET", "/normal/%d" % i, timeout=5)
                status = r.status if r else None
            except OSError as e:
                status = repr(e)
            out.append((round(start - cls.t0, 1), status, time.monotonic() - start))
            i += 1
            time.sleep(0.5)

    @classmethod
    def normal_keepalive(cls):
        """One connection, a request every 2 s: kept open and served throughout."""
        out = cls.res.setdefault("normal_ka", [])
        c = Raw(cls.gw.addr, timeout=5)
        try:
            i = 0
            while not cls.done.is_set() and time.monotonic() - cls.t0 < cls.BODY_BOUND:
                start = time.monotonic()
                c.send(b"GET /normal-ka/%d HTTP/1.1\r\nHost: fd.test\r\n\r\n" % i)
                r = c.read_response(5)
                out.append((round(start - cls.t0, 1), r.status if r else None, time.monotonic() - start))
                if r is None:
                    break
                i += 1
                time.sleep(2)
        finally:
            c.close()

    def test_slowloris_header_dribbler_is_cut_off_at_the_header_timeout(self):
        r = self.res.get("dribbler0")
        self.assertIsNotNone(r, "the dribbler never finished")
        after = r["closed_after"]
        self.assertIsNotNone(after, "still open after %.0f s (%d header bytes dribbled): %r" % (self.HEADER_BOUND + 2, r["sent"], r))
        self.assertTrue(9.0 <= after <= self.HEADER_BOUND, "closed after %.1f s, not within 9-%.0f s: %r" % (after, self.HEADER_BOUND, r))

    def test_twenty_slowloris_connections_are_all_cut_off(self):
        late = {k: v for k, v in self.res.items() if k.startswith("dribbler")
                and (v["closed_after"] is None or v["closed_after"] > self.HEADER_BOUND)}
        self.assertEqual(len([k for k in self.res if k.startswith("dribbler")]), self.DRIBBLERS)
        self.assertFalse(late, "not cut off by %.0f s: %s" % (self.HEADER_BOUND, sorted(late)))

    def test_silent_connection_is_cut_off(self):
        r = self.res.get("silent")
        self.assertIsNotNone(r)
        self.assertIsNotNone(r["closed_after"], "a connection that sent nothing is still open after %.0f s" % (self.HEADER_BOUND + 2))
        self.assertLessEqual(r["closed_after"], self.HEADER_BOUND, r)

    def test_body_dribbled_at_one_byte_per_second_is_cut_off(self):
        r = self.res.get("body")
        self.assertIsNotNone(r)
        self.assertIsNotNone(r["closed_after"], "still open after %.0f s (%d body bytes dribbled; upstream got %s)" % (
            self.BODY_BOUND + 2, r["sent"], requests_text(self.up.with_case("slowbody"))))
        self.assertLessEqual(r["closed_after"], self.BODY_BOUND, r)

    def test_idle_keepalive_connection_is_closed(self):
        r = self.res.get("idle")
        self.assertIsNotNone(r)
        self.assertEqual(r["status"], 200)
        self.assertIsNotNone(r["closed_after"], "an idle keep-alive connection is still open after %.0f s" % (self.IDLE_BOUND + 2))
        self.assertLessEqual(r["closed_after"], self.IDLE_BOUND, r)

    def test_normal_clients_are_served_throughout(self):
        fresh = self.res.get("normal", [])
        ka = self.res.get("normal_ka", [])
        self.assertGreaterEqual(len(fresh), 20, "too few normal requests made: %s" % fresh)
        self.assertGreaterEqual(fresh[-1][0], self.HEADER_BOUND, "the normal client stopped early: %s" % fresh[-3:])
        bad = [x for x in fresh if x[1] != 200 or x[2] > 3.0]
        self.assertFalse(bad, "normal requests (t, status, seconds) failed or slow: %s" % bad[:10])
        self.assertGreaterEqual(len(ka), 8, "the keep-alive client stopped after %s" % ka)
        bad = [x for x in ka if x[1] != 200 or x[2] > 3.0]
        self.assertFalse(bad, "keep-alive requests (t, status, seconds) failed or slow: %s" % bad[:10])


# === HTTP/2 floods ====================================================================


class H2Floods(unittest.TestCase):
    """Max concurrent streams, rapid reset and CONTINUATION floods: each against its own
    gateway; the flood ends with GOAWAY and the connection closed, the gateway's CPU for
    it stays under FLOOD_CPU_SECONDS, and a fresh connection is served right after."""

    def setUp(self):
        self.up = Upstream()
        self.gw = Gateway(one_route(self.up.port))

    def tearDown(self):
        self.gw.stop()
        self.up.close()

    def connect(self):
        h = H2Raw(self.gw.addr)
        self.assertTrue(h.wait(lambda: h.settings_seen, 5), "no SETTINGS from the gateway")
        time.sleep(0.2)  # our ACK is in before the flood
        return h

    def fresh_connection_served(self):
        status, body, why = h2_get(self.gw.addr, "/after-flood", timeout=5)
        r = request(self.gw.addr, "GET", "/after-flood-h1", timeout=5)
        return status, why, r.status if r else None

    def flood_verdict(self, h, cpu0, start, sent_note):
        h.wait(lambda: h.eof, 5)
        time.sleep(1.0)
        cpu = self.gw.cpu_seconds() - cpu0
        alive = self.gw.alive()
        fresh = self.fresh_connection_served() if alive else None
        problems = []
        if h.goaway is None:
            problems.append("no GOAWAY")
        if not h.eof:
            problems.append("connection still open")
        if cpu > FLOOD_CPU_SECONDS:
            problems.append("%.2f CPU-seconds spent (bound %.1f)" % (cpu, FLOOD_CPU_SECONDS))
        if not alive:
            problems.append("THE GATEWAY DIED: " + self.gw.log_tail(500))
        elif fresh[0] != 200 or fresh[2] != 200:
            problems.append("a fresh connection after the flood: h2 %s (%s), h1 %s" % fresh)
        goaway = "GOAWAY %s last=%d after %.2f s" % (
            ERROR_NAMES.get(h.goaway[1], h.goaway[1]), h.goaway[0], h.goaway_at - start) if h.goaway else "no GOAWAY"
        what = "%s; %s; eof=%s; cpu=%.2fs; frames in=%d; rst in=%d; upstream got %d requests; fresh (h2 status, why, h1 status)=%s" % (
            sent_note, goaway, h.eof, cpu, h.frames_in, len(h.rst), len(self.up.snapshot()), fresh)
        note(what)
        return problems, what

    def test_max_concurrent_streams_is_256(self):
        h = self.connect()
        try:
            advertised = h.server_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS)
            self.assertEqual(advertised, 256, "SETTINGS_MAX_CONCURRENT_STREAMS: %s" % h.server_settings)
            # 300 requests whose bodies never come: each stays open.
            out = b""
            sids = [2 * i + 1 for i in range(300)]
            for sid in sids:
                block = request_block("/mcs/%d" % sid, method="POST", extra=[("x-case", "mcs"), ("content-length", "1")])
                out += frame(HEADERS, END_HEADERS, sid, block)
            self.assertTrue(h.send_within(out, 10), "could not send the 300 HEADERS: %s" % h.send_error)
            over = sids[256:]
            h.wait(lambda: all(s in h.rst for s in over) or h.goaway is not None or h.eof, 10)
            time.sleep(1.0)
            refused_within = [s for s in sids[:256] if s in h.rst]
            unrefused_over = [s for s in over if s not in h.rst and not (h.goaway is not None and h.goaway[0] < s)]
            with self.up.lock:
                count = sum(bytes(b).count(b"/mcs/") for b in self.up.raw.values())
            what = "rst codes beyond 256: %s; rst within 256: %d; goaway %s; upstream saw %d of them" % (
                sorted({ERROR_NAMES.get(h.rst[s], h.rst[s]) for s in over if s in h.rst}), len(refused_within), h.goaway, count)
            note(what)
            problems = []
            if unrefused_over:
                problems.append("%d streams over the limit were not refused (first %s)" % (len(unrefused_over), unrefused_over[:3]))
            if refused_within:
                problems.append("%d streams within the limit were reset" % len(refused_within))
            if count > 256:
                problems.append("the upstream got %d requests" % count)
            self.assertFalse(problems, "; ".join(problems) + " -- " + what)
        finally:
            h.close()
        fresh = self.fresh_connection_served()
        self.assertEqual((fresh[0], fresh[2]), (200, 200), "a fresh connection: %s" % (fresh,))

    def test_rapid_reset_flood(self):
        h = self.connect()
        try:
            cpu0 = self.gw.cpu_seconds()
            pairs, sid, batch = 0, 1, 250
            block = request_block("/rapid-reset")
            rst = lambda s: frame(RST_STREAM, 0, s, b"\x00\x00\x00\x08")  # CANCEL
            start = time.monotonic()
            while pairs < 20000 and h.goaway is None and not h.eof:
                out = bytearray()
                for _ in range(batch):
                    out += frame(HEADERS, END_HEADERS | END_STREAM, sid, block) + rst(sid)
                    sid += 2
                if not h.send_within(bytes(out), 5):
                    break
                pairs += batch
            sent = "%d HEADERS+RST_STREAM pairs sent in %.1f s (send_error=%s)" % (pairs, time.monotonic() - start, h.send_error)
            problems, what = self.flood_verdict(h, cpu0, start, sent)
        finally:
            h.close()
        self.assertFalse(problems, "; ".join(problems) + " -- " + what)

    def continuation_flood(self, payload, max_frames, max_seconds=10.0):
        h = self.connect()
        try:
            cpu0 = self.gw.cpu_seconds()
            h.send(frame(HEADERS, 0, 1, request_block("/continuation")))
            frames, batch = 0, max(1, min(1000, 65536 // (len(payload) + 9)))
            one = frame(CONTINUATION, 0, 1, payload) * batch
            start = time.monotonic()
            while frames < max_frames and h.goaway is None and not h.eof and time.monotonic() - start < max_seconds:
                if not h.send_within(one, 5):
                    break
                frames += batch
            sent = "%d CONTINUATION frames of %d bytes sent in %.1f s (send_error=%s)" % (
                frames, len(payload), time.monotonic() - start, h.send_error)
            problems, what = self.flood_verdict(h, cpu0, start, sent)
        finally:
            h.close()
        self.assertFalse(problems, "; ".join(problems) + " -- " + what)

    def test_continuation_flood_of_full_frames(self):
        # Header fields, 16 KiB a frame, never END_HEADERS: 64 MiB at most.
        field = literal("x-flood", "a" * 1000)
        payload = field * (16384 // len(field))
        self.continuation_flood(payload, max_frames=4096)

    def test_continuation_flood_of_empty_frames(self):
        self.continuation_flood(b"", max_frames=1000000)


# === the path matrix ==================================================================


ATTACK_PATHS = [
    "/x/..%2fadmin", "/x/..%2Fadmin/secret", "/%2fadmin",
    "/%2e%2e/admin", "/%2E%2E/admin", "/x/%2e%2e/admin", "/x/%2E%2e/admin/secret",
    "/x/.%2e/admin", "/x/%2e./admin", "/%2e/admin",
    "//admin", "//admin/secret", "///admin",
    "/admin;x", "/admin;x/secret", "/x/..;/admin", "/admin;/secret",
    "/x/..%5cadmin", "/%5cadmin", "/x%5c..%5cadmin", "/x/..\\admin", "/\\admin",
    "/admin%00", "/x%00/../admin", "/%00/admin",
    "/x/..%c0%afadmin", "/%c0%ae%c0%ae/admin", "/x/%c0%ae%c0%ae/admin", "/%e0%80%ae%e0%80%ae/admin",
    "/./admin", "/x/../admin", "/x/./../admin/secret", "/admin/..", "/admin/../x",
    "/%61dmin", "/%61%64%6d%69%6e/secret", "/%2561dmin", "/x/..%252fadmin",
]
NUL_PATHS = ["/admin%00", "/x%00y", "/%00"]
INVALID_UTF8_PATHS = ["/x%ff", "/x/%c0%af", "/%c0%ae%c0%ae/admin", "/x%e0%80%ae", "/x%80"]
ENCODED_SLASH_PATHS = ["/x%2fy", "/x%2Fy", "/x%5cy", "/x%5Cy"]

_UNRESERVED = re.compile(r"%(?:[46][1-9a-fA-F]|[57][0-9aA]|3[0-9]|2[dDeE]|5[fF]|7[eE])")


def canonical(path):
    """The normalized form a router matches (api.md): percent-encoded unreserved
    characters decoded, dot-segments removed, repeated slashes merged."""
    path = _UNRESERVED.sub(lambda m: chr(int(m.group(0)[1:], 16)), path)
    trailing = path.endswith("/") and len(path) > 1
    out = resolve_dots(path)
    if trailing and out != "/" and not path.rstrip("/").endswith(("/..", "/.")):
        out += "/"
    return out


class PathMatrix(unittest.TestCase):
    """`/admin` (apiKey) beside `/` (none): every attack path is either refused (4xx) or
    goes to the rule its upstream-received path satisfies, the received path in the
    normalized form the router matched: never an unauthenticated request at the admin
    upstream, never an admin-looking path at the public upstream."""

    @classmethod
    def setUpClass(cls):
        cls.public = Upstream()
        cls.admin = Upstream()
        cls.gw = Gateway(admin_beside_public(cls.public.port, cls.admin.port))
        jobs = [(p, k) for p in ATTACK_PATHS for k in (False, True)]
        cls.seen = parallel(lambda job: cls.send(*job), jobs)
        time.sleep(0.3)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.public.close()
        cls.admin.close()

    @classmethod
    def case_of(cls, path, keyed):
        return "%s%d" % ("k" if keyed else "n", ATTACK_PATHS.index(path) if path in ATTACK_PATHS else hash(path) & 0xFFFF)

    @classmethod
    def send(cls, path, keyed, case=None):
        case = case or cls.case_of(path, keyed)
        head = "GET %s HTTP/1.1\r\nHost: fd.test\r\nX-Case: %s\r\nConnection: close\r\n" % (path, case)
        if keyed:
            head += "X-Api-Key: %s\r\n" % API_KEY
        ex = exchange(cls.gw.addr, head.encode("latin-1") + b"\r\n", close_wait=0.3)
        return ex.first.status if ex.first else None

    def verdict(self, path, keyed, status, case):
        """The problems with one request's fate (empty: acceptable)."""
        at_admin = self.admin.with_case(case)
        at_public = self.public.with_case(case)
        problems = []
        for r in at_admin:
            if not keyed:
                problems.append("UNAUTHENTICATED REQUEST REACHED THE ADMIN UPSTREAM as %s" % r.target)
            elif not all(x == "/admin" or x.startswith("/admin/") for x in backend_readings(r.target)):
                problems.append("the admin upstream got %s, which some backend reads outside /admin (%s)" % (r.target, sorted(backend_readings(r.target))))
            if r.path != canonical(r.path):
                problems.append("the admin upstream got %s, not the normalized path %s" % (r.path, canonical(r.path)))
        for r in at_public:
            if under(r.target, "/admin"):
                problems.append("ADMIN-LOOKING PATH REACHED THE PUBLIC UPSTREAM as %s (read as %s)" % (r.target, sorted(backend_readings(r.target))))
            elif r.path != canonical(r.path):
                problems.append("the public upstream got %s, not the normalized path %s" % (r.path, canonical(r.path)))
        if status is None:
            problems.append("no response")
        elif not (400 <= status < 500) and not at_admin and not at_public:
            problems.append("answered %s without reaching either upstream" % status)
        return problems

    def check_path(self, path):
        lines = []
        for keyed in (False, True):
            status = self.seen[(path, keyed)]
            if isinstance(status, Exception):
                lines.append("%s: raised %r" % ("with key" if keyed else "no key", status))
                continue
            case = self.case_of(path, keyed)
            problems = self.verdict(path, keyed, status, case)
            if problems:
                got = "admin upstream %s, public upstream %s" % (
                    requests_text(self.admin.with_case(case)), requests_text(self.public.with_case(case)))
                lines.append("%s: status %s; %s; %s" % ("with key" if keyed else "no key", status, "; ".join(problems), got))
        self.assertFalse(lines, "GET %s -- %s" % (path, " | ".join(lines)))

    def test_controls(self):
        self.assertEqual(self.send("/admin/ctl", False, "ctl-n"), 401)
        self.assertEqual(self.send("/admin/ctl", True, "ctl-k"), 200)
        self.assertEqual(self.send("/pub/ctl", False, "ctl-p"), 200)
        time.sleep(0.2)
        self.assertFalse(self.admin.with_case("ctl-n"))
        self.assertEqual([r.target for r in self.admin.with_case("ctl-k")], ["/admin/ctl"])
        self.assertEqual([r.target for r in self.public.with_case("ctl-p")], ["/pub/ctl"])

    def statuses(self, paths, tag):
        out = {}
        for i, p in enumerate(paths):
            case = "%s%d" % (tag, i)
            out[p] = (self.send(p, False, case), requests_text(self.admin.with_case(case) + self.public.with_case(case)))
        return out

    def test_nul_is_400(self):
        out = self.statuses(NUL_PATHS, "nul")
        self.assertFalse({p: v for p, v in out.items() if v[0] != 400}, out)

    def test_invalid_utf8_is_400(self):
        out = self.statuses(INVALID_UTF8_PATHS, "utf")
        self.assertFalse({p: v for p, v in out.items() if v[0] != 400}, out)

    def test_encoded_slash_and_backslash_are_400(self):
        # api.md: "a request whose path holds an encoded / or \ (%2F, %5C) is answered
        # 400 unless the rule opts in"; neither rule here opts in.
        out = self.statuses(ENCODED_SLASH_PATHS, "slash")
        self.assertFalse({p: v for p, v in out.items() if v[0] != 400}, out)

    def test_h2_path_matrix(self):
        # The same paths as HTTP/2 `:path`s (sent byte for byte, no client-side
        # normalization), without a key.
        failures = []
        h = None
        for i, path in enumerate(ATTACK_PATHS):
            case = "h2p%d" % i
            if h is None or h.eof or h.goaway is not None:
                if h is not None:
                    h.close()
                h = H2Raw(self.gw.addr)
                h.wait(lambda: h.settings_seen, 5)
                sid = 1
            h.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, request_block(path, extra=[("x-case", case)])))
            h.wait(lambda: sid in h.ended or sid in h.rst or h.goaway is not None or h.eof, 5)
            outcome = h.stream_outcome(sid)
            status = h.status(sid)
            sid += 2
            time.sleep(0.05)
            if status is None:
                if outcome == "nothing":
                    failures.append("%s: no answer" % path)
                if self.admin.with_case(case):
                    failures.append("%s: %s, yet the admin upstream got %s" % (path, outcome, requests_text(self.admin.with_case(case))))
                if any(under(r.target, "/admin") for r in self.public.with_case(case)):
                    failures.append("%s: %s, yet the public upstream got %s" % (path, outcome, requests_text(self.public.with_case(case))))
                continue
            problems = self.verdict(path, False, status, case)
            if problems:
                failures.append("%s: status %s; %s" % (path, status, "; ".join(problems)))
        if h is not None:
            h.close()
        self.assertFalse(failures, "\n" + "\n".join(failures))


for _path in ATTACK_PATHS:
    setattr(PathMatrix, "test_path_%02d_%s" % (ATTACK_PATHS.index(_path), method_name(_path)),
            (lambda p: lambda self: self.check_path(p))(_path))


if __name__ == "__main__":
    unittest.main(verbosity=2)
