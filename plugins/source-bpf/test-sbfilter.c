// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf's generated filter, run by libpcap's BPF interpreter on
 * hand-made IPv4 and IPv6 packets, and checked by the kernel (attached to
 * a UDP socket, which needs no privilege). libpcap knows no ancillary
 * loads, so the cookie section (SKF_AD_PKTTYPE) runs in a small classic
 * BPF interpreter of our own, which is first checked against libpcap's on
 * every other case. TAP.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <pcap/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sbfilter.h"

#define PORT 51820

static int n_test, n_failed;

static void ok(int cond, const char *what)
{
	n_test++;
	if (!cond)
		n_failed++;
	printf("%sok %d - %s\n", cond ? "" : "not ", n_test, what);
}

static union wggwd_sockaddr ep4(const char *a, uint16_t port)
{
	union wggwd_sockaddr s = { 0 };

	s.in4.sin_family = AF_INET;
	inet_pton(AF_INET, a, &s.in4.sin_addr);
	s.in4.sin_port = htons(port);
	return s;
}

static union wggwd_sockaddr ep6(const char *a, uint16_t port)
{
	union wggwd_sockaddr s = { 0 };

	s.in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, a, &s.in6.sin6_addr);
	s.in6.sin6_port = htons(port);
	return s;
}

/* An IP packet from `src` to our address, port `dport`; `opt`: IPv4
 * option words; `frag`: IPv4 fragment offset. */
static size_t pkt(uint8_t *p, const union wggwd_sockaddr *src, uint16_t dport,
		  const uint8_t *payload, size_t len, int opt, int frag)
{
	size_t h;

	memset(p, 0, 2048);
	if (src->sa.sa_family == AF_INET) {
		h = 20 + 4 * opt;
		p[0] = 0x40 | (h / 4);
		p[2] = (h + 8 + len) >> 8;
		p[3] = (h + 8 + len) & 0xff;
		p[6] = frag >> 8;
		p[7] = frag & 0xff;
		p[8] = 64;
		p[9] = IPPROTO_UDP;
		memcpy(p + 12, &src->in4.sin_addr, 4);
		p[16] = 10;
		p[19] = 1;
		memcpy(p + h, &src->in4.sin_port, 2);
	} else {
		h = 40;
		p[0] = 0x60;
		p[4] = (8 + len) >> 8;
		p[5] = (8 + len) & 0xff;
		p[6] = IPPROTO_UDP;
		p[7] = 64;
		memcpy(p + 8, &src->in6.sin6_addr, 16);
		p[24] = 0xfd;
		p[39] = 1;
		memcpy(p + h, &src->in6.sin6_port, 2);
	}
	p[h + 2] = dport >> 8;
	p[h + 3] = dport & 0xff;
	p[h + 4] = (8 + len) >> 8;
	p[h + 5] = (8 + len) & 0xff;
	memcpy(p + h + 8, payload, len);
	return h + 8 + len;
}

/*
 * Classic BPF as the kernel runs it on a socket, with the one ancillary
 * load the program uses (pkttype); an out-of-bounds load returns 0.
 */
static unsigned cbpf(const struct sock_filter *f, size_t n, const uint8_t *p, size_t len,
		     unsigned pkttype)
{
	uint32_t a = 0, x = 0, m[BPF_MEMWORDS] = { 0 }, k, off;
	size_t pc, w;

	for (pc = 0; pc < n; pc++) {
		const struct sock_filter *i = &f[pc];

		k = i->k;
		switch (BPF_CLASS(i->code)) {
		case BPF_LD:
		case BPF_LDX:
			if (BPF_MODE(i->code) == BPF_IMM) {
				*(BPF_CLASS(i->code) == BPF_LD ? &a : &x) = k;
				break;
			}
			if (BPF_MODE(i->code) == BPF_MEM) {
				*(BPF_CLASS(i->code) == BPF_LD ? &a : &x) = m[k & 15];
				break;
			}
			if (BPF_MODE(i->code) == BPF_LEN) {
				*(BPF_CLASS(i->code) == BPF_LD ? &a : &x) = len;
				break;
			}
			if (BPF_MODE(i->code) == BPF_MSH) {
				if (k >= len)
					return 0;
				x = (p[k] & 0xf) * 4;
				break;
			}
			if (BPF_MODE(i->code) == BPF_ABS && k == (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)) {
				a = pkttype;
				break;
			}
			off = BPF_MODE(i->code) == BPF_IND ? x + k : k;
			w = BPF_SIZE(i->code) == BPF_W ? 4 : BPF_SIZE(i->code) == BPF_H ? 2 : 1;
			if (off > len || len - off < w)
				return 0;
			a = w == 4 ? (uint32_t)p[off] << 24 | p[off + 1] << 16 | p[off + 2] << 8 | p[off + 3] :
			    w == 2 ? (uint32_t)(p[off] << 8 | p[off + 1]) : p[off];
			break;
		case BPF_ST:
			m[k & 15] = a;
			break;
		case BPF_STX:
			m[k & 15] = x;
			break;
		case BPF_ALU:
			if (BPF_OP(i->code) != BPF_AND)
				return 0; /* the program uses no other */
			a &= BPF_SRC(i->code) == BPF_X ? x : k;
			break;
		case BPF_JMP: {
			uint32_t v = BPF_SRC(i->code) == BPF_X ? x : k;
			bool t;

			switch (BPF_OP(i->code)) {
			case BPF_JA: pc += k; continue;
			case BPF_JEQ: t = a == v; break;
			case BPF_JGT: t = a > v; break;
			case BPF_JGE: t = a >= v; break;
			case BPF_JSET: t = a & v; break;
			default: return 0;
			}
			pc += t ? i->jt : i->jf;
			break;
		}
		case BPF_RET:
			return BPF_RVAL(i->code) == BPF_A ? a : k;
		default:
			return 0;
		}
	}
	return 0;
}

static size_t n_prog = 0;   /* the program's length, for cbpf */
static int disagree;        /* libpcap and cbpf answered differently */

/* libpcap's answer (cbpf must give the same for a packet received) */
static unsigned run(const struct sock_filter *f, const union wggwd_sockaddr *src,
		    uint16_t dport, const uint8_t *payload, size_t len, int opt, int frag)
{
	uint8_t p[2048];
	size_t n = pkt(p, src, dport, payload, len, opt, frag);
	unsigned r = bpf_filter((const struct bpf_insn *)f, p, n, n);

	if (n_prog && cbpf(f, n_prog, p, n, PACKET_HOST) != r)
		disagree++;
	return r;
}

/* A packet this host sends from `sport` to `dst` (sbf's cookie section),
 * or receives when pkttype says so. */
static unsigned run_out(const struct sock_filter *f, const union wggwd_sockaddr *dst,
			uint16_t sport, const uint8_t *payload, size_t len, int opt,
			unsigned pkttype)
{
	uint8_t p[2048];
	size_t n, h;
	uint16_t dport = ntohs(dst->sa.sa_family == AF_INET ? dst->in4.sin_port : dst->in6.sin6_port);
	union wggwd_sockaddr src = *dst;

	/* built as "from dst to us, port dport", then ports swapped */
	n = pkt(p, &src, sport, payload, len, opt, 0);
	h = dst->sa.sa_family == AF_INET ? (size_t)(p[0] & 0xf) * 4 : 40;
	p[h] = sport >> 8;
	p[h + 1] = sport & 0xff;
	p[h + 2] = dport >> 8;
	p[h + 3] = dport & 0xff;
	return cbpf(f, n_prog, p, n, pkttype);
}

static int kernel_takes(struct sock_filter *f, size_t n)
{
	struct sock_fprog prog = { .len = n, .filter = f };
	int fd = socket(AF_INET, SOCK_DGRAM, 0), ret;

	if (fd < 0)
		return -errno;
	ret = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) ? -errno : 0;
	close(fd);
	/* checked, then refused for its size: net.core.optmem_max (20 KiB
	 * before Linux 6.8); the plugin then watches fewer */
	if (ret == -ENOMEM) {
		printf("# %zu instructions: ENOMEM (net.core.optmem_max)\n", n);
		ret = 0;
	}
	return ret;
}

int main(void)
{
	uint8_t init[SBF_INIT_LEN] = { 1 }, data[128] = { 4 }, ka[32] = { 4 };
	uint8_t resv[92] = { 4, 0, 1 };
	union wggwd_sockaddr eps[SBF_MAX_WATCH], w4, w6, o4, o6;
	struct sock_filter *f = calloc(sbf_size(SBF_MAX_WATCH), sizeof(*f));
	char what[128];
	size_t n, i, k;

	/* nothing watched: the program of PROTOCOL.md (h), 25 instructions */
	w4 = ep4("192.0.2.7", 40001);
	w6 = ep6("2001:db8::7", 40001);
	o4 = ep4("192.0.2.8", 40001);
	o6 = ep6("2001:db8::8", 40001);
	n = n_prog = sbf_build(f, PORT, false, NULL, 0);
	ok(n == 25 && bpf_validate((struct bpf_insn *)f, n) && !kernel_takes(f, n),
	   "nothing watched: 25 instructions, valid for libpcap and the kernel");
	ok(run(f, &w4, PORT, init, sizeof(init), 0, 0) == SBF_SNAP &&
	   run(f, &w6, PORT, init, sizeof(init), 0, 0) == SBF_SNAP,
	   "an initiation passes (IPv4 and IPv6)");
	ok(!run(f, &w4, PORT, data, sizeof(data), 0, 0) && !run(f, &w6, PORT, data, sizeof(data), 0, 0),
	   "nothing watched: data packets never leave the kernel");
	ok(!run(f, &w4, PORT, init, 147, 0, 0) && !run(f, &w6, PORT + 1, init, sizeof(init), 0, 0) &&
	   !run(f, &w4, PORT, init, sizeof(init), 0, 8),
	   "a short initiation, another port, a later fragment: dropped");

	/* one of each, between others: first, middle and last places */
	n = 0;
	eps[n++] = w4;
	for (i = 0; i < 100; i++) {
		snprintf(what, sizeof(what), "198.51.100.%zu", i);
		eps[n++] = ep4(what, 50000 + i);
		snprintf(what, sizeof(what), "2001:db8:1::%zx", i);
		eps[n++] = ep6(what, 50000 + i);
	}
	eps[n++] = w6;
	n = n_prog = sbf_build(f, PORT, false, eps, n);
	ok(n <= sbf_size(202) && bpf_validate((struct bpf_insn *)f, n) && !kernel_takes(f, n),
	   "202 watched: valid for libpcap and the kernel");
	ok(run(f, &w4, PORT, data, sizeof(data), 0, 0) == SBF_DATA_SNAP &&
	   run(f, &w6, PORT, data, sizeof(data), 0, 0) == SBF_DATA_SNAP,
	   "data from a watched endpoint passes, headers only (IPv4 first, IPv6 last)");
	ok(run(f, &w4, PORT, ka, sizeof(ka), 0, 0) == SBF_DATA_SNAP &&
	   run(f, &w4, PORT, data, sizeof(data), 2, 0) == SBF_DATA_SNAP,
	   "a 32-byte keepalive passes; so does a packet with IPv4 options");
	{
		union wggwd_sockaddr m4 = ep4("198.51.100.50", 50050), m6 = ep6("2001:db8:1::32", 50050);

		ok(run(f, &m4, PORT, data, sizeof(data), 0, 0) == SBF_DATA_SNAP &&
		   run(f, &m6, PORT, data, sizeof(data), 0, 0) == SBF_DATA_SNAP,
		   "data from watched endpoints in the middle of the lists passes");
		m4.in4.sin_port = htons(50051);
		m6.in6.sin6_port = htons(50051);
		ok(!run(f, &m4, PORT, data, sizeof(data), 0, 0) &&
		   !run(f, &m6, PORT, data, sizeof(data), 0, 0),
		   "a watched address with another port: dropped");
	}
	ok(!run(f, &o4, PORT, data, sizeof(data), 0, 0) && !run(f, &o6, PORT, data, sizeof(data), 0, 0),
	   "data from an endpoint not watched: dropped");
	ok(!run(f, &w4, PORT + 1, data, sizeof(data), 0, 0) &&
	   !run(f, &w4, PORT, data, sizeof(data), 0, 8) &&
	   !run(f, &w4, PORT, ka, 31, 0, 0) && !run(f, &w6, PORT, ka, 31, 0, 0) &&
	   !run(f, &w4, PORT, resv, sizeof(resv), 0, 0) && !run(f, &w6, PORT, resv, sizeof(resv), 0, 0),
	   "watched, but another port, a later fragment, under 32 bytes, or reserved bytes set: dropped");
	resv[0] = 2;
	ok(!run(f, &w4, PORT, resv, 92, 0, 0) && !run(f, &w6, PORT, resv, 92, 0, 0),
	   "watched, a type 2 (response): dropped");
	ok(run(f, &o4, PORT, init, sizeof(init), 0, 0) == SBF_SNAP &&
	   run(f, &o6, PORT, init, sizeof(init), 0, 0) == SBF_SNAP &&
	   !run(f, &o4, PORT, init, 147, 0, 0),
	   "initiations still pass from anyone, as before");

	/* the cookie section: the same program otherwise, plus cookie
	 * replies this host sends from the port */
	{
		uint8_t ck[SBF_COOKIE_LEN + 1] = { 3 }, r6[92] = { 2 };
		size_t m = 202; /* the endpoints above */

		n = n_prog = sbf_build(f, PORT, true, eps, m);
		ok(n <= sbf_size(m) && bpf_validate((struct bpf_insn *)f, n) && !kernel_takes(f, n),
		   "202 watched and cookies: valid for libpcap and the kernel");
		ok(run(f, &w4, PORT, data, sizeof(data), 0, 0) == SBF_DATA_SNAP &&
		   run(f, &w6, PORT, data, sizeof(data), 0, 0) == SBF_DATA_SNAP &&
		   run(f, &o4, PORT, init, sizeof(init), 0, 0) == SBF_SNAP &&
		   run(f, &o6, PORT, init, sizeof(init), 0, 0) == SBF_SNAP &&
		   !run(f, &o4, PORT, data, sizeof(data), 0, 0) && !run(f, &w4, PORT + 1, data, sizeof(data), 0, 0),
		   "with cookies: initiations and watched data as before, others dropped");
		ok(run_out(f, &o4, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING) == SBF_SNAP &&
		   run_out(f, &o6, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING) == SBF_SNAP &&
		   run_out(f, &w4, PORT, ck, SBF_COOKIE_LEN, 2, PACKET_OUTGOING) == SBF_SNAP,
		   "a cookie reply sent from the port passes (IPv4, with options, IPv6)");
		{
			union wggwd_sockaddr s4 = ep4("192.0.2.9", PORT), s6 = ep6("2001:db8::9", PORT);

			ok(run_out(f, &s4, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING) == SBF_SNAP &&
			   run_out(f, &s6, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING) == SBF_SNAP,
			   "one to a client that uses our port number too passes");
			ok(!run_out(f, &s4, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_HOST) &&
			   !run_out(f, &s6, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_HOST) &&
			   !run_out(f, &o4, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_HOST) &&
			   !run_out(f, &o6, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_HOST),
			   "the same packets received rather than sent: dropped");
		}
		ok(!run_out(f, &o4, PORT + 1, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING) &&
		   !run_out(f, &o6, PORT + 1, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING) &&
		   !run_out(f, &o4, PORT, ck, 63, 0, PACKET_OUTGOING) &&
		   !run_out(f, &o6, PORT, ck, 65, 0, PACKET_OUTGOING) &&
		   !run_out(f, &o4, PORT, r6, sizeof(r6), 0, PACKET_OUTGOING) &&
		   !run_out(f, &o6, PORT, data, sizeof(data), 0, PACKET_OUTGOING) &&
		   !run_out(f, &o4, PORT, data, 64, 0, PACKET_OUTGOING),
		   "sent, but from another port, 63 or 65 bytes, a response, data: dropped");
		n = n_prog = sbf_build(f, PORT, true, NULL, 0);
		ok(bpf_validate((struct bpf_insn *)f, n) && !kernel_takes(f, n) &&
		   run_out(f, &o4, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING) == SBF_SNAP &&
		   run(f, &o6, PORT, init, sizeof(init), 0, 0) == SBF_SNAP &&
		   !run(f, &w4, PORT, data, sizeof(data), 0, 0) &&
		   !run_out(f, &o6, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_HOST),
		   "cookies and nothing watched: cookie replies and initiations only");
		n = n_prog = sbf_build(f, PORT, false, eps, m);
		ok(!run_out(f, &o4, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING) &&
		   !run_out(f, &o6, PORT, ck, SBF_COOKIE_LEN, 0, PACKET_OUTGOING),
		   "without cookies: cookie replies never leave the kernel");
	}

	/* the cap: the longest program */
	for (i = 0; i < SBF_MAX_WATCH; i++) {
		snprintf(what, sizeof(what), "2001:db8:2::%zx", i);
		eps[i] = ep6(what, 1 + i);
	}
	n = n_prog = sbf_build(f, PORT, true, eps, SBF_MAX_WATCH);
	snprintf(what, sizeof(what), "%d IPv6 endpoints and cookies: %zu instructions (<= %d), the kernel takes it",
		 SBF_MAX_WATCH, n, BPF_MAXINSNS);
	ok(n <= sbf_size(SBF_MAX_WATCH) && n <= BPF_MAXINSNS && !kernel_takes(f, n), what);
	ok(run(f, &eps[SBF_MAX_WATCH - 1], PORT, data, sizeof(data), 0, 0) == SBF_DATA_SNAP &&
	   run(f, &eps[0], PORT, data, sizeof(data), 0, 0) == SBF_DATA_SNAP &&
	   !run(f, &w6, PORT, data, sizeof(data), 0, 0),
	   "the first and the last of them pass, others do not");
	for (i = 0; i < SBF_MAX_WATCH; i++) {
		snprintf(what, sizeof(what), "10.1.%zu.%zu", i / 250, i % 250);
		eps[i] = ep4(what, 1 + i);
	}
	n = n_prog = sbf_build(f, PORT, true, eps, SBF_MAX_WATCH);
	ok(!kernel_takes(f, n) && run(f, &eps[SBF_MAX_WATCH - 1], PORT, data, sizeof(data), 0, 0) ==
	   SBF_DATA_SNAP && !run(f, &w4, PORT, data, sizeof(data), 0, 0),
	   "256 IPv4 endpoints: the kernel takes it, the last passes");
	/* what this kernel's option memory holds (diagnostic) */
	for (k = 0; k < 2; k++) {
		for (i = 0; k && i < SBF_MAX_WATCH; i++) {
			snprintf(what, sizeof(what), "2001:db8:2::%zx", i);
			eps[i] = ep6(what, 1 + i);
		}
		for (i = SBF_MAX_WATCH; i > 0; i -= 8) {
			struct sock_fprog prog = { .filter = f };
			int fd = socket(AF_INET, SOCK_DGRAM, 0), ret;

			prog.len = sbf_build(f, PORT, true, eps, i);
			ret = fd < 0 ? -1 :
			      setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
			if (fd >= 0)
				close(fd);
			if (!ret)
				break;
		}
		printf("# this kernel takes a filter for %zu %s endpoints\n", i, k ? "IPv6" : "IPv4");
	}
	ok(!disagree, "libpcap's interpreter and ours agreed on every packet received");
	free(f);
	printf("1..%d\n", n_test);
	return n_failed ? 1 : 0;
}
