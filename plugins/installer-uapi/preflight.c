// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* installer-uapi's preflight (`wggwd check`): is there a UAPI socket for
 * the interface, and does something answer on it? */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "installer_uapi.h"
#include "preflight.h"
#include "wgengine_int.h"

const char *uapi_preflight(void *ctx, const char **option, char *buf, size_t len);
const char *uapi_preflight(void *ctx, const char **option, char *buf, size_t len)
{
	const struct ctx *c = ((struct wge *)ctx)->b;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, err = 0;

	*option = "interface";
	if (stat(c->conf->socket_dir, &st)) {
		*option = "socket_dir";
		snprintf(buf, len, "%s: %s (is wireguard-go running?)", c->conf->socket_dir,
			 strerror(errno));
		return buf;
	}
	if (stat(c->path, &st)) {
		snprintf(buf, len, "no UAPI socket %s: %s (is wireguard-go running for %s?)",
			 c->path, strerror(errno), c->conf->e.interface);
		return buf;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(buf, len, "%s is not a socket", c->path);
		return buf;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		err = errno;
	if (fd >= 0)
		close(fd);
	if (!err)
		return NULL;
	snprintf(buf, len, "cannot connect to %s: %s%s", c->path, strerror(err),
		 err == ECONNREFUSED ? " (a stale socket: wireguard-go exited?)" :
		 err == EACCES ? " (the daemon's user may not write to the socket)" : "");
	return buf;
}
