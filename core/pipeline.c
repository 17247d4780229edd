// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * Items walking pipelines: each step's verdict, the ends of an item (its
 * done calls, counts, revocations), injection, retirement and slots.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core.h"
#include "metrics.h"

#include "runtime.h"

static unsigned key_bucket(const uint8_t *key)
{
	/* keyed: a sender chooses its keys and could pile them up */
	return core_hash(key, WGGWD_KEY_LEN) % INFLIGHT_BUCKETS;
}

static void inflight_del(struct pipeline *pl, struct core_item *ci)
{
	struct core_item **pp;

	for (pp = &pl->inflight[key_bucket(ci->pub.public_key)]; *pp;
	     pp = &(*pp)->next_inflight) {
		if (*pp == ci) {
			*pp = ci->next_inflight;
			(*pl->g_inflight)--;
			return;
		}
	}
}

/* One lookup and one install per key at a time: a repeat while the first
 * is still on its way adds nothing. Returns true if ci was a duplicate. */
static bool inflight_add(struct pipeline *pl, struct core_item *ci)
{
	struct core_item **head = &pl->inflight[key_bucket(ci->pub.public_key)], *o;

	for (o = *head; o; o = o->next_inflight)
		if (!memcmp(o->pub.public_key, ci->pub.public_key, WGGWD_KEY_LEN))
			return true;
	ci->next_inflight = *head;
	*head = ci;
	ci->in_inflight = true;
	(*pl->g_inflight)++;
	return false;
}

static void run(struct core_item *ci);
static void retire_in(struct pipeline *pl, const uint8_t *key, uint32_t reason,
		      ctl_item_cb cb, void *arg);

/* Tell every stage the item reached that has a done op (once, though a
 * store may have two steps), the stage that injected it if the item did
 * not reach it, then the source if it emitted the item. */
static void notify_done(struct core_item *ci, int verdict)
{
	struct pipeline *pl = ci->pl;
	struct wggwd_inst *inj = ci->injector;
	unsigned i, k;

	for (i = 0; inj && i < pl->n; i++)
		if ((ci->visited & (1ull << i)) && pl->steps[i].in == inj)
			inj = NULL; /* told below, in its turn */
	if (inj && inj != pl->source && inj->ops->done)
		inj->ops->done(inj->ctx, &ci->pub, verdict);
	for (i = 0; i < pl->n; i++) {
		struct wggwd_inst *in = pl->steps[i].in;

		if (!(ci->visited & (1ull << i)) || !in->ops->done)
			continue;
		for (k = 0; k < i; k++)
			if ((ci->visited & (1ull << k)) && pl->steps[k].in == in)
				break;
		if (k == i)
			in->ops->done(in->ctx, &ci->pub, verdict);
	}
	if (!(ci->pub.flags & WGGWD_ITEM_INJECTED) && !ci->source_told && pl->source->ops->done)
		pl->source->ops->done(pl->source->ctx, &ci->pub, verdict);
}

/* The pipeline's installer step, or -1. */
static int installer_step(const struct pipeline *pl)
{
	unsigned i;

	for (i = 0; i < pl->n; i++)
		if (pl->steps[i].in->p->desc.kind == WGGWD_INSTALLER)
			return i;
	return -1;
}

/*
 * The control plane said no to a key (unknown, or an answer the policy
 * refuses) before the installer: if that key is installed, pulled, it
 * must go (a revoked key loses its tunnel). Pushed peers and peers made by
 * hand are not the resolver's to remove.
 */
static void revoke_if_installed(struct core_item *ci)
{
	struct pipeline *pl = ci->pl;
	struct wggwd_item *it = &ci->pub;
	struct wggwd_peer_state ps = { .size = sizeof(ps) };
	int k = installer_step(pl);
	struct wggwd_inst *ins;

	if (k < 0 || (ci->visited & (1ull << k)))
		return; /* the installer decided itself */
	if (!(it->flags & WGGWD_ITEM_NOT_FOUND) && it->reason != WGGWD_R_UNKNOWN_KEY &&
	    it->reason != WGGWD_R_UNKNOWN_CACHED && it->reason != WGGWD_R_POLICY)
		return;
	ins = pl->steps[k].in;
	if (!ins->ops->peer || ins->ops->peer(ins->ctx, it->public_key, &ps))
		return;
	if (ps.origin != WGGWD_ORIGIN_PULL && ps.origin != WGGWD_ORIGIN_STATIC)
		return;
	retire_in(pl, it->public_key, WGGWD_R_REVOKED, NULL, NULL);
}

/* A peer left the interface: every stage of the pipeline that asks. */
static void notify_removed(struct core_item *ci)
{
	struct pipeline *pl = ci->pl;
	int k = installer_step(pl);
	unsigned i;

	if (k < 0 || !(ci->visited & (1ull << k)))
		return;
	if (pl->source->ops->removed)
		pl->source->ops->removed(pl->source->ctx, &ci->pub);
	for (i = 0; i < pl->n; i++) {
		struct wggwd_inst *in = pl->steps[i].in;
		unsigned j;

		if (!in->ops->removed)
			continue;
		for (j = 0; j < i && pl->steps[j].in != in; j++)
			;
		if (j == i)
			in->ops->removed(in->ctx, &ci->pub);
	}
}

/* The core's latency histograms, from the item's time points. */
static void observe_marks(struct pipeline *pl, const struct wggwd_item *it, int verdict)
{
	static const int marks[] = { WGGWD_T_DECODED, WGGWD_T_RESOLVED, WGGWD_T_INSTALLED };
	size_t i;

	if (it->op != WGGWD_OP_ADD || (it->flags & WGGWD_ITEM_INJECTED) || !it->t[WGGWD_T_RX])
		return;
	for (i = 0; i < ARRAY_SIZE(marks); i++) {
		/* installs: the ones that changed the interface */
		if (marks[i] == WGGWD_T_INSTALLED &&
		    (verdict != WGGWD_CONTINUE || (it->flags & WGGWD_ITEM_UNCHANGED)))
			continue;
		if (it->t[marks[i]] >= it->t[WGGWD_T_RX] && it->t[marks[i]])
			metrics_observe(pl->h_marks[i],
					(double)(it->t[marks[i]] - it->t[WGGWD_T_RX]) / 1e9);
	}
}

/* The stage an item stopped at ("core" for the core's own verdicts). */
static const char *stopped_at(const struct core_item *ci, int verdict)
{
	const struct pipeline *pl = ci->pl;
	int i;

	if (ci->lookup_only) /* the resolver that answered */
		for (i = pl->n - 1; i >= 0; i--)
			if (ci->visited & (1ull << i))
				return pl->steps[i].in->sc->name;
	if (ci->pub.reason == WGGWD_R_INFLIGHT_DUPLICATE || ci->pub.reason == WGGWD_R_SHUTDOWN)
		return "core";
	if (ci->step < pl->n)
		return pl->steps[ci->step].in->sc->name;
	return verdict == WGGWD_CONTINUE ? pl->steps[pl->n - 1].in->sc->name : "core";
}

/* Outcome counters by kind: installs and lookups, for /metrics. */
static void count_outcome(struct core_item *ci, int verdict)
{
	struct pipeline *pl = ci->pl;
	const struct wggwd_item *it = &ci->pub;
	unsigned i;

	if (it->op != WGGWD_OP_ADD)
		return;
	if (it->flags & WGGWD_ITEM_CACHED) {
		(*pl->c_lookups[0])++;
	} else {
		for (i = 0; i < pl->n; i++)
			if ((ci->visited & (1ull << i)) &&
			    pl->steps[i].in->p->desc.kind == WGGWD_RESOLVER)
				break;
		if (i < pl->n) {
			if (ci->step > i || verdict == WGGWD_CONTINUE)
				(*pl->c_lookups[1])++;
			else if ((it->flags & WGGWD_ITEM_NOT_FOUND) ||
				 it->reason == WGGWD_R_UNKNOWN_KEY)
				(*pl->c_lookups[2])++;
			else
				(*pl->c_lookups[3])++;
		}
	}
	if (!pl->installer_in)
		return;
	for (i = 0; i < pl->n && pl->steps[i].in != pl->installer_in; i++)
		;
	if (i == pl->n || !(ci->visited & (1ull << i)))
		return;
	if (verdict == WGGWD_CONTINUE && !(it->flags & WGGWD_ITEM_UNCHANGED))
		(*pl->c_installs[0])++;
	else if (verdict == WGGWD_CONTINUE || (it->flags & WGGWD_ITEM_UNCHANGED))
		(*pl->c_installs[1])++;
	else if (ci->step == i && verdict != WGGWD_DONE) /* DONE: a shadow's decision */
		(*pl->c_installs[2])++;
}

static void key_b64(const uint8_t *key, char *b64, size_t len)
{
	sodium_bin2base64(b64, len, key, WGGWD_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
}

/* The key an item is about: the decoder's, else its peer config's. */
static const uint8_t *item_key(const struct wggwd_item *it)
{
	if (it->type & WGGWD_MSG_PEER_KEY)
		return it->public_key;
	if ((it->type & WGGWD_MSG_PEER) && (it->peer->has & WGGWD_PEER_HAS_PUBLIC_KEY))
		return it->peer->public_key;
	return NULL;
}

/* Who a drop is about: the key, else the sender's address. */
static void item_who(const struct wggwd_item *it, char *buf, size_t len)
{
	char a[64] = "?";
	const union wggwd_sockaddr *sa = &it->src;

	if (item_key(it)) {
		key_b64(item_key(it), buf, len);
		return;
	}
	if (sa->sa.sa_family == AF_INET)
		uv_ip4_name(&sa->in4, a, sizeof(a));
	else if (sa->sa.sa_family == AF_INET6)
		uv_ip6_name(&sa->in6, a, sizeof(a));
	snprintf(buf, len, "from %s", a);
}

static void drop_log(struct core_item *ci, const char *stage)
{
	const struct wggwd_item *it = &ci->pub;
	struct wggwd_inst *in = ci->step < ci->pl->n ? ci->pl->steps[ci->step].in :
						       ci->pl->source;
	char who[64];

	if (log_level < WGGWD_LOG_INFO)
		return;
	item_who(it, who, sizeof(who));
	/* rate-limited per stage: a stranger's knocks must not fill the log */
	host_services.log_limited(in, WGGWD_LOG_INFO, "pipeline %s: %s dropped at %s: %s%s%s",
				  ci->pl->name, who, stage, reason_name(it->reason),
				  it->detail ? ": " : "", it->detail ? it->detail : "");
}

static void finish(struct core_item *ci, int verdict)
{
	struct pipeline *pl = ci->pl;
	struct wggwd_item *it = &ci->pub;
	struct runtime *rt = pl->rt;
	char name[256];

	if (ci->in_inflight)
		inflight_del(pl, ci);
	it->t[WGGWD_T_DONE] = now_mono_ns();
	if (ci->lookup_only) { /* an operator's question: no side effects */
		ci->ctl(ci->ctl_arg, it, verdict, stopped_at(ci, verdict));
		notify_done(ci, verdict);
		item_release(it);
		if (rt->phase == 2 && !rt->live)
			runtime_stop_next(rt);
		return;
	}
	/* a client waits on the re-sent initiation, nothing else: the source
	 * is told first (its done re-sends it), the bookkeeping follows */
	if (verdict == WGGWD_CONTINUE && (it->flags & WGGWD_ITEM_REINJECT) &&
	    !(it->flags & WGGWD_ITEM_INJECTED) && pl->source->ops->done) {
		pl->source->ops->done(pl->source->ctx, it, verdict);
		ci->source_told = true;
	}
	switch (verdict) {
	case WGGWD_CONTINUE:
		(*pl->c_ok)++;
		break;
	case WGGWD_DONE:
		(*pl->c_done)++;
		break;
	case WGGWD_DROP: {
		static const char *const labels[] = { "pipeline", "reason", NULL };
		const char *v[] = { pl->name, reason_name(it->reason) };
		uint64_t **c = it->reason < WGGWD_R_COUNT_2_0 ? &pl->c_drops[it->reason] : NULL;

		(*pl->c_drop)++;
		if (!c || !*c) {
			uint64_t *cell;

			snprintf(name, sizeof(name), "pipeline.%s.drop.%s", pl->name,
				 reason_name(it->reason));
			cell = metrics_cell(name, M_COUNTER, "wggwd_drops_total",
					    "Items dropped, by pipeline and reason", labels, v);
			if (!c) {
				(*cell)++;
				break;
			}
			*c = cell;
		}
		(**c)++;
		break;
	}
	default:
		verdict = WGGWD_ERROR;
		(*pl->c_error)++;
		break;
	}
	if (ci->ctl)
		ci->ctl(ci->ctl_arg, it, verdict, stopped_at(ci, verdict));
	if (it->op == WGGWD_OP_REMOVE && verdict == WGGWD_CONTINUE) {
		static const char *const labels[] = { "pipeline", "reason", NULL };
		const char *v[] = { pl->name, reason_name(it->reason) };

		snprintf(name, sizeof(name), "pipeline.%s.removed.%s", pl->name,
			 reason_name(it->reason));
		(*(uint64_t *)metrics_cell(name, M_COUNTER, "wggwd_removals_total",
					   "Peers removed from the interface, by reason",
					   labels, v))++;
	}
	observe_marks(pl, it, verdict);
	count_outcome(ci, verdict);
	if (item_key(it) || verdict != WGGWD_CONTINUE)
		why_record(item_key(it), it->rx_realtime_ns, pl->name, stopped_at(ci, verdict),
			   verdict, it);
	if (verdict == WGGWD_DROP || verdict == WGGWD_ERROR)
		drop_log(ci, stopped_at(ci, verdict));
	/* JIT installs only: a pushed peer's client may come hours later,
	 * and timing it would have the heartbeat dump through a bulk push */
	if (verdict == WGGWD_CONTINUE && it->op == WGGWD_OP_ADD && it->t[WGGWD_T_INSTALLED] &&
	    it->transport != WGGWD_TR_PUSH &&
	    !(it->flags & (WGGWD_ITEM_UNCHANGED | WGGWD_ITEM_INJECTED)) && pl->installer_in) {
		uint64_t rx = it->rx_realtime_ns;

		if (!rx) /* the source did not say: from the monotonic mark */
			rx = now_real_ns() - (now_mono_ns() - it->t[WGGWD_T_RX]);
		observe_install(pl->installer_in, pl->name, it->peer->public_key, rx);
	}
	if (verdict == WGGWD_DROP && it->op == WGGWD_OP_ADD && !rt->phase)
		revoke_if_installed(ci);
	if (verdict == WGGWD_CONTINUE && it->op == WGGWD_OP_REMOVE)
		notify_removed(ci);
	if (verdict == WGGWD_CONTINUE && it->t[WGGWD_T_INSTALLED] && it->op == WGGWD_OP_ADD &&
	    log_level >= WGGWD_LOG_INFO) {
		char b64[sodium_base64_ENCODED_LEN(WGGWD_KEY_LEN,
						   sodium_base64_VARIANT_ORIGINAL)];
		uint64_t t0 = it->t[WGGWD_T_RX];
		char resent[40] = "";

		sodium_bin2base64(b64, sizeof(b64), it->peer->public_key, WGGWD_KEY_LEN,
				  sodium_base64_VARIANT_ORIGINAL);
#define MS(i) (it->t[i] && t0 ? (double)(it->t[i] - t0) / 1e6 : -1.0)
		if (it->t[WGGWD_T_REINJECTED])
			snprintf(resent, sizeof(resent), ", re-sent %.3f ms", MS(WGGWD_T_REINJECTED));
		/* the wall-clock receive time lets a reader line this up with
		 * WireGuard's own handshake times */
		log_msg(WGGWD_LOG_INFO, "[core]",
			"pipeline %s: peer %s %s: seen at %llu.%06llu, decoded %.3f ms, resolved %.3f ms, installed %.3f ms%s%s",
			pl->name, b64,
			it->flags & WGGWD_ITEM_UNCHANGED ? "already installed" : "installed",
			(unsigned long long)(it->rx_realtime_ns / 1000000000ull),
			(unsigned long long)(it->rx_realtime_ns % 1000000000ull / 1000),
			MS(WGGWD_T_DECODED), MS(WGGWD_T_RESOLVED), MS(WGGWD_T_INSTALLED),
			resent, it->flags & WGGWD_ITEM_CACHED ? " (cached)" : "");
#undef MS
	}
	notify_done(ci, verdict);
	item_release(it);
	if (rt->phase == 2 && !rt->live)
		runtime_stop_next(rt);
}

static void run(struct core_item *ci);

/* A stage said `v` about the item at its current step. */
static void advance(struct core_item *ci, int v)
{
	struct pipeline *pl = ci->pl;
	struct step *st = &pl->steps[ci->step];
	struct wggwd_item *it = &ci->pub;

	if (st->h_request && ci->t_step)
		metrics_observe(st->h_request, (double)(now_mono_ns() - ci->t_step) / 1e9);
	ci->t_step = 0;
	if (v != WGGWD_CONTINUE) {
		finish(ci, v);
		return;
	}
	if (st->role == ROLE_LOOKUP && (it->flags & WGGWD_ITEM_CACHED)) {
		it->type |= WGGWD_MSG_PEER;
		it->t[WGGWD_T_RESOLVED] = now_mono_ns();
		ci->step = st->skip_to;
	} else {
		it->type |= st->in->p->desc.out; /* what is filled in, so far */
		if (st->mark >= 0)
			it->t[st->mark] = now_mono_ns();
		ci->step++;
	}
	if (ci->step == pl->key_step && it->op == WGGWD_OP_ADD && !ci->in_inflight &&
	    inflight_add(pl, ci)) {
		(*pl->c_dup)++;
		it->reason = WGGWD_R_INFLIGHT_DUPLICATE;
		finish(ci, WGGWD_DROP);
		return;
	}
	run(ci);
}

/* Does step st handle removals? Stores (as sinks), installers, evictors. */
static bool removes(const struct step *st)
{
	uint32_t kind = st->in->p->desc.kind;

	return (kind == WGGWD_STORE && st->role == ROLE_PROCESS) ||
	       kind == WGGWD_INSTALLER || kind == WGGWD_EVICTOR;
}

static void run(struct core_item *ci)
{
	struct pipeline *pl = ci->pl;
	struct step *st;
	int v;

	if (ci->pub.op == WGGWD_OP_REMOVE)
		while (ci->step < pl->n && !removes(&pl->steps[ci->step]))
			ci->step++;
	if (ci->lookup_only)
		while (ci->step < pl->n &&
		       pl->steps[ci->step].in->p->desc.kind != WGGWD_RESOLVER)
			ci->step++;
	/* a key known already (a returning client's data packet, a
	 * revalidation): nothing to decode */
	while (ci->step < pl->n && (ci->pub.type & WGGWD_MSG_PEER_KEY) &&
	       pl->steps[ci->step].in->p->desc.kind == WGGWD_DECODER)
		ci->step++;
	if (ci->step >= pl->n) {
		finish(ci, WGGWD_CONTINUE);
		return;
	}
	if (pl->rt->phase >= 3) {
		ci->pub.reason = WGGWD_R_SHUTDOWN;
		finish(ci, WGGWD_DROP);
		return;
	}
	st = &pl->steps[ci->step];
	ci->visited |= 1ull << ci->step;
	ci->in_call = true;
	ci->deferred = -1;
	if (st->h_request)
		ci->t_step = now_mono_ns();
	if (st->role == ROLE_LOOKUP)
		v = st->in->ops->lookup(st->in->ctx, &ci->pub);
	else
		v = st->in->ops->process(st->in->ctx, &ci->pub);
	ci->in_call = false;
	if (v == WGGWD_PENDING) {
		ci->pending_in = st->in;
		if (ci->deferred >= 0) /* completed before process returned */
			pipeline_item_complete(st->in, &ci->pub, ci->deferred);
		return;
	}
	advance(ci, v);
}

int pipeline_item_emit(struct wggwd_inst *src, struct wggwd_item *it)
{
	struct core_item *ci = container_of(it, struct core_item, pub);
	struct pipeline *pl = src->pl;

	if (!pl || src->rt->phase) {
		item_release(it);
		return pl ? -ESHUTDOWN : -ENOENT;
	}
	ci->pl = pl;
	ci->step = 0;
	ci->first_step = 0;
	it->flags &= ~WGGWD_ITEM_INJECTED;
	if (!it->t[WGGWD_T_RX])
		it->t[WGGWD_T_RX] = now_mono_ns();
	if (!it->type)
		it->type = src->p->desc.out;
	(*pl->c_items)++;
	if ((pl->key_step == 0 || (it->type & WGGWD_MSG_PEER_KEY)) && pl->key_step != UINT32_MAX &&
	    it->op == WGGWD_OP_ADD && inflight_add(pl, ci)) {
		(*pl->c_dup)++;
		it->reason = WGGWD_R_INFLIGHT_DUPLICATE;
		finish(ci, WGGWD_DROP);
		return 0;
	}
	run(ci);
	return 0;
}

/* Where stage `in` last stands in pipeline pl: -1 for its source, -2 if
 * it is not in it. */
static int step_of(const struct pipeline *pl, const struct wggwd_inst *in)
{
	int i, at = pl->source == in ? -1 : -2;

	for (i = 0; i < (int)pl->n; i++)
		if (pl->steps[i].in == in)
			at = i;
	return at;
}

/* Does stage `in` have a step before its last in pl (a store's cache
 * role)? */
static bool has_lookup(const struct pipeline *pl, const struct wggwd_inst *in)
{
	unsigned i;

	for (i = 0; i < pl->n; i++)
		if (pl->steps[i].in == in)
			return pl->steps[i].role == ROLE_LOOKUP;
	return false;
}

/* The first pipeline stage `in` is in that has an installer (and, with
 * `lookup`, where it has a cache role), else the first it is in at all;
 * *at: where `in` last stands there. */
static struct pipeline *pipeline_of(struct runtime *rt, struct wggwd_inst *in,
				    int *at, bool lookup)
{
	struct pipeline *first = NULL;
	size_t p;
	int i;

	for (p = 0; rt && p < rt->n_pl; p++) {
		i = step_of(&rt->pl[p], in);
		if (i < -1 || (lookup && !has_lookup(&rt->pl[p], in)))
			continue;
		if (rt->pl[p].installer || !first) {
			first = &rt->pl[p];
			*at = i;
			if (first->installer)
				break;
		}
	}
	return first;
}

int pipeline_item_inject(struct wggwd_inst *in, struct wggwd_item *it, uint32_t flags)
{
	struct runtime *rt = in->rt;
	struct core_item *ci = container_of(it, struct core_item, pub);
	struct pipeline *pl;
	int at = 0, i;

	pl = pipeline_of(rt, in, &at, flags & WGGWD_INJECT_LOOKUP);
	if (pl && (flags & WGGWD_INJECT_LOOKUP)) /* after its first step */
		for (i = 0; i < at; i++)
			if (pl->steps[i].in == in) {
				at = i;
				break;
			}
	if (!pl || at + 1 >= (int)pl->n || rt->phase) {
		item_release(it);
		return rt && rt->phase ? -ESHUTDOWN : -ENOENT;
	}
	ci->pl = pl;
	ci->step = at + 1;
	ci->first_step = at + 1;
	ci->injector = in;
	it->flags |= WGGWD_ITEM_INJECTED;
	if (!it->t[WGGWD_T_RX])
		it->t[WGGWD_T_RX] = now_mono_ns();
	if (!it->type)
		it->type = WGGWD_MSG_PEER;
	(*pl->c_items)++;
	run(ci);
	return 0;
}

/* Send a REMOVE item for key through pipeline pl's removal steps. */
static void retire_in(struct pipeline *pl, const uint8_t *key, uint32_t reason,
		      ctl_item_cb cb, void *arg)
{
	struct wggwd_item *it = item_alloc();
	struct core_item *ci = container_of(it, struct core_item, pub);

	it->op = WGGWD_OP_REMOVE;
	it->type = WGGWD_MSG_PEER;
	it->reason = reason;
	it->flags = WGGWD_ITEM_INJECTED;
	memcpy(it->public_key, key, WGGWD_KEY_LEN);
	memcpy(it->peer->public_key, key, WGGWD_KEY_LEN);
	it->peer->has = WGGWD_PEER_HAS_PUBLIC_KEY;
	it->t[WGGWD_T_RX] = now_mono_ns();
	ci->pl = pl;
	ci->step = 0; /* run() walks to the first step that removes */
	ci->ctl = cb;
	ci->ctl_arg = arg;
	(*pl->c_items)++;
	run(ci);
}

int pipeline_item_retire(struct wggwd_inst *in, const uint8_t *key, uint32_t reason)
{
	struct runtime *rt = in->rt;
	struct pipeline *pl;
	int at = 0;

	pl = pipeline_of(rt, in, &at, false);
	if (!pl || !pl->installer)
		return -ENOENT;
	if (rt->phase)
		return -ESHUTDOWN;
	retire_in(pl, key, reason, NULL, NULL);
	return 0;
}

/* The stage's index in the item's pipeline: 0 the source, i + 1 step i. */
void **pipeline_item_slot(struct wggwd_inst *in, struct wggwd_item *it)
{
	struct core_item *ci = container_of(it, struct core_item, pub);
	struct pipeline *pl = ci->pl ? ci->pl : in->pl;
	unsigned i, idx = 0;

	if (pl && in != pl->source) {
		for (i = 0; i < pl->n && pl->steps[i].in != in; i++)
			;
		idx = i + 1; /* not in it at all: a slot of its own past the end */
	}
	if (idx < ITEM_SLOTS)
		return &ci->slots[idx];
	if (!ci->slots_heap)
		ci->slots_heap = xcalloc(MAX_STEPS + 2 - ITEM_SLOTS, sizeof(void *));
	return &ci->slots_heap[idx - ITEM_SLOTS];
}

void pipeline_item_complete(struct wggwd_inst *in, struct wggwd_item *it, int verdict)
{
	struct core_item *ci = container_of(it, struct core_item, pub);

	if (ci->in_call) {
		ci->deferred = verdict;
		return;
	}
	if (ci->pending_in != in) {
		log_msg(WGGWD_LOG_ERROR, in->prefix,
			"complete() on an item this stage did not keep; ignored");
		return;
	}
	ci->pending_in = NULL;
	if (verdict == WGGWD_PENDING)
		verdict = WGGWD_ERROR;
	advance(ci, verdict);
}

/* `wggwd ctl evict`: a REMOVE item (reason operator) through each
 * installer's first pipeline. Returns how many were sent, or -errno. */
int pipeline_ctl_evict(struct runtime *rt, const uint8_t *key, ctl_item_cb cb, void *arg)
{
	size_t p, q;
	int n = 0;

	if (!rt || rt->phase)
		return -ESHUTDOWN;
	for (p = 0; p < rt->n_pl; p++) {
		struct pipeline *pl = &rt->pl[p];

		if (!pl->installer_in)
			continue;
		for (q = 0; q < p && rt->pl[q].installer_in != pl->installer_in; q++)
			;
		if (q < p)
			continue;
		n++;
		retire_in(pl, key, WGGWD_R_OPERATOR, cb, arg);
	}
	return n ? n : -ENOENT;
}

/* `wggwd ctl lookup`: ask the first pipeline's resolver about key now
 * (its budget, limits and breaker apply); the item goes through nothing
 * else. */
int pipeline_ctl_lookup(struct runtime *rt, const uint8_t *key, ctl_item_cb cb, void *arg)
{
	struct wggwd_item *it;
	struct core_item *ci;
	size_t p, i;

	if (!rt || rt->phase)
		return -ESHUTDOWN;
	for (p = 0; p < rt->n_pl; p++)
		for (i = 0; i < rt->pl[p].n; i++)
			if (rt->pl[p].steps[i].in->p->desc.kind == WGGWD_RESOLVER)
				goto found;
	return -ENOENT;
found:
	it = item_alloc();
	ci = container_of(it, struct core_item, pub);
	it->type = WGGWD_MSG_PKT | WGGWD_MSG_PEER_KEY;
	it->flags = WGGWD_ITEM_INJECTED | WGGWD_ITEM_INVERT;
	memcpy(it->public_key, key, WGGWD_KEY_LEN);
	it->t[WGGWD_T_RX] = now_mono_ns();
	it->rx_realtime_ns = now_real_ns();
	ci->pl = &rt->pl[p];
	ci->step = i;
	ci->first_step = i;
	ci->ctl = cb;
	ci->ctl_arg = arg;
	ci->lookup_only = true;
	run(ci);
	return 0;
}
