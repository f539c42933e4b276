/*
 * rs_view.c - the one fold of a run's events into its view (rs_view.h).
 *
 * The projector's rows are folded by this code too (services/projector/
 * fold.c, documented in docs/projector.md), so GET /v1/runs/{id} answered
 * from a view shows what the Postgres rows show: same status rule, same
 * step and tool-call columns, the same closing of attempts and calls still
 * open when the run ends (cancelled, or timed_out when the run timed out).
 * Rows are looked up from the newest backwards: the event being folded is
 * nearly always about the current step or call, so a fold is O(1) in
 * practice and O(cap) at worst.
 */
#include "rs_view.h"
#include "rs_mem.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define xstrdup rs_xstrdup

static void
set_str(char **dst, const char *s)
{
	char *n = xstrdup(s);

	free(*dst);
	*dst = n;
}

/* A NULL value stays NULL (rendered as JSON null). */
static void
set_json(json_t **dst, json_t *v)
{
	json_incref(v);
	json_decref(*dst);
	*dst = v;
}

static void
set_err(json_t **dst, const rs_err *e)
{
	json_t *j = rs_err_encode(e);

	json_decref(*dst);
	*dst = j;
}

static void *
grow(void *p, size_t *cap, size_t want, size_t size)
{
	size_t n = *cap ? *cap * 2 : 8;

	if (want <= *cap)
		return p;
	while (n < want)
		n *= 2;
	p = rs_xrealloc(p, n * size);
	*cap = n;
	return p;
}

static int
is_terminal(const char *s)
{
	return s != NULL && (strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
	                     strcmp(s, "cancelled") == 0 || strcmp(s, "timed_out") == 0);
}

static int
purpose_waits(rs_timer_purpose p)
{
	/* Sleeping and retry back-off make the run wait; timeouts only guard. */
	return p == RS_TIMER_SLEEP || p == RS_TIMER_RETRY;
}

const char *
rs_view_status_next(const char *cur, const rs_event *ev)
{
	/* A terminal status is final: a late non-terminal event cannot undo it. */
	if (is_terminal(cur))
		return cur;
	switch (ev->type) {
	case RS_EV_RUN_CREATED:
		return "queued";
	case RS_EV_STEP_STARTED: {
		/* A signal step, and a step whose work is child runs, wait from
		 * the start (the state machine's "waiting"). */
		const char *k = ev->d.step_started.kind;
		return strcmp(k, "signal") == 0 || strcmp(k, "parallel") == 0 ||
		       strcmp(k, "foreach") == 0 || strcmp(k, "run") == 0 ? "waiting" : "running";
	}
	case RS_EV_RUN_STARTED:
	case RS_EV_STEP_COMPLETED:
	case RS_EV_STEP_FAILED:
	case RS_EV_TOOL_COMPLETED:
	case RS_EV_TOOL_FAILED:
	case RS_EV_TOOL_TIMED_OUT:
	case RS_EV_SIGNAL_RECEIVED:
		return "running";
	case RS_EV_STEP_RETRY_SCHEDULED:
	case RS_EV_TOOL_REQUESTED:
	case RS_EV_TOOL_DISPATCHED:
		return "waiting";
	case RS_EV_TIMER_SCHEDULED:
		return purpose_waits(ev->d.timer_scheduled.purpose) ? "waiting" : cur;
	case RS_EV_TIMER_FIRED:
		return purpose_waits(ev->d.timer_fired.purpose) ? "running" : cur;
	case RS_EV_RUN_COMPLETED: return "completed";
	case RS_EV_RUN_FAILED: return "failed";
	case RS_EV_RUN_CANCELLED: return "cancelled";
	case RS_EV_RUN_TIMED_OUT: return "timed_out";
	default:
		return cur;     /* cancel_requested, http/llm effects, newer types */
	}
}

void
rs_view_init(rs_view *v)
{
	memset(v, 0, sizeof(*v));
	v->status = "";
	v->complete = 1;    /* nothing folded yet: nothing missing */
}

void
rs_view_resume(rs_view *v, const char *run_id, const char *tenant, uint64_t last_seq,
               const char *status)
{
	static const char *const known[] = { "queued", "running", "waiting", "completed",
	                                     "failed", "cancelled", "timed_out" };

	rs_view_init(v);
	snprintf(v->run_id, sizeof(v->run_id), "%s", run_id);
	snprintf(v->tenant, sizeof(v->tenant), "%s", tenant);
	v->last_seq = last_seq;
	v->complete = 0;
	v->resumed = 1;
	v->unbounded = 1;
	v->status = "running";
	for (size_t i = 0; status != NULL && i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(status, known[i]) == 0)
			v->status = known[i];
}

void
rs_view_free(rs_view *v)
{
	for (size_t i = 0; i < v->nsteps; i++) {
		rs_view_step *s = &v->steps[i];
		free(s->step_id);
		free(s->kind);
		free(s->next_step);
		json_decref(s->input);
		json_decref(s->output);
		json_decref(s->error);
	}
	for (size_t i = 0; i < v->ncalls; i++) {
		rs_view_call *c = &v->calls[i];
		free(c->call_id);
		free(c->step_id);
		free(c->tool);
		free(c->device_id);
		free(c->capability);
		free(c->router);
		json_decref(c->args);
		json_decref(c->output);
		json_decref(c->error);
	}
	for (size_t i = 0; i < v->ntimers; i++) {
		free(v->timers[i].timer_id);
		free(v->timers[i].step_id);
	}
	for (size_t i = 0; i < v->nchildren; i++) {
		free(v->children[i].run_id);
		free(v->children[i].agent);
		free(v->children[i].key);
		free(v->children[i].step_id);
		free(v->children[i].status);
	}
	free(v->children);
	free(v->parent_run_id);
	free(v->root_run_id);
	free(v->forked_from);
	free(v->schedule_id);
	json_decref(v->tags);
	free(v->steps);
	free(v->calls);
	free(v->timers);
	free(v->agent);
	free(v->version);
	free(v->idempotency_key);
	free(v->cancel_reason);
	free(v->current_step);
	free(v->effect_kind);
	free(v->effect_id);
	free(v->wait_signal_step);
	free(v->wait_signal_name);
	json_decref(v->input);
	json_decref(v->output);
	json_decref(v->error);
	rs_view_init(v);
}

static rs_view_step *
find_step(rs_view *v, const char *step_id, int64_t attempt)
{
	for (size_t i = v->nsteps; i-- > 0;)
		if (v->steps[i].attempt == attempt && strcmp(v->steps[i].step_id, step_id) == 0)
			return &v->steps[i];
	return NULL;
}

static rs_view_call *
find_call(rs_view *v, const char *call_id)
{
	for (size_t i = v->ncalls; i-- > 0;)
		if (strcmp(v->calls[i].call_id, call_id) == 0)
			return &v->calls[i];
	return NULL;
}

/* The row of a step attempt to change: the one in v, else (a resumed view
 * only) a new stub for an attempt started before the resume point. */
static rs_view_step *
step_row(rs_view *v, const char *step_id, int64_t attempt)
{
	rs_view_step *s = find_step(v, step_id, attempt);

	if (s != NULL || !v->resumed)
		return s;
	v->steps = grow(v->steps, &v->capsteps, v->nsteps + 1, sizeof(*v->steps));
	s = &v->steps[v->nsteps++];
	memset(s, 0, sizeof(*s));
	s->step_id = xstrdup(step_id);
	s->attempt = attempt;
	s->duration_ms = -1;
	s->stub = 1;
	return s;
}

static rs_view_call *
call_row(rs_view *v, const char *call_id)
{
	rs_view_call *c = find_call(v, call_id);

	if (c != NULL || !v->resumed)
		return c;
	v->calls = grow(v->calls, &v->capcalls, v->ncalls + 1, sizeof(*v->calls));
	c = &v->calls[v->ncalls++];
	memset(c, 0, sizeof(*c));
	c->call_id = xstrdup(call_id);
	c->stub = 1;
	return c;
}

static rs_view_timer *
find_timer(rs_view *v, const char *timer_id)
{
	for (size_t i = v->ntimers; i-- > 0;)
		if (strcmp(v->timers[i].timer_id, timer_id) == 0)
			return &v->timers[i];
	return NULL;
}

static void
step_started(rs_view *v, const rs_event *ev)
{
	const rs_ev_step_started *d = &ev->d.step_started;
	rs_view_step *s, *prev;

	if (d->attempt > 1 && (prev = step_row(v, d->step_id, d->attempt - 1)) != NULL) {
		prev->latest = 0;
		prev->set |= RS_VIEW_SET_LATEST;
	}
	set_str(&v->current_step, d->step_id);
	v->set |= RS_VIEW_SET_CURRENT;
	/* A new step ends the previous one's effects and signal wait. */
	set_str(&v->effect_kind, NULL);
	set_str(&v->effect_id, NULL);
	set_str(&v->wait_signal_step, NULL);
	set_str(&v->wait_signal_name, NULL);
	if (strcmp(d->kind, "signal") == 0) {
		json_t *sig = json_object_get(d->input, "signal");
		set_str(&v->wait_signal_step, d->step_id);
		set_str(&v->wait_signal_name, json_is_string(sig) ? json_string_value(sig) : "");
	}
	if (find_step(v, d->step_id, d->attempt) != NULL)
		return;     /* the same attempt twice: keep the first */
	if (!v->unbounded && v->nsteps >= RS_VIEW_MAX_STEPS) {
		v->steps_truncated = 1;
		return;
	}
	v->steps = grow(v->steps, &v->capsteps, v->nsteps + 1, sizeof(*v->steps));
	s = &v->steps[v->nsteps++];
	memset(s, 0, sizeof(*s));
	s->step_id = xstrdup(d->step_id);
	s->kind = xstrdup(d->kind);
	s->attempt = d->attempt;
	s->status = "running";
	s->latest = 1;
	set_json(&s->input, d->input);
	s->started_ms = ev->time_ms;
	s->updated_ms = ev->time_ms;
	s->duration_ms = -1;
}

static void
step_ended(rs_view *v, const char *step_id)
{
	if (v->wait_signal_step != NULL && strcmp(v->wait_signal_step, step_id) == 0) {
		set_str(&v->wait_signal_step, NULL);
		set_str(&v->wait_signal_name, NULL);
	}
	set_str(&v->effect_kind, NULL);
	set_str(&v->effect_id, NULL);
}

static void
tool_requested(rs_view *v, const rs_event *ev)
{
	const rs_ev_tool_requested *d = &ev->d.tool_requested;
	rs_view_call *c;

	if (find_call(v, d->call_id) != NULL)
		return;
	if (!v->unbounded && v->ncalls >= RS_VIEW_MAX_CALLS) {
		v->calls_truncated = 1;
		return;
	}
	v->calls = grow(v->calls, &v->capcalls, v->ncalls + 1, sizeof(*v->calls));
	c = &v->calls[v->ncalls++];
	memset(c, 0, sizeof(*c));
	c->call_id = xstrdup(d->call_id);
	c->step_id = xstrdup(d->step_id);
	c->attempt = d->attempt;
	c->tool = xstrdup(d->tool);
	c->device_id = xstrdup(d->device);
	c->capability = xstrdup(d->capability);
	c->status = "requested";
	set_json(&c->args, d->args);
	c->requested_ms = ev->time_ms;
	c->updated_ms = ev->time_ms;
	c->deadline_ms = d->deadline > 0 ? d->deadline : 0;
}

static void
timer_scheduled(rs_view *v, const rs_event *ev)
{
	const rs_ev_timer_scheduled *d = &ev->d.timer_scheduled;
	rs_view_timer *t;

	if ((t = find_timer(v, d->timer_id)) == NULL) {
		if (v->ntimers >= RS_VIEW_MAX_TIMERS) {
			v->timers_truncated = 1;
			return;
		}
		v->timers = grow(v->timers, &v->captimers, v->ntimers + 1, sizeof(*v->timers));
		t = &v->timers[v->ntimers++];
		memset(t, 0, sizeof(*t));
		t->timer_id = xstrdup(d->timer_id);
	}
	set_str(&t->step_id, d->step_id);
	t->purpose = d->purpose;
	t->attempt = d->attempt;
	t->due_ms = d->due_at;
	t->fired = 0;
}

/* Attempts and calls still open when the run ends: cancelled, or
 * timed_out when the run timed out (as the projector's sweep). */
static void
close_open(rs_view *v, const char *how, int64_t ms)
{
	const unsigned set = RS_VIEW_SET_STATUS | RS_VIEW_SET_FINISHED;

	/* A stub whose status this fold does not know is closed by its reader
	 * (the projector's sweep of the stored rows). */
	for (size_t i = 0; i < v->nsteps; i++)
		if (v->steps[i].status != NULL && strcmp(v->steps[i].status, "running") == 0) {
			v->steps[i].status = how;
			v->steps[i].finished_ms = ms;
			v->steps[i].updated_ms = ms;
			v->steps[i].set |= set;
		}
	for (size_t i = 0; i < v->ncalls; i++)
		if (v->calls[i].status != NULL && (strcmp(v->calls[i].status, "requested") == 0 ||
		                                   strcmp(v->calls[i].status, "dispatched") == 0)) {
			v->calls[i].status = how;
			v->calls[i].finished_ms = ms;
			v->calls[i].updated_ms = ms;
			v->calls[i].set |= set;
		}
}

/* The first terminal event: close what is still open. */
static void
run_ended(rs_view *v, const char *status, int64_t ms)
{
	v->finished_ms = ms;
	v->set |= RS_VIEW_SET_FINISHED;
	close_open(v, strcmp(status, "timed_out") == 0 ? "timed_out" : "cancelled", ms);
	set_str(&v->effect_kind, NULL);
	set_str(&v->effect_id, NULL);
	set_str(&v->wait_signal_step, NULL);
	set_str(&v->wait_signal_name, NULL);
}

rs_status
rs_view_apply(rs_view *v, const rs_event *ev)
{
	int64_t tm = ev->time_ms;
	rs_view_step *s;
	rs_view_call *c;
	rs_view_timer *t;
	int was_term;
	const char *next;

	if (v->last_seq > 0 && ev->runseq <= v->last_seq)
		return RS_EEXISTS;
	if (ev->runseq != v->last_seq + 1 || (ev->runseq == 1) != (ev->type == RS_EV_RUN_CREATED))
		return RS_EINVAL;
	if (v->last_seq > 0 && strcmp(v->run_id, ev->run_id) != 0)
		return RS_EINVAL;
	v->last_seq = ev->runseq;
	v->updated_ms = tm;
	was_term = is_terminal(v->status);
	next = rs_view_status_next(v->status, ev);

	switch (ev->type) {
	case RS_EV_RUN_CREATED: {
		const rs_ev_run_created *d = &ev->d.run_created;

		snprintf(v->run_id, sizeof(v->run_id), "%s", ev->run_id);
		snprintf(v->tenant, sizeof(v->tenant), "%s", ev->tenant);
		set_str(&v->agent, d->agent);
		set_str(&v->version, d->version);
		set_str(&v->idempotency_key, d->idempotency_key);
		set_json(&v->input, d->input);
		v->timeout_s = d->timeout_s > 0 ? d->timeout_s : 0;
		v->created_ms = tm;
		set_str(&v->parent_run_id, d->parent_run_id);
		set_str(&v->root_run_id, d->root_run_id);
		set_str(&v->forked_from, d->forked_from);
		set_str(&v->schedule_id, d->schedule_id);
		v->from_seq = d->forked_from != NULL ? d->from_seq : 0;
		set_json(&v->tags, d->tags);
		break;
	}
	case RS_EV_RUN_STARTED:
		v->started_ms = tm;
		v->set |= RS_VIEW_SET_STARTED;
		break;
	case RS_EV_CHILD_STARTED: {
		const rs_ev_child_started *d = &ev->d.child_started;
		rs_view_child *ch;
		if (v->nchildren == RS_VIEW_MAX_CHILDREN) {
			v->children_truncated = 1;
			v->children_running++;
			break;
		}
		if (v->nchildren == v->capchildren) {
			v->capchildren = v->capchildren ? 2 * v->capchildren : 8;
			v->children = rs_xrealloc(v->children, v->capchildren * sizeof(*ch));
		}
		ch = &v->children[v->nchildren++];
		memset(ch, 0, sizeof(*ch));
		set_str(&ch->run_id, d->child_run_id);
		set_str(&ch->agent, d->agent);
		set_str(&ch->key, d->key);
		set_str(&ch->step_id, d->step_id);
		set_str(&ch->status, "running");
		ch->started_ms = tm;
		v->children_running++;
		break;
	}
	case RS_EV_CHILD_FINISHED: {
		const rs_ev_child_finished *d = &ev->d.child_finished;
		if (v->children_running > 0)
			v->children_running--;
		for (size_t i = v->nchildren; i-- > 0;)
			if (d->child_run_id != NULL && strcmp(v->children[i].run_id, d->child_run_id) == 0) {
				set_str(&v->children[i].status, d->status);
				v->children[i].finished_ms = tm;
				break;
			}
		break;
	}
	case RS_EV_STEP_STARTED:
		step_started(v, ev);
		break;
	case RS_EV_STEP_COMPLETED: {
		const rs_ev_step_completed *d = &ev->d.step_completed;

		if ((s = step_row(v, d->step_id, d->attempt)) != NULL) {
			s->status = "completed";
			set_json(&s->output, d->output);
			set_str(&s->next_step, d->next_step);
			s->duration_ms = d->duration_ms;
			s->finished_ms = tm;
			s->updated_ms = tm;
			s->set |= RS_VIEW_SET_STATUS | RS_VIEW_SET_OUTPUT | RS_VIEW_SET_NEXT |
			          RS_VIEW_SET_DURATION | RS_VIEW_SET_FINISHED;
		}
		step_ended(v, d->step_id);
		if (d->next_step != NULL) {
			set_str(&v->current_step, d->next_step);
			v->set |= RS_VIEW_SET_CURRENT;
		}
		break;
	}
	case RS_EV_STEP_FAILED: {
		const rs_ev_step_failed *d = &ev->d.step_failed;

		if ((s = step_row(v, d->step_id, d->attempt)) != NULL) {
			s->status = "failed";
			set_err(&s->error, &d->error);
			s->finished_ms = tm;
			s->updated_ms = tm;
			s->set |= RS_VIEW_SET_STATUS | RS_VIEW_SET_ERROR | RS_VIEW_SET_FINISHED;
		}
		step_ended(v, d->step_id);
		break;
	}
	case RS_EV_STEP_RETRY_SCHEDULED:
		break;
	case RS_EV_TOOL_REQUESTED:
		tool_requested(v, ev);
		break;
	case RS_EV_TOOL_DISPATCHED: {
		const rs_ev_tool_dispatched *d = &ev->d.tool_dispatched;

		if ((c = call_row(v, d->call_id)) != NULL) {
			c->status = "dispatched";
			set_str(&c->device_id, d->device_id);
			set_str(&c->router, d->router);
			c->dispatched_ms = tm;
			c->attempts++;
			c->updated_ms = tm;
			c->set |= RS_VIEW_SET_STATUS | RS_VIEW_SET_DEVICE | RS_VIEW_SET_ROUTER |
			          RS_VIEW_SET_DISPATCHED | RS_VIEW_SET_ATTEMPTS;
		}
		break;
	}
	case RS_EV_TOOL_COMPLETED: {
		const rs_ev_tool_completed *d = &ev->d.tool_completed;

		if ((c = call_row(v, d->call_id)) != NULL) {
			c->status = "completed";
			set_json(&c->output, d->output);
			if (d->device_id != NULL) {
				set_str(&c->device_id, d->device_id);
				c->set |= RS_VIEW_SET_DEVICE;
			}
			c->finished_ms = tm;
			c->updated_ms = tm;
			c->set |= RS_VIEW_SET_STATUS | RS_VIEW_SET_OUTPUT | RS_VIEW_SET_FINISHED;
		}
		break;
	}
	case RS_EV_TOOL_FAILED: {
		const rs_ev_tool_failed *d = &ev->d.tool_failed;

		if ((c = call_row(v, d->call_id)) != NULL) {
			c->status = "failed";
			set_err(&c->error, &d->error);
			if (d->device_id != NULL) {
				set_str(&c->device_id, d->device_id);
				c->set |= RS_VIEW_SET_DEVICE;
			}
			c->finished_ms = tm;
			c->updated_ms = tm;
			c->set |= RS_VIEW_SET_STATUS | RS_VIEW_SET_ERROR | RS_VIEW_SET_FINISHED;
		}
		break;
	}
	case RS_EV_TOOL_TIMED_OUT:
		if ((c = call_row(v, ev->d.tool_timed_out.call_id)) != NULL) {
			c->status = "timed_out";
			c->finished_ms = tm;
			c->updated_ms = tm;
			c->set |= RS_VIEW_SET_STATUS | RS_VIEW_SET_FINISHED;
		}
		break;
	case RS_EV_TIMER_SCHEDULED:
		timer_scheduled(v, ev);
		break;
	case RS_EV_TIMER_FIRED:
		if ((t = find_timer(v, ev->d.timer_fired.timer_id)) != NULL)
			t->fired = 1;
		break;
	case RS_EV_SIGNAL_RECEIVED:
		if (ev->d.signal_received.step_id != NULL)
			step_ended(v, ev->d.signal_received.step_id);
		break;
	case RS_EV_RUN_CANCEL_REQUESTED:
		set_str(&v->cancel_reason, ev->d.run_cancel_requested.reason);
		v->set |= RS_VIEW_SET_CANCEL;
		break;
	case RS_EV_HTTP_REQUESTED:
		set_str(&v->effect_kind, "http");
		set_str(&v->effect_id, ev->d.http_requested.effect_id);
		break;
	case RS_EV_HTTP_COMPLETED:
		set_str(&v->effect_kind, NULL);
		set_str(&v->effect_id, NULL);
		break;
	case RS_EV_LLM_REQUESTED:
		set_str(&v->effect_kind, "llm");
		set_str(&v->effect_id, ev->d.llm_requested.effect_id);
		break;
	case RS_EV_LLM_MESSAGE:
		set_str(&v->effect_kind, NULL);
		set_str(&v->effect_id, NULL);
		break;
	case RS_EV_RUN_COMPLETED:
		if (!was_term) {
			set_json(&v->output, ev->d.run_completed.output);
			v->set |= RS_VIEW_SET_OUTPUT;
		}
		if (!was_term)
			run_ended(v, "completed", tm);
		break;
	case RS_EV_RUN_FAILED:
		if (!was_term) {
			set_err(&v->error, &ev->d.run_failed.error);
			v->set |= RS_VIEW_SET_ERROR;
		}
		if (!was_term)
			run_ended(v, "failed", tm);
		break;
	case RS_EV_RUN_CANCELLED:
		if (!was_term && ev->d.run_cancelled.reason != NULL) {
			set_str(&v->cancel_reason, ev->d.run_cancelled.reason);
			v->set |= RS_VIEW_SET_CANCEL;
		}
		if (!was_term)
			run_ended(v, "cancelled", tm);
		break;
	case RS_EV_RUN_TIMED_OUT:
		if (!was_term && ev->d.run_timed_out.timeout_s > 0) {
			v->timeout_s = ev->d.run_timed_out.timeout_s;
			v->set |= RS_VIEW_SET_TIMEOUT;
		}
		if (!was_term)
			run_ended(v, "timed_out", tm);
		break;
	default:
		/* llm.delta, and types newer than this build: last_seq only. */
		break;
	}
	v->status = next;
	return RS_OK;
}

/* rs_view_event_step (rs_view.h). */
void
rs_view_event_step(const rs_event *ev, const char **step, int64_t *attempt)
{
	*step = NULL;
	*attempt = 0;
	switch (ev->type) {
	case RS_EV_STEP_STARTED: *step = ev->d.step_started.step_id; *attempt = ev->d.step_started.attempt; break;
	case RS_EV_STEP_COMPLETED: *step = ev->d.step_completed.step_id; *attempt = ev->d.step_completed.attempt; break;
	case RS_EV_STEP_FAILED: *step = ev->d.step_failed.step_id; *attempt = ev->d.step_failed.attempt; break;
	case RS_EV_STEP_RETRY_SCHEDULED: *step = ev->d.step_retry_scheduled.step_id; *attempt = ev->d.step_retry_scheduled.attempt; break;
	case RS_EV_TOOL_REQUESTED: *step = ev->d.tool_requested.step_id; *attempt = ev->d.tool_requested.attempt; break;
	case RS_EV_TOOL_COMPLETED: *step = ev->d.tool_completed.step_id; *attempt = ev->d.tool_completed.attempt; break;
	case RS_EV_TOOL_FAILED: *step = ev->d.tool_failed.step_id; *attempt = ev->d.tool_failed.attempt; break;
	case RS_EV_TOOL_TIMED_OUT: *step = ev->d.tool_timed_out.step_id; *attempt = ev->d.tool_timed_out.attempt; break;
	case RS_EV_TIMER_SCHEDULED: *step = ev->d.timer_scheduled.step_id; *attempt = ev->d.timer_scheduled.attempt; break;
	case RS_EV_TIMER_FIRED: *step = ev->d.timer_fired.step_id; *attempt = ev->d.timer_fired.attempt; break;
	case RS_EV_SIGNAL_RECEIVED: *step = ev->d.signal_received.step_id; break;
	case RS_EV_RUN_FAILED: *step = ev->d.run_failed.error.step_id; break;
	case RS_EV_HTTP_REQUESTED: *step = ev->d.http_requested.step_id; *attempt = ev->d.http_requested.attempt; break;
	case RS_EV_HTTP_COMPLETED: *step = ev->d.http_completed.step_id; *attempt = ev->d.http_completed.attempt; break;
	case RS_EV_LLM_REQUESTED: *step = ev->d.llm_requested.step_id; *attempt = ev->d.llm_requested.attempt; break;
	case RS_EV_LLM_DELTA: *step = ev->d.llm_delta.step_id; break;
	case RS_EV_LLM_MESSAGE: *step = ev->d.llm_message.step_id; break;
	case RS_EV_CHILD_STARTED: *step = ev->d.child_started.step_id; *attempt = ev->d.child_started.attempt; break;
	case RS_EV_CHILD_FINISHED: *step = ev->d.child_finished.step_id; *attempt = ev->d.child_finished.attempt; break;
	default: break;
	}
}

int
rs_view_terminal(const rs_view *v)
{
	return is_terminal(v->status);
}

/* The open tool call of the run, newest first (NULL: none). */
static const rs_view_call *
open_call(const rs_view *v)
{
	for (size_t i = v->ncalls; i-- > 0;)
		if (v->calls[i].status != NULL && (strcmp(v->calls[i].status, "requested") == 0 ||
		                                   strcmp(v->calls[i].status, "dispatched") == 0))
			return &v->calls[i];
	return NULL;
}

static const rs_view_timer *
open_timer(const rs_view *v)
{
	for (size_t i = v->ntimers; i-- > 0;)
		if (!v->timers[i].fired && purpose_waits(v->timers[i].purpose))
			return &v->timers[i];
	return NULL;
}

const char *
rs_view_waits_on(const rs_view *v)
{
	if (v->last_seq == 0 || is_terminal(v->status))
		return NULL;
	if (open_call(v) != NULL)
		return "tool";
	if (open_timer(v) != NULL)
		return "timer";
	if (v->wait_signal_step != NULL)
		return "signal";
	if (v->effect_kind != NULL)
		return v->effect_kind;
	return v->children_running > 0 ? "children" : NULL;
}

/* RFC 3339 text of ms, or JSON null for 0. */
static json_t *
jtime(int64_t ms)
{
	char buf[40];

	if (ms <= 0)
		return json_null();
	rs_time_rfc3339(ms, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *
jstr(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

static json_t *
jval(json_t *v)
{
	return v != NULL ? json_incref(v) : json_null();
}

static void
put(json_t *o, const char *k, json_t *v)
{
	if (v == NULL || json_object_set_new(o, k, v) != 0)
		rs_oom(0);   /* jansson could not allocate */
}

static json_t *
waiting_json(const rs_view *v)
{
	const char *on = rs_view_waits_on(v);
	json_t *w;

	if (on == NULL)
		return json_null();
	w = json_object();
	put(w, "on", json_string(on));
	if (strcmp(on, "tool") == 0) {
		const rs_view_call *c = open_call(v);
		put(w, "call_id", jstr(c->call_id));
		put(w, "tool", jstr(c->tool));
		put(w, "step_id", jstr(c->step_id));
	} else if (strcmp(on, "timer") == 0) {
		const rs_view_timer *t = open_timer(v);
		put(w, "timer_id", jstr(t->timer_id));
		put(w, "purpose", json_string(rs_timer_purpose_name(t->purpose)));
		put(w, "step_id", jstr(t->step_id));
		put(w, "due_at", jtime(t->due_ms));
	} else if (strcmp(on, "signal") == 0) {
		put(w, "signal", jstr(v->wait_signal_name));
		put(w, "step_id", jstr(v->wait_signal_step));
	} else if (strcmp(on, "children") == 0) {
		put(w, "running", json_integer((json_int_t)v->children_running));
		put(w, "step_id", jstr(v->current_step));
	} else {
		put(w, "effect_id", jstr(v->effect_id));
		put(w, "step_id", jstr(v->current_step));
	}
	return w;
}

json_t *
rs_view_json(const rs_view *v)
{
	json_t *o = json_object(), *steps = json_array(), *calls = json_array();

	if (o == NULL || steps == NULL || calls == NULL)
		rs_oom(0);   /* jansson could not allocate */
	for (size_t i = 0; i < v->nsteps; i++) {
		const rs_view_step *s = &v->steps[i];
		json_t *j = json_object();

		put(j, "step_id", jstr(s->step_id));
		put(j, "attempt", json_integer(s->attempt));
		put(j, "kind", jstr(s->kind));
		put(j, "status", jstr(s->status));
		put(j, "latest", json_boolean(s->latest));
		put(j, "input", jval(s->input));
		put(j, "output", jval(s->output));
		put(j, "error", jval(s->error));
		put(j, "next_step", jstr(s->next_step));
		put(j, "started_at", jtime(s->started_ms));
		put(j, "finished_at", jtime(s->finished_ms));
		put(j, "duration_ms", s->duration_ms >= 0 ? json_integer(s->duration_ms) : json_null());
		json_array_append_new(steps, j);
	}
	for (size_t i = 0; i < v->ncalls; i++) {
		const rs_view_call *c = &v->calls[i];
		json_t *j = json_object();

		put(j, "call_id", jstr(c->call_id));
		put(j, "step_id", jstr(c->step_id));
		put(j, "attempt", json_integer(c->attempt));
		put(j, "tool", jstr(c->tool));
		put(j, "device_id", jstr(c->device_id));
		put(j, "capability", jstr(c->capability));
		put(j, "router", jstr(c->router));
		put(j, "status", jstr(c->status));
		put(j, "args", jval(c->args));
		put(j, "output", jval(c->output));
		put(j, "error", jval(c->error));
		put(j, "requested_at", jtime(c->requested_ms));
		put(j, "dispatched_at", jtime(c->dispatched_ms));
		put(j, "finished_at", jtime(c->finished_ms));
		put(j, "deadline_at", jtime(c->deadline_ms));
		put(j, "attempts", json_integer(c->attempts));
		json_array_append_new(calls, j);
	}
	put(o, "run_id", json_string(v->run_id));
	put(o, "status", json_string(v->status[0] ? v->status : "queued"));
	put(o, "agent", jstr(v->agent));
	put(o, "version", jstr(v->version));
	put(o, "created_at", jtime(v->created_ms));
	put(o, "started_at", jtime(v->started_ms));
	put(o, "finished_at", jtime(v->finished_ms));
	put(o, "updated_at", jtime(v->updated_ms));
	put(o, "last_seq", json_integer((json_int_t)v->last_seq));
	put(o, "current_step", jstr(v->current_step));
	put(o, "input", jval(v->input));
	put(o, "output", jval(v->output));
	put(o, "error", jval(v->error));
	put(o, "idempotency_key", jstr(v->idempotency_key));
	put(o, "cancel_reason", jstr(v->cancel_reason));
	put(o, "timeout_s", v->timeout_s > 0 ? json_integer(v->timeout_s) : json_null());
	put(o, "waiting_on", waiting_json(v));
	put(o, "steps", steps);
	put(o, "tool_calls", calls);
	{
		json_t *kids = json_array();
		for (size_t i = 0; i < v->nchildren; i++) {
			const rs_view_child *c = &v->children[i];
			json_t *j = json_object();
			put(j, "run_id", jstr(c->run_id));
			put(j, "agent", jstr(c->agent));
			put(j, "key", jstr(c->key));
			put(j, "step_id", jstr(c->step_id));
			put(j, "status", jstr(c->status));
			put(j, "created_at", jtime(c->started_ms));
			put(j, "finished_at", jtime(c->finished_ms));
			json_array_append_new(kids, j);
		}
		put(o, "children", kids);
	}
	put(o, "tags", jval(v->tags));
	put(o, "parent_run_id", jstr(v->parent_run_id));
	put(o, "root_run_id", jstr(v->root_run_id));
	if (v->forked_from != NULL) {
		put(o, "forked_from", jstr(v->forked_from));
		put(o, "from_seq", json_integer(v->from_seq));
	}
	if (v->schedule_id != NULL)
		put(o, "schedule_id", jstr(v->schedule_id));
	if (v->steps_truncated || v->calls_truncated || v->timers_truncated ||
	    v->children_truncated) {
		json_t *t = json_object();
		put(t, "steps", json_boolean(v->steps_truncated));
		put(t, "tool_calls", json_boolean(v->calls_truncated));
		put(t, "timers", json_boolean(v->timers_truncated));
		put(t, "children", json_boolean(v->children_truncated));
		put(o, "truncated", t);
	}
	return o;
}
