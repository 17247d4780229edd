// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * libFuzzer target: wggwd-wsbridge, client side. The input is what the
 * server sends back on the TCP connection: the upgrade response
 * (handshake_data, check_response) and then WebSocket frames (wslay),
 * through wsbridge.c's own read callback in chunks, its writes going out
 * on a socketpair. Input: [flags][split][bytes...]
 *   flags: 1 a WireGuard client is known (frames go to it over UDP),
 *          2 queue 2048 bytes, 4 a datagram from the client after each read
 *   split: 0 one read; else chunk sizes derived from it
 * The request's key is RFC 6455's example, so seeds carry its accept.
 */
#define main wsbridge_main
#include "../tools/wsbridge/wsbridge.c"
#undef main

#include "stubhost.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bridge br;
static int sink = -1;
static struct sockaddr_in sink_addr;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in any = { .sin_family = AF_INET };
	socklen_t len = sizeof(sink_addr);
	struct sha1_ctx s;
	uint8_t d[SHA1_DIGEST_SIZE];

	(void)argc;
	(void)argv;
	stub_init();
	sink = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	sink_addr.sin_family = AF_INET;
	sink_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sink < 0 || bind(sink, (struct sockaddr *)&sink_addr, sizeof(sink_addr)) ||
	    getsockname(sink, (struct sockaddr *)&sink_addr, &len))
		abort();
	/* main's set-up, without the signals and the first connect */
	br.loop = stub_loop();
	br.loop->data = &br;
	uv_udp_init(br.loop, &br.udp);
	br.udp.data = &br;
	any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (uv_udp_bind(&br.udp, (struct sockaddr *)&any, 0))
		abort();
	uv_timer_init(br.loop, &br.retry);
	br.retry.data = &br;
	if (parse_url(&br, "ws://gw.example:8080/wg"))
		abort();
	/* on_connect's key and expected accept, with a fixed key */
	strcpy(br.key, "dGhlIHNhbXBsZSBub25jZQ==");
	sha1_init(&s);
	sha1_update(&s, strlen(br.key), (const uint8_t *)br.key);
	sha1_update(&s, strlen(WS_GUID), (const uint8_t *)WS_GUID);
	sha1_digest(&s, sizeof(d), d);
	base64_encode_raw(br.expect, sizeof(d), d);
	br.expect[BASE64_ENCODE_RAW_LENGTH(sizeof(d))] = 0;
	return 0;
}

static void drain(int fd)
{
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static size_t chunk_len(uint8_t split, size_t i, size_t left)
{
	size_t n;

	if (!split)
		return left;
	n = 1 + (((size_t)split * (i + 7) * 2654435761u) >> 7) % (split < 16 ? 8 : split * 4u);
	return n < left ? n : left;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t dgram[148] = { 1 };
	struct bridge *b = &br;
	uint8_t flags, split;
	uint8_t *copy;
	size_t off = 0, i;
	int sv[2];

	if (size < 2)
		return 0;
	flags = data[0];
	split = data[1];
	data += 2;
	size -= 2;

	/* the connection, as on_resolved + on_connect leave it */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	b->tcp = calloc(1, sizeof(*b->tcp));
	if (!b->tcp)
		abort();
	uv_tcp_init(b->loop, b->tcp);
	b->tcp->data = b;
	if (uv_tcp_open(b->tcp, sv[0]))
		abort();
	b->st = S_HANDSHAKE;
	b->resp_len = 0;
	b->wq_bytes = 0;
	b->backoff = 1000000000; /* the retry timer never fires during a run */
	b->queue = flags & 2 ? 2048 : 256 * 1024;
	b->have_client = flags & 1;
	memcpy(&b->client, &sink_addr, sizeof(sink_addr));

	for (i = 0; off < size && b->tcp; i++) {
		size_t n = chunk_len(split, i, size - off);
		uv_buf_t buf;

		/* a buffer of exactly n bytes: ASan sees any read past it */
		copy = malloc(n);
		if (!copy)
			abort();
		memcpy(copy, data + off, n);
		off += n;
		buf = uv_buf_init((char *)copy, n);
		tcp_read((uv_stream_t *)b->tcp, n, &buf);
		free(copy);
		if ((flags & 4) && b->tcp) {
			buf = uv_buf_init((char *)dgram, sizeof(dgram));
			udp_recv(&b->udp, sizeof(dgram), &buf, (const struct sockaddr *)&sink_addr, 0);
		}
		stub_loop_settle();
		drain(sv[1]);
	}
	drop(b, "end of input");
	stub_loop_settle();
	uv_timer_stop(&b->retry);
	close(sv[1]);
	drain(sink);
	return 0;
}
