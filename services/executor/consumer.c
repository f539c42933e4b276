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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "rs_log.h"
#include "rs_time.h"

#define FETCH_BATCH 128
#define FETCH_WAIT_MS 500
#define TOUCH_EVERY_MS 15000
#define NAK_DELAY_MS 1000

static rs_status
bind(executor *x)
{
	jsSubOptions so;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	s = js_GetConsumerInfo(&ci, x->nats.js, "RUNS", "executor", NULL, &jerr);
	jsConsumerInfo_Destroy(ci);
	if (s != NATS_OK) {
		rs_error("consumer RUNS/executor missing (run `runctl streams apply`): %s",
		         natsStatus_GetText(s));
		return RS_ENOTFOUND;
	}
	jsSubOptions_Init(&so);
	so.Stream = "RUNS";
	so.Consumer = "executor";
	/* nats.c checks what we bind to against these. */
	so.Config.HeadersOnly = true;
	so.Config.DeliverPolicy = js_DeliverNew;
	s = js_PullSubscribe(&x->sub, x->nats.js, "runs.>", "executor", NULL, &so, &jerr);
	if (s != NATS_OK) {
		rs_error("cannot bind to RUNS/executor: %s (%d): %s", natsStatus_GetText(s), (int)jerr,
		         nats_GetLastError(NULL));
		return rs_nats_status(s, jerr);
	}
	atomic_store(&x->bound, 1);
	return RS_OK;
}

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

/* One delivered event header: ack it, or turn it into a job. */
static void
on_msg(executor *x, natsMsg *msg)
{
	const char *type = NULL;
	jsMsgMetaData *meta = NULL;
	char err[300];
	job *j;
	rs_status st;

	rs_metric_inc(em.events_seen);
	natsMsgHeader_Get(msg, "Runstream-Type", &type);
	if (type == NULL || (strcmp(type, "llm.requested") != 0 &&
	                     strcmp(type, "http.requested") != 0)) {
		natsMsg_Ack(msg, NULL);
		natsMsg_Destroy(msg);
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL || natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
		free(j);
		natsMsg_NakWithDelay(msg, NAK_DELAY_MS, NULL);
		natsMsg_Destroy(msg);
		return;
	}
	j->req = msg;
	j->ndelivered = meta->NumDelivered;
	st = load_request(x, meta->Sequence.Stream, &j->ev, err, sizeof(err));
	jsMsgMetaData_Destroy(meta);
	if (j->ndelivered > 1)
		rs_metric_inc(em.redeliveries);
	if (st == RS_EUNAVAIL) {
		rs_warn("%s", err);
		natsMsg_NakWithDelay(msg, NAK_DELAY_MS, NULL);
		job_free(j);
		return;
	}
	if (st != RS_OK) {
		/* A request we cannot read will never become readable. */
		rs_error("undecodable %s: %s", type, err);
		natsMsg_Ack(msg, NULL);
		job_free(j);
		return;
	}
	if (run_finished(x, &j->ev)) {
		rs_metric_inc(em.skipped);
		natsMsg_Ack(msg, NULL);
		job_free(j);
		return;
	}
	pool_submit(x->pool, j);
}

void
job_run(executor *x, job *j)
{
	int kind = j->ev.type == RS_EV_LLM_REQUESTED ? EK_LLM : EK_HTTP;
	int64_t t0 = rs_mono_us();
	rs_status st;

	st = kind == EK_LLM ? llm_run(x, &j->ev) : webhook_run(x, &j->ev);
	rs_metric_observe(em.effect_duration, (double)(rs_mono_us() - t0) / 1e6);
	if (st == RS_OK) {
		natsMsg_Ack(j->req, NULL);
		return;
	}
	rs_log(RS_LOG_WARN, j->ev.run_id, NULL, "effect not answered (%s): redelivered later",
	       rs_status_str(st));
	natsMsg_NakWithDelay(j->req, NAK_DELAY_MS, NULL);
}

static void *
fetch_main(void *arg)
{
	executor *x = arg;
	natsMsgList list;
	int64_t touched = rs_mono_ms();
	natsStatus s;
	int nfree;

	while (!atomic_load(&x->stopping)) {
		if (rs_mono_ms() - touched > TOUCH_EVERY_MS) {
			pool_touch(x->pool);
			touched = rs_mono_ms();
		}
		if ((nfree = pool_wait_free(x->pool, FETCH_WAIT_MS)) == 0)
			continue;
		memset(&list, 0, sizeof(list));
		s = natsSubscription_Fetch(&list, x->sub, FETCH_BATCH, FETCH_WAIT_MS, NULL);
		if (s != NATS_OK && s != NATS_TIMEOUT) {
			if (!atomic_load(&x->stopping))
				rs_warn("fetch: %s", natsStatus_GetText(s));
			nats_Sleep(200);
		}
		for (int i = 0; i < list.Count; i++) {
			on_msg(x, list.Msgs[i]);
			list.Msgs[i] = NULL;   /* on_msg took it */
		}
		natsMsgList_Destroy(&list);
	}
	return NULL;
}

rs_status
consumer_start(executor *x)
{
	rs_status st;

	if ((st = bind(x)) != RS_OK)
		return st;
	if (pthread_create(&x->fetch_thread, NULL, fetch_main, x) != 0)
		return RS_ERR;
	return RS_OK;
}

void
consumer_join(executor *x)
{
	if (x->fetch_thread)
		pthread_join(x->fetch_thread, NULL);
}
