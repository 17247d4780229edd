// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The allowed-IPs policy (option allowed_prefixes), the one copy that
 * resolver-http, resolver-nats, source-nats and the install engine use:
 * every allowed IP of a peer must lie inside one of a list of prefixes
 * ([10.90.0.0/16, fd00:90::/32]), or the list is [any] (alone): the
 * explicit opt-out, every allowed IP accepted as given.
 */
#ifndef WGGWD_PEERPOLICY_H
#define WGGWD_PEERPOLICY_H

#include <stdbool.h>
#include <stddef.h>

#include <wggwd/plugin.h>

#define WG_POLICY_ANY "any"

struct wg_policy {
	bool any;                          /* [any]: no check */
	size_t n;
	struct wggwd_allowed_ip *prefixes; /* n of them; none: all outside */
};

/* One element of the list (struct wggwd_opt.check): "any" or a prefix. */
const char *wg_check_prefix(const void *field, char *buf, size_t len);
/* The list as a whole (for validate): NULL when fine, else a phrase:
 * "any" mixed in with prefixes, or (when required) no list at all. */
const char *wg_policy_check(const struct wggwd_list *l, bool required, char *buf,
			    size_t len);
/* Parse a list that passed both checks. 0, -ENOMEM or -EINVAL; nothing
 * to free on error, else wg_policy_free(). */
int wg_policy_load(struct wg_policy *pol, const struct wggwd_list *l);
void wg_policy_free(struct wg_policy *pol);
/* The index of the first of ips[0..n) outside the policy, or -1. */
long wg_policy_outside(const struct wg_policy *pol, const struct wggwd_allowed_ip *ips,
		       size_t n);
/* The same for a peer's allowed IPs. */
long wg_policy_peer_outside(const struct wg_policy *pol, const struct wggwd_peer *p);

#endif
