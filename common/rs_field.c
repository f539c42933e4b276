/*
 * rs_field.c - the field-table engine (contract in rs_field.h): a flat
 * JSON object described once by an array of rs_field, and the encode,
 * decode and free that walk it, so the three cannot disagree about a
 * field. The event codec (rs_event.c, one table per event type) and the
 * command codec (rs_cmd.c) are built on it; rs_event_fast.c checks strings
 * with the same rules (rs_field_string_ok).
 *
 * Errors name the field: "<prefix>.<name>: <problem>" (rs_field_fail, the
 * one error helper of both codecs).
 */
#include "rs_field.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_event.h"
#include "rs_id.h"
#include "rs_time.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const char *const step_kinds[] = { "tool", "sleep", "signal", "branch", "transform",
                                           "http", "llm", "parallel", "foreach", "run" };

static int
is_step_kind(const char *s)
{
	for (size_t i = 0; i < NELEM(step_kinds); i++)
		if (strcmp(s, step_kinds[i]) == 0)
			return 1;
	return 0;
}

/* "<prefix>.<name>: <problem>", or "<name>: <problem>" without prefix. */
rs_status
rs_field_fail(char *err, size_t cap, const char *prefix, const char *name,
              const char *fmt, ...)
{
	char what[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err == NULL || cap == 0)
		return RS_EINVAL;
	if (prefix != NULL && *prefix != '\0')
		snprintf(err, cap, "%s.%s: %s", prefix, name, what);
	else
		snprintf(err, cap, "%s: %s", name, what);
	return RS_EINVAL;
}

int
rs_field_is_string(rs_field_kind k)
{
	return k == RS_F_STR || k == RS_F_CALLID || k == RS_F_UUID || k == RS_F_TOKEN ||
	       k == RS_F_STEPKIND;
}

int
rs_field_string_ok(const rs_field *f, const char *s, size_t n)
{
	switch (f->kind) {
	case RS_F_STR:      return (int64_t)n >= f->min;
	case RS_F_CALLID:   return rs_id_is_subject_token(s);
	case RS_F_UUID:     return rs_id_is_uuid(s);
	case RS_F_TOKEN:    return rs_id_is_token(s, 64);
	case RS_F_STEPKIND: return is_step_kind(s);
	default:            return 0;
	}
}

static const char *
string_rule(const rs_field *f)
{
	switch (f->kind) {
	case RS_F_STR:      return f->min > 0 ? "must be a non-empty string" : "must be a string";
	case RS_F_CALLID:   return "must be a non-empty string without '.', '*', '>' or whitespace";
	case RS_F_UUID:     return "must be a canonical lowercase UUID";
	case RS_F_TOKEN:    return "must match [a-z0-9_-]{1,64}";
	case RS_F_STEPKIND: return "must be one of tool, sleep, signal, branch, transform, http, "
	                           "llm, parallel, foreach, run";
	default:            return "invalid";
	}
}

int
rs_field_absent(const rs_field *f, const void *s)
{
	if (rs_field_is_string(f->kind))
		return *RS_FIELD_CMEMBER(s, f, char *) == NULL;
	switch (f->kind) {
	case RS_F_INT:
	case RS_F_TIME:   return *RS_FIELD_CMEMBER(s, f, int64_t) == 0;
	case RS_F_JSON:
	case RS_F_OBJECT:
	case RS_F_ARRAY:
	case RS_F_NUMBER: return *RS_FIELD_CMEMBER(s, f, json_t *) == NULL;
	default:          return 0;
	}
}

/* The JSON value of one member, or NULL if it breaks the table. */
static json_t *
field_value(const rs_field *f, const void *s)
{
	char tbuf[40];
	const char *str;
	int64_t i;
	json_t *j;

	if (rs_field_is_string(f->kind)) {
		str = *RS_FIELD_CMEMBER(s, f, char *);
		return str != NULL && rs_field_string_ok(f, str, strlen(str)) ? json_string(str) : NULL;
	}
	switch (f->kind) {
	case RS_F_INT:
		i = *RS_FIELD_CMEMBER(s, f, int64_t);
		return i >= f->min ? json_integer(i) : NULL;
	case RS_F_TIME:
		i = *RS_FIELD_CMEMBER(s, f, int64_t);
		if (i < 0)
			return NULL;
		rs_time_rfc3339(i, tbuf, sizeof(tbuf));
		return json_string(tbuf);
	case RS_F_BOOL:
		return json_boolean(*RS_FIELD_CMEMBER(s, f, int) != 0);
	case RS_F_JSON:
		j = *RS_FIELD_CMEMBER(s, f, json_t *);
		return j != NULL ? json_incref(j) : json_null();
	case RS_F_OBJECT:
		j = *RS_FIELD_CMEMBER(s, f, json_t *);
		return json_is_object(j) ? json_incref(j) : NULL;
	case RS_F_ARRAY:
		j = *RS_FIELD_CMEMBER(s, f, json_t *);
		return json_is_array(j) ? json_incref(j) : NULL;
	case RS_F_NUMBER:
		j = *RS_FIELD_CMEMBER(s, f, json_t *);
		return json_is_number(j) ? json_incref(j) : NULL;
	case RS_F_ERR:
		return rs_err_encode(RS_FIELD_CMEMBER(s, f, rs_err));
	case RS_F_PURPOSE:
		str = rs_timer_purpose_name(*RS_FIELD_CMEMBER(s, f, rs_timer_purpose));
		return strcmp(str, "?") != 0 ? json_string(str) : NULL;
	default:
		return NULL;
	}
}

rs_status
rs_fields_encode(const rs_field *f, size_t n, const void *s, json_t *obj)
{
	json_t *v;

	for (size_t k = 0; k < n; k++) {
		if (f[k].optional && rs_field_absent(&f[k], s))
			continue;
		v = field_value(&f[k], s);
		if (v == NULL)
			return RS_EINVAL;
		if (json_object_set_new(obj, f[k].name, v) != 0)
			return RS_ENOMEM;
	}
	return RS_OK;
}

static rs_status
decode_string(const rs_field *f, json_t *v, void *s, const char *prefix, char *err, size_t cap)
{
	char *copy;

	if (!json_is_string(v) || !rs_field_string_ok(f, json_string_value(v), json_string_length(v)))
		return rs_field_fail(err, cap, prefix, f->name, "%s", string_rule(f));
	copy = strdup(json_string_value(v));
	if (copy == NULL)
		return RS_ENOMEM;
	*RS_FIELD_MEMBER(s, f, char *) = copy;
	return RS_OK;
}

static rs_status
decode_int(const rs_field *f, json_t *v, void *s, const char *prefix, char *err, size_t cap)
{
	json_int_t i;

	if (!json_is_integer(v) || (i = json_integer_value(v)) < f->min)
		return rs_field_fail(err, cap, prefix, f->name, "must be an integer >= %lld",
		                     (long long)f->min);
	*RS_FIELD_MEMBER(s, f, int64_t) = (int64_t)i;
	return RS_OK;
}

static rs_status
decode_time(const rs_field *f, json_t *v, void *s, const char *prefix, char *err, size_t cap)
{
	int64_t ms;

	if (!json_is_string(v) || rs_time_parse_rfc3339(json_string_value(v), &ms) != RS_OK ||
	    ms < 0)
		return rs_field_fail(err, cap, prefix, f->name,
		                     "must be an RFC 3339 timestamp such as \"2026-01-02T03:04:05.678Z\"");
	*RS_FIELD_MEMBER(s, f, int64_t) = ms;
	return RS_OK;
}

static rs_status
decode_field(const rs_field *f, json_t *v, void *s, const char *prefix, char *err, size_t cap)
{
	char sub[160];

	if (rs_field_is_string(f->kind))
		return decode_string(f, v, s, prefix, err, cap);
	switch (f->kind) {
	case RS_F_INT:
		return decode_int(f, v, s, prefix, err, cap);
	case RS_F_TIME:
		return decode_time(f, v, s, prefix, err, cap);
	case RS_F_BOOL:
		if (!json_is_boolean(v))
			return rs_field_fail(err, cap, prefix, f->name, "must be a boolean");
		*RS_FIELD_MEMBER(s, f, int) = json_is_true(v);
		return RS_OK;
	case RS_F_JSON:
		*RS_FIELD_MEMBER(s, f, json_t *) = json_incref(v);
		return RS_OK;
	case RS_F_OBJECT:
		if (!json_is_object(v))
			return rs_field_fail(err, cap, prefix, f->name, "must be an object");
		*RS_FIELD_MEMBER(s, f, json_t *) = json_incref(v);
		return RS_OK;
	case RS_F_ARRAY:
		if (!json_is_array(v))
			return rs_field_fail(err, cap, prefix, f->name, "must be an array");
		*RS_FIELD_MEMBER(s, f, json_t *) = json_incref(v);
		return RS_OK;
	case RS_F_NUMBER:
		if (!json_is_number(v))
			return rs_field_fail(err, cap, prefix, f->name, "must be a number");
		*RS_FIELD_MEMBER(s, f, json_t *) = json_incref(v);
		return RS_OK;
	case RS_F_ERR:
		if (!json_is_object(v))
			return rs_field_fail(err, cap, prefix, f->name, "must be an object");
		if (prefix != NULL && *prefix != '\0')
			snprintf(sub, sizeof(sub), "%s.%s", prefix, f->name);
		else
			snprintf(sub, sizeof(sub), "%s", f->name);
		return rs_err_decode(v, RS_FIELD_MEMBER(s, f, rs_err), sub, err, cap);
	case RS_F_PURPOSE:
		if (!json_is_string(v) ||
		    rs_timer_purpose_parse(json_string_value(v),
		                           RS_FIELD_MEMBER(s, f, rs_timer_purpose)) != RS_OK)
			return rs_field_fail(err, cap, prefix, f->name, "must be one of sleep, retry, "
			                     "step_timeout, tool_timeout, signal_timeout, run_timeout");
		return RS_OK;
	default:
		return rs_field_fail(err, cap, prefix, f->name, "unsupported field kind");
	}
}

rs_status
rs_fields_decode(const rs_field *f, size_t n, json_t *obj, void *s,
                 const char *prefix, char *err, size_t cap)
{
	rs_status st = RS_OK;
	json_t *v;

	if (!json_is_object(obj))
		return rs_field_fail(err, cap, NULL, prefix != NULL && *prefix ? prefix : "value",
		                     "must be an object");
	for (size_t k = 0; k < n; k++) {
		v = json_object_get(obj, f[k].name);
		if (v == NULL) {
			if (f[k].optional)
				continue;
			st = rs_field_fail(err, cap, prefix, f[k].name, "missing");
			goto cleanup;
		}
		st = decode_field(&f[k], v, s, prefix, err, cap);
		if (st != RS_OK)
			goto cleanup;
	}
	return RS_OK;
cleanup:
	rs_fields_free(f, n, s);
	return st;
}

void
rs_fields_free(const rs_field *f, size_t n, void *s)
{
	for (size_t k = 0; k < n; k++) {
		if (rs_field_is_string(f[k].kind)) {
			free(*RS_FIELD_MEMBER(s, &f[k], char *));
			*RS_FIELD_MEMBER(s, &f[k], char *) = NULL;
		} else if (f[k].kind == RS_F_JSON || f[k].kind == RS_F_OBJECT ||
		           f[k].kind == RS_F_ARRAY || f[k].kind == RS_F_NUMBER) {
			json_decref(*RS_FIELD_MEMBER(s, &f[k], json_t *));
			*RS_FIELD_MEMBER(s, &f[k], json_t *) = NULL;
		} else if (f[k].kind == RS_F_ERR) {
			rs_err_free(RS_FIELD_MEMBER(s, &f[k], rs_err));
		} else if (f[k].kind == RS_F_BOOL) {
			*RS_FIELD_MEMBER(s, &f[k], int) = 0;
		} else if (f[k].kind == RS_F_PURPOSE) {
			*RS_FIELD_MEMBER(s, &f[k], rs_timer_purpose) = RS_TIMER_SLEEP;
		} else {
			*RS_FIELD_MEMBER(s, &f[k], int64_t) = 0;
		}
	}
}
