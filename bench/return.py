#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""bench/run return: how long a client evicted with a live session takes to
get its tunnel back, with source-bpf watching returning clients and
without.

A wireguard-go gateway with max_peers 1 and two clients. Each round, client
A pings, goes quiet, client B arrives and A is evicted over the budget while
its session is live (last handshake well under 180 s). Then A pings every
10 ms: its first echo request goes out on the old session, which the
gateway no longer has. The return time is from starting that ping to its
first reply (10 ms steps: the first request is lost either way); the
handshake time is from starting it to A's new handshake (as A's
wireguard-go records it, in ns). Both include starting ping in A's
namespace (a few ms): upper bounds.
Prints `name value unit` lines."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import wgnet  # noqa: E402

BUILD = os.environ.get("WGGWD_BUILD", os.path.join(ROOT, "build"))
N = int(os.environ.get("RETURN_N", "30"))
N_NOWATCH = int(os.environ.get("RETURN_N_NOWATCH", "3"))
STEP = 0.01  # the returning client's ping cadence
tmp = tempfile.mkdtemp(prefix="wggwd-bench-return-")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def start_daemon(topo, name, watch):
    peers = os.path.join(tmp, f"{name}.json")
    with open(peers, "w") as f:
        json.dump([{"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]} for c in topo.clients], f)
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
log_level: warn
stages:
  sniff: {{plugin: source-bpf, options: {{interface: {topo.gw_uplink}, watch_returning: {str(watch).lower()}}}}}
  noise: {{plugin: decoder-noise}}
  static: {{plugin: resolver-static, options: {{peers_file: {peers}}}}}
  wg: {{plugin: installer-uapi, options: {{interface: {topo.gw_if}}}}}
  idle: {{plugin: evictor-idle, options: {{interval: 100ms, idle: 1h, grace: 300ms, max_peers: 1}}}}
pipelines:
  pull: [sniff, noise, static, wg, idle]
""")
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    d = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, f"{BUILD}/wggwd", "run", "-c", cfg],
                         stdout=log, stderr=log)
    time.sleep(0.3)  # start-up: a benchmark, not a test
    return d


def handshake_ns(iface):
    """The latest handshake of a wireguard-go interface's (only) peer, ns."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(f"/var/run/wireguard/{iface}.sock")
    s.sendall(b"get=1\n\n")
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    kv = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
    return int(kv.get("last_handshake_time_sec", 0)) * 10**9 + int(kv.get("last_handshake_time_nsec", 0))


def ping(ns, addr, interval):
    return subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-n", "-D", "-i", str(interval), addr],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def stop(p):
    p.send_signal(signal.SIGINT)  # ping prints what it buffered
    try:
        return p.communicate(5)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()[0]


def first_reply(out):
    """(seq, receive time s, rtt ms) of the first reply in `ping -D` output."""
    for line in out.splitlines():
        if line.startswith("[") and "icmp_seq=" in line and "time=" in line:
            return (int(line.split("icmp_seq=")[1].split()[0]), float(line[1:line.index("]")]),
                    float(line.split("time=")[1].split()[0]))
    return None


def one_round(net, topo, timeout):
    """Evict A with a live session, then time its return: (return ms,
    handshake ms) or None."""
    a, b = topo.clients
    gw = topo.gw_tunnel_ip
    peers = lambda: net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"]  # noqa: E731
    pa = ping(a.ns, gw, 0.05)
    if not wgnet.wait_until(lambda: a.pub in peers(), 20, 0.02):
        stop(pa)
        return None
    time.sleep(0.5)  # a few sweeps see A's traffic
    stop(pa)
    time.sleep(0.25)
    pb = ping(b.ns, gw, 0.05)
    gone = wgnet.wait_until(lambda: a.pub not in peers(), 20, 0.01)
    stop(pb)
    if not gone:
        return None
    hs0 = handshake_ns(a.iface)
    sent = time.time()  # the first request leaves a little later: conservative
    pa = ping(a.ns, gw, STEP)
    wgnet.wait_until(lambda: handshake_ns(a.iface) != hs0, timeout, 0.005)
    time.sleep(0.1)
    r = first_reply(stop(pa))
    if not r:
        return None
    ts = r[1]
    hs = handshake_ns(a.iface)
    return (ts - sent) * 1000, (hs / 1e9 - sent) * 1000 if hs != hs0 else None


def run(watch, n, tag):
    res = []
    with wgnet.Net("br") as net:
        topo = net.gateway_with_clients(2, underlay=f"10.{tag}.0", tunnel=f"10.{tag + 1}.0")
        d = start_daemon(topo, "watch" if watch else "nowatch", watch)
        for _ in range(n):
            r = one_round(net, topo, 5 if watch else 25)
            if r:
                res.append(r)
        d.terminate()
        d.wait()
    return res


def main():
    why = wgnet.missing()
    if why:
        sys.exit(f"bench return: {why}")
    w = run(True, N, 161)
    nw = run(False, N_NOWATCH, 163)
    ret = [r for r, _ in w]
    hs = [h for _, h in w if h is not None]
    print(f"return_evictions {len(ret)} evictions")
    if ret:
        print(f"return_p50_ms {pct(ret, 50):.1f} ms")
        print(f"return_p99_ms {pct(ret, 99):.1f} ms")
        print(f"return_max_ms {max(ret):.1f} ms")
    if hs:
        print(f"return_handshake_p50_ms {pct(hs, 50):.1f} ms")
        print(f"return_handshake_max_ms {max(hs):.1f} ms")
    r = [x for x, _ in nw]
    print(f"nowatch_evictions {len(r)} evictions")
    if r:
        print(f"nowatch_return_p50_ms {pct(r, 50):.0f} ms")
        print(f"nowatch_return_max_ms {max(r):.0f} ms")


if __name__ == "__main__":
    main()
