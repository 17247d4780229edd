// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf: sniffs WireGuard handshake initiations on the uplink.
 *
 * An AF_PACKET SOCK_DGRAM socket bound to one interface, with a classic
 * BPF program that keeps only UDP to our port carrying 148 bytes that
 * start with type 1, over IPv4 or IPv6 (PROTOCOL.md (h), the "network
 * layer view": the kernel runs the filter on data that starts at the IP
 * header, whatever the link is: Ethernet, a bridge, a VLAN, tun,
 * WireGuard itself). It only observes copies; WireGuard still owns its
 * UDP socket and sees every packet as usual.
 *
 * The parts (source_bpf.h): sniff.c reads, reinject.c re-sends, watch.c
 * brings returning clients back, load.c measures the initiation rate,
 * cookie.c installs afresh the clients the interface answered with a
 * cookie reply (it also lets through the cookie replies this host sends).
 *
 * Counters: received (read from the socket: everything the filter let
 * through), emitted, drop_outgoing (copies of what this host sent),
 * drop_parse (IP/UDP headers that do not hold up), kernel_drops (the
 * receive buffer overflowed: PACKET_STATISTICS, read every second and at
 * stop), reinjected, reinject_failed; watched (removals of live sessions
 * put under watch), returning (items for returning clients), return_failed
 * (those that did not end installed), watch_expired, watch_full (watches
 * dropped for room: watch_max), watch_late (data from an
 * endpoint no longer armed: queued before the filter changed, or within a
 * second of the key's last return); gauge watch_entries (endpoints in the
 * filter now); inverted_under_load (initiations emitted with
 * WGGWD_ITEM_INVERT because of the rate), gauges initiation_rate (the last
 * second's) and under_load (0/1); cookie_replies (cookie replies the
 * interface sent, seen on the uplink), cookie_reinstalls (items for known
 * clients so answered: installed afresh), cookie_limited (not: the
 * per-client limit), cookie_failed (those items that did not end
 * installed). drop_outgoing counts every other packet this host sent that
 * the filter let through.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source_bpf.h"

static const struct wggwd_opt opts[] = {
	{ .name = "interface", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct conf, interface), .check = wg_check_ifname,
	  .help = "the uplink the clients' initiations arrive on (eth0, a bridge, a veth); any link type" },
	{ .name = "port", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 65535,
	  .offset = offsetof(struct conf, port),
	  .help = "the WireGuard UDP port to watch; 0: the listen port the pipeline's installer reports" },
	{ .name = "batch", .type = WGGWD_OPT_INT, .def = "64", .min = 1, .max = 1024,
	  .offset = offsetof(struct conf, batch),
	  .help = "packets read per wakeup (one recvmmsg); more are read on the next turn of the loop" },
	{ .name = "rcvbuf", .type = WGGWD_OPT_SIZE, .def = "8MiB", .min = 4096, .max = 1LL << 30,
	  .offset = offsetof(struct conf, rcvbuf),
	  .help = "socket receive buffer (SO_RCVBUFFORCE, else SO_RCVBUF capped by net.core.rmem_max): what absorbs a burst while the pipeline is busy; overflows are counted as kernel_drops" },
	{ .name = "reinject", .type = WGGWD_OPT_BOOL, .def = "true",
	  .offset = offsetof(struct conf, reinject),
	  .help = "when the installer asks for it, send the held initiation again from the client's address and port (raw IP socket) so the local WireGuard answers it as responder" },
	{ .name = "watch_returning", .type = WGGWD_OPT_BOOL, .def = "true",
	  .offset = offsetof(struct conf, watch_returning),
	  .help = "after an eviction (idle, max_peers) of a peer whose session was live, let its client's next data packet re-install it with role inversion (the gateway initiates), instead of the client's own retry 15 s later" },
	{ .name = "watch_max", .type = WGGWD_OPT_INT, .def = "256", .min = 1, .max = SBF_MAX_WATCH,
	  .offset = offsetof(struct conf, watch_max),
	  .help = "evicted clients watched at once (each for what is left of its 180 s session); past it, those that expire first are dropped" },
	{ .name = "invert_above", .type = WGGWD_OPT_INT, .def = "1000", .min = 0, .max = 100000000,
	  .offset = offsetof(struct conf, invert_above),
	  .help = "initiations per second (every one that reaches the port, garbage included: each takes a slot in WireGuard's handshake queue) from which the interface is taken to be under load, where it answers initiations with cookie replies and every new client waits 5 s: then, and for invert_hold after, knocking clients are completed by role inversion (the gateway initiates; the client, not under load, answers at once), whatever the installer's completion, and for peers installed already (pushed, or whose client restarted) inversion is armed again. A false alarm costs little: a new peer is inverted rather than re-sent to, and an installed one the interface answered itself is left as it is. wireguard-go and the kernel go under load when 128 (of 1,024) or 512 (of 4,096) initiations wait: a few thousand a second on a small machine, bursts sooner. 0: never" },
	{ .name = "invert_hold", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 0, .max = 600000,
	  .offset = offsetof(struct conf, invert_hold_ms),
	  .help = "how long after the rate falls below invert_above inversion goes on (WireGuard stays under load 1 s after its queue drains)" },
	{ .name = "cookie_watch", .type = WGGWD_OPT_BOOL, .def = "true",
	  .offset = offsetof(struct conf, cookie_watch),
	  .help = "watch the cookie replies the interface sends (it is under load): when one answers a knock whose key the pipeline let in moments ago, that client holds a cookie now, and its peer is installed afresh at once (the gateway initiates, and the client's answer carries a valid mac2), whether it was installed already (its client restarted, a pushed peer) or not, instead of the client waiting 5 s or the installer's collision retry. At most 3 times in 5 s a client; knocks of unknown keys are never remembered. The filter then also lets through the cookie replies sent from the port (64 bytes each)" },
	WGGWD_OPT_END
};

/*
 * Emit an item for a key known already (the core skips the decoder; there
 * is no initiation to re-send): a returning client's data packet (watch.c),
 * a knock the interface answered with a cookie (cookie.c). `pkt`: what the
 * item keeps of the packet that caused it. 0: emitted (done will see it);
 * <0: not (done will not).
 */
int emit_known(struct ctx *c, const uint8_t *key, uint32_t flags, const uint8_t *pkt,
	       size_t len, const union wggwd_sockaddr *src, const union wggwd_sockaddr *dst,
	       unsigned ifindex, uint64_t rx_realtime_ns)
{
	struct wggwd_item *it = c->host->item_new(c->self);
	int ret;

	if (!it)
		return -ENOMEM;
	ret = c->host->item_pkt(c->self, it, pkt, len);
	if (ret) {
		c->host->item_free(c->self, it);
		return ret;
	}
	it->type = WGGWD_MSG_PKT | WGGWD_MSG_PEER_KEY;
	it->flags = flags;
	it->transport = WGGWD_TR_UDP;
	it->src = *src;
	it->dst = *dst;
	it->endpoint = *src;
	it->ifindex = ifindex;
	it->rx_realtime_ns = rx_realtime_ns;
	memcpy(it->public_key, key, WGGWD_KEY_LEN);
	ret = c->host->emit(c->self, it); /* else refused (stopping) and freed */
	if (!ret)
		(*c->emitted)++;
	return ret;
}

/*
 * Items finish after the source has stopped too (the core stops sources
 * first, then drains): the raw sockets stay open until destroy for them.
 * Only items this source emitted come here (never injected ones).
 */
static void sb_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	char from[64], to[64];
	int ret;

	if (it->flags & WGGWD_ITEM_REFUSED) { /* the cookie watch's */
		cookie_item_done(c, it, verdict);
		return;
	}
	/* a returning client's (its data packet's header), not an
	 * initiation inverted under load */
	if ((it->flags & WGGWD_ITEM_INVERT) && it->pkt_len && it->pkt[0] == 4) {
		watch_done(c, it, verdict);
		return;
	}
	if (verdict == WGGWD_CONTINUE && it->op == WGGWD_OP_ADD && c->watch.n) {
		struct watch *w = wgt_get(&c->watch, it->public_key);

		if (w && w->state == W_ARMED) { /* back by its own initiation */
			w->state = W_SPENT;
			filter_dirty(c);
		}
	}
	if (verdict != WGGWD_CONTINUE)
		return;
	/* a knock of a key the pipeline let in, which the interface may have
	 * answered with a cookie: then it is installed afresh, not re-sent */
	if (c->knocks && it->op == WGGWD_OP_ADD && it->pkt_len == SBF_INIT_LEN &&
	    it->pkt[0] == 1 && (it->type & WGGWD_MSG_PEER_KEY) && !wg_key_is_zero(it->public_key) &&
	    cookie_knock_done(c, it, it->public_key))
		return;
	if (!(it->flags & WGGWD_ITEM_REINJECT))
		return;
	if (!c->conf->reinject) {
		c->host->log(c->self, WGGWD_LOG_DEBUG, "the installer asked for a re-send; reinject is off");
		return;
	}
	ret = reinject(c, it);
	if (!ret) {
		it->t[WGGWD_T_REINJECTED] = c->host->now_ns();
		(*c->reinjected)++;
		return;
	}
	(*c->reinject_failed)++;
	wg_sockaddr_str(&it->src, from, sizeof(from));
	wg_sockaddr_str(&it->dst, to, sizeof(to));
	log_limited(c, WGGWD_LOG_WARN, "re-sending the initiation from %s to %s: %s",
		    from, to, strerror(-ret));
}

/* ------------------------------------------------------------- lifecycle */

static int sb_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->fd = c->raw4 = c->raw6 = -1;
	c->received = host->counter(self, "received");
	c->emitted = host->counter(self, "emitted");
	c->drop_parse = host->counter(self, "drop_parse");
	c->drop_outgoing = host->counter(self, "drop_outgoing");
	c->kernel_drops = host->counter(self, "kernel_drops");
	c->reinjected = host->counter(self, "reinjected");
	c->reinject_failed = host->counter(self, "reinject_failed");
	c->watched = host->counter(self, "watched");
	c->returning = host->counter(self, "returning");
	c->return_failed = host->counter(self, "return_failed");
	c->watch_expired = host->counter(self, "watch_expired");
	c->watch_full = host->counter(self, "watch_full");
	c->watch_late = host->counter(self, "watch_late");
	c->watch_entries = host->gauge(self, "watch_entries");
	c->inverted_under_load = host->counter(self, "inverted_under_load");
	c->g_rate = host->gauge(self, "initiation_rate");
	c->g_under_load = host->gauge(self, "under_load");
	c->cookie_replies = host->counter(self, "cookie_replies");
	c->cookie_reinstalls = host->counter(self, "cookie_reinstalls");
	c->cookie_limited = host->counter(self, "cookie_limited");
	c->cookie_failed = host->counter(self, "cookie_failed");
	if (wgt_init(&c->watch, host, sizeof(struct watch))) {
		free(c);
		return -ENOMEM;
	}
	*ctxp = c;
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void on_closed(uv_handle_t *h)
{
	struct ctx *c = h->data;

	close_fd(&c->fd);
	c->poll_init = false;
	if (c->stopping)
		c->host->stopped(c->self);
}

static int sb_start(void *ctx)
{
	struct ctx *c = ctx;
	int ret;

	ret = resolve_port(c);
	if (ret)
		return ret;
	ret = alloc_batch(c);
	if (ret)
		goto out;
	c->armed = calloc(c->conf->watch_max, sizeof(*c->armed));
	c->eps = calloc(c->conf->watch_max, sizeof(*c->eps));
	c->prog = calloc(sbf_size(c->conf->watch_max), sizeof(*c->prog));
	if (!c->armed || !c->eps || !c->prog || cookie_open(c)) {
		ret = -ENOMEM;
		goto out;
	}
	ret = open_sniffer(c);
	if (ret)
		goto out;
	if (c->conf->reinject) {
		ret = open_reinject(c);
		if (ret)
			goto out;
	}
	ret = uv_poll_init(c->host->loop, &c->poll, c->fd);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "uv_poll_init: %s", uv_strerror(ret));
		goto out;
	}
	c->poll.data = c;
	c->poll_init = true;
	ret = uv_poll_start(&c->poll, UV_READABLE, on_poll);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "uv_poll_start: %s", uv_strerror(ret));
		uv_close((uv_handle_t *)&c->poll, on_closed); /* closes the fd */
		goto out;
	}
	c->timer = c->host->timer_new(c->self, on_timer, c);
	c->host->timer_start(c->timer, STATS_MS, STATS_MS);
	if (c->conf->watch_returning)
		c->regen = c->host->timer_new(c->self, on_regen, c);
	c->host->log(c->self, WGGWD_LOG_INFO,
		     "sniffing initiations to port %u on %s (ifindex %u), IPv4 and IPv6; re-send %s; returning clients %s; cookie replies %s",
		     c->port, c->conf->interface, c->ifindex,
		     !c->conf->reinject ? "off" : c->raw6 >= 0 ? "on" : "on (IPv4 only)",
		     c->conf->watch_returning ? "watched" : "not watched",
		     c->conf->cookie_watch ? "watched" : "not watched");
	return 0;
out:
	if (!c->poll_init)
		close_fd(&c->fd);
	close_fd(&c->raw4);
	close_fd(&c->raw6);
	return ret;
}

static void sb_stop(void *ctx)
{
	struct ctx *c = ctx;

	c->stopping = true;
	if (c->timer) {
		c->host->timer_free(c->timer);
		c->timer = NULL;
	}
	if (c->regen) {
		c->host->timer_free(c->regen);
		c->regen = NULL;
	}
	read_stats(c); /* the last of the kernel's drops */
	if (c->poll_init) {
		uv_poll_stop(&c->poll);
		uv_close((uv_handle_t *)&c->poll, on_closed);
		return;
	}
	close_fd(&c->fd);
	c->host->stopped(c->self);
}

static void sb_destroy(void *ctx)
{
	struct ctx *c = ctx;

	close_fd(&c->fd);
	close_fd(&c->raw4);
	close_fd(&c->raw6);
	free(c->msgs);
	free(c->iov);
	free(c->names);
	free(c->bufs);
	free(c->ctrl);
	free(c->armed);
	free(c->eps);
	free(c->prog);
	cookie_free(c);
	wgt_free(&c->watch);
	free(c);
}

static const char *sb_preflight(void *ctx, const char **option, char *buf, size_t len)
{
	const struct ctx *c = ctx;

	return sb_preflight_conf(c->conf->interface, c->conf->reinject, option, buf, len);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = sb_create,
	.start = sb_start,
	.stop = sb_stop,
	.destroy = sb_destroy,
	.done = sb_done,
	.removed = sb_removed,
	.preflight = sb_preflight,
};

WGGWD_PLUGIN_DEFINE(
	.name = "source-bpf",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "sniffs WireGuard handshake initiations on an interface (AF_PACKET + classic BPF), re-sends them on request, and brings evicted clients with live sessions back on their next data packet",
	.kind = WGGWD_SOURCE,
	.in = WGGWD_MSG_NONE,
	.out = WGGWD_MSG_PKT,
	.flags = WGGWD_F_RESENDS,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
