// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "core.h"

int log_level = WGGWD_LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
/* syslog priorities (sd-daemon(3) prefixes): err, warning, info, debug */
static const char prio[] = { '3', '4', '6', '7' };

/* Is stderr the journal's stream ($JOURNAL_STREAM is "DEV:INO" of it)?
 * Then lines carry a <N> priority and no time: the journal has both. */
bool log_to_journal(void)
{
	static int journal = -1;
	unsigned long long dev, ino;
	const char *e;
	struct stat st;

	if (journal >= 0)
		return journal;
	journal = 0;
	e = getenv("JOURNAL_STREAM");
	if (e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && !fstat(STDERR_FILENO, &st) &&
	    (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
		journal = 1;
	return journal;
}

void log_vmsg(int level, const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	int n;

	if (level > log_level)
		return;
	level = level < 0 ? 0 : level > 3 ? 3 : level;
	if (log_to_journal()) {
		n = snprintf(line, sizeof(line), "<%c>%s %s%s", prio[level], level_names[level],
			     prefix ? prefix : "", prefix && *prefix ? " " : "");
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s%s",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level],
			     prefix ? prefix : "", prefix && *prefix ? " " : "");
	}
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

void strtrunc(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = 0;
}
