/*
 * cmd_diff.c - `runctl diff <run_a> <run_b>`: where two runs of the same
 * agent went different ways. Compares the step paths (each step outcome,
 * in order: step id, attempt, success or failure, output or error code)
 * and shows the first difference with what both runs did there. Like
 * diff(1): exit 0 when the paths agree, 1 when they differ.
 * An argument that names a file (contains '/' or ends in .ndjson) is read
 * as an export, so two exported runs can be compared offline.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "timeline.h"
#include "runctl.h"

static const char *const diff_flags[] = { "from-pg", "pg", "tenant", NULL };

static int
is_file_arg(const char *a)
{
	size_t n = strlen(a);

	return strchr(a, '/') != NULL || (n > 7 && strcmp(a + n - 7, ".ndjson") == 0);
}

static int
load(int argc, char **argv, const char *what, hist_buf *h, rs_nats *n)
{
	hist_src src;
	char err[512];
	int rc;

	memset(&src, 0, sizeof(src));
	if (is_file_arg(what)) {
		src.file = what;
	} else if (rs_ctl_has(argc, argv, "from-pg")) {
		src.run_id = what;
		src.pg_url = rs_ctl_flag(argc, argv, "pg", getenv("RS_PG_URL") ? getenv("RS_PG_URL")
		                         : "postgresql://127.0.0.1:5432/runstream");
	} else {
		if (n->nc == NULL && (rc = rs_ctl_nats(n, argc, argv)) != RC_OK)
			return rc;
		src.run_id = what;
		src.tenant = rs_ctl_flag(argc, argv, "tenant", NULL);
		src.nats = n;
	}
	rc = rs_ctl_hist_read(&src, rs_ctl_hist_collect, h, NULL, err, sizeof(err));
	if (rc != RC_OK)
		return rs_ctl_out_err(rc, "diff", "%s", err);
	return RC_OK;
}

static const char *
agent_of(const hist_buf *h, int version)
{
	if (h->n == 0 || h->ev[0].type != RS_EV_RUN_CREATED)
		return "?";
	return version ? h->ev[0].d.run_created.version : h->ev[0].d.run_created.agent;
}

static void
print_path_row(const char *label, const tl_step *s, size_t n, long i)
{
	char buf[256];

	if ((size_t)i < n)
		rs_ctl_tl_step_format(&s[i], buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "(no more steps)");
	printf("  %-4s %s\n", label, buf);
}

static json_t *
step_json(const tl_step *s, size_t n, long i)
{
	char buf[256];

	if ((size_t)i >= n)
		return json_null();
	rs_ctl_tl_step_format(&s[i], buf, sizeof(buf));
	return json_pack("{s:s,s:I,s:b,s:I,s:s}", "step", s[i].step, "attempt", (json_int_t)s[i].attempt,
	                 "failed", s[i].failed, "seq", (json_int_t)s[i].seq, "text", buf);
}

static int
report(const hist_buf *a, const hist_buf *b, const char *na, const char *nb)
{
	size_t ca = rs_ctl_tl_step_path(a->ev, a->n, NULL, 0), cb = rs_ctl_tl_step_path(b->ev, b->n, NULL, 0);
	tl_step *sa = calloc(ca + 1, sizeof(*sa)), *sb = calloc(cb + 1, sizeof(*sb));
	tl_summary ta, tb;
	long at;
	int rc;

	if (sa == NULL || sb == NULL) {
		free(sa);
		free(sb);
		return rs_ctl_out_err(RC_FAIL, "diff", "out of memory");
	}
	rs_ctl_tl_step_path(a->ev, a->n, sa, ca);
	rs_ctl_tl_step_path(b->ev, b->n, sb, cb);
	rs_ctl_tl_summary_init(&ta);
	rs_ctl_tl_summary_init(&tb);
	for (size_t i = 0; i < a->n; i++)
		rs_ctl_tl_summary_add(&ta, &a->ev[i]);
	for (size_t i = 0; i < b->n; i++)
		rs_ctl_tl_summary_add(&tb, &b->ev[i]);
	at = rs_ctl_tl_step_diverge(sa, ca, sb, cb);
	rc = at < 0 ? RC_OK : RC_FAIL;
	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:b,s:o,s:o,s:I}", "same", at < 0, "a", rs_ctl_tl_summary_json(&ta),
		                        "b", rs_ctl_tl_summary_json(&tb), "common_steps",
		                        (json_int_t)(at < 0 ? (long)ca : at));
		if (at >= 0) {
			json_object_set_new(doc, "step_a", step_json(sa, ca, at));
			json_object_set_new(doc, "step_b", step_json(sb, cb, at));
		}
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
		goto cleanup;
	}
	printf("a: %s  %s@%s  %s, %zu step outcomes\n", na, agent_of(a, 0), agent_of(a, 1), ta.status, ca);
	printf("b: %s  %s@%s  %s, %zu step outcomes\n", nb, agent_of(b, 0), agent_of(b, 1), tb.status, cb);
	if (strcmp(agent_of(a, 0), agent_of(b, 0)) != 0)
		printf("%snote: different agents%s\n", rs_ctl_out_on(OUT_YELLOW), rs_ctl_out_off());
	else if (strcmp(agent_of(a, 1), agent_of(b, 1)) != 0)
		printf("%snote: different versions of %s%s\n", rs_ctl_out_on(OUT_YELLOW), agent_of(a, 0), rs_ctl_out_off());
	if (at < 0) {
		printf("%ssame path%s: both runs took the same %zu step outcomes\n", rs_ctl_out_on(OUT_GREEN),
		       rs_ctl_out_off(), ca);
		goto cleanup;
	}
	printf("%spaths diverge at step outcome %ld%s (after %ld in common):\n", rs_ctl_out_on(OUT_RED), at + 1,
	       rs_ctl_out_off(), at);
	if (at > 0) {
		char buf[256];
		rs_ctl_tl_step_format(&sa[at - 1], buf, sizeof(buf));
		printf("  last common: %s\n", buf);
	}
	print_path_row("a", sa, ca, at);
	print_path_row("b", sb, cb, at);
cleanup:
	free(sa);
	free(sb);
	return rc;
}

int
rs_ctl_cmd_diff(int argc, char **argv)
{
	hist_buf a = { 0 }, b = { 0 };
	rs_nats n;
	int rc;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, "diff", diff_flags)) != RC_OK)
		return rc;
	if (rs_ctl_nargs(argc, argv) != 2)
		return rs_ctl_out_err(RC_USAGE, "diff", "give two runs: runctl diff <run_a> <run_b>");
	if ((rc = load(argc, argv, rs_ctl_arg(argc, argv, 0), &a, &n)) == RC_OK &&
	    (rc = load(argc, argv, rs_ctl_arg(argc, argv, 1), &b, &n)) == RC_OK)
		rc = report(&a, &b, rs_ctl_arg(argc, argv, 0), rs_ctl_arg(argc, argv, 1));
	rs_ctl_hist_buf_free(&a);
	rs_ctl_hist_buf_free(&b);
	rs_nats_close(&n, 1000);
	return rc;
}
