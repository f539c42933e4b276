/*
 * service.c - rs-tool-router's parts in the order they start and stop: its
 * settings and the hooks common/rs_service.c calls (main.c is the table
 * naming them). The lws service loop runs on the main thread; the
 * lifecycle's signal thread wakes it (lws_cancel_service is thread-safe).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_config.h"
#include "rs_log.h"
#include "rs_time.h"

const char *const rs_router_required[] = { "TOOLCALLS", "CMDS", "kv:calls", "kv:presence",
                                           "kv:devtokens", NULL };

static int workers;   /* the workers started: stop them */

static rs_status
load_config(rs_router *r, const rs_config *cfg)
{
	int64_t hb, maxf, bad, nw, preh, helloto, maxdev, pullexp;

	if (rs_env_int("RS_ROUTER_HEARTBEAT_S", 15, 1, 3600, &hb) != RS_OK ||
	    rs_env_int("RS_ROUTER_MAX_FRAME", 1048576, 1024, 64 * 1048576, &maxf) != RS_OK ||
	    rs_env_int("RS_ROUTER_MAX_BAD_FRAMES", 5, 1, 1000, &bad) != RS_OK ||
	    rs_env_int("RS_ROUTER_WORKERS", 4, 1, RS_ROUTER_MAX_WORKERS, &nw) != RS_OK ||
	    rs_env_int("RS_ROUTER_MAX_PREHELLO_BYTES", 16384, 1024, 1048576, &preh) != RS_OK ||
	    rs_env_int("RS_ROUTER_HELLO_TIMEOUT_S", 10, 1, 300, &helloto) != RS_OK ||
	    rs_env_int("RS_ROUTER_MAX_DEVICES_PER_TENANT", 10000, 0, 10000000, &maxdev) != RS_OK ||
	    rs_env_int("RS_ROUTER_PULL_EXPIRES_MS", 30000, 1000, 600000, &pullexp) != RS_OK)
		return RS_EINVAL;
	r->instance = cfg->instance_id;
	/* A connection id names a connection in KV calls records beside the
	 * instance name, which a restarted instance keeps (RS_INSTANCE_ID):
	 * start past every id an earlier run of this instance can have used
	 * (one a microsecond at most), so no old record names a new
	 * connection. */
	r->next_conn_id = (uint64_t)rs_now_ms() * 1000;
	r->listen_addr = cfg->listen_addr;
	r->port = (int)cfg->ops_port;
	r->heartbeat_s = (int)hb;
	r->max_frame = (size_t)maxf;
	r->max_bad_frames = (int)bad;
	r->nworkers = (int)nw;
	r->max_prehello = (size_t)preh;
	r->hello_timeout_s = (int)helloto;
	r->max_devices_tenant = (int)maxdev;
	r->pull_expires_ms = pullexp;
	return RS_OK;
}

rs_status
rs_router_service_configure(rs_service *s)
{
	rs_router *r = s->app;

	if (load_config(r, s->cfg) != RS_OK)
		return RS_EINVAL;
	r->ops = s->ops;   /* our HTTP server answers /healthz /readyz /metrics */
	rs_router_metrics_init(r);
	rs_router_queue_init(&r->inbox);
	for (int i = 0; i < RS_ROUTER_MAX_WORKERS; i++)
		rs_router_queue_init(&r->workq[i]);
	/* The router's NATS work is asynchronous publishes and acks on the
	 * path of every call: write each at once rather than after nats.c's
	 * ~1 ms flusher delay (docs/operations.md; RS_NATS_SEND_ASAP=0 turns it
	 * off for this process too). */
	setenv("RS_NATS_SEND_ASAP", "1", 0);
	return RS_OK;
}

void
rs_router_service_js_options(rs_service *s, jsOptions *jo)
{
	rs_router_calls_jsopts(s->app, jo);
}

/* The required buckets were checked (rs_router_required). */
rs_status
rs_router_service_start(rs_service *s)
{
	rs_router *r = s->app;

	if (js_KeyValue(&r->kv_calls, r->nats.js, "calls") != NATS_OK ||
	    js_KeyValue(&r->kv_presence, r->nats.js, "presence") != NATS_OK ||
	    js_KeyValue(&r->kv_tokens, r->nats.js, "devtokens") != NATS_OK) {
		rs_error("router: cannot open KV buckets: %s", nats_GetLastError(NULL));
		return RS_ERR;
	}
	if (rs_router_workers_start(r) != RS_OK)
		return RS_ERR;
	workers = 1;
	if (rs_router_ws_start(r) != RS_OK || rs_router_calls_start(r) != RS_OK ||
	    rs_router_revoke_start(r) != RS_OK)
		return RS_ERR;
	rs_info("router %s started (heartbeat %ds, max frame %zu bytes, %d workers)", r->instance,
	        r->heartbeat_s, r->max_frame, r->nworkers);
	return RS_OK;
}

void
rs_router_service_run(rs_service *s)
{
	rs_router_ws_run(s->app);
	rs_info("router: shutting down");
}

void
rs_router_service_wake(rs_service *s)
{
	rs_router *r = s->app;

	atomic_store(&r->stopping, 1);
	if (r->ctx != NULL)
		lws_cancel_service(r->ctx);
}

void
rs_router_service_drain(rs_service *s, int64_t grace_ms)
{
	rs_router *r = s->app;
	jsPubOptions po;

	(void)grace_ms;
	atomic_store(&r->stopping, 1);
	rs_router_revoke_stop(r);
	rs_router_calls_stop(r);
	if (r->ctx != NULL)
		rs_router_ws_stop(r);   /* closes connections: releases their calls */
	if (workers)
		rs_router_workers_stop(r);
	if (r->nats.js != NULL) {
		/* Acks of our last asynchronous publishes (their jobs go to the
		 * inbox drained below). */
		jsPubOptions_Init(&po);
		po.MaxWait = 2000;
		js_PublishAsyncComplete(r->nats.js, &po);
	}
	/* What the workers answered last has no service loop left. */
	for (rs_router_job *j = rs_router_queue_take_all(&r->inbox), *next; j != NULL; j = next) {
		next = j->next;
		j->fn(r, j);
	}
	rs_router_calls_free(r);
	rs_router_auth_free(r);
	rs_map_free(&r->devices);
	rs_map_free(&r->tenant_conns);
	rs_map_free(&r->conns_by_id);
	kvStore_Destroy(r->kv_calls);
	kvStore_Destroy(r->kv_presence);
	kvStore_Destroy(r->kv_tokens);
}

int
rs_router_service_stop(rs_service *s)
{
	rs_router *r = s->app;

	rs_consume_free(r->intake);   /* after the connection closed: see rs_consume.h */
	r->intake = NULL;
	rs_router_queue_destroy(&r->inbox);
	for (int i = 0; i < RS_ROUTER_MAX_WORKERS; i++)
		rs_router_queue_destroy(&r->workq[i]);
	return 0;
}
