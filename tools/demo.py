#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""The demo: a wireguard-go gateway that knows no peer, two clients that
know the gateway, and wggwd (etc/demo.yaml) installing each client just in
time. Prints a timeline per client and the counters, shows an eviction of a
client whose session is still live and that client coming back on its next
packet, and removes everything it made."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("WGGWD_BUILD", os.path.join(ROOT, "build"))
RUN = "/run/wggwd-demo"
GW, CLIENTS = "wggwd-demo-gw", ["wggwd-demo-c1", "wggwd-demo-c2"]
GW_IF, CL_IF = "wgdemo0", ["wgdemoc1", "wgdemoc2"]
procs = []


def sh(*cmd, check=True, input=None):
    p = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout.strip()


def ns(name, *cmd, **kw):
    return sh("ip", "netns", "exec", name, *cmd, **kw)


def wait_until(cond, timeout, step=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def cleanup():
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    for n in [GW] + CLIENTS:
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
    for i in [GW_IF] + CL_IF:
        try:
            os.unlink(f"/var/run/wireguard/{i}.sock")
        except OSError:
            pass
    subprocess.run(["rm", "-rf", RUN])


def uapi_peers(iface):
    """Peers of a wireguard-go interface, from its UAPI socket: handshake
    times with nanoseconds, which `wg show` rounds to seconds."""
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
    peers, cur = {}, None
    for line in data.decode().splitlines():
        k, _, v = line.partition("=")
        if k == "public_key":
            cur = peers.setdefault(bytes.fromhex(v), {})
        elif cur is not None and k in ("last_handshake_time_sec", "last_handshake_time_nsec",
                                       "rx_bytes", "persistent_keepalive_interval"):
            cur[k] = int(v)
        elif cur is not None and k == "endpoint":
            cur[k] = v
    return peers


def b64(raw):
    import base64
    return base64.b64encode(raw).decode()


SOCK = f"{RUN}/ctl.sock"        # etc/demo.yaml's control_socket
METRICS = "http://127.0.0.1:9587/metrics"  # its http_listen, in the gateway's namespace
HISTS = {"decoded": "wggwd_decode_duration_seconds", "resolved": "wggwd_resolve_duration_seconds",
         "installed": "wggwd_install_duration_seconds",
         "handshake": "wggwd_handshake_duration_seconds"}


def ctl(*args):
    """The daemon's answer to `wggwd ctl --socket S ARGS --json`."""
    return json.loads(sh(f"{BUILD}/wggwd", "ctl", "--socket", SOCK, "--json", *args))


def metrics():
    """The daemon's /metrics, as {(name, labels): value}."""
    out = {}
    for line in ns(GW, "curl", "-sf", "--max-time", "5", METRICS).splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def hist(m, what, pipeline="pull"):
    """(sum, count) of one of the core's latency histograms."""
    lab = (("pipeline", pipeline),)
    return m.get((HISTS[what] + "_sum", lab), 0.0), m.get((HISTS[what] + "_count", lab), 0.0)


def hist_delta(before, after, what):
    """This knock's observation of a histogram: its sum's growth, when its
    count grew by exactly one between the two scrapes; else None."""
    s0, n0 = hist(before, what)
    s1, n1 = hist(after, what)
    return (s1 - s0) * 1000 if n1 - n0 == 1 else None


def peer_of(key):
    return next((p for p in ctl("peers")["peers"] if p["key"] == key), None)


def last_add(key, after=0.0):
    """The newest outcome `why KEY` reports of an add that went through
    (its time: when the source saw the initiation or data packet)."""
    for o in ctl("why", key)["outcomes"]:  # newest first
        if o["op"] == "add" and o["verdict"] == "continue" and not o.get("unchanged") \
                and o["time"] > after:
            return o
    return None


def fmt(v, width, prec):
    return f"{v:{width}.{prec}f}" if v is not None else f"{'n/a':>{width}s}"


def main():
    if os.geteuid() != 0:
        sys.exit("demo: run as root (it creates network namespaces)")
    cleanup()
    os.makedirs(RUN, mode=0o700)
    print("== setting up: a gateway namespace and two client namespaces on a bridge")
    for n in [GW] + CLIENTS:
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    sh("ip", "-n", GW, "link", "add", "br-demo", "type", "bridge")
    sh("ip", "-n", GW, "addr", "add", "10.99.0.1/24", "dev", "br-demo")
    sh("ip", "-n", GW, "link", "set", "br-demo", "up")
    keys = {}
    for name in ["gw"] + CLIENTS:
        priv = sh("wg", "genkey")
        keys[name] = (priv, sh("wg", "pubkey", input=priv))
        fd = os.open(f"{RUN}/{name}.key", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (priv + "\n").encode())
        os.close(fd)
    for i, c in enumerate(CLIENTS, 1):
        sh("ip", "link", "add", f"vdemo{i}", "netns", GW, "type", "veth", "peer", "eth0", "netns", c)
        sh("ip", "-n", GW, "link", "set", f"vdemo{i}", "master", "br-demo", "up")
        sh("ip", "-n", c, "addr", "add", f"10.99.0.1{i}/24", "dev", "eth0")
        sh("ip", "-n", c, "link", "set", "eth0", "up")
    for n, ifn in [(GW, GW_IF)] + list(zip(CLIENTS, CL_IF)):
        procs.append(subprocess.Popen(["ip", "netns", "exec", n, "wireguard-go", "-f", ifn],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if not wait_until(lambda: os.path.exists(f"/var/run/wireguard/{ifn}.sock"), 10):
            raise RuntimeError(f"wireguard-go did not create {ifn}")
    ns(GW, "wg", "set", GW_IF, "private-key", f"{RUN}/gw.key", "listen-port", "51820")
    sh("ip", "-n", GW, "addr", "add", "10.100.0.1/24", "dev", GW_IF)
    sh("ip", "-n", GW, "link", "set", GW_IF, "up")
    peers = []
    for i, (c, ifn) in enumerate(zip(CLIENTS, CL_IF), 1):
        ns(c, "wg", "set", ifn, "private-key", f"{RUN}/{c}.key", "peer", keys["gw"][1],
           "endpoint", "10.99.0.1:51820", "allowed-ips", "10.100.0.0/24")
        sh("ip", "-n", c, "addr", "add", f"10.100.0.1{i}/24", "dev", ifn)
        sh("ip", "-n", c, "link", "set", ifn, "up")
        peers.append({"public_key": keys[c][1], "allowed_ips": [f"10.100.0.1{i}/32"]})
    with open(f"{RUN}/peers.json", "w") as f:
        json.dump(peers, f, indent=1)
    print(f"   gateway {GW_IF} ({keys['gw'][1]}) has {len(uapi_peers(GW_IF))} peers")
    for c, (_, pub) in zip(CLIENTS, [keys[c] for c in CLIENTS]):
        print(f"   client  {c}: {pub}")

    print("\n== wggwd run -c etc/demo.yaml (in the gateway namespace)")
    log = open(f"{RUN}/wggwd.log", "w+")
    d = subprocess.Popen(["ip", "netns", "exec", GW, f"{BUILD}/wggwd", "run", "-c",
                          os.path.join(ROOT, "etc", "demo.yaml")], stdout=log, stderr=log)
    procs.append(d)

    def logtext():
        with open(f"{RUN}/wggwd.log") as f:
            return f.read()
    if not wait_until(lambda: ("running" in logtext() and os.path.exists(SOCK)) or d.poll() is not None,
                      10) or d.poll() is not None:
        print(logtext())
        raise RuntimeError("wggwd did not start")
    for line in logtext().splitlines():
        print("   " + line)

    print("\n== each client pings the gateway's tunnel address; the gateway knows neither")

    # one client at a time, so that between two scrapes of /metrics each
    # of the core's histograms holds exactly this client's observation
    pings, rows, timelines = {}, {}, 0
    for i, c in enumerate(CLIENTS, 1):
        pub = keys[c][1]
        before = metrics()
        pings[c] = subprocess.Popen(["ip", "netns", "exec", c, "ping", "-c", "3", "-i", "0.2",
                                     "-W", "5", "10.100.0.1"], stdout=subprocess.PIPE, text=True)
        out = pings[c].communicate(timeout=20)[0]
        rtt = re.search(r"time=([\d.]+) ms", out)
        # the first handshake is timed from the installer's dump, read once
        # a second while a peer waits: give it that second
        wait_until(lambda: hist(metrics(), "handshake")[1] > hist(before, "handshake")[1], 5, 0.2)
        after = metrics()
        rows[c] = (pub, before, after, rtt, last_add(pub), peer_of(pub))
    print("   timeline per client, in ms after wggwd saw its first initiation:")
    print("   client          decoded  resolved  installed  handshake    first ping reply (RTT)")
    for c in CLIENTS:
        pub, before, after, rtt, why, peer = rows[c]
        if not why or not peer:
            print(f"   {c}: no tunnel ({'wggwd reports no install' if not why else 'not a peer of wggwd'})")
            continue
        d_ = {w: hist_delta(before, after, w) for w in HISTS}
        timelines += d_["installed"] is not None and d_["handshake"] is not None
        print(f"   {c:15s} {fmt(d_['decoded'], 7, 3)} {fmt(d_['resolved'], 9, 3)}"
              f" {fmt(d_['installed'], 10, 3)} {fmt(d_['handshake'], 10, 1)}"
              f"    {fmt(float(rtt.group(1)) if rtt else None, 8, 1)}")
    print("   where each number comes from (the daemon's own data; the script times nothing):")
    print("     initiation seen:  `wggwd ctl why KEY --json`, the install's outcome \"time\"")
    print("     decoded, resolved, installed, handshake: /metrics (http_listen), the growth of")
    print("       wggwd_{decode,resolve,install,handshake}_duration_seconds_sum{pipeline=\"pull\"}")
    print("       while _count grew by one, i.e. across this client's knock alone; the daemon")
    print("       keeps no per-key handshake time, only this histogram of first handshakes")
    print("     first ping reply: ping's RTT in the client's namespace, not the daemon's")
    print("   and what `wggwd ctl peers --json` / `why KEY --json` say of each:")
    for c in CLIENTS:
        pub, before, after, rtt, why, peer = rows[c]
        if not why or not peer:
            continue
        inst = (peer["installed_at"] - why["time"]) * 1000 if "installed_at" in peer else None
        hs = (peer["last_handshake"] - why["time"]) * 1000 if "last_handshake" in peer else None
        print(f"   {c}: seen at {why['time_text']} ({why['pipeline']}, stopped at {why['stage']}:"
              f" {why['verdict']}); peers: origin {peer['origin']}, endpoint {peer.get('endpoint')},"
              f" installed_at {fmt(inst, 0, 3)} ms and last_handshake {fmt(hs, 0, 1)} ms after it")
    print("   the gateway completed each client's very first handshake: wggwd installed the peer")
    print("   and re-sent the client's captured initiation (completion: reinject), so no client")
    print("   had to wait ~5 s for its own retry; the first ping's RTT includes the handshake")

    print("\n== counters")
    time.sleep(0.3)  # one stats_interval, so the file holds the pings' counts
    with open(f"{RUN}/stats.json") as f:
        stats = json.load(f)
    for k, v in stats.items():
        if v and not k.endswith("inflight") and ".le_" not in k:  # buckets: see /metrics
            print(f"   {k} {v}")

    print("\n== client 1 keeps talking, client 2 goes quiet: the evictor removes it (idle: 6s,")
    print("   evict_live: true: a short idle, for the demo, that evicts a peer whose session is live)")
    busy = subprocess.Popen(["ip", "netns", "exec", CLIENTS[0], "ping", "-i", "0.5", "10.100.0.1"],
                            stdout=subprocess.DEVNULL)
    procs.append(busy)
    c2 = keys[CLIENTS[1]][1]
    t0 = time.time()
    evicted = wait_until(lambda: peer_of(c2) is None, 30, 0.1)
    print(f"   {'evicted' if evicted else 'NOT evicted'} after {time.time() - t0:.1f} s;"
          f" `wggwd ctl peers` now lists {len(ctl('peers')['peers'])} peer(s)")
    removal = next((o for o in ctl("why", c2)["outcomes"] if o["op"] == "remove"), None)
    if removal:
        print(f"   `wggwd ctl why` {c2[:12]}...: {removal['time_text']} {removal['op']}"
              f" {removal['verdict']} at {removal['stage']} ({removal.get('reason', '-')})")
    for line in logtext().splitlines():
        if "evicting" in line or "watching " in line:
            print("   " + line)

    print("\n== client 2 comes back, pinging every 10 ms")
    print("   its session is still live (last handshake under 180 s ago), so its WireGuard sends")
    print("   transport data on it: the gateway, which no longer has that session, cannot read it")
    t0 = time.time()
    first = last_add(c2)
    before = metrics()
    back = subprocess.run(["ip", "netns", "exec", CLIENTS[1], "ping", "-D", "-c", "1", "-i", "0.01",
                           "-w", "40", "10.100.0.1"], capture_output=True, text=True)
    took = time.time() - t0
    wait_until(lambda: hist(metrics(), "handshake")[1] > hist(before, "handshake")[1], 5, 0.2)
    after = metrics()
    ret = [x for x in logtext().splitlines() if "returning: " + c2 in x]
    returning = [after.get(k, 0) - before.get(k, 0) for k in after
                 if k[0] == "wggwd_stage_events_total" and ("stage", "sniff") in k[1]
                 and ("event", "returning") in k[1]]
    reply = re.search(r"^\[([\d.]+)\].*time=([\d.]+) ms", back.stdout, re.M)
    again = last_add(c2, first["time"] if first else 0.0)
    if back.returncode or not again:
        print(f"   {'NO reply' if back.returncode else 'reply'} after {took:.1f} s;"
              f" wggwd reports no re-install")
    else:
        seen = again["time"]
        inst, hs = hist_delta(before, after, "installed"), hist_delta(before, after, "handshake")
        print("   timeline, in ms after wggwd saw its first data packet:")
        print("   client          installed  handshake  first ping reply")
        print(f"   {CLIENTS[1]:15s} {fmt(inst, 9, 3)} {fmt(hs, 10, 1)}"
              f" {fmt((float(reply.group(1)) - seen) * 1000 if reply else None, 17, 1)}")
        print(f"   data packet seen: `wggwd ctl why KEY --json`, {again['time_text']}"
              f" (stopped at {again['stage']}: {again['verdict']})")
        print("   installed, handshake: /metrics, as above; first ping reply: ping -D's timestamp")
        print("   of the reply in the client's namespace, less the daemon's data-packet time")
        print(f"   source-bpf's returning counter (wggwd_stage_events_total{{stage=\"sniff\","
              f"event=\"returning\"}}) grew by {int(sum(returning))}")
        for line in ret:
            print("   " + line)
        if ret:
            print("   returned on its next packet: gateway initiated. source-bpf had been watching the")
            print("   endpoint of this peer, evicted with a live session; its first data packet")
            print("   re-installed it with role inversion, so the gateway sent the initiation and the")
            print("   client answered at once (the packet that triggered it is lost, the next one")
            print("   goes through). Without the watch it would wait ~15 s for its own retry.")
        else:
            print(f"   back after {took:.1f} s by its own new handshake (not through the watch)")
    busy.terminate()

    print("\n== stopping")
    d.send_signal(signal.SIGTERM)
    rc = d.wait(10)
    print(f"   wggwd exited with {rc}")
    ok = evicted and back.returncode == 0 and rc == 0 and again and sum(returning) >= 1 \
        and timelines == len(CLIENTS)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        cleanup()
    sys.exit(rc)
