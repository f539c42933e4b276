/*
 * rs_fork.h - what a fork of a run reuses: pure functions over a run's
 * events, shared by the api (POST /v1/runs/{id}/fork and /retry), the
 * state machine (which checks what run.created carries) and the tests.
 *
 * A fork is a new run of the source's agent (today's version or a given
 * one) whose run.created names its origin (forked_from, from_seq) and
 * carries `reuse`: the outputs of the effect steps (every kind but branch
 * and transform) that the source completed within its first from_seq
 * events, in order, as [{"step_id", "output", "seq"}] (seq: the source
 * event's runseq). The fork runs the definition from its first step;
 * while each effect step it begins is the next entry of `reuse` (same id,
 * every earlier one reused), it completes at once with the recorded
 * output (step.completed reused_seq) instead of calling the tool, sleeping,
 * waiting or requesting again. The first effect step that does not match
 * ends reuse for the rest of the run. Branches and transforms are always
 * evaluated again, under the fork's version: that is the point of forking
 * after a fix. Carrying the outputs in run.created (rather than a pointer
 * to the source) keeps the fork's log self-contained: `runctl replay
 * --check` and a cold rebuild need nothing but the fork's own events.
 */
#ifndef RS_FORK_H
#define RS_FORK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "rs_event.h"
#include "rs_status.h"

/* Most entries a reuse list may hold (a run's max_steps is bounded too). */
#define RS_FORK_MAX_REUSE 10000

/* Is reuse a well-formed list (array of at most RS_FORK_MAX_REUSE objects
 * {step_id: non-empty string, seq: integer >= 1, output: any})? RS_EINVAL
 * with the reason ("reuse[3].step_id: missing") otherwise. */
rs_status rs_fork_reuse_check(const json_t *reuse, char *err, size_t cap);

/* The reuse list of a fork from the first from_seq of the events ev[0..n)
 * (one run's history in runseq order, ev[0] its run.created). *out: a new
 * array. RS_EINVAL if from_seq is not in 1..(last runseq) or the history
 * does not begin with run.created. */
rs_status rs_fork_plan(const rs_event *ev, size_t n, int64_t from_seq, json_t **out,
                       char *err, size_t cap);

/* The from_seq of a retry: just before the step.started that began the
 * last execution of the step that failed finally (its first attempt), so
 * everything before that step is reused and the step itself runs again.
 * RS_ENOTFOUND if the history has no final step.failed. */
rs_status rs_fork_retry_seq(const rs_event *ev, size_t n, int64_t *from_seq);

#endif
