// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * Cached-lookup latency of store-sqlite with N keys in the store.
 *
 * Compiles the plugin's own sources (no dlopen) under a minimal host: the
 * loop, timers and thread pool are real libuv, so batched commits and
 * background checkpoints happen as in the daemon. Steps:
 *   1. start the store on a fresh file (creates the schema), stop it;
 *   2. fill it directly with SQLite: N pulled peers (one allowed IP,
 *      unexpired) and N timestamps, keys in order;
 *   3. start the store again (integrity_check quick: start_ms);
 *   4. time M lookups of random existing keys, each with a newer
 *      timestamp: the replay check, the timestamp write (batched) and the
 *      peer read, i.e. the whole cache-hit path of the lookup op.
 *
 *   store_bench DB N M  ->  `name value unit` lines (suffix _1eK for N=10^K)
 *
 * The plugin's files are #included (the bench reaches into its statics);
 * live.c, command.c and preflight.c are compiled beside (bench/store.sh).
 */
#include "../plugins/store-sqlite/store_sqlite.c"
#include "../plugins/store-sqlite/schema.c"
#include "../plugins/store-sqlite/row.c"
#include "../plugins/store-sqlite/batch.c"
#include "../plugins/store-sqlite/cache.c"
#include "../plugins/store-sqlite/push.c"
#include "../plugins/store-sqlite/reconcile.c"

#include <math.h>
#include <stdarg.h>

#include "benchhost.h"

static uint64_t counters[64];
static int64_t gauges[16];
static unsigned n_counters, n_gauges;

static void h_log(struct wggwd_inst *in, int level, const char *fmt, ...)
{
	va_list ap;

	(void)in;
	if (level > WGGWD_LOG_WARN)
		return;
	va_start(ap, fmt);
	fputs("# store: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static const char *h_name(struct wggwd_inst *in)
{
	(void)in;
	return "store";
}

static uint64_t *h_counter(struct wggwd_inst *in, const char *name)
{
	(void)in;
	(void)name;
	return &counters[n_counters++ % 64];
}

static int64_t *h_gauge(struct wggwd_inst *in, const char *name)
{
	(void)in;
	(void)name;
	return &gauges[n_gauges++ % 16];
}

/* An item with its peer and one stage slot, as the core allocates it. */
struct bitem {
	struct wggwd_item it;
	struct wggwd_peer peer;
	void *slot;
};

static void item_reset(struct bitem *b)
{
	free(b->peer.allowed);
	memset(b, 0, sizeof(*b));
	b->it.size = sizeof(b->it);
	b->it.peer = &b->peer;
	b->peer.size = sizeof(b->peer);
}

static struct wggwd_item *h_item_new(struct wggwd_inst *in)
{
	struct bitem *b = calloc(1, sizeof(*b));

	(void)in;
	if (b)
		item_reset(b);
	return b ? &b->it : NULL;
}

static void h_item_free(struct wggwd_inst *in, struct wggwd_item *it)
{
	struct bitem *b = (struct bitem *)it;

	(void)in;
	free(b->peer.allowed);
	free(b);
}

static struct wggwd_allowed_ip *h_allowed_reserve(struct wggwd_inst *in, struct wggwd_item *it,
						   size_t n)
{
	struct wggwd_peer *p = it->peer;
	struct wggwd_allowed_ip *a = realloc(p->allowed, (p->n_allowed + n) * sizeof(*a));

	(void)in;
	if (!a)
		return NULL;
	p->allowed = a;
	memset(a + p->n_allowed, 0, n * sizeof(*a));
	p->n_allowed += n;
	return a + p->n_allowed - n;
}

static void **h_slot(struct wggwd_inst *in, struct wggwd_item *it)
{
	(void)in;
	return &((struct bitem *)it)->slot;
}

static const char *h_reason_name(uint32_t r)
{
	(void)r;
	return "reason";
}

static int h_retire(struct wggwd_inst *in, const uint8_t key[WGGWD_KEY_LEN], uint32_t reason)
{
	(void)in;
	(void)key;
	(void)reason;
	return -ENOENT;
}

static void h_complete(struct wggwd_inst *in, struct wggwd_item *it, int verdict)
{
	(void)in;
	(void)it;
	(void)verdict;
}

static void h_stopped(struct wggwd_inst *in)
{
	(void)in;
}

static const struct wggwd_installer *h_installer(struct wggwd_inst *in)
{
	(void)in;
	return NULL;
}

static int h_inject(struct wggwd_inst *in, struct wggwd_item *it, uint32_t flags)
{
	(void)in;
	(void)flags;
	free(it);
	return -ENOENT;
}

static struct wggwd_host host = {
	.size = sizeof(struct wggwd_host),
	.abi_major = WGGWD_ABI_MAJOR,
	.abi_minor = WGGWD_ABI_MINOR,
	.log = h_log,
	.log_limited = h_log,
	.name = h_name,
	.reason_name = h_reason_name,
	.counter = h_counter,
	.gauge = h_gauge,
	.now_ns = h_now_ns,
	.realtime_ns = h_realtime_ns,
	.hash = h_hash,
	.timer_new = h_timer_new,
	.timer_start = h_timer_start,
	.timer_stop = h_timer_stop,
	.timer_free = h_timer_free,
	.queue_work = h_queue_work,
	.item_new = h_item_new,
	.item_free = h_item_free,
	.allowed_reserve = h_allowed_reserve,
	.slot = h_slot,
	.complete = h_complete,
	.stopped = h_stopped,
	.installer = h_installer,
	.inject = h_inject,
	.retire = h_retire,
};

static uint64_t ns(void)
{
	return h_now_ns();
}

static void bench_key(uint8_t key[32], uint64_t i)
{
	uint8_t msg[11 + 8];
	int k;

	memcpy(msg, "wggwd-bench", 11);
	for (k = 0; k < 8; k++)
		msg[11 + k] = (uint8_t)(i >> (8 * k));
	crypto_generichash(key, 32, msg, sizeof(msg), NULL, 0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static long rss_kib(const char *what)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, what, strlen(what)))
			v = atol(line + strlen(what) + 1);
	fclose(f);
	return v;
}

static int fill(const char *path, uint64_t n)
{
	uint8_t (*keys)[32] = malloc(n * 32), allowed[ALLOWED_REC] = { 4, 32, 10 };
	uint8_t stamp[12] = { 0x40 }; /* older than any lookup below */
	sqlite3 *db;
	sqlite3_stmt *p, *s;
	int64_t now = (int64_t)(h_realtime_ns() / 1000000);
	uint64_t i;

	if (!keys || sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	for (i = 0; i < n; i++)
		bench_key(keys[i], i);
	qsort(keys, n, 32, cmp_key); /* in key order: a fast, compact fill */
	sqlite3_exec(db, "PRAGMA cache_size=-262144; PRAGMA synchronous=OFF; BEGIN", NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "INSERT INTO peer (key, origin, keepalive, allowed, expires, updated)"
			   " VALUES (?1, 1, 25, ?2, ?3, ?4)", -1, &p, NULL);
	sqlite3_prepare_v2(db, "INSERT INTO stamp (key, tai64n, seen) VALUES (?1, ?2, ?3)", -1, &s, NULL);
	for (i = 0; i < n; i++) {
		allowed[3 + 0] = (uint8_t)(i >> 16);
		sqlite3_bind_blob(p, 1, keys[i], 32, SQLITE_STATIC);
		sqlite3_bind_blob(p, 2, allowed, sizeof(allowed), SQLITE_STATIC);
		sqlite3_bind_int64(p, 3, now + 86400000);
		sqlite3_bind_int64(p, 4, now);
		if (sqlite3_step(p) != SQLITE_DONE)
			return -1;
		sqlite3_reset(p);
		sqlite3_bind_blob(s, 1, keys[i], 32, SQLITE_STATIC);
		sqlite3_bind_blob(s, 2, stamp, 12, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, now);
		if (sqlite3_step(s) != SQLITE_DONE)
			return -1;
		sqlite3_reset(s);
	}
	sqlite3_finalize(p);
	sqlite3_finalize(s);
	sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	sqlite3_close(db);
	free(keys);
	return 0;
}

int main(int argc, char **argv)
{
	struct conf cf = {
		.ttl_ms = 3600000, .negative_ttl_ms = 60000, .lookups_per_key = 10,
		.lookup_window_ms = 60000, .commit_interval_ms = 200, .commit_batch = 1000,
		.unknown_peers = UNKNOWN_IGNORE, .integrity_check = CHECK_QUICK,
		.lock_timeout_ms = 2000, .cache_size = 8 << 20, .tombstone_ttl_ms = 86400000,
		.timestamp_ttl_ms = 30 * DAY_MS, .max_negative = 100000, .max_rate_rows = 100000,
		.max_timestamps = 1000000,
	};
	uint64_t n, m, i, t0, t1, *lat, hits = 0, tai = 1000;
	struct wggwd_link link = { .size = sizeof(link), .pipeline = "bench",
				   .source_out = WGGWD_MSG_PEER_KEY,
				   .kinds_after = 1u << WGGWD_RESOLVER };
	const char *option;
	char why[128];
	struct wggwd_item *it;
	struct bitem *bi;
	char suffix[16];
	void *ctx;
	int e;

	if (argc != 4) {
		fprintf(stderr, "usage: store_bench DB NKEYS NLOOKUPS\n");
		return 2;
	}
	cf.path = argv[1];
	n = strtoull(argv[2], NULL, 10);
	m = strtoull(argv[3], NULL, 10);
	e = (int)lround(log10((double)n));
	snprintf(suffix, sizeof(suffix), "_1e%d", e);
	if (sodium_init() < 0)
		return 1;
	randombytes_buf(hash_key, sizeof(hash_key));
	loop = uv_default_loop();
	host.loop = loop;
	unlink(cf.path);

	/* 1. schema */
	if (ops.create(&host, NULL, &cf, &ctx) ||
	    ops.link(ctx, &cf, &link, &option, why, sizeof(why)) || ops.start(ctx))
		return 1;
	ops.stop(ctx);
	uv_run(loop, UV_RUN_DEFAULT);
	ops.destroy(ctx);

	/* 2. fill */
	t0 = ns();
	if (fill(cf.path, n)) {
		fprintf(stderr, "fill failed\n");
		return 1;
	}
	printf("fill_s%s %.2f s\n", suffix, (ns() - t0) / 1e9);

	/* 3. start (quick_check) */
	t0 = ns();
	if (ops.create(&host, NULL, &cf, &ctx) ||
	    ops.link(ctx, &cf, &link, &option, why, sizeof(why)) || ops.start(ctx))
		return 1;
	printf("start_ms%s %.0f ms\n", suffix, (ns() - t0) / 1e6);

	/* 4. lookups */
	lat = calloc(m > 60000 ? m : 60000, sizeof(*lat)); /* and the paced run's */
	it = h_item_new(NULL);
	bi = (struct bitem *)it;
	for (i = 0; i < m + m / 10; i++) {
		uint64_t k = randombytes_uniform((uint32_t)n);
		int v, b;

		item_reset(bi);
		bench_key(it->public_key, k);
		it->type = WGGWD_MSG_PEER_KEY;
		it->flags = WGGWD_ITEM_HAS_TIMESTAMP | WGGWD_ITEM_AUTHENTICATED;
		tai++;
		it->tai64n[0] = 0x40;
		for (b = 0; b < 8; b++)
			it->tai64n[4 + b] = (uint8_t)(tai >> (8 * (7 - b)));
		t1 = ns();
		v = ss_lookup(ctx, it);
		t1 = ns() - t1;
		if (v == WGGWD_CONTINUE && (it->flags & WGGWD_ITEM_CACHED))
			hits++;
		if (i >= m / 10) /* the first tenth warms up */
			lat[i - m / 10] = t1;
		if (i % 256 == 0)
			uv_run(loop, UV_RUN_NOWAIT); /* commit timer, checkpoints */
	}
	qsort(lat, m, sizeof(*lat), cmp_u64);
	printf("lookup_p50_us%s %.1f us\n", suffix, lat[m / 2] / 1e3);
	printf("lookup_p99_us%s %.1f us\n", suffix, lat[m * 99 / 100] / 1e3);
	printf("lookup_p999_us%s %.1f us\n", suffix, lat[m * 999 / 1000] / 1e3);
	printf("lookup_max_us%s %.1f us\n", suffix, lat[m - 1] / 1e3);
	printf("lookup_hit_ratio%s %.3f ratio\n", suffix, (double)hits / (double)(m + m / 10));
	printf("bench_rss_mib%s %.1f MiB\n", suffix, rss_kib("VmRSS") / 1024.0);
	{
		char wal[4096];
		struct stat st;

		snprintf(wal, sizeof(wal), "%s-wal", cf.path);
		printf("wal_mib%s %.1f MiB\n", suffix, stat(wal, &st) ? 0.0 : st.st_size / 1048576.0);
	}

	/* 5. the same at a steady 20,000 lookups/s for 3 s, after a pause:
	 * checkpoints keep up, the WAL starts again from its beginning */
	t0 = ns();
	while (ns() - t0 < 1000000000ull)
		uv_run(loop, UV_RUN_NOWAIT);
	{
		uint64_t start = ns(), done = 0, worst = 0, pm = 60000;

		while (done < pm) {
			uint64_t k = randombytes_uniform((uint32_t)n);
			int b;

			if (ns() - start < done * 50000ull) { /* 50 us apart */
				uv_run(loop, UV_RUN_NOWAIT);
				continue;
			}
			item_reset(bi);
			bench_key(it->public_key, k);
			it->type = WGGWD_MSG_PEER_KEY;
			it->flags = WGGWD_ITEM_HAS_TIMESTAMP | WGGWD_ITEM_AUTHENTICATED;
			tai++;
			it->tai64n[0] = 0x40;
			for (b = 0; b < 8; b++)
				it->tai64n[4 + b] = (uint8_t)(tai >> (8 * (7 - b)));
			t1 = ns();
			ss_lookup(ctx, it);
			t1 = ns() - t1;
			lat[done] = t1;
			if (t1 > worst)
				worst = t1;
			done++;
		}
		qsort(lat, pm, sizeof(*lat), cmp_u64);
		printf("paced_lookup_p99_us%s %.1f us\n", suffix, lat[pm * 99 / 100] / 1e3);
		printf("paced_lookup_max_us%s %.1f us\n", suffix, worst / 1e3);
		{
			char wal[4096];
			struct stat st;

			snprintf(wal, sizeof(wal), "%s-wal", cf.path);
			printf("paced_wal_mib%s %.1f MiB\n", suffix,
			       stat(wal, &st) ? 0.0 : st.st_size / 1048576.0);
		}
	}
	ops.stop(ctx);
	uv_run(loop, UV_RUN_DEFAULT);
	ops.destroy(ctx);
	free(lat);
	h_item_free(NULL, it);
	return 0;
}
