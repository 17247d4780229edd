// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-pushgen: a stand-in for a push source (NATS, ...) for the store's
 * tests and benchmark. Emits pushed peer configs (transport push, a
 * version, add or remove) for keys derived from an index, and appends one
 * line per acknowledged item to ack_file, as a real push source would ACK
 * the message once the pipeline is done with it:
 *
 *   <base64 key> <version> <continue|done>
 *
 * Key i is BLAKE2b-256("wggwd-pushgen" || le64(i)) (hashlib.blake2b(...,
 * digest_size=32) in Python); its allowed IP is 10.x.y.z/32 with x.y.z = i,
 * and with `allowed` N > 1, N - 1 more /128s: fd00:: with bytes 8-11 i
 * and bytes 12-15 j (big-endian), for j = 1 .. N - 1.
 *
 * Built by tests/integration/store_http.py and bench/store.sh:
 *   cc -shared -fPIC -Iinclude -Iplugins/common bench/store_pushgen.c \
 *      plugins/common/wgutil.c $(pkg-config --cflags --libs libsodium libuv) \
 *      -o DIR/source-pushgen.so
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "wgutil.h"

static const char *const op_choices[] = { "add", "remove", NULL };
/* a removal's reason: pushed, as it should be, or what a sloppy push
 * source might give (none) or a more specific one (revoked, expired) */
static const char *const reason_choices[] = { "pushed", "none", "revoked", "expired", NULL };
static const uint32_t reasons[] = { WGGWD_R_PUSHED, WGGWD_R_NONE, WGGWD_R_REVOKED,
				    WGGWD_R_EXPIRED };

struct conf {
	int64_t first, count, version, batch, interval_ms, allowed;
	int op, reason;
	char *ack_file;
};

static const struct wggwd_opt opts[] = {
	{ .name = "first", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 1LL << 40,
	  .offset = offsetof(struct conf, first), .help = "index of the first key" },
	{ .name = "count", .type = WGGWD_OPT_INT, .def = "100", .min = 0, .max = 100000000,
	  .offset = offsetof(struct conf, count), .help = "keys pushed (0: none)" },
	{ .name = "version", .type = WGGWD_OPT_INT, .def = "1", .min = 0, .max = 1LL << 62,
	  .offset = offsetof(struct conf, version), .help = "the version every item carries" },
	{ .name = "op", .type = WGGWD_OPT_ENUM, .def = "add", .choices = op_choices,
	  .offset = offsetof(struct conf, op), .help = "add or remove" },
	{ .name = "reason", .type = WGGWD_OPT_ENUM, .def = "pushed", .choices = reason_choices,
	  .offset = offsetof(struct conf, reason), .help = "the reason removals carry" },
	{ .name = "batch", .type = WGGWD_OPT_INT, .def = "100", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, batch), .help = "items emitted per tick" },
	{ .name = "interval", .type = WGGWD_OPT_DURATION, .def = "1ms", .min = 0, .max = 3600000,
	  .offset = offsetof(struct conf, interval_ms), .help = "pause between ticks" },
	{ .name = "allowed", .type = WGGWD_OPT_INT, .def = "1", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, allowed), .help = "allowed IPs per peer" },
	{ .name = "ack_file", .type = WGGWD_OPT_PATH,
	  .offset = offsetof(struct conf, ack_file),
	  .help = "file acknowledged items are appended to" },
	WGGWD_OPT_END
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct wggwd_timer *timer;
	int64_t next;
	int fd;
	uint64_t *emitted, *acked, *failed;
};

static void key_of(uint8_t key[32], int64_t i)
{
	uint8_t msg[13 + 8];
	int k;

	memcpy(msg, "wggwd-pushgen", 13);
	for (k = 0; k < 8; k++)
		msg[13 + k] = (uint8_t)((uint64_t)i >> (8 * k));
	crypto_generichash(key, 32, msg, sizeof(msg), NULL, 0);
}

static void on_tick(void *arg)
{
	struct ctx *c = arg;
	const struct conf *cf = c->conf;
	int64_t n, k;

	for (n = 0; n < cf->batch && c->next < cf->first + cf->count; n++, c->next++) {
		struct wggwd_item *it = c->host->item_new(c->self);
		struct wggwd_allowed_ip *a;
		struct wggwd_peer *p;
		uint64_t i = (uint64_t)c->next;

		if (!it || !(a = c->host->allowed_reserve(c->self, it, (size_t)cf->allowed))) {
			if (it)
				c->host->item_free(c->self, it);
			(*c->failed)++;
			continue;
		}
		p = it->peer;
		it->type = WGGWD_MSG_PEER;
		it->transport = WGGWD_TR_PUSH;
		it->op = cf->op ? WGGWD_OP_REMOVE : WGGWD_OP_ADD;
		if (cf->op)
			it->reason = reasons[cf->reason];
		key_of(p->public_key, c->next);
		memcpy(it->public_key, p->public_key, 32);
		p->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_VERSION |
			 WGGWD_PEER_HAS_ALLOWED_IPS | WGGWD_PEER_HAS_KEEPALIVE;
		p->version = cf->version;
		p->origin = WGGWD_ORIGIN_PUSH;
		p->keepalive = 25;
		a->family = AF_INET;
		a->cidr = 32;
		a->addr[0] = 10;
		a->addr[1] = (uint8_t)(i >> 16);
		a->addr[2] = (uint8_t)(i >> 8);
		a->addr[3] = (uint8_t)i;
		for (k = 1; k < cf->allowed; k++) {
			a[k].family = AF_INET6;
			a[k].cidr = 128;
			a[k].addr[0] = 0xfd;
			a[k].addr[8] = (uint8_t)(i >> 24);
			a[k].addr[9] = (uint8_t)(i >> 16);
			a[k].addr[10] = (uint8_t)(i >> 8);
			a[k].addr[11] = (uint8_t)i;
			a[k].addr[12] = (uint8_t)(k >> 24);
			a[k].addr[13] = (uint8_t)(k >> 16);
			a[k].addr[14] = (uint8_t)(k >> 8);
			a[k].addr[15] = (uint8_t)k;
		}
		(*c->emitted)++;
		if (c->host->emit(c->self, it) < 0)
			(*c->failed)++; /* refused (stopping): freed, no done */
	}
	if (c->next >= cf->first + cf->count)
		c->host->timer_stop(c->timer);
}

static void pg_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	char line[128], b64[WG_KEY_B64_LEN];
	int n;

	if (verdict != WGGWD_CONTINUE && verdict != WGGWD_DONE) {
		(*c->failed)++;
		return;
	}
	(*c->acked)++;
	if (c->fd < 0)
		return;
	wg_key_to_b64(b64, it->peer->public_key);
	n = snprintf(line, sizeof(line), "%s %llu %s\n", b64, (unsigned long long)it->peer->version,
		     verdict == WGGWD_CONTINUE ? "continue" : "done");
	if (write(c->fd, line, n) != n)
		(*c->failed)++;
}

static int pg_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->fd = -1;
	c->emitted = host->counter(self, "emitted");
	c->acked = host->counter(self, "acked");
	c->failed = host->counter(self, "failed");
	*ctxp = c;
	return 0;
}

static int pg_start(void *ctx)
{
	struct ctx *c = ctx;

	if (c->conf->ack_file) {
		c->fd = open(c->conf->ack_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (c->fd < 0)
			return -errno;
	}
	c->next = c->conf->first;
	c->timer = c->host->timer_new(c->self, on_tick, c);
	c->host->timer_start(c->timer, 0, c->conf->interval_ms ? c->conf->interval_ms : 1);
	return 0;
}

static void pg_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->host->timer_free(c->timer);
	c->timer = NULL;
	c->host->stopped(c->self);
}

static void pg_destroy(void *ctx)
{
	struct ctx *c = ctx;

	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = pg_create,
	.start = pg_start,
	.stop = pg_stop,
	.destroy = pg_destroy,
	.done = pg_done,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-pushgen",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "test source: pushed peer configs, acknowledged to a file",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PEER,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
