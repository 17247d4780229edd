// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * libFuzzer target: store-sqlite (all its files) on a hostile database.
 * Each run writes the store's own empty database (made once, at start,
 * by the store itself), fills its tables with rows from the input (any
 * type, length or blob SQLite accepts: INSERT OR REPLACE with bound
 * values), may rewind user_version so that the migrations meet tables
 * that exist, then runs the store: start (schema check, integrity check,
 * the reconcile against a fake installer's dump, adoption, retirement,
 * re-installs), lookups, pulled answers kept, pushed adds and removals,
 * the sweeper and commits (its timers), stop.
 *
 * Input: [flags][dump][rows...][0xff][operations...]
 *   flags: &3 unknown_peers (ignore, adopt, remove); >>2 &3 integrity_check;
 *          16 a push pipeline; 32 a pull pipeline with a resolver after
 *          (cache), else one with the resolver before (keep); 64 set
 *          user_version to dump>>5 % 5 after the rows; 128 the installer
 *          cannot list its peers at first
 *   dump: bit k (0..3) key k is on the interface; bit 4 a key the store
 *          does not know is too
 *   a row: [table % 4: peer, negative, stamp, ratelimit] then one value
 *          per column: [type] + data; type % 8: 0 NULL, 1 key [k] (k&3:
 *          key k; k&4: 31 bytes of it), 2 int8, 3 int64 (8 bytes), 4 blob
 *          [len] + len bytes, 5 text [len] + bytes, 6 real (8 bytes),
 *          7 now in ms + int16 seconds
 *   an operation: [op] op&7: 0 lookup key op>>3&3 (then the resolver's
 *          answer if it missed), 1 push add, 2 push remove, 3 run the
 *          timers, 4 a pulled answer kept (keep), 5 an eviction (REMOVE,
 *          idle), 6 the daemon's retire items for what the store retired,
 *          7 a replayed timestamp lookup
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "stubhost.h"
#include "store.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const struct wggwd_plugin wggwd_plugin;

static char dir[64], path[96];
static uint8_t *tmpl;
static size_t tmpl_len;
static const char *const tables[4] = { "peer", "negative", "stamp", "ratelimit" };
static int ncols[4];

/* -------------------------------------------------- a fake installer */

static wggwd_dump_cb dump_cb;
static void *dump_arg;
static int dump_fail;

static int fake_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	(void)ctx;
	dump_cb = cb;
	dump_arg = arg;
	return 0;
}

static int fake_device(void *ctx, struct wggwd_device *dev)
{
	(void)ctx;
	memset(dev, 0, dev->size);
	return -ENODATA;
}

static const struct wggwd_ops fake_ops = {
	.size = sizeof(struct wggwd_ops),
	.device = fake_device,
	.dump = fake_dump,
};
static const struct wggwd_installer fake_ins = { .ctx = NULL, .ops = &fake_ops, .name = "fake" };

static void key_of(unsigned k, uint8_t key[WGGWD_KEY_LEN])
{
	memset(key, 0x11 * (k + 1), WGGWD_KEY_LEN);
	key[0] = k;
}

/* Answer the store's dump request, if any: the keys of `dump`. */
static void answer_dump(uint8_t dump)
{
	struct wggwd_peer_state ps[5];
	wggwd_dump_cb cb = dump_cb;
	size_t n = 0;
	unsigned k;

	if (!cb)
		return;
	dump_cb = NULL;
	if (dump_fail) {
		dump_fail = 0;
		cb(dump_arg, -EAGAIN, NULL, 0, sizeof(ps[0]));
		return;
	}
	memset(ps, 0, sizeof(ps));
	for (k = 0; k < 5; k++) {
		if (!(dump & (1u << k)))
			continue;
		ps[n].size = sizeof(ps[n]);
		key_of(k == 4 ? 9 : k, ps[n].public_key);
		ps[n].origin = k & 1 ? WGGWD_ORIGIN_PUSH : WGGWD_ORIGIN_NONE;
		n++;
	}
	cb(dump_arg, 0, ps, n, sizeof(ps[0]));
}

/* ----------------------------------------------------------- set-up */

static void run_store(const uint8_t *ops, size_t n_ops, uint8_t flags, uint8_t dump);

static void rm_db(void)
{
	char p[128];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

static void cleanup(void)
{
	char p[128];

	rm_db();
	snprintf(p, sizeof(p), "%s/store.db-journal", dir);
	unlink(p);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	struct stat sb;
	int fd, i;

	(void)argc;
	(void)argv;
	stub_init();
	stub_set_installer(&fake_ins);
	/* tmpfs: the store fsyncs its commits */
	snprintf(dir, sizeof(dir), "%s/fuzz-sqlite.XXXXXX", access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm");
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/store.db", dir);
	/* the store makes its own database: the template */
	run_store(NULL, 0, 0x10, 0);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		abort();
	sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE", NULL, NULL,
		     NULL);
	for (i = 0; i < 4; i++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", tables[i]);
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
			abort();
		while (sqlite3_step(st) == SQLITE_ROW)
			ncols[i]++;
		sqlite3_finalize(st);
		if (!ncols[i])
			abort(); /* the schema changed: this target needs a look */
	}
	sqlite3_close(db);
	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &sb))
		abort();
	tmpl_len = sb.st_size;
	tmpl = malloc(tmpl_len);
	if (!tmpl || read(fd, tmpl, tmpl_len) != (ssize_t)tmpl_len)
		abort();
	close(fd);
	atexit(cleanup);
	return 0;
}

struct in {
	const uint8_t *p;
	size_t n;
};

static int get(struct in *in)
{
	if (!in->n)
		return -1;
	in->n--;
	return *in->p++;
}

static bool take(struct in *in, void *out, size_t n)
{
	if (in->n < n)
		return false;
	memcpy(out, in->p, n);
	in->p += n;
	in->n -= n;
	return true;
}

/* One value of a row into parameter i. */
static bool bind_value(sqlite3_stmt *st, int i, struct in *in)
{
	uint8_t key[WGGWD_KEY_LEN];
	int t = get(in), b;
	int64_t v;
	double d;
	int16_t s;

	if (t < 0)
		return false;
	switch (t & 7) {
	case 0:
		sqlite3_bind_null(st, i);
		return true;
	case 1:
		if ((b = get(in)) < 0)
			return false;
		key_of(b & 3, key);
		sqlite3_bind_blob(st, i, key, b & 4 ? WGGWD_KEY_LEN - 1 : WGGWD_KEY_LEN,
				  SQLITE_TRANSIENT);
		return true;
	case 2:
		if ((b = get(in)) < 0)
			return false;
		sqlite3_bind_int64(st, i, (int8_t)b);
		return true;
	case 3:
		if (!take(in, &v, sizeof(v)))
			return false;
		sqlite3_bind_int64(st, i, v);
		return true;
	case 4:
	case 5:
		if ((b = get(in)) < 0 || (size_t)b > in->n)
			return false;
		if ((t & 7) == 4)
			sqlite3_bind_blob(st, i, b ? (const void *)in->p : "", b, SQLITE_TRANSIENT);
		else
			sqlite3_bind_text(st, i, (const char *)in->p, b, SQLITE_TRANSIENT);
		in->p += b;
		in->n -= b;
		return true;
	case 6:
		if (!take(in, &d, sizeof(d)))
			return false;
		sqlite3_bind_double(st, i, d);
		return true;
	default:
		if (!take(in, &s, sizeof(s)))
			return false;
		sqlite3_bind_int64(st, i, (int64_t)(stub_host.realtime_ns() / 1000000) +
					      (int64_t)s * 1000);
		return true;
	}
}

/* The database for this run: the template, the input's rows. */
static bool make_db(struct in *in, uint8_t flags, uint8_t dump)
{
	sqlite3 *db;
	int fd, t, i;
	bool ok = true;

	rm_db();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, tmpl, tmpl_len) != (ssize_t)tmpl_len)
		abort();
	close(fd);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		abort();
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	while ((t = get(in)) >= 0 && t != 0xff) {
		char sql[128];
		sqlite3_stmt *st;
		size_t n;

		t &= 3;
		n = snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO %s VALUES (?", tables[t]);
		for (i = 1; i < ncols[t]; i++)
			n += snprintf(sql + n, sizeof(sql) - n, ",?");
		snprintf(sql + n, sizeof(sql) - n, ")");
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
			abort();
		for (i = 1; i <= ncols[t] && ok; i++)
			ok = bind_value(st, i, in);
		if (ok)
			sqlite3_step(st); /* constraints may refuse it: fine */
		sqlite3_finalize(st);
		if (!ok)
			break;
	}
	if (flags & 64) {
		char sql[64];

		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", (dump >> 5) % 5);
		sqlite3_exec(db, sql, NULL, NULL, NULL);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return true;
}

/* ------------------------------------------------------------ items */

static void finish(void *ctx, struct wggwd_item *it, int v)
{
	if (v == WGGWD_PENDING)
		return; /* host->complete brings it back */
	wggwd_plugin.ops->done(ctx, it, v);
	stub_host.item_free(STUB_SELF, it);
}

static void settle(void *ctx)
{
	struct wggwd_item *it;
	int v, i;

	for (i = 0; i < 4; i++) {
		stub_drain();
		while ((it = stub_next_completed(&v))) {
			wggwd_plugin.ops->done(ctx, it, v);
			stub_host.item_free(STUB_SELF, it);
		}
	}
	stub_free_injected();
}

static struct wggwd_item *new_item(unsigned k)
{
	struct wggwd_item *it = stub_host.item_new(STUB_SELF);

	if (!it)
		abort();
	key_of(k, it->public_key);
	return it;
}

static void fill_peer(struct wggwd_item *it, unsigned k, bool push)
{
	struct wggwd_allowed_ip *a = stub_host.allowed_reserve(STUB_SELF, it, 2);

	it->type |= WGGWD_MSG_PEER;
	it->peer->has |= WGGWD_PEER_HAS_PUBLIC_KEY | WGGWD_PEER_HAS_ALLOWED_IPS |
			 WGGWD_PEER_HAS_KEEPALIVE | WGGWD_PEER_HAS_TTL;
	memcpy(it->peer->public_key, it->public_key, WGGWD_KEY_LEN);
	it->peer->ttl_s = 60;
	it->peer->keepalive = 25;
	if (a) {
		a[0].family = AF_INET;
		a[0].cidr = 32;
		a[0].addr[0] = 10;
		a[0].addr[3] = k + 1;
		a[1].family = AF_INET6;
		a[1].cidr = 128;
		a[1].addr[0] = 0xfd;
		a[1].addr[15] = k + 1;
	}
	if (push) {
		it->transport = WGGWD_TR_PUSH;
		it->peer->origin = WGGWD_ORIGIN_PUSH;
		it->peer->has |= WGGWD_PEER_HAS_VERSION | WGGWD_PEER_HAS_ENDPOINT;
		it->peer->version = 5 + k;
		it->peer->endpoint.in4.sin_family = AF_INET;
		it->peer->endpoint.in4.sin_port = htons(51820);
	} else {
		it->peer->origin = WGGWD_ORIGIN_PULL;
	}
}

static void operation(void *ctx, uint8_t op, uint8_t flags, uint8_t dump)
{
	const struct wggwd_ops *o = wggwd_plugin.ops;
	unsigned k = (op >> 3) & 3, i, n;
	struct wggwd_item *it;
	int v;

	switch (op & 7) {
	case 0:
	case 7: /* a knock: lookup, then the resolver, then the store */
		it = new_item(k);
		it->type = WGGWD_MSG_PKT | WGGWD_MSG_PEER_KEY;
		it->transport = WGGWD_TR_UDP;
		it->flags = WGGWD_ITEM_MAC1_OK | WGGWD_ITEM_AUTHENTICATED | WGGWD_ITEM_HAS_TIMESTAMP;
		memset(it->tai64n, (op & 7) == 7 ? 0x00 : 0x40 + (op >> 5), sizeof(it->tai64n));
		v = o->lookup(ctx, it);
		if (v == WGGWD_CONTINUE && !(it->flags & WGGWD_ITEM_CACHED)) {
			if (op & 0x80) { /* the resolver does not know it */
				it->flags |= WGGWD_ITEM_NOT_FOUND;
				it->reason = WGGWD_R_UNKNOWN_KEY;
				v = WGGWD_DROP;
			} else {
				fill_peer(it, k, false);
				v = o->process(ctx, it);
			}
		}
		finish(ctx, it, v);
		break;
	case 1:
	case 2: /* pushed */
		it = new_item(k);
		fill_peer(it, k, true);
		if ((op & 7) == 2) {
			it->op = WGGWD_OP_REMOVE;
			it->reason = WGGWD_R_PUSHED;
		}
		finish(ctx, it, o->process(ctx, it));
		break;
	case 3:
		answer_dump(dump);
		stub_fire_timers();
		break;
	case 4: /* a resolver's answer before the store (keep) */
		it = new_item(k);
		it->type = WGGWD_MSG_PEER_KEY;
		fill_peer(it, k, false);
		finish(ctx, it, o->process(ctx, it));
		break;
	case 5:
		it = new_item(k);
		it->type = WGGWD_MSG_PEER;
		it->op = WGGWD_OP_REMOVE;
		it->reason = WGGWD_R_IDLE;
		it->flags |= WGGWD_ITEM_INJECTED;
		finish(ctx, it, o->process(ctx, it));
		break;
	case 6: /* the core's REMOVE items for what the store retired */
		n = stub_retired < STUB_RETIRED_MAX ? stub_retired : STUB_RETIRED_MAX;
		for (i = 0; i < n; i++) {
			it = stub_host.item_new(STUB_SELF);
			if (!it)
				abort();
			memcpy(it->public_key, stub_retired_keys[i], WGGWD_KEY_LEN);
			it->type = WGGWD_MSG_PEER;
			it->op = WGGWD_OP_REMOVE;
			it->reason = WGGWD_R_RECONCILE;
			it->flags |= WGGWD_ITEM_INJECTED;
			v = o->process(ctx, it);
			finish(ctx, it, (op & 0x80) && v == WGGWD_CONTINUE ? WGGWD_ERROR : v);
		}
		stub_retired = 0;
		break;
	}
	(void)flags;
	settle(ctx);
}

static void run_store(const uint8_t *ops, size_t n_ops, uint8_t flags, uint8_t dump)
{
	const struct wggwd_ops *o = wggwd_plugin.ops;
	struct wggwd_link link = { .size = sizeof(link), .pipeline = "fuzz" };
	const char *opt = NULL;
	char buf[256];
	struct conf conf;
	size_t i;
	void *ctx;

	stub_conf_defaults(&wggwd_plugin, &conf);
	conf.path = path;
	conf.unknown_peers = (flags & 3) % 3;
	conf.integrity_check = ((flags >> 2) & 3) % 3;
	conf.lock_timeout_ms = 10;
	if (o->create(&stub_host, STUB_SELF, &conf, &ctx))
		return;
	if (flags & 16) {
		link.source_out = WGGWD_MSG_PEER;
		link.kinds_after = 1u << WGGWD_INSTALLER;
		o->link(ctx, &conf, &link, &opt, buf, sizeof(buf));
	}
	link.source_out = WGGWD_MSG_PKT;
	link.kinds_before = 1u << WGGWD_SOURCE | 1u << WGGWD_DECODER;
	link.kinds_after = 1u << WGGWD_INSTALLER;
	if (flags & 32)
		link.kinds_after |= 1u << WGGWD_RESOLVER;
	else
		link.kinds_before |= 1u << WGGWD_RESOLVER;
	o->link(ctx, &conf, &link, &opt, buf, sizeof(buf));
	dump_cb = NULL;
	dump_fail = flags & 128;
	stub_retired = 0;
	if (o->start(ctx)) {
		stub_free_timers();
		o->destroy(ctx);
		return;
	}
	answer_dump(dump);
	settle(ctx);
	for (i = 0; i < n_ops; i++)
		operation(ctx, ops[i], flags, dump);
	operation(ctx, 3, flags, dump); /* the timers, the dump, once more */
	stub_stopped = 0;
	o->stop(ctx);
	for (i = 0; i < 8 && !stub_stopped; i++) {
		answer_dump(dump);
		settle(ctx);
	}
	if (!stub_stopped)
		stub_fail("stop never finished (host->stopped not called)");
	dump_cb = NULL;
	stub_free_timers();
	o->destroy(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in;
	uint8_t flags, dump;

	if (size < 2)
		return 0;
	flags = data[0];
	dump = data[1];
	in.p = data + 2;
	in.n = size - 2;
	make_db(&in, flags, dump);
	run_store(in.p, in.n > 64 ? 64 : in.n, flags, dump);
	return 0;
}
