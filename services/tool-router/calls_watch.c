/*
 * calls_watch.c - the watch on KV `calls`: a thread follows every record
 * and posts each update to the service thread, which applies it to the
 * index of live calls (rs_router.calls), sends cancels to devices holding a
 * cancelled call, and lets calls.c claim what its devices can take.
 * Split from calls.c (see its opening comment for the design).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "calls_int.h"
#include "rs_json.h"
#include "rs_mem.h"
#include "rs_log.h"
#include "rs_time.h"

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

	rs_router_calls_apply_record(r, j->key, j->rev, j->deleted, j->key + strlen(j->key) + 1,
	                             j->len, 0);
	free(j);
}

/* A record of KV calls (from the watch, or read back from the stream
 * leader when force is set: see rs_router_calls_sweep) into the index. */
void
rs_router_calls_apply_record(rs_router *r, const char *key, uint64_t rev, int deleted,
                             const char *val, size_t len, int force)
{
	rs_router_call *c = rs_router_calls_find_call(r, key), *n;

	if (deleted) {
		if (c != NULL && c->inflight) {
			/* A CAS or create of ours is under way: its completion
			 * finds the call ended and drops it. */
			c->rev = rev;
			rs_router_calls_set_delivered(r, c, CALL_DONE, NULL, NULL, 0);
		} else if (c != NULL) {
			rs_router_calls_remove_call(r, c);
		}
		return;
	}
	rs_debug("router: record %s rev %llu%s%s (index: %s rev %llu%s)", key, (unsigned long long)rev,
	         deleted ? " deleted" : "", force ? " read back" : "", c ? "known" : "new",
	         c ? (unsigned long long)c->rev : 0ULL, c && c->inflight ? ", CAS under way" : "");
	if (c != NULL && rev <= c->rev && !force)
		return;  /* we already know better (our own CAS) */
	n = calloc(1, sizeof(*n));
	if (n == NULL)
		rs_oom(sizeof(*n));
	if (rs_router_calls_record_decode(val, len, n) != RS_OK) {
		rs_warn("router: undecodable record %s in KV calls ignored", key);
		rs_router_calls_call_free(n);
		return;
	}
	if (c == NULL) {
		if (n->state == CALL_DONE || n->state == CALL_CANCELLED || n->tc.deadline <= rs_now_ms()) {
			rs_router_calls_call_free(n);
			return;
		}
		n->key = strdup(key);
		n->rev = rev;
		if (n->key == NULL || rs_map_put(&r->calls, n->key, n) != RS_OK) {
			rs_router_calls_call_free(n);
			return;
		}
		{
			/* Count it against our device if the record says so. */
			char *dev = n->device, *rt = n->router;
			int st = n->state;
			uint64_t cn = n->conn;
			n->device = n->router = NULL;
			n->state = CALL_PENDING;
			rs_router_calls_set_delivered(r, n, st, dev, rt, cn);
			free(dev);
			free(rt);
		}
		rs_metric_inc(r->m.calls_seen);
		if (n->state == CALL_DELIVERED && n->router != NULL &&
		    strcmp(n->router, r->instance) == 0) {
			/* Recorded as ours, yet not in the index: an intake create
			 * whose ack was lost (we gave it up and never wrote the
			 * call to the device). Back to pending, claimed again. */
			rs_router_calls_start_cas(r, n, 1, NULL);
			return;
		}
		rs_router_calls_evaluate(r, n);
		return;
	}
	c->rev = rev;
	c->stale = 0;
	if (n->state == CALL_CANCELLED && c->state == CALL_DELIVERED)
		send_cancel(r, c);  /* c still names the connection it went to */
	rs_router_calls_set_delivered(r, c, n->state, n->device, n->router, n->conn);
	c->at = n->at;
	rs_router_calls_call_free(n);
	rs_router_calls_evaluate(r, c);
}

void *
rs_router_calls_watch_main(void *arg)
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
