// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * An out-of-tree plugin, built by the test against the installed header
 * (pkg-config wggwd-plugin) as a third party would. It gives every key the
 * address <prefix>.<key[0]>.<key[1]>/32.
 *
 *   cc -std=c11 -fPIC -shared -fvisibility=hidden \
 *      $(pkg-config --cflags wggwd-plugin) resolver_oot.c -o resolver-oot.so
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <wggwd/plugin.h>

struct conf {
	char *prefix;
};

/* "10.77" -> 10.77.0.0; 0 or -EINVAL */
static int prefix_parse(const char *s, uint8_t addr[4])
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%s.0.0", s);
	return inet_pton(AF_INET, buf, addr) == 1 ? 0 : -EINVAL;
}

/* Refuse a bad prefix when the config is loaded, at its line:column. */
static const char *check_prefix(const void *field, char *buf, size_t len)
{
	uint8_t a[4];

	(void)buf;
	(void)len;
	return prefix_parse(*(char *const *)field, a) ? "expected two octets (10.77)" : NULL;
}

static const struct wggwd_opt opts[] = {
	{ .name = "prefix", .type = WGGWD_OPT_STR, .def = "10.77", .check = check_prefix,
	  .offset = offsetof(struct conf, prefix), .help = "first two octets" },
	WGGWD_OPT_END
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	uint8_t base[4];
	uint64_t *answered;
};

static int oot_create(const struct wggwd_host *host, struct wggwd_inst *self,
		      const void *conf, void **ctxp)
{
	const struct conf *cf = conf;
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	prefix_parse(cf->prefix, c->base); /* checked already */
	c->answered = host->counter(self, "answered");
	*ctxp = c;
	return 0;
}

/*
 * The item and its peer belong to the core: fill them in place. Allowed
 * IPs are appended with allowed_reserve (no fixed cap); a stage never
 * keeps a pointer into an item after returning.
 */
static int oot_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	struct wggwd_peer *p = it->peer;
	struct wggwd_allowed_ip *ip = c->host->allowed_reserve(c->self, it, 1);

	if (!ip) {
		it->reason = WGGWD_R_NO_MEMORY;
		return WGGWD_DROP;
	}
	ip->family = AF_INET;
	ip->cidr = 32;
	memcpy(ip->addr, c->base, 2);
	ip->addr[2] = it->public_key[0];
	ip->addr[3] = it->public_key[1];
	memcpy(p->public_key, it->public_key, WGGWD_KEY_LEN);
	p->has |= WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS;
	(*c->answered)++;
	/* any sender can make us answer: rate-limited */
	c->host->log_limited(c->self, WGGWD_LOG_INFO, "answered with %u.%u.%u.%u/32",
			     ip->addr[0], ip->addr[1], ip->addr[2], ip->addr[3]);
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
	.description = "out-of-tree example resolver",
	.kind = WGGWD_RESOLVER,
	.in = WGGWD_MSG_PEER_KEY,
	.out = WGGWD_MSG_PEER,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
