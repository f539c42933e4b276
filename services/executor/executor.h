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
#include "rs_consume.h"
#include "rs_event.h"
#include "rs_metrics.h"
#include "rs_nats.h"
#include "rs_service.h"
#include "rs_status.h"
#include "sse.h"

/* ---- settings (main.c) ---- */
/* http.c's (rs_exec_http_global_init) */
typedef struct {
	const char *ca_file;        /* RS_EXECUTOR_CA_FILE (added to the system store), NULL: none */
	const char *egress_allow;   /* RS_EXECUTOR_EGRESS_ALLOW */
	int64_t connect_timeout_ms; /* RS_EXECUTOR_CONNECT_TIMEOUT_MS */
	int64_t max_connections;    /* idle connections kept for reuse */
} http_cfg;

typedef struct {
	rs_config base;
	int64_t workers;          /* RS_EXECUTOR_WORKERS */
	int64_t chunk_ms;         /* RS_EXECUTOR_CHUNK_MS: delta batching period */
	int64_t chunk_bytes;      /* RS_EXECUTOR_CHUNK_BYTES: ... or this much text */
	int64_t max_sse_bytes;    /* RS_EXECUTOR_MAX_STREAM_BYTES: cap of one model stream */
	sse_limits sse;           /* RS_EXECUTOR_SSE_MAX_LINE, _MAX_MESSAGE, _MAX_TOOL_CALLS */
	http_cfg http;            /* CA file, egress allow-list, connect timeout */
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
extern exec_metrics rs_exec_em;
void rs_exec_metrics_init(void);
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
secrets *rs_exec_secrets_new(jsCtx *js, int64_t ttl_ms);
void rs_exec_secrets_free(secrets *s);
/* The value of tenant's secret name (malloc'd, release with
 * rs_secret_free). RS_ENOTFOUND if it does not exist (or does not open);
 * RS_EUNAVAIL if the bucket cannot be read now. */
rs_status rs_exec_secrets_get(secrets *s, const char *tenant, const char *name, char **value,
                      size_t *len);
/* in with every "{{secrets.NAME}}" replaced by tenant's value, into *out
 * (malloc'd; wipe and free it with rs_secret_free). On RS_ENOTFOUND
 * missing names the first secret that does not exist. */
rs_status rs_exec_secrets_render(secrets *s, const char *tenant, const char *in, char **out,
                         char *missing, size_t mcap);

/* ---- the process ---- */
typedef struct executor {
	exec_cfg cfg;
	rs_nats nats;
	kvStore *presence;        /* device tools, for llm tool schemas */
	secrets *secrets;         /* tenant secrets (KV secrets, RS_SECRETS_KEY) */
	struct rs_consume *consumer; /* RUNS/executor (consumer.c) */
	atomic_int stopping;
	atomic_int bound;         /* consumer bound: ready */
	struct pool *pool;
} executor;

/* ---- consumer.c: RUNS/executor through rs_consume ---- */
/* service.c: the hooks of common/rs_service.c (main.c's table) */
int rs_exec_ready(void *arg, char *why, size_t cap);
rs_status rs_exec_service_init(rs_service *s);
rs_status rs_exec_service_start(rs_service *s);
void rs_exec_service_drain(rs_service *s, int64_t grace_ms);
int rs_exec_service_stop(rs_service *s);

rs_status rs_exec_consumer_start(executor *x);
/* Stop taking requests, wait for the loop; free after the pool stopped. */
void rs_exec_consumer_join(executor *x);
void rs_exec_consumer_free(executor *x);

/* ---- pool.c: bounded workers ---- */
struct pool *rs_exec_pool_new(executor *x, int nworkers);
/* Block until a worker is free (or stopping): how many jobs may be fetched. */
int rs_exec_pool_wait_free(struct pool *p, int64_t timeout_ms);
/* Hand j over (the pool owns it). */
void rs_exec_pool_submit(struct pool *p, job *j);
/* Tell JetStream the running jobs are still in progress (AckWait). */
void rs_exec_pool_touch(struct pool *p);
/* Stop taking jobs, wait for the running ones up to grace_ms; jobs still
 * queued are naked so another instance takes them. */
void rs_exec_pool_stop(struct pool *p, int64_t grace_ms);
/* 1 once rs_exec_pool_stop has joined every worker (none is still in an effect). */
int rs_exec_pool_stopped(const struct pool *p);
void rs_exec_pool_free(struct pool *p);
void rs_exec_job_free(job *j);

/* ---- worker entry (consumer.c): perform one job, answer, ack ---- */
void rs_exec_job_run(executor *x, job *j);

/* ---- publish.c: commands back to the orchestrator ---- */
/* effect.result with output (taken) or error; durable when RS_OK. */
rs_status rs_exec_publish_result(executor *x, const rs_event *req, json_t *output,
                         const rs_err *error, int64_t retry_after_ms);
rs_status rs_exec_publish_chunk(executor *x, const rs_event *req, int64_t index,
                        const char *text, size_t len);

/* ---- http.c: outbound HTTP on libcurl ----
 * One multi handle per call (curl_multi_poll gives the streaming tick),
 * one process-wide share of connections, DNS and TLS sessions, so calls
 * to the same host reuse kept-alive connections whichever worker makes
 * them. Every connection is vetted by the egress policy (egress.h) on the
 * address it is about to connect to. */
typedef struct {
	const char *name, *value;
} http_header;

typedef struct {
	const char *method;         /* an RFC 7230 token, at most 16 bytes */
	const char *url;            /* http:// or https:// */
	const http_header *headers; /* nheaders entries (validated by rs_exec_http_do) */
	size_t nheaders;
	const char *body;           /* NULL: none */
	size_t body_len;
	int64_t deadline_ms;        /* rs_mono_ms() deadline for everything */
	size_t max_body;            /* cap of the response body (both modes) */
	long max_redirects;         /* 0: redirects are answers, not followed */
	/* Streaming: body bytes as they arrive instead of being buffered;
	 * return nonzero to stop (then rs_exec_http_do answers HF_STOPPED). */
	int (*on_data)(void *ud, const char *buf, size_t n);
	/* Called at least every tick_ms while waiting for bytes; return
	 * nonzero to stop (HF_STOPPED). */
	int (*on_tick)(void *ud);
	int64_t tick_ms;
	void *ud;
} http_req;

/* Why a call failed; rs_exec_http_fail_code / _class name it for an effect.result. */
typedef enum {
	HF_OK = 0,
	HF_INVALID,        /* invalid_request (permanent): refused before connecting */
	HF_EGRESS,         /* egress_denied (permanent) */
	HF_CONNECT,        /* connect_failed (transient) */
	HF_TLS,            /* tls_verify_failed (permanent): certificate not trusted / wrong name */
	HF_TIMEOUT,        /* timeout */
	HF_IO,             /* connection_error (transient) */
	HF_TOO_LARGE,      /* response_too_large (permanent) */
	HF_REDIRECTS,      /* too_many_redirects (permanent) */
	HF_STOPPED,        /* on_data asked to stop */
} http_fail;

typedef struct {
	int status;                 /* 0 until a status line arrived */
	json_t *headers;            /* lower-case name -> value, credentials redacted */
	char *body;                 /* buffered body (NUL-terminated), NULL when streamed */
	size_t body_len;
	char err[320];              /* what failed, for the error message */
} http_resp;

/* Once, before any thread calls rs_exec_http_do. err says what is wrong. */
rs_status rs_exec_http_global_init(const http_cfg *c, char *err, size_t cap);
void rs_exec_http_global_cleanup(void);
/* Entries of the egress allow-list (for the start-up log). */
size_t rs_exec_http_egress_rules(void);
/* Refuse what must not reach a socket: method not a short token, URL not
 * http(s) or with controls/spaces, header names not tokens, values with
 * CR/LF/NUL or other controls, hop-by-hop / framing headers. HF_INVALID
 * with why, or HF_OK. rs_exec_http_do checks the same first. */
http_fail rs_exec_http_validate(const http_req *q, char *why, size_t cap);
/* Perform q. The response (status, headers, body) is in *r as far as it
 * arrived, whatever the result. */
http_fail rs_exec_http_do(const http_req *q, http_resp *r);
const char *rs_exec_http_fail_code(http_fail f);
rs_errclass rs_exec_http_fail_class(http_fail f);
void rs_exec_http_resp_free(http_resp *r);
/* Parse Retry-After (seconds) of a response, in ms; 0 if none. */
int64_t rs_exec_http_retry_after_ms(const http_resp *r);

/* ---- webhook.c: http steps ---- */
/* Perform the request and publish its answer. RS_OK: the answer is
 * durable (ack the request); anything else: leave it for redelivery. */
rs_status rs_exec_webhook_run(executor *x, const rs_event *req);

/* ---- llm.c: model turns (OpenAI Chat Completions, streaming) ---- */
/* Same contract as rs_exec_webhook_run. */
rs_status rs_exec_llm_run(executor *x, const rs_event *req);

#endif
