// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* source-wsock's parts: what source_wsock.c (the stage), conn.c (the
 * connections: WebSocket and UDP relay) and upgrade.c (the HTTP upgrade
 * request) share. */
#ifndef WGGWD_WSOCK_H
#define WGGWD_WSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <http_parser.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "wgutil.h"

#define INIT_LEN 148
#define HDR_MAX 8192            /* bytes of an upgrade request          */
#define URL_MAX 512
#define VAL_MAX 1024            /* a header value we look at            */
#define FIELD_MAX 32            /* a header name we look at             */
#define TOKEN_MAX 512
#define RBUF_LEN 65536
/* What a queued frame costs beyond its payload, for the queue budget:
 * wslay's message and queue entry, or our write request (with malloc's
 * overhead). A client chooses how small its frames are, so each one is
 * charged at least this. */
#define MSG_COST 128
#define WREQ_COST (sizeof(struct wreq) + 32)
#define FRAG_MAX 32             /* frames of one data message           */
#define CLOSE_GRACE_MS 1000     /* a closing WebSocket's frames get out */

#ifndef container_of
#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#endif

struct conf {
	struct sockaddr_storage listen;
	char *path;
	struct sockaddr_storage wireguard;
	int64_t max_conns;
	int64_t max_conns_per_ip;
	uint64_t max_message;
	uint64_t queue;
	uint64_t control_queue;
	int64_t idle_ms;
	int64_t handshake_ms;
	int64_t max_held;
	char *token_file;
	bool remove_on_close;
};

/* headers of the upgrade request (struct conn.seen) */
enum {
	H_HOST = 1 << 0,
	H_UPGRADE = 1 << 1,
	H_CONNECTION = 1 << 2,
	H_VERSION = 1 << 3,
	H_KEY = 1 << 4,
	H_AUTH = 1 << 5,
	H_BAD = 1 << 6,         /* a header we check is malformed or twice */
	H_BADVERSION = 1 << 7,
};

struct ctx;

struct conn {
	struct conn *prev, *next;
	struct ctx *c;
	unsigned refs;          /* handles open + items in the pipeline */
	uv_tcp_t tcp;
	uv_udp_t udp;
	uv_shutdown_t shut;
	bool listed, closing, upgraded, udp_open, close_after_write, has_key;
	union wggwd_sockaddr peer, relay;
	uint64_t t_start;
	uint64_t last_rx;       /* data, or an answer to our ping       */
	uint64_t closing_since; /* when the close frame was queued      */
	bool close_queued, ping_out, overflow;
	unsigned held;
	unsigned frags;         /* frames of the data message so far    */

	/* the upgrade request */
	http_parser hp;
	size_t hdr_bytes;
	unsigned seen;
	bool in_value, field_long, value_long, headers_done;
	char url[URL_MAX];
	size_t url_len;
	char field[FIELD_MAX];
	size_t field_len;
	char value[VAL_MAX];
	size_t value_len;
	char key[32];
	char auth[TOKEN_MAX + 16];

	/* the WebSocket */
	wslay_event_context_ptr ws;
	const uint8_t *in;      /* what read_cb got, for ws_recv_cb */
	size_t in_len;
	size_t wq_bytes;        /* bytes in uv_write requests          */
	size_t wq_reqs;         /* ... and how many                     */
	uint8_t peer_key[WGGWD_KEY_LEN];
};

struct wreq {
	uv_write_t req;
	struct conn *k;
	size_t len;
	uint8_t data[];
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	union wggwd_sockaddr wg;
	uv_tcp_t listener;
	bool listening, stopping;
	unsigned handles;       /* open libuv handles; stopped() at 0  */
	struct conn *conns;
	unsigned n_conns;
	struct wggwd_timer *timer;
	uint8_t token[TOKEN_MAX];
	size_t token_len;
	/* what upgrade.c compares: keyed BLAKE2b digests of the token and of
	 * what a client sends (fixed length, constant time) */
	uint8_t token_key[32];
	uint8_t token_hash[32];
	bool token_hashed;
	uint8_t rbuf[RBUF_LEN];
	bool rbuf_busy;
	uint64_t *accepted, *upgraded, *rejected_limit, *http_400, *http_401, *http_404, *http_426;
	uint64_t *closed_text, *closed_protocol, *closed_oversize, *closed_idle, *closed_overflow;
	uint64_t *initiations, *resent, *held_dropped, *drop_held;
	uint64_t *forwarded_up, *forwarded_down, *drop_slow, *drop_udp, *removed_on_close;
	int64_t *g_conns;
};

/* conn.c */
void wsock_on_connection(uv_stream_t *srv, int status);
void wsock_on_timer(void *arg);
void conn_put(struct conn *k);
void conn_close(struct conn *k);
int conn_write(struct conn *k, const void *data, size_t len);
/* Bytes (with each frame's overhead) queued toward the client. */
size_t conn_queued(const struct conn *k);
/* The UDP socket toward WireGuard and the WebSocket context: 0 or <0. */
int conn_relay_open(struct conn *k);
int conn_ws_open(struct conn *k);
/* Bytes of an open WebSocket. */
void conn_ws_feed(struct conn *k, const uint8_t *p, size_t len);

/* upgrade.c */
/* Bytes of the upgrade request; answers it once its headers are in. */
void upgrade_feed(struct conn *k, const uint8_t *p, size_t len);
/* Answers the request with an error (400, 401, 404, 426, 503) and closes. */
void upgrade_reply(struct conn *k, int code);

#endif
