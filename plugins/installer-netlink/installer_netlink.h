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
/* Dump messages read per wakeup: the kernel fills each inside recvmsg
 * (a 32 KiB one of ~150 peers costs ~0.2 ms, ten times that under
 * emulation), and a knocking client's packet waits behind them. */
#define READ_BUDGET 1
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

struct ctx {
	const struct wge_env *env;
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uint16_t family;
	struct nlsock set, get;
	uint32_t seqgen;
	uint8_t *rbuf;                    /* may hold keys: wiped after use */
	uint8_t *sbuf;                    /* may hold PSKs: wiped after send */
	size_t msg_size;
	bool ready, closed, pumping;
	bool sending;                     /* a SET in the thread pool */
	uint32_t send_len, send_seq;
	int send_err;
	uint64_t send_queued_ns, send_started_ns;
	int closing;

	/* SET side */
	struct wge_op *q_head, **q_tail, *q_send;
	uint32_t ip_pos;                  /* q_send's entry: IPs already sent */
	struct ent_ref *msg, *retry;
	size_t msg_n, msg_cap, retry_n, retry_pos;
	size_t msg_new;                   /* installs in the message, up to OFFLOAD_NEW */

	/* GET side */
	bool dump_running;
	int dump_restarts;
	struct dump d;

	uint64_t *c_errors, *c_messages, *c_split, *c_dump_restarts, *c_foreign, *c_offloaded,
		 *c_pool_waits;
};

/* genl.c */
int open_sockets(struct ctx *c);
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
int set_datagram(struct ctx *c, const uint8_t *buf, size_t len, int *err, const char **ext);
int sync_dump(struct ctx *c);

#endif
