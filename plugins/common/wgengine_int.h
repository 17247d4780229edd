// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The install engine's own state, shared by its two files: wgengine.c
 * (the plugin ops, installs and their completion, the policy) and
 * wgengine_dump.c (dumps: shared, annotated, and what they tell). */
#ifndef WGGWD_WGENGINE_INT_H
#define WGGWD_WGENGINE_INT_H

#include <sodium.h>

#include "peerpolicy.h"
#include "wgengine.h"
#include "wgtable.h"
#include "wgutil.h"

#define CFG_LEN 16
#define IPS_LEN 8
#define NS 1000000000ull
#define MS 1000000ull

enum { K_ITEM, K_RESTORE, K_RETRY };

/* A peer this installer put on the interface. */
struct peer {
	struct wgt_ent h;
	uint8_t cfg[CFG_LEN];          /* keyed digest of PSK, IPs, keepalive */
	uint8_t ips[IPS_LEN];          /* keyed digest of the allowed IPs alone */
	union wggwd_sockaddr ep;       /* the one we set (AF_UNSPEC: none) */
	uint16_t keepalive, ka_sent;   /* configured; what the install set */
	uint8_t origin;                /* enum wggwd_origin */
	bool awaiting;                 /* the keepalive differs until the handshake */
	bool fresh;                    /* ... after an inverted install that added it
	                                * anew: the interface is initiating */
	bool restoring;                /* a restore for it is on its way */
	bool stale;                    /* the interface may have lost it */
	uint32_t mark;                 /* last dump that listed it */
	uint64_t gen;                  /* sets done when it was installed */
	uint64_t installed_ns;         /* host->now_ns() */
	uint64_t await_ns;             /* waiting since (now_ns) */
	uint64_t since_real_ns;        /* a handshake after this is ours */
	struct wggwd_peer *retry;      /* inversion: installed afresh once */
	uint32_t n_allowed;            /* as installed (or found at start) */
	/* as the last dump that listed it tells (seen: one did) */
	bool seen;
	union wggwd_sockaddr seen_ep;
	int64_t hs_sec;                /* last handshake, Unix s; 0: never */
	uint32_t hs_nsec;
	uint64_t rx_bytes, tx_bytes;
	/* its lease: removed at expires_at (Unix s) */
	int64_t expires_at;
	size_t lease_at;               /* its index + 1 in the lease heap; 0: none */
};

struct wge_op_priv {
	int what;                      /* K_* */
	bool final;                    /* the restore at stop */
	bool reinject, invert;
	bool afresh;                   /* removed first (WGGWD_ITEM_REFUSED) */
	uint16_t ka_conf;
	uint8_t origin;
	uint8_t cfg[CFG_LEN];
	uint8_t ips[IPS_LEN];
	union wggwd_sockaddr ep;       /* what the table records */
	uint64_t since_real_ns;
	bool lease;                    /* expires_at applies (else: none) */
	int64_t expires_at;
	struct wggwd_item *item;
	struct wggwd_peer *own;        /* a copy the op owns (retry) */
};

struct waiter {
	struct waiter *next;
	wggwd_dump_cb cb;
	void *arg;
	bool sliced;                   /* dump_slices: each slice as judged */
};

struct wge {
	struct wge_env env;            /* first: backends get &env */
	const struct wge_backend *be;
	void *b;
	struct wggwd_device dev;       /* secret: the private key */
	bool have_dev, running, stopping;
	struct wgt peers;
	size_t nawaiting, nretry;
	uint32_t mark;
	uint64_t sets_done;
	uint8_t hkey[crypto_shorthash_siphashx24_KEYBYTES];

	struct waiter *wait, *cur;
	bool dumping, poll_wanted, poll_armed;
	/* the last dump's result, judged in slices (dumping stays set) */
	bool judging;
	struct wggwd_peer_state *sv;   /* the backend's array */
	size_t sn, si;                 /* its length; the next peer to judge */
	size_t gone_at;                /* then the sweep for peers gone: next bucket */
	struct wggwd_timer *slice;     /* 0 ms: the next slice, after the loop's I/O */
	uint64_t dump_gen, dump_t0, dump_ns;
	struct wggwd_timer *poll;
	/* installs first: a dump does not start while sets are on their
	 * way (sets_done < sets_issued), for at most `timeout`; every set
	 * goes through wge_set() */
	uint64_t sets_issued;
	uint64_t want_ns;              /* a dump is wanted since (0: none) */
	bool deferred;                 /* the wanted dump was counted deferred */
	struct wggwd_timer *defer;     /* the deferral's end */

	struct peer **leases;          /* a min-heap by expires_at */
	size_t nleases, leases_cap;
	struct wggwd_timer *lease_timer; /* at the soonest expiry */

	struct wg_policy pol;           /* allowed_prefixes */
	bool policy, policy_warned;    /* set, and not [any] */
	size_t found_outside;          /* peers found at start outside it */
	uint8_t outside_key[WGGWD_KEY_LEN]; /* the first of them */

	uint64_t *installed, *updated, *unchanged, *removed, *install_failed, *remove_failed,
		*inverted, *reinjected, *restored, *restore_timeouts, *stall_retries, *dumps,
		*policy_refused, *expired, *expired_refused, *rearmed, *dumps_deferred,
		*refused_afresh, *ips_kept;
	int64_t *g_peers, *g_awaiting, *g_leases, *g_dump_ms;
	uint64_t *shadow[3];           /* install, present, remove (shadow mode) */
};

#define ENG(env) ((struct wge *)(env))

static inline const char *b64(char buf[WG_KEY_B64_LEN], const uint8_t *key)
{
	wg_key_to_b64(buf, key);
	return buf;
}

/* wgengine.c */
struct wge_op *wge_op_new(size_t n, int what);
void wge_op_free(struct wge_op *op);
void wge_peer_free(struct wggwd_peer *c);
void wge_take_retry(struct wge *e, struct peer *p, bool free_it);
void wge_count_peers(struct wge *e);
/* An empty keepalive restore with room for cap peers; NULL if none. */
struct wge_op *wge_restore_op(size_t cap);
void wge_restore_add(struct wge_op *op, struct peer *p);
/* Hand op to the backend, or free it if it has no entries. */
void wge_send_op(struct wge *e, struct wge_op *op);

/* wgengine_dump.c */
/* At create: the dumps' counters; at close: their timer. */
void wge_dump_init(struct wge *e);
void wge_dump_fini(struct wge *e);
/* Hand op to the backend (every set goes through here: installs first). */
void wge_set(struct wge *e, struct wge_op *op);
/* A set is done: a deferred dump may start. */
void wge_set_done(struct wge *e);
/* Remember what a dump (or the read at start) says of p. */
void wge_seen(struct peer *p, const struct wggwd_peer_state *ps);
void wge_arm_poll(struct wge *e);
/* Stopping: the waiters of a dump being judged get -ECANCELED. */
void wge_judge_cancel(struct wge *e);
/* The poll timer: dump to see which waiting peers completed. */
void wge_on_poll(void *arg);

/* wgengine_lease.c: leases (WGGWD_PEER_HAS_EXPIRES), one timer for all */
/* Give p the lease an item carries (has: expires_at is set), or none. */
void wge_lease_set(struct wge *e, struct peer *p, bool has, int64_t expires_at);
/* p leaves the table. */
void wge_lease_drop(struct wge *e, struct peer *p);
/* The lease timer: remove the peers whose lease ran out. */
void wge_on_lease(void *arg);
/* Has a lease that ends at expires_at (Unix s) run out? */
bool wge_lease_over(const struct wge *e, int64_t expires_at);

#endif
