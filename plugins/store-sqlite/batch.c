// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: the write batch and its commits, the sweeper, and the
 * thread-pool jobs (WAL checkpoints; the reconcile scan is queued here).
 *
 * Batched writes (timestamps, lookup counts, cached answers, negative
 * entries, forgotten answers, adoptions) wait here until the next commit;
 * reads look here first (read-your-writes). Holding them in memory rather
 * than in an open transaction keeps the write lock short and lets the WAL
 * restart from its beginning once a background checkpoint has caught up,
 * so it does not grow under a steady stream of writes.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static uint32_t bucket(struct ctx *c, const uint8_t *key)
{
	/* keyed (SipHash): clients choose their keys, not our chains */
	return (uint32_t)c->host->hash(key, WGGWD_KEY_LEN) & (PEND_BUCKETS - 1);
}

struct pend *batch_find(struct ctx *c, const uint8_t *key)
{
	int32_t i;

	if (!c->pend_n)
		return NULL;
	for (i = c->pend_head[bucket(c, key)]; i >= 0; i = c->pend[i].next)
		if (!memcmp(c->pend[i].key, key, WGGWD_KEY_LEN))
			return &c->pend[i];
	return NULL;
}

void batch_clear(struct ctx *c)
{
	size_t i;

	for (i = 0; i < c->pend_n; i++) {
		pulled_free(c->pend[i].pp);
		c->pend[i].pp = NULL;
	}
	c->pend_n = 0;
	for (i = 0; i < PEND_BUCKETS; i++)
		c->pend_head[i] = -1;
}

/* The entry for a key, created if need be. The batch is committed once it
 * holds commit_batch keys, unless a checkpoint is running (see
 * batch_commit()); the pool holds PEND_SLACK times that, and is committed
 * when full. */
struct pend *batch_get(struct ctx *c, const uint8_t *key)
{
	struct pend *e = batch_find(c, key);
	uint32_t b;

	if (e)
		return e;
	if (c->pend_n == c->pend_cap)
		batch_commit(c, true);
	b = bucket(c, key);
	e = &c->pend[c->pend_n];
	memset(e, 0, sizeof(*e));
	memcpy(e->key, key, WGGWD_KEY_LEN);
	e->next = c->pend_head[b];
	c->pend_head[b] = (int32_t)c->pend_n++;
	return e;
}

/* After adding to the batch: commit it now if full, else soon. */
void batch_added(struct ctx *c)
{
	if (!c->pend_n)
		return;
	if (c->pend_n >= (size_t)c->conf->commit_batch) {
		batch_commit(c, false);
	} else if (!c->commit_armed && c->commit_timer) {
		c->host->timer_start(c->commit_timer, c->conf->commit_interval_ms, 0);
		c->commit_armed = true;
	}
}

/* Reads share one read transaction until the next commit: a statement
 * of its own would take and drop the WAL read lock (fcntl calls) each
 * time. Only this connection writes, so the snapshot is never stale. */
void batch_read(struct ctx *c)
{
	/* a truncation waits for every reader: statement-long reads then */
	if (c->reading || c->wal_truncate || !sqlite3_get_autocommit(c->db))
		return;
	if (row_step(c, c->st[S_BEGIN_READ]))
		return;
	c->reading = true;
	if (!c->commit_armed && c->commit_timer) {
		c->host->timer_start(c->commit_timer, c->conf->commit_interval_ms, 0);
		c->commit_armed = true;
	}
}

/* A bounded table's put: an insert, else an update; its count follows. */
static int bound_put(struct ctx *c, unsigned t, const uint8_t *key, const void *blob,
		     size_t blob_len, int nargs, int64_t a, int64_t b)
{
	static const enum stmt put[B_MAX] = { S_NEG_PUT, S_STAMP_PUT, S_RL_PUT };
	static const enum stmt set[B_MAX] = { S_NEG_SET, S_STAMP_SET, S_RL_SET };
	int ret = row_bind_step(c, put[t], key, blob, blob_len, nargs, a, b);

	if (ret)
		return ret;
	if (!sqlite3_changes(c->db))
		return row_bind_step(c, set[t], key, blob, blob_len, nargs, a, b);
	if (c->bound[t].rows >= 0)
		c->bound[t].rows++;
	c->bound[t].added++;
	return 0;
}

static int apply_pend(struct ctx *c, const struct pend *e, int64_t now)
{
	int ret = 0;

	if (e->what & P_STAMP)
		ret = bound_put(c, B_STAMP, e->key, e->tai64n, sizeof(e->tai64n), 1,
				e->stamp_seen, 0);
	if (!ret && (e->what & P_RL))
		ret = bound_put(c, B_RL, e->key, NULL, 0, 2, e->rl_win, e->rl_count);
	if (!ret && (e->what & P_NEG_DEL)) {
		ret = row_bind_step(c, S_NEG_DEL, e->key, NULL, 0, 0, 0, 0);
		if (!ret && c->bound[B_NEG].rows > 0)
			c->bound[B_NEG].rows -= sqlite3_changes(c->db);
	}
	if (!ret && (e->what & P_NEG))
		ret = bound_put(c, B_NEG, e->key, NULL, 0, 1, e->neg_expires, 0);
	if (!ret && (e->what & P_FORGET))
		ret = row_bind_step(c, S_PEER_FORGET, e->key, NULL, 0, 0, 0, 0);
	if (!ret && (e->what & P_PEER))
		ret = row_put(c, &e->pp->peer, e->pp->peer.origin, false, true, e->pp->expires);
	if (!ret && (e->what & P_LIVE)) {
		sqlite3_stmt *s = c->st[S_PEER_LIVE];
		uint8_t ep[ENDPOINT_REC];

		sqlite3_bind_blob(s, 1, e->key, WGGWD_KEY_LEN, SQLITE_STATIC);
		if (endpoint_encode(ep, &e->live_ep))
			sqlite3_bind_blob(s, 2, ep, ENDPOINT_REC, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, e->live_hs);
		ret = row_step(c, s);
		if (!ret && sqlite3_changes(c->db))
			(*c->c[C_LIVE_SAVED])++;
	}
	if (!ret && (e->what & P_ADOPT))
		ret = row_bind_step(c, S_PEER_ADOPT, e->key, NULL, 0, 1, now, 0);
	return ret;
}

/* How long an expired answer is kept: while its peer may still be on the
 * interface (max_stale), and a while more, so that live.c's sweep sees it
 * past max_stale and retires its peer. */
static int64_t stale_keep_ms(const struct ctx *c)
{
	int64_t more = 2 * c->conf->revalidate_interval_ms;

	return c->conf->max_stale_ms + (more > 60000 ? more : 60000);
}

/* Dead peer rows the sweeper found; deleted only if still dead. */
static int apply_victims(struct ctx *c, int64_t now)
{
	size_t i;
	int ret = 0;

	for (i = 0; !ret && i < c->n_victims; i++) {
		ret = row_bind_step(c, S_DEL_PEER, c->victims[i].key, NULL, 0, 2,
				    now - stale_keep_ms(c), now - c->conf->tombstone_ttl_ms);
		if (!ret && sqlite3_changes(c->db))
			(*c->c[C_PURGED])++;
	}
	return ret;
}

static const char *const bound_table[B_MAX] = { "negative", "stamp", "ratelimit" };
static const char *const bound_option[B_MAX] = { "max_negative", "max_timestamps",
						 "max_rate_rows" };

/* Delete up to n rows of bounded table t older than `before`, oldest
 * first; *gone: how many went. */
static int bound_delete(struct ctx *c, unsigned t, int64_t before, int64_t n, int64_t *gone)
{
	static const enum stmt st[B_MAX] = { S_EXPIRE_NEG, S_EXPIRE_STAMP, S_EXPIRE_RL };
	sqlite3_stmt *s = c->st[st[t]];
	int ret;

	sqlite3_bind_int64(s, 1, before);
	sqlite3_bind_int64(s, 2, n);
	ret = row_step(c, s);
	*gone = ret ? 0 : sqlite3_changes(c->db);
	if (c->bound[t].rows >= *gone)
		c->bound[t].rows -= *gone;
	return ret;
}

static int bound_count(struct ctx *c, unsigned t)
{
	static const enum stmt st[B_MAX] = { S_COUNT_NEG, S_COUNT_STAMP, S_COUNT_RL };
	sqlite3_stmt *s = c->st[st[t]];
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		c->bound[t].rows = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : sqlite_errno(c->db, rc);
}

/*
 * In the commit's transaction, after the batch. Dead rows of the bounded
 * tables go oldest first, found through their time index (the work
 * follows what died, not the table's size): up to EXPIRE_PER_ADD per row
 * this commit added, so expiry keeps up with growth at any rate, and on
 * the sweeper's turn EXPIRE_TICK more (the backlog a burst leaves). Then
 * a table over its cap loses its oldest rows, so a commit never leaves
 * more than the cap. The counts are kept exact (bound_put): nothing is
 * counted but at start and after a failed commit.
 */
static int apply_bounds(struct ctx *c, int64_t now)
{
	const struct conf *cf = c->conf;
	const int64_t dead[B_MAX] = { now, now - cf->timestamp_ttl_ms,
				      now - cf->lookup_window_ms };
	int64_t gone, n;
	unsigned t;
	int ret = 0;

	for (t = 0; !ret && t < B_MAX; t++) {
		struct bound *b = &c->bound[t];

		if (b->rows < 0)
			ret = bound_count(c, t);
		n = b->added * EXPIRE_PER_ADD + (c->expire_due ? EXPIRE_TICK : 0);
		b->added = 0;
		if (!ret && n && b->rows) {
			ret = bound_delete(c, t, dead[t], n, &gone);
			*c->c[C_PURGED] += (uint64_t)gone;
		}
		if (ret || b->rows <= b->cap)
			continue;
		ret = bound_delete(c, t, INT64_MAX, b->rows - b->cap, &gone);
		*c->c[C_EVICTED] += (uint64_t)gone;
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "%s: more rows than %s (%lld): the %lld oldest evicted%s",
				     bound_table[t], bound_option[t], (long long)b->cap,
				     (long long)gone, t == B_STAMP ?
				     " (older initiations of their keys are no longer recognised as replays)" :
				     t == B_NEG ? " (their keys will be asked about again)" : "");
	}
	if (!ret)
		c->expire_due = false;
	return ret;
}

/*
 * The WAL starts over from its beginning only once a checkpoint has copied
 * all of it; under a steady stream of forced commits (a flood fills the
 * batch faster than a background checkpoint runs) none ever does, and the
 * WAL would grow by a commit's pages each time (gigabytes in seconds). Past
 * WAL_MAX_PAGES writes wait while the thread pool truncates it (TRUNCATE:
 * the file goes back to 0 bytes; wal_defer()). Only a write that cannot
 * wait (the batch pool is full, or stopping) checkpoints on the loop,
 * blocking, after a checkpoint under way ends: backpressure, a stall
 * instead of a full disk (wal_stalls counts them).
 */
static void wal_bound(struct ctx *c)
{
	int rc, log = 0, done = 0;
	uint64_t t0;

	if (c->wal_pages < WAL_MAX_PAGES)
		return;
	t0 = c->host->now_ns();
	while ((rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log,
					       &done)) == SQLITE_BUSY &&
	       c->host->now_ns() - t0 < WAL_WAIT_MS * 1000000ULL)
		usleep(1000); /* the checkpoint lock: a background one runs */
	(*c->c[C_WAL_STALLS])++;
	if (rc == SQLITE_OK) {
		c->wal_pages = 0;
		(*c->c[C_CHECKPOINTS])++;
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "the WAL reached %d pages: checkpointed on the loop (%llu ms)",
				     WAL_MAX_PAGES,
				     (unsigned long long)((c->host->now_ns() - t0) / 1000000));
	} else {
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "the WAL reached %d pages and could not be checkpointed: %s",
				     WAL_MAX_PAGES, sqlite3_errmsg(c->db));
	}
}

/* True: the WAL is past WAL_MAX_PAGES and the thread pool truncates it;
 * write later (ckpt_after() commits the batch and flushes pushed peers).
 * force: the write cannot wait, the loop checkpoints now (wal_bound). */
bool wal_defer(struct ctx *c, bool force)
{
	if (c->wal_pages < WAL_MAX_PAGES)
		return false;
	if (!force && !c->stopping && c->wdb) {
		if (!c->wal_truncate) {
			c->wal_truncate = true;
			c->wal_full_ns = c->host->now_ns();
		}
		if (c->reading) { /* a truncation waits for every reader */
			row_step(c, c->st[S_COMMIT]);
			c->reading = false;
		}
		worker_run(c); /* now, or after the job under way */
		if (c->wal_truncate)
			return true;
	}
	wal_bound(c);
	return false;
}

/*
 * Write the batch in one transaction (synchronous=NORMAL). While a
 * background checkpoint runs, the commit waits for it (unless `force`d,
 * or the pool is full): the WAL can only start again from its beginning
 * when a write transaction begins after a checkpoint that copied
 * everything, so a steady stream of commits would make it grow forever.
 */
int batch_commit(struct ctx *c, bool force)
{
	int64_t now = store_now_ms(c);
	size_t i, n = c->pend_n;
	int ret;

	if (c->commit_armed) {
		c->host->timer_stop(c->commit_timer);
		c->commit_armed = false;
	}
	if (c->reading) {
		row_step(c, c->st[S_COMMIT]); /* ends the read transaction */
		c->reading = false;
	}
	if (!c->pend_n && !c->n_victims && !c->expire_due)
		return 0;
	if ((!force && c->ckpt_busy && c->pend_n < c->pend_cap) ||
	    wal_defer(c, force || c->pend_n >= c->pend_cap)) {
		c->commit_deferred = true; /* ckpt_after() commits */
		return 0;
	}
	c->commit_deferred = false;
	ret = row_step(c, c->st[S_BEGIN]);
	if (!ret)
		ret = apply_victims(c, now);
	for (i = 0; !ret && i < c->pend_n; i++)
		ret = apply_pend(c, &c->pend[i], now);
	if (!ret)
		ret = apply_bounds(c, now);
	if (!ret)
		ret = row_step(c, c->st[S_COMMIT]);
	if (ret) {
		(*c->c[C_WRITE_ERRORS])++;
		if (!sqlite3_get_autocommit(c->db))
			row_step(c, c->st[S_ROLLBACK]);
		for (i = 0; i < B_MAX; i++) {
			c->bound[i].rows = -1; /* count again */
			c->bound[i].added = 0;
		}
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "lost a batch of %zu cached answers, timestamps and limits: %s", n,
			     strerror(-ret));
	} else {
		(*c->c[C_COMMITS])++;
	}
	batch_clear(c);
	c->n_victims = 0;
	return ret;
}

void batch_on_timer(void *arg)
{
	struct ctx *c = arg;

	c->commit_armed = false;
	batch_commit(c, false);
}

/* ------------------------------------------------------------ sweeper */

/* Every SWEEP_EVERY_MS: the next slice of the peer table (expired answers,
 * old tombstones: deleted in the next commit, if still dead then; a pass
 * over 10^6 rows takes about two hours, which is fine for rows that only
 * keys the control plane knows can make), and up to EXPIRE_TICK dead rows
 * of each bounded table (apply_bounds), in a commit now. */
void batch_on_sweep(void *arg)
{
	struct ctx *c = arg;
	sqlite3_stmt *s = c->st[S_SWEEP_PEER];
	int64_t now = store_now_ms(c);
	size_t rows = 0;
	unsigned t;
	int rc;

	batch_read(c);
	if (c->sweep_wrapped)
		sqlite3_bind_blob(s, 1, "", 0, SQLITE_STATIC);
	else
		sqlite3_bind_blob(s, 1, c->sweep_cursor, WGGWD_KEY_LEN, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, SWEEP_SLICE);
	sqlite3_bind_int64(s, 3, now - stale_keep_ms(c));
	sqlite3_bind_int64(s, 4, now - c->conf->tombstone_ttl_ms);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(s, 0) != WGGWD_KEY_LEN)
			continue;
		memcpy(c->sweep_cursor, sqlite3_column_blob(s, 0), WGGWD_KEY_LEN);
		rows++;
		if (sqlite3_column_int(s, 1) && c->n_victims < VICTIMS_MAX)
			memcpy(c->victims[c->n_victims++].key, c->sweep_cursor, WGGWD_KEY_LEN);
	}
	sqlite3_reset(s);
	c->sweep_wrapped = rows < SWEEP_SLICE;
	if (rc != SQLITE_DONE)
		(*c->c[C_READ_ERRORS])++;
	for (t = 0; t < B_MAX; t++)
		if (c->bound[t].rows)
			c->expire_due = true; /* not known to be empty */
	if (c->n_victims || c->expire_due)
		batch_commit(c, false);
}

/* -------------------------------------------------- thread-pool jobs */

static void ckpt_work(void *arg)
{
	struct ctx *c = arg;
	int log, done;

	c->ckpt_rc = sqlite3_wal_checkpoint_v2(c->wdb, NULL, c->ckpt_truncate ?
					       SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE,
					       &log, &done);
}

static void ckpt_after(void *arg, int status)
{
	struct ctx *c = arg;

	c->worker_busy = false;
	c->ckpt_busy = false;
	if (!status && c->ckpt_rc == SQLITE_OK) {
		(*c->c[C_CHECKPOINTS])++;
		c->wal_pages = 0;
		if (!c->ckpt_truncate)
			c->wal_truncate = false; /* a passive one caught up first */
	}
	if (c->ckpt_truncate) {
		c->ckpt_truncate = c->wal_truncate = false;
		if (!status && c->ckpt_rc == SQLITE_OK) {
			(*c->c[C_WAL_TRUNCATED])++;
			c->host->log_limited(c->self, WGGWD_LOG_INFO,
					     "the WAL reached %d pages: truncated on the thread pool; writes waited %llu ms",
					     WAL_MAX_PAGES, (unsigned long long)
					     ((c->host->now_ns() - c->wal_full_ns) / 1000000));
		} else {
			/* the next write asks again, or checkpoints on the loop */
			(*c->c[C_WRITE_ERRORS])++;
			c->host->log_limited(c->self, WGGWD_LOG_WARN,
					     "the WAL reached %d pages and the thread pool could not truncate it: %s",
					     WAL_MAX_PAGES, status ? strerror(-status) :
					     sqlite3_errstr(c->ckpt_rc));
		}
	}
	if (c->commit_deferred && c->db)
		batch_commit(c, false);
	if (c->push_n && c->db && !c->stopping)
		push_flush(c);
	if (c->stopping) {
		schema_close_worker(c);
		schema_close_lock(c);
		return;
	}
	worker_run(c);
}

int batch_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct ctx *c = arg;

	(void)db;
	(void)name;
	c->wal_pages = pages;
	if (pages >= CHECKPOINT_PAGES)
		worker_run(c);
	return SQLITE_OK;
}

/* Start whatever thread-pool job is waiting (one at a time, on the
 * second connection): the reconcile scan first, then a checkpoint. */
void worker_run(struct ctx *c)
{
	if (c->worker_busy || c->stopping || !c->wdb)
		return;
	if (c->rc_state == RC_WAITING) {
		reconcile_queue(c);
		return;
	}
	if (c->wal_pages >= CHECKPOINT_PAGES) {
		c->worker_busy = c->ckpt_busy = true;
		c->ckpt_truncate = c->wal_truncate;
		if (c->host->queue_work(c->self, ckpt_work, ckpt_after, c))
			c->worker_busy = c->ckpt_busy = c->ckpt_truncate = c->wal_truncate = false;
	}
}
