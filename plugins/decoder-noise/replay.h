// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#ifndef WGGWD_NOISE_REPLAY_H
#define WGGWD_NOISE_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "noise.h"

/*
 * The newest TAI64N timestamp per initiator key: WireGuard's own replay
 * rule (PROTOCOL.md (d)), kept by the decoder so that it holds whatever
 * follows it in the pipeline. An initiation whose timestamp is not
 * strictly newer than its key's is a replay. Bounded: at most `capacity`
 * keys, the least recently recorded forgotten first. Keys come from
 * outside, so buckets come from a keyed hash (the host's SipHash). Not
 * thread-safe; no allocation after noise_replay_new.
 */
struct noise_replay;

typedef uint64_t (*noise_hash_fn)(const void *data, size_t len);

struct noise_replay_stats {
	uint64_t evictions;
	size_t size;
	size_t capacity;
};

/* capacity 0 = remember nothing (still a valid object). NULL with errno
 * EINVAL if capacity > 2^24 or hash is NULL, ENOMEM if out of memory. */
struct noise_replay *noise_replay_new(size_t capacity, noise_hash_fn hash);
void noise_replay_free(struct noise_replay *t);
void noise_replay_stats(const struct noise_replay *t, struct noise_replay_stats *st);

/* Is tai not newer than the newest recorded for key? (false: unknown key) */
bool noise_replay_seen(const struct noise_replay *t, const uint8_t key[NOISE_KEY_LEN],
		       const uint8_t tai[NOISE_TAI64N_LEN]);
/* Remember tai for key unless an equal or newer one is held; the key
 * becomes the most recently recorded. */
void noise_replay_record(struct noise_replay *t, const uint8_t key[NOISE_KEY_LEN],
			 const uint8_t tai[NOISE_TAI64N_LEN]);
/* The same, with the initiation's ephemeral key (or NULL), kept with the
 * newest timestamp: a copy of that initiation is then known by its
 * ephemeral alone, before any X25519 (noise_replay_seen_ephemeral). */
void noise_replay_record_initiation(struct noise_replay *t,
				    const uint8_t key[NOISE_KEY_LEN],
				    const uint8_t tai[NOISE_TAI64N_LEN],
				    const uint8_t eph[NOISE_KEY_LEN]);
/* Is eph the ephemeral of a key's newest recorded initiation? (A client
 * never reuses one: whatever carries it again is a replay.) */
bool noise_replay_seen_ephemeral(const struct noise_replay *t,
				 const uint8_t eph[NOISE_KEY_LEN]);

#endif
