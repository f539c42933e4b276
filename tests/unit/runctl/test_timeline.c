/*
 * test_timeline.c - the pure timeline module: deltas, rows, marks,
 * summaries, step paths and their divergence, on hand-built events.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "timeline.h"
#include "runctl.h"

static int failures;

#define CHECK_STR(got, want) do { \
	if (strcmp((got), (want)) != 0) { \
		fprintf(stderr, "%s:%d: got  \"%s\"\n%*swant \"%s\"\n", __FILE__, __LINE__, (got), \
		        (int)strlen(__FILE__) + 6, "", (want)); \
		failures++; \
	} \
} while (0)
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); failures++; } } while (0)

static void
test_delta(void)
{
	char b[32];

	tl_format_delta(0, b, sizeof(b));
	CHECK_STR(b, "+0.000s");
	tl_format_delta(1234, b, sizeof(b));
	CHECK_STR(b, "+1.234s");
	tl_format_delta(123456, b, sizeof(b));
	CHECK_STR(b, "+2m03.456s");
	tl_format_delta(5 * 3600000 + 2 * 60000 + 3000, b, sizeof(b));
	CHECK_STR(b, "+5h02m03s");
	tl_format_delta(-1500, b, sizeof(b));
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
	tl_row_of(&ev, 1767323045000LL, &r);
	CHECK(r.mark == TL_FAIL);
	CHECK(r.attempt == 2);
	CHECK_STR(r.summary, "upstream_503: CRM down (transient, retryable)");
	tl_format_row(&r, "<", ">", line, sizeof(line));
	CHECK_STR(line, "<!   7  2026-01-02T03:04:06.500Z  +1.500s      step.failed           sync"
	          "            2  upstream_503: CRM down (transient, retryable)>");

	base(&ev, RS_EV_TIMER_SCHEDULED, 3, 1767323045000LL);
	ev.d.timer_scheduled.purpose = RS_TIMER_SLEEP;
	ev.d.timer_scheduled.step_id = "wait";
	ev.d.timer_scheduled.attempt = 1;
	ev.d.timer_scheduled.due_at = 1767323050000LL;
	tl_row_of(&ev, 1767323045000LL, &r);
	CHECK(r.mark == TL_WAIT);
	CHECK_STR(r.summary, "sleep due in 5.000s");

	/* Long JSON is cut, deterministically. */
	base(&ev, RS_EV_RUN_COMPLETED, 9, 1767323045000LL);
	ev.d.run_completed.output = json_pack("{s:s}", "text", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	tl_row_of(&ev, 1767323045000LL, &r);
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
	tl_summary_init(&s);
	for (int i = 0; i < 4; i++)
		tl_summary_add(&s, &ev[i]);
	tl_summary_format(&s, buf, sizeof(buf));
	CHECK_STR(buf, "completed after 2.100s: 4 events, 1 step completed, 1 retry");
	CHECK_STR(s.agent, "demo");

	CHECK(tl_step_path(ev, 4, a, 4) == 1);
	CHECK(tl_step_diverge(a, 1, a, 1) == -1);
	memcpy(b, a, sizeof(a));
	b[0].output = o2;
	CHECK(tl_step_diverge(a, 1, b, 1) == 0);
	CHECK(tl_step_diverge(a, 1, b, 0) == 0);
	tl_step_format(&a[0], buf, sizeof(buf));
	CHECK_STR(buf, "x#1 ok 1");
	json_decref(o1);
	json_decref(o2);
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

	CHECK(hist_scan(bad, sizeof(bad) - 1, "t.ndjson", count_fn, &n, &agent, err, sizeof(err)) == RC_FAIL);
	CHECK(strncmp(err, "t.ndjson:3: not a Runstream event", 33) == 0);
	CHECK(json_is_object(agent));
	json_decref(agent);
	CHECK(hist_scan("\n\n", 2, "e", count_fn, &n, NULL, err, sizeof(err)) == RC_NOTFOUND);
	CHECK(n == 0);
}

int
main(void)
{
	test_delta();
	test_rows();
	test_summary_and_path();
	test_scan();
	if (failures)
		fprintf(stderr, "%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
