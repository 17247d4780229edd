// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The program, in three parts. The head is `udp and dst port P and udp[8]
 * = 1 and udp[4:2] = 156` for IPv4, the verified network-layer program of
 * PROTOCOL.md (h) instruction for instruction (only the jumps differ), then
 * the same for IPv6 with UDP right after the 40-byte header (no extension
 * headers), type before length. The data starts at the IP header on every
 * link type, so the version nibble says which. The reserved bytes after
 * an initiation's type are left to the decoder (drop_type).
 *
 * A packet of another type goes to the drop, unless endpoints are watched:
 * then to a list per family (reached through `ja`, whose offset is 32 bits:
 * the conditional jumps only reach 255 ahead), which checks the data header
 * (type 4, reserved bytes zero, at least 32 bytes) and then the source
 * address and port against each watched endpoint in turn:
 *
 * The list's header puts the source port in M[4] and the address in M[0]
 * (IPv6: its four words in M[0..3]), and leaves A holding the address (its
 * last word); an entry that is not the packet's costs one instruction:
 *
 *   IPv4 (5 instructions):           IPv6 (11):
 *     jeq addr, 0, 4 (next entry)      jeq w3, 0, 10 (next entry)
 *     ld M[4]                          ld M[0]; jeq w0, 0, 7 (reload)
 *     jeq port, 0, 1                   ld M[1]; jeq w1, 0, 5
 *     ret #128                         ld M[2]; jeq w2, 0, 3
 *     ld M[0]  (A again)               ld M[4]; jeq port, 0, 1
 *                                      ret #128
 *                                      ld M[3]  (A again)
 *
 * Every jump is forward and short; each list ends with its own `ret #0`.
 *
 * With `cookies`, the cookie replies the interface sends (PROTOCOL.md (c):
 * type 3, 64 bytes, from our port, to the client it answers) are let
 * through too: a packet not to our port, or to it but neither an
 * initiation nor (when watched) data, goes to a section before the lists
 * that checks `udp src port P and udp[8] = 3 and udp[4:2] = 72` and then,
 * last (the only non-packet load), that the kernel is sending it
 * (SKF_AD_PKTTYPE == PACKET_OUTGOING): a copy of what this host sends,
 * which an AF_PACKET socket bound with ETH_P_ALL sees. So the incoming
 * path is unchanged (the initiation's instructions are the same), and an
 * outgoing packet that is not a cookie reply costs two or three loads.
 *
 * Scratch memory rather than packet loads in the entries: the kernel turns
 * each packet load into several eBPF instructions, and charges the program
 * to the socket's option memory (net.core.optmem_max: 20 KiB before Linux
 * 6.8), which the caller must be ready to find too small (ENOMEM).
 * Only the headers of a data packet are kept (SBF_DATA_SNAP).
 */
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>

#include "sbfilter.h"

enum {
	F_V6 = 14,
	F_ACCEPT = 23,
	F_DROP = 24,
	F_JA4 = 25,             /* ja to the IPv4 list (without cookies) */
	F_JA6 = 26,             /* ja to the IPv6 list */
	F_HEAD = 27,
	/* with cookies: this section, then the two ja, then the lists */
	F_T4 = 25,              /* not an initiation: a cookie reply?    */
	F_T6 = 26,
	F_C4 = 27,              /* from our port, type 3, 64 bytes       */
	F_C6 = 33,
	F_OUT = 39,             /* sent by this host                     */
	F_CACCEPT = 41,
	F_CDROP = 42,
	F_CJA4 = 43,
	F_CHEAD = 45,
};
#define J(op, k, t, f, pc) BPF_JUMP(BPF_JMP | (op) | BPF_K, (k), (t) - (pc) - 1, (f) - (pc) - 1)
#define DATA_WORD 0x04000000u   /* type 4, reserved 0, as `ld` reads it */
#define DATA_UDP_LEN (8 + SBF_DATA_MIN)

size_t sbf_size(size_t n)
{
	/* the head (with the cookie section), the lists' headers and rets,
	 * 11 an entry at most */
	return F_CHEAD + 11 + 17 + 11 * n;
}

static void put(struct sock_filter *f, size_t *pc, uint16_t code, uint32_t k,
		uint8_t jt, uint8_t jf)
{
	f[*pc] = (struct sock_filter){ .code = code, .jt = jt, .jf = jf, .k = k };
	(*pc)++;
}

/* The data header: type 4 with zero reserved bytes, UDP length >= 40.
 * `ind`: IPv4 (offsets from X, the IP header's length) or IPv6 (fixed). */
static void data_check(struct sock_filter *f, size_t *pc, bool ind)
{
	uint16_t mode = ind ? BPF_IND : BPF_ABS;
	uint32_t base = ind ? 0 : 40;

	put(f, pc, BPF_LD | BPF_W | mode, base + 8, 0, 0);
	put(f, pc, BPF_JMP | BPF_JEQ | BPF_K, DATA_WORD, 1, 0);
	put(f, pc, BPF_RET | BPF_K, 0, 0, 0);
	put(f, pc, BPF_LD | BPF_H | mode, base + 4, 0, 0);
	put(f, pc, BPF_JMP | BPF_JGE | BPF_K, DATA_UDP_LEN, 1, 0);
	put(f, pc, BPF_RET | BPF_K, 0, 0, 0);
}

/* A = the source address (its last word for IPv6), M[4] = the source
 * port, M[0..3] = the address's words. */
static size_t list4(struct sock_filter *f, size_t pc, const union wggwd_sockaddr *eps, size_t n)
{
	size_t i;

	data_check(f, &pc, true);
	put(f, &pc, BPF_LD | BPF_H | BPF_IND, 0, 0, 0);          /* source port */
	put(f, &pc, BPF_ST, 4, 0, 0);
	put(f, &pc, BPF_LD | BPF_W | BPF_ABS, 12, 0, 0);         /* source address */
	put(f, &pc, BPF_ST, 0, 0, 0);
	for (i = 0; i < n; i++) {
		if (eps[i].sa.sa_family != AF_INET)
			continue;
		put(f, &pc, BPF_JMP | BPF_JEQ | BPF_K, ntohl(eps[i].in4.sin_addr.s_addr), 0, 4);
		put(f, &pc, BPF_LD | BPF_MEM, 4, 0, 0);
		put(f, &pc, BPF_JMP | BPF_JEQ | BPF_K, ntohs(eps[i].in4.sin_port), 0, 1);
		put(f, &pc, BPF_RET | BPF_K, SBF_DATA_SNAP, 0, 0);
		put(f, &pc, BPF_LD | BPF_MEM, 0, 0, 0);
	}
	put(f, &pc, BPF_RET | BPF_K, 0, 0, 0);
	return pc;
}

static size_t list6(struct sock_filter *f, size_t pc, const union wggwd_sockaddr *eps, size_t n)
{
	uint32_t w[4];
	size_t i, k;

	data_check(f, &pc, false);
	put(f, &pc, BPF_LD | BPF_H | BPF_ABS, 40, 0, 0);         /* source port */
	put(f, &pc, BPF_ST, 4, 0, 0);
	for (k = 0; k < 4; k++) {                                /* source address */
		put(f, &pc, BPF_LD | BPF_W | BPF_ABS, 8 + 4 * k, 0, 0);
		put(f, &pc, BPF_ST, k, 0, 0);
	}
	for (i = 0; i < n; i++) {
		if (eps[i].sa.sa_family != AF_INET6)
			continue;
		memcpy(w, eps[i].in6.sin6_addr.s6_addr, sizeof(w));
		/* the last word first: most differ there */
		put(f, &pc, BPF_JMP | BPF_JEQ | BPF_K, ntohl(w[3]), 0, 10);
		for (k = 0; k < 3; k++) {
			put(f, &pc, BPF_LD | BPF_MEM, k, 0, 0);
			put(f, &pc, BPF_JMP | BPF_JEQ | BPF_K, ntohl(w[k]), 0, 7 - 2 * k);
		}
		put(f, &pc, BPF_LD | BPF_MEM, 4, 0, 0);
		put(f, &pc, BPF_JMP | BPF_JEQ | BPF_K, ntohs(eps[i].in6.sin6_port), 0, 1);
		put(f, &pc, BPF_RET | BPF_K, SBF_DATA_SNAP, 0, 0);
		put(f, &pc, BPF_LD | BPF_MEM, 3, 0, 0);
	}
	put(f, &pc, BPF_RET | BPF_K, 0, 0, 0);
	return pc;
}

/* The cookie section (F_T4 to F_CDROP): a type-3 reply of 64 bytes from
 * `port`, sent by this host. */
static void cookie_section(struct sock_filter *f, uint16_t port, unsigned w4, unsigned w6)
{
	const struct sock_filter sec[F_CJA4 - F_T4] = {
		/* 25 */ J(BPF_JEQ, 3, F_C4, w4, F_T4),                /* A: the type */
		/* 26 */ J(BPF_JEQ, 3, F_C6, w6, F_T6),
		/* 27 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 0),        /* src port */
		/* 28 */ J(BPF_JEQ, port, 29, F_CDROP, 28),
		/* 29 */ BPF_STMT(BPF_LD | BPF_B | BPF_IND, 8),        /* type */
		/* 30 */ J(BPF_JEQ, 3, 31, F_CDROP, 30),
		/* 31 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 4),        /* UDP length */
		/* 32 */ J(BPF_JEQ, SBF_COOKIE_LEN + 8, F_OUT, F_CDROP, 32),
		/* 33 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 40),       /* src port */
		/* 34 */ J(BPF_JEQ, port, 35, F_CDROP, 34),
		/* 35 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 48),       /* type */
		/* 36 */ J(BPF_JEQ, 3, 37, F_CDROP, 36),
		/* 37 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 44),       /* UDP length */
		/* 38 */ J(BPF_JEQ, SBF_COOKIE_LEN + 8, F_OUT, F_CDROP, 38),
		/* 39 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE),
		/* 40 */ J(BPF_JEQ, PACKET_OUTGOING, F_CACCEPT, F_CDROP, 40),
		/* 41 */ BPF_STMT(BPF_RET | BPF_K, SBF_SNAP),
		/* 42 */ BPF_STMT(BPF_RET | BPF_K, 0),
	};

	memcpy(f + F_T4, sec, sizeof(sec));
}

size_t sbf_build(struct sock_filter *f, uint16_t port, bool cookies,
		 const union wggwd_sockaddr *eps, size_t n)
{
	size_t i, n4 = 0, n6 = 0, pc;
	unsigned t4, t6, c4, c6, ja4, ja6;

	for (i = 0; i < n; i++) {
		n4 += eps[i].sa.sa_family == AF_INET;
		n6 += eps[i].sa.sa_family == AF_INET6;
	}
	ja4 = cookies ? F_CJA4 : F_JA4;
	ja6 = ja4 + 1;
	c4 = cookies ? F_C4 : F_DROP;
	c6 = cookies ? F_C6 : F_DROP;
	t4 = cookies ? F_T4 : n4 ? F_JA4 : F_DROP;
	t6 = cookies ? F_T6 : n6 ? F_JA6 : F_DROP;
	const struct sock_filter head[F_JA4] = {
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
		/* 9 */ J(BPF_JEQ, port, 10, c4, 9),
		/* 10 */ BPF_STMT(BPF_LD | BPF_B | BPF_IND, 8),         /* type */
		/* 11 */ J(BPF_JEQ, 1, 12, t4, 11),
		/* 12 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 4),         /* UDP length */
		/* 13 */ J(BPF_JEQ, SBF_INIT_LEN + 8, F_ACCEPT, F_DROP, 13),
		/* IPv6: A still holds the version nibble */
		/* 14 */ J(BPF_JEQ, 0x60, 15, F_DROP, 14),
		/* 15 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),         /* next header */
		/* 16 */ J(BPF_JEQ, IPPROTO_UDP, 17, F_DROP, 16),
		/* 17 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 42),        /* dst port */
		/* 18 */ J(BPF_JEQ, port, 19, c6, 18),
		/* 19 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 48),        /* type */
		/* 20 */ J(BPF_JEQ, 1, 21, t6, 20),
		/* 21 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 44),        /* UDP length */
		/* 22 */ J(BPF_JEQ, SBF_INIT_LEN + 8, F_ACCEPT, F_DROP, 22),
		/* 23 */ BPF_STMT(BPF_RET | BPF_K, SBF_SNAP),
		/* 24 */ BPF_STMT(BPF_RET | BPF_K, 0),
	};

	memcpy(f, head, sizeof(head));
	if (cookies)
		cookie_section(f, port, n4 ? ja4 : F_CDROP, n6 ? ja6 : F_CDROP);
	if (!n4 && !n6)
		return ja4;
	pc = ja4 + 2;
	f[ja4] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
	f[ja6] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
	if (n4) {
		f[ja4] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, pc - ja4 - 1, 0, 0);
		pc = list4(f, pc, eps, n);
	}
	if (n6) {
		f[ja6] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, pc - ja6 - 1, 0, 0);
		pc = list6(f, pc, eps, n);
	}
	return pc;
}
