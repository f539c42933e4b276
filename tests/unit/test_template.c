/*
 * test_template.c - unit tests of rs_template: type-keeping vs
 * interpolation, missing values, nested values, syntax errors and the
 * reference check used by agent validation.
 */
#include "rs_json.h"
#include "rs_template.h"
#include "world.h"

#include <stdlib.h>
#include <string.h>

static json_t *ctx;

/* Render template text tmpl (JSON) and compare with want (canonical JSON). */
static void
render_case(const char *tmpl, const char *want, int line)
{
	json_t *t = parse(tmpl), *out = NULL;
	char err[256] = "";
	char *got;

	if (rs_template_render(t, ctx, &out, err, sizeof(err)) != RS_OK) {
		fprintf(stderr, "line %d: render %s failed: %s\n", line, tmpl, err);
		CHECK(0);
		json_decref(t);
		return;
	}
	got = rs_json_dump(out);
	if (strcmp(got, want) != 0)
		fprintf(stderr, "line %d: template %s\n", line, tmpl);
	CHECK_STR(got, want);
	free(got);
	json_decref(out);
	json_decref(t);
}

static void
test_render(void)
{
	/* Whole-string templates keep the JSON type. */
	render_case("\"{{input.n}}\"", "42", __LINE__);
	render_case("\"{{input.f}}\"", "1.5", __LINE__);
	render_case("\"{{input.b}}\"", "true", __LINE__);
	render_case("\"{{input.obj}}\"", "{\"k\":[1,2]}", __LINE__);
	render_case("\"{{input.arr}}\"", "[\"x\",\"y\"]", __LINE__);
	render_case("\"{{input.s}}\"", "\"hi\"", __LINE__);
	render_case("\"{{input.nul}}\"", "null", __LINE__);
	render_case("\"{{ input.n }}\"", "42", __LINE__);
	render_case("\"{{input}}\"", "{\"arr\":[\"x\",\"y\"],\"b\":true,\"f\":1.5,\"n\":42,"
	            "\"nul\":null,\"obj\":{\"k\":[1,2]},\"s\":\"hi\"}", __LINE__);
	render_case("\"{{steps.fetch.output}}\"", "{\"code\":200,\"items\":[{\"id\":7}]}", __LINE__);
	render_case("\"{{steps.fetch.output.items.0.id}}\"", "7", __LINE__);
	/* Missing whole value: null. */
	render_case("\"{{input.nope}}\"", "null", __LINE__);
	render_case("\"{{steps.other.output}}\"", "null", __LINE__);
	render_case("\"{{input.arr.5}}\"", "null", __LINE__);
	/* Interpolation: text. */
	render_case("\"n={{input.n}}\"", "\"n=42\"", __LINE__);
	render_case("\"{{input.s}} {{input.s}}\"", "\"hi hi\"", __LINE__);
	render_case("\"o={{input.obj}}\"", "\"o={\\\"k\\\":[1,2]}\"", __LINE__);
	render_case("\"a={{input.arr}}!\"", "\"a=[\\\"x\\\",\\\"y\\\"]!\"", __LINE__);
	render_case("\"b={{input.b}} f={{input.f}}\"", "\"b=true f=1.5\"", __LINE__);
	render_case("\"[{{input.nope}}]\"", "\"[]\"", __LINE__);
	render_case("\"[{{input.nul}}]\"", "\"[]\"", __LINE__);
	render_case("\"code {{steps.fetch.output.code}}\"", "\"code 200\"", __LINE__);
	/* Nested structures: every string value, not keys. */
	render_case("{\"{{input.s}}\":\"{{input.n}}\",\"l\":[\"{{input.b}}\",\"x{{input.n}}\",3]}",
	            "{\"l\":[true,\"x42\",3],\"{{input.s}}\":42}", __LINE__);
	/* Not templates. */
	render_case("\"plain\"", "\"plain\"", __LINE__);
	render_case("\"a }} b\"", "\"a }} b\"", __LINE__);
	render_case("7", "7", __LINE__);
	render_case("null", "null", __LINE__);
	/* Two templates are interpolation even when the string is only them. */
	render_case("\"{{input.n}}{{input.n}}\"", "\"4242\"", __LINE__);
}

static int
known(const char *id, void *ud)
{
	(void)ud;
	return strcmp(id, "fetch") == 0 || strcmp(id, "a-b_1") == 0;
}

static void
check_case(const char *tmpl, const char *want_err, int line)
{
	json_t *t = parse(tmpl);
	char err[512] = "";
	rs_status st = rs_template_check(t, "steps[1].args", known, NULL, err, sizeof(err));

	if (want_err == NULL) {
		if (st != RS_OK)
			fprintf(stderr, "line %d: unexpected error %s\n", line, err);
		CHECK(st == RS_OK);
	} else {
		CHECK(st == RS_EINVAL);
		if (strcmp(err, want_err) != 0)
			fprintf(stderr, "line %d\n", line);
		CHECK_STR(err, want_err);
	}
	json_decref(t);
}

static void
test_check(void)
{
	check_case("{\"a\":\"{{input.x}}\",\"b\":[\"{{steps.fetch.output.y}}\"]}", NULL, __LINE__);
	check_case("\"{{steps.a-b_1.output}}\"", NULL, __LINE__);
	check_case("\"{{ input }}\"", NULL, __LINE__);
	check_case("{\"url\":\"{{input\"}", "steps[1].args.url: malformed template "
	           "\"{{input\": unclosed \"{{\"", __LINE__);
	check_case("[1,\"{{steps.nope.output}}\"]", "steps[1].args[1]: unknown step \"nope\" "
	           "in template \"{{steps.nope.output}}\"", __LINE__);
	check_case("\"{{}}\"", "steps[1].args: malformed template \"{{}}\": expected "
	           "input[.<path>] or steps.<id>.output[.<path>]", __LINE__);
	check_case("\"{{steps.fetch}}\"", "steps[1].args: malformed template \"{{steps.fetch}}\": "
	           "expected input[.<path>] or steps.<id>.output[.<path>]", __LINE__);
	check_case("\"{{steps.fetch.result}}\"", "steps[1].args: malformed template "
	           "\"{{steps.fetch.result}}\": expected input[.<path>] or "
	           "steps.<id>.output[.<path>]", __LINE__);
	check_case("\"{{env.HOME}}\"", "steps[1].args: malformed template \"{{env.HOME}}\": "
	           "expected input[.<path>] or steps.<id>.output[.<path>]", __LINE__);
	check_case("\"{{input..a}}\"", "steps[1].args: malformed template \"{{input..a}}\": "
	           "empty path segment (expected input[.<path>] or steps.<id>.output[.<path>])",
	           __LINE__);
	check_case("\"{{input.a.}}\"", "steps[1].args: malformed template \"{{input.a.}}\": "
	           "expected input[.<path>] or steps.<id>.output[.<path>]", __LINE__);
	check_case("\"{{input.a b}}\"", "steps[1].args: malformed template \"{{input.a b}}\": "
	           "invalid character ' ' in path", __LINE__);
	check_case("\"{{input.{{a}}\"", "steps[1].args: malformed template \"{{input.{{a}}\": "
	           "nested \"{{\"", __LINE__);
	check_case("{\"k\":{\"deep\":[{\"x\":\"{{steps.Fetch.output}}\"}]}}",
	           "steps[1].args.k.deep[0].x: malformed template \"{{steps.Fetch.output}}\": "
	           "expected input[.<path>] or steps.<id>.output[.<path>]", __LINE__);
}

static void
test_parse_expr(void)
{
	char id[RS_TEMPLATE_MAX_ID + 1], err[128];

	CHECK(rs_template_parse_expr("steps.fetch.output.a", 20, id, sizeof(id), err,
	                             sizeof(err)) == RS_OK);
	CHECK_STR(id, "fetch");
	CHECK(rs_template_parse_expr("input.a", 7, id, sizeof(id), err, sizeof(err)) == RS_OK);
	CHECK_STR(id, "");
	CHECK(rs_template_parse_expr("inputs", 6, id, sizeof(id), err, sizeof(err)) == RS_EINVAL);
}

/* {{secrets.NAME}}: never resolved by rendering (the executor does it),
 * written back canonically; accepted only by rs_template_check_secrets. */
static void
test_secrets(void)
{
	char name[RS_TEMPLATE_MAX_ID + 1], err[256];
	json_t *t;

	render_case("\"{{secrets.KEY}}\"", "\"{{secrets.KEY}}\"", __LINE__);
	render_case("\"{{ secrets.KEY }}\"", "\"{{secrets.KEY}}\"", __LINE__);
	render_case("\"Bearer {{secrets.tok_1}} for {{input.s}}\"",
	            "\"Bearer {{secrets.tok_1}} for hi\"", __LINE__);
	/* Even with a "secrets" member in the context: nothing is looked up. */
	{
		json_t *c2 = parse("{\"input\":{},\"steps\":{},\"secrets\":{\"KEY\":\"leak\"}}");
		json_t *out = NULL;
		t = parse("\"x {{secrets.KEY}}\"");
		CHECK(rs_template_render(t, c2, &out, err, sizeof(err)) == RS_OK);
		CHECK_STR(json_string_value(out), "x {{secrets.KEY}}");
		json_decref(out);
		json_decref(t);
		json_decref(c2);
	}
	CHECK(rs_template_secret_ref("secrets.A-b_9", 13, name, sizeof(name)));
	CHECK_STR(name, "A-b_9");
	CHECK(!rs_template_secret_ref("secrets.", 8, name, sizeof(name)));
	CHECK(!rs_template_secret_ref("secrets.a.b", 11, name, sizeof(name)));
	CHECK(!rs_template_secret_ref("secret.a", 8, name, sizeof(name)));
	/* Plain check refuses, the header check accepts. */
	t = parse("{\"Authorization\":\"Bearer {{secrets.K}}\"}");
	CHECK(rs_template_check(t, "h", NULL, NULL, err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "h.Authorization: malformed template \"Bearer {{secrets.K}}\": "
	          "secrets.<name> may be used only in http header values");
	CHECK(rs_template_check_secrets(t, "h", NULL, NULL, err, sizeof(err)) == RS_OK);
	json_decref(t);
	/* A branch path cannot name a secret. */
	CHECK(rs_template_parse_expr("secrets.K", 9, name, sizeof(name), err, sizeof(err)) ==
	      RS_EINVAL);
}

int
main(void)
{
	ctx = parse("{\"input\":{\"n\":42,\"f\":1.5,\"b\":true,\"s\":\"hi\",\"nul\":null,"
	            "\"obj\":{\"k\":[1,2]},\"arr\":[\"x\",\"y\"]},"
	            "\"steps\":{\"fetch\":{\"output\":{\"code\":200,\"items\":[{\"id\":7}]}}}}");
	test_render();
	test_check();
	test_parse_expr();
	test_secrets();
	json_decref(ctx);
	return check_report("test_template");
}
