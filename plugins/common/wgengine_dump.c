// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The install engine's dumps (see wgengine.h): one at a time, shared by
 * every caller, annotated with what the engine knows (origin, install
 * time); and what each dump tells the engine: a first handshake (the
 * keepalive goes back), none yet (the collision retry, or the restore
 * after restore_timeout), a peer gone from the interface (forgotten).
 *
 * Installs first: a knocking client must not wait on housekeeping. A
 * dump of a large interface takes long (wireguard-go serialises its IPC:
 * a set waits for a get in progress; the kernel's dump holds the socket
 * its answer comes on), so a dump wanted while sets are on their way
 * waits until they are done (for at most `timeout`: a steady stream of
 * installs does not starve it), and the sets that arrive meanwhile go
 * first. A dump that has started is not interrupted: how often dumps run
 * is their callers' part (evictor-idle stretches its interval with the
 * dump's cost; the restore poll below does too). What a dump tells is
 * judged in slices, a loop turn each (see judge()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wgengine_int.h"

/* --------------------------------------------------------- completion */

static void retry_install(struct wge *e, struct peer *p)
{
	struct wggwd_peer *cp = p->retry;
	struct wge_op *op;
	char k[WG_KEY_B64_LEN];

	wge_take_retry(e, p, false);
	op = wge_op_new(2, K_RETRY);
	if (!op) {
		wge_peer_free(cp);
		return;
	}
	op->priv->own = cp;
	op->ent[0].kind = WGE_REMOVE;
	memcpy(op->ent[0].key, p->h.key, WGGWD_KEY_LEN);
	op->ent[1].kind = WGE_INSTALL;
	memcpy(op->ent[1].key, p->h.key, WGGWD_KEY_LEN);
	op->ent[1].ep = p->ep;
	op->ent[1].keepalive = p->ka_sent;
	op->ent[1].peer = cp;
	(*e->stall_retries)++;
	e->env.host->log(e->env.self, WGGWD_LOG_INFO,
			 "peer %s: no handshake %.0f ms after an inverted install (a collision); installing it afresh",
			 b64(k, p->h.key), (double)(e->env.host->now_ns() - p->await_ns) / MS);
	p->since_real_ns = e->env.host->realtime_ns();
	wge_set(e, op);
}

void wge_seen(struct peer *p, const struct wggwd_peer_state *ps)
{
	p->seen = true;
	p->seen_ep = ps->endpoint;
	p->hs_sec = ps->last_handshake_sec;
	p->hs_nsec = ps->last_handshake_nsec;
	p->rx_bytes = ps->rx_bytes;
	p->tx_bytes = ps->tx_bytes;
}

/* Listed by no dump though installed before it started: removed by
 * someone else; forget it, so that it is installed again when asked. */
static bool gone(void *arg, struct wgt_ent *h)
{
	struct wge *e = arg;
	struct peer *p = (struct peer *)h;
	char k[WG_KEY_B64_LEN];

	if (p->mark == e->mark || p->gen > e->dump_gen)
		return false;
	e->env.host->log(e->env.self, WGGWD_LOG_DEBUG, "peer %s is no longer on %s; forgetting it",
			 b64(k, p->h.key), e->env.conf->interface);
	return true;
}

/* One peer of a dump: what the engine knows of it goes in (origin,
 * install time); if it is ours, what the dump tells: a handshake done
 * (put the keepalive back: into *op, made with room for *cap), not done
 * (retry, or give up waiting). */
static void observe(struct wge *e, struct wggwd_peer_state *ps, uint64_t now,
		    struct wge_op **op, size_t *cap)
{
	const struct wge_conf *cf = e->env.conf;
	struct peer *p = wgt_get(&e->peers, ps->public_key);
	char k[WG_KEY_B64_LEN];
	uint64_t hs;
	bool done, late;

	ps->size = sizeof(*ps);
	ps->origin = p ? p->origin : WGGWD_ORIGIN_NONE;
	ps->installed_ns = p ? p->installed_ns : 0;
	if (!p)
		return;
	p->mark = e->mark;
	if (p->gen > e->dump_gen)
		return; /* installed since the dump began: it may predate that */
	wge_seen(p, ps);
	if (!p->awaiting || p->restoring)
		return;
	hs = (uint64_t)ps->last_handshake_sec * NS + ps->last_handshake_nsec;
	/* a handshake from before the install (a session that was up)
	 * does not count; a second of slack for clock granularity */
	done = ps->last_handshake_sec && hs + NS >= p->since_real_ns;
	late = !done && now - p->await_ns >= (uint64_t)cf->restore_timeout_ms * MS;
	if (!done && !late) {
		/* 2 ms of slack: the poll timer counts in the loop's
		 * milliseconds, and may fire a little before */
		if (p->retry && now + 2 * MS - p->await_ns >= (uint64_t)cf->stall_retry_ms * MS)
			retry_install(e, p);
		return;
	}
	if (!*op)
		*op = wge_restore_op(*cap);
	if (!*op || (*op)->n == *cap)
		return; /* short of memory: the next dump tries again */
	wge_restore_add(*op, p);
	if (done) {
		e->env.host->log(e->env.self, WGGWD_LOG_INFO,
				 "peer %s: handshake %.1f ms after install; keepalive back to %u",
				 b64(k, p->h.key), ((double)hs - (double)p->since_real_ns) / 1e6,
				 p->keepalive);
	} else {
		(*e->restore_timeouts)++;
		e->env.host->log(e->env.self, WGGWD_LOG_INFO,
				 "peer %s: no handshake %.0f s after install; keepalive back to %u anyway",
				 b64(k, p->h.key), (double)(now - p->await_ns) / NS, p->keepalive);
	}
}

/* ------------------------------------------------------ judging a dump */

static void dump_kick(struct wge *e);
static void on_slice(void *arg);

/*
 * A dump's result is judged in slices: at most SLICE peers (or buckets of
 * the sweep for peers gone) a loop turn, so that a knocking client waits
 * for one slice at most, never for 10^5 peers (tens of ms). Callers of
 * dump_slices get each slice as it is judged; callers of dump get the
 * whole array at the end. The backend's array stays valid meanwhile: its
 * next dump waits (`dumping` stays set), and stop cancels the rest.
 */
#define SLICE 512

/* The waiters' answer; then the next dump may start (the caller kicks
 * it): not from their callbacks, while the array is still theirs. */
static void judged(struct wge *e, int err)
{
	struct wggwd_peer_state *v = e->sv;
	size_t n = e->sn;
	struct waiter *w, *next;

	if (e->slice)
		e->env.host->timer_stop(e->slice);
	e->judging = false;
	for (w = e->cur, e->cur = NULL; w; w = next) {
		next = w->next;
		if (err || w->sliced)
			w->cb(w->arg, err, NULL, 0, sizeof(*v));
		else
			w->cb(w->arg, 0, v, n, sizeof(*v));
		free(w);
	}
	e->dumping = false;
	e->sv = NULL;
	e->sn = 0;
}

/* Up to SLICE peers from e->si: true if stopped meanwhile. */
static bool judge_peers(struct wge *e, size_t max)
{
	size_t i = e->si, end = e->sn - i > max ? i + max : e->sn;
	size_t cap = e->nawaiting < end - i ? e->nawaiting : end - i;
	uint64_t now = e->env.host->now_ns();
	struct wge_op *op = NULL;
	struct waiter *w, *next;

	for (; i < end; i++)
		observe(e, &e->sv[i], now, &op, &cap);
	if (op)
		wge_send_op(e, op);
	for (w = e->cur; w && !e->stopping; w = next) {
		next = w->next; /* a stop from a callback frees them all */
		if (w->sliced)
			w->cb(w->arg, WGGWD_DUMP_MORE, e->sv + e->si, end - e->si, sizeof(*e->sv));
	}
	e->si = end;
	return e->stopping;
}

/* A loop turn's worth (SLICE peers or buckets): true when nothing is
 * left (the waiters answered) or stopped meanwhile. */
static bool judge_some(struct wge *e)
{
	size_t budget = SLICE, k;

	for (; budget; budget -= k) {
		if (e->si < e->sn) {
			k = e->sn - e->si < budget ? e->sn - e->si : budget;
			if (judge_peers(e, k))
				return true;
		} else if (e->gone_at < e->peers.nb) {
			k = e->peers.nb - e->gone_at < budget ? e->peers.nb - e->gone_at : budget;
			e->gone_at = wgt_sweep_part(&e->peers, e->gone_at, k, gone, e);
		} else {
			wge_count_peers(e);
			judged(e, 0);
			dump_kick(e);
			wge_arm_poll(e);
			return true;
		}
	}
	return false;
}

static void judge(struct wge *e)
{
	while (!judge_some(e)) {
		if (!e->slice)
			e->slice = e->env.host->timer_new(e->env.self, on_slice, e);
		if (e->slice) {
			e->env.host->timer_start(e->slice, 0, 0); /* after the loop's I/O */
			return;
		} /* else short of memory: all at once */
	}
}

static void on_slice(void *arg)
{
	struct wge *e = arg;

	if (e->judging && !e->stopping)
		judge(e);
}

/* Stopping: the rest of a dump being judged is not. */
void wge_judge_cancel(struct wge *e)
{
	if (e->judging)
		judged(e, -ECANCELED);
}

/* ------------------------------------------------------------- dumps */

void wge_dump_init(struct wge *e)
{
	e->dumps_deferred = e->env.host->counter(e->env.self, "dumps_deferred");
	e->g_dump_ms = e->env.host->gauge(e->env.self, "dump_ms");
}

void wge_dump_fini(struct wge *e)
{
	e->env.host->timer_free(e->defer);
	e->defer = NULL;
	e->env.host->timer_free(e->slice);
	e->slice = NULL;
}

static void on_defer(void *arg)
{
	dump_kick(arg);
}

void wge_set(struct wge *e, struct wge_op *op)
{
	e->sets_issued++;
	e->be->set(e->b, op);
}

void wge_set_done(struct wge *e)
{
	if (e->sets_done >= e->sets_issued && e->want_ns)
		dump_kick(e);
}

/* Installs first: true if the wanted dump waits for the sets on their
 * way (then the deferral's end is armed). */
static bool dump_defer(struct wge *e)
{
	uint64_t now = e->env.host->now_ns(), cap = (uint64_t)e->env.conf->timeout_ms * MS;

	if (!e->want_ns)
		e->want_ns = now;
	if (e->sets_done >= e->sets_issued || now - e->want_ns >= cap)
		return false;
	if (!e->deferred) {
		e->deferred = true;
		(*e->dumps_deferred)++;
		if (!e->defer)
			e->defer = e->env.host->timer_new(e->env.self, on_defer, e);
		if (e->defer)
			e->env.host->timer_start(e->defer, (cap - (now - e->want_ns)) / MS + 1, 0);
	}
	return true;
}

static void dump_kick(struct wge *e)
{
	int ret;

	if (e->dumping || e->stopping || (!e->wait && !e->poll_wanted))
		return;
	if (dump_defer(e))
		return;
	if (e->deferred && e->defer)
		e->env.host->timer_stop(e->defer);
	e->want_ns = 0;
	e->deferred = false;
	e->dumping = true;
	e->cur = e->wait;
	e->wait = NULL;
	e->poll_wanted = false;
	e->dump_gen = e->sets_done;
	e->dump_t0 = e->env.host->now_ns();
	ret = e->be->dump(e->b);
	if (ret)
		wge_dump_done(&e->env, ret, NULL, 0);
}

void wge_dump_done(const struct wge_env *env, int err, struct wggwd_peer_state *v, size_t n)
{
	struct wge *e = ENG(env);

	e->dump_ns = e->env.host->now_ns() - e->dump_t0;
	*e->g_dump_ms = (int64_t)(e->dump_ns / MS);
	if (err && err != -ECANCELED)
		e->env.host->log(e->env.self, WGGWD_LOG_WARN, "reading the peers of %s: %s",
				 e->env.conf->interface, strerror(-err));
	if (err || e->stopping) {
		judged(e, err ? err : -ECANCELED);
		dump_kick(e);
		wge_arm_poll(e);
		return;
	}
	(*e->dumps)++;
	e->sv = v;
	e->sn = n;
	e->si = e->gone_at = 0;
	e->mark++;
	e->judging = true;
	judge(e);
}

void wge_on_poll(void *arg)
{
	struct wge *e = arg;

	e->poll_armed = false;
	if (!e->nawaiting || e->stopping)
		return;
	e->poll_wanted = true;
	dump_kick(e);
}

void wge_arm_poll(struct wge *e)
{
	uint64_t ms = e->env.conf->restore_poll_ms;

	if (!e->running || e->stopping || e->poll_armed || e->dumping || !e->nawaiting)
		return;
	/* on a large interface, do not dump back to back: a collision
	 * retry is worth 10% of the time, a keepalive restore 1% */
	if (e->nretry && (uint64_t)e->env.conf->stall_retry_ms < ms)
		ms = e->env.conf->stall_retry_ms;
	if (e->dump_ns / MS * (e->nretry ? 10 : 100) > ms)
		ms = e->dump_ns / MS * (e->nretry ? 10 : 100);
	e->env.host->timer_start(e->poll, ms, 0);
	e->poll_armed = true;
}

static int add_waiter(struct wge *e, wggwd_dump_cb cb, void *arg, bool sliced)
{
	struct waiter *w, **pp;

	if (!e->running || e->stopping)
		return -ESHUTDOWN;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cb = cb;
	w->arg = arg;
	w->sliced = sliced;
	for (pp = &e->wait; *pp; pp = &(*pp)->next)
		;
	*pp = w;
	dump_kick(e);
	return 0;
}

int wge_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	return add_waiter(ctx, cb, arg, false);
}

int wge_dump_slices(void *ctx, wggwd_dump_cb cb, void *arg)
{
	return add_waiter(ctx, cb, arg, true);
}

/* The interface went away (wireguard-go restarted?): what we installed is
 * unverified; forget it so that the next knock installs again. Peers
 * waiting for their handshake stay (stale: installed again when asked),
 * so that their keepalive is still put back if they were not lost. */
static bool forget(void *arg, struct wgt_ent *h)
{
	struct peer *p = (struct peer *)h;
	size_t *n = arg;

	if (p->awaiting) {
		p->stale = true;
		return false;
	}
	(*n)++;
	return true;
}

void wge_lost(const struct wge_env *env)
{
	struct wge *e = ENG(env);
	size_t n = 0;

	wgt_sweep(&e->peers, forget, &n);
	wge_count_peers(e);
	if (n)
		e->env.host->log(e->env.self, WGGWD_LOG_INFO,
				 "forgetting %zu installed peers: %s may have restarted without them", n,
				 e->env.conf->interface);
}
