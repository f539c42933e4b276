/*
 * rs_replay.c - the command behind each group of a recorded run history
 * (the mapping is documented in rs_replay.h).
 *
 * Every member is a copy, never a borrowed pointer, so a rebuilt command
 * is an ordinary rs_cmd: encoded, compared, freed like a received one.
 */
#include "rs_replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* strdup that tells a NULL source (fine) from no memory (not). */
static int
dup_str(char **dst, const char *src)
{
	*dst = src != NULL ? strdup(src) : NULL;
	return src != NULL && *dst == NULL ? -1 : 0;
}

static int
dup_err(rs_err *dst, const rs_err *src)
{
	dst->cls = src->cls;
	dst->retryable = src->retryable;
	if (dup_str(&dst->code, src->code) || dup_str(&dst->message, src->message) ||
	    dup_str(&dst->step_id, src->step_id))
		return -1;
	return 0;
}

/* A JSON member: a new reference, or NULL when the event has none. */
static json_t *
ref(json_t *v)
{
	return v != NULL ? json_incref(v) : NULL;
}

static int
from_run_created(const rs_ev_run_created *e, rs_cmd *c)
{
	c->type = RS_CMD_RUN_START;
	c->input = ref(e->input);
	return dup_str(&c->agent, e->agent) || dup_str(&c->version, e->version) ||
	       dup_str(&c->idempotency_key, e->idempotency_key) ? -1 : 0;
}

static int
from_tool_dispatched(const rs_ev_tool_dispatched *e, rs_cmd *c)
{
	c->type = RS_CMD_TOOL_DELIVERED;
	return dup_str(&c->call_id, e->call_id) || dup_str(&c->device_id, e->device_id) ||
	       dup_str(&c->router, e->router) ? -1 : 0;
}

static int
from_tool_completed(const rs_ev_tool_completed *e, rs_cmd *c)
{
	c->type = RS_CMD_TOOL_RESULT;
	c->output = e->output != NULL ? json_incref(e->output) : json_null();
	return dup_str(&c->call_id, e->call_id) || dup_str(&c->device_id, e->device_id) ? -1 : 0;
}

static int
from_tool_failed(const rs_ev_tool_failed *e, rs_cmd *c)
{
	c->type = RS_CMD_TOOL_RESULT;
	c->has_error = 1;
	return dup_str(&c->call_id, e->call_id) || dup_str(&c->device_id, e->device_id) ||
	       dup_err(&c->error, &e->error) ? -1 : 0;
}

static int
from_timer_fired(const rs_ev_timer_fired *e, rs_cmd *c)
{
	c->type = RS_CMD_TIMER_FIRE;
	c->purpose = e->purpose;
	c->attempt = e->attempt;
	c->due_at = e->due_at;
	return dup_str(&c->timer_id, e->timer_id) || dup_str(&c->step_id, e->step_id) ? -1 : 0;
}

static int
from_signal_received(const rs_ev_signal_received *e, rs_cmd *c)
{
	c->type = RS_CMD_SIGNAL;
	c->payload = e->payload != NULL ? json_incref(e->payload) : json_null();
	return dup_str(&c->signal_id, e->signal_id) || dup_str(&c->name, e->name) ? -1 : 0;
}

static int
from_cancel_requested(const rs_ev_run_cancel_requested *e, rs_cmd *c)
{
	c->type = RS_CMD_CANCEL;
	return dup_str(&c->reason, e->reason);
}

static int
from_llm_delta(const rs_ev_llm_delta *e, rs_cmd *c)
{
	c->type = RS_CMD_LLM_CHUNK;
	c->index = e->index;
	return dup_str(&c->effect_id, e->effect_id) || dup_str(&c->text, e->text) ? -1 : 0;
}

/* output {message, usage?, finish_reason?}: what the executor reported. */
static int
from_llm_message(const rs_ev_llm_message *e, rs_cmd *c)
{
	c->type = RS_CMD_EFFECT_RESULT;
	if (dup_str(&c->effect_id, e->effect_id))
		return -1;
	c->output = json_pack("{s:O}", "message", e->message ? e->message : json_null());
	if (c->output == NULL)
		return -1;
	if (e->usage != NULL && json_object_set(c->output, "usage", e->usage) != 0)
		return -1;
	if (e->finish_reason != NULL &&
	    json_object_set_new(c->output, "finish_reason", json_string(e->finish_reason)) != 0)
		return -1;
	return 0;
}

/* output {status, headers, body, duration_ms}. */
static int
from_http_completed(const rs_ev_http_completed *e, rs_cmd *c)
{
	c->type = RS_CMD_EFFECT_RESULT;
	if (dup_str(&c->effect_id, e->effect_id))
		return -1;
	c->output = json_pack("{s:I, s:O, s:O, s:I}", "status", (json_int_t)e->status,
	                      "headers", e->headers ? e->headers : json_null(),
	                      "body", e->body ? e->body : json_null(),
	                      "duration_ms", (json_int_t)e->duration_ms);
	return c->output != NULL ? 0 : -1;
}

/* An effect error the executor reported: only with effect_id. */
static int
from_step_failed(const rs_ev_step_failed *e, rs_cmd *c)
{
	c->type = RS_CMD_EFFECT_RESULT;
	c->has_error = 1;
	c->retry_after_ms = e->retry_after_ms;
	return dup_str(&c->effect_id, e->effect_id) || dup_err(&c->error, &e->error) ? -1 : 0;
}

static int
from_run_created_child(const rs_ev_run_created *e, rs_cmd *c)
{
	c->tags = ref(e->tags);
	return dup_str(&c->parent_run_id, e->parent_run_id) ||
	       dup_str(&c->root_run_id, e->root_run_id) || dup_str(&c->scope, e->scope) ||
	       dup_str(&c->parent_step_id, e->parent_step_id) ? -1 : 0;
}

/* output as recorded (null unless completed), error if any. */
static int
from_child_finished(const rs_ev_child_finished *e, rs_cmd *c)
{
	c->type = RS_CMD_CHILD_DONE;
	c->output = e->output != NULL ? json_incref(e->output) : json_null();
	c->child_error = ref(e->error);
	return dup_str(&c->child_run_id, e->child_run_id) ||
	       dup_str(&c->child_status, e->status) ? -1 : 0;
}

int
rs_replay_opens_group(const rs_event *ev)
{
	switch (ev->type) {
	case RS_EV_RUN_CREATED:
	case RS_EV_TOOL_DISPATCHED:
	case RS_EV_TOOL_COMPLETED:
	case RS_EV_TOOL_FAILED:
	case RS_EV_TIMER_FIRED:
	case RS_EV_SIGNAL_RECEIVED:
	case RS_EV_RUN_CANCEL_REQUESTED:
	case RS_EV_LLM_DELTA:
	case RS_EV_LLM_MESSAGE:
	case RS_EV_HTTP_COMPLETED:
	case RS_EV_CHILD_FINISHED:
		return 1;
	case RS_EV_STEP_FAILED:
		return ev->d.step_failed.effect_id != NULL;
	default:
		return 0;
	}
}

static int
fill(const rs_event *ev, rs_cmd *c)
{
	switch (ev->type) {
	case RS_EV_RUN_CREATED:
		return from_run_created(&ev->d.run_created, c) ||
		       from_run_created_child(&ev->d.run_created, c) ? -1 : 0;
	case RS_EV_TOOL_DISPATCHED: return from_tool_dispatched(&ev->d.tool_dispatched, c);
	case RS_EV_TOOL_COMPLETED: return from_tool_completed(&ev->d.tool_completed, c);
	case RS_EV_TOOL_FAILED: return from_tool_failed(&ev->d.tool_failed, c);
	case RS_EV_TIMER_FIRED: return from_timer_fired(&ev->d.timer_fired, c);
	case RS_EV_SIGNAL_RECEIVED: return from_signal_received(&ev->d.signal_received, c);
	case RS_EV_RUN_CANCEL_REQUESTED: return from_cancel_requested(&ev->d.run_cancel_requested, c);
	case RS_EV_LLM_DELTA: return from_llm_delta(&ev->d.llm_delta, c);
	case RS_EV_LLM_MESSAGE: return from_llm_message(&ev->d.llm_message, c);
	case RS_EV_HTTP_COMPLETED: return from_http_completed(&ev->d.http_completed, c);
	case RS_EV_STEP_FAILED: return from_step_failed(&ev->d.step_failed, c);
	case RS_EV_CHILD_FINISHED: return from_child_finished(&ev->d.child_finished, c);
	default: return -1;   /* not reached: rs_replay_opens_group said no */
	}
}

rs_status
rs_replay_cmd_from_event(const rs_event *ev, rs_cmd *out, int *is_cmd)
{
	memset(out, 0, sizeof(*out));
	*is_cmd = 0;
	if (!rs_replay_opens_group(ev))
		return RS_OK;
	snprintf(out->run_id, sizeof(out->run_id), "%s", ev->run_id);
	snprintf(out->tenant, sizeof(out->tenant), "%s", ev->tenant);
	snprintf(out->traceparent, sizeof(out->traceparent), "%s", ev->traceparent);
	if (fill(ev, out) != 0) {
		rs_cmd_free(out);
		return RS_ENOMEM;
	}
	*is_cmd = 1;
	return RS_OK;
}
