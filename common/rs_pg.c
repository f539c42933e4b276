/* rs_pg.c - libpq helpers and migrations (see rs_pg.h). */
#include "rs_pg.h"
#include "rs_json.h"
#include "rs_log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The advisory lock key all migration runners share: 1383232883 ("Runs"). */


rs_status
rs_pg_connect(PGconn **out, const char *url)
{
	PGconn *c = PQconnectdb(url);

	if (PQstatus(c) != CONNECTION_OK) {
		rs_warn("pg: cannot connect: %s", PQerrorMessage(c));
		PQfinish(c);
		*out = NULL;
		return RS_EUNAVAIL;
	}
	*out = c;
	return RS_OK;
}

int
rs_pg_conn_lost(PGconn *c)
{
	return c == NULL || PQstatus(c) != CONNECTION_OK;
}

rs_status
rs_pg_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType t = PQresultStatus(r);
	rs_status st = RS_OK;

	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
		rs_warn("pg: %s", PQresultErrorMessage(r));
		st = rs_pg_conn_lost(c) ? RS_EUNAVAIL : RS_EIO;
	}
	PQclear(r);
	return st;
}

int
rs_migration_version(const char *name)
{
	int v = 0, n = 0;

	while (isdigit((unsigned char)name[n])) {
		v = v * 10 + (name[n] - '0');
		n++;
	}
	if (n != 4 || name[n] != '_' || strlen(name) < 10 ||
	    strcmp(name + strlen(name) - 4, ".sql") != 0)
		return -1;
	return v;
}

static rs_status
migrate_one(PGconn *c, const char *name, const char *sql, char *report, size_t cap,
            int *applied)
{
	char sum[65], vbuf[16];
	const char *params[3];
	PGresult *r = NULL;
	rs_status st;
	size_t n = strlen(report);
	int version = rs_migration_version(name);

	if (version < 0) {
		rs_error("migrate: bad file name %s (want NNNN_name.sql)", name);
		return RS_EINVAL;
	}
	rs_sha256_hex(sql, strlen(sql), sum);
	snprintf(vbuf, sizeof(vbuf), "%d", version);
	if ((st = rs_pg_exec(c, "BEGIN")) != RS_OK)
		return st;
	st = rs_pg_exec(c, "SELECT pg_advisory_xact_lock(1383232883)");
	if (st != RS_OK)
		goto rollback;
	params[0] = vbuf;
	r = PQexecParams(c, "SELECT checksum FROM schema_migrations WHERE version = $1",
	                 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		st = RS_EIO;
		goto rollback;
	}
	if (PQntuples(r) == 1) {
		if (strcmp(PQgetvalue(r, 0, 0), sum) != 0) {
			rs_error("migrate: %s was edited after it was applied (checksum %s, recorded %s); "
			         "add a new migration instead", name, sum, PQgetvalue(r, 0, 0));
			st = RS_ECONFLICT;
			goto rollback;
		}
		snprintf(report + n, cap - n, "unchanged %s\n", name);
		PQclear(r);
		return rs_pg_exec(c, "COMMIT");
	}
	PQclear(r);
	r = NULL;
	if ((st = rs_pg_exec(c, sql)) != RS_OK) {
		rs_error("migrate: %s failed", name);
		goto rollback;
	}
	params[1] = name;
	params[2] = sum;
	r = PQexecParams(c, "INSERT INTO schema_migrations (version, name, checksum) "
	                    "VALUES ($1, $2, $3)", 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		rs_error("migrate: recording %s: %s", name, PQresultErrorMessage(r));
		st = RS_EIO;
		goto rollback;
	}
	PQclear(r);
	if ((st = rs_pg_exec(c, "COMMIT")) != RS_OK)
		return st;
	snprintf(report + n, cap - n, "applied %s\n", name);
	(*applied)++;
	return RS_OK;
rollback:
	PQclear(r);
	rs_pg_exec(c, "ROLLBACK");
	return st;
}

rs_status
rs_pg_migrate(PGconn *c, char *report, size_t cap, int *applied)
{
	rs_status st;

	report[0] = '\0';
	*applied = 0;
	/* Creating the ledger races harmlessly only under the lock. */
	st = rs_pg_exec(c, "BEGIN; SELECT pg_advisory_xact_lock(1383232883); "
	                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
	                   " version integer PRIMARY KEY, name text NOT NULL,"
	                   " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
	                   " COMMIT;");
	if (st != RS_OK) {
		rs_pg_exec(c, "ROLLBACK");
		return st;
	}
	for (int i = 0; rs_migrations[i] != NULL; i++) {
		st = migrate_one(c, rs_migrations_names[i], rs_migrations[i], report, cap, applied);
		if (st != RS_OK)
			return st;
	}
	return RS_OK;
}
