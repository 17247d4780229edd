// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * decoder-noise: who is knocking. Turns a WireGuard handshake initiation
 * into the initiator's static public key and TAI64N timestamp, rejecting
 * everything else as cheaply as possible (noise.c does the work).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "noise.h"
#include "wgutil.h"

struct conf {
	char *private_key_file;
	bool authenticate;
	int64_t cache_size;
	int64_t max_skew_ms;
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
	WGGWD_OPT_END
};

enum { D_SHORT, D_LONG, D_TYPE, D_MAC1, D_STATIC, D_TIMESTAMP, D_SKEW, D_MAX };
static const char *const drop_names[D_MAX] = {
	"drop_short", "drop_long", "drop_type", "drop_mac1", "drop_static",
	"drop_timestamp", "drop_skew",
};

struct ctx {
	const struct wggwd_host *host;
	struct wggwd_inst *self;
	const struct conf *conf;
	struct noise_responder resp;
	struct noise_ss_cache *cache;
	bool ready;
	uint64_t *decoded, *authenticated, *drop[D_MAX];
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
	for (i = 0; i < D_MAX; i++)
		c->drop[i] = host->counter(self, drop_names[i]);
	*ctxp = c;
	return 0;
}

static int load_key(struct ctx *c, uint8_t key[32])
{
	const struct wggwd_installer *ins;
	struct wggwd_device dev;
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
	if (!c->cache)
		return -ENOMEM;
	wg_key_to_b64(pub, c->resp.public_key);
	c->host->log(c->self, WGGWD_LOG_INFO, "decoding initiations to %s%s", pub,
		     c->conf->authenticate ? "" : " (not authenticating: static key only)");
	c->ready = true;
	return 0;
}

static int drop(struct ctx *c, struct wggwd_item *it, int why, const char *reason)
{
	(*c->drop[why])++;
	it->drop_reason = reason;
	return WGGWD_DROP;
}

static int dn_process(void *ctx, struct wggwd_item *it)
{
	struct ctx *c = ctx;
	struct noise_initiation ini;
	enum noise_result r;
	int64_t sec, skew;
	uint32_t nsec;

	if (!c->ready)
		return drop(c, it, D_TYPE, "not_ready");
	/* pkt keeps WGGWD_PKT_MAX bytes: a longer packet is judged by length */
	if (it->pkt_len != NOISE_INIT_LEN)
		return drop(c, it, it->pkt_len < NOISE_INIT_LEN ? D_SHORT : D_LONG, "length");
	r = noise_decode(&c->resp, c->cache, it->pkt, it->pkt_len, c->conf->authenticate, &ini);
	if (ini.mac1_ok)
		it->flags |= WGGWD_ITEM_MAC1_OK;
	switch (r) {
	case NOISE_OK:
		break;
	case NOISE_ERR_LENGTH:
		return drop(c, it, D_SHORT, "length");
	case NOISE_ERR_TYPE:
		return drop(c, it, D_TYPE, "type");
	case NOISE_ERR_MAC1:
		return drop(c, it, D_MAC1, "mac1");
	case NOISE_ERR_STATIC:
		return drop(c, it, D_STATIC, "static");
	default:
		return drop(c, it, D_TIMESTAMP, "timestamp");
	}
	memcpy(it->public_key, ini.public_key, WGGWD_KEY_LEN);
	it->sender_index = ini.sender_index;
	(*c->decoded)++;
	if (ini.authenticated) {
		memcpy(it->tai64n, ini.tai64n, sizeof(it->tai64n));
		it->flags |= WGGWD_ITEM_AUTHENTICATED | WGGWD_ITEM_HAS_TIMESTAMP;
		(*c->authenticated)++;
		if (c->conf->max_skew_ms && it->rx_realtime_ns) {
			if (noise_tai64n_to_unix(ini.tai64n, &sec, &nsec))
				return drop(c, it, D_SKEW, "skew");
			skew = sec * 1000 + nsec / 1000000 - (int64_t)(it->rx_realtime_ns / 1000000);
			if (skew > c->conf->max_skew_ms || -skew > c->conf->max_skew_ms)
				return drop(c, it, D_SKEW, "skew");
		}
	}
	sodium_memzero(&ini, sizeof(ini));
	return WGGWD_CONTINUE;
}

static void dn_destroy(void *ctx)
{
	struct ctx *c = ctx;

	noise_responder_wipe(&c->resp);
	noise_ss_cache_free(c->cache);
	free(c);
}

static const struct wggwd_ops ops = {
	.size = sizeof(struct wggwd_ops),
	.create = dn_create,
	.start = dn_start,
	.process = dn_process,
	.destroy = dn_destroy,
};

WGGWD_PLUGIN_DEFINE(
	.name = "decoder-noise",
	.version = WGGWD_VERSION,
	.license = "MIT",
	.description = "WireGuard handshake initiation -> the initiator's public key (Noise IK first leg)",
	.kind = WGGWD_DECODER,
	.in = WGGWD_MSG_PKT,
	.out = WGGWD_MSG_PEER_KEY,
	.opts = opts,
	.conf_size = sizeof(struct conf),
	.ops = &ops);
