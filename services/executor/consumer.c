/*
 * consumer.c - where the executor's work comes from: the durable pull
 * consumer `executor` on RUNS (streams/RUNS.executor.json), headers only.
 *
 * Every run event passes by, as headers: the type is in Runstream-Type,
 * so all but http.requested / llm.requested are acked unread. A request
 * is read in full by its stream sequence (direct get: any replica, no
 * consumer state) and handed to a worker, which acks it only once its
 * answer is durable on CMDS. So a crash at any point re-delivers the
 * request and the effect is re-issued with the same ids (at-least-once);
 * the state machine ignores an answer for an effect no longer pending.
 * A request of a run that already ended is acked without being performed.
 * The loop is common/rs_consume.h: a request reaches a worker as soon as it
 * is stored; a batch is asked for only when a worker is free; the ticker
 * marks running effects in progress every 15 s (AckWait 60 s).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "rs_log.h"
#include "rs_time.h"

#define BATCH 128
#define TOUCH_EVERY_MS 15000
#define NAK_DELAY_MS 1000

/* 1 if the run's last event is terminal (its requests need no effect). */
static int
run_finished(executor *x, const rs_event *ev)
{
	char subj[160];
	const char *type = NULL;
	natsMsg *last = NULL;
	rs_event_type t;
	int done;

	rs_event_subject(ev->tenant, ev->run_id, subj, sizeof(subj));
	if (js_GetLastMsg(&last, x->nats.js, "RUNS", subj, NULL, NULL) != NATS_OK)
		return 0;
	natsMsgHeader_Get(last, "Runstream-Type", &type);
	done = type != NULL && rs_event_type_parse(type, &t) == RS_OK && rs_event_type_terminal(t);
	natsMsg_Destroy(last);
	return done;
}

/* Read the request at stream sequence seq and decode it. */
static rs_status
load_request(executor *x, uint64_t seq, rs_event *ev, char *err, size_t cap)
{
	jsDirectGetMsgOptions o;
	natsMsg *m = NULL;
	natsStatus s;
	rs_status st;

	jsDirectGetMsgOptions_Init(&o);
	o.Sequence = seq;
	s = js_DirectGetMsg(&m, x->nats.js, "RUNS", NULL, &o);
	if (s != NATS_OK) {
		snprintf(err, cap, "direct get of RUNS #%llu: %s", (unsigned long long)seq,
		         natsStatus_GetText(s));
		return RS_EUNAVAIL;
	}
	st = rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), ev, err, cap);
	if (st == RS_OK) {
		/* Secrets are resolved for ev->tenant: it must be the tenant of
		 * the subject the request was stored on. */
		char subj[160];
		rs_event_subject(ev->tenant, ev->run_id, subj, sizeof(subj));
		if (natsMsg_GetSubject(m) == NULL || strcmp(natsMsg_GetSubject(m), subj) != 0) {
			snprintf(err, cap, "RUNS #%llu: event of %s stored on %s",
			         (unsigned long long)seq, subj, natsMsg_GetSubject(m) ? natsMsg_GetSubject(m) : "?");
			rs_event_free(ev);
			st = RS_EINVAL;
		}
	}
	natsMsg_Destroy(m);
	return st;
}

/* One delivered event header: ack it, or turn it into a job (TAKEN: the
 * worker settles it). */
static rs_consume_disp
on_msg(executor *x, natsMsg *msg)
{
	const char *type = NULL;
	jsMsgMetaData *meta = NULL;
	char err[300];
	job *j;
	rs_status st;

	rs_metric_inc(rs_exec_em.events_seen);
	natsMsgHeader_Get(msg, "Runstream-Type", &type);
	if (type == NULL || (strcmp(type, "llm.requested") != 0 &&
	                     strcmp(type, "http.requested") != 0))
		return RS_CONSUME_ACK;
	if ((j = calloc(1, sizeof(*j))) == NULL || natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
		free(j);
		return RS_CONSUME_NAK_DELAY;
	}
	j->ndelivered = meta->NumDelivered;
	st = load_request(x, meta->Sequence.Stream, &j->ev, err, sizeof(err));
	jsMsgMetaData_Destroy(meta);
	if (j->ndelivered > 1)
		rs_metric_inc(rs_exec_em.redeliveries);
	if (st == RS_EUNAVAIL) {
		rs_warn("%s", err);
		rs_exec_job_free(j);
		return RS_CONSUME_NAK_DELAY;
	}
	if (st != RS_OK) {
		/* A request we cannot read will never become readable. */
		rs_error("undecodable %s: %s", type, err);
		rs_exec_job_free(j);
		return RS_CONSUME_ACK;
	}
	if (run_finished(x, &j->ev)) {
		rs_metric_inc(rs_exec_em.skipped);
		rs_exec_job_free(j);
		return RS_CONSUME_ACK;
	}
	j->req = msg;
	rs_exec_pool_submit(x->pool, j);
	return RS_CONSUME_TAKEN;
}

void
rs_exec_job_run(executor *x, job *j)
{
	int kind = j->ev.type == RS_EV_LLM_REQUESTED ? EK_LLM : EK_HTTP;
	int64_t t0 = rs_mono_us();
	rs_status st;

	st = kind == EK_LLM ? rs_exec_llm_run(x, &j->ev) : rs_exec_webhook_run(x, &j->ev);
	rs_metric_observe(rs_exec_em.effect_duration, (double)(rs_mono_us() - t0) / 1e6);
	if (st == RS_OK) {
		natsMsg_Ack(j->req, NULL);
		return;
	}
	rs_log(RS_LOG_WARN, j->ev.run_id, NULL, "effect not answered (%s): redelivered later",
	       rs_status_str(st));
	natsMsg_NakWithDelay(j->req, NAK_DELAY_MS, NULL);
}

static void
on_batch(void *arg, natsMsg **msgs, int n, rs_consume_out *out)
{
	for (int i = 0; i < n; i++) {
		out[i].disp = on_msg(arg, msgs[i]);
		out[i].delay_ms = NAK_DELAY_MS;
	}
}

/* A batch only when a worker is free: a request then never waits in our
 * memory while its AckWait runs. */
static int
room(void *arg, int64_t wait_ms)
{
	executor *x = arg;

	return rs_exec_pool_wait_free(x->pool, wait_ms) > 0 ? BATCH : 0;
}

/* Long effects: JetStream is told they are still in progress. */
static void
on_tick(void *arg)
{
	executor *x = arg;

	rs_exec_pool_touch(x->pool);
}

rs_status
rs_exec_consumer_start(executor *x)
{
	rs_consume_cfg cfg = {
		.name = "executor",
		.stream = "RUNS",
		.durable = "executor",
		.filter = "runs.>",
		.headers_only = true,
		.batch = BATCH,
		.on_batch = on_batch,
		.room = room,
		.on_tick = on_tick,
		.tick_ms = TOUCH_EVERY_MS,
		.arg = x,
	};
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	rs_status st;

	s = js_GetConsumerInfo(&ci, x->nats.js, "RUNS", "executor", NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	if (s != NATS_OK) {
		rs_error("consumer RUNS/executor missing (run `runctl streams apply`): %s",
		         natsStatus_GetText(s));
		return RS_ENOTFOUND;
	}
	if ((st = rs_consume_start(&x->consumer, x->nats.nc, x->nats.js, &cfg)) != RS_OK)
		return st;
	atomic_store(&x->bound, 1);
	return RS_OK;
}

void
rs_exec_consumer_join(executor *x)
{
	rs_consume_join(x->consumer);
}

void
rs_exec_consumer_free(executor *x)
{
	rs_consume_free(x->consumer);
	x->consumer = NULL;
}
