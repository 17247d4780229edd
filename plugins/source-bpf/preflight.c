// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* source-bpf's preflight (`wggwd check`): the interface is there, and the
 * sockets start opens (AF_PACKET; raw IP for re-injection) can be had. */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_ether.h>

#include "source_bpf.h"

static const char *try_socket(int domain, int type, int proto, const char *what,
			      char *buf, size_t len)
{
	int fd = socket(domain, type | SOCK_CLOEXEC, proto);

	if (fd >= 0) {
		close(fd);
		return NULL;
	}
	snprintf(buf, len, "cannot open %s: %s%s", what, strerror(errno),
		 errno == EPERM || errno == EACCES ?
		 " (needs CAP_NET_RAW; systemd: AmbientCapabilities=CAP_NET_RAW)" : "");
	return buf;
}

const char *sb_preflight_conf(const char *ifname, bool reinject, const char **option,
			      char *buf, size_t len)
{
	*option = "interface";
	if (!if_nametoindex(ifname)) {
		snprintf(buf, len, "no interface \"%s\": %s", ifname, strerror(errno));
		return buf;
	}
	if (try_socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL), "an AF_PACKET socket", buf, len))
		return buf;
	*option = "reinject";
	if (reinject && try_socket(AF_INET, SOCK_RAW, IPPROTO_RAW, "a raw IP socket", buf, len))
		return buf;
	return NULL;
}
