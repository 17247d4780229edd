// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The Prometheus text exposition format 0.0.4, from the metric families. */
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <wggwd/version.h>

#include "metrics.h"
#include "prom.h"

static void help_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void num(FILE *f, double v)
{
	if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", f);
	else
		fprintf(f, "%.17g", v);
}

static void hist(FILE *f, const struct family *fam, const struct metric *m)
{
	const struct wggwd_hist *h = &m->v.h;
	const char *sep = m->lvals ? "," : "";
	const char *lv = m->lvals ? m->lvals : "";
	uint64_t cum = 0;
	size_t i;

	for (i = 0; i < h->n; i++) {
		cum += h->counts[i];
		fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", fam->name, lv, sep, h->bounds[i],
			(unsigned long long)cum);
	}
	fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", fam->name, lv, sep,
		(unsigned long long)h->count);
	fprintf(f, "%s_sum%s%s%s ", fam->name, m->lvals ? "{" : "", lv, m->lvals ? "}" : "");
	num(f, h->sum);
	fprintf(f, "\n%s_count%s%s%s %llu\n", fam->name, m->lvals ? "{" : "", lv,
		m->lvals ? "}" : "", (unsigned long long)h->count);
}

/* The usual process_* metrics of Prometheus' client libraries. */
static void process(FILE *f)
{
	struct timespec now, up;
	struct rusage ru;
	struct rlimit rl;
	long pages = 0, rss = 0;
	int fds = 0;
	FILE *sf;
	DIR *dir;

	getrusage(RUSAGE_SELF, &ru);
	fprintf(f, "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds\n"
		"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.6f\n",
		ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
			(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	sf = fopen("/proc/self/statm", "re");
	if (sf) {
		if (fscanf(sf, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(sf);
		fprintf(f, "# HELP process_resident_memory_bytes Resident memory size in bytes\n"
			"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n",
			(long long)rss * sysconf(_SC_PAGESIZE));
	}
	dir = opendir("/proc/self/fd");
	if (dir) {
		while (readdir(dir))
			fds++;
		closedir(dir);
		/* less ".", ".." and the directory's own */
		fprintf(f, "# HELP process_open_fds Number of open file descriptors\n"
			"# TYPE process_open_fds gauge\nprocess_open_fds %d\n", fds - 3);
	}
	if (!getrlimit(RLIMIT_NOFILE, &rl))
		fprintf(f, "# HELP process_max_fds Maximum number of open file descriptors\n"
			"# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
			(unsigned long long)rl.rlim_cur);
	clock_gettime(CLOCK_REALTIME, &now);
	clock_gettime(CLOCK_MONOTONIC, &up);
	fprintf(f, "# HELP process_start_time_seconds Start time of the process since the Unix epoch, in seconds\n"
		"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
		now.tv_sec + now.tv_nsec / 1e9 - (up.tv_sec + up.tv_nsec / 1e9 - prom_started_mono));
}

void prom_write(FILE *f)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };
	const struct family *fam;
	const struct metric *m;

	fputs("# HELP wggwd_build_info The daemon's version and plugin ABI\n"
	      "# TYPE wggwd_build_info gauge\n", f);
	fprintf(f, "wggwd_build_info{version=\"%s\",abi=\"%d.%d\"} 1\n", WGGWD_VERSION,
		WGGWD_ABI_MAJOR, WGGWD_ABI_MINOR);
	process(f);
	for (fam = metrics_families(); fam; fam = fam->next) {
		if (!fam->members)
			continue;
		fprintf(f, "# HELP %s ", fam->name);
		help_text(f, fam->help);
		fprintf(f, "\n# TYPE %s %s\n", fam->name, types[fam->type]);
		for (m = fam->members; m; m = m->fnext) {
			if (m->type == M_HIST) {
				hist(f, fam, m);
				continue;
			}
			fprintf(f, "%s%s%s%s ", fam->name, m->lvals ? "{" : "",
				m->lvals ? m->lvals : "", m->lvals ? "}" : "");
			if (m->type == M_GAUGE)
				fprintf(f, "%lld\n", (long long)m->v.g);
			else
				fprintf(f, "%llu\n", (unsigned long long)m->v.c);
		}
	}
}
