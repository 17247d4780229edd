// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The control plane's answer about one peer, as the resolvers receive it:
 * {"public_key", "allowed_ips": [...], "preshared_key"?, "persistent_keepalive"?, "ttl"?} */
#ifndef WGGWD_PEERJSON_H
#define WGGWD_PEERJSON_H

#include <jansson.h>

#include "wgutil.h"

/* Fill p (zeroed first) from root. NULL if fine, else what is wrong. */
const char *wg_peer_from_json(const json_t *root, struct wggwd_peer *p);
/* The index of the first allowed IP inside none of the prefixes, or -1. */
int wg_peer_outside(const struct wggwd_peer *p, const struct wggwd_allowed_ip *prefixes,
		    size_t n);
/* Wipe jansson's copy of the preshared key, if the answer had one. */
void wg_peer_json_wipe(json_t *root);

#endif
