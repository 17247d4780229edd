// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf: sniffs WireGuard handshake initiations on the uplink.
 *
 * An AF_PACKET SOCK_DGRAM socket bound to one interface, with a classic
 * BPF program that keeps only UDP to our port carrying 148 bytes that
 * start with type 1, over IPv4 or IPv6 (PROTOCOL.md (h), the "network
 * layer view": the kernel runs the filter on data that starts at the IP
 * header, whatever the link is: Ethernet, a bridge, a VLAN, tun,
 * WireGuard itself). It only observes copies; WireGuard still owns its
 * UDP socket and sees every packet as usual.
 *
 * When an installer asks for it (WGGWD_ITEM_REINJECT), the initiation is
 * sent again from the client's own address and port, through a raw IP
 * socket, so that the local WireGuard, which has just learnt the peer,
 * answers it as responder (MEASUREMENTS.md, the re-inject row).
 *
 * Counters: received (read from the socket: everything the filter let
 * through), emitted, drop_outgoing (copies of what this host sent),
 * drop_parse (IP/UDP headers that do not hold up), kernel_drops (the
 * receive buffer overflowed: PACKET_STATISTICS, read every second and at
 * stop), reinjected, reinject_failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "wgutil.h"

#define INIT_LEN 148            /* a handshake initiation, UDP payload   */
#define INIT_UDP_LEN (INIT_LEN + 8)
#define SNAP_LEN 0xffff         /* what the filter keeps of a packet     */
#define BUF_LEN 512             /* >= 60 (IPv4 with options) + 8 + 148   */
#define CTRL_LEN 64             /* one SCM_TIMESTAMPNS                   */
#define STATS_MS 1000           /* kernel drop counter, interface check  */
#define WARN_EVERY_MS 1000

struct conf {
	char *interface;
	int64_t port;
	int64_t batch;
	uint64_t rcvbuf;
	bool reinject;
};

/* What the kernel accepts as a device name (dev_valid_name). */
static const char *check_ifname(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!*s || strlen(s) >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, "..") ||
	    strpbrk(s, "/: \t\n")) {
		snprintf(buf, len, "expected an interface name (1-%d characters, no '/', ':' or blanks)",
			 IFNAMSIZ - 1);
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	{ .name = "interface", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, interface), .check = check_ifname,
	  .help = "the uplink the clients' initiations arrive on (eth0, a bridge, a veth); any link type" },
	{ .name = "port", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 65535,
	  .offset = offsetof(struct conf, port),
	  .help = "the WireGuard UDP port to watch; 0: the listen port the pipeline's installer reports" },
	{ .name = "batch", .type = WGGWD_OPT_INT, .def = "64", .min = 1, .max = 1024,
	  .offset = offsetof(struct conf, batch),
	  .help = "packets read per wakeup (one recvmmsg); more are read on the next turn of the loop" },
	{ .name = "rcvbuf", .type = WGGWD_OPT_SIZE, .def = "8MiB", .min = 4096, .max = 1LL << 30,
	  .offset = offsetof(struct conf, rcvbuf),
	  .help = "socket receive buffer (SO_RCVBUFFORCE, else SO_RCVBUF capped by net.core.rmem_max): what absorbs a burst while the pipeline is busy; overflows are counted as kernel_drops" },
	{ .name = "reinject", .type = WGGWD_OPT_BOOL, .def = "true",
	  .offset = offsetof(struct conf, reinject),
	  .help = "when the installer asks for it, send the held initiation again from the client's address and port (raw IP socket) so the local WireGuard answers it as responder" },
	WGGWD_OPT_END
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
	uint64_t last_warn;
	uint64_t *received, *emitted, *drop_parse, *drop_outgoing, *kernel_drops;
	uint64_t *reinjected, *reinject_failed;
};

/* ---------------------------------------------------------------- filter */

/*
 * `udp and dst port P and udp[8] = 1 and udp[4:2] = 156` for IPv4: the
 * verified network-layer program of PROTOCOL.md (h), instruction for
 * instruction (only the jumps differ); then the same for IPv6 with UDP
 * right after the 40-byte header (no extension headers). The data starts
 * at the IP header on every link type, so the version nibble says which.
 * The reserved bytes after the type are left to the decoder (drop_type).
 */
enum {
	F_V6 = 14,
	F_ACCEPT = 23,
	F_DROP = 24,
	F_LEN = 25,
};
#define J(op, k, t, f, pc) BPF_JUMP(BPF_JMP | (op) | BPF_K, (k), (t) - (pc) - 1, (f) - (pc) - 1)

static void filter_build(struct sock_filter f[F_LEN], uint16_t port)
{
	const struct sock_filter prog[F_LEN] = {
		/* 0 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
		/* 1 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf0),
		/* 2 */ J(BPF_JEQ, 0x40, 3, F_V6, 2),
		/* IPv4 */
		/* 3 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),          /* protocol */
		/* 4 */ J(BPF_JEQ, IPPROTO_UDP, 5, F_DROP, 4),
		/* 5 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),          /* flags+frag */
		/* 6 */ J(BPF_JSET, 0x1fff, F_DROP, 7, 6),              /* not first */
		/* 7 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),         /* X = IHL */
		/* 8 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),          /* dst port */
		/* 9 */ J(BPF_JEQ, port, 10, F_DROP, 9),
		/* 10 */ BPF_STMT(BPF_LD | BPF_B | BPF_IND, 8),         /* type */
		/* 11 */ J(BPF_JEQ, 1, 12, F_DROP, 11),
		/* 12 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 4),         /* UDP length */
		/* 13 */ J(BPF_JEQ, INIT_UDP_LEN, F_ACCEPT, F_DROP, 13),
		/* IPv6: A still holds the version nibble */
		/* 14 */ J(BPF_JEQ, 0x60, 15, F_DROP, 14),
		/* 15 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),         /* next header */
		/* 16 */ J(BPF_JEQ, IPPROTO_UDP, 17, F_DROP, 16),
		/* 17 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 42),        /* dst port */
		/* 18 */ J(BPF_JEQ, port, 19, F_DROP, 18),
		/* 19 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 44),        /* UDP length */
		/* 20 */ J(BPF_JEQ, INIT_UDP_LEN, 21, F_DROP, 20),
		/* 21 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 48),        /* type */
		/* 22 */ J(BPF_JEQ, 1, F_ACCEPT, F_DROP, 22),
		/* 23 */ BPF_STMT(BPF_RET | BPF_K, SNAP_LEN),
		/* 24 */ BPF_STMT(BPF_RET | BPF_K, 0),
	};

	memcpy(f, prog, sizeof(prog));
}

static void filter_log(struct ctx *c, const struct sock_filter *f, size_t n)
{
	char buf[F_LEN * 32], *p = buf;
	size_t i;

	for (i = 0; i < n; i++)
		p += snprintf(p, buf + sizeof(buf) - p, "%s{ 0x%x,%u,%u,0x%08x }", i ? "," : "",
			      f[i].code, f[i].jt, f[i].jf, f[i].k);
	c->host->log(c->self, WGGWD_LOG_DEBUG, "filter: %s", buf);
}

static int attach_filter(int fd, struct sock_filter *f, size_t n)
{
	struct sock_fprog prog = { .len = n, .filter = f };

	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)))
		return -errno;
	return 0;
}

/* --------------------------------------------------------------- parsing */

/*
 * The IP/UDP headers of a packet as the network-layer view shows it
 * (core/decode.c udp_payload, adapted). Everything the filter checked is
 * checked again, and the lengths are not taken on trust.
 */
static int parse(const uint8_t *p, size_t len, uint16_t port, union wggwd_sockaddr *src,
		 union wggwd_sockaddr *dst, const uint8_t **payload, size_t *plen)
{
	size_t off, ihl, tot;
	struct udphdr uh;
	size_t ulen;

	memset(src, 0, sizeof(*src));
	memset(dst, 0, sizeof(*dst));
	if (len < 1)
		return -EINVAL;
	switch (p[0] >> 4) {
	case 4:
		if (len < 20)
			return -EINVAL;
		ihl = (p[0] & 0xf) * 4;
		tot = p[2] << 8 | p[3];
		if (ihl < 20 || tot < ihl + 8 || p[9] != IPPROTO_UDP)
			return -EINVAL;
		if ((p[6] << 8 | p[7]) & 0x1fff)
			return -EINVAL; /* not the first fragment */
		if (tot < len)
			len = tot; /* link-layer padding */
		if (len < ihl + 8)
			return -EINVAL;
		src->in4.sin_family = dst->in4.sin_family = AF_INET;
		memcpy(&src->in4.sin_addr, p + 12, 4);
		memcpy(&dst->in4.sin_addr, p + 16, 4);
		off = ihl;
		break;
	case 6:
		if (len < 40 + 8 || p[6] != IPPROTO_UDP)
			return -EINVAL; /* extension headers are not followed */
		tot = 40 + (p[4] << 8 | p[5]);
		if (tot < 40 + 8)
			return -EINVAL; /* includes jumbograms (payload length 0) */
		if (tot < len)
			len = tot;
		src->in6.sin6_family = dst->in6.sin6_family = AF_INET6;
		memcpy(&src->in6.sin6_addr, p + 8, 16);
		memcpy(&dst->in6.sin6_addr, p + 24, 16);
		off = 40;
		break;
	default:
		return -EINVAL;
	}
	memcpy(&uh, p + off, sizeof(uh));
	ulen = ntohs(uh.len);
	/* shorter than it says: a first fragment, or a lie */
	if (ulen < 8 || ulen > len - off)
		return -EINVAL;
	if (ntohs(uh.dest) != port)
		return -EINVAL;
	if (src->sa.sa_family == AF_INET) {
		src->in4.sin_port = uh.source;
		dst->in4.sin_port = uh.dest;
	} else {
		src->in6.sin6_port = uh.source;
		dst->in6.sin6_port = uh.dest;
	}
	*payload = p + off + 8;
	*plen = ulen - 8;
	return 0;
}

/* ---------------------------------------------------------------- socket */

static bool warn_due(struct ctx *c)
{
	uint64_t now = uv_now(c->host->loop);

	if (c->last_warn && now - c->last_warn < WARN_EVERY_MS)
		return false;
	c->last_warn = now ? now : 1;
	return true;
}

/* PACKET_STATISTICS reads and resets the kernel's counts. */
static void read_stats(struct ctx *c)
{
	struct tpacket_stats st;
	socklen_t len = sizeof(st);

	if (c->fd < 0 || getsockopt(c->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len))
		return;
	if (st.tp_drops && warn_due(c))
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "the kernel dropped %u initiations: the receive buffer was full (raise rcvbuf, or the pipeline is too slow)",
			     st.tp_drops);
	*c->kernel_drops += st.tp_drops;
}

static int bind_if(struct ctx *c, unsigned ifindex)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETH_P_ALL),
		.sll_ifindex = ifindex,
	};
	socklen_t len = sizeof(int);
	int err = 0;

	if (bind(c->fd, (struct sockaddr *)&sll, sizeof(sll)))
		return -errno;
	c->ifindex = ifindex;
	/* bound to an interface that is down: ENETDOWN now, packets once it
	 * comes up (the kernel re-hooks the socket by itself) */
	if (!getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) && err == ENETDOWN)
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "interface %s is down: sniffing starts when it comes up",
			     c->conf->interface);
	return 0;
}

static int open_sniffer(struct ctx *c)
{
	const char *ifname = c->conf->interface;
	struct sock_filter f[F_LEN];
	uint8_t scratch[BUF_LEN];
	int fd, v, got, ret, n = 0;
	socklen_t len = sizeof(got);
	unsigned ifindex;

	ifindex = if_nametoindex(ifname);
	if (!ifindex) {
		ret = -errno;
		c->host->log(c->self, WGGWD_LOG_ERROR, "interface %s: %s", ifname,
			     ret == -ENODEV ? "no such interface (in this network namespace)" :
			     strerror(-ret));
		return ret;
	}
	/* protocol 0: not hooked to any traffic until bind() */
	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		c->host->log(c->self, WGGWD_LOG_ERROR, "AF_PACKET socket: %s%s", strerror(-ret),
			     ret == -EPERM || ret == -EACCES ?
			     " (needs CAP_NET_RAW: run as root or grant the capability)" : "");
		return ret;
	}
	c->fd = fd;

	v = c->conf->rcvbuf > INT_MAX / 2 ? INT_MAX / 2 : (int)c->conf->rcvbuf;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)))
		c->host->log(c->self, WGGWD_LOG_WARN, "SO_RCVBUF %d: %s", v, strerror(errno));
	/* the kernel reports twice what it was asked (bookkeeping) */
	if (!getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) && got / 2 < v)
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "rcvbuf: asked for %d bytes, got %d (no CAP_NET_ADMIN: capped by net.core.rmem_max)",
			     v, got / 2);
	v = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &v, sizeof(v)))
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "SO_TIMESTAMPNS: %s; receive times are taken when read", strerror(errno));

	/* the filter first, then bind: nothing unfiltered is ever queued */
	filter_build(f, c->port);
	filter_log(c, f, F_LEN);
	ret = attach_filter(fd, f, F_LEN);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "SO_ATTACH_FILTER: %s", strerror(-ret));
		goto out;
	}
	/* nothing can be there (protocol 0), but never emit what the filter
	 * did not see */
	while (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) >= 0)
		n++;
	if (n)
		c->host->log(c->self, WGGWD_LOG_DEBUG, "drained %d unfiltered packets", n);

	ret = bind_if(c, ifindex);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "bind to %s (ifindex %u): %s", ifname,
			     ifindex, strerror(-ret));
		goto out;
	}
	read_stats(c); /* start the kernel's counts from here */
	return 0;
out:
	close(fd);
	c->fd = -1;
	return ret;
}

/* Raw IP sockets that only send (IPPROTO_RAW implies IP_HDRINCL, for IPv6
 * too); a drop-all filter keeps anything from queueing on them. */
static int open_raw(int family, int *fdp)
{
	struct sock_filter none[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
	int fd, ret;

	fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
	if (fd < 0)
		return -errno;
	ret = attach_filter(fd, none, 1);
	if (ret) {
		close(fd);
		return ret;
	}
	*fdp = fd;
	return 0;
}

static int open_reinject(struct ctx *c)
{
	int ret;

	ret = open_raw(AF_INET, &c->raw4);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "reinject: raw IPv4 socket: %s%s",
			     strerror(-ret), ret == -EPERM ?
			     " (needs CAP_NET_RAW; or set reinject: false)" : "");
		return ret;
	}
	ret = open_raw(AF_INET6, &c->raw6);
	if (ret == -EAFNOSUPPORT) {
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "reinject: no IPv6 here; initiations from IPv6 clients are not re-sent");
		return 0;
	}
	if (ret)
		c->host->log(c->self, WGGWD_LOG_ERROR, "reinject: raw IPv6 socket: %s",
			     strerror(-ret));
	return ret;
}

static int resolve_port(struct ctx *c)
{
	const struct wggwd_installer *ins;
	struct wggwd_device dev;
	int ret;

	if (c->conf->port) {
		c->port = c->conf->port;
		return 0;
	}
	ins = c->host->installer(c->self);
	if (!ins) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "port: 0 asks the pipeline's installer, and the pipeline has none; set port");
		return -EINVAL;
	}
	ret = ins->ops->device(ins->ctx, &dev);
	c->port = ret ? 0 : dev.listen_port;
	sodium_memzero(&dev, sizeof(dev));
	if (!c->port) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "installer %s reports no listen port%s%s; set port",
			     ins->name, ret ? ": " : "", ret ? strerror(-ret) : "");
		return ret ? ret : -EINVAL;
	}
	return 0;
}

static int alloc_batch(struct ctx *c)
{
	unsigned i;

	c->batch = c->conf->batch;
	c->msgs = calloc(c->batch, sizeof(*c->msgs));
	c->iov = calloc(c->batch, sizeof(*c->iov));
	c->names = calloc(c->batch, sizeof(*c->names));
	c->bufs = calloc(c->batch, BUF_LEN);
	c->ctrl = calloc(c->batch, CTRL_LEN);
	if (!c->msgs || !c->iov || !c->names || !c->bufs || !c->ctrl)
		return -ENOMEM;
	for (i = 0; i < c->batch; i++) {
		c->iov[i].iov_base = c->bufs + (size_t)i * BUF_LEN;
		c->iov[i].iov_len = BUF_LEN;
		c->msgs[i].msg_hdr.msg_iov = &c->iov[i];
		c->msgs[i].msg_hdr.msg_iovlen = 1;
		c->msgs[i].msg_hdr.msg_name = &c->names[i];
		c->msgs[i].msg_hdr.msg_control = c->ctrl + (size_t)i * CTRL_LEN;
	}
	return 0;
}

/* --------------------------------------------------------------- reading */

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t rx_time(struct msghdr *m, uint64_t fallback)
{
	struct cmsghdr *cm;
	struct timespec ts;

	for (cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS &&
		    cm->cmsg_len >= CMSG_LEN(sizeof(ts))) {
			memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
			return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
		}
	}
	return fallback;
}

static void handle_packet(struct ctx *c, struct mmsghdr *mm, uint64_t now)
{
	const struct sockaddr_ll *sll = mm->msg_hdr.msg_name;
	union wggwd_sockaddr src, dst;
	const uint8_t *payload;
	struct wggwd_item *it;
	size_t plen;

	(*c->received)++;
	if (sll->sll_pkttype == PACKET_OUTGOING) {
		(*c->drop_outgoing)++;
		return;
	}
	if (parse(mm->msg_hdr.msg_iov->iov_base, mm->msg_len, c->port, &src, &dst,
		  &payload, &plen)) {
		(*c->drop_parse)++;
		return;
	}
	if (src.sa.sa_family == AF_INET6) {
		/* a link-local client is only reachable through this link */
		if (IN6_IS_ADDR_LINKLOCAL(&src.in6.sin6_addr))
			src.in6.sin6_scope_id = sll->sll_ifindex;
		if (IN6_IS_ADDR_LINKLOCAL(&dst.in6.sin6_addr))
			dst.in6.sin6_scope_id = sll->sll_ifindex;
	}
	it = c->host->item_new(c->self);
	if (!it)
		return;
	it->type = WGGWD_MSG_PKT;
	it->transport = WGGWD_TR_UDP;
	it->pkt_len = plen;
	memcpy(it->pkt, payload, plen < WGGWD_PKT_MAX ? plen : WGGWD_PKT_MAX);
	it->src = src;
	it->dst = dst;
	it->endpoint = src;
	it->ifindex = sll->sll_ifindex;
	it->rx_realtime_ns = rx_time(&mm->msg_hdr, now);
	it->source_ref = c; /* done() re-sends only what this source emitted */
	(*c->emitted)++;
	c->host->emit(c->self, it);
}

static void recv_error(struct ctx *c, int err)
{
	if (!warn_due(c))
		return;
	if (err == ENETDOWN || err == ENXIO || err == ENODEV)
		c->host->log(c->self, WGGWD_LOG_WARN, "interface %s: %s; waiting for it",
			     c->conf->interface,
			     if_nametoindex(c->conf->interface) ? "down" : "gone");
	else
		c->host->log(c->self, WGGWD_LOG_ERROR, "reading: %s", strerror(err));
}

static void read_batch(struct ctx *c)
{
	uint64_t now = 0;
	unsigned i;
	int n;

	for (i = 0; i < c->batch; i++) {
		c->msgs[i].msg_hdr.msg_namelen = sizeof(c->names[i]);
		c->msgs[i].msg_hdr.msg_controllen = CTRL_LEN;
		c->msgs[i].msg_hdr.msg_flags = 0;
	}
	do
		n = recvmmsg(c->fd, c->msgs, c->batch, MSG_DONTWAIT, NULL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			recv_error(c, errno);
		return;
	}
	for (i = 0; i < (unsigned)n && !c->stopping; i++) {
		if (!now)
			now = realtime_ns(); /* in case there is no timestamp */
		handle_packet(c, &c->msgs[i], now);
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct ctx *c = h->data;
	socklen_t len = sizeof(int);
	uint8_t scratch[BUF_LEN];
	int err = 0;

	if (status < 0) {
		/* POLLERR: libuv stops the handle. Take the socket's error
		 * (ENETDOWN: the interface went down or away), empty the error
		 * queue, and go on. */
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || !err)
			err = 0;
		while (recv(c->fd, scratch, sizeof(scratch), MSG_ERRQUEUE | MSG_DONTWAIT) >= 0)
			;
		if (err)
			recv_error(c, err);
		else if (warn_due(c))
			c->host->log(c->self, WGGWD_LOG_WARN, "poll: %s", uv_strerror(status));
		if (!c->stopping)
			uv_poll_start(&c->poll, UV_READABLE, on_poll);
		return;
	}
	if (events & UV_READABLE)
		read_batch(c);
}

/* Once a second: the kernel's drops, and whether the interface was
 * replaced (deleted and made again: a new ifindex, same name). */
static void on_timer(void *arg)
{
	struct ctx *c = arg;
	unsigned idx;
	int ret;

	read_stats(c);
	idx = if_nametoindex(c->conf->interface);
	if (!idx || idx == c->ifindex)
		return;
	ret = bind_if(c, idx);
	if (ret)
		c->host->log(c->self, WGGWD_LOG_ERROR, "interface %s is back (ifindex %u), bind: %s",
			     c->conf->interface, idx, strerror(-ret));
	else
		c->host->log(c->self, WGGWD_LOG_INFO, "interface %s is back (ifindex %u); sniffing again",
			     c->conf->interface, idx);
}

/* ------------------------------------------------------------- reinject */

static uint32_t sum16(uint32_t sum, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		sum += p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += p[n - 1] << 8;
	return sum;
}

/* The UDP checksum: sent packets' own may be partial (offloaded) in the
 * copy we captured, so it is computed again. */
static uint16_t udp_csum(const void *saddr, const void *daddr, size_t alen,
			 const uint8_t *udp, size_t ulen)
{
	uint32_t sum = 0;

	sum = sum16(sum, saddr, alen);
	sum = sum16(sum, daddr, alen);
	sum += IPPROTO_UDP + ulen;
	sum = sum16(sum, udp, ulen);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	return htons(sum ? sum : 0xffff);
}

static int reinject(struct ctx *c, const struct wggwd_item *it)
{
	uint8_t buf[40 + 8 + WGGWD_PKT_MAX];
	size_t ulen = 8 + it->pkt_len, hlen, n;
	union wggwd_sockaddr to;
	struct udphdr *uh;
	socklen_t tolen;
	ssize_t sent;
	int fd;

	if (!it->pkt_len || it->pkt_len > WGGWD_PKT_MAX)
		return -EMSGSIZE;
	if (it->src.sa.sa_family != it->dst.sa.sa_family)
		return -EAFNOSUPPORT;
	memset(buf, 0, sizeof(buf));
	to = it->dst;
	if (it->src.sa.sa_family == AF_INET) {
		struct iphdr *ip = (struct iphdr *)buf;

		fd = c->raw4;
		hlen = sizeof(*ip);
		ip->version = 4;
		ip->ihl = hlen / 4;
		ip->tot_len = htons(hlen + ulen);
		ip->ttl = 64;
		ip->protocol = IPPROTO_UDP;
		memcpy(&ip->saddr, &it->src.in4.sin_addr, 4);
		memcpy(&ip->daddr, &it->dst.in4.sin_addr, 4);
		/* the kernel fills the id and the header checksum */
		uh = (struct udphdr *)(buf + hlen);
		uh->source = it->src.in4.sin_port;
		uh->dest = it->dst.in4.sin_port;
		to.in4.sin_port = 0;
		tolen = sizeof(to.in4);
	} else if (it->src.sa.sa_family == AF_INET6) {
		struct ip6_hdr *ip6 = (struct ip6_hdr *)buf;

		fd = c->raw6;
		hlen = sizeof(*ip6);
		ip6->ip6_flow = htonl(6u << 28);
		ip6->ip6_plen = htons(ulen);
		ip6->ip6_nxt = IPPROTO_UDP;
		ip6->ip6_hlim = 64;
		ip6->ip6_src = it->src.in6.sin6_addr;
		ip6->ip6_dst = it->dst.in6.sin6_addr;
		uh = (struct udphdr *)(buf + hlen);
		uh->source = it->src.in6.sin6_port;
		uh->dest = it->dst.in6.sin6_port;
		to.in6.sin6_port = 0; /* a raw socket wants 0 or its protocol */
		tolen = sizeof(to.in6);
	} else {
		return -EAFNOSUPPORT;
	}
	if (fd < 0)
		return -EAFNOSUPPORT;
	uh->len = htons(ulen);
	memcpy(buf + hlen + 8, it->pkt, it->pkt_len);
	if (hlen == 20)
		uh->check = udp_csum(buf + 12, buf + 16, 4, (uint8_t *)uh, ulen);
	else
		uh->check = udp_csum(buf + 8, buf + 24, 16, (uint8_t *)uh, ulen);
	n = hlen + ulen;
	sent = sendto(fd, buf, n, 0, &to.sa, tolen);
	if (sent < 0)
		return -errno;
	return (size_t)sent == n ? 0 : -EIO;
}

/*
 * Items finish after the source has stopped too (the core stops sources
 * first, then drains): the raw sockets stay open until destroy for them.
 */
static void sb_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	char from[64], to[64];
	int ret;

	if (verdict != WGGWD_CONTINUE || !(it->flags & WGGWD_ITEM_REINJECT) ||
	    (it->flags & WGGWD_ITEM_INJECTED) || it->source_ref != c)
		return;
	if (!c->conf->reinject) {
		c->host->log(c->self, WGGWD_LOG_DEBUG, "the installer asked for a re-send; reinject is off");
		return;
	}
	ret = reinject(c, it);
	if (!ret) {
		(*c->reinjected)++;
		return;
	}
	(*c->reinject_failed)++;
	if (warn_due(c)) {
		wg_sockaddr_str(&it->src, from, sizeof(from));
		wg_sockaddr_str(&it->dst, to, sizeof(to));
		c->host->log(c->self, WGGWD_LOG_WARN, "re-sending the initiation from %s to %s: %s",
			     from, to, strerror(-ret));
	}
}

/* ------------------------------------------------------------- lifecycle */

static int sb_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->fd = c->raw4 = c->raw6 = -1;
	c->received = host->counter(self, "received");
	c->emitted = host->counter(self, "emitted");
	c->drop_parse = host->counter(self, "drop_parse");
	c->drop_outgoing = host->counter(self, "drop_outgoing");
	c->kernel_drops = host->counter(self, "kernel_drops");
	c->reinjected = host->counter(self, "reinjected");
	c->reinject_failed = host->counter(self, "reinject_failed");
	*ctxp = c;
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void on_closed(uv_handle_t *h)
{
	struct ctx *c = h->data;

	close_fd(&c->fd);
	c->poll_init = false;
	if (c->stopping)
		c->host->stopped(c->self);
}

static int sb_start(void *ctx)
{
	struct ctx *c = ctx;
	int ret;

	ret = resolve_port(c);
	if (ret)
		return ret;
	ret = alloc_batch(c);
	if (ret)
		goto out;
	ret = open_sniffer(c);
	if (ret)
		goto out;
	if (c->conf->reinject) {
		ret = open_reinject(c);
		if (ret)
			goto out;
	}
	ret = uv_poll_init(c->host->loop, &c->poll, c->fd);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "uv_poll_init: %s", uv_strerror(ret));
		goto out;
	}
	c->poll.data = c;
	c->poll_init = true;
	ret = uv_poll_start(&c->poll, UV_READABLE, on_poll);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "uv_poll_start: %s", uv_strerror(ret));
		uv_close((uv_handle_t *)&c->poll, on_closed); /* closes the fd */
		goto out;
	}
	c->timer = c->host->timer_new(c->self, on_timer, c);
	c->host->timer_start(c->timer, STATS_MS, STATS_MS);
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "sniffing initiations to port %u on %s (ifindex %u), IPv4 and IPv6; re-send %s",
		     c->port, c->conf->interface, c->ifindex,
		     !c->conf->reinject ? "off" : c->raw6 >= 0 ? "on" : "on (IPv4 only)");
	return 0;
out:
	if (!c->poll_init)
		close_fd(&c->fd);
	close_fd(&c->raw4);
	close_fd(&c->raw6);
	return ret;
}

static void sb_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->stopping = true;
	if (c->timer) {
		c->host->timer_free(c->timer);
		c->timer = NULL;
	}
	read_stats(c); /* the last of the kernel's drops */
	if (c->poll_init) {
		uv_poll_stop(&c->poll);
		uv_close((uv_handle_t *)&c->poll, on_closed);
		return;
	}
	close_fd(&c->fd);
	c->host->stopped(c->self);
}

static void sb_destroy(void *ctx)
{
	struct ctx *c = ctx;

	close_fd(&c->fd);
	close_fd(&c->raw4);
	close_fd(&c->raw6);
	free(c->msgs);
	free(c->iov);
	free(c->names);
	free(c->bufs);
	free(c->ctrl);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = sb_create,
	.start = sb_start,
	.stop = sb_stop,
	.destroy = sb_destroy,
	.done = sb_done,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-bpf",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "sniffs WireGuard handshake initiations on an interface (AF_PACKET + classic BPF), re-sends them on request",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PKT,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
