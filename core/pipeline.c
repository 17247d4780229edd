// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The runtime: stage instances, pipelines as lists of steps, items
 * walking them, and the ordered start and stop of it all.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core.h"

enum role { ROLE_PROCESS, ROLE_LOOKUP };

struct step {
	struct wggwd_inst *in;
	enum role role;
	unsigned skip_to;  /* lookup: where a cache hit continues */
	int mark;          /* timeline slot, or -1 */
};

#define INFLIGHT_BUCKETS 1024

struct pipeline {
	struct runtime *rt;
	const char *name;
	struct wggwd_inst *source;
	unsigned key_step;  /* items carry a key from this step on */
	size_t n;
	struct step *steps;
	uint64_t *c_items, *c_ok, *c_done, *c_error, *c_dup, *c_drop;
	int64_t *g_inflight;
	struct core_item *inflight[INFLIGHT_BUCKETS];
};

struct runtime {
	uv_loop_t *loop;
	struct config *c;
	size_t n_inst;
	struct wggwd_inst *inst;   /* in start order */
	size_t n_pl;
	struct pipeline *pl;
	struct core_item *items;   /* every live item */
	uint64_t live;
	/* stopping */
	int phase;                 /* 0 running, 1 sources, 2 drain, 3 rest, 4 done */
	size_t stop_idx;
	uv_timer_t drain;
	bool drain_armed;
	void (*stop_done)(void *);
	void *stop_arg;
};

/* ------------------------------------------------------------------ items */

struct item_link {
	struct core_item *prev, *next;
};

/* every item is allocated with this header, for the runtime's live list */
struct item_box {
	struct item_link l;
	struct runtime *rt;
	struct core_item ci;
};

static struct runtime *current_rt;

struct wggwd_item *item_alloc(void)
{
	struct item_box *b = xcalloc(1, sizeof(*b));
	struct runtime *rt = current_rt;

	b->rt = rt;
	if (rt) {
		b->l.next = rt->items;
		if (rt->items)
			container_of(rt->items, struct item_box, ci)->l.prev = &b->ci;
		rt->items = &b->ci;
		rt->live++;
	}
	return &b->ci.pub;
}

void item_release(struct wggwd_item *it)
{
	struct core_item *ci;
	struct item_box *b;
	struct runtime *rt;

	if (!it)
		return;
	ci = container_of(it, struct core_item, pub);
	b = container_of(ci, struct item_box, ci);
	rt = b->rt;
	if (rt) {
		if (b->l.prev)
			container_of(b->l.prev, struct item_box, ci)->l.next = b->l.next;
		else
			rt->items = b->l.next;
		if (b->l.next)
			container_of(b->l.next, struct item_box, ci)->l.prev = b->l.prev;
		rt->live--;
	}
	sodium_memzero(&it->peer.preshared_key, sizeof(it->peer.preshared_key));
	free(b);
}

static unsigned key_bucket(const uint8_t *key)
{
	uint32_t h;

	memcpy(&h, key, sizeof(h)); /* keys are uniformly random */
	return h % INFLIGHT_BUCKETS;
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

static void runtime_stop_next(struct runtime *rt);

/* Tell every stage the item reached that has a done op, then the source. */
static void notify_done(struct core_item *ci, int verdict)
{
	struct pipeline *pl = ci->pl;
	unsigned i, k, end = ci->step < pl->n ? ci->step + 1 : pl->n;

	for (i = ci->first_step; i < end; i++) {
		struct wggwd_inst *in = pl->steps[i].in;

		if (!in->ops->done)
			continue;
		/* a store is in the list twice (cache and sink): tell it once */
		for (k = ci->first_step; k < i; k++)
			if (pl->steps[k].in == in)
				break;
		if (k == i)
			in->ops->done(in->ctx, &ci->pub, verdict);
	}
	if (pl->source->ops->done)
		pl->source->ops->done(pl->source->ctx, &ci->pub, verdict);
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
	switch (verdict) {
	case WGGWD_CONTINUE:
		(*pl->c_ok)++;
		break;
	case WGGWD_DONE:
		(*pl->c_done)++;
		break;
	case WGGWD_DROP:
		(*pl->c_drop)++;
		snprintf(name, sizeof(name), "pipeline.%s.drop.%s", pl->name,
			 it->drop_reason ? it->drop_reason : "unspecified");
		(*metrics_counter(name))++;
		break;
	default:
		verdict = WGGWD_ERROR;
		(*pl->c_error)++;
		break;
	}
	if (verdict == WGGWD_CONTINUE && it->t[WGGWD_T_INSTALLED]) {
		char b64[sodium_base64_ENCODED_LEN(WGGWD_KEY_LEN,
						   sodium_base64_VARIANT_ORIGINAL)];
		uint64_t t0 = it->t[WGGWD_T_RX];

		sodium_bin2base64(b64, sizeof(b64), it->peer.public_key, WGGWD_KEY_LEN,
				  sodium_base64_VARIANT_ORIGINAL);
#define MS(i) (it->t[i] && t0 ? (double)(it->t[i] - t0) / 1e6 : -1.0)
		/* the wall-clock receive time lets a reader line this up with
		 * WireGuard's own handshake times */
		log_msg(WGGWD_LOG_INFO, "[core]",
			"pipeline %s: peer %s %s: seen at %llu.%06llu, decoded %.3f ms, resolved %.3f ms, installed %.3f ms%s",
			pl->name, b64,
			it->flags & WGGWD_ITEM_UNCHANGED ? "already installed" : "installed",
			(unsigned long long)(it->rx_realtime_ns / 1000000000ull),
			(unsigned long long)(it->rx_realtime_ns % 1000000000ull / 1000),
			MS(WGGWD_T_DECODED), MS(WGGWD_T_RESOLVED), MS(WGGWD_T_INSTALLED),
			it->flags & WGGWD_ITEM_CACHED ? " (cached)" : "");
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

	if (v != WGGWD_CONTINUE) {
		finish(ci, v);
		return;
	}
	if (st->role == ROLE_LOOKUP && (it->flags & WGGWD_ITEM_CACHED)) {
		it->type = WGGWD_MSG_PEER;
		it->t[WGGWD_T_RESOLVED] = now_mono_ns();
		ci->step = st->skip_to;
	} else {
		if (st->in->p->desc.out)
			it->type = st->in->p->desc.out;
		if (st->mark >= 0)
			it->t[st->mark] = now_mono_ns();
		ci->step++;
	}
	if (ci->step == pl->key_step && inflight_add(pl, ci)) {
		(*pl->c_dup)++;
		it->drop_reason = "inflight_duplicate";
		finish(ci, WGGWD_DROP);
		return;
	}
	run(ci);
}

static void run(struct core_item *ci)
{
	struct pipeline *pl = ci->pl;
	struct step *st;
	int v;

	if (ci->step >= pl->n) {
		finish(ci, WGGWD_CONTINUE);
		return;
	}
	if (pl->rt->phase >= 3) {
		ci->pub.drop_reason = "shutdown";
		finish(ci, WGGWD_DROP);
		return;
	}
	st = &pl->steps[ci->step];
	ci->in_call = true;
	ci->deferred = -1;
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

void pipeline_item_emit(struct wggwd_inst *src, struct wggwd_item *it)
{
	struct core_item *ci = container_of(it, struct core_item, pub);
	struct pipeline *pl = src->pl;

	if (!pl || src->rt->phase) {
		item_release(it);
		return;
	}
	ci->pl = pl;
	ci->step = 0;
	ci->first_step = 0;
	if (!it->t[WGGWD_T_RX])
		it->t[WGGWD_T_RX] = now_mono_ns();
	if (!it->type)
		it->type = src->p->desc.out;
	(*pl->c_items)++;
	if (pl->key_step == 0 && inflight_add(pl, ci)) {
		(*pl->c_dup)++;
		it->drop_reason = "inflight_duplicate";
		finish(ci, WGGWD_DROP);
		return;
	}
	run(ci);
}

int pipeline_item_inject(struct wggwd_inst *in, struct wggwd_item *it)
{
	struct runtime *rt = in->rt;
	struct core_item *ci = container_of(it, struct core_item, pub);
	size_t p;
	unsigned i, after = UINT32_MAX;

	for (p = 0; rt && p < rt->n_pl && after == UINT32_MAX; p++)
		for (i = 0; i < rt->pl[p].n; i++)
			if (rt->pl[p].steps[i].in == in)
				after = i + 1; /* the last role it has there */
	if (after == UINT32_MAX || after >= rt->pl[p - 1].n || rt->phase) {
		item_release(it);
		return rt && rt->phase ? -ESHUTDOWN : -ENOENT;
	}
	ci->pl = &rt->pl[p - 1];
	ci->step = after;
	ci->first_step = after;
	it->flags |= WGGWD_ITEM_INJECTED;
	if (!it->t[WGGWD_T_RX])
		it->t[WGGWD_T_RX] = now_mono_ns();
	(*ci->pl->c_items)++;
	run(ci);
	return 0;
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

/* --------------------------------------------------------------- runtime */

static int start_rank(uint32_t kind)
{
	/* installers first (others ask them for the device), sources last
	 * (nothing flows before everything it reaches is up) */
	switch (kind) {
	case WGGWD_INSTALLER: return 0;
	case WGGWD_STORE: return 1;
	case WGGWD_RESOLVER: return 2;
	case WGGWD_DECODER: return 3;
	case WGGWD_EVICTOR: return 4;
	default: return 5;
	}
}

static int cmp_stage(const void *a, const void *b)
{
	const struct stage_conf *x = *(struct stage_conf *const *)a;
	const struct stage_conf *y = *(struct stage_conf *const *)b;

	return start_rank(x->plugin->desc.kind) - start_rank(y->plugin->desc.kind);
}

static struct wggwd_inst *inst_of(struct runtime *rt, struct stage_conf *sc)
{
	size_t i;

	for (i = 0; i < rt->n_inst; i++)
		if (rt->inst[i].sc == sc)
			return &rt->inst[i];
	return NULL;
}

static int mark_of(uint32_t kind)
{
	switch (kind) {
	case WGGWD_DECODER: return WGGWD_T_DECODED;
	case WGGWD_RESOLVER: return WGGWD_T_RESOLVED;
	case WGGWD_STORE: return WGGWD_T_STORED;
	case WGGWD_INSTALLER: return WGGWD_T_INSTALLED;
	default: return -1;
	}
}

static void build_pipeline(struct runtime *rt, struct pipeline *pl,
			   struct pipeline_conf *pc)
{
	struct wggwd_inst *cache = NULL, *installer = NULL;
	unsigned lookup_at = 0;
	size_t i, k;
	char name[256];

	pl->rt = rt;
	pl->name = pc->name;
	pl->source = inst_of(rt, pc->stages[0]);
	pl->source->pl = pl;
	pl->steps = xcalloc(pc->n * 2, sizeof(*pl->steps));
	/* de-duplication by key is for pulled keys; pushed configs for one
	 * key are ordered by their version in the store instead */
	pl->key_step = UINT32_MAX;
	if (pl->source->p->desc.out == WGGWD_MSG_PEER_KEY)
		pl->key_step = 0;
	for (i = 1; i < pc->n; i++) {
		struct wggwd_inst *in = inst_of(rt, pc->stages[i]);
		uint32_t kind = in->p->desc.kind;
		struct step *st = &pl->steps[pl->n++];

		st->in = in;
		st->mark = mark_of(kind);
		if (kind == WGGWD_INSTALLER)
			installer = in;
		if (kind == WGGWD_DECODER)
			pl->key_step = pl->n;
		if (kind == WGGWD_STORE) {
			for (k = i + 1; k < pc->n; k++)
				if (pc->stages[k]->plugin->desc.kind == WGGWD_RESOLVER)
					break;
			if (k < pc->n) {
				/* a store before a resolver is its cache, and
				 * it also keeps what the resolver answers */
				st->role = ROLE_LOOKUP;
				st->mark = -1;
				cache = in;
				lookup_at = pl->n - 1;
			}
		}
		if (kind == WGGWD_RESOLVER && cache) {
			st = &pl->steps[pl->n++];
			st->in = cache;
			st->role = ROLE_PROCESS;
			st->mark = WGGWD_T_STORED;
			pl->steps[lookup_at].skip_to = pl->n;
			cache = NULL;
		}
	}
	for (i = 0; i < pc->n; i++) {
		struct wggwd_inst *in = inst_of(rt, pc->stages[i]);

		if (installer && !in->installer) {
			in->installer_ref.ctx = NULL; /* filled at start */
			in->installer_ref.ops = installer->ops;
			in->installer_ref.name = installer->sc->name;
			in->installer = &in->installer_ref;
			in->installer_inst = installer;
		}
	}
#define C(field, what) \
	snprintf(name, sizeof(name), "pipeline.%s.%s", pl->name, what); \
	pl->field = metrics_counter(name)
	C(c_items, "items");
	C(c_ok, "ok");
	C(c_done, "done");
	C(c_error, "error");
	C(c_drop, "dropped");
	C(c_dup, "inflight_duplicates");
#undef C
	snprintf(name, sizeof(name), "pipeline.%s.inflight", pl->name);
	pl->g_inflight = metrics_gauge(name);
}

struct runtime *runtime_new(uv_loop_t *loop, struct config *c)
{
	struct runtime *rt = xcalloc(1, sizeof(*rt));
	struct stage_conf **order;
	size_t i, n = 0;
	int ret;

	rt->loop = loop;
	rt->c = c;
	order = xcalloc(c->n_stages, sizeof(*order));
	for (i = 0; i < c->n_stages; i++)
		if (c->stages[i].pipelines)
			order[n++] = &c->stages[i];
	qsort(order, n, sizeof(*order), cmp_stage);
	rt->inst = xcalloc(n, sizeof(*rt->inst));
	rt->n_inst = n;
	for (i = 0; i < n; i++) {
		struct wggwd_inst *in = &rt->inst[i];

		in->rt = rt;
		in->sc = order[i];
		in->p = order[i]->plugin;
		in->ops = &in->p->ops;
		snprintf(in->prefix, sizeof(in->prefix), "[%s:%s]", in->p->desc.name,
			 in->sc->name);
	}
	free(order);
	rt->pl = xcalloc(c->n_pipelines, sizeof(*rt->pl));
	rt->n_pl = c->n_pipelines;
	for (i = 0; i < c->n_pipelines; i++)
		build_pipeline(rt, &rt->pl[i], &c->pipelines[i]);
	for (i = 0; i < n; i++) {
		struct wggwd_inst *in = &rt->inst[i];

		ret = in->ops->create(&host_services, in, in->sc->conf, &in->ctx);
		if (ret) {
			log_msg(WGGWD_LOG_ERROR, in->prefix, "create failed: %s",
				strerror(ret < 0 ? -ret : ret));
			runtime_free(rt);
			return NULL;
		}
		in->created = true;
	}
	return rt;
}

int runtime_start(struct runtime *rt)
{
	size_t i;
	int ret;

	current_rt = rt;
	for (i = 0; i < rt->n_inst; i++) {
		struct wggwd_inst *in = &rt->inst[i];

		if (in->installer)
			in->installer_ref.ctx = in->installer_inst->ctx;
		if (!in->ops->start) {
			in->started = true;
			continue;
		}
		ret = in->ops->start(in->ctx);
		if (ret) {
			log_msg(WGGWD_LOG_ERROR, in->prefix, "start failed: %s",
				strerror(ret < 0 ? -ret : ret));
			return ret < 0 ? ret : -ret;
		}
		in->started = true;
		log_msg(WGGWD_LOG_DEBUG, in->prefix, "started");
	}
	return 0;
}

/* Called whenever something an instance waits for has closed. */
void inst_handle_closed(struct wggwd_inst *in)
{
	struct runtime *rt = in->rt;

	if (!in->stopping || !in->stopped || in->pending_handles || in->done)
		return;
	in->done = true;
	log_msg(WGGWD_LOG_DEBUG, in->prefix, "stopped");
	if (rt && rt->phase && rt->phase != 4)
		runtime_stop_next(rt);
}

static void stop_inst(struct wggwd_inst *in)
{
	in->stopping = true;
	if (in->started && in->ops->stop) {
		in->ops->stop(in->ctx);
	} else {
		in->stopped = true;
		inst_handle_closed(in);
	}
}

static void on_drain_timeout(uv_timer_t *t)
{
	struct runtime *rt = t->data;

	log_msg(WGGWD_LOG_WARN, "[core]", "drain timeout: %llu items still in flight",
		(unsigned long long)rt->live);
	if (rt->phase == 2)
		runtime_stop_next(rt);
}

/*
 * The stop state machine, re-entered each time something finishes:
 * 1: stop every source (all at once), 2: wait for in-flight items (at
 * most drain_timeout), 3: stop the rest one by one, newest first.
 */
static void runtime_stop_next(struct runtime *rt)
{
	size_t i;

	if (rt->phase == 1) {
		for (i = 0; i < rt->n_inst; i++)
			if (rt->inst[i].p->desc.kind == WGGWD_SOURCE && !rt->inst[i].done)
				return;
		rt->phase = 2;
		if (rt->live) {
			uv_timer_init(rt->loop, &rt->drain);
			rt->drain.data = rt;
			rt->drain_armed = true;
			uv_timer_start(&rt->drain, on_drain_timeout,
				       rt->c->core.drain_timeout_ms, 0);
			return;
		}
	}
	if (rt->phase == 2) {
		if (rt->drain_armed) {
			uv_timer_stop(&rt->drain);
			uv_close((uv_handle_t *)&rt->drain, NULL);
			rt->drain_armed = false;
		}
		rt->phase = 3;
		rt->stop_idx = rt->n_inst;
	}
	if (rt->phase == 3) {
		while (rt->stop_idx > 0) {
			struct wggwd_inst *in = &rt->inst[rt->stop_idx - 1];

			if (in->p->desc.kind == WGGWD_SOURCE || in->done) {
				rt->stop_idx--;
				continue;
			}
			if (!in->stopping) {
				stop_inst(in); /* may re-enter and finish */
				return;
			}
			return; /* waiting for it */
		}
		rt->phase = 4;
		if (rt->stop_done)
			rt->stop_done(rt->stop_arg);
	}
}

void runtime_stop(struct runtime *rt, void (*done)(void *), void *arg)
{
	size_t i;

	if (rt->phase)
		return;
	rt->stop_done = done;
	rt->stop_arg = arg;
	rt->phase = 1;
	for (i = 0; i < rt->n_inst; i++)
		if (rt->inst[i].p->desc.kind == WGGWD_SOURCE)
			stop_inst(&rt->inst[i]);
	runtime_stop_next(rt);
}

void runtime_free(struct runtime *rt)
{
	size_t i;

	if (!rt)
		return;
	while (rt->items) {
		struct core_item *ci = rt->items;

		log_msg(WGGWD_LOG_WARN, "[core]", "pipeline %s: an item was never completed; freed at exit",
			ci->pl ? ci->pl->name : "?");
		item_release(&ci->pub);
	}
	for (i = 0; i < rt->n_inst; i++)
		if (rt->inst[i].created)
			rt->inst[i].ops->destroy(rt->inst[i].ctx);
	for (i = 0; i < rt->n_pl; i++)
		free(rt->pl[i].steps);
	free(rt->pl);
	free(rt->inst);
	if (current_rt == rt)
		current_rt = NULL;
	free(rt);
}

uint64_t runtime_live_items(struct runtime *rt)
{
	return rt->live;
}
