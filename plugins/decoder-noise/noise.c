// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include "noise.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define B2S_BLOCK	64
#define MAC_LEN		16
#define AEAD_TAG	crypto_aead_chacha20poly1305_ietf_ABYTES

/* Offsets inside a 148-byte initiation, PROTOCOL.md (a). */
#define OFF_SENDER	4
#define OFF_EPHEMERAL	8
#define OFF_STATIC	40
#define LEN_STATIC	(NOISE_KEY_LEN + AEAD_TAG)
#define OFF_TIMESTAMP	88
#define LEN_TIMESTAMP	(NOISE_TAI64N_LEN + AEAD_TAG)
#define OFF_MAC1	116

#define MSG_INITIATION	1u

/* HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"), checked by test-noise. */
static const uint8_t ck0[NOISE_HASH_LEN] = {
	0x60, 0xe2, 0x6d, 0xae, 0xf3, 0x27, 0xef, 0xc0,
	0x2e, 0xc3, 0x35, 0xe2, 0xa0, 0x25, 0xd2, 0xd0,
	0x16, 0xeb, 0x42, 0x06, 0xf8, 0x72, 0x77, 0xf5,
	0x2d, 0x38, 0xd1, 0x98, 0x8b, 0x78, 0xcd, 0x36,
};

/* HASH(Ck0 || "WireGuard v1 zx2c4 Jason@zx2c4.com"), checked by test-noise. */
static const uint8_t h0[NOISE_HASH_LEN] = {
	0x22, 0x11, 0xb3, 0x61, 0x08, 0x1a, 0xc5, 0x66,
	0x69, 0x12, 0x43, 0xdb, 0x45, 0x8a, 0xd5, 0x32,
	0x2d, 0x9c, 0x6c, 0x66, 0x22, 0x93, 0xe8, 0xb7,
	0x0e, 0xe1, 0x9c, 0x65, 0xba, 0x07, 0x9e, 0xf3,
};

static const uint8_t label_mac1[8] = { 'm', 'a', 'c', '1', '-', '-', '-', '-' };

static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

static const char *const result_names[] = {
	[NOISE_OK] = "ok",
	[NOISE_ERR_LENGTH] = "length",
	[NOISE_ERR_TYPE] = "type",
	[NOISE_ERR_MAC1] = "mac1",
	[NOISE_ERR_STATIC] = "static",
	[NOISE_ERR_TIMESTAMP] = "timestamp",
};

const char *noise_result_str(enum noise_result r)
{
	if ((unsigned int)r >= sizeof(result_names) / sizeof(result_names[0]))
		return "unknown";
	return result_names[r];
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 |
	       (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/*
 * ---- BLAKE2s (RFC 7693) ----------------------------------------------------
 *
 * Our own compression function instead of libb2: measured on the target
 * (libb2 0.98.1, Debian 12) libb2 needs ~170 ns per block, this scalar
 * version ~90 ns (gcc -O2) / ~72 ns (clang), and libb2 cannot resume from
 * a precomputed block. A decode is ~31 compressions, so this is what keeps
 * a cached decode under 1.2 x X25519. test-noise checks it against libb2.
 */

struct b2s {
	uint32_t h[8];
	uint64_t t;
	size_t buflen;
	uint8_t buf[B2S_BLOCK];
};

static const uint32_t b2s_iv[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static const uint8_t b2s_sigma[10][16] = {
	{ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 },
	{ 14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3 },
	{ 11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4 },
	{ 7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8 },
	{ 9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13 },
	{ 2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9 },
	{ 12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11 },
	{ 13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10 },
	{ 6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5 },
	{ 10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0 },
};

static inline uint32_t ror32(uint32_t x, unsigned int n)
{
	return x >> n | x << (32 - n);
}

#define B2S_G(a, b, c, d, x, y)				\
	do {						\
		a += b + (x); d = ror32(d ^ a, 16);	\
		c += d; b = ror32(b ^ c, 12);		\
		a += b + (y); d = ror32(d ^ a, 8);	\
		c += d; b = ror32(b ^ c, 7);		\
	} while (0)

#define B2S_ROUND(r)							\
	do {								\
		const uint8_t *s = b2s_sigma[r];			\
		B2S_G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);	\
		B2S_G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);	\
		B2S_G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);	\
		B2S_G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);	\
		B2S_G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);	\
		B2S_G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);	\
		B2S_G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);	\
		B2S_G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);	\
	} while (0)

static void b2s_compress(uint32_t h[8], const uint8_t blk[B2S_BLOCK],
			 uint64_t t, bool last)
{
	uint32_t m[16], v[16];

	for (int i = 0; i < 16; i++)
		m[i] = get_le32(blk + 4 * i);
	for (int i = 0; i < 8; i++) {
		v[i] = h[i];
		v[i + 8] = b2s_iv[i];
	}
	v[12] ^= (uint32_t)t;
	v[13] ^= (uint32_t)(t >> 32);
	if (last)
		v[14] = ~v[14];

	/* Unrolled so the sigma indices fold to constants: ~20% faster. */
	B2S_ROUND(0); B2S_ROUND(1); B2S_ROUND(2); B2S_ROUND(3); B2S_ROUND(4);
	B2S_ROUND(5); B2S_ROUND(6); B2S_ROUND(7); B2S_ROUND(8); B2S_ROUND(9);

	for (int i = 0; i < 8; i++)
		h[i] ^= v[i] ^ v[i + 8];
	sodium_memzero(m, sizeof(m));
	sodium_memzero(v, sizeof(v));
}

static inline void b2s_init(struct b2s *s, size_t outlen, size_t keylen)
{
	memcpy(s->h, b2s_iv, sizeof(s->h));
	s->h[0] ^= 0x01010000u ^ (uint32_t)(keylen << 8) ^ (uint32_t)outlen;
	s->t = 0;
	s->buflen = 0;
}

/* Resume after a first block that is known not to be the last one. */
static inline void b2s_resume(struct b2s *s, const uint32_t cv[8])
{
	memcpy(s->h, cv, sizeof(s->h));
	s->t = B2S_BLOCK;
	s->buflen = 0;
}

/* Compresses eagerly only what cannot be the final block. */
static void b2s_update(struct b2s *s, const uint8_t *in, size_t inlen)
{
	size_t fill = B2S_BLOCK - s->buflen;

	if (!inlen)
		return;
	if (inlen > fill) {
		memcpy(s->buf + s->buflen, in, fill);
		s->t += B2S_BLOCK;
		b2s_compress(s->h, s->buf, s->t, false);
		s->buflen = 0;
		in += fill;
		inlen -= fill;
		while (inlen > B2S_BLOCK) {
			s->t += B2S_BLOCK;
			b2s_compress(s->h, in, s->t, false);
			in += B2S_BLOCK;
			inlen -= B2S_BLOCK;
		}
	}
	memcpy(s->buf + s->buflen, in, inlen);
	s->buflen += inlen;
}

static void b2s_final(struct b2s *s, uint8_t *out, size_t outlen)
{
	uint8_t full[32];

	s->t += s->buflen;
	memset(s->buf + s->buflen, 0, B2S_BLOCK - s->buflen);
	b2s_compress(s->h, s->buf, s->t, true);
	for (int i = 0; i < 8; i++)
		put_le32(full + 4 * i, s->h[i]);
	memcpy(out, full, outlen);
	sodium_memzero(full, sizeof(full));
	sodium_memzero(s, sizeof(*s));
}

/* Chaining value after one full, non-final block: init + that block. */
static void b2s_first_block_cv(uint32_t cv[8], size_t outlen, size_t keylen,
			       const uint8_t blk[B2S_BLOCK])
{
	struct b2s s;

	b2s_init(&s, outlen, keylen);
	b2s_compress(s.h, blk, B2S_BLOCK, false);
	memcpy(cv, s.h, sizeof(s.h));
	sodium_memzero(&s, sizeof(s));
}

int noise_blake2s(uint8_t *out, size_t outlen, const uint8_t *in,
		  size_t inlen, const uint8_t *key, size_t keylen)
{
	uint8_t kblk[B2S_BLOCK] = { 0 };
	struct b2s s;

	if (!out || !outlen || outlen > 32 || keylen > 32 ||
	    (inlen && !in) || (keylen && !key))
		return -1;
	b2s_init(&s, outlen, keylen);
	if (keylen) {
		memcpy(kblk, key, keylen);
		b2s_update(&s, kblk, sizeof(kblk));
		sodium_memzero(kblk, sizeof(kblk));
	}
	b2s_update(&s, in, inlen);
	b2s_final(&s, out, outlen);
	return 0;
}

static inline void hash2(uint8_t out[NOISE_HASH_LEN], const uint8_t *a,
			 size_t alen, const uint8_t *b, size_t blen)
{
	struct b2s s;

	b2s_init(&s, NOISE_HASH_LEN, 0);
	b2s_update(&s, a, alen);
	b2s_update(&s, b, blen);
	b2s_final(&s, out, NOISE_HASH_LEN);
}

int noise_hash(uint8_t out[NOISE_HASH_LEN], const uint8_t *a, size_t alen,
	       const uint8_t *b, size_t blen)
{
	if (!out || (alen && !a) || (blen && !b))
		return -1;
	hash2(out, a, alen, b, blen);
	return 0;
}

/*
 * ---- HMAC-BLAKE2s and the KDF ------------------------------------------------
 *
 * RFC 2104 with a 64-byte block. A key is kept as the chaining values after
 * its ipad and opad blocks, so each use of a key costs two compressions
 * (for messages up to 64 bytes) instead of four.
 */

struct hmac_key {
	uint32_t cv[2][8];	/* [0] after ipad, [1] after opad */
};

static void hmac_setkey(struct hmac_key *hk, const uint8_t *key, size_t keylen)
{
	uint8_t k[B2S_BLOCK] = { 0 };
	uint8_t pad[B2S_BLOCK];

	if (keylen > B2S_BLOCK)
		hash2(k, key, keylen, NULL, 0);
	else if (keylen)
		memcpy(k, key, keylen);

	for (int i = 0; i < B2S_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	b2s_first_block_cv(hk->cv[0], NOISE_HASH_LEN, 0, pad);
	for (int i = 0; i < B2S_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	b2s_first_block_cv(hk->cv[1], NOISE_HASH_LEN, 0, pad);

	sodium_memzero(k, sizeof(k));
	sodium_memzero(pad, sizeof(pad));
}

/* HMAC(key, a || b); the message must not be empty (see b2s_resume). */
static void hmac_run(const struct hmac_key *hk, uint8_t out[NOISE_HASH_LEN],
		     const uint8_t *a, size_t alen, const uint8_t *b,
		     size_t blen)
{
	uint8_t inner[NOISE_HASH_LEN];
	struct b2s s;

	b2s_resume(&s, hk->cv[0]);
	b2s_update(&s, a, alen);
	b2s_update(&s, b, blen);
	b2s_final(&s, inner, sizeof(inner));

	b2s_resume(&s, hk->cv[1]);
	b2s_update(&s, inner, sizeof(inner));
	b2s_final(&s, out, NOISE_HASH_LEN);
	sodium_memzero(inner, sizeof(inner));
}

/* Empty messages: the ipad block is then also the final block. */
static void hmac_empty(uint8_t out[NOISE_HASH_LEN], const uint8_t *key,
		       size_t keylen)
{
	uint8_t k[B2S_BLOCK] = { 0 };
	uint8_t pad[B2S_BLOCK];
	uint8_t inner[NOISE_HASH_LEN];

	if (keylen > B2S_BLOCK)
		hash2(k, key, keylen, NULL, 0);
	else if (keylen)
		memcpy(k, key, keylen);
	for (int i = 0; i < B2S_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	hash2(inner, pad, sizeof(pad), NULL, 0);
	for (int i = 0; i < B2S_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	hash2(out, pad, sizeof(pad), inner, sizeof(inner));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(inner, sizeof(inner));
}

int noise_hmac_blake2s(uint8_t out[NOISE_HASH_LEN], const uint8_t *key,
		       size_t keylen, const uint8_t *in, size_t inlen)
{
	struct hmac_key hk;

	if (!out || (keylen && !key) || (inlen && !in))
		return -1;
	if (!inlen) {
		hmac_empty(out, key, keylen);
		return 0;
	}
	hmac_setkey(&hk, key, keylen);
	hmac_run(&hk, out, in, inlen, NULL, 0);
	sodium_memzero(&hk, sizeof(hk));
	return 0;
}

/* t1 and t2 may alias the chaining key ck was made from. */
static void kdf(const struct hmac_key *ck, uint8_t *t1, uint8_t *t2,
		uint8_t *t3, const uint8_t *in, size_t inlen)
{
	uint8_t t[NOISE_HASH_LEN], prev[NOISE_HASH_LEN];
	struct hmac_key tk;
	uint8_t ctr = 1;

	hmac_run(ck, t, in, inlen, NULL, 0);
	hmac_setkey(&tk, t, sizeof(t));
	hmac_run(&tk, prev, &ctr, 1, NULL, 0);
	memcpy(t1, prev, NOISE_HASH_LEN);
	if (t2) {
		ctr = 2;
		hmac_run(&tk, prev, prev, sizeof(prev), &ctr, 1);
		memcpy(t2, prev, NOISE_HASH_LEN);
	}
	if (t2 && t3) {
		ctr = 3;
		hmac_run(&tk, prev, prev, sizeof(prev), &ctr, 1);
		memcpy(t3, prev, NOISE_HASH_LEN);
	}
	sodium_memzero(t, sizeof(t));
	sodium_memzero(prev, sizeof(prev));
	sodium_memzero(&tk, sizeof(tk));
}

int noise_kdf(uint8_t t1[NOISE_HASH_LEN], uint8_t t2[NOISE_HASH_LEN],
	      uint8_t t3[NOISE_HASH_LEN], const uint8_t ck[NOISE_HASH_LEN],
	      const uint8_t *in, size_t inlen)
{
	struct hmac_key hk;

	if (!t1 || (t3 && !t2) || !ck || !in || !inlen)
		return -1;
	hmac_setkey(&hk, ck, NOISE_HASH_LEN);
	kdf(&hk, t1, t2, t3, in, inlen);
	sodium_memzero(&hk, sizeof(hk));
	return 0;
}

void noise_initial_chaining_key(uint8_t out[NOISE_HASH_LEN])
{
	memcpy(out, ck0, NOISE_HASH_LEN);
}

void noise_initial_hash(uint8_t out[NOISE_HASH_LEN])
{
	memcpy(out, h0, NOISE_HASH_LEN);
}

int noise_tai64n_to_unix(const uint8_t tai[NOISE_TAI64N_LEN], int64_t *sec,
			 uint32_t *nsec)
{
	uint64_t label = get_be64(tai);
	uint32_t ns = get_be32(tai + 8);

	/* TAI64 labels >= 2^63 are reserved; WireGuard adds 2^62 + 10. */
	if (label >> 63 || ns >= 1000000000u)
		return -1;
	if (sec)
		*sec = (int64_t)label - (int64_t)0x400000000000000aLL;
	if (nsec)
		*nsec = ns;
	return 0;
}

bool noise_tai64n_within(const uint8_t tai[NOISE_TAI64N_LEN], uint64_t realtime_ns,
			 int64_t max_skew_ms)
{
	int64_t sec, now_sec, slack, ms;
	uint32_t nsec;

	if (max_skew_ms < 0 || noise_tai64n_to_unix(tai, &sec, &nsec))
		return false;
	/* whole seconds first, so that no product can overflow: sec is
	 * anything in [-2^62 - 10, 2^62 - 11], now_sec below 2^35 */
	if (max_skew_ms > INT64_MAX / 4)
		max_skew_ms = INT64_MAX / 4;
	now_sec = (int64_t)(realtime_ns / 1000000000u);
	slack = max_skew_ms / 1000 + 1;
	if (sec < now_sec - slack || sec > now_sec + slack)
		return false;
	/* |sec - now_sec| <= slack < 2^61 / 1000 */
	ms = (sec - now_sec) * 1000 + (int64_t)(nsec / 1000000u) -
	     (int64_t)(realtime_ns % 1000000000u / 1000000u);
	return ms <= max_skew_ms && ms >= -max_skew_ms;
}

/* ---- responder ---------------------------------------------------------- */

int noise_responder_init(struct noise_responder *r,
			 const uint8_t priv[NOISE_KEY_LEN])
{
	uint8_t kblk[B2S_BLOCK] = { 0 };
	struct hmac_key hk;

	if (!r || !priv || sodium_init() < 0)
		return -1;
	memset(r, 0, sizeof(*r));
	memcpy(r->private_key, priv, NOISE_KEY_LEN);
	if (crypto_scalarmult_base(r->public_key, r->private_key) != 0) {
		noise_responder_wipe(r);
		return -1;
	}
	hash2(r->mac1_key, label_mac1, sizeof(label_mac1), r->public_key,
	      NOISE_KEY_LEN);
	hash2(r->hash3, h0, sizeof(h0), r->public_key, NOISE_KEY_LEN);

	memcpy(kblk, r->mac1_key, NOISE_HASH_LEN);
	b2s_first_block_cv(r->mac1_cv, MAC_LEN, NOISE_HASH_LEN, kblk);
	hmac_setkey(&hk, ck0, sizeof(ck0));
	memcpy(r->ck0_cv, hk.cv, sizeof(r->ck0_cv));
	sodium_memzero(&hk, sizeof(hk));
	return 0;
}

void noise_responder_wipe(struct noise_responder *r)
{
	if (r)
		sodium_memzero(r, sizeof(*r));
}

/* ---- ss cache ----------------------------------------------------------------
 *
 * Fixed array of entries allocated up front; a chained hash table
 * (indices, power-of-two buckets) and a doubly linked LRU list through the
 * same entries. The hash is SipHash with a random key because the static
 * keys are chosen by whoever sends packets. One mutex guards it all: it is
 * held for a lookup or an insertion (~100 ns), never across an X25519.
 */

#define NIL			UINT32_MAX
#define SS_CACHE_MAX		(1u << 24)

struct ss_entry {
	uint8_t pub[NOISE_KEY_LEN];
	uint8_t ss[NOISE_KEY_LEN];
	uint32_t bucket;
	uint32_t chain;		/* next entry in the same bucket */
	uint32_t prev, next;	/* LRU: head is the most recent */
};

struct noise_ss_cache {
	uint32_t capacity;
	uint32_t size;
	uint32_t mask;		/* number of buckets - 1 */
	uint32_t head, tail;
	uint32_t *buckets;
	struct ss_entry *e;
	uint8_t hkey[crypto_shorthash_KEYBYTES];
	uint8_t owner[NOISE_KEY_LEN];	/* responder public key, once used */
	bool bound;
	uint64_t hits, misses, evictions;
	pthread_mutex_t lock;
};

struct noise_ss_cache *noise_ss_cache_new(size_t capacity)
{
	struct noise_ss_cache *c;
	uint32_t nb = 1;

	if (capacity > SS_CACHE_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if (sodium_init() < 0) {
		errno = EIO;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (pthread_mutex_init(&c->lock, NULL)) {
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	while (nb < capacity)
		nb <<= 1;
	c->capacity = (uint32_t)capacity;
	c->mask = nb - 1;
	c->head = c->tail = NIL;
	if (capacity) {
		c->buckets = malloc(nb * sizeof(*c->buckets));
		c->e = calloc(capacity, sizeof(*c->e));
		if (!c->buckets || !c->e) {
			noise_ss_cache_free(c);
			errno = ENOMEM;
			return NULL;
		}
		memset(c->buckets, 0xff, nb * sizeof(*c->buckets));
	}
	randombytes_buf(c->hkey, sizeof(c->hkey));
	return c;
}

void noise_ss_cache_free(struct noise_ss_cache *c)
{
	if (!c)
		return;
	if (c->e)
		sodium_memzero(c->e, (size_t)c->capacity * sizeof(*c->e));
	free(c->e);
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	sodium_memzero(c, sizeof(*c));
	free(c);
}

void noise_ss_cache_stats(const struct noise_ss_cache *c,
			  struct noise_ss_cache_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!c)
		return;
	pthread_mutex_lock((pthread_mutex_t *)&c->lock);
	st->hits = c->hits;
	st->misses = c->misses;
	st->evictions = c->evictions;
	st->size = c->size;
	st->capacity = c->capacity;
	pthread_mutex_unlock((pthread_mutex_t *)&c->lock);
}

/* Entries are only valid for the responder key that made them. */
static void cache_bind(struct noise_ss_cache *c,
		       const struct noise_responder *r)
{
	if (c->bound && !memcmp(c->owner, r->public_key, NOISE_KEY_LEN))
		return;
	/* the first binding finds the table as new made it (calloc'd
	 * entries, empty buckets): wiping it would only make the whole
	 * table resident at once (5 MB at the default size) */
	if (c->bound || c->size) {
		sodium_memzero(c->e, (size_t)c->capacity * sizeof(*c->e));
		memset(c->buckets, 0xff, ((size_t)c->mask + 1) * sizeof(*c->buckets));
	}
	c->size = 0;
	c->head = c->tail = NIL;
	memcpy(c->owner, r->public_key, NOISE_KEY_LEN);
	c->bound = true;
}

static inline uint32_t cache_bucket(const struct noise_ss_cache *c,
				    const uint8_t pub[NOISE_KEY_LEN])
{
	uint8_t h[crypto_shorthash_BYTES];

	crypto_shorthash(h, pub, NOISE_KEY_LEN, c->hkey);
	return get_le32(h) & c->mask;
}

static void lru_unlink(struct noise_ss_cache *c, uint32_t i)
{
	struct ss_entry *e = &c->e[i];

	if (e->prev != NIL)
		c->e[e->prev].next = e->next;
	else
		c->head = e->next;
	if (e->next != NIL)
		c->e[e->next].prev = e->prev;
	else
		c->tail = e->prev;
}

static void lru_push_front(struct noise_ss_cache *c, uint32_t i)
{
	struct ss_entry *e = &c->e[i];

	e->prev = NIL;
	e->next = c->head;
	if (c->head != NIL)
		c->e[c->head].prev = i;
	c->head = i;
	if (c->tail == NIL)
		c->tail = i;
}

static void chain_unlink(struct noise_ss_cache *c, uint32_t i)
{
	uint32_t *p = &c->buckets[c->e[i].bucket];

	while (*p != i)
		p = &c->e[*p].chain;
	*p = c->e[i].chain;
}

static uint32_t cache_find(const struct noise_ss_cache *c, uint32_t b,
			   const uint8_t pub[NOISE_KEY_LEN])
{
	uint32_t i;

	for (i = c->buckets[b]; i != NIL; i = c->e[i].chain) {
		if (!memcmp(c->e[i].pub, pub, NOISE_KEY_LEN))
			break;
	}
	return i;
}

/* Returns the slot for pub, evicting the least recently used if full. */
static uint32_t cache_claim(struct noise_ss_cache *c, uint32_t b,
			    const uint8_t pub[NOISE_KEY_LEN])
{
	uint32_t i;

	if (c->size < c->capacity) {
		i = c->size++;
	} else {
		i = c->tail;
		lru_unlink(c, i);
		chain_unlink(c, i);
		sodium_memzero(&c->e[i], sizeof(c->e[i]));
		c->evictions++;
	}
	memcpy(c->e[i].pub, pub, NOISE_KEY_LEN);
	c->e[i].bucket = b;
	c->e[i].chain = c->buckets[b];
	c->buckets[b] = i;
	lru_push_front(c, i);
	return i;
}

/* Under c->lock: the entry for pub becomes the newest, holding ss. */
static void cache_put_locked(struct noise_ss_cache *c,
			     const struct noise_responder *r,
			     const uint8_t pub[NOISE_KEY_LEN],
			     const uint8_t ss[NOISE_KEY_LEN])
{
	uint32_t b, i;

	cache_bind(c, r);
	b = cache_bucket(c, pub);
	i = cache_find(c, b, pub);
	if (i == NIL) {
		i = cache_claim(c, b, pub);
	} else {
		lru_unlink(c, i);
		lru_push_front(c, i);
	}
	memcpy(c->e[i].ss, ss, NOISE_KEY_LEN);
}

void noise_ss_cache_put(struct noise_ss_cache *c,
			const struct noise_responder *r,
			const uint8_t pub[NOISE_KEY_LEN],
			const uint8_t ss[NOISE_KEY_LEN])
{
	if (!c || !c->capacity)
		return;
	pthread_mutex_lock(&c->lock);
	cache_put_locked(c, r, pub, ss);
	pthread_mutex_unlock(&c->lock);
}

/*
 * ss = DH(our priv, their static), through the cache when there is one.
 * On a miss the DH is computed outside the lock; it is then added to the
 * cache, or, when `miss` is given, handed to the caller to add later.
 */
static int static_static(const struct noise_responder *r,
			 struct noise_ss_cache *c,
			 const uint8_t pub[NOISE_KEY_LEN],
			 uint8_t ss[NOISE_KEY_LEN], struct noise_ss_miss *miss)
{
	uint32_t b, i;

	if (!c || !c->capacity)
		return crypto_scalarmult(ss, r->private_key, pub);

	pthread_mutex_lock(&c->lock);
	cache_bind(c, r);
	b = cache_bucket(c, pub);
	i = cache_find(c, b, pub);
	if (i != NIL) {
		c->hits++;
		lru_unlink(c, i);
		lru_push_front(c, i);
		memcpy(ss, c->e[i].ss, NOISE_KEY_LEN);
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	c->misses++;
	pthread_mutex_unlock(&c->lock);
	/* Low-order keys are not cached: a repeat costs no more than a fresh
	 * key would, and the cache keeps only usable entries. */
	if (crypto_scalarmult(ss, r->private_key, pub) != 0)
		return -1;
	if (miss) {
		memcpy(miss->ss, ss, NOISE_KEY_LEN);
		miss->set = true;
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	cache_put_locked(c, r, pub, ss);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* ---- decode --------------------------------------------------------------- */

struct handshake {
	struct hmac_key ckey;	/* ck in HMAC key form */
	uint8_t ck[NOISE_HASH_LEN];
	uint8_t h[NOISE_HASH_LEN];
	uint8_t k[NOISE_KEY_LEN];
	uint8_t dh[NOISE_KEY_LEN];
};

static inline bool mac1_valid(const struct noise_responder *r,
			      const uint8_t *pkt)
{
	uint8_t mac[MAC_LEN];
	struct b2s s;

	b2s_resume(&s, r->mac1_cv);
	b2s_update(&s, pkt, OFF_MAC1);
	b2s_final(&s, mac, sizeof(mac));
	return sodium_memcmp(mac, pkt + OFF_MAC1, MAC_LEN) == 0;
}

static inline int aead_open(uint8_t *out, const uint8_t *ct, size_t ctlen,
			    const uint8_t key[NOISE_KEY_LEN],
			    const uint8_t ad[NOISE_HASH_LEN])
{
	return crypto_aead_chacha20poly1305_ietf_decrypt(out, NULL, NULL, ct,
							 ctlen, ad,
							 NOISE_HASH_LEN,
							 zero_nonce, key);
}

/* (Ck, K) = KDF2(Ck, dh) */
static inline void mix_dh(struct handshake *hs)
{
	hmac_setkey(&hs->ckey, hs->ck, NOISE_HASH_LEN);
	kdf(&hs->ckey, hs->ck, hs->k, NULL, hs->dh, NOISE_KEY_LEN);
}

/* Steps 3-7: the es DH and encrypted_static. */
static enum noise_result open_static(const struct noise_responder *r,
				     struct handshake *hs, const uint8_t *pkt,
				     uint8_t spub[NOISE_KEY_LEN])
{
	const uint8_t *ei = pkt + OFF_EPHEMERAL;
	struct hmac_key ck0_key;

	memcpy(ck0_key.cv, r->ck0_cv, sizeof(ck0_key.cv));
	kdf(&ck0_key, hs->ck, NULL, NULL, ei, NOISE_KEY_LEN);
	hash2(hs->h, r->hash3, NOISE_HASH_LEN, ei, NOISE_KEY_LEN);

	if (crypto_scalarmult(hs->dh, r->private_key, ei) != 0)
		return NOISE_ERR_STATIC;
	mix_dh(hs);
	if (aead_open(spub, pkt + OFF_STATIC, LEN_STATIC, hs->k, hs->h) != 0)
		return NOISE_ERR_STATIC;
	hash2(hs->h, hs->h, NOISE_HASH_LEN, pkt + OFF_STATIC, LEN_STATIC);
	return NOISE_OK;
}

/* Steps 9-10: the ss DH and encrypted_timestamp. Step 11 is skipped: the
 * final hash only matters to whoever builds the response. */
static enum noise_result open_timestamp(const struct noise_responder *r,
					struct noise_ss_cache *c,
					struct noise_ss_miss *miss,
					struct handshake *hs,
					const uint8_t *pkt,
					const uint8_t spub[NOISE_KEY_LEN],
					uint8_t tai[NOISE_TAI64N_LEN])
{
	if (static_static(r, c, spub, hs->dh, miss) != 0)
		return NOISE_ERR_TIMESTAMP;
	mix_dh(hs);
	if (aead_open(tai, pkt + OFF_TIMESTAMP, LEN_TIMESTAMP, hs->k,
		      hs->h) != 0)
		return NOISE_ERR_TIMESTAMP;
	return NOISE_OK;
}

enum noise_result noise_precheck(const struct noise_responder *r,
				 const uint8_t *pkt, size_t len)
{
	if (!pkt || len != NOISE_INIT_LEN)
		return NOISE_ERR_LENGTH;
	if (get_le32(pkt) != MSG_INITIATION)
		return NOISE_ERR_TYPE;
	if (!mac1_valid(r, pkt))
		return NOISE_ERR_MAC1;
	return NOISE_OK;
}

enum noise_result noise_decode_lookup(const struct noise_responder *r,
				      struct noise_ss_cache *c,
				      const uint8_t *pkt, size_t len,
				      bool authenticate,
				      struct noise_initiation *out,
				      struct noise_ss_miss *miss)
{
	struct handshake hs;
	enum noise_result ret;

	memset(out, 0, sizeof(*out));
	if (miss)
		sodium_memzero(miss, sizeof(*miss));
	if (!pkt || len != NOISE_INIT_LEN)
		return NOISE_ERR_LENGTH;
	if (get_le32(pkt) != MSG_INITIATION)
		return NOISE_ERR_TYPE;
	out->sender_index = get_le32(pkt + OFF_SENDER);
	memcpy(out->ephemeral, pkt + OFF_EPHEMERAL, NOISE_KEY_LEN);
	if (!mac1_valid(r, pkt))
		return NOISE_ERR_MAC1;
	out->mac1_ok = true;

	ret = open_static(r, &hs, pkt, out->public_key);
	if (ret != NOISE_OK) {
		memset(out->public_key, 0, NOISE_KEY_LEN);
		goto out;
	}
	if (!authenticate)
		goto out;
	ret = open_timestamp(r, c, miss, &hs, pkt, out->public_key, out->tai64n);
	if (ret != NOISE_OK) {
		memset(out->tai64n, 0, NOISE_TAI64N_LEN);
		if (miss)
			sodium_memzero(miss, sizeof(*miss));
		goto out;
	}
	out->authenticated = true;
out:
	sodium_memzero(&hs, sizeof(hs));
	return ret;
}

enum noise_result noise_decode(const struct noise_responder *r,
			       struct noise_ss_cache *c,
			       const uint8_t *pkt, size_t len,
			       bool authenticate,
			       struct noise_initiation *out)
{
	return noise_decode_lookup(r, c, pkt, len, authenticate, out, NULL);
}
