/*
 * rs_run.c - the run state machine (see rs_run.h): evolve folds events into
 * a state, decide turns a command into new events and effects.
 *
 * The machine is split by job, each file opening with what it owns:
 *  1. rs_run.c (this file): the state (struct rs_run), its small helpers
 *     and look-ups, the pending effects of a state, and the JSON view.
 *  2. rs_run_evolve.c: evolve, one handler per event type. Evolve checks
 *     that an event fits (sequence, run, step, call) and records it.
 *  3. decide, one handler per command type (rs_run_decide.c). Decide works
 *     on a private clone of the state and *evolves every event it emits into
 *     that clone at once* (rs_run_emit(), rs_run_emit.c). So later logic in
 *     the same decision sees the effect of earlier events, and a decision is
 *     evolvable by construction. The engine part is rs_run_settle()
 *     (rs_run_settle.c): start steps one after the other until one has to
 *     wait (tool, timer, signal) or the run ends.
 *  Two families of steps live in their own files, with their evolve
 *  handlers and what they owe (rs_run_owe() calls them):
 *  - rs_run_children.c: child runs (parallel, foreach and run steps). The
 *    step records child.started / child.finished; the child's run.start and
 *    cancel, and a child's child.done to its parent, are commands to other
 *    runs (rs_decision.cmds), see docs/architecture.md.
 *  - rs_run_effects.c: server-side effects (http and llm steps). The state
 *    machine only records requests (http.requested, llm.requested) and
 *    results (effect.result / llm.chunk commands from the executor); the
 *    executor finds the requests in the log itself, so they are not effects
 *    of a decision.
 *  rs_run_int.h holds the state's definition and what the files share.
 *
 * Determinism: no clock (now_ms is a parameter), no randomness. Ids are
 * derived from the state: every step.started increments an execution
 * counter `exec`, unique per attempt even when a branch loops back, and
 *   call_id  = "<run_id>-<step_id>-<exec>-<attempt>"   (a NATS subject token)
 *   timer_id = "<run_id>.<purpose>.<step_id>.<exec>.<attempt>"
 *              "<run_id>.run_timeout"
 *   effect_id = "<run_id>-<step_id>-<exec>-<attempt>-http"
 *               "<run_id>-<step_id>-<exec>-<attempt>-llm<turn>"
 *   llm tool calls: call_id "<run_id>-<step_id>-<exec>-<attempt>-t<turn>-<i>",
 *   per-turn timers "<timer_id>.<turn>"
 *   child runs (parallel, foreach, run steps): a UUIDv7 with the decision's
 *   time and a hash of "<run_id>/<step_id>/<exec>/<attempt>/<key>"
 *   (child_run_id() in rs_run_children.c)
 *
 * Allocation failure aborts (Redis-style): every status returned here means
 * something about the run, not about memory.
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

/* ------------------------------------------------------------------ */
/* 1. State                                                            */
/* ------------------------------------------------------------------ */

const char *rs_run_call_status_names[] = {
	"requested", "dispatched", "completed", "failed", "timed_out", "cancelled"
};

static const char *status_names[] = {
	"none", "queued", "running", "waiting", "completed", "failed", "cancelled", "timed_out"
};

const char *
rs_run_status_name(rs_run_status s)
{
	return (unsigned)s <= RS_RUN_TIMED_OUT ? status_names[s] : "unknown";
}

int
rs_run_status_terminal(rs_run_status s)
{
	return s == RS_RUN_COMPLETED || s == RS_RUN_FAILED || s == RS_RUN_CANCELLED ||
	       s == RS_RUN_TIMED_OUT;
}

rs_run *
rs_run_new(void)
{
	rs_run *r = calloc(1, sizeof(*r));

	if (r == NULL)
		rs_oom(0);
	r->cur_kind = -1;
	r->last_type = -1;
	return r;
}

void
rs_run_free(rs_run *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->ncalls; i++) {
		run_call *c = &r->calls[i];
		free(c->call_id); free(c->step_id); free(c->tool); free(c->device);
		free(c->capability); free(c->device_id);
		json_decref(c->args); json_decref(c->output); json_decref(c->error);
	}
	for (i = 0; i < r->ntimers; i++) {
		free(r->timers[i].timer_id);
		free(r->timers[i].step_id);
	}
	for (i = 0; i < r->nsignals; i++) {
		run_signal *s = &r->signals[i];
		free(s->signal_id); free(s->name); free(s->consumed_by);
		json_decref(s->payload);
	}
	for (i = 0; i < r->nchildren; i++) {
		run_child *c = &r->children[i];
		free(c->child_run_id); free(c->step_id); free(c->key); free(c->agent);
		free(c->version); free(c->scope); free(c->status);
		json_decref(c->input); json_decref(c->output); json_decref(c->error);
	}
	free(r->children);
	free(r->parent_run_id); free(r->root_run_id); free(r->scope); free(r->parent_step_id);
	free(r->calls); free(r->timers); free(r->signals);
	free(r->agent); free(r->version); free(r->idempotency_key); free(r->instance);
	free(r->cancel_reason); free(r->cur_step); free(r->cur_signal); free(r->eff_id);
	json_decref(r->llm_messages); json_decref(r->llm_calls); json_decref(r->llm_usage);
	json_decref(r->input); json_decref(r->output); json_decref(r->error);
	json_decref(r->last_output); json_decref(r->ctx); json_decref(r->steps);
	free(r->last_timer); free(r->last_next); rs_err_free(&r->last_err);
	json_decref(r->last_http); free(r->last_finish);
	free(r->forked_from); json_decref(r->reuse); free(r->conc_key);
	free(r);
}

/*
 * Deep enough copy for decide's scratch state. JSON values taken from
 * events are never mutated, so sharing them by reference is safe; ctx and
 * steps are mutated by evolve and are copied.
 */
rs_run *
rs_run_clone(const rs_run *r)
{
	rs_run *c = rs_run_new();
	size_t i;

	*c = *r;
	c->agent = xstrdup(r->agent);
	c->version = xstrdup(r->version);
	c->idempotency_key = xstrdup(r->idempotency_key);
	c->instance = xstrdup(r->instance);
	c->cancel_reason = xstrdup(r->cancel_reason);
	c->cur_step = xstrdup(r->cur_step);
	c->cur_signal = xstrdup(r->cur_signal);
	c->eff_id = xstrdup(r->eff_id);
	c->llm_messages = json_incref(r->llm_messages);   /* replaced, never mutated */
	c->llm_calls = json_incref(r->llm_calls);
	c->llm_usage = r->llm_usage ? json_deep_copy(r->llm_usage) : NULL;
	c->input = json_incref(r->input);
	c->output = json_incref(r->output);
	c->error = json_incref(r->error);
	c->last_output = json_incref(r->last_output);
	c->ctx = r->ctx ? json_deep_copy(r->ctx) : NULL;
	c->steps = r->steps ? json_deep_copy(r->steps) : NULL;
	c->last_timer = xstrdup(r->last_timer);
	c->last_next = xstrdup(r->last_next);
	c->last_err.code = xstrdup(r->last_err.code);
	c->last_err.message = xstrdup(r->last_err.message);
	c->last_err.step_id = xstrdup(r->last_err.step_id);
	c->last_http = json_incref(r->last_http);
	c->last_finish = xstrdup(r->last_finish);
	c->forked_from = xstrdup(r->forked_from);
	c->reuse = json_incref(r->reuse);   /* from run.created, never mutated */
	c->conc_key = xstrdup(r->conc_key);

	c->calls = r->ncalls ? xgrow(NULL, r->ncalls, sizeof(*c->calls)) : NULL;
	for (i = 0; i < r->ncalls; i++) {
		run_call *d = &c->calls[i];
		*d = r->calls[i];
		d->call_id = xstrdup(d->call_id); d->step_id = xstrdup(d->step_id);
		d->tool = xstrdup(d->tool); d->device = xstrdup(d->device);
		d->capability = xstrdup(d->capability); d->device_id = xstrdup(d->device_id);
		d->args = json_incref(d->args);
		d->output = json_incref(d->output);
		d->error = json_incref(d->error);
	}
	c->timers = r->ntimers ? xgrow(NULL, r->ntimers, sizeof(*c->timers)) : NULL;
	for (i = 0; i < r->ntimers; i++) {
		c->timers[i] = r->timers[i];
		c->timers[i].timer_id = xstrdup(r->timers[i].timer_id);
		c->timers[i].step_id = xstrdup(r->timers[i].step_id);
	}
	c->parent_run_id = xstrdup(r->parent_run_id);
	c->root_run_id = xstrdup(r->root_run_id);
	c->scope = xstrdup(r->scope);
	c->parent_step_id = xstrdup(r->parent_step_id);
	c->children = r->nchildren ? xgrow(NULL, r->nchildren, sizeof(*c->children)) : NULL;
	for (i = 0; i < r->nchildren; i++) {
		run_child *d = &c->children[i];
		*d = r->children[i];
		d->child_run_id = xstrdup(d->child_run_id); d->step_id = xstrdup(d->step_id);
		d->key = xstrdup(d->key); d->agent = xstrdup(d->agent);
		d->version = xstrdup(d->version); d->scope = xstrdup(d->scope);
		d->status = xstrdup(d->status);
		d->input = json_incref(d->input);
		d->output = json_incref(d->output);
		d->error = json_incref(d->error);
	}
	c->signals = r->nsignals ? xgrow(NULL, r->nsignals, sizeof(*c->signals)) : NULL;
	for (i = 0; i < r->nsignals; i++) {
		run_signal *d = &c->signals[i];
		*d = r->signals[i];
		d->signal_id = xstrdup(d->signal_id); d->name = xstrdup(d->name);
		d->consumed_by = xstrdup(d->consumed_by);
		d->payload = json_incref(d->payload);
	}
	return c;
}

rs_run_status rs_run_get_status(const rs_run *r) { return r->status; }
uint64_t rs_run_last_seq(const rs_run *r) { return r->last_seq; }
const char *rs_run_get_agent(const rs_run *r) { return r->agent; }
const char *rs_run_get_version(const rs_run *r) { return r->version; }
const char *rs_run_get_tenant(const rs_run *r) { return r->status ? r->tenant : NULL; }
const char *rs_run_get_id(const rs_run *r) { return r->status ? r->run_id : NULL; }
const char *rs_run_get_scope(const rs_run *r) { return r->scope; }
const char *rs_run_get_parent(const rs_run *r) { return r->parent_run_id; }

const char *
rs_run_current_step(const rs_run *r)
{
	return rs_run_status_terminal(r->status) ? NULL : r->cur_step;
}

run_call *
rs_run_find_call(const rs_run *r, const char *call_id)
{
	for (size_t i = 0; call_id != NULL && i < r->ncalls; i++)
		if (strcmp(r->calls[i].call_id, call_id) == 0)
			return &r->calls[i];
	return NULL;
}

run_timer *
rs_run_find_timer(const rs_run *r, const char *timer_id)
{
	for (size_t i = 0; timer_id != NULL && i < r->ntimers; i++)
		if (strcmp(r->timers[i].timer_id, timer_id) == 0)
			return &r->timers[i];
	return NULL;
}

rs_status
rs_run_timer_due(const rs_run *r, const char *timer_id, int64_t *due)
{
	run_timer *t = rs_run_find_timer(r, timer_id);

	if (t == NULL || t->state != TIMER_PENDING)
		return RS_ENOTFOUND;
	*due = t->due_at;
	return RS_OK;
}

run_signal *
rs_run_find_signal(const rs_run *r, const char *signal_id)
{
	for (size_t i = 0; signal_id != NULL && i < r->nsignals; i++)
		if (strcmp(r->signals[i].signal_id, signal_id) == 0)
			return &r->signals[i];
	return NULL;
}

run_child *
rs_run_find_child(const rs_run *r, const char *child_run_id)
{
	for (size_t i = 0; child_run_id != NULL && i < r->nchildren; i++)
		if (strcmp(r->children[i].child_run_id, child_run_id) == 0)
			return &r->children[i];
	return NULL;
}

/* Children of the current step attempt (started by it). */
int
rs_run_child_current(const rs_run *r, const run_child *c)
{
	return r->cur_step != NULL && strcmp(c->step_id, r->cur_step) == 0 &&
	       c->attempt == r->cur_attempt && c->exec == r->cur_exec;
}

/* The attempt (or the run) ended: children still running are no longer
 * awaited and owe a cancel (an effect: rs_run_decide and
 * rs_run_pending_effects send it). */
void
rs_run_release_children(rs_run *r, int all)
{
	for (size_t i = 0; i < r->nchildren; i++)
		if (!r->children[i].done && (all || rs_run_child_current(r, &r->children[i])))
			r->children[i].cancel_owed = 1;
}

/* The oldest signal of that name nobody consumed yet. */
run_signal *
rs_run_buffered_signal(const rs_run *r, const char *name)
{
	for (size_t i = 0; name != NULL && i < r->nsignals; i++)
		if (r->signals[i].consumed_by == NULL && strcmp(r->signals[i].name, name) == 0)
			return &r->signals[i];
	return NULL;
}

/* Timers of a step attempt end with it (a late fire is then stale). */
void
rs_run_cancel_step_timers(rs_run *r, const char *step_id, int64_t attempt)
{
	for (size_t i = 0; i < r->ntimers; i++) {
		run_timer *t = &r->timers[i];
		if (t->state == TIMER_PENDING && t->purpose != RS_TIMER_RUN_TIMEOUT &&
		    t->purpose != RS_TIMER_RETRY && t->step_id != NULL &&
		    strcmp(t->step_id, step_id) == 0 && t->attempt == attempt)
			t->state = TIMER_CANCELLED;
	}
}

/* The per-step entry of the view, created on first use. */
json_t *
rs_run_view_step(rs_run *r, const char *id)
{
	json_t *s = json_object_get(r->steps, id);

	if (s == NULL) {
		s = json_pack("{s:s, s:[], s:n}", "status", "pending", "attempts", "output");
		json_object_set_new(r->steps, id, s);
	}
	return s;
}

json_t *
rs_run_view_attempt(rs_run *r, const char *id)
{
	json_t *a = json_object_get(rs_run_view_step(r, id), "attempts");
	size_t n = json_array_size(a);

	return n ? json_array_get(a, n - 1) : NULL;
}

void
rs_run_view_set_status(rs_run *r, const char *id, const char *status)
{
	json_object_set_new(rs_run_view_step(r, id), "status", json_string(status));
}

/* A copy of e without its step id. */
void
rs_run_err_copy_plain(rs_err *dst, const rs_err *src)
{
	dst->code = xstrdup(src->code);
	dst->message = xstrdup(src->message);
	dst->cls = src->cls;
	dst->retryable = src->retryable;
	dst->step_id = NULL;
}

json_t *
rs_run_err_json(const rs_err *e)
{
	json_t *o = json_pack("{s:s?, s:s?, s:s, s:b}", "code", e->code, "message", e->message,
	                      "class", rs_errclass_name(e->cls), "retryable", e->retryable);
	if (e->step_id != NULL)
		json_object_set_new(o, "step_id", json_string(e->step_id));
	return o;
}

int
rs_run_kind_of(const char *name)
{
	for (int k = RS_STEP_TOOL; k <= RS_STEP_KIND_LAST; k++)
		if (name != NULL && strcmp(name, rs_step_kind_name((rs_step_kind)k)) == 0)
			return k;
	return -1;
}

/* Server-side effect bookkeeping (defined with the effect events below). */
int
rs_run_calls_outstanding(const rs_run *r, const char *step_id, int64_t attempt)
{
	for (size_t i = 0; i < r->ncalls; i++)
		if (call_outstanding(&r->calls[i]) && strcmp(r->calls[i].step_id, step_id) == 0 &&
		    r->calls[i].attempt == attempt)
			return 1;
	return 0;
}

void
rs_run_cancel_timers_of(rs_run *r, const char *step_id, int64_t attempt, rs_timer_purpose p)
{
	for (size_t i = 0; i < r->ntimers; i++) {
		run_timer *t = &r->timers[i];
		if (t->state == TIMER_PENDING && t->purpose == p && t->step_id != NULL &&
		    strcmp(t->step_id, step_id) == 0 && t->attempt == attempt)
			t->state = TIMER_CANCELLED;
	}
}

/* ------------------------------------------------------------------ */
/* 4. Effects and view                                                 */
/* ------------------------------------------------------------------ */

rs_status
rs_run_pending_effects(const rs_run *r, rs_decision *out)
{
	memset(out, 0, sizeof(*out));
	rs_run_add_pending_effects(r, out);
	return RS_OK;
}

void
rs_decision_free(rs_decision *d)
{
	size_t i;

	for (i = 0; i < d->nevents; i++)
		rs_event_free(&d->events[i]);
	for (i = 0; i < d->ntimers; i++)
		rs_cmd_free(&d->timers[i]);
	for (i = 0; i < d->ncalls; i++)
		rs_toolcall_free(&d->calls[i]);
	for (i = 0; i < d->ncmds; i++)
		rs_cmd_free(&d->cmds[i]);
	free(d->cmds);
	free(d->events);
	free(d->timers);
	free(d->calls);
	if (d->after != NULL)
		rs_run_free(d->after);
	memset(d, 0, sizeof(*d));
}

static json_t *
ms_or_null(int64_t ms)
{
	return ms ? json_integer(ms) : json_null();
}

static json_t *
view_calls(const rs_run *r)
{
	json_t *a = json_array();

	for (size_t i = 0; i < r->ncalls; i++) {
		const run_call *c = &r->calls[i];
		json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:s, s:s?, s:s?, s:s?, s:s,"
		                                   " s:o, s:o, s:o}",
		    "call_id", c->call_id, "step_id", c->step_id, "attempt", (json_int_t)c->attempt,
		    "tool", c->tool, "device", c->device, "capability", c->capability,
		    "device_id", c->device_id, "status", rs_run_call_status_names[c->status],
		    "requested_at", ms_or_null(c->requested_at),
		    "dispatched_at", ms_or_null(c->dispatched_at),
		    "finished_at", ms_or_null(c->finished_at)));
	}
	return a;
}

static json_t *
view_timers(const rs_run *r)
{
	json_t *a = json_array();

	for (size_t i = 0; i < r->ntimers; i++) {
		const run_timer *t = &r->timers[i];
		if (t->state != TIMER_PENDING)
			continue;
		json_array_append_new(a, json_pack("{s:s, s:s, s:s?, s:I, s:I}",
		    "timer_id", t->timer_id, "purpose", rs_timer_purpose_name(t->purpose),
		    "step_id", t->step_id, "attempt", (json_int_t)t->attempt,
		    "due_at", (json_int_t)t->due_at));
	}
	return a;
}

static json_t *
view_children(const rs_run *r)
{
	json_t *a = json_array();

	for (size_t i = 0; i < r->nchildren; i++) {
		const run_child *c = &r->children[i];
		json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:s, s:s, s:s?, s:s?, s:s}",
		    "child_run_id", c->child_run_id, "step_id", c->step_id,
		    "attempt", (json_int_t)c->attempt, "key", c->key, "agent", c->agent,
		    "version", c->version, "scope", c->scope,
		    "status", c->done ? c->status : c->cancel_owed ? "cancelling" : "running"));
	}
	return a;
}

static json_t *
view_signals(const rs_run *r)
{
	json_t *a = json_array();

	for (size_t i = 0; i < r->nsignals; i++) {
		const run_signal *s = &r->signals[i];
		json_array_append_new(a, json_pack("{s:s, s:s, s:O, s:s?, s:I}",
		    "signal_id", s->signal_id, "name", s->name, "payload", s->payload,
		    "consumed_by", s->consumed_by, "received_at", (json_int_t)s->received_at));
	}
	return a;
}

json_t *
rs_run_view(const rs_run *r)
{
	json_t *v = json_object();

	json_object_set_new(v, "run_id", r->status ? json_string(r->run_id) : json_null());
	json_object_set_new(v, "tenant", r->status ? json_string(r->tenant) : json_null());
	json_object_set_new(v, "agent", r->agent ? json_string(r->agent) : json_null());
	json_object_set_new(v, "version", r->version ? json_string(r->version) : json_null());
	json_object_set_new(v, "status", json_string(rs_run_status_name(r->status)));
	json_object_set_new(v, "input", r->input ? json_incref(r->input) : json_null());
	json_object_set_new(v, "output", r->output ? json_incref(r->output) : json_null());
	json_object_set_new(v, "error", r->error ? json_incref(r->error) : json_null());
	json_object_set_new(v, "last_seq", json_integer((json_int_t)r->last_seq));
	json_object_set_new(v, "created_at", ms_or_null(r->created_at));
	json_object_set_new(v, "started_at", ms_or_null(r->started_at));
	json_object_set_new(v, "finished_at", ms_or_null(r->finished_at));
	json_object_set_new(v, "current_step", rs_run_current_step(r) ?
	                    json_string(r->cur_step) : json_null());
	json_object_set_new(v, "step_executions", json_integer(r->execs));
	json_object_set_new(v, "steps", r->steps ? json_deep_copy(r->steps) : json_object());
	json_object_set_new(v, "tool_calls", view_calls(r));
	json_object_set_new(v, "pending_timers", view_timers(r));
	json_object_set_new(v, "signals", view_signals(r));
	if (r->nchildren > 0)   /* only runs with children show the key */
		json_object_set_new(v, "children", view_children(r));
	if (r->parent_run_id != NULL) {
		json_object_set_new(v, "parent_run_id", json_string(r->parent_run_id));
		json_object_set_new(v, "root_run_id", json_string(r->root_run_id ? r->root_run_id
		                                                                 : r->parent_run_id));
		if (r->scope != NULL)
			json_object_set_new(v, "scope", json_string(r->scope));
	}
	if (r->cancel_reason != NULL)
		json_object_set_new(v, "cancel_reason", json_string(r->cancel_reason));
	if (r->forked_from != NULL) {
		json_object_set_new(v, "forked_from", json_string(r->forked_from));
		json_object_set_new(v, "from_seq", json_integer(r->from_seq));
		json_object_set_new(v, "reused_steps", json_integer(r->reuse_next));
	}
	if (r->conc_limit > 0) {
		json_object_set_new(v, "concurrency_key", json_string(r->conc_key ? r->conc_key : ""));
		json_object_set_new(v, "concurrency_limit", json_integer(r->conc_limit));
	}
	if (r->tenant_limit > 0)
		json_object_set_new(v, "tenant_limit", json_integer(r->tenant_limit));
	return v;
}

int
rs_run_gate(const rs_run *r, const char **key, int64_t *limit, int64_t *tenant_limit)
{
	*key = r->conc_limit > 0 ? (r->conc_key ? r->conc_key : "") : NULL;
	*limit = r->conc_limit;
	*tenant_limit = r->tenant_limit;
	return r->status != RS_RUN_NONE && (r->conc_limit > 0 || r->tenant_limit > 0);
}
