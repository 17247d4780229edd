// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

int log_level = WGGWD_LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_vmsg(int level, const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	int n;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s %s%s", tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		     level_names[level < 0 ? 0 : level > 3 ? 3 : level],
		     prefix ? prefix : "", prefix && *prefix ? " " : "");
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	/* one write per line, so lines from several processes do not mix */
	n = strlen(line);
	if (n + 1 < (int)sizeof(line)) {
		line[n++] = '\n';
	} else {
		line[sizeof(line) - 2] = '\n';
		n = sizeof(line) - 1;
	}
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere left to report it */
	}
}

void log_msg(int level, const char *prefix, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, prefix, fmt, ap);
	va_end(ap);
}

void log_fatal_oom(const char *file, int line)
{
	log_msg(WGGWD_LOG_ERROR, "[core]", "out of memory at %s:%d", file, line);
	abort();
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		die_oom();
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");

	if (!p)
		die_oom();
	return p;
}
