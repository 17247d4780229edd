#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""Steer (issue 15): `wggwd ctl` against a daemon in a gateway namespace
(source-bpf -> decoder-noise -> store-sqlite -> resolver-http ->
installer-uapi on wireguard-go), its control plane a small HTTP API in the
same namespace whose answers the test changes. An unknown key knocks:
`ctl why` names unknown_key and the stage; the key is added at the control
plane, the negative cache still refuses it, `ctl cache flush --negative
KEY` and the next knock installs without waiting for negative_ttl. Also
peers (origin, cache expiry), lookup, evict, stats, the 0600 socket, the
drop log line, and `ctl reload` of a bad file (non-zero, the old one keeps
running) then of a good one."""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import wgnet  # noqa: E402
from tap import WGGWD, Daemon, done, ok, skip, wait_until  # noqa: E402

CHECKS = 21
why = wgnet.missing()
if why:
    for i in range(CHECKS):
        skip(f"ctl {i + 1}", why)
    done()

tmp = tempfile.mkdtemp(prefix="wggwd-ctl-")
os.chmod(tmp, 0o700)
SOCK = os.path.join(tmp, "ctl.sock")
ANSWERS = os.path.join(tmp, "answers.json")

# the control plane: GET /v1/peers/<key> from answers.json (re-read each time)
API = r'''
import json, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        key = urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
        with open(sys.argv[2]) as f:
            ans = json.load(f).get(key)
        body = json.dumps(ans).encode() if ans else b'{"error": "unknown"}'
        self.send_response(200 if ans else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def ctl(*args, json_out=False):
    cmd = [WGGWD, "ctl", "--socket", SOCK] + (["--json"] if json_out else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if json_out:
        try:
            return p.returncode, json.loads(p.stdout), p.stderr
        except ValueError:
            return p.returncode, None, p.stdout + p.stderr
    return p.returncode, p.stdout, p.stderr


def answers(clients):
    with open(ANSWERS, "w") as f:
        json.dump({c.pub: {"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]}
                   for c in clients}, f)


def config(topo, path, port, broken=False):
    with open(path, "w") as f:
        f.write(f"""
control_socket: {SOCK}
stages:
  sniff:
    plugin: source-bpf
    options:
      interface: {topo.gw_uplink}
  noise:
    plugin: decoder-noise
  cache:
    plugin: store-sqlite
    options:
      path: {tmp}/store.db
      negative_ttl: 1h
  api:
    plugin: resolver-http
    options:
      url: http://127.0.0.1:{port}/v1/peers/{{public_key}}
      allowed_prefixes: [{topo.tunnel_net}]
      backoff: 0s
  wg:
    plugin: installer-uapi
    options:
      interface: {topo.gw_if}
pipelines:
  pull: [sniff, noise, cache, api, wg{", nosuchstage" if broken else ""}]
""")


def knock(net, c, topo, timeout=3):
    """A fresh handshake from client c: its session forgotten, then a ping."""
    net.wg_set(c.ns, c.iface, "peer", topo.gw_pub, "remove")
    net.wg_set(c.ns, c.iface, "peer", topo.gw_pub, "endpoint", f"{topo.gw_addr}:{topo.gw_port}",
               "allowed-ips", topo.tunnel_net)
    return wgnet.first_ping_ms(c.ns, topo.gw_tunnel_ip, timeout)


with wgnet.Net("ctl") as net:
    topo = net.gateway_with_clients(2)
    known, stranger = topo.clients
    answers([known])
    port = 18080
    api = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, sys.executable, "-c", API,
                            str(port), ANSWERS])
    net.track(api, "control plane")
    up = wait_until(lambda: subprocess.run(
        ["ip", "netns", "exec", topo.gw_ns, sys.executable, "-c",
         f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"],
        capture_output=True).returncode == 0, 10, 0.05)
    if not up:
        print("# the control plane did not come up", flush=True)
    cfg = os.path.join(tmp, "wggwd.yaml")
    config(topo, cfg, port)
    d = Daemon(cfg, netns=topo.gw_ns)
    ok(wait_until(lambda: "running" in d.output() or not d.alive(), 10) and d.alive()
       and os.path.exists(SOCK), "daemon runs with control_socket", d.output())
    ok(stat.S_ISSOCK(os.stat(SOCK).st_mode) and stat.S_IMODE(os.stat(SOCK).st_mode) == 0o600,
       f"the control socket is mode 0600 ({oct(stat.S_IMODE(os.stat(SOCK).st_mode))})")

    ms = knock(net, known, topo)
    ok(ms is not None, f"known key: tunnel up ({ms} ms)", d.output())
    rc, o, err = ctl("peers", json_out=True)
    p = [x for x in (o or {}).get("peers", []) if x.get("key") == known.pub]
    ok(rc == 0 and p and p[0].get("origin") == "pull" and p[0].get("installed_at")
       and p[0].get("cache", {}).get("cache", {}).get("cached") is True
       and p[0]["cache"]["cache"].get("expires_at", 0) > 0,
       "ctl peers: origin pull, install time, the cached answer's expiry", (rc, o, err))
    rc, out, err = ctl("peers")
    ok(rc == 0 and known.pub in out and "ORIGIN" in out, "ctl peers (text)", out + err)

    # --------------------------------------------------------- an unknown key
    ok(knock(net, stranger, topo, 2) is None, "unknown key: no tunnel")
    rc, o, err = ctl("why", stranger.pub, json_out=True)
    last = (o or {}).get("outcomes", [{}])[0] if (o or {}).get("outcomes") else {}
    ok(rc == 0 and last.get("reason") == "unknown_key" and last.get("stage") == "api"
       and last.get("verdict") == "drop",
       "ctl why KEY: unknown_key, at the resolver's stage (api)", (rc, o, err))
    rc, out, err = ctl("why", stranger.pub)
    ok(rc == 0 and "stage api" in out and "unknown_key" in out, "ctl why (text)", out + err)
    ok(f"{stranger.pub} dropped at api: unknown_key" in d.output(),
       "an info log line names the dropped key and the reason", d.output())

    # the control plane learns the key; the negative cache still says no
    answers([known, stranger])
    ok(knock(net, stranger, topo, 2) is None, "added at the control plane: still refused from the negative cache")
    rc, o, err = ctl("why", stranger.pub, json_out=True)
    last = o["outcomes"][0] if o and o.get("outcomes") else {}
    ok(last.get("reason") == "unknown_cached" and last.get("stage") == "cache",
       "ctl why: unknown_cached at the store (cache)", o)
    rc, out, err = ctl("cache", "flush", "--negative", stranger.pub)
    ok(rc == 0 and "cache:" in out and '"flushed":1' in out,
       "ctl cache flush --negative KEY", out + err)
    ms = knock(net, stranger, topo)
    ok(ms is not None and stranger.pub in net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"],
       f"the next knock installs without waiting for negative_ttl ({ms} ms)", d.output())

    def timeline():  # the install's time points, once its first handshake is seen
        o = ctl("why", stranger.pub, json_out=True)[1] or {}
        t = (o.get("outcomes") or [{}])[0].get("timeline", {})
        return t if "handshake_ms" in t else None
    t = wait_until(timeline, 5, 0.2)
    ok(t and 0 <= t["decoded_ms"] <= t["resolved_ms"] <= t["installed_ms"] <= t["handshake_ms"] < 5000
       and 0 <= t.get("read_ms", -1) <= t["handshake_ms"],
       "ctl why: the install's timeline, read, decoded <= resolved <= installed <= first handshake", t)

    # ------------------------------------------------------- lookup, evict
    rc, o, err = ctl("lookup", known.pub, json_out=True)
    ok(rc == 0 and o.get("found") is True and o["peer"]["allowed_ips"] == [f"{known.tunnel_ip}/32"]
       and o.get("stage") == "api", "ctl lookup KEY: the resolver's answer", (rc, o, err))
    rc, out, err = ctl("evict", known.pub)
    ok(rc == 0 and known.pub not in net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"],
       "ctl evict KEY: the peer is gone from the interface", out + err)
    rc, o, err = ctl("why", known.pub, json_out=True)
    ok(o and o["outcomes"][0].get("op") == "remove" and o["outcomes"][0].get("reason") == "operator",
       "ctl why: the eviction recorded (remove, operator)", o)

    # ------------------------------------------------------------- reload
    good = open(cfg).read()
    config(topo, cfg, port, broken=True)
    rc, out, err = ctl("reload")
    ok(rc != 0 and "not valid" in err and d.alive(),
       f"ctl reload of a bad file: exit {rc}, the error printed", out + err)
    rc, o, err = ctl("stats", json_out=True)
    ok(rc == 0 and o["stats"].get("pipeline.pull.items", 0) >= 3,
       "the old configuration keeps running (ctl stats answers)", (rc, o, err))
    with open(cfg, "w") as f:
        f.write(good)
    rc, out, err = ctl("reload")
    ok(rc == 0 and "reloaded" in out, "ctl reload of a good file: exit 0", out + err + d.output())
    rc = d.stop()
    ok(rc == 0 and not os.path.exists(SOCK), f"SIGTERM: exit {rc}, the socket removed", d.output())
    d.close()

# ------------------------------------------------------------- shadow mode
# An interface whose peers are installed ahead of time (the gateway before
# a move to JIT); the control plane knows only one of its two clients. In
# shadow mode the whole pull path runs beside it without changing it, and
# ctl why and the metrics tell what JIT would have done.
SHADOW_CHECKS = 6
plugins = subprocess.run([WGGWD, "plugins", "installer-uapi"], capture_output=True, text=True).stdout
if "shadow" not in plugins:
    for i in range(SHADOW_CHECKS):
        skip(f"shadow {i + 1}", "the installers have no shadow option in this build")
else:
    with wgnet.Net("shd") as net:
        topo = net.gateway_with_clients(2, gw_peers=True)
        known, stranger = topo.clients
        answers([known])
        port = 18081
        api = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, sys.executable, "-c", API,
                                str(port), ANSWERS])
        net.track(api, "control plane")
        wait_until(lambda: subprocess.run(
            ["ip", "netns", "exec", topo.gw_ns, sys.executable, "-c",
             f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"],
            capture_output=True).returncode == 0, 10, 0.05)
        cfg = os.path.join(tmp, "shadow.yaml")
        config(topo, cfg, port)
        with open(cfg) as f:
            text = f.read()
        with open(cfg, "w") as f:
            f.write(text.replace(f"interface: {topo.gw_if}\n",
                                 f"interface: {topo.gw_if}\n      shadow: true\n"))
        before = net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"]
        d = Daemon(cfg, netns=topo.gw_ns)
        ok(wait_until(lambda: "running" in d.output() or not d.alive(), 10) and d.alive(),
           "shadow: the daemon runs beside pre-installed peers", d.output())
        ms = [knock(net, c, topo) for c in (known, stranger)]
        ok(all(m is not None for m in ms), f"shadow: both clients up through their pre-installed peers ({ms} ms)")
        rc, o, err = ctl("why", known.pub, json_out=True)
        last = o["outcomes"][0] if o and o.get("outcomes") else {}
        ok(last.get("stage") == "wg" and "would install" in last.get("detail", ""),
           "shadow: ctl why names what JIT would have done (would install)", (o, d.output()))
        rc, o, err = ctl("why", stranger.pub, json_out=True)
        last = o["outcomes"][0] if o and o.get("outcomes") else {}
        ok(last.get("reason") == "unknown_key" and last.get("stage") == "api",
           "shadow: a knock JIT would have refused (unknown_key at api)", o)
        after = net.wg_show_dump(topo.gw_ns, topo.gw_if)["peers"]
        ok(sorted(after) == sorted(before) and
           all(after[k].get("allowed_ips") == before[k].get("allowed_ips") for k in before),
           "shadow: the interface is unchanged (same peers, same allowed IPs)", (before, after))
        rc, o, err = ctl("stats", json_out=True)
        s = (o or {}).get("stats", {})
        ok(s.get("wg.shadow_decisions_total.present") == 1 and s.get("pipeline.pull.drop.unknown_key") == 1
           and s.get("wg.installed", 0) == 0 and s.get("pipeline.pull.api.request_seconds.count") == 2
           and s.get("pipeline.pull.install.installed") == 0,
           "shadow: counted as would-install (present), a would-be miss (unknown_key), lookups timed, nothing installed",
           s)
        d.stop()
        d.close()
shutil.rmtree(tmp, ignore_errors=True)
done()
