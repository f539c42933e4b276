/*
 * service.c - the orchestrator's parts in the order they start and stop:
 * the init/start/drain/stop hooks common/rs_service.c calls (main.c is the
 * table naming them). Order matters: the engine drains (its publishes are
 * acked) after every loop feeding it has joined, and NATS closes after.
 */
#include "orch.h"
#include "rs_log.h"

static int engine_ok;   /* rs_orch_engine_init succeeded: drain and destroy it */

rs_status
rs_orch_service_init(rs_service *s)
{
	orch *o = s->app;

	o->cache = rs_orch_runcache_new((size_t)o->cfg.cache_size);
	o->agents = rs_orch_agentcache_new();
	o->pubs = rs_orch_pubmap_new();
	if (o->cache == NULL || o->agents == NULL || o->pubs == NULL || rs_orch_engine_init(o) != RS_OK)
		return RS_ERR;
	engine_ok = 1;
	return RS_OK;
}

rs_status
rs_orch_service_start(rs_service *s)
{
	orch *o = s->app;

	atomic_store(&o->streams_ok, 1);
	if (rs_orch_appender_start(o) != RS_OK)
		return RS_EUNAVAIL;
	if (js_KeyValue(&o->agents_kv, o->nats.js, "agents") != NATS_OK) {
		rs_error("cannot open KV bucket agents");
		return RS_ERR;
	}
	if (rs_orch_gate_start(o) != RS_OK || rs_orch_cmdloop_start(o) != RS_OK || rs_orch_timers_start(o) != RS_OK ||
	    rs_orch_reconcile_start(o) != RS_OK || rs_orch_scheduler_start(o) != RS_OK)
		return RS_ERR;
	rs_info("orchestrator %s started (batch %lld, cache %lld, max in flight %lld)",
	        o->cfg.base.instance_id, (long long)o->cfg.fetch_batch,
	        (long long)o->cfg.cache_size, (long long)o->cfg.max_inflight);
	return RS_OK;
}

/* rs_orch_engine_drain bounds itself by 3/4 of RS_SHUTDOWN_GRACE_MS. */
void
rs_orch_service_drain(rs_service *s, int64_t grace_ms)
{
	orch *o = s->app;

	(void)grace_ms;
	atomic_store(&o->stopping, 1);
	rs_orch_cmdloop_join(o);
	rs_orch_timers_join(o);
	rs_orch_reconcile_join(o);
	rs_orch_scheduler_join(o);
	if (engine_ok)
		rs_orch_engine_drain(o);
	if (o->nats.js != NULL) {
		/* Bounded, as in rs_orch_timers_join. */
		jsPubOptions po;

		jsPubOptions_Init(&po);
		po.MaxWait = o->cfg.base.shutdown_grace_ms / 4 > 500 ? o->cfg.base.shutdown_grace_ms / 4 : 500;
		js_PublishAsyncComplete(o->nats.js, &po);
	}
	rs_orch_timers_free(o);
	rs_orch_cmdloop_free(o);
	kvStore_Destroy(o->agents_kv);
	rs_orch_gate_stop(o);
}

int
rs_orch_service_stop(rs_service *s)
{
	orch *o = s->app;

	rs_orch_runcache_free(o->cache);
	rs_orch_pubmap_free(o->pubs);
	rs_orch_agentcache_free(o->agents);
	if (engine_ok)
		rs_orch_engine_destroy(o);
	return 0;
}
