/*
 * calls_result.c - a device's result for a call: checked on the service
 * thread against the call this connection holds, then on a worker the KV
 * record moves to done (CAS) and tool.result goes to CMDS, at most once per
 * call whatever the device repeats. Split from calls.c (see its opening
 * comment for the design of calls as KV records).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calls_int.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_mem.h"
#include "rs_time.h"

/* ---- results -------------------------------------------------------- */

/* The done record of a call answered by device, with the answer in it
 * ({"output": ..} or {"error": ..}) as the second copy of its tool.result:
 * nats-server 2.9.10 can lose a command CMDS acknowledged
 * (docs/architecture.md, "Streams"), and the orchestrator then publishes
 * the call again (rs_run_late_effects), which brings the answer back from
 * here (rs_router_calls_result_again). An answer too large to fit a
 * message beside the call is left out: that call ends in its timeout. */
static char *
done_record(rs_router *r, json_t *callobj, const char *device, json_t *answer, int is_error)
{
	json_t *res = answer != NULL ? json_pack("{s:O}", is_error ? "error" : "output", answer) : NULL;
	char *rec = rs_router_calls_record_encode_done(callobj, CALL_DONE, device, r->instance, 0, res);
	int64_t max = natsConnection_GetMaxPayload(r->nats.nc);

	json_decref(res);
	if (rec != NULL && res != NULL && (int64_t)strlen(rec) > max - 4096) {
		free(rec);
		rec = rs_router_calls_record_encode(callobj, CALL_DONE, device, r->instance, 0);
	}
	return rec;
}

/* A result's record: tries, 50 ms doubling to 1 s apart (about a minute). */
#define RESULT_ATTEMPTS 64

static int
result_retry(rs_router *r, int attempt)
{
	if (atomic_load(&r->stopping) && attempt > 2)
		return 0;
	usleep((useconds_t)(attempt < 4 ? 50000 << attempt : 1000000));
	return 1;
}

/* tool.result to CMDS: answer is the device's output, or its error. */
static void
send_result(rs_router *r, const char *run_id, const char *tenant, const char *call_id,
            const char *device, json_t *answer, int is_error, uint64_t again)
{
	rs_cmd c;

	memset(&c, 0, sizeof(c));
	c.type = RS_CMD_TOOL_RESULT;
	snprintf(c.run_id, sizeof(c.run_id), "%s", run_id);
	snprintf(c.tenant, sizeof(c.tenant), "%s", tenant);
	c.call_id = (char *)call_id;
	c.device_id = (char *)device;
	if (is_error) {
		json_t *rt = json_object_get(answer, "retryable");
		c.has_error = 1;
		c.error.code = (char *)json_string_value(json_object_get(answer, "code"));
		c.error.message = (char *)json_string_value(json_object_get(answer, "message"));
		c.error.retryable = json_is_true(rt);
		c.error.cls = c.error.retryable ? RS_ERRCLASS_TRANSIENT : RS_ERRCLASS_PERMANENT;
	} else {
		c.output = answer;
	}
	rs_router_calls_publish_cmd(r, &c, again);
}

typedef struct {
	rs_router_job j;
	uint64_t rev;
	char *key, *record, *run_id, *tenant, *call_id, *device, *body;
	int is_error;
	char data[];
} result_job;

/* Worker: CAS the record to done, then publish the tool.result command.
 * The CAS comes first so that two results (two devices, a duplicate after
 * redelivery, a result racing a cancel) yield at most one command. */
static void
result_work(rs_router *r, rs_router_job *jj)
{
	result_job *j = (result_job *)jj;
	char *record = j->record[0] ? strdup(j->record) : NULL;
	char run_id[40];
	uint64_t rev = j->rev;
	kvEntry *e = NULL;
	int won = 0, unanswered = 0;
	json_t *body = NULL;
	char err[200];

	snprintf(run_id, sizeof(run_id), "%s", j->run_id);
	if (rs_json_parse(j->body, strlen(j->body), &body, err, sizeof(err)) != RS_OK)
		goto cleanup;   /* cannot happen: the service thread encoded it */
	/* The device is not told whether its result was taken, and does not
	 * send it again: keep at it through a leader election or a node
	 * restart (about a minute), never drop it after a few tries. */
	for (int attempt = 0; attempt < RESULT_ATTEMPTS && !won; attempt++) {
		if (record == NULL) {
			rs_router_call cur;
			natsStatus s = kvStore_Get(&e, r->kv_calls, j->key);

			if (s != NATS_OK && s != NATS_NOT_FOUND && result_retry(r, attempt))
				continue;   /* no answer (a leader election): read again */
			if (s != NATS_OK) {
				rs_debug("router: result for unknown call %s ignored", j->call_id);
				goto cleanup;
			}
			memset(&cur, 0, sizeof(cur));
			if (unanswered && rs_router_calls_record_decode(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &cur) == RS_OK &&
			    cur.state == CALL_DONE && cur.device != NULL && strcmp(cur.device, j->device) == 0 &&
			    cur.router != NULL && strcmp(cur.router, r->instance) == 0) {
				/* Our own write of this job, whose answer was lost:
				 * won. (Or a second result of the device taken here
				 * that won meanwhile: its tool.result has the same
				 * Nats-Msg-Id, result-<call_id>, and is de-duplicated.) */
				won = 1;
				snprintf(run_id, sizeof(run_id), "%s", cur.tc.run_id);
			}
			if (won || unanswered) {
				rs_toolcall_free(&cur.tc);
				json_decref(cur.callobj);
				free(cur.device);
				free(cur.router);
				memset(&cur, 0, sizeof(cur));
			}
			if (won)
				break;
			if (rs_router_calls_record_decode(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &cur) != RS_OK ||
			    cur.state == CALL_DONE || cur.state == CALL_CANCELLED ||
			    !((cur.device && strcmp(cur.device, j->device) == 0) ||
			      (cur.tc.device && strcmp(cur.tc.device, j->device) == 0))) {
				rs_metric_inc(r->m.results_ignored);
				rs_debug("router: result for call %s ignored (answered, cancelled or not this device's)",
				         j->call_id);
				rs_toolcall_free(&cur.tc);
				json_decref(cur.callobj);
				free(cur.device);
				free(cur.router);
				goto cleanup;
			}
			rev = kvEntry_Revision(e);
			snprintf(run_id, sizeof(run_id), "%s", cur.tc.run_id);
			record = done_record(r, cur.callobj, j->device, body, j->is_error);
			rs_toolcall_free(&cur.tc);
			json_decref(cur.callobj);
			free(cur.device);
			free(cur.router);
			kvEntry_Destroy(e);
			e = NULL;
			if (record == NULL)
				goto cleanup;
		}
		{
			rs_status st = rs_router_calls_cas_put(r, j->key, record, rev, NULL);

			if (st == RS_OK) {
				won = 1;
			} else {
				/* Read it again: a newer revision (lost race, or our
				 * own write whose answer was lost), or a retry. */
				if (st != RS_ECONFLICT) {
					/* Sticky: a follower answering the read
					 * below may not show our write yet. */
					unanswered = 1;
					if (!result_retry(r, attempt))
						attempt = RESULT_ATTEMPTS;   /* stopping: give up */
				}
				free(record);
				record = NULL;
			}
		}
	}
	if (!won) {
		rs_log(RS_LOG_ERROR, run_id, NULL, "router: the result of call %s could not be recorded "
		       "(KV calls unavailable): left to the step's timeout", j->call_id);
		goto cleanup;
	}
	send_result(r, run_id, j->tenant, j->call_id, j->device, body, j->is_error, 0);
	rs_metric_inc(r->m.results);
cleanup:
	json_decref(body);
	kvEntry_Destroy(e);
	free(record);
	free(j);
}

void
rs_router_calls_result(rs_router *r, rs_router_conn *conn, const rs_router_frame *f)
{
	char key[200];
	rs_router_call *c;
	char *rec = NULL, *body;
	const char *src[7];
	size_t n = 0, off = 0;
	result_job *j;
	char **dst[7];
	const rs_router_device *d = conn->dev;

	rs_router_call_key(d->tenant, f->call_id, key, sizeof(key));
	c = rs_router_calls_find_call(r, key);
	if (c != NULL) {
		if (c->answered || c->state == CALL_DONE || c->state == CALL_CANCELLED ||
		    !((c->device && strcmp(c->device, d->device_id) == 0) ||
		      (c->tc.device && strcmp(c->tc.device, d->device_id) == 0))) {
			rs_metric_inc(r->m.results_ignored);
			rs_debug("router: result for call %s from %s ignored", f->call_id, d->key);
			return;
		}
		c->answered = 1;
		if (c->sent_us != 0)
			rs_metric_observe(r->m.deliver_latency, (double)(rs_mono_us() - c->sent_us) / 1e6);
		/* Our view may be stale (inflight CAS, watch lag): then the
		 * worker reads the record itself. */
		if (!c->inflight && !c->stale)
			rec = done_record(r, c->callobj, d->device_id, f->error ? f->error : f->output,
			                  f->error != NULL);
	}
	body = json_dumps(f->error ? f->error : f->output, JSON_COMPACT | JSON_ENCODE_ANY);
	if (body == NULL)
		goto cleanup;
	src[0] = key; src[1] = rec ? rec : ""; src[2] = c ? c->tc.run_id : "";
	src[3] = d->tenant; src[4] = f->call_id; src[5] = d->device_id; src[6] = body;
	for (int i = 0; i < 7; i++)
		n += strlen(src[i]) + 1;
	j = calloc(1, sizeof(*j) + n);
	if (j == NULL)
		goto cleanup;
	dst[0] = &j->key; dst[1] = &j->record; dst[2] = &j->run_id; dst[3] = &j->tenant;
	dst[4] = &j->call_id; dst[5] = &j->device; dst[6] = &j->body;
	for (int i = 0; i < 7; i++) {
		size_t l = strlen(src[i]) + 1;
		*dst[i] = j->data + off;
		memcpy(j->data + off, src[i], l);
		off += l;
	}
	j->j.fn = result_work;
	j->rev = rec ? c->rev : 0;
	j->is_error = f->error != NULL;
	rs_router_work(r, key, &j->j);
cleanup:
	free(body);
	free(rec);
}

/* ---- a result sent again ---------------------------------------------- */

typedef struct {
	rs_router_job j;
	uint64_t seq;
	char key[];
} again_job;

/* Worker: the record of a call the orchestrator published again. Done
 * with the answer kept: the tool.result again (the orchestrator takes the
 * first result of a call and ignores the others). Anything else: nothing
 * (cancelled; or delivered or pending, which the watch follows). */
static void
again_work(rs_router *r, rs_router_job *jj)
{
	again_job *j = (again_job *)jj;
	kvEntry *e = NULL;
	rs_router_call cur;
	json_t *o = NULL, *res, *answer;
	char err[200];

	memset(&cur, 0, sizeof(cur));
	if (kvStore_Get(&e, r->kv_calls, j->key) != NATS_OK)
		goto cleanup;   /* gone, or no answer now: the orchestrator asks again later */
	if (rs_router_calls_record_decode(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &cur) != RS_OK ||
	    cur.state != CALL_DONE || cur.device == NULL ||
	    rs_json_parse(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &o, err, sizeof(err)) != RS_OK)
		goto cleanup;
	res = json_object_get(o, "result");
	if ((answer = json_object_get(res, "output")) == NULL && (answer = json_object_get(res, "error")) == NULL) {
		rs_log(RS_LOG_WARN, cur.tc.run_id, NULL, "router: call %s was answered, but its answer was "
		       "too large to keep: left to the step's timeout", cur.tc.call_id);
		goto cleanup;
	}
	rs_log(RS_LOG_WARN, cur.tc.run_id, NULL, "router: call %s, answered before, came again: its "
	       "result is sent again", cur.tc.call_id);
	send_result(r, cur.tc.run_id, cur.tc.tenant, cur.tc.call_id, cur.device, answer,
	            json_object_get(res, "error") != NULL, j->seq);
	rs_metric_inc(r->m.results_again);
cleanup:
	rs_toolcall_free(&cur.tc);
	json_decref(cur.callobj);
	free(cur.device);
	free(cur.router);
	json_decref(o);
	kvEntry_Destroy(e);
	free(j);
}

void
rs_router_calls_result_again(rs_router *r, const char *key, uint64_t seq)
{
	size_t kl = strlen(key) + 1;
	again_job *j = malloc(sizeof(*j) + kl);

	if (j == NULL)
		rs_oom(0);
	j->j.fn = again_work;
	j->seq = seq;
	memcpy(j->key, key, kl);
	rs_router_work(r, key, &j->j);
}
