// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: the push sink. Pushed configs and pushed removals are
 * acknowledged to the control plane once installed, so they are written
 * with synchronous=FULL (fsync) before the items go on: every pushed item
 * of a loop turn in one transaction (a group commit). An older version
 * than the one stored never wins; a removal is kept as a tombstone (with
 * its version) for tombstone_ttl, so a late older add cannot revive it.
 *
 * Lazy push (a push pipeline with no installer): the items stop at the
 * store, so once committed, what they change for a peer that is installed
 * is sent through the pipeline that has the installer: a removal is
 * retired (reason pushed: its tombstone is written already, so the store
 * lets that REMOVE pass), a new config re-installed (host->inject).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* Apply one pushed item inside the group's transaction; its verdict. */
static int push_apply(struct ctx *c, struct wggwd_item *it)
{
	struct wggwd_peer *p = it->peer;
	struct wggwd_peer tomb = { .size = sizeof(tomb) };
	bool remove = it->op == WGGWD_OP_REMOVE;
	char b64[WG_KEY_B64_LEN];
	struct row r;
	int ret;

	if (!(p->has & WGGWD_PEER_HAS_PUBLIC_KEY)) {
		if (!wg_key_is_zero(it->public_key)) {
			memcpy(p->public_key, it->public_key, WGGWD_KEY_LEN);
			p->has |= WGGWD_PEER_HAS_PUBLIC_KEY;
		} else {
			it->reason = WGGWD_R_NO_PUBLIC_KEY;
			return WGGWD_DROP;
		}
	}
	if (remove) {
		memcpy(tomb.public_key, p->public_key, WGGWD_KEY_LEN);
		tomb.has = WGGWD_PEER_HAS_PUBLIC_KEY | (p->has & WGGWD_PEER_HAS_VERSION);
		tomb.version = p->version;
	}
	/* the version check and the write in one statement */
	ret = row_push(c, remove ? &tomb : p, remove);
	if (ret < 0) {
		it->reason = WGGWD_R_STORE_WRITE;
		return WGGWD_ERROR;
	}
	if (ret) {
		row_get(c, p->public_key, &r, NULL);
		wg_key_to_b64(b64, p->public_key);
		c->host->log_limited(c->self, WGGWD_LOG_INFO,
				     "peer %s: pushed version %llu is older than the stored %llu; ignored",
				     b64, (unsigned long long)p->version,
				     (unsigned long long)r.version);
		(*c->c[C_STALE])++;
		it->reason = WGGWD_R_STALE;
		return WGGWD_DONE; /* nothing to do, not an error: it may be ACKed */
	}
	p->origin = WGGWD_ORIGIN_PUSH;
	(*c->c[remove ? C_REMOVED : C_SAVED])++;
	return WGGWD_CONTINUE;
}

/* Is the key on the interface of the pull pipeline (lazy push)? */
static bool installed(struct ctx *c, const uint8_t *key)
{
	const struct wggwd_installer *ins = c->host->installer(c->self);
	struct wggwd_peer_state ps = { .size = sizeof(ps) };

	return ins && ins->ops->peer && !ins->ops->peer(ins->ctx, key, &ps);
}

bool push_retired(const struct ctx *c, const struct wggwd_item *it)
{
	return c->lazy_push && it->reason == WGGWD_R_PUSHED &&
	       (it->flags & WGGWD_ITEM_INJECTED) && it->transport != WGGWD_TR_PUSH &&
	       !(it->peer->has & WGGWD_PEER_HAS_VERSION);
}

/* A committed pushed item, with no installer after the store: what it
 * changes for an installed peer goes through the pull pipeline now. */
static void push_lazy(struct ctx *c, const struct wggwd_item *in)
{
	const uint8_t *key = in->peer->public_key;
	struct wggwd_item *it;
	char b64[WG_KEY_B64_LEN];
	struct row r;
	int ret;

	if (!installed(c, key))
		return; /* installed from the store when it knocks */
	wg_key_to_b64(b64, key);
	if (in->op == WGGWD_OP_REMOVE) {
		ret = c->host->retire(c->self, key, WGGWD_R_PUSHED);
		if (!ret)
			(*c->c[C_LAZY_RETIRED])++;
		else
			c->host->log_limited(c->self, WGGWD_LOG_WARN,
					     "peer %s: pushed removal: cannot remove it from the interface: %s",
					     b64, strerror(-ret));
		return;
	}
	it = c->host->item_new(c->self);
	if (!it)
		return;
	row_get(c, key, &r, it);
	if (!r.found || r.removed || r.origin != WGGWD_ORIGIN_PUSH) {
		c->host->item_free(c->self, it);
		return;
	}
	/* no transport: the stored config (origin push) as it is, and not
	 * one of reconcile's re-installs (reconcile_reinstall) */
	it->type = WGGWD_MSG_PEER;
	it->op = WGGWD_OP_ADD;
	memcpy(it->public_key, key, WGGWD_KEY_LEN);
	ret = c->host->inject(c->self, it, 0); /* frees it on failure */
	if (!ret)
		(*c->c[C_LAZY_UPDATED])++;
	else
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "peer %s: pushed change: cannot update it on the interface: %s",
				     b64, strerror(-ret));
}

/* The group commit: every pushed item of this loop turn is written and
 * fsynced (synchronous=FULL) together, then they all go on. */
void push_flush(void *arg)
{
	struct ctx *c = arg;
	struct wggwd_item **q = c->push_q;
	size_t i, n = c->push_n;
	int *v, ret;

	c->push_armed = false;
	if (!n || wal_defer(c, false))
		return; /* ckpt_after() flushes them */
	c->push_q = NULL;
	c->push_n = c->push_cap = 0;
	v = calloc(n, sizeof(*v));
	/* the batch first (at NORMAL): reads below need no look at it, and
	 * a pulled answer waiting there cannot overwrite a pushed config */
	batch_commit(c, true);
	ret = v ? row_step(c, c->st[S_SYNC_FULL]) : -ENOMEM;
	if (!ret) {
		ret = row_step(c, c->st[S_BEGIN]);
		for (i = 0; !ret && i < n; i++) {
			v[i] = push_apply(c, q[i]);
			if (v[i] == WGGWD_ERROR)
				ret = -EIO; /* the transaction may be gone: fail them all */
		}
		if (!ret)
			ret = row_step(c, c->st[S_COMMIT]);
		if (ret && !sqlite3_get_autocommit(c->db))
			row_step(c, c->st[S_ROLLBACK]);
		row_step(c, c->st[S_SYNC_NORMAL]);
	}
	if (ret) {
		(*c->c[C_WRITE_ERRORS])++;
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "could not commit %zu pushed peers: %s (they are not acknowledged)",
			     n, strerror(-ret));
	} else {
		(*c->c[C_COMMITS])++;
	}
	for (i = 0; i < n; i++) {
		int verdict = ret ? WGGWD_ERROR : v[i];

		if (ret)
			q[i]->reason = WGGWD_R_STORE_WRITE;
		else if (verdict == WGGWD_CONTINUE && c->lazy_push && !c->push_installs)
			push_lazy(c, q[i]);
		c->host->complete(c->self, q[i], verdict);
	}
	free(v);
	free(q);
}

int push_enqueue(struct ctx *c, struct wggwd_item *it)
{
	if (c->push_n == c->push_cap) {
		size_t cap = c->push_cap ? c->push_cap * 2 : 64;
		struct wggwd_item **q = realloc(c->push_q, cap * sizeof(*q));

		if (!q) {
			it->reason = WGGWD_R_NO_MEMORY;
			return WGGWD_ERROR;
		}
		c->push_q = q;
		c->push_cap = cap;
	}
	c->push_q[c->push_n++] = it;
	if (!c->push_armed) {
		c->host->timer_start(c->push_timer, 0, 0);
		c->push_armed = true;
	}
	return WGGWD_PENDING;
}
