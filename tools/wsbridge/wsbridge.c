// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * wggwd-wsbridge: carries a WireGuard client's UDP over one WebSocket to a
 * wggwd source-wsock relay.
 *
 *   wggwd-wsbridge -l 127.0.0.1:51821 -u ws://gw.example:8080/wg [-t TOKEN_FILE]
 *                  [-p 127.0.0.1:51820]
 *
 * Point the WireGuard peer's endpoint at the -l address. Each datagram is
 * one binary WebSocket message; what comes back goes to the WireGuard
 * client: the -p address, or else the first address a datagram came from
 * (datagrams from any other are dropped and counted as drop_foreign, so
 * another local program cannot take the gateway's traffic). The
 * connection is made again with backoff (100 ms doubling to 10 s) when it
 * drops or its connect and upgrade take over 10 s; datagrams are dropped
 * while it is down and when more than -q bytes (each frame counted with
 * its overhead) wait to be sent (WireGuard resends what matters). A
 * gateway whose pings leave more than -q + CTRL_QUEUE bytes of pongs
 * unread, or that sends a message in more than FRAG_MAX frames, is
 * dropped (overflow). Plain ws:// only: for TLS run a local TLS proxy
 * (stunnel, socat) and point -u at it. Counters are printed on SIGUSR1
 * and at exit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <uv.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define RESP_MAX 8192
#define BACKOFF_MIN 100
#define BACKOFF_MAX 10000
#define MSG_MAX 65536
#define TIMEOUT_MS 10000        /* connect + upgrade                     */
#define CTRL_QUEUE 16384        /* pongs beyond -q                       */
#define FRAG_MAX 32             /* frames of one data message            */
/* what a queued frame costs beyond its bytes: wslay's message, or our
 * write request (with malloc's overhead) */
#define MSG_COST 128
#define WREQ_COST (sizeof(struct wreq) + 32)

enum state { S_IDLE, S_RESOLVING, S_CONNECTING, S_HANDSHAKE, S_OPEN };

struct bridge {
	uv_loop_t *loop;
	uv_udp_t udp;
	uv_tcp_t *tcp;          /* NULL when down; freed in its close cb */
	uv_timer_t retry;
	uv_signal_t sig[3];
	enum state st;
	struct sockaddr_storage client;
	bool have_client;
	bool over;              /* the gateway went over its budget      */
	unsigned frags;         /* frames of the data message so far     */
	char host[256], port[8], path[512];
	char token[512];
	size_t queue;
	uint64_t backoff;
	bool verbose;
	char key[32], expect[32];
	char resp[RESP_MAX];
	size_t resp_len;
	wslay_event_context_ptr ws;
	const uint8_t *in;
	size_t in_len;
	size_t wq_bytes, wq_reqs;
	uint8_t rbuf[MSG_MAX];
	uint64_t up, down, drop_down, drop_full, drop_foreign, overflow, connects;
};

struct wreq {
	uv_write_t req;
	struct bridge *b;
	size_t len;
	uint8_t data[];
};

static void schedule(struct bridge *b);
static void feed(struct bridge *b, const uint8_t *p, size_t len);

static void logf_(struct bridge *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct bridge *b, const char *fmt, ...)
{
	va_list ap;

	(void)b;
	va_start(ap, fmt);
	fprintf(stderr, "wsbridge: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void on_tcp_closed(uv_handle_t *h)
{
	free(h);
}

/* The connection is gone (or failed): tear down, try again later. */
static void drop(struct bridge *b, const char *why)
{
	if (b->st == S_IDLE)
		return;
	logf_(b, "connection down: %s; again in %llu ms", why, (unsigned long long)b->backoff);
	if (b->tcp) {
		b->tcp->data = NULL;
		uv_close((uv_handle_t *)b->tcp, on_tcp_closed);
		b->tcp = NULL;
	}
	if (b->ws) {
		wslay_event_context_free(b->ws);
		b->ws = NULL;
	}
	b->st = S_IDLE;
	b->wq_bytes = b->wq_reqs = 0;
	b->over = false;
	b->frags = 0;
	schedule(b);
}

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct bridge *b = w->b;
	bool current = req->handle->data != NULL;

	if (current) {
		b->wq_bytes -= w->len;
		b->wq_reqs--;
	}
	free(w);
	if (!current)
		return;
	if (status < 0) {
		drop(b, uv_strerror(status));
		return;
	}
	if (b->ws && wslay_event_want_write(b->ws) && wslay_event_send(b->ws))
		drop(b, "send");
}

static int tcp_write(struct bridge *b, const void *data, size_t len)
{
	struct wreq *w = malloc(sizeof(*w) + len);
	uv_buf_t buf;
	int ret;

	if (!w)
		return -ENOMEM;
	memcpy(w->data, data, len);
	w->b = b;
	w->len = len;
	buf = uv_buf_init((char *)w->data, len);
	ret = uv_write(&w->req, (uv_stream_t *)b->tcp, &buf, 1, on_write);
	if (ret) {
		free(w);
		return ret;
	}
	b->wq_bytes += len;
	b->wq_reqs++;
	return 0;
}

/* Bytes, with each frame's overhead, queued toward the gateway. */
static size_t queued(const struct bridge *b)
{
	size_t n = b->wq_bytes + b->wq_reqs * WREQ_COST;

	if (b->ws)
		n += wslay_event_get_queued_msg_length(b->ws) +
		     wslay_event_get_queued_msg_count(b->ws) * MSG_COST;
	return n;
}

/* ------------------------------------------------------------ WebSocket */

static ssize_t ws_recv_cb(wslay_event_context_ptr ws, uint8_t *buf, size_t len, int flags, void *ud)
{
	struct bridge *b = ud;

	(void)flags;
	if (!b->in_len) {
		wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (len > b->in_len)
		len = b->in_len;
	memcpy(buf, b->in, len);
	b->in += len;
	b->in_len -= len;
	return len;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ws, const uint8_t *data, size_t len, int flags,
			  void *ud)
{
	struct bridge *b = ud;
	uv_buf_t buf;
	int n = 0;

	(void)flags;
	if (b->wq_bytes + b->wq_reqs * WREQ_COST >= b->queue) {
		wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (!b->wq_bytes) {
		buf = uv_buf_init((char *)data, len);
		n = uv_try_write((uv_stream_t *)b->tcp, &buf, 1);
		if (n == UV_EAGAIN)
			n = 0;
		if (n < 0) {
			wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
			return -1;
		}
	}
	if ((size_t)n < len && tcp_write(b, data + n, len - n)) {
		wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return len;
}

static int ws_genmask_cb(wslay_event_context_ptr ws, uint8_t *buf, size_t len, void *ud)
{
	(void)ws;
	(void)ud;
	return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

static void ws_on_msg(wslay_event_context_ptr ws, const struct wslay_event_on_msg_recv_arg *a,
		      void *ud)
{
	struct bridge *b = ud;
	uv_buf_t buf;

	if (a->opcode == WSLAY_PING && queued(b) > b->queue + CTRL_QUEUE) {
		/* its pongs pile up unread: feed() drops the connection */
		b->over = true;
		wslay_event_shutdown_read(ws);
		return;
	}
	if (a->opcode != WSLAY_BINARY_FRAME) {
		if (a->opcode == WSLAY_CONNECTION_CLOSE && b->verbose)
			logf_(b, "server closed with %u", a->status_code);
		return;
	}
	if (!b->have_client) {
		b->drop_down++;
		return;
	}
	buf = uv_buf_init((char *)a->msg, a->msg_length);
	if (uv_udp_try_send(&b->udp, &buf, 1, (const struct sockaddr *)&b->client) < 0)
		b->drop_down++;
	else
		b->down++;
}

/* A data message of many tiny frames costs wslay a chunk each. */
static void ws_on_frame(wslay_event_context_ptr ws,
			const struct wslay_event_on_frame_recv_start_arg *a, void *ud)
{
	struct bridge *b = ud;

	if (a->opcode & 0x8)
		return;
	b->frags = a->opcode == WSLAY_CONTINUATION_FRAME ? b->frags + 1 : 1;
	if (b->frags > FRAG_MAX) {
		b->over = true;
		wslay_event_shutdown_read(ws);
	}
}

static const struct wslay_event_callbacks ws_cbs = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.genmask_callback = ws_genmask_cb,
	.on_frame_recv_start_callback = ws_on_frame,
	.on_msg_recv_callback = ws_on_msg,
};

static void ws_flush(struct bridge *b)
{
	if (!b->ws)
		return;
	if (wslay_event_want_write(b->ws) && wslay_event_send(b->ws)) {
		drop(b, "send");
		return;
	}
	if (!wslay_event_want_read(b->ws) && !wslay_event_want_write(b->ws))
		drop(b, "closed");
}

/* ------------------------------------------------------------ handshake */

static bool header_is(const char *h, const char *name, const char *val)
{
	size_t n = strlen(name);
	const char *v;

	if (strncasecmp(h, name, n) || h[n] != ':')
		return false;
	for (v = h + n + 1; *v == ' ' || *v == '\t'; v++)
		;
	return !strncasecmp(v, val, strlen(val)) &&
	       (v[strlen(val)] == '\r' || v[strlen(val)] == ' ');
}

/* The server's answer to the upgrade: 101 with our accept key. */
static int check_response(struct bridge *b, const char *r)
{
	const char *l;
	bool upgrade = false, conn = false, accept = false;

	if (strncmp(r, "HTTP/1.1 101 ", 13)) {
		int code = 0;

		sscanf(r, "HTTP/1.%*d %d", &code);
		logf_(b, "upgrade refused: HTTP %d", code);
		return -EPROTO;
	}
	for (l = strstr(r, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
		const char *h = l + 2;

		if (header_is(h, "Upgrade", "websocket"))
			upgrade = true;
		else if (header_is(h, "Connection", "upgrade"))
			conn = true;
		else if (header_is(h, "Sec-WebSocket-Accept", b->expect))
			accept = true;
	}
	if (!upgrade || !conn || !accept) {
		logf_(b, "bad upgrade response (upgrade %d, connection %d, accept %d)", upgrade,
		      conn, accept);
		return -EPROTO;
	}
	return 0;
}

static void handshake_data(struct bridge *b, const uint8_t *p, size_t len)
{
	char *end;
	size_t hl, take = len;

	if (take > RESP_MAX - 1 - b->resp_len)
		take = RESP_MAX - 1 - b->resp_len;
	memcpy(b->resp + b->resp_len, p, take);
	b->resp_len += take;
	b->resp[b->resp_len] = 0;
	end = strstr(b->resp, "\r\n\r\n");
	if (!end) {
		if (b->resp_len >= RESP_MAX - 1)
			drop(b, "upgrade response too long");
		return;
	}
	hl = end + 4 - b->resp;
	if (check_response(b, b->resp)) {
		drop(b, "handshake");
		return;
	}
	if (wslay_event_context_client_init(&b->ws, &ws_cbs, b)) {
		drop(b, "out of memory");
		return;
	}
	wslay_event_config_set_max_recv_msg_length(b->ws, MSG_MAX);
	uv_timer_stop(&b->retry);
	b->st = S_OPEN;
	b->backoff = BACKOFF_MIN;
	b->connects++;
	logf_(b, "connected to ws://%s:%s%s", b->host, b->port, b->path);
	/* what followed the headers: its first frames */
	if (b->resp_len > hl)
		feed(b, (const uint8_t *)b->resp + hl, b->resp_len - hl);
	if (take < len && b->st == S_OPEN)
		feed(b, p + take, len - take);
}

static void feed(struct bridge *b, const uint8_t *p, size_t len)
{
	b->in = p;
	b->in_len = len;
	if (wslay_event_recv(b->ws)) {
		b->in_len = 0;
		drop(b, "receive");
		return;
	}
	b->in_len = 0;
	if (b->over) {
		b->overflow++;
		drop(b, "the gateway went over its queue (pongs it does not read, or a message in too many frames)");
		return;
	}
	ws_flush(b);
}

static void tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct bridge *b = h->loop->data;

	(void)hint;
	*buf = uv_buf_init((char *)b->rbuf, sizeof(b->rbuf));
}

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct bridge *b = s->loop->data;

	if (!s->data)
		return;
	if (n < 0) {
		drop(b, n == UV_EOF ? "closed by the server" : uv_strerror(n));
		return;
	}
	if (!n)
		return;
	if (b->st == S_HANDSHAKE)
		handshake_data(b, (const uint8_t *)buf->base, n);
	else if (b->st == S_OPEN)
		feed(b, (const uint8_t *)buf->base, n);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct bridge *b = req->data;
	uint8_t raw[16];
	struct sha1_ctx s;
	uint8_t d[SHA1_DIGEST_SIZE];
	char buf[2048];
	int n;

	if (!req->handle->data) {
		free(req);
		return;
	}
	free(req);
	if (status < 0) {
		drop(b, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(b->tcp, 1);
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
		drop(b, "getrandom");
		return;
	}
	base64_encode_raw(b->key, sizeof(raw), raw);
	b->key[BASE64_ENCODE_RAW_LENGTH(sizeof(raw))] = 0;
	sha1_init(&s);
	sha1_update(&s, strlen(b->key), (const uint8_t *)b->key);
	sha1_update(&s, strlen(WS_GUID), (const uint8_t *)WS_GUID);
	sha1_digest(&s, sizeof(d), d);
	base64_encode_raw(b->expect, sizeof(d), d);
	b->expect[BASE64_ENCODE_RAW_LENGTH(sizeof(d))] = 0;
	n = snprintf(buf, sizeof(buf),
		     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
		     b->path, b->host, b->port, b->key,
		     b->token[0] ? "Authorization: Bearer " : "", b->token, b->token[0] ? "\r\n" : "");
	b->resp_len = 0;
	b->st = S_HANDSHAKE;
	if (tcp_write(b, buf, n) || uv_read_start((uv_stream_t *)b->tcp, tcp_alloc, tcp_read))
		drop(b, "write");
	explicit_bzero(buf, sizeof(buf));
}

static void on_stalled(uv_timer_t *t)
{
	drop(t->data, "connect and upgrade took too long");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct bridge *b = req->data;
	uv_connect_t *cr;
	int ret;

	free(req);
	if (status < 0) {
		drop(b, uv_strerror(status));
		return;
	}
	b->tcp = calloc(1, sizeof(*b->tcp));
	cr = calloc(1, sizeof(*cr));
	if (!b->tcp || !cr) {
		free(b->tcp);
		free(cr);
		b->tcp = NULL;
		uv_freeaddrinfo(res);
		drop(b, "out of memory");
		return;
	}
	uv_tcp_init(b->loop, b->tcp);
	b->tcp->data = b;
	cr->data = b;
	b->st = S_CONNECTING;
	ret = uv_tcp_connect(cr, b->tcp, res->ai_addr, on_connect);
	uv_freeaddrinfo(res);
	if (ret) {
		free(cr);
		drop(b, uv_strerror(ret));
		return;
	}
	uv_timer_start(&b->retry, on_stalled, TIMEOUT_MS, 0);
}

static void connect_now(uv_timer_t *t)
{
	struct bridge *b = t->data;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	uv_getaddrinfo_t *req = calloc(1, sizeof(*req));
	int ret;

	if (!req) {
		schedule(b);
		return;
	}
	req->data = b;
	b->st = S_RESOLVING;
	ret = uv_getaddrinfo(b->loop, req, on_resolved, b->host, b->port, &hints);
	if (ret) {
		free(req);
		drop(b, uv_strerror(ret));
	}
}

static void schedule(struct bridge *b)
{
	uv_timer_start(&b->retry, connect_now, b->backoff, 0);
	b->backoff *= 2;
	if (b->backoff > BACKOFF_MAX)
		b->backoff = BACKOFF_MAX;
}

/* ------------------------------------------------------------------ UDP */

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
	const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;

	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return a4->sin_port == b4->sin_port && a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	return a6->sin6_port == b6->sin6_port &&
	       !memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr));
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)sa, h, sizeof(h));
		snprintf(buf, len, "[%s]:%u", h, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	} else {
		uv_ip4_name((const struct sockaddr_in *)sa, h, sizeof(h));
		snprintf(buf, len, "%s:%u", h, ntohs(((const struct sockaddr_in *)sa)->sin_port));
	}
}

static void udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct bridge *b = h->data;

	(void)hint;
	*buf = uv_buf_init((char *)b->rbuf, sizeof(b->rbuf));
}

static void udp_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
		     unsigned flags)
{
	struct bridge *b = h->data;
	struct wslay_event_msg m = { .opcode = WSLAY_BINARY_FRAME };

	(void)flags;
	if (n <= 0 || !from)
		return;
	if (!b->have_client) {
		char a[INET6_ADDRSTRLEN + 8];

		memcpy(&b->client, from, from->sa_family == AF_INET6 ?
		       sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
		b->have_client = true;
		addr_str(from, a, sizeof(a));
		logf_(b, "WireGuard client is %s; datagrams from any other address are dropped", a);
	} else if (!same_addr(from, (const struct sockaddr *)&b->client)) {
		b->drop_foreign++;
		return;
	}
	if (b->st != S_OPEN || !b->ws) {
		b->drop_down++;
		return;
	}
	if (queued(b) + n + MSG_COST > b->queue) {
		b->drop_full++;
		return;
	}
	m.msg = (const uint8_t *)buf->base;
	m.msg_length = n;
	if (wslay_event_queue_msg(b->ws, &m)) {
		b->drop_full++;
		return;
	}
	b->up++;
	ws_flush(b);
}

/* ------------------------------------------------------------------ main */

static void stats(struct bridge *b)
{
	fprintf(stderr, "wsbridge: connects %llu up %llu down %llu drop_down %llu drop_full %llu "
		"drop_foreign %llu overflow %llu\n",
		(unsigned long long)b->connects, (unsigned long long)b->up,
		(unsigned long long)b->down, (unsigned long long)b->drop_down,
		(unsigned long long)b->drop_full, (unsigned long long)b->drop_foreign,
		(unsigned long long)b->overflow);
}

static void on_signal(uv_signal_t *s, int sig)
{
	struct bridge *b = s->data;

	stats(b);
	if (sig != SIGUSR1)
		exit(0);
}

static int parse_url(struct bridge *b, const char *url)
{
	const char *p, *slash, *colon;
	size_t hl;

	if (strncmp(url, "ws://", 5))
		return -EINVAL;
	p = url + 5;
	slash = strchr(p, '/');
	if (!slash)
		slash = p + strlen(p);
	if (*p == '[') {
		const char *rb = memchr(p, ']', slash - p);

		if (!rb)
			return -EINVAL;
		hl = rb - p - 1;
		if (hl >= sizeof(b->host))
			return -EINVAL;
		memcpy(b->host, p + 1, hl);
		b->host[hl] = 0;
		colon = rb + 1 < slash && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', slash - p);
		hl = (colon ? colon : slash) - p;
		if (!hl || hl >= sizeof(b->host))
			return -EINVAL;
		memcpy(b->host, p, hl);
		b->host[hl] = 0;
	}
	if (colon) {
		hl = slash - colon - 1;
		if (!hl || hl >= sizeof(b->port))
			return -EINVAL;
		memcpy(b->port, colon + 1, hl);
		b->port[hl] = 0;
	} else {
		strcpy(b->port, "80");
	}
	snprintf(b->path, sizeof(b->path), "%s", *slash ? slash : "/");
	return 0;
}

static int read_token(struct bridge *b, const char *path)
{
	struct stat st;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		return -errno;
	if (st.st_mode & 077) {
		close(fd);
		fprintf(stderr, "wsbridge: %s: readable by group or others; chmod 600\n", path);
		return -EPERM;
	}
	n = read(fd, b->token, sizeof(b->token) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	while (n && (b->token[n - 1] == '\n' || b->token[n - 1] == '\r' || b->token[n - 1] == ' '))
		n--;
	b->token[n] = 0;
	return n ? 0 : -EINVAL;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: wggwd-wsbridge -l ADDR:PORT -u ws://HOST[:PORT]/PATH [-p ADDR:PORT] [-t TOKEN_FILE]\n"
		"                      [-q BYTES] [-v]\n"
		"  -l, --listen  local UDP address the WireGuard client sends to (its peer endpoint)\n"
		"  -u, --url     the gateway's source-wsock URL (ws:// only; TLS through a local proxy)\n"
		"  -p, --peer    the WireGuard client's own UDP address (its ListenPort); without it,\n"
		"                the first address a datagram comes from. Others are dropped\n"
		"  -t, --token-file  file holding the bearer token (mode 0600)\n"
		"  -q, --queue   bytes queued toward the gateway at most (default 262144)\n");
	exit(2);
}

/* "1.2.3.4:5" or "[::1]:5" */
static int parse_addr(const char *s, struct sockaddr_storage *sa)
{
	char host[64];
	int port;

	memset(sa, 0, sizeof(*sa));
	if (s[0] == '[')
		return sscanf(s, "[%63[^]]]:%d", host, &port) != 2 || port < 0 || port > 65535 ||
		       uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) ? -EINVAL : 0;
	return sscanf(s, "%63[^:]:%d", host, &port) != 2 || port < 0 || port > 65535 ||
	       uv_ip4_addr(host, port, (struct sockaddr_in *)sa) ? -EINVAL : 0;
}

int main(int argc, char **argv)
{
	static struct bridge b;
	static const struct option lopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "url", required_argument, NULL, 'u' },
		{ "peer", required_argument, NULL, 'p' },
		{ "token-file", required_argument, NULL, 't' },
		{ "queue", required_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sockaddr_storage la;
	const char *listen = NULL, *url = NULL, *token = NULL, *peer = NULL;
	int opt, ret, sigs[3] = { SIGINT, SIGTERM, SIGUSR1 }, i;

	b.queue = 256 * 1024;
	while ((opt = getopt_long(argc, argv, "l:u:p:t:q:vh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'l': listen = optarg; break;
		case 'u': url = optarg; break;
		case 'p': peer = optarg; break;
		case 't': token = optarg; break;
		case 'q': b.queue = strtoul(optarg, NULL, 0); break;
		case 'v': b.verbose = true; break;
		default: usage();
		}
	}
	if (!listen || !url || b.queue < 2048)
		usage();
	if (peer) {
		if (parse_addr(peer, &b.client)) {
			fprintf(stderr, "wsbridge: bad --peer %s (ADDR:PORT)\n", peer);
			return 2;
		}
		b.have_client = true;
	}
	if (parse_url(&b, url)) {
		fprintf(stderr, "wsbridge: bad URL %s (ws://host[:port]/path)\n", url);
		return 2;
	}
	if (token && (ret = read_token(&b, token))) {
		fprintf(stderr, "wsbridge: token file %s: %s\n", token, strerror(-ret));
		return 1;
	}
	if (parse_addr(listen, &la))
		usage();
	b.loop = uv_default_loop();
	b.loop->data = &b;
	uv_udp_init(b.loop, &b.udp);
	b.udp.data = &b;
	ret = uv_udp_bind(&b.udp, (struct sockaddr *)&la, 0);
	if (!ret)
		ret = uv_udp_recv_start(&b.udp, udp_alloc, udp_recv);
	if (ret) {
		fprintf(stderr, "wsbridge: UDP %s: %s\n", listen, uv_strerror(ret));
		return 1;
	}
	for (i = 0; i < 3; i++) {
		uv_signal_init(b.loop, &b.sig[i]);
		b.sig[i].data = &b;
		uv_signal_start(&b.sig[i], on_signal, sigs[i]);
	}
	uv_timer_init(b.loop, &b.retry);
	b.retry.data = &b;
	b.backoff = BACKOFF_MIN;
	connect_now(&b.retry);
	fprintf(stderr, "wsbridge: UDP %s <-> ws://%s:%s%s\n", listen, b.host, b.port, b.path);
	return uv_run(b.loop, UV_RUN_DEFAULT);
}
