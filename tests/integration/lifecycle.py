#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""A peer's life after its install, on wireguard-go in namespaces, with
real clients that keep pinging the gateway (ping -i 0.1) while it happens:

  (a) pull revocation: source-bpf -> decoder-noise -> store-sqlite ->
      resolver-http -> installer-uapi; the answer's ttl runs out, the
      store's sweep asks again (a fresh answer keeps the peer, a changed one
      updates it in place), then the control plane stops knowing the key:
      the pings stop within ttl + one revalidate_interval;
  (b) push revocation (hybrid: the same store and installer behind a
      source-nats pipeline): a pushed removal stops the pings within a
      second, and purges the answer the store cached for a pulled key;
  (c) leases: a peer is removed at its lease's end while it pings; a lease
      survives a daemon restart (still enforced), and one that ended while
      the daemon was down is removed at start;
  (d) max_stale: the API down, a peer whose answer expired keeps its
      tunnel for max_stale, then goes (unverified);
  (e) a gateway restart (wireguard-go empty): a pulled client whose
      session is still live is re-installed at once by role inversion.

The control plane is a small HTTP API (tests/integration/http_api.py) and
a nats-server, both on loopback inside the gateway namespace. The
revocation delays are printed as TAP diagnostics.
VERBOSE=1 prints the daemons' logs.
"""
import base64
import contextlib
import ctypes
import datetime
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
from tap import BUILD, TEST_PLUGINS, WGGWD, Daemon, done, ok, read_stats, skip, wait_until  # noqa: E402
from http_api import Api  # noqa: E402
import natsd  # noqa: E402
import wgnet  # noqa: E402

CHECKS = {
    "a": ["pull: the client's tunnel comes up through store-sqlite and resolver-http",
          "pull: an expired answer is asked about again in the background; a fresh one keeps "
          "the peer and the pings go on",
          "pull: a changed answer (a new allowed IP) updates the peer in place, pings uninterrupted",
          "pull revocation: the pings stop within ttl + one revalidate_interval",
          "pull revocation: counted (store.revoked) and logged with the key; the cached answer "
          "is dropped",
          "pull revocation: the client, still sending, stays out"],
    "b": ["push: a pushed peer's tunnel comes up; a pulled client's too (hybrid)",
          "push revocation: a pushed removal stops the pings within a second",
          "push revocation of a pulled key: the pings stop within a second and the store's "
          "cached answer is purged",
          "push: a pushed lease (`lease` seconds) removes the peer at its end; a malformed one "
          "is poison (poison_bad_lease)"],
    "c": ["lease: a peer is removed at its lease's end while it pings (expires_at)",
          "lease: `lease` seconds in the answer: removed at its end",
          "lease across a restart: the new daemon names the peer to the installer again "
          "and removes it at its lease's end",
          "lease that ended while the daemon was down: removed at start"],
    "d": ["max_stale: the API down, a peer whose answer expired keeps its tunnel (availability)",
          "max_stale: then it is removed (unverified), within max_stale + one revalidate_interval"],
    "e": ["gateway restart: the store knows the pulled client's last endpoint and handshake",
          "gateway restart: the client whose session is live is re-installed at once "
          "(restored_live, role inversion): back in seconds, not 15"],
}
ALL = [c for k in "abcde" for c in CHECKS[k]]

why = wgnet.missing()
if not why and not os.access(WGGWD, os.X_OK):
    why = f"no wggwd at {WGGWD} (set WGGWD_BUILD)"
for so in ("store-sqlite", "resolver-http", "source-bpf", "installer-uapi"):
    if not why and not os.path.exists(os.path.join(BUILD, "plugins", so, so + ".so")):
        why = f"{so} is not built"
if why:
    for name in ALL:
        skip(name, why)
    done()
NATS_WHY = natsd.missing() or (
    None if os.path.exists(os.path.join(BUILD, "plugins", "source-nats", "source-nats.so"))
    else "source-nats is not built")
VERBOSE = os.environ.get("VERBOSE")

tmp = tempfile.mkdtemp(prefix="wggwd-life-")
os.chmod(tmp, 0o700)
daemons = []
_n = [0]

# ----------------------------------------------------------- namespaces

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
HOME_NS = os.open("/proc/self/ns/net", os.O_RDONLY)


def _setns(fd):
    if libc.setns(fd, CLONE_NEWNET):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextlib.contextmanager
def netns(name):
    """Sockets made (and processes started) inside stay in that namespace."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(fd)
        yield
    finally:
        _setns(HOME_NS)
        os.close(fd)


# --------------------------------------------------------------- helpers

class Pinger:
    """ping -D -i 0.1 from a client to the gateway's tunnel address, for as
    long as the test runs; the wall-clock times of the replies."""

    RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")

    def __init__(self, net, client, addr, interval=0.1):
        _n[0] += 1
        self.path = os.path.join(tmp, f"ping{_n[0]}.txt")
        self.f = open(self.path, "wb")
        self.p = net.track(subprocess.Popen(
            ["ip", "netns", "exec", client.ns, "stdbuf", "-oL", "ping", "-D", "-n", "-i",
             str(interval), "-W", "1", addr], stdout=self.f, stderr=subprocess.STDOUT),
            f"ping from {client.ns}")

    def replies(self):
        with open(self.path, errors="replace") as f:
            return [float(m.group(1)) for m in map(self.RE.match, f) if m]

    def last(self):
        r = self.replies()
        return r[-1] if r else None

    def up(self, timeout=8.0):
        """Wait for a first reply; seconds it took, or None."""
        t0 = time.time()
        if not wait_until(lambda: self.replies(), timeout, 0.05):
            return None
        return self.replies()[0] - t0

    def quiet_since(self, t, quiet=1.5):
        """True once no reply came for `quiet` s (and the last was after t
        or there was none since t)."""
        last = self.last()
        return last is None or time.time() - max(last, t) >= quiet

    def max_gap(self, since, until=None):
        r = [x for x in self.replies() if x >= since and (until is None or x <= until)]
        return max((b - a for a, b in zip(r, r[1:])), default=0.0)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait(5)
        self.f.close()


def stage(name, plugin, **opts):
    s = f"  {name}:\n    plugin: {plugin}\n"
    if opts:
        s += "    options:\n"
        for k, v in opts.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, (list, tuple)):
                v = "[" + ", ".join(str(x) for x in v) + "]"
            s += f"      {k}: {v}\n"
    return s


def config(name, stages, pipelines):
    _n[0] += 1
    d = os.path.join(tmp, f"{_n[0]:02d}-{name}")
    os.makedirs(d, exist_ok=True)
    stats = os.path.join(d, "stats.json")
    path = os.path.join(d, "wggwd.yaml")
    pl = "".join(f"  {k}: [{', '.join(v)}]\n" for k, v in pipelines.items())
    with open(path, "w") as f:
        f.write(f"plugin_path: [{TEST_PLUGINS}]\nstats_file: {stats}\nstats_interval: 50ms\n"
                f"log_level: info\nstages:\n{stages}pipelines:\n{pl}")
    return path, stats


class Gw:
    """One daemon on the gateway namespace."""

    def __init__(self, cfg, stats, ns):
        self.cfg, self.stats_path, self.ns = cfg, stats, ns
        self.d = Daemon(cfg, netns=ns)
        daemons.append(self.d)
        self.running = wait_until(lambda: "running" in self.d.output() or not self.d.alive(), 10) \
            and self.d.alive()

    def stat(self, name):
        return read_stats(self.stats_path).get(name, 0)

    def stats(self):
        return read_stats(self.stats_path)

    def log(self):
        return self.d.output()

    def stop(self):
        rc = self.d.stop()
        if VERBOSE:
            for line in self.d.output().splitlines():
                print(f"# {line}")
        return rc


def dbq(path, sql, *args):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def gw_peer(net, topo, pub):
    return net.peer(topo.gw_ns, topo.gw_if, pub)


GONE = {}


def stopped(net, topo, pinger, pub, t0, timeout):
    """Wait until the peer is off the interface and the pings have stopped;
    the delay from t0 to the last reply (None: they did not stop). GONE[pub]:
    when the peer was first seen off the interface (polled every 20 ms)."""
    GONE.pop(pub, None)

    def cond():
        if pub not in GONE and gw_peer(net, topo, pub) is None:
            GONE[pub] = time.time()
        return pub in GONE and pinger.quiet_since(t0)

    if not wait_until(cond, timeout, 0.02):
        return None
    last = pinger.last()
    return max(0.0, (last or t0) - t0)


def report(what, pub, t0, delay):
    if delay is not None:
        print(f"# {what}: last reply {delay:+.2f} s, peer off the interface "
              f"{GONE[pub] - t0:+.2f} s after it (pings every 100 ms)", flush=True)


# ------------------------------------------------------------ topology

net = wgnet.Net("lcy")
topo = net.gateway_with_clients(9, underlay="10.213.0", tunnel="10.214.0")
A, B, C, D, E, F, G, H, K = topo.clients
TUNNEL = topo.tunnel_net
with netns(topo.gw_ns):
    api = Api()


def pull_stages(db, store_opts=None, api_opts=None):
    so = {"path": db, "lookups_per_key": 0, "negative_ttl": "0", "commit_interval": "20ms"}
    so.update(store_opts or {})
    ao = {"url": api.url(), "allowed_prefixes": [TUNNEL], "backoff": "100ms",
          "backoff_max": "200ms"}
    ao.update(api_opts or {})
    return (stage("sniff", "source-bpf", interface=topo.gw_uplink) +
            stage("noise", "decoder-noise") +
            stage("store", "store-sqlite", **so) +
            stage("api", "resolver-http", **ao) +
            stage("wg", "installer-uapi", interface=topo.gw_if))


PULL = {"pull": ["sniff", "noise", "store", "api", "wg"]}
pingers = []


def pinger(c):
    p = Pinger(net, c, topo.gw_tunnel_ip)
    pingers.append(p)
    return p


try:
    # ------------------------------------------- (a) pull revocation
    TTL, REVAL = 2, 1
    db = os.path.join(tmp, "a.db")
    api.peer(A.pub, [f"{A.tunnel_ip}/32"], ttl=TTL)
    cfg, stats = config("pull", pull_stages(db, {"revalidate_interval": f"{REVAL}s",
                                                 "max_stale": "1h"}), PULL)
    g = Gw(cfg, stats, topo.gw_ns)
    pa = pinger(A)
    up = pa.up()
    ok(g.running and up is not None, f"{CHECKS['a'][0]} ({(up or 0) * 1000:.0f} ms)", g.log())
    t_up = time.time()
    time.sleep(TTL * 2 + REVAL + 0.5)
    ok(g.stat("store.revalidations") >= 1 and api.count(A.pub) >= 2 and
       gw_peer(net, topo, A.pub) is not None and pa.max_gap(t_up) < 1.0,
       CHECKS["a"][1], f"api asked {api.count(A.pub)}x, gap {pa.max_gap(t_up):.2f}s {g.stats()}")
    t1 = time.time()
    api.peer(A.pub, [f"{A.tunnel_ip}/32", "10.214.0.200/32"], ttl=TTL)
    got = wait_until(lambda: "10.214.0.200/32" in (gw_peer(net, topo, A.pub) or {}).get(
        "allowed_ips", []), TTL + REVAL + 3, 0.05)
    time.sleep(0.5)
    ok(got and pa.max_gap(t1) < 1.0, CHECKS["a"][2],
       f"{gw_peer(net, topo, A.pub)} gap {pa.max_gap(t1):.2f}s")
    with api.lock:
        t0 = time.time()
        del api.answers[A.pub]  # the user was removed, the device lost
    delay = stopped(net, topo, pa, A.pub, t0, TTL + REVAL + 8)
    report(f"pull revocation delay (ttl {TTL} s, revalidate_interval {REVAL} s)", A.pub, t0,
           delay)
    ok(delay is not None and delay <= TTL + REVAL + 1.0,
       f"{CHECKS['a'][3]} ({delay if delay is None else round(delay, 2)} s <= {TTL + REVAL} s + 1 s)",
       f"{gw_peer(net, topo, A.pub)} {g.stats()}\n{g.log()[-3000:]}")
    time.sleep(0.3)  # the batch commits every 20 ms
    rows = dbq(db, "SELECT origin FROM peer WHERE key = ?", base64.b64decode(A.pub))
    ok(g.stat("store.revoked") >= 1 and A.pub in g.log() and "revoked" in g.log() and rows == [],
       CHECKS["a"][4], f"rows {rows} {g.stats()}")
    t2 = time.time()
    time.sleep(3)
    ok(not [x for x in pa.replies() if x > t2] and gw_peer(net, topo, A.pub) is None,
       CHECKS["a"][5], pa.replies()[-3:])
    pa.stop()
    ok_a = g.stop() == 0
    if not ok_a:
        print(f"# (a): the daemon did not exit 0\n# " + g.log()[-2000:].replace("\n", "\n# "))

    # ------------------------------------------- (b) push revocation
    if NATS_WHY:
        for name in CHECKS["b"]:
            skip(name, NATS_WHY)
    else:
        with netns(topo.gw_ns):
            srv = natsd.Server()
            cl = natsd.Client(srv.port)
        cl.stream_create("PEERS", ["wggwd.peers.>"])
        db = os.path.join(tmp, "b.db")
        api.peer(C.pub, [f"{C.tunnel_ip}/32"], ttl=3600)
        cfg, stats = config("hybrid", pull_stages(db, {"revalidate_interval": "1s",
                                                       "max_stale": "1h"}) +
                            stage("nats", "source-nats", servers=[srv.url],
                                  subject="wggwd.peers.gw", durable="lifecycle",
                                  allowed_prefixes=[TUNNEL]),
                            {"pull": ["sniff", "noise", "store", "api", "wg"],
                             "push": ["nats", "store", "wg"]})
        g = Gw(cfg, stats, topo.gw_ns)
        wait_until(lambda: "consuming" in g.log(), 10)
        cl.js_publish("wggwd.peers.gw", {"op": "add", "public_key": B.pub, "version": 1,
                                         "allowed_ips": [f"{B.tunnel_ip}/32"]})
        pb, pc = pinger(B), pinger(C)
        upb, upc = pb.up(), pc.up()
        time.sleep(0.3)
        rows_c = dbq(db, "SELECT origin, removed FROM peer WHERE key = ?", base64.b64decode(C.pub))
        ok(upb is not None and upc is not None and rows_c == [(1, 0)], CHECKS["b"][0],
           f"{upb} {upc} {rows_c}\n{g.log()[-2000:]}")
        t0 = time.time()
        cl.js_publish("wggwd.peers.gw", {"op": "remove", "public_key": B.pub, "version": 2})
        delay = stopped(net, topo, pb, B.pub, t0, 5)
        report("push revocation delay", B.pub, t0, delay)
        ok(delay is not None and delay <= 1.0,
           f"{CHECKS['b'][1]} ({delay if delay is None else round(delay, 2)} s)",
           f"{gw_peer(net, topo, B.pub)} {g.stats()}\n{g.log()[-2000:]}")
        with api.lock:
            del api.answers[C.pub]
        t0 = time.time()
        cl.js_publish("wggwd.peers.gw", {"op": "remove", "public_key": C.pub, "version": 1})
        delay = stopped(net, topo, pc, C.pub, t0, 5)
        report("push revocation delay (a pulled key)", C.pub, t0, delay)
        time.sleep(0.3)
        rows_c = dbq(db, "SELECT origin, removed FROM peer WHERE key = ?", base64.b64decode(C.pub))
        ok(delay is not None and delay <= 1.0 and rows_c == [(2, 1)],
           f"{CHECKS['b'][2]} ({delay if delay is None else round(delay, 2)} s)",
           f"rows {rows_c} {gw_peer(net, topo, C.pub)} {g.stats()}\n{g.log()[-2000:]}")
        X, Y = wgnet.genkey()[1], wgnet.genkey()[1]
        t_x = time.time()
        cl.js_publish("wggwd.peers.gw", {"op": "add", "public_key": X, "version": 1,
                                         "allowed_ips": ["10.214.0.99/32"], "lease": 2})
        appeared = wait_until(lambda: gw_peer(net, topo, X) is not None, 3, 0.02)
        gone = wait_until(lambda: gw_peer(net, topo, X) is None, 6, 0.02)
        t_gone = time.time() - t_x
        cl.js_publish("wggwd.peers.gw", {"op": "add", "public_key": Y, "version": 1,
                                         "allowed_ips": ["10.214.0.98/32"], "expires_at": "soon"})
        poison = wait_until(lambda: g.stat("nats.poison_bad_lease") == 1, 3)
        ok(appeared and gone and 1.0 <= t_gone <= 3.5 and poison and gw_peer(net, topo, Y) is None,
           f"{CHECKS['b'][3]} (gone after {t_gone:.2f} s)", f"{appeared} {gone} {g.stats()}")
        pb.stop()
        pc.stop()
        g.stop()
        cl.close()
        srv.cleanup()

    # ---------------------------------------------------- (c) leases
    db = os.path.join(tmp, "c.db")
    cfg, stats = config("lease", pull_stages(db, {"revalidate_interval": "1s",
                                                  "max_stale": "1h"}), PULL)
    g = Gw(cfg, stats, topo.gw_ns)
    exp_d = int(time.time()) + 6
    api.peer(D.pub, [f"{D.tunnel_ip}/32"], ttl=3600, expires_at=rfc3339(exp_d))
    api.peer(E.pub, [f"{E.tunnel_ip}/32"], ttl=3600, lease=6)
    pd, pe = pinger(D), pinger(E)
    t_e = time.time()
    pd.up()
    pe.up()
    exp_e = t_e + 6
    dd = stopped(net, topo, pd, D.pub, exp_d - 1.0, 12)
    last_d = pd.last() or 0
    if dd is not None:
        print(f"# lease (expires_at): last reply {last_d - exp_d:+.2f} s from the lease's end",
              flush=True)
    ok(dd is not None and exp_d - 1.0 <= last_d <= exp_d + 1.0,
       f"{CHECKS['c'][0]} (last reply {last_d - exp_d:+.2f} s from expires_at)",
       f"{gw_peer(net, topo, D.pub)} {g.stats()}\n{g.log()[-2000:]}")
    de = stopped(net, topo, pe, E.pub, exp_e - 1.5, 8)
    last_e = pe.last() or 0
    ok(de is not None and exp_e - 1.5 <= last_e <= exp_e + 1.5,
       f"{CHECKS['c'][1]} (last reply {last_e - exp_e:+.2f} s from its end)",
       f"{gw_peer(net, topo, E.pub)} {g.stats()}")
    pd.stop()
    pe.stop()
    # across a restart: F's lease ends after it, G's while the daemon is down
    exp_f, exp_g = int(time.time()) + 14, int(time.time()) + 6
    api.peer(F.pub, [f"{F.tunnel_ip}/32"], ttl=3600, expires_at=rfc3339(exp_f))
    api.peer(G.pub, [f"{G.tunnel_ip}/32"], ttl=3600, expires_at=rfc3339(exp_g))
    pf, pg = pinger(F), pinger(G)
    pf.up()
    pg.up()
    g.stop()
    time.sleep(max(0.0, exp_g + 1 - time.time()))
    g = Gw(cfg, stats, topo.gw_ns)
    t_start = time.time()
    gone_g = wait_until(lambda: gw_peer(net, topo, G.pub) is None, 5, 0.05)
    took_g = time.time() - t_start
    ok(gone_g and took_g < 5 and wait_until(lambda: g.stat("store.reconcile_reasserted") >= 1, 2),
       CHECKS["c"][3], f"{gw_peer(net, topo, G.pub)} {g.stats()}\n{g.log()[-2000:]}")
    df = stopped(net, topo, pf, F.pub, exp_f - 1.0, exp_f - time.time() + 6)
    last_f = pf.last() or 0
    ok(df is not None and exp_f - 1.0 <= last_f <= exp_f + 1.0,
       f"{CHECKS['c'][2]} (last reply {last_f - exp_f:+.2f} s from expires_at)",
       f"{gw_peer(net, topo, F.pub)} {g.stats()}\n{g.log()[-2000:]}")
    pf.stop()
    pg.stop()
    g.stop()

    # ---------------------------------------------------- (d) max_stale
    TTL, REVAL, STALE = 2, 1, 4
    db = os.path.join(tmp, "d.db")
    api.peer(H.pub, [f"{H.tunnel_ip}/32"], ttl=TTL)
    cfg, stats = config("stale", pull_stages(db, {"revalidate_interval": f"{REVAL}s",
                                                  "max_stale": f"{STALE}s"}), PULL)
    g = Gw(cfg, stats, topo.gw_ns)
    ph = pinger(H)
    ph.up()
    time.sleep(TTL + REVAL)  # a revalidation or two went through
    with api.lock:
        api.mode = 503  # the control plane is down
        t0 = time.time()
    # the answer expires at most TTL after t0; the peer stays max_stale more
    kept = wait_until(lambda: gw_peer(net, topo, H.pub) is None, STALE - 0.5, 0.05)
    ok(not kept and ph.max_gap(t0) < 1.0, CHECKS["d"][0],
       f"gap {ph.max_gap(t0):.2f}s {g.stats()}\n{g.log()[-2000:]}")
    delay = stopped(net, topo, ph, H.pub, t0, TTL + STALE + REVAL + 5)
    report(f"max_stale, from the API going down (ttl {TTL} s, max_stale {STALE} s, "
           f"revalidate_interval {REVAL} s)", H.pub, t0, delay)
    ok(delay is not None and STALE - 0.5 <= delay <= TTL + STALE + REVAL + 1.0 and
       g.stat("store.unverified") >= 1,
       f"{CHECKS['d'][1]} ({delay if delay is None else round(delay, 2)} s)",
       f"{g.stats()}\n{g.log()[-2000:]}")
    api.mode = None
    ph.stop()
    g.stop()

    # ------------------------------------- (e) live session, gateway restart
    db = os.path.join(tmp, "e.db")
    api.peer(K.pub, [f"{K.tunnel_ip}/32"], ttl=3600)
    cfg, stats = config("live", pull_stages(db, {"revalidate_interval": "500ms"}), PULL)
    g = Gw(cfg, stats, topo.gw_ns)
    pk = pinger(K)
    pk.up()
    saved = wait_until(lambda: g.stat("store.live_saved") >= 1, 5)
    g.stop()
    rows = dbq(db, "SELECT last_handshake, length(last_endpoint) FROM peer WHERE key = ?",
               base64.b64decode(K.pub))
    ok(saved and rows and rows[0][0] and abs(rows[0][0] - time.time()) < 30 and rows[0][1] == 19,
       CHECKS["e"][0], rows)
    net.restart_gateway(topo)  # wireguard-go again, no peer: the client's session is lost there
    t0 = time.time()
    g = Gw(cfg, stats, topo.gw_ns)
    back = wait_until(lambda: [x for x in pk.replies() if x > t0 + 0.2], 10, 0.05)
    took = (back[0] - t0) if back else None
    if took is not None:
        print(f"# live session after a gateway restart: back {took:.2f} s after the daemon "
              "started", flush=True)
    ok(took is not None and took < 5 and g.stat("store.restored_live") >= 1,
       f"{CHECKS['e'][1]} ({took if took is None else round(took, 2)} s)",
       f"{g.stats()}\n{g.log()[-2000:]}")
    pk.stop()
    g.stop()
finally:
    for p in pingers:
        try:
            p.stop()
        except Exception:  # noqa: BLE001
            pass
    for d in daemons:
        d.close()
    api.close()
    net.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
done()
