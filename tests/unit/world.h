/*
 * world.h - the one state-machine test world of the C unit tests
 * (test_run.c, test_effects.c, test_agent.c): an agent, a run state and a
 * clock, driven by commands. step() decides, checks the decision (runseq
 * continuity, time, envelope; deciding twice gives identical bytes; every
 * effect encodes; every event survives the codec; the decision's end state
 * is the state its events evolve to), evolves the decoded events and
 * returns their types as one string, so tests read as tables:
 *     (events so far, command) -> "tool.completed step.completed ..."
 * world_check_replay() replays the recorded history into a fresh state and
 * compares the views (what `runctl replay --check` relies on).
 *
 * Failures count into check.h's counters (check.c), so the test program's
 * check_report() sees them. Anything malformed in a test's own input (bad
 * JSON, a bad agent) aborts: that is a broken test, not a failed check.
 */
#ifndef RS_TEST_WORLD_H
#define RS_TEST_WORLD_H

#include "check.h"
#include "rs_json.h"
#include "rs_run.h"

#include <stdlib.h>

#define RUN_ID "0190f5d2-7c4e-7a3b-8c1d-2e3f4a5b6c7d"
#define TENANT "acme"
#define TRACE  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

typedef struct {
	rs_agent *agent;
	rs_run *r;
	int64_t now;
	const char *def;             /* the agent's text (borrowed) */
	rs_event *hist;              /* every evolved event, for replay */
	size_t nhist;
	rs_cmd *cmds;                /* every command that yielded events */
	int64_t *cmd_at;             /* ... and the clock it was given at */
	size_t ncmds;
	rs_decision last;            /* the last decision, for inspection */
	char types[8192];            /* its event types (truncated) */
	char trace[64];              /* traceparent of the run's start command */
	char call_id[192];           /* of the last tool.requested */
	char timer[RS_TIMER_RUN_TIMEOUT + 1][192]; /* last timer id by purpose */
	char child[64][40];          /* child run ids, in child.started order */
	int nchild;
	json_t *view;                /* what view_get returned last */
} world;

/* Test JSON: parsed strictly; aborts on a typo. The caller owns it. */
json_t *parse(const char *s);
/* Canonical dump of v, "(null)" for NULL; the caller frees. */
char *dump(json_t *v);

/* CHECK that v dumps canonically to want. */
#define CHECK_JSON(v, want) do { \
	char *d_ = dump(v); \
	CHECK_STR(d_, want); \
	free(d_); \
} while (0)

/* A fresh world on the agent text def (borrowed; must outlive w), clock
 * at 1000 ms. */
void world_init(world *w, const char *def);
/* Replay the history into a fresh state: CHECK it shows the same view. */
void world_check_replay(world *w);
/* Release everything w holds. */
void world_free(world *w);
/* world_check_replay + world_free. */
void finish(world *w);
/* CHECK that two states show the same view. */
void check_same_view(const rs_run *x, const rs_run *y);

/* --- commands (RUN_ID/TENANT; the caller gives them to step) --- */
rs_cmd mk(rs_cmd_type t);
rs_cmd c_start(const char *input);           /* traceparent TRACE, key "k1" */
rs_cmd c_start_untraced(const char *input);  /* neither */
rs_cmd c_result(const char *call_id, const char *output);   /* from dev-1 */
rs_cmd c_tool_error(const char *call_id, const char *code, rs_errclass cls);
rs_cmd c_delivered(const char *call_id);
rs_cmd c_signal(const char *id, const char *name, const char *payload);
rs_cmd c_cancel(void);
rs_cmd c_fire(const char *timer_id);
/* child.done from child run `child`: output a for "completed", else a is
 * the error code. */
rs_cmd c_child(const char *child, const char *status, const char *a);
rs_cmd c_output(const char *effect_id, const char *output);
rs_cmd c_effect_error(const char *effect_id, const char *code, rs_errclass cls,
                      int64_t retry_after_ms);
rs_cmd c_chunk(const char *effect_id, int64_t index, const char *text);

/* --- driving --- */
/* Decide c at w->now (c is consumed), check it, evolve all its events (or
 * only the first: apply_all = 0, to cut a decision short), return the
 * event types ("ERROR <status>: <why>" when decide refuses). */
const char *step_n(world *w, rs_cmd c, int apply_all);
const char *step(world *w, rs_cmd c);
/* Evolve the first n events of the last decision (a crash after n when
 * n < nevents), checking each one's envelope and codec round trip. */
void apply(world *w, size_t n);
/* The nth event of type t in the last decision, or NULL. */
const rs_event *ev(world *w, rs_event_type t, int nth);
/* The event of type t most recently evolved (any decision), or NULL. */
const rs_event *hist_last(world *w, rs_event_type t);
/* How many events of type t the last decision holds. */
int count_type(world *w, rs_event_type t);
/* A path into the run's view (whole view: NULL); valid until the next call. */
json_t *view_get(world *w, const char *path);

#endif
