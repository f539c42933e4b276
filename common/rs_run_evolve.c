/*
 * rs_run_evolve.c - evolve: the run state machine's fold of one event into
 * the state (rs_run_evolve), one handler per event type in evolve_table[].
 * Each handler checks that the event fits (sequence, run, step, call) and
 * records it; nothing here decides anything, so replaying a history and
 * deciding on it can never disagree about what happened. The http/llm and
 * child-run handlers live with their step kinds (rs_run_effects.c,
 * rs_run_children.c). Allocation failure aborts, as in all of rs_run*.c.
 */
#include "rs_run_int.h"
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

/* ------------------------------------------------------------------ */
/* 2. Evolve                                                           */
/* ------------------------------------------------------------------ */

typedef rs_status (*evolve_fn)(rs_run *r, const rs_event *ev, char *err, size_t cap);

static rs_status
ev_run_created(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_run_created *d = &ev->d.run_created;

	if (r->status != RS_RUN_NONE)
		return fail(err, cap, "run.created: run already exists");
	snprintf(r->run_id, sizeof(r->run_id), "%s", ev->run_id);
	snprintf(r->tenant, sizeof(r->tenant), "%s", ev->tenant);
	snprintf(r->traceparent, sizeof(r->traceparent), "%s", ev->traceparent);
	set_str(&r->agent, d->agent);
	set_str(&r->version, d->version);
	set_str(&r->idempotency_key, d->idempotency_key);
	set_json(&r->input, d->input);
	if (r->input == NULL)
		r->input = json_object();
	r->timeout_s = d->timeout_s;
	r->max_steps = d->max_steps > 0 ? d->max_steps : RS_AGENT_MAX_STEPS_DEFAULT;
	if (d->reuse != NULL && rs_fork_reuse_check(d->reuse, err, cap) != RS_OK)
		return RS_EINVAL;
	set_str(&r->forked_from, d->forked_from);
	r->from_seq = d->from_seq;
	set_json(&r->reuse, d->reuse);
	set_str(&r->conc_key, d->concurrency_limit > 0 ? d->concurrency_key : NULL);
	r->conc_limit = d->concurrency_limit;
	r->tenant_limit = d->tenant_limit;
	set_str(&r->parent_run_id, d->parent_run_id);
	set_str(&r->root_run_id, d->root_run_id);
	set_str(&r->scope, d->scope);
	set_str(&r->parent_step_id, d->parent_step_id);
	r->created_at = ev->time_ms;
	r->ctx = json_pack("{s:O, s:{}}", "input", r->input, "steps");
	r->steps = json_object();
	r->status = RS_RUN_QUEUED;
	return RS_OK;
}

static rs_status
ev_run_started(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	if (r->status != RS_RUN_QUEUED)
		return fail(err, cap, "run.started: run is %s, not queued",
		            rs_run_status_name(r->status));
	set_str(&r->instance, ev->d.run_started.instance);
	r->started_at = ev->time_ms;
	r->status = RS_RUN_RUNNING;
	return RS_OK;
}

/* Step events other than step.started must be about the current attempt. */
rs_status
rs_run_check_current(const rs_run *r, const char *what, const char *step_id, int64_t attempt,
                     char *err, size_t cap)
{
	if (r->cur_step == NULL || step_id == NULL || strcmp(r->cur_step, step_id) != 0 ||
	    attempt != r->cur_attempt)
		return fail(err, cap, "%s: step %s attempt %lld is not the current step", what,
		            step_id ? step_id : "(null)", (long long)attempt);
	return RS_OK;
}

static rs_status
ev_step_started(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_step_started *d = &ev->d.step_started;
	json_t *att, *sig;

	if (r->status != RS_RUN_RUNNING && r->status != RS_RUN_WAITING)
		return fail(err, cap, "step.started: run is %s", rs_run_status_name(r->status));
	r->execs++;
	set_str(&r->cur_step, d->step_id);
	r->cur_kind = rs_run_kind_of(d->kind);
	if (r->cur_kind != RS_STEP_BRANCH && r->cur_kind != RS_STEP_TRANSFORM)
		r->effect_steps++;
	r->cur_attempt = d->attempt;
	r->cur_exec = r->execs;
	r->cur_started_at = ev->time_ms;
	r->cur_done = 0;
	r->cur_signal_taken = 0;
	sig = json_object_get(d->input, "signal");
	set_str(&r->cur_signal, r->cur_kind == RS_STEP_SIGNAL ? json_string_value(sig) : NULL);
	rs_run_effect_step_started(r, d->attempt);
	/* Steps that wait for something outside put the run in "waiting". */
	r->status = (r->cur_kind == RS_STEP_TOOL || r->cur_kind == RS_STEP_SLEEP ||
	             r->cur_kind == RS_STEP_SIGNAL || r->cur_kind == RS_STEP_HTTP ||
	             r->cur_kind == RS_STEP_LLM || r->cur_kind == RS_STEP_PARALLEL ||
	             r->cur_kind == RS_STEP_FOREACH || r->cur_kind == RS_STEP_RUN)
	            ? RS_RUN_WAITING : RS_RUN_RUNNING;
	att = json_pack("{s:I, s:O?, s:n, s:n, s:I, s:n}", "attempt", (json_int_t)d->attempt,
	                "input", d->input, "output", "error", "started_at",
	                (json_int_t)ev->time_ms, "finished_at");
	json_array_append_new(json_object_get(rs_run_view_step(r, d->step_id), "attempts"), att);
	rs_run_view_set_status(r, d->step_id, r->status == RS_RUN_WAITING ? "waiting" : "running");
	return RS_OK;
}

static rs_status
ev_step_completed(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_step_completed *d = &ev->d.step_completed;
	json_t *out = d->output ? d->output : json_null(), *att;  /* null: no decref needed */
	run_signal *s;

	if (rs_run_check_current(r, "step.completed", d->step_id, d->attempt, err, cap) != RS_OK)
		return RS_EINVAL;
	if (r->cur_done)
		return fail(err, cap, "step.completed: step %s already finished", d->step_id);
	if (d->reused_seq > 0) {
		json_t *e = r->reuse ? json_array_get(r->reuse, (size_t)r->reuse_next) : NULL;
		if (e == NULL || r->reuse_next != r->effect_steps - 1 ||
		    strcmp(json_string_value(json_object_get(e, "step_id")), d->step_id) != 0)
			return fail(err, cap, "step.completed: step %s reuses no output of the fork's "
			            "source here", d->step_id);
		r->reuse_next++;
	}
	/* A signal step that found its signal in the buffer consumes it now. */
	if (r->cur_kind == RS_STEP_SIGNAL && !r->cur_signal_taken &&
	    (s = rs_run_buffered_signal(r, r->cur_signal)) != NULL)
		s->consumed_by = xstrdup(d->step_id);
	json_object_set_new(json_object_get(r->ctx, "steps"), d->step_id,
	                    json_pack("{s:O}", "output", out));
	json_object_set(rs_run_view_step(r, d->step_id), "output", out);
	rs_run_view_set_status(r, d->step_id, "completed");
	if ((att = rs_run_view_attempt(r, d->step_id)) != NULL) {
		json_object_set(att, "output", out);
		json_object_set_new(att, "finished_at", json_integer(ev->time_ms));
	}
	set_json(&r->last_output, out);
	set_str(&r->last_next, d->next_step);
	rs_run_cancel_step_timers(r, d->step_id, d->attempt);
	rs_run_release_children(r, 0);
	set_str(&r->eff_id, NULL);
	r->cur_done = 1;
	r->status = RS_RUN_RUNNING;
	return RS_OK;
}

static rs_status
ev_step_failed(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_step_failed *d = &ev->d.step_failed;
	json_t *att;

	if (rs_run_check_current(r, "step.failed", d->step_id, d->attempt, err, cap) != RS_OK)
		return RS_EINVAL;
	if (r->cur_done)
		return fail(err, cap, "step.failed: step %s already finished", d->step_id);
	if ((att = rs_run_view_attempt(r, d->step_id)) != NULL) {
		json_object_set_new(att, "error", rs_run_err_json(&d->error));
		json_object_set_new(att, "finished_at", json_integer(ev->time_ms));
	}
	rs_run_view_set_status(r, d->step_id, d->final ? "failed" : "retrying");
	rs_err_free(&r->last_err);
	rs_run_err_copy_plain(&r->last_err, &d->error);
	r->last_final = d->final;
	r->last_retry_after = d->retry_after_ms;
	rs_run_cancel_step_timers(r, d->step_id, d->attempt);
	rs_run_release_children(r, 0);
	set_str(&r->eff_id, NULL);
	r->cur_done = 1;
	r->status = RS_RUN_RUNNING;
	return RS_OK;
}

static rs_status
ev_step_retry_scheduled(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_step_retry_scheduled *d = &ev->d.step_retry_scheduled;

	if (rs_run_check_current(r, "step.retry_scheduled", d->step_id, d->attempt - 1, err,
	                         cap) != RS_OK)
		return RS_EINVAL;
	r->last_attempt = d->attempt;
	r->last_due = d->due_at;
	set_str(&r->last_timer, d->timer_id);
	r->status = RS_RUN_WAITING;
	return RS_OK;
}

static rs_status
ev_tool_requested(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_tool_requested *d = &ev->d.tool_requested;
	run_call *c;

	if (rs_run_check_current(r, "tool.requested", d->step_id, d->attempt, err, cap) != RS_OK)
		return RS_EINVAL;
	if (rs_run_find_call(r, d->call_id) != NULL)
		return fail(err, cap, "tool.requested: duplicate call_id %s", d->call_id);
	r->calls = xgrow(r->calls, r->ncalls + 1, sizeof(*r->calls));
	c = &r->calls[r->ncalls++];
	memset(c, 0, sizeof(*c));
	c->call_id = xstrdup(d->call_id);
	c->step_id = xstrdup(d->step_id);
	c->tool = xstrdup(d->tool);
	c->device = xstrdup(d->device);
	c->capability = xstrdup(d->capability);
	c->args = d->args ? json_incref(d->args) : json_object();
	c->attempt = d->attempt;
	c->deadline = d->deadline;
	c->requested_at = ev->time_ms;
	c->status = CALL_REQUESTED;
	r->status = RS_RUN_WAITING;
	return RS_OK;
}

/* tool.dispatched / completed / failed / timed_out share the lookup. */
static rs_status
known_call(rs_run *r, const char *what, const char *call_id, run_call **out,
           char *err, size_t cap)
{
	if ((*out = rs_run_find_call(r, call_id)) == NULL)
		return fail(err, cap, "%s: unknown call_id %s", what, call_id ? call_id : "(null)");
	return RS_OK;
}

static rs_status
ev_tool_dispatched(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	run_call *c;

	if (known_call(r, "tool.dispatched", ev->d.tool_dispatched.call_id, &c, err, cap) != RS_OK)
		return RS_EINVAL;
	c->status = c->status == CALL_REQUESTED ? CALL_DISPATCHED : c->status;
	c->dispatched_at = ev->time_ms;
	set_str(&c->device_id, ev->d.tool_dispatched.device_id);
	return RS_OK;
}

static rs_status
finish_call(rs_run *r, const rs_event *ev, const char *what, const char *call_id,
            call_status st, const char *device_id, char *err, size_t cap)
{
	run_call *c;

	if (known_call(r, what, call_id, &c, err, cap) != RS_OK)
		return RS_EINVAL;
	if (!call_outstanding(c))
		return fail(err, cap, "%s: call %s is already %s", what, call_id,
		            rs_run_call_status_names[c->status]);
	c->status = st;
	c->finished_at = ev->time_ms;
	if (device_id != NULL)
		set_str(&c->device_id, device_id);
	/* An llm turn's tool timer is done once all its calls are. */
	if (r->cur_kind == RS_STEP_LLM && !rs_run_calls_outstanding(r, c->step_id, c->attempt))
		rs_run_cancel_timers_of(r, c->step_id, c->attempt, RS_TIMER_TOOL_TIMEOUT);
	return RS_OK;
}

static rs_status
ev_tool_completed(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_tool_completed *d = &ev->d.tool_completed;
	run_call *c;

	if (finish_call(r, ev, "tool.completed", d->call_id, CALL_COMPLETED, d->device_id,
	                err, cap) != RS_OK)
		return RS_EINVAL;
	c = rs_run_find_call(r, d->call_id);
	set_json(&c->output, d->output ? d->output : json_null());
	return RS_OK;
}

static rs_status
ev_tool_failed(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_tool_failed *d = &ev->d.tool_failed;
	run_call *c;

	if (finish_call(r, ev, "tool.failed", d->call_id, CALL_FAILED, d->device_id, err,
	                cap) != RS_OK)
		return RS_EINVAL;
	c = rs_run_find_call(r, d->call_id);
	json_decref(c->error);
	c->error = rs_run_err_json(&d->error);
	return RS_OK;
}

static rs_status
ev_tool_timed_out(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	return finish_call(r, ev, "tool.timed_out", ev->d.tool_timed_out.call_id, CALL_TIMED_OUT,
	                   NULL, err, cap);
}

static rs_status
ev_timer_scheduled(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_timer_scheduled *d = &ev->d.timer_scheduled;
	run_timer *t;

	if (rs_run_find_timer(r, d->timer_id) != NULL)
		return fail(err, cap, "timer.scheduled: duplicate timer_id %s", d->timer_id);
	r->timers = xgrow(r->timers, r->ntimers + 1, sizeof(*r->timers));
	t = &r->timers[r->ntimers++];
	memset(t, 0, sizeof(*t));
	t->timer_id = xstrdup(d->timer_id);
	t->step_id = xstrdup(d->step_id);
	t->purpose = d->purpose;
	t->attempt = d->attempt;
	t->due_at = d->due_at;
	t->state = TIMER_PENDING;
	set_str(&r->last_timer, d->timer_id);
	if (d->purpose != RS_TIMER_RUN_TIMEOUT)
		r->status = RS_RUN_WAITING;
	return RS_OK;
}

static rs_status
ev_timer_fired(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	run_timer *t = rs_run_find_timer(r, ev->d.timer_fired.timer_id);

	if (t == NULL || t->state != TIMER_PENDING)
		return fail(err, cap, "timer.fired: timer %s is not pending",
		            ev->d.timer_fired.timer_id);
	t->state = TIMER_FIRED;
	set_str(&r->last_timer, t->timer_id);
	return RS_OK;
}

static rs_status
ev_signal_received(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_signal_received *d = &ev->d.signal_received;
	run_signal *s;

	if (rs_run_find_signal(r, d->signal_id) != NULL)
		return fail(err, cap, "signal.received: duplicate signal_id %s", d->signal_id);
	r->signals = xgrow(r->signals, r->nsignals + 1, sizeof(*r->signals));
	s = &r->signals[r->nsignals++];
	memset(s, 0, sizeof(*s));
	s->signal_id = xstrdup(d->signal_id);
	s->name = xstrdup(d->name);
	s->payload = d->payload ? json_incref(d->payload) : json_null();
	s->received_at = ev->time_ms;
	/* step_id set: the waiting step consumed it at once. */
	if (d->step_id != NULL) {
		s->consumed_by = xstrdup(d->step_id);
		r->cur_signal_taken = 1;
	}
	return RS_OK;
}

static rs_status
ev_run_cancel_requested(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	set_str(&r->cancel_reason, ev->d.run_cancel_requested.reason);
	return RS_OK;
}

/* Common to the four terminal events: timers die, calls still out owe a
 * tool.cancel, an unfinished step is marked with the run's fate. */
static void
finish_run_state(rs_run *r, const rs_event *ev, rs_run_status st)
{
	size_t i;

	r->status = st;
	r->finished_at = ev->time_ms;
	for (i = 0; i < r->ntimers; i++)
		if (r->timers[i].state == TIMER_PENDING)
			r->timers[i].state = TIMER_CANCELLED;
	for (i = 0; i < r->ncalls; i++)
		if (call_outstanding(&r->calls[i]))
			r->calls[i].status = CALL_CANCELLED;
	rs_run_release_children(r, 1);
	if (r->cur_step != NULL && !r->cur_done)
		rs_run_view_set_status(r, r->cur_step, rs_run_status_name(st));
}

static rs_status
ev_run_completed(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	set_json(&r->output, ev->d.run_completed.output);
	if (r->output == NULL)
		r->output = json_null();
	finish_run_state(r, ev, RS_RUN_COMPLETED);
	return RS_OK;
}

static rs_status
ev_run_failed(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	json_decref(r->error);
	r->error = rs_run_err_json(&ev->d.run_failed.error);
	finish_run_state(r, ev, RS_RUN_FAILED);
	return RS_OK;
}

static rs_status
ev_run_cancelled(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	if (ev->d.run_cancelled.reason != NULL)
		set_str(&r->cancel_reason, ev->d.run_cancelled.reason);
	finish_run_state(r, ev, RS_RUN_CANCELLED);
	return RS_OK;
}

static rs_status
ev_run_timed_out(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	json_decref(r->error);
	r->error = json_pack("{s:s, s:s, s:s, s:b}", "code", "run_timeout", "message",
	                     "run exceeded its timeout", "class", "timeout", "retryable", 0);
	finish_run_state(r, ev, RS_RUN_TIMED_OUT);
	return RS_OK;
}

static const evolve_fn evolve_table[RS_EV__COUNT] = {
	[RS_EV_RUN_CREATED] = ev_run_created,
	[RS_EV_RUN_STARTED] = ev_run_started,
	[RS_EV_STEP_STARTED] = ev_step_started,
	[RS_EV_STEP_COMPLETED] = ev_step_completed,
	[RS_EV_STEP_FAILED] = ev_step_failed,
	[RS_EV_STEP_RETRY_SCHEDULED] = ev_step_retry_scheduled,
	[RS_EV_TOOL_REQUESTED] = ev_tool_requested,
	[RS_EV_TOOL_DISPATCHED] = ev_tool_dispatched,
	[RS_EV_TOOL_COMPLETED] = ev_tool_completed,
	[RS_EV_TOOL_FAILED] = ev_tool_failed,
	[RS_EV_TOOL_TIMED_OUT] = ev_tool_timed_out,
	[RS_EV_TIMER_SCHEDULED] = ev_timer_scheduled,
	[RS_EV_TIMER_FIRED] = ev_timer_fired,
	[RS_EV_SIGNAL_RECEIVED] = ev_signal_received,
	[RS_EV_RUN_CANCEL_REQUESTED] = ev_run_cancel_requested,
	[RS_EV_RUN_COMPLETED] = ev_run_completed,
	[RS_EV_RUN_FAILED] = ev_run_failed,
	[RS_EV_RUN_CANCELLED] = ev_run_cancelled,
	[RS_EV_RUN_TIMED_OUT] = ev_run_timed_out,
	[RS_EV_HTTP_REQUESTED] = rs_run_ev_http_requested,
	[RS_EV_HTTP_COMPLETED] = rs_run_ev_http_completed,
	[RS_EV_LLM_REQUESTED] = rs_run_ev_llm_requested,
	[RS_EV_LLM_DELTA] = rs_run_ev_llm_delta,
	[RS_EV_LLM_MESSAGE] = rs_run_ev_llm_message,
	[RS_EV_CHILD_STARTED] = rs_run_ev_child_started,
	[RS_EV_CHILD_FINISHED] = rs_run_ev_child_finished,
};

rs_status
rs_run_evolve(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	rs_status st;

	if ((unsigned)ev->type >= RS_EV__COUNT)
		return fail(err, cap, "unknown event type %d", (int)ev->type);
	if (ev->runseq != r->last_seq + 1)
		return fail(err, cap, "%s: runseq %llu, expected %llu", rs_event_type_name(ev->type),
		            (unsigned long long)ev->runseq, (unsigned long long)r->last_seq + 1);
	if (r->status == RS_RUN_NONE && ev->type != RS_EV_RUN_CREATED)
		return fail(err, cap, "%s: run has no run.created", rs_event_type_name(ev->type));
	if (r->status != RS_RUN_NONE &&
	    (strcmp(ev->run_id, r->run_id) != 0 || strcmp(ev->tenant, r->tenant) != 0))
		return fail(err, cap, "%s: event for run %s/%s applied to %s/%s",
		            rs_event_type_name(ev->type), ev->tenant, ev->run_id, r->tenant, r->run_id);
	if (rs_run_status_terminal(r->status))
		return fail(err, cap, "%s: run is already %s", rs_event_type_name(ev->type),
		            rs_run_status_name(r->status));
	if ((st = evolve_table[ev->type](r, ev, err, cap)) != RS_OK)
		return st;
	r->last_seq = ev->runseq;
	r->last_type = (int)ev->type;
	if (rs_replay_opens_group(ev))
		r->group_at = ev->time_ms;
	return RS_OK;
}
