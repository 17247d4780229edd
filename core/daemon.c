// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* `wggwd run`: the loop, signals, reload, stats, orderly exit; systemd's
 * notifications (READY, RELOADING, STOPPING, STATUS, WATCHDOG). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

static struct daemon {
	uv_loop_t loop;
	const char *file;
	struct config *conf;
	struct runtime *rt;
	struct config *next_conf;  /* a reload waiting for the old to stop */
	struct runtime *next_rt;
	uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
	uv_timer_t stats;
	bool stats_armed;
	bool exiting;
	int exit_code;
	uv_timer_t notify_timer;   /* WATCHDOG=1 and STATUS= updates */
	char status[256];          /* the last STATUS= sent */
	char reload_error[192];    /* why the last reload was refused */
	daemon_reload_cb reload_cb; /* who asked for the reload in progress */
	void *reload_arg;
} d;

static const char P[] = "[core]";

/* "running FILE: 2 pipelines, 5 stages, 12 peers[; last reload refused: ...]" */
static void send_status(const char *extra)
{
	char buf[sizeof(d.status)];
	int64_t peers = 0;
	size_t i;

	if (!notify_enabled())
		return;
	for (i = 0; d.conf && i < d.conf->n_stages; i++) {
		char name[160];

		if (!d.conf->stages[i].pipelines ||
		    d.conf->stages[i].plugin->desc.kind != WGGWD_INSTALLER)
			continue;
		snprintf(name, sizeof(name), "%s.peers", d.conf->stages[i].name);
		peers += *metrics_gauge(name);
	}
	if (extra)
		snprintf(buf, sizeof(buf), "%s", extra);
	else
		snprintf(buf, sizeof(buf), "running %s: %zu pipelines, %zu stages, %lld peers%s%s",
			 d.file, d.conf ? d.conf->n_pipelines : 0,
			 d.conf ? d.conf->n_stages : 0, (long long)peers,
			 d.reload_error[0] ? "; last reload refused: " : "", d.reload_error);
	if (strcmp(buf, d.status)) {
		strcpy(d.status, buf);
		notify("STATUS=%s", buf);
	}
}

static void on_notify_timer(uv_timer_t *t)
{
	(void)t;
	if (notify_watchdog_usec())
		notify("WATCHDOG=1");
	if (!d.exiting && !d.next_rt)
		send_status(NULL);
}

/* Watchdog pings from the loop itself, at half the interval: a loop that
 * hangs stops them and systemd restarts us (WatchdogSec=). */
static void arm_notify(void)
{
	uint64_t wd = notify_watchdog_usec(), ms = 10000;

	if (!notify_enabled())
		return;
	if (wd)
		ms = wd / 2000 ? wd / 2000 : 1;
	if (ms > 10000)
		ms = 10000;
	uv_timer_init(&d.loop, &d.notify_timer);
	uv_timer_start(&d.notify_timer, on_notify_timer, ms, ms);
}

static void reload_finished(int status, const char *msg)
{
	daemon_reload_cb cb = d.reload_cb;
	void *arg = d.reload_arg;

	d.reload_cb = NULL;
	d.reload_arg = NULL;
	if (status)
		snprintf(d.reload_error, sizeof(d.reload_error), "%s", msg);
	else
		d.reload_error[0] = '\0';
	d.status[0] = '\0';
	if (!d.exiting) {
		notify("READY=1");
		send_status(NULL);
	}
	if (cb)
		cb(arg, status, msg);
}

/*
 * Load the file, with what config_load prints (errors, warnings) sent
 * to the log at its level when asked (a reload: the terminal is gone) or
 * when the log is the journal, so that `journalctl -p err` shows it.
 * The first error is kept in err.
 */
static struct config *load_logged(const char *file, bool capture, char *err, size_t len)
{
	struct config *c;
	FILE *saved = stderr, *mem;
	char *text = NULL, *line, *save;
	size_t n = 0;

	if (err && len)
		err[0] = '\0';
	if (!capture && !log_to_journal())
		return config_load(file);
	mem = open_memstream(&text, &n);
	if (!mem)
		return config_load(file);
	stderr = mem;
	c = config_load(file);
	stderr = saved;
	fclose(mem);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		bool warn = strstr(line, ": warning: ") != NULL;

		log_msg(warn ? WGGWD_LOG_WARN : WGGWD_LOG_ERROR, "[config]", "%s", line);
		if (!warn && err && len && !err[0])
			snprintf(err, len, "%s", line);
	}
	free(text);
	return c;
}

static void on_stats(uv_timer_t *t)
{
	int ret;

	(void)t;
	if (!d.conf->core.stats_file)
		return;
	ret = metrics_write_file(d.conf->core.stats_file);
	if (ret)
		log_msg(WGGWD_LOG_WARN, P, "stats file %s: %s", d.conf->core.stats_file,
			strerror(-ret));
}

static void arm_stats(void)
{
	if (d.stats_armed)
		uv_timer_stop(&d.stats);
	d.stats_armed = false;
	if (d.conf->core.stats_file) {
		uv_timer_start(&d.stats, on_stats, 0, d.conf->core.stats_interval_ms);
		d.stats_armed = true;
	}
}

static void close_all(void)
{
	on_stats(NULL);
	uv_close((uv_handle_t *)&d.sig_term, NULL);
	uv_close((uv_handle_t *)&d.sig_int, NULL);
	uv_close((uv_handle_t *)&d.sig_hup, NULL);
	uv_close((uv_handle_t *)&d.sig_usr1, NULL);
	uv_close((uv_handle_t *)&d.stats, NULL);
	if (notify_enabled())
		uv_close((uv_handle_t *)&d.notify_timer, NULL);
	listeners_stop();
	host_shutdown();
}

static void on_stopped_exit(void *arg)
{
	(void)arg;
	log_msg(WGGWD_LOG_INFO, P, "stopped");
	close_all();
}

static void shutdown_now(int code)
{
	if (d.exiting)
		return;
	d.exiting = true;
	d.exit_code = code;
	notify("STOPPING=1\nSTATUS=stopping");
	if (d.reload_cb)
		reload_finished(-ECANCELED, "the daemon is stopping");
	if (d.next_rt) {
		/* a reload was in progress: its runtime never started */
		runtime_free(d.next_rt);
		config_free(d.next_conf);
		d.next_rt = NULL;
		d.next_conf = NULL;
	}
	if (d.rt)
		runtime_stop(d.rt, on_stopped_exit, NULL);
	else
		close_all();
}

static void on_term(uv_signal_t *s, int signum)
{
	(void)s;
	log_msg(WGGWD_LOG_INFO, P, "%s: stopping", strsignal(signum));
	shutdown_now(0);
}

static void on_usr1(uv_signal_t *s, int signum)
{
	(void)s;
	(void)signum;
	metrics_dump(stderr, false);
}

static void start_or_fallback(void *arg);

/* The old runtime has stopped: swap in the new one. */
static void on_old_stopped(void *arg)
{
	struct config *old_conf = d.conf;

	(void)arg;
	runtime_free(d.rt);
	d.rt = d.next_rt;
	d.conf = d.next_conf;
	d.next_rt = NULL;
	d.next_conf = NULL;
	if (runtime_start(d.rt) == 0) {
		log_msg(WGGWD_LOG_INFO, P, "reloaded %s", d.file);
		config_free(old_conf);
		arm_stats();
		reload_finished(0, "reloaded");
		return;
	}
	/* the new config was valid but could not start (a port in use,
	 * say): go back to the one that ran before */
	log_msg(WGGWD_LOG_ERROR, P, "reload: the new configuration failed to start; going back to the previous one");
	d.next_conf = old_conf;
	runtime_stop(d.rt, start_or_fallback, NULL);
}

static void start_or_fallback(void *arg)
{
	(void)arg;
	runtime_free(d.rt);
	config_free(d.conf);
	d.conf = d.next_conf;
	d.next_conf = NULL;
	d.rt = runtime_new(&d.loop, d.conf);
	if (d.rt && runtime_start(d.rt) == 0) {
		arm_stats();
		reload_finished(-EIO, "the new configuration failed to start; running the previous one");
		return;
	}
	log_msg(WGGWD_LOG_ERROR, P, "the previous configuration failed to start again; exiting");
	d.exiting = true;
	d.exit_code = 1;
	notify("STOPPING=1\nSTATUS=exiting: neither configuration starts");
	reload_finished(-EIO, "the new configuration failed to start, and so did the previous one: exiting");
	if (d.rt)
		runtime_stop(d.rt, on_stopped_exit, NULL);
	else
		close_all();
}

int daemon_reload(daemon_reload_cb cb, void *arg)
{
	struct timespec ts;
	struct config *c;
	struct runtime *rt;
	char err[160], msg[sizeof(d.reload_error)];

	if (d.exiting || d.next_rt || d.reload_cb) {
		log_msg(WGGWD_LOG_WARN, P, "reload: busy (%s); ignored",
			d.exiting ? "stopping" : "a reload is in progress");
		return -EBUSY;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
	       (unsigned long long)ts.tv_sec * 1000000ull + ts.tv_nsec / 1000, d.file);
	d.reload_cb = cb;
	d.reload_arg = arg;
	log_msg(WGGWD_LOG_INFO, P, "reload: re-reading %s", d.file);
	c = load_logged(d.file, true, err, sizeof(err));
	if (!c) {
		log_msg(WGGWD_LOG_ERROR, P, "reload: %s is not valid (errors above); keeping the running configuration",
			d.file);
		snprintf(msg, sizeof(msg), "%s is not valid: %s", d.file, err[0] ? err : "see the log");
		reload_finished(-EINVAL, msg);
		return 0;
	}
	rt = runtime_new(&d.loop, c);
	if (!rt) {
		log_msg(WGGWD_LOG_ERROR, P, "reload: the new configuration could not be created; keeping the running one");
		config_free(c);
		reload_finished(-EINVAL, "the new configuration could not be created (see the log)");
		return 0;
	}
	log_level = c->core.log_level;
	d.next_conf = c;
	d.next_rt = rt;
	runtime_stop(d.rt, on_old_stopped, NULL);
	return 0;
}

static void on_hup(uv_signal_t *s, int signum)
{
	(void)s;
	(void)signum;
	log_msg(WGGWD_LOG_INFO, P, "SIGHUP");
	daemon_reload(NULL, NULL);
}

int daemon_run(const char *file)
{
	int ret;

	char err[160];

	memset(&d, 0, sizeof(d));
	d.file = file;
	notify_init();
	d.conf = load_logged(file, false, err, sizeof(err));
	if (!d.conf) {
		notify("STATUS=%s is not valid: %s", file, err[0] ? err : "see the log");
		return 1;
	}
	log_level = d.conf->core.log_level;
	/* libuv's pool (4 threads unless set) is shared by every plugin's
	 * work: NATS connects and JetStream calls that wait on the network,
	 * checkpoints, the kernel's bulk SETs. Read at its first use. */
	setenv("UV_THREADPOOL_SIZE", "8", 0);
	uv_loop_init(&d.loop);
	host_init(&d.loop);
	uv_signal_init(&d.loop, &d.sig_term);
	uv_signal_init(&d.loop, &d.sig_int);
	uv_signal_init(&d.loop, &d.sig_hup);
	uv_signal_init(&d.loop, &d.sig_usr1);
	uv_signal_start(&d.sig_term, on_term, SIGTERM);
	uv_signal_start(&d.sig_int, on_term, SIGINT);
	uv_signal_start(&d.sig_hup, on_hup, SIGHUP);
	uv_signal_start(&d.sig_usr1, on_usr1, SIGUSR1);
	uv_timer_init(&d.loop, &d.stats);
	signal(SIGPIPE, SIG_IGN);

	arm_notify();

	d.rt = runtime_new(&d.loop, d.conf);
	if (!d.rt) {
		notify("STATUS=a stage could not be created (see the log)");
		d.exiting = true;
		d.exit_code = 1;
		close_all();
	} else if ((ret = runtime_start(d.rt))) {
		log_msg(WGGWD_LOG_ERROR, P, "start failed; stopping what started");
		notify("STATUS=start failed: %s (see the log)\nERRNO=%d", strerror(-ret), -ret);
		shutdown_now(1);
	} else if (listeners_start(&d.loop, &d.conf->core)) {
		shutdown_now(1);
	} else {
		log_msg(WGGWD_LOG_INFO, P, "running %s: %zu stages, %zu pipelines (pid %d)",
			file, d.conf->n_stages, d.conf->n_pipelines, (int)getpid());
		arm_stats();
		/* every stage has started: systemd may call us active */
		notify("READY=1\nMAINPID=%d", (int)getpid());
		send_status(NULL);
	}
	uv_run(&d.loop, UV_RUN_DEFAULT);
	runtime_free(d.rt);
	config_free(d.conf);
	ret = uv_loop_close(&d.loop);
	if (ret) {
		log_msg(WGGWD_LOG_ERROR, P, "event loop not closed cleanly at exit: %s",
			uv_strerror(ret));
		uv_print_all_handles(&d.loop, stderr);
		if (!d.exit_code)
			d.exit_code = 3;
	}
	if (log_level >= WGGWD_LOG_DEBUG)
		metrics_dump(stderr, false);
	plugins_unload_all();
	metrics_reset();
	return d.exit_code;
}
