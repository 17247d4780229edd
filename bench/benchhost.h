// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The parts of a minimal plugin host that the benches' drivers share
 * (netlink_bench.c, store_bench.c): real libuv timers and thread pool on
 * `loop`, the clocks, and a keyed hash, as the core provides them. A
 * driver includes this once, sets `loop` and fills its struct wggwd_host
 * with these functions.
 */
#ifndef WGGWD_BENCHHOST_H
#define WGGWD_BENCHHOST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <uv.h>

#include <wggwd/plugin.h>

static uv_loop_t *loop;

struct wggwd_timer {
	uv_timer_t h;
	wggwd_fn cb;
	void *arg;
};

static void bh_on_timer(uv_timer_t *h)
{
	struct wggwd_timer *t = h->data;

	t->cb(t->arg);
}

static struct wggwd_timer *h_timer_new(struct wggwd_inst *in, wggwd_fn cb, void *arg)
{
	struct wggwd_timer *t = calloc(1, sizeof(*t));

	(void)in;
	if (!t)
		return NULL;
	uv_timer_init(loop, &t->h);
	t->h.data = t;
	t->cb = cb;
	t->arg = arg;
	return t;
}

static void h_timer_start(struct wggwd_timer *t, uint64_t timeout, uint64_t repeat)
{
	uv_timer_start(&t->h, bh_on_timer, timeout, repeat);
}

static void h_timer_stop(struct wggwd_timer *t)
{
	uv_timer_stop(&t->h);
}

static void bh_on_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void h_timer_free(struct wggwd_timer *t)
{
	if (t)
		uv_close((uv_handle_t *)&t->h, bh_on_timer_closed);
}

struct bh_work {
	uv_work_t req;
	wggwd_fn fn;
	wggwd_status_cb after;
	void *arg;
};

static void bh_on_work(uv_work_t *r)
{
	struct bh_work *w = r->data;

	w->fn(w->arg);
}

static void bh_on_after(uv_work_t *r, int status)
{
	struct bh_work *w = r->data;

	if (w->after)
		w->after(w->arg, status);
	free(w);
}

static int h_queue_work(struct wggwd_inst *in, wggwd_fn fn, wggwd_status_cb after, void *arg)
{
	struct bh_work *w = calloc(1, sizeof(*w));
	int ret;

	(void)in;
	if (!w)
		return -ENOMEM;
	w->req.data = w;
	w->fn = fn;
	w->after = after;
	w->arg = arg;
	ret = uv_queue_work(loop, &w->req, bh_on_work, bh_on_after);
	if (ret)
		free(w);
	return ret;
}

/* post(): fn(arg) on the loop, from any thread (bh_post_init on the loop
 * first; the handle does not keep the loop alive) */
struct bh_post {
	struct bh_post *next;
	wggwd_fn fn;
	void *arg;
};

static pthread_mutex_t bh_post_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bh_post *bh_post_head, **bh_post_tail = &bh_post_head;
static uv_async_t bh_async;

static void bh_on_post(uv_async_t *a)
{
	struct bh_post *p, *n;

	(void)a;
	pthread_mutex_lock(&bh_post_lock);
	p = bh_post_head;
	bh_post_head = NULL;
	bh_post_tail = &bh_post_head;
	pthread_mutex_unlock(&bh_post_lock);
	for (; p; p = n) {
		n = p->next;
		p->fn(p->arg);
		free(p);
	}
}

static void bh_post_init(void)
{
	static bool done;

	if (done)
		return;
	done = true;
	uv_async_init(loop, &bh_async, bh_on_post);
	uv_unref((uv_handle_t *)&bh_async);
}

/* Before uv_loop_close: the post handle closed. */
static void bh_post_fini(void)
{
	if (!uv_is_closing((uv_handle_t *)&bh_async) && bh_async.loop) {
		uv_close((uv_handle_t *)&bh_async, NULL);
		uv_run(loop, UV_RUN_NOWAIT);
	}
}

static int h_post(struct wggwd_inst *in, wggwd_fn fn, void *arg)
{
	struct bh_post *p = calloc(1, sizeof(*p));

	(void)in;
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&bh_post_lock);
	*bh_post_tail = p;
	bh_post_tail = &p->next;
	pthread_mutex_unlock(&bh_post_lock);
	uv_async_send(&bh_async);
	return 0;
}

static uint64_t bh_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t h_now_ns(void)
{
	return bh_clock_ns(CLOCK_MONOTONIC);
}

static uint64_t h_realtime_ns(void)
{
	return bh_clock_ns(CLOCK_REALTIME);
}

/* draw it with randombytes_buf() before the plugin starts */
static uint8_t hash_key[crypto_shorthash_KEYBYTES];

static uint64_t h_hash(const void *data, size_t len)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, data, len, hash_key);
	memcpy(&v, h, sizeof(v));
	return v;
}

#endif
