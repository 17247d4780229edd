// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Helpers for ops.preflight (`wggwd check`): capabilities and paths. */
#ifndef WGGWD_PREFLIGHT_H
#define WGGWD_PREFLIGHT_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

/* Is `cap` (CAP_NET_ADMIN...) in this process's effective set? */
static inline bool pf_has_cap(int cap)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d))
		return false;
	return d[cap / 32].effective & (1u << (cap % 32));
}

/* NULL if the process has cap, else a phrase naming it and what for. */
static inline const char *pf_need_cap(int cap, const char *name, const char *what,
				      char *buf, size_t len)
{
	if (pf_has_cap(cap))
		return NULL;
	snprintf(buf, len, "needs %s %s; the daemon's user (uid %u) lacks it (systemd: add it to AmbientCapabilities= and CapabilityBoundingSet=)",
		 name, what, (unsigned)geteuid());
	return buf;
}

#endif
