// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* installer-netlink: the sockets (in another netns if asked), the wireguard
 * family, message helpers, and GET_DEVICE dumps (merged across messages). */
#include "installer_netlink.h"

static int nl_open(uint32_t *portid)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	socklen_t sl = sizeof(sa);
	int fd, one = 1, rcv = 4 << 20, ret;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*portid = sa.nl_pid;
	/* connected to the kernel (port 0): the kernel then refuses what
	 * another socket sends to ours (ECONNREFUSED to that sender) */
	sa.nl_pid = 0;
	sa.nl_groups = 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		close(fd);
		return ret;
	}
	/* extended errors; errors do not echo the request (it may hold PSKs) */
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	return fd;
}

struct ns_job {
	const char *path;
	int fd[2];
	uint32_t portid[2];
	int err;
	const char *step;
};

/* On a thread of its own, so that the loop thread never changes netns. */
static void *ns_thread(void *arg)
{
	struct ns_job *j = arg;
	int nsfd, i;

	nsfd = open(j->path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0) {
		j->err = -errno;
		j->step = "open";
		return NULL;
	}
	if (setns(nsfd, CLONE_NEWNET)) {
		j->err = -errno;
		j->step = "setns";
		close(nsfd);
		return NULL;
	}
	close(nsfd);
	for (i = 0; i < 2; i++) {
		j->fd[i] = nl_open(&j->portid[i]);
		if (j->fd[i] < 0) {
			j->err = j->fd[i];
			j->step = "socket";
			return NULL;
		}
	}
	return NULL;
}

int open_sockets(struct ctx *c)
{
	struct ns_job j = { .fd = { -1, -1 } };
	char path[300];
	pthread_t t;
	int ret;

	if (!c->conf->netns) {
		c->set.fd = nl_open(&c->set.portid);
		if (c->set.fd < 0)
			return c->set.fd;
		c->get.fd = nl_open(&c->get.portid);
		return c->get.fd < 0 ? c->get.fd : 0;
	}
	if (c->conf->netns[0] == '/')
		snprintf(path, sizeof(path), "%s", c->conf->netns);
	else
		snprintf(path, sizeof(path), "/var/run/netns/%s", c->conf->netns);
	j.path = path;
	ret = pthread_create(&t, NULL, ns_thread, &j);
	if (ret)
		return -ret;
	pthread_join(t, NULL);
	c->set.fd = j.fd[0];
	c->set.portid = j.portid[0];
	c->get.fd = j.fd[1];
	c->get.portid = j.portid[1];
	if (j.err)
		c->host->log(c->self, WGGWD_LOG_ERROR, "netns %s: %s: %s", path, j.step,
			     strerror(-j.err));
	return j.err;
}

/* ------------------------------------------------ what the kernel sends */

/*
 * One datagram on fd into buf, if the kernel sent it (any thread): the
 * sender's port id (recvmsg's sockaddr_nl) must be 0. With `netns:` the
 * sockets live in a namespace whose owner (root of a container, say)
 * could otherwise send our port answers of its own. Returns the length;
 * 0 for a datagram dropped (wiped; *foreign set, *port its sender's);
 * -errno (-EMSGSIZE: cut short).
 */
int nl_recv_buf(int fd, uint8_t *buf, size_t cap, int flags, bool *foreign, uint32_t *port)
{
	struct sockaddr_nl sa;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr m = { .msg_name = &sa, .msg_namelen = sizeof(sa), .msg_iov = &iov,
			    .msg_iovlen = 1 };
	ssize_t n;

	memset(&sa, 0, sizeof(sa));
	n = recvmsg(fd, &m, flags);
	if (n < 0)
		return -errno;
	if (m.msg_namelen < sizeof(sa) || sa.nl_family != AF_NETLINK || sa.nl_pid) {
		sodium_memzero(buf, (size_t)n < cap ? (size_t)n : cap);
		*foreign = true;
		*port = sa.nl_pid;
		return 0;
	}
	if (m.msg_flags & MSG_TRUNC) {
		sodium_memzero(buf, cap);
		return -EMSGSIZE;
	}
	return (int)n;
}

/* The same into c->rbuf, on the loop: a dropped one counted, logged;
 * the dump socket's reads DUMP_CHUNK (see there). */
int nl_recv(struct ctx *c, int fd, int flags)
{
	bool foreign = false, dump = fd == c->get.fd;
	uint32_t port = 0;
	int n = nl_recv_buf(fd, c->rbuf, dump ? c->dump_chunk : RBUF_SIZE, flags, &foreign, &port);

	if (n == -EMSGSIZE && dump && c->dump_chunk < RBUF_SIZE) {
		c->host->log(c->self, WGGWD_LOG_WARN,
			     "netlink: a dump message over %d bytes: reading %d from now on",
			     DUMP_CHUNK, RBUF_SIZE);
		c->dump_chunk = RBUF_SIZE;
	}
	if (foreign) {
		(*c->c_foreign)++;
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "netlink: dropped a message from port %u, not the kernel's",
				     (unsigned)port);
	}
	return n;
}

/*
 * The next message of a datagram, its length checked before libmnl sees
 * it: mnl_nlmsg_ok() compares nlmsg_len as an int, so 0x80000000 and more
 * pass, and mnl_nlmsg_next()'s MNL_ALIGN wraps 0xfffffffd..0xffffffff to 0
 * (the same message forever) or jumps out of the buffer. NULL at the end,
 * with *bad set if what is left is not one whole message.
 */
const struct nlmsghdr *nl_next(const uint8_t *buf, size_t len, size_t *off, bool *bad)
{
	const struct nlmsghdr *nlh;
	size_t left, step;

	if (*off >= len)
		return NULL;
	left = len - *off;
	nlh = (const struct nlmsghdr *)(buf + *off);
	if (left < NLMSG_HDRLEN || nlh->nlmsg_len < NLMSG_HDRLEN || nlh->nlmsg_len > left) {
		*bad = true;
		*off = len;
		return NULL;
	}
	step = NLMSG_ALIGN((size_t)nlh->nlmsg_len);
	*off += step < left ? step : left;
	return nlh;
}

/* Attributes fill [p, p + len) exactly, each of a length that fits (as
 * mnl_attr_ok(), but a bad one is an error, not the end of the list). */
bool nl_attrs_ok(const void *p, size_t len)
{
	size_t off = 0;

	while (len - off >= NLA_HDRLEN) {
		const struct nlattr *a = (const struct nlattr *)((const uint8_t *)p + off);

		if (a->nla_len < NLA_HDRLEN || a->nla_len > len - off)
			return false;
		off += NLA_ALIGN((size_t)a->nla_len);
		if (off >= len)
			return true;
	}
	return off == len;
}

/* A nest's attributes, checked. */
static bool nest_ok(const struct nlattr *nest)
{
	return nl_attrs_ok(mnl_attr_get_payload(nest), mnl_attr_get_payload_len(nest));
}

/* A generic netlink message: its header, then well-formed attributes. */
bool nl_genl_ok(const struct nlmsghdr *nlh)
{
	size_t plen = nlh->nlmsg_len - NLMSG_HDRLEN;

	return plen >= GENL_HDRLEN &&
	       nl_attrs_ok((const uint8_t *)mnl_nlmsg_get_payload(nlh) + GENL_HDRLEN,
			   plen - GENL_HDRLEN);
}

/* An NLMSG_ERROR's error, if it is long enough to hold the struct. */
bool nl_err(const struct nlmsghdr *nlh, int *err)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

	if (nlh->nlmsg_len - NLMSG_HDRLEN < sizeof(*e))
		return false;
	/* 0 or -errno; anything else (INT_MIN, a positive number) is not
	 * what the kernel sends, and strerror(-x) of it is undefined */
	*err = e->error <= 0 && e->error >= -4095 ? e->error : -EPROTO;
	return true;
}

struct nlmsghdr *msg_begin(struct ctx *c, void *buf, uint16_t type, uint16_t flags,
			   uint8_t cmd, uint8_t version)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct genlmsghdr *g;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = ++c->seqgen ? c->seqgen : ++c->seqgen;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

struct nlattr *nest_start(struct nlmsghdr *nlh, size_t len, uint16_t type)
{
	struct nlattr *a = mnl_attr_nest_start_check(nlh, len, type);

	if (a)
		a->nla_type |= NLA_F_NESTED; /* 6.x refuses nests without it */
	return a;
}

/* The kernel's text for an error, when it gave one (NETLINK_EXT_ACK). */
const char *extack_msg(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	size_t plen = nlh->nlmsg_len - NLMSG_HDRLEN, off = sizeof(*e);
	const struct nlattr *attr;

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS) || plen < off)
		return NULL;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
		/* the request follows, whole */
		if (e->msg.nlmsg_len < sizeof(e->msg) ||
		    e->msg.nlmsg_len - sizeof(e->msg) > plen - off)
			return NULL;
		off += NLMSG_ALIGN((size_t)e->msg.nlmsg_len - sizeof(e->msg));
	}
	if (plen < off || !nl_attrs_ok((const uint8_t *)e + off, plen - off))
		return NULL;
	mnl_attr_for_each_payload((const struct nlattr *)((const uint8_t *)e + off), plen - off) {
		if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			return mnl_attr_get_str(attr);
	}
	return NULL;
}

/* The next datagram from the kernel into c->rbuf, waiting up to timeout
 * (foreign ones are dropped and do not count as progress). */
static int sync_recv(struct ctx *c, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r, n;

	for (;;) {
		r = poll(&p, 1, (int)c->conf->e.timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -ETIMEDOUT;
		n = nl_recv(c, fd, 0);
		if (n == -EINTR || !n)
			continue;
		return n;
	}
}

int resolve_family(struct ctx *c)
{
	uint8_t buf[1024];
	struct nlmsghdr *nlh = msg_begin(c, buf, GENL_ID_CTRL, NLM_F_REQUEST,
					 CTRL_CMD_GETFAMILY, 1);
	uint32_t seq = nlh->nlmsg_seq;
	const struct nlmsghdr *m;
	const struct nlattr *a;
	bool bad = false;
	size_t off;
	int n, err;

	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
	if (send(c->set.fd, nlh, nlh->nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		n = sync_recv(c, c->set.fd);
		if (n < 0)
			return n;
		for (off = 0; (m = nl_next(c->rbuf, n, &off, &bad));) {
			if (m->nlmsg_seq != seq)
				continue;
			if (m->nlmsg_type == NLMSG_ERROR) {
				if (!nl_err(m, &err))
					return -EPROTO;
				return err ? err : -ENOENT;
			}
			if (!nl_genl_ok(m))
				return -EPROTO;
			mnl_attr_for_each(a, m, GENL_HDRLEN) {
				if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID &&
				    !mnl_attr_validate(a, MNL_TYPE_U16)) {
					c->family = mnl_attr_get_u16(a);
					return 0;
				}
			}
			return -ENOENT;
		}
		if (bad)
			return -EPROTO;
	}
}

/* ----------------------------------------------------------- dump parse */

void dump_reset(struct dump *d)
{
	d->n = 0;
	d->intr = false;
	sodium_memzero(d->priv, sizeof(d->priv));
	d->has_priv = d->has_pub = false;
	d->port = 0;
}

static struct wggwd_peer_state *dump_peer(struct dump *d, const uint8_t *key)
{
	struct wggwd_peer_state *p;

	/* a peer cut in two continues in the next message's first element */
	if (d->n && !memcmp(d->v[d->n - 1].public_key, key, WGGWD_KEY_LEN))
		return &d->v[d->n - 1];
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 256;
		void *v = realloc(d->v, cap * sizeof(*d->v));

		if (!v)
			return NULL;
		d->v = v;
		if (d->fill) {
			v = realloc(d->acc, cap * sizeof(*d->acc));
			if (!v)
				return NULL;
			d->acc = v;
		}
		d->cap = cap;
	}
	if (d->fill && !d->acc) {
		d->acc = calloc(d->cap, sizeof(*d->acc));
		if (!d->acc)
			return NULL;
	}
	p = &d->v[d->n];
	memset(p, 0, sizeof(*p));
	p->size = sizeof(*p);
	memcpy(p->public_key, key, WGGWD_KEY_LEN);
	if (d->fill)
		memset(&d->acc[d->n], 0, sizeof(d->acc[0]));
	d->n++;
	return p;
}

static int parse_allowed(struct ctx *c, struct wge_acc *a, const struct nlattr *nest)
{
	const struct nlattr *ip, *x;

	if (!nest_ok(nest))
		return -EPROTO;
	mnl_attr_for_each_nested(ip, nest) {
		uint16_t family = 0;
		uint8_t cidr = 0;
		const uint8_t *addr = NULL;
		size_t alen = 0;

		if (!nest_ok(ip))
			return -EPROTO;
		mnl_attr_for_each_nested(x, ip) {
			switch (mnl_attr_get_type(x)) {
			case WGALLOWEDIP_A_FAMILY:
				if (mnl_attr_validate(x, MNL_TYPE_U16))
					return -EPROTO;
				family = mnl_attr_get_u16(x);
				break;
			case WGALLOWEDIP_A_IPADDR:
				addr = mnl_attr_get_payload(x);
				alen = mnl_attr_get_payload_len(x);
				break;
			case WGALLOWEDIP_A_CIDR_MASK:
				if (mnl_attr_validate(x, MNL_TYPE_U8))
					return -EPROTO;
				cidr = mnl_attr_get_u8(x);
				break;
			}
		}
		if (!addr || !((family == AF_INET && alen == 4) || (family == AF_INET6 && alen == 16)))
			return -EPROTO;
		if (a) {
			struct wggwd_allowed_ip in = { .family = family, .cidr = cidr };

			memcpy(in.addr, addr, alen);
			wge_acc_ip(c->env, a, &in);
		}
	}
	return 0;
}

static int parse_peer(struct ctx *c, struct dump *d, const struct nlattr *nest)
{
	const struct nlattr *tb[WGPEER_A_MAX + 1] = { 0 }, *a;
	struct wggwd_peer_state *p;
	size_t len;

	if (!nest_ok(nest))
		return -EPROTO;
	mnl_attr_for_each_nested(a, nest) {
		uint16_t t = mnl_attr_get_type(a);

		if (t <= WGPEER_A_MAX)
			tb[t] = a; /* type 0 is padding: never read */
	}
	if (!tb[WGPEER_A_PUBLIC_KEY] || mnl_attr_get_payload_len(tb[WGPEER_A_PUBLIC_KEY]) != WGGWD_KEY_LEN)
		return -EPROTO;
	p = dump_peer(d, mnl_attr_get_payload(tb[WGPEER_A_PUBLIC_KEY]));
	if (!p)
		return -ENOMEM;
	if ((a = tb[WGPEER_A_ENDPOINT])) {
		len = mnl_attr_get_payload_len(a);
		if (len == sizeof(struct sockaddr_in) || len == sizeof(struct sockaddr_in6))
			memcpy(&p->endpoint, mnl_attr_get_payload(a), len);
	}
	if ((a = tb[WGPEER_A_LAST_HANDSHAKE_TIME]) && mnl_attr_get_payload_len(a) == 16) {
		int64_t ts[2];

		memcpy(ts, mnl_attr_get_payload(a), sizeof(ts));
		p->last_handshake_sec = ts[0];
		p->last_handshake_nsec = (uint32_t)ts[1];
	}
	if ((a = tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL]) && !mnl_attr_validate(a, MNL_TYPE_U16))
		p->keepalive = mnl_attr_get_u16(a);
	if ((a = tb[WGPEER_A_RX_BYTES]) && !mnl_attr_validate(a, MNL_TYPE_U64))
		p->rx_bytes = mnl_attr_get_u64(a);
	if ((a = tb[WGPEER_A_TX_BYTES]) && !mnl_attr_validate(a, MNL_TYPE_U64))
		p->tx_bytes = mnl_attr_get_u64(a);
	if (d->fill) {
		struct wge_acc *acc = &d->acc[p - d->v];

		if ((a = tb[WGPEER_A_PRESHARED_KEY]) && mnl_attr_get_payload_len(a) == WGGWD_KEY_LEN)
			wge_acc_psk(c->env, acc, mnl_attr_get_payload(a));
	}
	if ((a = tb[WGPEER_A_ALLOWEDIPS]))
		return parse_allowed(c, d->fill ? &d->acc[p - d->v] : NULL, a);
	return 0;
}

/*
 * One message of a GET_DEVICE dump. Returns 0 for more to come, 1 when
 * the dump is complete, or -errno.
 */
int dump_msg(struct ctx *c, struct dump *d, const struct nlmsghdr *nlh)
{
	const struct nlattr *a, *pa;
	int ret;

	if (nlh->nlmsg_type == NLMSG_DONE) {
		if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
			int err;

			memcpy(&err, mnl_nlmsg_get_payload(nlh), sizeof(err));
			if (err) /* -errno; anything else is not the kernel's */
				return err < 0 && err >= -4095 ? err : -EPROTO;
		}
		return 1;
	}
	if (nlh->nlmsg_type == NLMSG_ERROR) {
		int err;

		if (!nl_err(nlh, &err))
			return -EPROTO;
		return err ? err : 1;
	}
	if (nlh->nlmsg_type != c->family)
		return 0; /* NLMSG_NOOP, or not ours */
	if (!nl_genl_ok(nlh))
		return -EPROTO;
	if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
		d->intr = true;
	mnl_attr_for_each(a, nlh, GENL_HDRLEN) {
		switch (mnl_attr_get_type(a)) {
		case WGDEVICE_A_PRIVATE_KEY:
			if (mnl_attr_get_payload_len(a) == WGGWD_KEY_LEN) {
				memcpy(d->priv, mnl_attr_get_payload(a), WGGWD_KEY_LEN);
				d->has_priv = !sodium_is_zero(d->priv, WGGWD_KEY_LEN);
			}
			break;
		case WGDEVICE_A_PUBLIC_KEY:
			if (mnl_attr_get_payload_len(a) == WGGWD_KEY_LEN) {
				memcpy(d->pub, mnl_attr_get_payload(a), WGGWD_KEY_LEN);
				d->has_pub = true;
			}
			break;
		case WGDEVICE_A_LISTEN_PORT:
			if (!mnl_attr_validate(a, MNL_TYPE_U16))
				d->port = mnl_attr_get_u16(a);
			break;
		case WGDEVICE_A_PEERS:
			if (!nest_ok(a))
				return -EPROTO;
			mnl_attr_for_each_nested(pa, a) {
				ret = parse_peer(c, d, pa);
				if (ret)
					return ret;
			}
			break;
		}
	}
	return 0;
}

/* The messages of one datagram of a dump (those of our request): as
 * dump_msg, the first verdict that is not 0; -EPROTO for a malformed one. */
int dump_datagram(struct ctx *c, struct dump *d, const uint8_t *buf, size_t len)
{
	const struct nlmsghdr *nlh;
	bool bad = false;
	size_t off = 0;
	int ret;

	while ((nlh = nl_next(buf, len, &off, &bad))) {
		if (nlh->nlmsg_seq != c->get.seq)
			continue;
		ret = dump_msg(c, d, nlh);
		if (ret)
			return ret;
	}
	return bad ? -EPROTO : 0;
}

int dump_send(struct ctx *c)
{
	uint8_t buf[256];
	struct nlmsghdr *nlh = msg_begin(c, buf, c->family, NLM_F_REQUEST | NLM_F_DUMP,
					 WG_CMD_GET_DEVICE, WG_GENL_VERSION);

	mnl_attr_put_strz(nlh, WGDEVICE_A_IFNAME, c->conf->e.interface);
	if (send(c->get.fd, nlh, nlh->nlmsg_len, 0) < 0)
		return -errno;
	c->get.seq = nlh->nlmsg_seq;
	return 0;
}

const char *dev_error(struct ctx *c, int err, char *buf, size_t len)
{
	switch (err) {
	case -ENODEV:
		snprintf(buf, len, "no interface \"%s\"%s%s", c->conf->e.interface,
			 c->conf->netns ? " in netns " : "", c->conf->netns ? c->conf->netns : "");
		break;
	case -EOPNOTSUPP:
		snprintf(buf, len, "\"%s\" is not a WireGuard interface", c->conf->e.interface);
		break;
	case -EPERM:
		snprintf(buf, len, "not permitted: needs CAP_NET_ADMIN");
		break;
	default:
		snprintf(buf, len, "%s", strerror(-err));
	}
	return buf;
}

/* The first dump, blocking: device, key, port, and the peers there. */
int sync_dump(struct ctx *c)
{
	struct dump *d = &c->d;
	int n, ret, tries = 0;

again:
	dump_reset(d);
	ret = dump_send(c);
	if (ret)
		return ret;
	for (;;) {
		n = sync_recv(c, c->get.fd);
		if (n < 0)
			return n;
		ret = dump_datagram(c, d, c->rbuf, n);
		sodium_memzero(c->rbuf, RBUF_SIZE);
		if (ret < 0)
			return ret;
		if (ret == 1)
			break;
	}
	c->get.seq = 0;
	if (d->intr && ++tries < 5)
		goto again;
	return 0;
}

