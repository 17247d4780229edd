// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include <string.h>

#include <sodium.h>

#include "peerjson.h"

const char *wg_peer_from_json(const json_t *root, struct wggwd_peer *p)
{
	json_t *v, *ips, *ip;
	size_t i;

	memset(p, 0, sizeof(*p));
	if (!json_is_object(root))
		return "not a JSON object";
	v = json_object_get(root, "public_key");
	if (!json_is_string(v) || wg_key_from_b64(p->public_key, json_string_value(v)))
		return "public_key: expected a base64 key";
	ips = json_object_get(root, "allowed_ips");
	if (!json_is_array(ips) || json_array_size(ips) > WGGWD_MAX_ALLOWED)
		return "allowed_ips: expected a list of at most 64 addresses with prefix lengths";
	json_array_foreach(ips, i, ip) {
		if (!json_is_string(ip) || wg_allowed_ip_parse(&p->allowed[i], json_string_value(ip)))
			return "allowed_ips: expected a list of at most 64 addresses with prefix lengths";
	}
	p->n_allowed = json_array_size(ips);
	v = json_object_get(root, "preshared_key");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || wg_key_from_b64(p->preshared_key, json_string_value(v)))
			return "preshared_key: expected a base64 key or null";
		p->has |= WGGWD_PEER_HAS_PRESHARED_KEY;
	}
	v = json_object_get(root, "persistent_keepalive");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
			return "persistent_keepalive: expected 0 to 65535";
		p->keepalive = json_integer_value(v);
	}
	v = json_object_get(root, "ttl");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 2592000)
			return "ttl: expected seconds, 0 to 2592000";
		p->ttl_s = json_integer_value(v);
		p->has |= WGGWD_PEER_HAS_TTL;
	}
	p->has |= WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS | WGGWD_PEER_HAS_KEEPALIVE;
	p->origin = WGGWD_ORIGIN_PULL;
	return NULL;
}

int wg_peer_outside(const struct wggwd_peer *p, const struct wggwd_allowed_ip *prefixes, size_t n)
{
	size_t i, k;

	for (i = 0; i < p->n_allowed; i++) {
		for (k = 0; k < n; k++)
			if (wg_allowed_ip_within(&p->allowed[i], &prefixes[k]))
				break;
		if (k == n)
			return (int)i;
	}
	return -1;
}

void wg_peer_json_wipe(json_t *root)
{
	json_t *v = json_object_get(root, "preshared_key");

	if (json_is_string(v))
		sodium_memzero((char *)json_string_value(v), json_string_length(v));
}
