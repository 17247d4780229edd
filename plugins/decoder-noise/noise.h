// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#ifndef WGGWD_NOISE_H
#define WGGWD_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Responder side of the WireGuard handshake initiation
 * (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s), up to the timestamp.
 * See docs/PROTOCOL.md (a)-(d). No allocation on the decode path.
 */

#define NOISE_KEY_LEN	32
#define NOISE_HASH_LEN	32
#define NOISE_INIT_LEN	148
#define NOISE_TAI64N_LEN 12
#define NOISE_OFF_EPHEMERAL 8	/* the initiator's ephemeral in a packet */

enum noise_result {
	NOISE_OK = 0,
	NOISE_ERR_LENGTH,
	NOISE_ERR_TYPE,
	NOISE_ERR_MAC1,
	NOISE_ERR_STATIC,
	NOISE_ERR_TIMESTAMP,
};

/* "ok", "length", "type", "mac1", "static", "timestamp": the drop reasons. */
const char *noise_result_str(enum noise_result r);

struct noise_responder {
	uint8_t private_key[NOISE_KEY_LEN];
	uint8_t public_key[NOISE_KEY_LEN];
	uint8_t mac1_key[NOISE_HASH_LEN];	/* HASH("mac1----" || pub) */
	uint8_t hash3[NOISE_HASH_LEN];		/* HASH(H0 || pub) */
	/*
	 * BLAKE2s chaining values after the first 64-byte block has been
	 * compressed: the mac1 key block, and the HMAC ipad/opad blocks of
	 * Ck0. Each saves one compression per packet.
	 */
	uint32_t mac1_cv[8];
	uint32_t ck0_cv[2][8];
};

/* Returns 0, or -1 if priv gives an unusable public key. */
int noise_responder_init(struct noise_responder *r,
			 const uint8_t priv[NOISE_KEY_LEN]);
void noise_responder_wipe(struct noise_responder *r);

/*
 * Bounded LRU: initiator static public key -> DH(our priv, their static).
 * A cache serves one responder key at a time: using it with another
 * responder empties it first. It is thread-safe (one mutex, never held
 * across an X25519), so decoding threads can share one. Hashing is keyed
 * (SipHash, random key), so chosen static keys cannot degrade the table.
 * Entries are wiped on eviction and free.
 */
struct noise_ss_cache;

struct noise_ss_cache_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t evictions;
	size_t size;
	size_t capacity;
};

/* capacity 0 = cache nothing (still a valid object). NULL with errno
 * EINVAL if capacity > 2^24, ENOMEM if out of memory. */
struct noise_ss_cache *noise_ss_cache_new(size_t capacity);
void noise_ss_cache_free(struct noise_ss_cache *c);	/* wipes */
void noise_ss_cache_stats(const struct noise_ss_cache *c,
			  struct noise_ss_cache_stats *st);

struct noise_initiation {
	uint8_t public_key[NOISE_KEY_LEN];	/* initiator static */
	uint8_t tai64n[NOISE_TAI64N_LEN];
	uint32_t sender_index;
	uint8_t ephemeral[NOISE_KEY_LEN];
	bool mac1_ok;
	bool authenticated;	/* timestamp opened: sender holds the key */
};

/*
 * The cheap checks alone (length, type, mac1: one BLAKE2s, no X25519):
 * NOISE_OK if the packet is worth a decode.
 */
enum noise_result noise_precheck(const struct noise_responder *r,
				 const uint8_t *pkt, size_t len);

/*
 * Checks are done cheapest first: length, type, mac1, static, timestamp.
 * authenticate=false stops after the static key (authenticated=false, one
 * X25519); true also does the ss DH (cached in c, which may be NULL) and
 * opens the timestamp.
 *
 * r and out must not be NULL; a NULL pkt fails as NOISE_ERR_LENGTH.
 * out is always fully written. On error, fields of stages that were not
 * reached are zero; public_key is set (but unauthenticated) on a
 * NOISE_ERR_TIMESTAMP. A low-order initiator static key (all-zero ss)
 * fails as NOISE_ERR_TIMESTAMP, since it can never be authenticated; a
 * low-order ephemeral (all-zero es) fails as NOISE_ERR_STATIC.
 */
enum noise_result noise_decode(const struct noise_responder *r,
			       struct noise_ss_cache *c,
			       const uint8_t *pkt, size_t len,
			       bool authenticate,
			       struct noise_initiation *out);

/*
 * As noise_decode, but the cache is only read: on a miss the computed ss
 * (secret: wipe it) is handed back in *miss (set = true), for the caller
 * to add with noise_ss_cache_put once the key has proved worth keeping, so
 * that a flood of fresh keys cannot push known ones out. miss->set is
 * false on a hit, without a cache, or when the timestamp did not open.
 */
struct noise_ss_miss {
	bool set;
	uint8_t ss[NOISE_KEY_LEN];
};
enum noise_result noise_decode_lookup(const struct noise_responder *r,
				      struct noise_ss_cache *c,
				      const uint8_t *pkt, size_t len,
				      bool authenticate,
				      struct noise_initiation *out,
				      struct noise_ss_miss *miss);
/* Add (or refresh) pub's ss, as the most recently used. */
void noise_ss_cache_put(struct noise_ss_cache *c,
			const struct noise_responder *r,
			const uint8_t pub[NOISE_KEY_LEN],
			const uint8_t ss[NOISE_KEY_LEN]);

/* Exposed for tests. All return 0 on success, -1 on bad arguments. */
/* BLAKE2s (RFC 7693), 1..32-byte digest, optional 0..32-byte key. */
int noise_blake2s(uint8_t *out, size_t outlen, const uint8_t *in,
		  size_t inlen, const uint8_t *key, size_t keylen);
/* HASH(a || b), unkeyed BLAKE2s-256. */
int noise_hash(uint8_t out[NOISE_HASH_LEN], const uint8_t *a, size_t alen,
	       const uint8_t *b, size_t blen);
int noise_hmac_blake2s(uint8_t out[NOISE_HASH_LEN], const uint8_t *key,
		       size_t keylen, const uint8_t *in, size_t inlen);
/* HKDF-BLAKE2s as in WireGuard: T1..Tn with n = 1 + (t2 != NULL) + (t3 != NULL). */
int noise_kdf(uint8_t t1[NOISE_HASH_LEN], uint8_t t2[NOISE_HASH_LEN],
	      uint8_t t3[NOISE_HASH_LEN], const uint8_t ck[NOISE_HASH_LEN],
	      const uint8_t *in, size_t inlen);
/* Ck0 = HASH(CONSTRUCTION), H0 = HASH(Ck0 || IDENTIFIER). */
void noise_initial_chaining_key(uint8_t out[NOISE_HASH_LEN]);
void noise_initial_hash(uint8_t out[NOISE_HASH_LEN]);

/* sec = be64(tai[0..7]) - 0x400000000000000a, nsec = be32(tai[8..11]).
 * Returns -1 if the label is out of range or nsec >= 1e9. */
int noise_tai64n_to_unix(const uint8_t tai[NOISE_TAI64N_LEN], int64_t *sec,
			 uint32_t *nsec);

/* Is tai a valid timestamp within max_skew_ms (>= 0) of realtime_ns
 * (CLOCK_REALTIME)? Any label, however far off, is judged without
 * overflow. */
bool noise_tai64n_within(const uint8_t tai[NOISE_TAI64N_LEN], uint64_t realtime_ns,
			 int64_t max_skew_ms);

#endif
