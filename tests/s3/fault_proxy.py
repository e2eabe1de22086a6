#!/usr/bin/env python3
"""A fault-injecting HTTP/1.1 reverse proxy for the S3 tests (standard library only).

  fault_proxy.py --upstream http://127.0.0.1:PORT --control CONTROL.json \\
                 --log LOG.jsonl --port-file PORTFILE

Listens on 127.0.0.1 on a free port, writes that port to PORTFILE (atomically)
once listening, forwards every request to the upstream S3 server unchanged
(method, request target byte for byte, headers including Host, body: the
request is signed with AWS SigV4) and serves until SIGTERM or SIGINT (exit 0).

Faults come from CONTROL.json, read again on every request (missing or empty:
no faults; write it atomically, tmp + rename):

  {"rules": [{"method": "PUT", "path_contains": "/bucket/key",
              "query_contains": "partNumber", "nth": 1, "times": 1,
              "action": "status", "status": 503}, ...]}

method, path_contains (a substring of the path part of the request target) and
query_contains (a substring of the raw query string) are optional filters.
Every rule counts the requests that pass its filters; it fires on the nth of
them and the next times-1 (times -1: every one from the nth on; defaults nth 1,
times 1). The first firing rule (in file order) wins. The counts belong to the
file as written: a rewrite (a new inode or modification time) starts them all
from zero, even when the text is the same.

Actions and their parameters:
  status              answer `status` (default 500) with an S3 XML error whose
                      Code is `code` (default InternalError; SlowDown for 503),
                      without forwarding; the request body is read first.
  reset_request       read `after_bytes` (default 0) bytes of the request body,
                      then close the connection with a RST (SO_LINGER 0),
                      unanswered and not forwarded.
  reset_response      forward, send the status line, the headers (the full
                      Content-Length) and `after_bytes` (default 0) bytes of the
                      body, then RST the connection.
  stall               read the request, sleep `seconds` (default 30), close the
                      connection without answering (not forwarded).
  flip_request_byte   XOR 0x01 the byte at `offset` (default: the middle; a
                      negative offset counts from the end) of the request body,
                      then forward.
  flip_response_byte  forward, then XOR 0x01 the byte at `offset` of the
                      response body before sending it.

LOG.jsonl gets one JSON line per request, written before its response is
sent (or when the request ends without one):
  {"n", "method", "path", "query", "headers", "body_bytes", "status", "fault"}
n counts requests from 1; headers are lowercased names (repeated ones joined
with ", ") with the Authorization signature removed
("AWS4-HMAC-SHA256 Credential=<access key id>/...") and x-amz-security-token
redacted; body_bytes is the request body's length; status is the upstream's
or the injected status, null when the client got none; fault is the action
that fired, or null. A failure to reach the upstream is answered with a 502
(Code ProxyUpstreamError) and logged with that status.
"""

import argparse
import http.client
import io
import http.server
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

ACTIONS = (
    "status",
    "reset_request",
    "reset_response",
    "stall",
    "flip_request_byte",
    "flip_response_byte",
)

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business on either
# side. Expect is answered by the proxy (http.server sends "100 Continue") and
# is forwarded only when it is among the signed headers.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

UPSTREAM_TIMEOUT = 600
IDLE_TIMEOUT = 600


class Config:
    upstream_host = "127.0.0.1"
    upstream_port = 80
    control = None
    log = None


stopping = threading.Event()


class Log:
    def __init__(self, path):
        self._lock = threading.Lock()
        self._n = 0
        self._file = open(path, "a", encoding="utf-8")

    def next_number(self):
        with self._lock:
            self._n += 1
            return self._n

    def write(self, record):
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


class Rules:
    """The control file and the per-rule counts of its current version."""

    def __init__(self, path):
        self._path = path
        self._lock = threading.Lock()
        self._generation = None
        self._counts = {}

    def _load(self):
        try:
            st = os.stat(self._path)
            with open(self._path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            return None, []
        generation = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if not text.strip():
            return generation, []
        try:
            data = json.loads(text)
        except ValueError as e:
            warn(f"{self._path}: not JSON ({e}); no faults")
            return generation, []
        rules = data.get("rules", []) if isinstance(data, dict) else None
        if not isinstance(rules, list):
            warn(f"{self._path}: expected {{\"rules\": [...]}}; no faults")
            return generation, []
        return generation, rules

    def pick(self, method, path, query):
        """The first rule that fires for this request (counting it for every
        rule whose filters it passes), or None."""
        generation, rules = self._load()
        with self._lock:
            if generation != self._generation:
                self._generation = generation
                self._counts = {}
            chosen = None
            for index, rule in enumerate(rules):
                if not isinstance(rule, dict):
                    continue
                if rule.get("action") not in ACTIONS:
                    warn(f"rule {index}: unknown action {rule.get('action')!r}; ignored")
                    continue
                if "method" in rule and str(rule["method"]).upper() != method.upper():
                    continue
                if "path_contains" in rule and str(rule["path_contains"]) not in path:
                    continue
                if "query_contains" in rule and str(rule["query_contains"]) not in query:
                    continue
                key = (index, json.dumps(rule, sort_keys=True))
                count = self._counts.get(key, 0) + 1
                self._counts[key] = count
                nth = int(rule.get("nth", 1))
                times = int(rule.get("times", 1))
                fires = count >= nth and (times < 0 or count < nth + times)
                if fires and chosen is None:
                    chosen = rule
            return chosen


def warn(message):
    print(f"fault_proxy: {message}", file=sys.stderr, flush=True)


def error_xml(code):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>injected by fault_proxy</Message></Error>"
    ).encode()


def redact_headers(items):
    out = {}
    for name, value in items:
        lname = name.lower()
        if lname == "authorization":
            m = re.search(r"Credential=([^/,\s]*)", value)
            if m:
                value = f"AWS4-HMAC-SHA256 Credential={m.group(1)}/..."
            else:
                value = value.split(" ", 1)[0] + " <redacted>"
        elif lname == "x-amz-security-token":
            value = "<redacted>"
        out[lname] = out[lname] + ", " + value if lname in out else value
    return out


def flip(body, offset):
    if not body:
        return body
    if offset is None:
        offset = len(body) // 2
    offset = int(offset)
    if not -len(body) <= offset < len(body):
        return body
    b = bytearray(body)
    b[offset] ^= 0x01
    return bytes(b)


class Upstream(http.client.HTTPConnection):
    # The request target goes out as the bytes that came in (http.server
    # decodes the request line as Latin-1).
    def _encode_request(self, request):
        return request.encode("latin-1")


class Aborted(Exception):
    """The connection to the client was closed on purpose."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def log_error(self, format, *args):  # noqa: A002
        warn(format % args)

    def do_GET(self):
        self.proxy()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    # --- the request ---------------------------------------------------

    def raw_target(self):
        # self.path has '//' collapsed to '/' (gh-87389); the target must go
        # upstream exactly as it came.
        words = self.raw_requestline.rstrip(b"\r\n").split(b" ")
        target = words[1].decode("latin-1") if len(words) == 3 else self.path
        if target.lower().startswith(("http://", "https://")):
            # Absolute form (a client configured with the proxy as its
            # proxy): the origin form is what the origin server expects.
            rest = target.split("://", 1)[1]
            target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
        return target

    def is_chunked(self):
        te = ",".join(self.headers.get_all("Transfer-Encoding") or [])
        return "chunked" in te.lower()

    def read_exact(self, n):
        chunks = []
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError("the client closed the connection mid-body")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read_body(self):
        if self.is_chunked():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("the client closed the connection mid-body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.read_exact(size))
                self.rfile.readline(65537)  # the CRLF after the data
        length = self.headers.get("Content-Length")
        return self.read_exact(int(length)) if length else b""

    def read_some_body(self, n):
        """Up to n bytes of the body as it arrives (chunk framing included)."""
        if not self.is_chunked():
            n = min(n, int(self.headers.get("Content-Length") or 0))
        got = 0
        while got < n:
            chunk = self.rfile.read1(n - got)
            if not chunk:
                break
            got += len(chunk)
        return got

    # --- the connection --------------------------------------------------

    def reset_connection(self):
        """Close the client connection with a RST instead of a FIN."""
        self.log_record()
        self.close_connection = True
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The socket's fd stays open while its makefile objects are; close
        # them first so that close() really closes (and sends the RST).
        for f in (self.wfile, self.rfile):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        try:
            sock.close()
        except OSError:
            pass
        # What the base class still does with the streams (a flush, a close)
        # must find open ones.
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()
        raise Aborted()

    def close_quietly(self):
        self.log_record()
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise Aborted()

    def send_head(self, status, reason, headers):
        # Logged before the client can see the response: a client that reads
        # the log as soon as it has its answer finds the request there.
        self.log_record()
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    # --- forwarding ----------------------------------------------------

    def forward(self, method, target, body):
        signed = ""
        m = re.search(r"SignedHeaders=([^,\s]*)", self.headers.get("Authorization", ""))
        if m:
            signed = m.group(1).lower()
        signed_names = set(signed.split(";")) if signed else set()
        conn = Upstream(Config.upstream_host, Config.upstream_port, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            chunked = self.is_chunked()
            for name, value in self.headers.items():
                lname = name.lower()
                if lname in HOP_BY_HOP:
                    continue
                if lname == "expect" and lname not in signed_names:
                    continue
                if chunked and lname == "content-length":
                    continue
                conn.putheader(name, value)
            if chunked or (body and self.headers.get("Content-Length") is None):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def response_headers(self, method, status, headers, body):
        out = []
        for name, value in headers:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                continue
            if lname == "content-length" and method != "HEAD" and status not in (204, 304):
                continue
            out.append((name, value))
        if method != "HEAD" and status not in (204, 304) and not 100 <= status < 200:
            out.append(("Content-Length", str(len(body))))
        return out

    def proxy(self):
        method = self.command
        target = self.raw_target()
        path, _, query = target.partition("?")
        n = LOG.next_number()
        record = {
            "n": n,
            "method": method,
            "path": path,
            "query": query,
            "headers": redact_headers(self.headers.items()),
            "body_bytes": None,
            "status": None,
            "fault": None,
        }
        self.record = record
        try:
            rule = RULES.pick(method, path, query)
            action = rule["action"] if rule else None
            record["fault"] = action
            self.handle_request(rule, action, method, target, record)
        except Aborted:
            pass
        except (ConnectionError, TimeoutError, OSError) as e:
            self.close_connection = True
            if not isinstance(e, (BrokenPipeError, ConnectionResetError)):
                warn(f"request {n} ({method} {target}): {e}")
        finally:
            self.log_record()

    def log_record(self):
        record, self.record = getattr(self, "record", None), None
        if record is not None:
            LOG.write(record)

    def handle_request(self, rule, action, method, target, record):
        if action == "reset_request":
            record["body_bytes"] = self.read_some_body(int(rule.get("after_bytes", 0)))
            self.reset_connection()

        body = self.read_body()
        record["body_bytes"] = len(body)

        if action == "status":
            status = int(rule.get("status", 500))
            code = rule.get("code") or ("SlowDown" if status == 503 else "InternalError")
            xml = error_xml(code)
            record["status"] = status
            headers = [
                ("Content-Type", "application/xml"),
                ("Content-Length", str(len(xml))),
                ("x-amz-request-id", f"fault-proxy-{record['n']}"),
            ]
            if self.close_connection:
                headers.append(("Connection", "close"))
            self.send_head(status, None, headers)
            if method != "HEAD":
                self.wfile.write(xml)
            return

        if action == "stall":
            deadline = time.monotonic() + float(rule.get("seconds", 30))
            while not stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                stopping.wait(min(left, 0.1))
            self.close_quietly()

        if action == "flip_request_byte":
            body = flip(body, rule.get("offset"))

        try:
            status, reason, headers, data = self.forward(method, target, body)
        except (OSError, http.client.HTTPException) as e:
            warn(f"request {record['n']}: upstream: {e!r}")
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?><Error><Code>ProxyUpstreamError</Code>'
                f"<Message>fault_proxy: {type(e).__name__}</Message></Error>"
            ).encode()
            record["status"] = 502
            self.send_head(502, None, [("Content-Type", "application/xml"), ("Content-Length", str(len(xml)))])
            if method != "HEAD":
                self.wfile.write(xml)
            return
        record["status"] = status

        if action == "flip_response_byte":
            data = flip(data, rule.get("offset"))

        headers = self.response_headers(method, status, headers, data)
        if self.close_connection:
            headers.append(("Connection", "close"))
        if action == "reset_response":
            self.send_head(status, reason, headers)
            after = int(rule.get("after_bytes", 0))
            if method != "HEAD" and after > 0:
                self.wfile.write(data[:after])
            self.wfile.flush()
            self.reset_connection()

        self.send_head(status, reason, headers)
        if method != "HEAD" and data:
            self.wfile.write(data)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


LOG = None
RULES = None


def main(argv=None):
    global LOG, RULES
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT of the S3 server")
    parser.add_argument("--control", required=True, help="the JSON file of fault rules")
    parser.add_argument("--log", required=True, help="the JSON-lines request log (appended to)")
    parser.add_argument("--port-file", required=True, help="where the listening port is written")
    args = parser.parse_args(argv)

    up = urllib.parse.urlsplit(args.upstream)
    if up.scheme != "http" or not up.hostname:
        parser.error("--upstream must be http://HOST[:PORT]")
    Config.upstream_host = up.hostname
    Config.upstream_port = up.port or 80

    LOG = Log(args.log)
    RULES = Rules(args.control)

    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()

    tmp = f"{args.port_file}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, args.port_file)

    while not stopping.wait(0.2):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
