#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""No cap on allowed IPs (ABI 2.0): a peer with 1,000 of them goes whole
through resolver-static (YAML and a JSON file) and resolver-http
(peerjson), and max_allowed_ips refuses more (bad_answer): 10,001 against
the default, 3 against 2. source-keys -> resolver -> installer-file; no
namespaces."""
import base64
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_api  # noqa: E402
from tap import TEST_PLUGINS, Daemon, done, ok, read_stats, wait_until  # noqa: E402

tmp = tempfile.mkdtemp(prefix="wggwd-allowed-")


def key(i):
    return base64.b64encode(bytes([i]) * 32).decode()


K1, K2, K3, K4 = key(1), key(2), key(3), key(4)
IPS = [f"10.{i // 250}.{i % 250}.1/32" for i in range(1000)]


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def run(name, resolver_yaml, keys, want_lines, until=None):
    """One daemon: keys knock, the resolver answers, installer-file writes
    "add KEY ENDPOINT IP..." lines. (lines, stats, exit code, log)."""
    out = os.path.join(tmp, f"{name}.out")
    stats = os.path.join(tmp, f"{name}.stats")
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  keys: {{plugin: source-keys, options: {{keys: {json.dumps(keys)}}}}}
  res:
{resolver_yaml}
  file: {{plugin: installer-file, options: {{path: {out}}}}}
pipelines:
  pull: [keys, res, file]
""")
    d = Daemon(cfg)
    wait_until(lambda: len(lines(out)) >= want_lines
               and (until is None or until(read_stats(stats))) or not d.alive(), 10)
    s = read_stats(stats)
    rc = d.stop()
    log = d.output()
    d.close()
    return lines(out), s, rc, log


def ips_of(line):
    return line.split()[3:]


api = http_api.Api()
try:
    # resolver-static, YAML
    yaml = ("    plugin: resolver-static\n    options:\n      peers:\n"
            f"        - public_key: {K1}\n          allowed_ips: {json.dumps(IPS)}\n")
    got, s, rc, log = run("yaml", yaml, [K1], 1)
    ok(len(got) == 1 and got[0].split()[:2] == ["add", K1] and ips_of(got[0]) == IPS and rc == 0,
       "resolver-static (YAML): a peer with 1,000 allowed IPs installed whole, in order",
       (got[:1] and len(got[0].split()), log[-2000:]))

    # resolver-static, JSON file
    pf = os.path.join(tmp, "peers.json")
    with open(pf, "w") as f:
        json.dump([{"public_key": K2, "allowed_ips": IPS},
                   {"public_key": K3, "allowed_ips": ["10.99.0.1/32"]}], f)
    got, s, rc, log = run("json", f"    plugin: resolver-static\n    options: {{peers_file: {pf}}}\n",
                          [K2, K3], 2)
    by_key = {x.split()[1]: ips_of(x) for x in got}
    ok(by_key.get(K2) == IPS and by_key.get(K3) == ["10.99.0.1/32"] and rc == 0,
       "resolver-static (JSON file): 1,000 allowed IPs, and a small peer beside it", log[-2000:])

    # resolver-http: 1,000 pass; 10,001 (> the default max_allowed_ips) is a
    # bad answer, and so are 3 against max_allowed_ips 2. max_body is raised
    # so that the count is what refuses the big one, not its size.
    api.peer(K1, IPS)
    api.peer(K2, [f"10.{i // 250 % 250}.{i % 250}.{1 + i // 62500}/32" for i in range(10001)])
    http = f"""    plugin: resolver-http
    options:
      url: "{api.url()}"
      allowed_prefixes: [10.0.0.0/8]
      max_body: 1MiB
"""
    got, s, rc, log = run("http", http, [K1, K2], 1, lambda s: s.get("res.error.bad_body", 0) >= 1)
    ok(len(got) == 1 and got[0].split()[1] == K1 and ips_of(got[0]) == IPS,
       "resolver-http: an answer with 1,000 allowed IPs installed whole", (got[:1] and got[0][:200], log[-2000:]))
    ok(s.get("res.error.bad_body") == 1 and s.get("pipeline.pull.error") == 1
       and "more than max_allowed_ips" in log and rc == 0,
       "resolver-http: 10,001 allowed IPs (default max_allowed_ips 10000) refused as bad_answer",
       ({k: v for k, v in s.items() if "bad" in k or "error" in k}, log[-1500:]))
    api.peer(K3, ["10.1.0.1/32", "10.1.0.2/32", "10.1.0.3/32"])
    api.peer(K4, ["10.1.0.4/32", "10.1.0.5/32"])
    got, s, rc, log = run("http2", http + "      max_allowed_ips: 2\n", [K3, K4], 1,
                          lambda s: s.get("res.error.bad_body", 0) >= 1)
    ok(len(got) == 1 and got[0].split()[1] == K4 and s.get("res.error.bad_body") == 1 and rc == 0,
       "resolver-http: max_allowed_ips 2 takes 2, refuses 3", (got, log[-1500:]))
finally:
    api.close()
    shutil.rmtree(tmp, ignore_errors=True)
done()
