/*
 * views.c - the run views the API answers single-run reads and waits from.
 *
 * GET /v1/runs/{id}, ?wait= and Prefer: wait are answered from the log,
 * not from Postgres: the one live consumer on RUNS (live.c) folds every
 * event into a view of its run (common/rs_view.c) before its frame goes to
 * the service thread, so when a terminal frame reaches a parked waiter the
 * view already holds it and the waiter is answered there and then, on the
 * service thread, with no round trip at all. Read-your-writes holds by
 * construction: a read needs a view whose last_seq is at least the newest
 * runseq on the log (one direct get, the same look-up that finds the run),
 * else it reads the run's history itself.
 *
 * The cache: (tenant, run_id) -> view, both from the SUBJECT of the
 * message (runs.<tenant>.<run_id>), never from its body, as the hub.
 * LRU, bounded by RS_API_VIEW_CACHE_RUNS views and RS_API_VIEW_CACHE_MB
 * megabytes (counted as the bytes of the events folded into each view,
 * which bounds what a view holds: it keeps at most every value of those
 * events once). A view is only ever complete: it starts at runseq 1
 * (run.created seen live, or the whole history read from the log) and
 * takes runseq N+1 only after N. A gap (events missed) drops the view,
 * and the next read rebuilds it from the log. A view bigger than a
 * quarter of the byte bound is not kept (answered from the log each time).
 *
 * Catching up and rebuilding, on a worker: a view a few events behind the
 * log reads just those (direct gets from the last RUNS sequence it
 * folded); a miss reads the whole history from the literal subject, by
 * direct gets for a few events, one ordered consumer beyond (docs/api.md
 * has the measurement).
 *
 * Threads: one mutex. The NATS delivery thread folds; workers read,
 * rebuild and insert; the service thread renders for waiters. Rendering
 * (JSON text) happens under the mutex, so no JSON value of a view is ever
 * shared outside it.
 */
#include "api.h"
#include "rs_mem.h"
#include "rs_event.h"
#include "rs_event_fast.h"
#include "rs_log.h"
#include "rs_map.h"
#include "rs_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vent {
	struct vent *newer, *older;     /* LRU list */
	char tenant[72];
	char run_id[RS_API_RUNKEY];
	size_t bytes;
	uint64_t sseq;                  /* RUNS sequence of the last event folded */
	rs_view v;
} vent;

struct rs_api_views {
	pthread_mutex_t mu;
	rs_map by_run;                  /* rs_api_run_mapkey -> vent (not owned) */
	vent *newest, *oldest;
	size_t n, bytes;
	size_t max_runs, max_bytes;
};

static vent *
find(rs_api_views *c, const char *tenant, const char *run_id)
{
	char key[RS_API_RUN_MAPKEY];

	rs_api_run_mapkey(key, tenant, run_id);
	return rs_map_get(&c->by_run, key);
}

static void
lru_unlink(rs_api_views *c, vent *e)
{
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void
lru_front(rs_api_views *c, vent *e)
{
	e->older = c->newest;
	e->newer = NULL;
	if (c->newest != NULL)
		c->newest->newer = e;
	c->newest = e;
	if (c->oldest == NULL)
		c->oldest = e;
}

static void
drop(rs_api_views *c, vent *e)
{
	char key[RS_API_RUN_MAPKEY];

	rs_api_run_mapkey(key, e->tenant, e->run_id);
	rs_map_take(&c->by_run, key);
	lru_unlink(c, e);
	c->n--;
	c->bytes -= e->bytes;
	rs_view_free(&e->v);
	free(e);
}

/* Evict the least recently used views until the bounds hold again. */
static void
trim(rs_api_views *c)
{
	while (c->oldest != NULL && (c->n > c->max_runs || c->bytes > c->max_bytes))
		drop(c, c->oldest);
	rs_api_metric_views((double)c->n, (double)c->bytes);
}

static vent *
insert(rs_api_views *c, const char *tenant, const char *run_id)
{
	vent *e = calloc(1, sizeof(*e));
	char key[RS_API_RUN_MAPKEY];

	if (e == NULL)
		rs_oom(0);
	snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
	snprintf(e->run_id, sizeof(e->run_id), "%s", run_id);
	rs_view_init(&e->v);
	e->bytes = sizeof(*e);
	rs_api_run_mapkey(key, tenant, run_id);
	if (rs_map_put(&c->by_run, key, e) != RS_OK)
		rs_oom(0);
	lru_front(c, e);
	c->n++;
	c->bytes += e->bytes;
	return e;
}

rs_status
rs_api_views_init(rs_api *app)
{
	rs_api_views *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return RS_ENOMEM;
	c->max_runs = (size_t)app->view_cache_runs;
	c->max_bytes = (size_t)app->view_cache_mb * 1048576u;
	pthread_mutex_init(&c->mu, NULL);
	app->views = c;
	return RS_OK;
}

void
rs_api_views_free(rs_api *app)
{
	rs_api_views *c = app->views;

	if (c == NULL)
		return;
	while (c->oldest != NULL)
		drop(c, c->oldest);
	pthread_mutex_destroy(&c->mu);
	rs_map_free(&c->by_run);
	free(c);
	app->views = NULL;
}

/* Fold ev (len bytes on the wire) into the view of (tenant, run_id): a
 * new view on runseq 1, the next event of a complete one, a gap drops it.
 * Caller holds the mutex. */
static void
fold_locked(rs_api_views *c, const char *tenant, const char *run_id, const rs_event *ev,
            size_t len, uint64_t sseq)
{
	vent *e = find(c, tenant, run_id);
	rs_status st;

	if (e == NULL) {
		if (ev->runseq != 1 || c->max_runs == 0)
			return;     /* the middle of a run we do not hold: a read rebuilds it */
		e = insert(c, tenant, run_id);
	}
	st = rs_view_apply(&e->v, ev);
	if (st == RS_EEXISTS)
		return;
	if (st != RS_OK) {
		drop(c, e);     /* a gap: no longer complete */
		return;
	}
	e->sseq = sseq;
	e->bytes += len;
	c->bytes += len;
	if (e->bytes > c->max_bytes / 4) {
		drop(c, e);
		return;
	}
	trim(c);
}

/* The event names the run of its subject. Else (only someone who can
 * publish to runs.> could do it) it is not that run's event: skipped, as
 * the view never takes a run's identity from a body. */
static int
of_subject(const rs_event *ev, const char *tenant, const char *run_id)
{
	return strcmp(ev->run_id, run_id) == 0 && strcmp(ev->tenant, tenant) == 0;
}

void
rs_api_views_live(rs_api *app, const char *tenant, const char *run_id, const char *data,
                  size_t len, uint64_t sseq)
{
	rs_event ev;
	char err[128];

	if (app->views == NULL)
		return;
	if (rs_event_decode_fast(data, len, &ev, err, sizeof(err)) != RS_OK) {
		/* Not foldable: whatever view we hold is no longer complete. */
		pthread_mutex_lock(&app->views->mu);
		vent *e = find(app->views, tenant, run_id);
		if (e != NULL)
			drop(app->views, e);
		pthread_mutex_unlock(&app->views->mu);
		return;
	}
	if (of_subject(&ev, tenant, run_id)) {
		pthread_mutex_lock(&app->views->mu);
		fold_locked(app->views, tenant, run_id, &ev, len, sseq);
		pthread_mutex_unlock(&app->views->mu);
	}
	rs_event_free(&ev);
}

/* Answers with a rendered view, outside the cache's lock: a queued run
 * also shows its place in its gate (gates.c, a KV read). Takes v. */
static void
reply(rs_api *app, const char *tenant, const char *run_id, json_t *v, rs_api_job *job)
{
	rs_api_gate_annotate(app, tenant, run_id, v);
	rs_api_json(job, 200, v);
}

rs_status
rs_api_views_render(rs_api *app, const char *tenant, const char *run_id, uint64_t min_seq,
                    int terminal, rs_api_job *job)
{
	rs_api_views *c = app->views;
	rs_status st = RS_ENOTFOUND;
	json_t *out = NULL;
	vent *e;

	if (c == NULL)
		return st;
	pthread_mutex_lock(&c->mu);
	if ((e = find(c, tenant, run_id)) != NULL && e->v.last_seq >= min_seq &&
	    e->v.last_seq > 0 && (!terminal || rs_view_terminal(&e->v))) {
		out = rs_view_json(&e->v);
		lru_unlink(c, e);
		lru_front(c, e);
		st = RS_OK;
	}
	pthread_mutex_unlock(&c->mu);
	if (st == RS_OK) {
		reply(app, tenant, run_id, out, job);
		rs_api_metric_view_read(0);
	}
	return st;
}

/* read_after's reader state. */
typedef struct {
	rs_event *evs;
	size_t *lens;
	uint64_t *sseqs;
	size_t n, max;
	uint64_t want;
} after_read;

static int
after_one(void *arg, natsMsg *m, uint64_t sseq)
{
	after_read *a = arg;
	char err[128];

	if (rs_event_decode_fast(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
	                         &a->evs[a->n], err, sizeof(err)) != RS_OK)
		return -1;
	a->lens[a->n] = (size_t)natsMsg_GetDataLength(m);
	a->sseqs[a->n] = sseq;
	return a->evs[a->n++].runseq >= a->want || a->n >= a->max;
}

/* The events of the run after RUNS sequence from, up to runseq want (at
 * most max of them), read by direct gets. Returns how many; *st set on a
 * log error. */
static size_t
read_after(rs_api *app, const char *tenant, const char *run_id, uint64_t from, uint64_t want,
           rs_event *evs, size_t *lens, uint64_t *sseqs, size_t max, rs_status *st)
{
	after_read a = { evs, lens, sseqs, 0, max, want };

	*st = rs_api_log_history(app, tenant, run_id, from, 0, after_one, &a);
	if (*st == RS_ERR)
		*st = RS_EINVAL;
	return a.n;
}

/* Up to this many events a history is read by direct gets, beyond it by
 * one ordered consumer (see rs_api_views_load). */
#define LOAD_GETS_MAX 6

/* A held view behind the log by a few events (the live consumer has not
 * delivered them yet): read just those, fold them, answer. RS_ENOTFOUND
 * when there is no view to bring up to date, or it is too far behind. */
#define CATCH_UP_MAX 32

static rs_status
catch_up(rs_api *app, const char *tenant, const char *run_id, uint64_t min_seq,
         rs_api_job *job)
{
	rs_api_views *c = app->views;
	rs_event evs[CATCH_UP_MAX];
	size_t lens[CATCH_UP_MAX];
	uint64_t sseqs[CATCH_UP_MAX], from, have;
	size_t n;
	rs_status st = RS_ENOTFOUND, rst;
	json_t *out = NULL;
	vent *e;

	pthread_mutex_lock(&c->mu);
	e = find(c, tenant, run_id);
	from = e != NULL ? e->sseq : 0;
	have = e != NULL ? e->v.last_seq : 0;
	if (e != NULL && have > 0 && have >= min_seq) {
		/* the live consumer got there meanwhile */
		out = rs_view_json(&e->v);
		st = RS_OK;
	}
	pthread_mutex_unlock(&c->mu);
	if (st == RS_OK) {
		reply(app, tenant, run_id, out, job);
		rs_api_metric_view_read(0);
		return st;
	}
	if (e == NULL || from == 0 || have == 0 || min_seq - have > CATCH_UP_MAX)
		return RS_ENOTFOUND;
	n = read_after(app, tenant, run_id, from, min_seq, evs, lens, sseqs, CATCH_UP_MAX, &rst);
	pthread_mutex_lock(&c->mu);
	if ((e = find(c, tenant, run_id)) != NULL) {
		for (size_t i = 0; i < n && e != NULL; i++) {
			if (!of_subject(&evs[i], tenant, run_id))
				continue;
			fold_locked(c, tenant, run_id, &evs[i], lens[i], sseqs[i]);
			e = find(c, tenant, run_id);    /* a gap drops it */
		}
		if (e != NULL && e->v.last_seq >= min_seq) {
			out = rs_view_json(&e->v);
			st = RS_OK;
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (out != NULL)
		reply(app, tenant, run_id, out, job);
	for (size_t i = 0; i < n; i++)
		rs_event_free(&evs[i]);
	if (st == RS_OK)
		rs_api_metric_view_read(0);
	return st;
}

rs_status
rs_api_views_catch_up(rs_api *app, const char *tenant, const char *run_id, uint64_t min_seq,
                      rs_api_job *job)
{
	if (app->views == NULL || app->views->max_runs == 0)
		return RS_ENOTFOUND;
	return catch_up(app, tenant, run_id, min_seq, job);
}

/* One stored event (RUNS sequence sseq) of the run being loaded into v. */
static rs_status
load_one(natsMsg *m, uint64_t sseq, const char *tenant, const char *run_id, rs_view *v,
         size_t *bytes)
{
	rs_event ev;
	char err[128];
	rs_status fs;

	if (rs_event_decode_fast(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err,
	                         sizeof(err)) != RS_OK) {
		rs_warn("views: run %s: an undecodable event at RUNS %llu: %s", run_id,
		        (unsigned long long)sseq, err);
		return RS_EINVAL;
	}
	*bytes += (size_t)natsMsg_GetDataLength(m);
	/* An event claiming another run is skipped (of_subject); one out of
	 * order means the history cannot be folded honestly. */
	fs = of_subject(&ev, tenant, run_id) ? rs_view_apply(v, &ev) : RS_EEXISTS;
	rs_event_free(&ev);
	if (fs != RS_OK && fs != RS_EEXISTS) {
		rs_warn("views: run %s: event out of order at RUNS %llu", run_id,
		        (unsigned long long)sseq);
		return RS_EINVAL;
	}
	return RS_OK;
}

/* rs_api_views_load's reader state. */
typedef struct {
	const char *tenant, *run_id;
	rs_view *v;
	size_t bytes;
	uint64_t last_sseq;
	rs_status st;
} view_load;

static int
load_each(void *arg, natsMsg *m, uint64_t sseq)
{
	view_load *l = arg;

	l->last_sseq = sseq;
	l->st = load_one(m, sseq, l->tenant, l->run_id, l->v, &l->bytes);
	return l->st == RS_OK ? 0 : -1;
}

rs_status
rs_api_views_load(rs_api *app, const char *tenant, const char *run_id, uint64_t nevents,
                  rs_api_job *job)
{
	uint64_t last_sseq;
	size_t bytes;
	rs_view v;
	view_load l = { tenant, run_id, &v, 0, 0, RS_OK };
	rs_status st;

	rs_view_init(&v);
	/* Measured (services/orchestrator/runcache.c, the same choice): past
	 * a handful of events one ordered consumer beats successive gets. */
	st = rs_api_log_history(app, tenant, run_id, 0, nevents > LOAD_GETS_MAX, load_each, &l);
	if (st == RS_ERR)
		st = l.st;
	last_sseq = l.last_sseq;
	bytes = l.bytes;
	if (st != RS_OK)
		goto cleanup;
	if (v.last_seq == 0) {
		st = RS_ENOTFOUND;
		goto cleanup;
	}
	if (v.last_seq < nevents) {
		/* Short of the floor the look-up set: the read was answered
		 * from older state (a resumed RUNS leader that has not yet
		 * heard it was replaced answers STREAM.MSG.GET for a moment).
		 * Never answer less than the log has: the caller retries. */
		st = RS_EUNAVAIL;
		goto cleanup;
	}
	reply(app, tenant, run_id, rs_view_json(&v), job);
	rs_api_metric_view_read(1);
	if (app->views != NULL && app->views->max_runs > 0 &&
	    sizeof(vent) + bytes <= app->views->max_bytes / 4) {
		rs_api_views *c = app->views;
		vent *e;

		pthread_mutex_lock(&c->mu);
		e = find(c, tenant, run_id);
		if (e == NULL || e->v.last_seq < v.last_seq) {
			if (e != NULL)
				drop(c, e);
			e = insert(c, tenant, run_id);
			e->v = v;                   /* moved: v is not freed below */
			e->sseq = last_sseq;
			rs_view_init(&v);
			e->bytes += bytes;
			c->bytes += bytes;
			trim(c);
		}
		pthread_mutex_unlock(&c->mu);
	}
cleanup:
	rs_view_free(&v);
	return st;
}
