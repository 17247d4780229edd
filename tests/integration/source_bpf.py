#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""source-bpf on a veth between two network namespaces: what the filter
lets through, IPv4 and IPv6, outgoing copies, kernel drops, the re-send of
an initiation from the client's own address, and clear start failures."""
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import (BUILD, ROOT, TEST_PLUGINS, WGGWD, Daemon, done, ok, read_stats,  # noqa: E402
                 secret_file, skip, vectors, wait_until)

PID = os.getpid()
GW_NS, CL_NS = f"wggwd-bpf-gw-{PID}", f"wggwd-bpf-cl-{PID}"
GW_IF, CL_IF = f"wbg{PID}"[:15], f"wbc{PID}"[:15]
GW4, CL4, GW6, CL6 = "10.77.0.1", "10.77.0.2", "fd00:77::1", "fd00:77::2"
PORT, CL_PORT = 51820, 40123

V = vectors()
VEC = [v for v in V if v["expected"]["result"] == "ok" and v.get("packet_len") == 148][0]
MAC1 = [v for v in V if v["expected"]["result"] == "mac1"][0]
KEY = VEC["initiator_public_key_b64"]
PKT = bytes.fromhex(VEC["packet"])
BAD = bytes.fromhex(MAC1["packet"])
assert len(PKT) == 148 and len(BAD) == 148

CHECKS = ["IPv4: a real initiation is sniffed, decoded and installed with the client's endpoint",
          "other lengths, type 2 and another port never leave the kernel",
          "a bad-mac1 initiation is emitted and dropped by the decoder",
          "outgoing initiations are seen and skipped",
          "IPv6: installed with the [v6]:port endpoint; IPv6 type 2 filtered",
          "kernel drops counted: received + kernel_drops == sent",
          "SIGTERM: exit 0, every handle closed",
          "reinject: IPv4 initiation re-sent from the client's address and port",
          "reinject: IPv6 initiation re-sent from the client's address and port",
          "port 0 takes the installer's listen port; SIGTERM exit 0",
          "no such interface: a failed start that says so",
          "port 0 with an installer that knows no port: a failed start that says so",
          "check: a bad interface name is refused",
          "check: watch_max over the filter's cap (256) is refused",
          "wireguard-go end to end: the handshake completes on the client's first initiation"]

if os.geteuid() != 0:
    for name in CHECKS:
        skip(name, "needs root (network namespaces, AF_PACKET)")
    done()

tmp = tempfile.mkdtemp(prefix="wggwd-bpf-")
daemons = []

# ----------------------------------------------------------------- namespaces

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
HOME_NS = os.open("/proc/self/ns/net", os.O_RDONLY)


def _setns(fd):
    if libc.setns(fd, CLONE_NEWNET):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextlib.contextmanager
def netns(name):
    """Sockets made inside stay in that namespace after we leave it."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(fd)
        yield
    finally:
        _setns(HOME_NS)
        os.close(fd)


def sh(*cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout


def cleanup():
    for d in daemons:
        d.close()
    for p, sock in wg_procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        try:
            os.unlink(sock)
        except OSError:
            pass
    for n in (GW_NS, CL_NS):
        # anything still running in our namespaces is ours
        p = subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True)
        for pid in p.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)


def on_signal(signum, frame):
    sys.exit(128 + signum)  # runs the finally below


def setup():
    sh("ip", "netns", "add", GW_NS)
    sh("ip", "netns", "add", CL_NS)
    sh("ip", "link", "add", GW_IF, "netns", GW_NS, "type", "veth",
       "peer", "name", CL_IF, "netns", CL_NS)
    for ns, dev, a4, a6 in ((GW_NS, GW_IF, GW4, GW6), (CL_NS, CL_IF, CL4, CL6)):
        sh("ip", "-n", ns, "addr", "add", f"{a4}/24", "dev", dev)
        sh("ip", "-n", ns, "addr", "add", f"{a6}/64", "dev", dev, "nodad")
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def udp(family, addr, port):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    return s


# -------------------------------------------------------------------- helpers

def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def stat(path, name):
    return read_stats(path).get(name, 0)


def daemon(cfg):
    d = Daemon(cfg, netns=GW_NS)
    daemons.append(d)
    return d


def running(d):
    return wait_until(lambda: "sniffing initiations" in d.output() and "running " in d.output()
                      or not d.alive(), 10) and d.alive()


def config(stats, installer, sniff_opts, extra_stages=""):
    return f"""
plugin_path: [{TEST_PLUGINS}, {tmp}]
stats_file: {stats}
stats_interval: 50ms
stages:
  sniff:
    plugin: source-bpf
    options:
      interface: {GW_IF}
{sniff_opts}
  noise:
    plugin: decoder-noise
    options:
      private_key_file: {KEYFILE}
      replay_keys: 0   # one vector sent from several addresses
  static:
    plugin: resolver-static
    options:
      peers:
        - public_key: {KEY}
          allowed_ips: [10.9.0.2/32]
{installer}
pipelines:
  pull: [sniff, noise, static, inst]
"""





def build_installer():
    """The test installer that sets WGGWD_ITEM_REINJECT (tests/plugins)."""
    path = os.path.join(TEST_PLUGINS, "installer-reinject.so")
    return None if os.path.exists(path) else f"{path} not built"


def recv_all(s, n, timeout=5.0):
    """Up to n datagrams, each (payload, source); stops at the deadline."""
    got = []
    s.settimeout(0.05)

    def more():
        try:
            got.append(s.recvfrom(2048))
        except socket.timeout:
            pass
        return len(got) >= n
    wait_until(more, timeout, 0)
    return got


def wg_iface(ns, name, key, *wg_args):
    """A wireguard-go interface in ns, in the foreground (we own the pid)."""
    sock = f"/var/run/wireguard/{name}.sock"
    p = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", name],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, LOG_LEVEL="error"))
    wg_procs.append((p, sock))
    if not wait_until(lambda: os.path.exists(sock) or p.poll() is not None, 10) or p.poll() is not None:
        raise RuntimeError(f"wireguard-go {name} did not start")
    sh("ip", "netns", "exec", ns, "wg", "set", name, "private-key", key, *wg_args)
    return p


def handshake_done(ns, name):
    p = subprocess.run(["ip", "netns", "exec", ns, "wg", "show", name, "latest-handshakes"],
                       capture_output=True, text=True)
    return any(x.split()[1] != "0" for x in p.stdout.splitlines() if len(x.split()) == 2)


def e2e_checks():
    """The gateway's wireguard-go knows no peer; the client's knows the
    gateway. The installer adds the peer over UAPI and asks for a re-send:
    the gateway answers the client's first initiation, so the handshake is
    done long before the client's 5 s retry, with one initiation sniffed."""
    gw_wg, cl_wg = f"wgg{PID}"[:15], f"wgc{PID}"[:15]
    gw_key = secret_file(tmp, "gw-wg.key", VEC["responder_private_key_b64"])
    cl_key = secret_file(tmp, "cl-wg.key", VEC["initiator_private_key_b64"])
    wg_iface(GW_NS, gw_wg, gw_key, "listen-port", str(PORT))
    wg_iface(CL_NS, cl_wg, cl_key, "listen-port", str(CL_PORT + 1),
             "peer", VEC["responder_public_key_b64"], "endpoint", f"{GW4}:{PORT}",
             "allowed-ips", "10.9.0.1/32")
    for ns, dev, a in ((GW_NS, gw_wg, "10.9.0.1/24"), (CL_NS, cl_wg, "10.9.0.2/24")):
        sh("ip", "-n", ns, "addr", "add", a, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    out, stats, cfg = f"{tmp}/e.out", f"{tmp}/e.json", f"{tmp}/e.yaml"
    write(cfg, config(stats, f"""  inst:
    plugin: installer-reinject
    options:
      path: {out}
      uapi: {gw_wg}
      allowed_ip: 10.9.0.2/32""", ""))
    d = daemon(cfg)
    started = running(d)
    with netns(CL_NS):
        t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t.sendto(b"knock", ("10.9.0.1", 9))  # into the tunnel: the client initiates
    got = started and wait_until(lambda: handshake_done(CL_NS, cl_wg), 4)
    wait_until(lambda: stat(stats, "sniff.reinjected") >= 1)
    s = read_stats(stats)
    t.close()
    rc = d.stop()
    ok(got and s.get("sniff.received") == 1 and s.get("sniff.reinjected") == 1 and rc == 0,
       CHECKS[14], (s, rc, d.output()))


wg_procs = []

# ----------------------------------------------------------------------- main

signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
try:
    setup()
    KEYFILE = secret_file(tmp, "gw.key", VEC["responder_private_key_b64"])
    with netns(CL_NS):
        c4 = udp(socket.AF_INET, CL4, CL_PORT)
        c6 = udp(socket.AF_INET6, CL6, CL_PORT)
    with netns(GW_NS):
        g4 = udp(socket.AF_INET, GW4, 0)

    # -------------------------------------------- pipeline with installer-file
    out, stats, cfg = f"{tmp}/a.out", f"{tmp}/a.json", f"{tmp}/a.yaml"
    write(cfg, config(stats, f"""  inst:
    plugin: installer-file
    options:
      path: {out}""", f"      port: {PORT}\n      rcvbuf: 64KiB"))
    d = daemon(cfg)
    if not running(d):
        raise RuntimeError("the daemon did not start:\n" + d.output())

    # 1. a valid initiation over IPv4
    c4.sendto(PKT, (GW4, PORT))
    line = f"add {KEY} {CL4}:{CL_PORT} 10.9.0.2/32"
    got = wait_until(lambda: line in lines(out) and stat(stats, "pipeline.pull.ok") == 1)
    s = read_stats(stats)
    ok(got and s.get("sniff.received") == 1 and s.get("sniff.emitted") == 1,
       CHECKS[0], (lines(out), s, d.output()))

    # 2 and 3. what the filter keeps out, then a marker it lets through
    c4.sendto(PKT[:147], (GW4, PORT))
    c4.sendto(PKT + b"\0", (GW4, PORT))
    c4.sendto(b"\x02" + PKT[1:92], (GW4, PORT))    # a response: 92 bytes
    c4.sendto(b"\x02" + PKT[1:], (GW4, PORT))      # type 2, 148 bytes
    c4.sendto(b"\x04" + PKT[1:], (GW4, PORT))      # data, 148 bytes
    c4.sendto(PKT, (GW4, PORT + 1))                # another port
    c4.sendto(BAD, (GW4, PORT))                    # the marker
    got = wait_until(lambda: stat(stats, "pipeline.pull.drop.mac1") == 1)
    s = read_stats(stats)
    ok(got and s.get("sniff.received") == 2 and s.get("sniff.emitted") == 2
       and s.get("pipeline.pull.items") == 2 and not s.get("noise.drop_short")
       and not s.get("noise.drop_long") and not s.get("noise.drop_type"),
       CHECKS[1], s)
    ok(got and s.get("noise.drop_mac1") == 1 and s.get("sniff.drop_parse") == 0,
       CHECKS[2], s)

    # 4. the gateway's own initiation towards a client on port 51820
    g4.sendto(PKT, (CL4, PORT))
    got = wait_until(lambda: stat(stats, "sniff.drop_outgoing") == 1)
    s = read_stats(stats)
    ok(got and s.get("sniff.received") == 3 and s.get("sniff.emitted") == 2, CHECKS[3], s)

    # 5. IPv6
    c6.sendto(b"\x02" + PKT[1:], (GW6, PORT))
    c6.sendto(PKT[:100], (GW6, PORT))
    c6.sendto(PKT, (GW6, PORT))
    line6 = f"add {KEY} [{CL6}]:{CL_PORT} 10.9.0.2/32"
    got = wait_until(lambda: line6 in lines(out) and stat(stats, "pipeline.pull.ok") == 2)
    s = read_stats(stats)
    ok(got and s.get("sniff.emitted") == 3 and s.get("sniff.received") == 4,
       CHECKS[4], (lines(out), s))

    # 6. kernel drops: stop the daemon, overflow its 64 KiB buffer
    N = 3000
    before = read_stats(stats)
    d.send(signal.SIGSTOP)
    for _ in range(N):
        c4.sendto(BAD, (GW4, PORT))
    d.send(signal.SIGCONT)

    def settled():
        s = read_stats(stats)
        return (s.get("sniff.received", 0) - before.get("sniff.received", 0) +
                s.get("sniff.kernel_drops", 0) >= N)
    got = wait_until(settled, 10)
    s = read_stats(stats)
    rx = s.get("sniff.received", 0) - before.get("sniff.received", 0)
    drops = s.get("sniff.kernel_drops", 0)
    ok(got and drops > 0 and rx + drops == N and
       s.get("pipeline.pull.drop.mac1", 0) - before.get("pipeline.pull.drop.mac1", 0) == rx,
       CHECKS[5] + f" (received {rx}, kernel_drops {drops})", s)

    # 7. stop
    rc = d.stop()
    ok(rc == 0 and "not closed cleanly" not in d.output() and "never completed" not in d.output(),
       CHECKS[6] + f" (exit {rc})", d.output())

    # --------------------------------------- pipeline with installer-reinject
    err = build_installer()
    if err:
        for name in CHECKS[7:10]:
            skip(name, f"cannot build the test installer: {err.strip()[:200]}")
    else:
        with netns(GW_NS):
            l4 = udp(socket.AF_INET, "0.0.0.0", PORT)
            l6 = udp(socket.AF_INET6, "::", PORT)
        out, stats, cfg = f"{tmp}/r.out", f"{tmp}/r.json", f"{tmp}/r.yaml"
        write(cfg, config(stats, f"""  inst:
    plugin: installer-reinject
    options:
      path: {out}""", ""))
        d = daemon(cfg)
        started = running(d)
        hexkey = VEC["initiator_public_key"]
        for i, (cs, ls, src, dst) in enumerate(((c4, l4, CL4, GW4), (c6, l6, CL6, GW6))):
            cs.sendto(PKT, (dst, PORT))
            got = recv_all(ls, 2) if started else []
            same = [g for g in got if g[0] == PKT and g[1][0] == src and g[1][1] == CL_PORT]
            wait_until(lambda: stat(stats, "pipeline.pull.ok") == i + 1)
            s = read_stats(stats)
            ok(started and len(got) == 2 and len(same) == 2 and
               stat(stats, "sniff.reinjected") == i + 1 and
               lines(out).count(f"add {hexkey}") == i + 1 and not s.get("sniff.reinject_failed"),
               CHECKS[7 + i] + " (the listener got it twice: from the wire, then re-sent)",
               (got, s, d.output()))
        rc = d.stop()
        ok(started and f"to port {PORT} on {GW_IF}" in d.output() and rc == 0,
           CHECKS[9] + f" (exit {rc})", d.output())
        l4.close()
        l6.close()

    # ------------------------------------------------------------ failures
    cfg = f"{tmp}/f.yaml"
    write(cfg, config(f"{tmp}/f.json", f"""  inst:
    plugin: installer-file
    options:
      path: {tmp}/f.out""", f"      port: {PORT}").replace(f"interface: {GW_IF}", "interface: nosuch0"))
    d = daemon(cfg)
    rc = d.wait_exit()
    ok(rc == 1 and "interface nosuch0: no such interface" in d.output()
       and "not closed cleanly" not in d.output(), CHECKS[10] + f" (exit {rc})", d.output())

    write(cfg, config(f"{tmp}/f.json", f"""  inst:
    plugin: installer-file
    options:
      path: {tmp}/f.out""", ""))
    d = daemon(cfg)
    rc = d.wait_exit()
    ok(rc == 1 and "reports no listen port" in d.output() and "set port" in d.output(),
       CHECKS[11] + f" (exit {rc})", d.output())

    write(cfg, config(f"{tmp}/f.json", f"""  inst:
    plugin: installer-file
    options:
      path: {tmp}/f.out""", "").replace(f"interface: {GW_IF}", "interface: eth0/1"))
    p = subprocess.run([WGGWD, "check", "-c", cfg], capture_output=True, text=True)
    ok(p.returncode != 0 and "expected an interface name" in p.stdout + p.stderr,
       CHECKS[12], p.stdout + p.stderr)
    write(cfg, config(f"{tmp}/f.json", f"""  inst:
    plugin: installer-file
    options:
      path: {tmp}/f.out""", "      watch_max: 257"))
    p = subprocess.run([WGGWD, "check", "-c", cfg], capture_output=True, text=True)
    ok(p.returncode != 0 and "watch_max" in p.stdout + p.stderr and "257" in p.stdout + p.stderr,
       CHECKS[13], p.stdout + p.stderr)
    # ---------------------------- end to end: wireguard-go on both sides
    why = err and "cannot build the test installer"
    for tool in ("wireguard-go", "wg"):
        if not why and not shutil.which(tool):
            why = f"{tool} not installed"
    if not why and not os.path.exists("/dev/net/tun"):
        why = "no /dev/net/tun"
    if why:
        skip(CHECKS[14], why)
    else:
        e2e_checks()
except Exception as e:  # a broken setup is a failure, not a crash
    import traceback
    ok(False, f"setup or run: {e!r} (build: {BUILD})", traceback.format_exc())
finally:
    cleanup()
done()
