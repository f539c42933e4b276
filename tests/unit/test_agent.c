/*
 * test_agent.c - unit tests of agent definitions: a full valid definition
 * and its defaults, the version hash (stable under key order and
 * whitespace), and one exact error message per validation rule.
 */
#include "rs_agent.h"
#include "rs_json.h"
#include "world.h"

#include <stdlib.h>
#include <string.h>

static const char *full_def =
	"{\"name\":\"deploy-check\",\"description\":\"d\",\"timeout_s\":600,\"max_steps\":50,"
	" \"steps\":["
	"  {\"id\":\"fetch\",\"kind\":\"tool\",\"tool\":\"http.get\","
	"   \"args\":{\"url\":\"{{input.url}}\"},\"timeout_s\":10,"
	"   \"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":100,\"max_backoff_ms\":1000,"
	"              \"multiplier\":2,\"non_retryable\":[\"bad_request\"]}},"
	"  {\"id\":\"on-dev\",\"kind\":\"tool\",\"tool\":\"shell\",\"device\":\"dev-1\"},"
	"  {\"id\":\"cap\",\"kind\":\"tool\",\"tool\":\"shell\",\"capability\":\"shell\"},"
	"  {\"id\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":0},"
	"  {\"id\":\"approve\",\"kind\":\"signal\",\"signal\":\"approval\",\"timeout_s\":3600},"
	"  {\"id\":\"route\",\"kind\":\"branch\",\"when\":["
	"     {\"if\":{\"path\":\"steps.fetch.output.code\",\"equals\":200},\"goto\":\"shape\"},"
	"     {\"if\":{\"path\":\"input.n\",\"gt\":3},\"goto\":\"end\"},"
	"     {\"if\":{\"path\":\"input.x\",\"exists\":false},\"goto\":\"fetch\"}],"
	"   \"else\":\"end\"},"
	"  {\"id\":\"shape\",\"kind\":\"transform\",\"value\":{\"c\":\"{{steps.fetch.output.code}}\"},"
	"   \"next\":\"end\"}],"
	" \"output\":{\"result\":\"{{steps.shape.output}}\"}}";

static rs_status
parse_agent(const char *text, rs_agent **a)
{
	char err[256] = "";
	rs_status st = rs_agent_parse_text(text, strlen(text), a, err, sizeof(err));

	if (st != RS_OK)
		fprintf(stderr, "parse_agent: %s\n", err);
	return st;
}

static void
test_valid(void)
{
	rs_agent *a = NULL;
	const rs_step *s;
	char err[256] = "";
	int idx = -1;

	CHECK(rs_agent_parse_text(full_def, strlen(full_def), &a, err, sizeof(err)) == RS_OK);
	if (a == NULL) {
		fprintf(stderr, "parse: %s\n", err);
		return;
	}
	CHECK_STR(rs_agent_name(a), "deploy-check");
	CHECK_STR(rs_agent_description(a), "d");
	CHECK_INT(strlen(rs_agent_version(a)), 16);
	CHECK_INT(rs_agent_timeout_s(a), 600);
	CHECK_INT(rs_agent_max_steps(a), 50);
	CHECK_INT(rs_agent_step_count(a), 7);
	CHECK(rs_agent_output(a) != NULL);
	CHECK(rs_agent_json(a) != NULL);

	s = rs_agent_step(a, 0);
	CHECK_INT(s->kind, RS_STEP_TOOL);
	CHECK_STR(s->tool, "http.get");
	CHECK_STR(s->capability, "http.get");      /* default: by capability */
	CHECK(s->device == NULL);
	CHECK_INT(s->timeout_s, 10);
	CHECK_INT(s->retry.max_attempts, 3);
	CHECK_INT(s->retry.initial_backoff_ms, 100);
	CHECK_INT(s->retry.max_backoff_ms, 1000);
	CHECK(s->retry.multiplier == 2.0);
	CHECK_INT(json_array_size(s->retry.non_retryable), 1);
	CHECK_INT(s->next_idx, 1);

	s = rs_agent_step(a, 1);
	CHECK_STR(s->device, "dev-1");
	CHECK(s->capability == NULL);
	CHECK_INT(s->timeout_s, RS_TOOL_TIMEOUT_DEFAULT_S);
	CHECK_INT(s->retry.max_attempts, 1);
	CHECK_INT(s->retry.max_backoff_ms, 60000);
	CHECK(json_is_object(s->args) && json_object_size(s->args) == 0);

	s = rs_agent_step_find(a, "route", &idx);
	CHECK(s != NULL);
	CHECK_INT(idx, 5);
	CHECK_INT(s->ncases, 3);
	CHECK_INT(s->cases[0].op, RS_OP_EQUALS);
	CHECK_INT(s->cases[0].goto_idx, 6);
	CHECK_INT(s->cases[1].goto_idx, RS_STEP_END);
	CHECK_INT(s->cases[2].goto_idx, 0);
	CHECK_INT(s->else_idx, RS_STEP_END);
	CHECK_INT(rs_agent_step_find(a, "shape", NULL)->next_idx, RS_STEP_END);
	CHECK(rs_agent_step_find(a, "nope", NULL) == NULL);
	CHECK(rs_agent_step(a, 7) == NULL);
	rs_agent_free(a);

	/* Defaults at the top level. */
	CHECK(parse_agent("{\"name\":\"a\",\"steps\":[{\"id\":\"s\",\"kind\":\"sleep\","
	                  "\"duration_ms\":5}]}", &a) == RS_OK);
	if (a != NULL) {
		CHECK_INT(rs_agent_max_steps(a), 1000);
		CHECK_INT(rs_agent_timeout_s(a), 0);
		CHECK(rs_agent_output(a) == NULL);
		CHECK(rs_agent_description(a) == NULL);
		CHECK_INT(rs_agent_step(a, 0)->next_idx, RS_STEP_END);
		rs_agent_free(a);
	}
	/* A retry whose initial backoff exceeds the default maximum. */
	CHECK(parse_agent("{\"name\":\"a\",\"steps\":[{\"id\":\"s\",\"kind\":\"tool\","
	      "\"tool\":\"t\",\"retry\":{\"max_attempts\":2,\"initial_backoff_ms\":90000}}]}",
	      &a) == RS_OK);
	if (a != NULL) {
		CHECK_INT(rs_agent_step(a, 0)->retry.max_backoff_ms, 90000);
		rs_agent_free(a);
	}
}

static void
test_version(void)
{
	const char *a = "{\"name\":\"v\",\"steps\":[{\"id\":\"s\",\"kind\":\"sleep\","
	                "\"duration_ms\":5}],\"timeout_s\":9}";
	const char *b = "{ \"timeout_s\" : 9,\n  \"steps\" : [ { \"duration_ms\": 5, \"kind\": "
	                "\"sleep\", \"id\": \"s\" } ],\n  \"name\" : \"v\" }";
	const char *c = "{\"name\":\"v\",\"steps\":[{\"id\":\"s\",\"kind\":\"sleep\","
	                "\"duration_ms\":6}],\"timeout_s\":9}";
	json_t *ja = parse(a), *jb = parse(b), *jc = parse(c);
	char va[17], vb[17], vc[17], want[65], *canon;
	rs_agent *ag = NULL;
	char err[128];

	CHECK(rs_agent_version_of(ja, va) == RS_OK);
	CHECK(rs_agent_version_of(jb, vb) == RS_OK);
	CHECK(rs_agent_version_of(jc, vc) == RS_OK);
	CHECK_STR(va, vb);
	CHECK(strcmp(va, vc) != 0);
	/* It is the sha256 prefix of the canonical form. */
	canon = rs_json_dump(jb);
	CHECK_STR(canon, "{\"name\":\"v\",\"steps\":[{\"duration_ms\":5,\"id\":\"s\","
	          "\"kind\":\"sleep\"}],\"timeout_s\":9}");
	rs_sha256_hex(canon, strlen(canon), want);
	want[16] = '\0';
	CHECK_STR(va, want);
	free(canon);
	CHECK(rs_agent_parse(jb, &ag, err, sizeof(err)) == RS_OK);
	if (ag != NULL) {
		CHECK_STR(rs_agent_version(ag), va);
		rs_agent_free(ag);
	}
	json_decref(ja);
	json_decref(jb);
	json_decref(jc);
}

/* Definition with one step whose JSON body is `step`. */
#define ONE(step) "{\"name\":\"a\",\"steps\":[" step "]}"
#define TWO(s1, s2) "{\"name\":\"a\",\"steps\":[" s1 "," s2 "]}"
#define TOOL "{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"x\""
#define SLEEP "{\"id\":\"z\",\"kind\":\"sleep\",\"duration_ms\":1}"

static const struct {
	const char *def;
	const char *err;
} bad[] = {
	/* top level */
	{ "[]", "definition: must be an object" },
	{ "{\"steps\":[" SLEEP "]}", "name: required" },
	{ "{\"name\":7,\"steps\":[" SLEEP "]}", "name: must be a string" },
	{ "{\"name\":\"Bad Name\",\"steps\":[" SLEEP "]}", "name: must match [a-z0-9_-]{1,64}" },
	{ "{\"name\":\"a\",\"color\":1,\"steps\":[" SLEEP "]}", "color: unknown field" },
	{ "{\"name\":\"a\",\"description\":1,\"steps\":[" SLEEP "]}",
	  "description: must be a string" },
	{ "{\"name\":\"a\",\"timeout_s\":0,\"steps\":[" SLEEP "]}",
	  "timeout_s: must be an integer >= 1" },
	{ "{\"name\":\"a\",\"timeout_s\":\"5\",\"steps\":[" SLEEP "]}",
	  "timeout_s: must be an integer >= 1" },
	{ "{\"name\":\"a\",\"max_steps\":1.5,\"steps\":[" SLEEP "]}",
	  "max_steps: must be an integer >= 1" },
	{ "{\"name\":\"a\"}", "steps: required" },
	{ "{\"name\":\"a\",\"steps\":[]}", "steps: must be a non-empty array" },
	{ "{\"name\":\"a\",\"steps\":{}}", "steps: must be a non-empty array" },
	/* ids and kinds */
	{ ONE("7"), "steps[0]: must be an object" },
	{ ONE("{\"kind\":\"sleep\",\"duration_ms\":1}"), "steps[0].id: required" },
	{ ONE("{\"id\":\"A\",\"kind\":\"sleep\",\"duration_ms\":1}"),
	  "steps[0].id: must match [a-z0-9_-]{1,64}" },
	{ ONE("{\"id\":\"end\",\"kind\":\"sleep\",\"duration_ms\":1}"),
	  "steps[0].id: \"end\" is reserved" },
	{ TWO(SLEEP, SLEEP), "steps[1].id: duplicate id \"z\" (also steps[0])" },
	{ ONE("{\"id\":\"s\",\"duration_ms\":1}"), "steps[0].kind: required" },
	{ ONE("{\"id\":\"s\",\"kind\":\"ftp\"}"), "steps[0].kind: unknown step kind \"ftp\" "
	  "(expected tool, sleep, signal, branch, transform, http, llm, parallel, foreach "
	  "or run)" },
	{ ONE("{\"id\":\"s\",\"kind\":\"sleep\",\"duration_ms\":1,\"tool\":\"x\"}"),
	  "steps[0].tool: unknown field" },
	{ ONE("{\"id\":\"s\",\"kind\":\"sleep\",\"duration_ms\":1,\"next\":\"zz\"}"),
	  "steps[0].next: unknown step \"zz\"" },
	{ ONE("{\"id\":\"s\",\"kind\":\"sleep\",\"duration_ms\":1,\"next\":3}"),
	  "steps[0].next: must be a string" },
	/* tool */
	{ ONE("{\"id\":\"t\",\"kind\":\"tool\"}"), "steps[0].tool: required" },
	{ ONE("{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"a b\"}"),
	  "steps[0].tool: must match [A-Za-z0-9_.-]{1,128}" },
	{ ONE(TOOL ",\"args\":[1]}"), "steps[0].args: must be an object" },
	{ ONE(TOOL ",\"args\":{\"u\":\"{{steps.q.output}}\"}}"),
	  "steps[0].args.u: unknown step \"q\" in template \"{{steps.q.output}}\"" },
	{ ONE(TOOL ",\"args\":{\"u\":[\"{{input.a\"]}}"),
	  "steps[0].args.u[0]: malformed template \"{{input.a\": unclosed \"{{\"" },
	{ ONE(TOOL ",\"device\":\"d\",\"capability\":true}"),
	  "steps[0]: exactly one of device or capability" },
	{ ONE(TOOL ",\"device\":\"D 1\"}"), "steps[0].device: must match [a-z0-9_-]{1,64}" },
	{ ONE(TOOL ",\"device\":1}"), "steps[0].device: must be a string" },
	{ ONE(TOOL ",\"capability\":false}"),
	  "steps[0].capability: must be true or the tool name (\"x\")" },
	{ ONE(TOOL ",\"capability\":\"y\"}"),
	  "steps[0].capability: must be true or the tool name (\"x\")" },
	{ ONE(TOOL ",\"timeout_s\":0}"), "steps[0].timeout_s: must be an integer >= 1" },
	/* retry */
	{ ONE(TOOL ",\"retry\":3}"), "steps[0].retry: must be an object" },
	{ ONE(TOOL ",\"retry\":{\"tries\":3}}"), "steps[0].retry.tries: unknown field" },
	{ ONE(TOOL ",\"retry\":{\"max_attempts\":0}}"),
	  "steps[0].retry.max_attempts: must be an integer >= 1" },
	{ ONE(TOOL ",\"retry\":{\"initial_backoff_ms\":0}}"),
	  "steps[0].retry.initial_backoff_ms: must be an integer >= 1" },
	{ TWO(SLEEP, TOOL ",\"retry\":{\"initial_backoff_ms\":500,\"max_backoff_ms\":100}}"),
	  "steps[1].retry.max_backoff_ms: must be >= initial_backoff_ms (500)" },
	{ ONE(TOOL ",\"retry\":{\"multiplier\":0.5}}"),
	  "steps[0].retry.multiplier: must be a number from 1.0 to 100.0" },
	{ ONE(TOOL ",\"retry\":{\"multiplier\":\"2\"}}"),
	  "steps[0].retry.multiplier: must be a number from 1.0 to 100.0" },
	{ ONE(TOOL ",\"retry\":{\"non_retryable\":\"x\"}}"),
	  "steps[0].retry.non_retryable: must be an array of error codes" },
	{ ONE(TOOL ",\"retry\":{\"non_retryable\":[\"a\",2]}}"),
	  "steps[0].retry.non_retryable[1]: must be a non-empty string" },
	/* sleep */
	{ ONE("{\"id\":\"s\",\"kind\":\"sleep\"}"), "steps[0].duration_ms: required" },
	{ ONE("{\"id\":\"s\",\"kind\":\"sleep\",\"duration_ms\":-1}"),
	  "steps[0].duration_ms: must be an integer >= 0" },
	/* signal */
	{ ONE("{\"id\":\"g\",\"kind\":\"signal\"}"), "steps[0].signal: required" },
	{ ONE("{\"id\":\"g\",\"kind\":\"signal\",\"signal\":\"\"}"),
	  "steps[0].signal: must match [a-z0-9_-]{1,64} (a signal name the API accepts)" },
	{ ONE("{\"id\":\"g\",\"kind\":\"signal\",\"signal\":\"Approve.v2\"}"),
	  "steps[0].signal: must match [a-z0-9_-]{1,64} (a signal name the API accepts)" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[],\"else\":\"end\",\"next\":\"end\"}"),
	  "steps[0].next: not allowed on a branch (it goes to a case's goto or to else)" },
	{ ONE("{\"id\":\"g\",\"kind\":\"signal\",\"signal\":\"ok\",\"timeout_s\":true}"),
	  "steps[0].timeout_s: must be an integer >= 1" },
	/* branch */
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"else\":\"end\"}"), "steps[0].when: required" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":{},\"else\":\"end\"}"),
	  "steps[0].when: must be an array" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[]}"), "steps[0].else: required" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[],\"else\":\"nowhere\"}"),
	  "steps[0].else: unknown step \"nowhere\"" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[1],\"else\":\"end\"}"),
	  "steps[0].when[0]: must be an object" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"goto\":\"b\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].if: required" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.a\","
	      "\"equals\":1},\"goto\":\"b\",\"then\":1}],\"else\":\"end\"}"),
	  "steps[0].when[0].then: unknown field" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"equals\":1},"
	      "\"goto\":\"b\"}],\"else\":\"end\"}"), "steps[0].when[0].if.path: required" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"output.a\","
	      "\"equals\":1},\"goto\":\"b\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].if.path: malformed path \"output.a\": expected input[.<path>] or "
	  "steps.<id>.output[.<path>]" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"steps.q.output\","
	      "\"equals\":1},\"goto\":\"b\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].if.path: unknown step \"q\"" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.a\"},"
	      "\"goto\":\"b\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].if: exactly one of equals, not_equals, gt, lt, exists" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.a\","
	      "\"gt\":1,\"lt\":5},\"goto\":\"b\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].if: exactly one of equals, not_equals, gt, lt, exists" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.a\","
	      "\"matches\":1},\"goto\":\"b\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].if.matches: unknown field" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.a\","
	      "\"gt\":\"3\"},\"goto\":\"b\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].if.gt: must be a number" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.a\","
	      "\"exists\":1},\"goto\":\"b\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].if.exists: must be a boolean" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.a\","
	      "\"lt\":3}}],\"else\":\"end\"}"), "steps[0].when[0].goto: required" },
	{ ONE("{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.a\","
	      "\"lt\":3},\"goto\":\"x\"}],\"else\":\"end\"}"),
	  "steps[0].when[0].goto: unknown step \"x\"" },
	/* transform and output */
	{ ONE("{\"id\":\"v\",\"kind\":\"transform\"}"), "steps[0].value: required" },
	{ ONE("{\"id\":\"v\",\"kind\":\"transform\",\"value\":\"{{steps.v.outputs}}\"}"),
	  "steps[0].value: malformed template \"{{steps.v.outputs}}\": expected input[.<path>] "
	  "or steps.<id>.output[.<path>]" },
	{ "{\"name\":\"a\",\"steps\":[" SLEEP "],\"output\":{\"r\":\"{{steps.q.output}}\"}}",
	  "output.r: unknown step \"q\" in template \"{{steps.q.output}}\"" },
	/* http */
	{ ONE("{\"id\":\"s\",\"kind\":\"http\"}"), "steps[0].url: required" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"ftp://x\"}"),
	  "steps[0].url: must be an http:// or https:// URL" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"method\":\"get\"}"),
	  "steps[0].method: must be one of GET, POST, PUT, PATCH, DELETE, HEAD" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"headers\":[]}"),
	  "steps[0].headers: must be an object" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x/{{steps.q.output}}\"}"),
	  "steps[0].url: unknown step \"q\" in template \"http://x/{{steps.q.output}}\"" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"expect_status\":[200,99]}"),
	  "steps[0].expect_status[1]: must be an integer between 100 and 599" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"expect_status\":[]}"),
	  "steps[0].expect_status: must be a non-empty array of status codes" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"hmac\":{}}"),
	  "steps[0].hmac.secret: required" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"hmac\":{\"secret\":\"a.b\"}}"),
	  "steps[0].hmac.secret: must be a secret name [A-Za-z0-9_-]{1,64}" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"hmac\":{\"secret_env\":\"S\"}}"),
	  "steps[0].hmac.secret_env: environment variables are no longer accepted: store the value as a tenant secret (PUT /v1/secrets/{name} or `runctl secrets set`) and name it in hmac.secret" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"hmac\":{\"secret\":\"S\","
	      "\"secret_value\":\"x\"}}"), "steps[0].hmac.secret_value: unknown field" },
	/* secret references: header values only */
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x/{{secrets.K}}\"}"),
	  "steps[0].url: malformed template \"http://x/{{secrets.K}}\": secrets.<name> may be "
	  "used only in http header values" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"body\":{\"k\":\"{{secrets.K}}\"}}"),
	  "steps[0].body.k: malformed template \"{{secrets.K}}\": secrets.<name> may be "
	  "used only in http header values" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"headers\":{\"A\":\"{{secrets.a.b}}\"}}"),
	  "steps[0].headers.A: malformed template \"{{secrets.a.b}}\": expected input[.<path>] or "
	  "steps.<id>.output[.<path>]" },
	{ ONE("{\"id\":\"t\",\"kind\":\"transform\",\"value\":\"{{secrets.K}}\"}"),
	  "steps[0].value: malformed template \"{{secrets.K}}\": secrets.<name> may be "
	  "used only in http header values" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"max_response_bytes\":0}"),
	  "steps[0].max_response_bytes: must be an integer >= 1" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"max_response_bytes\":9999999}"),
	  "steps[0].max_response_bytes: must be <= 524288 (responses are recorded in events)" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"max_redirects\":6}"),
	  "steps[0].max_redirects: must be <= 5" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"max_redirects\":-1}"),
	  "steps[0].max_redirects: must be an integer >= 0" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"headers\":{\"Bad Name\":\"v\"}}"),
	  "steps[0].headers.Bad Name: must be a header name (an RFC 7230 token of at most 128 "
	  "characters, not one the executor sets)" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"headers\":{\"Content-Length\":\"1\"}}"),
	  "steps[0].headers.Content-Length: must be a header name (an RFC 7230 token of at most 128 "
	  "characters, not one the executor sets)" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"headers\":{\"X-A\":\"a\\r\\nX-B: 1\"}}"),
	  "steps[0].headers.X-A: must not contain CR, LF or NUL" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"retry\":{\"max_attempts\":0}}"),
	  "steps[0].retry.max_attempts: must be an integer >= 1" },
	{ ONE("{\"id\":\"h\",\"kind\":\"http\",\"url\":\"http://x\",\"prompt\":\"x\"}"),
	  "steps[0].prompt: unknown field" },
	/* llm */
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"hi\"}"), "steps[0].model: required" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"hi\",\"model\":{\"model\":\"m\"}}"),
	  "steps[0].model.base_url: required" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"hi\",\"model\":{\"base_url\":\"x\","
	      "\"model\":\"m\"}}"), "steps[0].model.base_url: must be an http:// or https:// URL" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"hi\",\"model\":{\"base_url\":\"http://m\","
	      "\"model\":\"m\",\"api_key\":\"sk-1\"}}"), "steps[0].model.api_key: unknown field" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"hi\",\"model\":{\"base_url\":\"http://m\","
	      "\"model\":\"m\",\"api_key_env\":\"RS_PG_URL\"}}"),
	  "steps[0].model.api_key_env: environment variables are no longer accepted: store the value as a tenant secret (PUT /v1/secrets/{name} or `runctl secrets set`) and name it in model.api_key_secret" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"hi\",\"model\":{\"base_url\":\"http://m\","
	      "\"model\":\"m\",\"api_key_secret\":\"sk 1\"}}"),
	  "steps[0].model.api_key_secret: must be a secret name [A-Za-z0-9_-]{1,64}" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"{{secrets.K}}\",\"model\":{\"base_url\":\"http://m\","
	      "\"model\":\"m\"}}"),
	  "steps[0].prompt: malformed template \"{{secrets.K}}\": secrets.<name> may be "
	  "used only in http header values" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].prompt: required" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"{{steps.zz.output}}\","
	      "\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].prompt: unknown step \"zz\" in template \"{{steps.zz.output}}\"" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"p\",\"tools\":[\"http.get\"],"
	      "\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].tools[0]: must match [A-Za-z0-9_-]{1,64} (a model function name)" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"p\",\"tools\":[\"a\",{\"name\":\"a\"}],"
	      "\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].tools[1]: duplicate tool \"a\"" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"p\",\"tools\":[{\"name\":\"a\","
	      "\"input_schema\":1}],\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].tools[0].input_schema: must be an object (a JSON Schema)" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"p\",\"tools\":[7],"
	      "\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].tools[0]: must be a tool name or an object" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"p\",\"max_turns\":0,"
	      "\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].max_turns: must be an integer >= 1" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"p\",\"temperature\":3,"
	      "\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].temperature: must be a number between 0 and 2" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"p\",\"url\":\"http://x\","
	      "\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].url: unknown field" },
	/* bounds: every number a tenant gives is bounded (issue 15, finding 8) */
	{ "{\"name\":\"a\",\"timeout_s\":9999999999999,\"steps\":[" SLEEP "]}",
	  "timeout_s: must be at most 2592000" },
	{ "{\"name\":\"a\",\"max_steps\":100001,\"steps\":[" SLEEP "]}",
	  "max_steps: must be at most 100000" },
	{ ONE("{\"id\":\"s\",\"kind\":\"sleep\",\"duration_ms\":9223372036854775807}"),
	  "steps[0].duration_ms: must be at most 2592000000" },
	{ ONE("{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"x\",\"timeout_s\":4611686018427387904}"),
	  "steps[0].timeout_s: must be at most 2592000" },
	{ ONE("{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"x\",\"retry\":{\"max_attempts\":101}}"),
	  "steps[0].retry.max_attempts: must be at most 100" },
	{ ONE("{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"x\",\"retry\":{\"multiplier\":1e300}}"),
	  "steps[0].retry.multiplier: must be a number from 1.0 to 100.0" },
	{ ONE("{\"id\":\"l\",\"kind\":\"llm\",\"prompt\":\"p\",\"max_turns\":65,"
	      "\"model\":{\"base_url\":\"http://m\",\"model\":\"m\"}}"),
	  "steps[0].max_turns: must be at most 64" },
	/* parallel / foreach / run: children runs */
	{ ONE("{\"id\":\"p\",\"kind\":\"parallel\"}"), "steps[0].branches: required" },
	{ ONE("{\"id\":\"p\",\"kind\":\"parallel\",\"branches\":{}}"),
	  "steps[0].branches: must be a non-empty object of named step lists" },
	{ ONE("{\"id\":\"p\",\"kind\":\"parallel\",\"branches\":{\"A\":[" SLEEP "]}}"),
	  "steps[0].branches.A: branch names must match [a-z0-9_-]{1,64}" },
	{ ONE("{\"id\":\"p\",\"kind\":\"parallel\",\"branches\":{\"a\":[]}}"),
	  "steps[0].branches.a: must be a non-empty array of steps" },
	{ ONE("{\"id\":\"p\",\"kind\":\"parallel\",\"branches\":{\"a\":[{\"id\":\"z\","
	      "\"kind\":\"sleep\"}]}}"),
	  "steps[0].branches.a[0].duration_ms: required" },
	{ ONE("{\"id\":\"p\",\"kind\":\"parallel\",\"join\":3,\"branches\":{\"a\":[" SLEEP "],"
	      "\"b\":[" SLEEP "]}}"),
	  "steps[0].join: must be \"all\", \"any\" or an integer 1..2" },
	{ ONE("{\"id\":\"p\",\"kind\":\"parallel\",\"on_failure\":\"skip\",\"branches\":{\"a\":["
	      SLEEP "]}}"),
	  "steps[0].on_failure: must be \"fail\" or \"collect\"" },
	/* a branch's templates see its own steps, not the parent's */
	{ TWO(SLEEP, "{\"id\":\"p\",\"kind\":\"parallel\",\"branches\":{\"a\":[{\"id\":\"t\","
	      "\"kind\":\"transform\",\"value\":\"{{steps.z.output}}\"}]}}"),
	  "steps[1].branches.a[0].value: unknown step \"z\" in template \"{{steps.z.output}}\"" },
	{ ONE("{\"id\":\"p\",\"kind\":\"parallel\",\"branches\":{\"a\":[{\"id\":\"q\","
	      "\"kind\":\"parallel\",\"branches\":{\"a\":[{\"id\":\"r\",\"kind\":\"parallel\","
	      "\"branches\":{\"a\":[{\"id\":\"s\",\"kind\":\"parallel\",\"branches\":{\"a\":["
	      "{\"id\":\"u\",\"kind\":\"parallel\",\"branches\":{\"a\":[" SLEEP "]}}]}}]}}]}}]}}"),
	  "steps[0].branches.a[0].branches.a[0].branches.a[0].branches.a[0].branches.a: "
	  "parallel and foreach nest at most 4 deep" },
	{ ONE("{\"id\":\"f\",\"kind\":\"foreach\",\"steps\":[" SLEEP "]}"),
	  "steps[0].items: required" },
	{ ONE("{\"id\":\"f\",\"kind\":\"foreach\",\"items\":\"{{input.xs}}\"}"),
	  "steps[0].steps: required" },
	{ ONE("{\"id\":\"f\",\"kind\":\"foreach\",\"items\":5,\"steps\":[" SLEEP "]}"),
	  "steps[0].items: must be an array or a template string" },
	{ ONE("{\"id\":\"f\",\"kind\":\"foreach\",\"items\":[],\"max_concurrency\":101,"
	      "\"steps\":[" SLEEP "]}"),
	  "steps[0].max_concurrency: must be an integer 1..100" },
	{ ONE("{\"id\":\"f\",\"kind\":\"foreach\",\"items\":[],\"input\":3,\"steps\":[" SLEEP
	      "]}"),
	  "steps[0].input: must be an object or a template string" },
	{ ONE("{\"id\":\"r\",\"kind\":\"run\"}"), "steps[0].agent: required" },
	{ ONE("{\"id\":\"r\",\"kind\":\"run\",\"agent\":\"A B\"}"),
	  "steps[0].agent: must match [a-z0-9_-]{1,64}" },
	{ ONE("{\"id\":\"r\",\"kind\":\"run\",\"agent\":\"x\",\"retry\":{}}"),
	  "steps[0].retry: unknown field" },
	/* text-level: duplicate keys rejected by the strict parser */
	{ "{\"name\":\"a\",\"name\":\"b\",\"steps\":[" SLEEP "]}", "invalid JSON at line 1, "
	  "column 18 (position 18): duplicate object key near '\"name\"'" },
};

static void
test_errors(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rs_agent *a = NULL;
		char err[512] = "";
		rs_status st = rs_agent_parse_text(bad[i].def, strlen(bad[i].def), &a, err,
		                                   sizeof(err));
		CHECK(st == RS_EINVAL);
		CHECK(a == NULL);
		if (strcmp(err, bad[i].err) != 0)
			fprintf(stderr, "case %zu: %s\n", i, bad[i].def);
		CHECK_STR(err, bad[i].err);
		rs_agent_free(a);
	}
}

/* At most RS_AGENT_MAX_STEP_COUNT steps. */
static void
test_step_count(void)
{
	size_t n = RS_AGENT_MAX_STEP_COUNT + 1, cap = n * 64 + 64, off;
	char *def = malloc(cap), err[256] = "";
	rs_agent *a = NULL;

	off = (size_t)snprintf(def, cap, "{\"name\":\"many\",\"steps\":[");
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(def + off, cap - off, "%s{\"id\":\"s%zu\",\"kind\":\"sleep\","
		                        "\"duration_ms\":1}", i ? "," : "", i);
	snprintf(def + off, cap - off, "]}");
	CHECK(rs_agent_parse_text(def, strlen(def), &a, err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "steps: must have at most 1000 steps");
	free(def);
}

/* Branch evaluation on every operator. */
static void
test_branch_ops(void)
{
	const char *def =
		"{\"name\":\"b\",\"steps\":[{\"id\":\"b\",\"kind\":\"branch\",\"when\":["
		"{\"if\":{\"path\":\"input.s\",\"equals\":\"go\"},\"goto\":\"eq\"},"
		"{\"if\":{\"path\":\"input.n\",\"gt\":10},\"goto\":\"gt\"},"
		"{\"if\":{\"path\":\"input.n\",\"lt\":0},\"goto\":\"lt\"},"
		"{\"if\":{\"path\":\"input.flag\",\"exists\":true},\"goto\":\"ex\"},"
		"{\"if\":{\"path\":\"input.k\",\"not_equals\":1},\"goto\":\"ne\"}],"
		"\"else\":\"end\"},"
		"{\"id\":\"eq\",\"kind\":\"sleep\",\"duration_ms\":1},"
		"{\"id\":\"gt\",\"kind\":\"sleep\",\"duration_ms\":1},"
		"{\"id\":\"lt\",\"kind\":\"sleep\",\"duration_ms\":1},"
		"{\"id\":\"ex\",\"kind\":\"sleep\",\"duration_ms\":1},"
		"{\"id\":\"ne\",\"kind\":\"sleep\",\"duration_ms\":1}]}";
	static const struct { const char *input; int target; int ci; } cases[] = {
		{ "{\"s\":\"go\",\"k\":1}", 1, 0 },
		{ "{\"s\":\"stop\",\"n\":11,\"k\":1}", 2, 1 },
		{ "{\"n\":10,\"k\":1}", RS_STEP_END, -1 },          /* gt is strict */
		{ "{\"n\":-0.5,\"k\":1}", 3, 2 },
		{ "{\"n\":\"20\",\"k\":1}", RS_STEP_END, -1 },      /* gt needs a number */
		{ "{\"flag\":false,\"k\":1}", 4, 3 },
		{ "{\"flag\":null,\"k\":1}", RS_STEP_END, -1 },     /* exists: non-null */
		{ "{\"k\":1.0}", RS_STEP_END, -1 },                 /* 1.0 equals 1 */
		{ "{\"k\":2}", 5, 4 },
		{ "{}", 5, 4 },                                     /* missing != 1 */
	};
	rs_agent *a = NULL;
	char err[256];

	CHECK(rs_agent_parse_text(def, strlen(def), &a, err, sizeof(err)) == RS_OK);
	if (a == NULL) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ctxs[256];
		json_t *ctx;
		int ci = 99;

		snprintf(ctxs, sizeof(ctxs), "{\"input\":%s,\"steps\":{}}", cases[i].input);
		ctx = parse(ctxs);
		CHECK_INT(rs_branch_target(rs_agent_step(a, 0), ctx, &ci), cases[i].target);
		CHECK_INT(ci, cases[i].ci);
		json_decref(ctx);
	}
	/* exists:false matches a missing value. */
	{
		const char *d2 = "{\"name\":\"b\",\"steps\":[{\"id\":\"b\",\"kind\":\"branch\","
			"\"when\":[{\"if\":{\"path\":\"steps.b.output.x\",\"exists\":false},"
			"\"goto\":\"b\"}],\"else\":\"end\"}]}";
		rs_agent *b = NULL;
		json_t *ctx = parse("{\"input\":{},\"steps\":{}}");
		int ci;

		CHECK(rs_agent_parse_text(d2, strlen(d2), &b, err, sizeof(err)) == RS_OK);
		if (b != NULL) {
			CHECK_INT(rs_branch_target(rs_agent_step(b, 0), ctx, &ci), 0);
			rs_agent_free(b);
		}
		json_decref(ctx);
	}
	rs_agent_free(a);
}

/* http and llm steps: defaults and normalization. */
static void
test_effect_steps(void)
{
	const char *def =
		"{\"name\":\"fx\",\"steps\":["
		"{\"id\":\"hook\",\"kind\":\"http\",\"url\":\"http://127.0.0.1/{{input.p}}\","
		" \"headers\":{\"X-A\":\"{{input.a}}\",\"Authorization\":\"Bearer {{ secrets.TOKEN }}\"},"
		" \"body\":{\"n\":\"{{input.n}}\"},"
		" \"hmac\":{\"secret\":\"HOOK_SECRET\"},\"expect_status\":[200,201]},"
		"{\"id\":\"ask\",\"kind\":\"llm\",\"model\":{\"base_url\":\"http://m/v1\","
		" \"model\":\"gpt\",\"api_key_secret\":\"OPENAI_API_KEY\"},\"system\":\"be brief\","
		" \"prompt\":\"{{steps.hook.output.body}}\",\"tools\":[\"lookup\",{\"name\":\"calc\","
		" \"description\":\"adds\",\"input_schema\":{\"type\":\"object\"}}],\"temperature\":0}]}";
	rs_agent *a = NULL;
	const rs_step *h, *l;
	char err[512] = "";
	char *d;

	CHECK(rs_agent_parse_text(def, strlen(def), &a, err, sizeof(err)) == RS_OK);
	CHECK_STR(err, "");
	if (a == NULL)
		return;
	h = rs_agent_step(a, 0);
	l = rs_agent_step(a, 1);
	CHECK_INT(h->kind, RS_STEP_HTTP);
	CHECK_STR(rs_step_kind_name(h->kind), "http");
	CHECK_STR(h->method, "POST");
	CHECK_INT(h->timeout_s, RS_HTTP_TIMEOUT_DEFAULT_S);
	CHECK_INT(h->max_response_bytes, RS_HTTP_MAX_RESPONSE_DEFAULT);
	CHECK_STR(h->hmac_secret, "HOOK_SECRET");
	CHECK_STR(h->hmac_header, "Runstream-Signature");
	CHECK_INT(h->retry.max_attempts, 1);
	CHECK(rs_http_status_expected(h, 201));
	CHECK(!rs_http_status_expected(h, 204));
	CHECK_INT(l->kind, RS_STEP_LLM);
	CHECK_STR(rs_step_kind_name(l->kind), "llm");
	CHECK_STR(l->base_url, "http://m/v1");
	CHECK_STR(l->api_key_secret, "OPENAI_API_KEY");
	CHECK_INT(l->max_turns, RS_LLM_MAX_TURNS_DEFAULT);
	CHECK_INT(l->timeout_s, RS_LLM_TIMEOUT_DEFAULT_S);
	CHECK_INT(l->tool_timeout_s, RS_TOOL_TIMEOUT_DEFAULT_S);
	CHECK_INT(l->retry.max_attempts, RS_LLM_MAX_ATTEMPTS_DEFAULT);
	CHECK(l->temperature != NULL && json_number_value(l->temperature) == 0);
	d = rs_json_dump(l->llm_tools);
	CHECK_STR(d, "[{\"name\":\"lookup\"},{\"description\":\"adds\",\"input_schema\":"
	          "{\"type\":\"object\"},\"name\":\"calc\"}]");
	free(d);
	rs_agent_free(a);

	/* a plain GET, 2xx expected by default */
	def = "{\"name\":\"g\",\"steps\":[{\"id\":\"g\",\"kind\":\"http\",\"method\":\"GET\","
	      "\"url\":\"https://example.com/x\",\"retry\":{\"max_attempts\":2}}]}";
	CHECK(rs_agent_parse_text(def, strlen(def), &a, err, sizeof(err)) == RS_OK);
	if (a != NULL) {
		h = rs_agent_step(a, 0);
		CHECK(rs_http_status_expected(h, 204));
		CHECK(!rs_http_status_expected(h, 301));
		CHECK(h->body == NULL && h->hmac_secret == NULL);
		CHECK_INT(h->retry.max_attempts, 2);
		rs_agent_free(a);
	}
}

int
main(void)
{
	test_step_count();
	test_valid();
	test_effect_steps();
	test_version();
	test_errors();
	test_branch_ops();
	return check_report("test_agent");
}
