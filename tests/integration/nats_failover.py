#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""The node that leads source-nats' JetStream consumer dies (kill -9, then
a graceful stop) while a publisher sends a message every 10 ms: delivery
resumes at once and nothing is lost.

Three clustered nats-servers, stream PEERS (3 replicas), one wggwd
(source-nats, heartbeat 1s -> the test installer-file). The set-up and the
measurement are bench/failover.py's (one round per kind): the consumer's
leader is moved onto the node wggwd is connected to and the stream's
leader off it, so the kill takes the connection and the consumer's leader.

After a kill -9 the consumer has no leader until its raft group elects
another (nats-server's election timeout: 4-9 s, fixed in 2.9). Meanwhile
source-nats reads the stream directly (failover_read; the stream has
allow_direct) and installs from there; the consumer's redeliveries are
then ACKed as stale. The subscription is kept across it (no rebind). The
bound here is generous (5 s); bench/failover.py measures the stall
(leader_loss_stall_ms, target 1 s)."""
import base64
import os
import signal
import sys
import shutil
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from tap import BUILD, TEST_PLUGINS, WGGWD, done, ok, read_stats, skip, wait_until  # noqa: E402
import natsd  # noqa: E402

CHECKS = [
    "three JetStream nodes; wggwd binds its durable",
    "kill -9 of the consumer's leader (wggwd on it): installs resume within 5 s",
    "kill -9: nothing lost (every message installed, and ACKed once the consumer is back)",
    "kill -9: read directly meanwhile, subscription kept (no rebind), the consumer's redeliveries ACKed as stale",
    "graceful stop of the consumer's leader: delivery resumes within 5 s",
    "graceful stop: nothing lost",
    "the consumer deleted: missed heartbeats, the server says it is gone, bound again, new messages ACKed",
    "SIGTERM exits 0",
]

why = natsd.missing()
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

import failover  # noqa: E402  bench/failover.py

VERBOSE = os.environ.get("VERBOSE")
tmp = tempfile.mkdtemp(prefix="wggwd-failover-")
cluster = gw = None
try:
    cluster = natsd.Cluster(3, name="wggwd-failover-test")
    failover.make_stream(cluster)
    gw = failover.Gateway(tmp, cluster.urls, "\n      heartbeat: 1s")
    bound = wait_until(lambda: f"as durable {failover.DURABLE}" in gw.output(), 20)
    ok(bound, CHECKS[0], gw.output()[-1500:])

    r = failover.one_round(cluster, gw, signal.SIGKILL, False, 1)
    ok(r and r["stall_ms"] < 5000, CHECKS[1], (r, gw.output()[-2000:]))
    ok(r and r["published"] > 0 and r["lost"] == 0 and r["never_acked"] == 0, CHECKS[2], r)

    def counted():
        # the stats file lags by up to stats_interval
        s = read_stats(gw.stats)
        return (s.get("nats.rebinds", 0) == 0 and s.get("nats.disconnects", 0) >= 1
                and s.get("nats.failover_reads", 0) >= 1 and s.get("nats.read_directly", 0) > 0
                and s.get("nats.stale", 0) >= s.get("nats.read_directly", 0)
                and s.get("nats.acked", 0) ==
                s.get("nats.received", 0) - s.get("nats.read_directly", 0)) and s
    s = wait_until(counted, 10, 0.05) or read_stats(gw.stats)
    ok(r and counted(), CHECKS[3],
       ({k: v for k, v in s.items() if k.startswith("nats.")}, gw.output()[-2000:]))

    r = failover.one_round(cluster, gw, signal.SIGTERM, False, 2)
    ok(r and r["stall_ms"] < 5000, CHECKS[4], (r, gw.output()[-2000:]))
    ok(r and r["published"] > 0 and r["lost"] == 0 and r["never_acked"] == 0, CHECKS[5], r)

    # a deleted consumer is the one case that needs a new binding
    c = natsd.Client(cluster.alive()[0].port)
    try:
        acks = set()
        c.sub(f"$JS.ACK.PEERS.{failover.DURABLE}.>",
              lambda m: acks.add(int(m.subject.split(".")[5])) if m.data == b"+ACK" else None)
        c.flush()
        log_off = len(gw.output())
        deleted = failover.api(c, f"CONSUMER.DELETE.PEERS.{failover.DURABLE}")
        rebound = wait_until(lambda: "binding it again" in gw.output()[log_off:]
                             and f"as durable {failover.DURABLE}" in gw.output()[log_off:], 20, 0.05)
        key = base64.b64encode(os.urandom(32)).decode()
        seq = c.js_publish_retry(failover.SUBJECT, {"op": "add", "public_key": key,
                                                    "allowed_ips": ["10.70.0.1/32"]},
                                 time.monotonic() + 10)[0]["seq"]
        acked = wait_until(lambda: seq in acks, 15, 0.05)
        s = read_stats(gw.stats)
        ok(deleted.get("success") and rebound and acked and s.get("nats.rebinds", 0) >= 1,
           CHECKS[6], (deleted, seq, s.get("nats.rebinds"), gw.output()[log_off:][-2000:]))
    finally:
        c.close()

    rc = gw.d.stop()
    ok(rc == 0, CHECKS[7], (rc, gw.output()[-1500:]))
    if VERBOSE:
        for line in gw.output().splitlines():
            print(f"# {line}")
finally:
    if gw:
        gw.d.close()
    if cluster:
        cluster.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
done()
