// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Test installer: appends each install as a line to a file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wgutil.h"

struct conf {
	char *path;
	char *tag;
};

static const struct wggwd_opt opts[] = {
	{ .name = "path", .type = WGGWD_OPT_PATH, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, path), .help = "file the installs are appended to" },
	{ .name = "tag", .type = WGGWD_OPT_STR, .def = "",
	  .offset = offsetof(struct conf, tag), .help = "written at the start of each line" },
	WGGWD_OPT_END
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	FILE *f;
	uint64_t *installed;
};

static int if_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->installed = host->counter(self, "installed");
	*ctxp = c;
	return 0;
}

static int if_start(void *ctx)
{
	struct ctx *c = ctx;

	c->f = fopen(c->conf->path, "a");
	if (!c->f) {
		int e = errno;

		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: %s", c->conf->path, strerror(e));
		return -e;
	}
	setvbuf(c->f, NULL, _IOLBF, 0);
	return 0;
}

static int if_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	char key[WG_KEY_B64_LEN], ep[64], ip[64];
	unsigned i;

	wg_key_to_b64(key, it->peer.public_key);
	wg_sockaddr_str(&it->endpoint, ep, sizeof(ep));
	fprintf(c->f, "%s%sadd %s %s", c->conf->tag, *c->conf->tag ? " " : "", key, ep);
	for (i = 0; i < it->peer.n_allowed; i++) {
		wg_allowed_ip_str(&it->peer.allowed[i], ip, sizeof(ip));
		fprintf(c->f, " %s", ip);
	}
	fputc('\n', c->f);
	(*c->installed)++;
	return WGGWD_CONTINUE;
}

static void if_stop(void *ctx)
{
	struct ctx *c = ctx;

	if (c->f)
		fclose(c->f);
	c->f = NULL;
	c->host->stopped(c->self);
}

static void if_destroy(void *ctx)
{
	struct ctx *c = ctx;

	if (c->f)
		fclose(c->f);
	free(c);
}

static int if_device(void *ctx, struct wggwd_device *dev)
{
	(void)ctx;
	memset(dev, 0, sizeof(*dev));
	return -ENODATA;
}

static int if_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	(void)ctx;
	cb(arg, 0, NULL, 0);
	return 0;
}

static int if_remove(void *ctx, const uint8_t (*keys)[WGGWD_KEY_LEN], size_t n,
		     wggwd_status_cb cb, void *arg)
{
	struct ctx *c = ctx;
	char key[WG_KEY_B64_LEN];
	size_t i;

	for (i = 0; i < n; i++) {
		wg_key_to_b64(key, keys[i]);
		fprintf(c->f, "remove %s\n", key);
	}
	cb(arg, 0);
	return 0;
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = if_create,
	.start = if_start,
	.process = if_process,
	.stop = if_stop,
	.destroy = if_destroy,
	.device = if_device,
	.dump = if_dump,
	.remove = if_remove,
};

WGGWD_PLUGIN_DEFINE(
	.name = "installer-file",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "test installer: appends installs to a file",
	.kind = WGGWD_INSTALLER,
	.in = WGGWD_MSG_PEER,
	.out = WGGWD_MSG_EVENT,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
