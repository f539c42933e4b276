/*
 * rs_run.c - the run state machine (see rs_run.h): evolve folds events into
 * a state, decide turns a command into new events and effects.
 *
 * How to read this file:
 *  1. The state (struct rs_run) and its small helpers.
 *  2. evolve: one handler per event type, in evolve_table[]. Evolve checks
 *     that an event fits (sequence, run, step, call) and records it.
 *  3. decide: one handler per command type, in decide_table[]. Decide works
 *     on a private clone of the state and *evolves every event it emits into
 *     that clone at once* (rs_run_emit()). So later logic in the same
 *     decision sees the effect of earlier events, and a decision is
 *     evolvable by construction. The engine part is settle(): start steps
 *     one after the other until one has to wait (tool, timer, signal) or the
 *     run ends.
 *  4. Effects (timers, tool calls/cancels) and the JSON view.
 *  Two families of steps live in their own files, with their evolve
 *  handlers and what they owe (owe() here calls them):
 *  - rs_run_children.c: child runs (parallel, foreach and run steps). The
 *    step records child.started / child.finished; the child's run.start and
 *    cancel, and a child's child.done to its parent, are commands to other
 *    runs (rs_decision.cmds), see docs/architecture.md.
 *  - rs_run_effects.c: server-side effects (http and llm steps). The state
 *    machine only records requests (http.requested, llm.requested) and
 *    results (effect.result / llm.chunk commands from the executor); the
 *    executor finds the requests in the log itself, so they are not effects
 *    of a decision.
 *  rs_run_int.h holds the state's definition and what the three share.
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

static const char *call_status_names[] = {
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
		abort();
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

static run_signal *
find_signal(const rs_run *r, const char *signal_id)
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
static void
release_children(rs_run *r, int all)
{
	for (size_t i = 0; i < r->nchildren; i++)
		if (!r->children[i].done && (all || rs_run_child_current(r, &r->children[i])))
			r->children[i].cancel_owed = 1;
}

/* The oldest signal of that name nobody consumed yet. */
static run_signal *
buffered_signal(const rs_run *r, const char *name)
{
	for (size_t i = 0; name != NULL && i < r->nsignals; i++)
		if (r->signals[i].consumed_by == NULL && strcmp(r->signals[i].name, name) == 0)
			return &r->signals[i];
	return NULL;
}

/* Timers of a step attempt end with it (a late fire is then stale). */
static void
cancel_step_timers(rs_run *r, const char *step_id, int64_t attempt)
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
static json_t *
view_step(rs_run *r, const char *id)
{
	json_t *s = json_object_get(r->steps, id);

	if (s == NULL) {
		s = json_pack("{s:s, s:[], s:n}", "status", "pending", "attempts", "output");
		json_object_set_new(r->steps, id, s);
	}
	return s;
}

static json_t *
view_attempt(rs_run *r, const char *id)
{
	json_t *a = json_object_get(view_step(r, id), "attempts");
	size_t n = json_array_size(a);

	return n ? json_array_get(a, n - 1) : NULL;
}

static void
view_set_status(rs_run *r, const char *id, const char *status)
{
	json_object_set_new(view_step(r, id), "status", json_string(status));
}

/* A copy of e without its step id. */
static void
err_copy_plain(rs_err *dst, const rs_err *src)
{
	dst->code = xstrdup(src->code);
	dst->message = xstrdup(src->message);
	dst->cls = src->cls;
	dst->retryable = src->retryable;
	dst->step_id = NULL;
}

static json_t *
err_json(const rs_err *e)
{
	json_t *o = json_pack("{s:s?, s:s?, s:s, s:b}", "code", e->code, "message", e->message,
	                      "class", rs_errclass_name(e->cls), "retryable", e->retryable);
	if (e->step_id != NULL)
		json_object_set_new(o, "step_id", json_string(e->step_id));
	return o;
}

static int
kind_of(const char *name)
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
	r->cur_kind = kind_of(d->kind);
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
	json_array_append_new(json_object_get(view_step(r, d->step_id), "attempts"), att);
	view_set_status(r, d->step_id, r->status == RS_RUN_WAITING ? "waiting" : "running");
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
	    (s = buffered_signal(r, r->cur_signal)) != NULL)
		s->consumed_by = xstrdup(d->step_id);
	json_object_set_new(json_object_get(r->ctx, "steps"), d->step_id,
	                    json_pack("{s:O}", "output", out));
	json_object_set(view_step(r, d->step_id), "output", out);
	view_set_status(r, d->step_id, "completed");
	if ((att = view_attempt(r, d->step_id)) != NULL) {
		json_object_set(att, "output", out);
		json_object_set_new(att, "finished_at", json_integer(ev->time_ms));
	}
	set_json(&r->last_output, out);
	set_str(&r->last_next, d->next_step);
	cancel_step_timers(r, d->step_id, d->attempt);
	release_children(r, 0);
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
	if ((att = view_attempt(r, d->step_id)) != NULL) {
		json_object_set_new(att, "error", err_json(&d->error));
		json_object_set_new(att, "finished_at", json_integer(ev->time_ms));
	}
	view_set_status(r, d->step_id, d->final ? "failed" : "retrying");
	rs_err_free(&r->last_err);
	err_copy_plain(&r->last_err, &d->error);
	r->last_final = d->final;
	r->last_retry_after = d->retry_after_ms;
	cancel_step_timers(r, d->step_id, d->attempt);
	release_children(r, 0);
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
		            call_status_names[c->status]);
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
	c->error = err_json(&d->error);
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

	if (find_signal(r, d->signal_id) != NULL)
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
	release_children(r, 1);
	if (r->cur_step != NULL && !r->cur_done)
		view_set_status(r, r->cur_step, rs_run_status_name(st));
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
	r->error = err_json(&ev->d.run_failed.error);
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

static void
err_copy(rs_err *dst, const rs_err *src, const char *step_id)
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

static void
add_timer_effect(const rs_run *r, rs_decision *o, const char *timer_id, rs_timer_purpose p,
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
static void
cancel_outstanding(dctx *d)
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

static void
make_timer_id(const rs_run *s, char *buf, size_t cap, rs_timer_purpose p,
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

	make_timer_id(s, buf, cap, p, s->cur_step, s->cur_exec, s->cur_attempt);
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
	add_timer_effect(d->s, d->out, timer_id, p, step_id, attempt, due_at);
	return rs_run_emit(d, &ev);
}

static rs_status
schedule_step_timer(dctx *d, rs_timer_purpose p, int64_t due_at)
{
	char id[ID_CAP];

	make_timer_id(d->s, id, sizeof(id), p, d->s->cur_step, d->s->cur_exec, d->s->cur_attempt);
	return rs_run_schedule_timer(d, p, d->s->cur_step, d->s->cur_attempt, due_at, id);
}

static rs_status
emit_run_failed(dctx *d, const char *code, const char *message, rs_errclass cls,
                const char *step_id)
{
	rs_event ev = new_event(RS_EV_RUN_FAILED);
	rs_err e = { (char *)code, (char *)message, cls, 0, NULL };

	err_copy(&ev.d.run_failed.error, &e, step_id);
	return rs_run_emit(d, &ev);
}

static rs_status
emit_step_started(dctx *d, const rs_step *st, int64_t attempt, json_t *input)
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
 * state only (settle()'s rule). */
static json_t *
reused_output(const rs_run *s, const rs_step *st)
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
static rs_status
emit_step_reused(dctx *d, const rs_step *st)
{
	json_t *e = reused_output(d->s, st);
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
 * step.retry_scheduled and its timer) is owed: settle() emits it.
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
	err_copy(&ev.d.step_failed.error, e, NULL);
	ev.d.step_failed.error.retryable = retryable;
	ev.d.step_failed.final = !again;
	ev.d.step_failed.effect_id = xstrdup(effect_id);
	ev.d.step_failed.retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
	return rs_run_emit(d, &ev);
}

static rs_status
fail_step(dctx *d, const rs_step *st, const rs_err *e)
{
	return rs_run_fail_step_effect(d, st, e, NULL, 0);
}

rs_status
rs_run_fail_step_code(dctx *d, const rs_step *st, const char *code, rs_errclass cls,
                      const char *msg)
{
	rs_err e = { (char *)code, (char *)msg, cls, cls != RS_ERRCLASS_PERMANENT, NULL };

	return fail_step(d, st, &e);
}

static rs_status
fail_step_timeout(dctx *d, const rs_step *st, const char *message)
{
	return rs_run_fail_step_code(d, st, "timeout", RS_ERRCLASS_TIMEOUT, message);
}

/* --- beginning a step: run.failed (max_steps) or step.started --- */

/* The recorded input of the current attempt (what step.started said). */
json_t *
rs_run_attempt_input(dctx *d)
{
	return json_object_get(view_attempt(d->s, d->s->cur_step), "input");
}

/* A string field of a rendered input: as given, or the compact JSON text
 * of a non-string (a prompt may well be built from an object). New. */
static char *
text_of_value(json_t *v)
{
	char *t;

	if (v == NULL)
		return NULL;
	t = json_is_string(v) ? xstrdup(json_string_value(v)) : rs_json_dump(v);
	if (t == NULL)
		abort();
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
			char *u = text_of_value(v);
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
			char *t = text_of_value(v);
			json_object_set_new(in, "prompt", json_string(t ? t : ""));
			free(t);
			json_decref(v);
		}
		if (st->system != NULL &&
		    rs_run_render(d, st->system, &v, msg, sizeof(msg), &code) == RS_OK) {
			char *t = text_of_value(v);
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
				return emit_run_failed(d, code, msg, RS_ERRCLASS_PERMANENT, NULL);
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
		return emit_run_failed(d, "max_steps_exceeded", msg, RS_ERRCLASS_PERMANENT, st->id);
	}
	d->begun++;
	return emit_step_started(d, st, attempt, step_input(d, st));
}

/* --- what follows an event: owe() --- */

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
		if (reused_output(d->s, st) != NULL)
			return emit_step_reused(d, st);
	switch (st->kind) {
	case RS_STEP_TOOL:
		return owe_tool_requested(d, st);
	case RS_STEP_SLEEP:
		return schedule_step_timer(d, RS_TIMER_SLEEP, AT(d) + st->duration_ms);
	case RS_STEP_SIGNAL:
		/* A signal that arrived before the step is waiting in the buffer. */
		if ((buf = buffered_signal(d->s, st->signal)) != NULL)
			return rs_run_emit_step_completed(d, json_incref(buf->payload), st->next_idx);
		if (st->timeout_s > 0)
			return schedule_step_timer(d, RS_TIMER_SIGNAL_TIMEOUT,
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
 * handler checked, see timer_open()). */
static rs_status
owe_fired(dctx *d, const run_timer *t)
{
	const rs_step *st;
	run_call *call;
	rs_event ev;
	char msg[160];
	int idx;

	if (t->purpose == RS_TIMER_RUN_TIMEOUT) {
		cancel_outstanding(d);
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
		return fail_step_timeout(d, st, msg);
	case RS_TIMER_STEP_TIMEOUT:
		snprintf(msg, sizeof(msg), "%s did not answer within %llds",
		         st->kind == RS_STEP_LLM ? "the model" : "the HTTP request",
		         (long long)st->timeout_s);
		return fail_step_timeout(d, st, msg);
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
static rs_status
owe(dctx *d)
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
			make_timer_id(s, id, sizeof(id), RS_TIMER_RUN_TIMEOUT, NULL, 0, 0);
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
			err_copy(&ev.d.run_failed.error, &s->last_err, st->id);
			ev.d.run_failed.error.retryable = 0;
			return rs_run_emit(d, &ev);
		} else {
			int64_t backoff = rs_run_backoff_ms(&st->retry, s->cur_attempt);
			char id[ID_CAP];
			if (s->last_retry_after > backoff)
				backoff = s->last_retry_after < RETRY_AFTER_MAX_MS ? s->last_retry_after
				                                                   : RETRY_AFTER_MAX_MS;
			make_timer_id(s, id, sizeof(id), RS_TIMER_RETRY, st->id, s->cur_exec,
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
		return schedule_step_timer(d, RS_TIMER_TOOL_TIMEOUT, call->deadline);
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
			return fail_step(d, st, &e);
		}
		snprintf(msg, sizeof(msg), "tool %s did not answer within %llds", st->tool,
		         (long long)st->timeout_s);
		return fail_step_timeout(d, st, msg);
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
		cancel_outstanding(d);
		ev = new_event(RS_EV_RUN_CANCELLED);
		ev.d.run_cancelled.reason = xstrdup(s->cancel_reason);
		return rs_run_emit(d, &ev);
	case RS_EV_HTTP_REQUESTED:
	case RS_EV_LLM_REQUESTED: {
		char id[ID_CAP];
		if (s->last_type == RS_EV_LLM_REQUESTED)
			rs_run_turn_timer_id(s, id, sizeof(id), RS_TIMER_STEP_TIMEOUT, s->eff_turn);
		else
			make_timer_id(s, id, sizeof(id), RS_TIMER_STEP_TIMEOUT, s->cur_step, s->cur_exec,
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
static rs_status
settle(dctx *d)
{
	rs_status rc;
	size_t before;

	for (;;) {
		if (d->begun >= RS_RUN_MAX_STEPS_PER_DECISION) {
			d->out->more = 1;
			return RS_OK;
		}
		before = d->out->nevents;
		if ((rc = owe(d)) != RS_OK)
			return rc;
		if (d->out->nevents == before)
			return RS_OK;
	}
}

/* --- command handlers: each records its command, settle() does the rest --- */

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
			ev.d.run_created.concurrency_key = v ? text_of_value(v) : xstrdup("");
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
		err_copy(&ev.d.tool_failed.error, e, NULL);
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

	if (find_signal(s, cmd->signal_id) != NULL)
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

/* run.continue: nothing to record; settle() finishes what is owed. */
static rs_status
decide_continue(dctx *d)
{
	(void)d;
	return RS_OK;
}

/* Add to out every effect r owes (rs_run_pending_effects) that out does
 * not already carry. */
static void
add_pending_effects(const rs_run *r, rs_decision *out)
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
			add_timer_effect(r, out, t->timer_id, t->purpose, t->step_id, t->attempt, t->due_at);
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
	rc = settle(&d);
	cont = out->nevents > 0;
	if (rc == RS_OK && !out->more && !rs_run_status_terminal(d.s->status)) {
		size_t before = out->nevents;
		rc = decide_table[cmd->type].fn(&d);
		if (rc == RS_OK && out->nevents > before)
			rc = settle(&d);
	}
	/* A cut decision's effects died with it (effects go out after the
	 * events): what the finished state owes is owed now. */
	if (rc == RS_OK && out->nevents > 0)
		add_decision_effects(r, d.s, out);
	if (rc == RS_OK && cont)
		add_pending_effects(d.s, out);
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
	rest = owe(&d) == RS_OK && out.nevents == 0;
	rs_run_free(d.s);
	rs_decision_free(&out);
	return rest;
}

/* ------------------------------------------------------------------ */
/* 4. Effects and view                                                 */
/* ------------------------------------------------------------------ */

rs_status
rs_run_pending_effects(const rs_run *r, rs_decision *out)
{
	memset(out, 0, sizeof(*out));
	add_pending_effects(r, out);
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
		    "device_id", c->device_id, "status", call_status_names[c->status],
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
