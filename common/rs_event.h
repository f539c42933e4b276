/*
 * rs_event.h - the run event codec (public contract v1, docs/events.md).
 *
 * A run event is a CloudEvents 1.0 JSON object (structured mode):
 *   specversion "1.0", id "<run_id>-<runseq>", source "runstream/orchestrator",
 *   type "runstream.<noun>.<verb>", subject <run_id>, time (RFC 3339),
 *   datacontenttype "application/json", runseq, tenant, traceparent, data.
 * It is stored on subject runs.<tenant>.<run_id> of stream RUNS with headers
 * Nats-Msg-Id = id, Content-Type = application/cloudevents+json,
 * Runstream-Type = "<noun>.<verb>".
 *
 * Each event type has a typed data struct and one encode and one decode
 * function. Business code uses the structs only; it never walks raw JSON.
 * Ownership: decode allocates every string/json member; rs_event_free()
 * releases them. Encode never takes ownership.
 */
#ifndef RS_EVENT_H
#define RS_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "rs_field.h"
#include "rs_status.h"

typedef enum {
	RS_EV_RUN_CREATED = 0,
	RS_EV_RUN_STARTED,
	RS_EV_STEP_STARTED,
	RS_EV_STEP_COMPLETED,
	RS_EV_STEP_FAILED,
	RS_EV_STEP_RETRY_SCHEDULED,
	RS_EV_TOOL_REQUESTED,
	RS_EV_TOOL_DISPATCHED,
	RS_EV_TOOL_COMPLETED,
	RS_EV_TOOL_FAILED,
	RS_EV_TOOL_TIMED_OUT,
	RS_EV_TIMER_SCHEDULED,
	RS_EV_TIMER_FIRED,
	RS_EV_SIGNAL_RECEIVED,
	RS_EV_RUN_CANCEL_REQUESTED,
	RS_EV_RUN_COMPLETED,
	RS_EV_RUN_FAILED,
	RS_EV_RUN_CANCELLED,
	RS_EV_RUN_TIMED_OUT,
	/* server-side effects (executor), appended after the v1.0 types so
	 * existing numbering never changes */
	RS_EV_HTTP_REQUESTED,
	RS_EV_HTTP_COMPLETED,
	RS_EV_LLM_REQUESTED,
	RS_EV_LLM_DELTA,
	RS_EV_LLM_MESSAGE,
	/* children runs (v1.3): parallel, foreach and run steps */
	RS_EV_CHILD_STARTED,
	RS_EV_CHILD_FINISHED,
	RS_EV__COUNT
} rs_event_type;

/* "run.created" etc. (the Runstream-Type header and SSE event name). */
const char *rs_event_type_name(rs_event_type t);
/* Accepts "run.created" or "runstream.run.created". */
rs_status rs_event_type_parse(const char *s, rs_event_type *t);
/* 1 for run.completed, run.failed, run.cancelled, run.timed_out. */
int rs_event_type_terminal(rs_event_type t);

typedef enum { RS_ERRCLASS_TRANSIENT = 0, RS_ERRCLASS_PERMANENT, RS_ERRCLASS_TIMEOUT } rs_errclass;
const char *rs_errclass_name(rs_errclass c);           /* "transient" ... */
rs_status rs_errclass_parse(const char *s, rs_errclass *c);

/* An error as carried by step.failed, tool.failed, run.failed and
 * tool results. JSON: {"code","message","class","retryable"[,"step_id"]}. */
typedef struct {
	char *code;      /* required, e.g. "tool_error", "timeout" */
	char *message;   /* required, human text */
	rs_errclass cls;
	int retryable;   /* 1/0 */
	char *step_id;   /* optional (run.failed: which step) */
} rs_err;

typedef enum {
	RS_TIMER_SLEEP = 0, RS_TIMER_RETRY, RS_TIMER_STEP_TIMEOUT, RS_TIMER_TOOL_TIMEOUT,
	RS_TIMER_SIGNAL_TIMEOUT, RS_TIMER_RUN_TIMEOUT
} rs_timer_purpose;
const char *rs_timer_purpose_name(rs_timer_purpose p); /* "sleep", "retry", "step_timeout", ... */
rs_status rs_timer_purpose_parse(const char *s, rs_timer_purpose *p);

/* Optional strings are NULL when absent; optional ints are 0 when absent
 * unless noted. Times are Unix ms in structs, RFC 3339 strings in JSON. */
/* forked_from / from_seq / reuse: a fork of another run (POST
 * /v1/runs/{id}/fork): reuse is [{step_id, output, seq}], the outputs of
 * the source's effect steps completed within its first from_seq events, in
 * order (rs_fork.h).
 * parent_run_id / root_run_id / scope / parent_step_id: set on a child run
 * (v1.3): its parent, the run at the top of the tree, the list of steps
 * it walks ("" or absent: the agent's own steps; "<step>/<branch>": a
 * branch of a parallel step or "<step>/each" a foreach body, see
 * rs_agent_scope). */
typedef struct { char *agent; char *version; json_t *input; char *idempotency_key;
                 int64_t timeout_s; int64_t max_steps;
                 char *forked_from; int64_t from_seq; json_t *reuse;
                 /* admission (docs/agents.md, concurrency): the rendered key and
                  * limit of the agent's concurrency, and the tenant's limit on
                  * running runs in force at creation; any of them set = the run
                  * stays queued until a run.admit command starts it */
                 char *concurrency_key; int64_t concurrency_limit; int64_t tenant_limit;
                 /* a run started by a schedule: its id and tick (Unix ms) */
                 char *schedule_id; int64_t schedule_tick;
                 char *parent_run_id; char *root_run_id; char *scope;
                 char *parent_step_id;
                 json_t *tags; /* v1.3: string map given at start, or NULL */
               } rs_ev_run_created;
/* admission: "granted" when a run.admit started a gated run (so replay
 * knows that run.started records a command). */
typedef struct { char *instance; char *admission; } rs_ev_run_started;
typedef struct { char *step_id; char *kind; int64_t attempt; json_t *input; } rs_ev_step_started;
typedef struct { char *step_id; int64_t attempt; json_t *output; int64_t duration_ms;
                 char *next_step; /* optional: where the run goes next */
                 int64_t reused_seq; /* optional: the output was reused from the
                                      * source of a fork, its event runseq there */
               } rs_ev_step_completed;
/* effect_id / retry_after_ms: set only when the failure is an effect
 * error reported by the executor (effect.result with an error), so replay
 * can rebuild that command from this event. */
typedef struct { char *step_id; int64_t attempt; rs_err error; int final;
                 char *effect_id; int64_t retry_after_ms; } rs_ev_step_failed;
typedef struct { char *step_id; int64_t attempt; /* the next attempt */ int64_t backoff_ms;
                 int64_t due_at; char *timer_id; } rs_ev_step_retry_scheduled;
typedef struct { char *call_id; char *step_id; int64_t attempt; char *tool; json_t *args;
                 char *device; char *capability; int64_t deadline; } rs_ev_tool_requested;
typedef struct { char *call_id; char *device_id; char *router; } rs_ev_tool_dispatched;
typedef struct { char *call_id; char *step_id; int64_t attempt; json_t *output;
                 char *device_id; } rs_ev_tool_completed;
typedef struct { char *call_id; char *step_id; int64_t attempt; rs_err error;
                 char *device_id; } rs_ev_tool_failed;
typedef struct { char *call_id; char *step_id; int64_t attempt; } rs_ev_tool_timed_out;
typedef struct { char *timer_id; rs_timer_purpose purpose; char *step_id; int64_t attempt;
                 int64_t due_at; } rs_ev_timer_scheduled;
typedef struct { char *timer_id; rs_timer_purpose purpose; char *step_id; int64_t attempt;
                 int64_t due_at; } rs_ev_timer_fired;
typedef struct { char *signal_id; char *name; json_t *payload; char *step_id; } rs_ev_signal_received;
typedef struct { char *reason; } rs_ev_run_cancel_requested;
typedef struct { json_t *output; } rs_ev_run_completed;
typedef struct { rs_err error; } rs_ev_run_failed;
typedef struct { char *reason; } rs_ev_run_cancelled;
typedef struct { int64_t timeout_s; } rs_ev_run_timed_out;
/* http step: the request the executor performs (body: any JSON, NULL =
 * none; hmac {secret, header} names a secret of the run's tenant, never
 * holds it; header values may hold "{{secrets.NAME}}" references, which
 * the executor substitutes at call time). Events recorded before v1.2 may
 * carry hmac.secret_env: they still decode; the executor refuses them. */
typedef struct { char *effect_id; char *step_id; int64_t attempt; char *method; char *url;
                 json_t *headers; json_t *body; int64_t timeout_ms; int64_t deadline;
                 json_t *hmac; int64_t max_response_bytes;
                 int64_t max_redirects; /* 0/absent: not followed */ } rs_ev_http_requested;
typedef struct { char *effect_id; char *step_id; int64_t attempt; int64_t status;
                 json_t *headers; json_t *body; int64_t duration_ms; } rs_ev_http_completed;
/* llm step: one model turn. messages is the whole chat so far (a retry or
 * a recovery needs nothing else); model {base_url, model, api_key_secret}
 * names a secret of the run's tenant, never the key (api_key_env in
 * events before v1.2: decoded, refused by the executor). */
typedef struct { char *effect_id; char *step_id; int64_t attempt; int64_t turn;
                 json_t *messages; json_t *model; json_t *tools; int64_t max_tokens;
                 json_t *temperature; int64_t deadline; } rs_ev_llm_requested;
typedef struct { char *effect_id; char *step_id; int64_t turn; int64_t index;
                 char *text; } rs_ev_llm_delta;
typedef struct { char *effect_id; char *step_id; int64_t turn; json_t *message;
                 json_t *usage; char *finish_reason; } rs_ev_llm_message;
/* A child run the step starts (its run.start is the effect): key is the
 * branch name (parallel), the element's index (foreach) or "run"; agent /
 * version / scope / input are exactly what the child is started with
 * (version NULL: the latest, resolved when the child is created). */
typedef struct { char *step_id; int64_t attempt; char *child_run_id; char *key;
                 char *agent; char *version; char *scope; json_t *input; } rs_ev_child_started;
/* The child's terminal event, reported back as a child.done command:
 * status completed | failed | cancelled | timed_out; output (null unless
 * completed); error (the child's run error, absent when completed). */
typedef struct { char *step_id; int64_t attempt; char *child_run_id; char *key;
                 char *status; json_t *output; json_t *error; } rs_ev_child_finished;

/* One encode (struct -> new json_t data object) and one decode (data
 * object -> struct, with a precise error naming the field) per type.
 * encode returns NULL if the struct breaks the contract (a required member
 * NULL, an attempt < 1, ...) or memory ran out; it never takes ownership.
 * decode zeroes *d first; on success *d holds new allocations/references
 * that rs_ev_<type>_free() releases, on failure it holds nothing. Unknown
 * data fields are ignored (forward compatibility, docs/events.md). */
#define RS_EVENT_CODEC(name) \
	json_t *rs_ev_##name##_encode(const rs_ev_##name *d); \
	rs_status rs_ev_##name##_decode(json_t *data, rs_ev_##name *d, char *err, size_t cap); \
	void rs_ev_##name##_free(rs_ev_##name *d);
RS_EVENT_CODEC(run_created)
RS_EVENT_CODEC(run_started)
RS_EVENT_CODEC(step_started)
RS_EVENT_CODEC(step_completed)
RS_EVENT_CODEC(step_failed)
RS_EVENT_CODEC(step_retry_scheduled)
RS_EVENT_CODEC(tool_requested)
RS_EVENT_CODEC(tool_dispatched)
RS_EVENT_CODEC(tool_completed)
RS_EVENT_CODEC(tool_failed)
RS_EVENT_CODEC(tool_timed_out)
RS_EVENT_CODEC(timer_scheduled)
RS_EVENT_CODEC(timer_fired)
RS_EVENT_CODEC(signal_received)
RS_EVENT_CODEC(run_cancel_requested)
RS_EVENT_CODEC(run_completed)
RS_EVENT_CODEC(run_failed)
RS_EVENT_CODEC(run_cancelled)
RS_EVENT_CODEC(run_timed_out)
RS_EVENT_CODEC(http_requested)
RS_EVENT_CODEC(http_completed)
RS_EVENT_CODEC(llm_requested)
RS_EVENT_CODEC(llm_delta)
RS_EVENT_CODEC(llm_message)
RS_EVENT_CODEC(child_started)
RS_EVENT_CODEC(child_finished)
#undef RS_EVENT_CODEC

/* A whole event: envelope + typed data. */
typedef struct {
	rs_event_type type;
	char run_id[40];
	char tenant[72];
	uint64_t runseq;          /* 1, 2, 3, ... per run */
	int64_t time_ms;
	char traceparent[64];     /* W3C, "" if none */
	char *source;             /* decode: allocated; encode: NULL means default */
	union {
		rs_ev_run_created run_created;
		rs_ev_run_started run_started;
		rs_ev_step_started step_started;
		rs_ev_step_completed step_completed;
		rs_ev_step_failed step_failed;
		rs_ev_step_retry_scheduled step_retry_scheduled;
		rs_ev_tool_requested tool_requested;
		rs_ev_tool_dispatched tool_dispatched;
		rs_ev_tool_completed tool_completed;
		rs_ev_tool_failed tool_failed;
		rs_ev_tool_timed_out tool_timed_out;
		rs_ev_timer_scheduled timer_scheduled;
		rs_ev_timer_fired timer_fired;
		rs_ev_signal_received signal_received;
		rs_ev_run_cancel_requested run_cancel_requested;
		rs_ev_run_completed run_completed;
		rs_ev_run_failed run_failed;
		rs_ev_run_cancelled run_cancelled;
		rs_ev_run_timed_out run_timed_out;
		rs_ev_http_requested http_requested;
		rs_ev_http_completed http_completed;
		rs_ev_llm_requested llm_requested;
		rs_ev_llm_delta llm_delta;
		rs_ev_llm_message llm_message;
		rs_ev_child_started child_started;
		rs_ev_child_finished child_finished;
	} d;
} rs_event;

/* Encode ev as a CloudEvent (compact, sorted keys). *out malloc'd, caller
 * frees. The id is "<run_id>-<runseq>". */
rs_status rs_event_encode(const rs_event *ev, char **out, size_t *len);
/* The same bytes into a caller-owned buffer *buf of capacity *cap, grown
 * with realloc as needed (start with NULL/0; free(*buf) when done), so a
 * hot loop reuses one allocation. *len excludes the NUL written after it. */
rs_status rs_event_encode_into(const rs_event *ev, char **buf, size_t *cap, size_t *len);
/* The reference encoding through a jansson tree (tests compare the two). */
rs_status rs_event_encode_tree(const rs_event *ev, char **out, size_t *len);

/* Decode and validate a CloudEvent. On error, err names the problem and
 * field (e.g. "data.step_id: missing"), and ev holds nothing to free.
 * RS_ENOTFOUND means a valid envelope whose type "runstream.<noun>.<verb>"
 * this build does not know (a newer producer): ev->type is RS_EV__COUNT,
 * run_id/tenant/runseq/time_ms/traceparent are set (so a consumer can
 * account for the runseq), nothing to free; consumers skip such events.
 * Any other failure is RS_EINVAL. */
rs_status rs_event_decode(const char *buf, size_t len, rs_event *ev, char *err, size_t cap);

/* Free what decode allocated (or what the caller set with strdup/json
 * references following the same rules). Leaves ev zeroed. */
void rs_event_free(rs_event *ev);

/* The field table of an event type's data, and of rs_err. rs_event.c owns
 * them: the one definition of each type's data; the fast decoder
 * (rs_event_fast.c) builds its name-sorted views from these. Static
 * storage. rs_event_fields returns NULL for a type out of range. */
const rs_field *rs_event_fields(rs_event_type t, size_t *n);
const rs_field *rs_err_fields(size_t *n);

/* rs_err <-> {"code","message","class","retryable"[,"step_id"]}. encode
 * returns NULL if e is incomplete; decode allocates (rs_err_free). */
json_t *rs_err_encode(const rs_err *e);
rs_status rs_err_decode(json_t *v, rs_err *e, const char *prefix, char *err, size_t cap);
void rs_err_free(rs_err *e);

/* 1 if s is a W3C traceparent "vv-<32 hex>-<16 hex>-ff" (lowercase). */
int rs_traceparent_valid(const char *s);

/* Subject "runs.<tenant>.<run_id>" into buf. */
void rs_event_subject(const char *tenant, const char *run_id, char *buf, size_t cap);

/* The event id "<run_id>-<runseq>" into buf (>= 64). */
void rs_event_id(const char *run_id, uint64_t runseq, char *buf, size_t cap);

#endif
