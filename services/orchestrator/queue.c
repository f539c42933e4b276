/*
 * queue.c - the engine's inbox: an unbounded FIFO of q_items under one
 * mutex. Producers are the fetcher and the nats.c ack thread; the engine
 * takes the whole list at once so the lock is held once per batch, not
 * once per message.
 */
#include <errno.h>
#include <time.h>

#include "orch.h"

void
q_init(orch_queue *q)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cv, &ca);
	pthread_condattr_destroy(&ca);
	q->head = q->tail = NULL;
	q->closed = 0;
}

void
q_destroy(orch_queue *q)
{
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
}

void
q_push(orch_queue *q, q_item *it)
{
	it->next = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->tail != NULL)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

void
q_wake(orch_queue *q)
{
	pthread_mutex_lock(&q->mu);
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

q_item *
q_take_all(orch_queue *q, int64_t timeout_ms)
{
	struct timespec ts;
	q_item *all;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->mu);
	while (q->head == NULL) {
		if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT)
			break;
	}
	all = q->head;
	q->head = q->tail = NULL;
	pthread_mutex_unlock(&q->mu);
	return all;
}
