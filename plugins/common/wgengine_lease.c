// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The install engine's leases (see wgengine.h): a peer whose item carried
 * WGGWD_PEER_HAS_EXPIRES is removed at expires_at (Unix seconds), even
 * while active, through the pipeline (host->retire, reason expired). The
 * peers with a lease are kept in a min-heap by expiry; one timer waits for
 * the soonest, so a million leases cost no more timers than one. The wait
 * is at most a minute at a time: the lease is wall-clock time, the timer
 * monotonic, and a clock that was stepped is caught up with within it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wgengine_int.h"

#define LEASE_WAIT_MAX_MS 60000ull

bool wge_lease_over(const struct wge *e, int64_t expires_at)
{
	uint64_t now = e->env.host->realtime_ns();

	return expires_at <= 0 || (uint64_t)expires_at * NS <= now;
}

static void put(struct wge *e, size_t i, struct peer *p)
{
	e->leases[i] = p;
	p->lease_at = i + 1;
}

static void sift_up(struct wge *e, size_t i)
{
	struct peer *p = e->leases[i];

	while (i) {
		size_t up = (i - 1) / 2;

		if (e->leases[up]->expires_at <= p->expires_at)
			break;
		put(e, i, e->leases[up]);
		i = up;
	}
	put(e, i, p);
}

static void sift_down(struct wge *e, size_t i)
{
	struct peer *p = e->leases[i];

	for (;;) {
		size_t m = 2 * i + 1; /* the sooner child */

		if (m >= e->nleases)
			break;
		if (m + 1 < e->nleases && e->leases[m + 1]->expires_at < e->leases[m]->expires_at)
			m++;
		if (e->leases[m]->expires_at >= p->expires_at)
			break;
		put(e, i, e->leases[m]);
		i = m;
	}
	put(e, i, p);
}

/* Wait for the soonest expiry (or stop waiting: none). */
static void arm(struct wge *e)
{
	uint64_t now, due, ms = 0;

	if (!e->lease_timer || !e->running || e->stopping)
		return;
	*e->g_leases = e->nleases;
	if (!e->nleases) {
		e->env.host->timer_stop(e->lease_timer);
		return;
	}
	now = e->env.host->realtime_ns();
	due = (uint64_t)e->leases[0]->expires_at * NS;
	if (due > now)
		ms = (due - now + MS - 1) / MS;
	if (ms > LEASE_WAIT_MAX_MS)
		ms = LEASE_WAIT_MAX_MS;
	e->env.host->timer_start(e->lease_timer, ms, 0);
}

static void heap_del(struct wge *e, struct peer *p)
{
	size_t i = p->lease_at - 1;
	struct peer *last = e->leases[--e->nleases];

	p->lease_at = 0;
	if (last == p)
		return;
	put(e, i, last);
	sift_up(e, i);
	sift_down(e, last->lease_at - 1);
}

void wge_lease_drop(struct wge *e, struct peer *p)
{
	bool top = p->lease_at == 1;

	p->expires_at = 0;
	if (!p->lease_at)
		return;
	heap_del(e, p);
	if (top)
		arm(e);
	*e->g_leases = e->nleases;
}

void wge_lease_set(struct wge *e, struct peer *p, bool has, int64_t expires_at)
{
	struct peer **v;
	size_t cap;

	if (!has || expires_at <= 0) {
		wge_lease_drop(e, p);
		return;
	}
	if (p->lease_at) {
		if (p->expires_at == expires_at)
			return;
		p->expires_at = expires_at;
		sift_up(e, p->lease_at - 1);
		sift_down(e, p->lease_at - 1);
		arm(e);
		return;
	}
	if (e->nleases == e->leases_cap) {
		cap = e->leases_cap ? e->leases_cap * 2 : 64;
		v = realloc(e->leases, cap * sizeof(*v));
		if (!v) {
			char k[WG_KEY_B64_LEN];

			/* better early than never: a lease is a limit */
			e->env.host->log(e->env.self, WGGWD_LOG_ERROR,
					 "out of memory: peer %s cannot keep its lease; removing it now",
					 b64(k, p->h.key));
			(*e->expired)++;
			e->env.host->retire(e->env.self, p->h.key, WGGWD_R_EXPIRED);
			return;
		}
		e->leases = v;
		e->leases_cap = cap;
	}
	p->expires_at = expires_at;
	e->leases[e->nleases++] = p;
	sift_up(e, e->nleases - 1);
	arm(e);
}

void wge_on_lease(void *arg)
{
	struct wge *e = arg;
	uint8_t key[WGGWD_KEY_LEN];
	char k[WG_KEY_B64_LEN];
	int64_t at;
	int ret;

	if (!e->running || e->stopping)
		return;
	while (e->nleases && wge_lease_over(e, e->leases[0]->expires_at)) {
		struct peer *p = e->leases[0];

		at = p->expires_at;
		memcpy(key, p->h.key, WGGWD_KEY_LEN);
		heap_del(e, p);
		p->expires_at = 0;
		(*e->expired)++;
		e->env.host->log(e->env.self, WGGWD_LOG_INFO,
				 "peer %s: its lease ended (expires_at %lld); removing it",
				 b64(k, key), (long long)at);
		/* runs the removal through the pipeline now: p may be gone */
		ret = e->env.host->retire(e->env.self, key, WGGWD_R_EXPIRED);
		if (ret && ret != -ESHUTDOWN)
			e->env.host->log(e->env.self, WGGWD_LOG_ERROR,
					 "peer %s: its lease ended but it could not be removed: %s",
					 b64(k, key), strerror(-ret));
	}
	arm(e);
}
