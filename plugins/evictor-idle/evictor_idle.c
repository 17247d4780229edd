// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * evictor-idle: every interval, remove the peers this daemon installed whose
 * last handshake is older than `idle`, or that never completed one within
 * `grace` of being installed. Activity is the later of the last handshake
 * and the last sweep that saw the peer's received bytes grow: WireGuard only
 * re-handshakes every two minutes while traffic flows, so the handshake
 * alone would call a busy peer idle. A peer whose client knocked within
 * `grace` (an initiation went through the pipeline) is in the middle of a
 * handshake and is left alone. Optionally keep at most `max_peers`, evicting
 * the least recently active first.
 *
 * A session carries data until its handshake is REJECT_AFTER_TIME (180 s)
 * old. A client evicted before that keeps sending into a session the
 * gateway no longer has, and only initiates again ~15 s later (keepalive
 * timeout plus rekey timeout): an eviction it notices. Once its last
 * handshake is older, it must initiate before it can send, and the JIT
 * path brings it back in milliseconds. So, unless `evict_live`, a peer
 * idle for `idle` stays until its last handshake is 180 s old: idle is
 * "no activity for `idle`, and no live session" (with the default 3m the
 * second follows from the first). Budget pressure (`max_peers`) still
 * evicts live peers when it must, those with dead sessions first, and
 * counts them (evicted_live).
 *
 * Which peers are ours, and since when, the installer's dump says (origin,
 * installed_ns); this keeps only activity. Removals go through the pipeline
 * (host->retire); a removal item that reaches process() ends the tracking.
 *
 * A sweep reads every peer of the interface, and while it does, the
 * installer's sets wait (wireguard-go serialises its IPC): so sweeps take
 * at most `duty_cycle` percent of the time. `interval` is the least time
 * between two sweeps; on a large interface it stretches to the sweep's
 * cost (the dump and the judging, the lesser of the last two) times
 * 100 / duty_cycle; the gauge sweep_interval_ms says which is in use.
 * An installer that can (ops.dump_slices) hands the peers over in slices,
 * judged as they come with the loop serving knocks in between.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wgtable.h"
#include "wgutil.h"

struct conf {
	int64_t interval_ms;
	int64_t idle_ms;
	int64_t grace_ms;
	int64_t max_peers;
	int64_t duty_cycle;
	bool all_peers;
	bool evict_live;
};

/* WireGuard's REJECT_AFTER_TIME: a session older than this carries nothing. */
#define REJECT_AFTER_MS 180000

static const struct wggwd_opt opts[] = {
	{ .name = "interval", .type = WGGWD_OPT_DURATION, .def = "10s", .min = 10, .max = 3600000,
	  .offset = offsetof(struct conf, interval_ms),
	  .help = "how often the interface's peers are checked, at most (see duty_cycle)" },
	{ .name = "duty_cycle", .type = WGGWD_OPT_INT, .def = "1", .min = 1, .max = 100,
	  .offset = offsetof(struct conf, duty_cycle),
	  .help = "at most this percentage of the time goes to sweeping: while the interface is read, installs wait for it (wireguard-go serialises its requests), so on a large interface the time between sweeps stretches to their cost times 100/duty_cycle (1: a sweep of 100 ms every 10 s); the gauge sweep_interval_ms is the one in use" },
	{ .name = "idle", .type = WGGWD_OPT_DURATION, .def = "3m", .min = 1000, .max = 86400000LL * 30,
	  .offset = offsetof(struct conf, idle_ms),
	  .help = "remove a peer with no handshake and no received traffic for this long, once its session cannot carry data any more (its last handshake is 180 s old: REJECT_AFTER_TIME; see evict_live). Under 3m is warned about at start" },
	{ .name = "grace", .type = WGGWD_OPT_DURATION, .def = "30s", .min = 0, .max = 3600000,
	  .offset = offsetof(struct conf, grace_ms),
	  .help = "a peer installed or knocking within this long is never removed; one that has not completed a handshake this long after install is" },
	{ .name = "max_peers", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 10000000,
	  .offset = offsetof(struct conf, max_peers),
	  .help = "keep at most this many of our peers, evicting the least recently active first (0: no limit)" },
	{ .name = "all_peers", .type = WGGWD_OPT_BOOL, .def = "false",
	  .offset = offsetof(struct conf, all_peers),
	  .help = "also evict peers this daemon did not install (configured by hand, or before a restart)" },
	{ .name = "evict_live", .type = WGGWD_OPT_BOOL, .def = "false",
	  .offset = offsetof(struct conf, evict_live),
	  .help = "evict a peer idle for `idle` even while its session is live (last handshake under 180 s ago): its client keeps sending into a session the gateway no longer has and initiates again only ~15 s later. Off: such a peer stays until its last handshake is 180 s old" },
	WGGWD_OPT_END
};

/* What the evictor knows of a peer: activity only. */
struct entry {
	struct wgt_ent h;
	uint64_t first_ns;      /* first seen here (for peers of unknown age) */
	uint64_t knock_ns;      /* last item through here */
	uint64_t rx_bytes;      /* as of the last sweep */
	bool rx_seen;           /* rx_bytes holds a sweep's reading */
	int64_t rx_at_ms;       /* realtime of the sweep that saw rx grow */
	uint32_t sweep;         /* last sweep that saw it on the interface */
};

struct victim {
	uint8_t key[WGGWD_KEY_LEN];
	uint64_t active;  /* last activity, ms (realtime scale for sorting) */
	bool live;        /* its session can still carry data */
	bool idle;        /* idle for `idle`, kept for its live session */
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct wggwd_timer *timer;
	struct wgt t;
	uint32_t sweep;
	uint64_t sweep_ns;      /* when the last sweep began */
	uint64_t ask_ns;        /* when its dump was asked for */
	uint64_t cost_ns;       /* the last sweep's cost (dump and judging) */
	bool sweeping, stopping;
	bool begun;             /* the sweep under way has had a slice */
	struct victim *keep;    /* ours that stay, for max_peers */
	size_t nkeep, keep_cap, nidle;
	bool keep_oom;
	uint64_t *evicted_idle, *evicted_never, *evicted_budget, *evicted_live, *sweeps,
		*sweep_errors;
	int64_t *tracked, *idle_live, *interval;
};

static struct entry *track(struct ctx *c, const uint8_t *key, uint64_t now)
{
	bool created;
	struct entry *e = wgt_put(&c->t, key, &created);

	if (e && created) {
		e->first_ns = now;
		e->sweep = c->sweep;
		*c->tracked = c->t.n;
	}
	return e;
}

/* An item that went through the installer: the client is here. A
 * removal (ours or anyone's) ends the tracking. */
static int ei_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const uint8_t *key = it->peer->has & WGGWD_PEER_HAS_PUBLIC_KEY ? it->peer->public_key
								       : it->public_key;
	uint64_t now = c->host->now_ns();
	struct entry *e;

	if (it->op == WGGWD_OP_REMOVE) {
		wgt_del(&c->t, key);
		*c->tracked = c->t.n;
		return WGGWD_CONTINUE;
	}
	e = track(c, key, now);
	if (e)
		e->knock_ns = now;
	return WGGWD_CONTINUE;
}


/* Over budget, the cheapest first: dead sessions (they come back in
 * milliseconds), then the least recently active. */
static int cmp_victim(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	if (x->live != y->live)
		return x->live ? 1 : -1;
	return x->active < y->active ? -1 : x->active > y->active;
}

static void evict(struct ctx *c, const uint8_t *key, uint32_t why, bool live)
{
	char b64[WG_KEY_B64_LEN];

	wg_key_to_b64(b64, key);
	if (live)
		(*c->evicted_live)++;
	c->host->log(c->self, WGGWD_LOG_INFO, "evicting %s: %s%s", b64,
		     why == WGGWD_R_GRACE ? "never completed a handshake" :
		     why == WGGWD_R_IDLE ? "idle" : "over max_peers",
		     live ? " (its session is live: last handshake under 180 s ago)" : "");
	if (c->host->retire(c->self, key, why))
		(*c->sweep_errors)++;
}

/* Forget what is no longer on the interface (removed by hand). */
static bool unseen(void *arg, struct wgt_ent *h)
{
	const struct entry *e = (const struct entry *)h;
	const struct ctx *c = arg;

	return e->sweep != c->sweep && c->sweep_ns > e->first_ns &&
	       (int64_t)((c->sweep_ns - e->first_ns) / 1000000) > c->conf->grace_ms;
}

/* One peer of the dump: WGGWD_R_NONE if it stays (with v->active set if
 * it is ours), else why it goes; v->live: its session can carry data. */
static uint32_t judge(struct ctx *c, const struct wggwd_peer_state *p, uint64_t now,
		      int64_t now_real_ms, struct victim *v)
{
	const struct conf *cf = c->conf;
	int64_t hs_ms = p->last_handshake_sec * 1000 + p->last_handshake_nsec / 1000000;
	struct entry *e;
	uint64_t since, seen_ago;

	if (!cf->all_peers && (p->origin == WGGWD_ORIGIN_NONE || p->origin == WGGWD_ORIGIN_PUSH))
		return WGGWD_R_NONE; /* not ours; pushed peers: the control plane's */
	e = track(c, p->public_key, now);
	if (!e)
		return WGGWD_R_NO_MEMORY;
	e->sweep = c->sweep;
	/* growth between two sweeps is activity; the first look is not
	 * (it would make every new peer as recent as the sweep) */
	if (!e->rx_seen) {
		e->rx_bytes = p->rx_bytes;
		e->rx_seen = true;
	} else if (p->rx_bytes != e->rx_bytes) {
		e->rx_bytes = p->rx_bytes;
		e->rx_at_ms = now_real_ms;
	}
	v->live = p->last_handshake_sec && now_real_ms - hs_ms < REJECT_AFTER_MS;
	if (e->rx_at_ms > hs_ms && p->last_handshake_sec)
		hs_ms = e->rx_at_ms; /* traffic since the handshake */
	since = p->installed_ns ? p->installed_ns : e->first_ns;
	if (e->knock_ns > since)
		since = e->knock_ns;
	/* a slice is judged a little later than the last: a knock or an
	 * install between two may be newer than the sweep's clock */
	seen_ago = now > since ? (now - since) / 1000000 : 0;
	if ((int64_t)seen_ago < cf->grace_ms)
		return WGGWD_R_NONE; /* installed or knocking just now: mid-handshake */
	if (!p->last_handshake_sec) {
		(*c->evicted_never)++;
		return WGGWD_R_GRACE;
	}
	if (now_real_ms - hs_ms > cf->idle_ms) {
		if (!v->live || cf->evict_live) {
			(*c->evicted_idle)++;
			return WGGWD_R_IDLE;
		}
		v->idle = true; /* until its session is dead */
	}
	/* last activity on one scale: handshake (realtime) or seen (mono) */
	v->active = (uint64_t)(now_real_ms - (int64_t)seen_ago);
	if ((int64_t)v->active < hs_ms)
		v->active = hs_ms;
	return WGGWD_R_NONE;
}

/* The next sweep: `interval` after this one was asked for, or, on a large
 * interface, 100/duty_cycle times its cost (the lesser of the last two:
 * one that waited behind installs does not stretch it alone). */
static void schedule(struct ctx *c)
{
	uint64_t now = c->host->now_ns(), cost = now - c->ask_ns, ms, spent;

	if (c->cost_ns && c->cost_ns < cost)
		cost = c->cost_ns;
	c->cost_ns = now - c->ask_ns;
	ms = cost / 1000000 * 100 / (uint64_t)c->conf->duty_cycle;
	if (ms < (uint64_t)c->conf->interval_ms)
		ms = c->conf->interval_ms;
	*c->interval = (int64_t)ms;
	spent = (now - c->ask_ns) / 1000000;
	c->host->timer_start(c->timer, ms > spent ? ms - spent : 0, 0);
}

static void sweep_begin(struct ctx *c)
{
	(*c->sweeps)++;
	c->sweep++;
	c->sweep_ns = c->host->now_ns();
	c->nkeep = c->nidle = 0;
	c->keep_oom = false;
	c->begun = true;
}

/* Judge a part of the interface's peers (all of them, or a slice). */
static void sweep_part(struct ctx *c, const struct wggwd_peer_state *peers, size_t n,
		       size_t stride)
{
	int64_t now_real_ms = c->host->realtime_ns() / 1000000;
	uint64_t now = c->host->now_ns(); /* this slice's */
	size_t i;

	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *p = WGGWD_AT(const struct wggwd_peer_state, peers, i,
							    stride);
		struct victim v = { .active = 0 };
		uint32_t why = judge(c, p, now, now_real_ms, &v);

		if (why == WGGWD_R_NO_MEMORY)
			(*c->sweep_errors)++;
		else if (why)
			evict(c, p->public_key, why, v.live);
		c->nidle += !why && v.idle;
		if (why || !v.active || !c->conf->max_peers)
			continue;
		if (c->nkeep == c->keep_cap) {
			size_t cap = c->keep_cap ? c->keep_cap * 2 : 1024;
			struct victim *k = realloc(c->keep, cap * sizeof(*k));

			if (!k) {
				c->keep_oom = true;
				continue;
			}
			c->keep = k;
			c->keep_cap = cap;
		}
		memcpy(v.key, p->public_key, WGGWD_KEY_LEN); /* outlives the slice */
		c->keep[c->nkeep++] = v;
	}
}

/* The whole interface judged: over max_peers, the least recently active
 * go; what is no longer there is forgotten. */
static void sweep_end(struct ctx *c)
{
	const struct conf *cf = c->conf;
	size_t i, nvict, nlive = 0;

	c->begun = false;
	*c->idle_live = c->nidle;
	if (c->keep_oom) {
		(*c->sweep_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "out of memory: max_peers not enforced in this sweep");
	} else if (cf->max_peers && c->nkeep > (size_t)cf->max_peers) {
		qsort(c->keep, c->nkeep, sizeof(*c->keep), cmp_victim);
		nvict = c->nkeep - cf->max_peers;
		for (i = 0; i < nvict; i++)
			nlive += c->keep[i].live;
		c->host->log(c->self, WGGWD_LOG_INFO, "over max_peers (%zu > %lld): evicting the %zu least recently active (%zu of them with a live session)",
			     c->nkeep, (long long)cf->max_peers, nvict, nlive);
		*c->evicted_budget += nvict;
		for (i = 0; i < nvict; i++)
			evict(c, c->keep[i].key, WGGWD_R_MAX_PEERS, c->keep[i].live);
	}
	c->nkeep = 0;
	wgt_sweep(&c->t, unseen, c);
	*c->tracked = c->t.n;
}

/* The installer's answer: the whole dump (ops.dump), or a slice of it
 * (ops.dump_slices: WGGWD_DUMP_MORE, then 0 at the end). */
static void on_dump(void *arg, int status, const struct wggwd_peer_state *peers, size_t n,
		    size_t stride)
{
	struct ctx *c = arg;

	if (c->stopping) {
		c->sweeping = c->begun = false;
		return;
	}
	if (status < 0) {
		c->sweeping = c->begun = false;
		(*c->sweep_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "cannot read the interface's peers: %s",
			     strerror(-status));
		schedule(c);
		return;
	}
	if (!c->begun)
		sweep_begin(c);
	sweep_part(c, peers, n, stride);
	if (status == WGGWD_DUMP_MORE)
		return;
	c->sweeping = false;
	sweep_end(c);
	schedule(c);
}

static void on_tick(void *arg)
{
	struct ctx *c = arg;
	const struct wggwd_installer *ins = c->host->installer(c->self);

	if (c->sweeping || c->stopping)
		return; /* the last sweep is still on its way */
	c->sweeping = true;
	c->ask_ns = c->host->now_ns();
	/* in slices if the installer can: judging 10^5 peers at once would
	 * hold up a knocking client for tens of ms */
	if ((WGGWD_HAS(ins->ops, struct wggwd_ops, dump_slices) && ins->ops->dump_slices ?
	     ins->ops->dump_slices : ins->ops->dump)(ins->ctx, on_dump, c)) {
		(*c->sweep_errors)++;
		c->sweeping = false;
		schedule(c);
	}
}

static int ei_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	if (wgt_init(&c->t, host, sizeof(struct entry))) {
		free(c);
		return -ENOMEM;
	}
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->evicted_idle = host->counter(self, "evicted_idle");
	c->evicted_never = host->counter(self, "evicted_never_completed");
	c->evicted_budget = host->counter(self, "evicted_over_budget");
	c->evicted_live = host->counter(self, "evicted_live");
	c->sweeps = host->counter(self, "sweeps");
	c->sweep_errors = host->counter(self, "sweep_errors");
	c->tracked = host->gauge(self, "tracked_peers");
	c->idle_live = host->gauge(self, "idle_live");
	c->interval = host->gauge(self, "sweep_interval_ms");
	*ctxp = c;
	return 0;
}

static int ei_start(void *ctx)
{
	struct ctx *c = ctx;

	if (!c->host->installer(c->self)) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "needs an installer in its pipeline");
		return -EINVAL;
	}
	if (c->conf->idle_ms < REJECT_AFTER_MS && c->conf->evict_live)
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "idle %.1f s is under 3 minutes and evict_live is on: a client evicted while its session is live (last handshake under 180 s ago) sends into a session the gateway no longer has, and initiates again only ~15 s later",
			     c->conf->idle_ms / 1000.0);
	else if (c->conf->idle_ms < REJECT_AFTER_MS)
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "idle %.1f s is under 3 minutes: a peer idle that long is kept while its session is live (last handshake under 180 s ago), so it goes 180 s after its last handshake at the earliest",
			     c->conf->idle_ms / 1000.0);
	c->timer = c->host->timer_new(c->self, on_tick, c);
	*c->interval = c->conf->interval_ms;
	c->host->timer_start(c->timer, c->conf->interval_ms, 0); /* then schedule() */
	return 0;
}

static void ei_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->stopping = true;
	c->host->timer_free(c->timer);
	c->timer = NULL;
	c->host->stopped(c->self);
}

static void ei_destroy(void *ctx)
{
	struct ctx *c = ctx;

	wgt_free(&c->t);
	free(c->keep);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = ei_create,
	.start = ei_start,
	.process = ei_process,
	.stop = ei_stop,
	.destroy = ei_destroy,
};

WGGWD_PLUGIN_DEFINE(
	.name = "evictor-idle",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "removes peers whose last handshake is old, or that never completed one",
	.kind = WGGWD_EVICTOR,
	.in = WGGWD_MSG_EVENT,
	.out = 0,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
