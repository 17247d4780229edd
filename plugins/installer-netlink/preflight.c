// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* installer-netlink's preflight (`wggwd check`): the capabilities, the
 * namespace, the wireguard netlink family and the interface, read once
 * as start would read it, then closed. */
#include "installer_netlink.h"
#include "preflight.h"
#include "wgengine_int.h"

static void close_sockets(struct ctx *c)
{
	if (c->set.fd >= 0)
		close(c->set.fd);
	if (c->get.fd >= 0)
		close(c->get.fd);
	c->set.fd = c->get.fd = -1;
	dump_reset(&c->d);
}

const char *nl_preflight(void *ctx, const char **option, char *buf, size_t len);
const char *nl_preflight(void *ctx, const char **option, char *buf, size_t len)
{
	struct ctx *c = ((struct wge *)ctx)->b;
	char why[200];
	int ret;

	*option = "interface";
	if (pf_need_cap(CAP_NET_ADMIN, "CAP_NET_ADMIN", "to read and change WireGuard interfaces",
			buf, len))
		return buf;
	if (c->conf->netns) {
		*option = "netns";
		if (pf_need_cap(CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "to enter the network namespace",
				buf, len))
			return buf;
	}
	ret = open_sockets(c);
	if (ret) {
		snprintf(buf, len, "%s%s: %s", c->conf->netns ? "netns " : "netlink socket",
			 c->conf->netns ? c->conf->netns : "", strerror(-ret));
		close_sockets(c);
		return buf;
	}
	*option = "interface";
	ret = resolve_family(c);
	if (ret) {
		snprintf(buf, len, "%s",
			 ret == -ENOENT ? "the kernel has no \"wireguard\" generic netlink family: load the module (modprobe wireguard), or use installer-uapi with wireguard-go" :
			 strerror(-ret));
		close_sockets(c);
		return buf;
	}
	ret = sync_dump(c);
	close_sockets(c);
	if (ret) {
		snprintf(buf, len, "%s", dev_error(c, ret, why, sizeof(why)));
		return buf;
	}
	return NULL;
}
