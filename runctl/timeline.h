/*
 * timeline.h - the pure part of `runctl replay` and `runctl diff`: turn
 * decoded run events into timeline rows, a run summary and a step path.
 * No I/O, no clock, no colour decisions (the caller passes the escape
 * strings), so it is unit-tested directly and its output is golden.
 */
#ifndef RUNCTL_TIMELINE_H
#define RUNCTL_TIMELINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_event.h"

#define TL_SUMMARY_MAX 160
#define TL_JSON_MAX 48       /* longest JSON excerpt in a summary */

/* How a row stands out: markers in plain text, colours on a terminal. */
typedef enum {
	TL_NONE = 0,
	TL_WAIT,    /* the run now waits: tool, http or model requested, timer
	             * scheduled, signal step */
	TL_RETRY,   /* a retry was scheduled */
	TL_FAIL,    /* a failure, timeout or cancellation */
	TL_DONE,    /* the run completed */
} tl_mark;

char rs_ctl_tl_mark_char(tl_mark m);          /* ' ', 'W', 'R', '!', '*' */
const char *rs_ctl_tl_mark_name(tl_mark m);   /* "", "wait", "retry", "fail", "done" */

typedef struct {
	uint64_t seq;
	int64_t time_ms;
	int64_t delta_ms;      /* since the first event of the run */
	rs_event_type type;
	const char *step;      /* borrowed from the event; NULL if none */
	int64_t attempt;       /* 0 if the event has none */
	tl_mark mark;
	char summary[TL_SUMMARY_MAX];
} tl_row;

/* Build the row of ev; start_ms is the time of the run's first event. */
void rs_ctl_tl_row_of(const rs_event *ev, int64_t start_ms, tl_row *row);

/* "+1.234s", "+2m03.456s", "+5h02m03s" (deterministic, no locale). */
void rs_ctl_tl_format_delta(int64_t ms, char *buf, size_t cap);

/* The column header, and one aligned row (no newline). on/off wrap the
 * marked rows (colour escapes, or "" for plain text). */
const char *rs_ctl_tl_header(void);
void rs_ctl_tl_format_row(const tl_row *r, const char *on, const char *off, char *buf, size_t cap);
json_t *rs_ctl_tl_row_json(const tl_row *r);

/* A running summary of a run, fed event by event. */
typedef struct {
	char run_id[40];
	char tenant[72];
	char agent[136];
	char version[24];
	const char *status;   /* "none", "queued", "running", "waiting", terminal names */
	uint64_t events;
	uint64_t last_seq;
	int64_t start_ms, end_ms;
	unsigned steps_completed, steps_failed, retries, tool_calls, tool_failures;
	unsigned timers, signals;
	unsigned http_requests, llm_turns;   /* http.requested / llm.requested */
} tl_summary;

void rs_ctl_tl_summary_init(tl_summary *s);
void rs_ctl_tl_summary_add(tl_summary *s, const rs_event *ev);
/* "completed in +1.234s: 12 events, 4 steps completed, 1 retry, ..." */
void rs_ctl_tl_summary_format(const tl_summary *s, char *buf, size_t cap);
json_t *rs_ctl_tl_summary_json(const tl_summary *s);

/* ---- diff: the path a run took through its agent ----
 * One entry per step outcome (step.completed / step.failed, in order). */
typedef struct {
	const char *step;      /* borrowed */
	int64_t attempt;
	int failed;            /* 1 for step.failed */
	json_t *output;        /* borrowed: output, or NULL */
	const rs_err *error;   /* borrowed, for failures */
	uint64_t seq;
} tl_step;

/* Fill steps (capacity cap) from events; returns how many outcomes the
 * run has (may exceed cap: then only cap are stored). */
size_t rs_ctl_tl_step_path(const rs_event *ev, size_t n, tl_step *steps, size_t cap);

/* Index of the first outcome where a and b differ (step id, attempt,
 * success/failure, output or error code), or -1 if the paths agree up to
 * the shorter one and have the same length. */
long rs_ctl_tl_step_diverge(const tl_step *a, size_t na, const tl_step *b, size_t nb);

/* Short text of an outcome: "ok {\"x\":1}" / "failed tool_error: boom". */
void rs_ctl_tl_step_format(const tl_step *s, char *buf, size_t cap);

#endif
