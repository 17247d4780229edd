// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * resolver-http: asks the control plane's HTTP API who a key is.
 *
 *   GET <url with {public_key} replaced by the URL-encoded base64 key>
 *   200 {"public_key", "allowed_ips": [...], "preshared_key"?,
 *        "persistent_keepalive"?, "ttl"?}  -> the peer
 *   404                                    -> unknown key (a store caches it)
 *   anything else                          -> an error, with a backoff
 *
 * libcurl's multi interface runs on the daemon's libuv loop (one uv_poll_t
 * per socket curl asks us to watch, one uv_timer_t for curl's timeouts):
 * no thread per request. What protects the API on a bad day, in the order
 * an item meets it: a per-key exponential backoff after a failure, a
 * circuit breaker that opens after breaker_failures failures in a row and
 * half-opens after breaker_cooldown to let one probe through, a bounded
 * FIFO beyond max_concurrency, and token buckets (global and per source
 * address) so that a flood of fresh keys cannot become a flood of
 * requests. What protects the gateway: every allowed IP of an answer must
 * lie inside allowed_prefixes, and the answer must be about the key asked.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "peerjson.h"
#include "wgutil.h"

struct conf {
	char *url;
	char *token_file;
	char *ca_file;
	bool tls_verify;
	int64_t timeout_ms;
	int64_t max_concurrency;
	int64_t max_queue;
	struct wggwd_list allowed_prefixes;
	int64_t rate;
	int64_t burst;
	int64_t source_rate;
	int64_t source_burst;
	int64_t backoff_ms;
	int64_t backoff_max_ms;
	int64_t breaker_failures;
	int64_t breaker_cooldown_ms;
	uint64_t max_body;
};

static const char *check_url(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!s)
		return NULL;
	if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8)) {
		snprintf(buf, len, "expected an http:// or https:// URL, got \"%.80s\"", s);
		return buf;
	}
	if (!strstr(s, "{public_key}")) {
		snprintf(buf, len, "the URL must contain {public_key} (replaced by the URL-encoded base64 key)");
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	{ .name = "url", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, url), .check = check_url,
	  .help = "the lookup URL; {public_key} is replaced by the key, base64 with + / = escaped (https://cp.example/v1/peers/{public_key})" },
	{ .name = "token_file", .type = WGGWD_OPT_SECRET_FILE,
	  .offset = offsetof(struct conf, token_file),
	  .help = "file holding a bearer token sent as \"Authorization: Bearer ...\" (mode 0600; never logged)" },
	{ .name = "ca_file", .type = WGGWD_OPT_PATH,
	  .offset = offsetof(struct conf, ca_file),
	  .help = "PEM file of the CA(s) that sign the API's certificate (default: the system's)" },
	{ .name = "tls_verify", .type = WGGWD_OPT_BOOL, .def = "true",
	  .offset = offsetof(struct conf, tls_verify),
	  .help = "verify the API's certificate and host name; false is for tests only, and logged at start" },
	{ .name = "timeout", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 10, .max = 60000,
	  .offset = offsetof(struct conf, timeout_ms),
	  .help = "the whole request, connection included; past it the lookup fails (timeout)" },
	{ .name = "max_concurrency", .type = WGGWD_OPT_INT, .def = "16", .min = 1, .max = 1024,
	  .offset = offsetof(struct conf, max_concurrency),
	  .help = "requests (and connections) to the API at once; more wait in a FIFO" },
	{ .name = "max_queue", .type = WGGWD_OPT_INT, .def = "1024", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, max_queue),
	  .help = "lookups waiting for a free request slot; beyond it they are dropped (overloaded), and so is one that waited longer than timeout (queue_timeout)" },
	{ .name = "allowed_prefixes", .type = WGGWD_OPT_LIST, .flags = WGGWD_OPT_REQUIRED,
	  .min = 1, .max = 256, .offset = offsetof(struct conf, allowed_prefixes),
	  .check = wg_check_allowed_ip,
	  .help = "every allowed IP of an answer must lie inside one of these (10.90.0.0/16); an answer asking for more is refused (policy), so a buggy control plane cannot route the gateway's traffic to one client" },
	{ .name = "rate", .type = WGGWD_OPT_INT, .def = "50", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, rate),
	  .help = "lookups per second sent to the API, on average (token bucket; 0: no limit); more are dropped (budget)" },
	{ .name = "burst", .type = WGGWD_OPT_INT, .def = "100", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, burst),
	  .help = "lookups that may be sent at once above rate" },
	{ .name = "source_rate", .type = WGGWD_OPT_INT, .def = "5", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, source_rate),
	  .help = "lookups per second per source address (port ignored; 0: no limit)" },
	{ .name = "source_burst", .type = WGGWD_OPT_INT, .def = "20", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, source_burst),
	  .help = "lookups one source address may cause at once above source_rate" },
	{ .name = "backoff", .type = WGGWD_OPT_DURATION, .def = "1s", .min = 0, .max = 3600000,
	  .offset = offsetof(struct conf, backoff_ms),
	  .help = "after a failed lookup the key is not asked for again for this long, doubling with each further failure (0: off)" },
	{ .name = "backoff_max", .type = WGGWD_OPT_DURATION, .def = "5m", .min = 0, .max = 86400000,
	  .offset = offsetof(struct conf, backoff_max_ms),
	  .help = "the longest per-key backoff" },
	{ .name = "breaker_failures", .type = WGGWD_OPT_INT, .def = "5", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, breaker_failures),
	  .help = "failed requests in a row that open the circuit breaker: no request is sent until breaker_cooldown has passed (0: no breaker)" },
	{ .name = "breaker_cooldown", .type = WGGWD_OPT_DURATION, .def = "10s", .min = 1, .max = 3600000,
	  .offset = offsetof(struct conf, breaker_cooldown_ms),
	  .help = "how long the breaker stays open before one probe request may test the API" },
	{ .name = "max_body", .type = WGGWD_OPT_SIZE, .def = "64k", .min = 256, .max = 16 << 20,
	  .offset = offsetof(struct conf, max_body),
	  .help = "the largest answer accepted (bad_body beyond it)" },
	WGGWD_OPT_END
};

enum err {
	E_HTTP_STATUS, E_TIMEOUT, E_BAD_BODY, E_KEY_MISMATCH, E_POLICY, E_CONNECT, E_TLS, E_MAX
};
static const char *const err_names[E_MAX] = {
	"http_status", "timeout", "bad_body", "key_mismatch", "policy", "connect", "tls",
};

enum {
	C_REQUESTS, C_OK, C_NOT_FOUND, C_BUDGET, C_BACKOFF, C_BREAKER_REFUSED, C_BREAKER_OPENS,
	C_BREAKER_CLOSES, C_OVERLOADED, C_QUEUE_EXPIRED, C_MAX
};
static const char *const counter_names[C_MAX] = {
	"requests", "ok", "not_found", "budget_refused", "backoff_refused",
	"breaker_open_refused", "breaker_opens", "breaker_closes", "overloaded",
	"queue_expired",
};

enum breaker { B_CLOSED, B_OPEN, B_HALF_OPEN };

#define BACKOFF_SLOTS 4096
#define BACKOFF_PROBE 8
#define SOURCE_SLOTS 16384
#define TOKEN_MAX 4096

struct bucket {
	double tokens;
	uint64_t last_ms; /* 0: never used (full) */
};

struct backoff {
	uint8_t key[WGGWD_KEY_LEN];
	uint64_t until_ms;
	uint32_t failures;
	bool used;
};

struct ctx;

/* One socket curl wants watched. */
struct sock {
	uv_poll_t poll;
	struct ctx *c;
	curl_socket_t fd;
	struct sock *prev, *next;
};

/* One lookup: waiting in the FIFO, or a transfer. */
struct req {
	struct ctx *c;
	struct wggwd_item *it;
	CURL *easy;
	uint8_t *body;
	size_t len, cap;
	bool probe;
	bool too_big;
	uint64_t queued_ms;
	struct req *prev, *next;
	char errbuf[CURL_ERROR_SIZE];
};

struct reqlist {
	struct req *head, *tail;
	size_t n;
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uv_loop_t *loop;

	CURLM *multi;
	uv_timer_t timer;
	bool timer_init;
	struct sock *socks;
	unsigned open_handles;
	bool stopping, stopped;

	struct curl_slist *headers; /* wiped: may hold the token */
	struct wggwd_allowed_ip *prefixes;
	size_t n_prefixes;

	struct reqlist queue, running;

	struct bucket global;
	struct bucket *sources;
	struct backoff *backoff;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];

	enum breaker breaker;
	int64_t fails_in_row;
	uint64_t open_until_ms;
	bool probe_out;

	uint64_t log_next_ms;
	uint64_t log_suppressed;

	uint64_t *c[C_MAX];
	uint64_t *err[E_MAX];
	int64_t *in_flight, *queued, *breaker_state;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void list_add(struct reqlist *l, struct req *r)
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

static void list_del(struct reqlist *l, struct req *r)
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

static void req_free(struct req *r)
{
	if (!r)
		return;
	if (r->easy)
		curl_easy_cleanup(r->easy);
	if (r->body) {
		sodium_memzero(r->body, r->cap); /* may hold a preshared key */
		free(r->body);
	}
	free(r);
}

/* At most one warning a second; the rest at debug level, counted. */
static void WGGWD_PRINTF(2, 3) log_limited(struct ctx *c, const char *fmt, ...)
{
	uint64_t now = mono_ms();
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (now < c->log_next_ms) {
		c->log_suppressed++;
		c->host->log(c->self, WGGWD_LOG_DEBUG, "%s", msg);
		return;
	}
	if (c->log_suppressed)
		c->host->log(c->self, WGGWD_LOG_WARN, "%s (and %llu more failures in the last second)",
			     msg, (unsigned long long)c->log_suppressed);
	else
		c->host->log(c->self, WGGWD_LOG_WARN, "%s", msg);
	c->log_suppressed = 0;
	c->log_next_ms = now + 1000;
}

/* ------------------------------------------------------------ budgets */

static bool bucket_has(struct bucket *b, int64_t rate, int64_t burst, uint64_t now)
{
	if (!rate)
		return true;
	if (!b->last_ms) {
		b->tokens = burst;
	} else if (now > b->last_ms) {
		b->tokens += (double)(now - b->last_ms) * rate / 1000.0;
		if (b->tokens > burst)
			b->tokens = burst;
	}
	b->last_ms = now ? now : 1;
	return b->tokens >= 1.0;
}

static void bucket_take(struct bucket *b, int64_t rate)
{
	if (rate)
		b->tokens -= 1.0;
}

static struct bucket *source_bucket(struct ctx *c, const union wggwd_sockaddr *a)
{
	uint8_t buf[17] = { 0 }, h[crypto_shorthash_BYTES];
	uint64_t v;

	if (a->sa.sa_family == AF_INET) {
		buf[0] = 4;
		memcpy(buf + 1, &a->in4.sin_addr, 4);
	} else if (a->sa.sa_family == AF_INET6) {
		buf[0] = 6;
		memcpy(buf + 1, &a->in6.sin6_addr, 16);
	}
	/* keyed: a sender cannot pick addresses that share a victim's bucket */
	crypto_shorthash(h, buf, sizeof(buf), c->hash_key);
	memcpy(&v, h, sizeof(v));
	return &c->sources[v % SOURCE_SLOTS];
}

/* ------------------------------------------------------------ backoff */

static struct backoff *backoff_find(struct ctx *c, const uint8_t *key, bool add, uint64_t now)
{
	uint8_t h[crypto_shorthash_BYTES];
	struct backoff *b, *victim = NULL;
	uint64_t v;
	unsigned i;

	crypto_shorthash(h, key, WGGWD_KEY_LEN, c->hash_key);
	memcpy(&v, h, sizeof(v));
	for (i = 0; i < BACKOFF_PROBE; i++) {
		b = &c->backoff[(v + i) % BACKOFF_SLOTS];
		if (b->used && !memcmp(b->key, key, WGGWD_KEY_LEN))
			return b;
		if (!add)
			continue;
		/* free, or long forgotten, or the one that ends first */
		if (!b->used || b->until_ms + (uint64_t)c->conf->backoff_max_ms < now) {
			if (!victim || victim->used)
				victim = b;
		} else if (!victim || (victim->used && b->until_ms < victim->until_ms)) {
			victim = b;
		}
	}
	if (!add)
		return NULL;
	memset(victim, 0, sizeof(*victim));
	memcpy(victim->key, key, WGGWD_KEY_LEN);
	victim->used = true;
	return victim;
}

static void backoff_fail(struct ctx *c, const uint8_t *key)
{
	uint64_t now = mono_ms(), d;
	struct backoff *b;

	if (!c->conf->backoff_ms)
		return;
	b = backoff_find(c, key, true, now);
	if (b->failures < 32)
		b->failures++;
	d = (uint64_t)c->conf->backoff_ms << (b->failures - 1 < 20 ? b->failures - 1 : 20);
	if (d > (uint64_t)c->conf->backoff_max_ms)
		d = c->conf->backoff_max_ms;
	b->until_ms = now + d;
}

static void backoff_clear(struct ctx *c, const uint8_t *key)
{
	struct backoff *b = backoff_find(c, key, false, 0);

	if (b)
		b->used = false;
}

/* ------------------------------------------------------------ breaker */

static void breaker_set(struct ctx *c, enum breaker s)
{
	c->breaker = s;
	*c->breaker_state = s;
}

static void breaker_result(struct ctx *c, struct req *r, bool failed)
{
	if (r->probe)
		c->probe_out = false;
	if (!failed) {
		c->fails_in_row = 0;
		if (c->breaker != B_CLOSED) {
			breaker_set(c, B_CLOSED);
			(*c->c[C_BREAKER_CLOSES])++;
			c->host->log(c->self, WGGWD_LOG_INFO, "the API answers again: circuit breaker closed");
		}
		return;
	}
	c->fails_in_row++;
	if (!c->conf->breaker_failures)
		return;
	if (c->breaker == B_HALF_OPEN ||
	    (c->breaker == B_CLOSED && c->fails_in_row >= c->conf->breaker_failures)) {
		if (c->breaker == B_CLOSED)
			(*c->c[C_BREAKER_OPENS])++;
		breaker_set(c, B_OPEN);
		c->open_until_ms = mono_ms() + c->conf->breaker_cooldown_ms;
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "%lld failed requests in a row: circuit breaker open, no lookups for %lld ms",
			     (long long)c->fails_in_row, (long long)c->conf->breaker_cooldown_ms);
	}
}

/* ---------------------------------------------------------- answering */

static int fail(struct ctx *c, struct req *r, enum err e)
{
	(*c->err[e])++;
	r->it->drop_reason = err_names[e];
	backoff_fail(c, r->it->public_key);
	breaker_result(c, r, e != E_POLICY);
	return WGGWD_ERROR;
}

static int parse_answer(struct ctx *c, struct req *r)
{
	struct wggwd_item *it = r->it;
	struct wggwd_peer *p = &it->peer;
	char b64[WG_KEY_B64_LEN], ipbuf[64];
	json_t *root;
	json_error_t jerr;
	enum err e = E_BAD_BODY;
	const char *what = "not a JSON object";
	int ret = WGGWD_ERROR, out;

	wg_key_to_b64(b64, it->public_key);
	root = json_loadb((const char *)r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root))
		goto bad;
	what = wg_peer_from_json(root, p);
	if (what)
		goto bad;
	if (memcmp(p->public_key, it->public_key, WGGWD_KEY_LEN)) {
		e = E_KEY_MISMATCH;
		what = "the answer is about another key";
		goto bad;
	}
	/* the policy: nothing outside allowed_prefixes */
	out = wg_peer_outside(p, c->prefixes, c->n_prefixes);
	if (out >= 0) {
		wg_allowed_ip_str(&p->allowed[out], ipbuf, sizeof(ipbuf));
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "peer %s: the API answered allowed IP %s, outside allowed_prefixes: refused",
			     b64, ipbuf);
		e = E_POLICY;
		what = NULL;
		goto bad;
	}
	(*c->c[C_OK])++;
	backoff_clear(c, it->public_key);
	breaker_result(c, r, false);
	ret = WGGWD_CONTINUE;
	goto out;
bad:
	sodium_memzero(p, sizeof(*p));
	if (what)
		log_limited(c, "peer %s: bad answer from the API: %s%s%s", b64, what,
			    root ? "" : ": ", root ? "" : jerr.text);
	ret = fail(c, r, e);
out:
	if (root) {
		wg_peer_json_wipe(root); /* jansson's copy of the secret */
		json_decref(root);
	}
	return ret;
}

static int judge(struct ctx *c, struct req *r, CURLcode res)
{
	char b64[WG_KEY_B64_LEN];
	long status = 0;

	wg_key_to_b64(b64, r->it->public_key);
	if (res != CURLE_OK) {
		enum err e;

		switch (res) {
		case CURLE_OPERATION_TIMEDOUT:
			e = E_TIMEOUT;
			break;
		case CURLE_WRITE_ERROR:
			e = r->too_big ? E_BAD_BODY : E_CONNECT;
			break;
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
			e = E_TLS;
			break;
		default:
			e = E_CONNECT;
			break;
		}
		log_limited(c, "peer %s: lookup failed: %s (%s)", b64, err_names[e],
			    r->errbuf[0] ? r->errbuf : curl_easy_strerror(res));
		return fail(c, r, e);
	}
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status == 200)
		return parse_answer(c, r);
	if (status == 404) {
		(*c->c[C_NOT_FOUND])++;
		backoff_clear(c, r->it->public_key);
		breaker_result(c, r, false);
		r->it->drop_reason = "unknown_key";
		r->it->flags |= WGGWD_ITEM_NOT_FOUND;
		return WGGWD_DROP;
	}
	log_limited(c, "peer %s: the API answered HTTP %ld", b64, status);
	return fail(c, r, E_HTTP_STATUS);
}

/* ---------------------------------------------------------- transfers */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct req *r = arg;
	size_t len = size * n;

	if (r->len + len > r->c->conf->max_body) {
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

static int req_start(struct ctx *c, struct req *r)
{
	const struct conf *cf = c->conf;
	char *url;
	CURLMcode mc;

	url = make_url(cf->url, r->it->public_key);
	r->easy = curl_easy_init();
	if (!url || !r->easy) {
		free(url);
		return -ENOMEM;
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	free(url); /* curl keeps a copy */
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
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
	list_add(&c->running, r);
	(*c->in_flight)++;
	(*c->c[C_REQUESTS])++;
	return 0;
}

/* Start what waits in the FIFO while there is room. What waited longer
 * than a request may take is dropped (the client has sent a new
 * initiation by then), and so is all of it while the breaker is open. */
static void pump(struct ctx *c)
{
	uint64_t now = mono_ms();

	while (!c->stopping && c->queue.head && c->running.n < (size_t)c->conf->max_concurrency) {
		struct req *r = c->queue.head;
		struct wggwd_item *it = r->it;

		list_del(&c->queue, r);
		(*c->queued)--;
		if (now - r->queued_ms > (uint64_t)c->conf->timeout_ms ||
		    (c->breaker != B_CLOSED && !r->probe)) {
			bool open = c->breaker != B_CLOSED && !r->probe;

			(*c->c[open ? C_BREAKER_REFUSED : C_QUEUE_EXPIRED])++;
			it->drop_reason = open ? "breaker_open" : "queue_timeout";
			if (r->probe)
				c->probe_out = false;
			req_free(r);
			c->host->complete(c->self, it, WGGWD_DROP);
			continue;
		}
		if (req_start(c, r)) {
			if (r->probe)
				c->probe_out = false;
			it->drop_reason = "internal";
			req_free(r);
			c->host->complete(c->self, it, WGGWD_ERROR);
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
		struct wggwd_item *it;
		struct req *r = NULL;
		int verdict;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
		curl_multi_remove_handle(c->multi, easy);
		list_del(&c->running, r);
		(*c->in_flight)--;
		it = r->it;
		verdict = judge(c, r, res);
		req_free(r);
		pump(c);
		c->host->complete(c->self, it, verdict);
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

static void on_handle_closed(uv_handle_t *h)
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

static void sock_close(struct ctx *c, struct sock *sk)
{
	if (sk->prev)
		sk->prev->next = sk->next;
	else
		c->socks = sk->next;
	if (sk->next)
		sk->next->prev = sk->prev;
	uv_close((uv_handle_t *)&sk->poll, on_handle_closed);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct ctx *c = userp;
	struct sock *sk = socketp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (sk) {
			curl_multi_assign(c->multi, fd, NULL);
			sock_close(c, sk);
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

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct ctx *c = userp;

	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else /* 0: as soon as the loop turns (not from inside curl) */
		uv_timer_start(&c->timer, on_timeout, timeout_ms, 0);
	return 0;
}

/* ------------------------------------------------------------- process */

static int rh_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const struct conf *cf = c->conf;
	uint64_t now = mono_ms();
	struct bucket *src;
	struct backoff *b;
	struct req *r;
	bool probe = false;

	if (c->stopping || !c->multi) {
		it->drop_reason = "shutdown";
		return WGGWD_ERROR;
	}
	b = backoff_find(c, it->public_key, false, now);
	if (b && now < b->until_ms) {
		(*c->c[C_BACKOFF])++;
		it->drop_reason = "backoff";
		return WGGWD_DROP;
	}
	if (c->breaker != B_CLOSED) {
		if (c->probe_out || (c->breaker == B_OPEN && now < c->open_until_ms)) {
			(*c->c[C_BREAKER_REFUSED])++;
			it->drop_reason = "breaker_open";
			return WGGWD_DROP;
		}
		probe = true; /* half-open: this one may test the API */
	}
	if (c->running.n >= (size_t)cf->max_concurrency && c->queue.n >= (size_t)cf->max_queue) {
		(*c->c[C_OVERLOADED])++;
		it->drop_reason = "overloaded";
		return WGGWD_DROP;
	}
	src = source_bucket(c, &it->src);
	if (!bucket_has(&c->global, cf->rate, cf->burst, now) ||
	    !bucket_has(src, cf->source_rate, cf->source_burst, now)) {
		(*c->c[C_BUDGET])++;
		it->drop_reason = "budget";
		return WGGWD_DROP;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		it->drop_reason = "no_memory";
		return WGGWD_ERROR;
	}
	bucket_take(&c->global, cf->rate);
	bucket_take(src, cf->source_rate);
	r->c = c;
	r->it = it;
	r->queued_ms = now;
	if (probe) {
		r->probe = true;
		c->probe_out = true;
		breaker_set(c, B_HALF_OPEN);
		c->host->log(c->self, WGGWD_LOG_INFO, "circuit breaker half-open: probing the API");
	}
	list_add(&c->queue, r);
	(*c->queued)++;
	pump(c); /* may complete it at once (a failed start): the core allows that */
	return WGGWD_PENDING;
}

/* --------------------------------------------------------- life cycle */

static int rh_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));
	char name[64];
	int i;

	if (!c)
		return -ENOMEM;
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		free(c);
		return -EIO;
	}
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->loop = host->loop;
	for (i = 0; i < C_MAX; i++)
		c->c[i] = host->counter(self, counter_names[i]);
	for (i = 0; i < E_MAX; i++) {
		snprintf(name, sizeof(name), "error.%s", err_names[i]);
		c->err[i] = host->counter(self, name);
	}
	c->in_flight = host->gauge(self, "in_flight");
	c->queued = host->gauge(self, "queued");
	c->breaker_state = host->gauge(self, "breaker_state");
	*ctxp = c;
	return 0;
}

static const char *rh_validate(const void *conf, const char **option, char *buf, size_t len)
{
	const struct conf *cf = conf;

	if (cf->backoff_max_ms < cf->backoff_ms) {
		*option = "backoff_max";
		snprintf(buf, len, "must not be shorter than backoff (%lld ms)",
			 (long long)cf->backoff_ms);
		return buf;
	}
	if (cf->rate && cf->burst < 1) {
		*option = "burst";
		return "must be at least 1";
	}
	return NULL;
}

static void wipe_headers(struct curl_slist *l)
{
	for (; l; l = l->next)
		sodium_memzero(l->data, strlen(l->data));
}

static int load_token(struct ctx *c)
{
	static const char prefix[] = "Authorization: Bearer ";
	uint8_t *tok;
	char *hdr;
	ssize_t n, i;
	int ret = 0;

	tok = sodium_malloc(TOKEN_MAX);
	hdr = sodium_malloc(sizeof(prefix) + TOKEN_MAX);
	if (!tok || !hdr) {
		ret = -ENOMEM;
		goto out;
	}
	n = c->host->secret_read(c->self, c->conf->token_file, tok, TOKEN_MAX);
	if (n < 0) {
		ret = (int)n;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (tok[i] < 0x21 || tok[i] > 0x7e) {
			c->host->log(c->self, WGGWD_LOG_ERROR,
				     "%s: the token must be one line of printable characters without spaces",
				     c->conf->token_file);
			ret = -EINVAL;
			goto out;
		}
	}
	if (!n) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "%s: empty token", c->conf->token_file);
		ret = -EINVAL;
		goto out;
	}
	memcpy(hdr, prefix, sizeof(prefix) - 1);
	memcpy(hdr + sizeof(prefix) - 1, tok, n);
	hdr[sizeof(prefix) - 1 + n] = '\0';
	c->headers = curl_slist_append(c->headers, hdr); /* a copy, wiped at destroy */
	if (!c->headers)
		ret = -ENOMEM;
out:
	if (tok)
		sodium_free(tok); /* wipes */
	if (hdr)
		sodium_free(hdr);
	return ret;
}

static int rh_start(void *ctx)
{
	struct ctx *c = ctx;
	const struct conf *cf = c->conf;
	struct curl_slist *h;
	size_t i;
	int ret;

	c->prefixes = calloc(cf->allowed_prefixes.n, sizeof(*c->prefixes));
	c->sources = calloc(SOURCE_SLOTS, sizeof(*c->sources));
	c->backoff = calloc(BACKOFF_SLOTS, sizeof(*c->backoff));
	if (!c->prefixes || !c->sources || !c->backoff)
		return -ENOMEM;
	for (i = 0; i < cf->allowed_prefixes.n; i++)
		if (wg_allowed_ip_parse(&c->prefixes[i], ((char **)cf->allowed_prefixes.v)[i]))
			return -EINVAL; /* checked by the option table already */
	c->n_prefixes = cf->allowed_prefixes.n;
	randombytes_buf(c->hash_key, sizeof(c->hash_key));

	h = curl_slist_append(NULL, "Accept: application/json");
	if (!h)
		return -ENOMEM;
	c->headers = h;
	if (cf->token_file) {
		ret = load_token(c);
		if (ret)
			return ret;
		if (!strncmp(cf->url, "http://", 7))
			c->host->log(c->self, WGGWD_LOG_WARN,
				     "the bearer token goes to %s in clear text: use https", cf->url);
	}
	if (!cf->tls_verify)
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "tls_verify is off: anyone on the path can answer for the API");

	c->multi = curl_multi_init();
	if (!c->multi)
		return -ENOMEM;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)cf->max_concurrency);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cf->max_concurrency);
	uv_timer_init(c->loop, &c->timer);
	c->timer.data = c;
	c->timer_init = true;
	c->open_handles = 1;
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "asking %s (at most %lld at once, %lld/s, burst %lld)%s", cf->url,
		     (long long)cf->max_concurrency, (long long)cf->rate, (long long)cf->burst,
		     cf->token_file ? " with a bearer token" : "");
	return 0;
}

static void rh_stop(void *ctx)
{
	struct ctx *c = ctx;
	struct req *r;

	c->stopping = true;
	/* what waits fails; what runs is cancelled and fails */
	while ((r = c->queue.head)) {
		struct wggwd_item *it = r->it;

		list_del(&c->queue, r);
		(*c->queued)--;
		req_free(r);
		it->drop_reason = "shutdown";
		c->host->complete(c->self, it, WGGWD_ERROR);
	}
	while ((r = c->running.head)) {
		struct wggwd_item *it = r->it;

		list_del(&c->running, r);
		(*c->in_flight)--;
		curl_multi_remove_handle(c->multi, r->easy);
		req_free(r);
		it->drop_reason = "shutdown";
		c->host->complete(c->self, it, WGGWD_ERROR);
	}
	if (c->multi) {
		curl_multi_cleanup(c->multi); /* may close sockets through on_socket */
		c->multi = NULL;
	}
	while (c->socks)
		sock_close(c, c->socks);
	if (c->timer_init) {
		uv_timer_stop(&c->timer);
		uv_close((uv_handle_t *)&c->timer, on_handle_closed);
		c->timer_init = false;
	} else if (!c->open_handles) {
		c->stopped = true;
		c->host->stopped(c->self);
	}
}

static void rh_destroy(void *ctx)
{
	struct ctx *c = ctx;

	if (c->multi) /* started, never stopped (a failed start elsewhere) */
		curl_multi_cleanup(c->multi);
	wipe_headers(c->headers);
	curl_slist_free_all(c->headers);
	free(c->prefixes);
	free(c->sources);
	free(c->backoff);
	sodium_memzero(c->hash_key, sizeof(c->hash_key));
	curl_global_cleanup();
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = rh_create,
	.validate = rh_validate,
	.start = rh_start,
	.process = rh_process,
	.stop = rh_stop,
	.destroy = rh_destroy,
};

WGGWD_PLUGIN_DEFINE(
	.name = "resolver-http",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "looks keys up on the control plane's HTTP API (libcurl on the loop), with budgets, backoff, a circuit breaker and an allowed-prefix policy",
	.kind = WGGWD_RESOLVER,
	.in = WGGWD_MSG_PEER_KEY,
	.out = WGGWD_MSG_PEER,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
