/*
 * rs_run_decide.c - decide: one handler per command type (run.start,
 * admit, tool delivered/result, signal, cancel, timer.fire, continue), in
 * decide_table[], and rs_run_decide itself: it clones the state, lets the
 * handler record its command and settle the run (rs_run_settle.c), then
 * adds the decision's effects. Also rs_run_at_rest (is anything owed?).
 * The command handlers of http/llm and child runs live with their step
 * kinds (rs_run_effects.c, rs_run_children.c).
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

/* --- command handlers: each records its command, rs_run_settle() does the rest --- */

static rs_status
decide_start(dctx *d)
{
	const rs_cmd *c = d->cmd;
	rs_event ev;

	if (d->s->status != RS_RUN_NONE)
		return RS_OK;   /* duplicate run.start (a queued run was started by settle) */
	if (c->agent != NULL && strcmp(c->agent, rs_agent_name(d->agent)) != 0)
		return fail(d->err, d->cap, "run.start: agent %s does not match definition %s",
		            c->agent, rs_agent_name(d->agent));
	if (c->version != NULL && strcmp(c->version, rs_agent_version(d->agent)) != 0)
		return fail(d->err, d->cap, "run.start: version %s does not match definition %s",
		            c->version, rs_agent_version(d->agent));
	if (c->input != NULL && !json_is_object(c->input))
		return fail(d->err, d->cap, "run.start: input must be an object");
	if (c->reuse != NULL && rs_fork_reuse_check(c->reuse, d->err, d->cap) != RS_OK)
		return RS_EINVAL;
	ev = new_event(RS_EV_RUN_CREATED);
	ev.d.run_created.agent = xstrdup(rs_agent_name(d->agent));
	ev.d.run_created.version = xstrdup(rs_agent_version(d->agent));
	ev.d.run_created.input = c->input ? json_incref(c->input) : json_object();
	ev.d.run_created.idempotency_key = xstrdup(c->idempotency_key);
	ev.d.run_created.timeout_s = rs_agent_timeout_s(d->agent);
	ev.d.run_created.max_steps = rs_agent_max_steps(d->agent);
	ev.d.run_created.forked_from = xstrdup(c->forked_from);
	ev.d.run_created.from_seq = c->forked_from ? c->from_seq : 0;
	ev.d.run_created.reuse = c->forked_from && c->reuse ? json_incref(c->reuse) : NULL;
	ev.d.run_created.tenant_limit = c->tenant_limit > 0 ? c->tenant_limit : 0;
	ev.d.run_created.schedule_id = xstrdup(c->schedule_id);
	ev.d.run_created.schedule_tick = c->schedule_id ? c->schedule_tick : 0;
	{
		int64_t limit = 0;
		json_t *tmpl = rs_agent_concurrency(d->agent, &limit), *ctx, *v = NULL;
		char msg[160];
		if (tmpl != NULL) {
			/* The key is rendered once, here, from the input (a template
			 * that does not render gives the empty key: one queue). */
			ctx = json_pack("{s:O, s:{}}", "input", ev.d.run_created.input, "steps");
			if (rs_template_render(tmpl, ctx, &v, msg, sizeof(msg)) != RS_OK)
				v = NULL;
			ev.d.run_created.concurrency_key = v ? rs_run_text_of_value(v) : xstrdup("");
			ev.d.run_created.concurrency_limit = limit;
			json_decref(v);
			json_decref(ctx);
		}
	}
	/* A child run: started by its parent's orchestrator (rs_run.c, children). */
	ev.d.run_created.parent_run_id = xstrdup(c->parent_run_id);
	ev.d.run_created.root_run_id = xstrdup(c->root_run_id);
	ev.d.run_created.scope = xstrdup(c->scope);
	ev.d.run_created.parent_step_id = xstrdup(c->parent_step_id);
	ev.d.run_created.tags = json_incref(c->tags);
	return rs_run_emit(d, &ev);
}

/* run.admit: the gate gave a queued run its slot. Anything else (a run
 * already started, cancelled while queued, or not gated) decides nothing. */
static rs_status
decide_admit(dctx *d)
{
	rs_event ev;

	if (d->s->status != RS_RUN_QUEUED || d->s->last_type != RS_EV_RUN_CREATED ||
	    (d->s->conc_limit == 0 && d->s->tenant_limit == 0))
		return RS_OK;
	ev = new_event(RS_EV_RUN_STARTED);
	ev.d.run_started.instance = xstrdup(d->instance);
	ev.d.run_started.admission = xstrdup("granted");
	return rs_run_emit(d, &ev);
}

/* The call a tool.result / tool.delivered may act on, or NULL (stale). */
static run_call *
live_call(dctx *d)
{
	run_call *c = rs_run_find_call(d->s, d->cmd->call_id);

	if (c == NULL || !call_outstanding(c) || d->s->cur_done ||
	    strcmp(c->step_id, d->s->cur_step) != 0 || c->attempt != d->s->cur_attempt)
		return NULL;
	return c;
}

static rs_status
decide_tool_delivered(dctx *d)
{
	run_call *c = live_call(d);
	rs_event ev;

	if (c == NULL || c->status != CALL_REQUESTED)
		return RS_OK;   /* unknown, already dispatched or finished */
	ev = new_event(RS_EV_TOOL_DISPATCHED);
	ev.d.tool_dispatched.call_id = xstrdup(c->call_id);
	ev.d.tool_dispatched.device_id = xstrdup(d->cmd->device_id ? d->cmd->device_id : "unknown");
	ev.d.tool_dispatched.router = xstrdup(d->cmd->router);
	return rs_run_emit(d, &ev);
}

static rs_status
decide_tool_result(dctx *d)
{
	const rs_cmd *cmd = d->cmd;
	run_call *c = live_call(d);
	const rs_step *st;
	rs_err big = { "too_large", NULL, RS_ERRCLASS_PERMANENT, 0, NULL };
	char msg[128];
	rs_event ev;

	if (c == NULL || (st = rs_run_step_of(d, NULL)) == NULL)
		return RS_OK;   /* unknown, old or cancelled call */
	if (cmd->has_error || rs_run_too_large(cmd->output)) {
		const rs_err *e = &cmd->error;
		if (!cmd->has_error) {
			snprintf(msg, sizeof(msg), "the tool's output is larger than %d bytes",
			         RS_RUN_MAX_VALUE_BYTES);
			big.message = msg;
			e = &big;
		}
		ev = new_event(RS_EV_TOOL_FAILED);
		ev.d.tool_failed.call_id = xstrdup(c->call_id);
		ev.d.tool_failed.step_id = xstrdup(st->id);
		ev.d.tool_failed.attempt = d->s->cur_attempt;
		rs_run_err_copy(&ev.d.tool_failed.error, e, NULL);
		ev.d.tool_failed.device_id = xstrdup(cmd->device_id);
		return rs_run_emit(d, &ev);
	}
	ev = new_event(RS_EV_TOOL_COMPLETED);
	ev.d.tool_completed.call_id = xstrdup(c->call_id);
	ev.d.tool_completed.step_id = xstrdup(st->id);
	ev.d.tool_completed.attempt = d->s->cur_attempt;
	ev.d.tool_completed.output = cmd->output ? json_incref(cmd->output) : json_null();
	ev.d.tool_completed.device_id = xstrdup(cmd->device_id);
	return rs_run_emit(d, &ev);
}

static rs_status
decide_signal(dctx *d)
{
	const rs_cmd *cmd = d->cmd;
	rs_run *s = d->s;
	const rs_step *st = rs_run_step_of(d, NULL);
	int waiting = st != NULL && !s->cur_done && s->cur_kind == RS_STEP_SIGNAL &&
	              s->cur_signal != NULL && cmd->name != NULL &&
	              strcmp(s->cur_signal, cmd->name) == 0;
	rs_event ev;

	if (rs_run_find_signal(s, cmd->signal_id) != NULL)
		return RS_OK;   /* duplicate signal_id */
	if (cmd->signal_id == NULL || cmd->name == NULL)
		return fail(d->err, d->cap, "signal: signal_id and name are required");
	ev = new_event(RS_EV_SIGNAL_RECEIVED);
	ev.d.signal_received.signal_id = xstrdup(cmd->signal_id);
	ev.d.signal_received.name = xstrdup(cmd->name);
	ev.d.signal_received.payload = cmd->payload ? json_incref(cmd->payload) : json_null();
	ev.d.signal_received.step_id = waiting ? xstrdup(st->id) : NULL;
	return rs_run_emit(d, &ev);
}

static rs_status
decide_cancel(dctx *d)
{
	rs_event ev = new_event(RS_EV_RUN_CANCEL_REQUESTED);

	ev.d.run_cancel_requested.reason = xstrdup(d->cmd->reason);
	return rs_run_emit(d, &ev);
}

/*
 * Is what the timer was set for still to be done? A timer outlives its
 * purpose when the thing it guards happened first (the tool answered, the
 * signal came, the sleep or the retry already began, the effect answered):
 * such a fire decides nothing, it never fails a step that succeeded.
 */
static int
timer_open(const rs_run *s, const run_timer *t)
{
	int current = s->cur_step != NULL && t->step_id != NULL &&
	              strcmp(s->cur_step, t->step_id) == 0;

	switch (t->purpose) {
	case RS_TIMER_RUN_TIMEOUT:
		return 1;
	case RS_TIMER_RETRY:
		/* the failed attempt is the one before the retry */
		return current && s->cur_done && s->cur_attempt == t->attempt - 1;
	case RS_TIMER_SLEEP:
		return current && !s->cur_done && s->cur_attempt == t->attempt &&
		       s->cur_kind == RS_STEP_SLEEP;
	case RS_TIMER_SIGNAL_TIMEOUT:
		return current && !s->cur_done && s->cur_attempt == t->attempt &&
		       s->cur_kind == RS_STEP_SIGNAL && !s->cur_signal_taken;
	case RS_TIMER_TOOL_TIMEOUT:
		return current && !s->cur_done && s->cur_attempt == t->attempt &&
		       rs_run_calls_outstanding(s, t->step_id, t->attempt);
	case RS_TIMER_STEP_TIMEOUT:
		return current && !s->cur_done && s->cur_attempt == t->attempt && s->eff_id != NULL;
	default:
		return 0;
	}
}

static rs_status
decide_timer_fire(dctx *d)
{
	run_timer *t = rs_run_find_timer(d->s, d->cmd->timer_id);
	rs_event ev;

	/* Fire once, never early, never for a purpose already met: such a
	 * fire decides nothing; an early one is re-scheduled by the
	 * orchestrator (rs_run_timer_due). */
	if (t == NULL || t->state != TIMER_PENDING || d->now < t->due_at || !timer_open(d->s, t))
		return RS_OK;
	ev = new_event(RS_EV_TIMER_FIRED);
	ev.d.timer_fired.timer_id = xstrdup(t->timer_id);
	ev.d.timer_fired.purpose = t->purpose;
	ev.d.timer_fired.step_id = xstrdup(t->step_id);
	ev.d.timer_fired.attempt = t->attempt;
	ev.d.timer_fired.due_at = t->due_at;
	return rs_run_emit(d, &ev);
}

/* run.continue: nothing to record; rs_run_settle() finishes what is owed. */
static rs_status
decide_continue(dctx *d)
{
	(void)d;
	return RS_OK;
}

/* Add to out every effect r owes (rs_run_pending_effects) that out does
 * not already carry. */
void
rs_run_add_pending_effects(const rs_run *r, rs_decision *out)
{
	size_t i, j;

	for (i = 0; i < r->ncalls; i++) {
		const run_call *c = &r->calls[i];
		int cancel = c->status == CALL_CANCELLED;
		if (!(rs_run_status_terminal(r->status) ? cancel : call_outstanding(c)))
			continue;
		for (j = 0; j < out->ncalls; j++)
			if (out->calls[j].cancel == cancel && strcmp(out->calls[j].call_id, c->call_id) == 0)
				break;
		if (j == out->ncalls)
			rs_run_add_call_effect(r, out, c, cancel);
	}
	for (i = 0; i < r->ntimers; i++) {
		const run_timer *t = &r->timers[i];
		if (t->state != TIMER_PENDING)
			continue;
		for (j = 0; j < out->ntimers; j++)
			if (strcmp(out->timers[j].timer_id, t->timer_id) == 0)
				break;
		if (j == out->ntimers)
			rs_run_add_timer_effect(r, out, t->timer_id, t->purpose, t->step_id, t->attempt, t->due_at);
	}
	for (i = 0; i < r->nchildren; i++) {
		const run_child *c = &r->children[i];
		if (c->done)
			continue;
		if (c->cancel_owed)
			rs_run_add_child_cancel(r, out, c);
		else if (!rs_run_status_terminal(r->status))
			rs_run_add_child_start(r, out, c);
	}
	rs_run_add_child_done(r, out);
}

/* Effects owed for longer than grace: a pending timer due more than grace
 * ago, a tool call requested more than grace ago and never dispatched, a
 * tool call dispatched more than twice grace ago and never answered.
 * Normally the timer or the call is on its stream and only late; but
 * nats-server 2.9.10 can lose messages it acknowledged when a replica
 * resets its stream state ("stream store EOF", docs/architecture.md,
 * "Faults"), and then nothing else would ever fire or deliver them. A
 * dispatched call is published again for its result: the router keeps a
 * device's answer in the call's KV record and sends tool.result again when
 * the call comes back after it (services/tool-router/calls_result.c); a
 * call still at its device changes nothing there. */
void
rs_run_late_effects(const rs_run *r, int64_t now, int64_t grace, rs_decision *out)
{
	memset(out, 0, sizeof(*out));
	if (r->status == RS_RUN_NONE || rs_run_status_terminal(r->status))
		return;
	for (size_t i = 0; i < r->ncalls; i++) {
		const run_call *c = &r->calls[i];
		if ((c->status == CALL_REQUESTED && c->requested_at > 0 && c->requested_at < now - grace) ||
		    (c->status == CALL_DISPATCHED && c->dispatched_at > 0 && c->dispatched_at < now - 2 * grace))
			rs_run_add_call_effect(r, out, c, 0);
	}
	for (size_t i = 0; i < r->ntimers; i++) {
		const run_timer *t = &r->timers[i];
		if (t->state == TIMER_PENDING && t->due_at < now - grace)
			rs_run_add_timer_effect(r, out, t->timer_id, t->purpose, t->step_id, t->attempt,
			                        t->due_at);
	}
}

/* Effects a decision owes to other runs besides those emitted with its
 * events: cancels of the children it stopped waiting for, and child.done
 * to the parent when it ended the run. */
static void
add_decision_effects(const rs_run *before, const rs_run *after, rs_decision *out)
{
	for (size_t i = 0; i < after->nchildren; i++) {
		const run_child *c = &after->children[i];
		if (c->cancel_owed && !c->done &&
		    (i >= before->nchildren || !before->children[i].cancel_owed))
			rs_run_add_child_cancel(after, out, c);
	}
	if (!rs_run_status_terminal(before->status))
		rs_run_add_child_done(after, out);
}

typedef rs_status (*decide_fn)(dctx *d);

static const struct {
	decide_fn fn;
	int needs_agent;
} decide_table[RS_CMD__COUNT] = {
	[RS_CMD_RUN_START] = { decide_start, 1 },
	[RS_CMD_TOOL_RESULT] = { decide_tool_result, 1 },
	[RS_CMD_TOOL_DELIVERED] = { decide_tool_delivered, 1 },
	[RS_CMD_SIGNAL] = { decide_signal, 1 },
	[RS_CMD_CANCEL] = { decide_cancel, 1 },
	[RS_CMD_TIMER_FIRE] = { decide_timer_fire, 1 },
	[RS_CMD_EFFECT_RESULT] = { rs_run_decide_effect_result, 1 },
	[RS_CMD_LLM_CHUNK] = { rs_run_decide_llm_chunk, 1 },
	[RS_CMD_RUN_CONTINUE] = { decide_continue, 1 },
	[RS_CMD_RUN_ADMIT] = { decide_admit, 1 },
	[RS_CMD_CHILD_DONE] = { rs_run_decide_child_done, 1 },
};

rs_status
rs_run_decide(const rs_run *r, const rs_agent *agent, const rs_cmd *cmd, int64_t now_ms,
              const char *instance, rs_decision *out, char *err, size_t cap)
{
	dctx d;
	rs_status rc;
	int cont;

	memset(out, 0, sizeof(*out));
	if ((unsigned)cmd->type >= RS_CMD__COUNT)
		return fail(err, cap, "unknown command type %d", (int)cmd->type);
	if (r->status == RS_RUN_NONE && cmd->type != RS_CMD_RUN_START) {
		snprintf(err, cap, "%s: run %s does not exist", rs_cmd_type_name(cmd->type),
		         cmd->run_id);
		return RS_ENOTFOUND;
	}
	/* Finished runs take no more commands: duplicates, late results,
	 * late timers and cancels all decide nothing. */
	if (rs_run_status_terminal(r->status))
		return RS_OK;
	if (r->status != RS_RUN_NONE &&
	    (strcmp(cmd->run_id, r->run_id) != 0 || strcmp(cmd->tenant, r->tenant) != 0))
		return fail(err, cap, "%s: command for %s/%s sent to run %s/%s",
		            rs_cmd_type_name(cmd->type), cmd->tenant, cmd->run_id, r->tenant, r->run_id);
	if (decide_table[cmd->type].needs_agent) {
		if (agent == NULL)
			return fail(err, cap, "%s: agent definition required",
			            rs_cmd_type_name(cmd->type));
		if (r->version != NULL && strcmp(r->version, rs_agent_version(agent)) != 0)
			return fail(err, cap, "agent version %s given, run is pinned to %s",
			            rs_agent_version(agent), r->version);
	}
	memset(&d, 0, sizeof(d));
	d.s = rs_run_clone(r);
	d.agent = agent;
	d.cmd = cmd;
	d.now = now_ms;
	d.instance = instance;
	d.out = out;
	d.err = err;
	d.cap = cap;
	/* First finish a decision a crash cut short (nothing if at rest),
	 * then the command, then what follows from it. When the first part
	 * alone reached the bound, the command waits for the next round. */
	rc = rs_run_settle(&d);
	cont = out->nevents > 0;
	if (rc == RS_OK && !out->more && !rs_run_status_terminal(d.s->status)) {
		size_t before = out->nevents;
		rc = decide_table[cmd->type].fn(&d);
		if (rc == RS_OK && out->nevents > before)
			rc = rs_run_settle(&d);
	}
	/* A cut decision's effects died with it (effects go out after the
	 * events): what the finished state owes is owed now. */
	if (rc == RS_OK && out->nevents > 0)
		add_decision_effects(r, d.s, out);
	if (rc == RS_OK && cont)
		rs_run_add_pending_effects(d.s, out);
	if (rc == RS_OK && out->nevents > 0)
		out->after = d.s;
	else
		rs_run_free(d.s);
	if (rc != RS_OK)
		rs_decision_free(out);
	return rc;
}

/* 1 if nothing is owed: the run is finished or waits with everything in
 * place. agent: the run's pinned definition. */
int
rs_run_at_rest(const rs_run *r, const rs_agent *agent)
{
	rs_decision out;
	char err[256];
	dctx d;
	int rest;

	if (r->status == RS_RUN_NONE || rs_run_status_terminal(r->status))
		return 1;
	memset(&out, 0, sizeof(out));
	memset(&d, 0, sizeof(d));
	d.s = rs_run_clone(r);
	d.agent = agent;
	d.now = r->group_at;
	d.instance = "";
	d.out = &out;
	d.err = err;
	d.cap = sizeof(err);
	rest = rs_run_owe(&d) == RS_OK && out.nevents == 0;
	rs_run_free(d.s);
	rs_decision_free(&out);
	return rest;
}
