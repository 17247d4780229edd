// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* An out-of-tree plugin: built by the test against the installed header
 * found through pkg-config, as a third party would. It gives every key an
 * address derived from its first two bytes inside `prefix`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <wggwd/plugin.h>

struct conf {
	char *prefix;
};

static const struct wggwd_opt opts[] = {
	{ .name = "prefix", .type = WGGWD_OPT_STR, .def = "10.77",
	  .offset = offsetof(struct conf, prefix), .help = "first two octets" },
	WGGWD_OPT_END
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uint64_t *answered;
};

static int oot_create(const struct wggwd_host *host, struct wggwd_inst *self,
		      const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	if (host->size < sizeof(struct wggwd_host) || host->abi_major != WGGWD_ABI_MAJOR) {
		free(c);
		return -EPROTO;
	}
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->answered = host->counter(self, "answered");
	*ctxp = c;
	return 0;
}

static int oot_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	char addr[32];

	snprintf(addr, sizeof(addr), "%s.%u.%u", c->conf->prefix, it->public_key[0],
		 it->public_key[1]);
	memset(&it->peer, 0, sizeof(it->peer));
	memcpy(it->peer.public_key, it->public_key, WGGWD_KEY_LEN);
	it->peer.allowed[0].family = AF_INET;
	it->peer.allowed[0].cidr = 32;
	if (inet_pton(AF_INET, addr, it->peer.allowed[0].addr) != 1) {
		it->drop_reason = "bad_prefix";
		return WGGWD_DROP;
	}
	it->peer.n_allowed = 1;
	it->peer.has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS;
	(*c->answered)++;
	c->host->log(c->self, WGGWD_LOG_INFO, "answered with %s/32", addr);
	return WGGWD_CONTINUE;
}

static void oot_destroy(void *ctx)
{
	free(ctx);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = oot_create,
	.process = oot_process,
	.destroy = oot_destroy,
};

WGGWD_PLUGIN_DEFINE(
	.name = "resolver-oot",
	.version = "1.0",
	.license = "MIT",
	.description = "out-of-tree test resolver",
	.kind = WGGWD_RESOLVER,
	.in = WGGWD_MSG_PEER_KEY,
	.out = WGGWD_MSG_PEER,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
