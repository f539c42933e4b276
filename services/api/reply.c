/*
 * reply.c - how a request gets its answer: a job submitted to a worker,
 * an answer written now or on the next WRITEABLE, and waiters (Prefer:
 * wait) parked in the hub, woken by a terminal event or expired by their
 * timer. The hub itself is here too: (tenant, run_id) -> the requests of
 * that run, SSE watchers (sse.c streams them) and parked waiters, fed with
 * each live frame (rs_api_hub_frame).
 *
 * Service thread only (the two worker-side jobs below run on workers and
 * touch no lws object). http.c turns the client's bytes into a job and
 * calls in here; work.c hands finished jobs back through
 * rs_api_http_complete, which passes everything but header-time auth to
 * rs_api_reply_complete. Nothing here calls back into http.c.
 */
#include "api.h"
#include "rs_map.h"
#include "rs_hash.h"
#include "rs_time.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- worker side ---- */

static int
wait_check_job(rs_api *app, rs_api_job *j)
{
	uint64_t last = 0;
	int term = 0;

	if (rs_api_run_lookup(app, j->tenant, j->run_id, &last, &term) == RS_OK && term) {
		rs_api_run_view(app, j);
		return 0;
	}
	j->status = 0;      /* not finished: keep waiting */
	return 0;
}

static int
view_job(rs_api *app, rs_api_job *j)
{
	rs_api_run_view(app, j);
	return 0;
}

/* GET ?wait= on a run in flight: park; this 202 answers a timeout. */
void
rs_api_park_reply(rs_api_job *j, uint64_t last)
{
	char url[128];

	j->hdrs[0] = '\0';
	snprintf(url, sizeof(url), "/v1/runs/%s/stream", j->run_id);
	rs_api_json(j, 202, json_pack("{s:s, s:s, s:I, s:s}", "run_id", j->run_id,
	                              "status", last == 0 ? "queued" : "running",
	                              "last_seq", (json_int_t)last, "stream_url", url));
	j->action = RS_ACT_PARK;
}

/* ---- service thread ---- */

void
rs_api_submit(rs_api *app, rs_api_req *r, rs_api_job *j, rs_api_job_fn fn)
{
	rs_api_ticket *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		rs_api_job_free(j);
		lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		return;
	}
	t->req = r;
	r->ticket = t;
	j->ticket = t;
	j->fn = fn;
	rs_api_work_submit(app, j);
}

void
rs_api_unpark(rs_api *app, rs_api_req *r)
{
	if (!r->waiting)
		return;
	rs_api_hub_del(app, r);
	lws_sul_cancel(&r->wait_sul);
	r->waiting = 0;
	app->nwaiters--;
	rs_api_metric_waiters((double)app->nwaiters);
}

void
rs_api_respond_later(rs_api *app, rs_api_req *r, rs_api_job *j)
{
	rs_api_unpark(app, r);
	rs_api_job_free(r->wait_job);
	r->wait_job = NULL;
	rs_api_job_free(r->resp_job);
	r->resp_job = j;
	r->have_resp = 1;
	lws_callback_on_writable(r->wsi);
}

/* Send j's response now (from WRITEABLE or HTTP). Returns the lws value. */
static int
write_response(rs_api *app, rs_api_req *r, rs_api_job *j)
{
	size_t hdrcap = 2048, blen = j->status == 204 ? 0 : j->resp_len;
	unsigned char *buf = malloc(LWS_PRE + hdrcap + blen), *start, *p, *end;
	char *lines = j->hdrs, *nl;
	int rc = -1;

	/* The answer is going out: whatever limit slot the request held is
	 * free again (a streaming watcher keeps its slot: it never gets
	 * here while it streams). */
	rs_api_limit_release(app, r);
	if (buf == NULL)
		return -1;
	start = p = buf + LWS_PRE;
	end = start + hdrcap - 1;
	if (lws_add_http_common_headers(r->wsi, (unsigned)j->status,
	                                j->ctype != NULL ? j->ctype : "application/json",
	                                (lws_filepos_t)blen, &p, end))
		goto cleanup;
	/* extra "Name: value\n" lines */
	while (*lines && (nl = strchr(lines, '\n')) != NULL) {
		char name[64];
		const char *colon = memchr(lines, ':', (size_t)(nl - lines));
		size_t nlen;
		if (colon != NULL && (nlen = (size_t)(colon - lines)) < sizeof(name) - 2) {
			const char *v = colon + 1;
			for (size_t i = 0; i < nlen; i++)
				name[i] = (char)tolower((unsigned char)lines[i]);
			name[nlen] = ':';
			name[nlen + 1] = '\0';
			while (*v == ' ')
				v++;
			if (lws_add_http_header_by_name(r->wsi, (const unsigned char *)name,
			                                (const unsigned char *)v, (int)(nl - v), &p, end))
				goto cleanup;
		}
		lines = nl + 1;
	}
	if (rs_api_cors_add(r->wsi, r->cors_origin, &p, end))
		goto cleanup;
	if ((atomic_load(&app->stopping) || r->close_after) &&
	    lws_add_http_header_by_token(r->wsi, WSI_TOKEN_CONNECTION,
	                                 (const unsigned char *)"close", 5, &p, end))
		goto cleanup;
	if (lws_finalize_http_header(r->wsi, &p, end))
		goto cleanup;
	if (blen > 0) {
		memcpy(p, j->resp, blen);
		p += blen;
	}
	if (lws_write(r->wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_FINAL) < 0)
		goto cleanup;
	rs_api_metric_request(j->status, (double)(rs_mono_us() - j->t0_us) / 1e6);
	if (atomic_load(&app->stopping) || r->close_after)
		goto cleanup;      /* rc -1: close after this answer */
	rc = lws_http_transaction_completed(r->wsi) ? -1 : 0;
cleanup:
	free(buf);
	return rc;
}

/* Answer immediately from the HTTP callback (no worker involved). */
int
rs_api_respond_now(rs_api *app, rs_api_req *r, rs_api_job *j)
{
	int rc = write_response(app, r, j);

	rs_api_job_free(j);
	return rc;
}

/* A new job on the same request target as j (path, tenant, run, start
 * time), or NULL. */
static rs_api_job *
same_target(const rs_api_job *j)
{
	rs_api_job *n = rs_api_job_new();

	if (n == NULL)
		return NULL;
	memcpy(n->path, j->path, sizeof(n->path));
	memcpy(n->tenant, j->tenant, sizeof(n->tenant));
	memcpy(n->run_id, j->run_id, sizeof(n->run_id));
	n->t0_us = j->t0_us;
	n->wait_s = j->wait_s;  /* a waiter's view must be terminal (rs_api_run_view) */
	return n;
}

static void
wait_timeout(lws_sorted_usec_list_t *sul)
{
	rs_api_req *r = lws_container_of(sul, rs_api_req, wait_sul);
	rs_api_job *j;

	if (!r->waiting)
		return;
	if (r->ticket != NULL) {
		/* A job is in flight: a view answers itself; a check that
		 * finds the run still open sends the 202 then. */
		r->wait_expired = 1;
		return;
	}
	j = r->wait_job;
	r->wait_job = NULL;
	rs_api_respond_later(r->app, r, j);
}

void
rs_api_wait_expire(rs_api *app, rs_api_req *r)
{
	wait_timeout(&r->wait_sul);
}

void
rs_api_wait_wake(rs_api *app, rs_api_req *r)
{
	rs_api_job *j;

	if (!r->waiting)
		return;
	if (r->ticket != NULL) {
		r->wait_wake_pending = 1;
		return;
	}
	if ((j = same_target(r->wait_job)) == NULL)
		return;
	/* The live consumer folded the terminal event into the run's view
	 * before its frame got here (views.c): answer now, no round trip.
	 * A view we do not hold (a gap, evicted) is read by a worker. */
	if (rs_api_views_render(app, j->tenant, j->run_id, 0, 1, j) == RS_OK) {
		rs_api_respond_later(app, r, j);
		return;
	}
	rs_api_submit(app, r, j, view_job);
}

static void
park(rs_api *app, rs_api_req *r, rs_api_job *j)
{
	rs_api_job *chk = same_target(j);

	if (chk == NULL) {
		rs_api_respond_later(app, r, j);
		return;
	}
	r->wait_job = j;           /* the 202 for a timeout */
	r->waiting = 1;
	app->nwaiters++;
	rs_api_metric_waiters((double)app->nwaiters);
	r->wait_wake_pending = 0;
	r->wait_expired = 0;
	snprintf(r->run_id, sizeof(r->run_id), "%s", j->run_id);
	snprintf(r->hub_tenant, sizeof(r->hub_tenant), "%s", j->tenant);
	rs_api_hub_add(app, r);
	/* The request may sit here for up to 60 s: no lws timeout meanwhile. */
	lws_set_timeout(r->wsi, NO_PENDING_TIMEOUT, 0);
	lws_sul_schedule(app->ctx, 0, &r->wait_sul, wait_timeout,
	                 (lws_usec_t)j->wait_s * LWS_US_PER_SEC);
	/* Registered first, then check: a terminal event appended before the
	 * registration is seen by the check, one after it by the hub. */
	chk->action = RS_ACT_WAITCHECK;
	rs_api_submit(app, r, chk, wait_check_job);
}

/* A check or a view found the run not finished (j, dropped): keep r
 * parked, unless a wake or the timeout came while the job ran. */
static void
keep_waiting(rs_api *app, rs_api_req *r, rs_api_job *j)
{
	rs_api_job_free(j);
	if (r->wait_wake_pending) {
		r->wait_wake_pending = 0;
		rs_api_wait_wake(app, r);
	} else if (r->waiting && r->wait_expired) {
		wait_timeout(&r->wait_sul);     /* timed out meanwhile */
	}
}

void
rs_api_reply_complete(rs_api *app, rs_api_req *r, rs_api_job *j)
{
	switch (j->action) {
	case RS_ACT_SSE:
		if (j->status == 200) {
			rs_api_sse_begin(app, r, j);
			rs_api_job_free(j);
			return;
		}
		rs_api_hub_del(app, r);
		rs_api_sse_release(app, r);
		rs_api_respond_later(app, r, j);
		return;
	case RS_ACT_REPLAY:
		rs_api_sse_replayed(app, r, j);
		rs_api_job_free(j);
		return;
	case RS_ACT_PARK:
		if (atomic_load(&app->stopping)) {
			rs_api_respond_later(app, r, j);
			return;
		}
		park(app, r, j);
		return;
	case RS_ACT_WAITCHECK:
		if (j->status == 0) {
			keep_waiting(app, r, j);
			return;
		}
		rs_api_respond_later(app, r, j);
		return;
	default:
		if (r->waiting && j->status == 0) {
			/* Woken, but the log (read from the RUNS leader) does not
			 * have the run finished: keep waiting, never a 200 with a
			 * run in flight. */
			keep_waiting(app, r, j);
			return;
		}
		if (r->waiting && j->status != 200 && r->wait_job != NULL) {
			/* The view failed (e.g. log unreadable): the 202 is the
			 * honest answer. */
			rs_api_job_free(j);
			j = r->wait_job;
			r->wait_job = NULL;
		}
		rs_api_respond_later(app, r, j);
		return;
	}
}

/* ---- the hub: (tenant, run_id) -> its watchers and waiters ---- */

/* The watchers and waiters of one run, linked through their requests. */
typedef struct {
	rs_api_req *head;
	size_t n;
} hub_run;

/* rs_api_run_mapkey -> hub_run (owned by the map); service thread only. */
struct rs_api_hub {
	rs_map runs;
};

rs_status
rs_api_hub_init(rs_api *app)
{
	if ((app->hub = calloc(1, sizeof(*app->hub))) == NULL)
		return RS_ENOMEM;
	rs_map_init(&app->hub->runs, free);
	return RS_OK;
}

void
rs_api_hub_free(rs_api *app)
{
	if (app->hub == NULL)
		return;
	rs_map_free(&app->hub->runs);
	free(app->hub);
	app->hub = NULL;
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

void
rs_api_hub_expire_waiters(rs_api *app)
{
	size_t i = 0;
	rs_map_ent *e, *en;

	if (app->hub == NULL)
		return;
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
