// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * installer-netlink against hostile netlink input (issue 12): crafted
 * datagrams go through the plugin's own receive and parse functions (the
 * two sockets' readable handlers, the blocking family lookup and dump),
 * with only the syscalls (recvmsg, recv, send, poll) faked for two fake
 * descriptors: message lengths that wrap libmnl's iterator (0xfffffffd:
 * an endless loop), attribute lengths past their container, NLMSG_ERROR
 * too short to hold its error, a message from a port other than the
 * kernel's. Then real sockets: another socket cannot send to ours.
 * Each call runs under a watchdog: a loop that never ends fails the test.
 * Includes the plugin's .c files for their static functions. TAP.
 * Run: build/plugins/installer-netlink/test-genl
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>
#include <uv.h>

#define FAKE_SET 1000
#define FAKE_GET 1001
#define FAMILY 0x1c

static ssize_t fake_recvmsg(int fd, struct msghdr *m, int flags);
static ssize_t fake_recv(int fd, void *buf, size_t len, int flags);
static ssize_t fake_send(int fd, const void *buf, size_t len, int flags);
static int fake_poll(struct pollfd *p, nfds_t n, int timeout);
#define recvmsg(fd, m, f) fake_recvmsg(fd, m, f)
#define recv(fd, b, l, f) fake_recv(fd, b, l, f)
#define send(fd, b, l, f) fake_send(fd, b, l, f)
#define poll(p, n, t) fake_poll(p, n, t)

#include "installer_netlink.c"
#include "genl.c"

static unsigned n_checks, n_failed;

WGGWD_PRINTF(2, 3) static bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	n_checks++;
	if (!ok)
		n_failed++;
	printf("%s %u - ", ok ? "ok" : "not ok", n_checks);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	return ok;
}

/* A call that does not return within 3 s is an endless loop: it is cut
 * short (siglongjmp) and fails its check. */
static sigjmp_buf watchdog;
static volatile bool hung;

static void on_alarm(int sig)
{
	(void)sig;
	siglongjmp(watchdog, 1);
}

static struct ctx *c;
static int guard_ret;

/* fn(c), or vfn(c), under the watchdog; false if it was cut short */
static bool guarded(void (*vfn)(struct ctx *), int (*fn)(struct ctx *))
{
	hung = false;
	if (sigsetjmp(watchdog, 1) == 0) {
		alarm(3);
		if (vfn)
			vfn(c);
		else
			guard_ret = fn(c);
	} else {
		hung = true;
		printf("# still running after 3 s: cut short\n");
	}
	alarm(0);
	return !hung;
}

#define GUARDED_V(f) guarded(f, NULL)
#define GUARDED_I(f) (guarded(NULL, f), guard_ret)

/* ------------------------------------------------------------ the fakes */

struct dgram {
	uint8_t buf[4096];
	size_t len;
	uint32_t pid;
	int fd;
};

static struct dgram q[16];
static unsigned qh, qt;
static size_t get_read_len; /* what the last read of the dump socket asked for */

static void queue(int fd, const void *buf, size_t len, uint32_t pid)
{
	struct dgram *d = &q[qt++ % 16];

	memcpy(d->buf, buf, len);
	d->len = len;
	d->pid = pid;
	d->fd = fd;
}

static struct dgram *next_for(int fd)
{
	if (qh == qt || q[qh % 16].fd != fd)
		return NULL;
	return &q[qh++ % 16];
}

/* The dump socket's wakeups, until what is queued for it is read (one
 * message a wakeup: READ_BUDGET). */
static void read_get(void)
{
	do
		if (!GUARDED_V(on_get_readable))
			return;
	while (qh != qt && q[qh % 16].fd == FAKE_GET);
}

static ssize_t fake_recvmsg(int fd, struct msghdr *m, int flags)
{
	struct dgram *d;
	size_t n;

	if (fd < FAKE_SET)
		return (recvmsg)(fd, m, flags);
	if (fd == FAKE_GET)
		get_read_len = m->msg_iov[0].iov_len;
	d = next_for(fd);
	if (!d) {
		errno = EAGAIN;
		return -1;
	}
	n = d->len < m->msg_iov[0].iov_len ? d->len : m->msg_iov[0].iov_len;
	memcpy(m->msg_iov[0].iov_base, d->buf, n);
	m->msg_flags = d->len > n ? MSG_TRUNC : 0;
	if (m->msg_name && m->msg_namelen >= sizeof(struct sockaddr_nl)) {
		struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_pid = d->pid };

		memcpy(m->msg_name, &sa, sizeof(sa));
		m->msg_namelen = sizeof(sa);
	}
	return (ssize_t)n;
}

__attribute__((unused)) /* the code before issue 12 called recv */
static ssize_t fake_recv(int fd, void *buf, size_t len, int flags)
{
	struct iovec iov = { buf, len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	return fake_recvmsg(fd, &m, flags);
}

static ssize_t fake_send(int fd, const void *buf, size_t len, int flags)
{
	if (fd < FAKE_SET)
		return (send)(fd, buf, len, flags);
	return (ssize_t)len;
}

static int fake_poll(struct pollfd *p, nfds_t n, int timeout)
{
	if (p->fd < FAKE_SET)
		return (poll)(p, n, timeout);
	if (qh == qt)
		return 0; /* nothing more: a timeout */
	p->revents = POLLIN;
	return 1;
}

/* ------------------------------------------------------------ the host */

static char logs[16384];

WGGWD_PRINTF(3, 4) static void t_log(struct wggwd_inst *self, int level, const char *fmt, ...)
{
	size_t l = strlen(logs);
	va_list ap;

	(void)self;
	(void)level;
	if (l > sizeof(logs) - 512)
		l = 0;
	va_start(ap, fmt);
	vsnprintf(logs + l, sizeof(logs) - l - 1, fmt, ap);
	va_end(ap);
	printf("# log: %s\n", logs + l);
	strcat(logs, "\n");
}

static uint64_t metrics[64];
static unsigned n_metrics;

static uint64_t *t_counter(struct wggwd_inst *self, const char *name)
{
	(void)self;
	(void)name;
	return &metrics[n_metrics++ % 64];
}

static int64_t *t_gauge(struct wggwd_inst *self, const char *name)
{
	(void)self;
	(void)name;
	return (int64_t *)&metrics[n_metrics++ % 64];
}

static uint64_t t_now(void)
{
	return uv_hrtime();
}

static uint64_t t_hash(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = 1469598103934665603ull;

	while (len--)
		h = (h ^ *p++) * 1099511628211ull;
	return h;
}

static int timer_dummy;

static struct wggwd_timer *t_timer_new(struct wggwd_inst *self, wggwd_fn cb, void *arg)
{
	(void)self;
	(void)cb;
	(void)arg;
	return (struct wggwd_timer *)&timer_dummy;
}

static void t_timer_start(struct wggwd_timer *t, uint64_t timeout, uint64_t repeat)
{
	(void)t;
	(void)timeout;
	(void)repeat;
}

static void t_timer_stop(struct wggwd_timer *t)
{
	(void)t;
}

static struct wggwd_host host = {
	.size = sizeof(host), .log = t_log, .log_limited = t_log, .counter = t_counter,
	.gauge = t_gauge, .now_ns = t_now, .realtime_ns = t_now, .hash = t_hash,
	.timer_new = t_timer_new, .timer_start = t_timer_start, .timer_stop = t_timer_stop,
	.timer_free = t_timer_stop,
};

/* ------------------------------------------------------------- messages */

static uint8_t mbuf[4096];

/* A message of our family (GET_DEVICE) in mbuf, with attributes added by
 * the caller through the returned header. */
static struct nlmsghdr *fam_msg(uint32_t seq)
{
	struct nlmsghdr *nlh;
	struct genlmsghdr *g;

	memset(mbuf, 0, sizeof(mbuf));
	nlh = mnl_nlmsg_put_header(mbuf);
	nlh->nlmsg_type = FAMILY;
	nlh->nlmsg_flags = NLM_F_MULTI;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = WG_CMD_GET_DEVICE;
	g->version = WG_GENL_VERSION;
	return nlh;
}

/* NLMSG_DONE or NLMSG_ERROR (error err) in buf; its length. */
static size_t put_ctl(uint8_t *buf, uint16_t type, uint32_t seq, int err)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = type;
	nlh->nlmsg_seq = seq;
	if (type == NLMSG_DONE) {
		int *v = mnl_nlmsg_put_extra_header(nlh, sizeof(int));

		*v = 0;
	} else {
		struct nlmsgerr *e = mnl_nlmsg_put_extra_header(nlh, sizeof(*e));

		e->error = err;
		e->msg.nlmsg_len = sizeof(e->msg);
		e->msg.nlmsg_seq = seq;
		nlh->nlmsg_flags = NLM_F_CAPPED;
	}
	return nlh->nlmsg_len;
}

/* A good peer nest: key and one allowed IP. */
static void put_peer(struct nlmsghdr *nlh, uint8_t id)
{
	struct nlattr *peers = mnl_attr_nest_start(nlh, WGDEVICE_A_PEERS), *p, *ips, *ip;
	uint8_t key[32], addr[4] = { 10, 9, 0, id };

	memset(key, id, sizeof(key));
	p = mnl_attr_nest_start(nlh, 0);
	mnl_attr_put(nlh, WGPEER_A_PUBLIC_KEY, sizeof(key), key);
	ips = mnl_attr_nest_start(nlh, WGPEER_A_ALLOWEDIPS);
	ip = mnl_attr_nest_start(nlh, 0);
	mnl_attr_put_u16(nlh, WGALLOWEDIP_A_FAMILY, AF_INET);
	mnl_attr_put(nlh, WGALLOWEDIP_A_IPADDR, sizeof(addr), addr);
	mnl_attr_put_u8(nlh, WGALLOWEDIP_A_CIDR_MASK, 32);
	mnl_attr_nest_end(nlh, ip);
	mnl_attr_nest_end(nlh, ips);
	mnl_attr_nest_end(nlh, p);
	mnl_attr_nest_end(nlh, peers);
}

/* ---------------------------------------------------------------- tests */

static void *engine;
static struct ctx *captured;

static int cap_create(const struct wge_env *env, const void *conf, void **b)
{
	int ret = nl_create(env, conf, b);

	captured = *b;
	return ret;
}

static bool start_dump(void)
{
	logs[0] = '\0';
	qh = qt = 0;
	return nl_dump(c) == 0 && c->dump_running && c->get.seq;
}

static bool dump_failed(const char *why)
{
	return !hung && !c->dump_running && strstr(logs, "reading the peers of wgt0") && strstr(logs, why);
}

static void test_get(void)
{
	static const uint32_t lens[] = { 0xfffffffd, 0xfffffffe, 0xffffffff, 0x80000000,
					 0x7fffffff, 0x10000, 21, 15, 0 };
	struct nlmsghdr *nlh;
	struct nlattr *a;
	uint8_t dg[4096];
	size_t i, l;
	char name[160];

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		if (!start_dump())
			check(false, "dump started");
		nlh = fam_msg(c->get.seq);
		l = nlh->nlmsg_len;
		nlh->nlmsg_len = lens[i];
		queue(FAKE_GET, mbuf, l, 0);
		snprintf(name, sizeof(name), "dump: a message of %zu bytes saying nlmsg_len %#x",
			 l, lens[i]);
		read_get();
		check(dump_failed("Protocol error"), "%s ends the dump (protocol error)", name);
	}
	/* the same behind a good message in one datagram */
	if (!start_dump())
		check(false, "dump started");
	nlh = fam_msg(c->get.seq);
	mnl_attr_put_u16(nlh, WGDEVICE_A_LISTEN_PORT, 51820);
	l = nlh->nlmsg_len;
	memcpy(dg, mbuf, l);
	nlh = fam_msg(c->get.seq);
	nlh->nlmsg_len = 0xfffffffd;
	memcpy(dg + l, mbuf, 20);
	queue(FAKE_GET, dg, l + 20, 0);
	read_get();
	check(dump_failed("Protocol error"), "dump: nlmsg_len 0xfffffffd in a second message ends the dump");

	/* attributes whose lengths do not fit their container */
	for (i = 0; i < 5; i++) {
		static const char *const what[] = {
			"the peers nest longer than the message",
			"an attribute shorter than its header",
			"a peer nest longer than the peers nest",
			"an allowed IP longer than its nest",
			"a message cut inside its generic netlink header",
		};
		if (!start_dump())
			check(false, "dump started");
		nlh = fam_msg(c->get.seq);
		put_peer(nlh, 7);
		a = (struct nlattr *)((uint8_t *)nlh + NLMSG_HDRLEN + GENL_HDRLEN);
		switch (i) {
		case 0:
			a->nla_len = 0xfff0;
			break;
		case 1:
			a->nla_len = 2;
			break;
		case 2:
			((struct nlattr *)mnl_attr_get_payload(a))->nla_len = a->nla_len;
			break;
		case 3: {
			/* peers > peer > key, allowedips > ip: make ip overrun */
			struct nlattr *p = mnl_attr_get_payload(a), *x;

			mnl_attr_for_each_nested(x, p)
				if (mnl_attr_get_type(x) == WGPEER_A_ALLOWEDIPS)
					((struct nlattr *)mnl_attr_get_payload(x))->nla_len += 8;
			break;
		}
		case 4:
			nlh->nlmsg_len = NLMSG_HDRLEN + 2;
			break;
		}
		queue(FAKE_GET, mbuf, nlh->nlmsg_len, 0);
		read_get();
		check(dump_failed("Protocol error"), "dump: %s is a protocol error", what[i]);
	}

	/* NLMSG_ERROR too short to hold its error */
	if (!start_dump())
		check(false, "dump started");
	l = put_ctl(dg, NLMSG_ERROR, c->get.seq, 0);
	((struct nlmsghdr *)dg)->nlmsg_len = NLMSG_HDRLEN + 2;
	queue(FAKE_GET, dg, NLMSG_HDRLEN + 2, 0);
	read_get();
	check(dump_failed("Protocol error"),
	      "dump: an NLMSG_ERROR of 2 bytes is a protocol error (not success read past its end)");

	/* from another port: ignored; then the kernel's */
	if (!start_dump())
		check(false, "dump started");
	nlh = fam_msg(c->get.seq);
	put_peer(nlh, 5);
	queue(FAKE_GET, mbuf, nlh->nlmsg_len, 4242);
	l = put_ctl(dg, NLMSG_DONE, c->get.seq, 0);
	queue(FAKE_GET, dg, l, 4242);
	read_get();
	check(c->dump_running && c->d.n == 0,
	      "dump: a peer and NLMSG_DONE from port 4242 (not the kernel) are dropped");
	nlh = fam_msg(c->get.seq);
	put_peer(nlh, 6);
	queue(FAKE_GET, mbuf, nlh->nlmsg_len, 0);
	queue(FAKE_GET, dg, l, 0);
	read_get();
	check(!c->dump_running && c->d.n == 1 && c->d.v[0].public_key[0] == 6 &&
	      !strstr(logs, "reading the peers"),
	      "dump: the kernel's peer and NLMSG_DONE complete it (1 peer)");
	check(get_read_len == DUMP_CHUNK,
	      "dump: read %d bytes at a time, so the kernel's messages hold the loop that long at most (asked %zu)",
	      DUMP_CHUNK, get_read_len);

	/* a message over the read (a kernel that fills more than asked):
	 * that dump fails, the next ones read RBUF_SIZE and succeed */
	c->dump_chunk = 64;
	if (!start_dump())
		check(false, "dump started");
	nlh = fam_msg(c->get.seq);
	put_peer(nlh, 7);
	queue(FAKE_GET, mbuf, nlh->nlmsg_len, 0);
	read_get();
	check(dump_failed("Message too long") && c->dump_chunk == RBUF_SIZE &&
	      strstr(logs, "a dump message over"),
	      "dump: a message over the read ends that dump (EMSGSIZE, logged); reads grow to %d (now %zu)",
	      RBUF_SIZE, c->dump_chunk);
	if (!start_dump())
		check(false, "dump started");
	nlh = fam_msg(c->get.seq);
	put_peer(nlh, 8);
	queue(FAKE_GET, mbuf, nlh->nlmsg_len, 0);
	l = put_ctl(dg, NLMSG_DONE, c->get.seq, 0);
	queue(FAKE_GET, dg, l, 0);
	read_get();
	check(!c->dump_running && c->d.n == 1 && c->d.v[0].public_key[0] == 8 &&
	      get_read_len == RBUF_SIZE, "dump: the next one reads %zu bytes and completes (1 peer)",
	      get_read_len);
	c->dump_chunk = DUMP_CHUNK;

}

static void test_set(void)
{
	static const uint32_t lens[] = { 0xfffffffd, 0xffffffff, 0x80000000 };
	uint8_t dg[256];
	size_t i, l;
	char name[128];

	c->set.seq = 77;
	c->one.n = 0;
	c->await = &c->one;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		qh = qt = 0;
		l = put_ctl(dg, NLMSG_ERROR, 77, 0);
		((struct nlmsghdr *)dg)->nlmsg_len = lens[i];
		queue(FAKE_SET, dg, l, 0);
		snprintf(name, sizeof(name), "set: an ack saying nlmsg_len %#x", lens[i]);
		GUARDED_V(on_set_readable);
		check(!hung && c->set.seq == 77, "%s is not an answer (still waiting)", name);
	}
	qh = qt = 0;
	l = put_ctl(dg, NLMSG_ERROR, 77, 0);
	((struct nlmsghdr *)dg)->nlmsg_len = NLMSG_HDRLEN + 2;
	queue(FAKE_SET, dg, NLMSG_HDRLEN + 2, 0);
	GUARDED_V(on_set_readable);
	check(c->set.seq == 77, "set: an ack of 2 bytes is not an answer (still waiting)");
	l = put_ctl(dg, NLMSG_ERROR, 77, 0);
	queue(FAKE_SET, dg, l, 4242);
	GUARDED_V(on_set_readable);
	check(c->set.seq == 77, "set: an ack from port 4242 (not the kernel) is not an answer");
	queue(FAKE_SET, dg, l, 0);
	GUARDED_V(on_set_readable);
	check(c->set.seq == 0, "set: the kernel's ack answers it");
}

static void test_sync(void)
{
	struct nlmsghdr *nlh;
	uint8_t dg[256];
	size_t l;
	int ret = 0;

	/* resolve_family: its reply, hostile, then from another port */
	qh = qt = 0;
	c->family = 0;
	nlh = mnl_nlmsg_put_header(dg);
	nlh->nlmsg_type = GENL_ID_CTRL;
	nlh->nlmsg_seq = c->seqgen + 1;
	nlh->nlmsg_len = 0xfffffffd;
	queue(FAKE_SET, dg, 20, 0);
	ret = GUARDED_I(resolve_family);
	check(!hung && ret == -EPROTO, "resolve_family: nlmsg_len 0xfffffffd is a protocol error (%d)", ret);

	qh = qt = 0;
	memset(mbuf, 0, sizeof(mbuf));
	nlh = mnl_nlmsg_put_header(mbuf);
	nlh->nlmsg_type = GENL_ID_CTRL;
	nlh->nlmsg_seq = c->seqgen + 1;
	mnl_nlmsg_put_extra_header(nlh, GENL_HDRLEN);
	mnl_attr_put_u16(nlh, CTRL_ATTR_FAMILY_ID, 0x99);
	queue(FAKE_SET, mbuf, nlh->nlmsg_len, 4242);
	memset(mbuf, 0, sizeof(mbuf));
	nlh = mnl_nlmsg_put_header(mbuf);
	nlh->nlmsg_type = GENL_ID_CTRL;
	nlh->nlmsg_seq = c->seqgen + 1;
	mnl_nlmsg_put_extra_header(nlh, GENL_HDRLEN);
	mnl_attr_put_u16(nlh, CTRL_ATTR_FAMILY_ID, FAMILY);
	queue(FAKE_SET, mbuf, nlh->nlmsg_len, 0);
	ret = GUARDED_I(resolve_family);
	check(ret == 0 && c->family == FAMILY,
	      "resolve_family: a reply from port 4242 is dropped; the kernel's is used (family %#x)",
	      c->family);

	/* the blocking dump at start */
	qh = qt = 0;
	c->get.seq = 0;
	nlh = fam_msg(c->seqgen + 1);
	l = nlh->nlmsg_len;
	nlh->nlmsg_len = 0xfffffffd;
	queue(FAKE_GET, mbuf, l, 0);
	ret = GUARDED_I(sync_dump);
	check(!hung && ret == -EPROTO, "sync_dump (start): nlmsg_len 0xfffffffd is a protocol error (%d)", ret);
}

/* Real sockets: what another netlink socket sends to ours. */
static void test_real(void)
{
	struct sockaddr_nl to = { .nl_family = AF_NETLINK };
	struct sockaddr_nl me = { .nl_family = AF_NETLINK };
	uint8_t dg[64];
	size_t l;
	ssize_t r;
	int fd, ret, err;

	c->set.fd = c->get.fd = -1;
	ret = open_sockets(c);
	if (ret) {
		printf("ok %u - real netlink sockets # SKIP %s\n", ++n_checks, strerror(-ret));
		return;
	}
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me))) {
		printf("ok %u - another netlink socket # SKIP %s\n", ++n_checks, strerror(errno));
		return;
	}
	l = put_ctl(dg, NLMSG_DONE, 1, 0);
	to.nl_pid = c->get.portid;
	r = sendto(fd, dg, l, 0, (struct sockaddr *)&to, sizeof(to));
	err = errno;
	if (r < 0 && err == EPERM) {
		printf("ok %u - another socket sends to ours # SKIP needs CAP_NET_ADMIN\n", ++n_checks);
	} else {
		check(r < 0 && err == ECONNREFUSED,
		      "real sockets: the kernel refuses what another socket sends to ours (%s)",
		      r < 0 ? strerror(err) : "it was sent");
		usleep(10000);
		r = (recv)(c->get.fd, dg, sizeof(dg), MSG_DONTWAIT);
		check(r < 0 && errno == EAGAIN, "real sockets: nothing of it waits on our socket");
	}
	close(fd);
}

int main(void)
{
	struct conf cf = { .e = { .interface = "wgt0", .timeout_ms = 200, .restore_poll_ms = 500,
				  .restore_timeout_ms = 120000 },
			   .message_size = 32768 };
	struct wge_backend be = nl_backend;
	int ret;

	signal(SIGALRM, on_alarm);
	host.loop = uv_default_loop();
	be.create = cap_create;
	ret = wge_create(&host, NULL, &cf, &be, &engine);
	if (ret) {
		printf("not ok 1 - wge_create: %s\n1..1\n", strerror(-ret));
		return 1;
	}
	c = captured;
	c->set.fd = FAKE_SET;
	c->get.fd = FAKE_GET;
	c->family = FAMILY;
	c->set.timer = c->get.timer = (struct wggwd_timer *)&timer_dummy;
	c->ready = true;
	test_get();
	test_set();
	test_sync();
	test_real();
	if (c->set.fd >= FAKE_SET)
		c->set.fd = -1;
	if (c->get.fd >= FAKE_SET)
		c->get.fd = -1;
	wge_destroy(engine);
	printf("1..%u\n", n_checks);
	return n_failed ? 1 : 0;
}
