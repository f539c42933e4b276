/*
 * pool.c - a fixed set of worker threads, each carrying out one effect at
 * a time. The fetch loop only fetches while a worker is free, so a burst
 * of slow model calls waits in JetStream (where another executor can take
 * it), not in this process; one slow model occupies one worker, never the
 * others or the fetch loop.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "executor.h"
#include "rs_time.h"

struct pool {
	executor *x;
	pthread_mutex_t mu;
	pthread_cond_t work;       /* a job was queued, or closing */
	pthread_cond_t freed;      /* a worker became free */
	job *head, *tail;
	job **running;             /* by worker: the job it holds, for InProgress */
	int nworkers, nbusy, nqueued, closed, nthreads;
	pthread_t *threads;
};

typedef struct {
	struct pool *p;
	int idx;
} worker_arg;

void
rs_exec_job_free(job *j)
{
	if (j == NULL)
		return;
	natsMsg_Destroy(j->req);
	rs_event_free(&j->ev);
	free(j);
}

static void *
worker_main(void *arg)
{
	worker_arg *wa = arg;
	struct pool *p = wa->p;
	int idx = wa->idx;
	job *j;

	free(wa);
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (p->head == NULL && !p->closed)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->head == NULL) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		j = p->head;
		p->head = j->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->nqueued--;
		p->nbusy++;
		p->running[idx] = j;
		rs_metric_set(rs_exec_em.busy, p->nbusy);
		pthread_mutex_unlock(&p->mu);

		rs_exec_job_run(p->x, j);

		pthread_mutex_lock(&p->mu);
		p->running[idx] = NULL;
		p->nbusy--;
		rs_metric_set(rs_exec_em.busy, p->nbusy);
		pthread_cond_broadcast(&p->freed);
		pthread_mutex_unlock(&p->mu);
		rs_exec_job_free(j);
	}
}

struct pool *
rs_exec_pool_new(executor *x, int nworkers)
{
	struct pool *p = calloc(1, sizeof(*p));
	worker_arg *wa;

	if (p == NULL)
		return NULL;
	p->x = x;
	p->nworkers = nworkers;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->freed, NULL);
	p->threads = calloc((size_t)nworkers, sizeof(*p->threads));
	p->running = calloc((size_t)nworkers, sizeof(*p->running));
	if (p->threads == NULL || p->running == NULL)
		goto fail;
	for (int i = 0; i < nworkers; i++) {
		if ((wa = malloc(sizeof(*wa))) == NULL)
			goto fail;
		wa->p = p;
		wa->idx = i;
		if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
			free(wa);
			goto fail;
		}
		p->nthreads++;
	}
	return p;
fail:
	rs_exec_pool_stop(p, 0);
	rs_exec_pool_free(p);
	return NULL;
}

int
rs_exec_pool_wait_free(struct pool *p, int64_t timeout_ms)
{
	struct timespec ts;
	int nfree;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&p->mu);
	while ((nfree = p->nworkers - p->nbusy - p->nqueued) <= 0 && !p->closed)
		if (pthread_cond_timedwait(&p->freed, &p->mu, &ts) != 0)
			break;
	nfree = p->closed ? 0 : p->nworkers - p->nbusy - p->nqueued;
	pthread_mutex_unlock(&p->mu);
	return nfree > 0 ? nfree : 0;
}

void
rs_exec_pool_submit(struct pool *p, job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->tail)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->nqueued++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
}

void
rs_exec_pool_touch(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	for (int i = 0; i < p->nworkers; i++)
		if (p->running[i] != NULL)
			natsMsg_InProgress(p->running[i]->req, NULL);
	pthread_mutex_unlock(&p->mu);
}

void
rs_exec_pool_stop(struct pool *p, int64_t grace_ms)
{
	int64_t deadline = rs_mono_ms() + grace_ms;
	job *j, *next;
	int busy;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->closed = 1;
	/* Not started: another instance takes them right away. */
	for (j = p->head; j != NULL; j = next) {
		next = j->next;
		natsMsg_Nak(j->req, NULL);
		rs_exec_job_free(j);
	}
	p->head = p->tail = NULL;
	p->nqueued = 0;
	pthread_cond_broadcast(&p->work);
	pthread_cond_broadcast(&p->freed);
	pthread_mutex_unlock(&p->mu);
	for (;;) {
		pthread_mutex_lock(&p->mu);
		busy = p->nbusy;
		pthread_mutex_unlock(&p->mu);
		if (busy == 0 || rs_mono_ms() >= deadline)
			break;
		struct timespec ts = { 0, 20 * 1000000 };
		nanosleep(&ts, NULL);
	}
	if (busy == 0) {
		for (int i = 0; i < p->nthreads; i++)
			pthread_join(p->threads[i], NULL);
		p->nthreads = 0;
	}
}

int
rs_exec_pool_stopped(const struct pool *p)
{
	return p->nthreads == 0;
}

void
rs_exec_pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	/* Workers still running an effect past the grace period keep the
	 * pool: the process is exiting and their requests will be redelivered. */
	if (p->nthreads > 0)
		return;
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->freed);
	free(p->threads);
	free(p->running);
	free(p);
}
