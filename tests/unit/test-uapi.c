// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * installer-uapi's text protocol against hostile replies (issue 12): the
 * integer parser (range, no overflow: built with UBSan), reply_status,
 * parse_get, and the blocking get at start against a socket that sends
 * megabytes without the blank line that ends a reply (the read buffer is
 * bounded by max_reply). Includes uapi_text.c for its static functions.
 * TAP. Run: build/plugins/installer-uapi/test-uapi
 */
#include "uapi_text.c"

#include <pthread.h>
#include <signal.h>

static unsigned n_checks, n_failed;

WGGWD_PRINTF(2, 3) static bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	n_checks++;
	if (!ok)
		n_failed++;
	printf("%s %u - ", ok ? "ok" : "not ok", n_checks);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	return ok;
}

/* s with its newlines shown as \n (for test names) */
static const char *shown(const char *s)
{
	static char buf[96];
	size_t k = 0;

	for (; *s && k < sizeof(buf) - 3; s++) {
		if (*s == '\n') {
			buf[k++] = '\\';
			buf[k++] = 'n';
		} else {
			buf[k++] = *s;
		}
	}
	buf[k] = '\0';
	return buf;
}

/* ------------------------------------------------------------ parse_int */

static void test_parse_int(void)
{
	static const struct {
		const char *s;
		int ok;
		int64_t v;
	} t[] = {
		{ "0", 1, 0 },
		{ "-0", 1, 0 },
		{ "007", 1, 7 },
		{ "-22", 1, -22 },
		{ "9223372036854775807", 1, INT64_MAX },
		{ "-9223372036854775807", 1, -INT64_MAX },
		{ "-9223372036854775808", 1, INT64_MIN },  /* UBSan: -(int64_t)2^63 */
		{ "000000000000000000000000009223372036854775807", 1, INT64_MAX },
		{ "9223372036854775808", 0, 0 },           /* 2^63 */
		{ "-9223372036854775809", 0, 0 },
		{ "9999999999999999999", 0, 0 },
		{ "18446744073709551615", 0, 0 },          /* 2^64 - 1 */
		{ "18446744073709551616", 0, 0 },          /* 2^64: wraps to 0 */
		{ "-18446744073709551616", 0, 0 },
		{ "99999999999999999999999999999999999999", 0, 0 },
		{ "", 0, 0 },
		{ "-", 0, 0 },
		{ "+1", 0, 0 },
		{ "--1", 0, 0 },
		{ " 1", 0, 0 },
		{ "1 ", 0, 0 },
		{ "1a", 0, 0 },
		{ "0x10", 0, 0 },
		{ "1\n", 0, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int64_t v = 12345;
		int r = parse_int(t[i].s, strlen(t[i].s), &v);

		if (t[i].ok)
			check(r == 0 && v == t[i].v, "parse_int(\"%s\") = %lld", t[i].s,
			      (long long)t[i].v);
		else
			check(r == -EINVAL && v == 12345, "parse_int(\"%s\") is refused", shown(t[i].s));
	}
	/* the length is the bound, not a NUL */
	{
		int64_t v = 0;

		check(!parse_int("12345", 2, &v) && v == 12, "parse_int reads only n bytes");
	}
}

/* --------------------------------------------------------- reply_status */

static void test_reply_status(void)
{
	static const struct {
		const char *s;
		int want;
	} t[] = {
		{ "errno=0\n\n", 0 },
		{ "errno=-22\n\n", -22 },
		{ "errno=22\n\n", -22 },
		{ "listen_port=1\nerrno=0\n\n", 0 },
		{ "errno=4095\n\n", -4095 },
		{ "errno=4096\n\n", -EPROTO },
		{ "errno=-9223372036854775808\n\n", -EPROTO },
		{ "errno=9223372036854775808\n\n", -EPROTO },
		{ "errno=-9223372036854775809\n\n", -EPROTO },
		{ "errno=18446744073709551594\n\n", -EPROTO }, /* 2^64 - 22 */
		{ "errno=\n\n", -EPROTO },
		{ "errno=-\n\n", -EPROTO },
		{ "errno=x\n\n", -EPROTO },
		{ "errno=0x0\n\n", -EPROTO },
		{ "errno =0\n\n", -EPROTO },
		{ "xerrno=0\n\n", -EPROTO },
		{ "errno=0\n", -EPROTO },
		{ "errno=0", -EPROTO },
		{ "\n\n", -EPROTO },
		{ "\n", -EPROTO },
		{ "", -EPROTO },
		{ "errno=0\nerrno=5\n\n", -5 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		check(reply_status(t[i].s, strlen(t[i].s)) == t[i].want, "reply_status(\"%s\") = %d",
		      shown(t[i].s), t[i].want);
}

/* ------------------------------------------------------------ parse_get */

#define KEY_A "0101010101010101010101010101010101010101010101010101010101010101"

static int get(const char *s, struct wggwd_device *dev, struct wggwd_peer_state **v, size_t *n)
{
	memset(dev, 0, sizeof(*dev));
	dev->size = sizeof(*dev);
	*v = NULL;
	*n = 0;
	return parse_get(s, strlen(s), dev, v, n, NULL);
}

static void test_parse_get(void)
{
	static const struct {
		const char *name, *s;
	} bad[] = {
		{ "listen_port 2^63", "listen_port=9223372036854775808\nerrno=0\n\n" },
		{ "listen_port -1", "listen_port=-1\nerrno=0\n\n" },
		{ "listen_port 65536", "listen_port=65536\nerrno=0\n\n" },
		{ "rx_bytes 2^64", "public_key=" KEY_A "\nrx_bytes=18446744073709551616\nerrno=0\n\n" },
		{ "last_handshake_time_sec -2^63",
		  "public_key=" KEY_A "\nlast_handshake_time_sec=-9223372036854775808\nerrno=0\n\n" },
		{ "last_handshake_time_nsec 10^9",
		  "public_key=" KEY_A "\nlast_handshake_time_nsec=1000000000\nerrno=0\n\n" },
		{ "persistent_keepalive_interval 1e3",
		  "public_key=" KEY_A "\npersistent_keepalive_interval=1e3\nerrno=0\n\n" },
		{ "a line without '='", "public_key=" KEY_A "\ngarbage\nerrno=0\n\n" },
		{ "a short public key", "public_key=0101\nerrno=0\n\n" },
		{ "a public key that is not hex", "public_key=" KEY_A "0\nerrno=0\n\n" },
		{ "a short private key", "private_key=01\nerrno=0\n\n" },
	};
	struct wggwd_device dev;
	struct wggwd_peer_state *v;
	size_t i, n;
	int r;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = get(bad[i].s, &dev, &v, &n);
		check(r == -EPROTO && !v, "parse_get: %s is refused (EPROTO)", bad[i].name);
		free(v);
	}
	r = get("private_key=" KEY_A "\nlisten_port=51820\npublic_key=" KEY_A
		"\nendpoint=[fe80::1%eth0]:51820\nlast_handshake_time_sec=9223372036854775807"
		"\nlast_handshake_time_nsec=999999999\nrx_bytes=9223372036854775807"
		"\npersistent_keepalive_interval=9223372036854775807\nprotocol_version=1"
		"\nerrno=0\n\n", &dev, &v, &n);
	check(!r && n == 1 && dev.listen_port == 51820 && dev.has_private_key &&
	      v[0].last_handshake_sec == INT64_MAX && v[0].last_handshake_nsec == 999999999 &&
	      v[0].rx_bytes == (uint64_t)INT64_MAX && v[0].keepalive == 65535 &&
	      v[0].endpoint.sa.sa_family == AF_UNSPEC,
	      "parse_get: the largest values are read; a scoped endpoint stays unset");
	free(v);
	/* a last line with no newline, and text after the blank line */
	r = get("public_key=" KEY_A "\nerrno=0\n\npublic_key=" KEY_A "\n", &dev, &v, &n);
	check(!r && n == 1, "parse_get: stops at the blank line");
	free(v);
	r = get("public_key=" KEY_A "\nrx_bytes=5", &dev, &v, &n);
	check(!r && n == 1 && v[0].rx_bytes == 0, "parse_get: a line without its newline is not read");
	free(v);
}

/* ----------------------------------------------- the blocking get, bounded */

static char logbuf[4096];

WGGWD_PRINTF(3, 4) static void t_log(struct wggwd_inst *self, int level, const char *fmt, ...)
{
	va_list ap;

	(void)self;
	(void)level;
	va_start(ap, fmt);
	vsnprintf(logbuf, sizeof(logbuf), fmt, ap);
	va_end(ap);
	printf("# log: %s\n", logbuf);
}

static const struct wggwd_host host = {
	.size = sizeof(host), .log = t_log, .log_limited = t_log,
};

struct server {
	int lfd;
	const char *reply;     /* sent once after the request, then closed */
	size_t junk;           /* else: this many bytes of "a=b\n", no blank line */
	size_t sent;           /* how many bytes went out */
};

static void *serve(void *arg)
{
	struct server *sv = arg;
	char req[64], chunk[65536];
	ssize_t n;
	size_t i;
	int fd = accept(sv->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	n = read(fd, req, sizeof(req));
	(void)n;
	if (sv->reply) {
		n = write(fd, sv->reply, strlen(sv->reply));
		sv->sent = n > 0 ? (size_t)n : 0;
	} else {
		for (i = 0; i < sizeof(chunk); i += 4)
			memcpy(chunk + i, "a=b\n", 4);
		while (sv->sent < sv->junk) {
			n = write(fd, chunk, sizeof(chunk));
			if (n <= 0)
				break;
			sv->sent += n;
		}
	}
	close(fd);
	return NULL;
}

static int blocking_get(const char *dir, struct server *sv, uint64_t max_reply,
			struct wggwd_device *dev)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct conf cf = { .e = { .interface = "wgt0", .timeout_ms = 5000 } };
	struct ctx c = { .host = &host, .conf = &cf };
	size_t npeers = 0;
	pthread_t t;
	int ret;

#ifndef TEST_UAPI_OLD
	cf.max_reply = max_reply;
#else
	(void)max_reply;
#endif
	snprintf(c.path, sizeof(c.path), "%s/wgt0.sock", dir);
	unlink(c.path);
	memcpy(sa.sun_path, c.path, strlen(c.path) + 1);
	sv->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sv->lfd < 0 || bind(sv->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(sv->lfd, 1))
		return -errno;
	pthread_create(&t, NULL, serve, sv);
	memset(dev, 0, sizeof(*dev));
	dev->size = sizeof(*dev);
	logbuf[0] = '\0';
	ret = get_device_blocking(&c, dev, &npeers);
	pthread_join(t, NULL);
	close(sv->lfd);
	unlink(c.path);
	return ret;
}

static void test_blocking_get(void)
{
	char dir[] = "/tmp/wggwd-test-uapi-XXXXXX";
	struct wggwd_device dev;
	struct server sv;
	int r;

	if (!mkdtemp(dir)) {
		check(false, "mkdtemp: %s", strerror(errno));
		return;
	}
	/* 64 MiB of lines and never a blank one: refused at max_reply (1 MiB);
	 * what was read past it is what the socket buffers held */
	sv = (struct server){ .junk = 64u << 20 };
	r = blocking_get(dir, &sv, 1u << 20, &dev);
	check(r == -EMSGSIZE && sv.sent < (8u << 20) && strstr(logbuf, "max_reply"),
	      "get at start: a reply with no blank line is refused at max_reply (1 MiB; %zu bytes sent before the close)",
	      sv.sent);
	sv = (struct server){ .reply = "private_key=" KEY_A "\nlisten_port=51820\nerrno=0\n\n" };
	r = blocking_get(dir, &sv, 1u << 20, &dev);
	check(r == 0 && dev.listen_port == 51820 && dev.has_private_key,
	      "get at start: a good reply is read (port 51820)");
	sv = (struct server){ .reply = "listen_port=51820\nerrno=9223372036854775808\n\n" };
	r = blocking_get(dir, &sv, 1u << 20, &dev);
	check(r == -EPROTO, "get at start: errno=2^63 is a protocol error");
	sv = (struct server){ .reply = "listen_port=51820\nerrno=0\n" };
	r = blocking_get(dir, &sv, 1u << 20, &dev);
	check(r == -ECONNRESET, "get at start: a reply cut before its blank line fails (closed)");
	sv = (struct server){ .reply = "listen_port=99999999999999999999999\nerrno=0\n\n" };
	r = blocking_get(dir, &sv, 1u << 20, &dev);
	check(r == -EPROTO && dev.listen_port == 0, "get at start: a huge listen_port is a protocol error");
	rmdir(dir);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_parse_int();
	test_reply_status();
	test_parse_get();
	test_blocking_get();
	printf("1..%u\n", n_checks);
	return n_failed ? 1 : 0;
}
