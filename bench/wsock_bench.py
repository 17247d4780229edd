#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""bench/wsock.sh: time to tunnel and throughput, WebSocket vs UDP."""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "lib"))
import wgnet  # noqa: E402
from tap import BUILD, TEST_PLUGINS, Daemon, wait_until  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
BRIDGE = os.path.join(BUILD, "tools", "wsbridge", "wggwd-wsbridge")
tmp = tempfile.mkdtemp(prefix="wggwd-wsbench-")


def config(topo, name, source, keys):
    """Every round is a new client: a key of its own (the installer would
    rightly call a key it already installed unchanged)."""
    peers = os.path.join(tmp, f"{name}.json")
    c = topo.clients[0]
    with open(peers, "w") as f:
        json.dump([{"public_key": pub, "allowed_ips": [f"{c.tunnel_ip}/32"]} for _, pub in keys], f)
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(f"""
plugin_path: [{TEST_PLUGINS}]
stages:
  src:
{source}
  noise: {{plugin: decoder-noise}}
  static: {{plugin: resolver-static, options: {{peers_file: {peers}}}}}
  wg: {{plugin: installer-uapi, options: {{interface: {topo.gw_if}}}}}
pipelines:
  pull: [src, noise, static, wg]
""")
    return path


def first_ping_ms(ns, addr):
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "8", addr],
                       capture_output=True, text=True)
    for w in p.stdout.split():
        if w.startswith("time="):
            return float(w[5:])
    return None


def fresh(net, topo, c, endpoint, key, old):
    if old:
        net.wg_set(topo.gw_ns, topo.gw_if, "peer", old, "remove")
    net.wg_set(c.ns, c.iface, "peer", topo.gw_pub, "remove")
    net.wg_set(c.ns, c.iface, "peer", topo.gw_pub, "endpoint", endpoint, "allowed-ips", topo.tunnel_net,
               private_key=key)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def iperf(net, topo, c):
    srv = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, "iperf3", "-s", "-1", "-B", topo.gw_tunnel_ip],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    net.track(srv, "iperf3")
    time.sleep(0.5)
    p = subprocess.run(["ip", "netns", "exec", c.ns, "iperf3", "-c", topo.gw_tunnel_ip, "-t", "3", "-J"],
                       capture_output=True, text=True)
    srv.wait(10)
    try:
        return json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
    except (ValueError, KeyError):
        return 0.0


with wgnet.Net("wsb") as net:
    ws = net.gateway_with_clients(1, underlay="10.205.0", tunnel="10.206.0")
    udp = net.gateway_with_clients(1, underlay="10.207.0", tunnel="10.208.0")
    wc, uc = ws.clients[0], udp.clients[0]
    wkeys = [wgnet.genkey() for _ in range(ROUNDS)]
    ukeys = [wgnet.genkey() for _ in range(ROUNDS)]
    net.run(wc.ns, "nft", "-f", "-", input=f"""
table inet wsblock {{
  chain out {{
    type filter hook output priority 0; policy accept;
    ip daddr {ws.gw_addr} udp dport {ws.gw_port} drop
  }}
}}
""")
    d1 = Daemon(config(ws, "ws", f"""    plugin: source-wsock
    options: {{listen: "{ws.gw_addr}:8080", wireguard: "127.0.0.1:{ws.gw_port}"}}""", wkeys), netns=ws.gw_ns)
    d2 = Daemon(config(udp, "udp", f"""    plugin: source-bpf
    options: {{interface: {udp.gw_uplink}}}""", ukeys), netns=udp.gw_ns)
    for d in (d1, d2):
        wait_until(lambda: "running" in d.output(), 10)
    br = subprocess.Popen(["ip", "netns", "exec", wc.ns, BRIDGE, "-l", "127.0.0.1:51821",
                           "-u", f"ws://{ws.gw_addr}:8080/wg"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    net.track(br, "wsbridge")
    time.sleep(0.5)
    res = {"wsock": [], "udp": []}
    for i in range(ROUNDS):
        fresh(net, ws, wc, "127.0.0.1:51821", wkeys[i][0], i and wkeys[i - 1][1])
        res["wsock"].append(first_ping_ms(wc.ns, ws.gw_tunnel_ip))
        fresh(net, udp, uc, f"{udp.gw_addr}:{udp.gw_port}", ukeys[i][0], i and ukeys[i - 1][1])
        res["udp"].append(first_ping_ms(uc.ns, udp.gw_tunnel_ip))
    for k in ("wsock", "udp"):
        v = [x for x in res[k] if x is not None]
        if v:
            print(f"{k}_p50_ms {pct(v, 50):.2f} ms")
            print(f"{k}_p99_ms {pct(v, 99):.2f} ms")
        print(f"{k}_failed {len(res[k]) - len(v)} count")
    wm = iperf(net, ws, wc)
    um = iperf(net, udp, uc)
    print(f"wsock_mbps {wm:.1f} Mbit/s")
    print(f"udp_mbps {um:.1f} Mbit/s")
    print(f"wsock_vs_udp_ratio {wm / um if um else 0:.3f} ratio")
    for d in (d1, d2):
        d.stop()
        d.close()
