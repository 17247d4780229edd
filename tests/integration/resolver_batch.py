#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""resolver-http under a flood of fresh keys (issue 14): batched lookups
(one POST for many keys, each key judged on its own), returning keys
served before fresh ones (their own budget: from source-keys' `returning`
flag, and from store-sqlite, which knows a key whose answer expired), and
per-source buckets per /24 and /64. source-keys -> [store-sqlite] ->
resolver-http -> installer-file, with the loopback API of http_api.py; no
namespaces."""
import base64
import math
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
import http_api  # noqa: E402
from tap import TEST_PLUGINS, Daemon, done, ok, read_stats, wait_until  # noqa: E402

tmp = tempfile.mkdtemp(prefix="wggwd-batch-")
PREFIX = "10.90.0.0/16"


def newkey():
    return base64.b64encode(os.urandom(32)).decode()


def fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(f'"{x}"' for x in v) + "]"
    return f'"{v}"' if isinstance(v, str) else str(v)


def stage(name, plugin, **o):
    s = f"  {name}:\n    plugin: {plugin}\n"
    if o:
        s += "    options:\n" + "".join(f"      {k}: {fmt(v)}\n" for k, v in o.items())
    return s


class Run:
    def __init__(self, name):
        self.name = name
        self.out = os.path.join(tmp, f"{name}.out")
        self.stats_path = os.path.join(tmp, f"{name}.json")
        self.cfg = os.path.join(tmp, f"{name}.yaml")
        self.d = None

    def start(self, stages, pipelines):
        pl = "".join(f"  {k}: [{', '.join(v)}]\n" for k, v in pipelines.items())
        with open(self.cfg, "w") as f:
            f.write(f"plugin_path: [{TEST_PLUGINS}]\nstats_file: {self.stats_path}\n"
                    f"stats_interval: 50ms\nstages:\n{stages}pipelines:\n{pl}")
        self.d = Daemon(self.cfg)
        return self

    def stats(self):
        return read_stats(self.stats_path)

    def stat(self, k):
        return self.stats().get(k, 0)

    def installs(self):
        try:
            with open(self.out) as f:
                return f.read().splitlines()
        except OSError:
            return []

    def installed(self, key):
        return any(x.split()[:2] == ["add", key] for x in self.installs())

    def wait(self, cond, timeout=10):
        return wait_until(lambda: cond() or not self.d.alive(), timeout) and self.d.alive()

    def stop(self, what):
        rc = self.d.stop()
        log = self.d.output()
        ok(rc == 0 and "not closed cleanly" not in log and "never completed" not in log,
           f"{what}: clean exit", log[-2000:])
        self.d.close()


def api_stage(api, **o):
    o.setdefault("url", api.url())
    o.setdefault("allowed_prefixes", [PREFIX])
    return stage("api", "resolver-http", **o)


api = http_api.Api()
try:
    # ------------------------------------------------ 1. batches, per key
    N, BMAX = 200, 64
    keys = [newkey() for _ in range(N)]
    found, unknown, policy = keys[:150], keys[150:180], keys[180:190]
    missing, remote = keys[190:195], keys[195:200]
    for i, k in enumerate(found):
        api.peer(k, [f"10.90.{i // 250}.{i % 250 + 1}/32"])
    for k in policy:
        api.peer(k, ["10.91.0.1/32"])
    for k in remote:
        api.raw[k] = {"error": "database on fire"}
    api.omit.update(missing)
    r = Run("batch").start(
        stage("keys", "source-keys", keys=keys, endpoint="192.0.2.7:51820") +
        api_stage(api, batch=True, batch_max=BMAX, batch_window="2ms", source_rate=0) +
        stage("file", "installer-file", path=os.path.join(tmp, "batch.out")),
        {"pull": ["keys", "api", "file"]})
    got = r.wait(lambda: r.stat("keys.ok") + r.stat("keys.not_ok") == N)
    s = r.stats()
    reqs = api.count()
    ok(got and reqs <= math.ceil(N / BMAX) + 2 and s.get("api.requests") == reqs
       and s.get("api.batches") == reqs and s.get("api.batch_keys") == N,
       f"{N} keys at once, batch_max {BMAX}: {reqs} requests (at most "
       f"{math.ceil(N / BMAX) + 2})", (api.batch_sizes, s))
    ok(api.batch_sizes and max(api.batch_sizes) <= BMAX and sum(api.batch_sizes) == N
       and all(api.per_key.get(k) == 1 for k in keys)
       and all(c == "application/json" for c in api.ctypes),
       "each key asked once, in POSTed JSON lists of at most batch_max",
       (api.batch_sizes, api.ctypes[:3]))
    ins = r.installs()
    ok(len(ins) == 150 and all(r.installed(k) for k in found)
       and s.get("api.ok") == 150 and s.get("keys.ok") == 150,
       "found: the 150 known keys installed, each with its own answer", (len(ins), s))
    ok(s.get("api.not_found") == 30 and s.get("pipeline.pull.drop.unknown_key") == 30,
       "not found (null): 30 dropped as unknown_key", s)
    ok(s.get("api.error.policy") == 10 and not any(r.installed(k) for k in policy),
       "an answer outside allowed_prefixes: refused (policy) for that key only", s)
    ok(s.get("api.batch_missing") == 5 and s.get("api.error.bad_body") == 5
       and s.get("api.error.remote_error") == 5 and s.get("pipeline.pull.error") == 20,
       "missing from the answer: bad_answer; {\"error\": ...}: remote_error; per key", s)
    ok(s.get("api.breaker_state") == 0 and s.get("api.in_flight") == 0
       and s.get("api.queued") == 0,
       "bad keys in a good answer do not trip the breaker; nothing left queued", s)
    r.stop("batch")
    api.omit.clear()
    api.raw.clear()

    # ---------------------- 2. a returning key under a fresh-key flood
    for batch in (True, False):
        api.reset_counts()
        R = newkey()
        api.peer(R, ["10.90.200.1/32"])
        flood = [newkey() for _ in range(300)]
        tag = "batch" if batch else "one key per GET"
        r = Run(f"ret-{int(batch)}").start(
            stage("flood", "source-keys", keys=flood, endpoint="192.0.2.9:1000",
                  interval="100ms") +
            stage("back", "source-keys", keys=[R], endpoint="192.0.2.9:2000",
                  interval="250ms", returning=True) +
            api_stage(api, batch=batch, rate=1, burst=1, source_rate=0) +
            stage("file", "installer-file", path=os.path.join(tmp, f"ret-{int(batch)}.out")),
            {"p1": ["flood", "api", "file"], "p2": ["back", "api", "file"]})
        got = r.wait(lambda: r.stat("api.budget_refused") >= 500 and r.stat("back.ok") >= 3)
        s = r.stats()
        ok(got and r.installed(R) and s.get("back.not_ok") == 0
           and s.get("api.returning") == s.get("back.emitted")
           and s.get("api.returning_budget_refused") == 0,
           f"{tag}: with the budget spent by fresh keys ({s.get('api.budget_refused')} "
           f"refused), the returning key resolves every time ({s.get('back.ok')})", s)
        r.stop(f"returning, {tag}")

    # --------------- 3. returning as store-sqlite knows it: expired answer
    api.reset_counts()
    R = newkey()
    api.peer(R, ["10.90.201.1/32"], ttl=1)
    db = os.path.join(tmp, "store.db")
    out = os.path.join(tmp, "store.out")
    common = (stage("store", "store-sqlite", path=db, commit_interval="10ms") +
              api_stage(api, batch=True, rate=1, burst=1, source_rate=0) +
              stage("file", "installer-file", path=out))
    r = Run("store-a")
    r.out = out
    r.start(stage("back", "source-keys", keys=[R]) + common,
            {"p2": ["back", "store", "api", "file"]})
    got = r.wait(lambda: r.installed(R) and r.stat("store.saved") >= 1)
    ok(got and r.stat("api.returning") == 0, "store: a key seen first is fresh", r.stats())
    r.stop("store, first run")
    time.sleep(1.3)  # its answer (ttl 1 s) expires
    flood = [newkey() for _ in range(300)]
    r = Run("store-b")
    r.out = out
    r.start(
        stage("flood", "source-keys", keys=flood, endpoint="192.0.2.9:1000",
              interval="100ms") +
        stage("back", "source-keys", keys=[R], interval="300ms") + common,
        {"p1": ["flood", "store", "api", "file"], "p2": ["back", "store", "api", "file"]})
    got = r.wait(lambda: r.stat("api.budget_refused") >= 250 and api.count(R) >= 2)
    s = r.stats()
    ok(got and s.get("api.returning") >= 1 and s.get("api.returning_budget_refused") == 0
       and len([x for x in r.installs() if x.split()[:2] == ["add", R]]) >= 2,
       "store: its answer expired, the key is returning (flagged by the store) and "
       "resolves while fresh keys are refused", (api.count(R), s))
    r.stop("store, second run")

    # ------------------------------------------- 4. per-network buckets
    def subnet_run(name, **o):
        api.reset_counts()
        srcs = {"a": "10.0.0.1:1000", "b": "10.0.0.2:2000", "c": "10.0.1.1:1000",
                "d": "[fd00:1::1]:1000", "e": "[fd00:1::2]:1000", "f": "[fd00:1:0:1::1]:1000"}
        ks = {n: [newkey() for _ in range(40)] for n in srcs}
        st = "".join(stage(n, "source-keys", keys=ks[n], endpoint=a) for n, a in srcs.items())
        r = Run(name).start(
            st + api_stage(api, rate=0, source_rate=1, source_burst=10, **o) +
            stage("file", "installer-file", path=os.path.join(tmp, f"{name}.out")),
            {f"p{n}": [n, "api", "file"] for n in srcs})
        r.wait(lambda: all(r.stat(f"{n}.not_ok") == 40 for n in srcs))
        c = {n: sum(api.count(k) for k in ks[n]) for n in srcs}
        r.stop(name)
        return c

    c = subnet_run("subnet")
    ok(10 <= c["a"] + c["b"] <= 12 and 10 <= c["c"] <= 12,
       f"10.0.0.1 and 10.0.0.2 share a /24 bucket ({c['a']} + {c['b']}), "
       f"10.0.1.1 has its own ({c['c']})", c)
    ok(10 <= c["d"] + c["e"] <= 12 and 10 <= c["f"] <= 12,
       f"fd00:1::1 and fd00:1::2 share a /64 bucket ({c['d']} + {c['e']}), "
       f"fd00:1:0:1::1 has its own ({c['f']})", c)
    c = subnet_run("subnet32", source_prefix_v4=32, source_prefix_v6=128)
    ok(all(10 <= c[n] <= 12 for n in c),
       f"source_prefix_v4: 32, source_prefix_v6: 128: a bucket per address {c}", c)
finally:
    api.close()
    shutil.rmtree(tmp, ignore_errors=True)
done()
