/*
 * cmd_archive.c - `runctl archive --out DIR [--older-than S] [--purge]`:
 * export finished runs, one `runctl export` file each, before RUNS has to
 * let them go, and (with --purge) remove them from RUNS.
 *
 * RUNS is bounded with discard "new" (docs/operations.md "Storage bounds"):
 * the server never deletes events to make room, so a run in flight is
 * never cut, and space comes back only by purging runs that are finished.
 * That is this command. Candidates come from the read model (runs whose
 * status is terminal and whose finished_at is older than --older-than
 * seconds); the log decides: a run is archived and purged only if its last
 * event in RUNS is terminal. Each file is written to a temporary name,
 * flushed to disk and renamed before the run is purged, so a crash leaves
 * either the run in RUNS or its archive (or both), never neither. Every
 * archived run is also a line of DIR/archive.ndjson (tenant, run_id, file,
 * events, archived_at, purged): where to look for a history that RUNS no
 * longer has. The read model keeps the run and its events (Postgres is not
 * purged): `runctl replay RUN --from-pg` still works.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "history.h"
#include "rs_config.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_pg.h"
#include "rs_time.h"
#include "runctl.h"

static const char *const archive_flags[] = { "out", "older-than", "tenant", "limit", "purge",
                                             "pg", NULL };

static const char candidates_sql[] =
	"SELECT tenant, run_id::text FROM runs"
	" WHERE status IN ('completed', 'failed', 'cancelled', 'timed_out')"
	"   AND finished_at <= now() - make_interval(secs => $1::double precision)"
	"   AND ($2::text = '' OR tenant = $2)"
	" ORDER BY finished_at, run_id LIMIT $3::int";

static int
mkdir_p(const char *dir)
{
	char p[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(p))
		return -1;
	memcpy(p, dir, n + 1);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			if (mkdir(p, 0700) != 0 && errno != EEXIST)
				return -1;
			*s = '/';
		}
	return mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Parse a non-negative integer flag; -1 if malformed. */
/* The run's registry entry (KV runs, <tenant>.<run_id>) gains
 * "archived_at" and "archive" before its events are purged: a reader that
 * finds no events then knows the run is finished and where it went (the
 * API answers waits from the read model and SSE with 410), instead of
 * taking it for a run whose first event is still to come. 0 or -1. */
static int
mark_archived(rs_nats *n, const char *tenant, const char *run_id, const char *file)
{
	kvStore *kv = NULL;
	kvEntry *e = NULL;
	json_t *reg = NULL;
	char key[160], at[40], err[128], *txt = NULL;
	natsStatus s;
	int rc = -1;

	if (js_KeyValue(&kv, n->js, "runs") != NATS_OK)
		return -1;
	snprintf(key, sizeof(key), "%s.%s", tenant, run_id);
	s = kvStore_Get(&e, kv, key);
	if (s == NATS_OK)
		rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &reg, err, sizeof(err));
	else if (s != NATS_NOT_FOUND)
		goto cleanup;
	if (!json_is_object(reg)) {
		json_decref(reg);
		reg = json_object();
	}
	rs_time_rfc3339(rs_now_ms(), at, sizeof(at));
	json_object_set_new(reg, "archived_at", json_string(at));
	json_object_set_new(reg, "archive", json_string(file));
	if ((txt = rs_json_dump(reg)) != NULL && kvStore_PutString(NULL, kv, key, txt) == NATS_OK)
		rc = 0;
cleanup:
	free(txt);
	json_decref(reg);
	kvEntry_Destroy(e);
	kvStore_Destroy(kv);
	return rc;
}

static long long
num_flag(int argc, char **argv, const char *name, long long def, long long max)
{
	const char *v = rs_ctl_flag(argc, argv, name, NULL);
	int64_t out;

	if (v == NULL)
		return def;
	if (rs_parse_int(v, 0, max, &out) != RS_OK)
		return -1;
	return out;
}

/* Archive one run. 1 archived, 0 skipped (not finished in the log, or
 * already purged), RC_* < 0 never: errors are reported and counted. */
static int
archive_one(rs_nats *n, const char *out, const char *tenant, const char *run_id, int purge,
            FILE *manifest, size_t *events_total, int *purged)
{
	char dir[4096], file[4200], tmp[4300], err[512], subj[200], at[40];
	hist_src src;
	size_t events = 0;
	int terminal = 0, rc, fd;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/%s", out, tenant);
	if (mkdir_p(dir) != 0) {
		fprintf(stderr, "runctl archive: cannot create %s: %s\n", dir, strerror(errno));
		return -1;
	}
	snprintf(file, sizeof(file), "%s/%s.ndjson", dir, run_id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 || (f = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "runctl archive: cannot write %s: %s\n", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	memset(&src, 0, sizeof(src));
	src.run_id = run_id;
	src.tenant = tenant;
	src.nats = n;
	err[0] = '\0';
	rc = rs_ctl_export_run(n, &src, f, &events, &terminal, err, sizeof(err));
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		rc = rc == RC_OK ? RC_FAIL : rc;
	fclose(f);
	if (rc == RC_NOTFOUND) {           /* purged before: its archive is what is left */
		unlink(tmp);
		return 0;
	}
	if (rc != RC_OK || !terminal) {
		unlink(tmp);
		if (rc != RC_OK)
			fprintf(stderr, "runctl archive: %s/%s: %s\n", tenant, run_id, err[0] ? err : "cannot export");
		else
			fprintf(stderr, "runctl archive: %s/%s: its last event in RUNS is not terminal; "
			        "left alone\n", tenant, run_id);
		return rc != RC_OK ? -1 : 0;
	}
	if (rename(tmp, file) != 0) {
		fprintf(stderr, "runctl archive: cannot rename %s: %s\n", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	*events_total += events;
	*purged = 0;
	if (purge && mark_archived(n, tenant, run_id, file) != 0) {
		fprintf(stderr, "runctl archive: %s/%s archived but not purged: cannot mark its registry "
		        "entry archived\n", tenant, run_id);
	} else if (purge) {
		jsOptions o;
		jsErrCode jerr = 0;
		natsStatus s;

		jsOptions_Init(&o);
		snprintf(subj, sizeof(subj), "runs.%s.%s", tenant, run_id);
		o.Stream.Purge.Subject = subj;
		s = js_PurgeStream(n->js, "RUNS", &o, &jerr);
		if (s != NATS_OK)
			fprintf(stderr, "runctl archive: %s/%s archived but not purged: %s (%d)\n", tenant,
			        run_id, natsStatus_GetText(s), (int)jerr);
		else
			*purged = 1;
	}
	rs_time_rfc3339(rs_now_ms(), at, sizeof(at));
	{
		json_t *line = json_pack("{s:s, s:s, s:s, s:I, s:s, s:b}", "tenant", tenant, "run_id",
		                         run_id, "file", file, "events", (json_int_t)events,
		                         "archived_at", at, "purged", *purged);
		char *txt = line != NULL ? rs_json_dump(line) : NULL;
		if (txt != NULL) {
			fprintf(manifest, "%s\n", txt);
			fflush(manifest);
		}
		free(txt);
		json_decref(line);
	}
	return 1;
}

int
rs_ctl_cmd_archive(int argc, char **argv)
{
	const char *cmd = "archive";
	const char *out = rs_ctl_flag(argc, argv, "out", NULL);
	const char *tenant = rs_ctl_flag(argc, argv, "tenant", "");
	const char *url = rs_ctl_flag(argc, argv, "pg", rs_env_str("RS_PG_URL",
	                  "postgresql://127.0.0.1:5432/runstream"));
	long long older = num_flag(argc, argv, "older-than", 86400, 100LL * 365 * 86400);
	long long limit = num_flag(argc, argv, "limit", 1000, 1000000);
	int purge = rs_ctl_has(argc, argv, "purge"), rc;
	char olds[32], lims[32], mpath[4200];
	const char *params[3];
	size_t events = 0;
	int archived = 0, purged_n = 0, skipped = 0, failed = 0;
	PGconn *c = NULL;
	PGresult *r = NULL;
	FILE *manifest = NULL;
	rs_nats n;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, archive_flags)) != RC_OK)
		return rc;
	if (out == NULL || out[0] == '\0')
		return rs_ctl_out_err(RC_USAGE, cmd, "--out DIR is required (where the run files go)");
	if (older < 0 || limit < 1)
		return rs_ctl_out_err(RC_USAGE, cmd, "--older-than takes seconds (0 or more), --limit 1 to 1000000");
	if (tenant[0] != '\0' && !rs_id_is_token(tenant, 64))
		return rs_ctl_out_err(RC_USAGE, cmd, "--tenant %s is not a valid tenant name", tenant);
	if (mkdir_p(out) != 0)
		return rs_ctl_out_err(RC_FAIL, cmd, "cannot create %s: %s", out, strerror(errno));
	snprintf(mpath, sizeof(mpath), "%s/archive.ndjson", out);
	if ((manifest = fopen(mpath, "a")) == NULL)
		return rs_ctl_out_err(RC_FAIL, cmd, "cannot write %s: %s", mpath, strerror(errno));
	if (rs_pg_connect(&c, url) != RS_OK) {
		rc = rs_ctl_out_err(RC_DOWN, cmd, "cannot reach Postgres at %s (the read model lists finished "
		             "runs; set RS_PG_URL / --pg)", url);
		goto cleanup;
	}
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK)
		goto cleanup;
	snprintf(olds, sizeof(olds), "%lld", older);
	snprintf(lims, sizeof(lims), "%lld", limit);
	params[0] = olds;
	params[1] = tenant;
	params[2] = lims;
	r = PQexecParams(c, candidates_sql, 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "reading finished runs: %s", PQerrorMessage(c));
		goto cleanup;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int purged = 0;
		int got = archive_one(&n, out, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), purge, manifest,
		                      &events, &purged);
		if (got == 1) {
			archived++;
			purged_n += purged;
			if (purge && !purged)
				failed++;
		} else if (got == 0) {
			skipped++;
		} else {
			failed++;
		}
	}
	if (rs_ctl_out_json()) {
		json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:I, s:s}", "archived", archived, "purged",
		                      purged_n, "skipped", skipped, "failed", failed,
		                      "events", (json_int_t)events, "out", out);
		rs_ctl_out_json_value(stdout, o, 0);
		json_decref(o);
	} else {
		printf("archived %d run(s), %zu event(s), to %s; purged %d from RUNS; skipped %d; failed %d\n",
		       archived, events, out, purged_n, skipped, failed);
	}
	rc = failed ? RC_FAIL : RC_OK;
cleanup:
	PQclear(r);
	if (c != NULL)
		PQfinish(c);
	if (manifest != NULL)
		fclose(manifest);
	if (n.nc != NULL)
		rs_nats_close(&n, 1000);
	return rc;
}
