// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Broken plugins for the loader's tests: one per -D, each named as its file. */
#include <errno.h>
#include <stdlib.h>

#include <wggwd/plugin.h>

#ifndef KIND
#define KIND WGGWD_RESOLVER
#endif
#ifndef OPS_SIZE
#define OPS_SIZE sizeof(struct wggwd_ops)
#endif

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

static int b_device(void *ctx, struct wggwd_device *dev)
{
	(void)ctx; (void)dev;
	return -ENODATA;
}

__attribute__((unused)) static int b_dump(void *ctx, wggwd_dump_cb cb, void *arg)
{
	(void)ctx;
	cb(arg, 0, NULL, 0, sizeof(struct wggwd_peer_state));
	return 0;
}

/* OPS_SIZE may end the table before ops that are set: they must not count */
__attribute__((unused)) static const struct wggwd_ops ops = {
	.size = OPS_SIZE,
	.create = b_create,
#ifndef NO_PROCESS
	.process = b_process,
#endif
	.destroy = b_destroy,
	.device = KIND == WGGWD_INSTALLER ? b_device : NULL,
#ifndef NO_DUMP
	.dump = KIND == WGGWD_INSTALLER ? b_dump : NULL,
#endif
};

#ifndef NO_SYMBOL
WGGWD_EXPORT const struct wggwd_plugin wggwd_plugin = {
	.abi_major = WGGWD_ABI_MAJOR + MAJOR_DELTA,
	.abi_minor = WGGWD_ABI_MINOR + MINOR_DELTA,
	.size = SIZE,
	.opt_size = sizeof(struct wggwd_opt),
	.build_sig = WGGWD_BUILD_SIG,
	.name = NAME,
	.version = "0",
	.kind = KIND,
	.in = KIND == WGGWD_INSTALLER ? WGGWD_MSG_PEER : WGGWD_MSG_PEER_KEY,
	.out = KIND == WGGWD_INSTALLER ? WGGWD_MSG_EVENT : WGGWD_MSG_PEER,
	.ops = &ops,
};
#else
WGGWD_EXPORT const int not_a_plugin = 1;
#endif
