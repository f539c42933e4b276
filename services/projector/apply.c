/*
 * apply.c - a batch of RUNS messages -> rows of runs, run_events, steps and
 * tool_calls, inside the caller's transaction (see projector.h).
 *
 * Why it folds in memory: one statement per event is a round trip per
 * event, far below the COPY rate the issue asks for. Instead the batch is
 * folded into at most one row per key and table: a row created by the
 * batch ("new") is COPYed straight into its table; a row that already
 * exists gets its changed columns COPYed into a temporary staging table and
 * one UPDATE ... FROM per table applies them (NULL in the stage = keep).
 * run_events rows are COPYed as they are.
 *
 * Exactly-once per run rests on runseq: the batch loads runs.last_seq of
 * the runs it touches, and an event is applied only if its runseq is
 * last_seq + 1. runseq <= last_seq is a duplicate and > last_seq + 1 a gap;
 * both are dead-lettered and skipped, so the rows always equal a prefix of
 * the run's log (docs/projector.md).
 */
#include "projector.h"
#include "rs_event.h"
#include "rs_event_fast.h"
#include "rs_hash.h"
#include "rs_id.h"
#include "rs_log.h"
#include "rs_time.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <poll.h>
#include <string.h>

/* ---- growable byte buffer with COPY text escaping ---- */

typedef struct {
	char *p;
	size_t len, cap;
	int oom;
} sbuf;

static void
sb_put(sbuf *b, const char *s, size_t n)
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
static void
sb_field_n(sbuf *b, const char *s, size_t n, int first)
{
	const char *run, *end = s ? s + n : NULL;

	if (!first)
		sb_put(b, "\t", 1);
	if (s == NULL) {
		sb_put(b, "\\N", 2);
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
		sb_put(b, run, (size_t)(s - run));
		sb_put(b, esc, 2);
		run = s + 1;
	}
	sb_put(b, run, (size_t)(s - run));
}

static void
sb_field(sbuf *b, const char *s, int first)
{
	sb_field_n(b, s, s ? strlen(s) : 0, first);
}

/* ---- raw member lookup in already validated JSON ----
 * run_events.data stores the data object as sent. Parsing each event a
 * second time with jansson just to re-serialise it cost more than a third
 * of the projector's CPU; the decoder has validated the text, so a scanner
 * that only tracks strings and nesting finds the member's bytes. */

static const char *
skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at '"': return the position after the closing quote. */
static const char *
skip_str(const char *p, const char *e)
{
	for (p++; p < e; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return e;
}

/* p at the first byte of a value: return the position just after it. */
static const char *
skip_value(const char *p, const char *e)
{
	int depth = 0;

	while (p < e) {
		if (*p == '"') {
			p = skip_str(p, e);
			if (depth == 0)
				return p;
			continue;
		}
		if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (depth == 0)
				return p;
			if (--depth == 0)
				return p + 1;
		} else if (depth == 0 && (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' ||
		                          *p == '\r')) {
			return p;
		}
		p++;
	}
	return e;
}

/* Find top-level member key (written without escapes) of the object text. */
static int
raw_member(const char *buf, size_t len, const char *key, const char **vs, size_t *vn)
{
	const char *p = buf, *e = buf + len, *k, *ke, *v;
	size_t kl = strlen(key);

	p = skip_ws(p, e);
	if (p >= e || *p != '{')
		return 0;
	for (p++;;) {
		p = skip_ws(p, e);
		if (p >= e || *p != '"')
			return 0;
		k = p + 1;
		ke = p = skip_str(p, e);   /* after the closing quote */
		p = skip_ws(p, e);
		if (p >= e || *p != ':')
			return 0;
		v = skip_ws(p + 1, e);
		p = skip_value(v, e);
		/* (Comparing with the end of the value, as before, never matched:
		 * every event went through json_loadb + json_dumps.) */
		if ((size_t)(ke - 1 - k) == kl && memcmp(k, key, kl) == 0) {
			*vs = v;
			*vn = (size_t)(p - v);
			return 1;
		}
		p = skip_ws(p, e);
		if (p >= e || *p != ',')
			return 0;
		p++;
	}
}

/* ---- string -> index hash (open addressing; keys owned by the caller) ---- */

typedef struct {
	const char **keys;
	int *vals;
	size_t cap, n;
} ptab;

static int
ptab_get(const ptab *t, const char *k)
{
	size_t i;

	if (t->cap == 0)
		return -1;
	for (i = rs_hash_str(k) & (t->cap - 1); t->keys[i] != NULL; i = (i + 1) & (t->cap - 1))
		if (strcmp(t->keys[i], k) == 0)
			return t->vals[i];
	return -1;
}

static int
ptab_put(ptab *t, const char *k, int v)
{
	size_t i;

	if ((t->n + 1) * 2 > t->cap) {
		ptab nt = { NULL, NULL, t->cap ? t->cap * 2 : 64, 0 };

		nt.keys = calloc(nt.cap, sizeof(*nt.keys));
		nt.vals = calloc(nt.cap, sizeof(*nt.vals));
		if (nt.keys == NULL || nt.vals == NULL) {
			free(nt.keys);
			free(nt.vals);
			return -1;
		}
		for (i = 0; i < t->cap; i++)
			if (t->keys[i] != NULL)
				ptab_put(&nt, t->keys[i], t->vals[i]);
		free(t->keys);
		free(t->vals);
		*t = nt;
	}
	for (i = rs_hash_str(k) & (t->cap - 1); t->keys[i] != NULL; i = (i + 1) & (t->cap - 1))
		;
	t->keys[i] = k;
	t->vals[i] = v;
	t->n++;
	return 0;
}

static void
ptab_free(ptab *t)
{
	free(t->keys);
	free(t->vals);
	memset(t, 0, sizeof(*t));
}

/* ---- tables as column lists ---- */

enum { PU_NONE, PU_KEEP, PU_ADD, PU_STATUS };

typedef struct {
	const char *name, *type;
	int upd;
} pcol;

#define PMAXCOL 20

typedef struct {
	char *v[PMAXCOL];  /* malloc'd text values; NULL = SQL NULL (stage: keep) */
	char *key;
	int is_new;        /* created by this batch: INSERT, else stage + UPDATE */
} prow;

typedef struct {
	const char *table, *stage;
	const pcol *cols;
	int ncols, nkeys;
	prow *rows;
	size_t n, cap;
	ptab idx;
} ptable;

enum { R_ID, R_TENANT, R_AGENT, R_VERSION, R_STATUS, R_INPUT, R_OUTPUT, R_ERROR, R_IDEM,
       R_CUR, R_TIMEOUT, R_CANCEL, R_CREATED, R_STARTED, R_FINISHED, R_UPDATED, R_LASTSEQ,
       R_PARENT, R_ROOT, R_TAGS, R__N };
static const pcol runs_cols[R__N] = {
	{ "run_id", "uuid", PU_NONE }, { "tenant", "text", PU_NONE },
	{ "agent", "text", PU_NONE }, { "version", "text", PU_NONE },
	{ "status", "text", PU_STATUS }, { "input", "jsonb", PU_NONE },
	{ "output", "jsonb", PU_KEEP }, { "error", "jsonb", PU_KEEP },
	{ "idempotency_key", "text", PU_NONE }, { "current_step", "text", PU_KEEP },
	{ "timeout_s", "bigint", PU_KEEP }, { "cancel_reason", "text", PU_KEEP },
	{ "created_at", "timestamptz", PU_NONE }, { "started_at", "timestamptz", PU_KEEP },
	{ "finished_at", "timestamptz", PU_KEEP }, { "updated_at", "timestamptz", PU_KEEP },
	{ "last_seq", "bigint", PU_KEEP },
	/* 0004: child runs, tags (set by run.created only) */
	{ "parent_run_id", "uuid", PU_NONE }, { "root_run_id", "uuid", PU_NONE },
	{ "tags", "jsonb", PU_NONE },
};

enum { S_RUN, S_STEP, S_ATT, S_KIND, S_STATUS, S_LATEST, S_INPUT, S_OUTPUT, S_ERROR, S_NEXT,
       S_STARTED, S_FINISHED, S_DUR, S_UPDATED, S__N };
static const pcol steps_cols[S__N] = {
	{ "run_id", "uuid", PU_NONE }, { "step_id", "text", PU_NONE },
	{ "attempt", "integer", PU_NONE }, { "kind", "text", PU_NONE },
	{ "status", "text", PU_KEEP }, { "latest", "boolean", PU_KEEP },
	{ "input", "jsonb", PU_KEEP }, { "output", "jsonb", PU_KEEP },
	{ "error", "jsonb", PU_KEEP }, { "next_step", "text", PU_KEEP },
	{ "started_at", "timestamptz", PU_NONE }, { "finished_at", "timestamptz", PU_KEEP },
	{ "duration_ms", "bigint", PU_KEEP }, { "updated_at", "timestamptz", PU_KEEP },
};

enum { T_CALL, T_RUN, T_STEP, T_ATT, T_TOOL, T_DEV, T_CAP, T_ROUTER, T_STATUS, T_ARGS,
       T_OUTPUT, T_ERROR, T_REQ, T_DISP, T_FIN, T_DEADLINE, T_ATTEMPTS, T_UPDATED, T__N };
static const pcol tools_cols[T__N] = {
	{ "call_id", "text", PU_NONE }, { "run_id", "uuid", PU_NONE },
	{ "step_id", "text", PU_NONE }, { "attempt", "integer", PU_NONE },
	{ "tool", "text", PU_NONE }, { "device_id", "text", PU_KEEP },
	{ "capability", "text", PU_NONE }, { "router", "text", PU_KEEP },
	{ "status", "text", PU_KEEP }, { "args", "jsonb", PU_NONE },
	{ "output", "jsonb", PU_KEEP }, { "error", "jsonb", PU_KEEP },
	{ "requested_at", "timestamptz", PU_NONE }, { "dispatched_at", "timestamptz", PU_KEEP },
	{ "finished_at", "timestamptz", PU_KEEP }, { "deadline_at", "timestamptz", PU_NONE },
	{ "attempts", "integer", PU_ADD }, { "updated_at", "timestamptz", PU_KEEP },
};

static prow *
tbl_find(ptable *t, const char *key)
{
	int i = ptab_get(&t->idx, key);

	return i < 0 ? NULL : &t->rows[i];
}

/* Find the row of key or add an empty one (is_new as given). */
static prow *
tbl_row(ptable *t, const char *key, int is_new)
{
	prow *r = tbl_find(t, key);

	if (r != NULL)
		return r;
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 64;
		prow *nr = realloc(t->rows, nc * sizeof(*nr));

		if (nr == NULL)
			return NULL;
		t->rows = nr;
		t->cap = nc;
		/* The hash holds pointers to the keys, which did not move. */
	}
	r = &t->rows[t->n];
	memset(r, 0, sizeof(*r));
	if ((r->key = strdup(key)) == NULL)
		return NULL;
	if (ptab_put(&t->idx, r->key, (int)t->n) != 0) {
		free(r->key);
		return NULL;
	}
	r->is_new = is_new;
	t->n++;
	return r;
}

static void
tbl_free(ptable *t)
{
	for (size_t i = 0; i < t->n; i++) {
		for (int c = 0; c < t->ncols; c++)
			free(t->rows[i].v[c]);
		free(t->rows[i].key);
	}
	free(t->rows);
	ptab_free(&t->idx);
	t->rows = NULL;
	t->n = t->cap = 0;
}

/* ---- column setters (all copy; a failed allocation leaves NULL, which the
 * fold reports as RS_ENOMEM through the batch's oom flag) ---- */

/* Set by the setters when an allocation failed; per thread because the
 * projections run on their own threads. Reset by rs_proj_runs_apply. */
static _Thread_local int batch_oom;

static void
set_str(prow *r, int col, const char *s)
{
	free(r->v[col]);
	r->v[col] = NULL;
	if (s != NULL && (r->v[col] = strdup(s)) == NULL)
		batch_oom = 1;
}

static void
set_int(prow *r, int col, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	set_str(r, col, buf);
}

static void
set_time(prow *r, int col, int64_t ms)
{
	char buf[40];

	rs_time_rfc3339(ms, buf, sizeof(buf));
	set_str(r, col, buf);
}

/* JSON value as jsonb text; a NULL json_t is JSON null (not SQL NULL). */
static void
set_json(prow *r, int col, const json_t *v)
{
	char *s;

	free(r->v[col]);
	r->v[col] = NULL;
	s = v == NULL ? strdup("null") : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s == NULL)
		batch_oom = 1;
	r->v[col] = s;
}

static void
set_err(prow *r, int col, const rs_err *e)
{
	json_t *j = rs_err_encode(e);

	if (j == NULL) {
		/* Decoded errors are complete; keep the row usable anyway. */
		set_json(r, col, NULL);
		return;
	}
	set_json(r, col, j);
	json_decref(j);
}

/* ---- the batch ---- */

typedef struct {
	char run_id[40];
	char tenant[72];
	uint64_t last;     /* runseq applied so far (DB, then this batch) */
	int exists;        /* a row exists in the DB or was created by the batch */
} runinfo;

typedef struct {
	char run_id[40];
	const char *status;
	int64_t ms;
} terminal;

typedef struct {
	PGconn *c;
	rs_proj_result *res;
	ptable runs, steps, tools;
	runinfo *info;
	size_t ninfo;
	ptab info_idx;
	sbuf events;       /* COPY text of new run_events rows */
	terminal *ends;
	size_t nends;
} batch;

static int
terminal_status(const char *s)
{
	return s != NULL && (strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
	                     strcmp(s, "cancelled") == 0 || strcmp(s, "timed_out") == 0);
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

static rs_status
pg_fail(PGconn *c, PGresult *r, const char *what)
{
	rs_warn("projector: %s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	return rs_proj_pg_lost(c, r) ? RS_EUNAVAIL : RS_EIO;
}

static rs_status
exec_ok(PGconn *c, PGresult *r, const char *what)
{
	ExecStatusType t = PQresultStatus(r);
	rs_status st = RS_OK;

	if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK)
		st = pg_fail(c, r, what);
	PQclear(r);
	return st;
}

/* Sanitized copy: printable ASCII only, so reasons and subjects from the
 * outside are always valid text for Postgres and the logs. */
static char *
printable(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	char *o = malloc(n + 1);

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		o[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	o[n] = '\0';
	return o;
}

rs_status
rs_proj_add_dead(rs_proj_result *res, const rs_proj_msg *m, const char *fmt, ...)
{
	char buf[512];
	rs_proj_dead *nd;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	nd = realloc(res->dead, (res->ndead + 1) * sizeof(*nd));
	if (nd == NULL)
		return RS_ENOMEM;
	res->dead = nd;
	nd[res->ndead].msg = m;
	if ((nd[res->ndead].reason = printable(buf, sizeof(buf))) == NULL)
		return RS_ENOMEM;
	res->ndead++;
	return RS_OK;
}

void
rs_proj_result_reset(rs_proj_result *r)
{
	for (size_t i = 0; i < r->ndead; i++)
		free(r->dead[i].reason);
	free(r->dead);
	memset(r, 0, sizeof(*r));
}

rs_status
rs_proj_store_dead(PGconn *c, const char *source, const rs_proj_result *res)
{
	for (size_t i = 0; i < res->ndead; i++) {
		const rs_proj_msg *m = res->dead[i].msg;
		char seq[24], *subj = printable(m->subject, 1024);
		const char *p[5] = { source, seq, subj, res->dead[i].reason, m->data };
		int lens[5] = { 0, 0, 0, 0, m->len };
		int fmts[5] = { 0, 0, 0, 0, 1 };
		rs_status st;

		if (subj == NULL)
			return RS_ENOMEM;
		snprintf(seq, sizeof(seq), "%" PRIu64, m->seq);
		st = exec_ok(c, PQexecParams(c,
		    "INSERT INTO dead_letters (source, stream_seq, subject, reason, payload) "
		    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, stream_seq) DO NOTHING",
		    5, NULL, p, lens, fmts, 0), "insert dead letter");
		free(subj);
		if (st != RS_OK)
			return st;
	}
	return RS_OK;
}

rs_status
rs_proj_runs_prepare(PGconn *c)
{
	const ptable defs[3] = {
		{ "runs", "rs_stage_runs", runs_cols, R__N, 1, NULL, 0, 0, { 0 } },
		{ "steps", "rs_stage_steps", steps_cols, S__N, 3, NULL, 0, 0, { 0 } },
		{ "tool_calls", "rs_stage_tool_calls", tools_cols, T__N, 1, NULL, 0, 0, { 0 } },
	};
	sbuf sql = { 0 };
	rs_status st;

	/* Staging tables mirror the columns, all nullable (NULL = keep). */
	for (int i = 0; i < 3; i++) {
		sb_put(&sql, "CREATE TEMP TABLE IF NOT EXISTS ", 32);
		sb_put(&sql, defs[i].stage, strlen(defs[i].stage));
		sb_put(&sql, " (", 2);
		for (int k = 0; k < defs[i].ncols; k++) {
			if (k > 0)
				sb_put(&sql, ", ", 2);
			sb_put(&sql, defs[i].cols[k].name, strlen(defs[i].cols[k].name));
			sb_put(&sql, " ", 1);
			sb_put(&sql, defs[i].cols[k].type, strlen(defs[i].cols[k].type));
		}
		sb_put(&sql, ") ON COMMIT DELETE ROWS; ", 25);
	}
	if (sql.oom) {
		free(sql.p);
		return RS_ENOMEM;
	}
	st = exec_ok(c, PQexec(c, sql.p), "create staging tables");
	free(sql.p);
	return st;
}

/* Load tenant and last_seq of the batch's runs that exist in the DB. */
static rs_status
load_runs(batch *b)
{
	sbuf arr = { 0 };
	PGresult *r;
	const char *p[1];
	rs_status st = RS_OK;

	sb_put(&arr, "{", 1);
	for (size_t i = 0; i < b->ninfo; i++) {
		if (i > 0)
			sb_put(&arr, ",", 1);
		sb_put(&arr, b->info[i].run_id, strlen(b->info[i].run_id));
	}
	sb_put(&arr, "}", 1);
	if (arr.oom)
		return RS_ENOMEM;
	p[0] = arr.p;
	r = PQexecParams(b->c, "SELECT run_id::text, tenant, last_seq FROM runs "
	                       "WHERE run_id = ANY($1::uuid[])", 1, NULL, p, NULL, NULL, 0);
	free(arr.p);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		st = pg_fail(b->c, r, "load runs");
		PQclear(r);
		return st;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int k = ptab_get(&b->info_idx, PQgetvalue(r, i, 0));

		if (k < 0)
			continue;
		snprintf(b->info[k].tenant, sizeof(b->info[k].tenant), "%s", PQgetvalue(r, i, 1));
		b->info[k].last = strtoull(PQgetvalue(r, i, 2), NULL, 10);
		b->info[k].exists = 1;
	}
	PQclear(r);
	return st;
}

/* The run row to change: created by this batch, or a stage row. */
static prow *
run_row(batch *b, const rs_event *ev)
{
	prow *r = tbl_row(&b->runs, ev->run_id, 0);

	if (r != NULL && r->v[R_ID] == NULL)
		set_str(r, R_ID, ev->run_id);
	return r;
}

static void
run_status(prow *r, const char *status)
{
	/* A terminal status is final: a late non-terminal event cannot undo it. */
	if (!terminal_status(r->v[R_STATUS]))
		set_str(r, R_STATUS, status);
}

static prow *
step_row(batch *b, const char *run_id, const char *step_id, int64_t attempt, int is_new)
{
	char key[512];
	prow *r;

	snprintf(key, sizeof(key), "%s\x1f%s\x1f%" PRId64, run_id, step_id, attempt);
	if ((r = tbl_row(&b->steps, key, is_new)) == NULL)
		return NULL;
	if (r->v[S_RUN] == NULL) {
		set_str(r, S_RUN, run_id);
		set_str(r, S_STEP, step_id);
		set_int(r, S_ATT, attempt);
	}
	return r;
}

static prow *
tool_row(batch *b, const char *run_id, const char *call_id, int is_new)
{
	prow *r = tbl_row(&b->tools, call_id, is_new);

	if (r != NULL && r->v[T_CALL] == NULL) {
		set_str(r, T_CALL, call_id);
		set_str(r, T_RUN, run_id);
	}
	return r;
}

static rs_status
add_end(batch *b, const rs_event *ev, const char *status)
{
	terminal *ne = realloc(b->ends, (b->nends + 1) * sizeof(*ne));

	if (ne == NULL)
		return RS_ENOMEM;
	b->ends = ne;
	snprintf(ne[b->nends].run_id, sizeof(ne[b->nends].run_id), "%s", ev->run_id);
	ne[b->nends].status = status;
	ne[b->nends].ms = ev->time_ms;
	b->nends++;
	return RS_OK;
}

static int
purpose_waits(rs_timer_purpose p)
{
	/* Sleeping and retry back-off make the run wait; timeouts only guard. */
	return p == RS_TIMER_SLEEP || p == RS_TIMER_RETRY;
}

/* Fold one in-sequence event into the batch's rows. */
static rs_status
fold(batch *b, const rs_event *ev)
{
	prow *run, *s, *t;
	int64_t tm = ev->time_ms;

	if (ev->type == RS_EV_RUN_CREATED) {
		const rs_ev_run_created *d = &ev->d.run_created;

		if ((run = tbl_row(&b->runs, ev->run_id, 1)) == NULL)
			return RS_ENOMEM;
		run->is_new = 1;
		set_str(run, R_ID, ev->run_id);
		set_str(run, R_TENANT, ev->tenant);
		set_str(run, R_AGENT, d->agent);
		set_str(run, R_VERSION, d->version);
		set_str(run, R_STATUS, "queued");
		set_json(run, R_INPUT, d->input);
		set_str(run, R_IDEM, d->idempotency_key);
		if (d->timeout_s > 0)
			set_int(run, R_TIMEOUT, d->timeout_s);
		set_time(run, R_CREATED, tm);
		set_str(run, R_PARENT, d->parent_run_id);
		set_str(run, R_ROOT, d->root_run_id);
		set_json(run, R_TAGS, d->tags);
	} else if ((run = run_row(b, ev)) == NULL) {
		return RS_ENOMEM;
	}
	set_time(run, R_UPDATED, tm);
	set_int(run, R_LASTSEQ, (int64_t)ev->runseq);

	switch (ev->type) {
	case RS_EV_RUN_CREATED:
		break;
	case RS_EV_RUN_STARTED:
		run_status(run, "running");
		set_time(run, R_STARTED, tm);
		break;
	case RS_EV_STEP_STARTED: {
		const rs_ev_step_started *d = &ev->d.step_started;

		if ((s = step_row(b, ev->run_id, d->step_id, d->attempt, 1)) == NULL)
			return RS_ENOMEM;
		s->is_new = 1;
		set_str(s, S_KIND, d->kind);
		set_str(s, S_STATUS, "running");
		set_str(s, S_LATEST, "t");
		set_json(s, S_INPUT, d->input);
		set_time(s, S_STARTED, tm);
		set_time(s, S_UPDATED, tm);
		/* Only the previous attempt can still carry latest = true. */
		if (d->attempt > 1) {
			if ((s = step_row(b, ev->run_id, d->step_id, d->attempt - 1, 0)) == NULL)
				return RS_ENOMEM;
			set_str(s, S_LATEST, "f");
		}
		/* A signal step, and a step whose work is child runs, wait from
		 * the start (the state machine's "waiting"). */
		run_status(run, strcmp(d->kind, "signal") == 0 || strcmp(d->kind, "parallel") == 0 ||
		           strcmp(d->kind, "foreach") == 0 || strcmp(d->kind, "run") == 0 ?
		           "waiting" : "running");
		set_str(run, R_CUR, d->step_id);
		break;
	}
	case RS_EV_STEP_COMPLETED: {
		const rs_ev_step_completed *d = &ev->d.step_completed;

		if ((s = step_row(b, ev->run_id, d->step_id, d->attempt, 0)) == NULL)
			return RS_ENOMEM;
		set_str(s, S_STATUS, "completed");
		set_json(s, S_OUTPUT, d->output);
		set_str(s, S_NEXT, d->next_step);
		set_int(s, S_DUR, d->duration_ms);
		set_time(s, S_FINISHED, tm);
		set_time(s, S_UPDATED, tm);
		run_status(run, "running");
		if (d->next_step != NULL)
			set_str(run, R_CUR, d->next_step);
		break;
	}
	case RS_EV_STEP_FAILED: {
		const rs_ev_step_failed *d = &ev->d.step_failed;

		if ((s = step_row(b, ev->run_id, d->step_id, d->attempt, 0)) == NULL)
			return RS_ENOMEM;
		set_str(s, S_STATUS, "failed");
		set_err(s, S_ERROR, &d->error);
		set_time(s, S_FINISHED, tm);
		set_time(s, S_UPDATED, tm);
		run_status(run, "running");
		break;
	}
	case RS_EV_STEP_RETRY_SCHEDULED:
		run_status(run, "waiting");
		break;
	case RS_EV_TOOL_REQUESTED: {
		const rs_ev_tool_requested *d = &ev->d.tool_requested;

		if ((t = tool_row(b, ev->run_id, d->call_id, 1)) == NULL)
			return RS_ENOMEM;
		t->is_new = 1;
		set_str(t, T_STEP, d->step_id);
		set_int(t, T_ATT, d->attempt);
		set_str(t, T_TOOL, d->tool);
		set_str(t, T_DEV, d->device);
		set_str(t, T_CAP, d->capability);
		set_str(t, T_STATUS, "requested");
		set_json(t, T_ARGS, d->args);
		set_time(t, T_REQ, tm);
		if (d->deadline > 0)
			set_time(t, T_DEADLINE, d->deadline);
		set_int(t, T_ATTEMPTS, 0);
		set_time(t, T_UPDATED, tm);
		run_status(run, "waiting");
		break;
	}
	case RS_EV_TOOL_DISPATCHED: {
		const rs_ev_tool_dispatched *d = &ev->d.tool_dispatched;

		if ((t = tool_row(b, ev->run_id, d->call_id, 0)) == NULL)
			return RS_ENOMEM;
		set_str(t, T_STATUS, "dispatched");
		set_str(t, T_DEV, d->device_id);
		set_str(t, T_ROUTER, d->router);
		set_time(t, T_DISP, tm);
		/* New rows hold the count, stage rows the increment (PU_ADD). */
		set_int(t, T_ATTEMPTS, (t->v[T_ATTEMPTS] ? strtoll(t->v[T_ATTEMPTS], NULL, 10) : 0) + 1);
		set_time(t, T_UPDATED, tm);
		run_status(run, "waiting");
		break;
	}
	case RS_EV_TOOL_COMPLETED: {
		const rs_ev_tool_completed *d = &ev->d.tool_completed;

		if ((t = tool_row(b, ev->run_id, d->call_id, 0)) == NULL)
			return RS_ENOMEM;
		set_str(t, T_STATUS, "completed");
		set_json(t, T_OUTPUT, d->output);
		if (d->device_id != NULL)
			set_str(t, T_DEV, d->device_id);
		set_time(t, T_FIN, tm);
		set_time(t, T_UPDATED, tm);
		run_status(run, "running");
		break;
	}
	case RS_EV_TOOL_FAILED: {
		const rs_ev_tool_failed *d = &ev->d.tool_failed;

		if ((t = tool_row(b, ev->run_id, d->call_id, 0)) == NULL)
			return RS_ENOMEM;
		set_str(t, T_STATUS, "failed");
		set_err(t, T_ERROR, &d->error);
		if (d->device_id != NULL)
			set_str(t, T_DEV, d->device_id);
		set_time(t, T_FIN, tm);
		set_time(t, T_UPDATED, tm);
		run_status(run, "running");
		break;
	}
	case RS_EV_TOOL_TIMED_OUT:
		if ((t = tool_row(b, ev->run_id, ev->d.tool_timed_out.call_id, 0)) == NULL)
			return RS_ENOMEM;
		set_str(t, T_STATUS, "timed_out");
		set_time(t, T_FIN, tm);
		set_time(t, T_UPDATED, tm);
		run_status(run, "running");
		break;
	case RS_EV_TIMER_SCHEDULED:
		if (purpose_waits(ev->d.timer_scheduled.purpose))
			run_status(run, "waiting");
		break;
	case RS_EV_TIMER_FIRED:
		if (purpose_waits(ev->d.timer_fired.purpose))
			run_status(run, "running");
		break;
	case RS_EV_SIGNAL_RECEIVED:
		run_status(run, "running");
		break;
	case RS_EV_RUN_CANCEL_REQUESTED:
		set_str(run, R_CANCEL, ev->d.run_cancel_requested.reason);
		break;
	case RS_EV_RUN_COMPLETED:
		run_status(run, "completed");
		set_json(run, R_OUTPUT, ev->d.run_completed.output);
		set_time(run, R_FINISHED, tm);
		return add_end(b, ev, "completed");
	case RS_EV_RUN_FAILED:
		run_status(run, "failed");
		set_err(run, R_ERROR, &ev->d.run_failed.error);
		set_time(run, R_FINISHED, tm);
		return add_end(b, ev, "failed");
	case RS_EV_RUN_CANCELLED:
		run_status(run, "cancelled");
		if (ev->d.run_cancelled.reason != NULL)
			set_str(run, R_CANCEL, ev->d.run_cancelled.reason);
		set_time(run, R_FINISHED, tm);
		return add_end(b, ev, "cancelled");
	case RS_EV_RUN_TIMED_OUT:
		run_status(run, "timed_out");
		if (ev->d.run_timed_out.timeout_s > 0)
			set_int(run, R_TIMEOUT, ev->d.run_timed_out.timeout_s);
		set_time(run, R_FINISHED, tm);
		return add_end(b, ev, "timed_out");
	default:
		/* A type newer than this build: only run_events and last_seq. */
		break;
	}
	return RS_OK;
}

/* The run_events row: envelope from the decoded event, data as sent. o is
 * the parsed CloudEvent for types this build does not know, else NULL. */
static rs_status
add_event_row(batch *b, const rs_proj_msg *m, const rs_event *ev, json_t *o)
{
	const char *type, *source, *raw = NULL;
	char *data = NULL, seq[24], sseq[24], tbuf[40], id[96];
	size_t rawn = 0;

	if (o != NULL) {
		type = json_string_value(json_object_get(o, "type"));
		source = json_string_value(json_object_get(o, "source"));
		if (type == NULL || source == NULL)
			return RS_EINVAL;
		if (strncmp(type, "runstream.", 10) == 0)
			type += 10;
	} else {
		type = rs_event_type_name(ev->type);
		source = ev->source;
	}
	if (o == NULL && !raw_member(m->data, (size_t)m->len, "data", &raw, &rawn))
		raw = NULL;
	if (raw == NULL) {
		json_t *own = o ? NULL : json_loadb(m->data, (size_t)m->len, 0, NULL);

		data = json_dumps(json_object_get(o ? o : own, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(own);
		if (data == NULL)
			return RS_ENOMEM;
		raw = data;
		rawn = strlen(data);
	}
	snprintf(seq, sizeof(seq), "%" PRIu64, ev->runseq);
	snprintf(sseq, sizeof(sseq), "%" PRIu64, m->seq);
	rs_time_rfc3339(ev->time_ms, tbuf, sizeof(tbuf));
	rs_event_id(ev->run_id, ev->runseq, id, sizeof(id));
	sb_field(&b->events, ev->run_id, 1);
	sb_field(&b->events, seq, 0);
	sb_field(&b->events, type, 0);
	sb_field(&b->events, tbuf, 0);
	sb_field_n(&b->events, raw, rawn, 0);
	sb_field(&b->events, id, 0);
	sb_field(&b->events, ev->tenant, 0);
	sb_field(&b->events, source, 0);
	sb_field(&b->events, ev->traceparent[0] ? ev->traceparent : NULL, 0);
	sb_field(&b->events, sseq, 0);
	sb_put(&b->events, "\n", 1);
	free(data);
	return b->events.oom ? RS_ENOMEM : RS_OK;
}

static rs_status
copy_in(PGconn *c, const char *sql, const sbuf *data)
{
	PGresult *r = PQexec(c, sql);
	rs_status st = RS_OK;

	if (PQresultStatus(r) != PGRES_COPY_IN) {
		st = pg_fail(c, r, sql);
		PQclear(r);
		return st;
	}
	PQclear(r);
	if (PQputCopyData(c, data->p, (int)data->len) != 1 || PQputCopyEnd(c, NULL) != 1)
		return pg_fail(c, NULL, "copy data");
	while ((r = PQgetResult(c)) != NULL) {
		if (st == RS_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
			st = pg_fail(c, r, sql);
		PQclear(r);
	}
	return st;
}

/* Start a COPY and queue all its data without waiting for the server
 * (non-blocking connection): the caller folds the batch while Postgres
 * ingests run_events, calling copy_pump() now and then, then copy_finish().
 * No foreign key ties run_events to runs (0003), so it may go first. */
static rs_status
copy_start_async(PGconn *c, const char *sql, const sbuf *data)
{
	PGresult *r = PQexec(c, sql);
	rs_status st;

	if (PQresultStatus(r) != PGRES_COPY_IN) {
		st = pg_fail(c, r, sql);
		PQclear(r);
		return st;
	}
	PQclear(r);
	if (PQsetnonblocking(c, 1) != 0 || PQputCopyData(c, data->p, (int)data->len) != 1 ||
	    PQputCopyEnd(c, NULL) != 1) {
		st = pg_fail(c, NULL, "copy data");
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
static void
copy_pump(PGconn *c)
{
	if (PQisnonblocking(c))
		PQflush(c);
}

/* Send the rest (waiting), back to blocking mode, read the COPY's result. */
static rs_status
copy_finish(PGconn *c, const char *what)
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
		st = pg_fail(c, NULL, "copy data");
	while ((r = PQgetResult(c)) != NULL) {
		if (st == RS_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
			st = pg_fail(c, r, what);
		PQclear(r);
	}
	return st;
}

/* COPY the new rows into the table and the changed ones into its stage,
 * then UPDATE the table from the stage. */
static rs_status
flush_table(PGconn *c, ptable *t)
{
	sbuf ins = { 0 }, upd = { 0 }, sql = { 0 };
	size_t nins = 0, nupd = 0;
	rs_status st = RS_OK;
	char head[160];

	for (size_t i = 0; i < t->n; i++) {
		sbuf *o = t->rows[i].is_new ? &ins : &upd;

		*(t->rows[i].is_new ? &nins : &nupd) += 1;
		for (int k = 0; k < t->ncols; k++)
			sb_field(o, t->rows[i].v[k], k == 0);
		sb_put(o, "\n", 1);
	}
	if (ins.oom || upd.oom) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	if (nins > 0) {
		sb_put(&sql, "COPY ", 5);
		sb_put(&sql, t->table, strlen(t->table));
		sb_put(&sql, " (", 2);
		for (int k = 0; k < t->ncols; k++) {
			if (k > 0)
				sb_put(&sql, ",", 1);
			sb_put(&sql, t->cols[k].name, strlen(t->cols[k].name));
		}
		sb_put(&sql, ") FROM STDIN", 12);
		if (sql.oom) {
			st = RS_ENOMEM;
			goto cleanup;
		}
		if ((st = copy_in(c, sql.p, &ins)) != RS_OK)
			goto cleanup;
	}
	if (nupd == 0)
		goto cleanup;
	snprintf(head, sizeof(head), "COPY %s FROM STDIN", t->stage);
	if ((st = copy_in(c, head, &upd)) != RS_OK)
		goto cleanup;
	sql.len = 0;
	snprintf(head, sizeof(head), "UPDATE %s t SET ", t->table);
	sb_put(&sql, head, strlen(head));
	for (int k = t->nkeys, first = 1; k < t->ncols; k++) {
		const char *n = t->cols[k].name;
		char frag[256];

		switch (t->cols[k].upd) {
		case PU_KEEP:
			snprintf(frag, sizeof(frag), "%s = COALESCE(s.%s, t.%s)", n, n, n);
			break;
		case PU_ADD:
			snprintf(frag, sizeof(frag), "%s = t.%s + COALESCE(s.%s, 0)", n, n, n);
			break;
		case PU_STATUS:
			snprintf(frag, sizeof(frag), "%s = CASE WHEN t.%s IN ('completed', 'failed', "
			         "'cancelled', 'timed_out') THEN t.%s ELSE COALESCE(s.%s, t.%s) END",
			         n, n, n, n, n);
			break;
		default:
			continue;
		}
		if (!first)
			sb_put(&sql, ", ", 2);
		first = 0;
		sb_put(&sql, frag, strlen(frag));
	}
	snprintf(head, sizeof(head), " FROM %s s WHERE ", t->stage);
	sb_put(&sql, head, strlen(head));
	for (int k = 0; k < t->nkeys; k++) {
		char frag[96];

		snprintf(frag, sizeof(frag), "%st.%s = s.%s", k ? " AND " : "", t->cols[k].name,
		         t->cols[k].name);
		sb_put(&sql, frag, strlen(frag));
	}
	/* ON COMMIT DELETE ROWS empties the stage at commit; a rebuild's swap
	 * applies several batches in one transaction, so empty it now. */
	snprintf(head, sizeof(head), "; TRUNCATE %s", t->stage);
	sb_put(&sql, head, strlen(head));
	if (sql.oom) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	st = exec_ok(c, PQexec(c, sql.p), t->table);
cleanup:
	free(ins.p);
	free(upd.p);
	free(sql.p);
	return st;
}

/* Attempts and tool calls still open when their run ended. */
static rs_status
sweep_ends(batch *b)
{
	sbuf ids = { 0 }, sts = { 0 }, tms = { 0 };
	const char *p[3];
	rs_status st;

	if (b->nends == 0)
		return RS_OK;
	for (size_t i = 0; i < b->nends; i++) {
		char tbuf[48];

		sb_put(&ids, i ? "," : "{", 1);
		sb_put(&ids, b->ends[i].run_id, strlen(b->ends[i].run_id));
		sb_put(&sts, i ? "," : "{", 1);
		sb_put(&sts, b->ends[i].status, strlen(b->ends[i].status));
		rs_time_rfc3339(b->ends[i].ms, tbuf, sizeof(tbuf));
		sb_put(&tms, i ? "," : "{", 1);
		sb_put(&tms, tbuf, strlen(tbuf));
	}
	sb_put(&ids, "}", 1);
	sb_put(&sts, "}", 1);
	sb_put(&tms, "}", 1);
	if (ids.oom || sts.oom || tms.oom) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	p[0] = ids.p;
	p[1] = sts.p;
	p[2] = tms.p;
	st = exec_ok(b->c, PQexecParams(b->c,
	    "UPDATE steps s SET status = CASE WHEN e.st = 'timed_out' THEN 'timed_out' "
	    "ELSE 'cancelled' END, finished_at = e.ft, updated_at = e.ft "
	    "FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS e(run_id, st, ft) "
	    "WHERE s.run_id = e.run_id AND s.status = 'running'",
	    3, NULL, p, NULL, NULL, 0), "close steps");
	if (st != RS_OK)
		goto cleanup;
	st = exec_ok(b->c, PQexecParams(b->c,
	    "UPDATE tool_calls c SET status = CASE WHEN e.st = 'timed_out' THEN 'timed_out' "
	    "ELSE 'cancelled' END, finished_at = e.ft, updated_at = e.ft "
	    "FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS e(run_id, st, ft) "
	    "WHERE c.run_id = e.run_id AND c.status IN ('requested', 'dispatched')",
	    3, NULL, p, NULL, NULL, 0), "close tool calls");
cleanup:
	free(ids.p);
	free(sts.p);
	free(tms.p);
	return st;
}

static runinfo *
info_of(batch *b, const char *run_id)
{
	int k = ptab_get(&b->info_idx, run_id);

	return k < 0 ? NULL : &b->info[k];
}

/* Decide whether ev applies (runseq rules); if so add its run_events row
 * and set *ok (the fold comes later, in stream order). */
static rs_status
apply_one(batch *b, const rs_proj_msg *m, rs_event *ev, json_t *o, int *ok)
{
	runinfo *ri = info_of(b, ev->run_id);
	char want[160];
	rs_status st;

	rs_event_subject(ev->tenant, ev->run_id, want, sizeof(want));
	if (strcmp(want, m->subject) != 0)
		return rs_proj_add_dead(b->res, m, "subject %s does not match the event (%s)",
		                        m->subject, want);
	if (ri->exists && strcmp(ri->tenant, ev->tenant) != 0)
		return rs_proj_add_dead(b->res, m, "tenant %s differs from the run's %s",
		                        ev->tenant, ri->tenant);
	if (ev->runseq <= ri->last)
		return rs_proj_add_dead(b->res, m, "duplicate runseq %" PRIu64
		                        " (run applied up to %" PRIu64 ")", ev->runseq, ri->last);
	if (ev->runseq != ri->last + 1)
		return rs_proj_add_dead(b->res, m, "runseq gap: expected %" PRIu64 ", got %" PRIu64,
		                        ri->last + 1, ev->runseq);
	if ((ev->runseq == 1) != (ev->type == RS_EV_RUN_CREATED))
		return rs_proj_add_dead(b->res, m, "runseq 1 must be run.created (got %s at %" PRIu64 ")",
		                        ev->type == RS_EV__COUNT ? "an unknown type" :
		                        rs_event_type_name(ev->type), ev->runseq);
	if ((st = add_event_row(b, m, ev, o)) != RS_OK)
		return st == RS_EINVAL ? rs_proj_add_dead(b->res, m, "envelope unreadable") : st;
	*ok = 1;
	if (ev->type == RS_EV_RUN_CREATED) {
		snprintf(ri->tenant, sizeof(ri->tenant), "%s", ev->tenant);
		ri->exists = 1;
	}
	ri->last = ev->runseq;
	b->res->applied++;
	if (ev->time_ms > b->res->last_event_ms)
		b->res->last_event_ms = ev->time_ms;
	return RS_OK;
}

/* Write the folded batch (run_events went first, see copy_start_async).
 * Parents before children (foreign keys): runs, then steps, tool_calls. */
static rs_status
write_batch(batch *b)
{
	PGconn *c = b->c;
	rs_status st;

	if ((st = flush_table(c, &b->runs)) != RS_OK)
		return st;
	if ((st = flush_table(c, &b->steps)) != RS_OK)
		return st;
	if ((st = flush_table(c, &b->tools)) != RS_OK)
		return st;
	if ((st = sweep_ends(b)) != RS_OK)
		return st;
	return rs_proj_store_dead(c, "projector.runs", b->res);
}

/* A decoded batch (rs_proj_runs_decode): no Postgres needed, so the
 * consumer decodes batch N+1 on its fetch thread while batch N is in
 * Postgres. Read-only once built: a retried transaction applies it again. */
struct rs_proj_runs_dec {
	const rs_proj_msg *msgs;
	size_t n;
	rs_event *evs;
	rs_status *dst;
	json_t **objs;     /* parsed CloudEvent of types this build does not know */
	char **bad;        /* decoder message of malformed events */
};

void
rs_proj_runs_dec_free(rs_proj_runs_dec *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; d->evs != NULL && i < d->n; i++) {
		if (d->dst[i] == RS_OK)
			rs_event_free(&d->evs[i]);
		json_decref(d->objs[i]);
		free(d->bad[i]);
	}
	free(d->evs);
	free(d->dst);
	free(d->objs);
	free(d->bad);
	free(d);
}

rs_status
rs_proj_runs_decode(const rs_proj_msg *msgs, size_t n, rs_proj_runs_dec **out)
{
	rs_proj_runs_dec *d = calloc(1, sizeof(*d));
	char err[256];

	*out = NULL;
	if (d == NULL)
		return RS_ENOMEM;
	d->msgs = msgs;
	d->n = n;
	d->evs = calloc(n ? n : 1, sizeof(*d->evs));
	d->dst = calloc(n ? n : 1, sizeof(*d->dst));
	d->objs = calloc(n ? n : 1, sizeof(*d->objs));
	d->bad = calloc(n ? n : 1, sizeof(*d->bad));
	if (d->evs == NULL || d->dst == NULL || d->objs == NULL || d->bad == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		d->dst[i] = rs_event_decode_fast(msgs[i].data, (size_t)msgs[i].len, &d->evs[i], err,
		                                 sizeof(err));
		if (d->dst[i] != RS_OK && d->dst[i] != RS_ENOTFOUND) {
			if ((d->bad[i] = strdup(err)) == NULL)
				goto oom;
			continue;
		}
		/* Types this build does not know: the parsed object gives their
		 * type string and data. */
		if (d->dst[i] == RS_ENOTFOUND &&
		    (d->objs[i] = json_loadb(msgs[i].data, (size_t)msgs[i].len, 0, NULL)) == NULL)
			goto oom;
	}
	*out = d;
	return RS_OK;
oom:
	rs_proj_runs_dec_free(d);
	return RS_ENOMEM;
}

rs_status
rs_proj_runs_apply_dec(PGconn *c, const rs_proj_runs_dec *d, size_t from, size_t to,
                       rs_proj_result *res)
{
	static const char events_sql[] = "COPY run_events (run_id, seq, type, time, data, "
	                                 "event_id, tenant, source, traceparent, stream_seq) "
	                                 "FROM STDIN";
	batch b;
	const rs_proj_msg *msgs = d->msgs;
	int *ok = NULL, copying = 0;
	rs_status st = RS_OK;

	memset(&b, 0, sizeof(b));
	b.c = c;
	b.res = res;
	b.runs = (ptable){ "runs", "rs_stage_runs", runs_cols, R__N, 1, NULL, 0, 0, { 0 } };
	b.steps = (ptable){ "steps", "rs_stage_steps", steps_cols, S__N, 3, NULL, 0, 0, { 0 } };
	b.tools = (ptable){ "tool_calls", "rs_stage_tool_calls", tools_cols, T__N, 1, NULL, 0, 0, { 0 } };
	batch_oom = 0;
	if (to > d->n)
		to = d->n;
	if (from >= to)
		return RS_OK;
	b.info = calloc(to - from, sizeof(*b.info));
	ok = calloc(to - from, sizeof(*ok));
	if (b.info == NULL || ok == NULL) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	/* Pass 1: dead-letter what cannot be read, collect the runs. */
	for (size_t i = from; i < to; i++) {
		if (d->dst[i] != RS_OK && d->dst[i] != RS_ENOTFOUND) {
			if ((st = rs_proj_add_dead(res, &msgs[i], "malformed event: %s", d->bad[i])) != RS_OK)
				goto cleanup;
			continue;
		}
		if (info_of(&b, d->evs[i].run_id) == NULL) {
			runinfo *ri = &b.info[b.ninfo];

			snprintf(ri->run_id, sizeof(ri->run_id), "%s", d->evs[i].run_id);
			if (ptab_put(&b.info_idx, ri->run_id, (int)b.ninfo) != 0) {
				st = RS_ENOMEM;
				goto cleanup;
			}
			b.ninfo++;
		}
	}
	if (b.ninfo > 0 && (st = load_runs(&b)) != RS_OK)
		goto cleanup;
	/* Pass 2: in stream order, which events apply (runseq rules). */
	for (size_t i = from; i < to; i++) {
		if (d->dst[i] != RS_OK && d->dst[i] != RS_ENOTFOUND)
			continue;
		if ((st = apply_one(&b, &msgs[i], &d->evs[i], d->objs[i], &ok[i - from])) != RS_OK)
			goto cleanup;
	}
	/* run_events goes to Postgres while the applied events are folded. */
	if (b.events.len > 0) {
		if ((st = copy_start_async(c, events_sql, &b.events)) != RS_OK)
			goto cleanup;
		copying = 1;
	}
	/* Pass 3: fold the applied events into row images, in stream order. */
	for (size_t i = from; i < to && st == RS_OK; i++) {
		if (!ok[i - from])
			continue;
		if ((st = fold(&b, &d->evs[i])) == RS_OK && batch_oom)
			st = RS_ENOMEM;
		if (copying && (i & 255) == 0)
			copy_pump(c);
	}
	if (copying) {
		rs_status cst = copy_finish(c, events_sql);

		copying = 0;
		if (st == RS_OK)
			st = cst;
	}
	if (st != RS_OK)
		goto cleanup;
	st = write_batch(&b);
cleanup:
	if (copying)
		copy_finish(c, events_sql);
	free(ok);
	tbl_free(&b.runs);
	tbl_free(&b.steps);
	tbl_free(&b.tools);
	free(b.info);
	ptab_free(&b.info_idx);
	free(b.events.p);
	free(b.ends);
	return st;
}

rs_status
rs_proj_runs_apply(PGconn *c, const rs_proj_msg *msgs, size_t n, rs_proj_result *res)
{
	rs_proj_runs_dec *d = NULL;
	rs_status st;

	if (n == 0)
		return RS_OK;
	if ((st = rs_proj_runs_decode(msgs, n, &d)) != RS_OK)
		return st;
	st = rs_proj_runs_apply_dec(c, d, 0, n, res);
	rs_proj_runs_dec_free(d);
	return st;
}
