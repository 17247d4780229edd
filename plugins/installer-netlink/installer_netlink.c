// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * installer-netlink: the install engine (plugins/common/wgengine.h) over
 * the kernel's WireGuard generic netlink family.
 *
 * Two netlink sockets, both non-blocking and watched by the loop: one for
 * SET_DEVICE (the engine's requests), one for GET_DEVICE dumps, so a dump
 * of 10^5 peers never holds up an install. Each socket has one message in
 * flight at a time (the kernel applies a SET while sendmsg runs; a dump is
 * produced as it is read); everything that queued meanwhile goes into the
 * next message together, as many peer entries as fit, and a peer whose
 * allowed IPs do not fit goes on in the next message (like wireguard-tools'
 * toobig handling), so a burst of installs (a store restoring after a
 * reboot) and a sweep's removals run at the kernel's pace. A message the
 * kernel refuses is sent again one entry per message, so every error names
 * its peer. A dump the kernel marks NLM_F_DUMP_INTR (changed while read) is
 * read again. The kernel precomputes each new peer's static-static DH
 * inside sendmsg, so a message with OFFLOAD_NEW new peers or more (a
 * replay, a restore) is sent from the thread pool while the loop goes on;
 * one knocking client's install is sent at once, on the loop. While the
 * pool thread sends one, the loop builds the next from what queued, and
 * the thread sends it as soon as the kernel has answered the first (it
 * reads that answer itself): the kernel, which applies SETs one at a time,
 * never waits for the loop between two (a push of 10^5 peers is ~300
 * messages). An error, or an answer not there, stops that chain: the loop
 * handles it (re-sends entry by entry) before the messages built behind.
 */
#include "installer_netlink.h"

static const char *check_netns(const void *field, char *buf, size_t len)
{
	const char *s = *(char *const *)field;

	if (s && *s != '/' && (!*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, ".."))) {
		snprintf(buf, len, "expected the name of a namespace in /var/run/netns, or an absolute path");
		return buf;
	}
	return NULL;
}

static const struct wggwd_opt opts[] = {
	WGE_OPTS,
	{ .name = "netns", .type = WGGWD_OPT_STR,
	  .offset = offsetof(struct conf, netns), .check = check_netns,
	  .help = "network namespace the interface lives in: a name from /var/run/netns (ip netns add), or a path such as /proc/PID/ns/net; default: the daemon's" },
	{ .name = "message_size", .type = WGGWD_OPT_SIZE, .def = "32k", .min = 4096, .max = 65000,
	  .offset = offsetof(struct conf, message_size),
	  .help = "largest SET_DEVICE message: peers are batched up to this, and a larger batch is split (the kernel caps one message's peers at 64 KiB)" },
	WGGWD_OPT_END
};


static void pump_set(struct ctx *c);
static void on_chain(void *arg);
static void nl_destroy(void *b);
static void on_poll(uv_poll_t *h, int status, int events);

/* The kernel may just have spent a while in sendmsg or recvmsg: start
 * the clock from now, not from when the loop last looked at it. */
static void arm(struct ctx *c, struct wggwd_timer *t)
{
	uv_update_time(c->host->loop);
	c->host->timer_start(t, c->conf->e.timeout_ms, 0);
}

/* -------------------------------------------------------- the SET side */

static bool put_ip(struct nlmsghdr *nlh, size_t len, const struct wggwd_allowed_ip *ip)
{
	struct nlattr *n = nest_start(nlh, len, 0);

	if (!n)
		return false;
	if (!mnl_attr_put_u16_check(nlh, len, WGALLOWEDIP_A_FAMILY, ip->family) ||
	    !mnl_attr_put_check(nlh, len, WGALLOWEDIP_A_IPADDR, ip->family == AF_INET ? 4 : 16,
				ip->addr) ||
	    !mnl_attr_put_u8_check(nlh, len, WGALLOWEDIP_A_CIDR_MASK, ip->cidr)) {
		mnl_attr_nest_cancel(nlh, n);
		return false;
	}
	mnl_attr_nest_end(nlh, n);
	return true;
}

static bool is_last(const struct ent_ref *r)
{
	const struct wge_ent *en = &r->op->ent[r->idx];

	return en->kind != WGE_INSTALL || !(en->peer->has & WGGWD_PEER_HAS_ALLOWED_IPS) ||
	       r->to >= en->peer->n_allowed;
}

/* The attributes of an install, but its allowed IPs. */
static bool put_install(struct ctx *c, struct nlmsghdr *nlh, const struct wge_ent *en)
{
	static const uint8_t zero[WGGWD_KEY_LEN];
	const struct wggwd_peer *pe = en->peer;
	size_t len = c->msg_size;

	return mnl_attr_put_u32_check(nlh, len, WGPEER_A_FLAGS,
				      (pe->has & WGGWD_PEER_HAS_ALLOWED_IPS) && !en->keep_ips ?
				      WGPEER_F_REPLACE_ALLOWEDIPS : 0) &&
	       mnl_attr_put_check(nlh, len, WGPEER_A_PRESHARED_KEY, WGGWD_KEY_LEN,
				  pe->has & WGGWD_PEER_HAS_PRESHARED_KEY ? pe->preshared_key : zero) &&
	       /* the kernel applies the endpoint before the keepalive, so the
		* keepalive's first packet goes to it: one entry */
	       (en->ep.sa.sa_family == AF_UNSPEC ||
		mnl_attr_put_check(nlh, len, WGPEER_A_ENDPOINT, en->ep.sa.sa_family == AF_INET ?
				   sizeof(en->ep.in4) : sizeof(en->ep.in6), &en->ep)) &&
	       mnl_attr_put_u16_check(nlh, len, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
				      en->keepalive);
}

/*
 * Add (a part of) one peer entry: its allowed IPs from r->from, as many as
 * fit (exactly up to r->to when `exact`: a part sent again alone). False,
 * and nothing added, if the message has no room for it.
 */
static bool put_entry(struct ctx *c, struct nlmsghdr *nlh, struct ent_ref *r, bool exact)
{
	const struct wge_ent *en = &r->op->ent[r->idx];
	const struct wggwd_peer *pe = en->peer;
	size_t len = c->msg_size;
	struct nlattr *p, *p2 = NULL, *ips;
	uint32_t i = r->from, end;
	bool ok;

	p = nest_start(nlh, len, 0);
	if (!p)
		return false;
	ok = mnl_attr_put_check(nlh, len, WGPEER_A_PUBLIC_KEY, WGGWD_KEY_LEN, en->key);
	if (en->kind == WGE_REMOVE) {
		ok = ok && mnl_attr_put_u32_check(nlh, len, WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME);
	} else if (en->kind == WGE_KEEPALIVE || (en->zero_first && !r->from)) {
		/* UPDATE_ONLY: nothing if the peer is not there. Before an
		 * install: the kernel initiates on a change of keepalive from
		 * 0, so go through 0 first, in case it has this one already */
		ok = ok && mnl_attr_put_u32_check(nlh, len, WGPEER_A_FLAGS, WGPEER_F_UPDATE_ONLY) &&
		     mnl_attr_put_u16_check(nlh, len, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL,
					    en->kind == WGE_KEEPALIVE ? en->keepalive : 0);
		if (ok && en->kind == WGE_INSTALL) {
			mnl_attr_nest_end(nlh, p);
			p2 = nest_start(nlh, len, 0);
			ok = p2 && mnl_attr_put_check(nlh, len, WGPEER_A_PUBLIC_KEY, WGGWD_KEY_LEN,
						      en->key);
		}
	}
	/* a part after the first has the key and more allowed IPs only */
	if (ok && en->kind == WGE_INSTALL && !r->from)
		ok = put_install(c, nlh, en);
	if (ok && en->kind == WGE_INSTALL && (pe->has & WGGWD_PEER_HAS_ALLOWED_IPS) &&
	    pe->n_allowed > r->from) {
		end = exact ? r->to : pe->n_allowed;
		ips = nest_start(nlh, len, WGPEER_A_ALLOWEDIPS);
		for (ok = ips != NULL; ok && i < end; i++)
			if (!put_ip(nlh, len, &pe->allowed[i]))
				break;
		/* not one: the whole entry goes in the next message */
		ok = ok && i > r->from && (!exact || i == end);
		if (ok)
			mnl_attr_nest_end(nlh, ips);
	}
	if (!ok) {
		mnl_attr_nest_cancel(nlh, p); /* and p2, which follows it */
		return false;
	}
	r->to = i;
	mnl_attr_nest_end(nlh, p2 ? p2 : p);
	return true;
}

static void op_unlink(struct ctx *c, struct wge_op *op)
{
	struct wge_op **pp;

	for (pp = &c->q_head; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			if (c->q_tail == &op->next)
				c->q_tail = pp;
			if (c->q_send == op)
				c->q_send = op->next;
			op->next = NULL;
			return;
		}
	}
}

static void entry_failed(struct ctx *c, const struct ent_ref *r, int err, const char *ext)
{
	static const char *const verb[] = { "installing", "removing", "restoring the keepalive of" };
	const struct wge_ent *en = &r->op->ent[r->idx];
	char b64[WG_KEY_B64_LEN], why[160];

	if (!r->op->err)
		r->op->err = err;
	(*c->c_errors)++;
	wg_key_to_b64(b64, en->key);
	c->host->log(c->self, WGGWD_LOG_ERROR, "%s peer %s on %s: %s%s%s", verb[en->kind], b64,
		     c->conf->e.interface, dev_error(c, err, why, sizeof(why)), ext ? ": " : "",
		     ext ? ext : "");
}

static bool in_ring(const struct ctx *c, const struct slot *s)
{
	return s == &c->ring[0] || s == &c->ring[1];
}

/* The answer to message s, the oldest one sent. */
static void set_answered(struct ctx *c, struct slot *s, int err, const char *ext)
{
	struct wge_op *done = NULL, **dtail = &done, *op;
	size_t i, n = s->n;
	bool whole;

	if (c->await == s) {
		c->await = NULL;
		c->set.seq = 0;
		c->host->timer_stop(c->set.timer);
	}
	s->n = 0;
	if (in_ring(c, s))
		c->done++;
	/* about the interface, not a peer: say it once, for all of them */
	whole = n > 1 && (err == -ENODEV || err == -EOPNOTSUPP || err == -EPERM || err == -ETIMEDOUT ||
		err == -ENOBUFS || err == -EBADR);
	if (err && n > 1 && !whole) {
		/* which peer? send them again one by one, before any message
		 * built meanwhile (the chain stopped at this one) */
		(*c->c_split)++;
		(*c->c_errors)++;
		memcpy(c->retry, s->msg, n * sizeof(*s->msg));
		c->retry_n = n;
		c->retry_pos = 0;
		c->host->log(c->self, WGGWD_LOG_DEBUG, "a message of %zu peers failed (%s): retrying them one by one",
			     n, strerror(-err));
		pump_set(c);
		return;
	}
	if (err && whole) {
		char why[160];

		(*c->c_errors)++;
		c->host->log(c->self, WGGWD_LOG_ERROR, "a message of %zu peers for %s failed: %s%s%s", n,
			     c->conf->e.interface, dev_error(c, err, why, sizeof(why)), ext ? ": " : "",
			     ext ? ext : "");
	}
	for (i = 0; i < n; i++) {
		op = s->msg[i].op;
		if (err && whole) {
			if (!op->err)
				op->err = err;
		} else if (err) {
			entry_failed(c, &s->msg[i], err, ext);
		}
		if (is_last(&s->msg[i]) && ++op->acked == op->n) {
			op_unlink(c, op);
			*dtail = op;
			dtail = &op->next;
		}
	}
	pump_set(c); /* before the callbacks: they may queue more */
	while ((op = done)) {
		done = op->next;
		op->next = NULL;
		wge_op_done(c->env, op);
	}
}

/* As many entries as fit, from the queue, into s. */
static void fill(struct ctx *c, struct slot *s, struct nlmsghdr *nlh)
{
	struct wge_op *op;

	while ((op = c->q_send) && s->n < c->msg_cap) {
		struct ent_ref e = { op, op->sent, c->ip_pos, 0 };

		if (!put_entry(c, nlh, &e, false))
			return;
		s->msg[s->n++] = e;
		if (op->ent[e.idx].kind == WGE_INSTALL && !e.from)
			s->n_new++;
		if (!is_last(&e)) {
			c->ip_pos = e.to; /* full: the rest goes next */
			return;
		}
		c->ip_pos = 0;
		if (++op->sent == op->n)
			c->q_send = op->next;
	}
}

/* A message into s: the next retried entry alone, or what the queue has. */
static void build(struct ctx *c, struct slot *s, bool retry)
{
	struct nlmsghdr *nlh;
	struct nlattr *peers;

	nlh = msg_begin(c, s->buf, c->family, NLM_F_REQUEST | NLM_F_ACK, WG_CMD_SET_DEVICE,
			WG_GENL_VERSION);
	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, c->conf->e.interface);
	peers = nest_start(nlh, c->msg_size, WGDEVICE_A_PEERS);
	s->n = s->n_new = 0;
	if (retry) {
		s->msg[0] = c->retry[c->retry_pos++];
		put_entry(c, nlh, &s->msg[0], true); /* it fitted with others */
		s->n = 1;
	} else {
		fill(c, s, nlh);
	}
	mnl_attr_nest_end(nlh, peers);
	s->seq = nlh->nlmsg_seq;
	s->len = nlh->nlmsg_len;
	s->state = SLOT_BUILT;
}

/* Under the lock: the ring messages built and not sent are not to be
 * (their ops answered, or the loop stopping); their PSKs wiped. */
static void drop_unsent(struct ctx *c)
{
	for (; c->built > c->sent; c->built--)
		sodium_memzero(c->ring[(c->built - 1) & 1].buf, c->ring[(c->built - 1) & 1].len);
}

/* The next ring message from the queue, if there is room and something
 * to send (the chain takes it: under the lock). */
static bool build_next(struct ctx *c)
{
	struct slot *s;

	if (c->built - c->done >= 2 || !c->q_send || c->retry_pos < c->retry_n)
		return false;
	s = &c->ring[c->built & 1];
	build(c, s, false);
	pthread_mutex_lock(&c->lock);
	c->built++;
	pthread_mutex_unlock(&c->lock);
	return true;
}

/* s has been sent from the loop (or could not be): wait for its answer. */
static void sent(struct ctx *c, struct slot *s, int err)
{
	sodium_memzero(s->buf, s->len); /* PSKs */
	(*c->c_messages)++;
	c->await = s;
	if (err) {
		c->set.seq = 1; /* set_answered clears it */
		set_answered(c, s, err, NULL);
		return;
	}
	c->set.seq = s->seq;
	arm(c, c->set.timer);
}

/* The answer to s, read by the pool thread: the kernel has queued it by
 * the time sendmsg returns. Foreign and stray datagrams are skipped. */
static void chain_answer(struct ctx *c, struct slot *s)
{
	const char *ext;
	uint32_t port;
	int n;

	for (;;) {
		n = nl_recv_buf(c->set.fd, c->abuf, ABUF_SIZE, MSG_DONTWAIT, &s->foreign, &port);
		if (n == -EINTR || !n)
			continue; /* a foreign one: dropped */
		if (n < 0) {
			/* ENOBUFS: the answer was lost; EMSGSIZE: cut short (an
			 * error echoing the request, without CAP_ACK): the loop
			 * takes either as the answer, and so does the chain */
			if (n != -EAGAIN) {
				s->err = n;
				s->answered = true;
			}
			return; /* EAGAIN: the loop waits for it */
		}
		ext = NULL;
		if (ack_find(c->abuf, (size_t)n, s->seq, &s->err, &ext, &s->bad)) {
			s->answered = true;
			if (ext)
				snprintf(s->ext, sizeof(s->ext), "%s", ext);
			return;
		}
	}
}

/* thread pool: ring messages in order, each applied by the kernel while
 * sendmsg runs, the next one as soon as the last is answered with no
 * error (an error, or no answer, is the loop's to handle first) */
static void send_work(void *arg)
{
	struct ctx *c = arg;
	struct slot *s;
	bool post, first = true;

	pthread_mutex_lock(&c->lock);
	while (!c->halt && c->sent < c->built) {
		s = &c->ring[c->sent++ & 1];
		s->state = SLOT_SENDING;
		pthread_mutex_unlock(&c->lock);
		if (first)
			c->chain_started_ns = c->host->now_ns();
		s->chained = !first;
		first = false;
		s->answered = s->bad = s->foreign = false;
		s->err = 0;
		s->ext[0] = 0;
		s->send_err = send(c->set.fd, s->buf, s->len, 0) < 0 ? -errno : 0;
		sodium_memzero(s->buf, s->len); /* PSKs */
		if (!s->send_err)
			chain_answer(c, s);
		pthread_mutex_lock(&c->lock);
		s->state = SLOT_DONE;
		if (s->send_err || !s->answered || s->err) {
			c->halt = true;
			break;
		}
		/* the loop completes its ops (and builds the next) meanwhile */
		post = !c->halt && !c->posted && c->sent < c->built;
		if (post) {
			c->posted = true;
			pthread_mutex_unlock(&c->lock);
			if (c->host->post(c->self, on_chain, c)) {
				pthread_mutex_lock(&c->lock);
				if (c->halt) /* nl_close counted the on_chain */
					c->post_lost = true;
				c->posted = false; /* send_after will */
				continue;
			}
			pthread_mutex_lock(&c->lock);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* The ring messages the chain has finished with, in order. */
static void chain_results(struct ctx *c)
{
	struct slot *s;
	bool more;
	int state;

	while (!c->closed) {
		s = &c->ring[c->done & 1];
		pthread_mutex_lock(&c->lock); /* the chain may be sending */
		more = c->done < c->sent;
		state = s->state;
		pthread_mutex_unlock(&c->lock);
		if (!more || state != SLOT_DONE)
			return;
		if (s->bad || s->foreign) {
			(*c->c_errors)++;
			if (s->foreign)
				(*c->c_foreign)++;
			c->host->log_limited(c->self, WGGWD_LOG_WARN,
					     "netlink: a malformed or foreign message on the set socket; dropped");
			s->bad = s->foreign = false;
		}
		if (!s->send_err && !s->answered) {
			if (c->chain || c->await)
				return; /* once the chain is over: the loop reads it */
			(*c->c_messages)++;
			(*c->c_offloaded)++;
			c->await = s;
			c->set.seq = s->seq;
			arm(c, c->set.timer);
			return;
		}
		(*c->c_messages)++;
		(*c->c_offloaded)++;
		if (s->chained)
			(*c->c_chained)++;
		set_answered(c, s, s->send_err ? s->send_err : s->err,
			     !s->send_err && s->ext[0] ? s->ext : NULL);
	}
}

static void on_chain(void *arg)
{
	struct ctx *c = arg;

	pthread_mutex_lock(&c->lock);
	c->posted = false;
	pthread_mutex_unlock(&c->lock);
	if (c->closed) {
		if (--c->closing == 0)
			wge_closed(c->env);
		return;
	}
	chain_results(c);
}

static void send_after(void *arg, int status)
{
	struct ctx *c = arg;

	c->chain = false;
	if (status) { /* cancelled at shutdown: nothing left */
		pthread_mutex_lock(&c->lock);
		drop_unsent(c);
		pthread_mutex_unlock(&c->lock);
	}
	if (c->closed) {
		if (c->post_lost) /* the thread is done: no lock needed */
			c->closing--;
		if (--c->closing == 0)
			wge_closed(c->env);
		return;
	}
	if (!status && c->chain_started_ns - c->chain_queued_ns > POOL_WAIT_NS) {
		(*c->c_pool_waits)++;
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "a SET waited %llu ms for a thread of the pool (busy with other plugins' work: UV_THREADPOOL_SIZE)",
				     (unsigned long long)((c->chain_started_ns - c->chain_queued_ns) / 1000000));
	}
	/* an answer the chain did not find is read on the next poll */
	uv_poll_start(&c->set.poll, UV_READABLE, on_poll);
	chain_results(c);
	pump_set(c);
}

/* Hand the ring's next message to a pool thread, which goes on with the
 * messages built after it. False: the pool refused; send it here. */
static bool chain_start(struct ctx *c)
{
	/* no reading the SET socket meanwhile: the chain reads the answers */
	uv_poll_stop(&c->set.poll);
	c->halt = false; /* no chain: the loop's alone */
	c->chain = true;
	c->chain_queued_ns = c->chain_started_ns = c->host->now_ns();
	if (!c->host->queue_work(c->self, send_work, send_after, c))
		return true;
	c->chain = false;
	uv_poll_start(&c->set.poll, UV_READABLE, on_poll);
	return false;
}

/* Send what is queued: a retried entry alone, then the ring in order;
 * one message in flight from the loop, or a chain in the pool. */
static void pump_set(struct ctx *c)
{
	struct slot *s;
	ssize_t r;

	if (c->pumping)
		return; /* the loop below picks up what a callback queued */
	c->pumping = true;
	while (!c->closed) {
		if (c->chain) {
			build_next(c); /* the chain takes it */
			break;
		}
		if (c->await || c->done < c->sent)
			break; /* an answer to wait for */
		if (c->retry_pos < c->retry_n) {
			s = &c->one;
			build(c, s, true);
		} else {
			if (c->sent == c->built && !build_next(c))
				break;
			s = &c->ring[c->sent & 1];
			if (s->n_new >= OFFLOAD_NEW && chain_start(c)) {
				build_next(c);
				break;
			}
			c->sent++;
		}
		r = send(c->set.fd, s->buf, s->len, 0);
		sent(c, s, r < 0 ? -errno : 0);
	}
	c->pumping = false;
}

/* -------------------------------------------------------- the GET side */

static void dump_finish(struct ctx *c, int err)
{
	c->dump_running = false;
	c->get.seq = 0;
	c->host->timer_stop(c->get.timer);
	if (err)
		(*c->c_errors)++;
	/* logs an error (once, for either installer); may start the next */
	wge_dump_done(c->env, err, c->d.v, c->d.n);
}

/* ---------------------------------------------------------- socket I/O */

/* The answer to request seq in one datagram: 1 (and *err, *ext) if it is
 * there; *bad if the datagram is malformed. Any thread. */
int ack_find(const uint8_t *buf, size_t len, uint32_t seq, int *err, const char **ext, bool *bad)
{
	const struct nlmsghdr *nlh;
	size_t off = 0;

	while ((nlh = nl_next(buf, len, &off, bad))) {
		if (nlh->nlmsg_type != NLMSG_ERROR || !seq || nlh->nlmsg_seq != seq)
			continue; /* late, after a timeout */
		if (!nl_err(nlh, err))
			break; /* too short to be an answer */
		*ext = *err ? extack_msg(nlh) : NULL;
		return 1;
	}
	return 0;
}

/* The answer to the SET the loop awaits, in one datagram. */
int set_datagram(struct ctx *c, const uint8_t *buf, size_t len, int *err, const char **ext)
{
	bool bad = false;

	if (ack_find(buf, len, c->set.seq, err, ext, &bad))
		return 1;
	if (bad) {
		(*c->c_errors)++;
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "netlink: a malformed message on the set socket; dropped");
	}
	return 0;
}

/* One answer per wakeup: it sends the next message, whose kernel work
 * (up to message_size of peers) is all one wakeup should cost the loop. */
static void on_set_readable(struct ctx *c)
{
	const char *ext = NULL;
	int n, err = 0, got;

	for (;;) {
		n = nl_recv(c, c->set.fd, MSG_DONTWAIT);
		if (n == -EAGAIN || n == -EINTR)
			return;
		if (n < 0) {
			if (c->await) /* ENOBUFS: the answer was lost */
				set_answered(c, c->await, n, NULL);
			return;
		}
		got = set_datagram(c, c->rbuf, n, &err, &ext);
		if (got && c->await) {
			set_answered(c, c->await, err, ext);
			return;
		}
		if (c->closed)
			return;
	}
}

static void on_get_readable(struct ctx *c)
{
	int n, i, ret = 0;

	for (i = 0; i < READ_BUDGET; i++) {
		n = nl_recv(c, c->get.fd, MSG_DONTWAIT);
		if (n == -EAGAIN || n == -EINTR)
			return;
		if (n < 0) {
			if (c->dump_running)
				dump_finish(c, n);
			return;
		}
		if (!c->dump_running || !n) {
			sodium_memzero(c->rbuf, n);
			continue;
		}
		ret = dump_datagram(c, &c->d, c->rbuf, n);
		sodium_memzero(c->rbuf, n); /* the private key, PSKs */
		if (ret == 1 && c->d.intr && ++c->dump_restarts < 5) {
			/* changed while we read: read it again */
			(*c->c_dump_restarts)++;
			dump_reset(&c->d);
			ret = dump_send(c);
			if (ret)
				dump_finish(c, ret);
			continue;
		}
		if (ret) {
			dump_finish(c, ret < 0 ? ret : 0);
			continue;
		}
		arm(c, c->get.timer); /* progress */
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct nlsock *s = h->data;

	(void)events;
	if (status < 0)
		s->c->host->log(s->c->self, WGGWD_LOG_WARN, "netlink %s socket: %s", s->what,
				uv_strerror(status));
	if (s == &s->c->set)
		on_set_readable(s->c);
	else
		on_get_readable(s->c);
}

static void on_timeout(void *arg)
{
	struct nlsock *s = arg;
	struct ctx *c = s->c;

	c->host->log(c->self, WGGWD_LOG_WARN, "netlink %s request on %s: no answer in %lld ms",
		     s->what, c->conf->e.interface, (long long)c->conf->e.timeout_ms);
	if (s == &c->set && c->await)
		set_answered(c, c->await, -ETIMEDOUT, NULL);
	else if (s == &c->get && c->dump_running)
		dump_finish(c, -ETIMEDOUT);
}


/* ------------------------------------------------------------ backend */

static int nl_start(void *b, struct wggwd_device *dev, size_t *npeers)
{
	struct ctx *c = b;
	struct dump *d = &c->d;
	char why[200];
	size_t i;
	int ret;

	ret = open_sockets(c);
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "netlink socket: %s", strerror(-ret));
		return ret;
	}
	ret = resolve_family(c);
	if (ret) {
		if (ret == -ENOENT)
			c->host->log(c->self, WGGWD_LOG_ERROR,
				     "the kernel has no \"wireguard\" generic netlink family: load the module (modprobe wireguard), or use installer-uapi with wireguard-go");
		else
			c->host->log(c->self, WGGWD_LOG_ERROR, "resolving the wireguard netlink family: %s",
				     strerror(-ret));
		return ret;
	}
	/* fill mode: digest what is there, so an unchanged peer costs nothing */
	d->fill = true;
	ret = sync_dump(c);
	d->fill = false;
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "reading %s: %s", c->conf->e.interface,
			     dev_error(c, ret, why, sizeof(why)));
		dump_reset(d);
		return ret;
	}
	if (fcntl(c->set.fd, F_SETFL, O_NONBLOCK) || fcntl(c->get.fd, F_SETFL, O_NONBLOCK)) {
		dump_reset(d);
		return -errno;
	}
	dev->has_private_key = d->has_priv;
	memcpy(dev->private_key, d->priv, WGGWD_KEY_LEN);
	if (d->has_pub)
		memcpy(dev->public_key, d->pub, WGGWD_KEY_LEN);
	dev->listen_port = d->port;
	for (i = 0; i < d->n; i++)
		wge_found(c->env, &d->v[i], &d->acc[i]);
	*npeers = d->n;
	free(d->acc);
	d->acc = NULL;
	dump_reset(d);
	/* nothing fails from here on */
	uv_poll_init(c->host->loop, &c->set.poll, c->set.fd);
	uv_poll_init(c->host->loop, &c->get.poll, c->get.fd);
	c->set.poll.data = &c->set;
	c->get.poll.data = &c->get;
	c->set.polling = c->get.polling = true;
	uv_poll_start(&c->set.poll, UV_READABLE, on_poll);
	uv_poll_start(&c->get.poll, UV_READABLE, on_poll);
	c->set.timer = c->host->timer_new(c->self, on_timeout, &c->set);
	c->get.timer = c->host->timer_new(c->self, on_timeout, &c->get);
	c->ready = true;
	if (c->conf->netns)
		c->host->log(c->self, WGGWD_LOG_INFO, "%s is in netns %s", c->conf->e.interface,
			     c->conf->netns);
	return 0;
}

static void nl_set(void *b, struct wge_op *op)
{
	struct ctx *c = b;

	op->next = NULL;
	*c->q_tail = op;
	c->q_tail = &op->next;
	if (!c->q_send)
		c->q_send = op;
	pump_set(c);
}

static int nl_dump(void *b)
{
	struct ctx *c = b;
	int ret;

	c->dump_running = true;
	c->dump_restarts = 0;
	dump_reset(&c->d);
	ret = dump_send(c);
	if (ret) {
		c->dump_running = false;
		return ret;
	}
	arm(c, c->get.timer);
	return 0;
}

/* Every op still waiting is answered (cancelled); the answer to a message
 * in flight is awaited (or times out) before the next one leaves. */
static void nl_cancel(void *b)
{
	struct ctx *c = b;
	struct wge_op *op;

	c->retry_n = c->retry_pos = 0;
	c->ip_pos = 0;
	/* the ops are answered here: no message names them any more, and
	 * those not sent yet stay unsent */
	pthread_mutex_lock(&c->lock);
	drop_unsent(c);
	pthread_mutex_unlock(&c->lock);
	c->ring[0].n = c->ring[1].n = c->one.n = 0;
	while ((op = c->q_head)) {
		op_unlink(c, op);
		op->err = -ECANCELED;
		wge_op_done(c->env, op);
	}
}

static void on_poll_closed(uv_handle_t *h)
{
	struct nlsock *s = h->data;
	struct ctx *c = s->c;

	if (s != &c->set || !c->chain) {
		close(s->fd);
		s->fd = -1;
	}
	if (--c->closing == 0)
		wge_closed(c->env);
}

static void nl_close(void *b)
{
	struct ctx *c = b;

	c->closed = true;
	c->host->timer_free(c->set.timer);
	c->host->timer_free(c->get.timer);
	c->set.timer = c->get.timer = NULL;
	c->closing = 1; /* held while the closes are started */
	if (c->chain)
		c->closing++; /* send_after: the fd stays open until then */
	pthread_mutex_lock(&c->lock);
	c->halt = true; /* the chain stops after the message in its hands */
	if (c->posted)
		c->closing++; /* on_chain */
	pthread_mutex_unlock(&c->lock);
	if (c->set.polling) {
		c->closing++;
		uv_close((uv_handle_t *)&c->set.poll, on_poll_closed);
	}
	if (c->get.polling) {
		c->closing++;
		uv_close((uv_handle_t *)&c->get.poll, on_poll_closed);
	}
	if (--c->closing == 0)
		wge_closed(c->env);
}

static int nl_create(const struct wge_env *env, const void *conf, void **b)
{
	struct ctx *c = calloc(1, sizeof(*c));
	const struct conf *cf = conf;

	if (!c)
		return -ENOMEM;
	c->env = env;
	c->host = env->host;
	c->self = env->self;
	c->conf = cf;
	c->set.c = c->get.c = c;
	c->set.what = "set";
	c->get.what = "dump";
	c->set.fd = c->get.fd = -1;
	c->q_tail = &c->q_head;
	c->msg_size = cf->message_size;
	c->msg_cap = c->msg_size / MIN_ENTRY + 1;
	pthread_mutex_init(&c->lock, NULL);
	c->retry = calloc(c->msg_cap, sizeof(*c->retry));
	c->rbuf = malloc(RBUF_SIZE);
	c->dump_chunk = DUMP_CHUNK;
	c->abuf = malloc(ABUF_SIZE);
	c->ring[0].msg = calloc(c->msg_cap, sizeof(struct ent_ref));
	c->ring[1].msg = calloc(c->msg_cap, sizeof(struct ent_ref));
	c->one.msg = calloc(1, sizeof(struct ent_ref));
	c->ring[0].buf = malloc(c->msg_size);
	c->ring[1].buf = malloc(c->msg_size);
	c->one.buf = malloc(c->msg_size);
	if (!c->retry || !c->rbuf || !c->abuf || !c->ring[0].msg || !c->ring[1].msg ||
	    !c->one.msg || !c->ring[0].buf || !c->ring[1].buf || !c->one.buf) {
		nl_destroy(c);
		return -ENOMEM;
	}
	c->c_errors = env->host->counter(env->self, "netlink_errors");
	c->c_messages = env->host->counter(env->self, "messages");
	c->c_split = env->host->counter(env->self, "messages_split");
	c->c_dump_restarts = env->host->counter(env->self, "dump_restarts");
	c->c_foreign = env->host->counter(env->self, "foreign_messages");
	c->c_offloaded = env->host->counter(env->self, "messages_offloaded");
	c->c_pool_waits = env->host->counter(env->self, "pool_waits"); /* > POOL_WAIT_NS */
	c->c_chained = env->host->counter(env->self, "messages_chained");
	*b = c;
	return 0;
}

static void nl_destroy(void *b)
{
	struct ctx *c = b;
	int i;

	if (c->set.fd >= 0)
		close(c->set.fd);
	if (c->get.fd >= 0)
		close(c->get.fd);
	dump_reset(&c->d);
	free(c->d.v);
	free(c->d.acc);
	free(c->retry);
	if (c->rbuf)
		sodium_memzero(c->rbuf, RBUF_SIZE);
	free(c->rbuf);
	if (c->abuf)
		sodium_memzero(c->abuf, ABUF_SIZE);
	free(c->abuf);
	for (i = 0; i < 3; i++) {
		struct slot *s = i < 2 ? &c->ring[i] : &c->one;

		free(s->msg);
		if (s->buf)
			sodium_memzero(s->buf, c->msg_size);
		free(s->buf);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

WGE_INSTALLER(nl, "installer-netlink",
	      "installs peers on a kernel WireGuard interface through generic netlink",
	      struct conf, opts, NULL);
