/*
 * rs_run.h - the run state machine: pure functions, no I/O, no clock.
 *
 *   evolve(state, event) -> state        rs_run_evolve()
 *   decide(state, command, now) -> events + effects   rs_run_decide()
 *
 * The orchestrator, `runctl replay --check` and the tests link this same
 * code. decide() never mutates the state: the caller appends the returned
 * events to the log and, only once they are durable, evolves the state with
 * them and performs the effects (timers to schedule, tool calls/cancels to
 * publish). Effects are idempotent downstream (de-duplicated by id), so
 * they may be performed more than once: rs_run_pending_effects() re-derives
 * them from the state, which is how a crash between "append" and "effects"
 * is healed when the command is redelivered.
 */
#ifndef RS_RUN_H
#define RS_RUN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "rs_agent.h"
#include "rs_cmd.h"
#include "rs_event.h"
#include "rs_status.h"

typedef enum {
	RS_RUN_NONE = 0,   /* no events yet */
	RS_RUN_QUEUED,     /* run.created, not yet started */
	RS_RUN_RUNNING,
	RS_RUN_WAITING,    /* on a tool call, a timer or a signal */
	RS_RUN_COMPLETED,
	RS_RUN_FAILED,
	RS_RUN_CANCELLED,
	RS_RUN_TIMED_OUT
} rs_run_status;

const char *rs_run_status_name(rs_run_status s); /* "queued", "running", ... */
int rs_run_status_terminal(rs_run_status s);

typedef struct rs_run rs_run; /* opaque */

rs_run *rs_run_new(void);            /* empty state; caller frees */
void rs_run_free(rs_run *r);
/* Apply one event. RS_EINVAL if ev->runseq is not last_seq + 1 or the
 * event does not fit the state (the message says why). */
rs_status rs_run_evolve(rs_run *r, const rs_event *ev, char *err, size_t cap);

rs_run_status rs_run_get_status(const rs_run *r);
uint64_t rs_run_last_seq(const rs_run *r);
const char *rs_run_get_agent(const rs_run *r);    /* NULL before run.created */
const char *rs_run_get_version(const rs_run *r);
const char *rs_run_get_tenant(const rs_run *r);
const char *rs_run_get_id(const rs_run *r);
/* A child run's scope (run.created.scope: the list of steps of its agent
 * it walks, rs_agent_scope) and parent; NULL for a top-level run. */
const char *rs_run_get_scope(const rs_run *r);
const char *rs_run_get_parent(const rs_run *r);

/* A JSON snapshot of the state (status, input, step outputs, attempts,
 * pending tool calls and timers, output/error). New reference.
 * Keys: run_id, tenant, agent, version, status, input, output, error,
 * last_seq, created_at, started_at, finished_at, current_step,
 * step_executions, steps {id: {status, attempts: [{attempt, input, output,
 * error, started_at, finished_at}], output}}, tool_calls [{call_id,
 * step_id, attempt, tool, device, capability, device_id, status,
 * requested_at, dispatched_at, finished_at}], pending_timers [{timer_id,
 * purpose, step_id, attempt, due_at}], signals [{signal_id, name, payload,
 * consumed_by, received_at}], children [{child_run_id, step_id, attempt,
 * key, agent, version, scope, status}] (when it has any), parent_run_id /
 * root_run_id /
 * scope (child runs only), cancel_reason (if any). Times are Unix ms
 * (null when not yet). Dump with rs_json_dump for deterministic bytes. */
json_t *rs_run_view(const rs_run *r);

typedef struct {
	rs_event *events;     /* runseq last_seq+1.., time = now */
	size_t nevents;
	rs_cmd *timers;       /* timer.fire bodies to put on TIMERS */
	size_t ntimers;
	rs_toolcall *calls;   /* tool.call / tool.cancel to put on TOOLCALLS */
	size_t ncalls;
	rs_cmd *cmds;         /* commands to other runs, for CMDS: run.start of a
	                       * child, cancel of a child, child.done to the
	                       * parent (each with its rs_cmd_msg_id) */
	size_t ncmds;
	rs_run *after;        /* the state with every event applied (decide's
	                       * scratch); NULL when there are no events. Owned:
	                       * take it (and set NULL) to skip evolving the
	                       * events again; rs_decision_free frees it. */
	int more;             /* the decision stopped at RS_RUN_MAX_STEPS_PER_DECISION
	                       * with more owed: append these events, then decide
	                       * the same command again (it has not been carried
	                       * out if the first part was a continuation) */
} rs_decision;

/* Bounds of one decision (hostile definitions): steps begun by one
 * decision (the rest is owed to the next: `more`), and the JSON size of
 * any rendered value or recorded output (a bigger one fails its step with
 * the permanent error `too_large`; an event must stay under the NATS max
 * payload, 1 MiB by default, with its envelope). */
#define RS_RUN_MAX_STEPS_PER_DECISION 100
#define RS_RUN_MAX_VALUE_BYTES (512 * 1024)

/* Decide what a command means for the run. agent is the run's pinned
 * definition (the caller resolves it: from the command for run.start, from
 * run.created otherwise). A duplicate or stale command yields an empty
 * decision (RS_OK, no events).
 * instance names the orchestrator (run.started.instance).
 * Details of this implementation (rs_run.c):
 *  - every decision is evolved into a scratch copy of r as it is built, so
 *    its events always evolve in order on r;
 *  - ids are deterministic: call_id "<run_id>-<step_id>-<exec>-<attempt>",
 *    timer_id "<run_id>.<purpose>.<step_id>.<exec>.<attempt>" or
 *    "<run_id>.run_timeout", where exec counts step.started events;
 *  - a command other than run.start on a run with no events: RS_ENOTFOUND;
 *    any command on a finished run: RS_OK, no events;
 *  - run.start on a queued run (run.created only) starts it;
 *  - timer.fire acts on the timer as recorded in the state (the command
 *    only names it); before due_at it decides nothing (see
 *    rs_run_timer_due);
 *  - agent may be NULL for cancel and tool.delivered; otherwise it must be
 *    the version the run is pinned to (RS_EINVAL if not). */
rs_status rs_run_decide(const rs_run *r, const rs_agent *agent, const rs_cmd *cmd,
                        int64_t now_ms, const char *instance, rs_decision *out,
                        char *err, size_t cap);

/* 1 if nothing is owed: the run is finished, or waits with its timer and
 * effect in place. A run not at rest had a decision cut short (a crash
 * between two appends): any decision for it, run.continue included,
 * finishes that first. agent: the run's pinned definition. */
int rs_run_at_rest(const rs_run *r, const rs_agent *agent);

/* Effects implied by the current state: pending timers and tool calls (and
 * cancels owed for a finished run). */
rs_status rs_run_pending_effects(const rs_run *r, rs_decision *out);

/* The timers due and the tool calls requested more than grace ms before
 * now that are still pending / undispatched, and the tool calls dispatched
 * more than 2 * grace ms before now still unanswered (out: timers and
 * calls only).
 * The orchestrator publishes them again, under new message ids, when the
 * reconcile sweep finds a run resting too long (services/orchestrator/
 * reconcile.c): the safety net for a message the stream lost. */
void rs_run_late_effects(const rs_run *r, int64_t now, int64_t grace, rs_decision *out);

void rs_decision_free(rs_decision *d);

/* --- additions (state machine implementation) --- */

/* Deep copy of a state (caller frees). decide() works on one. */
rs_run *rs_run_clone(const rs_run *r);

/* The step the run is at (running, waiting, or failed and waiting for its
 * retry); NULL before the first step and once the run is finished. */
const char *rs_run_current_step(const rs_run *r);

/* Due time of a pending timer. RS_ENOTFOUND if the timer is unknown,
 * already fired or superseded. A timer.fire that arrives before due_at
 * decides nothing (RS_OK, zero events): the orchestrator then puts the
 * fire back on TIMERS for the remaining time (due - now). */
rs_status rs_run_timer_due(const rs_run *r, const char *timer_id, int64_t *due);

/* Admission (concurrency keys, tenant limit): 1 if the run was created
 * gated, i.e. it waits queued for a run.admit and holds a slot of the
 * gate until it finishes. *key: the rendered concurrency key (NULL when the
 * agent has no concurrency, only the tenant limit applies); *limit its
 * limit; *tenant_limit the tenant's limit recorded at creation (0: none).
 * Borrowed, valid while r is. */
int rs_run_gate(const rs_run *r, const char **key, int64_t *limit, int64_t *tenant_limit);

/* Retry backoff after failed attempt `attempt` (1-based):
 * min(max_backoff_ms, initial_backoff_ms * multiplier^(attempt-1)). */
int64_t rs_run_backoff_ms(const rs_retry *retry, int64_t attempt);

#endif
