#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""`wggwd decode`: every vector, both session captures, and a fresh capture
of initiations from wireguard-go in network namespaces."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import ROOT, WGGWD, done, ok, secret_file, skip, vectors, wait_until  # noqa: E402

tmp = tempfile.mkdtemp(prefix="wggwd-decode-")
V = vectors()


def decode(keyfile, *args):
    p = subprocess.run([WGGWD, "decode", "--private-key-file", keyfile, *args],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, [json.loads(x) for x in p.stdout.splitlines() if x.strip()], p.stderr


# 1. every vector, as hex
keys = {}
for v in V:
    kf = keys.setdefault(v["responder_private_key_b64"],
                         secret_file(tmp, f"k{len(keys)}", v["responder_private_key_b64"]))
    rc, out, err = decode(kf, "--hex", v["packet"] or "")
    exp = v["expected"]
    if rc != 0 or len(out) != 1:
        ok(False, f"{v['id']}: decode ran", err)
        continue
    r = out[0]
    if exp["result"] == "ok":
        want = base64.b64encode(bytes.fromhex(exp["initiator_public_key"])).decode()
        good = (r.get("public_key") == want
                and r.get("sender_index") == exp["sender_index"]
                and r.get("timestamp") == exp.get("timestamp_tai64n", r.get("timestamp"))
                and r.get("timestamp_utc") == exp.get("timestamp_utc", r.get("timestamp_utc"))
                and r.get("authenticated") is True and r.get("mac1_ok") is True)
    else:
        want = exp["result"]
        if want == "length":  # ABI 2.0 says which: short or long
            want = "short" if len(bytes.fromhex(v["packet"] or "")) < 148 else "long"
        good = (r.get("error") == want and r.get("authenticated") is False
                and r.get("mac1_ok") == (exp["result"] in ("static", "timestamp")))
    ok(good, f"{v['id']} ({v['kind']}): {exp['result']}", json.dumps(r))

# 2. --no-auth stops after the static key
tsneg = [v for v in V if v["expected"]["result"] == "timestamp"][0]
rc, out, _ = decode(keys[tsneg["responder_private_key_b64"]], "--no-auth", "--hex", tsneg["packet"])
ok(rc == 0 and out and out[0].get("authenticated") is False and "public_key" in out[0],
   "--no-auth: a bad timestamp is not noticed, the key is unproven", out)

# 3. the session captures: each vector's frame decodes to its key
for pcap in ("wireguard-go-session.pcap", "linux-kernel-session.pcap"):
    valid = [v for v in V if v["kind"] == "valid" and v["capture"]["pcap_file"] == pcap]
    good = 0
    for v in valid:
        rc, out, err = decode(keys[v["responder_private_key_b64"]], "--pcap",
                              os.path.join(ROOT, "tests", "vectors", pcap))
        hit = [r for r in out if r.get("frame") == v["capture"]["pcap_frame"]]
        if rc == 0 and hit and hit[0].get("public_key") == v["expected"]["initiator_public_key_b64"] \
                and hit[0].get("src") == v["capture"]["src"]:
            good += 1
    ok(valid and good == len(valid), f"{pcap}: {good}/{len(valid)} vector frames decode to their key")

rc, out, err = decode(keys[V[0]["responder_private_key_b64"]], "--pcap",
                      os.path.join(ROOT, "tests", "vectors", "wireguard-go-session.pcap"))
ok(rc == 0 and len(out) == 31, f"only type-1 packets are decoded by default ({len(out)} of 83 frames)")

# 4. bad input: a key file readable by others, a missing pcap
loose = secret_file(tmp, "loose", V[0]["responder_private_key_b64"], 0o644)
rc, out, err = decode(loose, "--hex", V[0]["packet"])
ok(rc != 0 and "refused" in err and not out, "a key file readable by others is refused", err)
rc, out, err = decode(keys[V[0]["responder_private_key_b64"]], "--pcap", f"{tmp}/nope.pcap")
ok(rc != 0 and "nope.pcap" in err, "a missing pcap is an error", err)


# 5. fresh initiations from wireguard-go, captured in a network namespace
def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


CAPTURE = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[2], 0))
s.settimeout(10)
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
out.flush()
open(sys.argv[1] + ".ready", "w").close()
n = 0
deadline = time.time() + 10
while n < int(sys.argv[3]) and time.time() < deadline:
    try:
        data, addr = s.recvfrom(65535)
    except socket.timeout:
        break
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    # IPv4 UDP to port 51820 whose payload starts with type 1
    if len(data) > 42 and data[12:14] == b"\x08\x00" and data[23] == 17:
        ihl = (data[14] & 15) * 4
        if data[14 + ihl + 2:14 + ihl + 4] == b"\xca\x6c" and data[14 + ihl + 8] == 1:
            t = time.time()
            out.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(data), len(data)) + data)
            out.flush()
            n += 1
"""

if os.geteuid() != 0 or not shutil.which("wireguard-go") or not shutil.which("wg"):
    skip("fresh wireguard-go initiations decode", "needs root, wireguard-go and wg")
else:
    tag = f"{os.getpid() % 100000}"
    gw, cl = f"wgdgw{tag}", f"wgdcl{tag}"
    gwif, clif = f"wgdg{tag}", f"wgdc{tag}"
    procs = []
    try:
        for ns in (gw, cl):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "vg" + tag, "netns", gw, "type", "veth", "peer", "vc" + tag, "netns", cl)
        sh("ip", "-n", gw, "addr", "add", "10.231.0.1/24", "dev", "vg" + tag)
        sh("ip", "-n", cl, "addr", "add", "10.231.0.2/24", "dev", "vc" + tag)
        for ns, dev in ((gw, "vg" + tag), (cl, "vc" + tag)):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        gpriv = sh("wg", "genkey").stdout.strip()
        cpriv = sh("wg", "genkey").stdout.strip()
        gpub = subprocess.run(["wg", "pubkey"], input=gpriv, capture_output=True, text=True).stdout.strip()
        cpub = subprocess.run(["wg", "pubkey"], input=cpriv, capture_output=True, text=True).stdout.strip()
        gkey = secret_file(tmp, "gw.key", gpriv)
        ckey = secret_file(tmp, "cl.key", cpriv)
        pcap = f"{tmp}/fresh.pcap"
        cap = subprocess.Popen(["ip", "netns", "exec", gw, sys.executable, "-c", CAPTURE, pcap,
                                "vg" + tag, "3"])
        procs.append(cap)
        wait_until(lambda: os.path.exists(pcap + ".ready"), 5)
        for ns, ifn in ((gw, gwif), (cl, clif)):
            p = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", ifn],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_until(lambda: os.path.exists(f"/var/run/wireguard/{ifn}.sock"), 5)
        # the gateway does not know the client: the client keeps retrying
        sh("ip", "netns", "exec", gw, "wg", "set", gwif, "private-key", gkey, "listen-port", "51820")
        sh("ip", "netns", "exec", cl, "wg", "set", clif, "private-key", ckey, "peer", gpub,
           "endpoint", "10.231.0.1:51820", "allowed-ips", "10.232.0.0/24")
        sh("ip", "-n", cl, "addr", "add", "10.232.0.2/24", "dev", clif)
        sh("ip", "-n", gw, "link", "set", gwif, "up")
        sh("ip", "-n", cl, "link", "set", clif, "up")
        subprocess.run(["ip", "netns", "exec", cl, "ping", "-c", "1", "-W", "1", "10.232.0.1"],
                       capture_output=True)
        cap.wait(15)
        rc, out, err = decode(gkey, "--pcap", pcap)
        ok(rc == 0 and out and all(r.get("public_key") == cpub and r.get("authenticated") for r in out)
           and all(r.get("src") == "10.231.0.2:" + r["src"].split(":")[1] for r in out),
           f"fresh wireguard-go initiations ({len(out)}) decode to the client's key, authenticated",
           json.dumps(out) + err)
        rc, out, err = decode(ckey, "--pcap", pcap)
        ok(rc == 0 and out and all(r.get("error") == "mac1" for r in out),
           "decoded with the wrong interface key: every one fails mac1", json.dumps(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for ns in (gw, cl):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

shutil.rmtree(tmp, ignore_errors=True)
done()
