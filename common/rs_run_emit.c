/*
 * rs_run_emit.c - what a decision writes: rs_run_emit (append an event to
 * the decision and evolve it into the scratch state at once), template
 * rendering under the size bound, the effects of a decision (timers, tool
 * calls and cancels, commands to other runs), deterministic timer ids, and
 * the events that end a step or a run (step.completed, step.failed with its
 * retry rule, run.failed). Split from rs_run.c so that the state, the
 * fold (rs_run_evolve.c), the step engine (rs_run_settle.c) and the
 * commands (rs_run_decide.c) each read on their own; rs_run_int.h holds
 * what they share.
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
/* 3. Decide                                                           */
/* ------------------------------------------------------------------ */

/* How a decision is built, and why a crash cannot leave one half-written:
 * see the comment above dctx in rs_run_int.h. */

/*
 * Append ev (whose members it takes over) to the decision with the next
 * runseq and the envelope of the run, then apply it to the scratch state.
 * An evolve failure here is a bug in decide: report it, never hide it.
 */
rs_status
rs_run_emit(dctx *d, rs_event *ev)
{
	rs_decision *o = d->out;
	const char *run_id = d->s->status ? d->s->run_id : d->cmd->run_id;
	const char *tenant = d->s->status ? d->s->tenant : d->cmd->tenant;
	const char *tp = d->s->status ? d->s->traceparent : d->cmd->traceparent;
	char why[256];

	snprintf(ev->run_id, sizeof(ev->run_id), "%s", run_id);
	snprintf(ev->tenant, sizeof(ev->tenant), "%s", tenant);
	snprintf(ev->traceparent, sizeof(ev->traceparent), "%s", tp);
	ev->runseq = d->s->last_seq + 1;
	ev->time_ms = d->now;
	o->events = xgrow(o->events, o->nevents + 1, sizeof(*o->events));
	o->events[o->nevents++] = *ev;
	if (rs_run_evolve(d->s, &o->events[o->nevents - 1], why, sizeof(why)) != RS_OK) {
		snprintf(d->err, d->cap, "internal: decided event does not evolve: %s", why);
		return RS_ERR;
	}
	return RS_OK;
}

void
rs_run_err_copy(rs_err *dst, const rs_err *src, const char *step_id)
{
	dst->code = xstrdup(src->code ? src->code : "error");
	dst->message = xstrdup(src->message ? src->message : "");
	dst->cls = src->cls;
	dst->retryable = src->retryable;
	dst->step_id = xstrdup(step_id);
}

/* --- values: bounded --- */

typedef struct { size_t n, max; } size_budget;

static int
count_bytes(const char *buf, size_t len, void *ud)
{
	size_budget *b = ud;

	(void)buf;
	b->n += len;
	return b->n > b->max ? -1 : 0;
}

/* 1 if v's JSON text is longer than RS_RUN_MAX_VALUE_BYTES (stops counting
 * there: a huge value costs no more than the limit to reject). */
int
rs_run_too_large(json_t *v)
{
	size_budget b = { 0, RS_RUN_MAX_VALUE_BYTES };

	return v != NULL && json_dump_callback(v, count_bytes, &b, JSON_COMPACT | JSON_ENCODE_ANY) != 0;
}

/* Render a template against the run's context, bounded. A failure is the
 * step's (permanent), never the decision's: msg receives why. */
rs_status
rs_run_render(dctx *d, json_t *tmpl, json_t **out, char *msg, size_t cap, const char **code)
{
	*out = NULL;
	if (tmpl == NULL)
		return RS_OK;
	if (rs_template_render(tmpl, d->s->ctx, out, msg, cap) != RS_OK) {
		*code = "template_error";
		return RS_EINVAL;
	}
	if (rs_run_too_large(*out)) {
		json_decref(*out);
		*out = NULL;
		*code = "too_large";
		snprintf(msg, cap, "the rendered value is larger than %d bytes",
		         RS_RUN_MAX_VALUE_BYTES);
		return RS_EINVAL;
	}
	return RS_OK;
}

/* --- effects --- */

void
rs_run_add_timer_effect(const rs_run *r, rs_decision *o, const char *timer_id, rs_timer_purpose p,
                 const char *step_id, int64_t attempt, int64_t due_at)
{
	rs_cmd *c;

	o->timers = xgrow(o->timers, o->ntimers + 1, sizeof(*o->timers));
	c = &o->timers[o->ntimers++];
	memset(c, 0, sizeof(*c));
	c->type = RS_CMD_TIMER_FIRE;
	snprintf(c->run_id, sizeof(c->run_id), "%s", r->run_id);
	snprintf(c->tenant, sizeof(c->tenant), "%s", r->tenant);
	snprintf(c->traceparent, sizeof(c->traceparent), "%s", r->traceparent);
	c->timer_id = xstrdup(timer_id);
	c->step_id = xstrdup(step_id);
	c->purpose = p;
	c->attempt = attempt;
	c->due_at = due_at;
}

void
rs_run_add_call_effect(const rs_run *r, rs_decision *o, const run_call *call, int cancel)
{
	rs_toolcall *t;

	o->calls = xgrow(o->calls, o->ncalls + 1, sizeof(*o->calls));
	t = &o->calls[o->ncalls++];
	memset(t, 0, sizeof(*t));
	t->cancel = cancel;
	t->call_id = xstrdup(call->call_id);
	t->run_id = xstrdup(r->run_id);
	t->tenant = xstrdup(r->tenant);
	if (cancel)
		return;
	t->step_id = xstrdup(call->step_id);
	t->tool = xstrdup(call->tool);
	t->device = xstrdup(call->device);
	t->capability = xstrdup(call->capability);
	t->args = json_incref(call->args);
	t->attempt = call->attempt;
	t->deadline = call->deadline;
}

/* A tool.cancel for every call still out (cancel, run timeout). Called
 * before the terminal event, which marks those calls cancelled. */
void
rs_run_cancel_outstanding(dctx *d)
{
	for (size_t i = 0; i < d->s->ncalls; i++)
		if (call_outstanding(&d->s->calls[i]))
			rs_run_add_call_effect(d->s, d->out, &d->s->calls[i], 1);
}

/* Commands to other runs (children and parents): run.start of a child,
 * cancel of a child, child.done to the parent. De-duplicated downstream
 * by rs_cmd_msg_id like every effect. */
rs_cmd *
rs_run_add_cmd_effect(const rs_run *r, rs_decision *o, rs_cmd_type t, const char *run_id)
{
	rs_cmd *c;

	for (size_t i = 0; i < o->ncmds; i++)
		if (o->cmds[i].type == t && strcmp(o->cmds[i].run_id, run_id) == 0)
			return NULL;   /* already there */
	o->cmds = xgrow(o->cmds, o->ncmds + 1, sizeof(*o->cmds));
	c = &o->cmds[o->ncmds++];
	memset(c, 0, sizeof(*c));
	c->type = t;
	snprintf(c->run_id, sizeof(c->run_id), "%s", run_id);
	snprintf(c->tenant, sizeof(c->tenant), "%s", r->tenant);
	snprintf(c->traceparent, sizeof(c->traceparent), "%s", r->traceparent);
	return c;
}

/* --- single events (each with its effect) --- */

void
rs_run_make_timer_id(const rs_run *s, char *buf, size_t cap, rs_timer_purpose p,
              const char *step_id, int64_t exec, int64_t attempt)
{
	if (p == RS_TIMER_RUN_TIMEOUT)
		snprintf(buf, cap, "%s.run_timeout", s->run_id);
	else
		snprintf(buf, cap, "%s.%s.%s.%lld.%lld", s->run_id, rs_timer_purpose_name(p),
		         step_id, (long long)exec, (long long)attempt);
}

/* A per-turn timer id: the step timer id plus ".<turn>". */
void
rs_run_turn_timer_id(const rs_run *s, char *buf, size_t cap, rs_timer_purpose p, int64_t turn)
{
	size_t n;

	rs_run_make_timer_id(s, buf, cap, p, s->cur_step, s->cur_exec, s->cur_attempt);
	n = strlen(buf);
	snprintf(buf + n, cap - n, ".%lld", (long long)turn);
}

/* timer.scheduled + the timer effect. */
rs_status
rs_run_schedule_timer(dctx *d, rs_timer_purpose p, const char *step_id, int64_t attempt,
                      int64_t due_at, const char *timer_id)
{
	rs_event ev = new_event(RS_EV_TIMER_SCHEDULED);

	ev.d.timer_scheduled.timer_id = xstrdup(timer_id);
	ev.d.timer_scheduled.purpose = p;
	ev.d.timer_scheduled.step_id = xstrdup(step_id);
	ev.d.timer_scheduled.attempt = attempt;
	ev.d.timer_scheduled.due_at = due_at;
	rs_run_add_timer_effect(d->s, d->out, timer_id, p, step_id, attempt, due_at);
	return rs_run_emit(d, &ev);
}

rs_status
rs_run_schedule_step_timer(dctx *d, rs_timer_purpose p, int64_t due_at)
{
	char id[ID_CAP];

	rs_run_make_timer_id(d->s, id, sizeof(id), p, d->s->cur_step, d->s->cur_exec, d->s->cur_attempt);
	return rs_run_schedule_timer(d, p, d->s->cur_step, d->s->cur_attempt, due_at, id);
}

rs_status
rs_run_emit_run_failed(dctx *d, const char *code, const char *message, rs_errclass cls,
                const char *step_id)
{
	rs_event ev = new_event(RS_EV_RUN_FAILED);
	rs_err e = { (char *)code, (char *)message, cls, 0, NULL };

	rs_run_err_copy(&ev.d.run_failed.error, &e, step_id);
	return rs_run_emit(d, &ev);
}

rs_status
rs_run_emit_step_started(dctx *d, const rs_step *st, int64_t attempt, json_t *input)
{
	rs_event ev = new_event(RS_EV_STEP_STARTED);

	ev.d.step_started.step_id = xstrdup(st->id);
	ev.d.step_started.kind = xstrdup(rs_step_kind_name(st->kind));
	ev.d.step_started.attempt = attempt;
	ev.d.step_started.input = input;   /* taken */
	return rs_run_emit(d, &ev);
}

/* step.completed for the current attempt; output is taken. */
rs_status
rs_run_emit_step_completed(dctx *d, json_t *output, int next_idx)
{
	rs_event ev = new_event(RS_EV_STEP_COMPLETED);
	const rs_step *next = next_idx >= 0 ? rs_agent_step(d->agent, (size_t)next_idx) : NULL;

	ev.d.step_completed.step_id = xstrdup(d->s->cur_step);
	ev.d.step_completed.attempt = d->s->cur_attempt;
	ev.d.step_completed.output = output ? output : json_null();
	/* Clocks of different orchestrators may disagree a little. */
	ev.d.step_completed.duration_ms = AT(d) > d->s->cur_started_at ?
	                                  AT(d) - d->s->cur_started_at : 0;
	ev.d.step_completed.next_step = xstrdup(next ? next->id : "end");
	return rs_run_emit(d, &ev);
}

/* A fork's reuse entry for the step just begun, or NULL: the step is the
 * k-th effect step begun, the k-1 before it were all reused, it is their
 * first attempt, and the source's k-th effect step had this id. Reads the
 * state only (rs_run_settle()'s rule). */
json_t *
rs_run_reused_output(const rs_run *s, const rs_step *st)
{
	json_t *e;

	if (s->reuse == NULL || s->cur_attempt != 1 || s->reuse_next != s->effect_steps - 1)
		return NULL;
	e = json_array_get(s->reuse, (size_t)s->reuse_next);
	if (e == NULL || strcmp(json_string_value(json_object_get(e, "step_id")), st->id) != 0)
		return NULL;
	return e;
}

/* step.completed with the fork source's recorded output: no tool call,
 * timer, signal or request; the step goes where it always goes. */
rs_status
rs_run_emit_step_reused(dctx *d, const rs_step *st)
{
	json_t *e = rs_run_reused_output(d->s, st);
	rs_event ev = new_event(RS_EV_STEP_COMPLETED);
	const rs_step *next = st->next_idx >= 0 ? rs_agent_step(d->agent, (size_t)st->next_idx)
	                                        : NULL;

	ev.d.step_completed.step_id = xstrdup(st->id);
	ev.d.step_completed.attempt = d->s->cur_attempt;
	ev.d.step_completed.output = json_incref(json_object_get(e, "output"));
	if (ev.d.step_completed.output == NULL)
		ev.d.step_completed.output = json_null();
	ev.d.step_completed.duration_ms = 0;
	ev.d.step_completed.next_step = xstrdup(next ? next->id : "end");
	ev.d.step_completed.reused_seq = (int64_t)json_integer_value(json_object_get(e, "seq"));
	return rs_run_emit(d, &ev);
}

const rs_step *
rs_run_step_of(dctx *d, int *idx)
{
	return d->s->cur_step ? rs_agent_step_find(d->agent, d->s->cur_step, idx) : NULL;
}

/* backoff = min(max, initial * multiplier^(attempt-1)), in whole ms. */
int64_t
rs_run_backoff_ms(const rs_retry *r, int64_t attempt)
{
	double b = (double)r->initial_backoff_ms;

	for (int64_t i = 1; i < attempt && b < (double)r->max_backoff_ms; i++)
		b *= r->multiplier;
	return b >= (double)r->max_backoff_ms ? r->max_backoff_ms : (int64_t)b;
}

static int
non_retryable(const rs_step *st, const char *code)
{
	size_t i;
	json_t *c;

	json_array_foreach(st->retry.non_retryable, i, c)
		if (code != NULL && strcmp(json_string_value(c), code) == 0)
			return 1;
	return 0;
}

/*
 * The current attempt failed with e: step.failed, recording whether it is
 * final (permanent errors and non_retryable codes never retry; transient
 * ones and timeouts do, up to max_attempts). What follows (run.failed, or
 * step.retry_scheduled and its timer) is owed: rs_run_settle() emits it.
 * effect_id / retry_after_ms: the failure is an executor's effect.result
 * error (recorded so replay can rebuild that command); a server's
 * Retry-After stretches the backoff.
 */
rs_status
rs_run_fail_step_effect(dctx *d, const rs_step *st, const rs_err *e, const char *effect_id,
                        int64_t retry_after_ms)
{
	rs_event ev = new_event(RS_EV_STEP_FAILED);
	int64_t attempt = d->s->cur_attempt;
	int retryable = e->cls != RS_ERRCLASS_PERMANENT && !non_retryable(st, e->code);
	int again = retryable && attempt < st->retry.max_attempts;

	ev.d.step_failed.step_id = xstrdup(st->id);
	ev.d.step_failed.attempt = attempt;
	rs_run_err_copy(&ev.d.step_failed.error, e, NULL);
	ev.d.step_failed.error.retryable = retryable;
	ev.d.step_failed.final = !again;
	ev.d.step_failed.effect_id = xstrdup(effect_id);
	ev.d.step_failed.retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
	return rs_run_emit(d, &ev);
}

rs_status
rs_run_fail_step(dctx *d, const rs_step *st, const rs_err *e)
{
	return rs_run_fail_step_effect(d, st, e, NULL, 0);
}

rs_status
rs_run_fail_step_code(dctx *d, const rs_step *st, const char *code, rs_errclass cls,
                      const char *msg)
{
	rs_err e = { (char *)code, (char *)msg, cls, cls != RS_ERRCLASS_PERMANENT, NULL };

	return rs_run_fail_step(d, st, &e);
}

rs_status
rs_run_fail_step_timeout(dctx *d, const rs_step *st, const char *message)
{
	return rs_run_fail_step_code(d, st, "timeout", RS_ERRCLASS_TIMEOUT, message);
}
