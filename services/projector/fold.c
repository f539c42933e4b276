/*
 * fold.c - a run's view -> row images of runs, steps and tool_calls
 * (fold.h). The meaning of events lives in common/rs_view.c, the one fold
 * the API's reads and runctl's timeline use too; this file only says which
 * view member is which column, and which columns a batch writes.
 *
 * How a batch folds per run (the projector sees batches of a live stream,
 * not a run's whole history): apply.c reads each run's stored state back
 * with the same query that checks runseq (runs.tenant, status, last_seq)
 * and resumes a view from it (rs_view_resume); a run created in the batch
 * starts an ordinary view. The batch's events of that run fold into the
 * view. Rows the view made from scratch (the run, attempts and calls
 * begun in this batch) are new: every column, INSERTed by COPY. The run
 * of a resumed view and its stubs (attempts and calls begun in an earlier
 * batch) are changes: only the columns the fold marked in `set`, the rest
 * NULL = keep, merged by the UPDATE in pgcopy.c (COALESCE; attempts add;
 * a stored terminal status stays). So no step or call row is read back,
 * and the rows equal a fold of the whole log (test_fold.c checks every
 * split of a history against the fold in one piece).
 */
#include "fold.h"
#include "rs_mem.h"
#include "rs_time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const rs_proj_col runs_cols[RS_PR__N] = {
	{ "run_id", "uuid", RS_PROJ_NONE }, { "tenant", "text", RS_PROJ_NONE },
	{ "agent", "text", RS_PROJ_NONE }, { "version", "text", RS_PROJ_NONE },
	{ "status", "text", RS_PROJ_STATUS }, { "input", "jsonb", RS_PROJ_NONE },
	{ "output", "jsonb", RS_PROJ_KEEP }, { "error", "jsonb", RS_PROJ_KEEP },
	{ "idempotency_key", "text", RS_PROJ_NONE }, { "current_step", "text", RS_PROJ_KEEP },
	{ "timeout_s", "bigint", RS_PROJ_KEEP }, { "cancel_reason", "text", RS_PROJ_KEEP },
	{ "created_at", "timestamptz", RS_PROJ_NONE }, { "started_at", "timestamptz", RS_PROJ_KEEP },
	{ "finished_at", "timestamptz", RS_PROJ_KEEP }, { "updated_at", "timestamptz", RS_PROJ_KEEP },
	{ "last_seq", "bigint", RS_PROJ_KEEP },
	/* 0004: child runs, tags (set by run.created only) */
	{ "parent_run_id", "uuid", RS_PROJ_NONE }, { "root_run_id", "uuid", RS_PROJ_NONE },
	{ "tags", "jsonb", RS_PROJ_NONE },
};

static const rs_proj_col steps_cols[RS_PS__N] = {
	{ "run_id", "uuid", RS_PROJ_NONE }, { "step_id", "text", RS_PROJ_NONE },
	{ "attempt", "integer", RS_PROJ_NONE }, { "kind", "text", RS_PROJ_NONE },
	{ "status", "text", RS_PROJ_KEEP }, { "latest", "boolean", RS_PROJ_KEEP },
	{ "input", "jsonb", RS_PROJ_KEEP }, { "output", "jsonb", RS_PROJ_KEEP },
	{ "error", "jsonb", RS_PROJ_KEEP }, { "next_step", "text", RS_PROJ_KEEP },
	{ "started_at", "timestamptz", RS_PROJ_NONE }, { "finished_at", "timestamptz", RS_PROJ_KEEP },
	{ "duration_ms", "bigint", RS_PROJ_KEEP }, { "updated_at", "timestamptz", RS_PROJ_KEEP },
};

static const rs_proj_col tools_cols[RS_PT__N] = {
	{ "call_id", "text", RS_PROJ_NONE }, { "run_id", "uuid", RS_PROJ_NONE },
	{ "step_id", "text", RS_PROJ_NONE }, { "attempt", "integer", RS_PROJ_NONE },
	{ "tool", "text", RS_PROJ_NONE }, { "device_id", "text", RS_PROJ_KEEP },
	{ "capability", "text", RS_PROJ_NONE }, { "router", "text", RS_PROJ_KEEP },
	{ "status", "text", RS_PROJ_KEEP }, { "args", "jsonb", RS_PROJ_NONE },
	{ "output", "jsonb", RS_PROJ_KEEP }, { "error", "jsonb", RS_PROJ_KEEP },
	{ "requested_at", "timestamptz", RS_PROJ_NONE }, { "dispatched_at", "timestamptz", RS_PROJ_KEEP },
	{ "finished_at", "timestamptz", RS_PROJ_KEEP }, { "deadline_at", "timestamptz", RS_PROJ_NONE },
	{ "attempts", "integer", RS_PROJ_ADD }, { "updated_at", "timestamptz", RS_PROJ_KEEP },
};

void
rs_proj_rows_init(rs_proj_rows *r)
{
	memset(r, 0, sizeof(*r));
	r->runs = (rs_proj_table){ "runs", "rs_stage_runs", runs_cols, RS_PR__N, 1, NULL, 0, 0 };
	r->steps = (rs_proj_table){ "steps", "rs_stage_steps", steps_cols, RS_PS__N, 3, NULL, 0, 0 };
	r->tools = (rs_proj_table){ "tool_calls", "rs_stage_tool_calls", tools_cols, RS_PT__N, 1,
	                            NULL, 0, 0 };
}

static void
table_free(rs_proj_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		for (int c = 0; c < t->ncols; c++)
			free(t->rows[i].v[c]);
	free(t->rows);
	t->rows = NULL;
	t->n = t->cap = 0;
}

void
rs_proj_rows_free(rs_proj_rows *r)
{
	table_free(&r->runs);
	table_free(&r->steps);
	table_free(&r->tools);
}

static rs_proj_row *
add_row(rs_proj_table *t, int is_new)
{
	rs_proj_row *r;

	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		if ((t->rows = realloc(t->rows, t->cap * sizeof(*t->rows))) == NULL)
			rs_oom(0);
	}
	r = &t->rows[t->n++];
	memset(r, 0, sizeof(*r));
	r->is_new = is_new;
	return r;
}

/* ---- column setters: `on` = write this column (a new row writes all) ---- */

static void
col_str(rs_proj_row *r, int col, const char *s, int on)
{
	if (!on || s == NULL)
		return;
	if ((r->v[col] = strdup(s)) == NULL)
		rs_oom(0);
}

static void
col_int(rs_proj_row *r, int col, int64_t v, int on)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	col_str(r, col, buf, on);
}

/* A time; 0 (none) stays NULL. */
static void
col_time(rs_proj_row *r, int col, int64_t ms, int on)
{
	char buf[40];

	if (ms <= 0)
		return;
	rs_time_rfc3339(ms, buf, sizeof(buf));
	col_str(r, col, buf, on);
}

/* JSON as jsonb text; a NULL json_t is JSON null (not SQL NULL). */
static void
col_json(rs_proj_row *r, int col, const json_t *v, int on)
{
	if (!on)
		return;
	if ((r->v[col] = v == NULL ? strdup("null") :
	                 json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		rs_oom(0);
}

static void
fold_run(rs_proj_rows *out, const rs_view *v)
{
	int all = !v->resumed;
	unsigned set = v->set;
	rs_proj_row *r = add_row(&out->runs, all);

	col_str(r, RS_PR_ID, v->run_id, 1);
	col_str(r, RS_PR_TENANT, v->tenant, all);
	col_str(r, RS_PR_AGENT, v->agent, all);
	col_str(r, RS_PR_VERSION, v->version, all);
	col_str(r, RS_PR_STATUS, v->status[0] ? v->status : NULL, 1);
	col_json(r, RS_PR_INPUT, v->input, all);
	col_json(r, RS_PR_OUTPUT, v->output, set & RS_VIEW_SET_OUTPUT);
	col_json(r, RS_PR_ERROR, v->error, set & RS_VIEW_SET_ERROR);
	col_str(r, RS_PR_IDEM, v->idempotency_key, all);
	col_str(r, RS_PR_CUR, v->current_step, all || (set & RS_VIEW_SET_CURRENT));
	if (v->timeout_s > 0)
		col_int(r, RS_PR_TIMEOUT, v->timeout_s, all || (set & RS_VIEW_SET_TIMEOUT));
	col_str(r, RS_PR_CANCEL, v->cancel_reason, all || (set & RS_VIEW_SET_CANCEL));
	col_time(r, RS_PR_CREATED, v->created_ms, all);
	col_time(r, RS_PR_STARTED, v->started_ms, all || (set & RS_VIEW_SET_STARTED));
	col_time(r, RS_PR_FINISHED, v->finished_ms, all || (set & RS_VIEW_SET_FINISHED));
	col_time(r, RS_PR_UPDATED, v->updated_ms, 1);
	col_int(r, RS_PR_LASTSEQ, (int64_t)v->last_seq, 1);
	col_str(r, RS_PR_PARENT, v->parent_run_id, all);
	col_str(r, RS_PR_ROOT, v->root_run_id, all);
	if (all)
		col_json(r, RS_PR_TAGS, v->tags, 1);
}

static void
fold_step(rs_proj_rows *out, const rs_view *v, const rs_view_step *s)
{
	int all = !s->stub;
	unsigned set = s->set;
	rs_proj_row *r = add_row(&out->steps, all);

	col_str(r, RS_PS_RUN, v->run_id, 1);
	col_str(r, RS_PS_STEP, s->step_id, 1);
	col_int(r, RS_PS_ATT, s->attempt, 1);
	col_str(r, RS_PS_KIND, s->kind, all);
	col_str(r, RS_PS_STATUS, s->status, all || (set & RS_VIEW_SET_STATUS));
	col_str(r, RS_PS_LATEST, s->latest ? "t" : "f", all || (set & RS_VIEW_SET_LATEST));
	col_json(r, RS_PS_INPUT, s->input, all);
	col_json(r, RS_PS_OUTPUT, s->output, set & RS_VIEW_SET_OUTPUT);
	col_json(r, RS_PS_ERROR, s->error, set & RS_VIEW_SET_ERROR);
	col_str(r, RS_PS_NEXT, s->next_step, all || (set & RS_VIEW_SET_NEXT));
	col_time(r, RS_PS_STARTED, s->started_ms, all);
	col_time(r, RS_PS_FINISHED, s->finished_ms, all || (set & RS_VIEW_SET_FINISHED));
	if (s->duration_ms >= 0)
		col_int(r, RS_PS_DUR, s->duration_ms, all || (set & RS_VIEW_SET_DURATION));
	col_time(r, RS_PS_UPDATED, s->updated_ms, 1);
}

static void
fold_call(rs_proj_rows *out, const rs_view *v, const rs_view_call *c)
{
	int all = !c->stub;
	unsigned set = c->set;
	rs_proj_row *r = add_row(&out->tools, all);

	col_str(r, RS_PT_CALL, c->call_id, 1);
	col_str(r, RS_PT_RUN, v->run_id, 1);
	col_str(r, RS_PT_STEP, c->step_id, all);
	col_int(r, RS_PT_ATT, c->attempt, all);
	col_str(r, RS_PT_TOOL, c->tool, all);
	col_str(r, RS_PT_DEV, c->device_id, all || (set & RS_VIEW_SET_DEVICE));
	col_str(r, RS_PT_CAP, c->capability, all);
	col_str(r, RS_PT_ROUTER, c->router, all || (set & RS_VIEW_SET_ROUTER));
	col_str(r, RS_PT_STATUS, c->status, all || (set & RS_VIEW_SET_STATUS));
	col_json(r, RS_PT_ARGS, c->args, all);
	col_json(r, RS_PT_OUTPUT, c->output, set & RS_VIEW_SET_OUTPUT);
	col_json(r, RS_PT_ERROR, c->error, set & RS_VIEW_SET_ERROR);
	col_time(r, RS_PT_REQ, c->requested_ms, all);
	col_time(r, RS_PT_DISP, c->dispatched_ms, all || (set & RS_VIEW_SET_DISPATCHED));
	col_time(r, RS_PT_FIN, c->finished_ms, all || (set & RS_VIEW_SET_FINISHED));
	col_time(r, RS_PT_DEADLINE, c->deadline_ms, all);
	/* A new row holds the count, a change the increment (RS_PROJ_ADD). */
	col_int(r, RS_PT_ATTEMPTS, c->attempts, all || (set & RS_VIEW_SET_ATTEMPTS));
	col_time(r, RS_PT_UPDATED, c->updated_ms, 1);
}

void
rs_proj_fold_rows(rs_proj_rows *out, const rs_view *v)
{
	/* Nothing folded: a new view before run.created, or a resumed one whose
	 * events all went to dead letters. */
	if (v->last_seq == 0 || v->updated_ms == 0)
		return;
	fold_run(out, v);
	for (size_t i = 0; i < v->nsteps; i++)
		fold_step(out, v, &v->steps[i]);
	for (size_t i = 0; i < v->ncalls; i++)
		fold_call(out, v, &v->calls[i]);
}
