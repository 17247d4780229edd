// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * store-sqlite: peers to rows and back (allowed IPs, endpoints), and the
 * single-row reads and writes the other files are made of.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "store.h"

/* Run a one-shot statement that returns no rows we care about. */
int row_step(struct ctx *c, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	c->host->log(c->self, WGGWD_LOG_WARN, "%s: %s", sqlite3_sql(s), sqlite3_errmsg(c->db));
	return sqlite_errno(c->db, rc);
}

/* One statement keyed by ?1, with an optional blob and up to two ints. */
int row_bind_step(struct ctx *c, enum stmt which, const uint8_t *key, const void *blob,
		  size_t blob_len, int nargs, int64_t a, int64_t b)
{
	sqlite3_stmt *s = c->st[which];
	int i = 2;

	sqlite3_bind_blob(s, 1, key, WGGWD_KEY_LEN, SQLITE_STATIC);
	if (blob)
		sqlite3_bind_blob(s, i++, blob, blob_len, SQLITE_STATIC);
	if (nargs > 0)
		sqlite3_bind_int64(s, i++, a);
	if (nargs > 1)
		sqlite3_bind_int64(s, i++, b);
	return row_step(c, s);
}

/* ------------------------------------------------------------- codecs */

/* Any number of allowed IPs, ALLOWED_REC bytes each; SQLite frees it. */
static int allowed_bind(sqlite3_stmt *s, int col, const struct wggwd_peer *p)
{
	uint32_t i, n = p->has & WGGWD_PEER_HAS_ALLOWED_IPS ? p->n_allowed : 0;
	uint8_t *b;

	if (!n)
		return sqlite3_bind_zeroblob(s, col, 0); /* not NULL: the column is NOT NULL */
	b = malloc((size_t)n * ALLOWED_REC);
	if (!b)
		return SQLITE_NOMEM;
	for (i = 0; i < n; i++) {
		b[i * ALLOWED_REC] = p->allowed[i].family == AF_INET6 ? 6 : 4;
		b[i * ALLOWED_REC + 1] = p->allowed[i].cidr;
		memcpy(b + (size_t)i * ALLOWED_REC + 2, p->allowed[i].addr, 16);
	}
	return sqlite3_bind_blob64(s, col, b, (sqlite3_uint64)n * ALLOWED_REC, free);
}

/* Append the allowed IPs of a row to the item's peer (checked first:
 * nothing is appended from a malformed blob). */
static int allowed_decode(struct ctx *c, struct wggwd_item *it, const uint8_t *b, size_t len)
{
	size_t i, n = len / ALLOWED_REC;
	struct wggwd_allowed_ip *a;

	if (len % ALLOWED_REC)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		uint8_t fam = b[i * ALLOWED_REC], cidr = b[i * ALLOWED_REC + 1];

		if ((fam != 4 && fam != 6) || cidr > (fam == 4 ? 32 : 128))
			return -EINVAL;
	}
	if (!n)
		return 0;
	a = c->host->allowed_reserve(c->self, it, n);
	if (!a)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		a[i].family = b[i * ALLOWED_REC] == 4 ? AF_INET : AF_INET6;
		a[i].cidr = b[i * ALLOWED_REC + 1];
		memcpy(a[i].addr, b + i * ALLOWED_REC + 2, 16);
	}
	return 0;
}

size_t endpoint_encode(uint8_t out[ENDPOINT_REC], const union wggwd_sockaddr *a)
{
	memset(out, 0, ENDPOINT_REC);
	if (a->sa.sa_family == AF_INET) {
		out[0] = 4;
		memcpy(out + 1, &a->in4.sin_port, 2);
		memcpy(out + 3, &a->in4.sin_addr, 4);
	} else if (a->sa.sa_family == AF_INET6) {
		out[0] = 6;
		memcpy(out + 1, &a->in6.sin6_port, 2);
		memcpy(out + 3, &a->in6.sin6_addr, 16);
	} else {
		return 0;
	}
	return ENDPOINT_REC;
}

int endpoint_decode(union wggwd_sockaddr *a, const uint8_t *b, size_t len)
{
	memset(a, 0, sizeof(*a));
	if (len != ENDPOINT_REC || (b[0] != 4 && b[0] != 6))
		return -EINVAL;
	if (b[0] == 4) {
		a->in4.sin_family = AF_INET;
		memcpy(&a->in4.sin_port, b + 1, 2);
		memcpy(&a->in4.sin_addr, b + 3, 4);
	} else {
		a->in6.sin6_family = AF_INET6;
		memcpy(&a->in6.sin6_port, b + 1, 2);
		memcpy(&a->in6.sin6_addr, b + 3, 16);
	}
	return 0;
}

/* -------------------------------------------------------------- peers */

/* Forget a peer's config; the core's `size` and allowed array stay. */
void peer_clear(struct wggwd_peer *p)
{
	p->has = 0;
	memset(p->public_key, 0, sizeof(p->public_key));
	sodium_memzero(p->preshared_key, sizeof(p->preshared_key));
	memset(&p->endpoint, 0, sizeof(p->endpoint));
	p->keepalive = 0;
	p->origin = 0;
	p->n_allowed = 0;
	p->version = 0;
	p->ttl_s = 0;
	p->expires_at = 0;
}

/* The item's peer := a peer of ours (a pulled answer in the batch). */
int peer_copy(struct ctx *c, struct wggwd_item *it, const struct wggwd_peer *from)
{
	struct wggwd_peer *p = it->peer;
	struct wggwd_allowed_ip *a;

	peer_clear(p);
	p->has = from->has;
	memcpy(p->public_key, from->public_key, WGGWD_KEY_LEN);
	memcpy(p->preshared_key, from->preshared_key, WGGWD_KEY_LEN);
	p->endpoint = from->endpoint;
	p->keepalive = from->keepalive;
	p->origin = from->origin;
	p->version = from->version;
	p->ttl_s = from->ttl_s;
	p->expires_at = from->expires_at;
	if (!from->n_allowed)
		return 0;
	a = c->host->allowed_reserve(c->self, it, from->n_allowed);
	if (!a) {
		peer_clear(p);
		return -ENOMEM;
	}
	memcpy(a, from->allowed, (size_t)from->n_allowed * sizeof(*a));
	return 0;
}

void pulled_free(struct pulled *pp)
{
	if (!pp)
		return;
	free(pp->peer.allowed);
	sodium_memzero(pp, sizeof(*pp));
	free(pp);
}

/* --------------------------------------------------------------- rows */

static int peer_put(struct ctx *c, sqlite3_stmt *s, const struct wggwd_peer *p, int origin,
		    bool removed, bool has_expires, int64_t expires)
{
	uint8_t ep[ENDPOINT_REC];

	sqlite3_bind_blob(s, 1, p->public_key, WGGWD_KEY_LEN, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, origin);
	sqlite3_bind_int(s, 3, removed);
	if (p->has & WGGWD_PEER_HAS_VERSION)
		sqlite3_bind_int64(s, 4, (int64_t)p->version);
	sqlite3_bind_int(s, 5, p->has & WGGWD_PEER_HAS_KEEPALIVE ? p->keepalive : 0);
	if (allowed_bind(s, 6, p) != SQLITE_OK) {
		sqlite3_clear_bindings(s);
		return -ENOMEM;
	}
	if (p->has & WGGWD_PEER_HAS_PRESHARED_KEY)
		sqlite3_bind_blob(s, 7, p->preshared_key, WGGWD_KEY_LEN, SQLITE_STATIC);
	if ((p->has & WGGWD_PEER_HAS_ENDPOINT) && endpoint_encode(ep, &p->endpoint))
		sqlite3_bind_blob(s, 8, ep, ENDPOINT_REC, SQLITE_STATIC);
	if (has_expires)
		sqlite3_bind_int64(s, 9, expires);
	if (p->has & WGGWD_PEER_HAS_EXPIRES)
		sqlite3_bind_int64(s, 10, p->expires_at);
	sqlite3_bind_int64(s, 11, store_now_ms(c));
	return row_step(c, s);
}

int row_put(struct ctx *c, const struct wggwd_peer *p, int origin, bool removed,
	    bool has_expires, int64_t expires)
{
	return peer_put(c, c->st[S_PEER_PUT], p, origin, removed, has_expires, expires);
}

/* A pushed config (or tombstone) in one statement: 0 written, 1 not (the
 * row holds a newer version), or -errno. */
int row_push(struct ctx *c, const struct wggwd_peer *p, bool removed)
{
	int ret = peer_put(c, c->st[S_PEER_PUSH], p, WGGWD_ORIGIN_PUSH, removed, false, 0);

	return ret ? ret : !sqlite3_changes(c->db);
}

/* Fill the item's peer from the row being stepped. */
static int row_to_peer(struct ctx *c, sqlite3_stmt *s, const uint8_t *key, const struct row *r,
		       struct wggwd_item *it)
{
	struct wggwd_peer *p = it->peer;
	const void *psk = sqlite3_column_blob(s, 5);
	const void *ep = sqlite3_column_blob(s, 6);
	int ret = 0;

	peer_clear(p);
	memcpy(p->public_key, key, WGGWD_KEY_LEN);
	p->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS | WGGWD_PEER_HAS_KEEPALIVE;
	p->keepalive = sqlite3_column_int(s, 3);
	ret = allowed_decode(c, it, sqlite3_column_blob(s, 4), sqlite3_column_bytes(s, 4));
	if (ret)
		return ret == -ENOMEM ? ret : -EUCLEAN;
	if (psk) {
		if (sqlite3_column_bytes(s, 5) != WGGWD_KEY_LEN)
			return -EUCLEAN;
		memcpy(p->preshared_key, psk, WGGWD_KEY_LEN);
		p->has |= WGGWD_PEER_HAS_PRESHARED_KEY;
	}
	if (ep) {
		if (endpoint_decode(&p->endpoint, ep, sqlite3_column_bytes(s, 6)))
			return -EUCLEAN;
		p->has |= WGGWD_PEER_HAS_ENDPOINT;
	}
	if (r->has_version) {
		p->version = r->version;
		p->has |= WGGWD_PEER_HAS_VERSION;
	}
	if (r->has_lease) {
		p->expires_at = r->lease;
		p->has |= WGGWD_PEER_HAS_EXPIRES;
	}
	p->origin = r->origin;
	return 0;
}

/* Read a peer row (the batch first); fill it->peer (if it) with its
 * config. A pulled answer the batch is about to forget reads as absent. */
int row_get(struct ctx *c, const uint8_t *key, struct row *r, struct wggwd_item *it)
{
	sqlite3_stmt *s = c->st[S_PEER_GET];
	struct pend *e = batch_find(c, key);
	int rc, ret = 0;

	memset(r, 0, sizeof(*r));
	if (e && (e->what & P_PEER)) {
		const struct wggwd_peer *pp = &e->pp->peer;

		r->found = true;
		r->origin = pp->origin;
		r->has_version = pp->has & WGGWD_PEER_HAS_VERSION;
		r->version = pp->version;
		r->has_expires = true;
		r->expires = e->pp->expires;
		r->has_lease = pp->has & WGGWD_PEER_HAS_EXPIRES;
		r->lease = pp->expires_at;
		if (e->what & P_LIVE) {
			r->hs = e->live_hs;
			r->last_ep = e->live_ep;
		}
		return it ? peer_copy(c, it, pp) : 0;
	}
	batch_read(c);
	sqlite3_bind_blob(s, 1, key, WGGWD_KEY_LEN, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		r->found = true;
		r->origin = sqlite3_column_int(s, 0);
		r->removed = sqlite3_column_int(s, 1);
		r->has_version = sqlite3_column_type(s, 2) != SQLITE_NULL;
		r->version = (uint64_t)sqlite3_column_int64(s, 2);
		r->has_expires = sqlite3_column_type(s, 7) != SQLITE_NULL;
		r->expires = sqlite3_column_int64(s, 7);
		r->has_lease = sqlite3_column_type(s, 8) != SQLITE_NULL;
		r->lease = sqlite3_column_int64(s, 8);
		r->hs = sqlite3_column_int64(s, 9);
		if (sqlite3_column_type(s, 10) == SQLITE_BLOB)
			endpoint_decode(&r->last_ep, sqlite3_column_blob(s, 10),
					sqlite3_column_bytes(s, 10));
		if (e && (e->what & P_LIVE)) {
			r->hs = e->live_hs;
			r->last_ep = e->live_ep;
		}
		if (e && (e->what & P_FORGET) &&
		    (r->origin == WGGWD_ORIGIN_PULL || r->origin == WGGWD_ORIGIN_STATIC))
			memset(r, 0, sizeof(*r));
		else if (it)
			ret = row_to_peer(c, s, key, r, it);
	} else if (rc != SQLITE_DONE) {
		ret = sqlite_errno(c->db, rc);
	}
	sqlite3_reset(s);
	if (ret) {
		char b64[WG_KEY_B64_LEN];

		(*c->c[C_READ_ERRORS])++;
		wg_key_to_b64(b64, key);
		c->host->log(c->self, WGGWD_LOG_WARN, "peer %s: unreadable row (%s); treated as unknown",
			     b64, ret == -EUCLEAN ? "malformed" : ret == -ENOMEM ? "out of memory" :
			     sqlite3_errmsg(c->db));
		if (it)
			peer_clear(it->peer);
		r->found = false;
	}
	return ret;
}

/* Single-row reads from the database: 1 if found, 0 if not, -errno. */
int row_get1(struct ctx *c, enum stmt which, const uint8_t *key, int64_t *a, int64_t *b,
	     uint8_t *blob, size_t blob_len)
{
	sqlite3_stmt *s = c->st[which];
	int rc, ret = 0;

	batch_read(c);
	sqlite3_bind_blob(s, 1, key, WGGWD_KEY_LEN, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		ret = 1;
		if (blob) {
			if ((size_t)sqlite3_column_bytes(s, 0) != blob_len)
				ret = 0; /* malformed: as if absent */
			else
				memcpy(blob, sqlite3_column_blob(s, 0), blob_len);
		} else {
			*a = sqlite3_column_int64(s, 0);
			if (b)
				*b = sqlite3_column_int64(s, 1);
		}
	} else if (rc != SQLITE_DONE) {
		ret = sqlite_errno(c->db, rc);
		(*c->c[C_READ_ERRORS])++;
	}
	sqlite3_reset(s);
	return ret;
}
