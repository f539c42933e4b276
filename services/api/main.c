/*
 * main.c - rs-api: the table of what makes this service different. Its
 * settings, KV handles, workers, live subscription and HTTP server are
 * service.c; the lifecycle (signals, NATS, the streams check, readiness,
 * drain, exit codes) is common/rs_service.c. The HTTP contract and the
 * design: docs/api.md; settings: docs/operations.md, "API".
 */
#include "api.h"

static rs_api app;
static rs_config cfg;

static const rs_service_def def = {
	.name = "api", .port_var = "RS_API_PORT", .port_def = 8080, .own_http = 1,
	.required = rs_api_required, .app = &app, .cfg = &cfg, .nats = &app.nats,
	.configure = rs_api_service_configure, .metrics = rs_api_metrics_init,
	.init = rs_api_service_init, .js_options = rs_api_service_js_options,
	.start = rs_api_service_start, .run = rs_api_service_run, .wake = rs_api_service_wake,
	.drain = rs_api_service_drain, .stop = rs_api_service_stop,
};

int
main(void)
{
	return rs_service_main(&def);
}
