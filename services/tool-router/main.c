/*
 * main.c - rs-tool-router: wiring only. Configuration, NATS, KV handles,
 * workers, the call intake (intake.c) and watch and the lws service loop; then
 * an orderly shutdown on SIGTERM/SIGINT. What each part does: router.h.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_config.h"
#include "rs_log.h"
#include "rs_streams.h"

static rs_router router;

static void
on_signal(int sig)
{
	(void)sig;
	atomic_store(&router.stopping, 1);
	if (router.ctx != NULL)
		lws_cancel_service(router.ctx);
}

static rs_status
load_config(rs_router *r, rs_config *cfg)
{
	int64_t hb, maxf, bad, nw, preh, helloto, maxdev, pullexp;

	if (rs_config_load(cfg, "tool-router", "RS_ROUTER_PORT", 8081) != RS_OK ||
	    rs_env_int("RS_ROUTER_HEARTBEAT_S", 15, 1, 3600, &hb) != RS_OK ||
	    rs_env_int("RS_ROUTER_MAX_FRAME", 1048576, 1024, 64 * 1048576, &maxf) != RS_OK ||
	    rs_env_int("RS_ROUTER_MAX_BAD_FRAMES", 5, 1, 1000, &bad) != RS_OK ||
	    rs_env_int("RS_ROUTER_WORKERS", 4, 1, RS_ROUTER_MAX_WORKERS, &nw) != RS_OK ||
	    rs_env_int("RS_ROUTER_MAX_PREHELLO_BYTES", 16384, 1024, 1048576, &preh) != RS_OK ||
	    rs_env_int("RS_ROUTER_HELLO_TIMEOUT_S", 10, 1, 300, &helloto) != RS_OK ||
	    rs_env_int("RS_ROUTER_MAX_DEVICES_PER_TENANT", 10000, 0, 10000000, &maxdev) != RS_OK ||
	    rs_env_int("RS_ROUTER_PULL_EXPIRES_MS", 30000, 1000, 600000, &pullexp) != RS_OK)
		return RS_EINVAL;
	r->instance = cfg->instance_id;
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
	r->ops.service = "tool-router";
	r->ops.ready = rs_router_ready;
	r->ops.arg = r;
	return RS_OK;
}

static rs_status
open_kv(rs_router *r)
{
	static const char *const need[] = { "TOOLCALLS", "CMDS", "kv:calls", "kv:presence",
	                                    "kv:devtokens", NULL };
	char missing[256] = "";

	if (rs_streams_check(r->nats.js, need, missing, sizeof(missing)) != RS_OK) {
		rs_error("router: missing JetStream objects: %s (run `runctl streams apply`)", missing);
		return RS_ENOTFOUND;
	}
	if (js_KeyValue(&r->kv_calls, r->nats.js, "calls") != NATS_OK ||
	    js_KeyValue(&r->kv_presence, r->nats.js, "presence") != NATS_OK ||
	    js_KeyValue(&r->kv_tokens, r->nats.js, "devtokens") != NATS_OK) {
		rs_error("router: cannot open KV buckets: %s", nats_GetLastError(NULL));
		return RS_EUNAVAIL;
	}
	return RS_OK;
}

int
main(void)
{
	rs_router *r = &router;
	rs_config cfg;
	jsOptions jo;
	struct sigaction sa;
	int rc = 1, workers = 0;

	rs_log_init("tool-router");
	json_object_seed(0);
	if (load_config(r, &cfg) != RS_OK)
		return 2;
	rs_router_metrics_init(r);
	rs_router_queue_init(&r->inbox);
	for (int i = 0; i < RS_ROUTER_MAX_WORKERS; i++)
		rs_router_queue_init(&r->workq[i]);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The router's NATS work is asynchronous publishes and acks on the
	 * path of every call: write each at once rather than after nats.c's
	 * ~1 ms flusher delay (docs/operations.md; RS_NATS_SEND_ASAP=0 turns it
	 * off for this process too). */
	setenv("RS_NATS_SEND_ASAP", "1", 0);
	jsOptions_Init(&jo);
	rs_router_calls_jsopts(r, &jo);
	if (rs_nats_connect(&r->nats, cfg.nats_url, r->instance, &jo, 10000) != RS_OK)
		goto cleanup;
	if (open_kv(r) != RS_OK)
		goto cleanup;
	if (rs_router_workers_start(r) != RS_OK)
		goto cleanup;
	workers = 1;
	if (rs_router_ws_start(r) != RS_OK)
		goto cleanup;
	if (rs_router_calls_start(r) != RS_OK)
		goto cleanup;
	if (rs_router_revoke_start(r) != RS_OK)
		goto cleanup;
	rs_info("router %s started (heartbeat %ds, max frame %zu bytes, %d workers)", r->instance,
	        r->heartbeat_s, r->max_frame, r->nworkers);
	rs_router_ws_run(r);
	rc = 0;
	rs_info("router: shutting down");
cleanup:
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
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 2000;
		js_PublishAsyncComplete(r->nats.js, &po);
	}
	{
		/* What the workers answered last has no service loop left. */
		rs_router_job *j = rs_router_queue_take_all(&r->inbox), *next;
		for (; j != NULL; j = next) {
			next = j->next;
			j->fn(r, j);
		}
	}
	rs_router_calls_free(r);
	rs_router_auth_free(r);
	rs_map_free(&r->devices);
	rs_map_free(&r->tenant_conns);
	rs_map_free(&r->conns_by_id);
	kvStore_Destroy(r->kv_calls);
	kvStore_Destroy(r->kv_presence);
	kvStore_Destroy(r->kv_tokens);
	rs_nats_close(&r->nats, cfg.shutdown_grace_ms);
	rs_router_intake_free(r);
	rs_router_queue_destroy(&r->inbox);
	for (int i = 0; i < RS_ROUTER_MAX_WORKERS; i++)
		rs_router_queue_destroy(&r->workq[i]);
	nats_Close();
	return rc;
}
