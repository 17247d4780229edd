// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * cp-http: a small, fast control plane for the benches (bench/jit.py), so
 * that resolver-http's cost is not the test API's (a Python server). One
 * thread, one epoll loop, answers rendered ahead of time.
 *
 *   cp-http [-l ADDR] [-p PORT] PEERS.json
 *
 * PEERS.json: {"<base64 key>": {answer}, ...} or [{answer}, ...] (each with
 * its "public_key"); the answers as tests/integration/http_api.py gives
 * them (README: Control-plane answer).
 *
 *   GET .../<URL-encoded base64 key>  200 the key's answer, 404 unknown
 *   anything else                     400/405 and the connection closed
 *
 * HTTP/1.1 keep-alive (HTTP/1.0 and "Connection: close" close), pipelined
 * requests answered in order. Prints its URL (resolver-http's `url`) on
 * stdout; when stdin closes, or on SIGTERM/SIGINT, prints
 * `connections N requests N not_found N bad N answer_us_p50 X
 * answer_us_p99 Y` (the time from the loop's wake-up to the answer
 * written) and exits. Bounded: MAX_CONNS connections (more are closed at
 * once), a request head of at most HEAD_MAX bytes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define MAX_CONNS	1024
#define HEAD_MAX	8192
#define KEY_MAX		128
#define MAX_SAMPLES	(1 << 16)

struct answer {
	char key[KEY_MAX];
	char *resp;	/* the whole response: status line, headers, body */
	size_t len;
};

struct conn {
	int fd;
	uint32_t events;	/* what epoll watches */
	bool closing;		/* close once out is written */
	const char *out;	/* the pending answer (static or in answers[]) */
	size_t out_len;
	size_t in_len;
	char in[HEAD_MAX + 1];
};

static struct answer *answers;
static size_t n_answers;
static int ep;
static volatile sig_atomic_t quit;
static unsigned long n_conns, n_reqs, n_notfound, n_bad, n_refused, n_live;
static uint32_t samples[MAX_SAMPLES];	/* ns, the first MAX_SAMPLES answers */
static size_t n_samples;
static uint64_t woke_ns;

static const char resp_404[] = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
	"Content-Length: 24\r\n\r\n{\"error\": \"unknown key\"}";
static const char resp_400[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
	"Connection: close\r\n\r\n";
static const char resp_405[] = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"
	"Content-Length: 0\r\nConnection: close\r\n\r\n";
static const char resp_431[] = "HTTP/1.1 431 Request Header Fields Too Large\r\n"
	"Content-Length: 0\r\nConnection: close\r\n\r\n";

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_answer(const void *a, const void *b)
{
	return strcmp(((const struct answer *)a)->key, ((const struct answer *)b)->key);
}

static int add_answer(const char *key, json_t *v)
{
	struct answer *a = &answers[n_answers];
	char *body;
	int n;

	if (!key || strlen(key) >= KEY_MAX || !json_is_object(v))
		return -1;
	body = json_dumps(v, JSON_COMPACT);
	if (!body)
		return -1;
	n = asprintf(&a->resp, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
	free(body);
	if (n < 0)
		return -1;
	strcpy(a->key, key);
	a->len = n;
	n_answers++;
	return 0;
}

static int load_answers(const char *path)
{
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err), *v;
	const char *key;
	size_t i, n;

	if (!root) {
		fprintf(stderr, "cp-http: %s:%d: %s\n", path, err.line, err.text);
		return -1;
	}
	n = json_is_object(root) ? json_object_size(root) : json_array_size(root);
	answers = calloc(n ? n : 1, sizeof(*answers));
	if (!answers || (!json_is_object(root) && !json_is_array(root)))
		goto bad;
	if (json_is_object(root)) {
		json_object_foreach(root, key, v)
			if (add_answer(key, v))
				goto bad;
	} else {
		json_array_foreach(root, i, v)
			if (add_answer(json_string_value(json_object_get(v, "public_key")), v))
				goto bad;
	}
	qsort(answers, n_answers, sizeof(*answers), cmp_answer);
	for (i = 1; i < n_answers; i++)
		if (!strcmp(answers[i - 1].key, answers[i].key))
			goto bad;
	json_decref(root);
	return 0;
bad:
	fprintf(stderr, "cp-http: %s: expected {key: answer} or [answer with public_key], "
		"keys shorter than %d and each once\n", path, KEY_MAX);
	json_decref(root);
	return -1;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The answer to the path's last segment, URL-decoded; NULL: unknown, and
 * *bad if the escape is broken. */
static const struct answer *lookup(const char *path, size_t len, bool *bad)
{
	struct answer k;
	const char *s = path + len;
	size_t n = 0;

	while (s > path && s[-1] != '/')
		s--;
	for (; s < path + len && *s != '?'; s++) {
		char ch = *s;

		if (ch == '%') {
			int hi, lo;

			if (s + 2 >= path + len || (hi = hexval(s[1])) < 0 || (lo = hexval(s[2])) < 0) {
				*bad = true;
				return NULL;
			}
			ch = (char)(hi << 4 | lo);
			s += 2;
		}
		if (n + 1 >= KEY_MAX || !ch)
			return NULL;
		k.key[n++] = ch;
	}
	k.key[n] = '\0';
	return bsearch(&k, answers, n_answers, sizeof(*answers), cmp_answer);
}

/* One request from the head of c->in, if whole: its answer set as c->out.
 * 1: answered, 0: more bytes needed. */
static int parse(struct conn *c)
{
	char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4), *p, *eol, *sp;
	const struct answer *a = NULL;
	size_t hlen;
	bool bad = false;

	if (!end) {
		if (c->in_len < HEAD_MAX)
			return 0;
		n_bad++;
		c->out = resp_431;
		c->out_len = sizeof(resp_431) - 1;
		c->closing = true;
		return 1;
	}
	hlen = end + 4 - c->in;
	end[2] = '\0'; /* the head, each line cut at its "\r\n" below */
	for (p = c->in; *p; p = eol + 2) {
		eol = strstr(p, "\r\n");
		*eol = '\0';
		if (p == c->in)
			continue;
		if (!strncasecmp(p, "Connection:", 11) && strcasestr(p, "close"))
			c->closing = true;
		if ((!strncasecmp(p, "Content-Length:", 15) && atol(p + 15)) ||
		    !strncasecmp(p, "Transfer-Encoding:", 18))
			bad = true; /* no body on a GET */
	}
	n_reqs++;
	if (strncmp(c->in, "GET ", 4)) {
		n_bad++;
		c->out = resp_405;
		c->out_len = sizeof(resp_405) - 1;
		c->closing = true;
		goto done;
	}
	p = c->in + 4;
	sp = strchr(p, ' ');
	if (!sp || strncmp(sp + 1, "HTTP/1.", 7))
		bad = true;
	else if (sp[8] == '0')
		c->closing = true; /* HTTP/1.0: no keep-alive here */
	if (!bad)
		a = lookup(p, sp - p, &bad);
	if (bad) {
		n_bad++;
		c->out = resp_400;
		c->out_len = sizeof(resp_400) - 1;
		c->closing = true;
	} else if (a) {
		c->out = a->resp;
		c->out_len = a->len;
	} else {
		n_notfound++;
		c->out = resp_404;
		c->out_len = sizeof(resp_404) - 1;
	}
done:
	c->in_len -= hlen;
	memmove(c->in, c->in + hlen, c->in_len);
	return 1;
}

static void conn_close(struct conn *c)
{
	close(c->fd); /* leaves the epoll set */
	free(c);
	n_live--;
}

static void watch(struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events != events && !epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev))
		c->events = events;
}

/* After a read or write of n: false to go on (n < 0: EINTR, again),
 * true when the connection waits for events or is closed. */
static bool io_stop(struct conn *c, ssize_t n, uint32_t events)
{
	if (n > 0 || (n < 0 && errno == EINTR))
		return false;
	if (n < 0 && errno == EAGAIN)
		watch(c, events);
	else
		conn_close(c);
	return true;
}

/* Write what is pending, answer what has come, read more: until it would
 * block (then watch for that) or the connection is done. */
static void conn_run(struct conn *c)
{
	ssize_t n;

	for (;;) {
		while (c->out_len) {
			n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
			if (io_stop(c, n, EPOLLOUT))
				return;
			if (n < 0)
				continue;
			c->out += n;
			c->out_len -= n;
			if (!c->out_len && n_samples < MAX_SAMPLES)
				samples[n_samples++] = (uint32_t)(now_ns() - woke_ns);
		}
		if (c->closing) {
			conn_close(c);
			return;
		}
		if (parse(c))
			continue;
		n = read(c->fd, c->in + c->in_len, HEAD_MAX - c->in_len);
		if (io_stop(c, n, EPOLLIN))
			return;
		if (n > 0)
			c->in_len += n;
	}
}

static void on_accept(int lfd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct conn *c;
	int fd, one = 1;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (n_live >= MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
			n_refused++;
			close(fd);
			continue;
		}
		n_conns++;
		n_live++;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
			conn_close(c);
			continue;
		}
		conn_run(c);
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_us(double p)
{
	if (!n_samples)
		return 0;
	return samples[(size_t)(p / 100 * (n_samples - 1) + 0.5)] / 1e3;
}

static void on_signal(int sig)
{
	(void)sig;
	quit = 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sigaction act = { .sa_handler = on_signal };
	struct epoll_event ev = { .events = EPOLLIN }, evs[64];
	socklen_t salen = sizeof(sa);
	char addr[INET_ADDRSTRLEN];
	int lfd, opt, one = 1, i, n;

	while ((opt = getopt(argc, argv, "l:p:")) != -1) {
		if (opt == 'l' && inet_pton(AF_INET, optarg, &sa.sin_addr) == 1)
			continue;
		if (opt == 'p' && atoi(optarg) >= 0 && atoi(optarg) < 65536) {
			sa.sin_port = htons(atoi(optarg));
			continue;
		}
		optind = argc + 1;
		break;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: cp-http [-l IPV4] [-p PORT] PEERS.json\n");
		return 2;
	}
	if (load_answers(argv[optind]))
		return 1;
	sigaction(SIGTERM, &act, NULL); /* no SA_RESTART: epoll_wait returns */
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || ep < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1024) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen)) {
		perror("cp-http: listen");
		return 1;
	}
	ev.data.ptr = &lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.ptr = NULL; /* stdin: its end is ours (not a pipe or tty: signals only) */
	epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
	printf("http://%s:%d/v1/peers/{public_key}\n",
	       inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof(addr)), ntohs(sa.sin_port));
	fflush(stdout);
	while (!quit) {
		n = epoll_wait(ep, evs, 64, -1);
		woke_ns = now_ns();
		for (i = 0; i < n; i++) {
			char buf[256];

			if (evs[i].data.ptr == &lfd)
				on_accept(lfd);
			else if (!evs[i].data.ptr)
				quit = read(0, buf, sizeof(buf)) <= 0;
			else
				conn_run(evs[i].data.ptr);
		}
	}
	qsort(samples, n_samples, sizeof(*samples), cmp_u32);
	printf("connections %lu requests %lu not_found %lu bad %lu refused %lu "
	       "answer_us_p50 %.1f answer_us_p99 %.1f\n", n_conns, n_reqs, n_notfound, n_bad,
	       n_refused, pct_us(50), pct_us(99));
	return 0;
}
