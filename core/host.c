// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The services the core hands to plugins (struct wggwd_host). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core.h"
#include "metrics.h"

uint64_t now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

uint64_t now_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void h_log(struct wggwd_inst *in, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, in ? in->prefix : "[?]", fmt, ap);
	va_end(ap);
}

/*
 * Rate-limited logging: per call site (instance and format), at most
 * RL_BURST lines per RL_WINDOW; the first line after a quiet spell says
 * how many were left out. A fixed table: a site that loses its entry to
 * another merely starts afresh.
 */
#define RL_SITES 256
#define RL_BURST 5
#define RL_WINDOW_NS (10 * 1000000000ull)

static struct rl_site {
	const struct wggwd_inst *in;
	const char *fmt;
	uint64_t start;
	uint32_t lines, suppressed;
} rl_sites[RL_SITES];

static void h_log_limited(struct wggwd_inst *in, int level, const char *fmt, ...)
{
	uintptr_t k = (uintptr_t)fmt ^ ((uintptr_t)in >> 4);
	struct rl_site *r = &rl_sites[(k ^ (k >> 9)) % RL_SITES];
	uint64_t now = now_mono_ns();
	va_list ap;

	if (level > log_level)
		return;
	if (r->in != in || r->fmt != fmt || now - r->start >= RL_WINDOW_NS) {
		if (r->in == in && r->fmt == fmt && r->suppressed)
			log_msg(level, in ? in->prefix : "[?]",
				"(%u similar messages suppressed)", r->suppressed);
		r->in = in;
		r->fmt = fmt;
		r->start = now;
		r->lines = r->suppressed = 0;
	}
	if (r->lines >= RL_BURST) {
		r->suppressed++;
		return;
	}
	r->lines++;
	va_start(ap, fmt);
	log_vmsg(level, in ? in->prefix : "[?]", fmt, ap);
	va_end(ap);
}

static uint8_t hash_key[crypto_shorthash_KEYBYTES];

uint64_t core_hash(const void *data, size_t len)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(out, data, len, hash_key);
	memcpy(&v, out, sizeof(v));
	return v;
}

static const char *const stage_labels[] = { "stage", "plugin", "name", NULL };

static struct wggwd_hist *h_histogram(struct wggwd_inst *in, const char *name,
				      const double *bounds, size_t n)
{
	const char *v[] = { in->sc->name, in->p->desc.name, name };
	struct family *f;
	struct metric *m;
	char full[256];

	f = metrics_family("wggwd_stage_duration_seconds",
			   "Durations a stage observes (its histogram `name`), in seconds",
			   M_HIST, stage_labels);
	snprintf(full, sizeof(full), "%s.%s", in->sc->name, name);
	m = metrics_get(full, M_HIST, f, v, bounds, n);
	return m ? &m->v.h : NULL;
}

static const char *h_name(struct wggwd_inst *in)
{
	return in->sc->name;
}

static uint64_t *h_counter(struct wggwd_inst *in, const char *name)
{
	static const char *const labels[] = { "stage", "plugin", "event", NULL };
	const char *v[] = { in->sc->name, in->p->desc.name, name };
	char full[256];

	snprintf(full, sizeof(full), "%s.%s", in->sc->name, name);
	return metrics_cell(full, M_COUNTER, "wggwd_stage_events_total",
			    "Events a stage counts (stats file: <stage>.<event>)", labels, v);
}

static int64_t *h_gauge(struct wggwd_inst *in, const char *name)
{
	const char *v[] = { in->sc->name, in->p->desc.name, name };
	char full[256];

	snprintf(full, sizeof(full), "%s.%s", in->sc->name, name);
	return metrics_cell(full, M_GAUGE, "wggwd_stage_level",
			    "Levels a stage reports (stats file: <stage>.<name>)", stage_labels, v);
}

/* ----------------------------------------------- metrics with labels */

#define METRIC_LABELS 8

struct wggwd_metric {
	struct wggwd_metric *next;
	struct family *f;
	char *stage, *plugin, *flat; /* flat: "<stage>.<name>" */
	uint32_t type;
	size_t n_labels;             /* the plugin's own */
	double *bounds;
	size_t n_bounds;
};

static struct wggwd_metric *host_metrics;

static bool metric_name_ok(const char *s)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static struct wggwd_metric *h_metric(struct wggwd_inst *in, const struct wggwd_metric_desc *d)
{
	static const enum mtype types[] = {
		[WGGWD_METRIC_COUNTER] = M_COUNTER,
		[WGGWD_METRIC_GAUGE] = M_GAUGE,
		[WGGWD_METRIC_HISTOGRAM] = M_HIST,
	};
	const char *labels[METRIC_LABELS + 3] = { "stage", "plugin" };
	struct wggwd_metric *m;
	char name[256];
	size_t n = 0, len;

	if (!d || d->size < offsetof(struct wggwd_metric_desc, bounds) ||
	    d->type < WGGWD_METRIC_COUNTER || d->type > WGGWD_METRIC_HISTOGRAM ||
	    !metric_name_ok(d->name))
		goto bad;
	while (d->labels && d->labels[n]) {
		if (n == METRIC_LABELS || !metric_name_ok(d->labels[n]) ||
		    !strcmp(d->labels[n], "stage") || !strcmp(d->labels[n], "plugin") ||
		    !strcmp(d->labels[n], "le"))
			goto bad;
		labels[n + 2] = d->labels[n];
		n++;
	}
	len = strlen(d->name);
	snprintf(name, sizeof(name), "wggwd_%s%s", d->name,
		 d->type == WGGWD_METRIC_COUNTER &&
		 (len < 6 || strcmp(d->name + len - 6, "_total")) ? "_total" : "");
	for (m = host_metrics; m; m = m->next)
		if (!strcmp(m->f->name, name) && !strcmp(m->stage, in->sc->name))
			return m->n_labels == n && m->type == d->type ? m : NULL;
	m = xcalloc(1, sizeof(*m));
	m->f = metrics_family(name, d->help, types[d->type], labels);
	if (!m->f || m->f->n_labels != n + 2) {
		free(m);
		goto bad;
	}
	m->stage = xstrdup(in->sc->name);
	m->plugin = xstrdup(in->p->desc.name);
	snprintf(name, sizeof(name), "%s.%s", in->sc->name, d->name);
	m->flat = xstrdup(name);
	m->type = d->type;
	m->n_labels = n;
	if (d->type == WGGWD_METRIC_HISTOGRAM && d->bounds && d->n_bounds) {
		m->bounds = xcalloc(d->n_bounds, sizeof(double));
		memcpy(m->bounds, d->bounds, d->n_bounds * sizeof(double));
		m->n_bounds = d->n_bounds;
	}
	m->next = host_metrics;
	host_metrics = m;
	return m;
bad:
	h_log(in, WGGWD_LOG_ERROR, "metric %s: refused (a name of [a-zA-Z0-9_], at most %d labels, none named stage, plugin or le, and the same labels as before)",
	      d && d->name ? d->name : "?", METRIC_LABELS);
	return NULL;
}

static void *h_metric_cell(struct wggwd_metric *m, const char *const *values)
{
	const char *v[METRIC_LABELS + 2];
	struct metric *c;
	char flat[512];
	size_t i, n;

	if (!m)
		return NULL;
	v[0] = m->stage;
	v[1] = m->plugin;
	n = snprintf(flat, sizeof(flat), "%s", m->flat);
	for (i = 0; i < m->n_labels; i++) {
		v[i + 2] = values && values[i] ? values[i] : "";
		if (n < sizeof(flat))
			n += snprintf(flat + n, sizeof(flat) - n, ".%s", v[i + 2]);
	}
	c = metrics_get(flat, m->f->type, m->f, v, m->bounds, m->n_bounds);
	if (!c)
		return NULL;
	return c->type == M_HIST ? (void *)&c->v.h : (void *)&c->v.c;
}

void metrics_host_reset(void)
{
	struct wggwd_metric *m, *n;

	for (m = host_metrics; m; m = n) {
		n = m->next;
		free(m->stage);
		free(m->plugin);
		free(m->flat);
		free(m->bounds);
		free(m);
	}
	host_metrics = NULL;
}

/* ---------------------------------------------------------------- timers */

struct wggwd_timer {
	uv_timer_t h;
	struct wggwd_inst *in;
	wggwd_fn cb;
	void *arg;
	struct wggwd_timer *nt_next, **nt_pprev; /* on next_turn (NULL: not) */
};

static void on_timer(uv_timer_t *h)
{
	struct wggwd_timer *t = h->data;

	t->cb(t->arg);
}

/*
 * A timer of 0 ms (no repeat) fires on the next loop turn, after the
 * turn's I/O: a plugin that works in slices (a dump of 10^5 peers) serves
 * a knock between two. libuv's own 0 ms timer does not do that before
 * 1.48: one restarted from its callback fires again in the same pass of
 * the timers (libuv#4245), the slices back to back. Here the idle handle
 * keeps the poll from blocking (and the loop alive, as a timer would)
 * while any wait, and the check handle, which runs right after the poll,
 * fires those that were waiting when it began (one started meanwhile
 * waits for the next turn).
 */
static struct {
	uv_idle_t idle;
	uv_check_t check;
	bool init;
	struct wggwd_timer *head;
} next_turn;

static void nt_unlink(struct wggwd_timer *t)
{
	if (!t->nt_pprev)
		return;
	*t->nt_pprev = t->nt_next;
	if (t->nt_next)
		t->nt_next->nt_pprev = t->nt_pprev;
	t->nt_next = NULL;
	t->nt_pprev = NULL;
}

static void nt_push(struct wggwd_timer **head, struct wggwd_timer *t)
{
	t->nt_next = *head;
	if (*head)
		(*head)->nt_pprev = &t->nt_next;
	*head = t;
	t->nt_pprev = head;
}

static void on_idle(uv_idle_t *h)
{
	(void)h;
}

static void on_next_turn(uv_check_t *h)
{
	struct wggwd_timer *batch = next_turn.head, *t;

	(void)h;
	next_turn.head = NULL;
	if (batch)
		batch->nt_pprev = &batch;
	while ((t = batch)) { /* a callback may stop, free or start others */
		nt_unlink(t);
		t->cb(t->arg);
	}
	if (!next_turn.head) {
		uv_idle_stop(&next_turn.idle);
		uv_check_stop(&next_turn.check);
	}
}

static void nt_start(struct wggwd_timer *t)
{
	if (t->nt_pprev)
		return; /* waiting already */
	if (!next_turn.init) {
		uv_idle_init(host_services.loop, &next_turn.idle);
		uv_check_init(host_services.loop, &next_turn.check);
		next_turn.init = true;
	}
	nt_push(&next_turn.head, t);
	uv_idle_start(&next_turn.idle, on_idle);
	uv_check_start(&next_turn.check, on_next_turn);
}


static void on_timer_closed(uv_handle_t *h)
{
	struct wggwd_timer *t = h->data;
	struct wggwd_inst *in = t->in;

	free(t);
	in->pending_handles--;
	inst_handle_closed(in);
}

static struct wggwd_timer *h_timer_new(struct wggwd_inst *in, wggwd_fn cb, void *arg)
{
	struct wggwd_timer *t = xcalloc(1, sizeof(*t));

	uv_timer_init(host_services.loop, &t->h);
	t->h.data = t;
	t->in = in;
	t->cb = cb;
	t->arg = arg;
	in->pending_handles++;
	return t;
}

static void h_timer_start(struct wggwd_timer *t, uint64_t timeout, uint64_t repeat)
{
	if (!timeout && !repeat) {
		uv_timer_stop(&t->h);
		nt_start(t);
		return;
	}
	nt_unlink(t);
	/* the loop's cached time is from the start of this iteration: after a
	 * long callback the timer would fire early */
	uv_update_time(t->h.loop);
	uv_timer_start(&t->h, on_timer, timeout, repeat);
}

static void h_timer_stop(struct wggwd_timer *t)
{
	nt_unlink(t);
	uv_timer_stop(&t->h);
}

static void h_timer_free(struct wggwd_timer *t)
{
	if (!t)
		return;
	nt_unlink(t);
	uv_close((uv_handle_t *)&t->h, on_timer_closed);
}

/* ----------------------------------------------------------- thread pool */

struct work {
	uv_work_t req;
	struct wggwd_inst *in;
	wggwd_fn work;
	wggwd_status_cb after;
	void *arg;
};

static void on_work(uv_work_t *req)
{
	struct work *w = req->data;

	w->work(w->arg);
}

static void on_after_work(uv_work_t *req, int status)
{
	struct work *w = req->data;
	struct wggwd_inst *in = w->in;

	if (w->after)
		w->after(w->arg, status);
	free(w);
	in->pending_handles--;
	inst_handle_closed(in);
}

static int h_queue_work(struct wggwd_inst *in, wggwd_fn fn, wggwd_status_cb after,
			void *arg)
{
	struct work *w = xcalloc(1, sizeof(*w));
	int ret;

	w->req.data = w;
	w->in = in;
	w->work = fn;
	w->after = after;
	w->arg = arg;
	ret = uv_queue_work(host_services.loop, &w->req, on_work, on_after_work);
	if (ret) {
		free(w);
		return ret;
	}
	in->pending_handles++;
	return 0;
}

/* ------------------------------------------------------------------ post */

struct post {
	struct post *next;
	struct wggwd_inst *in;
	wggwd_fn fn;
	void *arg;
};

static pthread_mutex_t post_lock = PTHREAD_MUTEX_INITIALIZER;
static struct post *post_head, **post_tail = &post_head;
static uv_async_t post_async;
static bool post_open;

static void on_post(uv_async_t *a)
{
	struct post *p, *n;

	(void)a;
	pthread_mutex_lock(&post_lock);
	p = post_head;
	post_head = NULL;
	post_tail = &post_head;
	pthread_mutex_unlock(&post_lock);
	for (; p; p = n) {
		n = p->next;
		p->fn(p->arg);
		free(p);
	}
}

static int h_post(struct wggwd_inst *in, wggwd_fn fn, void *arg)
{
	struct post *p = malloc(sizeof(*p));
	int ret = 0;

	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->in = in;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&post_lock);
	if (post_open) {
		*post_tail = p;
		post_tail = &p->next;
		uv_async_send(&post_async);
	} else {
		ret = -ESHUTDOWN;
	}
	pthread_mutex_unlock(&post_lock);
	if (ret)
		free(p);
	return ret;
}

/* ---------------------------------------------------------------- secrets */

static ssize_t h_secret_read(struct wggwd_inst *in, const char *path, uint8_t *buf,
			     size_t cap)
{
	uint8_t tmp[4096];
	struct stat st;
	ssize_t n, total = 0, start, end;
	int fd, ret;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		ret = -errno;
		h_log(in, WGGWD_LOG_ERROR, "secret file %s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		goto out;
	}
	ret = -EPERM;
	if (!S_ISREG(st.st_mode)) {
		h_log(in, WGGWD_LOG_ERROR, "secret file %s: not a regular file", path);
		goto out;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		h_log(in, WGGWD_LOG_ERROR, "secret file %s: refused: owned by uid %u, not root or the daemon's user",
		      path, (unsigned)st.st_uid);
		goto out;
	}
	if (st.st_mode & 077) {
		h_log(in, WGGWD_LOG_ERROR, "secret file %s: refused: mode %04o lets group or others in; chmod 600 it",
		      path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	while ((size_t)total < sizeof(tmp)) {
		n = read(fd, tmp + total, sizeof(tmp) - total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			h_log(in, WGGWD_LOG_ERROR, "secret file %s: %s", path, strerror(errno));
			goto out;
		}
		if (!n)
			break;
		total += n;
	}
	for (start = 0; start < total && strchr(" \t\r\n", tmp[start]); start++)
		;
	for (end = total; end > start && strchr(" \t\r\n", tmp[end - 1]); end--)
		;
	if ((size_t)(end - start) > cap) {
		ret = -EMSGSIZE;
		h_log(in, WGGWD_LOG_ERROR, "secret file %s: longer than the %zu bytes expected",
		      path, cap);
		goto out;
	}
	memcpy(buf, tmp + start, end - start);
	ret = end - start;
out:
	sodium_memzero(tmp, sizeof(tmp));
	close(fd);
	return ret;
}

/* ------------------------------------------------------------------ misc */

static struct wggwd_item *h_item_new(struct wggwd_inst *in)
{
	(void)in;
	return item_alloc();
}

static void h_item_free(struct wggwd_inst *in, struct wggwd_item *it)
{
	(void)in;
	item_release(it);
}

static int h_emit(struct wggwd_inst *in, struct wggwd_item *it)
{
	return pipeline_item_emit(in, it);
}

static int h_item_pkt(struct wggwd_inst *in, struct wggwd_item *it, const void *data,
		      size_t len)
{
	(void)in;
	return item_set_pkt(it, data, len);
}

static struct wggwd_allowed_ip *h_allowed_reserve(struct wggwd_inst *in,
						  struct wggwd_item *it, size_t n)
{
	(void)in;
	return item_allowed_reserve(it, n);
}

static void **h_slot(struct wggwd_inst *in, struct wggwd_item *it)
{
	return pipeline_item_slot(in, it);
}

static int h_retire(struct wggwd_inst *in, const uint8_t key[WGGWD_KEY_LEN], uint32_t reason)
{
	return pipeline_item_retire(in, key, reason);
}

static void h_complete(struct wggwd_inst *in, struct wggwd_item *it, int verdict)
{
	pipeline_item_complete(in, it, verdict);
}

static void h_stopped(struct wggwd_inst *in)
{
	in->stopped = true;
	inst_handle_closed(in);
}

static const struct wggwd_installer *h_installer(struct wggwd_inst *in)
{
	return in->installer;
}

static int h_inject(struct wggwd_inst *in, struct wggwd_item *it, uint32_t flags)
{
	return pipeline_item_inject(in, it, flags);
}

struct wggwd_host host_services = {
	.size = sizeof(struct wggwd_host),
	.abi_major = WGGWD_ABI_MAJOR,
	.abi_minor = WGGWD_ABI_MINOR,
	.log = h_log,
	.log_limited = h_log_limited,
	.name = h_name,
	.reason_name = reason_name,
	.counter = h_counter,
	.gauge = h_gauge,
	.histogram = h_histogram,
	.observe = metrics_observe,
	.now_ns = now_mono_ns,
	.realtime_ns = now_real_ns,
	.hash = core_hash,
	.timer_new = h_timer_new,
	.timer_start = h_timer_start,
	.timer_stop = h_timer_stop,
	.timer_free = h_timer_free,
	.queue_work = h_queue_work,
	.post = h_post,
	.item_new = h_item_new,
	.item_free = h_item_free,
	.item_pkt = h_item_pkt,
	.allowed_reserve = h_allowed_reserve,
	.slot = h_slot,
	.emit = h_emit,
	.complete = h_complete,
	.inject = h_inject,
	.retire = h_retire,
	.stopped = h_stopped,
	.secret_read = h_secret_read,
	.installer = h_installer,
	.metric = h_metric,
	.metric_cell = h_metric_cell,
	.reply = ctl_stage_reply,
};

int host_init(uv_loop_t *loop)
{
	int ret;

	host_services.loop = loop;
	if (sodium_init() < 0)
		return -EIO;
	randombytes_buf(hash_key, sizeof(hash_key));
	ret = uv_async_init(loop, &post_async, on_post);
	if (ret)
		return ret;
	pthread_mutex_lock(&post_lock);
	post_open = true;
	pthread_mutex_unlock(&post_lock);
	return 0;
}

void host_shutdown(void)
{
	pthread_mutex_lock(&post_lock);
	post_open = false;
	pthread_mutex_unlock(&post_lock);
	on_post(&post_async); /* run what was posted before the door shut */
	uv_close((uv_handle_t *)&post_async, NULL);
	if (next_turn.init) {
		uv_close((uv_handle_t *)&next_turn.idle, NULL);
		uv_close((uv_handle_t *)&next_turn.check, NULL);
		next_turn.init = false;
		next_turn.head = NULL;
	}
}
