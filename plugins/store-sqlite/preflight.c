// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* store-sqlite's preflight (`wggwd check`): the database's directory
 * exists and the daemon's user may create files there (SQLite's -wal and
 * -shm beside the database), and an existing database is read-writable. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

const char *ss_preflight(void *ctx, const char **option, char *buf, size_t len);

const char *ss_preflight(void *ctx, const char **option, char *buf, size_t len)
{
	const struct ctx *c = ctx;
	const char *path = c->conf->path;
	char dir[PATH_MAX];
	struct stat st;

	*option = "path";
	snprintf(dir, sizeof(dir), "%s", path);
	dirname(dir);
	if (stat(dir, &st)) {
		snprintf(buf, len, "directory %s: %s%s", dir, strerror(errno),
			 errno == ENOENT ? " (systemd: StateDirectory=wggwd makes /var/lib/wggwd)" : "");
		return buf;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(buf, len, "%s is not a directory", dir);
		return buf;
	}
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS)) {
		snprintf(buf, len, "directory %s: the daemon's user (uid %u) may not create files there: %s",
			 dir, (unsigned)geteuid(), strerror(errno));
		return buf;
	}
	if (!stat(path, &st)) {
		if (!S_ISREG(st.st_mode)) {
			snprintf(buf, len, "%s is not a regular file", path);
			return buf;
		}
		if (faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS)) {
			snprintf(buf, len, "%s: the daemon's user (uid %u) may not read and write it: %s",
				 path, (unsigned)geteuid(), strerror(errno));
			return buf;
		}
	}
	return NULL;
}
