// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-wsock: the HTTP/1.1 upgrade request (RFC 6455 4.2.1), parsed by
 * http-parser, with the WebSocket rules checked here on top: GET, HTTP/1.1,
 * Host, Upgrade: websocket, Connection: ... upgrade ..., version 13, a
 * 16-byte key, the bearer token, then the path (so that a client without
 * the token learns nothing about paths). The token is compared as keyed
 * BLAKE2b digests, in constant time whatever the length sent.
 * Sec-WebSocket-Accept is the SHA-1 (nettle) of the key and the GUID.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <nettle/sha1.h>
#include <sodium.h>

#include "wsock.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void upgrade_reply(struct conn *k, int code)
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

/* Digests of the same length compared in constant time: neither the
 * token's bytes nor its length show in how long a wrong guess takes. */
static bool token_ok(struct ctx *c, const struct conn *k)
{
	uint8_t h[sizeof(c->token_hash)];
	size_t n = strlen(k->auth);
	bool ok;

	if (!c->token_len)
		return true;
	if (!c->token_hashed) {
		crypto_generichash(c->token_hash, sizeof(c->token_hash), c->token, c->token_len,
				   c->token_key, sizeof(c->token_key));
		c->token_hashed = true;
	}
	if (!(k->seen & H_AUTH) || n < 7 || strncasecmp(k->auth, "Bearer ", 7))
		return false;
	crypto_generichash(h, sizeof(h), (const uint8_t *)k->auth + 7, n - 7, c->token_key,
			   sizeof(c->token_key));
	ok = !sodium_memcmp(h, c->token_hash, sizeof(h));
	sodium_memzero(h, sizeof(h));
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
		upgrade_reply(k, 400);
		return;
	}
	if ((k->seen & H_BADVERSION) && !(k->seen & H_BAD)) {
		upgrade_reply(k, 426);
		return;
	}
	if ((k->seen & need) != need) {
		upgrade_reply(k, 400);
		return;
	}
	/* authenticate, then route */
	if (!token_ok(c, k)) {
		sodium_memzero(k->auth, sizeof(k->auth));
		upgrade_reply(k, 401);
		return;
	}
	sodium_memzero(k->auth, sizeof(k->auth));
	if (strcmp(k->url, c->conf->path)) {
		upgrade_reply(k, 404);
		return;
	}
	ret = conn_relay_open(k);
	if (ret) {
		c->host->log_limited(c->self, WGGWD_LOG_WARN, "relay socket: %s", uv_strerror(ret));
		conn_close(k);
		return;
	}
	if (conn_ws_open(k)) {
		conn_close(k);
		return;
	}
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
		conn_ws_feed(k, rest, rest_len);
}

void upgrade_feed(struct conn *k, const uint8_t *p, size_t len)
{
	size_t n;

	if (k->hdr_bytes + len > HDR_MAX) {
		upgrade_reply(k, 400);
		return;
	}
	n = http_parser_execute(&k->hp, &hp_settings, (const char *)p, len);
	k->hdr_bytes += n;
	if (HTTP_PARSER_ERRNO(&k->hp) != HPE_OK) {
		upgrade_reply(k, 400);
		return;
	}
	if (k->headers_done)
		upgrade(k, p + n, len - n);
}
