// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: the lookup cache. Replayed initiations are dropped, known
 * keys answered (positive entries: resolvers' answers until their ttl,
 * pushed peers until removed), known-unknown keys dropped (negative
 * entries), and each key's lookups counted against lookups_per_key. What
 * a resolver answers is kept; what a removal means for it is decided here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* Is the item's initiation a replay: not newer than the newest timestamp
 * kept for its key? */
static bool replayed(struct ctx *c, const struct wggwd_item *it)
{
	const struct pend *e = batch_find(c, it->public_key);
	uint8_t last[12];
	int have;

	if (!(it->flags & WGGWD_ITEM_HAS_TIMESTAMP))
		return false;
	if (e && (e->what & P_STAMP)) {
		memcpy(last, e->tai64n, sizeof(last));
		have = 1;
	} else {
		have = row_get1(c, S_STAMP_GET, it->public_key, NULL, NULL, last, sizeof(last));
	}
	if (have != 1 || memcmp(it->tai64n, last, sizeof(last)) > 0)
		return false;
	(*c->c[C_REPLAY])++;
	return true;
}

/* Keep the item's timestamp as its key's newest (batched). */
static void stamp_put(struct ctx *c, const struct wggwd_item *it)
{
	struct pend *e;

	if (!(it->flags & WGGWD_ITEM_HAS_TIMESTAMP))
		return;
	e = batch_get(c, it->public_key);
	memcpy(e->tai64n, it->tai64n, sizeof(e->tai64n));
	e->stamp_seen = store_now_ms(c);
	e->what |= P_STAMP;
}

/*
 * The cache role (lookup, before the resolver); `only_answer`: no
 * resolver in the pipeline, the store's answer is the only one.
 *
 * Replays are dropped first, but a timestamp is kept only for a key that
 * resolved (a hit here, or the resolver's answer: cache_stamp). An
 * unknown key is refused anyway, and anyone who knows the gateway's
 * public key can mint keys: a row each would fill the disk.
 */
int cache_lookup(struct ctx *c, struct wggwd_item *it, bool only_answer)
{
	const uint8_t *key = it->public_key;
	int64_t now = store_now_ms(c), a = 0, b = 0;
	struct pend *e;
	struct row r;

	if (replayed(c, it)) {
		it->reason = WGGWD_R_REPLAY;
		return WGGWD_DROP;
	}
	row_get(c, key, &r, it);
	if (r.found && !r.removed && r.origin != WGGWD_ORIGIN_NONE &&
	    (!r.has_expires || r.expires > now) && (!r.has_lease || r.lease > now / 1000)) {
		if (r.has_expires) {
			it->peer->ttl_s = (uint32_t)((r.expires - now + 999) / 1000);
			it->peer->has |= WGGWD_PEER_HAS_TTL;
		}
		it->flags |= WGGWD_ITEM_CACHED;
		(*c->c[C_HIT])++;
		stamp_put(c, it);
		goto out;
	}
	peer_clear(it->peer);
	/* known from before (an expired answer, a lease over, a handshake
	 * seen): no stranger, so resolvers serve it before fresh keys */
	if ((r.found && !r.removed && r.origin != WGGWD_ORIGIN_NONE) || r.hs)
		it->flags |= WGGWD_ITEM_RETURNING;
	if (only_answer) {
		/* the store is the authority (lazy push): a miss is an unknown
		 * key, asked of no one and remembered nowhere (a fresh-key
		 * flood costs two reads a key, and no row) */
		(*c->c[C_MISS])++;
		it->reason = WGGWD_R_UNKNOWN_KEY;
		return WGGWD_DROP;
	}

	e = batch_find(c, key);
	if (e && (e->what & (P_NEG | P_NEG_DEL)))
		a = e->what & P_NEG ? e->neg_expires : 0;
	else if (row_get1(c, S_NEG_GET, key, &a, NULL, NULL, 0) != 1)
		a = 0;
	if (a > now) {
		(*c->c[C_NEG_HIT])++;
		it->reason = WGGWD_R_UNKNOWN_CACHED;
		return WGGWD_DROP;
	}
	if (c->conf->lookups_per_key) {
		if (e && (e->what & P_RL)) {
			a = e->rl_win;
			b = e->rl_count;
		} else if (row_get1(c, S_RL_GET, key, &a, &b, NULL, 0) != 1) {
			a = b = 0;
		}
		if (a + c->conf->lookup_window_ms <= now || a > now) {
			a = now; /* a new window */
			b = 0;
		}
		if (b >= c->conf->lookups_per_key) {
			(*c->c[C_RATE_LIMITED])++;
			it->reason = WGGWD_R_RATE_LIMITED;
			return WGGWD_DROP;
		}
		e = batch_get(c, key);
		e->rl_win = a;
		e->rl_count = b + 1;
		e->what |= P_RL;
	}
	(*c->c[C_MISS])++;
out:
	batch_added(c);
	return WGGWD_CONTINUE;
}

/* The resolver answered a key our lookup missed: the key is known, so its
 * timestamp is kept from now on. Checked again first: another initiation
 * of the key may have resolved since our lookup. */
int cache_stamp(struct ctx *c, struct wggwd_item *it)
{
	if (!(it->flags & WGGWD_ITEM_HAS_TIMESTAMP) || !(it->type & WGGWD_MSG_PEER_KEY))
		return WGGWD_CONTINUE;
	if (replayed(c, it)) {
		it->reason = WGGWD_R_REPLAY;
		return WGGWD_DROP;
	}
	stamp_put(c, it);
	batch_added(c);
	return WGGWD_CONTINUE;
}

/* A resolver's answer: keep it (until its ttl) for the next handshakes.
 * Failing to keep it is no reason to refuse it: always CONTINUE. */
int cache_keep(struct ctx *c, struct wggwd_item *it)
{
	struct wggwd_peer *p = it->peer;
	struct wggwd_allowed_ip *allowed = NULL;
	uint32_t n;
	int64_t ttl_ms;
	struct pend *e;
	struct row r;

	if (it->flags & WGGWD_ITEM_CACHED)
		return WGGWD_CONTINUE; /* a store's answer already */
	if (!(it->type & WGGWD_MSG_PEER) ||
	    !(p->has & (WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS)))
		return WGGWD_CONTINUE; /* no answer to keep */
	if (!(p->has & WGGWD_PEER_HAS_PUBLIC_KEY)) {
		memcpy(p->public_key, it->public_key, WGGWD_KEY_LEN);
		p->has |= WGGWD_PEER_HAS_PUBLIC_KEY;
	}
	if (p->origin != WGGWD_ORIGIN_STATIC)
		p->origin = WGGWD_ORIGIN_PULL;
	ttl_ms = p->has & WGGWD_PEER_HAS_TTL ? (int64_t)p->ttl_s * 1000 : c->conf->ttl_ms;
	if (ttl_ms <= 0)
		return WGGWD_CONTINUE; /* not to be cached */
	/* a pushed config, or a pushed removal kept for its version, is
	 * the control plane's word: a pulled answer does not replace it */
	row_get(c, p->public_key, &r, NULL);
	if (r.found && r.origin == WGGWD_ORIGIN_PUSH)
		return WGGWD_CONTINUE;
	n = p->has & WGGWD_PEER_HAS_ALLOWED_IPS ? p->n_allowed : 0;
	if (n && !(allowed = malloc((size_t)n * sizeof(*allowed))))
		goto nomem;
	e = batch_get(c, p->public_key);
	if (!e->pp && !(e->pp = calloc(1, sizeof(*e->pp)))) {
		free(allowed);
		goto nomem;
	}
	free(e->pp->peer.allowed);
	e->pp->peer = *p; /* our part of the host's struct; the array is ours */
	e->pp->peer.size = sizeof(e->pp->peer);
	e->pp->peer.allowed = allowed;
	e->pp->peer.n_allowed = n;
	if (n)
		memcpy(allowed, p->allowed, (size_t)n * sizeof(*allowed));
	/* where a pulled peer's packet came from is not config: not kept */
	e->pp->peer.has &= ~WGGWD_PEER_HAS_ENDPOINT;
	memset(&e->pp->peer.endpoint, 0, sizeof(e->pp->peer.endpoint));
	e->pp->expires = store_now_ms(c) + ttl_ms;
	e->what = (e->what | P_PEER | P_NEG_DEL) & ~(P_NEG | P_FORGET);
	(*c->c[C_SAVED])++;
	batch_added(c);
	return WGGWD_CONTINUE;
nomem:
	(*c->c[C_WRITE_ERRORS])++;
	batch_added(c);
	return WGGWD_CONTINUE;
}

/* A resolver said it does not know the key: remember that for a while. */
void cache_negative(struct ctx *c, struct wggwd_item *it)
{
	struct pend *e;

	if (c->conf->negative_ttl_ms <= 0)
		return;
	e = batch_get(c, it->public_key);
	e->neg_expires = store_now_ms(c) + c->conf->negative_ttl_ms;
	e->what = (e->what | P_NEG) & ~P_NEG_DEL;
	(*c->c[C_NEG_SAVED])++;
	batch_added(c);
}

static void forget(struct ctx *c, const uint8_t *key)
{
	struct pend *e = batch_get(c, key);

	if (e->what & P_PEER) {
		pulled_free(e->pp);
		e->pp = NULL;
	}
	e->what = (e->what | P_FORGET) & ~(P_PEER | P_LIVE);
	(*c->c[C_FORGOTTEN])++;
	batch_added(c);
}

/*
 * A removal (op REMOVE) on its way to the installer, other than a pushed
 * one (push.c). What it means for the store depends on why. A pushed
 * peer is the control plane's word and changes only by a push, which
 * carries a version: nothing here deletes one. For a resolver's answer:
 */
int cache_removal(struct ctx *c, struct wggwd_item *it)
{
	switch (it->reason) {
	case WGGWD_R_IDLE:
	case WGGWD_R_GRACE:
	case WGGWD_R_MAX_PEERS:
	case WGGWD_R_CLOSED:
		/* evicted, not refused: the client may come back, and the
		 * answer is still good (until its ttl), so its next handshake
		 * is a cache hit rather than a lookup. Kept. */
		(*c->c[C_KEPT])++;
		break;
	case WGGWD_R_RECONCILE:
		/* our own reconcile asked for it: the key is unknown to the
		 * store, or a pushed removal's tombstone. Nothing to change. */
		break;
	case WGGWD_R_REVOKED: {
		char b64[WG_KEY_B64_LEN];

		/* the control plane no longer knows the key (or the policy
		 * refuses its answer): the core removes it at once */
		wg_key_to_b64(b64, item_key(it));
		c->host->log_limited(c->self, WGGWD_LOG_INFO,
				     "peer %s: revoked (the control plane no longer gives it); its cached answer dropped",
				     b64);
		(*c->c[C_REVOKED])++;
		forget(c, item_key(it));
		break;
	}
	case WGGWD_R_EXPIRED:
	case WGGWD_R_OPERATOR:
	default:
		/* the answer is no longer good (revoked, its lease over, an
		 * operator's decision, or a reason newer than this store):
		 * forget it, so the next handshake asks the resolver again;
		 * at worst that costs one lookup */
		forget(c, item_key(it));
		break;
	}
	return WGGWD_CONTINUE;
}
