// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Test installer: logs the key and asks the source to re-send. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <errno.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <wggwd/plugin.h>

struct conf { char *path; int64_t listen_port; char *uapi; char *allowed_ip; };
static const struct wggwd_opt opts[] = {
	{ .name = "path", .type = WGGWD_OPT_PATH, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, path), .help = "file the installs are appended to" },
	{ .name = "listen_port", .type = WGGWD_OPT_INT, .def = "51820", .min = 0, .max = 65535,
	  .offset = offsetof(struct conf, listen_port), .help = "what device() reports" },
	{ .name = "uapi", .type = WGGWD_OPT_STR, .def = "",
	  .offset = offsetof(struct conf, uapi), .help = "a wireguard-go interface to add the peer to" },
	{ .name = "allowed_ip", .type = WGGWD_OPT_STR, .def = "",
	  .offset = offsetof(struct conf, allowed_ip), .help = "the allowed IP it gets" },
	WGGWD_OPT_END
};
struct ctx { const struct wggwd_host *host; struct wggwd_inst *self; const struct conf *conf; FILE *f; };

static int c_create(const struct wggwd_host *host, struct wggwd_inst *self, const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->host = host; c->self = self; c->conf = conf;
	*ctxp = c;
	return 0;
}
static int c_start(void *ctx)
{
	struct ctx *c = ctx;
	c->f = fopen(c->conf->path, "a");
	if (!c->f)
		return -errno;
	setvbuf(c->f, NULL, _IOLBF, 0);
	return 0;
}
/* set=1 on wireguard-go's UAPI socket; 0 if it answered errno=0 */
static int uapi_add(const char *ifname, const uint8_t *key, const char *ip)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char req[256], resp[256], hex[65];
	ssize_t n, got = 0;
	int fd, i, ret = -1;

	for (i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", key[i]);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/var/run/wireguard/%s.sock", ifname);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		goto out;
	n = snprintf(req, sizeof(req), "set=1\npublic_key=%s\nallowed_ip=%s\n\n", hex, ip);
	if (write(fd, req, n) != n)
		goto out;
	while (got < (ssize_t)sizeof(resp) - 1 && (n = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0) {
		got += n;
		resp[got] = 0;
		if (strstr(resp, "\n\n"))
			break;
	}
	resp[got] = 0;
	ret = strstr(resp, "errno=0\n") ? 0 : -1;
out:
	close(fd);
	return ret;
}

static int c_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const char *what = it->op == WGGWD_OP_REMOVE ? "remove" : "add";
	int i;

	if (it->op == WGGWD_OP_ADD && *c->conf->uapi &&
	    uapi_add(c->conf->uapi, it->peer->public_key, c->conf->allowed_ip)) {
		it->reason = WGGWD_R_INSTALL_FAILED;
		it->detail = "uapi";
		return WGGWD_ERROR;
	}
	fprintf(c->f, "%s ", what);
	for (i = 0; i < WGGWD_KEY_LEN; i++)
		fprintf(c->f, "%02x", it->peer->public_key[i]);
	fputc('\n', c->f);
	if (it->op == WGGWD_OP_ADD)
		it->flags |= WGGWD_ITEM_REINJECT;
	return WGGWD_CONTINUE;
}
/* Re-sending needs a source that keeps what it emitted: refuse others. */
static const char *c_link(void *ctx, const void *conf, const struct wggwd_link *l,
			  const char **option, char *buf, size_t len)
{
	(void)ctx; (void)conf; (void)option; (void)buf; (void)len;
	return l->source_flags & WGGWD_F_RESENDS ? NULL :
		"needs a source that re-sends what it emitted";
}
static void c_stop(void *ctx)
{
	struct ctx *c = ctx;
	if (c->f)
		fclose(c->f);
	c->f = NULL;
	c->host->stopped(c->self);
}
static void c_destroy(void *ctx) { free(ctx); }
static int c_device(void *ctx, struct wggwd_device *dev)
{
	struct ctx *c = ctx;
	if (!WGGWD_HAS(dev, struct wggwd_device, listen_port))
		return -ENODATA;
	dev->listen_port = c->conf->listen_port;
	return 0;
}
static int c_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	(void)ctx;
	cb(arg, 0, NULL, 0, sizeof(struct wggwd_peer_state));
	return 0;
}
static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops), .create = c_create, .link = c_link,
	.start = c_start, .process = c_process, .stop = c_stop, .destroy = c_destroy,
	.device = c_device, .dump = c_dump,
};
WGGWD_PLUGIN_DEFINE(.name = "installer-reinject", .version = "test", .license = "MIT",
	.description = "test installer: asks the source to re-send",
	.kind = WGGWD_INSTALLER, .in = WGGWD_MSG_PEER, .out = WGGWD_MSG_EVENT,
	.opts = opts, .conf_size = sizeof(struct conf), .ops = &ops);
