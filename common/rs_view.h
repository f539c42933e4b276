/*
 * rs_view.h - ONE fold of a run's events into its view: the run, its steps
 * per attempt, its tool calls, its timers and what it waits on.
 *
 * Pure: no I/O, no clock, no globals. rs_view_apply() takes decoded events
 * (rs_event.h) in runseq order and keeps the view a reader needs; the API
 * answers GET /v1/runs/{id} and Prefer: wait from it (services/api/views.c),
 * runctl's timeline reads its status from it, and the projector folds its
 * rows with it (services/projector/fold.c, a view resumed per batch from
 * the stored row: rs_view_resume below; docs/projector.md).
 *
 * The status rule is the one docs/projector.md documents (the one
 * GET /v1/runs/{id} has always shown): run.created -> queued; run.started,
 * step.started of a kind other than signal, step.completed/failed,
 * tool.completed/failed/timed_out, signal.received, timer.fired (sleep,
 * retry) -> running; step.started of kind signal, step.retry_scheduled,
 * tool.requested/dispatched, timer.scheduled (sleep, retry) -> waiting;
 * the terminal events -> their status, which nothing changes afterwards.
 * (common/rs_run.c keeps its own, stricter, rule for deciding; it is not a
 * reader's rule.) What the run waits on is derived, not stored: an open
 * tool call, else a pending sleep/retry timer, else a signal step without
 * its signal, else an open http/llm effect, else nothing.
 *
 * Memory is bounded: values are bounded by the event codec
 * (RS_RUN_MAX_VALUE_BYTES) and a view keeps at most RS_VIEW_MAX_STEPS step
 * attempts, RS_VIEW_MAX_CALLS tool calls and RS_VIEW_MAX_TIMERS timers;
 * past a cap newer rows are not kept and the JSON says so ("truncated").
 *
 * Ownership: a view owns everything it points to (strings copied, JSON
 * values referenced with json_incref: events' values are never changed in
 * place, so sharing them is safe). Not thread-safe: the caller locks.
 */
#ifndef RS_VIEW_H
#define RS_VIEW_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_event.h"
#include "rs_status.h"

#define RS_VIEW_MAX_STEPS  1000
#define RS_VIEW_MAX_CALLS  1000
#define RS_VIEW_MAX_TIMERS 256
#define RS_VIEW_MAX_CHILDREN 1000

/* Which members of a row or of the run the fold wrote (bits of `set`):
 * a resumed view (rs_view_resume) tells its reader what changed. */
enum {
	RS_VIEW_SET_STATUS = 1u << 0, RS_VIEW_SET_LATEST = 1u << 1,
	RS_VIEW_SET_OUTPUT = 1u << 2, RS_VIEW_SET_ERROR = 1u << 3,
	RS_VIEW_SET_NEXT = 1u << 4, RS_VIEW_SET_FINISHED = 1u << 5,
	RS_VIEW_SET_DURATION = 1u << 6, RS_VIEW_SET_DEVICE = 1u << 7,
	RS_VIEW_SET_ROUTER = 1u << 8, RS_VIEW_SET_DISPATCHED = 1u << 9,
	RS_VIEW_SET_ATTEMPTS = 1u << 10, RS_VIEW_SET_CURRENT = 1u << 11,
	RS_VIEW_SET_TIMEOUT = 1u << 12, RS_VIEW_SET_CANCEL = 1u << 13,
	RS_VIEW_SET_STARTED = 1u << 14,
};

typedef struct {
	char *step_id;
	char *kind;
	int64_t attempt;
	const char *status;     /* running completed failed cancelled timed_out;
	                         * NULL in a stub (not known) */
	int latest;             /* the highest attempt of its step */
	json_t *input, *output, *error;
	char *next_step;
	int64_t started_ms, finished_ms;   /* 0: not yet */
	int64_t duration_ms;               /* -1: none */
	int64_t updated_ms;                /* last event that changed it */
	int stub;               /* resumed views only: started before the resume
	                         * point; only the members in `set` are known */
	unsigned set;           /* RS_VIEW_SET_* written by this fold */
} rs_view_step;

typedef struct {
	char *call_id, *step_id, *tool, *device_id, *capability, *router;
	int64_t attempt;
	const char *status;     /* requested dispatched completed failed timed_out cancelled */
	json_t *args, *output, *error;
	int64_t requested_ms, dispatched_ms, finished_ms, deadline_ms;  /* 0: none */
	int64_t attempts;       /* number of tool.dispatched (in a stub: since
	                         * the resume point) */
	int64_t updated_ms;     /* last event that changed it */
	int stub;               /* as rs_view_step's */
	unsigned set;
} rs_view_call;

typedef struct {
	char *timer_id, *step_id;
	rs_timer_purpose purpose;
	int64_t attempt, due_ms;
	int fired;
} rs_view_timer;

/* A child run started by a parallel / foreach / run step (child.started),
 * and how it ended (child.finished). */
typedef struct {
	char *run_id, *agent, *key, *step_id;
	char *status;           /* running, or the child's terminal status */
	int64_t started_ms, finished_ms;   /* 0: not yet */
} rs_view_child;

typedef struct {
	char run_id[40];
	char tenant[72];
	uint64_t last_seq;      /* runseq of the last event folded (0: none) */
	int complete;           /* every event from runseq 1 to last_seq folded */
	const char *status;     /* "" before run.created */
	char *agent, *version, *idempotency_key, *cancel_reason, *current_step;
	json_t *input, *output, *error;
	int64_t timeout_s;      /* 0: none */
	int64_t created_ms, started_ms, finished_ms, updated_ms;
	/* open effects of the current step (http.requested / llm.requested
	 * not yet answered by the step's end): what the run waits on */
	char *effect_kind;      /* "http" | "llm" | NULL */
	char *effect_id;
	/* the signal the current signal step waits for (NULL: none) */
	char *wait_signal_step;
	char *wait_signal_name;
	rs_view_step *steps;
	size_t nsteps, capsteps;
	rs_view_call *calls;
	size_t ncalls, capcalls;
	rs_view_timer *timers;
	size_t ntimers, captimers;
	rs_view_child *children;
	size_t nchildren, capchildren, children_running;
	/* where the run comes from (run.created, v1.3): a child's parent and
	 * the top of its tree, a fork's source, a schedule; its tags */
	char *parent_run_id, *root_run_id, *forked_from, *schedule_id;
	int64_t from_seq;
	json_t *tags;
	int steps_truncated, calls_truncated, timers_truncated, children_truncated;
	int resumed;            /* started by rs_view_resume */
	int unbounded;          /* no RS_VIEW_MAX_STEPS / _CALLS caps: set by a
	                         * reader whose input is bounded (the projector's
	                         * batch), and by rs_view_resume */
	unsigned set;           /* RS_VIEW_SET_* of the run's own members */
} rs_view;

void rs_view_init(rs_view *v);
void rs_view_free(rs_view *v);

/* Fold one event. Events must come in runseq order: the first must be
 * runseq 1 (run.created) and each next one last_seq + 1, else nothing is
 * folded and RS_EINVAL is returned (a duplicate, runseq <= last_seq, is
 * RS_EEXIST and ignored) so a caller can tell a gap from a repeat. */
rs_status rs_view_apply(rs_view *v, const rs_event *ev);

/* Start v in the middle of a run's log, for a reader that keeps what the
 * events up to last_seq made (the projector's rows, docs/projector.md):
 * v knows the run's id, tenant, status and last_seq, nothing else
 * (complete = 0). The next event must be last_seq + 1. An event about a
 * step attempt or tool call that is not in v (it began before the resume
 * point) makes a stub row: its key, and only the members the event wrote
 * (marked in `set`); the run's members written are marked in v->set.
 * Everything else follows the same rules as a view from runseq 1, so
 * folding a log in pieces and merging what each piece wrote gives what
 * folding it whole gives (tests/unit/projector/test_fold.c). A resumed
 * view is unbounded (its reader bounds the events it folds) and may hold
 * stubs: rs_view_json() is not meant for it. status: as stored ("queued",
 * "running", ...; anything else is taken as "running"). */
void rs_view_resume(rs_view *v, const char *run_id, const char *tenant, uint64_t last_seq,
                    const char *status);

int rs_view_terminal(const rs_view *v);

/* The step (NULL: none) and attempt (0: none) an event is about, as the
 * fold reads them: step, tool, timer, signal, http, llm and child events,
 * and run.failed (its error's step). For readers that show events one by
 * one (runctl's timeline rows). */
void rs_view_event_step(const rs_event *ev, const char **step, int64_t *attempt);

/* The status rule alone (above): the status after ev given cur ("" or
 * "none" before run.created). Returns a static string or cur. For readers
 * that keep no view (runctl's timeline summary). */
const char *rs_view_status_next(const char *cur, const rs_event *ev);

/* What the run waits on: "tool", "timer", "signal", "http", "llm",
 * "children" (child runs of a parallel / foreach / run step) or NULL
 * (nothing: running, finished, or not started). */
const char *rs_view_waits_on(const rs_view *v);

/* The view as GET /v1/runs/{id} answers it (docs/api.md,
 * docs/openapi.yaml): run_id, status, agent, version, input, output,
 * error, idempotency_key, cancel_reason, timeout_s, created_at,
 * started_at, finished_at, updated_at, last_seq, current_step, steps,
 * tool_calls, plus waiting_on and (when a cap was hit) truncated. New
 * reference. */
json_t *rs_view_json(const rs_view *v);

#endif
