// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * systemd's service notification protocol, spoken directly: one datagram
 * of "KEY=VALUE\n" lines to the AF_UNIX socket named by $NOTIFY_SOCKET
 * (a path, or an abstract name written with a leading '@'), as sd_notify(3)
 * documents it and guarantees to keep. That is all libsystemd's sd_notify
 * would do for us, so the daemon keeps no libsystemd dependency (and no
 * systemd-specific link on hosts without it). Without $NOTIFY_SOCKET every
 * call does nothing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core.h"

static struct {
	int fd;
	struct sockaddr_un sa;
	socklen_t sa_len;
	uint64_t watchdog_usec;
} n = { .fd = -1 };

void notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *wd = getenv("WATCHDOG_USEC");
	const char *wd_pid = getenv("WATCHDOG_PID");
	size_t len;

	if (wd && (!wd_pid || strtol(wd_pid, NULL, 10) == (long)getpid()))
		n.watchdog_usec = strtoull(wd, NULL, 10);
	if (!path || (path[0] != '/' && path[0] != '@'))
		return;
	len = strlen(path);
	if (len >= sizeof(n.sa.sun_path))
		return;
	n.sa.sun_family = AF_UNIX;
	memcpy(n.sa.sun_path, path, len);
	if (path[0] == '@')
		n.sa.sun_path[0] = '\0';
	n.sa_len = offsetof(struct sockaddr_un, sun_path) + len;
	n.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (n.fd < 0)
		log_msg(WGGWD_LOG_WARN, "[core]", "NOTIFY_SOCKET: %s", strerror(errno));
}

bool notify_enabled(void)
{
	return n.fd >= 0;
}

uint64_t notify_watchdog_usec(void)
{
	return n.fd >= 0 ? n.watchdog_usec : 0;
}

void notify(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int len;

	if (n.fd < 0)
		return;
	va_start(ap, fmt);
	len = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(msg))
		len = sizeof(msg) - 1;
	if (sendto(n.fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *)&n.sa, n.sa_len) < 0)
		log_msg(WGGWD_LOG_DEBUG, "[core]", "NOTIFY_SOCKET: %s", strerror(errno));
}
