#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""Leader failover: how long source-nats stops delivering when the
nats-server node that leads its JetStream consumer dies.

A three-node cluster (tests/lib/natsd.py), stream PEERS on wggwd.peers.>
with 3 replicas, one wggwd (source-nats -> the test installer-file) with
all three nodes in servers:. A publisher on a surviving node sends one
message (a fresh key) every 10 ms. Before each kill the consumer's leader
is moved (CONSUMER.LEADER.STEPDOWN) onto the node wggwd is connected to,
and the stream's leader off it, so that the kill takes the connection and
the consumer's leader, not the stream's (a dead stream leader stops the
publisher too: that is the server's failover, not ours). The victim is
killed (SIGKILL; --graceful: SIGTERM; --hang: SIGSTOP, a node that hangs
with its connections open: only the client's PINGs notice it), restarted
(or continued) once the round is over.

  leader_loss_stall_ms   median over the kills: from the kill to the install
                         (installer-file's log, watched) of the first
                         message published after the kill
  leader_loss_ack_stall_ms  the same to its +ACK (seen on $JS.ACK): the
                         consumer's own failover (messages read directly
                         are ACKed once the consumer redelivers them)
  leader_loss_max_ms     the longest any message waited (publish ->
                         install) around the kill, worst round
  leader_loss_lost       messages published (PubAck) and never installed,
                         or never ACKed (must be 0)

The stream has allow_direct (source-nats' failover_read reads it while the
consumer has no leader); --no-direct creates it without.
Each round also prints the gateway's timeline (log timestamps relative to
the kill) as comments. Options: --kills N (3), --graceful, --hang, --other (keep
the consumer's leader on a node wggwd is not connected to), --no-direct,
--extra "opt: v; opt: v" (more source-nats options).
Environment: WGGWD_BUILD (default build/). Needs nats-server."""
import argparse
import base64
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
from tap import TEST_PLUGINS, WGGWD, Daemon, read_stats, wait_until  # noqa: E402
import natsd  # noqa: E402

SUBJECT = "wggwd.peers.fo"
DURABLE = "gwfo"


def note(text):
    print(f"# {text}", flush=True)


def node_of(cluster, name):
    return cluster.nodes[int(name[1:]) - 1] if name and name[1:].isdigit() else None


def api(c, what, payload=None, timeout=2.0):
    try:
        return c.js_api(what, payload, timeout)
    except (RuntimeError, TimeoutError, OSError, ValueError) as e:
        return {"error": repr(e)}


def leaders(c):
    si = api(c, "STREAM.INFO.PEERS")
    ci = api(c, f"CONSUMER.INFO.PEERS.{DURABLE}")
    return (si.get("cluster", {}).get("leader"), ci.get("cluster", {}).get("leader"), si, ci)


def all_current(c, n):
    s, k, si, ci = leaders(c)
    for info in (si, ci):
        reps = info.get("cluster", {}).get("replicas") or []
        if len(reps) != n - 1 or not all(r.get("current") and not r.get("offline")
                                          for r in reps):
            return False
    return s and k and (s, k)


def log_times(text, t0_real):
    """(seconds after t0, line) for each timestamped log line."""
    out = []
    for line in text.splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (.*)", line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
            tzinfo=timezone.utc).timestamp()
        out.append((t - t0_real, m.group(2)))
    return out


class Gateway:
    def __init__(self, tmp, urls, extra=""):
        self.installs = os.path.join(tmp, "installs")
        self.stats = os.path.join(tmp, "stats.json")
        self.config = os.path.join(tmp, "gw.yaml")
        with open(self.config, "w") as f:
            f.write(f"""
log_level: info
plugin_path: [{TEST_PLUGINS}]
stats_file: {self.stats}
stats_interval: 100ms
stages:
  nats:
    plugin: source-nats
    options:
      servers: [{", ".join(urls)}]
      subject: {SUBJECT}
      durable: {DURABLE}
      ack_wait: 5s
      allowed_prefixes: [10.0.0.0/8]{extra}
  wg:
    plugin: installer-file
    options:
      path: {self.installs}
pipelines:
  push: [nats, wg]
""")
        self.d = Daemon(self.config)
        self.seen = {}  # key -> when its install line appeared
        self.watching = True
        self.watcher = threading.Thread(target=self.watch, daemon=True)
        self.watcher.start()

    def watch(self):
        """Timestamps of the install log's lines (installer-file writes one
        per install)."""
        pos, rest = 0, b""
        while self.watching:
            try:
                with open(self.installs, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except OSError:
                chunk = b""
            if chunk:
                pos += len(chunk)
                t = time.monotonic()
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for ln in lines:
                    parts = ln.split()
                    if len(parts) > 1 and parts[0] == b"add":
                        self.seen.setdefault(parts[1].decode(), t)
            time.sleep(0.002)

    def close(self):
        self.watching = False
        self.watcher.join(2)
        self.d.stop()
        self.d.close()

    def output(self):
        return self.d.output()

    def installed(self):
        try:
            with open(self.installs) as f:
                return {ln.split()[1] for ln in f if ln.startswith("add ")}
        except OSError:
            return set()

    def connected_node(self, cluster):
        url = None
        for line in self.output().splitlines():
            for marker in ("reconnected to ", "connected to "):
                i = line.find(marker)
                if i >= 0:
                    url = line[i + len(marker):].split()[0]
                    break
        return cluster.node_by_url(url or "")


class Publisher:
    """One message every `period` s on a client of a surviving node; the
    ACKs wggwd sends are watched on the same client."""

    def __init__(self, node, period=0.01):
        self.c = natsd.Client(node.port)
        self.period = period
        self.lock = threading.Lock()
        self.pubs = {}     # seq -> (publish time, key)
        self.acks = {}     # seq -> first ACK arrival
        self.failures = 0
        self.stop_ev = threading.Event()
        self.c.sub(f"$JS.ACK.PEERS.{DURABLE}.>", self.on_ack)
        self.c.flush()
        self.n = 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def on_ack(self, m):
        if m.data != b"+ACK":
            return
        t = time.monotonic()
        seq = int(m.subject.split(".")[5])
        with self.lock:
            self.acks.setdefault(seq, t)

    def run(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            self.n += 1
            i = self.n
            key = base64.b64encode(os.urandom(32)).decode()
            msg = {"op": "add", "public_key": key,
                   "allowed_ips": [f"10.{80 + i // 65536}.{i // 256 % 256}.{i % 256}/32"]}
            t = time.monotonic()
            try:
                pa, fails = self.c.js_publish_retry(SUBJECT, msg, time.monotonic() + 30, 1.0)
            except (RuntimeError, TimeoutError, ValueError, OSError):
                self.failures += 1
                continue
            self.failures += fails
            with self.lock:
                self.pubs[pa["seq"]] = (t, key)
            nxt += self.period
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                nxt = time.monotonic()

    def stop(self):
        self.stop_ev.set()
        self.t.join(40)

    def close(self):
        self.c.close()


def move_leaders(admin, cluster, conn, other):
    """The consumer's leader onto `conn` (the node wggwd is on), or, with
    other, onto another node; the stream's leader off the consumer's. True
    when done."""
    deadline = time.monotonic() + 30
    cname = f"n{cluster.nodes.index(conn) + 1}"
    while time.monotonic() < deadline:
        s, k, _, _ = leaders(admin)
        if not s or not k:
            time.sleep(0.1)
            continue
        if (k == cname) == other:
            api(admin, f"CONSUMER.LEADER.STEPDOWN.PEERS.{DURABLE}")
            time.sleep(0.3)
            continue
        if s == k:
            api(admin, "STREAM.LEADER.STEPDOWN.PEERS")
            time.sleep(0.3)
            continue
        return True
    return False


def one_round(cluster, gw, sig, other, rnd):
    """Place the leaders, kill, measure: a dict (stall_ms, max_ms, lost,
    never_acked, published), or None when the round could not be set up."""
    n = len(cluster.nodes)
    admin_node = cluster.alive()[0]
    admin = natsd.Client(admin_node.port)
    try:
        if not wait_until(lambda: all_current(admin, n), 30, 0.1):
            note(f"round {rnd}: cluster not current: {leaders(admin)[2:]}")
            return None
        conn = gw.connected_node(cluster)
        if not conn:
            note(f"round {rnd}: wggwd is not connected")
            return None
        if not move_leaders(admin, cluster, conn, other):
            note(f"round {rnd}: cannot place the leaders")
            return None
        s, k, _, _ = leaders(admin)
        victim = node_of(cluster, k)
    finally:
        admin.close()
    survivor = node_of(cluster, s)
    pub = Publisher(survivor)
    try:
        # steady state first
        if not wait_until(lambda: len(pub.acks) >= 50, 15, 0.01):
            note(f"round {rnd}: no steady delivery before the kill ({len(pub.acks)} ACKs)")
            return None
        log_off = len(gw.output())
        t_kill = time.monotonic()
        t_kill_real = time.time()
        if sig == signal.SIGSTOP:
            victim.proc.send_signal(sig)
        else:
            victim.stop(sig, timeout=15)
        t_dead = time.monotonic() - t_kill

        def resumed():
            with pub.lock:
                return any(v[0] > t_kill and v[1] in gw.seen for v in pub.pubs.values())
        wait_until(resumed, 90, 0.005)
        time.sleep(1.0)
        pub.stop()
        with pub.lock:
            pubs = dict(pub.pubs)
        # everything settled (what was lost in flight comes back after ack_wait)
        wait_until(lambda: all(q in pub.acks for q in pubs), 40, 0.05)
        with pub.lock:
            acks = dict(pub.acks)
        seen = dict(gw.seen)
        after = [seen[v[1]] for v in pubs.values() if v[0] > t_kill and v[1] in seen]
        stall = (min(after) - t_kill) * 1000 if after else float("inf")
        lat = [(seen[v[1]] - v[0]) * 1000 for v in pubs.values() if v[1] in seen]
        ack_after = [acks[q] for q in pubs if pubs[q][0] > t_kill and q in acks]
        ack_stall = (min(ack_after) - t_kill) * 1000 if ack_after else float("inf")
        installed = wait_until(lambda: (lambda got: all(v[1] in got for v in pubs.values())
                                        and got)(gw.installed()), 10, 0.05) or gw.installed()
        lost = sum(1 for v in pubs.values() if v[1] not in installed)
        never_acked = sum(1 for q in pubs if q not in acks)
        note(f"round {rnd}: killed n{cluster.nodes.index(victim) + 1} (consumer leader"
             f"{', wggwd on it' if conn is victim else ''}; stream leader {s}) with "
             f"{signal.Signals(sig).name} (exited after {t_dead * 1000:.0f} ms): stall "
             f"{stall:.0f} ms (first ACK {ack_stall:.0f} ms), max publish->install "
             f"{max(lat):.0f} ms, {len(pubs)} published, "
             f"{pub.failures} publish retries, never ACKed {never_acked}, lost {lost}")
        for t, line in log_times(gw.output()[log_off:], t_kill_real):
            if "source-nats" in line or "nats" in line:
                note(f"  {t * 1000:+7.0f} ms  {line[:150]}")
        return {"stall_ms": stall, "max_ms": max(lat), "lost": lost, "ack_stall_ms": ack_stall,
                "never_acked": never_acked, "published": len(pubs),
                "victim": victim, "wggwd_on_victim": conn is victim}
    finally:
        pub.stop()
        pub.close()
        if victim.proc and sig == signal.SIGSTOP:
            victim.proc.send_signal(signal.SIGCONT)
        if not victim.proc:
            victim.start()


def make_stream(cluster, direct=True):
    admin = natsd.Client(cluster.nodes[0].port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                admin.stream_create("PEERS", ["wggwd.peers.>"], num_replicas=3,
                                    allow_direct=direct)
                return
            except (RuntimeError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        admin.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--graceful", action="store_true")
    ap.add_argument("--hang", action="store_true")
    ap.add_argument("--other", action="store_true")
    ap.add_argument("--no-direct", action="store_true",
                    help="the stream without allow_direct (no direct reads: the consumer's failover only)")
    ap.add_argument("--extra", default="", help="more source-nats options (YAML lines)")
    args = ap.parse_args()
    why = natsd.missing()
    if not why and not os.access(WGGWD, os.X_OK):
        why = f"no wggwd at {WGGWD} (set WGGWD_BUILD)"
    if not why and not os.path.exists(os.path.join(TEST_PLUGINS, "installer-file.so")):
        why = "the test plugin installer-file is not built"
    if why:
        note(f"skipped: {why}")
        return 0
    tmp = tempfile.mkdtemp(prefix="bench-failover-")
    cluster = natsd.Cluster(3, name="wggwd-failover")
    gw = None
    results = []
    try:
        make_stream(cluster, not args.no_direct)
        extra = "".join(f"\n      {ln.strip()}" for ln in args.extra.split(";") if ln.strip())
        gw = Gateway(tmp, cluster.urls, extra)
        if not wait_until(lambda: f"as durable {DURABLE}" in gw.output(), 20):
            note(f"wggwd did not bind: {gw.output()[-1000:]}")
            return 1
        sig = (signal.SIGTERM if args.graceful else signal.SIGSTOP if args.hang
               else signal.SIGKILL)
        for rnd in range(1, args.kills + 1):
            r = one_round(cluster, gw, sig, args.other, rnd)
            if r:
                results.append(r)
        s = read_stats(gw.stats)
        note("source-nats: " + ", ".join(f"{k[5:]} {v}" for k, v in sorted(s.items())
                                        if k.startswith("nats.") and v))
    finally:
        if gw:
            gw.close()
        cluster.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    if not results:
        print("leader_loss_stall_ms nan ms")
        print("leader_loss_lost nan messages")
        return 1
    kind = "graceful" if args.graceful else "hang" if args.hang else "kill"
    note(f"{len(results)} rounds ({kind}{', consumer leader elsewhere' if args.other else ''}): "
         f"stalls {' '.join('%.0f' % r['stall_ms'] for r in results)} ms")
    print(f"leader_loss_stall_ms {statistics.median(r['stall_ms'] for r in results):.0f} ms")
    print(f"leader_loss_ack_stall_ms {statistics.median(r['ack_stall_ms'] for r in results):.0f} ms")
    print(f"leader_loss_max_ms {max(r['max_ms'] for r in results):.0f} ms")
    print(f"leader_loss_lost {sum(r['lost'] + r['never_acked'] for r in results)} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
