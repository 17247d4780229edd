#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""store-sqlite under a fresh-key flood (issue 12, finding 3).

Anyone who knows the gateway's public key can mint keypairs and send valid
initiations from fresh keys. bench/store_keygen.c (built here) plays that
sender: 20,000 fresh keys with valid-looking timestamps, as fast as the
store takes them, through store-sqlite -> resolver-static (which knows a
few of them) -> installer-file. The store must keep timestamps only for
keys that resolved, sweep the dead rows as fast as they die, and keep each
table under its cap (the database file under the stated bound).
"""
import base64
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from tap import ROOT, TEST_PLUGINS, Daemon, done, ok, read_stats, wait_until  # noqa: E402

N = 20000
tmp = tempfile.mkdtemp(prefix="wggwd-flood-")
os.chmod(tmp, 0o700)
PLUG = os.path.join(tmp, "plugins")
os.mkdir(PLUG, 0o700)

# The bound README states: per row of each bounded table, bytes of the
# database file (its B-tree and time index, at the fill random keys give:
# about 105, 105 and 116 measured), for at most cap + 4 * commit_batch
# rows (a commit adds its batch before evicting; the batch grows to four
# times commit_batch while a checkpoint runs); and a fixed part (schema,
# the known keys' peer rows, free pages).
ROW_BYTES = {"negative": 120, "stamp": 128, "ratelimit": 120}
FIXED_BYTES = 256 * 1024


def bound(caps, commit_batch):
    return FIXED_BYTES + sum(ROW_BYTES[t] * (n + 4 * commit_batch) for t, n in caps.items())


def keygen_key(i):
    """The key source-keygen derives from index i."""
    d = hashlib.blake2b(b"wggwd-keygen" + i.to_bytes(8, "little"), digest_size=32).digest()
    return base64.b64encode(d).decode()


def build_keygen():
    so = os.path.join(PLUG, "source-keygen.so")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libsodium", "libuv"],
                           capture_output=True, text=True, check=True).stdout.split()
    cmd = [os.environ.get("CC", "cc"), "-std=gnu11", "-O2", "-D_GNU_SOURCE", "-shared", "-fPIC",
           "-I" + os.path.join(ROOT, "include"), "-I" + os.path.join(ROOT, "plugins", "common"),
           os.path.join(ROOT, "bench", "store_keygen.c"),
           os.path.join(ROOT, "plugins", "common", "wgutil.c"), *flags, "-o", so]
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode == 0, p.stderr


def counts(db):
    """Rows per bounded table, read beside the running daemon (WAL)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ROW_BYTES}
        finally:
            con.close()
    except sqlite3.Error:
        return None


class Run:
    def __init__(self, name, known, store, n=N):
        self.n = n
        self.dir = os.path.join(tmp, name)
        os.mkdir(self.dir)
        self.db = os.path.join(self.dir, "store.db")
        self.out = os.path.join(self.dir, "installs")
        self.stats_path = os.path.join(self.dir, "stats.json")
        cfg = os.path.join(self.dir, "wggwd.yaml")
        peers = "".join(f"        - public_key: {keygen_key(i)}\n"
                        f"          allowed_ips: [10.90.{i // 250}.{i % 250 + 1}/32]\n"
                        for i in range(known))
        sopts = "".join(f"      {k}: {v}\n" for k, v in store.items())
        with open(cfg, "w") as f:
            f.write(f"""plugin_path: [{TEST_PLUGINS}, {PLUG}]
stats_file: {self.stats_path}
stats_interval: 50ms
stages:
  flood:
    plugin: source-keygen
    options:
      count: {n}
      batch: 2000
      interval: 1ms
  store:
    plugin: store-sqlite
    options:
      path: {self.db}
{sopts}  static:
    plugin: resolver-static
    options:
      peers:
{peers}  file:
    plugin: installer-file
    options:
      path: {self.out}
pipelines:
  pull: [flood, store, static, file]
""")
        self.d = Daemon(cfg)

    def stats(self):
        return read_stats(self.stats_path)

    def stat(self, name):
        return self.stats().get(name, 0)

    def flooded(self):
        """Every key went through (or the daemon is gone: no use waiting)."""
        return self.stat("flood.ok") + self.stat("flood.not_ok") >= self.n or not self.d.alive()

    def installs(self):
        try:
            with open(self.out) as f:
                return f.read().splitlines()
        except OSError:
            return []

    def stop(self, what):
        rc = self.d.stop(signal.SIGTERM)
        log = self.d.output()
        ok(rc == 0 and "not closed cleanly" not in log and "never completed" not in log,
           f"{what}: SIGTERM, exit 0, loop closed cleanly", f"exit {rc}\n{log[-3000:]}")
        self.d.close()


built, err = build_keygen()
ok(built, "bench/store_keygen.c builds (the flood source)", err)
if not built:
    done()

# ------------------------------------------- 1. defaults: what is kept, swept
KNOWN = 50
t0 = time.monotonic()
r = Run("sweep", KNOWN, {"negative_ttl": "1s", "lookup_window": "1s"})
got = wait_until(r.flooded, timeout=25, step=0.05)
took = time.monotonic() - t0
s = r.stats()
ok(got and s.get("static.miss") == N - KNOWN and len(r.installs()) == KNOWN,
   f"{N} fresh keys through the store in {took:.1f}s: {N - KNOWN} unknown, the {KNOWN} known "
   "installed", f"{s}\n{r.d.output()[-2000:]}")
c = wait_until(lambda: (lambda x: x and x["stamp"] == KNOWN and x)(counts(r.db)), timeout=3)
ok(c, f"timestamps are kept only for the {KNOWN} keys that resolved, not for the "
   f"{N - KNOWN} refused ones", counts(r.db))
t1 = time.monotonic()
c = wait_until(lambda: (lambda x: x and x["negative"] == 0 and x["ratelimit"] == 0 and x)(
    counts(r.db)), timeout=6, step=0.1)
ok(c, f"the sweeper keeps up with the growth: {N - KNOWN} negative entries and {N} lookup "
   f"counts, dead after 1s, are gone {time.monotonic() - t1:.1f}s after the flood",
   f"{counts(r.db)} {r.stats()}")
r.stop("sweep")

# ----------------------------------------------------- 2. caps: the bound
KNOWN = 200
CAPS = {"negative": 2000, "ratelimit": 2000, "stamp": 100}
BATCH = 200
r = Run("caps", KNOWN, {"negative_ttl": "1h", "lookup_window": "1h", "commit_batch": BATCH,
                        "max_negative": CAPS["negative"], "max_rate_rows": CAPS["ratelimit"],
                        "max_timestamps": CAPS["stamp"]})
peak = dict.fromkeys(CAPS, 0)
peak_bytes = peak_wal = 0


def fsize(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def watch():
    global peak_bytes, peak_wal
    x = counts(r.db)
    for t in CAPS:
        peak[t] = max(peak[t], x[t] if x else 0)
    peak_bytes = max(peak_bytes, fsize(r.db))
    peak_wal = max(peak_wal, fsize(r.db + "-wal"))
    return r.flooded()


got = wait_until(watch, timeout=25, step=0.05)
time.sleep(0.5)  # the last batch committed
watch()
c = counts(r.db)
s = r.stats()
ok(got and c == CAPS and len(r.installs()) == KNOWN,
   f"capped: each table holds at most its cap while {N} fresh keys knock (peaks {peak}, "
   f"end {c})", f"{c} {s}\n{r.d.output()[-2000:]}")
ok(s.get("store.evicted", 0) >= (N - KNOWN - CAPS["negative"]) + (N - CAPS["ratelimit"]) +
   (KNOWN - CAPS["stamp"]), "the oldest rows were evicted (counted: store.evicted)", s)
ok("more rows than max_negative" in r.d.output(), "an eviction is logged (rate-limited)",
   r.d.output()[-2000:])
r.stop("caps")
size = fsize(r.db)
limit = bound(CAPS, BATCH)
ok(0 < size <= limit and peak_bytes <= limit,
   f"the database file stays under the bound: {size} bytes at the end, {peak_bytes} at "
   f"most (bound {limit} for caps {CAPS}, commit_batch {BATCH}; WAL at most {peak_wal})",
   (size, peak_bytes, limit))

# ------------------------------------------------ 3. the WAL stays bounded
# A flood fills the batch faster than a background checkpoint runs: the
# WAL never starts over and grows by a commit's pages each time (270 MB
# for 60,000 keys before the fix). Past 16384 pages (64 MiB) writes wait
# while the thread pool truncates it (the loop checkpoints it itself only
# if the batch fills meanwhile): at most that, plus one commit (no more
# pages than the database has).
M = 60000
WAL_PAGES, FRAME = 16384, 4096 + 24
r = Run("wal", 1, {}, n=M)
peak_bytes = peak_wal = 0


def watch3():
    global peak_bytes, peak_wal
    peak_bytes = max(peak_bytes, fsize(r.db))
    peak_wal = max(peak_wal, fsize(r.db + "-wal"))
    return r.flooded()


got = wait_until(watch3, timeout=25, step=0.02)
s = r.stats()
ok(got and s.get("static.miss") == M - 1,
   f"{M} fresh keys at the defaults: through in {s.get('store.commits')} commits", s)
wal_limit = WAL_PAGES * FRAME + peak_bytes + 32
ok(peak_wal <= wal_limit,
   f"the WAL stays under 64 MiB + one commit: {peak_wal} bytes at most (bound {wal_limit}; "
   f"{s.get('store.wal_truncated', 0)} truncated on the thread pool, "
   f"{s.get('store.wal_stalls', 0)} blocking checkpoints)", (peak_wal, wal_limit, s))
c = counts(r.db)
r.stop("wal")
size = fsize(r.db)
limit = bound({t: n for t, n in c.items()}, 1000) if c else 0
ok(c and c["stamp"] == 1 and size <= limit,
   f"the database file: {size} bytes for {c} (bound {limit})", (c, size, limit))

shutil.rmtree(tmp, ignore_errors=True)
done()
