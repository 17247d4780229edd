// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* A plugin written in C++ against the public header: it must compile
 * cleanly as C++20 (-pedantic -Werror), macros included, and load like
 * any other. */
#include <cerrno>
#include <new>

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

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	uint32_t n;
};

int create(const struct wggwd_host *host, struct wggwd_inst *self, const void *cf, void **ctxp)
{
	auto *c = new (std::nothrow) ctx{ host, self,
		static_cast<uint32_t>(static_cast<const conf *>(cf)->n) };

	if (!c)
		return -ENOMEM;
	*ctxp = c;
	return 0;
}

const char *check_link(void *, const void *, const struct wggwd_link *l, const char **option,
		       char *, size_t)
{
	*option = "n";
	return l->kinds_before & (1u << WGGWD_DECODER) || l->source_out == WGGWD_MSG_PEER_KEY ?
		nullptr : "needs peer keys";
}

int process(void *p, struct wggwd_item *it)
{
	auto *c = static_cast<ctx *>(p);
	struct wggwd_allowed_ip *ip;

	if (it->type != WGGWD_MSG_PEER_KEY || !WGGWD_HAS(it->peer, struct wggwd_peer, expires_at)) {
		it->reason = WGGWD_R_OTHER;
		it->detail = "not a key";
		return WGGWD_DROP;
	}
	ip = c->host->allowed_reserve(c->self, it, c->n);
	if (!ip) {
		it->reason = WGGWD_R_NO_MEMORY;
		return WGGWD_DROP;
	}
	*c->host->slot(c->self, it) = c;
	c->host->log_limited(c->self, WGGWD_LOG_DEBUG, "%u allowed IPs", it->peer->n_allowed);
	return WGGWD_CONTINUE;
}

void done(void *p, struct wggwd_item *it, int)
{
	auto *c = static_cast<ctx *>(p);

	*c->host->slot(c->self, it) = nullptr;
}

[[maybe_unused]] void on_dump(void *arg, int status, const struct wggwd_peer_state *peers,
			      size_t n, size_t stride)
{
	auto *ours = static_cast<size_t *>(arg);

	for (size_t i = 0; status == 0 && i < n; i++)
		if (WGGWD_AT(const struct wggwd_peer_state, peers, i, stride)->origin)
			++*ours;
}

void destroy(void *p)
{
	delete static_cast<ctx *>(p);
}

const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = create,
	.link = check_link,
	.process = process,
	.destroy = destroy,
	.done = done,
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
