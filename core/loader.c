// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* Finding, checking and loading plugin shared objects. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

static struct plugin *loaded;

const char *kind_name(uint32_t kind)
{
	static const char *const names[] = {
		[WGGWD_SOURCE] = "source",       [WGGWD_DECODER] = "decoder",
		[WGGWD_RESOLVER] = "resolver",   [WGGWD_STORE] = "store",
		[WGGWD_INSTALLER] = "installer", [WGGWD_EVICTOR] = "evictor",
	};

	return kind < ARRAY_SIZE(names) && names[kind] ? names[kind] : "?";
}

const char *msg_names(uint32_t mask, char *buf, size_t len)
{
	static const char *const names[] = { "pkt", "peer-key", "peer", "event" };
	size_t i, off = 0;

	buf[0] = '\0';
	if (!mask)
		snprintf(buf, len, "nothing");
	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (mask & (1u << i))
			off += snprintf(buf + off, off < len ? len - off : 0,
					"%s%s", off ? " or " : "", names[i]);
	return buf;
}

static void add_dir(struct search_path *sp, const char *dir)
{
	if (sp->n < ARRAY_SIZE(sp->dir) && dir && *dir)
		sp->dir[sp->n++] = xstrdup(dir);
}

/* plugin_path from YAML, then WGGWD_PLUGIN_PATH, then the build tree the
 * binary runs from (its plugins/ folder), then the install directory. */
void search_path_init(struct search_path *sp, const struct wggwd_list *cfg)
{
	char exe[PATH_MAX], buf[PATH_MAX + 16], *env, *dup, *tok, *save;
	ssize_t n;
	size_t i;

	memset(sp, 0, sizeof(*sp));
	for (i = 0; cfg && i < cfg->n; i++)
		add_dir(sp, ((char **)cfg->v)[i]);
	env = getenv("WGGWD_PLUGIN_PATH");
	if (env) {
		dup = xstrdup(env);
		for (tok = strtok_r(dup, ":", &save); tok;
		     tok = strtok_r(NULL, ":", &save))
			add_dir(sp, tok);
		free(dup);
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(buf, sizeof(buf), "%s/plugins", exe);
		if (access(buf, F_OK) == 0 && strcmp(buf, WGGWD_PLUGIN_DIR))
			add_dir(sp, buf);
	}
	add_dir(sp, WGGWD_PLUGIN_DIR);
}

void search_path_free(struct search_path *sp)
{
	while (sp->n)
		free(sp->dir[--sp->n]);
}

/* The daemon runs with CAP_NET_ADMIN: whoever can write a plugin can run
 * code with it. Refuse what others could have changed. */
static int check_owner_mode(const char *path, const struct stat *st,
			    char *err, size_t errlen)
{
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		snprintf(err, errlen, "%s: refused: owned by uid %u, not root or the daemon's user",
			 path, (unsigned)st->st_uid);
		return -EPERM;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: refused: writable by %s (mode %04o)",
			 path, st->st_mode & S_IWOTH ? "others" : "group",
			 (unsigned)(st->st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/*
 * Every directory from / down to `file`'s own: owned by root or us and
 * writable by nobody else, save sticky ones like /tmp above the last.
 * `file` is a resolved path (no links, no dots).
 */
static int check_dirs(char *file, char *err, size_t errlen)
{
	struct stat st;
	char *slash;
	int ret = 0;

	for (slash = file; slash && !ret; slash = strchr(slash + 1, '/')) {
		char *cut = slash == file ? slash + 1 : slash; /* keep "/" */
		char c = *cut;
		bool own_dir = !strchr(slash + 1, '/');

		*cut = '\0';
		if (stat(file, &st)) {
			snprintf(err, errlen, "%s: %s", file, strerror(errno));
			ret = -errno;
		} else if (!own_dir && (st.st_mode & S_ISVTX) &&
			   (st.st_uid == 0 || st.st_uid == geteuid())) {
			ret = 0; /* /tmp: nobody else may rename what is ours */
		} else {
			ret = check_owner_mode(file, &st, err, errlen);
		}
		*cut = c;
		if (own_dir)
			break;
	}
	return ret;
}

/*
 * Open the plugin file so that what is checked is what is loaded: check
 * the directories that hold the name we were given and those that hold
 * the file it resolves to, open the file without following a link, check
 * that descriptor; the caller loads it through /proc/self/fd. Returns
 * the fd or -errno.
 */
static int open_checked(const char *path, char *err, size_t errlen)
{
	char real[PATH_MAX], dir[PATH_MAX], *slash;
	struct stat st;
	int fd, ret;

	/* where the name lives: a link there is only as safe as its dir */
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	if (!realpath(slash ? (*dir ? dir : "/") : ".", real) ||
	    strlen(real) + 3 > sizeof(real)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	strcat(real, "/x"); /* check_dirs wants a file in the directory */
	ret = check_dirs(real, err, errlen);
	if (ret)
		return ret;
	if (!realpath(path, real)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	ret = check_dirs(real, err, errlen);
	if (ret)
		return ret;
	fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", real, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", real, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snprintf(err, errlen, "%s: not a regular file", path);
	} else {
		ret = check_owner_mode(path, &st, err, errlen);
	}
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

static const char *file_stem(const char *path, char *buf, size_t len)
{
	const char *base = strrchr(path, '/');
	char *dot;

	snprintf(buf, len, "%s", base ? base + 1 : path);
	dot = strstr(buf, ".so");
	if (dot && dot[3] == '\0')
		*dot = '\0';
	return buf;
}

/* An op of a table that may be shorter than ours (an older minor). */
#define OP(o, f) \
	((o)->size >= offsetof(struct wggwd_ops, f) + sizeof(void *) ? (o)->f : NULL)

/*
 * The option tables in the host's layout: a plugin built against another
 * minor has another stride; copy each entry (zero-filling what it lacks).
 */
static const struct wggwd_opt *opts_copy(const void *tbl, size_t stride)
{
	const struct wggwd_opt *o;
	struct wggwd_opt *out;
	size_t n = 0, i, len = stride < sizeof(*out) ? stride : sizeof(*out);

	if (!tbl || stride == sizeof(*out))
		return tbl;
	while (((const struct wggwd_opt *)((const char *)tbl + n * stride))->name)
		n++;
	out = xcalloc(n + 1, sizeof(*out));
	for (i = 0; i < n; i++) {
		o = (const struct wggwd_opt *)((const char *)tbl + i * stride);
		memcpy(&out[i], o, len);
		if (out[i].sub)
			out[i].sub = opts_copy(out[i].sub, stride);
	}
	return out;
}

static int check_desc(const char *path, const struct wggwd_plugin *d,
		      const char *stem, char *err, size_t errlen)
{
	const char *missing = NULL;
	const struct wggwd_ops *o;

	if (d->abi_major != WGGWD_ABI_MAJOR || d->abi_minor > WGGWD_ABI_MINOR) {
		snprintf(err, errlen,
			 "%s: built for plugin ABI %u.%u, host has %u.%u (%s)",
			 path, d->abi_major, d->abi_minor, WGGWD_ABI_MAJOR,
			 WGGWD_ABI_MINOR,
			 d->abi_major != WGGWD_ABI_MAJOR ? "major differs" :
							   "minor is newer than the host's");
		return -EPROTO;
	}
	if (d->size < offsetof(struct wggwd_plugin, ops) + sizeof(void *) ||
	    d->opt_size < offsetof(struct wggwd_opt, check)) {
		snprintf(err, errlen,
			 "%s: descriptor is %u bytes (options %u), ABI %u.0 needs at least %zu (%zu)",
			 path, d->size, d->opt_size, WGGWD_ABI_MAJOR,
			 offsetof(struct wggwd_plugin, ops) + sizeof(void *),
			 offsetof(struct wggwd_opt, check));
		return -EPROTO;
	}
	if (!d->build_sig || strcmp(d->build_sig, WGGWD_BUILD_SIG)) {
		snprintf(err, errlen, "%s: built as \"%s\", host is \"%s\"", path,
			 d->build_sig ? d->build_sig : "(none)", WGGWD_BUILD_SIG);
		return -EPROTO;
	}
	if (!d->name || strcmp(d->name, stem)) {
		snprintf(err, errlen,
			 "%s: plugin calls itself \"%s\" but its file says \"%s\"",
			 path, d->name ? d->name : "(null)", stem);
		return -EINVAL;
	}
	if (d->kind < WGGWD_SOURCE || d->kind > WGGWD_EVICTOR) {
		snprintf(err, errlen, "%s: unknown stage kind %u", path, d->kind);
		return -EINVAL;
	}
	o = d->ops;
	if (!o)
		missing = "ops";
	else if (o->size < offsetof(struct wggwd_ops, destroy) + sizeof(void *))
		missing = "ops (table too short)";
	else if (!o->create)
		missing = "create";
	else if (!o->destroy)
		missing = "destroy";
	else if ((d->kind == WGGWD_SOURCE || d->kind == WGGWD_EVICTOR) &&
		 (!o->start || !o->stop))
		missing = !o->start ? "start" : "stop";
	else if (d->kind != WGGWD_SOURCE && !o->process)
		missing = "process";
	else if (d->kind == WGGWD_STORE && !OP(o, lookup))
		missing = "lookup";
	else if (d->kind == WGGWD_INSTALLER && !OP(o, device))
		missing = "device";
	else if (d->kind == WGGWD_INSTALLER && !OP(o, dump))
		missing = "dump";
	if (missing) {
		snprintf(err, errlen, "%s: %s plugin lacks the required op %s",
			 path, kind_name(d->kind), missing);
		return -EINVAL;
	}
	if (d->opts && !d->conf_size && d->opts[0].name) {
		snprintf(err, errlen, "%s: declares options but no conf_size", path);
		return -EINVAL;
	}
	return 0;
}

/* A refused object stays mapped (NODELETE) under its /proc/self/fd name:
 * keep that fd until exit, so that the name is never reused. */
static int kept[64];
static size_t n_kept;

static void loaded_fd_keep(int fd)
{
	if (n_kept < ARRAY_SIZE(kept))
		kept[n_kept++] = fd;
	else
		close(fd); /* 64 refusals in one process: the name may recur */
}

struct plugin *plugin_load_file(const char *path, char *err, size_t errlen)
{
	const struct wggwd_plugin *d;
	struct plugin *p;
	char stem[256], fdpath[64];
	void *dl;
	int fd;

	file_stem(path, stem, sizeof(stem));
	for (p = loaded; p; p = p->next)
		if (!strcmp(p->desc.name, stem))
			return p;
	fd = open_checked(path, err, errlen);
	if (fd < 0)
		return NULL;
	/* NODELETE: a plugin's threads or atexit hooks may outlive us */
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	/* the fd stays open while the plugin is loaded: glibc knows objects
	 * by name, and a reused /proc/self/fd/N would name the last one */
	dl = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (!dl) {
		snprintf(err, errlen, "%s: %s", path, dlerror());
		close(fd);
		return NULL;
	}
	d = dlsym(dl, WGGWD_PLUGIN_SYMBOL);
	if (!d) {
		snprintf(err, errlen, "%s: no symbol \"%s\": not a wggwd plugin",
			 path, WGGWD_PLUGIN_SYMBOL);
		dlclose(dl);
		loaded_fd_keep(fd);
		return NULL;
	}
	if (check_desc(path, d, stem, err, errlen)) {
		dlclose(dl);
		loaded_fd_keep(fd);
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	p->path = xstrdup(path);
	p->dl = dl;
	p->fd = fd;
	memcpy(&p->desc, d, d->size < sizeof(p->desc) ? d->size : sizeof(p->desc));
	memcpy(&p->ops, d->ops,
	       d->ops->size < sizeof(p->ops) ? d->ops->size : sizeof(p->ops));
	p->desc.opts = opts_copy(d->opts, d->opt_size);
	p->next = loaded;
	loaded = p;
	return p;
}

struct plugin *plugin_load(const struct search_path *sp, const char *name,
			   char *err, size_t errlen)
{
	char path[PATH_MAX];
	size_t i, k;
	struct plugin *p;

	for (p = loaded; p; p = p->next)
		if (!strcmp(p->desc.name, name))
			return p;
	if (!*name || strchr(name, '/') || name[0] == '.') {
		snprintf(err, errlen, "\"%s\" is not a plugin name", name);
		return NULL;
	}
	for (i = 0; i < sp->n; i++) {
		/* DIR/NAME.so (installed), DIR/NAME/NAME.so (build tree) */
		for (k = 0; k < 2; k++) {
			if (k == 0)
				snprintf(path, sizeof(path), "%s/%s.so", sp->dir[i], name);
			else
				snprintf(path, sizeof(path), "%s/%s/%s.so", sp->dir[i],
					 name, name);
			if (access(path, F_OK) == 0)
				return plugin_load_file(path, err, errlen);
		}
	}
	snprintf(err, errlen, "plugin \"%s\" not found (searched:", name);
	for (i = 0; i < sp->n; i++) {
		size_t l = strlen(err);
		snprintf(err + l, errlen - l, " %s", sp->dir[i]);
	}
	strncat(err, ")", errlen - strlen(err) - 1);
	return NULL;
}

int plugin_list(const struct search_path *sp,
		void (*cb)(const char *path, void *arg), void *arg)
{
	char path[PATH_MAX];
	struct dirent *de;
	size_t i, len;
	DIR *d;

	for (i = 0; i < sp->n; i++) {
		d = opendir(sp->dir[i]);
		if (!d)
			continue;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			len = strlen(de->d_name);
			if (len > 3 && !strcmp(de->d_name + len - 3, ".so"))
				snprintf(path, sizeof(path), "%s/%s", sp->dir[i],
					 de->d_name);
			else
				snprintf(path, sizeof(path), "%s/%s/%s.so", sp->dir[i],
					 de->d_name, de->d_name);
			if (access(path, F_OK) == 0)
				cb(path, arg);
		}
		closedir(d);
	}
	return 0;
}

void plugins_unload_all(void)
{
	struct plugin *p, *n;

	while (n_kept)
		close(kept[--n_kept]);
	for (p = loaded; p; p = n) {
		n = p->next;
		dlclose(p->dl);
		close(p->fd);
		free(p->path);
		free(p);
	}
	loaded = NULL;
}
