/*
 * executor.h - the executor's internal interfaces (one section per file).
 *
 * The executor performs the server-side effects of runs: http steps
 * (http.requested) and model turns of llm steps (llm.requested). It finds
 * them in the log itself (a headers-only durable consumer on RUNS) and
 * answers with commands on CMDS (effect.result, llm.chunk), so the
 * orchestrator stays the only writer of run events. docs/architecture.md,
 * "Executor", says why.
 *
 * Threads and who owns what:
 *   - the fetch thread (consumer.c) pulls event headers, acks what is not
 *     a request at once, reads requests in full and hands each to the pool
 *     as a job it no longer touches;
 *   - the worker threads (pool.c) each own one job at a time: perform the
 *     effect, publish the result command synchronously, then ack the
 *     request (at-least-once: a crash before the ack re-issues the effect
 *     with the same ids);
 *   - the ops thread (rs_ops_server) reads atomics only.
 */
#ifndef EXECUTOR_H
#define EXECUTOR_H

#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_cmd.h"
#include "rs_config.h"
#include "rs_event.h"
#include "rs_metrics.h"
#include "rs_nats.h"
#include "rs_status.h"

/* ---- settings (main.c) ---- */
typedef struct {
	rs_config base;
	int64_t workers;          /* RS_EXECUTOR_WORKERS */
	int64_t chunk_ms;         /* RS_EXECUTOR_CHUNK_MS: delta batching period */
	int64_t chunk_bytes;      /* RS_EXECUTOR_CHUNK_BYTES: ... or this much text */
	int64_t max_sse_bytes;    /* RS_EXECUTOR_MAX_STREAM_BYTES: cap of one model stream */
	int64_t secret_ttl_ms;    /* RS_EXECUTOR_SECRET_TTL_MS: decrypted secrets cached */
} exec_cfg;

/* ---- metrics (main.c registers) ---- */
typedef struct {
	rs_metric *effects_ok[2];      /* by kind: http, llm */
	rs_metric *effects_err[2];
	rs_metric *effect_duration;
	rs_metric *chunks;
	rs_metric *skipped;            /* requests of runs already finished */
	rs_metric *busy;               /* workers busy */
	rs_metric *events_seen;
	rs_metric *redeliveries;
} exec_metrics;
extern exec_metrics em;
enum { EK_HTTP = 0, EK_LLM = 1 };

/* ---- one effect to perform ---- */
typedef struct job {
	natsMsg *req;             /* the request's delivery: acked when done */
	rs_event ev;              /* the decoded http.requested / llm.requested */
	uint64_t ndelivered;
	struct job *next;
} job;

/* ---- secrets.c: tenant secrets, resolved at call time ---- */
typedef struct secrets secrets;
/* KV `secrets` and RS_SECRETS_KEY (both optional: without them every
 * lookup is missing). NULL only when RS_SECRETS_KEY is malformed. */
secrets *secrets_new(jsCtx *js, int64_t ttl_ms);
void secrets_free(secrets *s);
/* The value of tenant's secret name (malloc'd, release with
 * rs_secret_free). RS_ENOTFOUND if it does not exist (or does not open);
 * RS_EUNAVAIL if the bucket cannot be read now. */
rs_status secrets_get(secrets *s, const char *tenant, const char *name, char **value,
                      size_t *len);
/* in with every "{{secrets.NAME}}" replaced by tenant's value, into *out
 * (malloc'd; wipe and free it with rs_secret_free). On RS_ENOTFOUND
 * missing names the first secret that does not exist. */
rs_status secrets_render(secrets *s, const char *tenant, const char *in, char **out,
                         char *missing, size_t mcap);

/* ---- the process ---- */
typedef struct executor {
	exec_cfg cfg;
	rs_nats nats;
	kvStore *presence;        /* device tools, for llm tool schemas */
	secrets *secrets;         /* tenant secrets (KV secrets, RS_SECRETS_KEY) */
	natsSubscription *sub;
	atomic_int stopping;
	atomic_int bound;         /* consumer bound: ready */
	struct pool *pool;
	pthread_t fetch_thread;
} executor;

/* ---- consumer.c: the fetch loop ---- */
rs_status consumer_start(executor *x);
void consumer_join(executor *x);

/* ---- pool.c: bounded workers ---- */
struct pool *pool_new(executor *x, int nworkers);
/* Block until a worker is free (or stopping): how many jobs may be fetched. */
int pool_wait_free(struct pool *p, int64_t timeout_ms);
/* Hand j over (the pool owns it). */
void pool_submit(struct pool *p, job *j);
/* Tell JetStream the running jobs are still in progress (AckWait). */
void pool_touch(struct pool *p);
/* Stop taking jobs, wait for the running ones up to grace_ms; jobs still
 * queued are naked so another instance takes them. */
void pool_stop(struct pool *p, int64_t grace_ms);
void pool_free(struct pool *p);
void job_free(job *j);

/* ---- worker entry (consumer.c): perform one job, answer, ack ---- */
void job_run(executor *x, job *j);

/* ---- publish.c: commands back to the orchestrator ---- */
/* effect.result with output (taken) or error; durable when RS_OK. */
rs_status publish_result(executor *x, const rs_event *req, json_t *output,
                         const rs_err *error, int64_t retry_after_ms);
rs_status publish_chunk(executor *x, const rs_event *req, int64_t index,
                        const char *text, size_t len);

/* ---- http_client.c: HTTP/1.1 over plain TCP ---- */
typedef struct {
	const char *name, *value;
} http_header;

typedef struct {
	const char *method;
	const char *url;            /* http://host[:port]/path */
	const http_header *headers; /* nheaders entries */
	size_t nheaders;
	const char *body;
	size_t body_len;
	int64_t deadline_ms;        /* rs_mono_ms() deadline for everything */
	size_t max_body;            /* cap of the response body */
	/* Streaming: body bytes as they arrive (de-chunked) instead of being
	 * buffered; return nonzero to stop. */
	int (*on_data)(void *ud, const char *buf, size_t n);
	/* Called at least every tick_ms while waiting for bytes. */
	void (*on_tick)(void *ud);
	int64_t tick_ms;
	void *ud;
} http_req;

typedef struct {
	int status;
	json_t *headers;            /* lower-case name -> value */
	char *body;                 /* buffered body (NUL-terminated), NULL when streamed */
	size_t body_len;
	int too_large;              /* body exceeded max_body */
} http_resp;

/* Perform q. RS_OK: a complete response in *r. RS_EUNAVAIL: could not
 * connect; RS_ETIMEOUT: deadline; RS_EIO: the connection broke or the
 * response was malformed (r->status is set if headers had arrived);
 * RS_EINVAL: bad URL or unsupported scheme. err says what. */
rs_status http_do(const http_req *q, http_resp *r, char *err, size_t cap);
void http_resp_free(http_resp *r);
/* Parse Retry-After (seconds) of a response, in ms; 0 if none. */
int64_t http_retry_after_ms(const http_resp *r);

/* ---- webhook.c: http steps ---- */
/* Perform the request and publish its answer. RS_OK: the answer is
 * durable (ack the request); anything else: leave it for redelivery. */
rs_status webhook_run(executor *x, const rs_event *req);

/* ---- llm.c: model turns (OpenAI Chat Completions, streaming) ---- */
/* Same contract as webhook_run. */
rs_status llm_run(executor *x, const rs_event *req);

/* ---- sse.c: the model stream parser ---- */
typedef struct sse_acc sse_acc;
sse_acc *sse_acc_new(void);
void sse_acc_free(sse_acc *a);
/* Feed bytes of the stream. Returns 1 after "data: [DONE]", -1 on a
 * malformed chunk, else 0. New text goes to *text (appended; caller
 * takes it with sse_acc_take_text). */
int sse_acc_feed(sse_acc *a, const char *buf, size_t n);
/* Text received since the last take (malloc'd, *len bytes), or NULL. */
char *sse_acc_take_text(sse_acc *a, size_t *len);
size_t sse_acc_pending_text(const sse_acc *a);
/* The assistant message so far: {role, content, tool_calls?}, usage
 * (or NULL) and finish_reason (or NULL). New references. */
json_t *sse_acc_message(const sse_acc *a);
json_t *sse_acc_usage(const sse_acc *a);
const char *sse_acc_finish(const sse_acc *a);
int sse_acc_done(const sse_acc *a);

#endif
