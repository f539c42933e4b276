/*
 * rs_run_settle.c - the step engine of decide: rs_run_settle() starts steps one
 * after the other, asking rs_run_owe() what the state still owes (a step to begin,
 * a tool request, a timer, a retry, the run's end) until the run has to
 * wait (tool, timer, signal), ends, or has begun
 * RS_RUN_MAX_STEPS_PER_DECISION steps. Also each step's input (templates
 * rendered against the run) and step.started. Every command handler in
 * rs_run_decide.c records its command and calls rs_run_settle(); nothing here
 * reads a command.
 */
#include "rs_run_int.h"
#include "rs_mem.h"
#include "rs_fork.h"
#include "rs_replay.h"
#include "rs_template.h"
#include "rs_json.h"
#include "rs_config.h"
#include "rs_id.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- beginning a step: run.failed (max_steps) or step.started --- */

/* The recorded input of the current attempt (what step.started said). */
json_t *
rs_run_attempt_input(dctx *d)
{
	return json_object_get(rs_run_view_attempt(d->s, d->s->cur_step), "input");
}

/* A string field of a rendered input: as given, or the compact JSON text
 * of a non-string (a prompt may well be built from an object). New. */
char *
rs_run_text_of_value(json_t *v)
{
	char *t;

	if (v == NULL)
		return NULL;
	t = json_is_string(v) ? xstrdup(json_string_value(v)) : rs_json_dump(v);
	if (t == NULL)
		rs_oom(0);
	return t;
}

static json_t *
tool_names(const rs_step *st)
{
	json_t *a = json_array(), *t;
	size_t i;

	json_array_foreach(st->llm_tools, i, t)
		json_array_append(a, json_object_get(t, "name"));
	return a;
}

/*
 * The input step.started records: everything the rest of the attempt
 * needs that comes from templates, rendered once here. A template that
 * does not render leaves its field out; the attempt then fails at once
 * (owe_started) with the renderer's message.
 */
static json_t *
step_input(dctx *d, const rs_step *st)
{
	char msg[256];
	const char *code;
	json_t *in = NULL, *v;

	switch (st->kind) {
	case RS_STEP_TOOL:
		in = json_pack("{s:s, s:s*, s:s*}", "tool", st->tool, "device", st->device,
		               "capability", st->capability);
		if (rs_run_render(d, st->args, &v, msg, sizeof(msg), &code) == RS_OK)
			json_object_set_new(in, "args", v);
		return in;
	case RS_STEP_SLEEP:
		return json_pack("{s:I}", "duration_ms", (json_int_t)st->duration_ms);
	case RS_STEP_SIGNAL:
		return json_pack("{s:s, s:I}", "signal", st->signal, "timeout_s",
		                 (json_int_t)st->timeout_s);
	case RS_STEP_HTTP:
		in = json_pack("{s:s}", "method", st->method);
		if (rs_run_render(d, st->url, &v, msg, sizeof(msg), &code) == RS_OK) {
			char *u = rs_run_text_of_value(v);
			json_object_set_new(in, "url", json_string(u));
			free(u);
			json_decref(v);
		}
		if (rs_run_render(d, st->headers, &v, msg, sizeof(msg), &code) == RS_OK)
			json_object_set_new(in, "headers", v ? v : json_object());
		if (st->body != NULL && rs_run_render(d, st->body, &v, msg, sizeof(msg), &code) == RS_OK)
			json_object_set_new(in, "body", v);
		return in;
	case RS_STEP_LLM:
		in = json_pack("{s:{s:s, s:s}, s:o}", "model", "base_url", st->base_url, "model",
		               st->model, "tools", tool_names(st));
		if (rs_run_render(d, st->prompt, &v, msg, sizeof(msg), &code) == RS_OK) {
			char *t = rs_run_text_of_value(v);
			json_object_set_new(in, "prompt", json_string(t ? t : ""));
			free(t);
			json_decref(v);
		}
		if (st->system != NULL &&
		    rs_run_render(d, st->system, &v, msg, sizeof(msg), &code) == RS_OK) {
			char *t = rs_run_text_of_value(v);
			json_object_set_new(in, "system", json_string(t));
			free(t);
			json_decref(v);
		}
		return in;
	case RS_STEP_PARALLEL:
	case RS_STEP_FOREACH:
	case RS_STEP_RUN:
		/* The children's input (default: the run's input for parallel and
		 * foreach, {} for run) and a foreach's items, rendered once. */
		in = json_object();
		if (st->child_input == NULL)
			json_object_set_new(in, "input", st->kind == RS_STEP_RUN ? json_object()
			                                 : json_incref(d->s->input));
		else if (rs_run_render(d, st->child_input, &v, msg, sizeof(msg), &code) == RS_OK)
			json_object_set_new(in, "input", v);
		if (st->kind == RS_STEP_FOREACH &&
		    rs_run_render(d, st->items, &v, msg, sizeof(msg), &code) == RS_OK)
			json_object_set_new(in, "items", v);
		if (st->kind == RS_STEP_RUN) {
			json_object_set_new(in, "agent", json_string(st->child_agent));
			if (st->child_version != NULL)
				json_object_set_new(in, "version", json_string(st->child_version));
		}
		return in;
	case RS_STEP_BRANCH:
	case RS_STEP_TRANSFORM:
		return NULL;
	}
	return NULL;
}

/* Begin attempt `attempt` of step idx (RS_STEP_END: the run completes). */
static rs_status
begin_step(dctx *d, int idx, int64_t attempt)
{
	const rs_step *st;
	rs_event ev;
	json_t *tmpl, *out = NULL;
	char msg[256];
	const char *code;

	if (idx == RS_STEP_END) {
		ev = new_event(RS_EV_RUN_COMPLETED);
		tmpl = rs_agent_output(d->agent);
		if (tmpl != NULL) {
			if (rs_run_render(d, tmpl, &out, msg, sizeof(msg), &code) != RS_OK)
				return rs_run_emit_run_failed(d, code, msg, RS_ERRCLASS_PERMANENT, NULL);
		} else {
			out = d->s->last_output ? json_incref(d->s->last_output) : json_null();
		}
		ev.d.run_completed.output = out;
		return rs_run_emit(d, &ev);
	}
	st = rs_agent_step(d->agent, (size_t)idx);
	if (d->s->execs >= d->s->max_steps) {
		snprintf(msg, sizeof(msg), "more than %lld step executions",
		         (long long)d->s->max_steps);
		return rs_run_emit_run_failed(d, "max_steps_exceeded", msg, RS_ERRCLASS_PERMANENT, st->id);
	}
	d->begun++;
	return rs_run_emit_step_started(d, st, attempt, step_input(d, st));
}

/* --- what follows an event: rs_run_owe() --- */

/* The current attempt's id, "<run_id>-<step_id>-<exec>-<attempt>", then
 * suffix: the tool step's call_id (no suffix) and the prefix of every
 * effect and llm call id (see the top of this file). */
void
rs_run_attempt_id(const rs_run *s, char *buf, size_t cap, const char *suffix)
{
	snprintf(buf, cap, "%s-%s-%lld-%lld%s", s->run_id, s->cur_step, (long long)s->cur_exec,
	         (long long)s->cur_attempt, suffix);
}

/* A template of the attempt's input did not render when step.started was
 * written (its field is missing from the input): the attempt fails,
 * permanently, with the renderer's reason (rendering again gives it). */
rs_status
rs_run_fail_unrendered(dctx *d, const rs_step *st, json_t *tmpl, const char *what)
{
	char msg[256];
	const char *code = "template_error";
	json_t *v = NULL;

	if (rs_run_render(d, tmpl, &v, msg, sizeof(msg), &code) == RS_OK) {
		json_decref(v);
		snprintf(msg, sizeof(msg), "%s did not render", what);
	}
	return rs_run_fail_step_code(d, st, code, RS_ERRCLASS_PERMANENT, msg);
}

static rs_status
owe_tool_requested(dctx *d, const rs_step *st)
{
	json_t *in = rs_run_attempt_input(d), *args = json_object_get(in, "args");
	rs_event ev = new_event(RS_EV_TOOL_REQUESTED);
	char call_id[ID_CAP];
	rs_status rc;

	if (args == NULL)
		return rs_run_fail_unrendered(d, st, st->args, "the tool arguments");
	rs_run_attempt_id(d->s, call_id, sizeof(call_id), "");
	ev.d.tool_requested.call_id = xstrdup(call_id);
	ev.d.tool_requested.step_id = xstrdup(st->id);
	ev.d.tool_requested.attempt = d->s->cur_attempt;
	ev.d.tool_requested.tool = xstrdup(st->tool);
	ev.d.tool_requested.args = json_incref(args);
	ev.d.tool_requested.device = xstrdup(st->device);
	ev.d.tool_requested.capability = xstrdup(st->capability);
	ev.d.tool_requested.deadline = AT(d) + st->timeout_s * 1000;
	if ((rc = rs_run_emit(d, &ev)) != RS_OK)
		return rc;
	rs_run_add_call_effect(d->s, d->out, rs_run_find_call(d->s, call_id), 0);
	return RS_OK;
}

/* The call of the current tool-step attempt. */
static run_call *
step_call(dctx *d)
{
	char call_id[ID_CAP];

	rs_run_attempt_id(d->s, call_id, sizeof(call_id), "");
	return rs_run_find_call(d->s, call_id);
}

/* An rs_err from its JSON form (a call's recorded error). Borrowed strings. */
static rs_err
err_of_json(json_t *j)
{
	rs_err e = { NULL, NULL, RS_ERRCLASS_PERMANENT, 0, NULL };

	e.code = (char *)json_string_value(json_object_get(j, "code"));
	e.message = (char *)json_string_value(json_object_get(j, "message"));
	if (rs_errclass_parse(json_string_value(json_object_get(j, "class")), &e.cls) != RS_OK)
		e.cls = RS_ERRCLASS_PERMANENT;
	e.retryable = json_is_true(json_object_get(j, "retryable"));
	return e;
}

/* step.started: what the attempt does first, by kind. */
static rs_status
owe_started(dctx *d, const rs_step *st)
{
	json_t *v = NULL;
	run_signal *buf;
	char msg[256];
	const char *code;
	int ci, target;

	if (d->s->reuse != NULL && st->kind != RS_STEP_BRANCH && st->kind != RS_STEP_TRANSFORM)
		if (rs_run_reused_output(d->s, st) != NULL)
			return rs_run_emit_step_reused(d, st);
	switch (st->kind) {
	case RS_STEP_TOOL:
		return owe_tool_requested(d, st);
	case RS_STEP_SLEEP:
		return rs_run_schedule_step_timer(d, RS_TIMER_SLEEP, AT(d) + st->duration_ms);
	case RS_STEP_SIGNAL:
		/* A signal that arrived before the step is waiting in the buffer. */
		if ((buf = rs_run_buffered_signal(d->s, st->signal)) != NULL)
			return rs_run_emit_step_completed(d, json_incref(buf->payload), st->next_idx);
		if (st->timeout_s > 0)
			return rs_run_schedule_step_timer(d, RS_TIMER_SIGNAL_TIMEOUT,
			                           AT(d) + st->timeout_s * 1000);
		return RS_OK;   /* waits for the signal, however long */
	case RS_STEP_BRANCH:
		target = rs_branch_target(st, d->s->ctx, &ci);
		return rs_run_emit_step_completed(d, json_pack("{s:o, s:s}", "case",
		                                  ci >= 0 ? json_integer(ci) : json_null(), "goto",
		                                  target >= 0 ? rs_agent_step(d->agent, (size_t)target)->id
		                                       : "end"), target);
	case RS_STEP_TRANSFORM:
		if (rs_run_render(d, st->value, &v, msg, sizeof(msg), &code) != RS_OK)
			return rs_run_fail_step_code(d, st, code, RS_ERRCLASS_PERMANENT, msg);
		return rs_run_emit_step_completed(d, v, st->next_idx);
	case RS_STEP_HTTP:
		return rs_run_owe_http_requested(d, st);
	case RS_STEP_LLM:
		return rs_run_owe_llm_first_turn(d, st);
	case RS_STEP_PARALLEL:
	case RS_STEP_FOREACH:
	case RS_STEP_RUN:
		return rs_run_owe_children(d, st);
	}
	return RS_ERR;
}

/* timer.fired: what the timer was for (its purpose is still open: the
 * handler checked, see timer_open() in rs_run_decide.c). */
static rs_status
owe_fired(dctx *d, const run_timer *t)
{
	const rs_step *st;
	run_call *call;
	rs_event ev;
	char msg[160];
	int idx;

	if (t->purpose == RS_TIMER_RUN_TIMEOUT) {
		rs_run_cancel_outstanding(d);
		ev = new_event(RS_EV_RUN_TIMED_OUT);
		ev.d.run_timed_out.timeout_s = d->s->timeout_s > 0 ? d->s->timeout_s : 1;
		return rs_run_emit(d, &ev);
	}
	if ((st = rs_agent_step_find(d->agent, t->step_id, &idx)) == NULL)
		return fail(d->err, d->cap, "timer %s: step %s not in agent", t->timer_id, t->step_id);
	switch (t->purpose) {
	case RS_TIMER_SLEEP:
		return rs_run_emit_step_completed(d, NULL, st->next_idx);
	case RS_TIMER_RETRY:
		return begin_step(d, idx, t->attempt);
	case RS_TIMER_TOOL_TIMEOUT:
		if (st->kind == RS_STEP_LLM)
			return rs_run_owe_llm_timeouts(d, st);
		if ((call = step_call(d)) != NULL && call_outstanding(call)) {
			rs_run_add_call_effect(d->s, d->out, call, 1);
			ev = new_event(RS_EV_TOOL_TIMED_OUT);
			ev.d.tool_timed_out.call_id = xstrdup(call->call_id);
			ev.d.tool_timed_out.step_id = xstrdup(st->id);
			ev.d.tool_timed_out.attempt = t->attempt;
			return rs_run_emit(d, &ev);
		}
		return RS_OK;
	case RS_TIMER_SIGNAL_TIMEOUT:
		snprintf(msg, sizeof(msg), "signal %s not received within %llds", st->signal,
		         (long long)st->timeout_s);
		return rs_run_fail_step_timeout(d, st, msg);
	case RS_TIMER_STEP_TIMEOUT:
		snprintf(msg, sizeof(msg), "%s did not answer within %llds",
		         st->kind == RS_STEP_LLM ? "the model" : "the HTTP request",
		         (long long)st->timeout_s);
		return rs_run_fail_step_timeout(d, st, msg);
	default:
		return RS_OK;
	}
}

/*
 * Emit the one event the state owes after its last event, or nothing when
 * the run is at rest: finished, or waiting with its timer and effect in
 * place (a tool call out with its timeout, a sleep, a signal, a request to
 * the executor with its backstop, a retry's timer).
 */
rs_status
rs_run_owe(dctx *d)
{
	rs_run *s = d->s;
	const rs_step *st = NULL;
	run_timer *t;
	run_call *call;
	run_signal *sig;
	int idx = -1;
	char msg[160];
	rs_event ev;

	if (s->status == RS_RUN_NONE || rs_run_status_terminal(s->status))
		return RS_OK;
	if (s->cur_step != NULL && (st = rs_agent_step_find(d->agent, s->cur_step, &idx)) == NULL)
		return fail(d->err, d->cap, "step %s is not in agent %s@%s", s->cur_step,
		            rs_agent_name(d->agent), rs_agent_version(d->agent));
	switch ((rs_event_type)s->last_type) {
	case RS_EV_RUN_CREATED:
		if (s->conc_limit > 0 || s->tenant_limit > 0)
			return RS_OK;   /* queued until the gate admits it (run.admit) */
		ev = new_event(RS_EV_RUN_STARTED);
		ev.d.run_started.instance = xstrdup(d->instance);
		return rs_run_emit(d, &ev);
	case RS_EV_RUN_STARTED:
		if (s->timeout_s > 0) {
			char id[ID_CAP];
			rs_run_make_timer_id(s, id, sizeof(id), RS_TIMER_RUN_TIMEOUT, NULL, 0, 0);
			return rs_run_schedule_timer(d, RS_TIMER_RUN_TIMEOUT, NULL, 0,
			                             AT(d) + s->timeout_s * 1000, id);
		}
		return begin_step(d, 0, 1);
	case RS_EV_TIMER_SCHEDULED:
		t = rs_run_find_timer(s, s->last_timer);
		if (t != NULL && t->purpose == RS_TIMER_RUN_TIMEOUT && s->cur_step == NULL)
			return begin_step(d, 0, 1);
		return RS_OK;
	case RS_EV_STEP_STARTED:
		return owe_started(d, st);
	case RS_EV_STEP_COMPLETED:
		if (s->last_next == NULL || strcmp(s->last_next, "end") == 0)
			return begin_step(d, RS_STEP_END, 1);
		if (rs_agent_step_find(d->agent, s->last_next, &idx) == NULL)
			return fail(d->err, d->cap, "next step %s is not in agent", s->last_next);
		return begin_step(d, idx, 1);
	case RS_EV_STEP_FAILED:
		if (s->last_final) {
			ev = new_event(RS_EV_RUN_FAILED);
			rs_run_err_copy(&ev.d.run_failed.error, &s->last_err, st->id);
			ev.d.run_failed.error.retryable = 0;
			return rs_run_emit(d, &ev);
		} else {
			int64_t backoff = rs_run_backoff_ms(&st->retry, s->cur_attempt);
			char id[ID_CAP];
			if (s->last_retry_after > backoff)
				backoff = s->last_retry_after < RETRY_AFTER_MAX_MS ? s->last_retry_after
				                                                   : RETRY_AFTER_MAX_MS;
			rs_run_make_timer_id(s, id, sizeof(id), RS_TIMER_RETRY, st->id, s->cur_exec,
			              s->cur_attempt + 1);
			ev = new_event(RS_EV_STEP_RETRY_SCHEDULED);
			ev.d.step_retry_scheduled.step_id = xstrdup(st->id);
			ev.d.step_retry_scheduled.attempt = s->cur_attempt + 1;
			ev.d.step_retry_scheduled.backoff_ms = backoff;
			ev.d.step_retry_scheduled.due_at = AT(d) + backoff;
			ev.d.step_retry_scheduled.timer_id = xstrdup(id);
			return rs_run_emit(d, &ev);
		}
	case RS_EV_STEP_RETRY_SCHEDULED:
		if (rs_run_find_timer(s, s->last_timer) != NULL)
			return RS_OK;
		return rs_run_schedule_timer(d, RS_TIMER_RETRY, st->id, s->last_attempt, s->last_due,
		                             s->last_timer);
	case RS_EV_TOOL_REQUESTED:
		if (st->kind == RS_STEP_LLM)
			return rs_run_owe_llm_calls(d, st);
		if ((call = step_call(d)) == NULL)
			return RS_OK;
		return rs_run_schedule_step_timer(d, RS_TIMER_TOOL_TIMEOUT, call->deadline);
	case RS_EV_TOOL_COMPLETED:
	case RS_EV_TOOL_FAILED:
	case RS_EV_TOOL_TIMED_OUT:
		if (s->cur_done)
			return RS_OK;
		if (st->kind == RS_STEP_LLM) {
			if (s->last_type == RS_EV_TOOL_TIMED_OUT)
				return rs_run_owe_llm_timeouts(d, st);
			return rs_run_calls_outstanding(s, st->id, s->cur_attempt) ? RS_OK
			       : rs_run_llm_next_turn(d, st);
		}
		if ((call = step_call(d)) == NULL || call_outstanding(call))
			return RS_OK;
		if (call->status == CALL_COMPLETED)
			return rs_run_emit_step_completed(d, json_incref(call->output ? call->output
			                                                       : json_null()),
			                                  st->next_idx);
		if (call->status == CALL_FAILED) {
			rs_err e = err_of_json(call->error);
			return rs_run_fail_step(d, st, &e);
		}
		snprintf(msg, sizeof(msg), "tool %s did not answer within %llds", st->tool,
		         (long long)st->timeout_s);
		return rs_run_fail_step_timeout(d, st, msg);
	case RS_EV_TIMER_FIRED:
		if ((t = rs_run_find_timer(s, s->last_timer)) == NULL)
			return RS_OK;
		return owe_fired(d, t);
	case RS_EV_SIGNAL_RECEIVED:
		sig = s->nsignals ? &s->signals[s->nsignals - 1] : NULL;
		if (st == NULL || s->cur_done || sig == NULL || sig->consumed_by == NULL ||
		    strcmp(sig->consumed_by, st->id) != 0)
			return RS_OK;   /* buffered for a later signal step */
		return rs_run_emit_step_completed(d, json_incref(sig->payload), st->next_idx);
	case RS_EV_RUN_CANCEL_REQUESTED:
		rs_run_cancel_outstanding(d);
		ev = new_event(RS_EV_RUN_CANCELLED);
		ev.d.run_cancelled.reason = xstrdup(s->cancel_reason);
		return rs_run_emit(d, &ev);
	case RS_EV_HTTP_REQUESTED:
	case RS_EV_LLM_REQUESTED: {
		char id[ID_CAP];
		if (s->last_type == RS_EV_LLM_REQUESTED)
			rs_run_turn_timer_id(s, id, sizeof(id), RS_TIMER_STEP_TIMEOUT, s->eff_turn);
		else
			rs_run_make_timer_id(s, id, sizeof(id), RS_TIMER_STEP_TIMEOUT, s->cur_step, s->cur_exec,
			              s->cur_attempt);
		return rs_run_schedule_timer(d, RS_TIMER_STEP_TIMEOUT, st->id, s->cur_attempt,
		                             s->eff_deadline + EFFECT_GRACE_MS, id);
	}
	case RS_EV_HTTP_COMPLETED:
		return rs_run_owe_http_completed(d, st);
	case RS_EV_LLM_MESSAGE:
		return rs_run_owe_llm_message(d, st);
	case RS_EV_CHILD_STARTED:
	case RS_EV_CHILD_FINISHED:
		if (st == NULL || s->cur_done)
			return RS_OK;
		return rs_run_owe_children(d, st);
	case RS_EV_TOOL_DISPATCHED:
	case RS_EV_LLM_DELTA:
	default:
		return RS_OK;
	}
}

/* Emit what the state owes until the run is at rest, or until this
 * decision has begun RS_RUN_MAX_STEPS_PER_DECISION steps: then the
 * decision says `more` and the rest is owed to the next one (a loop of
 * inline steps never holds the orchestrator for long). */
rs_status
rs_run_settle(dctx *d)
{
	rs_status rc;
	size_t before;

	for (;;) {
		if (d->begun >= RS_RUN_MAX_STEPS_PER_DECISION) {
			d->out->more = 1;
			return RS_OK;
		}
		before = d->out->nevents;
		if ((rc = rs_run_owe(d)) != RS_OK)
			return rc;
		if (d->out->nevents == before)
			return RS_OK;
	}
}
