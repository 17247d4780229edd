// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The wggwd plugin ABI: everything a stage plugin sees of the daemon.
 *
 * One stage per shared object. The object exports exactly one symbol,
 * `wggwd_plugin` (a struct wggwd_plugin), filled with WGGWD_PLUGIN_DEFINE().
 *
 * ABI 2.2 (2.1: WGGWD_ITEM_REFUSED; 2.2: ops.dump_slices). Compatibility
 * rules (checked by the loader):
 *   - abi_major must equal the host's WGGWD_ABI_MAJOR (1.x is refused);
 *   - abi_minor must be <= the host's WGGWD_ABI_MINOR;
 *   - structs only ever grow at the end, and every struct that crosses
 *     the boundary says how big it is: a `size` first field (the
 *     descriptor, ops, host, item, peer, device, peer state, link), or a
 *     stride beside an array (option tables: the descriptor's opt_size;
 *     dumps: the callback's stride). The host reads `size` bytes of what
 *     a plugin gives it and treats the rest as 0/NULL; a plugin reads a
 *     field added after its own minor only after WGGWD_HAS();
 *   - variable-length data (packet bytes, allowed IPs) is held by
 *     reference and owned by the core: no fixed caps in the structs;
 *   - `name` must equal the file stem ("resolver-static" for
 *     resolver-static.so) and the name used in YAML.
 *
 * Threading: every callback runs on the daemon's single loop thread, except
 * what a plugin runs on threads of its own. The host calls that may be made
 * from another thread are post(), now_ns(), realtime_ns() and hash().
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

#define WGGWD_ABI_MAJOR 2
#define WGGWD_ABI_MINOR 2

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

/* Does a struct that carries its own `size` (as filled by whoever built
 * it) hold `field`? Use before reading a field added after 2.0. */
#define WGGWD_HAS(s, type, field) \
	((s)->size >= offsetof(type, field) + sizeof(((type *)0)->field))
/* Element i of an array whose elements are `stride` bytes apart. */
#define WGGWD_AT(type, base, i, stride) \
	((type *)((const char *)(base) + (size_t)(i) * (stride)))

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
/* A source that keeps the packet it emitted and can re-send it from its
 * original sender once the peer is installed (installers' reinject). */
#define WGGWD_F_RESENDS (1u << 1)

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
	WGGWD_OP_REMOVE,  /* remove; item->reason says why                */
};

enum wggwd_origin {
	WGGWD_ORIGIN_NONE = 0, /* not wggwd's (made by hand, by wg-quick) */
	WGGWD_ORIGIN_PULL,
	WGGWD_ORIGIN_PUSH,
	WGGWD_ORIGIN_STATIC,
};

/*
 * Why an item stopped (verdict DROP or ERROR) or why a peer is removed
 * (op REMOVE). The core names them (host->reason_name, metrics, logs).
 * New reasons are only ever appended; a plugin with a reason of its own
 * uses WGGWD_R_OTHER and says what in item->detail.
 */
enum wggwd_reason {
	WGGWD_R_NONE = 0,
	WGGWD_R_OTHER,              /* see item->detail                      */
	WGGWD_R_SHUTDOWN,           /* the daemon is stopping                */
	WGGWD_R_NO_MEMORY,
	WGGWD_R_INTERNAL,
	WGGWD_R_INFLIGHT_DUPLICATE, /* the same key is already on its way    */
	/* decoder */
	WGGWD_R_SHORT,
	WGGWD_R_LONG,
	WGGWD_R_TYPE,
	WGGWD_R_MAC1,
	WGGWD_R_STATIC,             /* the initiator's static key did not open */
	WGGWD_R_TIMESTAMP,          /* the timestamp did not open             */
	WGGWD_R_SKEW,               /* timestamp too far from our clock       */
	WGGWD_R_REPLAY,             /* not newer than the key's last one      */
	/* resolver / store */
	WGGWD_R_UNKNOWN_KEY,        /* the control plane does not know it     */
	WGGWD_R_UNKNOWN_CACHED,     /* ... as remembered by a store           */
	WGGWD_R_BUDGET,             /* lookup budget spent                    */
	WGGWD_R_BACKOFF,            /* the key failed recently                */
	WGGWD_R_BREAKER_OPEN,       /* the control plane is failing           */
	WGGWD_R_OVERLOADED,         /* queue full                             */
	WGGWD_R_QUEUE_TIMEOUT,      /* waited too long for a lookup slot      */
	WGGWD_R_RATE_LIMITED,       /* per-key lookup limit                   */
	WGGWD_R_HTTP_STATUS,
	WGGWD_R_TIMEOUT,
	WGGWD_R_BAD_ANSWER,         /* an answer we could not use             */
	WGGWD_R_KEY_MISMATCH,       /* an answer about another key            */
	WGGWD_R_POLICY,             /* allowed IPs outside the policy         */
	WGGWD_R_CONNECT,
	WGGWD_R_TLS,
	WGGWD_R_STORE_WRITE,
	WGGWD_R_STORE_CLOSED,
	WGGWD_R_STALE,              /* an older version than the one held     */
	/* push */
	WGGWD_R_BAD_MESSAGE,
	WGGWD_R_NO_PUBLIC_KEY,
	/* installer */
	WGGWD_R_INSTALL_FAILED,
	WGGWD_R_REMOVE_FAILED,
	WGGWD_R_INSTALLER_NOT_READY,
	/* removals (op REMOVE) */
	WGGWD_R_IDLE,               /* no activity for the evictor's `idle`   */
	WGGWD_R_GRACE,              /* no first handshake within `grace`      */
	WGGWD_R_MAX_PEERS,          /* over the evictor's budget              */
	WGGWD_R_RECONCILE,          /* on the interface, unknown to the store */
	WGGWD_R_CLOSED,             /* its relay connection closed            */
	WGGWD_R_PUSHED,             /* the control plane pushed a removal     */
	WGGWD_R_REVOKED,            /* the control plane no longer knows it   */
	WGGWD_R_EXPIRED,            /* its lease ran out                      */
	WGGWD_R_OPERATOR,           /* asked for by hand                      */
	WGGWD_R_UNVERIFIED,         /* its answer expired and the control plane
	                             * could not be asked for `max_stale`     */
	WGGWD_R_COUNT_2_0           /* not a reason: how many 2.0 knows       */
};

union wggwd_sockaddr {
	struct sockaddr sa;
	struct sockaddr_in in4;
	struct sockaddr_in6 in6;
};

/* One allowed IP. A value type, frozen at 2.0: never grows. */
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
#define WGGWD_PEER_HAS_EXPIRES (1u << 7)
#define WGGWD_PEER_HAS_HANDSHAKE (1u << 8) /* last_handshake_sec is set */

/*
 * A peer's configuration. Owned by the core (one per item); grows at the
 * end. The allowed IPs are held by reference: grow the array with
 * host->allowed_reserve() (no fixed cap); n_allowed may be lowered freely.
 */
struct wggwd_peer {
	uint32_t size;          /* sizeof(struct wggwd_peer) of the host     */
	uint32_t has;           /* WGGWD_PEER_HAS_*                          */
	uint8_t public_key[WGGWD_KEY_LEN];
	uint8_t preshared_key[WGGWD_KEY_LEN]; /* secret: wiped with the item */
	union wggwd_sockaddr endpoint;
	uint16_t keepalive;     /* seconds the peer is configured with      */
	uint8_t origin;         /* enum wggwd_origin                        */
	uint8_t reserved0;
	uint32_t n_allowed;
	struct wggwd_allowed_ip *allowed; /* core-owned                     */
	uint64_t version;       /* push ordering: older never wins          */
	uint32_t ttl_s;         /* how long a resolver's answer may be cached */
	uint32_t reserved1;
	int64_t expires_at;     /* lease end, Unix seconds (HAS_EXPIRES)    */
	/* On removals, when known: the peer's last handshake (Unix seconds;
	 * HAS_HANDSHAKE) and endpoint (HAS_ENDPOINT), so that a stage can
	 * tell a peer whose session was still live. */
	int64_t last_handshake_sec;
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
/* Set by the core on items that did not come from the pipeline's source
 * (host->inject, host->retire); the source's done never sees them. */
#define WGGWD_ITEM_INJECTED (1u << 7)
/* There is no initiation to re-send (a returning client's data packet, a
 * revalidation): an installer completes by role inversion, whatever its
 * `completion`. */
#define WGGWD_ITEM_INVERT (1u << 8)
/* A revalidation: a stage asks again about a key that is installed (its
 * cached answer expired). Resolvers answer as usual; an answer of unknown
 * (or one the policy refuses) removes the peer (WGGWD_R_REVOKED). */
#define WGGWD_ITEM_REVALIDATE (1u << 9)
/* Set by a store: the key resolved before (its answer expired, or it has
 * history), so it is no stranger: resolvers serve it before never-seen
 * keys (a fresh-key flood must not lock out returning clients). */
#define WGGWD_ITEM_RETURNING (1u << 10)
/* Since 2.1. Set by a source, with WGGWD_ITEM_INVERT, on an item it makes
 * for a key that knocked moments ago: the interface answered that client
 * with a cookie reply (it is under load, PROTOCOL.md (c)) at
 * rx_realtime_ns, so the client waits 5 s before it tries again, but now
 * holds a cookie, and its answer to an initiation from the interface will
 * carry a valid mac2. An installer installs the peer afresh at once
 * (removed and added again with the endpoint and a keepalive: the
 * interface initiates), whether it had it or not; a peer it added anew
 * after that reply, still waiting for its handshake, is left as it is
 * (the interface is initiating to a client that holds the cookie). An
 * installer of 2.0 sees only WGGWD_ITEM_INVERT. */
#define WGGWD_ITEM_REFUSED (1u << 11)

/* Time points: CLOCK_MONOTONIC ns (host->now_ns) when the item passed
 * each; the core keeps latency histograms of them. */
enum wggwd_mark {
	WGGWD_T_RX = 0,  /* set by the source (or by emit)                */
	WGGWD_T_DECODED,
	WGGWD_T_RESOLVED,
	WGGWD_T_STORED,
	WGGWD_T_INSTALLED,
	WGGWD_T_DONE,
	WGGWD_T_REINJECTED, /* the source re-sent the held packet         */
	WGGWD_T_MAX = 16,
};

/*
 * One unit of work travelling down a pipeline. The core allocates it
 * (host->item_new), zeroes it, and frees it (wiping secrets) once every
 * stage it reached has seen it in `done`. Stages fill in what they know.
 * Grows at the end; `size` is the host's sizeof.
 */
struct wggwd_item {
	uint32_t size;
	uint32_t type;          /* enum wggwd_msg: what is filled in       */
	uint32_t flags;         /* WGGWD_ITEM_*                             */
	uint32_t op;            /* enum wggwd_op                           */
	uint32_t transport;     /* enum wggwd_transport                    */
	uint32_t reason;        /* enum wggwd_reason (DROP/ERROR/REMOVE)   */
	const char *detail;     /* optional static words on the reason     */

	/* PKT: the packet as received (core-owned: host->item_pkt) */
	const uint8_t *pkt;
	uint32_t pkt_len;
	uint32_t ifindex;
	union wggwd_sockaddr src;      /* who sent it (not authenticated) */
	union wggwd_sockaddr dst;      /* where it was sent (our address)  */
	union wggwd_sockaddr endpoint; /* where to reach the peer: src for
	                                * UDP, the relay's socket for WSOCK */
	uint64_t rx_realtime_ns; /* CLOCK_REALTIME at receive              */

	/* PEER_KEY: set by the decoder */
	uint8_t public_key[WGGWD_KEY_LEN];
	uint8_t tai64n[12];
	uint32_t sender_index;

	/* PEER: set by a store, a resolver or a push source; never NULL */
	struct wggwd_peer *peer;

	uint64_t t[WGGWD_T_MAX];
};

/* ------------------------------------------------------------ callbacks */

enum wggwd_verdict {
	WGGWD_CONTINUE = 0, /* go on to the next stage                      */
	WGGWD_DROP,         /* stop here; item->reason says why             */
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

/* What an installer knows about its interface. The caller sets `size`
 * to its sizeof; the installer fills the fields that fit. */
struct wggwd_device {
	uint32_t size;
	char ifname[16];
	bool has_private_key;
	uint8_t private_key[WGGWD_KEY_LEN]; /* secret: wipe after use       */
	uint8_t public_key[WGGWD_KEY_LEN];
	uint16_t listen_port;
};

/* One peer as the interface reports it (an installer's dump). Arrays of
 * these travel with their stride: use WGGWD_AT(). */
struct wggwd_peer_state {
	uint32_t size;
	uint8_t origin;              /* enum wggwd_origin: NONE = not ours   */
	uint8_t reserved[3];
	uint8_t public_key[WGGWD_KEY_LEN];
	union wggwd_sockaddr endpoint;
	int64_t last_handshake_sec;  /* 0: never                             */
	uint32_t last_handshake_nsec;
	uint16_t keepalive;
	uint64_t rx_bytes, tx_bytes;
	uint64_t installed_ns;       /* host->now_ns() at install; 0 unknown */
	uint32_t n_allowed;          /* how many allowed IPs it has          */
};

typedef void (*wggwd_status_cb)(void *arg, int status);
typedef void (*wggwd_dump_cb)(void *arg, int status,
			      const struct wggwd_peer_state *peers, size_t n,
			      size_t stride);
/* A dump callback's status (ops.dump_slices): a slice, more follow. */
#define WGGWD_DUMP_MORE 1
typedef void (*wggwd_fn)(void *arg);

struct wggwd_host;
struct wggwd_inst;   /* a stage instance, as the core knows it           */
struct wggwd_timer;  /* a host timer                                     */
struct wggwd_hist;   /* a host histogram                                 */
struct wggwd_metric; /* a host metric family with labels                 */
struct wggwd_cmd;    /* an operator's command in progress                */
struct wggwd_installer;

/* What the core tells a stage about a pipeline it is linked into (ops
 * link). Grows at the end. */
struct wggwd_link {
	uint32_t size;
	const char *pipeline;        /* its name                             */
	uint32_t source_out;         /* enum wggwd_msg the source gives      */
	uint32_t source_flags;       /* the source's WGGWD_F_*               */
	uint32_t kinds_before;       /* mask of 1u << enum wggwd_kind of the
	                              * stages before this one (source too)  */
	uint32_t kinds_after;        /* ... and after it                     */
	uint32_t position;           /* this stage's index (0 = the source)  */
	uint32_t length;             /* how many stages the pipeline has     */
};

/*
 * Operations of a stage. Required for every kind: create, destroy.
 * source: start, stop.  decoder/resolver: process.  store: process
 * (sink) and lookup (cache).  installer: process, device, dump.
 * evictor: process, start, stop. Everything else is optional; a table
 * shorter than the host's (an older minor) reads as NULL past its size.
 */
struct wggwd_ops {
	uint32_t size; /* sizeof(struct wggwd_ops) the plugin was built with */

	/* Allocate the context from `conf` (filled and validated by the
	 * core from the option table). No I/O. Return 0 or -errno. */
	int (*create)(const struct wggwd_host *host, struct wggwd_inst *self,
		      const void *conf, void **ctx);
	/* Cross-field check, run by `wggwd check` too. Return NULL when
	 * fine, else a phrase; set *option to the option it is about (or
	 * NULL for the whole stage). */
	const char *(*validate)(const void *conf, const char **option,
				char *buf, size_t len);
	/* Cross-stage check, once per pipeline the stage is in: when the
	 * pipelines are linked (`check` too) with ctx NULL, and again after
	 * create with the stage's ctx (so it can learn its role there).
	 * Return NULL when fine, else a phrase (as validate). */
	const char *(*link)(void *ctx, const void *conf,
			    const struct wggwd_link *l, const char **option,
			    char *buf, size_t len);
	/* Open sockets, arm timers. Return 0 or -errno. A start that fails
	 * must first release what it made (host->timer_free, handles): stop
	 * is not called for it, and the core waits for those to close. */
	int (*start)(void *ctx);
	/* Handle one item; return an enum wggwd_verdict. Items with op
	 * REMOVE reach only stores (sink), installers and evictors. */
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
	/* An item this stage saw (for a source: emitted) finished with this
	 * verdict: ACK it, re-send a held packet, remember a negative
	 * answer, free the stage's slot... Called once for every stage the
	 * item reached, in pipeline order, and for the stage that injected
	 * it (host->inject) if it did not reach it; the source last (never
	 * for items the source did not emit). */
	void (*done)(void *ctx, struct wggwd_item *item, int verdict);

	/* installer: what it knows of its interface (see wggwd_device). */
	int (*device)(void *ctx, struct wggwd_device *dev);
	/* installer: the interface's peers, asynchronously. The array is
	 * valid during the callback only. */
	int (*dump)(void *ctx, wggwd_dump_cb cb, void *arg);
	/* installer, optional: what it knows of one peer now, from its own
	 * table (no I/O): 0 and *ps filled up to ps->size, or -ENOENT. */
	int (*peer)(void *ctx, const uint8_t key[WGGWD_KEY_LEN],
		    struct wggwd_peer_state *ps);
	/* Optional, any kind (sources too): a peer was removed from the
	 * interface of this stage's pipeline (item: op REMOVE, the reason,
	 * and in item->peer what was known: endpoint, last handshake). */
	void (*removed)(void *ctx, const struct wggwd_item *item);

	/* Optional, any kind: `wggwd check` runs it after create, without
	 * start: open what run would open and say what would fail there
	 * (a secret file's mode, a missing directory, socket, interface,
	 * namespace, a capability the stage needs). NULL when fine, else a
	 * phrase located at *option (NULL: the stage). May block. */
	const char *(*preflight)(void *ctx, const char **option, char *buf,
				 size_t len);
	/* Optional, any kind: is the stage ready to do its job now (a
	 * source connected, an installer's interface there)? 0 yes, else
	 * not, with the reason in buf (/readyz). */
	int (*status)(void *ctx, char *buf, size_t len);
	/* Optional, any kind: an operator's command (`wggwd ctl`), such as
	 * "cache-flush" with args {"key": "...", "negative": true}. Answer
	 * once with host->reply (now or later); return -ENOTSUP for a verb
	 * the stage does not know. args and the reply are JSON text. */
	int (*command)(void *ctx, struct wggwd_cmd *cmd, const char *verb,
		       const char *args);

	/* installer, optional (2.2; check with WGGWD_HAS first): as dump,
	 * but the peers come in slices with the loop serving other events
	 * in between, so that judging 10^5 peers never holds up a knocking
	 * client: cb(arg, WGGWD_DUMP_MORE, slice, n, stride) for each slice,
	 * then cb(arg, 0, NULL, 0, stride) once at the end; or, instead of
	 * what is left, once with -errno (forget the slices seen). Each
	 * slice is valid during its callback only. */
	int (*dump_slices)(void *ctx, wggwd_dump_cb cb, void *arg);
};

/* A handle on the installer serving a stage's pipeline. */
struct wggwd_installer {
	void *ctx;
	const struct wggwd_ops *ops;
	const char *name;
};

/* A metric family a plugin registers (host->metric). Exposed as
 * wggwd_<name>{stage="...",plugin="...",<labels>}: follow Prometheus'
 * conventions (base units, _total for counters). Grows at the end. */
enum wggwd_metric_type {
	WGGWD_METRIC_COUNTER = 1, /* cells: uint64_t *                      */
	WGGWD_METRIC_GAUGE,       /* cells: int64_t *                       */
	WGGWD_METRIC_HISTOGRAM,   /* cells: struct wggwd_hist * (observe)   */
};
struct wggwd_metric_desc {
	uint32_t size;
	uint32_t type;              /* enum wggwd_metric_type               */
	const char *name;           /* "lookups_total"                      */
	const char *help;
	const char *const *labels;  /* NULL-terminated names, or NULL       */
	const double *bounds;       /* histograms: upper bounds, or NULL    */
	size_t n_bounds;
};

/* host->inject flags */
#define WGGWD_INJECT_LOOKUP (1u << 0)

/* Default histogram buckets (seconds): 100 us to 10 s, for JIT. */
#define WGGWD_HIST_DEFAULT NULL

/*
 * Services of the host. `self` is the instance handle passed to create.
 * All calls are loop-thread only, except post(), now_ns() and hash().
 * Services added after 2.0 are checked with WGGWD_HAS(host, struct
 * wggwd_host, field) before use.
 */
struct wggwd_host {
	uint32_t size; /* sizeof(struct wggwd_host) of the host            */
	uint16_t abi_major, abi_minor;

	struct uv_loop_s *loop;

	/* ---- logging */
	void (*log)(struct wggwd_inst *self, int level, const char *fmt, ...)
		WGGWD_PRINTF(3, 4);
	/* As log, but at most a few lines per call site (fmt) and 10 s;
	 * the next line that gets through says how many were suppressed.
	 * For anything an outside sender can trigger. */
	void (*log_limited)(struct wggwd_inst *self, int level,
			    const char *fmt, ...) WGGWD_PRINTF(3, 4);
	/* The instance's name in YAML (for messages). */
	const char *(*name)(struct wggwd_inst *self);
	/* "unknown_key" for WGGWD_R_UNKNOWN_KEY, ... */
	const char *(*reason_name)(uint32_t reason);

	/* ---- metrics. Counters and gauges are named "<instance>.<name>";
	 * the pointer stays valid until destroy. Increment it directly. */
	uint64_t *(*counter)(struct wggwd_inst *self, const char *name);
	int64_t *(*gauge)(struct wggwd_inst *self, const char *name);
	/* A histogram of observations in base units (seconds). `bounds`
	 * are the upper bounds, ascending (WGGWD_HIST_DEFAULT: JIT's). */
	struct wggwd_hist *(*histogram)(struct wggwd_inst *self, const char *name,
					const double *bounds, size_t n);
	void (*observe)(struct wggwd_hist *h, double value);

	/* ---- time and hashing (any thread) */
	uint64_t (*now_ns)(void);      /* CLOCK_MONOTONIC, ns              */
	uint64_t (*realtime_ns)(void); /* CLOCK_REALTIME, ns               */
	/* SipHash with a key drawn at start: for tables whose keys an
	 * outside sender chooses. */
	uint64_t (*hash)(const void *data, size_t len);

	/* ---- timers and the thread pool */
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
	/* Thread-safe: run fn(arg) on the loop soon. Returns 0 or -errno
	 * (-ESHUTDOWN once the daemon is stopping: then fn never runs). */
	int (*post)(struct wggwd_inst *self, wggwd_fn fn, void *arg);

	/* ---- items */
	struct wggwd_item *(*item_new)(struct wggwd_inst *self);
	void (*item_free)(struct wggwd_inst *self, struct wggwd_item *item);
	/* Copy len bytes into the item as its packet. 0 or -ENOMEM. */
	int (*item_pkt)(struct wggwd_inst *self, struct wggwd_item *item,
			const void *data, size_t len);
	/* Append n allowed IPs to item->peer (zeroed); returns the first,
	 * or NULL (out of memory; nothing changed). */
	struct wggwd_allowed_ip *(*allowed_reserve)(struct wggwd_inst *self,
						     struct wggwd_item *item,
						     size_t n);
	/* This stage's own pointer on this item (NULL at first): state it
	 * keeps with the item, freed by the stage in its `done`. */
	void **(*slot)(struct wggwd_inst *self, struct wggwd_item *item);

	/* A source hands an item to its pipeline. 0: the item is on its way
	 * and the source's done will see it, once. <0 (-ESHUTDOWN while
	 * stopping): refused and freed, done will not be called. */
	int (*emit)(struct wggwd_inst *self, struct wggwd_item *item);
	/* Finish an item a stage returned WGGWD_PENDING for. */
	void (*complete)(struct wggwd_inst *self, struct wggwd_item *item,
			 int verdict);
	/* Run an item (from item_new) through the rest of the first pipeline
	 * this stage is in, starting after it (a store re-installing what it
	 * holds, say) — after its first step with WGGWD_INJECT_LOOKUP (a
	 * store that is also a cache: through the resolver). It gets
	 * WGGWD_ITEM_INJECTED. Returns 0, or -ENOENT if nothing follows
	 * (-ESHUTDOWN while stopping); on failure the item has been freed. */
	int (*inject)(struct wggwd_inst *self, struct wggwd_item *item,
		      uint32_t flags);
	/* Remove the peer `key` from the interface of this stage's
	 * pipeline, through the pipeline: an item with op REMOVE and
	 * `reason` goes through its store (sink), installer and evictor,
	 * and each sees it in done. 0 or -errno. */
	int (*retire)(struct wggwd_inst *self, const uint8_t key[WGGWD_KEY_LEN],
		      uint32_t reason);

	/* A stop that was asked for has finished (see ops.stop). */
	void (*stopped)(struct wggwd_inst *self);

	/* Read a secret file: refused unless it is a regular file owned by
	 * root or by the daemon's user and not readable or writable by group
	 * or others. Leading/trailing white space is stripped. Returns the
	 * length, or -errno with a logged reason. The caller wipes buf. */
	ssize_t (*secret_read)(struct wggwd_inst *self, const char *path,
			       uint8_t *buf, size_t cap);

	/* The installer of this stage's pipeline(s), or NULL if none. Read
	 * with its device and dump ops; change it only through items. */
	const struct wggwd_installer *(*installer)(struct wggwd_inst *self);

	/* ---- metrics with labels (see struct wggwd_metric_desc) */
	struct wggwd_metric *(*metric)(struct wggwd_inst *self,
				       const struct wggwd_metric_desc *d);
	/* The cell for these label values (one per label name); valid
	 * until destroy. NULL: out of memory. */
	void *(*metric_cell)(struct wggwd_metric *m, const char *const *values);

	/* ---- operator commands: answer cmd (ops.command) once; status 0
	 * and a JSON reply, or -errno and a message. */
	void (*reply)(struct wggwd_cmd *cmd, int status, const char *json);
};

/* ------------------------------------------------------------ descriptor */

struct wggwd_plugin {
	uint16_t abi_major;     /* since 1.0 */
	uint16_t abi_minor;
	uint32_t size;          /* sizeof(struct wggwd_plugin) at build     */
	uint32_t opt_size;      /* sizeof(struct wggwd_opt): the tables' stride */
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
		.opt_size = sizeof(struct wggwd_opt),                      \
		.build_sig = WGGWD_BUILD_SIG,                              \
		__VA_ARGS__}

#ifdef __cplusplus
}
#endif

#endif /* WGGWD_PLUGIN_H */
