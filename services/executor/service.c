/*
 * service.c - the executor's parts in the order they start and stop: the
 * hooks common/rs_service.c calls (main.c is the table naming them), its
 * metrics and its readiness (the RUNS consumer bound).
 */
#include <curl/curl.h>
#include <stdio.h>

#include "executor.h"
#include "rs_log.h"

exec_metrics rs_exec_em;

void
rs_exec_metrics_init(void)
{
	static const char *kind[2] = { "kind=\"http\"", "kind=\"llm\"" };

	for (int i = 0; i < 2; i++) {
		rs_exec_em.effects_ok[i] = rs_counter("rs_exec_effects_ok_total",
		                              "Effects answered with a result, by kind.", kind[i]);
		rs_exec_em.effects_err[i] = rs_counter("rs_exec_effects_error_total",
		                               "Effects answered with an error, by kind.", kind[i]);
	}
	rs_exec_em.effect_duration = rs_histogram("rs_exec_effect_duration_seconds",
	                                  "Request picked up to answer published.", NULL);
	rs_exec_em.chunks = rs_counter("rs_exec_llm_chunks_total", "llm.chunk commands sent.", NULL);
	rs_exec_em.skipped = rs_counter("rs_exec_skipped_total",
	                        "Requests of runs already finished, acked unperformed.", NULL);
	rs_exec_em.busy = rs_gauge("rs_exec_busy_workers", "Workers carrying out an effect.", NULL);
	rs_exec_em.events_seen = rs_counter("rs_exec_events_seen_total", "Run event headers seen.", NULL);
	rs_exec_em.redeliveries = rs_counter("rs_exec_redeliveries_total",
	                             "Requests delivered more than once (re-issued effects).", NULL);
}

int
rs_exec_ready(void *arg, char *why, size_t cap)
{
	executor *x = arg;

	if (!atomic_load(&x->bound)) {
		snprintf(why, cap, "consumer RUNS/executor not bound");
		return 0;
	}
	return 1;
}

rs_status
rs_exec_service_init(rs_service *s)
{
	executor *x = s->app;
	char why[300];

	if (rs_exec_http_global_init(&x->cfg.http, why, sizeof(why)) != RS_OK) {
		rs_error("%s", why);
		return RS_EINVAL;
	}
	return RS_OK;
}

rs_status
rs_exec_service_start(rs_service *s)
{
	executor *x = s->app;

	/* Optional: only needed for tool schemas an llm step leaves out. */
	if (js_KeyValue(&x->presence, x->nats.js, "presence") != NATS_OK) {
		rs_warn("KV presence not found: llm tools without input_schema get {\"type\":\"object\"}");
		x->presence = NULL;
	}
	if ((x->secrets = rs_exec_secrets_new(x->nats.js, x->cfg.secret_ttl_ms)) == NULL)
		return RS_ERR;
	if ((x->pool = rs_exec_pool_new(x, (int)x->cfg.workers)) == NULL || rs_exec_consumer_start(x) != RS_OK)
		return RS_ERR;
	rs_info("executor %s started (%lld workers, chunks every %lld ms or %lld bytes, %s, "
	        "egress allow-list: %zu entries)", x->cfg.base.instance_id,
	        (long long)x->cfg.workers, (long long)x->cfg.chunk_ms,
	        (long long)x->cfg.chunk_bytes, curl_version(), rs_exec_http_egress_rules());
	return RS_OK;
}

/* Effects in flight get 3/4 of the grace period to answer; what is left is
 * not acked and goes to another instance. */
void
rs_exec_service_drain(rs_service *s, int64_t grace_ms)
{
	executor *x = s->app;

	atomic_store(&x->stopping, 1);
	rs_exec_consumer_join(x);
	rs_exec_pool_stop(x->pool, grace_ms * 3 / 4);
	rs_exec_consumer_free(x);
	kvStore_Destroy(x->presence);
	rs_exec_secrets_free(x->secrets);
}

/* Nonzero while a worker may still be inside curl (or NATS). */
int
rs_exec_service_stop(rs_service *s)
{
	executor *x = s->app;
	int idle = x->pool == NULL || rs_exec_pool_stopped(x->pool);

	rs_exec_pool_free(x->pool);
	if (idle)
		rs_exec_http_global_cleanup();
	return !idle;
}
