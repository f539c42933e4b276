/*
 * test_agent.c - unit tests of agent definitions: a full valid definition
 * and its defaults, the version hash (stable under key order and
 * whitespace), and one exact error message per validation rule.
 */
#include "rs_agent.h"
#include "rs_json.h"
#include "sm_check.h"

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

static json_t *
parse(const char *s)
{
	char err[256];
	json_t *v = NULL;

	if (rs_json_parse(s, strlen(s), &v, err, sizeof(err)) != RS_OK) {
		fprintf(stderr, "bad test JSON: %s\n%s\n", err, s);
		abort();
	}
	return v;
}

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
	{ ONE("{\"id\":\"s\",\"kind\":\"http\"}"), "steps[0].kind: unknown step kind \"http\" "
	  "(expected tool, sleep, signal, branch or transform)" },
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
	  "steps[0].retry.multiplier: must be a number >= 1.0" },
	{ ONE(TOOL ",\"retry\":{\"multiplier\":\"2\"}}"),
	  "steps[0].retry.multiplier: must be a number >= 1.0" },
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
	  "steps[0].signal: must match [A-Za-z0-9_.-]{1,128}" },
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

int
main(void)
{
	test_valid();
	test_version();
	test_errors();
	test_branch_ops();
	return sm_report("test_agent");
}
