// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Broken plugins for the loader's tests: one per -D, each named as its file. */
#include <errno.h>
#include <stdlib.h>

#include <wggwd/plugin.h>

static int b_create(const struct wggwd_host *h, struct wggwd_inst *s, const void *c, void **ctx)
{
	(void)h; (void)s; (void)c;
	*ctx = NULL;
	return 0;
}

__attribute__((unused)) static int b_process(void *ctx, struct wggwd_item *it)
{
	(void)ctx; (void)it;
	return WGGWD_CONTINUE;
}

static void b_destroy(void *ctx)
{
	(void)ctx;
}

__attribute__((unused)) static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = b_create,
#ifndef NO_PROCESS
	.process = b_process,
#endif
	.destroy = b_destroy,
};

#ifndef NO_SYMBOL
WGGWD_EXPORT const struct wggwd_plugin wggwd_plugin = {
	.abi_major = WGGWD_ABI_MAJOR + MAJOR_DELTA,
	.abi_minor = WGGWD_ABI_MINOR + MINOR_DELTA,
	.size = SIZE,
	.build_sig = WGGWD_BUILD_SIG,
	.name = NAME,
	.version = "0",
	.kind = WGGWD_RESOLVER,
	.in = WGGWD_MSG_PEER_KEY,
	.out = WGGWD_MSG_PEER,
	.ops = &ops,
};
#else
WGGWD_EXPORT const int not_a_plugin = 1;
#endif
