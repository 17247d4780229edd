// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: what the gateway remembers across restarts, in one SQLite
 * file per interface.
 *
 *  - peer configs with their origin (pull, push, static, adopted) and
 *    install state; pulled ones double as the positive lookup cache (they
 *    expire), pushed ones stay until a pushed removal (kept as a tombstone,
 *    so an older add delivered late cannot bring the peer back);
 *  - negative entries for keys the resolver said it does not know;
 *  - the newest TAI64N timestamp seen per key (replayed initiations are
 *    dropped before they can trigger a lookup or move an endpoint);
 *  - per-key lookup counts, so a key cannot make the resolver ask the
 *    control plane more than lookups_per_key times per lookup_window, even
 *    across restarts.
 *
 * Batched writes (timestamps, lookup counts, cached answers, negative
 * entries, install state) wait in memory, where reads look first, and are
 * committed together every commit_interval or commit_batch keys (WAL,
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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "wgutil.h"

enum { UNKNOWN_IGNORE, UNKNOWN_ADOPT, UNKNOWN_REMOVE };
static const char *const unknown_choices[] = { "ignore", "adopt", "remove", NULL };
enum { CHECK_NONE, CHECK_QUICK, CHECK_FULL };
static const char *const check_choices[] = { "none", "quick", "full", NULL };

struct conf {
	char *path;
	int64_t ttl_ms;
	int64_t negative_ttl_ms;
	int64_t lookups_per_key;
	int64_t lookup_window_ms;
	int64_t commit_interval_ms;
	int64_t commit_batch;
	int unknown_peers;
	int integrity_check;
	int64_t lock_timeout_ms;
	uint64_t cache_size;
	int64_t tombstone_ttl_ms;
	int64_t timestamp_ttl_ms;
};

#define DAY_MS (86400000LL)

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
	{ .name = "unknown_peers", .type = WGGWD_OPT_ENUM, .def = "ignore", .choices = unknown_choices,
	  .offset = offsetof(struct conf, unknown_peers),
	  .help = "at start, peers on the interface the store knows nothing of: ignore (leave them: an operator or another tool may own them), adopt (record them as installed, config unknown), remove (the store is the only authority)" },
	{ .name = "integrity_check", .type = WGGWD_OPT_ENUM, .def = "quick", .choices = check_choices,
	  .offset = offsetof(struct conf, integrity_check),
	  .help = "check the database at start: none, quick (PRAGMA quick_check: O(size), about a second per GB) or full (integrity_check, also indexes)" },
	{ .name = "lock_timeout", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 0, .max = 60000,
	  .offset = offsetof(struct conf, lock_timeout_ms),
	  .help = "how long start waits for a database that another process holds locked before failing" },
	{ .name = "cache_size", .type = WGGWD_OPT_SIZE, .def = "8MiB", .min = 256 * 1024,
	  .max = 1LL << 30, .offset = offsetof(struct conf, cache_size),
	  .help = "SQLite page cache of the loop's connection (most of the store's memory)" },
	{ .name = "tombstone_ttl", .type = WGGWD_OPT_DURATION, .def = "24h", .min = 0, .max = 365 * DAY_MS,
	  .offset = offsetof(struct conf, tombstone_ttl_ms),
	  .help = "how long a pushed removal is remembered (with its version, so that an older add delivered late is refused as stale)" },
	{ .name = "timestamp_ttl", .type = WGGWD_OPT_DURATION, .def = "30d", .min = 60000, .max = 3650 * DAY_MS,
	  .offset = offsetof(struct conf, timestamp_ttl_ms),
	  .help = "how long the newest handshake timestamp of a key is kept after it was last seen (replays older than this are no longer recognised; keep it above the evictor's idle time)" },
	WGGWD_OPT_END
};

/* ------------------------------------------------------------- schema */

/* Each step takes user_version from its index to index + 1. Append only. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE peer ("
	"  key BLOB PRIMARY KEY NOT NULL,"      /* 32 bytes */
	"  origin INTEGER NOT NULL,"            /* enum wggwd_origin */
	"  removed INTEGER NOT NULL DEFAULT 0," /* pushed removal: tombstone */
	"  version INTEGER,"                    /* NULL: none given */
	"  keepalive INTEGER NOT NULL DEFAULT 0,"
	"  allowed BLOB NOT NULL,"              /* n x 18: family 4|6, cidr, addr[16] */
	"  psk BLOB,"                           /* 32 bytes or NULL */
	"  endpoint BLOB,"                      /* family 4|6, port (BE), addr[16] */
	"  expires INTEGER,"                    /* unix ms; NULL: never */
	"  installed INTEGER NOT NULL DEFAULT 0,"
	"  updated INTEGER NOT NULL"            /* unix ms */
	") WITHOUT ROWID;"
	"CREATE TABLE negative (key BLOB PRIMARY KEY NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE stamp (key BLOB PRIMARY KEY NOT NULL, tai64n BLOB NOT NULL,"
	"  seen INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE ratelimit (key BLOB PRIMARY KEY NOT NULL, win INTEGER NOT NULL,"
	"  count INTEGER NOT NULL) WITHOUT ROWID;",
	/* 1 -> 2: the start-up reconcile reads pushed peers without a full scan */
	"CREATE INDEX peer_pushed ON peer(origin, removed) WHERE origin = 2;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum stmt {
	S_BEGIN, S_BEGIN_READ, S_COMMIT, S_ROLLBACK, S_SYNC_FULL, S_SYNC_NORMAL,
	S_PEER_GET, S_PEER_PUT, S_PEER_INSTALLED, S_PEER_ADOPT,
	S_NEG_GET, S_NEG_PUT, S_NEG_DEL,
	S_STAMP_GET, S_STAMP_PUT,
	S_RL_GET, S_RL_PUT,
	S_SWEEP_PEER, S_SWEEP_NEG, S_SWEEP_STAMP, S_SWEEP_RL,
	S_DEL_PEER, S_DEL_NEG, S_DEL_STAMP, S_DEL_RL,
	S_MAX
};

static const char *const stmt_sql[S_MAX] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_BEGIN_READ] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SYNC_FULL] = "PRAGMA synchronous=FULL",
	[S_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
	[S_PEER_GET] = "SELECT origin, removed, version, keepalive, allowed, psk, endpoint,"
		       " expires, installed FROM peer WHERE key = ?1",
	[S_PEER_PUT] = "INSERT OR REPLACE INTO peer (key, origin, removed, version, keepalive,"
		       " allowed, psk, endpoint, expires, installed, updated)"
		       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10)",
	[S_PEER_INSTALLED] = "UPDATE peer SET installed = ?2 WHERE key = ?1 AND installed <> ?2",
	[S_PEER_ADOPT] = "INSERT OR IGNORE INTO peer (key, origin, allowed, installed, updated)"
			 " VALUES (?1, 0, x'', 1, ?2)",
	[S_NEG_GET] = "SELECT expires FROM negative WHERE key = ?1",
	[S_NEG_PUT] = "INSERT OR REPLACE INTO negative (key, expires) VALUES (?1, ?2)",
	[S_NEG_DEL] = "DELETE FROM negative WHERE key = ?1",
	[S_STAMP_GET] = "SELECT tai64n FROM stamp WHERE key = ?1",
	[S_STAMP_PUT] = "INSERT OR REPLACE INTO stamp (key, tai64n, seen) VALUES (?1, ?2, ?3)",
	[S_RL_GET] = "SELECT win, count FROM ratelimit WHERE key = ?1",
	[S_RL_PUT] = "INSERT OR REPLACE INTO ratelimit (key, win, count) VALUES (?1, ?2, ?3)",
	/* the sweeper walks each table in key order, a slice at a time:
	 * ?1 cursor, ?2 slice, ?3 (and ?4) what is dead */
	[S_SWEEP_PEER] = "SELECT key, (origin = 1 AND expires < ?3) OR (removed = 1 AND updated < ?4)"
			 " FROM peer WHERE key > ?1 ORDER BY key LIMIT ?2",
	[S_SWEEP_NEG] = "SELECT key, expires < ?3 FROM negative WHERE key > ?1 ORDER BY key LIMIT ?2",
	[S_SWEEP_STAMP] = "SELECT key, seen < ?3 FROM stamp WHERE key > ?1 ORDER BY key LIMIT ?2",
	[S_SWEEP_RL] = "SELECT key, win < ?3 FROM ratelimit WHERE key > ?1 ORDER BY key LIMIT ?2",
	/* what the sweeper found dead, if it still is at commit time */
	[S_DEL_PEER] = "DELETE FROM peer WHERE key = ?1 AND"
		       " ((origin = 1 AND expires < ?2) OR (removed = 1 AND updated < ?3))",
	[S_DEL_NEG] = "DELETE FROM negative WHERE key = ?1 AND expires < ?2",
	[S_DEL_STAMP] = "DELETE FROM stamp WHERE key = ?1 AND seen < ?2",
	[S_DEL_RL] = "DELETE FROM ratelimit WHERE key = ?1 AND win < ?2",
};

#define ALLOWED_REC 18
#define ENDPOINT_REC 19
#define SWEEP_SLICE 128
#define SWEEP_EVERY_MS 1000
#define CHECKPOINT_PAGES 1000 /* WAL pages before a background checkpoint */
#define RUN_BUSY_MS 100       /* busy timeout once running (loop thread) */
#define INJECT_SLICE 256      /* re-installs injected per loop turn */
#define PEND_BUCKETS 4096     /* hash of the batch (a power of two) */
#define VICTIMS_MAX (4 * SWEEP_SLICE)
#define PEND_SLACK 4          /* the batch may grow to this many commit_batch */

/* What a key has waiting in the batch (struct pend.what). */
#define P_STAMP (1u << 0)     /* newest timestamp                       */
#define P_RL (1u << 1)        /* lookup count in its window             */
#define P_NEG (1u << 2)       /* negative entry                         */
#define P_NEG_DEL (1u << 3)   /* ...or its removal                      */
#define P_PEER (1u << 4)      /* a pulled answer                        */
#define P_INSTALLED (1u << 5) /* install state                          */
#define P_ADOPT (1u << 6)     /* adopted from the interface             */

struct pulled {
	struct wggwd_peer peer; /* holds a preshared key: wiped when freed */
	int64_t expires;
};

struct pend {
	uint8_t key[WGGWD_KEY_LEN];
	uint32_t what;
	int32_t next;         /* hash chain: index in the pool, or -1 */
	uint8_t tai64n[12];
	int installed;
	int64_t stamp_seen, rl_win, rl_count, neg_expires;
	struct pulled *pp;
};

struct victim {
	uint8_t table;        /* 0 peer, 1 negative, 2 stamp, 3 ratelimit */
	uint8_t key[WGGWD_KEY_LEN];
};

enum {
	C_HIT, C_MISS, C_NEG_HIT, C_REPLAY, C_RATE_LIMITED, C_SAVED, C_WRITE_ERRORS,
	C_ADOPTED, C_RC_REMOVED, C_REINSTALLED, C_STALE, C_REMOVED, C_COMMITS,
	C_READ_ERRORS, C_PURGED, C_NEG_SAVED, C_CHECKPOINTS, C_MAX
};
static const char *const counter_names[C_MAX] = {
	"hit", "miss", "negative_hit", "replay", "rate_limited", "saved", "write_errors",
	"reconcile_adopted", "reconcile_removed", "reconcile_reinstalled", "stale",
	"removed", "commits", "read_errors", "purged", "negative_saved", "checkpoints",
};

struct keyvec {
	uint8_t (*k)[WGGWD_KEY_LEN];
	size_t n, cap;
};

/* The start-up reconcile, computed on the thread pool. */
struct reconcile {
	struct keyvec dump;      /* on the interface (sorted) */
	struct keyvec unknown;   /* on the interface, not in the store */
	struct keyvec tomb;      /* on the interface, removed by a push */
	struct keyvec reinstall; /* pushed, missing from the interface */
	int64_t dump_ms;         /* when the interface was listed */
	char err[256];
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;

	int lock_fd;
	sqlite3 *db;             /* loop thread */
	sqlite3_stmt *st[S_MAX];
	sqlite3 *wdb;            /* thread pool (one job at a time) */
	struct pend *pend;       /* the batch */
	size_t pend_n, pend_cap;
	bool commit_deferred;    /* until the running checkpoint is done */
	bool ckpt_busy;
	int32_t pend_head[PEND_BUCKETS];
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct victim victims[VICTIMS_MAX];
	size_t n_victims;
	bool reading;            /* a read transaction is open (until commit) */

	struct wggwd_timer *commit_timer, *push_timer, *sweep_timer, *retry_timer,
		*pump_timer;
	bool commit_armed, push_armed;
	struct wggwd_item **push_q; /* pushed items waiting for the group commit */
	size_t push_n, push_cap;

	uint8_t sweep_cursor[4][WGGWD_KEY_LEN];
	bool sweep_wrapped[4];

	bool worker_busy, stopping;
	uint64_t retry_ms;
	int64_t dump_ms;         /* when the last dump was asked for */
	unsigned wal_pages;
	int ckpt_rc;             /* written by the job, read in its after() */
	enum { RC_NONE, RC_WAITING, RC_RUNNING, RC_INJECTING } rc_state;
	struct reconcile *rc;    /* being computed, or being injected */
	size_t inject_at;

	uint64_t *c[C_MAX];
};

/* ----------------------------------------------------------- helpers */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sqlite_errno(sqlite3 *db, int rc)
{
	int sys = db ? sqlite3_system_errno(db) : 0;

	switch (rc & 0xff) {
	case SQLITE_OK:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_PERM:
	case SQLITE_AUTH:
	case SQLITE_READONLY:
		return -EACCES;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
		return sys ? -sys : -EIO;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	default:
		return -EIO;
	}
}

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

static void reconcile_free(struct reconcile *r)
{
	if (!r)
		return;
	free(r->dump.k);
	free(r->unknown.k);
	free(r->tomb.k);
	free(r->reinstall.k);
	free(r);
}

static int cmp_key(const void *a, const void *b)
{
	return memcmp(a, b, WGGWD_KEY_LEN);
}

static size_t allowed_encode(uint8_t *out, const struct wggwd_peer *p)
{
	unsigned i, n = p->has & WGGWD_PEER_HAS_ALLOWED_IPS ? p->n_allowed : 0;

	if (n > WGGWD_MAX_ALLOWED)
		n = WGGWD_MAX_ALLOWED;
	for (i = 0; i < n; i++) {
		out[i * ALLOWED_REC] = p->allowed[i].family == AF_INET6 ? 6 : 4;
		out[i * ALLOWED_REC + 1] = p->allowed[i].cidr;
		memcpy(out + i * ALLOWED_REC + 2, p->allowed[i].addr, 16);
	}
	return n * ALLOWED_REC;
}

static int allowed_decode(struct wggwd_peer *p, const uint8_t *b, size_t len)
{
	size_t i, n = len / ALLOWED_REC;

	if (len % ALLOWED_REC || n > WGGWD_MAX_ALLOWED)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		uint8_t fam = b[i * ALLOWED_REC], cidr = b[i * ALLOWED_REC + 1];

		if ((fam != 4 && fam != 6) || cidr > (fam == 4 ? 32 : 128))
			return -EINVAL;
		p->allowed[i].family = fam == 4 ? AF_INET : AF_INET6;
		p->allowed[i].cidr = cidr;
		memcpy(p->allowed[i].addr, b + i * ALLOWED_REC + 2, 16);
	}
	p->n_allowed = n;
	return 0;
}

static size_t endpoint_encode(uint8_t out[ENDPOINT_REC], const union wggwd_sockaddr *a)
{
	memset(out, 0, ENDPOINT_REC);
	if (a->sa.sa_family == AF_INET) {
		out[0] = 4;
		memcpy(out + 1, &a->in4.sin_port, 2);
		memcpy(out + 3, &a->in4.sin_addr, 4);
	} else if (a->sa.sa_family == AF_INET6) {
		out[0] = 6;
		memcpy(out + 1, &a->in6.sin6_port, 2);
		memcpy(out + 3, &a->in6.sin6_addr, 16);
	} else {
		return 0;
	}
	return ENDPOINT_REC;
}

static int endpoint_decode(union wggwd_sockaddr *a, const uint8_t *b, size_t len)
{
	memset(a, 0, sizeof(*a));
	if (len != ENDPOINT_REC || (b[0] != 4 && b[0] != 6))
		return -EINVAL;
	if (b[0] == 4) {
		a->in4.sin_family = AF_INET;
		memcpy(&a->in4.sin_port, b + 1, 2);
		memcpy(&a->in4.sin_addr, b + 3, 4);
	} else {
		a->in6.sin6_family = AF_INET6;
		memcpy(&a->in6.sin6_port, b + 1, 2);
		memcpy(&a->in6.sin6_addr, b + 3, 16);
	}
	return 0;
}

/* Run a one-shot statement that returns no rows we care about. */
static int step_done(struct ctx *c, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	c->host->log(c->self, WGGWD_LOG_WARN, "%s: %s", sqlite3_sql(s), sqlite3_errmsg(c->db));
	return sqlite_errno(c->db, rc);
}

/* ------------------------------------------------------ pending writes */

/*
 * Batched writes wait here until the next commit; reads look here first
 * (read-your-writes). Holding them in memory rather than in an open
 * transaction keeps the write lock short and lets the WAL restart from its
 * beginning once a background checkpoint has caught up, so it does not
 * grow under a steady stream of writes.
 */
static uint32_t pend_bucket(struct ctx *c, const uint8_t *key)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint32_t v;

	/* keyed: clients choose their keys, not our chains */
	crypto_shorthash(h, key, WGGWD_KEY_LEN, c->hash_key);
	memcpy(&v, h, sizeof(v));
	return v & (PEND_BUCKETS - 1);
}

static struct pend *pend_find(struct ctx *c, const uint8_t *key)
{
	int32_t i;

	if (!c->pend_n)
		return NULL;
	for (i = c->pend_head[pend_bucket(c, key)]; i >= 0; i = c->pend[i].next)
		if (!memcmp(c->pend[i].key, key, WGGWD_KEY_LEN))
			return &c->pend[i];
	return NULL;
}

static void pend_clear(struct ctx *c)
{
	size_t i;

	for (i = 0; i < c->pend_n; i++) {
		if (c->pend[i].pp) {
			sodium_memzero(c->pend[i].pp, sizeof(*c->pend[i].pp));
			free(c->pend[i].pp);
		}
	}
	c->pend_n = 0;
	for (i = 0; i < PEND_BUCKETS; i++)
		c->pend_head[i] = -1;
}

static int commit(struct ctx *c, bool force);

/* The entry for a key, created if need be. The batch is committed once it
 * holds commit_batch keys, unless a checkpoint is running (see commit());
 * the pool holds PEND_SLACK times that, and is committed when full. */
static struct pend *pend_get(struct ctx *c, const uint8_t *key)
{
	struct pend *e = pend_find(c, key);
	uint32_t b;

	if (e)
		return e;
	if (c->pend_n == c->pend_cap)
		commit(c, true);
	b = pend_bucket(c, key);
	e = &c->pend[c->pend_n];
	memset(e, 0, sizeof(*e));
	memcpy(e->key, key, WGGWD_KEY_LEN);
	e->next = c->pend_head[b];
	c->pend_head[b] = (int32_t)c->pend_n++;
	return e;
}

/* After adding to the batch: commit it now if full, else soon. */
static void pend_added(struct ctx *c)
{
	if (!c->pend_n)
		return;
	if (c->pend_n >= (size_t)c->conf->commit_batch) {
		commit(c, false);
	} else if (!c->commit_armed && c->commit_timer) {
		c->host->timer_start(c->commit_timer, c->conf->commit_interval_ms, 0);
		c->commit_armed = true;
	}
}

/* Reads share one read transaction until the next commit: a statement
 * of its own would take and drop the WAL read lock (fcntl calls) each
 * time. Only this connection writes, so the snapshot is never stale. */
static void ensure_read(struct ctx *c)
{
	if (c->reading || !sqlite3_get_autocommit(c->db))
		return;
	if (step_done(c, c->st[S_BEGIN_READ]))
		return;
	c->reading = true;
	if (!c->commit_armed && c->commit_timer) {
		c->host->timer_start(c->commit_timer, c->conf->commit_interval_ms, 0);
		c->commit_armed = true;
	}
}

/* ------------------------------------------------------------ writing */

/* One statement inside a transaction. */
static int bind_step(struct ctx *c, enum stmt which, const uint8_t *key, const void *blob,
		     size_t blob_len, int nargs, int64_t a, int64_t b)
{
	sqlite3_stmt *s = c->st[which];
	int i = 2;

	sqlite3_bind_blob(s, 1, key, WGGWD_KEY_LEN, SQLITE_STATIC);
	if (blob)
		sqlite3_bind_blob(s, i++, blob, blob_len, SQLITE_STATIC);
	if (nargs > 0)
		sqlite3_bind_int64(s, i++, a);
	if (nargs > 1)
		sqlite3_bind_int64(s, i++, b);
	return step_done(c, s);
}

static int put_peer(struct ctx *c, const struct wggwd_peer *p, int origin, bool removed,
		    bool has_expires, int64_t expires)
{
	sqlite3_stmt *s = c->st[S_PEER_PUT];
	uint8_t allowed[WGGWD_MAX_ALLOWED * ALLOWED_REC], ep[ENDPOINT_REC];
	size_t n = allowed_encode(allowed, p);

	sqlite3_bind_blob(s, 1, p->public_key, WGGWD_KEY_LEN, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, origin);
	sqlite3_bind_int(s, 3, removed);
	if (p->has & WGGWD_PEER_HAS_VERSION)
		sqlite3_bind_int64(s, 4, (int64_t)p->version);
	sqlite3_bind_int(s, 5, p->has & WGGWD_PEER_HAS_KEEPALIVE ? p->keepalive : 0);
	sqlite3_bind_blob(s, 6, allowed, n, SQLITE_STATIC);
	if (p->has & WGGWD_PEER_HAS_PRESHARED_KEY)
		sqlite3_bind_blob(s, 7, p->preshared_key, WGGWD_KEY_LEN, SQLITE_STATIC);
	if ((p->has & WGGWD_PEER_HAS_ENDPOINT) && endpoint_encode(ep, &p->endpoint))
		sqlite3_bind_blob(s, 8, ep, ENDPOINT_REC, SQLITE_STATIC);
	if (has_expires)
		sqlite3_bind_int64(s, 9, expires);
	sqlite3_bind_int64(s, 10, now_ms());
	return step_done(c, s);
}

static int apply_pend(struct ctx *c, const struct pend *e, int64_t now)
{
	int ret = 0;

	if (e->what & P_STAMP)
		ret = bind_step(c, S_STAMP_PUT, e->key, e->tai64n, sizeof(e->tai64n), 1,
				e->stamp_seen, 0);
	if (!ret && (e->what & P_RL))
		ret = bind_step(c, S_RL_PUT, e->key, NULL, 0, 2, e->rl_win, e->rl_count);
	if (!ret && (e->what & P_NEG_DEL))
		ret = bind_step(c, S_NEG_DEL, e->key, NULL, 0, 0, 0, 0);
	if (!ret && (e->what & P_NEG))
		ret = bind_step(c, S_NEG_PUT, e->key, NULL, 0, 1, e->neg_expires, 0);
	if (!ret && (e->what & P_PEER))
		ret = put_peer(c, &e->pp->peer, e->pp->peer.origin, false, true, e->pp->expires);
	if (!ret && (e->what & P_ADOPT))
		ret = bind_step(c, S_PEER_ADOPT, e->key, NULL, 0, 1, now, 0);
	if (!ret && (e->what & P_INSTALLED))
		ret = bind_step(c, S_PEER_INSTALLED, e->key, NULL, 0, 1, e->installed, 0);
	return ret;
}

/* Dead rows the sweeper found; deleted only if still dead. */
static int apply_victims(struct ctx *c, int64_t now)
{
	static const enum stmt del[4] = { S_DEL_PEER, S_DEL_NEG, S_DEL_STAMP, S_DEL_RL };
	const struct conf *cf = c->conf;
	const int64_t dead[4] = { now, now, now - cf->timestamp_ttl_ms, now - cf->lookup_window_ms };
	size_t i;
	int ret = 0;

	for (i = 0; !ret && i < c->n_victims; i++) {
		unsigned t = c->victims[i].table;

		ret = bind_step(c, del[t], c->victims[i].key, NULL, 0, t ? 1 : 2, dead[t],
				now - cf->tombstone_ttl_ms);
		if (!ret && sqlite3_changes(c->db))
			(*c->c[C_PURGED])++;
	}
	return ret;
}

/*
 * Write the batch in one transaction (synchronous=NORMAL). While a
 * background checkpoint runs, the commit waits for it (unless `force`d,
 * or the pool is full): the WAL can only start again from its beginning
 * when a write transaction begins after a checkpoint that copied
 * everything, so a steady stream of commits would make it grow forever.
 */
static int commit(struct ctx *c, bool force)
{
	int64_t now = now_ms();
	size_t i, n = c->pend_n;
	int ret;

	if (c->commit_armed) {
		c->host->timer_stop(c->commit_timer);
		c->commit_armed = false;
	}
	if (c->reading) {
		step_done(c, c->st[S_COMMIT]); /* ends the read transaction */
		c->reading = false;
	}
	if (!c->pend_n && !c->n_victims)
		return 0;
	if (!force && c->ckpt_busy && c->pend_n < c->pend_cap) {
		c->commit_deferred = true; /* ckpt_after() commits */
		return 0;
	}
	c->commit_deferred = false;
	ret = step_done(c, c->st[S_BEGIN]);
	if (!ret)
		ret = apply_victims(c, now);
	for (i = 0; !ret && i < c->pend_n; i++)
		ret = apply_pend(c, &c->pend[i], now);
	if (!ret)
		ret = step_done(c, c->st[S_COMMIT]);
	if (ret) {
		(*c->c[C_WRITE_ERRORS])++;
		if (!sqlite3_get_autocommit(c->db))
			step_done(c, c->st[S_ROLLBACK]);
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "lost a batch of %zu cached answers, timestamps and limits: %s", n,
			     strerror(-ret));
	} else {
		(*c->c[C_COMMITS])++;
	}
	pend_clear(c);
	c->n_victims = 0;
	return ret;
}

static void on_commit_timer(void *arg)
{
	struct ctx *c = arg;

	c->commit_armed = false;
	commit(c, false);
}

/* ------------------------------------------------------------ reading */

/* What the store holds about a peer key. */
struct row {
	bool found;
	int origin;
	bool removed;
	bool has_version;
	uint64_t version;
	bool has_expires;
	int64_t expires;
	bool installed;
};

/* Read a peer row (the batch first); fill *p (if given) with its config. */
static int peer_get(struct ctx *c, const uint8_t *key, struct row *r, struct wggwd_peer *p)
{
	sqlite3_stmt *s = c->st[S_PEER_GET];
	struct pend *e = pend_find(c, key);
	int rc, ret = 0;

	memset(r, 0, sizeof(*r));
	if (e && (e->what & P_PEER)) {
		r->found = true;
		r->origin = e->pp->peer.origin;
		r->has_version = e->pp->peer.has & WGGWD_PEER_HAS_VERSION;
		r->version = e->pp->peer.version;
		r->has_expires = true;
		r->expires = e->pp->expires;
		if (p)
			*p = e->pp->peer;
		return 0;
	}
	ensure_read(c);
	sqlite3_bind_blob(s, 1, key, WGGWD_KEY_LEN, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		r->found = true;
		r->origin = sqlite3_column_int(s, 0);
		r->removed = sqlite3_column_int(s, 1);
		r->has_version = sqlite3_column_type(s, 2) != SQLITE_NULL;
		r->version = (uint64_t)sqlite3_column_int64(s, 2);
		r->has_expires = sqlite3_column_type(s, 7) != SQLITE_NULL;
		r->expires = sqlite3_column_int64(s, 7);
		r->installed = sqlite3_column_int(s, 8);
		if (p) {
			const void *psk = sqlite3_column_blob(s, 5);
			const void *ep = sqlite3_column_blob(s, 6);

			memset(p, 0, sizeof(*p));
			memcpy(p->public_key, key, WGGWD_KEY_LEN);
			p->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS |
				 WGGWD_PEER_HAS_KEEPALIVE;
			p->keepalive = sqlite3_column_int(s, 3);
			if (allowed_decode(p, sqlite3_column_blob(s, 4), sqlite3_column_bytes(s, 4)))
				ret = -EUCLEAN;
			if (psk) {
				if (sqlite3_column_bytes(s, 5) != WGGWD_KEY_LEN)
					ret = -EUCLEAN;
				else
					memcpy(p->preshared_key, psk, WGGWD_KEY_LEN);
				p->has |= WGGWD_PEER_HAS_PRESHARED_KEY;
			}
			if (ep) {
				if (endpoint_decode(&p->endpoint, ep, sqlite3_column_bytes(s, 6)))
					ret = -EUCLEAN;
				p->has |= WGGWD_PEER_HAS_ENDPOINT;
			}
			if (r->has_version) {
				p->version = r->version;
				p->has |= WGGWD_PEER_HAS_VERSION;
			}
			p->origin = r->origin;
		}
	} else if (rc != SQLITE_DONE) {
		ret = sqlite_errno(c->db, rc);
	}
	sqlite3_reset(s);
	if (ret) {
		char b64[WG_KEY_B64_LEN];

		(*c->c[C_READ_ERRORS])++;
		wg_key_to_b64(b64, key);
		c->host->log(c->self, WGGWD_LOG_WARN, "peer %s: unreadable row (%s); treated as unknown",
			     b64, ret == -EUCLEAN ? "malformed" : sqlite3_errmsg(c->db));
		if (p)
			sodium_memzero(p->preshared_key, sizeof(p->preshared_key));
		r->found = false;
	}
	return ret;
}

/* Single-row reads from the database: 1 if found, 0 if not, -errno. */
static int get_row(struct ctx *c, enum stmt which, const uint8_t *key, int64_t *a,
		   int64_t *b, uint8_t *blob, size_t blob_len)
{
	sqlite3_stmt *s = c->st[which];
	int rc, ret = 0;

	ensure_read(c);
	sqlite3_bind_blob(s, 1, key, WGGWD_KEY_LEN, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		ret = 1;
		if (blob) {
			if ((size_t)sqlite3_column_bytes(s, 0) != blob_len)
				ret = 0; /* malformed: as if absent */
			else
				memcpy(blob, sqlite3_column_blob(s, 0), blob_len);
		} else {
			*a = sqlite3_column_int64(s, 0);
			if (b)
				*b = sqlite3_column_int64(s, 1);
		}
	} else if (rc != SQLITE_DONE) {
		ret = sqlite_errno(c->db, rc);
		(*c->c[C_READ_ERRORS])++;
	}
	sqlite3_reset(s);
	return ret;
}

/* ------------------------------------------------------------- lookup */

/* The cache role; `sink_only`: no resolver follows (a miss is final). */
static int do_lookup(struct ctx *c, struct wggwd_item *it, bool sink_only)
{
	const uint8_t *key = it->public_key;
	int64_t now = now_ms(), a = 0, b = 0;
	struct pend *e = pend_find(c, key);
	struct row r;

	if (it->flags & WGGWD_ITEM_HAS_TIMESTAMP) {
		uint8_t last[12];
		int have;

		if (e && (e->what & P_STAMP)) {
			memcpy(last, e->tai64n, sizeof(last));
			have = 1;
		} else {
			have = get_row(c, S_STAMP_GET, key, NULL, NULL, last, sizeof(last));
		}
		if (have == 1 && memcmp(it->tai64n, last, sizeof(last)) <= 0) {
			(*c->c[C_REPLAY])++;
			it->drop_reason = "replay";
			return WGGWD_DROP;
		}
		e = pend_get(c, key);
		memcpy(e->tai64n, it->tai64n, sizeof(e->tai64n));
		e->stamp_seen = now;
		e->what |= P_STAMP;
	}

	peer_get(c, key, &r, &it->peer);
	if (r.found && !r.removed && r.origin != WGGWD_ORIGIN_NONE &&
	    (!r.has_expires || r.expires > now)) {
		it->peer.origin = r.origin;
		if (r.has_expires) {
			it->peer.ttl_s = (uint32_t)((r.expires - now + 999) / 1000);
			it->peer.has |= WGGWD_PEER_HAS_TTL;
		}
		it->flags |= WGGWD_ITEM_CACHED;
		(*c->c[C_HIT])++;
		goto out;
	}
	sodium_memzero(&it->peer, sizeof(it->peer));

	if (e && (e->what & (P_NEG | P_NEG_DEL)))
		a = e->what & P_NEG ? e->neg_expires : 0;
	else if (get_row(c, S_NEG_GET, key, &a, NULL, NULL, 0) != 1)
		a = 0;
	if (a > now) {
		(*c->c[C_NEG_HIT])++;
		it->drop_reason = "unknown_cached";
		goto drop;
	}
	if (sink_only) {
		(*c->c[C_MISS])++;
		it->drop_reason = "unknown_key";
		goto drop;
	}
	if (c->conf->lookups_per_key) {
		if (e && (e->what & P_RL)) {
			a = e->rl_win;
			b = e->rl_count;
		} else if (get_row(c, S_RL_GET, key, &a, &b, NULL, 0) != 1) {
			a = b = 0;
		}
		if (a + c->conf->lookup_window_ms <= now || a > now) {
			a = now; /* a new window */
			b = 0;
		}
		if (b >= c->conf->lookups_per_key) {
			(*c->c[C_RATE_LIMITED])++;
			it->drop_reason = "rate_limited";
			goto drop;
		}
		e = pend_get(c, key);
		e->rl_win = a;
		e->rl_count = b + 1;
		e->what |= P_RL;
	}
	(*c->c[C_MISS])++;
out:
	pend_added(c);
	return WGGWD_CONTINUE;
drop:
	pend_added(c);
	return WGGWD_DROP;
}

static int ss_lookup(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;

	if (!c->db) {
		it->drop_reason = "store_closed";
		return WGGWD_ERROR;
	}
	if (!(it->type & WGGWD_MSG_PEER_KEY) || it->type & WGGWD_MSG_PEER)
		return WGGWD_CONTINUE; /* a config already: nothing to look up */
	return do_lookup(c, it, false);
}

/* ------------------------------------------------------- push (sink) */

static bool is_push(const struct wggwd_item *it)
{
	return it->transport == WGGWD_TR_PUSH || it->peer.origin == WGGWD_ORIGIN_PUSH;
}

/* Apply one pushed item inside the group's transaction; its verdict. */
static int push_apply(struct ctx *c, struct wggwd_item *it)
{
	struct wggwd_peer *p = &it->peer;
	char b64[WG_KEY_B64_LEN];
	struct row r;

	if (!(p->has & WGGWD_PEER_HAS_PUBLIC_KEY)) {
		if (it->type & WGGWD_MSG_PEER_KEY) {
			memcpy(p->public_key, it->public_key, WGGWD_KEY_LEN);
			p->has |= WGGWD_PEER_HAS_PUBLIC_KEY;
		} else {
			it->drop_reason = "no_public_key";
			return WGGWD_DROP;
		}
	}
	peer_get(c, p->public_key, &r, NULL);
	if (r.found && r.has_version && (p->has & WGGWD_PEER_HAS_VERSION) &&
	    p->version < r.version) {
		wg_key_to_b64(b64, p->public_key);
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "peer %s: pushed version %llu is older than the stored %llu; ignored",
			     b64, (unsigned long long)p->version, (unsigned long long)r.version);
		(*c->c[C_STALE])++;
		it->drop_reason = "stale";
		return WGGWD_DONE; /* nothing to do, not an error: it may be ACKed */
	}
	p->origin = WGGWD_ORIGIN_PUSH;
	if (it->op == WGGWD_OP_REMOVE) {
		struct wggwd_peer tomb;

		memset(&tomb, 0, sizeof(tomb));
		memcpy(tomb.public_key, p->public_key, WGGWD_KEY_LEN);
		tomb.has = WGGWD_PEER_HAS_PUBLIC_KEY | (p->has & WGGWD_PEER_HAS_VERSION);
		tomb.version = p->version;
		if (put_peer(c, &tomb, WGGWD_ORIGIN_PUSH, true, false, 0))
			goto err;
		(*c->c[C_REMOVED])++;
		return WGGWD_CONTINUE;
	}
	if (put_peer(c, p, WGGWD_ORIGIN_PUSH, false, false, 0))
		goto err;
	(*c->c[C_SAVED])++;
	return WGGWD_CONTINUE;
err:
	it->drop_reason = "store_write";
	return WGGWD_ERROR;
}

/* The group commit: every pushed item of this loop turn is written and
 * fsynced (synchronous=FULL) together, then they all go on. */
static void push_flush(void *arg)
{
	struct ctx *c = arg;
	struct wggwd_item **q = c->push_q;
	size_t i, n = c->push_n;
	int *v, ret;

	c->push_armed = false;
	if (!n)
		return;
	c->push_q = NULL;
	c->push_n = c->push_cap = 0;
	v = calloc(n, sizeof(*v));
	/* the batch first (at NORMAL): reads below need no look at it, and
	 * a pulled answer waiting there cannot overwrite a pushed config */
	commit(c, true);
	ret = v ? step_done(c, c->st[S_SYNC_FULL]) : -ENOMEM;
	if (!ret) {
		ret = step_done(c, c->st[S_BEGIN]);
		for (i = 0; !ret && i < n; i++) {
			v[i] = push_apply(c, q[i]);
			if (v[i] == WGGWD_ERROR)
				ret = -EIO; /* the transaction may be gone: fail them all */
		}
		if (!ret)
			ret = step_done(c, c->st[S_COMMIT]);
		if (ret && !sqlite3_get_autocommit(c->db))
			step_done(c, c->st[S_ROLLBACK]);
		step_done(c, c->st[S_SYNC_NORMAL]);
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
			q[i]->drop_reason = "store_write";
		c->host->complete(c->self, q[i], verdict);
	}
	free(v);
	free(q);
}

static int push_enqueue(struct ctx *c, struct wggwd_item *it)
{
	if (c->push_n == c->push_cap) {
		size_t cap = c->push_cap ? c->push_cap * 2 : 64;
		struct wggwd_item **q = realloc(c->push_q, cap * sizeof(*q));

		if (!q) {
			it->drop_reason = "no_memory";
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

static int ss_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	struct wggwd_peer *p = &it->peer;
	struct pend *e;
	int64_t ttl_ms;
	struct row r;
	int v;

	if (!c->db) {
		it->drop_reason = "store_closed";
		return WGGWD_ERROR;
	}
	if (is_push(it))
		return push_enqueue(c, it);
	if (!(it->type & WGGWD_MSG_PEER) ||
	    !(p->has & (WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS))) {
		/* no resolver after us: the store is the only answer */
		v = do_lookup(c, it, true);
		if (v == WGGWD_CONTINUE)
			it->type = WGGWD_MSG_PEER;
		return v;
	}
	if (it->flags & WGGWD_ITEM_CACHED)
		return WGGWD_CONTINUE; /* our own answer */

	/* a resolver's answer: cache it */
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
	peer_get(c, p->public_key, &r, NULL);
	if (r.found && r.origin == WGGWD_ORIGIN_PUSH)
		return WGGWD_CONTINUE;
	e = pend_get(c, p->public_key);
	if (!e->pp && !(e->pp = malloc(sizeof(*e->pp)))) {
		(*c->c[C_WRITE_ERRORS])++;
		pend_added(c);
		return WGGWD_CONTINUE; /* a cache we cannot fill is no reason to refuse */
	}
	e->pp->peer = *p;
	/* where a pulled peer's packet came from is not config: not kept */
	e->pp->peer.has &= ~WGGWD_PEER_HAS_ENDPOINT;
	memset(&e->pp->peer.endpoint, 0, sizeof(e->pp->peer.endpoint));
	e->pp->expires = now_ms() + ttl_ms;
	e->what = (e->what | P_PEER | P_NEG_DEL) & ~P_NEG;
	(*c->c[C_SAVED])++;
	pend_added(c);
	return WGGWD_CONTINUE;
}

static void ss_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	struct pend *e;

	if (!c->db)
		return;
	if (verdict == WGGWD_DROP && (it->flags & WGGWD_ITEM_NOT_FOUND)) {
		if (c->conf->negative_ttl_ms <= 0)
			return;
		e = pend_get(c, it->public_key);
		e->neg_expires = now_ms() + c->conf->negative_ttl_ms;
		e->what = (e->what | P_NEG) & ~P_NEG_DEL;
		(*c->c[C_NEG_SAVED])++;
		pend_added(c);
		return;
	}
	if (verdict != WGGWD_CONTINUE || !it->t[WGGWD_T_INSTALLED])
		return;
	e = pend_get(c, it->peer.has & WGGWD_PEER_HAS_PUBLIC_KEY ? it->peer.public_key :
		     it->public_key);
	e->installed = it->op != WGGWD_OP_REMOVE;
	e->what |= P_INSTALLED;
	pend_added(c);
}

/* ------------------------------------------------------------ sweeper */

/* Every SWEEP_EVERY_MS: look at the next slice of each table, and delete
 * (in the next commit, if still dead then) what is dead. Bounded work per
 * turn; a full pass over 10^6 rows takes about two hours, which is fine
 * for entries that are dead already. */
static void on_sweep(void *arg)
{
	static const enum stmt sel[4] = { S_SWEEP_PEER, S_SWEEP_NEG, S_SWEEP_STAMP, S_SWEEP_RL };
	struct ctx *c = arg;
	const struct conf *cf = c->conf;
	int64_t now = now_ms();
	const int64_t dead[4] = { now, now, now - cf->timestamp_ttl_ms, now - cf->lookup_window_ms };
	unsigned t;

	ensure_read(c);
	for (t = 0; t < 4; t++) {
		sqlite3_stmt *s = c->st[sel[t]];
		size_t rows = 0;
		int rc;

		if (c->sweep_wrapped[t])
			sqlite3_bind_blob(s, 1, "", 0, SQLITE_STATIC);
		else
			sqlite3_bind_blob(s, 1, c->sweep_cursor[t], WGGWD_KEY_LEN, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, SWEEP_SLICE);
		sqlite3_bind_int64(s, 3, dead[t]);
		if (t == 0)
			sqlite3_bind_int64(s, 4, now - cf->tombstone_ttl_ms);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			if (sqlite3_column_bytes(s, 0) != WGGWD_KEY_LEN)
				continue;
			memcpy(c->sweep_cursor[t], sqlite3_column_blob(s, 0), WGGWD_KEY_LEN);
			rows++;
			if (sqlite3_column_int(s, 1) && c->n_victims < VICTIMS_MAX) {
				c->victims[c->n_victims].table = t;
				memcpy(c->victims[c->n_victims++].key, c->sweep_cursor[t],
				       WGGWD_KEY_LEN);
			}
		}
		sqlite3_reset(s);
		c->sweep_wrapped[t] = rows < SWEEP_SLICE;
		if (rc != SQLITE_DONE)
			(*c->c[C_READ_ERRORS])++;
	}
	if (c->n_victims)
		commit(c, false);
}

/* -------------------------------------------------- thread-pool jobs */

static void run_worker(struct ctx *c);

static void close_worker_db(struct ctx *c)
{
	if (c->wdb) {
		sqlite3_close_v2(c->wdb);
		c->wdb = NULL;
	}
}

static void close_lock(struct ctx *c)
{
	/* only once SQLite holds no lock on the file any more: closing any
	 * descriptor of it would drop SQLite's POSIX locks */
	if (c->lock_fd >= 0 && !c->db && !c->wdb) {
		close(c->lock_fd);
		c->lock_fd = -1;
	}
}

static void ckpt_work(void *arg)
{
	struct ctx *c = arg;
	int log, done;

	c->ckpt_rc = sqlite3_wal_checkpoint_v2(c->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE,
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
	}
	if (c->commit_deferred && c->db)
		commit(c, false);
	if (c->stopping) {
		close_worker_db(c);
		close_lock(c);
		return;
	}
	run_worker(c);
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct ctx *c = arg;

	(void)db;
	(void)name;
	c->wal_pages = pages;
	if (pages >= CHECKPOINT_PAGES)
		run_worker(c);
	return SQLITE_OK;
}

/* The start-up reconcile, on the second connection: which peers on the
 * interface the store does not know, which it holds as removed, and which
 * pushed peers are missing from the interface. */
static void rc_work(void *arg)
{
	struct ctx *c = arg;
	struct reconcile *r = c->rc;
	sqlite3_stmt *get = NULL, *scan = NULL;
	size_t i;
	int rc;

	rc = sqlite3_prepare_v2(c->wdb, "SELECT removed FROM peer WHERE key = ?1", -1, &get, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(c->wdb, "SELECT key, removed FROM peer"
					" WHERE origin = 2 AND updated < ?1", -1, &scan, NULL);
	if (rc != SQLITE_OK)
		goto out;
	/* pushed after the dump: installed since, not missing */
	sqlite3_bind_int64(scan, 1, r->dump_ms);
	for (i = 0; i < r->dump.n; i++) {
		sqlite3_bind_blob(get, 1, r->dump.k[i], WGGWD_KEY_LEN, SQLITE_STATIC);
		rc = sqlite3_step(get);
		if (rc == SQLITE_DONE)
			rc = keyvec_push(&r->unknown, r->dump.k[i]) ? SQLITE_NOMEM : SQLITE_OK;
		else if (rc == SQLITE_ROW)
			rc = sqlite3_column_int(get, 0) &&
			     keyvec_push(&r->tomb, r->dump.k[i]) ? SQLITE_NOMEM : SQLITE_OK;
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
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
out:
	if (rc != SQLITE_OK)
		snprintf(r->err, sizeof(r->err), "%s", rc == SQLITE_NOMEM ? "out of memory" :
			 sqlite3_errmsg(c->wdb));
	sqlite3_finalize(get);
	sqlite3_finalize(scan);
}

struct remove_req {
	struct ctx *c;
	size_t n;
};

static void on_removed(void *arg, int status)
{
	struct remove_req *q = arg;
	struct ctx *c = q->c;

	if (status)
		c->host->log(c->self, WGGWD_LOG_WARN, "reconcile: removing %zu peers failed: %s",
			     q->n, strerror(status < 0 ? -status : status));
	else
		*c->c[C_RC_REMOVED] += q->n;
	free(q);
}

/* Re-install pushed peers missing from the interface, a slice per turn. */
static void on_pump(void *arg)
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

		peer_get(c, key, &row, &it->peer);
		if (!row.found || row.removed || row.origin != WGGWD_ORIGIN_PUSH) {
			c->host->item_free(c->self, it); /* changed meanwhile */
			continue;
		}
		it->type = WGGWD_MSG_PEER;
		it->transport = WGGWD_TR_PUSH;
		it->op = WGGWD_OP_ADD;
		memcpy(it->public_key, key, WGGWD_KEY_LEN);
		if (it->peer.has & WGGWD_PEER_HAS_ENDPOINT)
			it->endpoint = it->peer.endpoint;
		ret = c->host->inject(c->self, it); /* frees the item if it fails */
		if (ret) {
			c->host->log(c->self, WGGWD_LOG_WARN,
				     "reconcile: cannot re-install pushed peers: %s",
				     ret == -ENOENT ? "nothing follows the store in its first pipeline" :
				     strerror(-ret));
			c->inject_at = r->reinstall.n;
			break;
		}
		(*c->c[C_REINSTALLED])++;
	}
	if (c->inject_at < r->reinstall.n) {
		c->host->timer_start(c->pump_timer, 0, 0);
		return;
	}
	c->host->log(c->self, WGGWD_LOG_INFO, "reconcile: %llu pushed peers re-installed",
		     (unsigned long long)*c->c[C_REINSTALLED]);
	reconcile_free(r);
	c->rc = NULL;
	c->rc_state = RC_NONE;
}

static void rc_after(void *arg, int status)
{
	struct ctx *c = arg;
	struct reconcile *r = c->rc;
	const struct wggwd_installer *ins = c->host->installer(c->self);
	struct keyvec rm = { 0 };
	size_t i;

	c->worker_busy = false;
	if (status || c->stopping || r->err[0]) {
		if (r->err[0])
			c->host->log(c->self, WGGWD_LOG_ERROR, "reconcile failed: %s", r->err);
		reconcile_free(r);
		c->rc = NULL;
		c->rc_state = RC_NONE;
		if (c->stopping) {
			close_worker_db(c);
			close_lock(c);
		}
		return;
	}
	for (i = 0; i < r->unknown.n; i++) {
		if (c->conf->unknown_peers == UNKNOWN_ADOPT) {
			struct pend *e = pend_get(c, r->unknown.k[i]);

			e->what |= P_ADOPT;
			(*c->c[C_ADOPTED])++;
			pend_added(c);
		} else if (c->conf->unknown_peers == UNKNOWN_REMOVE) {
			keyvec_push(&rm, r->unknown.k[i]);
		}
	}
	for (i = 0; i < r->tomb.n; i++)
		keyvec_push(&rm, r->tomb.k[i]);
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "reconcile: %zu peers on %s: %zu unknown to the store (%s), %zu removed by a push, %zu pushed peers missing",
		     r->dump.n, ins ? ins->name : "?", r->unknown.n,
		     unknown_choices[c->conf->unknown_peers], r->tomb.n, r->reinstall.n);
	if (rm.n && ins && ins->ops->remove) {
		struct remove_req *q = calloc(1, sizeof(*q));
		int ret = q ? 0 : -ENOMEM;

		if (q) {
			q->c = c;
			q->n = rm.n;
			ret = ins->ops->remove(ins->ctx, (const uint8_t (*)[WGGWD_KEY_LEN])rm.k, rm.n,
					       on_removed, q);
			if (ret)
				free(q);
		}
		if (ret)
			c->host->log(c->self, WGGWD_LOG_WARN, "reconcile: cannot remove %zu peers: %s",
				     rm.n, strerror(-ret));
	}
	free(rm.k);
	if (r->reinstall.n) {
		c->rc_state = RC_INJECTING;
		c->inject_at = 0;
		on_pump(c);
	} else {
		reconcile_free(r);
		c->rc = NULL;
		c->rc_state = RC_NONE;
	}
	run_worker(c);
}

/* Start whatever thread-pool job is waiting (one at a time). */
static void run_worker(struct ctx *c)
{
	int ret;

	if (c->worker_busy || c->stopping || !c->wdb)
		return;
	if (c->rc_state == RC_WAITING) {
		c->rc_state = RC_RUNNING;
		c->worker_busy = true;
		ret = c->host->queue_work(c->self, rc_work, rc_after, c);
		if (ret) {
			c->worker_busy = false;
			c->host->log(c->self, WGGWD_LOG_ERROR, "reconcile: cannot queue: %s",
				     strerror(ret < 0 ? -ret : ret));
			reconcile_free(c->rc);
			c->rc = NULL;
			c->rc_state = RC_NONE;
		}
		return;
	}
	if (c->wal_pages >= CHECKPOINT_PAGES) {
		c->worker_busy = c->ckpt_busy = true;
		if (c->host->queue_work(c->self, ckpt_work, ckpt_after, c))
			c->worker_busy = c->ckpt_busy = false;
	}
}

static void dump_later(struct ctx *c)
{
	c->host->timer_start(c->retry_timer, c->retry_ms, 0);
	c->retry_ms = c->retry_ms * 2 > 30000 ? 30000 : c->retry_ms * 2;
}

static void on_dump(void *arg, int status, const struct wggwd_peer_state *peers, size_t n)
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
		if (keyvec_push(&r->dump, peers[i].public_key))
			goto oom;
	if (r->dump.n)
		qsort(r->dump.k, r->dump.n, WGGWD_KEY_LEN, cmp_key);
	/* the second connection sees only what is committed */
	commit(c, true);
	c->rc = r;
	c->rc_state = RC_WAITING;
	run_worker(c);
	return;
oom:
	reconcile_free(r);
	c->host->log(c->self, WGGWD_LOG_ERROR, "reconcile: out of memory");
}

static void on_retry(void *arg)
{
	struct ctx *c = arg;
	const struct wggwd_installer *ins = c->host->installer(c->self);
	int ret;

	if (c->stopping || !ins || !ins->ops->dump)
		return;
	c->dump_ms = now_ms();
	ret = ins->ops->dump(ins->ctx, on_dump, c);
	if (ret)
		on_dump(c, ret, NULL, 0);
}

/* ------------------------------------------------------- start, stop */

static void close_db(struct ctx *c)
{
	int i;

	for (i = 0; i < S_MAX; i++) {
		sqlite3_finalize(c->st[i]);
		c->st[i] = NULL;
	}
	if (c->db) {
		sqlite3_close_v2(c->db); /* the last connection checkpoints */
		c->db = NULL;
	}
}

/* Explain a failure to open or use the database at start, and what to do. */
static int start_error(struct ctx *c, int rc, const char *what)
{
	const char *path = c->conf->path;
	const char *msg = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
	int ret = sqlite_errno(c->db, rc);

	switch (rc & 0xff) {
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: %s: the database is corrupt or not a wggwd store (%s). Stop wggwd, move %s and its -wal and -shm files aside (keep them for analysis) and start again: the store starts empty, pushed peers come back as the control plane redelivers them, pulled ones on their next handshake",
			     path, what, msg, path);
		return -EUCLEAN;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: %s: the database stayed locked by another process for lock_timeout (%lld ms): a sqlite3 shell or a backup holding a transaction? End it and start again",
			     path, what, (long long)c->conf->lock_timeout_ms);
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: %s: %s (%s): the daemon must be able to read and write the file and create files in its directory",
			     path, what, msg, ret ? strerror(-ret) : "?");
		return ret ? ret : -EACCES;
	case SQLITE_FULL:
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: %s: the disk is full", path, what);
		return -ENOSPC;
	default:
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: %s: %s", path, what, msg);
		return ret ? ret : -EIO;
	}
}

static int exec_sql(struct ctx *c, sqlite3 *db, const char *sql, const char *what)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : start_error(c, rc, what);
}

/* One row, one text column (a PRAGMA's answer) into buf. */
static int query_text(struct ctx *c, const char *sql, char *buf, size_t len, const char *what)
{
	sqlite3_stmt *s;
	int rc;

	rc = sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return start_error(c, rc, what);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		snprintf(buf, len, "%s", (const char *)sqlite3_column_text(s, 0) ?: "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		buf[0] = '\0';
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK) {
		int ret = start_error(c, rc, what);

		sqlite3_finalize(s);
		return ret;
	}
	sqlite3_finalize(s);
	return 0;
}

static int migrate(struct ctx *c)
{
	char buf[32], sql[64];
	int ret, v, i;

	ret = exec_sql(c, c->db, "BEGIN IMMEDIATE", "locking the database");
	if (ret)
		return ret;
	ret = query_text(c, "PRAGMA user_version", buf, sizeof(buf), "reading the schema version");
	if (ret)
		goto rollback;
	v = atoi(buf);
	if (v > SCHEMA_VERSION) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: schema version %d was written by a newer wggwd (this one knows up to %d); run that version, or move the file aside",
			     c->conf->path, v, SCHEMA_VERSION);
		ret = -EPROTO;
		goto rollback;
	}
	for (i = v; i < SCHEMA_VERSION; i++) {
		ret = exec_sql(c, c->db, migrations[i], "migrating the schema");
		if (ret)
			goto rollback;
	}
	if (v != SCHEMA_VERSION) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
		ret = exec_sql(c, c->db, sql, "migrating the schema");
		if (ret)
			goto rollback;
	}
	ret = exec_sql(c, c->db, "COMMIT", "migrating the schema");
	if (ret)
		goto rollback;
	if (v != SCHEMA_VERSION)
		c->host->log(c->self, WGGWD_LOG_INFO, "%s: schema %d -> %d", c->conf->path, v,
			     SCHEMA_VERSION);
	return 0;
rollback:
	sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

static int integrity(struct ctx *c)
{
	char buf[512];
	int ret;

	if (c->conf->integrity_check == CHECK_NONE)
		return 0;
	ret = query_text(c, c->conf->integrity_check == CHECK_FULL ? "PRAGMA integrity_check(1)" :
			 "PRAGMA quick_check(1)", buf, sizeof(buf), "checking integrity");
	if (ret)
		return ret;
	if (strcmp(buf, "ok")) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: integrity check failed (%s). Stop wggwd, move the file and its -wal and -shm files aside (keep them for analysis) and start again: the store starts empty, pushed peers come back as the control plane redelivers them, pulled ones on their next handshake",
			     c->conf->path, buf);
		return -EUCLEAN;
	}
	return 0;
}

static int open_db(struct ctx *c)
{
	const char *path = c->conf->path;
	char buf[64], sql[192];
	struct stat st;
	int ret, rc, i;

	c->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
	if (c->lock_fd < 0) {
		ret = -errno;
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: cannot open the database: %s; its directory must exist and the daemon must be able to read and write there",
			     path, strerror(errno));
		return ret;
	}
	if (fstat(c->lock_fd, &st) || !S_ISREG(st.st_mode)) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: not a regular file", path);
		return -EINVAL;
	}
	/* one daemon per database: flock() does not mix with SQLite's POSIX
	 * locks, and goes away with the process */
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB)) {
		ret = -errno;
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: in use by another process (another wggwd with the same path?): %s; give each store its own file",
			     path, strerror(errno));
		return ret == -EWOULDBLOCK ? -EBUSY : ret;
	}
	if (st.st_mode & 077)
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "%s: mode %04o lets group or others read preshared keys; chmod 600 it",
			     path, (unsigned)(st.st_mode & 07777));
	rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			     SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return start_error(c, rc, "opening");
	sqlite3_extended_result_codes(c->db, 0);
	sqlite3_busy_timeout(c->db, (int)c->conf->lock_timeout_ms);
	ret = query_text(c, "PRAGMA journal_mode=WAL", buf, sizeof(buf), "opening");
	if (ret)
		return ret;
	if (strcmp(buf, "wal")) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s: cannot switch to WAL mode (got \"%s\"): is it on a network file system?",
			     path, buf);
		return -EOPNOTSUPP;
	}
	snprintf(sql, sizeof(sql),
		 "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-%llu; PRAGMA temp_store=MEMORY;"
		 " PRAGMA journal_size_limit=67108864;",
		 (unsigned long long)(c->conf->cache_size / 1024));
	ret = exec_sql(c, c->db, sql, "configuring");
	if (ret)
		return ret;
	ret = integrity(c);
	if (ret)
		return ret;
	ret = migrate(c);
	if (ret)
		return ret;
	for (i = 0; i < S_MAX; i++) {
		rc = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&c->st[i], NULL);
		if (rc != SQLITE_OK)
			return start_error(c, rc == SQLITE_ERROR ? SQLITE_NOTADB : rc,
					   "preparing statements");
	}
	/* checkpoints run on the thread pool (the second connection) */
	sqlite3_wal_hook(c->db, wal_hook, c);
	rc = sqlite3_open_v2(path, &c->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_close_v2(c->wdb);
		c->wdb = NULL;
		return start_error(c, rc, "opening the second connection");
	}
	sqlite3_busy_timeout(c->wdb, 1000);
	sqlite3_exec(c->wdb, "PRAGMA cache_size=-1024", NULL, NULL, NULL);
	sqlite3_busy_timeout(c->db, RUN_BUSY_MS);
	return 0;
}

static void count_rows(struct ctx *c)
{
	sqlite3_stmt *s;
	long long pushed = -1;

	if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM peer WHERE origin = 2 AND removed = 0",
			       -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			pushed = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	c->host->log(c->self, WGGWD_LOG_INFO, "%s: schema %d, %lld pushed peers", c->conf->path,
		     SCHEMA_VERSION, pushed);
}

static int ss_start(void *ctx)
{
	struct ctx *c = ctx;
	const struct wggwd_installer *ins;
	int ret;

	ret = open_db(c);
	if (ret) {
		close_worker_db(c);
		close_db(c);
		close_lock(c);
		return ret;
	}
	count_rows(c);
	/* nothing can fail from here on: the timers would need closing */
	c->commit_timer = c->host->timer_new(c->self, on_commit_timer, c);
	c->push_timer = c->host->timer_new(c->self, push_flush, c);
	c->sweep_timer = c->host->timer_new(c->self, on_sweep, c);
	c->retry_timer = c->host->timer_new(c->self, on_retry, c);
	c->pump_timer = c->host->timer_new(c->self, on_pump, c);
	c->host->timer_start(c->sweep_timer, SWEEP_EVERY_MS, SWEEP_EVERY_MS);
	c->retry_ms = 1000;
	ins = c->host->installer(c->self);
	if (ins && ins->ops->dump) {
		/* the installer started before us, but may not be able to list
		 * its peers yet: on_dump tries again later */
		c->dump_ms = now_ms();
		ret = ins->ops->dump(ins->ctx, on_dump, c);
		if (ret)
			on_dump(c, ret, NULL, 0);
	}
	return 0;
}

static void ss_stop(void *ctx)
{
	struct ctx *c = ctx;

	if (c->push_n)
		push_flush(c);
	commit(c, true);
	c->stopping = true;
	c->host->timer_free(c->commit_timer);
	c->host->timer_free(c->push_timer);
	c->host->timer_free(c->sweep_timer);
	c->host->timer_free(c->retry_timer);
	c->host->timer_free(c->pump_timer);
	c->commit_timer = c->push_timer = c->sweep_timer = c->retry_timer = c->pump_timer = NULL;
	c->commit_armed = c->push_armed = false;
	if (!c->worker_busy)
		close_worker_db(c); /* else when its job is back */
	close_db(c);
	close_lock(c);
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
	randombytes_buf(c->hash_key, sizeof(c->hash_key));
	for (i = 0; i < PEND_BUCKETS; i++)
		c->pend_head[i] = -1;
	for (i = 0; i < 4; i++)
		c->sweep_wrapped[i] = true;
	for (i = 0; i < C_MAX; i++)
		c->c[i] = host->counter(self, counter_names[i]);
	*ctxp = c;
	return 0;
}

static void ss_destroy(void *ctx)
{
	struct ctx *c = ctx;

	close_worker_db(c);
	close_db(c);
	close_lock(c);
	reconcile_free(c->rc);
	pend_clear(c);
	free(c->pend);
	free(c->push_q);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = ss_create,
	.start = ss_start,
	.process = ss_process,
	.stop = ss_stop,
	.destroy = ss_destroy,
	.lookup = ss_lookup,
	.done = ss_done,
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
