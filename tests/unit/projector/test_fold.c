/*
 * test_fold.c - the projector's fold (services/projector/fold.c on
 * common/rs_view.c) without Postgres.
 *
 * 1. A history built from the event fixtures (tests/unit/event_fixtures.c)
 *    folded in two batches: the rows of each batch, column by column (new
 *    rows complete, the second batch's changes only what it wrote: stubs
 *    for the attempt and call begun in the first, the attempts increment,
 *    the run's status, the closing of what was open at the end).
 * 2. Every recorded history in the directory given (tests/fixtures/),
 *    folded whole and in pieces (every split in two, and one event per
 *    batch): the pieces' rows merged as Postgres merges them (pgcopy.c's
 *    column rules and apply.c's sweep, emulated below) equal the whole
 *    fold's rows. This is what makes a batch's fold correct without
 *    reading step and call rows back.
 * 3. The stored rows of every history equal what GET /v1/runs/{id} shows
 *    from the API's view of the same events (rs_view_json: every column
 *    whose name the JSON has, with the JSON's value): the projector's rows
 *    and the API's answer cannot drift apart.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "event_fixtures.h"
#include "fold.h"
#include "rs_event.h"
#include "rs_time.h"
#include "rs_view.h"

/* ---- a history ---- */

typedef struct {
	rs_event *ev;
	size_t n, cap;
} hist;

static rs_event *
push(hist *h)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 32;
		if ((h->ev = realloc(h->ev, h->cap * sizeof(*h->ev))) == NULL)
			abort();
	}
	memset(&h->ev[h->n], 0, sizeof(h->ev[0]));
	return &h->ev[h->n++];
}

static void
hist_free(hist *h)
{
	for (size_t i = 0; i < h->n; i++)
		rs_event_free(&h->ev[i]);
	free(h->ev);
	memset(h, 0, sizeof(*h));
}

/* A fixture event of type t as runseq seq, one second after the last. */
static rs_event *
fx(hist *h, rs_event_type t)
{
	rs_event *ev = push(h);

	fx_event(t, 0, ev);
	ev->runseq = h->n;
	ev->time_ms = FX_TIME_MS + (int64_t)h->n * 1000;
	return ev;
}

/* Fold h->ev[from..to) into rows: a fresh view from runseq 1, else
 * resumed from what the earlier pieces left (as apply.c does). */
static void
fold_piece(const hist *h, size_t from, size_t to, const char *status, rs_proj_rows *out,
           rs_view *v)
{
	if (from == 0) {
		rs_view_init(v);
		v->unbounded = 1;
	} else
		rs_view_resume(v, h->ev[0].run_id, h->ev[0].tenant, h->ev[from - 1].runseq, status);
	for (size_t i = from; i < to; i++)
		CHECK_INT(rs_view_apply(v, &h->ev[i]), RS_OK);
	rs_proj_fold_rows(out, v);
}

/* The row of table t whose first column is k0 (and second k1, third k2
 * when given). */
static const rs_proj_row *
row(const rs_proj_table *t, const char *k0, const char *k1, const char *k2)
{
	for (size_t i = 0; i < t->n; i++) {
		const rs_proj_row *r = &t->rows[i];
		if (strcmp(r->v[0], k0) == 0 && (k1 == NULL || strcmp(r->v[1], k1) == 0) &&
		    (k2 == NULL || strcmp(r->v[2], k2) == 0))
			return r;
	}
	return NULL;
}

#define CALL_ID FX_RUN_ID "-fetch-1"

static void
test_two_batches(void)
{
	hist h = { 0 };
	rs_proj_rows b1, b2;
	rs_view v1, v2;
	const rs_proj_row *r;
	rs_event *ev;

	fx(&h, RS_EV_RUN_CREATED);                     /* 1 */
	fx(&h, RS_EV_RUN_STARTED);                     /* 2 */
	fx(&h, RS_EV_STEP_STARTED);                    /* 3 fetch #1 */
	fx(&h, RS_EV_TOOL_REQUESTED);                  /* 4 */
	fx(&h, RS_EV_TOOL_DISPATCHED);                 /* 5 */
	/* -- batch 2 -- */
	fx(&h, RS_EV_TOOL_DISPATCHED);                 /* 6 a second dispatch */
	fx(&h, RS_EV_TOOL_FAILED);                     /* 7 */
	ev = fx(&h, RS_EV_STEP_FAILED);                /* 8 fetch #1 failed */
	ev->d.step_failed.attempt = 1;
	ev = fx(&h, RS_EV_STEP_STARTED);               /* 9 fetch #2 */
	ev->d.step_started.attempt = 2;
	ev = fx(&h, RS_EV_RUN_CANCEL_REQUESTED);       /* 10 */
	ev->d.run_cancel_requested.reason = strdup("user asked");
	fx(&h, RS_EV_RUN_CANCELLED);                   /* 11 */

	rs_proj_rows_init(&b1);
	fold_piece(&h, 0, 5, NULL, &b1, &v1);
	CHECK_STR(v1.status, "waiting");
	CHECK_INT(b1.runs.n, 1);
	CHECK_INT(b1.steps.n, 1);
	CHECK_INT(b1.tools.n, 1);
	r = &b1.runs.rows[0];
	CHECK(r->is_new);
	CHECK_STR(r->v[RS_PR_ID], FX_RUN_ID);
	CHECK_STR(r->v[RS_PR_TENANT], FX_TENANT);
	CHECK_STR(r->v[RS_PR_AGENT], "summarize");
	CHECK_STR(r->v[RS_PR_STATUS], "waiting");
	CHECK_STR(r->v[RS_PR_CUR], "fetch");
	CHECK_STR(r->v[RS_PR_LASTSEQ], "5");
	CHECK_STR(r->v[RS_PR_CREATED], "2026-01-02T03:04:06.678Z");
	CHECK_STR(r->v[RS_PR_STARTED], "2026-01-02T03:04:07.678Z");
	CHECK_STR(r->v[RS_PR_UPDATED], "2026-01-02T03:04:10.678Z");
	CHECK_STR(r->v[RS_PR_FINISHED], NULL);
	CHECK_STR(r->v[RS_PR_OUTPUT], NULL);
	CHECK_STR(r->v[RS_PR_TAGS], "null");
	r = row(&b1.steps, FX_RUN_ID, "fetch", "1");
	CHECK(r != NULL && r->is_new);
	if (r != NULL) {
		CHECK_STR(r->v[RS_PS_STATUS], "running");
		CHECK_STR(r->v[RS_PS_LATEST], "t");
		CHECK_STR(r->v[RS_PS_FINISHED], NULL);
		CHECK_STR(r->v[RS_PS_DUR], NULL);
	}
	r = row(&b1.tools, CALL_ID, NULL, NULL);
	CHECK(r != NULL && r->is_new);
	if (r != NULL) {
		CHECK_STR(r->v[RS_PT_RUN], FX_RUN_ID);
		CHECK_STR(r->v[RS_PT_STATUS], "dispatched");
		CHECK_STR(r->v[RS_PT_ATTEMPTS], "1");
		CHECK_STR(r->v[RS_PT_STEP], "fetch");
	}

	/* Batch 2 resumes from the stored run: status and last_seq only. */
	rs_proj_rows_init(&b2);
	fold_piece(&h, 5, h.n, v1.status, &b2, &v2);
	CHECK_STR(v2.status, "cancelled");
	r = &b2.runs.rows[0];
	CHECK(!r->is_new);
	CHECK_STR(r->v[RS_PR_STATUS], "cancelled");
	CHECK_STR(r->v[RS_PR_AGENT], NULL);             /* keep */
	CHECK_STR(r->v[RS_PR_CREATED], NULL);
	CHECK_STR(r->v[RS_PR_CUR], "fetch");            /* step.started #2 wrote it */
	CHECK_STR(r->v[RS_PR_LASTSEQ], "11");
	CHECK_STR(r->v[RS_PR_FINISHED], "2026-01-02T03:04:16.678Z");
	CHECK_STR(r->v[RS_PR_CANCEL], "user asked");
	/* fetch #1: a stub (begun in batch 1) that failed and lost latest. */
	r = row(&b2.steps, FX_RUN_ID, "fetch", "1");
	CHECK(r != NULL && !r->is_new);
	if (r != NULL) {
		CHECK_STR(r->v[RS_PS_STATUS], "failed");
		CHECK_STR(r->v[RS_PS_LATEST], "f");
		CHECK_STR(r->v[RS_PS_KIND], NULL);
		CHECK_STR(r->v[RS_PS_INPUT], NULL);
		CHECK_STR(r->v[RS_PS_STARTED], NULL);
		CHECK_STR(r->v[RS_PS_FINISHED], "2026-01-02T03:04:13.678Z");
		CHECK(r->v[RS_PS_ERROR] != NULL && strstr(r->v[RS_PS_ERROR], "tool_error") != NULL);
	}
	/* fetch #2: new, closed by the cancellation. */
	r = row(&b2.steps, FX_RUN_ID, "fetch", "2");
	CHECK(r != NULL && r->is_new);
	if (r != NULL) {
		CHECK_STR(r->v[RS_PS_STATUS], "cancelled");
		CHECK_STR(r->v[RS_PS_LATEST], "t");
		CHECK_STR(r->v[RS_PS_FINISHED], "2026-01-02T03:04:16.678Z");
		CHECK_STR(r->v[RS_PS_UPDATED], "2026-01-02T03:04:16.678Z");
	}
	/* The call: a stub; attempts is the increment (one more dispatch). */
	r = row(&b2.tools, CALL_ID, NULL, NULL);
	CHECK(r != NULL && !r->is_new);
	if (r != NULL) {
		CHECK_STR(r->v[RS_PT_STATUS], "failed");
		CHECK_STR(r->v[RS_PT_ATTEMPTS], "1");
		CHECK_STR(r->v[RS_PT_TOOL], NULL);
		CHECK_STR(r->v[RS_PT_ARGS], NULL);
	}
	CHECK_INT(b2.steps.n, 2);
	CHECK_INT(b2.tools.n, 1);
	rs_proj_rows_free(&b1);
	rs_proj_rows_free(&b2);
	rs_view_free(&v1);
	rs_view_free(&v2);
	hist_free(&h);
}

/* ---- a table store merging rows as pgcopy.c's SQL does ---- */

typedef struct {
	char *v[RS_PROJ_MAXCOL];
} srow;

typedef struct {
	const rs_proj_table *def;
	srow *rows;
	size_t n, cap;
} stab;

typedef struct {
	stab runs, steps, tools;
} store;

static char *
dup(const char *s)
{
	char *d = s ? strdup(s) : NULL;

	if (s != NULL && d == NULL)
		abort();
	return d;
}

static srow *
find(stab *t, char *const *key)
{
	for (size_t i = 0; i < t->n; i++) {
		int k;
		for (k = 0; k < t->def->nkeys; k++)
			if (strcmp(t->rows[i].v[k], key[k]) != 0)
				break;
		if (k == t->def->nkeys)
			return &t->rows[i];
	}
	return NULL;
}

static int
terminal(const char *s)
{
	return s != NULL && (strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
	                     strcmp(s, "cancelled") == 0 || strcmp(s, "timed_out") == 0);
}

static void
merge_table(stab *t, const rs_proj_table *in, const char *where)
{
	for (size_t i = 0; i < in->n; i++) {
		const rs_proj_row *r = &in->rows[i];
		srow *s = find(t, r->v);

		if (r->is_new) {
			CHECK(s == NULL);   /* an INSERT of a stored key would fail */
			if (s != NULL) {
				fprintf(stderr, "  %s: %s %s inserted twice\n", where, in->table, r->v[0]);
				continue;
			}
			if (t->n == t->cap) {
				t->cap = t->cap ? t->cap * 2 : 16;
				if ((t->rows = realloc(t->rows, t->cap * sizeof(*t->rows))) == NULL)
					abort();
			}
			s = &t->rows[t->n++];
			for (int k = 0; k < in->ncols; k++)
				s->v[k] = dup(r->v[k]);
			continue;
		}
		CHECK(s != NULL);           /* an UPDATE of nothing loses the change */
		if (s == NULL) {
			fprintf(stderr, "  %s: %s %s changed but not stored\n", where, in->table, r->v[0]);
			continue;
		}
		for (int k = in->nkeys; k < in->ncols; k++) {
			char buf[32];

			switch (in->cols[k].upd) {
			case RS_PROJ_KEEP:
				if (r->v[k] != NULL) {
					free(s->v[k]);
					s->v[k] = dup(r->v[k]);
				}
				break;
			case RS_PROJ_ADD:
				snprintf(buf, sizeof(buf), "%lld", atoll(s->v[k]) + (r->v[k] ? atoll(r->v[k]) : 0));
				free(s->v[k]);
				s->v[k] = dup(buf);
				break;
			case RS_PROJ_STATUS:
				if (!terminal(s->v[k]) && r->v[k] != NULL) {
					free(s->v[k]);
					s->v[k] = dup(r->v[k]);
				}
				break;
			default:
				break;
			}
		}
	}
}

/* apply.c's sweep: stored attempts and calls still open when the run
 * ended in a resumed piece. */
static void
sweep(store *db, const rs_view *v)
{
	char ft[40];
	const char *how;

	if (!v->resumed || !rs_view_terminal(v) || !(v->set & RS_VIEW_SET_FINISHED))
		return;
	how = strcmp(v->status, "timed_out") == 0 ? "timed_out" : "cancelled";
	rs_time_rfc3339(v->finished_ms, ft, sizeof(ft));
	for (size_t i = 0; i < db->steps.n; i++) {
		srow *s = &db->steps.rows[i];
		if (strcmp(s->v[RS_PS_RUN], v->run_id) == 0 && strcmp(s->v[RS_PS_STATUS], "running") == 0) {
			free(s->v[RS_PS_STATUS]);
			free(s->v[RS_PS_FINISHED]);
			free(s->v[RS_PS_UPDATED]);
			s->v[RS_PS_STATUS] = dup(how);
			s->v[RS_PS_FINISHED] = dup(ft);
			s->v[RS_PS_UPDATED] = dup(ft);
		}
	}
	for (size_t i = 0; i < db->tools.n; i++) {
		srow *s = &db->tools.rows[i];
		if (strcmp(s->v[RS_PT_RUN], v->run_id) == 0 &&
		    (strcmp(s->v[RS_PT_STATUS], "requested") == 0 ||
		     strcmp(s->v[RS_PT_STATUS], "dispatched") == 0)) {
			free(s->v[RS_PT_STATUS]);
			free(s->v[RS_PT_FIN]);
			free(s->v[RS_PT_UPDATED]);
			s->v[RS_PT_STATUS] = dup(how);
			s->v[RS_PT_FIN] = dup(ft);
			s->v[RS_PT_UPDATED] = dup(ft);
		}
	}
}

static void
stab_free(stab *t)
{
	for (size_t i = 0; i < t->n; i++)
		for (int k = 0; k < t->def->ncols; k++)
			free(t->rows[i].v[k]);
	free(t->rows);
}

/* Fold h in pieces cut at cuts[0..ncuts) (ascending, inside (0, n)) into
 * db, as consecutive projector batches would. */
static void
fold_into(store *db, const hist *h, const size_t *cuts, size_t ncuts, const char *where)
{
	char status[16] = "";
	size_t from = 0;

	for (size_t c = 0; c <= ncuts; c++) {
		size_t to = c < ncuts ? cuts[c] : h->n;
		rs_proj_rows rows;
		rs_view v;

		rs_proj_rows_init(&rows);
		fold_piece(h, from, to, status, &rows, &v);
		if (db->runs.def == NULL) {
			db->runs.def = &rows.runs;   /* only the column lists are used later */
			db->steps.def = &rows.steps;
			db->tools.def = &rows.tools;
		}
		merge_table(&db->runs, &rows.runs, where);
		merge_table(&db->steps, &rows.steps, where);
		merge_table(&db->tools, &rows.tools, where);
		sweep(db, &v);
		/* What load_runs reads back for the next piece. */
		if (db->runs.n > 0)
			snprintf(status, sizeof(status), "%s", db->runs.rows[0].v[RS_PR_STATUS]);
		rs_proj_rows_free(&rows);
		rs_view_free(&v);
		from = to;
	}
}

static int
same_table(stab *a, stab *b, const char *where)
{
	int bad = 0;

	if (a->n != b->n) {
		fprintf(stderr, "  %s: %s: %zu rows whole, %zu in pieces\n", where, a->def->table,
		        a->n, b->n);
		return 0;
	}
	for (size_t i = 0; i < a->n; i++) {
		srow *o = find(b, a->rows[i].v);

		if (o == NULL) {
			fprintf(stderr, "  %s: %s %s missing\n", where, a->def->table, a->rows[i].v[0]);
			return 0;
		}
		for (int k = 0; k < a->def->ncols; k++) {
			const char *x = a->rows[i].v[k], *y = o->v[k];
			if (x == NULL || y == NULL ? x != y : strcmp(x, y) != 0) {
				fprintf(stderr, "  %s: %s %s.%s: whole %s, pieces %s\n", where,
				        a->def->table, a->rows[i].v[0], a->def->cols[k].name,
				        x ? x : "NULL", y ? y : "NULL");
				bad = 1;
			}
		}
	}
	return !bad;
}

/* One stored row against the member of the API's JSON of the same name. */
static void
same_as_json(const stab *t, const srow *r, const json_t *o, const char *where)
{
	for (int k = 0; k < t->def->ncols; k++) {
		const rs_proj_col *c = &t->def->cols[k];
		const json_t *j = json_object_get(o, c->name);
		const char *x = r->v[k];
		int ok;

		if (j == NULL)
			continue;       /* a column the API does not show */
		if (strcmp(c->type, "jsonb") == 0) {
			json_t *p = x ? json_loads(x, JSON_DECODE_ANY, NULL) : NULL;
			ok = x == NULL ? json_is_null(j) : p != NULL && json_equal(p, (json_t *)j);
			json_decref(p);
		} else if (x == NULL) {
			ok = json_is_null(j);
		} else if (strcmp(c->type, "boolean") == 0) {
			ok = json_is_boolean(j) && json_is_true(j) == (strcmp(x, "t") == 0);
		} else if (strcmp(c->type, "bigint") == 0 || strcmp(c->type, "integer") == 0) {
			ok = json_is_integer(j) && json_integer_value(j) == atoll(x);
		} else {
			ok = json_is_string(j) && strcmp(json_string_value(j), x) == 0;
		}
		CHECK(ok);
		if (!ok) {
			char *js = json_dumps(j, JSON_ENCODE_ANY);
			fprintf(stderr, "  %s: %s.%s: row %s, API %s\n", where, t->def->table, c->name,
			        x ? x : "NULL", js ? js : "?");
			free(js);
		}
	}
}

/* Every stored row against rs_view_json of the whole history's view. */
static void
rows_vs_api(const store *db, const hist *h, const char *where)
{
	rs_view v;
	json_t *o, *list;
	size_t i;

	rs_view_init(&v);
	for (i = 0; i < h->n; i++)
		rs_view_apply(&v, &h->ev[i]);
	o = rs_view_json(&v);
	same_as_json(&db->runs, &db->runs.rows[0], o, where);
	list = json_object_get(o, "steps");
	CHECK_INT(json_array_size(list), db->steps.n);
	for (i = 0; i < db->steps.n && i < json_array_size(list); i++)
		same_as_json(&db->steps, &db->steps.rows[i], json_array_get(list, i), where);
	list = json_object_get(o, "tool_calls");
	CHECK_INT(json_array_size(list), db->tools.n);
	for (i = 0; i < db->tools.n && i < json_array_size(list); i++)
		same_as_json(&db->tools, &db->tools.rows[i], json_array_get(list, i), where);
	json_decref(o);
	rs_view_free(&v);
}

static void
store_free(store *s)
{
	if (s->runs.def == NULL)
		return;
	stab_free(&s->runs);
	stab_free(&s->steps);
	stab_free(&s->tools);
}

static void
check_splits(const char *name, const hist *h)
{
	rs_proj_rows defs;
	store whole = { 0 };
	size_t *cuts = calloc(h->n + 1, sizeof(*cuts));

	rs_proj_rows_init(&defs);
	whole.runs.def = &defs.runs;
	whole.steps.def = &defs.steps;
	whole.tools.def = &defs.tools;
	fold_into(&whole, h, NULL, 0, name);
	CHECK_INT(whole.runs.n, 1);
	if (whole.runs.n == 1)
		rows_vs_api(&whole, h, name);
	for (size_t k = 0; k <= h->n; k++) {
		store part = { 0 };
		char where[300];
		size_t ncuts;

		/* k < n: one cut at k + 1; k == n: a cut after every event. */
		if (k + 1 < h->n) {
			cuts[0] = k + 1;
			ncuts = 1;
			snprintf(where, sizeof(where), "%s cut at %zu", name, k + 1);
		} else if (k == h->n) {
			for (ncuts = 0; ncuts + 1 < h->n; ncuts++)
				cuts[ncuts] = ncuts + 1;
			snprintf(where, sizeof(where), "%s one event per batch", name);
		} else {
			continue;
		}
		part.runs.def = &defs.runs;
		part.steps.def = &defs.steps;
		part.tools.def = &defs.tools;
		fold_into(&part, h, cuts, ncuts, where);
		CHECK(same_table(&whole.runs, &part.runs, where));
		CHECK(same_table(&whole.steps, &part.steps, where));
		CHECK(same_table(&whole.tools, &part.tools, where));
		store_free(&part);
	}
	store_free(&whole);
	free(cuts);
}

static int
load(const char *path, hist *h)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (f == NULL)
		return -1;
	while ((len = getline(&line, &cap, f)) > 0) {
		char err[256];
		rs_event ev;

		if (strstr(line, "\"runstream_export\"") != NULL)
			continue;
		if (rs_event_decode(line, (size_t)len, &ev, err, sizeof(err)) != RS_OK) {
			fprintf(stderr, "%s: %s\n", path, err);
			CHECK(0);
			continue;
		}
		*push(h) = ev;
	}
	free(line);
	fclose(f);
	return 0;
}

int
main(int argc, char **argv)
{
	DIR *d;
	struct dirent *e;
	int nhist = 0;

	test_two_batches();
	if (argc > 1 && (d = opendir(argv[1])) != NULL) {
		while ((e = readdir(d)) != NULL) {
			char path[1024];
			hist h = { 0 };
			size_t n = strlen(e->d_name);

			if (n < 7 || strcmp(e->d_name + n - 7, ".ndjson") != 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
			CHECK(load(path, &h) == 0);
			if (h.n > 0)
				check_splits(e->d_name, &h);
			hist_free(&h);
			nhist++;
		}
		closedir(d);
	}
	CHECK(argc < 2 || nhist >= 10);
	return check_report("projector_fold");
}
