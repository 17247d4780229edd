// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-wsock: the connections. Each accepted TCP connection is read
 * into the upgrade parser (upgrade.c) until it is a WebSocket; then each
 * binary message is one WireGuard datagram, relayed through a UDP socket
 * of its own connected to the local WireGuard, both ways. Initiations go
 * into the pipeline instead (emit_initiation; source_wsock.c's done sends
 * them on). Pings, idle and handshake timeouts run from one timer.
 *
 * What a client can make us hold is bounded: what we queue toward it
 * (datagrams, and the pongs wslay queues for its pings) is charged with
 * each frame's overhead (conn_queued); datagrams stop at `queue`, and a
 * client whose pongs take it past `queue` + `control_queue` is closed
 * (1008). A data message has at most FRAG_MAX frames (1009). Only data
 * and answers to our pings keep a connection from going idle.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wsock.h"

void conn_put(struct conn *k)
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
	k->wq_reqs--;
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
int conn_write(struct conn *k, const void *data, size_t len)
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
	k->wq_reqs++;
	return 0;
}

size_t conn_queued(const struct conn *k)
{
	size_t n = k->wq_bytes + k->wq_reqs * WREQ_COST;

	if (k->ws)
		n += wslay_event_get_queued_msg_length(k->ws) +
		     wslay_event_get_queued_msg_count(k->ws) * MSG_COST;
	return n;
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
	/* once over its budget, what is queued (bounded: nothing more gets
	 * in) goes out, then the close frame */
	if (!k->overflow && k->wq_bytes + k->wq_reqs * WREQ_COST >= k->c->conf->queue) {
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

/* The close frame is queued (ours, or wslay's answer or error): the
 * connection has CLOSE_GRACE_MS to get it out. */
static void ws_closing(struct conn *k)
{
	if (k->close_queued)
		return;
	k->close_queued = true;
	k->closing_since = uv_now(k->c->host->loop);
}

static void ws_close(struct conn *k, uint16_t code, const char *why)
{
	if (!k->ws || wslay_event_get_close_sent(k->ws))
		return;
	wslay_event_queue_close(k->ws, code, (const uint8_t *)why, strlen(why));
	wslay_event_shutdown_read(k->ws);
	ws_closing(k);
}

/* Past its budget (pings whose pongs it does not read): 1008, counted. */
static void ws_overflow(struct conn *k)
{
	struct ctx *c = k->c;
	char a[64];

	if (k->overflow)
		return;
	k->overflow = true;
	(*c->closed_overflow)++;
	wg_sockaddr_str(&k->peer, a, sizeof(a));
	c->host->log_limited(c->self, WGGWD_LOG_WARN,
			     "%s: %zu bytes queued toward a client that does not read: closing (1008)",
			     a, conn_queued(k));
	uv_read_stop((uv_stream_t *)&k->tcp);
	ws_close(k, WSLAY_CODE_POLICY_VIOLATION, "queue limit");
}

/* A datagram from WireGuard toward the client. */
static void ws_send_datagram(struct conn *k, const uint8_t *p, size_t len)
{
	struct ctx *c = k->c;
	struct wslay_event_msg m = { .opcode = WSLAY_BINARY_FRAME, .msg = p, .msg_length = len };

	if (!k->ws || k->closing || k->close_queued)
		return;
	if (conn_queued(k) + len + MSG_COST > c->conf->queue) {
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

	(*c->initiations)++;
	if (k->held >= (unsigned)c->conf->max_held || c->stopping) {
		(*c->drop_held)++;
		return;
	}
	it = c->host->item_new(c->self);
	if (!it)
		return;
	if (c->host->item_pkt(c->self, it, p, len)) {
		c->host->item_free(c->self, it);
		return;
	}
	it->type = WGGWD_MSG_PKT;
	it->transport = WGGWD_TR_WSOCK;
	it->src = k->peer;
	it->dst = c->wg;
	it->endpoint = k->relay;
	it->rx_realtime_ns = c->host->realtime_ns();
	*c->host->slot(c->self, it) = k;
	k->refs++;  /* dropped in done() */
	k->held++;
	if (c->host->emit(c->self, it) < 0) { /* refused and freed: no done */
		k->held--;
		k->refs--;
	}
}

static void ws_on_msg(wslay_event_context_ptr ws, const struct wslay_event_on_msg_recv_arg *a,
		      void *ud)
{
	struct conn *k = ud;
	struct ctx *c = k->c;
	uv_buf_t b;
	int n;

	(void)ws;
	if (k->closing)
		return;
	switch (a->opcode) {
	case WSLAY_BINARY_FRAME:
		k->last_rx = uv_now(c->host->loop);
		k->ping_out = false;
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
	case WSLAY_PING: /* wslay has queued the pong: not activity */
		if (conn_queued(k) > c->conf->queue + c->conf->control_queue)
			ws_overflow(k);
		return;
	case WSLAY_PONG: /* an answer to our ping is; others are not */
		if (k->ping_out) {
			k->ping_out = false;
			k->last_rx = uv_now(c->host->loop);
		}
		return;
	default: /* close (answered by wslay) */
		return;
	}
}

/* A data message of many tiny frames costs wslay a chunk each. */
static void ws_on_frame(wslay_event_context_ptr ws,
			const struct wslay_event_on_frame_recv_start_arg *a, void *ud)
{
	struct conn *k = ud;

	(void)ws;
	if (a->opcode & 0x8) /* control frames come whole */
		return;
	k->frags = a->opcode == WSLAY_CONTINUATION_FRAME ? k->frags + 1 : 1;
	if (k->frags > FRAG_MAX)
		ws_close(k, WSLAY_CODE_MESSAGE_TOO_BIG, "too many frames");
}

static const struct wslay_event_callbacks ws_cbs = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.on_frame_recv_start_callback = ws_on_frame,
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

int conn_relay_open(struct conn *k)
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

int conn_ws_open(struct conn *k)
{
	if (wslay_event_context_server_init(&k->ws, &ws_cbs, k))
		return -ENOMEM;
	wslay_event_config_set_max_recv_msg_length(k->ws, k->c->conf->max_message);
	return 0;
}

/* Bytes of an open WebSocket. */
void conn_ws_feed(struct conn *k, const uint8_t *p, size_t len)
{
	k->in = p;
	k->in_len = len;
	if (wslay_event_recv(k->ws)) {
		k->in_len = 0;
		conn_close(k);
		return;
	}
	k->in_len = 0;
	if (!wslay_event_get_read_enabled(k->ws)) /* wslay queued a close */
		ws_closing(k);
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
	if (!k->upgraded) {
		upgrade_feed(k, (const uint8_t *)b->base, n);
		return;
	}
	if (counted) /* closing: what comes after our close frame is dropped */
		return;
	conn_ws_feed(k, (const uint8_t *)b->base, n);
}

void conn_close(struct conn *k)
{
	struct ctx *c = k->c;
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
		if (!other && !c->host->retire(c->self, k->peer_key, WGGWD_R_CLOSED))
			(*c->removed_on_close)++;
	}
	uv_close((uv_handle_t *)&k->tcp, on_handle_closed);
	if (k->udp_open) {
		k->udp_open = false;
		uv_close((uv_handle_t *)&k->udp, on_handle_closed);
	}
}

void wsock_on_connection(uv_stream_t *srv, int status)
{
	struct ctx *c = srv->data;
	struct conn *k, *o;
	unsigned same = 0;
	int len, ret;

	if (status < 0) {
		c->host->log_limited(c->self, WGGWD_LOG_WARN, "accept: %s", uv_strerror(status));
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
		upgrade_reply(k, 503);
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
void wsock_on_timer(void *arg)
{
	struct ctx *c = arg;
	uint64_t now = uv_now(c->host->loop);
	struct conn *k, *next;
	struct wslay_event_msg ping = { .opcode = WSLAY_PING };

	for (k = c->conns; k; k = next) {
		next = k->next;
		if (!k->upgraded) {
			if (now - k->t_start >= (uint64_t)c->conf->handshake_ms && !k->close_after_write)
				upgrade_reply(k, 400);
			continue;
		}
		if (k->close_queued) {
			/* its last frames had their chance (a reader that reads
			 * nothing, a client that never answers our close) */
			if (now - k->closing_since >= CLOSE_GRACE_MS)
				conn_close(k);
		} else if (now - k->last_rx >= (uint64_t)c->conf->idle_ms) {
			ws_close(k, WSLAY_CODE_GOING_AWAY, "idle");
			ws_flush(k);
		} else if (now - k->last_rx >= (uint64_t)c->conf->idle_ms / 2 && !k->ping_out) {
			k->ping_out = true;
			wslay_event_queue_msg(k->ws, &ping);
			ws_flush(k);
		}
	}
}

