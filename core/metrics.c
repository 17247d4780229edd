// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * Counters, gauges and histograms. Each has a flat name (the stats file,
 * SIGUSR1, `wggwd ctl stats`: "stage.event") and, for Prometheus, a
 * family (wggwd_stage_events_total) and label values. Single-threaded:
 * the loop owns them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "metrics.h"

/* 100 us to 10 s: a JIT tunnel takes a few ms; a client's retry 5 s. */
static const double default_bounds[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

#define NBUCKETS 1024
static struct metric *buckets[NBUCKETS];
static struct metric *head, **tail = &head;
static struct family *families, **ftail = &families;

static unsigned hash(const char *s)
{
	unsigned h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h % NBUCKETS;
}

struct family *metrics_family(const char *name, const char *help, enum mtype type,
			      const char *const *labels)
{
	struct family *f;
	size_t n = 0;

	for (f = families; f; f = f->next)
		if (!strcmp(f->name, name))
			return f->type == type ? f : NULL;
	while (labels && labels[n])
		n++;
	f = xcalloc(1, sizeof(*f));
	f->name = xstrdup(name);
	f->help = xstrdup(help ? help : name);
	f->type = type;
	f->n_labels = n;
	f->labels = xcalloc(n + 1, sizeof(char *));
	while (n--)
		f->labels[n] = xstrdup(labels[n]);
	f->mtail = &f->members;
	*ftail = f;
	ftail = &f->next;
	return f;
}

struct family *metrics_families(void)
{
	return families;
}

/* name="value",... with Prometheus' escapes */
static char *format_labels(const struct family *f, const char *const *values)
{
	size_t i, len = 1;
	char *s, *p;
	const char *v;

	if (!f || !f->n_labels)
		return NULL;
	for (i = 0; i < f->n_labels; i++)
		len += strlen(f->labels[i]) + 2 * strlen(values[i] ? values[i] : "") + 4;
	p = s = xcalloc(1, len);
	for (i = 0; i < f->n_labels; i++) {
		p += sprintf(p, "%s%s=\"", i ? "," : "", f->labels[i]);
		for (v = values[i] ? values[i] : ""; *v; v++) {
			if (*v == '\\' || *v == '"')
				*p++ = '\\';
			if (*v == '\n') {
				*p++ = '\\';
				*p++ = 'n';
				continue;
			}
			*p++ = *v;
		}
		*p++ = '"';
	}
	*p = '\0';
	return s;
}

static void hist_init(struct wggwd_hist *h, const double *bounds, size_t n)
{
	size_t i;

	if (!bounds || !n) {
		bounds = default_bounds;
		n = ARRAY_SIZE(default_bounds);
	}
	for (i = 1; i < n; i++)
		if (!(bounds[i] > bounds[i - 1])) { /* not ascending: use ours */
			bounds = default_bounds;
			n = ARRAY_SIZE(default_bounds);
			break;
		}
	h->n = n;
	h->bounds = xcalloc(n, sizeof(double));
	memcpy(h->bounds, bounds, n * sizeof(double));
	h->counts = xcalloc(n + 1, sizeof(uint64_t));
}

/*
 * The metric with this flat name, made on first use (in family f, with
 * these label values, when f is given). NULL if the name is taken by a
 * metric of another type.
 */
struct metric *metrics_get(const char *name, enum mtype type, struct family *f,
			   const char *const *values, const double *bounds, size_t n)
{
	unsigned h = hash(name);
	struct metric *m;

	for (m = buckets[h]; m; m = m->hnext) {
		if (strcmp(m->name, name))
			continue;
		if (m->type != type)
			return NULL;
		if (!m->fam && f && f->type == type) { /* read before it was made */
			m->fam = f;
			m->lvals = format_labels(f, values);
			*f->mtail = m;
			f->mtail = &m->fnext;
		}
		return m;
	}
	m = xcalloc(1, sizeof(*m) + strlen(name) + 1);
	strcpy(m->name, name);
	m->type = type;
	if (type == M_HIST)
		hist_init(&m->v.h, bounds, n);
	if (f && f->type == type) {
		m->fam = f;
		m->lvals = format_labels(f, values);
		*f->mtail = m;
		f->mtail = &m->fnext;
	}
	m->hnext = buckets[h];
	buckets[h] = m;
	*tail = m;
	tail = &m->next;
	return m;
}

static void *cell(struct metric *m)
{
	if (!m)
		return NULL;
	return m->type == M_HIST ? (void *)&m->v.h : (void *)&m->v.c;
}

/* Unlabelled: only in the stats file (tests, tools). */
uint64_t *metrics_counter(const char *name)
{
	static uint64_t sink;
	uint64_t *c = cell(metrics_get(name, M_COUNTER, NULL, NULL, NULL, 0));

	return c ? c : &sink;
}

int64_t *metrics_gauge(const char *name)
{
	static int64_t sink;
	int64_t *g = cell(metrics_get(name, M_GAUGE, NULL, NULL, NULL, 0));

	return g ? g : &sink;
}

struct wggwd_hist *metrics_histogram(const char *name, const double *bounds, size_t n)
{
	return cell(metrics_get(name, M_HIST, NULL, NULL, bounds, n));
}

/* A labelled cell; the family is made on first use. */
void *metrics_cell(const char *flat, enum mtype type, const char *family,
		   const char *help, const char *const *labels,
		   const char *const *values)
{
	struct family *f = metrics_family(family, help, type, labels);
	void *c = cell(metrics_get(flat, type, f, values, NULL, 0));
	static uint64_t sink[1];

	if (!c) {
		log_msg(WGGWD_LOG_WARN, "[core]", "metric %s: already registered as another type",
			flat);
		return sink;
	}
	return c;
}

void metrics_observe(struct wggwd_hist *h, double v)
{
	size_t lo = 0, hi;

	if (!h || v != v)
		return;
	hi = h->n;
	while (lo < hi) { /* the first bound >= v */
		size_t mid = (lo + hi) / 2;

		if (h->bounds[mid] >= v)
			hi = mid;
		else
			lo = mid + 1;
	}
	h->counts[lo]++;
	h->count++;
	h->sum += v;
}

static void dump_hist(FILE *f, const struct metric *m, bool json)
{
	const struct wggwd_hist *h = &m->v.h;
	uint64_t cum = 0;
	size_t i;

	/* flat, like the counters: NAME.count, NAME.sum, NAME.le_BOUND
	 * (cumulative, as Prometheus has it) */
	for (i = 0; i < h->n; i++) {
		cum += h->counts[i];
		fprintf(f, json ? "\"%s.le_%g\": %llu,\n  " : "%s.le_%g %llu\n", m->name,
			h->bounds[i], (unsigned long long)cum);
	}
	fprintf(f, json ? "\"%s.count\": %llu,\n  \"%s.sum\": %.9g" :
			  "%s.count %llu\n%s.sum %.9g\n",
		m->name, (unsigned long long)h->count, m->name, h->sum);
}

void metrics_dump(FILE *f, bool json)
{
	struct metric *m;

	if (json)
		fputs("{", f);
	for (m = head; m; m = m->next) {
		if (m->type == M_HIST) {
			if (json)
				fputs(m == head ? "\n  " : ",\n  ", f);
			dump_hist(f, m, json);
			continue;
		}
		if (json)
			fprintf(f, "%s\n  \"%s\": ", m == head ? "" : ",", m->name);
		else
			fprintf(f, "%s ", m->name);
		if (m->type == M_GAUGE)
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
	int ret = 0, fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	/* a new file, never through a link someone left in our place */
	if (unlink(tmp) && errno != ENOENT)
		return -errno;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		ret = -errno;
		close(fd);
		return ret;
	}
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
	struct family *f, *fn;
	size_t i;

	for (m = head; m; m = n) {
		n = m->next;
		if (m->type == M_HIST) {
			free(m->v.h.bounds);
			free(m->v.h.counts);
		}
		free(m->lvals);
		free(m);
	}
	for (f = families; f; f = fn) {
		fn = f->next;
		for (i = 0; i < f->n_labels; i++)
			free(f->labels[i]);
		free(f->labels);
		free(f->name);
		free(f->help);
		free(f);
	}
	head = NULL;
	tail = &head;
	families = NULL;
	ftail = &families;
	memset(buckets, 0, sizeof(buckets));
	metrics_host_reset();
}
