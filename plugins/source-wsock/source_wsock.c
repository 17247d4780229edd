// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-wsock: WireGuard carried over WebSockets, with JIT peers.
 *
 * A WebSocket server on the daemon's loop (plain TCP: no TLS here; run it
 * behind a TLS-terminating proxy such as nginx, haproxy or caddy, which
 * forwards the upgrade to `listen`). Each binary message is one WireGuard
 * datagram. For every WebSocket the relay owns a UDP socket connected to
 * the local WireGuard port and forwards both ways; what WireGuard sends to
 * that socket goes back out over the same WebSocket.
 *
 * A client's handshake initiation (148 bytes, type 1) is not forwarded at
 * once: it is emitted into the pipeline (transport WGGWD_TR_WSOCK, src =
 * the client's TCP address, endpoint = the relay socket's local address,
 * so the installed peer's replies come back to the relay) and held in the
 * item. In `done`, if the peer is in place (CONTINUE: installed or
 * unchanged; DONE: a store knew it was installed) the initiation is sent
 * through the relay socket and the interface answers it as responder;
 * otherwise it is dropped. Everything else is forwarded at once.
 *
 * Libraries: wslay for WebSocket framing; http-parser (Debian's
 * libhttp-parser, the parser nodejs used before llhttp; llhttp is not
 * packaged in Debian 12) for the HTTP/1.1 upgrade request, with the
 * WebSocket rules (RFC 6455 4.2.1) checked here on top; nettle for the
 * SHA-1 of Sec-WebSocket-Accept (libsodium has no SHA-1; nettle is small,
 * C-only and already on every Debian system through GnuTLS, where
 * libcrypto would pull all of OpenSSL in for one hash).
 *
 * Limits: max_conns (total and per client address), max_message (larger
 * messages close with 1009), idle (a ping at half of it; no traffic for
 * all of it closes with 1001), handshake_timeout (slow upgrade requests),
 * queue (bytes a connection may hold for a slow reader: datagrams beyond
 * it are dropped and counted as drop_slow), max_held (initiations of one
 * connection in the pipeline at once). Malformed HTTP gets 400, a wrong
 * path 404, a missing or wrong bearer token 401, a wrong WebSocket
 * version 426; text frames close with 1003, protocol errors with 1002.
 *
 * Counters: accepted, upgraded, rejected_limit, http_400, http_401,
 * http_404, http_426, closed_text, closed_protocol, closed_oversize,
 * closed_idle, initiations, resent, held_dropped, drop_held, forwarded_up,
 * forwarded_down, drop_slow, drop_udp, removed_on_close; gauge conns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <http_parser.h>
#include <nettle/sha1.h>
#include <sodium.h>
#include <wslay/wslay.h>

#include "wgutil.h"

#define INIT_LEN 148
#define HDR_MAX 8192            /* bytes of an upgrade request          */
#define URL_MAX 512
#define VAL_MAX 1024            /* a header value we look at            */
#define FIELD_MAX 32            /* a header name we look at             */
#define TOKEN_MAX 512
#define RBUF_LEN 65536
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#ifndef container_of
#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#endif

struct conf {
	struct sockaddr_storage listen;
	char *path;
	struct sockaddr_storage wireguard;
	int64_t max_conns;
	int64_t max_conns_per_ip;
	uint64_t max_message;
	uint64_t queue;
	int64_t idle_ms;
	int64_t handshake_ms;
	int64_t max_held;
	char *token_file;
	bool remove_on_close;
};

static const char *check_path(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!s || s[0] != '/' || strlen(s) >= URL_MAX || strpbrk(s, "? \t\r\n")) {
		snprintf(buf, len, "expected an absolute path starting with '/', no query or blanks");
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	{ .name = "listen", .type = WGGWD_OPT_ADDR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, listen),
	  .help = "TCP address the WebSocket server listens on (plain HTTP: put a TLS-terminating proxy in front)" },
	{ .name = "path", .type = WGGWD_OPT_STR, .def = "/wg", .check = check_path,
	  .offset = offsetof(struct conf, path),
	  .help = "the request path of the upgrade; other paths get 404" },
	{ .name = "wireguard", .type = WGGWD_OPT_ADDR, .def = "127.0.0.1:0",
	  .offset = offsetof(struct conf, wireguard),
	  .help = "the local WireGuard UDP address the relay sockets talk to; port 0: the listen port the pipeline's installer reports" },
	{ .name = "max_conns", .type = WGGWD_OPT_INT, .def = "1024", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, max_conns),
	  .help = "WebSocket connections at once, in all" },
	{ .name = "max_conns_per_ip", .type = WGGWD_OPT_INT, .def = "16", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, max_conns_per_ip),
	  .help = "connections at once from one client address (the proxy's, behind a proxy: raise it)" },
	{ .name = "max_message", .type = WGGWD_OPT_SIZE, .def = "4k", .min = 256, .max = 65536,
	  .offset = offsetof(struct conf, max_message),
	  .help = "largest message accepted (one WireGuard datagram); larger ones close the connection with 1009" },
	{ .name = "queue", .type = WGGWD_OPT_SIZE, .def = "256k", .min = 4096, .max = 64LL << 20,
	  .offset = offsetof(struct conf, queue),
	  .help = "bytes queued toward one client at most; for a slow reader further datagrams are dropped (drop_slow)" },
	{ .name = "idle", .type = WGGWD_OPT_DURATION, .def = "60s", .min = 200, .max = 86400000,
	  .offset = offsetof(struct conf, idle_ms),
	  .help = "a connection silent this long is closed (1001); a ping goes out at half of it" },
	{ .name = "handshake_timeout", .type = WGGWD_OPT_DURATION, .def = "5s", .min = 100, .max = 600000,
	  .offset = offsetof(struct conf, handshake_ms),
	  .help = "time a client has to complete its upgrade request" },
	{ .name = "max_held", .type = WGGWD_OPT_INT, .def = "4", .min = 1, .max = 1024,
	  .offset = offsetof(struct conf, max_held),
	  .help = "initiations of one connection in the pipeline at once; more are dropped (drop_held)" },
	{ .name = "token_file", .type = WGGWD_OPT_SECRET_FILE,
	  .offset = offsetof(struct conf, token_file),
	  .help = "file holding a bearer token; when set, the upgrade needs `Authorization: Bearer <token>` (else 401)" },
	{ .name = "remove_on_close", .type = WGGWD_OPT_BOOL, .def = "false",
	  .offset = offsetof(struct conf, remove_on_close),
	  .help = "when a connection closes, remove the peer it installed at once (installer remove op) instead of leaving it to the evictor" },
	WGGWD_OPT_END
};

/* headers of the upgrade request (struct conn.seen) */
enum {
	H_HOST = 1 << 0,
	H_UPGRADE = 1 << 1,
	H_CONNECTION = 1 << 2,
	H_VERSION = 1 << 3,
	H_KEY = 1 << 4,
	H_AUTH = 1 << 5,
	H_BAD = 1 << 6,         /* a header we check is malformed or twice */
	H_BADVERSION = 1 << 7,
};

struct ctx;

struct conn {
	struct conn *prev, *next;
	struct ctx *c;
	unsigned refs;          /* handles open + items in the pipeline */
	uv_tcp_t tcp;
	uv_udp_t udp;
	uv_shutdown_t shut;
	bool listed, closing, upgraded, udp_open, close_after_write, has_key;
	union wggwd_sockaddr peer, relay;
	uint64_t t_start, last_rx;
	bool ping_out;
	unsigned held;

	/* the upgrade request */
	http_parser hp;
	size_t hdr_bytes;
	unsigned seen;
	bool in_value, field_long, value_long, headers_done;
	char url[URL_MAX];
	size_t url_len;
	char field[FIELD_MAX];
	size_t field_len;
	char value[VAL_MAX];
	size_t value_len;
	char key[32];
	char auth[TOKEN_MAX + 16];

	/* the WebSocket */
	wslay_event_context_ptr ws;
	const uint8_t *in;      /* what read_cb got, for ws_recv_cb */
	size_t in_len;
	size_t wq_bytes;        /* bytes in uv_write requests          */
	uint8_t peer_key[WGGWD_KEY_LEN];
};

struct wreq {
	uv_write_t req;
	struct conn *k;
	size_t len;
	uint8_t data[];
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	union wggwd_sockaddr wg;
	uv_tcp_t listener;
	bool listening, stopping;
	unsigned handles;       /* open libuv handles; stopped() at 0  */
	struct conn *conns;
	unsigned n_conns;
	struct wggwd_timer *timer;
	uint8_t token[TOKEN_MAX];
	size_t token_len;
	uint8_t rbuf[RBUF_LEN];
	bool rbuf_busy;
	uint64_t *accepted, *upgraded, *rejected_limit, *http_400, *http_401, *http_404, *http_426;
	uint64_t *closed_text, *closed_protocol, *closed_oversize, *closed_idle;
	uint64_t *initiations, *resent, *held_dropped, *drop_held;
	uint64_t *forwarded_up, *forwarded_down, *drop_slow, *drop_udp, *removed_on_close;
	int64_t *g_conns;
};

static void conn_close(struct conn *k);

/* -------------------------------------------------------------- helpers */

static void conn_put(struct conn *k)
{
	struct ctx *c = k->c;

	if (--k->refs)
		return;
	if (k->ws)
		wslay_event_context_free(k->ws);
	sodium_memzero(k->auth, sizeof(k->auth));
	(void)c;
	free(k);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *k = h->data;
	struct ctx *c = k->c;

	c->handles--;
	conn_put(k);
	if (c->stopping && !c->handles)
		c->host->stopped(c->self);
}

static bool same_host(const union wggwd_sockaddr *a, const union wggwd_sockaddr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
	return !memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16);
}

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = container_of(req, struct wreq, req);
	struct conn *k = w->k;

	k->wq_bytes -= w->len;
	free(w);
	if (status < 0 || k->closing) {
		if (!k->closing)
			conn_close(k);
		conn_put(k);
		return;
	}
	if (k->ws && !k->close_after_write) {
		if (wslay_event_want_write(k->ws) && wslay_event_send(k->ws))
			conn_close(k);
	}
	if (!k->closing && !k->wq_bytes && (k->close_after_write ||
	    (k->ws && wslay_event_get_close_sent(k->ws) && !wslay_event_want_write(k->ws))))
		conn_close(k);
	conn_put(k);
}

/* Queue bytes on the TCP stream; the connection stays until it is sent. */
static int conn_write(struct conn *k, const void *data, size_t len)
{
	struct wreq *w = malloc(sizeof(*w) + len);
	uv_buf_t b;
	int ret;

	if (!w)
		return -ENOMEM;
	memcpy(w->data, data, len);
	w->k = k;
	w->len = len;
	b = uv_buf_init((char *)w->data, len);
	ret = uv_write(&w->req, (uv_stream_t *)&k->tcp, &b, 1, on_write);
	if (ret) {
		free(w);
		return ret;
	}
	k->refs++;
	k->wq_bytes += len;
	return 0;
}

/* ------------------------------------------------------------ WebSocket */

static ssize_t ws_recv_cb(wslay_event_context_ptr ws, uint8_t *buf, size_t len, int flags,
			  void *ud)
{
	struct conn *k = ud;

	(void)flags;
	if (!k->in_len) {
		wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (len > k->in_len)
		len = k->in_len;
	memcpy(buf, k->in, len);
	k->in += len;
	k->in_len -= len;
	return len;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ws, const uint8_t *data, size_t len, int flags,
			  void *ud)
{
	struct conn *k = ud;
	uv_buf_t b;
	int n = 0;

	(void)flags;
	if (k->closing) {
		wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	if (k->wq_bytes >= k->c->conf->queue) {
		wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (!k->wq_bytes) {
		b = uv_buf_init((char *)data, len);
		n = uv_try_write((uv_stream_t *)&k->tcp, &b, 1);
		if (n == UV_EAGAIN)
			n = 0;
		if (n < 0) {
			wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
			return -1;
		}
	}
	if ((size_t)n < len && conn_write(k, data + n, len - n)) {
		wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return len;
}

static void ws_flush(struct conn *k)
{
	if (k->closing || !k->ws)
		return;
	if (wslay_event_want_write(k->ws) && wslay_event_send(k->ws)) {
		conn_close(k);
		return;
	}
	/* our close frame is out (an answer to the client's, or an error) */
	if (wslay_event_get_close_sent(k->ws) && !wslay_event_want_write(k->ws) && !k->wq_bytes)
		conn_close(k);
}

static void ws_close(struct conn *k, uint16_t code, const char *why)
{
	if (!k->ws || wslay_event_get_close_sent(k->ws))
		return;
	wslay_event_queue_close(k->ws, code, (const uint8_t *)why, strlen(why));
	wslay_event_shutdown_read(k->ws);
}

/* A datagram from WireGuard toward the client. */
static void ws_send_datagram(struct conn *k, const uint8_t *p, size_t len)
{
	struct ctx *c = k->c;
	struct wslay_event_msg m = { .opcode = WSLAY_BINARY_FRAME, .msg = p, .msg_length = len };

	if (!k->ws || k->closing || wslay_event_get_close_sent(k->ws))
		return;
	if (k->wq_bytes + wslay_event_get_queued_msg_length(k->ws) + len > c->conf->queue) {
		(*c->drop_slow)++;
		return;
	}
	if (wslay_event_queue_msg(k->ws, &m)) {
		(*c->drop_slow)++;
		return;
	}
	(*c->forwarded_down)++;
	ws_flush(k);
}

static bool is_initiation(const uint8_t *p, size_t len)
{
	return len == INIT_LEN && p[0] == 1 && !p[1] && !p[2] && !p[3];
}

static void emit_initiation(struct conn *k, const uint8_t *p, size_t len)
{
	struct ctx *c = k->c;
	struct wggwd_item *it;
	struct timespec ts;

	(*c->initiations)++;
	if (k->held >= (unsigned)c->conf->max_held || c->stopping) {
		(*c->drop_held)++;
		return;
	}
	it = c->host->item_new(c->self);
	if (!it)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	it->type = WGGWD_MSG_PKT;
	it->transport = WGGWD_TR_WSOCK;
	it->pkt_len = len;
	memcpy(it->pkt, p, len);
	it->src = k->peer;
	it->dst = c->wg;
	it->endpoint = k->relay;
	it->rx_realtime_ns = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
	it->source_ref = k;
	k->refs++;  /* dropped in done() */
	k->held++;
	c->host->emit(c->self, it);
}

static void ws_on_msg(wslay_event_context_ptr ws, const struct wslay_event_on_msg_recv_arg *a,
		      void *ud)
{
	struct conn *k = ud;
	struct ctx *c = k->c;
	uv_buf_t b;
	int n;

	(void)ws;
	k->ping_out = false;
	if (k->closing)
		return;
	switch (a->opcode) {
	case WSLAY_BINARY_FRAME:
		if (is_initiation(a->msg, a->msg_length)) {
			emit_initiation(k, a->msg, a->msg_length);
			return;
		}
		if (!k->udp_open || !a->msg_length)
			return;
		b = uv_buf_init((char *)a->msg, a->msg_length);
		n = uv_udp_try_send(&k->udp, &b, 1, NULL);
		if (n < 0)
			(*c->drop_udp)++;
		else
			(*c->forwarded_up)++;
		return;
	case WSLAY_TEXT_FRAME:
		ws_close(k, WSLAY_CODE_UNSUPPORTED_DATA, "binary messages only");
		return;
	default: /* ping (answered by wslay), pong, close (answered by wslay) */
		return;
	}
}

static const struct wslay_event_callbacks ws_cbs = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.on_msg_recv_callback = ws_on_msg,
};

/* ----------------------------------------------------------------- relay */

static void udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct conn *k = h->data;

	(void)hint;
	if (k->c->rbuf_busy) {
		*b = uv_buf_init(NULL, 0);
		return;
	}
	k->c->rbuf_busy = true;
	*b = uv_buf_init((char *)k->c->rbuf, RBUF_LEN);
}

static void udp_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *from,
		     unsigned flags)
{
	struct conn *k = h->data;

	(void)flags;
	if (b->base == (char *)k->c->rbuf)
		k->c->rbuf_busy = false;
	if (n <= 0 || !from)
		return;
	ws_send_datagram(k, (const uint8_t *)b->base, n);
}

static int relay_open(struct conn *k)
{
	struct ctx *c = k->c;
	union wggwd_sockaddr any;
	int ret, len = sizeof(k->relay);

	memset(&any, 0, sizeof(any));
	any.sa.sa_family = c->wg.sa.sa_family;
	ret = uv_udp_init(c->host->loop, &k->udp);
	if (ret)
		return ret;
	k->udp.data = k;
	k->udp_open = true;
	k->refs++;
	c->handles++;
	/* bound to the wildcard, connected: only WireGuard's answers get in */
	ret = uv_udp_bind(&k->udp, &any.sa, 0);
	if (!ret)
		ret = uv_udp_connect(&k->udp, &c->wg.sa);
	if (!ret)
		ret = uv_udp_getsockname(&k->udp, &k->relay.sa, &len);
	if (!ret)
		ret = uv_udp_recv_start(&k->udp, udp_alloc, udp_recv);
	if (!ret && k->relay.sa.sa_family == AF_INET &&
	    k->relay.in4.sin_addr.s_addr == htonl(INADDR_ANY))
		k->relay.in4.sin_addr = c->wg.in4.sin_addr; /* the source WireGuard sees */
	else if (!ret && k->relay.sa.sa_family == AF_INET6 &&
		 IN6_IS_ADDR_UNSPECIFIED(&k->relay.in6.sin6_addr))
		k->relay.in6.sin6_addr = c->wg.in6.sin6_addr;
	return ret;
}

/* ------------------------------------------------------------- upgrade */

static void http_reply(struct conn *k, int code)
{
	struct ctx *c = k->c;
	const char *reason, *extra = "";
	char buf[256];
	int n;

	switch (code) {
	case 401:
		reason = "Unauthorized";
		extra = "WWW-Authenticate: Bearer\r\n";
		(*c->http_401)++;
		break;
	case 404:
		reason = "Not Found";
		(*c->http_404)++;
		break;
	case 426:
		reason = "Upgrade Required";
		extra = "Sec-WebSocket-Version: 13\r\n";
		(*c->http_426)++;
		break;
	case 503:
		reason = "Service Unavailable";
		(*c->rejected_limit)++;
		break;
	default:
		code = 400;
		reason = "Bad Request";
		(*c->http_400)++;
		break;
	}
	n = snprintf(buf, sizeof(buf),
		     "HTTP/1.1 %d %s\r\n%sConnection: close\r\nContent-Length: 0\r\n\r\n",
		     code, reason, extra);
	uv_read_stop((uv_stream_t *)&k->tcp);
	k->close_after_write = true;
	if (conn_write(k, buf, n))
		conn_close(k);
}

static void header_done(struct conn *k)
{
	const char *f = k->field, *v = k->value;
	unsigned bit = 0;

	if (!k->field_len)
		return;
	k->field[k->field_len] = 0;
	k->value[k->value_len] = 0;
	/* trailing blanks (http-parser strips the leading ones) */
	while (k->value_len && (v[k->value_len - 1] == ' ' || v[k->value_len - 1] == '\t'))
		k->value[--k->value_len] = 0;
	if (k->field_long)
		goto out;
	if (!strcasecmp(f, "host"))
		bit = H_HOST;
	else if (!strcasecmp(f, "upgrade"))
		bit = H_UPGRADE;
	else if (!strcasecmp(f, "connection"))
		bit = H_CONNECTION;
	else if (!strcasecmp(f, "sec-websocket-version"))
		bit = H_VERSION;
	else if (!strcasecmp(f, "sec-websocket-key"))
		bit = H_KEY;
	else if (!strcasecmp(f, "authorization"))
		bit = H_AUTH;
	if (!bit)
		goto out;
	if ((k->seen & bit) || k->value_long) {
		k->seen |= H_BAD;
		goto out;
	}
	k->seen |= bit;
	switch (bit) {
	case H_HOST:
		if (!k->value_len)
			k->seen |= H_BAD;
		break;
	case H_UPGRADE:
		if (strcasecmp(v, "websocket"))
			k->seen |= H_BAD;
		break;
	case H_CONNECTION: {
		/* a token list that holds "upgrade" */
		char tmp[VAL_MAX], *save, *t;
		bool found = false;

		memcpy(tmp, v, k->value_len + 1);
		for (t = strtok_r(tmp, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save))
			if (!strcasecmp(t, "upgrade"))
				found = true;
		if (!found)
			k->seen |= H_BAD;
		break;
	}
	case H_VERSION:
		if (strcmp(v, "13"))
			k->seen |= H_BADVERSION;
		break;
	case H_KEY: {
		uint8_t raw[32];
		size_t n = 0;

		if (k->value_len != 24 ||
		    sodium_base642bin(raw, sizeof(raw), v, k->value_len, NULL, &n, NULL,
				      sodium_base64_VARIANT_ORIGINAL) || n != 16)
			k->seen |= H_BAD;
		else
			memcpy(k->key, v, 25);
		break;
	}
	case H_AUTH:
		if (k->value_len > sizeof(k->auth) - 1)
			k->seen |= H_BAD;
		else
			memcpy(k->auth, v, k->value_len + 1);
		break;
	}
out:
	sodium_memzero(k->value, sizeof(k->value));
	k->field_len = k->value_len = 0;
	k->field_long = k->value_long = false;
}

static int hp_url(http_parser *p, const char *at, size_t len)
{
	struct conn *k = p->data;

	if (k->url_len + len >= URL_MAX)
		return -1;
	memcpy(k->url + k->url_len, at, len);
	k->url_len += len;
	k->url[k->url_len] = 0;
	return 0;
}

static int hp_field(http_parser *p, const char *at, size_t len)
{
	struct conn *k = p->data;

	if (k->in_value) {
		header_done(k);
		k->in_value = false;
	}
	if (k->field_len + len >= FIELD_MAX) {
		k->field_long = true;
		len = FIELD_MAX - 1 - k->field_len;
	}
	memcpy(k->field + k->field_len, at, len);
	k->field_len += len;
	return 0;
}

static int hp_value(http_parser *p, const char *at, size_t len)
{
	struct conn *k = p->data;

	k->in_value = true;
	if (k->value_len + len >= VAL_MAX) {
		k->value_long = true;
		len = VAL_MAX - 1 - k->value_len;
	}
	memcpy(k->value + k->value_len, at, len);
	k->value_len += len;
	return 0;
}

static int hp_headers_complete(http_parser *p)
{
	struct conn *k = p->data;

	if (k->in_value)
		header_done(k);
	k->in_value = false;
	k->headers_done = true;
	return 0;
}

static const http_parser_settings hp_settings = {
	.on_url = hp_url,
	.on_header_field = hp_field,
	.on_header_value = hp_value,
	.on_headers_complete = hp_headers_complete,
};

static bool token_ok(struct ctx *c, const struct conn *k)
{
	size_t n = strlen(k->auth);
	bool ok;

	if (!c->token_len)
		return true;
	if (!(k->seen & H_AUTH) || n < 7 || strncasecmp(k->auth, "Bearer ", 7))
		return false;
	if (n - 7 != c->token_len)
		return false;
	ok = !sodium_memcmp(k->auth + 7, c->token, c->token_len);
	return ok;
}

static void accept_key(const char *key, char out[32])
{
	struct sha1_ctx s;
	uint8_t d[SHA1_DIGEST_SIZE];

	sha1_init(&s);
	sha1_update(&s, strlen(key), (const uint8_t *)key);
	sha1_update(&s, strlen(WS_GUID), (const uint8_t *)WS_GUID);
	sha1_digest(&s, sizeof(d), d);
	sodium_bin2base64(out, 32, d, sizeof(d), sodium_base64_VARIANT_ORIGINAL);
}

static void ws_feed(struct conn *k, const uint8_t *p, size_t len);

/* The request's headers are in: answer it. `rest` is what followed them. */
static void upgrade(struct conn *k, const uint8_t *rest, size_t rest_len)
{
	struct ctx *c = k->c;
	const unsigned need = H_HOST | H_UPGRADE | H_CONNECTION | H_VERSION | H_KEY;
	char acc[32], buf[256], *q;
	int n, ret;

	q = strchr(k->url, '?');
	if (q)
		*q = 0;
	if (k->hp.method != HTTP_GET || k->hp.http_major != 1 || k->hp.http_minor != 1 ||
	    !k->hp.upgrade || (k->seen & H_BAD)) {
		http_reply(k, 400);
		return;
	}
	if ((k->seen & H_BADVERSION) && !(k->seen & H_BAD)) {
		http_reply(k, 426);
		return;
	}
	if ((k->seen & need) != need) {
		http_reply(k, 400);
		return;
	}
	if (strcmp(k->url, c->conf->path)) {
		http_reply(k, 404);
		return;
	}
	if (!token_ok(c, k)) {
		sodium_memzero(k->auth, sizeof(k->auth));
		http_reply(k, 401);
		return;
	}
	sodium_memzero(k->auth, sizeof(k->auth));
	ret = relay_open(k);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_WARN, "relay socket: %s", uv_strerror(ret));
		conn_close(k);
		return;
	}
	if (wslay_event_context_server_init(&k->ws, &ws_cbs, k)) {
		conn_close(k);
		return;
	}
	wslay_event_config_set_max_recv_msg_length(k->ws, c->conf->max_message);
	accept_key(k->key, acc);
	n = snprintf(buf, sizeof(buf),
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
	if (conn_write(k, buf, n)) {
		conn_close(k);
		return;
	}
	k->upgraded = true;
	k->last_rx = uv_now(c->host->loop);
	(*c->upgraded)++;
	if (rest_len)
		ws_feed(k, rest, rest_len);
}

static void http_feed(struct conn *k, const uint8_t *p, size_t len)
{
	size_t n;

	if (k->hdr_bytes + len > HDR_MAX) {
		http_reply(k, 400);
		return;
	}
	n = http_parser_execute(&k->hp, &hp_settings, (const char *)p, len);
	k->hdr_bytes += n;
	if (HTTP_PARSER_ERRNO(&k->hp) != HPE_OK) {
		http_reply(k, 400);
		return;
	}
	if (k->headers_done)
		upgrade(k, p + n, len - n);
}

/* Bytes of an open WebSocket. */
static void ws_feed(struct conn *k, const uint8_t *p, size_t len)
{
	k->in = p;
	k->in_len = len;
	if (wslay_event_recv(k->ws)) {
		k->in_len = 0;
		conn_close(k);
		return;
	}
	k->in_len = 0;
	ws_flush(k);
}

/* ------------------------------------------------------------ TCP side */

static void tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct conn *k = h->data;

	(void)hint;
	if (k->c->rbuf_busy) {
		*b = uv_buf_init(NULL, 0);
		return;
	}
	k->c->rbuf_busy = true;
	*b = uv_buf_init((char *)k->c->rbuf, RBUF_LEN);
}

static void tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *k = s->data;
	bool counted = k->ws && wslay_event_get_close_sent(k->ws);

	if (b->base == (char *)k->c->rbuf)
		k->c->rbuf_busy = false;
	if (n < 0) {
		conn_close(k);
		return;
	}
	if (!n || k->closing)
		return;
	k->last_rx = uv_now(k->c->host->loop);
	if (!k->upgraded) {
		http_feed(k, (const uint8_t *)b->base, n);
		return;
	}
	if (counted) /* closing: what comes after our close frame is dropped */
		return;
	ws_feed(k, (const uint8_t *)b->base, n);
}

static void removed_cb(void *arg, int status)
{
	(void)arg;
	(void)status; /* the installer logs a failure */
}

static void conn_close(struct conn *k)
{
	struct ctx *c = k->c;
	const struct wggwd_installer *ins;
	struct conn *o;
	bool other = false;

	if (k->closing)
		return;
	k->closing = true;
	/* what we closed the WebSocket for (not an answer to the client's) */
	if (k->ws && wslay_event_get_close_sent(k->ws) && !wslay_event_get_close_received(k->ws)) {
		switch (wslay_event_get_status_code_sent(k->ws)) {
		case WSLAY_CODE_PROTOCOL_ERROR:
			(*c->closed_protocol)++;
			break;
		case WSLAY_CODE_UNSUPPORTED_DATA:
			(*c->closed_text)++;
			break;
		case WSLAY_CODE_MESSAGE_TOO_BIG:
			(*c->closed_oversize)++;
			break;
		case WSLAY_CODE_GOING_AWAY:
			(*c->closed_idle)++;
			break;
		}
	}
	if (k->listed) {
		if (k->prev)
			k->prev->next = k->next;
		else
			c->conns = k->next;
		if (k->next)
			k->next->prev = k->prev;
		k->listed = false;
		c->n_conns--;
		*c->g_conns = c->n_conns;
	}
	if (c->conf->remove_on_close && k->has_key && !c->stopping) {
		for (o = c->conns; o; o = o->next)
			if (o->has_key && !memcmp(o->peer_key, k->peer_key, WGGWD_KEY_LEN))
				other = true;
		ins = c->host->installer(c->self);
		if (!other && ins && ins->ops->remove &&
		    !ins->ops->remove(ins->ctx, (const uint8_t (*)[WGGWD_KEY_LEN])k->peer_key, 1,
				      removed_cb, NULL))
			(*c->removed_on_close)++;
	}
	uv_close((uv_handle_t *)&k->tcp, on_handle_closed);
	if (k->udp_open) {
		k->udp_open = false;
		uv_close((uv_handle_t *)&k->udp, on_handle_closed);
	}
}

static void on_connection(uv_stream_t *srv, int status)
{
	struct ctx *c = srv->data;
	struct conn *k, *o;
	unsigned same = 0;
	int len, ret;

	if (status < 0) {
		c->host->log(c->self, WGGWD_LOG_WARN, "accept: %s", uv_strerror(status));
		return;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return;
	k->c = c;
	uv_tcp_init(c->host->loop, &k->tcp);
	k->tcp.data = k;
	k->refs = 1;
	c->handles++;
	if (uv_accept(srv, (uv_stream_t *)&k->tcp)) {
		k->closing = true;
		uv_close((uv_handle_t *)&k->tcp, on_handle_closed);
		return;
	}
	(*c->accepted)++;
	len = sizeof(k->peer);
	uv_tcp_getpeername(&k->tcp, &k->peer.sa, &len);
	uv_tcp_nodelay(&k->tcp, 1);
	k->t_start = k->last_rx = uv_now(c->host->loop);
	http_parser_init(&k->hp, HTTP_REQUEST);
	k->hp.data = k;
	for (o = c->conns; o; o = o->next)
		if (same_host(&o->peer, &k->peer))
			same++;
	ret = uv_read_start((uv_stream_t *)&k->tcp, tcp_alloc, tcp_read);
	if (ret) {
		conn_close(k);
		return;
	}
	if (c->n_conns >= (unsigned)c->conf->max_conns || same >= (unsigned)c->conf->max_conns_per_ip) {
		http_reply(k, 503);
		return;
	}
	k->listed = true;
	k->next = c->conns;
	if (c->conns)
		c->conns->prev = k;
	c->conns = k;
	c->n_conns++;
	*c->g_conns = c->n_conns;
}

/* Pings, idle and handshake timeouts. */
static void on_timer(void *arg)
{
	struct ctx *c = arg;
	uint64_t now = uv_now(c->host->loop);
	struct conn *k, *next;
	struct wslay_event_msg ping = { .opcode = WSLAY_PING };

	for (k = c->conns; k; k = next) {
		next = k->next;
		if (!k->upgraded) {
			if (now - k->t_start >= (uint64_t)c->conf->handshake_ms && !k->close_after_write)
				http_reply(k, 400);
			continue;
		}
		if (now - k->last_rx >= (uint64_t)c->conf->idle_ms) {
			if (wslay_event_get_close_sent(k->ws))
				conn_close(k);
			else {
				ws_close(k, WSLAY_CODE_GOING_AWAY, "idle");
				ws_flush(k);
				if (!k->closing && k->wq_bytes >= c->conf->queue)
					conn_close(k); /* a reader that reads nothing */
			}
		} else if (now - k->last_rx >= (uint64_t)c->conf->idle_ms / 2 && !k->ping_out) {
			k->ping_out = true;
			wslay_event_queue_msg(k->ws, &ping);
			ws_flush(k);
		}
	}
}

/* --------------------------------------------------------------- stages */

static void ws_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	struct conn *k = it->source_ref;
	uv_buf_t b;

	if ((it->flags & WGGWD_ITEM_INJECTED) || !k || it->transport != WGGWD_TR_WSOCK)
		return;
	k->held--;
	if ((verdict == WGGWD_CONTINUE || verdict == WGGWD_DONE) && !k->closing && k->udp_open &&
	    it->pkt_len == INIT_LEN) {
		if (verdict == WGGWD_CONTINUE && (it->type & WGGWD_MSG_PEER_KEY)) {
			memcpy(k->peer_key, it->public_key, WGGWD_KEY_LEN);
			k->has_key = true;
		}
		b = uv_buf_init((char *)it->pkt, INIT_LEN);
		if (uv_udp_try_send(&k->udp, &b, 1, NULL) == INIT_LEN)
			(*c->resent)++;
		else
			(*c->drop_udp)++;
	} else {
		(*c->held_dropped)++;
	}
	conn_put(k);
}

static int ws_create(const struct wggwd_host *host, struct wggwd_inst *self, const void *conf,
		     void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
#define CNT(x) c->x = host->counter(self, #x)
	CNT(accepted); CNT(upgraded); CNT(rejected_limit); CNT(http_400); CNT(http_401);
	CNT(http_404); CNT(http_426); CNT(closed_text); CNT(closed_protocol);
	CNT(closed_oversize); CNT(closed_idle); CNT(initiations); CNT(resent);
	CNT(held_dropped); CNT(drop_held); CNT(forwarded_up); CNT(forwarded_down);
	CNT(drop_slow); CNT(drop_udp); CNT(removed_on_close);
#undef CNT
	c->g_conns = host->gauge(self, "conns");
	*ctxp = c;
	return 0;
}

static int resolve_wg(struct ctx *c)
{
	const struct wggwd_installer *ins;
	struct wggwd_device dev;
	uint16_t port;
	int ret;

	memcpy(&c->wg, &c->conf->wireguard, sizeof(c->wg));
	port = ntohs(c->wg.sa.sa_family == AF_INET6 ? c->wg.in6.sin6_port : c->wg.in4.sin_port);
	if (port)
		return 0;
	ins = c->host->installer(c->self);
	if (!ins) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "wireguard: port 0 asks the pipeline's installer, and there is none; set the port");
		return -EINVAL;
	}
	ret = ins->ops->device(ins->ctx, &dev);
	port = ret ? 0 : dev.listen_port;
	sodium_memzero(&dev, sizeof(dev));
	if (!port) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "installer %s reports no listen port; set wireguard",
			     ins->name);
		return ret ? ret : -EINVAL;
	}
	if (c->wg.sa.sa_family == AF_INET6)
		c->wg.in6.sin6_port = htons(port);
	else
		c->wg.in4.sin_port = htons(port);
	return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
	struct ctx *c = h->data;

	c->handles--;
	if (c->stopping && !c->handles)
		c->host->stopped(c->self);
}

static int ws_start(void *ctx)
{
	struct ctx *c = ctx;
	char a[64], w[64];
	ssize_t n;
	int ret;

	if (c->conf->token_file) {
		n = c->host->secret_read(c->self, c->conf->token_file, c->token, sizeof(c->token));
		if (n < 0)
			return n;
		if (!n || memchr(c->token, '\n', n) || memchr(c->token, '\r', n)) {
			c->host->log(c->self, WGGWD_LOG_ERROR, "token_file: expected one line");
			sodium_memzero(c->token, sizeof(c->token));
			return -EINVAL;
		}
		c->token_len = n;
	}
	ret = resolve_wg(c);
	if (ret)
		return ret;
	ret = uv_tcp_init(c->host->loop, &c->listener);
	if (ret)
		return ret;
	c->listener.data = c;
	c->handles++;
	ret = uv_tcp_bind(&c->listener, (const struct sockaddr *)&c->conf->listen, 0);
	if (!ret)
		ret = uv_listen((uv_stream_t *)&c->listener, 128, on_connection);
	wg_sockaddr_str((const union wggwd_sockaddr *)&c->conf->listen, a, sizeof(a));
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "listen on %s: %s", a, uv_strerror(ret));
		uv_close((uv_handle_t *)&c->listener, on_listener_closed);
		return ret;
	}
	c->listening = true;
	c->timer = c->host->timer_new(c->self, on_timer, c);
	n = c->conf->idle_ms / 4 < c->conf->handshake_ms / 2 ? c->conf->idle_ms / 4 :
		c->conf->handshake_ms / 2;
	if (n < 50)
		n = 50;
	c->host->timer_start(c->timer, n, n);
	wg_sockaddr_str(&c->wg, w, sizeof(w));
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "WebSocket relay on ws://%s%s to WireGuard at %s (token %s)", a, c->conf->path,
		     w, c->token_len ? "required" : "off");
	return 0;
}

static void ws_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->stopping = true;
	if (c->timer) {
		c->host->timer_free(c->timer);
		c->timer = NULL;
	}
	while (c->conns)
		conn_close(c->conns);
	if (c->listening) {
		c->listening = false;
		uv_close((uv_handle_t *)&c->listener, on_listener_closed);
	}
	if (!c->handles)
		c->host->stopped(c->self);
}

static void ws_destroy(void *ctx)
{
	struct ctx *c = ctx;

	sodium_memzero(c->token, sizeof(c->token));
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = ws_create,
	.start = ws_start,
	.stop = ws_stop,
	.destroy = ws_destroy,
	.done = ws_done,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-wsock",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "WireGuard over WebSockets: a relay per connection, initiations through the pipeline (JIT peers)",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PKT,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
