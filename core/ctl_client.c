// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* `wggwd ctl`: ask a running daemon through its control socket. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

static void usage(FILE *f)
{
	fputs("usage: wggwd ctl [--socket PATH] [--json] COMMAND\n"
	      "  peers                      the peers wggwd installed: origin, times, traffic, cache\n"
	      "  why KEY                    the last outcomes for KEY (no KEY: for every key)\n"
	      "  evict KEY                  remove KEY's peer from the interface now\n"
	      "  cache flush [--negative] [KEY]\n"
	      "                             forget cached answers (--negative: only \"unknown\")\n"
	      "  lookup KEY                 ask the resolver about KEY now (installs nothing)\n"
	      "  reload                     re-read the configuration; non-zero exit if refused\n"
	      "  stats                      every counter, as SIGUSR1 prints them\n"
	      "The socket is control_socket (YAML), by default " CTL_DEFAULT_ROOT " as root.\n",
	      f);
}

const char *ctl_default_path(char *buf, size_t len)
{
	const char *rd = getenv("RUNTIME_DIRECTORY"), *xdg = getenv("XDG_RUNTIME_DIR");

	if (rd && *rd && !strchr(rd, ':'))
		snprintf(buf, len, "%s/ctl.sock", rd);
	else if (geteuid() == 0 || !xdg || !*xdg)
		snprintf(buf, len, "%s", CTL_DEFAULT_ROOT);
	else
		snprintf(buf, len, "%s/wggwd.sock", xdg);
	return buf;
}

static void fmt_time(double t, char *buf, size_t len)
{
	time_t s = (time_t)t;
	struct tm tm;

	if (t <= 0) {
		snprintf(buf, len, "-");
		return;
	}
	gmtime_r(&s, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + strlen(buf), len - strlen(buf), ".%03dZ", (int)((t - s) * 1000));
}

static void print_peers(json_t *o)
{
	json_t *peers = json_object_get(o, "peers"), *p;
	size_t i;

	printf("%-44s %-6s %-10s %-22s %-24s %-24s %10s %10s %s\n", "KEY", "ORIGIN", "INTERFACE",
	       "ENDPOINT", "INSTALLED", "LAST HANDSHAKE", "RX", "TX", "CACHE");
	json_array_foreach(peers, i, p) {
		char inst[40], hs[40], cache[256] = "";
		json_t *c = json_object_get(p, "cache"), *v;
		const char *stage;
		size_t n = 0;

		fmt_time(json_number_value(json_object_get(p, "installed_at")), inst, sizeof(inst));
		fmt_time(json_number_value(json_object_get(p, "last_handshake")), hs, sizeof(hs));
		json_object_foreach(c, stage, v) {
			json_t *e = json_object_get(v, "expires_at"),
			       *l = json_object_get(v, "lease_expires_at");
			char et[40] = "-", lt[40] = "-";

			if (!json_is_true(json_object_get(v, "cached")) && !l)
				continue; /* nothing kept, or a pushed peer without a lease */
			if (e)
				fmt_time(json_number_value(e), et, sizeof(et));
			if (l)
				fmt_time(json_number_value(l), lt, sizeof(lt));
			n += snprintf(cache + n, n < sizeof(cache) ? sizeof(cache) - n : 0,
				      "%s%s: answer expires %s, lease %s", n ? "; " : "", stage,
				      json_is_true(json_object_get(v, "cached")) ? et : "(pushed)", lt);
			if (n >= sizeof(cache))
				break;
		}
		printf("%-44s %-6s %-10s %-22s %-24s %-24s %10lld %10lld %s\n",
		       json_string_value(json_object_get(p, "key")),
		       json_string_value(json_object_get(p, "origin")),
		       json_string_value(json_object_get(p, "interface")),
		       json_object_get(p, "endpoint") ?
			       json_string_value(json_object_get(p, "endpoint")) : "-",
		       inst, hs, (long long)json_integer_value(json_object_get(p, "rx_bytes")),
		       (long long)json_integer_value(json_object_get(p, "tx_bytes")),
		       cache[0] ? cache : "-");
	}
}

/* "  read 0.210 ms, decoded +0.280, ..." from a why entry's timeline:
 * read is the wire to the source, the rest from the source's read, and
 * the handshake from the wire (the client's wait). */
static void print_timeline(json_t *tl)
{
	static const char *const names[][2] = {
		{ "read_ms", "read" },           { "decoded_ms", "decoded" },
		{ "resolved_ms", "resolved" },   { "installed_ms", "installed" },
		{ "handshake_ms", "handshake" },
	};
	const char *sep = "  ";
	size_t i;

	if (!json_is_object(tl))
		return;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		json_t *v = json_object_get(tl, names[i][0]);

		if (!json_is_number(v))
			continue;
		printf("%s%s %s%.3f ms", sep, names[i][1], i && i < 4 ? "+" : "",
		       json_number_value(v));
		sep = ", ";
	}
	if (strcmp(sep, "  "))
		printf("  (read: wire to source; +: from the read; handshake: from the wire)\n");
}

static void print_why(json_t *o)
{
	json_t *a = json_object_get(o, "outcomes"), *e;
	size_t i;

	if (!json_array_size(a)) {
		printf("nothing recorded%s%s\n", json_object_get(o, "key") ? " for " : "",
		       json_object_get(o, "key") ? json_string_value(json_object_get(o, "key")) : "");
		return;
	}
	json_array_foreach(a, i, e) {
		char t[40];
		const char *reason = json_string_value(json_object_get(e, "reason")),
			   *detail = json_string_value(json_object_get(e, "detail")),
			   *key = json_string_value(json_object_get(e, "key"));

		fmt_time(json_number_value(json_object_get(e, "time")), t, sizeof(t));
		/* asked about one key: no need to repeat it on every line */
		if (json_object_get(o, "key"))
			key = NULL;
		else if (!key)
			key = "(no key yet)";
		printf("%s %s%spipeline %s stage %s: %s %s%s%s%s%s%s\n", t,
		       key ? key : "", key ? " " : "",
		       json_string_value(json_object_get(e, "pipeline")),
		       json_string_value(json_object_get(e, "stage")),
		       json_string_value(json_object_get(e, "op")),
		       json_string_value(json_object_get(e, "verdict")),
		       reason ? ": " : "", reason ? reason : "", detail ? " (" : "",
		       detail ? detail : "", detail ? ")" : "");
		print_timeline(json_object_get(e, "timeline"));
	}
}

static void print_lookup(json_t *o)
{
	json_t *p = json_object_get(o, "peer"), *a, *v;
	size_t i;

	if (!json_is_true(json_object_get(o, "found"))) {
		printf("%s: not found at %s: %s%s%s\n", json_string_value(json_object_get(o, "key")),
		       json_string_value(json_object_get(o, "stage")),
		       json_string_value(json_object_get(o, "reason")),
		       json_object_get(o, "detail") ? ": " : "",
		       json_object_get(o, "detail") ? json_string_value(json_object_get(o, "detail")) : "");
		return;
	}
	printf("%s: found by %s\n  allowed_ips:", json_string_value(json_object_get(o, "key")),
	       json_string_value(json_object_get(o, "stage")));
	a = json_object_get(p, "allowed_ips");
	json_array_foreach(a, i, v)
		printf(" %s", json_string_value(v));
	printf("\n");
	if (json_object_get(p, "ttl_s"))
		printf("  ttl: %llds\n", (long long)json_integer_value(json_object_get(p, "ttl_s")));
	if (json_object_get(p, "expires_at")) {
		char t[40];

		fmt_time(json_integer_value(json_object_get(p, "expires_at")), t, sizeof(t));
		printf("  lease until: %s\n", t);
	}
}

static void print_stats(json_t *o)
{
	json_t *st = json_object_get(o, "stats"), *v;
	const char *k;

	json_object_foreach(st, k, v) {
		if (json_is_integer(v))
			printf("%s %lld\n", k, (long long)json_integer_value(v));
		else
			printf("%s %.9g\n", k, json_number_value(v));
	}
}

static void print_reply(const char *cmd, json_t *o)
{
	if (!strcmp(cmd, "peers")) {
		print_peers(o);
	} else if (!strcmp(cmd, "why")) {
		print_why(o);
	} else if (!strcmp(cmd, "lookup")) {
		print_lookup(o);
	} else if (!strcmp(cmd, "stats")) {
		print_stats(o);
	} else if (!strcmp(cmd, "reload")) {
		printf("reloaded\n");
	} else if (!strcmp(cmd, "evict")) {
		printf("evicted %s\n", json_string_value(json_object_get(o, "key")));
	} else if (!strcmp(cmd, "cache-flush")) {
		json_t *v;
		const char *stage;

		json_object_foreach(json_object_get(o, "stages"), stage, v) {
			char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

			printf("%s: %s\n", stage, t ? t : "?");
			free(t);
		}
	}
}

/* Send one request, read the one reply. */
static json_t *call(const char *path, json_t *q, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *text, *buf = NULL;
	size_t len = 0, cap = 0;
	json_error_t je;
	json_t *o = NULL;
	ssize_t n;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		snprintf(err, errlen, "%s: %s (is wggwd running, with this control_socket?)", path,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	text = json_dumps(q, JSON_COMPACT);
	if (!text || write(fd, text, strlen(text)) < 0 || write(fd, "\n", 1) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (;;) {
		if (len + 4096 > cap) {
			char *nb = realloc(buf, cap = cap * 2 + 8192);

			if (!nb)
				goto out;
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
	}
	o = buf ? json_loadb(buf, len, 0, &je) : NULL;
	if (!o)
		snprintf(err, errlen, "%s: no answer, or not JSON", path);
out:
	free(text);
	free(buf);
	close(fd);
	return o;
}

int ctl_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "negative", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *cmd, *key = NULL;
	bool json = false, negative = false;
	char pbuf[256], err[512];
	json_t *q, *o;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+s:jh", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'n':
			negative = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (!strcmp(cmd, "cache")) {
		if (optind >= argc || strcmp(argv[optind], "flush")) {
			fputs("wggwd ctl: cache flush [--negative] [KEY]\n", stderr);
			return 2;
		}
		optind++;
		cmd = "cache-flush";
	}
	/* options may also follow the command (cache flush --negative KEY) */
	for (; optind < argc; optind++) {
		if (!strcmp(argv[optind], "--negative"))
			negative = true;
		else if (!strcmp(argv[optind], "--json"))
			json = true;
		else if (!key)
			key = argv[optind];
		else {
			fprintf(stderr, "wggwd ctl %s: unexpected \"%s\"\n", cmd, argv[optind]);
			return 2;
		}
	}
	if (!strcmp(cmd, "evict") || !strcmp(cmd, "lookup")) {
		if (!key) {
			fprintf(stderr, "wggwd ctl %s: KEY is required\n", cmd);
			return 2;
		}
	} else if (strcmp(cmd, "why") && strcmp(cmd, "cache-flush") && key) {
		fprintf(stderr, "wggwd ctl %s: takes no argument\n", cmd);
		return 2;
	}
	if (strcmp(cmd, "peers") && strcmp(cmd, "why") && strcmp(cmd, "evict") &&
	    strcmp(cmd, "lookup") && strcmp(cmd, "reload") && strcmp(cmd, "stats") &&
	    strcmp(cmd, "cache-flush")) {
		fprintf(stderr, "wggwd ctl: unknown command \"%s\"\n", cmd);
		usage(stderr);
		return 2;
	}
	if (!path)
		path = ctl_default_path(pbuf, sizeof(pbuf));
	q = json_object();
	json_object_set_new(q, "cmd", json_string(cmd));
	if (key)
		json_object_set_new(q, "key", json_string(key));
	if (negative)
		json_object_set_new(q, "negative", json_true());
	o = call(path, q, err, sizeof(err));
	json_decref(q);
	if (!o) {
		fprintf(stderr, "wggwd ctl: %s\n", err);
		return 3;
	}
	ret = json_is_true(json_object_get(o, "ok")) ? 0 : 1;
	if (json) {
		char *t = json_dumps(o, JSON_INDENT(2));

		printf("%s\n", t ? t : "{}");
		free(t);
	} else if (ret) {
		fprintf(stderr, "wggwd ctl %s: %s\n", cmd,
			json_string_value(json_object_get(o, "error")) ?
				json_string_value(json_object_get(o, "error")) : "failed");
		if (!strcmp(cmd, "evict")) {
			json_t *w = json_pack("{s:O}", "outcomes", json_object_get(o, "removals"));

			print_why(w);
			json_decref(w);
		}
	} else {
		print_reply(cmd, o);
	}
	json_decref(o);
	return ret;
}
