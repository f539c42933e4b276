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

/* --- crash consistency: a decision cut anywhere is finished exactly --- */

/* The three-tool-step agent of the crash report (issue: runs damaged by a
 * kill -9 under load): s1 -> s2 -> s3 on tool `inc`, output from s3. */
static const char *A_INC3 =
	"{\"name\":\"inc3\",\"steps\":["
	"{\"id\":\"s1\",\"kind\":\"tool\",\"tool\":\"inc\",\"args\":{\"n\":\"{{input.n}}\"}},"
	"{\"id\":\"s2\",\"kind\":\"tool\",\"tool\":\"inc\",\"args\":{\"n\":\"{{steps.s1.output.n}}\"}},"
	"{\"id\":\"s3\",\"kind\":\"tool\",\"tool\":\"inc\",\"args\":{\"n\":\"{{steps.s2.output.n}}\"}}],"
	"\"output\":{\"n\":\"{{steps.s3.output.n}}\"}}";

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

typedef enum { S_START, S_DELIVER, S_RESULT, S_ERROR, S_FIRE, S_SIGNAL, S_CANCEL,
               S_CHILD, S_CHILD_FAIL, S_END } s_kind;

typedef struct {
	s_kind k;
	const char *a;          /* input / output / error code / signal payload */
	int purpose;            /* S_FIRE; S_CHILD*: the child (child.started order) */
	int64_t at;             /* clock for this command */
} s_step;

static rs_cmd
script_cmd(world *w, const s_step *s)
{
	switch (s->k) {
	case S_START: return c_start(s->a);
	case S_DELIVER: return c_delivered(w->call_id);
	case S_RESULT: return c_result(w->call_id, s->a);
	case S_ERROR: return c_tool_error(w->call_id, s->a, RS_ERRCLASS_TRANSIENT);
	case S_FIRE: return c_fire(w->timer[s->purpose]);
	case S_SIGNAL: return c_signal("sig-1", "go", s->a);
	case S_CANCEL: return c_cancel();
	case S_CHILD: return c_child(w->child[s->purpose], "completed", s->a);
	case S_CHILD_FAIL: return c_child(w->child[s->purpose], "failed", s->a);
	default: abort();
	}
}

/* An event as the contract compares decisions: everything but its time. */
static char *
comparable_text(const rs_event *e)
{
	char *txt = NULL, *out;
	size_t len;
	json_t *o;

	if (rs_event_encode(e, &txt, &len) != RS_OK)
		return strdup("?");
	o = json_loadb(txt, len, 0, NULL);
	free(txt);
	json_object_del(o, "time");
	/* run.started names the instance that started the run: whoever
	 * finished the cut decision (replay --check reads it from the log) */
	if (e->type == RS_EV_RUN_STARTED)
		json_object_del(json_object_get(o, "data"), "instance");
	out = dump(o);
	json_decref(o);
	return out;
}

/* Run script[0..upto) on a fresh world, each decision applied whole. */
static void
script_run(world *w, const char *agent, const s_step *script, int upto)
{
	world_init(w, agent);
	for (int i = 0; i < upto; i++) {
		w->now = script[i].at;
		step(w, script_cmd(w, &script[i]));
	}
}

static char *
final_outcome(world *w)
{
	json_t *v = rs_run_view(w->r), *o = json_pack("{s:O, s:O, s:O, s:O}", "status",
	            json_object_get(v, "status"), "output", json_object_get(v, "output"),
	            "error", json_object_get(v, "error"), "last_seq", json_object_get(v, "last_seq"));
	char *t = dump(o);

	json_decref(o);
	json_decref(v);
	return t;
}

enum { V_REDELIVER, V_CONTINUE, V_TIMER, V__COUNT };

/*
 * For every decision of the script with two or more events and every cut
 * k (the first k events appended, then a crash): the next decision for the
 * run (the command redelivered, a run.continue, or the run's earliest
 * pending timer firing late) begins with exactly the events the cut
 * decision still owed, data equal; the run is then not at rest before and
 * at rest after; and the rest of the script ends the run exactly as the
 * uninterrupted one.
 */
static void
check_cuts(const char *agent, const s_step *script)
{
	world ref;
	int n = 0, cuts = 0;
	char **want[32];
	size_t wantn[32];
	char *ref_end;

	while (script[n].k != S_END)
		n++;
	world_init(&ref, agent);
	for (int i = 0; i < n; i++) {
		ref.now = script[i].at;
		step(&ref, script_cmd(&ref, &script[i]));
		wantn[i] = ref.last.nevents;
		want[i] = calloc(wantn[i] + 1, sizeof(char *));
		for (size_t e = 0; e < wantn[i]; e++)
			want[i][e] = comparable_text(&ref.last.events[e]);
	}
	ref_end = final_outcome(&ref);
	finish(&ref);

	for (int i = 0; i < n; i++) {
		for (size_t k = 1; k < wantn[i]; k++) {
			for (int v = 0; v < V__COUNT; v++) {
				world w, saved;
				rs_cmd c;
				rs_decision d;
				char err[256] = "";
				json_t *view;
				const char *tid = NULL;
				int64_t due = 0;

				script_run(&w, agent, script, i);
				w.now = script[i].at;
				rs_decision_free(&w.last);
				memcpy(&saved, &w, sizeof(saved));   /* ids the command was built from */
				c = script_cmd(&w, &script[i]);
				CHECK(rs_run_decide(w.r, w.agent, &c, w.now, "orch-1", &w.last, err,
				                    sizeof(err)) == RS_OK);
				rs_cmd_free(&c);
				apply(&w, k);       /* the crash: events k.. never appended */
				CHECK(!rs_run_at_rest(w.r, w.agent));
				/* the crash is noticed before the script's next command: a
				 * later redelivery would move every later decision (and
				 * so the timers they set) along with it */
				w.now = script[i].at + 1;
				if (v == V_REDELIVER) {
					c = script_cmd(&saved, &script[i]);
				} else if (v == V_CONTINUE) {
					c = mk(RS_CMD_RUN_CONTINUE);
					c.after_seq = (int64_t)rs_run_last_seq(w.r);
				} else {
					view = rs_run_view(w.r);
					tid = json_string_value(rs_json_path(view, "pending_timers.0.timer_id"));
					due = json_integer_value(rs_json_path(view, "pending_timers.0.due_at"));
					c = c_fire(tid ? tid : "none");
					json_decref(view);
					if (tid == NULL) {
						rs_cmd_free(&c);
						c = mk(RS_CMD_RUN_CONTINUE);
					} else if (due + 1 > w.now) {
						w.now = due + 1;
					}
				}
				CHECK(rs_run_decide(w.r, w.agent, &c, w.now, "orch-2", &d, err,
				                    sizeof(err)) == RS_OK);
				for (size_t e = k; e < wantn[i]; e++) {
					size_t at = e - k;
					char *got = at < d.nevents ? comparable_text(&d.events[at]) : NULL;
					if (got == NULL || strcmp(got, want[i][e]) != 0) {
						fprintf(stderr, "cut: command %d (%s) cut after %zu of %zu, variant %d:"
						        " event %zu\n   got: %s\n  want: %s\n", i,
						        rs_cmd_type_name(c.type), k, wantn[i], v, e,
						        got ? got : "(none)", want[i][e]);
						CHECK(0);
						free(got);
						break;
					}
					free(got);
				}
				if (v != V_TIMER)
					CHECK_INT(d.nevents, wantn[i] - k);
				rs_decision_free(&d);
				/* carry on: the orchestrator's way (decide, apply all) */
				rs_decision_free(&w.last);
				step(&w, c);
				CHECK(rs_run_at_rest(w.r, w.agent));
				if (v != V_TIMER) {
					char *end;
					for (int j = i + 1; j < n; j++) {
						if (script[j].at > w.now)
							w.now = script[j].at;
						step(&w, script_cmd(&w, &script[j]));
					}
					end = final_outcome(&w);
					CHECK_STR(end, ref_end);
					free(end);
				}
				finish(&w);
				cuts++;
			}
		}
	}
	CHECK(cuts > 0);
	for (int i = 0; i < n; i++) {
		for (size_t e = 0; e < wantn[i]; e++)
			free(want[i][e]);
		free(want[i]);
	}
	free(ref_end);
}

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
	world_init(&w, A_TOOL);
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
	test_cut_everywhere();
	test_crash_report_cases();
	test_stale_timers();
	test_hostile_loop();
	test_fork();
	test_gate();
	test_parallel();
	test_parallel_any_and_failures();
	test_foreach();
	test_run_step();
	test_child_side();
	test_children_cut_everywhere();
	return check_report("test_run");
}
