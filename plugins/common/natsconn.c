// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * A NATS connection on the daemon's libuv loop (see natsconn.h).
 *
 * The first connect blocks (TCP, the server's INFO, TLS: up to
 * connect_timeout per server), so it runs on the thread pool. The libuv
 * adapter insists that a connection's first attach happens on the loop
 * thread: our attach callback hands that one step to the loop (host->post)
 * and waits for it. A failed first connect is retried from a loop timer
 * with the same backoff as cnats' reconnects, which it then handles by
 * itself (max_reconnect -1: it never gives up).
 *
 * Secrets are read once, at start, through host->secret_read (owner and
 * mode checked) and handed to cnats from memory (callbacks for the JWT and
 * the nonce signature; the TLS key as PEM): cnats never opens them by path,
 * so a file swapped after the check is never read.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include <nats/adapters/libuv.h>

#include "natsconn.h"
#include "wgutil.h"

#define NC_POLLED 4
/* nc_msg_release destroys this many together, or as many as hold this
 * many bytes (wiped already; otherwise kept until then, or the stop) */
#define NC_DEAD_BATCH 64
#define NC_DEAD_BYTES (256 * 1024)
/* cnats' socket buffers (its default: 32 KiB). A burst of pushed messages
 * is read this much a loop turn, so the store commits and fsyncs them as
 * one group (about 100 at 32 KiB; the commit's cost grows much slower
 * than its size), and their ACKs go out in fewer writes. */
#define NC_IO_BUF (256 * 1024)

enum ev_type { EV_MSG, EV_DISCONNECTED, EV_RECONNECTED, EV_CLOSED, EV_ERROR, EV_SUB_DONE };

struct ev {
	struct ev *next;
	enum ev_type type;
	natsMsg *msg;
	natsStatus st;
};

/* What cnats' threads see. Freed when the last reference goes. */
struct link {
	int refs; /* atomic */
	pthread_mutex_t mu;
	struct ev *head, **tail;
	bool scheduled;
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	struct nc *n;       /* loop thread only; NULL once the owner is gone */
	int64_t rwait, rwait_max;
	pthread_t loop_thread;
	char *jwt, *seed;   /* sodium_malloc'd; read by cnats' threads */
};

struct nc {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct nc_conf *conf;
	const struct nc_handlers *h;
	void *owner;
	struct link *link;
	natsOptions *opts;
	natsConnection *conn;
	uv_timer_t retry;
	uv_check_t check;       /* reads the polled subscriptions */
	natsSubscription *polled[NC_POLLED];
	natsMsg **dead;         /* nc_msg_release: wiped, destroyed later */
	size_t n_dead, cap_dead, dead_bytes;
	bool timer_open, check_open, stopping, connected, ever_connected;
	bool connecting, closing, finished;
	int attempts, works;
	natsConnection *new_conn; /* the connect work's result */
	natsStatus new_st;
	char new_err[256];
	void (*done)(void *owner);
	bool *owner_timer_open; /* nc_stop_host */
	uint64_t *c_disconnects, *c_reconnects, *c_connect_failures, *c_async_errors;
	int64_t *g_connected;
};

const char *nc_err(natsStatus s)
{
	natsStatus last = NATS_OK;
	const char *t = nats_GetLastError(&last);

	/* the thread's last error may be an older call's */
	return t && *t && last == s ? t : natsStatus_GetText(s);
}

const char *nc_check_server(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (strncmp(s, "nats://", 7) && strncmp(s, "tls://", 6)) {
		snprintf(buf, len, "expected nats://host:port or tls://host:port, got \"%.80s\"", s);
		return buf;
	}
	return NULL;
}

static void msg_wipe(natsMsg *m)
{
	int len = natsMsg_GetDataLength(m);

	if (len > 0)
		sodium_memzero((void *)natsMsg_GetData(m), len);
}

void nc_msg_free(natsMsg *m)
{
	if (!m)
		return;
	msg_wipe(m);
	natsMsg_Destroy(m);
}

/* ------------------------------------------------------------------ link */

static void link_ref(struct link *l)
{
	__atomic_add_fetch(&l->refs, 1, __ATOMIC_RELAXED);
}

static void link_unref(struct link *l)
{
	struct ev *e, *n;

	if (__atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (e = l->head; e; e = n) {
		n = e->next;
		nc_msg_free(e->msg);
		free(e);
	}
	pthread_mutex_destroy(&l->mu);
	sodium_free(l->jwt);
	sodium_free(l->seed);
	free(l);
}

static void dispatch(struct nc *n, struct ev *e);

/* On the loop: everything the threads pushed since the last post. */
static void link_drain(void *arg)
{
	struct link *l = arg;
	struct ev *e, *next;

	pthread_mutex_lock(&l->mu);
	e = l->head;
	l->head = NULL;
	l->tail = &l->head;
	l->scheduled = false;
	pthread_mutex_unlock(&l->mu);
	for (; e; e = next) {
		next = e->next;
		if (l->n)
			dispatch(l->n, e);
		nc_msg_free(e->msg); /* dispatch takes it when it wants it */
		free(e);
	}
	link_unref(l);
}

/* Any thread. */
static void link_push(struct link *l, enum ev_type type, natsMsg *m, natsStatus st)
{
	struct ev *e = calloc(1, sizeof(*e));
	bool post = false;

	if (!e) {
		nc_msg_free(m); /* JetStream redelivers it; a request times out */
		return;
	}
	e->type = type;
	e->msg = m;
	e->st = st;
	pthread_mutex_lock(&l->mu);
	*l->tail = e;
	l->tail = &e->next;
	if (!l->scheduled) {
		l->scheduled = true;
		post = true;
		link_ref(l);
	}
	pthread_mutex_unlock(&l->mu);
	if (post && l->host->post(l->self, link_drain, l)) {
		/* the daemon is stopping: nothing will drain it */
		pthread_mutex_lock(&l->mu);
		l->scheduled = false;
		pthread_mutex_unlock(&l->mu);
		link_unref(l);
	}
}

void nc_msg_cb(natsConnection *conn, natsSubscription *sub, natsMsg *m, void *closure)
{
	(void)conn;
	(void)sub;
	link_push(closure, EV_MSG, m, NATS_OK);
}

static void on_sub_complete(void *closure)
{
	struct link *l = closure;

	link_push(l, EV_SUB_DONE, NULL, NATS_OK);
	link_unref(l);
}

static void on_disconnected(natsConnection *conn, void *closure)
{
	(void)conn;
	link_push(closure, EV_DISCONNECTED, NULL, NATS_OK);
}

static void on_reconnected(natsConnection *conn, void *closure)
{
	(void)conn;
	link_push(closure, EV_RECONNECTED, NULL, NATS_OK);
}

/* cnats' last word about a connection */
static void on_closed(natsConnection *conn, void *closure)
{
	struct link *l = closure;

	(void)conn;
	link_push(l, EV_CLOSED, NULL, NATS_OK);
	link_unref(l);
}

static void on_async_error(natsConnection *conn, natsSubscription *sub, natsStatus err,
			   void *closure)
{
	(void)conn;
	(void)sub;
	link_push(closure, EV_ERROR, NULL, err);
}

/* cnats' reconnect thread: reads only what never changes */
static int64_t reconnect_delay(natsConnection *conn, int attempts, void *closure)
{
	struct link *l = closure;
	int64_t d = l->rwait;
	int i;

	(void)conn;
	for (i = 1; i < attempts && d < l->rwait_max; i++)
		d *= 2;
	if (d > l->rwait_max)
		d = l->rwait_max;
	return d - d / 4 + (int64_t)randombytes_uniform((uint32_t)(d / 4 + 1));
}

void *nc_closure(struct nc *n)
{
	return n->link;
}

void nc_sub_track(struct nc *n, natsSubscription *sub)
{
	link_ref(n->link);
	if (natsSubscription_SetOnCompleteCB(sub, on_sub_complete, n->link) != NATS_OK)
		link_unref(n->link);
}

static void on_check(uv_check_t *h);

static void dead_flush(struct nc *n)
{
	size_t i;

	for (i = 0; i < n->n_dead; i++)
		natsMsg_Destroy(n->dead[i]);
	n->n_dead = 0;
	n->dead_bytes = 0;
}

void nc_msg_release(struct nc *n, natsMsg *m)
{
	natsMsg **d;

	if (!m)
		return;
	msg_wipe(m);
	if (!n->check_open || uv_is_closing((uv_handle_t *)&n->check)) {
		natsMsg_Destroy(m);
		return;
	}
	if (n->n_dead == n->cap_dead) {
		d = realloc(n->dead, (n->cap_dead ? n->cap_dead * 2 : 64) * sizeof(*d));
		if (!d) {
			natsMsg_Destroy(m);
			return;
		}
		n->dead = d;
		n->cap_dead = n->cap_dead ? n->cap_dead * 2 : 64;
	}
	n->dead[n->n_dead++] = m;
	n->dead_bytes += (size_t)natsMsg_GetDataLength(m);
	if (!uv_is_active((uv_handle_t *)&n->check))
		uv_check_start(&n->check, on_check);
}

/* Loop thread, after each poll: the messages the adapter's reads queued
 * on the polled (synchronous) subscriptions. Only the loop reads the
 * socket, so nothing is left behind until its next read. Then the
 * released messages are destroyed together: NC_DEAD_BATCH of them (a
 * slow push reads about one message a turn) or NC_DEAD_BYTES. */
static void on_check(uv_check_t *h)
{
	struct nc *n = h->data;
	natsMsg *m;
	natsStatus s;
	size_t i, k_polled = 0;
	int k;

	for (i = 0; i < NC_POLLED; i++) {
		/* re-read the slot: a handler may unpoll (and destroy) it; ask
		 * first (an empty NextMsg formats an error text every time) */
		while (n->polled[i] && natsSubscription_GetPending(n->polled[i], &k, NULL) == NATS_OK &&
		       k > 0) {
			m = NULL;
			s = natsSubscription_NextMsg(&m, n->polled[i], 0);
			if (s == NATS_SLOW_CONSUMER || s == NATS_MISMATCH)
				continue; /* a flag, reported as an async error too */
			if (s != NATS_OK)
				break;
			if (n->h->msg && !n->stopping)
				n->h->msg(n->owner, m);
			else
				nc_msg_free(m);
		}
		k_polled += n->polled[i] != NULL;
	}
	if (n->n_dead >= NC_DEAD_BATCH || n->dead_bytes >= NC_DEAD_BYTES)
		dead_flush(n);
	if (!k_polled && !n->n_dead)
		uv_check_stop(h);
}

int nc_sub_poll(struct nc *n, natsSubscription *sub)
{
	size_t i;

	if (!n->check_open || uv_is_closing((uv_handle_t *)&n->check))
		return -EINVAL;
	for (i = 0; i < NC_POLLED && n->polled[i]; i++)
		;
	if (i == NC_POLLED)
		return -ENOSPC;
	n->polled[i] = sub;
	if (!uv_is_active((uv_handle_t *)&n->check))
		uv_check_start(&n->check, on_check);
	return 0;
}

void nc_sub_unpoll(struct nc *n, natsSubscription *sub)
{
	natsMsg *m;
	size_t i;

	if (!sub)
		return;
	for (i = 0; i < NC_POLLED; i++)
		if (n->polled[i] == sub)
			n->polled[i] = NULL;
	/* what is still queued is wiped, not just freed (bounded: the
	 * subscription's pending limits) */
	for (;;) {
		m = NULL;
		switch (natsSubscription_NextMsg(&m, sub, 0)) {
		case NATS_OK:
			nc_msg_free(m);
			continue;
		case NATS_SLOW_CONSUMER:
		case NATS_MISMATCH:
			continue;
		default:
			return;
		}
	}
}

/* -------------------------------------------------------------- events */

static void dispatch(struct nc *n, struct ev *e)
{
	char url[256] = "";

	switch (e->type) {
	case EV_MSG:
		if (n->h->msg && !n->stopping) {
			n->h->msg(n->owner, e->msg);
			e->msg = NULL;
		}
		break;
	case EV_DISCONNECTED:
		if (n->stopping || !n->connected)
			break;
		n->connected = false;
		*n->g_connected = 0;
		(*n->c_disconnects)++;
		n->host->log(n->self, WGGWD_LOG_WARN,
			     "lost the connection to the NATS server; reconnecting");
		if (n->h->disconnected)
			n->h->disconnected(n->owner);
		break;
	case EV_RECONNECTED:
		if (n->stopping)
			break;
		n->connected = true;
		*n->g_connected = 1;
		(*n->c_reconnects)++;
		if (n->conn)
			natsConnection_GetConnectedUrl(n->conn, url, sizeof(url));
		n->host->log(n->self, WGGWD_LOG_INFO, "reconnected to %s", url);
		if (n->h->reconnected)
			n->h->reconnected(n->owner);
		break;
	case EV_ERROR:
		(*n->c_async_errors)++;
		n->host->log_limited(n->self, WGGWD_LOG_WARN, "NATS: %s", natsStatus_GetText(e->st));
		if (n->h->async_error && !n->stopping)
			n->h->async_error(n->owner, e->st, e->st == NATS_MISSED_HEARTBEAT);
		break;
	case EV_CLOSED:
	case EV_SUB_DONE:
		break;
	}
}

/* ------------------------------------------------------------- connect */

static void on_retry(uv_timer_t *t);
static void stop_more(struct nc *n);

static void arm_retry(struct nc *n)
{
	int64_t d = n->conf->reconnect_wait_ms;
	int i;

	for (i = 0; i < n->attempts && d < n->conf->reconnect_wait_max_ms; i++)
		d *= 2;
	if (d > n->conf->reconnect_wait_max_ms)
		d = n->conf->reconnect_wait_max_ms;
	uv_timer_start(&n->retry, on_retry, d, 0);
}

/* The adapter's first attach must run on the loop thread. */
struct attach_call {
	void **ud;
	struct link *l;
	natsConnection *nc;
	natsSock sock;
	natsStatus st;
	bool done;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void attach_on_loop(void *arg)
{
	struct attach_call *a = arg;
	natsStatus st = natsLibuv_Attach(a->ud, a->l->host->loop, a->nc, a->sock);

	pthread_mutex_lock(&a->mu);
	a->st = st;
	a->done = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* `loop` is our link (natsOptions_SetEventLoop). A pool thread connecting
 * waits here while the loop attaches; the loop never waits for it. */
static natsStatus on_attach(void **ud, void *loop, natsConnection *nc, natsSock sock)
{
	struct link *l = loop;
	struct attach_call a = { .ud = ud, .l = l, .nc = nc, .sock = sock };

	if (*ud || pthread_equal(pthread_self(), l->loop_thread))
		return natsLibuv_Attach(ud, l->host->loop, nc, sock);
	pthread_mutex_init(&a.mu, NULL);
	pthread_cond_init(&a.cv, NULL);
	if (l->host->post(l->self, attach_on_loop, &a)) {
		a.st = NATS_CONNECTION_CLOSED;
	} else {
		pthread_mutex_lock(&a.mu);
		while (!a.done)
			pthread_cond_wait(&a.cv, &a.mu);
		pthread_mutex_unlock(&a.mu);
	}
	pthread_cond_destroy(&a.cv);
	pthread_mutex_destroy(&a.mu);
	return a.st;
}

/* thread pool */
static void connect_work(void *arg)
{
	struct nc *n = arg;

	n->new_conn = NULL;
	n->new_st = natsConnection_Connect(&n->new_conn, n->opts);
	if (n->new_st != NATS_OK)
		snprintf(n->new_err, sizeof(n->new_err), "%s", nc_err(n->new_st));
}

static void connect_after(void *arg, int status)
{
	struct nc *n = arg;
	char url[256] = "";

	n->connecting = false;
	n->works--;
	if (status) { /* cancelled: it did not run */
		n->new_st = NATS_ERR;
		n->new_conn = NULL;
		snprintf(n->new_err, sizeof(n->new_err), "%s", uv_strerror(status));
	}
	if (n->new_st != NATS_OK) {
		link_unref(n->link); /* no conn, no on_closed */
		if (n->stopping) {
			stop_more(n);
			return;
		}
		(*n->c_connect_failures)++;
		if (!n->attempts || n->attempts % 20 == 0)
			n->host->log(n->self, WGGWD_LOG_WARN,
				     "cannot connect to NATS (%s); retrying in the background",
				     n->new_err);
		n->attempts++;
		arm_retry(n);
		return;
	}
	n->conn = n->new_conn;
	if (n->stopping) {
		stop_more(n);
		return;
	}
	n->connected = n->ever_connected = true;
	*n->g_connected = 1;
	natsConnection_GetConnectedUrl(n->conn, url, sizeof(url));
	n->host->log(n->self, WGGWD_LOG_INFO, "connected to %s%s", url,
		     n->attempts ? " (after retrying)" : "");
	n->attempts = 0;
	if (n->h->connected)
		n->h->connected(n->owner);
}

static void try_connect(struct nc *n)
{
	if (n->stopping || n->connecting || n->conn)
		return;
	/* the conn's reference; on_closed drops it */
	link_ref(n->link);
	if (n->host->queue_work(n->self, connect_work, connect_after, n)) {
		link_unref(n->link);
		n->attempts++;
		arm_retry(n);
		return;
	}
	n->connecting = true;
	n->works++;
}

static void on_retry(uv_timer_t *t)
{
	struct nc *n = t->data;

	if (!n->stopping && !n->conn)
		try_connect(n);
}

/* ----------------------------------------------------------- flushing */

struct flushw {
	struct nc *n;
	natsStatus st;
	void (*cb)(void *owner, bool ok);
};

static void flush_work(void *arg)
{
	struct flushw *w = arg;

	w->st = natsConnection_FlushTimeout(w->n->conn, w->n->conf->connect_timeout_ms + 1000);
}

static void flush_after(void *arg, int status)
{
	struct flushw *w = arg;
	struct nc *n = w->n;

	n->works--;
	if (!n->stopping)
		w->cb(n->owner, !status && w->st == NATS_OK);
	free(w);
	if (n->stopping)
		stop_more(n);
}

int nc_flush(struct nc *n, void (*cb)(void *owner, bool ok))
{
	struct flushw *w;

	if (n->stopping || !n->conn)
		return -ENOTCONN;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->n = n;
	w->cb = cb;
	if (n->host->queue_work(n->self, flush_work, flush_after, w)) {
		free(w);
		return -ESHUTDOWN;
	}
	n->works++;
	return 0;
}

/* ------------------------------------------------------------- options */

static int read_secret(struct nc *n, const char *path, uint8_t *buf, size_t cap)
{
	ssize_t len = n->host->secret_read(n->self, path, buf, cap - 2);

	if (len < 0)
		return (int)len;
	if (len == 0) {
		n->host->log(n->self, WGGWD_LOG_ERROR, "secret file %s is empty", path);
		return -EINVAL;
	}
	buf[len] = 0;
	return (int)len;
}

/* A copy in guarded memory (wiped when freed). */
static char *secret_dup(const char *s, size_t len)
{
	char *d = sodium_malloc(len + 1);

	if (d) {
		memcpy(d, s, len);
		d[len] = 0;
	}
	return d;
}

/* The first non-blank line after the line holding `marker`, in place. */
static const char *creds_block(const char *text, const char *marker, size_t *len)
{
	const char *p = strstr(text, marker);

	if (!p)
		return NULL;
	p = strchr(p, '\n');
	while (p && (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t'))
		p++;
	if (!p || !*p || *p == '-')
		return NULL;
	*len = strcspn(p, "\r\n \t");
	return p;
}

static natsStatus on_user_jwt(char **jwt, char **err, void *closure)
{
	struct link *l = closure;

	(void)err;
	*jwt = strdup(l->jwt);
	return *jwt ? NATS_OK : NATS_NO_MEMORY;
}

static natsStatus on_sign(char **err, unsigned char **sig, int *len, const char *nonce,
			  void *closure)
{
	struct link *l = closure;

	(void)err;
	if (!nonce || !*nonce) { /* the server asked for no signature */
		*sig = NULL;
		*len = 0;
		return NATS_OK;
	}
	return nats_Sign(l->seed, nonce, sig, len);
}

/* a .creds file: the user JWT and the NKey seed, kept in memory */
static int load_creds(struct nc *n, const char *path, char *text)
{
	const char *jwt, *seed;
	size_t jl, sl;

	jwt = creds_block(text, "BEGIN NATS USER JWT", &jl);
	seed = creds_block(text, "BEGIN USER NKEY SEED", &sl);
	if (!jwt || !seed) {
		n->host->log(n->self, WGGWD_LOG_ERROR,
			     "creds_file %s: expected a user JWT and an NKey seed (the format nsc writes)",
			     path);
		return -EINVAL;
	}
	n->link->jwt = secret_dup(jwt, jl);
	n->link->seed = secret_dup(seed, sl);
	return n->link->jwt && n->link->seed ? 0 : -ENOMEM;
}

/* not a secret: read whole (PEM), NUL-terminated; free() it */
static char *read_file(struct nc *n, const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;

	if (f) {
		buf = calloc(1, 256 * 1024 + 1);
		if (buf)
			len = fread(buf, 1, 256 * 1024, f);
		if (buf && (ferror(f) || !len)) {
			free(buf);
			buf = NULL;
		}
		fclose(f);
	}
	if (!buf)
		n->host->log(n->self, WGGWD_LOG_ERROR, "cannot read %s", path);
	return buf;
}

#define TRY(call, what)                                                             \
	do {                                                                        \
		natsStatus s_ = (call);                                             \
		if (s_ != NATS_OK) {                                                \
			n->host->log(n->self, WGGWD_LOG_ERROR, "%s: %s", what, nc_err(s_)); \
			ret = -EINVAL;                                              \
			goto out;                                                   \
		}                                                                   \
	} while (0)

static int build_opts(struct nc *n)
{
	const struct nc_conf *cf = n->conf;
	uint8_t secret[4096];
	bool tls = cf->tls_ca_file || cf->tls_cert_file;
	char *cert = NULL;
	size_t i;
	int ret = 0, len;

	TRY(natsOptions_Create(&n->opts), "options");
	for (i = 0; i < cf->servers.n; i++)
		if (!strncmp(((char **)cf->servers.v)[i], "tls://", 6))
			tls = true;
	TRY(natsOptions_SetServers(n->opts, (const char **)cf->servers.v, cf->servers.n), "servers");
	TRY(natsOptions_SetNoRandomize(n->opts, true), "servers");
	TRY(natsOptions_SetName(n->opts, cf->name), "name");
	TRY(natsOptions_SetTimeout(n->opts, cf->connect_timeout_ms), "connect_timeout");
	TRY(natsOptions_SetMaxReconnect(n->opts, -1), "reconnect");
	TRY(natsOptions_SetReconnectWait(n->opts, cf->reconnect_wait_ms), "reconnect_wait");
	TRY(natsOptions_SetCustomReconnectDelay(n->opts, reconnect_delay, n->link), "reconnect_wait");
	TRY(natsOptions_SetReconnectBufSize(n->opts, (int)cf->reconnect_buf), "reconnect_buf");
	TRY(natsOptions_SetIOBufSize(n->opts, NC_IO_BUF), "buffers");
	TRY(natsOptions_SetPingInterval(n->opts, cf->ping_interval_ms), "ping_interval");
	TRY(natsOptions_SetMaxPingsOut(n->opts, 2), "ping_interval");
	TRY(natsOptions_SetDisconnectedCB(n->opts, on_disconnected, n->link), "callbacks");
	TRY(natsOptions_SetReconnectedCB(n->opts, on_reconnected, n->link), "callbacks");
	TRY(natsOptions_SetClosedCB(n->opts, on_closed, n->link), "callbacks");
	TRY(natsOptions_SetErrorHandler(n->opts, on_async_error, n->link), "callbacks");
	/* the link as the "loop": on_attach finds the real one there */
	TRY(natsOptions_SetEventLoop(n->opts, n->link, on_attach, natsLibuv_Read,
				     natsLibuv_Write, natsLibuv_Detach), "event loop");
	if (cf->token_file) {
		ret = read_secret(n, cf->token_file, secret, sizeof(secret));
		if (ret < 0)
			goto out;
		ret = 0;
		TRY(natsOptions_SetToken(n->opts, (const char *)secret), "token_file");
	}
	if (cf->creds_file) {
		ret = read_secret(n, cf->creds_file, secret, sizeof(secret));
		if (ret >= 0)
			ret = load_creds(n, cf->creds_file, (char *)secret);
		if (ret < 0)
			goto out;
		TRY(natsOptions_SetUserCredentialsCallbacks(n->opts, on_user_jwt, n->link, on_sign,
							    n->link), "creds_file");
	}
	if (cf->nkey_seed_file) {
		len = read_secret(n, cf->nkey_seed_file, secret, sizeof(secret));
		if (len < 0) {
			ret = len;
			goto out;
		}
		n->link->seed = secret_dup((const char *)secret, len);
		if (!n->link->seed) {
			ret = -ENOMEM;
			goto out;
		}
		TRY(natsOptions_SetNKey(n->opts, cf->nkey, on_sign, n->link), "nkey_seed_file");
	}
	if (tls) {
		TRY(natsOptions_SetSecure(n->opts, true), "tls");
		if (cf->tls_ca_file)
			TRY(natsOptions_LoadCATrustedCertificates(n->opts, cf->tls_ca_file), "tls_ca_file");
		if (cf->tls_cert_file) {
			len = read_secret(n, cf->tls_key_file, secret, sizeof(secret));
			if (len < 0) {
				ret = len;
				goto out;
			}
			secret[len] = '\n'; /* PEM wants its last line ended */
			secret[len + 1] = 0;
			cert = read_file(n, cf->tls_cert_file);
			if (!cert) {
				ret = -EINVAL;
				goto out;
			}
			TRY(natsOptions_SetCertificatesChain(n->opts, cert, (const char *)secret),
			    "tls_cert_file/tls_key_file");
		}
	}
out:
	free(cert);
	sodium_memzero(secret, sizeof(secret));
	return ret;
}

#undef TRY

const char *nc_validate(const struct nc_conf *cf, const char **option)
{
	if (cf->nkey_seed_file && !cf->nkey) {
		*option = "nkey";
		return "nkey_seed_file needs nkey (the public U... key)";
	}
	if (cf->nkey && !cf->nkey_seed_file) {
		*option = "nkey";
		return "nkey needs nkey_seed_file (the seed that signs for it)";
	}
	if (cf->creds_file && cf->nkey_seed_file) {
		*option = "nkey_seed_file";
		return "creds_file and nkey_seed_file are exclusive (a .creds file holds its own seed)";
	}
	if (cf->tls_cert_file && !cf->tls_key_file) {
		*option = "tls_key_file";
		return "tls_cert_file needs tls_key_file";
	}
	if (cf->tls_key_file && !cf->tls_cert_file) {
		*option = "tls_cert_file";
		return "tls_key_file needs tls_cert_file";
	}
	return NULL;
}

/* ----------------------------------------------------------- lifecycle */

int nc_create(struct nc **np, const struct wggwd_host *host, struct wggwd_inst *self,
	      const struct nc_conf *conf, const struct nc_handlers *h, void *owner)
{
	struct nc *n = calloc(1, sizeof(*n));
	struct link *l = calloc(1, sizeof(*l));

	if (!n || !l) {
		free(n);
		free(l);
		return -ENOMEM;
	}
	pthread_mutex_init(&l->mu, NULL);
	l->refs = 1; /* the nc's */
	l->tail = &l->head;
	l->host = host;
	l->self = self;
	l->n = n;
	l->rwait = conf->reconnect_wait_ms;
	l->rwait_max = conf->reconnect_wait_max_ms > conf->reconnect_wait_ms ?
		       conf->reconnect_wait_max_ms : conf->reconnect_wait_ms;
	n->link = l;
	n->host = host;
	n->self = self;
	n->conf = conf;
	n->h = h;
	n->owner = owner;
	n->c_disconnects = host->counter(self, "disconnects");
	n->c_reconnects = host->counter(self, "reconnects");
	n->c_connect_failures = host->counter(self, "connect_failures");
	n->c_async_errors = host->counter(self, "async_errors");
	n->g_connected = host->gauge(self, "connected");
	*np = n;
	return 0;
}

int nc_start(struct nc *n)
{
	int ret;

	natsLibuv_Init();
	natsLibuv_SetThreadLocalLoop(n->host->loop);
	n->link->loop_thread = pthread_self();
	ret = build_opts(n);
	if (ret)
		return ret;
	/* nothing below fails: a failed start is not stopped */
	uv_timer_init(n->host->loop, &n->retry);
	n->retry.data = n;
	n->timer_open = true;
	uv_check_init(n->host->loop, &n->check);
	uv_unref((uv_handle_t *)&n->check);
	n->check.data = n;
	n->check_open = true;
	try_connect(n);
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct nc *n = h->data;

	n->timer_open = false;
	stop_more(n);
}

static void on_check_closed(uv_handle_t *h)
{
	struct nc *n = h->data;

	n->check_open = false;
	dead_flush(n);
	stop_more(n);
}

/* cnats' close blocks for a while (half a second here): not on the loop.
 * From this thread the adapter hands the detach to the loop. */
static void close_work(void *arg)
{
	struct nc *n = arg;

	natsConnection_Close(n->conn);
}

static void close_after(void *arg, int status)
{
	struct nc *n = arg;

	n->works--;
	if (status) /* cancelled: it did not run */
		natsConnection_Close(n->conn);
	stop_more(n);
}

/* One more step towards stopped: called after each thing that finishes. */
static void stop_more(struct nc *n)
{
	if (n->works || n->finished)
		return;
	if (n->conn && !n->closing) {
		/* Close, not Destroy: the adapter's poll handle may still fire
		 * once before its close callback runs, and cnats must find its
		 * (closed) connection then. Destroy comes with nc_destroy. */
		n->closing = true;
		if (!n->host->queue_work(n->self, close_work, close_after, n)) {
			n->works++;
			return;
		}
		natsConnection_Close(n->conn);
	}
	if (n->timer_open || n->check_open) {
		if (n->timer_open && !uv_is_closing((uv_handle_t *)&n->retry)) {
			uv_timer_stop(&n->retry);
			uv_close((uv_handle_t *)&n->retry, on_timer_closed);
		}
		if (n->check_open && !uv_is_closing((uv_handle_t *)&n->check))
			uv_close((uv_handle_t *)&n->check, on_check_closed);
		return;
	}
	n->finished = true;
	if (n->done)
		n->done(n->owner);
	else if (n->owner_timer_open)
		n->host->stopped(n->self);
}

void nc_stop(struct nc *n, void (*done)(void *owner))
{
	n->stopping = true;
	n->done = done;
	n->connected = false;
	*n->g_connected = 0;
	stop_more(n); /* waits for a connect or flush under way */
}

static void on_owner_timer_closed(uv_handle_t *h)
{
	struct nc *n = h->data;

	*n->owner_timer_open = false;
	nc_stop(n, NULL);
}

void nc_stop_host(struct nc *n, uv_timer_t *timer, bool *timer_open)
{
	n->owner_timer_open = timer_open;
	uv_timer_stop(timer);
	timer->data = n; /* no more of the owner's callbacks on it */
	uv_close((uv_handle_t *)timer, on_owner_timer_closed);
}

void nc_destroy(struct nc *n)
{
	if (!n)
		return;
	n->link->n = NULL;
	dead_flush(n);
	free(n->dead);
	if (n->conn)
		natsConnection_Destroy(n->conn);
	if (n->opts)
		natsOptions_Destroy(n->opts);
	link_unref(n->link);
	free(n);
}

natsConnection *nc_conn(struct nc *n)
{
	return n->conn;
}

bool nc_is_connected(struct nc *n)
{
	return n->conn && n->connected;
}
