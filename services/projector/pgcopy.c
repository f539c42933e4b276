/*
 * pgcopy.c - the projector's Postgres writing (pgcopy.h).
 *
 * Why COPY and a stage: one statement per event is a round trip per event,
 * far below the rate the projector needs. The batch's row images
 * (fold.h) go in bulk: new rows COPYed straight into their table, changes
 * to stored rows COPYed into a temporary stage table (all columns
 * nullable, NULL = keep) and applied by one UPDATE ... FROM per table,
 * each column merged by its rule (keep, add, or a status that stays once
 * terminal). run_events rows are COPYed while the batch folds
 * (rs_proj_copy_start / _pump / _finish on a non-blocking connection).
 */
#include "pgcopy.h"
#include "projector.h"
#include "rs_log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- growable byte buffer with COPY text escaping ---- */

void
rs_proj_buf_put(rs_proj_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 4096;
		char *np;

		while (nc < b->len + n + 1)
			nc *= 2;
		if ((np = realloc(b->p, nc)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* One COPY text field of n bytes: NULL is \N; backslash and the
 * separators escaped. */
void
rs_proj_buf_field_n(rs_proj_buf *b, const char *s, size_t n, int first)
{
	const char *run, *end = s ? s + n : NULL;

	if (!first)
		rs_proj_buf_put(b, "\t", 1);
	if (s == NULL) {
		rs_proj_buf_put(b, "\\N", 2);
		return;
	}
	for (run = s; s < end; s++) {
		const char *esc = NULL;

		switch (*s) {
		case '\\': esc = "\\\\"; break;
		case '\t': esc = "\\t"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		default: continue;
		}
		rs_proj_buf_put(b, run, (size_t)(s - run));
		rs_proj_buf_put(b, esc, 2);
		run = s + 1;
	}
	rs_proj_buf_put(b, run, (size_t)(s - run));
}

void
rs_proj_buf_field(rs_proj_buf *b, const char *s, int first)
{
	rs_proj_buf_field_n(b, s, s ? strlen(s) : 0, first);
}

/* The message of the last failed statement on this thread: the fallback
 * quotes it in the dead letter after its ROLLBACK cleared the connection's. */
static _Thread_local char last_error[256];

const char *
rs_proj_last_pg_error(void)
{
	return last_error;
}

int
rs_proj_pg_lost(PGconn *c, PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	snprintf(last_error, sizeof(last_error), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	last_error[strcspn(last_error, "\n")] = '\0';

	if (PQstatus(c) != CONNECTION_OK)
		return 1;
	/* Class 08 = connection exception; 57P0x = server shutting down. */
	return state != NULL && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0);
}

rs_status
rs_proj_pg_fail(PGconn *c, PGresult *r, const char *what)
{
	rs_warn("projector: %s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	return rs_proj_pg_lost(c, r) ? RS_EUNAVAIL : RS_EIO;
}

rs_status
rs_proj_exec_ok(PGconn *c, PGresult *r, const char *what)
{
	ExecStatusType t = PQresultStatus(r);
	rs_status st = RS_OK;

	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		st = rs_proj_pg_fail(c, r, what);
	PQclear(r);
	return st;
}

/* Start a COPY and queue all its data without waiting for the server
 * (non-blocking connection): the caller folds the batch while Postgres
 * ingests run_events, calling rs_proj_copy_pump() now and then, then rs_proj_copy_finish().
 * No foreign key ties run_events to runs (0003), so it may go first. */
rs_status
rs_proj_copy_start(PGconn *c, const char *sql, const rs_proj_buf *data)
{
	PGresult *r = PQexec(c, sql);
	rs_status st;

	if (PQresultStatus(r) != PGRES_COPY_IN) {
		st = rs_proj_pg_fail(c, r, sql);
		PQclear(r);
		return st;
	}
	PQclear(r);
	if (PQsetnonblocking(c, 1) != 0 || PQputCopyData(c, data->p, (int)data->len) != 1 ||
	    PQputCopyEnd(c, NULL) != 1) {
		st = rs_proj_pg_fail(c, NULL, "copy data");
		/* Leave the COPY state so the caller's ROLLBACK can run. */
		PQsetnonblocking(c, 0);
		PQputCopyEnd(c, "projector: copy data not queued");
		while ((r = PQgetResult(c)) != NULL)
			PQclear(r);
		return st;
	}
	return RS_OK;
}

/* Send what the socket takes now (never waits). */
void
rs_proj_copy_pump(PGconn *c)
{
	if (PQisnonblocking(c))
		PQflush(c);
}

/* Send the rest (waiting), back to blocking mode, read the COPY's result. */
rs_status
rs_proj_copy_finish(PGconn *c, const char *what)
{
	rs_status st = RS_OK;
	PGresult *r;
	int f;

	while ((f = PQflush(c)) == 1) {
		struct pollfd pfd = { PQsocket(c), POLLOUT, 0 };

		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
			break;
	}
	if (PQsetnonblocking(c, 0) != 0 || f < 0)
		st = rs_proj_pg_fail(c, NULL, "copy data");
	while ((r = PQgetResult(c)) != NULL) {
		if (st == RS_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
			st = rs_proj_pg_fail(c, r, what);
		PQclear(r);
	}
	return st;
}

/* A COPY waited for: the queued one (above), finished at once. */
rs_status
rs_proj_copy_in(PGconn *c, const char *sql, const rs_proj_buf *data)
{
	rs_status st = rs_proj_copy_start(c, sql, data);

	return st != RS_OK ? st : rs_proj_copy_finish(c, sql);
}

/* COPY the new rows into the table and the changed ones into its stage,
 * then UPDATE the table from the stage. */
rs_status
rs_proj_table_write(PGconn *c, const rs_proj_table *t)
{
	rs_proj_buf ins = { 0 }, upd = { 0 }, sql = { 0 };
	size_t nins = 0, nupd = 0;
	rs_status st = RS_OK;
	char head[160];

	for (size_t i = 0; i < t->n; i++) {
		rs_proj_buf *o = t->rows[i].is_new ? &ins : &upd;

		*(t->rows[i].is_new ? &nins : &nupd) += 1;
		for (int k = 0; k < t->ncols; k++)
			rs_proj_buf_field(o, t->rows[i].v[k], k == 0);
		rs_proj_buf_put(o, "\n", 1);
	}
	if (ins.oom || upd.oom) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	if (nins > 0) {
		rs_proj_buf_put(&sql, "COPY ", 5);
		rs_proj_buf_put(&sql, t->table, strlen(t->table));
		rs_proj_buf_put(&sql, " (", 2);
		for (int k = 0; k < t->ncols; k++) {
			if (k > 0)
				rs_proj_buf_put(&sql, ",", 1);
			rs_proj_buf_put(&sql, t->cols[k].name, strlen(t->cols[k].name));
		}
		rs_proj_buf_put(&sql, ") FROM STDIN", 12);
		if (sql.oom) {
			st = RS_ENOMEM;
			goto cleanup;
		}
		if ((st = rs_proj_copy_in(c, sql.p, &ins)) != RS_OK)
			goto cleanup;
	}
	if (nupd == 0)
		goto cleanup;
	snprintf(head, sizeof(head), "COPY %s FROM STDIN", t->stage);
	if ((st = rs_proj_copy_in(c, head, &upd)) != RS_OK)
		goto cleanup;
	sql.len = 0;
	snprintf(head, sizeof(head), "UPDATE %s t SET ", t->table);
	rs_proj_buf_put(&sql, head, strlen(head));
	for (int k = t->nkeys, first = 1; k < t->ncols; k++) {
		const char *n = t->cols[k].name;
		char frag[256];

		switch (t->cols[k].upd) {
		case RS_PROJ_KEEP:
			snprintf(frag, sizeof(frag), "%s = COALESCE(s.%s, t.%s)", n, n, n);
			break;
		case RS_PROJ_ADD:
			snprintf(frag, sizeof(frag), "%s = t.%s + COALESCE(s.%s, 0)", n, n, n);
			break;
		case RS_PROJ_STATUS:
			snprintf(frag, sizeof(frag), "%s = CASE WHEN t.%s IN ('completed', 'failed', "
			         "'cancelled', 'timed_out') THEN t.%s ELSE COALESCE(s.%s, t.%s) END",
			         n, n, n, n, n);
			break;
		default:
			continue;
		}
		if (!first)
			rs_proj_buf_put(&sql, ", ", 2);
		first = 0;
		rs_proj_buf_put(&sql, frag, strlen(frag));
	}
	snprintf(head, sizeof(head), " FROM %s s WHERE ", t->stage);
	rs_proj_buf_put(&sql, head, strlen(head));
	for (int k = 0; k < t->nkeys; k++) {
		char frag[96];

		snprintf(frag, sizeof(frag), "%st.%s = s.%s", k ? " AND " : "", t->cols[k].name,
		         t->cols[k].name);
		rs_proj_buf_put(&sql, frag, strlen(frag));
	}
	/* ON COMMIT DELETE ROWS empties the stage at commit; a rebuild's swap
	 * applies several batches in one transaction, so empty it now. */
	snprintf(head, sizeof(head), "; TRUNCATE %s", t->stage);
	rs_proj_buf_put(&sql, head, strlen(head));
	if (sql.oom) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	st = rs_proj_exec_ok(c, PQexec(c, sql.p), t->table);
cleanup:
	free(ins.p);
	free(upd.p);
	free(sql.p);
	return st;
}

rs_status
rs_proj_runs_prepare(PGconn *c)
{
	rs_proj_rows rows;
	const rs_proj_table *defs[3] = { &rows.runs, &rows.steps, &rows.tools };
	rs_proj_buf sql = { 0 };
	rs_status st;

	rs_proj_rows_init(&rows);
	/* Staging tables mirror the columns, all nullable (NULL = keep). */
	for (int i = 0; i < 3; i++) {
		rs_proj_buf_put(&sql, "CREATE TEMP TABLE IF NOT EXISTS ", 32);
		rs_proj_buf_put(&sql, defs[i]->stage, strlen(defs[i]->stage));
		rs_proj_buf_put(&sql, " (", 2);
		for (int k = 0; k < defs[i]->ncols; k++) {
			if (k > 0)
				rs_proj_buf_put(&sql, ", ", 2);
			rs_proj_buf_put(&sql, defs[i]->cols[k].name, strlen(defs[i]->cols[k].name));
			rs_proj_buf_put(&sql, " ", 1);
			rs_proj_buf_put(&sql, defs[i]->cols[k].type, strlen(defs[i]->cols[k].type));
		}
		rs_proj_buf_put(&sql, ") ON COMMIT DELETE ROWS; ", 25);
	}
	if (sql.oom) {
		free(sql.p);
		return RS_ENOMEM;
	}
	st = rs_proj_exec_ok(c, PQexec(c, sql.p), "create staging tables");
	free(sql.p);
	return st;
}

