// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * A hash table of 32-byte keys (WireGuard public keys). Keys come from
 * outside (anyone can knock with any key), so they are hashed with the
 * host's keyed SipHash, never used as their own hash. Entries are the
 * caller's structs, of `ent_size` bytes, that begin with a struct wgt_ent.
 */
#ifndef WGGWD_WGTABLE_H
#define WGGWD_WGTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wggwd/plugin.h>

struct wgt_ent {
	struct wgt_ent *next;
	uint64_t hash;
	uint8_t key[WGGWD_KEY_LEN];
};

struct wgt {
	const struct wggwd_host *host;
	struct wgt_ent **b;
	size_t nb, n, ent_size;
	/* called on an entry before it is freed (wgt_del, wgt_sweep, wgt_free) */
	void (*fini)(void *arg, struct wgt_ent *e);
	void *arg;
};

int wgt_init(struct wgt *t, const struct wggwd_host *host, size_t ent_size);
void wgt_free(struct wgt *t);
void *wgt_get(const struct wgt *t, const uint8_t key[WGGWD_KEY_LEN]);
/* The entry of `key`, created zeroed (*created set) if absent; NULL: ENOMEM. */
void *wgt_put(struct wgt *t, const uint8_t key[WGGWD_KEY_LEN], bool *created);
/* Remove and free the entry of `key`, if any; true if there was one. */
bool wgt_del(struct wgt *t, const uint8_t key[WGGWD_KEY_LEN]);
/* Call fn on every entry; those it returns true for are removed and freed. */
void wgt_sweep(struct wgt *t, bool (*fn)(void *arg, struct wgt_ent *e), void *arg);
/* The same over `count` buckets from `from` (a sweep in slices, the loop
 * serving events between them); returns where the next slice starts,
 * t->nb when done. A table that grows meanwhile (it doubles: an entry of
 * bucket i moves to i or i + nb) may show an entry twice, never hides
 * one. */
size_t wgt_sweep_part(struct wgt *t, size_t from, size_t count,
		      bool (*fn)(void *arg, struct wgt_ent *e), void *arg);

#endif
