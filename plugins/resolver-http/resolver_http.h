// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* resolver-http's parts: what resolver_http.c (options, protections,
 * answers, the stage) and transfer.c (libcurl's multi interface on the
 * loop) share. */
#ifndef WGGWD_RESOLVER_HTTP_H
#define WGGWD_RESOLVER_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <uv.h>

#include "peerpolicy.h"
#include "wgutil.h"

struct conf {
	char *url;
	char *token_file;
	char *ca_file;
	bool tls_verify;
	int64_t timeout_ms;
	int64_t max_concurrency;
	int64_t max_queue;
	struct wggwd_list allowed_prefixes;
	int64_t rate;
	int64_t burst;
	int64_t source_rate;
	int64_t source_burst;
	int64_t backoff_ms;
	int64_t backoff_max_ms;
	int64_t breaker_failures;
	int64_t breaker_cooldown_ms;
	uint64_t max_body;
	int64_t max_allowed_ips;
	bool batch;
	char *batch_url;
	int64_t batch_window_ms;
	int64_t batch_max;
	int64_t returning_rate;
	int64_t returning_burst;
	int64_t source_prefix_v4;
	int64_t source_prefix_v6;
};

enum err {
	E_HTTP_STATUS, E_TIMEOUT, E_BAD_BODY, E_KEY_MISMATCH, E_POLICY, E_CONNECT, E_TLS,
	E_REMOTE, E_MAX
};

enum {
	C_REQUESTS, C_OK, C_NOT_FOUND, C_BUDGET, C_BACKOFF, C_BREAKER_REFUSED, C_BREAKER_OPENS,
	C_BREAKER_CLOSES, C_OVERLOADED, C_QUEUE_EXPIRED, C_RETURNING, C_RETURNING_BUDGET,
	C_RETURNING_OVERLOADED, C_BATCHES, C_BATCH_KEYS, C_BATCH_MISSING, C_MAX
};
/* Lookup classes: keys a store knew before (WGGWD_ITEM_RETURNING) go
 * first and have a budget of their own. */
enum { Q_RETURNING, Q_FRESH, Q_MAX };
enum breaker { B_CLOSED, B_OPEN, B_HALF_OPEN };

#define BACKOFF_SLOTS 4096
#define BACKOFF_PROBE 8
#define SOURCE_SLOTS 16384
#define TOKEN_MAX 4096

struct bucket {
	double tokens;
	uint64_t last_ms; /* 0: never used (full) */
};

struct backoff {
	uint8_t key[WGGWD_KEY_LEN];
	uint64_t until_ms;
	uint32_t failures;
	bool used;
};

struct ctx;

/* One socket curl wants watched. */
struct sock {
	uv_poll_t poll;
	struct ctx *c;
	curl_socket_t fd;
	struct sock *prev, *next;
};

/* A key of a request, and its verdict once judged. */
struct rslot {
	struct wggwd_item *it;
	int verdict;
};

/* One request: gathering keys (batch mode), waiting in a FIFO, or a
 * transfer. One key (GET) unless batch is on. */
struct req {
	struct ctx *c;
	struct rslot *s;      /* ns of scap; &one when scap is 1 */
	size_t ns, scap;
	struct rslot one;
	int q;                /* Q_* */
	CURL *easy;
	uint8_t *body;
	size_t len, cap;
	char *post;           /* batch: the JSON list of keys */
	bool probe;
	bool too_big;
	uint64_t queued_ms;
	struct req *prev, *next;
	char errbuf[CURL_ERROR_SIZE];
};

struct reqlist {
	struct req *head, *tail;
	size_t n;
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uv_loop_t *loop;

	CURLM *multi;
	uv_timer_t timer;
	bool timer_init;
	struct sock *socks;
	unsigned open_handles;
	bool stopping, stopped;

	struct curl_slist *headers; /* wiped: may hold the token */
	char *batch_url;                /* batch mode: where keys are POSTed */
	struct wg_policy pol;           /* allowed_prefixes */

	struct reqlist queue[Q_MAX], running;
	struct req *open[Q_MAX];        /* batch mode: gathering keys */
	size_t waiting[Q_MAX];          /* keys not yet sent */
	struct wggwd_timer *window;     /* batch mode: sends what gathered */
	bool window_armed;

	struct bucket global, returning;
	struct bucket *sources;
	struct backoff *backoff;

	enum breaker breaker;
	int64_t fails_in_row;
	uint64_t open_until_ms;
	bool probe_out;

	uint64_t *c[C_MAX];
	uint64_t *err[E_MAX];
	int64_t *in_flight, *queued, *breaker_state;
};

static inline uint64_t mono_ms(struct ctx *c)
{
	return c->host->now_ns() / 1000000;
}

/* transfer.c */
void reqlist_add(struct reqlist *l, struct req *r);
void reqlist_del(struct reqlist *l, struct req *r);
void req_free(struct req *r);
/* A request for up to scap keys of class q (NULL: no memory). */
struct req *req_new(struct ctx *c, size_t scap, int q);
/* Complete every key of r with its verdict (or with v, if v >= 0, and
 * reason `why`), then free r. r must be in no list. */
void req_complete(struct ctx *c, struct req *r, int v, uint32_t why);
/* Start what waits in the FIFOs while there is room, returning keys
 * first (may complete items). */
void transfer_pump(struct ctx *c);
void transfer_sock_close(struct ctx *c, struct sock *sk);
/* libuv close callback of the timer and the sockets' polls. */
void transfer_on_closed(uv_handle_t *h);
/* CURLMOPT_SOCKETFUNCTION and CURLMOPT_TIMERFUNCTION, data: the ctx. */
int transfer_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp);
int transfer_on_curl_timer(CURLM *multi, long timeout_ms, void *userp);
/* CURLOPT_WRITEFUNCTION, data: the req: appends to r->body (at most max_body). */
size_t transfer_on_body(char *data, size_t size, size_t n, void *arg);

/* resolver_http.c: a finished transfer's verdicts (and the items' reasons). */
void rh_judge(struct ctx *c, struct req *r, CURLcode res);

#endif
