#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""The body of bench/push.sh (see there)."""
import base64
import json
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
from tap import BUILD, Daemon, wait_until  # noqa: E402
import natsd  # noqa: E402
import wgnet  # noqa: E402

tmp = tempfile.mkdtemp(prefix="bench-push-")
_n = [0]


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))] if v else float("nan")


def config(srv, topo, durable, store):
    _n[0] += 1
    st = f"""
  store:
    plugin: store-sqlite
    options:
      path: {tmp}/b{_n[0]}.db""" if store else ""
    path = os.path.join(tmp, f"c{_n[0]}.yaml")
    with open(path, "w") as f:
        f.write(f"""
log_level: warn
stages:
  nats:
    plugin: source-nats
    options:
      servers: [{srv.url}]
      subject: bench.{durable}
      durable: {durable}
      max_in_flight: 1024
      allowed_prefixes: [10.0.0.0/8]{st}
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}
pipelines:
  push: [nats, {"store, " if store else ""}wg]
""")
    return path


def ips(i, nips):
    """Message i's nips allowed IPs: host routes, unique across messages."""
    return [f"10.{100 + q // 65536}.{q // 256 % 256}.{q % 256}/32"
            for q in range(i * nips, (i + 1) * nips)]


def run(srv, topo, cl, n, durable, store=False, rate=None, nips=1):
    subject = f"bench.{durable}"
    d = Daemon(config(srv, topo, durable, store))
    try:
        info = cl.js_api(f"STREAM.INFO.BENCH")
        base = info["state"]["last_seq"]
        # bind the consumer first: one message, waited for
        acks = {}
        lock = threading.Lock()
        done = threading.Event()
        want = [n + 1]

        def on_ack(m):
            t = time.monotonic()
            seq = int(m.subject.split(".")[5])
            with lock:
                acks.setdefault(seq, t)
                if len(acks) >= want[0]:
                    done.set()
        cl.sub(f"$JS.ACK.BENCH.{durable}.>", on_ack)
        cl.flush()
        warm = base64.b64encode(os.urandom(32)).decode()
        cl.pub(subject, json.dumps({"op": "add", "public_key": warm, "version": 1,
                                    "allowed_ips": ["10.99.255.254/32"]}))
        if not wait_until(lambda: len(acks) >= 1, 15):
            raise RuntimeError(f"no ACK for the first message: {d.output()[-2000:]}")
        keys = [base64.b64encode(os.urandom(32)).decode() for _ in range(n)]
        msgs = [json.dumps({"op": "add", "public_key": k, "version": 1,
                            "allowed_ips": ips(i, nips)}).encode()
                for i, k in enumerate(keys)]
        tpub = []
        t0 = time.monotonic()
        for i, m in enumerate(msgs):
            if rate:
                due = t0 + i / rate
                while time.monotonic() < due:
                    time.sleep(max(0.0, due - time.monotonic()))
            tpub.append(time.monotonic())
            cl.pub(subject, m)
        if not done.wait(120):
            raise RuntimeError(f"only {len(acks) - 1}/{n} ACKs: {d.output()[-2000:]}")
        lat = []
        last = 0.0
        for i in range(n):
            t = acks[base + 2 + i]
            lat.append((t - tpub[i]) * 1000.0)
            last = max(last, t)
        return n / (last - tpub[0]), pct(lat, 50), pct(lat, 99)
    finally:
        d.stop()
        d.close()


def setconf(net, topo, n, nips=1):
    """`wg setconf` of n fresh peers (the same allowed IPs as a push of n)
    on the gateway's interface, restarted empty first: peers per second."""
    net.restart_gateway(topo)
    path = os.path.join(tmp, f"setconf{n}.conf")
    with open(path, "w") as f:
        f.write(f"[Interface]\nPrivateKey = {topo.gw_priv}\nListenPort = {topo.gw_port}\n")
        for i in range(n):
            k = base64.b64encode(os.urandom(32)).decode()
            f.write(f"[Peer]\nPublicKey = {k}\nAllowedIPs = {', '.join(ips(i, nips))}\n")
    t0 = time.monotonic()
    net.run(topo.gw_ns, "wg", "setconf", topo.gw_if, path)
    dt = time.monotonic() - t0
    got = len(net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"])
    if got != n:
        raise RuntimeError(f"wg setconf: {got}/{n} peers on {topo.gw_if}")
    net.restart_gateway(topo)
    return n / dt


def main():
    why = wgnet.missing() or natsd.missing()
    if why:
        print(f"# skipped: {why}")
        return 0
    have_store = os.path.exists(os.path.join(BUILD, "plugins", "store-sqlite", "store-sqlite.so"))
    srv = natsd.Server()
    try:
        with wgnet.Net("bpu") as net:
            topo = net.gateway_with_clients(0)
            cl = natsd.Client(srv.port)
            cl.stream_create("BENCH", ["bench.>"])
            out = []
            sc = []  # measured next to each 10^4 push: the ratio is of neighbours
            for k in (3, 4):
                if k == 4:
                    sc.append(setconf(net, topo, 10 ** 4))
                r, p50, p99 = run(srv, topo, cl, 10 ** k, f"d{k}")
                out += [(f"push_per_s_1e{k}", f"{r:.0f}", "msg/s"),
                        (f"push_p50_ms_1e{k}", f"{p50:.2f}", "ms"),
                        (f"push_p99_ms_1e{k}", f"{p99:.2f}", "ms")]
                if k == 4:
                    head = (r, p99)
                net.restart_gateway(topo)  # start each run from an empty interface
            r, p50, p99 = run(srv, topo, cl, 1000, "paced", rate=200)
            out += [("push_paced_p50_ms", f"{p50:.2f}", "ms"), ("push_paced_p99_ms", f"{p99:.2f}", "ms")]
            net.restart_gateway(topo)
            r, p50, p99 = run(srv, topo, cl, 50, "big", rate=10, nips=1000)
            out += [("push_1000ips_p50_ms", f"{p50:.2f}", "ms"),
                    ("push_1000ips_p99_ms", f"{p99:.2f}", "ms")]
            net.restart_gateway(topo)
            if have_store:
                for k in (3, 4):
                    if k == 4:
                        sc.append(setconf(net, topo, 10 ** 4))
                    r, p50, p99 = run(srv, topo, cl, 10 ** k, f"s{k}", store=True)
                    out += [(f"push_store_per_s_1e{k}", f"{r:.0f}", "msg/s"),
                            (f"push_store_p50_ms_1e{k}", f"{p50:.2f}", "ms"),
                            (f"push_store_p99_ms_1e{k}", f"{p99:.2f}", "ms")]
                    net.restart_gateway(topo)
                    if k == 4:
                        out += [("push_vs_setconf", f"{r / sc[-1]:.2f}", "ratio")]
            out += [("setconf_per_s_1e4", f"{sum(sc) / len(sc):.0f}", "peer/s"),
                    ("push_nostore_vs_setconf", f"{head[0] / sc[0]:.2f}", "ratio")]
            out += [("push_p99_ms", f"{head[1]:.2f}", "ms")]
            cl.close()
            for name, v, unit in out:
                print(f"{name} {v} {unit}", flush=True)
    finally:
        srv.cleanup()
    return 0


sys.exit(main())
