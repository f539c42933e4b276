/*
 * test_effects.c - unit tests of the server-side effect steps of the run
 * state machine (http and llm steps, common/rs_run_effects.c): which events each
 * command yields, ids, retries and Retry-After, turns with tool calls,
 * max_turns, deltas and their dedupe, stale results, timeouts.
 *
 * The world is test_run.c's (world.h): every decided event goes through
 * the codec before it is evolved, deciding twice gives the same events,
 * and at the end the recorded history replays into the same view.
 * The executor commands and tool results are checked to be recoverable
 * from the events (rs_replay_cmd_from_event, the mapping runctl replay
 * --check uses).
 */
#include "rs_json.h"
#include "rs_replay.h"
#include "rs_run.h"
#include "world.h"

#include <stdlib.h>
#include <string.h>

/* The effect id of the latest http.requested or llm.requested. */
static char *
effect_id(world *w)
{
	const rs_event *e = hist_last(w, RS_EV_LLM_REQUESTED);
	const rs_event *h = hist_last(w, RS_EV_HTTP_REQUESTED);
	static char buf[256];

	if (h != NULL && (e == NULL || h->runseq > e->runseq))
		snprintf(buf, sizeof(buf), "%s", h->d.http_requested.effect_id);
	else
		snprintf(buf, sizeof(buf), "%s", e ? e->d.llm_requested.effect_id : "");
	return buf;
}

/* Commands the executor and the devices give: each is recovered from the
 * events it produced (run.start and timer.fire are given here with fewer
 * members than a real one carries, so they are not compared). */
static int
recovered_type(rs_cmd_type t)
{
	return t == RS_CMD_EFFECT_RESULT || t == RS_CMD_LLM_CHUNK || t == RS_CMD_TOOL_RESULT;
}

/* Every such command we gave is what rs_replay_cmd_from_event rebuilds
 * from the history: the mapping `runctl replay --check` uses. */
static void
check_replay_mapping(world *w)
{
	size_t k = 0;
	int is_cmd;
	rs_cmd c;

	for (size_t i = 0; i < w->nhist; i++) {
		CHECK(rs_replay_cmd_from_event(&w->hist[i], &c, &is_cmd) == RS_OK);
		CHECK_INT(is_cmd, rs_replay_opens_group(&w->hist[i]));
		if (!is_cmd || !recovered_type(c.type)) {
			rs_cmd_free(&c);
			continue;
		}
		/* the next command given that produced events */
		while (k < w->ncmds && !recovered_type(w->cmds[k].type))
			k++;
		CHECK(k < w->ncmds);
		if (k < w->ncmds) {
			char *a = NULL, *b = NULL;
			rs_cmd_encode(&c, &a, NULL);
			rs_cmd_encode(&w->cmds[k], &b, NULL);
			CHECK_STR(a, b);
			free(a);
			free(b);
			k++;
		}
		rs_cmd_free(&c);
	}
	/* and nothing given was left unrecovered */
	while (k < w->ncmds && !recovered_type(w->cmds[k].type))
		k++;
	CHECK_INT(k, w->ncmds);
}

/* rs_replay_check (runctl replay --check, GET /v1/runs/{id}/check): the
 * recorded history is what this build decides. A history whose
 * http.requested says another timeout than this build decides (as if an
 * older orchestrator had recorded it) diverges exactly there; an agent
 * definition of another version is refused by decide at run.start. */
static void
check_recheck(world *w)
{
	rs_replay_report rep;
	char err[256], *alt, *at;
	rs_agent *other = NULL;
	rs_event *ev = NULL;

	CHECK(rs_replay_check(w->hist, w->nhist, w->agent, &rep, err, sizeof(err)) == RS_OK);
	CHECK_INT(rep.ok, 1);
	CHECK_INT(rep.events, w->nhist);
	CHECK_STR(rep.status, rs_run_status_name(rs_run_get_status(w->r)));
	rs_replay_report_free(&rep);

	for (size_t i = 0; i < w->nhist && ev == NULL; i++)
		if (w->hist[i].type == RS_EV_HTTP_REQUESTED)
			ev = &w->hist[i];
	if (ev != NULL) {
		ev->d.http_requested.timeout_ms += 1;
		CHECK(rs_replay_check(w->hist, w->nhist, w->agent, &rep, err, sizeof(err)) == RS_OK);
		CHECK_INT(rep.ok, 0);
		CHECK_INT(rep.seq, ev->runseq);
		CHECK(rep.recorded != NULL && rep.decided != NULL);
		CHECK_STR(rep.reason, "the event differs");
		CHECK(rep.command != NULL && rep.command[0] != '\0');
		rs_replay_report_free(&rep);
		ev->d.http_requested.timeout_ms -= 1;
	}
	if ((at = strstr(w->def, "127.0.0.1:9/")) == NULL)
		return;
	alt = strdup(w->def);
	alt[at - w->def + 10] = '8';        /* another definition, another version */
	CHECK(rs_agent_parse_text(alt, strlen(alt), &other, err, sizeof(err)) == RS_OK);
	CHECK(rs_replay_check(w->hist, w->nhist, other, &rep, err, sizeof(err)) == RS_OK);
	CHECK_INT(rep.ok, 0);
	CHECK_INT(rep.seq, 1);
	CHECK(strncmp(rep.reason, "decide failed: ", 15) == 0);
	rs_replay_report_free(&rep);
	rs_agent_free(other);
	free(alt);
}

/* The replay checks, then release w. */
static void
finish_effects(world *w, int check_mapping)
{
	world_check_replay(w);
	if (check_mapping)
		check_replay_mapping(w);
	check_recheck(w);
	world_free(w);
}

/* --- agents --- */

static const char *A_HTTP =
	"{\"name\":\"h\",\"steps\":[{\"id\":\"hook\",\"kind\":\"http\",\"method\":\"POST\","
	"\"url\":\"http://127.0.0.1:9/in/{{input.id}}\",\"headers\":{\"X-Id\":\"{{input.id}}\","
	"\"Authorization\":\"Bearer {{ secrets.TOKEN }}\"},"
	"\"body\":{\"n\":\"{{input.n}}\"},\"timeout_s\":10,\"hmac\":{\"secret\":\"HOOK_SECRET\"},"
	"\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":100}},"
	"{\"id\":\"after\",\"kind\":\"transform\",\"value\":\"{{steps.hook.output.body.ok}}\"}]}";

static const char *A_LLM =
	"{\"name\":\"l\",\"steps\":[{\"id\":\"ask\",\"kind\":\"llm\","
	"\"model\":{\"base_url\":\"http://127.0.0.1:9/v1\",\"model\":\"m\",\"api_key_secret\":\"KEY\"},"
	"\"system\":\"be brief\",\"prompt\":\"weather in {{input.city}}?\","
	"\"tools\":[\"get_weather\",\"get_time\"],\"max_turns\":3,\"timeout_s\":60,"
	"\"tool_timeout_s\":20,\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":100}}]}";

#define ASSISTANT_TEXT(t) \
	"{\"message\":{\"role\":\"assistant\",\"content\":\"" t "\"}," \
	"\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5},\"finish_reason\":\"stop\"}"
#define CALLS2 \
	"{\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[" \
	"{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
	"\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}," \
	"{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\"," \
	"\"arguments\":\"{}\"}}]},\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}," \
	"\"finish_reason\":\"tool_calls\"}"

/* --- tests --- */

static void
test_http_happy(void)
{
	world w;
	const rs_event *e;

	world_init(&w, A_HTTP);
	CHECK_STR(step(&w, c_start_untraced("{\"id\":\"a7\",\"n\":3}")),
	          "run.created run.started step.started http.requested timer.scheduled");
	e = ev(&w, RS_EV_HTTP_REQUESTED, 0);
	CHECK_STR(e->d.http_requested.effect_id, RUN_ID "-hook-1-1-http");
	CHECK_STR(e->d.http_requested.url, "http://127.0.0.1:9/in/a7");
	/* The secret reference is recorded, never a value. */
	CHECK_JSON(e->d.http_requested.headers, "{\"Authorization\":\"Bearer {{secrets.TOKEN}}\","
	           "\"X-Id\":\"a7\"}");
	CHECK_JSON(e->d.http_requested.body, "{\"n\":3}");
	CHECK_JSON(e->d.http_requested.hmac,
	           "{\"header\":\"Runstream-Signature\",\"secret\":\"HOOK_SECRET\"}");
	CHECK_INT(e->d.http_requested.timeout_ms, 10000);
	CHECK_INT(e->d.http_requested.deadline, 11000);
	CHECK_INT(e->d.http_requested.max_response_bytes, RS_HTTP_MAX_RESPONSE_DEFAULT);
	CHECK_STR(ev(&w, RS_EV_STEP_STARTED, 0)->d.step_started.kind, "http");
	e = ev(&w, RS_EV_TIMER_SCHEDULED, 0);
	CHECK_INT(e->d.timer_scheduled.purpose, RS_TIMER_STEP_TIMEOUT);
	CHECK_INT(e->d.timer_scheduled.due_at, 11000 + 5000);
	/* the executor reads requests from the log: no effect to publish */
	CHECK_INT(w.last.ncalls, 0);
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_WAITING);
	CHECK_STR(step(&w, c_output("nope", "{\"status\":200}")), "");   /* unknown effect */
	w.now = 1300;
	CHECK_STR(step(&w, c_output(RUN_ID "-hook-1-1-http", "{\"status\":200,\"headers\":"
	                            "{\"content-type\":\"application/json\"},\"body\":{\"ok\":1},"
	                            "\"duration_ms\":42}")),
	          "http.completed step.completed step.started step.completed run.completed");
	e = ev(&w, RS_EV_STEP_COMPLETED, 0);
	CHECK_JSON(e->d.step_completed.output, "{\"body\":{\"ok\":1},\"headers\":"
	           "{\"content-type\":\"application/json\"},\"status\":200}");
	CHECK_INT(ev(&w, RS_EV_HTTP_COMPLETED, 0)->d.http_completed.duration_ms, 42);
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "1");
	/* a re-issued effect's second result changes nothing */
	CHECK_STR(step(&w, c_output(RUN_ID "-hook-1-1-http", "{\"status\":200}")), "");
	finish_effects(&w, 1);
}

static void
test_http_retry(void)
{
	world w;
	const rs_event *e;

	world_init(&w, A_HTTP);
	step(&w, c_start_untraced("{\"id\":\"a\",\"n\":1}"));
	/* 503 with Retry-After: 2 -> transient, backoff stretched to 2 s */
	CHECK_STR(step(&w, c_output(effect_id(&w), "{\"status\":503,\"headers\":"
	                            "{\"retry-after\":\"2\"},\"body\":null,\"duration_ms\":1}")),
	          "http.completed step.failed step.retry_scheduled timer.scheduled");
	e = ev(&w, RS_EV_STEP_FAILED, 0);
	CHECK_STR(e->d.step_failed.error.code, "http_503");
	CHECK_INT(e->d.step_failed.error.cls, RS_ERRCLASS_TRANSIENT);
	CHECK(e->d.step_failed.effect_id == NULL);
	CHECK_INT(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.backoff_ms, 2000);
	w.now = 3000;
	CHECK_STR(step(&w, c_fire(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.timer_id)),
	          "timer.fired step.started http.requested timer.scheduled");
	CHECK_STR(effect_id(&w), RUN_ID "-hook-2-2-http");
	/* a connection error reported by the executor, with its Retry-After */
	CHECK_STR(step(&w, c_effect_error(effect_id(&w), "connect_failed", RS_ERRCLASS_TRANSIENT, 700)),
	          "step.failed step.retry_scheduled timer.scheduled");
	e = ev(&w, RS_EV_STEP_FAILED, 0);
	CHECK_STR(e->d.step_failed.effect_id, RUN_ID "-hook-2-2-http");
	CHECK_INT(e->d.step_failed.retry_after_ms, 700);
	CHECK_INT(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.backoff_ms, 700);
	w.now = 4000;
	step(&w, c_fire(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.timer_id));
	/* 404 is permanent: no more attempts even though one is left */
	CHECK_STR(step(&w, c_output(effect_id(&w), "{\"status\":404,\"headers\":{},\"body\":\"no\",\"duration_ms\":0}")),
	          "http.completed step.failed run.failed");
	CHECK_INT(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.final, 1);
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_FAILED);
	finish_effects(&w, 1);
}

static void
test_http_timeout(void)
{
	world w;
	char timer[192], eff[192];

	world_init(&w, A_HTTP);
	step(&w, c_start_untraced("{\"id\":\"a\",\"n\":1}"));
	snprintf(timer, sizeof(timer), "%s", ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.timer_id);
	snprintf(eff, sizeof(eff), "%s", effect_id(&w));
	w.now = 15999;
	CHECK_STR(step(&w, c_fire(timer)), "");                    /* early: nothing */
	w.now = 16000;
	CHECK_STR(step(&w, c_fire(timer)),
	          "timer.fired step.failed step.retry_scheduled timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.error.cls, RS_ERRCLASS_TIMEOUT);
	CHECK(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.effect_id == NULL);
	/* the executor's late answer is stale */
	CHECK_STR(step(&w, c_output(eff, "{\"status\":200}")), "");
	/* templated url that is not http(s): permanent failure at once */
	finish_effects(&w, 0);

	world_init(&w, "{\"name\":\"u\",\"steps\":[{\"id\":\"h\",\"kind\":\"http\","
	           "\"url\":\"{{input.u}}\",\"retry\":{\"max_attempts\":5}}]}");
	CHECK_STR(step(&w, c_start_untraced("{\"u\":\"file:///etc/passwd\"}")),
	          "run.created run.started step.started step.failed run.failed");
	CHECK_STR(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.code, "invalid_url");
	finish_effects(&w, 0);
}

static void
test_llm_text(void)
{
	world w;
	const rs_event *e;
	char eff[192];

	world_init(&w, A_LLM);
	CHECK_STR(step(&w, c_start_untraced("{\"city\":\"Oslo\"}")),
	          "run.created run.started step.started llm.requested timer.scheduled");
	e = ev(&w, RS_EV_LLM_REQUESTED, 0);
	CHECK_STR(e->d.llm_requested.effect_id, RUN_ID "-ask-1-1-llm1");
	CHECK_INT(e->d.llm_requested.turn, 1);
	CHECK_JSON(e->d.llm_requested.messages, "[{\"content\":\"be brief\",\"role\":\"system\"},"
	           "{\"content\":\"weather in Oslo?\",\"role\":\"user\"}]");
	CHECK_JSON(e->d.llm_requested.model, "{\"api_key_secret\":\"KEY\",\"base_url\":"
	           "\"http://127.0.0.1:9/v1\",\"model\":\"m\"}");
	CHECK_JSON(e->d.llm_requested.tools, "[{\"name\":\"get_weather\"},{\"name\":\"get_time\"}]");
	CHECK_INT(e->d.llm_requested.deadline, 61000);
	CHECK_STR(ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.timer_id,
	          RUN_ID ".step_timeout.ask.1.1.1");
	snprintf(eff, sizeof(eff), "%s", e->d.llm_requested.effect_id);
	/* deltas: in order, duplicates and overtaken ones dropped */
	CHECK_STR(step(&w, c_chunk(eff, 0, "It is")), "llm.delta");
	CHECK_INT(ev(&w, RS_EV_LLM_DELTA, 0)->d.llm_delta.turn, 1);
	CHECK_STR(step(&w, c_chunk(eff, 0, "It is")), "");
	CHECK_STR(step(&w, c_chunk(eff, 2, " sunny")), "llm.delta");
	CHECK_STR(step(&w, c_chunk(eff, 1, " late")), "");
	CHECK_STR(step(&w, c_chunk(eff, 3, "")), "");
	CHECK_STR(step(&w, c_chunk("other", 4, "x")), "");
	w.now = 2000;
	CHECK_STR(step(&w, c_output(eff, ASSISTANT_TEXT("It is sunny"))),
	          "llm.message step.completed run.completed");
	e = ev(&w, RS_EV_STEP_COMPLETED, 0);
	CHECK_JSON(e->d.step_completed.output, "{\"finish_reason\":\"stop\",\"text\":\"It is sunny\","
	           "\"turns\":1,\"usage\":{\"completion_tokens\":5,\"prompt_tokens\":10}}");
	CHECK_STR(step(&w, c_chunk(eff, 9, "late")), "");
	finish_effects(&w, 1);
}

static void
test_llm_tools(void)
{
	world w;
	const rs_event *e;
	char c0[192], c1[192], eff[192];

	world_init(&w, A_LLM);
	step(&w, c_start_untraced("{\"city\":\"Oslo\"}"));
	w.now = 2000;
	CHECK_STR(step(&w, c_output(effect_id(&w), CALLS2)),
	          "llm.message tool.requested tool.requested timer.scheduled");
	e = ev(&w, RS_EV_TOOL_REQUESTED, 0);
	snprintf(c0, sizeof(c0), "%s", e->d.tool_requested.call_id);
	CHECK_STR(c0, RUN_ID "-ask-1-1-t1-0");
	CHECK_STR(e->d.tool_requested.tool, "get_weather");
	CHECK_STR(e->d.tool_requested.capability, "get_weather");
	CHECK_JSON(e->d.tool_requested.args, "{\"city\":\"Oslo\"}");
	CHECK_INT(e->d.tool_requested.deadline, 22000);
	snprintf(c1, sizeof(c1), "%s", ev(&w, RS_EV_TOOL_REQUESTED, 1)->d.tool_requested.call_id);
	CHECK_STR(ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.timer_id,
	          RUN_ID ".tool_timeout.ask.1.1.1");
	CHECK_INT(w.last.ncalls, 2);
	CHECK_STR(w.last.calls[1].tool, "get_time");
	CHECK_STR(step(&w, c_result(c1, "\"12:00\"")), "tool.completed");
	CHECK_STR(step(&w, c_result(c1, "\"12:00\"")), "");               /* duplicate */
	w.now = 2500;
	CHECK_STR(step(&w, c_result(c0, "{\"sky\":\"clear\"}")),
	          "tool.completed llm.requested timer.scheduled");
	e = ev(&w, RS_EV_LLM_REQUESTED, 0);
	CHECK_INT(e->d.llm_requested.turn, 2);
	CHECK_STR(e->d.llm_requested.effect_id, RUN_ID "-ask-1-1-llm2");
	CHECK_JSON(json_array_get(e->d.llm_requested.messages, 3),
	           "{\"content\":\"{\\\"sky\\\":\\\"clear\\\"}\",\"role\":\"tool\",\"tool_call_id\":\"c1\"}");
	CHECK_JSON(json_array_get(e->d.llm_requested.messages, 4),
	           "{\"content\":\"12:00\",\"role\":\"tool\",\"tool_call_id\":\"c2\"}");
	CHECK_INT(json_array_size(e->d.llm_requested.messages), 5);
	/* the turn's tool timer was retired with its last call */
	{
		rs_decision p;
		CHECK(rs_run_pending_effects(w.r, &p) == RS_OK);
		CHECK_INT(p.ncalls, 0);
		CHECK_INT(p.ntimers, 1);   /* turn 2's step_timeout */
		rs_decision_free(&p);
	}
	snprintf(eff, sizeof(eff), "%s", effect_id(&w));
	w.now = 3000;
	CHECK_STR(step(&w, c_output(eff, ASSISTANT_TEXT("Clear at noon"))),
	          "llm.message step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.output,
	           "{\"finish_reason\":\"stop\",\"text\":\"Clear at noon\",\"turns\":2,"
	           "\"usage\":{\"completion_tokens\":8,\"prompt_tokens\":17}}");
	finish_effects(&w, 1);
}

static void
test_llm_bad_calls_and_timeout(void)
{
	world w;
	const rs_event *e;
	char timer[192];

	world_init(&w, A_LLM);
	step(&w, c_start_untraced("{\"city\":\"Oslo\"}"));
	/* an unknown tool and bad arguments: no device call, errors told */
	CHECK_STR(step(&w, c_output(effect_id(&w),
	          "{\"message\":{\"role\":\"assistant\",\"tool_calls\":["
	          "{\"id\":\"x1\",\"type\":\"function\",\"function\":{\"name\":\"rm_rf\",\"arguments\":\"{}\"}},"
	          "{\"id\":\"x2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"[1\"}},"
	          "{\"id\":\"x3\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]}}")),
	          "llm.message tool.requested timer.scheduled");
	snprintf(timer, sizeof(timer), "%s", ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.timer_id);
	CHECK_STR(ev(&w, RS_EV_TOOL_REQUESTED, 0)->d.tool_requested.call_id, RUN_ID "-ask-1-1-t1-2");
	w.now = 1000 + 20000;
	CHECK_STR(step(&w, c_fire(timer)), "timer.fired tool.timed_out llm.requested timer.scheduled");
	CHECK_INT(w.last.ncalls, 1);
	CHECK_INT(w.last.calls[0].cancel, 1);
	e = ev(&w, RS_EV_LLM_REQUESTED, 0);
	CHECK_JSON(json_array_get(e->d.llm_requested.messages, 3),
	           "{\"content\":\"{\\\"error\\\":{\\\"code\\\":\\\"unknown_tool\\\",\\\"message\\\":"
	           "\\\"no such tool in this step\\\"}}\",\"role\":\"tool\",\"tool_call_id\":\"x1\"}");
	CHECK_JSON(json_object_get(json_array_get(e->d.llm_requested.messages, 4), "content"),
	           "\"{\\\"error\\\":{\\\"code\\\":\\\"bad_arguments\\\",\\\"message\\\":"
	           "\\\"arguments must be a JSON object\\\"}}\"");
	CHECK_JSON(json_object_get(json_array_get(e->d.llm_requested.messages, 5), "content"),
	           "\"{\\\"error\\\":{\\\"code\\\":\\\"timeout\\\",\\\"message\\\":"
	           "\\\"the tool did not answer in time\\\"}}\"");
	finish_effects(&w, 1);
}

static void
test_llm_max_turns(void)
{
	world w;

	world_init(&w, A_LLM);
	step(&w, c_start_untraced("{\"city\":\"Oslo\"}"));
	for (int turn = 1; turn <= 3; turn++) {
		const char *t = step(&w, c_output(effect_id(&w),
		    "{\"message\":{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"q\",\"type\":"
		    "\"function\",\"function\":{\"name\":\"nope\",\"arguments\":\"{}\"}}]}}"));
		if (turn < 3)
			CHECK_STR(t, "llm.message llm.requested timer.scheduled");
		else
			CHECK_STR(t, "llm.message step.failed run.failed");
	}
	CHECK_STR(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.code, "max_turns_exceeded");
	CHECK_STR(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.message,
	          "the model still wanted tools after 3 turn(s) (max_turns 3)");
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_FAILED);
	finish_effects(&w, 1);
}

static void
test_llm_retry_resumes_turn(void)
{
	world w;
	const rs_event *e;
	char c0[192], c1[192];

	world_init(&w, A_LLM);
	step(&w, c_start_untraced("{\"city\":\"Oslo\"}"));
	step(&w, c_output(effect_id(&w), CALLS2));
	snprintf(c0, sizeof(c0), "%s", ev(&w, RS_EV_TOOL_REQUESTED, 0)->d.tool_requested.call_id);
	snprintf(c1, sizeof(c1), "%s", ev(&w, RS_EV_TOOL_REQUESTED, 1)->d.tool_requested.call_id);
	step(&w, c_result(c0, "1"));
	step(&w, c_result(c1, "2"));
	/* turn 2 is rate limited: retry after the server's delay, same turn */
	CHECK_STR(step(&w, c_effect_error(effect_id(&w), "http_429", RS_ERRCLASS_TRANSIENT, 1500)),
	          "step.failed step.retry_scheduled timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.backoff_ms, 1500);
	w.now = 2500;
	CHECK_STR(step(&w, c_fire(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.timer_id)),
	          "timer.fired step.started llm.requested timer.scheduled");
	e = ev(&w, RS_EV_LLM_REQUESTED, 0);
	CHECK_INT(e->d.llm_requested.turn, 2);
	CHECK_INT(e->d.llm_requested.attempt, 2);
	CHECK_STR(e->d.llm_requested.effect_id, RUN_ID "-ask-2-2-llm2");
	CHECK_INT(json_array_size(e->d.llm_requested.messages), 5);
	/* a stream cut is transient too; the third attempt answers */
	CHECK_STR(step(&w, c_chunk(effect_id(&w), 0, "partial")), "llm.delta");
	CHECK_STR(step(&w, c_effect_error(effect_id(&w), "stream_cut", RS_ERRCLASS_TRANSIENT, 0)),
	          "step.failed step.retry_scheduled timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.backoff_ms, 200);
	w.now = 3000;
	step(&w, c_fire(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.timer_id));
	CHECK_STR(step(&w, c_output(effect_id(&w), ASSISTANT_TEXT("done"))),
	          "llm.message step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.output,
	           "{\"finish_reason\":\"stop\",\"text\":\"done\",\"turns\":2,"
	           "\"usage\":{\"completion_tokens\":8,\"prompt_tokens\":17}}");
	finish_effects(&w, 1);

	/* a permanent model error (401) fails the run at once */
	world_init(&w, A_LLM);
	step(&w, c_start_untraced("{\"city\":\"Oslo\"}"));
	CHECK_STR(step(&w, c_effect_error(effect_id(&w), "http_401", RS_ERRCLASS_PERMANENT, 0)),
	          "step.failed run.failed");
	finish_effects(&w, 1);
}

static void
test_llm_turn_timeout_and_cancel(void)
{
	world w;
	char timer[192], eff[192];
	rs_cmd cancel;

	world_init(&w, A_LLM);
	step(&w, c_start_untraced("{\"city\":\"Oslo\"}"));
	snprintf(timer, sizeof(timer), "%s", ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.timer_id);
	snprintf(eff, sizeof(eff), "%s", effect_id(&w));
	w.now = 1000 + 60000 + 5000;
	CHECK_STR(step(&w, c_fire(timer)),
	          "timer.fired step.failed step.retry_scheduled timer.scheduled");
	CHECK_STR(step(&w, c_output(eff, ASSISTANT_TEXT("late"))), "");    /* stale */
	cancel = mk(RS_CMD_CANCEL);
	CHECK_STR(step(&w, cancel), "run.cancel_requested run.cancelled");
	finish_effects(&w, 0);
}

int
main(void)
{
	test_http_happy();
	test_http_retry();
	test_http_timeout();
	test_llm_text();
	test_llm_tools();
	test_llm_bad_calls_and_timeout();
	test_llm_max_turns();
	test_llm_retry_resumes_turn();
	test_llm_turn_timeout_and_cancel();
	return check_report("test_effects");
}
