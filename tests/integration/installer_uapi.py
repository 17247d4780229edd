#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""installer-uapi against real wireguard-go interfaces in network namespaces
(role inversion, keepalive restore, re-inject mode, eviction through dump
and remove, the restore at stop, start failures), and against a fake UAPI
socket (the exact request text, an errno reply, reconnecting).
VERBOSE=1 prints every daemon's log as TAP comments."""
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import (TEST_PLUGINS, WGGWD, Daemon, done, ok, read_stats,  # noqa: E402
                 secret_file, skip, wait_until)
import wgnet  # noqa: E402

CHECKS = [
    "start: the installer reads the gateway's key and port over UAPI",
    "inversion: the peer appears with the client's endpoint and allowed IPs",
    "inversion: the handshake completes with the gateway as initiator (the client sent nothing first)",
    "inversion: the keepalive is put back to the configured 0 after the handshake",
    "inversion: the client pings the gateway through the tunnel",
    "a peer that never answers gets its keepalive back after restore_timeout",
    "a repeated key with the same config is not installed again (unchanged)",
    "inversion run: SIGTERM exits 0",
    "reinject: installed with keepalive 0 and the re-inject flag set",
    "reinject: the gateway does not initiate",
    "reinject + evictor-idle: dump and remove take the never-completed peer away",
    "reinject run: SIGTERM exits 0",
    "stop: a peer still waiting for its handshake gets its keepalive back; exit 0",
    "wireguard-go restarts: the next knock installs the peer again and the tunnel comes back",
    "fake socket: the install request carries key, PSK, endpoint, allowed IPs, keepalive 0 then 25",
    "fake socket: errno=-22 is logged with the peer, fails the item, and a new connection succeeds",
    "fake socket: the reply buffer is parsed across many reads (a large dump)",
    "missing interface: start fails, says so, exit non-zero",
    "check: an interface name longer than 15 characters is refused",
]

why = wgnet.missing()
if not why and not os.access(WGGWD, os.X_OK):
    why = f"no wggwd at {WGGWD} (set WGGWD_BUILD)"
if why:
    for name in CHECKS:
        skip(name, why)
    done()

tmp = tempfile.mkdtemp(prefix="wggwd-uapi-")
daemons = []
net = wgnet.Net("wgu")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def daemon(cfg, ns=None):
    d = Daemon(cfg, netns=ns)
    daemons.append(d)
    return d


def config(name, keys, endpoint, peers, wg_opts, extra_stages="", extra_pipeline="",
           interval="0"):
    stats = f"{tmp}/{name}.json"
    peer_yaml = "".join(f"""
        - public_key: {pub}
          allowed_ips: [{", ".join(ips)}]{extra}""" for pub, ips, extra in peers)
    opts = "".join(f"\n      {k}: {v}" for k, v in wg_opts.items())
    cfg = write(f"{tmp}/{name}.yaml", f"""
log_level: debug
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  keys:
    plugin: source-keys
    options:
      keys: [{", ".join(keys)}]
      endpoint: {endpoint}
      interval: {interval}
  static:
    plugin: resolver-static
    options:
      peers:{peer_yaml}
  wg:
    plugin: installer-uapi
    options:{opts}
{extra_stages}
pipelines:
  pull: [keys, static, wg{extra_pipeline}]
""")
    return cfg, stats


def log_has(path, text):
    try:
        with open(path, errors="replace") as f:
            return text in f.read()
    except OSError:
        return False


def stat(stats, name):
    return read_stats(stats).get(name, 0)


# ----------------------------------------------------------- real interfaces

def real_checks():
    topo = net.gateway_with_clients(2)
    c1, c2 = topo.clients
    gw = lambda pub: net.peer(topo.gw_ns, topo.gw_if, pub)  # noqa: E731
    ghost_priv, ghost = wgnet.genkey()

    # 1. inversion: client 1 (alive) and a ghost (endpoint answers nothing)
    before = net.peer(c1.ns, c1.iface, topo.gw_pub)
    cfg, stats = config("inv", [c1.pub, ghost], c1.endpoint,
                        [(c1.pub, [f"{c1.tunnel_ip}/32"], ""), (ghost, ["10.202.0.99/32"], "")],
                        {"interface": topo.gw_if, "completion": "inversion", "restore_poll": "100ms",
                         "restore_timeout": "1s"}, interval="300ms")
    d = daemon(cfg, topo.gw_ns)
    ok(wait_until(lambda: f"public key {topo.gw_pub}, listen port {topo.gw_port}" in d.output()),
       CHECKS[0], d.output())
    p = wait_until(lambda: gw(c1.pub))
    ok(p and p["endpoint"] == c1.endpoint and p["allowed_ips"] == [f"{c1.tunnel_ip}/32"],
       CHECKS[1], (p, d.output()))
    hs = wait_until(lambda: (gw(c1.pub) or {}).get("latest_handshake"), 5)
    ok(before and before["tx"] == 0 and before["latest_handshake"] == 0 and hs
       and log_has(c1.log, "Received handshake initiation")
       and not log_has(c1.log, "Sending handshake initiation"),
       CHECKS[2], (before, gw(c1.pub), d.output()))
    restored = wait_until(lambda: (gw(c1.pub) or {}).get("keepalive") == 0
                          and stat(stats, "wg.restore_keepalive") >= 1)
    ok(restored, CHECKS[3], (gw(c1.pub), read_stats(stats), d.output()))
    m = re.search(r"handshake (-?[\d.]+) ms after install", d.output())
    if m:
        print(f"# install -> handshake: {m.group(1)} ms (gateway's own timestamps)")
    ok(net.ping(c1.ns, topo.gw_tunnel_ip, timeout=2), CHECKS[4], gw(c1.pub))
    ok(wait_until(lambda: stat(stats, "wg.restore_timeout") == 1
                  and (gw(ghost) or {}).get("keepalive") == 0, 5)
       and (gw(ghost) or {}).get("latest_handshake") == 0,
       CHECKS[5], (gw(ghost), read_stats(stats)))
    ok(wait_until(lambda: stat(stats, "wg.unchanged") >= 2, 3)
       and stat(stats, "wg.installed") == 2 and stat(stats, "wg.uapi_errors") == 0,
       CHECKS[6], read_stats(stats))
    ok(d.stop() == 0, CHECKS[7], d.output())

    # 2. reinject, with evictor-idle removing the peer that never completes
    cfg, stats = config("rei", [c2.pub], c2.endpoint, [(c2.pub, [f"{c2.tunnel_ip}/32"], "")],
                        {"interface": topo.gw_if, "completion": "reinject"},
                        extra_stages="""  idle:
    plugin: evictor-idle
    options:
      interval: 100ms
      idle: 1s
      grace: 2s""", extra_pipeline=", idle")
    d = daemon(cfg, topo.gw_ns)
    p = wait_until(lambda: gw(c2.pub))
    ok(p and p["keepalive"] == 0 and p["endpoint"] == c2.endpoint
       and wait_until(lambda: "re-inject asked" in d.output(), 2),
       CHECKS[8], (p, d.output()))
    # nothing re-sends here (source-keys holds no packet): no initiation
    # may come from the gateway while the peer sits there
    initiated = wait_until(lambda: log_has(c2.log, "Received handshake initiation")
                           or (gw(c2.pub) or {}).get("latest_handshake"), 1.5)
    ok(p and not initiated, CHECKS[9], (gw(c2.pub), d.output()))
    ok(wait_until(lambda: gw(c2.pub) is None and stat(stats, "wg.removed") == 1, 5)
       and "never completed a handshake" in d.output(),
       CHECKS[10], (gw(c2.pub), read_stats(stats), d.output()))
    ok(d.stop() == 0, CHECKS[11], d.output())

    # 3. a peer still waiting when the daemon stops
    ghost2 = wgnet.genkey()[1]
    cfg, stats = config("stop", [ghost2], "10.201.0.98:51820",
                        [(ghost2, ["10.202.0.98/32"], "")], {"interface": topo.gw_if, "completion": "inversion"})
    d = daemon(cfg, topo.gw_ns)
    waiting = wait_until(lambda: (gw(ghost2) or {}).get("keepalive") == 25)
    rc = d.stop()
    ok(waiting and rc == 0 and (gw(ghost2) or {}).get("keepalive") == 0
       and "putting back the keepalive of 1 peers" in d.output(),
       CHECKS[12], (waiting, rc, gw(ghost2), d.output()))

    # 4. wireguard-go restarts with no peers: what we installed is gone
    cfg, stats = config("restart", [c1.pub], c1.endpoint,
                        [(c1.pub, [f"{c1.tunnel_ip}/32"], "")],
                        {"interface": topo.gw_if, "completion": "inversion", "restore_poll": "100ms"}, interval="200ms")
    net.wg_set(topo.gw_ns, topo.gw_if, "peer", c1.pub, "remove")
    d = daemon(cfg, topo.gw_ns)
    first = wait_until(lambda: (gw(c1.pub) or {}).get("latest_handshake")
                       and (gw(c1.pub) or {}).get("keepalive") == 0)
    net.restart_gateway(topo)
    back = wait_until(lambda: (gw(c1.pub) or {}).get("latest_handshake"), 5)
    pinged = back and net.ping(c1.ns, topo.gw_tunnel_ip, timeout=2)
    counted = wait_until(lambda: stat(stats, "wg.installed") >= 2, 2)
    rc = d.stop()
    ok(first and back and pinged and counted and rc == 0,
       CHECKS[13], (first, back, pinged, rc, gw(c1.pub), read_stats(stats), d.output()))
    return topo


# --------------------------------------------------------------- fake socket

class FakeUapi:
    """A UAPI socket that records requests; fails the first `fail` sets
    with errno=-22 and answers gets with `peers` fake peers."""

    def __init__(self, path, fail=1, peers=0):
        self.path, self.fail, self.npeers = path, fail, peers
        self.requests, self.connections = [], 0
        self.priv = bytes(range(1, 33)).hex()
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def get_reply(self):
        lines = [f"private_key={self.priv}", "listen_port=51999"]
        for i in range(self.npeers):
            lines += [f"public_key={i:064x}", "preshared_key=" + "0" * 64,
                      "protocol_version=1", "endpoint=192.0.2.1:51820",
                      "last_handshake_time_sec=0", "last_handshake_time_nsec=0",
                      "tx_bytes=0", "rx_bytes=0", "persistent_keepalive_interval=0",
                      "allowed_ip=10.9.0.1/32"]
        return ("\n".join(lines) + "\nerrno=0\n\n").encode()

    def accept(self):
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
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
                    s.sendall(self.get_reply())
                elif req.startswith("set=1") and self.fail > 0:
                    self.fail -= 1
                    s.sendall(b"errno=-22\n\n")
                    buf = b""  # like wireguard-go: the rest is garbage now
                else:
                    s.sendall(b"errno=0\n\n")

    def close(self):
        self.srv.close()


def fake_checks():
    sockdir = f"{tmp}/sock"
    os.mkdir(sockdir, 0o700)
    fake = FakeUapi(f"{sockdir}/fake0.sock", fail=1, peers=3000)
    try:
        priv, pub = wgnet.genkey()
        psk = wgnet.genkey()[0]
        psk_file = secret_file(tmp, "psk", psk)
        cfg, stats = config("fake", [pub], "192.0.2.7:40000",
                            [(pub, ["10.9.0.2/32", "fd00:9::2/128"],
                              f"\n          preshared_key_file: {psk_file}")],
                            {"interface": "fake0", "socket_dir": sockdir, "completion": "inversion",
                             "restore_poll": "50ms"}, interval="200ms")
        d = daemon(cfg)
        got = wait_until(lambda: stat(stats, "wg.installed") >= 1, 5)
        sets = [r for r in fake.requests if r.startswith("set=1\npublic_key=")]
        key_hex = __import__("base64").b64decode(pub).hex()
        psk_hex = __import__("base64").b64decode(psk).hex()
        want = [
            "set=1", f"public_key={key_hex}", f"preshared_key={psk_hex}",
            "endpoint=192.0.2.7:40000", "replace_allowed_ips=true",
            "allowed_ip=10.9.0.2/32", "allowed_ip=fd00:9::2/128",
            "persistent_keepalive_interval=0", "persistent_keepalive_interval=25"]
        ok(got and sets and sets[0].split("\n") == want, CHECKS[14],
           (sets[:1], want, d.output()))
        s = read_stats(stats)
        out = d.output()
        ok(got and s.get("wg.install_failed") == 1 and s.get("wg.uapi_errors", 0) >= 1
           and s.get("wg.reconnects", 0) >= 1 and fake.connections >= 3
           and re.search(rf"install of peer {re.escape(pub)} on fake0 failed: errno=-22 \(EINVAL", out)
           and psk not in out and psk_hex not in out and fake.priv not in out,
           CHECKS[15], (s, fake.connections, out))
        # the fake peers never handshake: the restore poll keeps dumping
        # 3000 peers (~700 kB a reply) while ours waits
        dumps = wait_until(lambda: fake.requests.count("get=1") >= 4, 5)
        ok(dumps and stat(stats, "wg.uapi_errors") == 1 and d.alive(), CHECKS[16],
           (fake.requests.count("get=1"), read_stats(stats), d.output()))
        d.stop()
    finally:
        fake.close()


# ------------------------------------------------------------------ failures

def failure_checks():
    cfg, _ = config("missing", [wgnet.genkey()[1]], "192.0.2.7:40000",
                    [(wgnet.genkey()[1], ["10.9.0.3/32"], "")],
                    {"interface": "wgu-nosuch0"})
    d = daemon(cfg)
    rc = d.wait_exit(10)
    ok(rc not in (0, None) and "is wireguard-go running for wgu-nosuch0?" in d.output(),
       CHECKS[17], (rc, d.output()))
    cfg, _ = config("long", [wgnet.genkey()[1]], "192.0.2.7:40000",
                    [(wgnet.genkey()[1], ["10.9.0.3/32"], "")],
                    {"interface": "wgu-much-too-long0"})
    p = __import__("subprocess").run([WGGWD, "check", "-c", cfg], capture_output=True, text=True)
    ok(p.returncode != 0 and "expected an interface name" in p.stderr + p.stdout, CHECKS[18],
       p.stderr + p.stdout)


try:
    real_checks()
    fake_checks()
    failure_checks()
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
