/*
 * rs_effects.c - a run's http requests and model turns, folded from its
 * events (see rs_effects.h). Shared by runctl replay and rs-api's /state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_effects.h"

void
rs_eff_init(rs_eff_track *t)
{
	t->list = json_array();
	t->by_id = json_object();
}

void
rs_eff_free(rs_eff_track *t)
{
	json_decref(t->list);
	json_decref(t->by_id);
	t->list = t->by_id = NULL;
}

json_t *
rs_eff_list(const rs_eff_track *t)
{
	return t->list;
}

static json_t *
find(const rs_eff_track *t, const char *effect_id)
{
	return effect_id != NULL ? json_object_get(t->by_id, effect_id) : NULL;
}

static json_t *
str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* The members every entry has, the effect still pending. */
static json_t *
entry_new(rs_eff_track *t, const char *kind, const char *effect_id, const char *step_id,
          int64_t attempt, int64_t requested_at, int64_t deadline)
{
	json_t *e = json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:s,s:n,s:n}", "effect_id", effect_id,
	                      "kind", kind, "step_id", str_or_null(step_id),
	                      "attempt", (json_int_t)attempt, "requested_at", (json_int_t)requested_at,
	                      "deadline", (json_int_t)deadline, "status", "pending",
	                      "finished_at", "error");

	if (e == NULL)
		return NULL;
	json_array_append_new(t->list, e);
	json_object_set(t->by_id, effect_id, e);
	return e;
}

static int
is_open(json_t *e)
{
	const char *st = json_string_value(json_object_get(e, "status"));

	return st != NULL && (strcmp(st, "pending") == 0 || strcmp(st, "streaming") == 0);
}

static void
finish(json_t *e, const char *status, int64_t at)
{
	json_object_set_new(e, "status", json_string(status));
	json_object_set_new(e, "finished_at", json_integer(at));
}

static void
http_requested(rs_eff_track *t, const rs_event *ev)
{
	const rs_ev_http_requested *x = &ev->d.http_requested;
	json_t *e = entry_new(t, "http", x->effect_id, x->step_id, x->attempt, ev->time_ms,
	                      x->deadline);

	if (e == NULL)
		return;
	json_object_set_new(e, "method", str_or_null(x->method));
	json_object_set_new(e, "url", str_or_null(x->url));
	json_object_set_new(e, "http_status", json_null());
	json_object_set_new(e, "duration_ms", json_null());
}

static void
http_completed(rs_eff_track *t, const rs_event *ev)
{
	const rs_ev_http_completed *x = &ev->d.http_completed;
	json_t *e = find(t, x->effect_id);

	if (e == NULL)
		return;
	finish(e, "done", ev->time_ms);
	json_object_set_new(e, "http_status", json_integer(x->status));
	json_object_set_new(e, "duration_ms", json_integer(x->duration_ms));
}

static void
llm_requested(rs_eff_track *t, const rs_event *ev)
{
	const rs_ev_llm_requested *x = &ev->d.llm_requested;
	json_t *e = entry_new(t, "llm", x->effect_id, x->step_id, x->attempt, ev->time_ms,
	                      x->deadline);

	if (e == NULL)
		return;
	json_object_set_new(e, "turn", json_integer(x->turn));
	json_object_set_new(e, "model", str_or_null(json_string_value(json_object_get(x->model,
	                                                                                 "model"))));
	json_object_set_new(e, "messages", json_integer((json_int_t)json_array_size(x->messages)));
	json_object_set_new(e, "deltas", json_integer(0));
	json_object_set_new(e, "text", json_null());
	json_object_set_new(e, "tool_calls", json_null());
	json_object_set_new(e, "finish_reason", json_null());
	json_object_set_new(e, "usage", json_null());
}

/* Watchers append the deltas of a turn: so does the view. */
static void
llm_delta(rs_eff_track *t, const rs_event *ev)
{
	const rs_ev_llm_delta *x = &ev->d.llm_delta;
	json_t *e = find(t, x->effect_id);
	const char *had;
	size_t n;
	char *buf;

	if (e == NULL)
		return;
	had = json_string_value(json_object_get(e, "text"));
	n = (had ? strlen(had) : 0) + strlen(x->text ? x->text : "");
	if ((buf = malloc(n + 1)) == NULL)
		return;
	snprintf(buf, n + 1, "%s%s", had ? had : "", x->text ? x->text : "");
	json_object_set_new(e, "text", json_string(buf));
	free(buf);
	json_object_set_new(e, "deltas",
	                    json_integer(json_integer_value(json_object_get(e, "deltas")) + 1));
	if (is_open(e))
		json_object_set_new(e, "status", json_string("streaming"));
}

static json_t *
call_names(json_t *calls)
{
	json_t *names = json_array(), *c;
	const char *n;
	size_t i;

	json_array_foreach(calls, i, c) {
		n = json_string_value(json_object_get(json_object_get(c, "function"), "name"));
		json_array_append_new(names, str_or_null(n));
	}
	return names;
}

/* The whole message replaces the streamed text. */
static void
llm_message(rs_eff_track *t, const rs_event *ev)
{
	const rs_ev_llm_message *x = &ev->d.llm_message;
	json_t *e = find(t, x->effect_id), *content, *calls;

	if (e == NULL)
		return;
	finish(e, "done", ev->time_ms);
	content = json_object_get(x->message, "content");
	if (json_is_string(content))
		json_object_set(e, "text", content);
	calls = json_object_get(x->message, "tool_calls");
	if (json_array_size(calls) > 0)
		json_object_set_new(e, "tool_calls", call_names(calls));
	json_object_set_new(e, "finish_reason", str_or_null(x->finish_reason));
	if (x->usage != NULL)
		json_object_set(e, "usage", x->usage);
}

/* Effects left open when their step attempt failed (step_id NULL: any). */
static void
abandon_open(rs_eff_track *t, const char *step_id, int64_t attempt, int64_t at)
{
	const char *sid;
	json_t *e;
	size_t i;

	json_array_foreach(t->list, i, e) {
		if (!is_open(e))
			continue;
		sid = json_string_value(json_object_get(e, "step_id"));
		if (step_id != NULL && (sid == NULL || strcmp(sid, step_id) != 0 ||
		                        json_integer_value(json_object_get(e, "attempt")) != attempt))
			continue;
		finish(e, "abandoned", at);
	}
}

static void
step_failed(rs_eff_track *t, const rs_event *ev)
{
	const rs_ev_step_failed *x = &ev->d.step_failed;
	json_t *e = find(t, x->effect_id);

	if (x->effect_id == NULL) {
		abandon_open(t, x->step_id, x->attempt, ev->time_ms);
		return;
	}
	if (e == NULL)
		return;
	finish(e, "error", ev->time_ms);
	json_object_set_new(e, "error", rs_err_encode(&x->error));
}

void
rs_eff_add(rs_eff_track *t, const rs_event *ev)
{
	switch (ev->type) {
	case RS_EV_HTTP_REQUESTED: http_requested(t, ev); break;
	case RS_EV_HTTP_COMPLETED: http_completed(t, ev); break;
	case RS_EV_LLM_REQUESTED: llm_requested(t, ev); break;
	case RS_EV_LLM_DELTA: llm_delta(t, ev); break;
	case RS_EV_LLM_MESSAGE: llm_message(t, ev); break;
	case RS_EV_STEP_FAILED: step_failed(t, ev); break;
	case RS_EV_RUN_FAILED:
	case RS_EV_RUN_CANCELLED:
	case RS_EV_RUN_TIMED_OUT:
		abandon_open(t, NULL, 0, ev->time_ms);
		break;
	default:
		break;
	}
}
