// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * libFuzzer target: the control plane's answer about a peer
 * (plugins/common/peerjson.c), as resolver-http and resolver-nats take
 * it: json_loadb with JSON_REJECT_DUPLICATES, wg_peer_from_json about the
 * asked key (bytes 1..32), the allowed-IPs policy (peerpolicy.c), the
 * wipe. Input: [flags][JSON...]
 *   flags & 3: max_allowed 0 (none), 1, 16, 10000;  4: allowed IPs already
 *   there (a reused item);  8: allocations fail
 * Checked: an accepted answer is about the asked key, has allowed IPs
 * that parse back (family, prefix length), no more than max_allowed; a
 * refused one leaves the peer empty.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "peerjson.h"
#include "peerpolicy.h"
#include "stubhost.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct wggwd_allowed_ip policy[3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	stub_init();
	if (wg_allowed_ip_parse(&policy[0], "10.0.0.0/8") ||
	    wg_allowed_ip_parse(&policy[1], "fd00::/8") ||
	    wg_allowed_ip_parse(&policy[2], "192.0.2.0/24"))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t maxes[4] = { 0, 1, 16, 10000 };
	const struct wggwd_host *h = &stub_host;
	struct wg_policy pol = { .n = 3, .prefixes = policy };
	struct wggwd_item *it;
	struct wggwd_peer *p;
	json_error_t jerr;
	json_t *root;
	const char *what = NULL;
	uint32_t r;
	size_t max, i;
	uint8_t flags;

	if (!size)
		return 0;
	flags = data[0];
	max = maxes[flags & 3];
	root = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return 0;
	it = h->item_new(STUB_SELF);
	if (!it)
		abort();
	p = it->peer;
	for (i = 0; i < WGGWD_KEY_LEN; i++)
		it->public_key[i] = i + 1;
	if (flags & 4) {
		h->allowed_reserve(STUB_SELF, it, 3);
		p->has = WGGWD_PEER_HAS_ALLOWED_IPS;
	}
	stub_fail_alloc = flags & 8;
	r = wg_peer_from_json(h, STUB_SELF, it, root, max, &what);
	stub_fail_alloc = 0;
	if (r == WGGWD_R_NONE) {
		if (what || memcmp(p->public_key, it->public_key, WGGWD_KEY_LEN) ||
		    !(p->has & WGGWD_PEER_HAS_PUBLIC_KEY))
			stub_fail("accepted, but not about the asked key");
		if (max && p->n_allowed > max)
			stub_fail("more allowed IPs than max_allowed");
		for (i = 0; i < p->n_allowed; i++) {
			const struct wggwd_allowed_ip *a = &p->allowed[i];
			char buf[64];

			if (!((a->family == AF_INET && a->cidr <= 32) ||
			      (a->family == AF_INET6 && a->cidr <= 128)))
				stub_fail("an allowed IP that is not one");
			wg_allowed_ip_str(a, buf, sizeof(buf));
		}
		(void)wg_policy_peer_outside(&pol, p);
		pol.n = 0; /* nothing is inside */
		(void)wg_policy_peer_outside(&pol, p);
	} else {
		if (!what || p->n_allowed || p->has || !wg_key_is_zero(p->public_key) ||
		    !wg_key_is_zero(p->preshared_key))
			stub_fail("refused, but the peer is not left empty (or no reason given)");
		if (r != WGGWD_R_BAD_ANSWER && r != WGGWD_R_KEY_MISMATCH && r != WGGWD_R_NO_MEMORY)
			stub_fail("refused with an undocumented reason");
	}
	wg_peer_json_wipe(root);
	json_decref(root);
	h->item_free(STUB_SELF, it);
	return 0;
}
