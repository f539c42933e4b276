/*
 * test_run_children.c - unit tests of the run state machine (rs_run) for
 * what runs beside a run: fork and retry (rs_fork.h), concurrency gates,
 * and child runs (parallel, foreach, run steps), each side and cut
 * everywhere. The same world and tables as test_run.c (world.h, cuts.h).
 */
#include "rs_id.h"
#include "rs_json.h"
#include "rs_run.h"
#include "rs_fork.h"
#include "rs_replay.h"
#include "cuts.h"
#include "world.h"

#include <stdlib.h>
#include <string.h>

/* --- fork and retry (rs_fork.h): a new run reuses the recorded outputs of
 * the source's effect steps before from_seq and runs the rest --- */

static const char *A_FORK_V1 =
	"{\"name\":\"f\",\"steps\":["
	"{\"id\":\"a\",\"kind\":\"tool\",\"tool\":\"echo\",\"args\":{\"x\":\"{{input.x}}\"}},"
	"{\"id\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":1000},"
	"{\"id\":\"t\",\"kind\":\"transform\",\"value\":\"{{steps.a.output.x}}\"},"
	"{\"id\":\"b\",\"kind\":\"tool\",\"tool\":\"fail\",\"args\":{\"v\":\"{{steps.t.output}}\"}}]}";
/* the fix: b calls another tool; a, nap, t unchanged */
static const char *A_FORK_V2 =
	"{\"name\":\"f\",\"steps\":["
	"{\"id\":\"a\",\"kind\":\"tool\",\"tool\":\"echo\",\"args\":{\"x\":\"{{input.x}}\"}},"
	"{\"id\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":1000},"
	"{\"id\":\"t\",\"kind\":\"transform\",\"value\":\"{{steps.a.output.x}}\"},"
	"{\"id\":\"b\",\"kind\":\"tool\",\"tool\":\"echo\",\"args\":{\"v\":\"{{steps.t.output}}\"}}]}";
/* a new first step: nothing of the source lines up any more */
static const char *A_FORK_V3 =
	"{\"name\":\"f\",\"steps\":["
	"{\"id\":\"pre\",\"kind\":\"tool\",\"tool\":\"echo\",\"args\":{}},"
	"{\"id\":\"a\",\"kind\":\"tool\",\"tool\":\"echo\",\"args\":{\"x\":\"{{input.x}}\"}}]}";

static rs_cmd
c_fork(const char *input, const char *from, int64_t from_seq, json_t *reuse)
{
	rs_cmd c = c_start(input);

	c.forked_from = strdup(from);
	c.from_seq = from_seq;
	c.reuse = reuse;
	return c;
}

static void
test_fork(void)
{
	world src, w;
	json_t *reuse = NULL;
	int64_t from = 0;
	char err[256];
	const char *SRC = "0190f5d2-0000-7a3b-8c1d-2e3f4a5b6c7d";

	/* the source: a and nap complete, b fails for good */
	world_init(&src, A_FORK_V1);
	step(&src, c_start("{\"x\":7}"));
	CHECK_STR(step(&src, c_result(src.call_id, "{\"x\":7}")),
	          "tool.completed step.completed step.started timer.scheduled");
	src.now = 2000;
	CHECK_STR(step(&src, c_fire(src.timer[RS_TIMER_SLEEP])),
	          "timer.fired step.completed step.started step.completed step.started "
	          "tool.requested timer.scheduled");
	CHECK_STR(step(&src, c_tool_error(src.call_id, "boom", RS_ERRCLASS_PERMANENT)),
	          "tool.failed step.failed run.failed");

	/* retry: from just before b began; plan: a's and nap's outputs */
	CHECK(rs_fork_retry_seq(src.hist, src.nhist, &from) == RS_OK);
	CHECK_INT(from, 13);   /* b's step.started is event 14 */
	CHECK_INT(src.hist[from].type, RS_EV_STEP_STARTED);
	CHECK(rs_fork_plan(src.hist, src.nhist, from, &reuse, err, sizeof(err)) == RS_OK);
	CHECK_JSON(reuse, "[{\"output\":{\"x\":7},\"seq\":7,\"step_id\":\"a\"},"
	                  "{\"output\":null,\"seq\":11,\"step_id\":\"nap\"}]");
	/* bounds */
	{
		json_t *x = NULL;
		CHECK(rs_fork_plan(src.hist, src.nhist, 0, &x, err, sizeof(err)) == RS_EINVAL);
		CHECK(rs_fork_plan(src.hist, src.nhist, 99, &x, err, sizeof(err)) == RS_EINVAL);
		CHECK(strstr(err, "between 1 and 19") != NULL);
		CHECK(rs_fork_plan(src.hist + 1, src.nhist - 1, 3, &x, err, sizeof(err)) == RS_EINVAL);
		CHECK(rs_fork_plan(src.hist, src.nhist, 1, &x, err, sizeof(err)) == RS_OK);
		CHECK_JSON(x, "[]");
		json_decref(x);
		/* a completed run has nothing to retry */
		CHECK(rs_fork_retry_seq(src.hist, 11, &from) == RS_ENOTFOUND);
		from = 13;
	}

	/* the fork under the fixed version: a and nap reused (no call, no
	 * timer), t evaluated again, b called for real */
	world_init(&w, A_FORK_V2);
	CHECK_STR(step(&w, c_fork("{\"x\":7}", SRC, from, json_incref(reuse))),
	          "run.created run.started step.started step.completed step.started "
	          "step.completed step.started step.completed step.started tool.requested "
	          "timer.scheduled");
	CHECK_STR(ev(&w, RS_EV_RUN_CREATED, 0)->d.run_created.forked_from, SRC);
	CHECK_INT(ev(&w, RS_EV_RUN_CREATED, 0)->d.run_created.from_seq, 13);
	CHECK_INT(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.reused_seq, 7);
	CHECK_INT(ev(&w, RS_EV_STEP_COMPLETED, 1)->d.step_completed.reused_seq, 11);
	CHECK_INT(ev(&w, RS_EV_STEP_COMPLETED, 2)->d.step_completed.reused_seq, 0);  /* t */
	CHECK_INT(w.last.ncalls, 1);
	CHECK_STR(w.last.calls[0].tool, "echo");
	CHECK_JSON(w.last.calls[0].args, "{\"v\":7}");
	CHECK_INT(w.last.ntimers, 1);   /* b's tool timeout only: nap did not sleep */
	CHECK_JSON(view_get(&w, "forked_from"), "\"0190f5d2-0000-7a3b-8c1d-2e3f4a5b6c7d\"");
	CHECK_JSON(view_get(&w, "reused_steps"), "2");
	CHECK_STR(step(&w, c_result(w.call_id, "{\"ok\":1}")),
	          "tool.completed step.completed run.completed");
	finish(&w);

	/* a fork whose definition no longer lines up reuses nothing */
	world_init(&w, A_FORK_V3);
	CHECK_STR(step(&w, c_fork("{\"x\":7}", SRC, from, json_incref(reuse))),
	          "run.created run.started step.started tool.requested timer.scheduled");
	CHECK_STR(step(&w, c_result(w.call_id, "{}")),
	          "tool.completed step.completed step.started tool.requested timer.scheduled");
	CHECK_JSON(view_get(&w, "reused_steps"), "0");   /* a came after a divergence */
	finish(&w);

	/* a malformed reuse list is refused, by decide and by evolve */
	world_init(&w, A_FORK_V2);
	CHECK(strncmp(step(&w, c_fork("{}", SRC, 3, parse("[{\"step_id\":\"a\"}]"))),
	              "ERROR", 5) == 0);
	CHECK(strstr(w.types, "reuse[0].seq") != NULL);
	finish(&w);

	/* evolve refuses a reused step.completed the list does not hold */
	{
		rs_run *r = rs_run_new();
		CHECK(rs_run_evolve(r, &src.hist[0], err, sizeof(err)) == RS_OK);
		CHECK(rs_run_evolve(r, &src.hist[1], err, sizeof(err)) == RS_OK);
		CHECK(rs_run_evolve(r, &src.hist[2], err, sizeof(err)) == RS_OK);
		CHECK_INT(src.hist[6].type, RS_EV_STEP_COMPLETED);
		src.hist[6].runseq = 4;
		src.hist[6].d.step_completed.reused_seq = 7;
		CHECK(rs_run_evolve(r, &src.hist[6], err, sizeof(err)) == RS_EINVAL);
		CHECK(strstr(err, "reuses no output") != NULL);
		src.hist[6].runseq = 7;
		src.hist[6].d.step_completed.reused_seq = 0;
		rs_run_free(r);
	}
	json_decref(reuse);
	finish(&src);
}

/* --- admission: concurrency keys and the tenant limit keep a run queued
 * until run.admit --- */
static void
test_gate(void)
{
	world w;
	const char *key;
	int64_t limit, tl;
	rs_agent *a = NULL;
	char err[256];
	static const char *A_GATED =
		"{\"name\":\"g\",\"concurrency\":{\"key\":\"cust-{{input.customer}}\",\"limit\":2},"
		"\"steps\":[{\"id\":\"s\",\"kind\":\"transform\",\"value\":1}]}";

	world_init(&w, A_GATED);
	CHECK_STR(step(&w, c_start("{\"customer\":42}")), "run.created");
	CHECK_STR(ev(&w, RS_EV_RUN_CREATED, 0)->d.run_created.concurrency_key, "cust-42");
	CHECK_INT(ev(&w, RS_EV_RUN_CREATED, 0)->d.run_created.concurrency_limit, 2);
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_QUEUED);
	CHECK(rs_run_at_rest(w.r, w.agent));
	CHECK(rs_run_gate(w.r, &key, &limit, &tl) == 1);
	CHECK_STR(key, "cust-42");
	CHECK_INT(limit, 2);
	CHECK_INT(tl, 0);
	CHECK_JSON(view_get(&w, "concurrency_key"), "\"cust-42\"");
	{
		rs_cmd c = mk(RS_CMD_RUN_CONTINUE);
		c.after_seq = 1;
		CHECK_STR(step(&w, c), "");          /* nothing owed while queued */
	}
	CHECK_STR(step(&w, c_start("{\"customer\":42}")), "");   /* duplicate start */
	CHECK_STR(step(&w, mk(RS_CMD_RUN_ADMIT)),
	          "run.started step.started step.completed run.completed");
	CHECK_STR(ev(&w, RS_EV_RUN_STARTED, 0)->d.run_started.admission, "granted");
	CHECK_STR(step(&w, mk(RS_CMD_RUN_ADMIT)), "");           /* finished */
	CHECK(rs_run_gate(w.r, &key, &limit, &tl) == 1);        /* still holds its slot */
	finish(&w);

	/* the tenant limit alone, recorded from the command; a missing key
	 * value renders as the empty key */
	world_init(&w, A_GATED);
	{
		rs_cmd c = c_start("{}");
		c.tenant_limit = 5;
		CHECK_STR(step(&w, c), "run.created");
	}
	CHECK_STR(ev(&w, RS_EV_RUN_CREATED, 0)->d.run_created.concurrency_key, "cust-");
	CHECK_INT(ev(&w, RS_EV_RUN_CREATED, 0)->d.run_created.tenant_limit, 5);
	/* cancelled while queued: never starts, admission afterwards is void */
	CHECK_STR(step(&w, c_cancel()), "run.cancel_requested run.cancelled");
	CHECK_STR(step(&w, mk(RS_CMD_RUN_ADMIT)), "");
	finish(&w);

	/* not gated: run.admit means nothing, run.start starts at once */
	world_init(&w, "{\"name\":\"t\",\"steps\":[{\"id\":\"fetch\",\"kind\":\"tool\","
	               "\"tool\":\"http.get\",\"args\":{\"url\":\"{{input.url}}\"}}]}");
	CHECK_STR(step(&w, c_start("{\"url\":\"u\",\"n\":1}")),
	          "run.created run.started step.started tool.requested timer.scheduled");
	CHECK(rs_run_gate(w.r, &key, &limit, &tl) == 0);
	CHECK(key == NULL);
	CHECK_STR(step(&w, mk(RS_CMD_RUN_ADMIT)), "");
	finish(&w);

	/* validation of the definition */
	CHECK(rs_agent_parse_text("{\"name\":\"g\",\"concurrency\":{\"key\":\"k\"},\"steps\":"
	                          "[{\"id\":\"s\",\"kind\":\"sleep\",\"duration_ms\":1}]}", 90, &a,
	                          err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "concurrency.limit: required");
	CHECK(rs_agent_parse_text("{\"name\":\"g\",\"concurrency\":{\"key\":\"k\",\"limit\":0},"
	                          "\"steps\":[{\"id\":\"s\",\"kind\":\"sleep\",\"duration_ms\":1}]}",
	                          100, &a, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "concurrency.limit") != NULL);
	CHECK(rs_agent_parse_text("{\"name\":\"g\",\"concurrency\":{\"key\":\"k\",\"limit\":1,\"x\":1},"
	                          "\"steps\":[{\"id\":\"s\",\"kind\":\"sleep\",\"duration_ms\":1}]}",
	                          106, &a, err, sizeof(err)) == RS_EINVAL);
	CHECK(strstr(err, "concurrency") != NULL);
}

/* --- children runs: parallel, foreach, run --- */

static const char *A_PAR =
	"{\"name\":\"par\",\"steps\":["
	"{\"id\":\"fan\",\"kind\":\"parallel\",\"branches\":{"
	"  \"b\":[{\"id\":\"x\",\"kind\":\"transform\",\"value\":\"{{input.v}}\"}],"
	"  \"a\":[{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"inc\",\"args\":{\"n\":\"{{input.n}}\"}}]}},"
	"{\"id\":\"sum\",\"kind\":\"transform\",\"value\":{\"a\":\"{{steps.fan.output.a.n}}\","
	" \"b\":\"{{steps.fan.output.b}}\"}}]}";

static const char *A_PAR_ANY =
	"{\"name\":\"par\",\"steps\":[{\"id\":\"fan\",\"kind\":\"parallel\",\"join\":\"any\","
	"\"input\":{\"q\":\"{{input.q}}\"},\"branches\":{"
	"  \"a\":[{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"inc\"}],"
	"  \"b\":[{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"inc\"}]}}]}";

static const char *A_PAR_COLLECT =
	"{\"name\":\"par\",\"steps\":[{\"id\":\"fan\",\"kind\":\"parallel\","
	"\"on_failure\":\"collect\",\"branches\":{"
	"  \"a\":[{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"inc\"}],"
	"  \"b\":[{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"inc\"}]}}]}";

static const char *A_EACH =
	"{\"name\":\"each\",\"steps\":[{\"id\":\"loop\",\"kind\":\"foreach\","
	"\"items\":\"{{input.xs}}\",\"max_concurrency\":2,\"input\":{\"k\":\"{{input.k}}\"},"
	"\"steps\":[{\"id\":\"t\",\"kind\":\"tool\",\"tool\":\"inc\","
	"  \"args\":{\"n\":\"{{input.item}}\",\"i\":\"{{input.index}}\"}}]}]}";

static const char *A_SUB =
	"{\"name\":\"outer\",\"steps\":[{\"id\":\"call\",\"kind\":\"run\",\"agent\":\"inner\","
	"\"input\":{\"n\":\"{{input.n}}\"}}],\"output\":\"{{steps.call.output}}\"}";

/* Check the run.start effects of the last decision: children in order,
 * each pinned to the parent's agent and version with its scope. */
static void
check_child_starts(world *w, size_t n, const char *scope0)
{
	size_t starts = 0;

	for (size_t i = 0; i < w->last.ncmds; i++) {
		const rs_cmd *c = &w->last.cmds[i];
		if (c->type != RS_CMD_RUN_START)
			continue;
		CHECK_STR(c->parent_run_id, RUN_ID);
		CHECK_STR(c->root_run_id, RUN_ID);
		CHECK_STR(c->tenant, TENANT);
		CHECK_STR(c->traceparent, TRACE);
		CHECK(rs_id_is_uuid(c->run_id));
		if (starts == 0 && scope0 != NULL)
			CHECK_STR(c->scope, scope0);
		starts++;
	}
	CHECK_INT(starts, n);
}

static int
count_cmds(world *w, rs_cmd_type t)
{
	int n = 0;

	for (size_t i = 0; i < w->last.ncmds; i++)
		n += w->last.cmds[i].type == t;
	return n;
}

static void
test_parallel(void)
{
	world w;
	const rs_event *e;
	const rs_agent *sub;

	world_init(&w, A_PAR);
	CHECK_STR(step(&w, c_start("{\"n\":1,\"v\":\"hi\"}")),
	          "run.created run.started step.started child.started child.started");
	/* branches in sorted order, each a child run of the same agent */
	e = ev(&w, RS_EV_CHILD_STARTED, 0);
	CHECK_STR(e->d.child_started.key, "a");
	CHECK_STR(e->d.child_started.scope, "fan/a");
	CHECK_STR(e->d.child_started.agent, "par");
	CHECK_STR(e->d.child_started.version, rs_agent_version(w.agent));
	CHECK_JSON(e->d.child_started.input, "{\"n\":1,\"v\":\"hi\"}");
	CHECK_STR(ev(&w, RS_EV_CHILD_STARTED, 1)->d.child_started.key, "b");
	CHECK(strcmp(w.child[0], w.child[1]) != 0);
	check_child_starts(&w, 2, "fan/a");
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_WAITING);
	CHECK(rs_run_at_rest(w.r, w.agent));
	/* the scopes name the branches' step lists */
	sub = rs_agent_scope(w.agent, "fan/a");
	CHECK(sub != NULL && rs_agent_step_find(sub, "t", NULL) != NULL);
	CHECK_STR(rs_agent_version(sub), rs_agent_version(w.agent));
	CHECK(rs_agent_scope(w.agent, "fan/c") == NULL);
	CHECK(rs_agent_scope(w.agent, "sum/a") == NULL);
	CHECK(rs_agent_scope(w.agent, "") == w.agent);
	/* pending effects re-derive the starts */
	{
		rs_decision p;
		CHECK(rs_run_pending_effects(w.r, &p) == RS_OK);
		CHECK_INT(p.ncmds, 2);
		rs_decision_free(&p);
	}
	CHECK_STR(step(&w, c_child("0190f5d2-7c4e-7a3b-8c1d-000000000000", "completed", "1")), "");
	CHECK_STR(step(&w, c_child(w.child[1], "completed", "\"hi\"")), "child.finished");
	CHECK_STR(step(&w, c_child(w.child[1], "completed", "\"hi\"")), "");   /* twice */
	CHECK_STR(step(&w, c_child(w.child[0], "done", "1")),
	          "ERROR EINVAL: child.done: status must be completed, failed, "
	          "cancelled or timed_out");
	CHECK_STR(step(&w, c_child(w.child[0], "completed", "{\"n\":2}")),
	          "child.finished step.completed step.started step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.output,
	           "{\"a\":{\"n\":2},\"b\":\"hi\"}");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "{\"a\":2,\"b\":\"hi\"}");
	CHECK_INT(w.last.ncmds, 0);   /* a top-level run tells no parent */
	CHECK_JSON(view_get(&w, "children.0.status"), "\"completed\"");
	CHECK_JSON(view_get(&w, "children.1.key"), "\"b\"");
	finish(&w);
}

static void
test_parallel_any_and_failures(void)
{
	world w;

	/* join any: the first child decides, the other is cancelled */
	world_init(&w, A_PAR_ANY);
	CHECK_STR(step(&w, c_start("{\"q\":\"z\"}")),
	          "run.created run.started step.started child.started child.started");
	CHECK_JSON(ev(&w, RS_EV_CHILD_STARTED, 1)->d.child_started.input, "{\"q\":\"z\"}");
	CHECK_STR(step(&w, c_child(w.child[1], "completed", "5")),
	          "child.finished step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.output, "{\"b\":5}");
	CHECK_INT(count_cmds(&w, RS_CMD_CANCEL), 1);
	CHECK_STR(w.last.cmds[0].run_id, w.child[0]);
	CHECK_STR(step(&w, c_child(w.child[0], "cancelled", "x")), "");   /* late */
	finish(&w);

	/* a failing branch fails the step and the run, the other is cancelled */
	world_init(&w, A_PAR);
	step(&w, c_start("{\"n\":1}"));
	CHECK_STR(step(&w, c_child(w.child[0], "failed", "boom")),
	          "child.finished step.failed run.failed");
	CHECK_STR(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.error.code, "child_failed");
	CHECK_INT(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.final, 1);
	CHECK_INT(count_cmds(&w, RS_CMD_CANCEL), 1);
	CHECK_STR(w.last.cmds[0].run_id, w.child[1]);
	CHECK_JSON(view_get(&w, "children.1.status"), "\"cancelling\"");
	finish(&w);

	/* on_failure collect: the failure is part of the output */
	world_init(&w, A_PAR_COLLECT);
	step(&w, c_start("{}"));
	CHECK_STR(step(&w, c_child(w.child[0], "failed", "boom")), "child.finished");
	CHECK_STR(step(&w, c_child(w.child[1], "completed", "2")),
	          "child.finished step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.output,
	           "{\"a\":{\"error\":{\"class\":\"permanent\",\"code\":\"boom\",\"message\":"
	           "\"it broke\",\"retryable\":false},\"status\":\"failed\"},\"b\":2}");
	finish(&w);

	/* cancelling the parent cancels the children still running */
	world_init(&w, A_PAR);
	step(&w, c_start("{\"n\":1}"));
	step(&w, c_child(w.child[1], "completed", "1"));
	CHECK_STR(step(&w, c_cancel()), "run.cancel_requested run.cancelled");
	CHECK_INT(count_cmds(&w, RS_CMD_CANCEL), 1);
	CHECK_STR(w.last.cmds[0].run_id, w.child[0]);
	{
		rs_decision p;
		CHECK(rs_run_pending_effects(w.r, &p) == RS_OK);
		CHECK_INT(p.ncmds, 1);
		CHECK_INT(p.cmds[0].type, RS_CMD_CANCEL);
		rs_decision_free(&p);
	}
	finish(&w);
}

static void
test_foreach(void)
{
	world w;
	const rs_event *e;

	world_init(&w, A_EACH);
	CHECK_STR(step(&w, c_start("{\"xs\":[10,20,30,40,50],\"k\":\"K\"}")),
	          "run.created run.started step.started child.started child.started");
	e = ev(&w, RS_EV_CHILD_STARTED, 1);
	CHECK_STR(e->d.child_started.key, "1");
	CHECK_STR(e->d.child_started.scope, "loop/each");
	CHECK_JSON(e->d.child_started.input, "{\"index\":1,\"item\":20,\"k\":\"K\"}");
	check_child_starts(&w, 2, "loop/each");
	/* a slot frees: the next element starts; outputs land by index */
	CHECK_STR(step(&w, c_child(w.child[1], "completed", "21")), "child.finished child.started");
	CHECK_STR(step(&w, c_child(w.child[2], "completed", "31")), "child.finished child.started");
	CHECK_STR(step(&w, c_child(w.child[0], "completed", "11")), "child.finished child.started");
	CHECK_STR(ev(&w, RS_EV_CHILD_STARTED, 0)->d.child_started.key, "4");
	CHECK_STR(step(&w, c_child(w.child[4], "completed", "51")), "child.finished");
	CHECK_STR(step(&w, c_child(w.child[3], "completed", "41")),
	          "child.finished step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "[11,21,31,41,51]");
	finish(&w);

	/* an empty array completes at once; a non-array fails the step */
	world_init(&w, A_EACH);
	CHECK_STR(step(&w, c_start("{\"xs\":[]}")),
	          "run.created run.started step.started step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "[]");
	finish(&w);
	world_init(&w, A_EACH);
	CHECK_STR(step(&w, c_start("{\"xs\":7}")),
	          "run.created run.started step.started step.failed run.failed");
	CHECK_STR(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.error.code, "invalid_items");
	finish(&w);
	/* bounded: more than RS_FOREACH_MAX_ITEMS elements */
	{
		char *big = malloc(16 * (RS_FOREACH_MAX_ITEMS + 2));
		size_t o = (size_t)sprintf(big, "{\"xs\":[");
		for (int i = 0; i <= RS_FOREACH_MAX_ITEMS; i++)
			o += (size_t)sprintf(big + o, "%s%d", i ? "," : "", i);
		sprintf(big + o, "]}");
		world_init(&w, A_EACH);
		CHECK_STR(step(&w, c_start(big)),
		          "run.created run.started step.started step.failed run.failed");
		CHECK_STR(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.error.code, "too_many_items");
		finish(&w);
		free(big);
	}
	/* a child's input (base + element) is bounded like any value */
	{
		size_t n = 300 * 1024, o;
		char *big = malloc(2 * n + 64);
		o = (size_t)sprintf(big, "{\"k\":\"");
		memset(big + o, 'a', n);
		o += n;
		o += (size_t)sprintf(big + o, "\",\"xs\":[\"");
		memset(big + o, 'b', n);
		o += n;
		sprintf(big + o, "\"]}");
		world_init(&w, A_EACH);
		CHECK_STR(step(&w, c_start(big)),
		          "run.created run.started step.started step.failed run.failed");
		CHECK_STR(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.error.code, "too_large");
		finish(&w);
		free(big);
	}
}

static void
test_run_step(void)
{
	world w;
	const rs_event *e;

	world_init(&w, A_SUB);
	CHECK_STR(step(&w, c_start("{\"n\":4}")),
	          "run.created run.started step.started child.started");
	e = ev(&w, RS_EV_CHILD_STARTED, 0);
	CHECK_STR(e->d.child_started.agent, "inner");
	CHECK(e->d.child_started.version == NULL);   /* latest, resolved at creation */
	CHECK(e->d.child_started.scope == NULL);
	CHECK_JSON(e->d.child_started.input, "{\"n\":4}");
	CHECK_INT(w.last.ncmds, 1);
	CHECK_STR(w.last.cmds[0].agent, "inner");
	CHECK(w.last.cmds[0].version == NULL);
	CHECK_STR(w.last.cmds[0].parent_step_id, "call");
	CHECK_STR(step(&w, c_child(w.child[0], "completed", "{\"n\":5}")),
	          "child.finished step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "{\"n\":5}");
	finish(&w);

	/* the child's error code becomes the step's */
	world_init(&w, A_SUB);
	step(&w, c_start("{\"n\":4}"));
	CHECK_STR(step(&w, c_child(w.child[0], "failed", "bad_thing")),
	          "child.finished step.failed run.failed");
	CHECK_STR(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.code, "bad_thing");
	finish(&w);
}

/* The child's side: run.start names its parent and scope, run.created
 * records them, the terminal decision tells the parent. */
static void
test_child_side(void)
{
	world w;
	rs_cmd c;
	const rs_agent *sub;
	rs_agent *par;
	char err[256];

	CHECK(rs_agent_parse_text(A_PAR, strlen(A_PAR), &par, err, sizeof(err)) == RS_OK);
	sub = rs_agent_scope(par, "fan/a");
	world_init(&w, A_PAR);
	rs_agent_free(w.agent);
	w.agent = NULL;
	c = c_start("{\"n\":1}");
	c.parent_run_id = strdup("0190f5d2-7c4e-7a3b-8c1d-aaaaaaaaaaaa");
	c.root_run_id = strdup("0190f5d2-7c4e-7a3b-8c1d-bbbbbbbbbbbb");
	c.scope = strdup("fan/a");
	c.parent_step_id = strdup("fan");
	/* the world owns its agent: decide with the branch's list */
	{
		rs_decision d;
		CHECK(rs_run_decide(w.r, sub, &c, w.now, "orch-1", &d, err, sizeof(err)) == RS_OK);
		CHECK_INT(d.nevents, 5);
		CHECK_STR(d.events[0].d.run_created.parent_run_id, "0190f5d2-7c4e-7a3b-8c1d-aaaaaaaaaaaa");
		CHECK_STR(d.events[0].d.run_created.scope, "fan/a");
		CHECK_STR(d.events[3].d.tool_requested.tool, "inc");
		for (size_t i = 0; i < d.nevents; i++)
			CHECK(rs_run_evolve(w.r, &d.events[i], err, sizeof(err)) == RS_OK);
		rs_decision_free(&d);
	}
	CHECK_STR(rs_run_get_scope(w.r), "fan/a");
	CHECK_STR(rs_run_get_parent(w.r), "0190f5d2-7c4e-7a3b-8c1d-aaaaaaaaaaaa");
	CHECK_JSON(view_get(&w, "root_run_id"), "\"0190f5d2-7c4e-7a3b-8c1d-bbbbbbbbbbbb\"");
	rs_cmd_free(&c);
	{
		rs_decision d;
		char call[192];
		json_t *v = rs_run_view(w.r);
		snprintf(call, sizeof(call), "%s",
		         json_string_value(rs_json_path(v, "tool_calls.0.call_id")));
		json_decref(v);
		c = c_result(call, "{\"n\":2}");
		CHECK(rs_run_decide(w.r, sub, &c, w.now, "orch-1", &d, err, sizeof(err)) == RS_OK);
		CHECK_INT(d.events[d.nevents - 1].type, RS_EV_RUN_COMPLETED);
		CHECK_INT(d.ncmds, 1);
		CHECK_INT(d.cmds[0].type, RS_CMD_CHILD_DONE);
		CHECK_STR(d.cmds[0].run_id, "0190f5d2-7c4e-7a3b-8c1d-aaaaaaaaaaaa");
		CHECK_STR(d.cmds[0].child_run_id, RUN_ID);
		CHECK_STR(d.cmds[0].child_status, "completed");
		CHECK_JSON(d.cmds[0].output, "{\"n\":2}");
		for (size_t i = 0; i < d.nevents; i++)
			CHECK(rs_run_evolve(w.r, &d.events[i], err, sizeof(err)) == RS_OK);
		rs_decision_free(&d);
		rs_cmd_free(&c);
		/* and again from the state alone (a crash before the effect) */
		CHECK(rs_run_pending_effects(w.r, &d) == RS_OK);
		CHECK_INT(d.ncmds, 1);
		CHECK_INT(d.cmds[0].type, RS_CMD_CHILD_DONE);
		rs_decision_free(&d);
	}
	world_free(&w);      /* its agent is NULL: par is freed here */
	rs_agent_free(par);
}

static void
test_children_cut_everywhere(void)
{
	static const s_step par[] = {
		{ S_START, "{\"n\":1,\"v\":2}", 0, 1000 }, { S_CHILD, "\"x\"", 1, 1010 },
		{ S_CHILD, "{\"n\":2}", 0, 1020 }, { S_END, NULL, 0, 0 } };
	static const s_step par_fail[] = {
		{ S_START, "{\"n\":1}", 0, 1000 }, { S_CHILD_FAIL, "boom", 0, 1010 },
		{ S_END, NULL, 0, 0 } };
	static const s_step any[] = {
		{ S_START, "{\"q\":1}", 0, 1000 }, { S_CHILD, "3", 1, 1010 }, { S_END, NULL, 0, 0 } };
	static const s_step each[] = {
		{ S_START, "{\"xs\":[1,2,3],\"k\":0}", 0, 1000 }, { S_CHILD, "10", 1, 1010 },
		{ S_CHILD, "20", 0, 1020 }, { S_CHILD, "30", 2, 1030 }, { S_END, NULL, 0, 0 } };
	static const s_step sub[] = {
		{ S_START, "{\"n\":1}", 0, 1000 }, { S_CHILD, "{\"n\":2}", 0, 1010 },
		{ S_END, NULL, 0, 0 } };
	static const s_step cancel[] = {
		{ S_START, "{\"n\":1}", 0, 1000 }, { S_CHILD, "1", 1, 1010 }, { S_CANCEL, NULL, 0, 1020 },
		{ S_END, NULL, 0, 0 } };

	check_cuts(A_PAR, par);
	check_cuts(A_PAR, par_fail);
	check_cuts(A_PAR_ANY, any);
	check_cuts(A_EACH, each);
	check_cuts(A_SUB, sub);
	check_cuts(A_PAR, cancel);
}

int
main(void)
{
	test_fork();
	test_gate();
	test_parallel();
	test_parallel_any_and_failures();
	test_foreach();
	test_run_step();
	test_child_side();
	test_children_cut_everywhere();
	return check_report("test_run_children");
}
