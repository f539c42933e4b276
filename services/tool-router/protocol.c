/*
 * protocol.c - parse/validate device frames and build router frames (see
 * protocol.h). Pure: everything the router decides about a frame's shape
 * lives here so it can be tested without sockets.
 *
 * Unknown members are ignored (a newer device may send more); an unknown
 * "type" is an error, because silently dropping a frame the device expects
 * an answer to would leave it waiting.
 */
#include "protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_id.h"
#include "rs_json.h"
#include "rs_time.h"

static rs_status
bad(char *code, size_t codecap, const char *c, char *msg, size_t msgcap, const char *fmt, ...)
{
	va_list ap;

	snprintf(code, codecap, "%s", c);
	va_start(ap, fmt);
	vsnprintf(msg, msgcap, fmt, ap);
	va_end(ap);
	return RS_EINVAL;
}

/* call ids become NATS subject tokens and KV keys downstream. */
static int
callid_ok(const char *s)
{
	size_t n = strlen(s);

	return n <= RS_ROUTER_MAX_CALLID && rs_id_is_subject_token(s);
}

static int
toolname_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > RS_ROUTER_MAX_TOOLNAME)
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return 0;
	return 1;
}

static rs_status
parse_tools(json_t *tools, char *code, size_t codecap, char *msg, size_t msgcap)
{
	size_t i, j;
	json_t *t, *v;

	if (!json_is_array(tools))
		return bad(code, codecap, "invalid_frame", msg, msgcap, "hello: tools: must be an array");
	if (json_array_size(tools) > RS_ROUTER_MAX_TOOLS)
		return bad(code, codecap, "invalid_frame", msg, msgcap,
		           "hello: tools: at most %d tools", RS_ROUTER_MAX_TOOLS);
	json_array_foreach(tools, i, t) {
		if (!json_is_object(t))
			return bad(code, codecap, "invalid_frame", msg, msgcap,
			           "hello: tools[%zu]: must be an object", i);
		v = json_object_get(t, "name");
		if (!json_is_string(v) || !toolname_ok(json_string_value(v)))
			return bad(code, codecap, "invalid_frame", msg, msgcap,
			           "hello: tools[%zu].name: must be a non-empty string without whitespace (max %d)",
			           i, RS_ROUTER_MAX_TOOLNAME);
		for (j = 0; j < i; j++)
			if (strcmp(json_string_value(json_object_get(json_array_get(tools, j), "name")),
			           json_string_value(v)) == 0)
				return bad(code, codecap, "invalid_frame", msg, msgcap,
				           "hello: tools[%zu].name: duplicate tool \"%s\"", i,
				           json_string_value(v));
		v = json_object_get(t, "description");
		if (v != NULL && !json_is_string(v))
			return bad(code, codecap, "invalid_frame", msg, msgcap,
			           "hello: tools[%zu].description: must be a string", i);
		v = json_object_get(t, "input_schema");
		if (v != NULL && !json_is_object(v))
			return bad(code, codecap, "invalid_frame", msg, msgcap,
			           "hello: tools[%zu].input_schema: must be an object", i);
	}
	return RS_OK;
}

static rs_status
parse_hello(rs_router_frame *f, char *code, size_t codecap, char *msg, size_t msgcap)
{
	json_t *o = f->root, *v;

	f->type = RS_FRAME_HELLO;
	v = json_object_get(o, "device_id");
	if (v == NULL)
		return bad(code, codecap, "invalid_frame", msg, msgcap, "hello: device_id: missing");
	if (!json_is_string(v) || !rs_id_is_token(json_string_value(v), 64))
		return bad(code, codecap, "invalid_frame", msg, msgcap,
		           "hello: device_id: must match [a-z0-9_-]{1,64}");
	f->device_id = json_string_value(v);
	v = json_object_get(o, "token");
	if (v == NULL)
		return bad(code, codecap, "invalid_frame", msg, msgcap, "hello: token: missing");
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > RS_ROUTER_MAX_TOKEN)
		return bad(code, codecap, "invalid_frame", msg, msgcap,
		           "hello: token: must be a non-empty string (max %d)", RS_ROUTER_MAX_TOKEN);
	f->token = json_string_value(v);
	v = json_object_get(o, "tools");
	if (v == NULL) {
		/* A device with no tools may still receive nothing; allow it. */
		v = json_array();
		if (v == NULL || json_object_set_new(o, "tools", v) != 0)
			return bad(code, codecap, "internal", msg, msgcap, "out of memory");
	}
	f->tools = v;
	return parse_tools(v, code, codecap, msg, msgcap);
}

static rs_status
parse_result(rs_router_frame *f, char *code, size_t codecap, char *msg, size_t msgcap)
{
	json_t *o = f->root, *v, *e;

	f->type = RS_FRAME_RESULT;
	v = json_object_get(o, "call_id");
	if (v == NULL)
		return bad(code, codecap, "invalid_frame", msg, msgcap, "tool.result: call_id: missing");
	if (!json_is_string(v) || !callid_ok(json_string_value(v)))
		return bad(code, codecap, "invalid_frame", msg, msgcap,
		           "tool.result: call_id: must be a non-empty string without '.', '*', '>' or whitespace (max %d)",
		           RS_ROUTER_MAX_CALLID);
	f->call_id = json_string_value(v);
	f->output = json_object_get(o, "output");
	e = json_object_get(o, "error");
	if ((f->output == NULL) == (e == NULL))
		return bad(code, codecap, "invalid_frame", msg, msgcap,
		           "tool.result: exactly one of output, error must be present");
	if (e == NULL)
		return RS_OK;
	if (!json_is_object(e))
		return bad(code, codecap, "invalid_frame", msg, msgcap, "tool.result: error: must be an object");
	v = json_object_get(e, "code");
	if (!json_is_string(v) || json_string_length(v) == 0)
		return bad(code, codecap, "invalid_frame", msg, msgcap,
		           "tool.result: error.code: must be a non-empty string");
	v = json_object_get(e, "message");
	if (!json_is_string(v))
		return bad(code, codecap, "invalid_frame", msg, msgcap,
		           "tool.result: error.message: must be a string");
	v = json_object_get(e, "retryable");
	if (v != NULL && !json_is_boolean(v))
		return bad(code, codecap, "invalid_frame", msg, msgcap,
		           "tool.result: error.retryable: must be true or false");
	f->error = e;
	return RS_OK;
}

rs_status
rs_router_frame_parse(const char *buf, size_t len, rs_router_frame *f, char *code,
                      size_t codecap, char *msg, size_t msgcap)
{
	char perr[200];
	json_t *t;
	const char *type;
	rs_status st;

	memset(f, 0, sizeof(*f));
	if (rs_json_parse(buf, len, &f->root, perr, sizeof(perr)) != RS_OK) {
		st = bad(code, codecap, "malformed_json", msg, msgcap, "%s", perr);
		goto cleanup;
	}
	if (!json_is_object(f->root)) {
		st = bad(code, codecap, "invalid_frame", msg, msgcap, "frame: must be a JSON object");
		goto cleanup;
	}
	t = json_object_get(f->root, "type");
	if (t == NULL) {
		st = bad(code, codecap, "invalid_frame", msg, msgcap, "frame: type: missing");
		goto cleanup;
	}
	if (!json_is_string(t)) {
		st = bad(code, codecap, "invalid_frame", msg, msgcap, "frame: type: must be a string");
		goto cleanup;
	}
	type = json_string_value(t);
	if (strcmp(type, "hello") == 0)
		st = parse_hello(f, code, codecap, msg, msgcap);
	else if (strcmp(type, "tool.result") == 0)
		st = parse_result(f, code, codecap, msg, msgcap);
	else {
		char esc[80];
		/* Name the type, but keep the echo short and printable. */
		snprintf(esc, sizeof(esc), "%.64s", type);
		for (char *p = esc; *p != '\0'; p++)
			if ((unsigned char)*p < ' ' || *p == '"' || *p == '\\')
				*p = '?';
		/* the cut at 64 bytes may split a character: the message
		 * goes into a JSON error frame, which must be UTF-8 */
		rs_json_scrub_utf8(esc);
		st = bad(code, codecap, "unknown_type", msg, msgcap,
		         "frame: type: unknown frame type \"%s\" (expected hello or tool.result)", esc);
	}
cleanup:
	if (st != RS_OK)
		rs_router_frame_free(f);
	return st;
}

void
rs_router_frame_free(rs_router_frame *f)
{
	json_decref(f->root);
	memset(f, 0, sizeof(*f));
}

/* Compact, sorted: frames are deterministic (tests compare them). */
static char *
dump(json_t *o)
{
	char *s = NULL;

	if (o != NULL)
		s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

char *
rs_router_frame_welcome(const char *device_id, const char *tenant, int heartbeat_s)
{
	return dump(json_pack("{s:s, s:s, s:s, s:i}", "type", "welcome", "device_id", device_id,
	                      "tenant", tenant, "heartbeat_s", heartbeat_s));
}

char *
rs_router_frame_error(const char *code, const char *message)
{
	return dump(json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message));
}

char *
rs_router_frame_call(const rs_toolcall *tc)
{
	char deadline[40];

	rs_time_rfc3339(tc->deadline, deadline, sizeof(deadline));
	return dump(json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:I, s:s}", "type", "tool.call",
	                      "call_id", tc->call_id, "run_id", tc->run_id, "step_id", tc->step_id,
	                      "tool", tc->tool, "args", tc->args, "attempt", (json_int_t)tc->attempt,
	                      "deadline", deadline));
}

char *
rs_router_frame_cancel(const char *call_id)
{
	return dump(json_pack("{s:s, s:s}", "type", "tool.cancel", "call_id", call_id));
}

char *
rs_router_tool_names(const json_t *tools)
{
	size_t i, n = 1, off = 0;
	json_t *t;
	char *out;

	json_array_foreach(tools, i, t)
		n += strlen(json_string_value(json_object_get(t, "name"))) + 1;
	out = malloc(n);
	if (out == NULL)
		return NULL;
	json_array_foreach(tools, i, t) {
		const char *name = json_string_value(json_object_get(t, "name"));
		size_t l = strlen(name) + 1;
		memcpy(out + off, name, l);
		off += l;
	}
	out[off] = '\0';
	return out;
}

int
rs_router_has_tool(const char *names, const char *tool)
{
	for (const char *p = names; p != NULL && *p != '\0'; p += strlen(p) + 1)
		if (strcmp(p, tool) == 0)
			return 1;
	return 0;
}
