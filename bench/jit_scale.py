#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""bench/run jit (after bench/jit.py): JIT at scale. Fresh clients knock
one after another on a wireguard-go gateway with evictor-idle sweeping,
first with an empty interface, then with 50,000 peers pre-loaded
(`wg addconf`), in one run: does a knocking client wait on housekeeping?

A client is made fresh for each knock by a new private key (its
wireguard-go drops its sessions), all keys known to resolver-static, so a
few client namespaces give many first handshakes. Each knock's time is the
round trip of the client's first ping (it waits for the handshake).
Phases: empty interface with the evictor at interval 1s; 50k peers with
interval 1s; 50k peers with the default interval. Each phase starts after
the daemon's start-up housekeeping: its first sweep (`interval` after
start, before the sweep's cost is known) and, after one warm-up knock, the
first dump that looks for its handshake (the core's, likewise): one-offs
per start, the steady state is what is measured. Prints `name value unit`
lines. JIT_SCALE_PEERS, JIT_SCALE_CLIENTS, JIT_SCALE_ROUNDS change the size."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import wgnet  # noqa: E402
from tap import read_stats  # noqa: E402

BUILD = os.environ.get("WGGWD_BUILD", os.path.join(ROOT, "build"))
PEERS = int(os.environ.get("JIT_SCALE_PEERS", "50000"))
CLIENTS = int(os.environ.get("JIT_SCALE_CLIENTS", "25"))
ROUNDS = int(os.environ.get("JIT_SCALE_ROUNDS", "8"))
tmp = tempfile.mkdtemp(prefix="wggwd-bench-jitscale-")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def keypair():
    priv = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
    pub = subprocess.run(["wg", "pubkey"], input=priv, capture_output=True, text=True,
                         check=True).stdout.strip()
    return priv, pub


def bulk_conf(n):
    """n peers with random keys and one /32 each in 10.64.0.0/10."""
    path = os.path.join(tmp, "bulk.conf")
    with open(path, "w") as f:
        for i in range(n):
            k = base64.b64encode(os.urandom(32)).decode()
            f.write(f"[Peer]\nPublicKey = {k}\nAllowedIPs = 10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32\n")
    return path


def start_daemon(topo, keys, name, interval):
    peers = os.path.join(tmp, f"{name}.json")
    with open(peers, "w") as f:
        json.dump([{"public_key": pub, "allowed_ips": [f"{c.tunnel_ip}/32"]}
                   for c, ks in zip(topo.clients, keys) for _, pub in ks], f)
    stats = os.path.join(tmp, f"{name}.stats.json")
    ev = f"{{interval: {interval}}}" if interval else "{}"
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
log_level: warn
stats_file: {stats}
stats_interval: 200ms
stages:
  sniff: {{plugin: source-bpf, options: {{interface: {topo.gw_uplink}}}}}
  noise: {{plugin: decoder-noise}}
  static: {{plugin: resolver-static, options: {{peers_file: {peers}}}}}
  wg: {{plugin: installer-uapi, options: {{interface: {topo.gw_if}}}}}
  idle: {{plugin: evictor-idle, options: {ev}}}
pipelines:
  pull: [sniff, noise, static, wg, idle]
""")
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    d = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, f"{BUILD}/wggwd", "run", "-c", cfg],
                         stdout=log, stderr=log)
    # ready: the first sweep is counted (the start read the whole interface)
    wgnet.wait_until(lambda: read_stats(stats).get("idle.sweeps", 0) >= 1 or d.poll() is not None,
                     60, 0.05)
    return d, stats


def phase(net, topo, keys, rnd, name, interval, warm):
    """ROUNDS rounds of every client knocking once with a fresh key, after
    a warm-up knock (client 0, key `warm`)."""
    d, stats = start_daemon(topo, keys, name, interval)
    c = topo.clients[0]
    net.wg_set(c.ns, c.iface, private_key=keys[0][warm][0])
    wgnet.first_ping_ms(c.ns, topo.gw_tunnel_ip, 5)
    wgnet.wait_until(lambda: read_stats(stats).get("wg.dumps", 0) >= 2 or d.poll() is not None,
                     60, 0.05)
    dumps0 = read_stats(stats).get("wg.dumps", 0)
    times = []
    for r in rnd:
        for c, ks in zip(topo.clients, keys):
            net.wg_set(c.ns, c.iface, private_key=ks[r][0])
            times.append(wgnet.first_ping_ms(c.ns, topo.gw_tunnel_ip, 5))
    time.sleep(0.3)  # the stats file's next write
    s = read_stats(stats)
    s["dumps_during_knocks"] = s.get("wg.dumps", 0) - dumps0
    if os.environ.get("JIT_SCALE_VERBOSE"):
        slow = sorted(range(len(times)), key=lambda i: -times[i])[:8]
        print(f"# {name}: slowest knocks (index: ms) "
              + ", ".join(f"{i}: {times[i]:.0f}" for i in sorted(slow)), file=sys.stderr)
        print(f"# {name}: stats {json.dumps({k: v for k, v in s.items() if k.startswith(('wg.', 'idle.'))})}",
              file=sys.stderr)
    d.terminate()
    d.wait()
    return times, s


def main():
    why = wgnet.missing()
    if why:
        sys.exit(f"bench jit_scale: {why}")
    nrounds = 3 * ROUNDS
    with wgnet.Net("bs") as net:
        topo = net.gateway_with_clients(CLIENTS, underlay="10.160.0", tunnel="10.161.0")
        keys = [[keypair() for _ in range(nrounds + (3 if i == 0 else 0))]
                for i in range(len(topo.clients))]
        conf = bulk_conf(PEERS)
        empty, _ = phase(net, topo, keys, range(0, ROUNDS), "empty", "1s", nrounds)
        t0 = time.monotonic()
        net.run(topo.gw_ns, "wg", "addconf", topo.gw_if, conf)
        load_s = time.monotonic() - t0
        t0 = time.monotonic()
        net.run(topo.gw_ns, "wg", "show", topo.gw_if, "dump")
        wg_dump_ms = (time.monotonic() - t0) * 1000
        big, s1 = phase(net, topo, keys, range(ROUNDS, 2 * ROUNDS), "big", "1s", nrounds + 1)
        dflt, s2 = phase(net, topo, keys, range(2 * ROUNDS, 3 * ROUNDS), "big-default", None,
                         nrounds + 2)
    n = PEERS // 1000
    print(f"jit_scale_knocks {len(empty)} per phase")
    print(f"jit_p50_ms_empty {pct(empty, 50):.2f} ms")
    print(f"jit_p99_ms_empty {pct(empty, 99):.2f} ms")
    print(f"jit_max_ms_empty {max(empty):.2f} ms")
    print(f"jit_p50_ms_{n}k_peers {pct(big, 50):.2f} ms")
    print(f"jit_p90_ms_{n}k_peers {pct(big, 90):.2f} ms")
    print(f"jit_p99_ms_{n}k_peers {pct(big, 99):.2f} ms")
    print(f"jit_max_ms_{n}k_peers {max(big):.2f} ms")
    print(f"jit_p99_{n}k_vs_empty {pct(big, 99) / pct(empty, 99):.2f} x")
    print(f"jit_p99_ms_{n}k_peers_default_interval {pct(dflt, 99):.2f} ms")
    print(f"jit_max_ms_{n}k_peers_default_interval {max(dflt):.2f} ms")
    print(f"jit_p99_{n}k_default_vs_empty {pct(dflt, 99) / pct(empty, 99):.2f} x")
    print(f"sweep_ms_{n}k {s1.get('wg.dump_ms', float('nan')):.1f} ms")
    print(f"dumps_during_knocks_{n}k_interval_1s {s1['dumps_during_knocks']} dumps")
    print(f"dumps_during_knocks_{n}k_default_interval {s2['dumps_during_knocks']} dumps")
    print(f"wg_show_dump_ms_{n}k {wg_dump_ms:.1f} ms")
    print(f"addconf_s_{n}k {load_s:.2f} s")
    print(f"sweeps_{n}k_interval_1s {s1.get('idle.sweeps', 0)} sweeps")
    print(f"sweep_interval_ms_{n}k {s1.get('idle.sweep_interval_ms', float('nan'))} ms")
    print(f"dumps_deferred_{n}k {s1.get('wg.dumps_deferred', float('nan'))} dumps")


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
