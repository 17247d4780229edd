// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * installer-netlink: the kernel's WireGuard, through generic netlink.
 *
 * Two netlink sockets, both non-blocking and watched by the loop: one for
 * SET_DEVICE (installs, removals, keepalive restores), one for GET_DEVICE
 * dumps, so an evictor's dump of 10^5 peers never holds up an install.
 * Each socket has one request in flight at a time (the kernel applies a
 * SET while sendmsg runs; a dump is produced as it is read), the rest wait
 * in a queue; everything that queued while a request was out goes into the
 * next message together, as many peers as fit (split like wireguard-tools'
 * toobig handling), so a burst of installs (a store restoring after a
 * reboot) and the evictor's batch removals run at the kernel's pace. A
 * message the kernel refuses is sent again one peer per message, so every
 * error names its peer.
 *
 * Role inversion (completion: inversion, as installer-uapi): a peer
 * installed because its client knocked (any transport but push) gets the
 * packet's source as endpoint and a keepalive (its own, or
 * `inversion_keepalive` when that is 0) in the same peer entry: the kernel
 * applies the endpoint first, then a change of keepalive from 0 makes it
 * initiate at once. A peer already there goes through keepalive 0 first
 * (an UPDATE_ONLY entry just before, in the same message). Once a dump
 * shows its first handshake (polled every `restore_poll` while any is
 * pending, and on every dump anyone asks for) or `restore_timeout` passes,
 * the configured keepalive is put back. completion: reinject installs with
 * keepalive 0 (the kernel stays the responder; a configured keepalive is
 * restored the same way) and sets WGGWD_ITEM_REINJECT so that the source
 * re-sends the captured initiation.
 *
 * An in-memory table (filled from the interface at start, kept by every
 * install, removal and dump) lets an install that would change nothing
 * (same configuration, and the same endpoint if the item has one) return
 * CONTINUE with WGGWD_ITEM_UNCHANGED without a netlink round trip. It
 * keeps a digest of each peer's configuration, never a preshared key.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>
#include <sodium.h>

#include "wgutil.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

#define RBUF_SIZE (64 * 1024)  /* a dump's messages are at most 32 KiB   */
#define READ_BUDGET 8          /* dump messages read per wakeup          */
#define CFG_LEN 16             /* digest of a peer's configuration       */
#define MIN_ENTRY 48           /* smallest peer entry (a removal), bytes */

enum completion { COMPLETION_INVERSION, COMPLETION_REINJECT };

struct conf {
	char *interface;
	char *netns;
	int completion;
	int64_t inversion_keepalive;
	int64_t restore_poll_ms;
	int64_t restore_timeout_ms;
	int64_t timeout_ms;
	uint64_t message_size;
};

static const char *const completions[] = { "inversion", "reinject", NULL };

static const char *check_ifname(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!s || !*s || strlen(s) > 15 || strchr(s, '/') || strchr(s, ' ')) {
		snprintf(buf, len, "expected an interface name of 1 to 15 characters");
		return buf;
	}
	return NULL;
}

static const char *check_netns(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (s && *s != '/' && (!*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, ".."))) {
		snprintf(buf, len, "expected the name of a namespace in /var/run/netns, or an absolute path");
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	{ .name = "interface", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, interface), .check = check_ifname,
	  .help = "the kernel WireGuard interface (wg0)" },
	{ .name = "netns", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct conf, netns), .check = check_netns,
	  .help = "network namespace the interface lives in: a name from /var/run/netns (ip netns add), or a path such as /proc/PID/ns/net; default: the daemon's" },
	{ .name = "completion", .type = WGGWD_OPT_ENUM, .def = "reinject",
	  .offset = offsetof(struct conf, completion), .choices = completions,
	  .help = "how a sniffed client gets its handshake: inversion (the gateway initiates to the packet's source) or reinject (install without endpoint and have the source re-send the captured initiation)" },
	{ .name = "inversion_keepalive", .type = WGGWD_OPT_INT, .def = "25", .min = 1, .max = 65535,
	  .offset = offsetof(struct conf, inversion_keepalive),
	  .help = "keepalive (seconds) set with the endpoint to make the kernel initiate; the configured one is restored after the first handshake" },
	{ .name = "restore_poll", .type = WGGWD_OPT_DURATION, .def = "500ms", .min = 10, .max = 60000,
	  .offset = offsetof(struct conf, restore_poll_ms),
	  .help = "while peers wait for their first handshake, how often the interface is dumped to see which completed (stretched to 10x the last dump's duration on large interfaces)" },
	{ .name = "restore_timeout", .type = WGGWD_OPT_DURATION, .def = "2m", .min = 1000, .max = 86400000,
	  .offset = offsetof(struct conf, restore_timeout_ms),
	  .help = "restore the configured keepalive anyway when no handshake came this long after the install (else a dead client is initiated to forever)" },
	{ .name = "timeout", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 10, .max = 600000,
	  .offset = offsetof(struct conf, timeout_ms),
	  .help = "a netlink request (or a dump's next part) that gets no answer this long fails" },
	{ .name = "message_size", .type = WGGWD_OPT_SIZE, .def = "32k", .min = 4096, .max = 65000,
	  .offset = offsetof(struct conf, message_size),
	  .help = "largest SET_DEVICE message: peers are batched up to this, and a larger batch is split (the kernel caps one message's peers at 64 KiB)" },
	WGGWD_OPT_END
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

/* A peer this installer knows to be on the interface. */
struct peer_ent {
	struct peer_ent *next;            /* hash chain */
	struct peer_ent *rprev, *rnext;   /* restore list */
	uint8_t key[WGGWD_KEY_LEN];
	uint8_t cfg[CFG_LEN];             /* digest of the wanted config */
	union wggwd_sockaddr ep;          /* the endpoint we set (or found) */
	uint16_t keepalive;               /* configured */
	bool restore;                     /* keepalive still to be restored */
	uint64_t gen;                     /* acks counted when it was put */
	uint64_t epoch;                   /* last dump that listed it */
	uint64_t deadline_ms;             /* restore anyway after this */
	int64_t since_ns;                 /* a handshake after this is ours */
};

enum op_type { OP_INSTALL, OP_REMOVE, OP_RESTORE };

/* Work for the SET socket: n peer entries, sent over one or more messages. */
struct op {
	struct op *next;
	enum op_type type;
	size_t n, sent, acked;
	int err;
	/* OP_INSTALL, or OP_REMOVE of an item */
	struct wggwd_item *item;
	uint8_t cfg[CFG_LEN];
	uint16_t ka_conf, ka_send;
	int64_t queued_ns;                /* CLOCK_REALTIME */
	bool has_ep, invert, zero_first, reinject, restore;
	union wggwd_sockaddr ep;
	/* OP_REMOVE, OP_RESTORE */
	uint8_t key1[WGGWD_KEY_LEN];
	uint8_t (*keys)[WGGWD_KEY_LEN];
	uint16_t *ka;                     /* OP_RESTORE: per key */
	wggwd_status_cb cb;
	void *arg;
};

struct ent_ref {
	struct op *op;
	size_t idx;
};

struct waiter {
	struct waiter *next;
	wggwd_dump_cb cb;
	void *arg;
};

/* What a dump builds: peers, merged across messages. */
struct dump {
	struct wggwd_peer_state *v;
	size_t n, cap;
	bool fill;                        /* also digest configs (start) */
	struct fill_acc {
		uint8_t hpsk[CFG_LEN];
		uint64_t s0, s1;
		uint16_t nips;
	} *acc;
	bool intr;
	/* device */
	bool has_priv, has_pub;
	uint8_t priv[WGGWD_KEY_LEN], pub[WGGWD_KEY_LEN];
	uint16_t port;
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uint16_t family;
	struct nlsock set, get;
	uint32_t seqgen;
	uint8_t *rbuf;                    /* may hold keys: wiped after use */
	uint8_t *sbuf;                    /* may hold PSKs: wiped after send */
	size_t msg_size;
	bool ready, stopping, pumping;
	int closing;

	struct wggwd_device dev;          /* cached by start */

	/* SET side */
	struct op *q_head, **q_tail, *q_send;
	struct ent_ref *msg, *retry;
	size_t msg_n, msg_cap, retry_n, retry_pos;
	uint64_t acks;

	/* GET side */
	struct waiter *dwait, *dcur;
	bool dump_running, dump_internal;
	int dump_restarts;
	uint64_t dump_gen, dump_t0, dump_quiet_until, epoch;
	struct dump d;

	/* peers we know */
	struct peer_ent **buckets;
	size_t nbuckets, npeers;
	struct peer_ent *rhead;
	size_t nrestore;
	struct wggwd_timer *restore_timer;
	bool restore_armed;

	uint64_t *c_installed, *c_updated, *c_unchanged, *c_removed, *c_inverted,
		*c_reinjected, *c_restored, *c_restore_timeouts, *c_errors, *c_messages,
		*c_split, *c_dumps, *c_dump_restarts;
	int64_t *g_peers, *g_restore;
};

static void pump_set(struct ctx *c);
static void kick_dump(struct ctx *c);

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* The kernel may just have spent a while in sendmsg or recvmsg: start
 * the clock from now, not from when the loop last looked at it. */
static void arm(struct ctx *c, struct wggwd_timer *t)
{
	uv_update_time(c->host->loop);
	c->host->timer_start(t, c->conf->timeout_ms, 0);
}

static void key_str(char out[WG_KEY_B64_LEN], const uint8_t *key)
{
	wg_key_to_b64(out, key);
}

/* ----------------------------------------------------------- peer table */

static size_t bucket_of(const struct ctx *c, const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h)); /* public keys are uniformly random */
	return h & (c->nbuckets - 1);
}

static struct peer_ent *table_get(struct ctx *c, const uint8_t *key)
{
	struct peer_ent *e;

	for (e = c->buckets[bucket_of(c, key)]; e; e = e->next)
		if (!memcmp(e->key, key, WGGWD_KEY_LEN))
			return e;
	return NULL;
}

static void table_grow(struct ctx *c)
{
	size_t old = c->nbuckets, i;
	struct peer_ent **ob = c->buckets, *e, *n;
	struct peer_ent **nb = calloc(old * 2, sizeof(*nb));

	if (!nb)
		return; /* longer chains; still right */
	c->buckets = nb;
	c->nbuckets = old * 2;
	for (i = 0; i < old; i++) {
		for (e = ob[i]; e; e = n) {
			size_t b = bucket_of(c, e->key);

			n = e->next;
			e->next = nb[b];
			nb[b] = e;
		}
	}
	free(ob);
}

static void restore_unlink(struct ctx *c, struct peer_ent *e)
{
	if (!e->restore)
		return;
	if (e->rprev)
		e->rprev->rnext = e->rnext;
	else
		c->rhead = e->rnext;
	if (e->rnext)
		e->rnext->rprev = e->rprev;
	e->rprev = e->rnext = NULL;
	e->restore = false;
	c->nrestore--;
	*c->g_restore = c->nrestore;
}

static void restore_tick(void *arg);

static void restore_link(struct ctx *c, struct peer_ent *e)
{
	if (e->restore)
		return;
	e->restore = true;
	e->rprev = NULL;
	e->rnext = c->rhead;
	if (c->rhead)
		c->rhead->rprev = e;
	c->rhead = e;
	c->nrestore++;
	*c->g_restore = c->nrestore;
	if (!c->restore_armed && c->restore_timer) {
		c->host->timer_start(c->restore_timer, c->conf->restore_poll_ms,
				     c->conf->restore_poll_ms);
		c->restore_armed = true;
	}
}

static struct peer_ent *table_put(struct ctx *c, const uint8_t *key)
{
	struct peer_ent *e = table_get(c, key);
	size_t b;

	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->key, key, WGGWD_KEY_LEN);
	if (c->npeers >= c->nbuckets)
		table_grow(c);
	b = bucket_of(c, key);
	e->next = c->buckets[b];
	c->buckets[b] = e;
	c->npeers++;
	*c->g_peers = c->npeers;
	return e;
}

static void table_del(struct ctx *c, const uint8_t *key)
{
	struct peer_ent **pp, *e;

	for (pp = &c->buckets[bucket_of(c, key)]; (e = *pp); pp = &e->next) {
		if (!memcmp(e->key, key, WGGWD_KEY_LEN)) {
			*pp = e->next;
			restore_unlink(c, e);
			free(e);
			c->npeers--;
			*c->g_peers = c->npeers;
			return;
		}
	}
}

/* ------------------------------------------------------ config digests */

static void mask_ip(struct wggwd_allowed_ip *ip)
{
	unsigned bytes = ip->family == AF_INET ? 4 : 16, i, bits;

	for (i = 0; i < bytes; i++) {
		bits = i * 8;
		if (bits >= ip->cidr)
			ip->addr[i] = 0;
		else if (ip->cidr - bits < 8)
			ip->addr[i] &= (uint8_t)(0xff00 >> (ip->cidr - bits));
	}
	for (i = bytes; i < 16; i++)
		ip->addr[i] = 0;
}

/* Digests are keyed SipHash (128 bits), the key random per process: fast,
 * and nobody who cannot read our memory can make two configurations look
 * alike. Order-independent: the kernel lists allowed IPs in trie order. */
static uint8_t hkey[crypto_shorthash_siphashx24_KEYBYTES];

static void acc_ip(struct fill_acc *a, uint8_t family, uint8_t cidr, const uint8_t *addr)
{
	struct wggwd_allowed_ip ip = { .family = family, .cidr = cidr };
	uint8_t h[16];
	uint64_t x, y;

	memcpy(ip.addr, addr, family == AF_INET ? 4 : 16);
	mask_ip(&ip);
	crypto_shorthash_siphashx24(h, (const uint8_t *)&ip, sizeof(ip), hkey);
	memcpy(&x, h, 8);
	memcpy(&y, h + 8, 8);
	a->s0 += x;
	a->s1 += y;
	a->nips++;
}

static void acc_psk(struct fill_acc *a, const uint8_t *psk)
{
	crypto_shorthash_siphashx24(a->hpsk, psk, WGGWD_KEY_LEN, hkey);
}

static void acc_final(const struct fill_acc *a, uint16_t keepalive, uint8_t out[CFG_LEN])
{
	uint8_t m[CFG_LEN + 8 + 8 + 2 + 2];

	memcpy(m, a->hpsk, CFG_LEN);
	memcpy(m + CFG_LEN, &a->s0, 8);
	memcpy(m + CFG_LEN + 8, &a->s1, 8);
	memcpy(m + CFG_LEN + 16, &a->nips, 2);
	memcpy(m + CFG_LEN + 18, &keepalive, 2);
	crypto_shorthash_siphashx24(out, m, sizeof(m), hkey);
}

static void item_cfg(const struct wggwd_item *it, uint8_t out[CFG_LEN])
{
	const struct wggwd_peer *p = &it->peer;
	static const uint8_t zero[WGGWD_KEY_LEN];
	struct fill_acc a = { 0 };
	unsigned i;

	acc_psk(&a, p->has & WGGWD_PEER_HAS_PRESHARED_KEY ? p->preshared_key : zero);
	if (p->has & WGGWD_PEER_HAS_ALLOWED_IPS)
		for (i = 0; i < p->n_allowed && i < WGGWD_MAX_ALLOWED; i++)
			acc_ip(&a, p->allowed[i].family, p->allowed[i].cidr, p->allowed[i].addr);
	acc_final(&a, p->has & WGGWD_PEER_HAS_KEEPALIVE ? p->keepalive : 0, out);
}

/* ------------------------------------------------------ netlink sockets */

static int nl_open(uint32_t *portid)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	socklen_t sl = sizeof(sa);
	int fd, one = 1, rcv = 4 << 20, ret;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*portid = sa.nl_pid;
	/* extended errors; errors do not echo the request (it may hold PSKs) */
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	return fd;
}

struct ns_job {
	const char *path;
	int fd[2];
	uint32_t portid[2];
	int err;
	const char *step;
};

/* On a thread of its own, so that the loop thread never changes netns. */
static void *ns_thread(void *arg)
{
	struct ns_job *j = arg;
	int nsfd, i;

	nsfd = open(j->path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) {
		j->err = -errno;
		j->step = "open";
		return NULL;
	}
	if (setns(nsfd, CLONE_NEWNET)) {
		j->err = -errno;
		j->step = "setns";
		close(nsfd);
		return NULL;
	}
	close(nsfd);
	for (i = 0; i < 2; i++) {
		j->fd[i] = nl_open(&j->portid[i]);
		if (j->fd[i] < 0) {
			j->err = j->fd[i];
			j->step = "socket";
			return NULL;
		}
	}
	return NULL;
}

static int open_sockets(struct ctx *c)
{
	struct ns_job j = { .fd = { -1, -1 } };
	char path[300];
	pthread_t t;
	int ret;

	if (!c->conf->netns) {
		c->set.fd = nl_open(&c->set.portid);
		if (c->set.fd < 0)
			return c->set.fd;
		c->get.fd = nl_open(&c->get.portid);
		return c->get.fd < 0 ? c->get.fd : 0;
	}
	if (c->conf->netns[0] == '/')
		snprintf(path, sizeof(path), "%s", c->conf->netns);
	else
		snprintf(path, sizeof(path), "/var/run/netns/%s", c->conf->netns);
	j.path = path;
	ret = pthread_create(&t, NULL, ns_thread, &j);
	if (ret)
		return -ret;
	pthread_join(t, NULL);
	c->set.fd = j.fd[0];
	c->set.portid = j.portid[0];
	c->get.fd = j.fd[1];
	c->get.portid = j.portid[1];
	if (j.err)
		c->host->log(c->self, WGGWD_LOG_ERROR, "netns %s: %s: %s", path, j.step,
			     strerror(-j.err));
	return j.err;
}

static struct nlmsghdr *msg_begin(struct ctx *c, void *buf, uint16_t type, uint16_t flags,
				  uint8_t cmd, uint8_t version)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *g;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = ++c->seqgen ? c->seqgen : ++c->seqgen;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

static struct nlattr *nest_start(struct nlmsghdr *nlh, size_t len, uint16_t type)
{
	struct nlattr *a = mnl_attr_nest_start_check(nlh, len, type);

	if (a)
		a->nla_type |= NLA_F_NESTED; /* 6.x refuses nests without it */
	return a;
}

/* The kernel's text for an error, when it gave one (NETLINK_EXT_ACK). */
static const char *extack_msg(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *attr;
	size_t off = sizeof(*e);

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += e->msg.nlmsg_len - sizeof(e->msg);
	if (mnl_nlmsg_get_payload_len(nlh) < off)
		return NULL;
	mnl_attr_for_each_payload((const struct nlattr *)((const uint8_t *)e + off),
				  mnl_nlmsg_get_payload_len(nlh) - off) {
		if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			return mnl_attr_get_str(attr);
	}
	return NULL;
}

static int sync_recv(struct ctx *c, int fd, uint8_t *buf, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int r;

	for (;;) {
		r = poll(&p, 1, (int)c->conf->timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -ETIMEDOUT;
		n = recv(fd, buf, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		return (int)n;
	}
}

static int resolve_family(struct ctx *c)
{
	uint8_t buf[1024];
	struct nlmsghdr *nlh = msg_begin(c, buf, GENL_ID_CTRL, NLM_F_REQUEST,
					 CTRL_CMD_GETFAMILY, 1);
	uint32_t seq = nlh->nlmsg_seq;
	const struct nlattr *a;
	int n, ret;

	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	if (send(c->set.fd, nlh, nlh->nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		n = sync_recv(c, c->set.fd, c->rbuf, RBUF_SIZE);
		if (n < 0)
			return n;
		for (nlh = (struct nlmsghdr *)c->rbuf; mnl_nlmsg_ok(nlh, n);
		     nlh = mnl_nlmsg_next(nlh, &n)) {
			if (nlh->nlmsg_seq != seq)
				continue;
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

				ret = e->error ? e->error : -ENOENT;
				return ret;
			}
			mnl_attr_for_each(a, nlh, sizeof(struct genlmsghdr)) {
				if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID &&
				    !mnl_attr_validate(a, MNL_TYPE_U16)) {
					c->family = mnl_attr_get_u16(a);
					return 0;
				}
			}
			return -ENOENT;
		}
	}
}

/* ----------------------------------------------------------- dump parse */

static void dump_reset(struct dump *d)
{
	d->n = 0;
	d->intr = false;
	sodium_memzero(d->priv, sizeof(d->priv));
	d->has_priv = d->has_pub = false;
	d->port = 0;
}

static struct wggwd_peer_state *dump_peer(struct dump *d, const uint8_t *key)
{
	struct wggwd_peer_state *p;

	/* a peer cut in two continues in the next message's first element */
	if (d->n && !memcmp(d->v[d->n - 1].public_key, key, WGGWD_KEY_LEN))
		return &d->v[d->n - 1];
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 256;
		void *v = realloc(d->v, cap * sizeof(*d->v));

		if (!v)
			return NULL;
		d->v = v;
		if (d->fill) {
			v = realloc(d->acc, cap * sizeof(*d->acc));
			if (!v)
				return NULL;
			d->acc = v;
		}
		d->cap = cap;
	}
	if (d->fill && !d->acc) {
		d->acc = calloc(d->cap, sizeof(*d->acc));
		if (!d->acc)
			return NULL;
	}
	p = &d->v[d->n];
	memset(p, 0, sizeof(*p));
	memcpy(p->public_key, key, WGGWD_KEY_LEN);
	if (d->fill)
		memset(&d->acc[d->n], 0, sizeof(d->acc[0]));
	d->n++;
	return p;
}

static int parse_allowed(struct fill_acc *a, const struct nlattr *nest)
{
	const struct nlattr *ip, *x;

	mnl_attr_for_each_nested(ip, nest) {
		uint16_t family = 0;
		uint8_t cidr = 0;
		const uint8_t *addr = NULL;
		size_t alen = 0;

		mnl_attr_for_each_nested(x, ip) {
			switch (mnl_attr_get_type(x)) {
			case WGALLOWEDIP_A_FAMILY:
				if (mnl_attr_validate(x, MNL_TYPE_U16))
					return -EPROTO;
				family = mnl_attr_get_u16(x);
				break;
			case WGALLOWEDIP_A_IPADDR:
				addr = mnl_attr_get_payload(x);
				alen = mnl_attr_get_payload_len(x);
				break;
			case WGALLOWEDIP_A_CIDR_MASK:
				if (mnl_attr_validate(x, MNL_TYPE_U8))
					return -EPROTO;
				cidr = mnl_attr_get_u8(x);
				break;
			}
		}
		if (!addr || !((family == AF_INET && alen == 4) || (family == AF_INET6 && alen == 16)))
			return -EPROTO;
		if (a)
			acc_ip(a, family, cidr, addr);
	}
	return 0;
}

static int parse_peer(struct dump *d, const struct nlattr *nest)
{
	const struct nlattr *tb[WGPEER_A_MAX + 1] = { 0 }, *a;
	struct wggwd_peer_state *p;
	size_t len;

	mnl_attr_for_each_nested(a, nest) {
		uint16_t t = mnl_attr_get_type(a);

		if (t <= WGPEER_A_MAX)
			tb[t] = a; /* type 0 is padding: never read */
	}
	if (!tb[WGPEER_A_PUBLIC_KEY] || mnl_attr_get_payload_len(tb[WGPEER_A_PUBLIC_KEY]) != WGGWD_KEY_LEN)
		return -EPROTO;
	p = dump_peer(d, mnl_attr_get_payload(tb[WGPEER_A_PUBLIC_KEY]));
	if (!p)
		return -ENOMEM;
	if ((a = tb[WGPEER_A_ENDPOINT])) {
		len = mnl_attr_get_payload_len(a);
		if (len == sizeof(struct sockaddr_in) || len == sizeof(struct sockaddr_in6))
			memcpy(&p->endpoint, mnl_attr_get_payload(a), len);
	}
	if ((a = tb[WGPEER_A_LAST_HANDSHAKE_TIME]) && mnl_attr_get_payload_len(a) == 16) {
		int64_t ts[2];

		memcpy(ts, mnl_attr_get_payload(a), sizeof(ts));
		p->last_handshake_sec = ts[0];
		p->last_handshake_nsec = (uint32_t)ts[1];
	}
	if ((a = tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL]) && !mnl_attr_validate(a, MNL_TYPE_U16))
		p->keepalive = mnl_attr_get_u16(a);
	if ((a = tb[WGPEER_A_RX_BYTES]) && !mnl_attr_validate(a, MNL_TYPE_U64))
		p->rx_bytes = mnl_attr_get_u64(a);
	if ((a = tb[WGPEER_A_TX_BYTES]) && !mnl_attr_validate(a, MNL_TYPE_U64))
		p->tx_bytes = mnl_attr_get_u64(a);
	if (d->fill) {
		struct fill_acc *acc = &d->acc[p - d->v];

		if ((a = tb[WGPEER_A_PRESHARED_KEY]) && mnl_attr_get_payload_len(a) == WGGWD_KEY_LEN)
			acc_psk(acc, mnl_attr_get_payload(a));
	}
	if ((a = tb[WGPEER_A_ALLOWEDIPS]))
		return parse_allowed(d->fill ? &d->acc[p - d->v] : NULL, a);
	return 0;
}

/*
 * One message of a GET_DEVICE dump. Returns 0 for more to come, 1 when
 * the dump is complete, or -errno.
 */
static int dump_msg(struct dump *d, const struct nlmsghdr *nlh)
{
	const struct nlattr *a, *pa;
	int ret;

	if (nlh->nlmsg_type == NLMSG_DONE) {
		if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
			int err;

			memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
			if (err)
				return err < 0 ? err : -err;
		}
		return 1;
	}
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

		return e->error ? e->error : 1;
	}
	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
		d->intr = true;
	mnl_attr_for_each(a, nlh, sizeof(struct genlmsghdr)) {
		switch (mnl_attr_get_type(a)) {
		case WGDEVICE_A_PRIVATE_KEY:
			if (mnl_attr_get_payload_len(a) == WGGWD_KEY_LEN) {
				memcpy(d->priv, mnl_attr_get_payload(a), WGGWD_KEY_LEN);
				d->has_priv = !sodium_is_zero(d->priv, WGGWD_KEY_LEN);
			}
			break;
		case WGDEVICE_A_PUBLIC_KEY:
			if (mnl_attr_get_payload_len(a) == WGGWD_KEY_LEN) {
				memcpy(d->pub, mnl_attr_get_payload(a), WGGWD_KEY_LEN);
				d->has_pub = true;
			}
			break;
		case WGDEVICE_A_LISTEN_PORT:
			if (!mnl_attr_validate(a, MNL_TYPE_U16))
				d->port = mnl_attr_get_u16(a);
			break;
		case WGDEVICE_A_PEERS:
			mnl_attr_for_each_nested(pa, a) {
				ret = parse_peer(d, pa);
				if (ret)
					return ret;
			}
			break;
		}
	}
	return 0;
}

static int dump_send(struct ctx *c)
{
	uint8_t buf[256];
	struct nlmsghdr *nlh = msg_begin(c, buf, c->family, NLM_F_REQUEST | NLM_F_DUMP,
					 WG_CMD_GET_DEVICE, WG_GENL_VERSION);

	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, c->conf->interface);
	if (send(c->get.fd, nlh, nlh->nlmsg_len, 0) < 0)
		return -errno;
	c->get.seq = nlh->nlmsg_seq;
	return 0;
}

static const char *dev_error(struct ctx *c, int err, char *buf, size_t len)
{
	switch (err) {
	case -ENODEV:
		snprintf(buf, len, "no interface \"%s\"%s%s", c->conf->interface,
			 c->conf->netns ? " in netns " : "", c->conf->netns ? c->conf->netns : "");
		break;
	case -EOPNOTSUPP:
		snprintf(buf, len, "\"%s\" is not a WireGuard interface", c->conf->interface);
		break;
	case -EPERM:
		snprintf(buf, len, "not permitted: needs CAP_NET_ADMIN");
		break;
	default:
		snprintf(buf, len, "%s", strerror(-err));
	}
	return buf;
}

/* The first dump, blocking: device, key, port, and the peers there. */
static int sync_dump(struct ctx *c)
{
	struct dump *d = &c->d;
	struct nlmsghdr *nlh;
	int n, ret, tries = 0;

again:
	dump_reset(d);
	ret = dump_send(c);
	if (ret)
		return ret;
	for (;;) {
		n = sync_recv(c, c->get.fd, c->rbuf, RBUF_SIZE);
		if (n < 0)
			return n;
		for (nlh = (struct nlmsghdr *)c->rbuf; mnl_nlmsg_ok(nlh, n);
		     nlh = mnl_nlmsg_next(nlh, &n)) {
			if (nlh->nlmsg_seq != c->get.seq)
				continue;
			ret = dump_msg(d, nlh);
			if (ret)
				break;
		}
		sodium_memzero(c->rbuf, RBUF_SIZE);
		if (ret < 0)
			return ret;
		if (ret == 1)
			break;
	}
	c->get.seq = 0;
	if (d->intr && ++tries < 5)
		goto again;
	return 0;
}

/* -------------------------------------------------------- the SET side */

static bool put_ip(struct nlmsghdr *nlh, size_t len, const struct wggwd_allowed_ip *ip)
{
	struct nlattr *n = nest_start(nlh, len, 0);

	if (!n)
		return false;
	if (!mnl_attr_put_u16_check(nlh, len, WGALLOWEDIP_A_FAMILY, ip->family) ||
	    !mnl_attr_put_check(nlh, len, WGALLOWEDIP_A_IPADDR, ip->family == AF_INET ? 4 : 16,
				ip->addr) ||
	    !mnl_attr_put_u8_check(nlh, len, WGALLOWEDIP_A_CIDR_MASK, ip->cidr)) {
		mnl_attr_nest_cancel(nlh, n);
		return false;
	}
	mnl_attr_nest_end(nlh, n);
	return true;
}

/* Add one peer entry; false (and nothing added) if the message is full. */
static bool put_entry(struct ctx *c, struct nlmsghdr *nlh, const struct ent_ref *r)
{
	static const uint8_t zero[WGGWD_KEY_LEN];
	size_t len = c->msg_size;
	struct op *op = r->op;
	struct nlattr *p, *p2 = NULL, *ips;
	const struct wggwd_peer *pe;
	unsigned i;
	bool ok;

	p = nest_start(nlh, len, 0);
	if (!p)
		return false;
	switch (op->type) {
	case OP_REMOVE:
		ok = mnl_attr_put_check(nlh, len, WGPEER_A_PUBLIC_KEY, WGGWD_KEY_LEN,
					op->keys[r->idx]) &&
		     mnl_attr_put_u32_check(nlh, len, WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME);
		break;
	case OP_RESTORE:
		ok = mnl_attr_put_check(nlh, len, WGPEER_A_PUBLIC_KEY, WGGWD_KEY_LEN,
					op->keys[r->idx]) &&
		     mnl_attr_put_u32_check(nlh, len, WGPEER_A_FLAGS, WGPEER_F_UPDATE_ONLY) &&
		     mnl_attr_put_u16_check(nlh, len, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
					    op->ka[r->idx]);
		break;
	default:
		pe = &op->item->peer;
		if (op->zero_first) {
			/* the kernel initiates on a change of keepalive from 0:
			 * go through 0 first, in case the peer is there with
			 * this keepalive already (UPDATE_ONLY: nothing if not) */
			ok = mnl_attr_put_check(nlh, len, WGPEER_A_PUBLIC_KEY, WGGWD_KEY_LEN,
						pe->public_key) &&
			     mnl_attr_put_u32_check(nlh, len, WGPEER_A_FLAGS, WGPEER_F_UPDATE_ONLY) &&
			     mnl_attr_put_u16_check(nlh, len,
						    WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 0);
			if (!ok)
				break;
			mnl_attr_nest_end(nlh, p);
			p2 = nest_start(nlh, len, 0);
			if (!p2) {
				ok = false;
				break;
			}
		}
		ok = mnl_attr_put_check(nlh, len, WGPEER_A_PUBLIC_KEY, WGGWD_KEY_LEN,
					pe->public_key) &&
		     mnl_attr_put_u32_check(nlh, len, WGPEER_A_FLAGS,
					    pe->has & WGGWD_PEER_HAS_ALLOWED_IPS ?
					    WGPEER_F_REPLACE_ALLOWEDIPS : 0) &&
		     mnl_attr_put_check(nlh, len, WGPEER_A_PRESHARED_KEY, WGGWD_KEY_LEN,
					pe->has & WGGWD_PEER_HAS_PRESHARED_KEY ?
					pe->preshared_key : zero);
		/* the kernel applies the endpoint before the keepalive, so
		 * the keepalive's first packet goes to it: one entry */
		if (ok && op->has_ep)
			ok = mnl_attr_put_check(nlh, len, WGPEER_A_ENDPOINT,
						op->ep.sa.sa_family == AF_INET ?
						sizeof(op->ep.in4) : sizeof(op->ep.in6), &op->ep);
		if (ok)
			ok = mnl_attr_put_u16_check(nlh, len,
						    WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
						    op->ka_send);
		if (ok && (pe->has & WGGWD_PEER_HAS_ALLOWED_IPS) && pe->n_allowed) {
			ips = nest_start(nlh, len, WGPEER_A_ALLOWEDIPS);
			ok = ips != NULL;
			for (i = 0; ok && i < pe->n_allowed && i < WGGWD_MAX_ALLOWED; i++)
				ok = put_ip(nlh, len, &pe->allowed[i]);
			if (ok)
				mnl_attr_nest_end(nlh, ips);
		}
		break;
	}
	if (!ok) {
		mnl_attr_nest_cancel(nlh, p); /* and p2, which follows it */
		return false;
	}
	mnl_attr_nest_end(nlh, p2 ? p2 : p);
	return true;
}

static void op_unlink(struct ctx *c, struct op *op)
{
	struct op **pp;

	for (pp = &c->q_head; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			if (c->q_tail == &op->next)
				c->q_tail = pp;
			if (c->q_send == op)
				c->q_send = op->next;
			op->next = NULL;
			return;
		}
	}
}

static void op_free(struct op *op)
{
	free(op->keys != &op->key1 ? op->keys : NULL);
	free(op->ka);
	free(op);
}

/* An op has its answer for every entry: tell whoever asked. */
static void op_finish(struct ctx *c, struct op *op)
{
	struct wggwd_item *it = op->item;
	struct peer_ent *e;
	size_t i;

	switch (op->type) {
	case OP_INSTALL:
		if (op->err) {
			(*c->c_errors)++;
			it->drop_reason = "install_failed";
			c->host->complete(c->self, it, WGGWD_ERROR);
			break;
		}
		e = table_get(c, it->peer.public_key);
		if (e)
			(*c->c_updated)++;
		else
			(*c->c_installed)++;
		e = table_put(c, it->peer.public_key);
		if (e) {
			memcpy(e->cfg, op->cfg, CFG_LEN);
			if (op->has_ep)
				e->ep = op->ep;
			e->keepalive = op->ka_conf;
			e->gen = c->acks;
			e->epoch = c->epoch;
			restore_unlink(c, e);
			if (op->restore) {
				e->deadline_ms = mono_ms() + c->conf->restore_timeout_ms;
				e->since_ns = op->queued_ns;
				restore_link(c, e);
			}
		}
		if (op->invert)
			(*c->c_inverted)++;
		if (op->reinject) {
			(*c->c_reinjected)++;
			it->flags |= WGGWD_ITEM_REINJECT;
		}
		c->host->complete(c->self, it, WGGWD_CONTINUE);
		break;
	case OP_REMOVE:
		if (op->err)
			(*c->c_errors)++;
		else
			*c->c_removed += op->n;
		if (it)
			c->host->complete(c->self, it, op->err ? WGGWD_ERROR : WGGWD_CONTINUE);
		else
			op->cb(op->arg, op->err);
		break;
	case OP_RESTORE:
		if (op->err)
			(*c->c_errors)++;
		for (i = 0; !op->err && i < op->n; i++)
			(*c->c_restored)++;
		break;
	}
	op_free(op);
}

static void entry_failed(struct ctx *c, const struct ent_ref *r, int err, const char *ext)
{
	struct op *op = r->op;
	char b64[WG_KEY_B64_LEN], why[160];
	const uint8_t *key = op->type == OP_INSTALL ? op->item->peer.public_key : op->keys[r->idx];
	static const char *const verb[] = { "installing", "removing", "restoring the keepalive of" };

	if (!op->err)
		op->err = err;
	key_str(b64, key);
	c->host->log(c->self, WGGWD_LOG_ERROR, "%s peer %s on %s: %s%s%s", verb[op->type], b64,
		     c->conf->interface, dev_error(c, err, why, sizeof(why)), ext ? ": " : "",
		     ext ? ext : "");
}

/* The answer to the SET message in flight. */
static void set_answered(struct ctx *c, int err, const char *ext)
{
	struct op *done = NULL, **dtail = &done, *op;
	size_t i, n = c->msg_n;
	bool whole;

	c->set.seq = 0;
	c->host->timer_stop(c->set.timer);
	c->acks++;
	c->msg_n = 0;
	/* about the interface, not a peer: say it once, for all of them */
	whole = n > 1 && (err == -ENODEV || err == -EOPNOTSUPP || err == -EPERM || err == -ETIMEDOUT ||
		err == -ENOBUFS || err == -EBADR);
	if (err && n > 1 && !whole) {
		/* which peer? send them again one by one */
		(*c->c_split)++;
		memcpy(c->retry, c->msg, n * sizeof(*c->msg));
		c->retry_n = n;
		c->retry_pos = 0;
		c->host->log(c->self, WGGWD_LOG_DEBUG, "a message of %zu peers failed (%s): retrying them one by one",
			     n, strerror(-err));
		pump_set(c);
		return;
	}
	if (err && whole) {
		char why[160];

		c->host->log(c->self, WGGWD_LOG_ERROR, "a message of %zu peers for %s failed: %s%s%s", n,
			     c->conf->interface, dev_error(c, err, why, sizeof(why)), ext ? ": " : "",
			     ext ? ext : "");
	}
	for (i = 0; i < n; i++) {
		op = c->msg[i].op;
		if (err && whole) {
			if (!op->err)
				op->err = err;
		} else if (err) {
			entry_failed(c, &c->msg[i], err, ext);
		}
		if (++op->acked == op->n) {
			op_unlink(c, op);
			*dtail = op;
			dtail = &op->next;
		}
	}
	pump_set(c); /* before the callbacks: they may queue more */
	while ((op = done)) {
		done = op->next;
		op->next = NULL;
		op_finish(c, op);
	}
}

/* Send the next message if the SET socket is free. */
static void pump_set(struct ctx *c)
{
	struct nlmsghdr *nlh;
	struct nlattr *peers;
	struct op *op;
	uint32_t seq, len;
	ssize_t r;
	int err;

	if (c->pumping)
		return; /* the loop below picks up what a callback queued */
	c->pumping = true;
	while (!c->set.seq && !c->stopping && (c->retry_pos < c->retry_n || c->q_send)) {
		nlh = msg_begin(c, c->sbuf, c->family, NLM_F_REQUEST | NLM_F_ACK,
				WG_CMD_SET_DEVICE, WG_GENL_VERSION);
		mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, c->conf->interface);
		peers = nest_start(nlh, c->msg_size, WGDEVICE_A_PEERS);
		c->msg_n = 0;
		if (c->retry_pos < c->retry_n) {
			c->msg[0] = c->retry[c->retry_pos++];
			put_entry(c, nlh, &c->msg[0]); /* one always fits */
			c->msg_n = 1;
		} else {
			while ((op = c->q_send) && c->msg_n < c->msg_cap) {
				struct ent_ref r = { op, op->sent };

				if (!put_entry(c, nlh, &r))
					break;
				c->msg[c->msg_n++] = r;
				if (++op->sent == op->n)
					c->q_send = op->next;
			}
		}
		mnl_attr_nest_end(nlh, peers);
		seq = nlh->nlmsg_seq;
		len = nlh->nlmsg_len;
		r = send(c->set.fd, nlh, len, 0);
		err = r < 0 ? -errno : 0;
		sodium_memzero(c->sbuf, len); /* PSKs */
		(*c->c_messages)++;
		if (err) {
			c->set.seq = 1; /* set_answered clears it */
			set_answered(c, err, NULL);
			continue;
		}
		c->set.seq = seq;
		arm(c, c->set.timer);
	}
	c->pumping = false;
}

static void queue_op(struct ctx *c, struct op *op)
{
	op->next = NULL;
	*c->q_tail = op;
	c->q_tail = &op->next;
	if (!c->q_send)
		c->q_send = op;
	pump_set(c);
}

/* -------------------------------------------------------- the GET side */

/* Put the configured keepalive back on these peers (UPDATE_ONLY: a peer
 * removed meanwhile is not brought back). */
static void queue_restores(struct ctx *c, struct op *op)
{
	if (!op->n) {
		op_free(op);
		return;
	}
	queue_op(c, op);
}

static bool restore_take(struct ctx *c, struct op *op, size_t cap, struct peer_ent *e)
{
	if (op->n >= cap)
		return false;
	memcpy(op->keys[op->n], e->key, WGGWD_KEY_LEN);
	op->ka[op->n++] = e->keepalive;
	restore_unlink(c, e);
	return true;
}

/* What every complete dump teaches: handshakes done, peers gone. */
static void after_dump(struct ctx *c)
{
	struct dump *d = &c->d;
	struct peer_ent *e, *next, **pp;
	struct op *op = NULL;
	size_t i, cap = c->nrestore;
	uint64_t now = mono_ms();
	char b64[WG_KEY_B64_LEN];

	c->epoch++;
	if (cap) {
		op = calloc(1, sizeof(*op));
		if (op) {
			op->type = OP_RESTORE;
			op->keys = malloc(cap * sizeof(*op->keys));
			op->ka = malloc(cap * sizeof(*op->ka));
			if (!op->keys || !op->ka) {
				op_free(op);
				op = NULL; /* left on the list: the next dump tries again */
			}
		}
	}
	for (i = 0; i < d->n; i++) {
		e = table_get(c, d->v[i].public_key);
		if (!e)
			continue;
		e->epoch = c->epoch;
		if (e->restore && op && d->v[i].last_handshake_sec &&
		    d->v[i].last_handshake_sec * 1000000000ll + d->v[i].last_handshake_nsec >=
		    e->since_ns)
			restore_take(c, op, cap, e); /* its first handshake since */
	}
	/* gone from the interface though we put it there before this dump
	 * started: someone removed it (by hand, or the interface was reset) */
	for (i = 0; i < c->nbuckets; i++) {
		for (pp = &c->buckets[i]; (e = *pp);) {
			if (e->epoch != c->epoch && e->gen <= c->dump_gen) {
				*pp = e->next;
				restore_unlink(c, e);
				free(e);
				c->npeers--;
				continue;
			}
			pp = &e->next;
		}
	}
	*c->g_peers = c->npeers;
	for (e = c->rhead; op && e; e = next) {
		next = e->rnext;
		if (now < e->deadline_ms)
			continue;
		key_str(b64, e->key);
		c->host->log(c->self, WGGWD_LOG_INFO, "peer %s: no handshake %lld ms after the install: restoring keepalive %u",
			     b64, (long long)c->conf->restore_timeout_ms, e->keepalive);
		(*c->c_restore_timeouts)++;
		restore_take(c, op, cap, e);
	}
	if (op)
		queue_restores(c, op);
}

static void dump_finish(struct ctx *c, int err)
{
	struct waiter *w = c->dcur, *n;
	uint64_t now = mono_ms();

	c->dump_running = false;
	c->dcur = NULL;
	c->get.seq = 0;
	c->host->timer_stop(c->get.timer);
	/* a big dump is work for the kernel: poll restores no faster than
	 * ten times its length apart */
	c->dump_quiet_until = c->dump_t0 + 10 * (now - c->dump_t0);
	if (err) {
		char why[160];

		(*c->c_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "reading the peers of %s: %s",
			     c->conf->interface, dev_error(c, err, why, sizeof(why)));
	} else {
		(*c->c_dumps)++;
	}
	for (; w; w = n) {
		n = w->next;
		w->cb(w->arg, err, err ? NULL : c->d.v, err ? 0 : c->d.n);
		free(w);
	}
	if (!err && !c->stopping)
		after_dump(c);
	kick_dump(c);
}

static void kick_dump(struct ctx *c)
{
	int ret;

	if (c->dump_running || c->stopping || (!c->dwait && !c->dump_internal))
		return;
	c->dump_running = true;
	c->dcur = c->dwait;
	c->dwait = NULL;
	c->dump_internal = false;
	c->dump_restarts = 0;
	c->dump_t0 = mono_ms();
	c->dump_gen = c->acks;
	dump_reset(&c->d);
	ret = dump_send(c);
	if (ret) {
		dump_finish(c, ret);
		return;
	}
	arm(c, c->get.timer);
}

/* ---------------------------------------------------------- socket I/O */

/* One answer per wakeup: it sends the next message, whose kernel work
 * (up to message_size of peers) is all one wakeup should cost the loop. */
static void on_set_readable(struct ctx *c)
{
	struct nlmsghdr *nlh;
	bool answered = false;
	int n;

	while (!answered) {
		n = recv(c->set.fd, c->rbuf, RBUF_SIZE, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (c->set.seq) /* ENOBUFS: the answer was lost */
				set_answered(c, -errno, NULL);
			return;
		}
		for (nlh = (struct nlmsghdr *)c->rbuf; mnl_nlmsg_ok(nlh, n);
		     nlh = mnl_nlmsg_next(nlh, &n)) {
			const struct nlmsgerr *e;

			if (nlh->nlmsg_type != NLMSG_ERROR || !c->set.seq ||
			    nlh->nlmsg_seq != c->set.seq)
				continue; /* late, after a timeout */
			e = mnl_nlmsg_get_payload(nlh);
			answered = true;
			set_answered(c, e->error, e->error ? extack_msg(nlh) : NULL);
			break;
		}
		if (c->stopping)
			return;
	}
}

static void on_get_readable(struct ctx *c)
{
	struct nlmsghdr *nlh;
	int n, got, i, ret = 0;

	for (i = 0; i < READ_BUDGET; i++) {
		n = recv(c->get.fd, c->rbuf, RBUF_SIZE, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (c->dump_running)
				dump_finish(c, -errno);
			return;
		}
		ret = 0;
		got = n;
		for (nlh = (struct nlmsghdr *)c->rbuf; mnl_nlmsg_ok(nlh, n);
		     nlh = mnl_nlmsg_next(nlh, &n)) {
			if (!c->dump_running || nlh->nlmsg_seq != c->get.seq)
				continue;
			ret = dump_msg(&c->d, nlh);
			if (ret)
				break;
		}
		sodium_memzero(c->rbuf, got); /* the private key, PSKs */
		if (!c->dump_running)
			continue;
		if (ret == 1 && c->d.intr && ++c->dump_restarts < 5) {
			/* changed while we read: read it again */
			(*c->c_dump_restarts)++;
			c->dump_gen = c->acks;
			dump_reset(&c->d);
			ret = dump_send(c);
			if (ret)
				dump_finish(c, ret);
			continue;
		}
		if (ret) {
			dump_finish(c, ret < 0 ? ret : 0);
			continue;
		}
		arm(c, c->get.timer); /* progress */
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct nlsock *s = h->data;

	(void)events;
	if (status < 0)
		s->c->host->log(s->c->self, WGGWD_LOG_WARN, "netlink %s socket: %s", s->what,
				uv_strerror(status));
	if (s == &s->c->set)
		on_set_readable(s->c);
	else
		on_get_readable(s->c);
}

static void on_timeout(void *arg)
{
	struct nlsock *s = arg;
	struct ctx *c = s->c;

	c->host->log(c->self, WGGWD_LOG_WARN, "netlink %s request on %s: no answer in %lld ms",
		     s->what, c->conf->interface, (long long)c->conf->timeout_ms);
	if (s == &c->set && c->set.seq)
		set_answered(c, -ETIMEDOUT, NULL);
	else if (s == &c->get && c->dump_running)
		dump_finish(c, -ETIMEDOUT);
}

static void restore_tick(void *arg)
{
	struct ctx *c = arg;

	if (!c->nrestore) {
		c->host->timer_stop(c->restore_timer);
		c->restore_armed = false;
		return;
	}
	if (c->dump_running || mono_ms() < c->dump_quiet_until)
		return;
	c->dump_internal = true;
	kick_dump(c);
}

/* ------------------------------------------------------------- plugin */

static int nl_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));
	const struct conf *cf = conf;

	if (!c)
		return -ENOMEM;
	if (sodium_is_zero(hkey, sizeof(hkey)))
		randombytes_buf(hkey, sizeof(hkey));
	c->host = host;
	c->self = self;
	c->conf = cf;
	c->set.c = c->get.c = c;
	c->set.what = "set";
	c->get.what = "dump";
	c->set.fd = c->get.fd = -1;
	c->q_tail = &c->q_head;
	c->msg_size = cf->message_size;
	c->msg_cap = c->msg_size / MIN_ENTRY + 1;
	c->nbuckets = 1024;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	c->msg = calloc(c->msg_cap, sizeof(*c->msg));
	c->retry = calloc(c->msg_cap, sizeof(*c->retry));
	c->rbuf = malloc(RBUF_SIZE);
	c->sbuf = malloc(c->msg_size);
	if (!c->buckets || !c->msg || !c->retry || !c->rbuf || !c->sbuf) {
		free(c->buckets);
		free(c->msg);
		free(c->retry);
		free(c->rbuf);
		free(c->sbuf);
		free(c);
		return -ENOMEM;
	}
	c->c_installed = host->counter(self, "installed");
	c->c_updated = host->counter(self, "updated");
	c->c_unchanged = host->counter(self, "unchanged");
	c->c_removed = host->counter(self, "removed");
	c->c_inverted = host->counter(self, "inverted");
	c->c_reinjected = host->counter(self, "reinjected");
	c->c_restored = host->counter(self, "keepalive_restored");
	c->c_restore_timeouts = host->counter(self, "restore_timeouts");
	c->c_errors = host->counter(self, "errors");
	c->c_messages = host->counter(self, "messages");
	c->c_split = host->counter(self, "messages_split");
	c->c_dumps = host->counter(self, "dumps");
	c->c_dump_restarts = host->counter(self, "dump_restarts");
	c->g_peers = host->gauge(self, "peers");
	c->g_restore = host->gauge(self, "restore_pending");
	*ctxp = c;
	return 0;
}

static int nl_start(void *ctx)
{
	struct ctx *c = ctx;
	struct dump *d = &c->d;
	char why[200], pub[WG_KEY_B64_LEN];
	size_t i;
	int ret;

	ret = open_sockets(c);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "netlink socket: %s", strerror(-ret));
		return ret;
	}
	ret = resolve_family(c);
	if (ret) {
		if (ret == -ENOENT)
			c->host->log(c->self, WGGWD_LOG_ERROR,
				     "the kernel has no \"wireguard\" generic netlink family: load the module (modprobe wireguard), or use installer-uapi with wireguard-go");
		else
			c->host->log(c->self, WGGWD_LOG_ERROR, "resolving the wireguard netlink family: %s",
				     strerror(-ret));
		return ret;
	}
	/* fill mode: digest what is there, so an unchanged peer costs nothing */
	d->fill = true;
	ret = sync_dump(c);
	d->fill = false;
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "reading %s: %s", c->conf->interface,
			     dev_error(c, ret, why, sizeof(why)));
		dump_reset(d);
		return ret;
	}
	memset(&c->dev, 0, sizeof(c->dev));
	snprintf(c->dev.ifname, sizeof(c->dev.ifname), "%s", c->conf->interface);
	c->dev.has_private_key = d->has_priv;
	memcpy(c->dev.private_key, d->priv, WGGWD_KEY_LEN);
	if (d->has_pub)
		memcpy(c->dev.public_key, d->pub, WGGWD_KEY_LEN);
	else if (d->has_priv)
		crypto_scalarmult_base(c->dev.public_key, d->priv);
	c->dev.listen_port = d->port;
	for (i = 0; i < d->n; i++) {
		struct peer_ent *e = table_put(c, d->v[i].public_key);

		if (!e) {
			dump_reset(d);
			return -ENOMEM;
		}
		acc_final(&d->acc[i], d->v[i].keepalive, e->cfg);
		e->ep = d->v[i].endpoint;
		e->keepalive = d->v[i].keepalive;
	}
	free(d->acc);
	d->acc = NULL;
	dump_reset(d);
	if (fcntl(c->set.fd, F_SETFL, O_NONBLOCK) || fcntl(c->get.fd, F_SETFL, O_NONBLOCK)) {
		ret = -errno;
		return ret;
	}
	/* nothing fails from here on */
	uv_poll_init(c->host->loop, &c->set.poll, c->set.fd);
	uv_poll_init(c->host->loop, &c->get.poll, c->get.fd);
	c->set.poll.data = &c->set;
	c->get.poll.data = &c->get;
	c->set.polling = c->get.polling = true;
	uv_poll_start(&c->set.poll, UV_READABLE, on_poll);
	uv_poll_start(&c->get.poll, UV_READABLE, on_poll);
	c->set.timer = c->host->timer_new(c->self, on_timeout, &c->set);
	c->get.timer = c->host->timer_new(c->self, on_timeout, &c->get);
	c->restore_timer = c->host->timer_new(c->self, restore_tick, c);
	c->ready = true;
	if (c->dev.has_private_key)
		key_str(pub, c->dev.public_key);
	c->host->log(c->self, WGGWD_LOG_INFO, "%s%s%s: public key %s, port %u, %zu peers; completion %s",
		     c->conf->interface, c->conf->netns ? " in netns " : "",
		     c->conf->netns ? c->conf->netns : "",
		     c->dev.has_private_key ? pub : "(none: no private key set)",
		     c->dev.listen_port, c->npeers, completions[c->conf->completion]);
	return 0;
}

static int nl_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	struct wggwd_peer *p = &it->peer;
	struct peer_ent *e;
	struct op *op;
	bool knock = false;

	if (!c->ready || c->stopping) {
		it->drop_reason = "installer_not_ready";
		return WGGWD_ERROR;
	}
	if (!(p->has & WGGWD_PEER_HAS_PUBLIC_KEY)) {
		memcpy(p->public_key, it->public_key, WGGWD_KEY_LEN);
		p->has |= WGGWD_PEER_HAS_PUBLIC_KEY;
	}
	op = calloc(1, sizeof(*op));
	if (!op) {
		it->drop_reason = "no_memory";
		return WGGWD_ERROR;
	}
	op->item = it;
	op->n = 1;
	if (it->op == WGGWD_OP_REMOVE) {
		op->type = OP_REMOVE;
		memcpy(op->key1, p->public_key, WGGWD_KEY_LEN);
		op->keys = &op->key1;
		table_del(c, p->public_key); /* an install after this queues after it */
		queue_op(c, op);
		return WGGWD_PENDING;
	}
	op->type = OP_INSTALL;
	item_cfg(it, op->cfg);
	/* the endpoint: where the knock came from, else the configured one */
	if (it->transport != WGGWD_TR_PUSH &&
	    (it->endpoint.sa.sa_family == AF_INET || it->endpoint.sa.sa_family == AF_INET6)) {
		op->ep = it->endpoint;
		op->has_ep = true;
		knock = true;
	} else if (p->has & WGGWD_PEER_HAS_ENDPOINT &&
		   (p->endpoint.sa.sa_family == AF_INET || p->endpoint.sa.sa_family == AF_INET6)) {
		op->ep = p->endpoint;
		op->has_ep = true;
	}
	e = table_get(c, p->public_key);
	if (e && !memcmp(e->cfg, op->cfg, CFG_LEN) &&
	    (!op->has_ep || wg_sockaddr_equal(&e->ep, &op->ep))) {
		free(op);
		it->flags |= WGGWD_ITEM_UNCHANGED;
		(*c->c_unchanged)++;
		return WGGWD_CONTINUE;
	}
	op->ka_conf = p->has & WGGWD_PEER_HAS_KEEPALIVE ? p->keepalive : 0;
	op->ka_send = op->ka_conf;
	if (knock && c->conf->completion == COMPLETION_INVERSION) {
		/* endpoint and a keepalive in one peer entry: the kernel
		 * applies the endpoint first, then initiates on the change
		 * of keepalive from 0 */
		op->invert = true;
		op->zero_first = e != NULL;
		op->ka_send = op->ka_conf ? op->ka_conf : c->conf->inversion_keepalive;
	} else if (knock) {
		/* reinject: stay the responder; a keepalive now would make
		 * the kernel initiate too and collide with the re-sent one */
		op->reinject = true;
		op->ka_send = 0;
	}
	op->restore = op->ka_send != op->ka_conf;
	op->queued_ns = real_ns();
	queue_op(c, op);
	return WGGWD_PENDING;
}

static int nl_device(void *ctx, struct wggwd_device *dev)
{
	struct ctx *c = ctx;

	if (!c->ready) {
		memset(dev, 0, sizeof(*dev));
		return -ENODATA;
	}
	*dev = c->dev;
	return 0;
}

static int nl_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	struct ctx *c = ctx;
	struct waiter *w, **pp;

	if (!c->ready || c->stopping)
		return -ESHUTDOWN;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cb = cb;
	w->arg = arg;
	for (pp = &c->dwait; *pp; pp = &(*pp)->next)
		;
	*pp = w;
	kick_dump(c);
	return 0;
}

static int nl_remove(void *ctx, const uint8_t (*keys)[WGGWD_KEY_LEN], size_t n,
		     wggwd_status_cb cb, void *arg)
{
	struct ctx *c = ctx;
	struct op *op;
	size_t i;

	if (!c->ready || c->stopping)
		return -ESHUTDOWN;
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->keys = malloc((n ? n : 1) * sizeof(*op->keys));
	if (!op->keys) {
		free(op);
		return -ENOMEM;
	}
	memcpy(op->keys, keys, n * sizeof(*keys));
	op->type = OP_REMOVE;
	op->n = n;
	op->cb = cb;
	op->arg = arg;
	for (i = 0; i < n; i++)
		table_del(c, keys[i]);
	if (!n) {
		op_free(op);
		cb(arg, 0);
		return 0;
	}
	queue_op(c, op);
	return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
	struct nlsock *s = h->data;
	struct ctx *c = s->c;

	close(s->fd);
	s->fd = -1;
	if (--c->closing == 0)
		c->host->stopped(c->self);
}

/* Everything still waiting is answered (cancelled) before the sockets go. */
static void fail_all(struct ctx *c)
{
	struct op *op;
	struct waiter *w;

	c->retry_n = c->retry_pos = 0;
	c->msg_n = 0;
	while ((op = c->q_head)) {
		op_unlink(c, op);
		op->err = -ECANCELED;
		op->acked = op->n;
		if (op->type == OP_INSTALL)
			op->err = -ECANCELED;
		op_finish(c, op);
	}
	while ((w = c->dcur ? c->dcur : c->dwait)) {
		if (w == c->dcur)
			c->dcur = w->next;
		else
			c->dwait = w->next;
		w->cb(w->arg, -ECANCELED, NULL, 0);
		free(w);
	}
}

static void nl_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->stopping = true;
	fail_all(c);
	c->host->timer_free(c->set.timer);
	c->host->timer_free(c->get.timer);
	c->host->timer_free(c->restore_timer);
	c->set.timer = c->get.timer = c->restore_timer = NULL;
	c->closing = 1; /* held while the closes are started */
	if (c->set.polling) {
		c->closing++;
		uv_close((uv_handle_t *)&c->set.poll, on_poll_closed);
	}
	if (c->get.polling) {
		c->closing++;
		uv_close((uv_handle_t *)&c->get.poll, on_poll_closed);
	}
	if (--c->closing == 0)
		c->host->stopped(c->self);
}

static void nl_destroy(void *ctx)
{
	struct ctx *c = ctx;
	struct peer_ent *e, *n;
	size_t i;

	if (c->set.fd >= 0)
		close(c->set.fd);
	if (c->get.fd >= 0)
		close(c->get.fd);
	for (i = 0; i < c->nbuckets; i++)
		for (e = c->buckets[i]; e; e = n) {
			n = e->next;
			free(e);
		}
	sodium_memzero(&c->dev, sizeof(c->dev));
	dump_reset(&c->d);
	free(c->d.v);
	free(c->d.acc);
	free(c->buckets);
	free(c->msg);
	free(c->retry);
	if (c->rbuf)
		sodium_memzero(c->rbuf, RBUF_SIZE);
	free(c->rbuf);
	if (c->sbuf)
		sodium_memzero(c->sbuf, c->msg_size);
	free(c->sbuf);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = nl_create,
	.start = nl_start,
	.process = nl_process,
	.stop = nl_stop,
	.destroy = nl_destroy,
	.device = nl_device,
	.dump = nl_dump,
	.remove = nl_remove,
};

WGGWD_PLUGIN_DEFINE(
	.name = "installer-netlink",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "installs peers on a kernel WireGuard interface through generic netlink, with role inversion",
	.kind = WGGWD_INSTALLER,
	.in = WGGWD_MSG_PEER,
	.out = WGGWD_MSG_EVENT,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
