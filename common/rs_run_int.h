/*
 * rs_run_int.h - private to the run state machine's files: rs_run.c (the
 * state, its look-ups, pending effects and the view), rs_run_evolve.c (the
 * fold of events), rs_run_emit.c (what a decision writes), rs_run_settle.c
 * (the step engine), rs_run_decide.c (command handlers), rs_run_effects.c
 * (server-side effects: http and llm steps) and rs_run_children.c (child
 * runs of parallel, foreach and run steps). Nothing outside these files
 * includes it: the public interface is rs_run.h.
 *
 * It holds what they share: the state (struct rs_run and its records),
 * the decision context (dctx), a few inline helpers, and the functions one
 * file calls in another. Those carry the rs_run_ prefix like the public
 * ones, and are declared here only.
 *
 * Allocation failure aborts (Redis-style), as everywhere in rs_run*.c.
 */
#ifndef RS_RUN_INT_H
#define RS_RUN_INT_H

#include "rs_run.h"
#include "rs_mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* The state                                                           */
/* ------------------------------------------------------------------ */

#define ID_CAP 192
/* The executor enforces an effect's deadline itself and reports a timeout;
 * the state machine's own timer is the backstop (executor down or lost),
 * so it fires a little later and normally finds the result already in. */
#define EFFECT_GRACE_MS 5000
#define RETRY_AFTER_MAX_MS 3600000

typedef enum {
	CALL_REQUESTED = 0, CALL_DISPATCHED, CALL_COMPLETED, CALL_FAILED,
	CALL_TIMED_OUT, CALL_CANCELLED  /* outstanding when the run ended: owes a tool.cancel */
} call_status;

typedef struct {
	char *call_id, *step_id, *tool, *device, *capability, *device_id;
	json_t *args;
	json_t *output, *error;     /* the result (llm steps feed it to the model) */
	int64_t attempt, deadline, requested_at, dispatched_at, finished_at;
	call_status status;
} run_call;

typedef enum { TIMER_PENDING = 0, TIMER_FIRED, TIMER_CANCELLED } timer_state;

typedef struct {
	char *timer_id, *step_id;
	rs_timer_purpose purpose;
	int64_t attempt, due_at;
	timer_state state;
} run_timer;

typedef struct {
	char *signal_id, *name;
	char *consumed_by;       /* step id; NULL while buffered */
	json_t *payload;
	int64_t received_at;
} run_signal;

/* A child run started by a parallel, foreach or run step (child.started). */
typedef struct {
	char *child_run_id, *step_id, *key, *agent, *version, *scope;
	json_t *input;
	json_t *output, *error;     /* child.finished */
	char *status;               /* child.finished: the child's terminal status */
	int64_t attempt, exec, index;  /* index: order of start within the attempt */
	int done;                   /* child.finished recorded */
	int cancel_owed;            /* the parent stopped waiting: owes a cancel */
} run_child;

struct rs_run {
	rs_run_status status;
	uint64_t last_seq;
	char run_id[40], tenant[72], traceparent[64];
	char *agent, *version, *idempotency_key, *instance, *cancel_reason;
	json_t *input, *output, *error;
	int64_t timeout_s, max_steps;
	int64_t created_at, started_at, finished_at;
	int64_t execs;              /* step.started count (max_steps) */

	/* The step attempt in progress (or last finished: see cur_done). */
	char *cur_step;
	int cur_kind;               /* rs_step_kind, -1 if none */
	char *cur_signal;           /* signal steps: the name waited for */
	int cur_signal_taken;       /* a signal was consumed at receipt */
	int64_t cur_attempt, cur_exec, cur_started_at;
	int cur_done;

	/* http / llm step attempt in progress (server-side effects) */
	char *eff_id;               /* the effect awaited; NULL if none */
	int64_t eff_turn;           /* llm: turn of the last llm.requested */
	int64_t eff_last_index;     /* llm: last llm.delta index of eff_id, -1 */
	json_t *llm_messages;       /* llm: chat as last sent (+ the answer); immutable */
	json_t *llm_calls;          /* llm: tool_calls of the last answer, or NULL */
	json_t *llm_usage;          /* llm: tokens summed over the step's turns */

	json_t *last_output;        /* default run output */
	json_t *ctx;                /* template context {"input","steps"} */
	json_t *steps;              /* view: {id: {status, attempts, output}} */

	run_call *calls;
	size_t ncalls;
	run_timer *timers;
	size_t ntimers;
	run_signal *signals;
	size_t nsignals;
	run_child *children;
	size_t nchildren;
	/* a child run: where it reports its end (run.created) */
	char *parent_run_id, *root_run_id, *scope, *parent_step_id;

	/* What the last event leaves to do, as far as the continuation reads
	 * it (rs_run_settle() in rs_run_settle.c): a decision is a chain of events each of
	 * which follows from the state the previous one left, so a chain cut
	 * by a crash is finished from here alone. */
	int last_type;              /* rs_event_type of the last event, -1 if none */
	int64_t group_at;           /* time of the event that opened the last decision */
	char *last_timer;           /* timer.scheduled / timer.fired / step.retry_scheduled */
	char *last_next;            /* step.completed: next_step */
	rs_err last_err;            /* step.failed: its error (run.failed copies it) */
	int last_final;             /* step.failed: final */
	int64_t last_retry_after;   /* step.failed: retry_after_ms */
	int64_t last_attempt, last_due; /* step.retry_scheduled: next attempt, due */
	json_t *last_http;          /* http.completed: {status, headers, body} */
	char *last_finish;          /* llm.message: finish_reason */
	int64_t eff_deadline;       /* http.requested / llm.requested: deadline */

	/* A fork (run.created forked_from): the source's effect-step outputs
	 * to reuse, in order (rs_fork.h), how many were reused, and how many
	 * effect steps (not branch/transform) this run has begun. While every
	 * effect step begun so far was reused, the next one whose id matches
	 * the next entry is reused too; the first that is not ends reuse. */
	char *forked_from;
	int64_t from_seq;
	json_t *reuse;
	int64_t reuse_next, effect_steps;

	/* Admission (run.created): a run with a concurrency limit or a tenant
	 * limit waits queued for run.admit (the orchestrator's gate, gate.c). */
	char *conc_key;
	int64_t conc_limit, tenant_limit;
};

/* ------------------------------------------------------------------ */
/* Small helpers, inline so that each file has them without exporting  */
/* them (allocation failure aborts)                                    */
/* ------------------------------------------------------------------ */

static inline char *
xstrdup(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		rs_oom(0);
	return d;
}

static inline void *
xgrow(void *p, size_t n, size_t size)
{
	if ((p = realloc(p, n * size)) == NULL)
		rs_oom(0);
	return p;
}

static inline void
set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = xstrdup(src);
}

static inline void
set_json(json_t **dst, json_t *src)
{
	json_t *old = *dst;

	*dst = src ? json_incref(src) : NULL;
	json_decref(old);
}

static inline rs_status __attribute__((format(printf, 3, 4)))
fail(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && cap > 0) {
		va_start(ap, fmt);
		vsnprintf(err, cap, fmt, ap);
		va_end(ap);
	}
	return RS_EINVAL;
}

static inline int
call_outstanding(const run_call *c)
{
	return c->status == CALL_REQUESTED || c->status == CALL_DISPATCHED;
}

/* ------------------------------------------------------------------ */
/* The decision context                                                */
/* ------------------------------------------------------------------ */

/*
 * How a decision is built, and why a crash cannot leave one half-written.
 *
 * A decision is one command's chain of events. It is built in two parts:
 *  - the handler of the command (decide_table[]) emits the event that
 *    records the command (run.created, tool.completed, timer.fired, ...:
 *    the events rs_replay_opens_group() names) after checking that the
 *    command still means something;
 *  - rs_run_settle() then emits, one event at a time, what the state owes: each
 *    next event is a function of the state the previous one left (rs_run_owe()
 *    reads the state and the last event it recorded, nothing else).
 * So any prefix of a decision is itself a state from which rs_run_settle()
 * produces exactly the rest of that decision. Every decision begins with
 * rs_run_settle() too: a chain cut by a crash (k of n events appended) is
 * finished, with the same events in the same order, by whatever decision
 * comes next for the run: the redelivered command, a timer, a cold load,
 * or the reconciliation's run.continue. Values that depend on the clock
 * (deadlines, due times, durations) are computed from group_at, the time
 * of the event that opened the decision, not from the clock of whoever
 * finishes it: the finished chain is the one the first decider would have
 * written, and `runctl replay --check` holds it to that.
 */

typedef struct {
	rs_run *s;                 /* scratch state: every emitted event is applied */
	const rs_agent *agent;
	const rs_cmd *cmd;
	int64_t now;               /* envelope time of the events */
	const char *instance;
	rs_decision *out;
	char *err;
	size_t cap;
	int begun;                 /* steps begun by this decision */
} dctx;

/* The decision time: what clock-derived data is computed from. */
#define AT(d) ((d)->s->group_at)

static inline rs_event
new_event(rs_event_type t)
{
	rs_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = t;
	return ev;
}

/* ------------------------------------------------------------------ */
/* Shared by the rs_run*.c files                                       */
/* ------------------------------------------------------------------ */

/* state look-ups, rendering, effects and step ends (rs_run.c, rs_run_emit.c, rs_run_settle.c) */
void rs_run_add_call_effect(const rs_run *r, rs_decision *o, const run_call *call, int cancel);
rs_cmd *rs_run_add_cmd_effect(const rs_run *r, rs_decision *o, rs_cmd_type t, const char *run_id);
void rs_run_attempt_id(const rs_run *s, char *buf, size_t cap, const char *suffix);
json_t *rs_run_attempt_input(dctx *d);
rs_status rs_run_check_current(const rs_run *r, const char *what, const char *step_id,
                               int64_t attempt, char *err, size_t cap);
int rs_run_child_current(const rs_run *r, const run_child *c);
const rs_step *rs_run_step_of(dctx *d, int *idx);
rs_status rs_run_emit(dctx *d, rs_event *ev);
rs_status rs_run_emit_step_completed(dctx *d, json_t *output, int next_idx);
rs_status rs_run_fail_step_code(dctx *d, const rs_step *st, const char *code, rs_errclass cls,
                                const char *msg);
rs_status rs_run_fail_step_effect(dctx *d, const rs_step *st, const rs_err *e,
                                  const char *effect_id, int64_t retry_after_ms);
rs_status rs_run_fail_unrendered(dctx *d, const rs_step *st, json_t *tmpl, const char *what);
run_call *rs_run_find_call(const rs_run *r, const char *call_id);
run_child *rs_run_find_child(const rs_run *r, const char *child_run_id);
run_timer *rs_run_find_timer(const rs_run *r, const char *timer_id);
rs_status rs_run_render(dctx *d, json_t *tmpl, json_t **out, char *msg, size_t cap,
                        const char **code);
rs_status rs_run_schedule_timer(dctx *d, rs_timer_purpose p, const char *step_id, int64_t attempt,
                                int64_t due_at, const char *timer_id);
int rs_run_too_large(json_t *v);
void rs_run_turn_timer_id(const rs_run *s, char *buf, size_t cap, rs_timer_purpose p,
                          int64_t turn);
int rs_run_calls_outstanding(const rs_run *r, const char *step_id, int64_t attempt);
void rs_run_cancel_timers_of(rs_run *r, const char *step_id, int64_t attempt, rs_timer_purpose p);

/* rs_run.c: the state's records, the view's step and attempt objects, errors */
run_signal *rs_run_find_signal(const rs_run *r, const char *signal_id);
void rs_run_release_children(rs_run *r, int all);
run_signal *rs_run_buffered_signal(const rs_run *r, const char *name);
void rs_run_cancel_step_timers(rs_run *r, const char *step_id, int64_t attempt);
json_t *rs_run_view_step(rs_run *r, const char *id);
json_t *rs_run_view_attempt(rs_run *r, const char *id);
void rs_run_view_set_status(rs_run *r, const char *id, const char *status);
void rs_run_err_copy_plain(rs_err *dst, const rs_err *src);
json_t *rs_run_err_json(const rs_err *e);
int rs_run_kind_of(const char *name);
extern const char *rs_run_call_status_names[];

/* rs_run_emit.c: events and effects a decision writes, ending steps */
void rs_run_err_copy(rs_err *dst, const rs_err *src, const char *step_id);
void rs_run_add_timer_effect(const rs_run *r, rs_decision *o, const char *timer_id, rs_timer_purpose p,
                             const char *step_id, int64_t attempt, int64_t due_at);
void rs_run_cancel_outstanding(dctx *d);
void rs_run_make_timer_id(const rs_run *s, char *buf, size_t cap, rs_timer_purpose p,
                          const char *step_id, int64_t exec, int64_t attempt);
rs_status rs_run_schedule_step_timer(dctx *d, rs_timer_purpose p, int64_t due_at);
rs_status rs_run_emit_run_failed(dctx *d, const char *code, const char *message, rs_errclass cls,
                                 const char *step_id);
rs_status rs_run_emit_step_started(dctx *d, const rs_step *st, int64_t attempt, json_t *input);
json_t *rs_run_reused_output(const rs_run *s, const rs_step *st);
rs_status rs_run_emit_step_reused(dctx *d, const rs_step *st);
rs_status rs_run_fail_step(dctx *d, const rs_step *st, const rs_err *e);
rs_status rs_run_fail_step_timeout(dctx *d, const rs_step *st, const char *message);

/* rs_run_settle.c: the step engine */
char *rs_run_text_of_value(json_t *v);
rs_status rs_run_owe(dctx *d);
rs_status rs_run_settle(dctx *d);

/* rs_run_decide.c: command handlers */
void rs_run_add_pending_effects(const rs_run *r, rs_decision *out);

/* rs_run_effects.c: http and llm steps */
void rs_run_effect_step_started(rs_run *r, int64_t attempt);
rs_status rs_run_ev_http_requested(rs_run *r, const rs_event *ev, char *err, size_t cap);
rs_status rs_run_ev_http_completed(rs_run *r, const rs_event *ev, char *err, size_t cap);
rs_status rs_run_ev_llm_requested(rs_run *r, const rs_event *ev, char *err, size_t cap);
rs_status rs_run_ev_llm_delta(rs_run *r, const rs_event *ev, char *err, size_t cap);
rs_status rs_run_ev_llm_message(rs_run *r, const rs_event *ev, char *err, size_t cap);
rs_status rs_run_decide_effect_result(dctx *d);
rs_status rs_run_decide_llm_chunk(dctx *d);
rs_status rs_run_llm_next_turn(dctx *d, const rs_step *st);
rs_status rs_run_owe_http_requested(dctx *d, const rs_step *st);
rs_status rs_run_owe_http_completed(dctx *d, const rs_step *st);
rs_status rs_run_owe_llm_calls(dctx *d, const rs_step *st);
rs_status rs_run_owe_llm_first_turn(dctx *d, const rs_step *st);
rs_status rs_run_owe_llm_message(dctx *d, const rs_step *st);
rs_status rs_run_owe_llm_timeouts(dctx *d, const rs_step *st);

/* rs_run_children.c: parallel, foreach and run steps */
void rs_run_add_child_cancel(const rs_run *r, rs_decision *o, const run_child *ch);
void rs_run_add_child_done(const rs_run *r, rs_decision *o);
void rs_run_add_child_start(const rs_run *r, rs_decision *o, const run_child *ch);
rs_status rs_run_decide_child_done(dctx *d);
rs_status rs_run_ev_child_started(rs_run *r, const rs_event *ev, char *err, size_t cap);
rs_status rs_run_ev_child_finished(rs_run *r, const rs_event *ev, char *err, size_t cap);
rs_status rs_run_owe_children(dctx *d, const rs_step *st);

#endif
