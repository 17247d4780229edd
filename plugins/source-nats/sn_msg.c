// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-nats: a pushed message (JSON, see source_nats.c) as a PEER item,
 * and the checks that make it poison: its shape, its version (at most
 * max_version), its allowed IPs (inside allowed_prefixes unless [any]) and
 * its endpoint (never loopback, link-local, unspecified, multicast or one
 * of the gateway's own addresses, unless allow_endpoints admits it).
 */
#include <errno.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "peerjson.h"
#include "sn.h"
#include "wgutil.h"

const char *const sn_poison_names[P_MAX] = {
	"none", "bad_json", "bad_op", "bad_key", "bad_version", "bad_allowed_ips",
	"too_many_allowed_ips", "bad_preshared_key", "bad_keepalive", "bad_endpoint",
	"policy", "version_jump", "bad_lease",
};

/* "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>",
 * or with "<domain>.<account hash>." before the stream (v2, and maybe a
 * trailing token). */
/* A decimal field of an ACK subject, up to the dot: digits only (no sign,
 * no spaces), no overflow (strtoull would wrap "-1" to UINT64_MAX). */
static bool dec_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return *s == '.';
}

bool sn_ack_subject_parse(const char *s, uint64_t *sseq, uint64_t *delivered)
{
	const char *tok[16];
	size_t n = 0, base;

	if (strncmp(s, "$JS.ACK.", 8))
		return false;
	s += 8;
	tok[n++] = s;
	for (; *s && n < 16; s++)
		if (*s == '.')
			tok[n++] = s + 1;
	if (n == 7)
		base = 0;
	else if (n >= 9)
		base = 2;
	else
		return false;
	if (!dec_u64(tok[base + 2], delivered) || !dec_u64(tok[base + 3], sseq))
		return false;
	return *sseq != 0;
}

/* -------------------------------------------------------------- endpoints */

/* an address as a host prefix (v4-mapped v6 as v4); false if neither */
static bool sa_to_ip(const struct sockaddr *sa, struct wggwd_allowed_ip *ip)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(ip, 0, sizeof(*ip));
	if (sa->sa_family == AF_INET) {
		ip->family = AF_INET;
		ip->cidr = 32;
		memcpy(ip->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	memcpy(ip->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	if (!memcmp(ip->addr, mapped, 12)) {
		memmove(ip->addr, ip->addr + 12, 4);
		memset(ip->addr + 4, 0, 12);
		ip->family = AF_INET;
		ip->cidr = 32;
	} else {
		ip->family = AF_INET6;
		ip->cidr = 128;
	}
	return true;
}

static bool within_any(const struct wggwd_allowed_ip *ip, const struct wggwd_allowed_ip *nets,
		       size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (wg_allowed_ip_within(ip, &nets[i]))
			return true;
	return false;
}

/* loopback, link-local, unspecified, multicast (and v4 broadcast) */
static bool special(const struct wggwd_allowed_ip *ip)
{
	static const uint8_t zero[16];
	const uint8_t *a = ip->addr;

	if (ip->family == AF_INET)
		return a[0] == 127 || a[0] == 0 || (a[0] == 169 && a[1] == 254) ||
		       (a[0] >= 224 && a[0] <= 239) || !memcmp(a, "\xff\xff\xff\xff", 4);
	return !memcmp(a, zero, 16) ||                            /* ::  */
	       (!memcmp(a, zero, 15) && a[15] == 1) ||            /* ::1 */
	       (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||         /* fe80::/10 */
	       a[0] == 0xff;                                      /* ff00::/8 */
}

static bool endpoint_refused(const struct sn_policy *pol, const union wggwd_sockaddr *ep)
{
	struct wggwd_allowed_ip ip;

	if (!sa_to_ip(&ep->sa, &ip))
		return true;
	if (within_any(&ip, pol->allow_ep, pol->n_allow_ep))
		return false;
	return special(&ip) || within_any(&ip, pol->own, pol->n_own);
}

int sn_policy_load(struct sn_policy *pol, const struct wggwd_list *allow_endpoints)
{
	struct ifaddrs *ifa, *i;
	size_t n = 0, k;

	if (allow_endpoints->n) {
		pol->allow_ep = calloc(allow_endpoints->n, sizeof(*pol->allow_ep));
		if (!pol->allow_ep)
			return -ENOMEM;
		for (k = 0; k < allow_endpoints->n; k++)
			if (wg_allowed_ip_parse(&pol->allow_ep[k], ((char **)allow_endpoints->v)[k]))
				return -EINVAL;
		pol->n_allow_ep = allow_endpoints->n;
	}
	if (getifaddrs(&ifa))
		return -errno;
	for (i = ifa; i; i = i->ifa_next)
		n++;
	pol->own = calloc(n ? n : 1, sizeof(*pol->own));
	if (!pol->own) {
		freeifaddrs(ifa);
		return -ENOMEM;
	}
	for (i = ifa; i; i = i->ifa_next)
		if (i->ifa_addr && sa_to_ip(i->ifa_addr, &pol->own[pol->n_own]))
			pol->n_own++;
	freeifaddrs(ifa);
	return 0;
}

void sn_policy_free(struct sn_policy *pol)
{
	free(pol->prefixes);
	free(pol->allow_ep);
	free(pol->own);
}

/* ---------------------------------------------------------------- parsing */

static void wipe_json_key(json_t *root, const char *name)
{
	json_t *v = json_object_get(root, name);

	if (json_is_string(v))
		sodium_memzero((char *)json_string_value(v), json_string_length(v));
}

int sn_parse(const struct sn_policy *pol, const char *data, int len, struct wggwd_item *it,
	     uint64_t seq, const char **what)
{
	struct wggwd_peer *p = it->peer;
	struct wggwd_allowed_ip *a;
	json_t *root, *v, *ips, *ip;
	json_error_t jerr;
	const char *op;
	size_t i, n;
	int why = P_NONE;

	*what = NULL;
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		why = P_BAD_JSON;
		goto out;
	}
	v = json_object_get(root, "op");
	op = json_is_string(v) ? json_string_value(v) : v ? NULL : "add";
	if (!op || (strcmp(op, "add") && strcmp(op, "remove"))) {
		why = P_BAD_OP;
		goto out;
	}
	if (strcmp(op, "add")) {
		it->op = WGGWD_OP_REMOVE;
		it->reason = WGGWD_R_PUSHED;
	}
	v = json_object_get(root, "public_key");
	if (!json_is_string(v) || wg_key_from_b64(p->public_key, json_string_value(v)) ||
	    wg_key_is_zero(p->public_key)) {
		why = P_BAD_KEY;
		goto out;
	}
	memcpy(it->public_key, p->public_key, WGGWD_KEY_LEN);
	p->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_VERSION;
	v = json_object_get(root, "version");
	if (v && !json_is_null(v)) {
		/* above max_version it would shadow every later one: poison */
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    (uint64_t)json_integer_value(v) > pol->max_version) {
			why = P_BAD_VERSION;
			goto out;
		}
		p->version = (uint64_t)json_integer_value(v);
	} else if (seq) {
		if (seq > pol->max_version) { /* the stream's sequence: the same rule */
			why = P_BAD_VERSION;
			goto out;
		}
		p->version = seq;
	} else {
		p->has &= ~WGGWD_PEER_HAS_VERSION;
	}
	if (it->op == WGGWD_OP_REMOVE)
		goto out;
	ips = json_object_get(root, "allowed_ips");
	if (ips && !json_is_array(ips)) {
		why = P_BAD_ALLOWED_IPS;
		goto out;
	}
	n = json_array_size(ips);
	if (n > (size_t)pol->max_allowed_ips) {
		why = P_TOO_MANY_ALLOWED_IPS;
		goto out;
	}
	if (n) {
		a = pol->host->allowed_reserve(pol->self, it, n);
		if (!a) {
			why = -ENOMEM;
			goto out;
		}
		json_array_foreach(ips, i, ip) {
			if (!json_is_string(ip) || wg_allowed_ip_parse(&a[i], json_string_value(ip))) {
				why = P_BAD_ALLOWED_IPS;
				goto out;
			}
		}
	}
	p->has |= WGGWD_PEER_HAS_ALLOWED_IPS | WGGWD_PEER_HAS_KEEPALIVE;
	v = json_object_get(root, "preshared_key");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || wg_key_from_b64(p->preshared_key, json_string_value(v))) {
			why = P_BAD_PRESHARED_KEY;
			goto out;
		}
		p->has |= WGGWD_PEER_HAS_PRESHARED_KEY;
	}
	v = json_object_get(root, "persistent_keepalive");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535) {
			why = P_BAD_KEEPALIVE;
			goto out;
		}
		p->keepalive = json_integer_value(v);
	}
	v = json_object_get(root, "endpoint");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || wg_sockaddr_parse(&p->endpoint, json_string_value(v))) {
			why = P_BAD_ENDPOINT;
			goto out;
		}
		if (endpoint_refused(pol, &p->endpoint)) {
			*what = "endpoint";
			why = P_POLICY;
			goto out;
		}
		p->has |= WGGWD_PEER_HAS_ENDPOINT;
	}
	/* a lease: removed at its end (expires_at, or lease seconds from now) */
	*what = wg_lease_from_json(p, root, (int64_t)((pol->host->realtime_ns() + 999999999ull) /
						       1000000000ull));
	if (*what) {
		why = P_BAD_LEASE;
		goto out;
	}
	for (i = 0; !pol->any_prefix && i < p->n_allowed; i++) {
		if (!within_any(&p->allowed[i], pol->prefixes, pol->n_prefixes)) {
			*what = "allowed IP";
			why = P_POLICY;
			goto out;
		}
	}
out:
	if (root) {
		wipe_json_key(root, "preshared_key");
		json_decref(root);
	}
	return why;
}
