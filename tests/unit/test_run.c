/*
 * test_run.c - unit tests of the run state machine (rs_run).
 *
 * Each test drives a "world" (an agent, a run state, a clock) with
 * commands. step() decides, checks the decision (runseq continuity, time,
 * envelope; deciding twice gives identical bytes; every event survives the
 * codec), evolves the decoded events into the state, and returns the event
 * types as one string, so that tests read as tables:
 *     (events so far, command) -> "tool.completed step.completed ..."
 * At the end, finish() replays the recorded history into a fresh state and
 * compares the views (what `runctl replay --check` relies on).
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

/* --- agents --- */

static const char *A_TOOL =
	"{\"name\":\"t\",\"steps\":["
	"{\"id\":\"fetch\",\"kind\":\"tool\",\"tool\":\"http.get\","
	" \"args\":{\"url\":\"{{input.url}}\",\"n\":\"{{input.n}}\"}},"
	"{\"id\":\"shape\",\"kind\":\"transform\",\"value\":{\"code\":\"{{steps.fetch.output.code}}\","
	" \"msg\":\"got {{steps.fetch.output.code}}\"}}],"
	"\"output\":{\"r\":\"{{steps.shape.output}}\"}}";

static const char *A_RETRY =
	"{\"name\":\"r\",\"steps\":[{\"id\":\"call\",\"kind\":\"tool\",\"tool\":\"flaky\","
	"\"device\":\"dev-1\",\"timeout_s\":30,"
	"\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":100,\"max_backoff_ms\":150,"
	"\"multiplier\":2,\"non_retryable\":[\"bad_input\"]}}]}";

static const char *A_SLEEP =
	"{\"name\":\"s\",\"steps\":[{\"id\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":5000},"
	"{\"id\":\"after\",\"kind\":\"transform\",\"value\":\"{{input.x}}\"}]}";

static const char *A_SIG =
	"{\"name\":\"g\",\"steps\":[{\"id\":\"approve\",\"kind\":\"signal\",\"signal\":\"approval\","
	"\"timeout_s\":60},"
	"{\"id\":\"who\",\"kind\":\"transform\",\"value\":\"{{steps.approve.output.by}}\"}]}";

static const char *A_SIG_RETRY =
	"{\"name\":\"g\",\"steps\":[{\"id\":\"approve\",\"kind\":\"signal\",\"signal\":\"approval\","
	"\"timeout_s\":60,\"retry\":{\"max_attempts\":2,\"initial_backoff_ms\":10}}]}";

static const char *A_SLEEP_SIG =
	"{\"name\":\"g\",\"steps\":[{\"id\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":10},"
	"{\"id\":\"wait\",\"kind\":\"signal\",\"signal\":\"go\"}]}";

static const char *A_RUN_TO =
	"{\"name\":\"rt\",\"timeout_s\":60,\"steps\":[{\"id\":\"call\",\"kind\":\"tool\","
	"\"tool\":\"slow\",\"timeout_s\":120}]}";

/* --- tests --- */

static void
test_tool_happy(void)
{
	world w;
	const rs_event *e;

	world_init(&w, A_TOOL);
	CHECK_STR(step(&w, c_start("{\"url\":\"http://x\",\"n\":3}")),
	          "run.created run.started step.started tool.requested timer.scheduled");
	e = ev(&w, RS_EV_TOOL_REQUESTED, 0);
	CHECK_JSON(e->d.tool_requested.args, "{\"n\":3,\"url\":\"http://x\"}");
	CHECK_STR(e->d.tool_requested.capability, "http.get");
	CHECK(e->d.tool_requested.device == NULL);
	CHECK_INT(e->d.tool_requested.deadline, 1000 + 30000);
	CHECK_STR(e->d.tool_requested.call_id, RUN_ID "-fetch-1-1");
	CHECK_STR(ev(&w, RS_EV_RUN_CREATED, 0)->d.run_created.version, rs_agent_version(w.agent));
	CHECK_STR(ev(&w, RS_EV_RUN_STARTED, 0)->d.run_started.instance, "orch-1");
	e = ev(&w, RS_EV_TIMER_SCHEDULED, 0);
	CHECK_INT(e->d.timer_scheduled.purpose, RS_TIMER_TOOL_TIMEOUT);
	CHECK_STR(e->d.timer_scheduled.timer_id, RUN_ID ".tool_timeout.fetch.1.1");
	/* effects: the call and its timer */
	CHECK_INT(w.last.ncalls, 1);
	CHECK_INT(w.last.calls[0].cancel, 0);
	CHECK_STR(w.last.calls[0].call_id, w.call_id);
	CHECK_STR(w.last.calls[0].tool, "http.get");
	CHECK_INT(w.last.ntimers, 1);
	CHECK_STR(w.last.timers[0].timer_id, w.timer[RS_TIMER_TOOL_TIMEOUT]);
	CHECK_INT(w.last.timers[0].due_at, 31000);
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_WAITING);
	CHECK_STR(rs_run_current_step(w.r), "fetch");

	/* pending effects re-derive the same */
	{
		rs_decision p;
		CHECK(rs_run_pending_effects(w.r, &p) == RS_OK);
		CHECK_INT(p.ncalls, 1);
		CHECK_INT(p.calls[0].cancel, 0);
		CHECK_JSON(p.calls[0].args, "{\"n\":3,\"url\":\"http://x\"}");
		CHECK_INT(p.ntimers, 1);
		CHECK_INT(p.timers[0].type, RS_CMD_TIMER_FIRE);
		CHECK_INT(p.timers[0].purpose, RS_TIMER_TOOL_TIMEOUT);
		rs_decision_free(&p);
	}

	CHECK_STR(step(&w, c_start("{}")), "");                       /* duplicate start */
	CHECK_STR(step(&w, c_delivered(w.call_id)), "tool.dispatched");
	CHECK_STR(ev(&w, RS_EV_TOOL_DISPATCHED, 0)->d.tool_dispatched.router, "router-a");
	CHECK_STR(step(&w, c_delivered(w.call_id)), "");              /* delivered twice */
	CHECK_STR(step(&w, c_result("nope", "{}")), "");              /* unknown call */
	w.now = 1500;
	CHECK_STR(step(&w, c_result(w.call_id, "{\"code\":200}")),
	          "tool.completed step.completed step.started step.completed run.completed");
	CHECK_INT(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.duration_ms, 500);
	CHECK_STR(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.next_step, "shape");
	CHECK_STR(ev(&w, RS_EV_STEP_COMPLETED, 1)->d.step_completed.next_step, "end");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output,
	           "{\"r\":{\"code\":200,\"msg\":\"got 200\"}}");
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_COMPLETED);
	CHECK_STR(step(&w, c_result(w.call_id, "{\"code\":200}")), "");   /* repeated result */
	w.now = 99999;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_TOOL_TIMEOUT])), "");  /* superseded */
	{
		rs_decision p;
		CHECK(rs_run_pending_effects(w.r, &p) == RS_OK);
		CHECK_INT(p.ncalls + p.ntimers, 0);
		rs_decision_free(&p);
	}
	/* the view */
	CHECK_JSON(view_get(&w, "status"), "\"completed\"");
	CHECK_JSON(view_get(&w, "steps.fetch.status"), "\"completed\"");
	CHECK_JSON(view_get(&w, "steps.fetch.output"), "{\"code\":200}");
	CHECK_JSON(view_get(&w, "steps.fetch.attempts.0.input"),
	           "{\"args\":{\"n\":3,\"url\":\"http://x\"},\"capability\":\"http.get\","
	           "\"tool\":\"http.get\"}");
	CHECK_JSON(view_get(&w, "steps.fetch.attempts.0.finished_at"), "1500");
	CHECK_JSON(view_get(&w, "tool_calls.0.status"), "\"completed\"");
	CHECK_JSON(view_get(&w, "tool_calls.0.dispatched_at"), "1000");
	CHECK_JSON(view_get(&w, "tool_calls.0.device_id"), "\"dev-1\"");
	CHECK_JSON(view_get(&w, "pending_timers"), "[]");
	CHECK_JSON(view_get(&w, "output"), "{\"r\":{\"code\":200,\"msg\":\"got 200\"}}");
	CHECK_JSON(view_get(&w, "last_seq"), "11");
	CHECK_JSON(view_get(&w, "current_step"), "null");
	CHECK_JSON(view_get(&w, "input"), "{\"n\":3,\"url\":\"http://x\"}");
	CHECK_JSON(view_get(&w, "finished_at"), "1500");
	finish(&w);
}

static void
test_retry_backoff(void)
{
	world w;
	const rs_event *e;
	char first_call[192];
	int64_t due = 0;

	world_init(&w, A_RETRY);
	step(&w, c_start("{}"));
	CHECK_STR(ev(&w, RS_EV_TOOL_REQUESTED, 0)->d.tool_requested.device, "dev-1");
	CHECK(ev(&w, RS_EV_TOOL_REQUESTED, 0)->d.tool_requested.capability == NULL);
	snprintf(first_call, sizeof(first_call), "%s", w.call_id);
	CHECK_STR(step(&w, c_tool_error(w.call_id, "boom", RS_ERRCLASS_TRANSIENT)),
	          "tool.failed step.failed step.retry_scheduled timer.scheduled");
	e = ev(&w, RS_EV_STEP_FAILED, 0);
	CHECK_INT(e->d.step_failed.final, 0);
	CHECK_INT(e->d.step_failed.error.retryable, 1);
	e = ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0);
	CHECK_INT(e->d.step_retry_scheduled.attempt, 2);
	CHECK_INT(e->d.step_retry_scheduled.backoff_ms, 100);
	CHECK_INT(e->d.step_retry_scheduled.due_at, 1100);
	CHECK_STR(e->d.step_retry_scheduled.timer_id, w.timer[RS_TIMER_RETRY]);
	CHECK_INT(w.last.ntimers, 1);
	CHECK_INT(w.last.timers[0].purpose, RS_TIMER_RETRY);
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_WAITING);
	CHECK_JSON(view_get(&w, "steps.call.status"), "\"retrying\"");

	/* never early */
	w.now = 1099;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_RETRY])), "");
	CHECK(rs_run_timer_due(w.r, w.timer[RS_TIMER_RETRY], &due) == RS_OK);
	CHECK_INT(due, 1100);
	w.now = 1100;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_RETRY])),
	          "timer.fired step.started tool.requested timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_STEP_STARTED, 0)->d.step_started.attempt, 2);
	CHECK(strcmp(w.call_id, first_call) != 0);
	CHECK(rs_run_timer_due(w.r, w.timer[RS_TIMER_RETRY], &due) == RS_ENOTFOUND);
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_RETRY])), "");          /* fire once */
	CHECK_STR(step(&w, c_result(first_call, "{}")), "");               /* old call */
	CHECK_STR(step(&w, c_tool_error(first_call, "boom", RS_ERRCLASS_TRANSIENT)), "");

	CHECK_STR(step(&w, c_tool_error(w.call_id, "boom", RS_ERRCLASS_TRANSIENT)),
	          "tool.failed step.failed step.retry_scheduled timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.backoff_ms, 150);
	w.now += 150;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_RETRY])),
	          "timer.fired step.started tool.requested timer.scheduled");
	CHECK_STR(step(&w, c_tool_error(w.call_id, "boom", RS_ERRCLASS_TRANSIENT)),
	          "tool.failed step.failed run.failed");
	e = ev(&w, RS_EV_STEP_FAILED, 0);
	CHECK_INT(e->d.step_failed.final, 1);
	CHECK_INT(e->d.step_failed.attempt, 3);
	e = ev(&w, RS_EV_RUN_FAILED, 0);
	CHECK_STR(e->d.run_failed.error.code, "boom");
	CHECK_STR(e->d.run_failed.error.step_id, "call");
	CHECK_JSON(view_get(&w, "steps.call.status"), "\"failed\"");
	CHECK_INT(json_array_size(view_get(&w, "steps.call.attempts")), 3);
	CHECK_JSON(view_get(&w, "error.code"), "\"boom\"");
	CHECK_JSON(view_get(&w, "status"), "\"failed\"");
	finish(&w);
}

static void
test_backoff_values(void)
{
	rs_retry r = { 5, 100, 10000, 3.0, NULL };
	static const int64_t want[] = { 100, 300, 900, 2700, 8100, 10000, 10000 };

	for (int i = 0; i < 7; i++)
		CHECK_INT(rs_run_backoff_ms(&r, i + 1), want[i]);
	r.initial_backoff_ms = 1000;
	r.multiplier = 1.5;
	CHECK_INT(rs_run_backoff_ms(&r, 1), 1000);
	CHECK_INT(rs_run_backoff_ms(&r, 2), 1500);
	CHECK_INT(rs_run_backoff_ms(&r, 3), 2250);
	r.multiplier = 1.0;
	CHECK_INT(rs_run_backoff_ms(&r, 50), 1000);
	r.multiplier = 10.0;
	CHECK_INT(rs_run_backoff_ms(&r, 1000000), 10000);   /* no overflow, no long loop */
}

static void
test_no_retry(void)
{
	world w;

	/* permanent errors do not retry */
	world_init(&w, A_RETRY);
	step(&w, c_start("{}"));
	CHECK_STR(step(&w, c_tool_error(w.call_id, "denied", RS_ERRCLASS_PERMANENT)),
	          "tool.failed step.failed run.failed");
	CHECK_INT(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.error.retryable, 0);
	CHECK_INT(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.final, 1);
	CHECK_INT(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.cls, RS_ERRCLASS_PERMANENT);
	finish(&w);

	/* non_retryable codes do not either, even when transient */
	world_init(&w, A_RETRY);
	step(&w, c_start("{}"));
	CHECK_STR(step(&w, c_tool_error(w.call_id, "bad_input", RS_ERRCLASS_TRANSIENT)),
	          "tool.failed step.failed run.failed");
	finish(&w);

	/* no retry policy: the first transient failure is final */
	world_init(&w, A_TOOL);
	step(&w, c_start("{}"));
	CHECK_STR(step(&w, c_tool_error(w.call_id, "boom", RS_ERRCLASS_TRANSIENT)),
	          "tool.failed step.failed run.failed");
	finish(&w);
}

static void
test_tool_timeout(void)
{
	world w;
	char old[192];

	/* with retry: timeouts retry, the call is cancelled */
	world_init(&w, A_RETRY);
	step(&w, c_start("{}"));
	snprintf(old, sizeof(old), "%s", w.call_id);
	w.now = 1000 + 29999;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_TOOL_TIMEOUT])), "");   /* not yet */
	w.now = 1000 + 30000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_TOOL_TIMEOUT])),
	          "timer.fired tool.timed_out step.failed step.retry_scheduled timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.error.cls, RS_ERRCLASS_TIMEOUT);
	CHECK_STR(ev(&w, RS_EV_STEP_FAILED, 0)->d.step_failed.error.code, "timeout");
	CHECK_STR(ev(&w, RS_EV_TOOL_TIMED_OUT, 0)->d.tool_timed_out.call_id, old);
	CHECK_INT(w.last.ncalls, 1);
	CHECK_INT(w.last.calls[0].cancel, 1);
	CHECK_STR(w.last.calls[0].call_id, old);
	CHECK_STR(step(&w, c_result(old, "{}")), "");                       /* too late */
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_TOOL_TIMEOUT])), "");    /* fired once */
	CHECK_JSON(view_get(&w, "tool_calls.0.status"), "\"timed_out\"");
	finish(&w);

	/* without retry: the run fails */
	world_init(&w, A_TOOL);
	step(&w, c_start("{}"));
	w.now += 30000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_TOOL_TIMEOUT])),
	          "timer.fired tool.timed_out step.failed run.failed");
	CHECK_STR(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.code, "timeout");
	CHECK_INT(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.cls, RS_ERRCLASS_TIMEOUT);
	finish(&w);
}

static void
test_sleep(void)
{
	world w;

	world_init(&w, A_SLEEP);
	CHECK_STR(step(&w, c_start("{\"x\":[1]}")),
	          "run.created run.started step.started timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.purpose, RS_TIMER_SLEEP);
	CHECK_INT(ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.due_at, 6000);
	CHECK_INT(w.last.ncalls, 0);
	CHECK_INT(w.last.ntimers, 1);
	CHECK_JSON(view_get(&w, "pending_timers.0.purpose"), "\"sleep\"");
	CHECK_JSON(view_get(&w, "status"), "\"waiting\"");
	w.now = 5999;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SLEEP])), "");           /* never early */
	CHECK_STR(step(&w, c_fire("no-such-timer")), "");
	w.now = 6000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SLEEP])),
	          "timer.fired step.completed step.started step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "[1]");
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SLEEP])), "");           /* fire once */
	finish(&w);
}

static void
test_signal(void)
{
	world w;

	world_init(&w, A_SIG);
	CHECK_STR(step(&w, c_start("{}")), "run.created run.started step.started timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_TIMER_SCHEDULED, 0)->d.timer_scheduled.purpose,
	          RS_TIMER_SIGNAL_TIMEOUT);
	CHECK_STR(step(&w, c_signal("n1", "noise", "1")), "signal.received");
	CHECK(ev(&w, RS_EV_SIGNAL_RECEIVED, 0)->d.signal_received.step_id == NULL);
	CHECK_STR(step(&w, c_signal("n1", "noise", "1")), "");              /* same signal_id */
	CHECK_STR(step(&w, c_signal("s1", "approval", "{\"by\":\"ann\"}")),
	          "signal.received step.completed step.started step.completed run.completed");
	CHECK_STR(ev(&w, RS_EV_SIGNAL_RECEIVED, 0)->d.signal_received.step_id, "approve");
	CHECK_JSON(ev(&w, RS_EV_STEP_COMPLETED, 0)->d.step_completed.output, "{\"by\":\"ann\"}");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "\"ann\"");
	CHECK_JSON(view_get(&w, "signals.1.consumed_by"), "\"approve\"");
	CHECK_JSON(view_get(&w, "signals.0.consumed_by"), "null");
	CHECK_STR(step(&w, c_signal("s1", "approval", "{}")), "");
	w.now += 60000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SIGNAL_TIMEOUT])), "");  /* superseded */
	finish(&w);

	/* timeout without retry */
	world_init(&w, A_SIG);
	step(&w, c_start("{}"));
	w.now += 60000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SIGNAL_TIMEOUT])),
	          "timer.fired step.failed run.failed");
	CHECK_INT(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.cls, RS_ERRCLASS_TIMEOUT);
	CHECK_STR(step(&w, c_signal("late", "approval", "{}")), "");
	finish(&w);

	/* timeout with retry: wait again, then the signal arrives */
	world_init(&w, A_SIG_RETRY);
	step(&w, c_start("{}"));
	w.now += 60000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SIGNAL_TIMEOUT])),
	          "timer.fired step.failed step.retry_scheduled timer.scheduled");
	CHECK_INT(ev(&w, RS_EV_STEP_RETRY_SCHEDULED, 0)->d.step_retry_scheduled.backoff_ms, 10);
	/* a signal during the backoff is buffered and taken by attempt 2 */
	CHECK_STR(step(&w, c_signal("a1", "approval", "\"yes\"")), "signal.received");
	w.now += 10;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_RETRY])),
	          "timer.fired step.started step.completed run.completed");
	CHECK_INT(ev(&w, RS_EV_STEP_STARTED, 0)->d.step_started.attempt, 2);
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "\"yes\"");
	finish(&w);

	/* a signal that arrives before its step is buffered */
	world_init(&w, A_SLEEP_SIG);
	CHECK_STR(step(&w, c_start("{}")), "run.created run.started step.started timer.scheduled");
	CHECK_STR(step(&w, c_signal("g1", "go", "7")), "signal.received");
	CHECK_STR(step(&w, c_signal("g2", "go", "8")), "signal.received");
	w.now += 10;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SLEEP])),
	          "timer.fired step.completed step.started step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "7");  /* oldest */
	CHECK_JSON(view_get(&w, "signals.0.consumed_by"), "\"wait\"");
	CHECK_JSON(view_get(&w, "signals.1.consumed_by"), "null");
	finish(&w);

	/* no timeout: the step just waits */
	world_init(&w, A_SLEEP_SIG);
	step(&w, c_start("{}"));
	w.now += 10;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SLEEP])),
	          "timer.fired step.completed step.started");
	CHECK_INT(w.last.ntimers, 0);
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_WAITING);
	CHECK_STR(step(&w, c_signal("x", "go", "{\"a\":1}")),
	          "signal.received step.completed run.completed");
	finish(&w);
}

static void
test_run_timeout(void)
{
	world w;

	world_init(&w, A_RUN_TO);
	CHECK_STR(step(&w, c_start("{}")),
	          "run.created run.started timer.scheduled step.started tool.requested "
	          "timer.scheduled");
	CHECK_INT(w.last.ntimers, 2);
	CHECK_STR(w.timer[RS_TIMER_RUN_TIMEOUT], RUN_ID ".run_timeout");
	CHECK_INT(ev(&w, RS_EV_RUN_CREATED, 0)->d.run_created.timeout_s, 60);
	step(&w, c_delivered(w.call_id));
	w.now += 60000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_RUN_TIMEOUT])), "timer.fired run.timed_out");
	CHECK_INT(ev(&w, RS_EV_RUN_TIMED_OUT, 0)->d.run_timed_out.timeout_s, 60);
	CHECK_INT(w.last.ncalls, 1);
	CHECK_INT(w.last.calls[0].cancel, 1);
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_TIMED_OUT);
	{
		rs_decision p;
		CHECK(rs_run_pending_effects(w.r, &p) == RS_OK);
		CHECK_INT(p.ncalls, 1);
		CHECK_INT(p.calls[0].cancel, 1);
		CHECK_INT(p.ntimers, 0);
		rs_decision_free(&p);
	}
	CHECK_STR(step(&w, c_result(w.call_id, "{}")), "");
	w.now += 60000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_TOOL_TIMEOUT])), "");
	CHECK_JSON(view_get(&w, "steps.call.status"), "\"timed_out\"");
	CHECK_JSON(view_get(&w, "tool_calls.0.status"), "\"cancelled\"");
	finish(&w);
}

static void
test_cancel(void)
{
	world w;

	/* only run.created so far: a start cut short by a crash. The cancel
	 * first finishes the start (a queued run is not at rest), then cancels
	 * the call that start made. */
	world_init(&w, A_TOOL);
	step_n(&w, c_start("{}"), 0);
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_QUEUED);
	CHECK_STR(step(&w, c_cancel()), "run.started step.started tool.requested timer.scheduled "
	          "run.cancel_requested run.cancelled");
	CHECK_INT(w.last.ncalls, 2);
	CHECK_INT(w.last.calls[1].cancel, 1);
	CHECK_STR(ev(&w, RS_EV_RUN_CANCELLED, 0)->d.run_cancelled.reason, "user asked");
	CHECK_STR(step(&w, c_cancel()), "");
	CHECK_STR(step(&w, c_start("{}")), "");
	finish(&w);

	/* waiting on a tool: the call is cancelled */
	world_init(&w, A_TOOL);
	step(&w, c_start("{}"));
	step(&w, c_delivered(w.call_id));
	CHECK_STR(step(&w, c_cancel()), "run.cancel_requested run.cancelled");
	CHECK_INT(w.last.ncalls, 1);
	CHECK_INT(w.last.calls[0].cancel, 1);
	CHECK_STR(w.last.calls[0].call_id, w.call_id);
	CHECK_INT(w.last.ntimers, 0);
	CHECK_STR(step(&w, c_result(w.call_id, "{}")), "");
	CHECK_STR(step(&w, c_cancel()), "");
	CHECK_JSON(view_get(&w, "status"), "\"cancelled\"");
	CHECK_JSON(view_get(&w, "cancel_reason"), "\"user asked\"");
	CHECK_JSON(view_get(&w, "steps.fetch.status"), "\"cancelled\"");
	{
		rs_decision p;
		CHECK(rs_run_pending_effects(w.r, &p) == RS_OK);
		CHECK_INT(p.ncalls, 1);
		CHECK_INT(p.calls[0].cancel, 1);
		rs_decision_free(&p);
	}
	finish(&w);

	/* sleeping */
	world_init(&w, A_SLEEP);
	step(&w, c_start("{}"));
	CHECK_STR(step(&w, c_cancel()), "run.cancel_requested run.cancelled");
	CHECK_INT(w.last.ncalls, 0);
	w.now += 5000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SLEEP])), "");
	finish(&w);

	/* waiting on a signal */
	world_init(&w, A_SIG);
	step(&w, c_start("{}"));
	CHECK_STR(step(&w, c_cancel()), "run.cancel_requested run.cancelled");
	CHECK_STR(step(&w, c_signal("s", "approval", "{}")), "");
	finish(&w);

	/* waiting for a retry */
	world_init(&w, A_RETRY);
	step(&w, c_start("{}"));
	step(&w, c_tool_error(w.call_id, "boom", RS_ERRCLASS_TRANSIENT));
	CHECK_STR(step(&w, c_cancel()), "run.cancel_requested run.cancelled");
	CHECK_INT(w.last.ncalls, 0);
	w.now += 1000;
	CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_RETRY])), "");
	finish(&w);

	/* finished: nothing */
	world_init(&w, A_SLEEP);
	step(&w, c_start("{}"));
	w.now += 5000;
	step(&w, c_fire(w.timer[RS_TIMER_SLEEP]));
	CHECK_INT(rs_run_get_status(w.r), RS_RUN_COMPLETED);
	CHECK_STR(step(&w, c_cancel()), "");
	finish(&w);
}

static void
test_branch_run(void)
{
	const char *def =
		"{\"name\":\"b\",\"steps\":["
		"{\"id\":\"b\",\"kind\":\"branch\",\"when\":["
		" {\"if\":{\"path\":\"input.n\",\"gt\":5},\"goto\":\"big\"},"
		" {\"if\":{\"path\":\"input.n\",\"equals\":0},\"goto\":\"end\"}],\"else\":\"small\"},"
		"{\"id\":\"big\",\"kind\":\"transform\",\"value\":\"big {{input.n}}\",\"next\":\"end\"},"
		"{\"id\":\"small\",\"kind\":\"transform\",\"value\":{\"v\":\"{{input.n}}\"}}]}";
	static const struct { const char *input, *types, *output; } cases[] = {
		{ "{\"n\":9}", "run.created run.started step.started step.completed step.started "
		  "step.completed run.completed", "\"big 9\"" },
		{ "{\"n\":2}", "run.created run.started step.started step.completed step.started "
		  "step.completed run.completed", "{\"v\":2}" },
		{ "{\"n\":0}", "run.created run.started step.started step.completed run.completed",
		  "{\"case\":1,\"goto\":\"end\"}" },
		{ "{}", "run.created run.started step.started step.completed step.started "
		  "step.completed run.completed", "{\"v\":null}" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		world w;
		world_init(&w, def);
		CHECK_STR(step(&w, c_start(cases[i].input)), cases[i].types);
		CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, cases[i].output);
		finish(&w);
	}
}

static void
test_max_steps(void)
{
	const char *loop =
		"{\"name\":\"l\",\"max_steps\":5,\"steps\":["
		"{\"id\":\"a\",\"kind\":\"transform\",\"value\":1},"
		"{\"id\":\"b\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"input.loop\","
		"\"equals\":true},\"goto\":\"a\"}],\"else\":\"end\"}]}";
	const char *sleepy =
		"{\"name\":\"l\",\"max_steps\":6,\"steps\":["
		"{\"id\":\"nap\",\"kind\":\"sleep\",\"duration_ms\":1},"
		"{\"id\":\"b\",\"kind\":\"branch\",\"when\":[],\"else\":\"nap\"}]}";
	world w;
	char seen[3][192];

	world_init(&w, loop);
	step(&w, c_start("{\"loop\":true}"));
	CHECK_INT(count_type(&w, RS_EV_STEP_STARTED), 5);
	CHECK_INT(w.last.events[w.last.nevents - 1].type, RS_EV_RUN_FAILED);
	CHECK_STR(ev(&w, RS_EV_RUN_FAILED, 0)->d.run_failed.error.code, "max_steps_exceeded");
	CHECK_JSON(view_get(&w, "step_executions"), "5");
	finish(&w);

	/* the same loop ends normally without the flag */
	world_init(&w, loop);
	CHECK_STR(step(&w, c_start("{\"loop\":false}")), "run.created run.started step.started "
	          "step.completed step.started step.completed run.completed");
	finish(&w);

	/* a loop through a timer: every iteration gets its own timer id */
	world_init(&w, sleepy);
	step(&w, c_start("{}"));
	for (int i = 0; i < 3; i++) {
		snprintf(seen[i], sizeof(seen[i]), "%s", w.timer[RS_TIMER_SLEEP]);
		w.now += 1;
		CHECK_STR(step(&w, c_fire(w.timer[RS_TIMER_SLEEP])),
		          i < 2 ? "timer.fired step.completed step.started step.completed "
		                  "step.started timer.scheduled"
		                : "timer.fired step.completed step.started step.completed run.failed");
	}
	CHECK(strcmp(seen[0], seen[1]) != 0 && strcmp(seen[1], seen[2]) != 0);
	CHECK_STR(seen[1], RUN_ID ".sleep.nap.3.1");
	finish(&w);
}

/* Tool args can use earlier outputs; targeting a device. */
static void
test_args_from_steps(void)
{
	const char *def =
		"{\"name\":\"two\",\"steps\":["
		"{\"id\":\"first\",\"kind\":\"tool\",\"tool\":\"mk\"},"
		"{\"id\":\"second\",\"kind\":\"tool\",\"tool\":\"use\",\"device\":\"box-9\","
		" \"args\":{\"id\":\"{{steps.first.output.id}}\",\"label\":\"#{{steps.first.output.id}}\","
		" \"all\":\"{{steps.first.output}}\",\"missing\":\"{{input.nope}}\"}}]}";
	world w;
	char first[192];
	const rs_event *e;

	world_init(&w, def);
	step(&w, c_start("{}"));
	snprintf(first, sizeof(first), "%s", w.call_id);
	CHECK_STR(step(&w, c_result(w.call_id, "{\"id\":5}")),
	          "tool.completed step.completed step.started tool.requested timer.scheduled");
	e = ev(&w, RS_EV_TOOL_REQUESTED, 0);
	CHECK_JSON(e->d.tool_requested.args,
	           "{\"all\":{\"id\":5},\"id\":5,\"label\":\"#5\",\"missing\":null}");
	CHECK_STR(e->d.tool_requested.device, "box-9");
	CHECK_STR(w.last.calls[0].device, "box-9");
	CHECK(w.last.calls[0].capability == NULL);
	CHECK_STR(step(&w, c_result(first, "{\"id\":6}")), "");        /* old call again */
	CHECK_STR(step(&w, c_result(w.call_id, "\"ok\"")),
	          "tool.completed step.completed run.completed");
	CHECK_JSON(ev(&w, RS_EV_RUN_COMPLETED, 0)->d.run_completed.output, "\"ok\"");
	finish(&w);
}

static void
test_evolve_rejects(void)
{
	world w;
	rs_run *r;
	rs_event e;
	char err[256];

	world_init(&w, A_SLEEP);
	step(&w, c_start("{}"));
	r = rs_run_clone(w.r);
	/* a gap in runseq */
	e = w.hist[0];
	e.runseq = 9;
	CHECK(rs_run_evolve(r, &e, err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "run.created: runseq 9, expected 5");
	/* run.created twice */
	e.runseq = 5;
	CHECK(rs_run_evolve(r, &e, err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "run.created: run already exists");
	/* an unknown call */
	memset(&e, 0, sizeof(e));
	e.type = RS_EV_TOOL_DISPATCHED;
	e.runseq = 5;
	snprintf(e.run_id, sizeof(e.run_id), "%s", RUN_ID);
	snprintf(e.tenant, sizeof(e.tenant), "%s", TENANT);
	e.d.tool_dispatched.call_id = "zz";
	CHECK(rs_run_evolve(r, &e, err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "tool.dispatched: unknown call_id zz");
	/* another run */
	snprintf(e.run_id, sizeof(e.run_id), "%s", "other");
	CHECK(rs_run_evolve(r, &e, err, sizeof(err)) == RS_EINVAL);
	rs_run_free(r);
	/* nothing but run.created first */
	r = rs_run_new();
	e.runseq = 1;
	CHECK(rs_run_evolve(r, &e, err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "tool.dispatched: run has no run.created");
	rs_run_free(r);
	finish(&w);
}

static void
test_errors(void)
{
	world w;
	rs_decision d;
	rs_cmd c;
	char err[256];

	/* a command for a run that does not exist */
	world_init(&w, A_SLEEP);
	c = c_signal("s", "x", "{}");
	CHECK(rs_run_decide(w.r, w.agent, &c, 0, "o", &d, err, sizeof(err)) == RS_ENOTFOUND);
	CHECK_INT(d.nevents, 0);
	rs_cmd_free(&c);
	/* start needs the agent; a wrong version is refused */
	c = c_start("{}");
	CHECK(rs_run_decide(w.r, NULL, &c, 0, "o", &d, err, sizeof(err)) == RS_EINVAL);
	c.version = strdup("0000000000000000");
	CHECK(rs_run_decide(w.r, w.agent, &c, 0, "o", &d, err, sizeof(err)) == RS_EINVAL);
	CHECK(strncmp(err, "run.start: version 0000000000000000 does not match definition ",
	              61) == 0);
	rs_cmd_free(&c);
	c = c_start("[1]");
	CHECK(rs_run_decide(w.r, w.agent, &c, 0, "o", &d, err, sizeof(err)) == RS_EINVAL);
	CHECK_STR(err, "run.start: input must be an object");
	rs_cmd_free(&c);
	finish(&w);
}

/* Two identical worlds produce byte-identical views. */
static void
test_view_deterministic(void)
{
	world a, b;
	char *va, *vb;

	world_init(&a, A_TOOL);
	world_init(&b, A_TOOL);
	step(&a, c_start("{\"url\":\"u\"}"));
	step(&b, c_start("{\"url\":\"u\"}"));
	step(&a, c_tool_error(a.call_id, "boom", RS_ERRCLASS_TRANSIENT));
	step(&b, c_tool_error(b.call_id, "boom", RS_ERRCLASS_TRANSIENT));
	va = dump(view_get(&a, NULL));
	vb = dump(view_get(&b, NULL));
	CHECK_STR(va, vb);
	CHECK(strstr(va, "\"tool_calls\":[{\"attempt\":1,") != NULL);
	free(va);
	free(vb);
	finish(&a);
	finish(&b);
}

static void
test_stale_timers(void)
{
	world w;
	char t[192];

	/* a sleep already fired: its second fire decides nothing */
	world_init(&w, A_SLEEP);
	step(&w, c_start("{\"x\":1}"));
	snprintf(t, sizeof(t), "%s", w.timer[RS_TIMER_SLEEP]);
	w.now = 6000;
	CHECK_STR(step(&w, c_fire(t)), "timer.fired step.completed step.started step.completed "
	          "run.completed");
	CHECK_STR(step(&w, c_fire(t)), "");
	finish(&w);
	/* a signal already received: its timeout decides nothing */
	world_init(&w, A_SLEEP_SIG);
	step(&w, c_start("{}"));
	w.now += 10;
	step(&w, c_fire(w.timer[RS_TIMER_SLEEP]));
	CHECK_STR(step(&w, c_signal("g1", "go", "1")), "signal.received step.completed "
	          "run.completed");
	finish(&w);
	world_init(&w, A_SIG);
	step(&w, c_start("{}"));
	snprintf(t, sizeof(t), "%s", w.timer[RS_TIMER_SIGNAL_TIMEOUT]);
	rs_decision_free(&w.last);
	{
		char err[256];
		rs_cmd c = c_signal("s1", "approval", "{\"by\":\"x\"}");
		CHECK(rs_run_decide(w.r, w.agent, &c, w.now, "o", &w.last, err, sizeof(err)) == RS_OK);
		rs_cmd_free(&c);
		apply(&w, 1);   /* signal.received (consumed) only: a crash */
		rs_decision_free(&w.last);
	}
	w.now += 61000;
	CHECK_STR(step(&w, c_fire(t)), "step.completed step.started step.completed run.completed");
	finish(&w);
	/* a tool call already answered: its timeout decides nothing */
	world_init(&w, A_RETRY);
	step(&w, c_start("{}"));
	snprintf(t, sizeof(t), "%s", w.timer[RS_TIMER_TOOL_TIMEOUT]);
	step(&w, c_result(w.call_id, "{}"));
	w.now += 60000;
	CHECK_STR(step(&w, c_fire(t)), "");
	CHECK_JSON(view_get(&w, "status"), "\"completed\"");
	finish(&w);
	/* a retry already begun: its timer's second fire decides nothing */
	world_init(&w, A_RETRY);
	step(&w, c_start("{}"));
	step(&w, c_tool_error(w.call_id, "flaky", RS_ERRCLASS_TRANSIENT));
	snprintf(t, sizeof(t), "%s", w.timer[RS_TIMER_RETRY]);
	w.now += 1000;
	CHECK_STR(step(&w, c_fire(t)), "timer.fired step.started tool.requested timer.scheduled");
	CHECK_STR(step(&w, c_fire(t)), "");
	finish(&w);
}

/* A transform that feeds itself twice per pass (issue: one agent took the
 * orchestrator to 17 GB): each decision begins at most
 * RS_RUN_MAX_STEPS_PER_DECISION steps, a value over RS_RUN_MAX_VALUE_BYTES
 * fails the step, and max_steps ends it all. */
static void
test_hostile_loop(void)
{
	world w;
	int rounds = 0;

	world_init(&w, "{\"name\":\"boom\",\"steps\":[{\"id\":\"t\",\"kind\":\"transform\","
	           "\"next\":\"t\",\"value\":{\"a\":\"{{steps.t.output}}\","
	           "\"b\":\"{{steps.t.output}}\"}}]}");
	step(&w, c_start("{}"));
	while (!rs_run_status_terminal(rs_run_get_status(w.r)) && rounds < 50) {
		CHECK(w.last.nevents <= 2 * RS_RUN_MAX_STEPS_PER_DECISION + 4);
		if (!w.last.more)
			break;
		{
			rs_cmd c = mk(RS_CMD_RUN_CONTINUE);
			c.after_seq = (int64_t)rs_run_last_seq(w.r);
			step(&w, c);
		}
		rounds++;
	}
	CHECK_JSON(view_get(&w, "status"), "\"failed\"");
	CHECK_JSON(view_get(&w, "error.code"), "\"too_large\"");
	finish(&w);
	/* a tool answering more than RS_RUN_MAX_VALUE_BYTES: recorded as a
	 * permanent too_large failure of the call (its events would not fit a
	 * NATS message), never an append that fails and is retried forever */
	{
		size_t big = RS_RUN_MAX_VALUE_BYTES + 16;
		char *out = malloc(big + 16);
		memset(out, 'x', big + 16);
		out[0] = '"';
		out[big] = '"';
		out[big + 1] = '\0';
		world_init(&w, A_INC3);
		step(&w, c_start("{\"n\":1}"));
		CHECK_STR(step(&w, c_result(w.call_id, out)), "tool.failed step.failed run.failed");
		CHECK_STR(ev(&w, RS_EV_TOOL_FAILED, 0)->d.tool_failed.error.code, "too_large");
		CHECK_JSON(view_get(&w, "error.code"), "\"too_large\"");
		finish(&w);
		free(out);
	}
	/* a loop of small values ends at max_steps, a decision at a time */
	world_init(&w, "{\"name\":\"spin\",\"max_steps\":250,\"steps\":[{\"id\":\"t\","
	           "\"kind\":\"transform\",\"next\":\"t\",\"value\":1}]}");
	CHECK_STR(step(&w, c_start("{}")) != NULL ? "" : "x", "");
	CHECK(w.last.more);
	rounds = 0;
	while (w.last.more && rounds++ < 10) {
		rs_cmd c = mk(RS_CMD_RUN_CONTINUE);
		c.after_seq = (int64_t)rs_run_last_seq(w.r);
		step(&w, c);
	}
	CHECK_INT(rounds, 2);   /* 100 + 100 + 50 steps begun, then max_steps */
	CHECK_JSON(view_get(&w, "error.code"), "\"max_steps_exceeded\"");
	finish(&w);
	/* The orchestrator continues a decision stopped at its bound by
	 * deciding the same command again (engine.c, effects_done): no event
	 * opens the next part, and replay --check must see the parts as the
	 * continuation they are, not as a divergence. */
	world_init(&w, "{\"name\":\"spin\",\"max_steps\":250,\"steps\":[{\"id\":\"t\","
	           "\"kind\":\"transform\",\"next\":\"t\",\"value\":1}]}");
	step(&w, c_start("{}"));
	rounds = 0;
	while (w.last.more && rounds++ < 10)
		step(&w, c_start("{}"));
	CHECK_INT(rounds, 2);
	CHECK_JSON(view_get(&w, "error.code"), "\"max_steps_exceeded\"");
	{
		rs_replay_report rep;
		char err[256];
		CHECK(rs_replay_check(w.hist, w.nhist, w.agent, &rep, err, sizeof(err)) == RS_OK);
		CHECK_INT(rep.ok, 1);
		CHECK_INT((int)rep.groups, 1);
		rs_replay_report_free(&rep);
		/* and a tampered event inside the second part is still found */
		for (size_t i = 0; i < w.nhist; i++)
			if (w.hist[i].runseq == 250 && w.hist[i].type == RS_EV_STEP_COMPLETED) {
				json_decref(w.hist[i].d.step_completed.output);
				w.hist[i].d.step_completed.output = json_integer(2);
			}
		CHECK(rs_replay_check(w.hist, w.nhist, w.agent, &rep, err, sizeof(err)) == RS_OK);
		CHECK_INT(rep.ok, 0);
		CHECK_INT((int)rep.seq, 250);
		rs_replay_report_free(&rep);
		for (size_t i = 0; i < w.nhist; i++)   /* as it was, for finish() */
			if (w.hist[i].runseq == 250 && w.hist[i].type == RS_EV_STEP_COMPLETED) {
				json_decref(w.hist[i].d.step_completed.output);
				w.hist[i].d.step_completed.output = json_integer(1);
			}
	}
	finish(&w);
}

int
main(void)
{
	test_tool_happy();
	test_retry_backoff();
	test_backoff_values();
	test_no_retry();
	test_tool_timeout();
	test_sleep();
	test_signal();
	test_run_timeout();
	test_cancel();
	test_branch_run();
	test_max_steps();
	test_args_from_steps();
	test_evolve_rejects();
	test_errors();
	test_view_deterministic();
	test_stale_timers();
	test_hostile_loop();
	return check_report("test_run");
}
