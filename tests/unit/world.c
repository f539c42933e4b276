/*
 * world.c - the one state-machine test world (see world.h): the harness
 * test_run.c, test_effects.c and test_agent.c share, so that every test
 * of the run state machine checks a decision the same way.
 */
#include "world.h"

#include "rs_replay.h"

#include <string.h>

json_t *
parse(const char *s)
{
	char err[256];
	json_t *v = NULL;

	if (rs_json_parse(s, strlen(s), &v, err, sizeof(err)) != RS_OK) {
		fprintf(stderr, "bad test JSON: %s\n%s\n", err, s);
		abort();
	}
	return v;
}

char *
dump(json_t *v)
{
	return v ? rs_json_dump(v) : strdup("(null)");
}

void
world_init(world *w, const char *def)
{
	char err[512];

	memset(w, 0, sizeof(*w));
	w->def = def;
	if (rs_agent_parse_text(def, strlen(def), &w->agent, err, sizeof(err)) != RS_OK) {
		fprintf(stderr, "bad test agent: %s\n", err);
		abort();
	}
	w->r = rs_run_new();
	w->now = 1000;
}

void
check_same_view(const rs_run *x, const rs_run *y)
{
	json_t *va = rs_run_view(x), *vb = rs_run_view(y);
	char *a = dump(va), *b = dump(vb);

	CHECK_STR(a, b);
	free(a);
	free(b);
	json_decref(va);
	json_decref(vb);
}

void
world_check_replay(world *w)
{
	rs_run *fresh = rs_run_new();
	char err[256];

	for (size_t i = 0; i < w->nhist; i++)
		if (rs_run_evolve(fresh, &w->hist[i], err, sizeof(err)) != RS_OK) {
			fprintf(stderr, "replay: %s\n", err);
			CHECK(0);
		}
	check_same_view(fresh, w->r);
	rs_run_free(fresh);
}

void
world_free(world *w)
{
	for (size_t i = 0; i < w->nhist; i++)
		rs_event_free(&w->hist[i]);
	for (size_t i = 0; i < w->ncmds; i++)
		rs_cmd_free(&w->cmds[i]);
	free(w->hist);
	free(w->cmds);
	free(w->cmd_at);
	json_decref(w->view);
	rs_decision_free(&w->last);
	rs_run_free(w->r);
	rs_agent_free(w->agent);
	memset(w, 0, sizeof(*w));
}

void
finish(world *w)
{
	world_check_replay(w);
	world_free(w);
}

/* --- commands --- */

rs_cmd
mk(rs_cmd_type t)
{
	rs_cmd c;

	memset(&c, 0, sizeof(c));
	c.type = t;
	snprintf(c.run_id, sizeof(c.run_id), "%s", RUN_ID);
	snprintf(c.tenant, sizeof(c.tenant), "%s", TENANT);
	return c;
}

rs_cmd
c_start_untraced(const char *input)
{
	rs_cmd c = mk(RS_CMD_RUN_START);

	c.input = parse(input);
	return c;
}

rs_cmd
c_start(const char *input)
{
	rs_cmd c = c_start_untraced(input);

	snprintf(c.traceparent, sizeof(c.traceparent), "%s", TRACE);
	c.idempotency_key = strdup("k1");
	return c;
}

rs_cmd
c_result(const char *call_id, const char *output)
{
	rs_cmd c = mk(RS_CMD_TOOL_RESULT);

	c.call_id = strdup(call_id);
	c.device_id = strdup("dev-1");
	c.output = parse(output);
	return c;
}

/* The error members of a result, set the way the executor and the router
 * set them: retryable unless permanent. */
static void
set_error(rs_cmd *c, const char *code, rs_errclass cls)
{
	c->has_error = 1;
	c->error.code = strdup(code);
	c->error.message = strdup("it broke");
	c->error.cls = cls;
	c->error.retryable = cls != RS_ERRCLASS_PERMANENT;
}

rs_cmd
c_tool_error(const char *call_id, const char *code, rs_errclass cls)
{
	rs_cmd c = mk(RS_CMD_TOOL_RESULT);

	c.call_id = strdup(call_id);
	set_error(&c, code, cls);
	return c;
}

rs_cmd
c_delivered(const char *call_id)
{
	rs_cmd c = mk(RS_CMD_TOOL_DELIVERED);

	c.call_id = strdup(call_id);
	c.device_id = strdup("dev-1");
	c.router = strdup("router-a");
	return c;
}

rs_cmd
c_signal(const char *id, const char *name, const char *payload)
{
	rs_cmd c = mk(RS_CMD_SIGNAL);

	c.signal_id = strdup(id);
	c.name = strdup(name);
	c.payload = parse(payload);
	return c;
}

rs_cmd
c_cancel(void)
{
	rs_cmd c = mk(RS_CMD_CANCEL);

	c.reason = strdup("user asked");
	return c;
}

rs_cmd
c_fire(const char *timer_id)
{
	rs_cmd c = mk(RS_CMD_TIMER_FIRE);

	c.timer_id = strdup(timer_id);
	return c;
}

rs_cmd
c_child(const char *child, const char *status, const char *a)
{
	rs_cmd c = mk(RS_CMD_CHILD_DONE);

	c.child_run_id = strdup(child);
	c.child_status = strdup(status);
	if (strcmp(status, "completed") == 0) {
		c.output = parse(a);
	} else {
		c.output = json_null();
		c.child_error = json_pack("{s:s, s:s, s:s, s:b}", "code", a, "message", "it broke",
		                          "class", "permanent", "retryable", 0);
	}
	return c;
}

rs_cmd
c_output(const char *effect_id, const char *output)
{
	rs_cmd c = mk(RS_CMD_EFFECT_RESULT);

	c.effect_id = strdup(effect_id);
	c.output = parse(output);
	return c;
}

rs_cmd
c_effect_error(const char *effect_id, const char *code, rs_errclass cls, int64_t retry_after_ms)
{
	rs_cmd c = mk(RS_CMD_EFFECT_RESULT);

	c.effect_id = strdup(effect_id);
	set_error(&c, code, cls);
	c.retry_after_ms = retry_after_ms;
	return c;
}

rs_cmd
c_chunk(const char *effect_id, int64_t index, const char *text)
{
	rs_cmd c = mk(RS_CMD_LLM_CHUNK);

	c.effect_id = strdup(effect_id);
	c.index = index;
	c.text = strdup(text);
	return c;
}

/* --- the harness --- */

/* Encode + decode ev: what the orchestrator stores is what replays. */
static int
roundtrip(const rs_event *ev, rs_event *out)
{
	char err[256], *bytes = NULL;
	size_t len;
	int ok;

	memset(out, 0, sizeof(*out));
	if (rs_event_encode(ev, &bytes, &len) != RS_OK) {
		fprintf(stderr, "encode %s failed\n", rs_event_type_name(ev->type));
		free(bytes);
		return 0;
	}
	ok = rs_event_decode(bytes, len, out, err, sizeof(err)) == RS_OK;
	if (!ok)
		fprintf(stderr, "decode %s failed: %s\n%s\n", rs_event_type_name(ev->type), err, bytes);
	free(bytes);
	return ok;
}

/* Deciding again on the same state and command gives the same bytes. */
static void
check_deterministic(world *w, const rs_cmd *c)
{
	rs_decision again;
	char err[256];
	size_t len;

	if (rs_run_decide(w->r, w->agent, c, w->now, "orch-1", &again, err, sizeof(err)) != RS_OK) {
		CHECK(0);
		return;
	}
	CHECK_INT(again.nevents, w->last.nevents);
	for (size_t i = 0; i < again.nevents && i < w->last.nevents; i++) {
		char *a = NULL, *b = NULL;
		if (rs_event_encode(&again.events[i], &a, &len) == RS_OK &&
		    rs_event_encode(&w->last.events[i], &b, &len) == RS_OK)
			CHECK_STR(a, b);
		free(a);
		free(b);
	}
	rs_decision_free(&again);
}

static void
note_ids(world *w, const rs_event *e)
{
	if (e->type == RS_EV_TOOL_REQUESTED)
		snprintf(w->call_id, sizeof(w->call_id), "%s", e->d.tool_requested.call_id);
	if (e->type == RS_EV_TIMER_SCHEDULED)
		snprintf(w->timer[e->d.timer_scheduled.purpose], sizeof(w->timer[0]), "%s",
		         e->d.timer_scheduled.timer_id);
	if (e->type == RS_EV_CHILD_STARTED && w->nchild < 64)
		snprintf(w->child[w->nchild++], sizeof(w->child[0]), "%s",
		         e->d.child_started.child_run_id);
}

/* Every effect of the last decision is encodable (what goes on TIMERS,
 * TOOLCALLS and the executor's subjects). */
static void
check_effects(world *w)
{
	char *buf;
	size_t len;

	for (size_t i = 0; i < w->last.ntimers; i++) {
		buf = NULL;
		CHECK(rs_cmd_encode(&w->last.timers[i], &buf, &len) == RS_OK);
		free(buf);
	}
	for (size_t i = 0; i < w->last.ncalls; i++) {
		buf = NULL;
		CHECK(rs_toolcall_encode(&w->last.calls[i], &buf, &len) == RS_OK);
		free(buf);
	}
	for (size_t i = 0; i < w->last.ncmds; i++) {
		buf = NULL;
		CHECK(rs_cmd_encode(&w->last.cmds[i], &buf, &len) == RS_OK);
		free(buf);
	}
}

void
apply(world *w, size_t n)
{
	char err[256];
	uint64_t seq0 = rs_run_last_seq(w->r);

	for (size_t i = 0; i < n; i++) {
		const rs_event *e = &w->last.events[i];
		rs_event dec;

		/* A run decided without step() (a test deciding by hand) has its
		 * traceparent from its first event; every later one carries it. */
		if (e->type == RS_EV_RUN_CREATED && w->trace[0] == '\0')
			snprintf(w->trace, sizeof(w->trace), "%s", e->traceparent);
		CHECK_INT(e->runseq, seq0 + 1 + i);
		CHECK_INT(e->time_ms, w->now);
		CHECK_STR(e->run_id, RUN_ID);
		CHECK_STR(e->tenant, TENANT);
		CHECK_STR(e->traceparent, w->trace);
		note_ids(w, e);
		if (!roundtrip(e, &dec)) {
			CHECK(0);
			rs_event_free(&dec);
			/* fall back to the struct so the test can go on */
			if (rs_run_evolve(w->r, e, err, sizeof(err)) != RS_OK)
				fprintf(stderr, "evolve: %s\n", err);
			continue;
		}
		if (rs_run_evolve(w->r, &dec, err, sizeof(err)) != RS_OK) {
			fprintf(stderr, "evolve %s: %s\n", rs_event_type_name(dec.type), err);
			CHECK(0);
			rs_event_free(&dec);
			continue;
		}
		w->hist = realloc(w->hist, (w->nhist + 1) * sizeof(*w->hist));
		if (w->hist == NULL)
			abort();
		w->hist[w->nhist++] = dec;
	}
}

/* The decision's own end state (what the orchestrator keeps instead of
 * evolving the events again) is the state the events evolve to. */
static void
check_after(world *w)
{
	CHECK((w->last.nevents > 0) == (w->last.after != NULL));
	if (w->last.after != NULL)
		check_same_view(w->last.after, w->r);
}

/* Keep c (it yielded events) for tests that rebuild commands from the
 * history (rs_replay_cmd_from_event); otherwise free it. */
static void
keep_cmd(world *w, rs_cmd *c)
{
	if (w->last.nevents == 0) {
		rs_cmd_free(c);
		return;
	}
	w->cmds = realloc(w->cmds, (w->ncmds + 1) * sizeof(*w->cmds));
	w->cmd_at = realloc(w->cmd_at, (w->ncmds + 1) * sizeof(*w->cmd_at));
	if (w->cmds == NULL || w->cmd_at == NULL)
		abort();
	w->cmd_at[w->ncmds] = w->now;
	w->cmds[w->ncmds++] = *c;
}

const char *
step_n(world *w, rs_cmd c, int apply_all)
{
	char err[256] = "";
	size_t off = 0;
	rs_status st;

	if (c.type == RS_CMD_RUN_START)
		snprintf(w->trace, sizeof(w->trace), "%s", c.traceparent);
	rs_decision_free(&w->last);
	st = rs_run_decide(w->r, w->agent, &c, w->now, "orch-1", &w->last, err, sizeof(err));
	w->types[0] = '\0';
	if (st != RS_OK) {
		snprintf(w->types, sizeof(w->types), "ERROR %s: %s", rs_status_str(st), err);
		rs_cmd_free(&c);
		return w->types;
	}
	for (size_t i = 0; i < w->last.nevents && off < sizeof(w->types) - 1; i++)
		off += (size_t)snprintf(w->types + off, sizeof(w->types) - off, "%s%s",
		                        i ? " " : "", rs_event_type_name(w->last.events[i].type));
	check_deterministic(w, &c);
	check_effects(w);
	apply(w, apply_all ? w->last.nevents : 1);
	if (apply_all)
		check_after(w);
	keep_cmd(w, &c);
	return w->types;
}

const char *
step(world *w, rs_cmd c)
{
	return step_n(w, c, 1);
}

const rs_event *
ev(world *w, rs_event_type t, int nth)
{
	for (size_t i = 0; i < w->last.nevents; i++)
		if (w->last.events[i].type == t && nth-- == 0)
			return &w->last.events[i];
	return NULL;
}

const rs_event *
hist_last(world *w, rs_event_type t)
{
	for (size_t i = w->nhist; i > 0; i--)
		if (w->hist[i - 1].type == t)
			return &w->hist[i - 1];
	return NULL;
}

int
count_type(world *w, rs_event_type t)
{
	int n = 0;

	for (size_t i = 0; i < w->last.nevents; i++)
		n += w->last.events[i].type == t;
	return n;
}

json_t *
view_get(world *w, const char *path)
{
	json_decref(w->view);
	w->view = rs_run_view(w->r);
	return path ? rs_json_path(w->view, path) : w->view;
}
