// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wgutil.h"

int wg_key_from_b64(uint8_t key[32], const char *b64)
{
	size_t len;

	if (!b64 || strlen(b64) != 44 || b64[43] != '=')
		return -EINVAL;
	if (sodium_base642bin(key, 32, b64, 44, NULL, &len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) || len != 32)
		return -EINVAL;
	return 0;
}

void wg_key_to_b64(char out[WG_KEY_B64_LEN], const uint8_t key[32])
{
	sodium_bin2base64(out, WG_KEY_B64_LEN, key, 32, sodium_base64_VARIANT_ORIGINAL);
}

int wg_key_from_hex(uint8_t key[32], const char *hex)
{
	size_t len;

	if (!hex || strlen(hex) != 64 ||
	    sodium_hex2bin(key, 32, hex, 64, NULL, &len, NULL) || len != 32)
		return -EINVAL;
	return 0;
}

void wg_key_to_hex(char out[WG_KEY_HEX_LEN], const uint8_t key[32])
{
	sodium_bin2hex(out, WG_KEY_HEX_LEN, key, 32);
}

bool wg_key_is_zero(const uint8_t key[32])
{
	return sodium_is_zero(key, 32);
}

int wg_allowed_ip_parse(struct wggwd_allowed_ip *ip, const char *s)
{
	char addr[INET6_ADDRSTRLEN + 1], *end;
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	long cidr;

	memset(ip, 0, sizeof(*ip));
	if (n >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET, addr, ip->addr) == 1)
		ip->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, ip->addr) == 1)
		ip->family = AF_INET6;
	else
		return -EINVAL;
	cidr = ip->family == AF_INET ? 32 : 128;
	if (slash) {
		errno = 0;
		cidr = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || cidr < 0 ||
		    cidr > (ip->family == AF_INET ? 32 : 128))
			return -EINVAL;
	}
	ip->cidr = cidr;
	return 0;
}

void wg_allowed_ip_str(const struct wggwd_allowed_ip *ip, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	inet_ntop(ip->family, ip->addr, a, sizeof(a));
	snprintf(buf, len, "%s/%u", a, ip->cidr);
}

bool wg_allowed_ip_within(const struct wggwd_allowed_ip *ip,
			  const struct wggwd_allowed_ip *net)
{
	unsigned bits = net->cidr, i;

	if (ip->family != net->family || ip->cidr < net->cidr)
		return false;
	for (i = 0; i < bits / 8; i++)
		if (ip->addr[i] != net->addr[i])
			return false;
	if (bits % 8) {
		uint8_t mask = (uint8_t)(0xff << (8 - bits % 8));

		if ((ip->addr[i] & mask) != (net->addr[i] & mask))
			return false;
	}
	return true;
}

void wg_sockaddr_str(const union wggwd_sockaddr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in4.sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in4.sin_port));
	} else if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	} else {
		snprintf(buf, len, "(none)");
	}
}

int wg_sockaddr_parse(union wggwd_sockaddr *a, const char *s)
{
	char host[INET6_ADDRSTRLEN + 1], *end;
	const char *port;
	size_t n;
	long p;

	memset(a, 0, sizeof(*a));
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':' || (n = close - s - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, n);
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon || (n = colon - s) >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, n);
		port = colon + 1;
	}
	host[n] = '\0';
	errno = 0;
	p = strtol(port, &end, 10);
	if (errno || end == port || *end || p < 0 || p > 65535)
		return -EINVAL;
	if (inet_pton(AF_INET, host, &a->in4.sin_addr) == 1) {
		a->in4.sin_family = AF_INET;
		a->in4.sin_port = htons(p);
	} else if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) == 1) {
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons(p);
	} else {
		return -EINVAL;
	}
	return 0;
}

bool wg_sockaddr_equal(const union wggwd_sockaddr *a, const union wggwd_sockaddr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in4.sin_port == b->in4.sin_port &&
		       a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
	if (a->sa.sa_family == AF_INET6)
		return a->in6.sin6_port == b->in6.sin6_port &&
		       !memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16);
	return a->sa.sa_family == AF_UNSPEC;
}

const char *wg_check_key_b64(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;
	uint8_t key[32];

	if (!s)
		return NULL;
	if (wg_key_from_b64(key, s)) {
		snprintf(buf, len, "expected a WireGuard key (44 characters of base64, as `wg pubkey` prints), got \"%.60s\"", s);
		return buf;
	}
	return NULL;
}

const char *wg_check_ifname(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!s)
		return NULL;
	/* the kernel's dev_valid_name(): no '/', ':' or white space */
	if (!*s || strlen(s) > 15 || strpbrk(s, "/: \t\n\v\f\r") || !strcmp(s, ".") ||
	    !strcmp(s, "..")) {
		snprintf(buf, len, "expected an interface name (1 to 15 characters, no '/', ':' or blanks), got \"%.60s\"",
			 s);
		return buf;
	}
	return NULL;
}

const char *wg_check_allowed_ip(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;
	struct wggwd_allowed_ip ip;

	if (wg_allowed_ip_parse(&ip, s)) {
		snprintf(buf, len, "expected an address with a prefix length (10.0.0.2/32, fd00::2/128), got \"%.60s\"", s);
		return buf;
	}
	return NULL;
}

/* n decimal digits at *s; -1 if not */
static int digits(const char **s, int n)
{
	int v = 0;

	while (n--) {
		if (**s < '0' || **s > '9')
			return -1;
		v = v * 10 + (*(*s)++ - '0');
	}
	return v;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int wg_time_parse(const char *s, int64_t *unix_s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;

	y = digits(&s, 4);
	if (y < 0 || *s++ != '-' || (mo = digits(&s, 2)) < 1 || mo > 12 || *s++ != '-' ||
	    (d = digits(&s, 2)) < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400))) ||
	    (*s != 'T' && *s != 't' && *s != ' '))
		return -EINVAL;
	s++;
	if ((h = digits(&s, 2)) < 0 || h > 23 || *s++ != ':' || (mi = digits(&s, 2)) < 0 ||
	    mi > 59 || *s++ != ':' || (sec = digits(&s, 2)) < 0 || sec > 60)
		return -EINVAL;
	if (*s == '.') {
		if (*++s < '0' || *s > '9')
			return -EINVAL;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s++ == '-' ? -1 : 1;
		if ((oh = digits(&s, 2)) < 0 || oh > 23 || *s++ != ':' ||
		    (om = digits(&s, 2)) < 0 || om > 59)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*s)
		return -EINVAL;
	*unix_s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec) -
		  sign * (oh * 3600 + om * 60);
	return 0;
}

const char *wg_check_time(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;
	int64_t t;

	if (wg_time_parse(s, &t)) {
		snprintf(buf, len, "expected an RFC 3339 time (2026-12-31T23:00:00Z), got \"%.60s\"", s);
		return buf;
	}
	return NULL;
}

int wg_key_from_secret_file(const struct wggwd_host *host, struct wggwd_inst *self,
			    const char *path, uint8_t key[32])
{
	uint8_t buf[128];
	ssize_t n;
	int ret = 0;

	n = host->secret_read(self, path, buf, sizeof(buf) - 1);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	if (wg_key_from_b64(key, (char *)buf)) {
		host->log(self, WGGWD_LOG_ERROR,
			  "%s: does not hold a base64 WireGuard key (as `wg genkey` writes it)", path);
		ret = -EINVAL;
	}
	sodium_memzero(buf, sizeof(buf));
	return ret;
}
