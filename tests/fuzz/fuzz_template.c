/*
 * fuzz_template.c - templates (common/rs_template.c): the "{{...}}"
 * expressions inside agent definitions, parsed when a tenant pushes an
 * agent and rendered with run input and step outputs on every step.
 *
 * The input is used three ways: as a JSON template (when it parses), as one
 * string template (when it is UTF-8), and as a bare expression. Each
 * template that rs_template_check accepts is rendered against a fixed
 * context; rendering must then succeed (rs_template.h: it fails only on a
 * malformed template) and be pure (twice the same bytes).
 */
#include "fuzz.h"
#include "rs_json.h"
#include "rs_template.h"

static json_t *ctx;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	json_error_t je;

	fuzz_init();
	ctx = json_loads("{\"input\": {\"a\": 1, \"s\": \"text\", \"n\": null, \"t\": true,"
	                 " \"arr\": [1, \"two\", {\"x\": [3]}], \"o\": {\"k\": \"v\", \"0\": 0}},"
	                 " \"steps\": {\"a\": {\"output\": {\"x\": [1, 2], \"y\": \"z\"}},"
	                 " \"b\": {\"output\": \"plain\"}, \"c\": {\"output\": null},"
	                 " \"d-1_x\": {\"output\": [[], {}]}}}", 0, &je);
	if (ctx == NULL)
		abort();
	return 0;
}

/* Steps a, b, c, d-1_x exist; e exists in the agent but has no output yet. */
static int
known(const char *step_id, void *ud)
{
	return strcmp(step_id, "a") == 0 || strcmp(step_id, "b") == 0 ||
	       strcmp(step_id, "c") == 0 || strcmp(step_id, "d-1_x") == 0 ||
	       strcmp(step_id, "e") == 0;
}

static void
check_and_render(json_t *tmpl)
{
	char err[512] = "", *d1, *d2;
	json_t *o1 = NULL, *o2 = NULL;

	if (rs_template_check(tmpl, "t", known, NULL, err, sizeof(err)) != RS_OK) {
		FUZZ_CHECK(err[0] != '\0');
		return;
	}
	if (rs_template_render(tmpl, ctx, &o1, err, sizeof(err)) != RS_OK)
		fprintf(stderr, "checked template does not render: %s\n", err);
	FUZZ_CHECK(o1 != NULL);
	FUZZ_CHECK(rs_template_render(tmpl, ctx, &o2, err, sizeof(err)) == RS_OK);
	d1 = rs_json_dump(o1);
	d2 = rs_json_dump(o2);
	FUZZ_CHECK(d1 != NULL && d2 != NULL && strcmp(d1, d2) == 0);
	free(d1);
	free(d2);
	json_decref(o1);
	json_decref(o2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	char err[256] = "", id[RS_TEMPLATE_MAX_ID + 1];
	json_t *v = NULL;

	if (rs_json_parse(buf, size, &v, err, sizeof(err)) == RS_OK) {
		check_and_render(v);
		json_decref(v);
	}
	if ((v = json_stringn(buf, size)) != NULL) {
		check_and_render(v);
		json_decref(v);
	}
	if (rs_template_parse_expr(buf, size, id, sizeof(id), err, sizeof(err)) == RS_OK) {
		char *expr = fuzz_cstr(data, size);
		FUZZ_CHECK(strlen(id) <= RS_TEMPLATE_MAX_ID);
		/* borrowed, may be NULL: only must not crash */
		(void)rs_template_lookup(ctx, expr);
		free(expr);
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	return 0;
}
