#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""Replay protection without a store (issue 12, finding 1): source-bpf ->
decoder-noise -> resolver-static -> installer-uapi on wireguard-go, in
network namespaces. A client's initiation, captured on the gateway and sent
again from another address, must not move the client's endpoint: the
decoder remembers the newest timestamp of every key it saw installed."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import wgnet  # noqa: E402
from tap import TEST_PLUGINS, Daemon, done, ok, read_stats, skip, vectors, wait_until  # noqa: E402

why = wgnet.missing()
if why:
    skip("replay protection without a store", why)
    done()

tmp = tempfile.mkdtemp(prefix="wggwd-replay-")
ATTACKER_PORT = 40404

# Run in the gateway's namespace: print the first handshake initiation
# (148-byte UDP payload, type 1) that SRC sends to PORT, as hex.
CAPTURE = r"""
import socket, struct, sys
iface, src, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((iface, 0))
s.settimeout(timeout)
print("ready", flush=True)
while True:
    frame, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    ip = frame[14:]
    if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17 or socket.inet_ntoa(ip[12:16]) != src:
        continue
    udp = ip[(ip[0] & 15) * 4:]
    payload = udp[8:]
    if struct.unpack("!H", udp[2:4])[0] == port and len(payload) == 148 and payload[0] == 1:
        print(payload.hex(), flush=True)
        break
"""

# Run in the attacker's namespace: send a payload from its own address.
SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[3])))
s.sendto(bytes.fromhex(sys.argv[4]), (sys.argv[1], int(sys.argv[2])))
"""


def config(topo, known, name, noise_opts=""):
    peers = os.path.join(tmp, f"{name}.peers.json")
    with open(peers, "w") as f:
        json.dump([{"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]} for c in known], f)
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
    plugin: decoder-noise{noise_opts}
  static:
    plugin: resolver-static
    options:
      peers_file: {peers}
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}
pipelines:
  pull: [sniff, noise, static, wg]
""")
    return path, stats


def capture_and_ping(topo, client):
    """Ping the gateway from client (a fresh session on the client's side
    first) while capturing its initiation; (first ping ms, hex)."""
    net.wg_set(client.ns, client.iface, "peer", topo.gw_pub, "remove")
    net.wg_set(client.ns, client.iface, "peer", topo.gw_pub, "endpoint",
               f"{topo.gw_addr}:{topo.gw_port}", "allowed-ips", topo.tunnel_net)
    p = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, "python3", "-c", CAPTURE,
                          topo.gw_uplink, client.addr, str(topo.gw_port), "10"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    net.track(p, "capture")
    ready = p.stdout.readline().strip() == "ready"
    ms = wgnet.first_ping_ms(client.ns, topo.gw_tunnel_ip) if ready else None
    try:
        out, _ = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return ms, out.strip()


def replay(topo, attacker, pkt):
    net.run(attacker.ns, "python3", "-c", SEND, topo.gw_addr, str(topo.gw_port),
            str(ATTACKER_PORT), pkt)


def endpoint(topo, client):
    """The client's endpoint as the gateway's interface has it (wg show
    IFACE endpoints), or None."""
    for line in net.run(topo.gw_ns, "wg", "show", topo.gw_if, "endpoints").splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == client.pub:
            return f[1]
    return None


def replays(stats):
    s = read_stats(stats)
    return s.get("noise.drop_replay", 0), s.get("pipeline.pull.drop.replay", 0)


# --------------------------------------------------- no namespaces: source-hex
# A real initiation, then its variant with another sender_index (same
# timestamp, still valid: PROTOCOL.md (c)), then the original once more.
V = {v["id"]: v for v in vectors()}
orig, variant = V["dev-go-00"], V["dev-var-19"]
assert orig["initiator_public_key_b64"] == variant["initiator_public_key_b64"]
keyf = os.path.join(tmp, "hex.key")
with open(os.open(keyf, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
    f.write(orig["responder_private_key_b64"] + "\n")
out = os.path.join(tmp, "hex.out")
cfg = os.path.join(tmp, "hex.yaml")
hstats = os.path.join(tmp, "hex.stats.json")
with open(cfg, "w") as f:
    f.write(f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {hstats}
stats_interval: 50ms
stages:
  hex:
    plugin: source-hex
    options:
      packets: [{orig["packet"]}, {variant["packet"]}, {orig["packet"]}]
      interval: 200ms
      src: 192.0.2.44:40000
  noise: {{plugin: decoder-noise, options: {{private_key_file: {keyf}}}}}
  static:
    plugin: resolver-static
    options:
      peers:
        - public_key: {orig["initiator_public_key_b64"]}
          allowed_ips: [10.0.0.9/32]
  file: {{plugin: installer-file, options: {{path: {out}}}}}
pipelines:
  pull: [hex, noise, static, file]
""")
d = Daemon(cfg)
wait_until(lambda: read_stats(hstats).get("pipeline.pull.items") == 3
           and read_stats(hstats).get("pipeline.pull.inflight") == 0
           and read_stats(hstats).get("noise.pending", 0) == 0, 5)  # decoded on threads
s = read_stats(hstats)
with open(out) if os.path.exists(out) else open(os.devnull) as f:
    installs = f.read().splitlines()
ok(len(installs) == 1 and s.get("noise.drop_replay") == 2
   and s.get("pipeline.pull.drop.replay") == 2,
   "no store: a real initiation is installed once; the same timestamp again (another sender_index,"
   " then byte for byte) is dropped by the decoder as replay", (installs, s, d.output()[-1500:]))
ok(d.stop() == 0, "exit 0", d.output()[-1500:])
d.close()

with wgnet.Net("jrp") as net:
    topo = net.gateway_with_clients(3)
    victim, attacker, stranger = topo.clients

    # --------------------------------------------------------- defaults
    cfg, stats = config(topo, [victim, attacker], "a")
    d = Daemon(cfg, netns=topo.gw_ns)
    ok(wait_until(lambda: "running" in d.output() or not d.alive(), 10) and d.alive(),
       "daemon runs on the gateway (no store in the pipeline)", d.output())
    ms, pkt = capture_and_ping(topo, victim)
    ok(ms is not None and len(pkt) == 296 and endpoint(topo, victim) == victim.endpoint,
       f"a client connects ({ms} ms); its initiation was captured on the gateway",
       (pkt, endpoint(topo, victim), d.output()))

    replay(topo, attacker, pkt)
    wait_until(lambda: replays(stats)[0] >= 1
               or endpoint(topo, victim) != victim.endpoint, 3)
    ep = endpoint(topo, victim)
    ok(ep == victim.endpoint,
       f"its initiation replayed from {attacker.addr}:{ATTACKER_PORT}: the endpoint stays"
       f" {victim.endpoint} (now {ep})", d.output())
    ok(replays(stats) == (1, 1), "counted: noise.drop_replay, pipeline.pull.drop.replay",
       read_stats(stats))
    ok(net.ping(victim.ns, topo.gw_tunnel_ip), "the client's tunnel still works")

    # the client roams: a new initiation (newer timestamp) from a new port
    net.wg_set(victim.ns, victim.iface, listen_port=victim.port + 1)
    ms, pkt2 = capture_and_ping(topo, victim)
    moved = f"{victim.addr}:{victim.port + 1}"
    ok(ms is not None and wait_until(lambda: endpoint(topo, victim) == moved, 3),
       f"the client itself roams to port {victim.port + 1}: a newer timestamp moves the endpoint",
       (endpoint(topo, victim), d.output()))
    replay(topo, attacker, pkt)
    replay(topo, attacker, pkt2)
    wait_until(lambda: replays(stats)[0] >= 3, 3)
    ok(replays(stats) == (3, 3) and endpoint(topo, victim) == moved,
       "both captured initiations replayed again: dropped, the endpoint stays",
       (endpoint(topo, victim), read_stats(stats)))
    ok(d.stop() == 0, "exit 0", d.output())
    d.close()

    # ------------------------------------ unknown keys cannot evict a key
    # replay_keys 1: a stranger's initiation (its key unknown) is decoded,
    # but only installed keys are remembered, so the client's stays
    net.wg_set(victim.ns, victim.iface, listen_port=victim.port)
    cfg, stats = config(topo, [victim, attacker], "b", "\n    options:\n      replay_keys: 1")
    d = Daemon(cfg, netns=topo.gw_ns)
    ok(wait_until(lambda: "running" in d.output() or not d.alive(), 10) and d.alive(),
       "daemon runs with replay_keys: 1", d.output())
    ms, pkt = capture_and_ping(topo, victim)
    ok(ms is not None and pkt and wait_until(lambda: endpoint(topo, victim) == victim.endpoint, 3),
       "the client connects again", (endpoint(topo, victim), d.output()))
    ok(wgnet.first_ping_ms(stranger.ns, topo.gw_tunnel_ip, 1) is None
       and wait_until(lambda: read_stats(stats).get("pipeline.pull.drop.unknown_key", 0) >= 1, 3),
       "a stranger knocks with an unknown key: dropped (unknown_key)", read_stats(stats))
    replay(topo, attacker, pkt)
    wait_until(lambda: replays(stats)[0] >= 1
               or endpoint(topo, victim) != victim.endpoint, 3)
    ok(endpoint(topo, victim) == victim.endpoint and replays(stats) == (1, 1),
       "the client's initiation replayed after the stranger's: still dropped as replay",
       (endpoint(topo, victim), read_stats(stats)))
    ok(d.stop() == 0, "exit 0", d.output())
    d.close()

done()
