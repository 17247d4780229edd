// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* A plugin written in C++ against the public header: it must compile
 * cleanly as C++20 and load like any other. */
#include <wggwd/plugin.h>

namespace {

struct conf {
	int64_t n;
};

const struct wggwd_opt opts[] = {
	{ .name = "n", .type = WGGWD_OPT_INT, .def = "1", .offset = offsetof(conf, n),
	  .help = "a number" },
	WGGWD_OPT_END
};

int create(const struct wggwd_host *, struct wggwd_inst *, const void *, void **ctx)
{
	*ctx = nullptr;
	return 0;
}

int process(void *, struct wggwd_item *it)
{
	return it->type == WGGWD_MSG_PEER_KEY ? WGGWD_CONTINUE : WGGWD_DROP;
}

void destroy(void *) {}

const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = create,
	.process = process,
	.destroy = destroy,
};

} // namespace

WGGWD_PLUGIN_DEFINE(
	.name = "abi-cxx",
	.version = "1",
	.license = "MIT",
	.description = "a plugin in C++",
	.kind = WGGWD_RESOLVER,
	.in = WGGWD_MSG_PEER_KEY,
	.out = WGGWD_MSG_PEER,
	.opts = opts,
	.conf_size = sizeof(conf),
	.ops = &ops);
