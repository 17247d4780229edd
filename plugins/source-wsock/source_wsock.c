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
 * Files: this one (options, the stage's operations, done), conn.c (the
 * connections: TCP, WebSocket, UDP relay, timers), upgrade.c (the HTTP
 * upgrade request), wsock.h (what they share).
 *
 * Limits: max_conns (total and per client address), max_message (larger
 * messages, or messages of more than FRAG_MAX frames, close with 1009),
 * idle (a ping at half of it; no data message and no answer to our ping
 * for all of it closes with 1001: a client's own pings are not activity),
 * handshake_timeout (slow upgrade requests), queue (bytes a connection may
 * hold for a slow reader, each queued frame charged MSG_COST or WREQ_COST
 * on top of its bytes: datagrams beyond it are dropped and counted as
 * drop_slow), control_queue (what control frames we answer with, pongs,
 * may add to that before a client that does not read them is closed with
 * 1008: closed_overflow), max_held (initiations of one connection in the
 * pipeline at once). A closing connection gets CLOSE_GRACE_MS for its
 * last frames. Malformed HTTP gets 400, a wrong WebSocket version 426, a
 * missing or wrong bearer token 401 (before the path is looked at: no
 * probing paths without the token), a wrong path 404; text frames close
 * with 1003, protocol errors with 1002.
 *
 * Counters: accepted, upgraded, rejected_limit, http_400, http_401,
 * http_404, http_426, closed_text, closed_protocol, closed_oversize,
 * closed_idle, closed_overflow, initiations, resent, held_dropped,
 * drop_held, forwarded_up, forwarded_down, drop_slow, drop_udp,
 * removed_on_close; gauge conns.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wsock.h"

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
	  .help = "the request path of the upgrade; other paths get 404 (401 first if the token is missing or wrong)" },
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
	  .help = "bytes queued toward one client at most (each frame counted with its overhead); for a slow reader further datagrams are dropped (drop_slow)" },
	{ .name = "control_queue", .type = WGGWD_OPT_SIZE, .def = "16k", .min = 1024, .max = 1LL << 20,
	  .offset = offsetof(struct conf, control_queue),
	  .help = "bytes the answers to a client's control frames (pongs) may queue beyond `queue`; a client that sends pings and does not read is closed past it (1008, closed_overflow)" },
	{ .name = "idle", .type = WGGWD_OPT_DURATION, .def = "60s", .min = 200, .max = 86400000,
	  .offset = offsetof(struct conf, idle_ms),
	  .help = "a connection with no data message and no answer to our ping for this long is closed (1001); a ping goes out at half of it (the client's own pings do not count)" },
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
	  .help = "when a connection closes, remove the peer it installed at once (through the pipeline, reason closed) instead of leaving it to the evictor" },
	WGGWD_OPT_END
};

static void ws_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	struct conn *k = *c->host->slot(c->self, it);
	uv_buf_t b;

	k->held--;
	if ((verdict == WGGWD_CONTINUE || verdict == WGGWD_DONE) && !k->closing && k->udp_open &&
	    it->pkt_len == INIT_LEN) {
		/* type is the last stage's out (EVENT past an installer):
		 * whether the decoder got that far is in the key itself */
		if (verdict == WGGWD_CONTINUE && !wg_key_is_zero(it->public_key)) {
			memcpy(k->peer_key, it->public_key, WGGWD_KEY_LEN);
			k->has_key = true;
		}
		b = uv_buf_init((char *)it->pkt, INIT_LEN);
		if (uv_udp_try_send(&k->udp, &b, 1, NULL) == INIT_LEN) {
			it->t[WGGWD_T_REINJECTED] = c->host->now_ns();
			(*c->resent)++;
		} else
			(*c->drop_udp)++;
	} else {
		(*c->held_dropped)++;
	}
	conn_put(k);
}

static int ws_create(const struct wggwd_host *host, struct wggwd_inst *self, const void *conf,
		     void **ctxp)
{
	struct ctx *c;

	if (sodium_init() < 0)
		return -EIO;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	randombytes_buf(c->token_key, sizeof(c->token_key)); /* upgrade.c's token_ok */
	c->host = host;
	c->self = self;
	c->conf = conf;
#define CNT(x) c->x = host->counter(self, #x)
	CNT(accepted); CNT(upgraded); CNT(rejected_limit); CNT(http_400); CNT(http_401);
	CNT(http_404); CNT(http_426); CNT(closed_text); CNT(closed_protocol);
	CNT(closed_oversize); CNT(closed_idle); CNT(closed_overflow); CNT(initiations); CNT(resent);
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
	struct wggwd_device dev = { .size = sizeof(dev) };
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
		ret = uv_listen((uv_stream_t *)&c->listener, 128, wsock_on_connection);
	wg_sockaddr_str((const union wggwd_sockaddr *)&c->conf->listen, a, sizeof(a));
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "listen on %s: %s", a, uv_strerror(ret));
		uv_close((uv_handle_t *)&c->listener, on_listener_closed);
		return ret;
	}
	c->listening = true;
	c->timer = c->host->timer_new(c->self, wsock_on_timer, c);
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
	sodium_memzero(c->token_key, sizeof(c->token_key));
	sodium_memzero(c->token_hash, sizeof(c->token_hash));
	free(c);
}

/* /readyz: listening, and room for another connection (a load balancer
 * in front then sends new clients to another gateway while this one is
 * full). */
static int ws_status(void *ctx, char *buf, size_t len)
{
	struct ctx *c = ctx;

	if (c->stopping)
		snprintf(buf, len, "stopping");
	else if (!c->listening)
		snprintf(buf, len, "not listening");
	else if (c->n_conns >= (unsigned)c->conf->max_conns)
		snprintf(buf, len, "full: %u connections (max_conns)", c->n_conns);
	else
		return 0;
	return 1;
}

const char *ws_preflight(void *ctx, const char **option, char *buf, size_t len); /* preflight.c */

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = ws_create,
	.start = ws_start,
	.stop = ws_stop,
	.destroy = ws_destroy,
	.done = ws_done,
	.preflight = ws_preflight,
	.status = ws_status,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-wsock",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "WireGuard over WebSockets: a relay per connection, initiations through the pipeline (JIT peers)",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PKT,
	.flags = WGGWD_F_RESENDS,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
