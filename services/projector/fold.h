/*
 * fold.h - the projector's pure fold: a run's view (common/rs_view.h, the
 * one fold of events every reader shares) -> row images of runs, steps
 * and tool_calls, ready for the COPY writer (pgcopy.c). No Postgres, no
 * I/O: tests/unit/projector/test_fold.c drives it with the event fixtures.
 *
 * A row image is one text value per column (COPY text, NULL = SQL NULL)
 * and is either new (the batch created it: INSERT every column) or a
 * change to a stored row (a stub of the resumed view: only the columns
 * the batch wrote are set, NULL means keep; how each column merges is its
 * rs_proj_col.upd, applied by pgcopy.c's UPDATE ... FROM the stage).
 */
#ifndef RS_PROJ_FOLD_H
#define RS_PROJ_FOLD_H

#include <stddef.h>
#include "rs_view.h"

/* How a stage value merges into the stored row. */
enum { RS_PROJ_NONE, RS_PROJ_KEEP, RS_PROJ_ADD, RS_PROJ_STATUS };

typedef struct {
	const char *name, *type;
	int upd;       /* RS_PROJ_*: NONE = set on insert only (or a key) */
} rs_proj_col;

#define RS_PROJ_MAXCOL 20

typedef struct {
	char *v[RS_PROJ_MAXCOL];  /* malloc'd text; NULL = SQL NULL (a change: keep) */
	int is_new;               /* INSERT, else stage + UPDATE */
} rs_proj_row;

typedef struct {
	const char *table, *stage;
	const rs_proj_col *cols;
	int ncols, nkeys;         /* the first nkeys columns are the key */
	rs_proj_row *rows;
	size_t n, cap;
} rs_proj_table;

/* Column indexes of the three tables (the order of rs_proj_*_cols). */
enum { RS_PR_ID, RS_PR_TENANT, RS_PR_AGENT, RS_PR_VERSION, RS_PR_STATUS, RS_PR_INPUT,
       RS_PR_OUTPUT, RS_PR_ERROR, RS_PR_IDEM, RS_PR_CUR, RS_PR_TIMEOUT, RS_PR_CANCEL,
       RS_PR_CREATED, RS_PR_STARTED, RS_PR_FINISHED, RS_PR_UPDATED, RS_PR_LASTSEQ,
       RS_PR_PARENT, RS_PR_ROOT, RS_PR_TAGS, RS_PR__N };
enum { RS_PS_RUN, RS_PS_STEP, RS_PS_ATT, RS_PS_KIND, RS_PS_STATUS, RS_PS_LATEST, RS_PS_INPUT,
       RS_PS_OUTPUT, RS_PS_ERROR, RS_PS_NEXT, RS_PS_STARTED, RS_PS_FINISHED, RS_PS_DUR,
       RS_PS_UPDATED, RS_PS__N };
enum { RS_PT_CALL, RS_PT_RUN, RS_PT_STEP, RS_PT_ATT, RS_PT_TOOL, RS_PT_DEV, RS_PT_CAP,
       RS_PT_ROUTER, RS_PT_STATUS, RS_PT_ARGS, RS_PT_OUTPUT, RS_PT_ERROR, RS_PT_REQ,
       RS_PT_DISP, RS_PT_FIN, RS_PT_DEADLINE, RS_PT_ATTEMPTS, RS_PT_UPDATED, RS_PT__N };

/* The row images of a batch, parents first (foreign keys). */
typedef struct {
	rs_proj_table runs, steps, tools;
} rs_proj_rows;

void rs_proj_rows_init(rs_proj_rows *r);
void rs_proj_rows_free(rs_proj_rows *r);

/* Append the rows v's fold wrote: v from rs_view_init (the run was
 * created in this batch: every row new) or rs_view_resume (the run's row
 * and the stubs are changes, the rest new). Allocation failure aborts. */
void rs_proj_fold_rows(rs_proj_rows *out, const rs_view *v);

#endif
