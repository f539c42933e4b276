/*
 * test_view.c - the one fold (common/rs_view.c) against runctl's timeline
 * (runctl/timeline.c) over every recorded history in tests/fixtures/ and
 * the bench/replay history shape (made here through the simulator), plus
 * every event type of the codec fixtures (tests/unit/event_fixtures.c): the
 * two read the same events independently, so where they agree the meaning
 * of an event is held in two places that must not drift (the status rule
 * itself is shared: the timeline takes it from rs_view_status_next). Checked per
 * history: the final status, step outcomes in order (step, attempt,
 * success/failure, output, error code) against rs_ctl_tl_step_path, counts of
 * completed/failed attempts and tool calls against tl_summary, last_seq,
 * and the rendered JSON's shape (every field GET /v1/runs/{id} has).
 * Also: gaps and repeats are refused, and a prefix of a history ends
 * where it should (waiting_on, no terminal).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "event_fixtures.h"
#include "rs_event.h"
#include "rs_json.h"
#include "rs_view.h"
#include "sim.h"
#include "timeline.h"


typedef struct {
	rs_event *ev;
	size_t n, cap;
} evs;

static void
load_file(FILE *f, const char *path, evs *out)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	while ((len = getline(&line, &cap, f)) > 0) {
		rs_event ev;
		char err[256];

		if (strstr(line, "\"runstream_export\"") != NULL)
			continue;   /* the export header: the agent */
		if (rs_event_decode(line, (size_t)len, &ev, err, sizeof(err)) != RS_OK) {
			CHECKF(0, "%s: undecodable line: %s", path, err);
			continue;
		}
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 64;
			out->ev = realloc(out->ev, out->cap * sizeof(*out->ev));
		}
		out->ev[out->n++] = ev;
	}
	free(line);
}

static void
load(const char *path, evs *out)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		perror(path);
		exit(1);
	}
	load_file(f, path, out);
	fclose(f);
}

static void
check_history(const char *name, evs *h)
{
	rs_view v;
	tl_summary s;
	tl_step path[4096];
	size_t np, k = 0;
	unsigned ok = 0, failed = 0;
	json_t *j;
	static const char *fields[] = { "run_id", "status", "agent", "version", "input", "output",
		"error", "created_at", "started_at", "finished_at", "updated_at", "last_seq",
		"current_step", "idempotency_key", "cancel_reason", "timeout_s", "steps",
		"tool_calls", "waiting_on" };

	rs_view_init(&v);
	rs_ctl_tl_summary_init(&s);
	for (size_t i = 0; i < h->n; i++) {
		rs_status st = rs_view_apply(&v, &h->ev[i]);
		CHECKF(st == RS_OK, "%s: event %zu refused (%s)", name, i + 1, rs_status_str(st));
		rs_ctl_tl_summary_add(&s, &h->ev[i]);
		/* A repeat is recognised, not folded twice. */
		CHECKF(rs_view_apply(&v, &h->ev[i]) == RS_EEXISTS, "%s: repeat of %zu", name, i + 1);
	}
	CHECKF(strcmp(v.status, s.status) == 0, "%s: view %s, timeline %s", name, v.status, s.status);
	CHECKF(v.last_seq == s.last_seq, "%s: last_seq", name);
	CHECKF(rs_view_terminal(&v) && rs_view_waits_on(&v) == NULL, "%s: ends terminal", name);
	np = rs_ctl_tl_step_path(h->ev, h->n, path, sizeof(path) / sizeof(path[0]));
	/* The view's attempts that ended (completed/failed), in the order
	 * they ended, are the timeline's step path. */
	for (size_t i = 0; i < v.nsteps; i++) {
		if (strcmp(v.steps[i].status, "completed") == 0)
			ok++;
		else if (strcmp(v.steps[i].status, "failed") == 0)
			failed++;
	}
	CHECKF(ok == s.steps_completed && failed == s.steps_failed,
	      "%s: attempts ok %u/%u failed %u/%u", name, ok, s.steps_completed, failed,
	      s.steps_failed);
	CHECKF(ok + failed == np, "%s: %u outcomes vs path %zu", name, ok + failed, np);
	CHECKF(v.ncalls == s.tool_calls, "%s: tool calls %zu vs %u", name, v.ncalls, s.tool_calls);
	for (size_t p = 0; p < np; p++) {
		const rs_view_step *vs = NULL;
		for (k = 0; k < v.nsteps; k++)
			if (strcmp(v.steps[k].step_id, path[p].step) == 0 &&
			    v.steps[k].attempt == path[p].attempt)
				vs = &v.steps[k];
		CHECKF(vs != NULL, "%s: step %s/%lld missing", name, path[p].step,
		      (long long)path[p].attempt);
		if (vs == NULL)
			continue;
		CHECKF(strcmp(vs->status, path[p].failed ? "failed" : "completed") == 0,
		      "%s: step %s status %s", name, vs->step_id, vs->status);
		if (!path[p].failed)
			CHECKF(json_equal(vs->output ? vs->output : json_null(),
			                 path[p].output ? path[p].output : json_null()),
			      "%s: step %s output", name, vs->step_id);
		else
			CHECKF(strcmp(json_string_value(json_object_get(vs->error, "code")),
			             path[p].error->code) == 0, "%s: step %s error", name, vs->step_id);
	}
	j = rs_view_json(&v);
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
		CHECKF(json_object_get(j, fields[f]) != NULL, "%s: JSON lacks %s", name, fields[f]);
	CHECKF(strcmp(json_string_value(json_object_get(j, "status")), s.status) == 0, "%s", name);
	json_decref(j);
	rs_view_free(&v);

	/* Every prefix folds; a non-terminal one is not finished, and a gap
	 * (skipping one event) is refused without changing the view. */
	for (size_t cut = 1; cut < h->n; cut++) {
		rs_view p;
		rs_view_init(&p);
		for (size_t i = 0; i < cut; i++)
			rs_view_apply(&p, &h->ev[i]);
		if (!rs_event_type_terminal(h->ev[cut - 1].type) && cut + 1 < h->n) {
			CHECKF(rs_view_apply(&p, &h->ev[cut + 1]) == RS_EINVAL, "%s: gap at %zu", name, cut);
			CHECKF(p.last_seq == cut, "%s: gap changed the view", name);
		}
		j = rs_view_json(&p);
		char *text = rs_json_dump(j);
		CHECKF(text != NULL, "%s: prefix %zu renders", name, cut);
		free(text);
		json_decref(j);
		rs_view_free(&p);
	}
}

/* The bench/replay history (bench/replay/gen_history.c: tool call, sleep
 * timer, branch, transform; one run in four fails its call and retries),
 * made by the real state machine through the simulator, run by run. */
static const char bench_def[] =
	"{\"name\":\"order-check\",\"steps\":["
	"{\"id\":\"fetch\",\"kind\":\"tool\",\"tool\":\"http.get\",\"device\":\"laptop-1\","
	"\"args\":{\"url\":\"https://shop.example/orders/{{input.order_id}}\"},\"timeout_s\":30,"
	"\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":500}},"
	"{\"id\":\"cool-off\",\"kind\":\"sleep\",\"duration_ms\":5000},"
	"{\"id\":\"route\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"steps.fetch.output.paid\","
	"\"equals\":true},\"goto\":\"ship\"}],\"else\":\"hold\"},"
	"{\"id\":\"hold\",\"kind\":\"transform\",\"value\":{\"action\":\"hold\"},\"next\":\"end\"},"
	"{\"id\":\"ship\",\"kind\":\"transform\",\"value\":{\"action\":\"ship\",\"order\":\"{{input.order_id}}\"}}"
	"]}";

static int
bench_histories(void)
{
	int n = 0;

	for (unsigned long i = 1; i <= 24; i++) {
		char run_id[40], input[64], name[64], *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		evs h = { 0 };
		sim s;

		snprintf(run_id, sizeof(run_id), "0190f5e4-7a3b-7c1d-8e2f-%012lx", i);
		snprintf(input, sizeof(input), "{\"order_id\":\"A-%lu\"}", i);
		sim_init(&s, bench_def, run_id, "bench", 1767323045000LL + (long long)i * 1000, f, 0);
		sim_start(&s, input, "orch-1");
		sim_delivered(&s, 10);
		if (i % 4 == 0) {
			sim_result_err(&s, 200, "upstream_503", "service unavailable", 1);
			sim_fire(&s, RS_TIMER_RETRY, 3);
			sim_delivered(&s, 10);
		}
		sim_result_ok(&s, 300, i % 3 ? "{\"paid\":true,\"total\":12.5}" : "{\"paid\":false}");
		sim_fire(&s, RS_TIMER_SLEEP, 5);
		sim_free(&s);
		fflush(f);
		rewind(f);
		snprintf(name, sizeof(name), "bench-run-%lu", i);
		load_file(f, name, &h);
		fclose(f);
		free(buf);
		check_history(name, &h);
		if (i % 4 == 0) {
			/* the failed call and its retry: two attempts of fetch */
			rs_view v;
			rs_view_init(&v);
			for (size_t k = 0; k < h.n; k++)
				rs_view_apply(&v, &h.ev[k]);
			CHECKF(v.ncalls == 2 && strcmp(v.calls[0].status, "failed") == 0 &&
			      strcmp(v.calls[1].status, "completed") == 0, "%s: calls", name);
			CHECKF(v.nsteps >= 2 && v.steps[0].attempt == 1 && !v.steps[0].latest &&
			      strcmp(v.steps[0].status, "failed") == 0 && v.steps[1].attempt == 2,
			      "%s: attempts", name);
			rs_view_free(&v);
		}
		for (size_t k = 0; k < h.n; k++)
			rs_event_free(&h.ev[k]);
		free(h.ev);
		n++;
	}
	return n;
}

/* Every event type of the codec fixtures (tests/unit/event_fixtures.c),
 * minimal and full, after a run.created: folded without error, the status
 * is rs_view_status_next's, and the JSON renders. */
static void
fixture_events(void)
{
	for (int full = 0; full <= 1; full++)
		for (int t = 0; t < RS_EV__COUNT; t++) {
			rs_event c, ev;
			rs_view v;
			const char *want;
			json_t *j;

			if (t == RS_EV_RUN_CREATED)
				continue;
			fx_event(RS_EV_RUN_CREATED, full, &c);
			fx_event((rs_event_type)t, full, &ev);
			c.runseq = 1;
			ev.runseq = 2;
			rs_view_init(&v);
			CHECKF(rs_view_apply(&v, &c) == RS_OK, "fixture run.created");
			want = rs_view_status_next(v.status, &ev);
			CHECKF(rs_view_apply(&v, &ev) == RS_OK, "fixture %s", rs_event_type_name(ev.type));
			CHECKF(strcmp(v.status, want) == 0, "fixture %s: status", rs_event_type_name(ev.type));
			CHECKF(v.last_seq == 2, "fixture %s", rs_event_type_name(ev.type));
			j = rs_view_json(&v);
			CHECKF(json_object_get(j, "waiting_on") != NULL, "fixture %s", rs_event_type_name(ev.type));
			json_decref(j);
			rs_view_free(&v);
			rs_event_free(&c);
			rs_event_free(&ev);
		}
}

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "tests/fixtures";
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL) {
		perror(dir);
		return 1;
	}
	while ((e = readdir(d)) != NULL) {
		char path[1024];
		evs h = { 0 };
		size_t l = strlen(e->d_name);

		if (l < 7 || strcmp(e->d_name + l - 7, ".ndjson") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		load(path, &h);
		check_history(e->d_name, &h);
		for (size_t i = 0; i < h.n; i++)
			rs_event_free(&h.ev[i]);
		free(h.ev);
		n++;
	}
	closedir(d);
	n += bench_histories();
	fixture_events();
	CHECKF(n >= 5, "only %d histories found in %s", n, dir);
	printf("%d histories\n", n);
	return check_report("test_view");
}
