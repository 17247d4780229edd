// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The decoder's replay table: a fixed array of entries allocated up front,
 * a chained hash table through them (indices, power-of-two buckets) and a
 * doubly linked LRU list, most recently recorded first. The same shape as
 * noise.c's ss cache.
 */
#include "replay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NIL		UINT32_MAX
#define REPLAY_MAX	(1u << 24)

struct rp_entry {
	uint8_t key[NOISE_KEY_LEN];
	uint8_t tai[NOISE_TAI64N_LEN];
	uint8_t eph[NOISE_KEY_LEN];	/* the newest's ephemeral, if has_eph */
	bool has_eph;
	uint32_t bucket;
	uint32_t chain;		/* next entry in the same bucket */
	uint32_t ebucket, echain;	/* the same, by ephemeral */
	uint32_t prev, next;	/* LRU: head is the most recent */
};

struct noise_replay {
	uint32_t capacity, size, mask;
	uint32_t head, tail;
	uint32_t *buckets, *ebuckets;
	struct rp_entry *e;
	noise_hash_fn hash;
	uint64_t evictions;
};

struct noise_replay *noise_replay_new(size_t capacity, noise_hash_fn hash)
{
	struct noise_replay *t;
	uint32_t nb = 1;

	if (capacity > REPLAY_MAX || !hash) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	while (nb < capacity)
		nb <<= 1;
	t->capacity = (uint32_t)capacity;
	t->mask = nb - 1;
	t->head = t->tail = NIL;
	t->hash = hash;
	if (capacity) {
		t->buckets = malloc(nb * sizeof(*t->buckets));
		t->ebuckets = malloc(nb * sizeof(*t->ebuckets));
		t->e = calloc(capacity, sizeof(*t->e));
		if (!t->buckets || !t->ebuckets || !t->e) {
			noise_replay_free(t);
			errno = ENOMEM;
			return NULL;
		}
		memset(t->buckets, 0xff, nb * sizeof(*t->buckets));
		memset(t->ebuckets, 0xff, nb * sizeof(*t->ebuckets));
	}
	return t;
}

void noise_replay_free(struct noise_replay *t)
{
	if (!t)
		return;
	free(t->e);
	free(t->buckets);
	free(t->ebuckets);
	free(t);
}

void noise_replay_stats(const struct noise_replay *t, struct noise_replay_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!t)
		return;
	st->evictions = t->evictions;
	st->size = t->size;
	st->capacity = t->capacity;
}

static uint32_t find(const struct noise_replay *t, uint32_t b, const uint8_t *key)
{
	uint32_t i;

	for (i = t->buckets[b]; i != NIL; i = t->e[i].chain)
		if (!memcmp(t->e[i].key, key, NOISE_KEY_LEN))
			break;
	return i;
}

static void lru_unlink(struct noise_replay *t, uint32_t i)
{
	struct rp_entry *e = &t->e[i];

	if (e->prev != NIL)
		t->e[e->prev].next = e->next;
	else
		t->head = e->next;
	if (e->next != NIL)
		t->e[e->next].prev = e->prev;
	else
		t->tail = e->prev;
}

static void lru_push_front(struct noise_replay *t, uint32_t i)
{
	struct rp_entry *e = &t->e[i];

	e->prev = NIL;
	e->next = t->head;
	if (t->head != NIL)
		t->e[t->head].prev = i;
	t->head = i;
	if (t->tail == NIL)
		t->tail = i;
}

static void chain_unlink(struct noise_replay *t, uint32_t i)
{
	uint32_t *p = &t->buckets[t->e[i].bucket];

	while (*p != i)
		p = &t->e[*p].chain;
	*p = t->e[i].chain;
}

static void echain_unlink(struct noise_replay *t, uint32_t i)
{
	uint32_t *p = &t->ebuckets[t->e[i].ebucket];

	if (!t->e[i].has_eph)
		return;
	while (*p != i)
		p = &t->e[*p].echain;
	*p = t->e[i].echain;
	t->e[i].has_eph = false;
}

bool noise_replay_seen_ephemeral(const struct noise_replay *t,
				 const uint8_t eph[NOISE_KEY_LEN])
{
	uint32_t i;

	if (!t || !t->capacity)
		return false;
	for (i = t->ebuckets[(uint32_t)t->hash(eph, NOISE_KEY_LEN) & t->mask]; i != NIL;
	     i = t->e[i].echain)
		if (!memcmp(t->e[i].eph, eph, NOISE_KEY_LEN))
			return true;
	return false;
}

bool noise_replay_seen(const struct noise_replay *t, const uint8_t key[NOISE_KEY_LEN],
		       const uint8_t tai[NOISE_TAI64N_LEN])
{
	uint32_t i;

	if (!t || !t->capacity)
		return false;
	i = find(t, (uint32_t)t->hash(key, NOISE_KEY_LEN) & t->mask, key);
	/* big-endian fields: byte order is numeric order */
	return i != NIL && memcmp(tai, t->e[i].tai, NOISE_TAI64N_LEN) <= 0;
}

void noise_replay_record(struct noise_replay *t, const uint8_t key[NOISE_KEY_LEN],
			 const uint8_t tai[NOISE_TAI64N_LEN])
{
	noise_replay_record_initiation(t, key, tai, NULL);
}

void noise_replay_record_initiation(struct noise_replay *t,
				    const uint8_t key[NOISE_KEY_LEN],
				    const uint8_t tai[NOISE_TAI64N_LEN],
				    const uint8_t eph[NOISE_KEY_LEN])
{
	uint32_t b, i;

	if (!t || !t->capacity)
		return;
	b = (uint32_t)t->hash(key, NOISE_KEY_LEN) & t->mask;
	i = find(t, b, key);
	if (i != NIL) {
		lru_unlink(t, i);
	} else {
		if (t->size < t->capacity) {
			i = t->size++;
		} else {
			i = t->tail;
			lru_unlink(t, i);
			chain_unlink(t, i);
			echain_unlink(t, i);
			t->evictions++;
		}
		memset(&t->e[i], 0, sizeof(t->e[i]));
		memcpy(t->e[i].key, key, NOISE_KEY_LEN);
		t->e[i].bucket = b;
		t->e[i].chain = t->buckets[b];
		t->buckets[b] = i;
	}
	if (memcmp(tai, t->e[i].tai, NOISE_TAI64N_LEN) > 0) {
		memcpy(t->e[i].tai, tai, NOISE_TAI64N_LEN);
		echain_unlink(t, i);
		if (eph) {
			memcpy(t->e[i].eph, eph, NOISE_KEY_LEN);
			t->e[i].ebucket = (uint32_t)t->hash(eph, NOISE_KEY_LEN) & t->mask;
			t->e[i].echain = t->ebuckets[t->e[i].ebucket];
			t->ebuckets[t->e[i].ebucket] = i;
			t->e[i].has_eph = true;
		}
	}
	lru_push_front(t, i);
}
