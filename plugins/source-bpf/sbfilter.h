// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf's classic BPF program (no libuv, no plugin state): the
 * network-layer view of PROTOCOL.md (h), initiations to our port, plus
 * transport-data packets (type 4) from a short list of watched endpoints,
 * plus (on request) the cookie replies (type 3) the interface sends.
 */
#ifndef WGGWD_SBFILTER_H
#define WGGWD_SBFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>

#include <wggwd/plugin.h>

#define SBF_INIT_LEN 148         /* a handshake initiation, UDP payload */
#define SBF_SNAP 0xffff          /* what is kept of an initiation       */
#define SBF_DATA_SNAP 128        /* of a data packet: IPv6 + UDP + 80   */
#define SBF_DATA_MIN 32          /* the shortest data packet (keepalive) */
#define SBF_COOKIE_LEN 64        /* a cookie reply, UDP payload         */
/* Endpoints one program may watch: 11 instructions each at most (IPv6),
 * so the longest program (2,889) stays under BPF_MAXINSNS (4,096). The
 * kernel may still refuse a long one (ENOMEM: net.core.optmem_max). */
#define SBF_MAX_WATCH 256

/* Room for a program watching n endpoints (n <= SBF_MAX_WATCH). */
size_t sbf_size(size_t n);
/*
 * Write the program into f (sbf_size(n) entries): initiations to `port`,
 * and data packets to `port` from the n endpoints (AF_INET or AF_INET6;
 * others are skipped); with `cookies`, also the cookie replies this host
 * sends from `port` (outgoing: SKF_AD_PKTTYPE). Returns how many
 * instructions it has.
 */
size_t sbf_build(struct sock_filter *f, uint16_t port, bool cookies,
		 const union wggwd_sockaddr *eps, size_t n);

#endif
