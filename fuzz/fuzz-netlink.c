// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * libFuzzer target: installer-netlink (installer_netlink.c, genl.c, the
 * engine plugins/common/wgengine.c) facing a hostile kernel: generic
 * netlink datagrams (the family lookup, GET_DEVICE dumps, SET ACKs and
 * errors with extended ACK attributes) parsed by the plugin's own code,
 * libmnl included, through its receive paths (sync at start, then its
 * uv_poll callbacks).
 *
 * Userspace cannot send as the kernel (port 0), so this target replaces
 * two functions of genl.c: open_sockets (two SOCK_DGRAM socketpairs
 * stand for the netlink sockets: what the plugin sends is read and
 * dropped) and nl_recv_buf (the next datagram of the input for that
 * socket; a dump's over its 8 KiB read is cut short, as the kernel's
 * would be). fuzz/run compiles a copy of genl.c with those renamed.
 *
 * Input: [flags] then records [kind][len u16 LE][len bytes]
 *   flags % 3: completion; 4: items carry the knock's endpoint; 8: an
 *             install is BULK keys at once, in messages of 4 KiB (sent
 *             from the thread pool, in a chain that reads its answers)
 *   kind & 1: for the get (dump) socket, else the set socket
 *   kind & 2: keep the sequence numbers (else those of the last request
 *             the plugin sent on that socket)
 *   kind>>2 & 3: first 1 install, 2 remove (key (kind>>4)&3), 3 dump
 *   kind & 0x40: the datagram is from a foreign port (dropped)
 *   kind & 0x80: fire the engine's timers first
 * Records before the first action answer start (family, first dump);
 * after it, the plugin runs after each record with an action (or 0x80),
 * so the records without one pile up for it.
 */
#include "installer_netlink.h"
#include "stubhost.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const struct wggwd_plugin wggwd_plugin;

struct dgram {
	const uint8_t *p;
	size_t n;
	uint8_t kind;
	struct dgram *next;
};

#define MAXD 512
#define BULK 48 /* more than OFFLOAD_NEW, more than one 4 KiB message */
static struct dgram pool[MAXD];
static struct dgram *fifo[2], **tail[2];
static int peer[2] = { -1, -1 }; /* our ends of the socketpairs */
static uint32_t last_seq[2];       /* of the last request sent on each */
static int get_fd = -1;

/* Read what the plugin sent on socket i (dropped), noting its sequence. */
static void drain_one(int i)
{
	uint8_t buf[65536];
	ssize_t n;

	while (peer[i] >= 0 && (n = recv(peer[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		if ((size_t)n >= NLMSG_HDRLEN)
			last_seq[i] = ((const struct nlmsghdr *)buf)->nlmsg_seq;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	stub_init();
	return 0;
}

/* genl.c's, replaced: two socketpairs; each side of the plugin's is kept
 * readable (one datagram never read) so that poll and uv_poll wake up */
int open_sockets(struct ctx *c)
{
	int sv[2], i;

	for (i = 0; i < 2; i++) {
		struct nlsock *s = i ? &c->get : &c->set;

		if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv))
			abort();
		fcntl(sv[1], F_SETFL, O_NONBLOCK);
		s->fd = sv[0];
		if (i)
			get_fd = sv[0];
		s->portid = 1000 + i;
		peer[i] = sv[1];
		if (send(sv[1], "!", 1, 0) != 1)
			abort();
	}
	return 0;
}

static void patch_seq(uint8_t *buf, size_t len, uint32_t seq)
{
	size_t off = 0;

	while (off < len && len - off >= NLMSG_HDRLEN) {
		struct nlmsghdr *h = (struct nlmsghdr *)(buf + off);

		h->nlmsg_seq = seq;
		if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > len - off)
			return;
		off += NLMSG_ALIGN(h->nlmsg_len);
	}
}

/* genl.c's, replaced: the next datagram of the input for this socket
 * (the loop's reads and the SET chain's, in the pool) */
int nl_recv_buf(int fd, uint8_t *buf, size_t cap, int flags, bool *foreign, uint32_t *port)
{
	int i = fd == get_fd;
	struct dgram *d = fifo[i];

	(void)flags;
	if (!d)
		return -EAGAIN;
	fifo[i] = d->next;
	if (!fifo[i])
		tail[i] = &fifo[i];
	if (d->kind & 0x40) {
		*foreign = true;
		*port = 4242;
		return 0;
	}
	if (d->n > cap)
		return -EMSGSIZE;
	memcpy(buf, d->p, d->n);
	drain_one(i);
	if (!(d->kind & 2))
		patch_seq(buf, d->n, last_seq[i]);
	return (int)d->n;
}

static void drain(void)
{
	drain_one(0);
	drain_one(1);
}

static void free_completed(void)
{
	struct wggwd_item *it;
	int v;

	while ((it = stub_next_completed(&v)))
		stub_host.item_free(STUB_SELF, it);
}

static void pump(void)
{
	int i;

	for (i = 0; i < 8; i++) {
		uv_run(stub_loop(), UV_RUN_NOWAIT);
		drain();
		stub_drain();
		free_completed();
	}
}

static void dump_cb(void *arg, int status, const struct wggwd_peer_state *peers, size_t n,
		    size_t stride)
{
	size_t i, sum = 0;

	(void)arg;
	if (status && n)
		stub_fail("a failed dump with peers");
	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *ps = WGGWD_AT(struct wggwd_peer_state, peers, i, stride);

		if (ps->size < sizeof(*ps) || ps->origin > WGGWD_ORIGIN_STATIC)
			stub_fail("a dumped peer_state with a bad size or origin");
		sum += ps->n_allowed + ps->keepalive + ps->endpoint.sa.sa_family;
	}
	(void)sum;
}

static void item(void *ctx, int remove, unsigned k, uint8_t flags)
{
	const struct wggwd_host *h = &stub_host;
	struct wggwd_item *it = h->item_new(STUB_SELF);
	struct wggwd_allowed_ip *ips;
	unsigned n = (k & 3) + 1, i;
	int v;

	if (!it)
		return;
	memset(it->public_key, k + 1, WGGWD_KEY_LEN);
	it->type = WGGWD_MSG_PEER;
	it->peer->has = WGGWD_PEER_HAS_PUBLIC_KEY;
	memcpy(it->peer->public_key, it->public_key, WGGWD_KEY_LEN);
	if (remove) {
		it->op = WGGWD_OP_REMOVE;
		it->reason = WGGWD_R_IDLE;
	} else {
		it->peer->has |= WGGWD_PEER_HAS_ALLOWED_IPS | WGGWD_PEER_HAS_KEEPALIVE |
				 WGGWD_PEER_HAS_PRESHARED_KEY;
		it->peer->keepalive = k & 1 ? 25 : 0;
		memset(it->peer->preshared_key, 0x5f, WGGWD_KEY_LEN);
		ips = h->allowed_reserve(STUB_SELF, it, n);
		for (i = 0; ips && i < n; i++) {
			ips[i].family = i & 1 ? AF_INET6 : AF_INET;
			ips[i].cidr = i & 1 ? 128 : 32;
			ips[i].addr[0] = i & 1 ? 0xfd : 10;
			ips[i].addr[i & 1 ? 15 : 3] = k + 1;
		}
		if (flags & 4) {
			it->transport = WGGWD_TR_UDP;
			it->endpoint.in6.sin6_family = AF_INET6;
			it->endpoint.in6.sin6_addr.s6_addr[0] = 0x20;
			it->endpoint.in6.sin6_port = htons(51820);
		} else {
			it->transport = WGGWD_TR_PUSH;
			it->peer->origin = WGGWD_ORIGIN_PUSH;
		}
	}
	v = wggwd_plugin.ops->process(ctx, it);
	if (v != WGGWD_PENDING)
		h->item_free(STUB_SELF, it);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wggwd_device dev = { .size = sizeof(dev) };
	struct conf conf;
	size_t nd = 0, off = 1, i, first_action;
	uint8_t flags;
	void *ctx;
	int ret;

	if (!size)
		return 0;
	flags = data[0];
	while (size - off >= 3 && nd < MAXD) {
		size_t n = data[off + 1] | data[off + 2] << 8;

		if (n > size - off - 3)
			n = size - off - 3;
		pool[nd].kind = data[off];
		pool[nd].p = data + off + 3;
		pool[nd].n = n;
		pool[nd].next = NULL;
		nd++;
		off += 3 + n;
	}
	for (i = 0; i < 2; i++) {
		fifo[i] = NULL;
		tail[i] = &fifo[i];
	}
	/* the records that answer start */
	for (first_action = 0; first_action < nd && !(pool[first_action].kind & 0x8c); first_action++) {
		struct dgram *d = &pool[first_action];

		*tail[d->kind & 1] = d;
		tail[d->kind & 1] = &d->next;
	}

	stub_conf_defaults(&wggwd_plugin, &conf);
	conf.e.interface = "wg0";
	conf.netns = NULL;
	conf.e.completion = flags % 3;
	if (flags & 8)
		conf.message_size = 4096; /* bulk: a chain of several */
	if (wggwd_plugin.ops->create(&stub_host, STUB_SELF, &conf, &ctx))
		return 0;
	peer[0] = peer[1] = -1;
	last_seq[0] = last_seq[1] = 0;
	ret = wggwd_plugin.ops->start(ctx);
	if (ret)
		goto out;
	if (wggwd_plugin.ops->device(ctx, &dev) == 0 && dev.size != sizeof(dev))
		abort();
	sodium_memzero(&dev, sizeof(dev));
	pump();
	for (i = first_action; i < nd; i++) {
		struct dgram *d = &pool[i];
		unsigned k = (d->kind >> 4) & 3;

		if (d->kind & 0x80)
			stub_fire_timers();
		switch ((d->kind >> 2) & 3) {
		case 1:
			if (flags & 8) {
				unsigned j;

				for (j = 0; j < BULK; j++)
					item(ctx, 0, 4 + (k * BULK + j) % 200, flags);
				break;
			}
			item(ctx, 0, k, flags);
			break;
		case 2:
			item(ctx, 1, k, flags);
			break;
		case 3:
			(void)wggwd_plugin.ops->dump(ctx, dump_cb, NULL);
			break;
		}
		*tail[d->kind & 1] = d;
		tail[d->kind & 1] = &d->next;
		/* records with no action pile up: several answers at once (a
		 * chain reads one per message it sends) */
		if (d->kind & 0x8c)
			pump();
	}
	pump();
	/* what is still unanswered times out, then the daemon stops */
	stub_fire_timers();
	pump();
	stub_stopped = 0;
	wggwd_plugin.ops->stop(ctx);
	for (i = 0; i < 20 && !stub_stopped; i++) {
		stub_fire_timers(); /* the answers that will not come */
		pump();
	}
	if (!stub_stopped)
		stub_fail("stop never finished (host->stopped not called)");
out:
	free_completed();
	stub_free_timers();
	wggwd_plugin.ops->destroy(ctx);
	for (i = 0; i < 2; i++) {
		if (peer[i] >= 0)
			close(peer[i]);
		peer[i] = -1;
	}
	return 0;
}
