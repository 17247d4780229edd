// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf: the cookie watch (cookie_watch).
 *
 * Under load (PROTOCOL.md (c)) the interface answers an initiation that
 * has no valid mac2 with a cookie reply (type 3, 64 bytes, its receiver
 * index the initiation's sender index) and drops it; the client waits for
 * its 5 s rekey timeout before it tries again, with the cookie. But from
 * that reply on it holds a cookie, so its answer to an initiation FROM
 * the interface carries a valid mac2 and goes through. That is the moment
 * to install its peer afresh (removed and added with the endpoint and a
 * keepalive: the interface initiates at once), whether the peer was
 * installed already (a returning client whose client restarted, a pushed
 * peer: the interface has a stale session or none, and would not
 * initiate) or not.
 *
 * The filter lets through the cookie replies the interface sends
 * (sbfilter.c: outgoing, from our port, type 3, 64 bytes). Two small
 * tables, fixed in size, keyed by endpoint (host->hash), put each beside
 * the knock it answers:
 *   knocks:  the initiations of keys the pipeline let in (installed,
 *            unchanged or inverted: an item that reached the installer),
 *            for KNOCK_TTL: filled from done, so a fresh-key flood
 *            (unknown keys, replays) never gets in;
 *   cookies: the last cookie reply to each endpoint, for as long as no
 *            other takes the slot: a reply may be seen before its knock is
 *            done (the interface answers while the pipeline decodes or
 *            looks up).
 * A cookie reply to the endpoint of a knock (whichever is seen last) makes
 * an item for its key (the decoder is skipped; the store or resolver gives
 * the config), with WGGWD_ITEM_INVERT and WGGWD_ITEM_REFUSED, and the
 * reply's time as rx_realtime_ns: the installer installs the peer afresh
 * at once, unless it added it anew after that reply (then the interface is
 * initiating to a client that holds a cookie). The reply may answer the
 * knock itself (its receiver index is the knock's sender index) or the
 * client's response to an initiation of the interface (a client that had
 * no cookie yet: the knock was dropped unanswered, the queue being full);
 * both are acted on, one reply per receiver index, at most REFUSED_MAX
 * times per client (key at its endpoint) in KNOCK_TTL. A knock so
 * completed is not re-sent (completion reinject: the interface would
 * answer the copy with a cookie too).
 *
 * What it costs an attacker: nothing new. A flood's cookie replies only
 * overwrite cookie slots (a legitimate one lost costs that client the old
 * path: the installer's rearm and collision retry); knocks are only those
 * of keys the pipeline accepted, whose initiations the decoder has
 * authenticated and checked against replays.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "source_bpf.h"

/* An endpoint as bytes to hash: family, port, address (IPv6: its scope). */
struct ep_bytes {
	uint16_t family;
	uint16_t port;
	uint32_t scope;
	uint8_t addr[16];
};

static void ep_bytes(struct ep_bytes *b, const union wggwd_sockaddr *ep)
{
	memset(b, 0, sizeof(*b));
	b->family = ep->sa.sa_family;
	if (ep->sa.sa_family == AF_INET) {
		b->port = ep->in4.sin_port;
		memcpy(b->addr, &ep->in4.sin_addr, 4);
	} else {
		b->port = ep->in6.sin6_port;
		b->scope = ep->in6.sin6_scope_id;
		memcpy(b->addr, &ep->in6.sin6_addr, 16);
	}
}

static uint64_t ep_hash(struct ctx *c, const union wggwd_sockaddr *ep)
{
	struct ep_bytes b;

	ep_bytes(&b, ep);
	return c->host->hash(&b, sizeof(b)) | 1; /* 0: an empty slot */
}

int cookie_open(struct ctx *c)
{
	if (!c->conf->cookie_watch)
		return 0;
	c->knocks = calloc(KNOCK_SLOTS, sizeof(*c->knocks));
	c->cookies = calloc(COOKIE_SLOTS, sizeof(*c->cookies));
	return c->knocks && c->cookies ? 0 : -ENOMEM;
}

void cookie_free(struct ctx *c)
{
	free(c->knocks);
	free(c->cookies);
	c->knocks = NULL;
	c->cookies = NULL;
}

/* The knock's client was answered with a cookie (receiver index `index`,
 * sent at real_ns): its key goes in afresh, once per reply index, at most
 * REFUSED_MAX times a KNOCK_TTL for the client. */
static bool fire(struct ctx *c, struct knock *k, uint32_t index, uint64_t now,
		 uint64_t real_ns)
{
	char b64[WG_KEY_B64_LEN], ep[64];
	uint8_t hdr[8] = { 3 }; /* what the item keeps of the reply */

	if ((k->answered && k->last == index) || c->stopping)
		return false;
	k->answered = true;
	k->last = index;
	if (now - k->window_ns >= KNOCK_TTL_NS) {
		k->window_ns = now;
		k->fired = 0;
	}
	if (k->fired >= REFUSED_MAX) {
		(*c->cookie_limited)++;
		return false;
	}
	k->fired++;
	memcpy(hdr + 4, &index, 4);
	wg_key_to_b64(b64, k->key);
	wg_sockaddr_str(&k->ep, ep, sizeof(ep));
	/* rx_realtime_ns: when the interface refused it */
	if (emit_known(c, k->key, WGGWD_ITEM_INVERT | WGGWD_ITEM_REFUSED, hdr, sizeof(hdr), &k->ep,
		       &k->dst, k->ifindex, real_ns))
		return false;
	(*c->cookie_reinstalls)++;
	log_limited(c, WGGWD_LOG_INFO,
		    "%s at %s was answered with a cookie (the interface is under load): installing it afresh, the gateway initiates",
		    b64, ep);
	return true;
}

/* handle_packet: the interface sent a cookie reply to `to`. */
void cookie_sent(struct ctx *c, const union wggwd_sockaddr *to, const uint8_t *payload,
		 uint64_t now, uint64_t real_ns)
{
	uint64_t tag = ep_hash(c, to);
	struct cookie_seen *s = &c->cookies[tag & (COOKIE_SLOTS - 1)];
	struct knock *k = &c->knocks[tag & (KNOCK_SLOTS - 1)];
	uint32_t index;

	(*c->cookie_replies)++;
	memcpy(&index, payload + 4, 4); /* as the wire has it */
	s->tag = tag;
	s->ns = now;
	s->real_ns = real_ns;
	s->index = index;
	if (k->rx_ns && now >= k->rx_ns && now - k->rx_ns < KNOCK_TTL_NS &&
	    wg_sockaddr_equal(&k->ep, to))
		fire(c, k, index, now, real_ns);
}

/*
 * sb_done, an initiation of a key the pipeline let in: remember it; if a
 * cookie reply went to its endpoint since it arrived, act now. True: one
 * did (the knock is not to be re-sent).
 */
bool cookie_knock_done(struct ctx *c, const struct wggwd_item *it, const uint8_t *key)
{
	const union wggwd_sockaddr *ep = &it->endpoint;
	uint64_t now = c->host->now_ns(), tag;
	struct cookie_seen *s;
	struct knock *k;

	if (!c->knocks || (ep->sa.sa_family != AF_INET && ep->sa.sa_family != AF_INET6))
		return false;
	tag = ep_hash(c, ep);
	k = &c->knocks[tag & (KNOCK_SLOTS - 1)];
	if (!k->rx_ns || !wg_sockaddr_equal(&k->ep, ep) || memcmp(k->key, key, WGGWD_KEY_LEN)) {
		/* another client (or none) had the slot: its rate limit goes */
		memset(k, 0, sizeof(*k));
		k->ep = *ep;
		memcpy(k->key, key, WGGWD_KEY_LEN);
	}
	k->dst = it->dst;
	k->ifindex = it->ifindex;
	k->rx_ns = it->t[WGGWD_T_RX] ? it->t[WGGWD_T_RX] : now;
	k->answered = false;
	s = &c->cookies[tag & (COOKIE_SLOTS - 1)];
	if (s->tag != tag || s->ns < k->rx_ns)
		return false;
	return fire(c, k, s->index, now, s->real_ns);
}

/* sb_done, an item fire() made. */
void cookie_item_done(struct ctx *c, const struct wggwd_item *it, int verdict)
{
	char b64[WG_KEY_B64_LEN];

	if (verdict == WGGWD_CONTINUE || verdict == WGGWD_DONE)
		return;
	(*c->cookie_failed)++;
	wg_key_to_b64(b64, it->public_key);
	log_limited(c, WGGWD_LOG_WARN, "installing %s afresh after its cookie: %s (%s%s%s)", b64,
		    verdict == WGGWD_ERROR ? "failed" : "dropped", c->host->reason_name(it->reason),
		    it->detail ? ": " : "", it->detail ? it->detail : "");
}
