// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Items: allocation, their core-owned packet and allowed-IP buffers, and
 * the names of drop and removal reasons. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "runtime.h"

struct runtime *current_rt;

struct wggwd_item *item_alloc(void)
{
	struct item_box *b = xcalloc(1, sizeof(*b));
	struct runtime *rt = current_rt;

	b->ci.pub.size = sizeof(b->ci.pub);
	b->ci.pub.peer = &b->ci.peer;
	b->ci.peer.size = sizeof(b->ci.peer);
	b->ci.peer.allowed = b->ci.allowed_inline;
	b->ci.allowed_cap = ITEM_ALLOWED_INLINE;
	b->rt = rt;
	if (rt) {
		b->l.next = rt->items;
		if (rt->items)
			container_of(rt->items, struct item_box, ci)->l.prev = &b->ci;
		rt->items = &b->ci;
		rt->live++;
	}
	return &b->ci.pub;
}

void item_release(struct wggwd_item *it)
{
	struct core_item *ci;
	struct item_box *b;
	struct runtime *rt;

	if (!it)
		return;
	ci = container_of(it, struct core_item, pub);
	b = container_of(ci, struct item_box, ci);
	rt = b->rt;
	if (rt) {
		if (b->l.prev)
			container_of(b->l.prev, struct item_box, ci)->l.next = b->l.next;
		else
			rt->items = b->l.next;
		if (b->l.next)
			container_of(b->l.next, struct item_box, ci)->l.prev = b->l.prev;
		rt->live--;
	}
	sodium_memzero(ci->peer.preshared_key, sizeof(ci->peer.preshared_key));
	free(ci->pkt_heap);
	free(ci->allowed_heap);
	free(ci->slots_heap);
	free(b);
}

int item_set_pkt(struct wggwd_item *it, const void *data, size_t len)
{
	struct core_item *ci = container_of(it, struct core_item, pub);
	uint8_t *buf = ci->pkt_inline;

	if (len > UINT32_MAX)
		return -EMSGSIZE;
	if (len > sizeof(ci->pkt_inline)) {
		buf = realloc(ci->pkt_heap, len);
		if (!buf)
			return -ENOMEM;
		ci->pkt_heap = buf;
	}
	if (len)
		memcpy(buf, data, len);
	it->pkt = buf;
	it->pkt_len = len;
	return 0;
}

struct wggwd_allowed_ip *item_allowed_reserve(struct wggwd_item *it, size_t n)
{
	struct core_item *ci = container_of(it, struct core_item, pub);
	struct wggwd_peer *p = &ci->peer;
	struct wggwd_allowed_ip *a;
	size_t need = (size_t)p->n_allowed + n, cap;

	if (need > UINT32_MAX / sizeof(*a))
		return NULL;
	if (need > ci->allowed_cap) {
		for (cap = ci->allowed_cap * 2; cap < need; cap *= 2)
			;
		a = realloc(ci->allowed_heap, cap * sizeof(*a));
		if (!a)
			return NULL;
		if (!ci->allowed_heap)
			memcpy(a, ci->allowed_inline, p->n_allowed * sizeof(*a));
		ci->allowed_heap = a;
		ci->allowed_cap = cap;
	}
	p->allowed = ci->allowed_heap ? ci->allowed_heap : ci->allowed_inline;
	a = &p->allowed[p->n_allowed];
	memset(a, 0, n * sizeof(*a));
	p->n_allowed = need;
	return a;
}

static const char *const reason_names[WGGWD_R_COUNT_2_0] = {
	[WGGWD_R_NONE] = "unspecified",
	[WGGWD_R_OTHER] = "other",
	[WGGWD_R_SHUTDOWN] = "shutdown",
	[WGGWD_R_NO_MEMORY] = "no_memory",
	[WGGWD_R_INTERNAL] = "internal",
	[WGGWD_R_INFLIGHT_DUPLICATE] = "inflight_duplicate",
	[WGGWD_R_SHORT] = "short",
	[WGGWD_R_LONG] = "long",
	[WGGWD_R_TYPE] = "type",
	[WGGWD_R_MAC1] = "mac1",
	[WGGWD_R_STATIC] = "static",
	[WGGWD_R_TIMESTAMP] = "timestamp",
	[WGGWD_R_SKEW] = "skew",
	[WGGWD_R_REPLAY] = "replay",
	[WGGWD_R_UNKNOWN_KEY] = "unknown_key",
	[WGGWD_R_UNKNOWN_CACHED] = "unknown_cached",
	[WGGWD_R_BUDGET] = "budget",
	[WGGWD_R_BACKOFF] = "backoff",
	[WGGWD_R_BREAKER_OPEN] = "breaker_open",
	[WGGWD_R_OVERLOADED] = "overloaded",
	[WGGWD_R_QUEUE_TIMEOUT] = "queue_timeout",
	[WGGWD_R_RATE_LIMITED] = "rate_limited",
	[WGGWD_R_HTTP_STATUS] = "http_status",
	[WGGWD_R_TIMEOUT] = "timeout",
	[WGGWD_R_BAD_ANSWER] = "bad_answer",
	[WGGWD_R_KEY_MISMATCH] = "key_mismatch",
	[WGGWD_R_POLICY] = "policy",
	[WGGWD_R_CONNECT] = "connect",
	[WGGWD_R_TLS] = "tls",
	[WGGWD_R_STORE_WRITE] = "store_write",
	[WGGWD_R_STORE_CLOSED] = "store_closed",
	[WGGWD_R_STALE] = "stale",
	[WGGWD_R_BAD_MESSAGE] = "bad_message",
	[WGGWD_R_NO_PUBLIC_KEY] = "no_public_key",
	[WGGWD_R_INSTALL_FAILED] = "install_failed",
	[WGGWD_R_REMOVE_FAILED] = "remove_failed",
	[WGGWD_R_INSTALLER_NOT_READY] = "installer_not_ready",
	[WGGWD_R_IDLE] = "idle",
	[WGGWD_R_GRACE] = "grace",
	[WGGWD_R_MAX_PEERS] = "max_peers",
	[WGGWD_R_RECONCILE] = "reconcile",
	[WGGWD_R_CLOSED] = "closed",
	[WGGWD_R_PUSHED] = "pushed",
	[WGGWD_R_REVOKED] = "revoked",
	[WGGWD_R_EXPIRED] = "expired",
	[WGGWD_R_OPERATOR] = "operator",
	[WGGWD_R_UNVERIFIED] = "unverified",
};

const char *reason_name(uint32_t r)
{
	static char buf[32]; /* the loop thread's; for a reason from a newer
			      * minor, which the loader refuses anyway */

	if (r < ARRAY_SIZE(reason_names) && reason_names[r])
		return reason_names[r];
	snprintf(buf, sizeof(buf), "reason_%u", r);
	return buf;
}
