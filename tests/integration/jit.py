#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""The pull path end to end on wireguard-go: source-bpf -> decoder-noise ->
resolver-static -> installer-uapi -> evictor-idle, in network namespaces;
leases (resolver-static's `lease` and `expires_at`) enforced by the
installer while the client keeps pinging."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import wgnet  # noqa: E402
from tap import TEST_PLUGINS, Daemon, done, ok, read_stats, skip, vectors, wait_until  # noqa: E402

why = wgnet.missing()
if why:
    skip("JIT on wireguard-go", why)
    done()

tmp = tempfile.mkdtemp(prefix="wggwd-jit-")


def config(topo, known, name, completion=None, idle="1h", grace="30s", extra="", fields=None):
    """fields: {public key: {more fields of its entry in the peers file}}"""
    peers = os.path.join(tmp, f"{name}.peers.json")
    with open(peers, "w") as f:
        json.dump([dict({"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]},
                        **(fields or {}).get(c.pub, {})) for c in known], f)
    path = os.path.join(tmp, f"{name}.yaml")
    stats = os.path.join(tmp, f"{name}.stats.json")
    with open(path, "w") as f:
        f.write(f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  sniff:
    plugin: source-bpf
    options:
      interface: {topo.gw_uplink}
  noise:
    plugin: decoder-noise
  static:
    plugin: resolver-static
    options:
      peers_file: {peers}
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}{f"{chr(10)}      completion: {completion}" if completion else ""}
  idle:
    plugin: evictor-idle
    options:
      interval: 200ms
      idle: {idle}
      grace: {grace}
{extra}
pipelines:
  pull: [sniff, noise, static, wg, idle]
""")
    return path, stats


def gw_peers(net, topo):
    return net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"]


    for w in p.stdout.split():
        if w.startswith("time="):
            return float(w[5:])
    return None


with wgnet.Net("jit") as net:
    # ---------------------------------------------------------------- 1
    topo = net.gateway_with_clients(4)
    known, unknown, wrongkey, back = topo.clients
    # a client holding a gateway key that is not the gateway's: bad mac1
    _, bogus = wgnet.genkey()
    net.wg_set(wrongkey.ns, wrongkey.iface, "peer", topo.gw_pub, "remove")
    net.wg_set(wrongkey.ns, wrongkey.iface, "peer", bogus, "endpoint", f"{topo.gw_addr}:{topo.gw_port}",
               "allowed-ips", topo.tunnel_net)
    # idle 2s: a peer whose session is live (handshake under 180 s old) is
    # evicted only with evict_live (the rule itself: tests/integration/evictor.py)
    cfg, stats = config(topo, [known, wrongkey, back], "a", idle="2s", grace="1s",
                        extra="      evict_live: true")
    d = Daemon(cfg, netns=topo.gw_ns)
    ok(wait_until(lambda: "running" in d.output() or not d.alive(), 10) and d.alive(),
       "daemon runs on the gateway", d.output())

    ms = wgnet.first_ping_ms(known.ns, topo.gw_tunnel_ip)
    ok(ms is not None and ms < 1000,
       f"known key: tunnel up at the first ping ({ms} ms), no 5 s client retry",
       d.output())
    peers = gw_peers(net, topo)
    p = peers.get(known.pub)
    ok(p and p.get("endpoint") == known.endpoint and p.get("allowed_ips") == [f"{known.tunnel_ip}/32"],
       "installed with the sniffed endpoint and its allowed IPs", peers)
    ok(read_stats(stats).get("sniff.reinjected", 0) >= 1 or
       wait_until(lambda: read_stats(stats).get("sniff.reinjected", 0) >= 1, 3),
       "completed by re-sending the held initiation (the default, completion=reinject)",
       read_stats(stats))

    ok(wgnet.first_ping_ms(unknown.ns, topo.gw_tunnel_ip, 2) is None, "unknown key: no tunnel")
    ok(wait_until(lambda: read_stats(stats).get("pipeline.pull.drop.unknown_key", 0) >= 1, 3)
       and unknown.pub not in gw_peers(net, topo),
       "unknown key: not installed, counted as pipeline.pull.drop.unknown_key", read_stats(stats))

    ok(wgnet.first_ping_ms(wrongkey.ns, topo.gw_tunnel_ip, 2) is None, "client with a wrong gateway key: no tunnel")
    ok(wait_until(lambda: read_stats(stats).get("noise.drop_mac1", 0) >= 1, 3)
       and wrongkey.pub not in gw_peers(net, topo),
       "wrong gateway key: dropped at mac1 and counted (noise.drop_mac1)", read_stats(stats))

    # ---------------------------------------------------------------- eviction
    ok(wgnet.first_ping_ms(back.ns, topo.gw_tunnel_ip) is not None, "second known client up")
    ok(wait_until(lambda: back.pub not in gw_peers(net, topo), 15, 0.1),
       "idle client evicted (no handshake, no traffic for `idle`)", d.output())
    s = read_stats(stats)
    ok(s.get("idle.evicted_idle", 0) >= 1, "eviction counted (idle.evicted_idle)", s)
    # the client reconnects: a fresh session on its side
    net.wg_set(back.ns, back.iface, "peer", topo.gw_pub, "remove")
    net.wg_set(back.ns, back.iface, "peer", topo.gw_pub, "endpoint", f"{topo.gw_addr}:{topo.gw_port}",
               "allowed-ips", topo.tunnel_net)
    ms = wgnet.first_ping_ms(back.ns, topo.gw_tunnel_ip)
    ok(ms is not None and back.pub in gw_peers(net, topo),
       f"re-connect after eviction: installed again, tunnel up ({ms} ms)", d.output())
    ok(wrongkey.pub not in gw_peers(net, topo) and unknown.pub not in gw_peers(net, topo),
       "the evictor and the installer touched only known clients")

    rc = d.stop()
    ok(rc == 0, f"SIGTERM: exit {rc}", d.output())
    d.close()

    # ---------------------------------------------------------------- 20 at once
    many = net.gateway_with_clients(20, underlay="10.211.0", tunnel="10.212.0")
    cfg, stats = config(many, many.clients, "many")
    d = Daemon(cfg, netns=many.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)
    pings = [subprocess.Popen(["ip", "netns", "exec", c.ns, "ping", "-n", "-c", "1", "-W", "4",
                               many.gw_tunnel_ip], stdout=subprocess.DEVNULL) for c in many.clients]
    codes = [p.wait(15) for p in pings]
    ok(codes.count(0) == 20, f"20 clients at once: {codes.count(0)}/20 tunnels up at the first ping",
       d.output())
    wait_until(lambda: read_stats(stats).get("wg.installed") == 20, 3)
    s = read_stats(stats)
    ok(s.get("wg.installed") == 20, f"one install per client ({s.get('wg.installed')})", s)

    # ---------------------------------------------------------------- a second daemon
    other = net.gateway_with_clients(1, underlay="10.221.0", tunnel="10.222.0")
    cfg2, stats2 = config(other, other.clients, "other")
    d2 = Daemon(cfg2, netns=other.gw_ns)
    wait_until(lambda: "running" in d2.output(), 10)
    ok(wgnet.first_ping_ms(other.clients[0].ns, other.gw_tunnel_ip) is not None,
       "a second daemon on another interface brings up its own client", d2.output())
    wait_until(lambda: read_stats(stats2).get("wg.installed") == 1, 3)
    s1, s2 = read_stats(stats), read_stats(stats2)
    ok(s2.get("wg.installed") == 1 and s1.get("wg.installed") == 20
       and len(gw_peers(net, many)) == 20 and len(gw_peers(net, other)) == 1,
       "the two daemons do not interfere", (s1, s2))
    ok(d2.stop() == 0 and d.stop() == 0, "both exit 0")
    d.close()
    d2.close()

    # ---------------------------------------------------------------- max_peers
    bud = net.gateway_with_clients(3, underlay="10.251.0", tunnel="10.252.0")
    cfg, stats = config(bud, bud.clients, "budget", grace="1s", extra="      max_peers: 2")
    d = Daemon(cfg, netns=bud.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)
    first, second, third = bud.clients
    ok(wgnet.first_ping_ms(first.ns, bud.gw_tunnel_ip) is not None, "budget: first client up")
    ok(wait_until(lambda: first.pub in gw_peers(net, bud), 3), "budget: first client installed")
    for c in (second, third):
        wgnet.first_ping_ms(c.ns, bud.gw_tunnel_ip)
    ok(wait_until(lambda: first.pub not in gw_peers(net, bud), 5)
       and second.pub in gw_peers(net, bud) and third.pub in gw_peers(net, bud),
       "max_peers 2: a third client evicts the least recently active one", gw_peers(net, bud))
    ok(wait_until(lambda: read_stats(stats).get("idle.evicted_over_budget") == 1
                  and read_stats(stats).get("idle.evicted_live") == 1, 3),
       "counted as idle.evicted_over_budget, and as idle.evicted_live (its session was live)",
       read_stats(stats))
    ok(d.stop() == 0, "exit 0")
    d.close()

    # ---------------------------------------------------------------- leases
    lz = net.gateway_with_clients(3, underlay="10.253.0", tunnel="10.254.0")
    pinger, renewed, late = lz.clients
    cfg, stats = config(lz, lz.clients, "lease", fields={
        pinger.pub: {"lease": 4}, renewed.pub: {"lease": 4},
        late.pub: {"expires_at": "2020-01-01T00:00:00Z"}})
    d = Daemon(cfg, netns=lz.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)
    gw = lambda pub: gw_peers(net, lz).get(pub)  # noqa: E731

    # a client that keeps pinging: removed at the end of its lease anyway
    t_up = time.time()
    ok(wgnet.first_ping_ms(pinger.ns, lz.gw_tunnel_ip) is not None and gw(pinger.pub),
       "lease 4 s: the client is installed and its tunnel up", d.output())
    p = subprocess.Popen(["ip", "netns", "exec", pinger.ns, "ping", "-n", "-D", "-i", "0.2", "-W", "1",
                          lz.gw_tunnel_ip], stdout=subprocess.PIPE, text=True)
    expired = wait_until(lambda: read_stats(stats).get("wg.expired", 0) >= 1, 8, 0.05)
    t_exp = time.time()
    time.sleep(3)
    p.terminate()
    replies = [float(line[1:line.index("]")]) for line in p.communicate()[0].splitlines()
               if line.startswith("[") and "bytes from" in line]
    print(f"# lease: removed {t_exp - t_up:.2f} s after the tunnel came up; "
          f"{len(replies)} replies, the last {(replies or [0])[-1] - t_exp:+.2f} s from then")
    ok(expired and 3.5 <= t_exp - t_up < 6.5 and gw(pinger.pub) is None
       and "its lease ended (expires_at" in d.output(),
       "lease 4 s: removed at its end while the client kept pinging (counted as wg.expired)",
       ({k: v for k, v in read_stats(stats).items() if k.startswith("wg.")}, d.output()[-2000:]))
    ok(len(replies) >= 10 and all(t < t_exp + 0.3 for t in replies),
       f"lease 4 s: the pings stop at the lease's end ({len(replies)} answered before, none after)",
       replies[-5:])

    # renewed: the client handshakes again 2 s in (it starts over); the
    # new answer's lease runs from then, and changes nothing else
    t_up = time.time()
    ok(wgnet.first_ping_ms(renewed.ns, lz.gw_tunnel_ip) is not None
       and wait_until(lambda: read_stats(stats).get("wg.installed") == 2, 3), "lease renewal: tunnel up")
    s0 = read_stats(stats)
    time.sleep(max(0, t_up + 2 - time.time()))
    net.wg_set(renewed.ns, renewed.iface, "peer", lz.gw_pub, "remove")
    net.wg_set(renewed.ns, renewed.iface, "peer", lz.gw_pub, "endpoint", f"{lz.gw_addr}:{lz.gw_port}",
               "allowed-ips", lz.tunnel_net)
    t_renew = time.time()
    again = wgnet.first_ping_ms(renewed.ns, lz.gw_tunnel_ip) is not None
    unchanged = wait_until(lambda: read_stats(stats).get("wg.unchanged", 0) > s0.get("wg.unchanged", 0), 3)
    s1 = read_stats(stats)
    wg_stats = lambda s: {k: v for k, v in s.items() if k.startswith("wg.")}  # noqa: E731
    time.sleep(max(0, t_up + 5.3 - time.time()))  # past the first lease (<= 5 s)
    still = gw(renewed.pub) is not None and read_stats(stats).get("wg.expired") == 1
    gone = wait_until(lambda: gw(renewed.pub) is None, 5, 0.05)
    t_gone = time.time()
    ok(again and unchanged and s1.get("wg.installed") == s0.get("wg.installed")
       and s1.get("wg.updated", 0) == s0.get("wg.updated", 0),
       "lease renewal: the new answer is no change to the interface (unchanged, no install)",
       (wg_stats(s0), wg_stats(s1)))
    ok(still and gone and 3.5 <= t_gone - t_renew < 6.5
       and wait_until(lambda: read_stats(stats).get("wg.expired") == 2, 2),
       f"lease renewal: extended past the first lease's end, removed {t_gone - t_renew:.1f} s after the renewal",
       (still, gone, wg_stats(read_stats(stats)), d.output()[-2000:]))

    # an answer whose expires_at has passed: not installed
    ok(wgnet.first_ping_ms(late.ns, lz.gw_tunnel_ip, 2) is None and gw(late.pub) is None
       and wait_until(lambda: read_stats(stats).get("pipeline.pull.drop.expired", 0) >= 1
                      and read_stats(stats).get("wg.expired_refused", 0) >= 1, 3),
       "expires_at in the past: not installed (pipeline.pull.drop.expired, wg.expired_refused)",
       (read_stats(stats), d.output()[-1500:]))
    ok(d.stop() == 0, "exit 0")
    d.close()

    # ---------------------------------------------------------------- completion=inversion
    rt = net.gateway_with_clients(12, underlay="10.231.0", tunnel="10.232.0")
    cfg, stats = config(rt, rt.clients, "inversion", completion="inversion")
    d = Daemon(cfg, netns=rt.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)
    times = [wgnet.first_ping_ms(c.ns, rt.gw_tunnel_ip, 8) for c in rt.clients]
    ok(all(t is not None and t < 2000 for t in times),
       f"completion=inversion: 12 fresh clients one after another, each up in under 2 s"
       f" (slowest {max(t or 9e9 for t in times):.1f} ms): a collision with the client's own"
       " handshake is installed afresh at once instead of waiting for a 5 s retry", d.output())
    wait_until(lambda: "wg.stall_retries" in read_stats(stats), 3)
    print(f"# inversion collisions retried: {read_stats(stats).get('wg.stall_retries')}")
    ok(wait_until(lambda: gw_peers(net, rt).get(rt.clients[0].pub, {}).get("keepalive", -1) == 0, 5),
       "inversion: keepalive restored to the configured value (off) after the handshake",
       gw_peers(net, rt))
    ok(d.stop() == 0, "exit 0")
    d.close()

    # ---------------------------------------------------------------- de-duplication
    # ten initiations from one key while its install is pending: one install
    dd = net.gateway_with_clients(0, underlay="10.241.0", tunnel="10.242.0")
    vec = [v for v in vectors() if v["expected"]["result"] == "ok"][0]
    net.wg_set(dd.gw_ns, dd.gw_if, private_key=vec["responder_private_key_b64"])
    peers = os.path.join(tmp, "dedup.peers.json")
    with open(peers, "w") as f:
        json.dump([{"public_key": vec["initiator_public_key_b64"], "allowed_ips": ["10.242.0.50/32"]}], f)
    cfg = os.path.join(tmp, "dedup.yaml")
    stats = os.path.join(tmp, "dedup.stats.json")
    with open(cfg, "w") as f:
        f.write(f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  hex:
    plugin: source-hex
    options:
      packets: [{vec["packet"]}]
      repeat: 10
      rounds: 2
      interval: 500ms
      src: 10.241.0.99:40000
  # the same captured initiation every time: replay protection off, so
  # that round 2 reaches the installer's unchanged check; decoded on the
  # loop, so that the burst reaches the core while the install is pending
  noise: {{plugin: decoder-noise, options: {{replay_keys: 0, threads: 0}}}}
  static: {{plugin: resolver-static, options: {{peers_file: {peers}}}}}
  wg: {{plugin: installer-uapi, options: {{interface: {dd.gw_if}, completion: inversion}}}}
pipelines:
  pull: [hex, noise, static, wg]
""")
    d = Daemon(cfg, netns=dd.gw_ns)
    got = wait_until(lambda: read_stats(stats).get("pipeline.pull.items") == 20
                     and read_stats(stats).get("pipeline.pull.inflight") == 0, 5)
    s = read_stats(stats)
    ok(got and s.get("wg.installed") == 1 and s.get("pipeline.pull.inflight_duplicates") == 9,
       "ten initiations of one key while its install is pending: one install, nine duplicates", s)
    ok(s.get("wg.unchanged") == 10 and s.get("wg.installed") == 1,
       "a burst for a key already installed with the same endpoint: nothing re-installed", s)
    ok(d.stop() == 0, "exit 0")
    d.close()

done()
