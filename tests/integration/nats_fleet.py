#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""A fleet of gateways on one JetStream stream, and a three-node NATS
cluster losing a node mid-stream (source-nats, docs/fleet.md).

No WireGuard is needed: the installer is the test plugin installer-file
(BUILD/tests), which appends "add KEY ENDPOINT IPS..." per install. Every
peer message carries its version in its allowed IPs (10.99.<version>.0/24
next to the key's own 10.90.x.y/32), so the install log shows which
version of each key was installed, in which order.

  fleet:   one nats-server, stream PEERS on wggwd.peers.>, three wggwd
           daemons each with its own durable on wggwd.peers.region1 (the
           third one started half way through the publishing).
  cluster: three clustered nats-servers, PEERS with 3 replicas; one wggwd
           with all three in servers:; the node it is connected to is
           killed (-9) while the publisher is half way through.

VERBOSE=1 prints the daemons' logs as TAP comments."""
import base64
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import BUILD, TEST_PLUGINS, WGGWD, Daemon, done, ok, read_stats, skip, wait_until  # noqa: E402
import natsd  # noqa: E402

CHECKS = [
    "fleet: three gateways bind their own durable on one subject",
    "fleet: every gateway installs every key as its newest version (the late one catches up)",
    "fleet: no gateway installs an older version after a newer one, nor one twice",
    "fleet: every durable's ack floor is the stream's last sequence, nothing pending or redelivered",
    "fleet: counters: each gateway received every message, emitted + stale = received, none terminated",
    "fleet: SIGTERM exits 0 on every gateway",
    "cluster: three JetStream nodes, stream with 3 replicas (a leader and 2 current followers)",
    "cluster: wggwd connects and installs the first batch",
    "cluster: kill -9 of the node wggwd is on: disconnect logged and counted, reconnected to another node",
    "cluster: every message of both batches is installed as its key's newest version",
    "cluster: no older version is installed after a newer one, nor one twice",
    "cluster: nothing lost: ack floor = the stream's last sequence, nothing pending, every sequence ACKed, counters agree",
    "cluster: SIGTERM exits 0",
]

why = None
if os.geteuid() != 0:
    why = "not root"
why = why or natsd.missing()
if not why and not os.access(WGGWD, os.X_OK):
    why = f"no wggwd at {WGGWD} (set WGGWD_BUILD)"
if not why and not os.path.exists(os.path.join(BUILD, "plugins", "source-nats", "source-nats.so")):
    why = "source-nats is not built"
if not why and not os.path.exists(os.path.join(TEST_PLUGINS, "installer-file.so")):
    why = "the test plugin installer-file is not built"
if why:
    for name in CHECKS:
        skip(name, why)
    done()

VERBOSE = os.environ.get("VERBOSE")
SUBJECT = "wggwd.peers.region1"
tmp = tempfile.mkdtemp(prefix="wggwd-fleet-")
daemons = []
servers = []
_n = [0]


def note(text):
    print(f"# {text}", flush=True)


def newkey():
    return base64.b64encode(os.urandom(32)).decode()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class Gateway:
    """One wggwd: source-nats (durable) -> installer-file."""

    def __init__(self, durable, urls, extra=""):
        _n[0] += 1
        self.durable = durable
        self.stats = f"{tmp}/{durable}.stats.json"
        self.installs = f"{tmp}/{durable}.installs"
        servers_list = ", ".join(urls)
        self.config = write(f"{tmp}/{durable}.yaml", f"""
log_level: debug
plugin_path: [{TEST_PLUGINS}]
stats_file: {self.stats}
stats_interval: 50ms
stages:
  nats:
    plugin: source-nats
    options:
      servers: [{servers_list}]
      name: wggwd-{durable}
      subject: {SUBJECT}
      durable: {durable}
      ack_wait: 2s
      nak_delay: 200ms
      reconnect_wait: 100ms
      reconnect_wait_max: 500ms
      allowed_prefixes: [10.90.0.0/16, 10.99.0.0/16]{extra}
  wg:
    plugin: installer-file
    options:
      path: {self.installs}
pipelines:
  push: [nats, wg]
""")
        self.d = Daemon(self.config)
        daemons.append(self.d)

    def output(self):
        return self.d.output()

    def stat(self, name):
        return read_stats(self.stats).get(name, 0)

    def bound(self):
        return f"as durable {self.durable}" in self.output()

    def history(self):
        """{key: [versions installed, in order]} from the install log."""
        h = {}
        try:
            with open(self.installs) as f:
                lines = f.read().splitlines()
        except OSError:
            return h
        for line in lines:
            parts = line.split()
            if len(parts) < 3 or parts[0] != "add":
                continue
            v = None
            for p in parts[2:]:
                if p.startswith("10.99.") and p.endswith(".0/24"):
                    v = int(p.split(".")[2])
            h.setdefault(parts[1], []).append(v)
        return h

    def finish(self):
        rc = self.d.stop()
        if VERBOSE:
            for line in self.output().splitlines():
                note(f"{self.durable}: {line}")
        return rc


def make_msgs(nkeys, nver, seed):
    """nkeys keys x nver versions, shuffled (older versions published after
    newer ones); {key: newest version}."""
    rng = random.Random(seed)
    keys = [newkey() for _ in range(nkeys)]
    msgs = []
    for i, k in enumerate(keys):
        for v in range(1, nver + 1):
            msgs.append({"op": "add", "public_key": k, "version": v,
                         "allowed_ips": [f"10.90.{i >> 8}.{i & 255}/32", f"10.99.{v}.0/24"]})
    rng.shuffle(msgs)
    return msgs, {k: nver for k in keys}


def newest_ok(gw, want):
    h = gw.history()
    return all(h.get(k) and h[k][-1] == v for k, v in want.items())


def newest_bad(gw, want):
    h = gw.history()
    return [(k[:8], v, h.get(k)) for k, v in want.items() if not h.get(k) or h[k][-1] != v][:5]


def monotonic_bad(gw):
    """Keys whose installed versions are not strictly increasing."""
    return [(k[:8], vs) for k, vs in gw.history().items()
            if any(b is None or a is None or b <= a for a, b in zip(vs, vs[1:]))][:5]


def floor_ok(client, durable, last):
    try:
        ci = client.consumer_info("PEERS", durable)
    except (RuntimeError, TimeoutError, OSError):
        return False
    return (ci["ack_floor"]["stream_seq"] == last and ci["delivered"]["stream_seq"] == last
            and ci["num_ack_pending"] == 0 and ci["num_pending"] == 0) and ci


def ci_brief(client, durable):
    try:
        ci = client.consumer_info("PEERS", durable)
    except (RuntimeError, TimeoutError, OSError) as e:
        return repr(e)
    return {k: ci.get(k) for k in ("delivered", "ack_floor", "num_ack_pending", "num_pending",
                                   "num_redelivered", "cluster")}


# --------------------------------------------------------------- fleet

def fleet_checks():
    srv = natsd.Server()
    servers.append(srv)
    cl = natsd.Client(srv.port)
    try:
        cl.stream_create("PEERS", ["wggwd.peers.>"])
        gws = [Gateway("gw1", [srv.url]), Gateway("gw2", [srv.url])]
        bound = all(wait_until(g.bound, 10) for g in gws)
        msgs, want = make_msgs(50, 4, 1)  # 200 messages
        half = len(msgs) // 2
        for m in msgs[:half]:
            cl.js_publish(SUBJECT, m)
        gws.append(Gateway("gw3", [srv.url]))  # joins late: DeliverAll from the stream
        bound = bound and wait_until(gws[2].bound, 10)
        ok(bound, CHECKS[0], "\n".join(g.output()[-800:] for g in gws))
        for m in msgs[half:]:
            last = cl.js_publish(SUBJECT, m)["seq"]
        t0 = time.monotonic()
        good = all(wait_until(lambda g=g: newest_ok(g, want), 20, 0.05) for g in gws)
        note(f"fleet: all three gateways at the newest versions {time.monotonic() - t0:.2f}s "
             f"after the last publish")
        ok(good, CHECKS[1], [(g.durable, newest_bad(g, want)) for g in gws])
        bad = [(g.durable, monotonic_bad(g)) for g in gws if monotonic_bad(g)]
        ok(good and not bad, CHECKS[2], bad)
        floors = [wait_until(lambda g=g: floor_ok(cl, g.durable, last), 10, 0.05) for g in gws]
        ok(all(floors) and all(f["num_redelivered"] == 0 for f in floors), CHECKS[3],
           [(g.durable, ci_brief(cl, g.durable)) for g in gws])
        n = len(msgs)

        def counters_ok(g):
            s = read_stats(g.stats)
            return (s.get("nats.received") == n and s.get("nats.acked") == n
                    and s.get("nats.emitted", 0) + s.get("nats.stale", 0) == n
                    and s.get("nats.emitted") == s.get("wg.installed")
                    and s.get("nats.terminated", 0) == 0 and s.get("nats.in_flight", 0) == 0) and s
        cnt = [wait_until(lambda g=g: counters_ok(g), 5, 0.05) for g in gws]
        ok(all(cnt), CHECKS[4], [(g.durable, {k: v for k, v in read_stats(g.stats).items()
                                              if k.startswith(("nats.", "wg."))}) for g in gws])
        for g in gws:
            s = read_stats(g.stats)
            note(f"fleet {g.durable}: received {s.get('nats.received')}, installed "
                 f"{s.get('wg.installed')}, stale {s.get('nats.stale')}")
        rcs = [g.finish() for g in gws]
        ok(rcs == [0, 0, 0], CHECKS[5], (rcs, [g.output()[-1000:] for g in gws]))
    finally:
        cl.close()
        srv.cleanup()


# ------------------------------------------------------------- cluster

def connected_url(gw, after=0):
    """The URL of the last "connected to"/"reconnected to" log line after
    offset `after`."""
    url = None
    for line in gw.output()[after:].splitlines():
        for marker in ("reconnected to ", "connected to "):
            i = line.find(marker)
            if i >= 0:
                url = line[i + len(marker):].split()[0]
                break
    return url


def cluster_checks():
    t_start = time.monotonic()
    cluster = natsd.Cluster(3)
    servers.append(cluster)
    note(f"cluster: up in {time.monotonic() - t_start:.2f}s: {' '.join(cluster.urls)}")
    cl = None
    try:
        # the stream create is answered by the meta leader: retry while
        # it settles
        deadline = time.monotonic() + 20
        admin = natsd.Client(cluster.nodes[0].port)
        while True:
            try:
                admin.stream_create("PEERS", ["wggwd.peers.>"], num_replicas=3)
                break
            except (RuntimeError, TimeoutError) as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stream create: {e!r}") from None
                time.sleep(0.1)

        def replicated():
            try:
                c = admin.stream_info("PEERS").get("cluster", {})
            except (RuntimeError, TimeoutError):
                return False
            reps = c.get("replicas") or []
            return c.get("leader") and len(reps) == 2 and all(r.get("current") for r in reps) and c
        info = wait_until(replicated, 15, 0.1)
        ok(info, CHECKS[6], info)
        admin.close()

        gw = Gateway("gwc", cluster.urls, """
      heartbeat: 1s""")
        bound = wait_until(gw.bound, 20)
        url = connected_url(gw)
        victim = cluster.node_by_url(url or "")
        note(f"cluster: wggwd connected to {url}; stream leader {info and info.get('leader')}")
        # the publisher talks to a node that survives
        survivor = next(n for n in cluster.nodes if n is not victim)
        cl = natsd.Client(survivor.port)
        acks = {}  # stream seq -> ACK payloads wggwd published, seen via the cluster

        def on_ack(m):
            acks.setdefault(int(m.subject.split(".")[5]), []).append(m.data)
        cl.sub("$JS.ACK.PEERS.gwc.>", on_ack)
        cl.flush()
        msgs, want = make_msgs(60, 5, 2)  # 300 messages
        half = len(msgs) // 2
        first = {}
        for m in msgs[:half]:
            k = m["public_key"]
            first[k] = max(first.get(k, 0), m["version"])
        for m in msgs[:half]:
            cl.js_publish_retry(SUBJECT, m, time.monotonic() + 20)
        got1 = wait_until(lambda: newest_ok(gw, first), 15, 0.05)
        ok(bound and victim and got1, CHECKS[7], (url, newest_bad(gw, first), gw.output()[-1500:]))

        # the second batch goes out from a thread; the node wggwd is on dies
        # after a quarter of it: the kill lands mid-stream, for the
        # publisher and for the consumer alike
        pub = {"n": 0, "retries": 0, "last": 0, "error": None, "done": False}
        second = msgs[half:]

        def publisher():
            try:
                for m in second:
                    pa, failures = cl.js_publish_retry(SUBJECT, m, time.monotonic() + 30)
                    pub["retries"] += failures
                    pub["last"] = max(pub["last"], pa["seq"])
                    pub["n"] += 1
            except Exception as e:  # reported below
                pub["error"] = repr(e)
            pub["done"] = True
        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        wait_until(lambda: pub["n"] >= len(second) // 4 or pub["done"], 20, 0.001)
        log_off = len(gw.output())
        acked_at_kill = gw.stat("nats.acked")
        t_kill = time.monotonic()
        victim.stop(signal.SIGKILL)
        note(f"cluster: killed {victim.url} (-9) after {pub['n']} of the second batch were "
             f"published, {acked_at_kill} ACKs counted")
        rec = wait_until(lambda: "reconnected to" in gw.output()[log_off:], 20, 0.01)
        t_rec = time.monotonic() - t_kill
        new_url = connected_url(gw, log_off)
        counted = wait_until(lambda: gw.stat("nats.disconnects") >= 1
                             and gw.stat("nats.reconnects") >= 1, 5, 0.05)
        ok(rec and counted and "lost the connection" in gw.output()[log_off:]
           and new_url and new_url != url and cluster.node_by_url(new_url) in cluster.alive(),
           CHECKS[8], (url, new_url, read_stats(gw.stats), gw.output()[log_off:][-2000:]))
        note(f"cluster: reconnected to {new_url} {t_rec:.2f}s after the kill")
        wait_until(lambda: pub["done"], 60, 0.01)
        t.join(5)
        note(f"cluster: second batch published: {pub['n']}/{len(second)}, "
             f"{pub['retries']} publish retries, error {pub['error']}")
        t1 = time.monotonic()
        good = pub["n"] == len(second) and wait_until(lambda: newest_ok(gw, want), 60, 0.05)
        t_all = time.monotonic() - t_kill
        ok(good, CHECKS[9], (pub, newest_bad(gw, want), read_stats(gw.stats),
                             gw.output()[log_off:][-2500:]))
        note(f"cluster: every key at its newest version {t_all:.2f}s after the kill "
             f"({time.monotonic() - t1:.2f}s after the last publish)")
        bad = monotonic_bad(gw)
        ok(good and not bad, CHECKS[10], bad)

        def floor():
            try:
                last = cl.stream_info("PEERS")["state"]["last_seq"]
            except (RuntimeError, TimeoutError, OSError):
                return False
            return floor_ok(cl, "gwc", last)
        ci = wait_until(floor, 60, 0.1)
        try:
            st = cl.stream_info("PEERS")["state"]
        except (RuntimeError, TimeoutError, OSError) as e:
            st = {"error": repr(e)}
        last = st.get("last_seq", 0)
        never = [q for q in range(1, last + 1) if b"+ACK" not in acks.get(q, [])]

        def settled():
            # the stats file lags by up to stats_interval
            s = read_stats(gw.stats)
            return (s.get("nats.acked", 0) >= last and s.get("nats.in_flight", 1) == 0
                    and s.get("nats.received") == s.get("nats.acked")
                    and s.get("nats.emitted", 0) + s.get("nats.stale", 0) == s.get("nats.received")
                    and s.get("nats.emitted") == s.get("wg.installed")
                    and s.get("nats.terminated", 0) == 0 and s.get("nats.naked", 0) == 0) and s
        s = wait_until(settled, 5, 0.05)
        ok(ci and last and not never and s, CHECKS[11],
           (st, ci_brief(cl, "gwc"), f"never ACKed: {never[:20]}", read_stats(gw.stats)))
        s = s or read_stats(gw.stats)
        dup = sum(1 for v in acks.values() if len(v) > 1)
        note(f"cluster: stream {st.get('messages')} messages for {len(msgs)} published; "
             f"{dup} sequences ACKed more than once; source-nats received {s.get('nats.received')}, "
             f"redelivered {s.get('nats.redelivered')}, stale {s.get('nats.stale')}, installed "
             f"{s.get('wg.installed')}, disconnects {s.get('nats.disconnects')}, reconnects "
             f"{s.get('nats.reconnects')}, async_errors {s.get('nats.async_errors')}")
        for line in gw.output()[log_off:].splitlines():
            if " warn " in line or "reconnected" in line or "consuming" in line:
                note(f"gwc: {line.strip()[:200]}")
        rc = gw.finish()
        ok(rc == 0, CHECKS[12], (rc, gw.output()[-1500:]))
    finally:
        if cl:
            cl.close()
        cluster.cleanup()


# ---------------------------------------------------------------- main

t_begin = time.monotonic()
try:
    fleet_checks()
    cluster_checks()
finally:
    for d in daemons:
        d.close()
    for s in servers:
        s.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
note(f"run time {time.monotonic() - t_begin:.1f}s")
done()
