// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The runtime: stage instances in start order, pipelines built from the
 * config, and the ordered start and stop of it all. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "metrics.h"

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

/* The pipeline's own metrics: stats file "pipeline.<name>.<what>",
 * Prometheus wggwd_*{pipeline="<name>",...}. */
static void pipeline_metrics(struct pipeline *pl)
{
	static const char *const lp[] = { "pipeline", NULL };
	static const char *const lv[] = { "pipeline", "verdict", NULL };
	static const char *const lo[] = { "pipeline", "outcome", NULL };
	static const char *const verdicts[] = { "ok", "done", "dropped", "error" };
	static const char *const installs[] = { "installed", "unchanged", "failed" };
	static const char *const lookups[] = { "cached", "found", "unknown", "failed" };
	static const struct {
		const char *what, *family, *help;
	} h[] = {
		{ "decoded", "wggwd_decode_duration_seconds",
		  "From the initiation seen to its key decoded" },
		{ "resolved", "wggwd_resolve_duration_seconds",
		  "From the initiation seen to the control plane's (or a cache's) answer" },
		{ "installed", "wggwd_install_duration_seconds",
		  "From the initiation seen to the peer installed on the interface" },
	};
	uint64_t **verdict_cells[] = { &pl->c_ok, &pl->c_done, &pl->c_drop, &pl->c_error };
	const char *v[2] = { pl->name };
	char name[256];
	size_t i;

	snprintf(name, sizeof(name), "pipeline.%s.items", pl->name);
	pl->c_items = metrics_cell(name, M_COUNTER, "wggwd_pipeline_items_total",
				   "Items that entered the pipeline", lp, v);
	for (i = 0; i < ARRAY_SIZE(verdicts); i++) {
		v[1] = verdicts[i];
		snprintf(name, sizeof(name), "pipeline.%s.%s", pl->name, verdicts[i]);
		*verdict_cells[i] = metrics_cell(name, M_COUNTER, "wggwd_pipeline_verdicts_total",
						 "Items finished, by verdict", lv, v);
	}
	snprintf(name, sizeof(name), "pipeline.%s.inflight_duplicates", pl->name);
	pl->c_dup = metrics_cell(name, M_COUNTER, "wggwd_inflight_duplicates_total",
				 "Initiations for a key already on its way (dropped)", lp, v);
	for (i = 0; i < ARRAY_SIZE(installs); i++) {
		v[1] = installs[i];
		snprintf(name, sizeof(name), "pipeline.%s.install.%s", pl->name, installs[i]);
		pl->c_installs[i] = metrics_cell(name, M_COUNTER, "wggwd_installs_total",
						 "Installs, by outcome", lo, v);
	}
	for (i = 0; i < ARRAY_SIZE(lookups); i++) {
		v[1] = lookups[i];
		snprintf(name, sizeof(name), "pipeline.%s.lookup.%s", pl->name, lookups[i]);
		pl->c_lookups[i] = metrics_cell(name, M_COUNTER, "wggwd_lookups_total",
						"Key lookups, by outcome (cached: a store answered)",
						lo, v);
	}
	snprintf(name, sizeof(name), "pipeline.%s.inflight", pl->name);
	pl->g_inflight = metrics_cell(name, M_GAUGE, "wggwd_pipeline_inflight",
				      "Keys on their way through the pipeline (queue depth)", lp, v);
	for (i = 0; i < ARRAY_SIZE(h); i++) {
		snprintf(name, sizeof(name), "pipeline.%s.seconds_to_%s", pl->name, h[i].what);
		pl->h_marks[i] = metrics_cell(name, M_HIST, h[i].family, h[i].help, lp, v);
	}
}

static void build_pipeline(struct runtime *rt, struct pipeline *pl,
			   struct pipeline_conf *pc)
{
	struct wggwd_inst *cache = NULL, *installer = NULL;
	unsigned lookup_at = 0;
	size_t i, k;

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
		if (kind == WGGWD_RESOLVER) {
			static const char *const labels[] = { "pipeline", "stage", NULL };
			const char *v[] = { pc->name, in->sc->name };
			char name[256];

			snprintf(name, sizeof(name), "pipeline.%s.%s.request_seconds", pc->name,
				 in->sc->name);
			st->h_request = metrics_cell(name, M_HIST, "wggwd_resolver_request_duration_seconds",
						     "Time a resolver took to answer, from the item reaching it (its queue included)",
						     labels, v);
		}
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
	pipeline_metrics(pl);
	pl->installer = installer != NULL;
	pl->installer_in = installer;
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
	for (i = 0; i < c->n_pipelines; i++) {
		struct pipeline_conf *pc = &c->pipelines[i];
		struct wggwd_link l;
		const char *msg, *opt = NULL;
		char buf[256];
		size_t k;

		for (k = 0; k < pc->n; k++) {
			struct wggwd_inst *in = inst_of(rt, pc->stages[k]);

			if (!in->ops->link)
				continue;
			pipeline_link_info(pc, k, &l);
			msg = in->ops->link(in->ctx, in->sc->conf, &l, &opt, buf, sizeof(buf));
			if (msg) {
				log_msg(WGGWD_LOG_ERROR, in->prefix, "pipeline %s: %s%s%s",
					pc->name, opt ? opt : "", opt ? ": " : "", msg);
				runtime_free(rt);
				return NULL;
			}
		}
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
void runtime_stop_next(struct runtime *rt)
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

/* ------------------------------------------------------ for ctl and http */

struct runtime *runtime_current(void)
{
	return current_rt;
}

size_t runtime_n_inst(const struct runtime *rt)
{
	return rt ? rt->n_inst : 0;
}

struct wggwd_inst *runtime_inst(struct runtime *rt, size_t i)
{
	return &rt->inst[i];
}
