/*
 * rs_cmd.h - internal message codecs: commands to the orchestrator, tool
 * calls to the routers, timers. Internal (not the public contract), but
 * versioned the same way: additive changes only.
 *
 * Commands: stream CMDS, subject cmd.<tenant>.<run_id>, JSON with "type":
 *   run.start      {run_id, tenant, agent, version?, input, idempotency_key?, traceparent?,
 *                   forked_from?, from_seq?, reuse?, schedule_id?, schedule_tick?}
 *                  (forked_from/from_seq/reuse: a fork, copied to run.created)
 *                  (version NULL/absent: latest, resolved by the API; input an object)
 *   tool.result    {run_id, tenant, call_id, device_id?, output | error} (exactly one)
 *   tool.delivered {run_id, tenant, call_id, device_id, router?}
 *   signal         {run_id, tenant, signal_id, name, payload}
 *   cancel         {run_id, tenant, reason?}
 *   timer.fire     {run_id, tenant, timer_id, purpose, step_id?, attempt?, due_at}
 *   effect.result  {run_id, tenant, effect_id, output | error, retry_after_ms?}
 *                  (from the executor: an http/llm effect finished; exactly
 *                  one of output and error; retry_after_ms only with error)
 *   llm.chunk      {run_id, tenant, effect_id, index, text}
 *                  (from the executor: streamed model text, index 0, 1, ...)
 *   run.continue   {run_id, tenant, after_seq}
 *                  (from the orchestrator's reconciliation: the run's last
 *                  event, runseq after_seq, is not a resting state; decide
 *                  finishes the decision a crash cut short, see rs_run.c)
 *   run.admit      {run_id, tenant}
 *                  (from the orchestrator's admission gate: a queued run that
 *                  waited for a concurrency slot has one now; decide starts it)
 *   run.start may also carry tags (a string map, recorded on run.created)
 *                  and parent_run_id, root_run_id, scope,
 *                  parent_step_id (a child run, started by its parent's
 *                  orchestrator as an effect; recorded on run.created)
 *   child.done     {run_id, tenant, child_run_id, status, output, error?}
 *                  (to a parent: its child run ended; sent by the child's
 *                  orchestrator as an effect of the terminal event)
 * Headers: Runstream-Type = type; Nats-Msg-Id = rs_cmd_msg_id().
 *
 * Tool calls: stream TOOLCALLS, subject toolcalls.<tenant>.<call_id>:
 *   {"type":"tool.call", call_id, run_id, tenant, step_id, tool, args,
 *    attempt, deadline, device?, capability?}
 *   {"type":"tool.cancel", call_id, run_id, tenant}
 * Timers: stream TIMERS, subject timers.<tenant>.<run_id>, a timer.fire
 * command body (the timer fires by forwarding it to CMDS when due).
 *
 * Ownership as in rs_event.h: decode allocates, rs_cmd_free releases.
 */
#ifndef RS_CMD_H
#define RS_CMD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "rs_event.h"
#include "rs_status.h"

typedef enum {
	RS_CMD_RUN_START = 0,
	RS_CMD_TOOL_RESULT,
	RS_CMD_TOOL_DELIVERED,
	RS_CMD_SIGNAL,
	RS_CMD_CANCEL,
	RS_CMD_TIMER_FIRE,
	RS_CMD_EFFECT_RESULT,
	RS_CMD_LLM_CHUNK,
	RS_CMD_RUN_CONTINUE,
	RS_CMD_RUN_ADMIT,
	RS_CMD_CHILD_DONE,
	RS_CMD__COUNT
} rs_cmd_type;

const char *rs_cmd_type_name(rs_cmd_type t);  /* "run.start" ... */
rs_status rs_cmd_type_parse(const char *s, rs_cmd_type *t);

typedef struct {
	rs_cmd_type type;
	char run_id[40];
	char tenant[72];
	char traceparent[64];       /* "" if none */
	/* run.start */
	char *agent, *version, *idempotency_key;
	json_t *input;
	char *forked_from;          /* run.start of a fork: the source run, its */
	int64_t from_seq;           /* prefix length, and the outputs reused */
	json_t *reuse;              /* ([{step_id, output, seq}], rs_fork.h) */
	char *schedule_id;          /* run.start of a schedule's tick: */
	int64_t schedule_tick;      /* its id and the tick (Unix ms) */
	int64_t tenant_limit;       /* run.start: the tenant's running-run limit
	                             * in force (set by the orchestrator) */
	/* tool.result / tool.delivered */
	char *call_id, *device_id, *router;
	json_t *output;             /* tool.result success */
	int has_error;              /* tool.result failure: error below */
	rs_err error;
	/* signal */
	char *signal_id, *name;
	json_t *payload;
	/* cancel */
	char *reason;
	/* timer.fire */
	char *timer_id, *step_id;
	rs_timer_purpose purpose;
	int64_t attempt, due_at;
	/* effect.result (output / has_error + error above) and llm.chunk */
	char *effect_id, *text;
	int64_t index;              /* llm.chunk, >= 0 */
	int64_t retry_after_ms;     /* effect.result error: 0 = none */
	/* run.continue */
	int64_t after_seq;          /* the run's last runseq when it was found not at rest */
	/* run.start of a child run */
	char *parent_run_id, *root_run_id, *scope, *parent_step_id;
	json_t *tags;               /* run.start: string map (POST /v1/runs tags) or NULL */
	/* child.done (output above) */
	char *child_run_id, *child_status;
	json_t *child_error;        /* object or NULL */
} rs_cmd;

/* Encode (compact, sorted keys); *out malloc'd, caller frees. */
rs_status rs_cmd_encode(const rs_cmd *c, char **out, size_t *len);
/* Decode + validate; err names the field on failure ("call_id: missing").
 * Every command may carry traceparent. Unknown members are ignored (additive
 * versioning); an unknown "type" is RS_ENOTFOUND, other failures RS_EINVAL.
 * Encode refuses (RS_EINVAL) a command decode would reject. */
rs_status rs_cmd_decode(const char *buf, size_t len, rs_cmd *c, char *err, size_t cap);
void rs_cmd_free(rs_cmd *c);

/* "cmd.<tenant>.<run_id>" */
void rs_cmd_subject(const char *tenant, const char *run_id, char *buf, size_t cap);
/* The KV `runs` subject of a command's copy, its second way to arrive
 * (written by the api, deleted by the orchestrator once applied):
 * "$KV.runs.<tenant>.<run_id>.cmd.<signal_id>" for a signal,
 * "...cmd.cancel" for a cancel; "" for other commands. */
void rs_cmd_copy_subject(const rs_cmd *c, char *buf, size_t cap);
/* Deterministic de-duplication id: start-<run_id>, result-<call_id>,
 * delivered-<call_id>-<device_id>, signal-<signal_id>, cancel-<run_id>,
 * timer-<timer_id>, result-<effect_id>, chunk-<effect_id>-<index>,
 * continue-<run_id>-<after_seq>, admit-<run_id>, childdone-<child_run_id>. */
void rs_cmd_msg_id(const rs_cmd *c, char *buf, size_t cap);

typedef struct {
	int cancel;                 /* 0 tool.call, 1 tool.cancel */
	char *call_id, *run_id, *tenant, *step_id, *tool, *device, *capability;
	json_t *args;
	int64_t attempt, deadline;
} rs_toolcall;

rs_status rs_toolcall_encode(const rs_toolcall *t, char **out, size_t *len);
rs_status rs_toolcall_decode(const char *buf, size_t len, rs_toolcall *t, char *err, size_t cap);
void rs_toolcall_free(rs_toolcall *t);

#endif
