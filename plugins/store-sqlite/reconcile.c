// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: at start, the interface against the store. The installer
 * lists its peers (it may not be able to yet: we ask again, backing off);
 * the thread pool compares them with the store on the second connection;
 * then, on the loop: peers unknown to the store are ignored, adopted or
 * retired (unknown_peers), peers a push removed are retired, and pushed
 * peers missing from the interface are re-installed (host->inject), a
 * slice per loop turn. Retired peers go through the pipeline as REMOVE
 * items (reason RECONCILE); this store counts them in its done.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

static int keyvec_push(struct keyvec *v, const uint8_t *key)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		void *k = realloc(v->k, cap * WGGWD_KEY_LEN);

		if (!k)
			return -ENOMEM;
		v->k = k;
		v->cap = cap;
	}
	memcpy(v->k[v->n++], key, WGGWD_KEY_LEN);
	return 0;
}

void reconcile_free(struct reconcile *r)
{
	if (!r)
		return;
	free(r->dump.k);
	free(r->unknown.k);
	free(r->tomb.k);
	free(r->reinstall.k);
	free(r->live.k);
	free(r->reassert.k);
	free(r);
}

static int cmp_key(const void *a, const void *b)
{
	return memcmp(a, b, WGGWD_KEY_LEN);
}

static void rc_clear(struct ctx *c)
{
	reconcile_free(c->rc);
	c->rc = NULL;
	c->rc_state = RC_NONE;
}

/* On the second connection: which peers on the interface the store does
 * not know, which it holds as removed, which pushed peers (their lease
 * not over) are missing from the interface, and which pulled peers
 * missing from it had a handshake less than LIVE_S ago, and which peers
 * on it are pulled or leased (live.c names them to the installer). */
static void rc_work(void *arg)
{
	struct ctx *c = arg;
	struct reconcile *r = c->rc;
	sqlite3_stmt *get = NULL, *scan = NULL, *live = NULL;
	size_t i;
	int rc;

	rc = sqlite3_prepare_v2(c->wdb, "SELECT removed, origin IN (1, 3) OR lease IS NOT NULL"
				" FROM peer WHERE key = ?1", -1, &get, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(c->wdb, "SELECT key, removed FROM peer WHERE origin = 2"
					" AND updated < ?1 AND (lease IS NULL OR lease > ?2)",
					-1, &scan, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(c->wdb, "SELECT key FROM peer WHERE last_handshake > ?1"
					" AND origin IN (1, 3) AND removed = 0", -1, &live, NULL);
	if (rc != SQLITE_OK)
		goto out;
	/* pushed after the dump: installed since, not missing */
	sqlite3_bind_int64(scan, 1, r->dump_ms);
	sqlite3_bind_int64(scan, 2, r->dump_ms / 1000);
	for (i = 0; i < r->dump.n; i++) {
		sqlite3_bind_blob(get, 1, r->dump.k[i], WGGWD_KEY_LEN, SQLITE_STATIC);
		rc = sqlite3_step(get);
		if (rc == SQLITE_DONE)
			rc = keyvec_push(&r->unknown, r->dump.k[i]) ? SQLITE_NOMEM : SQLITE_OK;
		else if (rc == SQLITE_ROW && sqlite3_column_int(get, 0))
			rc = keyvec_push(&r->tomb, r->dump.k[i]) ? SQLITE_NOMEM : SQLITE_OK;
		else if (rc == SQLITE_ROW)
			rc = sqlite3_column_int(get, 1) &&
			     keyvec_push(&r->reassert, r->dump.k[i]) ? SQLITE_NOMEM : SQLITE_OK;
		sqlite3_reset(get);
		if (rc != SQLITE_OK)
			goto out;
	}
	while ((rc = sqlite3_step(scan)) == SQLITE_ROW) {
		const void *k = sqlite3_column_blob(scan, 0);

		if (sqlite3_column_bytes(scan, 0) != WGGWD_KEY_LEN || sqlite3_column_int(scan, 1))
			continue;
		if (r->dump.n && bsearch(k, r->dump.k, r->dump.n, WGGWD_KEY_LEN, cmp_key))
			continue;
		if (keyvec_push(&r->reinstall, k)) {
			rc = SQLITE_NOMEM;
			goto out;
		}
	}
	if (rc != SQLITE_DONE)
		goto out;
	sqlite3_bind_int64(live, 1, r->dump_ms / 1000 - LIVE_S);
	while ((rc = sqlite3_step(live)) == SQLITE_ROW) {
		const void *k = sqlite3_column_blob(live, 0);

		if (sqlite3_column_bytes(live, 0) != WGGWD_KEY_LEN)
			continue;
		if (r->dump.n && bsearch(k, r->dump.k, r->dump.n, WGGWD_KEY_LEN, cmp_key))
			continue;
		if (keyvec_push(&r->live, k)) {
			rc = SQLITE_NOMEM;
			goto out;
		}
	}
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
out:
	if (rc != SQLITE_OK)
		snprintf(r->err, sizeof(r->err), "%s", rc == SQLITE_NOMEM ? "out of memory" :
			 sqlite3_errmsg(c->wdb));
	sqlite3_finalize(get);
	sqlite3_finalize(scan);
	sqlite3_finalize(live);
}

/* Once every re-install is injected and done: how they ended. */
static void rc_summary(struct ctx *c)
{
	if (c->rc_state == RC_INJECTING || c->rc_out)
		return;
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "reconcile: %llu pushed peers re-installed, %llu refused",
		     (unsigned long long)*c->c[C_REINSTALLED],
		     (unsigned long long)*c->c[C_RC_REFUSED]);
}

/* Re-install pushed peers missing from the interface, a slice per turn. */
void reconcile_on_pump(void *arg)
{
	struct ctx *c = arg;
	struct reconcile *r = c->rc;
	size_t end;
	int ret;

	if (!r || c->stopping)
		return;
	end = r->reinstall.n - c->inject_at > INJECT_SLICE ? c->inject_at + INJECT_SLICE :
							      r->reinstall.n;
	for (; c->inject_at < end; c->inject_at++) {
		const uint8_t *key = r->reinstall.k[c->inject_at];
		struct wggwd_item *it = c->host->item_new(c->self);
		struct row row;

		if (!it) {
			c->host->log(c->self, WGGWD_LOG_WARN, "reconcile: out of memory");
			c->inject_at = r->reinstall.n;
			break;
		}
		row_get(c, key, &row, it);
		if (!row.found || row.removed || row.origin != WGGWD_ORIGIN_PUSH) {
			c->host->item_free(c->self, it); /* changed meanwhile */
			continue;
		}
		it->type = WGGWD_MSG_PEER;
		it->transport = WGGWD_TR_PUSH;
		it->op = WGGWD_OP_ADD;
		memcpy(it->public_key, key, WGGWD_KEY_LEN);
		if (it->peer->has & WGGWD_PEER_HAS_ENDPOINT)
			it->endpoint = it->peer->endpoint;
		c->rc_out++; /* reconcile_done counts it by its verdict */
		ret = c->host->inject(c->self, it, 0); /* frees the item if it fails */
		if (ret) {
			c->rc_out--;
			c->host->log(c->self, WGGWD_LOG_WARN,
				     "reconcile: cannot re-install pushed peers: %s",
				     ret == -ENOENT ? "nothing follows the store in its first pipeline" :
				     strerror(-ret));
			c->inject_at = r->reinstall.n;
			break;
		}
	}
	if (c->inject_at < r->reinstall.n) {
		c->host->timer_start(c->pump_timer, 0, 0);
		return;
	}
	rc_clear(c);
	rc_summary(c);
}

/* Retire a peer from the interface through the pipeline. */
static int retire(struct ctx *c, const uint8_t *key)
{
	int ret = c->host->retire(c->self, key, WGGWD_R_RECONCILE);

	if (ret) {
		char b64[WG_KEY_B64_LEN];

		wg_key_to_b64(b64, key);
		c->host->log_limited(c->self, WGGWD_LOG_WARN, "reconcile: cannot remove %s: %s",
				     b64, strerror(-ret));
	}
	return ret;
}

static void rc_after(void *arg, int status)
{
	struct ctx *c = arg;
	struct reconcile *r = c->rc;
	const struct wggwd_installer *ins = c->host->installer(c->self);
	size_t i;

	c->worker_busy = false;
	if (status || c->stopping || r->err[0]) {
		if (r->err[0])
			c->host->log(c->self, WGGWD_LOG_ERROR, "reconcile failed: %s", r->err);
		rc_clear(c);
		if (c->stopping) {
			schema_close_worker(c);
			schema_close_lock(c);
		} else {
			worker_run(c); /* a WAL truncation may be waiting (wal_defer) */
		}
		return;
	}
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "reconcile: %zu peers on %s: %zu unknown to the store (%s), %zu removed by a push, %zu pushed peers missing, %zu pulled peers missing with a live session",
		     r->dump.n, ins ? ins->name : "?", r->unknown.n,
		     store_unknown_choices[c->conf->unknown_peers], r->tomb.n, r->reinstall.n,
		     r->live.n);
	for (i = 0; i < r->unknown.n; i++) {
		if (c->conf->unknown_peers == UNKNOWN_ADOPT) {
			struct pend *e = batch_get(c, r->unknown.k[i]);

			e->what |= P_ADOPT;
			(*c->c[C_ADOPTED])++;
			batch_added(c);
		} else if (c->conf->unknown_peers == UNKNOWN_REMOVE) {
			retire(c, r->unknown.k[i]);
		}
	}
	for (i = 0; i < r->tomb.n; i++)
		retire(c, r->tomb.k[i]);
	live_restore(c, &r->live);
	live_reassert(c, &r->reassert);
	if (r->reinstall.n && c->lazy_push && !c->push_installs) {
		/* lazy push: installed when they knock, not all at start */
		rc_clear(c);
	} else if (r->reinstall.n) {
		c->rc_state = RC_INJECTING;
		c->inject_at = 0;
		reconcile_on_pump(c);
	} else {
		rc_clear(c);
	}
	worker_run(c);
}

int reconcile_queue(struct ctx *c)
{
	int ret;

	c->rc_state = RC_RUNNING;
	c->worker_busy = true;
	ret = c->host->queue_work(c->self, rc_work, rc_after, c);
	if (ret) {
		c->worker_busy = false;
		c->host->log(c->self, WGGWD_LOG_ERROR, "reconcile: cannot queue: %s",
			     strerror(ret < 0 ? -ret : ret));
		rc_clear(c);
	}
	return ret;
}

static void dump_later(struct ctx *c)
{
	c->host->timer_start(c->retry_timer, c->retry_ms, 0);
	c->retry_ms = c->retry_ms * 2 > 30000 ? 30000 : c->retry_ms * 2;
}

static void on_dump(void *arg, int status, const struct wggwd_peer_state *peers, size_t n,
		    size_t stride)
{
	struct ctx *c = arg;
	struct reconcile *r;
	size_t i;

	if (c->stopping)
		return;
	if (status) {
		c->host->log(c->self, c->retry_ms > 1000 ? WGGWD_LOG_DEBUG : WGGWD_LOG_WARN,
			     "reconcile: the installer cannot list its peers yet (%s); trying again in %llu ms",
			     strerror(status < 0 ? -status : status), (unsigned long long)c->retry_ms);
		dump_later(c);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		goto oom;
	r->dump_ms = c->dump_ms;
	for (i = 0; i < n; i++)
		if (keyvec_push(&r->dump, WGGWD_AT(const struct wggwd_peer_state, peers, i,
						   stride)->public_key))
			goto oom;
	if (r->dump.n)
		qsort(r->dump.k, r->dump.n, WGGWD_KEY_LEN, cmp_key);
	/* the second connection sees only what is committed */
	batch_commit(c, true);
	c->rc = r;
	c->rc_state = RC_WAITING;
	worker_run(c);
	return;
oom:
	reconcile_free(r);
	c->host->log(c->self, WGGWD_LOG_ERROR, "reconcile: out of memory");
}

/* Ask the installer for its peers (again). */
void reconcile_on_retry(void *arg)
{
	struct ctx *c = arg;
	const struct wggwd_installer *ins = c->host->installer(c->self);
	int ret;

	if (c->stopping || !ins || !ins->ops->dump)
		return;
	c->dump_ms = store_now_ms(c);
	ret = ins->ops->dump(ins->ctx, on_dump, c);
	if (ret)
		on_dump(c, ret, NULL, 0, 0);
}

/* At start: the installer started before us, but may not be able to
 * list its peers yet; on_dump tries again later. */
void reconcile_begin(struct ctx *c)
{
	c->retry_ms = 1000;
	reconcile_on_retry(c);
}

bool reconcile_reinstall(const struct wggwd_item *it)
{
	return (it->flags & WGGWD_ITEM_INJECTED) && it->op == WGGWD_OP_ADD &&
	       it->transport == WGGWD_TR_PUSH;
}

/* An item of our reconcile has finished: a REMOVE it retired (marked by
 * process), or a re-install it injected. Counted by how it ended: the
 * installer may refuse a peer (policy) or fail. */
void reconcile_done(struct ctx *c, struct wggwd_item *it, int verdict)
{
	bool ok = verdict == WGGWD_CONTINUE || verdict == WGGWD_DONE;
	bool add = it->op == WGGWD_OP_ADD;
	char b64[WG_KEY_B64_LEN];

	if (add && c->rc_out)
		c->rc_out--;
	if (ok) {
		(*c->c[add ? C_REINSTALLED : C_RC_REMOVED])++;
	} else {
		if (add)
			(*c->c[C_RC_REFUSED])++;
		wg_key_to_b64(b64, item_key(it));
		c->host->log_limited(c->self, WGGWD_LOG_WARN, "reconcile: %s %s failed: %s%s%s",
				     add ? "re-installing" : "removing", b64,
				     c->host->reason_name(it->reason), it->detail ? ": " : "",
				     it->detail ? it->detail : "");
	}
	if (add)
		rc_summary(c);
}
