// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * libFuzzer target: source-nats' pushed peer config (sn_msg.c): the
 * JetStream ack subject (sn_ack_subject_parse) and the message body
 * (sn_parse: jansson, keys, allowed IPs, endpoint, version and the
 * policy: allowed_prefixes, allow_endpoints, the gateway's own
 * addresses). Input: [flags][reply subject]\n[body...]
 *   flags: 1 allowed_prefixes [any]; 2 no prefixes (else 10/8, fd00::/8);
 *          4 allow_endpoints 127/8; 8 max_allowed_ips 1 (else 10000);
 *          16 max_version 1000; 32 allocations fail; 64 no stream seq
 * Checked: a message that is not poison has a non-zero key, at most
 * max_allowed_ips allowed IPs that are well formed and (unless [any])
 * inside the prefixes, a version no higher than max_version; a removal
 * has op REMOVE and reason pushed.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sn.h"
#include "stubhost.h"
#include "wgutil.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sn_policy pol;
static struct wggwd_allowed_ip prefixes[2], loop_ep;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct wggwd_list none = { 0 };

	(void)argc;
	(void)argv;
	stub_init();
	pol.host = &stub_host;
	pol.self = STUB_SELF;
	if (sn_policy_load(&pol, &none)) /* the gateway's own addresses */
		abort();
	if (wg_allowed_ip_parse(&prefixes[0], "10.0.0.0/8") ||
	    wg_allowed_ip_parse(&prefixes[1], "fd00::/8") ||
	    wg_allowed_ip_parse(&loop_ep, "127.0.0.0/8"))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct wggwd_host *h = &stub_host;
	struct wggwd_item *it;
	struct wggwd_peer *p;
	const uint8_t *nl;
	const char *what;
	char *subj;
	uint64_t sseq = 0, delivered = 0, seq;
	uint8_t flags;
	size_t i;
	int why;

	if (!size)
		return 0;
	flags = data[0];
	data++;
	size--;
	nl = memchr(data, '\n', size);
	if (!nl || nl - data > 1024)
		return 0;
	subj = strndup((const char *)data, nl - data);
	if (!subj)
		return 0;
	if (sn_ack_subject_parse(subj, &sseq, &delivered) && !sseq)
		stub_fail("an ack subject parsed with stream sequence 0");
	free(subj);
	size -= nl + 1 - data;
	data = nl + 1;
	if (size > INT32_MAX)
		return 0;
	seq = flags & 64 ? 0 : sseq ? sseq : 42;

	pol.any_prefix = flags & 1;
	pol.prefixes = flags & 2 ? NULL : prefixes;
	pol.n_prefixes = flags & 2 ? 0 : 2;
	pol.allow_ep = flags & 4 ? &loop_ep : NULL;
	pol.n_allow_ep = flags & 4 ? 1 : 0;
	pol.max_allowed_ips = flags & 8 ? 1 : 10000;
	pol.max_version = flags & 16 ? 1000 : INT64_MAX;

	it = h->item_new(STUB_SELF);
	if (!it)
		abort();
	p = it->peer;
	p->origin = WGGWD_ORIGIN_PUSH;
	stub_fail_alloc = flags & 32;
	why = sn_parse(&pol, (const char *)data, (int)size, it, seq, &what);
	stub_fail_alloc = 0;
	if (why < -4095 || why >= P_MAX)
		stub_fail("sn_parse returned neither P_* nor -errno");
	if (why == P_NONE) {
		if (wg_key_is_zero(p->public_key) ||
		    memcmp(p->public_key, it->public_key, WGGWD_KEY_LEN))
			stub_fail("accepted without the message's key");
		if ((p->has & WGGWD_PEER_HAS_VERSION) && p->version > pol.max_version)
			stub_fail("accepted with a version above max_version");
		if (it->op == WGGWD_OP_REMOVE && it->reason != WGGWD_R_PUSHED)
			stub_fail("a removal without reason pushed");
		if (p->n_allowed > (uint64_t)pol.max_allowed_ips)
			stub_fail("more allowed IPs than max_allowed_ips");
		for (i = 0; i < p->n_allowed; i++) {
			const struct wggwd_allowed_ip *a = &p->allowed[i];

			if (!((a->family == AF_INET && a->cidr <= 32) ||
			      (a->family == AF_INET6 && a->cidr <= 128)))
				stub_fail("an allowed IP that is not one");
			if (!pol.any_prefix && !(wg_allowed_ip_within(a, &prefixes[0]) ||
						 wg_allowed_ip_within(a, &prefixes[1])))
				stub_fail("an allowed IP outside allowed_prefixes");
		}
		if ((p->has & WGGWD_PEER_HAS_ENDPOINT) && p->endpoint.sa.sa_family != AF_INET &&
		    p->endpoint.sa.sa_family != AF_INET6)
			stub_fail("an endpoint that is not one");
	}
	h->item_free(STUB_SELF, it);
	return 0;
}
