// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "peerjson.h"

/* n decimal digits at s */
static bool digits(const char *s, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int wg_rfc3339_parse(const char *s, int64_t *t)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	bool leap;

	if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
		return -EINVAL;
	s += 19;
	if (*s == '.') {
		if (s[1] < '0' || s[1] > '9')
			return -EINVAL;
		for (s++; *s >= '0' && *s <= '9'; s++)
			;
	}
	if ((*s == 'Z' || *s == 'z') && !s[1])
		sign = 0;
	else if ((*s == '+' || *s == '-') && digits(s + 1, 2, &oh) && s[3] == ':' &&
		 digits(s + 4, 2, &om) && !s[6])
		sign = *s == '+' ? 1 : -1;
	else
		return -EINVAL;
	leap = (y % 4 == 0 && y % 100) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 ||
	    mi > 59 || sec > 60 || oh > 23 || om > 59)
		return -EINVAL;
	*t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
	     sign * (oh * 3600 + om * 60);
	return 0;
}

const char *wg_lease_from_json(struct wggwd_peer *p, const json_t *root, int64_t now_s)
{
	const json_t *at = json_object_get(root, "expires_at");
	const json_t *lease = json_object_get(root, "lease");
	int64_t t;

	if (at && json_is_null(at))
		at = NULL;
	if (lease && json_is_null(lease))
		lease = NULL;
	if (at && lease)
		return "expires_at and lease: give one of them";
	if (at) {
		if (!json_is_string(at) || wg_rfc3339_parse(json_string_value(at), &t))
			return "expires_at: expected an RFC 3339 time (2026-12-02T10:00:00Z)";
	} else if (lease) {
		if (!json_is_integer(lease) || json_integer_value(lease) < 1 ||
		    json_integer_value(lease) > WG_LEASE_MAX)
			return "lease: expected seconds, 1 to 315360000";
		t = now_s + json_integer_value(lease);
	} else {
		return NULL;
	}
	p->expires_at = t;
	p->has |= WGGWD_PEER_HAS_EXPIRES;
	return NULL;
}

void wg_peer_clear(struct wggwd_peer *p)
{
	sodium_memzero(p->preshared_key, sizeof(p->preshared_key));
	if (p->allowed && p->n_allowed)
		memset(p->allowed, 0, p->n_allowed * sizeof(*p->allowed));
	memset(p->public_key, 0, sizeof(p->public_key));
	memset(&p->endpoint, 0, sizeof(p->endpoint));
	p->has = 0;
	p->keepalive = 0;
	p->origin = WGGWD_ORIGIN_NONE;
	p->n_allowed = 0;
	p->version = 0;
	p->ttl_s = 0;
	p->expires_at = 0;
}

static const char *fill(const struct wggwd_host *host, struct wggwd_inst *self,
			struct wggwd_item *it, const json_t *root, size_t max_allowed,
			uint32_t *reason)
{
	static const char bad_ips[] =
		"allowed_ips: expected a list of addresses with prefix lengths";
	struct wggwd_peer *p = it->peer;
	struct wggwd_allowed_ip *a;
	json_t *v, *ips, *ip;
	const char *what;
	size_t i, n;

	*reason = WGGWD_R_BAD_ANSWER;
	if (!json_is_object(root))
		return "not a JSON object";
	v = json_object_get(root, "public_key");
	if (!json_is_string(v) || wg_key_from_b64(p->public_key, json_string_value(v)))
		return "public_key: expected a base64 key";
	if (memcmp(p->public_key, it->public_key, WGGWD_KEY_LEN)) {
		*reason = WGGWD_R_KEY_MISMATCH;
		return "the answer is about another key";
	}
	ips = json_object_get(root, "allowed_ips");
	if (!json_is_array(ips))
		return bad_ips;
	n = json_array_size(ips);
	if (max_allowed && n > max_allowed)
		return "allowed_ips: more than max_allowed_ips";
	if (n) {
		a = host->allowed_reserve(self, it, n);
		if (!a) {
			*reason = WGGWD_R_NO_MEMORY;
			return "allowed_ips: out of memory";
		}
		json_array_foreach(ips, i, ip) {
			if (!json_is_string(ip) || wg_allowed_ip_parse(&a[i], json_string_value(ip)))
				return bad_ips;
		}
	}
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
	/* rounded up: a lease of n seconds lasts at least n seconds */
	what = wg_lease_from_json(p, root,
				  (int64_t)((host->realtime_ns() + 999999999ull) / 1000000000ull));
	if (what)
		return what;
	p->has |= WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS | WGGWD_PEER_HAS_KEEPALIVE;
	p->origin = WGGWD_ORIGIN_PULL;
	*reason = WGGWD_R_NONE;
	return NULL;
}

uint32_t wg_peer_from_json(const struct wggwd_host *host, struct wggwd_inst *self,
			   struct wggwd_item *it, const json_t *root,
			   size_t max_allowed, const char **what)
{
	uint32_t reason;

	wg_peer_clear(it->peer);
	*what = fill(host, self, it, root, max_allowed, &reason);
	if (reason != WGGWD_R_NONE)
		wg_peer_clear(it->peer);
	return reason;
}

void wg_peer_json_wipe(json_t *root)
{
	json_t *v = json_object_get(root, "preshared_key");

	if (json_is_string(v))
		sodium_memzero((char *)json_string_value(v), json_string_length(v));
}

enum wg_answer wg_answer_kind(const json_t *v, const char **what)
{
	const json_t *e;

	*what = NULL;
	if (!v || json_is_null(v))
		return WG_ANSWER_NOT_FOUND;
	if (!json_is_object(v)) {
		*what = "not a JSON object or null";
		return WG_ANSWER_BAD;
	}
	e = json_object_get(v, "error");
	if (!e || json_is_null(e))
		return WG_ANSWER_PEER;
	if (json_is_string(e) && !strcmp(json_string_value(e), "not_found"))
		return WG_ANSWER_NOT_FOUND;
	*what = json_is_string(e) ? json_string_value(e) : "(an error that is not a string)";
	return WG_ANSWER_ERROR;
}

enum wg_answer wg_batch_answer(const json_t *root, const uint8_t key[WGGWD_KEY_LEN],
			       const json_t **entry, const char **what)
{
	char b64[WG_KEY_B64_LEN];
	const json_t *v;

	wg_key_to_b64(b64, key);
	*entry = NULL;
	*what = NULL;
	v = json_object_get(root, b64); /* NULL: absent; a json null: not found */
	if (!v) {
		*what = "the key is missing from the batch answer";
		return WG_ANSWER_MISSING;
	}
	*entry = v;
	return wg_answer_kind(v, what);
}

void wg_batch_json_wipe(json_t *root)
{
	const char *k;
	json_t *v;

	if (!json_is_object(root))
		return;
	json_object_foreach(root, k, v) {
		if (json_is_object(v))
			wg_peer_json_wipe(v);
	}
}
