// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf's sniffer: the AF_PACKET socket bound to the uplink, its
 * classic BPF filter (sbfilter.c), and the read path: recvmmsg batches,
 * IP/UDP headers checked again, one item per initiation.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "source_bpf.h"

/* ---------------------------------------------------------------- filter */

/* The program itself is sbfilter.c's. */
static void filter_log(struct ctx *c, const struct sock_filter *f, size_t n)
{
	char buf[64 * 32], *p = buf;
	size_t i;

	for (i = 0; i < n && p < buf + sizeof(buf) - 32; i++)
		p += snprintf(p, buf + sizeof(buf) - p, "%s{ 0x%x,%u,%u,0x%08x }", i ? "," : "",
			      f[i].code, f[i].jt, f[i].jf, f[i].k);
	c->host->log(c->self, WGGWD_LOG_DEBUG, "filter: %s%s", buf, i < n ? ",..." : "");
}

int attach_filter(int fd, struct sock_filter *f, size_t n)
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
 * checked again, and the lengths are not taken on trust. `out`: one this
 * host sends, from our port (else one to it).
 */
static int parse(const uint8_t *p, size_t len, uint16_t port, bool out,
		 union wggwd_sockaddr *src, union wggwd_sockaddr *dst,
		 const uint8_t **payload, size_t *plen)
{
	size_t off, ihl, tot, caught = len;
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
	if (ulen < 8)
		return -EINVAL;
	if (ulen > len - off) {
		/* shorter than it says: a first fragment, or a lie; or a data
		 * packet, of which the filter keeps only the headers */
		if (caught != SBF_DATA_SNAP || p[off + 8] != 4)
			return -EINVAL;
		ulen = len - off;
	}
	if (ntohs(out ? uh.source : uh.dest) != port)
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

/* PACKET_STATISTICS reads and resets the kernel's counts. */
void read_stats(struct ctx *c)
{
	struct tpacket_stats st;
	socklen_t len = sizeof(st);

	if (c->fd < 0 || getsockopt(c->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len))
		return;
	if (st.tp_drops)
		log_limited(c, WGGWD_LOG_WARN,
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

int open_sniffer(struct ctx *c)
{
	const char *ifname = c->conf->interface;
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
	filter_log(c, c->prog, sbf_build(c->prog, c->port, c->conf->cookie_watch, NULL, 0));
	ret = filter_apply(c);
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

int resolve_port(struct ctx *c)
{
	const struct wggwd_installer *ins;
	struct wggwd_device dev = { .size = sizeof(dev) };
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

int alloc_batch(struct ctx *c)
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
	bool out;

	(*c->received)++;
	out = sll->sll_pkttype == PACKET_OUTGOING;
	if (out && !c->knocks) {
		(*c->drop_outgoing)++;
		return;
	}
	if (parse(mm->msg_hdr.msg_iov->iov_base, mm->msg_len, c->port, out, &src, &dst,
		  &payload, &plen)) {
		(*(out ? c->drop_outgoing : c->drop_parse))++;
		return;
	}
	if (src.sa.sa_family == AF_INET6) {
		/* a link-local client is only reachable through this link */
		if (IN6_IS_ADDR_LINKLOCAL(&src.in6.sin6_addr))
			src.in6.sin6_scope_id = sll->sll_ifindex;
		if (IN6_IS_ADDR_LINKLOCAL(&dst.in6.sin6_addr))
			dst.in6.sin6_scope_id = sll->sll_ifindex;
	}
	if (out) { /* only a cookie reply is of interest (cookie.c) */
		if (plen == SBF_COOKIE_LEN && payload[0] == 3)
			cookie_sent(c, &dst, payload, c->host->now_ns(),
				    rx_time(&mm->msg_hdr, now));
		else
			(*c->drop_outgoing)++;
		return;
	}
	if (plen && payload[0] == 4) { /* only watched endpoints get here */
		watch_hit(c, &src, &dst, sll->sll_ifindex, payload, plen,
			  rx_time(&mm->msg_hdr, now));
		return;
	}
	it = c->host->item_new(c->self);
	if (!it)
		return;
	if (c->host->item_pkt(c->self, it, payload, plen)) {
		c->host->item_free(c->self, it);
		return;
	}
	it->type = WGGWD_MSG_PKT;
	it->transport = WGGWD_TR_UDP;
	it->src = src;
	it->dst = dst;
	it->endpoint = src;
	it->ifindex = sll->sll_ifindex;
	it->rx_realtime_ns = rx_time(&mm->msg_hdr, now);
	if (load_note(c, c->host->now_ns())) {
		it->flags |= WGGWD_ITEM_INVERT;
		(*c->inverted_under_load)++;
	}
	if (!c->host->emit(c->self, it)) /* else refused (stopping) and freed */
		(*c->emitted)++;
}

static void recv_error(struct ctx *c, int err)
{
	if (err == ENETDOWN || err == ENXIO || err == ENODEV)
		log_limited(c, WGGWD_LOG_WARN, "interface %s: %s; waiting for it",
			    c->conf->interface,
			    if_nametoindex(c->conf->interface) ? "down" : "gone");
	else
		log_limited(c, WGGWD_LOG_ERROR, "reading: %s", strerror(err));
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
			now = c->host->realtime_ns(); /* in case there is no timestamp */
		handle_packet(c, &c->msgs[i], now);
	}
}

void on_poll(uv_poll_t *h, int status, int events)
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
		else
			log_limited(c, WGGWD_LOG_WARN, "poll: %s", uv_strerror(status));
		if (!c->stopping)
			uv_poll_start(&c->poll, UV_READABLE, on_poll);
		return;
	}
	if (events & UV_READABLE)
		read_batch(c);
}

/* Once a second: the kernel's drops, and whether the interface was
 * replaced (deleted and made again: a new ifindex, same name). */
void on_timer(void *arg)
{
	struct ctx *c = arg;
	unsigned idx;
	int ret;

	read_stats(c);
	load_tick(c);
	if (c->watch.n)
		wgt_sweep(&c->watch, watch_expire, c);
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
