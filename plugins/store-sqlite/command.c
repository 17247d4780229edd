// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * Operators' commands (`wggwd ctl`, ops.command):
 *   cache-flush {"key": K?, "negative": bool}  forget cached answers: the
 *       negative ones ("unknown"), and unless negative, the pulled ones
 *       too; of one key, or of every key. Pushed peers are not a cache.
 *   cache-show {"key": K}  what the cache holds for K: a pulled answer's
 *       expiry and lease, or a negative answer's.
 * Both go through the batch (which reads before the database), so the
 * next lookup sees them at once; the commit follows as usual.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* The value of "name" in a flat JSON object of ours: a string into buf,
 * or true/false. Enough for the core's args; anything else reads as
 * absent. */
static bool arg_str(const char *args, const char *name, char *buf, size_t len)
{
	char pat[32];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":", name);
	p = strstr(args, pat);
	if (!p)
		return false;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	if (*p != '"')
		return false;
	e = strchr(++p, '"');
	if (!e || (size_t)(e - p) >= len)
		return false;
	memcpy(buf, p, e - p);
	buf[e - p] = '\0';
	return true;
}

static bool arg_true(const char *args, const char *name)
{
	char pat[32];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", name);
	p = strstr(args, pat);
	if (!p)
		return false;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	return !strncmp(p, "true", 4);
}

/* Mark one key's cached answers to be forgotten. */
static void flush_key(struct ctx *c, const uint8_t *key, bool negative_only)
{
	struct pend *e = batch_get(c, key);

	e->what = (e->what | P_NEG_DEL) & ~P_NEG;
	if (!negative_only) {
		if (e->what & P_PEER) {
			pulled_free(e->pp);
			e->pp = NULL;
		}
		e->what = (e->what | P_FORGET) & ~(P_PEER | P_LIVE);
	}
}

/* Every key of a table's rows (sql: one column, the key). The keys are
 * read first: a full batch commits, which must not happen mid-query. */
static long flush_rows(struct ctx *c, const char *sql, bool negative_only)
{
	uint8_t (*keys)[WGGWD_KEY_LEN] = NULL, (*k)[WGGWD_KEY_LEN];
	size_t n = 0, cap = 0, i;
	sqlite3_stmt *s;
	int rc;

	batch_read(c);
	if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(s, 0) != WGGWD_KEY_LEN)
			continue;
		if (n == cap) {
			k = realloc(keys, (cap = cap ? cap * 2 : 64) * sizeof(*keys));
			if (!k) {
				rc = SQLITE_NOMEM;
				break;
			}
			keys = k;
		}
		memcpy(keys[n++], sqlite3_column_blob(s, 0), WGGWD_KEY_LEN);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		free(keys);
		return -EIO;
	}
	for (i = 0; i < n; i++)
		flush_key(c, keys[i], negative_only);
	free(keys);
	return n;
}

static int cache_flush(struct ctx *c, struct wggwd_cmd *cmd, const char *args)
{
	bool negative_only = arg_true(args, "negative");
	char b64[WG_KEY_B64_LEN + 8], out[128];
	uint8_t key[WGGWD_KEY_LEN];
	long n = 0, m = 0;
	size_t i;

	if (arg_str(args, "key", b64, sizeof(b64))) {
		if (wg_key_from_b64(key, b64)) {
			c->host->reply(cmd, -EINVAL, "\"not a public key\"");
			return 0;
		}
		flush_key(c, key, negative_only);
		n = 1;
	} else {
		/* what waits in the batch, then what the tables hold */
		for (i = 0; i < c->pend_n; i++) {
			struct pend *e = &c->pend[i];

			if ((e->what & P_NEG) || (!negative_only && (e->what & P_PEER)))
				flush_key(c, e->key, negative_only);
		}
		n = flush_rows(c, "SELECT key FROM negative", true);
		if (!negative_only && n >= 0)
			m = flush_rows(c, "SELECT key FROM peer WHERE origin IN (1, 3) AND removed = 0",
				       false);
		if (n < 0 || m < 0) {
			c->host->reply(cmd, -EIO, "\"could not read the cache\"");
			batch_added(c);
			return 0;
		}
	}
	batch_added(c);
	c->host->log(c->self, WGGWD_LOG_INFO, "cache flush%s%s%s: %ld %s forgotten",
		     negative_only ? " (negative)" : "", n == 1 && !m && b64[0] ? " " : "",
		     n == 1 && !m && b64[0] ? b64 : "", n + m, n + m == 1 ? "key" : "keys");
	snprintf(out, sizeof(out), "{\"flushed\":%ld,\"negative_only\":%s}", n + m,
		 negative_only ? "true" : "false");
	c->host->reply(cmd, 0, out);
	return 0;
}

static int cache_show(struct ctx *c, struct wggwd_cmd *cmd, const char *args)
{
	char b64[WG_KEY_B64_LEN + 8], out[256];
	uint8_t key[WGGWD_KEY_LEN];
	int64_t now = store_now_ms(c), neg = 0;
	struct pend *e;
	struct row r;
	int n;

	if (!arg_str(args, "key", b64, sizeof(b64)) || wg_key_from_b64(key, b64)) {
		c->host->reply(cmd, -EINVAL, "\"cache-show takes a public key\"");
		return 0;
	}
	row_get(c, key, &r, NULL);
	e = batch_find(c, key);
	if (e && (e->what & (P_NEG | P_NEG_DEL)))
		neg = e->what & P_NEG ? e->neg_expires : 0;
	else if (row_get1(c, S_NEG_GET, key, &neg, NULL, NULL, 0) != 1)
		neg = 0;
	if (r.found && !r.removed &&
	    (r.origin == WGGWD_ORIGIN_PULL || r.origin == WGGWD_ORIGIN_STATIC)) {
		n = snprintf(out, sizeof(out), "{\"cached\":true,\"origin\":\"%s\"",
			     r.origin == WGGWD_ORIGIN_PULL ? "pull" : "static");
		if (r.has_expires)
			n += snprintf(out + n, sizeof(out) - n, ",\"expires_at\":%.3f,\"expired\":%s",
				      r.expires / 1000.0, r.expires <= now ? "true" : "false");
		if (r.has_lease)
			n += snprintf(out + n, sizeof(out) - n, ",\"lease_expires_at\":%lld",
				      (long long)r.lease);
		snprintf(out + n, sizeof(out) - n, "}");
	} else if (r.found && !r.removed && r.origin == WGGWD_ORIGIN_PUSH) {
		n = snprintf(out, sizeof(out), "{\"cached\":false,\"pushed\":true");
		if (r.has_lease)
			n += snprintf(out + n, sizeof(out) - n, ",\"lease_expires_at\":%lld",
				      (long long)r.lease);
		snprintf(out + n, sizeof(out) - n, "}");
	} else if (neg > now) {
		snprintf(out, sizeof(out), "{\"cached\":false,\"negative_until\":%.3f}", neg / 1000.0);
	} else {
		snprintf(out, sizeof(out), "{\"cached\":false}");
	}
	c->host->reply(cmd, 0, out);
	return 0;
}

int ss_command(void *ctx, struct wggwd_cmd *cmd, const char *verb, const char *args)
{
	struct ctx *c = ctx;

	if (!c->db || c->stopping)
		return -ENOTSUP;
	if (!strcmp(verb, "cache-flush"))
		return cache_flush(c, cmd, args ? args : "");
	if (!strcmp(verb, "cache-show"))
		return cache_show(c, cmd, args ? args : "");
	return -ENOTSUP;
}
