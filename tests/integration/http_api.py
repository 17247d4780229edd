# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""A controllable control-plane HTTP API for the tests (stdlib only).

GET /v1/peers/<url-encoded base64 key> answers, per key or for all:
a JSON peer, a status code, garbage, an empty body (plain or chunked), a
JSON peer in several chunks, after a delay. Counts requests (per
key, in total, with their times) and the most requests it ever served at
once. Optionally TLS.

POST /v1/peers with a JSON list of keys (resolver-http's `batch`) answers
an object with a member per key: its peer, null when unknown,
{"error": ...} for an int answer; `omit` keys are left out, `raw` gives a
member's value as is. Each POST is one request (total, times); each key
in it counts for the key (per_key); batch_sizes lists the lists' lengths.
"""
import json
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl expects
    disable_nagle_algorithm = True  # headers and body go out at once

    def log_message(self, fmt, *args):  # quiet
        pass

    def do_GET(self):
        api = self.server.api
        key = urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
        with api.lock:
            api.current += 1
            api.max_current = max(api.max_current, api.current)
            api.total += 1
            api.per_key[key] = api.per_key.get(key, 0) + 1
            api.times.append(time.monotonic())
            api.auth.append(self.headers.get("Authorization"))
            api.raw_paths.append(self.path)
            mode, delay = api.mode, api.delay
            answer = api.answers.get(key)
        try:
            if delay:
                time.sleep(delay)
            if mode == "garbage":
                self._send(200, b"<html>this is not json", "text/html")
            elif isinstance(mode, int):
                self._send(mode, b'{"error": "down"}')
            elif mode == "close":
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            elif mode == "empty":
                self._send(200, b"")
            elif mode == "empty_chunked":
                self._send_chunked(200, [])
            elif answer is None:
                self._send(404, b'{"error": "unknown key"}')
            elif isinstance(answer, int):
                self._send(answer, b"{}")
            elif mode == "chunked":
                body = json.dumps(answer).encode()
                self._send_chunked(200, [body[:1], body[1:len(body) // 2], body[len(body) // 2:]])
            else:
                self._send(200, json.dumps(answer).encode())
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with api.lock:
                api.current -= 1

    def do_POST(self):
        api = self.server.api
        n = int(self.headers.get("Content-Length") or 0)
        try:
            keys = json.loads(self.rfile.read(n))
        except ValueError:
            keys = None
        with api.lock:
            api.current += 1
            api.max_current = max(api.max_current, api.current)
            api.total += 1
            api.times.append(time.monotonic())
            api.auth.append(self.headers.get("Authorization"))
            api.raw_paths.append(self.path)
            api.ctypes.append(self.headers.get("Content-Type"))
            mode, delay = api.mode, api.delay
            out = {}
            if isinstance(keys, list):
                api.batch_sizes.append(len(keys))
                for k in keys:
                    api.per_key[k] = api.per_key.get(k, 0) + 1
                    if k in api.omit:
                        continue
                    if k in api.raw:
                        out[k] = api.raw[k]
                        continue
                    a = api.answers.get(k)
                    out[k] = {"error": f"http {a}"} if isinstance(a, int) else a
        try:
            if delay:
                time.sleep(delay)
            if not isinstance(keys, list) or self.path.rstrip("/") != "/v1/peers":
                self._send(400, b'{"error": "expected a JSON list of keys"}')
            elif mode == "garbage":
                self._send(200, b"<html>this is not json", "text/html")
            elif isinstance(mode, int):
                self._send(mode, b'{"error": "down"}')
            elif mode == "empty":
                self._send(200, b"")
            else:
                self._send(200, json.dumps(out).encode())
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with api.lock:
                api.current -= 1

    def _send(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, status, pieces, ctype="application/json"):
        """Transfer-Encoding: chunked, each piece flushed on its own (and
        a moment apart, so the client reads them one by one)."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for p in pieces:
            if p:  # a zero-length chunk would end the body
                self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                self.wfile.flush()
                time.sleep(0.02)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class Api:
    """Start with Api(); stop with close(). Change behaviour with the
    attributes (under .lock when it matters): answers, mode (None, an int
    status for every request, "garbage", "close", "empty": 200 with an
    empty body, "empty_chunked": the same, chunked, "chunked": the answers
    in three chunks), delay (seconds)."""

    def __init__(self, tls=None):
        self.lock = threading.Lock()
        self.answers = {}
        self.mode = None
        self.delay = 0
        self.omit = set()
        self.raw = {}
        self.reset_counts()
        self.srv = _Server(("127.0.0.1", 0), _Handler)
        self.srv.api = self
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def reset_counts(self):
        with self.lock:
            self.current = 0
            self.max_current = 0
            self.total = 0
            self.per_key = {}
            self.times = []
            self.auth = []
            self.raw_paths = []
            self.ctypes = []
            self.batch_sizes = []

    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}/v1/peers/{{public_key}}"

    def batch_url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}/v1/peers"

    def peer(self, key, ips, **extra):
        """Answer key with a peer (allowed_ips ips, more fields in extra)."""
        a = {"public_key": key, "allowed_ips": list(ips)}
        a.update(extra)
        with self.lock:
            self.answers[key] = a

    def count(self, key=None):
        with self.lock:
            return self.total if key is None else self.per_key.get(key, 0)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def free_port():
    """A port nothing listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
