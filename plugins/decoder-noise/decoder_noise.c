// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * decoder-noise: who is knocking. Turns a WireGuard handshake initiation
 * into the initiator's static public key and TAI64N timestamp, rejecting
 * everything else as cheaply as possible (noise.c does the work).
 *
 * Replays: a valid initiation can be sent again from any address, and
 * the endpoint is not authenticated (PROTOCOL.md (c)). Whatever follows
 * in the pipeline, the decoder keeps the newest timestamp of each key
 * (replay.c, bounded, LRU) and drops one that is not newer (replay). A
 * timestamp is remembered only once its item finished well (installed,
 * or found installed): keys nobody knows, which anyone can make, never
 * enter the table, so they cannot push known keys out of it. A store
 * (store-sqlite) keeps the same check across restarts.
 *
 * Work is done cheapest first, on the loop: length, type and mac1 (one
 * BLAKE2s, ~4M/s), then a lookup of its ephemeral key among those of
 * each key's newest installed initiation (a copy of one is a replay), so
 * that garbage and replays of it never reach an X25519. What
 * is left goes to a bounded queue (`queue`) served by `threads` threads
 * of the decoder's own, which take it in batches and do the two X25519 —
 * one for a key whose static-static DH is cached — and hand the results
 * back through host->post; the loop then does the replay check and
 * completes the item. The queue is served round robin over the senders'
 * networks, so that a flood waits behind itself, not in front of everyone;
 * a full queue, or a network holding half of it, drops (overloaded),
 * counted. The ss
 * cache is shared (locked); a key enters it, like the replay table, only
 * once its item finished well, so a flood of fresh keys cannot push known
 * ones out. threads 0 decodes inline, in process(), as does a decoder
 * outside a pipeline (`wggwd decode`: no link, no done).
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sodium.h>

#include "noise.h"
#include "replay.h"
#include "wgutil.h"

struct conf {
	char *private_key_file;
	bool authenticate;
	int64_t cache_size;
	int64_t max_skew_ms;
	int64_t replay_keys;
	int64_t threads;
	int64_t queue;
};

static const struct wggwd_opt opts[] = {
	{ .name = "private_key_file", .type = WGGWD_OPT_SECRET_FILE,
	  .offset = offsetof(struct conf, private_key_file),
	  .help = "the interface's private key (base64, mode 0600); default: ask the pipeline's installer" },
	{ .name = "authenticate", .type = WGGWD_OPT_BOOL, .def = "true",
	  .offset = offsetof(struct conf, authenticate),
	  .help = "open the timestamp too, proving the sender holds the client's private key (costs a second X25519 for a new key); false stops after the static key, which anyone knowing our public key can forge" },
	{ .name = "cache_size", .type = WGGWD_OPT_INT, .def = "65536", .min = 0, .max = 16777216,
	  .offset = offsetof(struct conf, cache_size),
	  .help = "initiator keys whose static-static DH is kept, so a repeat costs one X25519 (about 100 bytes each)" },
	{ .name = "max_skew", .type = WGGWD_OPT_DURATION, .def = "0", .min = 0, .max = 86400000LL * 365,
	  .offset = offsetof(struct conf, max_skew_ms),
	  .help = "drop initiations whose timestamp is further than this from our clock (0: off)" },
	{ .name = "replay_keys", .type = WGGWD_OPT_INT, .def = "65536", .min = 0, .max = 16777216,
	  .offset = offsetof(struct conf, replay_keys),
	  .help = "initiator keys whose newest timestamp is kept in memory (about 120 bytes each; the least recently installed is forgotten first): an initiation not newer than its key's is dropped (replay), so that a captured one sent again from elsewhere cannot move the peer's endpoint; a copy of the newest one is known by its ephemeral key before any X25519. A key is remembered once its initiation was installed. Needs authenticate; 0: off (only a store checks)" },
	{ .name = "threads", .type = WGGWD_OPT_INT, .def = "-1", .min = -1, .max = 256,
	  .offset = offsetof(struct conf, threads),
	  .help = "threads of the decoder's own that open the static key and timestamp (the X25519s), off the loop: -1, one per CPU; 0, in the loop as each packet arrives (length, type and mac1 are always checked there)" },
	{ .name = "queue", .type = WGGWD_OPT_INT, .def = "1024", .min = 1, .max = 1048576,
	  .offset = offsetof(struct conf, queue),
	  .help = "initiations the threads may hold at once (waiting or being decoded; about 1.2 KB each with its item, so the default holds ~1.2 MB and ~100 ms of a flood at two cores' decode rate); past it they are dropped (overloaded) and counted in drop_overloaded" },
	WGGWD_OPT_END
};

enum {
	D_SHORT, D_LONG, D_TYPE, D_MAC1, D_STATIC, D_TIMESTAMP, D_SKEW, D_REPLAY,
	D_OVERLOADED, D_SHUTDOWN, D_MAX
};
static const char *const drop_names[D_MAX] = {
	"drop_short", "drop_long", "drop_type", "drop_mac1", "drop_static",
	"drop_timestamp", "drop_skew", "drop_replay", "drop_overloaded",
	"drop_shutdown",
};
static const uint32_t drop_reasons[D_MAX] = {
	WGGWD_R_SHORT, WGGWD_R_LONG, WGGWD_R_TYPE, WGGWD_R_MAC1, WGGWD_R_STATIC,
	WGGWD_R_TIMESTAMP, WGGWD_R_SKEW, WGGWD_R_REPLAY, WGGWD_R_OVERLOADED,
	WGGWD_R_SHUTDOWN,
};

/* Items a thread takes from the queue at once, at most: few, so that a
 * newcomer's turn comes soon (a decode is ~60 us, a lock ~0.1 us). */
#define BATCH 4
/* The queue is served round robin over senders' networks (IPv4 /24, IPv6
 * /64) hashed into this many lanes; one lane holds at most half the jobs,
 * so a flood from one network leaves room, and turns, to everyone else. */
#define LANES 256
/* How much nicer than the loop the threads are. */
#define NICE 10
#define INLINE_GAP_NS 1000000 /* decode_here: at most one a millisecond */

/* An initiation on its way through the threads. Owned by the loop while
 * on the free list or handed back, by the threads in between. */
struct job {
	struct job *next;             /* lane, done or free list           */
	struct wggwd_item *it;
	uint32_t lane;
	/* loop only: copies of the same packet ride on the first one */
	struct job *hnext, *dups, *dup_next;
	uint32_t hb;
	enum noise_result r;
	struct noise_initiation ini;
	struct noise_ss_miss miss;
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct noise_responder resp; /* read-only once started */
	struct noise_ss_cache *cache; /* locked: shared with the threads */
	struct noise_replay *replay; /* loop only */
	bool ready;
	bool linked; /* in a pipeline (not `wggwd decode`): done will come */
	uint64_t *decoded, *authenticated, *queued, *inline_, *coalesced, *drop[D_MAX];
	int64_t *replay_size, *held;

	/* the threads */
	pthread_t *tids;
	unsigned n_threads;
	struct job *jobs, *free_jobs; /* loop only: `queue` jobs */
	uint32_t n_held;              /* loop only: jobs off the free list */
	uint32_t lane_held[LANES];    /* loop only: ... per lane */
	struct job **same;            /* loop only: queued packets, by hash */
	uint32_t same_mask;
	bool pool_init, stop_wait;    /* loop only */
	uint64_t last_inline;         /* loop only: the last decode done here */
	pthread_mutex_t lock;         /* guards what follows */
	pthread_cond_t wake;
	bool quit;
	bool posted;                  /* a post will take `done`          */
	unsigned posts_out;           /* posts whose on_results is to run */
	struct lane {
		struct job *head, **tail;
		uint32_t len;
		int32_t next_active; /* -1: last active, or not active */
		bool active;
	} lanes[LANES];               /* waiting jobs, FIFO per lane */
	int32_t act_head, act_tail;   /* lanes with jobs, round robin */
	uint32_t ring_len, lane_cap;  /* waiting jobs; most per lane */
	struct job *done, **done_tail; /* decoded, for the loop */
};

static int dn_create(const struct wggwd_host *host, struct wggwd_inst *self,
		     const void *conf, void **ctxp)
{
	struct ctx *c = calloc(1, sizeof(*c));
	int i;

	if (!c)
		return -ENOMEM;
	c->host = host;
	c->self = self;
	c->conf = conf;
	c->decoded = host->counter(self, "decoded");
	c->authenticated = host->counter(self, "authenticated");
	c->queued = host->counter(self, "queued");
	c->inline_ = host->counter(self, "decoded_inline");
	c->coalesced = host->counter(self, "coalesced");
	for (i = 0; i < D_MAX; i++)
		c->drop[i] = host->counter(self, drop_names[i]);
	c->replay_size = host->gauge(self, "replay_keys");
	c->held = host->gauge(self, "pending");
	c->done_tail = &c->done;
	*ctxp = c;
	return 0;
}

static unsigned n_cpus(void)
{
	cpu_set_t set;
	long n;

	if (!sched_getaffinity(0, sizeof(set), &set) && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static int load_key(struct ctx *c, uint8_t key[32])
{
	const struct wggwd_installer *ins;
	struct wggwd_device dev = { .size = sizeof(dev) };
	int ret;

	if (c->conf->private_key_file)
		return wg_key_from_secret_file(c->host, c->self, c->conf->private_key_file, key);
	ins = c->host->installer(c->self);
	if (!ins) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "no private key: set private_key_file, or put an installer in the pipeline");
		return -ENOKEY;
	}
	ret = ins->ops->device(ins->ctx, &dev);
	if (ret || !dev.has_private_key) {
		c->host->log(c->self, WGGWD_LOG_ERROR,
			     "installer %s reports no private key for the interface%s%s",
			     ins->name, ret ? ": " : "", ret ? strerror(-ret) : "");
		sodium_memzero(&dev, sizeof(dev));
		return ret ? ret : -ENOKEY;
	}
	memcpy(key, dev.private_key, 32);
	sodium_memzero(&dev, sizeof(dev));
	return 0;
}

static void *worker(void *arg);

/* Queue and threads; on failure, what was made is undone by destroy. */
static int pool_start(struct ctx *c)
{
	unsigned n = c->conf->threads < 0 ? n_cpus() : (unsigned)c->conf->threads;
	uint32_t i, q = (uint32_t)c->conf->queue;
	sigset_t all, old;
	int ret;

	c->jobs = calloc(q, sizeof(*c->jobs));
	c->tids = calloc(n, sizeof(*c->tids));
	for (c->same_mask = 1; c->same_mask < q; c->same_mask <<= 1)
		;
	c->same = calloc(c->same_mask, sizeof(*c->same));
	c->same_mask--;
	if (!c->jobs || !c->tids || !c->same)
		return -ENOMEM;
	c->lane_cap = q > 1 ? q / 2 : 1;
	c->act_head = c->act_tail = -1;
	for (i = 0; i < LANES; i++) {
		c->lanes[i].tail = &c->lanes[i].head;
		c->lanes[i].next_active = -1;
	}
	for (i = q; i-- > 0;) {
		c->jobs[i].next = c->free_jobs;
		c->free_jobs = &c->jobs[i];
	}
	if (pthread_mutex_init(&c->lock, NULL))
		return -ENOMEM;
	if (pthread_cond_init(&c->wake, NULL)) {
		pthread_mutex_destroy(&c->lock);
		return -ENOMEM;
	}
	c->pool_init = true;
	/* signals are the loop's */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (ret = 0; c->n_threads < n; c->n_threads++) {
		ret = -pthread_create(&c->tids[c->n_threads], NULL, worker, c);
		if (ret)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

static void pool_join(struct ctx *c)
{
	unsigned i;

	if (!c->pool_init)
		return;
	pthread_mutex_lock(&c->lock);
	c->quit = true;
	pthread_cond_broadcast(&c->wake);
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < c->n_threads; i++)
		pthread_join(c->tids[i], NULL);
	c->n_threads = 0;
}

static int dn_start(void *ctx)
{
	struct ctx *c = ctx;
	uint8_t key[32];
	char pub[WG_KEY_B64_LEN];
	int ret;

	ret = load_key(c, key);
	if (ret)
		return ret;
	ret = noise_responder_init(&c->resp, key);
	sodium_memzero(key, sizeof(key));
	if (ret) {
		c->host->log(c->self, WGGWD_LOG_ERROR, "the private key gives an unusable public key");
		return -EINVAL;
	}
	c->cache = noise_ss_cache_new(c->conf->cache_size);
	c->replay = noise_replay_new(c->conf->replay_keys, c->host->hash);
	if (!c->cache || !c->replay)
		return -ENOMEM;
	/* threads only where items can wait: in a daemon's pipeline */
	if (c->conf->threads && c->linked) {
		ret = pool_start(c);
		if (ret) {
			c->host->log(c->self, WGGWD_LOG_ERROR, "cannot start the decoding threads: %s",
				     strerror(-ret));
			pool_join(c);
			return ret;
		}
	}
	wg_key_to_b64(pub, c->resp.public_key);
	c->host->log(c->self, WGGWD_LOG_INFO, "decoding initiations to %s%s%s", pub,
		     !c->conf->authenticate ? " (not authenticating: static key only; replays are not checked)" :
		     !c->conf->replay_keys ? " (replay_keys 0: replays are left to a store)" : "",
		     c->n_threads ? "" : ", in the loop");
	if (c->n_threads)
		c->host->log(c->self, WGGWD_LOG_INFO, "%u decoding threads, queue %lld",
			     c->n_threads, (long long)c->conf->queue);
	c->ready = true;
	return 0;
}

static int drop(struct ctx *c, struct wggwd_item *it, int why)
{
	(*c->drop[why])++;
	it->reason = drop_reasons[why];
	return WGGWD_DROP;
}

static int drop_for(struct ctx *c, struct wggwd_item *it, enum noise_result r)
{
	switch (r) {
	case NOISE_ERR_LENGTH:
		return drop(c, it, D_SHORT);
	case NOISE_ERR_TYPE:
		return drop(c, it, D_TYPE);
	case NOISE_ERR_MAC1:
		return drop(c, it, D_MAC1);
	case NOISE_ERR_STATIC:
		return drop(c, it, D_STATIC);
	default:
		return drop(c, it, D_TIMESTAMP);
	}
}

static int replayed(struct ctx *c, struct wggwd_item *it, const uint8_t key[32])
{
	char b64[WG_KEY_B64_LEN], from[64];

	wg_key_to_b64(b64, key);
	wg_sockaddr_str(&it->src, from, sizeof(from));
	c->host->log_limited(c->self, WGGWD_LOG_INFO,
			     "peer %s: replayed initiation from %s dropped (its timestamp is not newer than the last one installed)",
			     b64, from);
	return drop(c, it, D_REPLAY);
}

/* What a decode says about the item (on the loop): fill it in, check the
 * clock and the replay table, keep a new ss for done. */
static int judge(struct ctx *c, struct wggwd_item *it, enum noise_result r,
		 const struct noise_initiation *ini, const struct noise_ss_miss *miss)
{
	struct noise_ss_miss *keep;

	if (ini->mac1_ok)
		it->flags |= WGGWD_ITEM_MAC1_OK;
	if (r != NOISE_OK)
		return drop_for(c, it, r);
	memcpy(it->public_key, ini->public_key, WGGWD_KEY_LEN);
	it->sender_index = ini->sender_index;
	(*c->decoded)++;
	if (!ini->authenticated)
		return WGGWD_CONTINUE;
	memcpy(it->tai64n, ini->tai64n, sizeof(it->tai64n));
	it->flags |= WGGWD_ITEM_AUTHENTICATED | WGGWD_ITEM_HAS_TIMESTAMP;
	(*c->authenticated)++;
	if (c->conf->max_skew_ms && it->rx_realtime_ns &&
	    !noise_tai64n_within(ini->tai64n, it->rx_realtime_ns, c->conf->max_skew_ms))
		return drop(c, it, D_SKEW);
	if (noise_replay_seen(c->replay, ini->public_key, ini->tai64n))
		return replayed(c, it, ini->public_key);
	/* a new key's ss waits in the item's slot until it finished well */
	if (miss->set && c->linked && (keep = malloc(sizeof(*keep)))) {
		memcpy(keep, miss, sizeof(*keep));
		*c->host->slot(c->self, it) = keep;
	}
	return WGGWD_CONTINUE;
}

/* ---- the threads */

/* The lane of the item's sender network (keyed hash: senders cannot aim
 * at a lane). */
static uint32_t lane_of(struct ctx *c, const struct wggwd_item *it)
{
	uint8_t net[9] = { 0 };

	if (it->src.sa.sa_family == AF_INET) {
		memcpy(net, &it->src.in4.sin_addr, 3);
		net[8] = 4;
	} else if (it->src.sa.sa_family == AF_INET6) {
		memcpy(net, &it->src.in6.sin6_addr, 8);
		net[8] = 6;
	}
	return (uint32_t)(c->host->hash(net, sizeof(net)) % LANES);
}

/* Under c->lock. */
static void lane_push(struct ctx *c, struct job *j)
{
	struct lane *l = &c->lanes[j->lane];

	j->next = NULL;
	*l->tail = j;
	l->tail = &j->next;
	l->len++;
	c->ring_len++;
	if (l->active)
		return;
	l->active = true;
	l->next_active = -1;
	if (c->act_tail >= 0)
		c->lanes[c->act_tail].next_active = (int32_t)j->lane;
	else
		c->act_head = (int32_t)j->lane;
	c->act_tail = (int32_t)j->lane;
}

/* Under c->lock, with ring_len > 0: the next job, one lane after the
 * other. */
static struct job *lane_pop(struct ctx *c)
{
	int32_t i = c->act_head;
	struct lane *l = &c->lanes[i];
	struct job *j = l->head;

	l->head = j->next;
	if (!l->head)
		l->tail = &l->head;
	l->len--;
	c->ring_len--;
	c->act_head = l->next_active;
	if (c->act_head < 0)
		c->act_tail = -1;
	l->next_active = -1;
	l->active = false;
	if (l->len) { /* to the back of the round */
		l->active = true;
		if (c->act_tail >= 0)
			c->lanes[c->act_tail].next_active = i;
		else
			c->act_head = i;
		c->act_tail = i;
	}
	return j;
}

static void on_results(void *arg);

static void *worker(void *arg)
{
	struct ctx *c = arg;
	struct job *b[BATCH];
	unsigned i, n;
	bool post;
	pid_t tid = gettid();
	int prio;

	/* the loop (reading, installing) before decoding: on a machine with
	 * as many threads as CPUs it would otherwise wait for a time slice */
	errno = 0;
	prio = getpriority(PRIO_PROCESS, (id_t)tid);
	if (!errno)
		setpriority(PRIO_PROCESS, (id_t)tid, prio + NICE > 19 ? 19 : prio + NICE);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->ring_len && !c->quit)
			pthread_cond_wait(&c->wake, &c->lock);
		if (c->quit)
			break;
		/* a fair share of what waits, so that every thread works */
		n = (c->ring_len + c->n_threads - 1) / c->n_threads;
		if (n > BATCH)
			n = BATCH;
		for (i = 0; i < n; i++)
			b[i] = lane_pop(c);
		pthread_mutex_unlock(&c->lock);

		for (i = 0; i < n; i++) {
			struct job *j = b[i];

			j->r = noise_decode_lookup(&c->resp, c->cache, j->it->pkt,
						   j->it->pkt_len, c->conf->authenticate,
						   &j->ini, &j->miss);
			/* handed back at once; one post carries all that
			 * piles up until the loop takes them */
			pthread_mutex_lock(&c->lock);
			j->next = NULL;
			*c->done_tail = j;
			c->done_tail = &j->next;
			post = !c->posted;
			if (post) {
				c->posted = true;
				c->posts_out++;
			}
			pthread_mutex_unlock(&c->lock);
			if (post && c->host->post(c->self, on_results, c)) {
				pthread_mutex_lock(&c->lock);
				c->posted = false; /* the next one tries again */
				c->posts_out--;
				pthread_mutex_unlock(&c->lock);
			}
		}
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* A queued job whose packet is this one, byte for byte (loop only). */
static struct job *same_find(struct ctx *c, const struct wggwd_item *it, uint32_t hb)
{
	struct job *j;

	for (j = c->same[hb]; j; j = j->hnext)
		if (!memcmp(j->it->pkt, it->pkt, NOISE_INIT_LEN))
			return j;
	return NULL;
}

static void same_del(struct ctx *c, struct job *j)
{
	struct job **pp;

	for (pp = &c->same[j->hb]; *pp; pp = &(*pp)->hnext)
		if (*pp == j) {
			*pp = j->hnext;
			break;
		}
	j->hnext = NULL;
}

static void job_free(struct ctx *c, struct job *j)
{
	sodium_memzero(&j->ini, sizeof(j->ini));
	sodium_memzero(&j->miss, sizeof(j->miss));
	j->it = NULL;
	j->dups = j->dup_next = NULL;
	j->next = c->free_jobs;
	c->free_jobs = j;
	c->n_held--;
	c->lane_held[j->lane]--;
}

/* Complete the decoded jobs handed back, and, once stopping, whatever the
 * threads left. */
static void finish(struct ctx *c, bool stop)
{
	struct job *j, *next, *left = NULL, *d, *dnext, *dups;
	struct wggwd_item *it;
	int v;

	pthread_mutex_lock(&c->lock);
	j = c->done;
	c->done = NULL;
	c->done_tail = &c->done;
	c->posted = false;
	if (stop) {
		struct job **lt = &left;

		while (c->ring_len) {
			*lt = lane_pop(c);
			lt = &(*lt)->next;
		}
		*lt = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	for (; j; j = next) {
		next = j->next;
		same_del(c, j);
		it = j->it;
		dups = j->dups;
		for (d = dups; d; d = d->dup_next) { /* the same answer */
			d->r = j->r;
			memcpy(&d->ini, &j->ini, sizeof(d->ini));
		}
		v = judge(c, it, j->r, &j->ini, &j->miss);
		job_free(c, j);
		c->host->complete(c->self, it, v);
		for (d = dups; d; d = dnext) {
			dnext = d->dup_next;
			it = d->it;
			v = judge(c, it, d->r, &d->ini, &d->miss);
			job_free(c, d);
			c->host->complete(c->self, it, v);
		}
	}
	for (j = left; j; j = next) {
		next = j->next;
		same_del(c, j);
		for (d = j->dups; d; d = dnext) {
			dnext = d->dup_next;
			it = d->it;
			job_free(c, d);
			c->host->complete(c->self, it, drop(c, it, D_SHUTDOWN));
		}
		it = j->it;
		job_free(c, j);
		c->host->complete(c->self, it, drop(c, it, D_SHUTDOWN));
	}
	*c->held = c->n_held;
}

static void on_results(void *arg)
{
	struct ctx *c = arg;
	bool last;

	pthread_mutex_lock(&c->lock);
	last = --c->posts_out == 0;
	pthread_mutex_unlock(&c->lock);
	finish(c, c->stop_wait && last);
	if (c->stop_wait && last) { /* the stop waited for this one */
		c->stop_wait = false;
		c->host->stopped(c->self);
	}
}

/* ---- the stage */

/*
 * Idle (nothing queued), a lone initiation is decoded on the loop: two
 * X25519s, ~0.1 ms, rather than waking a thread (at nice 10) and posting
 * the result back, a wait for a time slice on a busy host that the
 * client feels in its first handshake. At most one every INLINE_GAP_NS,
 * so a burst still goes to the threads and the loop keeps ~90% of its
 * time.
 */
static bool decode_here(struct ctx *c)
{
	uint64_t now;

	if (c->n_held)
		return false;
	now = c->host->now_ns();
	if (now - c->last_inline < INLINE_GAP_NS)
		return false;
	c->last_inline = now;
	(*c->inline_)++;
	return true;
}

static int dn_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	struct noise_initiation ini;
	struct noise_ss_miss miss;
	enum noise_result r;
	struct job *j, *first;
	uint32_t lane;
	int v;

	if (!c->ready) {
		it->detail = "not ready";
		(*c->drop[D_TYPE])++;
		it->reason = WGGWD_R_INTERNAL;
		return WGGWD_DROP;
	}
	if (it->pkt_len != NOISE_INIT_LEN)
		return drop(c, it, it->pkt_len < NOISE_INIT_LEN ? D_SHORT : D_LONG);
	/* the cheap checks here: garbage and replays cost one BLAKE2s and a
	 * lookup */
	r = noise_precheck(&c->resp, it->pkt, it->pkt_len);
	if (r != NOISE_OK)
		return drop_for(c, it, r);
	it->flags |= WGGWD_ITEM_MAC1_OK;
	if (noise_replay_seen_ephemeral(c->replay, it->pkt + NOISE_OFF_EPHEMERAL)) {
		char from[64];

		wg_sockaddr_str(&it->src, from, sizeof(from));
		c->host->log_limited(c->self, WGGWD_LOG_INFO,
				     "replayed initiation from %s dropped (a copy of the last one installed)",
				     from);
		return drop(c, it, D_REPLAY);
	}
	if (!c->n_threads || decode_here(c)) {
		r = noise_decode_lookup(&c->resp, c->cache, it->pkt, it->pkt_len,
					c->conf->authenticate, &ini, &miss);
		v = judge(c, it, r, &ini, &miss);
		sodium_memzero(&ini, sizeof(ini));
		sodium_memzero(&miss, sizeof(miss));
		return v;
	}
	/* the X25519s on a thread */
	lane = lane_of(c, it);
	j = c->free_jobs;
	if (!j || c->lane_held[lane] >= c->lane_cap) {
		c->host->log_limited(c->self, WGGWD_LOG_WARN,
				     "decoding queue full (%lld, at most %u from one network): initiations dropped",
				     (long long)c->conf->queue, c->lane_cap);
		return drop(c, it, D_OVERLOADED);
	}
	c->free_jobs = j->next;
	c->n_held++;
	c->lane_held[lane]++;
	*c->held = c->n_held;
	j->it = it;
	j->lane = lane;
	/* a copy of a packet on its way (a burst of re-sends, a replay of
	 * one): decoded once, answered together, so the core sees them
	 * together (one install, the rest in-flight duplicates) */
	j->hb = (uint32_t)c->host->hash(it->pkt, NOISE_INIT_LEN) & c->same_mask;
	first = same_find(c, it, j->hb);
	if (first) {
		j->dup_next = first->dups;
		first->dups = j;
		(*c->coalesced)++;
		return WGGWD_PENDING;
	}
	j->hnext = c->same[j->hb];
	c->same[j->hb] = j;
	pthread_mutex_lock(&c->lock);
	lane_push(c, j);
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
	(*c->queued)++;
	return WGGWD_PENDING;
}

static void dn_stop(void *ctx)
{
	struct ctx *c = ctx;
	unsigned out;

	if (!c->n_threads) {
		c->host->stopped(c->self);
		return;
	}
	/* each thread finishes the batch in its hands (a few ms at most) */
	pool_join(c);
	pthread_mutex_lock(&c->lock);
	out = c->posts_out;
	pthread_mutex_unlock(&c->lock);
	if (out) { /* on_results will run: the last one finishes the stop */
		c->stop_wait = true;
		return;
	}
	finish(c, true);
	c->host->stopped(c->self);
}

/* Called with ctx once per pipeline the stage is in; `wggwd decode`
 * runs it alone, without. */
static const char *dn_link(void *ctx, const void *conf, const struct wggwd_link *l,
			   const char **option, char *buf, size_t len)
{
	struct ctx *c = ctx;

	(void)conf, (void)l, (void)option, (void)buf, (void)len;
	if (c)
		c->linked = true;
	return NULL;
}

/* Remember the timestamp, and a new key's ss, of an item that finished
 * well (see the top). */
static void dn_done(void *ctx, struct wggwd_item *it, int verdict)
{
	struct ctx *c = ctx;
	struct noise_replay_stats st;
	void **slot = c->host->slot(c->self, it);
	struct noise_ss_miss *miss = *slot;
	bool good = (verdict == WGGWD_CONTINUE || verdict == WGGWD_DONE) &&
		    it->op == WGGWD_OP_ADD && (it->flags & WGGWD_ITEM_AUTHENTICATED) &&
		    (it->flags & WGGWD_ITEM_HAS_TIMESTAMP);

	if (miss) {
		if (good)
			noise_ss_cache_put(c->cache, &c->resp, it->public_key, miss->ss);
		sodium_memzero(miss, sizeof(*miss));
		free(miss);
		*slot = NULL;
	}
	if (!good)
		return;
	noise_replay_record_initiation(c->replay, it->public_key, it->tai64n,
				       it->pkt_len == NOISE_INIT_LEN ? it->pkt + NOISE_OFF_EPHEMERAL : NULL);
	noise_replay_stats(c->replay, &st);
	*c->replay_size = (int64_t)st.size;
}

static void dn_destroy(void *ctx)
{
	struct ctx *c = ctx;

	if (c->jobs)
		sodium_memzero(c->jobs, (size_t)c->conf->queue * sizeof(*c->jobs));
	if (c->pool_init) {
		pthread_cond_destroy(&c->wake);
		pthread_mutex_destroy(&c->lock);
	}
	free(c->jobs);
	free(c->tids);
	free(c->same);
	noise_responder_wipe(&c->resp);
	noise_ss_cache_free(c->cache);
	noise_replay_free(c->replay);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = dn_create,
	.link = dn_link,
	.start = dn_start,
	.process = dn_process,
	.stop = dn_stop,
	.destroy = dn_destroy,
	.done = dn_done,
};

WGGWD_PLUGIN_DEFINE(
	.name = "decoder-noise",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "WireGuard handshake initiation -> the initiator's public key (Noise IK first leg)",
	.kind = WGGWD_DECODER,
	.in = WGGWD_MSG_PKT,
	.out = WGGWD_MSG_PEER_KEY,
	.flags = WGGWD_F_OWN_THREADS,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
