/*
 * rs_service.h - the one lifecycle of every Runstream service.
 *
 * Every service starts and stops the same way, so it is written once here:
 *   1. stop signals blocked in every thread (SIGTERM/SIGINT are waited for,
 *      never handled asynchronously), SIGPIPE ignored, logs, JSON seed;
 *   2. the common settings (rs_config_load) and the service's own
 *      (configure hook), then its metrics;
 *   3. the ops endpoints (/healthz /readyz /metrics): an rs_ops_server on
 *      RS_<SERVICE>_OPS_PORT, or - for services with their own HTTP server -
 *      s->ops, which that server answers;
 *   4. init (before NATS), NATS connect (rs_nats), the streams and buckets
 *      the service needs (rs_streams_check), start (threads, KV handles);
 *   5. run: wait for SIGTERM/SIGINT, or the service's own loop on the main
 *      thread (api, tool-router) until a signal wakes it;
 *   6. /readyz turns false, then drain (bounded by RS_SHUTDOWN_GRACE_MS),
 *      NATS drained and closed, the ops server stopped, stop (frees).
 *
 * /readyz is 200 only when NATS is connected, the streams were found,
 * start has returned and no stop signal has come - then whatever the
 * service's own ready hook adds. It turns false *before* drain begins, so a
 * balancer stops sending work before the process stops taking it.
 *
 * Exit codes (the same for every service): 0 after SIGTERM/SIGINT, 1 when
 * the service cannot start (streams or buckets missing, a start hook
 * failed), 2 bad configuration, 4 NATS unreachable.
 *
 * Ownership: the def, its app, cfg and nats live as long as the process
 * (static storage in main.c); rs_service owns nothing the hooks allocate -
 * drain and stop release it.
 */
#ifndef RS_SERVICE_H
#define RS_SERVICE_H

#include <stdatomic.h>
#include <stdint.h>

#include "rs_config.h"
#include "rs_nats.h"
#include "rs_ops.h"
#include "rs_status.h"

typedef struct rs_service rs_service;

/* What makes one service different. Every hook is optional (NULL: nothing
 * to do) and gets the running service; the service's own state is s->app. */
typedef struct {
	const char *name;          /* "orchestrator": log field, ops, instance id */
	const char *port_var;      /* RS_ORCHESTRATOR_OPS_PORT, or RS_API_PORT */
	int64_t port_def;
	int own_http;              /* 1: the service serves s->ops on its own server */
	const char *const *required; /* rs_streams_check names; NULL: none checked */
	void *app;                 /* the service's state */
	rs_config *cfg;            /* filled by rs_config_load before configure */
	rs_nats *nats;             /* the service's connection */

	rs_status (*configure)(rs_service *s);  /* own settings; failure exits 2 */
	void (*metrics)(void);                  /* register metrics */
	rs_status (*init)(rs_service *s);       /* before NATS; failure exits 1 */
	void (*js_options)(rs_service *s, jsOptions *jo); /* before connect */
	/* After connect and the streams check. RS_EUNAVAIL exits 4, other
	 * failures 1 (drain and stop still run: they must cope with parts never
	 * started). */
	rs_status (*start)(rs_service *s);
	rs_ready_fn ready;                      /* more readiness; arg is s->app */
	void (*run)(rs_service *s);             /* own loop on the main thread */
	void (*wake)(rs_service *s);            /* end run(); called off-signal */
	/* Stop taking work, finish what is in flight within grace_ms, flush
	 * publishes. Runs before NATS is closed. */
	void (*drain)(rs_service *s, int64_t grace_ms);
	/* Free what is left, after NATS is closed. Return nonzero if threads
	 * may still run (then libraries are not torn down before exit). */
	int (*stop)(rs_service *s);
} rs_service_def;

struct rs_service {
	const rs_service_def *def;
	void *app;
	rs_config *cfg;
	rs_nats *nats;
	rs_ops ops;            /* for own_http services: answer these */
	atomic_int stopping;   /* a stop signal came (or start failed) */
	atomic_int checked;    /* streams and buckets found */
	atomic_int started;    /* start returned RS_OK */
	int signal;            /* the signal that stopped us, 0 if none */
};

/* Run the service described by def; returns the process exit code. */
int rs_service_main(const rs_service_def *def);

/* The /readyz answer (rs_ready_fn; arg is the rs_service). */
int rs_service_ready(void *arg, char *why, size_t cap);

#endif
