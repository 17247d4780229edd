// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* The command line: run, check, plugins, decode. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <sodium.h>

#include "core.h"

static const char plugin_dirs[] =
	"Plugins are searched in plugin_path (YAML), $WGGWD_PLUGIN_PATH, the plugins/\n"
	"folder beside the binary (a build tree), then " WGGWD_PLUGIN_DIR ".\n";

static void usage(FILE *f)
{
	fputs("usage: wggwd run -c FILE        run the pipelines of FILE\n"
	      "       wggwd check [--offline] -c FILE\n"
	      "                                validate FILE and try what run would open; start nothing\n"
	      "       wggwd plugins [NAME] [-c FILE] [--man]\n"
	      "                                list plugins, or document one (options, message types)\n"
	      "       wggwd decode --private-key-file F (--hex HEX | --pcap FILE) [--no-auth] [--all]\n"
	      "                                decode WireGuard handshake initiations as JSON lines\n"
	      "       wggwd ctl [--socket P] [--json] peers|why KEY|evict KEY|cache flush|lookup KEY|reload|stats\n"
	      "                                ask the running daemon (wggwd ctl --help)\n"
	      "       wggwd --version\n"
	      "`wggwd COMMAND --help` tells more about each; man wggwd(8), wggwd.yaml(5).\n",
	      f);
	fputs(plugin_dirs, f);
}

static const char *const cmd_help[][2] = {
	{ "run",
	  "usage: wggwd run -c FILE\n"
	  "Run the pipelines of FILE in the foreground until SIGTERM or SIGINT.\n"
	  "  -c, --config FILE   the YAML configuration (wggwd.yaml(5))\n"
	  "Signals: SIGHUP re-reads FILE and replaces the running pipelines if it is\n"
	  "valid and starts (else the old ones keep running); SIGTERM/SIGINT drain and\n"
	  "stop; SIGUSR1 prints every counter. Under systemd (Type=notify) it reports\n"
	  "READY=1 once every stage has started, RELOADING=1/READY=1 around a reload,\n"
	  "STOPPING=1, STATUS= and, with WatchdogSec=, WATCHDOG=1 from its loop.\n"
	  "Exit: 0 stopped by a signal, 1 the configuration was refused or did not\n"
	  "start, 2 usage, 3 not every handle closed at exit.\n" },
	{ "check",
	  "usage: wggwd check [--offline] [-q] -c FILE\n"
	  "Validate FILE as run would, then try what run would open, without starting\n"
	  "anything (like nginx -t): secret files (owner, mode), store directories,\n"
	  "UAPI sockets, the WireGuard netlink family, interfaces, namespaces and the\n"
	  "capabilities each stage needs. Every problem is printed as FILE:LINE:COL.\n"
	  "Warnings (exit 0): durations without a unit, a store after the resolver.\n"
	  "  -c, --config FILE   the YAML configuration\n"
	  "      --offline       the schema only: plugins, options, pipelines (for CI\n"
	  "                      of configuration repositories); opens nothing else\n"
	  "  -q, --quiet         print nothing when it is fine\n"
	  "Exit: 0 fine (maybe with warnings), 1 refused, 2 usage.\n" },
	{ "plugins",
	  "usage: wggwd plugins [-c FILE] [--man] [NAME]\n"
	  "List the plugins found, or document one: kind, message types, options.\n"
	  "  -c, --config FILE   search the plugin_path of FILE too\n"
	  "      --man           print the options of every plugin (or of NAME) as\n"
	  "                      roff, for wggwd.yaml(5)\n" },
};

static void cmd_usage(const char *cmd, FILE *f)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cmd_help); i++) {
		if (!strcmp(cmd, cmd_help[i][0])) {
			fputs(cmd_help[i][1], f);
			fputs(plugin_dirs, f);
			return;
		}
	}
	usage(f);
}

enum { OPT_OFFLINE = 256, OPT_MAN };

struct args {
	const char *file;
	bool offline, quiet, man;
};

static struct args cmd_args(const char *cmd, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "offline", no_argument, NULL, OPT_OFFLINE },
		{ "quiet", no_argument, NULL, 'q' },
		{ "man", no_argument, NULL, OPT_MAN },
		{ NULL, 0, NULL, 0 },
	};
	struct args a = { 0 };
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:hq", lo, NULL)) != -1) {
		if (c == 'c') {
			a.file = optarg;
		} else if (c == 'h') {
			cmd_usage(cmd, stdout);
			exit(0);
		} else if (c == OPT_OFFLINE && !strcmp(cmd, "check")) {
			a.offline = true;
		} else if (c == 'q' && !strcmp(cmd, "check")) {
			a.quiet = true;
		} else if (c == OPT_MAN && !strcmp(cmd, "plugins")) {
			a.man = true;
		} else {
			if (c != '?')
				fprintf(stderr, "wggwd %s: unknown option %s\n", cmd, argv[optind - 1]);
			cmd_usage(cmd, stderr);
			exit(2);
		}
	}
	return a;
}

/* check under systemd (ExecStartPre): its findings go to the journal with
 * <3> (errors) or <4> (warnings), so that `journalctl -p err` shows why a
 * start was refused. */
static int journal_lines(const char *file, bool offline, bool quiet)
{
	FILE *saved = stderr, *mem;
	char *text = NULL, *line, *save;
	size_t n = 0;
	int ret;

	if (!log_to_journal() || !(mem = open_memstream(&text, &n)))
		return check_config(file, offline, quiet);
	stderr = mem;
	ret = check_config(file, offline, quiet);
	stderr = saved;
	fclose(mem);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		fprintf(stderr, "<%c>%s\n", strstr(line, ": warning: ") ? '4' : '3', line);
	free(text);
	return ret;
}

static int cmd_check(int argc, char **argv)
{
	struct args a = cmd_args("check", argc, argv);

	if (!a.file || optind < argc) {
		fputs("wggwd check: -c FILE is required (and nothing else)\n", stderr);
		cmd_usage("check", stderr);
		return 2;
	}
	return journal_lines(a.file, a.offline, a.quiet);
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

/* roff, for wggwd.yaml(5): "\-" for "-", no line starting with "." */
static void roff_text(FILE *f, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", f);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else
			fputc(*s, f);
	}
}

static void man_opts(FILE *f, const struct wggwd_opt *opts, const char *parent)
{
	const struct wggwd_opt *o;

	for (o = opts; o && o->name; o++) {
		fputs(".TP\n.B ", f);
		if (parent)
			fprintf(f, "%s[].", parent);
		fprintf(f, "%s\n", o->name);
		fprintf(f, "%s%s%s", opt_type_name(o->type),
			o->flags & WGGWD_OPT_REQUIRED ? ", required" : "",
			o->flags & WGGWD_OPT_DEPRECATED ? ", deprecated" : "");
		if (o->def) {
			fputs("; default ", f);
			roff_text(f, o->def);
		}
		if ((o->min || o->max) && o->type != WGGWD_OPT_LIST)
			fprintf(f, "; %lld to %lld%s", (long long)o->min, (long long)o->max,
				o->type == WGGWD_OPT_DURATION ? " ms" :
				o->type == WGGWD_OPT_SIZE ? " bytes" : "");
		if (o->type == WGGWD_OPT_ENUM && o->choices) {
			const char *const *c;

			fputs("; one of", f);
			for (c = o->choices; *c; c++)
				fprintf(f, "%s %s", c == o->choices ? "" : ",", *c);
		}
		fputs(".\n", f);
		if (o->help) {
			fputs(".br\n", f);
			roff_text(f, o->help);
			fputc('\n', f);
		}
		if (o->sub)
			man_opts(f, o->sub, o->name);
	}
}

static void man_plugin(const struct plugin *p)
{
	char in[64], out[64];

	printf(".SS %s\n", p->desc.name);
	roff_text(stdout, p->desc.description ? p->desc.description : "");
	printf("\n.br\nA %s: takes %s, gives %s.\n", kind_name(p->desc.kind),
	       msg_names(p->desc.in, in, sizeof(in)),
	       p->desc.out ? msg_names(p->desc.out, out, sizeof(out)) : "what it takes");
	if (!p->desc.opts || !p->desc.opts[0].name)
		printf(".PP\nNo options.\n");
	man_opts(stdout, p->desc.opts, NULL);
}

static void man_one(const char *path, void *arg)
{
	struct list_ctx *lc = arg;
	char err[1024];
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
			return;
	if (lc->n < ARRAY_SIZE(lc->seen))
		lc->seen[lc->n++] = xstrdup(p->desc.name);
	man_plugin(p);
}

static int cmd_plugins(int argc, char **argv)
{
	struct args a = cmd_args("plugins", argc, argv);
	const char *file = a.file;
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
	if (a.man && optind < argc) {
		p = plugin_load(&sp, argv[optind], err, sizeof(err));
		if (!p) {
			fprintf(stderr, "wggwd: %s\n", err);
			ret = 1;
			goto out;
		}
		man_plugin(p);
	} else if (a.man) {
		printf(".SH CORE OPTIONS\nAt the top of the file, beside \\fBstages:\\fR and \\fBpipelines:\\fR.\n");
		man_opts(stdout, core_opts, NULL);
		printf(".SH PLUGINS\nEach stage names its plugin and gives the plugin's options under \\fBoptions:\\fR; \\fBwggwd plugins\\fR \\fINAME\\fR prints the same. Plugins are searched in " WGGWD_PLUGIN_DIR " once installed.\n");
		plugin_list(&sp, man_one, &lc);
		ret = lc.errors ? 1 : 0;
		for (i = 0; i < lc.n; i++)
			free(lc.seen[i]);
	} else if (optind < argc) {
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
		printf("\ninstalled plugins: %s\n", WGGWD_PLUGIN_DIR);
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

/* `wggwd decode` is a program of its own (it links libpcap, which the
 * daemon does not need): wggwd-decode beside this binary, else on PATH. */
static int exec_decode(char **argv)
{
	char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
	char *slash;

	if (n > 0) {
		path[n] = '\0';
		slash = strrchr(path, '/');
		if (slash) {
			strcpy(slash + 1, "wggwd-decode");
			argv[1] = path;
			execv(path, argv + 1);
		}
	}
	argv[1] = (char *)"wggwd-decode";
	execvp("wggwd-decode", argv + 1);
	fprintf(stderr, "wggwd decode: cannot run wggwd-decode: %s\n", strerror(errno));
	return 1;
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
		struct args a = cmd_args("run", argc - 1, argv + 1);

		if (!a.file || optind < argc - 1) {
			fputs("wggwd run: -c FILE is required (and nothing else)\n", stderr);
			cmd_usage("run", stderr);
			return 2;
		}
		return daemon_run(a.file);
	}
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "plugins"))
		return cmd_plugins(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ctl"))
		return ctl_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "decode"))
		return exec_decode(argv); /* its --help is wggwd-decode's */
	fprintf(stderr, "wggwd: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
