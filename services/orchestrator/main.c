/*
 * rs-orchestrator - the only writer of run events. Consumes commands (CMDS,
 * durable `orchestrator`), decides with the pure state machine
 * (common/rs_run.h), appends events to RUNS under optimistic concurrency,
 * publishes timers and tool calls, and forwards due timers (TIMERS, durable
 * `timers`) back as commands. Any number of instances may run.
 *
 * main.c is only the table of what makes this service different; the
 * lifecycle (signals, ops endpoints, NATS, readiness, drain, exit codes) is
 * common/rs_service.c, the order of the parts service.c. Settings and their
 * defaults: docs/operations.md, "Orchestrator".
 */
#include "orch.h"
#include "rs_log.h"

static orch o;

static rs_status
configure(rs_service *s)
{
	orch_cfg *c = &o.cfg;
	const rs_env_spec v[] = {
		{ "RS_ORCH_FETCH_BATCH", 256, 1, 4096, &c->fetch_batch },
		{ "RS_ORCH_CACHE_SIZE", 100000, 16, 100000000, &c->cache_size },
		{ "RS_ORCH_MAX_INFLIGHT", 8192, 1, 1000000, &c->max_inflight },
		{ "RS_ORCH_MAX_DELIVER", 25, 1, 1000, &c->max_deliver },
		{ "RS_ORCH_MAX_PENDING_PUBLISH", 65536, 64, 10000000, &c->max_pending_pub },
		{ "RS_ORCH_TIMER_HOLD_MS", 2000, 10, 20000, &c->timer_hold_ms },
		{ "RS_ORCH_TIMER_LEAD_MS", 1300, 0, 10000, &c->timer_lead_ms },
		{ "RS_ORCH_TIMER_BATCH", 256, 1, 4096, &c->timer_batch },
		{ "RS_ORCH_SWEEP_INTERVAL_MS", 30000, 0, 86400000, &c->sweep_interval_ms },
		{ "RS_ORCH_SWEEP_LOOKBACK_S", 3600, 0, 30 * 86400, &c->sweep_lookback_s },
		{ "RS_ORCH_SWEEP_QUIET_MS", 5000, 0, 3600000, &c->sweep_quiet_ms },
		{ "RS_ORCH_LATE_MS", 30000, 0, 86400000, &c->late_ms },
		{ "RS_ORCH_TENANT_MAX_RUNNING", 0, 0, 1000000, &c->tenant_max_running },
		{ "RS_ORCH_SCHEDULER_TICK_MS", 1000, 0, 60000, &c->scheduler_tick_ms },
		{ "RS_ORCH_SCHEDULE_GRACE_MS", 60000, 0, 86400000, &c->schedule_grace_ms },
	};

	(void)s;
	if (rs_env_ints(v, sizeof(v) / sizeof(v[0])) != RS_OK)
		return RS_EINVAL;
	if (c->timer_lead_ms >= c->timer_hold_ms) {
		rs_error("RS_ORCH_TIMER_LEAD_MS must be below RS_ORCH_TIMER_HOLD_MS");
		return RS_EINVAL;
	}
	return RS_OK;
}

static const char *const required[] = {
	"RUNS", "CMDS", "TIMERS", "TOOLCALLS", "DLQ", "kv:agents", "kv:gates", "kv:schedules", NULL
};

static const rs_service_def def = {
	.name = "orchestrator", .port_var = "RS_ORCHESTRATOR_OPS_PORT", .port_def = 9101,
	.required = required, .app = &o, .cfg = &o.cfg.base, .nats = &o.nats,
	.configure = configure, .metrics = rs_orch_metrics_init, .init = rs_orch_service_init,
	.start = rs_orch_service_start, .drain = rs_orch_service_drain,
	.stop = rs_orch_service_stop,
};

int
main(void)
{
	return rs_service_main(&def);
}
