/*
 * service.c - the orchestrator's parts in the order they start and stop:
 * the init/start/drain/stop hooks common/rs_service.c calls (main.c is the
 * table naming them). Order matters: the engine drains (its publishes are
 * acked) after every loop feeding it has joined, and NATS closes after.
 */
#include "orch.h"
#include "rs_log.h"

static int engine_ok;   /* engine_init succeeded: drain and destroy it */

rs_status
rs_orch_service_init(rs_service *s)
{
	orch *o = s->app;

	o->cache = runcache_new((size_t)o->cfg.cache_size);
	o->agents = agentcache_new();
	o->pubs = pubmap_new();
	if (o->cache == NULL || o->agents == NULL || o->pubs == NULL || engine_init(o) != RS_OK)
		return RS_ERR;
	engine_ok = 1;
	return RS_OK;
}

rs_status
rs_orch_service_start(rs_service *s)
{
	orch *o = s->app;

	atomic_store(&o->streams_ok, 1);
	if (appender_start(o) != RS_OK)
		return RS_EUNAVAIL;
	if (js_KeyValue(&o->agents_kv, o->nats.js, "agents") != NATS_OK) {
		rs_error("cannot open KV bucket agents");
		return RS_ERR;
	}
	if (gate_start(o) != RS_OK || cmdloop_start(o) != RS_OK || timers_start(o) != RS_OK ||
	    reconcile_start(o) != RS_OK || scheduler_start(o) != RS_OK)
		return RS_ERR;
	rs_info("orchestrator %s started (batch %lld, cache %lld, max in flight %lld)",
	        o->cfg.base.instance_id, (long long)o->cfg.fetch_batch,
	        (long long)o->cfg.cache_size, (long long)o->cfg.max_inflight);
	return RS_OK;
}

/* engine_drain bounds itself by 3/4 of RS_SHUTDOWN_GRACE_MS. */
void
rs_orch_service_drain(rs_service *s, int64_t grace_ms)
{
	orch *o = s->app;

	(void)grace_ms;
	atomic_store(&o->stopping, 1);
	cmdloop_join(o);
	timers_join(o);
	reconcile_join(o);
	scheduler_join(o);
	if (engine_ok)
		engine_drain(o);
	if (o->nats.js != NULL) {
		/* Bounded, as in timers_join. */
		jsPubOptions po;

		jsPubOptions_Init(&po);
		po.MaxWait = o->cfg.base.shutdown_grace_ms / 4 > 500 ? o->cfg.base.shutdown_grace_ms / 4 : 500;
		js_PublishAsyncComplete(o->nats.js, &po);
	}
	timers_free(o);
	cmdloop_free(o);
	kvStore_Destroy(o->agents_kv);
	gate_stop(o);
}

int
rs_orch_service_stop(rs_service *s)
{
	orch *o = s->app;

	runcache_free(o->cache);
	pubmap_free(o->pubs);
	agentcache_free(o->agents);
	if (engine_ok)
		engine_destroy(o);
	return 0;
}
