/*
 * test_router_protocol.c - every device frame shape the router accepts or
 * refuses, with the error code and the message naming the problem, and the
 * exact bytes of the frames it sends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "protocol.h"


static void
refused(const char *frame, const char *want_code, const char *want_msg)
{
	rs_router_frame f;
	char code[32], msg[300];
	rs_status st = rs_router_frame_parse(frame, strlen(frame), &f, code, sizeof(code), msg,
	                                     sizeof(msg));

	CHECKF(st == RS_EINVAL, "%s: accepted", frame);
	if (st != RS_EINVAL)
		return;
	CHECKF(strcmp(code, want_code) == 0, "%s: code %s, want %s", frame, code, want_code);
	CHECKF(strstr(msg, want_msg) != NULL, "%s: message \"%s\" lacks \"%s\"", frame, msg, want_msg);
	CHECKF(f.root == NULL, "frame not cleared on failure");
}

static void
test_hello(void)
{
	const char *ok = "{\"type\":\"hello\",\"device_id\":\"dev-1\",\"token\":\"dt_x\","
	                 "\"tools\":[{\"name\":\"echo\",\"description\":\"d\",\"input_schema\":{}},"
	                 "{\"name\":\"fail\"}],\"future\":1}";
	rs_router_frame f;
	char code[32], msg[300], *names;

	CHECKF(rs_router_frame_parse(ok, strlen(ok), &f, code, sizeof(code), msg, sizeof(msg)) == RS_OK,
	      "%s", msg);
	CHECKF(f.type == RS_FRAME_HELLO, "type");
	CHECKF(strcmp(f.device_id, "dev-1") == 0 && strcmp(f.token, "dt_x") == 0, "fields");
	names = rs_router_tool_names(f.tools);
	CHECKF(names != NULL && rs_router_has_tool(names, "echo") && rs_router_has_tool(names, "fail") &&
	      !rs_router_has_tool(names, "ech") && !rs_router_has_tool(names, "sleep_ms"), "names");
	free(names);
	rs_router_frame_free(&f);

	/* tools may be omitted: a device with nothing to offer yet. */
	ok = "{\"type\":\"hello\",\"device_id\":\"d\",\"token\":\"t\"}";
	CHECKF(rs_router_frame_parse(ok, strlen(ok), &f, code, sizeof(code), msg, sizeof(msg)) == RS_OK,
	      "%s", msg);
	CHECKF(json_array_size(f.tools) == 0, "empty tools");
	names = rs_router_tool_names(f.tools);
	CHECKF(names != NULL && names[0] == '\0' && !rs_router_has_tool(names, "x"), "empty names");
	free(names);
	rs_router_frame_free(&f);

	refused("{\"type\":\"hello\",\"token\":\"t\"}", "invalid_frame", "hello: device_id: missing");
	refused("{\"type\":\"hello\",\"device_id\":\"Dev 1\",\"token\":\"t\"}", "invalid_frame",
	        "hello: device_id: must match");
	refused("{\"type\":\"hello\",\"device_id\":\"d\"}", "invalid_frame", "hello: token: missing");
	refused("{\"type\":\"hello\",\"device_id\":\"d\",\"token\":\"\"}", "invalid_frame", "hello: token");
	refused("{\"type\":\"hello\",\"device_id\":\"d\",\"token\":\"t\",\"tools\":{}}", "invalid_frame",
	        "hello: tools: must be an array");
	refused("{\"type\":\"hello\",\"device_id\":\"d\",\"token\":\"t\",\"tools\":[{\"name\":\"\"}]}",
	        "invalid_frame", "tools[0].name");
	refused("{\"type\":\"hello\",\"device_id\":\"d\",\"token\":\"t\",\"tools\":[{\"name\":\"a\"},{\"name\":\"a\"}]}",
	        "invalid_frame", "tools[1].name: duplicate tool \"a\"");
	refused("{\"type\":\"hello\",\"device_id\":\"d\",\"token\":\"t\",\"tools\":[{\"name\":\"a\",\"input_schema\":1}]}",
	        "invalid_frame", "tools[0].input_schema: must be an object");
	refused("{\"type\":\"hello\",\"device_id\":\"d\",\"token\":\"t\",\"tools\":[3]}", "invalid_frame",
	        "tools[0]: must be an object");
}

static void
test_result(void)
{
	const char *ok = "{\"type\":\"tool.result\",\"call_id\":\"c-1\",\"output\":{\"a\":1}}";
	rs_router_frame f;
	char code[32], msg[300];

	CHECKF(rs_router_frame_parse(ok, strlen(ok), &f, code, sizeof(code), msg, sizeof(msg)) == RS_OK,
	      "%s", msg);
	CHECKF(f.type == RS_FRAME_RESULT && strcmp(f.call_id, "c-1") == 0 && json_is_object(f.output) &&
	      f.error == NULL, "result fields");
	rs_router_frame_free(&f);

	/* A null output is an output. */
	ok = "{\"type\":\"tool.result\",\"call_id\":\"c\",\"output\":null}";
	CHECKF(rs_router_frame_parse(ok, strlen(ok), &f, code, sizeof(code), msg, sizeof(msg)) == RS_OK,
	      "%s", msg);
	rs_router_frame_free(&f);

	ok = "{\"type\":\"tool.result\",\"call_id\":\"c\",\"error\":{\"code\":\"x\",\"message\":\"m\",\"retryable\":true}}";
	CHECKF(rs_router_frame_parse(ok, strlen(ok), &f, code, sizeof(code), msg, sizeof(msg)) == RS_OK,
	      "%s", msg);
	CHECKF(f.error != NULL && f.output == NULL, "error result");
	rs_router_frame_free(&f);

	refused("{\"type\":\"tool.result\",\"output\":1}", "invalid_frame", "tool.result: call_id: missing");
	refused("{\"type\":\"tool.result\",\"call_id\":\"a.b\",\"output\":1}", "invalid_frame",
	        "tool.result: call_id: must be");
	refused("{\"type\":\"tool.result\",\"call_id\":\"c\"}", "invalid_frame", "exactly one of output, error");
	refused("{\"type\":\"tool.result\",\"call_id\":\"c\",\"output\":1,\"error\":{}}", "invalid_frame",
	        "exactly one of output, error");
	refused("{\"type\":\"tool.result\",\"call_id\":\"c\",\"error\":\"boom\"}", "invalid_frame",
	        "error: must be an object");
	refused("{\"type\":\"tool.result\",\"call_id\":\"c\",\"error\":{\"message\":\"m\"}}", "invalid_frame",
	        "error.code");
	refused("{\"type\":\"tool.result\",\"call_id\":\"c\",\"error\":{\"code\":\"x\",\"message\":\"m\",\"retryable\":\"yes\"}}",
	        "invalid_frame", "error.retryable");
}

static void
test_garbage(void)
{
	refused("not json", "malformed_json", "invalid JSON");
	refused("", "malformed_json", "");
	refused("[1,2]", "invalid_frame", "frame: must be a JSON object");
	refused("{}", "invalid_frame", "frame: type: missing");
	refused("{\"type\":7}", "invalid_frame", "frame: type: must be a string");
	refused("{\"type\":\"tool.call\"}", "unknown_type", "unknown frame type \"tool.call\"");
	refused("{\"type\":\"x\\\"y\"}", "unknown_type", "\"x?y\"");
	refused("{\"type\":\"hello\",\"type\":\"hello\"}", "malformed_json", "duplicate");
}

static void
test_builders(void)
{
	char *s;
	rs_toolcall tc;

	s = rs_router_frame_welcome("dev-1", "acme", 15);
	CHECKF(s && strcmp(s, "{\"device_id\":\"dev-1\",\"heartbeat_s\":15,\"tenant\":\"acme\",\"type\":\"welcome\"}") == 0,
	      "%s", s);
	free(s);
	s = rs_router_frame_error("unauthorized", "no \"such\" token");
	CHECKF(s && strcmp(s, "{\"code\":\"unauthorized\",\"message\":\"no \\\"such\\\" token\",\"type\":\"error\"}") == 0,
	      "%s", s);
	free(s);
	s = rs_router_frame_cancel("c-1");
	CHECKF(s && strcmp(s, "{\"call_id\":\"c-1\",\"type\":\"tool.cancel\"}") == 0, "%s", s);
	free(s);

	memset(&tc, 0, sizeof(tc));
	tc.call_id = "c-1";
	tc.run_id = "0190f1b2-0000-7000-8000-000000000001";
	tc.step_id = "s1";
	tc.tool = "echo";
	tc.args = json_pack("{s:i}", "x", 1);
	tc.attempt = 2;
	tc.deadline = 1767225600000; /* 2026-01-01T00:00:00Z */
	s = rs_router_frame_call(&tc);
	CHECKF(s && strcmp(s, "{\"args\":{\"x\":1},\"attempt\":2,\"call_id\":\"c-1\","
	                     "\"deadline\":\"2026-01-01T00:00:00.000Z\",\"run_id\":\"0190f1b2-0000-7000-8000-000000000001\","
	                     "\"step_id\":\"s1\",\"tool\":\"echo\",\"type\":\"tool.call\"}") == 0, "%s", s);
	free(s);
	json_decref(tc.args);
}

int
main(void)
{
	test_hello();
	test_result();
	test_garbage();
	test_builders();
	return check_report("test_router_protocol");
}
