#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""source-nats and resolver-nats against a real nats-server (JetStream, on
127.0.0.1, a free port, a temp dir) and userspace WireGuard (wireguard-go
in a wgnet namespace; wggwd runs outside it and talks UAPI through the
socket). The test speaks the NATS text protocol itself (tests/lib/natsd.py)
and watches the daemon's ACKs by subscribing to $JS.ACK.>.
VERBOSE=1 prints every daemon's log as TAP comments."""
import base64
import ipaddress
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import BUILD, TEST_PLUGINS, WGGWD, Daemon, done, ok, read_stats, skip, wait_until  # noqa: E402
import natsd  # noqa: E402
import wgnet  # noqa: E402

CHECKS = [
    "push add: the peer appears on the interface with its allowed IPs, preshared key and keepalive",
    "push add: its message is ACKed (+ACK seen on $JS.ACK)",
    "push update: a newer version replaces the allowed IPs",
    "out of order: an older version published after a newer one is ACKed as stale and changes nothing",
    "push remove: the peer is gone and the removal is ACKed",
    "poison: bad JSON, a bad key and an allowed IP outside allowed_prefixes are terminated (+TERM) and counted",
    "poison: terminated messages are not redelivered",
    "interleaved versions of 40 keys, shuffled: every key ends as its newest version",
    "the consumer's ack floor is the stream's last sequence, nothing pending",
    "nats-server restart mid-stream: the loss is logged and counted, the daemon reconnects by itself",
    "nats-server restart mid-stream: every message is installed and ACKed afterwards",
    "SIGTERM exits 0",
    "request mode: {\"ok\":true} comes back after the peer is installed",
    "request mode: a poison request is answered {\"ok\":false}",
    "resolver-nats: a known key is installed with the answered allowed IPs (subject carries base64url)",
    "resolver-nats: {\"error\":\"not_found\"} drops the key as unknown_key (counted not_found)",
    "resolver-nats: no answer within timeout is a timeout error",
    "resolver-nats: an allowed IP outside allowed_prefixes is refused (policy)",
    "resolver-nats: nobody listening is a no_responders error",
    "store-sqlite: push through the store installs and ACKs",
    "kill -9 mid-stream and restart: every key ends as its newest version",
    "kill -9 mid-stream and restart: the ack floor matches the stream, nothing pending",
    "hybrid: a pushed peer is installed, and served from the store to the pull pipeline without a lookup",
    "hybrid: a key nobody pushed is looked up over NATS and installed",
    "1,000 allowed IPs: the pushed peer is stored by store-sqlite with all of them",
    "1,000 allowed IPs: installed on wireguard-go, `wg show allowed-ips` lists all of them; ACKed",
    "more than max_allowed_ips: terminated (+TERM) as poison and counted, neither stored nor installed",
]

why = wgnet.missing() or natsd.missing()
if not why and not os.access(WGGWD, os.X_OK):
    why = f"no wggwd at {WGGWD} (set WGGWD_BUILD)"
if not why and not os.path.exists(os.path.join(BUILD, "plugins", "source-nats", "source-nats.so")):
    why = "source-nats is not built"
if why:
    for name in CHECKS:
        skip(name, why)
    done()

HAVE_STORE = os.path.exists(os.path.join(BUILD, "plugins", "store-sqlite", "store-sqlite.so"))
VERBOSE = os.environ.get("VERBOSE")
tmp = tempfile.mkdtemp(prefix="wggwd-nats-")
daemons = []
_n = [0]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def newkey():
    return base64.b64encode(os.urandom(32)).decode()


def b64url(key):
    return base64.urlsafe_b64encode(base64.b64decode(key)).decode().rstrip("=")


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


def nats_stage(name, url, subject, extra=""):
    return f"""
  {name}:
    plugin: source-nats
    options:
      servers: [{url}]
      subject: {subject}
      reconnect_wait: 100ms
      reconnect_wait_max: 500ms{extra}"""


def daemon(cfg):
    d = Daemon(cfg)
    daemons.append(d)
    return d


def finish(d):
    if VERBOSE:
        for line in d.output().splitlines():
            print(f"# {line}")


class Acks:
    """Every $JS.ACK.<stream>.<consumer>... publish: {stream seq: [payloads]}."""

    def __init__(self, client, consumer):
        self.by_seq = {}
        self.lock = threading.Lock()
        client.sub(f"$JS.ACK.PEERS.{consumer}.>", self._on)

    def _on(self, m):
        f = m.subject.split(".")
        seq = int(f[5])
        with self.lock:
            self.by_seq.setdefault(seq, []).append(m.data.decode())

    def get(self, seq):
        with self.lock:
            return list(self.by_seq.get(seq, []))


def floor_ok(client, consumer, last):
    try:
        ci = client.consumer_info("PEERS", consumer)
    except (RuntimeError, TimeoutError, OSError):
        return False
    return (ci["ack_floor"]["stream_seq"] == last and ci["num_ack_pending"] == 0
            and ci["num_pending"] == 0) and ci


def expected_state(msgs):
    """{key: allowed_ips or None (removed)} from the newest version of each."""
    best = {}
    for m in msgs:
        k = m["public_key"]
        if k not in best or m["version"] > best[k]["version"]:
            best[k] = m
    return {k: (None if m["op"] == "remove" else sorted(m["allowed_ips"])) for k, m in best.items()}


def state_matches(net, topo, want):
    try:
        peers = net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"]
    except RuntimeError:
        return False
    for k, ips in want.items():
        p = peers.get(k)
        if ips is None:
            if p is not None:
                return False
        elif p is None or sorted(p["allowed_ips"]) != ips:
            return False
    return True


def mismatches(net, topo, want):
    peers = net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"]
    bad = []
    for k, ips in want.items():
        p = peers.get(k)
        got = None if p is None else sorted(p["allowed_ips"])
        if got != ips:
            bad.append((k, ips, got))
    return bad


def versions_msgs(keys, nver, rng, removes=True):
    msgs = []
    for k in keys:
        for v in range(1, nver + 1):
            op = "remove" if removes and v == nver and rng.random() < 0.3 else "add"
            m = {"op": op, "public_key": k, "version": v}
            if op == "add":
                m["allowed_ips"] = [f"10.90.{rng.randrange(256)}.{rng.randrange(1, 255)}/32"]
            msgs.append(m)
    return msgs


# ---------------------------------------------------------------- push

def push_checks(net, topo, srv, cl):
    subject = "wggwd.peers.gw1"
    gw = lambda pub: net.peer(topo.gw_ns, topo.gw_if, pub)  # noqa: E731
    acks = Acks(cl, "gw1")
    cfg, stats = config(nats_stage("nats", srv.url, subject, """
      durable: gw1
      ack_wait: 2s
      nak_delay: 200ms
      allowed_prefixes: [10.90.0.0/16]""") + f"""
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}""", """
  push: [nats, wg]""")
    d = daemon(cfg)
    wait_until(lambda: "consuming wggwd.peers.gw1" in d.output(), 10)

    k1, psk = newkey(), newkey()
    pa = cl.js_publish(subject, {"op": "add", "public_key": k1, "allowed_ips": ["10.90.0.2/32"],
                                 "preshared_key": psk, "persistent_keepalive": 25, "version": 10})
    p = wait_until(lambda: gw(k1), 5)
    ok(p and p["allowed_ips"] == ["10.90.0.2/32"] and p["preshared_key"] == psk
       and p["keepalive"] == 25, CHECKS[0], (p, d.output()))
    ok(wait_until(lambda: acks.get(pa["seq"]) == ["+ACK"], 5), CHECKS[1], acks.by_seq)

    cl.js_publish(subject, {"op": "add", "public_key": k1, "version": 11,
                            "allowed_ips": ["10.90.0.3/32", "10.90.1.0/24"]})
    ok(wait_until(lambda: (gw(k1) or {}).get("allowed_ips") == ["10.90.0.3/32", "10.90.1.0/24"], 5),
       CHECKS[2], gw(k1))

    pa = cl.js_publish(subject, {"op": "add", "public_key": k1, "version": 9,
                                 "allowed_ips": ["10.90.9.9/32"]})
    acked = wait_until(lambda: acks.get(pa["seq"]) == ["+ACK"], 5)
    time.sleep(0.2)
    ok(acked and stat(stats, "nats.stale") == 1
       and (gw(k1) or {}).get("allowed_ips") == ["10.90.0.3/32", "10.90.1.0/24"],
       CHECKS[3], (gw(k1), read_stats(stats)))

    pa = cl.js_publish(subject, {"op": "remove", "public_key": k1, "version": 12})
    ok(wait_until(lambda: gw(k1) is None and acks.get(pa["seq"]) == ["+ACK"], 5), CHECKS[4],
       (gw(k1), acks.get(pa["seq"])))

    bad = [cl.js_publish(subject, b"{not json")["seq"],
           cl.js_publish(subject, {"op": "add", "public_key": "tooshort", "allowed_ips": []})["seq"],
           cl.js_publish(subject, {"op": "add", "public_key": newkey(), "version": 1,
                                   "allowed_ips": ["192.168.0.1/32"]})["seq"]]
    ok(wait_until(lambda: all(acks.get(s) == ["+TERM"] for s in bad), 5)
       and wait_until(lambda: stat(stats, "nats.poison") == 3, 2),
       CHECKS[5], (acks.by_seq, read_stats(stats)))
    time.sleep(2.5)  # one ack_wait: a redelivery would show now
    ok(all(acks.get(s) == ["+TERM"] for s in bad) and stat(stats, "nats.redelivered") == 0,
       CHECKS[6], (acks.by_seq, read_stats(stats)))

    rng = random.Random(7)
    keys = [newkey() for _ in range(40)]
    msgs = versions_msgs(keys, 5, rng)
    rng.shuffle(msgs)
    for m in msgs:
        last = cl.js_publish(subject, m)["seq"]
    want = expected_state(msgs)
    good = wait_until(lambda: state_matches(net, topo, want), 15, 0.1)
    ok(good, CHECKS[7], (mismatches(net, topo, want)[:5], read_stats(stats)))
    ci = wait_until(lambda: floor_ok(cl, "gw1", last), 10, 0.1)
    ok(ci, CHECKS[8], cl.consumer_info("PEERS", "gw1"))

    # the server goes away mid-stream and comes back
    more = [{"op": "add", "public_key": newkey(), "version": 1,
             "allowed_ips": [f"10.90.200.{i + 1}/32"]} for i in range(100)]
    for m in more[:50]:
        last = cl.js_publish(subject, m)["seq"]
    cl.close()
    srv.restart(down_s=0.5)
    cl2 = natsd.Client(srv.port)
    acks2 = Acks(cl2, "gw1")  # noqa: F841 (keeps the subscription)
    rec = wait_until(lambda: "reconnected to" in d.output(), 10)
    ok(rec and stat(stats, "nats.disconnects") >= 1 and
       wait_until(lambda: stat(stats, "nats.reconnects") >= 1, 2)
       and "lost the connection" in d.output(), CHECKS[9], (read_stats(stats), d.output()[-2000:]))
    for m in more[50:]:
        last = cl2.js_publish(subject, m)["seq"]
    want = {m["public_key"]: m["allowed_ips"] for m in more}
    good = wait_until(lambda: state_matches(net, topo, want), 20, 0.1)
    ci = wait_until(lambda: floor_ok(cl2, "gw1", last), 15, 0.2)
    ok(good and ci, CHECKS[10], (mismatches(net, topo, want)[:5], ci or cl2.consumer_info("PEERS", "gw1"),
                                 read_stats(stats)))
    rc = d.stop()
    ok(rc == 0, CHECKS[11], (rc, d.output()[-3000:]))
    finish(d)
    return cl2


# ------------------------------------------------------------- request

def request_checks(net, topo, srv, cl):
    gw = lambda pub: net.peer(topo.gw_ns, topo.gw_if, pub)  # noqa: E731
    cfg, stats = config(nats_stage("nats", srv.url, "wggwd.req.gw1", """
      mode: request
      allowed_prefixes: [10.90.0.0/16]""") + f"""
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}""", """
  push: [nats, wg]""")
    d = daemon(cfg)
    wait_until(lambda: "answering requests on" in d.output(), 10)
    k = newkey()
    seen = {}

    def ask():
        m = cl.request("wggwd.req.gw1", json.dumps({"op": "add", "public_key": k,
                                                   "allowed_ips": ["10.90.77.1/32"],
                                                   "version": 1}), timeout=5)
        seen["reply"] = m.json()
        seen["peer"] = gw(k)  # right after the reply: it must be there

    try:
        ask()
    except (TimeoutError, ValueError) as e:
        seen["err"] = repr(e)
    ok(seen.get("reply") == {"ok": True} and seen.get("peer")
       and seen["peer"]["allowed_ips"] == ["10.90.77.1/32"], CHECKS[12], (seen, d.output()[-2000:]))
    try:
        r = cl.request("wggwd.req.gw1", b"[1,2", timeout=5).json()
    except (TimeoutError, ValueError) as e:
        r = repr(e)
    ok(isinstance(r, dict) and r.get("ok") is False and r.get("error") == "bad_json", CHECKS[13], r)
    d.stop()
    finish(d)


# ------------------------------------------------------------ resolver

def resolver_checks(srv, cl):
    hit, miss, slow, pol = newkey(), newkey(), newkey(), newkey()
    by_token = {b64url(k): k for k in (hit, miss, slow, pol)}
    asked = []

    def responder(m):
        tok = m.subject.split(".")[-1]
        k = by_token.get(tok)
        asked.append(tok)
        if k == hit:
            cl.pub(m.reply, json.dumps({"public_key": hit, "allowed_ips": ["10.90.5.5/32"],
                                        "persistent_keepalive": 0, "ttl": 60}))
        elif k == miss:
            cl.pub(m.reply, json.dumps({"error": "not_found"}))
        elif k == pol:
            cl.pub(m.reply, json.dumps({"public_key": pol, "allowed_ips": ["10.1.0.0/16"]}))
        # slow: never answers

    cl.sub("wggwd.lookup.*", responder)
    cl.flush()
    out = f"{tmp}/resolver.installs"

    def run(keys, subject):
        cfg, stats = config(f"""
  keys:
    plugin: source-keys
    options:
      keys: [{", ".join(keys)}]
      interval: 1s
  ask:
    plugin: resolver-nats
    options:
      servers: [{srv.url}]
      subject: {subject}
      timeout: 300ms
      allowed_prefixes: [10.90.0.0/16]
  wg:
    plugin: installer-file
    options:
      path: {out}""", """
  pull: [keys, ask, wg]""")
        return daemon(cfg), stats

    d, stats = run([hit, miss, slow, pol], "wggwd.lookup.{public_key}")
    wait_until(lambda: stat(stats, "ask.timeout") >= 1 and stat(stats, "ask.ok") >= 1, 10)
    d.stop()
    finish(d)
    try:
        with open(out) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    s = read_stats(stats)
    ok(any(line.startswith(f"add {hit} ") and line.endswith(" 10.90.5.5/32") for line in lines)
       and b64url(hit) in asked and s.get("ask.ok", 0) >= 1, CHECKS[14], (lines, asked, s))
    ok(s.get("ask.not_found", 0) >= 1 and s.get("pipeline.pull.drop.unknown_key", 0) >= 1
       and not any(miss in line for line in lines), CHECKS[15], s)
    ok(s.get("ask.timeout", 0) >= 1 and not any(slow in line for line in lines), CHECKS[16], s)
    ok(s.get("ask.policy", 0) >= 1 and not any(pol in line for line in lines), CHECKS[17], s)

    d, stats = run([newkey()], "wggwd.nobody.{public_key}")
    nr = wait_until(lambda: stat(stats, "ask.no_responders") >= 1, 5)
    d.stop()
    ok(nr, CHECKS[18], (read_stats(stats), d.output()[-1500:]))
    finish(d)


# --------------------------------------------------------------- store

def store_checks(net, topo, srv, cl):
    if not HAVE_STORE:
        for name in CHECKS[19:24]:
            skip(name, "store-sqlite is not built")
        return
    gw = lambda pub: net.peer(topo.gw_ns, topo.gw_if, pub)  # noqa: E731
    subject = "wggwd.peers.gwk"
    db = f"{tmp}/k.db"
    cfg, stats = config(nats_stage("nats", srv.url, subject, """
      durable: gwk
      ack_wait: 1s
      nak_delay: 100ms
      drain_timeout: 1s
      allowed_prefixes: [10.90.0.0/16]""") + f"""
  store:
    plugin: store-sqlite
    options:
      path: {db}
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}""", """
  push: [nats, store, wg]""")
    d = daemon(cfg)
    wait_until(lambda: "consuming wggwd.peers.gwk" in d.output(), 10)
    k = newkey()
    last = cl.js_publish(subject, {"op": "add", "public_key": k, "allowed_ips": ["10.90.33.1/32"],
                                   "version": 1})["seq"]
    ok(wait_until(lambda: gw(k), 5) and wait_until(lambda: floor_ok(cl, "gwk", last), 5),
       CHECKS[19], (gw(k), d.output()[-2000:]))

    rng = random.Random(11)
    keys = [newkey() for _ in range(60)]
    msgs = versions_msgs(keys, 5, rng)
    rng.shuffle(msgs)
    acked = [0]

    def count(m):
        acked[0] += 1
    cl.sub("$JS.ACK.PEERS.gwk.>", count)
    half = len(msgs) // 2
    for m in msgs[:half]:
        last = cl.js_publish(subject, m)["seq"]
    wait_until(lambda: acked[0] >= 40, 10, 0.005)
    d.send(signal.SIGKILL)
    d.wait_exit(5)
    killed_at = acked[0]
    for m in msgs[half:]:
        last = cl.js_publish(subject, m)["seq"]
    d2 = daemon(cfg)
    want = expected_state(msgs)
    want[k] = ["10.90.33.1/32"]
    good = wait_until(lambda: state_matches(net, topo, want), 30, 0.2)
    ok(good, CHECKS[20], (f"killed after {killed_at} acks", mismatches(net, topo, want)[:5],
                          d2.output()[-2500:]))
    ci = wait_until(lambda: floor_ok(cl, "gwk", last), 20, 0.2)
    ok(ci, CHECKS[21], cl.consumer_info("PEERS", "gwk"))
    d2.stop()
    finish(d2)

    # hybrid: push and pull share the store and the installer
    pushed, pulled = newkey(), newkey()
    asked = []

    def responder(m):
        asked.append(m.subject)
        if m.subject.endswith(b64url(pulled)):
            cl.pub(m.reply, json.dumps({"public_key": pulled, "allowed_ips": ["10.90.44.2/32"]}))
        else:
            cl.pub(m.reply, json.dumps({"error": "not_found"}))
    cl.sub("wggwd.hlookup.*", responder)
    cl.flush()
    last = cl.js_publish("wggwd.peers.gwh", {"op": "add", "public_key": pushed, "version": 3,
                                             "allowed_ips": ["10.90.44.1/32"]})["seq"]
    cfg, stats = config(nats_stage("nats", srv.url, "wggwd.peers.gwh", """
      durable: gwh
      ack_wait: 1s
      allowed_prefixes: [10.90.0.0/16]""") + f"""
  keys:
    plugin: source-keys
    options:
      keys: [{pushed}, {pulled}]
      interval: 1s
  store:
    plugin: store-sqlite
    options:
      path: {tmp}/h.db
  ask:
    plugin: resolver-nats
    options:
      servers: [{srv.url}]
      subject: wggwd.hlookup.{{public_key}}
      allowed_prefixes: [10.90.0.0/16]
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}
      completion: none          # source-keys has no initiation to re-send""", """
  push: [nats, store, wg]
  pull: [keys, store, ask, wg]""")
    d = daemon(cfg)
    got = wait_until(lambda: gw(pushed) and floor_ok(cl, "gwh", last), 10)
    # the keys source may ask once before the push is stored (both start
    # together); from then on the store answers for the pushed key
    time.sleep(0.3)
    before = len(asked)
    time.sleep(2.5)  # the keys source goes round twice more
    ok(got and (gw(pushed) or {}).get("allowed_ips") == ["10.90.44.1/32"]
       and not any(s.endswith(b64url(pushed)) for s in asked[before:]), CHECKS[22],
       (gw(pushed), asked, read_stats(stats), d.output()[-2000:]))
    ok(wait_until(lambda: gw(pulled), 5) and (gw(pulled) or {}).get("allowed_ips") == ["10.90.44.2/32"]
       and any(s.endswith(b64url(pulled)) for s in asked), CHECKS[23],
       (gw(pulled), asked, read_stats(stats)))
    d.stop()
    finish(d)


# ---------------------------------------------------------- many IPs

def stored_allowed(db, key):
    """The allowed IPs store-sqlite holds for key (sorted), or None."""
    try:
        with sqlite3.connect(db, timeout=5) as con:
            row = con.execute("SELECT allowed FROM peer WHERE key = ? AND removed = 0",
                              (base64.b64decode(key),)).fetchone()
    except sqlite3.Error:
        return None
    if not row:
        return None
    b, ips = row[0], []
    for i in range(0, len(b), 18):  # family 4|6, cidr, addr[16]
        fam, cidr, addr = b[i], b[i + 1], b[i + 2:i + 18]
        a = ipaddress.ip_address(addr[:4] if fam == 4 else addr)
        ips.append(f"{a}/{cidr}")
    return sorted(ips)


def wg_allowed_ips(net, topo, key):
    """`wg show IFACE allowed-ips`: the key's allowed IPs (sorted), or None."""
    try:
        out = net.run(topo.gw_ns, "wg", "show", topo.gw_if, "allowed-ips")
    except RuntimeError:
        return None
    for line in out.splitlines():
        k, _, ips = line.partition("\t")
        if k == key:
            return sorted(ips.split())
    return None


def many_ips_checks(net, topo, srv, cl):
    if not HAVE_STORE:
        for name in CHECKS[24:27]:
            skip(name, "store-sqlite is not built")
        return
    subject, db = "wggwd.peers.gwm", f"{tmp}/m.db"
    acks = Acks(cl, "gwm")
    cfg, stats = config(nats_stage("nats", srv.url, subject, """
      durable: gwm
      ack_wait: 5s
      max_allowed_ips: 1000
      allowed_prefixes: [10.96.0.0/12, "fd00::/8"]""") + f"""
  store:
    plugin: store-sqlite
    options:
      path: {db}
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}""", """
  push: [nats, store, wg]""")
    d = daemon(cfg)
    wait_until(lambda: "consuming wggwd.peers.gwm" in d.output(), 10)
    # 1,000 (= max_allowed_ips) host routes and a few prefixes, v4 and v6
    ips = [f"10.100.{i // 250}.{i % 250 + 1}/32" for i in range(980)]
    ips += [f"fd00:96::{i + 1:x}/128" for i in range(10)]
    ips += [f"10.101.{i}.0/24" for i in range(9)] + ["10.102.0.0/16"]
    assert len(ips) == 1000
    big = newkey()
    pa = cl.js_publish(subject, {"op": "add", "public_key": big, "version": 1, "allowed_ips": ips})
    want = sorted(ips)
    acked = wait_until(lambda: acks.get(pa["seq"]) == ["+ACK"], 15, 0.05)
    st = stored_allowed(db, big)
    ok(st == want, CHECKS[24], (len(st or []), (st or [])[:3], d.output()[-1500:]))
    got = wait_until(lambda: wg_allowed_ips(net, topo, big) == want, 5, 0.05)
    dumped = wg_allowed_ips(net, topo, big)
    ok(got and acked, CHECKS[25], (acked, len(dumped or []), read_stats(stats), d.output()[-1500:]))

    over = newkey()
    pa = cl.js_publish(subject, {"op": "add", "public_key": over, "version": 1,
                                 "allowed_ips": ips + ["10.103.0.1/32"]})
    termed = wait_until(lambda: acks.get(pa["seq"]) == ["+TERM"], 10, 0.05)
    counted = wait_until(lambda: stat(stats, "nats.poison") == 1
                         and stat(stats, "nats.poison_too_many_allowed_ips") == 1, 2)
    ok(termed and counted and stored_allowed(db, over) is None
       and wg_allowed_ips(net, topo, over) is None
       and wg_allowed_ips(net, topo, big) == want, CHECKS[26],
       (acks.get(pa["seq"]), read_stats(stats), d.output()[-1500:]))
    d.stop()
    finish(d)


# ---------------------------------------------------------------- main

srv = natsd.Server()
try:
    with wgnet.Net("nat") as net:
        topo = net.gateway_with_clients(0)
        cl = natsd.Client(srv.port)
        cl.stream_create("PEERS", ["wggwd.peers.>"])
        cl = push_checks(net, topo, srv, cl)
        request_checks(net, topo, srv, cl)
        resolver_checks(srv, cl)
        store_checks(net, topo, srv, cl)
        many_ips_checks(net, topo, srv, cl)
        cl.close()
finally:
    for d in daemons:
        d.close()
    srv.cleanup()
done()
