#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""bench/run flood: legitimate clients' time to tunnel while anyone who
knows the gateway's public key floods it with fresh-key initiations
(issue 14).

A wireguard-go gateway (namespaces, tests/lib/wgnet.py) with wggwd on its
uplink: source-bpf -> decoder-noise -> store-sqlite -> resolver-http (a
local control plane, batched lookups) -> installer-uapi. A flooder
namespace sends, evenly paced (bench/flood_gen.c, minted before), fresh-key
authenticated initiations from SOURCES addresses plus garbage (148-byte
type-1 packets with a wrong mac1) for FLOOD_S seconds. Meanwhile known
clients knock one after another (every KNOCK_GAP s, each with its own
8 s limit):
  returning: got a tunnel before the flood and are still installed; their
             client restarted (its peer reset), so it initiates afresh:
             WireGuard itself must answer, and under load it answers with
             a cookie (the client's retry is 5 s away);
  new:       never seen, known to the control plane (a lookup), or, with
             lazy push, pushed to the store before the flood.
Time to tunnel: from the client's first echo request to the first reply,
pinging every 10 ms (bench: time_to_tunnel); past 8 s the client did not
get in.

Modes, side by side at each rate:
  reinject: completion reinject, invert_above 0, cookie_watch false (the
            default before)
  adaptive: completion reinject, invert_above and cookie_watch
            (source-bpf's defaults): the gateway initiates while the
            initiation rate is high, and installs afresh a client the
            interface answered with a cookie (a returning one included)
  lazy:     adaptive, and push: [nats, store] + pull: [sniff, noise,
            store, wg]: the store answers alone (0 API requests)
(A build whose source-bpf has no cookie_watch runs without it; with
FLOOD_COOKIE_WATCH=0 every mode runs without it: the same bench measures
before and after.)

Prints a table and `name value unit` lines. Environment: FLOOD_RATES
(valid initiations/s, comma-separated; default 2000,5000,8000),
FLOOD_GARBAGE (garbage per valid one; 3), FLOOD_S (30), FLOOD_SOURCES
(300), FLOOD_MODES (reinject,adaptive,lazy), FLOOD_CLIENTS (returning,new;
4,4), KNOCK_GAP (1.5), FLOOD_COOKIE_WATCH (1; 0: off in every mode),
WGGWD_BUILD.
"""
import base64
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import wgnet  # noqa: E402

BUILD = os.environ.get("WGGWD_BUILD", os.path.join(ROOT, "build"))
API_RATE, API_BURST = 50, 100          # resolver-http's budget for fresh keys
RET_RATE, RET_BURST = 50, 100          # ... and for returning ones
TIMEOUT = 8                            # a client not in by then: locked out
GW_ADDR, FLOOD_ADDR = "10.201.0.1", "10.201.0.250"


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else None


def setns(name):
    """Move this (still single-threaded) process into netns `name`: the
    control plane and nats-server then share the daemon's loopback."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000):  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def build_gen(tmp):
    out = os.path.join(tmp, "flood-gen")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libsodium", "libb2"],
                           capture_output=True, text=True, check=True).stdout.split()
    subprocess.run([os.environ.get("CC", "cc"), "-std=gnu11", "-O2", "-pthread",
                    os.path.join(ROOT, "bench", "flood_gen.c"), *flags, "-o", out], check=True)
    return out


def time_to_tunnel(ns, addr):
    """ms from a client's first echo request to the first reply, pinging
    every 10 ms (the first packets may be lost while the session is set
    up): (seq - 1) * 10 ms + that reply's round trip. None: not in within
    TIMEOUT s."""
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-i", "0.01",
                        "-w", str(TIMEOUT), addr], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if "icmp_seq=" in line and "time=" in line:
            seq = int(line.split("icmp_seq=")[1].split()[0])
            return (seq - 1) * 10 + float(line.split("time=")[1].split()[0])
    return None


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Bed:
    """The namespaces, the gateway, the clients, the flooder, the control
    plane (and nats-server for lazy push): made once, reset per run."""

    def __init__(self, net, n_ret, n_new, tmp, lazy=False, tag=205):
        self.net, self.tmp = net, tmp
        self.topo = net.gateway_with_clients(n_ret + n_new, underlay="10.201.0",
                                             tunnel="10.90.0")
        t = self.topo
        self.ret, self.new = t.clients[:n_ret], t.clients[n_ret:]
        self.fl_ns = net.netns()
        fl, gwside = None, None
        gwside, fl = net.veth(t.gw_ns, self.fl_ns, None, f"{FLOOD_ADDR}/24")
        wgnet.sh("ip", "-n", t.gw_ns, "link", "set", gwside, "master", t.gw_uplink)
        wgnet.sh("ip", "-n", t.gw_ns, "route", "add", "10.250.0.0/16", "via", FLOOD_ADDR)
        setns(t.gw_ns)
        import http_api
        self.api = http_api.Api()
        for c in t.clients:
            self.api.peer(c.pub, [f"{c.tunnel_ip}/32"])
        self.nats = None
        if lazy:
            import natsd
            self.natsd = natsd
            self.nats = natsd.Server()
            self.ncl = natsd.Client(self.nats.port)
            self.ncl.js_api("STREAM.CREATE.PEERS", {"name": "PEERS", "subjects": ["wggwd.peers.>"]})
        self.runs = 0

    def reset_gateway(self):
        """A fresh gateway interface: no peers, nothing remembered."""
        t, net = self.topo, self.net
        net.stop_wireguard_go(t.gw_if)
        net.wireguard_go(t.gw_ns, t.gw_if, log_level="error")
        net.wg_set(t.gw_ns, t.gw_if, private_key=t.gw_priv, listen_port=t.gw_port)
        net.addr(t.gw_ns, t.gw_if, f"{t.gw_tunnel_ip}/24")
        net.up(t.gw_ns, t.gw_if)

    def reset_client(self, c):
        """The client forgets its session: its next packet initiates."""
        t = self.topo
        self.net.run(c.ns, "wg", "set", c.iface, "peer", t.gw_pub, "remove")
        self.net.run(c.ns, "wg", "set", c.iface, "peer", t.gw_pub, "endpoint",
                     f"{t.gw_addr}:{t.gw_port}", "allowed-ips", t.tunnel_net)

    def knock(self, c):
        self.reset_client(c)
        return time_to_tunnel(c.ns, self.topo.gw_tunnel_ip)

    def config(self, mode, db, stats):
        t = self.topo
        adaptive = mode != "reinject"
        ck = ", cookie_watch: false" if has_cookie_watch() else ""
        on = "" if os.environ.get("FLOOD_COOKIE_WATCH", "1") != "0" else ck
        sniff = f"{{interface: {t.gw_uplink}{on if adaptive else ', invert_above: 0' + ck}}}"
        http = (f"{{plugin: resolver-http, options: {{url: '{self.api.url()}', "
                f"allowed_prefixes: [10.90.0.0/16], rate: {API_RATE}, burst: {API_BURST}, "
                f"returning_rate: {RET_RATE}, returning_burst: {RET_BURST}, batch: true}}}}")
        stages = f"""
  sniff: {{plugin: source-bpf, options: {sniff}}}
  noise: {{plugin: decoder-noise}}
  store: {{plugin: store-sqlite, options: {{path: {db}}}}}
  http: {http}
  wg: {{plugin: installer-uapi, options: {{interface: {t.gw_if}, allowed_prefixes: [10.90.0.0/16]}}}}"""
        pipes = "\n  pull: [sniff, noise, store, http, wg]"
        if mode == "lazy":
            stages += f"""
  nats: {{plugin: source-nats, options: {{servers: ['{self.nats.url}'], subject: wggwd.peers.r{self.runs}, durable: r{self.runs}, allowed_prefixes: [10.90.0.0/16]}}}}"""
            pipes = "\n  push: [nats, store]\n  pull: [sniff, noise, store, wg]"
        return f"""log_level: info
stats_file: {stats}
stats_interval: 200ms
stages:{stages}
pipelines:{pipes}
"""

    def start(self, mode, name):
        """A fresh gateway and a daemon on it (lazy: with every client
        pushed to its store). Returns (Popen, stats(), log path, ready)."""
        self.runs += 1
        t, tmp = self.topo, self.tmp
        self.reset_gateway()
        db, stats = os.path.join(tmp, f"{name}.db"), os.path.join(tmp, f"{name}.json")
        cfg = os.path.join(tmp, f"{name}.yaml")
        with open(cfg, "w") as f:
            f.write(self.config(mode, db, stats))
        self.subject = f"wggwd.peers.r{self.runs}"
        if mode == "lazy":
            for c in t.clients:
                self.ncl.js_publish(self.subject, {"op": "add", "public_key": c.pub,
                                                   "allowed_ips": [f"{c.tunnel_ip}/32"]})
        logp = os.path.join(tmp, f"{name}.log")
        log = open(logp, "w")
        d = subprocess.Popen(["ip", "netns", "exec", t.gw_ns, f"{BUILD}/wggwd", "run", "-c", cfg],
                             stdout=log, stderr=log)
        log.close()
        st = lambda: wgnet_stats(stats)  # noqa: E731
        ready = wgnet.wait_until(lambda: st().get("sniff.received") is not None and (
            mode != "lazy" or st().get("store.saved", 0) >= len(t.clients)), 10, 0.05)
        return d, st, logp, bool(ready)

    def run(self, gen, mode, rate, garbage, secs, sources, gap):
        t = self.topo
        name = f"{mode}-{rate}"
        d, st, logp, ready = self.start(mode, name)
        # returning clients: in before the flood
        warm = [self.knock(c) for c in self.ret]
        # the flood: minted first, then paced
        g = subprocess.Popen(["ip", "netns", "exec", self.fl_ns, gen, t.gw_pub, GW_ADDR,
                              str(t.gw_port), str(rate), str(rate * garbage), str(secs),
                              str(sources)], stdout=subprocess.PIPE, text=True)
        for line in g.stdout:
            if line.startswith("flooding"):
                break
        t0 = time.monotonic()
        rss0 = rss_kib(d.pid)
        api0 = self.api.count()
        s0 = st()
        peak = [rss0 or 0]
        stop = threading.Event()

        def sample():
            while not stop.wait(0.5):
                r = rss_kib(d.pid)
                if r:
                    peak[0] = max(peak[0], r)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        time.sleep(3)  # the interface is under load by now, if it will be
        order = [("returning", c) for c in self.ret] + [("new", c) for c in self.new]
        order = [x for pair in zip(order[:len(self.ret)], order[len(self.ret):]) for x in pair] + \
            order[2 * min(len(self.ret), len(self.new)):]
        res, threads = [], []
        for kind, c in order:
            def one(kind=kind, c=c):
                res.append((kind, self.knock(c)))
            th2 = threading.Thread(target=one)
            th2.start()
            threads.append(th2)
            time.sleep(gap)
        for th2 in threads:
            th2.join()
        knocks_done = time.monotonic() - t0
        out = g.communicate()[0]
        flood_s = time.monotonic() - t0
        api = self.api.count() - api0
        s1 = st()
        stop.set()
        th.join()
        d.terminate()
        rc = d.wait(15)
        try:
            sent = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            sent = {}
        dec = s1.get("noise.decoded", 0) - s0.get("noise.decoded", 0)
        return {
            "mode": mode, "rate": rate, "garbage": rate * garbage, "sources": sources,
            "ready": ready, "warm": warm, "knocks_s": knocks_done, "rc": rc,
            "ret": [ms for k, ms in res if k == "returning"],
            "new": [ms for k, ms in res if k == "new"],
            "api": api, "budget": API_BURST + API_RATE * flood_s + RET_BURST + RET_RATE * flood_s,
            "decoded": dec / flood_s, "sent": sent,
            "kernel_drops": s1.get("sniff.kernel_drops", 0) - s0.get("sniff.kernel_drops", 0),
            "inverted": s1.get("sniff.inverted_under_load", 0),
            "rearmed": s1.get("wg.rearmed", 0),
            "stall_retries": s1.get("wg.stall_retries", 0),
            "cookie_replies": s1.get("sniff.cookie_replies", 0),
            "cookie_reinstalls": s1.get("sniff.cookie_reinstalls", 0),
            "refused_afresh": s1.get("wg.refused_afresh", 0),
            "overloaded": s1.get("noise.drop_overloaded", 0),
            "rss_growth_mib": ((peak[0] - rss0) / 1024) if rss0 else None,
            "log": logp,
        }

    def close(self):
        self.api.close()
        if self.nats:
            self.ncl.close()
            self.nats.stop()


def has_cookie_watch():
    """Does this build's source-bpf have the cookie watch?"""
    if not hasattr(has_cookie_watch, "v"):
        p = subprocess.run([f"{BUILD}/wggwd", "plugins", "source-bpf"], capture_output=True,
                           text=True)
        has_cookie_watch.v = "cookie_watch" in p.stdout
    return has_cookie_watch.v


def wgnet_stats(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def summary(r):
    """times of those that got in, and how many did not"""
    def part(v):
        ok = [x for x in v if x is not None]
        return ok, len(v) - len(ok)
    return part(r["ret"]), part(r["new"])


def fmt(x, unit=""):
    return "-" if x is None else f"{x:.1f}{unit}"


def table(results):
    print(f"{'mode':9} {'rate/s':>7} {'garb/s':>7} | {'ret p50':>8} {'p99':>8} {'max':>8} {'out':>3} |"
          f" {'new p50':>8} {'p99':>8} {'max':>8} {'out':>3} | {'api':>4} {'budget':>6} |"
          f" {'dec/s':>6} {'kdrop':>5} {'rss+MiB':>7} {'inv':>6}")
    for r in results:
        (ro, rn), (no, nn) = summary(r)
        print(f"{r['mode']:9} {r['rate']:7d} {r['garbage']:7d} | {fmt(pct(ro, 50)):>8} "
              f"{fmt(pct(ro, 99)):>8} {fmt(max(ro) if ro else None):>8} {rn:3d} | "
              f"{fmt(pct(no, 50)):>8} {fmt(pct(no, 99)):>8} {fmt(max(no) if no else None):>8} "
              f"{nn:3d} | {r['api']:4d} {r['budget']:6.0f} | {r['decoded']:6.0f} "
              f"{r['kernel_drops']:5d} {fmt(r['rss_growth_mib']):>7} {r['inverted']:6d}")


def lines(results):
    for r in results:
        p = f"flood_{r['mode']}_{r['rate']}"
        (ro, rn), (no, nn) = summary(r)
        for kind, ok, out in (("returning", ro, rn), ("new", no, nn)):
            if ok:
                print(f"{p}_{kind}_p50_ms {pct(ok, 50):.1f} ms")
                print(f"{p}_{kind}_p99_ms {pct(ok, 99):.1f} ms")
                print(f"{p}_{kind}_max_ms {max(ok):.1f} ms")
            print(f"{p}_{kind}_locked_out {out} clients")
        print(f"{p}_api_requests {r['api']} requests")
        print(f"{p}_api_budget {r['budget']:.0f} requests")
        print(f"{p}_decode_rate {r['decoded']:.0f} /s")
        print(f"{p}_kernel_drops {r['kernel_drops']} packets")
        if r["rss_growth_mib"] is not None:
            print(f"{p}_rss_growth {r['rss_growth_mib']:.1f} MiB")
        print(f"{p}_inverted_under_load {r['inverted']} items")
        print(f"{p}_rearmed {r['rearmed']} items")
        print(f"{p}_stall_retries {r['stall_retries']} installs")
        print(f"{p}_cookie_replies {r['cookie_replies']} packets")
        print(f"{p}_cookie_reinstalls {r['cookie_reinstalls']} items")
        print(f"{p}_refused_afresh {r['refused_afresh']} installs")
        print(f"{p}_decoder_overloaded {r['overloaded']} items")


def main():
    why = wgnet.missing()
    if why:
        sys.exit(f"bench flood: {why}")
    rates = [int(x) for x in os.environ.get("FLOOD_RATES", "2000,5000,8000").split(",")]
    garbage = float(os.environ.get("FLOOD_GARBAGE", "3"))
    secs = float(os.environ.get("FLOOD_S", "30"))
    sources = int(os.environ.get("FLOOD_SOURCES", "300"))
    modes = os.environ.get("FLOOD_MODES", "reinject,adaptive,lazy").split(",")
    n_ret, n_new = (int(x) for x in os.environ.get("FLOOD_CLIENTS", "4,4").split(","))
    gap = float(os.environ.get("KNOCK_GAP", "1.5"))
    tmp = tempfile.mkdtemp(prefix="wggwd-bench-flood-")
    gen = build_gen(tmp)
    results = []
    with wgnet.Net("fl") as net:
        bed = Bed(net, n_ret, n_new, tmp, lazy="lazy" in modes)
        try:
            for rate in rates:
                for mode in modes:
                    r = bed.run(gen, mode, rate, int(garbage), secs, sources, gap)
                    results.append(r)
                    table([r])
                    sys.stdout.flush()
        finally:
            bed.close()
    print()
    table(results)
    lines(results)
    if not os.environ.get("FLOOD_KEEP"):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"# logs in {tmp}")


if __name__ == "__main__":
    main()
