// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite's private header: the context, and what its files share.
 *
 *   store_sqlite.c  options, roles (link), the ops the core calls
 *   schema.c        opening, checking and migrating the database
 *   row.c           rows <-> peers (allowed IPs, endpoints), single reads
 *   batch.c         the write batch, commits, the sweeper, checkpoints
 *   cache.c         the lookup cache: replays, hits, limits, answers kept
 *   push.c          pushed peers: versions, tombstones, the group commit
 *   reconcile.c     the interface against the store, at start
 *   live.c          installed pulled peers: revalidation, max_stale, leases,
 *                   live sessions kept across restarts
 */
#ifndef STORE_SQLITE_STORE_H
#define STORE_SQLITE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "wgutil.h"

enum { UNKNOWN_IGNORE, UNKNOWN_ADOPT, UNKNOWN_REMOVE };
enum { CHECK_NONE, CHECK_QUICK, CHECK_FULL };
extern const char *const store_unknown_choices[];

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
	int64_t max_negative;
	int64_t max_rate_rows;
	int64_t max_timestamps;
	int64_t revalidate_interval_ms;
	int64_t revalidate_batch;
	int64_t max_stale_ms;
};

#define DAY_MS (86400000LL)

enum stmt {
	S_BEGIN, S_BEGIN_READ, S_COMMIT, S_ROLLBACK, S_SYNC_FULL, S_SYNC_NORMAL,
	S_PEER_GET, S_PEER_PUT, S_PEER_PUSH, S_PEER_LIVE, S_PEER_ADOPT, S_PEER_FORGET,
	S_NEG_GET, S_NEG_PUT, S_NEG_SET, S_NEG_DEL,
	S_STAMP_GET, S_STAMP_PUT, S_STAMP_SET,
	S_RL_GET, S_RL_PUT, S_RL_SET,
	S_SWEEP_PEER, S_DEL_PEER,
	S_EXPIRE_NEG, S_EXPIRE_STAMP, S_EXPIRE_RL,
	S_COUNT_NEG, S_COUNT_STAMP, S_COUNT_RL,
	S_MAX
};

/*
 * The tables a stranger's handshakes can grow, a row per key: negative
 * entries (per unknown key), lookup counts (per miss) and timestamps (per
 * key that resolved). Each has an index on its time column, so the
 * sweeper finds what is dead without a scan, and a cap: beyond it the
 * oldest rows are evicted, in the commit that went over it.
 */
enum { B_NEG, B_STAMP, B_RL, B_MAX };

struct bound {
	int64_t rows;         /* how many rows it holds (-1: to be counted) */
	int64_t added;        /* rows the commit under way added */
	int64_t cap;          /* max_negative, max_timestamps, max_rate_rows */
};

#define ALLOWED_REC 18        /* family 4|6, cidr, addr[16] */
#define ENDPOINT_REC 19       /* family 4|6, port (BE), addr[16] */
#define SWEEP_SLICE 128       /* peer rows looked at per tick */
#define SWEEP_EVERY_MS 1000
#define EXPIRE_TICK 8192      /* dead rows deleted per bounded table per tick... */
#define EXPIRE_PER_ADD 2      /* ...and per commit, per row it added */
#define CHECKPOINT_PAGES 1000 /* WAL pages before a background checkpoint */
#define WAL_MAX_PAGES 16384   /* WAL pages before the loop checkpoints itself */
#define WAL_WAIT_MS 2000      /* ...waiting at most this for a background one */
#define RUN_BUSY_MS 100       /* busy timeout once running (loop thread) */
#define INJECT_SLICE 256      /* re-installs injected per loop turn */
#define PEND_BUCKETS 4096     /* hash of the batch (a power of two) */
#define VICTIMS_MAX SWEEP_SLICE
#define PEND_SLACK 4          /* the batch may grow to this many commit_batch */
#define LIVE_S 180            /* a session stays usable this long after its
                               * handshake (WireGuard's REJECT_AFTER_TIME) */
#define LIVE_SLICE 512        /* dumped peers looked at per loop turn */

/* What the store is in the pipelines it is linked into (ops link). */
#define ROLE_CACHE (1u << 0)  /* pull, a resolver follows: lookup, keep answers */
#define ROLE_KEEP (1u << 1)   /* pull, a resolver before, none after: keep answers */
#define ROLE_ANSWER (1u << 2) /* pull, no resolver at all: the only answer */
#define ROLE_PUSH (1u << 3)   /* the source gives peer configs: the push sink */

/* What a key has waiting in the batch (struct pend.what). */
#define P_STAMP (1u << 0)     /* newest timestamp                       */
#define P_RL (1u << 1)        /* lookup count in its window             */
#define P_NEG (1u << 2)       /* negative entry                         */
#define P_NEG_DEL (1u << 3)   /* ...or its removal                      */
#define P_PEER (1u << 4)      /* a pulled answer                        */
#define P_ADOPT (1u << 5)     /* adopted from the interface             */
#define P_FORGET (1u << 6)    /* delete the pulled answer (not a pushed peer) */
#define P_LIVE (1u << 7)      /* a pulled peer's last endpoint and handshake */

/* A pulled answer waiting in the batch: our own copy of the peer (its
 * allowed IPs in an array of ours; the preshared key wiped when freed). */
struct pulled {
	struct wggwd_peer peer;
	int64_t expires;      /* unix ms */
};

struct pend {
	uint8_t key[WGGWD_KEY_LEN];
	uint32_t what;
	int32_t next;         /* hash chain: index in the pool, or -1 */
	uint8_t tai64n[12];
	int64_t stamp_seen, rl_win, rl_count, neg_expires;
	int64_t live_hs;      /* unix s */
	union wggwd_sockaddr live_ep;
	struct pulled *pp;
};

struct victim {
	uint8_t key[WGGWD_KEY_LEN]; /* a dead peer row */
};

enum {
	C_HIT, C_MISS, C_NEG_HIT, C_REPLAY, C_RATE_LIMITED, C_SAVED, C_WRITE_ERRORS,
	C_ADOPTED, C_RC_REMOVED, C_REINSTALLED, C_STALE, C_REMOVED, C_COMMITS,
	C_READ_ERRORS, C_PURGED, C_NEG_SAVED, C_CHECKPOINTS, C_FORGOTTEN, C_KEPT,
	C_EVICTED, C_WAL_STALLS, C_REVALIDATIONS, C_REVOKED, C_UNVERIFIED, C_LEASE_EXPIRED,
	C_RESTORED_LIVE, C_LIVE_SAVED, C_RC_REFUSED, C_REASSERTED, C_LAZY_RETIRED,
	C_LAZY_UPDATED, C_WAL_TRUNCATED, C_MAX
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
	struct keyvec live;      /* pulled, missing, their session still live */
	struct keyvec reassert;  /* on the interface, pulled or with a lease */
	int64_t dump_ms;         /* when the interface was listed */
	char err[256];
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uint32_t roles;          /* ROLE_*, from link */
	/* lazy push: a push pipeline with no installer fills the store, a
	 * pull pipeline installs from it (push.c: what changes for peers
	 * installed already goes through that pipeline) */
	bool lazy_push, push_installs;

	int lock_fd;
	sqlite3 *db;             /* loop thread */
	sqlite3_stmt *st[S_MAX];
	sqlite3 *wdb;            /* thread pool (one job at a time) */
	struct pend *pend;       /* the batch */
	size_t pend_n, pend_cap;
	bool commit_deferred;    /* until the running checkpoint is done */
	bool ckpt_busy;
	int32_t pend_head[PEND_BUCKETS];
	struct victim victims[VICTIMS_MAX];
	size_t n_victims;
	bool reading;            /* a read transaction is open (until commit) */

	struct wggwd_timer *commit_timer, *push_timer, *sweep_timer, *retry_timer,
		*pump_timer;
	bool commit_armed, push_armed;
	struct wggwd_item **push_q; /* pushed items waiting for the group commit */
	size_t push_n, push_cap;

	uint8_t sweep_cursor[WGGWD_KEY_LEN]; /* peer rows, in key order */
	bool sweep_wrapped;
	bool expire_due;         /* the sweeper's turn: the next commit expires */
	struct bound bound[B_MAX];

	bool worker_busy, stopping;
	uint64_t retry_ms;
	int64_t dump_ms;         /* when the last dump was asked for */
	unsigned wal_pages;
	int ckpt_rc;             /* written by the job, read in its after() */
	bool ckpt_truncate;      /* the job under way truncates (wal_defer) */
	bool wal_truncate;       /* past WAL_MAX_PAGES: writes wait for it */
	uint64_t wal_full_ns;    /* since when */
	enum { RC_NONE, RC_WAITING, RC_RUNNING, RC_INJECTING } rc_state;
	struct reconcile *rc;    /* being computed, or being injected */
	size_t inject_at;
	size_t rc_out;           /* re-installs injected, not done yet */

	/* live.c: the sweep of installed peers */
	struct wggwd_timer *live_timer, *live_pump;
	uint32_t inject_role;    /* the role in the pipeline host->inject uses */
	bool live_dumping;
	struct keyvec ra;        /* peers found at start, to name to the installer */
	size_t ra_at;
	struct live_peer *lp;    /* the last dump's peers of ours, being looked at */
	size_t lp_n, lp_at;
	int64_t revalidate_left; /* revalidations this sweep may still inject */

	uint64_t *c[C_MAX];
};

/* One of our peers in the installer's dump. */
struct live_peer {
	uint8_t key[WGGWD_KEY_LEN];
	uint8_t origin;
	union wggwd_sockaddr endpoint;
	int64_t hs;              /* last handshake, unix s; 0: never */
};

/* What the store holds about a peer key. */
struct row {
	bool found;
	int origin;
	bool removed;
	bool has_version;
	uint64_t version;
	bool has_expires;
	int64_t expires;         /* unix ms: a pulled answer's end */
	bool has_lease;
	int64_t lease;           /* unix s: peer.expires_at */
	int64_t hs;              /* last handshake seen, unix s; 0: none kept */
	union wggwd_sockaddr last_ep; /* ...and where from (family 0: none) */
};

static inline int64_t store_now_ms(const struct ctx *c)
{
	return (int64_t)(c->host->realtime_ns() / 1000000);
}

/* The key an item is about: its config's, else the initiator's. */
static inline const uint8_t *item_key(const struct wggwd_item *it)
{
	return it->peer->has & WGGWD_PEER_HAS_PUBLIC_KEY ? it->peer->public_key :
							    it->public_key;
}

/* schema.c */
int schema_open(struct ctx *c);
void schema_close(struct ctx *c);
void schema_close_worker(struct ctx *c);
void schema_close_lock(struct ctx *c);
void schema_count(struct ctx *c);
int sqlite_errno(sqlite3 *db, int rc);

/* row.c */
int row_step(struct ctx *c, sqlite3_stmt *s);
int row_bind_step(struct ctx *c, enum stmt which, const uint8_t *key, const void *blob,
		  size_t blob_len, int nargs, int64_t a, int64_t b);
int row_put(struct ctx *c, const struct wggwd_peer *p, int origin, bool removed,
	    bool has_expires, int64_t expires);
int row_push(struct ctx *c, const struct wggwd_peer *p, bool removed);
int row_get(struct ctx *c, const uint8_t *key, struct row *r, struct wggwd_item *it);
int row_get1(struct ctx *c, enum stmt which, const uint8_t *key, int64_t *a, int64_t *b,
	     uint8_t *blob, size_t blob_len);
void peer_clear(struct wggwd_peer *p);
int peer_copy(struct ctx *c, struct wggwd_item *it, const struct wggwd_peer *from);
void pulled_free(struct pulled *pp);
size_t endpoint_encode(uint8_t out[ENDPOINT_REC], const union wggwd_sockaddr *a);
int endpoint_decode(union wggwd_sockaddr *a, const uint8_t *b, size_t len);

/* batch.c */
struct pend *batch_find(struct ctx *c, const uint8_t *key);
struct pend *batch_get(struct ctx *c, const uint8_t *key);
void batch_added(struct ctx *c);
void batch_read(struct ctx *c);
void batch_clear(struct ctx *c);
int batch_commit(struct ctx *c, bool force);
void batch_on_timer(void *arg);
void batch_on_sweep(void *arg);
int batch_wal_hook(void *arg, sqlite3 *db, const char *name, int pages);
bool wal_defer(struct ctx *c, bool force);
void worker_run(struct ctx *c);

/* cache.c */
int cache_lookup(struct ctx *c, struct wggwd_item *it, bool only_answer);
int cache_stamp(struct ctx *c, struct wggwd_item *it);
int cache_keep(struct ctx *c, struct wggwd_item *it);
void cache_negative(struct ctx *c, struct wggwd_item *it);
int cache_removal(struct ctx *c, struct wggwd_item *it);

/* push.c */
int push_enqueue(struct ctx *c, struct wggwd_item *it);
void push_flush(void *arg);
/* A REMOVE that push.c retired itself after writing its tombstone? */
bool push_retired(const struct ctx *c, const struct wggwd_item *it);

/* reconcile.c */
void reconcile_begin(struct ctx *c);
void reconcile_on_retry(void *arg);
void reconcile_on_pump(void *arg);
int reconcile_queue(struct ctx *c);
void reconcile_free(struct reconcile *r);
/* Is it a re-install our reconcile injected (a pushed peer)? */
bool reconcile_reinstall(const struct wggwd_item *it);
void reconcile_done(struct ctx *c, struct wggwd_item *it, int verdict);

/* live.c */
void live_start(struct ctx *c);
void live_stop(struct ctx *c);
void live_on_timer(void *arg);
void live_removed(struct ctx *c, const struct wggwd_item *it);
void live_restore(struct ctx *c, const struct keyvec *keys);
void live_reassert(struct ctx *c, struct keyvec *keys);
void live_put(struct ctx *c, const uint8_t *key, const union wggwd_sockaddr *ep, int64_t hs);

#endif
