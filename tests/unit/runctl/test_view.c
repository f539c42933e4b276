/*
 * test_view.c - the one fold (common/rs_view.c) against runctl's timeline
 * (runctl/timeline.c) over every recorded history in tests/fixtures/: the
 * two read the same events independently, so where they agree the meaning
 * of an event is held in two places that must not drift (the status rule
 * itself is shared: the timeline takes it from rs_view_status_next). Checked per
 * history: the final status, step outcomes in order (step, attempt,
 * success/failure, output, error code) against tl_step_path, counts of
 * completed/failed attempts and tool calls against tl_summary, last_seq,
 * and the rendered JSON's shape (every field GET /v1/runs/{id} has).
 * Also: gaps and repeats are refused, and a prefix of a history ends
 * where it should (waiting_on, no terminal).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_event.h"
#include "rs_json.h"
#include "rs_view.h"
#include "timeline.h"

static int failures;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #c); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); failures++; } } while (0)

typedef struct {
	rs_event *ev;
	size_t n, cap;
} evs;

static void
load(const char *path, evs *out)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (f == NULL) {
		perror(path);
		exit(1);
	}
	while ((len = getline(&line, &cap, f)) > 0) {
		rs_event ev;
		char err[256];

		if (strstr(line, "\"runstream_export\"") != NULL)
			continue;   /* the export header: the agent */
		if (rs_event_decode(line, (size_t)len, &ev, err, sizeof(err)) != RS_OK) {
			fprintf(stderr, "%s: undecodable line: %s\n", path, err);
			failures++;
			continue;
		}
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 64;
			out->ev = realloc(out->ev, out->cap * sizeof(*out->ev));
		}
		out->ev[out->n++] = ev;
	}
	free(line);
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
	tl_summary_init(&s);
	for (size_t i = 0; i < h->n; i++) {
		rs_status st = rs_view_apply(&v, &h->ev[i]);
		CHECK(st == RS_OK, "%s: event %zu refused (%s)", name, i + 1, rs_status_str(st));
		tl_summary_add(&s, &h->ev[i]);
		/* A repeat is recognised, not folded twice. */
		CHECK(rs_view_apply(&v, &h->ev[i]) == RS_EEXISTS, "%s: repeat of %zu", name, i + 1);
	}
	CHECK(strcmp(v.status, s.status) == 0, "%s: view %s, timeline %s", name, v.status, s.status);
	CHECK(v.last_seq == s.last_seq, "%s: last_seq", name);
	CHECK(rs_view_terminal(&v) && rs_view_waits_on(&v) == NULL, "%s: ends terminal", name);
	np = tl_step_path(h->ev, h->n, path, sizeof(path) / sizeof(path[0]));
	/* The view's attempts that ended (completed/failed), in the order
	 * they ended, are the timeline's step path. */
	for (size_t i = 0; i < v.nsteps; i++) {
		if (strcmp(v.steps[i].status, "completed") == 0)
			ok++;
		else if (strcmp(v.steps[i].status, "failed") == 0)
			failed++;
	}
	CHECK(ok == s.steps_completed && failed == s.steps_failed,
	      "%s: attempts ok %u/%u failed %u/%u", name, ok, s.steps_completed, failed,
	      s.steps_failed);
	CHECK(ok + failed == np, "%s: %u outcomes vs path %zu", name, ok + failed, np);
	CHECK(v.ncalls == s.tool_calls, "%s: tool calls %zu vs %u", name, v.ncalls, s.tool_calls);
	for (size_t p = 0; p < np; p++) {
		const rs_view_step *vs = NULL;
		for (k = 0; k < v.nsteps; k++)
			if (strcmp(v.steps[k].step_id, path[p].step) == 0 &&
			    v.steps[k].attempt == path[p].attempt)
				vs = &v.steps[k];
		CHECK(vs != NULL, "%s: step %s/%lld missing", name, path[p].step,
		      (long long)path[p].attempt);
		if (vs == NULL)
			continue;
		CHECK(strcmp(vs->status, path[p].failed ? "failed" : "completed") == 0,
		      "%s: step %s status %s", name, vs->step_id, vs->status);
		if (!path[p].failed)
			CHECK(json_equal(vs->output ? vs->output : json_null(),
			                 path[p].output ? path[p].output : json_null()),
			      "%s: step %s output", name, vs->step_id);
		else
			CHECK(strcmp(json_string_value(json_object_get(vs->error, "code")),
			             path[p].error->code) == 0, "%s: step %s error", name, vs->step_id);
	}
	j = rs_view_json(&v);
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
		CHECK(json_object_get(j, fields[f]) != NULL, "%s: JSON lacks %s", name, fields[f]);
	CHECK(strcmp(json_string_value(json_object_get(j, "status")), s.status) == 0, "%s", name);
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
			CHECK(rs_view_apply(&p, &h->ev[cut + 1]) == RS_EINVAL, "%s: gap at %zu", name, cut);
			CHECK(p.last_seq == cut, "%s: gap changed the view", name);
		}
		j = rs_view_json(&p);
		char *text = rs_json_dump(j);
		CHECK(text != NULL, "%s: prefix %zu renders", name, cut);
		free(text);
		json_decref(j);
		rs_view_free(&p);
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
	if (n < 5) {
		fprintf(stderr, "only %d histories found in %s\n", n, dir);
		failures++;
	}
	printf("%d histories, %d failures\n", n, failures);
	return failures ? 1 : 0;
}
