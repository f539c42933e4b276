/*
 * gen_fixtures.c - writes the recorded histories in tests/fixtures/ by
 * driving the real state machine (sim.h) with fixed clocks and ids:
 *   gen_fixtures DIR
 * and the agent definitions they are pinned to, as DIR/agents/<name>.json
 * (for `replay --check --agent-file`). One history, llm-diverged.ndjson,
 * is a recorded one with one field edited: a run today's decide must not
 * accept.
 * The fixtures are then committed: they are "what an orchestrator
 * recorded", so `replay --check` on them tells whether today's decide
 * still agrees. Regenerate only on a deliberate contract change.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rs_json.h"
#include "sim.h"
#include "rs_sched.h"

#define T0 1767323045000LL  /* 2026-01-02T03:04:05.000Z */

static const char order_def[] =
	"{\"name\":\"order-check\",\"description\":\"fetch an order, wait, branch on it\","
	"\"steps\":["
	"{\"id\":\"fetch\",\"kind\":\"tool\",\"tool\":\"http.get\",\"device\":\"laptop-1\","
	"\"args\":{\"url\":\"https://shop.example/orders/{{input.order_id}}\"},\"timeout_s\":30},"
	"{\"id\":\"cool-off\",\"kind\":\"sleep\",\"duration_ms\":5000},"
	"{\"id\":\"route\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"steps.fetch.output.paid\","
	"\"equals\":true},\"goto\":\"ship\"}],\"else\":\"hold\"},"
	"{\"id\":\"hold\",\"kind\":\"transform\",\"value\":{\"action\":\"hold\"},\"next\":\"end\"},"
	"{\"id\":\"ship\",\"kind\":\"transform\",\"value\":{\"action\":\"ship\",\"order\":\"{{input.order_id}}\"}}"
	"]}";

static const char flaky_def[] =
	"{\"name\":\"flaky-sync\",\"steps\":["
	"{\"id\":\"sync\",\"kind\":\"tool\",\"tool\":\"crm.sync\",\"capability\":true,"
	"\"args\":{\"account\":\"{{input.account}}\"},\"timeout_s\":20,"
	"\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":1000,\"multiplier\":2}}]}";

/* flaky_def with a concurrency key per customer */
static const char gated_def[] =
	"{\"name\":\"crm-sync\",\"concurrency\":{\"key\":\"{{input.customer}}\",\"limit\":10},"
	"\"steps\":[{\"id\":\"sync\",\"kind\":\"tool\",\"tool\":\"crm.sync\",\"capability\":true,"
	"\"args\":{\"account\":\"{{input.account}}\"},\"timeout_s\":20}]}";

static const char approval_def[] =
	"{\"name\":\"approval\",\"steps\":["
	"{\"id\":\"ask\",\"kind\":\"signal\",\"signal\":\"approve\",\"timeout_s\":3600},"
	"{\"id\":\"record\",\"kind\":\"transform\",\"value\":{\"approved\":\"{{steps.ask.output.ok}}\","
	"\"by\":\"{{steps.ask.output.by}}\"}}]}";

/* Fan-out: two branches as child runs, then a join (issue 17). */
static const char fanout_def[] =
	"{\"name\":\"price-check\",\"steps\":["
	"{\"id\":\"quote\",\"kind\":\"parallel\",\"input\":{\"sku\":\"{{input.sku}}\"},"
	"\"branches\":{"
	"\"shop-a\":[{\"id\":\"ask\",\"kind\":\"tool\",\"tool\":\"price.get\","
	"\"device\":\"laptop-1\",\"args\":{\"sku\":\"{{input.sku}}\",\"shop\":\"a\"}}],"
	"\"shop-b\":[{\"id\":\"ask\",\"kind\":\"tool\",\"tool\":\"price.get\","
	"\"device\":\"laptop-1\",\"args\":{\"sku\":\"{{input.sku}}\",\"shop\":\"b\"}}]}},"
	"{\"id\":\"pick\",\"kind\":\"transform\",\"value\":{\"a\":\"{{steps.quote.output.shop-a.cents}}\","
	"\"b\":\"{{steps.quote.output.shop-b.cents}}\"}}]}";

static const char slow_def[] =
	"{\"name\":\"slow-report\",\"timeout_s\":60,\"steps\":["
	"{\"id\":\"render\",\"kind\":\"tool\",\"tool\":\"report.render\",\"device\":\"printer-7\","
	"\"args\":{},\"timeout_s\":300}]}";

/* An assistant that asks a weather station (a device offering the
 * capability get_weather) through a model tool call. */
static const char weather_def[] =
	"{\"name\":\"weather-assistant\",\"description\":\"answers with live station data\","
	"\"steps\":["
	"{\"id\":\"ask\",\"kind\":\"llm\",\"model\":{\"base_url\":\"https://llm.example/v1\","
	"\"model\":\"gpt-4o-mini\",\"api_key_secret\":\"OPENAI_API_KEY\"},"
	"\"system\":\"You are a terse weather assistant.\","
	"\"prompt\":\"What is the weather in {{input.city}}?\","
	"\"tools\":[{\"name\":\"get_weather\",\"description\":\"current weather at a station\","
	"\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}],"
	"\"max_turns\":4,\"timeout_s\":60,\"tool_timeout_s\":20},"
	"{\"id\":\"reply\",\"kind\":\"transform\",\"value\":{\"answer\":\"{{steps.ask.output.text}}\","
	"\"turns\":\"{{steps.ask.output.turns}}\"}}]}";

/* A signed webhook with retries, then a transform of its answer. */
static const char webhook_def[] =
	"{\"name\":\"order-webhook\",\"steps\":["
	"{\"id\":\"notify\",\"kind\":\"http\",\"method\":\"POST\","
	"\"url\":\"https://hooks.example/orders/{{input.order_id}}\","
	"\"headers\":{\"Content-Type\":\"application/json\"},"
	"\"body\":{\"order\":\"{{input.order_id}}\",\"status\":\"paid\"},"
	"\"timeout_s\":10,\"hmac\":{\"secret\":\"HOOK_SECRET\"},"
	"\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":500}},"
	"{\"id\":\"done\",\"kind\":\"transform\",\"value\":{\"delivered\":true,"
	"\"receipt\":\"{{steps.notify.output.body.receipt}}\"}}]}";

/* The model's first turn: one call of get_weather. */
static const char weather_call[] =
	"{\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
	"{\"id\":\"call_w1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
	"\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},"
	"\"usage\":{\"prompt_tokens\":96,\"completion_tokens\":18},\"finish_reason\":\"tool_calls\"}";

static const char weather_answer[] =
	"{\"message\":{\"role\":\"assistant\",\"content\":"
	"\"Oslo: 4 degrees C with light rain and wind at 18 km/h.\"},"
	"\"usage\":{\"prompt_tokens\":141,\"completion_tokens\":21},\"finish_reason\":\"stop\"}";

static FILE *
open_out(const char *dir, const char *name)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		exit(1);
	}
	return f;
}

/* DIR/agents/<name>.json: the definition, canonical. */
static void
write_agent(const char *dir, const sim *s)
{
	char path[1024], *txt;
	FILE *f;

	snprintf(path, sizeof(path), "%s/agents", dir);
	if (mkdir(path, 0777) != 0 && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof(path), "agents/%s.json", rs_agent_name(s->agent));
	f = open_out(dir, path);
	txt = rs_json_dump(s->def);
	fprintf(f, "%s\n", txt);
	free(txt);
	fclose(f);
}

/* Copy DIR/from to DIR/to with the one occurrence of needle replaced. */
static void
edit_copy(const char *dir, const char *from, const char *to, const char *needle, const char *repl)
{
	char path[1024], *buf, *hit;
	long n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, from);
	if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
		perror(path);
		exit(1);
	}
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(1);
	}
	fclose(f);
	hit = strstr(buf, needle);
	if (hit == NULL || strstr(hit + 1, needle) != NULL) {
		fprintf(stderr, "gen_fixtures: %s must contain %s exactly once\n", from, needle);
		exit(1);
	}
	f = open_out(dir, to);
	fwrite(buf, 1, (size_t)(hit - buf), f);
	fputs(repl, f);
	fputs(hit + strlen(needle), f);
	fclose(f);
	free(buf);
}

/* llm: streamed text, a model tool call answered by a device, the answer. */
static void
gen_llm(const char *dir)
{
	FILE *f = open_out(dir, "llm-tools.ndjson");
	sim s;

	sim_init(&s, weather_def, "0190f5e4-7a3b-7c1d-8e2f-000000000007", "acme", T0, f, 1);
	sim_route(&s, "station-7");
	sim_start(&s, "{\"city\":\"Oslo\"}", "orch-1");
	sim_effect_ok(&s, 640, weather_call);
	sim_delivered(&s, 8);
	sim_result_ok(&s, 120, "{\"sky\":\"light rain\",\"temp_c\":4,\"wind_kmh\":18}");
	sim_chunk(&s, 310, 0, "Oslo: 4 degrees C");
	sim_chunk(&s, 50, 1, " with light rain");
	sim_chunk(&s, 50, 2, " and wind at 18 km/h.");
	sim_effect_ok(&s, 30, weather_answer);
	write_agent(dir, &s);
	sim_free(&s);
	fclose(f);
	/* As if an older orchestrator had lower-cased the model's arguments. */
	edit_copy(dir, "llm-tools.ndjson", "llm-diverged.ndjson", "\"args\":{\"city\":\"Oslo\"}",
	          "\"args\":{\"city\":\"oslo\"}");
}

/* http: 500, a retry, 200; and an executor error with Retry-After. */
static void
gen_http(const char *dir)
{
	FILE *f = open_out(dir, "http-retry.ndjson");
	sim s;

	sim_init(&s, webhook_def, "0190f5e4-7a3b-7c1d-8e2f-000000000008", "acme", T0, f, 1);
	sim_start(&s, "{\"order_id\":\"A-1001\"}", "orch-1");
	sim_effect_ok(&s, 230, "{\"status\":500,\"headers\":{\"content-type\":\"text/plain\"},"
	              "\"body\":\"upstream exploded\",\"duration_ms\":228}");
	sim_fire(&s, RS_TIMER_RETRY, 3);
	sim_effect_ok(&s, 140, "{\"status\":200,\"headers\":{\"content-type\":\"application/json\"},"
	              "\"body\":{\"receipt\":\"r-5521\"},\"duration_ms\":131}");
	write_agent(dir, &s);
	sim_free(&s);
	fclose(f);

	f = open_out(dir, "http-effect-error.ndjson");
	sim_init(&s, webhook_def, "0190f5e4-7a3b-7c1d-8e2f-000000000009", "acme", T0, f, 1);
	sim_start(&s, "{\"order_id\":\"A-1002\"}", "orch-1");
	sim_effect_err(&s, 3000, "connect_failed", "connection refused by hooks.example:443",
	               RS_ERRCLASS_TRANSIENT, 2000);
	sim_fire(&s, RS_TIMER_RETRY, 1);
	sim_effect_ok(&s, 90, "{\"status\":202,\"headers\":{},\"body\":{\"receipt\":\"r-5522\"},"
	              "\"duration_ms\":88}");
	sim_free(&s);
	fclose(f);
}

/* A parent with two child runs, and one of the children (its history is
 * checked in its scope, with the parent's definition). */
static void
gen_children(const char *dir)
{
	const char *parent = "0190f5e4-7a3b-7c1d-8e2f-000000000030";
	FILE *f = open_out(dir, "parallel.ndjson");
	sim s;
	char child[40];

	sim_init(&s, fanout_def, parent, "acme", T0, f, 1);
	sim_start(&s, "{\"sku\":\"X-12\"}", "orch-1");
	snprintf(child, sizeof(child), "%s", s.children[0]);
	sim_child_done(&s, 640, 1, "completed", "{\"cents\":2150}");
	sim_child_done(&s, 85, 0, "completed", "{\"cents\":1990}");
	sim_free(&s);
	fclose(f);

	f = open_out(dir, "parallel-child.ndjson");
	sim_init(&s, fanout_def, child, "acme", T0 + 3, f, 1);
	sim_start_child(&s, "{\"sku\":\"X-12\"}", parent, parent, "quote/shop-a", "quote",
	                "orch-2");
	sim_delivered(&s, 14);
	sim_result_ok(&s, 700, "{\"cents\":1990}");
	sim_free(&s);
	fclose(f);
}

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	FILE *f;
	sim s;

	/* completed: tool + sleep + branch + transform */
	f = open_out(dir, "completed.ndjson");
	sim_init(&s, order_def, "0190f5e4-7a3b-7c1d-8e2f-000000000001", "acme", T0, f, 1);
	sim_start(&s, "{\"order_id\":\"A-1001\"}", "orch-1");
	sim_delivered(&s, 12);
	sim_result_ok(&s, 431, "{\"paid\":true,\"total\":129.5}");
	sim_fire(&s, RS_TIMER_SLEEP, 7);
	sim_free(&s);
	fclose(f);

	/* same agent, other path: not paid -> hold (for diff) */
	f = open_out(dir, "completed-hold.ndjson");
	sim_init(&s, order_def, "0190f5e4-7a3b-7c1d-8e2f-000000000002", "acme", T0 + 60000, f, 1);
	sim_start(&s, "{\"order_id\":\"A-1002\"}", "orch-1");
	sim_delivered(&s, 9);
	sim_result_ok(&s, 388, "{\"paid\":false,\"total\":80}");
	sim_fire(&s, RS_TIMER_SLEEP, 3);
	sim_free(&s);
	fclose(f);

	/* failed after retries */
	f = open_out(dir, "failed-retries.ndjson");
	sim_init(&s, flaky_def, "0190f5e4-7a3b-7c1d-8e2f-000000000003", "acme", T0, f, 1);
	sim_start(&s, "{\"account\":\"ac-77\"}", "orch-2");
	sim_delivered(&s, 20);
	sim_result_err(&s, 250, "upstream_503", "CRM answered 503 Service Unavailable", 1);
	sim_fire(&s, RS_TIMER_RETRY, 4);
	sim_delivered(&s, 15);
	sim_result_err(&s, 240, "upstream_503", "CRM answered 503 Service Unavailable", 1);
	sim_fire(&s, RS_TIMER_RETRY, 2);
	sim_delivered(&s, 11);
	sim_result_err(&s, 260, "upstream_503", "CRM answered 503 Service Unavailable", 1);
	sim_free(&s);
	fclose(f);

	/* cancelled while waiting for a signal */
	f = open_out(dir, "cancelled.ndjson");
	sim_init(&s, approval_def, "0190f5e4-7a3b-7c1d-8e2f-000000000004", "acme", T0, f, 1);
	sim_start(&s, "{\"request\":\"refund 40 EUR\"}", "orch-1");
	sim_cancel(&s, 95000, "customer withdrew the request");
	sim_free(&s);
	fclose(f);

	/* timed out: the device never answers, the run timeout fires */
	f = open_out(dir, "timed-out.ndjson");
	sim_init(&s, slow_def, "0190f5e4-7a3b-7c1d-8e2f-000000000005", "globex", T0, f, 1);
	sim_start(&s, "{}", "orch-1");
	sim_delivered(&s, 30);
	sim_fire(&s, RS_TIMER_RUN_TIMEOUT, 12);
	sim_free(&s);
	fclose(f);

	/* signal: waits for approval, gets it */
	f = open_out(dir, "signal.ndjson");
	sim_init(&s, approval_def, "0190f5e4-7a3b-7c1d-8e2f-000000000006", "acme", T0, f, 1);
	sim_start(&s, "{\"request\":\"refund 15 EUR\"}", "orch-1");
	sim_signal(&s, 42000, "sig-0001", "approve", "{\"ok\":true,\"by\":\"dana\"}");
	sim_free(&s);
	fclose(f);

	/* forked: completed.ndjson forked after its event 12 (fetch and
	 * cool-off done): both reused, the branch and ship evaluated again */
	f = open_out(dir, "forked.ndjson");
	sim_init(&s, order_def, "0190f5e4-7a3b-7c1d-8e2f-00000000000a", "acme", T0 + 120000, f, 1);
	sim_start_fork(&s, "{\"order_id\":\"A-1001\"}", "orch-1",
	               "0190f5e4-7a3b-7c1d-8e2f-000000000001", 12,
	               "[{\"step_id\":\"fetch\",\"seq\":8,\"output\":{\"paid\":true,\"total\":129.5}},"
	               "{\"step_id\":\"cool-off\",\"seq\":12,\"output\":null}]");
	sim_free(&s);
	fclose(f);

	/* gated: a concurrency key; queued 2.5 s until the gate admits it */
	f = open_out(dir, "gated.ndjson");
	sim_init(&s, gated_def, "0190f5e4-7a3b-7c1d-8e2f-00000000000b", "acme", T0, f, 1);
	sim_start(&s, "{\"customer\":\"c-9\",\"account\":\"ac-9\"}", "orch-1");
	sim_admit(&s, 2500, "orch-2");
	sim_delivered(&s, 10);
	sim_result_ok(&s, 200, "{\"synced\":true}");
	write_agent(dir, &s);
	sim_free(&s);
	fclose(f);

	/* scheduled: a schedule's tick started it (run id derived from the
	 * tick: rs_sched_run_id("acme", "nightly-approval", T0)) */
	f = open_out(dir, "scheduled.ndjson");
	{
		char rid[37];
		rs_sched_run_id("acme", "nightly-approval", T0, rid);
		sim_init(&s, approval_def, rid, "acme", T0 + 40, f, 1);
	}
	sim_start_scheduled(&s, "{\"request\":\"nightly check\"}", "orch-1", "nightly-approval", T0);
	sim_signal(&s, 1200, "sig-0002", "approve", "{\"ok\":true,\"by\":\"cron\"}");
	sim_free(&s);
	fclose(f);

	gen_llm(dir);
	gen_http(dir);
	gen_children(dir);
	return 0;
}
