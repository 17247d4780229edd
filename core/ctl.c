// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The control socket (`wggwd ctl`): a unix socket, mode 0600, one JSON
 * request line in, one JSON reply line out, then the connection closes.
 *
 *   {"cmd": "peers"}                   {"cmd": "why", "key": K}
 *   {"cmd": "evict", "key": K}         {"cmd": "lookup", "key": K}
 *   {"cmd": "cache-flush", "key": K, "negative": true}
 *   {"cmd": "reload"}                  {"cmd": "stats"}
 *
 * Replies are {"ok": true, ...} or {"ok": false, "error": "..."}. Stages
 * take part through ops.command (cache-flush, cache-show) and answer with
 * host->reply, now or later.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"

#define CTL_MAX_REQUEST 65536
#define CTL_MAX_CONNS 16
#define CTL_TIMEOUT_MS 30000
#define WHY_MAX 256
#define PEERS_CACHE_MAX 4096 /* peers whose cache entry is shown (each a
                              * stage's synchronous read, on the loop) */

static const char P[] = "[ctl]";

struct client {
	struct client *prev, *next;
	uv_pipe_t pipe;
	uv_timer_t timer;
	char *buf;
	size_t len;
	bool closing, answered;
	int closes;
	struct req *r;
};

/* A request being answered; freed once every stage asked has replied. */
struct req {
	struct client *cl;
	json_t *reply;
	int outstanding;        /* stage replies and our own reference */
	int items, expect;      /* evict: items finished, items sent */
	void (*finish)(struct req *r);
	json_t *peers;          /* peers: being filled */
	json_t *stages;         /* cache-flush: the stages' answers */
	int takers;             /* stages that took a command */
};

struct wggwd_cmd {
	struct req *r;
	json_t *target;         /* where the answer goes, under the stage's name */
	char stage[64];
	bool answered, returned, accepted;
	int status;
};

static struct {
	uv_pipe_t server;
	bool running;
	char *path;
	int conns;
	struct client *clients;
} s;

/* ---------------------------------------------------------------- output */

static void on_client_closed(uv_handle_t *h)
{
	struct client *c = h->data;

	if (++c->closes < 2)
		return;
	s.conns--;
	if (c->prev)
		c->prev->next = c->next;
	else
		s.clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->buf);
	free(c);
}

static void client_close(struct client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->r)
		c->r->cl = NULL;
	uv_close((uv_handle_t *)&c->timer, on_client_closed);
	uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

struct wreq {
	uv_write_t req;
	struct client *c;
	char *data;
};

static void on_written(uv_write_t *req, int status)
{
	struct wreq *w = req->data;

	(void)status;
	client_close(w->c);
	free(w->data);
	free(w);
}

/* Send o (taken) and close. */
static void answer(struct client *c, json_t *o)
{
	struct wreq *w;
	uv_buf_t b;
	char *text;

	if (!c || c->closing || c->answered) {
		json_decref(o);
		return;
	}
	c->answered = true;
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	w = calloc(1, sizeof(*w));
	if (w && text)
		w->data = malloc(strlen(text) + 2);
	if (!w || !w->data) {
		free(text);
		free(w);
		client_close(c);
		return;
	}
	sprintf(w->data, "%s\n", text);
	free(text);
	w->c = c;
	w->req.data = w;
	b = uv_buf_init(w->data, strlen(w->data));
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_written)) {
		free(w->data);
		free(w);
		client_close(c);
	}
}

static void answer_error(struct client *c, const char *fmt, ...) WGGWD_PRINTF(2, 3);
static void answer_error(struct client *c, const char *fmt, ...)
{
	json_t *o = json_object();
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_set_new(o, "ok", json_false());
	json_object_set_new(o, "error", json_string(msg));
	answer(c, o);
}

/* ------------------------------------------------------------- requests */

static struct req *req_new(struct client *c, void (*finish)(struct req *))
{
	struct req *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->cl = c;
	c->r = r;
	r->reply = json_object();
	json_object_set_new(r->reply, "ok", json_true());
	r->outstanding = 1;
	r->finish = finish;
	return r;
}

static void req_put(struct req *r)
{
	if (--r->outstanding)
		return;
	if (r->finish)
		r->finish(r);
	if (r->cl) {
		r->cl->r = NULL;
		answer(r->cl, json_incref(r->reply));
	}
	json_decref(r->reply);
	json_decref(r->peers);
	json_decref(r->stages);
	free(r);
}

static void cmd_free_maybe(struct wggwd_cmd *cmd)
{
	if (cmd->answered && cmd->returned)
		free(cmd);
}

void ctl_stage_reply(struct wggwd_cmd *cmd, int status, const char *text)
{
	struct req *r;
	json_t *v;

	if (!cmd || cmd->answered)
		return;
	cmd->answered = true;
	cmd->status = status;
	r = cmd->r;
	v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
	if (status) {
		json_t *e = json_object();

		json_object_set_new(e, "error", v && json_is_string(v) ? json_incref(v) :
				    json_string(text ? text : strerror(-status)));
		json_decref(v);
		v = e;
	}
	if (cmd->target)
		json_object_set_new(cmd->target, cmd->stage, v ? v : json_null());
	else
		json_decref(v);
	cmd_free_maybe(cmd);
	req_put(r);
}

/* Ask stage `in` (verb, args); its answer goes into target[stage]. Returns
 * 0 if it took the command. */
static int ask_stage(struct req *r, struct wggwd_inst *in, const char *verb, json_t *args,
		     json_t *target)
{
	struct wggwd_cmd *cmd;
	char *a;
	int ret;

	if (!in->ops->command || !in->started || in->stopping)
		return -ENOTSUP;
	cmd = calloc(1, sizeof(*cmd));
	a = json_dumps(args, JSON_COMPACT);
	if (!cmd || !a) {
		free(cmd);
		free(a);
		return -ENOMEM;
	}
	cmd->r = r;
	cmd->target = target;
	snprintf(cmd->stage, sizeof(cmd->stage), "%s", in->sc->name);
	r->outstanding++;
	ret = in->ops->command(in->ctx, cmd, verb, a);
	free(a);
	cmd->returned = true;
	if (ret < 0 && !cmd->answered) { /* refused: no answer will come */
		cmd->answered = true;
		r->outstanding--;
		free(cmd);
		return ret;
	}
	r->takers++;
	cmd_free_maybe(cmd);
	return 0;
}

/* ----------------------------------------------------------------- verbs */

static void do_stats(struct client *c)
{
	json_t *o = json_object(), *st;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f) {
		metrics_dump(f, true);
		fclose(f);
	}
	st = text ? json_loads(text, 0, NULL) : NULL;
	free(text);
	json_object_set_new(o, "ok", json_true());
	json_object_set_new(o, "stats", st ? st : json_object());
	answer(c, o);
}

static void do_why(struct client *c, const char *key_text)
{
	static struct why_ent ents[WHY_MAX];
	uint8_t key[WGGWD_KEY_LEN];
	json_t *o, *a;
	size_t i, n;

	if (key_text && key_parse(key_text, key)) {
		answer_error(c, "\"%s\" is not a public key (44 characters of base64)", key_text);
		return;
	}
	n = why_get(key_text ? key : NULL, ents, WHY_MAX);
	o = json_object();
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, why_ent_json(&ents[i]));
	json_object_set_new(o, "ok", json_true());
	if (key_text)
		json_object_set_new(o, "key", json_string(key_text));
	json_object_set_new(o, "outcomes", a);
	answer(c, o);
}

static void on_evicted(void *arg, struct wggwd_item *it, int verdict, const char *stage)
{
	struct req *r = arg;
	json_t *e = json_object(), *a = json_object_get(r->reply, "removals");

	json_object_set_new(e, "stage", json_string(stage));
	json_object_set_new(e, "verdict", json_string(verdict_name(verdict)));
	if (verdict != WGGWD_CONTINUE)
		json_object_set_new(e, "reason", json_string(reason_name(it->reason)));
	json_array_append_new(a, e);
	if (verdict != WGGWD_CONTINUE)
		json_object_set_new(r->reply, "ok", json_false());
	r->items++;
	if (r->expect && r->items == r->expect)
		req_put(r);
}

static void do_evict(struct client *c, const char *key_text)
{
	uint8_t key[WGGWD_KEY_LEN];
	struct req *r;
	int n;

	if (!key_text || key_parse(key_text, key)) {
		answer_error(c, "evict: a public key is needed (44 characters of base64)");
		return;
	}
	r = req_new(c, NULL);
	if (!r) {
		answer_error(c, "out of memory");
		return;
	}
	json_object_set_new(r->reply, "key", json_string(key_text));
	json_object_set_new(r->reply, "removals", json_array());
	log_msg(WGGWD_LOG_INFO, P, "evict %s (asked for by hand)", key_text);
	n = pipeline_ctl_evict(runtime_current(), key, on_evicted, r);
	if (n < 0) {
		json_object_set_new(r->reply, "ok", json_false());
		json_object_set_new(r->reply, "error", json_string(n == -ENOENT ?
			"no pipeline has an installer" : "the daemon is stopping"));
		req_put(r);
		return;
	}
	r->expect = n;
	if (r->items == r->expect)
		req_put(r);
}

static json_t *peer_json(const struct wggwd_peer *p)
{
	json_t *o = json_object(), *a = json_array();
	char addr[64];
	uint32_t i;

	for (i = 0; i < p->n_allowed; i++) {
		const struct wggwd_allowed_ip *ip = &p->allowed[i];
		char t[80];

		if (ip->family == AF_INET)
			uv_inet_ntop(AF_INET, ip->addr, addr, sizeof(addr));
		else
			uv_inet_ntop(AF_INET6, ip->addr, addr, sizeof(addr));
		snprintf(t, sizeof(t), "%s/%u", addr, ip->cidr);
		json_array_append_new(a, json_string(t));
	}
	json_object_set_new(o, "allowed_ips", a);
	if (p->has & WGGWD_PEER_HAS_TTL)
		json_object_set_new(o, "ttl_s", json_integer(p->ttl_s));
	if (p->has & WGGWD_PEER_HAS_EXPIRES)
		json_object_set_new(o, "expires_at", json_integer(p->expires_at));
	if (p->has & WGGWD_PEER_HAS_KEEPALIVE)
		json_object_set_new(o, "keepalive", json_integer(p->keepalive));
	return o;
}

static void on_looked_up(void *arg, struct wggwd_item *it, int verdict, const char *stage)
{
	struct req *r = arg;

	json_object_set_new(r->reply, "stage", json_string(stage));
	json_object_set_new(r->reply, "verdict", json_string(verdict_name(verdict)));
	if (verdict == WGGWD_CONTINUE) {
		json_object_set_new(r->reply, "found", json_true());
		json_object_set_new(r->reply, "peer", peer_json(it->peer));
	} else {
		json_object_set_new(r->reply, "found", json_false());
		json_object_set_new(r->reply, "reason", json_string(reason_name(it->reason)));
		if (it->detail)
			json_object_set_new(r->reply, "detail", json_string(it->detail));
	}
	req_put(r);
}

static void do_lookup(struct client *c, const char *key_text)
{
	uint8_t key[WGGWD_KEY_LEN];
	struct req *r;
	int ret;

	if (!key_text || key_parse(key_text, key)) {
		answer_error(c, "lookup: a public key is needed (44 characters of base64)");
		return;
	}
	r = req_new(c, NULL);
	if (!r) {
		answer_error(c, "out of memory");
		return;
	}
	json_object_set_new(r->reply, "key", json_string(key_text));
	r->outstanding++; /* the item's */
	ret = pipeline_ctl_lookup(runtime_current(), key, on_looked_up, r);
	if (ret < 0) {
		r->outstanding--;
		json_object_set_new(r->reply, "ok", json_false());
		json_object_set_new(r->reply, "error", json_string(ret == -ENOENT ?
			"no pipeline has a resolver" : "the daemon is stopping"));
	}
	req_put(r);
}

static void flush_finish(struct req *r)
{
	json_object_set(r->reply, "stages", r->stages);
	if (!r->takers) {
		json_object_set_new(r->reply, "ok", json_false());
		json_object_set_new(r->reply, "error", json_string("no stage keeps a cache (none takes cache-flush)"));
	}
}

static void do_flush(struct client *c, json_t *q)
{
	struct runtime *rt = runtime_current();
	json_t *key = json_object_get(q, "key"), *args = json_object();
	uint8_t k[WGGWD_KEY_LEN];
	struct req *r;
	size_t i;

	if (key && (!json_is_string(key) || key_parse(json_string_value(key), k))) {
		json_decref(args);
		answer_error(c, "cache flush: not a public key (44 characters of base64)");
		return;
	}
	r = req_new(c, flush_finish);
	if (!r) {
		json_decref(args);
		answer_error(c, "out of memory");
		return;
	}
	r->stages = json_object();
	if (key)
		json_object_set(args, "key", key);
	json_object_set_new(args, "negative", json_boolean(json_is_true(json_object_get(q, "negative"))));
	log_msg(WGGWD_LOG_INFO, P, "cache flush%s%s%s (asked for by hand)",
		json_is_true(json_object_get(q, "negative")) ? " --negative" : "",
		key ? " " : "", key ? json_string_value(key) : "");
	for (i = 0; i < runtime_n_inst(rt); i++)
		ask_stage(r, runtime_inst(rt, i), "cache-flush", args, r->stages);
	json_decref(args);
	req_put(r);
}

/* peers: every installer's, with what the stages' caches say of each */
static const char *const origin_names[] = { "none", "pull", "push", "static" };

static void on_peers_dump(void *arg, struct wggwd_inst *in, const char *ifname, int status,
			  const struct wggwd_peer_state *peers, size_t n, size_t stride)
{
	struct req *r = arg;
	uint64_t mono = now_mono_ns(), real = now_real_ns();
	size_t i;

	if (status) {
		json_t *e = json_object();

		json_object_set_new(e, "interface", json_string(ifname));
		json_object_set_new(e, "error", json_string(strerror(status < 0 ? -status : status)));
		json_array_append_new(json_object_get(r->reply, "errors"), e);
		return;
	}
	(void)in;
	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *ps = WGGWD_AT(const struct wggwd_peer_state,
							     peers, i, stride);
		json_t *o;
		char b64[64], ep[64] = "";

		if (ps->origin == WGGWD_ORIGIN_NONE ||
		    (WGGWD_HAS(ps, struct wggwd_peer_state, origin) && ps->origin >= ARRAY_SIZE(origin_names)))
			continue;
		o = json_object();
		key_format(ps->public_key, b64, sizeof(b64));
		json_object_set_new(o, "key", json_string(b64));
		json_object_set_new(o, "interface", json_string(ifname));
		json_object_set_new(o, "origin", json_string(origin_names[ps->origin]));
		if (ps->endpoint.sa.sa_family == AF_INET) {
			uv_ip4_name(&ps->endpoint.in4, ep, sizeof(ep));
			snprintf(ep + strlen(ep), sizeof(ep) - strlen(ep), ":%u", ntohs(ps->endpoint.in4.sin_port));
		} else if (ps->endpoint.sa.sa_family == AF_INET6) {
			char a[48];

			uv_ip6_name(&ps->endpoint.in6, a, sizeof(a));
			snprintf(ep, sizeof(ep), "[%s]:%u", a, ntohs(ps->endpoint.in6.sin6_port));
		}
		if (ep[0])
			json_object_set_new(o, "endpoint", json_string(ep));
		if (ps->installed_ns && ps->installed_ns <= mono)
			json_object_set_new(o, "installed_at",
					    json_real((double)(real - (mono - ps->installed_ns)) / 1e9));
		if (ps->last_handshake_sec)
			json_object_set_new(o, "last_handshake",
					    json_real(ps->last_handshake_sec + ps->last_handshake_nsec / 1e9));
		json_object_set_new(o, "rx_bytes", json_integer(ps->rx_bytes));
		json_object_set_new(o, "tx_bytes", json_integer(ps->tx_bytes));
		json_object_set_new(o, "allowed_ips", json_integer(ps->n_allowed));
		json_array_append_new(r->peers, o);
	}
}

static void on_peers_dumped(void *arg)
{
	struct req *r = arg;
	struct runtime *rt = runtime_current();
	size_t i, k;

	/* now what each stage with a cache says about each peer */
	if (json_array_size(r->peers) > PEERS_CACHE_MAX)
		json_object_set_new(r->reply, "cache_shown_for", json_integer(PEERS_CACHE_MAX));
	for (k = 0; k < json_array_size(r->peers) && k < PEERS_CACHE_MAX; k++) {
		json_t *p = json_array_get(r->peers, k), *args = json_object(),
		       *cache = json_object();

		json_object_set(args, "key", json_object_get(p, "key"));
		json_object_set_new(p, "cache", cache);
		for (i = 0; i < runtime_n_inst(rt); i++)
			ask_stage(r, runtime_inst(rt, i), "cache-show", args, cache);
		json_decref(args);
	}
	req_put(r);
}

static void peers_finish(struct req *r)
{
	json_object_set(r->reply, "peers", r->peers);
}

static void do_peers(struct client *c)
{
	struct req *r = req_new(c, peers_finish);

	if (!r) {
		answer_error(c, "out of memory");
		return;
	}
	r->peers = json_array();
	json_object_set_new(r->reply, "errors", json_array());
	r->outstanding++; /* the dumps' */
	if (observe_dump_all(on_peers_dump, on_peers_dumped, r) < 0)
		on_peers_dumped(r);
	req_put(r);
}

static void on_reloaded(void *arg, int status, const char *errors)
{
	struct req *r = arg;

	if (status) {
		json_object_set_new(r->reply, "ok", json_false());
		json_object_set_new(r->reply, "error", json_string(errors && *errors ? errors :
			"the new configuration was refused"));
	}
	req_put(r);
}

static void do_reload(struct client *c)
{
	struct req *r = req_new(c, NULL);
	int ret;

	if (!r) {
		answer_error(c, "out of memory");
		return;
	}
	r->outstanding++;
	log_msg(WGGWD_LOG_INFO, P, "reload (asked for by hand)");
	ret = daemon_reload(on_reloaded, r);
	if (ret) {
		r->outstanding--;
		json_object_set_new(r->reply, "ok", json_false());
		json_object_set_new(r->reply, "error", json_string(ret == -EBUSY ?
			"busy: stopping, or a reload is in progress" : strerror(-ret)));
	}
	req_put(r);
}

static void dispatch(struct client *c)
{
	json_error_t err;
	json_t *q = json_loadb(c->buf, c->len, 0, &err), *k;
	const char *cmd, *key;

	if (!q || !json_is_object(q) || !(cmd = json_string_value(json_object_get(q, "cmd")))) {
		json_decref(q);
		answer_error(c, "a request is one JSON object with \"cmd\"");
		return;
	}
	k = json_object_get(q, "key");
	key = json_string_value(k);
	if (!strcmp(cmd, "stats"))
		do_stats(c);
	else if (!strcmp(cmd, "why"))
		do_why(c, key);
	else if (!strcmp(cmd, "evict"))
		do_evict(c, key);
	else if (!strcmp(cmd, "lookup"))
		do_lookup(c, key);
	else if (!strcmp(cmd, "cache-flush"))
		do_flush(c, q);
	else if (!strcmp(cmd, "peers"))
		do_peers(c);
	else if (!strcmp(cmd, "reload"))
		do_reload(c);
	else
		answer_error(c, "unknown command \"%s\" (peers, why, evict, cache-flush, lookup, reload, stats)",
			     cmd);
	json_decref(q);
}

/* ------------------------------------------------------------ the socket */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct client *c = h->data;
	size_t want = c->len + 4096;
	char *nb;

	(void)hint;
	if (want > CTL_MAX_REQUEST + 4096 || !(nb = realloc(c->buf, want))) {
		*b = uv_buf_init(NULL, 0);
		return;
	}
	c->buf = nb;
	*b = uv_buf_init(c->buf + c->len, 4096);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct client *c = st->data;
	char *nl;

	(void)b;
	if (n < 0) {
		if (n == UV_EOF && c->len && !c->answered) {
			uv_read_stop(st);
			dispatch(c);
			return;
		}
		if (!c->r)
			client_close(c);
		return;
	}
	c->len += n;
	if (c->len > CTL_MAX_REQUEST) {
		uv_read_stop(st);
		answer_error(c, "request too long");
		return;
	}
	nl = memchr(c->buf, '\n', c->len);
	if (nl) {
		c->len = nl - c->buf;
		uv_read_stop(st);
		dispatch(c);
	}
}

static void on_timeout(uv_timer_t *t)
{
	struct client *c = t->data;

	answer_error(c, "timed out waiting for the stages");
}

static void on_connection(uv_stream_t *server, int status)
{
	struct client *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	uv_pipe_init(server->loop, &c->pipe, 0);
	uv_timer_init(server->loop, &c->timer);
	c->pipe.data = c;
	c->timer.data = c;
	s.conns++;
	c->next = s.clients;
	if (s.clients)
		s.clients->prev = c;
	s.clients = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) || s.conns > CTL_MAX_CONNS) {
		client_close(c);
		return;
	}
	uv_timer_start(&c->timer, on_timeout, CTL_TIMEOUT_MS, 0);
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

/* Is a daemon answering on path? */
static bool in_use(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	bool used;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return false;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	used = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return used;
}

/*
 * Listen on path (control_socket:), or when it is NULL on the default
 * path: there a failure (another daemon has it, no runtime directory) is
 * only a warning.
 */
int ctl_start(uv_loop_t *loop, const char *path)
{
	int level = path ? WGGWD_LOG_ERROR : WGGWD_LOG_WARN;
	char buf[256], *slash;
	struct stat st;
	mode_t old;
	int ret;

	if (!path) {
		path = ctl_default_path(buf, sizeof(buf));
		slash = strrchr(buf, '/');
		if (slash && slash != buf && !strcmp(path, CTL_DEFAULT_ROOT)) {
			*slash = '\0';
			mkdir(buf, 0700); /* the runtime directory, ours alone */
			*slash = '/';
		}
	}
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			log_msg(level, P, "control socket %s: exists and is not a socket; `wggwd ctl` will not work",
				path);
			return level == WGGWD_LOG_ERROR ? -EEXIST : 0;
		}
		if (in_use(path)) {
			log_msg(level, P, "control socket %s: another daemon answers there; set control_socket: to a path of this one's",
				path);
			return level == WGGWD_LOG_ERROR ? -EADDRINUSE : 0;
		}
		unlink(path); /* left by a daemon that died */
	}
	uv_pipe_init(loop, &s.server, 0);
	s.running = true;
	old = umask(0177);
	ret = uv_pipe_bind(&s.server, path);
	umask(old);
	if (!ret)
		ret = chmod(path, 0600) ? -errno : 0;
	if (!ret)
		ret = uv_listen((uv_stream_t *)&s.server, 16, on_connection);
	if (ret) {
		log_msg(level, P, "control socket %s: %s", path, uv_strerror(ret));
		if (level == WGGWD_LOG_WARN) {
			uv_close((uv_handle_t *)&s.server, NULL);
			s.running = false;
			return 0;
		}
		return ret;
	}
	s.path = xstrdup(path);
	log_msg(WGGWD_LOG_INFO, P, "control socket %s", path);
	return 0;
}

void ctl_stop(void)
{
	struct client *c;

	for (c = s.clients; c; c = c->next)
		client_close(c);
	if (s.running)
		uv_close((uv_handle_t *)&s.server, NULL);
	s.running = false;
	if (s.path)
		unlink(s.path);
	free(s.path);
	s.path = NULL;
}
