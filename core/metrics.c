// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Named counters and gauges. Single-threaded: the loop owns them. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

struct metric {
	struct metric *next;      /* insertion order, for output */
	struct metric *hnext;
	bool gauge;
	union {
		uint64_t c;
		int64_t g;
	} v;
	char name[];
};

#define NBUCKETS 256
static struct metric *buckets[NBUCKETS];
static struct metric *head, **tail = &head;

static unsigned hash(const char *s)
{
	unsigned h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h % NBUCKETS;
}

static struct metric *metric_get(const char *name, bool gauge)
{
	unsigned h = hash(name);
	struct metric *m;

	for (m = buckets[h]; m; m = m->hnext)
		if (!strcmp(m->name, name))
			return m;
	m = xcalloc(1, sizeof(*m) + strlen(name) + 1);
	strcpy(m->name, name);
	m->gauge = gauge;
	m->hnext = buckets[h];
	buckets[h] = m;
	*tail = m;
	tail = &m->next;
	return m;
}

uint64_t *metrics_counter(const char *name)
{
	return &metric_get(name, false)->v.c;
}

int64_t *metrics_gauge(const char *name)
{
	return &metric_get(name, true)->v.g;
}

void metrics_dump(FILE *f, bool json)
{
	struct metric *m;

	if (json)
		fputs("{", f);
	for (m = head; m; m = m->next) {
		if (json)
			fprintf(f, "%s\n  \"%s\": ", m == head ? "" : ",", m->name);
		else
			fprintf(f, "%s ", m->name);
		if (m->gauge)
			fprintf(f, "%lld", (long long)m->v.g);
		else
			fprintf(f, "%llu", (unsigned long long)m->v.c);
		if (!json)
			fputc('\n', f);
	}
	if (json)
		fputs("\n}\n", f);
}

/* Written to a temporary file and renamed, so readers never see half. */
int metrics_write_file(const char *path)
{
	char tmp[4096];
	FILE *f;
	int ret = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	metrics_dump(f, true);
	if (fflush(f) || ferror(f))
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

void metrics_reset(void)
{
	struct metric *m, *n;

	for (m = head; m; m = n) {
		n = m->next;
		free(m);
	}
	head = NULL;
	tail = &head;
	memset(buckets, 0, sizeof(buckets));
}
