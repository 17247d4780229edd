// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: what becomes of an installed peer after its install.
 *
 * Every revalidate_interval the installer lists its peers, and for each of
 * ours, a slice per loop turn:
 *
 *  - a pulled peer whose cached answer expired is asked about again: an
 *    item with the key (REVALIDATE, INVERT) is injected before the
 *    resolver, at most revalidate_batch per sweep, within the resolver's
 *    budget. A fresh answer is kept as usual and the installer updates the
 *    peer in place (or finds it unchanged); an answer of unknown, or one
 *    the policy refuses, makes the core revoke the peer (this store then
 *    drops the answer, cache.c). A control plane that cannot be asked
 *    leaves the peer in place, at most max_stale after its answer expired:
 *    then it is retired (reason unverified). Its re-handshakes, which the
 *    sniffer sees, are asked about too (a cache miss);
 *  - a peer whose lease is over is retired (reason expired) if it is still
 *    there (the install engine removes it at expiry itself);
 *  - a pulled peer's endpoint and last handshake are kept (batched), and
 *    on removals too (ops.removed), so that after a restart a client whose
 *    session is still live (a handshake less than LIVE_S old) is
 *    re-installed at once with role inversion (live_restore, from the
 *    start-up reconcile): the gateway initiates, and the client, which
 *    would otherwise send into a session the interface no longer has for
 *    up to 15 s before it initiates again, is back at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define LEASE_GRACE_S 2 /* the installer's own lease timer goes first */

static bool has_addr(const union wggwd_sockaddr *a)
{
	return a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6;
}

/* Keep a pulled peer's last endpoint and handshake (batched). */
void live_put(struct ctx *c, const uint8_t *key, const union wggwd_sockaddr *ep, int64_t hs)
{
	struct pend *e = batch_get(c, key);

	e->live_hs = hs;
	if (has_addr(ep))
		e->live_ep = *ep;
	e->what |= P_LIVE;
	batch_added(c);
}

/* A peer left the interface (ops.removed): if it was evicted, where and
 * when it was last seen, for a fast return after a restart. */
void live_removed(struct ctx *c, const struct wggwd_item *it)
{
	const struct wggwd_peer *p = it->peer;

	switch (it->reason) {
	case WGGWD_R_IDLE:
	case WGGWD_R_GRACE:
	case WGGWD_R_MAX_PEERS:
	case WGGWD_R_CLOSED:
		break;
	default:
		return; /* the answer is gone, or not ours */
	}
	if (!WGGWD_HAS(p, struct wggwd_peer, last_handshake_sec) ||
	    !(p->has & WGGWD_PEER_HAS_HANDSHAKE) || !p->last_handshake_sec)
		return;
	live_put(c, item_key(it), p->has & WGGWD_PEER_HAS_ENDPOINT ? &p->endpoint : &it->endpoint,
		 p->last_handshake_sec);
}

static void log_key(struct ctx *c, int level, const uint8_t *key, const char *what)
{
	char b64[WG_KEY_B64_LEN];

	wg_key_to_b64(b64, key);
	c->host->log_limited(c->self, level, "peer %s: %s", b64, what);
}

static void retire(struct ctx *c, const uint8_t *key, uint32_t reason)
{
	int ret = c->host->retire(c->self, key, reason);

	if (ret) {
		log_key(c, WGGWD_LOG_WARN, key, "cannot be removed");
		return;
	}
	(*c->c[reason == WGGWD_R_UNVERIFIED ? C_UNVERIFIED : C_LEASE_EXPIRED])++;
	log_key(c, WGGWD_LOG_INFO, key, reason == WGGWD_R_UNVERIFIED ?
		"removed: its answer expired and the control plane could not be asked for max_stale (unverified)" :
		"removed: its lease is over");
}

/* Ask the resolver about an installed key again. */
static void revalidate(struct ctx *c, const struct live_peer *lp)
{
	struct wggwd_item *it;

	if (c->inject_role != ROLE_CACHE || c->revalidate_left <= 0)
		return;
	it = c->host->item_new(c->self);
	if (!it)
		return;
	it->type = WGGWD_MSG_PEER_KEY;
	it->op = WGGWD_OP_ADD;
	it->transport = WGGWD_TR_UDP;
	it->flags = WGGWD_ITEM_REVALIDATE | WGGWD_ITEM_INVERT;
	memcpy(it->public_key, lp->key, WGGWD_KEY_LEN);
	if (has_addr(&lp->endpoint)) {
		/* where the peer is now (kept as it is), and whose budget the
		 * lookup is charged to */
		it->endpoint = lp->endpoint;
		it->src = lp->endpoint;
	}
	it->rx_realtime_ns = c->host->realtime_ns();
	if (c->host->inject(c->self, it, WGGWD_INJECT_LOOKUP)) /* frees it on failure */
		return;
	c->revalidate_left--;
	(*c->c[C_REVALIDATIONS])++;
}

/* One of our peers on the interface. */
static void look_at(struct ctx *c, const struct live_peer *lp, int64_t now_ms)
{
	bool pulled = lp->origin == WGGWD_ORIGIN_PULL || lp->origin == WGGWD_ORIGIN_STATIC;
	struct row r;

	if (row_get(c, lp->key, &r, NULL))
		return;
	if (r.found && !r.removed && r.has_lease && r.lease + LEASE_GRACE_S <= now_ms / 1000) {
		/* the install engine removes at expiry; this is for an
		 * installer that did not */
		retire(c, lp->key, WGGWD_R_EXPIRED);
		return;
	}
	if (!pulled)
		return;
	if (!r.found || r.removed || r.origin == WGGWD_ORIGIN_PUSH || r.origin == WGGWD_ORIGIN_NONE) {
		/* no answer kept (its ttl was 0, or it was purged): ask
		 * again, but there is nothing to measure max_stale from */
		if (!r.found && c->conf->ttl_ms)
			revalidate(c, lp);
		return;
	}
	if (lp->hs && lp->hs != r.hs)
		live_put(c, lp->key, &lp->endpoint, lp->hs);
	if (!r.has_expires || r.expires > now_ms)
		return; /* its answer is still good */
	if (now_ms >= r.expires + c->conf->max_stale_ms) {
		retire(c, lp->key, WGGWD_R_UNVERIFIED);
		return;
	}
	revalidate(c, lp);
}

static bool reassert_slice(struct ctx *c);

static void live_slice(void *arg)
{
	struct ctx *c = arg;
	int64_t now = store_now_ms(c);
	size_t end = c->lp_n - c->lp_at > LIVE_SLICE ? c->lp_at + LIVE_SLICE : c->lp_n;

	if (c->stopping || !c->db)
		return;
	if (c->ra.n) {
		if (reassert_slice(c))
			c->host->timer_start(c->live_pump, 0, 0);
		return;
	}
	for (; c->lp_at < end; c->lp_at++)
		look_at(c, &c->lp[c->lp_at], now);
	if (c->lp_at < c->lp_n) {
		c->host->timer_start(c->live_pump, 0, 0);
		return;
	}
	free(c->lp);
	c->lp = NULL;
	c->lp_n = c->lp_at = 0;
}

static void on_dump(void *arg, int status, const struct wggwd_peer_state *peers, size_t n,
		    size_t stride)
{
	struct ctx *c = arg;
	size_t i, k = 0;

	c->live_dumping = false;
	if (c->stopping || status || !n)
		return;
	c->lp = calloc(n, sizeof(*c->lp));
	if (!c->lp)
		return; /* the next sweep tries again */
	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *ps = WGGWD_AT(const struct wggwd_peer_state, peers,
							     i, stride);
		struct live_peer *lp = &c->lp[k];

		if (ps->origin == WGGWD_ORIGIN_NONE)
			continue; /* not ours */
		memcpy(lp->key, ps->public_key, WGGWD_KEY_LEN);
		lp->origin = ps->origin;
		lp->endpoint = ps->endpoint;
		lp->hs = ps->last_handshake_sec;
		k++;
	}
	c->lp_n = k;
	c->lp_at = 0;
	c->revalidate_left = c->conf->revalidate_batch;
	live_slice(c);
}

void live_on_timer(void *arg)
{
	struct ctx *c = arg;
	const struct wggwd_installer *ins = c->host->installer(c->self);

	/* one sweep at a time, and not before the start-up reconcile is done */
	if (c->stopping || !c->db || c->live_dumping || c->lp || c->ra.n || c->rc_state != RC_NONE ||
	    !ins || !ins->ops->dump)
		return;
	c->live_dumping = true;
	if (ins->ops->dump(ins->ctx, on_dump, c))
		c->live_dumping = false;
}

/*
 * After a restart: pulled peers missing from the interface whose session
 * is still live (the reconcile found them). Re-installed at once with role
 * inversion at their last endpoint: from the answer kept if it is still
 * good, else through the resolver (a cache may ask).
 */
void live_restore(struct ctx *c, const struct keyvec *keys)
{
	int64_t now = store_now_ms(c);
	size_t i;

	for (i = 0; i < keys->n; i++) {
		const uint8_t *key = keys->k[i];
		struct wggwd_item *it = c->host->item_new(c->self);
		uint32_t how = 0;
		struct row r;

		if (!it)
			return;
		if (row_get(c, key, &r, it) || !r.found || r.removed || !has_addr(&r.last_ep) ||
		    (r.origin != WGGWD_ORIGIN_PULL && r.origin != WGGWD_ORIGIN_STATIC) ||
		    (r.has_lease && r.lease <= now / 1000) || r.hs + LIVE_S <= now / 1000) {
			c->host->item_free(c->self, it);
			continue;
		}
		it->op = WGGWD_OP_ADD;
		it->transport = WGGWD_TR_UDP;
		it->flags = WGGWD_ITEM_INVERT;
		memcpy(it->public_key, key, WGGWD_KEY_LEN);
		it->endpoint = r.last_ep;
		it->src = r.last_ep;
		it->rx_realtime_ns = c->host->realtime_ns();
		if (!r.has_expires || r.expires > now) {
			it->type = WGGWD_MSG_PEER_KEY | WGGWD_MSG_PEER;
			it->flags |= WGGWD_ITEM_CACHED;
		} else if (c->inject_role == ROLE_CACHE && now < r.expires + c->conf->max_stale_ms) {
			peer_clear(it->peer); /* expired: ask again */
			it->type = WGGWD_MSG_PEER_KEY;
			how = WGGWD_INJECT_LOOKUP;
		} else {
			c->host->item_free(c->self, it);
			continue;
		}
		if (c->host->inject(c->self, it, how)) /* frees it on failure */
			continue;
		(*c->c[C_RESTORED_LIVE])++;
	}
	if (*c->c[C_RESTORED_LIVE])
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "%llu pulled peers with a live session re-installed at once (role inversion)",
			     (unsigned long long)*c->c[C_RESTORED_LIVE]);
}

/*
 * After a restart the installer finds our peers on the interface but not
 * whose they are. Those the store holds as pulled, or with a lease, are
 * named to it again (their stored config, injected after the store: found
 * unchanged, nothing is set), so that it knows them as ours (revalidation
 * and revocation apply) and enforces their lease, or removes them at once
 * if it is over. A slice per loop turn.
 */
static bool reassert_slice(struct ctx *c)
{
	size_t end = c->ra.n - c->ra_at > INJECT_SLICE ? c->ra_at + INJECT_SLICE : c->ra.n;

	for (; c->ra_at < end; c->ra_at++) {
		const uint8_t *key = c->ra.k[c->ra_at];
		struct wggwd_item *it = c->host->item_new(c->self);
		struct row r;

		if (!it)
			break;
		if (row_get(c, key, &r, it) || !r.found || r.removed ||
		    r.origin == WGGWD_ORIGIN_NONE) {
			c->host->item_free(c->self, it);
			continue;
		}
		it->op = WGGWD_OP_ADD;
		it->type = WGGWD_MSG_PEER_KEY | WGGWD_MSG_PEER;
		it->flags = WGGWD_ITEM_CACHED;
		/* no transport: the stored config (and its origin) as it is */
		memcpy(it->public_key, key, WGGWD_KEY_LEN);
		it->rx_realtime_ns = c->host->realtime_ns();
		if (c->host->inject(c->self, it, 0)) /* frees it on failure */
			break;
		(*c->c[C_REASSERTED])++;
	}
	if (c->ra_at < end || c->ra_at == c->ra.n) {
		free(c->ra.k);
		memset(&c->ra, 0, sizeof(c->ra));
		c->ra_at = 0;
		return false;
	}
	return true;
}

void live_reassert(struct ctx *c, struct keyvec *keys)
{
	if (!keys->n || c->ra.n)
		return;
	c->ra = *keys; /* ours now */
	memset(keys, 0, sizeof(*keys));
	c->ra_at = 0;
	c->host->timer_start(c->live_pump, 0, 0);
}

void live_start(struct ctx *c)
{
	c->live_timer = c->host->timer_new(c->self, live_on_timer, c);
	c->live_pump = c->host->timer_new(c->self, live_slice, c);
	if (c->conf->revalidate_interval_ms)
		c->host->timer_start(c->live_timer, c->conf->revalidate_interval_ms,
				     c->conf->revalidate_interval_ms);
	if ((c->roles & ROLE_CACHE) && c->inject_role != ROLE_CACHE)
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "the first pipeline with an installer that this store is in is not its pull pipeline: installed peers whose answer expired are asked about again only when they re-handshake (list the pull pipeline first)");
}

void live_stop(struct ctx *c)
{
	c->host->timer_free(c->live_timer);
	c->host->timer_free(c->live_pump);
	c->live_timer = c->live_pump = NULL;
	free(c->lp);
	c->lp = NULL;
	c->lp_n = c->lp_at = 0;
	free(c->ra.k);
	memset(&c->ra, 0, sizeof(c->ra));
}
