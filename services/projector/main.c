/*
 * main.c - rs-projector: wiring only. Configuration, the leader lock (one
 * active instance, the others stand by), the three projection consumers
 * (runs, agents, presence), lag/readiness, ops endpoints, signals.
 * `rs-projector --rebuild` rebuilds the run tables instead (rebuild.c).
 *
 * Environment (besides the common RS_* of rs_config.h):
 *   RS_PROJECTOR_OPS_PORT       ops endpoints (default 9102)
 *   RS_PROJECTOR_BATCH          max messages per transaction (default 20000)
 *   RS_PROJECTOR_MAX_LAG_S      /readyz fails beyond this lag (default 30)
 *   RS_PROJECTOR_PRESENCE_TTL_S devices offline after this silence (default 45)
 */
#include "service.h"
#include "rs_config.h"
#include "rs_log.h"
#include "rs_ops.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct {
	rs_config base;
	int64_t batch, max_lag_s, presence_ttl_s;
} proj_cfg;

static int
load_cfg(proj_cfg *c)
{
	if (rs_config_load(&c->base, "projector", "RS_PROJECTOR_OPS_PORT", 9102) != RS_OK ||
	    rs_env_int("RS_PROJECTOR_BATCH", 20000, 1, 100000, &c->batch) != RS_OK ||
	    rs_env_int("RS_PROJECTOR_MAX_LAG_S", 30, 1, 86400, &c->max_lag_s) != RS_OK ||
	    rs_env_int("RS_PROJECTOR_PRESENCE_TTL_S", 45, 0, 86400, &c->presence_ttl_s) != RS_OK)
		return -1;
	return 0;
}

static int
rebuild(const proj_cfg *c)
{
	char report[512];
	rs_status st = rs_projector_rebuild(c->base.nats_url, c->base.pg_url, report, sizeof(report));

	if (st != RS_OK) {
		fprintf(stderr, "rebuild failed: %s\n", rs_status_str(st));
		return 1;
	}
	printf("%s\n", report);
	return 0;
}

/* /readyz: not ready from SIGTERM on (a balancer or the chaos run sees the
 * drain), else the lag check's answer. */
static atomic_int stopping;

static int
ready(void *arg, char *why, size_t cap)
{
	if (atomic_load(&stopping)) {
		snprintf(why, cap, "shutting down");
		return 0;
	}
	return rs_proj_lag_ready(arg, why, cap);
}

int
main(int argc, char **argv)
{
	static proj_cfg cfg;
	static rs_nats nats;
	static atomic_int stop;
	static rs_proj_consumer pcs[3];
	rs_proj_lag *lag = NULL;
	rs_proj_leader *leader = NULL;
	rs_ops ops = { "projector", ready, NULL };
	rs_ops_server *srv = NULL;
	sigset_t sigs;
	int sig = 0, rc = 1, started = 0;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	json_object_seed(0);
	rs_log_init("projector");
	if (load_cfg(&cfg) != 0)
		return 2;
	if (argc > 1 && strcmp(argv[1], "--rebuild") == 0) {
		rc = rebuild(&cfg);
		nats_Close();
		return rc;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: rs-projector [--rebuild]\n");
		return 2;
	}
	if (rs_nats_connect(&nats, cfg.base.nats_url, cfg.base.instance_id, NULL, 10000) != RS_OK)
		goto out;
	pcs[0] = (rs_proj_consumer){ .name = "runs", .labels = "projection=\"runs\"", .stream = "RUNS", .filter = "runs.>",
		.durable = "projector-runs", .dlq_source = "projector.runs",
		.apply = rs_proj_runs_apply, .prepare_runs = 1, .decode_runs = 1, .lock_key = RS_PROJ_LOCK_RUNS };
	pcs[1] = (rs_proj_consumer){ .name = "agents", .labels = "projection=\"agents\"", .stream = "KV_agents",
		.filter = "$KV.agents.>", .durable = "projector-agents",
		.dlq_source = "projector.agents", .apply = rs_proj_agents_apply };
	pcs[2] = (rs_proj_consumer){ .name = "presence", .labels = "projection=\"presence\"", .stream = "KV_presence",
		.filter = "$KV.presence.>", .durable = "projector-presence",
		.dlq_source = "projector.presence", .apply = rs_proj_presence_apply,
		.presence_ttl_s = cfg.presence_ttl_s };
	/* Consumers wait for this lock before they touch JetStream. */
	if (rs_proj_leader_start(&leader, cfg.base.pg_url, RS_PROJ_LOCK_LEADER) != RS_OK)
		goto out;
	for (int i = 0; i < 3; i++) {
		pcs[i].leader = leader;
		pcs[i].batch = (int)cfg.batch;
		pcs[i].pg_url = cfg.base.pg_url;
		pcs[i].nats = &nats;
		pcs[i].stop = &stop;
	}
	if (rs_proj_lag_start(&lag, &nats, pcs, 3, cfg.max_lag_s, leader) != RS_OK)
		goto out;
	ops.arg = lag;
	if (rs_ops_server_start(&srv, cfg.base.listen_addr, (int)cfg.base.ops_port, &ops) != RS_OK)
		goto out;
	for (; started < 3; started++)
		if (rs_proj_consumer_start(&pcs[started]) != RS_OK)
			goto out;
	rs_info("projector %s started (batch %lld, max lag %lld s)", cfg.base.instance_id,
	        (long long)cfg.batch, (long long)cfg.max_lag_s);
	sigwait(&sigs, &sig);
	atomic_store(&stopping, 1);
	rs_info("signal %d: finishing the current batches", sig);
	rc = 0;
out:
	/* Each consumer commits and acks the batch it holds, then returns. */
	atomic_store(&stop, 1);
	for (int i = 0; i < started; i++)
		rs_proj_consumer_join(&pcs[i]);
	rs_ops_server_stop(srv);
	rs_proj_lag_stop(lag);
	/* Last: the lock goes only after every batch is committed. */
	rs_proj_leader_stop(leader);
	rs_nats_close(&nats, cfg.base.shutdown_grace_ms / 4);
	nats_Close();
	if (rc == 0)
		rs_info("stopped");
	return rc;
}
