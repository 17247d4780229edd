// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * libFuzzer target: installer-uapi (its backend installer_uapi.c and
 * uapi_text.c, with the engine plugins/common/wgengine.c) facing a
 * hostile wireguard-go. The harness is the UAPI server on a real unix
 * socket: the blocking get at start is answered from a thread, later
 * requests from the loop thread, so replies arrive through the backend's
 * own libuv read callback, split as the input says.
 *
 * Input: records separated by NUL bytes.
 *   record 0: [flags] then the reply to the get at start
 *     flags % 3: completion (inversion, reinject, none); 4: items carry the
 *     knock's endpoint (else pushed); 8: replies written in two parts;
 *     16: remove items are REMOVE ops of key 1
 *   record i>0: [action] then one more reply for the FIFO of replies
 *     action % 4: 0 install key (action>>2)&3 with (action>>4)&3+1 allowed
 *     IPs, 1 remove it, 2 dump, 3 fire the engine's timers
 * A request with no reply left gets the connection closed (EOF).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "installer_uapi.h"
#include "stubhost.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const struct wggwd_plugin wggwd_plugin;

static char dir[64];
static int lfd = -1;
static bool trace; /* FUZZ_TRACE=1: what the server sees, on fd 2 */
#define TRACE(...) do { if (trace) dprintf(2, "fuzz-uapi: " __VA_ARGS__); } while (0)

static const uint8_t key0[WGGWD_KEY_LEN] = { /* the client of uapi-transcripts.txt */
	0xa7, 0xa7, 0xc9, 0x66, 0xa4, 0x40, 0x4c, 0x7e, 0xdb, 0x0b, 0x79, 0x18, 0x0c, 0x39, 0x7d,
	0xe3, 0x48, 0x48, 0xad, 0xd8, 0x28, 0x19, 0x23, 0x82, 0x95, 0x22, 0xeb, 0x7d, 0x4a, 0xa0,
	0xf3, 0x12,
};

static void cleanup(void)
{
	char p[96];

	snprintf(p, sizeof(p), "%s/wg0.sock", dir);
	unlink(p);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	(void)argc;
	(void)argv;
	stub_init();
	trace = getenv("FUZZ_TRACE") != NULL;
	snprintf(dir, sizeof(dir), "/tmp/fuzz-uapi.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/wg0.sock", dir);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 64))
		abort();
	atexit(cleanup);
	return 0;
}

/* ------------------------------------------------------------ the script */

struct rec {
	const uint8_t *p;
	size_t n;
};

static struct rec replies[256];
static size_t n_replies, next_reply;
static bool split_writes;

static void write_all(int fd, const uint8_t *p, size_t n)
{
	struct pollfd pf = { .fd = fd, .events = POLLOUT };
	ssize_t w;

	while (n) {
		w = write(fd, p, n);
		if (w < 0 && errno == EAGAIN && poll(&pf, 1, 100) > 0)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= w;
	}
}

/* the blocking get at start: a thread, or the plugin would wait forever */
struct getsrv {
	struct rec reply;
	pthread_t t;
};

static void *get_server(void *arg)
{
	struct getsrv *g = arg;
	struct pollfd pf = { .fd = lfd, .events = POLLIN };
	char buf[4096];
	size_t have = 0;
	ssize_t n;
	int fd;

	if (poll(&pf, 1, 2000) <= 0)
		return NULL;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	pf.fd = fd;
	while (have < sizeof(buf) && !memmem(buf, have, "\n\n", 2) && poll(&pf, 1, 2000) > 0) {
		n = read(fd, buf + have, sizeof(buf) - have);
		if (n <= 0)
			break;
		have += n;
	}
	write_all(fd, g->reply.p, g->reply.n);
	close(fd);
	return NULL;
}

/* the connection of the loop's phase */
static int sfd = -1;
static char req[1 << 16];
static size_t req_len;

static void srv_close(void)
{
	TRACE("close %d\n", sfd);
	if (sfd >= 0)
		close(sfd);
	sfd = -1;
	req_len = 0;
}

/* Accept, read requests, answer them in order; true if anything moved. */
static bool srv_step(void)
{
	bool moved = false;
	char *end;
	ssize_t n;

	if (sfd < 0) {
		sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (sfd < 0)
			return false;
		TRACE("accepted %d\n", sfd);
		moved = true;
	}
	while (req_len < sizeof(req) && (n = read(sfd, req + req_len, sizeof(req) - req_len)) > 0) {
		req_len += n;
		moved = true;
	}
	if (n == 0 && req_len < sizeof(req)) { /* the plugin closed it */
		TRACE("closed by the plugin\n");
		srv_close();
		return true;
	}
	while ((end = memmem(req, req_len, "\n\n", 2))) {
		size_t used = end + 2 - req;
		const struct rec *r;

		memmove(req, req + used, req_len - used);
		req_len -= used;
		moved = true;
		TRACE("request %.*s...\n", (int)(used < 12 ? used : 12), req);
		if (next_reply >= n_replies) {
			TRACE("no reply left: closing\n");
			srv_close();
			return true;
		}
		r = &replies[next_reply++];
		TRACE("reply %zu (%zu bytes)\n", next_reply - 1, r->n);
		if (split_writes && r->n > 1) {
			write_all(sfd, r->p, r->n / 2);
			uv_run(stub_loop(), UV_RUN_NOWAIT);
			write_all(sfd, r->p + r->n / 2, r->n - r->n / 2);
		} else {
			write_all(sfd, r->p, r->n);
		}
	}
	if (req_len == sizeof(req)) /* a request that never ends */
		srv_close();
	return moved;
}

/* -------------------------------------------------------------- the items */

static void free_completed(void)
{
	struct wggwd_item *it;
	int v;

	while ((it = stub_next_completed(&v)))
		stub_host.item_free(STUB_SELF, it);
}

static void pump(void)
{
	int idle = 0, i;

	/* progress is what the server sees: the loop always has handles */
	for (i = 0; i < 200 && idle < 4; i++) {
		bool moved;

		uv_run(stub_loop(), UV_RUN_NOWAIT);
		moved = srv_step();
		stub_drain();
		free_completed();
		idle = moved ? 0 : idle + 1;
	}
}

static void dump_cb(void *arg, int status, const struct wggwd_peer_state *peers, size_t n,
		    size_t stride)
{
	size_t i, sum = 0;

	(void)arg;
	if (status && n)
		stub_fail("a failed dump with peers");
	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *ps = WGGWD_AT(struct wggwd_peer_state, peers, i, stride);

		if (ps->size < sizeof(*ps) || ps->origin > WGGWD_ORIGIN_STATIC)
			stub_fail("a dumped peer_state with a bad size or origin");
		sum += ps->n_allowed + ps->keepalive + ps->endpoint.sa.sa_family;
	}
	(void)sum;
}

static void item(void *ctx, uint8_t a, uint8_t flags)
{
	const struct wggwd_host *h = &stub_host;
	struct wggwd_item *it = h->item_new(STUB_SELF);
	struct wggwd_allowed_ip *ips;
	unsigned k = (a >> 2) & 3, n = ((a >> 4) & 3) + 1, i;
	int v;

	if (!it)
		return;
	if (k == 0)
		memcpy(it->public_key, key0, WGGWD_KEY_LEN);
	else
		memset(it->public_key, k, WGGWD_KEY_LEN);
	it->type = WGGWD_MSG_PEER;
	it->peer->has = WGGWD_PEER_HAS_PUBLIC_KEY;
	memcpy(it->peer->public_key, it->public_key, WGGWD_KEY_LEN);
	if ((a & 3) == 1) {
		it->op = WGGWD_OP_REMOVE;
		it->reason = flags & 16 ? WGGWD_R_PUSHED : WGGWD_R_IDLE;
	} else {
		it->peer->has |= WGGWD_PEER_HAS_ALLOWED_IPS | WGGWD_PEER_HAS_KEEPALIVE;
		it->peer->keepalive = a & 0x40 ? 25 : 0;
		if (a & 0x80) {
			it->peer->has |= WGGWD_PEER_HAS_PRESHARED_KEY;
			memset(it->peer->preshared_key, 0x5f, WGGWD_KEY_LEN);
		}
		ips = h->allowed_reserve(STUB_SELF, it, n);
		for (i = 0; ips && i < n; i++) {
			ips[i].family = i & 1 ? AF_INET6 : AF_INET;
			ips[i].cidr = i & 1 ? 128 : 32;
			ips[i].addr[0] = i & 1 ? 0xfd : 10;
			ips[i].addr[i & 1 ? 15 : 3] = k + 1;
		}
		if (flags & 4) {
			it->transport = WGGWD_TR_UDP;
			it->endpoint.in4.sin_family = AF_INET;
			it->endpoint.in4.sin_addr.s_addr = htonl(0x0ac90002);
			it->endpoint.in4.sin_port = htons(51820);
			it->flags |= WGGWD_ITEM_MAC1_OK | WGGWD_ITEM_AUTHENTICATED;
		} else {
			it->transport = WGGWD_TR_PUSH;
			it->peer->origin = WGGWD_ORIGIN_PUSH;
		}
	}
	v = wggwd_plugin.ops->process(ctx, it);
	if (v != WGGWD_PENDING)
		h->item_free(STUB_SELF, it);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf conf;
	struct wggwd_link link = {
		.size = sizeof(link),
		.pipeline = "fuzz",
		.source_out = WGGWD_MSG_PKT,
		.source_flags = WGGWD_F_RESENDS,
		.kinds_before = 1u << WGGWD_SOURCE | 1u << WGGWD_DECODER | 1u << WGGWD_RESOLVER,
		.position = 3,
		.length = 4,
	};
	struct wggwd_device dev = { .size = sizeof(dev) };
	struct rec recs[257];
	struct getsrv g;
	const char *opt = NULL;
	char buf[256];
	size_t n_recs = 0, i;
	uint8_t flags;
	void *ctx;
	int ret;

	if (!size)
		return 0;
	/* the records */
	for (i = 0; i <= size && n_recs < 257;) {
		const uint8_t *z = memchr(data + i, 0, size - i);
		size_t n = z ? (size_t)(z - data) - i : size - i;

		recs[n_recs].p = data + i;
		recs[n_recs++].n = n;
		i += n + 1;
		if (!z)
			break;
	}
	flags = data[0];
	recs[0].p++;
	recs[0].n--;
	n_replies = next_reply = 0;
	for (i = 1; i < n_recs; i++) {
		replies[n_replies].p = recs[i].n ? recs[i].p + 1 : recs[i].p;
		replies[n_replies++].n = recs[i].n ? recs[i].n - 1 : 0;
	}
	split_writes = flags & 8;
	stub_conf_defaults(&wggwd_plugin, &conf);
	conf.e.interface = "wg0";
	conf.socket_dir = dir;
	conf.e.completion = flags % 3;

	if (wggwd_plugin.ops->create(&stub_host, STUB_SELF, &conf, &ctx))
		return 0;
	(void)wggwd_plugin.ops->link(NULL, &conf, &link, &opt, buf, sizeof(buf));
	(void)wggwd_plugin.ops->link(ctx, &conf, &link, &opt, buf, sizeof(buf));
	g.reply = recs[0];
	if (pthread_create(&g.t, NULL, get_server, &g))
		abort();
	ret = wggwd_plugin.ops->start(ctx);
	pthread_join(g.t, NULL);
	TRACE("start: %d\n", ret);
	if (ret) {
		stub_free_timers();
		wggwd_plugin.ops->destroy(ctx);
		return 0;
	}
	if (wggwd_plugin.ops->device(ctx, &dev) == 0 && (dev.listen_port > 65535 || dev.size != sizeof(dev)))
		abort();
	sodium_memzero(&dev, sizeof(dev));
	pump();
	for (i = 1; i < n_recs; i++) {
		uint8_t a = recs[i].n ? recs[i].p[0] : 0;

		switch (a & 3) {
		case 0:
		case 1:
			item(ctx, a, flags);
			break;
		case 2:
			(void)wggwd_plugin.ops->dump(ctx, dump_cb, NULL);
			break;
		case 3:
			stub_fire_timers();
			break;
		}
		pump();
	}
	/* the interface says nothing more (a reply left half-way ends with
	 * the connection, as the backend's 2 s timeout would end it), then
	 * the daemon stops */
	n_replies = next_reply;
	srv_close();
	pump();
	srv_close();
	stub_stopped = 0;
	TRACE("stop\n");
	wggwd_plugin.ops->stop(ctx);
	for (i = 0; i < 50 && !stub_stopped; i++) {
		pump();
		srv_close();
	}
	if (!stub_stopped)
		stub_fail("stop never finished (host->stopped not called)");
	srv_close();
	free_completed();
	stub_free_timers();
	wggwd_plugin.ops->destroy(ctx);
	return 0;
}
