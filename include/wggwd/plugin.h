// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The wggwd plugin ABI: everything a stage plugin sees of the daemon.
 *
 * One stage per shared object. The object exports exactly one symbol,
 * `wggwd_plugin` (a struct wggwd_plugin), filled with WGGWD_PLUGIN_DEFINE().
 *
 * Compatibility rules (checked by the loader):
 *   - abi_major must equal the host's WGGWD_ABI_MAJOR;
 *   - abi_minor must be <= the host's WGGWD_ABI_MINOR;
 *   - structs only ever grow at the end: the host reads `size` bytes of the
 *     descriptor and of the ops table and treats missing fields as 0/NULL;
 *   - `name` must equal the file stem ("resolver-static" for
 *     resolver-static.so) and the name used in YAML.
 *
 * Threading: every callback runs on the daemon's single loop thread, except
 * what a plugin runs on threads of its own. The only host call that may be
 * made from another thread is host->post().
 */
#ifndef WGGWD_PLUGIN_H
#define WGGWD_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/types.h>

#include <wggwd/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WGGWD_ABI_MAJOR 1
#define WGGWD_ABI_MINOR 0

#define WGGWD_EXPORT __attribute__((visibility("default")))
#ifdef __cplusplus
#define WGGWD_EXTERN_C extern "C"
#else
#define WGGWD_EXTERN_C
#endif
#define WGGWD_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* The daemon's libuv loop; plugins that drive libuv themselves include
 * <uv.h> (the soname libuv.so.1 keeps its ABI in step). */
struct uv_loop_s;

#define WGGWD_KEY_LEN 32
#define WGGWD_PKT_MAX 256      /* bytes of a packet kept in an item */
#define WGGWD_MAX_ALLOWED 64   /* allowed IPs per peer in one item */

/* ---------------------------------------------------------------- stages */

enum wggwd_kind {
	WGGWD_SOURCE = 1,
	WGGWD_DECODER,
	WGGWD_RESOLVER,
	WGGWD_STORE,
	WGGWD_INSTALLER,
	WGGWD_EVICTOR,
};

/*
 * Message types flowing between stages. A descriptor's `in` is a mask of
 * the types it accepts, `out` the one it gives (0: passes its input on).
 * The core links stage B after stage A only if (A's out & B's in) != 0.
 */
enum wggwd_msg {
	WGGWD_MSG_NONE = 0,
	WGGWD_MSG_PKT = 1 << 0,      /* raw packet, source address, rx time   */
	WGGWD_MSG_PEER_KEY = 1 << 1, /* + initiator key, endpoint, timestamp  */
	WGGWD_MSG_PEER = 1 << 2,     /* + peer config (wggwd_peer.has mask)   */
	WGGWD_MSG_EVENT = 1 << 3,    /* + an installed/removed peer           */
};

/* Plugin flags. */
#define WGGWD_F_OWN_THREADS (1u << 0) /* runs threads; uses host->post()   */

/* --------------------------------------------------------------- options */

enum wggwd_opt_type {
	WGGWD_OPT_STR = 1,  /* char *                                      */
	WGGWD_OPT_INT,      /* int64_t                                     */
	WGGWD_OPT_BOOL,     /* bool                                        */
	WGGWD_OPT_DURATION, /* int64_t milliseconds ("250ms", "2s", "5m")  */
	WGGWD_OPT_SIZE,     /* uint64_t bytes ("64k", "8MiB")              */
	WGGWD_OPT_ENUM,     /* int: index into `choices`                   */
	WGGWD_OPT_ADDR,     /* struct sockaddr_storage ("1.2.3.4:5", "[::1]:5") */
	WGGWD_OPT_PATH,     /* char *                                      */
	WGGWD_OPT_SECRET_FILE, /* char * path; read with host->secret_read */
	WGGWD_OPT_LIST,     /* struct wggwd_list: of strings, or of tables
	                     * when `sub` is set                           */
};

/* Option flags. */
#define WGGWD_OPT_REQUIRED (1u << 0)
#define WGGWD_OPT_DEPRECATED (1u << 1)

struct wggwd_opt {
	const char *name;
	enum wggwd_opt_type type;
	const char *def;        /* default, in YAML syntax; NULL = none    */
	uint32_t flags;
	size_t offset;          /* where the value goes in the conf struct */
	int64_t min, max;       /* INT/DURATION/SIZE/LIST length; min==max==0: unbounded */
	const char *const *choices; /* ENUM: NULL-terminated               */
	const char *help;
	/* LIST of tables: each element is a struct of `sub_size` bytes
	 * filled from the `sub` option table. */
	const struct wggwd_opt *sub;
	size_t sub_size;
	/* Optional: check a value once it is parsed (`field` points at it
	 * in the conf struct; for a list of strings, at each element's
	 * char *). Return NULL if fine, else a phrase, which the core
	 * reports at the value's line and column. */
	const char *(*check)(const void *field, char *buf, size_t len);
};

/* A list option's value. For lists of strings `v` is char **; for lists
 * of tables it is an array of n structs of the option's sub_size. */
struct wggwd_list {
	size_t n;
	void *v;
};

#define WGGWD_OPT_END { NULL }

/* ----------------------------------------------------------------- items */

enum wggwd_transport {
	WGGWD_TR_NONE = 0,
	WGGWD_TR_UDP,   /* sniffed from the interface's UDP port          */
	WGGWD_TR_WSOCK, /* carried over a WebSocket relay                 */
	WGGWD_TR_PUSH,  /* pushed by a control plane                      */
};

enum wggwd_op {
	WGGWD_OP_ADD = 0, /* add or update                                */
	WGGWD_OP_REMOVE,
};

enum wggwd_origin {
	WGGWD_ORIGIN_NONE = 0,
	WGGWD_ORIGIN_PULL,
	WGGWD_ORIGIN_PUSH,
	WGGWD_ORIGIN_STATIC,
};

union wggwd_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in in4;
	struct sockaddr_in6 in6;
};

struct wggwd_allowed_ip {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t cidr;
	uint8_t addr[16];
};

/* wggwd_peer.has */
#define WGGWD_PEER_HAS_PUBLIC_KEY (1u << 0)
#define WGGWD_PEER_HAS_PRESHARED_KEY (1u << 1)
#define WGGWD_PEER_HAS_ENDPOINT (1u << 2)
#define WGGWD_PEER_HAS_KEEPALIVE (1u << 3)
#define WGGWD_PEER_HAS_ALLOWED_IPS (1u << 4)
#define WGGWD_PEER_HAS_VERSION (1u << 5)
#define WGGWD_PEER_HAS_TTL (1u << 6)

struct wggwd_peer {
	uint32_t has;
	uint8_t public_key[WGGWD_KEY_LEN];
	uint8_t preshared_key[WGGWD_KEY_LEN]; /* secret: wiped with the item */
	union wggwd_sockaddr endpoint;
	uint16_t keepalive;     /* seconds the peer is configured with      */
	uint16_t n_allowed;
	struct wggwd_allowed_ip allowed[WGGWD_MAX_ALLOWED];
	uint64_t version;       /* push ordering: older never wins          */
	uint32_t ttl_s;         /* how long a resolver's answer may be cached */
	uint8_t origin;         /* enum wggwd_origin                        */
};

/* wggwd_item.flags */
#define WGGWD_ITEM_AUTHENTICATED (1u << 0) /* decoder opened the timestamp  */
#define WGGWD_ITEM_CACHED (1u << 1)        /* a store answered: skip resolver */
#define WGGWD_ITEM_HAS_TIMESTAMP (1u << 2) /* tai64n is set                */
#define WGGWD_ITEM_MAC1_OK (1u << 3)       /* passed the cheap MAC check   */
/* Set by an installer that installed without role inversion: the source
 * should re-send the held packet (from its original source) so that the
 * interface answers it as responder. */
#define WGGWD_ITEM_REINJECT (1u << 4)
/* Set by an installer: the peer was already installed as asked; nothing
 * was changed (later stages still see the item, e.g. as activity). */
#define WGGWD_ITEM_UNCHANGED (1u << 5)
/* Set by a resolver with WGGWD_DROP: the key is unknown (as opposed to a
 * failed lookup), so a store may remember the answer. */
#define WGGWD_ITEM_NOT_FOUND (1u << 6)
/* Set by the core on items a stage injected with host->inject(): the
 * pipeline's source did not emit them and must not acknowledge them. */
#define WGGWD_ITEM_INJECTED (1u << 7)

/* Timeline: CLOCK_MONOTONIC ns when the item passed each point. */
enum wggwd_mark {
	WGGWD_T_RX = 0,  /* set by the source                             */
	WGGWD_T_DECODED,
	WGGWD_T_RESOLVED,
	WGGWD_T_STORED,
	WGGWD_T_INSTALLED,
	WGGWD_T_DONE,
	WGGWD_T_MAX = 8,
};

/*
 * One unit of work travelling down a pipeline. The core allocates it
 * (host->item_new), zeroes it, and frees it (wiping secrets) after the
 * source's `done` op has seen it. Stages fill in what they know.
 */
struct wggwd_item {
	uint32_t type;          /* enum wggwd_msg: what is filled in       */
	uint32_t flags;
	uint32_t op;            /* enum wggwd_op                           */
	uint32_t transport;     /* enum wggwd_transport                    */

	/* PKT: the packet as received */
	uint32_t pkt_len;       /* real length; pkt keeps the first
	                         * min(pkt_len, WGGWD_PKT_MAX) bytes       */
	uint8_t pkt[WGGWD_PKT_MAX];
	union wggwd_sockaddr src;      /* who sent it (not authenticated) */
	union wggwd_sockaddr dst;      /* where it was sent (our address)  */
	union wggwd_sockaddr endpoint; /* where to reach the peer: src for
	                                * UDP, the relay's socket for WSOCK */
	uint32_t ifindex;
	uint64_t rx_realtime_ns; /* CLOCK_REALTIME at receive              */

	/* PEER_KEY: set by the decoder */
	uint8_t public_key[WGGWD_KEY_LEN];
	uint8_t tai64n[12];
	uint32_t sender_index;

	/* PEER: set by a store, a resolver or a push source */
	struct wggwd_peer peer;

	/* DROP: a static string naming the reason ("bad_mac1", "unknown") */
	const char *drop_reason;

	/* Owned by the source that emitted the item (a relay connection,
	 * a message to acknowledge); the core never touches it. */
	void *source_ref;

	uint64_t t[WGGWD_T_MAX];
};

/* ------------------------------------------------------------ callbacks */

enum wggwd_verdict {
	WGGWD_CONTINUE = 0, /* go on to the next stage                      */
	WGGWD_DROP,         /* stop here; item->drop_reason says why        */
	WGGWD_PENDING,      /* the stage keeps the item and later calls
	                     * host->complete() with one of the others      */
	WGGWD_DONE,         /* stop here; nothing went wrong (e.g. a store
	                     * knew it was already installed)               */
	WGGWD_ERROR,        /* stop here; a failure (counted as an error)   */
};

enum wggwd_log_level {
	WGGWD_LOG_ERROR = 0,
	WGGWD_LOG_WARN,
	WGGWD_LOG_INFO,
	WGGWD_LOG_DEBUG,
};

/* What an installer knows about its interface. */
struct wggwd_device {
	char ifname[16];
	bool has_private_key;
	uint8_t private_key[WGGWD_KEY_LEN]; /* secret: wipe after use       */
	uint8_t public_key[WGGWD_KEY_LEN];
	uint16_t listen_port;
};

/* One peer as the interface reports it. */
struct wggwd_peer_state {
	uint8_t public_key[WGGWD_KEY_LEN];
	union wggwd_sockaddr endpoint;
	int64_t last_handshake_sec;  /* 0: never                             */
	uint32_t last_handshake_nsec;
	uint16_t keepalive;
	uint64_t rx_bytes, tx_bytes;
};

typedef void (*wggwd_status_cb)(void *arg, int status);
typedef void (*wggwd_dump_cb)(void *arg, int status,
			      const struct wggwd_peer_state *peers, size_t n);
typedef void (*wggwd_fn)(void *arg);

struct wggwd_host;
struct wggwd_inst;   /* a stage instance, as the core knows it           */
struct wggwd_timer;  /* a host timer                                     */
struct wggwd_installer;

/*
 * Operations of a stage. Required for every kind: create, destroy.
 * source: start, stop.  decoder/resolver: process.  store: process
 * (sink) and lookup (cache).  installer: process, device, dump, remove.
 * evictor: process, start, stop.
 */
struct wggwd_ops {
	uint32_t size; /* sizeof(struct wggwd_ops) the plugin was built with */

	/* Parse `conf` (filled and validated by the core from the option
	 * table), allocate the context. No I/O. Return 0 or -errno. */
	int (*create)(const struct wggwd_host *host, struct wggwd_inst *self,
		      const void *conf, void **ctx);
	/* Optional cross-field check, run by `wggwd check` too. Return
	 * NULL when fine, else a phrase; set *option to the option it is
	 * about (or NULL for the whole stage). */
	const char *(*validate)(const void *conf, const char **option,
				char *buf, size_t len);
	/* Open sockets, arm timers. Return 0 or -errno. A start that fails
	 * must first release what it made (host->timer_free, handles): stop
	 * is not called for it, and the core waits for those to close. */
	int (*start)(void *ctx);
	/* Handle one item; return an enum wggwd_verdict. */
	int (*process)(void *ctx, struct wggwd_item *item);
	/* Close everything; call host->stopped(self) from the last close
	 * callback (it may be called before stop returns). */
	void (*stop)(void *ctx);
	/* Free the context. */
	void (*destroy)(void *ctx);

	/* store: the cache role, before the resolver. CONTINUE = miss;
	 * CONTINUE with item->peer filled and WGGWD_ITEM_CACHED set = hit
	 * (the core skips the resolver and the store's sink role);
	 * DONE = nothing to do (already installed as asked);
	 * DROP = known-unknown key or replay. */
	int (*lookup)(void *ctx, struct wggwd_item *item);
	/* Optional, any kind: an item this stage saw (or, for a source,
	 * emitted) finished the pipeline with this verdict: ACK it, re-send
	 * a held packet, remember a negative answer, ... Called for every
	 * stage the item reached, in pipeline order, the source last. */
	void (*done)(void *ctx, struct wggwd_item *item, int verdict);

	/* installer */
	int (*device)(void *ctx, struct wggwd_device *dev);
	int (*dump)(void *ctx, wggwd_dump_cb cb, void *arg);
	int (*remove)(void *ctx, const uint8_t (*keys)[WGGWD_KEY_LEN],
		      size_t n, wggwd_status_cb cb, void *arg);
};

/* A handle on the installer serving a stage's pipeline. */
struct wggwd_installer {
	void *ctx;
	const struct wggwd_ops *ops;
	const char *name;
};

/*
 * Services of the host. `self` is the instance handle passed to create.
 * All calls are loop-thread only, except post().
 */
struct wggwd_host {
	uint32_t size; /* sizeof(struct wggwd_host) of the host            */
	uint16_t abi_major, abi_minor;

	struct uv_loop_s *loop;

	void (*log)(struct wggwd_inst *self, int level, const char *fmt, ...)
		WGGWD_PRINTF(3, 4);
	/* The instance's name in YAML (for messages). */
	const char *(*name)(struct wggwd_inst *self);

	/* Counters and gauges, named "<instance>.<name>"; the pointer stays
	 * valid until destroy. Increment it directly (one thread). */
	uint64_t *(*counter)(struct wggwd_inst *self, const char *name);
	int64_t *(*gauge)(struct wggwd_inst *self, const char *name);

	struct wggwd_timer *(*timer_new)(struct wggwd_inst *self, wggwd_fn cb,
					 void *arg);
	void (*timer_start)(struct wggwd_timer *t, uint64_t timeout_ms,
			    uint64_t repeat_ms);
	void (*timer_stop)(struct wggwd_timer *t);
	/* Stops and frees (asynchronously; the core waits for it). */
	void (*timer_free)(struct wggwd_timer *t);

	/* Run work(arg) on the thread pool, then after(arg, status) on the
	 * loop (status is UV_ECANCELED if cancelled at shutdown). */
	int (*queue_work)(struct wggwd_inst *self, wggwd_fn work,
			  wggwd_status_cb after, void *arg);

	/* Items: a source allocates one, fills it, emits it. */
	struct wggwd_item *(*item_new)(struct wggwd_inst *self);
	void (*item_free)(struct wggwd_inst *self, struct wggwd_item *item);
	int (*emit)(struct wggwd_inst *self, struct wggwd_item *item);
	/* Finish an item a stage returned WGGWD_PENDING for. */
	void (*complete)(struct wggwd_inst *self, struct wggwd_item *item,
			 int verdict);

	/* Thread-safe: run fn(arg) on the loop soon. Returns 0 or -errno
	 * (-ESHUTDOWN once the daemon is stopping: then fn never runs). */
	int (*post)(struct wggwd_inst *self, wggwd_fn fn, void *arg);

	/* A stop that was asked for has finished (see ops.stop). */
	void (*stopped)(struct wggwd_inst *self);

	/* Read a secret file: refused unless it is a regular file owned by
	 * root or by the daemon's user and not readable or writable by group
	 * or others. Leading/trailing white space is stripped. Returns the
	 * length, or -errno with a logged reason. The caller wipes buf. */
	ssize_t (*secret_read)(struct wggwd_inst *self, const char *path,
			       uint8_t *buf, size_t cap);

	/* The installer of this stage's pipeline(s), or NULL if none. */
	const struct wggwd_installer *(*installer)(struct wggwd_inst *self);

	/* Run an item (from item_new) through the rest of the first pipeline
	 * this stage is in, starting after it (a store re-installing what it
	 * holds, say). The item gets WGGWD_ITEM_INJECTED; stages see it as
	 * usual. Returns 0, or -ENOENT if nothing follows this stage (or
	 * -ESHUTDOWN while stopping); on failure the item has been freed. */
	int (*inject)(struct wggwd_inst *self, struct wggwd_item *item);
};

/* ------------------------------------------------------------ descriptor */

struct wggwd_plugin {
	uint16_t abi_major;     /* since 1.0 */
	uint16_t abi_minor;
	uint32_t size;          /* sizeof(struct wggwd_plugin) at build     */
	const char *build_sig;  /* WGGWD_BUILD_SIG                          */

	const char *name;       /* == file stem == YAML plugin name         */
	const char *version;
	const char *license;
	const char *description;

	uint32_t kind;          /* enum wggwd_kind                          */
	uint32_t in;            /* mask of enum wggwd_msg                   */
	uint32_t out;           /* enum wggwd_msg, or 0: passes input on    */
	uint32_t flags;         /* WGGWD_F_*                                */

	const struct wggwd_opt *opts; /* terminated by WGGWD_OPT_END        */
	size_t conf_size;
	const struct wggwd_ops *ops;
};

#define WGGWD_STR_(x) #x
#define WGGWD_STR(x) WGGWD_STR_(x)
/* What else must match for a plugin to share the host's structs. */
#define WGGWD_BUILD_SIG "ptr" WGGWD_STR(__SIZEOF_POINTER__) "-long" WGGWD_STR(__SIZEOF_LONG__)

#define WGGWD_PLUGIN_SYMBOL "wggwd_plugin"

/* Use once per plugin, with designated initialisers for the rest, in
 * the order of the struct (C++20 requires that order):
 *   WGGWD_PLUGIN_DEFINE(.name = "resolver-static", .kind = ..., ...);  */
#define WGGWD_PLUGIN_DEFINE(...)                                           \
	WGGWD_EXTERN_C WGGWD_EXPORT const struct wggwd_plugin wggwd_plugin = { \
		.abi_major = WGGWD_ABI_MAJOR,                              \
		.abi_minor = WGGWD_ABI_MINOR,                              \
		.size = sizeof(struct wggwd_plugin),                       \
		.build_sig = WGGWD_BUILD_SIG,                              \
		__VA_ARGS__}

#ifdef __cplusplus
}
#endif

#endif /* WGGWD_PLUGIN_H */
