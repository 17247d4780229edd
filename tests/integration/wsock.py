#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""WireGuard over WebSockets end to end: wggwd-wsbridge -> source-wsock ->
decoder-noise -> resolver-static -> installer-uapi on wireguard-go, with
the clients' UDP to the gateway blocked by nftables; plus malformed input,
a wrong token, a slow reader, a ping flood, a foreign local UDP sender and
a gateway that floods the bridge with pings.

`wsock.py --probe KIND HOST PORT [ARG]` is the raw WebSocket client the
test runs inside the gateway's namespace; it prints one JSON line.
`--foreign`, `--fake-gw` and `--flood` are the other helpers it runs."""
import base64
import hashlib
import json
import re
import shutil
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))


# ------------------------------------------------------------------ probe
def ws_frame(opcode, payload, mask=True, fin=True):
    hdr = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr += bytes([mbit | n])
    elif n < 65536:
        hdr += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        hdr += bytes([mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_http(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    line = head.split(b"\r\n")[0].decode(errors="replace")
    code = int(line.split()[1]) if line.startswith("HTTP/1.1 ") else 0
    return code, head.decode(errors="replace"), rest


def parse_frames(buf):
    """The whole (unmasked) frames at the start of buf, and what is left."""
    frames = []
    while len(buf) >= 2:
        op, n = buf[0] & 0x0f, buf[1] & 0x7f
        off = 2
        if n == 126:
            if len(buf) < 4:
                break
            n, off = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, off = struct.unpack(">Q", buf[2:10])[0], 10
        if len(buf) < off + n:
            break
        frames.append((op, buf[off:off + n]))
        buf = buf[off + n:]
    return frames, buf


def close_code(payload):
    return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005


def read_close(s, rest, timeout=3):
    """The close code of the first close frame the server sends (0: none)."""
    s.settimeout(timeout)
    buf = rest
    try:
        while True:
            frames, buf = parse_frames(buf)
            for op, payload in frames:
                if op == 8:
                    return close_code(payload)
            d = s.recv(65536)
            if not d:
                return 0
            buf += d
    except (socket.timeout, ConnectionError):
        return 0


def upgrade_req(path="/wg", token=None, version="13", extra=""):
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"GET {path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{auth}{extra}\r\n").encode()


def ping_flood(s, n, mask=True):
    """n pings (16 bytes each), then one every 50 ms for 4 s, and never a
    read: the pongs pile up on the other side. Did it close the
    connection?"""
    batch = ws_frame(9, b"p" * 16, mask) * 1000
    sent, closed = 0, False
    s.settimeout(10)
    try:
        while sent < n:
            s.sendall(batch)
            sent += 1000
    except socket.timeout:
        pass
    except OSError:
        closed = True
    t0 = time.monotonic()
    while not closed and time.monotonic() - t0 < 4:
        time.sleep(0.05)
        try:
            s.sendall(ws_frame(9, b"p", mask))
        except socket.timeout:
            pass
        except OSError:
            closed = True
    return {"sent": sent, "closed": closed}


def ping_talk(s, rest, secs, answer):
    """For secs: a ping every 200 ms (answer=False), or nothing but pongs
    to the server's pings (answer=True). The server's close code (0: it
    kept the connection; -1: it went without a close frame)."""
    buf, code, next_ping = rest, 0, 0.0
    s.settimeout(0.1)
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs and not code:
        try:
            if not answer and time.monotonic() >= next_ping:
                s.sendall(ws_frame(9, b"hi"))
                next_ping = time.monotonic() + 0.2
            d = s.recv(65536)
            if not d:
                code = -1
            buf += d
        except socket.timeout:
            pass
        except OSError:
            code = -1
        frames, buf = parse_frames(buf)
        for op, payload in frames:
            if op == 8:
                code = close_code(payload)
            elif op == 9 and answer:
                s.sendall(ws_frame(10, payload))
    return {"close": code, "secs": round(time.monotonic() - t0, 2)}


def probe(kind, host, port, token=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if kind in ("slow", "ping_flood"):
        # a small window: what the server sends piles up on its side
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect((host, int(port)))
    out = {"kind": kind}
    if kind == "garbage":
        s.sendall(b"\x16\x03\x01 hello, this is not HTTP\r\n\r\n")
    elif kind == "no_upgrade":
        s.sendall(b"GET /wg HTTP/1.1\r\nHost: gw\r\n\r\n")
    elif kind == "bad_path":
        s.sendall(upgrade_req("/other", token))
    elif kind == "bad_path_anon":
        s.sendall(upgrade_req("/other"))
    elif kind == "no_token":
        s.sendall(upgrade_req("/wg"))
    elif kind == "wrong_token":
        s.sendall(upgrade_req("/wg", "not-the-token"))
    elif kind == "bad_version":
        s.sendall(upgrade_req("/wg", token, version="8"))
    elif kind == "huge_header":
        s.sendall(upgrade_req("/wg", token, extra="X-Pad: " + "a" * 9000 + "\r\n"))
    elif kind in ("slow", "ping_flood", "ping_only", "pong"):
        s.sendall(upgrade_req("/wg"))
    else:
        s.sendall(upgrade_req("/wg", token))
    code, head, rest = read_http(s)
    out["http"] = code
    if code == 101 and kind == "ping_flood":
        out.update(ping_flood(s, int(token or 200000)))
    elif code == 101 and kind in ("ping_only", "pong"):
        out.update(ping_talk(s, rest, float(token or 6), kind == "pong"))
    elif code == 101 and kind != "slow":
        frames = {"text": ws_frame(1, b"hello"),
                  "oversize": ws_frame(2, b"\x04" + b"x" * 8999),
                  "unmasked": ws_frame(2, b"\x04" + b"x" * 31, mask=False),
                  # 40 bytes in 40 frames: a chunk each for wslay
                  "fragments": ws_frame(2, b"\x04", fin=False)
                  + ws_frame(0, b"x", fin=False) * 38 + ws_frame(0, b"x")
                  + ws_frame(8, struct.pack(">H", 1000)),
                  "ok": ws_frame(8, struct.pack(">H", 1000))}
        s.sendall(frames.get(kind, frames["ok"]))
        out["close"] = read_close(s, rest)
    elif kind == "slow":
        # one datagram that is not an initiation: the fake WireGuard floods
        # the relay socket it came from; then read nothing for a while
        s.sendall(ws_frame(2, b"\x04\x00\x00\x00" + b"y" * 28))
        time.sleep(float(token or 4))
    print(json.dumps(out), flush=True)


def flooder(port, count):
    """A fake WireGuard: floods whoever sends it a datagram."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", int(port)))
    print("ready", flush=True)
    _, peer = u.recvfrom(2048)
    data = b"\x04" + b"z" * 1399
    sent = 0
    for _ in range(int(count)):
        try:
            u.sendto(data, peer)
            sent += 1
        except OSError:
            time.sleep(0.001)
    print(json.dumps({"sent": sent}), flush=True)
    time.sleep(30)


def foreign(host, port, secs):
    """Another local UDP sender: one datagram to the bridge, then count
    what comes back to it."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.sendto(b"\x04" + b"\0" * 31, (host, int(port)))
    print("sent", flush=True)
    u.settimeout(0.1)
    got, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < float(secs):
        try:
            u.recvfrom(2048)
            got += 1
        except socket.timeout:
            pass
    print(json.dumps({"got": got}), flush=True)


def fake_gw(port, count):
    """A hostile gateway: upgrades the bridge, then (after a line on stdin)
    floods it with pings and never reads its pongs."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ls.bind(("127.0.0.1", int(port)))
    ls.listen(1)
    print("ready", flush=True)
    s, _ = ls.accept()
    req = b""
    while b"\r\n\r\n" not in req:
        req += s.recv(4096)
    key = re.search(rb"(?i)sec-websocket-key: *(\S+)", req).group(1)
    acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    print("upgraded", flush=True)
    sys.stdin.readline()
    print(json.dumps(ping_flood(s, int(count), mask=False)), flush=True)


if len(sys.argv) > 1 and sys.argv[1] == "--foreign":
    foreign(*sys.argv[2:])
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "--fake-gw":
    fake_gw(*sys.argv[2:])
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "--probe":
    probe(*sys.argv[2:])
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "--flood":
    flooder(*sys.argv[2:])
    sys.exit(0)

# ------------------------------------------------------------------- test
import wgnet  # noqa: E402
from tap import BUILD, TEST_PLUGINS, Daemon, done, ok, read_stats, secret_file, skip, wait_until  # noqa: E402

why = wgnet.missing()
BRIDGE = os.path.join(BUILD, "tools", "wsbridge", "wggwd-wsbridge")
if not why and not os.path.exists(BRIDGE):
    why = f"{BRIDGE} is not built"
if not why and not os.path.exists(os.path.join(BUILD, "plugins", "source-wsock", "source-wsock.so")):
    why = "source-wsock is not built"
if why:
    skip("WireGuard over WebSockets", why)
    done()

tmp = tempfile.mkdtemp(prefix="wggwd-wsock-")
SELF = os.path.abspath(__file__)
WS_PORT = 8080
BRIDGE_PORT = 51821
TOKEN = "s3cret-token-" + base64.b16encode(os.urandom(8)).decode()


def config(topo, name, ws_opts="", pipeline=("noise", "static", "wg")):
    peers = os.path.join(tmp, f"{name}.peers.json")
    with open(peers, "w") as f:
        json.dump([{"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]} for c in topo.clients], f)
    path = os.path.join(tmp, f"{name}.yaml")
    stats = os.path.join(tmp, f"{name}.stats.json")
    with open(path, "w") as f:
        f.write(f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  ws:
    plugin: source-wsock
    options:
      listen: {topo.gw_addr}:{WS_PORT}
      path: /wg
{ws_opts}
  noise:
    plugin: decoder-noise
  static:
    plugin: resolver-static
    options:
      peers_file: {peers}
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}
pipelines:
  pull: [ws, {", ".join(pipeline)}]
""")
    return path, stats


def run_probe(ns, kind, host, port, arg=None, timeout=20):
    cmd = ["ip", "netns", "exec", ns, sys.executable, SELF, "--probe", kind, host, str(port)]
    if arg:
        cmd.append(arg)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": p.stderr[-400:]}


def block_udp(net, c, topo):
    """The client can reach the gateway by TCP only."""
    net.run(c.ns, "nft", "-f", "-", input=f"""
table inet wsblock {{
  chain out {{
    type filter hook output priority 0; policy accept;
    ip daddr {topo.gw_addr} udp dport {topo.gw_port} counter drop
  }}
}}
""")


def bridge(net, c, topo, token_file=None):
    log = open(os.path.join(tmp, f"bridge-{c.iface}.log"), "w")
    cmd = ["ip", "netns", "exec", c.ns, BRIDGE, "-l", f"127.0.0.1:{BRIDGE_PORT}",
           "-u", f"ws://{topo.gw_addr}:{WS_PORT}/wg"]
    if token_file:
        cmd += ["-t", token_file]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    net.track(p, f"wsbridge {c.iface}")
    net.wg_set(c.ns, c.iface, "peer", topo.gw_pub, "endpoint", f"127.0.0.1:{BRIDGE_PORT}")
    return p, log.name


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


with wgnet.Net("wso") as net:
    topo = net.gateway_with_clients(4, underlay="10.203.0", tunnel="10.204.0")
    token_file = secret_file(tmp, "token", TOKEN)
    cfg, stats = config(topo, "a", f"""      wireguard: 127.0.0.1:{topo.gw_port}
      token_file: {token_file}
      max_message: 4k
      idle: 20s""")
    d = Daemon(cfg, netns=topo.gw_ns)
    ok(wait_until(lambda: "running" in d.output() or not d.alive(), 10) and d.alive(),
       "daemon with source-wsock runs", d.output())
    bridges = []
    for c in topo.clients:
        block_udp(net, c, topo)
        bridges.append(bridge(net, c, topo, token_file))
    first = topo.clients[0]
    p = subprocess.run(["ip", "netns", "exec", first.ns, "nft", "list", "table", "inet", "wsblock"],
                       capture_output=True, text=True)
    ok("drop" in p.stdout, "client's UDP to the gateway's WireGuard port is blocked (nftables)", p.stderr)

    # ------------------------------------------------------------ one client
    ok(wait_until(lambda: read_stats(stats).get("ws.upgraded", 0) >= 4, 10),
       "four bridges connected with the token (ws.upgraded)", read_stats(stats))
    ms = wgnet.first_ping_ms(first.ns, topo.gw_tunnel_ip, 5)
    ok(ms is not None, f"client through the WebSocket: tunnel up, ping answered ({ms} ms)",
       d.output() + open(bridges[0][1]).read())
    peer = net.peer(topo.gw_ns, topo.gw_if, first.pub)
    ok(peer and peer["endpoint"] and peer["endpoint"].startswith("127.0.0.1:")
       and peer["allowed_ips"] == [f"{first.tunnel_ip}/32"],
       "installed with the relay socket as endpoint and its allowed IPs", peer)
    ok(wait_until(lambda: read_stats(stats).get("ws.initiations", 0) >= 1
                  and read_stats(stats).get("ws.resent", 0) >= 1, 3),
       "the initiation went through the pipeline and was re-sent by the relay", read_stats(stats))
    ok(net.ping(first.ns, topo.gw_tunnel_ip, count=5, timeout=1), "five more pings over the tunnel")

    # ------------------------------------------------------------ a foreign local sender
    # another local socket sends the bridge a datagram; then the gateway
    # pings the client: its packets must still reach the WireGuard client
    # (the bridge keeps to its first peer), not the other sender
    fo = subprocess.Popen(["ip", "netns", "exec", first.ns, sys.executable, SELF, "--foreign",
                           "127.0.0.1", str(BRIDGE_PORT), "3"], stdout=subprocess.PIPE, text=True)
    net.track(fo, "foreign sender")
    fo.stdout.readline()
    time.sleep(0.2)
    pinged = net.ping(topo.gw_ns, first.tunnel_ip, count=3, timeout=2)
    got = json.loads(fo.stdout.readline() or "{}")
    fo.wait(5)
    bridges[0][0].send_signal(signal.SIGUSR1)
    wait_until(lambda: "drop_foreign" in open(bridges[0][1]).read(), 2)
    m = re.findall(r"drop_foreign (\d+)", open(bridges[0][1]).read())
    ok(pinged and got.get("got") == 0 and m and int(m[-1]) >= 1,
       "wsbridge: a second local UDP sender does not redirect the gateway's packets "
       "(dropped and counted as drop_foreign)", (pinged, got, m, open(bridges[0][1]).read()[-600:]))

    # ------------------------------------------------------------ several at once
    pings = [subprocess.Popen(["ip", "netns", "exec", c.ns, "ping", "-n", "-c", "1", "-W", "5",
                               topo.gw_tunnel_ip], stdout=subprocess.DEVNULL)
             for c in topo.clients[1:]]
    codes = [p.wait(20) for p in pings]
    ok(codes.count(0) == 3, f"three more clients at once: {codes.count(0)}/3 tunnels up", d.output())
    wait_until(lambda: read_stats(stats).get("wg.installed", 0) >= 4, 3)
    ok(read_stats(stats).get("wg.installed") == 4, "one install per client", read_stats(stats))

    # ------------------------------------------------------------ malformed input
    gw = topo.gw_addr
    expect = [("garbage", {"http": 400}, "ws.http_400"),
              ("no_upgrade", {"http": 400}, "ws.http_400"),
              ("huge_header", {"http": 400}, "ws.http_400"),
              ("bad_path", {"http": 404}, "ws.http_404"),
              ("bad_path_anon", {"http": 401}, "ws.http_401"),
              ("no_token", {"http": 401}, "ws.http_401"),
              ("wrong_token", {"http": 401}, "ws.http_401"),
              ("bad_version", {"http": 426}, "ws.http_426"),
              ("text", {"http": 101, "close": 1003}, "ws.closed_text"),
              ("oversize", {"http": 101, "close": 1009}, "ws.closed_oversize"),
              ("unmasked", {"http": 101, "close": 1002}, "ws.closed_protocol"),
              ("fragments", {"http": 101, "close": 1009}, "ws.closed_oversize")]
    for kind, want, counter in expect:
        before = read_stats(stats).get(counter, 0)
        got = run_probe(topo.gw_ns, kind, gw, WS_PORT, TOKEN)
        good = all(got.get(k) == v for k, v in want.items())
        ok(good and wait_until(lambda: read_stats(stats).get(counter, 0) == before + 1, 3),
           f"{kind}: {want} and counted as {counter}", (got, read_stats(stats).get(counter)))
    ok(d.alive() and net.ping(first.ns, topo.gw_tunnel_ip, count=2, timeout=2),
       "after the malformed input the established tunnels still work", d.output())

    # ------------------------------------------------------------ reconnect
    # restart the daemon: every WebSocket drops; the bridges reconnect with
    # backoff and the tunnel carries on (wireguard-go roams to the new relay
    # socket); then a fresh handshake goes through the JIT path again.
    rc = d.stop()
    ok(rc == 0, f"SIGTERM: exit {rc}", d.output())
    d.close()
    d = Daemon(cfg, netns=topo.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)
    ok(wait_until(lambda: read_stats(stats).get("ws.upgraded", 0) >= 4, 15),
       "bridges reconnected after their WebSocket dropped", read_stats(stats))
    ok(wait_until(lambda: net.ping(first.ns, topo.gw_tunnel_ip, timeout=1), 10, 0.2),
       "the tunnel works through the new WebSocket", d.output())
    second = topo.clients[1]
    net.wg_set(topo.gw_ns, topo.gw_if, "peer", second.pub, "remove")
    net.wg_set(second.ns, second.iface, "peer", topo.gw_pub, "remove")
    net.wg_set(second.ns, second.iface, "peer", topo.gw_pub, "endpoint", f"127.0.0.1:{BRIDGE_PORT}",
               "allowed-ips", topo.tunnel_net)
    ms = wgnet.first_ping_ms(second.ns, topo.gw_tunnel_ip, 5)
    ok(ms is not None and second.pub in net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"],
       f"peer removed, fresh handshake over the new WebSocket: installed again ({ms} ms)", d.output())
    ok(d.stop() == 0, "exit 0")
    d.close()

    # ------------------------------------------------------------ remove_on_close
    # a peer installed through a WebSocket goes when that WebSocket closes
    # (host->retire: a REMOVE item through the pipeline's installer)
    cfg3, stats3 = config(topo, "roc", f"""      wireguard: 127.0.0.1:{topo.gw_port}
      token_file: {token_file}
      remove_on_close: true""")
    d = Daemon(cfg3, netns=topo.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)
    wait_until(lambda: read_stats(stats3).get("ws.upgraded", 0) >= 4, 15)
    net.wg_set(topo.gw_ns, topo.gw_if, "peer", first.pub, "remove")
    net.wg_set(first.ns, first.iface, "peer", topo.gw_pub, "remove")
    net.wg_set(first.ns, first.iface, "peer", topo.gw_pub, "endpoint", f"127.0.0.1:{BRIDGE_PORT}",
               "allowed-ips", topo.tunnel_net)
    ms = wgnet.first_ping_ms(first.ns, topo.gw_tunnel_ip, 5)
    ok(ms is not None and first.pub in net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"],
       f"remove_on_close: installed through the WebSocket ({ms} ms)", d.output())
    bridges[0][0].terminate()
    bridges[0][0].wait(5)
    got = wait_until(lambda: read_stats(stats3).get("ws.removed_on_close", 0) == 1
                     and first.pub not in net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"], 5)
    ok(got and second.pub in net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"],
       "remove_on_close: its WebSocket closed, the peer is removed (and only it)",
       (read_stats(stats3), d.output()))
    ok(d.stop() == 0, "exit 0")
    d.close()

    # ------------------------------------------------------------ slow reader
    flood_port = 52999
    fl = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, sys.executable, SELF, "--flood",
                           str(flood_port), "30000"], stdout=subprocess.PIPE, text=True)
    net.track(fl, "flooder")
    fl.stdout.readline()
    cfg2, stats2 = config(topo, "slow", f"""      wireguard: 127.0.0.1:{flood_port}
      queue: 64k""")
    d = Daemon(cfg2, netns=topo.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)
    base = rss_kb(d.proc.pid)
    pr = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, sys.executable, SELF, "--probe", "slow",
                           topo.gw_addr, str(WS_PORT), "4"], stdout=subprocess.PIPE, text=True)
    res = json.loads(fl.stdout.readline())
    peak = base
    t0 = time.monotonic()
    while pr.poll() is None and time.monotonic() - t0 < 10:
        peak = max(peak, rss_kb(d.proc.pid))
        time.sleep(0.05)
    pr.wait(10)
    s = read_stats(stats2)
    ok(wait_until(lambda: read_stats(stats2).get("ws.drop_slow", 0) > 0, 3),
       f"slow reader: {res['sent']} datagrams of 1400 bytes toward it, "
       f"{read_stats(stats2).get('ws.drop_slow')} dropped and counted (ws.drop_slow)", s)
    ok(peak - base < 8 * 1024,
       f"slow reader: the relay's memory stays bounded (RSS {base} -> {peak} kB)", d.output())
    ok(d.alive(), "daemon alive after the slow reader")
    ok(d.stop() == 0, "exit 0")
    d.close()

    # ------------------------------------------------------------ ping flood
    # a client that sends pings and never reads: the pongs it makes the
    # relay queue are bounded, and it is closed (1008) and counted; pings
    # alone are not activity (idle closes such a client), answers to the
    # relay's own pings are
    cfg5, stats5 = config(topo, "ping", f"""      wireguard: 127.0.0.1:{topo.gw_port}
      idle: 2s""")
    d = Daemon(cfg5, netns=topo.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)
    base = rss_kb(d.proc.pid)
    pr = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, sys.executable, SELF, "--probe",
                           "ping_flood", topo.gw_addr, str(WS_PORT), "200000"],
                          stdout=subprocess.PIPE, text=True)
    peak = base
    t0 = time.monotonic()
    while pr.poll() is None and time.monotonic() - t0 < 60:
        peak = max(peak, rss_kb(d.proc.pid))
        time.sleep(0.02)
    out = pr.communicate(timeout=10)[0]
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"error": out}
    got = wait_until(lambda: read_stats(stats5).get("ws.closed_overflow", 0) == 1, 3)
    ok(res.get("closed") and got,
       f"ping flood: the client that never reads is closed after {res.get('sent')} pings "
       "and counted (ws.closed_overflow)", (res, read_stats(stats5), d.output()[-800:]))
    ok(peak - base < 4 * 1024,
       f"ping flood: the relay's memory stays bounded (RSS {base} -> {peak} kB)", res)
    got = run_probe(topo.gw_ns, "ping_only", topo.gw_addr, WS_PORT, "8")
    ok(got.get("close") == 1001 and got.get("secs", 99) < 5,
       f"pings alone are not activity: closed as idle (1001) after {got.get('secs')} s", got)
    got = run_probe(topo.gw_ns, "pong", topo.gw_addr, WS_PORT, "5")
    ok(got.get("http") == 101 and got.get("close") == 0,
       "a client that answers the relay's pings stays connected past idle", got)
    ok(d.alive() and d.stop() == 0, "exit 0", d.output()[-800:])
    d.close()

    # ------------------------------------------------------------ /readyz when full
    # at max_conns the relay refuses new clients (503 at upgrade), and
    # /readyz says so, so that a load balancer sends them elsewhere
    HTTP_PORT, RZ_PORT = 9464, WS_PORT + 1
    cfg6, stats6 = config(topo, "readyz", f"""      wireguard: 127.0.0.1:{topo.gw_port}
      max_conns: 1""")
    with open(cfg6) as f:
        text = f.read().replace(f":{WS_PORT}\n", f":{RZ_PORT}\n")
    with open(cfg6, "w") as f:
        f.write(f"http_listen: 127.0.0.1:{HTTP_PORT}\n" + text)
    d = Daemon(cfg6, netns=topo.gw_ns)
    wait_until(lambda: "running" in d.output(), 10)

    def readyz():
        p = subprocess.run(["ip", "netns", "exec", topo.gw_ns, "curl", "-s", "-m", "3", "-o", "-",
                            "-w", "\n%{http_code}", f"http://127.0.0.1:{HTTP_PORT}/readyz"],
                           capture_output=True, text=True)
        body, _, code = p.stdout.rpartition("\n")
        return code, body
    before = readyz()
    pr = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, sys.executable, SELF, "--probe",
                           "pong", topo.gw_addr, str(RZ_PORT), "3"], stdout=subprocess.PIPE, text=True)
    wait_until(lambda: read_stats(stats6).get("ws.conns", 0) == 1, 5)
    full = readyz()
    pr.communicate(timeout=20)
    free = wait_until(lambda: readyz()[0] == "200", 5)
    ok(before[0] == "200" and full[0] == "503" and "full: 1 connections (max_conns)" in full[1] and free,
       f"/readyz: 200, then 503 while max_conns (1) connections are open, 200 again after",
       (before, full, readyz(), d.output()[-800:]))
    ok(d.stop() == 0, "exit 0 (/readyz daemon)", d.output()[-800:])
    d.close()

    # ------------------------------------------------------------ bridge: ping flood
    # a hostile gateway floods wsbridge with pings and never reads: the
    # bridge's pong queue is bounded, it drops the connection and counts it
    fg = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, sys.executable, SELF, "--fake-gw",
                           "8090", "200000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    net.track(fg, "fake gateway")
    fg.stdout.readline()
    blog = open(os.path.join(tmp, "bridge-flood.log"), "w")
    bp = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, BRIDGE, "-l", "127.0.0.1:51899",
                           "-u", "ws://127.0.0.1:8090/wg"], stdout=blog, stderr=subprocess.STDOUT)
    net.track(bp, "wsbridge flood")
    fg.stdout.readline()
    time.sleep(0.2)
    base = peak = rss_kb(bp.pid)
    fg.stdin.write("go\n")
    fg.stdin.flush()
    t0 = time.monotonic()
    while fg.poll() is None and time.monotonic() - t0 < 60:
        peak = max(peak, rss_kb(bp.pid))
        time.sleep(0.02)
    res = json.loads(fg.stdout.readline() or "{}")
    bp.send_signal(signal.SIGUSR1)
    wait_until(lambda: "overflow" in open(blog.name).read() and "connects" in open(blog.name).read(), 2)
    m = re.findall(r"overflow (\d+)", open(blog.name).read())
    ok(m and int(m[-1]) >= 1,
       f"wsbridge: a gateway flooding it with pings is dropped after {res.get('sent')} and counted (overflow)",
       (res, open(blog.name).read()[-600:]))
    ok(peak - base < 4 * 1024, f"wsbridge: its memory stays bounded (RSS {base} -> {peak} kB)", res)
    bp.terminate()
    bp.wait(5)

    # ------------------------------------------------------------ hybrid, 20 at once
    # source-bpf and source-wsock feed two pipelines that share the decoder,
    # the resolver and the installer: 20 clients over WebSockets and 2 over
    # plain UDP, all knocking at once
    hy = net.gateway_with_clients(22, underlay="10.205.0", tunnel="10.206.0")
    peers = os.path.join(tmp, "hybrid.peers.json")
    with open(peers, "w") as f:
        json.dump([{"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]} for c in hy.clients], f)
    cfg, stats3 = os.path.join(tmp, "hybrid.yaml"), os.path.join(tmp, "hybrid.stats.json")
    with open(cfg, "w") as f:
        f.write(f"""
stats_file: {stats3}
stats_interval: 50ms
stages:
  sniff: {{plugin: source-bpf, options: {{interface: {hy.gw_uplink}}}}}
  ws: {{plugin: source-wsock, options: {{listen: "{hy.gw_addr}:{WS_PORT}", path: /wg}}}}
  noise: {{plugin: decoder-noise}}
  static: {{plugin: resolver-static, options: {{peers_file: {peers}}}}}
  wg: {{plugin: installer-uapi, options: {{interface: {hy.gw_if}}}}}
pipelines:
  udp: [sniff, noise, static, wg]
  websocket: [ws, noise, static, wg]
""")
    d = Daemon(cfg, netns=hy.gw_ns)
    ok(wait_until(lambda: "running" in d.output() or not d.alive(), 10) and d.alive(),
       "hybrid: source-bpf and source-wsock in one daemon, sharing decoder, resolver, installer",
       d.output())
    over_ws, over_udp = hy.clients[:20], hy.clients[20:]
    for c in over_ws:
        block_udp(net, c, hy)
        bridge(net, c, hy)
    wait_until(lambda: read_stats(stats3).get("ws.upgraded", 0) >= 20, 15)
    pings = [subprocess.Popen(["ip", "netns", "exec", c.ns, "ping", "-n", "-c", "1", "-W", "8",
                               hy.gw_tunnel_ip], stdout=subprocess.DEVNULL) for c in hy.clients]
    codes = [p.wait(30) for p in pings]
    ok(codes[:20].count(0) == 20, f"20 WebSocket clients at once: {codes[:20].count(0)}/20 tunnels up",
       d.output())
    ok(codes[20:].count(0) == 2, f"and the 2 UDP clients beside them: {codes[20:].count(0)}/2", d.output())
    wait_until(lambda: read_stats(stats3).get("wg.installed", 0) >= 22, 3)
    s = read_stats(stats3)
    ok(s.get("wg.installed") == 22 and s.get("pipeline.websocket.ok", 0) >= 20
       and s.get("pipeline.udp.ok", 0) >= 2,
       "one install per client, each through its own pipeline", s)
    ok(d.stop() == 0, "exit 0")
    d.close()

    # ------------------------------------------------------------ behind a TLS proxy
    # source-wsock has no TLS: in production a TLS-terminating proxy sits in
    # front of it. Here stunnel terminates TLS on the gateway and a second
    # stunnel (client mode, verifying the certificate) carries the bridge's
    # WebSocket to it: the only way in is TLS.
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if not stunnel or not shutil.which("openssl"):
        skip("WebSocket behind a TLS-terminating proxy", "needs stunnel4 and openssl")
    else:
        tl = net.gateway_with_clients(1, underlay="10.207.0", tunnel="10.208.0")
        c = tl.clients[0]
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=wggwd-test", "-addext", "subjectAltName=DNS:wggwd-test",
                        "-keyout", os.path.join(tmp, "tls.key"), "-out", os.path.join(tmp, "tls.crt")],
                       check=True, capture_output=True)
        os.chmod(os.path.join(tmp, "tls.key"), 0o600)
        with open(os.path.join(tmp, "st-server.conf"), "w") as f:
            f.write(f"foreground = yes\npid =\n[ws]\naccept = {tl.gw_addr}:8443\n"
                    f"connect = 127.0.0.1:{WS_PORT}\ncert = {tmp}/tls.crt\nkey = {tmp}/tls.key\n")
        with open(os.path.join(tmp, "st-client.conf"), "w") as f:
            f.write(f"foreground = yes\npid =\n[ws]\nclient = yes\naccept = 127.0.0.1:8081\n"
                    f"connect = {tl.gw_addr}:8443\nCAfile = {tmp}/tls.crt\nverifyChain = yes\n"
                    f"checkHost = wggwd-test\n")
        for ns, conf in ((tl.gw_ns, "st-server.conf"), (c.ns, "st-client.conf")):
            net.track(subprocess.Popen(["ip", "netns", "exec", ns, stunnel, os.path.join(tmp, conf)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), "stunnel")
        peers = os.path.join(tmp, "tls.peers.json")
        with open(peers, "w") as f:
            json.dump([{"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]}], f)
        cfg, stats4 = os.path.join(tmp, "tls.yaml"), os.path.join(tmp, "tls.stats.json")
        with open(cfg, "w") as f:
            f.write(f"""
stats_file: {stats4}
stats_interval: 50ms
stages:
  ws: {{plugin: source-wsock, options: {{listen: "127.0.0.1:{WS_PORT}", path: /wg, max_conns_per_ip: 64}}}}
  noise: {{plugin: decoder-noise}}
  static: {{plugin: resolver-static, options: {{peers_file: {peers}}}}}
  wg: {{plugin: installer-uapi, options: {{interface: {tl.gw_if}}}}}
pipelines:
  websocket: [ws, noise, static, wg]
""")
        d = Daemon(cfg, netns=tl.gw_ns)
        wait_until(lambda: "running" in d.output() or not d.alive(), 10)
        block_udp(net, c, tl)
        log = open(os.path.join(tmp, "bridge-tls.log"), "w")
        net.track(subprocess.Popen(["ip", "netns", "exec", c.ns, BRIDGE, "-l", f"127.0.0.1:{BRIDGE_PORT}",
                                    "-u", "ws://127.0.0.1:8081/wg"], stdout=log, stderr=subprocess.STDOUT),
                  "wsbridge tls")
        net.wg_set(c.ns, c.iface, "peer", tl.gw_pub, "endpoint", f"127.0.0.1:{BRIDGE_PORT}")
        wait_until(lambda: read_stats(stats4).get("ws.upgraded", 0) >= 1, 10)
        ms = wgnet.first_ping_ms(c.ns, tl.gw_tunnel_ip, 5)
        ok(ms is not None, f"behind a TLS-terminating proxy (stunnel, certificate verified): tunnel up ({ms} ms)",
           d.output() + open(log.name).read())
        ok(d.stop() == 0, "exit 0")
        d.close()

done()
