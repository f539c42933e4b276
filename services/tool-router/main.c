/*
 * main.c - rs-tool-router: the table of what makes this service different.
 * Its settings, KV handles, workers, the call intake and the lws service
 * loop are service.c (what each part does: router.h); the lifecycle
 * (signals, NATS, the streams check, readiness, drain, exit codes) is
 * common/rs_service.c. Settings: docs/operations.md, "Tool-router".
 */
#include "router.h"

static rs_router router;
static rs_config cfg;

static const rs_service_def def = {
	.name = "tool-router", .port_var = "RS_ROUTER_PORT", .port_def = 8081, .own_http = 1,
	.required = rs_router_required, .app = &router, .cfg = &cfg, .nats = &router.nats,
	.configure = rs_router_service_configure, .js_options = rs_router_service_js_options,
	.start = rs_router_service_start, .ready = rs_router_ready,
	.run = rs_router_service_run, .wake = rs_router_service_wake,
	.drain = rs_router_service_drain, .stop = rs_router_service_stop,
};

int
main(void)
{
	return rs_service_main(&def);
}
