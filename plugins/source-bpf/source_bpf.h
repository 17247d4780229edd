// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf's parts, one concern a file, linked into one source-bpf.so:
 *   source_bpf.c  options, counters, start/stop, how items end (the stage)
 *   sniff.c       the AF_PACKET socket, its filter, the recvmmsg read path
 *   watch.c       returning clients: ops.removed, the watch table, the
 *                 filter's regeneration
 *   load.c        the initiation rate (invert_above)
 *   cookie.c      the cookie watch: knocks the interface answered with a
 *                 cookie reply, installed afresh (cookie_watch)
 *   reinject.c    re-sending held initiations through raw IP sockets
 *   sbfilter.c    the classic BPF program; preflight.c `wggwd check`
 */
#ifndef WGGWD_SOURCE_BPF_H
#define WGGWD_SOURCE_BPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <sys/socket.h>

#include <uv.h>

#include "sbfilter.h"
#include "wgtable.h"
#include "wgutil.h"

#define BUF_LEN 512             /* >= 60 (IPv4 with options) + 8 + 148   */
#define CTRL_LEN 64             /* one SCM_TIMESTAMPNS                   */
#define STATS_MS 1000           /* kernel drop counter, interface check, watch expiry */
#define REJECT_AFTER_S 180      /* WireGuard's REJECT_AFTER_TIME         */
#define RETURN_GAP_NS 1000000000ull /* one returning item per key a second */
#define RETURN_PKT 32           /* what a returning item keeps: the data header */
#define LOAD_SLOTS 10           /* the initiation rate: over 10 slots ...  */
#define LOAD_SLOT_NS 100000000ull /* ... of 100 ms: the last second       */
#define KNOCK_SLOTS 1024        /* cookie watch: recent knocks, by endpoint */
#define COOKIE_SLOTS 8192       /* ... cookie replies, by endpoint       */
#define KNOCK_TTL_NS 5000000000ull /* a knock is answered within this      */
#define REFUSED_MAX 3           /* afresh installs a client, a KNOCK_TTL  */

struct conf {
	char *interface;
	int64_t port;
	int64_t batch;
	uint64_t rcvbuf;
	bool reinject;
	bool watch_returning;
	int64_t watch_max;
	int64_t invert_above;
	int64_t invert_hold_ms;
	bool cookie_watch;
};

/* A knock of a key the pipeline let in (cookie.c); rx_ns 0: empty. */
struct knock {
	union wggwd_sockaddr ep, dst;
	unsigned ifindex;
	uint8_t key[WGGWD_KEY_LEN];
	uint64_t rx_ns;         /* the knock's WGGWD_T_RX (now_ns scale)  */
	uint64_t window_ns;     /* the rate limit: since, and how many    */
	uint8_t fired;
	bool answered;          /* a reply with receiver index `last` made
	                         * its afresh install already            */
	uint32_t last;
};

/* A cookie reply seen (cookie.c); tag: the endpoint's hash (0: empty). */
struct cookie_seen {
	uint64_t tag, ns, real_ns;
	uint32_t index;         /* its receiver index (wire order)        */
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uint16_t port;
	unsigned ifindex;
	int fd;                 /* AF_PACKET; closed in on_closed        */
	int raw4, raw6;         /* re-injection; closed in destroy       */
	uv_poll_t poll;
	bool poll_init, stopping;
	struct wggwd_timer *timer;
	unsigned batch;
	struct mmsghdr *msgs;
	struct iovec *iov;
	struct sockaddr_ll *names;
	uint8_t *bufs, *ctrl;
	uint64_t *received, *emitted, *drop_parse, *drop_outgoing, *kernel_drops;
	uint64_t *reinjected, *reinject_failed;
	/* the initiation rate (invert_above) */
	uint32_t load[LOAD_SLOTS];
	uint64_t load_slot, load_sum, hot_until;
	bool hot;
	uint64_t *inverted_under_load;
	int64_t *g_rate, *g_under_load;
	/* returning clients */
	struct wgt watch;       /* public key -> struct watch, <= watch_max */
	struct wggwd_timer *regen; /* 0 ms: one filter rebuild per loop turn */
	bool regen_armed;
	size_t fit;             /* the kernel refused a filter of this many (0: never) */
	struct watch **armed;   /* scratch: watch_max */
	size_t n_armed;
	union wggwd_sockaddr *eps; /* scratch: watch_max */
	struct sock_filter *prog; /* scratch: sbf_size(watch_max) */
	uint64_t *watched, *returning, *return_failed, *watch_expired, *watch_full, *watch_late;
	int64_t *watch_entries;
	/* the cookie watch (NULL: off) */
	struct knock *knocks;   /* KNOCK_SLOTS */
	struct cookie_seen *cookies; /* COOKIE_SLOTS */
	uint64_t *cookie_replies, *cookie_reinstalls, *cookie_limited, *cookie_failed;
};

enum watch_state {
	W_ARMED = 1,            /* in the filter                          */
	W_INFLIGHT,             /* its item is on its way                 */
	W_SPENT,                /* used; kept for the rate limit          */
};

struct watch {
	struct wgt_ent h;       /* the peer's public key                  */
	union wggwd_sockaddr ep;
	uint64_t expires_ns;    /* now_ns scale: last handshake + 180 s   */
	uint64_t not_before_ns; /* the per-key rate limit                 */
	uint8_t state;
};

/* For what the outside can cause, or what repeats: rate-limited. */
#define log_limited(c, level, ...) (c)->host->log_limited((c)->self, (level), __VA_ARGS__)

/* source_bpf.c */
int emit_known(struct ctx *c, const uint8_t *key, uint32_t flags, const uint8_t *pkt,
	       size_t len, const union wggwd_sockaddr *src, const union wggwd_sockaddr *dst,
	       unsigned ifindex, uint64_t rx_realtime_ns);

/* sniff.c */
int attach_filter(int fd, struct sock_filter *f, size_t n);
void read_stats(struct ctx *c);
int open_sniffer(struct ctx *c);
int resolve_port(struct ctx *c);
int alloc_batch(struct ctx *c);
void on_poll(uv_poll_t *h, int status, int events);
void on_timer(void *arg);

/* watch.c */
int filter_apply(struct ctx *c);
void on_regen(void *arg);
void filter_dirty(struct ctx *c);
void sb_removed(void *ctx, const struct wggwd_item *it);
void watch_hit(struct ctx *c, const union wggwd_sockaddr *src,
	       const union wggwd_sockaddr *dst, unsigned ifindex,
	       const uint8_t *payload, size_t plen, uint64_t rx_ns);
void watch_done(struct ctx *c, const struct wggwd_item *it, int verdict);
bool watch_expire(void *arg, struct wgt_ent *h);

/* load.c */
bool load_note(struct ctx *c, uint64_t mono);
void load_tick(struct ctx *c);

/* cookie.c */
int cookie_open(struct ctx *c);
void cookie_free(struct ctx *c);
void cookie_sent(struct ctx *c, const union wggwd_sockaddr *to, const uint8_t *payload,
		 uint64_t now, uint64_t real_ns);
bool cookie_knock_done(struct ctx *c, const struct wggwd_item *it, const uint8_t *key);
void cookie_item_done(struct ctx *c, const struct wggwd_item *it, int verdict);

/* reinject.c */
int open_reinject(struct ctx *c);
int reinject(struct ctx *c, const struct wggwd_item *it);

/* preflight.c */
const char *sb_preflight_conf(const char *ifname, bool reinject, const char **option,
			      char *buf, size_t len);

#endif
