/*
 * calls_take.c - TOOLCALLS into KV `calls`. The intake reads the shared
 * durable `routers` through common/rs_consume.c in its overlapping mode (up
 * to three pull requests outstanding, so one is waiting while another
 * ends: one fetch at a time cost 7-21 % of the C=64 round trip,
 * docs/benchmarks.md, "Router"); its subscription thread hands each message
 * here; a tool.call is claimed and delivered in one
 * step (the record created as delivered to a local device, or pending for
 * any router), a tool.cancel moves the record to cancelled. The TOOLCALLS
 * message is acked once the create's publish ack says the record is
 * durable (on_puback). Split from calls.c (see its opening comment).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calls_int.h"
#include "rs_mem.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

/* ---- intake: TOOLCALLS -> KV calls (intake thread) ------------------ */

/* Settle a TOOLCALLS message by its ack subject (any thread); a nak comes
 * back in 500 ms. */
static void
settle(rs_router *r, const char *reply, rs_consume_disp d)
{
	rs_consume_settle_reply(r->intake, reply, d, d == RS_CONSUME_NAK_DELAY ? 500 : 0);
}

static char *
cancel_record(const char *payload, int len)
{
	json_t *o = NULL;
	char err[200], *rec = NULL;

	if (rs_json_parse(payload, (size_t)len, &o, err, sizeof(err)) == RS_OK)
		rec = rs_router_calls_record_encode(o, CALL_CANCELLED, NULL, NULL, 0);
	json_decref(o);
	return rec;
}

static rs_status
intake_cancel(rs_router *r, const char *key, const char *payload, int len)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		kvEntry *e = NULL;
		json_t *o = NULL, *st;
		char err[200], *rec = NULL;
		natsStatus s = kvStore_Get(&e, r->kv_calls, key);
		rs_status res = RS_ERR;

		if (s == NATS_NOT_FOUND) {
			/* Cancel before the call: keep a tombstone so a late
			 * tool.call for it is not delivered. */
			if ((rec = cancel_record(payload, len)) != NULL &&
			    kvStore_Create(NULL, r->kv_calls, key, rec, (int)strlen(rec)) == NATS_OK)
				res = RS_OK;
			free(rec);
			if (res == RS_OK)
				return RS_OK;
			continue;
		}
		if (s != NATS_OK)
			return RS_EUNAVAIL;
		if (rs_json_parse(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &o, err, sizeof(err)) == RS_OK &&
		    json_is_object(o)) {
			st = json_object_get(o, "state");
			if (json_is_string(st) && (strcmp(json_string_value(st), "done") == 0 ||
			                           strcmp(json_string_value(st), "cancelled") == 0)) {
				res = RS_OK; /* too late or twice: nothing to do */
			} else {
				json_object_set_new(o, "state", json_string("cancelled"));
				json_object_set_new(o, "at", json_integer((json_int_t)rs_now_ms()));
				rec = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
				if (rec != NULL && kvStore_Update(NULL, r->kv_calls, key, rec, (int)strlen(rec),
				                                  kvEntry_Revision(e)) == NATS_OK)
					res = RS_OK;
				free(rec);
			}
		}
		json_decref(o);
		kvEntry_Destroy(e);
		if (res == RS_OK)
			return RS_OK;
	}
	return RS_ECONFLICT;
}

/* A tool.cancel, on a worker: the record to cancelled, then settle. */
typedef struct {
	rs_router_job j;
	int len;
	char *key, *reply, *payload;
	char data[];
} cancel_job;

static void
cancel_work(rs_router *r, rs_router_job *jj)
{
	cancel_job *j = (cancel_job *)jj;

	settle(r, j->reply, intake_cancel(r, j->key, j->payload, j->len) == RS_OK ? RS_CONSUME_ACK
	                                                                         : RS_CONSUME_NAK_DELAY);
	free(j);
}

/* A tool.call decoded on the subscription thread, for the service thread. */
typedef struct {
	rs_router_job j;
	rs_router_call *c;
} take_job;

static void take_apply(rs_router *r, rs_router_job *jj);

void
rs_router_calls_take(rs_router *r, natsMsg *m)
{
	const char *data = natsMsg_GetData(m), *reply = natsMsg_GetReply(m);
	int len = natsMsg_GetDataLength(m);
	rs_toolcall tc;
	rs_consume_meta meta;
	char err[256], key[200];
	rs_router_call *c;
	take_job *tj;

	rs_consume_reply_meta(reply, &meta);
	if (rs_toolcall_decode(data, (size_t)len, &tc, err, sizeof(err)) != RS_OK) {
		rs_dlq_publish(r->nats.js, "tool-router", natsMsg_GetSubject(m),
		               meta.stream_seq, data, len, err);
		settle(r, reply, RS_CONSUME_TERM);
		goto cleanup;
	}
	rs_router_call_key(tc.tenant, tc.call_id, key, sizeof(key));
	if (tc.cancel) {
		size_t kl = strlen(key) + 1, rl = strlen(reply) + 1;
		cancel_job *j = malloc(sizeof(*j) + kl + rl + (size_t)len + 1);

		if (j == NULL)
			rs_oom(0);
		j->j.fn = cancel_work;
		j->len = len;
		j->key = j->data;
		j->reply = j->key + kl;
		j->payload = j->reply + rl;
		memcpy(j->key, key, kl);
		memcpy(j->reply, reply, rl);
		memcpy(j->payload, data, (size_t)len);
		j->payload[len] = '\0';
		rs_toolcall_free(&tc);
		rs_router_work(r, key, &j->j);
		goto cleanup;
	}
	c = calloc(1, sizeof(*c));
	tj = malloc(sizeof(*tj));
	if (c == NULL || tj == NULL)
		rs_oom(0);
	c->tc = tc;
	c->key = strdup(key);
	c->reply = strdup(reply);
	c->stored_ns = meta.stored_ns;
	if (c->key == NULL || c->reply == NULL)
		rs_oom(0);
	if (rs_json_parse(data, (size_t)len, &c->callobj, err, sizeof(err)) != RS_OK) {
		/* rs_toolcall_decode read it: cannot happen. */
		settle(r, reply, RS_CONSUME_TERM);
		rs_router_calls_call_free(c);
		free(tj);
		goto cleanup;
	}
	tj->j.fn = take_apply;
	tj->c = c;
	rs_router_post(r, &tj->j);
cleanup:
	natsMsg_Destroy(m);
}

/* KV create without waiting: the ack comes to on_puback. */
static rs_status
create_async(rs_router *r, const char *key, const char *rec)
{
	char subj[256];
	natsMsg *m = NULL;
	jsPubOptions po;
	natsStatus s;

	snprintf(subj, sizeof(subj), KV_CALLS_PREFIX "%s", key);
	jsPubOptions_Init(&po);
	po.ExpectNoMessage = 1;   /* Nats-Expected-Last-Subject-Sequence: 0 */
	po.MaxWait = ASYNC_MAX_WAIT_MS;
	s = natsMsg_Create(&m, subj, NULL, rec, (int)strlen(rec));
	if (s == NATS_OK)
		s = js_PublishMsgAsync(r->nats.js, &m, &po);
	natsMsg_Destroy(m);
	return s == NATS_OK ? RS_OK : rs_nats_status(s, 0);
}

/* Service thread: a new tool.call. Claim it for a local device in the
 * same write that creates its record, or create it pending. */
static void
take_apply(rs_router *r, rs_router_job *jj)
{
	take_job *tj = (take_job *)jj;
	rs_router_call *n = tj->c, *c = rs_router_calls_find_call(r, n->key);
	rs_router_conn *conn = NULL;
	char *rec;

	free(tj);
	if (atomic_load(&r->stopping)) {
		/* No device will get it from us now: to another router. */
		settle(r, n->reply, RS_CONSUME_NAK_DELAY);
		rs_router_calls_call_free(n);
		return;
	}
	if (c != NULL) {
		/* Known: its record exists (the watch showed it: ack), or our
		 * create for an earlier delivery of this message is still in
		 * flight (that one settles; this copy comes back later). */
		settle(r, n->reply, c->rev > 0 ? RS_CONSUME_ACK : RS_CONSUME_NAK_DELAY);
		rs_router_calls_call_free(n);
		return;
	}
	if (n->tc.deadline > rs_now_ms())
		conn = rs_router_calls_pick_device(r, n);
	rec = conn != NULL ? rs_router_calls_record_encode(n->callobj, CALL_DELIVERED, conn->dev->device_id,
	                                   r->instance, conn->id)
	                   : rs_router_calls_record_encode(n->callobj, CALL_PENDING, NULL, NULL, 0);
	if (rec == NULL || rs_map_put(&r->calls, n->key, n) != RS_OK)
		rs_oom(0);
	rs_metric_inc(r->m.calls_seen);
	n->state = CALL_PENDING;
	n->inflight = 1;
	if (conn != NULL) {
		n->claim_conn = conn->id;
		n->claim_dev = strdup(conn->dev->device_id);
		if (n->claim_dev == NULL)
			rs_oom(0);
		conn->dev->claiming++;
	}
	if (create_async(r, n->key, rec) != RS_OK) {
		rs_warn("router: cannot write KV calls %s now; the call comes back in 500 ms", n->key);
		settle(r, n->reply, RS_CONSUME_NAK_DELAY);
		if (conn != NULL && conn->dev->claiming > 0)
			conn->dev->claiming--;
		rs_map_take(&r->calls, n->key);
		rs_router_calls_call_free(n);
	}
	free(rec);
}

/* The ack of a KV create (ok, or exists: the key was there already). */
typedef struct {
	rs_router_job j;
	uint64_t rev;
	int ok, exists;
	char key[];
} create_job;

/* Service thread: our intake create came back. */
static void
create_done(rs_router *r, rs_router_job *jj)
{
	create_job *j = (create_job *)jj;
	rs_router_call *c = rs_router_calls_find_call(r, j->key);
	rs_router_conn *conn;
	uint64_t cid;

	if (c == NULL || c->reply == NULL) {
		free(j);
		return;   /* cannot happen: an intake create keeps its call in the index */
	}
	if (!j->ok && j->exists && c->rev == 0) {
		/* A call this router does not follow (done, or cancelled)
		 * came again: the orchestrator is still waiting for it. */
		rs_consume_meta meta;

		rs_consume_reply_meta(c->reply, &meta);
		rs_router_calls_result_again(r, j->key, meta.stream_seq);
	}
	settle(r, c->reply, j->ok || j->exists ? RS_CONSUME_ACK : RS_CONSUME_NAK_DELAY);
	free(c->reply);
	c->reply = NULL;
	c->inflight = 0;
	cid = c->claim_conn;
	c->claim_conn = 0;
	conn = cid != 0 ? rs_router_conn_find(r, cid) : NULL;
	if (conn != NULL && conn->dev != NULL && conn->dev->claiming > 0)
		conn->dev->claiming--;
	if (!j->ok) {
		if (!j->exists)
			rs_warn("router: KV calls create of %s failed; the call comes back in 500 ms", j->key);
		/* Known to the watch (rev > 0): follow the record. Else forget
		 * it: the watch brings it if it is live. */
		if (c->rev == 0)
			rs_router_calls_remove_call(r, c);
		else
			rs_router_calls_evaluate(r, c);
		goto cleanup;
	}
	if (j->rev > c->rev) {
		/* Before the watch's echo of it. */
		c->rev = j->rev;
		c->stale = 0;
		if (cid != 0)
			rs_router_calls_set_delivered(r, c, CALL_DELIVERED, c->claim_dev, r->instance, cid);
	}
	if (cid != 0 && conn != NULL && conn->dev != NULL && conn->state == RS_CONN_READY &&
	    c->state == CALL_DELIVERED && c->conn == cid && c->router != NULL &&
	    strcmp(c->router, r->instance) == 0) {
		rs_router_calls_deliver(r, c, conn);
		if (c->stored_ns > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			rs_metric_observe(r->m.intake_latency,
			                  (double)((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - c->stored_ns) / 1e9);
		}
	} else
		rs_router_calls_evaluate(r, c);   /* the device left (release), or pending, or ended */
cleanup:
	free(j);
}

/* nats.c's async-publish ack thread: every js_PublishMsgAsync of ours. */
void
rs_router_calls_on_puback(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	rs_router *r = closure;
	const char *subj = natsMsg_GetSubject(m);

	(void)js;
	if (strncmp(subj, KV_CALLS_PREFIX, strlen(KV_CALLS_PREFIX)) == 0) {
		const char *key = subj + strlen(KV_CALLS_PREFIX);
		size_t kl = strlen(key) + 1;
		create_job *j = malloc(sizeof(*j) + kl);

		if (j == NULL)
			rs_oom(0);
		j->j.fn = create_done;
		j->ok = pa != NULL;
		j->rev = pa != NULL ? pa->Sequence : 0;
		j->exists = pae != NULL && pae->ErrCode == JSStreamWrongLastSequenceErr;
		memcpy(j->key, key, kl);
		rs_router_post(r, &j->j);
	} else if (pae != NULL) {
		const char *type = NULL, *msgid = NULL;

		natsMsgHeader_Get(m, "Runstream-Type", &type);
		natsMsgHeader_Get(m, "Nats-Msg-Id", &msgid);
		rs_warn("router: async publish of %s to %s failed (%s): publishing it again",
		        type ? type : "?", subj, pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
		if (type != NULL && msgid != NULL)
			rs_router_calls_repub(r, subj, natsMsg_GetData(m), natsMsg_GetDataLength(m), type, msgid);
	}
	natsMsg_Destroy(m);
}

/* ---- the consumer: TOOLCALLS/routers ---------------------------------- */

/* rs_consume's callback, on the subscription's thread (n == 1 in the
 * overlapping mode). Stopping: left unsettled, a message goes to another
 * router after AckWait. */
static void
on_intake(void *arg, natsMsg **msgs, int n, rs_consume_out *out)
{
	rs_router *r = arg;

	for (int i = 0; i < n; i++) {
		if (atomic_load(&r->stopping)) {
			out[i].disp = RS_CONSUME_DROP;
			continue;
		}
		out[i].disp = RS_CONSUME_TAKEN;
		rs_router_calls_take(r, msgs[i]);   /* takes it; settles it later */
	}
}

rs_status
rs_router_intake_start(rs_router *r)
{
	/* Requests of 256 living RS_ROUTER_PULL_EXPIRES_MS (30 s), an idle
	 * heartbeat every min(5 s, expires/4), up to three at once. */
	rs_consume_cfg cfg = {
		.name = "router-calls", .stream = "TOOLCALLS", .durable = "routers",
		.filter = "toolcalls.>", .batch = 256, .expires_ms = r->pull_expires_ms,
		.heartbeat_ms = r->pull_expires_ms / 4 < 5000 ? r->pull_expires_ms / 4 : 5000,
		.on_batch = on_intake, .arg = r, .overlap = 3, .inbox = r->intake_inbox,
	};

	if (rs_nats_new_inbox(&r->nats, r->intake_inbox, sizeof(r->intake_inbox)) != RS_OK)
		return RS_ERR;
	return rs_consume_start(&r->intake, r->nats.nc, r->nats.js, &cfg);
}
