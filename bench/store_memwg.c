// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * installer-memwg: a pretend interface for the store's reconcile tests.
 * Holds a set of peer keys in memory, starting from `peers` (as if they
 * were on the interface when the daemon started); dump answers
 * asynchronously (on the next loop turn) and refuses with -EAGAIN the first
 * `not_ready` times, like an installer still opening its device. Every
 * change (an item: op ADD or REMOVE) is appended to `log` as "add KEY" /
 * "remove KEY".
 *
 * Built by tests/integration/store_http.py:
 *   cc -shared -fPIC -Iinclude -Iplugins/common bench/store_memwg.c \
 *      plugins/common/wgutil.c $(pkg-config --cflags --libs libsodium libuv) \
 *      -o DIR/installer-memwg.so
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wgutil.h"

struct conf {
	struct wggwd_list peers;
	char *log;
	int64_t not_ready;
	struct wggwd_list refuse;
};

static const struct wggwd_opt opts[] = {
	{ .name = "peers", .type = WGGWD_OPT_LIST, .max = 100000, .check = wg_check_key_b64,
	  .offset = offsetof(struct conf, peers), .help = "keys on the interface at start" },
	{ .name = "log", .type = WGGWD_OPT_PATH, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, log), .help = "file changes are appended to" },
	{ .name = "not_ready", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 100,
	  .offset = offsetof(struct conf, not_ready),
	  .help = "dumps refused (-EAGAIN) before the first that works" },
	{ .name = "refuse", .type = WGGWD_OPT_LIST, .max = 100000, .check = wg_check_key_b64,
	  .offset = offsetof(struct conf, refuse),
	  .help = "keys whose add is refused (reason policy), as an installer's allowed_prefixes would" },
	WGGWD_OPT_END
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uint8_t (*keys)[WGGWD_KEY_LEN];
	size_t n, cap;
	FILE *log;
	int64_t refused;
	struct wggwd_timer *timer;
	wggwd_dump_cb cb;
	void *cb_arg;
	uint64_t *dumps;
};

static ssize_t find(struct ctx *c, const uint8_t *key)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		if (!memcmp(c->keys[i], key, WGGWD_KEY_LEN))
			return (ssize_t)i;
	return -1;
}

static int add(struct ctx *c, const uint8_t *key)
{
	if (find(c, key) >= 0)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *k = realloc(c->keys, cap * WGGWD_KEY_LEN);

		if (!k)
			return -ENOMEM;
		c->keys = k;
		c->cap = cap;
	}
	memcpy(c->keys[c->n++], key, WGGWD_KEY_LEN);
	return 0;
}

static void del(struct ctx *c, const uint8_t *key)
{
	ssize_t i = find(c, key);

	if (i >= 0)
		memmove(c->keys[i], c->keys[i + 1], (c->n - i - 1) * WGGWD_KEY_LEN);
	if (i >= 0)
		c->n--;
}

static void note(struct ctx *c, const char *what, const uint8_t *key)
{
	char b64[WG_KEY_B64_LEN];

	wg_key_to_b64(b64, key);
	fprintf(c->log, "%s %s\n", what, b64);
}

static int mw_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->dumps = host->counter(self, "dumps");
	*ctxp = c;
	return 0;
}

static void on_timer(void *arg)
{
	struct ctx *c = arg;
	struct wggwd_peer_state *ps = calloc(c->n + 1, sizeof(*ps));
	wggwd_dump_cb cb = c->cb;
	size_t i;

	c->cb = NULL;
	if (!cb)
		return;
	for (i = 0; ps && i < c->n; i++) {
		ps[i].size = sizeof(*ps);
		ps[i].origin = WGGWD_ORIGIN_NONE; /* who made it: not known here */
		memcpy(ps[i].public_key, c->keys[i], WGGWD_KEY_LEN);
	}
	(*c->dumps)++;
	cb(c->cb_arg, ps ? 0 : -ENOMEM, ps, ps ? c->n : 0, sizeof(*ps));
	free(ps);
}

static int mw_start(void *ctx)
{
	struct ctx *c = ctx;
	uint8_t key[WGGWD_KEY_LEN];
	size_t i;

	c->log = fopen(c->conf->log, "a");
	if (!c->log)
		return -errno;
	setvbuf(c->log, NULL, _IOLBF, 0);
	for (i = 0; i < c->conf->peers.n; i++) {
		wg_key_from_b64(key, ((char **)c->conf->peers.v)[i]);
		if (add(c, key))
			return -ENOMEM;
	}
	c->timer = c->host->timer_new(c->self, on_timer, c);
	return 0;
}

static bool refused(struct ctx *c, const uint8_t *key)
{
	uint8_t k[WGGWD_KEY_LEN];
	size_t i;

	for (i = 0; i < c->conf->refuse.n; i++)
		if (!wg_key_from_b64(k, ((char **)c->conf->refuse.v)[i]) &&
		    !memcmp(k, key, WGGWD_KEY_LEN))
			return true;
	return false;
}

static int mw_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const uint8_t *key = it->peer->has & WGGWD_PEER_HAS_PUBLIC_KEY ? it->peer->public_key :
									 it->public_key;

	if (it->op == WGGWD_OP_REMOVE) {
		del(c, key);
		note(c, "remove", key);
		return WGGWD_CONTINUE;
	}
	if (refused(c, key)) {
		it->reason = WGGWD_R_POLICY;
		return WGGWD_DROP;
	}
	if (add(c, key))
		return WGGWD_ERROR;
	note(c, "add", key);
	return WGGWD_CONTINUE;
}

static int mw_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	struct ctx *c = ctx;

	if (c->refused < c->conf->not_ready) {
		c->refused++;
		return -EAGAIN;
	}
	if (c->cb)
		return -EBUSY;
	c->cb = cb;
	c->cb_arg = arg;
	c->host->timer_start(c->timer, 0, 0);
	return 0;
}

static int mw_device(void *ctx, struct wggwd_device *dev)
{
	(void)ctx;
	(void)dev;
	return -ENODATA;
}

static void mw_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->host->timer_free(c->timer);
	c->timer = NULL;
	c->host->stopped(c->self);
}

static void mw_destroy(void *ctx)
{
	struct ctx *c = ctx;

	if (c->log)
		fclose(c->log);
	free(c->keys);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = mw_create,
	.start = mw_start,
	.process = mw_process,
	.stop = mw_stop,
	.destroy = mw_destroy,
	.device = mw_device,
	.dump = mw_dump,
};

WGGWD_PLUGIN_DEFINE(
	.name = "installer-memwg",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "test installer: a pretend interface in memory, for reconcile tests",
	.kind = WGGWD_INSTALLER,
	.in = WGGWD_MSG_PEER,
	.out = WGGWD_MSG_EVENT,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
