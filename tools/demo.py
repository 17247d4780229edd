#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""The demo: a wireguard-go gateway that knows no peer, two clients that
know the gateway, and wggwd (etc/demo.yaml) installing each client just in
time. Prints a timeline per client and the counters, shows an eviction and
the client coming back, and removes everything it made."""
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
    if not wait_until(lambda: "running" in logtext() or d.poll() is not None, 10) or d.poll() is not None:
        print(logtext())
        raise RuntimeError("wggwd did not start")
    for line in logtext().splitlines():
        print("   " + line)

    print("\n== each client pings the gateway's tunnel address; the gateway knows neither")

    pings = {}
    for i, c in enumerate(CLIENTS, 1):
        pings[c] = subprocess.Popen(["ip", "netns", "exec", c, "ping", "-c", "3", "-i", "0.2",
                                     "-W", "5", "10.100.0.1"], stdout=subprocess.PIPE, text=True)
        pings[c].wait(20)
    print("   timeline per client, in ms after wggwd saw its first initiation:")
    print("   client          decoded  resolved  installed  handshake    first ping reply (RTT)")
    gwpeers = uapi_peers(GW_IF)
    for c in CLIENTS:
        out = pings[c].stdout.read()
        rtt = re.search(r"time=([\d.]+) ms", out)
        pub = keys[c][1]
        m = re.search(re.escape(pub) + r" installed: seen at ([\d.]+), decoded ([\d.]+) ms, "
                      r"resolved ([\d.]+) ms, installed ([\d.]+) ms", logtext())
        peer = gwpeers.get(__import__("base64").b64decode(pub), {})
        if not m or not rtt:
            print(f"   {c}: no tunnel ({'not installed' if not m else 'no reply'})")
            continue
        seen = float(m.group(1))
        hs = peer.get("last_handshake_time_sec", 0) + peer.get("last_handshake_time_nsec", 0) / 1e9
        print(f"   {c:15s} {float(m.group(2)):7.3f} {float(m.group(3)):9.3f} {float(m.group(4)):10.3f}"
              f" {(hs - seen) * 1000:10.1f}    {float(rtt.group(1)):8.1f}")
    print("   the gateway completed each client's very first handshake: wggwd installed the peer")
    print("   and re-sent the client's captured initiation (completion: reinject), so no client")
    print("   had to wait ~5 s for its own retry; the first ping's RTT includes the handshake")

    print("\n== counters")
    time.sleep(0.3)  # one stats_interval, so the file holds the pings' counts
    with open(f"{RUN}/stats.json") as f:
        stats = json.load(f)
    for k, v in stats.items():
        if v and not k.endswith("inflight"):
            print(f"   {k} {v}")

    print("\n== client 1 keeps talking, client 2 goes quiet: the evictor removes it")
    busy = subprocess.Popen(["ip", "netns", "exec", CLIENTS[0], "ping", "-i", "0.5", "10.100.0.1"],
                            stdout=subprocess.DEVNULL)
    procs.append(busy)
    c2 = keys[CLIENTS[1]][1]
    t0 = time.time()
    evicted = wait_until(lambda: f"evicting {c2}" in logtext(), 30, 0.1)
    print(f"   {'evicted' if evicted else 'NOT evicted'} after {time.time() - t0:.1f} s;"
          f" the gateway now has {len(uapi_peers(GW_IF))} peer(s)")
    for line in logtext().splitlines():
        if "evicting" in line:
            print("   " + line)

    print("\n== client 2 comes back")
    t0 = time.time()
    back = subprocess.run(["ip", "netns", "exec", CLIENTS[1], "ping", "-c", "1", "-w", "40",
                           "10.100.0.1"], capture_output=True, text=True)
    print(f"   {'reply' if back.returncode == 0 else 'NO reply'} after {time.time() - t0:.1f} s"
          " (its WireGuard still holds the old session: it starts a new handshake once its"
          " data has gone unanswered for 15 s, and wggwd installs it again)")
    again = [x for x in logtext().splitlines() if c2 in x and " installed: " in x]
    if len(again) > 1:
        print("   " + again[-1])
    busy.terminate()

    print("\n== stopping")
    d.send_signal(signal.SIGTERM)
    rc = d.wait(10)
    print(f"   wggwd exited with {rc}")
    return 0 if evicted and back.returncode == 0 and rc == 0 and len(again) > 1 else 1


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        cleanup()
    sys.exit(rc)
