/*
 * calls.c - pending tool calls: intake from TOOLCALLS, the shared call state
 * in KV `calls`, routing to devices, redelivery, results and cancels.
 *
 * Why a KV bucket: every router instance must be able to deliver any call
 * (a device may connect to any instance), yet a call must be owned by at
 * most one live device connection at a time. The KV record of a call is
 * that ownership: it moves pending -> delivered(device, router, conn) ->
 * done | cancelled, every move a compare-and-set on the record's revision
 * (kvStore_Update). Whoever wins the CAS may write to the device; a loser
 * learns the new state from the watch.
 *
 *   intake (calls_take.c: common/rs_consume.c keeps up to three pull
 *     requests on the shared durable consumer `routers` of TOOLCALLS
 *     outstanding; its subscription thread decodes there and posts to the
 *     service thread): a tool.call is claimed and
 *     delivered in one step. The service thread picks a local device and
 *     creates the record directly as delivered to it (an asynchronous
 *     publish with Nats-Expected-Last-Subject-Sequence 0, i.e. a KV
 *     create: a redelivered message or another router's copy changes
 *     nothing); when no device here fits, the record is created pending
 *     and the watch lets any router claim it. The frame goes to the device
 *     and tool.delivered to CMDS (asynchronously) as soon as the create's
 *     ack says the record is durable; the TOOLCALLS message is acked then,
 *     so a router dying mid-intake leaves the message to another instance.
 *     A tool.cancel moves the record to cancelled (on a worker).
 *   watch thread: follows every record of KV `calls` and posts updates to
 *     the service thread, which keeps the index of live calls and claims
 *     those its devices can take.
 *   service thread: decides (claim, release, result) and hands the KV/CMDS
 *     writes to the workers.
 *
 * Redelivery: a connection that closes releases its delivered calls back
 * to pending (CAS); a device that connects (to any router) claims the
 * pending calls for it and takes over the ones still recorded as delivered
 * to it on another connection: that covers a router killed with -9, whose
 * releases never happen. Calls past their deadline are dropped (the
 * orchestrator's timer fails the step); the bucket's TTL removes records.
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

static const char *const state_names[] = { "pending", "delivered", "done", "cancelled" };

/* ---- records -------------------------------------------------------- */

void
rs_router_call_key(const char *tenant, const char *call_id, char *buf, size_t cap)
{
	const char *p;
	char sum[65];

	/* KV keys allow [-/_=.a-zA-Z0-9]; call ids allow more. */
	for (p = call_id; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '='))
			break;
	if (*p == '\0' && p - call_id <= 100) {
		snprintf(buf, cap, "%s.%s", tenant, call_id);
		return;
	}
	rs_sha256_hex(call_id, strlen(call_id), sum);
	snprintf(buf, cap, "%s.h-%s", tenant, sum);
}

/* {"call":{...},"state":"...","device":..,"router":..,"conn":N,"at":ms,
 *  "result":{"output":..}|{"error":..}} */
char *
rs_router_calls_record_encode(json_t *callobj, int state, const char *device, const char *router,
              uint64_t conn)
{
	return rs_router_calls_record_encode_done(callobj, state, device, router, conn, NULL);
}

/* The same with the device's answer kept in the record (a done call): the
 * second copy of its tool.result (calls_result.c, "again"). */
char *
rs_router_calls_record_encode_done(json_t *callobj, int state, const char *device, const char *router,
                                   uint64_t conn, json_t *result)
{
	json_t *o = json_pack("{s:O, s:s, s:I}", "call", callobj, "state", state_names[state],
	                      "at", (json_int_t)rs_now_ms());
	char *s = NULL;

	if (o == NULL)
		return NULL;
	if (result != NULL)
		json_object_set(o, "result", result);
	if (device != NULL)
		json_object_set_new(o, "device", json_string(device));
	if (router != NULL)
		json_object_set_new(o, "router", json_string(router));
	if (conn != 0)
		json_object_set_new(o, "conn", json_integer((json_int_t)conn));
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

/* Parse a record into c (fields allocated; callobj a new reference). */
rs_status
rs_router_calls_record_decode(const char *buf, size_t len, rs_router_call *c)
{
	json_t *o = NULL, *v;
	char err[200];
	char *calls = NULL;
	rs_status st = RS_EINVAL;

	if (rs_json_parse(buf, len, &o, err, sizeof(err)) != RS_OK || !json_is_object(o))
		goto cleanup;
	c->callobj = json_incref(json_object_get(o, "call"));
	if (!json_is_object(c->callobj))
		goto cleanup;
	calls = json_dumps(c->callobj, JSON_COMPACT);
	if (calls == NULL || rs_toolcall_decode(calls, strlen(calls), &c->tc, err, sizeof(err)) != RS_OK)
		goto cleanup;
	v = json_object_get(o, "state");
	c->state = -1;
	for (int i = 0; i < 4; i++)
		if (json_is_string(v) && strcmp(json_string_value(v), state_names[i]) == 0)
			c->state = i;
	if (c->state < 0)
		goto cleanup;
	if (c->tc.cancel)
		c->state = CALL_CANCELLED;
	if ((v = json_object_get(o, "device")) != NULL && json_is_string(v))
		c->device = strdup(json_string_value(v));
	if ((v = json_object_get(o, "router")) != NULL && json_is_string(v))
		c->router = strdup(json_string_value(v));
	if ((v = json_object_get(o, "conn")) != NULL && json_is_integer(v))
		c->conn = (uint64_t)json_integer_value(v);
	if ((v = json_object_get(o, "at")) != NULL && json_is_integer(v))
		c->at = (int64_t)json_integer_value(v);
	st = RS_OK;
cleanup:
	free(calls);
	json_decref(o);
	return st;
}

void
rs_router_calls_call_free(rs_router_call *c)
{
	if (c == NULL)
		return;
	free(c->key);
	json_decref(c->callobj);
	rs_toolcall_free(&c->tc);
	free(c->device);
	free(c->router);
	free(c->reply);
	free(c->claim_dev);
	free(c);
}

/* ---- publishing commands (workers) ---------------------------------- */

int
rs_router_calls_sleep_retry(rs_router *r, int attempt)
{
	if (atomic_load(&r->stopping) && attempt > 2)
		return 0;
	usleep((useconds_t)(50000 << (attempt < 5 ? attempt : 5)));
	return attempt < 8;
}

#define RETRY_MS 500   /* an unanswered CAS is tried again after this */
#define STALE_MS 2000  /* a lost CAS with no news from the watch: read back */

/* Synchronous, de-duplicated publish to CMDS with retries: durable before
 * we return. Only the fallback when an asynchronous publish failed. */
static rs_status
publish_sync(rs_router *r, const char *subj, const char *body, int len, const char *type,
             const char *msgid)
{
	natsMsg *m = NULL;
	rs_status st;

	for (int attempt = 0;; attempt++) {
		st = rs_nats_msg(&m, subj, body, len, "Runstream-Type", type, NULL);
		if (st == RS_OK) {
			st = rs_js_publish(r->nats.js, m, msgid, -1, ASYNC_MAX_WAIT_MS, NULL, NULL);
			natsMsg_Destroy(m);
		}
		if (st == RS_OK || !rs_router_calls_sleep_retry(r, attempt))
			break;
	}
	if (st != RS_OK)
		rs_error("router: cannot publish %s (%s) to %s: %s", type, msgid, subj, rs_status_str(st));
	return st;
}

/* A command whose asynchronous publish failed, published again (same
 * Nats-Msg-Id: the server drops it if the first one landed after all). */
typedef struct {
	rs_router_job j;
	int len;
	char *subj, *type, *msgid, *body;
	char data[];
} repub_job;

static void
repub_work(rs_router *r, rs_router_job *jj)
{
	repub_job *j = (repub_job *)jj;

	publish_sync(r, j->subj, j->body, j->len, j->type, j->msgid);
	free(j);
}

void
rs_router_calls_repub(rs_router *r, const char *subj, const char *body, int len, const char *type,
      const char *msgid)
{
	size_t sl = strlen(subj) + 1, tl = strlen(type) + 1, ml = strlen(msgid) + 1;
	repub_job *j = malloc(sizeof(*j) + sl + tl + ml + (size_t)len + 1);

	if (j == NULL)
		rs_oom(0);
	j->j.fn = repub_work;
	j->len = len;
	j->subj = j->data;
	j->type = j->subj + sl;
	j->msgid = j->type + tl;
	j->body = j->msgid + ml;
	memcpy(j->subj, subj, sl);
	memcpy(j->type, type, tl);
	memcpy(j->msgid, msgid, ml);
	memcpy(j->body, body, (size_t)len);
	j->body[len] = '\0';
	rs_router_work(r, msgid, &j->j);
}

/* Asynchronous, de-duplicated publish of a command to CMDS: nothing waits
 * for its ack. on_puback hands a failure to a worker that publishes it
 * again synchronously. Commands of one call keep their order on the wire
 * (one connection): tool.delivered goes before the frame that lets the
 * device answer, so before tool.result. Only a failed tool.delivered
 * (rare, republished) can land after its tool.result, and the orchestrator
 * ignores a delivered for a call already finished. */
void
rs_router_calls_publish_cmd(rs_router *r, const rs_cmd *c, uint64_t again)
{
	char subj[160], msgid[300];
	const char *type = rs_cmd_type_name(c->type);
	char *body = NULL;
	size_t len = 0;
	natsMsg *m = NULL;
	jsPubOptions po;

	if (rs_cmd_encode(c, &body, &len) != RS_OK) {
		rs_error("router: cannot encode %s for call %s", type, c->call_id);
		return;
	}
	rs_cmd_subject(c->tenant, c->run_id, subj, sizeof(subj));
	rs_cmd_msg_id(c, msgid, sizeof(msgid));
	if (again != 0) {
		/* A second copy: its own id, since the first may still be in
		 * CMDS's de-duplication window though its message is gone. */
		size_t l = strlen(msgid);
		snprintf(msgid + l, sizeof(msgid) - l, "-again-%llu", (unsigned long long)again);
	}
	jsPubOptions_Init(&po);
	po.MsgId = msgid;
	po.MaxWait = ASYNC_MAX_WAIT_MS;
	if (rs_nats_msg(&m, subj, body, (int)len, "Runstream-Type", type, NULL) != RS_OK ||
	    js_PublishMsgAsync(r->nats.js, &m, &po) != NATS_OK) {
		natsMsg_Destroy(m);
		rs_router_calls_repub(r, subj, body, (int)len, type, msgid);
	}
	free(body);
}

/* ---- jobs ----------------------------------------------------------- */

/* Every job is one allocation (strings in data[]) so a queue torn down at
 * shutdown frees it with free(). */
typedef struct {
	rs_router_job j;
	uint64_t rev, conn;
	int ok, release;          /* claim: CAS won; release: this is a release */
	int conflict;             /* lost to a newer revision (not a timeout) */
	char *key, *record, *run_id, *tenant, *call_id, *device;
	char data[];
} cas_job;

static cas_job *
cas_job_new(rs_router_job_fn fn, const char *key, const char *record, const char *run_id,
            const char *tenant, const char *call_id, const char *device)
{
	const char *src[6] = { key, record, run_id, tenant, call_id, device };
	size_t n = 0, off = 0;
	cas_job *j;
	char **dst[6];

	for (int i = 0; i < 6; i++)
		n += (src[i] ? strlen(src[i]) : 0) + 1;
	j = calloc(1, sizeof(*j) + n);
	if (j == NULL)
		return NULL;
	dst[0] = &j->key; dst[1] = &j->record; dst[2] = &j->run_id;
	dst[3] = &j->tenant; dst[4] = &j->call_id; dst[5] = &j->device;
	for (int i = 0; i < 6; i++) {
		size_t l = src[i] ? strlen(src[i]) : 0;
		*dst[i] = j->data + off;
		if (l)
			memcpy(j->data + off, src[i], l);
		j->data[off + l] = '\0';
		off += l + 1;
	}
	j->j.fn = fn;
	return j;
}

static void claim_done(rs_router *r, rs_router_job *jj);

/* A compare-and-set of a call's record at revision rev (what
 * kvStore_Update sends), telling a lost race (RS_ECONFLICT: another write
 * won) from no answer (RS_ETIMEOUT, RS_EUNAVAIL...: during a JetStream
 * leader election the write may or may not have landed). */
rs_status
rs_router_calls_cas_put(rs_router *r, const char *key, const char *record, uint64_t rev, uint64_t *newrev)
{
	char subj[256];
	natsMsg *m = NULL;
	rs_status st;

	snprintf(subj, sizeof(subj), KV_CALLS_PREFIX "%s", key);
	st = rs_nats_msg(&m, subj, record, (int)strlen(record), NULL);
	if (st == RS_OK)
		st = rs_js_publish(r->nats.js, m, NULL, (int64_t)rev, ASYNC_MAX_WAIT_MS, newrev, NULL);
	natsMsg_Destroy(m);
	return st;
}

/* Worker: CAS the record to delivered (or back to pending for a release).
 * A publish with Nats-Expected-Last-Subject-Sequence (what kvStore_Update
 * sends) so that a lost race (10071) is told apart from no answer: during
 * a JetStream leader election the write times out or finds no responder,
 * and may or may not have landed. Only a lost race has a winner whose
 * record the watch will bring; the other case is tried again (claim_done). */
static void
claim_work(rs_router *r, rs_router_job *jj)
{
	cas_job *j = (cas_job *)jj;
	uint64_t rev = 0;
	rs_status st = rs_router_calls_cas_put(r, j->key, j->record, j->rev, &rev);

	j->ok = st == RS_OK;
	j->conflict = st == RS_ECONFLICT;
	if (!j->ok) {
		if (j->conflict)
			rs_metric_inc(r->m.claim_conflicts);
		rs_debug("router: CAS on %s at rev %llu %s: %s", j->key, (unsigned long long)j->rev,
		         j->conflict ? "lost" : "unanswered", rs_status_str(st));
	}
	if (j->ok)
		j->rev = rev;
	/* The service thread writes the call to the device and publishes
	 * tool.delivered (rs_router_calls_deliver()). */
	j->j.fn = claim_done;
	rs_router_post(r, &j->j);
}

rs_router_call *
rs_router_calls_find_call(rs_router *r, const char *key)
{
	return rs_map_get(&r->calls, key);
}

static rs_router_conn *
device_conn(rs_router *r, const char *tenant, const char *device)
{
	char key[160];

	snprintf(key, sizeof(key), "%s.%s", tenant, device);
	return rs_map_get(&r->devices, key);
}

/* Keep the per-device count of delivered calls (capability spread). */
void
rs_router_calls_set_delivered(rs_router *r, rs_router_call *c, int state, const char *device,
              const char *router, uint64_t conn)
{
	rs_router_conn *dc;

	if (c->state == CALL_DELIVERED && c->device != NULL &&
	    (dc = device_conn(r, c->tc.tenant, c->device)) != NULL && dc->dev != NULL &&
	    dc->dev->pending > 0 && c->router != NULL && strcmp(c->router, r->instance) == 0)
		dc->dev->pending--;
	free(c->device);
	free(c->router);
	c->device = device ? strdup(device) : NULL;
	c->router = router ? strdup(router) : NULL;
	c->conn = conn;
	c->state = state;
	if (state == CALL_DELIVERED && device != NULL && router != NULL &&
	    strcmp(router, r->instance) == 0 &&
	    (dc = device_conn(r, c->tc.tenant, device)) != NULL && dc->dev != NULL)
		dc->dev->pending++;
}

/* The record says c is ours on conn: tool.delivered to CMDS (not awaited),
 * then the call to the device. */
void
rs_router_calls_deliver(rs_router *r, rs_router_call *c, rs_router_conn *conn)
{
	rs_cmd cmd;
	char *frame;

	memset(&cmd, 0, sizeof(cmd));
	cmd.type = RS_CMD_TOOL_DELIVERED;
	snprintf(cmd.run_id, sizeof(cmd.run_id), "%s", c->tc.run_id);
	snprintf(cmd.tenant, sizeof(cmd.tenant), "%s", c->tc.tenant);
	cmd.call_id = c->tc.call_id;
	cmd.device_id = conn->dev->device_id;
	cmd.router = (char *)r->instance;
	rs_router_calls_publish_cmd(r, &cmd, 0);
	rs_debug("router: call %s (rev %llu) to %s on conn %llu", c->key, (unsigned long long)c->rev,
	         conn->dev->device_id, (unsigned long long)conn->id);
	frame = rs_router_frame_call(&c->tc);
	if (frame != NULL) {
		rs_router_conn_send(r, conn, frame, strlen(frame));
		free(frame);
		c->sent_us = rs_mono_us();
		c->sent_conn = conn->id;
		rs_metric_inc(r->m.calls_delivered);
	}
}

void
rs_router_calls_remove_call(rs_router *r, rs_router_call *c)
{
	rs_router_calls_set_delivered(r, c, CALL_DONE, NULL, NULL, 0);
	rs_map_take(&r->calls, c->key);
	rs_router_calls_call_free(c);
}

/* Service thread: the CAS result came back. */
static void
claim_done(rs_router *r, rs_router_job *jj)
{
	cas_job *j = (cas_job *)jj;
	rs_router_call *c = rs_router_calls_find_call(r, j->key);
	rs_router_conn *conn = j->release ? NULL : rs_router_conn_find(r, j->conn);

	if (conn != NULL && conn->dev != NULL && conn->dev->claiming > 0)
		conn->dev->claiming--;
	if (c == NULL)
		goto cleanup;  /* finished or expired meanwhile */
	c->inflight = 0;
	if (!j->ok && j->conflict) {
		if (c->rev > j->rev) {
			/* The watch brought the winner's record while our CAS
			 * was under way: decide on it now. */
			rs_router_calls_evaluate(r, c);
			goto cleanup;
		}
		/* The watch brings the winner's state; if it never does (a
		 * new JetStream leader that refused our revision though the
		 * record did not change), the sweep reads it back. */
		c->stale = 1;
		c->stale_at = rs_mono_ms();
		goto cleanup;
	}
	if (!j->ok) {
		/* No answer: the write may have landed or not. Waiting for the
		 * watch would wait forever in the second case; so evaluate again
		 * shortly (the sweep): a CAS at the same revision then either
		 * wins or loses to our own first write, whose record the watch
		 * brings (and evaluate delivers). */
		rs_warn("router: CAS on %s unanswered; trying again in %d ms", j->key, RETRY_MS);
		c->retry_at = rs_mono_ms() + RETRY_MS;
		goto cleanup;
	}
	if (j->rev > c->rev) {
		c->rev = j->rev;
		c->stale = 0;
		if (j->release)
			rs_router_calls_set_delivered(r, c, CALL_PENDING, NULL, NULL, 0);
		else
			rs_router_calls_set_delivered(r, c, CALL_DELIVERED, j->device, r->instance, j->conn);
	}
	if (j->release) {
		rs_router_calls_evaluate(r, c);
		goto cleanup;
	}
	if (conn == NULL || conn->dev == NULL || conn->state != RS_CONN_READY ||
	    c->state != CALL_DELIVERED || c->conn != j->conn) {
		/* The device left while we claimed (give the call back), or the
		 * call ended meanwhile (drop it). */
		rs_router_calls_evaluate(r, c);
		goto cleanup;
	}
	rs_router_calls_deliver(r, c, conn);
cleanup:
	free(j);
}

/* ---- deciding (service thread) -------------------------------------- */

void
rs_router_calls_start_cas(rs_router *r, rs_router_call *c, int release, rs_router_conn *conn)
{
	char *rec;
	cas_job *j;

	if (release)
		rec = rs_router_calls_record_encode(c->callobj, CALL_PENDING, NULL, NULL, 0);
	else
		rec = rs_router_calls_record_encode(c->callobj, CALL_DELIVERED, conn->dev->device_id, r->instance,
		                    conn->id);
	if (rec == NULL)
		return;
	j = cas_job_new(claim_work, c->key, rec, c->tc.run_id, c->tc.tenant, c->tc.call_id,
	                release ? NULL : conn->dev->device_id);
	free(rec);
	if (j == NULL)
		return;
	j->rev = c->rev;
	j->release = release;
	j->conn = release ? 0 : conn->id;
	if (!release)
		conn->dev->claiming++;
	c->inflight = 1;
	rs_router_work(r, c->key, &j->j);
}

/* A local device for a pending call: the target device, or for a
 * capability the least busy device offering the tool (ties: the first in
 * map order, which differs per device key, so load spreads). */
rs_router_conn *
rs_router_calls_pick_device(rs_router *r, rs_router_call *c)
{
	rs_router_conn *best = NULL, *conn;
	rs_map_ent *e;
	size_t i;
	const char *need = c->tc.capability ? c->tc.capability : c->tc.tool;

	if (c->tc.device != NULL) {
		conn = device_conn(r, c->tc.tenant, c->tc.device);
		return conn != NULL && conn->state == RS_CONN_READY ? conn : NULL;
	}
	for (i = 0, e = NULL; (e = rs_map_next(&r->devices, &i, e)) != NULL;) {
		conn = e->val;
		if (conn->state != RS_CONN_READY || strcmp(conn->dev->tenant, c->tc.tenant) != 0 ||
		    !rs_router_has_tool(conn->dev->names, need) ||
		    !rs_router_has_tool(conn->dev->names, c->tc.tool))
			continue;
		if (best == NULL || conn->dev->pending + conn->dev->claiming <
		                    best->dev->pending + best->dev->claiming)
			best = conn;
		if (best->dev->pending + best->dev->claiming == 0)
			break;
	}
	return best;
}

/* Decide what to do with c now. May free c. */
void
rs_router_calls_evaluate(rs_router *r, rs_router_call *c)
{
	rs_router_conn *conn;

	if (c->inflight || c->stale || c->retry_at > rs_mono_ms())
		return;
	c->retry_at = 0;
	if (c->state == CALL_DONE || c->state == CALL_CANCELLED ||
	    c->tc.deadline <= rs_now_ms()) {
		rs_router_calls_remove_call(r, c);
		return;
	}
	if (c->state == CALL_DELIVERED) {
		if (c->router == NULL || strcmp(c->router, r->instance) != 0) {
			/* Another router's, delivered to a device that connected
			 * here after that record was written: that connection is
			 * gone (its router killed, or the device moved before it
			 * answered), and the device does not send a result it
			 * could not deliver. Take it over, as device_up does for
			 * what the index holds at hello; this is the record
			 * learnt from the watch after the hello (bench/chaos: a
			 * router killed 1 ms after its dispatch, the call lost).
			 * "After" keeps a half-open old connection here from
			 * taking calls off the device's live one. */
			char key[200];
			rs_router_conn *dc;

			if (c->answered || c->device == NULL || c->at <= 0)
				return;
			snprintf(key, sizeof(key), "%s.%s", c->tc.tenant, c->device);
			dc = rs_map_get(&r->devices, key);
			if (dc != NULL && dc->state == RS_CONN_READY && dc->dev != NULL &&
			    dc->dev->connected_at > c->at) {
				rs_debug("router: call %s delivered by %s at %lld; taken over (device here since %lld)",
				         c->key, c->router ? c->router : "?", (long long)c->at,
				         (long long)dc->dev->connected_at);
				rs_router_calls_start_cas(r, c, 0, dc);
			}
			return;
		}
		/* Ours, but its connection is gone: back to pending. */
		if ((conn = rs_router_conn_find(r, c->conn)) == NULL || conn->state != RS_CONN_READY)
			rs_router_calls_start_cas(r, c, 1, NULL);
		/* Ours on a live connection, yet never written to it: a write
		 * of ours that landed though its answer was lost (a timed-out
		 * CAS or create, learnt from the watch). The record is the
		 * ownership, so the call is this connection's: deliver it. */
		else if (c->sent_conn != c->conn && !c->answered)
			rs_router_calls_deliver(r, c, conn);
		return;
	}
	if (c->answered)
		return;
	conn = rs_router_calls_pick_device(r, c);
	if (conn != NULL)
		rs_router_calls_start_cas(r, c, 0, conn);
}

void
rs_router_calls_device_up(rs_router *r, rs_router_conn *conn)
{
	rs_map_ent *e;
	rs_router_call *c, **todo = NULL;
	size_t i, n = 0, cap = 0;
	const rs_router_device *d = conn->dev;

	/* Collect first: claims do not change the map, but keep it simple. */
	for (i = 0, e = NULL; (e = rs_map_next(&r->calls, &i, e)) != NULL;) {
		c = e->val;
		if (c->inflight || strcmp(c->tc.tenant, d->tenant) != 0 || c->answered)
			continue;
		if (c->state == CALL_PENDING) {
			if (c->tc.device != NULL ? strcmp(c->tc.device, d->device_id) != 0
			    : !rs_router_has_tool(d->names, c->tc.capability ? c->tc.capability : c->tc.tool))
				continue;
		} else if (c->state == CALL_DELIVERED) {
			/* Recorded as delivered to this device on another
			 * connection (maybe on a dead router): the device is
			 * here now, so that connection is not live any more. */
			if (c->device == NULL || strcmp(c->device, d->device_id) != 0 ||
			    (c->router != NULL && strcmp(c->router, r->instance) == 0 && c->conn == conn->id))
				continue;
		} else {
			continue;
		}
		if (n == cap) {
			rs_router_call **t = realloc(todo, (cap = cap ? cap * 2 : 16) * sizeof(*t));
			if (t == NULL)
				break;
			todo = t;
		}
		todo[n++] = c;
	}
	for (i = 0; i < n; i++) {
		c = todo[i];
		rs_debug("router: call %s (%s) claimed for device %s at hello", c->key,
		         c->state == CALL_PENDING ? "pending" : "delivered elsewhere", d->device_id);
		c->stale = 0;
		if (c->tc.deadline <= rs_now_ms())
			rs_router_calls_remove_call(r, c);
		else
			rs_router_calls_start_cas(r, c, 0, conn);
	}
	free(todo);
}

void
rs_router_calls_device_down(rs_router *r, rs_router_conn *conn)
{
	rs_map_ent *e;
	rs_router_call *c, **todo = NULL;
	size_t i, n = 0, cap = 0;

	for (i = 0, e = NULL; (e = rs_map_next(&r->calls, &i, e)) != NULL;) {
		c = e->val;
		if (c->state != CALL_DELIVERED || c->conn != conn->id || c->router == NULL ||
		    strcmp(c->router, r->instance) != 0)
			continue;
		if (n == cap) {
			rs_router_call **t = realloc(todo, (cap = cap ? cap * 2 : 16) * sizeof(*t));
			if (t == NULL)
				break;
			todo = t;
		}
		todo[n++] = c;
	}
	for (i = 0; i < n; i++)
		rs_router_calls_evaluate(r, todo[i]);  /* conn already unregistered: releases */
	free(todo);
}

void
rs_router_calls_jsopts(rs_router *r, jsOptions *jo)
{
	jo->PublishAsync.AckHandler = rs_router_calls_on_puback;
	jo->PublishAsync.AckHandlerClosure = r;
	jo->PublishAsync.MaxPending = 65536;
	jo->PublishAsync.StallWait = 1000;
}

rs_status
rs_router_calls_start(rs_router *r)
{
	natsStatus s;

	s = kvStore_WatchAll(&r->watcher, r->kv_calls, NULL);
	if (s != NATS_OK) {
		rs_error("router: cannot watch KV calls: %s", natsStatus_GetText(s));
		return rs_nats_status(s, 0);
	}
	if (pthread_create(&r->watch_thread, NULL, rs_router_calls_watch_main, r) != 0)
		return RS_ERR;
	r->watch_started = 1;
	return rs_router_intake_start(r);
}

/* Call with r->stopping set. */
void
rs_router_calls_stop(rs_router *r)
{
	rs_consume_join(r->intake);
	if (r->watcher != NULL)
		kvWatcher_Stop(r->watcher);
	if (r->watch_started)
		pthread_join(r->watch_thread, NULL);
	kvWatcher_Destroy(r->watcher);
	r->watcher = NULL;
	r->watch_started = 0;
}

/* ---- reading a record back (the sweep) ------------------------------ */

typedef struct {
	rs_router_job j;
	uint64_t rev;
	int found;      /* 1: a record; 0: none (deleted or purged); -1: no answer */
	char *val;
	size_t len;
	char key[];
} read_job;

/* Service thread: the record as the stream leader has it. */
static void
read_done(rs_router *r, rs_router_job *jj)
{
	read_job *j = (read_job *)jj;
	rs_router_call *c = rs_router_calls_find_call(r, j->key);

	if (c == NULL)
		goto cleanup;
	c->inflight = 0;
	if (j->found < 0) {
		c->stale_at = rs_mono_ms();   /* no answer: read again later */
		goto cleanup;
	}
	c->stale = 0;
	if (j->found == 0)
		rs_router_calls_apply_record(r, j->key, c->rev, 1, NULL, 0, 1);
	else
		rs_router_calls_apply_record(r, j->key, j->rev, 0, j->val, j->len, 1);
cleanup:
	free(j->val);
	free(j);
}

/* Worker: KV calls buckets have allow_direct off on a cluster
 * (common/rs_streams.c), so this get is answered by the stream leader. */
static void
read_work(rs_router *r, rs_router_job *jj)
{
	read_job *j = (read_job *)jj;
	kvEntry *e = NULL;
	natsStatus s = kvStore_Get(&e, r->kv_calls, j->key);

	if (s == NATS_OK) {
		j->found = 1;
		j->rev = kvEntry_Revision(e);
		j->len = (size_t)kvEntry_ValueLen(e);
		j->val = rs_xmalloc(j->len + 1);
		memcpy(j->val, kvEntry_Value(e), j->len);
		j->val[j->len] = '\0';
	} else {
		j->found = s == NATS_NOT_FOUND ? 0 : -1;
	}
	kvEntry_Destroy(e);
	j->j.fn = read_done;
	rs_router_post(r, &j->j);
}

static void
start_read(rs_router *r, rs_router_call *c)
{
	size_t kl = strlen(c->key) + 1;
	read_job *j = rs_xcalloc(1, sizeof(*j) + kl);

	j->j.fn = read_work;
	memcpy(j->key, c->key, kl);
	c->inflight = 1;
	rs_warn("router: call %s: no news of the record since our CAS lost %lld ms ago; reading it back",
	        c->key, (long long)(rs_mono_ms() - c->stale_at));
	rs_router_work(r, c->key, &j->j);
}

/* Once a second. Level-triggered on purpose: every decision of this file
 * is taken on an event (a watch update, a CAS result, a device), and an
 * event lost to a NATS fault must not leave a call undelivered until its
 * deadline. So each call is decided again here, and a call whose lost CAS
 * never got its winner's record from the watch is read back. */
void
rs_router_calls_sweep(rs_router *r)
{
	rs_map_ent *e, *next;
	size_t i, ni;
	int64_t now = rs_now_ms(), mono = rs_mono_ms();

	for (i = 0, e = rs_map_next(&r->calls, &i, NULL); e != NULL; e = next, i = ni) {
		rs_router_call *c = e->val;

		ni = i;
		next = rs_map_next(&r->calls, &ni, e);
		if (c->inflight)
			continue;
		if (c->tc.deadline <= now)
			rs_router_calls_remove_call(r, c);
		else if (c->stale && mono - c->stale_at >= STALE_MS)
			start_read(r, c);
		else
			rs_router_calls_evaluate(r, c);   /* may free c */
	}
}

void
rs_router_calls_free(rs_router *r)
{
	rs_map_ent *e;
	size_t i;

	for (i = 0, e = NULL; (e = rs_map_next(&r->calls, &i, e)) != NULL;)
		rs_router_calls_call_free(e->val);
	rs_map_free(&r->calls);
}
