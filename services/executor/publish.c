/*
 * publish.c - the executor's answers: commands on CMDS for the
 * orchestrator (common/rs_cmd.h). A result is published synchronously and
 * only then is the request acked (rs_exec_job_run), so "acked" implies "the answer
 * is durable". Msg ids make a re-issued effect's answers duplicates the
 * server drops: result-<effect_id>, chunk-<effect_id>-<index>.
 * A result larger than the server's max payload becomes a permanent
 * too_large error (a publish that cannot succeed is never retried).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor.h"
#include "rs_log.h"

#define PUBLISH_TIMEOUT_MS 5000
#define PUBLISH_TRIES 5
/* Room for the subject and headers (Nats-Msg-Id, Runstream-Type) of a
 * command within the server's max payload. */
#define HEADROOM 1024

/* The request's effect id (both request types carry one). */
static const char *
effect_of(const rs_event *req)
{
	return req->type == RS_EV_LLM_REQUESTED ? req->d.llm_requested.effect_id
	                                        : req->d.http_requested.effect_id;
}

static void
cmd_head(rs_cmd *c, rs_cmd_type t, const rs_event *req)
{
	memset(c, 0, sizeof(*c));
	c->type = t;
	snprintf(c->run_id, sizeof(c->run_id), "%s", req->run_id);
	snprintf(c->tenant, sizeof(c->tenant), "%s", req->tenant);
	snprintf(c->traceparent, sizeof(c->traceparent), "%s", req->traceparent);
}

/* The largest command body the server takes (its max_payload, less the
 * room for subject and headers). */
static size_t
max_body(executor *x)
{
	int64_t mp = natsConnection_GetMaxPayload(x->nats.nc);

	return mp > HEADROOM * 2 ? (size_t)(mp - HEADROOM) : 1024 * 1024 - HEADROOM;
}

/* Encode, then publish with retries (NATS may be reconnecting). The
 * caller keeps c. RS_EINVAL: the command is larger than the server takes
 * (never sent: a publish that cannot succeed must not be retried). */
static rs_status
send_cmd(executor *x, const rs_cmd *c)
{
	char subj[160], id[300], *body = NULL;
	natsMsg *m = NULL;
	size_t len = 0;
	rs_status st;

	if ((st = rs_cmd_encode(c, &body, &len)) != RS_OK)
		return st;
	if (len > max_body(x)) {
		free(body);
		return RS_EINVAL;
	}
	rs_cmd_subject(c->tenant, c->run_id, subj, sizeof(subj));
	rs_cmd_msg_id(c, id, sizeof(id));
	st = rs_nats_msg(&m, subj, body, (int)len, "Runstream-Type", rs_cmd_type_name(c->type),
	                 NULL);
	for (int i = 1; st == RS_OK; i++) {
		st = rs_js_publish(x->nats.js, m, id, -1, PUBLISH_TIMEOUT_MS, NULL, NULL);
		if (st == RS_OK || i == PUBLISH_TRIES || atomic_load(&x->stopping))
			break;
		rs_log(RS_LOG_WARN, c->run_id, NULL, "publish %s failed (%s), retrying", id,
		       rs_status_str(st));
		usleep(200000 * (unsigned)i);
		st = RS_OK;
	}
	natsMsg_Destroy(m);
	free(body);
	return st;
}

rs_status
rs_exec_publish_result(executor *x, const rs_event *req, json_t *output, const rs_err *error,
               int64_t retry_after_ms)
{
	rs_cmd c;
	rs_status st;

	cmd_head(&c, RS_CMD_EFFECT_RESULT, req);
	c.effect_id = strdup(effect_of(req));
	if (error != NULL) {
		c.has_error = 1;
		c.error.code = strdup(error->code);
		c.error.message = strdup(error->message ? error->message : "");
		c.error.cls = error->cls;
		c.error.retryable = error->cls != RS_ERRCLASS_PERMANENT;
		c.retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
		json_decref(output);
	} else {
		c.output = output ? output : json_null();
	}
	st = send_cmd(x, &c);
	if (st == RS_EINVAL && error == NULL) {
		/* The output does not fit in a command (nor in the event the
		 * orchestrator would make of it): a permanent error instead, so
		 * the run learns why rather than the effect being re-issued forever. */
		char msg[200];
		snprintf(msg, sizeof(msg), "the result is larger than the NATS max payload "
		         "(%lld bytes)", (long long)natsConnection_GetMaxPayload(x->nats.nc));
		json_decref(c.output);
		c.output = NULL;
		c.has_error = 1;
		c.error.code = strdup("too_large");
		c.error.message = strdup(msg);
		c.error.cls = RS_ERRCLASS_PERMANENT;
		c.error.retryable = 0;
		rs_log(RS_LOG_WARN, req->run_id, NULL, "effect %s: %s", c.effect_id, msg);
		st = send_cmd(x, &c);
	}
	rs_cmd_free(&c);
	return st;
}

rs_status
rs_exec_publish_chunk(executor *x, const rs_event *req, int64_t index, const char *text, size_t len)
{
	rs_cmd c;
	rs_status st;

	cmd_head(&c, RS_CMD_LLM_CHUNK, req);
	c.effect_id = strdup(effect_of(req));
	c.index = index;
	c.text = strndup(text, len);
	st = send_cmd(x, &c);
	if (st == RS_OK)
		rs_metric_inc(rs_exec_em.chunks);
	rs_cmd_free(&c);
	return st;
}
