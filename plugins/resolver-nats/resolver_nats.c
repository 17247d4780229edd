// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * resolver-nats: asks the control plane who a key is, by NATS request.
 *
 *   request on <subject with {public_key} replaced by the key> with the
 *   body {"public_key": "<base64>"} and a reply subject of our inbox;
 *
 *   {"public_key", "allowed_ips": [...], "preshared_key"?,
 *    "persistent_keepalive"?, "ttl"?}     -> the peer (as resolver-http's 200)
 *   {"error": "not_found"}, or an empty body
 *                                         -> unknown key (resolver-http's 404:
 *                                            DROP unknown_key, NOT_FOUND set)
 *   {"error": "<anything else>"}          -> an error (other: remote error)
 *   no answer within timeout              -> an error (timeout)
 *   nobody subscribed (no responders)     -> an error (connect: no responders)
 *   not connected                         -> an error (connect)
 *
 * and, like resolver-http, an answer about another key is an error
 * (key_mismatch), and so is one with an allowed IP outside
 * allowed_prefixes (policy) or more than max_allowed_ips of them
 * (bad_answer). A test cluster swaps one resolver for the other by
 * changing the plugin line and url/subject. Each failure is also counted
 * under this stage's own name (timeout, bad_body, key_mismatch, policy,
 * connect, no_responders, remote_error).
 *
 * {public_key} in the subject is, by default (key_encoding: base64url),
 * the key in URL-safe base64 without padding (43 characters of A-Z a-z
 * 0-9 - _), which is one subject token whatever the key; base64 (plain,
 * with + / =; also legal in NATS subjects) and hex are the other choices.
 *
 * With `batch`, the keys that wait within batch_window (at most
 * batch_max) go in one request on batch_subject, whose body is the JSON
 * list of their keys (base64), answered by an object with a member per
 * key (README: Control-plane answer, Batch); each key is judged on its
 * own member, and one without a member fails (bad_body).
 *
 * Keys a store knew before (WGGWD_ITEM_RETURNING) are counted apart:
 * max_pending_returning of them may wait whatever fresh keys do, and they
 * gather in batches of their own.
 *
 * Requests are asynchronous: one wildcard subscription on our own inbox
 * (_INBOX.<nuid>.*) collects every answer, each request has its own reply
 * subject (_INBOX.<nuid>.<n>), and one loop timer expires them in order
 * (they all have the same timeout). Nothing blocks the loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "natsconn.h"
#include "peerjson.h"
#include "peerpolicy.h"
#include "wgutil.h"

enum { ENC_BASE64URL, ENC_BASE64, ENC_HEX };
static const char *const enc_choices[] = { "base64url", "base64", "hex", NULL };

struct conf {
	struct nc_conf nc;
	char *subject;
	int key_encoding;
	int64_t timeout_ms;
	int64_t max_pending;
	int64_t max_allowed_ips;
	struct wggwd_list allowed_prefixes;
	bool batch;
	char *batch_subject;
	int64_t batch_window_ms;
	int64_t batch_max;
	int64_t max_pending_returning;
};

static const char *check_subject(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!strstr(s, "{public_key}")) {
		snprintf(buf, len, "the subject must contain {public_key}");
		return buf;
	}
	if (strpbrk(s, " \t\r\n*>") || s[0] == '.' || s[strlen(s) - 1] == '.' || strstr(s, "..")) {
		snprintf(buf, len, "expected a NATS subject without wildcards or blanks");
		return buf;
	}
	return NULL;
}

static const char *check_batch_subject(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (s && (!*s || strpbrk(s, " \t\r\n*>") || s[0] == '.' || s[strlen(s) - 1] == '.' ||
		  strstr(s, ".."))) {
		snprintf(buf, len, "expected a NATS subject without wildcards or blanks");
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	NC_OPTS(struct conf, nc),
	{ .name = "subject", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, subject), .check = check_subject,
	  .help = "the lookup subject; {public_key} is replaced by the key in key_encoding (wggwd.lookup.{public_key})" },
	{ .name = "key_encoding", .type = WGGWD_OPT_ENUM, .def = "base64url", .choices = enc_choices,
	  .offset = offsetof(struct conf, key_encoding),
	  .help = "how {public_key} is written: base64url (URL-safe alphabet, no padding), base64 (standard, with padding) or hex" },
	{ .name = "timeout", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 10, .max = 60000,
	  .offset = offsetof(struct conf, timeout_ms),
	  .help = "how long to wait for the answer; past it the lookup fails (timeout)" },
	{ .name = "max_pending", .type = WGGWD_OPT_INT, .def = "1024", .min = 1, .max = 1000000,
	  .offset = offsetof(struct conf, max_pending),
	  .help = "fresh keys waiting for an answer at once; beyond it lookups are dropped (overloaded)" },
	{ .name = "max_allowed_ips", .type = WGGWD_OPT_INT, .def = WG_MAX_ALLOWED_IPS_DEF,
	  .min = 1, .max = 1000000, .offset = offsetof(struct conf, max_allowed_ips),
	  .help = WG_MAX_ALLOWED_IPS_HELP },
	{ .name = "allowed_prefixes", .type = WGGWD_OPT_LIST, .flags = WGGWD_OPT_REQUIRED,
	  .min = 1, .max = 256, .offset = offsetof(struct conf, allowed_prefixes),
	  .check = wg_check_prefix,
	  .help = "required: every allowed IP of an answer must lie inside one of these (10.90.0.0/16), else it is refused (policy); [any]: no check (say so explicitly)" },
	{ .name = "batch", .type = WGGWD_OPT_BOOL, .def = "false",
	  .offset = offsetof(struct conf, batch),
	  .help = "ask about the keys that arrive within batch_window in one request on batch_subject (a JSON list of keys, answered by an object of answers: README, Control-plane answer, Batch); false: one request per key on subject" },
	{ .name = "batch_subject", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct conf, batch_subject), .check = check_batch_subject,
	  .help = "the subject of batch requests (wggwd.lookup-batch); needed with batch" },
	{ .name = "batch_window", .type = WGGWD_OPT_DURATION, .def = "2ms", .min = 0, .max = 1000,
	  .offset = offsetof(struct conf, batch_window_ms),
	  .help = "how long the first key of a batch waits for others (0: those of the same loop turn)" },
	{ .name = "batch_max", .type = WGGWD_OPT_INT, .def = "64", .min = 1, .max = 1024,
	  .offset = offsetof(struct conf, batch_max),
	  .help = "most keys in one batch; a full batch is sent at once" },
	{ .name = "max_pending_returning", .type = WGGWD_OPT_INT, .def = "256", .min = 1,
	  .max = 1000000, .offset = offsetof(struct conf, max_pending_returning),
	  .help = "keys a store knew before (returning clients) waiting for an answer at once, apart from max_pending, which fresh keys cannot fill" },
	WGGWD_OPT_END
};

enum err {
	E_TIMEOUT, E_BAD_BODY, E_KEY_MISMATCH, E_POLICY, E_CONNECT, E_NO_RESPONDERS,
	E_REMOTE, E_MAX
};
static const char *const err_names[E_MAX] = {
	"timeout", "bad_body", "key_mismatch", "policy", "connect", "no_responders",
	"remote_error",
};
/* what the pipeline sees: a reason, and a few words where it is vague */
static const struct {
	uint32_t reason;
	const char *detail;
} err_reasons[E_MAX] = {
	[E_TIMEOUT] = { WGGWD_R_TIMEOUT },
	[E_BAD_BODY] = { WGGWD_R_BAD_ANSWER },
	[E_KEY_MISMATCH] = { WGGWD_R_KEY_MISMATCH },
	[E_POLICY] = { WGGWD_R_POLICY },
	[E_CONNECT] = { WGGWD_R_CONNECT },
	[E_NO_RESPONDERS] = { WGGWD_R_CONNECT, "no responders" },
	[E_REMOTE] = { WGGWD_R_OTHER, "the control plane answered an error" },
};

enum {
	C_REQUESTS, C_OK, C_NOT_FOUND, C_OVERLOADED, C_LATE, C_RETURNING, C_RETURNING_OVERLOADED,
	C_BATCH_KEYS, C_BATCH_MISSING, C_MAX
};
static const char *const counter_names[C_MAX] = {
	"requests", "ok", "not_found", "overloaded", "late_answers", "returning",
	"returning_overloaded", "batch_keys", "batch_missing",
};

/* Lookup classes: keys a store knew before, and the others. */
enum { Q_RETURNING, Q_FRESH, Q_MAX };

#define REQ_BUCKETS 4096

/* One request: gathering keys (batch), or waiting for its answer. */
struct req {
	struct ctx *c;
	struct wggwd_item **its;        /* n of cap; &one when cap is 1 */
	int *verdicts;
	size_t n, cap;
	struct wggwd_item *one;
	int one_verdict;
	int q;
	uint64_t id;
	uint64_t deadline_ns;
	struct req *hnext;              /* id table */
	struct req *prev, *next;        /* FIFO = deadline order */
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct nc *nc;
	natsSubscription *sub;
	char *inbox;                    /* "_INBOX.<nuid>." */
	size_t inbox_len;
	struct wg_policy pol;           /* allowed_prefixes */
	struct req *table[REQ_BUCKETS];
	struct req *head, *tail;
	size_t n_pending;
	size_t keys[Q_MAX];             /* keys gathering or waiting, per class */
	struct req *open[Q_MAX];        /* batch: gathering keys */
	struct wggwd_timer *window;
	bool window_armed;
	uint64_t next_id;
	uv_timer_t timer;
	bool timer_open, stopping, ready; /* ready: our inbox SUB reached the server */
	uint64_t *c[C_MAX];
	uint64_t *err[E_MAX];
	int64_t *g_pending;
};

#define warn_limited(c, ...) (c)->host->log_limited((c)->self, WGGWD_LOG_WARN, __VA_ARGS__)

/* ------------------------------------------------------------- requests */

static void req_link(struct ctx *c, struct req *r)
{
	unsigned b = r->id % REQ_BUCKETS;

	r->hnext = c->table[b];
	c->table[b] = r;
	r->prev = c->tail;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->n_pending++;
	*c->g_pending = c->n_pending;
}

static void req_unlink(struct ctx *c, struct req *r)
{
	struct req **pp;

	for (pp = &c->table[r->id % REQ_BUCKETS]; *pp; pp = &(*pp)->hnext) {
		if (*pp == r) {
			*pp = r->hnext;
			break;
		}
	}
	if (r->prev)
		r->prev->next = r->next;
	else
		c->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		c->tail = r->prev;
	c->n_pending--;
	*c->g_pending = c->n_pending;
}

static struct req *req_find(struct ctx *c, uint64_t id)
{
	struct req *r;

	for (r = c->table[id % REQ_BUCKETS]; r; r = r->hnext)
		if (r->id == id)
			return r;
	return NULL;
}

static void on_timer(uv_timer_t *t);

/* the head of the FIFO expires first: all requests share one timeout */
static void arm_timer(struct ctx *c)
{
	uint64_t now;

	if (!c->timer_open || c->stopping)
		return;
	if (!c->head) {
		uv_timer_stop(&c->timer);
		return;
	}
	now = c->host->now_ns();
	/* rounded up: a timer never fires before its request is due */
	uv_timer_start(&c->timer, on_timer, c->head->deadline_ns > now ?
		       (c->head->deadline_ns - now + 999999) / 1000000 : 0, 0);
}

static struct req *req_new(struct ctx *c, size_t cap, int q)
{
	struct req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->c = c;
	r->q = q;
	r->cap = cap;
	r->its = &r->one;
	r->verdicts = &r->one_verdict;
	if (cap > 1) {
		r->its = calloc(cap, sizeof(*r->its));
		r->verdicts = calloc(cap, sizeof(*r->verdicts));
		if (!r->its || !r->verdicts) {
			free(r->its);
			free(r->verdicts);
			free(r);
			return NULL;
		}
	}
	return r;
}

static void req_free(struct req *r)
{
	if (r->cap > 1) {
		free(r->its);
		free(r->verdicts);
	}
	free(r);
}

/* Complete every key of r (not linked) with its verdict, or with v (if
 * v >= 0), then free it. */
static void req_complete(struct ctx *c, struct req *r, int v)
{
	size_t i;

	c->keys[r->q] -= r->n;
	for (i = 0; i < r->n; i++)
		c->host->complete(c->self, r->its[i], v >= 0 ? v : r->verdicts[i]);
	req_free(r);
}

/* Finish a pending r: its keys go on in the pipeline. */
static void req_finish(struct ctx *c, struct req *r, int v)
{
	req_unlink(c, r);
	req_complete(c, r, v);
}

static int fail(struct ctx *c, struct wggwd_item *it, enum err e)
{
	(*c->err[e])++;
	it->reason = err_reasons[e].reason;
	it->detail = err_reasons[e].detail;
	return WGGWD_ERROR;
}

/* -------------------------------------------------------------- answers */

static int parse_answer(struct ctx *c, struct wggwd_item *it, json_t *root)
{
	struct wggwd_peer *p = it->peer;
	char b64[WG_KEY_B64_LEN], ipbuf[64];
	const char *what;
	uint32_t r;
	long out;

	wg_key_to_b64(b64, it->public_key);
	r = wg_peer_from_json(c->host, c->self, it, root, c->conf->max_allowed_ips, &what);
	if (r == WGGWD_R_NO_MEMORY) {
		it->reason = r;
		return WGGWD_ERROR;
	}
	if (r != WGGWD_R_NONE) {
		warn_limited(c, "peer %s: bad answer: %s", b64, what);
		return fail(c, it, r == WGGWD_R_KEY_MISMATCH ? E_KEY_MISMATCH : E_BAD_BODY);
	}
	out = wg_policy_peer_outside(&c->pol, p);
	if (out >= 0) {
		wg_allowed_ip_str(&p->allowed[out], ipbuf, sizeof(ipbuf));
		warn_limited(c, "peer %s: the control plane answered allowed IP %s, outside allowed_prefixes: refused",
			     b64, ipbuf);
		wg_peer_clear(p);
		return fail(c, it, E_POLICY);
	}
	(*c->c[C_OK])++;
	return WGGWD_CONTINUE;
}

static int not_found(struct ctx *c, struct wggwd_item *it)
{
	(*c->c[C_NOT_FOUND])++;
	it->reason = WGGWD_R_UNKNOWN_KEY;
	it->flags |= WGGWD_ITEM_NOT_FOUND;
	return WGGWD_DROP;
}

static int judge(struct ctx *c, struct wggwd_item *it, natsMsg *m)
{
	const char *data = natsMsg_GetData(m);
	int len = natsMsg_GetDataLength(m);
	char b64[WG_KEY_B64_LEN];
	json_error_t jerr;
	json_t *root, *v;
	int ret;

	wg_key_to_b64(b64, it->public_key);
	if (natsMsg_IsNoResponders(m)) {
		warn_limited(c, "peer %s: nobody answers lookups on this subject (no responders)", b64);
		return fail(c, it, E_NO_RESPONDERS);
	}
	if (len <= 0)
		return not_found(c, it);
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		warn_limited(c, "peer %s: bad answer: not a JSON object%s%s", b64,
			     root ? "" : ": ", root ? "" : jerr.text);
		json_decref(root);
		return fail(c, it, E_BAD_BODY);
	}
	v = json_object_get(root, "error");
	if (v && !json_is_null(v)) {
		if (json_is_string(v) && !strcmp(json_string_value(v), "not_found")) {
			ret = not_found(c, it);
		} else {
			warn_limited(c, "peer %s: the control plane answered an error: %.100s", b64,
				     json_is_string(v) ? json_string_value(v) : "(not a string)");
			ret = fail(c, it, E_REMOTE);
		}
	} else {
		ret = parse_answer(c, it, root);
	}
	wg_peer_json_wipe(root); /* jansson's copy of the secret */
	json_decref(root);
	return ret;
}

/* Every key of r fails with e. */
static void fail_all(struct ctx *c, struct req *r, enum err e)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		r->verdicts[i] = fail(c, r->its[i], e);
}

/* A batch's answer: each key on its own member. */
static void judge_batch(struct ctx *c, struct req *r, natsMsg *m)
{
	const char *data = natsMsg_GetData(m), *what;
	int len = natsMsg_GetDataLength(m);
	char b64[WG_KEY_B64_LEN];
	const json_t *v;
	json_error_t jerr;
	json_t *root;
	size_t i;

	if (natsMsg_IsNoResponders(m)) {
		warn_limited(c, "nobody answers batch lookups on %s (no responders)",
			     c->conf->batch_subject);
		fail_all(c, r, E_NO_RESPONDERS);
		return;
	}
	root = len > 0 ? json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!root || !json_is_object(root)) {
		warn_limited(c, "batch of %zu keys: bad answer: not a JSON object%s%s", r->n,
			     root || len <= 0 ? "" : ": ", root || len <= 0 ? "" : jerr.text);
		json_decref(root);
		fail_all(c, r, E_BAD_BODY);
		return;
	}
	for (i = 0; i < r->n; i++) {
		struct wggwd_item *it = r->its[i];

		wg_key_to_b64(b64, it->public_key);
		switch (wg_batch_answer(root, it->public_key, &v, &what)) {
		case WG_ANSWER_PEER:
			r->verdicts[i] = parse_answer(c, it, (json_t *)v);
			break;
		case WG_ANSWER_NOT_FOUND:
			r->verdicts[i] = not_found(c, it);
			break;
		case WG_ANSWER_MISSING:
			(*c->c[C_BATCH_MISSING])++;
			/* fall through */
		case WG_ANSWER_BAD:
			warn_limited(c, "peer %s: bad answer: %s", b64, what);
			r->verdicts[i] = fail(c, it, E_BAD_BODY);
			break;
		case WG_ANSWER_ERROR:
			warn_limited(c, "peer %s: the control plane answered an error: %.100s", b64,
				     what);
			r->verdicts[i] = fail(c, it, E_REMOTE);
			break;
		}
	}
	wg_batch_json_wipe(root);
	json_decref(root);
}

static void on_msg(void *owner, natsMsg *m)
{
	struct ctx *c = owner;
	const char *subj = natsMsg_GetSubject(m);
	struct req *r = NULL;
	char *end;
	uint64_t id;

	if (!strncmp(subj, c->inbox, c->inbox_len)) {
		id = strtoull(subj + c->inbox_len, &end, 10);
		if (!*end)
			r = req_find(c, id);
	}
	if (!r) {
		(*c->c[C_LATE])++; /* timed out already */
	} else {
		if (c->conf->batch)
			judge_batch(c, r, m);
		else
			r->verdicts[0] = judge(c, r->its[0], m);
		req_finish(c, r, -1);
		arm_timer(c);
	}
	nc_msg_free(m);
}

static void on_timer(uv_timer_t *t)
{
	struct ctx *c = t->data;
	uint64_t now = c->host->now_ns();
	char b64[WG_KEY_B64_LEN];

	while (c->head && c->head->deadline_ns <= now) {
		struct req *r = c->head;

		wg_key_to_b64(b64, r->its[0]->public_key);
		warn_limited(c, "peer %s%s: no answer within %lld ms (timeout)", b64,
			     r->n > 1 ? " and others of its batch" : "",
			     (long long)c->conf->timeout_ms);
		fail_all(c, r, E_TIMEOUT);
		req_finish(c, r, -1);
	}
	arm_timer(c);
}

/* The subject of a one-key lookup, in subj; false if too long. */
static bool key_subject(struct ctx *c, const uint8_t *key, char *subj, size_t len)
{
	char enc[WG_KEY_HEX_LEN];
	const char *tmpl = c->conf->subject, *at;

	switch (c->conf->key_encoding) {
	case ENC_HEX:
		wg_key_to_hex(enc, key);
		break;
	case ENC_BASE64:
		wg_key_to_b64(enc, key);
		break;
	default:
		sodium_bin2base64(enc, sizeof(enc), key, WGGWD_KEY_LEN,
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		break;
	}
	at = strstr(tmpl, "{public_key}");
	return snprintf(subj, len, "%.*s%s%s", (int)(at - tmpl), tmpl, enc,
			at + strlen("{public_key}")) < (int)len;
}

/* Send r (gathered, not linked): one key on its subject, or a batch. On
 * failure its keys are completed at once. */
static void req_send(struct ctx *c, struct req *r)
{
	char b64[WG_KEY_B64_LEN], reply[96], subj[512];
	char *body;
	size_t i, o = 0;
	natsStatus s;

	body = malloc(r->n * (WG_KEY_B64_LEN + 3) + 32);
	if (!body) {
		for (i = 0; i < r->n; i++)
			r->its[i]->reason = WGGWD_R_NO_MEMORY;
		req_complete(c, r, WGGWD_ERROR);
		return;
	}
	if (c->conf->batch) {
		snprintf(subj, sizeof(subj), "%s", c->conf->batch_subject);
		body[o++] = '[';
		for (i = 0; i < r->n; i++) {
			wg_key_to_b64(b64, r->its[i]->public_key);
			o += sprintf(body + o, "%s\"%s\"", i ? "," : "", b64);
		}
		body[o++] = ']';
		body[o] = '\0';
	} else {
		if (!key_subject(c, r->its[0]->public_key, subj, sizeof(subj))) {
			free(body);
			r->its[0]->reason = WGGWD_R_OTHER;
			r->its[0]->detail = "the lookup subject is too long";
			req_complete(c, r, WGGWD_ERROR);
			return;
		}
		wg_key_to_b64(b64, r->its[0]->public_key);
		sprintf(body, "{\"public_key\":\"%s\"}", b64);
	}
	r->id = ++c->next_id;
	r->deadline_ns = c->host->now_ns() + (uint64_t)c->conf->timeout_ms * 1000000;
	snprintf(reply, sizeof(reply), "%s%llu", c->inbox, (unsigned long long)r->id);
	s = natsConnection_PublishRequestString(nc_conn(c->nc), subj, reply, body);
	free(body);
	if (s != NATS_OK) {
		warn_limited(c, "lookup request on %s: %s", subj, nc_err(s));
		fail_all(c, r, E_CONNECT);
		req_complete(c, r, -1);
		return;
	}
	(*c->c[C_REQUESTS])++;
	if (c->conf->batch)
		*c->c[C_BATCH_KEYS] += r->n;
	req_link(c, r);
	if (c->n_pending == 1)
		arm_timer(c);
}

static void batch_send(struct ctx *c, int q)
{
	struct req *r = c->open[q];

	if (!r)
		return;
	c->open[q] = NULL;
	if (c->stopping || !nc_is_connected(c->nc)) {
		fail_all(c, r, E_CONNECT);
		req_complete(c, r, -1);
		return;
	}
	req_send(c, r);
}

static void on_window(void *arg)
{
	struct ctx *c = arg;

	c->window_armed = false;
	batch_send(c, Q_RETURNING);
	batch_send(c, Q_FRESH);
}

static int rn_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	const struct conf *cf = c->conf;
	int q = it->flags & WGGWD_ITEM_RETURNING ? Q_RETURNING : Q_FRESH;
	size_t limit = q == Q_RETURNING ? (size_t)cf->max_pending_returning :
					  (size_t)cf->max_pending;
	struct req *r;

	if (c->stopping) {
		it->reason = WGGWD_R_SHUTDOWN;
		return WGGWD_ERROR;
	}
	if (q == Q_RETURNING)
		(*c->c[C_RETURNING])++;
	if (!nc_is_connected(c->nc) || !c->ready)
		return fail(c, it, E_CONNECT);
	if (c->keys[q] >= limit) {
		(*c->c[q == Q_RETURNING ? C_RETURNING_OVERLOADED : C_OVERLOADED])++;
		it->reason = WGGWD_R_OVERLOADED;
		return WGGWD_DROP;
	}
	r = cf->batch ? c->open[q] : NULL;
	if (!r) {
		r = req_new(c, cf->batch ? (size_t)cf->batch_max : 1, q);
		if (!r) {
			it->reason = WGGWD_R_NO_MEMORY;
			return WGGWD_ERROR;
		}
		if (cf->batch)
			c->open[q] = r;
	}
	r->its[r->n++] = it;
	c->keys[q]++;
	if (!cf->batch) {
		req_send(c, r); /* may complete it at once: the core allows that */
	} else if (r->n == r->cap) {
		batch_send(c, q);
	} else if (!c->window_armed) {
		c->window_armed = true;
		c->host->timer_start(c->window, cf->batch_window_ms, 0);
	}
	return WGGWD_PENDING;
}

/* ----------------------------------------------------------- connection */

static void on_flushed(void *owner, bool ok);

static void subscribe(struct ctx *c)
{
	char wild[96];
	natsStatus s;

	if (c->sub || c->stopping || !nc_conn(c->nc))
		return;
	snprintf(wild, sizeof(wild), "%s*", c->inbox);
	s = natsConnection_Subscribe(&c->sub, nc_conn(c->nc), wild, nc_msg_cb, nc_closure(c->nc));
	if (s != NATS_OK) {
		c->sub = NULL;
		c->host->log(c->self, WGGWD_LOG_ERROR, "subscribe to our inbox: %s", nc_err(s));
		return;
	}
	/* answers are small and many may be in flight */
	natsSubscription_SetPendingLimits(c->sub, -1, -1);
	nc_sub_track(c->nc, c->sub);
	if (nc_flush(c->nc, on_flushed))
		c->ready = true; /* stopping, or no memory: the first answers may be late */
}

static void on_flushed(void *owner, bool ok)
{
	struct ctx *c = owner;

	if (!ok)
		c->host->log(c->self, WGGWD_LOG_WARN, "no PONG after subscribing to our inbox: "
			     "looking up anyway (the first answers may time out)");
	c->ready = true;
}

static void on_connected(void *owner)
{
	subscribe(owner);
}

static const struct nc_handlers handlers = {
	.connected = on_connected,
	.msg = on_msg,
};

/* ------------------------------------------------------------ lifecycle */

static int rn_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));
	int i, ret;

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	for (i = 0; i < C_MAX; i++)
		c->c[i] = host->counter(self, counter_names[i]);
	for (i = 0; i < E_MAX; i++)
		c->err[i] = host->counter(self, err_names[i]);
	c->g_pending = host->gauge(self, "pending");
	ret = nc_create(&c->nc, host, self, &c->conf->nc, &handlers, c);
	if (ret) {
		free(c);
		return ret;
	}
	*ctxp = c;
	return 0;
}

static const char *rn_validate(const void *conf, const char **option, char *buf, size_t len)
{
	const struct conf *cf = conf;
	const char *why = nc_validate(&cf->nc, option);

	if (why)
		return why;
	if (cf->batch && !cf->batch_subject) {
		*option = "batch_subject";
		return "needed with batch";
	}
	*option = "allowed_prefixes";
	return wg_policy_check(&cf->allowed_prefixes, true, buf, len);
}

static int rn_start(void *ctx)
{
	struct ctx *c = ctx;
	const struct conf *cf = c->conf;
	natsInbox *inbox = NULL;
	int ret;

	ret = wg_policy_load(&c->pol, &cf->allowed_prefixes);
	if (ret)
		return ret;
	if (natsInbox_Create(&inbox) != NATS_OK)
		return -ENOMEM;
	ret = asprintf(&c->inbox, "%s.", (const char *)inbox);
	natsInbox_Destroy(inbox);
	if (ret < 0) {
		c->inbox = NULL;
		return -ENOMEM;
	}
	c->inbox_len = strlen(c->inbox);
	c->window = c->host->timer_new(c->self, on_window, c);
	if (!c->window)
		return -ENOMEM;
	ret = nc_start(c->nc); /* may connect and subscribe at once */
	if (ret) {
		c->host->timer_free(c->window);
		c->window = NULL;
		return ret;
	}
	uv_timer_init(c->host->loop, &c->timer);
	c->timer.data = c;
	c->timer_open = true;
	return 0;
}

static void rn_stop(void *ctx)
{
	struct ctx *c = ctx;

	struct req *r;
	size_t i;
	int q;

	c->stopping = true;
	if (c->sub) {
		natsSubscription_Destroy(c->sub);
		c->sub = NULL;
	}
	if (c->window) {
		c->host->timer_free(c->window);
		c->window = NULL;
	}
	for (q = 0; q < Q_MAX; q++) {
		if ((r = c->open[q])) {
			c->open[q] = NULL;
			for (i = 0; i < r->n; i++)
				r->its[i]->reason = WGGWD_R_SHUTDOWN;
			req_complete(c, r, WGGWD_ERROR);
		}
	}
	while ((r = c->head)) {
		for (i = 0; i < r->n; i++)
			r->its[i]->reason = WGGWD_R_SHUTDOWN;
		req_finish(c, r, WGGWD_ERROR);
	}
	nc_stop_host(c->nc, &c->timer, &c->timer_open);
}

static void rn_destroy(void *ctx)
{
	struct ctx *c = ctx;

	while (c->head) { /* never started, or the core freed them */
		struct req *r = c->head;

		req_unlink(c, r);
		req_free(r);
	}
	nc_destroy(c->nc);
	wg_policy_free(&c->pol);
	free(c->inbox);
	free(c);
}

/* /readyz: connected to NATS, our inbox subscribed. */
static int rn_status(void *ctx, char *buf, size_t len)
{
	struct ctx *c = ctx;

	if (c->stopping)
		snprintf(buf, len, "stopping");
	else if (!nc_is_connected(c->nc))
		snprintf(buf, len, "not connected to NATS");
	else if (!c->ready)
		snprintf(buf, len, "connected to NATS; the reply inbox is not subscribed yet");
	else
		return 0;
	return 1;
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = rn_create,
	.validate = rn_validate,
	.start = rn_start,
	.process = rn_process,
	.stop = rn_stop,
	.destroy = rn_destroy,
	.status = rn_status,
};

WGGWD_PLUGIN_DEFINE(
	.name = "resolver-nats",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "looks keys up on the control plane by NATS request/reply (asynchronous, on the loop), with an allowed-prefix policy",
	.kind = WGGWD_RESOLVER,
	.in = WGGWD_MSG_PEER_KEY,
	.out = WGGWD_MSG_PEER,
	.flags = WGGWD_F_OWN_THREADS,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
