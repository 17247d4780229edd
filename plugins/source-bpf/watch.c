// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf: the watch of returning clients.
 *
 * Returning clients (watch_returning). A peer evicted (idle, max_peers)
 * while its session was live (last handshake < 180 s, REJECT_AFTER_TIME)
 * has a client that keeps sending transport data the interface can no
 * longer read, and would only initiate again after 15 s without replies.
 * The core tells us of each removal (ops.removed, with the endpoint and
 * the last handshake the installer knew): such a key and its endpoint are
 * watched until its session would have expired anyway, in a table of at
 * most watch_max keys, and the filter is rebuilt (sbfilter.c) to let
 * through type-4 packets from exactly those endpoints (only their headers).
 * The first one becomes an item that already carries the key (the core
 * skips the decoder) with WGGWD_ITEM_INVERT: the store or resolver gives
 * the config, and the installer completes by role inversion, so the
 * gateway initiates and the client, whose data went unanswered, answers at
 * once. A watch is spent once used (or once the key is installed again by
 * its own initiation) and expires with the session; a key returns at most
 * once a second. Removals someone asked for (revoked, pushed, expired,
 * reconcile, by hand) are never watched. A data packet proves nothing:
 * anyone who can send from the client's address and port can make the
 * gateway re-install the peer with that same endpoint and initiate to it,
 * once a second for at most 180 s after an eviction: only the holder of
 * the key can complete that handshake.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "source_bpf.h"

static bool collect_armed(void *arg, struct wgt_ent *h)
{
	struct ctx *c = arg;
	struct watch *w = (struct watch *)h;

	if (w->state == W_ARMED && c->n_armed < (size_t)c->conf->watch_max)
		c->armed[c->n_armed++] = w;
	return false;
}

static int cmp_later(const void *a, const void *b)
{
	const struct watch *x = *(struct watch *const *)a, *y = *(struct watch *const *)b;

	return x->expires_ns > y->expires_ns ? -1 : x->expires_ns < y->expires_ns;
}

/*
 * Build the filter for the armed watches and put it in place of the
 * socket's (SO_ATTACH_FILTER swaps it in one step: every packet meets one
 * program or the other; what the old one let through is still read, and
 * checked against the table). The kernel charges the new program to the
 * socket's option memory (net.core.optmem_max) while the old one is still
 * charged: on ENOMEM, the initiations-only program goes in first (for
 * microseconds, watched data is not let through: its next packet is), then
 * the new one; if that is still too big, the watches that expire last are
 * filtered, and the size that failed is remembered.
 */
int filter_apply(struct ctx *c)
{
	size_t n, all, i, len;
	bool bare = false;
	int ret;

	c->n_armed = 0;
	wgt_sweep(&c->watch, collect_armed, c);
	all = n = c->n_armed;
	qsort(c->armed, n, sizeof(*c->armed), cmp_later);
	if (c->fit && n >= c->fit)
		n = c->fit - 1;
	for (;;) {
		for (i = 0; i < n; i++)
			c->eps[i] = c->armed[i]->ep;
		len = sbf_build(c->prog, c->port, c->conf->cookie_watch, c->eps, n);
		ret = attach_filter(c->fd, c->prog, len);
		if (ret != -ENOMEM || !n)
			break;
		if (!bare) {
			bare = true;
			if (!attach_filter(c->fd, c->prog,
					  sbf_build(c->prog, c->port, c->conf->cookie_watch, NULL, 0)))
				continue; /* the old one is released: again */
		}
		c->fit = n;
		n = n * 3 / 4;
	}
	if (ret) {
		*c->watch_entries = 0;
		return ret;
	}
	*c->watch_entries = n;
	if (n < all)
		log_limited(c, WGGWD_LOG_WARN,
			    "the kernel refuses a filter for all %zu watched endpoints (ENOMEM: raise net.core.optmem_max); filtering %zu, those that expire last",
			    all, n);
	c->host->log(c->self, WGGWD_LOG_DEBUG, "filter: %zu instructions, %zu endpoints watched",
		     len, n);
	return 0;
}

void on_regen(void *arg)
{
	struct ctx *c = arg;
	int ret;

	c->regen_armed = false;
	if (c->fd < 0 || c->stopping)
		return;
	ret = filter_apply(c);
	if (ret)
		log_limited(c, WGGWD_LOG_ERROR, "SO_ATTACH_FILTER: %s; the previous filter stays",
			    strerror(-ret));
}

/* The filter is rebuilt once per turn of the loop, however many changes. */
void filter_dirty(struct ctx *c)
{
	if (c->regen && !c->regen_armed && !c->stopping) {
		c->host->timer_start(c->regen, 0, 0);
		c->regen_armed = true;
	}
}

static struct watch *watch_by_ep(struct ctx *c, const union wggwd_sockaddr *ep)
{
	struct wgt_ent *h;
	size_t i;

	for (i = 0; i < c->watch.nb; i++)
		for (h = c->watch.b[i]; h; h = h->next)
			if (wg_sockaddr_equal(&((struct watch *)h)->ep, ep))
				return (struct watch *)h;
	return NULL;
}

/* Room for one more: a spent watch, else the one that expires first. */
static void watch_make_room(struct ctx *c)
{
	struct watch *v = NULL, *w;
	struct wgt_ent *h;
	size_t i;

	for (i = 0; i < c->watch.nb; i++) {
		for (h = c->watch.b[i]; h; h = h->next) {
			w = (struct watch *)h;
			if (!v || (w->state == W_SPENT) > (v->state == W_SPENT) ||
			    ((w->state == W_SPENT) == (v->state == W_SPENT) &&
			     w->expires_ns < v->expires_ns))
				v = w;
		}
	}
	if (!v)
		return;
	if (v->state != W_SPENT)
		(*c->watch_full)++;
	wgt_del(&c->watch, v->h.key);
}

/* Removals of live sessions the client did not ask for: evictions. */
static bool watchable(const struct wggwd_item *it)
{
	return it->reason == WGGWD_R_IDLE || it->reason == WGGWD_R_MAX_PEERS;
}

/*
 * ops.removed: a peer left the interface. If its session is still live
 * (the client will send data on it, which the interface can no longer
 * read), watch its endpoint until that session would have expired.
 */
void sb_removed(void *ctx, const struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const struct wggwd_peer *p = it->peer;
	const uint8_t *key = p->has & WGGWD_PEER_HAS_PUBLIC_KEY ? p->public_key : it->public_key;
	const uint32_t need = WGGWD_PEER_HAS_ENDPOINT | WGGWD_PEER_HAS_HANDSHAKE;
	char b64[WG_KEY_B64_LEN], ep[64];
	int64_t left_ms;
	struct watch *w, *o;

	if (!c->conf->watch_returning || c->fd < 0 || c->stopping || !watchable(it) ||
	    (p->has & need) != need || p->last_handshake_sec <= 0 ||
	    (p->endpoint.sa.sa_family != AF_INET && p->endpoint.sa.sa_family != AF_INET6))
		return;
	left_ms = (p->last_handshake_sec + REJECT_AFTER_S) * 1000 -
		  (int64_t)(c->host->realtime_ns() / 1000000);
	if (left_ms <= 0)
		return; /* the client must initiate before it sends again */
	/* one endpoint, one watch: the newest removal from it wins */
	o = watch_by_ep(c, &p->endpoint);
	if (o && memcmp(o->h.key, key, WGGWD_KEY_LEN))
		wgt_del(&c->watch, o->h.key);
	w = wgt_get(&c->watch, key);
	if (!w) {
		if (c->watch.n >= (size_t)c->conf->watch_max)
			watch_make_room(c);
		w = wgt_put(&c->watch, key, NULL);
		if (!w)
			return;
	}
	w->ep = p->endpoint;
	w->expires_ns = c->host->now_ns() + (uint64_t)left_ms * 1000000;
	w->state = W_ARMED; /* not_before stays: the rate limit */
	(*c->watched)++;
	filter_dirty(c);
	wg_key_to_b64(b64, key);
	wg_sockaddr_str(&p->endpoint, ep, sizeof(ep));
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "watching %s at %s for %lld s: evicted (%s) with a live session; its next data packet brings it back",
		     b64, ep, (long long)(left_ms + 999) / 1000, c->host->reason_name(it->reason));
}

/* A data packet from a watched endpoint: the client is back. */
void watch_hit(struct ctx *c, const union wggwd_sockaddr *src,
	       const union wggwd_sockaddr *dst, unsigned ifindex,
	       const uint8_t *payload, size_t plen, uint64_t rx_ns)
{
	uint64_t now = c->host->now_ns();
	char b64[WG_KEY_B64_LEN], ep[64];
	struct watch *w;

	w = watch_by_ep(c, src);
	if (!w || w->state != W_ARMED || now >= w->expires_ns || now < w->not_before_ns) {
		(*c->watch_late)++;
		return;
	}
	/* before the emit: its done may come from within */
	w->state = W_INFLIGHT;
	wg_key_to_b64(b64, w->h.key);
	wg_sockaddr_str(src, ep, sizeof(ep));
	if (emit_known(c, w->h.key, WGGWD_ITEM_INVERT, payload, plen < RETURN_PKT ? plen : RETURN_PKT,
		       src, dst, ifindex, rx_ns)) {
		w->state = W_ARMED; /* its next packet tries again */
		return;
	}
	w->not_before_ns = now + RETURN_GAP_NS;
	filter_dirty(c);
	(*c->returning)++;
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "returning: %s at %s sent data on its live session; re-installing it, the gateway initiates",
		     b64, ep);
}

/* Worth watching again after a failure: the pipeline may say yes later. */
static bool transient(const struct wggwd_item *it, int verdict)
{
	if (verdict == WGGWD_ERROR)
		return true;
	switch (it->reason) {
	case WGGWD_R_NO_MEMORY: case WGGWD_R_BUDGET: case WGGWD_R_BACKOFF:
	case WGGWD_R_BREAKER_OPEN: case WGGWD_R_OVERLOADED: case WGGWD_R_QUEUE_TIMEOUT:
	case WGGWD_R_RATE_LIMITED: case WGGWD_R_HTTP_STATUS: case WGGWD_R_TIMEOUT:
	case WGGWD_R_CONNECT: case WGGWD_R_TLS: case WGGWD_R_INSTALL_FAILED:
	case WGGWD_R_INSTALLER_NOT_READY:
		return true;
	default:
		return false; /* unknown, refused, a duplicate on its way... */
	}
}

/* How a returning client's item ended. */
void watch_done(struct ctx *c, const struct wggwd_item *it, int verdict)
{
	struct watch *w = wgt_get(&c->watch, it->public_key);
	char b64[WG_KEY_B64_LEN];
	bool again;

	if (!w || w->state != W_INFLIGHT)
		return; /* removed again meanwhile: watched anew */
	if (verdict == WGGWD_CONTINUE || verdict == WGGWD_DONE) {
		w->state = W_SPENT;
		return;
	}
	(*c->return_failed)++;
	again = transient(it, verdict) && c->host->now_ns() < w->expires_ns;
	w->state = again ? W_ARMED : W_SPENT;
	if (again)
		filter_dirty(c);
	wg_key_to_b64(b64, it->public_key);
	log_limited(c, WGGWD_LOG_WARN, "returning %s: %s (%s%s%s); %s", b64,
		    verdict == WGGWD_ERROR ? "failed" : "dropped", c->host->reason_name(it->reason),
		    it->detail ? ": " : "", it->detail ? it->detail : "",
		    again ? "watching it again" : "no longer watched");
}

/* wgt_sweep: drop the watches whose session is over. */
bool watch_expire(void *arg, struct wgt_ent *h)
{
	struct ctx *c = arg;
	struct watch *w = (struct watch *)h;

	if (c->host->now_ns() < w->expires_ns)
		return false;
	if (w->state == W_ARMED) {
		(*c->watch_expired)++;
		filter_dirty(c);
	}
	return true;
}
