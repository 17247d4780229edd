// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/*
 * The YAML file: core options, named stage instances, named pipelines.
 * Every problem is reported as FILE:LINE:COL and loading goes on, so one
 * run shows them all; nothing is started from a file with any error.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"

struct core_conf;

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

const struct wggwd_opt core_opts[] = {
	{ .name = "plugin_path", .type = WGGWD_OPT_LIST,
	  .offset = offsetof(struct core_conf, plugin_path),
	  .help = "directories searched for plugins before WGGWD_PLUGIN_PATH and the built-in directory" },
	{ .name = "log_level", .type = WGGWD_OPT_ENUM, .def = "info",
	  .choices = log_levels, .offset = offsetof(struct core_conf, log_level),
	  .help = "least severe level logged" },
	{ .name = "stats_file", .type = WGGWD_OPT_PATH,
	  .offset = offsetof(struct core_conf, stats_file),
	  .help = "write all counters as JSON to this file every stats_interval and at exit" },
	{ .name = "stats_interval", .type = WGGWD_OPT_DURATION, .def = "1s",
	  .min = 10, .max = 3600000,
	  .offset = offsetof(struct core_conf, stats_interval_ms),
	  .help = "how often stats_file is rewritten" },
	{ .name = "drain_timeout", .type = WGGWD_OPT_DURATION, .def = "5s",
	  .min = 0, .max = 600000,
	  .offset = offsetof(struct core_conf, drain_timeout_ms),
	  .help = "at shutdown, how long in-flight items may take to finish" },
	{ .name = "http_listen", .type = WGGWD_OPT_ADDR,
	  .offset = offsetof(struct core_conf, http_listen),
	  .help = "serve /metrics (Prometheus), /healthz and /readyz over HTTP here (e.g. 127.0.0.1:9587); read at start only" },
	{ .name = "control_socket", .type = WGGWD_OPT_PATH,
	  .offset = offsetof(struct core_conf, control_socket),
	  .help = "the unix socket `wggwd ctl` talks to (mode 0600); default " "/run/wggwd/ctl.sock" " as root, else $XDG_RUNTIME_DIR/wggwd.sock; read at start only" },
	WGGWD_OPT_END
};

static const char *const top_keys[] = { "stages", "pipelines", NULL };

static yaml_node_t *node(yaml_document_t *d, int i)
{
	return yaml_document_get_node(d, i);
}

static const char *scalar(yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (char *)n->data.scalar.value : NULL;
}

static size_t map_len(yaml_node_t *n)
{
	return n->data.mapping.pairs.top - n->data.mapping.pairs.start;
}

/* "name (plugin): " or "name: " */
static void stage_prefix(const struct stage_conf *s, char *buf, size_t len)
{
	if (s->plugin_name && strcmp(s->name, s->plugin_name))
		snprintf(buf, len, "%s (%s): ", s->name, s->plugin_name);
	else
		snprintf(buf, len, "%s: ", s->name);
}

static yaml_mark_t key_mark(yaml_document_t *d, int map, const char *key,
			    yaml_mark_t fallback)
{
	yaml_node_t *m = map ? node(d, map) : NULL;
	yaml_node_pair_t *p;

	if (!m || m->type != YAML_MAPPING_NODE)
		return fallback;
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		const char *k = scalar(node(d, p->key));

		if (k && key && !strcmp(k, key))
			return node(d, p->key)->start_mark;
	}
	return fallback;
}

static struct stage_conf *stage_find(struct config *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->n_stages; i++)
		if (!strcmp(c->stages[i].name, name))
			return &c->stages[i];
	return NULL;
}

static void parse_stage(struct config *c, struct opt_ctx *oc, struct stage_conf *s,
			yaml_node_t *def)
{
	char prefix[256], err[2048];
	yaml_node_pair_t *p;
	int opts_map = 0;
	bool have_plugin = false;
	struct opt_ctx soc = *oc;
	const char *msg, *opt = NULL;

	if (def->type != YAML_MAPPING_NODE) {
		opt_error(oc, def->start_mark, "stage \"%s\": expected a mapping with plugin: and options:, got %s",
			  s->name, def->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar");
		return;
	}
	for (p = def->data.mapping.pairs.start; p < def->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(oc->doc, p->key), *v = node(oc->doc, p->value);
		const char *key = scalar(k);

		if (!key || (strcmp(key, "plugin") && strcmp(key, "options"))) {
			size_t d1 = key ? levenshtein(key, "plugin") : 99;
			size_t d2 = key ? levenshtein(key, "options") : 99;

			opt_error(oc, k->start_mark, "stage \"%s\": unknown key \"%s\"%s%s%s", s->name,
				  key ? key : "?", d1 <= 2 || d2 <= 2 ? " (did you mean \"" : "",
				  d1 <= 2 ? "plugin" : d2 <= 2 ? "options" : "",
				  d1 <= 2 || d2 <= 2 ? "\"?)" : " (a stage has plugin: and options:)");
			continue;
		}
		if (!strcmp(key, "plugin")) {
			if (have_plugin) {
				opt_error(oc, k->start_mark, "stage \"%s\": plugin given twice", s->name);
				continue;
			}
			have_plugin = true;
			if (!scalar(v) || !*scalar(v)) {
				opt_error(oc, v->start_mark, "stage \"%s\": plugin: expected a plugin name", s->name);
				continue;
			}
			s->plugin_name = xstrdup(scalar(v));
			s->plugin_mark = v->start_mark;
		} else {
			if (opts_map) {
				opt_error(oc, k->start_mark, "stage \"%s\": options given twice", s->name);
				continue;
			}
			opts_map = p->value;
		}
	}
	if (!have_plugin) {
		opt_error(oc, def->start_mark, "stage \"%s\": missing \"plugin:\"", s->name);
		return;
	}
	if (!s->plugin_name)
		return; /* reported */
	s->plugin = plugin_load(&c->sp, s->plugin_name, err, sizeof(err));
	if (!s->plugin) {
		opt_error(oc, s->plugin_mark, "stage \"%s\": %s", s->name, err);
		return;
	}
	stage_prefix(s, prefix, sizeof(prefix));
	soc.prefix = prefix;
	soc.skip = NULL;
	soc.errors = 0;
	s->conf = xcalloc(1, s->plugin->desc.conf_size);
	s->opts_map = opts_map;
	if (opts_apply(&soc, s->plugin->desc.opts, s->conf, opts_map,
		       opts_map ? node(oc->doc, opts_map)->start_mark : s->mark) == 0 &&
	    s->plugin->ops.validate) {
		msg = s->plugin->ops.validate(s->conf, &opt, err, sizeof(err));
		if (msg)
			opt_error(&soc, key_mark(oc->doc, opts_map, opt, s->mark), "%s%s%s",
				  opt ? opt : "", opt ? ": " : "", msg);
	}
	s->opts_ok = !soc.errors;
	oc->errors += soc.errors;
}

static void parse_stages(struct config *c, struct opt_ctx *oc, yaml_node_t *m)
{
	yaml_node_pair_t *p;
	size_t i = 0;

	if (m->type != YAML_MAPPING_NODE) {
		opt_error(oc, m->start_mark, "stages: expected a mapping of stage names to stages");
		return;
	}
	c->stages = xcalloc(map_len(m), sizeof(*c->stages));
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(oc->doc, p->key);
		const char *name = scalar(k);
		struct stage_conf *prev;

		if (!name || !*name) {
			opt_error(oc, k->start_mark, "stages: expected a stage name");
			continue;
		}
		prev = stage_find(c, name);
		if (prev) {
			opt_error(oc, k->start_mark, "stage \"%s\" defined twice (first at %zu:%zu)",
				  name, prev->mark.line + 1, prev->mark.column + 1);
			continue;
		}
		c->stages[i].name = xstrdup(name);
		c->stages[i].mark = k->start_mark;
		c->n_stages = ++i;
		parse_stage(c, oc, &c->stages[i - 1], node(oc->doc, p->value));
	}
}

static const char *hint(uint32_t have, uint32_t want)
{
	if (have & WGGWD_MSG_PKT && want & (WGGWD_MSG_PEER_KEY | WGGWD_MSG_PEER))
		return "add a decoder";
	if (have & WGGWD_MSG_PEER_KEY && want & WGGWD_MSG_PEER)
		return "add a resolver";
	if (have & WGGWD_MSG_PEER && want & WGGWD_MSG_EVENT)
		return "add an installer";
	return "reorder the stages";
}

void pipeline_link_info(const struct pipeline_conf *pc, size_t i,
			struct wggwd_link *l)
{
	size_t k;

	memset(l, 0, sizeof(*l));
	l->size = sizeof(*l);
	l->pipeline = pc->name;
	l->source_out = pc->stages[0]->plugin->desc.out;
	l->source_flags = pc->stages[0]->plugin->desc.flags;
	l->position = i;
	l->length = pc->n;
	for (k = 0; k < pc->n; k++) {
		uint32_t bit = 1u << pc->stages[k]->plugin->desc.kind;

		if (k < i)
			l->kinds_before |= bit;
		else if (k > i)
			l->kinds_after |= bit;
	}
}

/* Each stage's own word on the pipelines it is in (ops.link). */
static void link_stages(struct opt_ctx *oc, struct pipeline_conf *pl)
{
	struct wggwd_link l;
	char buf[256], prefix[300];
	const char *msg, *opt;
	size_t i;

	for (i = 0; i < pl->n; i++) {
		struct stage_conf *s = pl->stages[i];
		struct opt_ctx soc = *oc;

		if (!s->plugin->ops.link)
			continue;
		pipeline_link_info(pl, i, &l);
		opt = NULL;
		msg = s->plugin->ops.link(NULL, s->conf, &l, &opt, buf, sizeof(buf));
		if (!msg)
			continue;
		stage_prefix(s, prefix, sizeof(prefix));
		soc.prefix = prefix;
		soc.errors = 0;
		opt_error(&soc, opt ? key_mark(oc->doc, s->opts_map, opt, pl->marks[i]) :
				      pl->marks[i],
			  "%s%s%s (in pipeline \"%s\")", opt ? opt : "", opt ? ": " : "",
			  msg, pl->name);
		oc->errors += soc.errors;
	}
}

/* Is there a stage of this kind after stage i? */
static bool kind_after(const struct pipeline_conf *pl, size_t i, uint32_t kind)
{
	for (i++; i < pl->n; i++)
		if (pl->stages[i] && pl->stages[i]->plugin &&
		    pl->stages[i]->plugin->desc.kind == kind)
			return true;
	return false;
}

/* Check that each stage accepts what the one before gives. */
static void link_pipeline(struct opt_ctx *oc, struct pipeline_conf *pl)
{
	uint32_t cur = 0;
	char a[64], b[64];
	size_t i;

	for (i = 0; i < pl->n; i++) {
		struct stage_conf *s = pl->stages[i];
		const struct wggwd_plugin *d;

		if (!s || !s->plugin)
			return; /* already reported */
		d = &s->plugin->desc;
		if (i == 0) {
			if (d->kind != WGGWD_SOURCE) {
				opt_error(oc, pl->marks[0],
					  "pipeline \"%s\": must start with a source, \"%s\" (%s) is a %s",
					  pl->name, s->name, d->name, kind_name(d->kind));
				return;
			}
			cur = d->out;
			continue;
		}
		if (d->kind == WGGWD_SOURCE) {
			opt_error(oc, pl->marks[i],
				  "pipeline \"%s\": source \"%s\" can only be the first stage",
				  pl->name, s->name);
			return;
		}
		if (!(d->in & cur)) {
			opt_error(oc, pl->marks[i],
				  "pipeline \"%s\": %s \"%s\" (%s) takes %s, \"%s\" gives %s: %s",
				  pl->name, kind_name(d->kind), s->name, d->name,
				  msg_names(d->in, a, sizeof(a)), pl->stages[i - 1]->name,
				  msg_names(cur, b, sizeof(b)), hint(cur, d->in));
			return;
		}
		if (d->out)
			cur = d->out;
		else if (d->kind == WGGWD_STORE && (cur & WGGWD_MSG_PEER_KEY) &&
			 !kind_after(pl, i, WGGWD_RESOLVER))
			cur |= WGGWD_MSG_PEER; /* no resolver follows: the store answers */
	}
	if (pl->n < 2) {
		opt_error(oc, pl->mark, "pipeline \"%s\": a source alone does nothing; add the stages it feeds",
			  pl->name);
		return;
	}
	for (i = 0; i < pl->n; i++)
		if (!pl->stages[i]->opts_ok)
			return; /* its options were refused: their values mean nothing */
	link_stages(oc, pl);
}

static void parse_pipelines(struct config *c, struct opt_ctx *oc, yaml_node_t *m)
{
	yaml_node_pair_t *p;
	size_t i = 0, j;

	if (m->type != YAML_MAPPING_NODE) {
		opt_error(oc, m->start_mark, "pipelines: expected a mapping of pipeline names to lists of stages");
		return;
	}
	c->pipelines = xcalloc(map_len(m), sizeof(*c->pipelines));
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(oc->doc, p->key), *v = node(oc->doc, p->value);
		struct pipeline_conf *pl;
		yaml_node_item_t *it;
		const char *name = scalar(k);

		if (!name || !*name) {
			opt_error(oc, k->start_mark, "pipelines: expected a pipeline name");
			continue;
		}
		for (j = 0; j < i; j++)
			if (!strcmp(c->pipelines[j].name, name))
				break;
		if (j < i) {
			opt_error(oc, k->start_mark, "pipeline \"%s\" defined twice (first at %zu:%zu)",
				  name, c->pipelines[j].mark.line + 1,
				  c->pipelines[j].mark.column + 1);
			continue;
		}
		if (v->type != YAML_SEQUENCE_NODE) {
			opt_error(oc, v->start_mark, "pipeline \"%s\": expected a list of stage names", name);
			continue;
		}
		pl = &c->pipelines[i];
		c->n_pipelines = ++i;
		pl->name = xstrdup(name);
		pl->mark = k->start_mark;
		pl->n = v->data.sequence.items.top - v->data.sequence.items.start;
		if (pl->n > MAX_STEPS / 2) {
			opt_error(oc, v->start_mark, "pipeline \"%s\": %zu stages, at most %d",
				  name, pl->n, MAX_STEPS / 2);
			pl->n = 0;
		}
		pl->stages = xcalloc(pl->n, sizeof(*pl->stages));
		pl->marks = xcalloc(pl->n, sizeof(*pl->marks));
		for (j = 0, it = v->data.sequence.items.start; j < pl->n; j++, it++) {
			yaml_node_t *e = node(oc->doc, *it);
			const char *sname = scalar(e);
			size_t s, best = SIZE_MAX, d;
			const char *near = NULL;

			pl->marks[j] = e->start_mark;
			if (!sname) {
				opt_error(oc, e->start_mark, "pipeline \"%s\": expected a stage name", name);
				continue;
			}
			pl->stages[j] = stage_find(c, sname);
			if (pl->stages[j]) {
				size_t q;

				for (q = 0; q < j; q++)
					if (pl->stages[q] == pl->stages[j])
						break;
				if (q < j) {
					opt_error(oc, e->start_mark, "pipeline \"%s\": stage \"%s\" listed twice",
						  name, sname);
					pl->stages[j] = NULL;
					continue;
				}
				pl->stages[j]->pipelines++;
				continue;
			}
			for (s = 0; s < c->n_stages; s++) {
				d = levenshtein(sname, c->stages[s].name);
				if (d < best) {
					best = d;
					near = c->stages[s].name;
				}
			}
			if (near && best <= 2)
				opt_error(oc, e->start_mark, "pipeline \"%s\": no stage named \"%s\" (did you mean \"%s\"?)",
					  name, sname, near);
			else
				opt_error(oc, e->start_mark, "pipeline \"%s\": no stage named \"%s\"", name, sname);
		}
	}
	for (j = 0; j < c->n_pipelines; j++)
		link_pipeline(oc, &c->pipelines[j]);
}

/* Sources feed one pipeline; a stage shared by pipelines must see the same
 * installer in each, since it may ask that installer for the device. */
static void check_sharing(struct config *c, struct opt_ctx *oc)
{
	size_t i, j, k;

	for (i = 0; i < c->n_stages; i++) {
		struct stage_conf *s = &c->stages[i];
		struct stage_conf *inst = NULL;

		if (!s->plugin)
			continue;
		if (s->plugin->desc.kind == WGGWD_SOURCE && s->pipelines > 1)
			opt_error(oc, s->mark, "stage \"%s\": a source can feed only one pipeline, it is in %u",
				  s->name, s->pipelines);
		if (!s->pipelines)
			fprintf(stderr, "%s:%zu:%zu: warning: stage \"%s\" is in no pipeline\n",
				c->file, s->mark.line + 1, s->mark.column + 1, s->name);
		for (j = 0; j < c->n_pipelines; j++) {
			struct pipeline_conf *pl = &c->pipelines[j];
			struct stage_conf *pi = NULL;
			bool member = false;

			for (k = 0; k < pl->n; k++) {
				if (pl->stages[k] == s)
					member = true;
				if (pl->stages[k] && pl->stages[k]->plugin &&
				    pl->stages[k]->plugin->desc.kind == WGGWD_INSTALLER)
					pi = pl->stages[k];
			}
			if (!member || !pi)
				continue;
			if (inst && inst != pi)
				opt_error(oc, s->mark, "stage \"%s\": its pipelines use different installers (\"%s\", \"%s\"); use one stage per interface",
					  s->name, inst->name, pi->name);
			inst = pi;
		}
	}
}

static void parse_top(struct config *c, struct opt_ctx *oc, yaml_node_t *root)
{
	yaml_node_pair_t *p;
	int stages = 0, pipelines = 0;
	yaml_mark_t sm = root->start_mark, pm = root->start_mark;

	if (root->type != YAML_MAPPING_NODE) {
		opt_error(oc, root->start_mark, "expected a mapping with stages: and pipelines:");
		return;
	}
	for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(oc->doc, p->key);
		const char *key = scalar(k);
		int *slot = NULL;
		yaml_mark_t *mk = NULL;

		if (key && !strcmp(key, "stages"))
			slot = &stages, mk = &sm;
		else if (key && !strcmp(key, "pipelines"))
			slot = &pipelines, mk = &pm;
		if (!slot)
			continue;
		if (*slot) {
			opt_error(oc, k->start_mark, "%s given twice (first at %zu:%zu)", key,
				  mk->line + 1, mk->column + 1);
			continue;
		}
		*slot = p->value;
		*mk = k->start_mark;
	}
	oc->skip = top_keys;
	opts_apply(oc, core_opts, &c->core, root - oc->doc->nodes.start + 1,
		   root->start_mark);
	oc->skip = NULL;
	search_path_init(&c->sp, &c->core.plugin_path);
	if (!stages)
		opt_error(oc, root->start_mark, "missing \"stages:\"");
	else
		parse_stages(c, oc, node(oc->doc, stages));
	if (!pipelines)
		opt_error(oc, root->start_mark, "missing \"pipelines:\"");
	else if (c->stages)
		parse_pipelines(c, oc, node(oc->doc, pipelines));
	check_sharing(c, oc);
}

/*
 * A config file is small; one that is not is an accident or an attack.
 * Bounds: its size, its nesting, and the nodes it expands to (an alias
 * is a reference; a tree of aliases of aliases can name billions).
 */
#define CONF_MAX_BYTES (1 << 20)
#define CONF_MAX_DEPTH 64
#define CONF_MAX_NODES 100000

/* The first event nested deeper than CONF_MAX_DEPTH, before loading. */
static int check_depth(FILE *f, yaml_mark_t *where)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int depth = 0, ret = 0;

	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	for (;;) {
		if (!yaml_parser_parse(&parser, &ev))
			break; /* the loader will say what is wrong */
		if (ev.type == YAML_SEQUENCE_START_EVENT ||
		    ev.type == YAML_MAPPING_START_EVENT) {
			if (++depth > CONF_MAX_DEPTH) {
				*where = ev.start_mark;
				ret = -1;
			}
		} else if (ev.type == YAML_SEQUENCE_END_EVENT ||
			   ev.type == YAML_MAPPING_END_EVENT) {
			depth--;
		}
		if (ev.type == YAML_STREAM_END_EVENT || ret) {
			yaml_event_delete(&ev);
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	rewind(f);
	return ret;
}

/* How many nodes the document is once its aliases are followed, up to
 * a budget; past CONF_MAX_DEPTH levels (an alias inside its own anchor
 * makes a loop) it is over budget. */
static size_t count_nodes(yaml_document_t *d, yaml_node_t *n, size_t budget, int depth)
{
	size_t seen = 1;
	yaml_node_item_t *it;
	yaml_node_pair_t *p;

	if (!n || !budget)
		return 1;
	if (depth > CONF_MAX_DEPTH)
		return budget + 1;
	if (n->type == YAML_SEQUENCE_NODE) {
		for (it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top && seen <= budget; it++)
			seen += count_nodes(d, yaml_document_get_node(d, *it), budget - seen,
					    depth + 1);
	} else if (n->type == YAML_MAPPING_NODE) {
		for (p = n->data.mapping.pairs.start;
		     p < n->data.mapping.pairs.top && seen <= budget; p++) {
			seen += count_nodes(d, yaml_document_get_node(d, p->key), budget - seen,
					    depth + 1);
			if (seen <= budget)
				seen += count_nodes(d, yaml_document_get_node(d, p->value),
						    budget - seen, depth + 1);
		}
	}
	return seen;
}

struct config *config_load(const char *file)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	struct opt_ctx oc = { .file = file };
	struct config *c;
	yaml_node_t *root;
	FILE *f;

	f = fopen(file, "r");
	if (!f) {
		fprintf(stderr, "%s: cannot open: %s\n", file, strerror(errno));
		return NULL;
	}
	{
		struct stat st;
		yaml_mark_t m = { 0 };

		if (!fstat(fileno(f), &st) && st.st_size > CONF_MAX_BYTES) {
			fprintf(stderr, "%s: %lld bytes: a config file has at most %d\n", file,
				(long long)st.st_size, CONF_MAX_BYTES);
			fclose(f);
			return NULL;
		}
		if (check_depth(f, &m)) {
			fprintf(stderr, "%s:%zu:%zu: nested deeper than %d levels\n", file,
				m.line + 1, m.column + 1, CONF_MAX_DEPTH);
			fclose(f);
			return NULL;
		}
	}
	c = xcalloc(1, sizeof(*c));
	c->file = xstrdup(file);
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		yaml_mark_t m = parser.problem_mark;

		fprintf(stderr, "%s:%zu:%zu: YAML: %s%s%s\n", file, m.line + 1,
			m.column + 1, parser.problem ? parser.problem : "syntax error",
			parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		fclose(f);
		config_free(c);
		return NULL;
	}
	yaml_parser_delete(&parser);
	fclose(f);
	oc.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (!root)
		opt_error(&oc, (yaml_mark_t){ 0 }, "empty file: expected stages: and pipelines:");
	else if (count_nodes(&doc, root, CONF_MAX_NODES, 1) > CONF_MAX_NODES)
		opt_error(&oc, root->start_mark,
			  "more than %d values, or %d levels, once its aliases are expanded",
			  CONF_MAX_NODES, CONF_MAX_DEPTH);
	else
		parse_top(c, &oc, root);
	yaml_document_delete(&doc);
	if (oc.errors) {
		config_free(c);
		return NULL;
	}
	return c;
}

void config_free(struct config *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n_stages; i++) {
		struct stage_conf *s = &c->stages[i];

		if (s->plugin)
			opts_free(s->plugin->desc.opts, s->conf);
		free(s->conf);
		free(s->name);
		free(s->plugin_name);
	}
	for (i = 0; i < c->n_pipelines; i++) {
		free(c->pipelines[i].name);
		free(c->pipelines[i].stages);
		free(c->pipelines[i].marks);
	}
	free(c->stages);
	free(c->pipelines);
	opts_free(core_opts, &c->core);
	search_path_free(&c->sp);
	free(c->file);
	free(c);
}
