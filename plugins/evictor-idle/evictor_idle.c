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
 * handshake and is left alone. Optionally keep at most `max_peers`, evicting the least
 * recently active first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wgutil.h"

struct conf {
	int64_t interval_ms;
	int64_t idle_ms;
	int64_t grace_ms;
	int64_t max_peers;
	bool all_peers;
};

static const struct wggwd_opt opts[] = {
	{ .name = "interval", .type = WGGWD_OPT_DURATION, .def = "10s", .min = 10, .max = 3600000,
	  .offset = offsetof(struct conf, interval_ms), .help = "how often the interface's peers are checked" },
	{ .name = "idle", .type = WGGWD_OPT_DURATION, .def = "3m", .min = 1000, .max = 86400000LL * 30,
	  .offset = offsetof(struct conf, idle_ms),
	  .help = "remove a peer with no handshake and no received traffic for this long" },
	{ .name = "grace", .type = WGGWD_OPT_DURATION, .def = "30s", .min = 0, .max = 3600000,
	  .offset = offsetof(struct conf, grace_ms),
	  .help = "a peer installed or knocking within this long is never removed; one that has not completed a handshake this long after install is" },
	{ .name = "max_peers", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 10000000,
	  .offset = offsetof(struct conf, max_peers),
	  .help = "keep at most this many of our peers, evicting the least recently active first (0: no limit)" },
	{ .name = "all_peers", .type = WGGWD_OPT_BOOL, .def = "false",
	  .offset = offsetof(struct conf, all_peers),
	  .help = "also evict peers this daemon did not install (configured by hand, or before a restart)" },
	WGGWD_OPT_END
};

struct entry {
	struct entry *next;
	uint8_t key[WGGWD_KEY_LEN];
	uint64_t installed_ms;  /* monotonic */
	uint64_t seen_ms;       /* last item through here, monotonic */
	uint64_t rx_bytes;      /* as of the last sweep */
	bool rx_seen;           /* rx_bytes holds a sweep's reading */
	int64_t rx_at_ms;       /* realtime of the sweep that saw rx grow */
	uint32_t sweep;         /* last sweep that saw it on the interface */
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct wggwd_timer *timer;
	struct entry **buckets;
	size_t nbuckets, n;
	uint32_t sweep;
	bool sweeping, stopping;
	uint64_t *evicted_idle, *evicted_never, *evicted_budget, *sweeps, *sweep_errors;
	int64_t *tracked;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t bucket(const struct ctx *c, const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h)); /* public keys are uniformly random */
	return h & (c->nbuckets - 1);
}

static struct entry *lookup(struct ctx *c, const uint8_t *key)
{
	struct entry *e;

	for (e = c->buckets[bucket(c, key)]; e; e = e->next)
		if (!memcmp(e->key, key, WGGWD_KEY_LEN))
			return e;
	return NULL;
}

static void grow(struct ctx *c)
{
	size_t old = c->nbuckets, i;
	struct entry **ob = c->buckets, *e, *n;
	struct entry **nb = calloc(old * 2, sizeof(*nb));

	if (!nb)
		return; /* chains get longer; still correct */
	c->buckets = nb;
	c->nbuckets = old * 2;
	for (i = 0; i < old; i++) {
		for (e = ob[i]; e; e = n) {
			n = e->next;
			e->next = nb[bucket(c, e->key)];
			nb[bucket(c, e->key)] = e;
		}
	}
	free(ob);
}

static struct entry *track(struct ctx *c, const uint8_t *key, uint64_t now)
{
	struct entry *e = lookup(c, key);
	size_t b;

	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->key, key, WGGWD_KEY_LEN);
	e->installed_ms = now;
	e->sweep = c->sweep;
	if (c->n >= c->nbuckets)
		grow(c);
	b = bucket(c, key);
	e->next = c->buckets[b];
	c->buckets[b] = e;
	c->n++;
	*c->tracked = c->n;
	return e;
}

static void untrack(struct ctx *c, const uint8_t *key)
{
	struct entry **pp, *e;

	for (pp = &c->buckets[bucket(c, key)]; (e = *pp); pp = &e->next) {
		if (!memcmp(e->key, key, WGGWD_KEY_LEN)) {
			*pp = e->next;
			free(e);
			c->n--;
			*c->tracked = c->n;
			return;
		}
	}
}

/* An item that went through the installer: the client is here. */
static int ei_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const uint8_t *key = it->peer.has & WGGWD_PEER_HAS_PUBLIC_KEY ? it->peer.public_key
								     : it->public_key;
	struct entry *e;
	uint64_t now = mono_ms();

	/* pushed peers belong to the control plane: it removes them */
	if (it->op == WGGWD_OP_REMOVE || it->peer.origin == WGGWD_ORIGIN_PUSH ||
	    it->transport == WGGWD_TR_PUSH) {
		untrack(c, key);
		return WGGWD_CONTINUE;
	}
	e = track(c, key, now);
	if (e) {
		e->seen_ms = now;
		if (!(it->flags & WGGWD_ITEM_UNCHANGED))
			e->installed_ms = now; /* (re-)installed: a new grace */
	}
	return WGGWD_CONTINUE;
}

struct victim {
	const uint8_t *key;
	uint64_t active;  /* last activity, ms (realtime scale for sorting) */
};

static int cmp_victim(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	return x->active < y->active ? -1 : x->active > y->active;
}

struct sweep_req {
	struct ctx *c;
	size_t n;
	uint8_t (*keys)[WGGWD_KEY_LEN];
};

static void on_removed(void *arg, int status)
{
	struct sweep_req *r = arg;
	struct ctx *c = r->c;
	size_t i;

	if (status) {
		(*c->sweep_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "removing %zu idle peers failed: %s", r->n,
			     strerror(-status));
	} else {
		for (i = 0; i < r->n; i++)
			untrack(c, r->keys[i]);
	}
	free(r->keys);
	free(r);
	c->sweeping = false;
}

static void on_dump(void *arg, int status, const struct wggwd_peer_state *peers, size_t n)
{
	struct ctx *c = arg;
	const struct conf *cf = c->conf;
	uint64_t now = mono_ms();
	struct timespec rt;
	int64_t now_real_ms;
	struct victim *keep = NULL;
	struct sweep_req *req = NULL;
	size_t i, nkeep = 0, nvict = 0;
	uint64_t seen_ago;
	char b64[WG_KEY_B64_LEN];

	if (c->stopping) {
		c->sweeping = false;
		return;
	}
	if (status) {
		(*c->sweep_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "cannot read the interface's peers: %s",
			     strerror(-status));
		c->sweeping = false;
		return;
	}
	(*c->sweeps)++;
	c->sweep++;
	clock_gettime(CLOCK_REALTIME, &rt);
	now_real_ms = (int64_t)rt.tv_sec * 1000 + rt.tv_nsec / 1000000;
	req = calloc(1, sizeof(*req));
	keep = calloc(n ? n : 1, sizeof(*keep));
	if (req)
		req->keys = calloc(n ? n : 1, sizeof(*req->keys));
	if (!req || !keep || !req->keys)
		goto oom;
	req->c = c;
	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *p = &peers[i];
		struct entry *e = lookup(c, p->public_key);
		int64_t hs_ms = p->last_handshake_sec * 1000 + p->last_handshake_nsec / 1000000;
		const char *why = NULL;
		uint64_t active;

		if (!e && !cf->all_peers)
			continue;
		if (!e)
			e = track(c, p->public_key, now);
		if (!e)
			goto oom;
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
		if (e->rx_at_ms > hs_ms && p->last_handshake_sec)
			hs_ms = e->rx_at_ms; /* traffic since the handshake */
		seen_ago = now - (e->seen_ms > e->installed_ms ? e->seen_ms : e->installed_ms);
		if ((int64_t)seen_ago < cf->grace_ms)
			continue; /* installed or knocking just now: mid-handshake */
		if (!p->last_handshake_sec) {
			why = "never completed a handshake";
			(*c->evicted_never)++;
		} else if (now_real_ms - hs_ms > cf->idle_ms) {
			why = "idle";
			(*c->evicted_idle)++;
		}
		if (why) {
			wg_key_to_b64(b64, p->public_key);
			c->host->log(c->self, WGGWD_LOG_INFO, "evicting %s: %s", b64, why);
			memcpy(req->keys[req->n++], p->public_key, WGGWD_KEY_LEN);
			continue;
		}
		/* last activity on one scale: handshake (realtime) or seen (mono) */
		active = (uint64_t)(now_real_ms - (int64_t)seen_ago);
		if ((int64_t)active < hs_ms)
			active = hs_ms;
		keep[nkeep].key = p->public_key;
		keep[nkeep++].active = active;
	}
	if (cf->max_peers && nkeep > (size_t)cf->max_peers) {
		qsort(keep, nkeep, sizeof(*keep), cmp_victim);
		nvict = nkeep - cf->max_peers;
		for (i = 0; i < nvict; i++)
			memcpy(req->keys[req->n++], keep[i].key, WGGWD_KEY_LEN);
		*c->evicted_budget += nvict;
		c->host->log(c->self, WGGWD_LOG_INFO, "over max_peers (%zu > %lld): evicting the %zu least recently active",
			     nkeep, (long long)cf->max_peers, nvict);
	}
	/* forget what is no longer on the interface (removed by hand) */
	for (i = 0; i < c->nbuckets; i++) {
		struct entry **pp = &c->buckets[i], *e;

		while ((e = *pp)) {
			if (e->sweep != c->sweep && (int64_t)(now - e->installed_ms) > cf->grace_ms) {
				*pp = e->next;
				free(e);
				c->n--;
			} else {
				pp = &e->next;
			}
		}
	}
	*c->tracked = c->n;
	free(keep);
	if (!req->n) {
		free(req->keys);
		free(req);
		c->sweeping = false;
		return;
	}
	{
		const struct wggwd_installer *ins = c->host->installer(c->self);

		if (ins->ops->remove(ins->ctx, (const uint8_t (*)[WGGWD_KEY_LEN])req->keys, req->n,
				     on_removed, req))
			on_removed(req, -EIO);
	}
	return;
oom:
	(*c->sweep_errors)++;
	free(keep);
	if (req)
		free(req->keys);
	free(req);
	c->sweeping = false;
}

static void on_tick(void *arg)
{
	struct ctx *c = arg;
	const struct wggwd_installer *ins = c->host->installer(c->self);

	if (c->sweeping || c->stopping)
		return; /* the last sweep is still on its way */
	c->sweeping = true;
	if (ins->ops->dump(ins->ctx, on_dump, c)) {
		(*c->sweep_errors)++;
		c->sweeping = false;
	}
}

static int ei_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->nbuckets = 1024;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return -ENOMEM;
	}
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->evicted_idle = host->counter(self, "evicted_idle");
	c->evicted_never = host->counter(self, "evicted_never_completed");
	c->evicted_budget = host->counter(self, "evicted_over_budget");
	c->sweeps = host->counter(self, "sweeps");
	c->sweep_errors = host->counter(self, "sweep_errors");
	c->tracked = host->gauge(self, "tracked_peers");
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
	c->timer = c->host->timer_new(c->self, on_tick, c);
	c->host->timer_start(c->timer, c->conf->interval_ms, c->conf->interval_ms);
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
	struct entry *e, *n;
	size_t i;

	for (i = 0; i < c->nbuckets; i++)
		for (e = c->buckets[i]; e; e = n) {
			n = e->next;
			free(e);
		}
	free(c->buckets);
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
