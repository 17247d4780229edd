// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * netlink-bench: times installer-netlink's bulk paths against a real kernel
 * WireGuard interface, with no pipeline around it. It dlopens the plugin,
 * hands it a minimal host (the loop, timers, counters, complete) and calls
 * its ops the way the core and the evictor do.
 *
 *   netlink-bench genconf N SEED FILE      append N [Peer] sections to FILE
 *   netlink-bench time NAME CMD [ARG...]   run CMD, print "NAME seconds s"
 *   netlink-bench wide PLUGIN.so N K [option=value...]
 *        N peers of K allowed IPs each (their dump splits peers across
 *        messages); a second instance, started on the full interface, must
 *        find every one of them unchanged; then all are removed
 *   netlink-bench chain PLUGIN.so N [option=value...]
 *        N new peers at once (give a small message_size), one the kernel
 *        refuses at N/2: the thread pool's messages back to back, stopped
 *        at the error, the rest after its entries; prints chain_* lines
 *   netlink-bench errors PLUGIN.so [option=value...]
 *        4 installs, the first alone, the others in one message whose middle
 *        peer the kernel refuses (a /33 IPv4 allowed IP): that message is
 *        re-sent peer by peer, 3 installs succeed, 1 fails with a message
 *        naming its peer; prints that key as "bad_peer KEY"
 *   netlink-bench knock PLUGIN.so ENDPOINT [option=value...]
 *        one knock (an item as a sniffed initiation makes it) of a new key
 *        from ENDPOINT; prints "knock_peer KEY" and the keepalive a dump
 *        then shows ("knock_keepalive N"), and stops the installer (which
 *        must put a keepalive it changed back: the caller checks)
 *   netlink-bench run PLUGIN.so N SEED [option=value...]
 *        install N peers (process(), all at once, as a store restoring after
 *        a reboot does), dump them, remove them (N removal items at once,
 *        as one eviction sweep retires them), dump again; prints
 *        `name value unit` lines.
 *
 * The same SEED gives the same peers (key i, allowed IP 10.x.y.z/32) in
 * both modes. Run as root; the interface must exist.
 */
#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <uv.h>

#include <wggwd/plugin.h>

#include "wgutil.h"
#include "benchhost.h"

/* ------------------------------------------------------------ the peers */

static void peer_key(uint8_t key[32], unsigned long seed, size_t i)
{
	uint8_t in[16];

	memcpy(in, &seed, sizeof(seed));
	memcpy(in + 8, &i, sizeof(i));
	crypto_generichash(key, 32, in, sizeof(in), NULL, 0);
}

static void peer_ip(uint8_t addr[4], size_t i)
{
	size_t v = i + 1;

	addr[0] = 10;
	addr[1] = (v >> 16) & 0xff;
	addr[2] = (v >> 8) & 0xff;
	addr[3] = v & 0xff;
}

static int genconf(size_t n, unsigned long seed, const char *path)
{
	FILE *f = fopen(path, "a"); /* after the [Interface] section */
	uint8_t key[32], ip[4];
	char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	size_t i;

	if (!f) {
		perror(path);
		return 1;
	}
	for (i = 0; i < n; i++) {
		peer_key(key, seed, i);
		peer_ip(ip, i);
		sodium_bin2base64(b64, sizeof(b64), key, 32, sodium_base64_VARIANT_ORIGINAL);
		fprintf(f, "[Peer]\nPublicKey = %s\nAllowedIPs = %u.%u.%u.%u/32\n\n", b64, ip[0],
			ip[1], ip[2], ip[3]);
	}
	return fclose(f) ? 1 : 0;
}

/* ------------------------------------------------------ a minimal host */

struct wggwd_inst {
	int dummy;
};

static struct wggwd_inst inst;
static size_t completed, failed;
static bool stopped;
static uint64_t counters[64];
static int64_t gauges[16];
static const char *counter_names[64];
static size_t ncounters, ngauges;

static void h_log(struct wggwd_inst *in, int level, const char *fmt, ...)
{
	va_list ap;

	(void)in;
	if (level > WGGWD_LOG_INFO)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "# [installer-netlink] ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static const char *h_name(struct wggwd_inst *in)
{
	(void)in;
	return "bench";
}

static uint64_t *h_counter(struct wggwd_inst *in, const char *name)
{
	(void)in;
	counter_names[ncounters] = name;
	return &counters[ncounters++ % 64];
}

static int64_t *h_gauge(struct wggwd_inst *in, const char *name)
{
	(void)in;
	(void)name;
	return &gauges[ngauges++ % 16];
}

static void h_complete(struct wggwd_inst *in, struct wggwd_item *it, int verdict)
{
	(void)in;
	(void)it;
	if (verdict == WGGWD_CONTINUE)
		completed++;
	else
		failed++;
}

static void h_stopped(struct wggwd_inst *in)
{
	(void)in;
	stopped = true;
}

static const struct wggwd_installer *h_installer(struct wggwd_inst *in)
{
	(void)in;
	return NULL;
}

static struct wggwd_host host = {
	.size = sizeof(struct wggwd_host),
	.abi_major = WGGWD_ABI_MAJOR,
	.abi_minor = WGGWD_ABI_MINOR,
	.log = h_log,
	.log_limited = h_log,
	.name = h_name,
	.now_ns = h_now_ns,
	.realtime_ns = h_realtime_ns,
	.hash = h_hash,
	.counter = h_counter,
	.gauge = h_gauge,
	.timer_new = h_timer_new,
	.timer_start = h_timer_start,
	.timer_stop = h_timer_stop,
	.timer_free = h_timer_free,
	.queue_work = h_queue_work,
	.post = h_post,
	.complete = h_complete,
	.stopped = h_stopped,
	.installer = h_installer,
};

/* Fill the plugin's conf from its option table: defaults, then argv. */
static int64_t parse_num(const char *s, int type)
{
	char *end;
	double v = strtod(s, &end);

	if (type == WGGWD_OPT_DURATION) {
		if (!strcmp(end, "ms") || !*end)
			return (int64_t)v;
		if (!strcmp(end, "s"))
			return (int64_t)(v * 1000);
		if (!strcmp(end, "m"))
			return (int64_t)(v * 60000);
		if (!strcmp(end, "h"))
			return (int64_t)(v * 3600000);
	}
	if (type == WGGWD_OPT_SIZE) {
		if (*end == 'k' || *end == 'K')
			return (int64_t)(v * 1024);
		if (*end == 'm' || *end == 'M')
			return (int64_t)(v * 1048576);
	}
	return (int64_t)v;
}

static int fill_conf(const struct wggwd_plugin *p, void *conf, int argc, char **argv)
{
	const struct wggwd_opt *o;
	int i, k;

	for (o = p->opts; o && o->name; o++) {
		const char *val = o->def;
		void *f = (char *)conf + o->offset;
		size_t nl = strlen(o->name);

		for (i = 0; i < argc; i++)
			if (!strncmp(argv[i], o->name, nl) && argv[i][nl] == '=')
				val = argv[i] + nl + 1;
		if (!val)
			continue;
		switch (o->type) {
		case WGGWD_OPT_STR:
		case WGGWD_OPT_PATH:
			*(char **)f = strdup(val);
			break;
		case WGGWD_OPT_BOOL:
			*(bool *)f = !strcmp(val, "true");
			break;
		case WGGWD_OPT_INT:
		case WGGWD_OPT_DURATION:
			*(int64_t *)f = parse_num(val, o->type);
			break;
		case WGGWD_OPT_SIZE:
			*(uint64_t *)f = (uint64_t)parse_num(val, o->type);
			break;
		case WGGWD_OPT_ENUM:
			for (k = 0; o->choices[k]; k++)
				if (!strcmp(o->choices[k], val))
					*(int *)f = k;
			break;
		default:
			fprintf(stderr, "option %s: type not handled here\n", o->name);
			return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------- timing */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(int who, bool sys)
{
	struct rusage ru;
	struct timeval *tv = sys ? &ru.ru_stime : &ru.ru_utime;

	getrusage(who, &ru);
	return tv->tv_sec + tv->tv_usec / 1e6;
}

static bool dump_done;
static int dump_status;
static size_t dump_n;
static uint8_t want_key[32];
static int want_keepalive = -1; /* of want_key, in the last dump */

/* chain: the keys to look for in a dump (but the one at n_look / 2),
 * and how many of them it had */
static const struct wggwd_item *look_for;
static size_t n_look, n_found;

static void on_dump(void *arg, int status, const struct wggwd_peer_state *peers, size_t n,
		    size_t stride)
{
	size_t i, j;

	(void)arg;
	dump_done = true;
	dump_status = status;
	dump_n = n;
	for (i = 0; i < n; i++) {
		const struct wggwd_peer_state *p = WGGWD_AT(const struct wggwd_peer_state, peers, i,
							    stride);

		if (!memcmp(p->public_key, want_key, 32))
			want_keepalive = p->keepalive;
		for (j = 0; j < n_look; j++)
			if (j != n_look / 2 &&
			    !memcmp(p->public_key, look_for[j].peer->public_key, 32))
				n_found++;
	}
}

/* n items, each with its peer and k allowed IPs, as the core makes them */
static struct wggwd_item *items_new(size_t n, unsigned k)
{
	struct wggwd_item *items = calloc(n, sizeof(*items));
	struct wggwd_peer *peers = calloc(n, sizeof(*peers));
	struct wggwd_allowed_ip *ips = calloc(n * k, sizeof(*ips));
	size_t i;

	if (!items || !peers || !ips)
		return NULL;
	for (i = 0; i < n; i++) {
		items[i].size = sizeof(items[i]);
		items[i].peer = &peers[i];
		peers[i].size = sizeof(peers[i]);
		peers[i].allowed = &ips[i * k];
	}
	return items;
}

/* Every item through process() at once; returns how many failed. */
static size_t process_all(const struct wggwd_ops *ops, void *ctx, struct wggwd_item *items,
			  size_t n, uint32_t op)
{
	size_t i;

	completed = failed = 0;
	for (i = 0; i < n; i++) {
		int v;

		items[i].op = op;
		items[i].flags = 0;
		v = ops->process(ctx, &items[i]);
		if (v == WGGWD_CONTINUE)
			completed++;
		else if (v != WGGWD_PENDING)
			failed++;
	}
	while (completed + failed < n)
		uv_run(loop, UV_RUN_ONCE);
	return failed;
}

static void run_until(bool *flag)
{
	while (!*flag)
		uv_run(loop, UV_RUN_ONCE);
}

static int timed_dump(const struct wggwd_ops *ops, void *ctx, double *secs)
{
	double t0 = now_s();

	dump_done = false;
	if (ops->dump(ctx, on_dump, NULL))
		return -1;
	run_until(&dump_done);
	*secs = now_s() - t0;
	return dump_status ? -1 : 0;
}

static const char *suffix(size_t n)
{
	static char buf[16];
	int e = 0;

	while (n >= 10 && n % 10 == 0) {
		n /= 10;
		e++;
	}
	if (n == 1)
		snprintf(buf, sizeof(buf), "1e%d", e);
	else
		snprintf(buf, sizeof(buf), "%zue%d", n, e);
	return buf;
}

static int run(const char *so, size_t n, unsigned long seed, int argc, char **argv)
{
	const struct wggwd_plugin *p;
	const struct wggwd_ops *ops;
	struct wggwd_item *items;
	uint8_t (*keys)[32];
	void *h, *conf, *ctx;
	double u0, s0, t0, t_queue, t_install, t_dump, t_remove, t_dump0;
	bool done = false;
	size_t i, before;
	const char *sfx = suffix(n);

	h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	p = dlsym(h, WGGWD_PLUGIN_SYMBOL);
	if (!p || p->kind != WGGWD_INSTALLER) {
		fprintf(stderr, "%s: not an installer plugin\n", so);
		return 1;
	}
	ops = p->ops;
	conf = calloc(1, p->conf_size);
	if (fill_conf(p, conf, argc, argv))
		return 1;
	loop = uv_default_loop();
	host.loop = loop;
	bh_post_init();
	if (ops->create(&host, &inst, conf, &ctx) || ops->start(ctx)) {
		fprintf(stderr, "the installer did not start\n");
		return 1;
	}
	items = items_new(n, 1);
	keys = calloc(n, sizeof(*keys));
	if (!items || !keys)
		return 1;
	for (i = 0; i < n; i++) {
		struct wggwd_item *it = &items[i];

		it->type = WGGWD_MSG_PEER;
		it->op = WGGWD_OP_ADD;
		it->transport = WGGWD_TR_PUSH;
		peer_key(keys[i], seed, i);
		memcpy(it->peer->public_key, keys[i], 32);
		it->peer->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS |
				WGGWD_PEER_HAS_KEEPALIVE;
		it->peer->n_allowed = 1;
		it->peer->allowed[0].family = AF_INET;
		it->peer->allowed[0].cidr = 32;
		peer_ip(it->peer->allowed[0].addr, i);
		it->peer->origin = WGGWD_ORIGIN_PUSH;
	}
	if (timed_dump(ops, ctx, &t_dump0))
		return 1;
	before = dump_n; /* peers that were there already */

	/* install: every item at once, as a store re-installing does */
	completed = failed = 0;
	u0 = cpu_s(RUSAGE_SELF, false);
	s0 = cpu_s(RUSAGE_SELF, true);
	t0 = now_s();
	for (i = 0; i < n; i++) {
		int v = ops->process(ctx, &items[i]);

		if (v == WGGWD_CONTINUE)
			completed++;
		else if (v != WGGWD_PENDING)
			failed++;
	}
	t_queue = now_s() - t0;
	while (completed + failed < n)
		uv_run(loop, UV_RUN_ONCE);
	t_install = now_s() - t0;
	if (failed) {
		fprintf(stderr, "%zu installs failed\n", failed);
		return 1;
	}
	printf("install_s_%s %.3f s\n", sfx, t_install);
	printf("install_rate_%s %.0f peers/s\n", sfx, n / t_install);
	printf("install_queue_s_%s %.3f s\n", sfx, t_queue);
	printf("install_user_s_%s %.3f s\n", sfx, cpu_s(RUSAGE_SELF, false) - u0);
	printf("install_sys_s_%s %.3f s\n", sfx, cpu_s(RUSAGE_SELF, true) - s0);

	if (timed_dump(ops, ctx, &t_dump))
		return 1;
	printf("dump_s_%s %.3f s\n", sfx, t_dump);
	printf("dump_peers_%s %zu peers\n", sfx, dump_n);
	if (dump_n != before + n) {
		fprintf(stderr, "dump: %zu peers, expected %zu\n", dump_n, before + n);
		return 1;
	}

	/* an unchanged re-install costs no netlink at all */
	completed = failed = 0;
	t0 = now_s();
	for (i = 0; i < n; i++) {
		memset(&items[i].flags, 0, sizeof(items[i].flags));
		if (ops->process(ctx, &items[i]) == WGGWD_CONTINUE &&
		    (items[i].flags & WGGWD_ITEM_UNCHANGED))
			completed++;
	}
	printf("reinstall_unchanged_s_%s %.3f s\n", sfx, now_s() - t0);
	if (completed != n) {
		fprintf(stderr, "re-install: %zu of %zu unchanged\n", completed, n);
		return 1;
	}

	/* remove: every peer at once, as one eviction sweep retires them */
	t0 = now_s();
	if (process_all(ops, ctx, items, n, WGGWD_OP_REMOVE)) {
		fprintf(stderr, "remove: %zu failed\n", failed);
		return 1;
	}
	t_remove = now_s() - t0;
	printf("remove_s_%s %.3f s\n", sfx, t_remove);
	printf("remove_to_install_%s %.2f ratio\n", sfx, t_remove / t_install);
	if (timed_dump(ops, ctx, &t_dump))
		return 1;
	printf("dump_after_remove_peers_%s %zu peers\n", sfx, dump_n);
	for (i = 0; i < ncounters && i < 64; i++)
		if (!strcmp(counter_names[i], "messages"))
			printf("install_remove_messages_%s %llu messages\n", sfx,
			       (unsigned long long)counters[i]);
		else if (!strcmp(counter_names[i], "messages_offloaded"))
			printf("install_remove_offloaded_%s %llu messages\n", sfx,
			       (unsigned long long)counters[i]);
		else if (!strcmp(counter_names[i], "messages_chained"))
			printf("install_remove_chained_%s %llu messages\n", sfx,
			       (unsigned long long)counters[i]);
	ops->stop(ctx);
	while (!stopped)
		uv_run(loop, UV_RUN_ONCE);
	uv_run(loop, UV_RUN_NOWAIT);
	ops->destroy(ctx);
	bh_post_fini();
	done = uv_loop_close(loop) == 0;
	if (!done)
		fprintf(stderr, "the loop was not closed cleanly\n");
	(void)t_dump0;
	if (dump_n != before)
		fprintf(stderr, "after the removal: %zu peers, expected %zu\n", dump_n, before);
	return dump_n == before && done ? 0 : 1;
}

static int time_cmd(const char *name, char **argv)
{
	double t0 = now_s();
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return 1;
	if (!pid) {
		execvp(argv[0], argv);
		perror(argv[0]);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return 1;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "%s failed\n", argv[0]);
		return 1;
	}
	printf("%s %.3f s\n", name, now_s() - t0);
	printf("%s_user %.3f s\n", name, cpu_s(RUSAGE_CHILDREN, false));
	printf("%s_sys %.3f s\n", name, cpu_s(RUSAGE_CHILDREN, true));
	return 0;
}

static const struct wggwd_ops *start_one(const char *so, int argc, char **argv, void **ctx)
{
	const struct wggwd_plugin *p;
	void *h, *conf;

	h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	p = h ? dlsym(h, WGGWD_PLUGIN_SYMBOL) : NULL;
	if (!p)
		return NULL;
	conf = calloc(1, p->conf_size);
	if (fill_conf(p, conf, argc, argv))
		return NULL;
	loop = uv_default_loop();
	host.loop = loop;
	bh_post_init();
	stopped = false;
	if (p->ops->create(&host, &inst, conf, ctx) || p->ops->start(*ctx))
		return NULL;
	return p->ops;
}

static void stop_one(const struct wggwd_ops *ops, void *ctx)
{
	ops->stop(ctx);
	while (!stopped)
		uv_run(loop, UV_RUN_ONCE);
	uv_run(loop, UV_RUN_NOWAIT);
	ops->destroy(ctx);
}

static int wide(const char *so, size_t n, unsigned k, int argc, char **argv)
{
	const struct wggwd_ops *ops;
	struct wggwd_item *items = k >= 1 && k <= 100000 ? items_new(n, k) : NULL;
	uint8_t (*keys)[32] = calloc(n, sizeof(*keys));
	size_t i, unchanged = 0, before;
	unsigned j;
	void *ctx;
	double t;

	if (!items || !keys)
		return 1;
	for (i = 0; i < n; i++) {
		struct wggwd_peer *pe = items[i].peer;

		items[i].type = WGGWD_MSG_PEER;
		items[i].transport = WGGWD_TR_PUSH;
		peer_key(keys[i], 77, i);
		memcpy(pe->public_key, keys[i], 32);
		pe->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS |
			  WGGWD_PEER_HAS_PRESHARED_KEY | WGGWD_PEER_HAS_KEEPALIVE;
		pe->keepalive = 15;
		randombytes_buf(pe->preshared_key, 32);
		pe->n_allowed = k;
		pe->allowed[0].family = AF_INET;
		pe->allowed[0].cidr = 32;
		peer_ip(pe->allowed[0].addr, 70000 + i);
		for (j = 1; j < k; j++) { /* fd00::<i>:<j>/128, a /120 now and then */
			struct wggwd_allowed_ip *ip = &pe->allowed[j];

			ip->family = AF_INET6;
			ip->cidr = j % 7 ? 128 : 120;
			ip->addr[0] = 0xfd;
			ip->addr[10] = i >> 16;
			ip->addr[11] = i >> 8;
			ip->addr[12] = i;
			ip->addr[13] = j >> 8;
			ip->addr[14] = j;
			ip->addr[15] = j % 7 ? 1 : 0;
		}
	}
	ops = start_one(so, argc, argv, &ctx);
	if (!ops || timed_dump(ops, ctx, &t))
		return 1;
	before = dump_n;
	completed = failed = 0;
	for (i = 0; i < n; i++)
		if (ops->process(ctx, &items[i]) != WGGWD_PENDING)
			failed++;
	while (completed + failed < n)
		uv_run(loop, UV_RUN_ONCE);
	if (failed || timed_dump(ops, ctx, &t))
		return 1;
	printf("wide_installed %zu\nwide_dump_peers %zu\n", completed, dump_n - before);
	stop_one(ops, ctx);
	if (dump_n - before != n)
		return 1;
	/* a new instance reads them all (split peers merged) at start */
	ops = start_one(so, argc, argv, &ctx);
	if (!ops)
		return 1;
	for (i = 0; i < n; i++) {
		items[i].flags = 0;
		if (ops->process(ctx, &items[i]) == WGGWD_CONTINUE &&
		    (items[i].flags & WGGWD_ITEM_UNCHANGED))
			unchanged++;
	}
	printf("wide_unchanged_after_restart %zu\n", unchanged);
	failed = process_all(ops, ctx, items, n, WGGWD_OP_REMOVE);
	stop_one(ops, ctx);
	return unchanged == n && !failed ? 0 : 1;
}

static int errors(const char *so, int argc, char **argv)
{
	const struct wggwd_plugin *p;
	const struct wggwd_ops *ops;
	struct wggwd_item *items = items_new(4, 1);
	uint8_t keys[4][32];
	char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	void *h, *conf, *ctx;
	size_t i;

	h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	p = h ? dlsym(h, WGGWD_PLUGIN_SYMBOL) : NULL;
	if (!p)
		return 1;
	ops = p->ops;
	conf = calloc(1, p->conf_size);
	if (fill_conf(p, conf, argc, argv))
		return 1;
	loop = uv_default_loop();
	host.loop = loop;
	bh_post_init();
	if (ops->create(&host, &inst, conf, &ctx) || ops->start(ctx))
		return 1;
	if (!items)
		return 1;
	for (i = 0; i < 4; i++) {
		struct wggwd_item *it = &items[i];

		it->type = WGGWD_MSG_PEER;
		it->transport = WGGWD_TR_PUSH;
		peer_key(keys[i], 99, i);
		memcpy(it->peer->public_key, keys[i], 32);
		it->peer->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS;
		it->peer->n_allowed = 1;
		it->peer->allowed[0].family = AF_INET;
		it->peer->allowed[0].cidr = i == 2 ? 33 : 32; /* the kernel says EINVAL */
		peer_ip(it->peer->allowed[0].addr, 60000 + i);
	}
	sodium_bin2base64(b64, sizeof(b64), keys[2], 32, sodium_base64_VARIANT_ORIGINAL);
	printf("bad_peer %s\n", b64);
	completed = failed = 0;
	for (i = 0; i < 4; i++) /* the first goes alone, the other 3 in one message */
		if (ops->process(ctx, &items[i]) != WGGWD_PENDING)
			failed++;
	while (completed + failed < 4)
		uv_run(loop, UV_RUN_ONCE);
	printf("errors_completed %zu\nerrors_failed %zu\n", completed, failed);
	i = completed == 3 && failed == 1;
	failed = process_all(ops, ctx, items, 4, WGGWD_OP_REMOVE);
	ops->stop(ctx);
	while (!stopped)
		uv_run(loop, UV_RUN_ONCE);
	ops->destroy(ctx);
	return i && !failed ? 0 : 1;
}

static uint64_t counter_of(const char *name)
{
	size_t i;

	for (i = 0; i < ncounters && i < 64; i++)
		if (!strcmp(counter_names[i], name))
			return counters[i];
	return 0;
}

/*
 * N new peers at once, in messages of message_size (give a small one), a
 * peer the kernel refuses at N/2: the messages go from the thread pool
 * back to back, the one with the bad peer stops them and is re-sent entry
 * by entry, then the ones built behind it go: N-1 installed (the dump
 * agrees), one failed; then all removed.
 */
static int chain(const char *so, size_t n, int argc, char **argv)
{
	struct wggwd_item *items = items_new(n, 1);
	const struct wggwd_ops *ops;
	size_t i, before, bad = n / 2;
	char b64[WG_KEY_B64_LEN];
	void *ctx;
	double t;
	int ok;

	if (!items || !n)
		return 1;
	ops = start_one(so, argc, argv, &ctx);
	if (!ops || timed_dump(ops, ctx, &t))
		return 1;
	before = dump_n;
	for (i = 0; i < n; i++) {
		struct wggwd_item *it = &items[i];

		it->type = WGGWD_MSG_PEER;
		it->transport = WGGWD_TR_PUSH;
		peer_key(it->peer->public_key, 98, i);
		it->peer->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS;
		it->peer->n_allowed = 1;
		it->peer->allowed[0].family = AF_INET;
		it->peer->allowed[0].cidr = i == bad ? 33 : 32; /* the kernel says EINVAL */
		peer_ip(it->peer->allowed[0].addr, 70000 + i);
	}
	wg_key_to_b64(b64, items[bad].peer->public_key);
	printf("bad_peer %s\n", b64);
	process_all(ops, ctx, items, n, WGGWD_OP_ADD);
	printf("chain_completed %zu\nchain_failed %zu\n", completed, failed);
	ok = completed == n - 1 && failed == 1;
	/* the refused one may be there too (without allowed IPs: the kernel
	 * creates a peer before it reads them) */
	look_for = items;
	n_look = n;
	n_found = 0;
	if (timed_dump(ops, ctx, &t))
		return 1;
	n_look = 0;
	printf("chain_dump_peers %zu\n", n_found);
	ok = ok && n_found == n - 1;
	printf("chain_messages %llu\nchain_chained %llu\nchain_split %llu\n",
	       (unsigned long long)counter_of("messages"),
	       (unsigned long long)counter_of("messages_chained"),
	       (unsigned long long)counter_of("messages_split"));
	ok = ok && counter_of("messages_chained") > 0 && counter_of("messages_split") == 1;
	items[bad].peer->allowed[0].cidr = 32;
	if (process_all(ops, ctx, items, n, WGGWD_OP_REMOVE) || timed_dump(ops, ctx, &t))
		return 1;
	ok = ok && dump_n == before;
	stop_one(ops, ctx);
	return ok ? 0 : 1;
}

static int knock(const char *so, const char *ep, int argc, char **argv)
{
	struct wggwd_item *it = items_new(1, 1);
	const struct wggwd_ops *ops;
	char b64[WG_KEY_B64_LEN];
	void *ctx;
	double t;

	if (!it || wg_sockaddr_parse(&it->endpoint, ep))
		return 1;
	it->type = WGGWD_MSG_PEER;
	it->transport = WGGWD_TR_UDP;
	randombytes_buf(want_key, 32);
	memcpy(it->public_key, want_key, 32);
	memcpy(it->peer->public_key, want_key, 32);
	it->peer->has = WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS;
	it->peer->n_allowed = 1;
	it->peer->allowed[0].family = AF_INET;
	it->peer->allowed[0].cidr = 32;
	peer_ip(it->peer->allowed[0].addr, 90000);
	ops = start_one(so, argc, argv, &ctx);
	if (!ops || process_all(ops, ctx, it, 1, WGGWD_OP_ADD) || timed_dump(ops, ctx, &t))
		return 1;
	wg_key_to_b64(b64, want_key);
	printf("knock_peer %s\nknock_keepalive %d\n", b64, want_keepalive);
	stop_one(ops, ctx);
	return 0;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 1;
	randombytes_buf(hash_key, sizeof(hash_key));
	if (argc == 5 && !strcmp(argv[1], "genconf"))
		return genconf(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0), argv[4]);
	if (argc >= 5 && !strcmp(argv[1], "wide"))
		return wide(argv[2], strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0), argc - 5,
			    argv + 5);
	if (argc >= 4 && !strcmp(argv[1], "knock"))
		return knock(argv[2], argv[3], argc - 4, argv + 4);
	if (argc >= 4 && !strcmp(argv[1], "chain"))
		return chain(argv[2], strtoul(argv[3], NULL, 0), argc - 4, argv + 4);
	if (argc >= 3 && !strcmp(argv[1], "errors"))
		return errors(argv[2], argc - 3, argv + 3);
	if (argc >= 4 && !strcmp(argv[1], "time"))
		return time_cmd(argv[2], argv + 3);
	if (argc >= 5 && !strcmp(argv[1], "run"))
		return run(argv[2], strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0), argc - 5,
			   argv + 5);
	fprintf(stderr, "usage: %s genconf N SEED FILE | time NAME CMD... | run PLUGIN.so N SEED [option=value...]\n",
		argv[0]);
	return 2;
}
