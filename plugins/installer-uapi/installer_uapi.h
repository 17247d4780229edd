// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* installer-uapi's state, shared by its two files: installer_uapi.c (the
 * backend: the connection and its queue) and uapi_text.c (the text
 * protocol: requests, replies, the blocking get at start). */
#ifndef WGGWD_INSTALLER_UAPI_H
#define WGGWD_INSTALLER_UAPI_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "wgengine.h"
#include "wgutil.h"

struct conf {
	struct wge_conf e; /* first: the engine's options */
	char *socket_dir;
	uint64_t max_reply;
};

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
#define RBUF_MIN (64u << 10)     /* reply buffer: first size, room per read */
#define RBUF_KEEP (1u << 20)     /* kept between replies up to this size */

/* ------------------------------------------------------------ structures */

/* A growable text buffer for requests; they can hold a preshared key, so
 * every copy is wiped before it is freed. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

struct ctx;

struct req {
	struct req *next;
	struct ctx *c;
	uv_write_t wr;
	bool writing;   /* uv_write pending: the text must stay */
	bool finished;  /* its outcome was delivered */
	struct sbuf text;
	struct wge_op *op; /* NULL: a dump */
	struct req *members; /* sent in this one's set, after its own op */
	bool alone;          /* never batched (a batch that failed, split) */
};

/* A set carries the ops queued behind it (each its own request to the
 * engine) up to these bounds: one round trip for many peers. */
#define BATCH_MAX_OPS 256
#define BATCH_MAX_BYTES (256u << 10)

struct conn {
	uv_pipe_t pipe;
	uv_connect_t creq;
	struct ctx *c;
};

struct ctx {
	const struct wge_env *env;
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	uv_loop_t *loop;
	char path[SUN_PATH_MAX];

	/* the connection and its queue */
	struct conn *conn;
	bool connected, ever_opened, down_logged;
	struct req *q_head, **q_tail, *inflight;
	char *rbuf;                     /* secret: a get holds the private key */
	size_t rlen, rcap;
	size_t get_hint;                /* size of the last get reply */
	struct wggwd_peer_state *dumped; /* the last dump's peers: the engine
	                                * judges them until the next dump */
	uv_timer_t rtimer;
	unsigned handles;
	bool running, io_closed;

	uint64_t *uapi_errors, *reconnects;
	uint64_t *batched, *batch_splits; /* sets carrying several ops; refused ones split */
};

/* uapi_text.c */
int secret_grow(char **p, size_t len, size_t cap, size_t ncap);
void sb_printf(struct sbuf *b, const char *fmt, ...) WGGWD_PRINTF(2, 3);
void sb_free(struct sbuf *b);
const char *uapi_strerror(int err);
int reply_status(const char *s, size_t len);
int parse_get(const char *s, size_t len, struct wggwd_device *dev,
	      struct wggwd_peer_state **peersp, size_t *np, const struct wge_env *fill);
void render(struct sbuf *t, const struct wge_op *op);
/* Append the entries of another rendered set to t (one rendered set, or a
 * batch so far): one set of both. */
void render_join(struct sbuf *t, const struct sbuf *more);
int get_device_blocking(struct ctx *c, struct wggwd_device *dev, size_t *npeers);

#endif
