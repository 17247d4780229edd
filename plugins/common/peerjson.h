// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The control plane's answer about one peer, as the resolvers receive it:
 * {"public_key", "allowed_ips": [...], "preshared_key"?, "persistent_keepalive"?, "ttl"?,
 *  "expires_at"? | "lease"?} (README: Control-plane answer) */
#ifndef WGGWD_PEERJSON_H
#define WGGWD_PEERJSON_H

#include <jansson.h>

#include "wgutil.h"

/* A resolver's `max_allowed_ips` option: its default, and its help. */
#define WG_MAX_ALLOWED_IPS_DEF "10000"
#define WG_MAX_ALLOWED_IPS_HELP \
	"most allowed IPs accepted in one answer (more: bad_answer)"

/*
 * Fill it->peer from the answer `root` about it->public_key: the allowed
 * IPs are appended with host->allowed_reserve (at most max_allowed of
 * them; 0: no limit). Returns WGGWD_R_NONE, or the reason it was refused
 * (WGGWD_R_BAD_ANSWER, WGGWD_R_KEY_MISMATCH, WGGWD_R_NO_MEMORY) with
 * *what saying what was wrong; then it->peer is left empty and wiped.
 */
uint32_t wg_peer_from_json(const struct wggwd_host *host, struct wggwd_inst *self,
			   struct wggwd_item *it, const json_t *root,
			   size_t max_allowed, const char **what);
/* Empty a peer (keys wiped, no allowed IPs), keeping what the core owns. */
void wg_peer_clear(struct wggwd_peer *p);

/* An RFC 3339 date-time ("2026-12-02T10:00:00Z", "...T11:00:00.5+01:00";
 * fractions of a second are dropped) as Unix seconds: 0, or -EINVAL. */
int wg_rfc3339_parse(const char *s, int64_t *t);

/* The longest `lease` accepted, in seconds (ten years). */
#define WG_LEASE_MAX 315360000

/*
 * A lease in a peer config (an answer, a pushed config): `expires_at`
 * (RFC 3339) or `lease` (seconds from now_s, 1 to WG_LEASE_MAX), at most
 * one of them; null or absent: none. Sets p->expires_at (Unix s) and
 * WGGWD_PEER_HAS_EXPIRES. Returns NULL, or what is wrong.
 */
const char *wg_lease_from_json(struct wggwd_peer *p, const json_t *root, int64_t now_s);

/* Wipe jansson's copy of the preshared key, if the answer had one. */
void wg_peer_json_wipe(json_t *root);

/* What a control plane said about one key. */
enum wg_answer {
	WG_ANSWER_PEER,      /* an object: give it to wg_peer_from_json   */
	WG_ANSWER_NOT_FOUND, /* null, or {"error": "not_found"}          */
	WG_ANSWER_ERROR,     /* {"error": "<anything else>"}: *what says   */
	WG_ANSWER_BAD,       /* neither                                    */
	WG_ANSWER_MISSING,   /* a batch answer without the key             */
};

/* Which of those one answer `v` is (*what: the error's text, or why bad). */
enum wg_answer wg_answer_kind(const json_t *v, const char **what);

/*
 * A batch answer (README: Control-plane answer, Batch): a JSON object
 * with one member per key asked, named by the key in base64 (as asked),
 * whose value is a single answer or a not-found marker. The kind of the
 * member for `key` (MISSING if there is none), and in *entry the member.
 * A member about a key not asked is never looked at.
 */
enum wg_answer wg_batch_answer(const json_t *root, const uint8_t key[WGGWD_KEY_LEN],
			       const json_t **entry, const char **what);

/* Wipe jansson's copies of every preshared key in a batch answer. */
void wg_batch_json_wipe(json_t *root);

#endif
