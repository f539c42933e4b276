/*
 * router.h - the tool-router's shared state and the interfaces between its
 * files (design: docs/devices.md, "Router architecture").
 *
 * Threads and who owns what:
 *   - the lws service thread (main) owns every lws object, every
 *     rs_router_conn and rs_router_device, the call index (calls.c) and the
 *     token cache (auth.c). Nothing else touches them.
 *   - worker threads (rs_router_workers) run blocking NATS work: KV
 *     compare-and-set, synchronous JetStream publishes, token look-ups. They
 *     receive self-contained jobs (copies, never pointers into lws state)
 *     and report back by posting a job to the inbox.
 *   - the intake (calls_take.c) reads TOOLCALLS through common/rs_consume.c
 *     in its overlapping mode: a keeper thread keeps up to three pull
 *     requests outstanding, the messages arrive on a NATS subscription
 *     thread, which decodes them and posts them to the service thread.
 *   - nats.c's async-publish ack thread reports KV creates and CMDS
 *     publishes (calls.c) by posting to the inbox.
 *   - the watch thread (calls.c) follows KV `calls` and posts updates.
 * The inbox is drained on the service thread in
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED (posting calls lws_cancel_service).
 */
#ifndef RS_ROUTER_H
#define RS_ROUTER_H

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "rs_cmd.h"
#include "rs_consume.h"
#include "rs_map.h"
#include "rs_metrics.h"
#include "rs_nats.h"
#include "rs_ops.h"
#include "rs_service.h"
#include "rs_status.h"
#include "protocol.h"

#define RS_ROUTER_SUBPROTOCOL "runstream.device.v1"
#define RS_ROUTER_PATH "/v1/devices/connect"
#define RS_ROUTER_MAX_WORKERS 16

typedef struct rs_router rs_router;

/* ---- jobs (queue.c) ------------------------------------------------- */

/* A unit of work posted to a worker or to the inbox. Concrete jobs embed
 * this as their first member; fn owns the job and frees (or re-posts) it. */
typedef struct rs_router_job rs_router_job;
typedef void (*rs_router_job_fn)(rs_router *r, rs_router_job *j);
struct rs_router_job {
	rs_router_job *next;
	rs_router_job_fn fn;
};

typedef struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	rs_router_job *head, *tail;
	int closed;
} rs_router_queue;

void rs_router_queue_init(rs_router_queue *q);
void rs_router_queue_destroy(rs_router_queue *q); /* frees jobs left (free()) */
void rs_router_queue_push(rs_router_queue *q, rs_router_job *j);
/* Take everything queued (FIFO linked list) without waiting. */
rs_router_job *rs_router_queue_take_all(rs_router_queue *q);
/* Wait for one job; NULL once closed and empty. */
rs_router_job *rs_router_queue_pop(rs_router_queue *q);
void rs_router_queue_close(rs_router_queue *q);

/* Post a job to be run on the lws service thread, and wake it. */
void rs_router_post(rs_router *r, rs_router_job *j);
/* Post a job to a worker chosen by key: jobs with the same key run in
 * order on the same worker (delivered before result, put before delete). */
void rs_router_work(rs_router *r, const char *key, rs_router_job *j);

/* ---- devices and connections (ws.c) --------------------------------- */

/* An authenticated device on one of our connections. */
typedef struct rs_router_device {
	char *key;        /* "<tenant>.<device_id>" (presence key, devices map key) */
	char *tenant, *device_id; /* point into key's copy `ids` below */
	char *tools;      /* compact JSON array as given in hello (for presence) */
	char *names;      /* tool names, NUL-separated, empty name ends the list */
	int64_t connected_at;
	uint32_t pending; /* calls delivered and unanswered: capability spread */
	uint32_t claiming; /* claims under way (counted like pending) */
	uint64_t conn_id;
	char token[65];   /* sha256 hex of the token it authenticated with
	                   * (revoke.c closes the connection when it is revoked) */
	char ids[];       /* tenant\0device_id\0 */
} rs_router_device;

/* One WebSocket connection (lws per-session data: kept small, it is the
 * memory of an idle device). */
typedef struct rs_router_out {
	struct rs_router_out *next;
	size_t len;
	unsigned char buf[]; /* LWS_PRE headroom + payload */
} rs_router_out;

enum { RS_CONN_HELLO = 0, RS_CONN_AUTH, RS_CONN_READY, RS_CONN_CLOSING };

typedef struct rs_router_conn {
	struct lws *wsi;
	uint64_t id;
	struct rs_router_conn *prev, *next; /* all connections (heartbeat sweep) */
	rs_router_device *dev;              /* after welcome */
	rs_router_out *outq, *outq_tail;
	char *rx;                           /* partial message being assembled */
	size_t rx_len;
	size_t prehello;                    /* bytes received before welcome */
	uint16_t close_code;                /* close after the queue is flushed */
	uint8_t state, missed_pongs, bad_frames, ping_due;
} rs_router_conn;

/* Queue a text frame (copied) to c and ask for writeability. */
void rs_router_conn_send(rs_router *r, rs_router_conn *c, const char *frame, size_t len);
/* Send an error frame, then close with code (0: keep the connection). */
void rs_router_conn_error(rs_router *r, rs_router_conn *c, const char *code,
                          const char *message, uint16_t close_code);
/* Authenticated: attach the device to c, answer welcome, announce presence
 * and deliver what waits for it. tools: compact JSON array; names as
 * rs_router_tool_names (names_len bytes incl. the final empty name). */
void rs_router_conn_accept(rs_router *r, rs_router_conn *c, const char *tenant,
                           const char *device_id, const char *tools,
                           const char *names, size_t names_len);
/* Connection by id (NULL when gone). */
rs_router_conn *rs_router_conn_find(rs_router *r, uint64_t id);

extern const struct lws_protocols rs_router_protocols[];

/* ---- the router ----------------------------------------------------- */

struct rs_router {
	/* configuration (main.c) */
	const char *instance;
	const char *listen_addr;
	int port;
	int heartbeat_s;
	size_t max_frame;
	int max_bad_frames;
	size_t max_prehello;         /* RS_ROUTER_MAX_PREHELLO_BYTES */
	int hello_timeout_s;         /* RS_ROUTER_HELLO_TIMEOUT_S */
	int max_devices_tenant;      /* RS_ROUTER_MAX_DEVICES_PER_TENANT (0: off) */
	int nworkers;
	int64_t pull_expires_ms;     /* RS_ROUTER_PULL_EXPIRES_MS (the intake) */
	rs_ops ops;

	rs_nats nats;
	kvStore *kv_calls, *kv_presence, *kv_tokens;

	struct lws_context *ctx;
	atomic_int stopping;

	rs_router_queue inbox;
	rs_router_queue workq[RS_ROUTER_MAX_WORKERS];
	pthread_t workers[RS_ROUTER_MAX_WORKERS];

	/* service-thread state */
	uint64_t next_conn_id;
	rs_router_conn *conns;       /* list head */
	rs_map conns_by_id;   /* decimal id -> conn */
	rs_map devices;       /* device key -> conn */
	rs_map calls;         /* KV key -> rs_router_call (calls.c) */
	rs_map tokens;        /* sha256 hex -> cached token (auth.c) */
	rs_map revoked;       /* sha256 hex -> revoked at (mono ms), recent (auth.c) */
	rs_map tenant_conns;  /* tenant -> connections with a device (count) */
	lws_sorted_usec_list_t sul_heartbeat, sul_sweep, sul_presence;

	/* calls.c threads */
	rs_consume *intake;          /* TOOLCALLS/routers (calls_take.c) */
	pthread_t watch_thread;
	int watch_started;
	kvWatcher *watcher;
	atomic_int watch_synced;     /* initial values of KV calls loaded */

	/* revoke.c thread: follows KV devtokens deletions */
	pthread_t revoke_thread;
	int revoke_started;
	kvWatcher *tok_watcher;

	struct {
		rs_metric *devices, *connections, *frames_in, *frames_out, *bad_frames,
		          *auth_ok, *auth_fail, *calls_seen, *calls_delivered,
		          *results, *results_ignored, *results_again, *claim_conflicts, *dropped_heartbeat,
		          *oversize, *deliver_latency, *prehello_refused, *tenant_refused,
		          *intake_latency;
	} m;

	char intake_inbox[128];      /* the intake's requests reply to <inbox>.<n> */
};

/* ops.c */
void rs_router_metrics_init(rs_router *r);
int rs_router_ready(void *arg, char *why, size_t cap);

/* auth.c: verify a hello (token, device id) and answer welcome or error. */
void rs_router_auth_hello(rs_router *r, rs_router_conn *c, const rs_router_frame *hello);
void rs_router_auth_free(rs_router *r);
/* Service thread: token sum was revoked (deleted from KV devtokens): drop
 * it from the cache, refuse a look-up of it still in flight, and close the
 * connections it authenticated. Returns how many were closed. */
int rs_router_auth_revoke(rs_router *r, const char *sum);

/* revoke.c: a thread watching KV devtokens; each deletion or purge reaches
 * rs_router_auth_revoke on the service thread. */
rs_status rs_router_revoke_start(rs_router *r);
void rs_router_revoke_stop(rs_router *r);   /* call with r->stopping set */

/* presence.c */
void rs_router_presence_put(rs_router *r, const rs_router_device *d, uint64_t conn_id);
void rs_router_presence_del(rs_router *r, const rs_router_device *d, uint64_t conn_id);
void rs_router_presence_refresh(rs_router *r); /* every device, periodically */

/* calls_take.c: the pull consumer TOOLCALLS/routers (common/rs_consume.c,
 * overlapping mode). Every message goes to rs_router_calls_take on the
 * subscription's thread. */
rs_status rs_router_intake_start(rs_router *r);   /* r->intake; rs_consume_join it with
                                                  * r->stopping set, rs_consume_free it
                                                  * after the NATS connection is closed */

/* calls.c */
/* jsOptions for the router's connection: async publishes (KV creates of the
 * intake, tool.delivered and tool.result commands) report to calls.c. */
void rs_router_calls_jsopts(rs_router *r, jsOptions *jo);
rs_status rs_router_calls_start(rs_router *r);   /* intake + watch */
/* Intake (subscription thread): a TOOLCALLS message; takes m. */
void rs_router_calls_take(rs_router *r, natsMsg *m);
void rs_router_calls_stop(rs_router *r);
void rs_router_calls_device_up(rs_router *r, rs_router_conn *c);
void rs_router_calls_device_down(rs_router *r, rs_router_conn *c);
/* A tool.result frame from c (f->type RS_FRAME_RESULT; borrowed). */
void rs_router_calls_result(rs_router *r, rs_router_conn *c, const rs_router_frame *f);
void rs_router_calls_sweep(rs_router *r);        /* drop calls past deadline */
void rs_router_calls_free(rs_router *r);
/* The KV key of a call: "<tenant>.<call_id>", call_id hashed when it has
 * characters KV keys do not allow. Pure; buf >= 160 bytes. */
void rs_router_call_key(const char *tenant, const char *call_id, char *buf, size_t cap);

/* ws.c: the lws context and its service loop (main thread) */
rs_status rs_router_ws_start(rs_router *r);
void rs_router_ws_run(rs_router *r);   /* until r->stopping */
void rs_router_ws_stop(rs_router *r);  /* closes every connection */

/* queue.c: worker threads (main.c starts them) */
rs_status rs_router_workers_start(rs_router *r);
void rs_router_workers_stop(rs_router *r);

/* ---- service.c: settings and the hooks of common/rs_service.c ---- */
extern const char *const rs_router_required[];   /* streams and buckets needed */
rs_status rs_router_service_configure(rs_service *s);
void rs_router_service_js_options(rs_service *s, jsOptions *jo);
rs_status rs_router_service_start(rs_service *s);
void rs_router_service_run(rs_service *s);
void rs_router_service_wake(rs_service *s);
void rs_router_service_drain(rs_service *s, int64_t grace_ms);
int rs_router_service_stop(rs_service *s);

#endif
