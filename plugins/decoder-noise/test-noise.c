// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include "noise.h"
#include "replay.h"

#include <blake2.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned int n_checks, n_failed;

__attribute__((format(printf, 2, 3)))
static bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	n_checks++;
	if (!ok)
		n_failed++;
	printf("%s - ", ok ? "ok" : "not ok");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	return ok;
}

/* Decodes hex into a fresh buffer of exactly the right size (ASan sees overreads). */
static uint8_t *hex_dup(const char *hex, size_t *len)
{
	size_t n = hex ? strlen(hex) / 2 : 0;
	uint8_t *b = malloc(n ? n : 1);

	if (!b)
		abort();
	if (n && sodium_hex2bin(b, n, hex, 2 * n, NULL, len, NULL) != 0) {
		free(b);
		return NULL;
	}
	if (!n)
		*len = 0;
	return b;
}

static bool hex_to(uint8_t *out, size_t len, const char *hex)
{
	size_t got = 0;

	if (!hex || strlen(hex) != 2 * len)
		return false;
	return sodium_hex2bin(out, len, hex, 2 * len, NULL, &got, NULL) == 0 &&
	       got == len;
}

static bool hex_eq(const uint8_t *buf, size_t len, const char *hex)
{
	uint8_t tmp[64];

	return len <= sizeof(tmp) && hex_to(tmp, len, hex) &&
	       !memcmp(tmp, buf, len);
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool str_is(const char *s, const char *want)
{
	return s && !strcmp(s, want);
}

/* ---- (1) BLAKE2s and HMAC-BLAKE2s ---------------------------------------- */

static void test_blake2s(void)
{
	static const char abc_hex[] =
		"508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982";
	uint8_t in[300], key[32], a[32], b[32];
	bool same = true;

	/* RFC 7693 Appendix B */
	blake2s(a, "abc", NULL, 32, 3, 0);
	check(hex_eq(a, 32, abc_hex), "libb2 BLAKE2s-256(\"abc\") = RFC 7693 App. B");
	noise_blake2s(a, 32, (const uint8_t *)"abc", 3, NULL, 0);
	check(hex_eq(a, 32, abc_hex), "noise BLAKE2s-256(\"abc\") = RFC 7693 App. B");

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 1);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(0xa0 + i);

	for (size_t len = 0; len <= sizeof(in); len++) {
		blake2s(a, in, NULL, 32, len, 0);
		noise_blake2s(b, 32, in, len, NULL, 0);
		same &= !memcmp(a, b, 32);
	}
	check(same, "noise BLAKE2s-256 = libb2 for lengths 0..300");

	same = true;
	for (size_t len = 0; len <= sizeof(in); len++) {
		for (size_t kl = 1; kl <= 32; kl += 31) {
			blake2s(a, in, key, 16, len, kl);
			noise_blake2s(b, 16, in, len, key, kl);
			same &= !memcmp(a, b, 16);
		}
	}
	check(same, "noise keyed BLAKE2s-128 = libb2 for lengths 0..300, keys 1/32");

	same = true;
	for (size_t ol = 1; ol <= 32; ol++) {
		blake2s(a, in, key, ol, 116, 32);
		noise_blake2s(b, ol, in, 116, key, 32);
		same &= !memcmp(a, b, ol);
	}
	check(same, "noise keyed BLAKE2s = libb2 for digest lengths 1..32");
}

struct hmac_case {
	const char *name;
	const uint8_t *key;
	size_t keylen;
	const uint8_t *msg;
	size_t msglen;
	const char *expect;
};

static void test_hmac(void)
{
	/*
	 * Expected values from Python 3.11:
	 *   hmac.new(key, msg, hashlib.blake2s).hexdigest()
	 * with the keys and messages below (RFC 2104/4231-style sizes).
	 */
	static const char fox[] = "The quick brown fox jumps over the lazy dog";
	static const char jefe_msg[] = "what do ya want for nothing?";
	static const char big_msg[] =
		"Test Using Larger Than Block-Size Key - Hash Key First";
	uint8_t k20[20], k32[32], k64[64], k65[65], k131[131], dd[100], m64[64];
	uint8_t out[32];

	memset(k20, 0x0b, sizeof(k20));
	memset(k131, 0xaa, sizeof(k131));
	memset(dd, 0xdd, sizeof(dd));
	for (size_t i = 0; i < sizeof(k65); i++)
		k65[i] = (uint8_t)i;
	memcpy(k32, k65, sizeof(k32));
	memcpy(k64, k65, sizeof(k64));
	memcpy(m64, k65, sizeof(m64));

	const struct hmac_case cases[] = {
		{ "short key, 43-byte msg", (const uint8_t *)"key", 3,
		  (const uint8_t *)fox, strlen(fox),
		  "f93215bb90d4af4c3061cd932fb169fb8bb8a91d0b4022baea1271e1323cd9a0" },
		{ "20 x 0x0b key, \"Hi There\" (RFC 4231 #1 sizes)", k20, 20,
		  (const uint8_t *)"Hi There", 8,
		  "65a8b7c5cc9136d424e82c37e2707e74e913c0655b99c75f40edf387453a3260" },
		{ "\"Jefe\" (RFC 4231 #2 sizes)", (const uint8_t *)"Jefe", 4,
		  (const uint8_t *)jefe_msg, strlen(jefe_msg),
		  "90b6281e2f3038c9056af0b4a7e763cae6fe5d9eb4386a0ec95237890c104ff0" },
		{ "32-byte key, 1-byte msg (KDF shape)", k32, 32,
		  (const uint8_t *)"\x01", 1,
		  "0eb5b63e94eb0ee56be66329386c25cca6d38e699ce487595a1bfa66e6968f35" },
		{ "key exactly 64 bytes, 100 x 0xdd", k64, 64, dd, sizeof(dd),
		  "b63d852adf41b7e71101284367383431826d1a2a18a355daece673a536a97510" },
		{ "65-byte key (hashed first)", k65, 65,
		  (const uint8_t *)"abc", 3,
		  "44d87b3939dec16bc76cbd83e3982ac0a4eafab8a5b87c8c2adbd0da7d5c9695" },
		{ "131 x 0xaa key (RFC 4231 #6 sizes)", k131, 131,
		  (const uint8_t *)big_msg, strlen(big_msg),
		  "d23d79394f53d536a096e6514447eeaabb05ded01be32c1937da6a8f7103bc4e" },
		{ "32-byte key, empty msg", k32, 32, NULL, 0,
		  "e2641d24dfa8dd89e8cb77f1cdc77d8c006e5bebdfc4d6a3a3a6f8d5b7586fb0" },
		{ "empty key, 64-byte msg", NULL, 0, m64, 64,
		  "85b55a3c7af063f3d2744b2d568d2f808f33794f9791c08f0f37fbdb681d29b1" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct hmac_case *c = &cases[i];
		int rc = noise_hmac_blake2s(out, c->key, c->keylen, c->msg,
					    c->msglen);

		check(rc == 0 && hex_eq(out, 32, c->expect),
		      "HMAC-BLAKE2s: %s", c->name);
	}
}

static void test_kdf(void)
{
	/*
	 * Python: t = hmac(ck, in); T1 = hmac(t, b'\1'); T2 = hmac(t, T1 + b'\2');
	 * T3 = hmac(t, T2 + b'\3'), hmac = hmac.new(k, m, hashlib.blake2s),
	 * ck = bytes(range(32)), in = bytes(range(32, 64)).
	 */
	uint8_t ck[32], in[32], t1[32], t2[32], t3[32], u1[32];

	for (int i = 0; i < 32; i++) {
		ck[i] = (uint8_t)i;
		in[i] = (uint8_t)(32 + i);
	}
	noise_kdf(t1, t2, t3, ck, in, sizeof(in));
	check(hex_eq(t1, 32, "6a96444e20e8d4c1cee974416acae1c10b3c92886010e54ed94dafb2c3b80ea0") &&
	      hex_eq(t2, 32, "57af120b0de7acbe7907ec149c5ae870a2dbb74232b65777ba4123f1f7f888f5") &&
	      hex_eq(t3, 32, "0926c7caabb6e8d73beda759e6f4f0d324ce5b5000bcf8cd784b26db3049faa9"),
	      "KDF3 (HKDF-BLAKE2s) T1..T3");
	noise_kdf(u1, NULL, NULL, ck, in, sizeof(in));
	check(!memcmp(u1, t1, 32), "KDF1 = first output of KDF3");
	check(noise_kdf(u1, NULL, t3, ck, in, sizeof(in)) < 0,
	      "KDF refuses t3 without t2");
}

/* ---- (2) constants, TAI64N, strings --------------------------------------- */

static void test_constants(const json_t *root)
{
	static const char construction[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
	static const char identifier[] = "WireGuard v1 zx2c4 Jason@zx2c4.com";
	static const char ck0_hex[] =
		"60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36";
	static const char h0_hex[] =
		"2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3";
	const json_t *consts = json_object_get(root, "constants");
	uint8_t ck[32], h[32], c[32];

	noise_hash(ck, (const uint8_t *)construction, strlen(construction), NULL, 0);
	check(hex_eq(ck, 32, ck0_hex), "Ck0 = HASH(CONSTRUCTION) (PROTOCOL.md)");
	noise_hash(h, ck, 32, (const uint8_t *)identifier, strlen(identifier));
	check(hex_eq(h, 32, h0_hex), "H0 = HASH(Ck0 || IDENTIFIER) (PROTOCOL.md)");

	noise_initial_chaining_key(c);
	check(!memcmp(c, ck, 32), "built-in Ck0 constant");
	noise_initial_hash(c);
	check(!memcmp(c, h, 32), "built-in H0 constant");
	check(hex_eq(ck, 32, jstr(consts, "initial_chaining_key")) &&
	      hex_eq(h, 32, jstr(consts, "initial_hash")),
	      "Ck0/H0 match the vectors file");
}

static void test_tai64n(void)
{
	uint8_t tai[12];
	int64_t sec = 0;
	uint32_t nsec = 0;

	hex_to(tai, 12, "400000006b05b6ea14000000");
	check(noise_tai64n_to_unix(tai, &sec, &nsec) == 0 &&
	      sec == 1795536608 && nsec == 335544320,
	      "TAI64N 400000006b05b6ea14000000 = 1795536608.335544320");
	hex_to(tai, 12, "400000000000000a00000000");
	check(noise_tai64n_to_unix(tai, &sec, &nsec) == 0 && sec == 0 &&
	      nsec == 0, "TAI64N epoch label = unix 0");
	hex_to(tai, 12, "4000000000000000" "00000000");
	check(noise_tai64n_to_unix(tai, &sec, NULL) == 0 && sec == -10,
	      "TAI64N before the unix epoch is negative");
	hex_to(tai, 12, "400000006b05b6ea3b9aca00");
	check(noise_tai64n_to_unix(tai, &sec, &nsec) < 0, "TAI64N nsec >= 1e9 refused");
	hex_to(tai, 12, "800000000000000000000000");
	check(noise_tai64n_to_unix(tai, &sec, &nsec) < 0, "TAI64N label >= 2^63 refused");
}

static void tai_make(uint8_t tai[12], uint64_t label, uint32_t nsec)
{
	for (int i = 0; i < 8; i++)
		tai[i] = (uint8_t)(label >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		tai[8 + i] = (uint8_t)(nsec >> (24 - 8 * i));
}

/* issue 12: sec * 1000 overflowed, and a timestamp from the far future
 * could wrap into the max_skew window. */
static void test_skew(void)
{
	const uint64_t now_ns = 1796178594123456789ull, now_s = now_ns / 1000000000u;
	const uint64_t now_ms = now_ns / 1000000u, base = 0x400000000000000aull;
	const int64_t max = 5000;
	uint64_t wrap;
	uint8_t tai[12];

	tai_make(tai, base + now_s, 123000000);
	check(noise_tai64n_within(tai, now_ns, max), "skew: now is within 5 s");
	tai_make(tai, base + now_s + 4, 0);
	check(noise_tai64n_within(tai, now_ns, max), "skew: now + 3.9 s is within 5 s");
	tai_make(tai, base + now_s + 5, 200000000);
	check(!noise_tai64n_within(tai, now_ns, max), "skew: now + 5.08 s is not");
	tai_make(tai, base + now_s - 5, 100000000);
	check(!noise_tai64n_within(tai, now_ns, max), "skew: now - 5.02 s is not");
	tai_make(tai, base + now_s - 4, 900000000);
	check(noise_tai64n_within(tai, now_ns, max), "skew: now - 4.2 s is within 5 s");
	tai_make(tai, base + now_s, 0);
	check(noise_tai64n_within(tai, now_ns, 0) == false &&
	      noise_tai64n_within(tai, now_s * 1000000000u, 0),
	      "skew: 0 takes exactly now only");
	/* sec * 1000 == 2^64 + now_ms (+ < 1 s): wrapped into the window */
	wrap = (uint64_t)((((unsigned __int128)1 << 64) + now_ms + 999) / 1000);
	tai_make(tai, base + wrap, 0);
	check(!noise_tai64n_within(tai, now_ns, max),
	      "skew: %llu s after 1970 (sec * 1000 wraps to now) is far off",
	      (unsigned long long)wrap);
	tai_make(tai, 0x7fffffffffffffffull, 0);
	check(!noise_tai64n_within(tai, now_ns, max),
	      "skew: TAI64N label 0x7fffffffffffffff (2^62 - 11 s after 1970) is far off");
	tai_make(tai, base + (1ull << 61), 0);
	check(!noise_tai64n_within(tai, now_ns, max), "skew: 2^61 s after 1970 is far off");
	tai_make(tai, 1ull << 62, 0);
	check(!noise_tai64n_within(tai, now_ns, max), "skew: label 2^62 (1970) is far off");
	tai_make(tai, 0, 0);
	check(!noise_tai64n_within(tai, now_ns, max), "skew: label 0 (2^62 s before 1970) is far off");
	tai_make(tai, 0x7fffffffffffffffull, 0);
	check(!noise_tai64n_within(tai, now_ns, INT64_MAX) &&
	      !noise_tai64n_within(tai, UINT64_MAX, INT64_MAX),
	      "skew: the largest label against the largest window, no overflow");
	tai_make(tai, 0, 0);
	check(!noise_tai64n_within(tai, 0, INT64_MAX), "skew: the smallest label, no overflow");
	tai_make(tai, 0x8000000000000000ull, 0);
	check(!noise_tai64n_within(tai, now_ns, INT64_MAX), "skew: a label >= 2^63 is refused");
}

static uint64_t hash_keyed(const void *data, size_t len)
{
	static uint8_t k[crypto_shorthash_KEYBYTES];
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, data, len, k);
	memcpy(&v, h, sizeof(v));
	return v;
}

/* every key in one bucket: the chains must still work */
static uint64_t hash_flat(const void *data, size_t len)
{
	(void)data;
	(void)len;
	return 7;
}

static void test_replay_with(noise_hash_fn hash, const char *name)
{
	struct noise_replay *t = noise_replay_new(3, hash);
	struct noise_replay_stats st;
	uint8_t k[5][32], t1[12], t2[12], t3[12];
	int i;

	if (!check(t != NULL, "replay (%s): a table of 3", name))
		return;
	for (i = 0; i < 5; i++)
		memset(k[i], 'a' + i, 32);
	tai_make(t1, 0x400000006b05b439ull, 0x21000000);
	tai_make(t2, 0x400000006b05b439ull, 0x22000000);
	tai_make(t3, 0x400000006b05b43aull, 0);
	check(!noise_replay_seen(t, k[0], t1), "replay (%s): an unknown key is not a replay", name);
	noise_replay_record(t, k[0], t2);
	check(noise_replay_seen(t, k[0], t2) && noise_replay_seen(t, k[0], t1) &&
	      !noise_replay_seen(t, k[0], t3),
	      "replay (%s): the same timestamp and an older one are, a newer one is not", name);
	noise_replay_record(t, k[0], t1);
	check(noise_replay_seen(t, k[0], t2) && !noise_replay_seen(t, k[0], t3),
	      "replay (%s): recording an older one keeps the newest", name);
	check(!noise_replay_seen(t, k[1], t1), "replay (%s): per key", name);
	noise_replay_record(t, k[1], t1);
	noise_replay_record(t, k[2], t1);
	noise_replay_record(t, k[0], t3); /* k[0] most recent: k[1] is the oldest */
	noise_replay_record(t, k[3], t1);
	noise_replay_stats(t, &st);
	check(st.size == 3 && st.capacity == 3 && st.evictions == 1 &&
	      !noise_replay_seen(t, k[1], t1) && noise_replay_seen(t, k[0], t3) &&
	      noise_replay_seen(t, k[2], t1) && noise_replay_seen(t, k[3], t1),
	      "replay (%s): full, the least recently recorded key is forgotten", name);
	noise_replay_record(t, k[4], t2);
	noise_replay_record(t, k[1], t3);
	check(noise_replay_seen(t, k[4], t2) && noise_replay_seen(t, k[1], t3) &&
	      noise_replay_seen(t, k[3], t1) && !noise_replay_seen(t, k[2], t1) &&
	      !noise_replay_seen(t, k[0], t3),
	      "replay (%s): eviction keeps the chains whole", name);
	noise_replay_free(t);
}

/* The newest initiation's ephemeral: a copy is known before any X25519. */
static void test_replay_eph(noise_hash_fn hash, const char *name)
{
	struct noise_replay *t = noise_replay_new(2, hash);
	uint8_t k[3][32], e[4][32], t1[12], t2[12];
	int i;

	if (!check(t != NULL, "replay ephemerals (%s): a table of 2", name))
		return;
	for (i = 0; i < 3; i++)
		memset(k[i], 'a' + i, 32);
	for (i = 0; i < 4; i++)
		memset(e[i], 'p' + i, 32);
	tai_make(t1, 0x400000006b05b439ull, 0x21000000);
	tai_make(t2, 0x400000006b05b439ull, 0x22000000);
	noise_replay_record_initiation(t, k[0], t1, e[0]);
	check(noise_replay_seen_ephemeral(t, e[0]) && !noise_replay_seen_ephemeral(t, e[1]),
	      "replay ephemerals (%s): the recorded initiation's, only", name);
	noise_replay_record_initiation(t, k[0], t2, e[1]);
	noise_replay_record_initiation(t, k[0], t1, e[2]); /* older: ignored */
	check(!noise_replay_seen_ephemeral(t, e[0]) && noise_replay_seen_ephemeral(t, e[1]) &&
	      !noise_replay_seen_ephemeral(t, e[2]),
	      "replay ephemerals (%s): the newest initiation's only", name);
	noise_replay_record(t, k[1], t1);
	noise_replay_record_initiation(t, k[2], t1, e[3]); /* evicts k[0] */
	check(!noise_replay_seen_ephemeral(t, e[1]) && noise_replay_seen_ephemeral(t, e[3]) &&
	      !noise_replay_seen(t, k[0], t1),
	      "replay ephemerals (%s): forgotten with their key", name);
	noise_replay_free(t);
}

static void test_replay(void)
{
	struct noise_replay *t;
	uint8_t k[32] = { 1 }, tai[12] = { 0x40 };

	test_replay_with(hash_keyed, "keyed hash");
	test_replay_with(hash_flat, "one bucket");
	test_replay_eph(hash_keyed, "keyed hash");
	test_replay_eph(hash_flat, "one bucket");
	t = noise_replay_new(0, hash_keyed);
	noise_replay_record(t, k, tai);
	check(t && !noise_replay_seen(t, k, tai), "replay: capacity 0 remembers nothing");
	noise_replay_free(t);
	check(!noise_replay_new((1u << 24) + 1, hash_keyed) && !noise_replay_new(1, NULL),
	      "replay: capacity > 2^24 or no hash refused");
}

static void test_strings(void)
{
	check(!strcmp(noise_result_str(NOISE_OK), "ok") &&
	      !strcmp(noise_result_str(NOISE_ERR_LENGTH), "length") &&
	      !strcmp(noise_result_str(NOISE_ERR_TYPE), "type") &&
	      !strcmp(noise_result_str(NOISE_ERR_MAC1), "mac1") &&
	      !strcmp(noise_result_str(NOISE_ERR_STATIC), "static") &&
	      !strcmp(noise_result_str(NOISE_ERR_TIMESTAMP), "timestamp") &&
	      !strcmp(noise_result_str((enum noise_result)42), "unknown"),
	      "result strings");
}

/* ---- (3) vectors ------------------------------------------------------------ */

static bool same_initiation(const struct noise_initiation *a,
			    const struct noise_initiation *b)
{
	return !memcmp(a->public_key, b->public_key, sizeof(a->public_key)) &&
	       !memcmp(a->tai64n, b->tai64n, sizeof(a->tai64n)) &&
	       a->sender_index == b->sender_index &&
	       !memcmp(a->ephemeral, b->ephemeral, sizeof(a->ephemeral)) &&
	       a->mac1_ok == b->mac1_ok && a->authenticated == b->authenticated;
}

/* Recomputes the responder steps with the exported primitives. */
static void check_intermediates(const char *id, const json_t *im,
				const struct noise_responder *r,
				const uint8_t *pkt, const uint8_t spub[32])
{
	uint8_t ck0[32], ck[32], h[32], k[32], dh[32];
	const uint8_t *ei = pkt + 8;
	const char *bad = NULL;

	noise_initial_chaining_key(ck0);
	if (!hex_eq(r->hash3, 32, jstr(im, "h1_after_responder_static")))
		bad = "h1";
	noise_kdf(ck, NULL, NULL, ck0, ei, 32);
	if (!bad && !hex_eq(ck, 32, jstr(im, "ck1_after_e")))
		bad = "ck1";
	noise_hash(h, r->hash3, 32, ei, 32);
	if (!bad && !hex_eq(h, 32, jstr(im, "h2_after_e")))
		bad = "h2";
	if (!bad && (crypto_scalarmult(dh, r->private_key, ei) != 0 ||
		     !hex_eq(dh, 32, jstr(im, "dh_es"))))
		bad = "dh_es";
	noise_kdf(ck, k, NULL, ck, dh, 32);
	if (!bad && !hex_eq(ck, 32, jstr(im, "ck2_after_es")))
		bad = "ck2";
	if (!bad && !hex_eq(k, 32, jstr(im, "k_static")))
		bad = "k_static";
	noise_hash(h, h, 32, pkt + 40, 48);
	if (!bad && !hex_eq(h, 32, jstr(im, "h3_after_static")))
		bad = "h3";
	if (!bad && (crypto_scalarmult(dh, r->private_key, spub) != 0 ||
		     !hex_eq(dh, 32, jstr(im, "dh_ss"))))
		bad = "dh_ss";
	noise_kdf(ck, k, NULL, ck, dh, 32);
	if (!bad && !hex_eq(ck, 32, jstr(im, "ck3_after_ss")))
		bad = "ck3";
	if (!bad && !hex_eq(k, 32, jstr(im, "k_timestamp")))
		bad = "k_timestamp";
	noise_hash(h, h, 32, pkt + 88, 28);
	if (!bad && !hex_eq(h, 32, jstr(im, "h4_after_timestamp")))
		bad = "h4";
	check(!bad, "%s: intermediate values (first mismatch: %s)", id,
	      bad ? bad : "none");
}

static void check_ok_fields(const char *id, const json_t *v,
			    const json_t *exp, const struct noise_initiation *o)
{
	json_int_t want_idx = json_integer_value(json_object_get(exp, "sender_index"));
	json_int_t want_sec = json_integer_value(json_object_get(exp, "timestamp_unix_sec"));
	json_int_t want_ns = json_integer_value(json_object_get(exp, "timestamp_nsec"));
	int64_t sec = 0;
	uint32_t nsec = 0;
	bool ts_ok;

	check(hex_eq(o->public_key, 32, jstr(exp, "initiator_public_key")) &&
	      hex_eq(o->public_key, 32, jstr(v, "initiator_public_key")),
	      "%s: initiator public key", id);
	check(o->sender_index == (uint32_t)want_idx, "%s: sender_index %u",
	      id, o->sender_index);
	check(hex_eq(o->tai64n, 12, jstr(exp, "timestamp_tai64n")),
	      "%s: timestamp_tai64n", id);
	ts_ok = noise_tai64n_to_unix(o->tai64n, &sec, &nsec) == 0;
	check(ts_ok && sec == want_sec && nsec == (uint32_t)want_ns,
	      "%s: timestamp %lld.%09u", id, (long long)sec, nsec);
	check(hex_eq(o->ephemeral, 32, jstr(exp, "unencrypted_ephemeral")),
	      "%s: ephemeral", id);
	check(o->mac1_ok && o->authenticated, "%s: mac1_ok and authenticated", id);
}

static void test_vector(const json_t *v, struct noise_ss_cache *shared2)
{
	const char *id = jstr(v, "id");
	const json_t *exp = json_object_get(v, "expected");
	const char *want = jstr(exp, "result");
	struct noise_initiation o, o2;
	struct noise_responder r;
	enum noise_result res;
	uint8_t priv[32], *pkt;
	size_t len = 0;

	if (!check(id && want && hex_to(priv, 32, jstr(v, "responder_private_key")),
		   "%s: vector is well formed", id ? id : "?"))
		return;
	pkt = hex_dup(jstr(v, "packet"), &len);
	if (!check(pkt && noise_responder_init(&r, priv) == 0,
		   "%s: responder init", id))
		goto out;
	check(hex_eq(r.public_key, 32, jstr(v, "responder_public_key")),
	      "%s: responder public key", id);
	if (jstr(exp, "mac1_key"))
		check(hex_eq(r.mac1_key, 32, jstr(exp, "mac1_key")),
		      "%s: mac1_key", id);

	res = noise_decode(&r, NULL, pkt, len, true, &o);
	check(!strcmp(noise_result_str(res), want), "%s: result %s (expected %s)",
	      id, noise_result_str(res), want);

	if (res == NOISE_OK) {
		check_ok_fields(id, v, exp, &o);
		if (json_object_get(exp, "intermediate"))
			check_intermediates(id, json_object_get(exp, "intermediate"),
					    &r, pkt, o.public_key);
	}

	/* Without authentication a bad timestamp is not looked at. */
	res = noise_decode(&r, NULL, pkt, len, false, &o2);
	if (!strcmp(want, "ok") || !strcmp(want, "timestamp"))
		check(res == NOISE_OK && !o2.authenticated && o2.mac1_ok &&
		      hex_eq(o2.public_key, 32, jstr(v, "initiator_public_key")),
		      "%s: authenticate=false gives ok, unauthenticated", id);
	else
		check(!strcmp(noise_result_str(res), want),
		      "%s: authenticate=false gives %s", id, noise_result_str(res));

	if (res == NOISE_OK && !strcmp(want, "ok")) {
		struct noise_ss_cache *c0 = noise_ss_cache_new(0);
		struct noise_initiation a, b, cc, d;
		bool same;

		noise_decode(&r, shared2, pkt, len, true, &a);
		noise_decode(&r, shared2, pkt, len, true, &b);
		noise_decode(&r, c0, pkt, len, true, &cc);
		noise_decode(&r, c0, pkt, len, true, &d);
		same = same_initiation(&a, &o) && same_initiation(&b, &o) &&
		       same_initiation(&cc, &o) && same_initiation(&d, &o);
		check(same, "%s: identical through caches of capacity 2 and 0", id);
		noise_ss_cache_free(c0);
	}
	noise_responder_wipe(&r);
out:
	free(pkt);
}

static void test_vectors(const json_t *root)
{
	const json_t *vectors = json_object_get(root, "vectors");
	struct noise_ss_cache *c2 = noise_ss_cache_new(2);
	struct noise_ss_cache_stats st;
	size_t i, n_ok = 0;
	const json_t *v;

	check(json_array_size(vectors) > 0, "vectors present (%zu)",
	      json_array_size(vectors));
	json_array_foreach(vectors, i, v) {
		test_vector(v, c2);
		if (str_is(jstr(json_object_get(v, "expected"), "result"), "ok"))
			n_ok++;
	}
	/* Every responder key is distinct here: each valid vector misses once
	 * (rebinding empties the cache) and hits on its second decode. */
	noise_ss_cache_stats(c2, &st);
	check(st.hits == n_ok && st.misses == n_ok,
	      "shared capacity-2 cache: %llu hits, %llu misses for %zu valid",
	      (unsigned long long)st.hits, (unsigned long long)st.misses, n_ok);
	noise_ss_cache_free(c2);
}

/* ---- (4) cache eviction with initiations built here -------------------------- */

struct peer {
	uint8_t priv[32];
	uint8_t pub[32];
};

/* The initiator's side of PROTOCOL.md (b); mac1 through libb2. */
static void build_initiation(uint8_t pkt[NOISE_INIT_LEN],
			     const uint8_t rpub[32], const struct peer *p,
			     uint32_t sender, const uint8_t tai[12],
			     uint8_t seed)
{
	static const uint8_t nonce[12];
	uint8_t ck[32], h[32], k[32], dh[32], epriv[32], mkey[32];

	memset(epriv, seed, sizeof(epriv));
	memset(pkt, 0, NOISE_INIT_LEN);
	pkt[0] = 1;
	for (int i = 0; i < 4; i++)
		pkt[4 + i] = (uint8_t)(sender >> (8 * i));
	crypto_scalarmult_base(pkt + 8, epriv);

	noise_initial_chaining_key(ck);
	noise_initial_hash(h);
	noise_hash(h, h, 32, rpub, 32);
	noise_kdf(ck, NULL, NULL, ck, pkt + 8, 32);
	noise_hash(h, h, 32, pkt + 8, 32);
	if (crypto_scalarmult(dh, epriv, rpub) != 0)
		abort();
	noise_kdf(ck, k, NULL, ck, dh, 32);
	crypto_aead_chacha20poly1305_ietf_encrypt(pkt + 40, NULL, p->pub, 32,
						  h, 32, NULL, nonce, k);
	noise_hash(h, h, 32, pkt + 40, 48);
	if (crypto_scalarmult(dh, p->priv, rpub) != 0)
		abort();
	noise_kdf(ck, k, NULL, ck, dh, 32);
	crypto_aead_chacha20poly1305_ietf_encrypt(pkt + 88, NULL, tai, 12,
						  h, 32, NULL, nonce, k);
	noise_hash(mkey, (const uint8_t *)"mac1----", 8, rpub, 32);
	blake2s(pkt + 116, pkt, mkey, 16, 116, 32);
}

static bool decode_as(const struct noise_responder *r, struct noise_ss_cache *c,
		      const uint8_t *pkt, const struct peer *p,
		      const uint8_t tai[12])
{
	struct noise_initiation o;

	return noise_decode(r, c, pkt, NOISE_INIT_LEN, true, &o) == NOISE_OK &&
	       o.authenticated && !memcmp(o.public_key, p->pub, 32) &&
	       !memcmp(o.tai64n, tai, 12);
}

static void test_cache(const json_t *root)
{
	const json_t *vectors = json_object_get(root, "vectors");
	struct peer peers[3];
	uint8_t pkts[3][NOISE_INIT_LEN], tai[12], rpriv[32];
	struct noise_responder r;
	struct noise_ss_cache *c;
	struct noise_ss_cache_stats st;
	size_t i, n = 0;
	const json_t *v;
	bool ok;

	/* Initiator keys of three valid vectors, all aimed at one responder. */
	json_array_foreach(vectors, i, v) {
		if (n == 3 || !str_is(jstr(v, "kind"), "valid"))
			continue;
		if (!n)
			hex_to(rpriv, 32, jstr(v, "responder_private_key"));
		hex_to(peers[n].priv, 32, jstr(v, "initiator_private_key"));
		hex_to(peers[n].pub, 32, jstr(v, "initiator_public_key"));
		n++;
	}
	if (!check(n == 3 && noise_responder_init(&r, rpriv) == 0,
		   "cache: three initiator keys and a responder"))
		return;
	hex_to(tai, 12, "400000006b05b6ea14000000");
	for (i = 0; i < 3; i++)
		build_initiation(pkts[i], r.public_key, &peers[i],
				 0x1000 + (uint32_t)i, tai, (uint8_t)(0x40 + i));

	/* capacity 1, A B A B C A: every decode misses and evicts */
	c = noise_ss_cache_new(1);
	ok = true;
	for (const char *s = "ABABCA"; *s; s++)
		ok &= decode_as(&r, c, pkts[*s - 'A'], &peers[*s - 'A'], tai);
	noise_ss_cache_stats(c, &st);
	check(ok, "capacity-1 cache, alternating keys: all decode correctly");
	check(st.hits == 0 && st.misses == 6 && st.evictions == 5 && st.size == 1,
	      "capacity-1 cache: 0 hits, 6 misses, 5 evictions (got %llu/%llu/%llu)",
	      (unsigned long long)st.hits, (unsigned long long)st.misses,
	      (unsigned long long)st.evictions);
	noise_ss_cache_free(c);

	/* capacity 2, A B A B C B A: C evicts A (LRU), A then evicts C */
	c = noise_ss_cache_new(2);
	ok = true;
	for (const char *s = "ABABCBA"; *s; s++)
		ok &= decode_as(&r, c, pkts[*s - 'A'], &peers[*s - 'A'], tai);
	noise_ss_cache_stats(c, &st);
	check(ok, "capacity-2 cache, three keys: all decode correctly");
	check(st.hits == 3 && st.misses == 4 && st.evictions == 2 && st.size == 2,
	      "capacity-2 cache LRU order: 3 hits, 4 misses, 2 evictions (got %llu/%llu/%llu)",
	      (unsigned long long)st.hits, (unsigned long long)st.misses,
	      (unsigned long long)st.evictions);
	noise_ss_cache_free(c);

	check(noise_ss_cache_new((size_t)1 << 30) == NULL,
	      "oversized cache capacity refused");
	noise_ss_cache_free(NULL);
	noise_responder_wipe(&r);
}

/* ---- edges -------------------------------------------------------------------- */

static void test_edges(void)
{
	uint8_t priv[32], pkt[NOISE_INIT_LEN];
	struct noise_responder r;
	struct noise_initiation o;
	bool all_mac1 = true;

	memset(priv, 0x42, sizeof(priv));
	noise_responder_init(&r, priv);
	check(noise_decode(&r, NULL, NULL, 0, true, &o) == NOISE_ERR_LENGTH,
	      "NULL packet, length 0");
	check(noise_decode(&r, NULL, pkt, SIZE_MAX, true, &o) == NOISE_ERR_LENGTH,
	      "huge length refused before reading");
	for (int i = 0; i < 1000; i++) {
		randombytes_buf(pkt, sizeof(pkt));
		memcpy(pkt, "\x01\x00\x00\x00", 4);
		all_mac1 &= noise_decode(&r, NULL, pkt, sizeof(pkt), true, &o) ==
			    NOISE_ERR_MAC1 && !o.mac1_ok;
	}
	check(all_mac1, "1000 random initiations fail at mac1");
	noise_responder_wipe(&r);
}

int main(int argc, char **argv)
{
	json_error_t err;
	json_t *root;

	if (argc != 2) {
		fprintf(stderr, "usage: %s vectors.json\n", argv[0]);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "sodium_init failed\n");
		return 2;
	}
	root = json_load_file(argv[1], 0, &err);
	if (!root) {
		fprintf(stderr, "%s:%d:%d: %s\n", argv[1], err.line, err.column,
			err.text);
		return 2;
	}

	test_blake2s();
	test_hmac();
	test_kdf();
	test_constants(root);
	test_tai64n();
	test_skew();
	test_replay();
	test_strings();
	test_vectors(root);
	test_cache(root);
	test_edges();

	json_decref(root);
	printf("1..%u\n", n_checks);
	if (n_failed)
		fprintf(stderr, "%u of %u checks failed\n", n_failed, n_checks);
	return n_failed ? 1 : 0;
}
