// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * installer-uapi: installs peers on a userspace WireGuard interface
 * (wireguard-go, boringtun) through its text protocol on
 * <socket_dir>/<interface>.sock (PROTOCOL.md (f)).
 *
 * One persistent connection carries a FIFO of requests, ONE at a time:
 * wireguard-go reads a set through a bufio.Scanner of its own, which reads
 * ahead and loses whatever was pipelined behind it, and on an error it
 * returns without reading the rest of the request. So: the next request
 * leaves when the previous reply is in, and after any errno != 0 the
 * connection is closed and a fresh one opened.
 *
 * Completion (how the client gets its tunnel, PROTOCOL.md (g)):
 *   inversion: the endpoint and a non-zero keepalive go in the same
 *     request, so the interface initiates at once. The keepalive is put
 *     back to the configured value when a dump shows the handshake (or
 *     after restore_timeout): left on toward a client that never answers,
 *     it would initiate forever.
 *   reinject: installed with keepalive 0 (so the interface does not
 *     initiate and cannot collide), and the item carries
 *     WGGWD_ITEM_REINJECT for the source to re-send the captured
 *     initiation. A configured keepalive is restored after the handshake.
 *   none: public key and allowed IPs only; the client gets in on its own
 *     retry, about 5 s later (the baseline the benchmark compares with).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "wgutil.h"

enum { COMPLETION_INVERSION, COMPLETION_REINJECT, COMPLETION_NONE };
static const char *const completion_names[] = { "inversion", "reinject", "none", NULL };

struct conf {
	char *interface;
	char *socket_dir;
	int completion;
	int64_t inversion_keepalive;
	int64_t restore_poll_ms;
	int64_t restore_timeout_ms;
	int64_t stall_retry_ms;
	int64_t timeout_ms;
};

static const char *check_ifname(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;
	size_t i, n;

	if (!s)
		return NULL;
	n = strlen(s);
	for (i = 0; i < n; i++)
		if (s[i] == '/' || s[i] == ' ' || s[i] == '\t' || s[i] == ':')
			break;
	if (!n || n > 15 || i < n || !strcmp(s, ".") || !strcmp(s, "..")) {
		snprintf(buf, len, "expected an interface name (1 to 15 characters, no '/', ':' or blanks), got \"%.60s\"",
			 s);
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	{ .name = "interface", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, interface), .check = check_ifname,
	  .help = "the userspace WireGuard interface (its socket is <socket_dir>/<interface>.sock)" },
	{ .name = "socket_dir", .type = WGGWD_OPT_PATH, .def = "/var/run/wireguard",
	  .offset = offsetof(struct conf, socket_dir),
	  .help = "where wireguard-go puts its UAPI sockets" },
	{ .name = "completion", .type = WGGWD_OPT_ENUM, .def = "reinject",
	  .choices = completion_names, .offset = offsetof(struct conf, completion),
	  .help = "how a knocking client gets its handshake: reinject (installed quietly; the source re-sends the captured initiation: measured never to stall), inversion (the interface initiates: endpoint + keepalive in one request; can collide with the client's own handshake), or none (public key and allowed IPs only: the client's retry, ~5 s)" },
	{ .name = "inversion_keepalive", .type = WGGWD_OPT_INT, .def = "25", .min = 1, .max = 65535,
	  .offset = offsetof(struct conf, inversion_keepalive),
	  .help = "keepalive (seconds) installed with the endpoint to make the interface initiate, when the peer's own is 0; put back once the handshake is seen" },
	{ .name = "restore_poll", .type = WGGWD_OPT_DURATION, .def = "500ms", .min = 10, .max = 600000,
	  .offset = offsetof(struct conf, restore_poll_ms),
	  .help = "while peers wait for their first handshake, how often the interface is dumped to see which completed (stretched to 10x the last dump's duration on large interfaces)" },
	{ .name = "restore_timeout", .type = WGGWD_OPT_DURATION, .def = "2m", .min = 1000, .max = 86400000,
	  .offset = offsetof(struct conf, restore_timeout_ms),
	  .help = "a peer with no handshake this long after install gets its configured keepalive back anyway" },
	{ .name = "stall_retry", .type = WGGWD_OPT_DURATION, .def = "200ms", .min = 0, .max = 60000,
	  .offset = offsetof(struct conf, stall_retry_ms),
	  .help = "inversion: a peer with no handshake this long after install (a collision with the client's own handshake) is removed and installed again, once; keep it above the clients' round-trip time (0: never)" },
	{ .name = "timeout", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 10, .max = 600000,
	  .offset = offsetof(struct conf, timeout_ms),
	  .help = "how long one request may wait for its reply before the connection is reset" },
	WGGWD_OPT_END
};

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
#define RBUF_MIN (64u << 10)     /* reply buffer: first size, room per read */
#define RBUF_KEEP (1u << 20)     /* kept between replies up to this size */
#define RBUF_MAX (1024u << 20)   /* a reply larger than this is refused */
#define CFG_HASH_LEN 16

/* ------------------------------------------------------------ structures */

/* A growable text buffer for requests; they can hold a preshared key, so
 * every copy is wiped before it is freed. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

/* A peer this installer installed. */
struct peer_ent {
	struct peer_ent *next;
	uint8_t key[WGGWD_KEY_LEN];
	union wggwd_sockaddr endpoint;  /* the one we set (AF_UNSPEC: none) */
	uint8_t cfg[CFG_HASH_LEN];      /* keyed hash of allowed IPs, PSK, keepalive */
	uint16_t keepalive;             /* configured: what a restore sets */
	bool awaiting;                  /* keepalive differs until the handshake */
	bool restoring;                 /* a restore for it is on its way */
	bool stale;                     /* the interface went away since */
	uint32_t gen;                   /* bumped by every install */
	uint32_t mark;                  /* last dump that listed it */
	uint64_t await_since_ms;        /* monotonic */
	uint64_t install_real_ns;       /* realtime the install was sent */
	struct sbuf retry;              /* inversion: the install, to redo once
	                                 * if it collided (holds the PSK) */
	bool retried;
};

enum req_kind { R_INSTALL, R_REMOVE_ITEM, R_REMOVE, R_DUMP, R_RESTORE, R_RETRY };

struct restore_ref {
	uint8_t key[WGGWD_KEY_LEN];
	uint32_t gen;
	bool timed_out;
};

struct ctx;

struct req {
	struct req *next;
	struct ctx *c;
	uv_write_t wr;
	enum req_kind kind;
	bool is_get;
	bool writing;   /* uv_write pending: the text must stay */
	bool finished;  /* its outcome was delivered */
	bool final;     /* the restore sent at stop: closes everything after */
	bool poll;      /* a dump of our own (restore poll) */
	struct sbuf text;
	uint64_t sent_real_ns, sent_ms;
	/* R_INSTALL, R_REMOVE_ITEM */
	struct wggwd_item *item;
	uint8_t key[WGGWD_KEY_LEN];
	union wggwd_sockaddr endpoint;
	uint8_t cfg[CFG_HASH_LEN];
	uint16_t keepalive, ka_sent;
	bool reinject;
	struct sbuf retry;  /* inversion: a copy of text for a collision retry */
	/* R_REMOVE, R_DUMP: the caller's callback */
	wggwd_status_cb scb;
	wggwd_dump_cb dcb;
	void *arg;
	/* R_REMOVE: keys; R_RESTORE: refs */
	uint8_t (*keys)[WGGWD_KEY_LEN];
	struct restore_ref *refs;
	size_t n;
};

struct conn {
	uv_pipe_t pipe;
	uv_connect_t creq;
	struct ctx *c;
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uv_loop_t *loop;
	char path[SUN_PATH_MAX];
	struct wggwd_device dev;        /* secret: private key */
	bool have_dev;
	uint8_t hkey[crypto_generichash_KEYBYTES];

	/* the connection and its queue */
	struct conn *conn;
	bool connected, ever_opened, down_logged;
	struct req *q_head, **q_tail, *inflight;
	char *rbuf;                     /* secret: a get holds the private key */
	size_t rlen, rcap;
	size_t get_hint;                /* size of the last get reply */
	uv_timer_t rtimer, ptimer;
	unsigned handles;
	bool running, stopping, io_closed;

	/* the peers we installed */
	struct peer_ent **buckets;
	size_t nbuckets, npeers, nawaiting;
	uint32_t mark;
	bool poll_armed, poll_outstanding;
	uint64_t last_dump_ms;

	uint64_t *installed, *unchanged, *removed, *install_failed, *restore_keepalive,
		*restore_timeout, *uapi_errors, *reconnects, *stall_retries;
	int64_t *g_peers, *g_awaiting;
};

static void kick(struct ctx *c);
static void conn_fail(struct ctx *c, int err);
static void shutdown_io(struct ctx *c);

/* ----------------------------------------------------------------- misc */

static uint64_t now_real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t now_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sb_grow(struct sbuf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 256;
	char *p;

	while (cap < b->len + need + 1)
		cap *= 2;
	p = malloc(cap);
	if (!p) {
		b->oom = true;
		return -ENOMEM;
	}
	if (b->p) {
		memcpy(p, b->p, b->len);
		sodium_memzero(b->p, b->cap);
		free(b->p);
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) WGGWD_PRINTF(2, 3);
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom || (!b->p && sb_grow(b, 0)))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (sb_grow(b, n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += n;
}

static void sb_key(struct sbuf *b, const char *name, const uint8_t key[WGGWD_KEY_LEN])
{
	char hex[WG_KEY_HEX_LEN];

	wg_key_to_hex(hex, key);
	sb_printf(b, "%s=%s\n", name, hex);
	sodium_memzero(hex, sizeof(hex));
}

static void sb_free(struct sbuf *b)
{
	if (b->p) {
		sodium_memzero(b->p, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof(*b));
}

static const char *b64(char buf[WG_KEY_B64_LEN], const uint8_t *key)
{
	wg_key_to_b64(buf, key);
	return buf;
}

/* What an errno from the interface means (PROTOCOL.md (f)). */
static const char *uapi_strerror(int err)
{
	switch (-err) {
	case EINVAL:
		return "EINVAL: the interface refused a key or value";
	case EPROTO:
		return "EPROTO: the interface could not parse a line";
	case EADDRINUSE:
		return "EADDRINUSE: the listen port is in use";
	case EIO:
		return "EIO: the interface failed to read or apply it";
	default:
		return strerror(-err);
	}
}

/* --------------------------------------------------------- peer table */

static size_t bucket_of(const struct ctx *c, const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h)); /* public keys are uniformly random */
	return h & (c->nbuckets - 1);
}

static struct peer_ent *peer_find(struct ctx *c, const uint8_t *key)
{
	struct peer_ent *e;

	for (e = c->buckets[bucket_of(c, key)]; e; e = e->next)
		if (!memcmp(e->key, key, WGGWD_KEY_LEN))
			return e;
	return NULL;
}

static void table_grow(struct ctx *c)
{
	size_t old = c->nbuckets, i;
	struct peer_ent **ob = c->buckets, **nb, *e, *n;

	nb = calloc(old * 2, sizeof(*nb));
	if (!nb)
		return; /* longer chains; still correct */
	c->buckets = nb;
	c->nbuckets = old * 2;
	for (i = 0; i < old; i++) {
		for (e = ob[i]; e; e = n) {
			n = e->next;
			e->next = nb[bucket_of(c, e->key)];
			nb[bucket_of(c, e->key)] = e;
		}
	}
	free(ob);
}

static struct peer_ent *peer_add(struct ctx *c, const uint8_t *key)
{
	struct peer_ent *e = peer_find(c, key);
	size_t b;

	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->key, key, WGGWD_KEY_LEN);
	if (c->npeers >= c->nbuckets)
		table_grow(c);
	b = bucket_of(c, key);
	e->next = c->buckets[b];
	c->buckets[b] = e;
	c->npeers++;
	*c->g_peers = c->npeers;
	return e;
}

static void set_awaiting(struct ctx *c, struct peer_ent *e, bool on)
{
	if (e->awaiting == on)
		return;
	e->awaiting = on;
	if (on)
		c->nawaiting++;
	else
		c->nawaiting--;
	*c->g_awaiting = c->nawaiting;
}

static void peer_forget(struct ctx *c, const uint8_t *key)
{
	struct peer_ent **pp, *e;

	for (pp = &c->buckets[bucket_of(c, key)]; (e = *pp); pp = &e->next) {
		if (!memcmp(e->key, key, WGGWD_KEY_LEN)) {
			set_awaiting(c, e, false);
			*pp = e->next;
			sb_free(&e->retry);
			free(e);
			c->npeers--;
			*c->g_peers = c->npeers;
			return;
		}
	}
}

/* A keyed hash of what an install sets besides the endpoint: equal hashes
 * mean nothing would change. Keyed per process, so it reveals nothing of
 * the preshared key. */
static void config_hash(struct ctx *c, const struct wggwd_peer *p, uint16_t keepalive,
			uint8_t out[CFG_HASH_LEN])
{
	crypto_generichash_state st;
	uint32_t has = p->has & (WGGWD_PEER_HAS_PRESHARED_KEY | WGGWD_PEER_HAS_ALLOWED_IPS);
	uint16_t n = p->n_allowed > WGGWD_MAX_ALLOWED ? WGGWD_MAX_ALLOWED : p->n_allowed;

	crypto_generichash_init(&st, c->hkey, sizeof(c->hkey), CFG_HASH_LEN);
	crypto_generichash_update(&st, (const uint8_t *)&has, sizeof(has));
	crypto_generichash_update(&st, (const uint8_t *)&keepalive, sizeof(keepalive));
	if (has & WGGWD_PEER_HAS_ALLOWED_IPS) {
		crypto_generichash_update(&st, (const uint8_t *)&n, sizeof(n));
		crypto_generichash_update(&st, (const uint8_t *)p->allowed, n * sizeof(p->allowed[0]));
	}
	if (has & WGGWD_PEER_HAS_PRESHARED_KEY)
		crypto_generichash_update(&st, p->preshared_key, WGGWD_KEY_LEN);
	crypto_generichash_final(&st, out, CFG_HASH_LEN);
	sodium_memzero(&st, sizeof(st));
}

/* ---------------------------------------------------------- replies */

static int parse_int(const char *s, size_t n, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0;
	size_t i = 0;

	if (n && s[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == n || n - i > 19)
		return -EINVAL;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* A reply ends in "errno=N\n\n": 0, or a negative errno. */
static int reply_status(const char *s, size_t len)
{
	size_t i, end;
	int64_t v;

	if (len < 2)
		return -EPROTO;
	end = len - 2;
	for (i = end; i > 0 && s[i - 1] != '\n'; i--)
		;
	if (end - i < 7 || memcmp(s + i, "errno=", 6) || parse_int(s + i + 6, end - i - 6, &v))
		return -EPROTO;
	if (v > 4095 || v < -4095)
		return -EPROTO;
	return v > 0 ? (int)-v : (int)v;
}

/*
 * Parse a get reply: device lines into c->dev (if `dev`), peers into a
 * new array (if `peersp`; else only counted into *np). Linear; reads the
 * private key straight into the device struct, copies no secret.
 */
static int parse_get(struct ctx *c, const char *s, size_t len, bool dev,
		     struct wggwd_peer_state **peersp, size_t *np)
{
	struct wggwd_peer_state *v = NULL, *p = NULL;
	size_t n = 0, cap = 0, pos = 0, bl;
	bool in_peer = false;

	while (pos < len) {
		const char *line = s + pos, *nl = memchr(line, '\n', len - pos), *eq, *val;
		size_t ll, kl, vl;
		int64_t num;

		if (!nl)
			break;
		ll = nl - line;
		pos += ll + 1;
		if (!ll)
			break;
		eq = memchr(line, '=', ll);
		if (!eq)
			goto proto;
		kl = eq - line;
		val = eq + 1;
		vl = ll - kl - 1;
#define IS(k) (kl == sizeof(k) - 1 && !memcmp(line, k, kl))
		if (IS("errno"))
			break;
		if (IS("public_key")) {
			in_peer = true;
			if (!peersp) {
				n++;
				continue;
			}
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct wggwd_peer_state *nv = realloc(v, ncap * sizeof(*v));

				if (!nv) {
					free(v);
					return -ENOMEM;
				}
				v = nv;
				cap = ncap;
			}
			p = &v[n++];
			memset(p, 0, sizeof(*p));
			if (vl != 64 || sodium_hex2bin(p->public_key, WGGWD_KEY_LEN, val, vl, NULL,
						       &bl, NULL) || bl != WGGWD_KEY_LEN)
				goto proto;
			continue;
		}
		if (!in_peer) {
			if (!dev)
				continue;
			if (IS("private_key")) {
				if (vl != 64 || sodium_hex2bin(c->dev.private_key, WGGWD_KEY_LEN, val, vl,
							       NULL, &bl, NULL) || bl != WGGWD_KEY_LEN)
					goto proto;
				c->dev.has_private_key = !sodium_is_zero(c->dev.private_key,
									 WGGWD_KEY_LEN);
			} else if (IS("listen_port")) {
				if (parse_int(val, vl, &num) || num < 0 || num > 65535)
					goto proto;
				c->dev.listen_port = num;
			}
			continue;
		}
		if (!p)
			continue;
		if (IS("endpoint")) {
			char ep[INET6_ADDRSTRLEN + 16];

			/* a scoped v6 address (fe80::1%eth0) stays unset */
			if (vl < sizeof(ep)) {
				memcpy(ep, val, vl);
				ep[vl] = '\0';
				wg_sockaddr_parse(&p->endpoint, ep);
			}
			continue;
		}
		if (!IS("last_handshake_time_sec") && !IS("last_handshake_time_nsec") &&
		    !IS("rx_bytes") && !IS("tx_bytes") && !IS("persistent_keepalive_interval"))
			continue; /* allowed_ip, preshared_key, protocol_version, ... */
		if (parse_int(val, vl, &num) || num < 0)
			goto proto;
		if (IS("last_handshake_time_sec"))
			p->last_handshake_sec = num;
		else if (IS("last_handshake_time_nsec"))
			p->last_handshake_nsec = num;
		else if (IS("rx_bytes"))
			p->rx_bytes = num;
		else if (IS("tx_bytes"))
			p->tx_bytes = num;
		else
			p->keepalive = num > 65535 ? 65535 : num;
#undef IS
	}
	if (peersp)
		*peersp = v;
	*np = n;
	return 0;
proto:
	free(v);
	return -EPROTO;
}

/* --------------------------------------------------------- requests */

static struct req *req_new(struct ctx *c, enum req_kind kind)
{
	struct req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->c = c;
	r->kind = kind;
	r->is_get = kind == R_DUMP;
	r->wr.data = r;
	return r;
}

static void req_free(struct req *r)
{
	sb_free(&r->text);
	sb_free(&r->retry);
	free(r->keys);
	free(r->refs);
	free(r);
}

/* Free once it is finished and no write still points at it. */
static void req_release(struct req *r)
{
	if (r->finished && !r->writing)
		req_free(r);
}

static void req_what(const struct req *r, char *buf, size_t len)
{
	char k[WG_KEY_B64_LEN];

	switch (r->kind) {
	case R_INSTALL:
		snprintf(buf, len, "install of peer %s", b64(k, r->key));
		break;
	case R_REMOVE_ITEM:
		snprintf(buf, len, "removal of peer %s", b64(k, r->key));
		break;
	case R_REMOVE:
		snprintf(buf, len, "removal of %zu peers", r->n);
		break;
	case R_DUMP:
		snprintf(buf, len, "dump of the interface");
		break;
	case R_RESTORE:
		snprintf(buf, len, "keepalive restore of %zu peers", r->n);
		break;
	case R_RETRY:
		snprintf(buf, len, "re-install of peer %s after a collision", b64(k, r->key));
		break;
	}
}

static void log_failure(struct ctx *c, const struct req *r, int status, bool from_iface)
{
	char what[128];

	req_what(r, what, sizeof(what));
	if (from_iface)
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s on %s failed: errno=%d (%s); reconnecting (a set is not atomic)",
			     what, c->conf->interface, status, uapi_strerror(status));
	else if (status != -ECANCELED)
		/* while the interface is known to be away, once was enough */
		c->host->log(c->self, c->down_logged ? WGGWD_LOG_DEBUG : WGGWD_LOG_WARN,
			     "%s on %s failed: %s", what, c->conf->interface, strerror(-status));
}

static void enqueue(struct ctx *c, struct req *r)
{
	r->next = NULL;
	*c->q_tail = r;
	c->q_tail = &r->next;
	kick(c);
}

static void arm_poll(struct ctx *c);

static void finish_install(struct ctx *c, struct req *r, int status, bool from_iface)
{
	struct wggwd_item *it = r->item;
	struct peer_ent *e;
	char k[WG_KEY_B64_LEN], ep[64];

	if (status) {
		if (status != -ECANCELED) /* not the interface's doing: we stop */
			(*c->install_failed)++;
		log_failure(c, r, status, from_iface);
		peer_forget(c, r->key); /* what is on the interface is unknown now */
		it->drop_reason = status == -ECANCELED ? "shutdown" : "install_failed";
		c->host->complete(c->self, it, WGGWD_ERROR);
		return;
	}
	(*c->installed)++;
	e = peer_add(c, r->key);
	if (e) {
		if (r->endpoint.sa.sa_family != AF_UNSPEC)
			e->endpoint = r->endpoint;
		memcpy(e->cfg, r->cfg, CFG_HASH_LEN);
		e->keepalive = r->keepalive;
		e->gen++;
		e->restoring = false;
		e->stale = false;
		/* the request's text is wiped once written: keep its copy */
		sb_free(&e->retry);
		e->retry = r->retry;
		memset(&r->retry, 0, sizeof(r->retry));
		e->retried = false;
		if (r->ka_sent != r->keepalive) {
			e->install_real_ns = r->sent_real_ns;
			e->await_since_ms = now_mono_ms();
			set_awaiting(c, e, true);
			arm_poll(c);
		} else {
			set_awaiting(c, e, false);
		}
	} else {
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "out of memory: peer %s is installed but not tracked (its keepalive stays %u)",
			     b64(k, r->key), r->ka_sent);
	}
	if (r->reinject)
		it->flags |= WGGWD_ITEM_REINJECT;
	wg_sockaddr_str(&r->endpoint, ep, sizeof(ep));
	c->host->log(c->self, WGGWD_LOG_DEBUG, "installed peer %s: endpoint %s, keepalive %u%s%s",
		     b64(k, r->key), ep, r->ka_sent,
		     r->ka_sent != r->keepalive ? " until the handshake" : "",
		     r->reinject ? ", re-inject asked" : "");
	c->host->complete(c->self, it, WGGWD_CONTINUE);
}

/*
 * Role inversion collided with the client's own handshake: the interface
 * answered the client's initiation and sent its own, and each side's one
 * handshake slot was overwritten by the other's (wireguard-go logs "Received
 * invalid response message"); the interface's own retry is 5 s away. Remove
 * the peer and install it again in one request: a new peer has no pending
 * handshake and no initiation rate limit, so the interface initiates afresh
 * at once, and the client, idle now, answers it.
 */
static void retry_install(struct ctx *c, struct peer_ent *e)
{
	struct req *r = req_new(c, R_RETRY);
	char k[WG_KEY_B64_LEN];
	const char *body = e->retry.p + strlen("set=1\n");

	e->retried = true;
	if (!r)
		goto out;
	memcpy(r->key, e->key, WGGWD_KEY_LEN);
	sb_printf(&r->text, "set=1\n");
	sb_key(&r->text, "public_key", e->key);
	sb_printf(&r->text, "remove=true\n%s", body);
	if (r->text.oom) {
		req_free(r);
		goto out;
	}
	(*c->stall_retries)++;
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "peer %s: no handshake %.0f ms after an inverted install (a collision); installing it afresh",
		     b64(k, e->key), (double)(now_mono_ms() - e->await_since_ms));
	e->install_real_ns = now_real_ns();
	enqueue(c, r);
out:
	sb_free(&e->retry);
}

/* What a dump tells about the peers we installed: handshakes done (put
 * the keepalive back), peers gone from the interface (forget them). */
static void observe_dump(struct ctx *c, const struct wggwd_peer_state *peers, size_t n)
{
	struct restore_ref *refs = NULL;
	size_t i, nrefs = 0, cap = 0;
	uint32_t mark = ++c->mark;
	uint64_t now = now_mono_ms();
	char k[WG_KEY_B64_LEN];
	struct req *r;

	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *p = &peers[i];
		struct peer_ent *e = peer_find(c, p->public_key);
		uint64_t hs;
		bool done, late;

		if (!e)
			continue;
		e->mark = mark;
		if (!e->awaiting || e->restoring)
			continue;
		hs = (uint64_t)p->last_handshake_sec * 1000000000ull + p->last_handshake_nsec;
		/* a handshake from before the install (a session that was up)
		 * does not count; a second of slack for clock granularity */
		done = p->last_handshake_sec && hs + 1000000000ull >= e->install_real_ns;
		late = !done && now - e->await_since_ms >= (uint64_t)c->conf->restore_timeout_ms;
		if (!done && !late) {
			if (e->retry.len && !e->retried &&
			    now - e->await_since_ms >= (uint64_t)c->conf->stall_retry_ms)
				retry_install(c, e);
			continue;
		}
		if (nrefs == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct restore_ref *nr = realloc(refs, ncap * sizeof(*refs));

			if (!nr)
				break; /* the next poll tries again */
			refs = nr;
			cap = ncap;
		}
		memcpy(refs[nrefs].key, e->key, WGGWD_KEY_LEN);
		refs[nrefs].gen = e->gen;
		refs[nrefs].timed_out = late;
		nrefs++;
		e->restoring = true;
		if (done)
			c->host->log(c->self, WGGWD_LOG_INFO,
				     "peer %s: handshake %.1f ms after install; keepalive back to %u",
				     b64(k, e->key),
				     ((double)hs - (double)e->install_real_ns) / 1e6, e->keepalive);
		else
			c->host->log(c->self, WGGWD_LOG_INFO,
				     "peer %s: no handshake %.0f s after install; keepalive back to %u anyway",
				     b64(k, e->key), (double)(now - e->await_since_ms) / 1000,
				     e->keepalive);
	}
	/* a peer we installed that the dump does not list was removed by
	 * someone else: forget it, so that it is installed again when asked
	 * (replies come in request order, so every install we confirmed
	 * before this reply is reflected in it) */
	for (i = 0; i < c->nbuckets; i++) {
		struct peer_ent **pp = &c->buckets[i], *e;

		while ((e = *pp)) {
			if (e->mark != mark) {
				c->host->log(c->self, WGGWD_LOG_DEBUG,
					     "peer %s is no longer on %s; forgetting it",
					     b64(k, e->key), c->conf->interface);
				set_awaiting(c, e, false);
				*pp = e->next;
				sb_free(&e->retry);
			free(e);
				c->npeers--;
			} else {
				pp = &e->next;
			}
		}
	}
	*c->g_peers = c->npeers;
	if (!nrefs) {
		free(refs);
		return;
	}
	r = req_new(c, R_RESTORE);
	if (!r)
		goto oom;
	r->refs = refs;
	r->n = nrefs;
	sb_printf(&r->text, "set=1\n");
	for (i = 0; i < nrefs; i++) {
		struct peer_ent *e = peer_find(c, refs[i].key);

		sb_key(&r->text, "public_key", refs[i].key);
		sb_printf(&r->text, "update_only=true\npersistent_keepalive_interval=%u\n",
			  e->keepalive);
	}
	sb_printf(&r->text, "\n");
	if (r->text.oom) {
		r->refs = NULL;
		req_free(r);
		goto oom;
	}
	enqueue(c, r);
	return;
oom:
	for (i = 0; i < nrefs; i++) {
		struct peer_ent *e = peer_find(c, refs[i].key);

		if (e)
			e->restoring = false;
	}
	free(refs);
}

static void finish_restore(struct ctx *c, struct req *r, int status, bool from_iface)
{
	size_t i;

	if (status)
		log_failure(c, r, status, from_iface);
	for (i = 0; i < r->n; i++) {
		struct peer_ent *e = peer_find(c, r->refs[i].key);

		if (!status) {
			(*c->restore_keepalive)++;
			if (r->refs[i].timed_out)
				(*c->restore_timeout)++;
		}
		if (!e || e->gen != r->refs[i].gen)
			continue; /* re-installed meanwhile: its own restore follows */
		e->restoring = false;
		if (!status)
			set_awaiting(c, e, false);
	}
}

static void finish_dump(struct ctx *c, struct req *r, int status, bool from_iface,
			const char *reply, size_t len)
{
	struct wggwd_peer_state *peers = NULL;
	size_t n = 0;

	if (!status && reply) {
		status = parse_get(c, reply, len, false, &peers, &n);
		if (status == -EPROTO) {
			(*c->uapi_errors)++;
			c->host->log(c->self, WGGWD_LOG_ERROR, "dump of %s: a line could not be parsed",
				     c->conf->interface);
		}
	}
	if (status)
		log_failure(c, r, status, from_iface);
	else
		observe_dump(c, peers, n);
	if (r->poll) {
		c->poll_outstanding = false;
		if (!status)
			c->last_dump_ms = now_mono_ms() - r->sent_ms;
	}
	if (r->dcb)
		r->dcb(r->arg, status, peers, n);
	free(peers);
	arm_poll(c);
}

/* Deliver a request's outcome, once. `reply` is set when the status came
 * from the interface (errno=N), NULL for transport errors. */
static void req_finish(struct ctx *c, struct req *r, int status, const char *reply, size_t len)
{
	bool from_iface = reply != NULL;
	size_t i;

	if (r->finished)
		return;
	r->finished = true;
	switch (r->kind) {
	case R_INSTALL:
		finish_install(c, r, status, from_iface);
		break;
	case R_REMOVE_ITEM:
		peer_forget(c, r->key);
		if (status) {
			log_failure(c, r, status, from_iface);
			r->item->drop_reason = "remove_failed";
			c->host->complete(c->self, r->item, WGGWD_ERROR);
		} else {
			(*c->removed)++;
			c->host->complete(c->self, r->item, WGGWD_CONTINUE);
		}
		break;
	case R_REMOVE:
		/* forget them whatever happened: at worst one is installed again */
		for (i = 0; i < r->n; i++)
			peer_forget(c, r->keys[i]);
		if (status)
			log_failure(c, r, status, from_iface);
		else
			*c->removed += r->n;
		r->scb(r->arg, status);
		break;
	case R_DUMP:
		finish_dump(c, r, status, from_iface, reply, len);
		break;
	case R_RESTORE:
		finish_restore(c, r, status, from_iface);
		break;
	case R_RETRY:
		if (status)
			log_failure(c, r, status, from_iface);
		break;
	}
	if (r->final)
		shutdown_io(c);
}

static void fail_queue(struct ctx *c, int err)
{
	struct req *q = c->q_head, *r;

	c->q_head = NULL;
	c->q_tail = &c->q_head;
	while ((r = q)) {
		q = r->next;
		r->next = NULL;
		req_finish(c, r, err, NULL, 0);
		req_release(r);
	}
}

/* ------------------------------------------------------- the connection */

static void on_handle_closed(uv_handle_t *h)
{
	struct ctx *c = h->data;

	if (--c->handles == 0 && c->io_closed)
		c->host->stopped(c->self);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *conn = h->data;
	struct ctx *c = conn->c;

	free(conn);
	if (--c->handles == 0 && c->io_closed)
		c->host->stopped(c->self);
}

static void rbuf_reset(struct ctx *c)
{
	if (c->rbuf)
		sodium_memzero(c->rbuf, c->rlen);
	c->rlen = 0;
	if (c->rcap > RBUF_KEEP) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rcap = 0;
	}
}

/* Close the connection (not the requests: see conn_fail). */
static void conn_drop(struct ctx *c)
{
	struct conn *conn = c->conn;

	if (!conn)
		return;
	c->conn = NULL;
	c->connected = false;
	uv_timer_stop(&c->rtimer);
	uv_close((uv_handle_t *)&conn->pipe, on_conn_closed);
	rbuf_reset(c);
}

/* The connection broke (I/O error, timeout): fail what was on it, and
 * open a new one if more is queued. */
static void conn_fail(struct ctx *c, int err)
{
	struct req *r = c->inflight;

	c->inflight = NULL;
	conn_drop(c);
	if (r) {
		req_finish(c, r, err, NULL, 0);
		req_release(r);
	}
	kick(c);
}

/*
 * The interface went away (EOF, nobody listening): wireguard-go may have
 * restarted with no peers. What we installed is unverified now; forget it
 * so that the next knock installs again instead of being "unchanged".
 * Peers waiting for their handshake are kept (marked stale: installed
 * again when asked) so that their keepalive is still put back if the
 * interface did not lose them; a dump that no longer lists them drops them.
 */
static void forget_installed(struct ctx *c)
{
	struct peer_ent **pp, *e;
	size_t i, n = 0;

	for (i = 0; i < c->nbuckets; i++) {
		pp = &c->buckets[i];
		while ((e = *pp)) {
			if (e->awaiting) {
				e->stale = true; /* installed again when asked */
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			sb_free(&e->retry);
			free(e);
			c->npeers--;
			n++;
		}
	}
	*c->g_peers = c->npeers;
	if (n)
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "forgetting %zu installed peers: %s may have restarted without them", n,
			     c->conf->interface);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_connect(uv_connect_t *cr, int status)
{
	struct conn *conn = cr->data;
	struct ctx *c = conn->c;
	int ret;

	if (conn != c->conn)
		return; /* closed meanwhile */
	if (status < 0) {
		(*c->uapi_errors)++;
		if (!c->down_logged)
			c->host->log(c->self, WGGWD_LOG_ERROR,
				     "cannot connect to %s: %s (is wireguard-go running for %s?)",
				     c->path, uv_strerror(status), c->conf->interface);
		c->down_logged = true;
		forget_installed(c);
		conn_drop(c);
		fail_queue(c, status);
		return;
	}
	if (c->down_logged)
		c->host->log(c->self, WGGWD_LOG_INFO, "connected to %s again", c->path);
	c->down_logged = false;
	c->connected = true;
	ret = uv_read_start((uv_stream_t *)&conn->pipe, on_alloc, on_read);
	if (ret) {
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "reading %s: %s", c->path, uv_strerror(ret));
		conn_fail(c, ret);
		return;
	}
	kick(c);
}

static int rbuf_reserve(struct ctx *c, size_t need)
{
	size_t cap;
	char *p;

	if (c->rbuf && c->rcap - c->rlen >= need)
		return 0;
	cap = c->rcap ? c->rcap : RBUF_MIN;
	/* a dump is about as large as the last one: no re-growing */
	if (!c->rbuf && c->inflight && c->inflight->is_get)
		while (cap < c->get_hint + need && cap < RBUF_MAX)
			cap *= 2;
	while (cap - c->rlen < need)
		cap *= 2;
	if (cap > RBUF_MAX)
		return -EMSGSIZE;
	p = malloc(cap);
	if (!p)
		return -ENOMEM;
	if (c->rbuf) {
		memcpy(p, c->rbuf, c->rlen);
		sodium_memzero(c->rbuf, c->rlen);
		free(c->rbuf);
	}
	c->rbuf = p;
	c->rcap = cap;
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *conn = h->data;
	struct ctx *c = conn->c;

	(void)hint;
	if (rbuf_reserve(c, RBUF_MIN / 4)) {
		*buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
		return;
	}
	*buf = uv_buf_init(c->rbuf + c->rlen, c->rcap - c->rlen);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *conn = s->data;
	struct ctx *c = conn->c;
	size_t from, len, cap;
	struct req *r;
	char *reply;
	const char *end;
	int status;

	(void)buf;
	if (conn != c->conn || nread == 0)
		return;
	if (nread < 0) {
		(*c->uapi_errors)++;
		if (nread == UV_EOF) {
			c->host->log(c->self, WGGWD_LOG_WARN, "%s closed the connection%s", c->path,
				     c->inflight ? " before replying" : "");
			forget_installed(c);
		}
		else if (nread == UV_ENOBUFS)
			c->host->log(c->self, WGGWD_LOG_ERROR, "a reply from %s is too large (over %u MiB) or memory ran out",
				     c->path, RBUF_MAX >> 20);
		else
			c->host->log(c->self, WGGWD_LOG_WARN, "reading %s: %s", c->path,
				     uv_strerror(nread));
		conn_fail(c, nread == UV_EOF ? -ECONNRESET : nread == UV_ENOBUFS ? -EMSGSIZE : (int)nread);
		return;
	}
	from = c->rlen ? c->rlen - 1 : 0;
	c->rlen += nread;
	if (!c->inflight) {
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "%s sent data nobody asked for; reconnecting",
			     c->path);
		conn_fail(c, -EPROTO); /* wipes what came */
		return;
	}
	/* only the new bytes are searched: linear in the reply's size */
	end = memmem(c->rbuf + from, c->rlen - from, "\n\n", 2);
	if (!end)
		return;
	if ((size_t)(end + 2 - c->rbuf) != c->rlen) {
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "%s sent more than one reply; reconnecting",
			     c->path);
		conn_fail(c, -EPROTO);
		return;
	}
	r = c->inflight;
	c->inflight = NULL;
	uv_timer_stop(&c->rtimer);
	/* take the reply out of the connection: what the callbacks do
	 * (queue more, even close) cannot touch it */
	reply = c->rbuf;
	len = c->rlen;
	cap = c->rcap;
	c->rbuf = NULL;
	c->rlen = c->rcap = 0;
	if (r->is_get)
		c->get_hint = len;
	status = reply_status(reply, len);
	if (status) {
		(*c->uapi_errors)++;
		/* wireguard-go stops reading a set at the failing line and
		 * would take the rest as requests: start afresh */
		conn_drop(c);
	}
	req_finish(c, r, status, reply, len);
	req_release(r);
	sodium_memzero(reply, len);
	if (!c->rbuf && cap <= RBUF_KEEP) {
		c->rbuf = reply;
		c->rcap = cap;
	} else {
		free(reply);
	}
	kick(c);
}

static void conn_open(struct ctx *c)
{
	struct conn *conn = calloc(1, sizeof(*conn));
	int ret;

	if (!conn) {
		fail_queue(c, -ENOMEM);
		return;
	}
	ret = uv_pipe_init(c->loop, &conn->pipe, 0);
	if (ret) {
		free(conn);
		fail_queue(c, ret);
		return;
	}
	conn->c = c;
	conn->pipe.data = conn;
	conn->creq.data = conn;
	c->handles++;
	c->conn = conn;
	c->connected = false;
	if (c->ever_opened)
		(*c->reconnects)++;
	c->ever_opened = true;
	uv_pipe_connect(&conn->creq, &conn->pipe, c->path, on_connect);
}

static void on_write(uv_write_t *wr, int status)
{
	struct req *r = wr->data;
	struct ctx *c = r->c;

	r->writing = false;
	sodium_memzero(r->text.p, r->text.cap); /* it may hold a preshared key */
	if (r->finished) {
		req_free(r);
		return;
	}
	if (status < 0 && c->inflight == r) {
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "writing to %s: %s", c->path,
			     uv_strerror(status));
		conn_fail(c, status); /* finishes and frees r */
	}
}

static void on_rtimeout(uv_timer_t *t)
{
	struct ctx *c = t->data;
	char what[128];

	if (!c->inflight)
		return;
	(*c->uapi_errors)++;
	req_what(c->inflight, what, sizeof(what));
	c->host->log(c->self, WGGWD_LOG_WARN, "no reply from %s to the %s within %lld ms; reconnecting",
		     c->path, what, (long long)c->conf->timeout_ms);
	conn_fail(c, -ETIMEDOUT);
}

/* Send the next request if the line is free; connect if need be. */
static void kick(struct ctx *c)
{
	struct req *r;
	uv_buf_t b;
	int ret;

	if (!c->q_head || c->io_closed)
		return;
	if (!c->conn) {
		conn_open(c);
		return;
	}
	if (!c->connected || c->inflight)
		return;
	r = c->q_head;
	c->q_head = r->next;
	if (!c->q_head)
		c->q_tail = &c->q_head;
	r->next = NULL;
	c->inflight = r;
	r->sent_real_ns = now_real_ns();
	r->sent_ms = now_mono_ms();
	b = uv_buf_init(r->text.p, r->text.len);
	r->writing = true;
	ret = uv_write(&r->wr, (uv_stream_t *)&c->conn->pipe, &b, 1, on_write);
	if (ret) {
		r->writing = false;
		sodium_memzero(r->text.p, r->text.cap);
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "writing to %s: %s", c->path, uv_strerror(ret));
		conn_fail(c, ret);
		return;
	}
	uv_timer_start(&c->rtimer, on_rtimeout, c->conf->timeout_ms, 0);
}

/* Close the connection and the timers; fail whatever is left. */
static void shutdown_io(struct ctx *c)
{
	struct req *r = c->inflight;

	if (c->io_closed)
		return;
	c->io_closed = true;
	c->inflight = NULL;
	conn_drop(c);
	if (r) {
		req_finish(c, r, -ECANCELED, NULL, 0);
		req_release(r);
	}
	fail_queue(c, -ECANCELED);
	uv_close((uv_handle_t *)&c->rtimer, on_handle_closed);
	uv_close((uv_handle_t *)&c->ptimer, on_handle_closed);
}

/* ------------------------------------------------------ restore polling */

static void on_poll(uv_timer_t *t)
{
	struct ctx *c = t->data;
	struct req *r;

	c->poll_armed = false;
	if (!c->nawaiting || c->stopping || c->poll_outstanding)
		return;
	r = req_new(c, R_DUMP);
	if (!r) {
		arm_poll(c);
		return;
	}
	r->poll = true;
	sb_printf(&r->text, "get=1\n\n");
	c->poll_outstanding = true;
	enqueue(c, r);
}

static void arm_poll(struct ctx *c)
{
	uint64_t delay = c->conf->restore_poll_ms;

	if (!c->running || c->stopping || c->poll_armed || c->poll_outstanding || !c->nawaiting)
		return;
	/* on a large interface, do not dump back to back */
	if (c->last_dump_ms * 10 > delay)
		delay = c->last_dump_ms * 10;
	uv_timer_start(&c->ptimer, on_poll, delay, 0);
	c->poll_armed = true;
}

/* ------------------------------------------------------------------ ops */

static int iu_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	const struct conf *cf = conf;
	struct ctx *c;
	int n;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	n = snprintf(c->path, sizeof(c->path), "%s/%s.sock", cf->socket_dir, cf->interface);
	if (n < 0 || (size_t)n >= sizeof(c->path)) {
		free(c);
		return -ENAMETOOLONG;
	}
	c->nbuckets = 256;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return -ENOMEM;
	}
	c->host = host;
	c->self = self;
	c->conf = cf;
	c->loop = host->loop;
	c->q_tail = &c->q_head;
	randombytes_buf(c->hkey, sizeof(c->hkey));
	c->installed = host->counter(self, "installed");
	c->unchanged = host->counter(self, "unchanged");
	c->removed = host->counter(self, "removed");
	c->install_failed = host->counter(self, "install_failed");
	c->restore_keepalive = host->counter(self, "restore_keepalive");
	c->restore_timeout = host->counter(self, "restore_timeout");
	c->stall_retries = host->counter(self, "stall_retries");
	c->uapi_errors = host->counter(self, "uapi_errors");
	c->reconnects = host->counter(self, "reconnects");
	c->g_peers = host->gauge(self, "peers");
	c->g_awaiting = host->gauge(self, "awaiting_handshake");
	*ctxp = c;
	return 0;
}

static const char *iu_validate(const void *conf, const char **option, char *buf, size_t len)
{
	const struct conf *cf = conf;

	if (cf->socket_dir && cf->interface &&
	    strlen(cf->socket_dir) + strlen(cf->interface) + 7 > SUN_PATH_MAX) {
		*option = "socket_dir";
		snprintf(buf, len, "%s/%s.sock is longer than a unix socket path may be (%zu bytes)",
			 cf->socket_dir, cf->interface, SUN_PATH_MAX - 1);
		return buf;
	}
	return NULL;
}

/*
 * The only blocking I/O: one get, to learn the private key and the port
 * before the decoder asks for them.
 */
static int get_device_blocking(struct ctx *c, size_t *npeers)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = c->conf->timeout_ms / 1000,
			      .tv_usec = c->conf->timeout_ms % 1000 * 1000 };
	static const char get[] = "get=1\n\n";
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0, off = 0;
	ssize_t n;
	int fd, ret;

	memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "cannot connect to %s: %s (is wireguard-go running for %s?)", c->path,
			     strerror(-ret), c->conf->interface);
		goto out;
	}
	while (off < sizeof(get) - 1) {
		n = write(fd, get + off, sizeof(get) - 1 - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
			goto io;
		}
		off += n;
	}
	for (;;) {
		if (cap - len < RBUF_MIN / 4) {
			size_t ncap = cap ? cap * 2 : RBUF_MIN;

			ret = -EMSGSIZE;
			if (ncap > RBUF_MAX)
				goto io;
			ret = -ENOMEM;
			nb = malloc(ncap);
			if (!nb)
				goto io;
			if (buf) {
				memcpy(nb, buf, len);
				sodium_memzero(buf, len);
				free(buf);
			}
			buf = nb;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
			goto io;
		}
		if (n == 0) {
			ret = -ECONNRESET;
			goto io;
		}
		off = len ? len - 1 : 0;
		len += n;
		if (memmem(buf + off, len - off, "\n\n", 2))
			break;
	}
	ret = reply_status(buf, len);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "get on %s failed: errno=%d (%s)", c->path,
			     ret, uapi_strerror(ret));
		goto out;
	}
	ret = parse_get(c, buf, len, true, NULL, npeers);
	if (ret)
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: could not parse the reply to get",
			     c->path);
	goto out;
io:
	c->host->log(c->self, WGGWD_LOG_ERROR, "get on %s: %s", c->path, strerror(-ret));
out:
	if (buf) {
		sodium_memzero(buf, cap);
		free(buf);
	}
	close(fd);
	return ret;
}

static int iu_start(void *ctx)
{
	struct ctx *c = ctx;
	char pub[WG_KEY_B64_LEN];
	size_t npeers = 0;
	int ret;

	ret = get_device_blocking(c, &npeers);
	if (ret) {
		sodium_memzero(&c->dev, sizeof(c->dev));
		return ret;
	}
	snprintf(c->dev.ifname, sizeof(c->dev.ifname), "%s", c->conf->interface);
	if (c->dev.has_private_key) {
		crypto_scalarmult_base(c->dev.public_key, c->dev.private_key);
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "%s: public key %s, listen port %u, %zu peers; completion by %s",
			     c->conf->interface, b64(pub, c->dev.public_key), c->dev.listen_port,
			     npeers, completion_names[c->conf->completion]);
	} else {
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "%s has no private key yet (listen port %u, %zu peers)",
			     c->conf->interface, c->dev.listen_port, npeers);
	}
	c->have_dev = true;
	/* nothing below can fail: a failed start is not stopped, so no
	 * handle may be open when it returns an error */
	uv_timer_init(c->loop, &c->rtimer);
	uv_timer_init(c->loop, &c->ptimer);
	c->rtimer.data = c;
	c->ptimer.data = c;
	c->handles = 2;
	c->running = true;
	conn_open(c); /* ready for the first install */
	return 0;
}

static int iu_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const struct wggwd_peer *pe = &it->peer;
	const uint8_t *key = pe->has & WGGWD_PEER_HAS_PUBLIC_KEY ? pe->public_key : it->public_key;
	union wggwd_sockaddr ep = { 0 };
	bool from_knock = false;
	struct peer_ent *e;
	struct req *r;
	char buf[64];
	uint16_t i, n;

	if (!c->running || c->stopping) {
		it->drop_reason = "installer_stopped";
		return WGGWD_ERROR;
	}
	if (wg_key_is_zero(key)) {
		(*c->install_failed)++;
		it->drop_reason = "no_public_key";
		return WGGWD_ERROR;
	}
	if (it->op == WGGWD_OP_REMOVE) {
		r = req_new(c, R_REMOVE_ITEM);
		if (!r)
			goto oom;
		r->item = it;
		memcpy(r->key, key, WGGWD_KEY_LEN);
		sb_printf(&r->text, "set=1\n");
		sb_key(&r->text, "public_key", key);
		sb_printf(&r->text, "remove=true\n\n");
		if (r->text.oom)
			goto oom_req;
		enqueue(c, r);
		return WGGWD_PENDING;
	}

	/* the endpoint: where the knock came from, else the configured one */
	if (it->transport != WGGWD_TR_PUSH &&
	    (it->endpoint.sa.sa_family == AF_INET || it->endpoint.sa.sa_family == AF_INET6)) {
		ep = it->endpoint;
		from_knock = true;
	} else if (pe->has & WGGWD_PEER_HAS_ENDPOINT) {
		ep = pe->endpoint;
	}

	r = req_new(c, R_INSTALL);
	if (!r)
		goto oom;
	r->item = it;
	memcpy(r->key, key, WGGWD_KEY_LEN);
	r->endpoint = ep;
	r->keepalive = pe->has & WGGWD_PEER_HAS_KEEPALIVE ? pe->keepalive : 0;
	config_hash(c, pe, r->keepalive, r->cfg);

	e = peer_find(c, key);
	if (e && !e->stale && !memcmp(e->cfg, r->cfg, CFG_HASH_LEN) &&
	    (ep.sa.sa_family == AF_UNSPEC || wg_sockaddr_equal(&e->endpoint, &ep))) {
		req_free(r);
		(*c->unchanged)++;
		it->flags |= WGGWD_ITEM_UNCHANGED;
		return WGGWD_CONTINUE;
	}

	r->ka_sent = r->keepalive;
	if (from_knock && c->conf->completion == COMPLETION_INVERSION) {
		r->ka_sent = r->keepalive ? r->keepalive : c->conf->inversion_keepalive;
	} else if (from_knock && c->conf->completion == COMPLETION_REINJECT) {
		/* a keepalive now would make the interface initiate too,
		 * and collide with the re-injected initiation */
		r->ka_sent = 0;
		r->reinject = true;
	} else if (from_knock && c->conf->completion == COMPLETION_NONE) {
		ep.sa.sa_family = AF_UNSPEC; /* what the original daemon did */
	}

	sb_printf(&r->text, "set=1\n");
	sb_key(&r->text, "public_key", key);
	if (pe->has & WGGWD_PEER_HAS_PRESHARED_KEY) {
		sb_key(&r->text, "preshared_key", pe->preshared_key);
	} else {
		static const uint8_t zero[WGGWD_KEY_LEN];

		sb_key(&r->text, "preshared_key", zero); /* none */
	}
	if (ep.sa.sa_family != AF_UNSPEC) {
		wg_sockaddr_str(&ep, buf, sizeof(buf));
		sb_printf(&r->text, "endpoint=%s\n", buf);
	}
	if (pe->has & WGGWD_PEER_HAS_ALLOWED_IPS) {
		sb_printf(&r->text, "replace_allowed_ips=true\n");
		n = pe->n_allowed > WGGWD_MAX_ALLOWED ? WGGWD_MAX_ALLOWED : pe->n_allowed;
		for (i = 0; i < n; i++) {
			wg_allowed_ip_str(&pe->allowed[i], buf, sizeof(buf));
			sb_printf(&r->text, "allowed_ip=%s\n", buf);
		}
	}
	/* last, and in the same request as the endpoint (PROTOCOL.md (g)).
	 * wireguard-go sends at once only on a change from 0 to non-zero,
	 * so going through 0 makes it initiate even if the peer already had
	 * this keepalive (a re-install toward a new endpoint) */
	if (from_knock && c->conf->completion == COMPLETION_INVERSION)
		sb_printf(&r->text, "persistent_keepalive_interval=0\n");
	sb_printf(&r->text, "persistent_keepalive_interval=%u\n\n", r->ka_sent);
	if (r->text.oom)
		goto oom_req;
	if (from_knock && c->conf->completion == COMPLETION_INVERSION && c->conf->stall_retry_ms)
		sb_printf(&r->retry, "%s", r->text.p); /* best effort: no retry if short of memory */
	enqueue(c, r);
	return WGGWD_PENDING;
oom_req:
	req_free(r);
oom:
	(*c->install_failed)++;
	it->drop_reason = "out_of_memory";
	return WGGWD_ERROR;
}

static void iu_stop(void *ctx)
{
	struct ctx *c = ctx;
	struct restore_ref *refs = NULL;
	struct req *r;
	size_t i, n = 0;

	c->stopping = true;
	if (!c->running) {
		c->io_closed = true;
		c->host->stopped(c->self);
		return;
	}
	uv_timer_stop(&c->ptimer);
	c->poll_armed = false;
	fail_queue(c, -ECANCELED);
	if (c->inflight) /* its reply is read and dropped */
		req_finish(c, c->inflight, -ECANCELED, NULL, 0);
	/* peers still waiting for their handshake would initiate forever
	 * with the inversion keepalive: put theirs back before leaving */
	if (c->nawaiting)
		refs = calloc(c->nawaiting, sizeof(*refs));
	for (i = 0; refs && i < c->nbuckets; i++) {
		struct peer_ent *e;

		for (e = c->buckets[i]; e; e = e->next) {
			if (!e->awaiting || n == c->nawaiting)
				continue;
			memcpy(refs[n].key, e->key, WGGWD_KEY_LEN);
			refs[n++].gen = e->gen;
		}
	}
	r = n ? req_new(c, R_RESTORE) : NULL;
	if (!r) {
		free(refs);
		shutdown_io(c);
		return;
	}
	r->refs = refs;
	r->n = n;
	r->final = true;
	sb_printf(&r->text, "set=1\n");
	for (i = 0; i < n; i++) {
		sb_key(&r->text, "public_key", refs[i].key);
		sb_printf(&r->text, "update_only=true\npersistent_keepalive_interval=%u\n",
			  peer_find(c, refs[i].key)->keepalive);
	}
	sb_printf(&r->text, "\n");
	if (r->text.oom) {
		req_free(r);
		shutdown_io(c);
		return;
	}
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "stopping: putting back the keepalive of %zu peers still waiting for a handshake",
		     n);
	enqueue(c, r); /* shutdown_io() follows its reply */
}

static void iu_destroy(void *ctx)
{
	struct ctx *c = ctx;
	struct peer_ent *e, *n;
	size_t i;

	for (i = 0; i < c->nbuckets; i++) {
		for (e = c->buckets[i]; e; e = n) {
			n = e->next;
			sb_free(&e->retry);
			free(e);
		}
	}
	free(c->buckets);
	if (c->rbuf) {
		sodium_memzero(c->rbuf, c->rcap);
		free(c->rbuf);
	}
	sodium_memzero(c, sizeof(*c)); /* the private key, the hash key */
	free(c);
}

static int iu_device(void *ctx, struct wggwd_device *dev)
{
	struct ctx *c = ctx;

	if (!c->have_dev) {
		memset(dev, 0, sizeof(*dev));
		return -ENODATA;
	}
	*dev = c->dev;
	return 0;
}

static int iu_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	struct ctx *c = ctx;
	struct req *r;

	if (!c->running || c->stopping)
		return -ESHUTDOWN;
	r = req_new(c, R_DUMP);
	if (!r)
		return -ENOMEM;
	r->dcb = cb;
	r->arg = arg;
	sb_printf(&r->text, "get=1\n\n");
	if (r->text.oom) {
		req_free(r);
		return -ENOMEM;
	}
	enqueue(c, r);
	return 0;
}

static int iu_remove(void *ctx, const uint8_t (*keys)[WGGWD_KEY_LEN], size_t n,
		     wggwd_status_cb cb, void *arg)
{
	struct ctx *c = ctx;
	struct req *r;
	size_t i;

	if (!c->running || c->stopping)
		return -ESHUTDOWN;
	r = req_new(c, R_REMOVE);
	if (!r)
		return -ENOMEM;
	r->keys = malloc((n ? n : 1) * sizeof(*r->keys));
	if (!r->keys) {
		req_free(r);
		return -ENOMEM;
	}
	if (n)
		memcpy(r->keys, keys, n * sizeof(*r->keys));
	r->n = n;
	r->scb = cb;
	r->arg = arg;
	sb_printf(&r->text, "set=1\n");
	for (i = 0; i < n; i++) {
		sb_key(&r->text, "public_key", keys[i]);
		sb_printf(&r->text, "remove=true\n");
	}
	sb_printf(&r->text, "\n");
	if (r->text.oom) {
		req_free(r);
		return -ENOMEM;
	}
	enqueue(c, r);
	return 0;
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = iu_create,
	.validate = iu_validate,
	.start = iu_start,
	.process = iu_process,
	.stop = iu_stop,
	.destroy = iu_destroy,
	.device = iu_device,
	.dump = iu_dump,
	.remove = iu_remove,
};

WGGWD_PLUGIN_DEFINE(
	.name = "installer-uapi",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "installs peers on a userspace WireGuard interface (wireguard-go) over its UAPI socket",
	.kind = WGGWD_INSTALLER,
	.in = WGGWD_MSG_PEER,
	.out = WGGWD_MSG_EVENT,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
