#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""Daemon-level measurements for bench/store.sh; prints `name value unit`.

  store_http.py rss DB N          daemon RSS with a store of N keys (filled
                                  by store_bench), while serving cache hits
  store_http.py throughput C...   lookups/s through resolver-http against
                                  the loopback test API, per max_concurrency
  store_http.py flood             10,000 fresh keys knocking every second:
                                  requests/s the API sees with the budget on
"""
import base64
import hashlib
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from tap import TEST_PLUGINS, Daemon, read_stats, wait_until  # noqa: E402
from http_api import Api, free_port  # noqa: E402

tmp = tempfile.mkdtemp(prefix="wggwd-bench-store-")


def bench_key(i):
    d = hashlib.blake2b(b"wggwd-bench" + i.to_bytes(8, "little"), digest_size=32).digest()
    return base64.b64encode(d).decode()


def config(name, keys, store, api, interval=None, endpoint="192.0.2.7:51820", extra=""):
    stats = os.path.join(tmp, name + ".json")
    cfg = os.path.join(tmp, name + ".yaml")
    keylist = ", ".join(f'"{k}"' for k in keys)
    iv = f"\n      interval: {interval}" if interval else ""
    so = "".join(f"\n      {k}: {v}" for k, v in store.items())
    ao = "".join(f"\n      {k}: {v}" for k, v in api.items())
    with open(cfg, "w") as f:
        f.write(f"""plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 20ms
log_level: warn
{extra}stages:
  keys:
    plugin: source-keys
    options:
      keys: [{keylist}]
      endpoint: {endpoint}{iv}
  store:
    plugin: store-sqlite
    options:{so}
  api:
    plugin: resolver-http
    options:
      allowed_prefixes: [10.0.0.0/8]{ao}
  file:
    plugin: installer-file
    options:
      path: /dev/null
pipelines:
  pull: [keys, store, api, file]
""")
    return cfg, stats


def proc_kib(pid, what):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(what + ":"):
                return int(line.split()[1])
    return -1


def rss(db, n):
    k = int(round(len(str(n)) - 1))
    keys = [bench_key(i * (n // 1000)) for i in range(1000)]
    cfg, stats = config("rss", keys, {"path": db},
                        {"url": f'"http://127.0.0.1:{free_port()}/{{public_key}}"'},
                        interval="50ms")
    d = Daemon(cfg)
    got = wait_until(lambda: read_stats(stats).get("store.hit", 0) >= 20000, timeout=120)
    pid = d.proc.pid
    r, hwm = proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM")
    s = read_stats(stats)
    d.stop()
    d.close()
    if not got or s.get("store.miss"):
        print(f"# rss: the daemon did not serve hits: {s}", file=sys.stderr)
    print(f"rss_mib_1e{k} {r / 1024:.1f} MiB")
    print(f"rss_peak_mib_1e{k} {hwm / 1024:.1f} MiB")


def throughput(concs):
    api = Api()
    n = 3000
    for c in concs:
        keys = [base64.b64encode(os.urandom(32)).decode() for _ in range(n)]
        for i, key in enumerate(keys):
            api.peer(key, [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/32"])
        db = os.path.join(tmp, f"tp{c}.db")
        cfg, stats = config(f"tp{c}", keys, {"path": db},
                            {"url": f'"{api.url()}"', "max_concurrency": c,
                             "max_queue": n, "rate": 0, "source_rate": 0, "timeout": "60s"})
        api.reset_counts()
        t0 = time.monotonic()
        d = Daemon(cfg)
        got = wait_until(lambda: read_stats(stats).get("api.ok", 0) +
                         read_stats(stats).get("pipeline.pull.error", 0) >= n, timeout=120)
        # the first request is sent at start: time it from there
        el = (api.times[-1] - api.times[0]) if len(api.times) > 1 else time.monotonic() - t0
        ok_n = read_stats(stats).get("api.ok", 0)
        d.stop()
        d.close()
        if not got:
            print(f"# throughput c={c}: incomplete ({ok_n}/{n})", file=sys.stderr)
        print(f"http_lookups_per_s_c{c} {ok_n / el:.0f} lookups/s")
        print(f"http_max_concurrent_seen_c{c} {api.max_current} requests")
    api.close()


def flood():
    """10,000 fresh (unknown) keys re-knocking every second for 5 s."""
    api = Api()
    keys = [base64.b64encode(os.urandom(32)).decode() for _ in range(10000)]
    for name, apiopts in (("global", {"rate": 50, "burst": 100, "source_rate": 0}),
                          ("defaults", {})):
        db = os.path.join(tmp, f"flood-{name}.db")
        o = {"url": f'"{api.url()}"', "max_queue": 10000, "timeout": "30s"}
        o.update(apiopts)
        cfg, stats = config(f"flood-{name}", keys, {"path": db}, o, interval="1s")
        api.reset_counts()
        d = Daemon(cfg)
        wait_until(lambda: read_stats(stats).get("keys.emitted", 0) >= 50000, timeout=60)
        wait_until(lambda: read_stats(stats).get("pipeline.pull.inflight", 1) == 0, timeout=10)
        s = read_stats(stats)
        d.stop()
        d.close()
        # one bin per round of knocks (source-keys emits every second)
        t = [x - api.times[0] for x in api.times]
        rounds = max(1, s.get("keys.emitted", 0) // 10000)
        bins = [sum(1 for x in t if r <= x + 0.5 < r + 1) for r in range(rounds)]
        print(f"flood_{name}_offered 10000 keys/s")
        print(f"flood_{name}_api_requests_{rounds}s {len(t)} requests")
        print(f"flood_{name}_api_rps_first_s {bins[0]} requests/s")
        print(f"flood_{name}_api_rps_sustained {sum(bins[1:]) / max(1, rounds - 1):.0f} requests/s")
        print(f"flood_{name}_budget_refused {s.get('api.budget_refused', 0)} items")
    api.close()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "rss":
        rss(sys.argv[2], int(sys.argv[3]))
    elif what == "throughput":
        throughput([int(x) for x in sys.argv[2:]] or [1, 4, 16, 64])
    elif what == "flood":
        flood()
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
