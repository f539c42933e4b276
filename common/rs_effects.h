/*
 * rs_effects.h - the server-side effects of a run (http requests and model
 * turns), as `runctl replay --at` and the viewer's GET /v1/runs/{id}/state
 * show them next to the state machine's view. rs_run_view keeps only what
 * decide needs (the step's attempts and output); a reader debugging an llm
 * or http step also wants each request, what came back, the text streamed
 * so far and how each one ended, so this module folds the events into
 * that. Pure, like runctl/timeline.c.
 *
 * One entry per effect, in request order:
 *   {effect_id, kind: "http"|"llm", step_id, attempt, requested_at,
 *    deadline, status, finished_at, error,
 *    http: method, url, http_status, duration_ms
 *    llm:  turn, model, messages (count), deltas (count), text,
 *          tool_calls (names), finish_reason, usage}
 * status: "pending" (requested), "streaming" (llm.delta seen), "done"
 * (http.completed or llm.message, whatever the status code), "error"
 * (the executor reported an error: step.failed with this effect_id) or
 * "abandoned" (the step failed or the run ended while it was pending,
 * e.g. a step_timeout). Times are Unix ms, null until known; members
 * that do not apply yet are null.
 */
#ifndef RS_EFFECTS_H
#define RS_EFFECTS_H

#include <jansson.h>

#include "rs_event.h"

typedef struct {
	json_t *list;     /* the entries, in order */
	json_t *by_id;    /* effect_id -> the entry (borrowed from list) */
} rs_eff_track;

void rs_eff_init(rs_eff_track *t);
/* Fold one event in (any type: the others are ignored or end effects). */
void rs_eff_add(rs_eff_track *t, const rs_event *ev);
/* The entries (borrowed; an empty array for a run without effects). */
json_t *rs_eff_list(const rs_eff_track *t);
void rs_eff_free(rs_eff_track *t);

#endif
