/*
 * runs_write.c - POST /v1/runs, cancel, signals: everything that writes.
 *
 * Creation answers 202 only once two messages are durably in JetStream:
 * the registry entry $KV.runs.<tenant>.<run_id> (which lets SSE, cancel and
 * GET know the run exists before its first event, and scopes it to the
 * tenant without Postgres) and the run.start command on CMDS
 * (Nats-Msg-Id start-<run_id>). Both go out with js_PublishMsgAsync: the
 * worker does not wait for the acks, the ack handler (a NATS thread)
 * completes the request when the second ack arrives. So a worker is busy
 * for microseconds per creation, and many creations share the round trip
 * to the server (pipelining) - that is what makes 10k creations/s possible
 * where a synchronous publish per request tops out near 7k/s.
 *
 * Cancel and signals answer 202 once CMDS has the command; a copy of it
 * then goes to KV `runs` under <tenant>.<run_id>.cmd.<signal_id> (or
 * .cmd.cancel), which the orchestrator deletes once it has applied the
 * command. The copy is the second way for a command nats-server 2.9.10
 * lost after acknowledging it (docs/architecture.md "Streams"): the
 * orchestrator's sweep sends again a copy still there RS_ORCH_LATE_MS
 * later (services/orchestrator/reconcile.c); a signal is taken once per
 * signal_id, so a copy of one that was only late changes nothing. The copy
 * is written after the command, not before: a copy without its command
 * would be sent later for a request the client was told failed.
 *
 * Idempotency-Key: KV `idempotency` <tenant>.<sha256(key)> ->
 * {"run_id","body_sha256"} written with kvStore_Create before the start is
 * published. The same key with the same body (canonical JSON hash) gives
 * the same run_id, and re-publishes registry + start: both are
 * de-duplicated (msg id) or harmless, so a crash between "key recorded"
 * and "start published" heals on the client's retry.
 */
#include "api.h"
#include "request.h"
#include "rs_hash.h"
#include "rs_cmd.h"
#include "rs_event.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_map.h"
#include "rs_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* msg id -> job (not owned), for the ack handler; under one mutex (the
 * ack handler runs on a nats.c thread). */
struct rs_api_pending {
	pthread_mutex_t mu;
	rs_map by_msgid;
};

rs_status
rs_api_pending_init(rs_api *app)
{
	app->pending = calloc(1, sizeof(*app->pending));
	if (app->pending == NULL)
		return RS_ENOMEM;
	pthread_mutex_init(&app->pending->mu, NULL);
	return RS_OK;
}

void
rs_api_pending_free(rs_api *app)
{
	rs_api_pending *p = app->pending;

	if (p == NULL)
		return;
	rs_map_free(&p->by_msgid);
	pthread_mutex_destroy(&p->mu);
	free(p);
	app->pending = NULL;
}

/* -1 when out of memory, or when msgid already waits for its ack (ids are
 * per run, and run ids are new: another job's entry is never replaced). */
static int
pending_put(rs_api *app, const char *msgid, rs_api_job *job)
{
	int rc = -1;

	pthread_mutex_lock(&app->pending->mu);
	if (rs_map_get(&app->pending->by_msgid, msgid) == NULL &&
	    rs_map_put(&app->pending->by_msgid, msgid, job) == RS_OK)
		rc = 0;
	pthread_mutex_unlock(&app->pending->mu);
	return rc;
}

static rs_api_job *
pending_take(rs_api *app, const char *msgid)
{
	rs_api_job *job;

	pthread_mutex_lock(&app->pending->mu);
	job = rs_map_take(&app->pending->by_msgid, msgid);
	pthread_mutex_unlock(&app->pending->mu);
	return job;
}

/* One of the two acks of a creation is in (or failed). The last one hands
 * the job back to the service thread. */
#define ACK_FAILED 1
#define ACK_FULL 2      /* the stream refused it as full (storage.c) */

static void
ack_one(rs_api *app, rs_api_job *job, int failed)
{
	int f;

	if (failed)
		atomic_fetch_or(&job->ack_failed, failed);
	if (atomic_fetch_sub(&job->acks_left, 1) != 1)
		return;
	f = atomic_load(&job->ack_failed);
	if (f & ACK_FULL) {
		job->hdrs[0] = '\0';
		rs_api_problem_retry(job, 507, 30, "the run was not accepted: the event log is full "
		                     "(a stream refused it with \"maximum messages exceeded\"); archive "
		                     "and purge finished runs (runctl archive --purge) and retry with the "
		                     "same Idempotency-Key");
	} else if (f) {
		job->hdrs[0] = '\0';
		rs_api_problem_retry(job, 503, 1, "the run could not be stored durably in JetStream; "
		                     "retry (with the same Idempotency-Key to get the same run)");
	} else {
		rs_api_metric_created();
		if (job->wait_s > 0)
			job->action = RS_ACT_PARK;
	}
	rs_api_work_done(app, job);
}

void
rs_api_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	rs_api *app = closure;
	const char *id = NULL;
	rs_api_job *job;

	if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id != NULL &&
	    (job = pending_take(app, id)) != NULL) {
		if (pae != NULL)
			rs_warn("api: async publish of %s failed: %s (%d %s)", id,
			        natsStatus_GetText(pae->Err), (int)pae->ErrCode,
			        pae->ErrText != NULL ? pae->ErrText : "");
		ack_one(app, job, pae == NULL ? 0
		                  : rs_api_storage_refused(pae) ? ACK_FAILED | ACK_FULL : ACK_FAILED);
	}
	natsMsg_Destroy(msg);
}

/* Start both publishes; returns how many could not even be queued. */
static int
publish_async(rs_api *app, rs_api_job *job, natsMsg **msgs)
{
	jsPubOptions po;
	int failed = 0;

	jsPubOptions_Init(&po);
	po.MaxWait = app->pub_timeout_ms;
	for (int i = 0; i < 2; i++) {
		if (msgs[i] == NULL || pending_put(app, job->msgid[i], job) != 0) {
			failed++;
			continue;
		}
		if (js_PublishMsgAsync(app->nats.js, &msgs[i], &po) != NATS_OK) {
			/* Not queued: no ack will come for it. */
			if (pending_take(app, job->msgid[i]) != NULL)
				failed++;
		}
	}
	for (int i = 0; i < 2; i++) {
		natsMsg_Destroy(msgs[i]);   /* NULL when taken by the library */
		msgs[i] = NULL;
	}
	return failed;
}

/*
 * Publish the registry entry and cmd (a complete run.start: run_id,
 * tenant, agent, version, input...) and answer 202 with {run_id, status,
 * stream_url, agent, version} plus the members of extra (taken; may be
 * NULL) once both are durable. Returns 1 when the job was handed to the
 * ack handler (the caller must not touch it any more), 0 when a problem
 * was set on it. Shared by POST /v1/runs and fork/retry.
 */
int
rs_api_runs_start(rs_api *app, rs_api_job *job, const rs_cmd *cmd, json_t *extra)
{
	char subj[160];
	char *cmdbuf = NULL;
	size_t cmdlen = 0;
	natsMsg *msgs[2] = { NULL, NULL };
	rs_status st;
	int failed, handed = 0;

	st = rs_cmd_encode(cmd, &cmdbuf, &cmdlen);
	if (st != RS_OK) {
		rs_api_problem(job, 500, "cannot encode run.start: %s", rs_status_str(st));
		goto cleanup;
	}
	rs_cmd_msg_id(cmd, job->msgid[1], sizeof(job->msgid[1]));
	if (rs_api_registry_msg(&msgs[0], job->tenant, job->run_id, cmd->agent, cmd->version,
	                        cmdbuf, cmdlen, job->msgid[0]) != RS_OK)
		goto oom;
	rs_cmd_subject(job->tenant, job->run_id, subj, sizeof(subj));
	if (rs_nats_msg(&msgs[1], subj, cmdbuf, (int)cmdlen, "Nats-Msg-Id", job->msgid[1],
	                "Runstream-Type", "run.start", NULL) != RS_OK)
		goto oom;

	/* The answer is ready before the publishes: the ack handler only
	 * decides between it and a 503. */
	{
		char url[128];
		json_t *resp;
		snprintf(url, sizeof(url), "/v1/runs/%s/stream", job->run_id);
		resp = json_pack("{s:s, s:s, s:s, s:s, s:s}", "run_id", job->run_id,
		                 "status", "queued", "stream_url", url, "agent", cmd->agent,
		                 "version", cmd->version);
		if (extra != NULL)
			json_object_update(resp, extra);
		rs_api_json(job, 202, resp);
		snprintf(job->hdrs + strlen(job->hdrs), sizeof(job->hdrs) - strlen(job->hdrs),
		         "Location: /v1/runs/%s\n", job->run_id);
	}
	atomic_store(&job->acks_left, 3);  /* 2 acks + this function's own hold */
	atomic_store(&job->ack_failed, 0);
	failed = publish_async(app, job, msgs);
	handed = 1;
	for (int i = 0; i < failed; i++)
		ack_one(app, job, ACK_FAILED);
	/* Drop our own hold last: the job cannot complete under our feet. */
	ack_one(app, job, 0);
	goto cleanup;
oom:
	rs_api_problem(job, 500, "out of memory");
cleanup:
	json_decref(extra);
	for (int i = 0; i < 2; i++)
		natsMsg_Destroy(msgs[i]);   /* NULL once handed to publish_async */
	free(cmdbuf);
	return handed;
}

int
rs_api_runs_create(rs_api *app, rs_api_job *job)
{
	json_t *body = NULL, *input, *idrec = NULL;
	const char *agent, *version = NULL;
	char err[512], ver[17], body_sha[65], key[160];
	char *canon = NULL;
	kvEntry *e = NULL;
	rs_cmd cmd;
	rs_status st;
	int handed = 0, bad;

	memset(&cmd, 0, sizeof(cmd));
	if ((bad = rs_api_run_body(job->body, job->body_len, &body, &agent, &version, &input, err,
	                           sizeof(err))) != 0) {
		rs_api_problem(job, bad, "%s", err);
		goto cleanup;
	}
	/* Before anything is recorded (the Idempotency-Key included). */
	if (rs_api_storage_full(app, err, sizeof(err))) {
		rs_api_problem_retry(job, 507, 30, "%s", err);
		goto cleanup;
	}
	st = rs_api_agent_resolve(app, job->tenant, agent, version, ver);
	if (st == RS_ENOTFOUND) {
		if (version != NULL)
			rs_api_problem(job, 422, "version: agent %s has no version %s", agent, version);
		else
			rs_api_problem(job, 422, "agent: no agent named %s", agent);
		goto cleanup;
	}
	if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot resolve agent %s: %s", agent, rs_status_str(st));
		goto cleanup;
	}

	if (job->idem[0] != '\0') {
		char khash[65], rec[160];

		canon = rs_json_dump(body);
		if (canon == NULL)
			goto oom;
		rs_sha256_hex(canon, strlen(canon), body_sha);
		rs_sha256_hex(job->idem, strlen(job->idem), khash);
		snprintf(key, sizeof(key), "%s.%s", job->tenant, khash);
		rs_id_uuidv7(job->run_id);
		snprintf(rec, sizeof(rec), "{\"body_sha256\":\"%s\",\"run_id\":\"%s\"}", body_sha,
		         job->run_id);
		if (kvStore_CreateString(NULL, app->kv_idem, key, rec) != NATS_OK) {
			const char *rid, *bsha;
			natsStatus s = kvStore_Get(&e, app->kv_idem, key);
			if (s != NATS_OK ||
			    rs_json_parse(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), &idrec, err,
			                  sizeof(err)) != RS_OK ||
			    (rid = json_string_value(json_object_get(idrec, "run_id"))) == NULL ||
			    (bsha = json_string_value(json_object_get(idrec, "body_sha256"))) == NULL ||
			    !rs_id_is_uuid(rid)) {
				rs_api_problem_retry(job, 503, 1, "cannot record the Idempotency-Key: NATS %s",
				               natsStatus_GetText(s));
				goto cleanup;
			}
			if (strcmp(bsha, body_sha) != 0) {
				rs_api_problem(job, 409, "Idempotency-Key was already used with a different "
				               "request body (run %s)", rid);
				goto cleanup;
			}
			snprintf(job->run_id, sizeof(job->run_id), "%s", rid);
		}
	} else {
		rs_id_uuidv7(job->run_id);
	}

	/* The run.start command and the registry entry. */
	cmd.type = RS_CMD_RUN_START;
	snprintf(cmd.run_id, sizeof(cmd.run_id), "%s", job->run_id);
	snprintf(cmd.tenant, sizeof(cmd.tenant), "%s", job->tenant);
	if (rs_traceparent_valid(job->traceparent))
		snprintf(cmd.traceparent, sizeof(cmd.traceparent), "%s", job->traceparent);
	cmd.agent = (char *)agent;
	cmd.version = ver;
	cmd.input = input != NULL ? input : json_object();
	cmd.idempotency_key = job->idem[0] != '\0' ? job->idem : NULL;
	cmd.tags = json_object_get(body, "tags");   /* checked by rs_api_run_body */
	handed = rs_api_runs_start(app, job, &cmd, NULL);
	if (input == NULL)
		json_decref(cmd.input);
	goto cleanup;
oom:
	rs_api_problem(job, 500, "out of memory");
cleanup:
	json_decref(idrec);
	kvEntry_Destroy(e);
	json_decref(body);
	free(canon);
	return handed;
}

/* Shared by cancel and signal: the run must exist for this tenant and not
 * be finished. Returns 0 and sets a problem on job otherwise. */
static int
check_open(rs_api *app, rs_api_job *job)
{
	uint64_t last = 0;
	int term = 0;
	rs_status st = rs_api_run_lookup(app, job->tenant, job->run_id, &last, &term);

	if (st == RS_ENOTFOUND) {
		rs_api_problem(job, 404, "no run %s", job->run_id);
		return 0;
	}
	if (st != RS_OK) {
		rs_api_problem_retry(job, 503, 1, "cannot read run %s from JetStream: %s", job->run_id,
		               rs_status_str(st));
		return 0;
	}
	if (term) {
		rs_api_problem(job, 409, "run %s is already finished (last event %llu is terminal)",
		               job->run_id, (unsigned long long)last);
		return 0;
	}
	return 1;
}

static void
publish_cmd(rs_api *app, rs_api_job *job, rs_cmd *cmd, json_t *ok_body)
{
	char *buf = NULL, subj[160], msgid[128];
	size_t len = 0;
	natsMsg *m = NULL;
	rs_status st;

	st = rs_cmd_encode(cmd, &buf, &len);
	if (st != RS_OK) {
		rs_api_problem(job, 500, "cannot encode %s: %s", rs_cmd_type_name(cmd->type),
		               rs_status_str(st));
		json_decref(ok_body);
		return;
	}
	rs_cmd_subject(cmd->tenant, cmd->run_id, subj, sizeof(subj));
	rs_cmd_msg_id(cmd, msgid, sizeof(msgid));
	st = rs_nats_msg(&m, subj, buf, (int)len, "Runstream-Type", rs_cmd_type_name(cmd->type), NULL);
	if (st == RS_OK)
		st = rs_js_publish(app->nats.js, m, msgid, -1, app->pub_timeout_ms, NULL, NULL);
	natsMsg_Destroy(m);
	m = NULL;
	if (st != RS_OK) {
		free(buf);
		json_decref(ok_body);
		rs_api_problem_retry(job, 503, 1, "cannot publish %s to JetStream: %s",
		               rs_cmd_type_name(cmd->type), rs_status_str(st));
		return;
	}
	/* The copy (see the top). Accepted already: a copy that cannot be
	 * written leaves the command with one way to arrive, as before. */
	rs_cmd_copy_subject(cmd, subj, sizeof(subj));
	if (rs_nats_msg(&m, subj, buf, (int)len, NULL) != RS_OK ||
	    rs_js_publish(app->nats.js, m, NULL, -1, app->pub_timeout_ms, NULL, NULL) != RS_OK)
		rs_log(RS_LOG_WARN, cmd->run_id, NULL, "%s: its copy in KV runs could not be written",
		       rs_cmd_type_name(cmd->type));
	natsMsg_Destroy(m);
	free(buf);
	rs_api_json(job, 202, ok_body);
}

void
rs_api_runs_cancel(rs_api *app, rs_api_job *job)
{
	json_t *body = NULL;
	char err[512];
	const char *reason;
	rs_cmd cmd;
	int bad;

	memset(&cmd, 0, sizeof(cmd));
	if ((bad = rs_api_cancel_body(job->body, job->body_len, &body, &reason, err,
	                              sizeof(err))) != 0) {
		rs_api_problem(job, bad, "%s", err);
		return;
	}
	if (!check_open(app, job))
		goto cleanup;
	cmd.type = RS_CMD_CANCEL;
	snprintf(cmd.run_id, sizeof(cmd.run_id), "%s", job->run_id);
	snprintf(cmd.tenant, sizeof(cmd.tenant), "%s", job->tenant);
	cmd.reason = (char *)reason;
	publish_cmd(app, job, &cmd, json_pack("{s:s, s:s}", "run_id", job->run_id, "status",
	                                      "cancel_requested"));
cleanup:
	json_decref(body);
}

void
rs_api_runs_signal(rs_api *app, rs_api_job *job, const char *name)
{
	json_t *payload = NULL;
	char err[512], sid[RS_UUID_LEN + 1];
	rs_cmd cmd;
	int bad;

	memset(&cmd, 0, sizeof(cmd));
	if ((bad = rs_api_signal_body(name, job->body, job->body_len, &payload, err,
	                              sizeof(err))) != 0) {
		rs_api_problem(job, bad, "%s", err);
		return;
	}
	if (!check_open(app, job))
		goto cleanup;
	rs_id_uuidv7(sid);
	cmd.type = RS_CMD_SIGNAL;
	snprintf(cmd.run_id, sizeof(cmd.run_id), "%s", job->run_id);
	snprintf(cmd.tenant, sizeof(cmd.tenant), "%s", job->tenant);
	cmd.signal_id = sid;
	cmd.name = (char *)name;
	cmd.payload = payload != NULL ? payload : json_null();
	publish_cmd(app, job, &cmd, json_pack("{s:s, s:s, s:s}", "run_id", job->run_id,
	                                      "signal_id", sid, "name", name));
cleanup:
	json_decref(payload);
}
