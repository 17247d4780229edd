// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Internal to the core: the runtime's and the pipelines' insides, shared
 * by pipeline.c (items walking pipelines), item.c (items) and runtime.c
 * (building, starting and stopping it all). */
#ifndef WGGWD_RUNTIME_H
#define WGGWD_RUNTIME_H

#include "core.h"

enum role { ROLE_PROCESS, ROLE_LOOKUP };

struct step {
	struct wggwd_inst *in;
	enum role role;
	unsigned skip_to;  /* lookup: where a cache hit continues */
	int mark;          /* timeline slot, or -1 */
	struct wggwd_hist *h_request; /* resolvers: time to answer */
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
	uint64_t *c_installs[3];       /* installed, unchanged, failed */
	uint64_t *c_lookups[4];        /* cached, found, unknown, failed */
	uint64_t *c_drops[WGGWD_R_COUNT_2_0]; /* by reason, made on first use */
	int64_t *g_inflight;
	struct wggwd_hist *h_marks[3]; /* seen -> decoded, resolved, installed */
	struct wggwd_inst *installer_in;
	bool installer;
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


struct item_link {
	struct core_item *prev, *next;
};

/* every item is allocated with this header, for the runtime's live list */
struct item_box {
	struct item_link l;
	struct runtime *rt;
	struct core_item ci;
};

/* the runtime items are allocated for (runtime_start sets it) */
extern struct runtime *current_rt;

/* runtime.c: the stop state machine, re-entered as things finish */
void runtime_stop_next(struct runtime *rt);

#endif
