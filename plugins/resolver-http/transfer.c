// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * resolver-http: the transfers. libcurl's multi interface runs on the
 * daemon's libuv loop: one uv_poll_t per socket curl asks us to watch,
 * one uv_timer_t for curl's timeouts; no thread per request. Requests (one
 * key, or a batch) wait in two FIFOs for one of max_concurrency slots:
 * returning keys' first, always.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "resolver_http.h"

void reqlist_add(struct reqlist *l, struct req *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

void reqlist_del(struct reqlist *l, struct req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	l->n--;
}

struct req *req_new(struct ctx *c, size_t scap, int q)
{
	struct req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->c = c;
	r->q = q;
	r->scap = scap;
	r->s = &r->one;
	if (scap > 1 && !(r->s = calloc(scap, sizeof(*r->s)))) {
		free(r);
		return NULL;
	}
	return r;
}

void req_free(struct req *r)
{
	if (!r)
		return;
	if (r->easy)
		curl_easy_cleanup(r->easy);
	if (r->body) {
		sodium_memzero(r->body, r->cap); /* may hold a preshared key */
		free(r->body);
	}
	if (r->s && r->s != &r->one)
		free(r->s);
	free(r->post);
	free(r);
}

void req_complete(struct ctx *c, struct req *r, int v, uint32_t why)
{
	size_t i;

	for (i = 0; i < r->ns; i++) {
		struct wggwd_item *it = r->s[i].it;

		if (v >= 0)
			it->reason = why;
		c->host->complete(c->self, it, v >= 0 ? v : r->s[i].verdict);
	}
	req_free(r);
}

size_t transfer_on_body(char *data, size_t size, size_t n, void *arg)
{
	struct req *r = arg;
	size_t len = size * n;

	if (!len) /* curl may say so for an empty body: r->body may be NULL */
		return 0;
	/* a batch's answer may be as big as its keys' answers */
	if (r->len + len > r->c->conf->max_body * (r->ns > 1 ? r->ns : 1)) {
		r->too_big = true;
		return 0; /* CURLE_WRITE_ERROR */
	}
	if (r->len + len > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		uint8_t *b;

		while (cap < r->len + len)
			cap *= 2;
		b = malloc(cap);
		if (!b)
			return 0;
		if (r->body) {
			memcpy(b, r->body, r->len);
			sodium_memzero(r->body, r->cap);
			free(r->body);
		}
		r->body = b;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, len);
	r->len += len;
	return len;
}

/* The URL with every {public_key} replaced by the escaped base64 key. */
static char *make_url(const char *tmpl, const uint8_t *key)
{
	char b64[WG_KEY_B64_LEN], esc[3 * WG_KEY_B64_LEN], *out, *o;
	const char *s, *hit;
	size_t n = 0, i;

	wg_key_to_b64(b64, key);
	for (i = 0; b64[i]; i++) {
		if (b64[i] == '+' || b64[i] == '/' || b64[i] == '=') {
			snprintf(esc + n, 4, "%%%02X", (unsigned char)b64[i]);
			n += 3;
		} else {
			esc[n++] = b64[i];
		}
	}
	esc[n] = '\0';
	out = malloc(strlen(tmpl) / 12 * n + strlen(tmpl) + 1);
	if (!out)
		return NULL;
	for (o = out, s = tmpl; (hit = strstr(s, "{public_key}")); s = hit + 12) {
		memcpy(o, s, hit - s);
		o += hit - s;
		memcpy(o, esc, n);
		o += n;
	}
	strcpy(o, s);
	return out;
}

/* A batch's body: the JSON list of its keys, base64. */
static char *make_list(const struct req *r)
{
	char *out = malloc(r->ns * (WG_KEY_B64_LEN + 3) + 3), *o = out;
	size_t i;

	if (!out)
		return NULL;
	*o++ = '[';
	for (i = 0; i < r->ns; i++) {
		if (i)
			*o++ = ',';
		*o++ = '"';
		wg_key_to_b64(o, r->s[i].it->public_key);
		o += strlen(o);
		*o++ = '"';
	}
	*o++ = ']';
	*o = '\0';
	return out;
}

static int req_start(struct ctx *c, struct req *r)
{
	const struct conf *cf = c->conf;
	char *url = NULL;
	CURLMcode mc;

	r->easy = curl_easy_init();
	if (!r->easy)
		return -ENOMEM;
	if (cf->batch) {
		r->post = make_list(r);
		if (!r->post)
			return -ENOMEM;
		curl_easy_setopt(r->easy, CURLOPT_URL, c->batch_url);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->post);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(r->post));
		(*c->c[C_BATCHES])++;
		*c->c[C_BATCH_KEYS] += r->ns;
	} else {
		url = make_url(cf->url, r->s[0].it->public_key);
		if (!url)
			return -ENOMEM;
		curl_easy_setopt(r->easy, CURLOPT_URL, url);
		free(url); /* curl keeps a copy */
	}
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, transfer_on_body);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)cf->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)cf->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L); /* the token stays here */
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "wggwd/" WGGWD_VERSION);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, cf->tls_verify ? 1L : 0L);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, cf->tls_verify ? 2L : 0L);
	if (cf->ca_file)
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, cf->ca_file);
	mc = curl_multi_add_handle(c->multi, r->easy);
	if (mc != CURLM_OK) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "curl_multi_add_handle: %s",
			     curl_multi_strerror(mc));
		return -EIO;
	}
	reqlist_add(&c->running, r);
	(*c->in_flight)++;
	(*c->c[C_REQUESTS])++;
	return 0;
}

/* The next request to start: returning keys first, always; fresh ones
 * leave a slot free for them once there are a few. */
static struct req *next_req(struct ctx *c)
{
	size_t max = c->conf->max_concurrency;

	if (c->running.n >= max)
		return NULL;
	if (c->queue[Q_RETURNING].head)
		return c->queue[Q_RETURNING].head;
	if (max >= 4 && c->running.n >= max - 1)
		return NULL;
	return c->queue[Q_FRESH].head;
}

/* Start what waits in the FIFOs while there is room. What waited longer
 * than a request may take is dropped (the client has sent a new
 * initiation by then), and so is all of it while the breaker is open. */
void transfer_pump(struct ctx *c)
{
	uint64_t now = mono_ms(c);
	struct req *r;

	while (!c->stopping && (r = next_req(c))) {
		reqlist_del(&c->queue[r->q], r);
		c->waiting[r->q] -= r->ns;
		*c->queued -= r->ns;
		if (now - r->queued_ms > (uint64_t)c->conf->timeout_ms ||
		    (c->breaker != B_CLOSED && !r->probe)) {
			bool open = c->breaker != B_CLOSED && !r->probe;

			*c->c[open ? C_BREAKER_REFUSED : C_QUEUE_EXPIRED] += r->ns;
			if (r->probe)
				c->probe_out = false;
			req_complete(c, r, WGGWD_DROP,
				     open ? WGGWD_R_BREAKER_OPEN : WGGWD_R_QUEUE_TIMEOUT);
			continue;
		}
		if (req_start(c, r)) {
			if (r->probe)
				c->probe_out = false;
			req_complete(c, r, WGGWD_ERROR, WGGWD_R_INTERNAL);
		}
	}
}

static void check_done(struct ctx *c)
{
	CURLMsg *msg;
	int left;

	/* completing an item may stop this stage (the last item of a drain):
	 * then the multi handle is gone */
	while (c->multi && (msg = curl_multi_info_read(c->multi, &left))) {
		CURL *easy = msg->easy_handle;
		CURLcode res = msg->data.result;
		struct req *r = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
		curl_multi_remove_handle(c->multi, easy);
		reqlist_del(&c->running, r);
		(*c->in_flight)--;
		rh_judge(c, r, res);
		transfer_pump(c);
		req_complete(c, r, -1, 0);
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct sock *sk = h->data;
	struct ctx *c = sk->c;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->multi, sk->fd, flags, &running); /* may close sk */
	check_done(c);
}

static void on_timeout(uv_timer_t *t)
{
	struct ctx *c = t->data;
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(c);
}

void transfer_on_closed(uv_handle_t *h)
{
	struct ctx *c;

	if (h->type == UV_POLL) {
		struct sock *sk = h->data;

		c = sk->c;
		free(sk);
	} else {
		c = h->data;
	}
	if (--c->open_handles == 0 && c->stopping && !c->stopped) {
		c->stopped = true;
		c->host->stopped(c->self);
	}
}

void transfer_sock_close(struct ctx *c, struct sock *sk)
{
	if (sk->prev)
		sk->prev->next = sk->next;
	else
		c->socks = sk->next;
	if (sk->next)
		sk->next->prev = sk->prev;
	uv_close((uv_handle_t *)&sk->poll, transfer_on_closed);
}

int transfer_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct ctx *c = userp;
	struct sock *sk = socketp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (sk) {
			curl_multi_assign(c->multi, fd, NULL);
			transfer_sock_close(c, sk);
		}
		return 0;
	}
	if (!sk) {
		sk = calloc(1, sizeof(*sk));
		if (!sk)
			return -1;
		if (uv_poll_init_socket(c->loop, &sk->poll, fd)) {
			free(sk);
			return -1;
		}
		sk->c = c;
		sk->fd = fd;
		sk->poll.data = sk;
		sk->next = c->socks;
		if (c->socks)
			c->socks->prev = sk;
		c->socks = sk;
		c->open_handles++;
		curl_multi_assign(c->multi, fd, sk);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&sk->poll, events, on_poll);
	return 0;
}

int transfer_on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct ctx *c = userp;

	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else /* 0: as soon as the loop turns (not from inside curl) */
		uv_timer_start(&c->timer, on_timeout, timeout_ms, 0);
	return 0;
}

