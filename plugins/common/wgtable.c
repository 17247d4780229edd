// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wgtable.h"

#define NB_MIN 256

int wgt_init(struct wgt *t, const struct wggwd_host *host, size_t ent_size)
{
	memset(t, 0, sizeof(*t));
	t->host = host;
	t->ent_size = ent_size;
	t->nb = NB_MIN;
	t->b = calloc(t->nb, sizeof(*t->b));
	return t->b ? 0 : -ENOMEM;
}

static void ent_free(struct wgt *t, struct wgt_ent *e)
{
	if (t->fini)
		t->fini(t->arg, e);
	free(e);
}

static bool all(void *arg, struct wgt_ent *e)
{
	(void)arg;
	(void)e;
	return true;
}

void wgt_free(struct wgt *t)
{
	if (t->b)
		wgt_sweep(t, all, NULL);
	free(t->b);
	t->b = NULL;
}

void *wgt_get(const struct wgt *t, const uint8_t key[WGGWD_KEY_LEN])
{
	uint64_t h = t->host->hash(key, WGGWD_KEY_LEN);
	struct wgt_ent *e;

	for (e = t->b[h & (t->nb - 1)]; e; e = e->next)
		if (e->hash == h && !memcmp(e->key, key, WGGWD_KEY_LEN))
			return e;
	return NULL;
}

static void grow(struct wgt *t)
{
	size_t nb = t->nb * 2, i;
	struct wgt_ent **b = calloc(nb, sizeof(*b)), *e, *n;

	if (!b)
		return; /* longer chains; still right */
	for (i = 0; i < t->nb; i++) {
		for (e = t->b[i]; e; e = n) {
			n = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

void *wgt_put(struct wgt *t, const uint8_t key[WGGWD_KEY_LEN], bool *created)
{
	struct wgt_ent *e = wgt_get(t, key);

	if (created)
		*created = !e;
	if (e)
		return e;
	e = calloc(1, t->ent_size);
	if (!e)
		return NULL;
	memcpy(e->key, key, WGGWD_KEY_LEN);
	e->hash = t->host->hash(key, WGGWD_KEY_LEN);
	if (t->n >= t->nb)
		grow(t);
	e->next = t->b[e->hash & (t->nb - 1)];
	t->b[e->hash & (t->nb - 1)] = e;
	t->n++;
	return e;
}

bool wgt_del(struct wgt *t, const uint8_t key[WGGWD_KEY_LEN])
{
	uint64_t h = t->host->hash(key, WGGWD_KEY_LEN);
	struct wgt_ent **pp, *e;

	for (pp = &t->b[h & (t->nb - 1)]; (e = *pp); pp = &e->next) {
		if (e->hash == h && !memcmp(e->key, key, WGGWD_KEY_LEN)) {
			*pp = e->next;
			t->n--;
			ent_free(t, e);
			return true;
		}
	}
	return false;
}

size_t wgt_sweep_part(struct wgt *t, size_t from, size_t count,
		      bool (*fn)(void *arg, struct wgt_ent *e), void *arg)
{
	struct wgt_ent **pp, *e;
	size_t i, end = from < t->nb && count < t->nb - from ? from + count : t->nb;

	for (i = from; i < end; i++) {
		for (pp = &t->b[i]; (e = *pp);) {
			if (!fn(arg, e)) {
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			t->n--;
			ent_free(t, e);
		}
	}
	return end;
}

void wgt_sweep(struct wgt *t, bool (*fn)(void *arg, struct wgt_ent *e), void *arg)
{
	wgt_sweep_part(t, 0, t->nb, fn, arg);
}
