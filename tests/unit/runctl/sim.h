/*
 * sim.h - a deterministic, in-memory orchestrator for generating recorded
 * histories: it feeds commands to the real rs_run_decide with a fake
 * clock and keeps what decide asks for (tool calls, timers) so a script
 * can answer them, as the routers, devices and the executor would. Used to
 * write the fixture histories (tests/fixtures) and the bench/replay
 * history; never used by runctl itself.
 */
#ifndef RUNCTL_SIM_H
#define RUNCTL_SIM_H

#include <stdio.h>
#include "rs_run.h"

typedef struct {
	rs_run *run;
	rs_agent *agent;
	json_t *def;
	char run_id[40], tenant[72];
	int64_t now;
	FILE *out;            /* each appended event is written here as a line */
	rs_cmd timers[64];    /* pending timer.fire bodies (copies) */
	size_t ntimers;
	char call_id[160];    /* the last requested tool call */
	char device[80];
	char route[80];       /* device a router picks for capability calls ("" = laptop-1) */
	char effect_id[200];  /* the last http/llm effect requested */
	char children[32][40]; /* child runs started (child.started order) */
	int nchildren;
	const rs_agent *walk; /* the step list decided with (a child's scope) */
	uint64_t events;
} sim;

/* Parse the definition (aborts on error: fixtures are code). Writes the
 * export header line when header is 1. */
void sim_init(sim *s, const char *def_json, const char *run_id, const char *tenant,
              int64_t t0, FILE *out, int header);
void sim_free(sim *s);

void sim_start(sim *s, const char *input_json, const char *instance);
/* run.start of a schedule's tick. */
void sim_start_scheduled(sim *s, const char *input_json, const char *instance,
                         const char *schedule_id, int64_t tick);
/* run.admit: the admission gate gives a queued run its slot. */
void sim_admit(sim *s, int64_t after_ms, const char *instance);
/* run.start of a fork (rs_fork.h): reuse_json is the reuse list. */
void sim_start_fork(sim *s, const char *input_json, const char *instance, const char *forked_from,
                    int64_t from_seq, const char *reuse_json);
void sim_delivered(sim *s, int64_t after_ms);
void sim_result_ok(sim *s, int64_t after_ms, const char *output_json);
void sim_result_err(sim *s, int64_t after_ms, const char *code, const char *msg, int retryable);
/* Fire the pending timer of this purpose at its due time + late_ms. */
void sim_fire(sim *s, rs_timer_purpose p, int64_t late_ms);
void sim_signal(sim *s, int64_t after_ms, const char *signal_id, const char *name,
                const char *payload_json);
void sim_cancel(sim *s, int64_t after_ms, const char *reason);

/* Capability calls (an llm step's tools) go to this device from now on. */
void sim_route(sim *s, const char *device);
/* The executor, for the last requested effect: a result (effect.result
 * output), an error (effect.result error, retry_after_ms 0 = none) and a
 * streamed chunk of model text (llm.chunk). */
void sim_effect_ok(sim *s, int64_t after_ms, const char *output_json);
void sim_effect_err(sim *s, int64_t after_ms, const char *code, const char *msg,
                    rs_errclass cls, int64_t retry_after_ms);
void sim_chunk(sim *s, int64_t after_ms, int64_t index, const char *text);

/* Children runs: start this run as a child (of parent, in scope), and
 * report the end of child i (child.started order) to this run. */
void sim_start_child(sim *s, const char *input_json, const char *parent, const char *root,
                     const char *scope, const char *parent_step, const char *instance);
void sim_child_done(sim *s, int64_t after_ms, int i, const char *status,
                    const char *output_json);

#endif
