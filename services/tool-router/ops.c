/*
 * ops.c - the router's readiness and metrics. /healthz /readyz /metrics
 * are answered on the device port by ws.c through rs_ops_lws_respond.
 */
#include <stdio.h>

#include "router.h"

/* Ready (beyond common/rs_service.c's NATS, streams and shutdown checks,
 * which turn it 503 from SIGTERM on while connections are closed and their
 * calls handed back): the call index loaded - before that, a device that
 * connects would miss the calls waiting for it until the watch catches up. */
int
rs_router_ready(void *arg, char *why, size_t cap)
{
	rs_router *r = arg;

	if (!atomic_load(&r->watch_synced)) {
		snprintf(why, cap, "loading pending calls");
		return 0;
	}
	return 1;
}

void
rs_router_metrics_init(rs_router *r)
{
	r->m.devices = rs_gauge("rs_router_devices", "Authenticated devices connected to this router", NULL);
	r->m.connections = rs_gauge("rs_router_connections", "Open device WebSocket connections", NULL);
	r->m.frames_in = rs_counter("rs_router_frames_received_total", "Device frames received", NULL);
	r->m.frames_out = rs_counter("rs_router_frames_sent_total", "Frames queued to devices", NULL);
	r->m.bad_frames = rs_counter("rs_router_bad_frames_total", "Malformed or unexpected device frames", NULL);
	r->m.auth_ok = rs_counter("rs_router_hello_total", "Hellos", "result=\"accepted\"");
	r->m.auth_fail = rs_counter("rs_router_hello_total", "Hellos", "result=\"refused\"");
	r->m.calls_seen = rs_counter("rs_router_calls_seen_total", "Live calls added to the index", NULL);
	r->m.calls_delivered = rs_counter("rs_router_calls_delivered_total", "tool.call frames written to devices", NULL);
	r->m.results = rs_counter("rs_router_results_total", "tool.result commands published", NULL);
	r->m.results_ignored = rs_counter("rs_router_results_ignored_total",
	                                  "Results for answered, cancelled or foreign calls", NULL);
	r->m.results_again = rs_counter("rs_router_results_again_total",
	                                "tool.result commands sent again from a done call's record, "
	                                "for a call the orchestrator published again", NULL);
	r->m.claim_conflicts = rs_counter("rs_router_claim_conflicts_total", "Lost compare-and-set on KV calls", NULL);
	r->m.dropped_heartbeat = rs_counter("rs_router_heartbeat_drops_total", "Connections dropped after 2 missed pongs", NULL);
	r->m.oversize = rs_counter("rs_router_oversize_frames_total", "Connections closed 1009 for a frame over the cap", NULL);
	r->m.prehello_refused = rs_counter("rs_router_prehello_refused_total",
	                                   "Connections closed for bytes before welcome over "
	                                   "RS_ROUTER_MAX_PREHELLO_BYTES", NULL);
	r->m.tenant_refused = rs_counter("rs_router_tenant_limit_refused_total",
	                                 "Hellos refused by RS_ROUTER_MAX_DEVICES_PER_TENANT", NULL);
	r->m.deliver_latency = rs_histogram("rs_router_device_seconds",
	                                    "From tool.call written to tool.result received", NULL);
	r->m.intake_latency = rs_histogram("rs_router_intake_seconds",
	                                   "From a tool.call stored in TOOLCALLS to its frame queued to a "
	                                   "device (calls taken by a device already here)", NULL);
}
