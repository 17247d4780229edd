#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""evictor-idle's rules for live sessions (a peer whose last handshake is
under 180 s old, REJECT_AFTER_TIME, can still carry data: evicting it
costs its client ~15 s), on real wireguard-go in namespaces and against a
fake UAPI socket whose dumps say how old each handshake is:
- with a short `idle`, a live idle peer stays (gauge idle_live), and
  `evict_live: true` evicts it (counted in evicted_live);
- a peer idle with a handshake 200 s old is evicted; one with a handshake
  10 s old is not (the boundary, without waiting three minutes);
- `max_peers` evicts live peers when it must, dead sessions first, and
  counts them (evicted_over_budget, evicted_live);
- `idle` under 3 minutes is warned about at start;
- a removal tells the stages after the installer the peer's endpoint and
  last handshake (the installer's log of it).
VERBOSE=1 prints every daemon's log as TAP comments."""
import base64
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import TEST_PLUGINS, WGGWD, Daemon, done, ok, read_stats, skip, wait_until  # noqa: E402
import natsd  # noqa: E402
import wgnet  # noqa: E402

CHECKS = [
    "idle 2s: warned at start that idle is under 3 minutes",
    "idle 2s: a client with a fresh handshake, idle past `idle`, stays (idle.idle_live = 1, nothing evicted)",
    "idle 2s: it still pings through its session afterwards, no new handshake needed",
    "evict_live: true: warned at start; the same client is evicted for idleness",
    "evict_live: true: counted as idle.evicted_idle and idle.evicted_live",
    "the removal carries the peer's endpoint and last handshake (from the installer's last dump)",
    "max_peers 1, three live clients: two evicted, counted (evicted_over_budget 2, evicted_live 2)",
    "fake dumps: idle with its last handshake 200 s old: evicted (evicted_idle), not counted live",
    "fake dumps: idle with its last handshake 10 s old: kept (idle_live 1)",
    "fake dumps, max_peers 1: the dead session goes before the live one, though more recently active (counted, not as live)",
    "idle 3m and more: no warning at start",
    "installs first: a sweep asked for while an install is on its way waits (wg.dumps_deferred), and a removal queued after it goes before its dump",
    "duty_cycle 10: a sweep that costs 200 ms stretches the interval (100ms) to at least 2 s (idle.sweep_interval_ms)",
    "a scrape of /metrics dumps the interface only if the last dump took at most 1% of the time since: the next, at once, reports the last counts without a dump (200 ms a get)",
    "a dump of 2,600 peers, judged in slices (512 a loop turn), max_peers 1,000: one decision over all of them (1,600 evicted, the most recently active kept)",
]

why = wgnet.missing()
if not why and not os.access(WGGWD, os.X_OK):
    why = f"no wggwd at {WGGWD} (set WGGWD_BUILD)"
if why:
    for name in CHECKS:
        skip(name, why)
    done()

tmp = tempfile.mkdtemp(prefix="wggwd-evict-")
daemons = []
net = wgnet.Net("wge")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def daemon(cfg, ns=None):
    d = Daemon(cfg, netns=ns)
    daemons.append(d)
    return d


def stat(stats, name):
    return read_stats(stats).get(name, 0)


def config(name, source, peers, wg_opts, evictor_opts):
    """source: the YAML of a stage `src` (and `noise` if it sniffs)"""
    stats = f"{tmp}/{name}.json"
    peer_yaml = "".join(f"""
        - public_key: {pub}
          allowed_ips: [{ip}]""" for pub, ip in peers)
    wg = "".join(f"\n      {k}: {v}" for k, v in wg_opts.items())
    ev = "".join(f"\n      {k}: {v}" for k, v in evictor_opts.items())
    noise = ", noise" if "decoder-noise" in source else ""
    return write(f"{tmp}/{name}.yaml", f"""
log_level: debug
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:{source}
  static:
    plugin: resolver-static
    options:
      peers:{peer_yaml}
  wg:
    plugin: installer-uapi
    options:{wg}
  idle:
    plugin: evictor-idle
    options:{ev}
pipelines:
  pull: [src{noise}, static, wg, idle]
"""), stats


def sniff(iface):
    return f"""
  src:
    plugin: source-bpf
    options:
      interface: {iface}
  noise:
    plugin: decoder-noise"""


WARN = "is under 3 minutes"


# ----------------------------------------------------------- real clients

def real_checks():
    # a client that was evicted keeps its session: each step takes fresh ones
    topo = net.gateway_with_clients(5)
    c1 = topo.clients[0]
    gw = lambda pub: net.peer(topo.gw_ns, topo.gw_if, pub)  # noqa: E731
    peers = [(c.pub, f"{c.tunnel_ip}/32") for c in topo.clients]

    # 1. idle 2s: the client pings once, then is quiet; its session is live
    cfg, stats = config("live", sniff(topo.gw_uplink), peers, {"interface": topo.gw_if},
                        {"interval": "200ms", "idle": "2s", "grace": "1s"})
    d = daemon(cfg, topo.gw_ns)
    wait_until(lambda: "running" in d.output() or not d.alive(), 10)
    ok(re.search(r"\[evictor-idle:idle\].*idle 2\.0 s is under 3 minutes: .*kept while its session is live",
                 d.output()), CHECKS[0], d.output())
    up = wgnet.first_ping_ms(c1.ns, topo.gw_tunnel_ip) is not None
    hs = wait_until(lambda: (gw(c1.pub) or {}).get("latest_handshake"), 3)
    # idle is 2 s: wait well past it (and grace), several sweeps
    kept = wait_until(lambda: stat(stats, "idle.idle_live") == 1, 6)
    time.sleep(3)
    s = read_stats(stats)
    ok(up and hs and kept and gw(c1.pub) and s.get("idle.idle_live") == 1
       and not s.get("idle.evicted_idle") and not s.get("wg.removed"),
       CHECKS[1], (up, hs, s, d.output()[-3000:]))
    hs2 = (gw(c1.pub) or {}).get("latest_handshake")
    ok(net.ping(c1.ns, topo.gw_tunnel_ip, timeout=2) and (gw(c1.pub) or {}).get("latest_handshake") == hs2,
       CHECKS[2], gw(c1.pub))
    ok(d.stop() == 0, "exit 0", d.output())

    # 2. the same with evict_live: the peer goes `idle` after its last activity
    c2 = topo.clients[1]
    cfg, stats = config("evlive", sniff(topo.gw_uplink), peers, {"interface": topo.gw_if},
                        {"interval": "200ms", "idle": "2s", "grace": "1s", "evict_live": "true"})
    d = daemon(cfg, topo.gw_ns)
    wait_until(lambda: "running" in d.output() or not d.alive(), 10)
    net.wg_set(topo.gw_ns, topo.gw_if, "peer", c1.pub, "remove")
    up = wgnet.first_ping_ms(c2.ns, topo.gw_tunnel_ip) is not None
    gone = up and wait_until(lambda: gw(c2.pub) is None, 8, 0.1)
    ok(re.search(r"idle 2\.0 s is under 3 minutes and evict_live is on", d.output())
       and gone, CHECKS[3], (up, gw(c2.pub), d.output()[-3000:]))
    counted = wait_until(lambda: stat(stats, "idle.evicted_idle") == 1
                         and stat(stats, "idle.evicted_live") == 1, 3)
    ok(counted and re.search(rf"evicting {re.escape(c2.pub)}: idle \(its session is live", d.output()),
       CHECKS[4], (read_stats(stats), d.output()[-2000:]))
    m = re.search(rf"removed peer {re.escape(c2.pub)}: endpoint (\S+), last handshake (-?\d+) s ago",
                  d.output())
    ok(m and m.group(1) == c2.endpoint and 0 <= int(m.group(2)) < 30, CHECKS[5],
       (m and m.groups(), d.output()[-2000:]))
    ok(d.stop() == 0, "exit 0", d.output())

    # 3. max_peers 1: three clients with live sessions
    for c in topo.clients:
        net.wg_set(topo.gw_ns, topo.gw_if, "peer", c.pub, "remove")
    cfg, stats = config("budget", sniff(topo.gw_uplink), peers, {"interface": topo.gw_if},
                        {"interval": "200ms", "grace": "500ms", "max_peers": "1"})
    d = daemon(cfg, topo.gw_ns)
    wait_until(lambda: "running" in d.output() or not d.alive(), 10)
    for c in topo.clients[2:]:
        wgnet.first_ping_ms(c.ns, topo.gw_tunnel_ip)
    evicted = wait_until(lambda: stat(stats, "idle.evicted_over_budget") == 2
                         and stat(stats, "idle.evicted_live") == 2, 6)
    left = [c.pub for c in topo.clients if gw(c.pub)]
    ok(evicted and left == [topo.clients[4].pub] and WARN not in d.output(), CHECKS[6],
       (read_stats(stats), left, d.output()[-2000:]))
    ok(d.stop() == 0, "exit 0", d.output())
    return topo


# ------------------------------------------------------------- fake dumps

class FakeUapi:
    """A UAPI socket: accepts every set, remembers the peers set, and lists
    them in gets with the handshake age (s) that `state` says, and rx bytes
    that grow at each get if it says so."""

    def __init__(self, path, hold=None, get_delay=0.0):
        """hold: the reply to the first set naming this key (hex) waits
        for self.release; get_delay: seconds before each get's reply"""
        self.path = path
        self.state = {}        # key hex -> (handshake age s or None, rx grows)
        self.gets = 0
        self.peers = []        # key hex, in install order
        self.requests = []     # every request, in order
        self.hold, self.held, self.get_delay = hold, None, get_delay
        self.release = threading.Event()
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen(16)
        self.acceptor = threading.Thread(target=self.accept, daemon=True)
        self.acceptor.start()

    def get_reply(self):
        now = int(time.time())
        self.gets += 1
        lines = ["private_key=" + bytes(range(1, 33)).hex(), "listen_port=51999"]
        for key in list(self.peers):
            age, grows = self.state.get(key, (None, False))
            rx = 1000 + (self.gets if grows else 0)
            lines += [f"public_key={key}", "preshared_key=" + "0" * 64, "protocol_version=1",
                      "endpoint=192.0.2.7:40000",
                      f"last_handshake_time_sec={now - age if age is not None else 0}",
                      "last_handshake_time_nsec=0", "tx_bytes=0", f"rx_bytes={rx}",
                      "persistent_keepalive_interval=0", "allowed_ip=10.9.0.1/32"]
        return ("\n".join(lines) + "\nerrno=0\n\n").encode()

    def accept(self):
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        buf = b""
        with s:
            while True:
                while b"\n\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                req, buf = buf.split(b"\n\n", 1)
                req = req.decode()
                self.requests.append(req)
                if req == "get=1":
                    time.sleep(self.get_delay)
                    s.sendall(self.get_reply())
                    continue
                if self.hold and self.held is None and f"public_key={self.hold}" in req:
                    self.held = len(self.requests) - 1
                    self.release.wait(10)
                # a set may name several peers (the installer batches)
                key = None
                for line in req.split("\n") + ["public_key=end"]:
                    if line.startswith("public_key="):
                        if key and key not in self.peers:
                            self.peers.append(key)
                        key = line.split("=", 1)[1]
                    elif line == "remove=true":
                        if key in self.peers:
                            self.peers.remove(key)
                        key = None
                s.sendall(b"errno=0\n\n")

    def close(self):
        try:
            self.srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.acceptor.join(5)
        self.srv.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def hexkey(pub):
    return base64.b64decode(pub).hex()


def keys_source(keys, interval="0"):
    return f"""
  src:
    plugin: source-keys
    options:
      keys: [{", ".join(keys)}]
      endpoint: 192.0.2.7:40000
      interval: {interval}"""


def fake_checks():
    sockdir = f"{tmp}/sock"
    os.mkdir(sockdir, 0o700)
    dead, live = wgnet.genkey()[1], wgnet.genkey()[1]
    peers = [(dead, "10.9.0.2/32"), (live, "10.9.0.3/32")]

    # 1. idle 1s: the dead session goes, the live one stays
    fake = FakeUapi(f"{sockdir}/ev0.sock")
    fake.state = {hexkey(dead): (200, False), hexkey(live): (10, False)}
    try:
        cfg, stats = config("fake-idle", keys_source([dead, live]), peers,
                            {"interface": "ev0", "socket_dir": sockdir, "completion": "none"},
                            {"interval": "100ms", "idle": "1s", "grace": "0s"})
        d = daemon(cfg)
        gone = wait_until(lambda: stat(stats, "wg.installed") == 2 and hexkey(dead) not in fake.peers, 5)
        kept = wait_until(lambda: stat(stats, "idle.idle_live") == 1, 3)
        time.sleep(1)
        s = read_stats(stats)
        ok(gone and s.get("idle.evicted_idle") == 1 and not s.get("idle.evicted_live")
           and re.search(rf"evicting {re.escape(dead)}: idle$", d.output(), re.M),
           CHECKS[7], (s, fake.peers, d.output()[-2000:]))
        ok(kept and hexkey(live) in fake.peers and s.get("idle.idle_live") == 1
           and s.get("wg.removed") == 1, CHECKS[8], (s, fake.peers))
        ok(d.stop() == 0, "exit 0", d.output())
    finally:
        fake.close()

    # 2. max_peers 1, idle 10m (neither is idle): the dead session (its
    # handshake 190 s old) is the more recently active (its rx grows at
    # every sweep), the live one (100 s) less: the dead one still goes first
    fake = FakeUapi(f"{sockdir}/ev1.sock")
    fake.state = {hexkey(dead): (190, True), hexkey(live): (100, False)}
    try:
        cfg, stats = config("fake-budget", keys_source([live, dead]), peers,
                            {"interface": "ev1", "socket_dir": sockdir, "completion": "none"},
                            {"interval": "100ms", "idle": "10m", "grace": "0s", "max_peers": "1"})
        d = daemon(cfg)
        gone = wait_until(lambda: stat(stats, "idle.evicted_over_budget") >= 1, 5)
        s = read_stats(stats)
        out = d.output()
        first = re.search(r"evicting (\S+): over max_peers", out)
        ok(gone and first and first.group(1) == dead and s.get("idle.evicted_live", 0) == 0
           and re.search(r"evicting the 1 least recently active \(0 of them with a live session\)", out),
           CHECKS[9], (s, first and first.group(1), out[-2000:]))
        ok(WARN not in out, CHECKS[10], out[-2000:])
        ok(d.stop() == 0, "exit 0", out)
    finally:
        fake.close()


def housekeeping_checks():
    sockdir = f"{tmp}/sockh"
    os.mkdir(sockdir, 0o700)
    held, other = wgnet.genkey()[1], wgnet.genkey()[1]

    # 1. the install of `held` waits on the fake; meanwhile the evictor
    # asks for a dump (deferred), and the next round's removal of `other`
    # is queued after that: it must still go before the dump
    fake = FakeUapi(f"{sockdir}/ev2.sock", hold=hexkey(held))
    src = f"""
  src:
    plugin: source-keys
    options:
      keys: [{held}]
      retire: [{other}]
      endpoint: 192.0.2.7:40000
      interval: 300ms"""
    try:
        cfg, stats = config("fake-first", src, [(held, "10.9.0.2/32")],
                            {"interface": "ev2", "socket_dir": sockdir, "completion": "none",
                             "timeout": "5s"},
                            {"interval": "10ms"})
        d = daemon(cfg)
        waited = wait_until(lambda: stat(stats, "src.retired") >= 2
                            and stat(stats, "idle.sweeps") == 0, 4)
        fake.release.set()
        h = fake.held

        def first_get():
            return next((i for i, r in enumerate(fake.requests) if h is not None and i > h
                         and r == "get=1"), None)
        got = wait_until(lambda: first_get() is not None, 3)
        g = first_get()
        between = "".join(fake.requests[h:g]) if got else ""
        removals = between.count(f"public_key={hexkey(other)}")
        s = read_stats(stats)
        ok(waited and got and removals >= 2 and s.get("wg.dumps_deferred", 0) >= 1,
           CHECKS[11], (removals, s, fake.requests[:12], d.output()[-2000:]))
        ok(d.stop() == 0, "exit 0", d.output()[-2000:])
    finally:
        fake.release.set()
        fake.close()

    # 2. every get takes 200 ms: the evictor's interval stretches
    fake = FakeUapi(f"{sockdir}/ev3.sock", get_delay=0.2)
    try:
        cfg, stats = config("fake-duty", keys_source([held]), [(held, "10.9.0.2/32")],
                            {"interface": "ev3", "socket_dir": sockdir, "completion": "none"},
                            {"interval": "100ms", "duty_cycle": "10"})
        port = natsd.free_port()  # below the ephemeral range
        with open(cfg) as f:
            text = f.read()
        write(cfg, f"http_listen: 127.0.0.1:{port}\n" + text)
        d = daemon(cfg)
        swept = wait_until(lambda: stat(stats, "idle.sweeps") >= 1
                           and stat(stats, "idle.sweep_interval_ms") > 100, 5)
        s = read_stats(stats)
        ok(swept and s.get("idle.sweep_interval_ms", 0) >= 2000 and s.get("idle.sweeps") == 1
           and s.get("wg.dump_ms", 0) >= 200, CHECKS[12], (s, d.output()[-2000:]))

        def scrape():
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                body = b""
                while chunk := c.recv(65536):
                    body += chunk
            return time.monotonic() - t0, body.decode(errors="replace")
        first, text1 = scrape()
        second, text2 = scrape()
        pulled = 'wggwd_peers{interface="ev3",origin="static"} 1'
        ok(first >= 0.2 and second < 0.15 and pulled in text1 and pulled in text2,
           CHECKS[13], (first, second, [x for x in text2.splitlines() if "wggwd_peers{" in x]))
        ok(d.stop() == 0, "exit 0", d.output()[-2000:])
    finally:
        fake.close()


def sliced_checks():
    """The engine judges a large dump in slices and the evictor takes it
    slice by slice (ops.dump_slices): its max_peers decision is still one
    over the whole interface, and the keys it evicts outlive their slice."""
    sockdir = f"{tmp}/socks"
    os.mkdir(sockdir, 0o700)
    keys = [base64.b64encode(os.urandom(32)).decode() for _ in range(2600)]  # the fake never checks
    fake = FakeUapi(f"{sockdir}/ev4.sock")
    # none idle (idle 2h), none live (handshakes over 180 s old): activity
    # is the install (knock) time, in key order, so the last ones stay
    # (give or take ties within a millisecond)
    fake.state = {hexkey(k): (200 + i, False) for i, k in enumerate(keys)}
    try:
        cfg, stats = config("fake-sliced", keys_source(keys),
                            [(k, f"10.{9 + i // 250}.{i % 250}.1/32") for i, k in enumerate(keys)],
                            {"interface": "ev4", "socket_dir": sockdir, "completion": "none"},
                            {"interval": "2s", "idle": "2h", "grace": "0s", "max_peers": "1000"})
        d = daemon(cfg)
        gone = wait_until(lambda: stat(stats, "idle.evicted_over_budget") >= 1600
                          and len(fake.peers) == 1000, 20)
        time.sleep(0.5)
        s = read_stats(stats)
        out = d.output()
        kept = set(fake.peers)
        ok(gone and s.get("wg.installed") == 2600 and s.get("idle.evicted_over_budget") == 1600
           and "over max_peers (2600 > 1000): evicting the 1600 least recently active" in out
           and kept <= {hexkey(k) for k in keys[1550:]} and not s.get("idle.sweep_errors"),
           CHECKS[14], (s, len(fake.peers), re.findall(r"over max_peers.*", out)[:3]))
        ok(d.stop() == 0, "exit 0", out[-2000:])
    finally:
        fake.close()


try:
    real_checks()
    fake_checks()
    housekeeping_checks()
    sliced_checks()
finally:
    for d in daemons:
        if d.alive():
            print(f"# a daemon still ran: {d.output()[-2000:]}")
        if os.environ.get("VERBOSE"):
            print("".join(f"# {line}\n" for line in d.output().splitlines()), end="")
        d.close()
    net.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
done()
