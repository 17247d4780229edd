// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * libFuzzer target: source-wsock, server side. The input is what a client
 * sends on its TCP connection: the HTTP upgrade request (upgrade.c,
 * http-parser) and then WebSocket frames (conn.c, wslay), read through
 * conn.c's own read callback in chunks, with the answers going out on a
 * socketpair. Initiations the relay emits are finished through the
 * plugin's done. Input: [flags][split][bytes...]
 *   flags: 1 max_message 256, 2 queue 4k, 4 token required, 8 remove_on_close,
 *          16 run the timer at the end (idle 0), 32 items dropped (else
 *          installed), 64 max_held 1, 128 also a datagram from WireGuard
 *   split: 0 one read; else chunk sizes derived from it
 * Seeds: fuzz/corpus/wsock (a valid upgrade, token "fuzz-token", frames).
 */
#include "../plugins/source-wsock/conn.c"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "stubhost.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const struct wggwd_plugin wggwd_plugin;

static int sink = -1;                   /* "WireGuard": a UDP socket */
static struct sockaddr_in sink_addr;
static char token_path[64];

static void cleanup(void)
{
	unlink(token_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	socklen_t len = sizeof(sink_addr);
	int fd;

	(void)argc;
	(void)argv;
	stub_init();
	sink = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	sink_addr.sin_family = AF_INET;
	sink_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sink < 0 || bind(sink, (struct sockaddr *)&sink_addr, sizeof(sink_addr)) ||
	    getsockname(sink, (struct sockaddr *)&sink_addr, &len))
		abort();
	snprintf(token_path, sizeof(token_path), "/tmp/fuzz-wsock-token.XXXXXX");
	fd = mkstemp(token_path);
	if (fd < 0 || write(fd, "fuzz-token\n", 11) != 11)
		abort();
	close(fd);
	atexit(cleanup);
	return 0;
}

static void drain(int fd)
{
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static void finish_items(struct ctx *c, bool drop)
{
	struct wggwd_item *it;

	while ((it = stub_next_emitted())) {
		/* as a decoder would: the initiator's key (here: bytes of it) */
		if (!drop && it->pkt_len >= 40)
			memcpy(it->public_key, it->pkt + 8, WGGWD_KEY_LEN);
		wggwd_plugin.ops->done(c, it, drop ? WGGWD_DROP : WGGWD_CONTINUE);
		stub_host.item_free(STUB_SELF, it);
	}
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
	static const uint8_t dgram[32] = { 4 };
	struct conf conf;
	uint8_t flags, split;
	struct ctx *c;
	struct conn *k;
	void *ctx;
	int sv[2];
	size_t off = 0, i;

	if (size < 2)
		return 0;
	flags = data[0];
	split = data[1];
	data += 2;
	size -= 2;
	stub_conf_defaults(&wggwd_plugin, &conf);
	conf.path = "/wg";
	if (flags & 1)
		conf.max_message = 256;
	if (flags & 2)
		conf.queue = 4096;
	if (flags & 8)
		conf.remove_on_close = true;
	if (flags & 16)
		conf.idle_ms = conf.handshake_ms = 0;
	if (flags & 64)
		conf.max_held = 1;
	memcpy(&conf.wireguard, &sink_addr, sizeof(sink_addr));
	memcpy(&conf.listen, &sink_addr, sizeof(sink_addr));

	if (wggwd_plugin.ops->create(&stub_host, STUB_SELF, &conf, &ctx))
		return 0;
	c = ctx;
	memcpy(&c->wg, &conf.wireguard, sizeof(sink_addr)); /* as start does */
	if (flags & 4) {
		memcpy(c->token, "fuzz-token", 10);
		c->token_len = 10;
	}

	/* a connection, as wsock_on_connection makes it */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	k = calloc(1, sizeof(*k));
	if (!k)
		abort();
	k->c = c;
	uv_tcp_init(stub_loop(), &k->tcp);
	k->tcp.data = k;
	k->refs = 2; /* the handle's, and ours until the end */
	c->handles++;
	if (uv_tcp_open(&k->tcp, sv[0]))
		abort();
	k->peer.in4.sin_family = AF_INET;
	k->peer.in4.sin_addr.s_addr = htonl(0xc0000201);
	k->peer.in4.sin_port = htons(40000);
	k->t_start = k->last_rx = uv_now(stub_loop());
	http_parser_init(&k->hp, HTTP_REQUEST);
	k->hp.data = k;
	k->listed = true;
	c->conns = k;
	c->n_conns = 1;

	for (i = 0; off < size && !k->closing; i++) {
		size_t n = chunk_len(split, i, size - off);
		uv_buf_t b;

		memcpy(c->rbuf, data + off, n);
		off += n;
		c->rbuf_busy = true;
		b = uv_buf_init((char *)c->rbuf, n);
		tcp_read((uv_stream_t *)&k->tcp, n, &b);
		stub_loop_settle();
		drain(sv[1]);
		finish_items(c, flags & 32);
		if ((flags & 128) && k->upgraded && !k->closing)
			ws_send_datagram(k, dgram, sizeof(dgram));
	}
	if (flags & 16)
		wsock_on_timer(c);
	stub_loop_settle();
	drain(sv[1]);
	finish_items(c, flags & 32);

	wggwd_plugin.ops->stop(c);
	for (i = 0; i < 8 && c->handles; i++) {
		stub_loop_settle();
		drain(sv[1]);
	}
	finish_items(c, true);
	conn_put(k);
	close(sv[1]);
	drain(sink);
	if (c->handles)
		stub_fail("a libuv handle never closed after stop");
	stub_stopped = 0;
	stub_free_timers();
	wggwd_plugin.ops->destroy(c);
	return 0;
}
