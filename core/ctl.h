// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Internal to the core: what ctl.c, why.c, observe.c and http.c share. */
#ifndef WGGWD_CTL_H
#define WGGWD_CTL_H

#include <jansson.h>

#include "core.h"

/* One outcome of an item (why.c). */
struct why_ent {
	uint64_t real_ns;          /* when the item was seen (CLOCK_REALTIME) */
	uint8_t key[WGGWD_KEY_LEN];
	bool has_key;
	uint8_t verdict;
	uint8_t op;
	uint32_t reason;
	uint32_t flags;
	char pipeline[32];
	char stage[32];
	char detail[48];
	/* the item's timeline: us from the source's read (decoded, resolved,
	 * installed); the first handshake after its install, us from the wire
	 * (observe.c); the wire to the source's read; -1: not reached or not
	 * known */
	int32_t us[5];
};

/* The newest outcomes first, at most max: for key, or overall (NULL). */
size_t why_get(const uint8_t *key, struct why_ent *out, size_t max);
/* The first handshake of the install of key seen at rx_real_ns (observe.c). */
void why_handshake(const uint8_t *key, uint64_t rx_real_ns, uint64_t hs_real_ns);
json_t *why_ent_json(const struct why_ent *e);
const char *verdict_name(int verdict);

/* observe.c: every installer's peers, once (distinct installers). */
struct dump_job;
typedef void (*dump_job_cb)(void *arg, struct wggwd_inst *installer, const char *ifname,
			    int status, const struct wggwd_peer_state *peers, size_t n,
			    size_t stride);
/* cb once per installer, then done(arg). Returns how many installers. */
int observe_dump_all(dump_job_cb cb, void (*done)(void *arg), void *arg);
void observe_set_installer_gauges(struct wggwd_inst *installer, const char *ifname,
				  const struct wggwd_peer_state *peers, size_t n,
				  size_t stride);

/* http.c: /readyz's answer */
json_t *ready_json(bool *ready);

/* ctl_client.c: where the socket is when control_socket is not set */
#define CTL_DEFAULT_ROOT "/run/wggwd/ctl.sock"
const char *ctl_default_path(char *buf, size_t len);

int key_parse(const char *b64, uint8_t key[WGGWD_KEY_LEN]);
void key_format(const uint8_t key[WGGWD_KEY_LEN], char *b64, size_t len);

#endif
