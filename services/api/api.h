/*
 * api.h - internal types shared by the files of rs-api (services/api).
 *
 * Threads and ownership, the one rule that keeps this service simple:
 *   - The lws service thread (http.c, reply.c and its hub, sse.c) owns every lws
 *     object, every rs_api_req and the hub. Nothing else touches them.
 *   - Worker threads (work.c) run rs_api_job functions: auth, KV, Postgres,
 *     JetStream round trips. A job owns copies of everything it reads; it
 *     never sees a wsi. Its result travels back to the service thread
 *     through the completion queue (work.c) + lws_cancel_service().
 *   - NATS threads (live.c subscription, async publish acks) only enqueue.
 * A request may close while its job runs: the job holds an rs_api_ticket,
 * whose req is cleared on close, so the late result is dropped.
 */
#ifndef RS_API_H
#define RS_API_H

#include <jansson.h>
#include <libpq-fe.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_cmd.h"
#include "rs_logread.h"
#include "rs_nats.h"
#include "rs_ops.h"
#include "rs_service.h"
#include "rs_secret.h"
#include "rs_status.h"

#define RS_API_PATH_MAX  256
#define RS_API_QUERY_MAX 512
#define RS_API_HDR_MAX   256
#define RS_API_RUNKEY    40     /* a run id (UUID) + NUL */
/* "<tenant>.<run_id>", a run's key in the api's maps (reply.c's hub, views.c):
 * tenants are tokens (no '.'), so the key is unambiguous. */
#define RS_API_RUN_MAPKEY (72 + RS_API_RUNKEY + 2)
#define rs_api_run_mapkey(key, tenant, run_id) \
	snprintf((key), RS_API_RUN_MAPKEY, "%s.%s", (tenant), (run_id))

typedef struct rs_api rs_api;
typedef struct rs_api_req rs_api_req;
typedef struct rs_api_job rs_api_job;

typedef enum {
	RS_M_GET = 0, RS_M_POST, RS_M_PUT, RS_M_DELETE, RS_M_PATCH, RS_M_OTHER
} rs_api_method;

/* One SSE frame "id: N\nevent: T\ndata: {...}\n\n", formatted once per
 * event and shared (refcounted, service thread only) by every watcher of
 * the run. buf has LWS_PRE bytes of headroom before the text. */
typedef struct rs_api_frame {
	struct rs_api_frame *next;  /* live queue link (before the hub owns it) */
	int refs;
	int terminal;               /* a run.completed/failed/cancelled/timed_out */
	uint64_t runseq;            /* 0 for the heartbeat comment */
	uint64_t sseq;              /* its RUNS stream sequence (0 unknown) */
	int64_t t_us;               /* when the API got it (monotonic), for latency */
	char tenant[72];            /* the hub key is (tenant, run_id) */
	char run_id[RS_API_RUNKEY];
	size_t len;
	unsigned char buf[];        /* LWS_PRE + len + 1 */
} rs_api_frame;

/* One per job, allocated on the service thread and freed there when the
 * job comes back. req is cleared if the connection closes meanwhile. */
typedef struct {
	rs_api_req *req;            /* NULL once the connection closed */
} rs_api_ticket;

/* What the service thread does with a finished job. */
typedef enum {
	RS_ACT_RESPOND = 0,         /* write status/ctype/body/hdrs */
	RS_ACT_SSE,                 /* start streaming (frames = the replay) */
	RS_ACT_REPLAY,              /* a gap refill for a streaming watcher */
	RS_ACT_PARK,                /* park as a waiter on run_id (Prefer: wait) */
	RS_ACT_WAITCHECK,           /* waiter check: terminal => respond, else keep */
	RS_ACT_AUTH,                /* header-time auth (key cache miss) came back */
} rs_api_action;

/* Returns 0 when the job is finished (the worker hands it back), 1 when
 * it was handed to someone else who will (async publish acks). */
typedef int (*rs_api_job_fn)(rs_api *app, rs_api_job *job);

/* A unit of blocking work. Inputs are copies taken on the service thread;
 * outputs are read back there. Owned by whoever holds it (queue, worker,
 * pending-ack map); freed by rs_api_job_free on the service thread. */
struct rs_api_job {
	rs_api_job *next;
	rs_api_ticket *ticket;
	rs_api_job_fn fn;
	/* request */
	rs_api_method method;
	char path[RS_API_PATH_MAX];
	char query[RS_API_QUERY_MAX];   /* "k=v&k=v", url-decoded values */
	char auth[RS_API_HDR_MAX];      /* Authorization header */
	char idem[RS_API_HDR_MAX];      /* Idempotency-Key header */
	char traceparent[64];
	int wait_s;                     /* Prefer: wait=N or ?wait=N; 0 none */
	int route;                      /* http.c route id */
	char p1[80], p2[80];            /* path parameters (name, version, signal) */
	int too_large;                  /* body over the cap: discard, then 413 */
	int authed;                     /* tenant/keyid set (header-time auth) */
	char keyid[65];                 /* sha256 hex of the API key: limits per key */
	char *body;                     /* malloc'd, may be NULL */
	size_t body_len;
	int64_t t0_us;                  /* arrival, for latency metrics */
	/* filled by the job */
	char tenant[72];
	char run_id[RS_API_RUNKEY];
	uint64_t after;                 /* SSE: last runseq the client has */
	int status;
	const char *ctype;
	char *resp;                     /* malloc'd */
	size_t resp_len;
	char hdrs[256];                 /* extra "name: value\n" lines */
	rs_api_action action;
	rs_api_frame **frames;          /* replay, ascending runseq */
	size_t nframes;
	int terminal_seen;              /* replay ended on a terminal event */
	int more;                       /* replay stopped at a page: more history */
	uint64_t start_sseq;            /* replay: first RUNS sequence to read (0 = 1) */
	uint64_t next_sseq;             /* replay: where the next page starts */
	uint32_t drop_gen;              /* the watcher's drop_gen when it started */
	/* async publish bookkeeping (runs_write.c) */
	atomic_int acks_left;
	atomic_int ack_failed;
	char msgid[2][64];
};

/* Per connection (lws per_session_data). Reused across keep-alive
 * transactions: http.c resets the transaction part on each request. */
struct rs_api_req {
	struct lws *wsi;
	rs_api *app;
	rs_api_ticket *ticket;      /* of the job in flight, NULL if none */
	rs_api_job *draft;          /* job being assembled (headers, body) */
	int auth_pending;           /* header-time auth job out; rx paused */
	int body_done;              /* body complete while auth was pending */
	int has_body;               /* Content-Length > 0 */
	int close_after;            /* close once the answer is written (body unread) */
	/* limits held by this transaction (limits.c), released once */
	uint8_t lim_kind;           /* 0 none, RS_API_LIM_WATCH, RS_API_LIM_WAIT */
	char lim_key[65];
	char lim_tenant[72];
	/* response waiting for WRITEABLE */
	int have_resp;
	rs_api_job *resp_job;
	/* SSE */
	int sse;                    /* 0 no, 1 registered, 2 headers sent */
	int sse_done;               /* terminal queued: close when drained */
	int sse_replaying;
	int sse_hdrs_owed;
	int sse_behind;             /* history past sse_last must come from the log */
	uint32_t drop_gen;          /* bumped when held frames are dropped */
	uint64_t replay_sseq;       /* RUNS sequence the next history page reads from */
	char sse_tenant[72];
	uint64_t sse_last;          /* last runseq queued to this watcher */
	rs_api_frame **q;           /* out queue ring */
	uint32_t qhead, qlen, qcap;
	rs_api_frame **held;        /* live frames that came during a replay */
	uint32_t nheld, heldcap;
	int64_t next_hb_ms;
	int64_t sse_active_ms;      /* last frame queued, or last recheck (sse.c) */
	int sse_rechecking;         /* the replay running is a recheck */
	/* Prefer: wait */
	int waiting;
	int wait_done;
	int wait_expired;             /* the timer fired while a job ran */
	int wait_wake_pending;        /* terminal seen while a job was in flight */
	lws_sorted_usec_list_t wait_sul;
	rs_api_job *wait_job;       /* the 202 to send on timeout */
	/* hub membership (key: tenant + run_id, in sse/wait) */
	char hub_tenant[72];
	char run_id[RS_API_RUNKEY];
	rs_api_req *hub_prev, *hub_next;
	rs_api_req *all_prev, *all_next; /* every watcher, for heartbeats */
	char cors_origin[128];      /* CORS (ui.c): the Origin to allow, "" none */
};

/* ---- work.c: worker pool and the queue back to the service thread ---- */
rs_status rs_api_work_start(rs_api *app, int nworkers);
void rs_api_work_stop(rs_api *app);
/* Queue job for a worker (takes ownership). Service thread only. */
void rs_api_work_submit(rs_api *app, rs_api_job *job);
/* From any thread: hand a finished job back to the service thread. */
void rs_api_work_done(rs_api *app, rs_api_job *job);
/* From any thread: hand a live frame to the service thread. */
void rs_api_work_frame(rs_api *app, rs_api_frame *f);
/* Service thread: process finished jobs and live frames. */
void rs_api_work_drain(rs_api *app);
rs_api_job *rs_api_job_new(void);
void rs_api_job_free(rs_api_job *job);
/* Number of jobs not yet answered (for graceful shutdown). */
int rs_api_work_inflight(rs_api *app);

/* ---- problem.c: RFC 7807 bodies ---- */
/* Set job's response to a problem+json with `detail` (printf-style). */
void rs_api_problem(rs_api_job *job, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same with a "Retry-After: retry_s" header added to job's: every
 * answer that asks the client to come back (503 unavailable, 507 full,
 * 429 over a limit). */
void rs_api_problem_retry(rs_api_job *job, int status, int retry_s, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Set job's response to JSON v (steals the reference). */
void rs_api_json(rs_api_job *job, int status, json_t *v);
const char *rs_api_reason(int status);

/* ---- auth.c ---- */
/* Resolve the Bearer key of job to job->tenant and job->keyid. On failure
 * sets a 401 (or 503) problem on job and returns non-RS_OK. Worker
 * threads. Returns at once when job->authed. */
rs_status rs_api_auth(rs_api *app, rs_api_job *job);
/* Header time, any thread, never blocks: RS_OK and job->tenant/keyid set
 * (cached key), RS_EINVAL with a 401 problem set (no or malformed
 * header), RS_ENOTFOUND (not cached: rs_api_auth on a worker decides). */
rs_status rs_api_auth_cached(rs_api *app, rs_api_job *job);
rs_status rs_api_auth_init(rs_api *app);
void rs_api_auth_free(rs_api *app);

/* ---- agents.c ---- */
rs_status rs_api_agents_init(rs_api *app);
void rs_api_agents_free(rs_api *app);
void rs_api_agents_post(rs_api *app, rs_api_job *job);
void rs_api_agents_get(rs_api *app, rs_api_job *job, const char *name,
                       const char *version);
/* Resolve (name, version or NULL=latest) to a version id. Cached.
 * RS_ENOTFOUND if unknown. */
rs_status rs_api_agent_resolve(rs_api *app, const char *tenant, const char *name,
                               const char *version, char out[17]);

/* ---- runs_write.c ---- */
int rs_api_runs_create(rs_api *app, rs_api_job *job);
/* Publish a complete run.start and its registry entry; 202 with extra's
 * members added (taken, may be NULL). 1 = handed to the ack handler. */
int rs_api_runs_start(rs_api *app, rs_api_job *job, const rs_cmd *cmd, json_t *extra);
/* schedules.c: /v1/schedules */
void rs_api_schedules_create(rs_api *app, rs_api_job *job);
void rs_api_schedules_list(rs_api *app, rs_api_job *job);
void rs_api_schedules_get(rs_api *app, rs_api_job *job, const char *id);
void rs_api_schedules_pause(rs_api *app, rs_api_job *job, const char *id, int pause);
void rs_api_schedules_delete(rs_api *app, rs_api_job *job, const char *id);
/* gates.c: a queued run's place in its admission gates, added to view as
 * "queue" (nothing when the run is not queued or not gated). */
void rs_api_gate_annotate(rs_api *app, const char *tenant, const char *run_id, json_t *view);
/* POST /v1/runs/{id}/fork and /retry (fork.c). Same return as create. */
int rs_api_runs_fork(rs_api *app, rs_api_job *job, int retry);
void rs_api_runs_cancel(rs_api *app, rs_api_job *job);
void rs_api_runs_signal(rs_api *app, rs_api_job *job, const char *name);
/* Async publish ack handler (installed in jsOptions by main.c). */
void rs_api_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);
rs_status rs_api_pending_init(rs_api *app);
void rs_api_pending_free(rs_api *app);

/* ---- registry.c: does a run exist, its KV `runs` entry (any thread) ---- */
/* Does run_id exist for tenant (registry KV or an event on the log)?
 * Fills *last_seq / *terminal from the newest event (0 / 0 if none). */
rs_status rs_api_run_lookup(rs_api *app, const char *tenant, const char *run_id,
                            uint64_t *last_seq, int *terminal);
/* runseq, type ("step.completed") and terminal flag of an event message.
 * RS_EINVAL if it is not a usable run event. */
rs_status rs_api_msg_meta(natsMsg *m, uint64_t *runseq, char type[64], int *terminal);
/* The registry entry of a new run as a message for KV `runs` (*out,
 * caller owns), de-duplicated by msgid ("reg-<run_id>", written here).
 * start: the encoded run.start command (copied into the entry), or NULL. */
rs_status rs_api_registry_msg(natsMsg **out, const char *tenant, const char *run_id,
                              const char *agent, const char *version, const char *start,
                              size_t start_len, char msgid[64]);
/* The "queued" view of a run with no events yet, from its registry entry;
 * NULL if there is none (new reference). */
json_t *rs_api_registry_view(rs_api *app, const char *tenant, const char *run_id);

/* ---- logread.c: reads of RUNS that must be current ---- */
/* Decide how (RS_API_RUNS_READS: auto = the leader when RUNS has replicas
 * > 1, else direct get). Before any read. */
rs_status rs_api_log_init(rs_api *app);
/* One message of RUNS, options as for js_DirectGetMsg (Sequence,
 * NextBySubject, LastBySubject): a direct get on one node, the stream
 * leader (STREAM.MSG.GET) on a cluster. *m (caller destroys) carries the
 * data, the stored headers and Nats-Sequence either way; NATS_NOT_FOUND
 * when there is no such message. */
natsStatus rs_api_log_get(rs_api *app, natsMsg **m, const jsDirectGetMsgOptions *o);
/* One stored event of a history being read (sseq: its RUNS sequence; m
 * is the reader's). 0: go on; 1: stop, done; -1: stop, failed (the
 * callback keeps why in arg). */
typedef int (*rs_api_log_each)(void *arg, natsMsg *m, uint64_t sseq);
/* Worker: the events of (tenant, run_id) stored after RUNS sequence
 * `after` (0: all), ascending, into fn. by_consumer: one ordered consumer
 * until nothing is pending, for a long history (only for a run known to
 * have events past `after`: else it waits 5 s for the first); else direct
 * gets until there is none. RS_OK at the end or when fn said 1; RS_ERR
 * when it said -1; else the log's error. */
rs_status rs_api_log_history(rs_api *app, const char *tenant, const char *run_id,
                             uint64_t after, int by_consumer, rs_api_log_each fn, void *arg);

/* ---- secrets.c: PUT/DELETE /v1/secrets/{name}, GET /v1/secrets ---- */
rs_status rs_api_secrets_init(rs_api *app);
void rs_api_secrets_free(rs_api *app);
void rs_api_secrets_put(rs_api *app, rs_api_job *job, const char *name);
void rs_api_secrets_delete(rs_api *app, rs_api_job *job, const char *name);
void rs_api_secrets_list(rs_api *app, rs_api_job *job);

/* ---- reads.c ---- */
void rs_api_runs_get(rs_api *app, rs_api_job *job);
void rs_api_runs_list(rs_api *app, rs_api_job *job);
void rs_api_runs_events(rs_api *app, rs_api_job *job);
/* The run as GET /v1/runs/{id} shows it, into job (200), from its view
 * (views.c): never Postgres. */
void rs_api_run_view(rs_api *app, rs_api_job *job);
void rs_api_reads_close_thread(void);

/* ---- views.c: run views folded from the live events (rs_view.h) ---- */
rs_status rs_api_views_init(rs_api *app);
void rs_api_views_free(rs_api *app);
/* NATS thread: fold one live event of (tenant, run_id) (from its subject). */
void rs_api_views_live(rs_api *app, const char *tenant, const char *run_id, const char *data,
                       size_t len, uint64_t sseq);
/* Any thread: the cached complete view with last_seq >= min_seq (and
 * finished, if terminal) as a 200 on job; RS_ENOTFOUND if there is none. */
rs_status rs_api_views_render(rs_api *app, const char *tenant, const char *run_id,
                              uint64_t min_seq, int terminal, rs_api_job *job);
/* Worker: a held view a few events behind min_seq (the live consumer
 * lags the log a little) is brought up to date from the log and answers
 * job; RS_ENOTFOUND if there is none (then rs_api_views_load). */
rs_status rs_api_views_catch_up(rs_api *app, const char *tenant, const char *run_id,
                                uint64_t min_seq, rs_api_job *job);
/* Worker: fold the run's whole history from the log, answer job with it
 * (200) and keep it in the cache. nevents: the runseq of its newest event
 * (how it is read: direct gets for a few, an ordered consumer beyond).
 * RS_ENOTFOUND: no events; RS_EUNAVAIL: the history read ends short of
 * nevents (answered from older state: never less than the log has);
 * else a log error. Nothing is answered unless RS_OK. */
rs_status rs_api_views_load(rs_api *app, const char *tenant, const char *run_id,
                            uint64_t nevents, rs_api_job *job);
/* (Query arguments, routing, body shapes: request.h.) */

/* ---- limits.c: watchers and waiters per key and per tenant ---- */
enum { RS_API_LIM_WATCH = 1, RS_API_LIM_WAIT = 2 };
rs_status rs_api_limits_init(rs_api *app);
void rs_api_limits_free(rs_api *app);
/* Service thread: take one slot of kind for r (job's key and tenant). 0 on
 * success; else -1 and a 429 problem with Retry-After set on job. */
int rs_api_limit_take(rs_api *app, rs_api_req *r, rs_api_job *job, int kind);
/* Give back what r holds (idempotent). */
void rs_api_limit_release(rs_api *app, rs_api_req *r);

/* ---- live.c: the one live consumer, history replay ---- */
rs_status rs_api_live_start(rs_api *app);
/* Shutdown, step 1: end the live consumer (no new frames). */
void rs_api_live_unsubscribe(rs_api *app);
/* Step 2 (after the service thread is gone): also frees the views. */
void rs_api_live_stop(rs_api *app);
/* frame.c: a frame for a stored/live event message. NULL if unusable. */
rs_api_frame *rs_api_frame_from_msg(natsMsg *m, const char *tenant, const char *run_id);
void rs_api_frame_unref(rs_api_frame *f);
/* Replay (worker): frames of run with runseq > after, ascending, at most
 * app->replay_page of them (job->more set when it stopped there). */
rs_status rs_api_replay(rs_api *app, const char *tenant, const char *run_id,
                        uint64_t after, rs_api_job *job);

/* ---- sse.c (service thread) ---- */
void rs_api_sse_begin(rs_api *app, rs_api_req *r, rs_api_job *job);
void rs_api_sse_replayed(rs_api *app, rs_api_req *r, rs_api_job *job);
void rs_api_sse_push(rs_api *app, rs_api_req *r, rs_api_frame *f);
int rs_api_sse_writeable(rs_api *app, rs_api_req *r);
void rs_api_sse_release(rs_api *app, rs_api_req *r);
void rs_api_sse_heartbeat(rs_api *app);
void rs_api_sse_close_all(rs_api *app);
void rs_api_sse_free_static(void);
/* Worker side: open a stream (auth done): 404/204 or the replay. */
void rs_api_sse_open(rs_api *app, rs_api_job *job);
int rs_api_job_replay(rs_api *app, rs_api_job *job);

/* ---- http.c (service thread) ---- */
rs_status rs_api_http_start(rs_api *app);
void rs_api_http_stop(rs_api *app);
/* Turn the event loop once (poll or libev); nowait: do not block.
 * <0: the server is gone. */
int rs_api_http_service(rs_api *app, int nowait);
/* A finished job for r (from work.c): header-time auth here, the rest
 * to rs_api_reply_complete. Takes job. */
void rs_api_http_complete(rs_api *app, rs_api_req *r, rs_api_job *job);

/* ---- reply.c: answers, and waiters (service thread) ---- */
/* Hand j to a worker running fn for r (takes j; r's ticket follows it). */
void rs_api_submit(rs_api *app, rs_api_req *r, rs_api_job *j, rs_api_job_fn fn);
/* Answer r with j on the next WRITEABLE (takes j; unparks r). */
void rs_api_respond_later(rs_api *app, rs_api_req *r, rs_api_job *j);
/* Answer r with j now, inside r's own lws callback (takes j). Returns
 * the value for lws (-1: close). */
int rs_api_respond_now(rs_api *app, rs_api_req *r, rs_api_job *j);
/* Act on a finished job: answer, start streaming, park or keep waiting. */
void rs_api_reply_complete(rs_api *app, rs_api_req *r, rs_api_job *j);
/* Worker: j (GET ?wait= on a run in flight, last its newest runseq)
 * becomes the 202 a timeout sends, and asks to be parked. */
void rs_api_park_reply(rs_api_job *j, uint64_t last);
/* Take r out of the waiters if it is one (idempotent). */
void rs_api_unpark(rs_api *app, rs_api_req *r);
/* Terminal event for a parked waiter: fetch the run view and answer. */
void rs_api_wait_wake(rs_api *app, rs_api_req *r);
/* Answer a parked waiter now with its 202 (timeout, shutdown). */
void rs_api_wait_expire(rs_api *app, rs_api_req *r);
/* The hub: (tenant, run_id) -> the run's watchers and waiters. Made and
 * freed by rs_api_http_start / _stop (after its last connection closed). */
rs_status rs_api_hub_init(rs_api *app);
void rs_api_hub_free(rs_api *app);
void rs_api_hub_add(rs_api *app, rs_api_req *r);
void rs_api_hub_del(rs_api *app, rs_api_req *r);
/* A live frame (taken): pushed to the run's watchers, wakes its waiters
 * if terminal. */
void rs_api_hub_frame(rs_api *app, rs_api_frame *f);
size_t rs_api_hub_watchers(rs_api *app);
/* Shutdown: every parked waiter gets its 202 now. */
void rs_api_hub_expire_waiters(rs_api *app);

/* ---- ui.c: the viewer's static files (/ui/) and CORS; service thread ---- */
/* Load RS_API_UI_DIR, RS_API_CORS_ORIGINS and the stream token key. */
rs_status rs_api_viewer_init(rs_api *app);
void rs_api_viewer_free(rs_api *app);
/* 1 if uri is not the viewer's ("/", "/ui", "/ui/..."); else 0 and j holds
 * the answer (200 with a copy of the file, 304, 301, 404, 405). */
int rs_api_ui_serve(rs_api *app, struct lws *wsi, const char *uri, rs_api_job *j);
/* The request's Origin into out if RS_API_CORS_ORIGINS allows it, else "". */
void rs_api_cors_origin(rs_api *app, struct lws *wsi, char *out, size_t cap);
/* 1 if the request is not OPTIONS; else 0 and j holds the answer (204 to
 * a preflight of an allowed origin, 403/400 otherwise). */
int rs_api_cors_preflight(rs_api *app, struct lws *wsi, const char *origin, rs_api_job *j);
/* Add the CORS response headers for origin ("" adds none). -1: no room. */
int rs_api_cors_add(struct lws *wsi, const char *origin, unsigned char **p, unsigned char *end);

/* ---- viewer.c: the viewer's routes (workers) ---- */
rs_status rs_api_stream_token_init(rs_api *app);
/* A ?token= of run_id's stream: RS_OK and its tenant, RS_ETIMEOUT
 * expired, RS_EINVAL anything else. Any thread, no round trip. */
rs_status rs_api_stream_token_check(const char *token, const char *run_id, char *tenant,
                                    size_t cap);
void rs_api_stream_token(rs_api *app, rs_api_job *job);
void rs_api_run_state(rs_api *app, rs_api_job *job);
void rs_api_run_check(rs_api *app, rs_api_job *job);
void rs_api_devices_list(rs_api *app, rs_api_job *job);
/* reads.c's Postgres access for other read routes: the query (NULL and a
 * 503/500 problem on job when it fails) and its first column as a JSON
 * array (new reference). */
PGresult *rs_api_pg_query(rs_api *app, rs_api_job *job, const char *sql, int n,
                          const char *const *params);
json_t *rs_api_pg_json_column(PGresult *res);

/* ---- metrics.c ---- */
void rs_api_metrics_init(void);

/* ---- service.c: settings and the hooks of common/rs_service.c ---- */
extern const char *const rs_api_required[];   /* streams and buckets needed */
rs_status rs_api_service_configure(rs_service *s);
rs_status rs_api_service_init(rs_service *s);
void rs_api_service_js_options(rs_service *s, jsOptions *jo);
rs_status rs_api_service_start(rs_service *s);
void rs_api_service_run(rs_service *s);
void rs_api_service_wake(rs_service *s);
void rs_api_service_drain(rs_service *s, int64_t grace_ms);
int rs_api_service_stop(rs_service *s);
void rs_api_metric_request(int status, double seconds);
void rs_api_metric_created(void);
void rs_api_metric_watchers(double n);
void rs_api_metric_sse_sent(double seconds_in_api);
void rs_api_metric_waiters(double n);
void rs_api_metric_limited(int kind);
/* A live message dropped before it reached the hub, by reason. */
void rs_api_metric_live_dropped(const char *reason);
/* A single-run answer from a cached view (0) or one read from the log (1). */
void rs_api_metric_view_read(int from_log);
void rs_api_metric_views(double n, double bytes);

/* ---- the application ---- */
typedef struct rs_api_hub rs_api_hub;
typedef struct rs_api_work rs_api_work;
typedef struct rs_api_pending rs_api_pending;
typedef struct rs_api_viewer rs_api_viewer;
typedef struct rs_api_authc rs_api_authc;
typedef struct rs_api_agentc rs_api_agentc;
typedef struct rs_api_views rs_api_views;

struct rs_api {
	/* configuration */
	const char *listen_addr;
	const char *pg_url;
	const char *event_lib;      /* RS_API_EVENT_LIB: libev (default) | poll */
	int port;
	size_t max_body;
	int header_timeout_s, idle_timeout_s;
	int hb_s;
	int max_fds;                /* RS_API_MAX_FDS: RLIMIT_NOFILE for lws */
	int workers;
	int64_t auth_ttl_ms;
	int64_t ryw_ms;
	int64_t pub_timeout_ms;
	int64_t shutdown_grace_ms;
	/* limits (limits.c, sse.c): 0 = unlimited for the per-* ones */
	int max_watchers_key, max_watchers_tenant;
	int max_waits_key, max_waits_tenant;
	int limit_retry_after_s;
	int replay_page;            /* events per history job (RS_API_SSE_REPLAY_PAGE) */
	int runs_leader_reads;      /* RS_API_RUNS_READS (logread.c) */
	rs_logread runs_reads;      /* how (logread.c) */
	int sse_recheck_s;          /* RS_API_SSE_RECHECK_S (sse.c); -1 = auto until logread.c */
	int64_t view_cache_runs;    /* RS_API_VIEW_CACHE_RUNS (views.c) */
	int64_t view_cache_mb;      /* RS_API_VIEW_CACHE_MB */
	int storage_high_water_pct; /* RS_API_STORAGE_HIGH_WATER_PCT (storage.c) */
	/* dependencies */
	rs_nats nats;
	kvStore *kv_apikeys, *kv_agents, *kv_idem, *kv_runs;
	kvStore *kv_gates;          /* admission gates; NULL: no queue positions */
	kvStore *kv_schedules;      /* schedules; NULL: /v1/schedules answers 503 */
	kvStore *kv_secrets;            /* NULL: secrets not set up (503) */
	rs_secret_key secret_key;       /* RS_SECRETS_KEY (secrets.c) */
	int have_secret_key;            /* 0: PUT /v1/secrets answers 503 */
	natsSubscription *live_sub;     /* ordered consumer on RUNS runs.> */
	uint64_t live_floor;            /* RUNS last seq before it existed */
	struct lws_context *ctx;
	void *evloop;               /* struct ev_loop * when RS_API_EVENT_LIB=libev */
	void *foreign[1];
	rs_ops ops;
	/* state */
	atomic_int stopping;
	atomic_int streams_ok;
	rs_api_hub *hub;
	rs_api_work *work;
	rs_api_pending *pending;
	rs_api_authc *authc;
	rs_api_agentc *agentc;
	rs_api_views *views;        /* views.c, its own mutex */
	struct rs_api_limits *limits; /* service thread */
	rs_api_req *all_watchers;   /* service thread */
	size_t nwatchers;
	size_t nwaiters;            /* parked Prefer: wait requests */
	lws_sorted_usec_list_t hb_sul;
	rs_api_viewer *viewer;      /* ui.c: viewer files, CORS */
	/* Where rs_api_work_drain hands what comes back to the service
	 * thread: set by rs_api_http_start (before any drain can run), so
	 * the queue does not depend on the files that use it. */
	void (*on_job_done)(rs_api *app, rs_api_req *r, rs_api_job *job); /* takes job */
	void (*on_frame)(rs_api *app, rs_api_frame *f);
};

/* storage.c: 1 (and detail) if RUNS or CMDS is above the high-water mark
 * of its max_bytes, so a new run must be refused with 507. Any thread. */
int rs_api_storage_full(rs_api *app, char *detail, size_t cap);
/* storage.c: 1 if a publish was refused because its stream is full. */
int rs_api_storage_refused(const jsPubAckErr *pae);

#endif
