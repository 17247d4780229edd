// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf: re-sending held initiations.
 *
 * When an installer asks for it (WGGWD_ITEM_REINJECT), the initiation is
 * sent again from the client's own address and port, through a raw IP
 * socket, so that the local WireGuard, which has just learnt the peer,
 * answers it as responder (MEASUREMENTS.md, the re-inject row).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <string.h>
#include <unistd.h>

#include "source_bpf.h"

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

int open_reinject(struct ctx *c)
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

int reinject(struct ctx *c, const struct wggwd_item *it)
{
	uint8_t buf[40 + 8 + BUF_LEN]; /* what was read fits: BUF_LEN */
	size_t ulen = 8 + it->pkt_len, hlen, n;
	union wggwd_sockaddr to;
	struct udphdr *uh;
	socklen_t tolen;
	ssize_t sent;
	int fd;

	if (!it->pkt || !it->pkt_len || it->pkt_len > BUF_LEN)
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
