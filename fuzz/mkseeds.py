#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/):
initiations from tests/vectors, UAPI replies from the transcripts in
../shared/docs/uapi-transcripts.txt, YAML from etc/ and tests/config/, and
the rest (WebSocket streams, JSON answers, netlink datagrams, database
rows) built from their structures. Files of the same name are
overwritten; others (crash-* inputs kept as regressions) are left alone.
Usage: fuzz/mkseeds.py [TARGET...]"""
import base64, hashlib, json, os, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WSKEY = b"dGhlIHNhbXBsZSBub25jZQ=="           # RFC 6455's example key
# the key fuzz-peerjson asks about (32 bytes 0x01..0x20)
ASKED = bytes(range(1, 33))
ASKED_B64 = base64.b64encode(ASKED).decode()


def vectors():
    with open(os.path.join(ROOT, "tests/vectors/vectors-dev.json")) as f:
        return json.load(f)["vectors"]


def put(target, name, data):
    d = os.path.join(ROOT, "fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frame(opcode, payload, mask=True, fin=True, key=b"\x11\x22\x33\x44"):
    b = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        b += bytes([m | n])
    elif n < 65536:
        b += bytes([m | 126]) + struct.pack(">H", n)
    else:
        b += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        b += key
        payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return b + payload


def upgrade(path="/wg", extra=""):
    return ("GET %s HTTP/1.1\r\nHost: gw.example:8080\r\nUpgrade: websocket\r\n"
            "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n%s\r\n" % (path, WSKEY.decode(), extra)).encode()


def wsock():
    init = bytes.fromhex(vectors()[0]["packet"])
    auth = "Authorization: Bearer fuzz-token\r\n"
    data = frame(2, b"\x04\x00\x00\x00" + bytes(28))
    put("wsock", "upgrade-only", b"\x00\x00" + upgrade())
    put("wsock", "upgrade-init", b"\x00\x00" + upgrade() + frame(2, init))
    put("wsock", "token-init-split", b"\x84\x05" + upgrade(extra=auth) + frame(2, init) + data)
    put("wsock", "frames", b"\x80\x00" + upgrade() + frame(9, b"hi") + data +
        frame(2, init[:70], fin=False) + frame(0, init[70:]) + frame(8, b"\x03\xe8bye"))
    put("wsock", "text-close", b"\x00\x00" + upgrade() + frame(1, b"hello"))
    put("wsock", "oversize", b"\x01\x00" + upgrade() + frame(2, bytes(300)))
    put("wsock", "unmasked", b"\x00\x00" + upgrade() + frame(2, init, mask=False))
    put("wsock", "bad-version", b"\x00\x00" + upgrade().replace(b"Version: 13", b"Version: 8"))
    put("wsock", "wrong-path", b"\x00\x00" + upgrade("/x?y=1"))
    put("wsock", "no-token", b"\x04\x00" + upgrade())
    put("wsock", "held", b"\x48\x00" + upgrade() + frame(2, init) * 3)
    put("wsock", "idle", b"\x10\x00" + upgrade() + frame(2, init))


def wsbridge():
    acc = base64.b64encode(hashlib.sha1(WSKEY + GUID).digest())
    resp = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    init = bytes.fromhex(vectors()[0]["packet"])
    # the server's frames are not masked
    put("wsbridge", "open", b"\x01\x00" + resp)
    put("wsbridge", "open-frames", b"\x07\x00" + resp + frame(2, b"\x02" + bytes(91), mask=False) +
        frame(9, b"p", mask=False) + frame(2, init, mask=False))
    put("wsbridge", "split", b"\x01\x07" + resp + frame(2, bytes(200), mask=False) +
        frame(8, b"\x03\xe9", mask=False))
    put("wsbridge", "refused", b"\x00\x00HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n"
        b"Connection: close\r\nContent-Length: 0\r\n\r\n")
    put("wsbridge", "bad-accept", b"\x00\x00" + resp.replace(acc, b"x" * len(acc)))
    put("wsbridge", "close", b"\x00\x00" + resp + frame(8, b"\x03\xe8", mask=False))


def answer(**kw):
    d = {"public_key": ASKED_B64, "allowed_ips": ["10.90.0.2/32"]}
    d.update(kw)
    return json.dumps(d)


def peerjson():
    put("peerjson", "minimal", b"\x00" + answer().encode())
    put("peerjson", "full", b"\x00" + answer(allowed_ips=["10.90.0.2/32", "fd00::2/128", "10.1.0.0/16"],
        preshared_key=base64.b64encode(bytes(32)).decode(), persistent_keepalive=25,
        ttl=300).encode())
    put("peerjson", "nulls", b"\x01" + answer(preshared_key=None, persistent_keepalive=None,
        ttl=None).encode())
    put("peerjson", "mismatch", b"\x00" + answer(public_key=base64.b64encode(bytes(32)).decode()).encode())
    put("peerjson", "many", b"\x02" + answer(allowed_ips=["10.%d.%d.0/24" % (i // 256, i % 256)
        for i in range(40)]).encode())
    put("peerjson", "bad-ip", b"\x00" + answer(allowed_ips=["10.0.0.1/33", 7]).encode())
    put("peerjson", "not-object", b"\x00[1,2,3]")
    put("peerjson", "expires-at", b"\x00" + answer(expires_at="2026-12-02T10:00:00Z").encode())
    put("peerjson", "expires-at-frac", b"\x00" + answer(expires_at="2027-02-28T23:59:60.5-03:30").encode())
    put("peerjson", "lease", b"\x00" + answer(lease=3600).encode())
    put("peerjson", "lease-both", b"\x00" + answer(lease=3600, expires_at="2026-12-02T10:00:00Z").encode())


def nats():
    key = base64.b64encode(bytes(range(1, 33))).decode()
    ack = "$JS.ACK.PEERS.wggwd.1.42.7.1700000000000000000.0"
    ack2 = "$JS.ACK.dom.acchash.PEERS.wggwd.3.43.8.1700000000000000000.0.tok"
    def m(flags, subj, body):
        return bytes([flags]) + subj.encode() + b"\n" + json.dumps(body).encode()
    put("nats", "add", m(0, ack, {"op": "add", "public_key": key, "allowed_ips": ["10.90.0.2/32"],
        "persistent_keepalive": 25, "endpoint": "192.0.2.1:51820", "version": 3}))
    put("nats", "add-v6", m(1, ack2, {"public_key": key, "allowed_ips": ["fd00::2/128"],
        "endpoint": "[2001:db8::1]:51820", "preshared_key": base64.b64encode(bytes(32)).decode()}))
    put("nats", "remove", m(0, ack, {"op": "remove", "public_key": key, "version": 9}))
    put("nats", "policy", m(2, ack, {"public_key": key, "allowed_ips": ["192.168.1.0/24"]}))
    put("nats", "own-endpoint", m(4, ack, {"public_key": key, "allowed_ips": [],
        "endpoint": "127.0.0.1:51820"}))
    put("nats", "bad", m(0, "$JS.ACK.x", {"op": 3, "public_key": "AAAA"}))
    put("nats", "lease", m(0, ack, {"public_key": key, "allowed_ips": ["10.1.2.3/32"], "lease": 86400}))
    put("nats", "expires-at", m(0, ack, {"public_key": key, "allowed_ips": ["10.1.2.3/32"],
        "expires_at": "2026-12-31T23:59:59+01:00"}))


def transcripts():
    """{"T1": [response bytes, ...]} from ../shared/docs/uapi-transcripts.txt"""
    path = os.path.join(ROOT, "..", "shared", "docs", "uapi-transcripts.txt")
    out, cur, mode = {}, None, None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("----- T"):
            cur = line.split()[1]
            out[cur] = []
            mode = None
        elif line.startswith("<<< response"):
            mode = "resp"
            out[cur].append("")
        elif line.startswith(">>>"):
            mode = "req"
        elif mode == "resp" and line.startswith("    "):
            out[cur][-1] += line[4:].replace("\u23ce", "") + "\n"
    return {k: [r.encode() for r in v] for k, v in out.items()}


def uapi():
    t = transcripts()
    ok = b"errno=0\n\n"
    get3, get6, get14 = t["T3"][0], t["T6"][0], t["T14"][0]
    def s(flags, get, *steps):
        return bytes([flags]) + get + b"".join(b"\0" + bytes([a]) + r for a, r in steps)
    # actions: 0x00 install key0, 0x01 remove key0, 0x02 dump, 0x03 timers
    put("uapi", "start-only", s(1, get3))
    put("uapi", "start-no-key", s(1, t["T1"][0]))
    put("uapi", "install-dump", s(1, get3, (0x00, ok), (0x02, get6), (0x01, ok)))
    put("uapi", "inversion", s(0x04, get3, (0x40, ok), (0x03, get6), (0x03, ok), (0x02, get14)))
    put("uapi", "errors", s(1, get3, (0x00, t["T9"][0]), (0x00, t["T13"][0]), (0x02, t["T11"][0])))
    put("uapi", "split", s(0x09, get6, (0x90, ok), (0x02, get14), (0x01, t["T18"][0])))
    put("uapi", "found-unchanged", s(0x05, get6, (0x80, ok), (0x02, t["T20"][0])))
    put("uapi", "eof", s(2, get3, (0x00, b"errno=0\n"), (0x02, b"")))
    put("uapi", "lost-port", s(1, t["T22"][0], (0x00, t["T21"][0])))


# ---- generic netlink, as the kernel's wireguard module answers (crafted
# from include/uapi/linux/wireguard.h and linux/genetlink.h)
FAMILY = 0x1c


def nla(t, payload, nested=False):
    n = 4 + len(payload)
    b = struct.pack("<HH", n, t | (0x8000 if nested else 0)) + payload
    return b + bytes((4 - n % 4) % 4)


def nlmsg(typ, flags, payload, seq=1, pid=0):
    n = 16 + len(payload)
    return struct.pack("<IHHII", n, typ, flags, seq, pid) + payload + bytes((4 - n % 4) % 4)


def genl(cmd, attrs, version=1):
    return struct.pack("<BBH", cmd, version, 0) + b"".join(attrs)


def family_reply():
    return nlmsg(0x10, 0, genl(1, [nla(2, b"wireguard\0"), nla(1, struct.pack("<H", FAMILY)),
                                    nla(3, struct.pack("<I", 1)), nla(4, struct.pack("<I", 0)),
                                    nla(5, struct.pack("<I", 8))], 2))


def peer_attr(i, key, ips, ep=None, psk=None, ka=0):
    a = [nla(1, key)]
    if psk:
        a.append(nla(2, psk))
    if ep:
        a.append(nla(4, ep))
    a += [nla(5, struct.pack("<H", ka)), nla(6, struct.pack("<qq", 1795536983, 832879291)),
          nla(7, struct.pack("<Q", 92)), nla(8, struct.pack("<Q", 180)), nla(10, struct.pack("<I", 1))]
    al = []
    for j, (fam, addr, cidr) in enumerate(ips):
        al.append(nla(j, nla(1, struct.pack("<H", fam)) + nla(2, addr) + nla(3, bytes([cidr])), True))
    a.append(nla(9, b"".join(al), True))
    return nla(i, b"".join(a), True)


def dump_msgs(peers, priv=bytes(range(32, 64)), port=51820, multi=True):
    dev = [nla(1, struct.pack("<I", 7)), nla(2, b"wg0\0"), nla(3, priv),
           nla(4, bytes(range(64, 96))), nla(6, struct.pack("<H", port)), nla(7, struct.pack("<I", 0))]
    if peers:
        dev.append(nla(8, b"".join(peers), True))
    return nlmsg(FAMILY, 2 if multi else 0, genl(0, dev))


def done():
    return nlmsg(3, 2, struct.pack("<i", 0))


def ack(err=0, msg=None):
    orig = struct.pack("<IHHII", 100, FAMILY, 5, 1, 1000)
    flags = 0x100
    tlv = b""
    if msg:
        flags |= 0x200
        tlv = nla(1, msg.encode() + b"\0")
    return nlmsg(2, flags, struct.pack("<i", err) + orig + tlv)


def netlink():
    def rec(kind, payload):
        return bytes([kind]) + struct.pack("<H", len(payload)) + payload
    key = lambda k: bytes([k + 1]) * 32
    v4 = lambda a, c: (2, bytes(a), c)
    v6 = lambda a, c: (10, bytes(a), c)
    ep4 = struct.pack("<H", 2) + struct.pack(">H", 51820) + bytes([10, 201, 0, 2]) + bytes(8)
    ep6 = struct.pack("<H", 10) + struct.pack(">H", 51820) + bytes(4) + bytes([0x20, 1, 0xd, 0xb8]) + bytes(11) + b"\1" + bytes(4)
    p1 = peer_attr(0, key(0), [v4([10, 0, 0, 1], 32)], ep4, bytes([0x5f]) * 32, 25)
    p2 = peer_attr(1, key(1), [v4([10, 0, 0, 2], 32), v6([0xfd] + [0] * 14 + [2], 128)], ep6)
    start = rec(0, family_reply()) + rec(1, dump_msgs([p1, p2]) + done())
    # kind: 1 get socket; action (kind>>2)&3: 1 install, 2 remove, 3 dump; key (kind>>4)&3
    put("netlink", "start-only", b"\x01" + start)
    put("netlink", "start-empty", b"\x01" + rec(0, family_reply()) + rec(1, dump_msgs([])) + rec(1, done()))
    put("netlink", "install-ack", b"\x01" + start + rec(0x04, ack()) + rec(0x18, ack()))
    put("netlink", "install-extack", b"\x04" + start + rec(0x04, ack(-22, "bad peer")) +
        rec(0x0f, dump_msgs([p1]) ) + rec(0x01, dump_msgs([p2]) + done()))
    put("netlink", "dump-split", b"\x00" + start + rec(0x0d, dump_msgs([p1])) + rec(0x01, dump_msgs([p2])) +
        rec(0x01, done()) + rec(0x84, ack()))
    put("netlink", "no-family", b"\x01" + rec(0, nlmsg(2, 0, struct.pack("<i", -2) + bytes(16))))
    put("netlink", "no-device", b"\x01" + rec(0, family_reply()) + rec(1, nlmsg(2, 0, struct.pack("<i", -19) + bytes(16))))
    # flags 8: each install is 48 keys in 4 KiB messages; answers without
    # an action pile up, so the pool's chain finds one per message it sends
    put("netlink", "bulk-chain", b"\x09" + start + rec(0x04, ack()) + rec(0x00, ack()) * 4 +
        rec(0x14, ack()) + rec(0x00, ack()) * 4 + rec(0x00, ack(-22, "bad peer")) +
        rec(0x84, ack()))
    put("netlink", "foreign-late", b"\x01" + start + rec(0x44, ack()) + rec(0x02, ack()) + rec(0x00, ack()))


def sqlite():
    NULL = b"\0"
    key = lambda k: b"\1" + bytes([k])
    i8 = lambda v: b"\2" + struct.pack("<b", v)
    i64 = lambda v: b"\3" + struct.pack("<q", v)
    blob = lambda b: b"\4" + bytes([len(b)]) + b
    now = lambda s: b"\7" + struct.pack("<h", s)
    ip4 = lambda a, c: bytes([4, c]) + bytes(a) + bytes(12)
    ip6 = lambda a, c: bytes([6, c]) + bytes(a)
    ep4 = bytes([4]) + struct.pack(">H", 51820) + bytes([192, 0, 2, 1]) + bytes(12)
    # peer: key origin removed version keepalive allowed psk endpoint expires updated lease
    def peer(k, origin, removed=0, version=NULL, allowed=ip4([10, 0, 0, 1], 32), psk=NULL,
             ep=NULL, expires=NULL, lease=NULL):
        return (b"\0" + key(k) + i8(origin) + i8(removed) + version + i8(25) + blob(allowed) +
                psk + ep + expires + now(0) + lease)
    neg = lambda k, s: b"\1" + key(k) + now(s)
    stamp = lambda k, t, s: b"\2" + key(k) + blob(t) + now(s)
    rl = lambda k, w, n: b"\3" + key(k) + now(w) + i8(n)
    rows = (peer(0, 2, version=i64(7), ep=blob(ep4), psk=blob(bytes(32))) +
            peer(1, 1, expires=now(60), allowed=ip4([10, 0, 0, 2], 32) + ip6([0xfd] + [0] * 14 + [2], 128)) +
            peer(2, 2, removed=1, version=i64(9)) + neg(3, 30) + stamp(1, bytes([0x40] * 12), -5) +
            rl(3, -10, 3))
    ops = bytes([0x00, 0x08, 0x18, 0x80 | 0x18, 0x01, 0x02 | 0x10, 0x03, 0x04 | 0x10, 0x05, 0x06, 0x07 | 0x08, 0x03])
    put("sqlite", "push-reconcile", b"\x11\x0b" + rows + b"\xff" + ops)
    put("sqlite", "cache-adopt", b"\x21\x1f" + rows + b"\xff" + ops)
    put("sqlite", "keep-remove", b"\x06\x13" + rows + b"\xff" + ops)
    put("sqlite", "odd-types", b"\x31\x03" + b"\0" + key(5) + b"\5\3abc" + b"\6" + struct.pack("<d", 1.5) +
        i64(-1) + i8(-1) + blob(bytes(17)) + blob(bytes(31)) + blob(bytes(5)) + i64(2**62) + NULL + i64(-2**63) +
        b"\xff" + ops)
    put("sqlite", "old-schema", b"\x51\x41" + rows + b"\xff" + ops)
    put("sqlite", "dump-fails", b"\x91\x01" + rows + b"\xff" + b"\x03\x03" + ops)
    put("sqlite", "empty", b"\x10\x00\xff\x00\x03")


def noise():
    for v in vectors():
        put("noise", v["id"], bytes.fromhex(v["packet"]))


def config():
    import glob
    for f in sorted(glob.glob(os.path.join(ROOT, "etc", "*.yaml"))):
        put("config", "etc-" + os.path.basename(f), open(f, "rb").read())
    for sub in ("good", "bad"):
        for f in sorted(glob.glob(os.path.join(ROOT, "tests", "config", sub, "*.yaml*"))):
            put("config", sub + "-" + os.path.basename(f), open(f, "rb").read())


def main():
    todo = sys.argv[1:] or ["noise", "wsock", "wsbridge", "peerjson", "nats", "uapi", "netlink",
                            "sqlite", "config"]
    for t in todo:
        globals()[t]()


if __name__ == "__main__":
    main()
