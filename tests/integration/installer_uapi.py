#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""installer-uapi against real wireguard-go interfaces in network namespaces
(role inversion, keepalive restore, re-inject mode through source-bpf,
eviction through dump and retire, the restore at stop, a peer with 1,000
allowed IPs, start failures), and against a fake UAPI socket (the exact
request text, an errno reply, reconnecting).
VERBOSE=1 prints every daemon's log as TAP comments."""
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

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
    "reinject: the gateway does not initiate (it answers the re-sent initiation)",
    "reinject + evictor-idle: dump and retire take the never-completed peer away",
    "reinject run: SIGTERM exits 0",
    "stop: a peer still waiting for its handshake gets its keepalive back; exit 0",
    "wireguard-go restarts: the next knock installs the peer again and the tunnel comes back",
    "fake socket: the install request carries key, PSK, endpoint, allowed IPs, keepalive 0 then 25",
    "fake socket: errno=-22 is logged with the peer, fails the item, and a new connection succeeds",
    "fake socket: the reply buffer is parsed across many reads (a large dump)",
    "missing interface: start fails, says so, exit non-zero",
    "check: an interface name longer than 15 characters is refused",
    "check: completion reinject behind a source that cannot re-send is refused at `completion`",
    "a peer with 1,000 allowed IPs (resolver-static) is installed; `wg show` lists all 1,000",
    "the 1,000 allowed IPs: a second knock changes nothing (unchanged)",
    "the 1,000 allowed IPs: a daemon started on them reads them and finds the knock unchanged",
    "policy: a static answer with an allowed IP outside allowed_prefixes is refused at install (policy), logged with its key; the in-policy one installs",
    "policy: with no allowed_prefixes a store-fed pipeline says so at start, and installs what it is given",
    "policy: a store's cached answer outside a narrowed allowed_prefixes is refused at install and the peer taken off the interface; an in-policy cached one installs",
    "check: allowed_prefixes [any, ...] and a malformed prefix are refused",
    "fake socket: a dump reply with no blank line is cut at max_reply; the daemon reconnects and its memory stays small",
    "fake socket: installs queued behind a slow one go in one set; a refused batch is sent again one peer a set and only the refused peer fails",
    "fake socket: a knock of a peer already there with the same allowed IPs sets its endpoint and adds its allowed IPs without replacing them (no window without them); one whose IPs changed has them replaced",
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
           interval="0", sniff=None):
    """keys/endpoint: source-keys knocks; sniff=INTERFACE: source-bpf and
    decoder-noise there instead (real initiations, re-sent on reinject)"""
    stats = f"{tmp}/{name}.json"
    peer_yaml = "".join(f"""
        - public_key: {pub}
          allowed_ips: [{", ".join(ips)}]{extra}""" for pub, ips, extra in peers)
    opts = "".join(f"\n      {k}: {v}" for k, v in wg_opts.items())
    source = f"""
  keys:
    plugin: source-keys
    options:
      keys: [{", ".join(keys)}]
      endpoint: {endpoint}
      interval: {interval}""" if not sniff else f"""
  keys:
    plugin: source-bpf
    options:
      interface: {sniff}
  noise:
    plugin: decoder-noise"""
    cfg = write(f"{tmp}/{name}.yaml", f"""
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
    options:{opts}
{extra_stages}
pipelines:
  pull: [keys,{" noise," if sniff else ""} static, wg{extra_pipeline}]
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
                          and stat(stats, "wg.keepalive_restored") >= 1)
    ok(restored, CHECKS[3], (gw(c1.pub), read_stats(stats), d.output()))
    m = re.search(r"handshake (-?[\d.]+) ms after install", d.output())
    if m:
        print(f"# install -> handshake: {m.group(1)} ms (gateway's own timestamps)")
    ok(net.ping(c1.ns, topo.gw_tunnel_ip, timeout=2), CHECKS[4], gw(c1.pub))
    ok(wait_until(lambda: stat(stats, "wg.restore_timeouts") == 1
                  and (gw(ghost) or {}).get("keepalive") == 0, 5)
       and (gw(ghost) or {}).get("latest_handshake") == 0,
       CHECKS[5], (gw(ghost), read_stats(stats)))
    ok(wait_until(lambda: stat(stats, "wg.unchanged") >= 2, 3)
       and stat(stats, "wg.installed") == 2 and stat(stats, "wg.uapi_errors") == 0,
       CHECKS[6], read_stats(stats))
    ok(d.stop() == 0, CHECKS[7], d.output())

    # 2. reinject (source-bpf sniffs client 2's initiation and re-sends it),
    # with evictor-idle removing the peer that never completes: the gateway
    # holds a preshared key the client does not, so the gateway answers the
    # re-sent initiation but no handshake ever completes
    cfg, stats = config("rei", [], None,
                        [(c2.pub, [f"{c2.tunnel_ip}/32"],
                          f"\n          preshared_key_file: {secret_file(tmp, 'wrongpsk', wgnet.genkey()[0])}")],
                        {"interface": topo.gw_if, "completion": "reinject"},
                        extra_stages="""  idle:
    plugin: evictor-idle
    options:
      interval: 100ms
      idle: 1s
      grace: 2s""", extra_pipeline=", idle", sniff=topo.gw_uplink)
    d = daemon(cfg, topo.gw_ns)
    wait_until(lambda: "running" in d.output() or not d.alive(), 10)
    net.ping(c2.ns, topo.gw_tunnel_ip, timeout=1)  # the client knocks
    p = wait_until(lambda: gw(c2.pub))
    ok(p and p["keepalive"] == 0 and p["endpoint"] == c2.endpoint
       and wait_until(lambda: "re-inject asked" in d.output(), 2)
       and wait_until(lambda: stat(stats, "keys.reinjected") >= 1, 2),
       CHECKS[8], (p, read_stats(stats), d.output()))
    # the gateway answers (the re-sent initiation) but never initiates
    initiated = wait_until(lambda: log_has(c2.log, "Received handshake initiation")
                           or (gw(c2.pub) or {}).get("latest_handshake"), 1.5)
    answered = wait_until(lambda: log_has(c2.log, "Received invalid response message")
                          or log_has(c2.log, "Received handshake response"), 3)
    ok(p and not initiated and answered,
       CHECKS[9], (gw(c2.pub), d.output()))
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

    def __init__(self, path, fail=1, peers=0, extra=(), junk=0, fail_key=None, delay=0):
        """extra: (key_hex, [allowed IPs]) listed by get too; junk: but on
        the first connection (the get at start), answer gets with this many
        bytes and no blank line; fail_key: fail every set naming that key
        (hex); delay: answer the first set this late (seconds)"""
        self.path, self.fail, self.npeers = path, fail, peers
        self.fail_key, self.delay = fail_key, delay
        self.extra, self.junk, self.gets = list(extra), junk, 0
        self.requests, self.connections = [], 0
        self.priv = bytes(range(1, 33)).hex()
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen(16)
        self.acceptor = threading.Thread(target=self.accept, daemon=True)
        self.acceptor.start()

    def get_reply(self):
        lines = [f"private_key={self.priv}", "listen_port=51999"]
        for i in range(self.npeers):
            lines += [f"public_key={i:064x}", "preshared_key=" + "0" * 64,
                      "protocol_version=1", "endpoint=192.0.2.1:51820",
                      "last_handshake_time_sec=0", "last_handshake_time_nsec=0",
                      "tx_bytes=0", "rx_bytes=0", "persistent_keepalive_interval=0",
                      "allowed_ip=10.9.0.1/32"]
        for key, ips in self.extra:
            lines += [f"public_key={key}", "preshared_key=" + "0" * 64, "protocol_version=1",
                      "last_handshake_time_sec=0", "last_handshake_time_nsec=0", "tx_bytes=0",
                      "rx_bytes=0", "persistent_keepalive_interval=0"]
            lines += [f"allowed_ip={ip}" for ip in ips]
        return ("\n".join(lines) + "\nerrno=0\n\n").encode()

    def accept(self):
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(s, self.connections == 1),
                             daemon=True).start()

    def serve(self, s, first=False):
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
                    self.gets += 1
                    if self.junk and not first:  # the start's get is answered
                        try:
                            for _ in range(self.junk // 65536):
                                s.sendall(b"a=b\n" * 16384)
                        except OSError:
                            pass
                        return
                    s.sendall(self.get_reply())
                elif req.startswith("set=1") and (
                        self.fail > 0 or (self.fail_key and f"public_key={self.fail_key}" in req)):
                    self.fail -= 1
                    s.sendall(b"errno=-22\n\n")
                    buf = b""  # like wireguard-go: the rest is garbage now
                else:
                    if self.delay and req.startswith("set=1"):
                        time.sleep(self.delay)
                        self.delay = 0
                    s.sendall(b"errno=0\n\n")

    def close(self):
        # wake the accept thread and let it end before the descriptor is
        # closed: a thread still in accept() would take the connections of
        # the next fake to get the same descriptor number
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


def batch_checks():
    """Five knocks at once: the first install is answered late, the four
    behind it go in one set, which names a key the fake refuses."""
    sockdir = f"{tmp}/sockb"
    os.mkdir(sockdir, 0o700)
    keys = [wgnet.genkey()[1] for _ in range(5)]
    bad = __import__("base64").b64decode(keys[3]).hex()
    fake = FakeUapi(f"{sockdir}/fake1.sock", fail=0, fail_key=bad, delay=0.3)
    try:
        cfg, stats = config("batch", keys, "192.0.2.7:40000",
                            [(k, [f"10.9.1.{i + 1}/32"], "") for i, k in enumerate(keys)],
                            {"interface": "fake1", "socket_dir": sockdir, "completion": "none"})
        d = daemon(cfg)
        got = wait_until(lambda: stat(stats, "wg.installed") >= 4
                         and stat(stats, "wg.install_failed") >= 1, 5)
        s = read_stats(stats)
        out = d.output()
        sets = [r for r in fake.requests if r.startswith("set=1\n")]
        multi = [r for r in sets if r.count("public_key=") > 1]
        after = sets[sets.index(multi[0]) + 1:] if multi else []
        ok(got and s.get("wg.installed") == 4 and s.get("wg.install_failed") == 1
           and s.get("wg.batched_sets", 0) >= 1 and s.get("wg.batch_splits") == 1
           and multi and bad in multi[0] and all(r.count("public_key=") == 1 for r in after)
           and len([r for r in after if bad in r]) == 1
           and re.search(rf"install of peer {re.escape(keys[3])} on fake1 failed: errno=-22", out)
           and not any(re.search(rf"peer {re.escape(k)} on fake1 failed", out)
                       for i, k in enumerate(keys) if i != 3),
           CHECKS[28], (s, sets, out[-3000:]))
        d.stop()
    finally:
        fake.close()


def keep_ips_checks():
    """Two peers on the interface at start, without endpoint (as after a
    push); both knock. Same allowed IPs: the set names the endpoint and
    adds the IPs without replace_allowed_ips (a peer the interface lost
    would get them back). Other allowed IPs: replaced."""
    sockdir = f"{tmp}/sockk"
    os.mkdir(sockdir, 0o700)
    same, other = wgnet.genkey()[1], wgnet.genkey()[1]
    fake = FakeUapi(f"{sockdir}/fake2.sock", fail=0,
                    extra=[(b64hex(same), ["10.9.2.1/32", "fd00:9::21/128"]),
                           (b64hex(other), ["10.9.2.2/32"])])
    try:
        cfg, stats = config("keepips", [same, other], "192.0.2.7:40000",
                            [(same, ["fd00:9::21/128", "10.9.2.1/32"], ""),
                             (other, ["10.9.2.3/32"], "")],
                            {"interface": "fake2", "socket_dir": sockdir, "completion": "inversion"})
        d = daemon(cfg)
        got = wait_until(lambda: stat(stats, "wg.updated") >= 2, 5)
        sets = [r for r in fake.requests if r.startswith("set=1\n")]
        # each peer's part of the sets (they may go in one)
        part = lambda key: ["public_key=" + p for r in sets for p in r.split("public_key=")  # noqa: E731
                            if p.startswith(b64hex(key))]
        s_same, s_other = part(same), part(other)
        ok(got and s_same and s_other and stat(stats, "wg.ips_kept") == 1
           and "endpoint=192.0.2.7:40000" in s_same[0] and "replace_allowed_ips" not in s_same[0]
           and "allowed_ip=fd00:9::21/128\nallowed_ip=10.9.2.1/32" in s_same[0]
           and "replace_allowed_ips=true\nallowed_ip=10.9.2.3/32" in s_other[0],
           CHECKS[29], (read_stats(stats), sets, d.output()[-2000:]))
        d.stop()
    finally:
        fake.close()


# -------------------------------------------------------------------- policy

def b64hex(key):
    return __import__("base64").b64decode(key).hex()


def sets_for(fake, key):
    """key's peer entries in the sets the fake got (a set may carry several
    peers: the installer batches the ops queued behind one request)."""
    h = b64hex(key)
    return ["set=1\npublic_key=" + e for r in fake.requests if r.startswith("set=1\n")
            for e in r.split("public_key=")[1:] if e.startswith(h)]


def policy_checks():
    sockdir = f"{tmp}/psock"
    os.mkdir(sockdir, 0o700)
    a, b = wgnet.genkey()[1], wgnet.genkey()[1]
    a_ips, b_ips = ["10.9.0.2/32", "fd00:9::2/128"], ["10.9.0.3/32", "192.168.77.0/24"]
    policy = {"allowed_prefixes": "[10.9.0.0/16, fd00:9::/32]"}

    # 1. resolver-static straight into the installer
    fake = FakeUapi(f"{sockdir}/pol0.sock", fail=0)
    try:
        cfg, stats = config("pol-static", [a, b], "192.0.2.7:40000",
                            [(a, a_ips, ""), (b, b_ips, "")],
                            dict(interface="pol0", socket_dir=sockdir, completion="none", **policy))
        d = daemon(cfg)
        got = wait_until(lambda: stat(stats, "wg.installed") >= 1 and stat(stats, "wg.policy_refused") >= 1, 5)
        s = read_stats(stats)
        out = d.output()
        ok(got and sets_for(fake, a) and not sets_for(fake, b)
           and s.get("pipeline.pull.drop.policy", 0) >= 1
           and f"peer {b} (resolved): allowed IP 192.168.77.0/24 is outside allowed_prefixes: not installed" in out
           and "allowed_prefixes is not set" not in out and d.stop() == 0,
           CHECKS[23], (s, fake.requests, out))
    finally:
        fake.close()

    # 2. store-sqlite caches both answers (no policy yet: said at start)
    db = f"{tmp}/pol.db"
    cache = f"""  cache:
    plugin: store-sqlite
    options:
      path: {db}
      commit_interval: 10ms"""
    fake = FakeUapi(f"{sockdir}/pol1.sock", fail=0)
    try:
        cfg, stats = config("pol-cache1", [a, b], "192.0.2.7:40000",
                            [(a, a_ips, ""), (b, b_ips, "")],
                            {"interface": "pol1", "socket_dir": sockdir, "completion": "none"},
                            extra_stages=cache)
        with open(cfg) as f:
            text = f.read()
        with open(cfg, "w") as f:
            f.write(text.replace("pull: [keys, static, wg]", "pull: [keys, cache, static, wg]"))
        d = daemon(cfg)
        got = wait_until(lambda: stat(stats, "wg.installed") >= 2 and stat(stats, "cache.saved") >= 2, 5)
        out = d.output()
        rc = d.stop()
        ok(got and sets_for(fake, b) and rc == 0
           and re.search(r"allowed_prefixes is not set: .*pipeline pull", out),
           CHECKS[24], (read_stats(stats), out))
    finally:
        fake.close()

    # 3. the same database, the policy narrowed, the static list empty of
    # them: both answers come from the cache; b is still on the interface
    fake = FakeUapi(f"{sockdir}/pol1.sock", fail=0, extra=[(b64hex(b), b_ips)])
    try:
        cfg, stats = config("pol-cache2", [a, b], "192.0.2.7:40000",
                            [(wgnet.genkey()[1], ["10.9.0.9/32"], "")],
                            dict(interface="pol1", socket_dir=sockdir, completion="none", **policy),
                            extra_stages=cache)
        with open(cfg) as f:
            text = f.read()
        with open(cfg, "w") as f:
            f.write(text.replace("pull: [keys, static, wg]", "pull: [keys, cache, static, wg]"))
        d = daemon(cfg)
        got = wait_until(lambda: stat(stats, "wg.installed") >= 1 and stat(stats, "wg.removed") >= 1, 5)
        s = read_stats(stats)
        out = d.output()
        installs_b = [r for r in sets_for(fake, b) if "remove=true" not in r]
        removes_b = [r for r in sets_for(fake, b) if "remove=true" in r]
        ok(got and sets_for(fake, a) and not installs_b and removes_b
           and s.get("cache.hit", 0) >= 2 and s.get("wg.policy_refused", 0) >= 1
           and f"peer {b} (a store's cached answer): allowed IP 192.168.77.0/24 is outside allowed_prefixes: not installed; removing it from the interface" in out
           and d.stop() == 0,
           CHECKS[25], (s, fake.requests, out))
    finally:
        fake.close()

    # 4. config checks
    outs = []
    for bad in ("[any, 10.9.0.0/16]", "[10.9.0.0/33]"):
        cfg, _ = config("pol-bad", [a], "192.0.2.7:40000", [(a, a_ips, "")],
                        {"interface": "wgu-x0", "allowed_prefixes": bad})
        p = __import__("subprocess").run([WGGWD, "check", "-c", cfg], capture_output=True, text=True)
        outs.append((p.returncode, p.stderr + p.stdout))
    ok(outs[0][0] != 0 and "allowed_prefixes: [any] stands alone" in outs[0][1]
       and outs[1][0] != 0 and "allowed_prefixes" in outs[1][1] and "10.9.0.0/33" in outs[1][1],
       CHECKS[26], outs)


def max_reply_checks():
    sockdir = f"{tmp}/msock"
    os.mkdir(sockdir, 0o700)
    fake = FakeUapi(f"{sockdir}/big0.sock", fail=0, junk=32 << 20)
    try:
        pub = wgnet.genkey()[1]
        cfg, stats = config("bigreply", [pub], "192.0.2.7:40000", [(pub, ["10.9.0.2/32"], "")],
                            {"interface": "big0", "socket_dir": sockdir, "completion": "inversion",
                             "restore_poll": "50ms", "max_reply": "1MiB"})
        d = daemon(cfg)
        cut = wait_until(lambda: "is longer than max_reply (1048576 bytes)" in d.output()
                         and stat(stats, "wg.reconnects") >= 1, 10)
        hwm = 0
        try:
            with open(f"/proc/{d.proc.pid}/status") as f:
                hwm = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
        print(f"# daemon peak RSS {hwm} kB after {fake.gets} gets of 32 MiB without a blank line")
        ok(cut and d.alive() and 0 < hwm < 48 * 1024, CHECKS[27], (hwm, read_stats(stats), d.output()))
        d.stop()
    finally:
        fake.close()


# ------------------------------------------------------------------ failures

def failure_checks():
    cfg, _ = config("missing", [wgnet.genkey()[1]], "192.0.2.7:40000",
                    [(wgnet.genkey()[1], ["10.9.0.3/32"], "")],
                    {"interface": "wgu-nosuch0", "completion": "none"})
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
    cfg, _ = config("norejig", [wgnet.genkey()[1]], "192.0.2.7:40000",
                    [(wgnet.genkey()[1], ["10.9.0.3/32"], "")],
                    {"interface": "wgu-x0", "completion": "reinject"})
    p = __import__("subprocess").run([WGGWD, "check", "-c", cfg], capture_output=True, text=True)
    out = p.stderr + p.stdout
    ok(p.returncode != 0 and re.search(r"wg \(installer-uapi\): completion: reinject needs a source that re-sends", out),
       CHECKS[19], out)


def wide_checks(topo):
    """1,000 allowed IPs on one peer, end to end on wireguard-go."""
    c1 = topo.clients[0]
    gw = lambda pub: net.peer(topo.gw_ns, topo.gw_if, pub)  # noqa: E731
    ips = [f"{c1.tunnel_ip}/32"] + [f"fd00:77::{i:x}/128" for i in range(1, 500)] + \
          [f"10.{100 + i // 250}.{i % 250}.0/24" for i in range(500)]
    net.wg_set(topo.gw_ns, topo.gw_if, "peer", c1.pub, "remove")
    cfg, stats = config("wide", [c1.pub], c1.endpoint, [(c1.pub, ips, "")],
                        {"interface": topo.gw_if, "completion": "inversion"}, interval="300ms")
    d = daemon(cfg, topo.gw_ns)
    p = wait_until(lambda: len((gw(c1.pub) or {}).get("allowed_ips", [])) == 1000, 5)
    ok(p and set(gw(c1.pub)["allowed_ips"]) == set(ips), CHECKS[20],
       (len((gw(c1.pub) or {}).get("allowed_ips", [])), d.output()[-2000:]))
    unchanged = wait_until(lambda: stat(stats, "wg.unchanged") >= 1, 3)
    s = read_stats(stats)
    ok(unchanged and s.get("wg.installed") == 1 and d.stop() == 0, CHECKS[21], s)
    os.unlink(stats)
    d = daemon(cfg, topo.gw_ns)
    unchanged = wait_until(lambda: stat(stats, "wg.unchanged") >= 1, 5)
    s = read_stats(stats)
    ok(unchanged and s.get("wg.installed") == 0 and s.get("wg.updated") == 0 and d.stop() == 0
       and "1 peers; completion inversion" in d.output(), CHECKS[22], (s, d.output()))


try:
    wide_checks(real_checks())
    fake_checks()
    batch_checks()
    keep_ips_checks()
    failure_checks()
    policy_checks()
    max_reply_checks()
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
