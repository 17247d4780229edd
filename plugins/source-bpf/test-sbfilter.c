// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf's generated filter, run by libpcap's BPF interpreter on
 * hand-made IPv4 and IPv6 packets, and checked by the kernel (attached to
 * a UDP socket, which needs no privilege). TAP.
 */
#include <arpa/inet.h>
#include <errno.h>
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

static unsigned run(const struct sock_filter *f, const union wggwd_sockaddr *src,
		    uint16_t dport, const uint8_t *payload, size_t len, int opt, int frag)
{
	uint8_t p[2048];
	size_t n = pkt(p, src, dport, payload, len, opt, frag);

	return bpf_filter((const struct bpf_insn *)f, p, n, n);
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
	n = sbf_build(f, PORT, NULL, 0);
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
	n = sbf_build(f, PORT, eps, n);
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

	/* the cap: the longest program */
	for (i = 0; i < SBF_MAX_WATCH; i++) {
		snprintf(what, sizeof(what), "2001:db8:2::%zx", i);
		eps[i] = ep6(what, 1 + i);
	}
	n = sbf_build(f, PORT, eps, SBF_MAX_WATCH);
	snprintf(what, sizeof(what), "%d IPv6 endpoints: %zu instructions (<= %d), the kernel takes it",
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
	n = sbf_build(f, PORT, eps, SBF_MAX_WATCH);
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

			prog.len = sbf_build(f, PORT, eps, i);
			ret = fd < 0 ? -1 :
			      setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
			if (fd >= 0)
				close(fd);
			if (!ret)
				break;
		}
		printf("# this kernel takes a filter for %zu %s endpoints\n", i, k ? "IPv6" : "IPv4");
	}
	free(f);
	printf("1..%d\n", n_test);
	return n_failed ? 1 : 0;
}
