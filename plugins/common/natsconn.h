// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * One NATS connection on the daemon's loop, shared by source-nats and
 * resolver-nats (a static library linked into each: plugins stay one file).
 *
 * cnats reads and writes its socket from our libuv loop (its libuv
 * adapter), but it still calls back from threads of its own: message
 * delivery (one thread per async subscription; nc_sub_poll has none),
 * connection events (its async-callback thread) and reconnects.
 * Everything those threads hand us goes through a `link`: a refcounted
 * mailbox they push events into and that one host->post() per batch
 * drains on the loop. The link outlives the plugin's context until
 * cnats has said its last word (the closed callback, each subscription's
 * completion), so a late callback never touches freed memory.
 */
#ifndef WGGWD_NATSCONN_H
#define WGGWD_NATSCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>
#include <uv.h>

#include <wggwd/plugin.h>

struct nc_conf {
	struct wggwd_list servers;
	char *token_file;
	char *creds_file;
	char *nkey;
	char *nkey_seed_file;
	char *tls_ca_file;
	char *tls_cert_file;
	char *tls_key_file;
	char *name;
	int64_t connect_timeout_ms;
	int64_t reconnect_wait_ms;
	int64_t reconnect_wait_max_ms;
	int64_t ping_interval_ms;
	uint64_t reconnect_buf;
};

const char *nc_check_server(const void *field, char *buf, size_t len);
/* Cross-field checks of the connection options (for validate). */
const char *nc_validate(const struct nc_conf *cf, const char **option);

/* The connection options, for an option table whose conf struct T holds
 * a struct nc_conf named F. */
#define NC_OPTS(T, F)                                                              \
	{ .name = "servers", .type = WGGWD_OPT_LIST, .flags = WGGWD_OPT_REQUIRED,      \
	  .min = 1, .max = 64, .offset = offsetof(T, F.servers),                       \
	  .check = nc_check_server,                                                    \
	  .help = "NATS server URLs (nats://host:4222, tls://host:4222); tried in order at connect, all of them on reconnect" }, \
	{ .name = "token_file", .type = WGGWD_OPT_SECRET_FILE,                         \
	  .offset = offsetof(T, F.token_file),                                         \
	  .help = "file holding an authentication token (mode 0600; never logged)" }, \
	{ .name = "creds_file", .type = WGGWD_OPT_SECRET_FILE,                         \
	  .offset = offsetof(T, F.creds_file),                                         \
	  .help = "a .creds file (user JWT and NKey seed) for decentralised auth (mode 0600; read once at start, kept in memory)" }, \
	{ .name = "nkey", .type = WGGWD_OPT_STR,                                       \
	  .offset = offsetof(T, F.nkey),                                               \
	  .help = "the public NKey (U...) that nkey_seed_file's seed belongs to" },   \
	{ .name = "nkey_seed_file", .type = WGGWD_OPT_SECRET_FILE,                     \
	  .offset = offsetof(T, F.nkey_seed_file),                                     \
	  .help = "file holding the NKey seed (SU...) that signs the server's nonce (mode 0600; read once at start); needs nkey" }, \
	{ .name = "tls_ca_file", .type = WGGWD_OPT_PATH,                               \
	  .offset = offsetof(T, F.tls_ca_file),                                        \
	  .help = "PEM CA(s) for the servers' certificates; setting it turns TLS on" }, \
	{ .name = "tls_cert_file", .type = WGGWD_OPT_PATH,                             \
	  .offset = offsetof(T, F.tls_cert_file),                                      \
	  .help = "client certificate (PEM) for mutual TLS; needs tls_key_file" },    \
	{ .name = "tls_key_file", .type = WGGWD_OPT_SECRET_FILE,                       \
	  .offset = offsetof(T, F.tls_key_file),                                       \
	  .help = "client private key (PEM, mode 0600, at most 4 KiB: checked like every secret) for mutual TLS; needs tls_cert_file" },             \
	{ .name = "name", .type = WGGWD_OPT_STR, .def = "wggwd",                       \
	  .offset = offsetof(T, F.name),                                               \
	  .help = "connection name shown by the server's monitoring" },               \
	{ .name = "connect_timeout", .type = WGGWD_OPT_DURATION, .def = "2s",          \
	  .min = 10, .max = 60000, .offset = offsetof(T, F.connect_timeout_ms),        \
	  .help = "per-server TCP/TLS connect timeout (connects run off the loop, on the thread pool)" }, \
	{ .name = "reconnect_wait", .type = WGGWD_OPT_DURATION, .def = "250ms",        \
	  .min = 10, .max = 600000, .offset = offsetof(T, F.reconnect_wait_ms),        \
	  .help = "first pause before reconnecting; doubles per failed round up to reconnect_wait_max (with jitter); never gives up" }, \
	{ .name = "reconnect_wait_max", .type = WGGWD_OPT_DURATION, .def = "10s",      \
	  .min = 10, .max = 3600000, .offset = offsetof(T, F.reconnect_wait_max_ms),   \
	  .help = "longest pause between reconnect attempts" },                       \
	{ .name = "ping_interval", .type = WGGWD_OPT_DURATION, .def = "20s",           \
	  .min = 100, .max = 3600000, .offset = offsetof(T, F.ping_interval_ms),       \
	  .help = "client PINGs; two unanswered ones declare the connection dead" },  \
	{ .name = "reconnect_buf", .type = WGGWD_OPT_SIZE, .def = "8MiB",              \
	  .min = 0, .max = 1LL << 30, .offset = offsetof(T, F.reconnect_buf),          \
	  .help = "what is published while reconnecting (ACKs, replies, lookups) waits in this buffer" }

struct nc;

struct nc_handlers {
	/* the first connection is up (on the loop) */
	void (*connected)(void *owner);
	/* a message of a subscription made with nc_msg_cb; the handler owns
	 * it (free it with nc_msg_free) */
	void (*msg)(void *owner, natsMsg *m);
	void (*disconnected)(void *owner);
	void (*reconnected)(void *owner);
	/* an asynchronous error about a subscription (slow consumer, a
	 * missed heartbeat, permissions) */
	void (*async_error)(void *owner, natsStatus s, bool missed_heartbeat);
};

int nc_create(struct nc **np, const struct wggwd_host *host, struct wggwd_inst *self,
	      const struct nc_conf *conf, const struct nc_handlers *h, void *owner);
/* Read the secrets, build the options and start connecting on the thread
 * pool (handlers->connected once up); a failed connect is retried with
 * backoff (not a start failure). 0 or -errno. */
int nc_start(struct nc *n);
/* Close the connection (subscriptions first: the caller destroys its
 * own), then done(owner) from a close callback. */
void nc_stop(struct nc *n, void (*done)(void *owner));
/* The usual end of a plugin's stop: close its timer (whose data it
 * takes over), then nc_stop, then host->stopped(self); *timer_open is
 * cleared once the timer is closed. */
void nc_stop_host(struct nc *n, uv_timer_t *timer, bool *timer_open);
void nc_destroy(struct nc *n);

/* The connection, or NULL while there is none (never connected yet). */
natsConnection *nc_conn(struct nc *n);
bool nc_is_connected(struct nc *n);

/* The message handler and closure to subscribe with: messages arrive on
 * the loop through handlers->msg. Call nc_sub_track() once the
 * subscription exists (from any thread). */
void nc_msg_cb(natsConnection *conn, natsSubscription *sub, natsMsg *m, void *closure);
void *nc_closure(struct nc *n);
void nc_sub_track(struct nc *n, natsSubscription *sub);

/* A synchronous subscription (natsConnection_SubscribeSync,
 * js_SubscribeSync) read on the loop right after the adapter's reads:
 * handlers->msg gets its messages with no delivery thread in between (no
 * wake-up of a thread per message). Loop thread, after nc_start: 0 or
 * -errno. nc_sub_unpoll before destroying it (also one never polled): it
 * wipes and frees what is still queued. */
int nc_sub_poll(struct nc *n, natsSubscription *sub);
void nc_sub_unpoll(struct nc *n, natsSubscription *sub);

/* Flush what was sent (a SUB, say) off the loop: cb(owner, ok) on the
 * loop once the server has answered a PING (not called once stopping).
 * 0 or -errno. */
int nc_flush(struct nc *n, void (*cb)(void *owner, bool ok));

/* Wipe (payloads may carry preshared keys) and destroy. */
void nc_msg_free(natsMsg *m);
/* The same on the loop thread, wiped at once but destroyed in batches
 * (up to 64 messages or 256 KiB, or at the stop): cnats hands each
 * destroyed message to its GC thread, one wake-up per message when they
 * come one by one. */
void nc_msg_release(struct nc *n, natsMsg *m);

/* "nats: <text>" of the last error of this thread, for logs */
const char *nc_err(natsStatus s);

#endif
