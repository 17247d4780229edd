// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* source-wsock's preflight (`wggwd check`): can the listening address be
 * bound (a port in use, an address this host does not have, a privileged
 * port without CAP_NET_BIND_SERVICE)? */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wsock.h"

const char *ws_preflight(void *ctx, const char **option, char *buf, size_t len);

const char *ws_preflight(void *ctx, const char **option, char *buf, size_t len)
{
	const struct ctx *c = ctx;
	const struct sockaddr_storage *ss = &c->conf->listen;
	socklen_t sl = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
					 sizeof(struct sockaddr_in);
	int fd, one = 1, err = 0;

	*option = "listen";
	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		err = errno;
	else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		 bind(fd, (const struct sockaddr *)ss, sl) || listen(fd, 1))
		err = errno;
	if (fd >= 0)
		close(fd);
	if (!err)
		return NULL;
	snprintf(buf, len, "cannot listen there: %s%s", strerror(err),
		 err == EACCES ? " (a port below 1024 needs CAP_NET_BIND_SERVICE)" :
		 err == EADDRINUSE ? " (another process has it)" : "");
	return buf;
}
