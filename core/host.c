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

static const char *h_name(struct wggwd_inst *in)
{
	return in->sc->name;
}

static uint64_t *h_counter(struct wggwd_inst *in, const char *name)
{
	char full[256];

	snprintf(full, sizeof(full), "%s.%s", in->sc->name, name);
	return metrics_counter(full);
}

static int64_t *h_gauge(struct wggwd_inst *in, const char *name)
{
	char full[256];

	snprintf(full, sizeof(full), "%s.%s", in->sc->name, name);
	return metrics_gauge(full);
}

/* ---------------------------------------------------------------- timers */

struct wggwd_timer {
	uv_timer_t h;
	struct wggwd_inst *in;
	wggwd_fn cb;
	void *arg;
};

static void on_timer(uv_timer_t *h)
{
	struct wggwd_timer *t = h->data;

	t->cb(t->arg);
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
	/* the loop's cached time is from the start of this iteration: after a
	 * long callback the timer would fire early */
	uv_update_time(t->h.loop);
	uv_timer_start(&t->h, on_timer, timeout, repeat);
}

static void h_timer_stop(struct wggwd_timer *t)
{
	uv_timer_stop(&t->h);
}

static void h_timer_free(struct wggwd_timer *t)
{
	if (t)
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
	pipeline_item_emit(in, it);
	return 0;
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

static int h_inject(struct wggwd_inst *in, struct wggwd_item *it)
{
	return pipeline_item_inject(in, it);
}

struct wggwd_host host_services = {
	.size = sizeof(struct wggwd_host),
	.abi_major = WGGWD_ABI_MAJOR,
	.abi_minor = WGGWD_ABI_MINOR,
	.log = h_log,
	.name = h_name,
	.counter = h_counter,
	.gauge = h_gauge,
	.timer_new = h_timer_new,
	.timer_start = h_timer_start,
	.timer_stop = h_timer_stop,
	.timer_free = h_timer_free,
	.queue_work = h_queue_work,
	.item_new = h_item_new,
	.item_free = h_item_free,
	.emit = h_emit,
	.complete = h_complete,
	.post = h_post,
	.stopped = h_stopped,
	.secret_read = h_secret_read,
	.installer = h_installer,
	.inject = h_inject,
};

int host_init(uv_loop_t *loop)
{
	int ret;

	host_services.loop = loop;
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
}
