/*
 * fuzz_router_frame.c - the device WebSocket protocol
 * (services/tool-router/protocol.c): every text frame a device sends,
 * before and after `hello`, goes through rs_router_frame_parse.
 *
 * Properties: a rejected frame gets a known error code and a message, and
 * the error frame built from them is valid JSON; an accepted hello has a
 * device id, a token and a tools array whose every name the name list
 * finds; an accepted tool.result has a call id and exactly one of output
 * and error; the welcome frame for an accepted device id is valid JSON.
 */
#include "fuzz.h"
#include "protocol.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

static void
valid_json(char *frame)
{
	json_error_t je;
	json_t *v;

	FUZZ_CHECK(frame != NULL);
	v = json_loads(frame, 0, &je);
	if (v == NULL)
		fprintf(stderr, "frame is not JSON: %s\n%s\n", je.text, frame);
	FUZZ_CHECK(json_is_object(v));
	json_decref(v);
	free(frame);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char code[64] = "", msg[512] = "", *names;
	rs_router_frame f;
	size_t i;
	json_t *t;

	if (rs_router_frame_parse((const char *)data, size, &f, code, sizeof(code), msg,
	                          sizeof(msg)) != RS_OK) {
		FUZZ_CHECK(strcmp(code, "malformed_json") == 0 || strcmp(code, "invalid_frame") == 0 ||
		           strcmp(code, "unknown_type") == 0);
		FUZZ_CHECK(msg[0] != '\0' && f.root == NULL);
		valid_json(rs_router_frame_error(code, msg));
		return 0;
	}
	FUZZ_CHECK(f.root != NULL);
	if (f.type == RS_FRAME_HELLO) {
		FUZZ_CHECK(f.device_id != NULL && f.token != NULL && json_is_array(f.tools));
		FUZZ_CHECK(json_array_size(f.tools) <= RS_ROUTER_MAX_TOOLS);
		names = rs_router_tool_names(f.tools);
		FUZZ_CHECK(names != NULL);
		json_array_foreach(f.tools, i, t)
			FUZZ_CHECK(rs_router_has_tool(names, json_string_value(json_object_get(t, "name"))));
		free(names);
		valid_json(rs_router_frame_welcome(f.device_id, "tenant", 15));
	} else {
		FUZZ_CHECK(f.type == RS_FRAME_RESULT && f.call_id != NULL);
		FUZZ_CHECK((f.output != NULL) != (f.error != NULL));
		valid_json(rs_router_frame_cancel(f.call_id));
	}
	rs_router_frame_free(&f);
	return 0;
}
