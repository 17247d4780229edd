// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-nats: peer configs pushed by the control plane over NATS.
 *
 * mode: jetstream (the default) binds a durable push consumer (explicit
 * acks, max_ack_pending = max_in_flight, so the server never has more
 * than that many messages unacknowledged with us) on `subject`; creating
 * it if it does not exist. Each message carries one JSON object:
 *
 *   {"op": "add"|"remove", "public_key": "<base64>",
 *    "allowed_ips": ["10.0.0.2/32", ...], "preshared_key"?: "<base64>",
 *    "persistent_keepalive"?: 0-65535, "endpoint"?: "host:port",
 *    "version"?: <integer, increasing per key>}
 *
 * and becomes one PEER item (transport PUSH, origin PUSH, version = the
 * message's, else its stream sequence). The message is settled from the
 * `done` op, once the item has finished the pipeline:
 *
 *   CONTINUE, DONE      +ACK  (installed, or nothing to do)
 *   ERROR               -NAK with nak_delay (redelivered later)
 *   DROP                +TERM (the pipeline refused it: never retried)
 *
 * A message this source refuses itself (not JSON, a bad key or address,
 * an allowed IP outside allowed_prefixes) is a poison message: +TERM at
 * once, counted, never retried.
 *
 * Ordering: items for one key go down the pipeline one at a time, in the
 * order received; a message whose version is not newer than the newest
 * one this process has completed for its key is ACKed as stale without
 * being emitted. That memory lives as long as the process: across
 * restarts (and when a NAKed old version comes back after a newer one
 * was acknowledged by a previous run) the version check of a store
 * (store-sqlite keeps pushed versions and tombstones) is what keeps an
 * older config from winning. Put one in the pipeline.
 *
 * mode: request subscribes to `subject` with core NATS (no persistence)
 * and answers each request once its item has finished: {"ok": true} or
 * {"ok": false, "error": "<reason>"}; more than max_in_flight at once are
 * answered {"ok": false, "error": "busy"}.
 *
 * cnats delivers messages on a thread of its own; they reach the loop
 * through natsconn.c's mailbox (host->post). ACKs are plain publishes on
 * the message's reply subject, made on the loop.
 *
 * Counters: received, emitted, acked, naked, terminated, stale, poison,
 * refused (the pipeline dropped it), busy, redelivered, replies; gauge
 * in_flight. Connection counters: see natsconn.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "natsconn.h"
#include "wgutil.h"

enum { MODE_JETSTREAM, MODE_REQUEST };
static const char *const mode_choices[] = { "jetstream", "request", NULL };

struct conf {
	struct nc_conf nc;
	int mode;
	char *subject;
	char *durable;
	char *stream;
	char *queue;
	int64_t max_in_flight;
	int64_t ack_wait_ms;
	int64_t nak_delay_ms;
	int64_t max_deliver;
	int64_t heartbeat_ms;
	int64_t drain_timeout_ms;
	struct wggwd_list allowed_prefixes;
};

static const char *check_durable(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!*s || strpbrk(s, ".*> \t\r\n")) {
		snprintf(buf, len, "a consumer name may not be empty or contain '.', '*', '>' or blanks");
		return buf;
	}
	return NULL;
}

static const char *check_subject(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!*s || strpbrk(s, " \t\r\n") || s[0] == '.' || s[strlen(s) - 1] == '.' ||
	    strstr(s, "..")) {
		snprintf(buf, len, "expected a NATS subject (tokens separated by '.', no blanks)");
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	NC_OPTS(struct conf, nc),
	{ .name = "mode", .type = WGGWD_OPT_ENUM, .def = "jetstream", .choices = mode_choices,
	  .offset = offsetof(struct conf, mode),
	  .help = "jetstream: a durable consumer, ACK after install (nothing lost); request: core NATS request/reply, answered after install" },
	{ .name = "subject", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, subject), .check = check_subject,
	  .help = "where the control plane publishes this gateway's (or region's) peers (wggwd.peers.gw1)" },
	{ .name = "durable", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct conf, durable), .check = check_durable,
	  .help = "jetstream: the durable consumer's name (one per gateway); created if missing" },
	{ .name = "stream", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct conf, stream),
	  .help = "jetstream: the stream to bind to (default: the one whose subjects cover subject)" },
	{ .name = "queue", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct conf, queue),
	  .help = "request: a queue group, so that several daemons share one subject" },
	{ .name = "max_in_flight", .type = WGGWD_OPT_INT, .def = "256", .min = 1, .max = 100000,
	  .offset = offsetof(struct conf, max_in_flight),
	  .help = "messages received and not yet settled (the consumer's max_ack_pending; request mode answers busy beyond it)" },
	{ .name = "ack_wait", .type = WGGWD_OPT_DURATION, .def = "30s", .min = 100, .max = 3600000,
	  .offset = offsetof(struct conf, ack_wait_ms),
	  .help = "jetstream: how long the server waits for an ACK before redelivering (after a crash: how soon the unsettled messages come back)" },
	{ .name = "nak_delay", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 0, .max = 3600000,
	  .offset = offsetof(struct conf, nak_delay_ms),
	  .help = "jetstream: a message whose item failed (ERROR) is redelivered after this" },
	{ .name = "max_deliver", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 1000000,
	  .offset = offsetof(struct conf, max_deliver),
	  .help = "jetstream: deliveries of one message before the server gives up on it (0: no limit; errors are retried, poison is terminated anyway)" },
	{ .name = "heartbeat", .type = WGGWD_OPT_DURATION, .def = "5s", .min = 0, .max = 600000,
	  .offset = offsetof(struct conf, heartbeat_ms),
	  .help = "jetstream: the consumer's idle heartbeat; missing ones make the source bind the consumer again (0: off)" },
	{ .name = "drain_timeout", .type = WGGWD_OPT_DURATION, .def = "5s", .min = 0, .max = 600000,
	  .offset = offsetof(struct conf, drain_timeout_ms),
	  .help = "at stop: how long items already in the pipeline may take to finish and be ACKed before the connection closes (the rest are redelivered)" },
	{ .name = "allowed_prefixes", .type = WGGWD_OPT_LIST, .min = 0, .max = 256,
	  .offset = offsetof(struct conf, allowed_prefixes), .check = wg_check_allowed_ip,
	  .help = "every allowed IP of a pushed peer must lie inside one of these (10.90.0.0/16), else the message is terminated as poison (policy); empty: no check" },
	WGGWD_OPT_END
};

struct pmsg;

/* what this process knows about one key */
struct keyst {
	uint8_t key[WGGWD_KEY_LEN];
	uint64_t applied;       /* newest version completed */
	bool has_applied;
	bool busy;              /* an item for it is in the pipeline */
	bool kicking;
	struct pmsg *wq, **wq_tail;
	struct keyst *next;
};

/* one received message, until it is settled */
struct pmsg {
	struct ctx *c;
	struct keyst *ks;
	struct wggwd_item *it;  /* ours until emitted */
	char *reply;
	uint64_t version;
	bool emitted;
	struct pmsg *wnext;
	struct pmsg *prev, *next;
};

#define KEY_BUCKETS 16384

enum {
	C_RECEIVED, C_EMITTED, C_ACKED, C_NAKED, C_TERMINATED, C_STALE, C_POISON, C_REFUSED,
	C_BUSY, C_REDELIVERED, C_REPLIES, C_MAX
};
static const char *const counter_names[C_MAX] = {
	"received", "emitted", "acked", "naked", "terminated", "stale", "poison", "refused",
	"busy", "redelivered", "replies",
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct nc *nc;
	natsSubscription *sub;
	struct wggwd_allowed_ip *prefixes;
	size_t n_prefixes;
	struct keyst **keys;
	struct pmsg *live;       /* every pmsg */
	size_t n_live, n_emitted;
	uv_timer_t timer;        /* subscribe retry; drain timeout at stop */
	bool timer_open;
	bool work_busy, resubscribe;
	int sub_failures;
	bool stopping, closing, drain_expired, conn_closed;
	uint64_t last_warn_ms;
	uint64_t *c[C_MAX];
	int64_t *in_flight;
};

/* --------------------------------------------------------------- helpers */

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
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

static struct keyst *key_get(struct ctx *c, const uint8_t *key)
{
	uint32_t h;
	struct keyst *k;

	memcpy(&h, key, sizeof(h));
	h %= KEY_BUCKETS;
	for (k = c->keys[h]; k; k = k->next)
		if (!memcmp(k->key, key, WGGWD_KEY_LEN))
			return k;
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	memcpy(k->key, key, WGGWD_KEY_LEN);
	k->wq_tail = &k->wq;
	k->next = c->keys[h];
	c->keys[h] = k;
	return k;
}

static void update_gauge(struct ctx *c)
{
	*c->in_flight = c->n_live;
}

static struct pmsg *pmsg_new(struct ctx *c, const char *reply)
{
	struct pmsg *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return NULL;
	pm->reply = strdup(reply ? reply : "");
	if (!pm->reply) {
		free(pm);
		return NULL;
	}
	pm->c = c;
	pm->next = c->live;
	if (c->live)
		c->live->prev = pm;
	c->live = pm;
	c->n_live++;
	update_gauge(c);
	return pm;
}

static void pmsg_free(struct pmsg *pm)
{
	struct ctx *c = pm->c;

	if (pm->prev)
		pm->prev->next = pm->next;
	else
		c->live = pm->next;
	if (pm->next)
		pm->next->prev = pm->prev;
	c->n_live--;
	update_gauge(c);
	if (pm->it)
		c->host->item_free(c->self, pm->it);
	free(pm->reply);
	free(pm);
}

/* ------------------------------------------------------------- settling */

static bool can_publish(struct ctx *c, const struct pmsg *pm)
{
	return !c->conn_closed && nc_conn(c->nc) && pm->reply[0];
}

static void publish(struct ctx *c, const char *subj, const char *text)
{
	natsStatus s = natsConnection_PublishString(nc_conn(c->nc), subj, text);

	if (s != NATS_OK)
		log_limited(c, "publish to %s: %s", subj, nc_err(s));
}

static void reply_json(struct ctx *c, struct pmsg *pm, const char *error)
{
	char buf[256];

	if (!can_publish(c, pm))
		return;
	if (error)
		snprintf(buf, sizeof(buf), "{\"ok\":false,\"error\":\"%s\"}", error);
	else
		snprintf(buf, sizeof(buf), "{\"ok\":true}");
	publish(c, pm->reply, buf);
	(*c->c[C_REPLIES])++;
}

static void ack(struct ctx *c, struct pmsg *pm)
{
	(*c->c[C_ACKED])++;
	if (c->conf->mode == MODE_REQUEST)
		reply_json(c, pm, NULL);
	else if (can_publish(c, pm))
		publish(c, pm->reply, "+ACK");
}

static void nak(struct ctx *c, struct pmsg *pm, int64_t delay_ms, const char *why)
{
	char buf[64];

	(*c->c[C_NAKED])++;
	if (c->conf->mode == MODE_REQUEST) {
		reply_json(c, pm, why);
		return;
	}
	if (!can_publish(c, pm))
		return;
	if (delay_ms > 0)
		snprintf(buf, sizeof(buf), "-NAK {\"delay\": %lld}", (long long)delay_ms * 1000000);
	else
		snprintf(buf, sizeof(buf), "-NAK");
	publish(c, pm->reply, buf);
}

static void term(struct ctx *c, struct pmsg *pm, const char *why)
{
	(*c->c[C_TERMINATED])++;
	if (c->conf->mode == MODE_REQUEST)
		reply_json(c, pm, why);
	else if (can_publish(c, pm))
		publish(c, pm->reply, "+TERM");
}

/* --------------------------------------------------------------- parsing */

/* "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>",
 * or with "<domain>.<account hash>." before the stream (v2, and maybe a
 * trailing token). */
static bool ack_subject_parse(const char *s, uint64_t *sseq, uint64_t *delivered)
{
	const char *tok[16];
	size_t n = 0, base;
	char *end;

	if (strncmp(s, "$JS.ACK.", 8))
		return false;
	s += 8;
	tok[n++] = s;
	for (; *s && n < 16; s++)
		if (*s == '.')
			tok[n++] = s + 1;
	if (n == 7)
		base = 0;
	else if (n >= 9)
		base = 2;
	else
		return false;
	*delivered = strtoull(tok[base + 2], &end, 10);
	if (*end != '.')
		return false;
	*sseq = strtoull(tok[base + 3], &end, 10);
	return *end == '.' && *sseq;
}

static void wipe_json_key(json_t *root, const char *name)
{
	json_t *v = json_object_get(root, name);

	if (json_is_string(v))
		sodium_memzero((char *)json_string_value(v), json_string_length(v));
}

/* The message as an item; NULL and *why (a static phrase) if poison. */
static const char *parse_msg(struct ctx *c, const char *data, int len, struct wggwd_item *it,
			     uint64_t seq)
{
	struct wggwd_peer *p = &it->peer;
	json_t *root, *v, *ips, *ip;
	json_error_t jerr;
	const char *why = NULL, *op;
	size_t i, k;

	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		why = "bad_json";
		goto out;
	}
	v = json_object_get(root, "op");
	op = json_is_string(v) ? json_string_value(v) : v ? NULL : "add";
	if (!op || (strcmp(op, "add") && strcmp(op, "remove"))) {
		why = "bad_op";
		goto out;
	}
	it->op = strcmp(op, "add") ? WGGWD_OP_REMOVE : WGGWD_OP_ADD;
	v = json_object_get(root, "public_key");
	if (!json_is_string(v) || wg_key_from_b64(p->public_key, json_string_value(v)) ||
	    wg_key_is_zero(p->public_key)) {
		why = "bad_key";
		goto out;
	}
	memcpy(it->public_key, p->public_key, WGGWD_KEY_LEN);
	p->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_VERSION;
	v = json_object_get(root, "version");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			why = "bad_version";
			goto out;
		}
		p->version = (uint64_t)json_integer_value(v);
	} else if (seq) {
		p->version = seq;
	} else {
		p->has &= ~WGGWD_PEER_HAS_VERSION;
	}
	if (it->op == WGGWD_OP_REMOVE)
		goto out;
	ips = json_object_get(root, "allowed_ips");
	if (ips && !json_is_array(ips)) {
		why = "bad_allowed_ips";
		goto out;
	}
	if (json_array_size(ips) > WGGWD_MAX_ALLOWED) {
		why = "bad_allowed_ips";
		goto out;
	}
	json_array_foreach(ips, i, ip) {
		if (!json_is_string(ip) || wg_allowed_ip_parse(&p->allowed[i], json_string_value(ip))) {
			why = "bad_allowed_ips";
			goto out;
		}
	}
	p->n_allowed = json_array_size(ips);
	p->has |= WGGWD_PEER_HAS_ALLOWED_IPS | WGGWD_PEER_HAS_KEEPALIVE;
	v = json_object_get(root, "preshared_key");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || wg_key_from_b64(p->preshared_key, json_string_value(v))) {
			why = "bad_preshared_key";
			goto out;
		}
		p->has |= WGGWD_PEER_HAS_PRESHARED_KEY;
	}
	v = json_object_get(root, "persistent_keepalive");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535) {
			why = "bad_keepalive";
			goto out;
		}
		p->keepalive = json_integer_value(v);
	}
	v = json_object_get(root, "endpoint");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || wg_sockaddr_parse(&p->endpoint, json_string_value(v))) {
			why = "bad_endpoint";
			goto out;
		}
		p->has |= WGGWD_PEER_HAS_ENDPOINT;
	}
	for (i = 0; c->n_prefixes && i < p->n_allowed; i++) {
		for (k = 0; k < c->n_prefixes; k++)
			if (wg_allowed_ip_within(&p->allowed[i], &c->prefixes[k]))
				break;
		if (k == c->n_prefixes) {
			why = "policy";
			goto out;
		}
	}
out:
	if (root) {
		wipe_json_key(root, "preshared_key");
		json_decref(root);
	}
	return why;
}

/* ------------------------------------------------------------- pipeline */

static void kick(struct ctx *c, struct keyst *ks);

static void emit(struct ctx *c, struct pmsg *pm)
{
	struct keyst *ks = pm->ks;
	struct wggwd_item *it = pm->it;

	if ((it->peer.has & WGGWD_PEER_HAS_VERSION) && ks->has_applied &&
	    it->peer.version <= ks->applied) {
		/* an older (or the same) version than one already done */
		(*c->c[C_STALE])++;
		ack(c, pm);
		pmsg_free(pm);
		return;
	}
	ks->busy = true;
	pm->emitted = true;
	pm->it = NULL; /* the core's now */
	c->n_emitted++;
	(*c->c[C_EMITTED])++;
	it->source_ref = pm;
	c->host->emit(c->self, it); /* may finish at once: done() */
}

static void kick(struct ctx *c, struct keyst *ks)
{
	struct pmsg *pm;

	if (ks->kicking)
		return; /* the outer call goes on */
	ks->kicking = true;
	while (!ks->busy && ks->wq && !c->stopping) {
		pm = ks->wq;
		ks->wq = pm->wnext;
		if (!ks->wq)
			ks->wq_tail = &ks->wq;
		pm->wnext = NULL;
		emit(c, pm);
	}
	ks->kicking = false;
}

static void on_msg(void *owner, natsMsg *m)
{
	struct ctx *c = owner;
	const char *reply = natsMsg_GetReply(m), *why;
	uint64_t seq = 0, delivered = 1;
	struct wggwd_item *it;
	struct pmsg *pm;
	char b64[WG_KEY_B64_LEN];

	(*c->c[C_RECEIVED])++;
	if (c->conf->mode == MODE_JETSTREAM) {
		if (!reply || !ack_subject_parse(reply, &seq, &delivered)) {
			log_limited(c, "a message on %s is not from a JetStream consumer; ignored",
				    natsMsg_GetSubject(m));
			goto out;
		}
		if (delivered > 1)
			(*c->c[C_REDELIVERED])++;
	} else if (!reply) {
		log_limited(c, "a message on %s has no reply subject; ignored (request mode)",
			    natsMsg_GetSubject(m));
		goto out;
	}
	pm = pmsg_new(c, reply);
	if (!pm)
		goto out; /* redelivered, or the request times out */
	if (c->stopping) {
		nak(c, pm, 0, "stopping");
		pmsg_free(pm);
		goto out;
	}
	if (c->conf->mode == MODE_REQUEST && c->n_live > (size_t)c->conf->max_in_flight) {
		(*c->c[C_BUSY])++;
		reply_json(c, pm, "busy");
		pmsg_free(pm);
		goto out;
	}
	it = pm->it = c->host->item_new(c->self);
	it->type = WGGWD_MSG_PEER;
	it->transport = WGGWD_TR_PUSH;
	it->rx_realtime_ns = realtime_ns();
	it->peer.origin = WGGWD_ORIGIN_PUSH;
	why = parse_msg(c, natsMsg_GetData(m), natsMsg_GetDataLength(m), it, seq);
	if (!why) {
		pm->ks = key_get(c, it->peer.public_key);
		if (!pm->ks) {
			nak(c, pm, c->conf->nak_delay_ms, "no_memory");
			pmsg_free(pm);
			goto out;
		}
	}
	if (why) {
		(*c->c[C_POISON])++;
		if (!strcmp(why, "policy")) {
			wg_key_to_b64(b64, it->peer.public_key);
			log_limited(c, "peer %s: an allowed IP lies outside allowed_prefixes: message terminated (policy)",
				    b64);
		} else {
			log_limited(c, "poison message (%s) on %s, stream sequence %llu: terminated",
				    why, natsMsg_GetSubject(m), (unsigned long long)seq);
		}
		term(c, pm, why);
		pmsg_free(pm);
		goto out;
	}
	pm->version = it->peer.version;
	*pm->ks->wq_tail = pm;
	pm->ks->wq_tail = &pm->wnext;
	kick(c, pm->ks);
out:
	nc_msg_free(m);
}

static void check_stop(struct ctx *c);

static void sn_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	struct pmsg *pm = it->source_ref;
	struct keyst *ks;

	if ((it->flags & WGGWD_ITEM_INJECTED) || !pm || pm->c != c)
		return;
	ks = pm->ks;
	switch (verdict) {
	case WGGWD_CONTINUE:
	case WGGWD_DONE:
		if ((it->peer.has & WGGWD_PEER_HAS_VERSION) &&
		    (!ks->has_applied || it->peer.version > ks->applied)) {
			ks->applied = it->peer.version;
			ks->has_applied = true;
		}
		ack(c, pm);
		break;
	case WGGWD_DROP:
		if (it->drop_reason && !strcmp(it->drop_reason, "shutdown")) {
			nak(c, pm, 0, "shutdown");
			break;
		}
		(*c->c[C_REFUSED])++;
		log_limited(c, "the pipeline refused a pushed config (%s): message terminated",
			    it->drop_reason ? it->drop_reason : "unspecified");
		term(c, pm, it->drop_reason ? it->drop_reason : "refused");
		break;
	default:
		nak(c, pm, c->conf->nak_delay_ms, it->drop_reason ? it->drop_reason : "error");
		break;
	}
	ks->busy = false;
	c->n_emitted--;
	pmsg_free(pm);
	it->source_ref = NULL;
	if (c->stopping)
		check_stop(c);
	else
		kick(c, ks);
}

/* ---------------------------------------------------------- subscribing */

struct subwork {
	struct ctx *c;
	natsSubscription *sub;
	natsStatus st;
	jsErrCode jerr;
	char err[256];
};

static void subscribe_retry(struct ctx *c);

/* thread pool: the JetStream API calls block on replies the loop reads */
static void subscribe_work(void *arg)
{
	struct subwork *w = arg;
	struct ctx *c = w->c;
	const struct conf *cf = c->conf;
	jsCtx *js = NULL;
	jsOptions jo;
	jsSubOptions so;

	jsOptions_Init(&jo);
	jo.Wait = 5000;
	w->st = natsConnection_JetStream(&js, nc_conn(c->nc), &jo);
	if (w->st != NATS_OK)
		goto out;
	jsSubOptions_Init(&so);
	so.Stream = cf->stream;
	so.ManualAck = true;
	so.Config.Durable = cf->durable;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.DeliverPolicy = js_DeliverAll;
	so.Config.AckWait = cf->ack_wait_ms * 1000000;
	so.Config.MaxAckPending = cf->max_in_flight;
	so.Config.MaxDeliver = cf->max_deliver ? cf->max_deliver : -1;
	if (cf->heartbeat_ms) {
		so.Config.Heartbeat = cf->heartbeat_ms * 1000000;
		so.Config.FlowControl = true;
	}
	w->st = js_Subscribe(&w->sub, js, cf->subject, nc_msg_cb, nc_closure(c->nc), &jo, &so,
			     &w->jerr);
	if (w->st == NATS_OK)
		nc_sub_track(c->nc, w->sub);
out:
	if (w->st != NATS_OK)
		snprintf(w->err, sizeof(w->err), "%s", nc_err(w->st));
	jsCtx_Destroy(js);
}

static void subscribe_after(void *arg, int status)
{
	struct subwork *w = arg;
	struct ctx *c = w->c;

	c->work_busy = false;
	if (status == 0 && w->st == NATS_OK) {
		if (c->stopping) {
			natsSubscription_Destroy(w->sub);
		} else {
			c->sub = w->sub;
			c->host->log(c->self, WGGWD_LOG_INFO,
				     "consuming %s as durable %s (max %lld in flight, ack wait %lld ms)",
				     c->conf->subject, c->conf->durable,
				     (long long)c->conf->max_in_flight,
				     (long long)c->conf->ack_wait_ms);
			c->sub_failures = 0;
		}
	} else if (!c->stopping) {
		if (!c->sub_failures || c->sub_failures % 10 == 0)
			c->host->log(c->self, WGGWD_LOG_WARN,
				     "cannot bind the JetStream consumer %s on %s: %s (error %d); retrying",
				     c->conf->durable, c->conf->subject,
				     status ? uv_strerror(status) : w->err, (int)w->jerr);
		c->sub_failures++;
		subscribe_retry(c);
	}
	free(w);
	if (c->stopping)
		check_stop(c);
	else if (c->resubscribe && !c->sub)
		subscribe_retry(c);
}

static void subscribe(struct ctx *c)
{
	struct subwork *w;
	natsStatus s;
	int ret;

	if (c->stopping || c->work_busy || !nc_conn(c->nc))
		return;
	if (c->conf->mode == MODE_REQUEST) {
		if (c->conf->queue)
			s = natsConnection_QueueSubscribe(&c->sub, nc_conn(c->nc), c->conf->subject,
							  c->conf->queue, nc_msg_cb,
							  nc_closure(c->nc));
		else
			s = natsConnection_Subscribe(&c->sub, nc_conn(c->nc), c->conf->subject,
						     nc_msg_cb, nc_closure(c->nc));
		if (s != NATS_OK) {
			c->sub = NULL;
			c->host->log(c->self, WGGWD_LOG_WARN, "subscribe to %s: %s; retrying",
				     c->conf->subject, nc_err(s));
			c->sub_failures++;
			subscribe_retry(c);
			return;
		}
		nc_sub_track(c->nc, c->sub);
		c->host->log(c->self, WGGWD_LOG_INFO, "answering requests on %s", c->conf->subject);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		subscribe_retry(c);
		return;
	}
	w->c = c;
	c->resubscribe = false;
	ret = c->host->queue_work(c->self, subscribe_work, subscribe_after, w);
	if (ret) {
		free(w);
		subscribe_retry(c);
		return;
	}
	c->work_busy = true;
}

static void on_timer(uv_timer_t *t)
{
	struct ctx *c = t->data;

	if (c->stopping) {
		c->drain_expired = true;
		if (c->n_emitted)
			c->host->log(c->self, WGGWD_LOG_WARN,
				     "drain_timeout: %zu items still in the pipeline; their messages will be redelivered",
				     c->n_emitted);
		check_stop(c);
		return;
	}
	subscribe(c);
}

static void subscribe_retry(struct ctx *c)
{
	int64_t d = 250;
	int i;

	for (i = 0; i < c->sub_failures && d < 30000; i++)
		d *= 2;
	if (d > 30000)
		d = 30000;
	if (c->timer_open && !c->stopping)
		uv_timer_start(&c->timer, on_timer, d, 0);
}

static void on_connected(void *owner)
{
	subscribe(owner);
}

static void on_async_error(void *owner, natsStatus s, bool missed_heartbeat)
{
	struct ctx *c = owner;

	(void)s;
	if (!missed_heartbeat || c->conf->mode != MODE_JETSTREAM || !c->sub)
		return;
	/* the server lost the consumer (or we lost the server): bind again;
	 * Destroy, not Unsubscribe, keeps the durable */
	c->host->log(c->self, WGGWD_LOG_WARN, "consumer heartbeats missed: binding %s again",
		     c->conf->durable);
	natsSubscription_Destroy(c->sub);
	c->sub = NULL;
	c->resubscribe = true;
	if (!c->work_busy)
		subscribe(c);
}

static const struct nc_handlers handlers = {
	.connected = on_connected,
	.msg = on_msg,
	.async_error = on_async_error,
};

/* ------------------------------------------------------------ lifecycle */

static int sn_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));
	int i, ret;

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->keys = calloc(KEY_BUCKETS, sizeof(*c->keys));
	if (!c->keys) {
		ret = -ENOMEM;
		goto err;
	}
	for (i = 0; i < C_MAX; i++)
		c->c[i] = host->counter(self, counter_names[i]);
	c->in_flight = host->gauge(self, "in_flight");
	ret = nc_create(&c->nc, host, self, &c->conf->nc, &handlers, c);
	if (ret)
		goto err;
	*ctxp = c;
	return 0;
err:
	free(c->keys);
	free(c);
	return ret;
}

static const char *sn_validate(const void *conf, const char **option, char *buf, size_t len)
{
	const struct conf *cf = conf;

	(void)buf;
	(void)len;
	if (cf->mode == MODE_JETSTREAM && !cf->durable) {
		*option = "durable";
		return "mode jetstream needs a durable consumer name";
	}
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

static int sn_start(void *ctx)
{
	struct ctx *c = ctx;
	const struct conf *cf = c->conf;
	size_t i;
	int ret;

	if (cf->allowed_prefixes.n) {
		c->prefixes = calloc(cf->allowed_prefixes.n, sizeof(*c->prefixes));
		if (!c->prefixes)
			return -ENOMEM;
		for (i = 0; i < cf->allowed_prefixes.n; i++)
			if (wg_allowed_ip_parse(&c->prefixes[i], ((char **)cf->allowed_prefixes.v)[i]))
				return -EINVAL;
		c->n_prefixes = cf->allowed_prefixes.n;
	} else {
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "no allowed_prefixes: pushed allowed IPs are not checked");
	}
	ret = nc_start(c->nc); /* may connect and subscribe at once */
	if (ret)
		return ret;
	uv_timer_init(c->host->loop, &c->timer);
	c->timer.data = c;
	c->timer_open = true;
	if (nc_conn(c->nc) && !c->sub && !c->work_busy)
		subscribe(c);
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
	c->conn_closed = true;
	nc_stop(c->nc, on_nc_stopped);
}

static void check_stop(struct ctx *c)
{
	if (!c->stopping || c->closing || c->work_busy)
		return;
	if (c->n_emitted && !c->drain_expired)
		return;
	c->closing = true;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void sn_stop(void *ctx)
{
	struct ctx *c = ctx;
	struct pmsg *pm, *next;
	size_t i;

	c->stopping = true;
	/* Destroy, not Unsubscribe: cnats deletes a consumer it created on
	 * an explicit unsubscribe, and the durable must stay */
	if (c->sub) {
		natsSubscription_Destroy(c->sub);
		c->sub = NULL;
	}
	/* what waits behind another item of its key goes back */
	for (i = 0; i < KEY_BUCKETS; i++) {
		struct keyst *ks;

		for (ks = c->keys[i]; ks; ks = ks->next) {
			for (pm = ks->wq; pm; pm = next) {
				next = pm->wnext;
				nak(c, pm, 0, "stopping");
				pmsg_free(pm);
			}
			ks->wq = NULL;
			ks->wq_tail = &ks->wq;
		}
	}
	uv_timer_stop(&c->timer);
	if (c->n_emitted && c->conf->drain_timeout_ms)
		uv_timer_start(&c->timer, on_timer, c->conf->drain_timeout_ms, 0);
	else
		c->drain_expired = true;
	check_stop(c);
}

static void sn_destroy(void *ctx)
{
	struct ctx *c = ctx;
	struct keyst *ks, *kn;
	size_t i;

	/* items the core freed without done(): their messages are redelivered */
	while (c->live)
		pmsg_free(c->live);
	nc_destroy(c->nc);
	for (i = 0; i < KEY_BUCKETS; i++)
		for (ks = c->keys[i]; ks; ks = kn) {
			kn = ks->next;
			free(ks);
		}
	free(c->keys);
	free(c->prefixes);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = sn_create,
	.validate = sn_validate,
	.start = sn_start,
	.stop = sn_stop,
	.destroy = sn_destroy,
	.done = sn_done,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-nats",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "peer configs pushed over NATS (JetStream durable consumer, ACK after install; or request/reply)",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PEER,
	.flags = WGGWD_F_OWN_THREADS,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
