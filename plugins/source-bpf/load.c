// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * source-bpf: the load detection.
 *
 * Adaptive completion (invert_above). Once the initiations reaching the
 * port come faster than the interface can take them, WireGuard is "under
 * load" (PROTOCOL.md (c): its handshake queue 1/8 full, and for 1 s after):
 * it answers an initiation without a valid mac2 with a cookie reply, and
 * the client only tries again, with the cookie, after its 5 s rekey
 * timeout. A re-sent initiation (completion: reinject) meets the same
 * fate, and so does a client's own initiation to a peer installed ahead
 * of time. When the gateway initiates instead, the client, which is not
 * under load, answers at once. So the rate of initiations seen (all of
 * them, garbage included: each 148-byte type-1 packet takes a slot in the
 * handshake queue before its mac1 is checked) is measured over the last
 * second, and while it is at or above invert_above (and for invert_hold
 * after), every initiation is emitted with WGGWD_ITEM_INVERT: the
 * installer completes by role inversion whatever its `completion` (the
 * collision retry stays), and arms it again for a peer that is installed
 * already (pushed ahead of time, or its client restarted). Below it, the
 * installer's completion (reinject: it cannot collide) is used. The rate is
 * a guess at the interface's state; its cookie replies are the proof, and
 * the cookie watch (cookie.c) acts on each one that answers a known client.
 */
#include <string.h>

#include "source_bpf.h"

/*
 * One more initiation seen at mono: is the interface under load? The rate
 * is the count of the last LOAD_SLOTS slots (the current one included).
 */
bool load_note(struct ctx *c, uint64_t mono)
{
	uint64_t slot = mono / LOAD_SLOT_NS, i;

	if (slot != c->load_slot) {
		for (i = c->load_slot + 1; i <= slot && i <= c->load_slot + LOAD_SLOTS; i++) {
			c->load_sum -= c->load[i % LOAD_SLOTS];
			c->load[i % LOAD_SLOTS] = 0;
		}
		c->load_slot = slot;
	}
	c->load[slot % LOAD_SLOTS]++;
	c->load_sum++;
	if (!c->conf->invert_above)
		return false;
	if (c->load_sum >= (uint64_t)c->conf->invert_above) {
		c->hot_until = mono + (uint64_t)c->conf->invert_hold_ms * 1000000;
		if (!c->hot) {
			c->hot = true;
			*c->g_under_load = 1;
			log_limited(c, WGGWD_LOG_INFO,
				    "%llu initiations in the last second (invert_above %lld): the interface is under load; completing knocking clients by role inversion",
				    (unsigned long long)c->load_sum, (long long)c->conf->invert_above);
		}
	}
	return c->hot && mono < c->hot_until;
}

/* Once a second: the rate gauge, and the end of a load. */
void load_tick(struct ctx *c)
{
	uint64_t mono = c->host->now_ns(), slot = mono / LOAD_SLOT_NS;

	if (slot >= c->load_slot + LOAD_SLOTS) {
		memset(c->load, 0, sizeof(c->load));
		c->load_sum = 0;
		c->load_slot = slot;
	}
	*c->g_rate = c->load_sum;
	if (c->hot && mono >= c->hot_until) {
		c->hot = false;
		*c->g_under_load = 0;
		log_limited(c, WGGWD_LOG_INFO,
			    "the initiation rate is below invert_above again: completing as the installer says");
	}
}
