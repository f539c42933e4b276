/* event_fixtures.c - sample events for tests (see event_fixtures.h). */
#include "event_fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *
s(const char *v)
{
	char *p = strdup(v);

	if (p == NULL)
		abort();
	return p;
}

static json_t *
j(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);

	if (v == NULL)
		abort();
	return v;
}

static void
fx_err(rs_err *e, int full)
{
	e->code = s("tool_error");
	e->message = s("device said \"no\"");
	e->cls = RS_ERRCLASS_PERMANENT;
	e->retryable = 0;
	e->step_id = full ? s("fetch") : NULL;
}

static void
fx_runs(rs_event *ev, int full)
{
	switch (ev->type) {
	case RS_EV_RUN_CREATED:
		ev->d.run_created.agent = s("summarize");
		ev->d.run_created.version = s("3");
		ev->d.run_created.input = j("{\"url\":\"https://example.com\",\"n\":[1,2.5,null]}");
		if (full) {
			ev->d.run_created.idempotency_key = s("req-42");
			ev->d.run_created.timeout_s = 600;
			ev->d.run_created.max_steps = 100;
			ev->d.run_created.forked_from = s("0190f5d2-0000-7a3b-8c1d-2e3f4a5b6c7d");
			ev->d.run_created.from_seq = 12;
			ev->d.run_created.reuse = j("[{\"step_id\":\"fetch\",\"seq\":7,"
			                            "\"output\":{\"n\":1}}]");
			ev->d.run_created.concurrency_key = s("customer-7");
			ev->d.run_created.concurrency_limit = 10;
			ev->d.run_created.tenant_limit = 100;
			ev->d.run_created.schedule_id = s("nightly-report");
			ev->d.run_created.schedule_tick = 1767323040000LL;
			ev->d.run_created.parent_run_id = s("0190f5d2-7c4e-7a3b-8c1d-aaaaaaaaaaaa");
			ev->d.run_created.root_run_id = s("0190f5d2-7c4e-7a3b-8c1d-bbbbbbbbbbbb");
			ev->d.run_created.scope = s("fan/a");
			ev->d.run_created.parent_step_id = s("fan");
			ev->d.run_created.tags = j("{\"team\":\"blue\"}");
		}
		break;
	case RS_EV_RUN_STARTED:
		ev->d.run_started.instance = full ? s("orchestrator-1") : NULL;
		ev->d.run_started.admission = full ? s("granted") : NULL;
		break;
	case RS_EV_RUN_CANCEL_REQUESTED:
		ev->d.run_cancel_requested.reason = full ? s("user asked") : NULL;
		break;
	case RS_EV_RUN_COMPLETED:
		ev->d.run_completed.output = j(full ? "{\"summary\":\"ok\"}" : "null");
		break;
	case RS_EV_RUN_FAILED:
		fx_err(&ev->d.run_failed.error, full);
		break;
	case RS_EV_RUN_CANCELLED:
		ev->d.run_cancelled.reason = full ? s("user asked") : NULL;
		break;
	case RS_EV_RUN_TIMED_OUT:
		ev->d.run_timed_out.timeout_s = 600;
		break;
	default:
		break;
	}
}

static void
fx_steps(rs_event *ev, int full)
{
	switch (ev->type) {
	case RS_EV_STEP_STARTED:
		ev->d.step_started.step_id = s("fetch");
		ev->d.step_started.kind = s("tool");
		ev->d.step_started.attempt = 1;
		ev->d.step_started.input = full ? j("{\"url\":\"https://example.com\"}") : NULL;
		break;
	case RS_EV_STEP_COMPLETED:
		ev->d.step_completed.step_id = s("fetch");
		ev->d.step_completed.attempt = 2;
		ev->d.step_completed.output = j("[\"a\",{\"b\":true}]");
		ev->d.step_completed.duration_ms = 0;
		ev->d.step_completed.next_step = full ? s("summarize") : NULL;
		ev->d.step_completed.reused_seq = full ? 7 : 0;
		break;
	case RS_EV_STEP_FAILED:
		ev->d.step_failed.step_id = s("fetch");
		ev->d.step_failed.attempt = 3;
		fx_err(&ev->d.step_failed.error, full);
		ev->d.step_failed.final = full;
		ev->d.step_failed.effect_id = full ? s(FX_RUN_ID "-fetch-1-3-http") : NULL;
		ev->d.step_failed.retry_after_ms = full ? 2000 : 0;
		break;
	case RS_EV_STEP_RETRY_SCHEDULED:
		ev->d.step_retry_scheduled.step_id = s("fetch");
		ev->d.step_retry_scheduled.attempt = 2;
		ev->d.step_retry_scheduled.backoff_ms = 1500;
		ev->d.step_retry_scheduled.due_at = FX_TIME_MS + 1500;
		ev->d.step_retry_scheduled.timer_id = s("t-fetch-2");
		break;
	case RS_EV_SIGNAL_RECEIVED:
		ev->d.signal_received.signal_id = s("sig-1");
		ev->d.signal_received.name = s("approve");
		ev->d.signal_received.payload = j(full ? "{\"by\":\"ann\"}" : "42");
		ev->d.signal_received.step_id = full ? s("wait_approval") : NULL;
		break;
	default:
		break;
	}
}

static void
fx_tools(rs_event *ev, int full)
{
	switch (ev->type) {
	case RS_EV_TOOL_REQUESTED:
		ev->d.tool_requested.call_id = s(FX_RUN_ID "-fetch-1");
		ev->d.tool_requested.step_id = s("fetch");
		ev->d.tool_requested.attempt = 1;
		ev->d.tool_requested.tool = s("http.get");
		ev->d.tool_requested.args = j("{\"url\":\"https://example.com\"}");
		ev->d.tool_requested.device = full ? s("laptop-7") : NULL;
		ev->d.tool_requested.capability = full ? s("net") : NULL;
		ev->d.tool_requested.deadline = FX_TIME_MS + 30000;
		break;
	case RS_EV_TOOL_DISPATCHED:
		ev->d.tool_dispatched.call_id = s(FX_RUN_ID "-fetch-1");
		ev->d.tool_dispatched.device_id = s("laptop-7");
		ev->d.tool_dispatched.router = full ? s("router-2") : NULL;
		break;
	case RS_EV_TOOL_COMPLETED:
		ev->d.tool_completed.call_id = s(FX_RUN_ID "-fetch-1");
		ev->d.tool_completed.step_id = s("fetch");
		ev->d.tool_completed.attempt = 1;
		ev->d.tool_completed.output = j("{\"status\":200,\"body\":\"\\u00e9t\\u00e9\"}");
		ev->d.tool_completed.device_id = full ? s("laptop-7") : NULL;
		break;
	case RS_EV_TOOL_FAILED:
		ev->d.tool_failed.call_id = s(FX_RUN_ID "-fetch-1");
		ev->d.tool_failed.step_id = s("fetch");
		ev->d.tool_failed.attempt = 1;
		fx_err(&ev->d.tool_failed.error, full);
		ev->d.tool_failed.device_id = full ? s("laptop-7") : NULL;
		break;
	case RS_EV_TOOL_TIMED_OUT:
		ev->d.tool_timed_out.call_id = s(FX_RUN_ID "-fetch-1");
		ev->d.tool_timed_out.step_id = s("fetch");
		ev->d.tool_timed_out.attempt = 1;
		break;
	case RS_EV_TIMER_SCHEDULED:
	case RS_EV_TIMER_FIRED:
		/* Same layout for both; fill through the scheduled view. */
		ev->d.timer_scheduled.timer_id = s("t-sleep-1");
		ev->d.timer_scheduled.purpose = full ? RS_TIMER_RETRY : RS_TIMER_SLEEP;
		ev->d.timer_scheduled.step_id = full ? s("fetch") : NULL;
		ev->d.timer_scheduled.attempt = full ? 2 : 0;
		ev->d.timer_scheduled.due_at = FX_TIME_MS + 60000;
		break;
	default:
		break;
	}
}

/* Server-side effects (http, llm steps). */
static void
fx_effects(rs_event *ev, int full)
{
	switch (ev->type) {
	case RS_EV_HTTP_REQUESTED:
		ev->d.http_requested.effect_id = s(FX_RUN_ID "-hook-1-1-http");
		ev->d.http_requested.step_id = s("hook");
		ev->d.http_requested.attempt = 1;
		ev->d.http_requested.method = s("POST");
		ev->d.http_requested.url = s("https://hooks.example.com/in");
		ev->d.http_requested.headers = j(full ? "{\"X-Team\":\"a\"}" : "{}");
		ev->d.http_requested.body = full ? j("{\"n\":1}") : NULL;
		ev->d.http_requested.timeout_ms = 30000;
		ev->d.http_requested.deadline = FX_TIME_MS + 30000;
		ev->d.http_requested.hmac = full ? j("{\"header\":\"Runstream-Signature\","
		                                     "\"secret\":\"HOOK_SECRET\"}") : NULL;
		ev->d.http_requested.max_response_bytes = full ? 65536 : 0;
		ev->d.http_requested.max_redirects = full ? 3 : 0;
		break;
	case RS_EV_HTTP_COMPLETED:
		ev->d.http_completed.effect_id = s(FX_RUN_ID "-hook-1-1-http");
		ev->d.http_completed.step_id = s("hook");
		ev->d.http_completed.attempt = 1;
		ev->d.http_completed.status = full ? 201 : 204;
		ev->d.http_completed.headers = j(full ? "{\"content-type\":\"application/json\"}" : "{}");
		ev->d.http_completed.body = j(full ? "{\"ok\":true}" : "null");
		ev->d.http_completed.duration_ms = 12;
		break;
	case RS_EV_LLM_REQUESTED:
		ev->d.llm_requested.effect_id = s(FX_RUN_ID "-ask-2-1-llm1");
		ev->d.llm_requested.step_id = s("ask");
		ev->d.llm_requested.attempt = 1;
		ev->d.llm_requested.turn = 1;
		ev->d.llm_requested.messages = j("[{\"role\":\"user\",\"content\":\"hi\"}]");
		ev->d.llm_requested.model = j("{\"base_url\":\"https://api.example.com/v1\","
		                              "\"model\":\"m-1\",\"api_key_secret\":\"OPENAI_API_KEY\"}");
		ev->d.llm_requested.tools = full ? j("[{\"name\":\"lookup\"}]") : NULL;
		ev->d.llm_requested.max_tokens = full ? 512 : 0;
		ev->d.llm_requested.temperature = full ? j("0") : NULL;
		ev->d.llm_requested.deadline = FX_TIME_MS + 120000;
		break;
	case RS_EV_LLM_DELTA:
		ev->d.llm_delta.effect_id = s(FX_RUN_ID "-ask-2-1-llm1");
		ev->d.llm_delta.step_id = s("ask");
		ev->d.llm_delta.turn = 1;
		ev->d.llm_delta.index = full ? 3 : 0;
		ev->d.llm_delta.text = s(full ? "Hel" : "");
		break;
	case RS_EV_LLM_MESSAGE:
		ev->d.llm_message.effect_id = s(FX_RUN_ID "-ask-2-1-llm1");
		ev->d.llm_message.step_id = s("ask");
		ev->d.llm_message.turn = 1;
		ev->d.llm_message.message = j("{\"role\":\"assistant\",\"content\":\"Hello\"}");
		ev->d.llm_message.usage = full ? j("{\"completion_tokens\":2,\"prompt_tokens\":9}") : NULL;
		ev->d.llm_message.finish_reason = full ? s("stop") : NULL;
		break;
	case RS_EV_CHILD_STARTED:
		ev->d.child_started.step_id = s("fan");
		ev->d.child_started.attempt = 1;
		ev->d.child_started.child_run_id = s("0190f5d2-7c4e-7a3b-8c1d-cccccccccccc");
		ev->d.child_started.key = s("a");
		ev->d.child_started.agent = s("summarize");
		ev->d.child_started.version = full ? s("3") : NULL;
		ev->d.child_started.scope = full ? s("fan/a") : NULL;
		ev->d.child_started.input = j("{\"n\":1}");
		break;
	case RS_EV_CHILD_FINISHED:
		ev->d.child_finished.step_id = s("fan");
		ev->d.child_finished.attempt = 1;
		ev->d.child_finished.child_run_id = s("0190f5d2-7c4e-7a3b-8c1d-cccccccccccc");
		ev->d.child_finished.key = s("a");
		ev->d.child_finished.status = s(full ? "failed" : "completed");
		ev->d.child_finished.output = full ? json_null() : j("{\"n\":2}");
		ev->d.child_finished.error = full ? j("{\"code\":\"boom\",\"message\":\"x\"}") : NULL;
		break;
	default:
		break;
	}
}

void
fx_event(rs_event_type t, int full, rs_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = t;
	snprintf(ev->run_id, sizeof(ev->run_id), "%s", FX_RUN_ID);
	snprintf(ev->tenant, sizeof(ev->tenant), "%s", FX_TENANT);
	ev->runseq = (uint64_t)t + 1;
	ev->time_ms = FX_TIME_MS;
	if (full) {
		snprintf(ev->traceparent, sizeof(ev->traceparent), "%s",
		         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
		ev->source = s("runstream/test");
	}
	fx_runs(ev, full);
	fx_steps(ev, full);
	fx_tools(ev, full);
	fx_effects(ev, full);
}
