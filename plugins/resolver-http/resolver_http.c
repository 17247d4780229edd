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
 * or, with `batch`, the keys that wait within batch_window (at most
 * batch_max) in one request (README: Control-plane answer, Batch):
 *
 *   POST <batch_url> ["<base64 key>", ...]
 *   200 {"<base64 key>": <answer as above> | null | {"error": "not_found"}, ...}
 *
 * each key judged on its own member (a key without one fails:
 * bad_answer); the budgets then count requests, not keys.
 *
 * libcurl's multi interface runs on the daemon's libuv loop (transfer.c:
 * one uv_poll_t per socket curl asks us to watch, one uv_timer_t for
 * curl's timeouts): no thread per request. What protects the API on a bad day, in the order
 * an item meets it: a per-key exponential backoff after a failure, a
 * circuit breaker that opens after breaker_failures failures in a row and
 * half-opens after breaker_cooldown to let one probe through, a bounded
 * FIFO beyond max_concurrency, and token buckets (global and per source
 * network) so that a flood of fresh keys cannot become a flood of
 * requests, while keys a store knew before (WGGWD_ITEM_RETURNING) wait
 * in a FIFO and a bucket of their own, served first. What protects the
 * gateway: every allowed IP of an answer must
 * lie inside allowed_prefixes (unless [any]), there are at most max_allowed_ips of them,
 * and the answer must be about the key asked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "peerjson.h"
#include "resolver_http.h"

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

static const char *check_batch_url(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (s && strncmp(s, "http://", 7) && strncmp(s, "https://", 8)) {
		snprintf(buf, len, "expected an http:// or https:// URL, got \"%.80s\"", s);
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
	  .check = wg_check_prefix,
	  .help = "required: every allowed IP of an answer must lie inside one of these (10.90.0.0/16), else it is refused (policy), so a buggy control plane cannot route the gateway's traffic to one client; [any]: no check (say so explicitly)" },
	{ .name = "rate", .type = WGGWD_OPT_INT, .def = "50", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, rate),
	  .help = "requests per second sent to the API for fresh keys, on average (token bucket; 0: no limit); more are dropped (budget). One per key, or per batch with batch" },
	{ .name = "burst", .type = WGGWD_OPT_INT, .def = "100", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, burst),
	  .help = "requests that may be sent at once above rate" },
	{ .name = "source_rate", .type = WGGWD_OPT_INT, .def = "5", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, source_rate),
	  .help = "lookups (keys) per second per source network (source_prefix_v4/v6; port ignored; 0: no limit)" },
	{ .name = "source_burst", .type = WGGWD_OPT_INT, .def = "20", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, source_burst),
	  .help = "lookups one source network may cause at once above source_rate" },
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
	{ .name = "max_allowed_ips", .type = WGGWD_OPT_INT, .def = WG_MAX_ALLOWED_IPS_DEF,
	  .min = 1, .max = 16777216, .offset = offsetof(struct conf, max_allowed_ips),
	  .help = WG_MAX_ALLOWED_IPS_HELP "; mind max_body too (about 20 bytes an address)" },
	{ .name = "batch", .type = WGGWD_OPT_BOOL, .def = "false",
	  .offset = offsetof(struct conf, batch),
	  .help = "ask about the keys that arrive within batch_window in one request: POST of a JSON list of keys to batch_url, answered by an object of answers (README: Control-plane answer, Batch); rate and burst then count requests. false: one GET per key" },
	{ .name = "batch_url", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct conf, batch_url), .check = check_batch_url,
	  .help = "where batches are POSTed; default: url without its last /{public_key} (https://cp.example/v1/peers)" },
	{ .name = "batch_window", .type = WGGWD_OPT_DURATION, .def = "2ms", .min = 0, .max = 1000,
	  .offset = offsetof(struct conf, batch_window_ms),
	  .help = "how long the first key of a batch waits for others (0: those of the same loop turn)" },
	{ .name = "batch_max", .type = WGGWD_OPT_INT, .def = "64", .min = 1, .max = 1024,
	  .offset = offsetof(struct conf, batch_max),
	  .help = "most keys in one batch; a full batch is sent at once (its answer may be batch_max times max_body)" },
	{ .name = "returning_rate", .type = WGGWD_OPT_INT, .def = "50", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, returning_rate),
	  .help = "requests per second for keys a store knew before (returning clients), a budget apart from rate that fresh keys cannot spend; they skip the per-source buckets and the queue (0: no limit)" },
	{ .name = "returning_burst", .type = WGGWD_OPT_INT, .def = "100", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, returning_burst),
	  .help = "requests for returning keys that may be sent at once above returning_rate" },
	{ .name = "source_prefix_v4", .type = WGGWD_OPT_INT, .def = "24", .min = 0, .max = 32,
	  .offset = offsetof(struct conf, source_prefix_v4),
	  .help = "IPv4 sources share a per-source bucket per network of this prefix length (32: per address)" },
	{ .name = "source_prefix_v6", .type = WGGWD_OPT_INT, .def = "64", .min = 0, .max = 128,
	  .offset = offsetof(struct conf, source_prefix_v6),
	  .help = "IPv6 sources share a per-source bucket per network of this prefix length (128: per address)" },
	WGGWD_OPT_END
};

static const char *const err_names[E_MAX] = {
	"http_status", "timeout", "bad_body", "key_mismatch", "policy", "connect", "tls",
	"remote_error",
};
static const uint32_t err_reasons[E_MAX] = {
	WGGWD_R_HTTP_STATUS, WGGWD_R_TIMEOUT, WGGWD_R_BAD_ANSWER, WGGWD_R_KEY_MISMATCH,
	WGGWD_R_POLICY, WGGWD_R_CONNECT, WGGWD_R_TLS, WGGWD_R_OTHER,
};

static const char *const counter_names[C_MAX] = {
	"requests", "ok", "not_found", "budget_refused", "backoff_refused",
	"breaker_open_refused", "breaker_opens", "breaker_closes", "overloaded",
	"queue_expired", "returning", "returning_budget_refused", "returning_overloaded",
	"batches", "batch_keys", "batch_missing",
};

/* For what the API (or a client's key) can cause: rate-limited by the host. */
#define log_limited(c, ...) (c)->host->log_limited((c)->self, WGGWD_LOG_WARN, __VA_ARGS__)

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

/* The bucket of a's network: its first source_prefix_v4/v6 bits. */
static struct bucket *source_bucket(struct ctx *c, const union wggwd_sockaddr *a)
{
	uint8_t buf[17] = { 0 };
	int64_t bits = 0, i;

	if (a->sa.sa_family == AF_INET) {
		buf[0] = 4;
		memcpy(buf + 1, &a->in4.sin_addr, 4);
		bits = c->conf->source_prefix_v4;
	} else if (a->sa.sa_family == AF_INET6) {
		buf[0] = 6;
		memcpy(buf + 1, &a->in6.sin6_addr, 16);
		bits = c->conf->source_prefix_v6;
	}
	for (i = bits; i < 128; i++)
		buf[1 + i / 8] &= ~(0x80 >> (i % 8));
	/* keyed: a sender cannot pick addresses that share a victim's bucket */
	return &c->sources[c->host->hash(buf, sizeof(buf)) % SOURCE_SLOTS];
}

/* ------------------------------------------------------------ backoff */

static struct backoff *backoff_find(struct ctx *c, const uint8_t *key, bool add, uint64_t now)
{
	struct backoff *b, *victim = NULL;
	uint64_t v = c->host->hash(key, WGGWD_KEY_LEN);
	unsigned i;

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
	uint64_t now = mono_ms(c), d;
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
		c->open_until_ms = mono_ms(c) + c->conf->breaker_cooldown_ms;
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "%lld failed requests in a row: circuit breaker open, no lookups for %lld ms",
			     (long long)c->fails_in_row, (long long)c->conf->breaker_cooldown_ms);
	}
}

/* ---------------------------------------------------------- answering */

/* One key failed: counted, backed off; the API's health is judged per
 * request (breaker_result). */
static int key_fail(struct ctx *c, struct wggwd_item *it, enum err e)
{
	(*c->err[e])++;
	it->reason = err_reasons[e];
	if (e == E_REMOTE)
		it->detail = "the control plane answered an error";
	backoff_fail(c, it->public_key);
	return WGGWD_ERROR;
}

static int key_not_found(struct ctx *c, struct wggwd_item *it)
{
	(*c->c[C_NOT_FOUND])++;
	backoff_clear(c, it->public_key);
	it->reason = WGGWD_R_UNKNOWN_KEY;
	it->flags |= WGGWD_ITEM_NOT_FOUND;
	return WGGWD_DROP;
}

/* One key's answer (a JSON object): its verdict; *e the error, E_MAX if
 * none (or one that is ours: no memory). */
static int judge_answer(struct ctx *c, struct wggwd_item *it, const json_t *root, enum err *e)
{
	struct wggwd_peer *p = it->peer;
	char b64[WG_KEY_B64_LEN], ipbuf[64];
	const char *what;
	uint32_t why;
	long out;

	*e = E_MAX;
	wg_key_to_b64(b64, it->public_key);
	why = wg_peer_from_json(c->host, c->self, it, root, c->conf->max_allowed_ips, &what);
	if (why == WGGWD_R_NO_MEMORY) {
		it->reason = why;
		return WGGWD_ERROR;
	}
	if (why != WGGWD_R_NONE) {
		log_limited(c, "peer %s: bad answer from the API: %s", b64, what);
		*e = why == WGGWD_R_KEY_MISMATCH ? E_KEY_MISMATCH : E_BAD_BODY;
		return key_fail(c, it, *e);
	}
	/* the policy: nothing outside allowed_prefixes */
	out = wg_policy_peer_outside(&c->pol, p);
	if (out >= 0) {
		wg_allowed_ip_str(&p->allowed[out], ipbuf, sizeof(ipbuf));
		log_limited(c, "peer %s: the API answered allowed IP %s, outside allowed_prefixes: refused",
			    b64, ipbuf);
		wg_peer_clear(p);
		*e = E_POLICY;
		return key_fail(c, it, *e);
	}
	(*c->c[C_OK])++;
	backoff_clear(c, it->public_key);
	return WGGWD_CONTINUE;
}

/* Every key of r fails with e. */
static void fail_all(struct ctx *c, struct req *r, enum err e)
{
	size_t i;

	for (i = 0; i < r->ns; i++)
		r->s[i].verdict = key_fail(c, r->s[i].it, e);
	breaker_result(c, r, true);
}

static json_t *load_body(struct ctx *c, struct req *r, const char *b64)
{
	json_error_t jerr;
	json_t *root;

	root = json_loadb((const char *)r->body, r->len, JSON_REJECT_DUPLICATES, &jerr);
	if (root && json_is_object(root))
		return root;
	log_limited(c, "%s%s: bad answer from the API: not a JSON object%s%s",
		    r->ns > 1 ? "batch with " : "peer ", b64, root ? "" : ": ",
		    root ? "" : jerr.text);
	json_decref(root);
	return NULL;
}

/* One key, one GET. */
static void judge_one(struct ctx *c, struct req *r, long status, const char *b64)
{
	struct wggwd_item *it = r->s[0].it;
	enum err e;
	json_t *root;

	if (status == 404) {
		r->s[0].verdict = key_not_found(c, it);
		breaker_result(c, r, false);
		return;
	}
	if (status != 200) {
		log_limited(c, "peer %s: the API answered HTTP %ld", b64, status);
		fail_all(c, r, E_HTTP_STATUS);
		return;
	}
	root = load_body(c, r, b64);
	if (!root) {
		fail_all(c, r, E_BAD_BODY);
		return;
	}
	r->s[0].verdict = judge_answer(c, it, root, &e);
	breaker_result(c, r, e != E_MAX && e != E_POLICY);
	wg_peer_json_wipe(root); /* jansson's copy of the secret */
	json_decref(root);
}

/* A batch: each key on its own member of the answer. */
static void judge_batch(struct ctx *c, struct req *r, long status, const char *b64)
{
	const json_t *v;
	const char *what;
	json_t *root;
	enum err e;
	size_t i;

	if (status != 200) {
		log_limited(c, "batch of %zu keys (%s, ...): the API answered HTTP %ld%s", r->ns, b64,
			    status, status == 404 || status == 405 ?
			    " (no batch endpoint at batch_url? batch: false asks one key at a time)" : "");
		fail_all(c, r, E_HTTP_STATUS);
		return;
	}
	root = load_body(c, r, b64);
	if (!root) {
		fail_all(c, r, E_BAD_BODY);
		return;
	}
	for (i = 0; i < r->ns; i++) {
		struct wggwd_item *it = r->s[i].it;
		char kb64[WG_KEY_B64_LEN];
		int *verdict = &r->s[i].verdict;

		switch (wg_batch_answer(root, it->public_key, &v, &what)) {
		case WG_ANSWER_PEER:
			*verdict = judge_answer(c, it, v, &e);
			break;
		case WG_ANSWER_NOT_FOUND:
			*verdict = key_not_found(c, it);
			break;
		case WG_ANSWER_MISSING:
			(*c->c[C_BATCH_MISSING])++;
			/* fall through */
		case WG_ANSWER_BAD:
			wg_key_to_b64(kb64, it->public_key);
			log_limited(c, "peer %s: bad answer from the API: %s", kb64, what);
			*verdict = key_fail(c, it, E_BAD_BODY);
			break;
		case WG_ANSWER_ERROR:
			wg_key_to_b64(kb64, it->public_key);
			log_limited(c, "peer %s: the API answered an error: %.100s", kb64, what);
			*verdict = key_fail(c, it, E_REMOTE);
			break;
		}
	}
	breaker_result(c, r, false); /* it answered: a bad key is that key's */
	wg_batch_json_wipe(root);
	json_decref(root);
}

void rh_judge(struct ctx *c, struct req *r, CURLcode res)
{
	char b64[WG_KEY_B64_LEN];
	long status = 0;

	wg_key_to_b64(b64, r->s[0].it->public_key);
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
		if (r->ns > 1)
			log_limited(c, "batch of %zu keys (%s, ...): lookup failed: %s (%s)", r->ns,
				    b64, err_names[e],
				    r->errbuf[0] ? r->errbuf : curl_easy_strerror(res));
		else
			log_limited(c, "peer %s: lookup failed: %s (%s)", b64, err_names[e],
				    r->errbuf[0] ? r->errbuf : curl_easy_strerror(res));
		fail_all(c, r, e);
		return;
	}
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (c->conf->batch)
		judge_batch(c, r, status, b64);
	else
		judge_one(c, r, status, b64);
}

/* ------------------------------------------------------------- process */

/* Send what gathered: to the FIFO of its class. */
static void batch_send(struct ctx *c, int q)
{
	struct req *r = c->open[q];

	if (!r)
		return;
	c->open[q] = NULL;
	reqlist_add(&c->queue[q], r);
}

static void on_window(void *arg)
{
	struct ctx *c = arg;

	c->window_armed = false;
	batch_send(c, Q_RETURNING);
	batch_send(c, Q_FRESH);
	transfer_pump(c);
}

/*
 * Where the key goes: the open batch of its class if it has room (its
 * request is paid for), else a new request, which costs a token of the
 * class's bucket: the global one (rate) for fresh keys, returning_rate
 * for keys a store knew. Fresh keys also spend a token of their source
 * network's bucket, each; returning ones do not (the flood shares those).
 */
static int rh_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const struct conf *cf = c->conf;
	uint64_t now = mono_ms(c);
	int q = it->flags & WGGWD_ITEM_RETURNING ? Q_RETURNING : Q_FRESH;
	struct bucket *src = NULL, *reqb;
	int64_t rate, burst;
	struct backoff *b;
	struct req *r;
	bool probe = false;

	if (c->stopping || !c->multi) {
		it->reason = WGGWD_R_SHUTDOWN;
		return WGGWD_ERROR;
	}
	if (q == Q_RETURNING)
		(*c->c[C_RETURNING])++;
	b = backoff_find(c, it->public_key, false, now);
	if (b && now < b->until_ms) {
		(*c->c[C_BACKOFF])++;
		it->reason = WGGWD_R_BACKOFF;
		return WGGWD_DROP;
	}
	if (c->breaker != B_CLOSED) {
		if (c->probe_out || (c->breaker == B_OPEN && now < c->open_until_ms)) {
			(*c->c[C_BREAKER_REFUSED])++;
			it->reason = WGGWD_R_BREAKER_OPEN;
			return WGGWD_DROP;
		}
		probe = true; /* half-open: this one may test the API, alone */
	}
	if (c->running.n >= (size_t)cf->max_concurrency && c->waiting[q] >= (size_t)cf->max_queue) {
		(*c->c[q == Q_RETURNING ? C_RETURNING_OVERLOADED : C_OVERLOADED])++;
		it->reason = WGGWD_R_OVERLOADED;
		return WGGWD_DROP;
	}
	r = probe ? NULL : c->open[q];
	if (r && r->ns >= r->scap)
		r = NULL;
	reqb = q == Q_RETURNING ? &c->returning : &c->global;
	rate = q == Q_RETURNING ? cf->returning_rate : cf->rate;
	burst = q == Q_RETURNING ? cf->returning_burst : cf->burst;
	if (q == Q_FRESH)
		src = source_bucket(c, &it->src);
	if ((!r && !bucket_has(reqb, rate, burst, now)) ||
	    (src && !bucket_has(src, cf->source_rate, cf->source_burst, now))) {
		(*c->c[q == Q_RETURNING ? C_RETURNING_BUDGET : C_BUDGET])++;
		it->reason = WGGWD_R_BUDGET;
		return WGGWD_DROP;
	}
	if (!r) {
		r = req_new(c, cf->batch && !probe ? (size_t)cf->batch_max : 1, q);
		if (!r) {
			it->reason = WGGWD_R_NO_MEMORY;
			return WGGWD_ERROR;
		}
		bucket_take(reqb, rate);
		r->queued_ms = now;
		if (probe) {
			r->probe = true;
			c->probe_out = true;
			breaker_set(c, B_HALF_OPEN);
			c->host->log(c->self, WGGWD_LOG_INFO, "circuit breaker half-open: probing the API");
		} else if (cf->batch) {
			c->open[q] = r;
		}
	}
	if (src)
		bucket_take(src, cf->source_rate);
	r->s[r->ns++].it = it;
	c->waiting[q]++;
	(*c->queued)++;
	if (c->open[q] == r && r->ns < r->scap) {
		if (!c->window_armed) {
			c->window_armed = true;
			c->host->timer_start(c->window, cf->batch_window_ms, 0);
		}
		return WGGWD_PENDING;
	}
	if (c->open[q] == r)
		c->open[q] = NULL; /* full: it goes now */
	reqlist_add(&c->queue[q], r);
	transfer_pump(c); /* may complete it at once (a failed start): the core allows that */
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

/* batch_url's default: url without its last "/{public_key}", which must
 * end it (NULL: none; no memory is no default either, and is caught at
 * start). */
static char *default_batch_url(const char *url)
{
	static const char tail[] = "/{public_key}";
	size_t n = url ? strlen(url) : 0, t = sizeof(tail) - 1;

	if (n <= t || strcmp(url + n - t, tail))
		return NULL;
	return strndup(url, n - t);
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
	if (cf->batch && !cf->batch_url) {
		char *u = default_batch_url(cf->url);

		free(u);
		if (!u) {
			*option = "batch_url";
			return "needed with batch: url does not end in /{public_key}, so there is no default";
		}
	}
	*option = "allowed_prefixes";
	return wg_policy_check(&cf->allowed_prefixes, true, buf, len);
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
	int ret;

	/* checked by the option table and validate: only ENOMEM can fail */
	ret = wg_policy_load(&c->pol, &cf->allowed_prefixes);
	if (ret)
		return ret;
	c->sources = calloc(SOURCE_SLOTS, sizeof(*c->sources));
	c->backoff = calloc(BACKOFF_SLOTS, sizeof(*c->backoff));
	if (!c->sources || !c->backoff)
		return -ENOMEM;

	h = curl_slist_append(NULL, "Accept: application/json");
	if (!h)
		return -ENOMEM;
	c->headers = h;
	if (cf->batch) {
		h = curl_slist_append(c->headers, "Content-Type: application/json");
		if (!h)
			return -ENOMEM;
		c->batch_url = cf->batch_url ? strdup(cf->batch_url) : default_batch_url(cf->url);
		if (!c->batch_url)
			return -ENOMEM;
	}
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
	c->window = c->host->timer_new(c->self, on_window, c);
	if (!c->window) {
		curl_multi_cleanup(c->multi);
		c->multi = NULL;
		return -ENOMEM;
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, transfer_on_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, transfer_on_curl_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)cf->max_concurrency);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cf->max_concurrency);
	uv_timer_init(c->loop, &c->timer);
	c->timer.data = c;
	c->timer_init = true;
	c->open_handles = 1;
	if (cf->batch)
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "asking %s in batches of up to %lld keys gathered for %lld ms (at most %lld requests at once, %lld/s, burst %lld; returning keys %lld/s, burst %lld)%s",
			     c->batch_url, (long long)cf->batch_max, (long long)cf->batch_window_ms,
			     (long long)cf->max_concurrency, (long long)cf->rate, (long long)cf->burst,
			     (long long)cf->returning_rate, (long long)cf->returning_burst,
			     cf->token_file ? " with a bearer token" : "");
	else
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "asking %s (at most %lld at once, %lld/s, burst %lld; returning keys %lld/s, burst %lld)%s",
			     cf->url, (long long)cf->max_concurrency, (long long)cf->rate,
			     (long long)cf->burst, (long long)cf->returning_rate,
			     (long long)cf->returning_burst,
			     cf->token_file ? " with a bearer token" : "");
	return 0;
}

static void rh_stop(void *ctx)
{
	struct ctx *c = ctx;
	struct req *r;

	int q;

	c->stopping = true;
	/* what gathers or waits fails; what runs is cancelled and fails */
	if (c->window) {
		c->host->timer_free(c->window);
		c->window = NULL;
	}
	for (q = 0; q < Q_MAX; q++) {
		batch_send(c, q);
		while ((r = c->queue[q].head)) {
			reqlist_del(&c->queue[q], r);
			c->waiting[q] -= r->ns;
			*c->queued -= r->ns;
			req_complete(c, r, WGGWD_ERROR, WGGWD_R_SHUTDOWN);
		}
	}
	while ((r = c->running.head)) {
		reqlist_del(&c->running, r);
		(*c->in_flight)--;
		curl_multi_remove_handle(c->multi, r->easy);
		req_complete(c, r, WGGWD_ERROR, WGGWD_R_SHUTDOWN);
	}
	if (c->multi) {
		curl_multi_cleanup(c->multi); /* may close sockets through transfer_on_socket */
		c->multi = NULL;
	}
	while (c->socks)
		transfer_sock_close(c, c->socks);
	if (c->timer_init) {
		uv_timer_stop(&c->timer);
		uv_close((uv_handle_t *)&c->timer, transfer_on_closed);
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
	wg_policy_free(&c->pol);
	free(c->batch_url);
	free(c->sources);
	free(c->backoff);
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
