// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * A resolver as a build against an older 2.x minor would make it: a
 * descriptor no longer than the 2.0 minimum and an ops table that ends
 * before `device`. The table's tail here is poison: a host that read past
 * `size` would call it. It must load and run like any other.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <wggwd/plugin.h>

struct conf {
	int64_t net; /* the second octet of 10.N.k0.k1 */
};

static const struct wggwd_opt opts[] = {
	{ .name = "net", .type = WGGWD_OPT_INT, .def = "79", .min = 0, .max = 255,
	  .offset = offsetof(struct conf, net), .help = "second octet" },
	WGGWD_OPT_END
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	uint8_t net;
	uint64_t *done;
};

static int om_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->net = ((const struct conf *)conf)->net;
	c->done = host->counter(self, "done");
	*ctxp = c;
	return 0;
}

static int om_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	struct wggwd_allowed_ip *ip = c->host->allowed_reserve(c->self, it, 1);

	if (!ip) {
		it->reason = WGGWD_R_NO_MEMORY;
		return WGGWD_DROP;
	}
	*ip = (struct wggwd_allowed_ip){ .family = AF_INET, .cidr = 32,
		.addr = { 10, c->net, it->public_key[0], it->public_key[1] } };
	memcpy(it->peer->public_key, it->public_key, WGGWD_KEY_LEN);
	it->peer->has |= WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS;
	return WGGWD_CONTINUE;
}

/* inside the short table: the host must still call it */
static void om_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;

	(void)it;
	(void)verdict;
	(*c->done)++;
}

static void om_destroy(void *ctx)
{
	free(ctx);
}

#define POISON(type) ((type)(uintptr_t)0xdeadbeef)

static const struct wggwd_ops ops = {
	.size = offsetof(struct wggwd_ops, device),
	.create = om_create,
	.process = om_process,
	.destroy = om_destroy,
	.done = om_done,
	.device = POISON(int (*)(void *, struct wggwd_device *)),
	.dump = POISON(int (*)(void *, wggwd_dump_cb, void *)),
};

WGGWD_EXPORT const struct wggwd_plugin wggwd_plugin = {
	.abi_major = WGGWD_ABI_MAJOR,
	.abi_minor = 0,
	.size = offsetof(struct wggwd_plugin, ops) + sizeof(void *),
	.opt_size = sizeof(struct wggwd_opt),
	.build_sig = WGGWD_BUILD_SIG,
	.name = "abi-oldminor",
	.version = "0",
	.license = "MIT",
	.description = "a 2.0 resolver with a short ops table",
	.kind = WGGWD_RESOLVER,
	.in = WGGWD_MSG_PEER_KEY,
	.out = WGGWD_MSG_PEER,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops,
};
