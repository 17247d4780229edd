#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""bench/run jit: time to a working tunnel for fresh clients of a
wireguard-go gateway, per completion mode, side by side in one run.

Each client pings the gateway's tunnel address once: the first echo waits
for the handshake, so its round-trip time is the client's time from its
first initiation to a working tunnel. Prints `name value unit` lines.

The honest baseline (issue #17): the same kind of fresh client through a
gateway that has its peer installed ahead of time with no endpoint (as
after a push), the daemon running with the same stages. For resolver-static
and for resolver-http against a local HTTP API (in the gateway's
namespace: below), a JIT gateway and a pre-installed one are built side
by side and their clients ping in turns (one JIT, one
pre-installed), so that the machine's noise falls on both alike:
jit_{p50,p99}_ms_{static,http}, preinstalled_{p50,p99}_ms_{static,http},
jit_vs_preinstalled_{p50,p99}_{static,http} (goal: <= 1.2 at p50, <= 1.5
at p99).

Where the difference goes (bd_*, JIT_BD_N knocks each: JIT with
resolver-static, pre-installed, JIT with resolver-http as bd_http_*; all
completion reinject): a capture in the gateway's namespace (AF_PACKET,
kernel receive times, this script's --capture mode) and the core's
timeline log line (decoded/resolved/installed, from the source's read)
give, p50 in ms:
  bd_wire_to_seen_ms          the capture's time against the source's
                              (both the kernel's receive time: ~0)
  bd_wire_to_read_ms          the initiation on the wire -> read by the
                              source (the loop's wake-up; `ctl why`)
  bd_sniff_to_decode_ms       read by the source -> decoded
  bd_decode_to_resolve_ms     decoded -> resolved
  bd_resolve_to_install_ms    resolved -> installed (the UAPI set answered)
  bd_install_to_reinject_ms   installed -> the initiation re-sent (on lo)
  bd_reinject_to_response_ms  re-sent -> the gateway's response on the wire
  bd_init_to_response_ms      initiation on the wire -> response (all of it)
  bd_pre_init_to_response_ms  the same for a pre-installed peer
  bd_response_to_data_ms      response -> the client's first data packet
                              (the gateway's handshake completed)
  bd_first_handshake_ms       the initiation on the wire -> that handshake,
                              as the daemon reads it from the interface
                              (`ctl why` handshake_ms)
The JIT overhead over a pre-installed peer: bd_jit_overhead_ms
(bd_init_to_response_ms - bd_pre_init_to_response_ms), bd_http_... The
same per install, live: `wggwd ctl --json why KEY` (timeline: decoded_ms,
resolved_ms, installed_ms, handshake_ms) and the histograms
wggwd_handshake_duration_seconds / wggwd_handshake_after_install_seconds.

The HTTP API (JIT_HTTP_SERVER): c (default), bench/cp_http.c (cp-http,
built with the daemon: one epoll loop, keep-alive, answers made ahead), a
control plane's speed; python, tests/integration/http_api.py (a thread per
connection; about 0.5 ms an answer on a quiet machine). With http: the
JIT gateway's API's answer time as a keep-alive client at knock pace sees
it, http_api_answer_us_<server> and http_api_answer_p99_us_<server> (curl,
30 GETs at 25/s), and the connections and requests resolver-http made to
it, http_api_connections_<server> and http_api_requests_<server> (one
connection, kept alive, is the expected).

The side-by-side and breakdown gateways each have one client that takes a
fresh key for every knock (rekeyed()), not a wireguard-go per knock: every
wireguard-go holds an inotify instance and root has 128 in all
(fs.inotify.max_user_instances) on a machine other tests share; past it
wireguard-go fails ("Failed to listen on uapi socket: too many open
files"). JIT_PRE_N (100) and JIT_BD_N (20) knocks; JIT_ONLY=modes,static,
http,breakdown runs a part; JIT_NOISE_OPTS="threads: 0" sets
decoder-noise's options.

The kernel's figures (the same ratio, resolver-static): `tests/vm/run
--bench jit-vm` runs bench/jit-vm.sh in the test VM."""
import atexit
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import wgnet  # noqa: E402

BUILD = os.environ.get("WGGWD_BUILD", os.path.join(ROOT, "build"))
N = int(os.environ.get("JIT_N", "50"))
N_NONE = int(os.environ.get("JIT_N_NONE", "6"))
N_PRE = int(os.environ.get("JIT_PRE_N", "100"))  # p99 of 100: the second slowest
N_BD = int(os.environ.get("JIT_BD_N", "20"))
NOISE_OPTS = os.environ.get("JIT_NOISE_OPTS", "")  # e.g. "threads: 0" (flow style)
CP_HTTP = os.path.join(BUILD, "plugins", "resolver-http", "cp-http")
HTTP_SERVER = os.environ.get("JIT_HTTP_SERVER", "c")  # c (bench/cp_http.c) or python
API_PROBE_N = 30  # api_answer_us's GETs
CAPTURE = len(sys.argv) == 3 and sys.argv[1] == "--capture"
tmp = None if CAPTURE else tempfile.mkdtemp(prefix="wggwd-bench-jit-")
if tmp and not os.environ.get("JIT_KEEP"):  # JIT_KEEP=1: keep the logs and captures
    atexit.register(shutil.rmtree, tmp, True)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def start_daemon(net, topo, mode, name, resolver="static", api_url=None, log_level="warn"):
    peers = os.path.join(tmp, f"{name}.json")
    with open(peers, "w") as f:
        json.dump([{"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]}
                   for c in getattr(topo, "keys", topo.clients)], f)
    if resolver == "http":
        # source_rate 0: every client here is in one /24, and the default
        # (5/s per source network, burst 20) would drop the 21st knock
        # (budget) into the client's 5 s retry: flood policy, not JIT's cost
        res = (f'{{plugin: resolver-http, options: {{url: "{api_url}", '
               f'allowed_prefixes: [{topo.tunnel_net}], source_rate: 0}}}}')
    else:
        res = f"{{plugin: resolver-static, options: {{peers_file: {peers}}}}}"
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
log_level: {log_level}
control_socket: {tmp}/{name}.ctl
stages:
  sniff: {{plugin: source-bpf, options: {{interface: {topo.gw_uplink}}}}}
  noise: {{plugin: decoder-noise{f", options: {{{NOISE_OPTS}}}" if NOISE_OPTS else ""}}}
  res: {res}
  wg: {{plugin: installer-uapi, options: {{interface: {topo.gw_if}, completion: {mode}}}}}
pipelines:
  pull: [sniff, noise, res, wg]
""")
    logpath = os.path.join(tmp, f"{name}.log")
    log = open(logpath, "w")
    d = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, f"{BUILD}/wggwd", "run", "-c", cfg],
                         stdout=log, stderr=log)
    d.logpath = logpath
    d.ctl = os.path.join(tmp, f"{name}.ctl")
    time.sleep(0.3)  # start-up: a benchmark, not a test
    return d


def stop(p):
    p.terminate()
    p.wait()


# the python one: tests/integration/http_api.py, counting its connections;
# both print their URL, and when their stdin closes `connections N requests N`
PY_API = """
import json, sys
sys.path.insert(0, sys.argv[1])
from http_api import Api
a = Api()
a.answers = json.load(open(sys.argv[2]))
conns, accept = [0], a.srv.process_request
def counted(req, addr):
    conns[0] += 1
    accept(req, addr)
a.srv.process_request = counted
print(a.url(), flush=True)
sys.stdin.read()
print(f"connections {conns[0]} requests {a.count()}", flush=True)
"""


def start_api(ns, clients):
    """The control plane's HTTP API inside ns, answering each client's key
    (JIT_HTTP_SERVER: c, bench/cp_http.c, or python); (Popen, url)."""
    answers = os.path.join(tmp, f"api-{ns}.json")
    with open(answers, "w") as f:
        json.dump({c.pub: {"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]}
                   for c in clients}, f)
    if HTTP_SERVER == "c":
        cmd = [CP_HTTP, answers]
    else:
        cmd = [sys.executable, "-c", PY_API, os.path.join(ROOT, "tests", "integration"), answers]
    p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return p, p.stdout.readline().strip()


def stop_api(p):
    """Stops an API of start_api() (closes its stdin): {connections,
    requests} it served."""
    try:
        out, _ = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    w = out.split()
    return {w[i]: int(w[i + 1]) for i in range(0, len(w) - 1, 2) if w[i + 1].isdigit()}


def api_answer_us(ns, url, key, n=API_PROBE_N):
    """The API's answer time as a keep-alive client at knock pace sees it
    (curl, n GETs of key, 25/s, in ns): (p50, p99) in us, the first (its
    connect) left out; None without curl."""
    if not shutil.which("curl"):
        return None
    u = url.replace("{public_key}", urllib.parse.quote(key, safe=""))
    args = []
    for _ in range(n):
        args += ["-o", "/dev/null", u]
    p = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "--rate", "25/s",
                        "-w", "%{time_total}\\n"] + args, capture_output=True, text=True)
    t = [float(x) * 1e6 for x in p.stdout.split()[1:]]
    return (pct(t, 50), pct(t, 99)) if t else None


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
    stop(d)
    return times


def burst(net, mode, n, tag):
    topo = net.gateway_with_clients(n, underlay=f"10.{tag}.0", tunnel=f"10.{tag + 1}.0")
    d = start_daemon(net, topo, mode, f"burst-{mode}")
    t0 = time.monotonic()
    ps = [subprocess.Popen(["ip", "netns", "exec", c.ns, "ping", "-n", "-c", "1", "-W", "15",
                            topo.gw_tunnel_ip], stdout=subprocess.DEVNULL) for c in topo.clients]
    up = sum(1 for p in ps if p.wait() == 0)
    elapsed = (time.monotonic() - t0) * 1000
    stop(d)
    return elapsed, up


def rekeyed(net, n, underlay, tunnel, pre):
    """A gateway with one client that takes a fresh key for every knock
    (take_key): n keys, key i with tunnel address <tunnel>.(10+i); pre:
    all of them installed on the gateway ahead of time, without endpoint.
    One wireguard-go per side, not one per knock: each holds an inotify
    instance (its UAPI socket), and root's are few (max_user_instances,
    128 by default) on a machine where other tests run too."""
    topo = net.gateway_with_clients(1, underlay=underlay, tunnel=tunnel)
    topo.keys = []
    for i in range(n):
        priv, pub = wgnet.genkey()
        topo.keys.append(wgnet.Client(priv=priv, pub=pub, tunnel_ip=f"{tunnel}.{10 + i}"))
        if pre:
            net.wg_set(topo.gw_ns, topo.gw_if, "peer", pub, "allowed-ips", f"{tunnel}.{10 + i}/32")
    return topo


def take_key(net, topo, i):
    """The client starts over as key i: a new private key and tunnel
    address, and the gateway as a new peer (wireguard-go sends no second
    initiation to a peer within 5 s of the last)."""
    c, k = topo.clients[0], topo.keys[i]
    net.wg_set(c.ns, c.iface, "peer", topo.gw_pub, "remove", private_key=k.priv)
    net.wg_set(c.ns, c.iface, "peer", topo.gw_pub, "endpoint", f"{topo.gw_addr}:{topo.gw_port}",
               "allowed-ips", topo.tunnel_net)
    net.run(c.ns, "ip", "addr", "flush", "dev", c.iface)
    net.addr(c.ns, c.iface, f"{k.tunnel_ip}/24")
    return c


def side_by_side(net, resolver, n, tag):
    """A JIT gateway and a pre-installed one (peers without endpoint), the
    same daemon on both; their clients knock in turns. (jit, pre) ms, and
    for http the JIT gateway's API: its answer time (api_answer_us) and the
    connections and requests the daemon made to it."""
    jit = rekeyed(net, n, f"10.{tag}.0", f"10.{tag + 1}.0", False)
    pre = rekeyed(net, n, f"10.{tag + 2}.0", f"10.{tag + 3}.0", True)
    apis, daemons, api = [], [], {}
    for name, topo in (("jit", jit), ("pre", pre)):
        url = None
        if resolver == "http":
            p, url = start_api(topo.gw_ns, topo.keys)
            apis.append(p)
            if topo is jit:
                api["answer_us"] = api_answer_us(topo.gw_ns, url, topo.keys[0].pub)
        daemons.append(start_daemon(net, topo, "reinject", f"{name}-{resolver}", resolver, url))
    tj, tp = [], []
    for i in range(n):
        # alternate which goes first, so neither always follows the other
        order = ((jit, tj), (pre, tp)) if i % 2 == 0 else ((pre, tp), (jit, tj))
        for topo, out in order:
            out.append(first_ping_ms(take_key(net, topo, i).ns, topo.gw_tunnel_ip))
    for p in daemons:
        stop(p)
    for i, p in enumerate(apis):
        got = stop_api(p)
        if i == 0 and got:  # the JIT gateway's, less api_answer_us's (one connection)
            probe = api["answer_us"] is not None
            api["connections"] = got.get("connections", 0) - probe
            api["requests"] = got.get("requests", 0) - API_PROBE_N * probe
    return tj, tp, api


# ------------------------------------------------------------- breakdown

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python lacks the name


def capture_main(out_path):
    """--capture: inside a namespace, log every UDP packet with a
    WireGuard message type (1-4) as `ns ifname pkttype src sport dst dport
    type`, ns a kernel receive time (CLOCK_REALTIME), until SIGTERM."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    with open(out_path, "w", buffering=1) as out:
        print("ready", file=out)
        while True:
            data, anc, _, addr = s.recvmsg(256, 64)
            ts = time.time_ns()
            for lvl, typ, val in anc:
                if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", val[:16])
                    ts = sec * 1000000000 + nsec
            off = 14  # ethernet framing, lo's too (tun devices carry no UDP of ours)
            if len(data) < off + 29 or data[off] >> 4 != 4 or data[off + 9] != 17:
                continue
            ihl = (data[off] & 15) * 4
            u = off + ihl
            if len(data) < u + 9:
                continue
            sport, dport = struct.unpack("!HH", data[u:u + 4])
            wtype = data[u + 8]
            if wtype not in (1, 2, 3, 4) or data[u + 9:u + 12] != b"\0\0\0":
                continue
            src = socket.inet_ntoa(data[off + 12:off + 16])
            dst = socket.inet_ntoa(data[off + 16:off + 20])
            print(ts, addr[0], addr[2], src, sport, dst, dport, wtype, file=out)


def start_capture(ns, name):
    path = os.path.join(tmp, f"cap-{name}.txt")
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                          "--capture", path])
    wgnet.wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, 5)
    return p, path


def read_capture(path):
    rows = []
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) == 8:
                rows.append((int(w[0]), w[1], int(w[2]), w[3], int(w[4]), w[5], int(w[6]), int(w[7])))
    return rows


def first(rows, t0, t1, cond):
    """The time of the first row in [t0, t1) that cond() takes, or None."""
    for r in rows:
        if t0 <= r[0] < t1 and cond(r):
            return r[0]
    return None


def timeline(logpath):
    """{key: (seen_at_ns, decoded_ms, resolved_ms, installed_ms)} from the
    core's info line (pipeline.c: "seen at S.US, decoded X ms, ...")."""
    got = {}
    with open(logpath, errors="replace") as f:
        for line in f:
            if " seen at " not in line or "installed" not in line:
                continue
            try:
                key = line.split("peer ", 1)[1].split()[0]
                seen = line.split("seen at ", 1)[1].split(",")[0]
                sec, us = seen.split(".")
                ms = [float(line.split(f"{w} ", 1)[1].split()[0]) for w in ("decoded", "resolved", "installed")]
            except (IndexError, ValueError):
                continue
            got.setdefault(key, (int(sec) * 1000000000 + int(us) * 1000, *ms))
    return got


def why_timeline(d, key):
    """The newest outcome's timeline for key (`wggwd ctl why`), or {}."""
    p = subprocess.run([f"{BUILD}/wggwd", "ctl", "--socket", d.ctl, "--json", "why", key],
                       capture_output=True, text=True, timeout=30)
    try:
        return (json.loads(p.stdout).get("outcomes") or [{}])[0].get("timeline", {})
    except ValueError:
        return {}


def breakdown(net, n, tag):
    """JIT (resolver-static, reinject) and pre-installed, with a capture
    and the core's timeline. {name: [ms per client]}."""
    res = {}
    add = lambda name, v: res.setdefault(name, []).append(v)  # noqa: E731
    for kind in ("jit", "pre", "http"):
        topo = rekeyed(net, n, f"10.{tag}.0", f"10.{tag + 1}.0", kind == "pre")
        tag += 2
        api, url = start_api(topo.gw_ns, topo.keys) if kind == "http" else (None, None)
        d = start_daemon(net, topo, "reinject", f"bd-{kind}", "http" if api else "static", url,
                         log_level="info")
        cap, path = start_capture(topo.gw_ns, kind)
        starts = []  # each knock's packets: from its start to the next's
        for i in range(n):
            c = take_key(net, topo, i)
            starts.append(time.time_ns())
            first_ping_ms(c.ns, topo.gw_tunnel_ip)
        time.sleep(0.2)
        starts.append(time.time_ns())
        time.sleep(1.2)  # the daemon reads the first handshakes once a second
        why = {k.pub: why_timeline(d, k.pub) for k in topo.keys} if kind != "pre" else {}
        for p in (cap, d):
            stop(p)
        if api:
            stop_api(api)
        rows = read_capture(path)
        pre = "http_" if kind == "http" else ""
        tl = timeline(d.logpath)
        up, a = topo.gw_uplink, topo.clients[0].addr
        for i, k in enumerate(topo.keys):
            t0, t1 = starts[i], starts[i + 1]
            t_init = first(rows, t0, t1, lambda r: r[1] == up and r[3] == a and r[7] == 1)
            t_resp = first(rows, t0, t1, lambda r: r[1] == up and r[5] == a and r[7] == 2)
            t_data = first(rows, t0, t1, lambda r: r[1] == up and r[3] == a and r[7] == 4)
            if t_init is None or t_resp is None:
                continue
            if kind == "pre":
                add("pre_init_to_response", (t_resp - t_init) / 1e6)
                if t_data:
                    add("pre_response_to_data", (t_data - t_resp) / 1e6)
                continue
            t_re = first(rows, t0, t1, lambda r: r[1] == "lo" and r[3] == a and r[7] == 1)
            if k.pub in tl and t_re is not None:
                seen, dec, rsv, ins = tl[k.pub]
                add(pre + "wire_to_seen", (seen - t_init) / 1e6)
                add(pre + "sniff_to_decode", dec)
                add(pre + "decode_to_resolve", rsv - dec)
                add(pre + "resolve_to_install", ins - rsv)
                read = why.get(k.pub, {}).get("read_ms")
                if read is not None:
                    add(pre + "wire_to_read", read)
                    add(pre + "install_to_reinject", (t_re - seen) / 1e6 - read - ins)
                add(pre + "reinject_to_response", (t_resp - t_re) / 1e6)
            if "handshake_ms" in why.get(k.pub, {}):
                add(pre + "first_handshake", why[k.pub]["handshake_ms"])
            add(pre + "init_to_response", (t_resp - t_init) / 1e6)
            if t_data:
                add(pre + "response_to_data", (t_data - t_resp) / 1e6)
    return res


def main():
    why = wgnet.missing()
    if why:
        sys.exit(f"bench jit: {why}")
    res = {}
    only = os.environ.get("JIT_ONLY", "")  # development: a comma list of parts
    want = lambda part: not only or part in only.split(",")  # noqa: E731
    if HTTP_SERVER not in ("c", "python"):
        sys.exit(f"bench jit: JIT_HTTP_SERVER is c or python, not {HTTP_SERVER!r}")
    if HTTP_SERVER == "c" and (want("http") or want("breakdown")) and not os.access(CP_HTTP, os.X_OK):
        sys.exit(f"bench jit: no {CP_HTTP} (ninja -C {BUILD}), or JIT_HTTP_SERVER=python")
    if want("modes"):
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
        print(f"burst50_up {burst_up} clients", flush=True)
    for resolver, tag in (("static", 160), ("http", 164)):
        if not want(resolver):
            continue
        with wgnet.Net("bj") as net:
            tj, tp, api = side_by_side(net, resolver, N_PRE, tag)
        for p in (50, 99):
            print(f"jit_p{p}_ms_{resolver} {pct(tj, p):.2f} ms")
            print(f"preinstalled_p{p}_ms_{resolver} {pct(tp, p):.2f} ms")
        for p in (50, 99):
            print(f"jit_vs_preinstalled_p{p}_{resolver} {pct(tj, p) / pct(tp, p):.2f} x")
        print(f"preinstalled_clients_{resolver} {len(tp)} clients", flush=True)
        if api.get("answer_us"):  # which API: in the names (JIT_HTTP_SERVER)
            print(f"http_api_answer_us_{HTTP_SERVER} {api['answer_us'][0]:.0f} us")
            print(f"http_api_answer_p99_us_{HTTP_SERVER} {api['answer_us'][1]:.0f} us")
        if "connections" in api:
            print(f"http_api_connections_{HTTP_SERVER} {api['connections']} connections")
            print(f"http_api_requests_{HTTP_SERVER} {api['requests']} requests", flush=True)
    if want("breakdown"):
        with wgnet.Net("bj") as net:
            bd = breakdown(net, N_BD, 168)
        for k, v in bd.items():
            if v:
                print(f"bd_{k}_ms {pct(v, 50):.3f} ms")
        for r in ("", "http_"):
            if bd.get(f"{r}init_to_response") and bd.get("pre_init_to_response"):
                over = pct(bd[f"{r}init_to_response"], 50) - pct(bd["pre_init_to_response"], 50)
                print(f"bd_{r}jit_overhead_ms {over:.3f} ms")


if __name__ == "__main__":
    if CAPTURE:
        capture_main(sys.argv[2])
    else:
        main()
