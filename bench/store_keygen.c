// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-keygen: a fresh-key flood for the store's tests and benchmark.
 * Emits peer keys as decoder-noise would after opening an initiation
 * (authenticated, with a TAI64N timestamp: the current time), `batch` per
 * tick, for keys derived from an index, as anyone who knows the gateway's
 * public key can mint them:
 *
 * Key i is BLAKE2b-256("wggwd-keygen" || le64(i)) (hashlib.blake2b(...,
 * digest_size=32) in Python). Items come from 198.51.100.x:(i & 0xffff).
 *
 * Built by tests/integration/store_flood.py:
 *   cc -shared -fPIC -Iinclude -Iplugins/common bench/store_keygen.c \
 *      plugins/common/wgutil.c $(pkg-config --cflags --libs libsodium libuv) \
 *      -o DIR/source-keygen.so
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wgutil.h"

struct conf {
	int64_t first, count, batch, interval_ms, rounds;
};

static const struct wggwd_opt opts[] = {
	{ .name = "first", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 1LL << 40,
	  .offset = offsetof(struct conf, first), .help = "index of the first key" },
	{ .name = "count", .type = WGGWD_OPT_INT, .def = "1000", .min = 0, .max = 100000000,
	  .offset = offsetof(struct conf, count), .help = "keys per round" },
	{ .name = "batch", .type = WGGWD_OPT_INT, .def = "500", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, batch), .help = "items emitted per tick" },
	{ .name = "interval", .type = WGGWD_OPT_DURATION, .def = "1ms", .min = 0, .max = 3600000,
	  .offset = offsetof(struct conf, interval_ms), .help = "pause between ticks" },
	{ .name = "rounds", .type = WGGWD_OPT_INT, .def = "1", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, rounds),
	  .help = "times the keys are emitted (each time with a newer timestamp)" },
	WGGWD_OPT_END
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct wggwd_timer *timer;
	int64_t next, round;
	uint64_t *emitted, *refused, *ok, *dropped, *rounds;
};

static void key_of(uint8_t key[32], int64_t i)
{
	uint8_t msg[12 + 8];
	int k;

	memcpy(msg, "wggwd-keygen", 12);
	for (k = 0; k < 8; k++)
		msg[12 + k] = (uint8_t)((uint64_t)i >> (8 * k));
	crypto_generichash(key, 32, msg, sizeof(msg), NULL, 0);
}

/* TAI64N of now: 2^62 + 10 + Unix seconds, then nanoseconds (big-endian). */
static void tai64n_now(uint8_t out[12], uint64_t ns)
{
	uint64_t s = (1ULL << 62) + 10 + ns / 1000000000;
	uint32_t n = (uint32_t)(ns % 1000000000);
	int b;

	for (b = 0; b < 8; b++)
		out[b] = (uint8_t)(s >> (8 * (7 - b)));
	for (b = 0; b < 4; b++)
		out[8 + b] = (uint8_t)(n >> (8 * (3 - b)));
}

static void on_tick(void *arg)
{
	struct ctx *c = arg;
	const struct conf *cf = c->conf;
	int64_t n;

	for (n = 0; n < cf->batch && c->round < cf->rounds; n++) {
		struct wggwd_item *it;
		uint64_t i = (uint64_t)c->next;

		if (c->next >= cf->first + cf->count) {
			c->next = cf->first;
			c->round++;
			(*c->rounds)++;
			continue;
		}
		c->next++;
		it = c->host->item_new(c->self);
		if (!it) {
			(*c->refused)++;
			continue;
		}
		it->type = WGGWD_MSG_PEER_KEY;
		it->transport = WGGWD_TR_UDP;
		it->flags = WGGWD_ITEM_MAC1_OK | WGGWD_ITEM_AUTHENTICATED | WGGWD_ITEM_HAS_TIMESTAMP;
		key_of(it->public_key, (int64_t)i);
		it->rx_realtime_ns = c->host->realtime_ns();
		tai64n_now(it->tai64n, it->rx_realtime_ns);
		it->sender_index = (uint32_t)i;
		it->src.in4.sin_family = AF_INET;
		it->src.in4.sin_port = htons((uint16_t)i);
		it->src.in4.sin_addr.s_addr = htonl(0xc6336400u | (uint8_t)(i >> 16)); /* 198.51.100.x */
		it->endpoint = it->src;
		it->t[WGGWD_T_RX] = c->host->now_ns();
		if (c->host->emit(c->self, it) < 0) {
			(*c->refused)++; /* stopping: freed, no done */
			return;
		}
		(*c->emitted)++;
	}
	if (c->round >= cf->rounds)
		c->host->timer_stop(c->timer);
}

static void kg_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;

	(void)it;
	if (verdict == WGGWD_CONTINUE || verdict == WGGWD_DONE)
		(*c->ok)++;
	else
		(*c->dropped)++;
}

static int kg_create(const struct wggwd_host *host, struct wggwd_inst *self, const void *conf,
		     void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	if (sodium_init() < 0) {
		free(c);
		return -EIO;
	}
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->next = c->conf->first;
	c->emitted = host->counter(self, "emitted");
	c->refused = host->counter(self, "refused");
	c->ok = host->counter(self, "ok");
	c->dropped = host->counter(self, "not_ok");
	c->rounds = host->counter(self, "rounds");
	*ctxp = c;
	return 0;
}

static int kg_start(void *ctx)
{
	struct ctx *c = ctx;

	c->timer = c->host->timer_new(c->self, on_tick, c);
	if (!c->timer)
		return -ENOMEM;
	if (c->conf->count)
		c->host->timer_start(c->timer, 0, c->conf->interval_ms ? c->conf->interval_ms : 1);
	return 0;
}

static void kg_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->host->timer_free(c->timer);
	c->timer = NULL;
	c->host->stopped(c->self);
}

static void kg_destroy(void *ctx)
{
	free(ctx);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = kg_create,
	.start = kg_start,
	.stop = kg_stop,
	.destroy = kg_destroy,
	.done = kg_done,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-keygen",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "test source: a flood of fresh keys with valid-looking timestamps",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PEER_KEY,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
