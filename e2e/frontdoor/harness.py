"""The front-door abuse suite's harness: the built `gatehouse run` on free ports, recording
upstreams, a raw HTTP/1.1 client that sends exactly the bytes a test writes, and a raw
HTTP/2 frame client (hpack for header blocks) for floods the h2 library refuses to send.

Standard library + `h2` (and its `hpack`) only.
"""

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import hpack

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def gatehouse_bin():
    """The binary under test: $GATEHOUSE_BIN, else target/debug/gatehouse of the repo."""
    path = os.environ.get("GATEHOUSE_BIN", "target/debug/gatehouse")
    if not os.path.isabs(path):
        path = os.path.join(REPO, path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_header(headers, name):
    """The first value of header `name` (any case) among `(name, value)` pairs, or None."""
    for n, v in headers:
        if n.lower() == name.lower():
            return v
    return None


# === recording upstreams ===============================================================


class Recorded:
    """One request as an upstream parsed it."""

    def __init__(self, conn, method, target, version, headers, body):
        self.conn = conn
        self.method = method
        self.target = target  # raw request-target, bytes decoded as latin-1
        self.version = version
        self.headers = headers  # [(name, value)] as received, latin-1
        self.body = body
        self.at = time.monotonic()

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    def header(self, name):
        return first_header(self.headers, name)

    def __repr__(self):
        return "%s %s (x-case=%s, %d body bytes)" % (
            self.method, self.target, self.header("x-case"), len(self.body))


class Upstream:
    """A threaded raw-socket HTTP/1.1 server that records every request and every byte.

    `response` is the raw bytes answered to each request (default: 200 "ok",
    keep-alive). When `close_after` is set the connection is closed after each answer.
    """

    OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self, response=None, close_after=False):
        self.response = response or self.OK
        self.close_after = close_after
        self.lock = threading.Lock()
        self.requests = []
        self.raw = {}  # connection number -> bytearray of everything received
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    # --- queries ---
    def seen_bytes(self, token):
        """Whether any byte sequence the upstream received contains `token`."""
        if isinstance(token, str):
            token = token.encode()
        with self.lock:
            return any(token in bytes(b) for b in self.raw.values())

    def with_case(self, case):
        with self.lock:
            return [r for r in self.requests if r.header("x-case") == case]

    def matching(self, pred):
        with self.lock:
            return [r for r in self.requests if pred(r)]

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    # --- serving ---
    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.raw[n] = bytearray()
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn, n):
        buf = bytearray()

        def fill():
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                raise EOFError
            with self.lock:
                self.raw[n].extend(data)
            buf.extend(data)

        def read_until(sep):
            while True:
                i = buf.find(sep)
                if i >= 0:
                    out = bytes(buf[:i])
                    del buf[: i + len(sep)]
                    return out
                fill()

        def read_exact(k):
            while len(buf) < k:
                fill()
            out = bytes(buf[:k])
            del buf[:k]
            return out

        try:
            while True:
                head = read_until(b"\r\n\r\n")
                if not head.strip():
                    continue
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                method, target, version = (parts + ["", "", ""])[:3]
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.append((name.strip(), value.strip()))
                hmap = {}
                for k, v in headers:
                    hmap.setdefault(k.lower(), []).append(v)
                body = b""
                te = ",".join(hmap.get("transfer-encoding", [])).lower()
                if "chunked" in te:
                    chunks = []
                    while True:
                        size = int(read_until(b"\r\n").split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while read_until(b"\r\n"):
                                pass  # trailers
                            break
                        chunks.append(read_exact(size))
                        read_until(b"\r\n")
                    body = b"".join(chunks)
                elif "content-length" in hmap:
                    body = read_exact(int(hmap["content-length"][0]))
                with self.lock:
                    self.requests.append(Recorded(n, method, target, version, headers, body))
                conn.sendall(self.response)
                if self.close_after or "close" in ",".join(hmap.get("connection", [])).lower():
                    break
        except (EOFError, OSError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


# === the gateway process ==============================================================


class Gateway:
    """`gatehouse run -f DIR` over `manifests` (YAML text) on free ports, once ready."""

    def __init__(self, manifests, workers=2):
        binary = gatehouse_bin()
        if not os.access(binary, os.X_OK):
            raise RuntimeError("gatehouse binary not found at %s (set GATEHOUSE_BIN)" % binary)
        self.dir = tempfile.mkdtemp(prefix="gatehouse-frontdoor-")
        os.mkdir(os.path.join(self.dir, "manifests"))
        with open(os.path.join(self.dir, "manifests", "gateway.yaml"), "w") as f:
            f.write(manifests)
        self.http_port, self.admin_port = free_port(), free_port()
        self.addr = ("127.0.0.1", self.http_port)
        self.log_path = os.path.join(self.dir, "gatehouse.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "run", "-f", os.path.join(self.dir, "manifests"),
             "--http", "127.0.0.1:%d" % self.http_port,
             "--admin", "127.0.0.1:%d" % self.admin_port,
             "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gatehouse exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            if self.admin_status("/readyz") == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("gatehouse never became ready: " + self.log_tail())

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def admin_status(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin_port, path), timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def admin_json(self, path):
        import json
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin_port, path), timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")

    def explain(self, path):
        """The admin /explain answer for `GET http://fd.test{path}` (path sent as is)."""
        url = "http://fd.test" + path
        return self.admin_json("/explain?method=GET&url=" + urllib.parse.quote(url, safe=""))

    def cpu_seconds(self):
        """utime + stime of the gateway process, in seconds (from /proc/PID/stat)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # after the ")" the fields start at field 3 (state): utime is 14, stime 15
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if os.environ.get("FRONTDOOR_KEEP"):
            print("frontdoor: kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# === a raw HTTP/1.1 client ============================================================


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name):
        return first_header(self.headers, name)

    def __repr__(self):
        return "%d %s (%d body bytes)" % (self.status, self.reason, len(self.body))


class Raw:
    """One TCP connection to the gateway, written and read byte for byte."""

    def __init__(self, addr, timeout=5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False  # the gateway closed (FIN)
        self.reset = False  # the gateway reset the connection
        self.send_error = None

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError as e:  # the gateway answered and closed early
            self.send_error = e
            return False

    def _fill(self, deadline):
        """Reads more; False on EOF/reset/deadline."""
        if self.eof or self.reset:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.reset = True
            return False
        except OSError:
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf.extend(data)
        return True

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if not self._fill(deadline):
                return None

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, timeout=5.0, head_only=False):
        """One response, or None when none (complete) arrived within `timeout`."""
        deadline = time.monotonic() + timeout
        line = self._line(deadline)
        while line == b"":
            line = self._line(deadline)
        if line is None:
            return None
        parts = line.decode("latin-1").split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            return Response(-1, line.decode("latin-1"), [], b"")
        headers = []
        while True:
            h = self._line(deadline)
            if h is None:
                return Response(status, parts[2] if len(parts) > 2 else "", headers, b"")
            if h == b"":
                break
            n, _, v = h.decode("latin-1").partition(":")
            headers.append((n.strip(), v.strip()))
        resp = Response(status, parts[2] if len(parts) > 2 else "", headers, b"")
        if head_only or status in (204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        cl = resp.header("content-length")
        if "chunked" in te:
            chunks = []
            while True:
                size_line = self._line(deadline)
                if size_line is None:
                    break
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._line(deadline):
                        pass
                    break
                chunks.append(self._exact(size, deadline) or b"")
                self._line(deadline)
            resp.body = b"".join(chunks)
        elif cl is not None:
            resp.body = self._exact(int(cl), deadline) or b""
        else:
            while self._fill(deadline):
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
        return resp

    def wait_closed(self, timeout):
        """Waits up to `timeout` for the gateway to close; returns True when it did.
        Bytes that arrive meanwhile are kept in `buf` (a further response)."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        return self.eof or self.reset

    @property
    def closed(self):
        return self.eof or self.reset

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Exchange:
    """What one connection saw: responses in order, and whether the gateway closed it."""

    def __init__(self, responses, closed, leftover, send_error):
        self.responses = responses
        self.closed = closed
        self.leftover = leftover
        self.send_error = send_error

    @property
    def first(self):
        return self.responses[0] if self.responses else None

    def describe(self):
        return "responses=%s closed=%s leftover=%r%s" % (
            [r.status for r in self.responses], self.closed, bytes(self.leftover[:80]),
            " send_error=%s" % self.send_error if self.send_error else "")


def exchange(addr, data, timeout=5.0, close_wait=2.0):
    """Sends `data` on a fresh connection, reads the first response, then every further
    response (a smuggled request's) until the gateway closes or `close_wait` passes."""
    c = Raw(addr, timeout=timeout)
    try:
        c.send(data)
        responses = []
        first = c.read_response(timeout)
        if first is not None:
            responses.append(first)
            deadline = time.monotonic() + close_wait
            while time.monotonic() < deadline:
                more = c.read_response(max(0.01, deadline - time.monotonic()))
                if more is None:
                    break
                responses.append(more)
            c.wait_closed(max(0.0, deadline - time.monotonic()))
        return Exchange(responses, c.closed, c.buf, c.send_error)
    finally:
        c.close()


def request(addr, method, target, headers=(), body=b"", host="fd.test", close=True, timeout=5.0):
    """A well-formed request (Connection: close unless `close` is False): its response."""
    head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, host)
    for n, v in headers:
        head += "%s: %s\r\n" % (n, v)
    if body:
        head += "Content-Length: %d\r\n" % len(body)
    if close:
        head += "Connection: close\r\n"
    c = Raw(addr, timeout=timeout)
    try:
        c.send(head.encode("latin-1") + b"\r\n" + body)
        return c.read_response(timeout)
    finally:
        c.close()


# === HTTP/2 ==========================================================================

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_MAX_FRAME_SIZE, SETTINGS_MAX_HEADER_LIST_SIZE = 0x3, 0x5, 0x6
ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
               4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
               8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
               12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid & 0x7FFFFFFF) + payload


def literal(name, value):
    """An hpack 'literal header field without indexing, new name' (no Huffman): any bytes."""
    if isinstance(name, str):
        name = name.encode("latin-1")
    if isinstance(value, str):
        value = value.encode("latin-1")
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def hpack_int(n, prefix):
    limit = (1 << prefix) - 1
    if n < limit:
        return bytes([n])
    out = bytearray([limit])
    n -= limit
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def request_block(path, method="GET", authority="fd.test", extra=()):
    """A header block built from literals only (no dynamic table state): any bytes go."""
    block = literal(":method", method) + literal(":scheme", "http") + literal(":authority", authority) + literal(":path", path)
    for n, v in extra:
        block += literal(n, v)
    return block


class H2Raw:
    """An h2c (prior knowledge) connection spoken frame by frame. A reader thread records
    every frame, acknowledges SETTINGS and PING, and decodes response header blocks."""

    def __init__(self, addr, timeout=10.0, settings=b""):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.wlock = threading.Lock()
        self.cond = threading.Condition()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.server_settings = {}
        self.settings_seen = False
        self.goaway = None  # (last_stream_id, error code, debug data)
        self.goaway_at = None
        self.rst = {}  # stream id -> error code
        self.responses = {}  # stream id -> [(name, value)]
        self.ended = set()  # stream ids whose response ended
        self.eof = False
        self.eof_at = None
        self.frames_in = 0
        self.send_error = None
        self.bytes_out = 0
        self._pending_block = None
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
        threading.Thread(target=self._reader, daemon=True).start()

    def send(self, data):
        try:
            with self.wlock:
                self.sock.sendall(data)
            self.bytes_out += len(data)
            return True
        except OSError as e:
            self.send_error = e
            return False

    def send_within(self, data, timeout):
        """Sends `data` without ever blocking past `timeout` seconds (a flood against a
        gateway that stopped reading but kept the connection open must not hang the
        test; the reader thread leaves the socket blocking). True when all was sent;
        False on a send error (kept in `send_error`) or when the time ran out."""
        import select
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        with self.wlock:
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    _, writable, _ = select.select([], [self.sock], [], remaining)
                    if not writable:
                        return False
                    n = self.sock.send(view, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except (OSError, ValueError) as e:
                    self.send_error = e
                    return False
                view = view[n:]
                self.bytes_out += n
        return True

    def _read_exact(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out.extend(chunk)
        return bytes(out)

    def _reader(self):
        self.sock.settimeout(None)
        try:
            while True:
                hdr = self._read_exact(9)
                length = int.from_bytes(hdr[:3], "big")
                ftype, flags, sid = hdr[3], hdr[4], int.from_bytes(hdr[5:9], "big") & 0x7FFFFFFF
                payload = self._read_exact(length)
                self._on_frame(ftype, flags, sid, payload)
        except (EOFError, OSError):
            pass
        with self.cond:
            self.eof = True
            self.eof_at = time.monotonic()
            self.cond.notify_all()

    def _on_frame(self, ftype, flags, sid, payload):
        with self.cond:
            self.frames_in += 1
            if ftype == SETTINGS and not flags & ACK:
                for i in range(0, len(payload) - 5, 6):
                    k, v = struct.unpack(">HI", payload[i:i + 6])
                    self.server_settings[k] = v
                self.settings_seen = True
                self.send(frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK:
                self.send(frame(PING, ACK, 0, payload))
            elif ftype == GOAWAY:
                last, code = struct.unpack(">II", payload[:8])
                if self.goaway is None:
                    self.goaway = (last & 0x7FFFFFFF, code, payload[8:])
                    self.goaway_at = time.monotonic()
            elif ftype == RST_STREAM:
                self.rst[sid] = struct.unpack(">I", payload[:4])[0]
            elif ftype in (HEADERS, CONTINUATION):
                if ftype == HEADERS:
                    if flags & PADDED:
                        pad = payload[0]
                        payload = payload[1:len(payload) - pad]
                    if flags & PRIORITY_FLAG:
                        payload = payload[5:]
                    self._pending_block = (sid, bytearray(payload), flags & END_STREAM)
                else:
                    self._pending_block[1].extend(payload)
                if flags & END_HEADERS:
                    s, block, end = self._pending_block
                    self._pending_block = None
                    headers = self.decoder.decode(bytes(block))
                    self.responses.setdefault(s, []).extend(headers)
                    if end:
                        self.ended.add(s)
            elif ftype == DATA:
                if flags & END_STREAM:
                    self.ended.add(sid)
                if payload:  # give the credit back so responses keep flowing
                    inc = struct.pack(">I", len(payload))
                    self.send(frame(WINDOW_UPDATE, 0, 0, inc) + frame(WINDOW_UPDATE, 0, sid, inc))
            self.cond.notify_all()

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True

    def status(self, sid):
        for n, v in self.responses.get(sid, []):
            if n in (":status", b":status"):
                return int(v)
        return None

    def stream_outcome(self, sid):
        """'status N', 'RST_STREAM <code>', 'GOAWAY <code>', 'closed' or 'nothing'."""
        if self.status(sid) is not None:
            return "status %d" % self.status(sid)
        if sid in self.rst:
            return "RST_STREAM %s" % ERROR_NAMES.get(self.rst[sid], self.rst[sid])
        if self.goaway is not None:
            return "GOAWAY %s" % ERROR_NAMES.get(self.goaway[1], self.goaway[1])
        if self.eof:
            return "closed"
        return "nothing"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def h2_get(addr, path, extra=(), timeout=5.0):
    """A well-behaved h2c request through the h2 library: (status or None, body, why)."""
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection(addr, timeout=timeout)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "fd.test"),
                                (":path", path)] + list(extra), end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = None, b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return status, body, "timeout"
            if not data:
                return status, body, "closed"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    return status, body, "ended"
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    return status, body, "reset %s" % ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    return status, body, "goaway %s" % ev.error_code
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        return status, body, "timeout"
    finally:
        sock.close()


# === paths as a backend might read them ================================================


def _pct_decode(s):
    """Percent-decodes every well-formed escape once (bytes out)."""
    b = s.encode("latin-1", "replace")
    out = bytearray()
    i = 0
    while i < len(b):
        esc = b[i + 1:i + 3]
        if b[i] == 0x25 and len(esc) == 2 and all(c in b"0123456789abcdefABCDEF" for c in esc):
            out.append(int(esc, 16))
            i += 3
        else:
            out.append(b[i])
            i += 1
    return bytes(out)


def resolve_dots(path):
    """`path` with empty and dot segments resolved (RFC 3986 §5.2.4), no trailing slash."""
    segs = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if segs:
                segs.pop()
            continue
        segs.append(seg)
    return "/" + "/".join(segs)


def backend_readings(path):
    """The ways common backends read a forwarded path: as sent; percent-decoded once;
    overlong UTF-8 dots/slashes decoded (lenient decoders); cut at a decoded NUL (C
    strings); `\\` as `/`; `;params`
    dropped per segment (servlet containers); each with dot-segments resolved and
    slashes merged."""
    path = path.split("?", 1)[0]
    decoded = _pct_decode(path)
    for overlong, plain in ((b"\xc0\xae", b"."), (b"\xc0\xaf", b"/"), (b"\xe0\x80\xae", b".")):
        decoded = decoded.replace(overlong, plain)
    bases = {path, decoded.decode("latin-1")}
    if b"\x00" in decoded:  # a C string ends at the first NUL
        bases.add(decoded.split(b"\x00", 1)[0].decode("latin-1"))
    readings = set()
    for b in bases:
        for v in (b, b.replace("\\", "/")):
            readings.add(resolve_dots(v))
            readings.add(resolve_dots("/".join(seg.split(";", 1)[0] for seg in v.split("/"))))
    return readings


def under(path, prefix):
    """Whether some backend reading of `path` is `prefix` or below it (segment-aware)."""
    return any(r == prefix or r.startswith(prefix + "/") for r in backend_readings(path))
