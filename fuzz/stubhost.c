// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The fuzz targets' stand-in for the core: see stubhost.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "stubhost.h"

/* an item as the core lays it out: the item, its peer, one slot */
struct sitem {
	struct wggwd_item it;
	struct wggwd_peer peer;
	void *slot;
	struct sitem *qnext;
	int verdict;
};

struct wggwd_timer {
	wggwd_fn cb;
	void *arg;
	int armed;
	struct wggwd_timer *next;
};

struct deferred {
	wggwd_fn work;
	wggwd_status_cb after;
	wggwd_fn fn;
	void *arg;
	struct deferred *next;
};

unsigned stub_retired;
uint8_t stub_retired_key[WGGWD_KEY_LEN];
int stub_stopped;
int stub_fail_alloc;

static uv_loop_t *loop;
static struct sitem *emq, **emq_tail = &emq, *cpq, **cpq_tail = &cpq;
static size_t n_emitted;
static struct wggwd_timer *timers;
static struct deferred *dq, **dq_tail = &dq;
static const struct wggwd_installer *installer;
static uint8_t hash_key[16] = "wggwd-fuzz-key!";

#define POOL 4096
static uint64_t pool[POOL];
static size_t pool_next;

static char logbuf[4096];

static void s_log(struct wggwd_inst *self, int level, const char *fmt, ...)
{
	va_list ap;

	(void)self;
	(void)level;
	va_start(ap, fmt);
	vsnprintf(logbuf, sizeof(logbuf), fmt, ap); /* the arguments are used */
	va_end(ap);
}

static const char *s_name(struct wggwd_inst *self)
{
	(void)self;
	return "fuzz";
}

static const char *s_reason_name(uint32_t r)
{
	static char buf[32];

	snprintf(buf, sizeof(buf), "reason_%u", r);
	return buf;
}

static uint64_t *s_counter(struct wggwd_inst *self, const char *name)
{
	(void)self;
	(void)name;
	pool_next = (pool_next + 1) % POOL;
	return &pool[pool_next];
}

static int64_t *s_gauge(struct wggwd_inst *self, const char *name)
{
	return (int64_t *)s_counter(self, name);
}

static struct wggwd_hist *s_histogram(struct wggwd_inst *self, const char *name,
				      const double *bounds, size_t n)
{
	(void)bounds;
	(void)n;
	return (struct wggwd_hist *)s_counter(self, name);
}

static void s_observe(struct wggwd_hist *h, double v)
{
	(void)h;
	(void)v;
}

static uint64_t s_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t s_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t s_hash(const void *data, size_t len)
{
	uint64_t h;

	crypto_shorthash((uint8_t *)&h, data, len, hash_key);
	return h;
}

static struct wggwd_timer *s_timer_new(struct wggwd_inst *self, wggwd_fn cb, void *arg)
{
	struct wggwd_timer *t = calloc(1, sizeof(*t));

	(void)self;
	if (!t)
		return NULL;
	t->cb = cb;
	t->arg = arg;
	t->next = timers;
	timers = t;
	return t;
}

static void s_timer_start(struct wggwd_timer *t, uint64_t timeout, uint64_t repeat)
{
	(void)timeout;
	(void)repeat;
	t->armed = 1;
}

static void s_timer_stop(struct wggwd_timer *t)
{
	t->armed = 0;
}

static void s_timer_free(struct wggwd_timer *t)
{
	struct wggwd_timer **pp;

	for (pp = &timers; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			free(t);
			return;
		}
}

void stub_fire_timers(void)
{
	struct wggwd_timer *t, *next;

	for (t = timers; t; t = next) {
		next = t->next; /* a callback may free its own timer */
		if (t->armed)
			t->cb(t->arg);
	}
}

void stub_free_timers(void)
{
	while (timers)
		s_timer_free(timers);
}

static int defer(struct deferred *d)
{
	struct deferred *n = malloc(sizeof(*n));

	if (!n)
		return -ENOMEM;
	*n = *d;
	n->next = NULL;
	*dq_tail = n;
	dq_tail = &n->next;
	return 0;
}

static int s_queue_work(struct wggwd_inst *self, wggwd_fn work, wggwd_status_cb after, void *arg)
{
	struct deferred d = { .work = work, .after = after, .arg = arg };

	(void)self;
	return defer(&d);
}

static int s_post(struct wggwd_inst *self, wggwd_fn fn, void *arg)
{
	struct deferred d = { .fn = fn, .arg = arg };

	(void)self;
	return defer(&d);
}

void stub_drain(void)
{
	struct deferred *d;

	while ((d = dq)) {
		dq = d->next;
		if (!dq)
			dq_tail = &dq;
		if (d->fn) {
			d->fn(d->arg);
		} else {
			if (d->work)
				d->work(d->arg);
			if (d->after)
				d->after(d->arg, 0);
		}
		free(d);
	}
}

static struct wggwd_item *s_item_new(struct wggwd_inst *self)
{
	struct sitem *s;

	(void)self;
	if (stub_fail_alloc)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->it.size = sizeof(s->it);
	s->peer.size = sizeof(s->peer);
	s->it.peer = &s->peer;
	return &s->it;
}

static void s_item_free(struct wggwd_inst *self, struct wggwd_item *it)
{
	struct sitem *s = (struct sitem *)it;

	(void)self;
	if (!it)
		return;
	free((void *)it->pkt);
	if (s->peer.allowed)
		sodium_memzero(s->peer.allowed, s->peer.n_allowed * sizeof(*s->peer.allowed));
	free(s->peer.allowed);
	sodium_memzero(s, sizeof(*s));
	free(s);
}

static int s_item_pkt(struct wggwd_inst *self, struct wggwd_item *it, const void *data, size_t len)
{
	uint8_t *p;

	(void)self;
	if (stub_fail_alloc)
		return -ENOMEM;
	p = malloc(len ? len : 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, data, len);
	free((void *)it->pkt);
	it->pkt = p;
	it->pkt_len = len;
	return 0;
}

/* The allocation is exact, so that ASan sees any access past n_allowed. */
static struct wggwd_allowed_ip *s_allowed_reserve(struct wggwd_inst *self, struct wggwd_item *it,
						  size_t n)
{
	struct wggwd_peer *p = it->peer;
	struct wggwd_allowed_ip *a;
	size_t have = p->n_allowed;

	(void)self;
	if (stub_fail_alloc || !n || n > UINT32_MAX - have)
		return NULL;
	a = realloc(p->allowed, (have + n) * sizeof(*a));
	if (!a)
		return NULL;
	memset(a + have, 0, n * sizeof(*a));
	p->allowed = a;
	p->n_allowed = have + n;
	return a + have;
}

static void **s_slot(struct wggwd_inst *self, struct wggwd_item *it)
{
	(void)self;
	return &((struct sitem *)it)->slot;
}

static void enqueue(struct sitem ***tail, struct sitem *s)
{
	s->qnext = NULL;
	**tail = s;
	*tail = &s->qnext;
}

static int s_emit(struct wggwd_inst *self, struct wggwd_item *it)
{
	(void)self;
	if (!it->t[WGGWD_T_RX])
		it->t[WGGWD_T_RX] = s_now();
	enqueue(&emq_tail, (struct sitem *)it);
	n_emitted++;
	return 0;
}

struct wggwd_item *stub_next_emitted(void)
{
	struct sitem *s = emq;

	if (!s)
		return NULL;
	emq = s->qnext;
	if (!emq)
		emq_tail = &emq;
	n_emitted--;
	return &s->it;
}

size_t stub_n_emitted(void)
{
	return n_emitted;
}

static void s_complete(struct wggwd_inst *self, struct wggwd_item *it, int verdict)
{
	(void)self;
	((struct sitem *)it)->verdict = verdict;
	enqueue(&cpq_tail, (struct sitem *)it);
}

struct wggwd_item *stub_next_completed(int *v)
{
	struct sitem *s = cpq;

	if (!s)
		return NULL;
	cpq = s->qnext;
	if (!cpq)
		cpq_tail = &cpq;
	*v = s->verdict;
	return &s->it;
}

/* Injected items go on (the stages after the caller are not here): kept
 * until stub_free_injected, so that ASan sees their use after free. */
static struct sitem *injq, **injq_tail = &injq;
size_t stub_n_injected;

static int s_inject(struct wggwd_inst *self, struct wggwd_item *it, uint32_t flags)
{
	(void)self;
	(void)flags;
	it->flags |= WGGWD_ITEM_INJECTED;
	enqueue(&injq_tail, (struct sitem *)it);
	stub_n_injected++;
	return 0;
}

void stub_free_injected(void)
{
	struct sitem *s;

	while ((s = injq)) {
		injq = s->qnext;
		s_item_free(NULL, &s->it);
	}
	injq_tail = &injq;
	stub_n_injected = 0;
}

uint8_t stub_retired_keys[STUB_RETIRED_MAX][WGGWD_KEY_LEN];

static int s_retire(struct wggwd_inst *self, const uint8_t key[WGGWD_KEY_LEN], uint32_t reason)
{
	(void)self;
	(void)reason;
	if (stub_retired < STUB_RETIRED_MAX)
		memcpy(stub_retired_keys[stub_retired], key, WGGWD_KEY_LEN);
	stub_retired++;
	memcpy(stub_retired_key, key, WGGWD_KEY_LEN);
	return 0;
}

static void s_stopped(struct wggwd_inst *self)
{
	(void)self;
	stub_stopped = 1;
}

static ssize_t s_secret_read(struct wggwd_inst *self, const char *path, uint8_t *buf, size_t cap)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	(void)self;
	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap);
	close(fd);
	if (n < 0)
		return -errno;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r'))
		n--;
	return n;
}

static const struct wggwd_installer *s_installer(struct wggwd_inst *self)
{
	(void)self;
	return installer;
}

void stub_set_installer(const struct wggwd_installer *ins)
{
	installer = ins;
}

struct wggwd_host stub_host = {
	.size = sizeof(struct wggwd_host),
	.abi_major = WGGWD_ABI_MAJOR,
	.abi_minor = WGGWD_ABI_MINOR,
	.log = s_log,
	.log_limited = s_log,
	.name = s_name,
	.reason_name = s_reason_name,
	.counter = s_counter,
	.gauge = s_gauge,
	.histogram = s_histogram,
	.observe = s_observe,
	.now_ns = s_now,
	.realtime_ns = s_real,
	.hash = s_hash,
	.timer_new = s_timer_new,
	.timer_start = s_timer_start,
	.timer_stop = s_timer_stop,
	.timer_free = s_timer_free,
	.queue_work = s_queue_work,
	.post = s_post,
	.item_new = s_item_new,
	.item_free = s_item_free,
	.item_pkt = s_item_pkt,
	.allowed_reserve = s_allowed_reserve,
	.slot = s_slot,
	.emit = s_emit,
	.complete = s_complete,
	.inject = s_inject,
	.retire = s_retire,
	.stopped = s_stopped,
	.secret_read = s_secret_read,
	.installer = s_installer,
};

/* "500ms", "2s", "30d" -> ms; "64k", "8MiB" -> bytes; 0 if not understood */
static uint64_t scaled(const char *s, bool duration)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);

	if (duration) {
		if (!strcmp(end, "ms") || !*end)
			return v;
		if (!strcmp(end, "s"))
			return v * 1000;
		if (!strcmp(end, "m"))
			return v * 60000;
		if (!strcmp(end, "h"))
			return v * 3600000;
		if (!strcmp(end, "d"))
			return v * 86400000;
		return 0;
	}
	if (*end == 'k' || *end == 'K')
		return v << 10;
	if (*end == 'M')
		return v << 20;
	if (*end == 'G')
		return v << 30;
	return v;
}

void stub_conf_defaults(const struct wggwd_plugin *p, void *conf)
{
	const struct wggwd_opt *o;
	size_t i;

	memset(conf, 0, p->conf_size);
	for (o = p->opts; o && o->name; o = (const void *)((const char *)o + p->opt_size)) {
		char *f = (char *)conf + o->offset;

		if (!o->def)
			continue;
		switch (o->type) {
		case WGGWD_OPT_STR:
		case WGGWD_OPT_PATH:
		case WGGWD_OPT_SECRET_FILE:
			*(const char **)f = o->def;
			break;
		case WGGWD_OPT_INT:
			*(int64_t *)f = strtoll(o->def, NULL, 10);
			break;
		case WGGWD_OPT_BOOL:
			*(bool *)f = !strcmp(o->def, "true") || !strcmp(o->def, "yes");
			break;
		case WGGWD_OPT_DURATION:
			*(int64_t *)f = scaled(o->def, true);
			break;
		case WGGWD_OPT_SIZE:
			*(uint64_t *)f = scaled(o->def, false);
			break;
		case WGGWD_OPT_ENUM:
			for (i = 0; o->choices && o->choices[i]; i++)
				if (!strcmp(o->choices[i], o->def))
					*(int *)f = i;
			break;
		default: /* ADDR, LIST: the target sets them */
			break;
		}
	}
}

void stub_fail(const char *what)
{
	dprintf(2, "fuzz: invariant broken: %s\n", what);
	abort();
}

uv_loop_t *stub_loop(void)
{
	return loop;
}

void stub_loop_settle(void)
{
	int i;

	for (i = 0; i < 64 && uv_run(loop, UV_RUN_NOWAIT); i++)
		;
}

void stub_init(void)
{
	const char *v = getenv("FUZZ_VERBOSE");

	if (loop)
		return;
	if (sodium_init() < 0)
		abort();
	signal(SIGPIPE, SIG_IGN); /* as the daemon does */
	loop = uv_default_loop();
	stub_host.loop = loop;
	/* plugins and the core print to stderr through stdio; libFuzzer and
	 * the sanitizers keep the real fd 2 */
	if (!v || !*v || *v == '0') {
		FILE *f = fopen("/dev/null", "w");

		if (f)
			stderr = f;
	}
}
