// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * resolver-static: answers lookups from peers listed in the YAML or in a
 * JSON file. What test clusters swap in for the control plane, and the
 * demo's default.
 *
 * peers_file holds a JSON array of objects shaped like the control plane's
 * answers: {"public_key", "allowed_ips": [...], "persistent_keepalive"?,
 * "preshared_key_file"?, "lease"? (seconds), "expires_at"? (RFC 3339)}.
 *
 * A peer with a lease is given for that long from each answer (a client
 * that handshakes again renews it); one with expires_at, until then.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "wgutil.h"

struct peer_conf {
	char *public_key;
	struct wggwd_list allowed_ips;
	char *preshared_key_file;
	int64_t keepalive;
	int64_t lease_ms;
	char *expires_at;
};

struct conf {
	struct wggwd_list peers;
	char *peers_file;
	int64_t ttl_ms;
};

static const struct wggwd_opt peer_opts[] = {
	{ .name = "public_key", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct peer_conf, public_key), .check = wg_check_key_b64,
	  .help = "the client's public key, base64" },
	{ .name = "allowed_ips", .type = WGGWD_OPT_LIST, .flags = WGGWD_OPT_REQUIRED,
	  .min = 1, .max = 16777216,
	  .offset = offsetof(struct peer_conf, allowed_ips), .check = wg_check_allowed_ip,
	  .help = "addresses the client may use inside the tunnel (10.0.0.2/32)" },
	{ .name = "preshared_key_file", .type = WGGWD_OPT_SECRET_FILE,
	  .offset = offsetof(struct peer_conf, preshared_key_file),
	  .help = "file holding the base64 preshared key (mode 0600)" },
	{ .name = "keepalive", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 65535,
	  .offset = offsetof(struct peer_conf, keepalive),
	  .help = "persistent keepalive in seconds once the tunnel is up (0: off)" },
	{ .name = "lease", .type = WGGWD_OPT_DURATION, .def = "0", .min = 0, .max = 86400000LL * 3650,
	  .offset = offsetof(struct peer_conf, lease_ms),
	  .help = "each answer gives the peer this long from now: the installer removes it then, even while active, unless a later answer (its next handshake) renews it (0: no lease)" },
	{ .name = "expires_at", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct peer_conf, expires_at), .check = wg_check_time,
	  .help = "the peer's lease ends at this time (RFC 3339: 2026-12-31T23:00:00Z): removed then, even while active; after it, not installed" },
	WGGWD_OPT_END
};

static const struct wggwd_opt opts[] = {
	{ .name = "peers", .type = WGGWD_OPT_LIST, .sub = peer_opts,
	  .sub_size = sizeof(struct peer_conf), .offset = offsetof(struct conf, peers),
	  .help = "the peers this resolver knows" },
	{ .name = "peers_file", .type = WGGWD_OPT_PATH,
	  .offset = offsetof(struct conf, peers_file),
	  .help = "JSON array of peers ({\"public_key\", \"allowed_ips\", \"persistent_keepalive\", \"preshared_key_file\", \"lease\" (seconds), \"expires_at\" (RFC 3339)}), read at start" },
	{ .name = "ttl", .type = WGGWD_OPT_DURATION, .def = "1h", .min = 0, .max = 86400000 * 30LL,
	  .offset = offsetof(struct conf, ttl_ms),
	  .help = "how long a store may cache an answer" },
	WGGWD_OPT_END
};

/* A peer as this resolver keeps it: entries live in sodium memory (the
 * preshared key), their allowed IPs in an array of their own. */
struct entry {
	struct wggwd_peer peer; /* its allowed IPs: `allowed`, not peer.allowed */
	struct wggwd_allowed_ip *allowed;
	int64_t lease_ms;       /* from each answer; 0: none (or expires_at) */
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct entry *v;
	size_t n, cap;
	uint64_t *hit, *miss, *no_memory;
};

static int cmp_entry(const void *a, const void *b)
{
	return memcmp(((const struct entry *)a)->peer.public_key,
		      ((const struct entry *)b)->peer.public_key, WGGWD_KEY_LEN);
}

static struct entry *add_entry(struct ctx *c)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct entry *v = sodium_allocarray(cap, sizeof(*v));

		if (!v)
			return NULL;
		if (c->v) {
			memcpy(v, c->v, c->n * sizeof(*v));
			sodium_free(c->v); /* wipes */
		}
		c->v = v;
		c->cap = cap;
	}
	memset(&c->v[c->n], 0, sizeof(c->v[0]));
	return &c->v[c->n++];
}

/* A lease: lease_ms from each answer, or until expires_at (RFC 3339). */
static int fill_lease(struct ctx *c, struct entry *e, int64_t lease_ms, const char *expires_at,
		      const char *where)
{
	if (lease_ms && expires_at) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: give lease or expires_at, not both", where);
		return -EINVAL;
	}
	e->lease_ms = lease_ms;
	if (expires_at) {
		if (wg_time_parse(expires_at, &e->peer.expires_at)) {
			c->host->log(c->self, WGGWD_LOG_ERROR,
				     "%s: expires_at: expected an RFC 3339 time, got \"%.60s\"", where,
				     expires_at);
			return -EINVAL;
		}
		e->peer.has |= WGGWD_PEER_HAS_EXPIRES;
	}
	return 0;
}

static int fill_peer(struct ctx *c, struct entry *e, const char *key,
		     const char *const *ips, size_t n_ips, int64_t keepalive,
		     const char *psk_file, const char *where)
{
	struct wggwd_peer *p = &e->peer;
	size_t i;
	int ret;

	if (wg_key_from_b64(p->public_key, key)) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: bad public_key", where);
		return -EINVAL;
	}
	e->allowed = calloc(n_ips ? n_ips : 1, sizeof(*e->allowed));
	if (!e->allowed)
		return -ENOMEM;
	for (i = 0; i < n_ips; i++) {
		if (wg_allowed_ip_parse(&e->allowed[i], ips[i])) {
			c->host->log(c->self, WGGWD_LOG_ERROR, "%s: bad allowed_ip \"%s\"",
				     where, ips[i]);
			return -EINVAL;
		}
	}
	p->n_allowed = n_ips;
	p->keepalive = keepalive;
	p->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS |
		 WGGWD_PEER_HAS_KEEPALIVE | WGGWD_PEER_HAS_TTL;
	p->ttl_s = c->conf->ttl_ms / 1000;
	p->origin = WGGWD_ORIGIN_STATIC;
	if (psk_file) {
		ret = wg_key_from_secret_file(c->host, c->self, psk_file, p->preshared_key);
		if (ret)
			return ret;
		p->has |= WGGWD_PEER_HAS_PRESHARED_KEY;
	}
	return 0;
}

static int load_file(struct ctx *c, const char *path)
{
	json_error_t err;
	json_t *root, *e;
	size_t i;
	int ret = 0;

	root = json_load_file(path, 0, &err);
	if (!root) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s:%d:%d: %s", path, err.line,
			     err.column, err.text);
		return -EINVAL;
	}
	if (!json_is_array(root)) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: expected a JSON array of peers", path);
		json_decref(root);
		return -EINVAL;
	}
	json_array_foreach(root, i, e) {
		const char **ips = NULL;
		json_t *jips = json_object_get(e, "allowed_ips"), *ip;
		json_t *ka = json_object_get(e, "persistent_keepalive");
		json_t *psk = json_object_get(e, "preshared_key_file");
		json_t *lease = json_object_get(e, "lease");
		json_t *exp = json_object_get(e, "expires_at");
		char where[4200];
		struct entry *en;
		size_t k, n = 0;

		snprintf(where, sizeof(where), "%s: peer %zu", path, i);
		if (!json_is_object(e) || !json_is_string(json_object_get(e, "public_key")) ||
		    !json_is_array(jips) || (ka && !json_is_integer(ka)) ||
		    (psk && !json_is_string(psk)) || (exp && !json_is_string(exp)) ||
		    (lease && (!json_is_integer(lease) || json_integer_value(lease) < 0 ||
			       json_integer_value(lease) > 86400LL * 3650)) ||
		    (ka && (json_integer_value(ka) < 0 || json_integer_value(ka) > 65535))) {
			c->host->log(c->self, WGGWD_LOG_ERROR,
				     "%s: expected {\"public_key\": \"...\", \"allowed_ips\": [...]} with an optional persistent_keepalive (0-65535), preshared_key_file, lease (seconds) or expires_at (RFC 3339)",
				     where);
			ret = -EINVAL;
			break;
		}
		ips = calloc(json_array_size(jips) + 1, sizeof(*ips));
		if (!ips) {
			ret = -ENOMEM;
			break;
		}
		json_array_foreach(jips, k, ip) {
			if (!json_is_string(ip)) {
				c->host->log(c->self, WGGWD_LOG_ERROR,
					     "%s: allowed_ips: expected strings", where);
				ret = -EINVAL;
				break;
			}
			ips[n++] = json_string_value(ip);
		}
		en = ret ? NULL : add_entry(c);
		if (!ret && !en)
			ret = -ENOMEM;
		if (!ret)
			ret = fill_peer(c, en, json_string_value(json_object_get(e, "public_key")),
					ips, n, ka ? json_integer_value(ka) : 0,
					psk ? json_string_value(psk) : NULL, where);
		if (!ret)
			ret = fill_lease(c, en, lease ? json_integer_value(lease) * 1000 : 0,
					 exp ? json_string_value(exp) : NULL, where);
		free(ips);
		if (ret)
			break;
	}
	json_decref(root);
	return ret;
}

static int rs_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->hit = host->counter(self, "hit");
	c->miss = host->counter(self, "miss");
	c->no_memory = host->counter(self, "no_memory");
	*ctxp = c;
	return 0;
}

static const char *rs_validate(const void *conf, const char **option, char *buf,
			       size_t len)
{
	const struct conf *cf = conf;

	(void)buf;
	(void)len;
	if (!cf->peers.n && !cf->peers_file) {
		*option = NULL;
		return "give peers:, peers_file:, or both";
	}
	return NULL;
}

/* Reading the peers and their preshared keys is I/O: here, not in create. */
static int rs_start(void *ctx)
{
	struct ctx *c = ctx;
	const struct peer_conf *pc = c->conf->peers.v;
	char where[64];
	size_t i;
	int ret;

	for (i = 0; i < c->conf->peers.n; i++) {
		struct entry *e = add_entry(c);

		if (!e)
			return -ENOMEM;
		snprintf(where, sizeof(where), "peers[%zu]", i);
		ret = fill_peer(c, e, pc[i].public_key,
				(const char *const *)pc[i].allowed_ips.v, pc[i].allowed_ips.n,
				pc[i].keepalive, pc[i].preshared_key_file, where);
		if (!ret)
			ret = fill_lease(c, e, pc[i].lease_ms, pc[i].expires_at, where);
		if (ret)
			return ret;
	}
	if (c->conf->peers_file) {
		ret = load_file(c, c->conf->peers_file);
		if (ret)
			return ret;
	}
	qsort(c->v, c->n, sizeof(*c->v), cmp_entry);
	for (i = 1; i < c->n; i++) {
		if (!cmp_entry(&c->v[i - 1], &c->v[i])) {
			char b64[WG_KEY_B64_LEN];

			wg_key_to_b64(b64, c->v[i].peer.public_key);
			c->host->log(c->self, WGGWD_LOG_ERROR, "peer %s is listed twice", b64);
			return -EINVAL;
		}
	}
	c->host->log(c->self, WGGWD_LOG_INFO, "%zu peers", c->n);
	return 0;
}

static int rs_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	struct wggwd_peer *p = it->peer;
	struct wggwd_allowed_ip *a;
	struct entry key, *e;

	memcpy(key.peer.public_key, it->public_key, WGGWD_KEY_LEN);
	e = c->n ? bsearch(&key, c->v, c->n, sizeof(*c->v), cmp_entry) : NULL;
	if (!e) {
		(*c->miss)++;
		it->reason = WGGWD_R_UNKNOWN_KEY;
		it->flags |= WGGWD_ITEM_NOT_FOUND;
		return WGGWD_DROP;
	}
	p->n_allowed = 0;
	a = e->peer.n_allowed ? c->host->allowed_reserve(c->self, it, e->peer.n_allowed) : NULL;
	if (e->peer.n_allowed && !a) {
		(*c->no_memory)++;
		it->reason = WGGWD_R_NO_MEMORY;
		return WGGWD_ERROR;
	}
	if (a)
		memcpy(a, e->allowed, e->peer.n_allowed * sizeof(*a));
	(*c->hit)++;
	p->has = e->peer.has;
	memcpy(p->public_key, e->peer.public_key, WGGWD_KEY_LEN);
	memcpy(p->preshared_key, e->peer.preshared_key, WGGWD_KEY_LEN);
	p->keepalive = e->peer.keepalive;
	p->origin = e->peer.origin;
	p->ttl_s = e->peer.ttl_s;
	p->expires_at = e->peer.expires_at;
	if (e->lease_ms) { /* from now, rounded up to the second */
		p->expires_at = (int64_t)((c->host->realtime_ns() + (uint64_t)e->lease_ms * 1000000 +
					   999999999) / 1000000000);
		p->has |= WGGWD_PEER_HAS_EXPIRES;
	}
	return WGGWD_CONTINUE;
}

static void rs_destroy(void *ctx)
{
	struct ctx *c = ctx;

	size_t i;

	for (i = 0; i < c->n; i++)
		free(c->v[i].allowed);
	if (c->v)
		sodium_free(c->v);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = rs_create,
	.validate = rs_validate,
	.start = rs_start,
	.process = rs_process,
	.destroy = rs_destroy,
};

WGGWD_PLUGIN_DEFINE(
	.name = "resolver-static",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "answers lookups from peers listed in YAML or a JSON file",
	.kind = WGGWD_RESOLVER,
	.in = WGGWD_MSG_PEER_KEY,
	.out = WGGWD_MSG_PEER,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
