// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * A NATS connection on the daemon's libuv loop (see natsconn.h).
 *
 * The first connect runs on the loop thread: the adapter insists that the
 * first attach happens there, so cnats' own retry-on-failed-connect
 * (which attaches from its reconnect thread) cannot be used. A failed
 * first connect is retried from a loop timer with the same backoff as
 * cnats' reconnects, which it then handles by itself (max_reconnect -1:
 * it never gives up).
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
	bool timer_open, stopping, connected, ever_connected;
	int attempts;
	void (*done)(void *owner);
	uint64_t *c_disconnects, *c_reconnects, *c_connect_failures, *c_async_errors;
	int64_t *g_connected;
};

const char *nc_err(natsStatus s)
{
	const char *t = nats_GetLastError(NULL);

	return t && *t ? t : natsStatus_GetText(s);
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

void nc_msg_free(natsMsg *m)
{
	int len;

	if (!m)
		return;
	len = natsMsg_GetDataLength(m);
	if (len > 0)
		sodium_memzero((void *)natsMsg_GetData(m), len);
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
		n->host->log(n->self, WGGWD_LOG_WARN, "NATS: %s", natsStatus_GetText(e->st));
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

static void try_connect(struct nc *n)
{
	char url[256] = "";
	natsStatus s;

	/* the conn's reference; on_closed drops it */
	link_ref(n->link);
	s = natsConnection_Connect(&n->conn, n->opts);
	if (s != NATS_OK) {
		link_unref(n->link);
		n->conn = NULL;
		(*n->c_connect_failures)++;
		if (!n->attempts || n->attempts % 20 == 0)
			n->host->log(n->self, WGGWD_LOG_WARN,
				     "cannot connect to NATS (%s); retrying in the background",
				     nc_err(s));
		n->attempts++;
		arm_retry(n);
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

static void on_retry(uv_timer_t *t)
{
	struct nc *n = t->data;

	if (!n->stopping && !n->conn)
		try_connect(n);
}

/* ------------------------------------------------------------- options */

static int read_secret(struct nc *n, const char *path, uint8_t *buf, size_t cap)
{
	ssize_t len = n->host->secret_read(n->self, path, buf, cap - 1);

	if (len < 0)
		return (int)len;
	if (len == 0) {
		n->host->log(n->self, WGGWD_LOG_ERROR, "secret file %s is empty", path);
		return -EINVAL;
	}
	buf[len] = 0;
	return 0;
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
	size_t i;
	int ret = 0;

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
	TRY(natsOptions_SetPingInterval(n->opts, cf->ping_interval_ms), "ping_interval");
	TRY(natsOptions_SetMaxPingsOut(n->opts, 2), "ping_interval");
	TRY(natsOptions_SetDisconnectedCB(n->opts, on_disconnected, n->link), "callbacks");
	TRY(natsOptions_SetReconnectedCB(n->opts, on_reconnected, n->link), "callbacks");
	TRY(natsOptions_SetClosedCB(n->opts, on_closed, n->link), "callbacks");
	TRY(natsOptions_SetErrorHandler(n->opts, on_async_error, n->link), "callbacks");
	TRY(natsOptions_SetEventLoop(n->opts, n->host->loop, natsLibuv_Attach, natsLibuv_Read,
				     natsLibuv_Write, natsLibuv_Detach), "event loop");
	if (cf->token_file) {
		ret = read_secret(n, cf->token_file, secret, sizeof(secret));
		if (ret)
			goto out;
		TRY(natsOptions_SetToken(n->opts, (const char *)secret), "token_file");
	}
	if (cf->creds_file) {
		/* the host checks owner and mode; cnats reads it itself */
		ret = read_secret(n, cf->creds_file, secret, sizeof(secret));
		if (ret)
			goto out;
		TRY(natsOptions_SetUserCredentialsFromFiles(n->opts, cf->creds_file, NULL), "creds_file");
	}
	if (cf->nkey_seed_file) {
		ret = read_secret(n, cf->nkey_seed_file, secret, sizeof(secret));
		if (ret)
			goto out;
		TRY(natsOptions_SetNKeyFromSeed(n->opts, cf->nkey, cf->nkey_seed_file), "nkey_seed_file");
	}
	if (tls) {
		TRY(natsOptions_SetSecure(n->opts, true), "tls");
		if (cf->tls_ca_file)
			TRY(natsOptions_LoadCATrustedCertificates(n->opts, cf->tls_ca_file), "tls_ca_file");
		if (cf->tls_cert_file)
			TRY(natsOptions_LoadCertificatesChain(n->opts, cf->tls_cert_file,
							      cf->tls_key_file), "tls_cert_file");
	}
out:
	sodium_memzero(secret, sizeof(secret));
	return ret;
}

#undef TRY

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
	ret = build_opts(n);
	if (ret)
		return ret;
	/* nothing below fails: a failed start is not stopped */
	uv_timer_init(n->host->loop, &n->retry);
	n->retry.data = n;
	n->timer_open = true;
	try_connect(n);
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct nc *n = h->data;

	n->timer_open = false;
	if (n->done)
		n->done(n->owner);
}

static void close_timer(struct nc *n)
{
	if (n->timer_open) {
		uv_timer_stop(&n->retry);
		uv_close((uv_handle_t *)&n->retry, on_timer_closed);
	} else if (n->done) {
		n->done(n->owner);
	}
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

	if (status) /* cancelled: it did not run */
		natsConnection_Close(n->conn);
	close_timer(n);
}

void nc_stop(struct nc *n, void (*done)(void *owner))
{
	n->stopping = true;
	n->done = done;
	n->connected = false;
	*n->g_connected = 0;
	/* Close, not Destroy: the adapter's poll handle may still fire once
	 * before its close callback runs, and cnats must find its (closed)
	 * connection then. Destroy comes with nc_destroy, after the loop. */
	if (!n->conn) {
		close_timer(n);
		return;
	}
	if (n->host->queue_work(n->self, close_work, close_after, n)) {
		natsConnection_Close(n->conn);
		close_timer(n);
	}
}

void nc_destroy(struct nc *n)
{
	if (!n)
		return;
	n->link->n = NULL;
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
