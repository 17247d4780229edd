// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Unit tests of the core's parsers and helpers. TAP output. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "ctl.h"

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

/* Every 2.0 reason has its own name, usable as a metric name. */
static void test_reasons(void)
{
	char what[64] = "";
	uint32_t r, q;
	bool good = true;

	for (r = 0; r < WGGWD_R_COUNT_2_0 && good; r++) {
		const char *s = reason_name(r);

		good = s && *s && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(s) &&
		       strncmp(s, "reason_", 7);
		for (q = 0; q < r && good; q++)
			good = strcmp(s, reason_name(q)) != 0;
		if (!good)
			snprintf(what, sizeof(what), "%u: %s", r, s ? s : "(null)");
	}
	CHECK(good, "%u reasons, each with its own name %s", (unsigned)WGGWD_R_COUNT_2_0, what);
	CHECK(!strcmp(reason_name(WGGWD_R_UNKNOWN_KEY), "unknown_key") &&
	      !strcmp(reason_name(WGGWD_R_SHORT), "short") &&
	      !strcmp(reason_name(WGGWD_R_IDLE), "idle"), "reasons are named after the enum");
	CHECK(reason_name(UINT32_MAX) && strstr(reason_name(UINT32_MAX), "4294967295"),
	      "an unknown reason still gets a name, with its number: %s",
	      reason_name(UINT32_MAX));
}

/* Items hold their packet and allowed IPs by reference, without a cap. */
static void test_items(void)
{
	struct wggwd_item *it = item_alloc();
	struct wggwd_allowed_ip *a, *b;
	uint8_t big[2000];
	size_t i;
	bool zero = true, kept = true;

	for (i = 0; i < sizeof(big); i++)
		big[i] = i * 7;
	CHECK(it->size == sizeof(*it) && it->peer && it->peer->size == sizeof(*it->peer) &&
	      !it->peer->n_allowed && !it->pkt_len, "a new item: sizes set, peer attached, empty");
	CHECK(!item_set_pkt(it, big, 148) && it->pkt_len == 148 && !memcmp(it->pkt, big, 148),
	      "a 148-byte packet is copied");
	CHECK(!item_set_pkt(it, big, sizeof(big)) && it->pkt_len == sizeof(big) &&
	      !memcmp(it->pkt, big, sizeof(big)), "a 2000-byte packet is copied whole");
	CHECK(!item_set_pkt(it, big + 1, 3) && it->pkt_len == 3 && it->pkt[0] == big[1],
	      "a packet can be replaced by a shorter one");
	a = item_allowed_reserve(it, 1);
	CHECK(a && it->peer->n_allowed == 1 && a == &it->peer->allowed[0] && !a->family,
	      "allowed_reserve(1): one zeroed entry");
	a->family = AF_INET;
	a->cidr = 32;
	a->addr[3] = 1;
	b = item_allowed_reserve(it, 999);
	for (i = 1; b && i < 1000; i++)
		zero = zero && !it->peer->allowed[i].family && !it->peer->allowed[i].cidr;
	CHECK(b == &it->peer->allowed[1] && it->peer->n_allowed == 1000 && zero,
	      "allowed_reserve(999): 1000 entries, the new ones zeroed");
	for (i = 1; b && i < 1000; i++)
		it->peer->allowed[i] = (struct wggwd_allowed_ip){ .family = AF_INET6, .cidr = 128,
								  .addr = { 0xfd, [14] = i >> 8, [15] = i } };
	CHECK(it->peer->allowed[0].family == AF_INET && it->peer->allowed[0].addr[3] == 1,
	      "growing keeps what was there");
	it->peer->n_allowed = 10;
	b = item_allowed_reserve(it, 2);
	for (i = 0; i < 10; i++)
		kept = kept && it->peer->allowed[i].family == (i ? AF_INET6 : AF_INET);
	CHECK(b == &it->peer->allowed[10] && it->peer->n_allowed == 12 && !b[0].family &&
	      !b[1].family && kept, "after n_allowed is lowered, reserve appends after it, zeroed");
	CHECK(!item_allowed_reserve(it, (size_t)UINT32_MAX) && it->peer->n_allowed == 12,
	      "an impossible reserve fails and changes nothing");
	item_release(it);
}

/* `ctl why`: a key's ring grows with its outcomes up to 8, newest first;
 * the least recently seen of 4096 keys makes room (its ring freed: ASan). */
static void test_why(void)
{
	struct wggwd_item it = { .size = sizeof(it), .op = WGGWD_OP_ADD };
	struct why_ent out[16];
	uint8_t key[WGGWD_KEY_LEN] = { 1 }, other[WGGWD_KEY_LEN] = { 2 };
	bool order = true;
	size_t i, got;

	why_reset();
	why_record(key, 1000, "pull", "noise", WGGWD_DROP, &it);
	got = why_get(key, out, 16);
	CHECK(got == 1 && out[0].real_ns == 1000 && !strcmp(out[0].stage, "noise"),
	      "why: a key seen once has one outcome");
	for (i = 2; i <= 11; i++)
		why_record(key, i * 1000, "pull", "noise", WGGWD_DROP, &it);
	got = why_get(key, out, 16);
	for (i = 0; i < got; i++)
		order = order && out[i].real_ns == (11 - i) * 1000;
	CHECK(got == 8 && order, "why: 11 outcomes keep the newest 8, newest first (%zu)", got);
	why_record(other, 5, "pull", "api", WGGWD_DROP, &it);
	for (i = 0; i < 3; i++)
		why_record(other, 6 + i, "pull", "api", WGGWD_DROP, &it);
	got = why_get(other, out, 16);
	CHECK(got == 4 && out[0].real_ns == 8 && out[3].real_ns == 5,
	      "why: a ring that grew (1, 2, 4) keeps its order (%zu: %llu..%llu)", got,
	      (unsigned long long)out[0].real_ns, (unsigned long long)out[got ? got - 1 : 0].real_ns);
	for (i = 0; i < 4096; i++) {
		uint8_t k[WGGWD_KEY_LEN] = { 3, (uint8_t)i, (uint8_t)(i >> 8) };

		why_record(k, 1, "pull", "noise", WGGWD_DROP, &it);
	}
	CHECK(!why_get(key, out, 16) && !why_get(other, out, 16),
	      "why: 4096 newer keys push the older ones out");
	why_reset();
	CHECK(!why_get(NULL, out, 16), "why: reset forgets everything");
}

/* Histograms: cumulative buckets, count and sum; bad bounds fall back. */
static void test_histograms(void)
{
	static const double bounds[] = { 0.001, 0.01, 0.1 };
	static const double bad[] = { 1, 1 };
	struct wggwd_hist *h = metrics_histogram("t.lat", bounds, 3);
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	metrics_observe(h, 0.0005);
	metrics_observe(h, 0.001); /* a bound is inclusive */
	metrics_observe(h, 0.05);
	metrics_observe(h, 3);
	metrics_observe(metrics_histogram("t.def", WGGWD_HIST_DEFAULT, 0), 0.002);
	metrics_observe(metrics_histogram("t.bad", bad, 2), 20);
	CHECK(metrics_histogram("t.lat", NULL, 0) == h, "a histogram is found again by name");
	f = open_memstream(&text, &len);
	metrics_dump(f, false);
	fclose(f);
	CHECK(strstr(text, "t.lat.le_0.001 2\nt.lat.le_0.01 2\nt.lat.le_0.1 3\n"
			   "t.lat.count 4\nt.lat.sum 3.0515\n") != NULL,
	      "buckets are cumulative; count and sum");
	CHECK(strstr(text, "t.def.le_0.0001 0\n") && strstr(text, "t.def.le_0.0025 1\n") &&
	      strstr(text, "t.def.le_10 1\n"), "WGGWD_HIST_DEFAULT: 100 us to 10 s");
	CHECK(strstr(text, "t.bad.le_0.0001 0\n") && strstr(text, "t.bad.le_10 0\n") &&
	      strstr(text, "t.bad.count 1\n"), "bounds not ascending: the default ones");
	free(text);
}

/* A 0 ms host timer fires on the next loop turn, after its I/O, even when
 * restarted from its own callback (libuv before 1.48 fires that one again
 * in the same pass): slices of work let a packet through between two. */
static struct {
	struct wggwd_timer *t, *other;
	int fired, other_fired, turns, io_between;
	bool io_seen;
	uv_prepare_t prep;
	uv_async_t io;
} nt;

static void nt_turn(uv_prepare_t *h)
{
	(void)h;
	nt.turns++;
}

static void nt_io(uv_async_t *h)
{
	(void)h;
	nt.io_seen = true;
}

static void nt_fire(void *arg)
{
	(void)arg;
	if (nt.io_seen)
		nt.io_between++;
	if (++nt.fired == 1)
		uv_async_send(&nt.io); /* served before the next slice */
	if (nt.fired == 2)
		host_services.timer_start(nt.other, 0, 0);
	if (nt.fired == 3)
		host_services.timer_stop(nt.other); /* never fires */
	if (nt.fired < 50)
		host_services.timer_start(nt.t, 0, 0);
}

static void nt_other(void *arg)
{
	(void)arg;
	nt.other_fired++;
}

static void test_next_turn(void)
{
	uv_loop_t loop;
	struct wggwd_inst *in = calloc(1, sizeof(*in));

	uv_loop_init(&loop);
	host_init(&loop);
	uv_prepare_init(&loop, &nt.prep);
	uv_prepare_start(&nt.prep, nt_turn);
	uv_unref((uv_handle_t *)&nt.prep);
	uv_async_init(&loop, &nt.io, nt_io);
	nt.t = host_services.timer_new(in, nt_fire, NULL);
	nt.other = host_services.timer_new(in, nt_other, NULL);
	host_services.timer_start(nt.t, 0, 0);
	while (nt.fired < 50 && nt.turns < 1000)
		uv_run(&loop, UV_RUN_ONCE); /* the host's post handle keeps it alive */
	CHECK(nt.fired == 50 && nt.turns >= 50,
	      "a 0 ms timer restarted from its callback fires once a loop turn (%d fires, %d turns)",
	      nt.fired, nt.turns);
	CHECK(nt.io_between == 49, "I/O is served between two of its fires (%d)", nt.io_between);
	CHECK(nt.other_fired == 0, "one stopped while waiting for its turn does not fire");
	host_services.timer_free(nt.t);
	host_services.timer_free(nt.other);
	uv_close((uv_handle_t *)&nt.prep, NULL);
	uv_close((uv_handle_t *)&nt.io, NULL);
	host_shutdown();
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&loop) == 0, "every handle closed");
	free(in);
}

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
	test_histograms();
	test_next_turn();
	metrics_reset();
	test_reasons();
	test_items();
	test_why();
	CHECK(core_hash("key", 3) == core_hash("key", 3) && core_hash("key", 3) != core_hash("kez", 3),
	      "hash: stable, and tells keys apart");
	printf("1..%d\n", n);
	return failed ? 1 : 0;
}
