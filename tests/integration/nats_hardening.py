#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""source-nats / resolver-nats / natsconn hardening (security review, issue
12) against a real nats-server on loopback; installs go to the test plugin
installer-file, so no WireGuard is needed. Each check failed before its fix.
A small TCP proxy (Proxy) between the daemon and the server can delay what
the daemon sends, or hold connections without answering (a server that
accepts and never speaks). VERBOSE=1 prints every daemon's log."""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import BUILD, TEST_PLUGINS, WGGWD, Daemon, done, ok, read_stats, skip, wait_until  # noqa: E402
import natsd  # noqa: E402

CHECKS = [
    "check: source-nats without allowed_prefixes is a config error naming the option and [any]",
    "check: allowed_prefixes: [any] is accepted; [any, 10.0.0.0/8] is refused",
    "version 2^63-1 is terminated as poison (bad_version) and a later normal version applies",
    "version above 2^53 is terminated as poison; the key is not pinned",
    "max_version_jump: a version too far ahead of the applied one is terminated (version_jump); one within applies",
    "max_keys: 300 distinct keys keep the per-key state gauge <= the cap, all ACKed",
    "40,000 distinct keys (the per-key table doubles past 16,384 and 32,768 keys): each installed once, all ACKed; 2,000 of them again are found (stale)",
    "endpoints: loopback, link-local, unspecified, multicast and our own address are terminated (policy)",
    "endpoints: a public endpoint is accepted; allow_endpoints admits a loopback one",
    "tls_key_file with mode 0644 is refused at start, naming the file",
    "creds_file / nkey_seed_file with mode 0644 are refused at start, naming the file",
    "creds_file: read once; deleting it after start does not stop reconnects",
    "nkey_seed_file: read once; deleting it after start does not stop nkey-auth reconnects",
    "request mode: a request sent as soon as \"answering requests\" is logged is answered (subscription flushed)",
    "an unanswering NATS server with a long connect_timeout does not block the loop (another pipeline runs)",
    "... and the stage connects and answers once the server speaks",
]

why = natsd.missing()
if not why and not os.access(WGGWD, os.X_OK):
    why = f"no wggwd at {WGGWD} (set WGGWD_BUILD)"
if not why and not os.path.exists(os.path.join(BUILD, "plugins", "source-nats", "source-nats.so")):
    why = "source-nats is not built"
if why:
    for name in CHECKS:
        skip(name, why)
    done()

VERBOSE = os.environ.get("VERBOSE")
tmp = tempfile.mkdtemp(prefix="wggwd-natsh-")
daemons = []
_n = [0]


def write(path, text, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, text.encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


def newkey():
    return base64.b64encode(os.urandom(32)).decode()


def stat(stats, name):
    return read_stats(stats).get(name, 0)


def config(stages, pipelines):
    _n[0] += 1
    stats = f"{tmp}/s{_n[0]}.json"
    path = write(f"{tmp}/c{_n[0]}.yaml", f"""
log_level: debug
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:{stages}
pipelines:{pipelines}
""")
    return path, stats


def nats_stage(url, extra, name="nats"):
    return f"""
  {name}:
    plugin: source-nats
    options:
      servers: [{url}]
      reconnect_wait: 100ms
      reconnect_wait_max: 500ms{extra}"""


def file_stage(path):
    return f"""
  out:
    plugin: installer-file
    options:
      path: {path}"""


def daemon(cfg):
    d = Daemon(cfg)
    daemons.append(d)
    return d


def finish(d):
    d.stop()
    if VERBOSE:
        for line in d.output().splitlines():
            print(f"# {line}")


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def check(cfg):
    p = subprocess.run([WGGWD, "check", "-c", cfg], capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout + p.stderr


class Acks:
    """Every $JS.ACK publish of one consumer: {stream seq: [payloads]}."""

    def __init__(self, client, stream, consumer):
        self.by_seq = {}
        self.lock = threading.Lock()
        client.sub(f"$JS.ACK.{stream}.{consumer}.>", self._on)
        client.flush()

    def _on(self, m):
        seq = int(m.subject.split(".")[5])
        with self.lock:
            self.by_seq.setdefault(seq, []).append(m.data.decode())

    def get(self, seq):
        with self.lock:
            return list(self.by_seq.get(seq, []))


class Proxy:
    """127.0.0.1:port -> target. mode "hold": accept, read and drop, never
    answer (a server that does not speak); "forward": relay both ways,
    what the client sends delayed by `delay` seconds (order kept)."""

    def __init__(self, target_port, mode="forward", delay=0.0):
        self.target = target_port
        self.mode = mode
        self.delay = delay
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.socks.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            while self.mode == "hold" and not self.closed:
                c.settimeout(0.05)
                try:
                    if c.recv(65536) == b"":
                        return
                except socket.timeout:
                    pass
            c.settimeout(None)
            s = socket.create_connection(("127.0.0.1", self.target))
            self.socks.append(s)
            threading.Thread(target=self._pump, args=(s, c, 0.0), daemon=True).start()
            self._pump(c, s, self.delay)
        except OSError:
            pass

    def _pump(self, a, b, delay):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        for s in [self.ls] + self.socks:
            try:
                s.close()
            except OSError:
                pass


# -------------------------------------------------------------- nkeys

def _crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _nk_encode(raw):
    raw += _crc16(raw).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")


def user_nkey():
    """(public U..., seed SU...) of a fresh user NKey, or None without
    python3-cryptography."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        return None
    k = Ed25519PrivateKey.generate()
    raw = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                          serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    user, seedp = 20 << 3, 18 << 3
    seed = _nk_encode(bytes([seedp | (user >> 5), (user & 31) << 3]) + raw)
    return _nk_encode(bytes([user]) + pub), seed


def creds_text(seed):
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "UTEST", "nats": {"type": "user"}}).encode())
    jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ." + claims.decode().rstrip("=") + ".c2ln"
    return (f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")


# ---------------------------------------------------------------- checks

def config_checks(srv):
    base = "\n      subject: wggwd.cfg.x\n      mode: request"
    cfg, _ = config(nats_stage(srv.url, base) + file_stage(f"{tmp}/cfg.out"), "\n  push: [nats, out]")
    rc, out = check(cfg)
    ok(rc != 0 and "allowed_prefixes" in out and "any" in out, CHECKS[0], (rc, out))
    cfg, _ = config(nats_stage(srv.url, base + "\n      allowed_prefixes: [any]")
                    + file_stage(f"{tmp}/cfg.out"), "\n  push: [nats, out]")
    rc1, out1 = check(cfg)
    cfg, _ = config(nats_stage(srv.url, base + "\n      allowed_prefixes: [any, 10.0.0.0/8]")
                    + file_stage(f"{tmp}/cfg.out"), "\n  push: [nats, out]")
    rc2, out2 = check(cfg)
    ok(rc1 == 0 and rc2 != 0 and "any" in out2, CHECKS[1], (rc1, out1, rc2, out2))


def version_checks(srv, cl):
    cl.stream_create("HV", ["wggwd.hv.>"])
    acks = Acks(cl, "HV", "hv")
    out = f"{tmp}/hv.out"
    cfg, stats = config(nats_stage(srv.url, """
      subject: wggwd.hv.gw
      durable: hv
      ack_wait: 2s
      allowed_prefixes: [10.90.0.0/16]""") + file_stage(out), "\n  push: [nats, out]")
    d = daemon(cfg)
    wait_until(lambda: "consuming wggwd.hv.gw" in d.output(), 10)
    k = newkey()
    s1 = cl.js_publish("wggwd.hv.gw", {"public_key": k, "version": 2**63 - 1,
                                       "allowed_ips": ["10.90.1.1/32"]})["seq"]
    t1 = wait_until(lambda: acks.get(s1), 5)
    s2 = cl.js_publish("wggwd.hv.gw", {"public_key": k, "version": 5,
                                       "allowed_ips": ["10.90.1.2/32"]})["seq"]
    a2 = wait_until(lambda: acks.get(s2), 5)
    inst = wait_until(lambda: any(ln.startswith(f"add {k} ") and ln.endswith(" 10.90.1.2/32")
                                  for ln in lines(out)), 3)
    ok(t1 == ["+TERM"] and a2 == ["+ACK"] and inst
       and wait_until(lambda: stat(stats, "nats.poison_bad_version") == 1, 2),
       CHECKS[2], (t1, a2, lines(out), read_stats(stats)))

    k2 = newkey()
    s3 = cl.js_publish("wggwd.hv.gw", {"public_key": k2, "version": 2**53 + 1,
                                       "allowed_ips": ["10.90.1.3/32"]})["seq"]
    t3 = wait_until(lambda: acks.get(s3), 5)
    s4 = cl.js_publish("wggwd.hv.gw", {"public_key": k2, "version": 7,
                                       "allowed_ips": ["10.90.1.4/32"]})["seq"]
    a4 = wait_until(lambda: acks.get(s4), 5)
    inst = wait_until(lambda: any(ln.startswith(f"add {k2} ") and ln.endswith(" 10.90.1.4/32")
                                  for ln in lines(out)), 3)
    ok(t3 == ["+TERM"] and a4 == ["+ACK"] and inst, CHECKS[3], (t3, a4, lines(out)))
    finish(d)

    # a jump limit, and a bound on the per-key state
    acks = Acks(cl, "HV", "hv2")
    out = f"{tmp}/hv2.out"
    cfg, stats = config(nats_stage(srv.url, """
      subject: wggwd.hv.gw
      durable: hv2
      ack_wait: 2s
      max_version_jump: 1000
      max_in_flight: 32
      max_keys: 64
      allowed_prefixes: [10.90.0.0/16]""") + file_stage(out), "\n  push: [nats, out]")
    d = daemon(cfg)
    wait_until(lambda: "consuming wggwd.hv.gw" in d.output(), 10)
    wait_until(lambda: stat(stats, "nats.acked") + stat(stats, "nats.terminated") >= 4, 10)
    base = stat(stats, "nats.poison")
    k3 = newkey()
    seqs = [cl.js_publish("wggwd.hv.gw", {"public_key": k3, "version": v,
                                          "allowed_ips": [f"10.90.2.{i + 1}/32"]})["seq"]
            for i, v in enumerate((10, 10 + 1001, 10 + 1000))]
    got = [wait_until(lambda s=s: acks.get(s), 5) for s in seqs]
    inst = wait_until(lambda: any(ln.startswith(f"add {k3} ") and ln.endswith(" 10.90.2.3/32")
                                  for ln in lines(out)), 3)
    ok(got == [["+ACK"], ["+TERM"], ["+ACK"]] and inst
       and wait_until(lambda: stat(stats, "nats.poison_version_jump") == 1
                      and stat(stats, "nats.poison") == base + 1, 2),
       CHECKS[4], (got, read_stats(stats)))

    peak = [0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            s = read_stats(stats)
            if "nats.keys" in s:
                peak[0] = max(peak[0], s["nats.keys"])
            time.sleep(0.02)
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    last = 0
    for i in range(300):
        last = cl.js_publish("wggwd.hv.gw", {"public_key": newkey(), "version": 1,
                                             "allowed_ips": [f"10.90.3{i // 250}.{i % 250 + 1}/32"]})["seq"]
    acked = wait_until(lambda: acks.get(last) == ["+ACK"], 15)
    time.sleep(0.2)
    stop.set()
    th.join()
    s = read_stats(stats)
    ok(acked and "nats.keys" in s and 0 < peak[0] <= 64 and s["nats.keys"] <= 64
       and s.get("nats.keys_forgotten", 0) >= 300 - 64, CHECKS[5], (acked, peak[0], s))
    finish(d)

    # more keys than the per-key table's first buckets: it grows under them
    out = f"{tmp}/hv3.out"
    cfg, stats = config(nats_stage(srv.url, """
      subject: wggwd.hv.many
      durable: hv3
      max_in_flight: 4096
      allowed_prefixes: [10.64.0.0/10]""") + file_stage(out), "\n  push: [nats, out]")
    d = daemon(cfg)
    wait_until(lambda: "consuming wggwd.hv.many" in d.output(), 10)
    n = 40000
    keys = [newkey() for _ in range(n)]
    for i, k in enumerate(keys):
        cl.pub("wggwd.hv.many", json.dumps({"public_key": k, "version": 1, "allowed_ips":
                                            [f"10.{64 + i // 65536}.{i // 256 % 256}.{i % 256}/32"]}).encode())
    cl.flush()
    acked = wait_until(lambda: stat(stats, "nats.acked") >= n, 60)
    # the first keys again, the same version: found in the grown table
    # (moved twice), so stale, not installed again
    for i, k in enumerate(keys[:2000]):
        cl.pub("wggwd.hv.many", json.dumps({"public_key": k, "version": 1, "allowed_ips":
                                            [f"10.64.{i // 256}.{i % 256}/32"]}).encode())
    cl.flush()
    acked = acked and wait_until(lambda: stat(stats, "nats.acked") >= n + 2000, 30)
    s = read_stats(stats)
    added = [ln.split()[1] for ln in lines(out) if ln.startswith("add ")]
    ok(acked and s.get("nats.keys") == n and s.get("nats.stale") == 2000 and len(added) == n
       and set(added) == set(keys), CHECKS[6],
       (acked, s.get("nats.acked"), s.get("nats.keys"), s.get("nats.stale"), len(added),
        len(set(added))))
    finish(d)


def own_address():
    try:
        out = subprocess.run(["ip", "-o", "addr", "show", "scope", "global"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for ln in out.splitlines():
        f = ln.split()
        if len(f) > 3 and f[2] in ("inet", "inet6"):
            a = f[3].split("/")[0]
            return f"[{a}]:51820" if ":" in a else f"{a}:51820"
    return None


def endpoint_checks(srv, cl):
    cl.stream_create("HE", ["wggwd.he.>"])
    acks = Acks(cl, "HE", "he")
    out = f"{tmp}/he.out"
    cfg, stats = config(nats_stage(srv.url, """
      subject: wggwd.he.gw
      durable: he
      ack_wait: 2s
      allowed_prefixes: [10.90.0.0/16]""") + file_stage(out), "\n  push: [nats, out]")
    d = daemon(cfg)
    wait_until(lambda: "consuming wggwd.he.gw" in d.output(), 10)
    bad = ["127.0.0.1:51820", "[::1]:51820", "169.254.3.4:51820", "[fe80::1]:51820",
           "0.0.0.0:51820", "[::]:51820", "224.0.0.5:51820", "[ff02::1]:51820"]
    own = own_address()
    if own:
        bad.append(own)
    seqs = [cl.js_publish("wggwd.he.gw", {"public_key": newkey(), "version": 1, "endpoint": e,
                                          "allowed_ips": ["10.90.4.1/32"]})["seq"] for e in bad]
    got = [wait_until(lambda s=s: acks.get(s), 5) for s in seqs]
    ok(all(g == ["+TERM"] for g in got)
       and wait_until(lambda: stat(stats, "nats.poison_policy") == len(bad), 2),
       CHECKS[7], (list(zip(bad, got)), read_stats(stats)))
    good = cl.js_publish("wggwd.he.gw", {"public_key": newkey(), "version": 1,
                                         "endpoint": "198.51.100.7:51820",
                                         "allowed_ips": ["10.90.4.2/32"]})["seq"]
    g1 = wait_until(lambda: acks.get(good), 5)
    finish(d)

    acks = Acks(cl, "HE", "he2")
    cfg, stats = config(nats_stage(srv.url, """
      subject: wggwd.he.gw2
      durable: he2
      ack_wait: 2s
      allow_endpoints: [127.0.0.0/8]
      allowed_prefixes: [10.90.0.0/16]""") + file_stage(out), "\n  push: [nats, out]")
    cl.js_api("STREAM.UPDATE.HE", {"name": "HE", "subjects": ["wggwd.he.>"], "storage": "file",
                                   "retention": "limits", "num_replicas": 1})
    d = daemon(cfg)
    wait_until(lambda: "consuming wggwd.he.gw2" in d.output(), 10)
    lo = cl.js_publish("wggwd.he.gw2", {"public_key": newkey(), "version": 1,
                                        "endpoint": "127.0.0.1:51820",
                                        "allowed_ips": ["10.90.4.3/32"]})["seq"]
    g2 = wait_until(lambda: acks.get(lo), 5)
    ok(g1 == ["+ACK"] and g2 == ["+ACK"], CHECKS[8], (g1, g2, d.output()[-1500:]))
    finish(d)


def refused_at_start(cfg, path):
    d = daemon(cfg)
    exited = wait_until(lambda: not d.alive(), 8)
    out = d.output()
    finish(d)
    return exited and d.proc.returncode != 0 and path in out and "0644" in out, out


def secret_checks(srv):
    key, crt = f"{tmp}/client.key", f"{tmp}/client.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=wggwd-test"],
                   capture_output=True, check=True)
    os.chmod(key, 0o644)
    base = "\n      subject: wggwd.sec.x\n      mode: request\n      allowed_prefixes: [10.90.0.0/16]"
    cfg, _ = config(nats_stage(srv.url, base + f"""
      tls_ca_file: {crt}
      tls_cert_file: {crt}
      tls_key_file: {key}""") + file_stage(f"{tmp}/sec.out"), "\n  push: [nats, out]")
    r, out = refused_at_start(cfg, key)
    ok(r, CHECKS[9], out[-1500:])

    nk = user_nkey()
    if not nk:
        for c in CHECKS[10:13]:
            skip(c, "python3-cryptography is missing (NKeys)")
        return
    pub, seed = nk
    creds = write(f"{tmp}/user.creds", creds_text(seed), 0o644)
    seedf = write(f"{tmp}/user.seed", seed + "\n", 0o644)
    cfg, _ = config(nats_stage(srv.url, base + f"\n      creds_file: {creds}")
                    + file_stage(f"{tmp}/sec.out"), "\n  push: [nats, out]")
    r1, o1 = refused_at_start(cfg, creds)
    cfg, _ = config(nats_stage(srv.url, base + f"\n      nkey: {pub}\n      nkey_seed_file: {seedf}")
                    + file_stage(f"{tmp}/sec.out"), "\n  push: [nats, out]")
    r2, o2 = refused_at_start(cfg, seedf)
    ok(r1 and r2, CHECKS[10], (o1[-800:], o2[-800:]))

    # read once: the file can go (or be swapped) after start
    os.chmod(creds, 0o600)
    os.chmod(seedf, 0o600)
    conf = write(f"{tmp}/nkey-server.conf", f"authorization {{\n  users: [ {{ nkey: {pub} }} ]\n}}\n")
    for idx, extra, path, srv_extra in (
            (11, f"\n      creds_file: {creds}", creds, ()),
            (12, f"\n      nkey: {pub}\n      nkey_seed_file: {seedf}", seedf, ("-c", conf))):
        s2 = _server_with(srv_extra)
        try:
            cfg, stats = config(nats_stage(s2.url, base.replace("sec.x", f"sec{idx}") + extra)
                                + file_stage(f"{tmp}/sec{idx}.out"), "\n  push: [nats, out]")
            d = daemon(cfg)
            up = wait_until(lambda: "answering requests on" in d.output(), 10)
            saved = open(path).read()
            os.unlink(path)
            s2.restart(down_s=0.3)
            rec = wait_until(lambda: stat(stats, "nats.reconnects") >= 1, 8)
            finish(d)
            write(path, saved, 0o600)
            ok(up and rec, CHECKS[idx], (up, read_stats(stats), d.output()[-1500:]))
        finally:
            s2.cleanup()


def _server_with(extra):
    """A plain nats-server (no JetStream) with extra args; if it asks for
    nkey auth, readiness is probed by a daemon, not by natsd.Client."""
    class S(natsd.Server):
        def start(self, timeout=10.0):
            cmd = ["nats-server", "-a", "127.0.0.1", "-p", str(self.port)] + self.extra
            with open(self.log, "ab") as f:
                self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError("nats-server did not come up")
    return S(jetstream=False, extra=list(extra), wait_js=False)


def readiness_checks(srv, cl):
    # the daemon's bytes reach the server 300 ms late: a SUB not yet there
    # when "answering requests" is logged makes the request "no responders"
    px = Proxy(srv.port, delay=0.3)
    out = f"{tmp}/ready.out"
    cfg, stats = config(nats_stage(px.url, """
      subject: wggwd.ready.gw
      mode: request
      allowed_prefixes: [10.90.0.0/16]""") + file_stage(out), "\n  push: [nats, out]")
    d = daemon(cfg)
    seen = wait_until(lambda: "answering requests on" in d.output(), 10, 0.002)
    try:
        r = cl.request("wggwd.ready.gw", json.dumps({"public_key": newkey(), "version": 1,
                                                    "allowed_ips": ["10.90.6.1/32"]}), timeout=5)
        ans = r.status or r.json()
    except (TimeoutError, ValueError) as e:
        ans = repr(e)
    finish(d)
    px.close()
    ok(seen and ans == {"ok": True}, CHECKS[13], (ans, d.output()[-1500:]))

    # a server that accepts and never speaks, and a long connect_timeout
    px = Proxy(srv.port, mode="hold")
    out, kout = f"{tmp}/hold.out", f"{tmp}/hold-keys.out"
    k = newkey()
    cfg, stats = config(nats_stage(px.url, """
      subject: wggwd.hold.gw
      mode: request
      connect_timeout: 5s
      allowed_prefixes: [10.90.0.0/16]""") + file_stage(out) + f"""
  keys:
    plugin: source-keys
    options:
      keys: [{k}]
      interval: 50ms
  static:
    plugin: resolver-static
    options:
      peers:
        - public_key: {k}
          allowed_ips: [10.90.7.1/32]
  kout:
    plugin: installer-file
    options:
      path: {kout}""", "\n  push: [nats, out]\n  pull: [keys, static, kout]")
    d = daemon(cfg)
    time.sleep(1.5)
    n0 = len(lines(kout))
    time.sleep(2.0)
    n1 = len(lines(kout))
    ok(n1 - n0 >= 10 and "answering requests" not in d.output(), CHECKS[14],
       (n0, n1, d.output()[-1500:]))
    px.mode = "forward"
    up = wait_until(lambda: "answering requests on" in d.output(), 15)
    try:
        ans = cl.request("wggwd.hold.gw", json.dumps({"public_key": newkey(), "version": 1,
                                                     "allowed_ips": ["10.90.7.2/32"]}),
                         timeout=5).json()
    except (TimeoutError, ValueError) as e:
        ans = repr(e)
    finish(d)
    px.close()
    ok(up and ans == {"ok": True}, CHECKS[15], (ans, d.output()[-1500:]))


# ---------------------------------------------------------------- main

srv = natsd.Server()
try:
    cl = natsd.Client(srv.port)
    config_checks(srv)
    version_checks(srv, cl)
    endpoint_checks(srv, cl)
    secret_checks(srv)
    readiness_checks(srv, cl)
    cl.close()
finally:
    for d in daemons:
        d.close()
    srv.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
done()
