// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The kernel VM's stand-in for WireGuard under load: sends one cookie
 * reply (type 3, receiver index, 24-byte nonce, 32-byte cookie) from
 * SRC:SPORT to DST:DPORT through a raw socket, so that it leaves by the
 * route to DST as the interface's own reply would (busybox has no tool
 * for it).   cookie SRC DST SPORT DPORT INDEX
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	uint8_t pkt[20 + 8 + 64] = { 0 };
	struct sockaddr_in to = { .sin_family = AF_INET };
	uint32_t index;
	uint16_t v;
	int fd;

	if (argc != 6 || inet_pton(AF_INET, argv[1], pkt + 12) != 1 ||
	    inet_pton(AF_INET, argv[2], pkt + 16) != 1) {
		fprintf(stderr, "usage: cookie SRC DST SPORT DPORT INDEX\n");
		return 2;
	}
	pkt[0] = 0x45;                          /* IPv4, 20-byte header */
	v = htons(sizeof(pkt));
	memcpy(pkt + 2, &v, 2);
	pkt[8] = 64;                            /* TTL */
	pkt[9] = IPPROTO_UDP;                   /* the kernel fills the checksum */
	v = htons((uint16_t)atoi(argv[3]));
	memcpy(pkt + 20, &v, 2);
	v = htons((uint16_t)atoi(argv[4]));
	memcpy(pkt + 22, &v, 2);
	v = htons(8 + 64);
	memcpy(pkt + 24, &v, 2);                /* UDP checksum 0: none */
	pkt[28] = 3;                            /* cookie reply */
	index = (uint32_t)strtoul(argv[5], NULL, 10); /* little-endian on the wire */
	pkt[32] = index & 0xff;
	pkt[33] = index >> 8 & 0xff;
	pkt[34] = index >> 16 & 0xff;
	pkt[35] = index >> 24 & 0xff;
	memcpy(&to.sin_addr, pkt + 16, 4);
	fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0 || sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
		perror("cookie");
		return 1;
	}
	close(fd);
	return 0;
}
