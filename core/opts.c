// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * Option tables: one static table per plugin drives validation of its
 * YAML, the values written into its conf struct, and `wggwd plugins`.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

const char *opt_type_name(enum wggwd_opt_type t)
{
	switch (t) {
	case WGGWD_OPT_STR: return "string";
	case WGGWD_OPT_INT: return "int";
	case WGGWD_OPT_BOOL: return "bool";
	case WGGWD_OPT_DURATION: return "duration";
	case WGGWD_OPT_SIZE: return "size";
	case WGGWD_OPT_ENUM: return "enum";
	case WGGWD_OPT_ADDR: return "address";
	case WGGWD_OPT_PATH: return "path";
	case WGGWD_OPT_SECRET_FILE: return "secret file";
	case WGGWD_OPT_LIST: return "list";
	}
	return "?";
}

static const char *expected(const struct wggwd_opt *o, char *buf, size_t len)
{
	size_t off;
	int i;

	switch (o->type) {
	case WGGWD_OPT_STR: return "a string";
	case WGGWD_OPT_INT: return "an integer";
	case WGGWD_OPT_BOOL: return "true or false";
	case WGGWD_OPT_DURATION: return "a duration (e.g. 250ms, 2s, 5m, 1h; a bare number is seconds)";
	case WGGWD_OPT_SIZE: return "a size (e.g. 4096, 64k, 8MiB)";
	case WGGWD_OPT_ADDR: return "an address (1.2.3.4:5 or [::1]:5)";
	case WGGWD_OPT_PATH: return "a path";
	case WGGWD_OPT_SECRET_FILE: return "the path of a secret file";
	case WGGWD_OPT_LIST: return o->sub ? "a list of mappings" : "a list";
	case WGGWD_OPT_ENUM:
		off = snprintf(buf, len, "one of");
		for (i = 0; o->choices && o->choices[i]; i++)
			off += snprintf(buf + off, off < len ? len - off : 0, "%s %s",
					i ? "," : "", o->choices[i]);
		return buf;
	}
	return "?";
}

void opt_error(struct opt_ctx *oc, yaml_mark_t m, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s:%zu:%zu: %s%s\n", oc->file, m.line + 1, m.column + 1,
		oc->prefix ? oc->prefix : "", msg);
	oc->errors++;
}

static int parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || isspace((unsigned char)*s))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const t[] = { "true", "yes", "on", NULL };
	static const char *const f[] = { "false", "no", "off", NULL };
	int i;

	for (i = 0; t[i]; i++)
		if (!strcasecmp(s, t[i]))
			return *out = true, 0;
	for (i = 0; f[i]; i++)
		if (!strcasecmp(s, f[i]))
			return *out = false, 0;
	return -EINVAL;
}

/* number followed by a unit from the table; a bare number takes `bare` */
static int parse_unit(const char *s, const char *const *units,
		      const uint64_t *mult, uint64_t bare, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int i;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	while (*end == ' ')
		end++;
	if (!*end) {
		if (v && v > UINT64_MAX / bare)
			return -ERANGE;
		*out = v * bare;
		return 0;
	}
	for (i = 0; units[i]; i++) {
		if (!strcmp(end, units[i])) {
			if (v && v > UINT64_MAX / mult[i])
				return -ERANGE;
			*out = v * mult[i];
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_duration(const char *s, int64_t *ms)
{
	static const char *const u[] = { "ms", "s", "m", "h", "d", NULL };
	static const uint64_t m[] = { 1, 1000, 60000, 3600000, 86400000 };
	uint64_t v;
	int ret = parse_unit(s, u, m, 1000, &v);

	if (!ret && v > INT64_MAX)
		return -ERANGE;
	if (!ret)
		*ms = (int64_t)v;
	return ret;
}

static int parse_size(const char *s, uint64_t *out)
{
	static const char *const u[] = { "B", "k", "K", "KB", "KiB", "M", "MB",
					 "MiB", "G", "GB", "GiB", NULL };
	static const uint64_t m[] = { 1, 1 << 10, 1 << 10, 1 << 10, 1 << 10,
				      1 << 20, 1 << 20, 1 << 20, 1 << 30, 1 << 30,
				      1 << 30 };

	return parse_unit(s, u, m, 1, out);
}

static int parse_addr(const char *s, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *colon;
	int64_t p = 0;
	size_t n;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || (size_t)(close - s - 1) >= sizeof(host))
			return -EINVAL;
		n = close - s - 1;
		memcpy(host, s + 1, n);
		host[n] = '\0';
		if (close[1] == ':')
			port = close + 2;
		else if (close[1])
			return -EINVAL;
	} else {
		colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL; /* a bare IPv6 address */
		n = colon ? (size_t)(colon - s) : strlen(s);
		if (n >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, n);
		host[n] = '\0';
		port = colon ? colon + 1 : NULL;
	}
	if (port && (parse_int(port, &p) || p < 0 || p > 65535))
		return -EINVAL;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(p);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(p);
	} else {
		return -EINVAL;
	}
	return 0;
}

static void *field(void *conf, const struct wggwd_opt *o)
{
	return (char *)conf + o->offset;
}

static bool ranged(const struct wggwd_opt *o)
{
	return o->min || o->max;
}

/* Set a scalar option from text; on error, a phrase in err. */
int opt_set_string(const struct wggwd_opt *o, void *conf, const char *val,
		   char *err, size_t errlen)
{
	void *f = field(conf, o);
	char ebuf[256];
	int64_t i64;
	uint64_t u64;
	bool b;
	int i;

	switch (o->type) {
	case WGGWD_OPT_STR:
	case WGGWD_OPT_PATH:
	case WGGWD_OPT_SECRET_FILE:
		if ((o->type != WGGWD_OPT_STR) && !*val)
			goto bad;
		free(*(char **)f);
		*(char **)f = xstrdup(val);
		return 0;
	case WGGWD_OPT_INT:
		if (parse_int(val, &i64))
			goto bad;
		if (ranged(o) && (i64 < o->min || i64 > o->max)) {
			snprintf(err, errlen, "%s: expected an integer from %lld to %lld, got %s",
				 o->name, (long long)o->min, (long long)o->max, val);
			return -ERANGE;
		}
		*(int64_t *)f = i64;
		return 0;
	case WGGWD_OPT_BOOL:
		if (parse_bool(val, &b))
			goto bad;
		*(bool *)f = b;
		return 0;
	case WGGWD_OPT_DURATION:
		if (parse_duration(val, &i64))
			goto bad;
		if (ranged(o) && (i64 < o->min || i64 > o->max)) {
			snprintf(err, errlen,
				 "%s: expected a duration from %lldms to %lldms, got \"%s\"",
				 o->name, (long long)o->min, (long long)o->max, val);
			return -ERANGE;
		}
		*(int64_t *)f = i64;
		return 0;
	case WGGWD_OPT_SIZE:
		if (parse_size(val, &u64))
			goto bad;
		if (ranged(o) && (u64 < (uint64_t)o->min || u64 > (uint64_t)o->max)) {
			snprintf(err, errlen,
				 "%s: expected a size from %lld to %lld bytes, got \"%s\"",
				 o->name, (long long)o->min, (long long)o->max, val);
			return -ERANGE;
		}
		*(uint64_t *)f = u64;
		return 0;
	case WGGWD_OPT_ENUM:
		for (i = 0; o->choices && o->choices[i]; i++) {
			if (!strcmp(val, o->choices[i])) {
				*(int *)f = i;
				return 0;
			}
		}
		goto bad;
	case WGGWD_OPT_ADDR:
		if (parse_addr(val, f))
			goto bad;
		return 0;
	case WGGWD_OPT_LIST:
		snprintf(err, errlen, "%s: expected %s, got \"%s\"", o->name,
			 expected(o, ebuf, sizeof(ebuf)), val);
		return -EINVAL;
	}
bad:
	snprintf(err, errlen, "%s: expected %s, got \"%s\"", o->name,
		 expected(o, ebuf, sizeof(ebuf)), val);
	return -EINVAL;
}

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE: return "a mapping";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_SCALAR_NODE: return "a scalar";
	default: return "nothing";
	}
}

static bool skipped(const struct opt_ctx *oc, const char *name)
{
	const char *const *s;

	for (s = oc->skip; s && *s; s++)
		if (!strcmp(*s, name))
			return true;
	return false;
}

static const struct wggwd_opt *opt_find(const struct wggwd_opt *opts,
					const char *name)
{
	for (; opts && opts->name; opts++)
		if (!strcmp(opts->name, name))
			return opts;
	return NULL;
}

size_t levenshtein(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, prev, tmp;
	size_t row[64];

	if (lb >= ARRAY_SIZE(row))
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			tmp = row[j];
			row[j] = prev + (a[i - 1] != b[j - 1]);
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			if (tmp + 1 < row[j])
				row[j] = tmp + 1;
			prev = tmp;
		}
	}
	return row[lb];
}

static const char *nearest(const struct wggwd_opt *opts, const char *name)
{
	const char *best = NULL;
	size_t d, bestd = SIZE_MAX;

	for (; opts && opts->name; opts++) {
		d = levenshtein(name, opts->name);
		if (d < bestd) {
			bestd = d;
			best = opts->name;
		}
	}
	/* only suggest what looks like a typo, not any option at all */
	return bestd <= 2 || (best && bestd <= strlen(best) / 3) ? best : NULL;
}

static int apply_value(struct opt_ctx *oc, const struct wggwd_opt *o,
		       void *conf, yaml_node_t *v);

static int run_check(struct opt_ctx *oc, const struct wggwd_opt *o, void *conf,
		     yaml_node_t *v)
{
	char buf[512];
	const char *msg;

	if (!o->check || o->type == WGGWD_OPT_LIST)
		return 0;
	msg = o->check(field(conf, o), buf, sizeof(buf));
	if (!msg)
		return 0;
	opt_error(oc, v->start_mark, "%s: %s", o->name, msg);
	return -EINVAL;
}

static int apply_list(struct opt_ctx *oc, const struct wggwd_opt *o,
		      void *conf, yaml_node_t *v)
{
	struct wggwd_list *l = field(conf, o);
	yaml_node_item_t *it;
	size_t n, i;
	char ebuf[256];
	int errors = oc->errors;

	if (v->type != YAML_SEQUENCE_NODE) {
		opt_error(oc, v->start_mark, "%s: expected %s, got %s", o->name,
			  expected(o, ebuf, sizeof(ebuf)), node_kind(v));
		return -EINVAL;
	}
	opts_free(&(struct wggwd_opt[]){ *o, WGGWD_OPT_END }[0], conf);
	n = v->data.sequence.items.top - v->data.sequence.items.start;
	if (ranged(o) && (n < (size_t)o->min || n > (size_t)o->max)) {
		opt_error(oc, v->start_mark, "%s: expected from %lld to %lld entries, got %zu",
			  o->name, (long long)o->min, (long long)o->max, n);
		return -ERANGE;
	}
	l->n = n;
	l->v = xcalloc(n, o->sub ? o->sub_size : sizeof(char *));
	for (i = 0, it = v->data.sequence.items.start; i < n; i++, it++) {
		yaml_node_t *e = yaml_document_get_node(oc->doc, *it);

		if (o->sub) {
			struct opt_ctx sub = *oc;
			char prefix[256];

			snprintf(prefix, sizeof(prefix), "%s%s[%zu]: ",
				 oc->prefix ? oc->prefix : "", o->name, i);
			sub.prefix = prefix;
			sub.skip = NULL;
			sub.errors = 0;
			if (e->type != YAML_MAPPING_NODE) {
				opt_error(oc, e->start_mark, "%s[%zu]: expected a mapping, got %s",
					  o->name, i, node_kind(e));
				continue;
			}
			opts_apply(&sub, o->sub, (char *)l->v + i * o->sub_size,
				   *it, e->start_mark);
			oc->errors += sub.errors;
		} else if (e->type != YAML_SCALAR_NODE) {
			opt_error(oc, e->start_mark, "%s[%zu]: expected a string, got %s",
				  o->name, i, node_kind(e));
		} else {
			((char **)l->v)[i] = xstrdup((char *)e->data.scalar.value);
			if (o->check) {
				char buf[512];
				const char *msg = o->check(&((char **)l->v)[i], buf, sizeof(buf));

				if (msg)
					opt_error(oc, e->start_mark, "%s[%zu]: %s", o->name, i, msg);
			}
		}
	}
	return oc->errors > errors ? -EINVAL : 0;
}

static int apply_value(struct opt_ctx *oc, const struct wggwd_opt *o,
		       void *conf, yaml_node_t *v)
{
	char err[512], ebuf[256];

	if (o->type == WGGWD_OPT_LIST)
		return apply_list(oc, o, conf, v);
	if (v->type != YAML_SCALAR_NODE) {
		opt_error(oc, v->start_mark, "%s: expected %s, got %s", o->name,
			  expected(o, ebuf, sizeof(ebuf)), node_kind(v));
		return -EINVAL;
	}
	if (opt_set_string(o, conf, (char *)v->data.scalar.value, err, sizeof(err))) {
		opt_error(oc, v->start_mark, "%s", err);
		return -EINVAL;
	}
	return run_check(oc, o, conf, v);
}

int opts_apply(struct opt_ctx *oc, const struct wggwd_opt *opts, void *conf,
	       int map, yaml_mark_t where)
{
	const struct wggwd_opt *o;
	yaml_node_pair_t *pair;
	yaml_node_t *m, *k, *v;
	yaml_mark_t seen_at[128];
	bool seen[128] = { false };
	char err[512];
	int errors = oc->errors;
	size_t idx;

	for (o = opts; o && o->name; o++) {
		if (o->def && opt_set_string(o, conf, o->def, err, sizeof(err)))
			opt_error(oc, where, "default of %s", err);
	}
	if (map) {
		m = yaml_document_get_node(oc->doc, map);
		if (m->type != YAML_MAPPING_NODE) {
			opt_error(oc, m->start_mark, "expected a mapping of options, got %s",
				  node_kind(m));
			return -EINVAL;
		}
		for (pair = m->data.mapping.pairs.start;
		     pair < m->data.mapping.pairs.top; pair++) {
			const char *name, *near;

			k = yaml_document_get_node(oc->doc, pair->key);
			v = yaml_document_get_node(oc->doc, pair->value);
			if (k->type != YAML_SCALAR_NODE) {
				opt_error(oc, k->start_mark, "expected an option name, got %s",
					  node_kind(k));
				continue;
			}
			name = (char *)k->data.scalar.value;
			if (skipped(oc, name))
				continue;
			o = opt_find(opts, name);
			if (!o) {
				near = nearest(opts, name);
				if (near)
					opt_error(oc, k->start_mark,
						  "unknown option \"%s\" (did you mean \"%s\"?)",
						  name, near);
				else
					opt_error(oc, k->start_mark, "unknown option \"%s\"",
						  name);
				continue;
			}
			idx = o - opts;
			if (idx < ARRAY_SIZE(seen) && seen[idx]) {
				opt_error(oc, k->start_mark,
					  "option \"%s\" given twice (first at %zu:%zu)",
					  name, seen_at[idx].line + 1,
					  seen_at[idx].column + 1);
				continue;
			}
			if (idx < ARRAY_SIZE(seen)) {
				seen[idx] = true;
				seen_at[idx] = k->start_mark;
			}
			if (o->flags & WGGWD_OPT_DEPRECATED)
				fprintf(stderr, "%s:%zu:%zu: %swarning: option \"%s\" is deprecated\n",
					oc->file, k->start_mark.line + 1,
					k->start_mark.column + 1, oc->prefix ? oc->prefix : "",
					name);
			apply_value(oc, o, conf, v);
		}
	}
	for (o = opts; o && o->name; o++) {
		idx = o - opts;
		if ((o->flags & WGGWD_OPT_REQUIRED) &&
		    !(idx < ARRAY_SIZE(seen) && seen[idx]))
			opt_error(oc, where, "missing required option \"%s\" (%s)",
				  o->name, expected(o, err, sizeof(err)));
	}
	return oc->errors > errors ? -EINVAL : 0;
}

void opts_free(const struct wggwd_opt *opts, void *conf)
{
	const struct wggwd_opt *o;
	struct wggwd_list *l;
	size_t i;

	if (!conf)
		return;
	for (o = opts; o && o->name; o++) {
		void *f = field(conf, o);

		switch (o->type) {
		case WGGWD_OPT_STR:
		case WGGWD_OPT_PATH:
		case WGGWD_OPT_SECRET_FILE:
			free(*(char **)f);
			*(char **)f = NULL;
			break;
		case WGGWD_OPT_LIST:
			l = f;
			for (i = 0; l->v && i < l->n; i++) {
				if (o->sub)
					opts_free(o->sub, (char *)l->v + i * o->sub_size);
				else
					free(((char **)l->v)[i]);
			}
			free(l->v);
			l->v = NULL;
			l->n = 0;
			break;
		default:
			break;
		}
	}
}

void opts_print_help(FILE *f, const struct wggwd_opt *opts, int indent)
{
	const struct wggwd_opt *o;
	char ebuf[256];

	for (o = opts; o && o->name; o++) {
		fprintf(f, "%*s%s (%s%s%s)", indent, "", o->name,
			opt_type_name(o->type),
			o->flags & WGGWD_OPT_REQUIRED ? ", required" : "",
			o->flags & WGGWD_OPT_DEPRECATED ? ", deprecated" : "");
		if (o->def)
			fprintf(f, " default: %s", o->def);
		if (ranged(o) && o->type != WGGWD_OPT_LIST)
			fprintf(f, " range: %lld..%lld%s", (long long)o->min,
				(long long)o->max,
				o->type == WGGWD_OPT_DURATION ? " ms" :
				o->type == WGGWD_OPT_SIZE ? " bytes" : "");
		fputc('\n', f);
		if (o->type == WGGWD_OPT_ENUM)
			fprintf(f, "%*s  %s\n", indent, "", expected(o, ebuf, sizeof(ebuf)));
		if (o->help)
			fprintf(f, "%*s  %s\n", indent, "", o->help);
		if (o->sub)
			opts_print_help(f, o->sub, indent + 4);
	}
}
