/*
 * logread.c - the API's reads of RUNS that must be current, through
 * common/rs_logread.c (why: its header): the stream leader on a cluster,
 * direct gets on one node.
 *
 * RS_API_RUNS_READS: auto (default: leader when RUNS has replicas > 1,
 * read once at start), direct, leader. Measured in docs/api.md.
 */
#include "api.h"
#include "rs_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rs_status
rs_api_log_init(rs_api *app)
{
	const char *mode = getenv("RS_API_RUNS_READS");
	rs_status st;

	st = rs_logread_init(&app->runs_reads, app->nats.nc, app->nats.js, "RUNS", mode,
	                     app->pub_timeout_ms);
	if (st == RS_EINVAL) {
		rs_error("RS_API_RUNS_READS: must be auto, direct or leader (got \"%s\")", mode);
		return st;
	}
	if (st != RS_OK)
		return st;
	app->runs_leader_reads = app->runs_reads.leader;
	/* The SSE recheck (sse.c) is for node faults: on by default on a
	 * cluster only. */
	if (app->sse_recheck_s < 0)
		app->sse_recheck_s = app->runs_leader_reads ? 30 : 0;
	rs_info("RUNS reads that must be current: %s; idle SSE watchers checked against the "
	        "log every %d s (0 = never)",
	        app->runs_leader_reads ? "the stream leader (STREAM.MSG.GET)" : "direct get",
	        app->sse_recheck_s);
	return RS_OK;
}

natsStatus
rs_api_log_get(rs_api *app, natsMsg **m, const jsDirectGetMsgOptions *o)
{
	return rs_logread_get(&app->runs_reads, m, o);
}
