/*
 * test_cmd.c - unit tests of the internal message codecs (common/rs_cmd.c):
 * every command type and both tool-call messages round trip byte for byte,
 * the de-duplication ids are as documented, and malformed messages are
 * rejected with errors naming the field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_cmd.h"
#include "check.h"

#define RUN_ID "0190f5e4-7a3b-7c1d-8e2f-0123456789ab"

static char *
s(const char *v)
{
	return strdup(v);
}

/* A command of type t; full sets the optional members as well. */
static void
fx_cmd(rs_cmd_type t, int full, rs_cmd *c)
{
	memset(c, 0, sizeof(*c));
	c->type = t;
	snprintf(c->run_id, sizeof(c->run_id), RUN_ID);
	snprintf(c->tenant, sizeof(c->tenant), "acme");
	if (full)
		snprintf(c->traceparent, sizeof(c->traceparent),
		         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
	switch (t) {
	case RS_CMD_RUN_START:
		c->agent = s("summarize");
		c->version = full ? s("3") : NULL;
		c->input = json_pack("{s:s}", "url", "https://example.com");
		c->idempotency_key = full ? s("req-42") : NULL;
		if (full) {
			c->forked_from = s("0190f5e4-7a3b-7c1d-8e2f-0000000000aa");
			c->from_seq = 4;
			c->reuse = json_pack("[{s:s, s:i, s:n}]", "step_id", "a", "seq", 3, "output");
			c->tenant_limit = 20;
			c->schedule_id = s("nightly");
			c->schedule_tick = 1767323040000LL;
			c->parent_run_id = s("0190f5d2-7c4e-7a3b-8c1d-aaaaaaaaaaaa");
			c->root_run_id = s("0190f5d2-7c4e-7a3b-8c1d-bbbbbbbbbbbb");
			c->scope = s("fan/a");
			c->parent_step_id = s("fan");
			c->tags = json_pack("{s:s}", "team", "blue");
		}
		break;
	case RS_CMD_TOOL_RESULT:
		c->call_id = s(RUN_ID "-fetch-1");
		c->device_id = full ? s("laptop-7") : NULL;
		if (full) {
			c->has_error = 1;
			c->error.code = s("tool_error");
			c->error.message = s("no route");
			c->error.cls = RS_ERRCLASS_TRANSIENT;
			c->error.retryable = 1;
		} else {
			c->output = json_pack("{s:i}", "status", 200);
		}
		break;
	case RS_CMD_TOOL_DELIVERED:
		c->call_id = s(RUN_ID "-fetch-1");
		c->device_id = s("laptop-7");
		c->router = full ? s("router-2") : NULL;
		break;
	case RS_CMD_SIGNAL:
		c->signal_id = s("sig-1");
		c->name = s("approve");
		c->payload = full ? json_pack("{s:b}", "ok", 1) : NULL; /* NULL: null */
		break;
	case RS_CMD_CANCEL:
		c->reason = full ? s("user asked") : NULL;
		break;
	case RS_CMD_TIMER_FIRE:
		c->timer_id = s("t-1");
		c->purpose = full ? RS_TIMER_TOOL_TIMEOUT : RS_TIMER_SLEEP;
		c->step_id = full ? s("fetch") : NULL;
		c->attempt = full ? 2 : 0;
		c->due_at = 1767323045678LL;
		break;
	case RS_CMD_EFFECT_RESULT:
		c->effect_id = s(RUN_ID "-ask-1-1-llm1");
		if (full) {
			c->has_error = 1;
			c->error.code = s("http_429");
			c->error.message = s("rate limited");
			c->error.cls = RS_ERRCLASS_TRANSIENT;
			c->error.retryable = 1;
			c->retry_after_ms = 1500;
		} else {
			c->output = json_pack("{s:{s:s, s:s}}", "message", "role", "assistant",
			                      "content", "hi");
		}
		break;
	case RS_CMD_LLM_CHUNK:
		c->effect_id = s(RUN_ID "-ask-1-1-llm1");
		c->index = full ? 7 : 0;
		c->text = s(full ? "Hel" : "");
		break;
	case RS_CMD_RUN_CONTINUE:
		c->after_seq = full ? 12 : 0;
		break;
	case RS_CMD_CHILD_DONE:
		c->child_run_id = s("0190f5d2-7c4e-7a3b-8c1d-aaaaaaaaaaaa");
		c->child_status = s(full ? "failed" : "completed");
		c->output = full ? json_null() : json_pack("{s:i}", "n", 2);
		c->child_error = full ? json_pack("{s:s, s:s}", "code", "boom", "message", "x") : NULL;
		break;
	default:
		break;
	}
}

static void
cmd_round_trip(rs_cmd_type t, int full)
{
	rs_cmd c, back;
	char *a = NULL, *b = NULL, err[256] = "";
	size_t alen = 0, blen = 0;

	fx_cmd(t, full, &c);
	CHECK(rs_cmd_encode(&c, &a, &alen) == RS_OK);
	if (a == NULL)
		goto cleanup;
	if (rs_cmd_decode(a, alen, &back, err, sizeof(err)) != RS_OK) {
		fprintf(stderr, "decode %s: %s\n  %s\n", rs_cmd_type_name(t), err, a);
		CHECK(0);
		goto cleanup;
	}
	CHECK(back.type == t);
	CHECK_STR(back.run_id, RUN_ID);
	CHECK_STR(back.traceparent, c.traceparent);
	CHECK(rs_cmd_encode(&back, &b, &blen) == RS_OK);
	if (b != NULL)
		CHECK_STR(b, a);
	rs_cmd_free(&back);
cleanup:
	free(a);
	free(b);
	rs_cmd_free(&c);
}

static void
expect_cmd(const char *text, rs_status want, const char *msg, int line)
{
	char err[256] = "";
	rs_cmd c;
	rs_status st = rs_cmd_decode(text, strlen(text), &c, err, sizeof(err));

	checks++;
	if (st != want || strcmp(err, msg) != 0) {
		failures++;
		fprintf(stderr, "test_cmd.c:%d: status %s, error \"%s\"\n  want %s, \"%s\"\n",
		        line, rs_status_str(st), err, rs_status_str(want), msg);
	}
	rs_cmd_free(&c);
}
#define EXPECT_CMD(text, st, msg) expect_cmd((text), (st), (msg), __LINE__)

#define HEAD "\"run_id\":\"" RUN_ID "\",\"tenant\":\"acme\""

static void
test_cmd_errors(void)
{
	EXPECT_CMD("[1]", RS_EINVAL, "command: must be a JSON object");
	EXPECT_CMD("{\"run_id\":", RS_EINVAL,
	           "invalid JSON at line 1, column 10 (position 10): unexpected token near end of file");
	EXPECT_CMD("{" HEAD "}", RS_EINVAL, "type: missing");
	EXPECT_CMD("{\"type\":\"run.pause\"," HEAD "}", RS_ENOTFOUND,
	           "type: unknown command type \"run.pause\"");
	EXPECT_CMD("{\"type\":\"cancel\",\"tenant\":\"acme\"}", RS_EINVAL, "run_id: missing");
	EXPECT_CMD("{\"type\":\"cancel\",\"run_id\":\"x\",\"tenant\":\"acme\"}", RS_EINVAL,
	           "run_id: must be a canonical lowercase UUID");
	EXPECT_CMD("{\"type\":\"cancel\",\"run_id\":\"" RUN_ID "\",\"tenant\":\"ACME\"}",
	           RS_EINVAL, "tenant: must match [a-z0-9_-]{1,64}");
	EXPECT_CMD("{\"type\":\"cancel\"," HEAD ",\"reason\":7}", RS_EINVAL,
	           "reason: must be a non-empty string");
	EXPECT_CMD("{\"type\":\"cancel\"," HEAD ",\"future\":1}", RS_OK, "");
	EXPECT_CMD("{\"type\":\"run.start\"," HEAD ",\"input\":{}}", RS_EINVAL, "agent: missing");
	EXPECT_CMD("{\"type\":\"run.start\"," HEAD ",\"agent\":\"a\",\"input\":[]}", RS_EINVAL,
	           "input: must be an object");
	EXPECT_CMD("{\"type\":\"run.start\"," HEAD ",\"agent\":\"a\",\"input\":{}}", RS_OK, "");
	EXPECT_CMD("{\"type\":\"tool.result\"," HEAD ",\"call_id\":\"c\"}", RS_EINVAL,
	           "output, error: exactly one of them must be present");
	EXPECT_CMD("{\"type\":\"tool.result\"," HEAD ",\"call_id\":\"c\",\"output\":1,"
	           "\"error\":{}}", RS_EINVAL,
	           "output, error: exactly one of them must be present");
	EXPECT_CMD("{\"type\":\"tool.result\"," HEAD ",\"call_id\":\"c\",\"error\":"
	           "{\"code\":\"x\",\"message\":\"\",\"retryable\":true}}", RS_EINVAL,
	           "error.class: missing");
	EXPECT_CMD("{\"type\":\"tool.result\"," HEAD ",\"call_id\":\"c\",\"output\":null}",
	           RS_OK, "");
	EXPECT_CMD("{\"type\":\"tool.delivered\"," HEAD ",\"call_id\":\"c\"}", RS_EINVAL,
	           "device_id: missing");
	EXPECT_CMD("{\"type\":\"signal\"," HEAD ",\"signal_id\":\"s\",\"name\":\"n\"}", RS_EINVAL,
	           "payload: missing");
	EXPECT_CMD("{\"type\":\"timer.fire\"," HEAD ",\"timer_id\":\"t\",\"purpose\":\"nap\","
	           "\"due_at\":\"2026-01-02T03:04:05Z\"}", RS_EINVAL,
	           "purpose: must be one of sleep, retry, step_timeout, tool_timeout, "
	           "signal_timeout, run_timeout");
	EXPECT_CMD("{\"type\":\"timer.fire\"," HEAD ",\"timer_id\":\"t\",\"purpose\":\"retry\","
	           "\"attempt\":0,\"due_at\":\"2026-01-02T03:04:05Z\"}", RS_EINVAL,
	           "attempt: must be an integer >= 1");
	EXPECT_CMD("{\"type\":\"timer.fire\"," HEAD ",\"timer_id\":\"t\",\"purpose\":\"retry\"}",
	           RS_EINVAL, "due_at: missing");
	EXPECT_CMD("{\"type\":\"effect.result\"," HEAD ",\"effect_id\":\"e\"}", RS_EINVAL,
	           "output, error: exactly one of them must be present");
	EXPECT_CMD("{\"type\":\"effect.result\"," HEAD ",\"output\":{}}", RS_EINVAL,
	           "effect_id: missing");
	EXPECT_CMD("{\"type\":\"effect.result\"," HEAD ",\"effect_id\":\"e\",\"output\":1,"
	           "\"retry_after_ms\":0}", RS_EINVAL, "retry_after_ms: must be an integer >= 1");
	EXPECT_CMD("{\"type\":\"llm.chunk\"," HEAD ",\"effect_id\":\"e\",\"index\":-1,"
	           "\"text\":\"x\"}", RS_EINVAL, "index: must be an integer >= 0");
	EXPECT_CMD("{\"type\":\"llm.chunk\"," HEAD ",\"effect_id\":\"e\",\"index\":0}",
	           RS_EINVAL, "text: missing");
}

static void
test_msg_ids(void)
{
	const char *want[RS_CMD__COUNT] = {
		"start-" RUN_ID, "result-" RUN_ID "-fetch-1",
		"delivered-" RUN_ID "-fetch-1-laptop-7", "signal-sig-1", "cancel-" RUN_ID, "timer-t-1",
		"result-" RUN_ID "-ask-1-1-llm1", "chunk-" RUN_ID "-ask-1-1-llm1-7",
		"continue-" RUN_ID "-12", "admit-" RUN_ID, "childdone-0190f5d2-7c4e-7a3b-8c1d-aaaaaaaaaaaa",
	};
	char buf[160];
	rs_cmd c;
	rs_cmd_type t;

	for (int i = 0; i < RS_CMD__COUNT; i++) {
		fx_cmd((rs_cmd_type)i, 1, &c);
		rs_cmd_msg_id(&c, buf, sizeof(buf));
		CHECK_STR(buf, want[i]);
		CHECK(rs_cmd_type_parse(rs_cmd_type_name((rs_cmd_type)i), &t) == RS_OK && (int)t == i);
		rs_cmd_free(&c);
	}
	rs_cmd_subject("acme", RUN_ID, buf, sizeof(buf));
	CHECK_STR(buf, "cmd.acme." RUN_ID);

	/* Encode refuses what decode would reject. */
	fx_cmd(RS_CMD_TOOL_DELIVERED, 0, &c);
	free(c.device_id);
	c.device_id = NULL;
	{
		char *out = NULL;
		CHECK(rs_cmd_encode(&c, &out, NULL) == RS_EINVAL && out == NULL);
	}
	rs_cmd_free(&c);
}

/* ---- tool calls ----------------------------------------------------- */

static void
fx_toolcall(int cancel, int full, rs_toolcall *t)
{
	memset(t, 0, sizeof(*t));
	t->cancel = cancel;
	t->call_id = s(RUN_ID "-fetch-1");
	t->run_id = s(RUN_ID);
	t->tenant = s("acme");
	if (cancel)
		return;
	t->step_id = s("fetch");
	t->tool = s("http.get");
	t->args = json_pack("{s:s}", "url", "https://example.com");
	t->attempt = 1;
	t->deadline = 1767323045678LL;
	t->device = full ? s("laptop-7") : NULL;
	t->capability = full ? s("net") : NULL;
}

static void
toolcall_round_trip(int cancel, int full)
{
	rs_toolcall t, back;
	char *a = NULL, *b = NULL, err[256] = "";
	size_t alen = 0, blen = 0;

	fx_toolcall(cancel, full, &t);
	CHECK(rs_toolcall_encode(&t, &a, &alen) == RS_OK);
	if (a == NULL)
		goto cleanup;
	if (rs_toolcall_decode(a, alen, &back, err, sizeof(err)) != RS_OK) {
		fprintf(stderr, "decode toolcall: %s\n  %s\n", err, a);
		CHECK(0);
		goto cleanup;
	}
	CHECK(back.cancel == cancel);
	CHECK(rs_toolcall_encode(&back, &b, &blen) == RS_OK);
	if (b != NULL)
		CHECK_STR(b, a);
	rs_toolcall_free(&back);
cleanup:
	free(a);
	free(b);
	rs_toolcall_free(&t);
}

static void
expect_tc(const char *text, rs_status want, const char *msg, int line)
{
	char err[256] = "";
	rs_toolcall t;
	rs_status st = rs_toolcall_decode(text, strlen(text), &t, err, sizeof(err));

	checks++;
	if (st != want || strcmp(err, msg) != 0) {
		failures++;
		fprintf(stderr, "test_cmd.c:%d: status %s, error \"%s\"\n  want %s, \"%s\"\n",
		        line, rs_status_str(st), err, rs_status_str(want), msg);
	}
	rs_toolcall_free(&t);
}
#define EXPECT_TC(text, st, msg) expect_tc((text), (st), (msg), __LINE__)

static void
test_toolcalls(void)
{
	char *out = NULL;
	rs_toolcall t;

	toolcall_round_trip(0, 1);
	toolcall_round_trip(0, 0);
	toolcall_round_trip(1, 0);

	fx_toolcall(0, 0, &t);
	CHECK(rs_toolcall_encode(&t, &out, NULL) == RS_OK);
	CHECK_STR(out, "{\"args\":{\"url\":\"https://example.com\"},\"attempt\":1,"
	          "\"call_id\":\"" RUN_ID "-fetch-1\",\"deadline\":\"2026-01-02T03:04:05.678Z\","
	          "\"run_id\":\"" RUN_ID "\",\"step_id\":\"fetch\",\"tenant\":\"acme\","
	          "\"tool\":\"http.get\",\"type\":\"tool.call\"}");
	free(out);
	rs_toolcall_free(&t);

	EXPECT_TC("{\"call_id\":\"c\"}", RS_EINVAL, "type: missing");
	EXPECT_TC("{\"type\":\"tool.run\"}", RS_EINVAL,
	          "type: must be \"tool.call\" or \"tool.cancel\"");
	EXPECT_TC("{\"type\":\"tool.cancel\",\"call_id\":\"c\"," HEAD "}", RS_OK, "");
	EXPECT_TC("{\"type\":\"tool.cancel\",\"call_id\":\"c d\"," HEAD "}", RS_EINVAL,
	          "call_id: must be a non-empty string without '.', '*', '>' or whitespace");
	EXPECT_TC("{\"type\":\"tool.cancel\",\"call_id\":\"c\",\"run_id\":\"r\","
	          "\"tenant\":\"acme\"}", RS_EINVAL, "run_id: must be a canonical lowercase UUID");
	EXPECT_TC("{\"type\":\"tool.call\",\"call_id\":\"c\"," HEAD ",\"step_id\":\"s\","
	          "\"tool\":\"t\",\"args\":{},\"attempt\":1}", RS_EINVAL, "deadline: missing");
	EXPECT_TC("{\"type\":\"tool.call\",\"call_id\":\"c\"," HEAD ",\"step_id\":\"s\","
	          "\"tool\":\"t\",\"args\":\"x\",\"attempt\":1,\"deadline\":\"2026-01-02T03:04:05Z\"}",
	          RS_EINVAL, "args: must be an object");
}

int
main(void)
{
	json_object_seed(1);
	for (int t = 0; t < RS_CMD__COUNT; t++) {
		cmd_round_trip((rs_cmd_type)t, 1);
		cmd_round_trip((rs_cmd_type)t, 0);
	}
	test_cmd_errors();
	test_msg_ids();
	test_toolcalls();
	return check_report("test_cmd");
}
