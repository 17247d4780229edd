// SPDX-License-Identifier: MIT
/* Copyright (C) 2026 wggwd authors */
/* `wggwd run`: the loop, signals, reload, stats, orderly exit. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
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
} d;

static const char P[] = "[core]";

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
		return;
	}
	log_msg(WGGWD_LOG_ERROR, P, "the previous configuration failed to start again; exiting");
	if (d.rt) {
		d.exiting = true;
		d.exit_code = 1;
		runtime_stop(d.rt, on_stopped_exit, NULL);
	} else {
		d.exiting = true;
		d.exit_code = 1;
		close_all();
	}
}

static void on_hup(uv_signal_t *s, int signum)
{
	struct config *c;
	struct runtime *rt;

	(void)s;
	(void)signum;
	if (d.exiting || d.next_rt) {
		log_msg(WGGWD_LOG_WARN, P, "SIGHUP: busy (%s); ignored",
			d.exiting ? "stopping" : "a reload is in progress");
		return;
	}
	log_msg(WGGWD_LOG_INFO, P, "SIGHUP: re-reading %s", d.file);
	c = config_load(d.file);
	if (!c) {
		log_msg(WGGWD_LOG_ERROR, P, "reload: %s is not valid (errors above); keeping the running configuration",
			d.file);
		return;
	}
	rt = runtime_new(&d.loop, c);
	if (!rt) {
		log_msg(WGGWD_LOG_ERROR, P, "reload: the new configuration could not be created; keeping the running one");
		config_free(c);
		return;
	}
	log_level = c->core.log_level;
	d.next_conf = c;
	d.next_rt = rt;
	runtime_stop(d.rt, on_old_stopped, NULL);
}

int daemon_run(const char *file)
{
	int ret;

	memset(&d, 0, sizeof(d));
	d.file = file;
	d.conf = config_load(file);
	if (!d.conf)
		return 1;
	log_level = d.conf->core.log_level;
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

	d.rt = runtime_new(&d.loop, d.conf);
	if (!d.rt) {
		d.exiting = true;
		d.exit_code = 1;
		close_all();
	} else if ((ret = runtime_start(d.rt))) {
		log_msg(WGGWD_LOG_ERROR, P, "start failed; stopping what started");
		shutdown_now(1);
	} else {
		log_msg(WGGWD_LOG_INFO, P, "running %s: %zu stages, %zu pipelines (pid %d)",
			file, d.conf->n_stages, d.conf->n_pipelines, (int)getpid());
		arm_stats();
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
