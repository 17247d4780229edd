// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The install engine (see wgengine.h). Completion, PROTOCOL.md (g):
 *   inversion: the endpoint and a non-zero keepalive go in one peer entry
 *     (through keepalive 0 first: wireguard-go and the kernel initiate on
 *     a change from 0), so the interface initiates at once. When that
 *     collides with the client's own handshake (each side's one handshake
 *     slot overwritten by the other's; the interface's own retry is 5 s
 *     away), the peer is removed and installed afresh in one request after
 *     stall_retry: a new peer has no pending handshake and no rate limit.
 *   reinject: installed with keepalive 0 (the interface stays the
 *     responder), and the item carries WGGWD_ITEM_REINJECT for the source
 *     to re-send the captured initiation.
 *   none: no endpoint from the knock: the client's own retry.
 * Under load (WGGWD_ITEM_INVERT from the source) knocks are completed by
 * inversion whatever `completion` says; a knock the interface answered
 * with a cookie (WGGWD_ITEM_REFUSED) is installed afresh: removed and
 * added in one request (refused_afresh()).
 * A keepalive installed other than configured is put back once a dump
 * shows the first handshake, after restore_timeout, and at stop: left on
 * toward a client that never answers, it would initiate forever.
 * The policy (allowed_prefixes) is applied to every install, whatever
 * brought it: policy_ok(). Dumps, and what they tell: wgengine_dump.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wgengine_int.h"

const char *const wge_completions[] = { "inversion", "reinject", "none", NULL };

/* ------------------------------------------------------------- peers */

static void set_awaiting(struct wge *e, struct peer *p, bool on)
{
	if (p->awaiting == on)
		return;
	p->awaiting = on;
	e->nawaiting += on ? 1 : -1;
	*e->g_awaiting = e->nawaiting;
}

void wge_peer_free(struct wggwd_peer *c)
{
	if (!c)
		return;
	free(c->allowed);
	sodium_memzero(c, sizeof(*c));
	free(c);
}

/* What a fresh install needs again later: keys, IPs (not the item's). */
static struct wggwd_peer *peer_copy(const struct wggwd_peer *p)
{
	struct wggwd_peer *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->size = sizeof(*c);
	c->has = p->has;
	memcpy(c->preshared_key, p->preshared_key, WGGWD_KEY_LEN);
	if (p->n_allowed) {
		c->allowed = malloc(p->n_allowed * sizeof(*c->allowed));
		if (!c->allowed) {
			wge_peer_free(c);
			return NULL;
		}
		memcpy(c->allowed, p->allowed, p->n_allowed * sizeof(*c->allowed));
		c->n_allowed = p->n_allowed;
	}
	return c;
}

void wge_take_retry(struct wge *e, struct peer *p, bool free_it)
{
	if (!p->retry)
		return;
	if (free_it)
		wge_peer_free(p->retry);
	p->retry = NULL;
	e->nretry--;
}

static void peer_fini(void *arg, struct wgt_ent *h)
{
	struct wge *e = arg;
	struct peer *p = (struct peer *)h;

	set_awaiting(e, p, false);
	wge_take_retry(e, p, true);
	wge_lease_drop(e, p);
}

void wge_count_peers(struct wge *e)
{
	*e->g_peers = e->peers.n;
}

/* Digests of what an install sets besides the endpoint (PSK, allowed
 * IPs, keepalive): equal digests mean nothing would change. Keyed SipHash
 * (128 bits, the key random per process): nobody who cannot read our
 * memory can make two configurations look alike, and it reveals nothing
 * of the preshared key. */
void wge_acc_psk(const struct wge_env *env, struct wge_acc *a, const uint8_t *psk)
{
	crypto_shorthash_siphashx24(a->hpsk, psk, WGGWD_KEY_LEN, ENG(env)->hkey);
}

void wge_acc_ip(const struct wge_env *env, struct wge_acc *a, const struct wggwd_allowed_ip *in)
{
	struct wggwd_allowed_ip ip = { .family = in->family, .cidr = in->cidr };
	unsigned bytes = in->family == AF_INET ? 4 : 16, i, bits;
	uint8_t h[16];
	uint64_t x, y;

	/* as the interface keeps it: the address masked to its prefix */
	for (i = 0; i < bytes; i++) {
		bits = i * 8;
		if (bits < ip.cidr)
			ip.addr[i] = ip.cidr - bits < 8 ? in->addr[i] & (uint8_t)(0xff00 >> (ip.cidr - bits))
							 : in->addr[i];
	}
	if (ENG(env)->policy && wg_policy_outside(&ENG(env)->pol, in, 1) >= 0)
		a->outside++;
	crypto_shorthash_siphashx24(h, (const uint8_t *)&ip, sizeof(ip), ENG(env)->hkey);
	memcpy(&x, h, 8);
	memcpy(&y, h + 8, 8);
	a->s0 += x;
	a->s1 += y;
	a->nips++;
}

static void acc_final(struct wge *e, const struct wge_acc *a, uint16_t keepalive,
		      uint8_t out[CFG_LEN])
{
	uint8_t m[CFG_LEN + 8 + 8 + 4 + 2];

	memcpy(m, a->hpsk, CFG_LEN);
	memcpy(m + CFG_LEN, &a->s0, 8);
	memcpy(m + CFG_LEN + 8, &a->s1, 8);
	memcpy(m + CFG_LEN + 16, &a->nips, 4);
	memcpy(m + CFG_LEN + 20, &keepalive, 2);
	crypto_shorthash_siphashx24(out, m, sizeof(m), e->hkey);
}

/* The allowed IPs alone: an install that changes only the endpoint, the
 * keepalive or the PSK leaves them in place. */
static void acc_ips(struct wge *e, const struct wge_acc *a, uint8_t out[IPS_LEN])
{
	uint8_t m[8 + 8 + 4];

	memcpy(m, &a->s0, 8);
	memcpy(m + 8, &a->s1, 8);
	memcpy(m + 16, &a->nips, 4);
	crypto_shorthash_siphash24(out, m, sizeof(m), e->hkey);
}

static void cfg_digest(struct wge *e, const struct wggwd_peer *p, uint16_t keepalive,
		       uint8_t out[CFG_LEN], uint8_t ips[IPS_LEN])
{
	static const uint8_t zero[WGGWD_KEY_LEN];
	struct wge_acc a = { 0 };
	uint32_t i;

	wge_acc_psk(&e->env, &a, p->has & WGGWD_PEER_HAS_PRESHARED_KEY ? p->preshared_key : zero);
	if (p->has & WGGWD_PEER_HAS_ALLOWED_IPS)
		for (i = 0; i < p->n_allowed; i++)
			wge_acc_ip(&e->env, &a, &p->allowed[i]);
	acc_final(e, &a, keepalive, out);
	acc_ips(e, &a, ips);
}

void wge_found(const struct wge_env *env, const struct wggwd_peer_state *ps,
	       const struct wge_acc *a)
{
	struct wge *e = ENG(env);
	struct peer *p = wgt_put(&e->peers, ps->public_key, NULL);

	if (a->outside && !e->found_outside++)
		memcpy(e->outside_key, ps->public_key, WGGWD_KEY_LEN);
	if (!p)
		return; /* installed again when asked */
	acc_final(e, a, ps->keepalive, p->cfg);
	acc_ips(e, a, p->ips);
	p->n_allowed = a->nips;
	wge_seen(p, ps);
	p->ep = ps->endpoint;
	p->keepalive = p->ka_sent = ps->keepalive;
	wge_count_peers(e);
}

/* --------------------------------------------------------------- ops */

struct wge_op *wge_op_new(size_t n, int what)
{
	size_t off = sizeof(struct wge_op) + n * sizeof(struct wge_ent);
	struct wge_op *op;

	off = (off + 15) & ~(size_t)15;
	op = calloc(1, off + sizeof(struct wge_op_priv));
	if (!op)
		return NULL;
	op->n = n;
	op->priv = (struct wge_op_priv *)((char *)op + off);
	op->priv->what = what;
	return op;
}

void wge_op_free(struct wge_op *op)
{
	wge_peer_free(op->priv->own);
	free(op);
}

void wge_op_what(const struct wge_op *op, char *buf, size_t len)
{
	char k[WG_KEY_B64_LEN];

	switch (op->priv->what) {
	case K_ITEM: /* an afresh install: its removal, then the install */
		snprintf(buf, len, "%s of peer %s",
			 op->ent[op->n - 1].kind == WGE_REMOVE ? "removal" :
			 op->n > 1 ? "afresh install" : "install", b64(k, op->ent[0].key));
		break;
	case K_RESTORE:
		snprintf(buf, len, "keepalive restore of %zu peers", op->n);
		break;
	default:
		snprintf(buf, len, "re-install of peer %s after a collision", b64(k, op->ent[0].key));
	}
}

static void item_done(struct wge *e, struct wge_op *op)
{
	struct wge_op_priv *pv = op->priv;
	struct wggwd_item *it = pv->item;
	const struct wge_ent *en = &op->ent[op->n - 1]; /* afresh: the removal first */
	char k[WG_KEY_B64_LEN], ep[64];
	struct peer *p;
	bool created;

	if (op->err) {
		if (op->err != -ECANCELED)
			(*(en->kind == WGE_REMOVE ? e->remove_failed : e->install_failed))++;
		wgt_del(&e->peers, en->key); /* what is there is unknown now */
		wge_count_peers(e);
		it->reason = op->err == -ECANCELED ? WGGWD_R_SHUTDOWN :
			     en->kind == WGE_REMOVE ? WGGWD_R_REMOVE_FAILED : WGGWD_R_INSTALL_FAILED;
		e->env.host->complete(e->env.self, it, WGGWD_ERROR);
		return;
	}
	if (en->kind == WGE_REMOVE) {
		(*e->removed)++;
		if (it->peer->has & WGGWD_PEER_HAS_ENDPOINT)
			wg_sockaddr_str(&it->peer->endpoint, ep, sizeof(ep));
		e->env.host->log(e->env.self, WGGWD_LOG_DEBUG,
				 "removed peer %s: endpoint %s, last handshake %lld s ago",
				 b64(k, en->key),
				 it->peer->has & WGGWD_PEER_HAS_ENDPOINT ? ep : "unknown",
				 it->peer->has & WGGWD_PEER_HAS_HANDSHAKE ?
				 (long long)(e->env.host->realtime_ns() / NS) - it->peer->last_handshake_sec : -1LL);
		e->env.host->complete(e->env.self, it, WGGWD_CONTINUE);
		return;
	}
	p = wgt_put(&e->peers, en->key, &created);
	(*(created || !p ? e->installed : e->updated))++;
	if (p) {
		memcpy(p->cfg, pv->cfg, CFG_LEN);
		if (pv->ep.sa.sa_family != AF_UNSPEC)
			p->ep = pv->ep;
		p->keepalive = pv->ka_conf;
		p->ka_sent = en->keepalive;
		p->origin = pv->origin;
		p->gen = e->sets_done;
		p->installed_ns = e->env.host->now_ns();
		p->restoring = p->stale = false;
		if (en->keep_ips && memcmp(p->ips, pv->ips, IPS_LEN)) {
			/* another install for the key (another pipeline) changed
			 * them since: what the interface holds is not known, so
			 * the next install replaces them */
			memset(p->cfg, 0, CFG_LEN);
			memset(p->ips, 0, IPS_LEN);
		} else if (en->peer->has & WGGWD_PEER_HAS_ALLOWED_IPS) {
			p->n_allowed = en->peer->n_allowed;
			memcpy(p->ips, pv->ips, IPS_LEN);
		}
		wge_lease_set(e, p, pv->lease, pv->expires_at);
		wge_take_retry(e, p, true);
		if (pv->own) {
			p->retry = pv->own;
			pv->own = NULL;
			e->nretry++;
		}
		set_awaiting(e, p, en->keepalive != pv->ka_conf);
		p->fresh = pv->invert && (created || pv->afresh);
		if (p->awaiting) {
			p->await_ns = p->installed_ns;
			p->since_real_ns = pv->since_real_ns;
			wge_arm_poll(e);
		}
		wge_count_peers(e);
	} else {
		e->env.host->log(e->env.self, WGGWD_LOG_WARN,
				 "out of memory: peer %s is installed but not tracked (its keepalive stays %u)",
				 b64(k, en->key), en->keepalive);
	}
	if (pv->invert)
		(*e->inverted)++;
	if (pv->reinject) {
		(*e->reinjected)++;
		it->flags |= WGGWD_ITEM_REINJECT;
	}
	wg_sockaddr_str(&en->ep, ep, sizeof(ep));
	e->env.host->log(e->env.self, WGGWD_LOG_DEBUG, "installed peer %s: endpoint %s, keepalive %u%s%s",
			 b64(k, en->key), ep, en->keepalive,
			 en->keepalive != pv->ka_conf ? " until the handshake" : "",
			 pv->reinject ? ", re-inject asked" : "");
	e->env.host->complete(e->env.self, it, WGGWD_CONTINUE);
}

static void restore_done(struct wge *e, struct wge_op *op)
{
	size_t i;

	for (i = 0; i < op->n; i++) {
		struct peer *p = wgt_get(&e->peers, op->ent[i].key);

		if (!op->err)
			(*e->restored)++;
		if (!p || p->gen != op->ent[i].tag)
			continue; /* re-installed meanwhile: its own restore follows */
		p->restoring = false;
		if (!op->err)
			set_awaiting(e, p, false);
	}
}

static void finish_close(struct wge *e)
{
	e->env.host->timer_free(e->poll);
	e->poll = NULL;
	e->env.host->timer_free(e->lease_timer);
	e->lease_timer = NULL;
	wge_dump_fini(e);
	e->be->close(e->b);
}

void wge_op_done(const struct wge_env *env, struct wge_op *op)
{
	struct wge *e = ENG(env);
	bool final = op->priv->final;

	e->sets_done++;
	if (op->priv->what == K_ITEM) {
		item_done(e, op);
	} else if (op->priv->what == K_RESTORE) {
		restore_done(e, op);
	} else if (op->err) { /* K_RETRY: removed, maybe not added again */
		wgt_del(&e->peers, op->ent[0].key);
		wge_count_peers(e);
	}
	wge_op_free(op);
	if (final)
		finish_close(e);
	else
		wge_set_done(e);
}

/* An empty keepalive restore with room for cap peers; NULL if none. */
struct wge_op *wge_restore_op(size_t cap)
{
	struct wge_op *op = cap ? wge_op_new(cap, K_RESTORE) : NULL;

	if (op)
		op->n = 0;
	return op;
}

void wge_restore_add(struct wge_op *op, struct peer *p)
{
	struct wge_ent *en = &op->ent[op->n++];

	en->kind = WGE_KEEPALIVE;
	memcpy(en->key, p->h.key, WGGWD_KEY_LEN);
	en->keepalive = p->keepalive;
	en->tag = p->gen;
	p->restoring = true;
}

void wge_send_op(struct wge *e, struct wge_op *op)
{
	if (!op->n) {
		wge_op_free(op);
		return;
	}
	wge_set(e, op);
}

void wge_closed(const struct wge_env *env)
{
	env->host->stopped(env->self);
}

/* ---------------------------------------------------------- plugin ops */

/* The counters every installer has ("<stage>.<name>"). */
static const struct {
	const char *name;
	size_t off;
} counters[] = {
	{ "installed", offsetof(struct wge, installed) },   /* a peer it did not have */
	{ "updated", offsetof(struct wge, updated) },       /* a peer it had, changed */
	{ "unchanged", offsetof(struct wge, unchanged) },   /* nothing to change: no I/O */
	{ "removed", offsetof(struct wge, removed) },
	{ "install_failed", offsetof(struct wge, install_failed) },
	{ "remove_failed", offsetof(struct wge, remove_failed) },
	{ "inverted", offsetof(struct wge, inverted) },     /* completion inversion */
	{ "reinjected", offsetof(struct wge, reinjected) }, /* completion reinject */
	{ "keepalive_restored", offsetof(struct wge, restored) },
	{ "restore_timeouts", offsetof(struct wge, restore_timeouts) },
	{ "stall_retries", offsetof(struct wge, stall_retries) },
	{ "rearmed", offsetof(struct wge, rearmed) }, /* inversion armed again under load */
	/* removed and added again: the interface answered the client with a
	 * cookie (WGGWD_ITEM_REFUSED) */
	{ "refused_afresh", offsetof(struct wge, refused_afresh) },
	/* an update that left the allowed IPs in place (the same ones) */
	{ "ips_kept", offsetof(struct wge, ips_kept) },
	{ "dumps", offsetof(struct wge, dumps) },
	{ "dumps_deferred", offsetof(struct wge, dumps_deferred) }, /* behind installs */
	{ "policy_refused", offsetof(struct wge, policy_refused) }, /* allowed_prefixes */
	{ "expired", offsetof(struct wge, expired) },       /* removed: its lease ended */
	{ "expired_refused", offsetof(struct wge, expired_refused) }, /* a lease over already */
};

/* ------------------------------------------------------------ policy */

const char *wge_validate(const void *conf, const char **option, char *buf, size_t len)
{
	const char *why = wg_policy_check(&((const struct wge_conf *)conf)->allowed_prefixes,
					  false, buf, len);

	if (why)
		*option = "allowed_prefixes";
	return why;
}

/* Unset: no policy, as [any] (see the option's help). */
static int policy_load(struct wge *e)
{
	const struct wggwd_list *l = &e->env.conf->allowed_prefixes;
	int ret;

	if (!l->n)
		return 0;
	ret = wg_policy_load(&e->pol, l);
	e->policy = !ret && !e->pol.any;
	return ret;
}

/* What brought an item, for the log. */
static const char *item_origin(const struct wggwd_item *it)
{
	if (it->flags & WGGWD_ITEM_INJECTED)
		return "re-installed by a stage";
	if (it->flags & WGGWD_ITEM_CACHED)
		return "a store's cached answer";
	if (it->transport == WGGWD_TR_PUSH)
		return "pushed";
	return "resolved";
}

/*
 * The policy, at install time, whatever brought the peer: none of its
 * allowed IPs outside allowed_prefixes reaches the interface. A peer of
 * ours that was asked to take such a configuration is removed (through
 * the pipeline, so that the store and the evictor see it): what is on the
 * interface for it can no longer be vouched for (a narrowed policy, a
 * store's database from elsewhere).
 */
static bool policy_ok(struct wge *e, struct wggwd_item *it, const uint8_t *key)
{
	const struct wggwd_peer *pe = it->peer;
	char k[WG_KEY_B64_LEN], ip[64];
	bool there;
	long out;

	if (!e->policy || !(pe->has & WGGWD_PEER_HAS_ALLOWED_IPS))
		return true;
	out = wg_policy_peer_outside(&e->pol, pe);
	if (out < 0)
		return true;
	(*e->policy_refused)++;
	/* shadow mode: what is there stays there */
	there = !e->env.conf->shadow && wgt_get(&e->peers, key) != NULL;
	wg_allowed_ip_str(&pe->allowed[out], ip, sizeof(ip));
	e->env.host->log_limited(e->env.self, WGGWD_LOG_WARN,
				 "peer %s (%s): allowed IP %s is outside allowed_prefixes: not installed%s",
				 b64(k, key), item_origin(it), ip,
				 there ? "; removing it from the interface" : "");
	it->reason = WGGWD_R_POLICY;
	it->detail = "an allowed IP outside the installer's allowed_prefixes";
	if (there)
		e->env.host->retire(e->env.self, key, WGGWD_R_POLICY);
	return false;
}

/* -------------------------------------------------------------- ops */

static void shadow_metrics(struct wge *e);

int wge_create(const struct wggwd_host *host, struct wggwd_inst *self, const void *conf,
	       const struct wge_backend *be, void **ctx)
{
	struct wge *e = calloc(1, sizeof(*e));
	size_t i;
	int ret;

	if (!e)
		return -ENOMEM;
	e->env.host = host;
	e->env.self = self;
	e->env.conf = conf;
	e->be = be;
	randombytes_buf(e->hkey, sizeof(e->hkey));
	ret = wgt_init(&e->peers, host, sizeof(struct peer));
	if (!ret)
		ret = be->create(&e->env, conf, &e->b);
	if (ret) {
		wgt_free(&e->peers);
		free(e);
		return ret;
	}
	e->peers.fini = peer_fini;
	e->peers.arg = e;
	ret = policy_load(e);
	if (ret) {
		wge_destroy(e);
		return ret;
	}
	for (i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
		*(uint64_t **)((char *)e + counters[i].off) = host->counter(self, counters[i].name);
	e->g_peers = host->gauge(self, "peers");
	e->g_awaiting = host->gauge(self, "awaiting_handshake");
	e->g_leases = host->gauge(self, "leases");
	wge_dump_init(e);
	if (((const struct wge_conf *)conf)->shadow)
		shadow_metrics(e);
	*ctx = e;
	return 0;
}

/*
 * Shadow mode: the interface keeps the peers it was given (installed
 * ahead of time); what JIT would have done with each item is decided,
 * counted by decision and said in item->detail (`wggwd ctl why`), and the
 * item stops here with DONE.
 */
enum { SH_INSTALL, SH_PRESENT, SH_REMOVE };

static void shadow_metrics(struct wge *e)
{
	static const char *const labels[] = { "decision", NULL };
	static const char *const decisions[] = { "install", "present", "remove" };
	const struct wggwd_host *host = e->env.host;
	struct wggwd_metric_desc d = {
		.size = sizeof(d),
		.type = WGGWD_METRIC_COUNTER,
		.name = "shadow_decisions_total",
		.help = "Shadow mode: what the installer would have done (install: a knock JIT would let in, not on the interface; present: one on it already; remove)",
		.labels = labels,
	};
	struct wggwd_metric *m;
	static uint64_t sink;
	size_t i;

	m = WGGWD_HAS(host, struct wggwd_host, metric_cell) ? host->metric(e->env.self, &d) : NULL;
	for (i = 0; i < 3; i++) {
		const char *v[] = { decisions[i] };

		e->shadow[i] = m ? host->metric_cell(m, v) : NULL;
		if (!e->shadow[i])
			e->shadow[i] = &sink;
	}
}

static int shadow_decide(struct wge *e, struct wggwd_item *it, const uint8_t *key)
{
	bool there = wgt_get(&e->peers, key) != NULL;

	if (it->op == WGGWD_OP_REMOVE) {
		(*e->shadow[SH_REMOVE])++;
		it->detail = there ? "shadow: would remove" : "shadow: would remove (not on the interface)";
	} else if (there) {
		(*e->shadow[SH_PRESENT])++;
		it->detail = "shadow: would install (on the interface already)";
	} else {
		(*e->shadow[SH_INSTALL])++;
		it->detail = "shadow: would install (not on the interface)";
	}
	return WGGWD_DONE;
}

const char *wge_link(void *ctx, const void *conf, const struct wggwd_link *l,
		     const char **option, char *buf, size_t len)
{
	const struct wge_conf *cf = conf;
	struct wge *e = ctx;

	/* unset (not [any]) where a store or a push source feeds us: their
	 * peers pass no resolver's policy; say so once */
	if (e && !cf->allowed_prefixes.n && !e->policy_warned &&
	    ((l->kinds_before & (1u << WGGWD_STORE)) || (l->source_out & WGGWD_MSG_PEER))) {
		e->policy_warned = true;
		e->env.host->log(e->env.self, WGGWD_LOG_WARN,
				 "allowed_prefixes is not set: the peers a store keeps or re-installs, and pushed peers (pipeline %s), are installed with whatever allowed IPs they carry, which no resolver's allowed_prefixes checks; set it to the prefixes clients may have, or to [any] to install them as given",
				 l->pipeline ? l->pipeline : "?");
	}
	if (cf->completion != WGE_REINJECT || !WGGWD_HAS(l, struct wggwd_link, source_flags) ||
	    !(l->source_out & (WGGWD_MSG_PKT | WGGWD_MSG_PEER_KEY)) ||
	    (l->source_flags & WGGWD_F_RESENDS))
		return NULL;
	*option = "completion";
	snprintf(buf, len, "reinject needs a source that re-sends the captured initiation (such as source-bpf), and this pipeline's cannot: use completion: inversion or none");
	return buf;
}

int wge_start(void *ctx)
{
	struct wge *e = ctx;
	const struct wge_conf *cf = e->env.conf;
	char pub[WG_KEY_B64_LEN];
	size_t npeers = 0;
	int ret;

	memset(&e->dev, 0, sizeof(e->dev));
	e->dev.size = sizeof(e->dev);
	snprintf(e->dev.ifname, sizeof(e->dev.ifname), "%s", cf->interface);
	ret = e->be->start(e->b, &e->dev, &npeers);
	if (ret) {
		sodium_memzero(&e->dev, sizeof(e->dev));
		return ret;
	}
	if (e->dev.has_private_key && wg_key_is_zero(e->dev.public_key))
		crypto_scalarmult_base(e->dev.public_key, e->dev.private_key);
	if (e->dev.has_private_key)
		e->env.host->log(e->env.self, WGGWD_LOG_INFO,
				 "%s: public key %s, listen port %u, %zu peers; %s%s",
				 cf->interface, b64(pub, e->dev.public_key), e->dev.listen_port, npeers,
				 cf->shadow ? "SHADOW MODE: the interface is not changed; " : "completion ",
				 cf->shadow ? "decisions are only reported" : wge_completions[cf->completion]);
	else
		e->env.host->log(e->env.self, WGGWD_LOG_WARN,
				 "%s has no private key yet (listen port %u, %zu peers)",
				 cf->interface, e->dev.listen_port, npeers);
	/* not ours to remove (they may be made by hand): an item that names
	 * one with such a config is refused, and the peer then removed */
	if (e->found_outside)
		e->env.host->log(e->env.self, WGGWD_LOG_WARN,
				 "%zu peers on %s have allowed IPs outside allowed_prefixes (the first: %s); they stay until an item names them or an evictor removes them",
				 e->found_outside, cf->interface, b64(pub, e->outside_key));
	e->have_dev = true;
	e->poll = e->env.host->timer_new(e->env.self, wge_on_poll, e);
	e->lease_timer = e->env.host->timer_new(e->env.self, wge_on_lease, e);
	e->running = true;
	return 0;
}

static uint8_t origin_of(const struct wggwd_item *it)
{
	if (it->transport == WGGWD_TR_PUSH)
		return WGGWD_ORIGIN_PUSH;
	return it->peer->origin ? it->peer->origin : WGGWD_ORIGIN_PULL;
}

static int no_memory(struct wge *e, struct wggwd_item *it)
{
	(*e->install_failed)++;
	it->reason = WGGWD_R_NO_MEMORY;
	return WGGWD_ERROR;
}

/* What the last dump said of a peer that goes (its endpoint, its last
 * handshake), for the stages told of the removal: was its session live? */
static void fill_removed(struct wggwd_peer *pe, const struct peer *p)
{
	const union wggwd_sockaddr *ep = p->seen && p->seen_ep.sa.sa_family ? &p->seen_ep : &p->ep;

	if (ep->sa.sa_family == AF_INET || ep->sa.sa_family == AF_INET6) {
		pe->endpoint = *ep;
		pe->has |= WGGWD_PEER_HAS_ENDPOINT;
	}
	if (p->seen && p->hs_sec) {
		pe->last_handshake_sec = p->hs_sec;
		pe->has |= WGGWD_PEER_HAS_HANDSHAKE;
	}
	if (!pe->origin)
		pe->origin = p->origin;
}

static int remove_item(struct wge *e, struct wggwd_item *it, const uint8_t *key)
{
	struct wge_op *op = wge_op_new(1, K_ITEM);
	struct peer *p;

	if (!op)
		return no_memory(e, it);
	p = wgt_get(&e->peers, key);
	if (p)
		fill_removed(it->peer, p);
	op->priv->item = it;
	op->ent[0].kind = WGE_REMOVE;
	memcpy(op->ent[0].key, key, WGGWD_KEY_LEN);
	wgt_del(&e->peers, key); /* an install after this queues after it */
	wge_count_peers(e);
	wge_set(e, op);
	return WGGWD_PENDING;
}

/* An answer whose lease has ended already: not installed, and taken off
 * the interface if it is there (reason expired). */
static int lease_refused(struct wge *e, struct wggwd_item *it, const uint8_t *key)
{
	bool there = !e->env.conf->shadow && wgt_get(&e->peers, key) != NULL;
	char k[WG_KEY_B64_LEN];

	(*e->expired_refused)++;
	e->env.host->log_limited(e->env.self, WGGWD_LOG_INFO,
				 "peer %s (%s): its lease ended at %lld: not installed%s",
				 b64(k, key), item_origin(it), (long long)it->peer->expires_at,
				 there ? "; removing it from the interface" : "");
	it->reason = WGGWD_R_EXPIRED;
	it->detail = "its lease has ended";
	if (there) {
		(*e->expired)++;
		e->env.host->retire(e->env.self, key, WGGWD_R_EXPIRED);
	}
	return WGGWD_DROP;
}

/*
 * An initiation with WGGWD_ITEM_INVERT (the source saw the interface under
 * load) for a peer that is installed already (pushed, installed ahead of
 * time, or pulled before, its client restarted): the interface may answer
 * the client with a cookie, and the client wait 5 s. So inversion is armed
 * again: the keepalive through 0 makes the interface initiate if the peer
 * has no session (a pushed peer never used); if it has one it only sends
 * a keepalive on it, and when no handshake follows within stall_retry the
 * collision retry installs the peer afresh, which initiates (sooner: the
 * source's cookie watch, WGGWD_ITEM_REFUSED below). If the
 * interface did answer the client (it was not under load after all), the
 * handshake is there by then and nothing is cut. Not while a completion of
 * ours is under way.
 */
static bool rearm_inversion(const struct wggwd_item *it, const struct peer *p)
{
	return (it->flags & WGGWD_ITEM_INVERT) && !(it->flags & WGGWD_ITEM_REVALIDATE) &&
	       !p->stale && !p->awaiting && !p->restoring;
}

/*
 * WGGWD_ITEM_REFUSED: the interface answered this client with a cookie
 * (it is under load) at it->rx_realtime_ns, so the client waits 5 s, but
 * holds a cookie now and will answer an initiation with a valid mac2. The
 * peer is installed afresh in one request: removed (a stale session, a
 * pending handshake, the interface's rate limit go with it) and added
 * with the endpoint and the inversion keepalive, so that the interface
 * initiates at once; the collision retry stays. Not a peer that an
 * inverted install added anew after that cookie and that is still
 * waiting: the interface is initiating to a client that holds the cookie
 * (a cookie after the install answered the client's response, sent
 * without one: afresh). A peer we do not have is installed by inversion.
 */
static bool refused_afresh(const struct wggwd_item *it, const struct peer *p)
{
	return (it->flags & WGGWD_ITEM_REFUSED) && p &&
	       (p->stale || !p->awaiting || !p->fresh || p->restoring ||
		it->rx_realtime_ns >= p->since_real_ns);
}

int wge_process(void *ctx, struct wggwd_item *it)
{
	struct wge *e = ctx;
	const struct wge_conf *cf = e->env.conf;
	const struct wggwd_peer *pe = it->peer;
	const uint8_t *key = pe->has & WGGWD_PEER_HAS_PUBLIC_KEY ? pe->public_key : it->public_key;
	union wggwd_sockaddr ep = { 0 };
	bool knock = false, invert, rearm, afresh;
	struct wge_op_priv *pv;
	struct wge_ent *en;
	struct wge_op *op;
	struct peer *p;

	if (!e->running || e->stopping) {
		it->reason = WGGWD_R_INSTALLER_NOT_READY;
		return WGGWD_ERROR;
	}
	if (wg_key_is_zero(key)) {
		(*e->install_failed)++;
		it->reason = WGGWD_R_NO_PUBLIC_KEY;
		return WGGWD_ERROR;
	}
	if (it->op == WGGWD_OP_REMOVE)
		return cf->shadow ? shadow_decide(e, it, key) : remove_item(e, it, key);
	if (!policy_ok(e, it, key))
		return WGGWD_DROP;
	if ((pe->has & WGGWD_PEER_HAS_EXPIRES) && wge_lease_over(e, pe->expires_at))
		return lease_refused(e, it, key);
	if (cf->shadow)
		return shadow_decide(e, it, key);
	/* the endpoint: where the knock came from, else the configured one */
	if (it->transport != WGGWD_TR_PUSH &&
	    (it->endpoint.sa.sa_family == AF_INET || it->endpoint.sa.sa_family == AF_INET6)) {
		ep = it->endpoint;
		knock = true;
	} else if (pe->has & WGGWD_PEER_HAS_ENDPOINT &&
		   (pe->endpoint.sa.sa_family == AF_INET || pe->endpoint.sa.sa_family == AF_INET6)) {
		ep = pe->endpoint;
	}
	/* room for a removal first (WGGWD_ITEM_REFUSED) */
	op = wge_op_new(knock && (it->flags & WGGWD_ITEM_REFUSED) ? 2 : 1, K_ITEM);
	if (!op)
		return no_memory(e, it);
	pv = op->priv;
	pv->item = it;
	pv->ep = ep;
	pv->ka_conf = pe->has & WGGWD_PEER_HAS_KEEPALIVE ? pe->keepalive : 0;
	pv->lease = pe->has & WGGWD_PEER_HAS_EXPIRES;
	pv->expires_at = pe->expires_at;
	cfg_digest(e, pe, pv->ka_conf, pv->cfg, pv->ips);
	p = wgt_get(&e->peers, key);
	afresh = knock && refused_afresh(it, p);
	rearm = p && knock && !afresh && rearm_inversion(it, p);
	if (p && !p->stale && !rearm && !afresh && !memcmp(p->cfg, pv->cfg, CFG_LEN) &&
	    (ep.sa.sa_family == AF_UNSPEC || wg_sockaddr_equal(&p->ep, &ep))) {
		if (!p->origin) /* found at start: an item names it now */
			p->origin = origin_of(it);
		/* a lease is no configuration: renewed without a set */
		wge_lease_set(e, p, pv->lease, pv->expires_at);
		wge_op_free(op);
		(*e->unchanged)++;
		it->flags |= WGGWD_ITEM_UNCHANGED;
		return WGGWD_CONTINUE;
	}
	if (rearm)
		(*e->rearmed)++;
	op->n = afresh ? 2 : 1;
	if (afresh) {
		op->ent[0].kind = WGE_REMOVE;
		memcpy(op->ent[0].key, key, WGGWD_KEY_LEN);
		pv->afresh = true;
		(*e->refused_afresh)++;
	}
	en = &op->ent[op->n - 1];
	en->kind = WGE_INSTALL;
	memcpy(en->key, key, WGGWD_KEY_LEN);
	en->peer = pe;
	en->ep = ep;
	en->keepalive = pv->ka_conf;
	/* a live session's packets keep flowing: a knock of a peer already
	 * there (pushed, or roaming), a renewal */
	en->keep_ips = p && !p->stale && !afresh && (pe->has & WGGWD_PEER_HAS_ALLOWED_IPS) &&
		       !memcmp(p->ips, pv->ips, IPS_LEN);
	if (en->keep_ips)
		(*e->ips_kept)++;
	/* no initiation to re-send (a returning client's data packet, a
	 * revalidation), or one the interface under load would answer with a
	 * cookie: a peer not on the interface is completed by role inversion
	 * whatever `completion` says; one that is (its session may be live)
	 * is only updated, unless a knock under load re-arms it (rearm) or
	 * the interface answered it with a cookie (afresh) */
	if (it->flags & WGGWD_ITEM_INVERT) {
		invert = ep.sa.sa_family != AF_UNSPEC && (!p || p->stale || rearm || afresh);
		knock = false; /* nothing to re-send; the endpoint stays */
	} else {
		invert = knock && cf->completion == WGE_INVERSION;
	}
	if (invert) {
		en->keepalive = pv->ka_conf ? pv->ka_conf : (uint16_t)cf->inversion_keepalive;
		en->zero_first = true;
		pv->invert = true;
		if (cf->stall_retry_ms)
			pv->own = peer_copy(pe); /* best effort: no retry if short of memory */
	} else if (knock && cf->completion == WGE_REINJECT) {
		/* a keepalive now would make the interface initiate too,
		 * and collide with the re-injected initiation */
		en->keepalive = 0;
		pv->reinject = true;
	} else if (knock) {
		en->ep.sa.sa_family = AF_UNSPEC;
	}
	pv->origin = origin_of(it);
	pv->since_real_ns = e->env.host->realtime_ns();
	wge_set(e, op);
	return WGGWD_PENDING;
}

static bool pick_awaiting(void *arg, struct wgt_ent *h)
{
	struct wge_op *op = arg;
	struct peer *p = (struct peer *)h;

	if (p->awaiting && op->n < op->sent)
		wge_restore_add(op, p);
	return false;
}

void wge_stop(void *ctx)
{
	struct wge *e = ctx;
	struct waiter *w;
	struct wge_op *op;

	e->stopping = true;
	if (!e->running) {
		e->env.host->stopped(e->env.self);
		return;
	}
	e->env.host->timer_stop(e->poll);
	e->env.host->timer_stop(e->lease_timer);
	wge_judge_cancel(e);
	while ((w = e->cur ? e->cur : e->wait)) {
		if (w == e->cur)
			e->cur = w->next;
		else
			e->wait = w->next;
		w->cb(w->arg, -ECANCELED, NULL, 0, sizeof(struct wggwd_peer_state));
		free(w);
	}
	e->be->cancel(e->b);
	/* peers still waiting for their handshake would initiate forever
	 * with the inversion keepalive: put theirs back before leaving */
	op = wge_restore_op(e->nawaiting);
	if (!op) {
		finish_close(e);
		return;
	}
	op->sent = e->nawaiting; /* the capacity, while picking */
	wgt_sweep(&e->peers, pick_awaiting, op);
	op->sent = 0;
	if (!op->n) {
		wge_op_free(op);
		finish_close(e);
		return;
	}
	op->priv->final = true;
	e->env.host->log(e->env.self, WGGWD_LOG_INFO,
			 "stopping: putting back the keepalive of %zu peers still waiting for a handshake",
			 op->n);
	wge_set(e, op); /* finish_close() follows its answer */
}

void wge_destroy(void *ctx)
{
	struct wge *e = ctx;

	e->be->destroy(e->b);
	wgt_free(&e->peers);
	free(e->leases);
	wg_policy_free(&e->pol);
	sodium_memzero(e, sizeof(*e)); /* the private key, the digest key */
	free(e);
}

int wge_device(void *ctx, struct wggwd_device *dev)
{
	struct wge *e = ctx;
	uint32_t size = dev->size ? dev->size : sizeof(*dev);

	if (size > sizeof(*dev))
		size = sizeof(*dev);
	if (!e->have_dev) {
		memset(dev, 0, size);
		dev->size = size;
		return -ENODATA;
	}
	memcpy(dev, &e->dev, size);
	dev->size = size;
	return 0;
}

int wge_peer(void *ctx, const uint8_t key[WGGWD_KEY_LEN], struct wggwd_peer_state *ps)
{
	struct wge *e = ctx;
	const struct peer *p = wgt_get(&e->peers, key);
	struct wggwd_peer_state s = { .size = sizeof(s) };
	uint32_t size = ps->size && ps->size < sizeof(s) ? ps->size : sizeof(s);

	if (!p)
		return -ENOENT;
	s.origin = p->origin;
	memcpy(s.public_key, key, WGGWD_KEY_LEN);
	s.endpoint = p->seen && p->seen_ep.sa.sa_family ? p->seen_ep : p->ep;
	s.last_handshake_sec = p->hs_sec;
	s.last_handshake_nsec = p->hs_nsec;
	s.keepalive = p->awaiting ? p->ka_sent : p->keepalive;
	s.rx_bytes = p->rx_bytes;
	s.tx_bytes = p->tx_bytes;
	s.installed_ns = p->installed_ns;
	s.n_allowed = p->n_allowed;
	memcpy(ps, &s, size);
	ps->size = size;
	return 0;
}
