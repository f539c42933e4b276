/*
 * rs_fork.c - the reuse list of a fork and the starting point of a retry
 * (rs_fork.h). Pure: the api reads the source's events, these functions
 * decide what they mean.
 */
#include "rs_fork.h"

#include <stdio.h>
#include <string.h>

static rs_status
bad(char *err, size_t cap, size_t i, const char *what)
{
	if (err != NULL && cap > 0)
		snprintf(err, cap, "reuse[%zu]%s", i, what);
	return RS_EINVAL;
}

rs_status
rs_fork_reuse_check(const json_t *reuse, char *err, size_t cap)
{
	size_t i;
	json_t *e, *v;

	if (!json_is_array(reuse)) {
		if (err != NULL && cap > 0)
			snprintf(err, cap, "reuse: must be an array");
		return RS_EINVAL;
	}
	if (json_array_size(reuse) > RS_FORK_MAX_REUSE) {
		if (err != NULL && cap > 0)
			snprintf(err, cap, "reuse: more than %d entries", RS_FORK_MAX_REUSE);
		return RS_EINVAL;
	}
	json_array_foreach(reuse, i, e) {
		if (!json_is_object(e))
			return bad(err, cap, i, ": must be an object");
		v = json_object_get(e, "step_id");
		if (!json_is_string(v) || json_string_length(v) == 0)
			return bad(err, cap, i, ".step_id: must be a non-empty string");
		v = json_object_get(e, "seq");
		if (!json_is_integer(v) || json_integer_value(v) < 1)
			return bad(err, cap, i, ".seq: must be an integer >= 1");
		if (json_object_get(e, "output") == NULL)
			return bad(err, cap, i, ".output: missing");
	}
	return RS_OK;
}

static int
is_effect_kind(const char *kind)
{
	return kind != NULL && strcmp(kind, "branch") != 0 && strcmp(kind, "transform") != 0;
}

rs_status
rs_fork_plan(const rs_event *ev, size_t n, int64_t from_seq, json_t **out, char *err,
             size_t cap)
{
	const char *kind = NULL;   /* kind of the step.started in progress */
	json_t *a;

	*out = NULL;
	if (n == 0 || ev[0].type != RS_EV_RUN_CREATED) {
		snprintf(err, cap, "the source run has no run.created");
		return RS_EINVAL;
	}
	if (from_seq < 1 || (uint64_t)from_seq > ev[n - 1].runseq) {
		snprintf(err, cap, "from_seq: must be between 1 and %llu (the source's last event)",
		         (unsigned long long)ev[n - 1].runseq);
		return RS_EINVAL;
	}
	a = json_array();
	for (size_t i = 0; i < n && ev[i].runseq <= (uint64_t)from_seq; i++) {
		if (ev[i].type == RS_EV_STEP_STARTED) {
			kind = ev[i].d.step_started.kind;
		} else if (ev[i].type == RS_EV_STEP_COMPLETED && is_effect_kind(kind)) {
			const rs_ev_step_completed *c = &ev[i].d.step_completed;
			json_array_append_new(a, json_pack("{s:s, s:O, s:I}", "step_id", c->step_id,
			                                   "output", c->output ? c->output : json_null(),
			                                   "seq", (json_int_t)ev[i].runseq));
		}
	}
	if (json_array_size(a) > RS_FORK_MAX_REUSE) {
		json_decref(a);
		snprintf(err, cap, "the source completed more than %d steps before from_seq",
		         RS_FORK_MAX_REUSE);
		return RS_EINVAL;
	}
	*out = a;
	return RS_OK;
}

rs_status
rs_fork_retry_seq(const rs_event *ev, size_t n, int64_t *from_seq)
{
	size_t i = n;

	*from_seq = 0;
	while (i > 0) {
		const rs_event *f = &ev[--i];
		if (f->type != RS_EV_STEP_FAILED || !f->d.step_failed.final)
			continue;
		/* The execution began at the latest first attempt of that step. */
		while (i > 0) {
			const rs_event *s = &ev[--i];
			if (s->type == RS_EV_STEP_STARTED && s->d.step_started.attempt == 1 &&
			    strcmp(s->d.step_started.step_id, f->d.step_failed.step_id) == 0) {
				*from_seq = (int64_t)s->runseq - 1;
				return RS_OK;
			}
		}
		return RS_ENOTFOUND;
	}
	return RS_ENOTFOUND;
}
