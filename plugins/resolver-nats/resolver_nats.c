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
 *   {"error": "<anything else>"}          -> an error (remote_error)
 *   no answer within timeout              -> an error (timeout)
 *   nobody subscribed (no responders)     -> an error (no_responders)
 *   not connected                         -> an error (connect)
 *
 * and, like resolver-http, an answer about another key is an error
 * (key_mismatch), and so is one with an allowed IP outside
 * allowed_prefixes (policy). A test cluster swaps one resolver for the
 * other by changing the plugin line and url/subject.
 *
 * {public_key} in the subject is, by default (key_encoding: base64url),
 * the key in URL-safe base64 without padding (43 characters of A-Z a-z
 * 0-9 - _), which is one subject token whatever the key; base64 (plain,
 * with + / =; also legal in NATS subjects) and hex are the other choices.
 *
 * Requests are asynchronous: one wildcard subscription on our own inbox
 * (_INBOX.<nuid>.*) collects every answer, each request has its own reply
 * subject (_INBOX.<nuid>.<n>), and one loop timer expires them in order
 * (they all have the same timeout). Nothing blocks the loop.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "natsconn.h"
#include "peerjson.h"
#include "wgutil.h"

enum { ENC_BASE64URL, ENC_BASE64, ENC_HEX };
static const char *const enc_choices[] = { "base64url", "base64", "hex", NULL };

struct conf {
	struct nc_conf nc;
	char *subject;
	int key_encoding;
	int64_t timeout_ms;
	int64_t max_pending;
	struct wggwd_list allowed_prefixes;
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
	  .help = "requests waiting for an answer at once; beyond it lookups are dropped (overloaded)" },
	{ .name = "allowed_prefixes", .type = WGGWD_OPT_LIST, .flags = WGGWD_OPT_REQUIRED,
	  .min = 1, .max = 256, .offset = offsetof(struct conf, allowed_prefixes),
	  .check = wg_check_allowed_ip,
	  .help = "every allowed IP of an answer must lie inside one of these (10.90.0.0/16); an answer asking for more is refused (policy)" },
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

enum { C_REQUESTS, C_OK, C_NOT_FOUND, C_OVERLOADED, C_LATE, C_MAX };
static const char *const counter_names[C_MAX] = {
	"requests", "ok", "not_found", "overloaded", "late_answers",
};

#define REQ_BUCKETS 4096

struct req {
	struct ctx *c;
	struct wggwd_item *it;
	uint64_t id;
	uint64_t deadline_ms;
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
	struct wggwd_allowed_ip *prefixes;
	size_t n_prefixes;
	struct req *table[REQ_BUCKETS];
	struct req *head, *tail;
	size_t n_pending;
	uint64_t next_id;
	uv_timer_t timer;
	bool timer_open, stopping;
	uint64_t last_warn_ms;
	uint64_t *c[C_MAX];
	uint64_t *err[E_MAX];
	int64_t *g_pending;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void WGGWD_PRINTF(2, 3) log_limited(struct ctx *c, const char *fmt, ...)
{
	uint64_t now = mono_ms();
	char buf[512];
	va_list ap;

	if (c->last_warn_ms && now - c->last_warn_ms < 1000)
		return;
	c->last_warn_ms = now;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	c->host->log(c->self, WGGWD_LOG_WARN, "%s", buf);
}

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
	now = mono_ms();
	uv_timer_start(&c->timer, on_timer,
		       c->head->deadline_ms > now ? c->head->deadline_ms - now : 0, 0);
}

/* Finish r with verdict v (the item goes on in the pipeline). */
static void req_finish(struct ctx *c, struct req *r, int v)
{
	struct wggwd_item *it = r->it;

	req_unlink(c, r);
	free(r);
	c->host->complete(c->self, it, v);
}

static int fail(struct ctx *c, struct wggwd_item *it, enum err e)
{
	(*c->err[e])++;
	it->drop_reason = err_names[e];
	return WGGWD_ERROR;
}

/* -------------------------------------------------------------- answers */

static int parse_answer(struct ctx *c, struct wggwd_item *it, json_t *root)
{
	struct wggwd_peer *p = &it->peer;
	char b64[WG_KEY_B64_LEN], ipbuf[64];
	const char *what;
	enum err e = E_BAD_BODY;
	int out;

	wg_key_to_b64(b64, it->public_key);
	what = wg_peer_from_json(root, p);
	if (what)
		goto bad;
	if (memcmp(p->public_key, it->public_key, WGGWD_KEY_LEN)) {
		e = E_KEY_MISMATCH;
		what = "the answer is about another key";
		goto bad;
	}
	out = wg_peer_outside(p, c->prefixes, c->n_prefixes);
	if (out >= 0) {
		wg_allowed_ip_str(&p->allowed[out], ipbuf, sizeof(ipbuf));
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "peer %s: the control plane answered allowed IP %s, outside allowed_prefixes: refused",
			     b64, ipbuf);
		e = E_POLICY;
		what = NULL;
		goto bad;
	}
	(*c->c[C_OK])++;
	return WGGWD_CONTINUE;
bad:
	sodium_memzero(p, sizeof(*p));
	if (what)
		log_limited(c, "peer %s: bad answer: %s", b64, what);
	return fail(c, it, e);
}

static int not_found(struct ctx *c, struct wggwd_item *it)
{
	(*c->c[C_NOT_FOUND])++;
	it->drop_reason = "unknown_key";
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
		log_limited(c, "peer %s: nobody answers lookups on this subject (no responders)", b64);
		return fail(c, it, E_NO_RESPONDERS);
	}
	if (len <= 0)
		return not_found(c, it);
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		log_limited(c, "peer %s: bad answer: not a JSON object%s%s", b64,
			    root ? "" : ": ", root ? "" : jerr.text);
		json_decref(root);
		return fail(c, it, E_BAD_BODY);
	}
	v = json_object_get(root, "error");
	if (v && !json_is_null(v)) {
		if (json_is_string(v) && !strcmp(json_string_value(v), "not_found")) {
			ret = not_found(c, it);
		} else {
			log_limited(c, "peer %s: the control plane answered an error: %.100s", b64,
				    json_is_string(v) ? json_string_value(v) : "(not a string)");
			ret = fail(c, it, E_REMOTE);
		}
	} else {
		ret = parse_answer(c, it, root);
	}
	v = json_object_get(root, "preshared_key");
	if (json_is_string(v)) /* wipe jansson's copy of the secret */
		sodium_memzero((char *)json_string_value(v), json_string_length(v));
	json_decref(root);
	return ret;
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
		struct wggwd_item *it = r->it;
		int v = judge(c, it, m);

		req_finish(c, r, v);
		arm_timer(c);
	}
	nc_msg_free(m);
}

static void on_timer(uv_timer_t *t)
{
	struct ctx *c = t->data;
	uint64_t now = mono_ms();
	char b64[WG_KEY_B64_LEN];

	while (c->head && c->head->deadline_ms <= now) {
		struct req *r = c->head;

		wg_key_to_b64(b64, r->it->public_key);
		log_limited(c, "peer %s: no answer within %lld ms (timeout)", b64,
			    (long long)c->conf->timeout_ms);
		req_finish(c, r, fail(c, r->it, E_TIMEOUT));
	}
	arm_timer(c);
}

static int rn_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	char enc[WG_KEY_HEX_LEN], b64[WG_KEY_B64_LEN], reply[96], body[96];
	char subj[512];
	const char *tmpl = c->conf->subject, *at;
	struct req *r;
	natsStatus s;

	if (c->stopping) {
		it->drop_reason = "shutdown";
		return WGGWD_ERROR;
	}
	if (!nc_is_connected(c->nc) || !c->sub)
		return fail(c, it, E_CONNECT);
	if (c->n_pending >= (size_t)c->conf->max_pending) {
		(*c->c[C_OVERLOADED])++;
		it->drop_reason = "overloaded";
		return WGGWD_DROP;
	}
	switch (c->conf->key_encoding) {
	case ENC_HEX:
		wg_key_to_hex(enc, it->public_key);
		break;
	case ENC_BASE64:
		wg_key_to_b64(enc, it->public_key);
		break;
	default:
		sodium_bin2base64(enc, sizeof(enc), it->public_key, WGGWD_KEY_LEN,
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		break;
	}
	at = strstr(tmpl, "{public_key}");
	if (snprintf(subj, sizeof(subj), "%.*s%s%s", (int)(at - tmpl), tmpl, enc,
		     at + strlen("{public_key}")) >= (int)sizeof(subj)) {
		it->drop_reason = "subject_too_long";
		return WGGWD_ERROR;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		it->drop_reason = "no_memory";
		return WGGWD_ERROR;
	}
	r->c = c;
	r->it = it;
	r->id = ++c->next_id;
	r->deadline_ms = mono_ms() + c->conf->timeout_ms;
	snprintf(reply, sizeof(reply), "%s%llu", c->inbox, (unsigned long long)r->id);
	wg_key_to_b64(b64, it->public_key);
	snprintf(body, sizeof(body), "{\"public_key\":\"%s\"}", b64);
	s = natsConnection_PublishRequestString(nc_conn(c->nc), subj, reply, body);
	if (s != NATS_OK) {
		free(r);
		log_limited(c, "lookup request on %s: %s", subj, nc_err(s));
		return fail(c, it, E_CONNECT);
	}
	(*c->c[C_REQUESTS])++;
	req_link(c, r);
	if (c->n_pending == 1)
		arm_timer(c);
	return WGGWD_PENDING;
}

/* ----------------------------------------------------------- connection */

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

	(void)buf;
	(void)len;
	if (cf->nc.nkey_seed_file && !cf->nc.nkey) {
		*option = "nkey";
		return "nkey_seed_file needs nkey (the public U... key)";
	}
	if (cf->nc.tls_cert_file && !cf->nc.tls_key_file) {
		*option = "tls_key_file";
		return "tls_cert_file needs tls_key_file";
	}
	return NULL;
}

static int rn_start(void *ctx)
{
	struct ctx *c = ctx;
	const struct conf *cf = c->conf;
	natsInbox *inbox = NULL;
	size_t i;
	int ret;

	c->prefixes = calloc(cf->allowed_prefixes.n, sizeof(*c->prefixes));
	if (!c->prefixes)
		return -ENOMEM;
	for (i = 0; i < cf->allowed_prefixes.n; i++)
		if (wg_allowed_ip_parse(&c->prefixes[i], ((char **)cf->allowed_prefixes.v)[i]))
			return -EINVAL;
	c->n_prefixes = cf->allowed_prefixes.n;
	if (natsInbox_Create(&inbox) != NATS_OK)
		return -ENOMEM;
	ret = asprintf(&c->inbox, "%s.", (const char *)inbox);
	natsInbox_Destroy(inbox);
	if (ret < 0) {
		c->inbox = NULL;
		return -ENOMEM;
	}
	c->inbox_len = strlen(c->inbox);
	ret = nc_start(c->nc); /* may connect and subscribe at once */
	if (ret)
		return ret;
	uv_timer_init(c->host->loop, &c->timer);
	c->timer.data = c;
	c->timer_open = true;
	return 0;
}

static void on_nc_stopped(void *owner)
{
	struct ctx *c = owner;

	c->host->stopped(c->self);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct ctx *c = h->data;

	c->timer_open = false;
	nc_stop(c->nc, on_nc_stopped);
}

static void rn_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->stopping = true;
	if (c->sub) {
		natsSubscription_Destroy(c->sub);
		c->sub = NULL;
	}
	while (c->head) {
		c->head->it->drop_reason = "shutdown";
		req_finish(c, c->head, WGGWD_ERROR);
	}
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void rn_destroy(void *ctx)
{
	struct ctx *c = ctx;

	while (c->head) { /* never started, or the core freed them */
		struct req *r = c->head;

		req_unlink(c, r);
		free(r);
	}
	nc_destroy(c->nc);
	free(c->prefixes);
	free(c->inbox);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = rn_create,
	.validate = rn_validate,
	.start = rn_start,
	.process = rn_process,
	.stop = rn_stop,
	.destroy = rn_destroy,
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
