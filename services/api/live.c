/*
 * live.c - live events and history for SSE watchers and waiters.
 *
 * Live: ONE JetStream ordered push consumer per API process on stream RUNS,
 * filter runs.>, from its start on (rs_js_follow in rs_nats.h: ephemeral,
 * memory storage, no acks, flow control, idle heartbeats). nats.c
 * re-creates it from the next stream sequence on a reconnect, a gap or
 * missed heartbeats, so live delivery is gap-free by itself; the seam rule
 * in sse.c stays as the safety net. Its callback formats the SSE frame once
 * (frame.c) and queues it to the service thread, which fans it out through
 * the hub (reply.c): a hash of (tenant, run_id) -> the requests (watchers
 * and waiters) of that run. Both come from the message's subject runs.<tenant>.<run_id>,
 * never from its body: run ids are unique, but anyone who can publish to
 * runs.> could reuse tenant A's run id under tenant B, and B's events must
 * not reach A's watchers. Whatever of a message goes into SSE framing
 * (the `id:` and `event:` lines) is checked first: subject tokens (a
 * tenant token, a UUID), the type (a known event type name, header and
 * CloudEvent `type` agreeing when both are given), runseq >= 1, one line
 * of data. Anything else is dropped and counted
 * (rs_api_live_dropped_total{reason}). So
 * a watcher costs no consumer and no subscription: one lws connection, one
 * rs_api_req and a few frame pointers.
 *
 * Why a consumer and not RePublish: RUNS used to republish every append to
 * core NATS rs.live.runs.>, which cost nats-server ~6 us CPU per append
 * whether anyone listened or not (measured on 2 cores: nearly double its
 * cost per append). Now only processes that follow RUNS pay, per consumer:
 * push delivery of each event to it (measured, docs/api.md: about what the
 * RePublish cost for the first consumer, ~1.5 us per append for each more),
 * a few KB of consumer state in the server, and here, as before, one
 * subscription with its delivery thread; flow control bounds what the
 * server sends ahead of us.
 *
 * Views: before its frame is queued, each live event is folded into the
 * view of its run (views.c, common/rs_view.c), so single-run reads and
 * waiters are answered from the log without Postgres.
 *
 * History: direct gets on the literal subject runs.<tenant>.<run_id>
 * (next-by-subject from sequence 1; through the stream leader on a
 * cluster, logread.c, as a lagging replica would end it early), on a
 * worker, at most
 * RS_API_SSE_REPLAY_PAGE events per job: a watcher of a 100k-event run
 * holds one page of frames and a worker for one page at a time; sse.c asks
 * for the next page once the watcher's queue has drained. The watcher is in the
 * hub BEFORE the replay starts, so any event appended after the replay's
 * last read arrives live; sse.c drops live frames with runseq <= the last
 * replayed one and refills any gap with another replay. Measured reasons
 * for this design are in docs/api.md (per-run ordered consumers cost a
 * consumer create per watcher; direct get on a literal subject is
 * ~0.2 ms).
 */
#include "api.h"
#include "rs_event.h"
#include "rs_id.h"
#include "rs_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Split runs.<tenant>.<run_id> into its two checked tokens; 0 if the
 * subject is anything else. */
static int
subject_ids(const char *subj, char tenant[72], char run_id[RS_API_RUNKEY])
{
	const char *t, *dot;
	size_t tl;

	if (strncmp(subj, "runs.", 5) != 0)
		return 0;
	t = subj + 5;
	if ((dot = strchr(t, '.')) == NULL || (tl = (size_t)(dot - t)) == 0 || tl >= 72)
		return 0;
	memcpy(tenant, t, tl);
	tenant[tl] = '\0';
	if (!rs_id_is_token(tenant, 71) || strlen(dot + 1) != RS_UUID_LEN ||
	    !rs_id_is_uuid(dot + 1))
		return 0;
	memcpy(run_id, dot + 1, RS_UUID_LEN + 1);
	return 1;
}

static void
on_live(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
	rs_api *app = closure;
	char tenant[72], run_id[RS_API_RUNKEY];
	jsMsgMetaData *md = NULL;
	uint64_t sseq;
	rs_api_frame *f;

	/* Not older than the consumer (the first delivery is the newest
	 * event from before it; see rs_js_follow). */
	if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
		natsMsg_Destroy(m);
		return;
	}
	sseq = md->Sequence.Stream;
	jsMsgMetaData_Destroy(md);
	if (sseq <= app->live_floor) {
		natsMsg_Destroy(m);
		return;
	}
	if (!subject_ids(natsMsg_GetSubject(m), tenant, run_id)) {
		rs_api_metric_live_dropped("subject");
	} else if ((f = rs_api_frame_from_msg(m, tenant, run_id)) == NULL) {
		rs_api_metric_live_dropped("event");
	} else {
		/* Fold first: when the frame reaches a waiter on the service
		 * thread, the run's view already holds this event (views.c). */
		rs_api_views_live(app, tenant, run_id, natsMsg_GetData(m),
		                  (size_t)natsMsg_GetDataLength(m), sseq);
		f->sseq = sseq;
		rs_api_work_frame(app, f);
	}
	natsMsg_Destroy(m);
}

rs_status
rs_api_live_start(rs_api *app)
{
	rs_status st;

	if ((st = rs_api_views_init(app)) != RS_OK)
		return st;
	if ((st = rs_api_log_init(app)) != RS_OK)
		return st;
	st = rs_js_follow(&app->live_sub, app->nats.js, "RUNS", "runs.>", 0,
	                  on_live, app, &app->live_floor);
	if (st != RS_OK) {
		const char *why = nats_GetLastError(NULL);
		rs_error("live: cannot open the ordered consumer on RUNS (runs.>): %s",
		         why != NULL ? why : rs_status_str(st));
		return st;
	}
	/* A slow service thread must not make the client drop messages (each
	 * drop would re-create the consumer): flow control already bounds
	 * what the server sends ahead of us. */
	natsSubscription_SetPendingLimits(app->live_sub, -1, -1);
	return RS_OK;
}

/* No new live frames from here on. */
void
rs_api_live_unsubscribe(rs_api *app)
{
	rs_js_follow_stop(&app->live_sub);
}

void
rs_api_live_stop(rs_api *app)
{
	rs_api_live_unsubscribe(app);
	rs_api_views_free(app);
}

/* rs_api_replay's reader state: one page of frames into job. */
typedef struct {
	rs_api *app;
	rs_api_job *job;
	const char *tenant, *run_id;
	uint64_t after;
	int reads;
	rs_status st;
} replay_page;

static int
replay_one(void *arg, natsMsg *m, uint64_t sseq)
{
	replay_page *p = arg;
	rs_api_job *job = p->job;
	rs_api_frame *f;

	job->next_sseq = sseq + 1;
	/* At most one page of reads, skipped ones included: a Last-Event-ID
	 * deep into a long run costs several bounded jobs, not one long one. */
	if (++p->reads >= p->app->replay_page)
		job->more = 1;
	f = rs_api_frame_from_msg(m, p->tenant, p->run_id);
	if (f == NULL) {
		rs_warn("live: skipping an undecodable event of run %s", p->run_id);
		return job->more;
	}
	f->sseq = sseq;
	if (f->runseq <= p->after) {
		rs_api_frame_unref(f);
		return job->more;
	}
	if (job->nframes % 16 == 0) {
		rs_api_frame **nf = realloc(job->frames, (job->nframes + 16) * sizeof(*nf));
		if (nf == NULL) {
			rs_api_frame_unref(f);
			p->st = RS_ENOMEM;
			return -1;
		}
		job->frames = nf;
	}
	job->frames[job->nframes++] = f;
	if (f->terminal) {
		job->terminal_seen = 1;
		job->more = 0;
		return 1;
	}
	return job->more;
}

rs_status
rs_api_replay(rs_api *app, const char *tenant, const char *run_id, uint64_t after,
              rs_api_job *job)
{
	replay_page p = { app, job, tenant, run_id, after, 0, RS_OK };
	uint64_t from = job->start_sseq > 0 ? job->start_sseq : 1;
	rs_status st;

	job->next_sseq = from;
	st = rs_api_log_history(app, tenant, run_id, from - 1, 0, replay_one, &p);
	return st == RS_ERR ? p.st : st;
}
