// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* source-nats: its options (sn_opts.c) and turning a pushed message into
 * an item (sn_msg.c). */
#ifndef WGGWD_SN_H
#define WGGWD_SN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wggwd/plugin.h>

#include "natsconn.h"

enum { MODE_JETSTREAM, MODE_REQUEST };

struct sn_conf {
	struct nc_conf nc;
	int mode;
	char *subject;
	char *durable;
	char *stream;
	char *queue;
	int64_t max_in_flight;
	int64_t ack_wait_ms;
	int64_t nak_delay_ms;
	int64_t max_deliver;
	int64_t heartbeat_ms;
	int64_t api_timeout_ms;
	bool failover_read;
	int64_t drain_timeout_ms;
	int64_t max_allowed_ips;
	struct wggwd_list allowed_prefixes;
	struct wggwd_list allow_endpoints;
	int64_t max_keys;
	int64_t max_version;
	int64_t max_version_jump;
};

/* the option table (sn_opts.c) */
extern const struct wggwd_opt sn_opts[];

/* why a message is poison; "poison_<name>" counts each */
enum poison {
	P_NONE, P_BAD_JSON, P_BAD_OP, P_BAD_KEY, P_BAD_VERSION, P_BAD_ALLOWED_IPS,
	P_TOO_MANY_ALLOWED_IPS, P_BAD_PRESHARED_KEY, P_BAD_KEEPALIVE, P_BAD_ENDPOINT,
	P_POLICY, P_VERSION_JUMP, P_BAD_LEASE, P_MAX
};
extern const char *const sn_poison_names[P_MAX];

/* What a message is checked against. */
struct sn_policy {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	int64_t max_allowed_ips;
	uint64_t max_version;
	bool any_prefix;                  /* allowed_prefixes: [any] */
	struct wggwd_allowed_ip *prefixes;
	size_t n_prefixes;
	struct wggwd_allowed_ip *allow_ep; /* allow_endpoints */
	size_t n_allow_ep;
	struct wggwd_allowed_ip *own;     /* the gateway's addresses */
	size_t n_own;
};

/* allow_endpoints, and the gateway's own addresses (getifaddrs). 0 or -errno */
int sn_policy_load(struct sn_policy *pol, const struct wggwd_list *allow_endpoints);
void sn_policy_free(struct sn_policy *pol);

/* The message as an item: P_NONE, why it is poison (*what: which part,
 * for the log), or -ENOMEM. */
int sn_parse(const struct sn_policy *pol, const char *data, int len, struct wggwd_item *it,
	     uint64_t seq, const char **what);

/* "$JS.ACK...": the stream sequence and the delivery count */
bool sn_ack_subject_parse(const char *s, uint64_t *sseq, uint64_t *delivered);

#endif
