#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""The daemon under systemd, as systemd sees it: this test plays the service
manager's side of sd_notify(3) (a datagram socket named by NOTIFY_SOCKET,
WATCHDOG_USEC) and of the journal (JOURNAL_STREAM naming our stderr), and
checks READY, RELOADING/MONOTONIC_USEC, STATUS, STOPPING, WATCHDOG, and the
<N> priorities of the log lines. (No systemd runs as PID 1 here; the unit
itself is checked by tests/integration/deb.py with systemd-analyze.)"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import TEST_PLUGINS, WGGWD, done, ok, skip, vectors, wait_until  # noqa: E402

K1 = [v for v in vectors() if v["expected"]["result"] == "ok"][0]["initiator_public_key_b64"]
tmp = tempfile.mkdtemp(prefix="wggwd-systemd-")


def config(out, bad=False, installer_path=None):
    return f"""
plugin_path: [{TEST_PLUGINS}]
stages:
  keys:
    plugin: source-keys
    options:
      keys: [{K1}]
      endpoint: 192.0.2.7:51820
  static:
    plugin: resolver-static
    options:
      peers:
        - public_key: {K1}
          allowed_ips: [10.0.0.2/32]
  file:
    plugin: installer-file
    options:
      path: {installer_path or out}
      {"bogus_option: 1" if bad else ""}
pipelines:
  pull: [keys, static, file]
"""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Manager:
    """The service manager's end: a notify socket, the journal's stream."""

    def __init__(self, cfg, watchdog_usec=None, journal=True, abstract=False):
        self.msgs = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"\0wggwd-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind(name)
            addr = "@" + name[1:]
        else:
            addr = os.path.join(tmp, f"notify-{time.monotonic_ns()}")
            self.sock.bind(addr)
        self.sock.setblocking(False)
        self.log = tempfile.NamedTemporaryFile(prefix="wggwd-journal-", delete=False)
        st = os.fstat(self.log.fileno())
        env = dict(os.environ, NOTIFY_SOCKET=addr)
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        else:
            env.pop("JOURNAL_STREAM", None)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.proc = subprocess.Popen([WGGWD, "run", "-c", cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        env["WATCHDOG_PID"] = str(self.proc.pid)

    def poll(self):
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except BlockingIOError:
                break
            self.msgs.append((time.monotonic(), dict(
                line.split("=", 1) for line in data.split("\n") if "=" in line)))
        return self.msgs

    def seen(self, key, value=None, since=0):
        self.poll()
        return [m for t, m in self.msgs[since:] if key in m and (value is None or m[key] == value)]

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        os.unlink(self.log.name)


# 1. start, READY=1 once every stage started, STATUS=, WATCHDOG=1, reloads
cfg, out = f"{tmp}/a.yaml", f"{tmp}/a.out"
write(cfg, config(out))
m = Manager(cfg, watchdog_usec=200000)
ready = wait_until(lambda: m.seen("READY", "1"), 5)
ok(ready and os.path.exists(out), "READY=1 after every stage started (the installer's file is open)",
   m.output())
ok(wait_until(lambda: [s for s in m.seen("STATUS") if s["STATUS"].startswith("running ")], 3),
   "STATUS= says what runs", m.msgs)
ok(any(x.get("MAINPID") == str(m.proc.pid) for x in m.seen("READY")), "MAINPID= is the daemon",
   m.msgs)
n0 = len(m.seen("WATCHDOG", "1"))
time.sleep(1.0)
n1 = len(m.seen("WATCHDOG", "1"))
ok(n1 - n0 >= 5, f"WATCHDOG=1 from the loop at half of WATCHDOG_USEC (200 ms): {n1 - n0} in 1 s")

# a stopped loop stops the pings: what makes systemd restart a hung daemon
m.proc.send_signal(signal.SIGSTOP)
time.sleep(0.1)
m.poll()
k = len(m.seen("WATCHDOG", "1"))
time.sleep(0.6)
k2 = len(m.seen("WATCHDOG", "1"))
m.proc.send_signal(signal.SIGCONT)
ok(k2 == k, f"no WATCHDOG=1 while the process is stopped ({k2 - k} in 0.6 s)")
ok(wait_until(lambda: len(m.seen("WATCHDOG", "1")) > k2, 2), "pings resume after SIGCONT")

# a good reload: RELOADING=1 with MONOTONIC_USEC, then READY=1
mark = len(m.poll())
now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
m.proc.send_signal(signal.SIGHUP)
ok(wait_until(lambda: m.seen("READY", "1", mark), 5), "READY=1 after a reload", m.output())
rel = m.seen("RELOADING", "1", mark)
ok(rel and abs(int(rel[0].get("MONOTONIC_USEC", 0)) - now_us) < 5_000_000,
   "RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC)", rel)
order = [("R" if "RELOADING" in x else "Y") for t, x in m.msgs[mark:]
         if "RELOADING" in x or "READY" in x]
ok(order[:2] == ["R", "Y"], f"RELOADING before READY: {order}")

# a refused reload: READY=1 again (the old pipelines keep running), the
# reason in STATUS=, the config errors in the journal at priority err
write(cfg, config(out, bad=True))
mark = len(m.poll())
m.proc.send_signal(signal.SIGHUP)
ok(wait_until(lambda: m.seen("READY", "1", mark), 5), "READY=1 after a refused reload", m.output())
st = [x["STATUS"] for x in m.seen("STATUS", None, mark)]
ok(any("last reload refused" in s and "bogus_option" in s for s in st),
   "STATUS= says why the reload was refused", st)
log = m.output()
ok(any(line.startswith("<3>") and "bogus_option" in line for line in log.splitlines()),
   "the config error is logged at priority err (<3>)", log)
ok(m.proc.poll() is None, "the daemon still runs")
lines = [x for x in log.splitlines() if x]
ok(lines and all(x[0] == "<" and x[2] == ">" for x in lines) and
   not any(x[3:5].isdigit() for x in lines),
   "every line has a <N> priority and no timestamp of its own", "\n".join(lines[:10]))
ok(any(x.startswith("<6>") for x in lines), "info lines at <6>", "\n".join(lines[:10]))

# stop: STOPPING=1, exit 0
mark = len(m.poll())
m.proc.send_signal(signal.SIGTERM)
rc = m.wait_exit()
ok(rc == 0 and m.seen("STOPPING", "1", mark), f"STOPPING=1 and exit 0 on SIGTERM (rc {rc})", m.msgs[mark:])
m.close()

# 2. a start that fails never says READY=1; the error is at priority err
write(cfg, config(out, installer_path="/nonexistent/wggwd/installs"))
m = Manager(cfg, abstract=True)
rc = m.wait_exit()
m.poll()
ok(rc == 1 and not m.seen("READY"), f"a failed start exits 1 without READY=1 (rc {rc})", m.msgs)
ok(any("start failed" in x.get("STATUS", "") for t, x in m.msgs), "STATUS= says the start failed",
   m.msgs)
ok(any(line.startswith("<3>") and "/nonexistent/wggwd/installs" in line
       for line in m.output().splitlines()),
   "the start error is in the journal at priority err", m.output())
m.close()

# 3. a refused file: the errors are in the journal at priority err
write(cfg, config(out, bad=True))
m = Manager(cfg)
rc = m.wait_exit()
ok(rc == 1 and any(line.startswith("<3>") and "bogus_option" in line
                   for line in m.output().splitlines()),
   "a refused file at start: exit 1, its errors at <3>", m.output())
m.close()

# 4. outside the journal: a full UTC timestamp, no priority prefix; no
# NOTIFY_SOCKET: nothing is sent and nothing breaks
write(cfg, config(out))
m = Manager(cfg, journal=False)
wait_until(lambda: m.seen("READY"), 5)
m.proc.send_signal(signal.SIGTERM)
m.wait_exit()
first = m.output().splitlines()[0] if m.output() else ""
ok(len(first) > 24 and first[4] == "-" and first[10] == "T" and first[23] == "Z",
   f"outside the journal: ISO 8601 UTC time with the date ({first[:40]})")
m.close()
# check as ExecStartPre: its findings in the journal at <3> (errors), <4>
write(cfg, config(out, installer_path="/nonexistent/wggwd/installs").replace(
    "endpoint: 192.0.2.7:51820", "endpoint: 192.0.2.7:51820\n      interval: 5"))
with tempfile.NamedTemporaryFile(prefix="wggwd-journal-") as j:
    st = os.fstat(j.fileno())
    p = subprocess.run([WGGWD, "check", "-c", cfg], stdout=subprocess.DEVNULL, stderr=j,
                       env=dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"))
    j.seek(0)
    got = j.read().decode().splitlines()
ok(p.returncode in (0, 1) and got and all(x[:3] in ("<3>", "<4>") for x in got)
   and any(x.startswith("<4>") and "interval: 5 has no unit" in x for x in got),
   "check under the journal: <4> warnings, <3> errors", got)
write(cfg, config(out))

# check against a real wireguard-go: ok while it runs, a located error
# once it is gone (its UAPI socket)
import wgnet  # noqa: E402
if wgnet.missing() or os.geteuid() != 0:
    skip("check probes wireguard-go's UAPI socket", "needs root, ip, wg and wireguard-go")
else:
    with wgnet.Net("sdc") as net:
        ns = net.netns()
        iface, _ = net.wireguard_go(ns)
        ucfg = f"{tmp}/uapi.yaml"
        write(ucfg, config(out).replace("""  file:
    plugin: installer-file
    options:
      path: """ + out, f"""  file:
    plugin: installer-uapi
    options:
      interface: {iface}
      completion: none"""))
        p = subprocess.run([WGGWD, "check", "-c", ucfg], capture_output=True, text=True)
        ok(p.returncode == 0 and ": ok (" in p.stdout, "check: ok while wireguard-go serves the interface",
           p.stdout + p.stderr)
        net.stop_wireguard_go(iface)
        p = subprocess.run([WGGWD, "check", "-c", ucfg], capture_output=True, text=True)
        ok(p.returncode == 1 and f"file (installer-uapi): interface: no UAPI socket" in p.stderr
           and p.stderr.startswith(ucfg + ":"), "check: a located error once it is gone", p.stderr)

e = dict(os.environ)
e.pop("NOTIFY_SOCKET", None)
p = subprocess.Popen([WGGWD, "run", "-c", cfg], stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, env=e)
time.sleep(0.3)
p.send_signal(signal.SIGTERM)
_, err = p.communicate(timeout=10)
ok(p.returncode == 0, "without NOTIFY_SOCKET it runs and stops as before", err)

done()
