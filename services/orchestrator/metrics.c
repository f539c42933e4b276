/*
 * metrics.c - the orchestrator's Prometheus series, registered once at
 * start-up, and the accounting done when an event becomes durable (so a
 * run is counted once even if two instances raced over it).
 */
#include <stdio.h>

#include "orch.h"

orch_metrics rs_orch_om;

void
rs_orch_metrics_init(void)
{
	static const char *fin[4] = {
		"status=\"completed\"", "status=\"failed\"", "status=\"cancelled\"",
		"status=\"timed_out\"" };
	/* One label per command type, from its name (the registry keeps the
	 * pointer: static storage). */
	static char cmd[RS_CMD__COUNT][48];

	rs_orch_om.runs_started = rs_counter("rs_orch_runs_started_total", "Runs started (run.started appended).", NULL);
	for (int i = 0; i < 4; i++)
		rs_orch_om.runs_finished[i] = rs_counter("rs_orch_runs_finished_total",
		                                 "Runs finished, by terminal status.", fin[i]);
	rs_orch_om.step_duration = rs_histogram("rs_orch_step_duration_seconds",
	                                "Step durations (step.completed duration_ms).", NULL);
	for (int i = 0; i < RS_CMD__COUNT; i++) {
		snprintf(cmd[i], sizeof(cmd[i]), "type=\"%s\"", rs_cmd_type_name((rs_cmd_type)i));
		rs_orch_om.commands[i] = rs_counter("rs_orch_commands_total", "Commands processed, by type.", cmd[i]);
	}
	rs_orch_om.gate_admits = rs_counter("rs_orch_gate_admits_total",
	                            "run.admit commands sent by the admission gate.", NULL);
	rs_orch_om.gate_conflicts = rs_counter("rs_orch_gate_conflicts_total",
	                               "Admission gate compare-and-set conflicts (KV gates).", NULL);
	rs_orch_om.schedule_runs = rs_counter("rs_orch_schedule_runs_total",
	                              "run.start commands published for schedule ticks.", NULL);
	rs_orch_om.redeliveries = rs_counter("rs_orch_redeliveries_total", "Commands delivered more than once.", NULL);
	rs_orch_om.dead_letters = rs_counter("rs_orch_dead_letters_total", "Messages sent to dlq.orchestrator.", NULL);
	rs_orch_om.timer_lag = rs_histogram("rs_orch_timer_lag_seconds", "Timer fire time minus due time.", NULL);
	rs_orch_om.timers_fired = rs_counter("rs_orch_timers_fired_total", "Timers forwarded to CMDS.", NULL);
	rs_orch_om.append_latency = rs_histogram("rs_orch_append_latency_seconds",
	                                 "Event append: send to JetStream ack.", NULL);
	rs_orch_om.events_appended = rs_counter("rs_orch_events_appended_total", "Run events appended.", NULL);
	rs_orch_om.conflicts = rs_counter("rs_orch_conflicts_total",
	                          "Appends refused: another writer got there first.", NULL);
	rs_orch_om.command_duration = rs_histogram("rs_orch_command_duration_seconds",
	                                   "Command fetched to acked.", NULL);
	rs_orch_om.cache_runs = rs_gauge("rs_orch_cache_runs", "Runs in the hot cache.", NULL);
	rs_orch_om.inflight = rs_gauge("rs_orch_inflight_commands", "Commands fetched, not yet acked.", NULL);
	rs_orch_om.busy_runs = rs_gauge("rs_orch_busy_runs", "Runs with a command in progress.", NULL);
	rs_orch_om.queued_commands = rs_gauge("rs_orch_queued_commands",
	                                      "Commands waiting behind their run's command in progress.", NULL);
	rs_orch_om.oldest_command = rs_gauge("rs_orch_oldest_command_seconds",
	                                     "Age of the oldest command in progress.", NULL);
	rs_orch_om.timers_held = rs_gauge("rs_orch_timers_held", "Timers held in memory until due.", NULL);
	rs_orch_om.sweep_continued = rs_counter("rs_orch_sweep_continued_total",
	                                "Runs found not at rest by reconciliation: run.continue sent.", NULL);
	rs_orch_om.sweep_events = rs_counter("rs_orch_sweep_events_read_total",
	                             "Event headers read by reconciliation passes.", NULL);
	rs_orch_om.sweep_duration = rs_histogram("rs_orch_sweep_duration_seconds",
	                                 "One reconciliation pass.", NULL);
}

void
rs_orch_metrics_event(const rs_event *ev)
{
	rs_metric_inc(rs_orch_om.events_appended);
	switch (ev->type) {
	case RS_EV_RUN_STARTED:
		rs_metric_inc(rs_orch_om.runs_started);
		break;
	case RS_EV_STEP_COMPLETED:
		rs_metric_observe(rs_orch_om.step_duration, (double)ev->d.step_completed.duration_ms / 1000.0);
		break;
	case RS_EV_RUN_COMPLETED:
		rs_metric_inc(rs_orch_om.runs_finished[0]);
		break;
	case RS_EV_RUN_FAILED:
		rs_metric_inc(rs_orch_om.runs_finished[1]);
		break;
	case RS_EV_RUN_CANCELLED:
		rs_metric_inc(rs_orch_om.runs_finished[2]);
		break;
	case RS_EV_RUN_TIMED_OUT:
		rs_metric_inc(rs_orch_om.runs_finished[3]);
		break;
	default:
		break;
	}
}
