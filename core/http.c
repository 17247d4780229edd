// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The HTTP listener (`http_listen:`), on the loop: GET /metrics
 * (Prometheus), /healthz (the loop turns), /readyz (every stage started
 * and ready by its own status op; 503 and a JSON body naming the stages
 * that are not). One request per connection, small and bounded: it is
 * meant for a scraper and a probe, not for the open Internet.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <http_parser.h>
#include <jansson.h>

#include "ctl.h"
#include "prom.h"

#define HTTP_MAX_CONNS 64
#define HTTP_MAX_URL 256
#define HTTP_TIMEOUT_MS 10000

static const char P[] = "[http]";

struct conn {
	struct conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	http_parser parser;
	char url[HTTP_MAX_URL];
	size_t url_len;
	bool complete, closing, get;
	int closes;
	struct scrape *scrape;
	char buf[4096];
};

struct scrape {
	struct conn *c;
	bool dumped;   /* it dumped the interfaces (see pace) */
};

static struct {
	uv_tcp_t server;
	bool running;
	int conns;
	struct conn *list;
	http_parser_settings settings;
} h;

static void on_conn_closed(uv_handle_t *hd)
{
	struct conn *c = hd->data;

	if (++c->closes < 2)
		return;
	h.conns--;
	if (c->prev)
		c->prev->next = c->next;
	else
		h.list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->scrape)
		c->scrape->c = NULL;
	uv_close((uv_handle_t *)&c->timer, on_conn_closed);
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

struct wreq {
	uv_write_t req;
	struct conn *c;
	char *data;
};

static void on_written(uv_write_t *req, int status)
{
	struct wreq *w = req->data;

	(void)status;
	conn_close(w->c);
	free(w->data);
	free(w);
}

static void respond(struct conn *c, int code, const char *type, const char *body, size_t len)
{
	const char *text = code == 200 ? "OK" : code == 404 ? "Not Found" :
			   code == 405 ? "Method Not Allowed" : code == 503 ? "Service Unavailable" :
			   code == 400 ? "Bad Request" : "Error";
	struct wreq *w;
	uv_buf_t b;
	int n;

	if (c->closing)
		return;
	w = calloc(1, sizeof(*w));
	n = snprintf(NULL, 0, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		     code, text, type, len);
	if (!w || !(w->data = malloc(n + 1 + len))) {
		free(w);
		conn_close(c);
		return;
	}
	snprintf(w->data, n + 1, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		 code, text, type, len);
	if (c->get)
		memcpy(w->data + n, body, len);
	else
		len = 0; /* HEAD */
	w->c = c;
	w->req.data = w;
	b = uv_buf_init(w->data, n + len);
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
		free(w->data);
		free(w);
		conn_close(c);
	}
}

static void respond_json(struct conn *c, int code, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	if (s) {
		respond(c, code, "application/json", s, strlen(s));
		free(s);
	} else {
		respond(c, 500, "text/plain", "out of memory\n", 14);
	}
	json_decref(o);
}

/* ---------------------------------------------------------------- readyz */

json_t *ready_json(bool *ready)
{
	struct runtime *rt = runtime_current();
	json_t *o = json_object(), *bad = json_array();
	size_t i, n = runtime_n_inst(rt);
	char buf[256];

	*ready = true;
	if (!rt) {
		json_t *e = json_object();

		json_object_set_new(e, "stage", json_string("core"));
		json_object_set_new(e, "reason", json_string("no configuration running"));
		json_array_append_new(bad, e);
	}
	for (i = 0; i < n; i++) {
		struct wggwd_inst *in = runtime_inst(rt, i);
		const char *why = NULL;
		json_t *e;

		buf[0] = '\0';
		if (in->stopping)
			why = "stopping";
		else if (!in->started)
			why = "not started";
		else if (in->ops->status && in->ops->status(in->ctx, buf, sizeof(buf)))
			why = buf[0] ? buf : "not ready";
		if (!why)
			continue;
		e = json_object();
		json_object_set_new(e, "stage", json_string(in->sc->name));
		json_object_set_new(e, "plugin", json_string(in->p->desc.name));
		json_object_set_new(e, "reason", json_string(why));
		json_array_append_new(bad, e);
	}
	*ready = json_array_size(bad) == 0;
	json_object_set_new(o, "ready", json_boolean(*ready));
	if (*ready)
		json_decref(bad);
	else
		json_object_set_new(o, "not_ready", bad);
	return o;
}

/* --------------------------------------------------------------- metrics */

/* The peers gauges come from a dump of each interface, which on a large
 * one holds installs back while it runs (wireguard-go serialises its
 * requests): a scrape starts one only if the last took at most 1% of the
 * time since (at most PACE_MAX_NS between two), else it reports the
 * counts of the last (as the heartbeat). One that never answers holds
 * the next back PACE_MAX_NS at most. */
#define PACE_MAX_NS (60 * 1000000000ull)
static struct {
	uint64_t t0, next_ns;
} pace;

static void on_scrape_dump(void *arg, struct wggwd_inst *in, const char *ifname, int status,
			   const struct wggwd_peer_state *peers, size_t n, size_t stride)
{
	(void)arg;
	if (!status)
		observe_set_installer_gauges(in, ifname, peers, n, stride);
}

static void on_scrape_done(void *arg)
{
	struct scrape *s = arg;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (s->dumped) {
		uint64_t now = now_mono_ns(), wait = (now - pace.t0) * 100;

		pace.next_ns = now + (wait < PACE_MAX_NS ? wait : PACE_MAX_NS);
	}
	if (s->c) {
		s->c->scrape = NULL;
		f = open_memstream(&text, &len);
		if (f) {
			prom_write(f);
			fclose(f);
		}
		if (text)
			respond(s->c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
		else
			respond(s->c, 500, "text/plain", "out of memory\n", 14);
		free(text);
	}
	free(s);
}

static void route(struct conn *c)
{
	char *q = strchr(c->url, '?');
	bool ready;

	if (q)
		*q = '\0';
	c->get = c->parser.method != HTTP_HEAD;
	if (c->parser.method != HTTP_GET && c->parser.method != HTTP_HEAD) {
		respond(c, 405, "text/plain", "GET only\n", 9);
		return;
	}
	if (!strcmp(c->url, "/metrics")) {
		struct scrape *s = calloc(1, sizeof(*s));

		if (!s) {
			respond(c, 500, "text/plain", "out of memory\n", 14);
			return;
		}
		s->c = c;
		c->scrape = s;
		/* the peers gauges from the interfaces, then the text */
		if (now_mono_ns() < pace.next_ns) {
			on_scrape_done(s);
			return;
		}
		s->dumped = true;
		pace.t0 = now_mono_ns();
		pace.next_ns = pace.t0 + PACE_MAX_NS; /* one at a time */
		if (observe_dump_all(on_scrape_dump, on_scrape_done, s) < 0)
			on_scrape_done(s);
		return;
	}
	if (!strcmp(c->url, "/healthz")) {
		respond(c, 200, "text/plain", "ok\n", 3);
		return;
	}
	if (!strcmp(c->url, "/readyz")) {
		json_t *o = ready_json(&ready);

		respond_json(c, ready ? 200 : 503, o);
		return;
	}
	respond(c, 404, "text/plain", "not found (try /metrics, /healthz, /readyz)\n", 44);
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;

	if (c->url_len + len >= sizeof(c->url))
		return 1;
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	c->url[c->url_len] = '\0';
	return 0;
}

static int on_complete(http_parser *p)
{
	struct conn *c = p->data;

	c->complete = true;
	http_parser_pause(p, 1);
	return 0;
}

static void on_alloc(uv_handle_t *hd, size_t hint, uv_buf_t *b)
{
	struct conn *c = hd->data;

	(void)hint;
	*b = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = st->data;

	if (n < 0) {
		conn_close(c);
		return;
	}
	if (!n || c->complete)
		return;
	http_parser_execute(&c->parser, &h.settings, b->base, n);
	if (c->complete) {
		uv_read_stop(st);
		route(c);
	} else if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
		respond(c, 400, "text/plain", "bad request\n", 12);
	}
}

static void on_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	uv_tcp_init(server->loop, &c->tcp);
	uv_timer_init(server->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	h.conns++;
	c->next = h.list;
	if (h.list)
		h.list->prev = c;
	h.list = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) || h.conns > HTTP_MAX_CONNS) {
		conn_close(c);
		return;
	}
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->get = true;
	uv_timer_start(&c->timer, on_timeout, HTTP_TIMEOUT_MS, 0);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

double prom_started_mono;

int http_start(uv_loop_t *loop, const struct sockaddr *addr)
{
	char name[64] = "?";
	struct timespec up;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &up);
	prom_started_mono = up.tv_sec + up.tv_nsec / 1e9;
	h.settings.on_url = on_url;
	h.settings.on_message_complete = on_complete;
	uv_tcp_init(loop, &h.server);
	h.running = true;
	if (addr->sa_family == AF_INET)
		uv_ip4_name((const struct sockaddr_in *)addr, name, sizeof(name));
	else
		uv_ip6_name((const struct sockaddr_in6 *)addr, name, sizeof(name));
	ret = uv_tcp_bind(&h.server, addr, 0);
	if (!ret)
		ret = uv_listen((uv_stream_t *)&h.server, 64, on_connection);
	if (ret) {
		log_msg(WGGWD_LOG_ERROR, P, "http_listen %s port %d: %s", name,
			ntohs(((const struct sockaddr_in *)addr)->sin_port), uv_strerror(ret));
		return ret;
	}
	log_msg(WGGWD_LOG_INFO, P, "serving /metrics, /healthz, /readyz on %s port %d", name,
		ntohs(((const struct sockaddr_in *)addr)->sin_port));
	return 0;
}

void http_stop(void)
{
	struct conn *c;

	for (c = h.list; c; c = c->next)
		conn_close(c);
	if (h.running)
		uv_close((uv_handle_t *)&h.server, NULL);
	h.running = false;
}
