/*
 * rs_service.c - the one lifecycle of every service (rs_service.h): signals,
 * settings, ops endpoints, NATS, the streams check, readiness, drain and
 * the exit code. Each services/X/main.c is only the table of hooks.
 *
 * Signals are never handled asynchronously: SIGTERM and SIGINT are blocked
 * before any thread exists (so every thread nats.c, lws or the service
 * creates inherits the mask) and one thread waits for them with sigwait -
 * the main thread, or a small signal thread when the service runs its own
 * loop on the main thread. Hooks therefore run in ordinary thread context
 * and may lock, log and call lws_cancel_service.
 */
#include "rs_service.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "rs_log.h"
#include "rs_streams.h"

int
rs_service_ready(void *arg, char *why, size_t cap)
{
	rs_service *s = arg;

	if (atomic_load(&s->stopping)) {
		snprintf(why, cap, "shutting down");
		return 0;
	}
	if (!rs_nats_connected(s->nats)) {
		snprintf(why, cap, "NATS not connected");
		return 0;
	}
	if (!atomic_load(&s->checked)) {
		snprintf(why, cap, "streams or KV buckets missing (run: runctl streams apply)");
		return 0;
	}
	if (!atomic_load(&s->started)) {
		snprintf(why, cap, "starting");
		return 0;
	}
	return s->def->ready == NULL || s->def->ready(s->app, why, cap);
}

/* Readiness goes first: /readyz answers 503 before anything stops. */
static void
begin_stop(rs_service *s, int sig)
{
	atomic_store(&s->stopping, 1);
	if (sig != 0) {
		s->signal = sig;
		rs_info("signal %d: stopping (grace %lld ms)", sig,
		        (long long)s->cfg->shutdown_grace_ms);
	}
}

typedef struct {
	rs_service *s;
	sigset_t sigs;
	atomic_int done;
} sig_waiter;

/* For services with their own loop: wait for a stop signal, then wake it. */
static void *
signal_thread(void *arg)
{
	sig_waiter *w = arg;
	int sig = 0;

	sigwait(&w->sigs, &sig);
	if (!atomic_exchange(&w->done, 1)) {
		begin_stop(w->s, sig);
		if (w->s->def->wake != NULL)
			w->s->def->wake(w->s);
	}
	return NULL;
}

static void
run(rs_service *s, const sigset_t *sigs)
{
	sig_waiter w = { .s = s, .sigs = *sigs };
	pthread_t thr;
	int sig = 0;

	if (s->def->run == NULL) {
		sigwait(sigs, &sig);
		begin_stop(s, sig);
		return;
	}
	if (pthread_create(&thr, NULL, signal_thread, &w) != 0) {
		rs_error("%s: cannot start the signal thread", s->def->name);
		atomic_store(&s->stopping, 1);
		return;
	}
	s->def->run(s);
	/* The loop ended on its own (an lws error): release the waiter. A
	 * signal that arrives meanwhile is consumed by it just the same. */
	if (!atomic_exchange(&w.done, 1))
		pthread_kill(thr, SIGTERM);
	pthread_join(thr, NULL);
	atomic_store(&s->stopping, 1);
}

static int
start(rs_service *s)
{
	const rs_service_def *d = s->def;
	char missing[256] = "";
	jsOptions jo;
	rs_status st;

	if (d->init != NULL && d->init(s) != RS_OK)
		return 1;
	jsOptions_Init(&jo);
	if (d->js_options != NULL)
		d->js_options(s, &jo);
	if (rs_nats_connect(s->nats, s->cfg->nats_url, s->cfg->instance_id, &jo, 10000) != RS_OK)
		return 4;
	if (d->required != NULL &&
	    rs_streams_check(s->nats->js, d->required, missing, sizeof(missing)) != RS_OK) {
		rs_error("%s: JetStream objects missing: %s (run `runctl streams apply`)", d->name,
		         missing[0] ? missing : "cannot check");
		return 1;
	}
	atomic_store(&s->checked, 1);
	if (d->start != NULL && (st = d->start(s)) != RS_OK)
		return st == RS_EUNAVAIL ? 4 : 1;
	atomic_store(&s->started, 1);
	return 0;
}

int
rs_service_main(const rs_service_def *d)
{
	static rs_service s;
	rs_ops_server *srv = NULL;
	sigset_t sigs;
	int rc, busy = 0;

	/* Before any thread exists: every thread inherits the blocked mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	json_object_seed(0);
	rs_log_init(d->name);
	s.def = d;
	s.app = d->app;
	s.cfg = d->cfg;
	s.nats = d->nats;
	s.ops = (rs_ops){ d->name, rs_service_ready, &s };
	if (rs_config_load(s.cfg, d->name, d->port_var, d->port_def) != RS_OK ||
	    (d->configure != NULL && d->configure(&s) != RS_OK))
		return 2;
	if (d->metrics != NULL)
		d->metrics();
	if (!d->own_http &&
	    rs_ops_server_start(&srv, s.cfg->listen_addr, (int)s.cfg->ops_port, &s.ops) != RS_OK)
		return 1;
	if ((rc = start(&s)) == 0)
		run(&s, &sigs);
	begin_stop(&s, 0);
	if (d->drain != NULL)
		d->drain(&s, s.cfg->shutdown_grace_ms);
	rs_nats_close(s.nats, s.cfg->shutdown_grace_ms / 4);
	rs_ops_server_stop(srv);
	if (d->stop != NULL)
		busy = d->stop(&s);
	if (!busy)   /* no thread of ours is inside nats.c any more */
		nats_Close();
	rs_info("stopped (exit %d)", rc);
	return rc;
}
