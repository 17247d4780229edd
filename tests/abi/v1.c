// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * A plugin as the 1.0 header built it: the 1.0 descriptor and ops table,
 * frozen here, so this stays a 1.0 plugin whatever the header becomes.
 * The loader must refuse it, naming both ABIs.
 */
#include <stddef.h>
#include <stdint.h>

struct v1_ops {
	uint32_t size;
	int (*create)(const void *host, void *self, const void *conf, void **ctx);
	const char *(*validate)(const void *conf, const char **option, char *buf,
				size_t len);
	int (*start)(void *ctx);
	int (*process)(void *ctx, void *item);
	void (*stop)(void *ctx);
	void (*destroy)(void *ctx);
	int (*lookup)(void *ctx, void *item);
	void (*done)(void *ctx, void *item, int verdict);
	int (*device)(void *ctx, void *dev);
	int (*dump)(void *ctx, void *cb, void *arg);
	int (*remove)(void *ctx, const uint8_t (*keys)[32], size_t n, void *cb,
		      void *arg);
};

struct v1_plugin {
	uint16_t abi_major;
	uint16_t abi_minor;
	uint32_t size;
	const char *build_sig;
	const char *name;
	const char *version;
	const char *license;
	const char *description;
	uint32_t kind;
	uint32_t in;
	uint32_t out;
	uint32_t flags;
	const void *opts;
	size_t conf_size;
	const struct v1_ops *ops;
};

static int v1_create(const void *host, void *self, const void *conf, void **ctx)
{
	(void)host;
	(void)self;
	(void)conf;
	*ctx = NULL;
	return 0;
}

static int v1_process(void *ctx, void *item)
{
	(void)ctx;
	(void)item;
	return 0;
}

static void v1_destroy(void *ctx)
{
	(void)ctx;
}

static const struct v1_ops ops = {
	.size = sizeof(struct v1_ops),
	.create = v1_create,
	.process = v1_process,
	.destroy = v1_destroy,
};

#define STR_(x) #x
#define STR(x) STR_(x)

__attribute__((visibility("default"))) const struct v1_plugin wggwd_plugin = {
	.abi_major = 1,
	.abi_minor = 0,
	.size = sizeof(struct v1_plugin),
	.build_sig = "ptr" STR(__SIZEOF_POINTER__) "-long" STR(__SIZEOF_LONG__),
	.name = "abi-v1",
	.version = "1.0",
	.license = "MIT",
	.description = "a 1.0 plugin",
	.kind = 3,      /* resolver */
	.in = 1u << 1,  /* peer key */
	.out = 1u << 2, /* peer */
	.ops = &ops,
};
