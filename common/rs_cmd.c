/*
 * rs_cmd.c - codecs for the internal messages: commands to the orchestrator
 * (stream CMDS), tool calls to the routers (stream TOOLCALLS) and timer
 * bodies (stream TIMERS, a timer.fire command). Contract in rs_cmd.h.
 *
 * The per-type fields are field tables (rs_field.h) over rs_cmd
 * and rs_toolcall, so the validation rules and error messages are the same
 * as for events. Members common to every message (type, run_id, tenant,
 * traceparent) are handled here. Unknown members are ignored, like event
 * data: a newer API may add a field while an older orchestrator still runs.
 */
#include "rs_cmd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_id.h"
#include "rs_json.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define REQ(T, m, kind, min) { #m, kind, 0, offsetof(T, m), min }
#define OPT(T, m, kind, min) { #m, kind, 1, offsetof(T, m), min }

static rs_status
fail(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && cap > 0) {
		va_start(ap, fmt);
		vsnprintf(err, cap, fmt, ap);
		va_end(ap);
	}
	return RS_EINVAL;
}

/* ---- commands ------------------------------------------------------- */

static const rs_field c_run_start[] = {
	REQ(rs_cmd, agent, RS_F_STR, 1),
	OPT(rs_cmd, version, RS_F_STR, 1),   /* NULL: the API resolves "latest" */
	REQ(rs_cmd, input, RS_F_OBJECT, 0),
	OPT(rs_cmd, idempotency_key, RS_F_STR, 1),
	OPT(rs_cmd, forked_from, RS_F_UUID, 0),
	OPT(rs_cmd, from_seq, RS_F_INT, 1),
	OPT(rs_cmd, reuse, RS_F_ARRAY, 0),
	OPT(rs_cmd, tenant_limit, RS_F_INT, 1),
	OPT(rs_cmd, schedule_id, RS_F_TOKEN, 0),
	OPT(rs_cmd, schedule_tick, RS_F_TIME, 0),
	OPT(rs_cmd, parent_run_id, RS_F_UUID, 0),
	OPT(rs_cmd, root_run_id, RS_F_UUID, 0),
	OPT(rs_cmd, scope, RS_F_STR, 1),
	OPT(rs_cmd, parent_step_id, RS_F_STR, 1),
	OPT(rs_cmd, tags, RS_F_OBJECT, 0),
};
/* output / error are handled by tool_result_*(): exactly one of them. */
static const rs_field c_tool_result[] = {
	REQ(rs_cmd, call_id, RS_F_CALLID, 0),
	OPT(rs_cmd, device_id, RS_F_STR, 1),
};
static const rs_field c_tool_delivered[] = {
	REQ(rs_cmd, call_id, RS_F_CALLID, 0),
	REQ(rs_cmd, device_id, RS_F_STR, 1),
	OPT(rs_cmd, router, RS_F_STR, 1),
};
static const rs_field c_signal[] = {
	REQ(rs_cmd, signal_id, RS_F_STR, 1),
	REQ(rs_cmd, name, RS_F_STR, 1),
	REQ(rs_cmd, payload, RS_F_JSON, 0),
};
static const rs_field c_cancel[] = {
	OPT(rs_cmd, reason, RS_F_STR, 1),
};
static const rs_field c_timer_fire[] = {
	REQ(rs_cmd, timer_id, RS_F_STR, 1),
	REQ(rs_cmd, purpose, RS_F_PURPOSE, 0),
	OPT(rs_cmd, step_id, RS_F_STR, 1),
	OPT(rs_cmd, attempt, RS_F_INT, 1),
	REQ(rs_cmd, due_at, RS_F_TIME, 0),
};

/* output / error as for tool.result (result_*()). */
static const rs_field c_effect_result[] = {
	REQ(rs_cmd, effect_id, RS_F_CALLID, 0),
	OPT(rs_cmd, retry_after_ms, RS_F_INT, 1),
};
static const rs_field c_run_continue[] = {
	REQ(rs_cmd, after_seq, RS_F_INT, 0),
};
static const rs_field c_llm_chunk[] = {
	REQ(rs_cmd, effect_id, RS_F_CALLID, 0),
	REQ(rs_cmd, index, RS_F_INT, 0),
	REQ(rs_cmd, text, RS_F_STR, 0),
};
static const rs_field c_child_done[] = {
	REQ(rs_cmd, child_run_id, RS_F_UUID, 0),
	REQ(rs_cmd, child_status, RS_F_STR, 1),
	REQ(rs_cmd, output, RS_F_JSON, 0),
	OPT(rs_cmd, child_error, RS_F_OBJECT, 0),
};

/* Indexed by rs_cmd_type. */
static const struct {
	const char *name;
	const rs_field *fields;
	size_t nfields;
} cmd_types[RS_CMD__COUNT] = {
	{ "run.start", c_run_start, NELEM(c_run_start) },
	{ "tool.result", c_tool_result, NELEM(c_tool_result) },
	{ "tool.delivered", c_tool_delivered, NELEM(c_tool_delivered) },
	{ "signal", c_signal, NELEM(c_signal) },
	{ "cancel", c_cancel, NELEM(c_cancel) },
	{ "timer.fire", c_timer_fire, NELEM(c_timer_fire) },
	{ "effect.result", c_effect_result, NELEM(c_effect_result) },
	{ "llm.chunk", c_llm_chunk, NELEM(c_llm_chunk) },
	{ "run.continue", c_run_continue, NELEM(c_run_continue) },
	{ "run.admit", NULL, 0 },   /* run_id and tenant only */
	{ "child.done", c_child_done, NELEM(c_child_done) },
};

/* Commands that carry exactly one of output / error. */
static int
has_result(rs_cmd_type t)
{
	return t == RS_CMD_TOOL_RESULT || t == RS_CMD_EFFECT_RESULT;
}

const char *
rs_cmd_type_name(rs_cmd_type t)
{
	if ((unsigned)t >= RS_CMD__COUNT)
		return "?";
	return cmd_types[t].name;
}

rs_status
rs_cmd_type_parse(const char *s, rs_cmd_type *t)
{
	for (int i = 0; s != NULL && i < RS_CMD__COUNT; i++) {
		if (strcmp(s, cmd_types[i].name) == 0) {
			*t = (rs_cmd_type)i;
			return RS_OK;
		}
	}
	return RS_ENOTFOUND;
}

void
rs_cmd_subject(const char *tenant, const char *run_id, char *buf, size_t cap)
{
	snprintf(buf, cap, "cmd.%s.%s", tenant, run_id);
}

void
rs_cmd_copy_subject(const rs_cmd *c, char *buf, size_t cap)
{
	/* One subject token made of what KV keys allow, or no copy. */
	if (c->type == RS_CMD_SIGNAL && c->signal_id != NULL && c->signal_id[0] != '\0' &&
	    strspn(c->signal_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=") ==
	    strlen(c->signal_id))
		snprintf(buf, cap, "$KV.runs.%s.%s.cmd.%s", c->tenant, c->run_id, c->signal_id);
	else if (c->type == RS_CMD_CANCEL)
		snprintf(buf, cap, "$KV.runs.%s.%s.cmd.cancel", c->tenant, c->run_id);
	else if (cap > 0)
		buf[0] = '\0';
}

void
rs_cmd_msg_id(const rs_cmd *c, char *buf, size_t cap)
{
	switch (c->type) {
	case RS_CMD_RUN_START:
		snprintf(buf, cap, "start-%s", c->run_id);
		break;
	case RS_CMD_TOOL_RESULT:
		snprintf(buf, cap, "result-%s", c->call_id ? c->call_id : "");
		break;
	case RS_CMD_TOOL_DELIVERED:
		snprintf(buf, cap, "delivered-%s-%s", c->call_id ? c->call_id : "",
		         c->device_id ? c->device_id : "");
		break;
	case RS_CMD_SIGNAL:
		snprintf(buf, cap, "signal-%s", c->signal_id ? c->signal_id : "");
		break;
	case RS_CMD_CANCEL:
		snprintf(buf, cap, "cancel-%s", c->run_id);
		break;
	case RS_CMD_TIMER_FIRE:
		snprintf(buf, cap, "timer-%s", c->timer_id ? c->timer_id : "");
		break;
	case RS_CMD_EFFECT_RESULT:
		snprintf(buf, cap, "result-%s", c->effect_id ? c->effect_id : "");
		break;
	case RS_CMD_LLM_CHUNK:
		snprintf(buf, cap, "chunk-%s-%lld", c->effect_id ? c->effect_id : "",
		         (long long)c->index);
		break;
	case RS_CMD_RUN_CONTINUE:
		snprintf(buf, cap, "continue-%s-%lld", c->run_id, (long long)c->after_seq);
		break;
	case RS_CMD_RUN_ADMIT:
		snprintf(buf, cap, "admit-%s", c->run_id);
		break;
	case RS_CMD_CHILD_DONE:
		snprintf(buf, cap, "childdone-%s", c->child_run_id ? c->child_run_id : "");
		break;
	default:
		snprintf(buf, cap, "unknown");
		break;
	}
}

/* The result of a tool: an output (any JSON, NULL encodes as null) or,
 * with has_error, an error. */
static rs_status
tool_result_encode(const rs_cmd *c, json_t *o)
{
	json_t *v;

	if (c->has_error)
		v = rs_err_encode(&c->error);
	else
		v = c->output != NULL ? json_incref(c->output) : json_null();
	if (v == NULL)
		return RS_EINVAL;
	if (json_object_set_new(o, c->has_error ? "error" : "output", v) != 0)
		return RS_ENOMEM;
	return RS_OK;
}

static rs_status
tool_result_decode(json_t *o, rs_cmd *c, char *err, size_t cap)
{
	json_t *out = json_object_get(o, "output"), *e = json_object_get(o, "error");

	if ((out == NULL) == (e == NULL))
		return fail(err, cap, "output, error: exactly one of them must be present");
	if (out != NULL) {
		c->output = json_incref(out);
		return RS_OK;
	}
	if (!json_is_object(e))
		return fail(err, cap, "error: must be an object");
	c->has_error = 1;
	return rs_err_decode(e, &c->error, "error", err, cap);
}

rs_status
rs_cmd_encode(const rs_cmd *c, char **out, size_t *len)
{
	json_t *o = NULL;
	rs_status st = RS_EINVAL;

	*out = NULL;
	if ((unsigned)c->type >= RS_CMD__COUNT || !rs_id_is_uuid(c->run_id) ||
	    !rs_id_is_token(c->tenant, 64) ||
	    (c->traceparent[0] != '\0' && !rs_traceparent_valid(c->traceparent)))
		goto cleanup;
	o = json_pack("{s:s, s:s, s:s}", "type", cmd_types[c->type].name,
	              "run_id", c->run_id, "tenant", c->tenant);
	if (o == NULL) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	if (c->traceparent[0] != '\0' &&
	    json_object_set_new(o, "traceparent", json_string(c->traceparent)) != 0) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	st = rs_fields_encode(cmd_types[c->type].fields, cmd_types[c->type].nfields, c, o);
	if (st == RS_OK && has_result(c->type))
		st = tool_result_encode(c, o);
	if (st != RS_OK)
		goto cleanup;
	*out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	st = *out != NULL ? RS_OK : RS_ENOMEM;
	if (st == RS_OK && len != NULL)
		*len = strlen(*out);
cleanup:
	json_decref(o);
	return st;
}

/* A string member copied into a fixed buffer after the check ok(). */
static rs_status
fixed_str(json_t *o, const char *name, int required, int (*ok)(const char *),
          const char *rule, char *buf, size_t bufcap, char *err, size_t cap)
{
	json_t *v = json_object_get(o, name);

	if (v == NULL)
		return required ? fail(err, cap, "%s: missing", name) : RS_OK;
	if (!json_is_string(v) || !ok(json_string_value(v)) ||
	    json_string_length(v) >= bufcap)
		return fail(err, cap, "%s: %s", name, rule);
	memcpy(buf, json_string_value(v), json_string_length(v) + 1);
	return RS_OK;
}

static int
tenant_ok(const char *s)
{
	return rs_id_is_token(s, 64);
}

/* type, run_id, tenant, traceparent: common to all commands. Returns
 * RS_ENOTFOUND (and names the type) for a type this build does not know. */
static rs_status
cmd_head_decode(json_t *o, rs_cmd *c, char *err, size_t cap)
{
	json_t *t = json_object_get(o, "type");
	rs_status st;

	if (t == NULL)
		return fail(err, cap, "type: missing");
	if (!json_is_string(t))
		return fail(err, cap, "type: must be a string");
	if (rs_cmd_type_parse(json_string_value(t), &c->type) != RS_OK) {
		fail(err, cap, "type: unknown command type \"%s\"", json_string_value(t));
		return RS_ENOTFOUND;
	}
	st = fixed_str(o, "run_id", 1, rs_id_is_uuid, "must be a canonical lowercase UUID",
	               c->run_id, sizeof(c->run_id), err, cap);
	if (st == RS_OK)
		st = fixed_str(o, "tenant", 1, tenant_ok, "must match [a-z0-9_-]{1,64}",
		               c->tenant, sizeof(c->tenant), err, cap);
	if (st == RS_OK)
		st = fixed_str(o, "traceparent", 0, rs_traceparent_valid,
		               "must be a W3C traceparent \"00-<32 hex>-<16 hex>-<2 hex>\"",
		               c->traceparent, sizeof(c->traceparent), err, cap);
	return st;
}

rs_status
rs_cmd_decode(const char *buf, size_t len, rs_cmd *c, char *err, size_t cap)
{
	json_t *o = NULL;
	rs_status st;

	memset(c, 0, sizeof(*c));
	st = rs_json_parse(buf, len, &o, err, cap);
	if (st != RS_OK)
		goto cleanup;
	if (!json_is_object(o)) {
		st = fail(err, cap, "command: must be a JSON object");
		goto cleanup;
	}
	st = cmd_head_decode(o, c, err, cap);
	if (st != RS_OK)
		goto cleanup;
	st = rs_fields_decode(cmd_types[c->type].fields, cmd_types[c->type].nfields, o, c,
	                      NULL, err, cap);
	if (st == RS_OK && has_result(c->type))
		st = tool_result_decode(o, c, err, cap);
cleanup:
	if (st != RS_OK)
		rs_cmd_free(c);
	json_decref(o);
	return st;
}

void
rs_cmd_free(rs_cmd *c)
{
	free(c->agent);
	free(c->version);
	free(c->idempotency_key);
	json_decref(c->input);
	free(c->forked_from);
	free(c->schedule_id);
	json_decref(c->reuse);
	free(c->call_id);
	free(c->device_id);
	free(c->router);
	json_decref(c->output);
	rs_err_free(&c->error);
	free(c->signal_id);
	free(c->name);
	json_decref(c->payload);
	free(c->reason);
	free(c->timer_id);
	free(c->step_id);
	free(c->effect_id);
	free(c->text);
	free(c->parent_run_id);
	free(c->root_run_id);
	free(c->scope);
	free(c->parent_step_id);
	free(c->child_run_id);
	free(c->child_status);
	json_decref(c->child_error);
	json_decref(c->tags);
	memset(c, 0, sizeof(*c));
}

/* ---- tool calls ----------------------------------------------------- */

static const rs_field tc_call[] = {
	REQ(rs_toolcall, call_id, RS_F_CALLID, 0),
	REQ(rs_toolcall, run_id, RS_F_UUID, 0),
	REQ(rs_toolcall, tenant, RS_F_TOKEN, 0),
	REQ(rs_toolcall, step_id, RS_F_STR, 1),
	REQ(rs_toolcall, tool, RS_F_STR, 1),
	REQ(rs_toolcall, args, RS_F_OBJECT, 0),
	REQ(rs_toolcall, attempt, RS_F_INT, 1),
	REQ(rs_toolcall, deadline, RS_F_TIME, 0),
	OPT(rs_toolcall, device, RS_F_STR, 1),
	OPT(rs_toolcall, capability, RS_F_STR, 1),
};
static const rs_field tc_cancel[] = {
	REQ(rs_toolcall, call_id, RS_F_CALLID, 0),
	REQ(rs_toolcall, run_id, RS_F_UUID, 0),
	REQ(rs_toolcall, tenant, RS_F_TOKEN, 0),
};

rs_status
rs_toolcall_encode(const rs_toolcall *t, char **out, size_t *len)
{
	const rs_field *f = t->cancel ? tc_cancel : tc_call;
	size_t n = t->cancel ? NELEM(tc_cancel) : NELEM(tc_call);
	json_t *o;
	rs_status st;

	*out = NULL;
	o = json_pack("{s:s}", "type", t->cancel ? "tool.cancel" : "tool.call");
	if (o == NULL)
		return RS_ENOMEM;
	st = rs_fields_encode(f, n, t, o);
	if (st != RS_OK)
		goto cleanup;
	*out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	st = *out != NULL ? RS_OK : RS_ENOMEM;
	if (st == RS_OK && len != NULL)
		*len = strlen(*out);
cleanup:
	json_decref(o);
	return st;
}

rs_status
rs_toolcall_decode(const char *buf, size_t len, rs_toolcall *t, char *err, size_t cap)
{
	const char *type;
	json_t *o = NULL, *v;
	rs_status st;

	memset(t, 0, sizeof(*t));
	st = rs_json_parse(buf, len, &o, err, cap);
	if (st != RS_OK)
		goto cleanup;
	if (!json_is_object(o)) {
		st = fail(err, cap, "tool call: must be a JSON object");
		goto cleanup;
	}
	v = json_object_get(o, "type");
	type = json_is_string(v) ? json_string_value(v) : NULL;
	if (v == NULL) {
		st = fail(err, cap, "type: missing");
		goto cleanup;
	}
	if (type == NULL || (strcmp(type, "tool.call") != 0 && strcmp(type, "tool.cancel") != 0)) {
		st = fail(err, cap, "type: must be \"tool.call\" or \"tool.cancel\"");
		goto cleanup;
	}
	t->cancel = strcmp(type, "tool.cancel") == 0;
	st = rs_fields_decode(t->cancel ? tc_cancel : tc_call,
	                      t->cancel ? NELEM(tc_cancel) : NELEM(tc_call), o, t, NULL, err, cap);
cleanup:
	if (st != RS_OK)
		rs_toolcall_free(t);
	json_decref(o);
	return st;
}

void
rs_toolcall_free(rs_toolcall *t)
{
	free(t->call_id);
	free(t->run_id);
	free(t->tenant);
	free(t->step_id);
	free(t->tool);
	free(t->device);
	free(t->capability);
	json_decref(t->args);
	memset(t, 0, sizeof(*t));
}
