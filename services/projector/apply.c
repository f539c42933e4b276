/*
 * apply.c - a batch of RUNS messages -> rows of runs, run_events, steps and
 * tool_calls, inside the caller's transaction (see projector.h): the
 * batch. The meaning of events is not here: each run's events fold into
 * its view (common/rs_view.c, the one fold the API and runctl share),
 * fold.c turns the views into row images and pgcopy.c writes them; dead
 * letters are dead.c's.
 *
 * How a batch folds per run: the batch reads back the stored state of the
 * runs it touches (tenant, status, last_seq: one query, the same that
 * checks runseq) and resumes each run's view from it (rs_view_resume); a
 * run created in the batch starts a fresh view. Attempts and calls begun
 * in earlier batches appear as stubs carrying only what this batch wrote,
 * merged into the stored rows by pgcopy.c's UPDATE (fold.c explains the
 * merge). Rows of steps and calls are never read back.
 *
 * Exactly-once per run rests on runseq: an event is applied only if its
 * runseq is last_seq + 1. runseq <= last_seq is a duplicate and
 * > last_seq + 1 a gap; both are dead-lettered and skipped, so the rows
 * always equal a prefix of the run's log (docs/projector.md).
 */
#include "fold.h"
#include "pgcopy.h"
#include "projector.h"
#include "rs_event.h"
#include "rs_event_fast.h"
#include "rs_map.h"
#include "rs_id.h"
#include "rs_log.h"
#include "rs_time.h"
#include "rs_view.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* ---- run id -> index into the batch's runs (common/rs_map; the map
 * keeps index + 1, so that "absent" is NULL) ---- */

static int
idx_get(const rs_map *m, const char *k)
{
	void *v = rs_map_get(m, k);

	return v == NULL ? -1 : (int)((intptr_t)v - 1);
}

static int
idx_put(rs_map *m, const char *k, int v)
{
	return rs_map_put(m, k, (void *)(intptr_t)(v + 1)) == RS_OK ? 0 : -1;
}

/* ---- the batch ---- */

typedef struct {
	char run_id[40];
	char tenant[72];
	char status[16];   /* stored status (DB) */
	uint64_t last;     /* runseq applied so far (DB, then this batch) */
	int exists;        /* a row exists in the DB or was created by the batch */
	rs_view view;      /* the run's fold over this batch (resumed if it existed) */
} runinfo;

typedef struct {
	PGconn *c;
	rs_proj_result *res;
	runinfo *info;
	size_t ninfo;
	rs_map info_idx;           /* run_id -> index into info (not owned) */
	rs_proj_buf events;   /* COPY text of new run_events rows */
	rs_proj_rows rows;
} batch;

/* Load tenant, status and last_seq of the batch's runs that exist in the DB. */
static rs_status
load_runs(batch *b)
{
	rs_proj_buf arr = { 0 };
	PGresult *r;
	const char *p[1];
	rs_status st = RS_OK;

	rs_proj_buf_put(&arr, "{", 1);
	for (size_t i = 0; i < b->ninfo; i++) {
		if (i > 0)
			rs_proj_buf_put(&arr, ",", 1);
		rs_proj_buf_put(&arr, b->info[i].run_id, strlen(b->info[i].run_id));
	}
	rs_proj_buf_put(&arr, "}", 1);
	if (arr.oom)
		return RS_ENOMEM;
	p[0] = arr.p;
	r = PQexecParams(b->c, "SELECT run_id::text, tenant, last_seq, status FROM runs "
	                       "WHERE run_id = ANY($1::uuid[])", 1, NULL, p, NULL, NULL, 0);
	free(arr.p);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		st = rs_proj_pg_fail(b->c, r, "load runs");
		PQclear(r);
		return st;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int k = idx_get(&b->info_idx, PQgetvalue(r, i, 0));

		if (k < 0)
			continue;
		snprintf(b->info[k].tenant, sizeof(b->info[k].tenant), "%s", PQgetvalue(r, i, 1));
		b->info[k].last = strtoull(PQgetvalue(r, i, 2), NULL, 10);
		snprintf(b->info[k].status, sizeof(b->info[k].status), "%s", PQgetvalue(r, i, 3));
		b->info[k].exists = 1;
	}
	PQclear(r);
	return st;
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
	if (o == NULL && !rs_event_raw_member(m->data, (size_t)m->len, "data", &raw, &rawn))
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
	rs_proj_buf_field(&b->events, ev->run_id, 1);
	rs_proj_buf_field(&b->events, seq, 0);
	rs_proj_buf_field(&b->events, type, 0);
	rs_proj_buf_field(&b->events, tbuf, 0);
	rs_proj_buf_field_n(&b->events, raw, rawn, 0);
	rs_proj_buf_field(&b->events, id, 0);
	rs_proj_buf_field(&b->events, ev->tenant, 0);
	rs_proj_buf_field(&b->events, source, 0);
	rs_proj_buf_field(&b->events, ev->traceparent[0] ? ev->traceparent : NULL, 0);
	rs_proj_buf_field(&b->events, sseq, 0);
	rs_proj_buf_put(&b->events, "\n", 1);
	free(data);
	return b->events.oom ? RS_ENOMEM : RS_OK;
}

/* Attempts and tool calls stored still open when their run ended (those
 * of this batch were closed by the fold): runs whose view ended here. */
static rs_status
sweep_ends(batch *b)
{
	rs_proj_buf ids = { 0 }, sts = { 0 }, tms = { 0 };
	const char *p[3];
	size_t n = 0;
	rs_status st;

	for (size_t i = 0; i < b->ninfo; i++) {
		const rs_view *v = &b->info[i].view;
		char tbuf[48];

		if (!v->resumed || !rs_view_terminal(v) || !(v->set & RS_VIEW_SET_FINISHED))
			continue;
		rs_proj_buf_put(&ids, n ? "," : "{", 1);
		rs_proj_buf_put(&ids, v->run_id, strlen(v->run_id));
		rs_proj_buf_put(&sts, n ? "," : "{", 1);
		rs_proj_buf_put(&sts, v->status, strlen(v->status));
		rs_time_rfc3339(v->finished_ms, tbuf, sizeof(tbuf));
		rs_proj_buf_put(&tms, n ? "," : "{", 1);
		rs_proj_buf_put(&tms, tbuf, strlen(tbuf));
		n++;
	}
	if (n == 0)
		return RS_OK;
	rs_proj_buf_put(&ids, "}", 1);
	rs_proj_buf_put(&sts, "}", 1);
	rs_proj_buf_put(&tms, "}", 1);
	if (ids.oom || sts.oom || tms.oom) {
		st = RS_ENOMEM;
		goto cleanup;
	}
	p[0] = ids.p;
	p[1] = sts.p;
	p[2] = tms.p;
	st = rs_proj_exec_ok(b->c, PQexecParams(b->c,
	    "UPDATE steps s SET status = CASE WHEN e.st = 'timed_out' THEN 'timed_out' "
	    "ELSE 'cancelled' END, finished_at = e.ft, updated_at = e.ft "
	    "FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS e(run_id, st, ft) "
	    "WHERE s.run_id = e.run_id AND s.status = 'running'",
	    3, NULL, p, NULL, NULL, 0), "close steps");
	if (st != RS_OK)
		goto cleanup;
	st = rs_proj_exec_ok(b->c, PQexecParams(b->c,
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
	int k = idx_get(&b->info_idx, run_id);

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

/* Write the folded batch (run_events went first, see rs_proj_copy_start).
 * Parents before children (foreign keys): runs, then steps, tool_calls. */
static rs_status
write_batch(batch *b)
{
	PGconn *c = b->c;
	rs_status st;

	if ((st = rs_proj_table_write(c, &b->rows.runs)) != RS_OK)
		return st;
	if ((st = rs_proj_table_write(c, &b->rows.steps)) != RS_OK)
		return st;
	if ((st = rs_proj_table_write(c, &b->rows.tools)) != RS_OK)
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

int64_t
rs_proj_runs_dec_runseq(const rs_proj_runs_dec *d, size_t i)
{
	if (i >= d->n)
		return -1;
	if (d->dst[i] == RS_OK)
		return (int64_t)d->evs[i].runseq;
	if (d->dst[i] == RS_ENOTFOUND && d->objs[i] != NULL &&
	    json_is_integer(json_object_get(d->objs[i], "runseq")))
		return (int64_t)json_integer_value(json_object_get(d->objs[i], "runseq"));
	return -1;
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
	rs_proj_rows_init(&b.rows);
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
			rs_view_init(&ri->view);
			/* Every row of the batch is written: no caps (the batch
			 * bounds the events, RS_PROJECTOR_BATCH). */
			ri->view.unbounded = 1;
			if (idx_put(&b.info_idx, ri->run_id, (int)b.ninfo) != 0) {
				st = RS_ENOMEM;
				goto cleanup;
			}
			b.ninfo++;
		}
	}
	if (b.ninfo > 0 && (st = load_runs(&b)) != RS_OK)
		goto cleanup;
	/* A stored run's fold resumes from its stored state. */
	for (size_t i = 0; i < b.ninfo; i++)
		if (b.info[i].exists)
			rs_view_resume(&b.info[i].view, b.info[i].run_id, b.info[i].tenant,
			               b.info[i].last, b.info[i].status);
	/* Pass 2: in stream order, which events apply (runseq rules). */
	for (size_t i = from; i < to; i++) {
		if (d->dst[i] != RS_OK && d->dst[i] != RS_ENOTFOUND)
			continue;
		if ((st = apply_one(&b, &msgs[i], &d->evs[i], d->objs[i], &ok[i - from])) != RS_OK)
			goto cleanup;
	}
	/* run_events goes to Postgres while the applied events are folded. */
	if (b.events.len > 0) {
		if ((st = rs_proj_copy_start(c, events_sql, &b.events)) != RS_OK)
			goto cleanup;
		copying = 1;
	}
	/* Pass 3: fold the applied events into their runs' views, in stream
	 * order. apply_one let through exactly what rs_view_apply accepts. */
	for (size_t i = from; i < to && st == RS_OK; i++) {
		if (!ok[i - from])
			continue;
		if (rs_view_apply(&info_of(&b, d->evs[i].run_id)->view, &d->evs[i]) != RS_OK) {
			rs_warn("projector: run %s: runseq %" PRIu64 " does not fold", d->evs[i].run_id,
			        d->evs[i].runseq);
			st = RS_EIO;
		}
		if (copying && (i & 255) == 0)
			rs_proj_copy_pump(c);
	}
	for (size_t i = 0; i < b.ninfo && st == RS_OK; i++)
		rs_proj_fold_rows(&b.rows, &b.info[i].view);
	if (copying) {
		rs_status cst = rs_proj_copy_finish(c, events_sql);

		copying = 0;
		if (st == RS_OK)
			st = cst;
	}
	if (st != RS_OK)
		goto cleanup;
	st = write_batch(&b);
cleanup:
	if (copying)
		rs_proj_copy_finish(c, events_sql);
	free(ok);
	rs_proj_rows_free(&b.rows);
	for (size_t i = 0; i < b.ninfo; i++)
		rs_view_free(&b.info[i].view);
	free(b.info);
	rs_map_free(&b.info_idx);
	free(b.events.p);
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
