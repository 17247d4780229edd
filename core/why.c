// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * `wggwd ctl why KEY`: the last outcomes of items, a small ring per key
 * (the most recently seen WHY_KEYS keys) and one ring overall. Keys are
 * chosen by outside senders: the table is keyed with the core's SipHash
 * and bounded (the least recently seen key makes room).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ctl.h"

#define WHY_PER_KEY 8
#define WHY_KEYS 4096
#define WHY_BUCKETS 4096
#define WHY_ALL 256

struct why_key {
	uint8_t key[WGGWD_KEY_LEN];
	struct why_key *hnext;
	struct why_key *prev, *next; /* least recently used first */
	unsigned n, at;              /* entries, next slot */
	struct why_ent ring[WHY_PER_KEY];
};

static struct why_key *buckets[WHY_BUCKETS];
static struct why_key *lru_head, *lru_tail;
static size_t n_keys;
static struct why_ent all[WHY_ALL];
static unsigned all_n, all_at;

static const char *const verdicts[] = { "continue", "drop", "pending", "done", "error" };

const char *verdict_name(int v)
{
	return v >= 0 && v < (int)ARRAY_SIZE(verdicts) ? verdicts[v] : "?";
}

static void lru_unlink(struct why_key *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		lru_head = k->next;
	if (k->next)
		k->next->prev = k->prev;
	else
		lru_tail = k->prev;
	k->prev = k->next = NULL;
}

static void lru_push(struct why_key *k)
{
	k->prev = lru_tail;
	k->next = NULL;
	if (lru_tail)
		lru_tail->next = k;
	else
		lru_head = k;
	lru_tail = k;
}

static struct why_key **find(const uint8_t *key)
{
	struct why_key **pp = &buckets[core_hash(key, WGGWD_KEY_LEN) % WHY_BUCKETS];

	while (*pp && memcmp((*pp)->key, key, WGGWD_KEY_LEN))
		pp = &(*pp)->hnext;
	return pp;
}

static struct why_key *key_get(const uint8_t *key)
{
	struct why_key **pp = find(key), *k = *pp;

	if (k) {
		lru_unlink(k);
		lru_push(k);
		return k;
	}
	if (n_keys >= WHY_KEYS) { /* the least recently seen key makes room */
		struct why_key **op;

		k = lru_head;
		op = find(k->key);
		*op = k->hnext;
		lru_unlink(k);
		memset(k, 0, sizeof(*k));
		pp = find(key);
	} else {
		k = calloc(1, sizeof(*k));
		if (!k)
			return NULL;
		n_keys++;
	}
	memcpy(k->key, key, WGGWD_KEY_LEN);
	k->hnext = *pp;
	*pp = k;
	lru_push(k);
	return k;
}

void why_record(const uint8_t *key, uint64_t rx_real_ns, const char *pipeline,
		const char *stage, int verdict, const struct wggwd_item *it)
{
	struct why_ent e = { 0 };
	struct why_key *k;

	e.real_ns = rx_real_ns ? rx_real_ns : now_real_ns();
	if (key) {
		memcpy(e.key, key, WGGWD_KEY_LEN);
		e.has_key = true;
	}
	e.verdict = verdict;
	e.op = it->op;
	e.reason = verdict == WGGWD_CONTINUE && it->op == WGGWD_OP_ADD ? 0 : it->reason;
	e.flags = it->flags;
	snprintf(e.pipeline, sizeof(e.pipeline), "%s", pipeline);
	snprintf(e.stage, sizeof(e.stage), "%s", stage ? stage : "");
	if (it->detail)
		snprintf(e.detail, sizeof(e.detail), "%s", it->detail);
	all[all_at] = e;
	all_at = (all_at + 1) % WHY_ALL;
	if (all_n < WHY_ALL)
		all_n++;
	if (!key || !(k = key_get(key)))
		return;
	k->ring[k->at] = e;
	k->at = (k->at + 1) % WHY_PER_KEY;
	if (k->n < WHY_PER_KEY)
		k->n++;
}

size_t why_get(const uint8_t *key, struct why_ent *out, size_t max)
{
	const struct why_ent *ring = all;
	unsigned n = all_n, at = all_at, size = WHY_ALL;
	struct why_key *k;
	size_t i;

	if (key) {
		k = *find(key);
		if (!k)
			return 0;
		ring = k->ring;
		n = k->n;
		at = k->at;
		size = WHY_PER_KEY;
	}
	for (i = 0; i < n && i < max; i++)
		out[i] = ring[(at + size - 1 - i) % size];
	return i;
}

json_t *why_ent_json(const struct why_ent *e)
{
	json_t *o = json_object();
	char b64[64], t[40];

	snprintf(t, sizeof(t), "%llu.%06llu", (unsigned long long)(e->real_ns / 1000000000ull),
		 (unsigned long long)(e->real_ns % 1000000000ull / 1000));
	json_object_set_new(o, "time", json_real((double)e->real_ns / 1e9));
	json_object_set_new(o, "time_text", json_string(t));
	if (e->has_key) {
		key_format(e->key, b64, sizeof(b64));
		json_object_set_new(o, "key", json_string(b64));
	}
	json_object_set_new(o, "pipeline", json_string(e->pipeline));
	json_object_set_new(o, "stage", json_string(e->stage));
	json_object_set_new(o, "op", json_string(e->op == WGGWD_OP_REMOVE ? "remove" : "add"));
	json_object_set_new(o, "verdict", json_string(verdict_name(e->verdict)));
	if (e->reason)
		json_object_set_new(o, "reason", json_string(reason_name(e->reason)));
	if (e->detail[0])
		json_object_set_new(o, "detail", json_string(e->detail));
	if (e->flags & WGGWD_ITEM_CACHED)
		json_object_set_new(o, "cached", json_true());
	if (e->flags & WGGWD_ITEM_UNCHANGED)
		json_object_set_new(o, "unchanged", json_true());
	return o;
}

void why_reset(void)
{
	struct why_key *k, *n;

	for (k = lru_head; k; k = n) {
		n = k->next;
		free(k);
	}
	lru_head = lru_tail = NULL;
	memset(buckets, 0, sizeof(buckets));
	n_keys = 0;
	all_n = all_at = 0;
}

int key_parse(const char *b64, uint8_t key[WGGWD_KEY_LEN])
{
	size_t len = 0;

	if (!b64 || sodium_base642bin(key, WGGWD_KEY_LEN, b64, strlen(b64), NULL, &len,
				      NULL, sodium_base64_VARIANT_ORIGINAL) ||
	    len != WGGWD_KEY_LEN)
		return -EINVAL;
	return 0;
}

void key_format(const uint8_t key[WGGWD_KEY_LEN], char *b64, size_t len)
{
	sodium_bin2base64(b64, len, key, WGGWD_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}
