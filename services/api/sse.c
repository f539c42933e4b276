/*
 * sse.c - GET /v1/runs/{id}/stream: one watcher's queue and its writes.
 *
 * Service thread only. A watcher moves through:
 *   registered (in the hub, live frames held) -> replay result arrives ->
 *   headers + history queued, held frames merged -> live -> terminal frame
 *   queued -> queue drained -> connection closed (so EventSource sees the
 *   end and reconnects with Last-Event-ID, which then gets 204).
 * The rule that gives "no gap, no duplicate": a frame is queued only if
 * its runseq is exactly sse_last + 1; <= sse_last is a duplicate (dropped);
 * > sse_last + 1 is a gap: hold it and replay from sse_last (a worker),
 * which happens when a live frame was lost (e.g. a NATS reconnect).
 * Memory per watcher: the rs_api_req (lws per-session data) plus a ring of
 * frame pointers; frames are shared by every watcher of the run.
 *
 * Bounded: history comes in pages (RS_API_SSE_REPLAY_PAGE events per
 * worker job, live.c), and the next page is asked for only once the queue
 * has drained below a quarter page, so a slow reader of a long run holds
 * about one page, never the run. While the watcher is behind (sse_behind:
 * a page said "more", a gap, or frames were dropped), live frames are held
 * up to HELD_MAX; past that they are dropped (drop_gen) and the log, read
 * again from replay_sseq, brings them back. The queue stops taking live
 * frames at QUEUE_MAX and the watcher falls behind the same way. So no
 * gap, no duplicate, still: the log fills whatever was not queued.
 *
 * The recheck (RS_API_SSE_RECHECK_S; by default every 30 s on a cluster,
 * never on one node): a watcher that has queued nothing for that long
 * reads the log from where it is (one read when there is nothing new).
 * Every rule above needs a live frame to notice a gap; a watcher whose
 * live frames never come at all (the chaos run's silent streams, opened
 * around a RUNS leader fault: the process-wide consumer stalled or
 * re-created, a replay answered by a replica that was behind) would stay
 * silent forever. The recheck bounds that to one interval, and logs it,
 * whatever the cause. On a cluster the read goes to the stream leader
 * (logread.c), so it cannot be answered from the same stale state.
 */
#include "api.h"
#include "rs_log.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ": hb\n\n" - the comment heartbeat, immortal (refs -1), shared by all
 * watchers; made once on the service thread, freed at exit. */
static rs_api_frame *hb_frame;

#define HELD_MAX 1024
#define QUEUE_MAX(app) ((uint32_t)(app)->replay_page * 2 + 64)

static void maybe_replay(rs_api *app, rs_api_req *r);

static int
q_push(rs_api_req *r, rs_api_frame *f)
{
	if (r->qlen == r->qcap) {
		uint32_t ncap = r->qcap ? r->qcap * 2 : 4;
		rs_api_frame **nq = malloc(ncap * sizeof(*nq));
		if (nq == NULL)
			return -1;
		for (uint32_t i = 0; i < r->qlen; i++)
			nq[i] = r->q[(r->qhead + i) % r->qcap];
		free(r->q);
		r->q = nq;
		r->qhead = 0;
		r->qcap = ncap;
	}
	r->q[(r->qhead + r->qlen) % r->qcap] = f;
	r->qlen++;
	if (f->refs >= 0)
		f->refs++;
	return 0;
}

static void
held_push(rs_api_req *r, rs_api_frame *f)
{
	if (r->nheld >= HELD_MAX) {
		/* Behind by this much: let the log bring them back. */
		for (uint32_t i = 0; i < r->nheld; i++)
			rs_api_frame_unref(r->held[i]);
		r->nheld = 0;
		r->drop_gen++;
		r->sse_behind = 1;
	}
	if (r->nheld == r->heldcap) {
		uint32_t ncap = r->heldcap ? r->heldcap * 2 : 4;
		rs_api_frame **nh = realloc(r->held, ncap * sizeof(*nh));
		if (nh == NULL)
			return;     /* dropped: the gap rule refills it later */
		r->held = nh;
		r->heldcap = ncap;
	}
	r->held[r->nheld++] = f;
	f->refs++;
}

static void
start_replay(rs_api *app, rs_api_req *r)
{
	rs_api_job *j = rs_api_job_new();
	rs_api_ticket *t = calloc(1, sizeof(*t));

	if (j == NULL || t == NULL || r->ticket != NULL) {
		/* A refill is already running (it will see the newer events),
		 * or we cannot allocate: the stream ends, the client resumes. */
		free(t);
		rs_api_job_free(j);
		if (r->ticket == NULL)
			lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		return;
	}
	r->sse_replaying = 1;
	t->req = r;
	r->ticket = t;
	j->ticket = t;
	j->fn = rs_api_job_replay;
	j->after = r->sse_last;
	j->start_sseq = r->replay_sseq;
	j->drop_gen = r->drop_gen;
	j->action = RS_ACT_REPLAY;
	snprintf(j->run_id, sizeof(j->run_id), "%s", r->run_id);
	snprintf(j->tenant, sizeof(j->tenant), "%s", r->sse_tenant);
	rs_api_work_submit(app, j);
}

/* Ask for the next page of history if the watcher is behind, none is
 * being read, and what it has is nearly written. */
static void
maybe_replay(rs_api *app, rs_api_req *r)
{
	if (r->sse == 2 && r->sse_behind && !r->sse_done && !r->sse_replaying &&
	    r->ticket == NULL && r->qlen <= (uint32_t)app->replay_page / 4)
		start_replay(app, r);
}

/* Queue f if it is the next one; 1 if it was a gap (or the queue is
 * full: the same, the log refills it). */
static int
offer(rs_api *app, rs_api_req *r, rs_api_frame *f)
{
	if (r->sse_done || f->runseq <= r->sse_last)
		return 0;
	if (f->runseq != r->sse_last + 1 || r->qlen >= QUEUE_MAX(app))
		return 1;
	if (q_push(r, f) != 0)
		return 1;
	r->sse_active_ms = (int64_t)(f->t_us / 1000);
	r->sse_last = f->runseq;
	if (f->sseq >= r->replay_sseq)
		r->replay_sseq = f->sseq + 1;
	if (f->terminal)
		r->sse_done = 1;
	return 0;
}

static int
cmp_frames(const void *a, const void *b)
{
	const rs_api_frame *x = *(rs_api_frame *const *)a, *y = *(rs_api_frame *const *)b;

	return x->runseq < y->runseq ? -1 : x->runseq > y->runseq;
}

/* After a replay: queue the held live frames that follow on. */
static void
merge_held(rs_api *app, rs_api_req *r)
{
	uint32_t i, gap = 0;

	if (r->nheld == 0)
		return;
	qsort(r->held, r->nheld, sizeof(*r->held), cmp_frames);
	for (i = 0; i < r->nheld; i++) {
		if (!gap && offer(app, r, r->held[i]))
			gap = 1;
		if (!gap) {
			rs_api_frame_unref(r->held[i]);
			r->held[i] = NULL;
		}
	}
	if (gap) {
		/* Keep what follows the gap held; refill the gap. */
		uint32_t k = 0;
		for (i = 0; i < r->nheld; i++)
			if (r->held[i] != NULL)
				r->held[k++] = r->held[i];
		r->nheld = k;
		r->sse_behind = 1;
	} else {
		r->nheld = 0;
	}
}

void
rs_api_sse_begin(rs_api *app, rs_api_req *r, rs_api_job *job)
{
	r->sse = 2;           /* headers owed: WRITEABLE sends them first */
	r->sse_hdrs_owed = 1;
	r->sse_replaying = 0;
	r->sse_last = job->after;
	r->next_hb_ms = rs_mono_ms() + (int64_t)app->hb_s * 1000;
	r->sse_active_ms = rs_mono_ms();
	r->sse_rechecking = 0;
	snprintf(r->sse_tenant, sizeof(r->sse_tenant), "%s", job->tenant);
	lws_set_timeout(r->wsi, NO_PENDING_TIMEOUT, 0);
	rs_api_sse_replayed(app, r, job);
	/* all_watchers: for heartbeats and shutdown */
	r->all_prev = NULL;
	r->all_next = app->all_watchers;
	if (app->all_watchers != NULL)
		app->all_watchers->all_prev = r;
	app->all_watchers = r;
	app->nwatchers++;
	rs_api_metric_watchers((double)app->nwatchers);
	lws_callback_on_writable(r->wsi);
}

void
rs_api_sse_replayed(rs_api *app, rs_api_req *r, rs_api_job *job)
{
	int gap = 0;

	r->sse_replaying = 0;
	if (r->sse_rechecking) {
		r->sse_rechecking = 0;
		if (job->status == 200 && job->nframes > 0)
			rs_warn("sse: a watcher of run %s was behind the log (%zu events after runseq "
			        "%llu came from the recheck, not live)", r->run_id, job->nframes,
			        (unsigned long long)r->sse_last);
	}
	if (job->status != 200) {
		/* The refill failed (NATS down?): end the stream; the client
		 * reconnects with Last-Event-ID and resumes exactly. */
		r->sse_done = 1;
		lws_callback_on_writable(r->wsi);
		return;
	}
	for (size_t i = 0; i < job->nframes; i++)
		if (offer(app, r, job->frames[i]))
			gap = 1;
	if (!gap && job->next_sseq > r->replay_sseq)
		r->replay_sseq = job->next_sseq;   /* past what it skipped too */
	if (gap || job->more)
		r->sse_behind = 1;
	else if (job->drop_gen == r->drop_gen)
		r->sse_behind = 0;      /* read to the end after the last drop */
	/* Held live frames may follow on (or be duplicates by now). */
	merge_held(app, r);
	maybe_replay(app, r);
	lws_callback_on_writable(r->wsi);
}

void
rs_api_sse_push(rs_api *app, rs_api_req *r, rs_api_frame *f)
{
	if (r->sse == 1 || r->sse_replaying) {
		held_push(r, f);
		return;
	}
	if (offer(app, r, f)) {
		held_push(r, f);
		r->sse_behind = 1;
		maybe_replay(app, r);
		return;
	}
	lws_callback_on_writable(r->wsi);
}

static int
write_headers(rs_api_req *r)
{
	unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
	              *end = buf + sizeof(buf) - 1;

	if (lws_add_http_common_headers(r->wsi, HTTP_STATUS_OK, "text/event-stream",
	                                LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
	    lws_add_http_header_by_name(r->wsi, (const unsigned char *)"cache-control:",
	                                (const unsigned char *)"no-cache", 8, &p, end) ||
	    lws_add_http_header_by_name(r->wsi, (const unsigned char *)"x-accel-buffering:",
	                                (const unsigned char *)"no", 2, &p, end) ||
	    rs_api_cors_add(r->wsi, r->cors_origin, &p, end) ||
	    lws_finalize_write_http_header(r->wsi, start, &p, end))
		return -1;
	/* lws streams the body from now on; the headers are no longer needed,
	 * and 10k watchers should not each keep a header table. (Not
	 * lws_http_mark_sse: on 4.1.6 it only adds an h2 flag and logs an
	 * error for h1 connections.) */
	lws_http_headers_detach(r->wsi);
	return 0;
}

int
rs_api_sse_writeable(rs_api *app, rs_api_req *r)
{
	rs_api_frame *f;

	if (r->sse_hdrs_owed) {
		r->sse_hdrs_owed = 0;
		if (write_headers(r) != 0)
			return -1;
		if (r->qlen > 0 || r->sse_done)
			lws_callback_on_writable(r->wsi);
		return 0;
	}
	if (r->qlen == 0) {
		/* Everything up to the terminal event is out (lws only calls
		 * WRITEABLE once buffered bytes were sent): close cleanly. */
		return r->sse_done ? -1 : 0;
	}
	f = r->q[r->qhead];
	if (lws_write(r->wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_HTTP) < 0)
		return -1;
	r->qhead = (r->qhead + 1) % r->qcap;
	r->qlen--;
	if (f->runseq > 0)
		rs_api_metric_sse_sent((double)(rs_mono_us() - f->t_us) / 1e6);
	rs_api_frame_unref(f);
	if (r->qlen == 0 && r->sse_done) {
		/* The terminal frame is written: close now, in this callback.
		 * SSE has no close handshake; asking for another WRITEABLE
		 * first only costs two epoll_ctl and a loop turn per stream,
		 * 10,000 of them when many runs end together. Nothing is
		 * lost: lws_write handed the frame to the kernel (which sends
		 * it before the FIN: no SO_LINGER) or kept the rest in its
		 * buffer, and lws flushes that buffer before it closes
		 * (LRS_FLUSHING_BEFORE_CLOSE). */
		return -1;
	}
	if (r->qlen > 0)
		lws_callback_on_writable(r->wsi);
	maybe_replay(app, r);
	return 0;
}

void
rs_api_sse_release(rs_api *app, rs_api_req *r)
{
	while (r->qlen > 0) {
		rs_api_frame_unref(r->q[r->qhead]);
		r->qhead = (r->qhead + 1) % r->qcap;
		r->qlen--;
	}
	free(r->q);
	r->q = NULL;
	r->qcap = r->qhead = 0;
	for (uint32_t i = 0; i < r->nheld; i++)
		rs_api_frame_unref(r->held[i]);
	free(r->held);
	r->held = NULL;
	r->nheld = r->heldcap = 0;
	if (r->sse == 2) {
		if (r->all_prev != NULL)
			r->all_prev->all_next = r->all_next;
		else if (app->all_watchers == r)
			app->all_watchers = r->all_next;
		if (r->all_next != NULL)
			r->all_next->all_prev = r->all_prev;
		r->all_prev = r->all_next = NULL;
		app->nwatchers--;
		rs_api_metric_watchers((double)app->nwatchers);
	}
	r->sse = 0;
	r->sse_done = 0;
	r->sse_behind = 0;
}

void
rs_api_sse_heartbeat(rs_api *app)
{
	int64_t now = rs_mono_ms();

	if (hb_frame == NULL) {
		hb_frame = calloc(1, sizeof(*hb_frame) + LWS_PRE + 8);
		if (hb_frame == NULL)
			return;
		hb_frame->refs = -1;
		hb_frame->len = 6;
		memcpy(hb_frame->buf + LWS_PRE, ": hb\n\n", 6);
	}
	for (rs_api_req *r = app->all_watchers; r != NULL; r = r->all_next) {
		if (app->sse_recheck_s > 0 && !r->sse_done && !r->sse_replaying && r->ticket == NULL &&
		    r->qlen == 0 && now - r->sse_active_ms >= (int64_t)app->sse_recheck_s * 1000) {
			/* Idle this long: ask the log whether it has more than this
			 * watcher got (the recheck, see the top of the file). */
			r->sse_active_ms = now;
			r->sse_rechecking = 1;
			r->sse_behind = 1;
			start_replay(app, r);
		}
		if (r->next_hb_ms > now || r->sse_done)
			continue;
		r->next_hb_ms = now + (int64_t)app->hb_s * 1000;
		/* Only when idle: a busy stream needs no keep-alive comment. */
		if (r->qlen == 0 && q_push(r, hb_frame) == 0)
			lws_callback_on_writable(r->wsi);
	}
}

void
rs_api_sse_close_all(rs_api *app)
{
	for (rs_api_req *r = app->all_watchers; r != NULL; r = r->all_next) {
		r->sse_done = 1;
		lws_callback_on_writable(r->wsi);
	}
}

void
rs_api_sse_free_static(void)
{
	free(hb_frame);
	hb_frame = NULL;
}

/* ---- worker side ---- */

int
rs_api_job_replay(rs_api *app, rs_api_job *job)
{
	rs_status st = rs_api_replay(app, job->tenant, job->run_id, job->after, job);

	job->status = st == RS_OK ? 200 : 503;
	return 0;
}

void
rs_api_sse_open(rs_api *app, rs_api_job *job)
{
	uint64_t last = 0;
	int term = 0;
	rs_status st = rs_api_run_lookup(app, job->tenant, job->run_id, &last, &term);

	if (st == RS_ENOTFOUND) {
		rs_api_problem(job, 404, "no run %s", job->run_id);
		return;
	}
	if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot read run %s from JetStream: %s", job->run_id,
		               rs_status_str(st));
		return;
	}
	if (term && last == 0) {
		/* Archived and purged (runctl archive): no event will come. */
		rs_api_problem(job, 410, "run %s was archived: its events are no longer in the log; "
		               "read them from GET /v1/runs/%s/events (the read model) or the archive "
		               "runctl archive wrote", job->run_id, job->run_id);
		return;
	}
	if (term && job->after >= last) {
		/* The client has everything, the run is over: 204 tells an
		 * EventSource to stop reconnecting. */
		job->status = 204;
		job->ctype = "text/event-stream";
		job->action = RS_ACT_RESPOND;
		return;
	}
	job->action = RS_ACT_SSE;
	if (last > job->after) {
		st = rs_api_replay(app, job->tenant, job->run_id, job->after, job);
		if (st != RS_OK) {
			rs_api_problem_retry(job, 503, 1, "cannot replay run %s: %s", job->run_id, rs_status_str(st));
			return;
		}
	}
	job->status = 200;
}
