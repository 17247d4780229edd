// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Internal to the core: metric families and their members (metrics.c,
 * prom.c, host.c). */
#ifndef WGGWD_METRICS_H
#define WGGWD_METRICS_H

#include "core.h"

enum mtype { M_COUNTER, M_GAUGE, M_HIST };

struct wggwd_hist {
	size_t n;            /* bounds; counts has n + 1 (the last: +Inf) */
	double *bounds;
	uint64_t *counts;
	uint64_t count;
	double sum;
};

/* A Prometheus metric family: wggwd_..., its help, type and label names. */
struct family {
	struct family *next;
	char *name;
	char *help;
	enum mtype type;
	size_t n_labels;
	char **labels;
	struct metric *members, **mtail;
};

struct metric {
	struct metric *next;      /* insertion order, for output */
	struct metric *hnext;
	struct metric *fnext;     /* in its family */
	struct family *fam;       /* NULL: the stats file only */
	char *lvals;              /* a="x",b="y" (escaped), or NULL */
	enum mtype type;
	union {
		uint64_t c;
		int64_t g;
		struct wggwd_hist h;
	} v;
	char name[];
};

struct family *metrics_family(const char *name, const char *help, enum mtype type,
			      const char *const *labels);
struct family *metrics_families(void);
struct metric *metrics_get(const char *name, enum mtype type, struct family *f,
			   const char *const *values, const double *bounds, size_t n);
void *metrics_cell(const char *flat, enum mtype type, const char *family,
		   const char *help, const char *const *labels,
		   const char *const *values);
/* host.c: the plugins' families (host->metric) */
void metrics_host_reset(void);

#endif
