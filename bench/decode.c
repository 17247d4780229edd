// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */

/*
 * One-core benchmark of the initiation decoder against bare X25519.
 * usage: bench-decode vectors.json [seconds per metric, default 1]
 *
 * Each metric runs in ROUNDS short slices, interleaved with the others, and
 * the median slice is reported, so the ratios come from the same run and a
 * noisy neighbour hits all metrics alike.
 */
#include "noise.h"

#include <blake2.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS		5
#define N_JUNK		256
#define MAX_THREADS	64

struct bench {
	struct noise_responder r;
	struct noise_ss_cache *none;	/* capacity 0: every decode does 2 X25519 */
	struct noise_ss_cache *warm;
	struct noise_ss_cache *shared;	/* as decoder-noise's: locked, never filled */
	uint8_t pkt[NOISE_INIT_LEN];
	uint8_t junk[N_JUNK][NOISE_INIT_LEN];
	uint8_t scalar[32];
	uint8_t point[32];
};

typedef void (*bench_fn)(struct bench *b, unsigned long n);

static volatile uint8_t sink;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void run_x25519(struct bench *b, unsigned long n)
{
	uint8_t out[32];

	while (n--) {
		if (crypto_scalarmult(out, b->scalar, b->point) != 0)
			abort();
		sink ^= out[0];
	}
}

static void run_decode(struct bench *b, struct noise_ss_cache *c,
		       unsigned long n)
{
	struct noise_initiation o;

	while (n--) {
		if (noise_decode(&b->r, c, b->pkt, sizeof(b->pkt), true, &o) !=
		    NOISE_OK)
			abort();
		sink ^= o.public_key[0];
	}
}

static void run_first(struct bench *b, unsigned long n)
{
	run_decode(b, b->none, n);
}

static void run_repeat(struct bench *b, unsigned long n)
{
	run_decode(b, b->warm, n);
}

static void run_reject(struct bench *b, unsigned long n)
{
	struct noise_initiation o;

	for (unsigned long i = 0; i < n; i++) {
		if (noise_decode(&b->r, NULL, b->junk[i % N_JUNK], NOISE_INIT_LEN,
				 true, &o) != NOISE_ERR_MAC1)
			abort();
	}
}

/* The same mac1 check through libb2, the library the project otherwise
 * uses for BLAKE2s: the baseline for noise.c's own BLAKE2s. */
static void run_reject_libb2(struct bench *b, unsigned long n)
{
	uint8_t mac[16];

	for (unsigned long i = 0; i < n; i++) {
		const uint8_t *p = b->junk[i % N_JUNK];

		blake2s(mac, p, b->r.mac1_key, sizeof(mac), 116, sizeof(b->r.mac1_key));
		if (sodium_memcmp(mac, p + 116, sizeof(mac)) == 0)
			abort();
	}
}

/*
 * decoder-noise's threads: each decodes fresh-key initiations (2 X25519,
 * the flood case) through one shared cache that is only read, as the
 * plugin's threads do. Decodes per second, all threads together.
 */
struct wk {
	struct bench *b;
	double secs;
	unsigned cpu;
	unsigned long ops;
	pthread_t tid;
};

static void *run_worker(void *arg)
{
	struct wk *w = arg;
	struct noise_initiation o;
	struct noise_ss_miss miss;
	double t0 = now();
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	do {
		for (int i = 0; i < 8; i++) {
			if (noise_decode_lookup(&w->b->r, w->b->shared, w->b->pkt,
						sizeof(w->b->pkt), true, &o, &miss) != NOISE_OK ||
			    !miss.set)
				abort();
			sink ^= o.public_key[0];
		}
		w->ops += 8;
	} while (now() - t0 < w->secs);
	return NULL;
}

static double workers_per_s(struct bench *b, const unsigned *cpus, unsigned n,
			    double secs)
{
	struct wk w[MAX_THREADS];
	unsigned long ops = 0;
	double t0 = now(), t;
	unsigned i;

	for (i = 0; i < n; i++) {
		w[i] = (struct wk){ .b = b, .secs = secs, .cpu = cpus[i] };
		if (pthread_create(&w[i].tid, NULL, run_worker, &w[i]))
			abort();
	}
	for (i = 0; i < n; i++) {
		pthread_join(w[i].tid, NULL);
		ops += w[i].ops;
	}
	t = now();
	return (double)ops / (t - t0);
}

/* Nanoseconds per operation over one slice of about `secs`. */
static double slice(struct bench *b, bench_fn fn, unsigned long batch,
		    double secs)
{
	unsigned long ops = 0;
	double t0 = now(), t;

	do {
		fn(b, batch);
		ops += batch;
		t = now();
	} while (t - t0 < secs);
	return (t - t0) * 1e9 / (double)ops;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v)
{
	qsort(v, ROUNDS, sizeof(*v), cmp_double);
	return v[ROUNDS / 2];
}

static int load_vector(struct bench *b, const char *path)
{
	const json_t *v, *vectors;
	json_error_t err;
	uint8_t priv[32];
	json_t *root;
	size_t i, len;
	int ret = -1;

	root = json_load_file(path, 0, &err);
	if (!root) {
		fprintf(stderr, "%s:%d:%d: %s\n", path, err.line, err.column,
			err.text);
		return -1;
	}
	vectors = json_object_get(root, "vectors");
	json_array_foreach(vectors, i, v) {
		const char *kind = json_string_value(json_object_get(v, "kind"));
		const char *pk = json_string_value(json_object_get(v, "responder_private_key"));
		const char *pkt = json_string_value(json_object_get(v, "packet"));

		if (!kind || strcmp(kind, "valid") || !pk || !pkt)
			continue;
		if (sodium_hex2bin(priv, sizeof(priv), pk, strlen(pk), NULL, &len,
				   NULL) || len != sizeof(priv) ||
		    sodium_hex2bin(b->pkt, sizeof(b->pkt), pkt, strlen(pkt), NULL,
				   &len, NULL) || len != sizeof(b->pkt))
			continue;
		ret = noise_responder_init(&b->r, priv);
		break;
	}
	if (ret)
		fprintf(stderr, "%s: no usable valid vector\n", path);
	sodium_memzero(priv, sizeof(priv));
	json_decref(root);
	return ret;
}

static void pin_to_current_cpu(void)
{
	int cpu = sched_getcpu();
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

int main(int argc, char **argv)
{
	double secs = argc > 2 ? atof(argv[2]) : 1.0;
	double x[ROUNDS], first[ROUNDS], repeat[ROUNDS], reject[ROUNDS], reject_b2[ROUNDS];
	double x_ns, first_ns, repeat_ns, reject_ns, reject_b2_ns;
	double w1[ROUNDS], wn[ROUNDS], w1_ps, wn_ps;
	unsigned cpus[MAX_THREADS], n_cpus = 0;
	struct noise_initiation o;
	static struct bench b;
	cpu_set_t all;

	if (argc < 2 || secs <= 0) {
		fprintf(stderr, "usage: %s vectors.json [seconds per metric]\n",
			argv[0]);
		return 2;
	}
	if (sodium_init() < 0 || load_vector(&b, argv[1]) < 0)
		return 1;
	/* the CPUs we may use, before pinning: one decoding thread each */
	if (!sched_getaffinity(0, sizeof(all), &all))
		for (int i = 0; i < CPU_SETSIZE && n_cpus < MAX_THREADS; i++)
			if (CPU_ISSET(i, &all))
				cpus[n_cpus++] = (unsigned)i;
	if (!n_cpus)
		cpus[n_cpus++] = 0;
	pin_to_current_cpu();

	b.none = noise_ss_cache_new(0);
	b.warm = noise_ss_cache_new(16);
	b.shared = noise_ss_cache_new(65536);
	if (!b.none || !b.warm || !b.shared)
		return 1;
	if (noise_decode(&b.r, b.warm, b.pkt, sizeof(b.pkt), true, &o) != NOISE_OK) {
		fprintf(stderr, "vector does not decode\n");
		return 1;
	}
	memcpy(b.scalar, b.r.private_key, sizeof(b.scalar));
	memcpy(b.point, b.pkt + 8, sizeof(b.point));
	randombytes_buf(b.junk, sizeof(b.junk));
	for (int i = 0; i < N_JUNK; i++)
		memcpy(b.junk[i], "\x01\x00\x00\x00", 4);
	/* one junk packet is the real one with mac1 flipped */
	memcpy(b.junk[0], b.pkt, NOISE_INIT_LEN);
	b.junk[0][116] ^= 1;

	slice(&b, run_x25519, 16, secs / ROUNDS);	/* warm up */
	for (int i = 0; i < ROUNDS; i++) {
		x[i] = slice(&b, run_x25519, 16, secs / ROUNDS);
		first[i] = slice(&b, run_first, 8, secs / ROUNDS);
		repeat[i] = slice(&b, run_repeat, 16, secs / ROUNDS);
		reject[i] = slice(&b, run_reject, 4096, secs / ROUNDS);
		reject_b2[i] = slice(&b, run_reject_libb2, 4096, secs / ROUNDS);
		w1[i] = workers_per_s(&b, cpus, 1, secs / ROUNDS);
		wn[i] = workers_per_s(&b, cpus, n_cpus, secs / ROUNDS);
	}
	w1_ps = median(w1);
	wn_ps = median(wn);
	x_ns = median(x);
	first_ns = median(first);
	repeat_ns = median(repeat);
	reject_ns = median(reject);
	reject_b2_ns = median(reject_b2);

	printf("x25519_ns %.0f ns\n", x_ns);
	printf("decode_first_ns %.0f ns\n", first_ns);
	printf("decode_repeat_ns %.0f ns\n", repeat_ns);
	printf("reject_mac1_pps %.0f pps\n", 1e9 / reject_ns);
	printf("decode_first_ratio %.3f x\n", first_ns / x_ns);
	printf("decode_repeat_ratio %.3f x\n", repeat_ns / x_ns);
	printf("decodes_first_per_s %.0f /s\n", 1e9 / first_ns);
	printf("decodes_repeat_per_s %.0f /s\n", 1e9 / repeat_ns);
	printf("reject_mac1_libb2_pps %.0f pps\n", 1e9 / reject_b2_ns);
	printf("reject_mac1_vs_libb2_ratio %.2f x\n", reject_b2_ns / reject_ns);
	/* decoder-noise `threads`: 1 thread, then one per CPU, same rounds */
	printf("decode_workers_threads %u threads\n", n_cpus);
	printf("decode_inline_per_s %.0f /s\n", w1_ps);
	printf("decode_workers_per_s %.0f /s\n", wn_ps);
	printf("decode_workers_ratio %.2f x\n", wn_ps / w1_ps);

	noise_ss_cache_free(b.none);
	noise_ss_cache_free(b.warm);
	noise_ss_cache_free(b.shared);
	noise_responder_wipe(&b.r);
	return 0;
}
