/*
 * rs_run_children.c - child runs of the run state machine: parallel,
 * foreach and run steps (see rs_run.c for the machine as a whole).
 *
 * The step records child.started / child.finished in its own log; the
 * child's run.start and cancel, and a child's child.done to its parent,
 * are commands to other runs (rs_decision.cmds, added here by
 * rs_run_add_child_*), see docs/architecture.md. Here are the two evolve
 * handlers, the child run id, starting children up to the step's limit
 * and the step's output once they end (rs_run_owe_children), and the
 * child.done command handler.
 *
 * Kept out of rs_run.c so that file reads as the machine and this one as
 * one family of steps; behaviour is the same as when they were one file
 * (tests/unit/test_run.c, its children cut test included, is the proof).
 */
#include "rs_run_int.h"
#include "rs_id.h"
#include "rs_json.h"

void
rs_run_add_child_start(const rs_run *r, rs_decision *o, const run_child *ch)
{
	rs_cmd *c = rs_run_add_cmd_effect(r, o, RS_CMD_RUN_START, ch->child_run_id);

	if (c == NULL)
		return;
	c->agent = xstrdup(ch->agent);
	c->version = xstrdup(ch->version);
	c->input = json_incref(ch->input);
	c->parent_run_id = xstrdup(r->run_id);
	c->root_run_id = xstrdup(r->root_run_id ? r->root_run_id : r->run_id);
	c->scope = xstrdup(ch->scope);
	c->parent_step_id = xstrdup(ch->step_id);
}

void
rs_run_add_child_cancel(const rs_run *r, rs_decision *o, const run_child *ch)
{
	rs_cmd *c = rs_run_add_cmd_effect(r, o, RS_CMD_CANCEL, ch->child_run_id);

	if (c != NULL)
		c->reason = xstrdup("the parent run no longer waits for it");
}

/* A finished child run tells its parent (the parent records child.finished). */
void
rs_run_add_child_done(const rs_run *r, rs_decision *o)
{
	rs_cmd *c;

	if (r->parent_run_id == NULL || !rs_run_status_terminal(r->status))
		return;
	if ((c = rs_run_add_cmd_effect(r, o, RS_CMD_CHILD_DONE, r->parent_run_id)) == NULL)
		return;
	c->child_run_id = xstrdup(r->run_id);
	c->child_status = xstrdup(rs_run_status_name(r->status));
	c->output = json_incref(r->status == RS_RUN_COMPLETED && r->output ? r->output : json_null());
	c->child_error = json_incref(r->error);
}

/* --- evolve: children runs (parallel, foreach, run) --- */

rs_status
rs_run_ev_child_started(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_child_started *d = &ev->d.child_started;
	run_child *c;
	int64_t n = 0;

	if (rs_run_check_current(r, "child.started", d->step_id, d->attempt, err, cap) != RS_OK)
		return RS_EINVAL;
	if (r->cur_done)
		return fail(err, cap, "child.started: step %s already finished", d->step_id);
	if (rs_run_find_child(r, d->child_run_id) != NULL)
		return fail(err, cap, "child.started: duplicate child_run_id %s", d->child_run_id);
	for (size_t i = 0; i < r->nchildren; i++)
		n += rs_run_child_current(r, &r->children[i]);
	r->children = xgrow(r->children, r->nchildren + 1, sizeof(*r->children));
	c = &r->children[r->nchildren++];
	memset(c, 0, sizeof(*c));
	c->child_run_id = xstrdup(d->child_run_id);
	c->step_id = xstrdup(d->step_id);
	c->key = xstrdup(d->key);
	c->agent = xstrdup(d->agent);
	c->version = xstrdup(d->version);
	c->scope = xstrdup(d->scope);
	c->input = d->input ? json_incref(d->input) : json_object();
	c->attempt = d->attempt;
	c->exec = r->cur_exec;
	c->index = n;
	r->status = RS_RUN_WAITING;
	return RS_OK;
}

rs_status
rs_run_ev_child_finished(rs_run *r, const rs_event *ev, char *err, size_t cap)
{
	const rs_ev_child_finished *d = &ev->d.child_finished;
	run_child *c = rs_run_find_child(r, d->child_run_id);

	if (rs_run_check_current(r, "child.finished", d->step_id, d->attempt, err, cap) != RS_OK)
		return RS_EINVAL;
	if (c == NULL || !rs_run_child_current(r, c) || c->done || r->cur_done)
		return fail(err, cap, "child.finished: child %s is not awaited", d->child_run_id);
	c->done = 1;
	set_str(&c->status, d->status);
	set_json(&c->output, d->output ? d->output : json_null());
	set_json(&c->error, d->error);
	return RS_OK;
}

/* --- children runs: parallel, foreach, run --- */

/*
 * A child's run id: a UUIDv7 whose time is the decision's (group_at) and
 * whose other bits are a hash of (run, step, execution, attempt, key), so
 * that whoever (re)decides the start derives the same id, and run.start's
 * Nats-Msg-Id (start-<id>) de-duplicates a start sent twice.
 */
static void
child_run_id(const dctx *d, const char *key, char out[RS_UUID_LEN + 1])
{
	const rs_run *s = d->s;
	char src[512], hex[65];
	uint64_t ms = (uint64_t)AT(d);
	static const char variant[] = "89ab";

	snprintf(src, sizeof(src), "%s/%s/%lld/%lld/%s", s->run_id, s->cur_step,
	         (long long)s->cur_exec, (long long)s->cur_attempt, key);
	rs_sha256_hex(src, strlen(src), hex);
	snprintf(out, RS_UUID_LEN + 1, "%08llx-%04llx-7%.3s-%c%.3s-%.12s",
	         (unsigned long long)((ms >> 16) & 0xffffffffULL),
	         (unsigned long long)(ms & 0xffffULL), hex,
	         variant[(hex[3] >= 'a' ? hex[3] - 'a' + 10 : hex[3] - '0') & 3], hex + 4, hex + 7);
}

/* The scope (rs_agent_scope) of sub-list `sub` of step st in this run. */
static char *
child_scope(const rs_run *s, const rs_step *st, const char *sub)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s%s%s/%s", s->scope ? s->scope : "", s->scope ? "/" : "",
	         st->id, sub);
	return xstrdup(buf);
}

/* child.started for the k-th child of the current attempt, with its
 * run.start as the effect. */
static rs_status
start_child(dctx *d, const rs_step *st, size_t k, json_t *base, json_t *items)
{
	rs_event ev = new_event(RS_EV_CHILD_STARTED);
	rs_ev_child_started *c = &ev.d.child_started;
	char key[72], id[RS_UUID_LEN + 1], msg[128];
	json_t *input;
	rs_status rc;

	/* The child's input: bounded like every recorded value (a foreach's
	 * base input and element could add up past an event's size). */
	if (st->kind == RS_STEP_FOREACH) {
		input = json_copy(base);
		json_object_set(input, "item", json_array_get(items, k));
		json_object_set_new(input, "index", json_integer((json_int_t)k));
	} else {
		input = json_incref(base);
	}
	if (rs_run_too_large(input)) {
		json_decref(input);
		snprintf(msg, sizeof(msg), "a child's input is larger than %d bytes",
		         RS_RUN_MAX_VALUE_BYTES);
		return rs_run_fail_step_code(d, st, "too_large", RS_ERRCLASS_PERMANENT, msg);
	}
	c->input = input;
	if (st->kind == RS_STEP_PARALLEL)
		snprintf(key, sizeof(key), "%s", st->subs[k].name);
	else if (st->kind == RS_STEP_FOREACH)
		snprintf(key, sizeof(key), "%zu", k);
	else
		snprintf(key, sizeof(key), "run");
	child_run_id(d, key, id);
	c->step_id = xstrdup(st->id);
	c->attempt = d->s->cur_attempt;
	c->child_run_id = xstrdup(id);
	c->key = xstrdup(key);
	if (st->kind == RS_STEP_RUN) {
		c->agent = xstrdup(st->child_agent);
		c->version = xstrdup(st->child_version);
	} else {
		c->agent = xstrdup(d->s->agent);
		c->version = xstrdup(d->s->version);
		c->scope = child_scope(d->s, st, st->kind == RS_STEP_PARALLEL ? st->subs[k].name
		                                                              : st->subs[0].name);
	}
	if ((rc = rs_run_emit(d, &ev)) != RS_OK)
		return rc;
	rs_run_add_child_start(d->s, d->out, rs_run_find_child(d->s, id));
	return RS_OK;
}

/* What a finished child contributes to the step's output. */
static json_t *
child_result(const run_child *c)
{
	if (c->status != NULL && strcmp(c->status, "completed") == 0)
		return json_incref(c->output ? c->output : json_null());
	return json_pack("{s:s, s:O?}", "status", c->status ? c->status : "unknown", "error",
	                 c->error);
}

/* The step's output once its join is met: by branch name (parallel), in
 * input order (foreach), the child's output (run). */
static json_t *
children_output(const rs_run *s, const rs_step *st, size_t total)
{
	json_t *out = st->kind == RS_STEP_PARALLEL ? json_object() : NULL;

	if (st->kind == RS_STEP_FOREACH) {
		out = json_array();
		for (size_t i = 0; i < total; i++)
			json_array_append(out, json_null());
	}
	for (size_t i = 0; i < s->nchildren; i++) {
		const run_child *c = &s->children[i];
		if (!rs_run_child_current(s, c) || !c->done)
			continue;
		if (st->kind == RS_STEP_PARALLEL)
			json_object_set_new(out, c->key, child_result(c));
		else if (st->kind == RS_STEP_FOREACH && (size_t)c->index < total)
			json_array_set_new(out, (size_t)c->index, child_result(c));
		else if (st->kind == RS_STEP_RUN)
			return child_result(c);
	}
	return out ? out : json_null();
}

/* A child that failed, as the step's error. */
static rs_status
fail_by_child(dctx *d, const rs_step *st, const run_child *c)
{
	const char *code = json_string_value(json_object_get(c->error, "code"));
	const char *m = json_string_value(json_object_get(c->error, "message"));
	char msg[320];

	snprintf(msg, sizeof(msg), "child run %s (%s) %s: %s: %s", c->key, c->child_run_id,
	         c->status ? c->status : "failed", code ? code : (c->status ? c->status : "error"),
	         m ? m : "");
	return rs_run_fail_step_code(d, st, st->kind == RS_STEP_RUN && code ? code : "child_failed",
	                             RS_ERRCLASS_PERMANENT, msg);
}

/*
 * After step.started, child.started or child.finished of a parallel,
 * foreach or run step: the next event follows from the children recorded
 * so far (so a cut chain is finished from the state, like every step):
 * fail on a failed child (unless on_failure is "collect"), complete once
 * the join is met, else start the next child while under the limit
 * (parallel: all branches at once; foreach: max_concurrency), else wait.
 */
rs_status
rs_run_owe_children(dctx *d, const rs_step *st)
{
	rs_run *s = d->s;
	json_t *in = rs_run_attempt_input(d), *base = json_object_get(in, "input"), *items = NULL, *out;
	size_t total = 1, need = 1, limit = 1, started = 0, running = 0, ok = 0, finished = 0;
	const run_child *failed = NULL;
	char msg[160];

	if (base == NULL)
		return rs_run_fail_unrendered(d, st, st->child_input, "the children's input");
	if (!json_is_object(base))
		return rs_run_fail_step_code(d, st, "template_error", RS_ERRCLASS_PERMANENT,
		                             "input must render to an object");
	if (st->kind == RS_STEP_PARALLEL) {
		total = st->nsubs;
		need = (size_t)st->join_n;
		limit = total;
	} else if (st->kind == RS_STEP_FOREACH) {
		if ((items = json_object_get(in, "items")) == NULL)
			return rs_run_fail_unrendered(d, st, st->items, "items");
		if (!json_is_array(items))
			return rs_run_fail_step_code(d, st, "invalid_items", RS_ERRCLASS_PERMANENT,
			                             "items must render to an array");
		if (json_array_size(items) > RS_FOREACH_MAX_ITEMS) {
			snprintf(msg, sizeof(msg), "items has %zu elements, more than %d",
			         json_array_size(items), RS_FOREACH_MAX_ITEMS);
			return rs_run_fail_step_code(d, st, "too_many_items", RS_ERRCLASS_PERMANENT, msg);
		}
		total = need = json_array_size(items);
		limit = (size_t)st->max_concurrency;
	}
	for (size_t i = 0; i < s->nchildren; i++) {
		const run_child *c = &s->children[i];
		if (!rs_run_child_current(s, c))
			continue;
		started++;
		if (!c->done) {
			running++;
			continue;
		}
		finished++;
		if (c->status != NULL && strcmp(c->status, "completed") == 0)
			ok++;
		else if (failed == NULL)
			failed = c;
	}
	if (failed != NULL && !st->collect)
		return fail_by_child(d, st, failed);
	if (ok >= need || finished == total) {
		if (ok < need && need < total) {
			snprintf(msg, sizeof(msg), "%zu of %zu children completed, %zu needed", ok,
			         total, need);
			return rs_run_fail_step_code(d, st, "join_unmet", RS_ERRCLASS_PERMANENT, msg);
		}
		out = children_output(s, st, total);
		if (rs_run_too_large(out)) {
			json_decref(out);
			snprintf(msg, sizeof(msg), "the children's outputs are larger than %d bytes",
			         RS_RUN_MAX_VALUE_BYTES);
			return rs_run_fail_step_code(d, st, "too_large", RS_ERRCLASS_PERMANENT, msg);
		}
		return rs_run_emit_step_completed(d, out, st->next_idx);
	}
	if (started < total && running < limit)
		return start_child(d, st, started, base, items);
	return RS_OK;   /* waits for a child.done */
}

/* child.done: a child of the current attempt ended. A child no longer
 * awaited (the step went on, the run ended) decides nothing. */
rs_status
rs_run_decide_child_done(dctx *d)
{
	const rs_cmd *cmd = d->cmd;
	run_child *c = rs_run_find_child(d->s, cmd->child_run_id);
	static const char *ends[] = { "completed", "failed", "cancelled", "timed_out" };
	rs_event ev;
	size_t i;

	if (c == NULL || c->done || c->cancel_owed || d->s->cur_done || !rs_run_child_current(d->s, c))
		return RS_OK;
	for (i = 0; i < 4; i++)
		if (cmd->child_status != NULL && strcmp(cmd->child_status, ends[i]) == 0)
			break;
	if (i == 4)
		return fail(d->err, d->cap, "child.done: status must be completed, failed, "
		            "cancelled or timed_out");
	ev = new_event(RS_EV_CHILD_FINISHED);
	ev.d.child_finished.step_id = xstrdup(c->step_id);
	ev.d.child_finished.attempt = c->attempt;
	ev.d.child_finished.child_run_id = xstrdup(c->child_run_id);
	ev.d.child_finished.key = xstrdup(c->key);
	ev.d.child_finished.status = xstrdup(cmd->child_status);
	ev.d.child_finished.output = json_incref(i == 0 && cmd->output ? cmd->output : json_null());
	ev.d.child_finished.error = i == 0 ? NULL : json_incref(cmd->child_error);
	return rs_run_emit(d, &ev);
}
