// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Test source: emits peer keys from its options, as a decoder would, and
 * retires (removes through the pipeline) the keys it is told to. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wgutil.h"

struct conf {
	struct wggwd_list keys;
	int64_t interval_ms;
	int64_t repeat;
	struct sockaddr_storage endpoint;
	struct wggwd_list retire;
	bool returning;
};

static const struct wggwd_opt opts[] = {
	{ .name = "keys", .type = WGGWD_OPT_LIST, .flags = WGGWD_OPT_REQUIRED, .min = 1,
	  .max = 100000, .offset = offsetof(struct conf, keys), .check = wg_check_key_b64,
	  .help = "public keys to emit, base64" },
	{ .name = "interval", .type = WGGWD_OPT_DURATION, .def = "0", .min = 0, .max = 3600000,
	  .offset = offsetof(struct conf, interval_ms),
	  .help = "pause between rounds; 0: one round at start" },
	{ .name = "repeat", .type = WGGWD_OPT_INT, .def = "1", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, repeat), .help = "times each key is emitted per round" },
	{ .name = "endpoint", .type = WGGWD_OPT_ADDR, .def = "127.0.0.1:51820",
	  .offset = offsetof(struct conf, endpoint), .help = "the endpoint items carry" },
	{ .name = "retire", .type = WGGWD_OPT_LIST, .max = 100000, .check = wg_check_key_b64,
	  .offset = offsetof(struct conf, retire),
	  .help = "keys to remove after each round (reason: operator)" },
	{ .name = "returning", .type = WGGWD_OPT_BOOL, .def = "false",
	  .offset = offsetof(struct conf, returning),
	  .help = "flag the items WGGWD_ITEM_RETURNING, as a store that knew the keys would" },
	WGGWD_OPT_END
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct wggwd_timer *timer;
	uint64_t *emitted, *refused, *ok, *dropped, *retired;
};

static void on_tick(void *arg)
{
	struct ctx *c = arg;
	size_t i;
	int64_t r;

	for (r = 0; r < c->conf->repeat; r++) {
		for (i = 0; i < c->conf->keys.n; i++) {
			struct wggwd_item *it = c->host->item_new(c->self);

			it->type = WGGWD_MSG_PEER_KEY;
			it->transport = WGGWD_TR_UDP;
			if (c->conf->returning)
				it->flags |= WGGWD_ITEM_RETURNING;
			wg_key_from_b64(it->public_key, ((char **)c->conf->keys.v)[i]);
			memcpy(&it->endpoint, &c->conf->endpoint, sizeof(it->endpoint));
			it->src = it->endpoint;
			it->t[WGGWD_T_RX] = c->host->now_ns();
			it->rx_realtime_ns = c->host->realtime_ns();
			/* refused (stopping): already freed, done will not see it */
			if (c->host->emit(c->self, it)) {
				(*c->refused)++;
				return;
			}
			(*c->emitted)++;
		}
	}
	for (i = 0; i < c->conf->retire.n; i++) {
		uint8_t key[WGGWD_KEY_LEN];

		wg_key_from_b64(key, ((char **)c->conf->retire.v)[i]);
		if (!c->host->retire(c->self, key, WGGWD_R_OPERATOR))
			(*c->retired)++;
	}
}

/* Retiring needs an installer to remove from. */
static const char *sk_link(void *ctx, const void *conf, const struct wggwd_link *l,
			   const char **option, char *buf, size_t len)
{
	const struct conf *cf = conf;

	(void)ctx;
	(void)buf;
	(void)len;
	if (!cf->retire.n || l->kinds_after & (1u << WGGWD_INSTALLER))
		return NULL;
	*option = "retire";
	return "needs an installer in the pipeline";
}

static int sk_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->emitted = host->counter(self, "emitted");
	c->refused = host->counter(self, "refused");
	c->ok = host->counter(self, "ok");
	c->dropped = host->counter(self, "not_ok");
	c->retired = host->counter(self, "retired");
	*ctxp = c;
	return 0;
}

static int sk_start(void *ctx)
{
	struct ctx *c = ctx;

	c->timer = c->host->timer_new(c->self, on_tick, c);
	c->host->timer_start(c->timer, 0, c->conf->interval_ms);
	return 0;
}

static void sk_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;

	(void)it;
	if (verdict == WGGWD_CONTINUE)
		(*c->ok)++;
	else
		(*c->dropped)++;
}

static void sk_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->host->timer_free(c->timer);
	c->timer = NULL;
	c->host->stopped(c->self);
}

static void sk_destroy(void *ctx)
{
	free(ctx);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = sk_create,
	.link = sk_link,
	.start = sk_start,
	.stop = sk_stop,
	.destroy = sk_destroy,
	.done = sk_done,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-keys",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "test source: emits the peer keys it is given",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PEER_KEY,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
