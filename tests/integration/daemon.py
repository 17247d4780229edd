#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""The daemon as a whole: pipelines run, counters, secrets, SIGHUP, exit,
and what ABI 2.0 promises plugins (link, retire, no caps on allowed IPs)."""
import os
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import (TEST_PLUGINS, Daemon, done, ok, read_stats, secret_file,  # noqa: E402
                 vectors, wait_until)

V = vectors()
VALID = [v for v in V if v["expected"]["result"] == "ok"]
K1 = VALID[0]["initiator_public_key_b64"]
K2 = VALID[1]["initiator_public_key_b64"]
UNKNOWN = VALID[2]["initiator_public_key_b64"]
tmp = tempfile.mkdtemp(prefix="wggwd-daemon-")


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def keys_config(out, stats, keys, tag="", extra_peer="", psk=None):
    psk_line = f"\n          preshared_key_file: {psk}" if psk else ""
    return f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  keys:
    plugin: source-keys
    options:
      keys: [{", ".join(keys)}]
      endpoint: 192.0.2.7:51820
  static:
    plugin: resolver-static
    options:
      peers:
        - public_key: {K1}
          allowed_ips: [10.0.0.2/32, fd00::2/128]{psk_line}
        - public_key: {K2}
          allowed_ips: [10.0.0.3/32]{extra_peer}
  file:
    plugin: installer-file
    options:
      path: {out}
      tag: "{tag}"
pipelines:
  pull: [keys, static, file]
"""


# 1. a pipeline runs: known keys installed, unknown counted
cfg, out, stats = f"{tmp}/a.yaml", f"{tmp}/a.out", f"{tmp}/a.json"
write(cfg, keys_config(out, stats, [K1, K2, UNKNOWN]))
d = Daemon(cfg)
got = wait_until(lambda: len(lines(out)) >= 2 and
                 read_stats(stats).get("pipeline.pull.drop.unknown_key") == 1)
ok(got, "known keys installed, the unknown one dropped", d.output())
ok(f"add {K1} 192.0.2.7:51820 10.0.0.2/32 fd00::2/128" in lines(out),
   "install carries endpoint and every allowed IP", lines(out))
s = read_stats(stats)
ok(s.get("static.hit") == 2 and s.get("static.miss") == 1 and s.get("pipeline.pull.ok") == 2
   and s.get("file.installed") == 2 and s.get("pipeline.pull.items") == 3
   and s.get("pipeline.pull.seconds_to_installed.count") == 2,
   "counters: static.hit/miss, pipeline ok/items, file.installed; latency histogram", s)
ok(" installed: seen at " in d.output(), "an install is logged with its timeline", d.output())
ok('[installer-file:file] linked: pipeline "pull", stage 3 of 3, after 0xa' in d.output(),
   "link op called with the stage's context: its pipeline, position, the kinds before it",
   d.output())

# 1b. the stats file is written through no link: a link left at its .tmp
# (by anyone who can write the directory) is replaced, its target untouched
cfg_l, out_l, stats_l = f"{tmp}/l.yaml", f"{tmp}/l.out", f"{tmp}/l.json"
victim = f"{tmp}/victim"
write(victim, "precious\n")
os.symlink(victim, stats_l + ".tmp")
write(cfg_l, keys_config(out_l, stats_l, [K1]))
dl = Daemon(cfg_l)
got = wait_until(lambda: read_stats(stats_l).get("pipeline.pull.ok") == 1)
ok(got and open(victim).read() == "precious\n" and not os.path.islink(stats_l),
   "the stats file's .tmp link is not followed: its target is untouched", dl.output())
dl.stop()
dl.close()

# 2. SIGHUP with a bad file keeps the running config
good = open(cfg).read()
write(cfg, good.replace("repeat", "").replace("endpoint: 192.0.2.7:51820",
                                               "endpoint: 192.0.2.7:51820\n      repeat: lots"))
d.send(signal.SIGHUP)
got = wait_until(lambda: "keeping the running configuration" in d.output())
ok(got and d.alive(), "SIGHUP with a bad file: still running the old config", d.output())
ok(f"{cfg}:" in d.output() and "repeat: expected an integer" in d.output(),
   "the reload's errors are logged with file:line:col", d.output())
ok(len(lines(out)) == 2, "nothing re-installed by a refused reload", lines(out))

# 3. SIGHUP with a good file applies it
out2 = f"{tmp}/a2.out"
write(cfg, keys_config(out2, stats, [K2], tag="v2"))
d.send(signal.SIGHUP)
got = wait_until(lambda: any(x.startswith(f"v2 add {K2}") for x in lines(out2)))
ok(got and "reloaded" in d.output(), "SIGHUP with a good file: the new pipeline runs", d.output())
ok(d.alive(), "still running after the reload")

# 4. SIGTERM: drain, stop in order, exit 0, loop closed cleanly
rc = d.stop(signal.SIGTERM)
ok(rc == 0, f"SIGTERM: exit {rc}", d.output())
ok("not closed cleanly" not in d.output() and "never completed" not in d.output(),
   "every handle closed and every item finished at exit", d.output())
s = read_stats(stats)
ok(s.get("pipeline.pull.ok") == 3, "counters are the process's: they add up across a reload", s)
ok(s.get("keys.emitted") == 4 and s.get("keys.ok") == 3 and s.get("keys.not_ok") == 1,
   "the source's done saw every item it emitted, once", s)
d.close()

# 5. secrets: a preshared key file must be 0600 and is never logged
psk_b64 = "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="
psk = secret_file(tmp, "psk", psk_b64, 0o644)
cfg, out = f"{tmp}/s.yaml", f"{tmp}/s.out"
write(cfg, keys_config(out, f"{tmp}/s.json", [K1], psk=psk))
d = Daemon(cfg)
rc = d.wait_exit()
ok(rc not in (0, None) and "refused: mode 0644" in d.output() and not lines(out),
   f"a group/other-readable secret file is refused, nothing starts (exit {rc})", d.output())
d.close()
os.chmod(psk, 0o600)
d = Daemon(cfg, env={})
got = wait_until(lambda: len(lines(out)) == 1)
ok(got, "with mode 0600 the peer with a preshared key is installed", d.output())
rc = d.stop()
ok(psk_b64 not in d.output() and psk_b64[:20] not in d.output(), "the preshared key is never logged")
ok(rc == 0, "exit 0")
d.close()

# 6. a failed start unwinds what started, exit non-zero, no crash
cfg = f"{tmp}/f.yaml"
write(cfg, keys_config(f"{tmp}/no/such/dir/out", f"{tmp}/f.json", [K1]))
d = Daemon(cfg)
rc = d.wait_exit()
ok(rc == 1 and "start failed" in d.output() and "not closed cleanly" not in d.output(),
   f"installer start fails: exit {rc}, clean unwind", d.output())
d.close()

# 7. decoder in the pipeline: real initiations from the vectors
neg_mac1 = [v for v in V if v["expected"]["result"] == "mac1"][0]
vec = VALID[0]
key = secret_file(tmp, "gw.key", vec["responder_private_key_b64"])
cfg, out, stats = f"{tmp}/d.yaml", f"{tmp}/d.out", f"{tmp}/d.json"
write(cfg, f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  hex:
    plugin: source-hex
    options:
      packets: [{vec["packet"]}, {neg_mac1["packet"]}, "0200000000"]
      src: "[fd00::9]:40001"
  noise:
    plugin: decoder-noise
    options:
      private_key_file: {key}
  static:
    plugin: resolver-static
    options:
      peers:
        - public_key: {vec["initiator_public_key_b64"]}
          allowed_ips: [10.0.0.9/32]
  file:
    plugin: installer-file
    options:
      path: {out}
pipelines:
  pull: [hex, noise, static, file]
""")
d = Daemon(cfg)
# the decoder works on threads: the stats file must have caught up with it
got = wait_until(lambda: lines(out) and read_stats(stats).get("pipeline.pull.dropped") == 2
                 and read_stats(stats).get("noise.pending") == 0
                 and read_stats(stats).get("pipeline.pull.ok") == 1)
ok(got and lines(out) == [f"add {vec['initiator_public_key_b64']} [fd00::9]:40001 10.0.0.9/32"],
   "a real initiation is decoded, resolved and installed with its IPv6 source", d.output())
s = read_stats(stats)
ok(s.get("pipeline.pull.drop.mac1") == 1 and s.get("pipeline.pull.drop.short") == 1
   and s.get("noise.drop_mac1") == 1 and s.get("noise.drop_short") == 1
   and s.get("noise.authenticated") == 1,
   "drops counted by reason, in the pipeline and in the decoder", s)
ok(d.stop(signal.SIGINT) == 0, "SIGINT: exit 0", d.output())
d.close()

# 8. no cap on allowed IPs; a retire reaches the installer's process as a
# REMOVE with its reason, and the source's done never sees it
ips = [f"10.{i // 250}.{i % 250}.1/32" for i in range(1000)]
cfg, out, stats = f"{tmp}/r.yaml", f"{tmp}/r.out", f"{tmp}/r.json"
write(cfg, f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
stages:
  keys:
    plugin: source-keys
    options:
      keys: [{K1}]
      endpoint: 192.0.2.7:51820
      retire: [{K1}]
  static:
    plugin: resolver-static
    options:
      peers:
        - public_key: {K1}
          allowed_ips: [{", ".join(ips)}]
  file:
    plugin: installer-file
    options:
      path: {out}
pipelines:
  pull: [keys, static, file]
""")
d = Daemon(cfg)
got = wait_until(lambda: len(lines(out)) >= 2)
ok(got and lines(out)[0] == f"add {K1} 192.0.2.7:51820 " + " ".join(ips),
   "a peer with 1000 allowed IPs is installed with every one, in order",
   (lines(out)[:1], d.output()))
ok(got and lines(out)[1:] == [f"remove {K1} operator"],
   "a retire goes through the installer's process: op REMOVE, reason operator", lines(out))
rc = d.stop()
s = read_stats(stats)
ok(rc == 0 and s.get("keys.retired") == 1 and s.get("file.removed") == 1
   and s.get("keys.emitted") == 1 and s.get("keys.ok") == 1 and s.get("keys.not_ok") == 0,
   "the retired item is not the source's: its done saw only the one it emitted", (rc, s))
d.close()

# the command line: each command's own --help, the real plugin directory
import subprocess  # noqa: E402
from tap import WGGWD  # noqa: E402


def cli(*args, env=None):
    p = subprocess.run([WGGWD, *args], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, **(env or {})))
    return p.returncode, p.stdout, p.stderr


rc, top, _ = cli("--help")
installed = [x.split(": ", 1)[1] for x in cli("plugins")[1].splitlines()
             if x.startswith("installed plugins: ")]
ok(rc == 0 and installed and installed[0].endswith("/wggwd/plugins") and installed[0] in top,
   "--help and plugins name the same, real plugin directory", (top, installed))
for cmd, word in (("run", "SIGHUP"), ("check", "--offline"), ("plugins", "--man")):
    rc, o, _ = cli(cmd, "--help")
    ok(rc == 0 and o.startswith(f"usage: wggwd {cmd}") and word in o and o != top,
       f"{cmd} --help is its own", o)
rc, _, e = cli("check", "--bogus")
ok(rc == 2 and "usage: wggwd check" in e, "an unknown option: exit 2 and the command's usage", e)

# check: a preflight beyond the schema; --offline: the schema only
cfg = f"{tmp}/pre.yaml"
write(cfg, keys_config(f"{tmp}/nodir/out", stats, [K1], psk=f"{tmp}/missing.psk")
      .replace("stats_interval: 50ms", "stats_interval: 1"))
rc, o, e = cli("check", "-c", cfg)
ok(rc == 1 and f"preshared_key_file: secret file {tmp}/missing.psk: No such file" in e
   and ": warning: stats_interval: 1 has no unit and is read as 1 seconds" in e,
   "check: a missing secret file is an error at its option, a bare duration a warning", e)
ok(all(x.startswith(cfg + ":") for x in e.splitlines() if x),
   "every finding carries FILE:LINE:COL", e)
rc, o, e = cli("check", "--offline", "-c", cfg)
ok(rc == 0 and "schema only" in o and "missing.psk" not in e,
   "check --offline: the schema only", (o, e))
psk = secret_file(tmp, "loose.psk", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 0o644)
write(cfg, keys_config(f"{tmp}/c.out", stats, [K1], psk=psk))
rc, o, e = cli("check", "-c", cfg)
ok(rc == 1 and "mode 0644 lets group or others in" in e, "check: a secret file of mode 0644", e)
os.chmod(psk, 0o600)
rc, o, e = cli("check", "-q", "-c", cfg)
ok(rc == 0 and o == "" and e == "", "check -q: silent when fine", (o, e))

# plugins --man: every option of every plugin, from its table
rc, man, e = cli("plugins", "--man")
names = [x.split()[0] for x in cli("plugins")[1].splitlines()[1:]
         if x and not x.startswith(("search path:", "installed plugins:"))]
missing = []
for n in names:
    if f".SS {n}\n" not in man:
        missing.append(n)
        continue
    for x in cli("plugins", n)[1].split("options:\n", 1)[-1].splitlines():
        if x.startswith("  ") and not x.startswith("   ") and x.strip() != "(none)":
            opt = x.split()[0]
            if f".B {opt}\n" not in man and f"[].{opt}\n" not in man:
                missing.append(f"{n}.{opt}")
ok(rc == 0 and names and not missing and ".SH CORE OPTIONS" in man,
   f"plugins --man documents all {len(names)} plugins and their options", (missing, e))

shutil.rmtree(tmp, ignore_errors=True)
done()
