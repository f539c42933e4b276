/*
 * request.h - the pure part of rs-api's HTTP request handling: the route of
 * a method and path, query arguments, `Prefer: wait`, `Last-Event-ID`, the
 * list cursor and the JSON bodies of POST /v1/runs, cancel and signals.
 *
 * Everything here reads bytes a client sent and nothing else: no lws, no
 * NATS, no Postgres, no clock. That is why it is its own file: http.c,
 * reads.c and runs_write.c call it, and tests/fuzz/fuzz_api_request.c
 * fuzzes it without a server.
 */
#ifndef RS_API_REQUEST_H
#define RS_API_REQUEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "rs_status.h"

/* Routes of /v1 (http.c switches on them). The last four are the
 * viewer's (viewer.c, docs/viewer.md). */
enum {
	R_NONE = 0, R_AGENTS, R_AGENT, R_AGENT_VERSION, R_RUNS, R_RUN, R_RUN_EVENTS,
	R_RUN_STREAM, R_RUN_CANCEL, R_RUN_SIGNAL, R_SECRETS, R_SECRET,
	R_RUN_FORK, R_RUN_RETRY, R_SCHEDULES, R_SCHEDULE, R_SCHEDULE_PAUSE, R_SCHEDULE_RESUME,
	R_RUN_STATE, R_RUN_CHECK, R_RUN_STREAM_TOKEN, R_DEVICES
};

/* Split path (no query string) into a route and its parameters (j->p1,
 * j->p2, j->run_id: always NUL-terminated, a run id always a UUID). *allow
 * receives the methods the route accepts ("GET, POST"), static storage.
 * R_NONE for anything else, *allow then untouched. */
int rs_api_route_of(const char *path, rs_api_job *j, const char **allow);

/* 1 if method m is one of allow (as set by rs_api_route_of). Only GET and
 * POST are ever allowed. */
int rs_api_method_allowed(rs_api_method m, const char *allow);

/* "wait=N" inside a Prefer header value (RFC 7240): N clamped to [0, 60];
 * 0 when absent or malformed. */
int rs_api_prefer_wait(const char *v);

/* An event runseq as Last-Event-ID or ?after= carry it: a decimal integer
 * >= 0 (at most INT64_MAX). RS_EINVAL otherwise. */
rs_status rs_api_parse_runseq(const char *s, uint64_t *out);

/* An Idempotency-Key the API accepts: 1 to RS_API_HDR_MAX-1 bytes of
 * visible ASCII or space. It is hashed into a KV key and carried in the
 * run.start command (a JSON string), so bytes that are not UTF-8 would
 * fail only after the key was recorded. */
#define RS_API_IDEM_RULE "1 to 255 characters of visible ASCII or space"
int rs_api_idem_key_ok(const char *k);

/* Value of query argument k in q ("k=v&k=v") into out (cap >= 1, always
 * NUL-terminated, truncated to cap-1); 1 if present, 0 (out untouched)
 * if not. */
int rs_api_qarg(const char *q, const char *k, char *out, size_t cap);

/* The opaque GET /v1/runs cursor: base64url of "<created_us>.<run_id>".
 * encode writes at most cap-1 chars (cap >= 1). decode checks the shape
 * (digits, a dot, a UUID) and fills us[32] / id[RS_API_RUNKEY]; RS_EINVAL
 * for anything this API did not return. */
void rs_api_cursor_encode(const char *created_us, const char *run_id, char *out, size_t cap);
rs_status rs_api_cursor_decode(const char *cursor, char us[32], char id[RS_API_RUNKEY]);

/* Tags of a run (POST /v1/runs "tags"): an object of at most
 * RS_API_MAX_TAGS string values of at most RS_API_TAG_VALUE_MAX bytes,
 * keys [A-Za-z0-9_.-]{1,RS_API_TAG_KEY_MAX}. NULL is fine. 0 if valid,
 * else -1 with the problem in err. */
#define RS_API_MAX_TAGS      16
#define RS_API_TAG_KEY_MAX   64
#define RS_API_TAG_VALUE_MAX 256
int rs_api_tags_check(json_t *tags, char *err, size_t cap);

/* Body of POST /v1/runs: {"agent", "version"?, "input"?, "tags"?}. On success
 * *root is the parsed body (caller decrefs) and agent / version (NULL if
 * absent) / input (NULL if absent, else an object) are borrowed from it.
 * On failure returns the HTTP status to answer (400 unreadable JSON, 422
 * wrong shape) with the problem detail in err, and *root is NULL. 0 on
 * success. */
int rs_api_run_body(const char *body, size_t len, json_t **root, const char **agent,
                    const char **version, json_t **input, char *err, size_t cap);

/* Body of POST /v1/runs/{id}/cancel: empty or {"reason"?: string}. *root
 * (NULL for an empty body) as above; *reason borrowed from it or NULL.
 * Returns 0 or the HTTP status, err set. */
/* Body of POST /v1/runs/{id}/fork ({"from_seq", "version"?, "input"?})
 * or /retry (empty or {"version"?, "input"?}). *root owns the strings and
 * input (caller decrefs). 0 or the HTTP status of the problem (err). */
int rs_api_fork_body(const char *body, size_t len, int retry, json_t **root, int64_t *from_seq,
                     const char **version, json_t **input, char *err, size_t cap);

int rs_api_cancel_body(const char *body, size_t len, json_t **root, const char **reason,
                       char *err, size_t cap);

/* POST /v1/runs/{id}/signals/{name}: name must match [a-z0-9_-]{1,64};
 * the body is any JSON value or empty. *payload is a new reference (NULL
 * for an empty body). Returns 0 or the HTTP status, err set. */
int rs_api_signal_body(const char *name, const char *body, size_t len, json_t **payload,
                       char *err, size_t cap);

#endif
