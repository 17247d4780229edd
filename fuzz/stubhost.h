// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * A small stand-in for the core, for fuzz targets that drive a plugin's
 * code directly: a struct wggwd_host whose items are allocated like the
 * core's (peer never NULL, item_pkt, allowed_reserve, a slot), counters
 * from a static pool, logs formatted then thrown away, timers that fire
 * only when asked (stub_fire_timers), queue_work and post deferred to
 * stub_drain(). Items a source emits wait in a FIFO (stub_next_emitted).
 */
#ifndef WGGWD_FUZZ_STUBHOST_H
#define WGGWD_FUZZ_STUBHOST_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <wggwd/plugin.h>

extern struct wggwd_host stub_host;
/* the instance handle passed to create (the stub has one stage) */
#define STUB_SELF ((struct wggwd_inst *)&stub_host)

/* Once per process: the loop, /dev/null for stderr (FUZZ_VERBOSE=1 keeps
 * it). */
void stub_init(void);
uv_loop_t *stub_loop(void);

/* Items a source emitted, oldest first; NULL when none. */
struct wggwd_item *stub_next_emitted(void);
size_t stub_n_emitted(void);
/* Items finished with host->complete, oldest first (verdict in *v). */
struct wggwd_item *stub_next_completed(int *v);
/* Run what queue_work and post deferred (and what they defer in turn). */
void stub_drain(void);
/* Call every started timer's callback once. */
void stub_fire_timers(void);
/* Free the timers a target forgot (after destroy). */
void stub_free_timers(void);
/* What host->installer returns (NULL by default). */
void stub_set_installer(const struct wggwd_installer *ins);
/* How many host->retire calls; the last key; the first keys. */
#define STUB_RETIRED_MAX 64
extern unsigned stub_retired;
extern uint8_t stub_retired_key[WGGWD_KEY_LEN];
extern uint8_t stub_retired_keys[STUB_RETIRED_MAX][WGGWD_KEY_LEN];
/* Items host->inject took (flagged INJECTED), and freeing them. */
extern size_t stub_n_injected;
void stub_free_injected(void);
/* host->stopped was called */
extern int stub_stopped;
/* Allocation failures: allowed_reserve/item_pkt/item_new fail when
 * stub_fail_alloc is set (a target may flip it from its input). */
extern int stub_fail_alloc;
/* Fill a plugin's conf struct (conf_size bytes) from its option table's
 * defaults (strings point at the table's), so that a target keeps up with
 * options added later; the target then sets what it needs. */
void stub_conf_defaults(const struct wggwd_plugin *p, void *conf);
/* A broken invariant: say which on fd 2 (stderr may be /dev/null), abort. */
void stub_fail(const char *what) __attribute__((noreturn));
/* Run the loop until nothing is left to do, then check it is empty. */
void stub_loop_settle(void);

#endif
