/*
 * live.c - live events and history for SSE watchers and waiters.
 *
 * Live: ONE JetStream ordered push consumer per API process on stream RUNS,
 * filter runs.>, from its start on (rs_js_follow in rs_nats.h: ephemeral,
 * memory storage, no acks, flow control, idle heartbeats). nats.c
 * re-creates it from the next stream sequence on a reconnect, a gap or
 * missed heartbeats, so live delivery is gap-free by itself; the seam rule
 * in sse.c stays as the safety net. Its callback formats the SSE frame once
 * and queues it to the service thread, which fans it out through the hub:
 * a hash of (tenant, run_id) -> the requests (watchers and waiters) of
 * that run. Both come from the message's subject runs.<tenant>.<run_id>,
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
#include "rs_map.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The watchers and waiters of one run, linked through their requests. */
typedef struct {
	rs_api_req *head;
	size_t n;
} hub_run;

/* rs_api_run_mapkey -> hub_run (owned by the map); service thread only. */
struct rs_api_hub {
	rs_map runs;
};

#define TYPE_MAX 64     /* longer than any event type name */


void
rs_api_frame_unref(rs_api_frame *f)
{
	if (f != NULL && f->refs >= 0 && --f->refs == 0)
		free(f);
}

rs_status
rs_api_msg_meta(natsMsg *m, uint64_t *runseq, char type[64], int *terminal)
{
	const char *h = NULL, *t;
	json_t *v = NULL, *rs;
	json_error_t jerr;
	rs_event_type et, et2;
	rs_status st = RS_EINVAL;

	v = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &jerr);
	if (v == NULL)
		return RS_EINVAL;
	rs = json_object_get(v, "runseq");
	if (!json_is_integer(rs) || json_integer_value(rs) < 1)
		goto cleanup;
	*runseq = (uint64_t)json_integer_value(rs);
	/* The type goes into the SSE event: line: only a known event type
	 * name (so no CR/LF, bounded). Header and CloudEvent must agree. */
	if (natsMsgHeader_Get(m, "Runstream-Type", &h) != NATS_OK)
		h = NULL;
	t = json_string_value(json_object_get(v, "type"));
	if (h != NULL && (strlen(h) >= TYPE_MAX || rs_event_type_parse(h, &et) != RS_OK))
		goto cleanup;
	if (t != NULL && (strlen(t) >= TYPE_MAX || rs_event_type_parse(t, &et2) != RS_OK))
		goto cleanup;
	if (h == NULL && t == NULL)
		goto cleanup;
	if (h == NULL)
		et = et2;
	else if (t != NULL && et != et2)
		goto cleanup;
	snprintf(type, 64, "%s", rs_event_type_name(et));
	*terminal = rs_event_type_terminal(et);
	st = RS_OK;
cleanup:
	json_decref(v);
	return st;
}

rs_api_frame *
rs_api_frame_from_msg(natsMsg *m, const char *tenant, const char *run_id)
{
	uint64_t seq = 0;
	char type[64];
	int term = 0, n;
	size_t dlen = (size_t)natsMsg_GetDataLength(m), cap;
	rs_api_frame *f;

	if (rs_api_msg_meta(m, &seq, type, &term) != RS_OK)
		return NULL;
	/* The CloudEvent is compact JSON: no raw line break can end the
	 * one-line data: field early (JSON escapes them inside strings;
	 * between tokens a CR or LF would be legal JSON: refused). */
	if (memchr(natsMsg_GetData(m), '\n', dlen) != NULL ||
	    memchr(natsMsg_GetData(m), '\r', dlen) != NULL)
		return NULL;
	cap = dlen + 128;
	f = malloc(sizeof(*f) + LWS_PRE + cap);
	if (f == NULL)
		return NULL;
	memset(f, 0, sizeof(*f));
	f->refs = 1;
	f->runseq = seq;
	f->t_us = rs_mono_us();
	f->terminal = term;
	snprintf(f->tenant, sizeof(f->tenant), "%s", tenant);
	snprintf(f->run_id, sizeof(f->run_id), "%s", run_id);
	n = snprintf((char *)f->buf + LWS_PRE, cap, "id: %llu\nevent: %s\ndata: ",
	             (unsigned long long)seq, type);
	memcpy(f->buf + LWS_PRE + n, natsMsg_GetData(m), dlen);
	memcpy(f->buf + LWS_PRE + n + dlen, "\n\n", 3);
	f->len = (size_t)n + dlen + 2;
	return f;
}

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

	app->hub = calloc(1, sizeof(*app->hub));
	if (app->hub == NULL)
		return RS_ENOMEM;
	rs_map_init(&app->hub->runs, free);
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
	if (app->hub != NULL) {
		rs_map_free(&app->hub->runs);
		free(app->hub);
		app->hub = NULL;
	}
	rs_api_views_free(app);
}

static hub_run *
hub_find(rs_api *app, const char *tenant, const char *run_id, int create)
{
	char key[RS_API_RUN_MAPKEY];
	hub_run *h;

	rs_api_run_mapkey(key, tenant, run_id);
	if ((h = rs_map_get(&app->hub->runs, key)) != NULL || !create)
		return h;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	if (rs_map_put(&app->hub->runs, key, h) != RS_OK) {
		free(h);
		return NULL;
	}
	return h;
}

void
rs_api_hub_add(rs_api *app, rs_api_req *r)
{
	hub_run *h = hub_find(app, r->hub_tenant, r->run_id, 1);

	if (h == NULL)
		return;
	r->hub_prev = NULL;
	r->hub_next = h->head;
	if (h->head != NULL)
		h->head->hub_prev = r;
	h->head = r;
	h->n++;
}

void
rs_api_hub_del(rs_api *app, rs_api_req *r)
{
	char key[RS_API_RUN_MAPKEY];
	hub_run *h;

	rs_api_run_mapkey(key, r->hub_tenant, r->run_id);
	if ((h = rs_map_get(&app->hub->runs, key)) == NULL)
		return;
	if (r->hub_prev != NULL)
		r->hub_prev->hub_next = r->hub_next;
	else if (h->head == r)
		h->head = r->hub_next;
	else
		return;     /* not a member */
	if (r->hub_next != NULL)
		r->hub_next->hub_prev = r->hub_prev;
	r->hub_prev = r->hub_next = NULL;
	if (--h->n == 0)
		rs_map_del(&app->hub->runs, key);
}

void
rs_api_hub_frame(rs_api *app, rs_api_frame *f)
{
	hub_run *h = hub_find(app, f->tenant, f->run_id, 0);
	rs_api_req *r, *next;

	if (h != NULL)
		for (r = h->head; r != NULL; r = next) {
			next = r->hub_next;
			if (r->sse)
				rs_api_sse_push(app, r, f);
			else if (r->waiting && f->terminal)
				rs_api_wait_wake(app, r);
		}
	rs_api_frame_unref(f);
}

size_t
rs_api_hub_watchers(rs_api *app)
{
	return app->nwatchers;
}

rs_status
rs_api_replay(rs_api *app, const char *tenant, const char *run_id, uint64_t after,
              rs_api_job *job)
{
	jsDirectGetMsgOptions o;
	char subj[160];
	uint64_t seq = job->start_sseq > 0 ? job->start_sseq : 1;
	natsStatus s;

	rs_event_subject(tenant, run_id, subj, sizeof(subj));
	/* At most one page of reads, skipped ones included: a Last-Event-ID
	 * deep into a long run costs several bounded jobs, not one long one. */
	for (int reads = 0; ; reads++) {
		natsMsg *m = NULL;
		const char *sq = NULL;
		rs_api_frame *f;

		job->next_sseq = seq;
		if (reads >= app->replay_page) {
			job->more = 1;
			return RS_OK;
		}
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
		seq = strtoull(sq, NULL, 10) + 1;
		job->next_sseq = seq;
		f = rs_api_frame_from_msg(m, tenant, run_id);
		natsMsg_Destroy(m);
		if (f == NULL) {
			rs_warn("live: skipping an undecodable event of run %s", run_id);
			continue;
		}
		f->sseq = seq - 1;
		if (f->runseq <= after) {
			rs_api_frame_unref(f);
			continue;
		}
		if (job->nframes % 16 == 0) {
			rs_api_frame **nf = realloc(job->frames, (job->nframes + 16) * sizeof(*nf));
			if (nf == NULL) {
				rs_api_frame_unref(f);
				return RS_ENOMEM;
			}
			job->frames = nf;
		}
		job->frames[job->nframes++] = f;
		if (f->terminal) {
			job->terminal_seen = 1;
			return RS_OK;
		}
	}
}

void
rs_api_hub_expire_waiters(rs_api *app)
{
	if (app->hub == NULL)
		return;
	size_t i = 0;
	rs_map_ent *e, *en;

	for (e = rs_map_next(&app->hub->runs, &i, NULL); e != NULL; e = en) {
		hub_run *h = e->val;
		rs_api_req *r, *next;

		/* the entry may be freed when its last req leaves */
		en = rs_map_next(&app->hub->runs, &i, e);
		for (r = h->head; r != NULL; r = next) {
			next = r->hub_next;
			if (r->waiting)
				rs_api_wait_expire(app, r);
		}
	}
}
