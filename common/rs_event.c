/*
 * rs_event.c - the run event codec: CloudEvents 1.0 envelope plus one typed
 * data struct per event type (contract in rs_event.h, docs/events.md).
 *
 * Every data struct is described once by a field table (rs_field); encode,
 * decode and free walk that table (the engine is rs_field.c), so the three
 * cannot drift apart and a new event type is a struct, a table and one
 * line in ev_types[].
 *
 * Strictness: the envelope is checked attribute by attribute and data
 * fields are checked for presence, type and range, with errors naming the
 * field. Unknown data fields and unknown (well-named) extension attributes
 * are ignored, because v1 allows additive changes and an older consumer
 * must keep working when a newer producer adds something.
 *
 * Encoding (the envelope, the direct writer and its tree-built reference)
 * is in rs_event_encode.c; rs_event_int.h holds what the two share.
 */
#include "rs_event_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_id.h"
#include "rs_json.h"
#include "rs_time.h"

/* ---- names ---------------------------------------------------------- */

const char *const rs_event_errclass_names[] = { "transient", "permanent", "timeout" };

const char *const rs_event_purpose_names[] = {
	"sleep", "retry", "step_timeout", "tool_timeout", "signal_timeout", "run_timeout"
};

const char *
rs_errclass_name(rs_errclass c)
{
	if ((unsigned)c >= NELEM(rs_event_errclass_names))
		return "?";
	return rs_event_errclass_names[c];
}

rs_status
rs_errclass_parse(const char *s, rs_errclass *c)
{
	for (size_t i = 0; s != NULL && i < NELEM(rs_event_errclass_names); i++) {
		if (strcmp(s, rs_event_errclass_names[i]) == 0) {
			*c = (rs_errclass)i;
			return RS_OK;
		}
	}
	return RS_EINVAL;
}

const char *
rs_timer_purpose_name(rs_timer_purpose p)
{
	if ((unsigned)p >= NELEM(rs_event_purpose_names))
		return "?";
	return rs_event_purpose_names[p];
}

rs_status
rs_timer_purpose_parse(const char *s, rs_timer_purpose *p)
{
	for (size_t i = 0; s != NULL && i < NELEM(rs_event_purpose_names); i++) {
		if (strcmp(s, rs_event_purpose_names[i]) == 0) {
			*p = (rs_timer_purpose)i;
			return RS_OK;
		}
	}
	return RS_EINVAL;
}

static int
is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int
rs_traceparent_valid(const char *s)
{
	/* version "ff" is forbidden by W3C; the rest is shape only. */
	if (s == NULL || strlen(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return 0;
	if (!is_lower_hex(s, 2) || !is_lower_hex(s + 3, 32) ||
	    !is_lower_hex(s + 36, 16) || !is_lower_hex(s + 53, 2))
		return 0;
	return strncmp(s, "ff", 2) != 0;
}

/* ---- rs_err --------------------------------------------------------- */

json_t *
rs_err_encode(const rs_err *e)
{
	json_t *o;

	if (e->code == NULL || *e->code == '\0' || e->message == NULL ||
	    (unsigned)e->cls >= NELEM(rs_event_errclass_names) ||
	    (e->step_id != NULL && *e->step_id == '\0'))
		return NULL;
	o = json_pack("{s:s, s:s, s:s, s:b}", "code", e->code, "message", e->message,
	              "class", rs_event_errclass_names[e->cls], "retryable", e->retryable != 0);
	if (o == NULL)
		return NULL;
	if (e->step_id != NULL && json_object_set_new(o, "step_id", json_string(e->step_id)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

void
rs_err_free(rs_err *e)
{
	free(e->code);
	free(e->message);
	free(e->step_id);
	memset(e, 0, sizeof(*e));
}

static const rs_field err_fields[] = {
	{ "code", RS_F_STR, 0, offsetof(rs_err, code), 1 },
	{ "message", RS_F_STR, 0, offsetof(rs_err, message), 0 },
	{ "retryable", RS_F_BOOL, 0, offsetof(rs_err, retryable), 0 },
	{ "step_id", RS_F_STR, 1, offsetof(rs_err, step_id), 1 },
};

rs_status
rs_err_decode(json_t *v, rs_err *e, const char *prefix, char *err, size_t cap)
{
	json_t *cls;
	rs_status st;

	memset(e, 0, sizeof(*e));
	st = rs_fields_decode(err_fields, NELEM(err_fields), v, e, prefix, err, cap);
	if (st != RS_OK)
		return st;
	/* class is an enum the field kinds do not cover; checked here. */
	cls = json_object_get(v, "class");
	if (cls == NULL) {
		st = rs_field_fail(err, cap, prefix, "class", "missing");
		goto cleanup;
	}
	if (!json_is_string(cls) || rs_errclass_parse(json_string_value(cls), &e->cls) != RS_OK) {
		st = rs_field_fail(err, cap, prefix, "class",
		                   "must be one of transient, permanent, timeout");
		goto cleanup;
	}
	return RS_OK;
cleanup:
	rs_err_free(e);
	return st;
}

/* ---- per-type tables ------------------------------------------------ */

#define REQ(T, m, kind, min) { #m, kind, 0, offsetof(T, m), min }
#define OPT(T, m, kind, min) { #m, kind, 1, offsetof(T, m), min }

static const rs_field f_run_created[] = {
	REQ(rs_ev_run_created, agent, RS_F_STR, 1),
	REQ(rs_ev_run_created, version, RS_F_STR, 1),
	REQ(rs_ev_run_created, input, RS_F_OBJECT, 0),
	OPT(rs_ev_run_created, idempotency_key, RS_F_STR, 1),
	OPT(rs_ev_run_created, timeout_s, RS_F_INT, 1),
	OPT(rs_ev_run_created, max_steps, RS_F_INT, 1),
	OPT(rs_ev_run_created, forked_from, RS_F_UUID, 0),
	OPT(rs_ev_run_created, from_seq, RS_F_INT, 1),
	OPT(rs_ev_run_created, reuse, RS_F_ARRAY, 0),
	OPT(rs_ev_run_created, concurrency_key, RS_F_STR, 0),
	OPT(rs_ev_run_created, concurrency_limit, RS_F_INT, 1),
	OPT(rs_ev_run_created, tenant_limit, RS_F_INT, 1),
	OPT(rs_ev_run_created, schedule_id, RS_F_TOKEN, 0),
	OPT(rs_ev_run_created, schedule_tick, RS_F_TIME, 0),
	OPT(rs_ev_run_created, parent_run_id, RS_F_UUID, 0),
	OPT(rs_ev_run_created, root_run_id, RS_F_UUID, 0),
	OPT(rs_ev_run_created, scope, RS_F_STR, 1),
	OPT(rs_ev_run_created, parent_step_id, RS_F_STR, 1),
	OPT(rs_ev_run_created, tags, RS_F_OBJECT, 0),
};
static const rs_field f_run_started[] = {
	OPT(rs_ev_run_started, instance, RS_F_STR, 1),
	OPT(rs_ev_run_started, admission, RS_F_STR, 1),
};
static const rs_field f_step_started[] = {
	REQ(rs_ev_step_started, step_id, RS_F_STR, 1),
	REQ(rs_ev_step_started, kind, RS_F_STEPKIND, 0),
	REQ(rs_ev_step_started, attempt, RS_F_INT, 1),
	OPT(rs_ev_step_started, input, RS_F_JSON, 0),
};
static const rs_field f_step_completed[] = {
	REQ(rs_ev_step_completed, step_id, RS_F_STR, 1),
	REQ(rs_ev_step_completed, attempt, RS_F_INT, 1),
	REQ(rs_ev_step_completed, output, RS_F_JSON, 0),
	REQ(rs_ev_step_completed, duration_ms, RS_F_INT, 0),
	OPT(rs_ev_step_completed, next_step, RS_F_STR, 1),
	OPT(rs_ev_step_completed, reused_seq, RS_F_INT, 1),
};
static const rs_field f_step_failed[] = {
	REQ(rs_ev_step_failed, step_id, RS_F_STR, 1),
	REQ(rs_ev_step_failed, attempt, RS_F_INT, 1),
	REQ(rs_ev_step_failed, error, RS_F_ERR, 0),
	REQ(rs_ev_step_failed, final, RS_F_BOOL, 0),
	OPT(rs_ev_step_failed, effect_id, RS_F_CALLID, 0),
	OPT(rs_ev_step_failed, retry_after_ms, RS_F_INT, 1),
};
static const rs_field f_step_retry_scheduled[] = {
	REQ(rs_ev_step_retry_scheduled, step_id, RS_F_STR, 1),
	REQ(rs_ev_step_retry_scheduled, attempt, RS_F_INT, 1),
	REQ(rs_ev_step_retry_scheduled, backoff_ms, RS_F_INT, 0),
	REQ(rs_ev_step_retry_scheduled, due_at, RS_F_TIME, 0),
	REQ(rs_ev_step_retry_scheduled, timer_id, RS_F_STR, 1),
};
static const rs_field f_tool_requested[] = {
	REQ(rs_ev_tool_requested, call_id, RS_F_CALLID, 0),
	REQ(rs_ev_tool_requested, step_id, RS_F_STR, 1),
	REQ(rs_ev_tool_requested, attempt, RS_F_INT, 1),
	REQ(rs_ev_tool_requested, tool, RS_F_STR, 1),
	REQ(rs_ev_tool_requested, args, RS_F_OBJECT, 0),
	OPT(rs_ev_tool_requested, device, RS_F_STR, 1),
	OPT(rs_ev_tool_requested, capability, RS_F_STR, 1),
	REQ(rs_ev_tool_requested, deadline, RS_F_TIME, 0),
};
static const rs_field f_tool_dispatched[] = {
	REQ(rs_ev_tool_dispatched, call_id, RS_F_CALLID, 0),
	REQ(rs_ev_tool_dispatched, device_id, RS_F_STR, 1),
	OPT(rs_ev_tool_dispatched, router, RS_F_STR, 1),
};
static const rs_field f_tool_completed[] = {
	REQ(rs_ev_tool_completed, call_id, RS_F_CALLID, 0),
	REQ(rs_ev_tool_completed, step_id, RS_F_STR, 1),
	REQ(rs_ev_tool_completed, attempt, RS_F_INT, 1),
	REQ(rs_ev_tool_completed, output, RS_F_JSON, 0),
	OPT(rs_ev_tool_completed, device_id, RS_F_STR, 1),
};
static const rs_field f_tool_failed[] = {
	REQ(rs_ev_tool_failed, call_id, RS_F_CALLID, 0),
	REQ(rs_ev_tool_failed, step_id, RS_F_STR, 1),
	REQ(rs_ev_tool_failed, attempt, RS_F_INT, 1),
	REQ(rs_ev_tool_failed, error, RS_F_ERR, 0),
	OPT(rs_ev_tool_failed, device_id, RS_F_STR, 1),
};
static const rs_field f_tool_timed_out[] = {
	REQ(rs_ev_tool_timed_out, call_id, RS_F_CALLID, 0),
	REQ(rs_ev_tool_timed_out, step_id, RS_F_STR, 1),
	REQ(rs_ev_tool_timed_out, attempt, RS_F_INT, 1),
};
static const rs_field f_timer_scheduled[] = {
	REQ(rs_ev_timer_scheduled, timer_id, RS_F_STR, 1),
	REQ(rs_ev_timer_scheduled, purpose, RS_F_PURPOSE, 0),
	OPT(rs_ev_timer_scheduled, step_id, RS_F_STR, 1),
	OPT(rs_ev_timer_scheduled, attempt, RS_F_INT, 1),
	REQ(rs_ev_timer_scheduled, due_at, RS_F_TIME, 0),
};
static const rs_field f_timer_fired[] = {
	REQ(rs_ev_timer_fired, timer_id, RS_F_STR, 1),
	REQ(rs_ev_timer_fired, purpose, RS_F_PURPOSE, 0),
	OPT(rs_ev_timer_fired, step_id, RS_F_STR, 1),
	OPT(rs_ev_timer_fired, attempt, RS_F_INT, 1),
	REQ(rs_ev_timer_fired, due_at, RS_F_TIME, 0),
};
static const rs_field f_signal_received[] = {
	REQ(rs_ev_signal_received, signal_id, RS_F_STR, 1),
	REQ(rs_ev_signal_received, name, RS_F_STR, 1),
	REQ(rs_ev_signal_received, payload, RS_F_JSON, 0),
	OPT(rs_ev_signal_received, step_id, RS_F_STR, 1),
};
static const rs_field f_run_cancel_requested[] = {
	OPT(rs_ev_run_cancel_requested, reason, RS_F_STR, 1),
};
static const rs_field f_run_completed[] = {
	REQ(rs_ev_run_completed, output, RS_F_JSON, 0),
};
static const rs_field f_run_failed[] = {
	REQ(rs_ev_run_failed, error, RS_F_ERR, 0),
};
static const rs_field f_run_cancelled[] = {
	OPT(rs_ev_run_cancelled, reason, RS_F_STR, 1),
};
static const rs_field f_run_timed_out[] = {
	REQ(rs_ev_run_timed_out, timeout_s, RS_F_INT, 1),
};
static const rs_field f_http_requested[] = {
	REQ(rs_ev_http_requested, effect_id, RS_F_CALLID, 0),
	REQ(rs_ev_http_requested, step_id, RS_F_STR, 1),
	REQ(rs_ev_http_requested, attempt, RS_F_INT, 1),
	REQ(rs_ev_http_requested, method, RS_F_STR, 1),
	REQ(rs_ev_http_requested, url, RS_F_STR, 1),
	REQ(rs_ev_http_requested, headers, RS_F_OBJECT, 0),
	OPT(rs_ev_http_requested, body, RS_F_JSON, 0),
	REQ(rs_ev_http_requested, timeout_ms, RS_F_INT, 1),
	REQ(rs_ev_http_requested, deadline, RS_F_TIME, 0),
	OPT(rs_ev_http_requested, hmac, RS_F_OBJECT, 0),
	OPT(rs_ev_http_requested, max_response_bytes, RS_F_INT, 1),
	OPT(rs_ev_http_requested, max_redirects, RS_F_INT, 1),
};
static const rs_field f_http_completed[] = {
	REQ(rs_ev_http_completed, effect_id, RS_F_CALLID, 0),
	REQ(rs_ev_http_completed, step_id, RS_F_STR, 1),
	REQ(rs_ev_http_completed, attempt, RS_F_INT, 1),
	REQ(rs_ev_http_completed, status, RS_F_INT, 100),
	REQ(rs_ev_http_completed, headers, RS_F_OBJECT, 0),
	REQ(rs_ev_http_completed, body, RS_F_JSON, 0),
	REQ(rs_ev_http_completed, duration_ms, RS_F_INT, 0),
};
static const rs_field f_llm_requested[] = {
	REQ(rs_ev_llm_requested, effect_id, RS_F_CALLID, 0),
	REQ(rs_ev_llm_requested, step_id, RS_F_STR, 1),
	REQ(rs_ev_llm_requested, attempt, RS_F_INT, 1),
	REQ(rs_ev_llm_requested, turn, RS_F_INT, 1),
	REQ(rs_ev_llm_requested, messages, RS_F_ARRAY, 0),
	REQ(rs_ev_llm_requested, model, RS_F_OBJECT, 0),
	OPT(rs_ev_llm_requested, tools, RS_F_ARRAY, 0),
	OPT(rs_ev_llm_requested, max_tokens, RS_F_INT, 1),
	OPT(rs_ev_llm_requested, temperature, RS_F_NUMBER, 0),
	REQ(rs_ev_llm_requested, deadline, RS_F_TIME, 0),
};
static const rs_field f_llm_delta[] = {
	REQ(rs_ev_llm_delta, effect_id, RS_F_CALLID, 0),
	REQ(rs_ev_llm_delta, step_id, RS_F_STR, 1),
	REQ(rs_ev_llm_delta, turn, RS_F_INT, 1),
	REQ(rs_ev_llm_delta, index, RS_F_INT, 0),
	REQ(rs_ev_llm_delta, text, RS_F_STR, 0),
};
static const rs_field f_llm_message[] = {
	REQ(rs_ev_llm_message, effect_id, RS_F_CALLID, 0),
	REQ(rs_ev_llm_message, step_id, RS_F_STR, 1),
	REQ(rs_ev_llm_message, turn, RS_F_INT, 1),
	REQ(rs_ev_llm_message, message, RS_F_OBJECT, 0),
	OPT(rs_ev_llm_message, usage, RS_F_OBJECT, 0),
	OPT(rs_ev_llm_message, finish_reason, RS_F_STR, 1),
};
static const rs_field f_child_started[] = {
	REQ(rs_ev_child_started, step_id, RS_F_STR, 1),
	REQ(rs_ev_child_started, attempt, RS_F_INT, 1),
	REQ(rs_ev_child_started, child_run_id, RS_F_UUID, 0),
	REQ(rs_ev_child_started, key, RS_F_STR, 1),
	REQ(rs_ev_child_started, agent, RS_F_TOKEN, 0),
	OPT(rs_ev_child_started, version, RS_F_STR, 1),
	OPT(rs_ev_child_started, scope, RS_F_STR, 1),
	REQ(rs_ev_child_started, input, RS_F_OBJECT, 0),
};
static const rs_field f_child_finished[] = {
	REQ(rs_ev_child_finished, step_id, RS_F_STR, 1),
	REQ(rs_ev_child_finished, attempt, RS_F_INT, 1),
	REQ(rs_ev_child_finished, child_run_id, RS_F_UUID, 0),
	REQ(rs_ev_child_finished, key, RS_F_STR, 1),
	REQ(rs_ev_child_finished, status, RS_F_STR, 1),
	REQ(rs_ev_child_finished, output, RS_F_JSON, 0),
	OPT(rs_ev_child_finished, error, RS_F_OBJECT, 0),
};

/* Indexed by rs_event_type; the order must follow the enum. */
static const struct {
	const char *name;
	const rs_field *fields;
	size_t nfields;
} ev_types[RS_EV__COUNT] = {
#define T(n, tbl) { n, tbl, NELEM(tbl) }
	T("run.created", f_run_created),
	T("run.started", f_run_started),
	T("step.started", f_step_started),
	T("step.completed", f_step_completed),
	T("step.failed", f_step_failed),
	T("step.retry_scheduled", f_step_retry_scheduled),
	T("tool.requested", f_tool_requested),
	T("tool.dispatched", f_tool_dispatched),
	T("tool.completed", f_tool_completed),
	T("tool.failed", f_tool_failed),
	T("tool.timed_out", f_tool_timed_out),
	T("timer.scheduled", f_timer_scheduled),
	T("timer.fired", f_timer_fired),
	T("signal.received", f_signal_received),
	T("run.cancel_requested", f_run_cancel_requested),
	T("run.completed", f_run_completed),
	T("run.failed", f_run_failed),
	T("run.cancelled", f_run_cancelled),
	T("run.timed_out", f_run_timed_out),
	T("http.requested", f_http_requested),
	T("http.completed", f_http_completed),
	T("llm.requested", f_llm_requested),
	T("llm.delta", f_llm_delta),
	T("llm.message", f_llm_message),
	T("child.started", f_child_started),
	T("child.finished", f_child_finished),
#undef T
};

const rs_field *
rs_event_fields(rs_event_type t, size_t *n)
{
	if ((unsigned)t >= RS_EV__COUNT)
		return NULL;
	*n = ev_types[t].nfields;
	return ev_types[t].fields;
}

const rs_field *
rs_err_fields(size_t *n)
{
	*n = NELEM(err_fields);
	return err_fields;
}

/* Encode the struct at s with table t into a new data object, or NULL. */
json_t *
rs_event_data_encode(rs_event_type t, const void *s)
{
	json_t *obj = json_object();

	if (obj == NULL)
		return NULL;
	if (rs_fields_encode(ev_types[t].fields, ev_types[t].nfields, s, obj) != RS_OK) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

static rs_status
data_decode(rs_event_type t, json_t *data, void *s, char *err, size_t cap)
{
	return rs_fields_decode(ev_types[t].fields, ev_types[t].nfields, data, s, "data", err, cap);
}

#define EV_CODEC(name, TYPE) \
	json_t *rs_ev_##name##_encode(const rs_ev_##name *d) \
	{ \
		return rs_event_data_encode(TYPE, d); \
	} \
	rs_status rs_ev_##name##_decode(json_t *data, rs_ev_##name *d, char *err, size_t cap) \
	{ \
		memset(d, 0, sizeof(*d)); \
		return data_decode(TYPE, data, d, err, cap); \
	} \
	void rs_ev_##name##_free(rs_ev_##name *d) \
	{ \
		rs_fields_free(ev_types[TYPE].fields, ev_types[TYPE].nfields, d); \
		memset(d, 0, sizeof(*d)); \
	}

EV_CODEC(run_created, RS_EV_RUN_CREATED)
EV_CODEC(run_started, RS_EV_RUN_STARTED)
EV_CODEC(step_started, RS_EV_STEP_STARTED)
EV_CODEC(step_completed, RS_EV_STEP_COMPLETED)
EV_CODEC(step_failed, RS_EV_STEP_FAILED)
EV_CODEC(step_retry_scheduled, RS_EV_STEP_RETRY_SCHEDULED)
EV_CODEC(tool_requested, RS_EV_TOOL_REQUESTED)
EV_CODEC(tool_dispatched, RS_EV_TOOL_DISPATCHED)
EV_CODEC(tool_completed, RS_EV_TOOL_COMPLETED)
EV_CODEC(tool_failed, RS_EV_TOOL_FAILED)
EV_CODEC(tool_timed_out, RS_EV_TOOL_TIMED_OUT)
EV_CODEC(timer_scheduled, RS_EV_TIMER_SCHEDULED)
EV_CODEC(timer_fired, RS_EV_TIMER_FIRED)
EV_CODEC(signal_received, RS_EV_SIGNAL_RECEIVED)
EV_CODEC(run_cancel_requested, RS_EV_RUN_CANCEL_REQUESTED)
EV_CODEC(run_completed, RS_EV_RUN_COMPLETED)
EV_CODEC(run_failed, RS_EV_RUN_FAILED)
EV_CODEC(run_cancelled, RS_EV_RUN_CANCELLED)
EV_CODEC(run_timed_out, RS_EV_RUN_TIMED_OUT)
EV_CODEC(http_requested, RS_EV_HTTP_REQUESTED)
EV_CODEC(http_completed, RS_EV_HTTP_COMPLETED)
EV_CODEC(llm_requested, RS_EV_LLM_REQUESTED)
EV_CODEC(llm_delta, RS_EV_LLM_DELTA)
EV_CODEC(llm_message, RS_EV_LLM_MESSAGE)
EV_CODEC(child_started, RS_EV_CHILD_STARTED)
EV_CODEC(child_finished, RS_EV_CHILD_FINISHED)

/* ---- event types ---------------------------------------------------- */

const char *
rs_event_type_name(rs_event_type t)
{
	if ((unsigned)t >= RS_EV__COUNT)
		return "?";
	return ev_types[t].name;
}

rs_status
rs_event_type_parse(const char *s, rs_event_type *t)
{
	if (s == NULL)
		return RS_EINVAL;
	if (strncmp(s, EV_TYPE_PREFIX, strlen(EV_TYPE_PREFIX)) == 0)
		s += strlen(EV_TYPE_PREFIX);
	for (int i = 0; i < RS_EV__COUNT; i++) {
		if (strcmp(s, ev_types[i].name) == 0) {
			*t = (rs_event_type)i;
			return RS_OK;
		}
	}
	return RS_ENOTFOUND;
}

int
rs_event_type_terminal(rs_event_type t)
{
	return t == RS_EV_RUN_COMPLETED || t == RS_EV_RUN_FAILED ||
	       t == RS_EV_RUN_CANCELLED || t == RS_EV_RUN_TIMED_OUT;
}

/* "<noun>.<verb>" with [a-z_] words: the shape every type, known or
 * future, must have (docs/events.md, versioning). */
static int
type_shape_ok(const char *s)
{
	int dots = 0, len = 0;

	for (; *s != '\0'; s++) {
		if (*s == '.') {
			if (len == 0)
				return 0;
			dots++;
			len = 0;
		} else if ((*s >= 'a' && *s <= 'z') || *s == '_') {
			len++;
		} else {
			return 0;
		}
	}
	return dots == 1 && len > 0;
}

/* ---- subjects and ids ----------------------------------------------- */

void
rs_event_subject(const char *tenant, const char *run_id, char *buf, size_t cap)
{
	snprintf(buf, cap, "runs.%s.%s", tenant, run_id);
}

void
rs_event_id(const char *run_id, uint64_t runseq, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s-%llu", run_id, (unsigned long long)runseq);
}

static const char *const envelope_attrs[] = {
	"specversion", "id", "source", "type", "subject", "time", "datacontenttype",
	"runseq", "tenant", "traceparent", "data",
};

/* CloudEvents attribute names are lowercase a-z/0-9 only. */
static int
attr_name_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
			return 0;
	return 1;
}

static rs_status
check_attr_names(json_t *o, char *err, size_t cap)
{
	const char *k;
	json_t *v;
	size_t i;

	json_object_foreach(o, k, v) {
		for (i = 0; i < NELEM(envelope_attrs); i++)
			if (strcmp(k, envelope_attrs[i]) == 0)
				break;
		if (i == NELEM(envelope_attrs) && !attr_name_ok(k))
			return rs_field_fail(err, cap, NULL, k, "not a valid CloudEvents attribute name "
			                     "(lowercase a-z, 0-9)");
	}
	return RS_OK;
}

/* A required string attribute, or NULL after writing the error. */
static const char *
attr_str(json_t *o, const char *name, char *err, size_t cap)
{
	json_t *v = json_object_get(o, name);

	if (v == NULL) {
		rs_field_fail(err, cap, NULL, name, "missing");
		return NULL;
	}
	if (!json_is_string(v) || json_string_length(v) == 0) {
		rs_field_fail(err, cap, NULL, name, "must be a non-empty string");
		return NULL;
	}
	return json_string_value(v);
}

/* A required string attribute that must have exactly one value. */
static rs_status
attr_fixed(json_t *o, const char *name, const char *want, char *err, size_t cap)
{
	const char *s = attr_str(o, name, err, cap);

	if (s == NULL)
		return RS_EINVAL;
	if (strcmp(s, want) != 0)
		return rs_field_fail(err, cap, NULL, name, "must be \"%s\"", want);
	return RS_OK;
}

/* Fill the envelope members of ev; *type_name gets the "<noun>.<verb>". */
static rs_status
envelope_decode(json_t *o, rs_event *ev, const char **type_name, char *err, size_t cap)
{
	const char *s, *type;
	char want[80];
	json_t *v;
	rs_status st;

	if ((st = check_attr_names(o, err, cap)) != RS_OK)
		return st;
	if ((st = attr_fixed(o, "specversion", "1.0", err, cap)) != RS_OK)
		return st;
	if ((type = attr_str(o, "type", err, cap)) == NULL)
		return RS_EINVAL;
	if (strncmp(type, EV_TYPE_PREFIX, strlen(EV_TYPE_PREFIX)) != 0 ||
	    !type_shape_ok(type + strlen(EV_TYPE_PREFIX)))
		return rs_field_fail(err, cap, NULL, "type", "must be \"runstream.<noun>.<verb>\"");
	*type_name = type + strlen(EV_TYPE_PREFIX);
	if ((s = attr_str(o, "subject", err, cap)) == NULL)
		return RS_EINVAL;
	if (!rs_id_is_uuid(s))
		return rs_field_fail(err, cap, NULL, "subject",
		                     "must be a canonical lowercase UUID (the run id)");
	memcpy(ev->run_id, s, RS_UUID_LEN + 1);
	v = json_object_get(o, "runseq");
	if (v == NULL)
		return rs_field_fail(err, cap, NULL, "runseq", "missing");
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > EV_RUNSEQ_MAX)
		return rs_field_fail(err, cap, NULL, "runseq", "must be an integer between 1 and %lld",
		                     EV_RUNSEQ_MAX);
	ev->runseq = (uint64_t)json_integer_value(v);
	if ((s = attr_str(o, "id", err, cap)) == NULL)
		return RS_EINVAL;
	rs_event_id(ev->run_id, ev->runseq, want, sizeof(want));
	if (strcmp(s, want) != 0)
		return rs_field_fail(err, cap, NULL, "id", "must be \"<subject>-<runseq>\" (\"%s\")",
		                     want);
	if ((s = attr_str(o, "source", err, cap)) == NULL)
		return RS_EINVAL;
	if ((s = attr_str(o, "time", err, cap)) == NULL)
		return RS_EINVAL;
	if (rs_time_parse_rfc3339(s, &ev->time_ms) != RS_OK || ev->time_ms < 0)
		return rs_field_fail(err, cap, NULL, "time", "must be an RFC 3339 timestamp");
	if ((st = attr_fixed(o, "datacontenttype", "application/json", err, cap)) != RS_OK)
		return st;
	if ((s = attr_str(o, "tenant", err, cap)) == NULL)
		return RS_EINVAL;
	if (!rs_id_is_token(s, 64))
		return rs_field_fail(err, cap, NULL, "tenant", "must match [a-z0-9_-]{1,64}");
	snprintf(ev->tenant, sizeof(ev->tenant), "%s", s);
	if ((v = json_object_get(o, "traceparent")) != NULL) {
		if (!json_is_string(v) || !rs_traceparent_valid(json_string_value(v)))
			return rs_field_fail(err, cap, NULL, "traceparent",
			                     "must be a W3C traceparent \"00-<32 hex>-<16 hex>-<2 hex>\"");
		snprintf(ev->traceparent, sizeof(ev->traceparent), "%s", json_string_value(v));
	}
	v = json_object_get(o, "data");
	if (v == NULL)
		return rs_field_fail(err, cap, NULL, "data", "missing");
	if (!json_is_object(v))
		return rs_field_fail(err, cap, NULL, "data", "must be an object");
	return RS_OK;
}

rs_status
rs_event_decode(const char *buf, size_t len, rs_event *ev, char *err, size_t cap)
{
	const char *type_name = NULL;
	json_t *o = NULL;
	rs_status st;

	memset(ev, 0, sizeof(*ev));
	st = rs_json_parse(buf, len, &o, err, cap);
	if (st != RS_OK)
		goto cleanup;
	if (!json_is_object(o)) {
		st = rs_field_fail(err, cap, NULL, "event", "must be a JSON object");
		goto cleanup;
	}
	st = envelope_decode(o, ev, &type_name, err, cap);
	if (st != RS_OK)
		goto cleanup;
	if (rs_event_type_parse(type_name, &ev->type) != RS_OK) {
		/* Valid envelope, newer type: keep the envelope for the caller. */
		ev->type = RS_EV__COUNT;
		rs_field_fail(err, cap, NULL, "type", "unknown event type \"runstream.%s\"", type_name);
		st = RS_ENOTFOUND;
		goto out;
	}
	st = data_decode(ev->type, json_object_get(o, "data"), &ev->d, err, cap);
	if (st != RS_OK)
		goto cleanup;
	ev->source = strdup(json_string_value(json_object_get(o, "source")));
	if (ev->source == NULL) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	goto out;
cleanup:
	rs_event_free(ev);
out:
	json_decref(o);
	return st;
}

void
rs_event_free(rs_event *ev)
{
	if ((unsigned)ev->type < RS_EV__COUNT)
		rs_fields_free(ev_types[ev->type].fields, ev_types[ev->type].nfields, &ev->d);
	free(ev->source);
	memset(ev, 0, sizeof(*ev));
}
