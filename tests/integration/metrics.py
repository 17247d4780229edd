#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""See (issue 15): /metrics scraped by a real Prometheus (Debian's
`prometheus`, in the gateway's namespace), two JIT installs on wireguard-go
counted in wggwd_install_duration_seconds and in the time-to-handshake
histogram, `promtool check metrics` on the exposition, /healthz, and
/readyz following nats-server down and up again (source-nats' status)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import natsd  # noqa: E402
import wgnet  # noqa: E402
from tap import BUILD, TEST_PLUGINS, Daemon, done, ok, skip, wait_until  # noqa: E402

CHECKS = ["daemon runs with http_listen", "/healthz", "/readyz 200 once started",
          "promtool check metrics", "Prometheus: up == 1", "two JIT tunnels up",
          "Prometheus: wggwd_install_duration_seconds_count == 2",
          "Prometheus: wggwd_handshake_duration_seconds_count == 2",
          "labels, not names", "SIGTERM exit 0"]
why = wgnet.missing()
if not why and not (shutil.which("prometheus") and shutil.which("promtool")):
    why = "prometheus/promtool not installed (Debian package prometheus; tests/deps)"
if not why and not shutil.which("curl"):
    why = "curl is not installed"
tmp = tempfile.mkdtemp(prefix="wggwd-metrics-")


def http(ns, url):
    """(status, body) of GET url from inside namespace ns (None: none)."""
    cmd = ["curl", "-s", "-m", "3", "-o", "-", "-w", "\n%{http_code}", url]
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        return None, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    return int(code), body


def prom_query(ns, port, q):
    code, body = http(ns, f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
    if code != 200:
        return None
    try:
        res = json.loads(body)["data"]["result"]
    except (ValueError, KeyError):
        return None
    return [float(r["value"][1]) for r in res]


if why:
    for name in CHECKS:
        skip(name, why)
else:
    with wgnet.Net("mtr") as net:
        topo = net.gateway_with_clients(2)
        peers = os.path.join(tmp, "peers.json")
        with open(peers, "w") as f:
            json.dump([{"public_key": c.pub, "allowed_ips": [f"{c.tunnel_ip}/32"]}
                       for c in topo.clients], f)
        port, pport = 19587, 19590
        cfg = os.path.join(tmp, "jit.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
plugin_path: [{TEST_PLUGINS}]
http_listen: 127.0.0.1:{port}
control_socket: {tmp}/ctl.sock
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
      interface: {topo.gw_if}
pipelines:
  pull: [sniff, noise, static, wg]
""")
        d = Daemon(cfg, netns=topo.gw_ns)
        ok(wait_until(lambda: "running" in d.output() or not d.alive(), 10) and d.alive(),
           "daemon runs with http_listen", d.output())
        code, body = http(topo.gw_ns, f"http://127.0.0.1:{port}/healthz")
        ok(code == 200, "/healthz: 200", body)
        code, body = http(topo.gw_ns, f"http://127.0.0.1:{port}/readyz")
        ok(code == 200 and json.loads(body).get("ready") is True, "/readyz 200 once started",
           body)

        prom_yml = os.path.join(tmp, "prometheus.yml")
        with open(prom_yml, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: wggwd
    static_configs:
      - targets: ['127.0.0.1:{port}']
""")
        prom_log = open(os.path.join(tmp, "prometheus.log"), "w")
        prom = subprocess.Popen(["ip", "netns", "exec", topo.gw_ns, "prometheus",
                                 f"--config.file={prom_yml}",
                                 f"--storage.tsdb.path={tmp}/tsdb",
                                 f"--web.listen-address=127.0.0.1:{pport}"],
                                stdout=prom_log, stderr=subprocess.STDOUT)
        net.track(prom, "prometheus")

        ms = [wgnet.first_ping_ms(c.ns, topo.gw_tunnel_ip) for c in topo.clients]
        ok(all(m is not None for m in ms), f"two JIT tunnels up ({ms} ms)", d.output())

        code, text = http(topo.gw_ns, f"http://127.0.0.1:{port}/metrics")
        p = subprocess.run(["promtool", "check", "metrics"], input=text or "",
                           capture_output=True, text=True)
        ok(code == 200 and p.returncode == 0 and "wggwd_build_info" in text,
           "promtool check metrics: the exposition passes", p.stdout + p.stderr)

        up = wait_until(lambda: prom_query(topo.gw_ns, pport, 'up{job="wggwd"}') == [1.0], 30, 0.5)
        with open(prom_log.name) as f:
            plog = f.read()
        ok(up, "Prometheus: the target is up == 1", plog[-2000:])
        got = wait_until(lambda: prom_query(topo.gw_ns, pport,
                                            "sum(wggwd_install_duration_seconds_count)") == [2.0],
                         20, 0.5)
        ok(got, "Prometheus: wggwd_install_duration_seconds_count == 2",
           prom_query(topo.gw_ns, pport, "wggwd_install_duration_seconds_count"))
        got = wait_until(lambda: prom_query(topo.gw_ns, pport,
                                            "sum(wggwd_handshake_duration_seconds_count)") == [2.0],
                         20, 0.5)
        ok(got, "Prometheus: wggwd_handshake_duration_seconds_count == 2 (seen to first handshake)",
           prom_query(topo.gw_ns, pport, "wggwd_handshake_duration_seconds_count"))
        # the README's p99 time to tunnel, over everything so far (rate()
        # needs two scrapes around the installs)
        p99 = prom_query(topo.gw_ns, pport,
                         "histogram_quantile(0.99, sum by (le) (wggwd_handshake_duration_seconds_bucket))")
        ok(p99 and 0 < p99[0] < 5, f"p99 time to tunnel through Prometheus: {p99} s", p99)

        code, text = http(topo.gw_ns, f"http://127.0.0.1:{port}/metrics")
        ok('wggwd_stage_events_total{stage="wg",plugin="installer-uapi",event="installed"} 2' in text
           and 'wggwd_peers{interface="' + topo.gw_if + '",origin="static"} 2' in text
           and 'wggwd_pipeline_inflight{pipeline="pull"} 0' in text
           and 'wggwd_installs_total{pipeline="pull",outcome="installed"} 2' in text,
           "labels, not names: stage events, peers by interface and origin, queue depth, installs",
           text)
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
        rc = d.stop()
        ok(rc == 0, f"SIGTERM: exit {rc}", d.output())
        d.close()

# ------------------------------------------------------------ /readyz, NATS
CHECKS2 = ["readyz with nats", "readyz 503 when nats-server stops", "readyz 200 again"]
why2 = natsd.missing()
if not why2 and not os.path.exists(os.path.join(BUILD, "plugins", "source-nats", "source-nats.so")):
    why2 = "source-nats is not built"
if not why2 and not shutil.which("curl"):
    why2 = "curl is not installed"
if why2:
    for name in CHECKS2:
        skip(name, why2)
else:
    srv = natsd.Server(jetstream=False)
    port = natsd.free_port()
    cfg = os.path.join(tmp, "nats.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
plugin_path: [{TEST_PLUGINS}]
http_listen: 127.0.0.1:{port}
control_socket: {tmp}/ctl-nats.sock
stages:
  push:
    plugin: source-nats
    options:
      servers: [{srv.url}]
      subject: wggwd.peers
      mode: request
      allowed_prefixes: [any]
      reconnect_wait: 100ms
      reconnect_wait_max: 500ms
  file:
    plugin: installer-file
    options:
      path: {tmp}/nats.out
pipelines:
  push: [push, file]
""")
    d = Daemon(cfg)
    ready = lambda: http(None, f"http://127.0.0.1:{port}/readyz")  # noqa: E731
    got = wait_until(lambda: ready()[0] == 200, 10, 0.05)
    ok(got, "readyz: 200 once source-nats is connected and subscribed", (ready(), d.output()))
    srv.stop()
    t0 = time.monotonic()
    got = wait_until(lambda: ready()[0] == 503, 10, 0.05)
    dt = time.monotonic() - t0
    code, body = ready()
    ok(got and '"stage": "push"'.replace(" ", "") in body.replace(" ", "") and "NATS" in body,
       f"readyz: 503 naming the stage {dt:.2f} s after nats-server stopped", (code, body))
    srv.start()
    got = wait_until(lambda: ready()[0] == 200, 15, 0.05)
    ok(got, "readyz: 200 again once nats-server is back", (ready(), d.output()))
    d.stop()
    d.close()
    srv.cleanup()
shutil.rmtree(tmp, ignore_errors=True)
done()
