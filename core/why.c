// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * `wggwd ctl why KEY`: the last outcomes of items, a small ring per key
 * (the most recently seen WHY_KEYS keys) and one ring overall. Keys are
 * chosen by outside senders: the table is keyed with the core's SipHash
 * and bounded (the least recently seen key makes room). A key's ring
 * grows as it is needed (1, 2, 4 ... WHY_PER_KEY entries): a flood of
 * fresh keys, each seen once, costs about 270 bytes a key, not the
 * 1.4 KB of a full ring (issue 14: daemon memory under a flood).
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
	unsigned n, at, cap;         /* entries, next slot, ring's size */
	struct why_ent *ring;        /* cap entries; full before it wraps */
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
		free(k->ring);
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

static int32_t us_of(uint64_t ns)
{
	return ns / 1000 > INT32_MAX ? INT32_MAX : (int32_t)(ns / 1000);
}

/* The item's time points, us from the source's read (-1: not reached),
 * and the wire to that read (the receive time is the kernel's). */
static void timeline(struct why_ent *e, const struct wggwd_item *it)
{
	static const int marks[] = { WGGWD_T_DECODED, WGGWD_T_RESOLVED, WGGWD_T_INSTALLED };
	uint64_t t0 = it->t[WGGWD_T_RX], wire;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(e->us); i++)
		e->us[i] = -1;
	for (i = 0; i < ARRAY_SIZE(marks); i++)
		if (t0 && it->t[marks[i]] >= t0)
			e->us[i] = us_of(it->t[marks[i]] - t0);
	if (t0 && it->rx_realtime_ns) { /* on the monotonic clock */
		wire = it->rx_realtime_ns - (now_real_ns() - now_mono_ns());
		if (wire <= t0)
			e->us[4] = us_of(t0 - wire);
	}
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
	strtrunc(e.pipeline, sizeof(e.pipeline), pipeline);
	strtrunc(e.stage, sizeof(e.stage), stage ? stage : "");
	if (it->detail)
		strtrunc(e.detail, sizeof(e.detail), it->detail);
	timeline(&e, it);
	all[all_at] = e;
	all_at = (all_at + 1) % WHY_ALL;
	if (all_n < WHY_ALL)
		all_n++;
	if (!key || !(k = key_get(key)))
		return;
	if (k->n == k->cap && !k->at && k->cap < WHY_PER_KEY) { /* full, oldest first */
		unsigned cap = k->cap ? k->cap * 2 : 1;
		struct why_ent *r = realloc(k->ring, cap * sizeof(*r));

		if (r) {
			k->ring = r;
			k->at = k->n;
			k->cap = cap;
		}
		if (!k->cap)
			return;
	}
	k->ring[k->at] = e;
	k->at = (k->at + 1) % k->cap;
	if (k->n < k->cap)
		k->n++;
}

/* An entry of ring (n entries, the next at `at`) seen at rx_real_ns. */
static void set_handshake(struct why_ent *ring, unsigned n, unsigned at, unsigned size,
			  const uint8_t *key, uint64_t rx_real_ns, uint64_t hs_real_ns)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		struct why_ent *e = &ring[(at + size - 1 - i) % size];

		if (e->real_ns == rx_real_ns && e->has_key &&
		    !memcmp(e->key, key, WGGWD_KEY_LEN) && e->us[2] >= 0) {
			e->us[3] = us_of(hs_real_ns > rx_real_ns ? hs_real_ns - rx_real_ns : 0);
			return;
		}
	}
}

void why_handshake(const uint8_t *key, uint64_t rx_real_ns, uint64_t hs_real_ns)
{
	struct why_key *k = *find(key);

	if (!rx_real_ns)
		return;
	set_handshake(all, all_n, all_at, WHY_ALL, key, rx_real_ns, hs_real_ns);
	if (k)
		set_handshake(k->ring, k->n, k->at, k->cap, key, rx_real_ns, hs_real_ns);
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
		size = k->cap;
	}
	for (i = 0; i < n && i < max; i++)
		out[i] = ring[(at + size - 1 - i) % size];
	return i;
}

/* "timeline": {"decoded_ms", "resolved_ms", "installed_ms" (from the
 * source's read), "handshake_ms" (from the wire: the client's wait),
 * "read_ms" (the wire to the source's read)}, the points it reached. */
static void timeline_json(json_t *o, const struct why_ent *e)
{
	static const char *const names[] = { "decoded_ms", "resolved_ms", "installed_ms",
					     "handshake_ms", "read_ms" };
	json_t *t = json_object();
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (e->us[i] >= 0)
			json_object_set_new(t, names[i], json_real(e->us[i] / 1000.0));
	if (json_object_size(t))
		json_object_set_new(o, "timeline", t);
	else
		json_decref(t);
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
	timeline_json(o, e);
	return o;
}

void why_reset(void)
{
	struct why_key *k, *n;

	for (k = lru_head; k; k = n) {
		n = k->next;
		free(k->ring);
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
