/*
 * test_event.c - unit tests of the run event codec (common/rs_event.c):
 * round trip of every event type (encode, decode, re-encode, same bytes),
 * the exact wire format of one event, and rejection of malformed events
 * with the precise error the contract promises.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_fixtures.h"
#include "check.h"
#include "rs_event.h"

/* ---- round trips ---------------------------------------------------- */

/* The direct envelope writer must give the tree encoder's bytes exactly,
 * also into a reused buffer and for a source that needs escaping. */
static void
same_as_tree(const rs_event *ev, const char *direct)
{
	static char *buf;
	static size_t cap;
	char *tree = NULL;
	size_t tlen = 0, n = 0;
	rs_event odd = *ev;

	CHECK(rs_event_encode_tree(ev, &tree, &tlen) == RS_OK);
	if (tree != NULL)
		CHECK_STR(direct, tree);
	CHECK(rs_event_encode_into(ev, &buf, &cap, &n) == RS_OK);
	CHECK(n == tlen && buf != NULL && strcmp(buf, direct) == 0);
	free(tree);
	odd.source = "runstream/\"odd\" \xc3\xa9";
	CHECK(rs_event_encode_tree(&odd, &tree, &tlen) == RS_OK);
	CHECK(rs_event_encode_into(&odd, &buf, &cap, &n) == RS_OK);
	CHECK(tree != NULL && n == tlen && strcmp(buf, tree) == 0);
	free(tree);
}

static void
round_trip(rs_event_type t, int full)
{
	rs_event ev, back;
	char *a = NULL, *b = NULL, err[256] = "";
	size_t alen = 0, blen = 0;

	fx_event(t, full, &ev);
	CHECK(rs_event_encode(&ev, &a, &alen) == RS_OK);
	if (a == NULL)
		goto cleanup;
	CHECK(alen == strlen(a));
	same_as_tree(&ev, a);
	if (rs_event_decode(a, alen, &back, err, sizeof(err)) != RS_OK) {
		fprintf(stderr, "decode %s: %s\n  %s\n", rs_event_type_name(t), err, a);
		CHECK(0);
		goto cleanup;
	}
	CHECK(back.type == t);
	CHECK(back.runseq == ev.runseq);
	CHECK(back.time_ms == ev.time_ms);
	CHECK_STR(back.run_id, ev.run_id);
	CHECK_STR(back.tenant, ev.tenant);
	CHECK_STR(back.traceparent, ev.traceparent);
	CHECK_STR(back.source, full ? "runstream/test" : "runstream/orchestrator");
	CHECK(rs_event_encode(&back, &b, &blen) == RS_OK);
	if (b != NULL)
		CHECK_STR(b, a);
	rs_event_free(&back);
	CHECK(back.source == NULL && back.runseq == 0);
cleanup:
	free(a);
	free(b);
	rs_event_free(&ev);
}

static void
test_round_trips(void)
{
	for (int t = 0; t < RS_EV__COUNT; t++) {
		round_trip((rs_event_type)t, 1);
		round_trip((rs_event_type)t, 0);
	}
}

/* The wire format pinned byte for byte: sorted keys, compact, ms times. */
static void
test_golden(void)
{
	rs_event ev;
	char *out = NULL;

	fx_event(RS_EV_STEP_RETRY_SCHEDULED, 1, &ev);
	CHECK(rs_event_encode(&ev, &out, NULL) == RS_OK);
	CHECK_STR(out,
	    "{\"data\":{\"attempt\":2,\"backoff_ms\":1500,\"due_at\":\"2026-01-02T03:04:07.178Z\","
	    "\"step_id\":\"fetch\",\"timer_id\":\"t-fetch-2\"},"
	    "\"datacontenttype\":\"application/json\","
	    "\"id\":\"0190f5e4-7a3b-7c1d-8e2f-0123456789ab-6\",\"runseq\":6,"
	    "\"source\":\"runstream/test\",\"specversion\":\"1.0\","
	    "\"subject\":\"0190f5e4-7a3b-7c1d-8e2f-0123456789ab\",\"tenant\":\"acme\","
	    "\"time\":\"2026-01-02T03:04:05.678Z\","
	    "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\","
	    "\"type\":\"runstream.step.retry_scheduled\"}");
	free(out);
	rs_event_free(&ev);

	fx_event(RS_EV_STEP_FAILED, 0, &ev);
	CHECK(rs_event_encode(&ev, &out, NULL) == RS_OK);
	CHECK(out != NULL && strstr(out, "\"data\":{\"attempt\":3,\"error\":{\"class\":\"permanent\","
	      "\"code\":\"tool_error\",\"message\":\"device said \\\"no\\\"\",\"retryable\":false},"
	      "\"final\":false,\"step_id\":\"fetch\"}") != NULL);
	CHECK(out != NULL && strstr(out, "traceparent") == NULL);
	free(out);
	rs_event_free(&ev);
}

/* ---- rejection ------------------------------------------------------ */

/* A valid encoded event of type t as a json_t to mutate. */
static json_t *
sample(rs_event_type t)
{
	rs_event ev;
	char *out = NULL;
	json_t *v;

	fx_event(t, 1, &ev);
	if (rs_event_encode(&ev, &out, NULL) != RS_OK)
		abort();
	v = json_loads(out, 0, NULL);
	free(out);
	rs_event_free(&ev);
	return v;
}

/* Decode v (stolen) and expect status want and exactly the message msg. */
static void
expect(json_t *v, rs_status want, const char *msg, int line)
{
	char *text = json_dumps(v, JSON_COMPACT), err[256] = "";
	rs_event ev;
	rs_status st;

	st = rs_event_decode(text, strlen(text), &ev, err, sizeof(err));
	checks++;
	if (st != want || strcmp(err, msg) != 0) {
		failures++;
		fprintf(stderr, "test_event.c:%d: status %s, error \"%s\"\n  want %s, \"%s\"\n",
		        line, rs_status_str(st), err, rs_status_str(want), msg);
	}
	rs_event_free(&ev);
	free(text);
	json_decref(v);
}
#define EXPECT(v, st, msg) expect((v), (st), (msg), __LINE__)

static json_t *
with(rs_event_type t, const char *key, json_t *val)
{
	json_t *v = sample(t);

	json_object_set_new(v, key, val);
	return v;
}

static json_t *
without(rs_event_type t, const char *key)
{
	json_t *v = sample(t);

	json_object_del(v, key);
	return v;
}

static json_t *
with_data(rs_event_type t, const char *key, json_t *val)
{
	json_t *v = sample(t);

	if (val == NULL)
		json_object_del(json_object_get(v, "data"), key);
	else
		json_object_set_new(json_object_get(v, "data"), key, val);
	return v;
}

static void
test_envelope_errors(void)
{
	const rs_event_type T = RS_EV_STEP_COMPLETED; /* runseq 4 */
	char err[256];
	rs_event ev;
	json_t *v;

	CHECK(rs_event_decode("{\"a\":", 5, &ev, err, sizeof(err)) == RS_EINVAL);
	CHECK(strncmp(err, "invalid JSON at line 1", 22) == 0);
	CHECK(rs_event_decode("{\"a\":1,\"a\":2}", 13, &ev, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "duplicate") != NULL);
	EXPECT(json_array(), RS_EINVAL, "event: must be a JSON object");
	EXPECT(with(T, "specversion", json_string("0.3")), RS_EINVAL,
	       "specversion: must be \"1.0\"");
	EXPECT(without(T, "specversion"), RS_EINVAL, "specversion: missing");
	EXPECT(with(T, "type", json_string("com.example.thing")), RS_EINVAL,
	       "type: must be \"runstream.<noun>.<verb>\"");
	EXPECT(with(T, "type", json_string("runstream.step")), RS_EINVAL,
	       "type: must be \"runstream.<noun>.<verb>\"");
	EXPECT(with(T, "type", json_integer(1)), RS_EINVAL, "type: must be a non-empty string");
	EXPECT(with(T, "subject", json_string("not-a-uuid")), RS_EINVAL,
	       "subject: must be a canonical lowercase UUID (the run id)");
	EXPECT(with(T, "subject", json_string("0190F5E4-7A3B-7C1D-8E2F-0123456789AB")), RS_EINVAL,
	       "subject: must be a canonical lowercase UUID (the run id)");
	EXPECT(with(T, "runseq", json_integer(0)), RS_EINVAL,
	       "runseq: must be an integer between 1 and 2147483647");
	EXPECT(with(T, "runseq", json_string("4")), RS_EINVAL,
	       "runseq: must be an integer between 1 and 2147483647");
	EXPECT(with(T, "runseq", json_real(4.0)), RS_EINVAL,
	       "runseq: must be an integer between 1 and 2147483647");
	EXPECT(without(T, "runseq"), RS_EINVAL, "runseq: missing");
	EXPECT(with(T, "id", json_string(FX_RUN_ID "-5")), RS_EINVAL,
	       "id: must be \"<subject>-<runseq>\" (\"" FX_RUN_ID "-4\")");
	EXPECT(with(T, "runseq", json_integer(5)), RS_EINVAL,
	       "id: must be \"<subject>-<runseq>\" (\"" FX_RUN_ID "-5\")");
	EXPECT(with(T, "source", json_string("")), RS_EINVAL, "source: must be a non-empty string");
	EXPECT(with(T, "time", json_string("yesterday")), RS_EINVAL,
	       "time: must be an RFC 3339 timestamp");
	EXPECT(with(T, "datacontenttype", json_string("text/plain")), RS_EINVAL,
	       "datacontenttype: must be \"application/json\"");
	EXPECT(with(T, "tenant", json_string("Acme")), RS_EINVAL,
	       "tenant: must match [a-z0-9_-]{1,64}");
	EXPECT(with(T, "tenant", json_string("acme.corp")), RS_EINVAL,
	       "tenant: must match [a-z0-9_-]{1,64}");
	EXPECT(without(T, "tenant"), RS_EINVAL, "tenant: missing");
	EXPECT(with(T, "traceparent", json_string("00-abc")), RS_EINVAL,
	       "traceparent: must be a W3C traceparent \"00-<32 hex>-<16 hex>-<2 hex>\"");
	EXPECT(without(T, "data"), RS_EINVAL, "data: missing");
	EXPECT(with(T, "data", json_string("x")), RS_EINVAL, "data: must be an object");
	EXPECT(with(T, "Bad_Ext", json_true()), RS_EINVAL,
	       "Bad_Ext: not a valid CloudEvents attribute name (lowercase a-z, 0-9)");

	/* A well-named extension is ignored (forward compatibility). */
	v = with(T, "partitionkey", json_string("x"));
	EXPECT(v, RS_OK, "");

	/* An unknown type of ours: RS_ENOTFOUND with the envelope kept. */
	v = with(T, "type", json_string("runstream.step.paused"));
	{
		char *text = json_dumps(v, JSON_COMPACT);
		err[0] = '\0';
		CHECK(rs_event_decode(text, strlen(text), &ev, err, sizeof(err)) == RS_ENOTFOUND);
		CHECK_STR(err, "type: unknown event type \"runstream.step.paused\"");
		CHECK(ev.type == RS_EV__COUNT && ev.runseq == 4 && ev.source == NULL);
		CHECK_STR(ev.run_id, FX_RUN_ID);
		rs_event_free(&ev);
		free(text);
	}
	json_decref(v);
}

static void
test_data_errors(void)
{
	json_t *v;

	EXPECT(with_data(RS_EV_STEP_COMPLETED, "step_id", NULL), RS_EINVAL,
	       "data.step_id: missing");
	EXPECT(with_data(RS_EV_STEP_COMPLETED, "step_id", json_string("")), RS_EINVAL,
	       "data.step_id: must be a non-empty string");
	EXPECT(with_data(RS_EV_STEP_COMPLETED, "attempt", json_string("1")), RS_EINVAL,
	       "data.attempt: must be an integer >= 1");
	EXPECT(with_data(RS_EV_STEP_COMPLETED, "attempt", json_integer(0)), RS_EINVAL,
	       "data.attempt: must be an integer >= 1");
	EXPECT(with_data(RS_EV_STEP_COMPLETED, "duration_ms", json_integer(-1)), RS_EINVAL,
	       "data.duration_ms: must be an integer >= 0");
	EXPECT(with_data(RS_EV_STEP_COMPLETED, "output", NULL), RS_EINVAL, "data.output: missing");
	EXPECT(with_data(RS_EV_STEP_COMPLETED, "next_step", json_null()), RS_EINVAL,
	       "data.next_step: must be a non-empty string");
	EXPECT(with_data(RS_EV_STEP_STARTED, "kind", json_string("loop")), RS_EINVAL,
	       "data.kind: must be one of tool, sleep, signal, branch, transform, http, llm, "
	       "parallel, foreach, run");
	EXPECT(with_data(RS_EV_LLM_REQUESTED, "messages", json_object()), RS_EINVAL,
	       "data.messages: must be an array");
	EXPECT(with_data(RS_EV_LLM_REQUESTED, "temperature", json_string("hot")), RS_EINVAL,
	       "data.temperature: must be a number");
	EXPECT(with_data(RS_EV_LLM_REQUESTED, "effect_id", json_string("a.b")), RS_EINVAL,
	       "data.effect_id: must be a non-empty string without '.', '*', '>' or whitespace");
	EXPECT(with_data(RS_EV_LLM_DELTA, "index", json_integer(-1)), RS_EINVAL,
	       "data.index: must be an integer >= 0");
	EXPECT(with_data(RS_EV_LLM_MESSAGE, "message", NULL), RS_EINVAL, "data.message: missing");
	EXPECT(with_data(RS_EV_HTTP_COMPLETED, "status", json_integer(42)), RS_EINVAL,
	       "data.status: must be an integer >= 100");
	EXPECT(with_data(RS_EV_HTTP_REQUESTED, "headers", json_array()), RS_EINVAL,
	       "data.headers: must be an object");
	EXPECT(with_data(RS_EV_STEP_FAILED, "retry_after_ms", json_integer(0)), RS_EINVAL,
	       "data.retry_after_ms: must be an integer >= 1");
	EXPECT(with_data(RS_EV_STEP_FAILED, "final", json_integer(1)), RS_EINVAL,
	       "data.final: must be a boolean");
	EXPECT(with_data(RS_EV_RUN_CREATED, "input", json_array()), RS_EINVAL,
	       "data.input: must be an object");
	EXPECT(with_data(RS_EV_RUN_CREATED, "timeout_s", json_integer(0)), RS_EINVAL,
	       "data.timeout_s: must be an integer >= 1");
	EXPECT(with_data(RS_EV_STEP_RETRY_SCHEDULED, "due_at", json_integer(1767323047178)),
	       RS_EINVAL,
	       "data.due_at: must be an RFC 3339 timestamp such as \"2026-01-02T03:04:05.678Z\"");
	EXPECT(with_data(RS_EV_TIMER_FIRED, "purpose", json_string("nap")), RS_EINVAL,
	       "data.purpose: must be one of sleep, retry, step_timeout, tool_timeout, "
	       "signal_timeout, run_timeout");
	EXPECT(with_data(RS_EV_TOOL_REQUESTED, "call_id", json_string("a.b")), RS_EINVAL,
	       "data.call_id: must be a non-empty string without '.', '*', '>' or whitespace");
	EXPECT(with_data(RS_EV_RUN_FAILED, "error", json_string("boom")), RS_EINVAL,
	       "data.error: must be an object");

	v = sample(RS_EV_TOOL_FAILED);
	json_object_set_new(json_object_get(json_object_get(v, "data"), "error"), "class",
	                    json_string("fatal"));
	EXPECT(v, RS_EINVAL, "data.error.class: must be one of transient, permanent, timeout");
	v = sample(RS_EV_RUN_FAILED);
	json_object_del(json_object_get(json_object_get(v, "data"), "error"), "code");
	EXPECT(v, RS_EINVAL, "data.error.code: missing");
	v = sample(RS_EV_STEP_FAILED);
	json_object_set_new(json_object_get(json_object_get(v, "data"), "error"), "retryable",
	                    json_string("no"));
	EXPECT(v, RS_EINVAL, "data.error.retryable: must be a boolean");

	/* Unknown data fields are ignored: v1 allows additive changes. */
	EXPECT(with_data(RS_EV_STEP_COMPLETED, "cost_usd", json_real(0.25)), RS_OK, "");
	/* Offsets in times are accepted and normalized. */
	EXPECT(with_data(RS_EV_TIMER_FIRED, "due_at", json_string("2026-01-02T04:05:05+01:00")),
	       RS_OK, "");
}

/* Encode refuses structs that would not decode. */
static void
test_encode_rejects(void)
{
	rs_event ev;
	char *out = NULL;

	fx_event(RS_EV_STEP_STARTED, 1, &ev);
	ev.runseq = 0;
	CHECK(rs_event_encode(&ev, &out, NULL) == RS_EINVAL && out == NULL);
	ev.runseq = 1;
	snprintf(ev.tenant, sizeof(ev.tenant), "Acme");
	CHECK(rs_event_encode(&ev, &out, NULL) == RS_EINVAL);
	snprintf(ev.tenant, sizeof(ev.tenant), "acme");
	ev.d.step_started.attempt = 0;
	CHECK(rs_event_encode(&ev, &out, NULL) == RS_EINVAL);
	ev.d.step_started.attempt = 1;
	free(ev.d.step_started.step_id);
	ev.d.step_started.step_id = NULL;
	CHECK(rs_event_encode(&ev, &out, NULL) == RS_EINVAL);
	CHECK(rs_ev_step_started_encode(&ev.d.step_started) == NULL);
	rs_event_free(&ev);

	fx_event(RS_EV_RUN_FAILED, 0, &ev);
	ev.d.run_failed.error.cls = (rs_errclass)7;
	CHECK(rs_event_encode(&ev, &out, NULL) == RS_EINVAL);
	rs_event_free(&ev);
}

/* data written directly (rs_event_encode_into) against the jansson tree
 * (rs_event_encode_tree): same status, and the same bytes when both
 * succeed, for values chosen to hit every branch of the direct writer. */
static void
both_ways(const rs_event *ev, rs_status want)
{
	static char *buf;
	static size_t cap;
	char *tree = NULL;
	size_t tlen = 0, n = 0;
	rs_status a = rs_event_encode_tree(ev, &tree, &tlen);
	rs_status b = rs_event_encode_into(ev, &buf, &cap, &n);

	CHECK_INT(a, want);
	CHECK_INT(b, want);
	if (a == RS_OK && b == RS_OK) {
		CHECK(n == tlen);
		CHECK_STR(buf, tree);
	}
	free(tree);
}

static void
test_direct_data(void)
{
	rs_event ev;
	json_t *o = json_object(), *arr = json_array();
	char key[8];

	/* Keys: escapes, non-ASCII, empty, prefixes of each other, an
	 * embedded NUL; more than 16 of them (the writer's heap path). */
	json_object_set_new(o, "a\"b", json_integer(-7));
	json_object_set_new(o, "line\nfeed", json_string("tab\there"));
	json_object_set_new(o, "\xc3\xa9t\xc3\xa9", json_string("\xe2\x80\xa8 sep"));
	json_object_set_new(o, "", json_null());
	json_object_set_new(o, "ab", json_true());
	json_object_set_new(o, "a", json_false());
	json_object_set_new(o, "abc", json_real(2.5));
	json_object_setn_new(o, "a\0b", 3, json_string("nul key"));
	json_object_set_new(o, "url", json_string("https://example.com/x?y=\"1\"\\"));
	for (int i = 0; i < 12; i++) {
		snprintf(key, sizeof(key), "k%02d", 11 - i);
		json_object_set_new(o, key, json_integer(i));
	}
	json_array_append_new(arr, json_real(1e300));
	json_array_append_new(arr, json_real(-0.0));
	json_array_append_new(arr, json_integer(INT64_MIN));
	json_array_append_new(arr, json_pack("{s:[]}", "empty"));
	json_array_append_new(arr, json_object());
	json_array_append_new(arr, json_string("\x01\x1f\x7f"));
	json_object_set_new(o, "nested", arr);

	fx_event(RS_EV_TOOL_COMPLETED, 1, &ev);
	json_decref(ev.d.tool_completed.output);
	ev.d.tool_completed.output = o;
	both_ways(&ev, RS_OK);
	json_decref(ev.d.tool_completed.output);
	ev.d.tool_completed.output = json_string("just a \"string\"");
	both_ways(&ev, RS_OK);
	json_decref(ev.d.tool_completed.output);
	ev.d.tool_completed.output = json_real(0.1);
	both_ways(&ev, RS_OK);
	rs_event_free(&ev);

	/* C strings of the struct: plain, escaped, non-ASCII, invalid UTF-8. */
	fx_event(RS_EV_STEP_FAILED, 1, &ev);
	free(ev.d.step_failed.error.message);
	ev.d.step_failed.error.message = strdup("said \"no\"\tthen \x01 \xc3\xa9");
	both_ways(&ev, RS_OK);
	free(ev.d.step_failed.step_id);
	ev.d.step_failed.step_id = strdup("\xc3\xa9tape");
	both_ways(&ev, RS_OK);
	free(ev.d.step_failed.error.message);
	ev.d.step_failed.error.message = strdup("bad \xff byte");
	both_ways(&ev, RS_EINVAL);
	free(ev.d.step_failed.error.message);
	ev.d.step_failed.error.message = strdup("");
	both_ways(&ev, RS_OK);
	free(ev.d.step_failed.error.code);
	ev.d.step_failed.error.code = strdup("");
	both_ways(&ev, RS_EINVAL);
	rs_event_free(&ev);

	/* Required members missing or of the wrong kind. */
	fx_event(RS_EV_TOOL_REQUESTED, 1, &ev);
	json_decref(ev.d.tool_requested.args);
	ev.d.tool_requested.args = json_array();
	both_ways(&ev, RS_EINVAL);
	rs_event_free(&ev);
	fx_event(RS_EV_TIMER_FIRED, 1, &ev);
	ev.d.timer_fired.purpose = (rs_timer_purpose)99;
	both_ways(&ev, RS_EINVAL);
	ev.d.timer_fired.purpose = RS_TIMER_SLEEP;
	ev.d.timer_fired.due_at = -1;
	both_ways(&ev, RS_EINVAL);
	rs_event_free(&ev);
}

/* The per-type functions on their own, and the small helpers. */
static void
test_helpers(void)
{
	rs_ev_tool_dispatched d = { 0 };
	rs_event_type t;
	char buf[128], err[128];
	json_t *v;

	v = json_pack("{s:s, s:s, s:i}", "call_id", "c1", "device_id", "d1", "extra", 1);
	CHECK(rs_ev_tool_dispatched_decode(v, &d, err, sizeof(err)) == RS_OK);
	CHECK_STR(d.call_id, "c1");
	CHECK(d.router == NULL);
	rs_ev_tool_dispatched_free(&d);
	CHECK(d.call_id == NULL);
	json_object_del(v, "device_id");
	CHECK(rs_ev_tool_dispatched_decode(v, &d, err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "data.device_id: missing");
	CHECK(d.call_id == NULL);
	json_decref(v);

	CHECK(rs_event_type_parse("run.created", &t) == RS_OK && t == RS_EV_RUN_CREATED);
	CHECK(rs_event_type_parse("runstream.run.timed_out", &t) == RS_OK &&
	      t == RS_EV_RUN_TIMED_OUT);
	CHECK(rs_event_type_parse("run.paused", &t) != RS_OK);
	CHECK_STR(rs_event_type_name(RS_EV_STEP_RETRY_SCHEDULED), "step.retry_scheduled");
	for (int i = 0; i < RS_EV__COUNT; i++)
		CHECK(rs_event_type_terminal((rs_event_type)i) ==
		      (i == RS_EV_RUN_COMPLETED || i == RS_EV_RUN_FAILED ||
		       i == RS_EV_RUN_CANCELLED || i == RS_EV_RUN_TIMED_OUT));
	rs_event_subject("acme", FX_RUN_ID, buf, sizeof(buf));
	CHECK_STR(buf, "runs.acme." FX_RUN_ID);
	rs_event_id(FX_RUN_ID, 12, buf, sizeof(buf));
	CHECK_STR(buf, FX_RUN_ID "-12");
	CHECK_STR(rs_timer_purpose_name(RS_TIMER_SIGNAL_TIMEOUT), "signal_timeout");
	CHECK_STR(rs_errclass_name(RS_ERRCLASS_TIMEOUT), "timeout");
	CHECK(rs_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
	CHECK(!rs_traceparent_valid("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
	CHECK(!rs_traceparent_valid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
}

int
main(void)
{
	json_object_seed(1);
	test_round_trips();
	test_golden();
	test_envelope_errors();
	test_data_errors();
	test_encode_rejects();
	test_direct_data();
	test_helpers();
	return check_report("test_event");
}
