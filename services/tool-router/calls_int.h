/*
 * calls_int.h - private to the pending-call files of the tool-router:
 * calls.c (records, commands, claims and the decisions of the service
 * thread), calls_result.c (a device's result), calls_watch.c (KV `calls`
 * into the index) and calls_take.c (TOOLCALLS into KV `calls`). Nothing
 * else includes it: the router's interface is router.h.
 *
 * It holds the call as the service thread indexes it (rs_router_call,
 * values of rs_router.calls) and the functions one file calls in another,
 * with the rs_router_calls_ prefix. calls.c's opening comment explains
 * the design (a KV record per call, every move a compare-and-set).
 */
#ifndef RS_ROUTER_CALLS_INT_H
#define RS_ROUTER_CALLS_INT_H

#include "router.h"

#define KV_CALLS_PREFIX "$KV.calls."   /* subjects of KV `calls` records */
#define ASYNC_MAX_WAIT_MS 5000           /* a publish's ack is awaited this long */

/* The states of a call's KV record. */
enum { CALL_PENDING = 0, CALL_DELIVERED, CALL_DONE, CALL_CANCELLED };

/* A live call as the service thread indexes it. */
typedef struct {
	char *key;
	json_t *callobj;    /* the tool.call as the orchestrator published it */
	rs_toolcall tc;     /* decoded from callobj */
	int state;
	char *device;       /* delivered: the device holding it */
	char *router;       /* delivered: its router instance */
	uint64_t conn;      /* delivered: the connection id on that router */
	int64_t at;         /* the record's "at": when it was written (ms, realtime) */
	uint64_t rev;       /* newest KV revision known */
	int64_t sent_us;    /* when we wrote it to a device (latency metric) */
	uint8_t inflight;   /* a CAS of ours is under way */
	uint8_t stale;      /* our CAS lost: wait for the watch before retrying */
	int64_t stale_at;   /* mono ms when it went stale: read back after STALE_MS */
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

/* ---- shared by calls*.c ---- */
char *rs_router_calls_record_encode(json_t *callobj, int state, const char *device,
                                    const char *router, uint64_t conn);
char *rs_router_calls_record_encode_done(json_t *callobj, int state, const char *device,
                                         const char *router, uint64_t conn, json_t *result);
rs_status rs_router_calls_record_decode(const char *buf, size_t len, rs_router_call *c);
void rs_router_calls_call_free(rs_router_call *c);
int rs_router_calls_sleep_retry(rs_router *r, int attempt);
void rs_router_calls_repub(rs_router *r, const char *subj, const char *body, int len,
                           const char *type, const char *msgid);
/* again != 0: a second copy, published under <msg id>-again-<again>. */
void rs_router_calls_publish_cmd(rs_router *r, const rs_cmd *c, uint64_t again);
/* A tool.call came again for a call whose record exists but that this
 * router does not follow (done, or cancelled): on a worker, read the
 * record and, if it keeps the device's answer, send tool.result again
 * under <id>-again-<seq> (seq: the TOOLCALLS message's). */
void rs_router_calls_result_again(rs_router *r, const char *key, uint64_t seq);
rs_status rs_router_calls_cas_put(rs_router *r, const char *key, const char *record, uint64_t rev,
                                  uint64_t *newrev);
rs_router_call *rs_router_calls_find_call(rs_router *r, const char *key);
void rs_router_calls_set_delivered(rs_router *r, rs_router_call *c, int state, const char *device,
                                   const char *router, uint64_t conn);
void rs_router_calls_deliver(rs_router *r, rs_router_call *c, rs_router_conn *conn);
void rs_router_calls_remove_call(rs_router *r, rs_router_call *c);
void rs_router_calls_start_cas(rs_router *r, rs_router_call *c, int release, rs_router_conn *conn);
rs_router_conn *rs_router_calls_pick_device(rs_router *r, rs_router_call *c);
void rs_router_calls_evaluate(rs_router *r, rs_router_call *c);
void *rs_router_calls_watch_main(void *arg);
void rs_router_calls_apply_record(rs_router *r, const char *key, uint64_t rev, int deleted,
                                  const char *val, size_t len, int force);
void rs_router_calls_on_puback(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae,
                               void *closure);

#endif
