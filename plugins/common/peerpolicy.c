// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerpolicy.h"
#include "wgutil.h"

static bool is_any(const char *s)
{
	return !strcmp(s, WG_POLICY_ANY);
}

const char *wg_check_prefix(const void *field, char *buf, size_t len)
{
	if (is_any(*(char *const *)field))
		return NULL;
	return wg_check_allowed_ip(field, buf, len);
}

const char *wg_policy_check(const struct wggwd_list *l, bool required, char *buf, size_t len)
{
	size_t i;

	if (!l->n && required) {
		snprintf(buf, len, "required: the prefixes allowed IPs must lie in ([10.90.0.0/16]), "
			 "or [any] to accept every allowed IP");
		return buf;
	}
	for (i = 0; l->n > 1 && i < l->n; i++) {
		if (is_any(((char *const *)l->v)[i])) {
			snprintf(buf, len, "[any] stands alone: it accepts every allowed IP");
			return buf;
		}
	}
	return NULL;
}

int wg_policy_load(struct wg_policy *pol, const struct wggwd_list *l)
{
	char *const *s = l->v;
	size_t i;

	memset(pol, 0, sizeof(*pol));
	if (l->n == 1 && is_any(s[0])) {
		pol->any = true;
		return 0;
	}
	if (!l->n)
		return 0;
	pol->prefixes = calloc(l->n, sizeof(*pol->prefixes));
	if (!pol->prefixes)
		return -ENOMEM;
	for (i = 0; i < l->n; i++) {
		if (wg_allowed_ip_parse(&pol->prefixes[i], s[i])) {
			wg_policy_free(pol);
			return -EINVAL;
		}
	}
	pol->n = l->n;
	return 0;
}

void wg_policy_free(struct wg_policy *pol)
{
	free(pol->prefixes);
	memset(pol, 0, sizeof(*pol));
}

long wg_policy_outside(const struct wg_policy *pol, const struct wggwd_allowed_ip *ips,
		       size_t n)
{
	size_t i, k;

	for (i = 0; !pol->any && i < n; i++) {
		for (k = 0; k < pol->n; k++)
			if (wg_allowed_ip_within(&ips[i], &pol->prefixes[k]))
				break;
		if (k == pol->n)
			return (long)i;
	}
	return -1;
}

long wg_policy_peer_outside(const struct wg_policy *pol, const struct wggwd_peer *p)
{
	return wg_policy_outside(pol, p->allowed, p->n_allowed);
}
