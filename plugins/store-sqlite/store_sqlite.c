// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: what the gateway remembers across restarts, in one SQLite
 * file per interface.
 *
 *  - peer configs with their origin (pull, push, static, adopted):
 *    resolvers' answers double as the positive lookup cache (they
 *    expire), pushed ones stay until a pushed removal (kept as a tombstone,
 *    so an older add delivered late cannot bring the peer back);
 *  - negative entries for keys the resolver said it does not know;
 *  - the newest TAI64N timestamp seen per key that resolved (replayed
 *    initiations are dropped before they can trigger a lookup or move an
 *    endpoint; an unknown key is refused anyway);
 *  - per-key lookup counts, so a key cannot make the resolver ask the
 *    control plane more than lookups_per_key times per lookup_window, even
 *    across restarts.
 *
 * Anyone who knows the gateway's public key can mint keys and knock with
 * each once: the three tables such knocks grow (negative entries, lookup
 * counts; timestamps only through keys that resolve) are each capped
 * (max_negative, max_rate_rows, max_timestamps: the oldest rows are
 * evicted in the commit that goes over), their dead rows are found
 * through an index on their time and deleted as fast as they die, and the
 * WAL is truncated on the thread pool once it reaches 64 MiB, writes waiting
 * meanwhile (batch.c).
 *
 * What is installed is not the store's business: the installer engine
 * owns it. The store's role in each pipeline comes from `link`:
 *
 *  - a pull pipeline with a resolver after the store: the cache (lookup
 *    before the resolver) and the keeper of its answers (process after);
 *  - a pull pipeline with the resolver before it: the keeper of answers;
 *  - a pull pipeline with no resolver: the only answer (process looks up);
 *  - a pipeline whose source gives peer configs: the push sink; with no
 *    installer after it, a lazy one (push: [nats, store] with pull:
 *    [sniff, noise, store, wg0]): the store is filled, and only the keys
 *    that knock are installed, from the store alone (a miss is unknown:
 *    no one is asked). A pushed removal or change of a peer installed
 *    already goes through the pull pipeline at once (push.c).
 *
 * Removals (op REMOVE) reach process and done in every role (cache.c
 * decides, per reason, what they mean for what is stored; push.c keeps
 * pushed ones as tombstones).
 *
 * Every revalidate_interval the store looks at what the installer lists
 * (live.c): a pulled peer whose answer expired is asked about again
 * before the resolver (an answer of unknown revokes it; a control plane
 * that cannot be asked keeps it for max_stale, then it is retired as
 * unverified), and pulled peers' endpoints and last handshakes are kept,
 * so that clients with a live session are re-installed at once after a
 * restart. Leases (peer.expires_at) are kept with every config and served
 * with it; an answer whose lease is over is never served.
 *
 * Batched writes (timestamps, lookup counts, cached answers, negative
 * entries) wait in memory, where reads look first, and are committed
 * together every commit_interval or commit_batch keys (WAL,
 * synchronous=NORMAL: a crash loses at most the batch not committed yet,
 * a power cut perhaps the last committed one too). Pushed configs are
 * different: they are acknowledged to the control plane once installed,
 * so they are group-committed with synchronous=FULL (fsync) before the
 * items go on.
 *
 * The loop thread owns the main connection. A second connection serves
 * the thread pool: the start-up reconcile scan and WAL checkpoints.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

const char *const store_unknown_choices[] = { "ignore", "adopt", "remove", NULL };
static const char *const check_choices[] = { "none", "quick", "full", NULL };

static const struct wggwd_opt opts[] = {
	{ .name = "path", .type = WGGWD_OPT_PATH, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, path),
	  .help = "the database file (created mode 0600, with its -wal and -shm files beside it); its directory must exist. One store per interface" },
	{ .name = "ttl", .type = WGGWD_OPT_DURATION, .def = "1h", .min = 0, .max = 30 * DAY_MS,
	  .offset = offsetof(struct conf, ttl_ms),
	  .help = "how long a resolver's answer is served from the store when the answer gives no ttl of its own (0: not cached)" },
	{ .name = "negative_ttl", .type = WGGWD_OPT_DURATION, .def = "60s", .min = 0, .max = DAY_MS,
	  .offset = offsetof(struct conf, negative_ttl_ms),
	  .help = "how long a key the resolver does not know is dropped without asking again (0: not cached)" },
	{ .name = "lookups_per_key", .type = WGGWD_OPT_INT, .def = "10", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, lookups_per_key),
	  .help = "cache misses (resolver lookups) allowed per key per lookup_window; more are dropped as rate_limited (0: no limit). Survives restarts" },
	{ .name = "lookup_window", .type = WGGWD_OPT_DURATION, .def = "1m", .min = 100, .max = DAY_MS,
	  .offset = offsetof(struct conf, lookup_window_ms),
	  .help = "the window lookups_per_key counts in" },
	{ .name = "commit_interval", .type = WGGWD_OPT_DURATION, .def = "200ms", .min = 1, .max = 10000,
	  .offset = offsetof(struct conf, commit_interval_ms),
	  .help = "batched writes (cache answers, timestamps, limits, negative entries) are committed at least this often; pushed peers are committed (fsync) before they go on" },
	{ .name = "commit_batch", .type = WGGWD_OPT_INT, .def = "1000", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, commit_batch),
	  .help = "...or as soon as this many keys have writes waiting (more while a background checkpoint runs: the WAL can only start over after one)" },
	{ .name = "unknown_peers", .type = WGGWD_OPT_ENUM, .def = "ignore", .choices = store_unknown_choices,
	  .offset = offsetof(struct conf, unknown_peers),
	  .help = "at start, peers on the interface the store knows nothing of: ignore (leave them: an operator or another tool may own them), adopt (record them as known, config unknown: origin none), remove (the store is the only authority)" },
	{ .name = "integrity_check", .type = WGGWD_OPT_ENUM, .def = "quick", .choices = check_choices,
	  .offset = offsetof(struct conf, integrity_check),
	  .help = "check the database at start: none, quick (PRAGMA quick_check: O(size), about a second per GB) or full (integrity_check, also indexes)" },
	{ .name = "lock_timeout", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 0, .max = 60000,
	  .offset = offsetof(struct conf, lock_timeout_ms),
	  .help = "how long start waits for a database that another process holds locked before failing" },
	{ .name = "cache_size", .type = WGGWD_OPT_SIZE, .def = "4MiB", .min = 256 * 1024,
	  .max = 1LL << 30, .offset = offsetof(struct conf, cache_size),
	  .help = "SQLite page cache of the loop's connection (most of the store's memory; it fills up under a flood of fresh keys, whose lookups write rows; the rest of the file is read through the kernel's page cache)" },
	{ .name = "tombstone_ttl", .type = WGGWD_OPT_DURATION, .def = "24h", .min = 0, .max = 365 * DAY_MS,
	  .offset = offsetof(struct conf, tombstone_ttl_ms),
	  .help = "how long a pushed removal is remembered (with its version, so that an older add delivered late is refused as stale)" },
	{ .name = "timestamp_ttl", .type = WGGWD_OPT_DURATION, .def = "30d", .min = 60000, .max = 3650 * DAY_MS,
	  .offset = offsetof(struct conf, timestamp_ttl_ms),
	  .help = "how long the newest handshake timestamp of a key is kept after it was last seen (replays older than this are no longer recognised; keep it above the evictor's idle time). Only keys that resolved have one: an unknown key is refused anyway" },
	{ .name = "max_negative", .type = WGGWD_OPT_INT, .def = "100000", .min = 100, .max = 100000000,
	  .offset = offsetof(struct conf, max_negative),
	  .help = "at most this many negative entries (a stranger can mint keys): beyond it the oldest are evicted (their keys are asked about again, within the resolver's budget)" },
	{ .name = "max_rate_rows", .type = WGGWD_OPT_INT, .def = "100000", .min = 100, .max = 100000000,
	  .offset = offsetof(struct conf, max_rate_rows),
	  .help = "at most this many per-key lookup counts (one per key looked up in the last lookup_window): beyond it the oldest windows are evicted" },
	{ .name = "max_timestamps", .type = WGGWD_OPT_INT, .def = "1000000", .min = 100, .max = 100000000,
	  .offset = offsetof(struct conf, max_timestamps),
	  .help = "at most this many keys' timestamps (keys that resolved): beyond it those seen longest ago are evicted (older initiations of theirs are no longer recognised as replays); keep it above the number of clients" },
	{ .name = "revalidate_interval", .type = WGGWD_OPT_DURATION, .def = "30s", .min = 0,
	  .max = DAY_MS, .offset = offsetof(struct conf, revalidate_interval_ms),
	  .help = "how often the installed peers are looked at: a pulled peer whose cached answer expired is asked about again (through the resolver, within its budget; an answer of unknown, or one the policy refuses, removes it at once: revoked), a peer whose lease is over is removed, and pulled peers' endpoints and last handshakes are kept, so that after a restart a client whose session is still live is re-installed at once. 0: never (expired answers are then asked about only when their peer re-handshakes, at least every 2 minutes while it sends)" },
	{ .name = "revalidate_batch", .type = WGGWD_OPT_INT, .def = "50", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, revalidate_batch),
	  .help = "at most this many installed peers asked about again per revalidate_interval (the others at the next); each lookup also counts against the resolver's rate and its peer's source budget" },
	{ .name = "max_stale", .type = WGGWD_OPT_DURATION, .def = "1h", .min = 0, .max = 30 * DAY_MS,
	  .offset = offsetof(struct conf, max_stale_ms),
	  .help = "when the control plane cannot be asked (down, timing out, its breaker open), an installed pulled peer whose answer expired keeps its tunnel (availability) for at most this long after the answer expired; then it is removed (reason unverified). An answer of unknown removes it at once whatever this says. At least revalidate_interval (the peer is asked about at least once first)" },
	WGGWD_OPT_END
};

static const char *const counter_names[C_MAX] = {
	"hit", "miss", "negative_hit", "replay", "rate_limited", "saved", "write_errors",
	"reconcile_adopted", "reconcile_removed", "reconcile_reinstalled", "stale",
	"removed", "commits", "read_errors", "purged", "negative_saved", "checkpoints",
	"forgotten", "kept", "evicted", "wal_stalls", "revalidations", "revoked", "unverified",
	"lease_expired", "restored_live", "live_saved", "reconcile_refused",
	"reconcile_reasserted", "lazy_retired", "lazy_updated", "wal_truncated",
};

/* What this store did with an item, in its slot (host->slot): static
 * marks, nothing to free. */
static char mark_looked_up, mark_retired;

/* -------------------------------------------------------------- roles */

static const char *ss_link(void *ctx, const void *conf, const struct wggwd_link *l,
			   const char **option, char *buf, size_t len)
{
	struct ctx *c = ctx;
	uint32_t role;

	(void)conf;
	*option = NULL;
	if (l->source_out & WGGWD_MSG_PEER) {
		if (l->kinds_after & (1u << WGGWD_RESOLVER)) {
			snprintf(buf, len, "pipeline \"%s\": its source gives peer configs, so the store is its push sink; a resolver after it would have nothing to resolve",
				 l->pipeline);
			return buf;
		}
		role = ROLE_PUSH;
		if (c && (l->kinds_after & (1u << WGGWD_INSTALLER)))
			c->push_installs = true;
		else if (c)
			c->lazy_push = true;
	} else if (l->kinds_after & (1u << WGGWD_RESOLVER)) {
		role = ROLE_CACHE;
	} else if (l->kinds_before & (1u << WGGWD_RESOLVER)) {
		role = ROLE_KEEP;
	} else {
		role = ROLE_ANSWER;
	}
	if (c) {
		c->roles |= role;
		/* host->inject uses the first pipeline with an installer */
		if (!c->inject_role && ((l->kinds_after | l->kinds_before) & (1u << WGGWD_INSTALLER)))
			c->inject_role = role;
		c->host->log(c->self, WGGWD_LOG_DEBUG, "pipeline \"%s\": %s", l->pipeline,
			     role == ROLE_PUSH ? "push sink" : role == ROLE_CACHE ?
			     "lookup cache, keeps the resolver's answers" : role == ROLE_KEEP ?
			     "keeps the resolver's answers" : "the only answer (no resolver)");
	}
	return NULL;
}

/* ---------------------------------------------------------------- ops */

static int ss_lookup(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;

	if (!c->db) {
		it->reason = WGGWD_R_STORE_CLOSED;
		return WGGWD_ERROR;
	}
	/* process, after the resolver, sees this item as an answer to keep */
	*c->host->slot(c->self, it) = &mark_looked_up;
	if (!(it->type & WGGWD_MSG_PEER_KEY) || it->type & WGGWD_MSG_PEER)
		return WGGWD_CONTINUE; /* a config already: nothing to look up */
	return cache_lookup(c, it, false);
}

static int no_role(struct ctx *c, struct wggwd_item *it)
{
	c->host->log_limited(c->self, WGGWD_LOG_ERROR,
			     "an item this store has no role for (roles %#x: was link called?)",
			     c->roles);
	it->reason = WGGWD_R_INTERNAL;
	return WGGWD_ERROR;
}

/*
 * Is a removal the control plane's (kept as a tombstone with its version,
 * so that an older add delivered late cannot revive the peer)? Yes if it
 * says so (reason pushed), and whatever its reason if it comes from a
 * push source: emitted (not a stage's retire or inject) with transport
 * push. A push source's word never passes for an eviction, and no other
 * stage's removal makes a tombstone without saying so.
 */
static bool pushed_removal(const struct wggwd_item *it)
{
	if (it->reason == WGGWD_R_PUSHED)
		return true;
	return it->transport == WGGWD_TR_PUSH && !(it->flags & WGGWD_ITEM_INJECTED);
}

static int ss_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	void **slot = c->host->slot(c->self, it);
	int v;

	if (!c->db) {
		it->reason = WGGWD_R_STORE_CLOSED;
		return WGGWD_ERROR;
	}
	if (it->op == WGGWD_OP_REMOVE) {
		if (push_retired(c, it))
			return WGGWD_CONTINUE; /* its tombstone is written */
		if (pushed_removal(it))
			return push_enqueue(c, it); /* a tombstone, fsynced */
		if (it->reason == WGGWD_R_RECONCILE)
			*slot = &mark_retired; /* counted in done */
		return cache_removal(c, it);
	}
	if (*slot == &mark_looked_up ||
	    ((it->flags & WGGWD_ITEM_INJECTED) && (it->type & WGGWD_MSG_PEER_KEY))) {
		/* the resolver after our lookup answered (or one we injected
		 * before it, a revalidation): the key is known */
		v = cache_stamp(c, it);
		return v == WGGWD_CONTINUE ? cache_keep(c, it) : v;
	}
	if (!(it->type & WGGWD_MSG_PEER)) {
		/* a key, no config: a pull pipeline without a resolver */
		if (!(c->roles & ROLE_ANSWER))
			return no_role(c, it);
		v = cache_lookup(c, it, true);
		if (v == WGGWD_CONTINUE)
			it->type |= WGGWD_MSG_PEER;
		return v;
	}
	/* a config: pushed, or a resolver's before us. A store that is both
	 * (one pipeline each) tells them apart by the item's transport. */
	if ((c->roles & ROLE_PUSH) &&
	    (!(c->roles & ROLE_KEEP) || it->transport == WGGWD_TR_PUSH))
		return push_enqueue(c, it);
	if (c->roles & (ROLE_KEEP | ROLE_CACHE))
		return cache_keep(c, it);
	return no_role(c, it);
}

static void ss_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	void **slot = c->host->slot(c->self, it);
	void *mark = *slot;

	*slot = NULL;
	if (!c->db)
		return;
	if (mark == &mark_retired || reconcile_reinstall(it))
		reconcile_done(c, it, verdict);
	else if (verdict == WGGWD_DROP && (it->flags & WGGWD_ITEM_NOT_FOUND))
		cache_negative(c, it);
}

static void ss_removed(void *ctx, const struct wggwd_item *it)
{
	struct ctx *c = ctx;

	if (c->db && !c->stopping)
		live_removed(c, it);
}

static const char *ss_validate(const void *conf, const char **option, char *buf, size_t len)
{
	const struct conf *cf = conf;

	if (cf->revalidate_interval_ms && cf->max_stale_ms < cf->revalidate_interval_ms) {
		*option = "max_stale";
		snprintf(buf, len, "must be at least revalidate_interval (%lld ms), so that a peer is asked about before it is removed as unverified",
			 (long long)cf->revalidate_interval_ms);
		return buf;
	}
	return NULL;
}

/* ------------------------------------------------------- start, stop */

static int ss_start(void *ctx)
{
	struct ctx *c = ctx;
	int ret;

	ret = schema_open(c);
	if (ret) {
		schema_close_worker(c);
		schema_close(c);
		schema_close_lock(c);
		return ret;
	}
	schema_count(c);
	/* nothing can fail from here on: the timers would need closing */
	c->commit_timer = c->host->timer_new(c->self, batch_on_timer, c);
	c->push_timer = c->host->timer_new(c->self, push_flush, c);
	c->sweep_timer = c->host->timer_new(c->self, batch_on_sweep, c);
	c->retry_timer = c->host->timer_new(c->self, reconcile_on_retry, c);
	c->pump_timer = c->host->timer_new(c->self, reconcile_on_pump, c);
	c->host->timer_start(c->sweep_timer, SWEEP_EVERY_MS, SWEEP_EVERY_MS);
	live_start(c);
	reconcile_begin(c);
	return 0;
}

static void ss_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->stopping = true; /* the writes below do not wait (wal_defer) */
	if (c->push_n)
		push_flush(c);
	batch_commit(c, true);
	c->host->timer_free(c->commit_timer);
	c->host->timer_free(c->push_timer);
	c->host->timer_free(c->sweep_timer);
	c->host->timer_free(c->retry_timer);
	c->host->timer_free(c->pump_timer);
	c->commit_timer = c->push_timer = c->sweep_timer = c->retry_timer = c->pump_timer = NULL;
	live_stop(c);
	c->commit_armed = c->push_armed = false;
	if (!c->worker_busy)
		schema_close_worker(c); /* else when its job is back */
	schema_close(c);
	schema_close_lock(c);
	c->host->stopped(c->self);
}

static int ss_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));
	int i;

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->lock_fd = -1;
	c->pend_cap = ((const struct conf *)conf)->commit_batch * PEND_SLACK;
	c->pend = calloc(c->pend_cap, sizeof(*c->pend));
	if (!c->pend) {
		free(c);
		return -ENOMEM;
	}
	for (i = 0; i < PEND_BUCKETS; i++)
		c->pend_head[i] = -1;
	c->sweep_wrapped = true;
	c->bound[B_NEG].cap = c->conf->max_negative;
	c->bound[B_STAMP].cap = c->conf->max_timestamps;
	c->bound[B_RL].cap = c->conf->max_rate_rows;
	for (i = 0; i < B_MAX; i++)
		c->bound[i].rows = -1; /* counted at the first commit */
	for (i = 0; i < C_MAX; i++)
		c->c[i] = host->counter(self, counter_names[i]);
	*ctxp = c;
	return 0;
}

static void ss_destroy(void *ctx)
{
	struct ctx *c = ctx;

	schema_close_worker(c);
	schema_close(c);
	schema_close_lock(c);
	reconcile_free(c->rc);
	batch_clear(c);
	free(c->lp);
	free(c->ra.k);
	free(c->pend);
	free(c->push_q);
	free(c);
}

const char *ss_preflight(void *ctx, const char **option, char *buf, size_t len); /* preflight.c */
int ss_command(void *ctx, struct wggwd_cmd *cmd, const char *verb, const char *args); /* command.c */

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = ss_create,
	.validate = ss_validate,
	.link = ss_link,
	.start = ss_start,
	.process = ss_process,
	.stop = ss_stop,
	.destroy = ss_destroy,
	.lookup = ss_lookup,
	.done = ss_done,
	.removed = ss_removed,
	.preflight = ss_preflight,
	.command = ss_command, /* command.c */
};

WGGWD_PLUGIN_DEFINE(
	.name = "store-sqlite",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "peer configs, lookup cache (positive and negative), replay timestamps and lookup limits in SQLite; reconciles the interface at start",
	.kind = WGGWD_STORE,
	.in = WGGWD_MSG_PEER_KEY | WGGWD_MSG_PEER,
	.out = 0,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
