// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* installer-netlink's state, shared by its two files: installer_netlink.c
 * (the backend: the SET queue, socket I/O) and genl.c (sockets, the
 * family, messages, GET_DEVICE dumps). */
#ifndef WGGWD_INSTALLER_NETLINK_H
#define WGGWD_INSTALLER_NETLINK_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>
#include <sodium.h>
#include <uv.h>

#include "wgengine.h"
#include "wgutil.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

#define RBUF_SIZE (64 * 1024)  /* a dump's messages are at most 32 KiB   */
#define ABUF_SIZE 4096         /* a SET's answer: no echo (CAP_ACK); extack */
/* Dump messages read per wakeup: the kernel fills each inside recvmsg,
 * and a knocking client's packet waits behind it. */
#define READ_BUDGET 1
/* What the dump socket's reads ask for. The kernel sizes each dump
 * message to the largest read the socket has made, no less than
 * NLMSG_GOODSIZE (under 8 KiB) and no more than 32 KiB: 8 KiB is ~40
 * peers, which the kernel fills and we parse in ~50 us (~0.5 ms under
 * emulation), where a 32 KiB read held the loop, and a knock, four times
 * as long. A message cut short (a kernel that fills more) makes that dump
 * fail and the next ones read RBUF_SIZE. */
#define DUMP_CHUNK 8192
#define MIN_ENTRY 48           /* smallest peer entry (a removal), bytes */
/* A SET with at least this many new peers is sent from the thread pool:
 * the kernel precomputes each new peer's static-static DH inside sendmsg
 * (tens of microseconds each), which the loop should not wait for. A
 * smaller one (a knocking client's install) is sent at once. */
#define OFFLOAD_NEW 16
#define POOL_WAIT_NS 500000000ull /* longer: logged, counted (pool_waits) */

struct conf {
	struct wge_conf e; /* first: the engine's options */
	char *netns;
	uint64_t message_size;
};

/* --------------------------------------------------------------- state */

struct ctx;

struct nlsock {
	struct ctx *c;
	const char *what;
	int fd;
	uint32_t portid;
	uint32_t seq;             /* request in flight, 0: none */
	uv_poll_t poll;
	bool polling;
	struct wggwd_timer *timer;
};

/* Part of an op in a message: entry idx, its allowed IPs [from, to). */
struct ent_ref {
	struct wge_op *op;
	size_t idx;
	uint32_t from, to;
};

/* What a dump builds: peers, merged across messages. */
struct dump {
	struct wggwd_peer_state *v;
	size_t n, cap;
	bool fill;                        /* also digest configs (start) */
	struct wge_acc *acc;
	bool intr;
	/* device */
	bool has_priv, has_pub;
	uint8_t priv[WGGWD_KEY_LEN], pub[WGGWD_KEY_LEN];
	uint16_t port;
};

/*
 * A SET message. Two of them take turns (ring, below): while the thread
 * pool sends one (the kernel applies it inside sendmsg), the loop builds
 * the next, and the pool thread sends it as soon as the first is
 * answered without error, with no trip through the loop between them.
 */
enum { SLOT_BUILT, SLOT_SENDING, SLOT_DONE };

struct slot {
	uint8_t *buf;                     /* may hold PSKs: wiped once sent */
	struct ent_ref *msg;              /* what it carries */
	size_t n, n_new;                  /* entries; installs, up to OFFLOAD_NEW */
	uint32_t seq, len;
	/* the pool thread's, under ctx.lock until SLOT_DONE */
	int state;
	int send_err;                     /* sendmsg's */
	int err;                          /* the answer's, if answered */
	bool answered, bad, foreign;
	bool chained;                     /* sent right after the one before */
	char ext[128];                    /* the kernel's extended error */
};

struct ctx {
	const struct wge_env *env;
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uint16_t family;
	struct nlsock set, get;
	uint32_t seqgen;
	uint8_t *rbuf;                    /* may hold keys: wiped after use */
	size_t dump_chunk;                /* DUMP_CHUNK, or RBUF_SIZE */
	size_t msg_size;
	bool ready, closed, pumping;
	int closing;

	/* SET side */
	struct wge_op *q_head, **q_tail, *q_send;
	uint32_t ip_pos;                  /* q_send's entry: IPs already sent */
	struct ent_ref *retry;
	size_t msg_cap, retry_n, retry_pos;
	/* messages: ring[i & 1] for i in [done, built); [done, sent) have
	 * left, [sent, built) wait. Sent in order; answered in order. */
	struct slot ring[2], one;         /* one: a retried entry, alone */
	uint64_t done, sent, built;       /* sent: under lock while chained */
	struct slot *await;               /* its answer read by the loop (set.seq) */
	/* the chain: a pool thread sending ring slots back to back */
	pthread_mutex_t lock;
	bool chain;                       /* its work is queued or running */
	bool halt;                        /* under lock: send no more */
	bool posted;                      /* under lock: on_chain is due */
	bool post_lost;                   /* a post failed after nl_close counted it */
	uint8_t *abuf;                    /* the chain's answers */
	uint64_t chain_queued_ns, chain_started_ns;

	/* GET side */
	bool dump_running;
	int dump_restarts;
	struct dump d;

	uint64_t *c_errors, *c_messages, *c_split, *c_dump_restarts, *c_foreign, *c_offloaded,
		 *c_pool_waits, *c_chained;
};

/* genl.c */
int open_sockets(struct ctx *c);
int nl_recv_buf(int fd, uint8_t *buf, size_t cap, int flags, bool *foreign, uint32_t *port);
int nl_recv(struct ctx *c, int fd, int flags);
const struct nlmsghdr *nl_next(const uint8_t *buf, size_t len, size_t *off, bool *bad);
bool nl_attrs_ok(const void *p, size_t len);
bool nl_genl_ok(const struct nlmsghdr *nlh);
bool nl_err(const struct nlmsghdr *nlh, int *err);
struct nlmsghdr *msg_begin(struct ctx *c, void *buf, uint16_t type, uint16_t flags,
			   uint8_t cmd, uint8_t version);
struct nlattr *nest_start(struct nlmsghdr *nlh, size_t len, uint16_t type);
const char *extack_msg(const struct nlmsghdr *nlh);
int resolve_family(struct ctx *c);
void dump_reset(struct dump *d);
int dump_msg(struct ctx *c, struct dump *d, const struct nlmsghdr *nlh);
int dump_datagram(struct ctx *c, struct dump *d, const uint8_t *buf, size_t len);
int dump_send(struct ctx *c);
const char *dev_error(struct ctx *c, int err, char *buf, size_t len);
/* installer_netlink.c */
int ack_find(const uint8_t *buf, size_t len, uint32_t seq, int *err, const char **ext, bool *bad);
int set_datagram(struct ctx *c, const uint8_t *buf, size_t len, int *err, const char **ext);
int sync_dump(struct ctx *c);

#endif
