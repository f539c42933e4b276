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
 *   intake (intake.c keeps a pull request on the shared durable consumer
 *     `routers` of TOOLCALLS outstanding; its subscription thread decodes
 *     here and posts to the service thread): a tool.call is claimed and
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

#include "router.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_time.h"

enum { CALL_PENDING = 0, CALL_DELIVERED, CALL_DONE, CALL_CANCELLED };
static const char *const state_names[] = { "pending", "delivered", "done", "cancelled" };

typedef struct {
	char *key;
	json_t *callobj;    /* the tool.call as the orchestrator published it */
	rs_toolcall tc;     /* decoded from callobj */
	int state;
	char *device;       /* delivered: the device holding it */
	char *router;       /* delivered: its router instance */
	uint64_t conn;      /* delivered: the connection id on that router */
	uint64_t rev;       /* newest KV revision known */
	int64_t sent_us;    /* when we wrote it to a device (latency metric) */
	uint8_t inflight;   /* a CAS of ours is under way */
	uint8_t stale;      /* our CAS lost: wait for the watch before retrying */
	uint8_t answered;   /* a result arrived here: ignore further ones */
	uint64_t sent_conn; /* the connection we wrote the call to (0: none yet) */
	int64_t retry_at;   /* mono ms: a CAS of ours ended without an answer
	                     * (timeout, no JetStream leader): evaluate again then */
	/* intake create in flight (inflight set): the TOOLCALLS message to
	 * settle and the connection (and its device) it was claimed for */
	char *reply;
	int64_t stored_ns;  /* when TOOLCALLS stored it (intake latency metric) */
	uint64_t claim_conn;
	char *claim_dev;
} rs_router_call;

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

/* {"call":{...},"state":"...","device":..,"router":..,"conn":N,"at":ms} */
static char *
record_encode(json_t *callobj, int state, const char *device, const char *router,
              uint64_t conn)
{
	json_t *o = json_pack("{s:O, s:s, s:I}", "call", callobj, "state", state_names[state],
	                      "at", (json_int_t)rs_now_ms());
	char *s = NULL;

	if (o == NULL)
		return NULL;
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
static rs_status
record_decode(const char *buf, size_t len, rs_router_call *c)
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
	st = RS_OK;
cleanup:
	free(calls);
	json_decref(o);
	return st;
}

static void
call_free(rs_router_call *c)
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

static int
sleep_retry(rs_router *r, int attempt)
{
	if (atomic_load(&r->stopping) && attempt > 2)
		return 0;
	usleep((useconds_t)(50000 << (attempt < 5 ? attempt : 5)));
	return attempt < 8;
}

#define KV_CALLS_PREFIX "$KV.calls."
#define ASYNC_MAX_WAIT_MS 5000
#define RETRY_MS 500   /* an unanswered CAS is tried again after this */

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
		if (st == RS_OK || !sleep_retry(r, attempt))
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

static void
repub(rs_router *r, const char *subj, const char *body, int len, const char *type,
      const char *msgid)
{
	size_t sl = strlen(subj) + 1, tl = strlen(type) + 1, ml = strlen(msgid) + 1;
	repub_job *j = malloc(sizeof(*j) + sl + tl + ml + (size_t)len + 1);

	if (j == NULL)
		abort();
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
static void
publish_cmd(rs_router *r, const rs_cmd *c)
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
	jsPubOptions_Init(&po);
	po.MsgId = msgid;
	po.MaxWait = ASYNC_MAX_WAIT_MS;
	if (rs_nats_msg(&m, subj, body, (int)len, "Runstream-Type", type, NULL) != RS_OK ||
	    js_PublishMsgAsync(r->nats.js, &m, &po) != NATS_OK) {
		natsMsg_Destroy(m);
		repub(r, subj, body, (int)len, type, msgid);
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
static void evaluate(rs_router *r, rs_router_call *c);

/* A compare-and-set of a call's record at revision rev (what
 * kvStore_Update sends), telling a lost race (RS_ECONFLICT: another write
 * won) from no answer (RS_ETIMEOUT, RS_EUNAVAIL...: during a JetStream
 * leader election the write may or may not have landed). */
static rs_status
cas_put(rs_router *r, const char *key, const char *record, uint64_t rev, uint64_t *newrev)
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
	rs_status st = cas_put(r, j->key, j->record, j->rev, &rev);

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
	 * tool.delivered (deliver()). */
	j->j.fn = claim_done;
	rs_router_post(r, &j->j);
}

static rs_router_call *
find_call(rs_router *r, const char *key)
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
static void
set_delivered(rs_router *r, rs_router_call *c, int state, const char *device,
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
static void
deliver(rs_router *r, rs_router_call *c, rs_router_conn *conn)
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
	publish_cmd(r, &cmd);
	frame = rs_router_frame_call(&c->tc);
	if (frame != NULL) {
		rs_router_conn_send(r, conn, frame, strlen(frame));
		free(frame);
		c->sent_us = rs_mono_us();
		c->sent_conn = conn->id;
		rs_metric_inc(r->m.calls_delivered);
	}
}

static void
remove_call(rs_router *r, rs_router_call *c)
{
	set_delivered(r, c, CALL_DONE, NULL, NULL, 0);
	rs_map_take(&r->calls, c->key);
	call_free(c);
}

/* Service thread: the CAS result came back. */
static void
claim_done(rs_router *r, rs_router_job *jj)
{
	cas_job *j = (cas_job *)jj;
	rs_router_call *c = find_call(r, j->key);
	rs_router_conn *conn = j->release ? NULL : rs_router_conn_find(r, j->conn);

	if (conn != NULL && conn->dev != NULL && conn->dev->claiming > 0)
		conn->dev->claiming--;
	if (c == NULL)
		goto cleanup;  /* finished or expired meanwhile */
	c->inflight = 0;
	if (!j->ok && j->conflict) {
		c->stale = 1;  /* the watch brings the winner's state */
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
			set_delivered(r, c, CALL_PENDING, NULL, NULL, 0);
		else
			set_delivered(r, c, CALL_DELIVERED, j->device, r->instance, j->conn);
	}
	if (j->release) {
		evaluate(r, c);
		goto cleanup;
	}
	if (conn == NULL || conn->dev == NULL || conn->state != RS_CONN_READY ||
	    c->state != CALL_DELIVERED || c->conn != j->conn) {
		/* The device left while we claimed (give the call back), or the
		 * call ended meanwhile (drop it). */
		evaluate(r, c);
		goto cleanup;
	}
	deliver(r, c, conn);
cleanup:
	free(j);
}

/* ---- deciding (service thread) -------------------------------------- */

static void
start_cas(rs_router *r, rs_router_call *c, int release, rs_router_conn *conn)
{
	char *rec;
	cas_job *j;

	if (release)
		rec = record_encode(c->callobj, CALL_PENDING, NULL, NULL, 0);
	else
		rec = record_encode(c->callobj, CALL_DELIVERED, conn->dev->device_id, r->instance,
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
static rs_router_conn *
pick_device(rs_router *r, rs_router_call *c)
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
static void
evaluate(rs_router *r, rs_router_call *c)
{
	rs_router_conn *conn;

	if (c->inflight || c->stale || c->retry_at > rs_mono_ms())
		return;
	c->retry_at = 0;
	if (c->state == CALL_DONE || c->state == CALL_CANCELLED ||
	    c->tc.deadline <= rs_now_ms()) {
		remove_call(r, c);
		return;
	}
	if (c->state == CALL_DELIVERED) {
		if (c->router == NULL || strcmp(c->router, r->instance) != 0)
			return;
		/* Ours, but its connection is gone: back to pending. */
		if ((conn = rs_router_conn_find(r, c->conn)) == NULL || conn->state != RS_CONN_READY)
			start_cas(r, c, 1, NULL);
		/* Ours on a live connection, yet never written to it: a write
		 * of ours that landed though its answer was lost (a timed-out
		 * CAS or create, learnt from the watch). The record is the
		 * ownership, so the call is this connection's: deliver it. */
		else if (c->sent_conn != c->conn && !c->answered)
			deliver(r, c, conn);
		return;
	}
	if (c->answered)
		return;
	conn = pick_device(r, c);
	if (conn != NULL)
		start_cas(r, c, 0, conn);
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
		c->stale = 0;
		if (c->tc.deadline <= rs_now_ms())
			remove_call(r, c);
		else
			start_cas(r, c, 0, conn);
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
		evaluate(r, todo[i]);  /* conn already unregistered: releases */
	free(todo);
}

/* ---- results -------------------------------------------------------- */

typedef struct {
	rs_router_job j;
	uint64_t rev;
	char *key, *record, *run_id, *tenant, *call_id, *device, *body;
	int is_error;
	char data[];
} result_job;

/* Worker: CAS the record to done, then publish the tool.result command.
 * The CAS comes first so that two results (two devices, a duplicate after
 * redelivery, a result racing a cancel) yield at most one command. */
static void
result_work(rs_router *r, rs_router_job *jj)
{
	result_job *j = (result_job *)jj;
	char *record = j->record[0] ? strdup(j->record) : NULL;
	char run_id[40];
	uint64_t rev = j->rev;
	kvEntry *e = NULL;
	int won = 0, unanswered = 0;
	json_t *body = NULL;
	rs_cmd c;
	char err[200];

	snprintf(run_id, sizeof(run_id), "%s", j->run_id);
	for (int attempt = 0; attempt < 6 && !won; attempt++) {
		if (record == NULL) {
			rs_router_call cur;
			natsStatus s = kvStore_Get(&e, r->kv_calls, j->key);

			if (s != NATS_OK && s != NATS_NOT_FOUND && sleep_retry(r, attempt))
				continue;   /* no answer (a leader election): read again */
			if (s != NATS_OK) {
				rs_debug("router: result for unknown call %s ignored", j->call_id);
				goto cleanup;
			}
			memset(&cur, 0, sizeof(cur));
			if (unanswered && record_decode(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &cur) == RS_OK &&
			    cur.state == CALL_DONE && cur.device != NULL && strcmp(cur.device, j->device) == 0 &&
			    cur.router != NULL && strcmp(cur.router, r->instance) == 0) {
				/* Our own write of this job, whose answer was lost:
				 * won. (Or a second result of the device taken here
				 * that won meanwhile: its tool.result has the same
				 * Nats-Msg-Id, result-<call_id>, and is de-duplicated.) */
				won = 1;
				snprintf(run_id, sizeof(run_id), "%s", cur.tc.run_id);
			}
			if (won || unanswered) {
				rs_toolcall_free(&cur.tc);
				json_decref(cur.callobj);
				free(cur.device);
				free(cur.router);
				memset(&cur, 0, sizeof(cur));
			}
			if (won)
				break;
			if (record_decode(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), &cur) != RS_OK ||
			    cur.state == CALL_DONE || cur.state == CALL_CANCELLED ||
			    !((cur.device && strcmp(cur.device, j->device) == 0) ||
			      (cur.tc.device && strcmp(cur.tc.device, j->device) == 0))) {
				rs_metric_inc(r->m.results_ignored);
				rs_debug("router: result for call %s ignored (answered, cancelled or not this device's)",
				         j->call_id);
				rs_toolcall_free(&cur.tc);
				json_decref(cur.callobj);
				free(cur.device);
				free(cur.router);
				goto cleanup;
			}
			rev = kvEntry_Revision(e);
			snprintf(run_id, sizeof(run_id), "%s", cur.tc.run_id);
			record = record_encode(cur.callobj, CALL_DONE, j->device, r->instance, 0);
			rs_toolcall_free(&cur.tc);
			json_decref(cur.callobj);
			free(cur.device);
			free(cur.router);
			kvEntry_Destroy(e);
			e = NULL;
			if (record == NULL)
				goto cleanup;
		}
		{
			rs_status st = cas_put(r, j->key, record, rev, NULL);

			if (st == RS_OK) {
				won = 1;
			} else {
				/* Read it again: a newer revision (lost race, or our
				 * own write whose answer was lost), or a retry. */
				if (st != RS_ECONFLICT) {
					/* Sticky: a follower answering the read
					 * below may not show our write yet. */
					unanswered = 1;
					if (!sleep_retry(r, attempt))
						attempt = 6;   /* stopping: give up */
				}
				free(record);
				record = NULL;
			}
		}
	}
	if (!won)
		goto cleanup;
	memset(&c, 0, sizeof(c));
	c.type = RS_CMD_TOOL_RESULT;
	snprintf(c.run_id, sizeof(c.run_id), "%s", run_id);
	snprintf(c.tenant, sizeof(c.tenant), "%s", j->tenant);
	c.call_id = j->call_id;
	c.device_id = j->device;
	if (rs_json_parse(j->body, strlen(j->body), &body, err, sizeof(err)) != RS_OK)
		goto cleanup;
	if (j->is_error) {
		json_t *rt = json_object_get(body, "retryable");
		c.has_error = 1;
		c.error.code = (char *)json_string_value(json_object_get(body, "code"));
		c.error.message = (char *)json_string_value(json_object_get(body, "message"));
		c.error.retryable = json_is_true(rt);
		c.error.cls = c.error.retryable ? RS_ERRCLASS_TRANSIENT : RS_ERRCLASS_PERMANENT;
	} else {
		c.output = body;
	}
	publish_cmd(r, &c);
	rs_metric_inc(r->m.results);
cleanup:
	json_decref(body);
	kvEntry_Destroy(e);
	free(record);
	free(j);
}

void
rs_router_calls_result(rs_router *r, rs_router_conn *conn, const rs_router_frame *f)
{
	char key[200];
	rs_router_call *c;
	char *rec = NULL, *body;
	const char *src[7];
	size_t n = 0, off = 0;
	result_job *j;
	char **dst[7];
	const rs_router_device *d = conn->dev;

	rs_router_call_key(d->tenant, f->call_id, key, sizeof(key));
	c = find_call(r, key);
	if (c != NULL) {
		if (c->answered || c->state == CALL_DONE || c->state == CALL_CANCELLED ||
		    !((c->device && strcmp(c->device, d->device_id) == 0) ||
		      (c->tc.device && strcmp(c->tc.device, d->device_id) == 0))) {
			rs_metric_inc(r->m.results_ignored);
			rs_debug("router: result for call %s from %s ignored", f->call_id, d->key);
			return;
		}
		c->answered = 1;
		if (c->sent_us != 0)
			rs_metric_observe(r->m.deliver_latency, (double)(rs_mono_us() - c->sent_us) / 1e6);
		/* Our view may be stale (inflight CAS, watch lag): then the
		 * worker reads the record itself. */
		if (!c->inflight && !c->stale)
			rec = record_encode(c->callobj, CALL_DONE, d->device_id, r->instance, 0);
	}
	body = json_dumps(f->error ? f->error : f->output, JSON_COMPACT | JSON_ENCODE_ANY);
	if (body == NULL)
		goto cleanup;
	src[0] = key; src[1] = rec ? rec : ""; src[2] = c ? c->tc.run_id : "";
	src[3] = d->tenant; src[4] = f->call_id; src[5] = d->device_id; src[6] = body;
	for (int i = 0; i < 7; i++)
		n += strlen(src[i]) + 1;
	j = calloc(1, sizeof(*j) + n);
	if (j == NULL)
		goto cleanup;
	dst[0] = &j->key; dst[1] = &j->record; dst[2] = &j->run_id; dst[3] = &j->tenant;
	dst[4] = &j->call_id; dst[5] = &j->device; dst[6] = &j->body;
	for (int i = 0; i < 7; i++) {
		size_t l = strlen(src[i]) + 1;
		*dst[i] = j->data + off;
		memcpy(j->data + off, src[i], l);
		off += l;
	}
	j->j.fn = result_work;
	j->rev = rec ? c->rev : 0;
	j->is_error = f->error != NULL;
	rs_router_work(r, key, &j->j);
cleanup:
	free(body);
	free(rec);
}

/* ---- the watch: KV calls -> index (service thread) ------------------- */

typedef struct {
	rs_router_job j;
	uint64_t rev;
	int deleted;
	size_t len;
	char *key;
	char data[];    /* key\0 value */
} watch_job;

static void
send_cancel(rs_router *r, rs_router_call *c)
{
	rs_router_conn *conn;
	char *frame;

	if (c->router == NULL || strcmp(c->router, r->instance) != 0)
		return;
	conn = rs_router_conn_find(r, c->conn);
	if (conn == NULL || conn->state != RS_CONN_READY)
		return;
	frame = rs_router_frame_cancel(c->tc.call_id);
	if (frame != NULL) {
		rs_router_conn_send(r, conn, frame, strlen(frame));
		free(frame);
	}
}

static void
watch_apply(rs_router *r, rs_router_job *jj)
{
	watch_job *j = (watch_job *)jj;
	rs_router_call *c = find_call(r, j->key), *n;

	if (j->deleted) {
		if (c != NULL && c->inflight) {
			/* A CAS or create of ours is under way: its completion
			 * finds the call ended and drops it. */
			c->rev = j->rev;
			set_delivered(r, c, CALL_DONE, NULL, NULL, 0);
		} else if (c != NULL) {
			remove_call(r, c);
		}
		goto cleanup;
	}
	if (c != NULL && j->rev <= c->rev)
		goto cleanup;  /* we already know better (our own CAS) */
	n = calloc(1, sizeof(*n));
	if (n == NULL)
		goto cleanup;
	if (record_decode(j->key + strlen(j->key) + 1, j->len, n) != RS_OK) {
		rs_warn("router: undecodable record %s in KV calls ignored", j->key);
		call_free(n);
		goto cleanup;
	}
	if (c == NULL) {
		if (n->state == CALL_DONE || n->state == CALL_CANCELLED || n->tc.deadline <= rs_now_ms()) {
			call_free(n);
			goto cleanup;
		}
		n->key = strdup(j->key);
		n->rev = j->rev;
		if (n->key == NULL || rs_map_put(&r->calls, n->key, n) != RS_OK) {
			call_free(n);
			goto cleanup;
		}
		{
			/* Count it against our device if the record says so. */
			char *dev = n->device, *rt = n->router;
			int st = n->state;
			uint64_t cn = n->conn;
			n->device = n->router = NULL;
			n->state = CALL_PENDING;
			set_delivered(r, n, st, dev, rt, cn);
			free(dev);
			free(rt);
		}
		rs_metric_inc(r->m.calls_seen);
		if (n->state == CALL_DELIVERED && n->router != NULL &&
		    strcmp(n->router, r->instance) == 0) {
			/* Recorded as ours, yet not in the index: an intake create
			 * whose ack was lost (we gave it up and never wrote the
			 * call to the device). Back to pending, claimed again. */
			start_cas(r, n, 1, NULL);
			goto cleanup;
		}
		evaluate(r, n);
		goto cleanup;
	}
	c->rev = j->rev;
	c->stale = 0;
	if (n->state == CALL_CANCELLED && c->state == CALL_DELIVERED)
		send_cancel(r, c);  /* c still names the connection it went to */
	set_delivered(r, c, n->state, n->device, n->router, n->conn);
	call_free(n);
	evaluate(r, c);
cleanup:
	free(j);
}

static void *
watch_main(void *arg)
{
	rs_router *r = arg;
	kvEntry *e = NULL;
	natsStatus s;

	while (!atomic_load(&r->stopping)) {
		s = kvWatcher_Next(&e, r->watcher, 500);
		if (s == NATS_TIMEOUT) {
			continue;
		}
		if (s != NATS_OK) {
			if (!atomic_load(&r->stopping))
				rs_error("router: KV calls watch ended: %s", natsStatus_GetText(s));
			break;
		}
		if (e == NULL) {
			atomic_store(&r->watch_synced, 1);
			rs_info("router: call index loaded");
			continue;
		}
		{
			const char *key = kvEntry_Key(e);
			int len = kvEntry_ValueLen(e);
			size_t kl = strlen(key);
			watch_job *j = malloc(sizeof(*j) + kl + 1 + (size_t)len + 1);

			if (j != NULL) {
				j->j.fn = watch_apply;
				j->rev = kvEntry_Revision(e);
				j->deleted = kvEntry_Operation(e) != kvOp_Put;
				j->len = (size_t)len;
				j->key = j->data;
				memcpy(j->data, key, kl + 1);
				if (len > 0)
					memcpy(j->data + kl + 1, kvEntry_Value(e), (size_t)len);
				j->data[kl + 1 + (size_t)len] = '\0';
				rs_router_post(r, &j->j);
			}
		}
		kvEntry_Destroy(e);
		e = NULL;
	}
	return NULL;
}

/* ---- intake: TOOLCALLS -> KV calls (intake thread) ------------------ */

static char *
cancel_record(const char *payload, int len)
{
	json_t *o = NULL;
	char err[200], *rec = NULL;

	if (rs_json_parse(payload, (size_t)len, &o, err, sizeof(err)) == RS_OK)
		rec = record_encode(o, CALL_CANCELLED, NULL, NULL, 0);
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

	rs_router_intake_settle(r, j->reply, intake_cancel(r, j->key, j->payload, j->len) == RS_OK
	                                             ? RS_SETTLE_ACK : RS_SETTLE_NAK);
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
	char err[256], key[200];
	rs_router_call *c;
	take_job *tj;

	if (rs_toolcall_decode(data, (size_t)len, &tc, err, sizeof(err)) != RS_OK) {
		rs_dlq_publish(r->nats.js, "tool-router", natsMsg_GetSubject(m),
		               rs_router_intake_stream_seq(reply), data, len, err);
		rs_router_intake_settle(r, reply, RS_SETTLE_TERM);
		goto cleanup;
	}
	rs_router_call_key(tc.tenant, tc.call_id, key, sizeof(key));
	if (tc.cancel) {
		size_t kl = strlen(key) + 1, rl = strlen(reply) + 1;
		cancel_job *j = malloc(sizeof(*j) + kl + rl + (size_t)len + 1);

		if (j == NULL)
			abort();
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
		abort();
	c->tc = tc;
	c->key = strdup(key);
	c->reply = strdup(reply);
	c->stored_ns = rs_router_intake_stored_ns(reply);
	if (c->key == NULL || c->reply == NULL)
		abort();
	if (rs_json_parse(data, (size_t)len, &c->callobj, err, sizeof(err)) != RS_OK) {
		/* rs_toolcall_decode read it: cannot happen. */
		rs_router_intake_settle(r, reply, RS_SETTLE_TERM);
		call_free(c);
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
	rs_router_call *n = tj->c, *c = find_call(r, n->key);
	rs_router_conn *conn = NULL;
	char *rec;

	free(tj);
	if (atomic_load(&r->stopping)) {
		/* No device will get it from us now: to another router. */
		rs_router_intake_settle(r, n->reply, RS_SETTLE_NAK);
		call_free(n);
		return;
	}
	if (c != NULL) {
		/* Known: its record exists (the watch showed it: ack), or our
		 * create for an earlier delivery of this message is still in
		 * flight (that one settles; this copy comes back later). */
		rs_router_intake_settle(r, n->reply, c->rev > 0 ? RS_SETTLE_ACK : RS_SETTLE_NAK);
		call_free(n);
		return;
	}
	if (n->tc.deadline > rs_now_ms())
		conn = pick_device(r, n);
	rec = conn != NULL ? record_encode(n->callobj, CALL_DELIVERED, conn->dev->device_id,
	                                   r->instance, conn->id)
	                   : record_encode(n->callobj, CALL_PENDING, NULL, NULL, 0);
	if (rec == NULL || rs_map_put(&r->calls, n->key, n) != RS_OK)
		abort();
	rs_metric_inc(r->m.calls_seen);
	n->state = CALL_PENDING;
	n->inflight = 1;
	if (conn != NULL) {
		n->claim_conn = conn->id;
		n->claim_dev = strdup(conn->dev->device_id);
		if (n->claim_dev == NULL)
			abort();
		conn->dev->claiming++;
	}
	if (create_async(r, n->key, rec) != RS_OK) {
		rs_warn("router: cannot write KV calls %s now; the call comes back in 500 ms", n->key);
		rs_router_intake_settle(r, n->reply, RS_SETTLE_NAK);
		if (conn != NULL && conn->dev->claiming > 0)
			conn->dev->claiming--;
		rs_map_take(&r->calls, n->key);
		call_free(n);
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
	rs_router_call *c = find_call(r, j->key);
	rs_router_conn *conn;
	uint64_t cid;

	if (c == NULL || c->reply == NULL) {
		free(j);
		return;   /* cannot happen: an intake create keeps its call in the index */
	}
	rs_router_intake_settle(r, c->reply, j->ok || j->exists ? RS_SETTLE_ACK : RS_SETTLE_NAK);
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
			remove_call(r, c);
		else
			evaluate(r, c);
		goto cleanup;
	}
	if (j->rev > c->rev) {
		/* Before the watch's echo of it. */
		c->rev = j->rev;
		c->stale = 0;
		if (cid != 0)
			set_delivered(r, c, CALL_DELIVERED, c->claim_dev, r->instance, cid);
	}
	if (cid != 0 && conn != NULL && conn->dev != NULL && conn->state == RS_CONN_READY &&
	    c->state == CALL_DELIVERED && c->conn == cid && c->router != NULL &&
	    strcmp(c->router, r->instance) == 0) {
		deliver(r, c, conn);
		if (c->stored_ns > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			rs_metric_observe(r->m.intake_latency,
			                  (double)((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - c->stored_ns) / 1e9);
		}
	} else
		evaluate(r, c);   /* the device left (release), or pending, or ended */
cleanup:
	free(j);
}

/* nats.c's async-publish ack thread: every js_PublishMsgAsync of ours. */
static void
on_puback(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	rs_router *r = closure;
	const char *subj = natsMsg_GetSubject(m);

	(void)js;
	if (strncmp(subj, KV_CALLS_PREFIX, strlen(KV_CALLS_PREFIX)) == 0) {
		const char *key = subj + strlen(KV_CALLS_PREFIX);
		size_t kl = strlen(key) + 1;
		create_job *j = malloc(sizeof(*j) + kl);

		if (j == NULL)
			abort();
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
			repub(r, subj, natsMsg_GetData(m), natsMsg_GetDataLength(m), type, msgid);
	}
	natsMsg_Destroy(m);
}

void
rs_router_calls_jsopts(rs_router *r, jsOptions *jo)
{
	jo->PublishAsync.AckHandler = on_puback;
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
	if (pthread_create(&r->watch_thread, NULL, watch_main, r) != 0)
		return RS_ERR;
	r->watch_started = 1;
	return rs_router_intake_start(r);
}

/* Call with r->stopping set. */
void
rs_router_calls_stop(rs_router *r)
{
	rs_router_intake_stop(r);
	if (r->watcher != NULL)
		kvWatcher_Stop(r->watcher);
	if (r->watch_started)
		pthread_join(r->watch_thread, NULL);
	kvWatcher_Destroy(r->watcher);
	r->watcher = NULL;
	r->watch_started = 0;
}

void
rs_router_calls_sweep(rs_router *r)
{
	rs_map_ent *e, *next;
	size_t i, ni;
	int64_t now = rs_now_ms();

	for (i = 0, e = rs_map_next(&r->calls, &i, NULL); e != NULL; e = next, i = ni) {
		rs_router_call *c = e->val;

		ni = i;
		next = rs_map_next(&r->calls, &ni, e);
		if (!c->inflight && c->tc.deadline <= now)
			remove_call(r, c);
		else if (c->retry_at != 0 && c->retry_at <= rs_mono_ms())
			evaluate(r, c);   /* a CAS that went unanswered */
	}
}

void
rs_router_calls_free(rs_router *r)
{
	rs_map_ent *e;
	size_t i;

	for (i = 0, e = NULL; (e = rs_map_next(&r->calls, &i, e)) != NULL;)
		call_free(e->val);
	rs_map_free(&r->calls);
}
