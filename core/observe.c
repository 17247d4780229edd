// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * What only the interface knows: when a JIT peer's first handshake
 * completed (wggwd_handshake_duration_seconds: from the initiation seen to
 * that handshake; wggwd_handshake_after_install_seconds: from the install
 * answered, the completion's part: the re-sent initiation or the
 * interface's own, the response, the client's first data), and how many
 * peers each interface has, by origin. The handshake also goes into the
 * item's timeline (`wggwd ctl why KEY`: handshake_ms).
 *
 * After an install the peer waits here; once a second, while any waits,
 * its installer's dump is read (the only source of handshake times every
 * installer has), and a handshake newer than the initiation ends the
 * wait. Peers that never complete one within HS_WAIT_S are counted as
 * wggwd_handshake_timeouts_total.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ctl.h"
#include "metrics.h"

#define HS_MAX 1024             /* peers waiting; more are not timed */
#define HS_BUCKETS 256          /* by the key's first byte: installed keys
                                 * are the control plane's, not a sender's */
#define HS_WAIT_S 60
#define HEARTBEAT_MS 1000
#define SLACK_NS 10000000ull    /* clock granularity between us and it */

struct hs_wait {
	struct hs_wait *next;
	uint8_t key[WGGWD_KEY_LEN];
	uint64_t rx_real_ns;
	uint64_t installed_real_ns;  /* when the install was answered */
	uint64_t since_ns;           /* monotonic */
	struct wggwd_inst *installer;
	char pipeline[64];
};

static struct {
	uv_timer_t heartbeat;
	bool running, dumping;
	uint64_t dump_t0, next_ns;   /* monotonic: the last dump began; the next may */
	struct hs_wait *waits[HS_BUCKETS];
	size_t n_waits;
} o;

static struct wggwd_hist *hs_hist(const char *pipeline)
{
	static const char *const lp[] = { "pipeline", NULL };
	const char *v[] = { pipeline };
	char name[256];

	snprintf(name, sizeof(name), "pipeline.%s.seconds_to_handshake", pipeline);
	return metrics_cell(name, M_HIST, "wggwd_handshake_duration_seconds",
			    "From the initiation seen to the first handshake completed on the interface (JIT installs)",
			    lp, v);
}

static struct wggwd_hist *hs_after_install_hist(const char *pipeline)
{
	static const char *const lp[] = { "pipeline", NULL };
	const char *v[] = { pipeline };
	char name[256];

	snprintf(name, sizeof(name), "pipeline.%s.seconds_install_to_handshake", pipeline);
	return metrics_cell(name, M_HIST, "wggwd_handshake_after_install_seconds",
			    "From the install answered to the first handshake completed on the interface (JIT installs): the completion's share",
			    lp, v);
}

static uint64_t *hs_timeouts(const char *pipeline)
{
	static const char *const lp[] = { "pipeline", NULL };
	const char *v[] = { pipeline };
	char name[256];

	snprintf(name, sizeof(name), "pipeline.%s.handshake_timeouts", pipeline);
	return metrics_cell(name, M_COUNTER, "wggwd_handshake_timeouts_total",
			    "JIT installs whose first handshake did not complete within a minute",
			    lp, v);
}

void observe_install(struct wggwd_inst *installer, const char *pipeline,
		     const uint8_t *key, uint64_t rx_real_ns)
{
	struct hs_wait *w, **head = &o.waits[key[0]];

	hs_hist(pipeline); /* the families show from the first install */
	hs_after_install_hist(pipeline);
	for (w = *head; w; w = w->next)
		if (w->installer == installer && !memcmp(w->key, key, WGGWD_KEY_LEN))
			return; /* the first initiation counts */
	if (o.n_waits >= HS_MAX || !(w = calloc(1, sizeof(*w))))
		return;
	memcpy(w->key, key, WGGWD_KEY_LEN);
	w->rx_real_ns = rx_real_ns;
	w->installed_real_ns = now_real_ns();
	w->since_ns = now_mono_ns();
	w->installer = installer;
	snprintf(w->pipeline, sizeof(w->pipeline), "%s", pipeline);
	w->next = *head;
	*head = w;
	o.n_waits++;
}

/* Does ps show w's first handshake? Then it is observed and w freed. */
static bool hs_done(struct hs_wait **pp, const struct wggwd_peer_state *ps)
{
	struct hs_wait *w = *pp;
	uint64_t hs;

	if (ps->last_handshake_sec <= 0)
		return false;
	hs = (uint64_t)ps->last_handshake_sec * 1000000000ull + ps->last_handshake_nsec;
	if (hs + SLACK_NS < w->rx_real_ns)
		return false; /* an older session's: wait for the new one */
	metrics_observe(hs_hist(w->pipeline),
			hs > w->rx_real_ns ? (double)(hs - w->rx_real_ns) / 1e9 : 0);
	metrics_observe(hs_after_install_hist(w->pipeline),
			hs > w->installed_real_ns ? (double)(hs - w->installed_real_ns) / 1e9 : 0);
	why_handshake(w->key, w->rx_real_ns, hs);
	*pp = w->next;
	free(w);
	o.n_waits--;
	return true;
}

/* ------------------------------------------------------------- dumps */

struct dump_job {
	dump_job_cb cb;
	void (*done)(void *arg);
	void *arg;
	int outstanding;
};

struct dump_one {
	struct dump_job *job;
	struct wggwd_inst *in;
	char ifname[16];
};

static void job_put(struct dump_job *j)
{
	if (--j->outstanding)
		return;
	if (j->done)
		j->done(j->arg);
	free(j);
}

static void on_dump(void *arg, int status, const struct wggwd_peer_state *peers, size_t n,
		    size_t stride)
{
	struct dump_one *d = arg;

	d->job->cb(d->job->arg, d->in, d->ifname, status, peers, n, stride);
	job_put(d->job);
	free(d);
}

int observe_dump_all(dump_job_cb cb, void (*done)(void *arg), void *arg)
{
	struct runtime *rt = runtime_current();
	struct dump_job *j = calloc(1, sizeof(*j));
	size_t i, n = runtime_n_inst(rt);
	int count = 0;

	if (!j)
		return -ENOMEM;
	j->cb = cb;
	j->done = done;
	j->arg = arg;
	j->outstanding = 1; /* ours, until every dump is asked for */
	for (i = 0; i < n; i++) {
		struct wggwd_inst *in = runtime_inst(rt, i);
		struct wggwd_device dev = { .size = sizeof(dev) };
		struct dump_one *d;

		if (in->p->desc.kind != WGGWD_INSTALLER || !in->started || in->stopping ||
		    !in->ops->dump)
			continue;
		d = calloc(1, sizeof(*d));
		if (!d)
			break;
		d->job = j;
		d->in = in;
		if (in->ops->device && in->ops->device(in->ctx, &dev) == 0)
			snprintf(d->ifname, sizeof(d->ifname), "%s", dev.ifname);
		sodium_memzero(dev.private_key, sizeof(dev.private_key));
		if (!d->ifname[0])
			snprintf(d->ifname, sizeof(d->ifname), "%s", in->sc->name);
		j->outstanding++;
		count++;
		if (in->ops->dump(in->ctx, on_dump, d)) {
			cb(arg, in, d->ifname, -EIO, NULL, 0, 0);
			free(d);
			j->outstanding--;
		}
	}
	job_put(j);
	return count;
}

void observe_set_installer_gauges(struct wggwd_inst *installer, const char *ifname,
				  const struct wggwd_peer_state *peers, size_t n,
				  size_t stride)
{
	static const char *const labels[] = { "interface", "origin", NULL };
	static const char *const origins[] = { "none", "pull", "push", "static" };
	int64_t count[ARRAY_SIZE(origins)] = { 0 };
	char name[256];
	size_t i;

	(void)installer;
	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *ps = WGGWD_AT(const struct wggwd_peer_state,
							     peers, i, stride);

		count[ps->origin < ARRAY_SIZE(origins) ? ps->origin : 0]++;
	}
	for (i = 0; i < ARRAY_SIZE(origins); i++) {
		const char *v[] = { ifname, origins[i] };

		snprintf(name, sizeof(name), "interface.%s.peers.%s", ifname, origins[i]);
		*(int64_t *)metrics_cell(name, M_GAUGE, "wggwd_peers",
					 "Peers on the interface, by origin (none: not wggwd's)",
					 labels, v) = count[i];
	}
}

static void check_waits(struct wggwd_inst *installer, const struct wggwd_peer_state *peers,
			size_t n, size_t stride)
{
	struct hs_wait **pp;
	size_t i;

	for (i = 0; i < n && o.n_waits; i++) {
		const struct wggwd_peer_state *ps = WGGWD_AT(const struct wggwd_peer_state,
							     peers, i, stride);

		for (pp = &o.waits[ps->public_key[0]]; *pp; pp = &(*pp)->next)
			if ((*pp)->installer == installer &&
			    !memcmp((*pp)->key, ps->public_key, WGGWD_KEY_LEN)) {
				hs_done(pp, ps);
				break;
			}
	}
}

static void on_heartbeat_dump(void *arg, struct wggwd_inst *in, const char *ifname,
			      int status, const struct wggwd_peer_state *peers, size_t n,
			      size_t stride)
{
	(void)arg;
	if (status)
		return;
	observe_set_installer_gauges(in, ifname, peers, n, stride);
	check_waits(in, peers, n, stride);
}

static void on_heartbeat_done(void *arg)
{
	uint64_t now = now_mono_ns();

	(void)arg;
	o.dumping = false;
	/* a dump of a large interface holds the installs back while it
	 * runs: these take at most 1% of the time (a peer waits past
	 * HS_WAIT_S until a dump that began after it has been read) */
	o.next_ns = now + (now - o.dump_t0) * 100;
}

static bool inst_alive(struct runtime *rt, const struct wggwd_inst *in)
{
	size_t i;

	for (i = 0; i < runtime_n_inst(rt); i++)
		if (runtime_inst(rt, i) == in)
			return !in->stopping && in->started;
	return false;
}

/*
 * Once a second: what each waiting peer's installer knows of it without
 * I/O (its `peer` op: what its own dumps saw), and if any still waits, a
 * dump of those installers (which teaches them too).
 */
static void on_heartbeat(uv_timer_t *t)
{
	struct runtime *rt = runtime_current();
	uint64_t now = now_mono_ns();
	struct hs_wait **pp, *w;
	unsigned b;

	(void)t;
	for (b = 0; b < HS_BUCKETS; b++) {
		for (pp = &o.waits[b]; (w = *pp);) {
			struct wggwd_peer_state ps = { .size = sizeof(ps) };
			bool alive = inst_alive(rt, w->installer);

			if (alive && w->installer->ops->peer &&
			    !w->installer->ops->peer(w->installer->ctx, w->key, &ps) &&
			    hs_done(pp, &ps))
				continue;
			/* past HS_WAIT_S: once a dump begun after it was read */
			if (alive && (now - w->since_ns < HS_WAIT_S * 1000000000ull || o.dumping ||
				      o.dump_t0 < w->since_ns + HS_WAIT_S * 1000000000ull)) {
				pp = &w->next;
				continue;
			}
			if (alive)
				(*hs_timeouts(w->pipeline))++;
			*pp = w->next;
			free(w);
			o.n_waits--;
		}
	}
	if (!o.n_waits || o.dumping || now < o.next_ns)
		return;
	o.dumping = true;
	o.dump_t0 = now;
	if (observe_dump_all(on_heartbeat_dump, on_heartbeat_done, NULL) < 0)
		o.dumping = false;
}

void observe_start(uv_loop_t *loop)
{
	uv_timer_init(loop, &o.heartbeat);
	uv_timer_start(&o.heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
	uv_unref((uv_handle_t *)&o.heartbeat);
	o.running = true;
}

void observe_stop(void)
{
	struct hs_wait *w;
	unsigned b;

	if (o.running)
		uv_close((uv_handle_t *)&o.heartbeat, NULL);
	o.running = false;
	for (b = 0; b < HS_BUCKETS; b++)
		while ((w = o.waits[b])) {
			o.waits[b] = w->next;
			free(w);
		}
	o.n_waits = 0;
}

/* ------------------------------------------------ the daemon's listeners */

int listeners_start(uv_loop_t *loop, const struct core_conf *cc)
{
	int ret;

	observe_start(loop);
	if (cc->http_listen.ss_family) {
		ret = http_start(loop, (const struct sockaddr *)&cc->http_listen);
		if (ret)
			return ret;
	}
	return ctl_start(loop, cc->control_socket);
}

void listeners_stop(void)
{
	ctl_stop();
	http_stop();
	observe_stop();
	why_reset();
}
