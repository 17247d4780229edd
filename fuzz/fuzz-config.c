// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * libFuzzer target: the YAML configuration (core/config.c, core/opts.c)
 * through every bundled plugin's option table, check functions, validate
 * and link (ctx NULL), as `wggwd check` runs them: config_load on the
 * input (a memfd), then config_free. fuzz/run sets WGGWD_PLUGIN_PATH to
 * the instrumented plugins it builds (build-fuzz/meson/plugins).
 *
 * `plugin_path` in the input is renamed (plugin_pxth: an unknown option)
 * so that an input cannot make the loader open libraries outside the
 * plugins; what the loader checks of a plugin file is not fuzzed here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core.h"
#include "stubhost.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	stub_init(); /* stderr to /dev/null (FUZZ_VERBOSE=1 keeps it) */
	if (!getenv("WGGWD_PLUGIN_PATH"))
		fprintf(stdout, "fuzz-config: WGGWD_PLUGIN_PATH is not set: no plugin will load\n");
	fd = memfd_create("wggwd-fuzz.yaml", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c;
	char *copy, *p;

	copy = malloc(size + 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = 0;
	for (p = copy; (p = memmem(p, copy + size - p, "plugin_path", 11)); p += 11)
		p[7] = 'x';
	if (ftruncate(fd, 0) || pwrite(fd, copy, size, 0) != (ssize_t)size)
		abort();
	free(copy);
	c = config_load(path);
	config_free(c);
	return 0;
}
