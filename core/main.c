// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The command line: run, check, plugins, decode. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core.h"
#include "decode.h"

static void usage(FILE *f)
{
	fputs("usage: wggwd run -c FILE        run the pipelines of FILE\n"
	      "       wggwd check -c FILE      validate FILE and link its pipelines; start nothing\n"
	      "       wggwd plugins [NAME] [-c FILE]\n"
	      "                                list plugins, or document one (options, message types)\n"
	      "       wggwd decode --private-key-file F (--hex HEX | --pcap FILE) [--no-auth] [--all]\n"
	      "                                decode WireGuard handshake initiations as JSON lines\n"
	      "       wggwd --version\n"
	      "Plugins are searched in plugin_path (YAML), $WGGWD_PLUGIN_PATH, the build tree\n"
	      "beside the binary, then " WGGWD_PLUGIN_DIR ".\n",
	      f);
}

static const char *conf_arg(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = NULL;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			file = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	return file;
}

static int cmd_check(int argc, char **argv)
{
	const char *file = conf_arg(argc, argv);
	struct config *c;

	if (!file) {
		fputs("wggwd check: -c FILE is required\n", stderr);
		return 2;
	}
	c = config_load(file);
	if (!c)
		return 1;
	printf("%s: ok (%zu stages, %zu pipelines)\n", file, c->n_stages, c->n_pipelines);
	config_free(c);
	plugins_unload_all();
	return 0;
}

struct list_ctx {
	int errors;
	size_t n;
	char *seen[256];
};

static void print_one_line(const char *path, void *arg)
{
	struct list_ctx *lc = arg;
	char err[1024], in[64], out[64];
	struct plugin *p;
	size_t i;

	p = plugin_load_file(path, err, sizeof(err));
	if (!p) {
		fprintf(stderr, "wggwd: %s\n", err);
		lc->errors++;
		return;
	}
	for (i = 0; i < lc->n; i++)
		if (!strcmp(lc->seen[i], p->desc.name))
			return; /* shadowed by an earlier directory */
	if (lc->n < ARRAY_SIZE(lc->seen))
		lc->seen[lc->n++] = xstrdup(p->desc.name);
	printf("%-20s %-9s %-8s -> %-8s %-7s %s\n", p->desc.name,
	       kind_name(p->desc.kind), msg_names(p->desc.in, in, sizeof(in)),
	       p->desc.out ? msg_names(p->desc.out, out, sizeof(out)) : "(same)",
	       p->desc.version ? p->desc.version : "", p->desc.description ? p->desc.description : "");
}

static int cmd_plugins(int argc, char **argv)
{
	const char *file = conf_arg(argc, argv);
	struct search_path sp;
	struct list_ctx lc = { 0 };
	struct config *c = NULL;
	char err[1024], in[64], out[64];
	struct plugin *p;
	size_t i;
	int ret = 0;

	if (file) {
		c = config_load(file);
		if (!c)
			return 1;
		sp = c->sp;
	} else {
		search_path_init(&sp, NULL);
	}
	if (optind < argc) {
		p = plugin_load(&sp, argv[optind], err, sizeof(err));
		if (!p) {
			fprintf(stderr, "wggwd: %s\n", err);
			ret = 1;
			goto out;
		}
		printf("%s %s (%s)\n  %s\n  file: %s\n  kind: %s\n  takes: %s\n  gives: %s\n  ABI: %u.%u%s\n",
		       p->desc.name, p->desc.version ? p->desc.version : "?",
		       p->desc.license ? p->desc.license : "no license given",
		       p->desc.description ? p->desc.description : "", p->path,
		       kind_name(p->desc.kind), msg_names(p->desc.in, in, sizeof(in)),
		       p->desc.out ? msg_names(p->desc.out, out, sizeof(out)) : "what it takes",
		       p->desc.abi_major, p->desc.abi_minor,
		       p->desc.flags & WGGWD_F_OWN_THREADS ? "\n  runs threads of its own" : "");
		printf("options:\n");
		if (!p->desc.opts || !p->desc.opts[0].name)
			printf("  (none)\n");
		opts_print_help(stdout, p->desc.opts, 2);
	} else {
		printf("%-20s %-9s %-8s    %-8s %-7s %s\n", "NAME", "KIND", "TAKES", "GIVES",
		       "VERSION", "DESCRIPTION");
		plugin_list(&sp, print_one_line, &lc);
		printf("search path:");
		for (i = 0; i < sp.n; i++)
			printf(" %s", sp.dir[i]);
		printf("\n");
		ret = lc.errors ? 1 : 0;
		for (i = 0; i < lc.n; i++)
			free(lc.seen[i]);
	}
out:
	if (c)
		config_free(c);
	else
		search_path_free(&sp);
	plugins_unload_all();
	return ret;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fputs("wggwd: libsodium failed to initialise\n", stderr);
		return 1;
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("wggwd %s (plugin ABI %d.%d, %s)\n", WGGWD_VERSION,
		       WGGWD_ABI_MAJOR, WGGWD_ABI_MINOR, WGGWD_BUILD_SIG);
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "run")) {
		const char *file = conf_arg(argc - 1, argv + 1);

		if (!file) {
			fputs("wggwd run: -c FILE is required\n", stderr);
			return 2;
		}
		return daemon_run(file);
	}
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "plugins"))
		return cmd_plugins(argc - 1, argv + 1);
	if (!strcmp(argv[1], "decode"))
		return cmd_decode(argc - 1, argv + 1);
	fprintf(stderr, "wggwd: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
