// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Unit tests of the core's parsers and helpers. TAP output. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static int n, failed;

#define CHECK(cond, ...)                                       \
	do {                                                   \
		n++;                                           \
		if (cond) {                                    \
			printf("ok %d - ", n);                 \
		} else {                                       \
			printf("not ok %d - ", n);             \
			failed++;                              \
		}                                              \
		printf(__VA_ARGS__);                           \
		putchar('\n');                                 \
	} while (0)

struct conf {
	int64_t i, d;
	uint64_t sz;
	bool b;
	int e;
	struct sockaddr_storage a;
	char *s;
};

static const char *const colors[] = { "red", "green", NULL };
static const struct wggwd_opt o[] = {
	{ .name = "i", .type = WGGWD_OPT_INT, .min = -5, .max = 5, .offset = offsetof(struct conf, i) },
	{ .name = "d", .type = WGGWD_OPT_DURATION, .offset = offsetof(struct conf, d) },
	{ .name = "sz", .type = WGGWD_OPT_SIZE, .offset = offsetof(struct conf, sz) },
	{ .name = "b", .type = WGGWD_OPT_BOOL, .offset = offsetof(struct conf, b) },
	{ .name = "e", .type = WGGWD_OPT_ENUM, .choices = colors, .offset = offsetof(struct conf, e) },
	{ .name = "a", .type = WGGWD_OPT_ADDR, .offset = offsetof(struct conf, a) },
	{ .name = "s", .type = WGGWD_OPT_STR, .offset = offsetof(struct conf, s) },
	WGGWD_OPT_END
};

static int set(int idx, const char *v, struct conf *c)
{
	char err[256];

	return opt_set_string(&o[idx], c, v, err, sizeof(err));
}

int main(void)
{
	struct conf c = { 0 };
	struct sockaddr_in *in4 = (struct sockaddr_in *)&c.a;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&c.a;
	uint8_t tai[12] = { 0x40, 0, 0, 0, 0x6b, 0x05, 0xb6, 0xea, 0x14, 0, 0, 0 };
	int64_t sec;
	uint32_t nsec;
	char err[256];

	CHECK(!set(0, "3", &c) && c.i == 3, "int parses");
	CHECK(set(0, "6", &c) == -ERANGE, "int above max refused");
	CHECK(set(0, "3x", &c) == -EINVAL, "int with junk refused");
	CHECK(opt_set_string(&o[0], &c, "9", err, sizeof(err)) &&
	      strstr(err, "from -5 to 5"), "range error names the range: %s", err);
	CHECK(!set(1, "250ms", &c) && c.d == 250, "duration ms");
	CHECK(!set(1, "2s", &c) && c.d == 2000, "duration s");
	CHECK(!set(1, "5m", &c) && c.d == 300000, "duration m");
	CHECK(!set(1, "1h", &c) && c.d == 3600000, "duration h");
	CHECK(!set(1, "7", &c) && c.d == 7000, "bare duration is seconds");
	CHECK(set(1, "fast", &c) == -EINVAL, "duration 'fast' refused");
	CHECK(set(1, "-1s", &c) == -EINVAL, "negative duration refused");
	CHECK(!set(2, "64k", &c) && c.sz == 65536, "size k");
	CHECK(!set(2, "8MiB", &c) && c.sz == 8 << 20, "size MiB");
	CHECK(set(2, "8 parsecs", &c) == -EINVAL, "size with unknown unit refused");
	CHECK(set(2, "99999999999999999999", &c) != 0, "size overflow refused");
	CHECK(!set(3, "yes", &c) && c.b, "bool yes");
	CHECK(!set(3, "false", &c) && !c.b, "bool false");
	CHECK(set(3, "maybe", &c) == -EINVAL, "bool maybe refused");
	CHECK(!set(4, "green", &c) && c.e == 1, "enum index");
	CHECK(opt_set_string(&o[4], &c, "blue", err, sizeof(err)) &&
	      strstr(err, "one of red, green"), "enum error lists choices: %s", err);
	CHECK(!set(5, "127.0.0.1:4222", &c) && in4->sin_family == AF_INET &&
	      ntohs(in4->sin_port) == 4222, "IPv4 address with port");
	CHECK(!set(5, "[::1]:80", &c) && in6->sin6_family == AF_INET6 &&
	      ntohs(in6->sin6_port) == 80, "IPv6 address with port");
	CHECK(!set(5, "::1", &c) && in6->sin6_family == AF_INET6 && !in6->sin6_port,
	      "bare IPv6 address");
	CHECK(set(5, "1.2.3.4:70000", &c) == -EINVAL, "port out of range refused");
	CHECK(set(5, "example.org:80", &c) == -EINVAL, "host names refused");
	CHECK(!set(6, "x", &c) && !set(6, "y", &c) && !strcmp(c.s, "y"), "string replaced");
	opts_free(o, &c);
	CHECK(c.s == NULL, "opts_free clears strings");
	CHECK(levenshtein("timeout", "timout") == 1, "levenshtein typo");
	CHECK(levenshtein("", "abc") == 3, "levenshtein empty");
	CHECK(!tai64n_to_unix(tai, &sec, &nsec) && sec == 1795536608 && nsec == 335544320,
	      "TAI64N of vector dev-kernel-00");
	tai[0] = 0;
	CHECK(tai64n_to_unix(tai, &sec, &nsec) == -ERANGE, "TAI64N before 1970 refused");
	CHECK(metrics_counter("a.b") == metrics_counter("a.b"), "counter is stable");
	(*metrics_counter("a.b")) += 2;
	CHECK(*metrics_counter("a.b") == 2, "counter counts");
	metrics_reset();
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
