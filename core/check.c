// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * `wggwd check`: the schema (config_load), then warnings about what is
 * valid but probably not meant, then a preflight (`nginx -t`): the stages
 * are created as `run` creates them (create does no I/O), secret files are
 * opened under run's rules, and each stage's ops.preflight says what would
 * fail at start. Every finding carries the YAML location of its option.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

struct chk {
	const char *file;
	yaml_document_t doc;
	bool have_doc;
	int errors, warnings;
};

static yaml_node_t *nd(struct chk *k, int i)
{
	return i ? yaml_document_get_node(&k->doc, i) : NULL;
}

static const char *scal(yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (char *)n->data.scalar.value : NULL;
}

/* The value of `key` in mapping node `map` (0: none); its key's mark. */
static int map_get(struct chk *k, int map, const char *key, yaml_mark_t *km)
{
	yaml_node_t *m = nd(k, map);
	yaml_node_pair_t *p;

	if (!m || m->type != YAML_MAPPING_NODE || !key)
		return 0;
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		const char *s = scal(nd(k, p->key));

		if (s && !strcmp(s, key)) {
			if (km)
				*km = nd(k, p->key)->start_mark;
			return p->value;
		}
	}
	return 0;
}

static int root(struct chk *k)
{
	return k->have_doc && yaml_document_get_root_node(&k->doc) ? 1 : 0;
}

/* The options mapping of stage `name`, and where the stage is named. */
static int stage_opts(struct chk *k, const struct stage_conf *s, yaml_mark_t *m)
{
	int st = map_get(k, map_get(k, root(k), "stages", NULL), s->name, m);

	return map_get(k, st, "options", m);
}

static void report(struct chk *k, bool warn, yaml_mark_t m, const struct stage_conf *s,
		   const char *fmt, ...) WGGWD_PRINTF(5, 6);
static void report(struct chk *k, bool warn, yaml_mark_t m, const struct stage_conf *s,
		   const char *fmt, ...)
{
	char msg[1024], who[256] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s && s->plugin_name && strcmp(s->name, s->plugin_name))
		snprintf(who, sizeof(who), "%s (%s): ", s->name, s->plugin_name);
	else if (s)
		snprintf(who, sizeof(who), "%s: ", s->name);
	fprintf(stderr, "%s:%zu:%zu: %s%s%s\n", k->file, m.line + 1, m.column + 1,
		warn ? "warning: " : "", who, msg);
	if (warn)
		k->warnings++;
	else
		k->errors++;
}

/* ------------------------------------------------------------- warnings */

static bool bare_number(const char *v)
{
	if (!v || !*v)
		return false;
	for (; *v; v++)
		if (!isdigit((unsigned char)*v))
			return false;
	return true;
}

/* Durations written without a unit: read as seconds, said once each. */
static void warn_durations(struct chk *k, const struct stage_conf *s,
			   const struct wggwd_opt *opts, int map, const char *path)
{
	const struct wggwd_opt *o;
	yaml_node_item_t *it;
	yaml_mark_t km;
	char sub[256];
	int v;

	for (o = opts; o && o->name; o++) {
		v = map_get(k, map, o->name, &km);
		if (!v)
			continue;
		if (o->type == WGGWD_OPT_DURATION && bare_number(scal(nd(k, v)))) {
			const char *n = scal(nd(k, v));

			report(k, true, nd(k, v)->start_mark, s,
			       "%s%s: %s has no unit and is read as %s seconds; write \"%ss\" (or ms, m, h) to say so",
			       path, o->name, n, n, n);
		}
		if (o->type == WGGWD_OPT_LIST && o->sub && nd(k, v)->type == YAML_SEQUENCE_NODE) {
			yaml_node_t *l = nd(k, v);

			for (it = l->data.sequence.items.start; it < l->data.sequence.items.top; it++) {
				snprintf(sub, sizeof(sub), "%s%s[%ld].", path, o->name,
					 (long)(it - l->data.sequence.items.start));
				warn_durations(k, s, o->sub, *it, sub);
			}
		}
	}
}

/* A store after the resolver is only a sink: nothing is ever served from
 * its cache, since the core asks a store before the resolver only. */
static void warn_order(struct chk *k, const struct config *c)
{
	size_t i, j, r;

	for (i = 0; i < c->n_pipelines; i++) {
		const struct pipeline_conf *pl = &c->pipelines[i];

		for (j = 0, r = SIZE_MAX; j < pl->n; j++) {
			uint32_t kind = pl->stages[j]->plugin->desc.kind;

			if (kind == WGGWD_RESOLVER && r == SIZE_MAX)
				r = j;
			if (kind == WGGWD_STORE && r != SIZE_MAX)
				report(k, true, pl->marks[j], NULL,
				       "pipeline \"%s\": %s \"%s\" comes after %s \"%s\": it only records answers, it is never asked before a lookup, so nothing is served from its cache; put it before the resolver",
				       pl->name, kind_name(kind), pl->stages[j]->name,
				       kind_name(WGGWD_RESOLVER), pl->stages[r]->name);
		}
	}
}

/* ------------------------------------------------------------ preflight */

/* The rules of host->secret_read (core/host.c), as a phrase. */
static const char *secret_check(const char *path, char *buf, size_t len)
{
	struct stat st;
	char c;
	int fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(buf, len, "secret file %s: %s%s", path, strerror(errno),
			 errno == ELOOP ? " (a symbolic link: name the file itself)" : "");
		return buf;
	}
	if (fstat(fd, &st)) {
		snprintf(buf, len, "secret file %s: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(buf, len, "secret file %s: not a regular file", path);
	} else if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(buf, len, "secret file %s: owned by uid %u, not root or the daemon's user (uid %u)",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
	} else if (st.st_mode & 077) {
		snprintf(buf, len, "secret file %s: mode %04o lets group or others in; chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
	} else if (read(fd, &c, 1) < 0) {
		snprintf(buf, len, "secret file %s: %s", path, strerror(errno));
	} else {
		close(fd);
		return NULL;
	}
	close(fd);
	return buf;
}

static void check_secrets(struct chk *k, const struct stage_conf *s,
			  const struct wggwd_opt *opts, const void *conf, int map,
			  yaml_mark_t where, const char *path)
{
	const struct wggwd_opt *o;
	yaml_mark_t km;
	char buf[PATH_MAX + 256], sub[256];
	const char *why;
	size_t i;
	int v;

	for (o = opts; o && o->name; o++) {
		const void *f = (const char *)conf + o->offset;

		km = where;
		v = map_get(k, map, o->name, &km);
		if (v)
			km = nd(k, v)->start_mark;
		if (o->type == WGGWD_OPT_SECRET_FILE && *(char *const *)f) {
			why = secret_check(*(char *const *)f, buf, sizeof(buf));
			if (why)
				report(k, false, km, s, "%s%s: %s", path, o->name, why);
		}
		if (o->type == WGGWD_OPT_LIST && o->sub) {
			const struct wggwd_list *l = f;
			yaml_node_t *seq = nd(k, v);

			for (i = 0; i < l->n; i++) {
				int e = 0;

				if (seq && seq->type == YAML_SEQUENCE_NODE &&
				    seq->data.sequence.items.start + i < seq->data.sequence.items.top)
					e = seq->data.sequence.items.start[i];
				snprintf(sub, sizeof(sub), "%s%s[%zu].", path, o->name, i);
				check_secrets(k, s, o->sub, (const char *)l->v + i * o->sub_size,
					      e, e ? nd(k, e)->start_mark : km, sub);
			}
		}
	}
}

static void preflight(struct chk *k, struct config *c)
{
	uv_loop_t loop;
	struct runtime *rt;
	struct wggwd_inst *in;
	yaml_mark_t sm, km;
	char buf[1024];
	const char *why, *opt;
	size_t i;
	int map, v;

	for (i = 0; i < c->n_stages; i++) {
		struct stage_conf *s = &c->stages[i];

		if (!s->pipelines)
			continue;
		sm = s->mark;
		map = stage_opts(k, s, &sm);
		check_secrets(k, s, s->plugin->desc.opts, s->conf, map, sm, "");
	}
	/* what the stages say while created and linked is not what check
	 * reports: only their warnings and errors */
	if (log_level > WGGWD_LOG_WARN)
		log_level = WGGWD_LOG_WARN;
	uv_loop_init(&loop);
	host_init(&loop);
	rt = runtime_new(&loop, c);
	if (!rt) {
		fprintf(stderr, "%s: a stage could not be created (see above)\n", k->file);
		k->errors++;
	}
	for (i = 0; rt && i < runtime_n_inst(rt); i++) {
		in = runtime_inst(rt, i);
		if (!in->ops->preflight)
			continue;
		opt = NULL;
		buf[0] = '\0';
		why = in->ops->preflight(in->ctx, &opt, buf, sizeof(buf));
		if (!why)
			continue;
		sm = in->sc->mark;
		map = stage_opts(k, in->sc, &sm);
		km = sm;
		v = opt ? map_get(k, map, opt, &km) : 0;
		if (v)
			km = nd(k, v)->start_mark;
		report(k, false, km, in->sc, "%s%s%s", opt ? opt : "", opt ? ": " : "", why);
	}
	runtime_free(rt);
	host_shutdown();
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
}

static void load_doc(struct chk *k)
{
	yaml_parser_t parser;
	FILE *f = fopen(k->file, "r");

	if (!f)
		return;
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	k->have_doc = yaml_parser_load(&parser, &k->doc);
	yaml_parser_delete(&parser);
	fclose(f);
}

int check_config(const char *file, bool offline, bool quiet)
{
	struct chk k = { .file = file };
	struct config *c;
	yaml_mark_t sm;
	size_t i;

	c = config_load(file);
	if (!c)
		return 1;
	load_doc(&k);
	warn_durations(&k, NULL, core_opts, root(&k), "");
	for (i = 0; i < c->n_stages; i++) {
		sm = c->stages[i].mark;
		warn_durations(&k, &c->stages[i], c->stages[i].plugin->desc.opts,
			       stage_opts(&k, &c->stages[i], &sm), "");
	}
	warn_order(&k, c);
	if (!offline)
		preflight(&k, c);
	if (!k.errors && !quiet)
		printf("%s: ok (%zu stages, %zu pipelines%s%s)\n", file, c->n_stages,
		       c->n_pipelines, offline ? "; schema only" : "",
		       k.warnings ? "; warnings above" : "");
	if (k.have_doc)
		yaml_document_delete(&k.doc);
	config_free(c);
	plugins_unload_all();
	return k.errors ? 1 : 0;
}
