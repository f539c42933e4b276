/*
 * fork.c - POST /v1/runs/{id}/fork and POST /v1/runs/{id}/retry.
 *
 * A fork is a new run (new run id, the source's agent at today's or the
 * given version, the source's input unless one is given) whose run.start
 * carries forked_from, from_seq and the reuse list: the recorded outputs
 * of the source's effect steps within its first from_seq events
 * (common/rs_fork.h says what is reused and when reuse stops). A retry is
 * a fork from just before the step that failed (rs_fork_retry_seq).
 *
 * The source is read from its literal subject runs.<tenant>.<run_id>, so
 * a run of another tenant is simply not there: 404, like an unknown one.
 * The reuse list travels in the command and then in run.created, so it
 * is bounded to RS_RUN_MAX_VALUE_BYTES (an event must fit a NATS message).
 * Past that the fork is refused (422) rather than silently reusing less.
 *
 * Runs on a worker thread (NATS direct gets); publishing goes through
 * rs_api_runs_start, the same path as POST /v1/runs.
 */
#include "api.h"
#include "rs_mem.h"
#include "request.h"
#include "rs_event.h"
#include "rs_fork.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most source events a fork reads (a run of max_steps 10,000 with a tool
 * call per step has about 60,000). */
#define FORK_MAX_EVENTS 100000

typedef struct {
	rs_event *ev;
	size_t n;
} history;

static void
history_free(history *h)
{
	for (size_t i = 0; i < h->n; i++)
		rs_event_free(&h->ev[i]);
	free(h->ev);
	h->ev = NULL;
	h->n = 0;
}

/* read_history's reader state. */
typedef struct {
	history *h;
	size_t cap;         /* of h->ev */
	char *err;
	size_t errcap;
	rs_status st;
} fork_read;

static int
fork_each(void *arg, natsMsg *m, uint64_t sseq)
{
	fork_read *r = arg;
	history *h = r->h;
	rs_event ev;
	char why[256];

	if (h->n >= FORK_MAX_EVENTS) {
		snprintf(r->err, r->errcap, "the source run has more than %d events", FORK_MAX_EVENTS);
		r->st = RS_EINVAL;
		return -1;
	}
	if (rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, why,
	                    sizeof(why)) != RS_OK) {
		snprintf(r->err, r->errcap, "event %zu of the source does not decode: %s", h->n + 1,
		         why);
		r->st = RS_EIO;
		return -1;
	}
	if (h->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		h->ev = realloc(h->ev, r->cap * sizeof(*h->ev));
		if (h->ev == NULL)
			rs_oom(0);
	}
	h->ev[h->n++] = ev;
	return 0;
}

/* Every event of the run, in order, by direct gets on its literal
 * subject. RS_ENOTFOUND: no events (unknown here, or not started yet);
 * RS_ETOOBIG-like refusal is reported as RS_EINVAL with err set. */
static rs_status
read_history(rs_api *app, const char *tenant, const char *run_id, history *h, char *err,
             size_t cap)
{
	fork_read r = { h, 0, err, cap, RS_OK };
	rs_status st;

	memset(h, 0, sizeof(*h));
	st = rs_api_log_history(app, tenant, run_id, 0, 0, fork_each, &r);
	if (st == RS_ERR)
		return r.st;
	if (st != RS_OK)
		return st;
	return h->n > 0 ? RS_OK : RS_ENOTFOUND;
}

int
rs_api_runs_fork(rs_api *app, rs_api_job *job, int retry)
{
	json_t *body = NULL, *input = NULL, *reuse = NULL;
	const char *version = NULL;
	const rs_ev_run_created *src;
	char err[512] = "", ver[17], srcid[40];
	int64_t from_seq = 0;
	history h = { 0 };
	rs_status st;
	rs_cmd cmd;
	char *dumped = NULL;
	int bad, handed = 0;

	memset(&cmd, 0, sizeof(cmd));
	if ((bad = rs_api_fork_body(job->body, job->body_len, retry, &body, &from_seq, &version,
	                            &input, err, sizeof(err))) != 0) {
		rs_api_problem(job, bad, "%s", err);
		goto cleanup;
	}
	snprintf(srcid, sizeof(srcid), "%s", job->run_id);
	st = read_history(app, job->tenant, srcid, &h, err, sizeof(err));
	if (st == RS_ENOTFOUND) {
		rs_api_problem(job, 404, "no run %s with events to fork", srcid);
		goto cleanup;
	}
	if (st == RS_EINVAL) {
		rs_api_problem(job, 422, "%s", err);
		goto cleanup;
	}
	if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot read run %s from JetStream: %s", srcid,
		               err[0] ? err : rs_status_str(st));
		goto cleanup;
	}
	if (h.ev[0].type != RS_EV_RUN_CREATED) {
		rs_api_problem(job, 409, "run %s does not begin with run.created", srcid);
		goto cleanup;
	}
	src = &h.ev[0].d.run_created;
	if (retry && rs_fork_retry_seq(h.ev, h.n, &from_seq) != RS_OK) {
		rs_api_problem(job, 409, "run %s has no failed step to retry from", srcid);
		goto cleanup;
	}
	if (rs_fork_plan(h.ev, h.n, from_seq, &reuse, err, sizeof(err)) != RS_OK) {
		rs_api_problem(job, 422, "%s", err);
		goto cleanup;
	}
	dumped = rs_json_dump(reuse);
	if (dumped == NULL || strlen(dumped) > RS_RUN_MAX_VALUE_BYTES) {
		rs_api_problem(job, 422, "the outputs to reuse before from_seq %lld exceed %d bytes; "
		               "fork from an earlier event", (long long)from_seq,
		               RS_RUN_MAX_VALUE_BYTES);
		goto cleanup;
	}
	st = rs_api_agent_resolve(app, job->tenant, src->agent, version, ver);
	if (st == RS_ENOTFOUND) {
		if (version != NULL)
			rs_api_problem(job, 422, "version: agent %s has no version %s", src->agent,
			               version);
		else
			rs_api_problem(job, 422, "agent: no agent named %s any more", src->agent);
		goto cleanup;
	}
	if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot resolve agent %s: %s", src->agent,
		               rs_status_str(st));
		goto cleanup;
	}

	/* The new run: its own id (a fork is a new run every time it is
	 * asked for; the Idempotency-Key is not applied to forks). */
	rs_id_uuidv7(job->run_id);
	cmd.type = RS_CMD_RUN_START;
	snprintf(cmd.run_id, sizeof(cmd.run_id), "%s", job->run_id);
	snprintf(cmd.tenant, sizeof(cmd.tenant), "%s", job->tenant);
	if (rs_traceparent_valid(job->traceparent))
		snprintf(cmd.traceparent, sizeof(cmd.traceparent), "%s", job->traceparent);
	cmd.agent = src->agent;
	cmd.version = ver;
	cmd.input = input != NULL ? input : src->input;
	cmd.forked_from = srcid;
	cmd.from_seq = from_seq;
	cmd.reuse = reuse;
	{
		char full[256];
		if (rs_api_storage_full(app, full, sizeof(full))) {
			rs_api_problem_retry(job, 507, 30, "%s", full);
			snprintf(job->run_id, sizeof(job->run_id), "%s", srcid);
			goto cleanup;
		}
	}
	handed = rs_api_runs_start(app, job, &cmd,
	                           json_pack("{s:s, s:I, s:I}", "forked_from", srcid, "from_seq",
	                                     (json_int_t)from_seq, "reused_steps",
	                                     (json_int_t)json_array_size(reuse)));
	if (!handed)
		snprintf(job->run_id, sizeof(job->run_id), "%s", srcid);
cleanup:
	free(dumped);
	json_decref(reuse);
	json_decref(body);
	history_free(&h);
	return handed;
}
