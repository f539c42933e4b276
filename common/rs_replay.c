/*
 * rs_replay.c - the command behind each group of a recorded run history
 * (the mapping is documented in rs_replay.h).
 *
 * Every member is a copy, never a borrowed pointer, so a rebuilt command
 * is an ordinary rs_cmd: encoded, compared, freed like a received one.
 * The check of a whole history against today's decide (rs_replay_check)
 * lives here too, so runctl and the API report the same thing.
 */
#include "rs_replay.h"
#include "rs_run.h"

#include <inttypes.h>
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
	c->reuse = ref(e->reuse);
	c->from_seq = e->from_seq;
	c->tenant_limit = e->tenant_limit;
	c->schedule_tick = e->schedule_tick;
	return dup_str(&c->agent, e->agent) || dup_str(&c->version, e->version) ||
	       dup_str(&c->idempotency_key, e->idempotency_key) ||
	       dup_str(&c->forked_from, e->forked_from) ||
	       dup_str(&c->schedule_id, e->schedule_id) ? -1 : 0;
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
	case RS_EV_RUN_STARTED:
		return ev->d.run_started.admission != NULL;   /* a run.admit */
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
	case RS_EV_RUN_STARTED: c->type = RS_CMD_RUN_ADMIT; return 0;
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

/* ---- the check (runctl replay --check, GET /v1/runs/{id}/check) ---- */

/* The orchestrator instance of a run.start group: run.started's (the
 * head itself in a run.admit group). */
static const char *
instance_of(const rs_event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ev[i].type == RS_EV_RUN_STARTED && ev[i].d.run_started.instance != NULL)
			return ev[i].d.run_started.instance;
	return "runctl-check";
}

json_t *
rs_replay_comparable(const rs_event *ev)
{
	char *txt = NULL;
	json_t *o = NULL;
	size_t len;

	/* When and where the decision ran are not part of it. */
	if (ev == NULL || rs_event_encode(ev, &txt, &len) != RS_OK)
		return NULL;
	o = json_loadb(txt, len, 0, NULL);
	free(txt);
	if (o != NULL) {
		json_object_del(o, "time");
		json_object_del(o, "source");
		json_object_del(o, "id");
	}
	return o;
}

static int
same_event(const rs_event *a, const rs_event *b)
{
	json_t *x = rs_replay_comparable(a), *y = rs_replay_comparable(b);
	int eq = x != NULL && y != NULL && json_equal(x, y);

	json_decref(x);
	json_decref(y);
	return eq;
}

static void
diverged(rs_replay_report *rep, const rs_event *head, const char *cmdname, uint64_t seq,
         const rs_event *rec, const rs_event *dec, const char *why)
{
	rep->ok = 0;
	rep->seq = seq;
	rep->group_seq = head->runseq;
	rep->group_type = head->type;
	rep->command = cmdname;
	snprintf(rep->reason, sizeof(rep->reason), "%s", why);
	rep->recorded = rs_replay_comparable(rec);
	rep->decided = rs_replay_comparable(dec);
}

rs_status
rs_replay_check(const rs_event *ev, size_t n, const rs_agent *agent, rs_replay_report *rep,
                char *err, size_t cap)
{
	rs_run *run = rs_run_new();
	rs_decision dec;
	char derr[512];
	size_t i = 0;
	rs_status st = RS_OK;

	memset(rep, 0, sizeof(*rep));
	memset(&dec, 0, sizeof(dec));
	rep->ok = 1;
	rep->events = n;
	while (i < n && rep->ok && st == RS_OK) {
		const rs_event *head = &ev[i];
		int is_cmd;
		rs_cmd c;
		size_t j = i + 1, k, ng, off;

		while (j < n && !rs_replay_opens_group(&ev[j]))
			j++;
		ng = j - i;
		if (rs_replay_cmd_from_event(head, &c, &is_cmd) != RS_OK) {
			snprintf(err, cap, "out of memory");
			st = RS_ENOMEM;
			break;
		}
		if (!is_cmd) {
			diverged(rep, head, "(none)", head->runseq, head, NULL,
			         "no command produces this event first: the history does not "
			         "start with run.created or a group was cut");
			break;
		}
		/* A decision stopped at its bound (rs_decision.more) is followed,
		 * in the orchestrator, by another decision of the same command on
		 * the state its events left (engine.c, effects_done): the group's
		 * events are those decisions one after the other, with no event
		 * opening the next. So decide, compare, apply, and decide again. */
		off = 0;
		for (;;) {
			const rs_event *at = &ev[i + (off < ng ? off : ng - 1)];
			int more;
			if (rs_run_decide(run, agent, &c, at->time_ms, instance_of(head, ng), &dec, derr,
			                  sizeof(derr)) != RS_OK) {
				char why[600];
				snprintf(why, sizeof(why), "decide failed: %.500s", derr);
				diverged(rep, head, rs_cmd_type_name(c.type), at->runseq, head, NULL, why);
				break;
			}
			more = dec.more && dec.nevents > 0 && off + dec.nevents < ng;
			for (k = 0; (!more && k < ng - off) || k < dec.nevents; k++) {
				const rs_event *r = off + k < ng ? &ev[i + off + k] : NULL;
				const rs_event *d = k < dec.nevents ? &dec.events[k] : NULL;
				if (r != NULL && d != NULL && same_event(r, d))
					continue;
				diverged(rep, head, rs_cmd_type_name(c.type), r ? r->runseq : d->runseq, r,
				         d, r == NULL ? "today's code appends an event the history does not have"
				         : d == NULL ? "the history has an event today's code does not append"
				         : "the event differs");
				break;
			}
			if (!rep->ok || !more) {
				rs_decision_free(&dec);
				break;
			}
			for (k = off; k < off + dec.nevents && st == RS_OK; k++)
				if (rs_run_evolve(run, &ev[i + k], derr, sizeof(derr)) != RS_OK) {
					snprintf(err, cap, "event %" PRIu64 " does not apply: %s",
					         ev[i + k].runseq, derr);
					st = RS_EINVAL;
				}
			off += dec.nevents;
			rs_decision_free(&dec);
			if (st != RS_OK)
				break;
		}
		rs_cmd_free(&c);
		for (k = i + off; k < j && rep->ok && st == RS_OK; k++)
			if (rs_run_evolve(run, &ev[k], derr, sizeof(derr)) != RS_OK) {
				snprintf(err, cap, "event %" PRIu64 " does not apply: %s", ev[k].runseq, derr);
				st = RS_EINVAL;
			}
		rep->groups++;
		i = j;
	}
	rep->status = rs_run_status_name(rs_run_get_status(run));
	rs_run_free(run);
	if (st != RS_OK)
		rs_replay_report_free(rep);
	return st;
}

void
rs_replay_report_free(rs_replay_report *rep)
{
	json_decref(rep->recorded);
	json_decref(rep->decided);
	rep->recorded = rep->decided = NULL;
}
