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
 * message's, else its stream sequence; a removal is an item with op
 * REMOVE and reason pushed). The message is settled from the `done` op,
 * once the item has finished the pipeline:
 *
 *   CONTINUE, DONE      +ACK  (installed, or nothing to do)
 *   ERROR               -NAK with nak_delay (redelivered later)
 *   DROP                +TERM (the pipeline refused it: never retried)
 *   DROP shutdown       -NAK  (redelivered at once, to whoever is there)
 *   DROP inflight_duplicate, overloaded, no_memory
 *                       -NAK with nak_delay (a passing condition)
 *
 * A message this source refuses itself (not JSON, a bad key or address,
 * more than max_allowed_ips allowed IPs, one outside allowed_prefixes, an
 * endpoint that is loopback, link-local, unspecified, multicast or ours, a
 * version above max_version or more than max_version_jump ahead) is a
 * poison message: +TERM at once, counted (poison, poison_<why>), never
 * retried (sn_msg.c).
 *
 * Ordering: items for one key go down the pipeline one at a time, in the
 * order received; a message whose version is not newer than the newest
 * one this process has completed for its key is ACKed as stale without
 * being emitted. That memory is bounded (max_keys idle keys, least
 * recently pushed forgotten first; gauge keys) and lives at most as long
 * as the process: across
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
 * The subscription is synchronous: the loop reads the socket (cnats'
 * libuv adapter) and takes the messages off the subscription right after
 * (nc_sub_poll), with no delivery thread and no hand-off per message. ACKs
 * are plain publishes on the message's reply subject, made on the loop.
 *
 * Counters: received, emitted, acked, naked, terminated, stale, poison
 * (and poison_<why> per kind), refused (the pipeline dropped it), busy,
 * redelivered, replies, keys_forgotten; gauges in_flight, keys. Failover
 * (see "consumer check" and "failover" below): rebinds, consumer_checks,
 * consumer_check_failures, failover_reads, read_directly,
 * direct_get_failures. Connection counters: see plugins/common/natsconn.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "natsconn.h"
#include "peerpolicy.h"
#include "sn.h"
#include "wgutil.h"

struct pmsg;

/* what this process knows about one key; idle ones (nothing queued or in
 * the pipeline) are on an LRU list, forgotten beyond max_keys */
struct keyst {
	uint8_t key[WGGWD_KEY_LEN];
	uint64_t applied;       /* newest version completed */
	bool has_applied;
	bool busy;              /* an item for it is in the pipeline */
	bool kicking, idle;
	struct pmsg *wq, **wq_tail;
	struct keyst *next;
	struct keyst *lprev, *lnext;
};

/* one received message, until it is settled */
struct pmsg {
	struct ctx *c;
	struct keyst *ks;
	struct wggwd_item *it;  /* ours until emitted */
	char *reply;
	uint64_t version;
	struct pmsg *wnext;
	struct pmsg *prev, *next;
};

/* a bucket a key on average: the table doubles as the keys grow */
#define KEY_BUCKETS_MIN 16384
#define KEY_BUCKETS_MAX (1u << 22)

enum {
	C_RECEIVED, C_EMITTED, C_ACKED, C_NAKED, C_TERMINATED, C_STALE, C_POISON, C_REFUSED,
	C_BUSY, C_REDELIVERED, C_REPLIES, C_FORGOTTEN, C_MAX
};
static const char *const counter_names[C_MAX] = {
	"received", "emitted", "acked", "naked", "terminated", "stale", "poison", "refused",
	"busy", "redelivered", "replies", "keys_forgotten",
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct sn_conf *conf;
	struct nc *nc;
	natsSubscription *sub;
	struct sn_policy pol;
	struct keyst **keys;
	size_t n_keys, n_buckets;     /* n_buckets: a power of two */
	struct keyst *lru, *lru_tail; /* idle keys, least recently used first */
	struct pmsg *live;       /* every pmsg */
	size_t n_live, n_emitted;
	uv_timer_t timer;        /* subscribe retry; drain timeout at stop */
	bool timer_open;
	bool work_busy, resubscribe;
	int sub_failures;
	char *bound_stream;      /* the stream and deliver subject of the bound */
	char *deliver;           /* consumer (for the heartbeat check) */
	uint64_t *c_rebinds, *c_checks, *c_check_failures;
	/* failover_read: the stream read directly while the consumer has no
	 * leader (see "failover" below) */
	struct wggwd_timer *bridge_timer;
	bool bridge_on, bridge_busy;
	uint64_t cons_seq;       /* the newest stream sequence the consumer gave us */
	uint64_t bridge_next;    /* the next one to read directly */
	uint64_t bridge_seq;     /* on_msg: the message was read directly */
	uint64_t *c_failovers, *c_bridged, *c_bridge_failures;
	bool stopping, closing, drain_expired, conn_closed;
	uint64_t *c[C_MAX];
	uint64_t *poison[P_MAX];
	int64_t *in_flight, *g_keys;
};

/* --------------------------------------------------------------- helpers */

#define warn_limited(c, ...) (c)->host->log_limited((c)->self, WGGWD_LOG_WARN, __VA_ARGS__)

/* keys are the control plane's choice: buckets by the host's keyed hash */
static size_t key_bucket(const struct ctx *c, const uint8_t *key)
{
	return c->host->hash(key, WGGWD_KEY_LEN) & (c->n_buckets - 1);
}

/* Twice the buckets once there are more keys than buckets (a replay of
 * 10^5 keys walked chains of four and more); short of memory, the old
 * table stays, with longer chains. */
static void keys_grow(struct ctx *c)
{
	size_t i, h, n = c->n_buckets * 2;
	struct keyst **t, *k, *next;

	if (c->n_keys <= c->n_buckets || n > KEY_BUCKETS_MAX || !(t = calloc(n, sizeof(*t))))
		return;
	for (i = 0; i < c->n_buckets; i++) {
		for (k = c->keys[i]; k; k = next) {
			next = k->next;
			h = c->host->hash(k->key, WGGWD_KEY_LEN) & (n - 1);
			k->next = t[h];
			t[h] = k;
		}
	}
	free(c->keys);
	c->keys = t;
	c->n_buckets = n;
}

static struct keyst *key_get(struct ctx *c, const uint8_t *key)
{
	size_t h = key_bucket(c, key);
	struct keyst *k;

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
	*c->g_keys = ++c->n_keys;
	keys_grow(c);
	return k;
}

static void lru_unlink(struct ctx *c, struct keyst *k)
{
	if (!k->idle)
		return;
	*(k->lprev ? &k->lprev->lnext : &c->lru) = k->lnext;
	*(k->lnext ? &k->lnext->lprev : &c->lru_tail) = k->lprev;
	k->lprev = k->lnext = NULL;
	k->idle = false;
}

static void key_forget(struct ctx *c, struct keyst *k)
{
	struct keyst **pp = &c->keys[key_bucket(c, k->key)];

	lru_unlink(c, k);
	while (*pp != k)
		pp = &(*pp)->next;
	*pp = k->next;
	free(k);
	*c->g_keys = --c->n_keys;
	(*c->c[C_FORGOTTEN])++;
}

/* k has nothing queued or in flight: most recently used; then the bound */
static void key_idle(struct ctx *c, struct keyst *k)
{
	if (k->busy || k->wq || k->kicking)
		return;
	lru_unlink(c, k);
	k->idle = true;
	k->lprev = c->lru_tail;
	*(c->lru_tail ? &c->lru_tail->lnext : &c->lru) = k;
	c->lru_tail = k;
	while (c->n_keys > (size_t)c->conf->max_keys && c->lru)
		key_forget(c, c->lru);
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
		warn_limited(c, "publish to %s: %s", subj, nc_err(s));
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

/* A message read directly (failover_read) has no reply subject: the
 * consumer redelivers it later, and that copy is settled. */
static void ack(struct ctx *c, struct pmsg *pm)
{
	if (!pm->reply[0])
		return;
	(*c->c[C_ACKED])++;
	if (c->conf->mode == MODE_REQUEST)
		reply_json(c, pm, NULL);
	else if (can_publish(c, pm))
		publish(c, pm->reply, "+ACK");
}

static void nak(struct ctx *c, struct pmsg *pm, int64_t delay_ms, const char *why)
{
	char buf[64];

	if (!pm->reply[0])
		return;
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
	if (!pm->reply[0])
		return;
	(*c->c[C_TERMINATED])++;
	if (c->conf->mode == MODE_REQUEST)
		reply_json(c, pm, why);
	else if (can_publish(c, pm))
		publish(c, pm->reply, "+TERM");
}

/* ------------------------------------------------------------- pipeline */

static void kick(struct ctx *c, struct keyst *ks);

static void emit(struct ctx *c, struct pmsg *pm)
{
	struct keyst *ks = pm->ks;
	struct wggwd_item *it = pm->it;
	int ret;

	if ((it->peer->has & WGGWD_PEER_HAS_VERSION) && ks->has_applied &&
	    it->peer->version <= ks->applied) {
		/* an older (or the same) version than one already done */
		(*c->c[C_STALE])++;
		ack(c, pm);
		pmsg_free(pm);
		return;
	}
	if ((it->peer->has & WGGWD_PEER_HAS_VERSION) && ks->has_applied &&
	    c->conf->max_version_jump &&
	    it->peer->version - ks->applied > (uint64_t)c->conf->max_version_jump) {
		(*c->c[C_POISON])++;
		(*c->poison[P_VERSION_JUMP])++;
		warn_limited(c, "version %llu is more than max_version_jump beyond the applied %llu: message terminated (version_jump)",
			     (unsigned long long)it->peer->version, (unsigned long long)ks->applied);
		term(c, pm, sn_poison_names[P_VERSION_JUMP]);
		pmsg_free(pm);
		return;
	}
	ks->busy = true;
	pm->it = NULL; /* the core's now */
	c->n_emitted++;
	*c->host->slot(c->self, it) = pm;
	ret = c->host->emit(c->self, it); /* 0: may have finished already */
	if (!ret) {
		(*c->c[C_EMITTED])++;
		return;
	}
	/* refused and freed; done will not come: redeliver it */
	ks->busy = false;
	c->n_emitted--;
	nak(c, pm, ret == -ESHUTDOWN ? 0 : c->conf->nak_delay_ms,
	    ret == -ESHUTDOWN ? "shutdown" : "refused");
	pmsg_free(pm);
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
	if (!c->stopping)
		key_idle(c, ks); /* may free ks */
}

static void consumer_delivered(struct ctx *c, uint64_t seq);

static void on_msg(void *owner, natsMsg *m)
{
	struct ctx *c = owner;
	const char *reply = natsMsg_GetReply(m);
	uint64_t seq = 0, delivered = 1, now = c->host->now_ns();
	struct wggwd_item *it;
	struct pmsg *pm;
	char b64[WG_KEY_B64_LEN];
	const char *what;
	int why;

	(*c->c[C_RECEIVED])++;
	if (c->conf->mode == MODE_JETSTREAM && c->bridge_seq) {
		seq = c->bridge_seq; /* read from the stream directly: no ACK subject */
		reply = NULL;
	} else if (c->conf->mode == MODE_JETSTREAM) {
		if (!reply || !sn_ack_subject_parse(reply, &seq, &delivered)) {
			warn_limited(c, "a message on %s is not from a JetStream consumer; ignored",
				     natsMsg_GetSubject(m));
			goto out;
		}
		if (delivered > 1)
			(*c->c[C_REDELIVERED])++;
		consumer_delivered(c, seq);
	} else if (!reply) {
		warn_limited(c, "a message on %s has no reply subject; ignored (request mode)",
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
	if (!it) {
		nak(c, pm, c->conf->nak_delay_ms, "no_memory");
		pmsg_free(pm);
		goto out;
	}
	it->type = WGGWD_MSG_PEER;
	it->transport = WGGWD_TR_PUSH;
	it->t[WGGWD_T_RX] = now; /* the wait behind its key counts too */
	it->rx_realtime_ns = c->host->realtime_ns();
	it->peer->origin = WGGWD_ORIGIN_PUSH;
	why = sn_parse(&c->pol, natsMsg_GetData(m), natsMsg_GetDataLength(m), it, seq, &what);
	if (why == P_NONE) {
		pm->ks = key_get(c, it->peer->public_key);
		if (!pm->ks)
			why = -ENOMEM;
	}
	if (why < 0) {
		warn_limited(c, "out of memory for a message on %s: redelivered after nak_delay",
			     natsMsg_GetSubject(m));
		nak(c, pm, c->conf->nak_delay_ms, "no_memory");
		pmsg_free(pm);
		goto out;
	}
	if (why != P_NONE) {
		(*c->c[C_POISON])++;
		(*c->poison[why])++;
		if (why == P_POLICY) {
			wg_key_to_b64(b64, it->peer->public_key);
			warn_limited(c, "peer %s: its %s is outside the policy (allowed_prefixes, allow_endpoints): message terminated (policy)",
				     b64, what);
		} else {
			warn_limited(c, "poison message (%s) on %s, stream sequence %llu: terminated",
				     sn_poison_names[why], natsMsg_GetSubject(m),
				     (unsigned long long)seq);
		}
		term(c, pm, sn_poison_names[why]);
		pmsg_free(pm);
		goto out;
	}
	pm->version = it->peer->version;
	lru_unlink(c, pm->ks);
	*pm->ks->wq_tail = pm;
	pm->ks->wq_tail = &pm->wnext;
	kick(c, pm->ks);
out:
	nc_msg_release(c->nc, m);
}

static void check_stop(struct ctx *c);

static void sn_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	void **slot = c->host->slot(c->self, it);
	struct pmsg *pm = *slot;
	struct keyst *ks = pm->ks;
	const char *why = c->host->reason_name(it->reason);

	switch (verdict) {
	case WGGWD_CONTINUE:
	case WGGWD_DONE:
		if ((it->peer->has & WGGWD_PEER_HAS_VERSION) &&
		    (!ks->has_applied || it->peer->version > ks->applied)) {
			ks->applied = it->peer->version;
			ks->has_applied = true;
		}
		ack(c, pm);
		break;
	case WGGWD_DROP:
		if (it->reason == WGGWD_R_SHUTDOWN) {
			nak(c, pm, 0, why);
			break;
		}
		if (it->reason == WGGWD_R_INFLIGHT_DUPLICATE || it->reason == WGGWD_R_OVERLOADED ||
		    it->reason == WGGWD_R_NO_MEMORY) {
			nak(c, pm, c->conf->nak_delay_ms, why); /* not the message's fault */
			break;
		}
		(*c->c[C_REFUSED])++;
		warn_limited(c, "the pipeline refused a pushed config (%s%s%s): message terminated",
			     why, it->detail ? ": " : "", it->detail ? it->detail : "");
		term(c, pm, why);
		break;
	default:
		nak(c, pm, c->conf->nak_delay_ms, it->reason ? why : "error");
		break;
	}
	ks->busy = false;
	c->n_emitted--;
	pmsg_free(pm);
	*slot = NULL;
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
	char *stream;
	uint64_t delivered;      /* the consumer's last delivered stream sequence */
	char err[256];
};

static void subscribe_retry(struct ctx *c);

/* thread pool: the JetStream API calls block on replies the loop reads */
static void subscribe_work(void *arg)
{
	struct subwork *w = arg;
	struct ctx *c = w->c;
	const struct sn_conf *cf = c->conf;
	jsCtx *js = NULL;
	jsOptions jo;
	jsSubOptions so;
	jsConsumerInfo *ci = NULL;

	jsOptions_Init(&jo);
	jo.Wait = cf->api_timeout_ms;
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
	/* synchronous: read on the loop (nc_sub_poll), no delivery thread */
	w->st = js_SubscribeSync(&w->sub, js, cf->subject, &jo, &so, &w->jerr);
	if (w->st == NATS_OK) {
		/* the SUB on the deliver subject has reached the server */
		natsConnection_FlushTimeout(nc_conn(c->nc), jo.Wait);
		/* which stream it is on, for consumer_check (not fatal) */
		if (natsSubscription_GetConsumerInfo(&ci, w->sub, &jo, NULL) == NATS_OK &&
		    ci->Stream)
			w->stream = strdup(ci->Stream);
		if (ci)
			w->delivered = ci->Delivered.Stream;
		jsConsumerInfo_Destroy(ci);
	}
out:
	if (w->st != NATS_OK)
		snprintf(w->err, sizeof(w->err), "%s", nc_err(w->st));
	jsCtx_Destroy(js);
}

static void subscribe_after(void *arg, int status)
{
	struct subwork *w = arg;
	struct ctx *c = w->c;
	const char *ds;

	c->work_busy = false;
	if (status == 0 && w->st == NATS_OK) {
		if (c->stopping || nc_sub_poll(c->nc, w->sub)) {
			nc_sub_unpoll(c->nc, w->sub);
			natsSubscription_Destroy(w->sub);
			if (!c->stopping)
				subscribe_retry(c);
		} else {
			c->sub = w->sub;
			free(c->bound_stream);
			free(c->deliver);
			c->bound_stream = w->stream;
			if (w->delivered > c->cons_seq)
				c->cons_seq = w->delivered;
			w->stream = NULL;
			ds = natsSubscription_GetSubject(w->sub);
			c->deliver = ds ? strdup(ds) : NULL;
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
	free(w->stream);
	free(w);
	if (c->stopping)
		check_stop(c);
	else if (c->resubscribe && !c->sub)
		subscribe_retry(c);
}

/* request mode: drop the subscription and try again later */
static void subscribe_failed(struct ctx *c, const char *what)
{
	c->host->log(c->self, WGGWD_LOG_WARN, "subscribe to %s: %s failed; retrying",
		     c->conf->subject, what);
	if (c->sub) {
		nc_sub_unpoll(c->nc, c->sub);
		natsSubscription_Destroy(c->sub);
		c->sub = NULL;
	}
	c->sub_failures++;
	subscribe_retry(c);
}

static void on_sub_flushed(void *owner, bool ok)
{
	struct ctx *c = owner;

	c->work_busy = false;
	if (c->stopping) {
		check_stop(c);
		return;
	}
	if (!ok) {
		subscribe_failed(c, "flush (no PONG)");
		return;
	}
	c->sub_failures = 0;
	c->host->log(c->self, WGGWD_LOG_INFO, "answering requests on %s", c->conf->subject);
}

static void subscribe(struct ctx *c)
{
	struct subwork *w;
	natsStatus s;
	int ret;

	if (c->stopping || c->work_busy || !nc_conn(c->nc))
		return;
	if (c->conf->mode == MODE_REQUEST) {
		/* synchronous: read on the loop (nc_sub_poll) */
		if (c->conf->queue)
			s = natsConnection_QueueSubscribeSync(&c->sub, nc_conn(c->nc),
							      c->conf->subject, c->conf->queue);
		else
			s = natsConnection_SubscribeSync(&c->sub, nc_conn(c->nc), c->conf->subject);
		if (s == NATS_OK && nc_sub_poll(c->nc, c->sub)) {
			natsSubscription_Destroy(c->sub);
			s = NATS_NO_MEMORY;
		}
		if (s != NATS_OK) {
			c->sub = NULL;
			c->host->log(c->self, WGGWD_LOG_WARN, "subscribe to %s: %s; retrying",
				     c->conf->subject, nc_err(s));
			c->sub_failures++;
			subscribe_retry(c);
			return;
		}
		/* ready once the server has the SUB: a request sent after the
		 * log line must not meet "no responders" */
		if (nc_flush(c->nc, on_sub_flushed)) {
			subscribe_failed(c, "flush");
			return;
		}
		c->work_busy = true;
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

/* --------------------------------------------------- consumer check */

/*
 * Missed heartbeats mean that the consumer's leader is gone (a node died,
 * its raft group elects another: the server's election timeout, seconds)
 * or that the consumer itself is (deleted, its stream recreated). Only the
 * second needs a new binding: the push consumer's next leader delivers to
 * the same deliver subject, and destroying our subscription there would
 * only add the JetStream API round trips (each waiting api_timeout while
 * there is no leader) to the server's failover. So ask, off the loop,
 * with api_timeout; bind again only when the server says the consumer is
 * not there or no longer delivers to us.
 */
struct checkwork {
	struct ctx *c;
	natsStatus st;
	jsErrCode jerr;
	bool gone;
	char err[256];
};

static void consumer_check_work(void *arg)
{
	struct checkwork *w = arg;
	struct ctx *c = w->c;
	jsConsumerInfo *ci = NULL;
	jsCtx *js = NULL;
	jsOptions jo;

	jsOptions_Init(&jo);
	jo.Wait = c->conf->api_timeout_ms;
	w->st = natsConnection_JetStream(&js, nc_conn(c->nc), &jo);
	if (w->st == NATS_OK)
		w->st = js_GetConsumerInfo(&ci, js, c->bound_stream, c->conf->durable, &jo,
					   &w->jerr);
	if (w->st == NATS_OK)
		w->gone = !ci->Config || !ci->Config->DeliverSubject ||
			  strcmp(ci->Config->DeliverSubject, c->deliver);
	else if (w->jerr == JSConsumerNotFoundErr || w->jerr == JSStreamNotFoundErr)
		w->gone = true;
	if (w->st != NATS_OK)
		snprintf(w->err, sizeof(w->err), "%s", nc_err(w->st));
	jsConsumerInfo_Destroy(ci);
	jsCtx_Destroy(js);
}

static void bridge_stop(struct ctx *c, const char *why);

static void rebind(struct ctx *c, const char *why)
{
	c->host->log(c->self, WGGWD_LOG_WARN, "consumer %s: %s: binding it again",
		     c->conf->durable, why);
	(*c->c_rebinds)++;
	/* a new consumer: its position is learnt at the binding */
	bridge_stop(c, "rebinding");
	c->cons_seq = 0;
	c->bridge_next = 0;
	/* Destroy, not Unsubscribe, keeps the durable */
	nc_sub_unpoll(c->nc, c->sub);
	natsSubscription_Destroy(c->sub);
	c->sub = NULL;
	c->resubscribe = true;
	if (!c->work_busy)
		subscribe(c);
}

static void consumer_check_after(void *arg, int status)
{
	struct checkwork *w = arg;
	struct ctx *c = w->c;

	c->work_busy = false;
	if (c->stopping) {
		free(w);
		check_stop(c);
		return;
	}
	if (!status && w->gone && c->sub) {
		rebind(c, w->st == NATS_OK ? "it no longer delivers to this subscription"
					   : "the server does not know it");
	} else if (status || w->st != NATS_OK) {
		(*c->c_check_failures)++;
		c->host->log_limited(c->self, WGGWD_LOG_INFO,
				     "consumer %s: no answer (%s): its leader is being elected; keeping the subscription",
				     c->conf->durable, status ? uv_strerror(status) : w->err);
	} else if (c->bridge_on) {
		bridge_stop(c, "the consumer answers again");
	}
	free(w);
	if (c->resubscribe && !c->sub && !c->work_busy)
		subscribe(c);
}

/* Ask about the consumer (one at a time, never beside a binding). */
static void consumer_check(struct ctx *c)
{
	struct checkwork *w;

	if (c->conf->mode != MODE_JETSTREAM || !c->sub || c->stopping || c->work_busy)
		return; /* a check or a binding is under way; asked again later */
	(*c->c_checks)++;
	if (!c->bound_stream || !c->deliver) {
		rebind(c, "heartbeats missed");
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->c = c;
	if (c->host->queue_work(c->self, consumer_check_work, consumer_check_after, w)) {
		free(w);
		return;
	}
	c->work_busy = true;
}

/* ------------------------------------------------------------- failover */

/*
 * failover_read. When the node that leads the consumer dies, nats-server
 * elects another leader after its raft election timeout (4-9 s in 2.9,
 * not configurable): until then nothing is delivered. The stream's
 * replicas still hold every message, and with the stream's allow_direct
 * any of them answers a direct get, leader or not. So, from a reconnect
 * (the node we were on died: it may have led the consumer) or missed
 * heartbeats, until the consumer answers again (consumer_check) or
 * delivers what we have read, the stream is read from after the newest
 * sequence the consumer gave us, on the consumer's subject, and each
 * message goes down the pipeline as if delivered, without an ACK subject.
 * The consumer redelivers them once it has a leader: their version (or
 * stream sequence) is then not newer than the one applied, so they are
 * ACKed as stale. What the consumer delivered and we never got (lost in
 * flight) is not read here: it comes back after ack_wait, as before.
 */
#define BRIDGE_BATCH 64
#define BRIDGE_POLL_MS 50
#define BRIDGE_WAIT_MS 250 /* one direct get; any live replica answers in ms */

struct bridgework {
	struct ctx *c;
	char *stream;
	uint64_t next;
	int64_t wait_ms;
	natsMsg *msgs[BRIDGE_BATCH];
	int n, max;
	natsStatus st; /* of the last get: NATS_NOT_FOUND is "caught up" */
	char err[256];
};

/* thread pool */
static void bridge_work(void *arg)
{
	struct bridgework *w = arg;
	struct ctx *c = w->c;
	jsDirectGetMsgOptions dg;
	jsCtx *js = NULL;
	jsOptions jo;
	natsMsg *m;
	uint64_t seq;

	jsOptions_Init(&jo);
	jo.Wait = w->wait_ms;
	w->st = natsConnection_JetStream(&js, nc_conn(c->nc), &jo);
	while (w->st == NATS_OK && w->n < w->max) {
		m = NULL;
		jsDirectGetMsgOptions_Init(&dg);
		dg.Sequence = w->next;
		dg.NextBySubject = c->conf->subject;
		w->st = js_DirectGetMsg(&m, js, w->stream, &jo, &dg);
		if (w->st != NATS_OK)
			break;
		seq = natsMsg_GetSequence(m);
		if (seq < w->next || seq == UINT64_MAX) { /* never backwards */
			snprintf(w->err, sizeof(w->err), "answered sequence %llu for %llu",
				 (unsigned long long)seq, (unsigned long long)w->next);
			nc_msg_free(m);
			w->st = NATS_PROTOCOL_ERROR;
			break;
		}
		w->msgs[w->n++] = m;
		w->next = seq + 1;
	}
	if (w->st != NATS_OK && w->st != NATS_NOT_FOUND && !w->err[0])
		snprintf(w->err, sizeof(w->err), "%s", nc_err(w->st));
	jsCtx_Destroy(js);
}

static void bridge_after(void *arg, int status)
{
	struct bridgework *w = arg;
	struct ctx *c = w->c;
	/* more to read, or a request lost to a node that hangs: at once */
	bool again = w->n == w->max || w->st == NATS_TIMEOUT;
	uint64_t seq;
	int i;

	c->bridge_busy = false;
	for (i = 0; i < w->n; i++) {
		seq = natsMsg_GetSequence(w->msgs[i]);
		if (c->stopping || seq < c->bridge_next || seq <= c->cons_seq) {
			nc_msg_free(w->msgs[i]); /* the consumer has given it to us */
			continue;
		}
		c->bridge_next = seq + 1;
		(*c->c_bridged)++;
		c->bridge_seq = seq;
		on_msg(c, w->msgs[i]); /* frees it */
		c->bridge_seq = 0;
	}
	if (!status && w->st == NATS_NO_RESPONDERS && c->bridge_on) {
		(*c->c_bridge_failures)++;
		bridge_stop(c, "the stream answers no direct gets (its allow_direct is off)");
	} else if (status || (w->st != NATS_OK && w->st != NATS_NOT_FOUND)) {
		(*c->c_bridge_failures)++;
		c->host->log_limited(c->self, WGGWD_LOG_INFO, "failover_read: direct get from %s: %s",
				     w->stream, status ? uv_strerror(status) : w->err);
	}
	free(w->stream);
	free(w);
	if (c->stopping) {
		check_stop(c);
		return;
	}
	if (c->bridge_on)
		c->host->timer_start(c->bridge_timer, again ? 0 : BRIDGE_POLL_MS, 0);
}

/* the bridge timer: read the next batch, and ask whether the consumer is back */
static void bridge_poll(void *arg)
{
	struct ctx *c = arg;
	int64_t room = c->conf->max_in_flight - (int64_t)c->n_live;
	struct bridgework *w;

	if (!c->bridge_on || c->bridge_busy || c->stopping)
		return;
	consumer_check(c);
	/* no more in flight than the consumer would give us */
	if (room <= 0 || !(w = calloc(1, sizeof(*w)))) {
		c->host->timer_start(c->bridge_timer, BRIDGE_POLL_MS, 0);
		return;
	}
	w->c = c;
	w->next = c->bridge_next;
	w->max = room < BRIDGE_BATCH ? (int)room : BRIDGE_BATCH;
	w->wait_ms = c->conf->api_timeout_ms < BRIDGE_WAIT_MS ? c->conf->api_timeout_ms :
							       BRIDGE_WAIT_MS;
	w->stream = strdup(c->bound_stream);
	if (!w->stream || c->host->queue_work(c->self, bridge_work, bridge_after, w)) {
		free(w->stream);
		free(w);
		c->host->timer_start(c->bridge_timer, BRIDGE_POLL_MS, 0);
		return;
	}
	c->bridge_busy = true;
}

static void bridge_start(struct ctx *c, const char *why)
{
	if (!c->conf->failover_read || c->conf->mode != MODE_JETSTREAM || c->stopping ||
	    !c->sub || !c->bound_stream || !c->bridge_timer || c->bridge_on)
		return;
	c->bridge_on = true;
	if (c->bridge_next <= c->cons_seq)
		c->bridge_next = c->cons_seq + 1;
	(*c->c_failovers)++;
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "consumer %s: %s: reading stream %s directly from sequence %llu until the consumer answers",
		     c->conf->durable, why, c->bound_stream, (unsigned long long)c->bridge_next);
	bridge_poll(c);
}

static void bridge_stop(struct ctx *c, const char *why)
{
	if (!c->bridge_on)
		return;
	c->bridge_on = false;
	c->host->timer_stop(c->bridge_timer);
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "consumer %s: %s: direct reads stop (read up to sequence %llu)",
		     c->conf->durable, why, (unsigned long long)c->bridge_next - 1);
}

/* on_msg: a message from the consumer with this stream sequence */
static void consumer_delivered(struct ctx *c, uint64_t seq)
{
	if (seq > c->cons_seq)
		c->cons_seq = seq;
	if (c->bridge_on && seq + 1 >= c->bridge_next)
		bridge_stop(c, "the consumer delivers again");
}

static void on_reconnected(void *owner)
{
	/* the node we were on died or left: it may have led the consumer */
	bridge_start(owner, "reconnected");
}

static void on_async_error(void *owner, natsStatus s, bool missed_heartbeat)
{
	struct ctx *c = owner;

	(void)s;
	if (!missed_heartbeat || c->conf->mode != MODE_JETSTREAM || !c->sub || c->stopping)
		return;
	bridge_start(c, "heartbeats missed");
	consumer_check(c);
}

static const struct nc_handlers handlers = {
	.connected = on_connected,
	.msg = on_msg,
	.reconnected = on_reconnected,
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
	c->n_buckets = KEY_BUCKETS_MIN;
	c->keys = calloc(c->n_buckets, sizeof(*c->keys));
	if (!c->keys) {
		ret = -ENOMEM;
		goto err;
	}
	for (i = 0; i < C_MAX; i++)
		c->c[i] = host->counter(self, counter_names[i]);
	for (i = P_NONE + 1; i < P_MAX; i++) {
		char name[64];

		snprintf(name, sizeof(name), "poison_%s", sn_poison_names[i]);
		c->poison[i] = host->counter(self, name);
	}
	c->in_flight = host->gauge(self, "in_flight");
	c->c_rebinds = host->counter(self, "rebinds");
	c->c_checks = host->counter(self, "consumer_checks");
	c->c_check_failures = host->counter(self, "consumer_check_failures");
	c->c_failovers = host->counter(self, "failover_reads");
	c->c_bridged = host->counter(self, "read_directly");
	c->c_bridge_failures = host->counter(self, "direct_get_failures");
	c->g_keys = host->gauge(self, "keys");
	c->pol.host = host;
	c->pol.self = self;
	c->pol.max_allowed_ips = c->conf->max_allowed_ips;
	c->pol.max_version = (uint64_t)c->conf->max_version;
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
	const struct sn_conf *cf = conf;
	const char *why = nc_validate(&cf->nc, option);

	if (why)
		return why;
	if (cf->mode == MODE_JETSTREAM && !cf->durable) {
		*option = "durable";
		return "mode jetstream needs a durable consumer name";
	}
	/* keys in flight are never forgotten: below this, every key would
	 * be as it went idle, and a stale redelivery of it not caught */
	if (cf->max_keys < 2 * cf->max_in_flight) {
		*option = "max_keys";
		snprintf(buf, len, "%lld is less than twice max_in_flight (%lld): the keys in flight would leave no room to remember the others' versions",
			 (long long)cf->max_keys, (long long)cf->max_in_flight);
		return buf;
	}
	*option = "allowed_prefixes";
	return wg_policy_check(&cf->allowed_prefixes, true, buf, len);
}

/* Once created: say so if nothing but this process remembers versions. */
static const char *sn_link(void *ctx, const void *conf, const struct wggwd_link *l,
			   const char **option, char *buf, size_t len)
{
	struct ctx *c = ctx;

	(void)conf;
	(void)option;
	(void)buf;
	(void)len;
	if (c && !(l->kinds_after & (1u << WGGWD_STORE)))
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "pipeline %s has no store: only this process remembers pushed versions",
			     l->pipeline);
	return NULL;
}

static int sn_start(void *ctx)
{
	struct ctx *c = ctx;
	const struct sn_conf *cf = c->conf;
	struct wg_policy ap;
	int ret;

	ret = wg_policy_load(&ap, &cf->allowed_prefixes);
	if (!ret) {
		/* sn_policy keeps them as three fields (sn_msg.c) */
		c->pol.any_prefix = ap.any;
		c->pol.prefixes = ap.prefixes;
		c->pol.n_prefixes = ap.n;
		ret = sn_policy_load(&c->pol, &cf->allow_endpoints);
	}
	if (ret)
		return ret;
	if (c->pol.any_prefix)
		c->host->log(c->self, WGGWD_LOG_INFO,
			     "allowed_prefixes: [any]: pushed allowed IPs are not checked");
	if (cf->mode == MODE_JETSTREAM && cf->failover_read) {
		c->bridge_timer = c->host->timer_new(c->self, bridge_poll, c);
		if (!c->bridge_timer)
			return -ENOMEM;
	}
	/* the timer first: the connect (on the thread pool) may come back at once */
	uv_timer_init(c->host->loop, &c->timer);
	c->timer.data = c;
	c->timer_open = true;
	ret = nc_start(c->nc);
	if (ret) {
		c->timer_open = false;
		uv_close((uv_handle_t *)&c->timer, NULL);
		if (c->bridge_timer)
			c->host->timer_free(c->bridge_timer);
		c->bridge_timer = NULL;
		return ret;
	}
	return 0;
}

static void check_stop(struct ctx *c)
{
	if (!c->stopping || c->closing || c->work_busy || c->bridge_busy)
		return;
	if (c->n_emitted && !c->drain_expired)
		return;
	c->closing = true;
	c->conn_closed = true; /* nothing is published from here on */
	nc_stop_host(c->nc, &c->timer, &c->timer_open);
}

static void sn_stop(void *ctx)
{
	struct ctx *c = ctx;
	struct pmsg *pm, *next;
	size_t i;

	c->stopping = true;
	c->bridge_on = false;
	if (c->bridge_timer)
		c->host->timer_free(c->bridge_timer);
	c->bridge_timer = NULL;
	/* Destroy, not Unsubscribe: cnats deletes a consumer it created on
	 * an explicit unsubscribe, and the durable must stay */
	if (c->sub) {
		nc_sub_unpoll(c->nc, c->sub);
		natsSubscription_Destroy(c->sub);
		c->sub = NULL;
	}
	/* what waits behind another item of its key goes back */
	for (i = 0; i < c->n_buckets; i++) {
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

	/* never emitted (a failed start): their messages are redelivered */
	while (c->live)
		pmsg_free(c->live);
	nc_destroy(c->nc);
	free(c->bound_stream);
	free(c->deliver);
	for (i = 0; i < c->n_buckets; i++)
		for (ks = c->keys[i]; ks; ks = kn) {
			kn = ks->next;
			free(ks);
		}
	free(c->keys);
	sn_policy_free(&c->pol);
	free(c);
}

/* /readyz: connected to NATS and subscribed. */
static int sn_status(void *ctx, char *buf, size_t len)
{
	struct ctx *c = ctx;

	if (c->stopping) {
		snprintf(buf, len, "stopping");
		return 1;
	}
	if (!nc_is_connected(c->nc)) {
		snprintf(buf, len, "not connected to NATS");
		return 1;
	}
	if (!c->sub) {
		snprintf(buf, len, "connected to NATS; not subscribed yet");
		return 1;
	}
	return 0;
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = sn_create,
	.validate = sn_validate,
	.link = sn_link,
	.start = sn_start,
	.stop = sn_stop,
	.destroy = sn_destroy,
	.done = sn_done,
	.status = sn_status,
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
	.opts = sn_opts,
	.conf_size = sizeof(struct sn_conf),
	.ops = &ops);
