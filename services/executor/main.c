/*
 * rs-executor - performs the server-side effects of runs: http steps and
 * the model turns of llm steps. Reads requests from RUNS (durable
 * `executor`, headers only), answers with commands on CMDS; never writes
 * run events. Any number of instances may share the consumer. Agents name
 * tenant secrets, never this process's environment.
 *
 * main.c is only the table of what makes this service different; the
 * lifecycle (signals, ops endpoints, NATS, readiness, drain, exit codes) is
 * common/rs_service.c, the order of the parts service.c. Settings and their
 * defaults: docs/operations.md, "Executor" (http_proxy, https_proxy and
 * no_proxy are honoured by libcurl).
 */
#include "executor.h"

static executor x;

static rs_status
configure(rs_service *s)
{
	exec_cfg *c = &x.cfg;
	int64_t line, msg, calls;
	const rs_env_spec v[] = {
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

	(void)s;
	if (rs_env_ints(v, sizeof(v) / sizeof(v[0])) != RS_OK)
		return RS_EINVAL;
	c->sse.max_line = (size_t)line;
	c->sse.max_message = (size_t)msg;
	c->sse.max_tool_calls = (size_t)calls;
	c->http.ca_file = rs_env_str("RS_EXECUTOR_CA_FILE", NULL);
	c->http.egress_allow = rs_env_str("RS_EXECUTOR_EGRESS_ALLOW", NULL);
	return RS_OK;
}

static const char *const required[] = { "RUNS", "CMDS", NULL };

static const rs_service_def def = {
	.name = "executor", .port_var = "RS_EXECUTOR_OPS_PORT", .port_def = 9103,
	.required = required, .app = &x, .cfg = &x.cfg.base, .nats = &x.nats,
	.configure = configure, .metrics = rs_exec_metrics_init, .init = rs_exec_service_init,
	.start = rs_exec_service_start, .ready = rs_exec_ready, .drain = rs_exec_service_drain,
	.stop = rs_exec_service_stop,
};

int
main(void)
{
	return rs_service_main(&def);
}
