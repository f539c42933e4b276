/*
 * rs_replay.h - rebuild, from a recorded run history, the commands that
 * caused it.
 *
 * Every group of events in a run's log was appended by one decision of
 * the orchestrator, caused by one command, and the group's first event
 * carries enough to rebuild that command as far as rs_run_decide reads
 * it. `runctl replay --check` feeds the rebuilt commands to today's
 * decide and compares; the state machine tests check that every command
 * they gave is recovered from the events it produced. One mapping, here:
 *
 *   first event of a group        command
 *   run.created                   run.start {agent, version, input, idempotency_key?}
 *   tool.dispatched               tool.delivered {call_id, device_id, router?}
 *   tool.completed                tool.result {call_id, device_id?, output}
 *   tool.failed                   tool.result {call_id, device_id?, error}
 *   timer.fired                   timer.fire {timer_id, purpose, step_id?, attempt?, due_at}
 *   signal.received               signal {signal_id, name, payload}
 *   run.cancel_requested          cancel {reason?}
 *   llm.delta                     llm.chunk {effect_id, index, text}
 *   llm.message                   effect.result {effect_id, output: {message, usage?,
 *                                 finish_reason?}}
 *   http.completed                effect.result {effect_id, output: {status, headers,
 *                                 body, duration_ms}}
 *   step.failed with effect_id    effect.result {effect_id, error, retry_after_ms?}
 *
 * Every other event (a step.failed without effect_id included: a timeout
 * or an unexpected HTTP status) is decided by the state machine inside a
 * group, never caused by a command of its own. The orchestrator instance
 * of run.start is not part of the command: it is run.started's.
 * run_id, tenant and traceparent come from the event envelope.
 */
#ifndef RS_REPLAY_H
#define RS_REPLAY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_agent.h"
#include "rs_cmd.h"
#include "rs_event.h"
#include "rs_status.h"

/* 1 if ev is the first event of a decision (a command caused it). */
int rs_replay_opens_group(const rs_event *ev);

/* Rebuild the command behind ev. *is_cmd = 1 and out holds new
 * allocations (rs_cmd_free releases them) when ev opens a group; *is_cmd
 * = 0 and out is zeroed otherwise. RS_ENOMEM leaves out zeroed. */
rs_status rs_replay_cmd_from_event(const rs_event *ev, rs_cmd *out, int *is_cmd);

/* The outcome of rs_replay_check. When ok, events/groups/status describe
 * the whole history. Otherwise the first divergence: seq is the event
 * where recorded and decided part (the recorded one, or the decided one
 * when the history has none there), group_seq/group_type the event that
 * opened the group (its command is command, a static name), reason a
 * sentence, recorded/decided the two events in comparable form (the
 * CloudEvent without time, source and id; NULL where absent). Owned:
 * rs_replay_report_free. */
typedef struct {
	int ok;
	size_t events, groups;
	const char *status;         /* the run's status after the history (static) */
	uint64_t seq, group_seq;
	rs_event_type group_type;
	const char *command;
	char reason[600];
	json_t *recorded, *decided;
} rs_replay_report;

/* Check a recorded history ev[0..n) against today's rs_run_decide for
 * agent (the definition the run is pinned to): every group's command is
 * rebuilt from its first event and decided in the state before the
 * group, with the recorded time as "now"; the decided events must equal
 * the recorded ones. What `runctl replay --check` and the API's
 * GET /v1/runs/{id}/check both report. RS_OK with *rep filled (ok or
 * the first divergence); RS_EINVAL (err set) if a recorded event does not
 * apply to the state (the history itself is broken); RS_ENOMEM. */
rs_status rs_replay_check(const rs_event *ev, size_t n, const rs_agent *agent,
                          rs_replay_report *rep, char *err, size_t cap);
void rs_replay_report_free(rs_replay_report *rep);

/* The comparable form of an event (see rs_replay_report), new reference
 * or NULL. */
json_t *rs_replay_comparable(const rs_event *ev);

#endif
