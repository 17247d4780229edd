// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#ifndef WGGWD_DECODE_H
#define WGGWD_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include <wggwd/plugin.h>

int cmd_decode(int argc, char **argv);
/* Find the UDP payload in a captured frame of pcap link type `linktype`. */
int udp_payload(int linktype, const uint8_t *p, size_t len,
		union wggwd_sockaddr *src, union wggwd_sockaddr *dst,
		const uint8_t **payload, size_t *plen);

#endif
