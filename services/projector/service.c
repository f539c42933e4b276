/*
 * service.c - the projector's parts in the order they start and stop: the
 * start/ready/drain hooks common/rs_service.c calls (main.c is the table
 * naming them). The leader lock first (consumers wait for it before they
 * touch JetStream), then the lag monitor, then one consumer per projection.
 */
#include "service.h"
#include "rs_log.h"

static struct {
	atomic_int stop;
	rs_proj_consumer pcs[3];
	int started;
	rs_proj_lag *lag;
	rs_proj_leader *leader;
} P = { .pcs = {
	{ .name = "runs", .labels = "projection=\"runs\"", .stream = "RUNS", .filter = "runs.>",
	  .durable = "projector-runs", .dlq_source = "projector.runs", .apply = rs_proj_runs_apply,
	  .prepare_runs = 1, .decode_runs = 1, .lock_key = RS_PROJ_LOCK_RUNS },
	{ .name = "agents", .labels = "projection=\"agents\"", .stream = "KV_agents",
	  .filter = "$KV.agents.>", .durable = "projector-agents",
	  .dlq_source = "projector.agents", .apply = rs_proj_agents_apply },
	{ .name = "presence", .labels = "projection=\"presence\"", .stream = "KV_presence",
	  .filter = "$KV.presence.>", .durable = "projector-presence",
	  .dlq_source = "projector.presence", .apply = rs_proj_presence_apply } } };

rs_status
rs_proj_service_start(rs_service *s)
{
	const rs_proj_service *ps = s->app;

	/* Consumers wait for this lock before they touch JetStream. */
	if (rs_proj_leader_start(&P.leader, ps->base.pg_url, RS_PROJ_LOCK_LEADER) != RS_OK)
		return RS_ERR;
	for (int i = 0; i < 3; i++) {
		P.pcs[i].leader = P.leader;
		P.pcs[i].batch = (int)ps->batch;
		P.pcs[i].pg_url = ps->base.pg_url;
		P.pcs[i].nats = s->nats;
		P.pcs[i].stop = &P.stop;
	}
	P.pcs[2].presence_ttl_s = ps->presence_ttl_s;
	if (rs_proj_lag_start(&P.lag, s->nats, P.pcs, 3, ps->max_lag_s, P.leader) != RS_OK)
		return RS_ERR;
	for (; P.started < 3; P.started++)
		if (rs_proj_consumer_start(&P.pcs[P.started]) != RS_OK)
			return RS_ERR;
	rs_info("projector %s started (batch %lld, max lag %lld s)", ps->base.instance_id,
	        (long long)ps->batch, (long long)ps->max_lag_s);
	return RS_OK;
}

int
rs_proj_service_ready(void *arg, char *why, size_t cap)
{
	(void)arg;
	return rs_proj_lag_ready(P.lag, why, cap);
}

/* Each consumer commits and acks the batch it holds, then returns; the lock
 * goes last, after every batch is committed. */
void
rs_proj_service_drain(rs_service *s, int64_t grace_ms)
{
	(void)s;
	(void)grace_ms;
	atomic_store(&P.stop, 1);
	for (int i = 0; i < P.started; i++)
		rs_proj_consumer_join(&P.pcs[i]);
	rs_proj_lag_stop(P.lag);
	rs_proj_leader_stop(P.leader);
}
