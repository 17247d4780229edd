// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Test source: emits the packets it is given (hex), as a sniffer would. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wgutil.h"

#define PKT_MAX 65535 /* a UDP payload */

struct conf {
	struct wggwd_list packets;
	int64_t repeat;
	int64_t rounds;
	int64_t interval_ms;
	struct sockaddr_storage src;
};

static const char *check_hex(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;
	size_t n = strlen(s), i;

	for (i = 0; i < n && isxdigit((unsigned char)s[i]); i++)
		;
	if (i < n || n % 2 || n / 2 > PKT_MAX) {
		snprintf(buf, len, "expected hex of at most %d bytes", PKT_MAX);
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	{ .name = "packets", .type = WGGWD_OPT_LIST, .flags = WGGWD_OPT_REQUIRED, .min = 1,
	  .max = 10000, .offset = offsetof(struct conf, packets), .check = check_hex,
	  .help = "UDP payloads to emit, hex" },
	{ .name = "repeat", .type = WGGWD_OPT_INT, .def = "1", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, repeat), .help = "times each packet is emitted per round" },
	{ .name = "rounds", .type = WGGWD_OPT_INT, .def = "1", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, rounds), .help = "how many rounds" },
	{ .name = "interval", .type = WGGWD_OPT_DURATION, .def = "100ms", .min = 1, .max = 3600000,
	  .offset = offsetof(struct conf, interval_ms), .help = "pause between rounds" },
	{ .name = "src", .type = WGGWD_OPT_ADDR, .def = "127.0.0.1:40000",
	  .offset = offsetof(struct conf, src), .help = "the source address packets carry" },
	WGGWD_OPT_END
};

struct pkt {
	uint8_t *b;
	size_t len;
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct wggwd_timer *timer;
	int64_t round;
	size_t n;
	struct pkt *pkts; /* the packets, decoded once */
	uint64_t *emitted;
};

static void on_tick(void *arg)
{
	struct ctx *c = arg;
	size_t i;
	int64_t r;

	if (++c->round >= c->conf->rounds)
		c->host->timer_stop(c->timer);
	for (r = 0; r < c->conf->repeat; r++) {
		for (i = 0; i < c->n; i++) {
			struct wggwd_item *it = c->host->item_new(c->self);

			if (c->host->item_pkt(c->self, it, c->pkts[i].b, c->pkts[i].len)) {
				c->host->item_free(c->self, it);
				return;
			}
			it->type = WGGWD_MSG_PKT;
			it->transport = WGGWD_TR_UDP;
			memcpy(&it->src, &c->conf->src, sizeof(it->src));
			it->endpoint = it->src;
			it->t[WGGWD_T_RX] = c->host->now_ns();
			it->rx_realtime_ns = c->host->realtime_ns();
			if (c->host->emit(c->self, it))
				return; /* stopping: already freed */
			(*c->emitted)++;
		}
	}
}

static void sh_destroy(void *ctx)
{
	struct ctx *c = ctx;
	size_t i;

	for (i = 0; i < c->n; i++)
		free(c->pkts[i].b);
	free(c->pkts);
	free(c);
}

static int sh_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	const struct conf *cf = conf;
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = cf;
	c->emitted = host->counter(self, "emitted");
	c->pkts = calloc(cf->packets.n, sizeof(*c->pkts));
	if (!c->pkts)
		goto nomem;
	for (; c->n < cf->packets.n; c->n++) {
		const char *hex = ((char **)cf->packets.v)[c->n];
		struct pkt *p = &c->pkts[c->n];
		size_t len = strlen(hex);

		p->b = malloc(len / 2 + 1);
		if (!p->b)
			goto nomem;
		sodium_hex2bin(p->b, len / 2, hex, len, NULL, &p->len, NULL);
	}
	*ctxp = c;
	return 0;
nomem:
	sh_destroy(c);
	return -ENOMEM;
}

static int sh_start(void *ctx)
{
	struct ctx *c = ctx;

	c->timer = c->host->timer_new(c->self, on_tick, c);
	c->host->timer_start(c->timer, 0, c->conf->interval_ms);
	return 0;
}

static void sh_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->host->timer_free(c->timer);
	c->host->stopped(c->self);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = sh_create,
	.start = sh_start,
	.stop = sh_stop,
	.destroy = sh_destroy,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-hex",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "test source: emits the packets it is given",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PKT,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
