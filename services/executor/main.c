/*
 * rs-executor - performs the server-side effects of runs: http steps and
 * the model turns of llm steps. Reads requests from RUNS (durable
 * `executor`, headers only), answers with commands on CMDS; never writes
 * run events. Any number of instances may share the consumer. main() only
 * wires the parts together (executor.h).
 *
 * Environment (defaults in brackets):
 *   RS_NATS_URL                   NATS servers, comma-separated [nats://127.0.0.1:4222]
 *   RS_INSTANCE_ID                client name [executor-<pid>]
 *   RS_LISTEN_ADDR                ops endpoints address [127.0.0.1]
 *   RS_EXECUTOR_OPS_PORT          /healthz /readyz /metrics port [9103]
 *   RS_SHUTDOWN_GRACE_MS          SIGTERM: time for effects in flight [10000]
 *   RS_LOG_LEVEL                  debug|info|warn|error [info]
 *   RS_EXECUTOR_WORKERS           effects carried out at once [16]
 *   RS_EXECUTOR_CHUNK_MS          llm.chunk batching period [50]
 *   RS_EXECUTOR_CHUNK_BYTES       ... or this much text, whichever first [1024]
 *   RS_EXECUTOR_MAX_STREAM_BYTES  cap of one model response stream [8388608]
 *   RS_EXECUTOR_SSE_MAX_LINE      longest line of a model stream [262144]
 *   RS_EXECUTOR_SSE_MAX_MESSAGE   text + tool calls of one model message [262144]
 *   RS_EXECUTOR_SSE_MAX_TOOL_CALLS tool calls in one model message [64]
 *   RS_EXECUTOR_CA_FILE           extra trusted CA certificates (PEM) [none]
 *   RS_EXECUTOR_EGRESS_ALLOW      CIDRs / host names exempt from the egress policy [none]
 *   RS_EXECUTOR_CONNECT_TIMEOUT_MS connect (TCP + TLS) timeout, within the step's [10000]
 *   RS_EXECUTOR_MAX_CONNECTIONS   idle connections kept for reuse [256]
 *   http_proxy, https_proxy, no_proxy  honoured (libcurl)
 *   RS_SECRETS_KEY                64 hex chars: opens tenant secrets (KV secrets) [none:
 *                                 steps naming secrets fail with secret_missing]
 *   RS_EXECUTOR_SECRET_TTL_MS     how long a decrypted secret is reused [30000]
 * Agents name tenant secrets, never this process's environment.
 * Exit: 0 after SIGTERM/SIGINT, 1 on bad configuration or missing streams,
 * 4 when NATS cannot be reached.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "rs_log.h"
#include "rs_ops.h"
#include "rs_streams.h"

exec_metrics em;

static const char *const required[] = { "RUNS", "CMDS", NULL };

static int
load_cfg(exec_cfg *c)
{
	int64_t line, msg, calls;
	struct { const char *name; int64_t def, min, max; int64_t *out; } v[] = {
		{ "RS_EXECUTOR_WORKERS", 16, 1, 1024, &c->workers },
		{ "RS_EXECUTOR_CHUNK_MS", 50, 1, 10000, &c->chunk_ms },
		{ "RS_EXECUTOR_CHUNK_BYTES", 1024, 1, 512 * 1024, &c->chunk_bytes },
		{ "RS_EXECUTOR_MAX_STREAM_BYTES", 8388608, 1024, 1073741824, &c->max_sse_bytes },
		/* The message becomes an llm.message event and an effect.result:
		 * well under NATS' 1 MiB default max payload. */
		{ "RS_EXECUTOR_SSE_MAX_LINE", 262144, 1024, 4194304, &line },
		{ "RS_EXECUTOR_SSE_MAX_MESSAGE", 262144, 1024, 786432, &msg },
		{ "RS_EXECUTOR_SSE_MAX_TOOL_CALLS", 64, 1, 1024, &calls },
		{ "RS_EXECUTOR_CONNECT_TIMEOUT_MS", 10000, 100, 600000, &c->http.connect_timeout_ms },
		{ "RS_EXECUTOR_MAX_CONNECTIONS", 256, 1, 100000, &c->http.max_connections },
		{ "RS_EXECUTOR_SECRET_TTL_MS", 30000, 0, 3600000, &c->secret_ttl_ms },
	};

	if (rs_config_load(&c->base, "executor", "RS_EXECUTOR_OPS_PORT", 9103) != RS_OK)
		return -1;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (rs_env_int(v[i].name, v[i].def, v[i].min, v[i].max, v[i].out) != RS_OK)
			return -1;
	c->sse.max_line = (size_t)line;
	c->sse.max_message = (size_t)msg;
	c->sse.max_tool_calls = (size_t)calls;
	c->http.ca_file = rs_env_str("RS_EXECUTOR_CA_FILE", NULL);
	c->http.egress_allow = rs_env_str("RS_EXECUTOR_EGRESS_ALLOW", NULL);
	return 0;
}

static void
metrics_init(void)
{
	static const char *kind[2] = { "kind=\"http\"", "kind=\"llm\"" };

	for (int i = 0; i < 2; i++) {
		em.effects_ok[i] = rs_counter("rs_exec_effects_ok_total",
		                              "Effects answered with a result, by kind.", kind[i]);
		em.effects_err[i] = rs_counter("rs_exec_effects_error_total",
		                               "Effects answered with an error, by kind.", kind[i]);
	}
	em.effect_duration = rs_histogram("rs_exec_effect_duration_seconds",
	                                  "Request picked up to answer published.", NULL);
	em.chunks = rs_counter("rs_exec_llm_chunks_total", "llm.chunk commands sent.", NULL);
	em.skipped = rs_counter("rs_exec_skipped_total",
	                        "Requests of runs already finished, acked unperformed.", NULL);
	em.busy = rs_gauge("rs_exec_busy_workers", "Workers carrying out an effect.", NULL);
	em.events_seen = rs_counter("rs_exec_events_seen_total", "Run event headers seen.", NULL);
	em.redeliveries = rs_counter("rs_exec_redeliveries_total",
	                             "Requests delivered more than once (re-issued effects).", NULL);
}

static int
ready(void *arg, char *why, size_t cap)
{
	executor *x = arg;

	if (!rs_nats_connected(&x->nats)) {
		snprintf(why, cap, "NATS not connected");
		return 0;
	}
	if (!atomic_load(&x->bound)) {
		snprintf(why, cap, "consumer RUNS/executor not bound");
		return 0;
	}
	if (atomic_load(&x->stopping)) {
		snprintf(why, cap, "shutting down");
		return 0;
	}
	return 1;
}

static int
connect_nats(executor *x)
{
	char missing[256] = "";

	if (rs_nats_connect(&x->nats, x->cfg.base.nats_url, x->cfg.base.instance_id, NULL,
	                    10000) != RS_OK)
		return 4;
	if (rs_streams_check(x->nats.js, required, missing, sizeof(missing)) != RS_OK) {
		rs_error("JetStream objects missing: %s (run `runctl streams apply`)",
		         missing[0] ? missing : "cannot check");
		return 1;
	}
	/* Optional: only needed for tool schemas an llm step leaves out. */
	if (js_KeyValue(&x->presence, x->nats.js, "presence") != NATS_OK) {
		rs_warn("KV presence not found: llm tools without input_schema get {\"type\":\"object\"}");
		x->presence = NULL;
	}
	if ((x->secrets = secrets_new(x->nats.js, x->cfg.secret_ttl_ms)) == NULL)
		return 1;
	return 0;
}

int
main(int argc, char **argv)
{
	static executor x;
	rs_ops ops = { "executor", ready, &x };
	rs_ops_server *srv = NULL;
	sigset_t sigs;
	int sig = 0, rc = 1, idle;
	char why[300];

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	json_object_seed(0);
	rs_log_init("executor");
	metrics_init();
	if (load_cfg(&x.cfg) != 0)
		return 1;
	if (http_global_init(&x.cfg.http, why, sizeof(why)) != RS_OK) {
		rs_error("%s", why);
		return 1;
	}
	if (rs_ops_server_start(&srv, x.cfg.base.listen_addr, (int)x.cfg.base.ops_port, &ops) != RS_OK)
		goto out;
	if ((rc = connect_nats(&x)) != 0)
		goto out;
	rc = 1;
	if ((x.pool = pool_new(&x, (int)x.cfg.workers)) == NULL || consumer_start(&x) != RS_OK)
		goto out;
	rs_info("executor %s started (%lld workers, chunks every %lld ms or %lld bytes, %s, "
	        "egress allow-list: %zu entries)", x.cfg.base.instance_id,
	        (long long)x.cfg.workers, (long long)x.cfg.chunk_ms, (long long)x.cfg.chunk_bytes,
	        curl_version(), http_egress_rules());
	sigwait(&sigs, &sig);
	rs_info("signal %d: stopping (grace %lld ms)", sig, (long long)x.cfg.base.shutdown_grace_ms);
	rc = 0;
out:
	atomic_store(&x.stopping, 1);
	consumer_join(&x);
	/* Effects in flight get the grace period to answer; what is left is
	 * not acked and goes to another instance. */
	pool_stop(x.pool, x.cfg.base.shutdown_grace_ms * 3 / 4);
	consumer_free(&x);
	kvStore_Destroy(x.presence);
	secrets_free(x.secrets);
	rs_nats_close(&x.nats, x.cfg.base.shutdown_grace_ms / 4);
	idle = x.pool == NULL || pool_stopped(x.pool);
	pool_free(x.pool);
	rs_ops_server_stop(srv);
	if (idle)   /* no worker is inside curl any more */
		http_global_cleanup();
	if (rc == 0)
		rs_info("stopped");
	return rc;
}
