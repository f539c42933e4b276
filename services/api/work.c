/*
 * work.c - the worker pool and the queue back to the lws service thread.
 *
 * Blocking work (KV, JetStream round trips, Postgres) must never run on the
 * service thread, or one slow Postgres query would stall every SSE stream.
 * Workers pop jobs, run them, and push them onto the done queue; live
 * frames from the NATS subscription use the same queue. One
 * lws_cancel_service() per push wakes the service thread, which drains
 * everything in LWS_CALLBACK_EVENT_WAIT_CANCELLED (rs_api_work_drain),
 * handing each to app->on_job_done / app->on_frame (http.c sets them).
 */
#include "api.h"
#include "rs_log.h"
#include "rs_time.h"

#include <stdlib.h>
#include <string.h>

struct rs_api_work {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	rs_api_job *todo_head, *todo_tail;
	int stop;
	pthread_t *threads;
	int nthreads;
	/* back to the service thread */
	pthread_mutex_t dmu;
	rs_api_job *done_head, *done_tail;
	rs_api_frame *fr_head, *fr_tail;
	int wake_pending;           /* a cancel_service is already on its way */
	atomic_int inflight;
};

rs_api_job *
rs_api_job_new(void)
{
	rs_api_job *j = calloc(1, sizeof(*j));

	if (j != NULL)
		j->t0_us = rs_mono_us();
	return j;
}

void
rs_api_job_free(rs_api_job *job)
{
	if (job == NULL)
		return;
	free(job->body);
	free(job->resp);
	for (size_t i = 0; i < job->nframes; i++)
		rs_api_frame_unref(job->frames[i]);
	free(job->frames);
	free(job);
}

static void *
worker_main(void *arg)
{
	rs_api *app = arg;
	rs_api_work *w = app->work;
	rs_api_job *j;

	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (w->todo_head == NULL && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->todo_head == NULL) {
			pthread_mutex_unlock(&w->mu);
			break;
		}
		j = w->todo_head;
		w->todo_head = j->next;
		if (w->todo_head == NULL)
			w->todo_tail = NULL;
		pthread_mutex_unlock(&w->mu);
		j->next = NULL;
		/* A job that starts async publishes hands itself to the ack
		 * handler (fn returns 1) instead of completing here: after that the
		 * job may already be freed, so it is not touched again. */
		if (j->fn(app, j) == 0)
			rs_api_work_done(app, j);
	}
	rs_api_reads_close_thread();
	return NULL;
}

rs_status
rs_api_work_start(rs_api *app, int nworkers)
{
	rs_api_work *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return RS_ENOMEM;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	pthread_mutex_init(&w->dmu, NULL);
	w->threads = calloc((size_t)nworkers, sizeof(pthread_t));
	if (w->threads == NULL) {
		free(w);
		return RS_ENOMEM;
	}
	app->work = w;
	for (int i = 0; i < nworkers; i++) {
		if (pthread_create(&w->threads[i], NULL, worker_main, app) != 0)
			break;
		w->nthreads++;
	}
	return w->nthreads == nworkers ? RS_OK : RS_ERR;
}

void
rs_api_work_stop(rs_api *app)
{
	rs_api_work *w = app->work;
	rs_api_job *j;
	rs_api_frame *f;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	while ((j = w->todo_head) != NULL) {
		w->todo_head = j->next;
		rs_api_job_free(j);
	}
	while ((j = w->done_head) != NULL) {
		w->done_head = j->next;
		rs_api_job_free(j);
	}
	while ((f = w->fr_head) != NULL) {
		w->fr_head = f->next;
		rs_api_frame_unref(f);
	}
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->dmu);
	free(w->threads);
	free(w);
	app->work = NULL;
}

void
rs_api_work_submit(rs_api *app, rs_api_job *job)
{
	rs_api_work *w = app->work;

	atomic_fetch_add(&w->inflight, 1);
	job->next = NULL;
	pthread_mutex_lock(&w->mu);
	if (w->todo_tail != NULL)
		w->todo_tail->next = job;
	else
		w->todo_head = job;
	w->todo_tail = job;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void
wake(rs_api *app, int need)
{
	/* lws_cancel_service writes to a pipe: once per drain is enough. */
	if (need && app->ctx != NULL)
		lws_cancel_service(app->ctx);
}

void
rs_api_work_done(rs_api *app, rs_api_job *job)
{
	rs_api_work *w = app->work;
	int need;

	job->next = NULL;
	pthread_mutex_lock(&w->dmu);
	if (w->done_tail != NULL)
		w->done_tail->next = job;
	else
		w->done_head = job;
	w->done_tail = job;
	need = !w->wake_pending;
	w->wake_pending = 1;
	pthread_mutex_unlock(&w->dmu);
	wake(app, need);
}

void
rs_api_work_frame(rs_api *app, rs_api_frame *f)
{
	rs_api_work *w = app->work;
	int need;

	f->next = NULL;
	pthread_mutex_lock(&w->dmu);
	if (w->fr_tail != NULL)
		w->fr_tail->next = f;
	else
		w->fr_head = f;
	w->fr_tail = f;
	need = !w->wake_pending;
	w->wake_pending = 1;
	pthread_mutex_unlock(&w->dmu);
	wake(app, need);
}

void
rs_api_work_drain(rs_api *app)
{
	rs_api_work *w = app->work;
	rs_api_job *jobs, *j;
	rs_api_frame *frames, *f;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->dmu);
	jobs = w->done_head;
	frames = w->fr_head;
	w->done_head = w->done_tail = NULL;
	w->fr_head = w->fr_tail = NULL;
	w->wake_pending = 0;
	pthread_mutex_unlock(&w->dmu);

	/* Frames first: a replay that completes in this same drain then
	 * finds the live frames already held, which is harmless either way. */
	while ((f = frames) != NULL) {
		frames = f->next;
		f->next = NULL;
		app->on_frame(app, f);
	}
	while ((j = jobs) != NULL) {
		rs_api_ticket *t = j->ticket;
		rs_api_req *r = t != NULL ? t->req : NULL;

		jobs = j->next;
		j->next = NULL;
		atomic_fetch_sub(&w->inflight, 1);
		/* One ticket per job: whoever sees it last frees it. A live
		 * request still points at it; a closed one cleared t->req. */
		j->ticket = NULL;
		if (r != NULL && r->ticket == t)
			r->ticket = NULL;
		free(t);
		if (r != NULL)
			app->on_job_done(app, r, j);   /* takes j */
		else
			rs_api_job_free(j);
	}
}

int
rs_api_work_inflight(rs_api *app)
{
	return app->work != NULL ? atomic_load(&app->work->inflight) : 0;
}
