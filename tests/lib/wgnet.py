# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""Network namespaces, veth pairs and wireguard-go interfaces for tests.

Everything a Net makes carries a name unique to this process (prefix, pid,
counter), so tests can run side by side; UAPI sockets share one directory,
so interface names matter most. Everything it starts it stops by PID, and
it deletes its namespaces: on cleanup(), on leaving a `with` block, at exit,
and on SIGTERM/SIGINT/SIGHUP. Traffic only goes to loopback or to these
namespaces.

    with wgnet.Net("wgt") as net:
        topo = net.gateway_with_clients(2)
        net.wg_show_dump(topo.gw_ns, topo.gw_if)
        net.ping(topo.clients[0].ns, topo.gw_tunnel_ip)

Needs root, iproute2, wireguard-go and wg. Standard library only.
"""
import atexit
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SOCK_DIR = "/var/run/wireguard"
_serial = itertools.count()


def wait_until(cond, timeout=5.0, step=0.01):
    """Poll cond() until it is true or the deadline passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def missing():
    """Why these helpers cannot run here (a TAP skip reason), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "wireguard-go", "wg"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def sh(*cmd, input=None, check=True):
    """Run a command; its stdout. Raises with its stderr on failure."""
    p = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def first_ping_ms(ns, addr, timeout=3):
    """ms until the first echo reply from ns to addr (a tunnel's set-up
    included: the first echo waits for the handshake), or None."""
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", str(timeout), addr],
                       capture_output=True, text=True)
    if p.returncode:
        return None
    for w in p.stdout.split():
        if w.startswith("time="):
            return float(w[5:])
    return None


def genkey():
    """A fresh (private, public) WireGuard key pair, base64."""
    priv = sh("wg", "genkey").strip()
    return priv, pubkey(priv)


def pubkey(priv):
    return sh("wg", "pubkey", input=priv + "\n").strip()


def _b36(n):
    s = ""
    while True:
        n, r = divmod(n, 36)
        s = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + s
        if not n:
            return s


def _child_env():
    env = dict(os.environ)
    # wireguard-go re-executes itself forever when this is set: never pass it
    env.pop("WG_PROCESS_FOREGROUND", None)
    return env


class Client:
    """One client namespace of a gateway_with_clients() topology."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return f"Client({self.__dict__})"


class Topology:
    """What gateway_with_clients() built. Attributes:
    gw_ns, gw_if, gw_port, gw_priv, gw_pub, gw_key_file, gw_uplink (the
    bridge the clients' veths are on), gw_addr (its address there),
    gw_tunnel_ip, tunnel_net, clients (list of Client: ns, iface, priv,
    pub, key_file, veth (in the gateway ns), dev (in the client ns), addr,
    port, endpoint ("addr:port"), tunnel_ip, log)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return f"Topology({self.__dict__})"


class Net:
    def __init__(self, prefix="wgt"):
        if len(prefix) > 4:
            raise ValueError("prefix: at most 4 characters (interface names are <= 15)")
        self.prefix = prefix
        self.tag = f"{prefix}{_b36(os.getpid())}"
        self.namespaces = []
        self.procs = []        # (Popen, what) we stop by pid
        self.sockets = []      # UAPI sockets of the wireguard-go we started
        self.tmp = tempfile.mkdtemp(prefix=f"wgnet-{self.tag}-")
        self._closed = False
        atexit.register(self.cleanup)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(s, _exit_on_signal)

    # ------------------------------------------------------------ naming
    def name(self, kind=""):
        """A name unique to this process, <= 15 characters (interface-safe)."""
        n = f"{self.tag}{kind}{_b36(next(_serial))}"
        if len(n) > 15:
            raise ValueError(f"name {n!r} is longer than 15 characters")
        return n

    # ------------------------------------------------------- namespaces
    def netns(self):
        """A new network namespace with loopback up; its name."""
        ns = f"wgnet-{self.name('n')}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def run(self, ns, *cmd, check=True, input=None):
        """Run cmd inside ns; its stdout."""
        return sh("ip", "netns", "exec", ns, *cmd, check=check, input=input)

    def addr(self, ns, dev, cidr):
        sh("ip", "-n", ns, "addr", "add", cidr, "dev", dev)

    def up(self, ns, dev):
        sh("ip", "-n", ns, "link", "set", dev, "up")

    def veth(self, ns_a, ns_b, cidr_a=None, cidr_b=None, name_a=None, name_b=None):
        """A veth pair from ns_a to ns_b, addressed and up; (name_a, name_b)."""
        name_a = name_a or self.name("v")
        name_b = name_b or self.name("v")
        sh("ip", "link", "add", name_a, "netns", ns_a, "type", "veth",
           "peer", "name", name_b, "netns", ns_b)
        for ns, dev, cidr in ((ns_a, name_a, cidr_a), (ns_b, name_b, cidr_b)):
            if cidr:
                self.addr(ns, dev, cidr)
            self.up(ns, dev)
        return name_a, name_b

    def bridge(self, ns, cidr=None):
        br = self.name("b")
        sh("ip", "-n", ns, "link", "add", br, "type", "bridge")
        if cidr:
            self.addr(ns, br, cidr)
        self.up(ns, br)
        return br

    # -------------------------------------------------------- processes
    def track(self, proc, what="process"):
        """Stop this Popen (by its pid) at cleanup."""
        self.procs.append((proc, what))
        return proc

    def key_file(self, priv):
        fd, path = tempfile.mkstemp(dir=self.tmp, prefix="key-")
        os.fchmod(fd, 0o600)
        os.write(fd, (priv + "\n").encode())
        os.close(fd)
        return path

    def wireguard_go(self, ns, iface=None, log_level="verbose", timeout=5.0):
        """Start `wireguard-go -f IFACE` in ns (its pid is ours: ip netns
        exec execs it) and wait for its UAPI socket. Returns (iface, log
        path). LOG_LEVEL=verbose logs each handshake message."""
        iface = iface or self.name("w")
        sock = os.path.join(SOCK_DIR, f"{iface}.sock")
        if os.path.exists(sock):
            raise RuntimeError(f"{sock} exists: another wireguard-go has this name")
        log = os.path.join(self.tmp, f"{iface}.log")
        env = _child_env()
        env["LOG_LEVEL"] = log_level
        with open(log, "wb") as f:
            p = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", iface],
                                 stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env)
        self.track(p, f"wireguard-go {iface}")
        self.sockets.append(sock)
        if not wait_until(lambda: os.path.exists(sock) or p.poll() is not None, timeout) \
                or p.poll() is not None:
            with open(log, errors="replace") as f:
                raise RuntimeError(f"wireguard-go {iface} did not create {sock}: {f.read()[-500:]}")
        return iface, log

    def stop_wireguard_go(self, iface, timeout=5.0):
        """Stop the wireguard-go we started for iface (by its pid) and wait
        until its socket is gone."""
        sock = os.path.join(SOCK_DIR, f"{iface}.sock")
        for p, what in self.procs:
            if what == f"wireguard-go {iface}" and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if os.path.exists(sock):
            os.unlink(sock)  # ours: the name is unique to this process

    def restart_gateway(self, topo):
        """Stop the gateway's wireguard-go and start it again as
        gateway_with_clients() made it: same name, key, port and address,
        and no peer (like a restarted wireguard-go)."""
        self.stop_wireguard_go(topo.gw_if)
        self.wireguard_go(topo.gw_ns, topo.gw_if)
        self.wg_set(topo.gw_ns, topo.gw_if, private_key=topo.gw_priv, listen_port=topo.gw_port)
        self.addr(topo.gw_ns, topo.gw_if, f"{topo.gw_tunnel_ip}/24")
        self.up(topo.gw_ns, topo.gw_if)

    def wg_set(self, ns, iface, *args, private_key=None, listen_port=None):
        """`wg set IFACE [private-key FILE] [listen-port N] ARGS...` in ns."""
        cmd = ["wg", "set", iface]
        if private_key:
            cmd += ["private-key", self.key_file(private_key)]
        if listen_port is not None:
            cmd += ["listen-port", str(listen_port)]
        self.run(ns, *cmd, *[str(a) for a in args])

    def wg_show_dump(self, ns, iface):
        """`wg show IFACE dump`, parsed: {"private_key", "public_key",
        "listen_port", "fwmark", "peers": {public_key: {"preshared_key",
        "endpoint" (None), "allowed_ips" [..], "latest_handshake" (int s),
        "rx", "tx", "keepalive" (0 = off)}}}."""
        out = self.run(ns, "wg", "show", iface, "dump").splitlines()
        if not out:
            raise RuntimeError(f"wg show {iface} dump: no output")
        f = out[0].split("\t")
        dev = {"private_key": f[0], "public_key": f[1], "listen_port": int(f[2]),
               "fwmark": f[3], "peers": {}}
        for line in out[1:]:
            f = line.split("\t")
            if len(f) < 8:
                continue
            dev["peers"][f[0]] = {
                "preshared_key": None if f[1] == "(none)" else f[1],
                "endpoint": None if f[2] == "(none)" else f[2],
                "allowed_ips": [] if f[3] == "(none)" else f[3].split(","),
                "latest_handshake": int(f[4]),
                "rx": int(f[5]),
                "tx": int(f[6]),
                "keepalive": 0 if f[7] == "off" else int(f[7]),
            }
        return dev

    def peer(self, ns, iface, pub):
        """One peer of wg_show_dump(), or None."""
        try:
            return self.wg_show_dump(ns, iface)["peers"].get(pub)
        except RuntimeError:
            return None

    def ping(self, ns, addr, count=1, timeout=1):
        """True if addr answers a ping from ns."""
        p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count),
                            "-W", str(timeout), addr], capture_output=True)
        return p.returncode == 0

    # ---------------------------------------------------------- topology
    def gateway_with_clients(self, n=1, gw_port=51820, client_port=51820,
                             underlay="10.201.0", tunnel="10.202.0", gw_peers=False):
        """A gateway namespace with a wireguard-go interface (private key,
        listen port, tunnel address, up; no peer unless gw_peers) and a
        bridge (uplink) to n client namespaces. Each client has its own
        wireguard-go interface with the gateway as peer: endpoint = the
        gateway's uplink address:port, allowed IPs = the tunnel /24; it
        sends nothing until something is routed into the tunnel. Client i
        (from 0) is <underlay>.(10+i) and <tunnel>.(10+i)."""
        gw_ns = self.netns()
        gw_addr = f"{underlay}.1"
        uplink = self.bridge(gw_ns, f"{gw_addr}/24")
        gw_priv, gw_pub = genkey()
        gw_if, gw_log = self.wireguard_go(gw_ns)
        self.wg_set(gw_ns, gw_if, private_key=gw_priv, listen_port=gw_port)
        self.addr(gw_ns, gw_if, f"{tunnel}.1/24")
        self.up(gw_ns, gw_if)
        clients = []
        for i in range(n):
            ns = self.netns()
            addr, tip = f"{underlay}.{10 + i}", f"{tunnel}.{10 + i}"
            veth, dev = self.veth(gw_ns, ns, None, f"{addr}/24")
            sh("ip", "-n", gw_ns, "link", "set", veth, "master", uplink)
            priv, pub = genkey()
            iface, log = self.wireguard_go(ns)
            self.wg_set(ns, iface, "peer", gw_pub, "endpoint", f"{gw_addr}:{gw_port}",
                        "allowed-ips", f"{tunnel}.0/24",
                        private_key=priv, listen_port=client_port)
            self.addr(ns, iface, f"{tip}/24")
            self.up(ns, iface)
            clients.append(Client(ns=ns, iface=iface, priv=priv, pub=pub,
                                  key_file=self.key_file(priv), veth=veth, dev=dev,
                                  addr=addr, port=client_port,
                                  endpoint=f"{addr}:{client_port}", tunnel_ip=tip, log=log))
            if gw_peers:
                self.wg_set(gw_ns, gw_if, "peer", pub, "allowed-ips", f"{tip}/32")
        return Topology(gw_ns=gw_ns, gw_if=gw_if, gw_port=gw_port, gw_priv=gw_priv,
                        gw_pub=gw_pub, gw_key_file=self.key_file(gw_priv), gw_uplink=uplink,
                        gw_addr=gw_addr, gw_tunnel_ip=f"{tunnel}.1",
                        tunnel_net=f"{tunnel}.0/24", gw_log=gw_log, clients=clients)

    # ----------------------------------------------------------- cleanup
    def cleanup(self):
        if self._closed:
            return
        self._closed = True
        for p, _ in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for sock in self.sockets:
            try:
                os.unlink(sock)  # ours: the name is unique to this process
            except OSError:
                pass
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False


def _exit_on_signal(signum, frame):
    sys.exit(128 + signum)  # atexit then cleans up
