/*
 * reads.c - GET /v1/runs/{id}, GET /v1/runs, GET /v1/runs/{id}/events.
 *
 * GET /v1/runs/{id} (and every waiter's answer) comes from the log, not
 * from Postgres: the run's view (views.c, folded by common/rs_view.c from
 * the live events or, on a miss, from the run's history read from its
 * literal subject). Read-your-writes holds by construction: the newest event of the
 * run on the log (a direct get, last by subject runs.<tenant>.<run_id>)
 * is the runseq the view must have reached, else the missing events (or
 * the whole history) are read.
 * Postgres is off that path entirely; a stopped Postgres changes nothing
 * for it.
 *
 * Lists and event pages come from the Postgres read models
 * (docs/projector.md), one libpq connection per worker thread
 * (thread-local, reconnected on demand with a 2 s connect timeout).
 * Postgres down -> 503 + Retry-After. The events page keeps its
 * read-your-writes poll: while the page is behind the newest runseq on the
 * log we poll Postgres every 10 ms up to RS_API_RYW_MS (default 2000).
 */
#include "api.h"
#include "request.h"
#include "rs_config.h"
#include "rs_event.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Thread_local PGconn *tl_pg;

void
rs_api_reads_close_thread(void)
{
	if (tl_pg != NULL)
		PQfinish(tl_pg);
	tl_pg = NULL;
}

static PGconn *
pg(rs_api *app)
{
	const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
	const char *vals[] = { app->pg_url, "2", "rs-api", NULL };

	if (tl_pg != NULL && PQstatus(tl_pg) == CONNECTION_OK)
		return tl_pg;
	if (tl_pg != NULL)
		PQfinish(tl_pg);
	tl_pg = PQconnectdbParams(keys, vals, 1);
	if (tl_pg == NULL || PQstatus(tl_pg) != CONNECTION_OK) {
		if (tl_pg != NULL)
			PQfinish(tl_pg);
		tl_pg = NULL;
	}
	return tl_pg;
}

/* Run a query; NULL (and a 503 on job) when Postgres is unavailable. A
 * connection found dead (Postgres restarted since this worker last used
 * it) is replaced and the query tried once more, so a restart costs no
 * client a 503 once Postgres is back. */
static PGresult *
query(rs_api *app, rs_api_job *job, const char *sql, int n, const char *const *params)
{
	PGconn *c;
	PGresult *res = NULL;

	for (int attempt = 0; attempt < 2; attempt++) {
		if ((c = pg(app)) == NULL)
			break;
		res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			return res;
		rs_warn("reads: query failed: %s", PQerrorMessage(c));
		PQclear(res);
		if (PQstatus(c) == CONNECTION_OK) {
			rs_api_problem(job, 500, "read query failed");
			return NULL;
		}
		rs_api_reads_close_thread();
	}
	rs_api_problem_retry(job, 503, 2, "the read models (Postgres) are unavailable; run "
	                     "creation, cancel, signals and SSE still work");
	return NULL;
}

#define RUN_FIELDS \
	"'run_id', r.run_id, 'status', r.status, 'agent', r.agent, 'version', r.version, " \
	"'created_at', r.created_at, 'started_at', r.started_at, 'finished_at', r.finished_at, " \
	"'updated_at', r.updated_at, 'last_seq', r.last_seq, 'current_step', r.current_step"

/* The first column of every row of res (JSON text built by the query) as
 * one array; a row that does not parse is left out. New reference. */
static json_t *
json_column(PGresult *res)
{
	json_t *arr = json_array();
	char err[64];

	for (int i = 0; i < PQntuples(res); i++) {
		json_t *v = NULL;
		if (rs_json_parse(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0), &v, err,
		                  sizeof(err)) == RS_OK)
			json_array_append_new(arr, v);
	}
	return arr;
}

PGresult *
rs_api_pg_query(rs_api *app, rs_api_job *job, const char *sql, int n, const char *const *params)
{
	return query(app, job, sql, n, params);
}

json_t *
rs_api_pg_json_column(PGresult *res)
{
	return json_column(res);
}


/* A run whose events were archived and purged from RUNS: its read-model
 * row (runctl archive keeps the row; docs/operations.md). */
static const char *sql_archived_run =
	"SELECT json_build_object(" RUN_FIELDS ", 'input', r.input, 'output', r.output, "
	"'error', r.error, 'idempotency_key', r.idempotency_key, 'cancel_reason', r.cancel_reason, "
	"'timeout_s', r.timeout_s, "
	"'steps', COALESCE((SELECT json_agg(json_build_object('step_id', s.step_id, "
	"  'attempt', s.attempt, 'kind', s.kind, 'status', s.status, 'latest', s.latest, "
	"  'input', s.input, 'output', s.output, 'error', s.error, 'next_step', s.next_step, "
	"  'started_at', s.started_at, 'finished_at', s.finished_at, 'duration_ms', s.duration_ms) "
	"  ORDER BY s.started_at, s.step_id, s.attempt) FROM steps s WHERE s.run_id = r.run_id), '[]'), "
	"'tool_calls', COALESCE((SELECT json_agg(json_build_object('call_id', t.call_id, "
	"  'step_id', t.step_id, 'attempt', t.attempt, 'tool', t.tool, 'device_id', t.device_id, "
	"  'capability', t.capability, 'router', t.router, 'status', t.status, 'args', t.args, "
	"  'output', t.output, 'error', t.error, 'requested_at', t.requested_at, "
	"  'dispatched_at', t.dispatched_at, 'finished_at', t.finished_at, "
	"  'deadline_at', t.deadline_at, 'attempts', t.attempts) "
	"  ORDER BY t.requested_at, t.call_id) FROM tool_calls t WHERE t.run_id = r.run_id), '[]'), "
	/* child runs (parallel, foreach, run steps): the partial index runs_parent */
	"'parent_run_id', r.parent_run_id, 'root_run_id', r.root_run_id, 'tags', r.tags, "
	"'children', COALESCE((SELECT json_agg(json_build_object('run_id', c.run_id, "
	"  'agent', c.agent, 'status', c.status, 'created_at', c.created_at, "
	"  'finished_at', c.finished_at) ORDER BY c.created_at, c.run_id) FROM runs c "
	"  WHERE c.parent_run_id = r.run_id AND c.tenant = r.tenant), '[]')"
	")::text, r.last_seq FROM runs r WHERE r.run_id = $1::uuid AND r.tenant = $2";

void
rs_api_run_view(rs_api *app, rs_api_job *job)
{
	uint64_t log_last = 0;
	int term = 0;
	rs_status st;

	/* The newest event on the log (one direct get) both finds the run
	 * and sets what the answer must reflect: read-your-writes. */
	st = rs_api_run_lookup(app, job->tenant, job->run_id, &log_last, &term);
	if (st == RS_ENOTFOUND) {
		rs_api_problem(job, 404, "no run %s", job->run_id);
		return;
	}
	if (st != RS_OK)
		goto unavailable;
	if (job->wait_s > 0 && !term) {
		/* A waiter's answer (GET ?wait=, Prefer: wait) is the finished
		 * run or nothing: status 0 tells http.c to keep waiting. */
		job->status = 0;
		return;
	}
	if (log_last == 0) {
		/* Created, no event yet: the registry is the truth. Or every
		 * event was archived and purged from RUNS (runctl archive): the
		 * read model keeps the run, and says more than the registry.
		 * Not the hot path: a run has events within milliseconds. */
		const char *params[2] = { job->run_id, job->tenant };
		PGresult *res = query(app, job, sql_archived_run, 2, params);
		json_t *v = NULL;
		char err[128];
		if (res != NULL && PQntuples(res) == 1 &&
		    rs_json_parse(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), &v, err,
		                  sizeof(err)) == RS_OK) {
			PQclear(res);
			job->hdrs[0] = '\0';
			rs_api_json(job, 200, v);
			return;
		}
		PQclear(res);
		v = rs_api_registry_view(app, job->tenant, job->run_id);
		if (v != NULL) {
			job->hdrs[0] = '\0';
			rs_api_json(job, 200, v);
			return;
		}
	}
	if (rs_api_views_render(app, job->tenant, job->run_id, log_last, 0, job) == RS_OK ||
	    rs_api_views_catch_up(app, job->tenant, job->run_id, log_last, job) == RS_OK)
		return;
	/* A history read short of log_last came from older state (a resumed
	 * RUNS leader answers for a moment after SIGCONT): read again a few
	 * times before giving the client a 503. */
	for (int tries = 0; tries < 5; tries++) {
		st = rs_api_views_load(app, job->tenant, job->run_id, log_last, job);
		if (st != RS_EUNAVAIL)
			break;
		usleep(100000);
	}
	if (st == RS_OK)
		return;
	if (st == RS_ENOTFOUND) {
		/* The run's events are gone (stream limits) while its registry
		 * entry stays: queued, as GET shows a run without events. */
		json_t *v = rs_api_registry_view(app, job->tenant, job->run_id);
		if (v != NULL) {
			rs_api_json(job, 200, v);
			return;
		}
		rs_api_problem(job, 404, "no run %s", job->run_id);
		return;
	}
unavailable:
	job->hdrs[0] = '\0';
	rs_api_problem_retry(job, 503, 1, "cannot read run %s from JetStream: %s", job->run_id,
	               rs_status_str(st));
}

void
rs_api_runs_get(rs_api *app, rs_api_job *job)
{
	rs_api_run_view(app, job);
}

void
rs_api_runs_list(rs_api *app, rs_api_job *job)
{
	static const char *sql =
		"SELECT json_build_object(" RUN_FIELDS ", 'output', r.output, 'error', r.error, "
		"  'tags', r.tags)::text, "
		"  ((extract(epoch from r.created_at) * 1000000)::bigint)::text, r.run_id::text "
		"FROM runs r WHERE r.tenant = $1 AND ($2::text IS NULL OR r.status = $2) "
		"AND ($3::text IS NULL OR r.agent = $3) "
		"AND ($4::bigint IS NULL OR (r.created_at, r.run_id) < "
		"     ('epoch'::timestamptz + $4::bigint * interval '1 microsecond', $5::uuid)) "
		/* tag=k:v: containment, served by the GIN index runs_tags (0004) */
		"AND ($7::jsonb IS NULL OR r.tags @> $7::jsonb) "
		"AND ($8::bigint IS NULL OR r.created_at >= 'epoch'::timestamptz + $8::bigint * interval '1 millisecond') "
		"AND ($9::bigint IS NULL OR r.created_at < 'epoch'::timestamptz + $9::bigint * interval '1 millisecond') "
		"ORDER BY r.created_at DESC, r.run_id DESC LIMIT $6";
	char status[32] = "", agent[80] = "", after[200] = "", limit_s[16] = "20";
	char cur_us[32] = "", cur_id[40] = "", tag[RS_API_HDR_MAX] = "", ca[64] = "", cb[64] = "";
	char ca_ms[24] = "", cb_ms[24] = "", *tagjson = NULL;
	const char *params[9];
	int64_t limit;
	PGresult *res;
	json_t *arr, *next = json_null();
	int have_status = rs_api_qarg(job->query, "status", status, sizeof(status));
	int have_agent = rs_api_qarg(job->query, "agent", agent, sizeof(agent));

	if (have_status && strcmp(status, "queued") && strcmp(status, "running") &&
	    strcmp(status, "waiting") && strcmp(status, "completed") && strcmp(status, "failed") &&
	    strcmp(status, "cancelled") && strcmp(status, "timed_out")) {
		rs_api_problem(job, 400, "status: must be one of queued, running, waiting, completed, "
		               "failed, cancelled, timed_out");
		return;
	}
	rs_api_qarg(job->query, "limit", limit_s, sizeof(limit_s));
	if (rs_parse_int(limit_s, 1, 100, &limit) != RS_OK) {
		rs_api_problem(job, 400, "limit: must be an integer from 1 to 100");
		return;
	}
	if (rs_api_qarg(job->query, "after", after, sizeof(after)) &&
	    rs_api_cursor_decode(after, cur_us, cur_id) != RS_OK) {
		rs_api_problem(job, 400, "after: not a cursor returned by this API");
		return;
	}
	/* tag=k:v (one), created_after / created_before (RFC 3339), already
	 * url-decoded (http.c): checked here so Postgres never sees a bad
	 * value. */
	if (rs_api_qarg(job->query, "tag", tag, sizeof(tag))) {
		char *colon, e[160];
		json_t *t;
		if ((colon = strchr(tag, ':')) == NULL) {
			rs_api_problem(job, 400, "tag: must be key:value");
			return;
		}
		*colon = '\0';
		t = json_object();
		snprintf(e, sizeof(e), "tags: must be key:value in UTF-8");
		if (json_object_set_new(t, tag, json_string(colon + 1)) != 0 ||
		    rs_api_tags_check(t, e, sizeof(e)) != 0) {
			json_decref(t);
			rs_api_problem(job, 400, "tag=: %s", e);
			return;
		}
		tagjson = rs_json_dump(t);
		json_decref(t);
	}
	for (int i = 0; i < 2; i++) {
		const char *k = i ? "created_before" : "created_after";
		char *v = i ? cb : ca, *out = i ? cb_ms : ca_ms;
		int64_t ms;
		/* since / until: the same, by the names the viewer first used */
		if (!rs_api_qarg(job->query, k, v, 64) &&
		    !rs_api_qarg(job->query, i ? "until" : "since", v, 64))
			continue;
		if (rs_time_parse_rfc3339(v, &ms) != RS_OK) {
			free(tagjson);
			rs_api_problem(job, 400, "%s: must be an RFC 3339 time", k);
			return;
		}
		snprintf(out, 24, "%lld", (long long)ms);
	}
	params[0] = job->tenant;
	params[1] = have_status ? status : NULL;
	params[2] = have_agent ? agent : NULL;
	params[3] = cur_us[0] ? cur_us : NULL;
	params[4] = cur_id[0] ? cur_id : NULL;
	params[5] = limit_s;
	params[6] = tagjson;
	params[7] = ca_ms[0] ? ca_ms : NULL;
	params[8] = cb_ms[0] ? cb_ms : NULL;
	res = query(app, job, sql, 9, params);
	free(tagjson);
	if (res == NULL)
		return;
	arr = json_column(res);
	if (PQntuples(res) == limit) {
		char enc[160];
		int last = PQntuples(res) - 1;
		rs_api_cursor_encode(PQgetvalue(res, last, 1), PQgetvalue(res, last, 2), enc, sizeof(enc));
		next = json_string(enc);
	}
	PQclear(res);
	rs_api_json(job, 200, json_pack("{s:o, s:o}", "runs", arr, "next_after", next));
}

void
rs_api_runs_events(rs_api *app, rs_api_job *job)
{
	static const char *sql =
		"SELECT (jsonb_build_object('specversion', '1.0', 'id', e.event_id, 'source', e.source, "
		"  'type', 'runstream.' || e.type, 'subject', e.run_id::text, "
		"  'time', to_char(e.time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
		"  'datacontenttype', 'application/json', 'runseq', e.seq, 'tenant', e.tenant, "
		"  'data', e.data) || CASE WHEN e.traceparent IS NULL OR e.traceparent = '' "
		"  THEN '{}'::jsonb ELSE jsonb_build_object('traceparent', e.traceparent) END)::text, "
		"  e.seq::text "
		"FROM run_events e WHERE e.run_id = $1::uuid AND e.tenant = $2 AND e.seq > $3::bigint "
		"ORDER BY e.seq LIMIT $4";
	char after_s[24] = "0", limit_s[16] = "100";
	int64_t after, limit;
	uint64_t log_last = 0, next;
	int term = 0;
	int64_t deadline = rs_mono_ms() + app->ryw_ms;
	rs_status st;

	rs_api_qarg(job->query, "after", after_s, sizeof(after_s));
	rs_api_qarg(job->query, "limit", limit_s, sizeof(limit_s));
	if (rs_parse_int(after_s, 0, INT64_MAX, &after) != RS_OK) {
		rs_api_problem(job, 400, "after: must be an event runseq (integer >= 0)");
		return;
	}
	if (rs_parse_int(limit_s, 1, 1000, &limit) != RS_OK) {
		rs_api_problem(job, 400, "limit: must be an integer from 1 to 1000");
		return;
	}
	st = rs_api_run_lookup(app, job->tenant, job->run_id, &log_last, &term);
	if (st == RS_ENOTFOUND) {
		rs_api_problem(job, 404, "no run %s", job->run_id);
		return;
	}
	for (;;) {
		const char *params[4] = { job->run_id, job->tenant, after_s, limit_s };
		PGresult *res = query(app, job, sql, 4, params);
		json_t *arr;
		uint64_t want;

		if (res == NULL)
			return;
		next = (uint64_t)after;
		if (PQntuples(res) > 0)
			next = strtoull(PQgetvalue(res, PQntuples(res) - 1, 1), NULL, 10);
		/* Behind the log? Everything up to min(log_last, after+limit)
		 * must be there before we answer
		 * (unsigned sum: after may be INT64_MAX, limit <= 1000.) */
		want = (uint64_t)after + (uint64_t)limit;
		if (log_last < want)
			want = log_last;
		if (next < want && rs_mono_ms() < deadline) {
			PQclear(res);
			usleep(10 * 1000);
			continue;
		}
		arr = json_column(res);
		PQclear(res);
		rs_api_json(job, 200, json_pack("{s:o, s:I}", "events", arr, "next_after",
		                                (json_int_t)next));
		return;
	}
}
