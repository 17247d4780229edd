// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Small helpers shared by the bundled plugins (linked statically). */
#ifndef WGGWD_WGUTIL_H
#define WGGWD_WGUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <wggwd/plugin.h>

#define WG_KEY_B64_LEN 45 /* 44 characters and a NUL */
#define WG_KEY_HEX_LEN 65

int wg_key_from_b64(uint8_t key[32], const char *b64);
void wg_key_to_b64(char out[WG_KEY_B64_LEN], const uint8_t key[32]);
int wg_key_from_hex(uint8_t key[32], const char *hex);
void wg_key_to_hex(char out[WG_KEY_HEX_LEN], const uint8_t key[32]);
bool wg_key_is_zero(const uint8_t key[32]);

/* "10.0.0.2/32", "fd00::2/128"; a bare address gets the full prefix */
int wg_allowed_ip_parse(struct wggwd_allowed_ip *ip, const char *s);
void wg_allowed_ip_str(const struct wggwd_allowed_ip *ip, char *buf, size_t len);
/* is `ip` inside `net`? */
bool wg_allowed_ip_within(const struct wggwd_allowed_ip *ip,
			  const struct wggwd_allowed_ip *net);

/* "1.2.3.4:5" or "[v6]:5" (WireGuard's endpoint syntax) */
void wg_sockaddr_str(const union wggwd_sockaddr *a, char *buf, size_t len);
int wg_sockaddr_parse(union wggwd_sockaddr *a, const char *s);
bool wg_sockaddr_equal(const union wggwd_sockaddr *a, const union wggwd_sockaddr *b);

/* Option checkers for option tables (struct wggwd_opt.check). */
const char *wg_check_key_b64(const void *field, char *buf, size_t len);
const char *wg_check_allowed_ip(const void *field, char *buf, size_t len);
/* an interface name as the kernel takes it (dev_valid_name): 1 to 15
 * characters, not "." or "..", no '/', ':' or white space */
const char *wg_check_ifname(const void *field, char *buf, size_t len);

/* An RFC 3339 time ("2026-12-02T10:00:00Z", "...T11:00:00.5+01:00") as
 * Unix seconds (a fraction is dropped). 0, or -EINVAL. */
int wg_time_parse(const char *s, int64_t *unix_s);
/* An option checker for it. */
const char *wg_check_time(const void *field, char *buf, size_t len);

/* Read a base64 WireGuard key from a secret file through the host. */
int wg_key_from_secret_file(const struct wggwd_host *host, struct wggwd_inst *self,
			    const char *path, uint8_t key[32]);

#endif
