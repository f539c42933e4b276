/*
 * rs-orchestrator - the only writer of run events.
 *
 * Consumes commands (CMDS, durable `orchestrator`), decides with the pure
 * state machine (common/rs_run.h), appends events to RUNS under optimistic
 * concurrency, publishes timers and tool calls, and forwards due timers
 * (TIMERS, durable `timers`) back as commands. Any number of instances may
 * run against the same streams. main() only wires the parts together.
 *
 * Environment (defaults in brackets):
 *   RS_NATS_URL                  NATS servers, comma-separated [nats://127.0.0.1:4222]
 *   RS_INSTANCE_ID               name in run.started.instance [orchestrator-<pid>]
 *   RS_LISTEN_ADDR               ops endpoints address [127.0.0.1]
 *   RS_ORCHESTRATOR_OPS_PORT     /healthz /readyz /metrics port [9101]
 *   RS_SHUTDOWN_GRACE_MS         SIGTERM: time to finish in-flight work [10000]
 *   RS_LOG_LEVEL                 debug|info|warn|error [info]
 *   RS_ORCH_FETCH_BATCH          commands per fetch [256]
 *   RS_ORCH_CACHE_SIZE           hot runs kept in memory (LRU) [100000]
 *   RS_ORCH_MAX_INFLIGHT         commands fetched but not yet acked [8192]
 *   RS_ORCH_MAX_DELIVER          deliveries before a command is poison [25]; they also
 *                                count instances that died holding it (fetched in a batch)
 *   RS_ORCH_MAX_PENDING_PUBLISH  publishes awaiting their ack [65536]
 *   RS_ORCH_TIMER_HOLD_MS        timers due within this are held in memory [2000]
 *   RS_ORCH_TIMER_LEAD_MS        later timers come back this early (nak delay) [1300];
 *                                must exceed the `timers` consumer's AckWait (1 s)
 *   RS_ORCH_TIMER_BATCH          timers per fetch [256]
 *   RS_ORCH_SWEEP_INTERVAL_MS    reconciliation pass every [30000]; 0 = off
 *   RS_ORCH_SWEEP_LOOKBACK_S     the first pass reads events this far back [3600]
 *   RS_ORCH_SWEEP_QUIET_MS       runs whose last event is this old are checked [5000]
 * Exit: 0 after SIGTERM/SIGINT, 1 on bad configuration or missing streams,
 * 4 when NATS cannot be reached.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"
#include "rs_log.h"
#include "rs_ops.h"
#include "rs_streams.h"

static const char *const required[] = {
	"RUNS", "CMDS", "TIMERS", "TOOLCALLS", "DLQ", "kv:agents", "kv:gates", "kv:schedules", NULL
};

static int
load_cfg(orch_cfg *c)
{
	struct { const char *name; int64_t def, min, max; int64_t *out; } v[] = {
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
		{ "RS_ORCH_TENANT_MAX_RUNNING", 0, 0, 1000000, &c->tenant_max_running },
		{ "RS_ORCH_SCHEDULER_TICK_MS", 1000, 0, 60000, &c->scheduler_tick_ms },
		{ "RS_ORCH_SCHEDULE_GRACE_MS", 60000, 0, 86400000, &c->schedule_grace_ms },
	};

	if (rs_config_load(&c->base, "orchestrator", "RS_ORCHESTRATOR_OPS_PORT", 9101) != RS_OK)
		return -1;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (rs_env_int(v[i].name, v[i].def, v[i].min, v[i].max, v[i].out) != RS_OK)
			return -1;
	if (c->timer_lead_ms >= c->timer_hold_ms) {
		rs_error("RS_ORCH_TIMER_LEAD_MS must be below RS_ORCH_TIMER_HOLD_MS");
		return -1;
	}
	return 0;
}

static int
ready(void *arg, char *why, size_t cap)
{
	orch *o = arg;

	if (!rs_nats_connected(&o->nats)) {
		snprintf(why, cap, "NATS not connected");
		return 0;
	}
	if (!atomic_load(&o->streams_ok)) {
		snprintf(why, cap, "streams missing");
		return 0;
	}
	if (atomic_load(&o->stopping)) {
		snprintf(why, cap, "shutting down");
		return 0;
	}
	return 1;
}

static int
connect_nats(orch *o)
{
	char missing[256] = "";

	if (rs_nats_connect(&o->nats, o->cfg.base.nats_url, o->cfg.base.instance_id, NULL, 10000) != RS_OK)
		return 4;
	if (rs_streams_check(o->nats.js, required, missing, sizeof(missing)) != RS_OK) {
		rs_error("JetStream objects missing: %s (run `runctl streams apply`)",
		         missing[0] ? missing : "cannot check");
		return 1;
	}
	atomic_store(&o->streams_ok, 1);
	if (appender_start(o) != RS_OK)
		return 4;
	if (js_KeyValue(&o->agents_kv, o->nats.js, "agents") != NATS_OK) {
		rs_error("cannot open KV bucket agents");
		return 1;
	}
	if (gate_start(o) != RS_OK)
		return 1;
	return 0;
}

int
main(int argc, char **argv)
{
	static orch o;
	rs_ops ops = { "orchestrator", ready, &o };
	rs_ops_server *srv = NULL;
	sigset_t sigs;
	int sig = 0, rc = 1, engine_ok = 0;

	/* Block the stop signals before any thread exists; main waits. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	json_object_seed(0);
	rs_log_init("orchestrator");
	orch_metrics_init();
	if (load_cfg(&o.cfg) != 0)
		return 1;
	o.cache = runcache_new((size_t)o.cfg.cache_size);
	o.agents = agentcache_new();
	o.pubs = pubmap_new();
	if (o.cache == NULL || o.agents == NULL || o.pubs == NULL)
		goto out;
	if (rs_ops_server_start(&srv, o.cfg.base.listen_addr, (int)o.cfg.base.ops_port, &ops) != RS_OK)
		goto out;
	if (engine_init(&o) != RS_OK)
		goto out;
	engine_ok = 1;
	if ((rc = connect_nats(&o)) != 0)
		goto out;
	rc = 1;
	if (cmdloop_start(&o) != RS_OK || timers_start(&o) != RS_OK ||
	    reconcile_start(&o) != RS_OK || scheduler_start(&o) != RS_OK) {
		atomic_store(&o.stopping, 1);
		goto out;
	}
	rs_info("orchestrator %s started (batch %lld, cache %lld, max in flight %lld)",
	        o.cfg.base.instance_id, (long long)o.cfg.fetch_batch, (long long)o.cfg.cache_size,
	        (long long)o.cfg.max_inflight);
	sigwait(&sigs, &sig);
	rs_info("signal %d: stopping (grace %lld ms)", sig, (long long)o.cfg.base.shutdown_grace_ms);
	atomic_store(&o.stopping, 1);
	rc = 0;
out:
	atomic_store(&o.stopping, 1);
	cmdloop_join(&o);
	timers_join(&o);
	reconcile_join(&o);
	scheduler_join(&o);
	if (engine_ok)
		engine_drain(&o);
	if (o.nats.js != NULL) {
		/* Bounded, as in timers_join. */
		jsPubOptions po;

		jsPubOptions_Init(&po);
		po.MaxWait = o.cfg.base.shutdown_grace_ms / 4 > 500 ? o.cfg.base.shutdown_grace_ms / 4 : 500;
		js_PublishAsyncComplete(o.nats.js, &po);
	}
	timers_free(&o);
	cmdloop_free(&o);
	kvStore_Destroy(o.agents_kv);
	gate_stop(&o);
	rs_nats_close(&o.nats, o.cfg.base.shutdown_grace_ms / 4);
	rs_ops_server_stop(srv);
	runcache_free(o.cache);
	pubmap_free(o.pubs);
	agentcache_free(o.agents);
	if (engine_ok)
		engine_destroy(&o);
	nats_Close();
	if (rc == 0)
		rs_info("stopped");
	return rc;
}
