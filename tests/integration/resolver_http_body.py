#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""resolver-http and the bodies an API may send (issue 12, finding 3):
empty (Content-Length: 0, or chunked with no data) and chunked in pieces.
source-keys -> resolver-http -> installer-file; no namespaces. Meant for
the ASan/UBSan build too (WGGWD_BUILD=build-asan): any sanitizer report
fails it. The writer itself is unit-tested by test-transfer."""
import base64
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http_api  # noqa: E402
from tap import TEST_PLUGINS, Daemon, done, ok, read_stats, wait_until  # noqa: E402

tmp = tempfile.mkdtemp(prefix="wggwd-httpbody-")
KEY = base64.b64encode(bytes([7]) * 32).decode()
SANITIZERS = {"UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
              "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1"}


def run(api, name, until):
    out = os.path.join(tmp, f"{name}.out")
    stats = os.path.join(tmp, f"{name}.json")
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  keys: {{plugin: source-keys, options: {{keys: [{KEY}]}}}}
  api:
    plugin: resolver-http
    options:
      url: "{api.url()}"
      allowed_prefixes: [10.0.0.0/8]
  file: {{plugin: installer-file, options: {{path: {out}}}}}
pipelines:
  pull: [keys, api, file]
""")
    d = Daemon(cfg, env=SANITIZERS)
    wait_until(lambda: until(read_stats(stats)) or not d.alive(), 10)
    s = read_stats(stats)
    rc = d.stop()
    log = d.output()
    d.close()
    installs = open(out).read().splitlines() if os.path.exists(out) else []
    clean = rc == 0 and "runtime error" not in log and "Sanitizer" not in log
    return s, installs, clean, log


api = http_api.Api()
try:
    api.peer(KEY, ["10.1.2.3/32", "10.1.2.4/32"])
    for mode, what in (("empty", "an empty body (Content-Length: 0)"),
                       ("empty_chunked", "an empty chunked body")):
        api.mode = mode
        s, installs, clean, log = run(api, mode, lambda s: s.get("pipeline.pull.error", 0) >= 1)
        ok(s.get("api.error.bad_body") == 1 and s.get("pipeline.pull.error") == 1 and not installs,
           f"200 with {what}: a bad answer (bad_body), nothing installed", (s, log[-1500:]))
        ok(clean, f"{what}: clean exit, no sanitizer report", log[-3000:])
    api.mode = "chunked"
    s, installs, clean, log = run(api, "chunked", lambda s: s.get("pipeline.pull.ok", 0) >= 1)
    ok(len(installs) == 1 and installs[0].split()[:2] == ["add", KEY]
       and installs[0].split()[3:] == ["10.1.2.3/32", "10.1.2.4/32"],
       "an answer in three chunks: put together and installed", (installs, s, log[-1500:]))
    ok(clean, "chunked: clean exit, no sanitizer report", log[-3000:])
finally:
    api.close()
    shutil.rmtree(tmp, ignore_errors=True)
done()
