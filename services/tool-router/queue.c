/*
 * queue.c - job queues between threads: the inbox drained by the lws
 * service thread, and one queue per worker thread for blocking NATS work.
 *
 * A job for a given key (a call's KV key, a device key) always goes to the
 * same worker, so the effects the router causes for one call happen in the
 * order it decided them (tool.delivered is published before tool.result,
 * presence put before presence delete).
 */
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_hash.h"
#include "rs_log.h"

void
rs_router_queue_init(rs_router_queue *q)
{
	memset(q, 0, sizeof(*q));
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
}

void
rs_router_queue_destroy(rs_router_queue *q)
{
	rs_router_job *j = rs_router_queue_take_all(q), *next;

	/* Jobs left at shutdown own only plain memory (see the job structs). */
	for (; j != NULL; j = next) {
		next = j->next;
		free(j);
	}
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
}

void
rs_router_queue_push(rs_router_queue *q, rs_router_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->tail != NULL)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

rs_router_job *
rs_router_queue_take_all(rs_router_queue *q)
{
	rs_router_job *j;

	pthread_mutex_lock(&q->mu);
	j = q->head;
	q->head = q->tail = NULL;
	pthread_mutex_unlock(&q->mu);
	return j;
}

rs_router_job *
rs_router_queue_pop(rs_router_queue *q)
{
	rs_router_job *j;

	pthread_mutex_lock(&q->mu);
	while (q->head == NULL && !q->closed)
		pthread_cond_wait(&q->cv, &q->mu);
	j = q->head;
	if (j != NULL) {
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
	}
	pthread_mutex_unlock(&q->mu);
	return j;
}

void
rs_router_queue_close(rs_router_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = 1;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

void
rs_router_post(rs_router *r, rs_router_job *j)
{
	rs_router_queue_push(&r->inbox, j);
	if (r->ctx != NULL)
		lws_cancel_service(r->ctx);
}

void
rs_router_work(rs_router *r, const char *key, rs_router_job *j)
{
	uint64_t h = key != NULL ? rs_hash_str(key) : 0;

	rs_router_queue_push(&r->workq[h % (uint64_t)r->nworkers], j);
}

typedef struct {
	rs_router *r;
	int idx;
} worker_arg;

static void *
worker_main(void *arg)
{
	worker_arg *wa = arg;
	rs_router *r = wa->r;
	rs_router_queue *q = &r->workq[wa->idx];
	rs_router_job *j;

	free(wa);
	while ((j = rs_router_queue_pop(q)) != NULL)
		j->fn(r, j);
	return NULL;
}

rs_status
rs_router_workers_start(rs_router *r)
{
	for (int i = 0; i < r->nworkers; i++) {
		worker_arg *wa = malloc(sizeof(*wa));

		if (wa == NULL)
			return RS_ENOMEM;
		wa->r = r;
		wa->idx = i;
		if (pthread_create(&r->workers[i], NULL, worker_main, wa) != 0) {
			free(wa);
			rs_error("router: cannot start worker %d", i);
			r->nworkers = i;
			return RS_ERR;
		}
	}
	return RS_OK;
}

/* Workers finish what is queued (results already promised to devices are
 * still published) and exit. */
void
rs_router_workers_stop(rs_router *r)
{
	for (int i = 0; i < r->nworkers; i++)
		rs_router_queue_close(&r->workq[i]);
	for (int i = 0; i < r->nworkers; i++)
		pthread_join(r->workers[i], NULL);
}
