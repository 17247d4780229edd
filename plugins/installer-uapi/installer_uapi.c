// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * installer-uapi: the install engine (plugins/common/wgengine.h) over the
 * text protocol of a userspace WireGuard interface (wireguard-go,
 * boringtun) on <socket_dir>/<interface>.sock (PROTOCOL.md (f)).
 *
 * One persistent connection carries a FIFO of requests, ONE at a time:
 * wireguard-go reads a set through a bufio.Scanner of its own, which reads
 * ahead and loses whatever was pipelined behind it, and on an error it
 * returns without reading the rest of the request. So: the next request
 * leaves when the previous reply is in, and after any errno != 0 the
 * connection is closed and a fresh one opened. One engine request (all its
 * peer entries) is one set.
 */
#include "installer_uapi.h"

static const struct wggwd_opt opts[] = {
	WGE_OPTS,
	{ .name = "socket_dir", .type = WGGWD_OPT_PATH, .def = "/var/run/wireguard",
	  .offset = offsetof(struct conf, socket_dir),
	  .help = "where wireguard-go puts its UAPI sockets (<socket_dir>/<interface>.sock)" },
	{ .name = "max_reply", .type = WGGWD_OPT_SIZE, .def = "256MiB", .min = 256 * 1024,
	  .max = 4LL << 30, .offset = offsetof(struct conf, max_reply),
	  .help = "largest reply read from the socket (a dump of every peer: about 400 bytes a peer, 30 more per allowed IP); a longer one is refused and the connection closed, so the buffer (which holds the private key) stays bounded" },
	WGGWD_OPT_END
};

static void kick(struct ctx *c);
static void conn_fail(struct ctx *c, int err);

/* --------------------------------------------------------- requests */

static struct req *req_new(struct ctx *c, struct wge_op *op)
{
	struct req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->c = c;
	r->op = op;
	r->wr.data = r;
	return r;
}

static void req_free(struct req *r)
{
	sb_free(&r->text);
	free(r);
}

/* Free once it is finished and no write still points at it. */
static void req_release(struct req *r)
{
	if (r->finished && !r->writing)
		req_free(r);
}

static void req_what(const struct req *r, char *buf, size_t len)
{
	if (r->op)
		wge_op_what(r->op, buf, len);
	else
		snprintf(buf, len, "dump of the interface");
}

static void log_failure(struct ctx *c, const struct req *r, int status, bool from_iface)
{
	char what[128];

	req_what(r, what, sizeof(what));
	if (from_iface)
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "%s on %s failed: errno=%d (%s); reconnecting (a set is not atomic)",
			     what, c->conf->e.interface, status, uapi_strerror(status));
	else if (status != -ECANCELED)
		/* while the interface is known to be away, once was enough */
		c->host->log(c->self, c->down_logged ? WGGWD_LOG_DEBUG : WGGWD_LOG_WARN,
			     "%s on %s failed: %s", what, c->conf->e.interface, strerror(-status));
}

static void enqueue(struct ctx *c, struct req *r)
{
	r->next = NULL;
	*c->q_tail = r;
	c->q_tail = &r->next;
	kick(c);
}

static void finish_dump(struct ctx *c, struct req *r, int status, bool from_iface,
			const char *reply, size_t len)
{
	struct wggwd_peer_state *peers = NULL;
	size_t n = 0;

	free(c->dumped); /* judged by now: this is the next dump */
	c->dumped = NULL;
	if (!status && reply) {
		status = parse_get(reply, len, NULL, &peers, &n, NULL);
		if (status == -EPROTO) {
			(*c->uapi_errors)++;
			c->host->log(c->self, WGGWD_LOG_ERROR, "dump of %s: a line could not be parsed",
				     c->conf->e.interface);
		}
	}
	if (status)
		log_failure(c, r, status, from_iface);
	c->dumped = peers;
	wge_dump_done(c->env, status, peers, n);
}

static bool batch_split(struct ctx *c, struct req *r);

/* Deliver a request's outcome, once. `reply` is set when the status came
 * from the interface (errno=N), NULL for transport errors. A batch's
 * outcome is each member's; a batch the interface refused is sent again
 * one op at a time, so that the error reaches the op that caused it (the
 * entries before it are set again: a set is idempotent). */
static void req_finish(struct ctx *c, struct req *r, int status, const char *reply, size_t len)
{
	struct req *m, *ms;

	if (r->finished)
		return;
	if (status && reply && r->members && batch_split(c, r))
		return;
	r->finished = true;
	ms = r->members; /* detached first: the callbacks may queue and send more */
	r->members = NULL;
	if (!r->op) {
		finish_dump(c, r, status, reply != NULL, reply, len);
		return;
	}
	if (status)
		log_failure(c, r, status, reply != NULL);
	r->op->err = status;
	wge_op_done(c->env, r->op);
	r->op = NULL;
	while ((m = ms)) { /* in the order they were sent */
		ms = m->next;
		m->finished = true;
		m->op->err = status;
		wge_op_done(c->env, m->op);
		req_free(m);
	}
}

static void fail_queue(struct ctx *c, int err)
{
	struct req *q = c->q_head, *r;

	c->q_head = NULL;
	c->q_tail = &c->q_head;
	while ((r = q)) {
		q = r->next;
		r->next = NULL;
		req_finish(c, r, err, NULL, 0);
		req_release(r);
	}
}

/* ------------------------------------------------------- the connection */

static void on_handle_closed(uv_handle_t *h)
{
	struct ctx *c = h->data;

	if (--c->handles == 0 && c->io_closed)
		wge_closed(c->env);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *conn = h->data;
	struct ctx *c = conn->c;

	free(conn);
	if (--c->handles == 0 && c->io_closed)
		wge_closed(c->env);
}

static void rbuf_reset(struct ctx *c)
{
	if (c->rbuf)
		sodium_memzero(c->rbuf, c->rlen);
	c->rlen = 0;
	if (c->rcap > RBUF_KEEP) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rcap = 0;
	}
}

/* Close the connection (not the requests: see conn_fail). */
static void conn_drop(struct ctx *c)
{
	struct conn *conn = c->conn;

	if (!conn)
		return;
	c->conn = NULL;
	c->connected = false;
	uv_timer_stop(&c->rtimer);
	uv_close((uv_handle_t *)&conn->pipe, on_conn_closed);
	rbuf_reset(c);
}

/* The connection broke (I/O error, timeout): fail what was on it, and
 * open a new one if more is queued. */
static void conn_fail(struct ctx *c, int err)
{
	struct req *r = c->inflight;

	c->inflight = NULL;
	conn_drop(c);
	if (r) {
		req_finish(c, r, err, NULL, 0);
		req_release(r);
	}
	kick(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_connect(uv_connect_t *cr, int status)
{
	struct conn *conn = cr->data;
	struct ctx *c = conn->c;
	int ret;

	if (conn != c->conn)
		return; /* closed meanwhile */
	if (status < 0) {
		(*c->uapi_errors)++;
		if (!c->down_logged)
			c->host->log(c->self, WGGWD_LOG_ERROR,
				     "cannot connect to %s: %s (is wireguard-go running for %s?)",
				     c->path, uv_strerror(status), c->conf->e.interface);
		c->down_logged = true;
		wge_lost(c->env);
		conn_drop(c);
		fail_queue(c, status);
		return;
	}
	if (c->down_logged)
		c->host->log(c->self, WGGWD_LOG_INFO, "connected to %s again", c->path);
	c->down_logged = false;
	c->connected = true;
	ret = uv_read_start((uv_stream_t *)&conn->pipe, on_alloc, on_read);
	if (ret) {
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "reading %s: %s", c->path, uv_strerror(ret));
		conn_fail(c, ret);
		return;
	}
	kick(c);
}

/* Room for `need` more bytes of reply, never past max_reply. */
static int rbuf_reserve(struct ctx *c, size_t need)
{
	size_t cap, max = c->conf->max_reply;

	if (c->rbuf && c->rcap - c->rlen >= need)
		return 0;
	cap = c->rcap ? c->rcap : RBUF_MIN;
	/* a dump is about as large as the last one: no re-growing */
	if (!c->rbuf && c->inflight && !c->inflight->op)
		while (cap < c->get_hint + need && cap < max)
			cap *= 2;
	while (cap - c->rlen < need && cap < max)
		cap *= 2;
	if (cap > max)
		cap = max;
	if (cap < c->rlen || cap - c->rlen < need)
		return -EMSGSIZE;
	if (secret_grow(&c->rbuf, c->rlen, c->rcap, cap))
		return -ENOMEM;
	c->rcap = cap;
	return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *conn = h->data;
	struct ctx *c = conn->c;

	(void)hint;
	if (rbuf_reserve(c, RBUF_MIN / 4)) {
		*buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
		return;
	}
	*buf = uv_buf_init(c->rbuf + c->rlen, c->rcap - c->rlen);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *conn = s->data;
	struct ctx *c = conn->c;
	size_t from, len, cap;
	struct req *r;
	char *reply;
	const char *end;
	int status;

	(void)buf;
	if (conn != c->conn || nread == 0)
		return;
	if (nread < 0) {
		(*c->uapi_errors)++;
		if (nread == UV_EOF) {
			c->host->log(c->self, WGGWD_LOG_WARN, "%s closed the connection%s", c->path,
				     c->inflight ? " before replying" : "");
			wge_lost(c->env);
		}
		else if (nread == UV_ENOBUFS)
			c->host->log_limited(c->self, WGGWD_LOG_ERROR,
					     "a reply from %s is longer than max_reply (%llu bytes), or memory ran out",
					     c->path, (unsigned long long)c->conf->max_reply);
		else
			c->host->log(c->self, WGGWD_LOG_WARN, "reading %s: %s", c->path,
				     uv_strerror(nread));
		conn_fail(c, nread == UV_EOF ? -ECONNRESET : nread == UV_ENOBUFS ? -EMSGSIZE : (int)nread);
		return;
	}
	from = c->rlen ? c->rlen - 1 : 0;
	c->rlen += nread;
	if (!c->inflight) {
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "%s sent data nobody asked for; reconnecting",
			     c->path);
		conn_fail(c, -EPROTO); /* wipes what came */
		return;
	}
	/* only the new bytes are searched: linear in the reply's size */
	end = memmem(c->rbuf + from, c->rlen - from, "\n\n", 2);
	if (!end)
		return;
	if ((size_t)(end + 2 - c->rbuf) != c->rlen) {
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "%s sent more than one reply; reconnecting",
			     c->path);
		conn_fail(c, -EPROTO);
		return;
	}
	r = c->inflight;
	c->inflight = NULL;
	uv_timer_stop(&c->rtimer);
	/* take the reply out of the connection: what the callbacks do
	 * (queue more, even close) cannot touch it */
	reply = c->rbuf;
	len = c->rlen;
	cap = c->rcap;
	c->rbuf = NULL;
	c->rlen = c->rcap = 0;
	if (!r->op)
		c->get_hint = len;
	status = reply_status(reply, len);
	if (status) {
		(*c->uapi_errors)++;
		/* wireguard-go stops reading a set at the failing line and
		 * would take the rest as requests: start afresh */
		conn_drop(c);
	}
	req_finish(c, r, status, reply, len);
	req_release(r);
	sodium_memzero(reply, len);
	if (!c->rbuf && cap <= RBUF_KEEP) {
		c->rbuf = reply;
		c->rcap = cap;
	} else {
		free(reply);
	}
	kick(c);
}

static void conn_open(struct ctx *c)
{
	struct conn *conn = calloc(1, sizeof(*conn));
	int ret;

	if (!conn) {
		fail_queue(c, -ENOMEM);
		return;
	}
	ret = uv_pipe_init(c->loop, &conn->pipe, 0);
	if (ret) {
		free(conn);
		fail_queue(c, ret);
		return;
	}
	conn->c = c;
	conn->pipe.data = conn;
	conn->creq.data = conn;
	c->handles++;
	c->conn = conn;
	c->connected = false;
	if (c->ever_opened)
		(*c->reconnects)++;
	c->ever_opened = true;
	uv_pipe_connect(&conn->creq, &conn->pipe, c->path, on_connect);
}

static void on_write(uv_write_t *wr, int status)
{
	struct req *r = wr->data;
	struct ctx *c = r->c;

	r->writing = false;
	sodium_memzero(r->text.p, r->text.cap); /* it may hold a preshared key */
	if (r->finished) {
		req_free(r);
		return;
	}
	if (status < 0 && c->inflight == r) {
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "writing to %s: %s", c->path,
			     uv_strerror(status));
		conn_fail(c, status); /* finishes and frees r */
	}
}

static void on_rtimeout(uv_timer_t *t)
{
	struct ctx *c = t->data;
	char what[128];

	if (!c->inflight)
		return;
	(*c->uapi_errors)++;
	req_what(c->inflight, what, sizeof(what));
	c->host->log(c->self, WGGWD_LOG_WARN, "no reply from %s to the %s within %lld ms; reconnecting",
		     c->path, what, (long long)c->conf->e.timeout_ms);
	conn_fail(c, -ETIMEDOUT);
}

/* r (a batch the interface refused) as one request per op, queued first
 * in the same order; r itself finishes without an outcome. False: no
 * memory (then every member fails with r's status). */
static bool batch_split(struct ctx *c, struct req *r)
{
	struct req *head = NULL, **tail = &head, *m, *n;
	struct wge_op *op;

	for (m = r; m; m = m == r ? r->members : m->next) {
		op = m->op;
		n = req_new(c, op);
		if (n)
			render(&n->text, op);
		if (!n || n->text.oom) {
			if (n)
				req_free(n);
			while ((n = head)) {
				head = n->next;
				req_free(n);
			}
			return false;
		}
		n->alone = true;
		*tail = n;
		tail = &n->next;
	}
	(*c->batch_splits)++;
	*tail = c->q_head;
	if (!c->q_head)
		c->q_tail = tail;
	c->q_head = head;
	while ((m = r->members)) {
		r->members = m->next;
		req_free(m);
	}
	r->op = NULL;
	r->finished = true;
	return true;
}

/* The ops queued behind r (not dumps, not split ones), joined to its set
 * up to BATCH_MAX_OPS and BATCH_MAX_BYTES. */
static void batch_gather(struct ctx *c, struct req *r)
{
	struct req **mt = &r->members, *m;
	size_t n = 1;

	if (!r->op || r->alone)
		return;
	while ((m = c->q_head) && m->op && !m->alone && n < BATCH_MAX_OPS &&
	       r->text.len + m->text.len <= BATCH_MAX_BYTES) {
		render_join(&r->text, &m->text);
		if (r->text.oom)
			break; /* r->text is unusable: fail r alone, m stays queued */
		c->q_head = m->next;
		if (!c->q_head)
			c->q_tail = &c->q_head;
		sb_free(&m->text);
		m->next = NULL;
		*mt = m;
		mt = &m->next;
		n++;
	}
	if (n > 1)
		(*c->batched)++;
}

/* Send the next request if the line is free; connect if need be. */
static void kick(struct ctx *c)
{
	struct req *r;
	uv_buf_t b;
	int ret;

	if (!c->q_head || c->io_closed)
		return;
	if (!c->conn) {
		conn_open(c);
		return;
	}
	if (!c->connected || c->inflight)
		return;
	r = c->q_head;
	c->q_head = r->next;
	if (!c->q_head)
		c->q_tail = &c->q_head;
	r->next = NULL;
	batch_gather(c, r);
	if (r->text.oom) {
		req_finish(c, r, -ENOMEM, NULL, 0);
		req_free(r);
		kick(c);
		return;
	}
	c->inflight = r;
	b = uv_buf_init(r->text.p, r->text.len);
	r->writing = true;
	ret = uv_write(&r->wr, (uv_stream_t *)&c->conn->pipe, &b, 1, on_write);
	if (ret) {
		r->writing = false;
		sodium_memzero(r->text.p, r->text.cap);
		(*c->uapi_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "writing to %s: %s", c->path, uv_strerror(ret));
		conn_fail(c, ret);
		return;
	}
	uv_timer_start(&c->rtimer, on_rtimeout, c->conf->e.timeout_ms, 0);
}

/* Close the connection and the timers; fail whatever is left. */
static void shutdown_io(struct ctx *c)
{
	struct req *r = c->inflight;

	if (c->io_closed)
		return;
	c->io_closed = true;
	c->inflight = NULL;
	conn_drop(c);
	if (r) {
		req_finish(c, r, -ECANCELED, NULL, 0);
		req_release(r);
	}
	fail_queue(c, -ECANCELED);
	uv_close((uv_handle_t *)&c->rtimer, on_handle_closed);
}

static int uapi_start(void *b, struct wggwd_device *dev, size_t *npeers)
{
	struct ctx *c = b;
	int ret;

	ret = get_device_blocking(c, dev, npeers);
	if (ret)
		return ret;
	/* nothing below can fail: a failed start is not stopped, so no
	 * handle may be open when it returns an error */
	uv_timer_init(c->loop, &c->rtimer);
	c->rtimer.data = c;
	c->handles = 1;
	c->running = true;
	conn_open(c); /* ready for the first install */
	return 0;
}

static void uapi_set(void *b, struct wge_op *op)
{
	struct ctx *c = b;
	struct req *r = req_new(c, op);

	if (r)
		render(&r->text, op);
	if (!r || r->text.oom) {
		if (r)
			req_free(r);
		op->err = -ENOMEM;
		wge_op_done(c->env, op);
		return;
	}
	enqueue(c, r);
}

static int uapi_dump(void *b)
{
	struct ctx *c = b;
	struct req *r = req_new(c, NULL);

	if (!r)
		return -ENOMEM;
	sb_printf(&r->text, "get=1\n\n");
	if (r->text.oom) {
		req_free(r);
		return -ENOMEM;
	}
	enqueue(c, r);
	return 0;
}

static void uapi_cancel(void *b)
{
	struct ctx *c = b;

	fail_queue(c, -ECANCELED);
	if (c->inflight) /* its reply is read and dropped */
		req_finish(c, c->inflight, -ECANCELED, NULL, 0);
}

static void uapi_close(void *b)
{
	struct ctx *c = b;

	if (!c->running) {
		wge_closed(c->env);
		return;
	}
	shutdown_io(c);
}

static int uapi_create(const struct wge_env *env, const void *conf, void **b)
{
	const struct conf *cf = conf;
	struct ctx *c = calloc(1, sizeof(*c));
	int n;

	if (!c)
		return -ENOMEM;
	n = snprintf(c->path, sizeof(c->path), "%s/%s.sock", cf->socket_dir, cf->e.interface);
	if (n < 0 || (size_t)n >= sizeof(c->path)) {
		free(c);
		return -ENAMETOOLONG;
	}
	c->env = env;
	c->host = env->host;
	c->self = env->self;
	c->conf = cf;
	c->loop = env->host->loop;
	c->q_tail = &c->q_head;
	c->uapi_errors = env->host->counter(env->self, "uapi_errors");
	c->reconnects = env->host->counter(env->self, "reconnects");
	c->batched = env->host->counter(env->self, "batched_sets");
	c->batch_splits = env->host->counter(env->self, "batch_splits");
	*b = c;
	return 0;
}

static void uapi_destroy(void *b)
{
	struct ctx *c = b;

	if (c->rbuf) {
		sodium_memzero(c->rbuf, c->rcap);
		free(c->rbuf);
	}
	free(c->dumped);
	free(c);
}

static const char *iu_validate(const void *conf, const char **option, char *buf, size_t len)
{
	const struct conf *cf = conf;

	if (cf->socket_dir && cf->e.interface &&
	    strlen(cf->socket_dir) + strlen(cf->e.interface) + 7 > SUN_PATH_MAX) {
		*option = "socket_dir";
		snprintf(buf, len, "%s/%s.sock is longer than a unix socket path may be (%zu bytes)",
			 cf->socket_dir, cf->e.interface, SUN_PATH_MAX - 1);
		return buf;
	}
	return NULL;
}

WGE_INSTALLER(uapi, "installer-uapi",
	      "installs peers on a userspace WireGuard interface (wireguard-go) over its UAPI socket",
	      struct conf, opts, iu_validate);
