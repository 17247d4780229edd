// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Test installer: appends each install and removal as a line to a file. */
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
	uint64_t *installed, *removed;
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
	c->removed = host->counter(self, "removed");
	*ctxp = c;
	return 0;
}

/* Says where the core linked it (the daemon test reads the line). */
static const char *if_link(void *ctx, const void *conf, const struct wggwd_link *l,
			   const char **option, char *buf, size_t len)
{
	struct ctx *c = ctx;

	(void)conf;
	(void)option;
	(void)buf;
	(void)len;
	if (c)
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "linked: pipeline \"%s\", stage %u of %u, after 0x%x",
			     l->pipeline, l->position + 1, l->length, l->kinds_before);
	return NULL;
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

/* ADD items are installs; REMOVE items (a retire, a pushed removal) say why */
static int if_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const struct wggwd_peer *p = it->peer;
	char key[WG_KEY_B64_LEN], ep[64], ip[64];
	uint32_t i;

	wg_key_to_b64(key, p->public_key);
	fprintf(c->f, "%s%s", c->conf->tag, *c->conf->tag ? " " : "");
	if (it->op == WGGWD_OP_REMOVE) {
		fprintf(c->f, "remove %s %s\n", key, c->host->reason_name(it->reason));
		(*c->removed)++;
		return WGGWD_CONTINUE;
	}
	wg_sockaddr_str(&it->endpoint, ep, sizeof(ep));
	fprintf(c->f, "add %s %s", key, ep);
	for (i = 0; i < p->n_allowed; i++) {
		wg_allowed_ip_str(&p->allowed[i], ip, sizeof(ip));
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
	(void)dev;
	return -ENODATA;
}

/* It keeps nothing: the interface is always empty. */
static int if_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	(void)ctx;
	cb(arg, 0, NULL, 0, sizeof(struct wggwd_peer_state));
	return 0;
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = if_create,
	.link = if_link,
	.start = if_start,
	.process = if_process,
	.stop = if_stop,
	.destroy = if_destroy,
	.device = if_device,
	.dump = if_dump,
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
