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
 * one knocking client's install is sent at once, on the loop.
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

/* The answer to the SET message in flight. */
static void set_answered(struct ctx *c, int err, const char *ext)
{
	struct wge_op *done = NULL, **dtail = &done, *op;
	size_t i, n = c->msg_n;
	bool whole;

	c->set.seq = 0;
	c->host->timer_stop(c->set.timer);
	c->msg_n = 0;
	/* about the interface, not a peer: say it once, for all of them */
	whole = n > 1 && (err == -ENODEV || err == -EOPNOTSUPP || err == -EPERM || err == -ETIMEDOUT ||
		err == -ENOBUFS || err == -EBADR);
	if (err && n > 1 && !whole) {
		/* which peer? send them again one by one */
		(*c->c_split)++;
		(*c->c_errors)++;
		memcpy(c->retry, c->msg, n * sizeof(*c->msg));
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
		op = c->msg[i].op;
		if (err && whole) {
			if (!op->err)
				op->err = err;
		} else if (err) {
			entry_failed(c, &c->msg[i], err, ext);
		}
		if (is_last(&c->msg[i]) && ++op->acked == op->n) {
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

/* As many entries as fit, from the queue. */
static void fill(struct ctx *c, struct nlmsghdr *nlh)
{
	struct wge_op *op;

	while ((op = c->q_send) && c->msg_n < c->msg_cap) {
		struct ent_ref e = { op, op->sent, c->ip_pos, 0 };

		if (!put_entry(c, nlh, &e, false))
			return;
		c->msg[c->msg_n++] = e;
		if (op->ent[e.idx].kind == WGE_INSTALL && !e.from)
			c->msg_new++;
		if (!is_last(&e)) {
			c->ip_pos = e.to; /* full: the rest goes next */
			return;
		}
		c->ip_pos = 0;
		if (++op->sent == op->n)
			c->q_send = op->next;
	}
}

/* The message in sbuf has left (or could not): wait for its answer. */
static void sent(struct ctx *c, uint32_t seq, uint32_t len, int err)
{
	sodium_memzero(c->sbuf, len); /* PSKs */
	(*c->c_messages)++;
	if (err) {
		c->set.seq = 1; /* set_answered clears it */
		set_answered(c, err, NULL);
		return;
	}
	c->set.seq = seq;
	arm(c, c->set.timer);
}

/* thread pool: the kernel applies the message while sendmsg runs */
static void send_work(void *arg)
{
	struct ctx *c = arg;

	c->send_started_ns = c->host->now_ns();
	c->send_err = send(c->set.fd, c->sbuf, c->send_len, 0) < 0 ? -errno : 0;
}

static void send_after(void *arg, int status)
{
	struct ctx *c = arg;

	c->sending = false;
	if (status) /* cancelled at shutdown: it did not leave */
		c->send_err = -ECANCELED;
	if (c->closed) {
		sodium_memzero(c->sbuf, c->send_len);
		if (--c->closing == 0)
			wge_closed(c->env);
		return;
	}
	if (!status && c->send_started_ns - c->send_queued_ns > POOL_WAIT_NS) {
		(*c->c_pool_waits)++;
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "a SET of %zu peers waited %llu ms for a thread of the pool (busy with other plugins' work: UV_THREADPOOL_SIZE)",
				     c->msg_n, (unsigned long long)((c->send_started_ns - c->send_queued_ns) / 1000000));
	}
	/* the answer may be waiting already: read it on the next poll */
	uv_poll_start(&c->set.poll, UV_READABLE, on_poll);
	sent(c, c->send_seq, c->send_len, c->send_err);
	pump_set(c);
}

/* Send the next message if the SET socket is free. */
static void pump_set(struct ctx *c)
{
	struct nlmsghdr *nlh;
	struct nlattr *peers;
	uint32_t seq, len;
	ssize_t r;

	if (c->pumping)
		return; /* the loop below picks up what a callback queued */
	c->pumping = true;
	while (!c->set.seq && !c->sending && !c->closed &&
	       (c->retry_pos < c->retry_n || c->q_send)) {
		nlh = msg_begin(c, c->sbuf, c->family, NLM_F_REQUEST | NLM_F_ACK,
				WG_CMD_SET_DEVICE, WG_GENL_VERSION);
		mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, c->conf->e.interface);
		peers = nest_start(nlh, c->msg_size, WGDEVICE_A_PEERS);
		c->msg_n = c->msg_new = 0;
		if (c->retry_pos < c->retry_n) {
			c->msg[0] = c->retry[c->retry_pos++];
			put_entry(c, nlh, &c->msg[0], true); /* it fitted with others */
			c->msg_n = 1;
		} else {
			fill(c, nlh);
		}
		mnl_attr_nest_end(nlh, peers);
		seq = nlh->nlmsg_seq;
		len = nlh->nlmsg_len;
		if (c->msg_new >= OFFLOAD_NEW) {
			/* no reading the SET socket meanwhile: the loop is
			 * the only reader, and the answer is read once the
			 * send has returned */
			c->sending = true;
			c->send_len = len;
			c->send_seq = seq;
			c->send_queued_ns = c->send_started_ns = c->host->now_ns();
			uv_poll_stop(&c->set.poll);
			if (!c->host->queue_work(c->self, send_work, send_after, c)) {
				(*c->c_offloaded)++;
				break;
			}
			c->sending = false;
			uv_poll_start(&c->set.poll, UV_READABLE, on_poll);
		}
		r = send(c->set.fd, nlh, len, 0);
		sent(c, seq, len, r < 0 ? -errno : 0);
	}
	c->pumping = false;
}

/* -------------------------------------------------------- the GET side */

static void dump_finish(struct ctx *c, int err)
{
	char why[160];

	c->dump_running = false;
	c->get.seq = 0;
	c->host->timer_stop(c->get.timer);
	if (err) {
		(*c->c_errors)++;
		c->host->log(c->self, WGGWD_LOG_WARN, "reading the peers of %s: %s",
			     c->conf->e.interface, dev_error(c, err, why, sizeof(why)));
	}
	wge_dump_done(c->env, err, c->d.v, c->d.n); /* may start the next */
}

/* ---------------------------------------------------------- socket I/O */

/* The answer to our SET in one datagram: 1 (and *err) if there is one. */
int set_datagram(struct ctx *c, const uint8_t *buf, size_t len, int *err, const char **ext)
{
	const struct nlmsghdr *nlh;
	bool bad = false;
	size_t off = 0;

	while ((nlh = nl_next(buf, len, &off, &bad))) {
		if (nlh->nlmsg_type != NLMSG_ERROR || !c->set.seq || nlh->nlmsg_seq != c->set.seq)
			continue; /* late, after a timeout */
		if (!nl_err(nlh, err))
			break; /* too short to be an answer */
		*ext = *err ? extack_msg(nlh) : NULL;
		return 1;
	}
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
			if (c->set.seq) /* ENOBUFS: the answer was lost */
				set_answered(c, n, NULL);
			return;
		}
		got = set_datagram(c, c->rbuf, n, &err, &ext);
		if (got) {
			set_answered(c, err, ext);
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
	if (s == &c->set && c->set.seq)
		set_answered(c, -ETIMEDOUT, NULL);
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
	c->msg_n = 0;
	c->ip_pos = 0;
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

	if (s != &c->set || !c->sending) {
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
	if (c->sending)
		c->closing++; /* send_after: the fd stays open until then */
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
	c->msg = calloc(c->msg_cap, sizeof(*c->msg));
	c->retry = calloc(c->msg_cap, sizeof(*c->retry));
	c->rbuf = malloc(RBUF_SIZE);
	c->sbuf = malloc(c->msg_size);
	if (!c->msg || !c->retry || !c->rbuf || !c->sbuf) {
		free(c->msg);
		free(c->retry);
		free(c->rbuf);
		free(c->sbuf);
		free(c);
		return -ENOMEM;
	}
	c->c_errors = env->host->counter(env->self, "netlink_errors");
	c->c_messages = env->host->counter(env->self, "messages");
	c->c_split = env->host->counter(env->self, "messages_split");
	c->c_dump_restarts = env->host->counter(env->self, "dump_restarts");
	c->c_foreign = env->host->counter(env->self, "foreign_messages");
	c->c_offloaded = env->host->counter(env->self, "messages_offloaded");
	c->c_pool_waits = env->host->counter(env->self, "pool_waits"); /* > POOL_WAIT_NS */
	*b = c;
	return 0;
}

static void nl_destroy(void *b)
{
	struct ctx *c = b;

	if (c->set.fd >= 0)
		close(c->set.fd);
	if (c->get.fd >= 0)
		close(c->get.fd);
	dump_reset(&c->d);
	free(c->d.v);
	free(c->d.acc);
	free(c->msg);
	free(c->retry);
	if (c->rbuf)
		sodium_memzero(c->rbuf, RBUF_SIZE);
	free(c->rbuf);
	if (c->sbuf)
		sodium_memzero(c->sbuf, c->msg_size);
	free(c->sbuf);
	free(c);
}

WGE_INSTALLER(nl, "installer-netlink",
	      "installs peers on a kernel WireGuard interface through generic netlink",
	      struct conf, opts, NULL);
