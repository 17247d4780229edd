#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""decoder-noise on its threads: many fresh initiations through source-hex
with threads 2 (every valid one decoded, garbage dropped as mac1), a tiny
queue (overflow counted), a stop with items in flight (clean exit; no leak
under ASan), `wggwd decode` still decoding inline, and a long fresh-key
flood that must not grow the daemon's RSS once its bounded queues are full.

With --flood SECONDS [N] it is the flood benchmark instead: a known client's
initiations, in a pipeline of their own, decoded while a flood of fresh-key
initiations (N fresh keys every 100 ms, from one network) is, with
threads 0, 1 and 2; prints `name value unit` lines."""
import base64
import hashlib
import hmac
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import TEST_PLUGINS, WGGWD, Daemon, done, ok, read_stats, secret_file, skip, wait_until  # noqa: E402

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402
from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,  # noqa: E402
                                                          PublicFormat)


def h(*parts):
    return hashlib.blake2s(b"".join(parts)).digest()


def hm(key, data):
    return hmac.new(key, data, hashlib.blake2s).digest()


def kdf2(ck, data):
    t0 = hm(ck, data)
    t1 = hm(t0, b"\x01")
    return t1, hm(t0, t1 + b"\x02")


def pub(priv):
    return priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def initiation(spriv, rpub, index, tai_sec=None):
    """A WireGuard handshake initiation from spriv to rpub (Noise IKpsk2)."""
    ck = h(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
    hh = h(h(ck, b"WireGuard v1 zx2c4 Jason@zx2c4.com"), rpub)
    e = X25519PrivateKey.generate()
    epub = pub(e)
    ck = hm(hm(ck, epub), b"\x01")
    hh = h(hh, epub)
    ck, k = kdf2(ck, e.exchange(X25519PublicKey.from_public_bytes(rpub)))
    est = ChaCha20Poly1305(k).encrypt(b"\x00" * 12, pub(spriv), hh)
    hh = h(hh, est)
    ck, k = kdf2(ck, spriv.exchange(X25519PublicKey.from_public_bytes(rpub)))
    t = time.time() if tai_sec is None else tai_sec
    tai = struct.pack(">QI", 2**62 + 10 + int(t), int((t % 1) * 1e9))
    ets = ChaCha20Poly1305(k).encrypt(b"\x00" * 12, tai, hh)
    msg = struct.pack("<II", 1, index) + epub + est + ets
    mac1 = hashlib.blake2s(msg, digest_size=16, key=h(b"mac1----", rpub)).digest()
    return msg + mac1 + b"\x00" * 16


def b64(raw):
    return base64.b64encode(raw).decode()


tmp = tempfile.mkdtemp(prefix="wggwd-dw-")
gw = X25519PrivateKey.generate()
gwpriv = gw.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
GWPUB = pub(gw)
keyf = secret_file(tmp, "gw.key", b64(gwpriv))


def fresh(n, t0=None):
    """n initiations from n fresh keys: (packets, keys)."""
    pk, keys = [], []
    for i in range(n):
        s = X25519PrivateKey.generate()
        pk.append(initiation(s, GWPUB, i + 1, t0).hex())
        keys.append(b64(pub(s)))
    return pk, keys


def garbage(n):
    # type 1, the right length, random mac1
    return [(struct.pack("<I", 1) + os.urandom(144)).hex() for _ in range(n)]


NOBODY = b64(pub(X25519PrivateKey.generate()))


def config(name, threads, queue, hex_opts, known=(NOBODY,), extra="", pipelines=None, stages=""):
    out = os.path.join(tmp, f"{name}.out")
    stats = os.path.join(tmp, f"{name}.stats.json")
    peers = "".join(f"\n        - {{public_key: {k}, allowed_ips: [10.9.{i // 250}.{i % 250 + 1}/32]}}"
                    for i, k in enumerate(known))
    cfg = os.path.join(tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
plugin_path: [{TEST_PLUGINS}]
stats_file: {stats}
stats_interval: 50ms
{extra}
stages:
  hex:
    plugin: source-hex
    options: {hex_opts}
  noise: {{plugin: decoder-noise, options: {{private_key_file: {keyf}, threads: {threads}, queue: {queue}}}}}
  static:
    plugin: resolver-static
    options:
      peers:{peers}
  file: {{plugin: installer-file, options: {{path: {out}}}}}
{stages}
pipelines:
{pipelines or "  pull: [hex, noise, static, file]"}
""")
    return cfg, stats, out


def lines(path):
    return open(path).read().splitlines() if os.path.exists(path) else []


def settled(stats, n):
    s = read_stats(stats)
    return s.get("pipeline.pull.items") == n and s.get("pipeline.pull.inflight") == 0 \
        and s.get("noise.pending") == 0


def asan_clean(out):
    return "AddressSanitizer" not in out and "LeakSanitizer" not in out and "runtime error" not in out


# ------------------------------------------------------------------ bench
if len(sys.argv) > 1 and sys.argv[1] == "--flood":
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    N = int(sys.argv[3]) if len(sys.argv) > 3 else 1000  # per 100 ms
    flood, _ = fresh(N)
    cs = X25519PrivateKey.generate()
    client = initiation(cs, GWPUB, 7).hex()

    def hist_q(s, prefix, q):
        """quantile q of a flat histogram in the stats file (its bucket's bound)."""
        bs = sorted(((float(k[len(prefix) + 4:]), v) for k, v in s.items()
                     if k.startswith(prefix + ".le_")), key=lambda x: x[0])
        n = s.get(prefix + ".count", 0)
        for b, c in bs:
            if n and c >= q * n:
                return b
        return float("inf")

    for threads in (0, 1, 2):
        for with_flood in (False, True):
            rounds = int(secs * 10)
            cfg, stats, _ = config(f"b{threads}{int(with_flood)}", threads, 4096,
                                   f"{{packets: [{', '.join(flood if with_flood else flood[:1])}], interval: 100ms, "
                                   f"rounds: {rounds if with_flood else 1}, src: 198.51.100.7:4000}}",
                                   stages=f"""  client:
    plugin: source-hex
    options: {{packets: [{client}], interval: 20ms, rounds: {int(secs * 50)}, src: 192.0.2.9:51000}}""",
                                   pipelines="  pull: [hex, noise, static, file]\n"
                                             "  cl: [client, noise, static, file]")
            d = Daemon(cfg)
            time.sleep(secs + 0.5)
            s = read_stats(stats)
            d.stop()
            d.close()
            tag = f"t{threads}_{'flood' if with_flood else 'calm'}"
            pre = "pipeline.cl.seen_to_decoded_seconds"
            keys = [k for k in s if "cl" in k and "decoded" in k and k.endswith(".count")]
            if keys:
                pre = keys[0][:-len(".count")]
            n = s.get(pre + ".count", 0)
            print(f"client_decode_p50_{tag} {hist_q(s, pre, 0.5) * 1e3:g} ms")
            print(f"client_decode_p99_{tag} {hist_q(s, pre, 0.99) * 1e3:g} ms")
            print(f"client_decode_mean_{tag} {(s.get(pre + '.sum', 0) / n * 1e3) if n else -1:.2f} ms")
            print(f"client_decoded_{tag} {n} of {int(secs * 50)}")
            # the client's timer fires every 20 ms when the loop is free:
            # fewer rounds means the loop was late by this much on average
            print(f"client_loop_lag_{tag} {(secs * 1e3 / n - 20) if n else -1:.1f} ms")
            print(f"flood_decodes_per_s_{tag} {s.get('noise.queued', 0) / secs:.0f} /s"
                  if threads else f"flood_decodes_per_s_{tag} {(s.get('noise.decoded', 0) - n) / secs:.0f} /s")
            print(f"flood_coalesced_{tag} {s.get('noise.coalesced', 0)} items")
            print(f"flood_overloaded_{tag} {s.get('noise.drop_overloaded', 0)} items")
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0)

# ------------------------------------------- 1. every valid one is decoded
N, G, K = 600, 200, 20
pk, keys = fresh(N)
junk = garbage(G)
known = keys[:K]
cfg, stats, out = config("many", 2, 4096, f"{{packets: [{', '.join(pk + junk)}], src: 192.0.2.44:40000}}",
                         known=known)
d = Daemon(cfg)
wait_until(lambda: settled(stats, N + G), 30)
s = read_stats(stats)
inst = lines(out)
ok(s.get("noise.decoded") == N and s.get("noise.authenticated") == N
   and s.get("noise.queued") + s.get("noise.decoded_inline") == N
   and s.get("noise.queued") >= N // 2,
   f"threads 2: all {N} valid initiations decoded and authenticated, most through the queue "
   f"({s.get('noise.decoded_inline')} while it was idle, on the loop)",
   {k: v for k, v in s.items() if k.startswith("noise.")})
ok(s.get("noise.drop_mac1") == G and s.get("noise.drop_overloaded", 0) == 0,
   f"{G} garbage packets dropped as mac1 on the loop, before the queue", s.get("noise.drop_mac1"))
ok(s.get("pipeline.pull.drop.unknown_key") == N - K and len(inst) == K
   and all(any(k in x for x in inst) for k in known),
   f"the {K} known keys installed, the {N - K} others unknown to the resolver", (inst[:3], s.get("pipeline.pull.drop.unknown_key")))
ok(d.stop() == 0 and asan_clean(d.output()), "exit 0", d.output()[-1500:])
d.close()

# ------------------- replays of an installed initiation: mac1 and a lookup
cfg, stats, out = config("again", 2, 4096, f"{{packets: [{', '.join(pk[:K])}], rounds: 2, interval: 300ms}}",
                         known=known)
d = Daemon(cfg)
wait_until(lambda: settled(stats, 2 * K), 30)
s = read_stats(stats)
ok(len(lines(out)) == K and s.get("noise.queued") + s.get("noise.decoded_inline") == K
   and s.get("noise.decoded") == K
   and s.get("noise.drop_replay") == K,
   f"the {K} installed initiations sent again: dropped as replays on the loop, none decoded again",
   {k: v for k, v in s.items() if k.startswith("noise.")})
ok(d.stop() == 0 and asan_clean(d.output()), "exit 0", d.output()[-1500:])
d.close()

# ------------------------------------------------- 2. a tiny queue overflows
N2 = 400
cfg, stats, out = config("tiny", 2, 4, f"{{packets: [{', '.join(pk[:N2])}], src: 192.0.2.45:40000}}")
d = Daemon(cfg)
wait_until(lambda: settled(stats, N2), 30)
s = read_stats(stats)
ov, dec = s.get("noise.drop_overloaded", 0), s.get("noise.decoded", 0)
ok(ov > 0 and dec > 0 and ov + dec == N2 and s.get("pipeline.pull.drop.overloaded", ov) == ov,
   f"queue 4: {ov} of {N2} dropped as overloaded and counted, {dec} decoded", s)
ok(d.stop() == 0 and asan_clean(d.output()), "exit 0", d.output()[-1500:])
d.close()

# one network may hold only half of the queue; another still gets in
cfg, stats, out = config("lanes", 2, 8, f"{{packets: [{', '.join(pk[:200])}], src: 192.0.2.46:40000}}",
                         stages="""  other:
    plugin: source-hex
    options: {packets: [%s], src: 203.0.113.5:40000, interval: 5ms, rounds: 4}""" % pk[300],
                         pipelines="  pull: [hex, noise, static, file]\n  other: [other, noise, static, file]")
d = Daemon(cfg)
wait_until(lambda: read_stats(stats).get("pipeline.other.items") == 4 and settled(stats, 200), 30)
s = read_stats(stats)
ok(s.get("noise.drop_overloaded", 0) >= 200 - 8 - 4 and s.get("pipeline.other.drop.overloaded", 0) == 0,
   "queue 8: a flood from one network fills only its half; another network's initiations are all decoded",
   {k: v for k, v in s.items() if "overload" in k or k.endswith(".items")})
ok(d.stop() == 0 and asan_clean(d.output()), "exit 0", d.output()[-1500:])
d.close()

# --------------------------------- 3. stop with items in flight, many times
big, _ = fresh(400)
cfg, stats, out = config("stop", 2, 4096, f"{{packets: [{', '.join(big)}], repeat: 5, interval: 10ms, rounds: 1000}}",
                         extra="drain_timeout: 0")
clean, shut = 0, 0
for i in range(3):
    if os.path.exists(stats):
        os.unlink(stats)
    d = Daemon(cfg)
    wait_until(lambda: read_stats(stats).get("noise.queued", 0) > 0, 10)
    time.sleep(0.05 * i)
    s0 = read_stats(stats)
    rc = d.stop()
    o = d.output()
    d.close()
    s = read_stats(stats)
    shut += s.get("noise.drop_shutdown", 0)
    if rc == 0 and asan_clean(o) and "never completed" not in o and s.get("noise.pending") == 0:
        clean += 1
    else:
        print("# run", i, rc, s0.get("noise.pending"), o[-1500:])
ok(clean == 3 and shut > 0, "stopped with initiations queued and being decoded (drain_timeout 0):"
   f" exit 0, nothing left, no leak ({clean}/3; {shut} dropped as shutdown)")

# ------------------------------------------- 4. `wggwd decode` stays inline
p = subprocess.run([WGGWD, "decode", "--private-key-file", keyf, "--hex", pk[0], "--hex", junk[0]],
                   capture_output=True, text=True, timeout=60)
ok(p.returncode == 0 and keys[0] in p.stdout and '"error":"mac1"' in p.stdout and asan_clean(p.stderr),
   "wggwd decode: decodes in line (threads 0)", p.stdout + p.stderr)
p = subprocess.run([WGGWD, "decode", "--private-key-file", keyf, "--set", "threads=2", "--hex", pk[0]],
                   capture_output=True, text=True, timeout=60)
ok(p.returncode == 0 and keys[0] in p.stdout and asan_clean(p.stderr),
   "wggwd decode --set threads=2: still in line (outside a pipeline the decoder keeps no threads)",
   p.stdout + p.stderr)

# ------------- 5. a long fresh-key flood: the daemon's memory stays bounded
# (issue 14) 1,600 fresh keys every 50 ms (32,000/s, more than two threads
# decode: the queue stays full, its overflow counted): what the daemon holds
# for it (queued items, the ctl why table, ...) is reached within seconds;
# after that its RSS must not keep growing (a leak of 20 bytes a decoded
# initiation, at the 3,000/s of a loaded machine, or of 2 bytes a packet
# would add more than the 512 KiB allowed in 10 s; measured: 20-170 KiB).
# Skipped under ASan (its quarantine keeps freed memory).
def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))


def under_asan(pid):
    with open(f"/proc/{pid}/maps") as f:
        return any("libasan" in x for x in f)


LONG, _ = fresh(1000)
LONG = pk + LONG[:600] + big
cfg, stats, out = config("long", 2, 1024, f"{{packets: [{', '.join(LONG)}], interval: 50ms, "
                         f"rounds: 100000, src: 198.51.100.9:4000}}")
d = Daemon(cfg)
wait_until(lambda: read_stats(stats).get("pipeline.pull.items", 0) > 0, 10)
if under_asan(d.proc.pid):
    skip("a long fresh-key flood: RSS bounded", "under ASan")
else:
    time.sleep(4)
    s1, r1 = read_stats(stats), rss_kib(d.proc.pid)
    time.sleep(10)
    s2, r2 = read_stats(stats), rss_kib(d.proc.pid)
    dec = s2.get("noise.decoded", 0) - s1.get("noise.decoded", 0)
    ov = s2.get("noise.drop_overloaded", 0) - s1.get("noise.drop_overloaded", 0)
    ok(dec > 10 * len(LONG) and ov > 0 and r2 - r1 <= 512,
       f"a 14 s flood of {len(LONG)} fresh keys every 50 ms: RSS {r1} KiB after 4 s, "
       f"{r2} KiB 10 s later (at most 512 KiB more; {dec} decoded, {ov} overloaded meanwhile)",
       (r1, r2, dec, ov))
ok(d.stop() == 0 and asan_clean(d.output()), "exit 0", d.output()[-1500:])
d.close()

shutil.rmtree(tmp, ignore_errors=True)
done()
