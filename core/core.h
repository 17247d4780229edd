// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Internal to the core: nothing here is seen by plugins. */
#ifndef WGGWD_CORE_H
#define WGGWD_CORE_H

#include <stdio.h>
#include <yaml.h>

#include <uv.h>

#include <wggwd/plugin.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#ifndef WGGWD_PLUGIN_DIR
#define WGGWD_PLUGIN_DIR "/usr/local/lib/wggwd/plugins"
#endif

/* log.c */
extern int log_level;
void log_msg(int level, const char *prefix, const char *fmt, ...)
	WGGWD_PRINTF(3, 4);
void log_vmsg(int level, const char *prefix, const char *fmt, va_list ap);
#define die_oom() log_fatal_oom(__FILE__, __LINE__)
void log_fatal_oom(const char *file, int line) __attribute__((noreturn));
bool log_to_journal(void);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
/* src into dst[size] (size > 0), cut short if need be: snprintf's "%s"
 * without its cost, for the per-item paths */
void strtrunc(char *dst, size_t size, const char *src);

/* metrics.c: named counters and gauges */
struct metric;
uint64_t *metrics_counter(const char *name);
int64_t *metrics_gauge(const char *name);
struct wggwd_hist *metrics_histogram(const char *name, const double *bounds,
				     size_t n);
void metrics_observe(struct wggwd_hist *h, double v);
void metrics_dump(FILE *f, bool json);
int metrics_write_file(const char *path);
void metrics_reset(void);

/* loader.c */
struct plugin {
	struct plugin *next;
	char *path;
	void *dl;
	int fd;                   /* what dlopen read, open while loaded */
	struct wggwd_plugin desc; /* copied: missing tail fields zero */
	struct wggwd_ops ops;     /* likewise */
};
struct search_path {
	size_t n;
	char *dir[32];
};
void search_path_init(struct search_path *sp, const struct wggwd_list *cfg);
void search_path_free(struct search_path *sp);
/* Find and load plugin NAME; on failure, returns NULL and writes why. */
struct plugin *plugin_load(const struct search_path *sp, const char *name,
			   char *err, size_t errlen);
/* Load one file (a path); NULL and a reason on failure. */
struct plugin *plugin_load_file(const char *path, char *err, size_t errlen);
/* Every plugin file found in the search path (for `wggwd plugins`). */
int plugin_list(const struct search_path *sp,
		void (*cb)(const char *path, void *arg), void *arg);
void plugins_unload_all(void);
const char *kind_name(uint32_t kind);
const char *msg_names(uint32_t mask, char *buf, size_t len);

/* opts.c: option tables */
struct opt_ctx {
	const char *file;
	const char *prefix;   /* "stage: " or "" */
	yaml_document_t *doc;
	const char *const *skip; /* keys the caller handles itself */
	int errors;
};
void opt_error(struct opt_ctx *oc, yaml_mark_t m, const char *fmt, ...)
	WGGWD_PRINTF(3, 4);
/* Fill conf from defaults, then from mapping node `map` (0: none). */
int opts_apply(struct opt_ctx *oc, const struct wggwd_opt *opts, void *conf,
	       int map, yaml_mark_t where);
/* Set one option from a string (defaults; `wggwd decode`). */
int opt_set_string(const struct wggwd_opt *o, void *conf, const char *val,
		   char *err, size_t errlen);
void opts_free(const struct wggwd_opt *opts, void *conf);
const char *opt_type_name(enum wggwd_opt_type t);
void opts_print_help(FILE *f, const struct wggwd_opt *opts, int indent);

/* config.c */
struct stage_conf {
	char *name;
	char *plugin_name;
	struct plugin *plugin;
	void *conf;            /* plugin's option struct */
	yaml_mark_t mark;      /* the stage's key */
	yaml_mark_t plugin_mark;
	int opts_map;          /* its options: node, while the file is parsed */
	bool opts_ok;          /* and they were all valid */
	uint32_t pipelines;    /* how many pipelines use it */
};
struct pipeline_conf {
	char *name;
	yaml_mark_t mark;
	size_t n;
	struct stage_conf **stages;
	yaml_mark_t *marks;
};
struct core_conf {
	struct wggwd_list plugin_path;
	int log_level;
	char *stats_file;
	int64_t stats_interval_ms;
	int64_t drain_timeout_ms;
	struct sockaddr_storage http_listen; /* family 0: none */
	char *control_socket;
};
struct config {
	char *file;
	struct core_conf core;
	size_t n_stages, n_pipelines;
	struct stage_conf *stages;
	struct pipeline_conf *pipelines;
	struct search_path sp;
};
/* Parse, load plugins, validate, link. Errors go to stderr as
 * FILE:LINE:COL: ...; returns NULL if there was any. */
struct config *config_load(const char *file);
void config_free(struct config *c);
extern const struct wggwd_opt core_opts[];
/* What ops.link is told about stage i of a pipeline. */
void pipeline_link_info(const struct pipeline_conf *pc, size_t i,
			struct wggwd_link *l);

/* pipeline.c / daemon.c */
struct runtime;
struct runtime *runtime_new(uv_loop_t *loop, struct config *c);
int runtime_start(struct runtime *rt);
/* Stop sources, drain for drain_ms, stop the rest; done(arg) at the end. */
void runtime_stop(struct runtime *rt, void (*done)(void *), void *arg);
void runtime_free(struct runtime *rt);
int daemon_run(const char *file);
/* Re-read the file and replace the running pipelines (SIGHUP, `ctl
 * reload`). cb (may be NULL) is called once with 0 and "reloaded", or
 * -errno and why the old configuration keeps running (-EINVAL: the file is
 * refused; -EIO: it did not start). Returns -EBUSY (cb not called) while
 * stopping or reloading. */
typedef void (*daemon_reload_cb)(void *arg, int status, const char *msg);
int daemon_reload(daemon_reload_cb cb, void *arg);

/* check.c: `wggwd check` (schema, warnings, then unless offline the
 * preflight); 0 ok, 1 refused */
int check_config(const char *file, bool offline, bool quiet);

/* notify.c: systemd's notification protocol ($NOTIFY_SOCKET) */
void notify_init(void);
bool notify_enabled(void);
void notify(const char *fmt, ...) WGGWD_PRINTF(1, 2);
uint64_t notify_watchdog_usec(void); /* 0: no watchdog */

/* host.c */
extern struct wggwd_host host_services;
void inst_handle_closed(struct wggwd_inst *in);
struct wggwd_inst {
	struct runtime *rt;
	struct stage_conf *sc;
	const struct plugin *p;
	const struct wggwd_ops *ops;
	void *ctx;
	char prefix[96];
	bool created, started, stopping, stopped, done;
	int pending_handles; /* timers etc. not yet closed */
	struct pipeline *pl; /* for sources: the one pipeline they feed */
	const struct wggwd_installer *installer;
	struct wggwd_installer installer_ref;
	struct wggwd_inst *installer_inst;
	void (*on_stopped)(struct wggwd_inst *);
};
int host_init(uv_loop_t *loop);
void host_shutdown(void);     /* refuse further posts, close the async */
uint64_t now_mono_ns(void);
uint64_t now_real_ns(void);
uint64_t core_hash(const void *data, size_t len); /* keyed: SipHash */

/* items */
#define MAX_STEPS 64            /* a pipeline's steps (a store may be two) */
#define ITEM_PKT_INLINE 160     /* an initiation is 148 bytes            */
#define ITEM_ALLOWED_INLINE 4
#define ITEM_SLOTS 12           /* slots kept in the item; more: on the heap */
struct core_item {
	struct wggwd_item pub;
	struct wggwd_peer peer;
	struct pipeline *pl;
	unsigned step;
	unsigned first_step;            /* 0, or where an injected item began */
	uint64_t visited;               /* steps whose process/lookup ran */
	struct wggwd_inst *pending_in;  /* the stage that returned PENDING */
	struct wggwd_inst *injector;    /* host->inject's caller */
	struct core_item *next_inflight;
	bool in_inflight;
	bool in_call;                   /* inside the stage's process() */
	int deferred;                   /* complete() seen during process() */
	uint8_t *pkt_heap;
	uint32_t allowed_cap;
	struct wggwd_allowed_ip *allowed_heap;
	void **slots_heap;
	void *slots[ITEM_SLOTS];
	uint8_t pkt_inline[ITEM_PKT_INLINE];
	struct wggwd_allowed_ip allowed_inline[ITEM_ALLOWED_INLINE];
	/* ctl: told how the item finished; lookup_only: resolvers only */
	void (*ctl)(void *arg, struct wggwd_item *it, int verdict, const char *stage);
	void *ctl_arg;
	bool lookup_only;
	bool source_told;       /* the source's done ran early (a re-send) */
	uint64_t t_step;                /* when a resolver was called */
};
uint64_t runtime_live_items(struct runtime *rt);
int pipeline_item_emit(struct wggwd_inst *src, struct wggwd_item *it);
void pipeline_item_complete(struct wggwd_inst *in, struct wggwd_item *it,
			    int verdict);
int pipeline_item_inject(struct wggwd_inst *in, struct wggwd_item *it, uint32_t flags);
int pipeline_item_retire(struct wggwd_inst *in, const uint8_t *key, uint32_t reason);
void **pipeline_item_slot(struct wggwd_inst *in, struct wggwd_item *it);
struct wggwd_item *item_alloc(void);
void item_release(struct wggwd_item *it);
int item_set_pkt(struct wggwd_item *it, const void *data, size_t len);
struct wggwd_allowed_ip *item_allowed_reserve(struct wggwd_item *it, size_t n);
const char *reason_name(uint32_t reason);

/* pipeline.c: for the control socket and the HTTP listener */
typedef void (*ctl_item_cb)(void *arg, struct wggwd_item *it, int verdict,
			    const char *stage);
struct runtime *runtime_current(void);
size_t runtime_n_inst(const struct runtime *rt);
struct wggwd_inst *runtime_inst(struct runtime *rt, size_t i);
int pipeline_ctl_evict(struct runtime *rt, const uint8_t *key, ctl_item_cb cb, void *arg);
int pipeline_ctl_lookup(struct runtime *rt, const uint8_t *key, ctl_item_cb cb, void *arg);

/* why.c: the last outcomes, per key and overall (`wggwd ctl why`) */
void why_record(const uint8_t *key, uint64_t rx_real_ns, const char *pipeline,
		const char *stage, int verdict, const struct wggwd_item *it);
void why_reset(void);

/* observe.c: time to the first handshake, peers on the interfaces */
void observe_install(struct wggwd_inst *installer, const char *pipeline,
		     const uint8_t *key, uint64_t rx_real_ns);
void observe_start(uv_loop_t *loop);
void observe_stop(void);

/* observe.c: /metrics, /readyz and the control socket, for daemon.c */
struct core_conf;
int listeners_start(uv_loop_t *loop, const struct core_conf *cc);
void listeners_stop(void);

/* http.c: /metrics, /healthz, /readyz */
int http_start(uv_loop_t *loop, const struct sockaddr *addr);
void http_stop(void);

/* ctl.c: the control socket (`wggwd ctl`) */
int ctl_start(uv_loop_t *loop, const char *path);
void ctl_stop(void);
struct wggwd_cmd;
void ctl_stage_reply(struct wggwd_cmd *cmd, int status, const char *json);
/* ctl_client.c */
int ctl_main(int argc, char **argv);

/* util */
int tai64n_to_unix(const uint8_t tai[12], int64_t *sec, uint32_t *nsec);
size_t levenshtein(const char *a, const char *b);

#endif
