// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The install engine shared by installer-uapi and installer-netlink: ONE
 * policy, two transports. The engine is the plugin's context; it owns
 *   - the options every installer has (WGE_OPTS), the counters and the
 *     drop reasons;
 *   - the allowed-IPs policy (allowed_prefixes), applied to every install
 *     whatever brought it;
 *   - the table of what it installed (unchanged detection by a keyed
 *     digest of the configuration; origin and install time, which its
 *     dump reports);
 *   - completion (PROTOCOL.md (g)): reinject, inversion, none; the
 *     keepalive put back after the first handshake, after
 *     restore_timeout, and at stop; the collision retry (stall_retry);
 *   - dumps: one at a time, shared by every caller, annotated.
 * A backend only speaks its transport: it sets peer entries (in order,
 * batched as it likes) and reads the interface.
 */
#ifndef WGGWD_WGENGINE_H
#define WGGWD_WGENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wggwd/plugin.h>

#include "peerpolicy.h"
#include "wgutil.h"

enum wge_completion { WGE_INVERSION, WGE_REINJECT, WGE_NONE };

/* The options every installer has; a backend's conf begins with it. */
struct wge_conf {
	char *interface;
	int completion;
	int64_t inversion_keepalive;
	int64_t restore_poll_ms;
	int64_t restore_timeout_ms;
	int64_t stall_retry_ms;
	int64_t timeout_ms;
	struct wggwd_list allowed_prefixes; /* of char *: CIDR prefixes, or "any" */
	bool shadow;                    /* decide and report; change nothing */
};

extern const char *const wge_completions[];

/* The first entries of an installer's option table (then its own). */
#define WGE_OPTS                                                                             \
	{ .name = "interface", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,           \
	  .offset = offsetof(struct wge_conf, interface), .check = wg_check_ifname,           \
	  .help = "the WireGuard interface (wg0)" },                                          \
	{ .name = "completion", .type = WGGWD_OPT_ENUM, .def = "reinject",                    \
	  .choices = wge_completions, .offset = offsetof(struct wge_conf, completion),        \
	  .help = "how a knocking client gets its handshake: reinject (installed quietly; the source re-sends the captured initiation: needs a source that can, such as source-bpf), inversion (the interface initiates: endpoint + keepalive in one request; a collision with the client's own handshake is retried after stall_retry), or none (public key and allowed IPs only: the client's own retry, ~5 s)" }, \
	{ .name = "inversion_keepalive", .type = WGGWD_OPT_INT, .def = "25", .min = 1, .max = 65535, \
	  .offset = offsetof(struct wge_conf, inversion_keepalive),                          \
	  .help = "inversion: keepalive (seconds) installed with the endpoint to make the interface initiate, when the peer's own is 0; put back after the first handshake" }, \
	{ .name = "restore_poll", .type = WGGWD_OPT_DURATION, .def = "500ms", .min = 10, .max = 600000, \
	  .offset = offsetof(struct wge_conf, restore_poll_ms),                              \
	  .help = "while peers wait for their first handshake, how often the interface is dumped to see which completed (on a large interface stretched to 100x the last dump's duration, 10x while a collision retry is due: dumps take at most 1% of the time, 10% for a retry)" }, \
	{ .name = "restore_timeout", .type = WGGWD_OPT_DURATION, .def = "2m", .min = 1000, .max = 86400000, \
	  .offset = offsetof(struct wge_conf, restore_timeout_ms),                           \
	  .help = "a peer with no handshake this long after install gets its configured keepalive back anyway (else a dead client is initiated to forever)" }, \
	{ .name = "stall_retry", .type = WGGWD_OPT_DURATION, .def = "200ms", .min = 0, .max = 60000, \
	  .offset = offsetof(struct wge_conf, stall_retry_ms),                               \
	  .help = "inversion: a peer with no handshake this long after install (a collision with the client's own handshake) is removed and installed again, once; keep it above the clients' round-trip time (0: never)" }, \
	{ .name = "timeout", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 10, .max = 600000, \
	  .offset = offsetof(struct wge_conf, timeout_ms),                                   \
	  .help = "how long one request to the interface (or a dump's next part) may wait for its answer" }, \
	{ .name = "allowed_prefixes", .type = WGGWD_OPT_LIST, .min = 0, .max = 4096,          \
	  .offset = offsetof(struct wge_conf, allowed_prefixes), .check = wg_check_prefix,   \
	  .help = "the policy at install time: every allowed IP of a peer must lie inside one of these prefixes ([10.90.0.0/16, fd00:90::/32]), whatever brought the peer (a resolver's answer, a store's cached or re-installed one, a pushed peer, a static list); a peer asking for more is not installed (reason policy, counted as policy_refused, logged with its key), and if it is on the interface already it is removed. A resolver's own allowed_prefixes covers only the answers it gives; this covers the ones a store keeps for up to 30 days and the ones pushed. [any]: every allowed IP is installed as given. Unset: the same as [any], for configurations written before this option, and a warning at start when a store or a push source feeds this installer" }, \
	{ .name = "shadow", .type = WGGWD_OPT_BOOL, .def = "false",                          \
	  .offset = offsetof(struct wge_conf, shadow),                                       \
	  .help = "change nothing: beside an interface whose peers are installed ahead of time, every install and removal is only decided and reported (ctl why: \"shadow: would install\"; wggwd_shadow_decisions_total{decision}), with the lookups, their times and the knocks refused counted as usual: what JIT would do, before moving to it" }

/* ------------------------------------------------------------ backends */

enum wge_kind {
	WGE_INSTALL,   /* add or update the peer: psk, endpoint, keepalive, IPs */
	WGE_REMOVE,
	WGE_KEEPALIVE, /* set the keepalive of a peer that is there (update only) */
};

/* One peer entry to set. */
struct wge_ent {
	uint8_t kind;                  /* enum wge_kind */
	bool zero_first;               /* INSTALL: keepalive through 0 first, so
	                                * that the interface initiates */
	bool keep_ips;                 /* INSTALL: the interface has these allowed
	                                * IPs already: send them without replacing
	                                * (a replacement is a removal, then adds:
	                                * a packet between them is dropped; adding
	                                * a prefix the peer holds changes nothing,
	                                * and a peer the interface lost gets them
	                                * back) */
	uint16_t keepalive;            /* INSTALL, KEEPALIVE */
	uint8_t key[WGGWD_KEY_LEN];
	union wggwd_sockaddr ep;       /* INSTALL: AF_UNSPEC = leave it */
	const struct wggwd_peer *peer; /* INSTALL: psk, allowed IPs (has mask) */
	uint64_t tag;                  /* the engine's */
};

/* A request: n entries, applied in order. The backend sends it (alone or
 * with others), sets err to the first error, and calls wge_op_done. */
struct wge_op {
	struct wge_op *next;           /* the backend's queue */
	size_t n, sent, acked;         /* the backend's bookkeeping */
	int err;
	struct wge_op_priv *priv;      /* the engine's */
	struct wge_ent ent[];
};

/* What a backend sees of its engine. */
struct wge_env {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct wge_conf *conf;
};

struct wge_backend {
	/* Allocate; no I/O. */
	int (*create)(const struct wge_env *env, const void *conf, void **b);
	/* Blocking, once: the device (ifname set already) and how many
	 * peers the interface has. Nothing may be left open on failure. */
	int (*start)(void *b, struct wggwd_device *dev, size_t *npeers);
	/* Queue op; wge_op_done later (maybe from within). */
	void (*set)(void *b, struct wge_op *op);
	/* Read every peer; wge_dump_done later. One at a time. */
	int (*dump)(void *b);
	/* Stopping: finish every op queued (err -ECANCELED); sets may
	 * still follow (the keepalive restore at stop). */
	void (*cancel)(void *b);
	/* After the last op: close everything, then wge_closed(). */
	void (*close)(void *b);
	void (*destroy)(void *b);
};

/* A digest of a peer's configuration, summed over its allowed IPs in any
 * order (the kernel lists them in trie order). */
struct wge_acc {
	uint64_t s0, s1;
	uint32_t nips;
	uint32_t outside;              /* IPs outside allowed_prefixes */
	uint8_t hpsk[16];
};
void wge_acc_psk(const struct wge_env *env, struct wge_acc *a, const uint8_t *psk);
void wge_acc_ip(const struct wge_env *env, struct wge_acc *a, const struct wggwd_allowed_ip *ip);
/* At start: a peer the interface has (not installed by us: origin NONE
 * until an item names it), so that an install that would change nothing
 * is found unchanged. */
void wge_found(const struct wge_env *env, const struct wggwd_peer_state *ps,
	       const struct wge_acc *a);

void wge_op_done(const struct wge_env *env, struct wge_op *op);
/* peers: n entries of sizeof(struct wggwd_peer_state); the engine fills
 * size, origin and installed_ns. The array must stay as it is until the
 * backend's next dump, close or destroy: the engine judges it in slices,
 * after this returns. */
void wge_dump_done(const struct wge_env *env, int err, struct wggwd_peer_state *peers,
		   size_t n);
/* The interface may have lost every peer (wireguard-go restarted). */
void wge_lost(const struct wge_env *env);
void wge_closed(const struct wge_env *env);
/* "install of peer KEY", "keepalive restore of 3 peers"... */
void wge_op_what(const struct wge_op *op, char *buf, size_t len);

/* ----------------------------------------------------------- plugin ops */

int wge_create(const struct wggwd_host *host, struct wggwd_inst *self, const void *conf,
	       const struct wge_backend *be, void **ctx);
const char *wge_validate(const void *conf, const char **option, char *buf, size_t len);
const char *wge_link(void *ctx, const void *conf, const struct wggwd_link *l,
		     const char **option, char *buf, size_t len);
int wge_start(void *ctx);
int wge_process(void *ctx, struct wggwd_item *it);
void wge_stop(void *ctx);
void wge_destroy(void *ctx);
int wge_device(void *ctx, struct wggwd_device *dev);
int wge_dump(void *ctx, wggwd_dump_cb cb, void *arg);
int wge_dump_slices(void *ctx, wggwd_dump_cb cb, void *arg);
/* What the engine knows of one peer, from its table (no I/O): the
 * endpoint, last handshake and traffic as of the last dump. */
int wge_peer(void *ctx, const uint8_t key[WGGWD_KEY_LEN], struct wggwd_peer_state *ps);

/*
 * The plugin: a backend whose functions are P_create, P_start, P_set,
 * P_dump, P_cancel, P_close and P_destroy, its conf struct (which begins
 * with a struct wge_conf), its option table and validate (or NULL).
 */
#define WGE_INSTALLER(P, NAME, DESC, CONF, OPTIONS, VALIDATE)                    \
	static const struct wge_backend P##_backend = {                         \
		.create = P##_create, .start = P##_start, .set = P##_set,       \
		.dump = P##_dump, .cancel = P##_cancel, .close = P##_close,     \
		.destroy = P##_destroy };                                       \
	static const char *P##_validate(const void *conf, const char **option,  \
					char *buf, size_t len)                  \
	{                                                                       \
		const char *(*own)(const void *, const char **, char *, size_t) = \
			VALIDATE;                                               \
		const char *r = wge_validate(conf, option, buf, len);           \
                                                                                \
		return r || !own ? r : own(conf, option, buf, len);             \
	}                                                                       \
	static int P##_plugin_create(const struct wggwd_host *host,             \
				     struct wggwd_inst *self, const void *conf,  \
				     void **ctx)                                \
	{                                                                       \
		return wge_create(host, self, conf, &P##_backend, ctx);         \
	}                                                                       \
	/* the backend's preflight.c (`wggwd check`), given the engine */     \
	const char *P##_preflight(void *, const char **, char *, size_t);       \
	static const struct wggwd_ops P##_ops = {                               \
		.size = sizeof(struct wggwd_ops), .create = P##_plugin_create,  \
		.validate = P##_validate, .link = wge_link, .start = wge_start, \
		.process = wge_process, .stop = wge_stop,                       \
		.destroy = wge_destroy, .device = wge_device, .dump = wge_dump, \
		.peer = wge_peer, .preflight = P##_preflight,                   \
		.dump_slices = wge_dump_slices };                               \
	WGGWD_PLUGIN_DEFINE(.name = NAME, .version = WGGWD_VERSION,             \
			    .license = "MIT", .description = DESC,              \
			    .kind = WGGWD_INSTALLER, .in = WGGWD_MSG_PEER,      \
			    .out = WGGWD_MSG_EVENT, .opts = OPTIONS,            \
			    .conf_size = sizeof(CONF), .ops = &P##_ops)

#endif
