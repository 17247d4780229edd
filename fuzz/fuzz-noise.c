// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */

/* libFuzzer target for noise_decode(); see build-and-run.sh. */
#include "noise.h"

#include <stdlib.h>
#include <string.h>

/* responder_private_key of vector dev-go-00 (tests/vectors/vectors-dev.json) */
static const uint8_t responder_priv[NOISE_KEY_LEN] = {
	0x80, 0x19, 0xce, 0x8d, 0xc7, 0x59, 0x91, 0x7c,
	0xfe, 0xe0, 0x13, 0x3c, 0xd7, 0xc7, 0xc5, 0x50,
	0x7e, 0x30, 0x2c, 0x6b, 0x85, 0x84, 0x91, 0xfd,
	0x32, 0x93, 0x51, 0xeb, 0xa9, 0x73, 0xfe, 0x55,
};

static struct noise_responder responder;
static struct noise_ss_cache *cache;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (noise_responder_init(&responder, responder_priv) != 0)
		abort();
	cache = noise_ss_cache_new(2);	/* small, so eviction is exercised */
	if (!cache)
		abort();
	return 0;
}

static void check_consistent(enum noise_result full, enum noise_result part,
			     const struct noise_initiation *a,
			     const struct noise_initiation *b)
{
	/* Same packet: both modes agree up to the static stage. */
	if (full != NOISE_ERR_TIMESTAMP && full != part && part != NOISE_OK)
		abort();
	if (full == NOISE_OK && (part != NOISE_OK || !a->authenticated ||
				 b->authenticated ||
				 memcmp(a->public_key, b->public_key,
					sizeof(a->public_key))))
		abort();
	if (full == NOISE_ERR_TIMESTAMP && part != NOISE_OK)
		abort();
}

static void decode_all(const uint8_t *data, size_t size)
{
	struct noise_initiation a, b, c;
	enum noise_result full, part, nocache;

	full = noise_decode(&responder, cache, data, size, true, &a);
	part = noise_decode(&responder, cache, data, size, false, &b);
	nocache = noise_decode(&responder, NULL, data, size, true, &c);
	if (full != nocache || (full == NOISE_OK &&
				memcmp(a.tai64n, c.tai64n, sizeof(a.tai64n))))
		abort();
	check_consistent(full, part, &a, &b);
	if (size != NOISE_INIT_LEN && full != NOISE_ERR_LENGTH)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t pkt[NOISE_INIT_LEN];

	decode_all(data, size);

	/* Mutations almost never keep mac1 valid: also try the input with
	 * mac1 recomputed, so the Noise stages get fuzzed too. */
	if (size == NOISE_INIT_LEN) {
		memcpy(pkt, data, size);
		noise_blake2s(pkt + 116, 16, pkt, 116, responder.mac1_key,
			      NOISE_HASH_LEN);
		decode_all(pkt, size);
	}
	return 0;
}
