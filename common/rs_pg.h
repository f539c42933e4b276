/*
 * rs_pg.h - libpq helpers and the migration runner.
 *
 * Migrations are migrations/NNNN_name.sql, embedded at build time. Each
 * pending file runs in its own transaction and is recorded in
 * schema_migrations with its SHA-256; an applied file whose checksum
 * changed stops the run (RS_ECONFLICT). A transaction-level advisory lock
 * makes two concurrent runners safe: the second waits, then sees the work
 * done.
 */
#ifndef RS_PG_H
#define RS_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include "rs_status.h"

/* Embedded migrations (NULL-terminated) and their file names. */
extern const char *const rs_migrations[];
extern const char *const rs_migrations_names[];

/* Connect to url. Caller owns *out (PQfinish). RS_EUNAVAIL if unreachable. */
rs_status rs_pg_connect(PGconn **out, const char *url);

/* Run a statement without results; RS_EIO with the server message logged. */
rs_status rs_pg_exec(PGconn *c, const char *sql);

/* 1 if the error on res/conn means the server is gone (retry later). */
int rs_pg_conn_lost(PGconn *c);

/* Checksum and version of one migration file: version is the leading
 * number of the name ("0002_x.sql" -> 2), -1 if the name is malformed. */
int rs_migration_version(const char *name);

/* Apply pending migrations. report gets one line per file. *applied is the
 * number newly applied. */
rs_status rs_pg_migrate(PGconn *c, char *report, size_t cap, int *applied);

#endif
