/*
 * test_timeline.c - the pure timeline module: deltas, rows, marks,
 * summaries, step paths and their divergence, and the effects fold of
 * --at (http requests, model turns), on hand-built events.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "rs_effects.h"
#include "history.h"
#include "rs_json.h"
#include "timeline.h"
#include "runctl.h"


static void
test_delta(void)
{
	char b[32];

	rs_ctl_tl_format_delta(0, b, sizeof(b));
	CHECK_STR(b, "+0.000s");
	rs_ctl_tl_format_delta(1234, b, sizeof(b));
	CHECK_STR(b, "+1.234s");
	rs_ctl_tl_format_delta(123456, b, sizeof(b));
	CHECK_STR(b, "+2m03.456s");
	rs_ctl_tl_format_delta(5 * 3600000 + 2 * 60000 + 3000, b, sizeof(b));
	CHECK_STR(b, "+5h02m03s");
	rs_ctl_tl_format_delta(-1500, b, sizeof(b));
	CHECK_STR(b, "-1.500s");
}

static void
base(rs_event *ev, rs_event_type t, uint64_t seq, int64_t ms)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = t;
	ev->runseq = seq;
	ev->time_ms = ms;
	strcpy(ev->run_id, "0190f5e4-7a3b-7c1d-8e2f-000000000009");
	strcpy(ev->tenant, "acme");
}

static void
test_rows(void)
{
	rs_event ev;
	tl_row r;
	char line[512];

	base(&ev, RS_EV_STEP_FAILED, 7, 1767323046500LL);
	ev.d.step_failed.step_id = "sync";
	ev.d.step_failed.attempt = 2;
	ev.d.step_failed.error.code = "upstream_503";
	ev.d.step_failed.error.message = "CRM down";
	ev.d.step_failed.error.cls = RS_ERRCLASS_TRANSIENT;
	ev.d.step_failed.error.retryable = 1;
	rs_ctl_tl_row_of(&ev, 1767323045000LL, &r);
	CHECK(r.mark == TL_FAIL);
	CHECK(r.attempt == 2);
	CHECK_STR(r.summary, "upstream_503: CRM down (transient, retryable)");
	rs_ctl_tl_format_row(&r, "<", ">", line, sizeof(line));
	CHECK_STR(line, "<!   7  2026-01-02T03:04:06.500Z  +1.500s      step.failed           sync"
	          "            2  upstream_503: CRM down (transient, retryable)>");

	base(&ev, RS_EV_TIMER_SCHEDULED, 3, 1767323045000LL);
	ev.d.timer_scheduled.purpose = RS_TIMER_SLEEP;
	ev.d.timer_scheduled.step_id = "wait";
	ev.d.timer_scheduled.attempt = 1;
	ev.d.timer_scheduled.due_at = 1767323050000LL;
	rs_ctl_tl_row_of(&ev, 1767323045000LL, &r);
	CHECK(r.mark == TL_WAIT);
	CHECK_STR(r.summary, "sleep due in 5.000s");

	/* Long JSON is cut, deterministically. */
	base(&ev, RS_EV_RUN_COMPLETED, 9, 1767323045000LL);
	ev.d.run_completed.output = json_pack("{s:s}", "text", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	rs_ctl_tl_row_of(&ev, 1767323045000LL, &r);
	CHECK(r.mark == TL_DONE);
	CHECK(strlen(r.summary) == strlen("output=") + TL_JSON_MAX);
	CHECK(strstr(r.summary, "...") != NULL);
	json_decref(ev.d.run_completed.output);
}

static void
test_summary_and_path(void)
{
	rs_event ev[4];
	tl_summary s;
	tl_step a[4], b[4];
	char buf[256];
	json_t *o1 = json_integer(1), *o2 = json_integer(2);

	base(&ev[0], RS_EV_RUN_CREATED, 1, 1000);
	ev[0].d.run_created.agent = "demo";
	ev[0].d.run_created.version = "0123456789abcdef";
	base(&ev[1], RS_EV_STEP_COMPLETED, 2, 1500);
	ev[1].d.step_completed.step_id = "x";
	ev[1].d.step_completed.attempt = 1;
	ev[1].d.step_completed.output = o1;
	base(&ev[2], RS_EV_STEP_RETRY_SCHEDULED, 3, 1600);
	base(&ev[3], RS_EV_RUN_COMPLETED, 4, 3100);
	rs_ctl_tl_summary_init(&s);
	for (int i = 0; i < 4; i++)
		rs_ctl_tl_summary_add(&s, &ev[i]);
	rs_ctl_tl_summary_format(&s, buf, sizeof(buf));
	CHECK_STR(buf, "completed after 2.100s: 4 events, 1 step completed, 1 retry");
	CHECK_STR(s.agent, "demo");

	CHECK(rs_ctl_tl_step_path(ev, 4, a, 4) == 1);
	CHECK(rs_ctl_tl_step_diverge(a, 1, a, 1) == -1);
	memcpy(b, a, sizeof(a));
	b[0].output = o2;
	CHECK(rs_ctl_tl_step_diverge(a, 1, b, 1) == 0);
	CHECK(rs_ctl_tl_step_diverge(a, 1, b, 0) == 0);
	rs_ctl_tl_step_format(&a[0], buf, sizeof(buf));
	CHECK_STR(buf, "x#1 ok 1");
	json_decref(o1);
	json_decref(o2);
}

/* Rows and summary of http and llm events: status codes, turns, text
 * lengths in characters, executor errors. */
static void
test_effect_rows(void)
{
	rs_event ev;
	tl_row r;
	tl_summary s;
	char buf[256];
	json_t *msg;

	rs_ctl_tl_summary_init(&s);
	base(&ev, RS_EV_HTTP_REQUESTED, 4, 1000);
	ev.d.http_requested.step_id = "hook";
	ev.d.http_requested.attempt = 2;
	ev.d.http_requested.method = "PUT";
	ev.d.http_requested.url = "https://x.example/a";
	ev.d.http_requested.timeout_ms = 2500;
	rs_ctl_tl_row_of(&ev, 0, &r);
	rs_ctl_tl_summary_add(&s, &ev);
	CHECK(r.mark == TL_WAIT);
	CHECK(r.attempt == 2 && strcmp(r.step, "hook") == 0);
	CHECK_STR(r.summary, "PUT https://x.example/a timeout=2.500s");

	base(&ev, RS_EV_HTTP_COMPLETED, 5, 1200);
	ev.d.http_completed.step_id = "hook";
	ev.d.http_completed.attempt = 2;
	ev.d.http_completed.status = 503;
	ev.d.http_completed.duration_ms = 7;
	rs_ctl_tl_row_of(&ev, 0, &r);
	CHECK(r.mark == TL_NONE);
	CHECK_STR(r.summary, "HTTP 503 in 7ms body=null");

	base(&ev, RS_EV_STEP_FAILED, 6, 1200);
	ev.d.step_failed.step_id = "hook";
	ev.d.step_failed.attempt = 2;
	ev.d.step_failed.error.code = "connect_failed";
	ev.d.step_failed.error.message = "refused";
	ev.d.step_failed.error.cls = RS_ERRCLASS_TRANSIENT;
	ev.d.step_failed.error.retryable = 1;
	ev.d.step_failed.effect_id = "e-1";
	ev.d.step_failed.retry_after_ms = 1500;
	ev.d.step_failed.final = 1;
	rs_ctl_tl_row_of(&ev, 0, &r);
	CHECK_STR(r.summary, "connect_failed: refused (transient, retryable) "
	          "[executor, Retry-After 1.500s] final");

	base(&ev, RS_EV_LLM_DELTA, 7, 1300);
	ev.d.llm_delta.step_id = "ask";
	ev.d.llm_delta.turn = 3;
	ev.d.llm_delta.index = 4;
	ev.d.llm_delta.text = "caf\xc3\xa9 \"ok\"";
	rs_ctl_tl_row_of(&ev, 0, &r);
	CHECK(r.attempt == 0 && strcmp(r.step, "ask") == 0);
	CHECK_STR(r.summary, "turn 3 #4 +9 chars \"caf\xc3\xa9 \\\"ok\\\"\"");

	base(&ev, RS_EV_LLM_MESSAGE, 8, 1400);
	ev.d.llm_message.step_id = "ask";
	ev.d.llm_message.turn = 3;
	msg = json_pack("{s:s,s:n,s:[{s:{s:s}},{s:{s:s}}]}", "role", "assistant", "content",
	                "tool_calls", "function", "name", "a", "function", "name", "b");
	ev.d.llm_message.message = msg;
	rs_ctl_tl_row_of(&ev, 0, &r);
	CHECK_STR(r.summary, "turn 3: tool calls a,b");
	json_decref(msg);

	base(&ev, RS_EV_LLM_REQUESTED, 9, 1500);
	ev.d.llm_requested.step_id = "ask";
	ev.d.llm_requested.attempt = 1;
	ev.d.llm_requested.turn = 1;
	rs_ctl_tl_row_of(&ev, 0, &r);
	rs_ctl_tl_summary_add(&s, &ev);
	rs_ctl_tl_summary_add(&s, &ev);
	CHECK(r.mark == TL_WAIT);
	CHECK_STR(r.summary, "turn 1 ?: 0 messages, 0 tools");
	rs_ctl_tl_summary_format(&s, buf, sizeof(buf));
	/* The status is the one fold's rule (common/rs_view.c, as the read
	 * model): effects do not change it, and these events come without
	 * run.created, so there is none yet. */
	CHECK_STR(buf, "none after 0.500s: 3 events, 0 steps completed, 1 http request, "
	          "2 model turns");
}

static char *
effects_text(rs_eff_track *t)
{
	return rs_json_dump(rs_eff_list(t));
}

/* --at's effects: streamed text, abandoned on a timeout, replaced by the
 * whole message; an executor error; a run cancelled mid-request. */
static void
test_effects_fold(void)
{
	rs_event ev;
	rs_eff_track t;
	json_t *msg = json_pack("{s:s,s:s}", "role", "assistant", "content", "Hello there");
	json_t *usage = json_pack("{s:i,s:i}", "prompt_tokens", 3, "completion_tokens", 2);
	char *txt;

	rs_eff_init(&t);
	base(&ev, RS_EV_LLM_REQUESTED, 1, 100);
	ev.d.llm_requested.effect_id = "l1";
	ev.d.llm_requested.step_id = "ask";
	ev.d.llm_requested.attempt = 1;
	ev.d.llm_requested.turn = 1;
	ev.d.llm_requested.deadline = 900;
	rs_eff_add(&t, &ev);
	base(&ev, RS_EV_LLM_DELTA, 2, 110);
	ev.d.llm_delta.effect_id = "l1";
	ev.d.llm_delta.text = "Hel";
	rs_eff_add(&t, &ev);
	ev.d.llm_delta.text = "lo";
	rs_eff_add(&t, &ev);
	txt = effects_text(&t);
	CHECK(strstr(txt, "\"deltas\":2") && strstr(txt, "\"status\":\"streaming\"") &&
	      strstr(txt, "\"text\":\"Hello\""));
	free(txt);
	/* the turn timed out: step.failed without effect_id */
	base(&ev, RS_EV_STEP_FAILED, 3, 950);
	ev.d.step_failed.step_id = "ask";
	ev.d.step_failed.attempt = 1;
	rs_eff_add(&t, &ev);
	base(&ev, RS_EV_LLM_REQUESTED, 4, 1000);
	ev.d.llm_requested.effect_id = "l2";
	ev.d.llm_requested.step_id = "ask";
	ev.d.llm_requested.attempt = 2;
	ev.d.llm_requested.turn = 1;
	rs_eff_add(&t, &ev);
	base(&ev, RS_EV_LLM_MESSAGE, 5, 1200);
	ev.d.llm_message.effect_id = "l2";
	ev.d.llm_message.message = msg;
	ev.d.llm_message.usage = usage;
	ev.d.llm_message.finish_reason = "stop";
	rs_eff_add(&t, &ev);
	base(&ev, RS_EV_HTTP_REQUESTED, 6, 1300);
	ev.d.http_requested.effect_id = "h1";
	ev.d.http_requested.step_id = "hook";
	ev.d.http_requested.attempt = 1;
	ev.d.http_requested.method = "POST";
	ev.d.http_requested.url = "https://x.example/";
	rs_eff_add(&t, &ev);
	base(&ev, RS_EV_STEP_FAILED, 7, 1400);
	ev.d.step_failed.step_id = "hook";
	ev.d.step_failed.attempt = 1;
	ev.d.step_failed.effect_id = "h1";
	ev.d.step_failed.error.code = "tls";
	ev.d.step_failed.error.message = "bad cert";
	rs_eff_add(&t, &ev);
	base(&ev, RS_EV_HTTP_REQUESTED, 8, 1500);
	ev.d.http_requested.effect_id = "h2";
	ev.d.http_requested.step_id = "hook";
	ev.d.http_requested.attempt = 2;
	ev.d.http_requested.method = "POST";
	ev.d.http_requested.url = "https://x.example/";
	rs_eff_add(&t, &ev);
	base(&ev, RS_EV_RUN_CANCELLED, 9, 1600);
	rs_eff_add(&t, &ev);
	txt = effects_text(&t);
	CHECK_STR(txt,
	          "[{\"attempt\":1,\"deadline\":900,\"deltas\":2,\"effect_id\":\"l1\",\"error\":null,"
	          "\"finish_reason\":null,\"finished_at\":950,\"kind\":\"llm\",\"messages\":0,"
	          "\"model\":null,\"requested_at\":100,\"status\":\"abandoned\",\"step_id\":\"ask\","
	          "\"text\":\"Hello\",\"tool_calls\":null,\"turn\":1,\"usage\":null},"
	          "{\"attempt\":2,\"deadline\":0,\"deltas\":0,\"effect_id\":\"l2\",\"error\":null,"
	          "\"finish_reason\":\"stop\",\"finished_at\":1200,\"kind\":\"llm\",\"messages\":0,"
	          "\"model\":null,\"requested_at\":1000,\"status\":\"done\",\"step_id\":\"ask\","
	          "\"text\":\"Hello there\",\"tool_calls\":null,\"turn\":1,"
	          "\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":3}},"
	          "{\"attempt\":1,\"deadline\":0,\"duration_ms\":null,\"effect_id\":\"h1\","
	          "\"error\":{\"class\":\"transient\",\"code\":\"tls\",\"message\":\"bad cert\","
	          "\"retryable\":false},\"finished_at\":1400,\"http_status\":null,\"kind\":\"http\","
	          "\"method\":\"POST\",\"requested_at\":1300,\"status\":\"error\",\"step_id\":\"hook\","
	          "\"url\":\"https://x.example/\"},"
	          "{\"attempt\":2,\"deadline\":0,\"duration_ms\":null,\"effect_id\":\"h2\","
	          "\"error\":null,\"finished_at\":1600,\"http_status\":null,\"kind\":\"http\","
	          "\"method\":\"POST\",\"requested_at\":1500,\"status\":\"abandoned\","
	          "\"step_id\":\"hook\",\"url\":\"https://x.example/\"}]");
	free(txt);
	rs_eff_free(&t);
	json_decref(msg);
	json_decref(usage);
}

static int
count_fn(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	(*(int *)ctx)++;
	return RC_OK;
}

static void
test_scan(void)
{
	static const char bad[] = "{\"runstream_export\":1,\"agent\":{\"name\":\"x\"}}\n\n{\"nope\":1}\n";
	char err[512];
	json_t *agent = NULL;
	int n = 0;

	CHECK(rs_ctl_hist_scan(bad, sizeof(bad) - 1, "t.ndjson", count_fn, &n, &agent, err, sizeof(err)) == RC_FAIL);
	CHECK(strncmp(err, "t.ndjson:3: not a Runstream event", 33) == 0);
	CHECK(json_is_object(agent));
	json_decref(agent);
	CHECK(rs_ctl_hist_scan("\n\n", 2, "e", count_fn, &n, NULL, err, sizeof(err)) == RC_NOTFOUND);
	CHECK(n == 0);
}

int
main(void)
{
	test_delta();
	test_rows();
	test_summary_and_path();
	test_effect_rows();
	test_effects_fold();
	test_scan();
	return check_report("test_timeline");
}
