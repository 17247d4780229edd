# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""nats-server on loopback for tests, and a tiny NATS client.

    srv = natsd.Server()            # 127.0.0.1, a free port, JetStream in a temp dir
    c = natsd.Client(srv.port)
    c.js_api("STREAM.CREATE.PEERS", {"name": "PEERS", "subjects": ["wggwd.peers.>"]})
    c.js_publish("wggwd.peers.gw1", b'{...}')   # -> the PubAck
    c.sub("wggwd.lookup.*", lambda m: c.pub(m.reply, b"..."))
    srv.restart(); srv.stop()

The client speaks the text protocol itself (INFO, CONNECT, PUB, HPUB is
not needed, SUB, UNSUB, MSG, HMSG, PING, PONG): the standard library has
no NATS client. One reader thread per client; callbacks run on it.
"""
import itertools
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

_serial = itertools.count(1)


def free_port():
    """A port free now, below the ephemeral range: one that bind(0) hands
    out can meanwhile become the source port of an outgoing connection
    (a cluster node dials the others' routes while they start, clients
    poll for readiness), and then the server that wanted it cannot
    listen. A random one below that range is only taken by a listener."""
    lo = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(100):
        port = random.randrange(max(1024, lo - 12000), lo) if lo > 2048 else 0
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port")


def _bind_lost(e):
    """A server that exited because its port was taken meanwhile."""
    return "address already in use" in str(e)


def missing():
    """Why a test cannot use nats-server here (a TAP skip reason), or None."""
    if not shutil.which("nats-server"):
        return "nats-server is not installed"
    return None


class Server:
    """nats-server -a 127.0.0.1 -p PORT -js -sd DIR; stopped by pid."""

    def __init__(self, port=None, jetstream=True, extra=(), wait_js=True):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="natsd-")
        self.log = os.path.join(self.dir, "nats-server.log")
        self.jetstream = jetstream
        self.extra = list(extra)
        # a clustered node's JetStream answers only once a meta leader is
        # elected (a quorum of nodes is up): Cluster waits for that itself
        self.wait_js = wait_js
        self.proc = None
        for attempt in range(3):
            try:
                self.start()
                return
            except RuntimeError as e:
                self.stop()
                if port or attempt == 2 or not _bind_lost(e):
                    shutil.rmtree(self.dir, ignore_errors=True)
                    raise
                self.port = free_port()  # taken meanwhile: another one

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout=10.0):
        cmd = ["nats-server", "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            cmd += ["-js", "-sd", os.path.join(self.dir, "js")]
        cmd += self.extra
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.output()[-500:]}")
            try:
                c = Client(self.port, timeout=1)
                if self.jetstream and self.wait_js:
                    c.js_api("INFO", {}, timeout=2)  # JetStream is ready
                c.close()
                return
            except (OSError, RuntimeError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not come up: {self.output()[-500:]}")

    def output(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s=0.0):
        self.stop()
        time.sleep(down_s)
        self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False


class Cluster:
    """n nats-server nodes on loopback, routed to each other, JetStream
    clustered (each its own store dir, server_name n1..nN):

        cl = natsd.Cluster(3)
        cl.urls                      # every node's client URL
        cl.nodes[0].stop(signal.SIGKILL)
        cl.cleanup()

    Ready when every node answers $JS.API.INFO (a meta leader exists)."""

    def __init__(self, n=3, name="wggwd-test", timeout=30.0):
        self.name = name
        for attempt in range(3):
            self.nodes = []
            ports = [(free_port(), free_port()) for _ in range(n)]
            try:
                for i, (port, cport) in enumerate(ports):
                    routes = ",".join(f"nats://127.0.0.1:{c}"
                                      for j, (_, c) in enumerate(ports) if j != i)
                    node = Server(port=port, jetstream=True, wait_js=False, extra=[
                        "--server_name", f"n{i + 1}", "--cluster_name", name,
                        "--cluster", f"nats://127.0.0.1:{cport}", "--routes", routes])
                    self.nodes.append(node)
                self.wait_ready(timeout)
                return
            except RuntimeError as e:
                self.cleanup()
                if attempt == 2 or not _bind_lost(e):
                    raise
            except BaseException:
                self.cleanup()
                raise

    @property
    def urls(self):
        return [n.url for n in self.nodes]

    def alive(self):
        return [n for n in self.nodes if n.proc and n.proc.poll() is None]

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while True:
                try:
                    c = Client(node.port, timeout=1)
                    try:
                        c.js_api("INFO", {}, timeout=1)
                        break
                    finally:
                        c.close()
                except (OSError, RuntimeError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster not ready: {node.output()[-500:]}") from None
                    time.sleep(0.1)

    def node_by_url(self, url):
        for n in self.nodes:
            if url.rstrip("/").endswith(f":{n.port}"):
                return n
        return None

    def cleanup(self):
        for n in self.nodes:
            n.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False


class Msg:
    def __init__(self, subject, reply, data, headers=None):
        self.subject = subject
        self.reply = reply
        self.data = data
        self.headers = headers  # the raw header block, or None

    @property
    def status(self):
        """'503' for no responders, etc., from an HMSG status line."""
        if not self.headers:
            return None
        first = self.headers.split(b"\r\n", 1)[0].split()
        return first[1].decode() if len(first) > 1 else None

    def json(self):
        return json.loads(self.data)


class Client:
    def __init__(self, port, host="127.0.0.1", name="test", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.lock = threading.Lock()
        self.subs = {}
        self.sids = itertools.count(1)
        self.pongs = queue.Queue()
        self.closed = False
        self.errors = []
        line = self._readline_blocking()
        if not line.startswith(b"INFO "):
            raise RuntimeError(f"expected INFO, got {line!r}")
        self.info = json.loads(line[5:])
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                   "protocol": 1, "name": name, "lang": "python-test", "version": "0"}
        self._send(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        while True:
            line = self._readline_blocking()
            if line == b"PONG":
                break
            if line.startswith(b"-ERR"):
                raise RuntimeError(line.decode())
        self.sock.settimeout(None)
        self.inbox = f"_INBOX.t{os.getpid()}x{next(_serial)}"
        self.replies = {}
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()
        self.sub(self.inbox + ".*", self._on_reply)

    # ------------------------------------------------------------ wire
    def _send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def _readline_blocking(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _readn(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read_loop(self):
        try:
            while not self.closed:
                line = self._readline_blocking()
                if line.startswith(b"MSG "):
                    f = line.split()
                    subj, sid = f[1].decode(), int(f[2])
                    reply = f[3].decode() if len(f) == 5 else None
                    data = self._readn(int(f[-1]))
                    self._deliver(sid, Msg(subj, reply, data))
                elif line.startswith(b"HMSG "):
                    f = line.split()
                    subj, sid = f[1].decode(), int(f[2])
                    reply = f[3].decode() if len(f) == 6 else None
                    hlen, total = int(f[-2]), int(f[-1])
                    raw = self._readn(total)
                    self._deliver(sid, Msg(subj, reply, raw[hlen:], raw[:hlen]))
                elif line == b"PING":
                    self._send(b"PONG\r\n")
                elif line == b"PONG":
                    self.pongs.put(True)
                elif line.startswith(b"-ERR"):
                    self.errors.append(line.decode())
        except (OSError, ConnectionError, ValueError):
            self.closed = True

    def _deliver(self, sid, m):
        cb = self.subs.get(sid)
        if cb is None:
            return
        if isinstance(cb, queue.Queue):
            cb.put(m)
        else:
            try:
                cb(m)
            except Exception as e:  # a test callback must not kill the reader
                self.errors.append(repr(e))

    def _on_reply(self, m):
        q = self.replies.pop(m.subject, None)
        if q:
            q.put(m)

    # ------------------------------------------------------------- api
    def sub(self, subject, cb=None, queue_group=None):
        """Subscribe; cb(msg) on the reader thread, or a Queue when cb is
        None. Returns (sid, queue-or-None)."""
        sid = next(self.sids)
        q = None
        if cb is None:
            q = queue.Queue()
            cb = q
        self.subs[sid] = cb
        qg = f" {queue_group}" if queue_group else ""
        self._send(f"SUB {subject}{qg} {sid}\r\n".encode())
        return sid, q

    def unsub(self, sid):
        self.subs.pop(sid, None)
        self._send(f"UNSUB {sid}\r\n".encode())

    def pub(self, subject, data=b"", reply=None):
        if isinstance(data, str):
            data = data.encode()
        r = f" {reply}" if reply else ""
        self._send(f"PUB {subject}{r} {len(data)}\r\n".encode() + data + b"\r\n")

    def flush(self, timeout=5.0):
        self._send(b"PING\r\n")
        self.pongs.get(timeout=timeout)

    def request_async(self, subject, data=b""):
        """Publish a request; returns a Queue the reply will be put in."""
        reply = f"{self.inbox}.{next(_serial)}"
        q = queue.Queue()
        self.replies[reply] = q
        self.pub(subject, data, reply)
        return q

    def request(self, subject, data=b"", timeout=5.0):
        q = self.request_async(subject, data)
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no reply on {subject} within {timeout}s") from None

    def js_api(self, api, payload=None, timeout=5.0):
        """A JetStream API call ($JS.API.<api>); the decoded answer. An
        answer with "error" raises RuntimeError."""
        data = b"" if payload is None else json.dumps(payload).encode()
        m = self.request(f"$JS.API.{api}", data, timeout)
        if m.status == "503":
            raise RuntimeError(f"$JS.API.{api}: no responders (JetStream off?)")
        r = json.loads(m.data)
        if "error" in r:
            raise RuntimeError(f"$JS.API.{api}: {r['error']}")
        return r

    def js_publish(self, subject, data, timeout=5.0):
        """Publish into a stream; its PubAck ({"stream", "seq"})."""
        if isinstance(data, (dict, list)):
            data = json.dumps(data)
        m = self.request(subject, data, timeout)
        if m.status == "503":
            raise RuntimeError(f"no stream listens on {subject}")
        r = json.loads(m.data)
        if "error" in r:
            raise RuntimeError(f"publish on {subject}: {r['error']}")
        return r

    def js_publish_retry(self, subject, data, deadline, timeout=2.0):
        """js_publish, retried (a stream leader election: timeouts, "no
        responders", JetStream errors) until the monotonic deadline; the
        PubAck and the number of failed attempts. A retry after a timeout
        may store the message twice (no Nats-Msg-Id here)."""
        failures = 0
        while True:
            try:
                return self.js_publish(subject, data, timeout), failures
            except (RuntimeError, TimeoutError, ValueError):
                failures += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stream_info(self, name):
        return self.js_api(f"STREAM.INFO.{name}")

    def stream_create(self, name, subjects, storage="file", **extra):
        cfg = {"name": name, "subjects": subjects, "storage": storage, "retention": "limits",
               "num_replicas": 1}
        cfg.update(extra)
        return self.js_api(f"STREAM.CREATE.{name}", cfg)

    def consumer_info(self, stream, consumer):
        return self.js_api(f"CONSUMER.INFO.{stream}.{consumer}")

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
