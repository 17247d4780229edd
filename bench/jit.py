#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""bench/run jit: time to a working tunnel for fresh clients of a
wireguard-go gateway, per completion mode, side by side in one run.

Each client pings the gateway's tunnel address once: the first echo waits
for the handshake, so its round-trip time is the client's time from its
first initiation to a working tunnel. Prints `name value unit` lines."""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import wgnet  # noqa: E402

BUILD = os.environ.get("WGGWD_BUILD", os.path.join(ROOT, "build"))
N = int(os.environ.get("JIT_N", "50"))
N_NONE = int(os.environ.get("JIT_N_NONE", "6"))
tmp = tempfile.mkdtemp(prefix="wggwd-bench-jit-")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def start_daemon(net, topo, mode, name):
    peers = os.path.join(tmp, f"{name}.json")
    with open(peers, "w") as f:
        json.dump([{"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]} for c in topo.clients], f)
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
log_level: warn
stages:
  sniff: {{plugin: source-bpf, options: {{interface: {topo.gw_uplink}}}}}
  noise: {{plugin: decoder-noise}}
  static: {{plugin: resolver-static, options: {{peers_file: {peers}}}}}
  wg: {{plugin: installer-uapi, options: {{interface: {topo.gw_if}, completion: {mode}}}}}
pipelines:
  pull: [sniff, noise, static, wg]
""")
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    d = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, f"{BUILD}/wggwd", "run", "-c", cfg],
                         stdout=log, stderr=log)
    time.sleep(0.3)  # start-up: a benchmark, not a test
    return d


def first_ping_ms(ns, addr, timeout=15):
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", str(timeout), addr],
                       capture_output=True, text=True)
    for w in p.stdout.split():
        if w.startswith("time="):
            return float(w[5:])
    return float(timeout * 1000)  # no reply: counted as the whole timeout


def sequential(net, mode, n, tag):
    topo = net.gateway_with_clients(n, underlay=f"10.{tag}.0", tunnel=f"10.{tag + 1}.0")
    d = start_daemon(net, topo, mode, f"seq-{mode}")
    times = [first_ping_ms(c.ns, topo.gw_tunnel_ip) for c in topo.clients]
    d.terminate()
    d.wait()
    return times


def burst(net, mode, n, tag):
    topo = net.gateway_with_clients(n, underlay=f"10.{tag}.0", tunnel=f"10.{tag + 1}.0")
    d = start_daemon(net, topo, mode, f"burst-{mode}")
    t0 = time.monotonic()
    ps = [subprocess.Popen(["ip", "netns", "exec", c.ns, "ping", "-n", "-c", "1", "-W", "15",
                            topo.gw_tunnel_ip], stdout=subprocess.DEVNULL) for c in topo.clients]
    up = sum(1 for p in ps if p.wait() == 0)
    elapsed = (time.monotonic() - t0) * 1000
    d.terminate()
    d.wait()
    return elapsed, up


def main():
    why = wgnet.missing()
    if why:
        sys.exit(f"bench jit: {why}")
    res = {}
    with wgnet.Net("bj") as net:
        res["reinject"] = sequential(net, "reinject", N, 150)
        net.cleanup()
    with wgnet.Net("bj") as net:
        res["inversion"] = sequential(net, "inversion", N, 152)
        net.cleanup()
    with wgnet.Net("bj") as net:
        res["none"] = sequential(net, "none", N_NONE, 154)
        net.cleanup()
    with wgnet.Net("bj") as net:
        burst_ms, burst_up = burst(net, "reinject", 50, 156)
    d = res["reinject"]
    print(f"jit_clients {len(d)} clients")
    print(f"jit_p50_ms {pct(d, 50):.2f} ms")
    print(f"jit_p99_ms {pct(d, 99):.2f} ms")
    print(f"jit_max_ms {max(d):.2f} ms")
    i = res["inversion"]
    print(f"inversion_p50_ms {pct(i, 50):.2f} ms")
    print(f"inversion_p99_ms {pct(i, 99):.2f} ms")
    print(f"inversion_max_ms {max(i):.2f} ms")
    print(f"inversion_stalls_over_1s {sum(1 for x in i if x > 1000)} clients")
    print(f"reinject_stalls_over_1s {sum(1 for x in d if x > 1000)} clients")
    nn = res["none"]
    print(f"noinv_p50_ms {pct(nn, 50):.1f} ms")
    print(f"noinv_max_ms {max(nn):.1f} ms")
    print(f"noinv_vs_jit_p50_ratio {pct(nn, 50) / pct(d, 50):.0f} x")
    print(f"burst50_all_up_ms {burst_ms:.1f} ms")
    print(f"burst50_up {burst_up} clients")


if __name__ == "__main__":
    main()
