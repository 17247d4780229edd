// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* source-nats: its options (see source_nats.c for what they do). */
#include <stdio.h>
#include <string.h>

#include "peerpolicy.h"
#include "sn.h"
#include "wgutil.h"

static const char *const mode_choices[] = { "jetstream", "request", NULL };

static const char *check_durable(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!*s || strpbrk(s, ".*> \t\r\n")) {
		snprintf(buf, len, "a consumer name may not be empty or contain '.', '*', '>' or blanks");
		return buf;
	}
	return NULL;
}

static const char *check_subject(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (!*s || strpbrk(s, " \t\r\n") || s[0] == '.' || s[strlen(s) - 1] == '.' ||
	    strstr(s, "..")) {
		snprintf(buf, len, "expected a NATS subject (tokens separated by '.', no blanks)");
		return buf;
	}
	return NULL;
}

const struct wggwd_opt sn_opts[] = {
	NC_OPTS(struct sn_conf, nc),
	{ .name = "mode", .type = WGGWD_OPT_ENUM, .def = "jetstream", .choices = mode_choices,
	  .offset = offsetof(struct sn_conf, mode),
	  .help = "jetstream: a durable consumer, ACK after install (nothing lost); request: core NATS request/reply, answered after install" },
	{ .name = "subject", .type = WGGWD_OPT_STR, .flags = WGGWD_OPT_REQUIRED,
	  .offset = offsetof(struct sn_conf, subject), .check = check_subject,
	  .help = "where the control plane publishes this gateway's (or region's) peers (wggwd.peers.gw1)" },
	{ .name = "durable", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct sn_conf, durable), .check = check_durable,
	  .help = "jetstream: the durable consumer's name (one per gateway); created if missing" },
	{ .name = "stream", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct sn_conf, stream),
	  .help = "jetstream: the stream to bind to (default: the one whose subjects cover subject)" },
	{ .name = "queue", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct sn_conf, queue),
	  .help = "request: a queue group, so that several daemons share one subject" },
	{ .name = "max_in_flight", .type = WGGWD_OPT_INT, .def = "256", .min = 1, .max = 100000,
	  .offset = offsetof(struct sn_conf, max_in_flight),
	  .help = "messages received and not yet settled (the consumer's max_ack_pending; request mode answers busy beyond it)" },
	{ .name = "ack_wait", .type = WGGWD_OPT_DURATION, .def = "30s", .min = 100, .max = 3600000,
	  .offset = offsetof(struct sn_conf, ack_wait_ms),
	  .help = "jetstream: how long the server waits for an ACK before redelivering (after a crash: how soon the unsettled messages come back)" },
	{ .name = "nak_delay", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 0, .max = 3600000,
	  .offset = offsetof(struct sn_conf, nak_delay_ms),
	  .help = "jetstream: a message whose item failed (ERROR) is redelivered after this" },
	{ .name = "max_deliver", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = 1000000,
	  .offset = offsetof(struct sn_conf, max_deliver),
	  .help = "jetstream: deliveries of one message before the server gives up on it (0: no limit; errors are retried, poison is terminated anyway)" },
	{ .name = "heartbeat", .type = WGGWD_OPT_DURATION, .def = "5s", .min = 0, .max = 600000,
	  .offset = offsetof(struct sn_conf, heartbeat_ms),
	  .help = "jetstream: the consumer's idle heartbeat; after missed ones the source asks the server about the consumer and binds it again if it is gone (a new leader of the consumer delivers to the same subscription) (0: off)" },
	{ .name = "api_timeout", .type = WGGWD_OPT_DURATION, .def = "2s", .min = 50, .max = 60000,
	  .offset = offsetof(struct sn_conf, api_timeout_ms),
	  .help = "jetstream: how long one JetStream API request (binding the consumer, checking it after missed heartbeats) waits for its answer; a failed binding is retried with backoff" },
	{ .name = "failover_read", .type = WGGWD_OPT_BOOL, .def = "true",
	  .offset = offsetof(struct sn_conf, failover_read),
	  .help = "jetstream: while the consumer has no leader (after a reconnect or missed heartbeats, until it answers again), read the stream directly (direct get: any replica answers; needs the stream's allow_direct) and install from there; the consumer's later redeliveries are ACKed as stale" },
	{ .name = "drain_timeout", .type = WGGWD_OPT_DURATION, .def = "5s", .min = 0, .max = 600000,
	  .offset = offsetof(struct sn_conf, drain_timeout_ms),
	  .help = "at stop: how long items already in the pipeline may take to finish and be ACKed before the connection closes (the rest are redelivered)" },
	{ .name = "max_allowed_ips", .type = WGGWD_OPT_INT, .def = "10000", .min = 1, .max = 1000000,
	  .offset = offsetof(struct sn_conf, max_allowed_ips),
	  .help = "most allowed IPs one pushed peer may have; a message with more is terminated as poison (too_many_allowed_ips)" },
	{ .name = "allowed_prefixes", .type = WGGWD_OPT_LIST, .min = 0, .max = 256,
	  .offset = offsetof(struct sn_conf, allowed_prefixes), .check = wg_check_prefix,
	  .help = "required: every allowed IP of a pushed peer must lie inside one of these (10.90.0.0/16), else the message is terminated as poison (policy); [any]: no check (say so explicitly)" },
	{ .name = "allow_endpoints", .type = WGGWD_OPT_LIST, .min = 0, .max = 256,
	  .offset = offsetof(struct sn_conf, allow_endpoints), .check = wg_check_allowed_ip,
	  .help = "a pushed endpoint that is loopback, link-local, unspecified, multicast or one of the gateway's own addresses (at start) is terminated as poison (policy), unless inside one of these prefixes" },
	{ .name = "max_keys", .type = WGGWD_OPT_INT, .def = "65536", .min = 16, .max = 100000000,
	  .offset = offsetof(struct sn_conf, max_keys),
	  .help = "keys whose newest applied version this process remembers (about 100 bytes each; at least twice max_in_flight); beyond it the least recently pushed idle keys are forgotten, and a stale version for those is caught only by a store" },
	{ .name = "max_version", .type = WGGWD_OPT_INT, .def = "9007199254740991", .min = 1,
	  .max = INT64_MAX, .offset = offsetof(struct sn_conf, max_version),
	  .help = "highest version accepted (default 2^53-1, the largest integer exact in JSON everywhere); a message above it is terminated as poison (bad_version), so it cannot shadow every later version" },
	{ .name = "max_version_jump", .type = WGGWD_OPT_INT, .def = "0", .min = 0, .max = INT64_MAX,
	  .offset = offsetof(struct sn_conf, max_version_jump),
	  .help = "if set, a version more than this beyond the key's applied one is terminated as poison (version_jump); 0: no limit (only max_version)" },
	WGGWD_OPT_END
};
