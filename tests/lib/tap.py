# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""Minimal TAP output and daemon helpers for the Python tests."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("WGGWD_BUILD", os.path.join(ROOT, "build"))
WGGWD = os.path.join(BUILD, "wggwd")
TEST_PLUGINS = os.path.join(BUILD, "tests")

_n = 0
_failed = 0


def ok(cond, name, diag=None):
    global _n, _failed
    _n += 1
    if cond:
        print(f"ok {_n} - {name}", flush=True)
    else:
        _failed += 1
        print(f"not ok {_n} - {name}", flush=True)
        if diag:
            for line in str(diag).splitlines()[-30:]:
                print(f"# {line}", flush=True)
    return cond


def skip(name, why):
    global _n
    _n += 1
    print(f"ok {_n} - {name} # SKIP {why}", flush=True)


def done():
    print(f"1..{_n}", flush=True)
    sys.exit(1 if _failed else 0)


def wait_until(cond, timeout=5.0, step=0.01):
    """Poll cond() until it is true or the deadline passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


class Daemon:
    """wggwd run -c CONFIG, optionally inside a network namespace."""

    def __init__(self, config, netns=None, env=None):
        self.config = config
        self.log = tempfile.NamedTemporaryFile(prefix="wggwd-log-", delete=False)
        cmd = [WGGWD, "run", "-c", config]
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=e)

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def send(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        self.send(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def wait_exit(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        os.unlink(self.log.name)


def read_stats(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def vectors():
    with open(os.path.join(ROOT, "tests", "vectors", "vectors-dev.json")) as f:
        return json.load(f)["vectors"]


def secret_file(directory, name, content, mode=0o600):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, (content + "\n").encode())
    os.close(fd)
    os.chmod(path, mode)
    return path
