"""Measures the WAF's false-positive and true-positive rates against the built binary.

Starts the echo upstream and, for each configuration, `gatehouse run` on a folder with
one ApiRoute under the configuration's path prefix; sends every item of corpus.py
(benign API traffic and encoded attacks) under that prefix over a raw socket
(`Connection: close`), and counts:

  blocked by the WAF   403 with Content-Type application/problem+json
  refused by gateway   400 (the HTTP parser, the path checks of the front door, or the
                       request schema): reported in its own column, never as a WAF block
  passed               anything else

and reports per configuration: FP = benign blocked / benign, TP (WAF) = attacks blocked
by the WAF / attacks, TP (gateway) = attacks answered 403 or 400 / attacks, TP per class,
the false positives (with the rule and field the `waf match` log line names) and the
false negatives by class.

Configurations (each under its own prefix):
  native          waf with the six native rules, no Core Rule Set, no validation
  native+schema   the same, plus validation.request.schema on /api/v1/orders and
                  /api/v1/tickets (one rule each), so that schema awareness applies
  crs-pl1(+schema), crs-pl2(+schema)
                  waf {rules: [], coreRuleSet: {enabled: true, paranoiaLevel: 1|2}};
                  schema awareness only affects the native rules, measured anyway

Usage: measure.py [--bin PATH] [--echo PATH] [--only CONFIG[,CONFIG]] [--json FILE]
                  [--check] [--require-crs] [--jobs N] [--full] [--keep] [--corpus NAME]
  --bin        the gateway (default $GATEHOUSE_BIN, else target/debug/gatehouse)
  --echo       the echo upstream (default $GATEHOUSE_ECHO_BIN, else target/debug/gatehouse-echo)
  --check      exit 1 unless native FP <= 1% and native TP (WAF) >= 95%
  --require-crs  a CRS configuration that cannot load is an error (else it is skipped)
  --full       list every false positive / negative (default: at most 25 per list)
  --keep       keep the temporary folder (manifests and logs) and print its path
  --corpus     the corpus module of this folder to send (default `corpus`, i.e. corpus.py;
               `holdout` is holdout.py, the held-out corpus written apart from the detectors)
Exit: 0 ok, 1 a --check target missed (or a required CRS configuration could not load),
2 the measurement could not be made.
"""

import argparse
import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import corpus  # noqa: E402

TARGET_FP = 0.01
TARGET_TP = 0.95
HOST = "api.example.com"
SHORT = {"SqlInjection": "SQLi", "CrossSiteScripting": "XSS", "PathTraversal": "Trav",
         "CommandInjection": "CmdI", "ScannerDetection": "Scan", "ProtocolViolation": "Proto"}


# === configurations ===================================================================

NATIVE = {"mode": "Block"}


def crs(level):
    return {"mode": "Block", "rules": [], "coreRuleSet": {"enabled": True, "paranoiaLevel": level}}


CONFIGS = [
    ("native", "/native", NATIVE, False),
    ("native+schema", "/native-schema", NATIVE, True),
    ("crs-pl1", "/crs1", crs(1), False),
    ("crs-pl1+schema", "/crs1-schema", crs(1), True),
    ("crs-pl2", "/crs2", crs(2), False),
    ("crs-pl2+schema", "/crs2-schema", crs(2), True),
]


def manifests(prefix, waf, schema, echo_port):
    """The configuration's manifests: YAML documents (written as JSON, which is YAML)."""
    rules = []
    if schema:
        for path, sch in corpus.SCHEMA_PATHS.items():
            rules.append({
                "name": path.rsplit("/", 1)[1],
                "matches": [{"path": {"type": "Prefix", "value": prefix + path}}],
                "backends": [{"upstream": "echo"}],
                "policies": {"waf": waf, "validation": {"request": {"schema": sch}}},
            })
    rules.append({
        "name": "rest",
        "matches": [{"path": {"type": "Prefix", "value": prefix}}],
        "backends": [{"upstream": "echo"}],
        "policies": {"waf": waf},
    })
    # Dot segments the front door resolves can climb out of the prefix
    # (`/native/api/v1/files/%2e%2e/...` x6): a catch-all with the same waf stands for the
    # rest of a real route table, so that such a request still meets the WAF (not a 404).
    rules.append({
        "name": "catch-all",
        "matches": [{"path": {"type": "Prefix", "value": "/"}}],
        "backends": [{"upstream": "echo"}],
        "policies": {"waf": waf},
    })
    docs = [
        {"apiVersion": "gatehouse.dev/v1alpha1", "kind": "Upstream", "metadata": {"name": "echo"},
         "spec": {"endpoints": [{"host": "127.0.0.1", "port": echo_port}]}},
        {"apiVersion": "gatehouse.dev/v1alpha1", "kind": "ApiRoute",
         "metadata": {"name": prefix.strip("/")}, "spec": {"rules": rules}},
    ]
    return "".join("---\n" + json.dumps(d, indent=2, ensure_ascii=False) + "\n" for d in docs)


# === processes ========================================================================


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Gateway:
    """`gatehouse run` on one configuration's folder; `error` says why it is not ready."""

    def __init__(self, binary, folder, name, text):
        self.dir = os.path.join(folder, re.sub(r"[^a-z0-9-]", "_", name))
        os.makedirs(os.path.join(self.dir, "manifests"))
        with open(os.path.join(self.dir, "manifests", "gateway.yaml"), "w") as f:
            f.write(text)
        self.http, self.admin = free_port(), free_port()
        self.log_path = os.path.join(self.dir, "gatehouse.log")
        self.log = open(self.log_path, "wb")
        self.error = None
        self.proc = subprocess.Popen(
            [binary, "run", "-f", os.path.join(self.dir, "manifests"),
             "--http", "127.0.0.1:%d" % self.http, "--admin", "127.0.0.1:%d" % self.admin,
             "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.error = "gatehouse exited with %s: %s" % (self.proc.returncode, self.why())
                return
            if self.ready():
                return
            time.sleep(0.05)
        self.error = "gatehouse was not ready within 30s: " + self.why()

    def ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.admin, timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def why(self):
        """The log lines that say why the table was refused (else the log's tail)."""
        text = self.log_text()
        lines = [line for line in text.splitlines() if "coreRuleSet" in line or "refus" in line or "error" in line.lower()]
        out = (lines[0] if lines else text[-1500:]).strip()
        return out

    def stop(self):
        stop(self.proc)
        self.log.close()


# === a raw HTTP/1.1 client ============================================================


def wire(item, prefix):
    """The request's bytes: the target as the corpus spells it, under `prefix`."""
    names = [n.lower() for n, _ in item["headers"]]
    lines = ["%s %s%s HTTP/1.1" % (item["method"], prefix, item["path"])]
    if "host" not in names:
        lines.append("Host: " + HOST)
    lines += ["%s: %s" % (n, v) for n, v in item["headers"]]
    if item["content_type"] is not None:
        lines.append("Content-Type: " + item["content_type"])
    if item["body"] is not None:
        lines.append("Content-Length: %d" % len(item["body"]))
    lines.append("Connection: close")
    head = "\r\n".join(lines) + "\r\n\r\n"
    try:
        raw = head.encode("latin-1")
    except UnicodeEncodeError:
        raw = head.encode("utf-8")
    return raw + (item["body"] or b"")


def send(port, data, timeout=20.0):
    """(status, {header: value}, body) of the answer; status 0 when none came."""
    buf = bytearray()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            try:
                s.sendall(data)
            except OSError:
                pass  # answered and closed early: read what came
            while True:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not chunk:
                    break
                buf += chunk
    except OSError as e:
        return 0, {}, str(e).encode()
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0] if lines else "")
    if not m:
        return 0, {}, bytes(buf[:200])
    headers = {}
    for line in lines[1:]:
        n, _, v = line.partition(":")
        headers.setdefault(n.strip().lower(), v.strip())
    return int(m.group(1)), headers, body


# === one configuration ================================================================


def waf_matches(log_text):
    """{request_id: (waf_rule, field, value)} from the `waf match` log lines."""
    out = {}
    for line in log_text.splitlines():
        if "waf match" not in line:
            continue
        try:
            f = json.loads(line).get("fields", {})
            out[f.get("request_id", "")] = (f.get("waf_rule", "?"), f.get("field", "?"), f.get("value", ""))
            continue
        except ValueError:
            pass
        get = lambda k: (re.search(r'\b%s=("(?:[^"\\]|\\.)*"|\S+)' % k, line) or [None, "?"])[1].strip('"')
        out[get("request_id")] = (get("waf_rule"), get("field"), get("value"))
    return out


def run_config(name, prefix, gw, items, jobs):
    def one(item):
        status, headers, body = send(gw.http, wire(item, prefix))
        ctype = headers.get("content-type", "")
        return {
            "status": status,
            "waf": status == 403 and ctype.split(";")[0].strip() == "application/problem+json",
            "refused": status == 400,
            "upstream": "x-echo-server" in headers,
            "rid": headers.get("x-request-id", ""),
            "detail": "" if status in (200, 204) else body[:300].decode("utf-8", "replace"),
        }

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        answers = list(pool.map(one, items))
    elapsed = time.monotonic() - started
    gw.stop()
    matches = waf_matches(gw.log_text())
    for a in answers:
        a["match"] = matches.get(a["rid"])
    return answers, elapsed


def summarize(items, answers):
    benign = [(it, a) for it, a in zip(items, answers) if it["kind"] == "benign"]
    attacks = [(it, a) for it, a in zip(items, answers) if it["kind"] == "attack"]
    s = {
        "benign": len(benign),
        "fp": sum(a["waf"] for _, a in benign),
        "attacks": len(attacks),
        "tp_waf": sum(a["waf"] for _, a in attacks),
        "tp_gateway": sum(a["waf"] or a["refused"] for _, a in attacks),
        "classes": {},
        "false_positives": [],
        "false_negatives": {},
        "benign_not_served": [],
    }
    s["fp_rate"] = s["fp"] / max(1, s["benign"])
    s["tp_waf_rate"] = s["tp_waf"] / max(1, s["attacks"])
    s["tp_gateway_rate"] = s["tp_gateway"] / max(1, s["attacks"])
    for c in corpus.CLASSES:
        cls = [(it, a) for it, a in attacks if it["class"] == c]
        waf = sum(a["waf"] for _, a in cls)
        gw = sum(a["waf"] or a["refused"] for _, a in cls)
        s["classes"][c] = {"total": len(cls), "waf": waf, "gateway": gw,
                           "waf_rate": waf / max(1, len(cls)), "gateway_rate": gw / max(1, len(cls))}
        s["false_negatives"][c] = [
            {"id": it["id"], "status": a["status"], "note": it["note"], "placement": it.get("placement"),
             "encoding": it.get("encoding"), "detail": a["detail"][:160]}
            for it, a in cls if not a["waf"]]
    for it, a in benign:
        if a["waf"]:
            rule, field, value = a["match"] or ("?", "?", "")
            s["false_positives"].append({"id": it["id"], "rule": rule, "field": field, "value": value,
                                         "method": it["method"], "path": it["path"], "note": it["note"],
                                         "excerpt": excerpt(it, field)})
        elif not (200 <= a["status"] < 300):
            s["benign_not_served"].append({"id": it["id"], "status": a["status"], "detail": a["detail"][:200]})
    return s


# === excerpts: the value the log names, from the corpus item ===========================


def _params(s):
    for pair in s.split("&"):
        if pair:
            k, _, v = pair.partition("=")
            yield urllib.parse.unquote_plus(k), v


def _json_at(body, parts):
    doc = json.loads(body)
    for part in parts:
        m = re.fullmatch(r"(?:array_)?(\d+)", part)
        doc = doc[int(m.group(1))] if isinstance(doc, list) and m else doc[part]
    return doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False)


def excerpt(item, field, width=180):
    """The value a `waf match` field names (native: query:q, body:/a/b, header:x, ...;
    CRS: ARGS:q, ARGS:json.a.b, REQUEST_HEADERS:x, REQUEST_COOKIES:x, ...)."""
    kind, _, name = field.partition(":")
    crs = {"ARGS": None, "ARGS_NAMES": None, "REQUEST_HEADERS": "header", "REQUEST_COOKIES": "cookie",
           "REQUEST_COOKIES_NAMES": "cookie", "REQUEST_FILENAME": "path", "REQUEST_BASENAME": "path",
           "REQUEST_URI": "path", "REQUEST_LINE": "path"}
    if kind in crs:
        if kind in ("ARGS", "ARGS_NAMES"):
            if name.startswith("json.") and item["body"]:
                try:
                    return _clip(_json_at(item["body"], name.split(".")[1:]), width)
                except (KeyError, IndexError, ValueError, TypeError):
                    pass
            query_has = "?" in item["path"] and any(k == name for k, _ in _params(item["path"].split("?", 1)[1]))
            kind = "query" if query_has or not item["body"] else "form"
        else:
            kind = crs[kind]
        name = name.lower() if kind == "header" else name
    if kind == "REQUEST_METHOD":
        return _clip("%s %s" % (item["method"], item["path"]), width)
    value = None
    try:
        if kind == "query":
            q = item["path"].split("?", 1)[1] if "?" in item["path"] else ""
            value = next((urllib.parse.unquote_plus(v) for k, v in _params(q) if k == name), None)
        elif kind == "path":
            value = urllib.parse.unquote(item["path"].split("?", 1)[0])
        elif kind == "header":
            value = next((v for n, v in item["headers"] if n.lower() == name), None)
        elif kind == "cookie":
            cookie = next((v for n, v in item["headers"] if n.lower() == "cookie"), "")
            value = next((c.split("=", 1)[1] for c in (x.strip() for x in cookie.split(";")) if c.split("=", 1)[0] == name), None)
        elif kind == "form":
            value = next((urllib.parse.unquote_plus(v) for k, v in _params(item["body"].decode("utf-8", "replace")) if k == name), None)
        elif kind == "body" and name.startswith("/"):
            doc = json.loads(item["body"])
            for part in name.split("/")[1:]:
                part = part.replace("~1", "/").replace("~0", "~")
                doc = doc[int(part)] if isinstance(doc, list) else doc[part]
            value = doc if isinstance(doc, str) else json.dumps(doc)
    except (KeyError, IndexError, ValueError, TypeError, StopIteration):
        value = None
    if value is None:
        value = item["body"].decode("utf-8", "replace") if item["body"] else item["path"]
    return _clip(value, width)


def _clip(value, width):
    value = "".join(c if c.isprintable() else "\\n" if c == "\n" else "\\x%02x" % ord(c) if ord(c) < 256 else "?" for c in value)
    return value if len(value) <= width else value[: width - 1] + "…"


# === report ===========================================================================


def rule_ids(value):
    """The CRS rule ids of a log value ("CRS rules 942100,949110 (..)"), without the
    anomaly-score rule 949110."""
    return [r for r in re.findall(r"\b9\d{5}\b", value) if r != "949110"]


def pct(x):
    return "%5.1f%%" % (100 * x)


def table(results, counts):
    print()
    print("WAF measurement: %d benign requests, %d attacks (%s)" % (
        counts["benign"], counts["attack"],
        ", ".join("%s %d" % (SHORT[c], counts[c]) for c in corpus.CLASSES)))
    print("blocked = 403 application/problem+json; gateway = 403 or 400 (HTTP parser, path checks, schema)")
    print()
    head = "%-16s %-16s %-16s %-16s" % ("configuration", "FP (benign)", "TP (WAF)", "TP (gateway)")
    head += "".join(" %6s" % SHORT[c] for c in corpus.CLASSES)
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        if r["status"] != "measured":
            print("%-16s %s" % (name, "SKIPPED: " + r["reason"][:90] + ("…" if len(r["reason"]) > 90 else "")))
            continue
        s = r["summary"]
        line = "%-16s %-16s %-16s %-16s" % (
            name,
            "%3d/%d %s" % (s["fp"], s["benign"], pct(s["fp_rate"]).strip()),
            "%3d/%d %s" % (s["tp_waf"], s["attacks"], pct(s["tp_waf_rate"]).strip()),
            "%3d/%d %s" % (s["tp_gateway"], s["attacks"], pct(s["tp_gateway_rate"]).strip()))
        line += "".join(" %6s" % pct(s["classes"][c]["waf_rate"]) for c in corpus.CLASSES)
        print(line)
    measured = {n: r for n, r in results.items() if r["status"] == "measured"}
    if measured:
        print()
        print("per class, WAF (403) / gateway (403 or 400), blocked of total:")
        print("%-16s" % "" + "".join(" %-13s" % SHORT[c] for c in corpus.CLASSES))
        for name, r in measured.items():
            cl = r["summary"]["classes"]
            print("%-16s" % name + "".join(" %-13s" % ("%d/%d/%d" % (cl[c]["waf"], cl[c]["gateway"], cl[c]["total"])) for c in corpus.CLASSES))
        if any(n.startswith("crs") and n.endswith("+schema") for n in measured):
            print("note: schema awareness affects the native rules only; crs-*+schema differ from crs-* only by the schema's own 400s.")


def details(results, full):
    cap = None if full else 25
    for name, r in results.items():
        if r["status"] != "measured":
            continue
        s = r["summary"]
        print()
        print("=== %s: %d false positives (of %d benign), %d false negatives (of %d attacks), %.1fs" % (
            name, s["fp"], s["benign"], s["attacks"] - s["tp_waf"], s["attacks"], r["seconds"]))
        fps = s["false_positives"]
        if fps:
            crs_ids = Counter()
            for fp in fps:
                if fp["rule"] == "CoreRuleSet":
                    crs_ids.update(rule_ids(fp["value"]))
            print("false positives by rule: " + ", ".join("%s %d" % kv for kv in Counter(fp["rule"] for fp in fps).most_common()))
            if crs_ids:
                print("CRS rules among them: " + ", ".join("%s %d" % kv for kv in crs_ids.most_common(20)))
            for fp in fps[:cap]:
                rule = fp["rule"] if fp["rule"] != "CoreRuleSet" else "CRS " + ",".join(rule_ids(fp["value"]))
                print("  %-15s %-18s %-22s %s %s" % (fp["id"], rule, fp["field"][:22], fp["method"], fp["path"][:70]))
                print("  %15s %s" % ("", fp["excerpt"]))
            if cap and len(fps) > cap:
                print("  ... %d more (--full)" % (len(fps) - cap))
        if s["benign_not_served"]:
            print("benign requests answered neither 2xx nor by the WAF (corpus or gateway problem):")
            for b in s["benign_not_served"][:cap]:
                print("  %-15s %d %s" % (b["id"], b["status"], b["detail"].replace("\n", " ")[:150]))
        fns = {c: v for c, v in s["false_negatives"].items() if v}
        if fns:
            missed = [fn for v in fns.values() for fn in v]
            print("false negatives by placement: " + ", ".join("%s %d" % kv for kv in Counter(fn["placement"] for fn in missed).most_common()))
            print("false negatives by encoding: " + ", ".join("%s %d" % kv for kv in Counter(fn["encoding"] for fn in missed).most_common()))
            print("false negatives (not blocked by the WAF; status 400 = refused by the gateway instead):")
            for c, lst in fns.items():
                print("  %s (%d):" % (c, len(lst)))
                for fn in lst[:cap]:
                    print("    %-10s %3d  %s" % (fn["id"], fn["status"], fn["note"].replace("\n", "\\n")[:150]))
                if cap and len(lst) > cap:
                    print("    ... %d more (--full)" % (len(lst) - cap))


# === main =============================================================================


def resolve(path, env, default):
    p = path or os.environ.get(env) or default
    return p if os.path.isabs(p) else os.path.join(REPO, p)


def main(argv):
    global corpus
    ap = argparse.ArgumentParser(description="WAF false/true-positive rates against the built gateway")
    ap.add_argument("--bin")
    ap.add_argument("--echo")
    ap.add_argument("--only", help="comma-separated configurations: " + ", ".join(c[0] for c in CONFIGS))
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--require-crs", action="store_true")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--corpus", default="corpus", metavar="NAME",
                    help="corpus module in %s (default: corpus; holdout: the held-out corpus)" % HERE)
    args = ap.parse_args(argv)

    if args.corpus != "corpus":
        if not re.fullmatch(r"[A-Za-z_]\w*", args.corpus) or not os.path.isfile(os.path.join(HERE, args.corpus + ".py")):
            print("measure: no corpus module %r in %s" % (args.corpus, HERE), file=sys.stderr)
            return 2
        corpus = importlib.import_module(args.corpus)

    binary = resolve(args.bin, "GATEHOUSE_BIN", "target/debug/gatehouse")
    echo_bin = resolve(args.echo, "GATEHOUSE_ECHO_BIN", "target/debug/gatehouse-echo")
    for what, p in (("gatehouse", binary), ("gatehouse-echo", echo_bin)):
        if not os.access(p, os.X_OK):
            print("measure: no %s binary at %s (build it, or pass --bin/--echo)" % (what, p), file=sys.stderr)
            return 2
    configs = CONFIGS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in [c[0] for c in CONFIGS]]
        if unknown:
            print("measure: unknown configuration(s) %s; known: %s" % (", ".join(unknown), ", ".join(c[0] for c in CONFIGS)), file=sys.stderr)
            return 2
        configs = [c for c in CONFIGS if c[0] in wanted]

    items = corpus.build()
    bad = corpus.schema_errors(items)
    if bad:
        print("measure: benign bodies that do not conform to their schema: %s" % ", ".join(sorted(bad)), file=sys.stderr)
        return 2
    counts = {"benign": sum(it["kind"] == "benign" for it in items), "attack": sum(it["kind"] == "attack" for it in items)}
    counts.update({c: sum(it["class"] == c for it in items) for c in corpus.CLASSES})

    folder = tempfile.mkdtemp(prefix="gatehouse-waf-")
    echo_port = free_port()
    echo_log = open(os.path.join(folder, "echo.log"), "wb")
    echo = subprocess.Popen([echo_bin, "127.0.0.1:%d" % echo_port], stdout=echo_log, stderr=subprocess.STDOUT)
    results = {}
    crs_errors = []
    try:
        if not wait_port(echo_port, echo):
            print("measure: the echo upstream did not start (%s)" % echo_bin, file=sys.stderr)
            return 2
        print("measure: %s, %d items%s, %d configuration(s)" % (
            binary, len(items), "" if args.corpus == "corpus" else " (corpus %s)" % args.corpus, len(configs)), flush=True)
        for name, prefix, waf, schema in configs:
            gw = Gateway(binary, folder, name, manifests(prefix, waf, schema, echo_port))
            if gw.error:
                gw.stop()
                if "coreRuleSet" not in waf:
                    print("measure: %s: %s" % (name, gw.error), file=sys.stderr)
                    return 2
                installed = not re.search(r"not installed|needs |install the|no such file", gw.error, re.I)
                # "...rule "rest" policy waf: coreRuleSet: CAUSE: default/crs1 rule "rest" policy waf: ..."
                cause = gw.error.split("coreRuleSet: ", 1)[-1]
                cause = re.sub(r': [\w.-]+/[\w.-]+ rule "[^"]*" policy .*$', "", cause, flags=re.S)
                reason = ("the Core Rule Set is installed but gatehouse refused to load it: "
                          if installed else "the Core Rule Set is not available (install libmodsecurity3 and modsecurity-crs): ") + cause
                results[name] = {"status": "skipped", "reason": reason, "log": gw.error}
                crs_errors.append((name, reason))
                same = len(crs_errors) > 1 and crs_errors[-2][1] == reason
                print("measure: %s skipped: %s" % (name, "(same reason)" if same else reason), flush=True)
                continue
            answers, seconds = run_config(name, prefix, gw, items, args.jobs)
            results[name] = {"status": "measured", "prefix": prefix, "seconds": round(seconds, 2),
                             "summary": summarize(items, answers)}
            s = results[name]["summary"]
            print("measure: %s: %d requests in %.1fs (FP %s, TP %s)" % (
                name, len(items), seconds, pct(s["fp_rate"]).strip(), pct(s["tp_waf_rate"]).strip()), flush=True)
    finally:
        stop(echo)
        echo_log.close()
        if args.keep:
            print("measure: kept %s" % folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    table(results, counts)
    details(results, args.full)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"binary": binary, "corpus": counts, **({} if args.corpus == "corpus" else {"corpus_module": args.corpus}), "targets": {"fp_max": TARGET_FP, "tp_min": TARGET_TP},
                       "configurations": results}, f, indent=2, ensure_ascii=False)
        print("\nmeasure: wrote %s" % args.json)

    rc = 0
    if args.require_crs and crs_errors:
        print()
        by_reason = {}
        for name, reason in crs_errors:
            by_reason.setdefault(reason, []).append(name)
        for reason, names in by_reason.items():
            print("FAILED (--require-crs): %s could not be measured: %s" % (", ".join(names), reason))
        rc = 1
    if args.check:
        print()
        native = results.get("native")
        if not native or native["status"] != "measured":
            print("CHECK FAILED: the native configuration was not measured")
            return 1
        s = native["summary"]
        ok = True
        if s["fp_rate"] > TARGET_FP:
            print("CHECK FAILED: native false-positive rate %.2f%% (%d/%d) is above the %.0f%% target" % (
                100 * s["fp_rate"], s["fp"], s["benign"], 100 * TARGET_FP))
            ok = False
        if s["tp_waf_rate"] < TARGET_TP:
            print("CHECK FAILED: native true-positive rate (WAF) %.2f%% (%d/%d) is below the %.0f%% target" % (
                100 * s["tp_waf_rate"], s["tp_waf"], s["attacks"], 100 * TARGET_TP))
            ok = False
        if ok:
            print("CHECK PASSED: native FP %.2f%% <= %.0f%%, TP (WAF) %.2f%% >= %.0f%%" % (
                100 * s["fp_rate"], 100 * TARGET_FP, 100 * s["tp_waf_rate"], 100 * TARGET_TP))
        else:
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
