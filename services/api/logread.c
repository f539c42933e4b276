/*
 * logread.c - the API's reads of RUNS that must be current, through
 * common/rs_logread.c (why: its header): the stream leader on a cluster,
 * direct gets on one node.
 *
 * RS_API_RUNS_READS: auto (default: leader when RUNS has replicas > 1,
 * read once at start), direct, leader. Measured in docs/api.md.
 *
 * A run's history (SSE replay pages, view loads and catch-ups, the
 * viewer's state and check) is read by rs_api_log_history alone: direct
 * gets for a few events (no consumer to create), one ordered consumer on
 * the run's literal subject for many (~0.2-0.4 ms a get would be seconds
 * for 10,000 events); the caller, who knows how long the run is, chooses.
 */
#include "api.h"
#include "rs_event.h"
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

/* ---- a run's history: the one reader (SSE replay, views, the viewer) ---- */

/* Direct gets, next by subject after `after`, until there is none. */
static rs_status
history_by_gets(rs_api *app, const char *subj, uint64_t after, rs_api_log_each fn, void *arg)
{
	jsDirectGetMsgOptions o;
	uint64_t seq = after + 1;

	for (;;) {
		natsMsg *m = NULL;
		const char *sq = NULL;
		natsStatus s;
		int rc;

		jsDirectGetMsgOptions_Init(&o);
		o.Sequence = seq;
		o.NextBySubject = subj;
		s = rs_api_log_get(app, &m, &o);
		if (s == NATS_NOT_FOUND)
			return RS_OK;
		if (s != NATS_OK)
			return rs_nats_status(s, 0);
		if (natsMsgHeader_Get(m, "Nats-Sequence", &sq) != NATS_OK || sq == NULL) {
			natsMsg_Destroy(m);
			return RS_EIO;
		}
		seq = strtoull(sq, NULL, 10);
		rc = fn(arg, m, seq);
		natsMsg_Destroy(m);
		if (rc != 0)
			return rc > 0 ? RS_OK : RS_ERR;
		seq++;
	}
}

/* An ordered consumer on the literal subject from after + 1, until the
 * server says nothing is pending. */
static rs_status
history_by_consumer(rs_api *app, const char *subj, uint64_t after, rs_api_log_each fn,
                    void *arg)
{
	jsSubOptions so;
	natsSubscription *sub = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	rs_status st = RS_OK;

	jsSubOptions_Init(&so);
	so.Stream = "RUNS";          /* skip the stream-by-subject lookup */
	so.Ordered = true;
	if (after > 0) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = after + 1;
	}
	if ((s = js_SubscribeSync(&sub, app->nats.js, subj, NULL, &so, &jerr)) != NATS_OK)
		return rs_nats_status(s, jerr);
	for (;;) {
		natsMsg *m = NULL;
		jsMsgMetaData *md = NULL;
		uint64_t sseq, pending;
		int rc;

		if ((s = natsSubscription_NextMsg(&m, sub, 5000)) != NATS_OK) {
			st = rs_nats_status(s, 0);
			break;
		}
		if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
			natsMsg_Destroy(m);
			st = RS_EIO;
			break;
		}
		sseq = md->Sequence.Stream;
		pending = md->NumPending;
		jsMsgMetaData_Destroy(md);
		rc = fn(arg, m, sseq);
		natsMsg_Destroy(m);
		if (rc != 0) {
			st = rc > 0 ? RS_OK : RS_ERR;
			break;
		}
		if (pending == 0)
			break;
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	return st;
}

rs_status
rs_api_log_history(rs_api *app, const char *tenant, const char *run_id, uint64_t after,
                   int by_consumer, rs_api_log_each fn, void *arg)
{
	char subj[160];

	rs_event_subject(tenant, run_id, subj, sizeof(subj));
	return by_consumer ? history_by_consumer(app, subj, after, fn, arg)
	                   : history_by_gets(app, subj, after, fn, arg);
}
