/*
 * pgcopy.h - the projector's Postgres writing (pgcopy.c): COPY text
 * buffers, COPY in (waiting, or queued while the caller folds), the row
 * images of fold.h written as COPY + UPDATE ... FROM a stage, and the
 * statement helpers every projection file uses. Private to the projector.
 */
#ifndef RS_PROJ_PGCOPY_H
#define RS_PROJ_PGCOPY_H

#include <libpq-fe.h>
#include <stddef.h>
#include "fold.h"
#include "rs_status.h"

/* A growable byte buffer; oom is set (and further puts ignored) when an
 * allocation failed, so a builder checks once at the end. */
typedef struct {
	char *p;
	size_t len, cap;
	int oom;
} rs_proj_buf;

void rs_proj_buf_put(rs_proj_buf *b, const char *s, size_t n);
/* One COPY text field (NULL = \N; backslash, tab, CR, LF escaped), after a
 * tab unless first. */
void rs_proj_buf_field_n(rs_proj_buf *b, const char *s, size_t n, int first);
void rs_proj_buf_field(rs_proj_buf *b, const char *s, int first);

/* A failed statement: logs it, RS_EUNAVAIL if the connection is lost,
 * else RS_EIO. r may be NULL (the error is on the connection). */
rs_status rs_proj_pg_fail(PGconn *c, PGresult *r, const char *what);
/* Check and clear a statement's result. */
rs_status rs_proj_exec_ok(PGconn *c, PGresult *r, const char *what);

/* COPY data in with sql ("COPY ... FROM STDIN") and wait for its result. */
rs_status rs_proj_copy_in(PGconn *c, const char *sql, const rs_proj_buf *data);
/* The same without waiting (non-blocking connection): start, then
 * rs_proj_copy_pump() now and then while folding, then rs_proj_copy_finish(). */
rs_status rs_proj_copy_start(PGconn *c, const char *sql, const rs_proj_buf *data);
void rs_proj_copy_pump(PGconn *c);
rs_status rs_proj_copy_finish(PGconn *c, const char *what);

/* COPY t's new rows into its table, its changes into the stage, and one
 * UPDATE ... FROM the stage merging them by each column's rule. */
rs_status rs_proj_table_write(PGconn *c, const rs_proj_table *t);

#endif
