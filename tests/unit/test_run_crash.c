/*
 * test_run_crash.c - unit tests of the run state machine (rs_run) for
 * crash consistency: every decision of the test scripts cut at every
 * event (cuts.h), and the cases of the crash report (a kill -9 of the
 * orchestrator under load left runs damaged), each finished exactly.
 */
#include "rs_id.h"
#include "rs_json.h"
#include "rs_run.h"
#include "rs_replay.h"
#include "cuts.h"
#include "world.h"

#include <stdlib.h>
#include <string.h>

/* --- crash consistency: a decision cut anywhere is finished exactly --- */

static const char *A_MIX =
	"{\"name\":\"mix\",\"timeout_s\":600,\"steps\":["
	"{\"id\":\"t\",\"kind\":\"transform\",\"value\":{\"x\":\"{{input.x}}\"}},"
	"{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.x\",\"equals\":1},"
	"\"goto\":\"nap\"}],\"else\":\"call\"},"
	"{\"id\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":100},"
	"{\"id\":\"call\",\"kind\":\"tool\",\"tool\":\"flaky\",\"timeout_s\":30,"
	" \"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":100}},"
	"{\"id\":\"ok\",\"kind\":\"signal\",\"signal\":\"go\",\"timeout_s\":60},"
	"{\"id\":\"done\",\"kind\":\"transform\",\"value\":{\"got\":\"{{steps.ok.output}}\"}}]}";

static void
test_cut_everywhere(void)
{
	static const s_step inc3[] = {
		{ S_START, "{\"n\":1}", 0, 1000 }, { S_DELIVER, NULL, 0, 1001 },
		{ S_RESULT, "{\"n\":2}", 0, 1002 }, { S_DELIVER, NULL, 0, 1003 },
		{ S_RESULT, "{\"n\":3}", 0, 1004 }, { S_DELIVER, NULL, 0, 1005 },
		{ S_RESULT, "{\"n\":4}", 0, 1006 }, { S_END, NULL, 0, 0 } };
	static const s_step mix_retry[] = {
		{ S_START, "{\"x\":2}", 0, 1000 }, { S_ERROR, "flaky", 0, 1010 },
		{ S_FIRE, NULL, RS_TIMER_RETRY, 1200 }, { S_FIRE, NULL, RS_TIMER_TOOL_TIMEOUT, 31300 },
		{ S_FIRE, NULL, RS_TIMER_RETRY, 31600 }, { S_RESULT, "{\"v\":1}", 0, 31700 },
		{ S_SIGNAL, "{\"by\":\"ann\"}", 0, 31800 }, { S_END, NULL, 0, 0 } };
	static const s_step mix_sleep[] = {
		{ S_START, "{\"x\":1}", 0, 1000 }, { S_FIRE, NULL, RS_TIMER_SLEEP, 1100 },
		{ S_RESULT, "{\"v\":1}", 0, 1200 }, { S_FIRE, NULL, RS_TIMER_SIGNAL_TIMEOUT, 61300 },
		{ S_FIRE, NULL, RS_TIMER_RETRY, 61500 }, { S_SIGNAL, "7", 0, 61600 },
		{ S_END, NULL, 0, 0 } };
	static const s_step mix_cancel[] = {
		{ S_START, "{\"x\":2}", 0, 1000 }, { S_DELIVER, NULL, 0, 1001 },
		{ S_CANCEL, NULL, 0, 1002 }, { S_END, NULL, 0, 0 } };
	static const s_step mix_timeout[] = {
		{ S_START, "{\"x\":2}", 0, 1000 }, { S_FIRE, NULL, RS_TIMER_RUN_TIMEOUT, 601000 },
		{ S_END, NULL, 0, 0 } };

	check_cuts(A_INC3, inc3);
	check_cuts(A_MIX, mix_retry);
	check_cuts(A_MIX, mix_sleep);
	check_cuts(A_MIX, mix_cancel);
	check_cuts(A_MIX, mix_timeout);
}

/*
 * The five runs of the crash report, each from its event sequence: the
 * three-step `inc` agent cut (A, B) after tool.completed, with the tool
 * timeout firing 30 s later; (C) after step.completed s3 (next=end);
 * (D, E) after tool.requested s3, without its timer.
 */
static void
cut_inc3_at(world *w, int result_no, size_t keep)
{
	char err[256];
	rs_cmd c;

	world_init(w, A_INC3);
	step(w, c_start("{\"n\":1}"));
	for (int i = 1; i < result_no; i++) {
		char out[32];
		snprintf(out, sizeof(out), "{\"n\":%d}", i + 1);
		step(w, c_delivered(w->call_id));
		step(w, c_result(w->call_id, out));
	}
	step(w, c_delivered(w->call_id));
	rs_decision_free(&w->last);
	c = c_result(w->call_id, "{\"n\":9}");
	CHECK(rs_run_decide(w->r, w->agent, &c, w->now, "orch-1", &w->last, err,
	                    sizeof(err)) == RS_OK);
	rs_cmd_free(&c);
	apply(w, keep);
	rs_decision_free(&w->last);
}

static void
test_crash_report_cases(void)
{
	world w;
	char tool_timer[192];

	/* A: tool.completed s3, then only the tool timeout 30 s later */
	cut_inc3_at(&w, 3, 1);
	CHECK_JSON(view_get(&w, "status"), "\"waiting\"");
	snprintf(tool_timer, sizeof(tool_timer), "%s", w.timer[RS_TIMER_TOOL_TIMEOUT]);
	w.now += 30001;
	CHECK_STR(step(&w, c_fire(tool_timer)), "step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "{\"n\":9}");
	CHECK_STR(step(&w, c_fire(tool_timer)), "");
	finish(&w);
	/* B: the same on s2: the run goes on to s3 */
	cut_inc3_at(&w, 2, 1);
	snprintf(tool_timer, sizeof(tool_timer), "%s", w.timer[RS_TIMER_TOOL_TIMEOUT]);
	w.now += 30001;
	CHECK_STR(step(&w, c_fire(tool_timer)),
	          "step.completed step.started tool.requested timer.scheduled");
	CHECK_JSON(ev(&w, RS_EV_TOOL_REQUESTED, 0)->d.tool_requested.args, "{\"n\":9}");
	finish(&w);
	/* C: step.completed s3 (next=end), no run.completed: the redelivered
	 * result finishes the run */
	cut_inc3_at(&w, 3, 2);
	CHECK(!rs_run_at_rest(w.r, w.agent));
	w.now += 10000;
	CHECK_STR(step(&w, c_result(w.call_id, "{\"n\":9}")), "run.completed");
	CHECK_JSON(view_get(&w, "status"), "\"completed\"");
	finish(&w);
	/* D, E: tool.requested s3 without its timer (and no call published):
	 * a run.continue schedules the timeout and publishes the call */
	cut_inc3_at(&w, 2, 4);
	CHECK(!rs_run_at_rest(w.r, w.agent));
	w.now += 10000;
	{
		rs_cmd c = mk(RS_CMD_RUN_CONTINUE);
		c.after_seq = (int64_t)rs_run_last_seq(w.r);
		CHECK_STR(step(&w, c), "timer.scheduled");
	}
	CHECK_INT(w.last.ntimers, 1);
	CHECK_INT(w.last.timers[0].purpose, RS_TIMER_TOOL_TIMEOUT);
	CHECK_INT(w.last.timers[0].due_at, ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.due_at);
	CHECK(rs_run_at_rest(w.r, w.agent));
	{
		rs_decision p;
		CHECK(rs_run_pending_effects(w.r, &p) == RS_OK);
		CHECK_INT(p.ncalls, 1);   /* the s3 call, owed to the routers */
		rs_decision_free(&p);
	}
	finish(&w);
}

/*
 * A timer never acts on a purpose already met, even when its fire comes
 * first (table: timer purpose, what happened before the fire).
 */
/* --- the safety net for a message the streams lost --- */

static const char *A_LATE =
	"{\"name\":\"late\",\"steps\":[{\"id\":\"call\",\"kind\":\"tool\",\"tool\":\"slow\","
	"\"timeout_s\":100}]}";

/* How many timers and calls rs_run_late_effects finds at now. */
static void
late_at(world *w, int64_t now, int64_t grace, size_t timers, size_t calls)
{
	rs_decision d;

	rs_run_late_effects(w->r, now, grace, &d);
	CHECK_INT(d.ntimers, timers);
	CHECK_INT(d.ncalls, calls);
	CHECK_INT(d.nevents + d.ncmds, 0);
	if (d.ncalls > 0) {
		CHECK_STR(d.calls[0].call_id, w->call_id);
		CHECK_INT(d.calls[0].cancel, 0);
	}
	if (d.ntimers > 0)
		CHECK_STR(d.timers[0].timer_id, w->timer[RS_TIMER_TOOL_TIMEOUT]);
	rs_decision_free(&d);
}

/* Only what is owed for longer than the grace: a call never dispatched,
 * a timer overdue; nothing once the run is finished. */
static void
test_late_effects(void)
{
	world w;

	world_init(&w, A_LATE);
	CHECK_STR(step(&w, c_start("{}")),
	          "run.created run.started step.started tool.requested timer.scheduled");
	late_at(&w, 1000, 15000, 0, 0);
	late_at(&w, 16000, 15000, 0, 0);          /* undispatched 15 s: not yet */
	late_at(&w, 16001, 15000, 0, 1);          /* the call, again */
	w.now = 2000;
	CHECK_STR(step(&w, c_delivered(w.call_id)), "tool.dispatched");
	late_at(&w, 32000, 15000, 0, 0);          /* at its device 30 s: not yet */
	late_at(&w, 32001, 15000, 0, 1);          /* unanswered: the call again (for its result) */
	late_at(&w, 116000, 15000, 0, 1);         /* timeout due at 101000: 15 s over, not yet */
	late_at(&w, 116001, 15000, 1, 1);         /* the timeout timer, again */
	w.now = 116001;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_TOOL_TIMEOUT])),
	          "timer.fired tool.timed_out step.failed run.failed");
	late_at(&w, 999999, 15000, 0, 0);         /* finished: nothing owed */
	world_free(&w);
}

int
main(void)
{
	test_cut_everywhere();
	test_crash_report_cases();
	test_late_effects();
	return check_report("test_run_crash");
}
